//! Path attributes one by one: type codes, the flags each must carry, and the
//! checks of RFC 7606 7 (with RFC 4271 6.3, 4760, 6793, 1997, 4360, 5701,
//! 8092, 4456, 7607): what a valid attribute sets and which action an error takes.
//!
//! The actions, per attribute (the conformance table in
//! `tests/rfc7606_conformance.rs` checks each against the RFCs):
//!
//! | attribute | flags O/T | malformed (length, value) | RFC |
//! |---|---|---|---|
//! | ORIGIN (1) | 0/1 | treat-as-withdraw | 7606 7.1 |
//! | AS_PATH (2) | 0/1 | treat-as-withdraw (also AS 0, confed segments, eBGP first AS) | 7606 7.2, 7607, 5065 5, 4271 6.3 |
//! | NEXT_HOP (3) | 0/1 | treat-as-withdraw (also martian or our own address) | 7606 7.3, 4271 6.3 |
//! | MULTI_EXIT_DISC (4) | 1/0 | treat-as-withdraw | 7606 7.4 |
//! | LOCAL_PREF (5) | 0/1 | treat-as-withdraw; from eBGP: attribute discard | 7606 7.5 |
//! | ATOMIC_AGGREGATE (6) | 0/1 | attribute discard | 7606 7.6 |
//! | AGGREGATOR (7) | 1/1 | attribute discard (also AS 0) | 7606 7.7, 7607 |
//! | COMMUNITIES (8) | 1/1 | treat-as-withdraw | 7606 7.8 |
//! | ORIGINATOR_ID (9) | 1/0 | treat-as-withdraw; from eBGP: attribute discard | 7606 7.9 |
//! | CLUSTER_LIST (10) | 1/0 | treat-as-withdraw; from eBGP: attribute discard | 7606 7.10 |
//! | MP_REACH_NLRI (14) | 1/0 | session reset 3/9 (next hop: martian -> treat-as-withdraw) | 7606 7.11, 5.3 |
//! | MP_UNREACH_NLRI (15) | 1/0 | session reset 3/9 | 7606 7.12, 5.3 |
//! | EXTENDED_COMMUNITIES (16) | 1/1 | treat-as-withdraw | 7606 7.14 |
//! | AS4_PATH (17) | 1/1 | attribute discard; between 4-octet speakers: discard; longer than AS_PATH: ignored (discard) | 6793 6, 4.2.3 |
//! | AS4_AGGREGATOR (18) | 1/1 | attribute discard; between 4-octet speakers: discard; beside a non-AS_TRANS AGGREGATOR: ignored with AS4_PATH (discard) | 6793 6, 4.2.3 |
//! | IPV6_EXTENDED_COMMUNITIES (25) | 1/1 | treat-as-withdraw | 7606 7.15 |
//! | LARGE_COMMUNITY (32) | 1/1 | treat-as-withdraw | 8092 6 |
//! | unrecognized, O=0 | - | session reset 3/2 | 4271 6.3 |
//!
//! Conflicting Optional/Transitive flags are treat-as-withdraw for every
//! attribute (RFC 7606 3(c): no attribute above mandates otherwise); an
//! attribute that is discarded whatever it holds (LOCAL_PREF, ORIGINATOR_ID,
//! CLUSTER_LIST from eBGP; AS4_* between 4-octet speakers) is discarded
//! before its flags are looked at. How AS4_PATH and AS4_AGGREGATOR from a
//! 2-octet-AS speaker combine with AS_PATH and AGGREGATOR is in `as4`.

