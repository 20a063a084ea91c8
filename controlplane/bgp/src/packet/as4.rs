//! RFC 6793 between us, a NEW (4-octet AS) speaker, and a peer that did not
//! advertise the 4-octet AS capability (an OLD speaker), both ways:
//!
//! - sending (4.2.2, `to_old`): AS_PATH carries 2-octet ASNs, each ASN above
//!   65535 replaced by AS_TRANS, and AS4_PATH carries the true path whenever
//!   such an ASN is in it; an AGGREGATOR with a 4-octet AS becomes
//!   AGGREGATOR(AS_TRANS) plus AS4_AGGREGATOR with the true one;
//! - receiving (4.2.3, `merge`): the true path and aggregator are rebuilt
//!   from AS_PATH/AGGREGATOR and AS4_PATH/AS4_AGGREGATOR.
//!
//! Between two NEW speakers none of this applies: AS_PATH and AGGREGATOR carry
//! 4-octet ASNs, we never send AS4_PATH or AS4_AGGREGATOR (`encode`), and any
//! received are discarded (`attribute::read`, RFC 6793 6).
//!
//! CER is in no confederation and keeps no confederation segments (an AS_PATH
//! with one is treat-as-withdraw), so the confederation rules of both sections
//! have nothing to act on here; AS4_PATH's confederation segments are dropped
//! when it is read (`attribute::as4_path`).

use super::attribute::{code, Received};
use super::error::{ErrorAction, ErrorKind, Subject, UpdateError};
use super::AS_TRANS;
use crate::route::{AsSegment, AsSegmentKind, PathAttrs};
use std::net::Ipv4Addr;

/// What an OLD speaker is sent in place of our AS path and aggregator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ToOld {
    /// AS_PATH in 2-octet ASNs (AS_TRANS for each that does not fit).
    pub as_path: Vec<(AsSegmentKind, Vec<u16>)>,
    /// AS4_PATH: the true path, only when some ASN does not fit in 2 octets
    /// (4.2.2: "SHOULD NOT send" it otherwise).
    pub as4_path: Option<Vec<AsSegment>>,
    /// AGGREGATOR in 2 octets (AS_TRANS when the aggregating AS does not fit).
    pub aggregator: Option<(u16, Ipv4Addr)>,
    /// AS4_AGGREGATOR: the true aggregator, only when its AS does not fit.
    pub as4_aggregator: Option<(u32, Ipv4Addr)>,
}

/// An ASN as an OLD speaker can carry it: itself, or AS_TRANS when it needs
/// 4 octets ("non-mappable", RFC 6793 4.2.2). AS_TRANS keeps the path length,
/// which is what lets the receiver put the two paths back together.
fn two_octet(asn: u32) -> u16 {
    u16::try_from(asn).unwrap_or(AS_TRANS as u16)
}

/// The 2-octet view of `a`'s AS path and aggregator for an OLD speaker
/// (RFC 6793 4.2.2).
pub(super) fn to_old(a: &PathAttrs) -> ToOld {
    let as_path = a
        .as_path
        .iter()
        .map(|s| (s.kind, s.asns.iter().map(|x| two_octet(*x)).collect()))
        .collect();
    let wide = |asn: &u32| *asn > u32::from(u16::MAX);
    let as4_path = a
        .as_path
        .iter()
        .any(|s| s.asns.iter().any(wide))
        .then(|| a.as_path.clone());
    let (aggregator, as4_aggregator) = match a.aggregator {
        Some((asn, ip)) if wide(&asn) => (Some((AS_TRANS as u16, ip)), Some((asn, ip))),
        Some((asn, ip)) => (Some((two_octet(asn), ip)), None),
        None => (None, None),
    };
    ToOld {
        as_path,
        as4_path,
        aggregator,
        as4_aggregator,
    }
}

/// Counts ASNs the RFC 6793 4.2.3 way: each ASN of a sequence, 1 for a set.
fn path_len(p: &[AsSegment]) -> usize {
    p.iter()
        .map(|s| match s.kind {
            AsSegmentKind::Sequence => s.asns.len(),
            AsSegmentKind::Set => 1,
        })
        .sum()
}

/// An AS4_* attribute that RFC 6793 4.2.3 says to ignore: dropped, the UPDATE
/// processed ("attribute discard"), and logged and counted like any other.
fn ignored(c: u8, reason: String) -> UpdateError {
    UpdateError::new(
        ErrorAction::AttributeDiscard,
        Subject::Attribute(c),
        ErrorKind::Value,
        "RFC 6793 4.2.3",
        reason,
    )
}

