//! IPv6 neighbor discovery on the dataplane ports (RFC 4861), for BGP
//! unnumbered and IPv4 routes via IPv6 link-local next hops (RFC 5549/8950).
//!
//! Owns: each port's link-local address (modified EUI-64 from its MAC, RFC
//! 4291 appendix A), the validation of received IPv6 frames into what they
//! are to the router (`classify`), and the ND frames the router sends (Router
//! Advertisements, Neighbor Solicitations and Advertisements), all through
//! `smoltcp::wire`. Building writes into a caller's buffer; only
//! `router_advert` returns a new frame (built once per port at start).

use crate::counters::DropReason;
use crate::wire::{ETHERTYPE_IPV6, ETH_LEN};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::time::Duration;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv6Message, Icmpv6Packet,
    Icmpv6Repr, IpAddress, IpProtocol, Ipv6Address, Ipv6Packet, Ipv6Repr, NdiscNeighborFlags,
    NdiscRepr, NdiscRouterFlags, RawHardwareAddress,
};
use std::net::Ipv6Addr;

pub const IPV6_LEN: usize = 40;
/// Ethernet + IPv6 + NS/NA (24) + one link-layer address option (8).
pub const NS_LEN: usize = ETH_LEN + IPV6_LEN + 32;
pub const NA_LEN: usize = NS_LEN;
/// Ethernet + IPv6 + RA (16) + source link-layer address option (8).
pub const RA_LEN: usize = ETH_LEN + IPV6_LEN + 24;

pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
/// Hop limit every ND message carries and requires (RFC 4861 section 6.1).
pub const ND_HOP_LIMIT: u8 = 255;
/// The current hop limit advertised in RAs (FRR's `AdvCurHopLimit` default).
pub const RA_CUR_HOP_LIMIT: u8 = 64;

/// The link-local address of a port with this MAC: fe80::/64 and the
/// modified EUI-64 interface identifier (universal/local bit flipped,
/// ff:fe in the middle), as Linux derives it (`addr_gen_mode eui64`), so the
/// kernel on the port's TAP (same MAC) holds the same address.
pub fn link_local(mac: [u8; 6]) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a[0] = 0xfe;
    a[1] = 0x80;
    a[8] = mac[0] ^ 0x02;
    a[9] = mac[1];
    a[10] = mac[2];
    a[11] = 0xff;
    a[12] = 0xfe;
    a[13] = mac[3];
    a[14] = mac[4];
    a[15] = mac[5];
    Ipv6Addr::from(a)
}

/// The solicited-node multicast group of `a` (ff02::1:ffXX:XXXX).
pub fn solicited_node(a: &Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    let mut s = [0u8; 16];
    s[0] = 0xff;
    s[1] = 0x02;
    s[11] = 0x01;
    s[12] = 0xff;
    s[13..].copy_from_slice(&o[13..]);
    Ipv6Addr::from(s)
}

/// The Ethernet multicast address of an IPv6 multicast group (RFC 2464).
pub fn multicast_mac(group: &Ipv6Addr) -> [u8; 6] {
    let o = group.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

/// fe80::/10.
pub fn is_link_local_unicast(a: &Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// Link-scope multicast (ff02::/16): all-nodes, all-routers, solicited-node, MLD.
fn is_link_scope_multicast(a: &Ipv6Addr) -> bool {
    let o = a.octets();
    o[0] == 0xff && o[1] & 0x0f == 0x02
}

/// The router lifetime FRR advertises for an RA interval: three intervals
/// (zebra: `MaxRtrAdvInterval * 3`), at least 1 s, at most 9000 s.
pub fn router_lifetime(interval_secs: u32) -> u16 {
    interval_secs.saturating_mul(3).clamp(1, 9000) as u16
}

fn v6(a: &Ipv6Addr) -> Ipv6Address {
    Ipv6Address::from_bytes(&a.octets())
}

fn std6(a: &Ipv6Address) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(a.as_bytes());
    Ipv6Addr::from(o)
}

/// A validated neighbor discovery message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NdMessage {
    pub kind: NdKind,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    /// The link-layer address option (source for RS/RA/NS, target for NA).
    pub lladdr: Option<[u8; 6]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdKind {
    RouterSolicit,
    RouterAdvert {
        lifetime_secs: u16,
    },
    NeighborSolicit {
        target: Ipv6Addr,
    },
    NeighborAdvert {
        target: Ipv6Addr,
        router: bool,
        solicited: bool,
        override_: bool,
    },
    Redirect,
}

/// What a received IPv6 packet is to the router (which does not route IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv6In {
    /// A valid ND message (also for the kernel side, which keeps its own cache).
    Nd(NdMessage),
    /// Other IPv6 for the router (BGP over link-local, ping): the kernel side.
    ForUs,
    /// IPv6 multicast beyond link scope: not for the router.
    NotForUs,
}

