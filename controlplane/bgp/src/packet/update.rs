//! UPDATE decoding (RFC 4271 4.3, RFC 4760) into our route types, with the
//! message-level rules of RFC 7606: framing of the attribute field (4), NLRI
//! syntax (5.3), duplicates (3(g)), missing mandatory attributes (3(d)) and
//! the most severe action winning (3), and RFC 4271 6.3's semantically
//! incorrect (multicast) prefixes ignored one by one. Each attribute is
//! checked in `attribute`.
//!
//! Decoding is a pure function of the frame and the session's facts: nothing
//! learned from one UPDATE (an error included) carries over to the next.

use super::as4;
use super::attribute::{self, code, flag, Received};
use super::error::{ErrorAction, ErrorKind, Subject, UpdateError};
use super::{nlri, notify, Family, SessionContext, HEADER_LEN};
use crate::route::{NextHop, Nlri, PathAttrs, Prefix};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Prefixes announced with one set of attributes (with their path
/// identifiers on an ADD-PATH session).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    pub prefixes: Vec<Nlri>,
    pub attrs: Arc<PathAttrs>,
}

/// A received UPDATE in our terms.
#[derive(Debug, Clone, Default)]
pub struct Update {
    pub withdrawn: Vec<Nlri>,
    /// Announcements by attribute set: the NLRI field (with NEXT_HOP) and
    /// MP_REACH_NLRI (with its own next hop) make one each.
    pub announced: Vec<Reach>,
    /// Errors handled without a reset, in the order found: attribute
    /// discards, the treat-as-withdraw errors that turned the announcements
    /// into withdrawals, and the prefix-ignores of RFC 4271 6.3.
    pub errors: Vec<UpdateError>,
    /// The UPDATE was an End-of-RIB marker for this family (RFC 4724 2).
    pub end_of_rib: Option<Family>,
    /// Announced prefixes left out of `announced` as semantically incorrect
    /// (RFC 4271 6.3: multicast); a `PrefixIgnore` error per field names them.
    pub ignored: Vec<Prefix>,
}

impl Update {
    /// The (first) error that made this UPDATE treat-as-withdraw.
    pub fn treat_as_withdraw(&self) -> Option<&UpdateError> {
        self.errors
            .iter()
            .find(|e| e.action == ErrorAction::TreatAsWithdraw)
    }

    /// Attributes dropped by "attribute discard".
    pub fn discarded(&self) -> impl Iterator<Item = &UpdateError> {
        self.errors
            .iter()
            .filter(|e| e.action == ErrorAction::AttributeDiscard)
    }

    /// The prefixes ignored by RFC 4271 6.3, one error per field.
    pub fn prefix_ignores(&self) -> impl Iterator<Item = &UpdateError> {
        self.errors
            .iter()
            .filter(|e| e.action == ErrorAction::PrefixIgnore)
    }

    /// Every announced prefix, whatever its attributes.
    pub fn announced_prefixes(&self) -> impl Iterator<Item = &Prefix> {
        self.announced
            .iter()
            .flat_map(|r| r.prefixes.iter().map(|n| &n.prefix))
    }
}

fn be16(b: &[u8], at: usize) -> Option<usize> {
    Some(usize::from(u16::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
    ])))
}

/// A reset for a length field that overruns the message (RFC 4271 6.3:
/// Malformed Attribute List); the NLRI cannot be located (RFC 7606 4).
fn overrun(subject: Subject, reason: String) -> UpdateError {
    UpdateError::reset(
        notify::UPDATE_MALFORMED_ATTR_LIST,
        Vec::new(),
        subject,
        ErrorKind::Length,
        "RFC 4271 6.3, RFC 7606 4",
        reason,
    )
}

