//! Tunnel stage tests: encapsulation of every kind, decapsulation from
//! configured peers only, tunnel MTU (frag-needed, fragment then encap),
//! MSS clamp, reassembly of outer fragments, nested and garbage outers.

use super::*;
use crate::tunnel::{TunnelInfo, TunnelTable};
use cer_shared::config::TunnelKind;

const PEER: &str = "10.2.0.254";

fn tunnel(kind: TunnelKind, key: Option<u32>, mtu: u16) -> TunnelInfo {
    TunnelInfo {
        id: 5,
        kind,
        local: u("10.2.0.1"),
        remote: u(PEER),
        mtu,
        gre_key: key,
        port: kind.default_port().unwrap_or(0),
        force_fragment: false,
    }
}

/// A rig whose /32 10.77.60.20 lives behind tunnel 5 (to 10.2.0.254 on WAN),
/// and 10.77.60.10 is local on LAN.
fn rig(t: TunnelInfo) -> Rig {
    let mut r = Rig::new(false);
    r.fib.set_tunnels(TunnelTable::build(vec![t]));
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
    r
}

fn outer_of(f: &[u8]) -> Ipv4Packet<&[u8]> {
    let (frame, ip) = parse_ip(f);
    assert_eq!(frame.dst_addr().0, GW_MAC);
    assert_eq!(frame.src_addr().0, WAN_MAC);
    assert_eq!(
        (ip.src_addr(), ip.dst_addr()),
        (a("10.2.0.1"), a(PEER)),
        "outer src/dst = transport addresses"
    );
    ip
}

#[test]
fn encapsulates_every_kind_with_the_inner_packet_untouched() {
    for (kind, key, proto, inner_at) in [
        (TunnelKind::Ipip, None, 4u8, 0usize),
        (TunnelKind::Gre, None, 47, 4),
        (TunnelKind::Gre, Some(77), 47, 8),
        (TunnelKind::Fou, None, 17, 8),
        (TunnelKind::Gue, None, 17, 12),
    ] {
        let mut r = rig(tunnel(kind, key, 1300));
        let pkt = ping(LAN_MAC, "10.77.60.10", "10.77.60.20", 64, 100);
        r.run(LAN, &pkt);
        let out = r.io.sent(WAN);
        assert_eq!(out.len(), 1, "{kind:?}");
        let ip = outer_of(&out[0]);
        assert_eq!(u8::from(ip.next_header()), proto);
        let payload = ip.payload();
        let inner = &payload[inner_at..];
        // Inner = original minus Ethernet, TTL 63 (checksum adjusted), nothing else changed.
        let orig = &pkt[14..];
        assert_eq!(inner.len(), orig.len(), "{kind:?}");
        assert_eq!(inner[8], 63);
        assert_eq!(&inner[..8], &orig[..8]);
        assert_eq!(
            &inner[12..],
            &orig[12..],
            "{kind:?}: src/dst and payload untouched (no NAT)"
        );
        assert!(Ipv4Packet::new_checked(inner).unwrap().verify_checksum());
        match kind {
            TunnelKind::Gre => {
                assert_eq!(&payload[2..4], &[0x08, 0x00]);
                if let Some(k) = key {
                    assert_eq!(payload[0] & 0x20, 0x20, "K bit");
                    assert_eq!(&payload[4..8], &k.to_be_bytes());
                }
            }
            TunnelKind::Fou | TunnelKind::Gue => {
                assert!(u16::from_be_bytes([payload[0], payload[1]]) >= 49152);
                assert_eq!(
                    u16::from_be_bytes([payload[2], payload[3]]),
                    kind.default_port().unwrap()
                );
                assert_eq!(
                    usize::from(u16::from_be_bytes([payload[4], payload[5]])),
                    payload.len()
                );
                if kind == TunnelKind::Gue {
                    assert_eq!(&payload[8..12], &[0, 4, 0, 0]);
                }
            }
            _ => {}
        }
        assert_eq!(r.events(Event::Encapsulated), 1);
    }
}