/// Validates the IPv6 packet `ip` (from the IPv6 header on, Ethernet padding
/// already removed) that arrived for the router's MAC or an IPv6 multicast
/// MAC. Every failure names its drop reason; no input panics.
pub fn classify(ip: &[u8]) -> Result<Ipv6In, DropReason> {
    let pkt = Ipv6Packet::new_checked(ip).map_err(|_| DropReason::Ipv6Malformed)?;
    if pkt.version() != 6 {
        return Err(DropReason::Ipv6Malformed);
    }
    let src = std6(&pkt.src_addr());
    let dst = std6(&pkt.dst_addr());
    if src.is_multicast() || src.is_loopback() {
        return Err(DropReason::Ipv6BadSource);
    }
    if dst.is_multicast() && !is_link_scope_multicast(&dst) {
        return Ok(Ipv6In::NotForUs);
    }
    if pkt.next_header() != IpProtocol::Icmpv6 {
        return Ok(Ipv6In::ForUs);
    }
    let hop_limit = pkt.hop_limit();
    let payload = pkt.payload();
    let icmp = Icmpv6Packet::new_checked(payload).map_err(|_| DropReason::Icmpv6Malformed)?;
    let nd_type = matches!(
        icmp.msg_type(),
        Icmpv6Message::RouterSolicit
            | Icmpv6Message::RouterAdvert
            | Icmpv6Message::NeighborSolicit
            | Icmpv6Message::NeighborAdvert
            | Icmpv6Message::Redirect
    );
    if !icmp.verify_checksum(
        &IpAddress::Ipv6(pkt.src_addr()),
        &IpAddress::Ipv6(pkt.dst_addr()),
    ) {
        return Err(DropReason::Icmpv6BadChecksum);
    }
    if !nd_type {
        return Ok(Ipv6In::ForUs);
    }
    // RFC 4861 section 6.1.1 / 7.1.1: only on-link senders, code 0.
    if hop_limit != ND_HOP_LIMIT {
        return Err(DropReason::NdBadHopLimit);
    }
    if icmp.msg_code() != 0 {
        return Err(DropReason::NdMalformed);
    }
    let repr = NdiscRepr::parse(&icmp).map_err(|_| DropReason::NdMalformed)?;
    let mac = |l: Option<RawHardwareAddress>| -> Result<Option<[u8; 6]>, DropReason> {
        match l {
            None => Ok(None),
            Some(raw) => {
                let b = raw.as_bytes();
                if b.len() != 6 || b[0] & 1 == 1 || b == [0; 6] {
                    return Err(DropReason::NdMalformed);
                }
                let mut m = [0u8; 6];
                m.copy_from_slice(b);
                Ok(Some(m))
            }
        }
    };
    let (kind, lladdr) = match repr {
        NdiscRepr::RouterSolicit { lladdr } => (NdKind::RouterSolicit, mac(lladdr)?),
        NdiscRepr::RouterAdvert {
            router_lifetime,
            lladdr,
            ..
        } => {
            // RFC 4861 section 6.1.2: from a link-local source.
            if !is_link_local_unicast(&src) {
                return Err(DropReason::NdMalformed);
            }
            let lifetime_secs = router_lifetime.secs().min(u64::from(u16::MAX)) as u16;
            (NdKind::RouterAdvert { lifetime_secs }, mac(lladdr)?)
        }
        NdiscRepr::NeighborSolicit {
            target_addr,
            lladdr,
        } => {
            let target = std6(&target_addr);
            if target.is_multicast() {
                return Err(DropReason::NdMalformed);
            }
            // DAD probes (unspecified source) go to a solicited-node group
            // and carry no source link-layer address.
            if src.is_unspecified() && (lladdr.is_some() || !dst.is_multicast()) {
                return Err(DropReason::NdMalformed);
            }
            (NdKind::NeighborSolicit { target }, mac(lladdr)?)
        }
        NdiscRepr::NeighborAdvert {
            flags,
            target_addr,
            lladdr,
        } => {
            let target = std6(&target_addr);
            let solicited = flags.contains(NdiscNeighborFlags::SOLICITED);
            if target.is_multicast() || (solicited && dst.is_multicast()) {
                return Err(DropReason::NdMalformed);
            }
            (
                NdKind::NeighborAdvert {
                    target,
                    router: flags.contains(NdiscNeighborFlags::ROUTER),
                    solicited,
                    override_: flags.contains(NdiscNeighborFlags::OVERRIDE),
                },
                mac(lladdr)?,
            )
        }
        NdiscRepr::Redirect { .. } => (NdKind::Redirect, None),
    };
    Ok(Ipv6In::Nd(NdMessage {
        kind,
        src,
        dst,
        lladdr,
    }))
}