/// Decodes an UPDATE frame (header included). `Err` is a session reset;
/// anything milder is in `Update::errors`.
pub(super) fn decode(frame: &[u8], cx: &SessionContext) -> Result<Update, UpdateError> {
    let body = frame.get(HEADER_LEN..).unwrap_or_default();
    let Some(wlen) = be16(body, 0) else {
        return Err(overrun(
            Subject::WithdrawnRoutes,
            "no Withdrawn Routes Length".into(),
        ));
    };
    let Some(alen) = be16(body, 2 + wlen) else {
        return Err(overrun(
            Subject::WithdrawnRoutes,
            format!(
                "Withdrawn Routes Length {wlen} leaves no Total Path Attribute Length in a {}-octet body",
                body.len()
            ),
        ));
    };
    let attrs_at = 4 + wlen;
    let Some(attrs) = body.get(attrs_at..attrs_at + alen) else {
        return Err(overrun(
            Subject::PathAttributes,
            format!(
                "Total Path Attribute Length {alen} overruns the message by {} octets",
                attrs_at + alen - body.len()
            ),
        ));
    };
    let nlri_field = &body[attrs_at + alen..];
    let invalid_network = |subject, e: nlri::PrefixError| {
        UpdateError::reset(
            notify::UPDATE_INVALID_NETWORK,
            Vec::new(),
            subject,
            ErrorKind::Length,
            "RFC 4271 6.3, RFC 7606 5.3",
            e.to_string(),
        )
    };
    let mut withdrawn = nlri::parse_v4_nlri(&body[2..2 + wlen], cx.add_path_rx)
        .map_err(|e| invalid_network(Subject::WithdrawnRoutes, e))?;

    let mut rx = Received::default();
    let count = walk(attrs, cx, &mut rx)?;
    let nlri = nlri::parse_v4_nlri(nlri_field, cx.add_path_rx)
        .map_err(|e| invalid_network(Subject::Nlri, e))?;

    if nlri.is_empty() {
        // RFC 4760 3: without NLRI in the NLRI field, NEXT_HOP is ignored.
        rx.errors
            .retain(|e| e.subject != Subject::Attribute(code::NEXT_HOP));
    }
    let mp_prefixes = rx.mp_reach.as_ref().map_or(0, |r| r.prefixes.len());
    if !nlri.is_empty() || mp_prefixes > 0 {
        // RFC 7606 3(d); NEXT_HOP only for the NLRI field (RFC 4760 3).
        let mut mandatory = vec![code::ORIGIN, code::AS_PATH];
        if !nlri.is_empty() {
            mandatory.push(code::NEXT_HOP);
        }
        for c in mandatory {
            if !rx.seen(c) {
                rx.errors.push(UpdateError::new(
                    ErrorAction::TreatAsWithdraw,
                    Subject::Attribute(c),
                    ErrorKind::Missing,
                    "RFC 7606 3(d)",
                    format!(
                        "UPDATE announces {} prefixes without {}",
                        nlri.len() + mp_prefixes,
                        attribute::name(c).unwrap_or_default()
                    ),
                ));
            }
        }
    }
    if !cx.asn4 {
        as4::merge(&mut rx);
    }

    let mut u = Update {
        end_of_rib: end_of_rib(&withdrawn, count, &nlri, &rx),
        ..Update::default()
    };
    // After the checks above, which are about what the UPDATE carries (a
    // multicast prefix still needs its NEXT_HOP): the prefixes to ignore leave.
    let nlri = ignore_incorrect(nlri, Subject::Nlri, &mut u.ignored, &mut rx.errors);
    if let Some(mp) = rx.mp_reach.as_mut() {
        mp.prefixes = ignore_incorrect(
            std::mem::take(&mut mp.prefixes),
            Subject::Attribute(code::MP_REACH_NLRI),
            &mut u.ignored,
            &mut rx.errors,
        );
    }
    withdrawn.append(&mut rx.mp_unreach);
    u.withdrawn = withdrawn;
    if !nlri.is_empty() {
        let mut a = rx.attrs.clone();
        a.next_hop = NextHop::V4 {
            addr: rx.next_hop.unwrap_or(Ipv4Addr::UNSPECIFIED),
        };
        u.announced.push(Reach {
            prefixes: nlri,
            attrs: Arc::new(a),
        });
    }
    if let Some(mp) = rx.mp_reach.take().filter(|r| !r.prefixes.is_empty()) {
        let mut a = rx.attrs;
        a.next_hop = mp.next_hop;
        u.announced.push(Reach {
            prefixes: mp.prefixes,
            attrs: Arc::new(a),
        });
    }
    u.errors = rx.errors;
    if u.treat_as_withdraw().is_some() {
        let announced = std::mem::take(&mut u.announced);
        u.withdrawn
            .extend(announced.into_iter().flat_map(|r| r.prefixes));
        u.end_of_rib = None;
    }
    Ok(u)
}