/// From an OLD speaker, rebuilds the AS path and aggregator from
/// AS_PATH/AGGREGATOR and AS4_PATH/AS4_AGGREGATOR (RFC 6793 4.2.3). What is
/// ignored goes to `rx.errors` as an attribute discard.
pub(super) fn merge(rx: &mut Received) {
    let as4_path = rx.as4_path.take();
    let as4_aggregator = rx.as4_aggregator.take();
    match (rx.attrs.aggregator, as4_aggregator) {
        // "When both of the attributes are received, if the AS number in the
        // AGGREGATOR attribute is not AS_TRANS": an OLD speaker aggregated
        // after the last NEW one, so AS4_AGGREGATOR and AS4_PATH are stale
        // and both are ignored; AGGREGATOR and AS_PATH are the information.
        (Some((asn, _)), Some((asn4, _))) if asn != AS_TRANS => {
            rx.errors.push(ignored(
                code::AS4_AGGREGATOR,
                format!(
                    "AS4_AGGREGATOR AS {asn4} ignored: AGGREGATOR carries AS {asn}, not AS_TRANS"
                ),
            ));
            if as4_path.is_some() {
                rx.errors.push(ignored(
                    code::AS4_PATH,
                    format!("AS4_PATH ignored: AGGREGATOR carries AS {asn}, not AS_TRANS, beside an AS4_AGGREGATOR"),
                ));
            }
            return;
        }
        // Otherwise AGGREGATOR is ignored and AS4_AGGREGATOR is the aggregator.
        (Some(_), Some(a4)) => rx.attrs.aggregator = Some(a4),
        // No RFC text covers AS4_AGGREGATOR alone. AGGREGATOR is what tells
        // whether it is current (an OLD speaker passes both on or replaces
        // AGGREGATOR), and it may be gone because this very UPDATE's was
        // malformed and discarded: the AS4_AGGREGATOR is not used either.
        (None, Some((asn4, _))) => rx.errors.push(ignored(
            code::AS4_AGGREGATOR,
            format!("AS4_AGGREGATOR AS {asn4} ignored: no AGGREGATOR beside it"),
        )),
        // AGGREGATOR alone (AS_TRANS included) is kept as it is, and an
        // AS4_PATH beside it is used: the rule above is for the pair.
        (_, None) => {}
    }
    let Some(as4) = as4_path else { return };
    let (n, n4) = (path_len(&rx.attrs.as_path), path_len(&as4));
    if n < n4 {
        // "the AS4_PATH attribute SHALL be ignored, and the AS_PATH attribute
        // SHALL be taken as the AS path information".
        rx.errors.push(ignored(
            code::AS4_PATH,
            format!("AS4_PATH of {n4} ASNs is longer than AS_PATH ({n} ASNs): AS_PATH used"),
        ));
        return;
    }
    rx.attrs.as_path = rebuild(&rx.attrs.as_path, as4, n - n4);
}

