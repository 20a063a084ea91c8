//! Encoding of everything we send: OPEN with our capabilities, UPDATEs
//! (packed with as many NLRI as fit 4096 bytes; IPv4 with an IPv6 next hop in MP_REACH_NLRI per
//! RFC 8950), withdrawals, KEEPALIVE, NOTIFICATION, ROUTE-REFRESH, End-of-RIB.

use super::as4;
use super::attribute::code;
use super::nlri::split;
use super::{Capabilities, Codec, Family, Notification, AS_TRANS, HEADER_LEN, MAX_LEN};
use super::{MSG_KEEPALIVE, MSG_NOTIFICATION, MSG_ROUTE_REFRESH, MSG_UPDATE};
use crate::route::AsSegmentKind;
use crate::route::{Ipv4Prefix, Ipv6Prefix, NextHop, Nlri, Origin, PathAttrs};
use bytes::{BufMut, Bytes, BytesMut};
use netgauze_bgp_pkt::capabilities::{
    AddPathAddressFamily, AddPathCapability, BgpCapability, ExtendedNextHopEncoding,
    ExtendedNextHopEncodingCapability, FourOctetAsCapability, GracefulRestartAddressFamily,
    GracefulRestartCapability, MultiProtocolExtensionsCapability,
};
use netgauze_bgp_pkt::nlri::{Ipv4Unicast, Ipv4UnicastAddress, Ipv6Unicast, Ipv6UnicastAddress};
use netgauze_bgp_pkt::open::{BgpOpenMessage, BgpOpenMessageParameter};
use netgauze_bgp_pkt::path_attribute as pa;
use netgauze_bgp_pkt::update::BgpUpdateMessage;
use netgauze_bgp_pkt::BgpMessage;
use netgauze_iana::address_family::{AddressFamily, AddressType};
use std::net::{IpAddr, Ipv4Addr};
use tokio_util::codec::Encoder;

impl Codec {
    pub fn encode_open(
        &mut self,
        asn: u32,
        hold_time: u16,
        router_id: Ipv4Addr,
        caps: &Capabilities,
    ) -> Bytes {
        let mut list: Vec<BgpCapability> = Vec::new();
        if caps.ipv4_unicast {
            list.push(BgpCapability::MultiProtocolExtensions(
                MultiProtocolExtensionsCapability::new(AddressType::Ipv4Unicast),
            ));
        }
        if caps.ipv6_unicast {
            list.push(BgpCapability::MultiProtocolExtensions(
                MultiProtocolExtensionsCapability::new(AddressType::Ipv6Unicast),
            ));
        }
        if caps.route_refresh {
            list.push(BgpCapability::RouteRefresh);
        }
        if caps.extended_next_hop_v4 {
            list.push(BgpCapability::ExtendedNextHopEncoding(
                ExtendedNextHopEncodingCapability::new(vec![ExtendedNextHopEncoding::new(
                    AddressType::Ipv4Unicast,
                    AddressFamily::IPv6,
                )]),
            ));
        }
        if let Some(gr) = &caps.graceful_restart {
            let fams: Vec<GracefulRestartAddressFamily> = gr
                .families
                .iter()
                .map(|(f, fwd)| GracefulRestartAddressFamily::new(*fwd, address_type(*f)))
                .collect();
            list.push(BgpCapability::GracefulRestartCapability(
                GracefulRestartCapability::new(
                    gr.restarting,
                    false,
                    gr.restart_time.min(4095),
                    fams,
                ),
            ));
        }
        if caps.add_path_v4.any() {
            list.push(BgpCapability::AddPath(AddPathCapability::new(vec![
                AddPathAddressFamily::new(
                    AddressType::Ipv4Unicast,
                    caps.add_path_v4.send,
                    caps.add_path_v4.receive,
                ),
            ])));
        }
        if caps.extended_message {
            list.push(BgpCapability::ExtendedMessage);
        }
        list.push(BgpCapability::FourOctetAs(FourOctetAsCapability::new(asn)));
        let my_as = if asn > 65535 {
            AS_TRANS as u16
        } else {
            asn as u16
        };
        let open = BgpOpenMessage::new(
            my_as,
            hold_time,
            router_id,
            vec![BgpOpenMessageParameter::new_capabilities(list)],
        );
        self.encode(BgpMessage::Open(open))
    }

    fn encode(&mut self, msg: BgpMessage) -> Bytes {
        let mut out = BytesMut::with_capacity(256);
        // Our own messages are built from validated values; a failure here is a bug
        // we report by sending nothing rather than a corrupt frame.
        if let Err(e) = self.inner.encode(msg, &mut out) {
            log::error!("BGP encode failed: {e:?}");
            return Bytes::new();
        }
        out.freeze()
    }