use super::error::{ErrorAction, ErrorKind, Subject, UpdateError};
use super::nlri::{self, PrefixError};
use super::{notify, Family, SessionContext};
use crate::route::{
    AsSegment, AsSegmentKind, Community, NextHop, Nlri, Origin, PathAttrs, RawAttr,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Path attribute type codes.
pub mod code {
    pub const ORIGIN: u8 = 1;
    pub const AS_PATH: u8 = 2;
    pub const NEXT_HOP: u8 = 3;
    pub const MULTI_EXIT_DISC: u8 = 4;
    pub const LOCAL_PREF: u8 = 5;
    pub const ATOMIC_AGGREGATE: u8 = 6;
    pub const AGGREGATOR: u8 = 7;
    pub const COMMUNITIES: u8 = 8;
    pub const ORIGINATOR_ID: u8 = 9;
    pub const CLUSTER_LIST: u8 = 10;
    pub const MP_REACH_NLRI: u8 = 14;
    pub const MP_UNREACH_NLRI: u8 = 15;
    pub const EXTENDED_COMMUNITIES: u8 = 16;
    pub const AS4_PATH: u8 = 17;
    pub const AS4_AGGREGATOR: u8 = 18;
    pub const IPV6_EXTENDED_COMMUNITIES: u8 = 25;
    pub const LARGE_COMMUNITY: u8 = 32;
}

/// Attribute Flags bits (RFC 4271 4.3).
pub mod flag {
    pub const OPTIONAL: u8 = 0x80;
    pub const TRANSITIVE: u8 = 0x40;
    pub const PARTIAL: u8 = 0x20;
    pub const EXTENDED_LENGTH: u8 = 0x10;
}

const WELL_KNOWN: u8 = flag::TRANSITIVE;
const OPTIONAL_TRANSITIVE: u8 = flag::OPTIONAL | flag::TRANSITIVE;
const OPTIONAL_NON_TRANSITIVE: u8 = flag::OPTIONAL;

/// The name of a recognized attribute.
pub fn name(c: u8) -> Option<&'static str> {
    Some(match c {
        code::ORIGIN => "ORIGIN",
        code::AS_PATH => "AS_PATH",
        code::NEXT_HOP => "NEXT_HOP",
        code::MULTI_EXIT_DISC => "MULTI_EXIT_DISC",
        code::LOCAL_PREF => "LOCAL_PREF",
        code::ATOMIC_AGGREGATE => "ATOMIC_AGGREGATE",
        code::AGGREGATOR => "AGGREGATOR",
        code::COMMUNITIES => "COMMUNITIES",
        code::ORIGINATOR_ID => "ORIGINATOR_ID",
        code::CLUSTER_LIST => "CLUSTER_LIST",
        code::MP_REACH_NLRI => "MP_REACH_NLRI",
        code::MP_UNREACH_NLRI => "MP_UNREACH_NLRI",
        code::EXTENDED_COMMUNITIES => "EXTENDED_COMMUNITIES",
        code::AS4_PATH => "AS4_PATH",
        code::AS4_AGGREGATOR => "AS4_AGGREGATOR",
        code::IPV6_EXTENDED_COMMUNITIES => "IPV6_EXTENDED_COMMUNITIES",
        code::LARGE_COMMUNITY => "LARGE_COMMUNITY",
        _ => return None,
    })
}

/// The Optional and Transitive bits a recognized attribute must carry
/// (RFC 4271 5, RFC 4760 3/4, RFC 6793 3, RFC 1997, RFC 4360 2, RFC 4456 8,
/// RFC 5701 2, RFC 8092 3). None for attributes we do not recognize.
pub fn expected_flags(c: u8) -> Option<u8> {
    Some(match c {
        code::ORIGIN
        | code::AS_PATH
        | code::NEXT_HOP
        | code::LOCAL_PREF
        | code::ATOMIC_AGGREGATE => WELL_KNOWN,
        code::MULTI_EXIT_DISC
        | code::ORIGINATOR_ID
        | code::CLUSTER_LIST
        | code::MP_REACH_NLRI
        | code::MP_UNREACH_NLRI => OPTIONAL_NON_TRANSITIVE,
        code::AGGREGATOR
        | code::COMMUNITIES
        | code::EXTENDED_COMMUNITIES
        | code::AS4_PATH
        | code::AS4_AGGREGATOR
        | code::IPV6_EXTENDED_COMMUNITIES
        | code::LARGE_COMMUNITY => OPTIONAL_TRANSITIVE,
        _ => return None,
    })
}

/// The action and rule for a malformed attribute (RFC 7606 7; RFC 6793 6 for
/// AS4_*; RFC 8092 6 for LARGE_COMMUNITY). MP_REACH_NLRI/MP_UNREACH_NLRI are
/// resets with Optional Attribute Error (RFC 4760 7).
fn malformed_rule(c: u8) -> (ErrorAction, &'static str) {
    use ErrorAction::{AttributeDiscard as Discard, TreatAsWithdraw as Withdraw};
    let reset = || {
        ErrorAction::SessionReset(super::Notification::new(
            notify::UPDATE,
            notify::UPDATE_OPTIONAL_ATTRIBUTE,
        ))
    };
    match c {
        code::ORIGIN => (Withdraw, "RFC 7606 7.1"),
        code::AS_PATH => (Withdraw, "RFC 7606 7.2"),
        code::NEXT_HOP => (Withdraw, "RFC 7606 7.3"),
        code::MULTI_EXIT_DISC => (Withdraw, "RFC 7606 7.4"),
        code::LOCAL_PREF => (Withdraw, "RFC 7606 7.5"),
        code::ATOMIC_AGGREGATE => (Discard, "RFC 7606 7.6"),
        code::AGGREGATOR => (Discard, "RFC 7606 7.7"),
        code::COMMUNITIES => (Withdraw, "RFC 7606 7.8"),
        code::ORIGINATOR_ID => (Withdraw, "RFC 7606 7.9"),
        code::CLUSTER_LIST => (Withdraw, "RFC 7606 7.10"),
        code::MP_REACH_NLRI => (reset(), "RFC 7606 7.11"),
        code::MP_UNREACH_NLRI => (reset(), "RFC 7606 7.12"),
        code::EXTENDED_COMMUNITIES => (Withdraw, "RFC 7606 7.14"),
        code::AS4_PATH | code::AS4_AGGREGATOR => (Discard, "RFC 6793 6"),
        code::IPV6_EXTENDED_COMMUNITIES => (Withdraw, "RFC 7606 7.15"),
        code::LARGE_COMMUNITY => (Withdraw, "RFC 8092 6"),
        _ => (Withdraw, "RFC 7606 3"),
    }
}

