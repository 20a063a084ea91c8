//! The burst stage against the per-packet stages: the same frames (valid
//! transit traffic, the router's own, broadcast, martians, options, bad
//! checksums, padding, random corruption) through two identical workers,
//! one taking bursts through `burst`, the other every frame through
//! `process`: the frames sent on every port and every counter must match.

use super::*;

fn rig() -> Rig {
    let mut r = Rig::new(true);
    r.neighbor("lan", "10.1.0.10", HOST_MAC);
    r.neighbor("wan", "10.2.0.254", GW_MAC);
    r.default_via_wan_gateway();
    r.change(FibChange::EndpointSet {
        ip: "10.77.0.5".parse().unwrap(),
        action: FeedAction::Local { port: "lan".into() },
    });
    r.neighbor("lan", "10.77.0.5", HOST_MAC);
    // A /32 whose neighbor is unknown (ARP on use), and one that is dropped.
    r.change(FibChange::EndpointSet {
        ip: "10.77.0.6".parse().unwrap(),
        action: FeedAction::Local { port: "lan".into() },
    });
    r.change(FibChange::EndpointSet {
        ip: "10.77.0.7".parse().unwrap(),
        action: FeedAction::Drop,
    });
    r
}

#[test]
fn burst_stage_sends_and_counts_exactly_what_the_per_packet_path_does() {
    use cer_shared::config::{SourceRoutePolicy, UrpfMode};
    // The defaults; then source routes forwarded and strict uRPF on the LAN.
    compare_with(None);
    compare_with(Some(Hygiene {
        source_route: SourceRoutePolicy::Forward,
        urpf: vec![UrpfMode::Strict, UrpfMode::Off],
    }));
}

