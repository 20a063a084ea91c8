//! ARP stage tests: replies for the port's addresses, proxy ARP behind its
//! gate, learning, resolution requests and their rate limit, gratuitous ARP.

use super::*;

#[test]
fn arp_reply_for_port_address() {
    let mut r = Rig::new(false);
    r.run(LAN, &arp_request(HOST_MAC, "10.1.0.10", "10.1.0.1"));
    let out = r.io.sent(LAN);
    assert_eq!(out.len(), 1);
    match parse_arp(&out[0]) {
        ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            target_hardware_addr,
            target_protocol_addr,
        } => {
            assert_eq!(operation, ArpOperation::Reply);
            assert_eq!(source_hardware_addr.0, LAN_MAC);
            assert_eq!(source_protocol_addr, a("10.1.0.1"));
            assert_eq!(target_hardware_addr.0, HOST_MAC);
            assert_eq!(target_protocol_addr, a("10.1.0.10"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(&out[0][0..6], &HOST_MAC);
    assert_eq!(r.events(Event::ArpReplySent), 1);
    // The requester was learned.
    let n = r.snap.load().neighbors.get(0, u("10.1.0.10")).unwrap();
    assert_eq!(n.mac, HOST_MAC);
}

#[test]
fn arp_for_foreign_target_is_dropped_silently() {
    let mut r = Rig::new(false);
    r.run(LAN, &arp_request(HOST_MAC, "10.1.0.10", "10.1.0.99"));
    assert!(r.nothing_sent());
    assert_eq!(r.drops(DropReason::ArpNotForUs), 1);
    // Not learned: the request was not for us.
    assert!(r.snap.load().neighbors.get(0, u("10.1.0.10")).is_none());
}

#[test]
fn proxy_arp_answers_only_while_active_and_only_on_enabled_ports() {
    let mut r = Rig::new(false);
    r.change(FibChange::ProxyArpSet {
        ip: "10.1.0.77".parse().unwrap(),
    });
    // Gate closed (VRRP backup): silent.
    r.run(LAN, &arp_request(HOST_MAC, "10.1.0.10", "10.1.0.77"));
    assert!(r.nothing_sent());
    assert_eq!(r.events(Event::ProxyArpSilent), 1);
    r.change(FibChange::ProxyArpActive { active: true });
    r.run(LAN, &arp_request(HOST_MAC, "10.1.0.10", "10.1.0.77"));
    let out = r.io.sent(LAN);
    assert_eq!(out.len(), 1);
    let ArpRepr::EthernetIpv4 {
        source_hardware_addr,
        source_protocol_addr,
        ..
    } = parse_arp(&out[0])
    else {
        unreachable!()
    };
    assert_eq!(source_hardware_addr.0, LAN_MAC);
    assert_eq!(source_protocol_addr, a("10.1.0.77"));
    assert_eq!(r.events(Event::ProxyArpReplySent), 1);
    // WAN has proxy_arp = false.
    r.run(WAN, &arp_request(GW_MAC, "10.2.0.254", "10.1.0.77"));
    assert!(r.nothing_sent());
    // A gratuitous ARP from someone else for the captured /32 is never answered,
    // and raises the duplicate-holder alarm.
    r.run(LAN, &arp_request(HOST_MAC, "10.1.0.77", "10.1.0.77"));
    assert!(r.nothing_sent());
    assert_eq!(r.events(Event::DuplicateHolder), 1);
    // Deactivated again: silent.
    r.change(FibChange::ProxyArpActive { active: false });
    r.run(LAN, &arp_request(HOST_MAC, "10.1.0.10", "10.1.0.77"));
    assert!(r.nothing_sent());
}

#[test]
fn resolution_requests_rate_limits_then_forwards() {
    let mut r = Rig::new(false);
    r.change(FibChange::EndpointSet {
        ip: "10.77.60.10".parse().unwrap(),
        action: FeedAction::Local { port: "lan".into() },
    });
    r.run(WAN, &ping(WAN_MAC, "10.2.0.50", "10.77.60.10", 64, 32));
    let out = r.io.sent(LAN);
    assert_eq!(out.len(), 1, "one ARP request");
    let ArpRepr::EthernetIpv4 {
        operation,
        source_protocol_addr,
        target_protocol_addr,
        ..
    } = parse_arp(&out[0])
    else {
        unreachable!()
    };
    assert_eq!(
        (operation, source_protocol_addr, target_protocol_addr),
        (ArpOperation::Request, a("10.1.0.1"), a("10.77.60.10"))
    );
    assert_eq!(&out[0][0..6], &[0xff; 6]);
    assert_eq!(r.drops(DropReason::NeighborUnresolved), 1);
    // Second packet within arp_retry: no new request.
    r.run(WAN, &ping(WAN_MAC, "10.2.0.50", "10.77.60.10", 64, 32));
    assert!(r.io.sent(LAN).is_empty());
    assert_eq!(r.events(Event::ArpRequestSuppressed), 1);
    // After the retry interval a new request goes out.
    r.io.now_ns += 1_100_000_000;
    r.run(WAN, &ping(WAN_MAC, "10.2.0.50", "10.77.60.10", 64, 32));
    assert_eq!(r.io.sent(LAN).len(), 1);
    // The reply teaches the neighbor, although the /32 is outside the LAN subnet.
    r.run(
        LAN,
        &arp_frame(
            ArpOperation::Reply,
            HOST_MAC,
            "10.77.60.10",
            LAN_MAC,
            "10.1.0.1",
            LAN_MAC,
        ),
    );
    assert_eq!(
        r.snap
            .load()
            .neighbors
            .get(0, u("10.77.60.10"))
            .unwrap()
            .mac,
        HOST_MAC
    );
    // An unsolicited ARP from a stranger teaches nothing.
    r.run(
        LAN,
        &arp_request([2, 0, 0, 0, 9, 9], "10.77.60.99", "10.77.60.99"),
    );
    assert!(r.snap.load().neighbors.get(0, u("10.77.60.99")).is_none());
    let pkt = ping(WAN_MAC, "10.2.0.50", "10.77.60.10", 64, 32);
    r.run(WAN, &pkt);
    let out = r.io.sent(LAN);
    assert_eq!(out.len(), 1);
    let (frame, ip) = parse_ip(&out[0]);
    assert_eq!(frame.dst_addr().0, HOST_MAC);
    assert_eq!(frame.src_addr().0, LAN_MAC);
    assert_eq!(ip.hop_limit(), 63);
    assert_eq!(ip.src_addr(), a("10.2.0.50"), "source preserved");
    assert_eq!(ip.dst_addr(), a("10.77.60.10"));
    // Inner bytes other than TTL and checksum are untouched.
    assert_eq!(&out[0][14 + 20..], &pkt[14 + 20..]);
    assert_eq!(r.events(Event::Forwarded), 1);
}

#[test]
fn arp_reply_teaches_on_link_neighbor() {
    let mut r = Rig::new(false);
    r.run(WAN, &ping(WAN_MAC, "10.2.0.50", "10.1.0.10", 64, 8));
    assert_eq!(r.io.sent(LAN).len(), 1);
    r.run(
        LAN,
        &arp_frame(
            ArpOperation::Reply,
            HOST_MAC,
            "10.1.0.10",
            LAN_MAC,
            "10.1.0.1",
            LAN_MAC,
        ),
    );
    assert_eq!(r.events(Event::ArpLearned), 1);
    assert_eq!(r.events(Event::ArpReplyConsumed), 1);
    r.run(WAN, &ping(WAN_MAC, "10.2.0.50", "10.1.0.10", 64, 8));
    let out = r.io.sent(LAN);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0][0..6], &HOST_MAC);
}

#[test]
fn gratuitous_arp_on_command() {
    let mut r = Rig::new(false);
    r.commands
        .push(CoreCommand::GratuitousArp {
            port: 0,
            ip: u("10.1.0.77"),
        })
        .unwrap();
    r.worker.poll(&mut r.io);
    let out = r.io.sent(LAN);
    assert_eq!(out.len(), 1);
    let ArpRepr::EthernetIpv4 {
        source_protocol_addr,
        target_protocol_addr,
        source_hardware_addr,
        ..
    } = parse_arp(&out[0])
    else {
        unreachable!()
    };
    assert_eq!(source_protocol_addr, target_protocol_addr);
    assert_eq!(source_hardware_addr.0, LAN_MAC);
    assert_eq!(&out[0][0..6], &[0xff; 6]);
    assert_eq!(r.events(Event::GratuitousArpSent), 1);
}

#[test]
fn arp_learns_only_valid_unicast_senders_on_the_port() {
    let mut r = Rig::new(false);
    // Not one host, or one of ours: neither learned nor answered.
    for spa in [
        "10.1.0.255",
        "10.1.0.0",
        "10.2.0.255",
        "127.0.0.1",
        "0.1.2.3",
        "169.254.1.1",
        "224.0.0.1",
        "255.255.255.255",
        "10.1.0.1",
        "10.2.0.1",
    ] {
        for frame in [
            arp_request(HOST_MAC, spa, "10.1.0.1"),
            arp_frame(
                ArpOperation::Reply,
                HOST_MAC,
                spa,
                LAN_MAC,
                "10.1.0.1",
                LAN_MAC,
            ),
        ] {
            let before = r.drops(DropReason::ArpBadSender);
            r.run(LAN, &frame);
            assert_eq!(r.drops(DropReason::ArpBadSender), before + 1, "{spa}");
            assert!(r.nothing_sent(), "{spa} answered");
            assert!(r.snap.load().neighbors.get(0, u(spa)).is_none(), "{spa}");
        }
    }
    assert_eq!(r.events(Event::ArpLearned), 0);
    // A unicast host off the subnet (and not a /32 delivered here): answered
    // when it asks for us, never learned.
    r.run(LAN, &arp_request(HOST_MAC, "192.0.2.7", "10.1.0.1"));
    assert_eq!(r.io.sent(LAN).len(), 1);
    assert_eq!(r.events(Event::ArpNotLearnedOffSubnet), 1);
    assert!(r.snap.load().neighbors.get(0, u("192.0.2.7")).is_none());
    // An address probe (sender 0.0.0.0, RFC 5227): answered, not learned.
    r.run(LAN, &arp_request(HOST_MAC, "0.0.0.0", "10.1.0.1"));
    assert_eq!(r.io.sent(LAN).len(), 1);
    assert_eq!(r.events(Event::ArpLearned), 0);
    // A host on the subnet: answered and learned.
    r.run(LAN, &arp_request(HOST_MAC, "10.1.0.10", "10.1.0.1"));
    assert_eq!(r.io.sent(LAN).len(), 1);
    assert_eq!(r.events(Event::ArpLearned), 1);
    assert!(r.snap.load().neighbors.get(0, u("10.1.0.10")).is_some());
    // So a directed broadcast never finds a "neighbor" for the broadcast.
    r.run(WAN, &ping(WAN_MAC, "10.2.0.50", "10.1.0.255", 64, 8));
    assert!(r.nothing_sent());
    assert_eq!(r.drops(DropReason::Ipv4DirectedBroadcast), 1);
}

#[test]
fn neighbor_del_removes_a_learned_neighbor() {
    let mut r = Rig::new(false);
    r.run(LAN, &arp_request(HOST_MAC, "10.1.0.10", "10.1.0.1"));
    r.io.sent(LAN);
    assert!(r.snap.load().neighbors.get(0, u("10.1.0.10")).is_some());
    r.change(FibChange::NeighborDel {
        port: "lan".into(),
        ip: "10.1.0.10".parse().unwrap(),
    });
    assert!(r.snap.load().neighbors.get(0, u("10.1.0.10")).is_none());
    // Traffic to it resolves again instead of using the deleted entry.
    r.run(WAN, &ping(WAN_MAC, "10.2.0.50", "10.1.0.10", 64, 8));
    let out = r.io.sent(LAN);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0][0..6], &[0xff; 6], "an ARP request, not the packet");
    assert_eq!(r.drops(DropReason::NeighborUnresolved), 1);
}

