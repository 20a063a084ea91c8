//! IPv6 neighbor discovery and IPv4 via IPv6 link-local next hops (RFC 5549).

use super::*;
use crate::nd;
use smoltcp::wire::{
    Icmpv6Packet, Icmpv6Repr, IpAddress, Ipv6Address, Ipv6Packet, NdiscNeighborFlags, NdiscRepr,
};
use std::net::Ipv6Addr;

const PEER_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x31];
const PEER2_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x32];
const TAP: usize = 2;

fn peer_ll(mac: [u8; 6]) -> Ipv6Addr {
    nd::link_local(mac)
}

fn ra_from(mac: [u8; 6]) -> Vec<u8> {
    nd::router_advert(mac, 30)
}

/// A solicitation from `mac`'s link-local address for `target`.
fn ns_from(mac: [u8; 6], target: &Ipv6Addr) -> Vec<u8> {
    let mut f = vec![0u8; nd::NS_LEN];
    nd::write_solicit(&mut f, mac, target, None);
    f
}

/// A solicited advertisement of `mac`'s link-local address to `to`.
fn na_from(mac: [u8; 6], to: &Ipv6Addr, to_mac: [u8; 6]) -> Vec<u8> {
    let mut f = vec![0u8; nd::NA_LEN];
    nd::write_advert(&mut f, mac, to, to_mac);
    f
}

/// (ethernet dst, ethernet src, IPv6 src, IPv6 dst, hop limit, ND repr)
/// of a frame, parsed by smoltcp.
fn parse_nd(f: &[u8]) -> ([u8; 6], [u8; 6], Ipv6Address, Ipv6Address, u8, String) {
    let eth = EthernetFrame::new_checked(f).unwrap();
    assert_eq!(eth.ethertype(), EthernetProtocol::Ipv6);
    let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
    let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
    let repr = Icmpv6Repr::parse(
        &IpAddress::Ipv6(ip.src_addr()),
        &IpAddress::Ipv6(ip.dst_addr()),
        &icmp,
        &ChecksumCapabilities::default(),
    )
    .unwrap();
    (
        eth.dst_addr().0,
        eth.src_addr().0,
        ip.src_addr(),
        ip.dst_addr(),
        ip.hop_limit(),
        format!("{repr:?}"),
    )
}

fn v6(a: &Ipv6Addr) -> Ipv6Address {
    Ipv6Address::from_bytes(&a.octets())
}

fn via_ll(r: &mut Rig, prefix: &str, gws: &[Ipv6Addr]) {
    r.change(FibChange::RouteSet {
        prefix: prefix.parse().unwrap(),
        nexthops: gws
            .iter()
            .map(|g| NextHop {
                port: "wan".into(),
                gateway: None,
                gateway6: Some(*g),
            })
            .collect(),
    });
}

#[test]
fn router_advert_on_command_mirrors_frr() {
    let mut r = Rig::new(false);
    r.commands
        .push(CoreCommand::RouterAdvert { port: 1 })
        .unwrap();
    r.worker.poll(&mut r.io);
    let out = r.io.sent(WAN);
    assert_eq!(out.len(), 1);
    assert_eq!(r.events(Event::RouterAdvertSent), 1);
    let (dst, src, ip_src, ip_dst, hl, repr) = parse_nd(&out[0]);
    assert_eq!(dst, [0x33, 0x33, 0, 0, 0, 1]);
    assert_eq!(src, WAN_MAC);
    assert_eq!(ip_src, v6(&nd::link_local(WAN_MAC)));
    assert_eq!(ip_dst, v6(&nd::ALL_NODES));
    assert_eq!(hl, 255);
    let Icmpv6Repr::Ndisc(NdiscRepr::RouterAdvert {
        hop_limit,
        router_lifetime,
        lladdr,
        ..
    }) = Icmpv6Repr::parse(
        &IpAddress::Ipv6(ip_src),
        &IpAddress::Ipv6(ip_dst),
        &Icmpv6Packet::new_checked(&out[0][54..]).unwrap(),
        &ChecksumCapabilities::default(),
    )
    .unwrap()
    else {
        panic!("{repr}")
    };
    assert_eq!(hop_limit, 64);
    assert_eq!(router_lifetime.secs(), 30);
    assert_eq!(lladdr.unwrap().as_bytes(), &WAN_MAC);
    assert!(r.io.sent(LAN).is_empty());
}

