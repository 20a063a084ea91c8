//! IPv4 stage, RFC 1812 hygiene: martian sources (by class, the ports'
//! broadcasts, the router's own addresses) and destinations (even with a
//! default route), directed broadcasts, unicast IP in link-layer broadcasts,
//! source-route options (drop or forward), strict uRPF per port, and no ICMP
//! error ever sent to a source that is not one host. Each case through the
//! burst stage and the per-packet stages alike.

use super::*;
use crate::pipeline::icmp::IcmpError;
use cer_shared::config::{SourceRoutePolicy, UrpfMode};

/// A rig with a default route via the WAN gateway, the LAN host and the
/// gateway resolved; per packet or through the burst stage.
fn rig(per_packet: bool) -> Rig {
    let mut r = Rig::new(false);
    r.worker.per_packet = per_packet;
    r.neighbor("lan", "10.1.0.10", HOST_MAC);
    r.neighbor("wan", "10.2.0.254", GW_MAC);
    r.default_via_wan_gateway();
    r
}

/// Runs `frame` in on `port` and checks it is dropped as `reason`, with
/// nothing sent anywhere (no ICMP error either).
fn dropped_as(r: &mut Rig, port: usize, frame: &[u8], reason: DropReason, what: &str) {
    let before = r.drops(reason);
    r.run(port, frame);
    let named: Vec<&str> = DropReason::ALL
        .iter()
        .filter(|d| r.drops(**d) > 0)
        .map(|d| d.name())
        .collect();
    assert_eq!(
        r.drops(reason),
        before + 1,
        "{what}: expected {} (drops so far: {named:?})",
        reason.name()
    );
    assert!(r.nothing_sent(), "{what}: something was sent");
}

#[test]
fn martian_and_own_sources_are_dropped_by_name_and_never_answered() {
    for per_packet in [false, true] {
        let mut r = rig(per_packet);
        for (src, reason) in [
            ("0.1.2.3", DropReason::Ipv4MartianSource),
            ("0.0.0.0", DropReason::Ipv4MartianSource),
            ("127.0.0.1", DropReason::Ipv4MartianSource),
            ("169.254.7.7", DropReason::Ipv4MartianSource),
            ("224.0.0.9", DropReason::Ipv4MartianSource),
            ("240.0.0.1", DropReason::Ipv4MartianSource),
            ("255.255.255.255", DropReason::Ipv4MartianSource),
            // This port's subnet broadcast, and another port's.
            ("10.1.0.255", DropReason::Ipv4MartianSource),
            ("10.2.0.255", DropReason::Ipv4MartianSource),
            // The router's own addresses, from outside.
            ("10.1.0.1", DropReason::Ipv4SourceIsRouter),
            ("10.2.0.1", DropReason::Ipv4SourceIsRouter),
        ] {
            // TTL 1 too: no time exceeded goes back to such a source.
            for ttl in [64, 1] {
                let f = ping(LAN_MAC, src, "192.0.2.1", ttl, 16);
                dropped_as(&mut r, LAN, &f, reason, &format!("{src} ttl {ttl}"));
            }
        }
        assert_eq!(r.events(Event::IcmpSent), 0);
        // A valid source on the same path is forwarded.
        r.run(LAN, &ping(LAN_MAC, "10.1.0.10", "192.0.2.1", 64, 16));
        assert_eq!(r.io.sent(WAN).len(), 1);
    }
}

#[test]
fn martian_destinations_and_directed_broadcasts_are_not_routed_even_with_a_default_route() {
    for per_packet in [false, true] {
        let mut r = rig(per_packet);
        for (dst, reason) in [
            ("127.0.0.1", DropReason::Ipv4MartianDestination),
            ("127.1.2.3", DropReason::Ipv4MartianDestination),
            ("0.1.2.3", DropReason::Ipv4MartianDestination),
            ("0.0.0.0", DropReason::Ipv4MartianDestination),
            ("169.254.1.1", DropReason::Ipv4MartianDestination),
            ("240.0.0.1", DropReason::Ipv4MartianDestination),
            // Another port's subnet broadcast (RFC 2644: not forwarded).
            ("10.2.0.255", DropReason::Ipv4DirectedBroadcast),
            // This port's: for the kernel side (no TAP here: counted).
            ("10.1.0.255", DropReason::Ipv4NotRoutable),
        ] {
            for ttl in [64, 1] {
                let f = ping(LAN_MAC, "10.1.0.10", dst, ttl, 16);
                dropped_as(&mut r, LAN, &f, reason, &format!("{dst} ttl {ttl}"));
            }
        }
        // Even a learned "neighbor" for a broadcast address cannot make a
        // directed broadcast go out as unicast (and the FIB refuses it).
        assert!(r
            .fib
            .apply(&FibChange::NeighborSet {
                port: "lan".into(),
                ip: "10.1.0.255".parse().unwrap(),
                mac: cer_shared::MacAddr(HOST_MAC),
            })
            .is_err());
        let f = ping(WAN_MAC, "10.2.0.50", "10.1.0.255", 64, 16);
        dropped_as(&mut r, WAN, &f, DropReason::Ipv4DirectedBroadcast, "smurf");
        assert_eq!(r.events(Event::IcmpSent), 0);
    }
}