    /// UPDATEs announcing `prefixes` with `attrs`, each packed with as many
    /// NLRI as fit in 4096 octets (the attributes are encoded once without
    /// NLRI to know the room left). IPv4 with an IPv6 next hop goes in
    /// MP_REACH (RFC 8950). IPv4 NLRI carry their path identifiers on an
    /// ADD-PATH session (RFC 7911).
    pub fn encode_announce(&mut self, prefixes: &[Nlri], attrs: &PathAttrs) -> Vec<Bytes> {
        let mut out = Vec::new();
        let (v4, v6) = split(prefixes);
        let id_len = if self.session.add_path_tx { 4 } else { 0 };
        if !v4.is_empty() {
            let room = self
                .max_len()
                .saturating_sub(self.announce_v4(&[], attrs).len() + LEN_SLACK);
            let size = |(p, _): &(Ipv4Prefix, u32)| id_len + 1 + usize::from(p.len()).div_ceil(8);
            for chunk in chunks_by_size(&v4, room, size) {
                out.push(self.announce_v4(chunk, attrs));
            }
        }
        if !v6.is_empty() {
            let room = self
                .max_len()
                .saturating_sub(self.announce_v6(&[], attrs).len() + LEN_SLACK);
            let size = |(p, _): &(Ipv6Prefix, u32)| 1 + usize::from(p.len).div_ceil(8);
            for chunk in chunks_by_size(&v6, room, size) {
                out.push(self.announce_v6(chunk, attrs));
            }
        }
        out
    }

    /// One UPDATE announcing IPv4 `chunk` with `attrs`.
    fn announce_v4(&mut self, chunk: &[(Ipv4Prefix, u32)], attrs: &PathAttrs) -> Bytes {
        let tx = self.session.add_path_tx;
        let nlri: Vec<Ipv4UnicastAddress> = chunk
            .iter()
            .filter_map(|(p, id)| v4_nlri(*p, tx.then_some(*id)))
            .collect();
        let mut list = self.common_attrs(attrs);
        match attrs.next_hop {
            NextHop::V4 { addr } => {
                list.push(attr(
                    false,
                    true,
                    pa::PathAttributeValue::NextHop(pa::NextHop::new(addr)),
                ));
                let u = BgpUpdateMessage::new(Vec::<Ipv4UnicastAddress>::new(), list, nlri);
                self.encode(BgpMessage::Update(u))
            }
            NextHop::V6 { global, link_local } => {
                let mp = pa::MpReach::Ipv4Unicast {
                    next_hop: IpAddr::V6(global),
                    next_hop_local: link_local,
                    nlri: nlri.into(),
                };
                self.encode_mp_reach(list, mp)
            }
        }
    }

    /// One UPDATE announcing IPv6 `chunk` with `attrs` (MP_REACH).
    fn announce_v6(&mut self, chunk: &[(Ipv6Prefix, u32)], attrs: &PathAttrs) -> Bytes {
        let nlri: Vec<Ipv6UnicastAddress> = chunk.iter().filter_map(|(p, _)| v6_nlri(*p)).collect();
        let (global, link_local) = match attrs.next_hop {
            NextHop::V6 { global, link_local } => (global, link_local),
            NextHop::V4 { addr } => (addr.to_ipv6_mapped(), None),
        };
        let list = self.common_attrs(attrs);
        let mp = pa::MpReach::Ipv6Unicast {
            next_hop_global: global,
            next_hop_local: link_local,
            nlri: nlri.into(),
        };
        self.encode_mp_reach(list, mp)
    }

    /// One UPDATE whose routes are all in MP_REACH_NLRI (first attribute,
    /// RFC 4760), with `list` the other attributes.
    fn encode_mp_reach(&mut self, mut list: Vec<pa::PathAttribute>, mp: pa::MpReach) -> Bytes {
        list.insert(0, attr(true, false, pa::PathAttributeValue::MpReach(mp)));
        let u = BgpUpdateMessage::new(
            Vec::<Ipv4UnicastAddress>::new(),
            list,
            Vec::<Ipv4UnicastAddress>::new(),
        );
        self.encode(BgpMessage::Update(u))
    }

    /// UPDATEs withdrawing `prefixes`. With `mp_v4`, IPv4 goes in MP_UNREACH
    /// (used on sessions where IPv4 is carried only by MP-BGP).
    pub fn encode_withdraw(&mut self, prefixes: &[Nlri], mp_v4: bool) -> Vec<Bytes> {
        let mut out = Vec::new();
        let (v4, v6) = split(prefixes);
        let tx = self.session.add_path_tx;
        let v4: Vec<Ipv4UnicastAddress> = v4
            .into_iter()
            .filter_map(|(p, id)| v4_nlri(p, tx.then_some(id)))
            .collect();
        let v6: Vec<Ipv6UnicastAddress> = v6.into_iter().filter_map(|(p, _)| v6_nlri(p)).collect();
        // Withdrawn IPv4 /32s are 5 octets (9 with a path id): these counts
        // fit 4096 octets, and 15 times as many fit an extended message.
        let scale = self.max_len() / MAX_LEN;
        for chunk in v4.chunks(scale * if tx { 440 } else { 800 }) {
            let u = if mp_v4 {
                BgpUpdateMessage::new(
                    Vec::<Ipv4UnicastAddress>::new(),
                    vec![attr(
                        true,
                        false,
                        pa::PathAttributeValue::MpUnreach(pa::MpUnreach::Ipv4Unicast {
                            nlri: chunk.to_vec().into(),
                        }),
                    )],
                    Vec::<Ipv4UnicastAddress>::new(),
                )
            } else {
                BgpUpdateMessage::new(
                    chunk.to_vec(),
                    Vec::<pa::PathAttribute>::new(),
                    Vec::<Ipv4UnicastAddress>::new(),
                )
            };
            out.push(self.encode(BgpMessage::Update(u)));
        }
        for chunk in v6.chunks(scale * 200) {
            let u = BgpUpdateMessage::new(
                Vec::<Ipv4UnicastAddress>::new(),
                vec![attr(
                    true,
                    false,
                    pa::PathAttributeValue::MpUnreach(pa::MpUnreach::Ipv6Unicast {
                        nlri: chunk.to_vec().into(),
                    }),
                )],
                Vec::<Ipv4UnicastAddress>::new(),
            );
            out.push(self.encode(BgpMessage::Update(u)));
        }
        out
    }