#[test]
fn router_solicitation_is_answered_on_unnumbered_ports_only_rate_limited() {
    let rs = |mac: [u8; 6]| -> Vec<u8> {
        let src = peer_ll(mac);
        let repr = Icmpv6Repr::Ndisc(NdiscRepr::RouterSolicit {
            lladdr: Some(smoltcp::wire::RawHardwareAddress::from_bytes(&mac)),
        });
        let ip = smoltcp::wire::Ipv6Repr {
            src_addr: v6(&src),
            dst_addr: v6(&nd::ALL_ROUTERS),
            next_header: IpProtocol::Icmpv6,
            payload_len: repr.buffer_len(),
            hop_limit: 255,
        };
        let (mut f, off) = eth(
            nd::multicast_mac(&nd::ALL_ROUTERS),
            mac,
            EthernetProtocol::Ipv6,
            40 + repr.buffer_len(),
        );
        ip.emit(&mut Ipv6Packet::new_unchecked(&mut f[off..]));
        repr.emit(
            &IpAddress::Ipv6(v6(&src)),
            &IpAddress::Ipv6(v6(&nd::ALL_ROUTERS)),
            &mut Icmpv6Packet::new_unchecked(&mut f[off + 40..]),
            &ChecksumCapabilities::default(),
        );
        f
    };
    // Not unnumbered: no answer.
    let mut r = Rig::new(false);
    r.run(WAN, &rs(PEER_MAC));
    assert!(r.io.sent(WAN).is_empty());
    // Unnumbered WAN: an RA to all-nodes, then nothing for 3 s.
    let mut r = Rig::new(false);
    r.worker.set_unnumbered(&[false, true]);
    r.io.now_ns = 10_000_000_000;
    r.run(WAN, &rs(PEER_MAC));
    let out = r.io.sent(WAN);
    assert_eq!(out.len(), 1);
    let (dst, src, _, ip_dst, _, repr) = parse_nd(&out[0]);
    assert_eq!((dst, src), ([0x33, 0x33, 0, 0, 0, 1], WAN_MAC));
    assert_eq!(ip_dst, v6(&nd::ALL_NODES));
    assert!(repr.contains("RouterAdvert"), "{repr}");
    r.io.now_ns += 1_000_000_000;
    r.run(WAN, &rs(PEER2_MAC));
    assert!(r.io.sent(WAN).is_empty());
    assert_eq!(r.events(Event::RouterAdvertSuppressed), 1);
    r.io.now_ns += 3_000_000_000;
    r.run(WAN, &rs(PEER2_MAC));
    assert_eq!(r.io.sent(WAN).len(), 1);
    assert!(r.io.sent(LAN).is_empty());
}