/// An error in attribute `c` with the attribute's own action and rule.
fn malformed(c: u8, raw: &[u8], kind: ErrorKind, reason: impl Into<String>) -> UpdateError {
    let (mut action, rule) = malformed_rule(c);
    if let ErrorAction::SessionReset(n) = &mut action {
        // RFC 4271 6.3: the Data field of an attribute error carries the attribute.
        n.data = raw.to_vec();
    }
    UpdateError::new(action, Subject::Attribute(c), kind, rule, reason)
}

/// An error in attribute `c` with an explicit action and rule.
fn error(
    action: ErrorAction,
    c: u8,
    kind: ErrorKind,
    rule: &'static str,
    reason: impl Into<String>,
) -> UpdateError {
    UpdateError::new(action, Subject::Attribute(c), kind, rule, reason)
}

/// The reachability in an MP_REACH_NLRI of a family we speak.
#[derive(Debug, Clone)]
pub(super) struct MpReach {
    pub next_hop: NextHop,
    pub prefixes: Vec<Nlri>,
}

/// What the path attributes of one UPDATE set, as they are read.
pub(super) struct Received {
    /// Attributes shared by every announced prefix (the next hop is set per group).
    pub attrs: PathAttrs,
    /// Type codes seen so far (for duplicates, RFC 7606 3(g), and missing attributes, 3(d)).
    seen: [bool; 256],
    pub next_hop: Option<Ipv4Addr>,
    pub as4_path: Option<Vec<AsSegment>>,
    pub as4_aggregator: Option<(u32, Ipv4Addr)>,
    pub mp_reach: Option<MpReach>,
    pub mp_unreach: Vec<Nlri>,
    /// An MP_UNREACH_NLRI of a family we speak was present (End-of-RIB detection).
    pub mp_unreach_family: Option<Family>,
    /// Errors that do not reset the session (attribute discard, treat-as-withdraw).
    pub errors: Vec<UpdateError>,
}

impl Default for Received {
    fn default() -> Self {
        Received {
            attrs: PathAttrs::local(NextHop::V4 {
                addr: Ipv4Addr::UNSPECIFIED,
            }),
            seen: [false; 256],
            next_hop: None,
            as4_path: None,
            as4_aggregator: None,
            mp_reach: None,
            mp_unreach: Vec::new(),
            mp_unreach_family: None,
            errors: Vec::new(),
        }
    }
}

impl Received {
    /// Marks `c` as seen; returns false if it was already.
    pub fn first(&mut self, c: u8) -> bool {
        !std::mem::replace(&mut self.seen[usize::from(c)], true)
    }

    pub fn seen(&self, c: u8) -> bool {
        self.seen[usize::from(c)]
    }
}