#[test]
fn after_a_stall_the_core_claims_nothing_until_the_manager_beats() {
    use crate::liveness::{Liveness, STALL_GUARD_NS};
    let mut r = Rig::new(false);
    let live = Arc::new(Liveness::new());
    r.worker.set_liveness(live.clone());
    r.change(FibChange::ProxyArpSet {
        ip: "10.1.0.77".parse().unwrap(),
    });
    r.change(FibChange::ProxyArpActive { active: true });
    live.beat(r.io.now_ns);
    r.run(LAN, &arp_request(HOST_MAC, "10.1.0.10", "10.1.0.77"));
    assert_eq!(r.io.sent(LAN).len(), 1, "answered while the beat is fresh");
    // The process was stopped: the beat is older than the guard when the
    // core runs again, and what waits in its rx ring is as old.
    r.io.now_ns += STALL_GUARD_NS + 1;
    r.run(LAN, &arp_request(HOST_MAC, "10.1.0.10", "10.1.0.77"));
    assert!(r.nothing_sent(), "a proxy answer right after a stall");
    assert_eq!(r.events(Event::ProxyArpHeld), 1);
    // Another router's claim from that time raises no alarm...
    r.run(LAN, &arp_request(HOST_MAC, "10.1.0.77", "10.1.0.77"));
    assert_eq!(r.events(Event::DuplicateHolder), 0);
    // ...and a gratuitous ARP queued before the stall does not go out.
    r.commands
        .push(CoreCommand::GratuitousArp {
            port: LAN as u16,
            ip: u("10.1.0.77"),
        })
        .unwrap();
    r.run(LAN, &arp_request(HOST_MAC, "10.1.0.10", "10.1.0.99"));
    assert!(r.nothing_sent());
    assert_eq!(r.events(Event::GratuitousArpHeld), 1);
    assert_eq!(r.events(Event::GratuitousArpSent), 0);
    assert!(live.held_polls() >= 3, "the manager learns of the stall");
    // The manager turned (and closed the gate: its test): the core answers
    // by the snapshot again, here still open.
    live.beat(r.io.now_ns);
    r.run(LAN, &arp_request(HOST_MAC, "10.1.0.10", "10.1.0.77"));
    assert_eq!(r.io.sent(LAN).len(), 1);
}