    fn common_attrs(&self, a: &PathAttrs) -> Vec<pa::PathAttribute> {
        let mut list = Vec::new();
        let origin = match a.origin {
            Origin::Igp => pa::Origin::IGP,
            Origin::Egp => pa::Origin::EGP,
            Origin::Incomplete => pa::Origin::Incomplete,
        };
        list.push(attr(false, true, pa::PathAttributeValue::Origin(origin)));
        // RFC 6793 4.2.2: a peer without the 4-octet AS capability (an OLD
        // speaker) gets 2-octet ASNs, with AS4_PATH and AS4_AGGREGATOR
        // carrying what does not fit (see `as4`); a NEW peer never gets them.
        let old = (!self.session.asn4).then(|| as4::to_old(a));
        let as_path = match &old {
            None => pa::AsPath::As4PathSegments(
                a.as_path
                    .iter()
                    .map(|s| pa::As4PathSegment::new(seg_type(s.kind), s.asns.clone()))
                    .collect::<Vec<_>>()
                    .into(),
            ),
            Some(o) => pa::AsPath::As2PathSegments(
                o.as_path
                    .iter()
                    .map(|(kind, asns)| pa::As2PathSegment::new(seg_type(*kind), asns.clone()))
                    .collect::<Vec<_>>()
                    .into(),
            ),
        };
        list.push(attr(false, true, pa::PathAttributeValue::AsPath(as_path)));
        if let Some(med) = a.med {
            list.push(attr(
                true,
                false,
                pa::PathAttributeValue::MultiExitDiscriminator(pa::MultiExitDiscriminator::new(
                    med,
                )),
            ));
        }
        if let Some(lp) = a.local_pref {
            list.push(attr(
                false,
                true,
                pa::PathAttributeValue::LocalPreference(pa::LocalPreference::new(lp)),
            ));
        }
        if a.atomic_aggregate {
            list.push(attr(
                false,
                true,
                pa::PathAttributeValue::AtomicAggregate(pa::AtomicAggregate),
            ));
        }
        let aggregator = match &old {
            None => a
                .aggregator
                .map(|(asn, ip)| pa::Aggregator::As4Aggregator(pa::As4Aggregator::new(asn, ip))),
            Some(o) => o
                .aggregator
                .map(|(asn, ip)| pa::Aggregator::As2Aggregator(pa::As2Aggregator::new(asn, ip))),
        };
        if let Some(v) = aggregator {
            list.push(attr(true, true, pa::PathAttributeValue::Aggregator(v)));
        }
        if !a.communities.is_empty() {
            let cs: Vec<netgauze_bgp_pkt::community::Community> = a
                .communities
                .iter()
                .map(|c| netgauze_bgp_pkt::community::Community::new(c.0))
                .collect();
            list.push(attr(
                true,
                true,
                pa::PathAttributeValue::Communities(pa::Communities::new(cs)),
            ));
        }
        if let Some(o) = a.originator_id {
            list.push(attr(
                true,
                false,
                pa::PathAttributeValue::Originator(pa::Originator::new(o)),
            ));
        }
        if !a.cluster_list.is_empty() {
            let ids: Vec<pa::ClusterId> = a
                .cluster_list
                .iter()
                .map(|c| pa::ClusterId::new(*c))
                .collect();
            list.push(attr(
                true,
                false,
                pa::PathAttributeValue::ClusterList(pa::ClusterList::new(ids)),
            ));
        }
        if let Some(o) = &old {
            if let Some(path) = &o.as4_path {
                let segs: Vec<pa::As4PathSegment> = path
                    .iter()
                    .map(|s| pa::As4PathSegment::new(seg_type(s.kind), s.asns.clone()))
                    .collect();
                list.push(attr(
                    true,
                    true,
                    pa::PathAttributeValue::As4Path(pa::As4Path::new(segs)),
                ));
            }
            if let Some((asn, ip)) = o.as4_aggregator {
                // netgauze has no AS4_AGGREGATOR value of its own: the 8 octets
                // of RFC 6793 3 (AS, then the aggregator's address) as they go.
                let mut value = asn.to_be_bytes().to_vec();
                value.extend_from_slice(&ip.octets());
                list.push(attr(
                    true,
                    true,
                    pa::PathAttributeValue::UnknownAttribute(pa::UnknownAttribute::new(
                        code::AS4_AGGREGATOR,
                        value,
                    )),
                ));
            }
        }
        for raw in &a.unknown {
            // AS4_PATH and AS4_AGGREGATOR are ours to build (above, for an OLD
            // peer only); one never passes through from elsewhere.
            if raw.code == code::AS4_PATH || raw.code == code::AS4_AGGREGATOR {
                continue;
            }
            let value = pa::PathAttributeValue::UnknownAttribute(pa::UnknownAttribute::new(
                raw.code,
                raw.value.clone(),
            ));
            let extended = raw.value.len() > 255;
            if let Ok(at) = pa::PathAttribute::from(
                raw.flags & 0x80 != 0,
                raw.flags & 0x40 != 0,
                raw.flags & 0x20 != 0,
                extended,
                value,
            ) {
                list.push(at);
            }
        }
        list
    }
}