#[test]
fn decapsulates_from_the_configured_peer_only() {
    for (kind, key) in [
        (TunnelKind::Ipip, None),
        (TunnelKind::Gre, Some(9)),
        (TunnelKind::Fou, None),
        (TunnelKind::Gue, None),
    ] {
        // Build the outer packet by encapsulating on a mirror rig, then feed it in.
        let t = tunnel(kind, key, 1300);
        let mut mirror = rig(t);
        mirror.run(LAN, &ping(LAN_MAC, "10.77.60.99", "10.77.60.20", 64, 64));
        let mut outer = mirror.io.sent(WAN).remove(0);
        // Swap it around as the peer would send it: from 10.2.0.254 to 10.2.0.1, to our MAC.
        outer[0..6].copy_from_slice(&WAN_MAC);
        outer[6..12].copy_from_slice(&GW_MAC);
        {
            let mut ip = Ipv4Packet::new_unchecked(&mut outer[14..]);
            ip.set_src_addr(a(PEER));
            ip.set_dst_addr(a("10.2.0.1"));
            ip.fill_checksum();
        }
        // Inner destination: the local endpoint 10.77.60.10.
        let inner_at = 14 + 20 + t.overhead() - 20;
        {
            let mut inner = Ipv4Packet::new_unchecked(&mut outer[inner_at..]);
            inner.set_dst_addr(a("10.77.60.10"));
            inner.fill_checksum();
        }
        let mut r = rig(t);
        r.run(WAN, &outer);
        let out = r.io.sent(LAN);
        assert_eq!(
            out.len(),
            1,
            "{kind:?}: {:?}",
            DropReason::ALL
                .iter()
                .filter(|d| r.drops(**d) > 0)
                .map(|d| d.name())
                .collect::<Vec<_>>()
        );
        let (frame, ip) = parse_ip(&out[0]);
        assert_eq!(frame.dst_addr().0, HOST_MAC);
        assert_eq!(
            (ip.src_addr(), ip.dst_addr()),
            (a("10.77.60.99"), a("10.77.60.10")),
            "source preserved"
        );
        assert_eq!(r.events(Event::Decapsulated), 1);
        // The same packet from another source is never relayed.
        let mut spoofed = outer.clone();
        {
            let mut ip = Ipv4Packet::new_unchecked(&mut spoofed[14..]);
            ip.set_src_addr(a("10.2.0.77"));
            ip.fill_checksum();
        }
        r.run(WAN, &spoofed);
        assert!(r.io.sent(LAN).is_empty());
        assert_eq!(r.drops(DropReason::TunnelUnknownPeer), 1, "{kind:?}");
    }
}

#[test]
fn tunnel_mtu_df_gets_frag_needed_and_no_df_is_fragmented_then_encapsulated() {
    let t = tunnel(TunnelKind::Gre, None, 1000);
    let mut r = rig(t);
    let mut big = ping(LAN_MAC, "10.77.60.10", "10.77.60.20", 64, 1400);
    set_df(&mut big, true);
    r.run(LAN, &big);
    assert!(r.io.sent(WAN).is_empty());
    let back = r.io.sent(LAN);
    let icmp = expect_icmp_error(&back[0], 3, 4, "10.77.60.10");
    assert_eq!(
        u16::from_be_bytes([icmp[6], icmp[7]]),
        1000,
        "next-hop MTU = tunnel MTU"
    );
    set_df(&mut big, false);
    r.run(LAN, &big);
    let out = r.io.sent(WAN);
    assert_eq!(out.len(), 2, "two inner fragments, each encapsulated");
    let mut data = Vec::new();
    for f in &out {
        let outer = outer_of(f);
        assert!(usize::from(outer.total_len()) <= 1024);
        let inner = Ipv4Packet::new_checked(&outer.payload()[4..]).unwrap();
        assert!(inner.verify_checksum());
        assert_eq!(usize::from(inner.frag_offset()), data.len());
        data.extend_from_slice(inner.payload());
    }
    assert_eq!(data, Ipv4Packet::new_checked(&big[14..]).unwrap().payload());
    // force_fragment: DF ignored.
    let mut forced = tunnel(TunnelKind::Gre, None, 1000);
    forced.force_fragment = true;
    let mut r = rig(forced);
    set_df(&mut big, true);
    r.run(LAN, &big);
    assert_eq!(r.io.sent(WAN).len(), 2);
}

#[test]
fn mss_is_clamped_into_the_tunnel() {
    let mut r = rig(tunnel(TunnelKind::Fou, None, 1372));
    // A TCP SYN with MSS 1460 from the LAN endpoint.
    let mut p = vec![0u8; 14];
    p[0..6].copy_from_slice(&LAN_MAC);
    p[6..12].copy_from_slice(&HOST_MAC);
    p[12] = 0x08;
    let mut ip = vec![
        0x45, 0, 0, 44, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 77, 60, 10, 10, 77, 60, 20,
    ];
    ip.extend_from_slice(&[
        0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x60, 0x02, 0xfa, 0xf0, 0, 0, 0, 0, 2, 4, 0x05,
        0xb4,
    ]);
    wire::fill_ip_checksum(&mut ip, 20);
    p.extend_from_slice(&ip);
    r.run(LAN, &p);
    let out = r.io.sent(WAN);
    let outer = outer_of(&out[0]);
    let inner = &outer.payload()[8..];
    assert_eq!(
        u16::from_be_bytes([inner[20 + 22], inner[20 + 23]]),
        1332,
        "MSS = tunnel MTU - 40"
    );
    assert_eq!(r.events(Event::MssClamped), 1);
}

