//! UPDATE decoding (RFC 4271 4.3) into our route types, with RFC 7606
//! revised error handling: a malformed path attribute makes the UPDATE's
//! prefixes withdrawn (treat-as-withdraw) instead of resetting the session;
//! only an UPDATE whose NLRI cannot be located resets it.

use super::Family;
use crate::route::{
    AsSegment, AsSegmentKind, Community, Ipv4Prefix, Ipv6Prefix, NextHop, Origin, PathAttrs,
    Prefix, RawAttr,
};
use netgauze_bgp_pkt::nlri::{Ipv4UnicastAddress, Ipv6UnicastAddress};
use netgauze_bgp_pkt::path_attribute as pa;
use netgauze_bgp_pkt::update::BgpUpdateMessage;
use netgauze_parse_utils::WritablePdu;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use super::HEADER_LEN;

#[derive(Debug, Clone, Default)]
pub struct Update {
    pub withdrawn: Vec<Prefix>,
    pub announced: Vec<Prefix>,
    /// Attributes of `announced` (None only when nothing is announced).
    pub attrs: Option<Arc<PathAttrs>>,
    /// Set when RFC 7606 turned the announcements into withdrawals.
    pub treat_as_withdraw: Option<String>,
    /// The UPDATE was an End-of-RIB marker for this family.
    pub end_of_rib: Option<Family>,
}

fn prefix_v4(a: &Ipv4UnicastAddress) -> Prefix {
    let n = a.network().address();
    Prefix::V4(Ipv4Prefix::containing(n.addr(), n.prefix_len()))
}

fn prefix_v6(a: &Ipv6UnicastAddress) -> Prefix {
    let n = a.network().address();
    Prefix::V6(Ipv6Prefix::new(n.addr(), n.prefix_len()))
}

