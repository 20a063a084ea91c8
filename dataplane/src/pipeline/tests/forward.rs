//! Forwarding tests: LPM and ECMP, /32 exact match and its actions, ICMP
//! errors (TTL, no route, frag-needed) and their rate limit, fragmentation,
//! the router's own traffic (echo, TAP), tx and pool exhaustion.

use super::*;

#[test]
fn lpm_default_route_and_ecmp() {
    let mut r = Rig::new(false);
    r.neighbor("wan", "10.2.0.254", GW_MAC);
    r.neighbor("wan", "10.2.0.253", GW2_MAC);
    r.default_via_wan_gateway();
    r.run(LAN, &ping(LAN_MAC, "10.1.0.10", "192.0.2.1", 64, 8));
    let out = r.io.sent(WAN);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0][0..6], &GW_MAC);
    // ECMP over two gateways, stable per flow.
    r.change(FibChange::RouteSet {
        prefix: "0.0.0.0/0".parse().unwrap(),
        nexthops: vec![
            NextHop {
                port: "wan".into(),
                gateway: Some("10.2.0.254".parse().unwrap()),
                gateway6: None,
            },
            NextHop {
                port: "wan".into(),
                gateway: Some("10.2.0.253".parse().unwrap()),
                gateway6: None,
            },
        ],
    });
    let mut used = [0; 2];
    for i in 0..64 {
        let dst = format!("198.51.100.{i}");
        r.run(LAN, &ping(LAN_MAC, "10.1.0.10", &dst, 64, 8));
        r.run(LAN, &ping(LAN_MAC, "10.1.0.10", &dst, 64, 8));
        let out = r.io.sent(WAN);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0][0..6], out[1][0..6], "same flow, same next hop");
        used[usize::from(out[0][0..6] == GW2_MAC)] += 1;
    }
    assert!(used[0] > 8 && used[1] > 8, "{used:?}");
}

#[test]
fn exact_match_beats_lpm_and_tunnel_or_drop_actions_count() {
    let mut r = Rig::new(false);
    r.neighbor("wan", "10.2.0.254", GW_MAC);
    r.neighbor("lan", "10.77.60.10", HOST_MAC);
    r.change(FibChange::RouteSet {
        prefix: "10.77.60.0/24".parse().unwrap(),
        nexthops: vec![NextHop {
            port: "wan".into(),
            gateway: Some("10.2.0.254".parse().unwrap()),
            gateway6: None,
        }],
    });
    r.change(FibChange::EndpointSet {
        ip: "10.77.60.10".parse().unwrap(),
        action: FeedAction::Local { port: "lan".into() },
    });
    r.change(FibChange::EndpointSet {
        ip: "10.77.60.11".parse().unwrap(),
        action: FeedAction::Tunnel { tunnel: 3 },
    });
    r.change(FibChange::EndpointSet {
        ip: "10.77.60.12".parse().unwrap(),
        action: FeedAction::Drop,
    });
    r.run(WAN, &ping(WAN_MAC, "10.2.0.50", "10.77.60.10", 64, 8));
    assert_eq!(r.io.sent(LAN).len(), 1);
    r.run(LAN, &ping(LAN_MAC, "10.1.0.10", "10.77.60.13", 64, 8));
    assert_eq!(
        r.io.sent(WAN).len(),
        1,
        "LPM fallback for a /32 not in the table"
    );
    r.run(LAN, &ping(LAN_MAC, "10.1.0.10", "10.77.60.11", 64, 8));
    r.run(LAN, &ping(LAN_MAC, "10.1.0.10", "10.77.60.12", 64, 8));
    assert!(r.nothing_sent());
    assert_eq!(r.drops(DropReason::NoTunnel), 1);
    assert_eq!(r.drops(DropReason::EndpointDrop), 1);
    // Moving the /32 changes where packets go, without restarting anything.
    r.change(FibChange::EndpointDel {
        ip: "10.77.60.10".parse().unwrap(),
    });
    r.run(LAN, &ping(LAN_MAC, "10.1.0.10", "10.77.60.10", 64, 8));
    assert_eq!(r.io.sent(WAN).len(), 1);
}

