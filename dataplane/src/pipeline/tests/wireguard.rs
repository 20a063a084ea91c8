//! WireGuard stage tests: handshake and data both ways against a second
//! boringtun peer, replay, re-handshake after a restart, core handoff.

use super::*;
use crate::tunnel::wireguard::{generate_private_key, public_key_of, WgOut, WgPeer};
use crate::tunnel::{TunnelInfo, TunnelTable};
use cer_shared::config::TunnelKind;

const PEER: &str = "10.2.0.254";

struct Pair {
    r: Rig,
    /// The remote CER's WireGuard state, driven by the test.
    remote: WgPeer,
    /// Our private key and the remote's public key.
    r_keys: (String, String),
}

fn pair() -> Pair {
    let (ka, kb) = (generate_private_key(), generate_private_key());
    let (pa, pb) = (public_key_of(&ka).unwrap(), public_key_of(&kb).unwrap());
    let mut r = Rig::new(false);
    r.fib.set_tunnels(TunnelTable::build(vec![TunnelInfo {
        id: 5,
        kind: TunnelKind::Wireguard,
        local: u("10.2.0.1"),
        remote: u(PEER),
        mtu: 1340,
        gre_key: None,
        port: 51820,
        force_fragment: false,
    }]));
    r.neighbor("wan", PEER, GW_MAC);
    r.neighbor("lan", "10.77.60.10", HOST_MAC);
    r.change(FibChange::EndpointSet {
        ip: "10.77.60.20".parse().unwrap(),
        action: FeedAction::Tunnel { tunnel: 5 },
    });
    r.change(FibChange::EndpointSet {
        ip: "10.77.60.10".parse().unwrap(),
        action: FeedAction::Local { port: "lan".into() },
    });
    let ours = WgPeer::new(&ka, &pb, None, None, 5).unwrap();
    r.worker.set_wireguard(
        0,
        1,
        vec![OwnedWgPeer {
            tunnel: 5,
            peer: ours,
            peer_port: 51820,
        }],
        Arc::new(WgHandoff::new(1)),
    );
    Pair {
        r,
        remote: WgPeer::new(&kb, &pa, None, None, 9).unwrap(),
        r_keys: (ka, pb),
    }
}

/// The UDP payload of a frame the dataplane sent to the peer.
fn udp_payload(f: &[u8]) -> Vec<u8> {
    let (frame, ip) = parse_ip(f);
    assert_eq!(frame.dst_addr().0, GW_MAC);
    assert_eq!((ip.src_addr(), ip.dst_addr()), (a("10.2.0.1"), a(PEER)));
    assert_eq!(u8::from(ip.next_header()), 17);
    let u = ip.payload();
    assert_eq!(
        u16::from_be_bytes([u[0], u[1]]),
        51820,
        "stable source port (the peer's endpoint for us)"
    );
    assert_eq!(u16::from_be_bytes([u[2], u[3]]), 51820);
    u[8..].to_vec()
}