pub(super) fn update_from(u: &BgpUpdateMessage) -> (Update, SeenAttrs) {
    let mut up = Update::default();
    up.withdrawn
        .extend(u.withdraw_routes().iter().map(prefix_v4));
    up.announced.extend(u.nlri().iter().map(prefix_v4));
    let mut a = PathAttrs::local(NextHop::V4 {
        addr: Ipv4Addr::UNSPECIFIED,
    });
    let mut have_next_hop = false;
    let mut seen = SeenAttrs::default();
    for at in u.path_attributes() {
        match at.value() {
            pa::PathAttributeValue::Origin(o) => {
                seen.origin = true;
                a.origin = match o {
                    pa::Origin::IGP => Origin::Igp,
                    pa::Origin::EGP => Origin::Egp,
                    pa::Origin::Incomplete => Origin::Incomplete,
                }
            }
            pa::PathAttributeValue::AsPath(p) => {
                seen.as_path = true;
                a.as_path = match p {
                    pa::AsPath::As2PathSegments(s) => s
                        .iter()
                        .map(|s| AsSegment {
                            kind: kind(s.segment_type()),
                            asns: s.as_numbers().iter().map(|x| u32::from(*x)).collect(),
                        })
                        .collect(),
                    pa::AsPath::As4PathSegments(s) => s
                        .iter()
                        .map(|s| AsSegment {
                            kind: kind(s.segment_type()),
                            asns: s.as_numbers().to_vec(),
                        })
                        .collect(),
                }
            }
            pa::PathAttributeValue::NextHop(n) => {
                have_next_hop = true;
                a.next_hop = NextHop::V4 { addr: n.next_hop() };
            }
            pa::PathAttributeValue::MultiExitDiscriminator(m) => a.med = Some(m.metric()),
            pa::PathAttributeValue::LocalPreference(l) => a.local_pref = Some(l.metric()),
            pa::PathAttributeValue::AtomicAggregate(_) => a.atomic_aggregate = true,
            pa::PathAttributeValue::Aggregator(pa::Aggregator::As4Aggregator(g)) => {
                a.aggregator = Some((*g.asn(), g.origin()))
            }
            pa::PathAttributeValue::Aggregator(pa::Aggregator::As2Aggregator(g)) => {
                a.aggregator = Some((u32::from(*g.asn()), g.origin()))
            }
            pa::PathAttributeValue::Communities(c) => {
                a.communities = c
                    .communities()
                    .iter()
                    .map(|c| Community(c.value()))
                    .collect()
            }
            pa::PathAttributeValue::Originator(o) => a.originator_id = Some(o.id()),
            pa::PathAttributeValue::ClusterList(c) => {
                a.cluster_list = c.cluster_list().iter().map(|c| c.id()).collect()
            }
            pa::PathAttributeValue::MpReach(pa::MpReach::Ipv4Unicast {
                next_hop,
                next_hop_local,
                nlri,
            }) => {
                have_next_hop = true;
                a.next_hop = match next_hop {
                    IpAddr::V4(v4) => NextHop::V4 { addr: *v4 },
                    IpAddr::V6(v6) => NextHop::V6 {
                        global: *v6,
                        link_local: *next_hop_local,
                    },
                };
                up.announced.extend(nlri.iter().map(prefix_v4));
            }
            pa::PathAttributeValue::MpReach(pa::MpReach::Ipv6Unicast {
                next_hop_global,
                next_hop_local,
                nlri,
            }) => {
                have_next_hop = true;
                a.next_hop = NextHop::V6 {
                    global: *next_hop_global,
                    link_local: *next_hop_local,
                };
                up.announced.extend(nlri.iter().map(prefix_v6));
            }
            pa::PathAttributeValue::MpUnreach(pa::MpUnreach::Ipv4Unicast { nlri }) => {
                if nlri.is_empty()
                    && u.nlri().is_empty()
                    && u.withdraw_routes().is_empty()
                    && u.path_attributes().len() == 1
                {
                    up.end_of_rib = Some(Family::Ipv4Unicast);
                }
                up.withdrawn.extend(nlri.iter().map(prefix_v4))
            }
            pa::PathAttributeValue::MpUnreach(pa::MpUnreach::Ipv6Unicast { nlri }) => {
                if nlri.is_empty() && u.path_attributes().len() == 1 {
                    up.end_of_rib = Some(Family::Ipv6Unicast);
                }
                up.withdrawn.extend(nlri.iter().map(prefix_v6))
            }
            // Other families we did not negotiate: ignore.
            pa::PathAttributeValue::MpReach(_) | pa::PathAttributeValue::MpUnreach(_) => {}
            pa::PathAttributeValue::As4Path(_) => {}
            _ => {
                // Keep transitive attributes we do not model, byte for byte.
                if at.transitive() {
                    if let Some(raw) = raw_attr(at) {
                        a.unknown.push(raw);
                    }
                }
            }
        }
    }
    if u.withdraw_routes().is_empty() && u.nlri().is_empty() && u.path_attributes().is_empty() {
        up.end_of_rib = Some(Family::Ipv4Unicast);
    }
    seen.next_hop = have_next_hop;
    if !up.announced.is_empty() {
        up.attrs = Some(Arc::new(a));
    }
    (up, seen)
}

#[derive(Default, Clone, Copy)]
pub(super) struct SeenAttrs {
    origin: bool,
    as_path: bool,
    next_hop: bool,
}

impl SeenAttrs {
    /// RFC 7606 3.d: a missing well-known mandatory attribute is treat-as-withdraw.
    pub(super) fn missing(&self, u: &Update) -> Option<&'static str> {
        if u.announced.is_empty() {
            None
        } else if !self.origin {
            Some("ORIGIN")
        } else if !self.as_path {
            Some("AS_PATH")
        } else if !self.next_hop {
            Some("NEXT_HOP")
        } else {
            None
        }
    }
}