#[test]
fn fragmented_outer_packets_are_reassembled_then_decapsulated() {
    let t = tunnel(TunnelKind::Ipip, None, 1400);
    let mut r = rig(t);
    // An IPIP packet from the peer carrying a 1200-byte inner ping to the LAN endpoint,
    // fragmented by the underlay into 3 outer fragments.
    let mut inner = ping(LAN_MAC, "10.77.60.99", "10.77.60.10", 64, 1200)[14..].to_vec();
    // Not DF: the underlay may fragment the outer packet.
    Ipv4Packet::new_unchecked(&mut inner[..]).set_dont_frag(false);
    Ipv4Packet::new_unchecked(&mut inner[..]).fill_checksum();
    let mut payload_frags = Vec::new();
    for (i, chunk) in inner.chunks(512).enumerate() {
        let off = i * 512;
        let last = off + chunk.len() == inner.len();
        let mut f = vec![0u8; 14];
        f[0..6].copy_from_slice(&WAN_MAC);
        f[6..12].copy_from_slice(&GW_MAC);
        f[12] = 0x08;
        let total = 20 + chunk.len();
        let ff = ((off / 8) as u16) | if last { 0 } else { 0x2000 };
        let mut h = vec![
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0x12,
            0x34,
            (ff >> 8) as u8,
            ff as u8,
            60,
            4,
            0,
            0,
        ];
        h.extend_from_slice(&u(PEER).to_be_bytes());
        h.extend_from_slice(&u("10.2.0.1").to_be_bytes());
        wire::fill_ip_checksum(&mut h, 20);
        f.extend_from_slice(&h);
        f.extend_from_slice(chunk);
        payload_frags.push(f);
    }
    payload_frags.reverse();
    for f in &payload_frags {
        r.run(WAN, f);
    }
    let out = r.io.sent(LAN);
    assert_eq!(out.len(), 1);
    let (_, ip) = parse_ip(&out[0]);
    assert_eq!(ip.dst_addr(), a("10.77.60.10"));
    assert_eq!(usize::from(ip.total_len()), inner.len());
    assert_eq!(r.events(Event::Reassembled), 1);
}

#[test]
fn nested_tunnels_and_garbage_outer_never_panic() {
    let t = tunnel(TunnelKind::Ipip, None, 1400);
    let mut r = rig(t);
    // IPIP inside IPIP to us: the inner tunnel packet is refused.
    let mut inner_tunnel = ping(WAN_MAC, PEER, "10.2.0.1", 64, 40)[14..].to_vec();
    inner_tunnel[9] = 4;
    Ipv4Packet::new_unchecked(&mut inner_tunnel[..]).fill_checksum();
    let mut f = vec![0u8; 14];
    f[0..6].copy_from_slice(&WAN_MAC);
    f[12] = 0x08;
    let total = 20 + inner_tunnel.len();
    let mut h = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0,
        0,
        60,
        4,
        0,
        0,
    ];
    h.extend_from_slice(&u(PEER).to_be_bytes());
    h.extend_from_slice(&u("10.2.0.1").to_be_bytes());
    wire::fill_ip_checksum(&mut h, 20);
    f.extend_from_slice(&h);
    f.extend_from_slice(&inner_tunnel);
    r.run(WAN, &f);
    assert_eq!(r.drops(DropReason::TunnelNested), 1);
    // Random mutations of valid outer packets of every kind.
    let mut x: u64 = 0x1234_5678_9abc_def1;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for kind in [
        TunnelKind::Ipip,
        TunnelKind::Gre,
        TunnelKind::Fou,
        TunnelKind::Gue,
    ] {
        let t = tunnel(kind, None, 1300);
        let mut m = rig(t);
        m.run(LAN, &ping(LAN_MAC, "10.77.60.10", "10.77.60.20", 64, 64));
        let seed = m.io.sent(WAN).remove(0);
        let mut r = rig(t);
        for _ in 0..3000 {
            let mut f = seed.clone();
            f[0..6].copy_from_slice(&WAN_MAC);
            for _ in 0..1 + rnd() % 3 {
                let at = 14 + (rnd() as usize) % (f.len() - 14);
                f[at] = rnd() as u8;
            }
            r.io.inject(WAN, &f);
            r.worker.poll(&mut r.io);
            for p in 0..2 {
                r.io.tx[p].clear();
            }
            while r.io.pool.len() < 16 {
                r.io.pool.push(MemBuf::new());
            }
        }
    }
}