#[test]
fn ttl_expiry_sends_time_exceeded_from_router_address() {
    let mut r = Rig::new(false);
    r.neighbor("lan", "10.1.0.10", HOST_MAC);
    r.neighbor("wan", "10.2.0.254", GW_MAC);
    r.default_via_wan_gateway();
    let pkt = ping(LAN_MAC, "10.1.0.10", "192.0.2.1", 1, 16);
    r.run(LAN, &pkt);
    assert!(r.io.sent(WAN).is_empty());
    let out = r.io.sent(LAN);
    assert_eq!(out.len(), 1);
    let icmp = expect_icmp_error(&out[0], 11, 0, "10.1.0.10");
    // Quote: the original header + 8 bytes.
    assert_eq!(&icmp[8..8 + 28], &pkt[14..14 + 28]);
    assert_eq!(&out[0][0..6], &HOST_MAC);
    assert_eq!(r.drops(DropReason::TtlExpired), 1);
    assert_eq!(r.events(Event::IcmpSent), 1);
    // TTL 0 too.
    r.run(LAN, &ping(LAN_MAC, "10.1.0.10", "192.0.2.1", 0, 16));
    assert_eq!(r.drops(DropReason::TtlExpired), 2);
}

#[test]
fn no_route_sends_unreachable_and_icmp_is_rate_limited() {
    let mut r = Rig::new(false);
    r.neighbor("lan", "10.1.0.10", HOST_MAC);
    r.run(LAN, &ping(LAN_MAC, "10.1.0.10", "192.0.2.1", 64, 16));
    let out = r.io.sent(LAN);
    assert_eq!(out.len(), 1);
    expect_icmp_error(&out[0], 3, 0, "10.1.0.10");
    assert_eq!(r.drops(DropReason::NoRoute), 1);
    // Burst well past the bucket: some are rate limited, none panics.
    for _ in 0..200 {
        r.run(LAN, &ping(LAN_MAC, "10.1.0.10", "192.0.2.1", 64, 16));
    }
    assert!(r.events(Event::IcmpRateLimited) > 0);
    assert!(r.events(Event::IcmpSent) <= 51);
}

#[test]
fn df_too_big_gets_frag_needed_with_mtu() {
    let mut r = Rig::new(false);
    r.neighbor("lan", "10.1.0.10", HOST_MAC);
    r.neighbor("wan", "10.2.0.254", GW_MAC);
    r.default_via_wan_gateway();
    let mut pkt = ping(LAN_MAC, "10.1.0.10", "192.0.2.1", 64, 1450);
    set_df(&mut pkt, true);
    r.run(LAN, &pkt);
    assert!(r.io.sent(WAN).is_empty());
    let out = r.io.sent(LAN);
    let icmp = expect_icmp_error(&out[0], 3, 4, "10.1.0.10");
    assert_eq!(
        u16::from_be_bytes([icmp[6], icmp[7]]),
        1400,
        "next-hop MTU of the WAN port"
    );
    assert_eq!(r.drops(DropReason::FragNeeded), 1);
}

#[test]
fn df_clear_too_big_is_fragmented_and_reassembles() {
    let mut r = Rig::new(false);
    r.neighbor("wan", "10.2.0.254", GW_MAC);
    r.default_via_wan_gateway();
    let mut pkt = ping(LAN_MAC, "10.1.0.10", "192.0.2.1", 64, 3000);
    set_df(&mut pkt, false);
    r.run(LAN, &pkt);
    let out = r.io.sent(WAN);
    let dropped: Vec<_> = DropReason::ALL
        .iter()
        .filter(|d| r.drops(**d) > 0)
        .map(|d| d.name())
        .collect();
    assert_eq!(out.len(), 3, "drops: {dropped:?}");
    let orig = Ipv4Packet::new_checked(&pkt[14..]).unwrap();
    let mut payload = Vec::new();
    for (i, f) in out.iter().enumerate() {
        let (frame, ip) = parse_ip(f);
        assert_eq!(frame.dst_addr().0, GW_MAC);
        assert!(ip.total_len() <= 1400);
        assert_eq!(ip.ident(), orig.ident());
        assert_eq!(ip.hop_limit(), 63);
        assert_eq!(usize::from(ip.frag_offset()), payload.len());
        assert_eq!(ip.more_frags(), i < 2);
        payload.extend_from_slice(ip.payload());
    }
    assert_eq!(payload, orig.payload());
    assert_eq!(r.events(Event::FragmentsSent), 3);
}