fn kind(t: pa::AsPathSegmentType) -> AsSegmentKind {
    match t {
        pa::AsPathSegmentType::AsSet => AsSegmentKind::Set,
        pa::AsPathSegmentType::AsSequence => AsSegmentKind::Sequence,
    }
}

fn raw_attr(at: &pa::PathAttribute) -> Option<RawAttr> {
    let mut bytes = Vec::new();
    at.write(&mut bytes).ok()?;
    let flags = bytes.first().copied()?;
    let code = bytes.get(1).copied()?;
    let hdr = if flags & 0x10 != 0 { 4 } else { 3 };
    Some(RawAttr {
        flags: flags & 0xe0,
        code,
        value: bytes.get(hdr..)?.to_vec(),
    })
}

pub(super) fn treat_as_withdraw(u: &mut Update, reason: String) {
    let announced = std::mem::take(&mut u.announced);
    u.withdrawn.extend(announced);
    u.attrs = None;
    u.end_of_rib = None;
    u.treat_as_withdraw = Some(reason);
}

/// Walks an UPDATE structurally (RFC 7606 5) to find its NLRI when the
/// attributes cannot be parsed: withdrawn routes, the NLRI field, and the
/// NLRI inside MP_REACH / MP_UNREACH for IPv4/IPv6 unicast. None when even
/// the framing is broken (the session must then be reset).
pub fn locate_nlri(frame: &[u8]) -> Option<Update> {
    let body = frame.get(HEADER_LEN..)?;
    let wlen = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    let withdrawn = body.get(2..2 + wlen)?;
    let alen_at = 2 + wlen;
    let alen = usize::from(u16::from_be_bytes([
        *body.get(alen_at)?,
        *body.get(alen_at + 1)?,
    ]));
    let attrs = body.get(alen_at + 2..alen_at + 2 + alen)?;
    let nlri = body.get(alen_at + 2 + alen..)?;
    let mut u = Update {
        withdrawn: parse_prefixes_v4(withdrawn)?,
        announced: parse_prefixes_v4(nlri)?,
        ..Default::default()
    };
    let mut i = 0;
    while i < attrs.len() {
        let flags = *attrs.get(i)?;
        let code = *attrs.get(i + 1)?;
        let (len, hdr) = if flags & 0x10 != 0 {
            (
                usize::from(u16::from_be_bytes([*attrs.get(i + 2)?, *attrs.get(i + 3)?])),
                4,
            )
        } else {
            (usize::from(*attrs.get(i + 2)?), 3)
        };
        let v = attrs.get(i + hdr..i + hdr + len)?;
        match code {
            14 => {
                // MP_REACH: AFI(2) SAFI(1) NH len(1) NH reserved(1) NLRI
                let afi = u16::from_be_bytes([*v.first()?, *v.get(1)?]);
                let nhl = usize::from(*v.get(3)?);
                let nl = v.get(5 + nhl..)?;
                match (afi, *v.get(2)?) {
                    (1, 1) => u.announced.extend(parse_prefixes_v4(nl)?),
                    (2, 1) => u.announced.extend(parse_prefixes_v6(nl)?),
                    _ => {}
                }
            }
            15 => {
                let afi = u16::from_be_bytes([*v.first()?, *v.get(1)?]);
                let nl = v.get(3..)?;
                match (afi, *v.get(2)?) {
                    (1, 1) => u.withdrawn.extend(parse_prefixes_v4(nl)?),
                    (2, 1) => u.withdrawn.extend(parse_prefixes_v6(nl)?),
                    _ => {}
                }
            }
            _ => {}
        }
        i += hdr + len;
    }
    Some(u)
}

fn parse_prefixes_v4(mut b: &[u8]) -> Option<Vec<Prefix>> {
    let mut out = Vec::new();
    while let Some((&len, rest)) = b.split_first() {
        if len > 32 {
            return None;
        }
        let n = usize::from(len).div_ceil(8);
        let bytes = rest.get(..n)?;
        let mut a = [0u8; 4];
        a[..n].copy_from_slice(bytes);
        out.push(Prefix::V4(Ipv4Prefix::containing(Ipv4Addr::from(a), len)));
        b = &rest[n..];
    }
    Some(out)
}