/// Reads one attribute (`raw` is the whole attribute, `value` its value)
/// into `rx`. Errors that keep the session go to `rx.errors`; an error that
/// resets the session is returned.
pub(super) fn read(
    flags: u8,
    c: u8,
    value: &[u8],
    raw: &[u8],
    cx: &SessionContext,
    rx: &mut Received,
) -> Result<(), UpdateError> {
    let Some(expected) = expected_flags(c) else {
        return unrecognized(flags, c, value, raw, rx);
    };
    // Attributes discarded whatever they hold.
    let not_allowed = match c {
        code::LOCAL_PREF if !cx.ibgp => Some(("RFC 7606 7.5", "from an external peer")),
        code::ORIGINATOR_ID if !cx.ibgp => Some(("RFC 7606 7.9", "from an external peer")),
        code::CLUSTER_LIST if !cx.ibgp => Some(("RFC 7606 7.10", "from an external peer")),
        code::AS4_PATH | code::AS4_AGGREGATOR if cx.asn4 => {
            Some(("RFC 6793 6", "between 4-octet-AS speakers"))
        }
        _ => None,
    };
    if let Some((rule, why)) = not_allowed {
        rx.errors.push(error(
            ErrorAction::AttributeDiscard,
            c,
            ErrorKind::NotAllowed,
            rule,
            format!("{} {why}", name(c).unwrap_or_default()),
        ));
        return Ok(());
    }
    let flags_ok = flags & OPTIONAL_TRANSITIVE == expected;
    if !flags_ok {
        rx.errors.push(error(
            ErrorAction::TreatAsWithdraw,
            c,
            ErrorKind::Flags,
            "RFC 7606 3(c)",
            format!(
                "flags 0x{flags:02x} conflict with {} (must be {})",
                name(c).unwrap_or_default(),
                describe_flags(expected)
            ),
        ));
        // The NLRI in MP_REACH/MP_UNREACH must still be read to be withdrawn.
        if c != code::MP_REACH_NLRI && c != code::MP_UNREACH_NLRI {
            return Ok(());
        }
    }
    let result = match c {
        code::ORIGIN => origin(value).map(|o| rx.attrs.origin = o),
        code::AS_PATH => as_path(value, cx).map(|p| rx.attrs.as_path = p),
        code::NEXT_HOP => next_hop(value, cx).map(|a| rx.next_hop = Some(a)),
        code::MULTI_EXIT_DISC => u32_value(c, value).map(|v| rx.attrs.med = Some(v)),
        code::LOCAL_PREF => u32_value(c, value).map(|v| rx.attrs.local_pref = Some(v)),
        code::ATOMIC_AGGREGATE => {
            atomic_aggregate(value).map(|()| rx.attrs.atomic_aggregate = true)
        }
        code::AGGREGATOR => {
            aggregator(c, value, if cx.asn4 { 4 } else { 2 }).map(|a| rx.attrs.aggregator = Some(a))
        }
        code::COMMUNITIES => communities(value).map(|v| rx.attrs.communities = v),
        code::ORIGINATOR_ID => originator_id(value).map(|a| rx.attrs.originator_id = Some(a)),
        code::CLUSTER_LIST => cluster_list(value).map(|v| rx.attrs.cluster_list = v),
        code::MP_REACH_NLRI => mp_reach(value, raw, cx, rx),
        code::MP_UNREACH_NLRI => mp_unreach(value, raw, cx).map(|u| {
            if let Some((family, prefixes)) = u {
                rx.mp_unreach_family = Some(family);
                rx.mp_unreach = prefixes;
            }
        }),
        code::EXTENDED_COMMUNITIES | code::IPV6_EXTENDED_COMMUNITIES | code::LARGE_COMMUNITY => {
            community_list(c, value).map(|()| rx.attrs.unknown.push(pass_on(flags, c, value)))
        }
        code::AS4_PATH => as4_path(value).map(|p| rx.as4_path = Some(p)),
        code::AS4_AGGREGATOR => aggregator(c, value, 4).map(|a| rx.as4_aggregator = Some(a)),
        _ => Ok(()),
    };
    match result {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.action, ErrorAction::SessionReset(_)) => Err(e),
        Err(e) => {
            rx.errors.push(e);
            Ok(())
        }
    }
}

fn describe_flags(f: u8) -> &'static str {
    match f {
        WELL_KNOWN => "well-known: optional 0, transitive 1",
        OPTIONAL_TRANSITIVE => "optional transitive",
        _ => "optional non-transitive",
    }
}

/// An attribute we do not recognize (RFC 4271 5, 6.3, 9).
fn unrecognized(
    flags: u8,
    c: u8,
    value: &[u8],
    raw: &[u8],
    rx: &mut Received,
) -> Result<(), UpdateError> {
    if flags & flag::OPTIONAL == 0 {
        // RFC 4271 6.3: the Data field carries the unrecognized attribute.
        return Err(UpdateError::reset(
            notify::UPDATE_UNRECOGNIZED_WELL_KNOWN,
            raw.to_vec(),
            Subject::Attribute(c),
            ErrorKind::Unrecognized,
            "RFC 4271 6.3",
            format!("attribute {c} is flagged well-known (0x{flags:02x}) but is not one"),
        ));
    }
    if flags & flag::TRANSITIVE != 0 {
        // RFC 4271 9: an unrecognized optional transitive attribute is passed
        // on with the Partial bit set; a non-transitive one is quietly ignored.
        rx.attrs
            .unknown
            .push(pass_on(flags | flag::PARTIAL, c, value));
    }
    Ok(())
}

