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
    let mut fast = rig();
    let mut slow = rig();
    slow.worker.per_packet = true;
    let mut with_options = ping(LAN_MAC, "10.1.0.10", "10.77.0.5", 64, 32);
    with_options[14] = 0x46; // IHL 6 (the header bytes are then the options)
    let mut padded = ping(LAN_MAC, "10.1.0.10", "10.77.0.5", 64, 0);
    padded.extend_from_slice(&[0; 12]);
    let seeds = [
        ping(LAN_MAC, "10.1.0.10", "10.77.0.5", 64, 64),
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
        with_options,
        padded,
    ];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut sent = 0;
    for round in 0..400 {
        let n = 1 + (rnd() % 32) as usize;
        for _ in 0..n {
            let mut f = seeds[(rnd() as usize) % seeds.len()].clone();
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