fn attr(optional: bool, transitive: bool, value: pa::PathAttributeValue) -> pa::PathAttribute {
    let extended = value_len(&value) > 255;
    match pa::PathAttribute::from(optional, transitive, false, extended, value) {
        Ok(a) => a,
        // The flags we pass are the attribute's own; keep what netgauze says is valid.
        Err((value, _)) => pa::PathAttribute::from(!optional, transitive, false, true, value)
            .unwrap_or_else(|(v, _)| {
                pa::PathAttribute::from(true, true, false, true, v).expect("attribute flags")
            }),
    }
}

fn value_len(v: &pa::PathAttributeValue) -> usize {
    match v {
        pa::PathAttributeValue::MpReach(pa::MpReach::Ipv4Unicast { nlri, .. }) => {
            nlri.len() * 5 + 40
        }
        pa::PathAttributeValue::MpReach(pa::MpReach::Ipv6Unicast { nlri, .. }) => {
            nlri.len() * 17 + 40
        }
        pa::PathAttributeValue::MpUnreach(pa::MpUnreach::Ipv4Unicast { nlri }) => {
            nlri.len() * 5 + 3
        }
        pa::PathAttributeValue::MpUnreach(pa::MpUnreach::Ipv6Unicast { nlri }) => {
            nlri.len() * 17 + 3
        }
        pa::PathAttributeValue::Communities(c) => c.communities().len() * 4,
        pa::PathAttributeValue::ClusterList(c) => c.cluster_list().len() * 4,
        pa::PathAttributeValue::AsPath(pa::AsPath::As4PathSegments(s)) => {
            s.iter().map(|s| 2 + 4 * s.as_numbers().len()).sum()
        }
        pa::PathAttributeValue::AsPath(pa::AsPath::As2PathSegments(s)) => {
            s.iter().map(|s| 2 + 2 * s.as_numbers().len()).sum()
        }
        pa::PathAttributeValue::As4Path(p) => p
            .segments()
            .iter()
            .map(|s| 2 + 4 * s.as_numbers().len())
            .sum(),
        pa::PathAttributeValue::UnknownAttribute(u) => u.value().len(),
        _ => 8,
    }
}

fn seg_type(k: AsSegmentKind) -> pa::AsPathSegmentType {
    match k {
        AsSegmentKind::Set => pa::AsPathSegmentType::AsSet,
        AsSegmentKind::Sequence => pa::AsPathSegmentType::AsSequence,
    }
}

fn address_type(f: Family) -> AddressType {
    match f {
        Family::Ipv4Unicast => AddressType::Ipv4Unicast,
        Family::Ipv6Unicast => AddressType::Ipv6Unicast,
    }
}

/// Slack under 4096 octets for an UPDATE packed by size: the MP_REACH
/// attribute's length grows from one octet to two (extended length) once
/// its NLRI pass 255 octets, which the NLRI-less encoding did not count.
const LEN_SLACK: usize = 4;