/// Writes Ethernet + IPv6 (hop limit 255) + the ND message into `frame`
/// (exactly as long as the three).
fn emit(
    frame: &mut [u8],
    eth_src: [u8; 6],
    eth_dst: [u8; 6],
    src: &Ipv6Addr,
    dst: &Ipv6Addr,
    nd: &NdiscRepr,
) {
    let icmp = Icmpv6Repr::Ndisc(*nd);
    let eth = EthernetRepr {
        src_addr: EthernetAddress(eth_src),
        dst_addr: EthernetAddress(eth_dst),
        ethertype: EthernetProtocol::Ipv6,
    };
    eth.emit(&mut EthernetFrame::new_unchecked(&mut frame[..]));
    debug_assert_eq!(crate::wire::be16(frame, 12), ETHERTYPE_IPV6);
    let ip = Ipv6Repr {
        src_addr: v6(src),
        dst_addr: v6(dst),
        next_header: IpProtocol::Icmpv6,
        payload_len: icmp.buffer_len(),
        hop_limit: ND_HOP_LIMIT,
    };
    ip.emit(&mut Ipv6Packet::new_unchecked(&mut frame[ETH_LEN..]));
    let body = &mut frame[ETH_LEN + IPV6_LEN..];
    icmp.emit(
        &IpAddress::Ipv6(v6(src)),
        &IpAddress::Ipv6(v6(dst)),
        &mut Icmpv6Packet::new_unchecked(body),
        &ChecksumCapabilities::default(),
    );
}

/// The periodic Router Advertisement of a port, as FRR's zebra sends it on
/// an interface with `ipv6 nd ra-interval`: from the link-local address to
/// all-nodes, current hop limit 64, no M/O flags, router lifetime
/// `lifetime_secs` (nonzero: FRR's unnumbered peers learn us from it),
/// reachable time and retransmit timer 0 (unspecified), and the source
/// link-layer address option. No prefixes: nothing to autoconfigure.
pub fn router_advert(mac: [u8; 6], lifetime_secs: u16) -> Vec<u8> {
    let mut f = vec![0u8; RA_LEN];
    let nd = NdiscRepr::RouterAdvert {
        hop_limit: RA_CUR_HOP_LIMIT,
        flags: NdiscRouterFlags::empty(),
        router_lifetime: Duration::from_secs(u64::from(lifetime_secs)),
        reachable_time: Duration::from_millis(0),
        retrans_time: Duration::from_millis(0),
        lladdr: Some(RawHardwareAddress::from_bytes(&mac)),
        mtu: None,
        prefix_info: None,
    };
    emit(
        &mut f,
        mac,
        multicast_mac(&ALL_NODES),
        &link_local(mac),
        &ALL_NODES,
        &nd,
    );
    f
}