#[test]
fn ra_ns_na_from_peers_teach_the_table_and_reach_the_tap() {
    let mut r = Rig::new(true);
    let our_ll = nd::link_local(WAN_MAC);
    // A Router Advertisement (what FRR's unnumbered interface sends).
    r.run(WAN, &ra_from(PEER_MAC));
    let n = r.fib.learned6[&(1, peer_ll(PEER_MAC))];
    assert_eq!(n.mac, PEER_MAC);
    assert!(n.router);
    let snap = r.snap.load();
    assert_eq!(
        snap.neighbors6.get(1, &peer_ll(PEER_MAC)).unwrap().mac,
        PEER_MAC
    );
    assert_eq!(r.io.sent(TAP).len(), 1, "the kernel gets the RA too");
    assert!(r.io.sent(WAN).is_empty());
    // A solicitation for our link-local address: learned, answered, copied.
    r.run(WAN, &ns_from(PEER2_MAC, &our_ll));
    assert_eq!(r.fib.learned6[&(1, peer_ll(PEER2_MAC))].mac, PEER2_MAC);
    let out = r.io.sent(WAN);
    assert_eq!(out.len(), 1);
    let (dst, src, ip_src, ip_dst, hl, _) = parse_nd(&out[0]);
    assert_eq!((dst, src, hl), (PEER2_MAC, WAN_MAC, 255));
    assert_eq!(ip_src, v6(&our_ll));
    assert_eq!(ip_dst, v6(&peer_ll(PEER2_MAC)));
    let icmp = Icmpv6Packet::new_checked(&out[0][54..]).unwrap();
    match Icmpv6Repr::parse(
        &IpAddress::Ipv6(ip_src),
        &IpAddress::Ipv6(ip_dst),
        &icmp,
        &ChecksumCapabilities::default(),
    )
    .unwrap()
    {
        Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
            flags,
            target_addr,
            lladdr,
        }) => {
            assert!(flags.contains(NdiscNeighborFlags::SOLICITED));
            assert!(flags.contains(NdiscNeighborFlags::OVERRIDE));
            assert!(flags.contains(NdiscNeighborFlags::ROUTER));
            assert_eq!(target_addr, v6(&our_ll));
            assert_eq!(lladdr.unwrap().as_bytes(), &WAN_MAC);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.events(Event::NeighborAdvertSent), 1);
    assert_eq!(r.io.sent(TAP).len(), 1);
    // A solicitation for someone else teaches but is not answered.
    let third = [0x52, 0x54, 0, 0, 0, 0x33];
    r.run(WAN, &ns_from(third, &"fe80::99".parse().unwrap()));
    assert!(r.io.sent(WAN).is_empty());
    assert!(r.fib.learned6.contains_key(&(1, peer_ll(third))));
    // A solicited advertisement (the answer to our NS) teaches.
    let fourth = [0x52, 0x54, 0, 0, 0, 0x34];
    r.run(WAN, &na_from(fourth, &our_ll, WAN_MAC));
    assert_eq!(r.fib.learned6[&(1, peer_ll(fourth))].mac, fourth);
    assert!(r.fib.learned6[&(1, peer_ll(fourth))].router);
    // Our own frames looped back teach nothing.
    r.run(WAN, &ra_from(WAN_MAC));
    assert!(!r.fib.learned6.contains_key(&(1, our_ll)));
    assert_eq!(r.fib.learned6.len(), 4);
}

#[test]
fn ipv4_via_link_local_next_hop_resolves_by_ns_then_forwards() {
    let mut r = Rig::new(false);
    let gw = peer_ll(PEER_MAC);
    via_ll(&mut r, "0.0.0.0/0", &[gw]);
    // Unresolved: counted drop and one Neighbor Solicitation, rate limited.
    r.run(LAN, &ping(LAN_MAC, "10.1.0.10", "192.0.2.1", 64, 8));
    assert_eq!(r.drops(DropReason::Neighbor6Unresolved), 1);
    let out = r.io.sent(WAN);
    assert_eq!(out.len(), 1);
    let (dst, src, ip_src, ip_dst, hl, repr) = parse_nd(&out[0]);
    let group = nd::solicited_node(&gw);
    assert_eq!(dst, nd::multicast_mac(&group));
    assert_eq!((src, hl), (WAN_MAC, 255));
    assert_eq!(ip_src, v6(&nd::link_local(WAN_MAC)));
    assert_eq!(ip_dst, v6(&group));
    assert!(repr.contains("NeighborSolicit"), "{repr}");
    // The target address field (RFC 4861 4.3).
    assert_eq!(&out[0][14 + 40 + 8..14 + 40 + 24], &gw.octets());
    r.run(LAN, &ping(LAN_MAC, "10.1.0.10", "192.0.2.1", 64, 8));
    assert_eq!(r.drops(DropReason::Neighbor6Unresolved), 2);
    assert_eq!(r.events(Event::NeighborSolicitSuppressed), 1);
    assert!(r.io.sent(WAN).is_empty());
    // The peer answers; the next packet leaves with its MAC.
    r.run(WAN, &na_from(PEER_MAC, &nd::link_local(WAN_MAC), WAN_MAC));
    r.run(LAN, &ping(LAN_MAC, "10.1.0.10", "192.0.2.1", 64, 8));
    let out = r.io.sent(WAN);
    assert_eq!(out.len(), 1);
    let (eth, ip) = parse_ip(&out[0]);
    assert_eq!(eth.dst_addr().0, PEER_MAC);
    assert_eq!(eth.src_addr().0, WAN_MAC);
    assert_eq!(ip.dst_addr(), a("192.0.2.1"));
    assert_eq!(ip.hop_limit(), 63);
    assert!(ip.verify_checksum());
    // A /32 underlay route via a link-local next hop (no endpoint action).
    via_ll(&mut r, "10.77.60.11/32", &[gw]);
    r.run(LAN, &ping(LAN_MAC, "10.1.0.10", "10.77.60.11", 64, 8));
    let out = r.io.sent(WAN);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0][0..6], &PEER_MAC);
}