fn pass_on(flags: u8, c: u8, value: &[u8]) -> RawAttr {
    RawAttr {
        flags: flags & (flag::OPTIONAL | flag::TRANSITIVE | flag::PARTIAL),
        code: c,
        value: value.to_vec(),
    }
}

fn origin(v: &[u8]) -> Result<Origin, UpdateError> {
    let c = code::ORIGIN;
    match v {
        [0] => Ok(Origin::Igp),
        [1] => Ok(Origin::Egp),
        [2] => Ok(Origin::Incomplete),
        [x] => Err(malformed(
            c,
            v,
            ErrorKind::Value,
            format!("ORIGIN value {x} is undefined"),
        )),
        _ => Err(malformed(
            c,
            v,
            ErrorKind::Length,
            format!("ORIGIN of {} octets (must be 1)", v.len()),
        )),
    }
}

/// AS_PATH segment types (RFC 4271 4.3, RFC 5065 3).
const AS_SET: u8 = 1;
const AS_SEQUENCE: u8 = 2;
const AS_CONFED_SEQUENCE: u8 = 3;
const AS_CONFED_SET: u8 = 4;

/// A segment as read: its type code and ASNs.
type RawSegment = (u8, Vec<u32>);
/// Why a path is malformed.
type PathError = (ErrorKind, String);

/// Walks AS_PATH / AS4_PATH segments (RFC 7606 7.2, RFC 6793 6): returns the
/// segments (confederation segments included, by type) or what is malformed.
fn segments(v: &[u8], width: usize) -> Result<Vec<RawSegment>, PathError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let Some(&[typ, n]) = v
            .get(i..i + 2)
            .map(|s| <&[u8; 2]>::try_from(s).expect("2 octets"))
        else {
            return Err((
                ErrorKind::Length,
                "1 octet left after the last segment".into(),
            ));
        };
        if !(AS_SET..=AS_CONFED_SET).contains(&typ) {
            return Err((ErrorKind::Value, format!("segment type {typ} is undefined")));
        }
        if n == 0 {
            return Err((ErrorKind::Length, "segment of length 0".into()));
        }
        let len = usize::from(n) * width;
        let Some(body) = v.get(i + 2..i + 2 + len) else {
            return Err((
                ErrorKind::Length,
                format!(
                    "segment of {n} ASNs overruns the attribute by {} octets",
                    i + 2 + len - v.len()
                ),
            ));
        };
        let asns = body
            .chunks_exact(width)
            .map(|b| match width {
                4 => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                _ => u32::from(u16::from_be_bytes([b[0], b[1]])),
            })
            .collect();
        out.push((typ, asns));
        i += 2 + len;
    }
    Ok(out)
}

fn as_path(v: &[u8], cx: &SessionContext) -> Result<Vec<AsSegment>, UpdateError> {
    let c = code::AS_PATH;
    let segs = segments(v, if cx.asn4 { 4 } else { 2 })
        .map_err(|(kind, why)| malformed(c, v, kind, format!("AS_PATH: {why}")))?;
    let mut path = Vec::with_capacity(segs.len());
    for (typ, asns) in segs {
        if typ == AS_CONFED_SEQUENCE || typ == AS_CONFED_SET {
            return Err(error(
                ErrorAction::TreatAsWithdraw,
                c,
                ErrorKind::Value,
                "RFC 5065 5, RFC 7606 7.2",
                "AS_PATH has a confederation segment and we are in no confederation",
            ));
        }
        if asns.contains(&0) {
            return Err(error(
                ErrorAction::TreatAsWithdraw,
                c,
                ErrorKind::Value,
                "RFC 7607 2, RFC 7606 7.2",
                "AS_PATH contains AS 0",
            ));
        }
        let kind = match typ {
            AS_SEQUENCE => AsSegmentKind::Sequence,
            _ => AsSegmentKind::Set,
        };
        path.push(AsSegment { kind, asns });
    }
    if let (false, Some(peer_as)) = (cx.ibgp, cx.peer_as) {
        // RFC 4271 6.3 (a MAY we do): from an external peer the leftmost AS is the peer's.
        let first = match path.first() {
            Some(s) if s.kind == AsSegmentKind::Sequence => s.asns.first().copied(),
            _ => None,
        };
        if first != Some(peer_as) {
            return Err(error(
                ErrorAction::TreatAsWithdraw,
                c,
                ErrorKind::Value,
                "RFC 4271 6.3, RFC 7606 7.2",
                format!(
                    "AS_PATH from external peer AS {peer_as} does not start with it ({})",
                    first.map_or("empty".to_string(), |a| format!("starts with {a}"))
                ),
            ));
        }
    }
    Ok(path)
}