/// Takes the prefixes RFC 4271 6.3 ignores (`nlri::semantic_error`) out of
/// `prefixes` into `ignored`, with one `PrefixIgnore` error naming them (the
/// log line and the counter's cause); the others are returned, to be
/// processed as if the ignored ones had never been there.
fn ignore_incorrect(
    prefixes: Vec<Nlri>,
    subject: Subject,
    ignored: &mut Vec<Prefix>,
    errors: &mut Vec<UpdateError>,
) -> Vec<Nlri> {
    let (bad, good): (Vec<Nlri>, Vec<Nlri>) = prefixes
        .into_iter()
        .partition(|n| nlri::semantic_error(&n.prefix).is_some());
    if bad.is_empty() {
        return good;
    }
    // A few named, so one UPDATE of many cannot flood the log.
    const SHOWN: usize = 4;
    let mut named: Vec<String> = bad
        .iter()
        .take(SHOWN)
        .map(|n| {
            format!(
                "{n} {}",
                nlri::semantic_error(&n.prefix).unwrap_or_default()
            )
        })
        .collect();
    if bad.len() > SHOWN {
        named.push(format!("{} more", bad.len() - SHOWN));
    }
    errors.push(UpdateError::new(
        ErrorAction::PrefixIgnore,
        subject,
        ErrorKind::Value,
        "RFC 4271 6.3",
        format!(
            "{} of {} announced prefixes ignored: {}",
            bad.len(),
            bad.len() + good.len(),
            named.join(", ")
        ),
    ));
    ignored.extend(bad.into_iter().map(|n| n.prefix));
    good
}

/// Walks the Path Attributes field (RFC 7606 4, 3(g)) and reads each
/// attribute into `rx`. Returns how many attributes it held.
fn walk(attrs: &[u8], cx: &SessionContext, rx: &mut Received) -> Result<usize, UpdateError> {
    let mut i = 0;
    let mut count = 0;
    while i < attrs.len() {
        let rest = &attrs[i..];
        let hdr = if rest[0] & flag::EXTENDED_LENGTH != 0 {
            4
        } else {
            3
        };
        if rest.len() < hdr {
            // RFC 7606 4, second case: too few octets left for an attribute header.
            rx.errors.push(UpdateError::new(
                ErrorAction::TreatAsWithdraw,
                Subject::PathAttributes,
                ErrorKind::Framing,
                "RFC 7606 4",
                format!(
                    "{} octets left after the last attribute, too few for an attribute header",
                    rest.len()
                ),
            ));
            break;
        }
        let (flags, c) = (rest[0], rest[1]);
        let len = if hdr == 4 {
            usize::from(u16::from_be_bytes([rest[2], rest[3]]))
        } else {
            usize::from(rest[2])
        };
        let Some(raw) = rest.get(..hdr + len) else {
            let by = hdr + len - rest.len();
            if c == code::MP_REACH_NLRI || c == code::MP_UNREACH_NLRI {
                // Its NLRI cannot be located reliably (RFC 7606 5.1, 7.11, 7.12).
                let mut e = UpdateError::reset(
                    notify::UPDATE_OPTIONAL_ATTRIBUTE,
                    rest.to_vec(),
                    Subject::Attribute(c),
                    ErrorKind::Framing,
                    "RFC 7606 4, 7.11, 7.12",
                    format!(
                        "attribute length {len} overruns the Path Attributes field by {by} octets"
                    ),
                );
                e.rule = if c == code::MP_REACH_NLRI {
                    "RFC 7606 4, 7.11"
                } else {
                    "RFC 7606 4, 7.12"
                };
                return Err(e);
            }
            // RFC 7606 4, first case: the Total Attribute Length still locates the NLRI.
            rx.errors.push(UpdateError::new(
                ErrorAction::TreatAsWithdraw,
                Subject::Attribute(c),
                ErrorKind::Framing,
                "RFC 7606 4",
                format!("attribute length {len} overruns the Path Attributes field by {by} octets"),
            ));
            break;
        };
        count += 1;
        i += raw.len();
        if !rx.first(c) {
            if c == code::MP_REACH_NLRI || c == code::MP_UNREACH_NLRI {
                return Err(UpdateError::reset(
                    notify::UPDATE_MALFORMED_ATTR_LIST,
                    Vec::new(),
                    Subject::Attribute(c),
                    ErrorKind::Duplicate,
                    "RFC 7606 3(g)",
                    format!(
                        "{} appears more than once",
                        attribute::name(c).unwrap_or_default()
                    ),
                ));
            }
            rx.errors.push(UpdateError::new(
                ErrorAction::AttributeDiscard,
                Subject::Attribute(c),
                ErrorKind::Duplicate,
                "RFC 7606 3(g)",
                format!("repeated attribute {c} discarded, the first one is kept"),
            ));
            continue;
        }
        attribute::read(flags, c, &raw[hdr..], raw, cx, rx)?;
    }
    Ok(count)
}