#[test]
fn ecmp_over_two_link_local_next_hops_spreads_flows() {
    let mut r = Rig::new(false);
    r.run(WAN, &ra_from(PEER_MAC));
    r.run(WAN, &ra_from(PEER2_MAC));
    via_ll(
        &mut r,
        "0.0.0.0/0",
        &[peer_ll(PEER_MAC), peer_ll(PEER2_MAC)],
    );
    let mut used = [0; 2];
    for i in 0..64 {
        let dst = format!("198.51.100.{i}");
        r.run(LAN, &ping(LAN_MAC, "10.1.0.10", &dst, 64, 8));
        r.run(LAN, &ping(LAN_MAC, "10.1.0.10", &dst, 64, 8));
        let out = r.io.sent(WAN);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0][0..6], out[1][0..6], "same flow, same next hop");
        assert!(out[0][0..6] == PEER_MAC || out[0][0..6] == PEER2_MAC);
        used[usize::from(out[0][0..6] == PEER2_MAC)] += 1;
    }
    assert!(used[0] > 8 && used[1] > 8, "{used:?}");
    assert_eq!(r.drops(DropReason::Neighbor6Unresolved), 0);
}

#[test]
fn feed_rejects_bad_link_local_gateways() {
    let mut r = Rig::new(false);
    for (gw, gw6) in [
        (None, "2001:db8::1"),
        (None, "ff02::1"),
        (Some("10.2.0.254"), "fe80::1"),
    ] {
        let e = r
            .fib
            .apply(&FibChange::RouteSet {
                prefix: "0.0.0.0/0".parse().unwrap(),
                nexthops: vec![NextHop {
                    port: "wan".into(),
                    gateway: gw.map(|g| g.parse().unwrap()),
                    gateway6: Some(gw6.parse().unwrap()),
                }],
            })
            .unwrap_err()
            .to_string();
        assert!(e.contains("gateway6") || e.contains("gateway"), "{e}");
    }
    assert!(r.fib.feed.routes.is_empty());
}