#[test]
fn unicast_ip_in_a_link_layer_broadcast_or_multicast_is_dropped_and_not_answered() {
    for per_packet in [false, true] {
        let mut r = rig(per_packet);
        let in_broadcast = DropReason::Ipv4UnicastInL2Broadcast;
        for (mac, dst, ttl, reason) in [
            ([0xff; 6], "192.0.2.1", 64, in_broadcast),
            // TTL 1: this frame used to get a time exceeded back.
            ([0xff; 6], "192.0.2.1", 1, in_broadcast),
            ([0xff; 6], "10.1.0.1", 64, in_broadcast),
            // A multicast frame the port did not join never reaches IPv4
            // (only IPv6 takes 33:33:.. frames, by group).
            (
                [0x33, 0x33, 0, 0, 0, 1],
                "192.0.2.1",
                64,
                DropReason::L2Multicast,
            ),
            (
                [0x01, 0x00, 0x5e, 0, 0, 1],
                "192.0.2.1",
                1,
                DropReason::L2Multicast,
            ),
        ] {
            let f = ping(mac, "10.1.0.10", dst, ttl, 16);
            dropped_as(&mut r, LAN, &f, reason, &format!("{mac:02x?} -> {dst}"));
        }
        // Broadcast IP in a broadcast frame is for the kernel side, as before.
        let f = ping([0xff; 6], "10.1.0.10", "255.255.255.255", 64, 16);
        dropped_as(
            &mut r,
            LAN,
            &f,
            DropReason::Ipv4NotRoutable,
            "limited broadcast",
        );
        assert_eq!(r.events(Event::IcmpSent), 0);
    }
}

/// LSRR to 10.2.0.254 (one hop left), then EOOL.
const LSRR: [u8; 8] = [0x83, 7, 4, 10, 2, 0, 254, 0];
/// SSRR, same hop.
const SSRR: [u8; 8] = [0x89, 7, 4, 10, 2, 0, 254, 0];
/// Record route with one empty slot, then EOOL.
const RR: [u8; 8] = [7, 7, 4, 0, 0, 0, 0, 0];

#[test]
fn source_routes_are_dropped_by_default_and_forwarded_untouched_when_configured() {
    for per_packet in [false, true] {
        let mut r = rig(per_packet);
        let plain = ping(LAN_MAC, "10.1.0.10", "192.0.2.1", 64, 16);
        for (opts, what) in [(&LSRR, "lsrr"), (&SSRR, "ssrr")] {
            let f = with_options(&plain, opts);
            dropped_as(&mut r, LAN, &f, DropReason::Ipv4SourceRoute, what);
            // Also to the router itself, and with TTL 1 (no ICMP back).
            let f = with_options(&ping(LAN_MAC, "10.1.0.10", "10.1.0.1", 64, 16), opts);
            dropped_as(&mut r, LAN, &f, DropReason::Ipv4SourceRoute, what);
            let f = with_options(&ping(LAN_MAC, "10.1.0.10", "192.0.2.1", 1, 16), opts);
            dropped_as(&mut r, LAN, &f, DropReason::Ipv4SourceRoute, what);
        }
        // Malformed options: named.
        let f = with_options(&plain, &[7, 9, 4, 0]);
        dropped_as(&mut r, LAN, &f, DropReason::Ipv4BadOptions, "bad length");
        // Record route does not steer the packet: forwarded, options untouched.
        let f = with_options(&plain, &RR);
        r.run(LAN, &f);
        let out = r.io.sent(WAN);
        assert_eq!(out.len(), 1);
        assert_eq!(&out[0][14 + 20..14 + 28], &RR);
        // source_route = "forward": routed by the destination, counted.
        r.worker.set_hygiene(&Hygiene {
            source_route: SourceRoutePolicy::Forward,
            urpf: vec![],
        });
        let f = with_options(&plain, &LSRR);
        r.run(LAN, &f);
        let out = r.io.sent(WAN);
        assert_eq!(out.len(), 1);
        let (_, ip) = parse_ip(&out[0]);
        assert_eq!(ip.dst_addr(), a("192.0.2.1"), "not a source-route hop");
        assert_eq!(&out[0][14 + 20..14 + 28], &LSRR, "option untouched");
        assert_eq!(r.events(Event::SourceRouteForwarded), 1);
    }
}