fn as4_path(v: &[u8]) -> Result<Vec<AsSegment>, UpdateError> {
    let c = code::AS4_PATH;
    if !v.len().is_multiple_of(2) || v.len() < 6 {
        return Err(malformed(
            c,
            v,
            ErrorKind::Length,
            format!(
                "AS4_PATH of {} octets (a multiple of 2, at least 6)",
                v.len()
            ),
        ));
    }
    let segs =
        segments(v, 4).map_err(|(kind, why)| malformed(c, v, kind, format!("AS4_PATH: {why}")))?;
    let mut path = Vec::with_capacity(segs.len());
    for (typ, asns) in segs {
        if asns.contains(&0) {
            return Err(error(
                ErrorAction::AttributeDiscard,
                c,
                ErrorKind::Value,
                "RFC 7607 2, RFC 6793 6",
                "AS4_PATH contains AS 0",
            ));
        }
        match typ {
            // RFC 6793 6: confederation segments in AS4_PATH are dropped, the rest is used.
            AS_CONFED_SEQUENCE | AS_CONFED_SET => {}
            AS_SEQUENCE => path.push(AsSegment {
                kind: AsSegmentKind::Sequence,
                asns,
            }),
            _ => path.push(AsSegment {
                kind: AsSegmentKind::Set,
                asns,
            }),
        }
    }
    Ok(path)
}

/// The reason an IPv4 next hop cannot be used, if any.
fn bad_v4_next_hop(a: Ipv4Addr, cx: &SessionContext) -> Option<&'static str> {
    let o = a.octets()[0];
    if o == 0 {
        Some("is in 0.0.0.0/8 (this host on this network)")
    } else if a.is_multicast() {
        Some("is multicast")
    } else if o >= 240 {
        Some("is reserved (240.0.0.0/4) or broadcast")
    } else if cx.local_addr.map(super::canonical) == Some(IpAddr::V4(a)) {
        Some("is our own address on this session")
    } else {
        None
    }
}

fn bad_v6_next_hop(
    global: Ipv6Addr,
    ll: Option<Ipv6Addr>,
    cx: &SessionContext,
) -> Option<&'static str> {
    if global.is_multicast() || ll.is_some_and(|l| l.is_multicast()) {
        Some("is multicast")
    } else if global.is_unspecified() && ll.is_none() {
        Some("is unspecified (::)")
    } else if let Some(v4) = global.to_ipv4_mapped() {
        bad_v4_next_hop(v4, cx)
    } else if cx.local_addr == Some(IpAddr::V6(global)) {
        Some("is our own address on this session")
    } else {
        None
    }
}

fn next_hop(v: &[u8], cx: &SessionContext) -> Result<Ipv4Addr, UpdateError> {
    let c = code::NEXT_HOP;
    let Ok(b) = <[u8; 4]>::try_from(v) else {
        return Err(malformed(
            c,
            v,
            ErrorKind::Length,
            format!("NEXT_HOP of {} octets (must be 4)", v.len()),
        ));
    };
    let a = Ipv4Addr::from(b);
    match bad_v4_next_hop(a, cx) {
        // RFC 4271 6.3: a semantically incorrect NEXT_HOP is logged and the route ignored.
        Some(why) => Err(error(
            ErrorAction::TreatAsWithdraw,
            c,
            ErrorKind::Value,
            "RFC 4271 6.3, RFC 7606 7.3",
            format!("NEXT_HOP {a} {why}"),
        )),
        None => Ok(a),
    }
}

fn u32_value(c: u8, v: &[u8]) -> Result<u32, UpdateError> {
    <[u8; 4]>::try_from(v).map(u32::from_be_bytes).map_err(|_| {
        malformed(
            c,
            v,
            ErrorKind::Length,
            format!(
                "{} of {} octets (must be 4)",
                name(c).unwrap_or_default(),
                v.len()
            ),
        )
    })
}

fn atomic_aggregate(v: &[u8]) -> Result<(), UpdateError> {
    if v.is_empty() {
        Ok(())
    } else {
        Err(malformed(
            code::ATOMIC_AGGREGATE,
            v,
            ErrorKind::Length,
            format!("ATOMIC_AGGREGATE of {} octets (must be 0)", v.len()),
        ))
    }
}