/// The leading `keep` ASNs of `as_path` (the OLD speakers the route crossed
/// since the last NEW one, which only AS_PATH records), then `as4`: as many
/// ASNs as AS_PATH has, the 4-octet ones true.
fn rebuild(as_path: &[AsSegment], as4: Vec<AsSegment>, mut keep: usize) -> Vec<AsSegment> {
    let mut path = Vec::new();
    for seg in as_path {
        if keep == 0 {
            break;
        }
        match seg.kind {
            AsSegmentKind::Sequence => {
                let take = keep.min(seg.asns.len());
                path.push(AsSegment {
                    kind: AsSegmentKind::Sequence,
                    asns: seg.asns[..take].to_vec(),
                });
                keep -= take;
            }
            AsSegmentKind::Set => {
                path.push(seg.clone());
                keep -= 1;
            }
        }
    }
    for seg in as4 {
        match (path.last_mut(), seg.kind) {
            // Two sequences back to back are one path; joined while a
            // segment's one-octet count allows.
            (Some(last), AsSegmentKind::Sequence)
                if last.kind == AsSegmentKind::Sequence
                    && last.asns.len() + seg.asns.len() <= 255 =>
            {
                last.asns.extend(seg.asns)
            }
            _ => path.push(seg),
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::NextHop;

    fn seq(asns: &[u32]) -> AsSegment {
        AsSegment {
            kind: AsSegmentKind::Sequence,
            asns: asns.to_vec(),
        }
    }

    fn set(asns: &[u32]) -> AsSegment {
        AsSegment {
            kind: AsSegmentKind::Set,
            asns: asns.to_vec(),
        }
    }

    const AGG_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 9);
    const T: u16 = AS_TRANS as u16;

    fn attrs(path: Vec<AsSegment>, aggregator: Option<u32>) -> PathAttrs {
        let mut a = PathAttrs::local(NextHop::V4 {
            addr: Ipv4Addr::new(192, 0, 2, 7),
        });
        a.as_path = path;
        a.aggregator = aggregator.map(|asn| (asn, AGG_IP));
        a
    }

    /// What an OLD speaker would receive from us, as `Received` holds it
    /// after reading the attributes.
    fn received_from(o: &ToOld) -> Received {
        let mut rx = Received::default();
        rx.attrs.as_path = o
            .as_path
            .iter()
            .map(|(kind, asns)| AsSegment {
                kind: *kind,
                asns: asns.iter().map(|a| u32::from(*a)).collect(),
            })
            .collect();
        rx.attrs.aggregator = o.aggregator.map(|(asn, ip)| (u32::from(asn), ip));
        rx.as4_path = o.as4_path.clone();
        rx.as4_aggregator = o.as4_aggregator;
        rx
    }

    #[test]
    fn wide_asns_become_as_trans_and_as4_path_holds_the_true_path() {
        let path = vec![seq(&[65001, 4_200_000_001]), set(&[65002, 4_200_000_002])];
        let o = to_old(&attrs(path.clone(), Some(4_200_000_003)));
        assert_eq!(
            o.as_path,
            vec![
                (AsSegmentKind::Sequence, vec![65001, T]),
                (AsSegmentKind::Set, vec![65002, T]),
            ]
        );
        assert_eq!(o.as4_path, Some(path));
        assert_eq!(o.aggregator, Some((T, AGG_IP)));
        assert_eq!(o.as4_aggregator, Some((4_200_000_003, AGG_IP)));
    }

    #[test]
    fn two_octet_asns_need_no_as4_attributes() {
        // 65535 still fits in 2 octets; 65536 does not.
        let o = to_old(&attrs(vec![seq(&[65001, 65535])], Some(65002)));
        assert_eq!(
            o.as_path,
            vec![(AsSegmentKind::Sequence, vec![65001, 65535])]
        );
        assert_eq!(o.as4_path, None, "SHOULD NOT send AS4_PATH");
        assert_eq!(o.aggregator, Some((65002, AGG_IP)));
        assert_eq!(o.as4_aggregator, None);
        let o = to_old(&attrs(vec![seq(&[65536])], None));
        assert_eq!(o.as_path, vec![(AsSegmentKind::Sequence, vec![T])]);
        assert_eq!(o.as4_path, Some(vec![seq(&[65536])]));
        assert_eq!((o.aggregator, o.as4_aggregator), (None, None));
    }

    #[test]
    fn what_we_send_an_old_speaker_merges_back_to_the_true_path() {
        for (path, agg) in [
            (
                vec![seq(&[65001, 4_200_000_001, 65002])],
                Some(4_200_000_009),
            ),
            (
                vec![seq(&[4_200_000_001]), set(&[4_200_000_002, 65003])],
                None,
            ),
            (vec![seq(&[65001])], Some(65009)),
            (vec![], None),
        ] {
            let a = attrs(path, agg);
            let mut rx = received_from(&to_old(&a));
            merge(&mut rx);
            assert!(rx.errors.is_empty(), "{:?}", rx.errors);
            assert_eq!(rx.attrs.as_path, a.as_path);
            assert_eq!(rx.attrs.aggregator, a.aggregator);
        }
    }

    #[test]
    fn leading_old_speakers_are_kept_from_as_path() {
        // Two OLD speakers (65010, 65011) prepended after the last NEW one.
        let mut rx = Received::default();
        rx.attrs.as_path = vec![seq(&[65010, 65011, 65001, AS_TRANS, AS_TRANS])];
        rx.as4_path = Some(vec![seq(&[65001, 4_200_000_001, 4_200_000_002])]);
        merge(&mut rx);
        assert_eq!(
            rx.attrs.as_path,
            vec![seq(&[65010, 65011, 65001, 4_200_000_001, 4_200_000_002])]
        );
        // A set counts as one ASN and is kept whole.
        let mut rx = Received::default();
        rx.attrs.as_path = vec![set(&[65010, 65011]), seq(&[AS_TRANS])];
        rx.as4_path = Some(vec![seq(&[4_200_000_001])]);
        merge(&mut rx);
        assert_eq!(
            rx.attrs.as_path,
            vec![set(&[65010, 65011]), seq(&[4_200_000_001])]
        );
        assert!(rx.errors.is_empty());
    }

    #[test]
    fn as4_path_longer_than_as_path_is_ignored() {
        let mut rx = Received::default();
        rx.attrs.as_path = vec![seq(&[AS_TRANS])];
        rx.as4_path = Some(vec![seq(&[4_200_000_001, 65002])]);
        merge(&mut rx);
        assert_eq!(rx.attrs.as_path, vec![seq(&[AS_TRANS])]);
        assert_eq!(rx.errors.len(), 1);
        assert_eq!(rx.errors[0].cause(), "attribute-discard: AS4_PATH value");
        assert_eq!(rx.errors[0].rule, "RFC 6793 4.2.3");
        // Equal lengths: AS4_PATH is the whole path.
        let mut rx = Received::default();
        rx.attrs.as_path = vec![seq(&[AS_TRANS, 65002])];
        rx.as4_path = Some(vec![seq(&[4_200_000_001, 65002])]);
        merge(&mut rx);
        assert_eq!(rx.attrs.as_path, vec![seq(&[4_200_000_001, 65002])]);
    }

    #[test]
    fn aggregator_decides_whether_the_as4_attributes_count() {
        // AGGREGATOR not AS_TRANS beside AS4_AGGREGATOR: both AS4_* ignored.
        let mut rx = Received::default();
        rx.attrs.as_path = vec![seq(&[AS_TRANS])];
        rx.attrs.aggregator = Some((65001, AGG_IP));
        rx.as4_path = Some(vec![seq(&[4_200_000_001])]);
        rx.as4_aggregator = Some((4_200_000_001, AGG_IP));
        merge(&mut rx);
        assert_eq!(rx.attrs.aggregator, Some((65001, AGG_IP)));
        assert_eq!(rx.attrs.as_path, vec![seq(&[AS_TRANS])]);
        let causes: Vec<String> = rx.errors.iter().map(|e| e.cause()).collect();
        assert_eq!(
            causes,
            [
                "attribute-discard: AS4_AGGREGATOR value",
                "attribute-discard: AS4_PATH value"
            ]
        );
        // AGGREGATOR AS_TRANS: AS4_AGGREGATOR is the aggregator, AS4_PATH used.
        let mut rx = Received::default();
        rx.attrs.as_path = vec![seq(&[AS_TRANS])];
        rx.attrs.aggregator = Some((AS_TRANS, AGG_IP));
        rx.as4_path = Some(vec![seq(&[4_200_000_001])]);
        rx.as4_aggregator = Some((4_200_000_001, AGG_IP));
        merge(&mut rx);
        assert_eq!(rx.attrs.aggregator, Some((4_200_000_001, AGG_IP)));
        assert_eq!(rx.attrs.as_path, vec![seq(&[4_200_000_001])]);
        assert!(rx.errors.is_empty());
        // AGGREGATOR (not AS_TRANS) without AS4_AGGREGATOR: the pair rule does
        // not apply, AS4_PATH is used.
        let mut rx = Received::default();
        rx.attrs.as_path = vec![seq(&[AS_TRANS])];
        rx.attrs.aggregator = Some((65001, AGG_IP));
        rx.as4_path = Some(vec![seq(&[4_200_000_001])]);
        merge(&mut rx);
        assert_eq!(rx.attrs.aggregator, Some((65001, AGG_IP)));
        assert_eq!(rx.attrs.as_path, vec![seq(&[4_200_000_001])]);
        assert!(rx.errors.is_empty());
        // AS4_AGGREGATOR without AGGREGATOR: ignored, AS4_PATH still used.
        let mut rx = Received::default();
        rx.attrs.as_path = vec![seq(&[AS_TRANS])];
        rx.as4_path = Some(vec![seq(&[4_200_000_001])]);
        rx.as4_aggregator = Some((4_200_000_001, AGG_IP));
        merge(&mut rx);
        assert_eq!(rx.attrs.aggregator, None);
        assert_eq!(rx.attrs.as_path, vec![seq(&[4_200_000_001])]);
        assert_eq!(
            rx.errors[0].cause(),
            "attribute-discard: AS4_AGGREGATOR value"
        );
    }
}