/// RFC 4724 2: an UPDATE with nothing in it is the IPv4 unicast End-of-RIB;
/// one whose only attribute is an empty MP_UNREACH_NLRI is its family's.
fn end_of_rib(withdrawn: &[Nlri], count: usize, nlri: &[Nlri], rx: &Received) -> Option<Family> {
    if !withdrawn.is_empty() || !nlri.is_empty() {
        return None;
    }
    match (count, rx.mp_unreach_family) {
        (0, _) => Some(Family::Ipv4Unicast),
        (1, Some(f)) if rx.mp_unreach.is_empty() && rx.errors.is_empty() => Some(f),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Codec, Message, MSG_UPDATE};
    use super::*;

    fn p4(s: &str) -> Prefix {
        Prefix::V4(s.parse().unwrap())
    }

    /// Builds an UPDATE frame from raw parts.
    pub(crate) fn raw_update(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
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

    fn good() -> Vec<u8> {
        [&ORIGIN[..], &AS_PATH_EMPTY, &NEXT_HOP].concat()
    }

    fn decode(f: &[u8]) -> Result<Update, UpdateError> {
        match Codec::new().decode(f) {
            Ok(Message::Update(u)) => Ok(u),
            Ok(m) => panic!("{m:?}"),
            Err(e) => Err(*e.update.expect("an UPDATE error")),
        }
    }

    #[test]
    fn valid_update_installs_with_attributes() {
        let u = decode(&raw_update(&[24, 10, 1, 2], &good(), &NLRI)).unwrap();
        assert!(u.errors.is_empty(), "{:?}", u.errors);
        assert_eq!(u.withdrawn, vec![p4("10.1.2.0/24")]);
        assert_eq!(u.announced.len(), 1);
        assert_eq!(u.announced[0].prefixes, vec![p4("10.77.60.10/32")]);
        assert_eq!(
            u.announced[0].attrs.next_hop,
            NextHop::V4 {
                addr: "10.0.0.1".parse().unwrap()
            }
        );
    }

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
            let u = decode(&raw_update(&[], &attrs, &NLRI)).unwrap();
            assert!(u.treat_as_withdraw().is_some(), "{bad:?}");
            assert_eq!(u.withdrawn, vec![p4("10.77.60.10/32")]);
            assert!(u.announced.is_empty());
        }
    }

    #[test]
    fn missing_mandatory_attribute_is_treat_as_withdraw() {
        let attrs = [&ORIGIN[..], &AS_PATH_EMPTY].concat();
        let u = decode(&raw_update(&[], &attrs, &NLRI)).unwrap();
        let e = u.treat_as_withdraw().unwrap();
        assert_eq!(e.cause(), "treat-as-withdraw: NEXT_HOP missing");
        assert_eq!(e.rule, "RFC 7606 3(d)");
        assert_eq!(u.withdrawn, vec![p4("10.77.60.10/32")]);
        // A withdrawal alone needs no attributes.
        let u = decode(&raw_update(&NLRI, &[], &[])).unwrap();
        assert!(u.errors.is_empty());
        assert_eq!(u.withdrawn, vec![p4("10.77.60.10/32")]);
    }

    #[test]
    fn attribute_field_framing() {
        // Attribute length past the field: treat-as-withdraw, the NLRI is still located.
        let u = decode(&raw_update(
            &[],
            &[&good()[..], &[0x40, 1, 9, 0]].concat(),
            &NLRI,
        ))
        .unwrap();
        assert_eq!(
            u.treat_as_withdraw().unwrap().cause(),
            "treat-as-withdraw: ORIGIN framing"
        );
        assert_eq!(u.withdrawn, vec![p4("10.77.60.10/32")]);
        // Two trailing octets, too few for a header.
        let u = decode(&raw_update(&[], &[&good()[..], &[0x40, 1]].concat(), &NLRI)).unwrap();
        assert_eq!(
            u.treat_as_withdraw().unwrap().cause(),
            "treat-as-withdraw: path attributes framing"
        );
        // Total Path Attribute Length past the message: the NLRI cannot be located.
        let mut f = raw_update(&[], &good(), &NLRI);
        let at = HEADER_LEN + 2;
        f[at..at + 2].copy_from_slice(&200u16.to_be_bytes());
        let e = decode(&f).unwrap_err();
        assert!(matches!(&e.action, ErrorAction::SessionReset(n) if (n.code, n.subcode) == (3, 1)));
        // Every truncation of a valid UPDATE is handled without panicking.
        let f = raw_update(&[24, 10, 1, 2], &good(), &NLRI);
        for cut in HEADER_LEN..f.len() {
            let mut g = f[..cut].to_vec();
            g[16..18].copy_from_slice(&(cut as u16).to_be_bytes());
            let _ = decode(&g);
        }
    }

    #[test]
    fn errors_do_not_outlive_their_message() {
        let mut c = Codec::new();
        let bad_nh = [&ORIGIN[..], &AS_PATH_EMPTY, &[0x40, 3, 5, 10, 0, 0, 1, 1]].concat();
        let bad_atomic = [&good()[..], &[0x40, 6, 1, 0]].concat();
        for bad in [bad_nh, bad_atomic] {
            let Ok(Message::Update(u)) = c.decode(&raw_update(&[], &bad, &NLRI)) else {
                panic!()
            };
            assert!(!u.errors.is_empty());
            let Ok(Message::Update(u)) = c.decode(&raw_update(&[], &good(), &NLRI)) else {
                panic!()
            };
            assert!(u.errors.is_empty(), "{:?}", u.errors);
            assert_eq!(u.announced[0].prefixes, vec![p4("10.77.60.10/32")]);
        }
    }

    #[test]
    fn multicast_prefix_is_ignored_and_the_others_installed() {
        // NLRI: 10.77.60.10/32, 224.0.0.5/32, 10.77.60.11/32, 239.1.0.0/16.
        let nlri = [
            &NLRI[..],
            &[32, 224, 0, 0, 5],
            &[32, 10, 77, 60, 11],
            &[16, 239, 1],
        ]
        .concat();
        let u = decode(&raw_update(&[], &good(), &nlri)).unwrap();
        assert_eq!(
            u.announced_prefixes().copied().collect::<Vec<_>>(),
            vec![p4("10.77.60.10/32"), p4("10.77.60.11/32")]
        );
        assert_eq!(u.ignored, vec![p4("224.0.0.5/32"), p4("239.1.0.0/16")]);
        assert!(u.withdrawn.is_empty(), "ignored, not withdrawn");
        assert!(u.treat_as_withdraw().is_none());
        let e: Vec<_> = u.prefix_ignores().collect();
        assert_eq!(e.len(), 1, "{:?}", u.errors);
        assert_eq!(e[0].cause(), "prefix-ignore: NLRI value");
        assert_eq!(e[0].rule, "RFC 4271 6.3");
        assert!(
            e[0].reason.contains("224.0.0.5/32 is multicast"),
            "{}",
            e[0]
        );
        // The same in MP_REACH_NLRI (IPv4 unicast): 10.77.60.12/32, 224.0.0.6/32.
        let mp = [
            &[0x80, 14, 19, 0, 1, 1, 4, 10, 0, 0, 1, 0][..],
            &[32, 10, 77, 60, 12, 32, 224, 0, 0, 6],
        ]
        .concat();
        let attrs = [&ORIGIN[..], &AS_PATH_EMPTY, &mp].concat();
        let u = decode(&raw_update(&[], &attrs, &[])).unwrap();
        assert_eq!(u.announced[0].prefixes, vec![p4("10.77.60.12/32")]);
        assert_eq!(u.ignored, vec![p4("224.0.0.6/32")]);
        assert_eq!(
            u.prefix_ignores().next().unwrap().cause(),
            "prefix-ignore: MP_REACH_NLRI value"
        );
        // Only multicast: nothing announced, still no End-of-RIB.
        let u = decode(&raw_update(&[], &good(), &[32, 224, 0, 0, 5])).unwrap();
        assert!(u.announced.is_empty() && u.end_of_rib.is_none());
        assert_eq!(u.ignored, vec![p4("224.0.0.5/32")]);
    }

    #[test]
    fn end_of_rib_and_mixed_reach() {
        assert_eq!(
            decode(&raw_update(&[], &[], &[])).unwrap().end_of_rib,
            Some(Family::Ipv4Unicast)
        );
        let eor6 = decode(&raw_update(&[], &[0x80, 15, 3, 0, 2, 1], &[])).unwrap();
        assert_eq!(eor6.end_of_rib, Some(Family::Ipv6Unicast));
        // NLRI field with NEXT_HOP plus MP_REACH (IPv6) with its own next hop: two groups.
        let mut mp = vec![0x80, 14, 0, 0, 2, 1, 16];
        mp.extend_from_slice(
            &"2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        mp.push(0);
        mp.extend_from_slice(&[48, 0x20, 0x01, 0x0d, 0xb8, 0, 0x77]);
        mp[2] = (mp.len() - 3) as u8;
        let u = decode(&raw_update(&[], &[&good()[..], &mp].concat(), &NLRI)).unwrap();
        assert!(u.errors.is_empty(), "{:?}", u.errors);
        assert_eq!(u.announced.len(), 2);
        assert!(matches!(u.announced[0].attrs.next_hop, NextHop::V4 { .. }));
        assert!(matches!(u.announced[1].attrs.next_hop, NextHop::V6 { .. }));
    }
}

/// Randomised robustness: mutated and truncated messages never panic, and
/// whatever decodes re-encodes. (The cargo-fuzz targets in `fuzz/` explore
/// the same code coverage-guided; this runs in every `cargo test`.)
#[cfg(test)]
mod robustness {
    use super::super::{check_header, Capabilities, Codec, Message, MAX_LEN};
    use super::*;
    use crate::route::{AsSegment, AsSegmentKind, Community};

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
                    Prefix::V4("10.77.60.10/32".parse().unwrap()).into(),
                    Prefix::V4("10.1.0.0/16".parse().unwrap()).into(),
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
            c.encode_announce(&[Prefix::V4("10.77.60.11/32".parse().unwrap()).into()], &v6)
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
            let h: [u8; HEADER_LEN] = m[..HEADER_LEN].try_into().unwrap();
            if check_header(&h, MAX_LEN).is_err() {
                continue;
            }
            if let Ok(Message::Update(u)) = Codec::new().decode(&m) {
                decoded += 1;
                for r in &u.announced {
                    for b in Codec::new().encode_announce(&r.prefixes, &r.attrs) {
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