/// AGGREGATOR (`width` 2 or 4 by the session, RFC 6793 4) or AS4_AGGREGATOR (4).
fn aggregator(c: u8, v: &[u8], width: usize) -> Result<(u32, Ipv4Addr), UpdateError> {
    let attr = name(c).unwrap_or_default();
    if v.len() != width + 4 {
        return Err(malformed(
            c,
            v,
            ErrorKind::Length,
            format!("{attr} of {} octets (must be {})", v.len(), width + 4),
        ));
    }
    let asn = match width {
        4 => u32::from_be_bytes([v[0], v[1], v[2], v[3]]),
        _ => u32::from(u16::from_be_bytes([v[0], v[1]])),
    };
    let ip = Ipv4Addr::new(v[width], v[width + 1], v[width + 2], v[width + 3]);
    if asn == 0 {
        let mut e = malformed(c, v, ErrorKind::Value, format!("{attr} carries AS 0"));
        e.rule = if c == code::AGGREGATOR {
            "RFC 7607 2, RFC 7606 7.7"
        } else {
            "RFC 7607 2, RFC 6793 6"
        };
        return Err(e);
    }
    Ok((asn, ip))
}

/// A length that must be a non-zero multiple of `unit`.
fn multiple_of(c: u8, v: &[u8], unit: usize) -> Result<(), UpdateError> {
    if !v.is_empty() && v.len().is_multiple_of(unit) {
        Ok(())
    } else {
        Err(malformed(
            c,
            v,
            ErrorKind::Length,
            format!(
                "{} of {} octets (must be a non-zero multiple of {unit})",
                name(c).unwrap_or_default(),
                v.len()
            ),
        ))
    }
}

fn communities(v: &[u8]) -> Result<Vec<Community>, UpdateError> {
    multiple_of(code::COMMUNITIES, v, 4)?;
    Ok(v.chunks_exact(4)
        .map(|b| Community(u32::from_be_bytes([b[0], b[1], b[2], b[3]])))
        .collect())
}

fn community_list(c: u8, v: &[u8]) -> Result<(), UpdateError> {
    let unit = match c {
        code::EXTENDED_COMMUNITIES => 8,
        code::IPV6_EXTENDED_COMMUNITIES => 20,
        _ => 12,
    };
    multiple_of(c, v, unit)
}

fn originator_id(v: &[u8]) -> Result<Ipv4Addr, UpdateError> {
    u32_value(code::ORIGINATOR_ID, v).map(Ipv4Addr::from)
}

fn cluster_list(v: &[u8]) -> Result<Vec<Ipv4Addr>, UpdateError> {
    multiple_of(code::CLUSTER_LIST, v, 4)?;
    Ok(v.chunks_exact(4)
        .map(|b| Ipv4Addr::new(b[0], b[1], b[2], b[3]))
        .collect())
}

fn family(afi: u16, safi: u8) -> Option<Family> {
    match (afi, safi) {
        (1, 1) => Some(Family::Ipv4Unicast),
        (2, 1) => Some(Family::Ipv6Unicast),
        _ => None,
    }
}

/// The NLRI of an MP attribute; path identifiers where ADD-PATH receive was
/// negotiated (IPv4 unicast).
fn parse_prefixes(f: Family, b: &[u8], cx: &SessionContext) -> Result<Vec<Nlri>, PrefixError> {
    match f {
        Family::Ipv4Unicast => nlri::parse_v4_nlri(b, cx.add_path_rx),
        Family::Ipv6Unicast => nlri::parse_v6_nlri(b, false),
    }
}