/// An outer frame as the peer of `t` sends it, carrying `inner` (an IPv4
/// packet, no Ethernet header).
fn from_peer(t: &TunnelInfo, inner: &[u8]) -> Vec<u8> {
    let mut b = MemBuf::from_frame(inner);
    let swapped = TunnelInfo {
        local: t.remote,
        remote: t.local,
        ..*t
    };
    assert!(crate::tunnel::encap(&mut b, &swapped, 1, 7));
    let mut frame = b.data().to_vec();
    wire::write_eth(&mut frame, &WAN_MAC, &GW_MAC, wire::ETHERTYPE_IPV4);
    frame
}

#[test]
fn fou_and_gue_with_a_bad_udp_length_are_dropped_by_name() {
    for per_packet in [false, true] {
        for kind in [TunnelKind::Fou, TunnelKind::Gue] {
            let t = tunnel(kind, None, 1300);
            let mut r = rig(t);
            r.worker.per_packet = per_packet;
            let inner = ping(LAN_MAC, "10.77.60.99", "10.77.60.10", 64, 40)[14..].to_vec();
            let good = from_peer(&t, &inner);
            let ulen_at = 14 + 20 + 4;
            let ulen = u16::from_be_bytes([good[ulen_at], good[ulen_at + 1]]);
            // 8: no payload (the inner packet after it is not in the datagram);
            // shorter or longer than the IP payload.
            for bad in [8, 0, ulen - 4, ulen + 4] {
                let mut f = good.clone();
                f[ulen_at..ulen_at + 2].copy_from_slice(&bad.to_be_bytes());
                let before = r.drops(DropReason::TunnelUdpBadLength);
                r.run(WAN, &f);
                assert_eq!(
                    r.drops(DropReason::TunnelUdpBadLength),
                    before + 1,
                    "{kind:?} UDP length {bad}"
                );
                assert!(r.nothing_sent(), "{kind:?} UDP length {bad}");
            }
            assert_eq!(r.events(Event::Decapsulated), 0);
            r.run(WAN, &good);
            assert_eq!(r.io.sent(LAN).len(), 1, "{kind:?}: the well-formed one");
        }
    }
}

#[test]
fn decapsulated_packets_never_go_back_into_a_tunnel_nor_to_a_peer() {
    for per_packet in [false, true] {
        let t = tunnel(TunnelKind::Ipip, None, 1400);
        // A second peer (on the WAN too) with a /32 behind it.
        let other = TunnelInfo {
            id: 6,
            remote: u("10.2.0.253"),
            ..tunnel(TunnelKind::Gre, None, 1400)
        };
        let mut r = rig(t);
        r.worker.per_packet = per_packet;
        r.fib.set_tunnels(TunnelTable::build(vec![t, other]));
        r.neighbor("wan", "10.2.0.253", GW2_MAC);
        r.change(FibChange::EndpointSet {
            ip: "10.77.60.21".parse().unwrap(),
            action: FeedAction::Tunnel { tunnel: 6 },
        });
        for (src, dst, reason) in [
            // Back into the tunnel it came from, and into another one.
            ("10.77.60.99", "10.77.60.20", DropReason::TunnelHairpin),
            ("10.77.60.99", "10.77.60.21", DropReason::TunnelHairpin),
            // To the transport address of the peer it came from, of another.
            ("10.77.60.99", PEER, DropReason::TunnelHairpin),
            ("10.77.60.99", "10.2.0.253", DropReason::TunnelHairpin),
            // An inner packet claiming the router's address, or martian.
            ("10.2.0.1", "10.77.60.10", DropReason::Ipv4SourceIsRouter),
            ("10.1.0.1", "10.77.60.10", DropReason::Ipv4SourceIsRouter),
            ("127.0.0.1", "10.77.60.10", DropReason::Ipv4MartianSource),
            (
                "10.77.60.99",
                "127.0.0.1",
                DropReason::Ipv4MartianDestination,
            ),
        ] {
            let inner = ping(LAN_MAC, src, dst, 64, 40)[14..].to_vec();
            let before = r.drops(reason);
            r.run(WAN, &from_peer(&t, &inner));
            assert_eq!(r.drops(reason), before + 1, "{src} -> {dst}");
            assert!(r.nothing_sent(), "{src} -> {dst}");
        }
        assert_eq!(r.events(Event::Encapsulated), 0);
        // The local /32 is delivered.
        let inner = ping(LAN_MAC, "10.77.60.99", "10.77.60.10", 64, 40)[14..].to_vec();
        r.run(WAN, &from_peer(&t, &inner));
        assert_eq!(r.io.sent(LAN).len(), 1);
    }
}