#[test]
fn ipv6_for_us_goes_to_the_tap_and_the_rest_is_named() {
    let mut r = Rig::new(true);
    let our_ll = nd::link_local(WAN_MAC);
    // Non-ND ICMPv6 (an echo) to our link-local address: the kernel's.
    let data = [1u8; 8];
    let echo = Icmpv6Repr::EchoRequest {
        ident: 1,
        seq_no: 1,
        data: &data,
    };
    let src = peer_ll(PEER_MAC);
    let mk = |dst: Ipv6Addr, eth_dst: [u8; 6], hop: u8, repr: &Icmpv6Repr| -> Vec<u8> {
        let ip = smoltcp::wire::Ipv6Repr {
            src_addr: v6(&src),
            dst_addr: v6(&dst),
            next_header: IpProtocol::Icmpv6,
            payload_len: repr.buffer_len(),
            hop_limit: hop,
        };
        let (mut f, off) = eth(
            eth_dst,
            PEER_MAC,
            EthernetProtocol::Ipv6,
            40 + repr.buffer_len(),
        );
        ip.emit(&mut Ipv6Packet::new_unchecked(&mut f[off..]));
        repr.emit(
            &IpAddress::Ipv6(v6(&src)),
            &IpAddress::Ipv6(v6(&dst)),
            &mut Icmpv6Packet::new_unchecked(&mut f[off + 40..]),
            &ChecksumCapabilities::default(),
        );
        f
    };
    r.run(WAN, &mk(our_ll, WAN_MAC, 64, &echo));
    assert_eq!(r.io.sent(TAP).len(), 1);
    // Site-scope multicast is not the router's.
    let site: Ipv6Addr = "ff05::2".parse().unwrap();
    r.run(WAN, &mk(site, nd::multicast_mac(&site), 64, &echo));
    assert_eq!(r.drops(DropReason::Ipv6NotForUs), 1);
    // ND with a hop limit below 255, a bad checksum, a truncated header.
    let ns = NdiscRepr::NeighborSolicit {
        target_addr: v6(&our_ll),
        lladdr: None,
    };
    let group = nd::solicited_node(&our_ll);
    r.run(
        WAN,
        &mk(group, nd::multicast_mac(&group), 64, &Icmpv6Repr::Ndisc(ns)),
    );
    assert_eq!(r.drops(DropReason::NdBadHopLimit), 1);
    let mut bad = ns_from(PEER_MAC, &our_ll);
    bad[nd::NS_LEN - 1] ^= 0x01;
    r.run(WAN, &bad);
    assert_eq!(r.drops(DropReason::Icmpv6BadChecksum), 1);
    r.run(WAN, &ns_from(PEER_MAC, &our_ll)[..50]);
    assert_eq!(r.drops(DropReason::Ipv6Malformed), 1);
    assert!(r.nothing_sent());
    assert!(r.fib.learned6.is_empty());
    // Without a TAP, non-ND IPv6 for us has nowhere to go.
    let mut r = Rig::new(false);
    r.run(WAN, &mk(our_ll, WAN_MAC, 64, &echo));
    assert_eq!(r.drops(DropReason::NoExceptionPath), 1);
    r.run(WAN, &ra_from(PEER_MAC));
    assert_eq!(r.events(Event::NdConsumed), 1);
}

#[test]
fn random_icmpv6_is_counted_never_panics() {
    let mut r = Rig::new(true);
    let our_ll = nd::link_local(WAN_MAC);
    let seeds = [
        ra_from(PEER_MAC),
        ns_from(PEER_MAC, &our_ll),
        na_from(PEER_MAC, &our_ll, WAN_MAC),
    ];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let total_drops = |r: &Rig| -> u64 { DropReason::ALL.iter().map(|d| r.drops(*d)).sum() };
    let mut dropped = 0;
    for i in 0..3000 {
        let mut f = seeds[i % 3].clone();
        // Keep the Ethernet header (so it reaches the IPv6 path), then
        // flip, cut or replace bytes after it.
        let cut = 14 + (next() as usize) % (f.len() - 13);
        if i % 5 == 0 {
            f.truncate(cut);
        }
        for _ in 0..1 + next() % 4 {
            let at = 14 + (next() as usize) % (f.len() - 14).max(1);
            if at < f.len() {
                f[at] = next() as u8;
            }
        }
        let before = total_drops(&r);
        r.run(WAN, &f);
        dropped += total_drops(&r) - before;
        r.io.sent(WAN);
        r.io.sent(TAP);
    }
    assert!(dropped > 2000, "{dropped}");
    let named = r.drops(DropReason::Icmpv6BadChecksum)
        + r.drops(DropReason::Ipv6Malformed)
        + r.drops(DropReason::NdBadHopLimit)
        + r.drops(DropReason::NdMalformed)
        + r.drops(DropReason::Icmpv6Malformed)
        + r.drops(DropReason::Ipv6BadSource)
        + r.drops(DropReason::Ipv6NotForUs);
    assert!(named > 2000, "{named}");
}