#[test]
fn strict_urpf_accepts_only_sources_routed_back_through_the_arrival_port() {
    for per_packet in [false, true] {
        let mut r = rig(per_packet);
        r.worker.set_hygiene(&Hygiene {
            source_route: SourceRoutePolicy::Drop,
            urpf: vec![UrpfMode::Strict, UrpfMode::Off],
        });
        r.change(FibChange::EndpointSet {
            ip: "10.77.0.5".parse().unwrap(),
            action: FeedAction::Local { port: "lan".into() },
        });
        r.change(FibChange::EndpointSet {
            ip: "10.77.0.6".parse().unwrap(),
            action: FeedAction::Local { port: "wan".into() },
        });
        r.change(FibChange::EndpointSet {
            ip: "10.77.0.7".parse().unwrap(),
            action: FeedAction::Tunnel { tunnel: 3 },
        });
        // Routed back through the LAN: the connected subnet, a local /32.
        for src in ["10.1.0.10", "10.77.0.5"] {
            r.run(LAN, &ping(LAN_MAC, src, "192.0.2.1", 64, 16));
            assert_eq!(r.io.sent(WAN).len(), 1, "{src} (per packet: {per_packet})");
        }
        // Routed back elsewhere: the default route (WAN), a /32 on the WAN,
        // a /32 behind a tunnel; also to the router itself.
        for (src, dst) in [
            ("192.0.2.7", "192.0.2.1"),
            ("10.2.0.50", "192.0.2.1"),
            ("10.77.0.6", "192.0.2.1"),
            ("10.77.0.7", "192.0.2.1"),
            ("192.0.2.7", "10.1.0.1"),
        ] {
            let f = ping(LAN_MAC, src, dst, 64, 16);
            dropped_as(
                &mut r,
                LAN,
                &f,
                DropReason::Ipv4UrpfFailed,
                &format!("{src} -> {dst}"),
            );
        }
        // The WAN port has no check: any source is forwarded.
        r.run(WAN, &ping(WAN_MAC, "192.0.2.7", "10.1.0.10", 64, 16));
        assert_eq!(r.io.sent(LAN).len(), 1);
    }
}

#[test]
fn no_icmp_error_goes_to_a_source_that_is_not_one_host() {
    // The IPv4 stage drops such packets before an error is due; the ICMP
    // stage still refuses to answer them, whatever path leads there.
    let mut r = rig(false);
    let snap = r.snap.load_full();
    for (frame, what) in [
        (ping(LAN_MAC, "0.1.2.3", "192.0.2.1", 1, 16), "network 0"),
        (ping(LAN_MAC, "127.0.0.1", "192.0.2.1", 1, 16), "loopback"),
        (ping(LAN_MAC, "224.0.0.1", "192.0.2.1", 1, 16), "multicast"),
        (ping(LAN_MAC, "10.2.0.255", "192.0.2.1", 1, 16), "broadcast"),
        (ping(LAN_MAC, "10.2.0.1", "192.0.2.1", 1, 16), "ours"),
        (
            ping(LAN_MAC, "10.1.0.10", "10.2.0.255", 1, 16),
            "to a broadcast",
        ),
        (ping(LAN_MAC, "10.1.0.10", "239.1.1.1", 1, 16), "to a group"),
        (
            ping([0xff; 6], "10.1.0.10", "192.0.2.1", 1, 16),
            "l2 broadcast",
        ),
    ] {
        let before = r.events(Event::IcmpSuppressed);
        r.worker.icmp_error(
            &mut r.io,
            &snap,
            Meta::received(LAN),
            MemBuf::from_frame(&frame),
            IcmpError::TtlExpired,
        );
        r.worker.flush_all(&mut r.io);
        assert_eq!(r.events(Event::IcmpSuppressed), before + 1, "{what}");
        assert!(r.nothing_sent(), "{what}");
    }
    // One host: answered.
    let frame = ping(LAN_MAC, "10.1.0.10", "192.0.2.1", 1, 16);
    r.worker.icmp_error(
        &mut r.io,
        &snap,
        Meta::received(LAN),
        MemBuf::from_frame(&frame),
        IcmpError::TtlExpired,
    );
    r.worker.flush_all(&mut r.io);
    let out = r.io.sent(LAN);
    assert_eq!(out.len(), 1);
    expect_icmp_error(&out[0], 11, 0, "10.1.0.10");
}