fn parse_prefixes_v6(mut b: &[u8]) -> Option<Vec<Prefix>> {
    let mut out = Vec::new();
    while let Some((&len, rest)) = b.split_first() {
        if len > 128 {
            return None;
        }
        let n = usize::from(len).div_ceil(8);
        let bytes = rest.get(..n)?;
        let mut a = [0u8; 16];
        a[..n].copy_from_slice(bytes);
        out.push(Prefix::V6(Ipv6Prefix::new(Ipv6Addr::from(a), len)));
        b = &rest[n..];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::super::{Codec, Message, MSG_UPDATE};
    use super::*;

    fn p4(s: &str) -> Prefix {
        Prefix::V4(s.parse().unwrap())
    }

    /// Builds an UPDATE frame from raw parts.
    fn raw_update(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
        let mut b = vec![0xff; 16];
        let len = HEADER_LEN + 4 + withdrawn.len() + attrs.len() + nlri.len();
        b.extend_from_slice(&(len as u16).to_be_bytes());
        b.push(MSG_UPDATE);
        b.extend_from_slice(&(withdrawn.len() as u16).to_be_bytes());
        b.extend_from_slice(withdrawn);
        b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        b.extend_from_slice(attrs);
        b.extend_from_slice(nlri);
        b
    }

    const ORIGIN: [u8; 4] = [0x40, 1, 1, 0];
    const AS_PATH_EMPTY: [u8; 3] = [0x40, 2, 0];
    const NEXT_HOP: [u8; 7] = [0x40, 3, 4, 10, 0, 0, 1];
    const NLRI: [u8; 5] = [32, 10, 77, 60, 10];

    #[test]
    fn malformed_attribute_is_treat_as_withdraw() {
        // ORIGIN with value 7 (invalid) and a LOCAL_PREF of the wrong length.
        for bad in [vec![0x40, 1, 1, 7], vec![0x40, 5, 2, 0, 1]] {
            let mut attrs = Vec::new();
            attrs.extend_from_slice(&AS_PATH_EMPTY);
            attrs.extend_from_slice(&NEXT_HOP);
            attrs.extend_from_slice(&bad);
            if bad[1] != 1 {
                attrs.extend_from_slice(&ORIGIN);
            }
            let f = raw_update(&[], &attrs, &NLRI);
            let Message::Update(u) = Codec::new().decode(&f).unwrap() else {
                panic!()
            };
            assert!(u.treat_as_withdraw.is_some(), "{bad:?}");
            assert_eq!(u.withdrawn, vec![p4("10.77.60.10/32")]);
            assert!(u.announced.is_empty() && u.attrs.is_none());
        }
    }

    #[test]
    fn missing_mandatory_attribute_is_treat_as_withdraw() {
        let mut attrs = Vec::new();
        attrs.extend_from_slice(&ORIGIN);
        attrs.extend_from_slice(&AS_PATH_EMPTY);
        let f = raw_update(&[], &attrs, &NLRI);
        let Message::Update(u) = Codec::new().decode(&f).unwrap() else {
            panic!()
        };
        assert_eq!(
            u.treat_as_withdraw.as_deref(),
            Some("missing well-known attribute NEXT_HOP")
        );
        assert_eq!(u.withdrawn, vec![p4("10.77.60.10/32")]);
    }

    #[test]
    fn broken_framing_resets_and_locate_nlri_is_bounded() {
        // Attribute length runs past the attribute block: NLRI cannot be located.
        let f = raw_update(&[], &[0x40, 1, 9, 0], &NLRI);
        match Codec::new().decode(&f) {
            Err(e) => assert_eq!(e.notification.code, 3),
            Ok(Message::Update(u)) => assert!(u.treat_as_withdraw.is_some()),
            Ok(m) => panic!("{m:?}"),
        }
        // Every truncation of a valid UPDATE is handled without panicking.
        let mut attrs = Vec::new();
        attrs.extend_from_slice(&ORIGIN);
        attrs.extend_from_slice(&AS_PATH_EMPTY);
        attrs.extend_from_slice(&NEXT_HOP);
        let f = raw_update(&[24, 10, 1, 2], &attrs, &NLRI);
        for cut in 0..f.len() {
            let _ = locate_nlri(&f[..cut]);
        }
        let u = locate_nlri(&f).unwrap();
        assert_eq!(u.withdrawn, vec![p4("10.1.2.0/24")]);
        assert_eq!(u.announced, vec![p4("10.77.60.10/32")]);
    }
}

/// Randomised robustness: mutated and truncated messages never panic, and
/// whatever decodes re-encodes. (The cargo-fuzz targets in `fuzz/` explore
/// the same code coverage-guided; this runs in every `cargo test`.)
#[cfg(test)]
mod robustness {
    use super::super::{check_header, Capabilities, Codec, Message, MAX_LEN};
    use super::*;
    use crate::route::Community;

    #[test]
    fn mutated_messages_never_panic() {
        let mut c = Codec::new();
        let mut a = PathAttrs::local(NextHop::V4 {
            addr: "10.0.0.1".parse().unwrap(),
        });
        a.communities = vec![Community::new(65000, 1)];
        a.cluster_list = vec!["10.0.0.9".parse().unwrap()];
        a.as_path = vec![AsSegment {
            kind: AsSegmentKind::Sequence,
            asns: vec![65001, 65002],
        }];
        let mut seeds: Vec<Vec<u8>> = c
            .encode_announce(
                &[
                    Prefix::V4("10.77.60.10/32".parse().unwrap()),
                    Prefix::V4("10.1.0.0/16".parse().unwrap()),
                ],
                &a,
            )
            .into_iter()
            .map(|b| b.to_vec())
            .collect();
        let mut v6 = a.clone();
        v6.next_hop = NextHop::V6 {
            global: "2001:db8::1".parse().unwrap(),
            link_local: Some("fe80::1".parse().unwrap()),
        };
        seeds.extend(
            c.encode_announce(&[Prefix::V4("10.77.60.11/32".parse().unwrap())], &v6)
                .into_iter()
                .map(|b| b.to_vec()),
        );
        seeds.push(
            c.encode_open(
                65000,
                90,
                "10.0.0.1".parse().unwrap(),
                &Capabilities {
                    ipv4_unicast: true,
                    four_octet_as: Some(65000),
                    ..Default::default()
                },
            )
            .to_vec(),
        );
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut decoded = 0;
        for i in 0..60_000 {
            let mut m = seeds[i % seeds.len()].clone();
            for _ in 0..1 + rnd() % 4 {
                let at = HEADER_LEN + (rnd() as usize) % (m.len() - HEADER_LEN);
                m[at] = rnd() as u8;
            }
            if rnd() % 4 == 0 {
                let cut = HEADER_LEN + (rnd() as usize) % (m.len() - HEADER_LEN + 1);
                m.truncate(cut);
                let len = m.len() as u16;
                m[16..18].copy_from_slice(&len.to_be_bytes());
            }
            let _ = locate_nlri(&m);
            let h: [u8; HEADER_LEN] = m[..HEADER_LEN].try_into().unwrap();
            if check_header(&h, MAX_LEN).is_err() {
                continue;
            }
            if let Ok(Message::Update(u)) = Codec::new().decode(&m) {
                decoded += 1;
                if let Some(attrs) = &u.attrs {
                    for b in Codec::new().encode_announce(&u.announced, attrs) {
                        assert!(b.len() <= MAX_LEN);
                    }
                }
            }
        }
        assert!(
            decoded > 1000,
            "mutations should often still decode ({decoded})"
        );
    }
}