/// `items` cut into runs whose `size`s add up to at most `room` each (an
/// item larger than `room` on its own still gets a run).
fn chunks_by_size<T>(items: &[T], room: usize, size: impl Fn(&T) -> usize) -> Vec<&[T]> {
    let mut out = Vec::new();
    let (mut start, mut used) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        let n = size(item);
        if used + n > room && i > start {
            out.push(&items[start..i]);
            start = i;
            used = 0;
        }
        used += n;
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

fn v4_nlri(p: Ipv4Prefix, path_id: Option<u32>) -> Option<Ipv4UnicastAddress> {
    let net = ipnet::Ipv4Net::new(p.addr(), p.len()).ok()?;
    Some(Ipv4UnicastAddress::new(
        path_id,
        Ipv4Unicast::from_net(net).ok()?,
    ))
}

fn v6_nlri(p: Ipv6Prefix) -> Option<Ipv6UnicastAddress> {
    let net = ipnet::Ipv6Net::new(p.addr, p.len).ok()?;
    Some(Ipv6UnicastAddress::new(
        None,
        Ipv6Unicast::from_net(net).ok()?,
    ))
}

/// A KEEPALIVE.
pub fn keepalive() -> Bytes {
    let mut b = BytesMut::with_capacity(HEADER_LEN);
    b.put_slice(&[0xff; 16]);
    b.put_u16(HEADER_LEN as u16);
    b.put_u8(MSG_KEEPALIVE);
    b.freeze()
}

/// A NOTIFICATION.
pub fn notification(n: &Notification) -> Bytes {
    let len = HEADER_LEN + 2 + n.data.len().min(MAX_LEN - HEADER_LEN - 2);
    let mut b = BytesMut::with_capacity(len);
    b.put_slice(&[0xff; 16]);
    b.put_u16(len as u16);
    b.put_u8(MSG_NOTIFICATION);
    b.put_u8(n.code);
    b.put_u8(n.subcode);
    b.put_slice(&n.data[..len - HEADER_LEN - 2]);
    b.freeze()
}

/// A ROUTE-REFRESH request (RFC 2918).
pub fn route_refresh(f: Family) -> Bytes {
    let mut b = BytesMut::with_capacity(23);
    b.put_slice(&[0xff; 16]);
    b.put_u16(23);
    b.put_u8(MSG_ROUTE_REFRESH);
    b.put_u16(match f {
        Family::Ipv4Unicast => 1,
        Family::Ipv6Unicast => 2,
    });
    b.put_u8(0);
    b.put_u8(1);
    b.freeze()
}

/// An End-of-RIB marker (RFC 4724 2).
pub fn end_of_rib(f: Family) -> Bytes {
    match f {
        Family::Ipv4Unicast => {
            let mut b = BytesMut::with_capacity(23);
            b.put_slice(&[0xff; 16]);
            b.put_u16(23);
            b.put_u8(MSG_UPDATE);
            b.put_u16(0);
            b.put_u16(0);
            b.freeze()
        }
        Family::Ipv6Unicast => {
            let mut b = BytesMut::with_capacity(29);
            b.put_slice(&[0xff; 16]);
            b.put_u16(29);
            b.put_u8(MSG_UPDATE);
            b.put_u16(0);
            b.put_u16(6);
            b.put_slice(&[0x80, 15, 3, 0, 2, 1]);
            b.freeze()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{check_header, AddPath, GracefulRestart, Message, SessionContext, MSG_OPEN};
    use super::*;
    use crate::route::{AsSegment, Community, Prefix, RawAttr};

    fn frame_of(b: &Bytes) -> Vec<u8> {
        let h: [u8; HEADER_LEN] = b[..HEADER_LEN].try_into().unwrap();
        let (len, _) = check_header(&h, MAX_LEN).unwrap();
        assert_eq!(len, b.len());
        b.to_vec()
    }

    fn p4(s: &str) -> Nlri {
        Prefix::V4(s.parse().unwrap()).into()
    }

    fn attrs() -> PathAttrs {
        let mut a = PathAttrs::local(NextHop::V4 {
            addr: "10.0.0.1".parse().unwrap(),
        });
        a.as_path = vec![AsSegment {
            kind: AsSegmentKind::Sequence,
            asns: vec![65001, 4_200_000_000],
        }];
        a.local_pref = Some(200);
        a.med = Some(5);
        a.communities = vec![Community::new(65000, 100), Community::new(65000, 1)];
        a.originator_id = Some("10.0.0.9".parse().unwrap());
        a.cluster_list = vec!["10.0.0.100".parse().unwrap()];
        a.unknown = vec![RawAttr {
            flags: 0xc0,
            code: 99,
            value: vec![1, 2, 3],
        }];
        a
    }

    #[test]
    fn open_roundtrip_with_capabilities() {
        let mut c = Codec::new();
        let caps = Capabilities {
            ipv4_unicast: true,
            ipv6_unicast: true,
            four_octet_as: Some(4_200_000_001),
            route_refresh: true,
            extended_next_hop_v4: true,
            graceful_restart: Some(GracefulRestart {
                restart_time: 120,
                restarting: true,
                families: vec![(Family::Ipv4Unicast, true)],
            }),
            add_path_v4: AddPath {
                receive: true,
                send: false,
            },
            extended_message: true,
        };
        let b = c.encode_open(4_200_000_001, 90, "10.0.0.1".parse().unwrap(), &caps);
        assert!(super::super::open_offers_extended_message(&b));
        let plain = Capabilities {
            extended_message: false,
            ..caps.clone()
        };
        let p = c.encode_open(4_200_000_001, 90, "10.0.0.1".parse().unwrap(), &plain);
        assert!(!super::super::open_offers_extended_message(&p));
        let Message::Open(o) = Codec::new().decode(&frame_of(&b)).unwrap() else {
            panic!()
        };
        assert_eq!(o.asn, 4_200_000_001);
        assert_eq!(o.hold_time, 90);
        assert_eq!(o.caps, caps);
        assert_eq!(
            u16::from_be_bytes([b[20], b[21]]),
            AS_TRANS as u16,
            "2-octet My AS is AS_TRANS"
        );
    }

    #[test]
    fn update_roundtrip_v4_next_hop() {
        let mut c = Codec::new();
        let a = attrs();
        let msgs = c.encode_announce(&[p4("10.77.60.10/32"), p4("10.77.60.11/32")], &a);
        assert_eq!(msgs.len(), 1);
        let Message::Update(u) = Codec::new().decode(&frame_of(&msgs[0])).unwrap() else {
            panic!()
        };
        assert!(u.errors.is_empty(), "{:?}", u.errors);
        assert_eq!(u.announced.len(), 1);
        assert_eq!(
            u.announced[0].prefixes,
            vec![p4("10.77.60.10/32"), p4("10.77.60.11/32")]
        );
        // An unrecognized transitive attribute comes back with the Partial bit (RFC 4271 9).
        let mut want = a.clone();
        want.unknown[0].flags |= 0x20;
        assert_eq!(*u.announced[0].attrs, want);
    }

    /// A codec on a session with a peer that did not advertise 4-octet AS.
    fn old_peer_codec() -> Codec {
        let mut c = Codec::new();
        c.set_session(SessionContext {
            asn4: false,
            ..SessionContext::default()
        });
        c
    }

    /// The path attributes of an encoded UPDATE: (flags, type code, value).
    fn attributes_of(b: &Bytes) -> Vec<(u8, u8, Vec<u8>)> {
        let body = &b[HEADER_LEN..];
        let wlen = usize::from(u16::from_be_bytes([body[0], body[1]]));
        let at = 2 + wlen;
        let alen = usize::from(u16::from_be_bytes([body[at], body[at + 1]]));
        let mut rest = &body[at + 2..at + 2 + alen];
        let mut out = Vec::new();
        while !rest.is_empty() {
            let (flags, code) = (rest[0], rest[1]);
            let (hdr, len) = if flags & 0x10 != 0 {
                (4, usize::from(u16::from_be_bytes([rest[2], rest[3]])))
            } else {
                (3, usize::from(rest[2]))
            };
            out.push((flags, code, rest[hdr..hdr + len].to_vec()));
            rest = &rest[hdr + len..];
        }
        out
    }

    fn attribute(attrs: &[(u8, u8, Vec<u8>)], c: u8) -> Option<(u8, Vec<u8>)> {
        attrs
            .iter()
            .find(|(_, code, _)| *code == c)
            .map(|(f, _, v)| (*f, v.clone()))
    }

    const AGG_IP: [u8; 4] = [192, 0, 2, 9];

    #[test]
    fn to_a_2_octet_peer_wide_asns_are_as_trans_with_as4_path_and_as4_aggregator() {
        // attrs(): AS_PATH 65001 4200000000.
        let mut a = attrs();
        a.aggregator = Some((4_200_000_009, Ipv4Addr::from(AGG_IP)));
        let msgs = old_peer_codec().encode_announce(&[p4("10.77.60.10/32")], &a);
        let got = attributes_of(&msgs[0]);
        // AS_PATH: one AS_SEQUENCE of two 2-octet ASNs, 4200000000 as AS_TRANS.
        assert_eq!(
            attribute(&got, code::AS_PATH),
            Some((0x40, vec![2, 2, 0xfd, 0xe9, 0x5b, 0xa0]))
        );
        // AS4_PATH: optional transitive, the true path in 4-octet ASNs.
        let as4_path = [
            &[2u8, 2][..],
            &65001u32.to_be_bytes(),
            &4_200_000_000u32.to_be_bytes(),
        ]
        .concat();
        assert_eq!(attribute(&got, code::AS4_PATH), Some((0xc0, as4_path)));
        // AGGREGATOR with AS_TRANS, AS4_AGGREGATOR with the true AS.
        assert_eq!(
            attribute(&got, code::AGGREGATOR),
            Some((0xc0, [&[0x5b, 0xa0][..], &AGG_IP].concat()))
        );
        assert_eq!(
            attribute(&got, code::AS4_AGGREGATOR),
            Some((
                0xc0,
                [&4_200_000_009u32.to_be_bytes()[..], &AGG_IP].concat()
            ))
        );
    }

    #[test]
    fn to_a_2_octet_peer_a_2_octet_path_gets_no_as4_attributes() {
        let mut a = attrs();
        a.as_path[0].asns = vec![65001, 65535];
        a.aggregator = Some((65009, Ipv4Addr::from(AGG_IP)));
        let msgs = old_peer_codec().encode_announce(&[p4("10.77.60.10/32")], &a);
        let got = attributes_of(&msgs[0]);
        assert_eq!(
            attribute(&got, code::AS_PATH),
            Some((0x40, vec![2, 2, 0xfd, 0xe9, 0xff, 0xff]))
        );
        assert_eq!(
            attribute(&got, code::AGGREGATOR),
            Some((0xc0, [&[0xfd, 0xf1][..], &AGG_IP].concat()))
        );
        assert_eq!(attribute(&got, code::AS4_PATH), None);
        assert_eq!(attribute(&got, code::AS4_AGGREGATOR), None);
    }

    #[test]
    fn to_a_4_octet_peer_no_as4_attributes_are_sent() {
        let mut a = attrs();
        a.aggregator = Some((4_200_000_009, Ipv4Addr::from(AGG_IP)));
        // Even one that came in as an unrecognized attribute does not pass.
        a.unknown.push(RawAttr {
            flags: 0xe0,
            code: code::AS4_PATH,
            value: vec![2, 1, 0, 1, 0, 0],
        });
        let msgs = Codec::new().encode_announce(&[p4("10.77.60.10/32")], &a);
        let got = attributes_of(&msgs[0]);
        let as_path = [
            &[2u8, 2][..],
            &65001u32.to_be_bytes(),
            &4_200_000_000u32.to_be_bytes(),
        ]
        .concat();
        assert_eq!(attribute(&got, code::AS_PATH), Some((0x40, as_path)));
        assert_eq!(
            attribute(&got, code::AGGREGATOR),
            Some((
                0xc0,
                [&4_200_000_009u32.to_be_bytes()[..], &AGG_IP].concat()
            ))
        );
        assert_eq!(attribute(&got, code::AS4_PATH), None);
        assert_eq!(attribute(&got, code::AS4_AGGREGATOR), None);
    }

    #[test]
    fn a_4_octet_path_crosses_a_2_octet_session_intact() {
        let mut a = attrs();
        a.as_path.push(AsSegment {
            kind: AsSegmentKind::Set,
            asns: vec![4_200_000_002, 65003],
        });
        a.aggregator = Some((4_200_000_009, Ipv4Addr::from(AGG_IP)));
        let msgs = old_peer_codec().encode_announce(&[p4("10.77.60.10/32")], &a);
        let Message::Update(u) = old_peer_codec().decode(&frame_of(&msgs[0])).unwrap() else {
            panic!()
        };
        assert!(u.errors.is_empty(), "{:?}", u.errors);
        let mut want = a.clone();
        want.unknown[0].flags |= 0x20;
        assert_eq!(*u.announced[0].attrs, want);
    }

    #[test]
    fn ipv4_with_ipv6_next_hop_uses_mp_reach() {
        let mut c = Codec::new();
        let mut a = attrs();
        a.next_hop = NextHop::V6 {
            global: "2001:db8::1".parse().unwrap(),
            link_local: Some("fe80::1".parse().unwrap()),
        };
        let msgs = c.encode_announce(&[p4("10.77.60.10/32")], &a);
        let Message::Update(u) = Codec::new().decode(&frame_of(&msgs[0])).unwrap() else {
            panic!()
        };
        assert_eq!(u.announced[0].prefixes, vec![p4("10.77.60.10/32")]);
        assert_eq!(u.announced[0].attrs.next_hop, a.next_hop);
    }

    #[test]
    fn ipv6_prefixes_and_withdrawals() {
        let mut c = Codec::new();
        let mut a = attrs();
        a.next_hop = NextHop::V6 {
            global: "2001:db8::1".parse().unwrap(),
            link_local: None,
        };
        let p6 = Prefix::V6(Ipv6Prefix::new("2001:db8:77::".parse().unwrap(), 48));
        let msgs = c.encode_announce(&[p6.into()], &a);
        let Message::Update(u) = Codec::new().decode(&frame_of(&msgs[0])).unwrap() else {
            panic!()
        };
        assert_eq!(u.announced[0].prefixes, vec![p6]);
        for mp in [false, true] {
            let w = c.encode_withdraw(&[p4("10.77.60.10/32"), p6.into()], mp);
            let mut got = Vec::new();
            for m in &w {
                let Message::Update(u) = Codec::new().decode(&frame_of(m)).unwrap() else {
                    panic!()
                };
                got.extend(u.withdrawn);
            }
            assert_eq!(got, vec![p4("10.77.60.10/32"), p6.into()]);
        }
    }

    /// MP_REACH UPDATEs (IPv4 over an IPv6 next hop, IPv6) are packed too,
    /// past the attribute's one-octet length, and stay within 4096 octets.
    #[test]
    fn mp_reach_announcements_are_packed_under_4096() {
        let mut a = attrs();
        a.next_hop = NextHop::V6 {
            global: "2001:db8::1".parse().unwrap(),
            link_local: Some("fe80::1".parse().unwrap()),
        };
        let v4: Vec<Nlri> = (0..2000u32)
            .map(|i| Prefix::V4(Ipv4Prefix::host(Ipv4Addr::from(0x0a00_0000 + i))).into())
            .collect();
        let v6: Vec<Nlri> = (0..1000u128)
            .map(|i| {
                let addr = std::net::Ipv6Addr::from(0x2001_0db8_u128 << 96 | i);
                Prefix::V6(Ipv6Prefix::new(addr, 128)).into()
            })
            .collect();
        let mut c = Codec::new();
        for (prefixes, want_msgs) in [(v4, 3), (v6, 5)] {
            let msgs = c.encode_announce(&prefixes, &a);
            assert_eq!(msgs.len(), want_msgs);
            let mut got = Vec::new();
            for m in &msgs {
                assert!(m.len() <= MAX_LEN, "{} octets", m.len());
                let Message::Update(u) = c.decode(&frame_of(m)).unwrap() else {
                    panic!()
                };
                assert!(u.errors.is_empty(), "{:?}", u.errors);
                got.extend(u.announced.into_iter().flat_map(|r| r.prefixes));
            }
            assert_eq!(got, prefixes);
        }
    }

    /// RFC 8654: with Extended Messages negotiated, UPDATEs are packed up
    /// to 65535 octets; an OPEN over 4096 is refused whatever the limit;
    /// an RFC 9072 OPEN (2-octet parameter lengths) is scanned too.
    #[test]
    fn extended_messages_pack_up_to_65535() {
        use super::super::{open_offers_extended_message, MAX_EXTENDED_LEN};
        let prefixes: Vec<Nlri> = (0..20000u32)
            .map(|i| Prefix::V4(Ipv4Prefix::host(Ipv4Addr::from(0x0a00_0000 + i))).into())
            .collect();
        let mut c = Codec::new();
        c.session.extended_message = true;
        let msgs = c.encode_announce(&prefixes, &attrs());
        // 100000 octets of NLRI: two UPDATEs.
        assert_eq!(msgs.len(), 2);
        assert!(msgs.iter().all(|m| m.len() <= MAX_EXTENDED_LEN));
        assert!(msgs[0].len() > 60000);
        let mut got = Vec::new();
        for m in msgs.iter().chain(&c.encode_withdraw(&prefixes, false)) {
            let h: [u8; HEADER_LEN] = m[..HEADER_LEN].try_into().unwrap();
            assert!(check_header(&h, MAX_EXTENDED_LEN).is_ok());
            assert!(
                check_header(&h, MAX_LEN).is_err(),
                "over 4096 without RFC 8654"
            );
            let Message::Update(u) = c.decode(m).unwrap() else {
                panic!()
            };
            got.extend(u.announced.into_iter().flat_map(|r| r.prefixes));
            got.extend(u.withdrawn);
        }
        assert_eq!(got.len(), 2 * prefixes.len());
        // An OPEN stays within 4096 octets.
        let mut h = [0xffu8; HEADER_LEN];
        h[16..18].copy_from_slice(&5000u16.to_be_bytes());
        h[18] = MSG_OPEN;
        assert!(check_header(&h, MAX_EXTENDED_LEN).is_err());
        // RFC 9072 form: non-ext length 255, type 255, 2-octet lengths.
        let mut open = vec![0xffu8; 16];
        open.extend_from_slice(&[0, 0, MSG_OPEN, 4, 0xfd, 0xe8, 0, 90, 10, 0, 0, 1]);
        open.extend_from_slice(&[255, 255, 0, 5, 2, 0, 2, 6, 0]);
        let len = open.len() as u16;
        open[16..18].copy_from_slice(&len.to_be_bytes());
        assert!(open_offers_extended_message(&open));
        let code = open.len() - 2;
        open[code] = 65; // another capability
        assert!(!open_offers_extended_message(&open));
        assert!(!open_offers_extended_message(&open[..30]), "truncated");
    }

    #[test]
    fn large_announcements_are_split_under_4096() {
        let prefixes: Vec<Nlri> = (0..2000u32)
            .map(|i| Nlri {
                prefix: Prefix::V4(Ipv4Prefix::host(Ipv4Addr::from(0x0a00_0000 + i))),
                path_id: 0x8000_0000 + i,
            })
            .collect();
        // A 2-octet-AS peer also gets AS4_PATH and AS4_AGGREGATOR.
        let mut a = attrs();
        a.aggregator = Some((4_200_000_009, Ipv4Addr::from(AGG_IP)));
        for (new_peer, add_path) in [(true, false), (false, false), (true, true)] {
            let mut c = if new_peer {
                Codec::new()
            } else {
                old_peer_codec()
            };
            c.session.add_path_tx = add_path;
            c.session.add_path_rx = add_path;
            let msgs = c.encode_announce(&prefixes, &a);
            // Packed: 2000 /32s are 10000 octets of NLRI (18000 with path
            // ids), so 3 (5) UPDATEs, each near 4096 octets but the last.
            assert_eq!(msgs.len(), if add_path { 5 } else { 3 });
            assert!(msgs[..msgs.len() - 1].iter().all(|m| m.len() > 3900));
            let mut got = Vec::new();
            for m in &msgs {
                assert!(m.len() <= MAX_LEN);
                let Message::Update(u) = c.decode(&frame_of(m)).unwrap() else {
                    panic!()
                };
                assert!(u.errors.is_empty(), "{:?}", u.errors);
                got.extend(u.announced.into_iter().flat_map(|r| r.prefixes));
            }
            let want: Vec<Nlri> = if add_path {
                prefixes.clone()
            } else {
                prefixes.iter().map(|n| n.prefix.into()).collect()
            };
            assert_eq!(got, want, "path ids only on an ADD-PATH session");
            let mut got = Vec::new();
            for m in c.encode_withdraw(&prefixes, false) {
                assert!(m.len() <= MAX_LEN);
                let Message::Update(u) = c.decode(&frame_of(&m)).unwrap() else {
                    panic!()
                };
                got.extend(u.withdrawn);
            }
            assert_eq!(got, want);
        }
    }

    #[test]
    fn end_of_rib_markers() {
        for f in [Family::Ipv4Unicast, Family::Ipv6Unicast] {
            let Message::Update(u) = Codec::new().decode(&frame_of(&end_of_rib(f))).unwrap() else {
                panic!()
            };
            assert_eq!(u.end_of_rib, Some(f));
        }
    }
}