fn compare_with(policy: Option<Hygiene>) {
    let mut fast = rig();
    let mut slow = rig();
    slow.worker.per_packet = true;
    if let Some(p) = &policy {
        fast.worker.set_hygiene(p);
        slow.worker.set_hygiene(p);
    }
    let mut with_ihl6 = ping(LAN_MAC, "10.1.0.10", "10.77.0.5", 64, 32);
    with_ihl6[14] = 0x46; // IHL 6 (the header bytes are then the options)
    let mut padded = ping(LAN_MAC, "10.1.0.10", "10.77.0.5", 64, 0);
    padded.extend_from_slice(&[0; 12]);
    let to_host = ping(LAN_MAC, "10.1.0.10", "10.77.0.5", 64, 64);
    let seeds = [
        to_host.clone(),
        ping(LAN_MAC, "10.1.0.10", "10.77.0.6", 64, 64),
        ping(LAN_MAC, "10.1.0.10", "10.77.0.7", 64, 64),
        ping(LAN_MAC, "10.1.0.10", "192.0.2.1", 64, 1200),
        ping(LAN_MAC, "10.1.0.10", "192.0.2.1", 1, 64),
        ping(LAN_MAC, "10.1.0.10", "10.2.0.1", 64, 64),
        ping(LAN_MAC, "10.1.0.10", "10.1.0.255", 64, 64),
        ping(LAN_MAC, "127.0.0.1", "10.77.0.5", 64, 64),
        ping(WAN_MAC, "10.2.0.254", "10.77.0.5", 64, 64),
        ping(WAN_MAC, "10.2.0.254", "10.1.0.10", 9, 3000),
        ping([0xff; 6], "10.1.0.10", "10.77.0.5", 64, 64),
        ping(HOST_MAC, "10.1.0.10", "10.77.0.5", 64, 64),
        arp_request(HOST_MAC, "10.1.0.10", "10.1.0.1"),
        with_ihl6,
        padded,
        // RFC 1812: martian and own sources, martian destinations,
        // directed broadcasts, unicast IP in link-layer broadcasts and
        // multicasts, source routes, record route, bad options, a source
        // routed back through the WAN (uRPF), bad ARP senders.
        ping(LAN_MAC, "0.1.2.3", "10.77.0.5", 64, 64),
        ping(LAN_MAC, "169.254.9.9", "10.77.0.5", 64, 64),
        ping(LAN_MAC, "10.2.0.255", "10.77.0.5", 64, 64),
        ping(LAN_MAC, "10.2.0.1", "10.77.0.5", 64, 64),
        ping(WAN_MAC, "10.1.0.1", "10.77.0.5", 64, 64),
        ping(LAN_MAC, "10.1.0.10", "127.0.0.1", 64, 64),
        ping(LAN_MAC, "10.1.0.10", "169.254.1.1", 1, 64),
        ping(LAN_MAC, "10.1.0.10", "0.1.2.3", 64, 64),
        ping(LAN_MAC, "10.1.0.10", "240.0.0.1", 64, 64),
        ping(LAN_MAC, "10.1.0.10", "10.2.0.255", 64, 64),
        ping(WAN_MAC, "10.2.0.254", "10.1.0.255", 64, 64),
        ping([0xff; 6], "10.1.0.10", "192.0.2.1", 1, 64),
        ping([0x33, 0x33, 0, 0, 0, 1], "10.1.0.10", "10.77.0.5", 64, 64),
        with_options(&to_host, &[0x83, 7, 4, 10, 2, 0, 254, 0]),
        with_options(&to_host, &[0x89, 7, 4, 10, 2, 0, 254, 0]),
        with_options(&to_host, &[7, 7, 4, 0, 0, 0, 0, 0]),
        with_options(&to_host, &[7, 9, 4, 0]),
        ping(LAN_MAC, "192.0.2.9", "10.77.0.5", 64, 64),
        ping(LAN_MAC, "192.0.2.9", "10.2.0.1", 64, 64),
        arp_request(HOST_MAC, "10.1.0.255", "10.1.0.1"),
        arp_request(HOST_MAC, "127.0.0.1", "10.1.0.1"),
        arp_request(HOST_MAC, "192.0.2.9", "10.1.0.1"),
    ];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut sent = 0;
    // Half the frames from the first 15 seeds (mostly valid traffic, so
    // bursts mix forwarding with the rest), half from all of them.
    let classic = 15;
    for round in 0..800 {
        let n = 1 + (rnd() % 32) as usize;
        for _ in 0..n {
            let pick = if rnd() % 2 == 0 { classic } else { seeds.len() };
            let mut f = seeds[(rnd() as usize) % pick].clone();
            // Half unchanged (the common case), half corrupted somewhere.
            if rnd() % 2 == 0 {
                for _ in 0..1 + rnd() % 3 {
                    let at = (rnd() as usize) % f.len();
                    f[at] = rnd() as u8;
                }
            }
            let port = if rnd() % 4 == 0 { WAN } else { LAN };
            fast.io.inject(port, &f);
            slow.io.inject(port, &f);
        }
        fast.worker.poll(&mut fast.io);
        slow.worker.poll(&mut slow.io);
        for p in 0..fast.io.tx.len() {
            let (a, b) = (fast.io.sent(p), slow.io.sent(p));
            sent += a.len();
            assert_eq!(a, b, "round {round}: port {p} sent different frames");
        }
        for d in DropReason::ALL {
            assert_eq!(
                fast.drops(*d),
                slow.drops(*d),
                "round {round}: drop {}",
                d.name()
            );
        }
        for e in Event::ALL {
            assert_eq!(
                fast.events(*e),
                slow.events(*e),
                "round {round}: event {}",
                e.name()
            );
        }
        fast.publish();
        slow.publish();
        for r in [&mut fast, &mut slow] {
            while r.io.pool.len() < 64 {
                r.io.pool.push(MemBuf::new());
            }
        }
    }
    assert!(
        fast.events(Event::Forwarded) > 1000,
        "{}",
        fast.events(Event::Forwarded)
    );
    assert!(sent > 1000);
}