/// A frame from the peer carrying `payload` to our WireGuard port.
fn from_peer(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 14];
    f[0..6].copy_from_slice(&WAN_MAC);
    f[6..12].copy_from_slice(&GW_MAC);
    f[12] = 0x08;
    let total = 28 + payload.len();
    let mut h = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        7,
        0,
        0,
        64,
        17,
        0,
        0,
    ];
    h.extend_from_slice(&u(PEER).to_be_bytes());
    h.extend_from_slice(&u("10.2.0.1").to_be_bytes());
    wire::fill_ip_checksum(&mut h, 20);
    f.extend_from_slice(&h);
    let ulen = (8 + payload.len()) as u16;
    f.extend_from_slice(&[0xca, 0x6c, 0xca, 0x6c]);
    f.extend_from_slice(&ulen.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

#[test]
fn data_on_a_session_lost_in_a_restart_starts_a_handshake() {
    let mut p = pair();
    // The remote established a session with this node before it restarted.
    let (ka, pb) = p.r_keys.clone();
    let mut before = WgPeer::new(&ka, &pb, None, None, 5).unwrap();
    let (mut b1, mut b2) = (vec![0u8; 2048], vec![0u8; 2048]);
    let WgOut::Send(n) = p.remote.initiate(false, &mut b1) else {
        panic!("no initiation")
    };
    let WgOut::Send(m) =
        before.decapsulate(std::net::Ipv4Addr::new(10, 2, 0, 254), &b1[..n], &mut b2)
    else {
        panic!("no response")
    };
    let _ = p
        .remote
        .decapsulate(std::net::Ipv4Addr::new(10, 2, 0, 1), &b2[..m], &mut b1);
    let mut back = ping(LAN_MAC, "10.77.60.20", "10.77.60.10", 64, 100)[14..].to_vec();
    Ipv4Packet::new_unchecked(&mut back[..]).fill_checksum();
    let WgOut::Send(n) = p.remote.encapsulate(&back, &mut b1) else {
        panic!("remote could not encrypt")
    };
    // This (restarted) node has no such session: counted, and it
    // initiates a handshake at once.
    p.r.run(WAN, &from_peer(&b1[..n]));
    assert!(p.r.io.sent(LAN).is_empty());
    let no_session = crate::tunnel::wireguard::WgDrop::ALL
        .iter()
        .position(|d| d.name() == "wg_no_session")
        .unwrap();
    assert_eq!(
        p.r.stats.wg_drops[no_session].load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    let sent = p.r.io.sent(WAN);
    assert_eq!(sent.len(), 1);
    let init = udp_payload(&sent[0]);
    assert_eq!(init[0], 1, "handshake initiation");
    let WgOut::Send(_) = p
        .remote
        .decapsulate(std::net::Ipv4Addr::new(10, 2, 0, 1), &init, &mut b2)
    else {
        panic!("the remote did not answer the new initiation")
    };
    // More stale data within REKEY_TIMEOUT: counted, no second initiation.
    p.r.run(WAN, &from_peer(&b1[..n]));
    assert!(p.r.io.sent(WAN).is_empty());
}

#[test]
fn handshake_then_data_both_ways_and_replay_is_dropped() {
    let mut p = pair();
    let ping_out = ping(LAN_MAC, "10.77.60.10", "10.77.60.20", 64, 200);
    p.r.run(LAN, &ping_out);
    // No session yet: a handshake initiation goes out, the ping waits.
    let sent = p.r.io.sent(WAN);
    assert_eq!(sent.len(), 1);
    let init = udp_payload(&sent[0]);
    assert_eq!(init[0], 1, "handshake initiation");
    let mut out = vec![0u8; 2048];
    let WgOut::Send(n) =
        p.remote
            .decapsulate(std::net::Ipv4Addr::new(10, 2, 0, 1), &init, &mut out)
    else {
        panic!("peer rejected the initiation")
    };
    let response = out[..n].to_vec();
    assert_eq!(response[0], 2);
    // The response completes the handshake; the queued ping is flushed, encrypted.
    p.r.run(WAN, &from_peer(&response));
    // The initiator confirms the session with a keepalive, then the queued ping follows.
    let sent = p.r.io.sent(WAN);
    let kinds: Vec<(u8, usize)> = sent
        .iter()
        .map(|f| {
            let u = udp_payload(f);
            (u[0], u.len())
        })
        .collect();
    assert_eq!(
        kinds,
        vec![(4, 32), (4, 32 + 228)],
        "keepalive, then the ping"
    );
    let mut out_ka = vec![0u8; 2048];
    assert!(matches!(
        p.remote.decapsulate(
            std::net::Ipv4Addr::new(10, 2, 0, 1),
            &udp_payload(&sent[0]),
            &mut out_ka
        ),
        WgOut::Nothing
    ));
    let data = udp_payload(&sent[1]);
    assert_eq!(data[0], 4, "transport data");
    let inner = match p
        .remote
        .decapsulate(std::net::Ipv4Addr::new(10, 2, 0, 1), &data, &mut out)
    {
        WgOut::Inner(n) => out[..n].to_vec(),
        _ => panic!("peer could not decrypt"),
    };
    let orig = &ping_out[14..];
    assert_eq!(inner.len(), orig.len());
    assert_eq!(inner[8], 63, "TTL decremented once");
    assert_eq!(&inner[12..], &orig[12..], "inner untouched (no NAT)");
    // The peer sends a packet for the LAN endpoint.
    let mut back = ping(LAN_MAC, "10.77.60.20", "10.77.60.10", 64, 100)[14..].to_vec();
    Ipv4Packet::new_unchecked(&mut back[..]).fill_checksum();
    let WgOut::Send(n) = p.remote.encapsulate(&back, &mut out) else {
        panic!("peer could not encrypt")
    };
    let msg = out[..n].to_vec();
    p.r.run(WAN, &from_peer(&msg));
    let lan = p.r.io.sent(LAN);
    assert_eq!(lan.len(), 1, "decrypted and delivered on the LAN");
    let (frame, ip) = parse_ip(&lan[0]);
    assert_eq!(frame.dst_addr().0, HOST_MAC);
    assert_eq!(
        (ip.src_addr(), ip.dst_addr()),
        (a("10.77.60.20"), a("10.77.60.10"))
    );
    // The same datagram again is a replay.
    p.r.run(WAN, &from_peer(&msg));
    assert!(p.r.io.sent(LAN).is_empty());
    let replay = crate::tunnel::wireguard::WgDrop::ALL
        .iter()
        .position(|d| d.name() == "wg_replay")
        .unwrap();
    assert_eq!(
        p.r.stats.wg_drops[replay].load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // Garbage to the WireGuard port never panics and is counted; an empty
    // datagram (UDP length 8) is not even handed to WireGuard.
    for len in [0usize, 1, 4, 32, 148, 200] {
        p.r.run(WAN, &from_peer(&vec![4u8; len]));
    }
    let dropped: u64 =
        p.r.stats
            .wg_drops
            .iter()
            .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
            .sum();
    assert!(dropped >= 6, "{dropped}");
    assert_eq!(p.r.drops(DropReason::TunnelUdpBadLength), 1);
}

#[test]
fn packets_for_a_peer_owned_elsewhere_are_handed_off() {
    let mut p = pair();
    // Pretend this worker is core 1 of 2: tunnel 5 belongs to core 1 (5 % 2).
    // Take the peer away and make this core 0: the packet must be queued for core 1.
    let handoff = Arc::new(WgHandoff::new(2));
    p.r.worker.set_wireguard(0, 2, Vec::new(), handoff.clone());
    p.r.run(LAN, &ping(LAN_MAC, "10.77.60.10", "10.77.60.20", 64, 64));
    assert!(p.r.io.sent(WAN).is_empty());
    assert_eq!(handoff.queues[1].len(), 1);
    assert_eq!(p.r.events(Event::WgHandedOff), 1);
}