/// A Neighbor Solicitation for `target` from the port's link-local address
/// into `frame` (`NS_LEN` bytes): to its solicited-node group, or unicast to
/// `known` (a reachability probe of a stale entry).
pub fn write_solicit(frame: &mut [u8], mac: [u8; 6], target: &Ipv6Addr, known: Option<[u8; 6]>) {
    let (eth_dst, dst) = match known {
        Some(m) => (m, *target),
        None => {
            let g = solicited_node(target);
            (multicast_mac(&g), g)
        }
    };
    let nd = NdiscRepr::NeighborSolicit {
        target_addr: v6(target),
        lladdr: Some(RawHardwareAddress::from_bytes(&mac)),
    };
    emit(frame, mac, eth_dst, &link_local(mac), &dst, &nd);
}

/// The Neighbor Advertisement answering a solicitation for our link-local
/// address from `dst` (at `dst_mac`) into `frame` (`NA_LEN` bytes): router,
/// solicited and override set, target link-layer address option.
pub fn write_advert(frame: &mut [u8], mac: [u8; 6], dst: &Ipv6Addr, dst_mac: [u8; 6]) {
    let ll = link_local(mac);
    let nd = NdiscRepr::NeighborAdvert {
        flags: NdiscNeighborFlags::ROUTER
            | NdiscNeighborFlags::SOLICITED
            | NdiscNeighborFlags::OVERRIDE,
        target_addr: v6(&ll),
        lladdr: Some(RawHardwareAddress::from_bytes(&mac)),
    };
    emit(frame, mac, dst_mac, &ll, dst, &nd);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eui64_link_local() {
        // RFC 4291 appendix A: 00:11:22:33:44:55 -> 0211:22ff:fe33:4455.
        assert_eq!(
            link_local([0x00, 0x11, 0x22, 0x33, 0x44, 0x55]),
            "fe80::211:22ff:fe33:4455".parse::<Ipv6Addr>().unwrap()
        );
        // A locally administered MAC loses the bit (as Linux does).
        assert_eq!(
            link_local([0x02, 0, 0, 0, 1, 1]),
            "fe80::ff:fe00:101".parse::<Ipv6Addr>().unwrap()
        );
        let ll = link_local([0x52, 0x54, 0x00, 0xab, 0xcd, 0xef]);
        assert_eq!(ll, "fe80::5054:ff:feab:cdef".parse::<Ipv6Addr>().unwrap());
        assert!(is_link_local_unicast(&ll));
        let sn = solicited_node(&ll);
        assert_eq!(sn, "ff02::1:ffab:cdef".parse::<Ipv6Addr>().unwrap());
        assert_eq!(multicast_mac(&sn), [0x33, 0x33, 0xff, 0xab, 0xcd, 0xef]);
        assert_eq!(router_lifetime(10), 30);
        assert_eq!(router_lifetime(0), 1);
    }

    #[test]
    fn router_advert_parses_back() {
        let mac = [0x02, 0, 0, 0, 2, 1];
        let f = router_advert(mac, router_lifetime(10));
        assert_eq!(f.len(), RA_LEN);
        let eth = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(eth.dst_addr(), EthernetAddress([0x33, 0x33, 0, 0, 0, 1]));
        assert_eq!(eth.src_addr(), EthernetAddress(mac));
        assert_eq!(eth.ethertype(), EthernetProtocol::Ipv6);
        let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
        assert_eq!(std6(&ip.src_addr()), link_local(mac));
        assert_eq!(std6(&ip.dst_addr()), ALL_NODES);
        assert_eq!(ip.hop_limit(), 255);
        let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        let repr = Icmpv6Repr::parse(
            &IpAddress::Ipv6(ip.src_addr()),
            &IpAddress::Ipv6(ip.dst_addr()),
            &icmp,
            &ChecksumCapabilities::default(),
        )
        .unwrap();
        match repr {
            Icmpv6Repr::Ndisc(NdiscRepr::RouterAdvert {
                hop_limit,
                flags,
                router_lifetime,
                reachable_time,
                retrans_time,
                lladdr,
                mtu,
                prefix_info,
            }) => {
                assert_eq!(hop_limit, 64);
                assert!(flags.is_empty());
                assert_eq!(router_lifetime, Duration::from_secs(30));
                assert_eq!(reachable_time, Duration::from_millis(0));
                assert_eq!(retrans_time, Duration::from_millis(0));
                assert_eq!(lladdr.unwrap().as_bytes(), &mac);
                assert!(mtu.is_none() && prefix_info.is_none());
            }
            other => panic!("{other:?}"),
        }
        // And our own classifier accepts it.
        match classify(&f[ETH_LEN..]).unwrap() {
            Ipv6In::Nd(m) => {
                assert_eq!(m.kind, NdKind::RouterAdvert { lifetime_secs: 30 });
                assert_eq!(m.lladdr, Some(mac));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn solicit_and_advert_parse_back() {
        let mac = [0x02, 0, 0, 0, 2, 1];
        let peer: Ipv6Addr = "fe80::5054:ff:feab:cdef".parse().unwrap();
        let mut f = [0u8; NS_LEN];
        write_solicit(&mut f, mac, &peer, None);
        assert_eq!(&f[0..6], &[0x33, 0x33, 0xff, 0xab, 0xcd, 0xef]);
        match classify(&f[ETH_LEN..]).unwrap() {
            Ipv6In::Nd(m) => {
                assert_eq!(m.kind, NdKind::NeighborSolicit { target: peer });
                assert_eq!(m.src, link_local(mac));
                assert_eq!(m.dst, solicited_node(&peer));
                assert_eq!(m.lladdr, Some(mac));
            }
            other => panic!("{other:?}"),
        }
        let peer_mac = [0x52, 0x54, 0, 0xab, 0xcd, 0xef];
        let mut f = [0u8; NA_LEN];
        write_advert(&mut f, mac, &peer, peer_mac);
        assert_eq!(&f[0..6], &peer_mac);
        match classify(&f[ETH_LEN..]).unwrap() {
            Ipv6In::Nd(m) => {
                assert_eq!(
                    m.kind,
                    NdKind::NeighborAdvert {
                        target: link_local(mac),
                        router: true,
                        solicited: true,
                        override_: true
                    }
                );
                assert_eq!(m.dst, peer);
                assert_eq!(m.lladdr, Some(mac));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_nd_is_named() {
        let mac = [0x02, 0, 0, 0, 2, 1];
        let good = router_advert(mac, 30);
        // Hop limit below 255: an off-link sender.
        let mut f = good.clone();
        f[ETH_LEN + 7] = 64;
        assert_eq!(classify(&f[ETH_LEN..]), Err(DropReason::NdBadHopLimit));
        // One payload bit flipped: checksum.
        let mut f = good.clone();
        f[RA_LEN - 3] ^= 0x10;
        assert_eq!(classify(&f[ETH_LEN..]), Err(DropReason::Icmpv6BadChecksum));
        // Truncated.
        assert_eq!(
            classify(&good[ETH_LEN..ETH_LEN + 20]),
            Err(DropReason::Ipv6Malformed)
        );
        // Multicast source.
        let mut f = good.clone();
        f[ETH_LEN + 8] = 0xff;
        assert_eq!(classify(&f[ETH_LEN..]), Err(DropReason::Ipv6BadSource));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mac = [0x02, 0, 0, 0, 2, 1];
        let seeds = [router_advert(mac, 30), {
            let mut f = vec![0u8; NS_LEN];
            write_solicit(&mut f, mac, &"fe80::1".parse().unwrap(), None);
            f
        }];
        let mut x = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..200_000 {
            let mut f = seeds[i % 2].clone();
            let len = (next() as usize) % (f.len() + 8);
            f.resize(len.max(ETH_LEN), 0);
            for _ in 0..(next() % 6) {
                let at = (next() as usize) % f.len();
                f[at] = next() as u8;
            }
            if i % 7 == 0 {
                for b in f.iter_mut() {
                    *b = next() as u8;
                }
            }
            let _ = classify(&f[ETH_LEN..]);
        }
    }
}