#[test]
fn router_answers_echo_without_tap_and_punts_with_tap() {
    let mut r = Rig::new(false);
    r.neighbor("lan", "10.1.0.10", HOST_MAC);
    r.run(LAN, &ping(LAN_MAC, "10.1.0.10", "10.1.0.1", 64, 16));
    let out = r.io.sent(LAN);
    assert_eq!(out.len(), 1);
    let (_, ip) = parse_ip(&out[0]);
    assert_eq!(
        (ip.src_addr(), ip.dst_addr()),
        (a("10.1.0.1"), a("10.1.0.10"))
    );
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum());
    assert!(matches!(
        Icmpv4Repr::parse(&icmp, &ChecksumCapabilities::default()).unwrap(),
        Icmpv4Repr::EchoReply {
            ident: 7,
            seq_no: 1,
            ..
        }
    ));
    // TCP to the router without a TAP: counted drop.
    let mut tcp = ping(LAN_MAC, "10.1.0.10", "10.1.0.1", 64, 16);
    tcp[14 + 9] = 6;
    Ipv4Packet::new_unchecked(&mut tcp[14..]).fill_checksum();
    r.run(LAN, &tcp);
    assert_eq!(r.drops(DropReason::NoExceptionPath), 1);

    let mut r = Rig::new(true);
    let pkt = ping(WAN_MAC, "10.2.0.50", "10.2.0.1", 64, 16);
    r.run(WAN, &pkt);
    let out = r.io.sent(2);
    assert_eq!(out, vec![pkt.clone()], "punted unchanged to the TAP");
    // Kernel frames from the TAP leave on the paired NIC port unchanged.
    r.run(2, &pkt);
    assert_eq!(r.io.sent(WAN), vec![pkt]);
    assert_eq!(r.events(Event::FromTap), 1);
    // But never a runt, nor a frame above the port's largest (fuzzing
    // found both sent as they came).
    r.run(2, &[0u8; 0]);
    r.run(2, &[0u8; 13]);
    assert_eq!(r.drops(DropReason::EthTruncated), 2);
    r.run(2, &vec![0u8; 1400 + 18 + 1]);
    assert_eq!(r.drops(DropReason::Oversized), 1);
    assert!(r.nothing_sent());
    // ARP replies for us reach the kernel too.
    r.run(
        WAN,
        &arp_frame(
            ArpOperation::Reply,
            GW_MAC,
            "10.2.0.254",
            WAN_MAC,
            "10.2.0.1",
            WAN_MAC,
        ),
    );
    assert_eq!(r.io.sent(2).len(), 1);
}

#[test]
fn tx_full_and_no_mbuf_are_counted() {
    let mut r = Rig::new(false);
    r.neighbor("lan", "10.1.0.10", HOST_MAC);
    r.neighbor("wan", "10.2.0.254", GW_MAC);
    r.default_via_wan_gateway();
    r.io.tx_room[WAN] = 3;
    for _ in 0..10 {
        r.io.inject(LAN, &ping(LAN_MAC, "10.1.0.10", "192.0.2.1", 64, 8));
    }
    r.worker.poll(&mut r.io);
    assert_eq!(r.io.sent(WAN).len(), 3);
    assert_eq!(r.drops(DropReason::TxFull), 7);
    // Fragmenting with an empty buffer pool.
    r.io.tx_room[WAN] = usize::MAX;
    r.io.pool.clear();
    let mut big = ping(LAN_MAC, "10.1.0.10", "192.0.2.1", 64, 3000);
    set_df(&mut big, false);
    r.run(LAN, &big);
    assert_eq!(r.drops(DropReason::NoMbuf), 1);
    assert_eq!(r.drops(DropReason::FragFailed), 1);
}

#[test]
fn a_port_without_link_names_its_drops_port_link_down() {
    use crate::pipeline::LinkState;
    use std::sync::atomic::{AtomicBool, AtomicU64};
    let mut r = Rig::new(false);
    r.neighbor("wan", "10.2.0.254", GW_MAC);
    r.default_via_wan_gateway();
    let links = Arc::new(LinkState {
        up: (0..2).map(|_| AtomicBool::new(true)).collect(),
        down_events: (0..2).map(|_| AtomicU64::new(0)).collect(),
        kernel_ring_drops: (0..2).map(|_| AtomicU64::new(0)).collect(),
    });
    r.worker.set_link_state(links.clone());
    // The WAN peer is gone: its ring takes nothing.
    links.up[WAN].store(false, std::sync::atomic::Ordering::Relaxed);
    r.io.tx_room[WAN] = 0;
    for _ in 0..5 {
        r.io.inject(LAN, &ping(LAN_MAC, "10.1.0.10", "192.0.2.1", 64, 8));
    }
    r.worker.poll(&mut r.io);
    assert_eq!(r.drops(DropReason::PortLinkDown), 5);
    assert_eq!(r.drops(DropReason::TxFull), 0);
    // Link up again but the ring full: that is a full ring.
    links.up[WAN].store(true, std::sync::atomic::Ordering::Relaxed);
    r.io.inject(LAN, &ping(LAN_MAC, "10.1.0.10", "192.0.2.1", 64, 8));
    r.worker.poll(&mut r.io);
    assert_eq!(r.drops(DropReason::TxFull), 1);
    assert_eq!(r.drops(DropReason::PortLinkDown), 5);
}