/// MP_REACH_NLRI (RFC 4760 3) into `rx`; a family we do not speak is ignored.
fn mp_reach(
    v: &[u8],
    raw: &[u8],
    cx: &SessionContext,
    rx: &mut Received,
) -> Result<(), UpdateError> {
    let c = code::MP_REACH_NLRI;
    let [a0, a1, safi, nh_len, ..] = *v else {
        return Err(malformed(
            c,
            raw,
            ErrorKind::Length,
            format!(
                "MP_REACH_NLRI of {} octets is too short for AFI, SAFI and next-hop length",
                v.len()
            ),
        ));
    };
    let nh_len = usize::from(nh_len);
    let Some(f) = family(u16::from_be_bytes([a0, a1]), safi) else {
        return Ok(());
    };
    // RFC 7606 7.11: a next-hop length other than expected leaves the NLRI unlocatable.
    let expected: &[usize] = match f {
        // RFC 8950: IPv4 unicast may carry an IPv6 next hop (global, or global + link-local).
        Family::Ipv4Unicast => &[4, 16, 32],
        Family::Ipv6Unicast => &[16, 32],
    };
    if !expected.contains(&nh_len) {
        return Err(malformed(
            c,
            raw,
            ErrorKind::Length,
            format!("next-hop length {nh_len} for {f:?} (expected one of {expected:?})"),
        ));
    }
    // AFI(2) SAFI(1) length(1) next hop, reserved(1), NLRI.
    let Some(nh) = v.get(4..4 + nh_len) else {
        return Err(malformed(
            c,
            raw,
            ErrorKind::Length,
            format!(
                "next hop of {nh_len} octets overruns the {}-octet attribute",
                v.len()
            ),
        ));
    };
    let Some(nlri) = v.get(5 + nh_len..) else {
        return Err(malformed(
            c,
            raw,
            ErrorKind::Length,
            "no reserved octet after the next hop",
        ));
    };
    let prefixes = parse_prefixes(f, nlri, cx).map_err(|e| {
        let mut err = malformed(c, raw, ErrorKind::Value, format!("NLRI: {e}"));
        err.rule = "RFC 7606 5.3, 7.11";
        err
    })?;
    let v6 = |b: &[u8]| Ipv6Addr::from(<[u8; 16]>::try_from(b).expect("16 octets"));
    let next_hop = match nh.len() {
        4 => NextHop::V4 {
            addr: Ipv4Addr::new(nh[0], nh[1], nh[2], nh[3]),
        },
        16 => NextHop::V6 {
            global: v6(nh),
            link_local: None,
        },
        _ => NextHop::V6 {
            global: v6(&nh[..16]),
            link_local: Some(v6(&nh[16..])),
        },
    };
    let bad = match next_hop {
        NextHop::V4 { addr } => bad_v4_next_hop(addr, cx),
        NextHop::V6 { global, link_local } => bad_v6_next_hop(global, link_local, cx),
    };
    if let Some(why) = bad {
        // RFC 4271 6.3 as for NEXT_HOP: the routes are ignored. The prefixes
        // were located, so treat-as-withdraw withdraws them.
        rx.errors.push(error(
            ErrorAction::TreatAsWithdraw,
            c,
            ErrorKind::Value,
            "RFC 4271 6.3, RFC 7606 7.11",
            format!("MP_REACH_NLRI next hop {next_hop} {why}"),
        ));
    }
    rx.mp_reach = Some(MpReach { next_hop, prefixes });
    Ok(())
}

/// MP_UNREACH_NLRI (RFC 4760 4): None for a family we do not speak (ignored).
fn mp_unreach(
    v: &[u8],
    raw: &[u8],
    cx: &SessionContext,
) -> Result<Option<(Family, Vec<Nlri>)>, UpdateError> {
    let c = code::MP_UNREACH_NLRI;
    let [a0, a1, safi, ref nlri @ ..] = *v else {
        return Err(malformed(
            c,
            raw,
            ErrorKind::Length,
            format!(
                "MP_UNREACH_NLRI of {} octets is too short for AFI and SAFI",
                v.len()
            ),
        ));
    };
    let Some(f) = family(u16::from_be_bytes([a0, a1]), safi) else {
        return Ok(None);
    };
    let prefixes = parse_prefixes(f, nlri, cx).map_err(|e| {
        let mut err = malformed(c, raw, ErrorKind::Value, format!("withdrawn NLRI: {e}"));
        err.rule = "RFC 7606 5.3, 7.12";
        err
    })?;
    Ok(Some((f, prefixes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(asns: &[u32]) -> AsSegment {
        AsSegment {
            kind: AsSegmentKind::Sequence,
            asns: asns.to_vec(),
        }
    }

    #[test]
    fn every_named_attribute_has_flags_and_a_rule() {
        for c in 0..=255u8 {
            assert_eq!(name(c).is_some(), expected_flags(c).is_some(), "code {c}");
            if name(c).is_some() {
                assert_ne!(
                    malformed_rule(c).1,
                    "RFC 7606 3",
                    "code {c} has its own rule"
                );
            }
        }
    }

    #[test]
    fn unrecognized_transitive_attribute_is_passed_on_partial() {
        let mut rx = Received::default();
        let raw = [0xc0, 99, 2, 1, 2];
        read(
            0xc0,
            99,
            &raw[3..],
            &raw,
            &SessionContext::default(),
            &mut rx,
        )
        .unwrap();
        read(
            0x80,
            98,
            &raw[3..],
            &raw,
            &SessionContext::default(),
            &mut rx,
        )
        .unwrap();
        assert_eq!(
            rx.attrs.unknown,
            vec![RawAttr {
                flags: 0xe0,
                code: 99,
                value: vec![1, 2]
            }],
            "transitive kept with the Partial bit, non-transitive dropped"
        );
        assert!(rx.errors.is_empty());
    }

    #[test]
    fn as4_path_confederation_segments_are_dropped() {
        let v = [3, 1, 0, 0, 0xfd, 0xe8, 2, 1, 0, 1, 0, 0];
        assert_eq!(as4_path(&v).unwrap(), vec![seq(&[65536])]);
    }
}