/// Two identical tunnel rigs (GRE with a key, FOU, IPIP to one peer), one
/// through the burst stage, one per packet, fed the same frames.
#[test]
fn burst_stage_decapsulates_exactly_like_the_per_packet_path() {
    use crate::tunnel::{self, TunnelInfo, TunnelTable};
    use cer_shared::config::TunnelKind;
    let peer = "10.2.0.254";
    let tunnels: Vec<TunnelInfo> = [
        (1, TunnelKind::Gre, Some(77)),
        (2, TunnelKind::Fou, None),
        (3, TunnelKind::Ipip, None),
    ]
    .into_iter()
    .map(|(id, kind, gre_key)| TunnelInfo {
        id,
        kind,
        local: u("10.2.0.1"),
        remote: u(peer),
        mtu: 1300,
        gre_key,
        port: kind.default_port().unwrap_or(0),
        force_fragment: false,
    })
    .collect();
    let make = || {
        let mut r = Rig::new(true);
        r.fib.set_tunnels(TunnelTable::build(tunnels.clone()));
        r.neighbor("wan", peer, GW_MAC);
        r.neighbor("lan", "10.77.60.10", HOST_MAC);
        r.change(FibChange::EndpointSet {
            ip: "10.77.60.10".parse().unwrap(),
            action: FeedAction::Local { port: "lan".into() },
        });
        r.change(FibChange::EndpointSet {
            ip: "10.77.60.20".parse().unwrap(),
            action: FeedAction::Tunnel { tunnel: 1 },
        });
        r
    };
    let (mut fast, mut slow) = (make(), make());
    slow.worker.per_packet = true;
    // Outer frames as the peer sends them: inner 10.77.60.99 -> 10.77.60.10
    // (local) or -> 10.77.60.20 (behind a tunnel again).
    let outer = |t: &TunnelInfo, inner_dst: &str| {
        let inner = ping(LAN_MAC, "10.77.60.99", inner_dst, 64, 40)[14..].to_vec();
        let mut b = MemBuf::from_frame(&inner);
        let swapped = TunnelInfo {
            local: t.remote,
            remote: t.local,
            ..*t
        };
        assert!(tunnel::encap(&mut b, &swapped, 1, 7));
        let mut frame = b.data().to_vec();
        crate::wire::write_eth(&mut frame, &WAN_MAC, &GW_MAC, crate::wire::ETHERTYPE_IPV4);
        frame
    };
    let mut seeds = Vec::new();
    for t in &tunnels {
        seeds.push(outer(t, "10.77.60.10"));
        seeds.push(outer(t, "10.77.60.20"));
    }
    // Tunnel-looking traffic that is not: UDP to another port, from another peer.
    seeds.push(ping(WAN_MAC, peer, "10.2.0.1", 64, 64));
    let mut stranger = outer(&tunnels[0], "10.77.60.10");
    stranger[14 + 12] ^= 1;
    seeds.push(stranger);
    // RFC 1812 on the tunnel path: FOU with a UDP length of 8 and one past
    // the IP payload; hairpins (to the peer itself); an inner packet
    // claiming the router's address or a martian one.
    let fou = outer(&tunnels[1], "10.77.60.10");
    for ulen in [8u16, 200] {
        let mut f = fou.clone();
        f[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&ulen.to_be_bytes());
        seeds.push(f);
    }
    seeds.push(outer(&tunnels[2], peer));
    for src in ["10.2.0.1", "127.0.0.1"] {
        let mut f = outer(&tunnels[2], "10.77.60.10");
        let inner = 14 + 20;
        f[inner + 12..inner + 16].copy_from_slice(&u(src).to_be_bytes());
        Ipv4Packet::new_unchecked(&mut f[inner..]).fill_checksum();
        seeds.push(f);
    }
    let mut x: u64 = 0x1234_5678_9abc_def1;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..300 {
        for _ in 0..1 + rnd() % 32 {
            let mut f = seeds[(rnd() as usize) % seeds.len()].clone();
            if rnd() % 3 == 0 {
                let at = (rnd() as usize) % f.len();
                f[at] = rnd() as u8;
            }
            fast.io.inject(WAN, &f);
            slow.io.inject(WAN, &f);
        }
        fast.worker.poll(&mut fast.io);
        slow.worker.poll(&mut slow.io);
        for p in 0..fast.io.tx.len() {
            assert_eq!(fast.io.sent(p), slow.io.sent(p), "round {round}: port {p}");
        }
        for d in DropReason::ALL {
            assert_eq!(
                fast.drops(*d),
                slow.drops(*d),
                "round {round}: drop {}",
                d.name()
            );
        }
        for e in Event::ALL {
            assert_eq!(
                fast.events(*e),
                slow.events(*e),
                "round {round}: event {}",
                e.name()
            );
        }
        fast.publish();
        slow.publish();
        for r in [&mut fast, &mut slow] {
            while r.io.pool.len() < 64 {
                r.io.pool.push(MemBuf::new());
            }
        }
    }
    assert!(fast.events(Event::Decapsulated) > 500);
    assert!(fast.events(Event::Forwarded) > 500);
}
