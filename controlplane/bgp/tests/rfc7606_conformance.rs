//! RFC 7606 / RFC 4271 conformance of UPDATE handling, attribute by attribute.
//!
//! `TABLE` below is the conformance table: every path attribute of RFC 4271,
//! 4760, 6793, 1997, 4360, 8092 (and 4456, 5701) times the error kinds of RFC
//! 7606 (length, flags, value, duplicate, missing) plus the message-level
//! cases (framing, NLRI), each row naming the RFC section and the action it
//! prescribes. Every row runs on a fresh session:
//!
//! 1. a valid UPDATE announces P1 (10.77.60.1/32), which must be installed;
//! 2. the row's UPDATE (about P1) is sent, and the action is checked:
//!    - treat-as-withdraw: session up, P1 gone, counted under its cause;
//!    - attribute discard: session up, P1 installed, counted under its cause;
//!    - session reset: the NOTIFICATION code/subcode sent, the session down,
//!      P1 gone (no old route survives), counted; then the session comes back;
//!    - prefix-ignore (RFC 4271 6.3, a multicast prefix beside P1): session
//!      up, P1 installed, the ignored prefix not, counted under its cause;
//!    - accept: P1 installed, nothing counted;
//! 3. a valid UPDATE announces P2 (10.77.60.2/32), which must be installed:
//!    no error outlives its message.
//!
//! The level is the one that decodes and applies UPDATEs, without sockets:
//! `session::Connection` (codec + FSM) feeding `speaker::Speaker` (RIB),
//! exactly as the tokio session loop does. AFI/SAFI disable is not used by
//! CER (it resets instead; see `packet/error.rs`). The `issue15_*` tests at
//! the end are one regression test per violation listed in issue 15.

use cer_bgp::decision::DecisionConfig;
use cer_bgp::events::PeerEvent;
use cer_bgp::fsm::{Action, Event, FsmConfig, PeerAs, State};
use cer_bgp::packet::{
    self, Capabilities, ErrorKind, ErrorKind::*, Notification, UpdateError, HEADER_LEN,
};
use cer_bgp::route::{AsSegment, AsSegmentKind, PeerId, Prefix};
use cer_bgp::session::{Connection, Inbound};
use cer_bgp::speaker::{NeighborConfig, NeighborSummary, Speaker, SpeakerConfig};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The session a row runs on.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Peer {
    /// iBGP, both sides 4-octet AS (AS 65000).
    Ibgp,
    /// eBGP from AS 65001, 4-octet AS.
    Ebgp,
    /// iBGP with a 2-octet-AS ("OLD", RFC 6793) peer.
    Old,
}
use Peer::*;

/// The UPDATE a row sends, in terms of the valid attribute set of its
/// session (ORIGIN IGP, AS_PATH, NEXT_HOP 192.0.2.7, LOCAL_PREF 100 on
/// iBGP), announcing P1 in the NLRI field unless said otherwise. Attributes
/// are raw bytes: flags, type, length, value.
#[derive(Debug, Clone, Copy)]
enum Msg {
    /// Attribute `code` set to these bytes (replaced, or added at the end).
    Set(u8, &'static [u8]),
    /// The valid attributes, then these bytes.
    Add(&'static [u8]),
    /// The valid attributes without attribute `code`.
    Drop(u8),
    /// The valid attributes with this NLRI field.
    Nlri(&'static [u8]),
    /// No NLRI field: the valid attributes without NEXT_HOP, then these
    /// bytes (an MP_REACH_NLRI announcing P1, ...).
    MpOnly(&'static [u8]),
    /// Exactly these attributes and no NLRI field.
    Only(&'static [u8]),
    /// Exactly this UPDATE body (from the Withdrawn Routes Length on).
    Body(&'static [u8]),
}
use Msg::*;

/// What the row's UPDATE must lead to.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    TreatAsWithdraw,
    AttributeDiscard,
    /// NOTIFICATION UPDATE Message Error (3) with this subcode, then close.
    Reset(u8),
    /// RFC 4271 6.3: this prefix of the UPDATE is ignored, the others (P1)
    /// are installed.
    PrefixIgnore(&'static str),
    /// Valid: installed, nothing counted.
    Accept,
}
use Expect::*;

struct Row {
    /// Where the rule is written (the code's rule must name it too).
    rfc: &'static str,
    /// The attribute or field, as the counters name it.
    subject: &'static str,
    kind: ErrorKind,
    peer: Peer,
    what: &'static str,
    msg: Msg,
    expect: Expect,
}

const fn row(
    rfc: &'static str,
    subject: &'static str,
    kind: ErrorKind,
    peer: Peer,
    what: &'static str,
    msg: Msg,
    expect: Expect,
) -> Row {
    Row {
        rfc,
        subject,
        kind,
        peer,
        what,
        msg,
        expect,
    }
}

// Type codes.
const ORIGIN: u8 = 1;
const AS_PATH: u8 = 2;
const NEXT_HOP: u8 = 3;
const LOCAL_PREF: u8 = 5;

/// MP_REACH_NLRI, IPv4 unicast, next hop 192.0.2.7, NLRI P1.
const MP_REACH_P1: &[u8] = &[0x80, 14, 14, 0, 1, 1, 4, 192, 0, 2, 7, 0, 32, 10, 77, 60, 1];
/// MP_UNREACH_NLRI, IPv4 unicast, withdrawing P1.
const MP_UNREACH_P1: &[u8] = &[0x80, 15, 8, 0, 1, 1, 32, 10, 77, 60, 1];

#[rustfmt::skip]
const TABLE: &[Row] = &[
    // ---- Message framing and NLRI (RFC 4271 6.3, RFC 7606 4, 5.3) ----
    row("RFC 4271 6.3", "withdrawn routes", Length, Ibgp, "Withdrawn Routes Length 64 past the message",
        Body(&[0, 64, 0, 0]), Reset(1)),
    row("RFC 7606 4", "path attributes", Length, Ibgp, "Total Path Attribute Length 64 past the message",
        Body(&[0, 0, 0, 64, 0x40, 1, 1, 0]), Reset(1)),
    row("RFC 7606 4", "MULTI_EXIT_DISC", Framing, Ibgp, "last attribute's length (9) overruns the field",
        Add(&[0x80, 4, 9, 0, 0, 0, 1]), TreatAsWithdraw),
    row("RFC 7606 4", "path attributes", Framing, Ibgp, "2 trailing octets, too few for a header",
        Add(&[0x80, 4]), TreatAsWithdraw),
    row("RFC 7606 4", "path attributes", Framing, Ibgp, "3 trailing octets of an extended-length header",
        Add(&[0x90, 4, 0]), TreatAsWithdraw),
    row("RFC 7606 4, 7.11", "MP_REACH_NLRI", Framing, Ibgp, "MP_REACH_NLRI overruns the field: its NLRI cannot be located",
        MpOnly(&[0x80, 14, 30, 0, 1, 1, 4, 192, 0, 2, 7, 0, 32, 10, 77, 60, 1]), Reset(9)),
    row("RFC 7606 5.3", "NLRI", Length, Ibgp, "NLRI prefix length 33",
        Nlri(&[33, 10, 77, 60, 1, 0]), Reset(10)),
    row("RFC 7606 5.3", "NLRI", Length, Ibgp, "NLRI prefix /24 with 2 octets left",
        Nlri(&[24, 10, 77]), Reset(10)),
    row("RFC 7606 5.3", "withdrawn routes", Length, Ibgp, "withdrawn prefix length 40",
        Body(&[0, 5, 40, 1, 2, 3, 4, 0, 0]), Reset(10)),
    // A peer that sends path identifiers (RFC 7911) on a session that did not
    // negotiate ADD-PATH: the field is read as plain prefixes (RFC 4271), and
    // the misread lengths overrun it.
    row("RFC 7606 5.3", "NLRI", Length, Ibgp, "path id 1 before P1 without ADD-PATH",
        Nlri(&[0, 0, 0, 1, 32, 10, 77, 60, 1]), Reset(10)),
    row("RFC 7606 5.3", "MP_REACH_NLRI", Value, Ibgp, "path id 1 before P1 in MP_REACH_NLRI without ADD-PATH",
        MpOnly(&[0x80, 14, 18, 0, 1, 1, 4, 192, 0, 2, 7, 0, 0, 0, 0, 1, 32, 10, 77, 60, 1]), Reset(9)),
    row("RFC 4271 6.3", "NLRI", Value, Ibgp, "224.0.0.5/32 (multicast) after P1 in the NLRI field",
        Nlri(&[32, 10, 77, 60, 1, 32, 224, 0, 0, 5]), PrefixIgnore("224.0.0.5/32")),
    row("RFC 4271 6.3", "NLRI", Value, Ibgp, "239.1.0.0/16 (multicast) before P1 in the NLRI field",
        Nlri(&[16, 239, 1, 32, 10, 77, 60, 1]), PrefixIgnore("239.1.0.0/16")),
    row("RFC 4271 6.3", "NLRI", Value, Ibgp, "240.0.0.0/4 (class E, reserved) beside P1: kept (see nlri::semantic_error)",
        Nlri(&[32, 10, 77, 60, 1, 4, 240]), Accept),
    row("RFC 4271 6.3", "attribute 99", Unrecognized, Ibgp, "unknown attribute flagged well-known",
        Add(&[0x40, 99, 1, 0]), Reset(2)),
    row("RFC 4271 9", "attribute 99", Unrecognized, Ibgp, "unknown optional transitive: passed on (Partial)",
        Add(&[0xc0, 99, 1, 0]), Accept),
    row("RFC 4271 9", "attribute 99", Unrecognized, Ibgp, "unknown optional non-transitive: ignored",
        Add(&[0x80, 99, 1, 0]), Accept),
    row("RFC 7606 3(g)", "attribute 99", Duplicate, Ibgp, "unknown optional attribute twice",
        Add(&[0xc0, 99, 1, 0, 0xc0, 99, 1, 1]), AttributeDiscard),

    // ---- ORIGIN (RFC 4271 5.1.1; RFC 7606 7.1) ----
    row("RFC 7606 7.1", "ORIGIN", Length, Ibgp, "ORIGIN of 2 octets",
        Set(ORIGIN, &[0x40, 1, 2, 0, 0]), TreatAsWithdraw),
    row("RFC 7606 7.1", "ORIGIN", Length, Ibgp, "ORIGIN of 0 octets",
        Set(ORIGIN, &[0x40, 1, 0]), TreatAsWithdraw),
    row("RFC 7606 7.1", "ORIGIN", Value, Ibgp, "ORIGIN value 3",
        Set(ORIGIN, &[0x40, 1, 1, 3]), TreatAsWithdraw),
    row("RFC 7606 3(c)", "ORIGIN", Flags, Ibgp, "ORIGIN flagged optional",
        Set(ORIGIN, &[0xc0, 1, 1, 0]), TreatAsWithdraw),
    row("RFC 7606 3(c)", "ORIGIN", Flags, Ibgp, "ORIGIN flagged non-transitive",
        Set(ORIGIN, &[0x00, 1, 1, 0]), TreatAsWithdraw),
    row("RFC 7606 3(g)", "ORIGIN", Duplicate, Ibgp, "ORIGIN twice: the second is discarded",
        Add(&[0x40, 1, 1, 2]), AttributeDiscard),
    row("RFC 7606 3(d)", "ORIGIN", Missing, Ibgp, "no ORIGIN",
        Drop(ORIGIN), TreatAsWithdraw),
    row("RFC 7606 3(d)", "ORIGIN", Missing, Ibgp, "no ORIGIN with MP_REACH_NLRI only",
        Only(&[0x40, 2, 0, 0x40, 5, 4, 0, 0, 0, 100,
               0x80, 14, 14, 0, 1, 1, 4, 192, 0, 2, 7, 0, 32, 10, 77, 60, 1]), TreatAsWithdraw),

    // ---- AS_PATH (RFC 4271 5.1.2; RFC 7606 7.2; RFC 6793; RFC 5065 5; RFC 7607) ----
    row("RFC 7606 7.2", "AS_PATH", Length, Ibgp, "segment of 2 ASNs with 1 present (overrun)",
        Set(AS_PATH, &[0x40, 2, 6, 2, 2, 0, 0, 0xfd, 0xe9]), TreatAsWithdraw),
    row("RFC 7606 7.2", "AS_PATH", Length, Ibgp, "1 octet after the last segment (underrun)",
        Set(AS_PATH, &[0x40, 2, 7, 2, 1, 0, 0, 0xfd, 0xe9, 2]), TreatAsWithdraw),
    row("RFC 7606 7.2", "AS_PATH", Length, Ibgp, "segment length 0",
        Set(AS_PATH, &[0x40, 2, 2, 2, 0]), TreatAsWithdraw),
    row("RFC 7606 7.2", "AS_PATH", Value, Ibgp, "segment type 5",
        Set(AS_PATH, &[0x40, 2, 6, 5, 1, 0, 0, 0xfd, 0xe9]), TreatAsWithdraw),
    row("RFC 5065 5", "AS_PATH", Value, Ibgp, "AS_CONFED_SEQUENCE, and we are in no confederation",
        Set(AS_PATH, &[0x40, 2, 6, 3, 1, 0, 0, 0xfd, 0xe8]), TreatAsWithdraw),
    row("RFC 7607 2", "AS_PATH", Value, Ibgp, "AS 0 in the path",
        Set(AS_PATH, &[0x40, 2, 6, 2, 1, 0, 0, 0, 0]), TreatAsWithdraw),
    row("RFC 4271 6.3", "AS_PATH", Value, Ebgp, "eBGP path not starting with the peer's AS",
        Set(AS_PATH, &[0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xea]), TreatAsWithdraw),
    row("RFC 4271 6.3", "AS_PATH", Value, Ebgp, "eBGP with an empty AS_PATH",
        Set(AS_PATH, &[0x40, 2, 0]), TreatAsWithdraw),
    row("RFC 7606 7.2", "AS_PATH", Value, Old, "4-octet ASNs on a 2-octet session",
        Set(AS_PATH, &[0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xe9]), TreatAsWithdraw),
    row("RFC 6793 4.2.2", "AS_PATH", Value, Old, "2-octet ASNs on a 2-octet session",
        Set(AS_PATH, &[0x40, 2, 4, 2, 1, 0xfd, 0xe9]), Accept),
    row("RFC 4271 4.3", "AS_PATH", Length, Ibgp, "extended-length AS_PATH (valid)",
        Set(AS_PATH, &[0x50, 2, 0, 6, 2, 1, 0, 0, 0xfd, 0xe9]), Accept),
    row("RFC 7606 3(c)", "AS_PATH", Flags, Ibgp, "AS_PATH flagged optional",
        Set(AS_PATH, &[0xc0, 2, 0]), TreatAsWithdraw),
    row("RFC 7606 3(g)", "AS_PATH", Duplicate, Ibgp, "AS_PATH twice",
        Add(&[0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xe9]), AttributeDiscard),
    row("RFC 7606 3(d)", "AS_PATH", Missing, Ibgp, "no AS_PATH",
        Drop(AS_PATH), TreatAsWithdraw),

    // ---- NEXT_HOP (RFC 4271 5.1.3, 6.3; RFC 7606 7.3; RFC 4760 3) ----
    row("RFC 7606 7.3", "NEXT_HOP", Length, Ibgp, "NEXT_HOP of 5 octets",
        Set(NEXT_HOP, &[0x40, 3, 5, 192, 0, 2, 7, 0]), TreatAsWithdraw),
    row("RFC 7606 7.3", "NEXT_HOP", Length, Ibgp, "NEXT_HOP of 3 octets",
        Set(NEXT_HOP, &[0x40, 3, 3, 192, 0, 2]), TreatAsWithdraw),
    row("RFC 4271 6.3", "NEXT_HOP", Value, Ibgp, "NEXT_HOP 0.0.0.0",
        Set(NEXT_HOP, &[0x40, 3, 4, 0, 0, 0, 0]), TreatAsWithdraw),
    row("RFC 4271 6.3", "NEXT_HOP", Value, Ibgp, "NEXT_HOP 224.0.0.5 (multicast)",
        Set(NEXT_HOP, &[0x40, 3, 4, 224, 0, 0, 5]), TreatAsWithdraw),
    row("RFC 4271 6.3", "NEXT_HOP", Value, Ibgp, "NEXT_HOP 255.255.255.255",
        Set(NEXT_HOP, &[0x40, 3, 4, 255, 255, 255, 255]), TreatAsWithdraw),
    row("RFC 4271 6.3", "NEXT_HOP", Value, Ibgp, "NEXT_HOP is our own session address",
        Set(NEXT_HOP, &[0x40, 3, 4, 192, 0, 2, 1]), TreatAsWithdraw),
    row("RFC 7606 3(c)", "NEXT_HOP", Flags, Ibgp, "NEXT_HOP flagged optional",
        Set(NEXT_HOP, &[0xc0, 3, 4, 192, 0, 2, 7]), TreatAsWithdraw),
    row("RFC 7606 3(g)", "NEXT_HOP", Duplicate, Ibgp, "NEXT_HOP twice",
        Add(&[0x40, 3, 4, 192, 0, 2, 8]), AttributeDiscard),
    row("RFC 7606 3(d)", "NEXT_HOP", Missing, Ibgp, "no NEXT_HOP with NLRI",
        Drop(NEXT_HOP), TreatAsWithdraw),
    row("RFC 4760 3", "NEXT_HOP", Length, Ibgp, "bad NEXT_HOP ignored when only MP_REACH_NLRI announces",
        MpOnly(&[0x80, 14, 14, 0, 1, 1, 4, 192, 0, 2, 7, 0, 32, 10, 77, 60, 1,
                 0x40, 3, 5, 192, 0, 2, 7, 0]), Accept),

    // ---- MULTI_EXIT_DISC (RFC 4271 5.1.4; RFC 7606 7.4) ----
    row("RFC 7606 7.4", "MULTI_EXIT_DISC", Length, Ibgp, "MED of 3 octets",
        Add(&[0x80, 4, 3, 0, 0, 1]), TreatAsWithdraw),
    row("RFC 7606 7.4", "MULTI_EXIT_DISC", Length, Ibgp, "MED of 8 octets",
        Add(&[0x80, 4, 8, 0, 0, 0, 1, 0, 0, 0, 1]), TreatAsWithdraw),
    row("RFC 7606 3(c)", "MULTI_EXIT_DISC", Flags, Ibgp, "MED flagged well-known",
        Add(&[0x40, 4, 4, 0, 0, 0, 1]), TreatAsWithdraw),
    row("RFC 7606 3(c)", "MULTI_EXIT_DISC", Flags, Ibgp, "MED flagged transitive",
        Add(&[0xc0, 4, 4, 0, 0, 0, 1]), TreatAsWithdraw),
    row("RFC 7606 3(g)", "MULTI_EXIT_DISC", Duplicate, Ibgp, "MED twice",
        Add(&[0x80, 4, 4, 0, 0, 0, 1, 0x80, 4, 4, 0, 0, 0, 2]), AttributeDiscard),

    // ---- LOCAL_PREF (RFC 4271 5.1.5; RFC 7606 7.5) ----
    row("RFC 7606 7.5", "LOCAL_PREF", Length, Ibgp, "LOCAL_PREF of 2 octets",
        Set(LOCAL_PREF, &[0x40, 5, 2, 0, 1]), TreatAsWithdraw),
    row("RFC 7606 7.5", "LOCAL_PREF", Length, Ibgp, "LOCAL_PREF of 0 octets",
        Set(LOCAL_PREF, &[0x40, 5, 0]), TreatAsWithdraw),
    row("RFC 7606 3(c)", "LOCAL_PREF", Flags, Ibgp, "LOCAL_PREF flagged optional",
        Set(LOCAL_PREF, &[0xc0, 5, 4, 0, 0, 0, 100]), TreatAsWithdraw),
    row("RFC 7606 3(g)", "LOCAL_PREF", Duplicate, Ibgp, "LOCAL_PREF twice",
        Add(&[0x40, 5, 4, 0, 0, 0, 200]), AttributeDiscard),
    row("RFC 4271 5.1.5", "LOCAL_PREF", Missing, Ibgp, "no LOCAL_PREF on iBGP: discretionary, default applies",
        Drop(LOCAL_PREF), Accept),
    row("RFC 7606 7.5", "LOCAL_PREF", NotAllowed, Ebgp, "LOCAL_PREF from an external peer",
        Add(&[0x40, 5, 4, 0, 0, 0, 200]), AttributeDiscard),
    row("RFC 7606 7.5", "LOCAL_PREF", NotAllowed, Ebgp, "malformed LOCAL_PREF from an external peer",
        Add(&[0x40, 5, 2, 0, 1]), AttributeDiscard),

    // ---- ATOMIC_AGGREGATE (RFC 4271 5.1.6; RFC 7606 7.6) ----
    row("RFC 7606 7.6", "ATOMIC_AGGREGATE", Length, Ibgp, "ATOMIC_AGGREGATE of 1 octet",
        Add(&[0x40, 6, 1, 0]), AttributeDiscard),
    row("RFC 7606 3(c)", "ATOMIC_AGGREGATE", Flags, Ibgp, "ATOMIC_AGGREGATE flagged optional",
        Add(&[0xc0, 6, 0]), TreatAsWithdraw),
    row("RFC 7606 3(g)", "ATOMIC_AGGREGATE", Duplicate, Ibgp, "ATOMIC_AGGREGATE twice",
        Add(&[0x40, 6, 0, 0x40, 6, 0]), AttributeDiscard),
    row("RFC 4271 5.1.6", "ATOMIC_AGGREGATE", Value, Ibgp, "ATOMIC_AGGREGATE (valid)",
        Add(&[0x40, 6, 0]), Accept),

    // ---- AGGREGATOR (RFC 4271 5.1.7; RFC 6793 4; RFC 7606 7.7; RFC 7607) ----
    row("RFC 7606 7.7", "AGGREGATOR", Length, Ibgp, "AGGREGATOR of 7 octets on a 4-octet session",
        Add(&[0xc0, 7, 7, 0, 0, 0xfd, 0xe9, 192, 0, 2]), AttributeDiscard),
    row("RFC 7606 7.7", "AGGREGATOR", Length, Ibgp, "AGGREGATOR of 6 octets on a 4-octet session",
        Add(&[0xc0, 7, 6, 0xfd, 0xe9, 192, 0, 2, 9]), AttributeDiscard),
    row("RFC 7606 7.7", "AGGREGATOR", Length, Old, "AGGREGATOR of 8 octets on a 2-octet session",
        Add(&[0xc0, 7, 8, 0, 0, 0xfd, 0xe9, 192, 0, 2, 9]), AttributeDiscard),
    row("RFC 7607 2", "AGGREGATOR", Value, Ibgp, "AGGREGATOR with AS 0",
        Add(&[0xc0, 7, 8, 0, 0, 0, 0, 192, 0, 2, 9]), AttributeDiscard),
    row("RFC 7606 3(c)", "AGGREGATOR", Flags, Ibgp, "AGGREGATOR flagged well-known",
        Add(&[0x40, 7, 8, 0, 0, 0xfd, 0xe9, 192, 0, 2, 9]), TreatAsWithdraw),
    row("RFC 7606 3(g)", "AGGREGATOR", Duplicate, Ibgp, "AGGREGATOR twice",
        Add(&[0xc0, 7, 8, 0, 0, 0xfd, 0xe9, 192, 0, 2, 9, 0xc0, 7, 8, 0, 0, 0xfd, 0xea, 192, 0, 2, 9]), AttributeDiscard),
    row("RFC 6793 4.2.3", "AGGREGATOR", Value, Old, "AGGREGATOR of 6 octets on a 2-octet session (valid)",
        Add(&[0xc0, 7, 6, 0xfd, 0xe9, 192, 0, 2, 9]), Accept),

    // ---- COMMUNITIES (RFC 1997; RFC 7606 7.8) ----
    row("RFC 7606 7.8", "COMMUNITIES", Length, Ibgp, "COMMUNITIES of 3 octets",
        Add(&[0xc0, 8, 3, 0xfd, 0xe8, 1]), TreatAsWithdraw),
    row("RFC 7606 7.8", "COMMUNITIES", Length, Ibgp, "COMMUNITIES of 0 octets",
        Add(&[0xc0, 8, 0]), TreatAsWithdraw),
    row("RFC 7606 3(c)", "COMMUNITIES", Flags, Ibgp, "COMMUNITIES flagged non-transitive",
        Add(&[0x80, 8, 4, 0xfd, 0xe8, 0, 1]), TreatAsWithdraw),
    row("RFC 7606 3(g)", "COMMUNITIES", Duplicate, Ibgp, "COMMUNITIES twice",
        Add(&[0xc0, 8, 4, 0xfd, 0xe8, 0, 1, 0xc0, 8, 4, 0xfd, 0xe8, 0, 2]), AttributeDiscard),
    row("RFC 1997", "COMMUNITIES", Value, Ibgp, "COMMUNITIES of 8 octets (valid)",
        Add(&[0xc0, 8, 8, 0xfd, 0xe8, 0, 1, 0xfd, 0xe8, 0, 2]), Accept),

    // ---- ORIGINATOR_ID (RFC 4456 8; RFC 7606 7.9) ----
    row("RFC 7606 7.9", "ORIGINATOR_ID", Length, Ibgp, "ORIGINATOR_ID of 2 octets",
        Add(&[0x80, 9, 2, 1, 2]), TreatAsWithdraw),
    row("RFC 7606 7.9", "ORIGINATOR_ID", Length, Ibgp, "ORIGINATOR_ID of 5 octets",
        Add(&[0x80, 9, 5, 192, 0, 2, 9, 0]), TreatAsWithdraw),
    row("RFC 7606 3(c)", "ORIGINATOR_ID", Flags, Ibgp, "ORIGINATOR_ID flagged transitive",
        Add(&[0xc0, 9, 4, 192, 0, 2, 9]), TreatAsWithdraw),
    row("RFC 7606 3(g)", "ORIGINATOR_ID", Duplicate, Ibgp, "ORIGINATOR_ID twice",
        Add(&[0x80, 9, 4, 192, 0, 2, 9, 0x80, 9, 4, 192, 0, 2, 10]), AttributeDiscard),
    row("RFC 7606 7.9", "ORIGINATOR_ID", NotAllowed, Ebgp, "ORIGINATOR_ID from an external peer",
        Add(&[0x80, 9, 4, 192, 0, 2, 9]), AttributeDiscard),

    // ---- CLUSTER_LIST (RFC 4456 8; RFC 7606 7.10) ----
    row("RFC 7606 7.10", "CLUSTER_LIST", Length, Ibgp, "CLUSTER_LIST of 6 octets",
        Add(&[0x80, 10, 6, 192, 0, 2, 9, 0, 0]), TreatAsWithdraw),
    row("RFC 7606 7.10", "CLUSTER_LIST", Length, Ibgp, "CLUSTER_LIST of 0 octets",
        Add(&[0x80, 10, 0]), TreatAsWithdraw),
    row("RFC 7606 3(c)", "CLUSTER_LIST", Flags, Ibgp, "CLUSTER_LIST flagged well-known",
        Add(&[0x40, 10, 4, 192, 0, 2, 9]), TreatAsWithdraw),
    row("RFC 7606 3(g)", "CLUSTER_LIST", Duplicate, Ibgp, "CLUSTER_LIST twice",
        Add(&[0x80, 10, 4, 192, 0, 2, 9, 0x80, 10, 4, 192, 0, 2, 10]), AttributeDiscard),
    row("RFC 7606 7.10", "CLUSTER_LIST", NotAllowed, Ebgp, "CLUSTER_LIST from an external peer",
        Add(&[0x80, 10, 4, 192, 0, 2, 9]), AttributeDiscard),

    // ---- MP_REACH_NLRI (RFC 4760 3, 7; RFC 8950; RFC 7606 7.11, 5.3, 3(g)) ----
    row("RFC 4760 3", "MP_REACH_NLRI", Value, Ibgp, "MP_REACH_NLRI IPv4 unicast (valid)",
        MpOnly(MP_REACH_P1), Accept),
    row("RFC 7606 7.11", "MP_REACH_NLRI", Length, Ibgp, "next-hop length 7",
        MpOnly(&[0x80, 14, 17, 0, 1, 1, 7, 192, 0, 2, 7, 0, 0, 0, 0, 32, 10, 77, 60, 1]), Reset(9)),
    row("RFC 7606 7.11", "MP_REACH_NLRI", Length, Ibgp, "3 octets: no next-hop length",
        MpOnly(&[0x80, 14, 3, 0, 1, 1]), Reset(9)),
    row("RFC 7606 7.11", "MP_REACH_NLRI", Length, Ibgp, "next hop of 16 octets in a 6-octet attribute",
        MpOnly(&[0x80, 14, 6, 0, 1, 1, 16, 192, 0]), Reset(9)),
    row("RFC 7606 5.3", "MP_REACH_NLRI", Value, Ibgp, "prefix length 33 in its NLRI",
        MpOnly(&[0x80, 14, 15, 0, 1, 1, 4, 192, 0, 2, 7, 0, 33, 10, 77, 60, 1, 0]), Reset(9)),
    row("RFC 4271 6.3", "MP_REACH_NLRI", Value, Ibgp, "next hop 0.0.0.0",
        MpOnly(&[0x80, 14, 14, 0, 1, 1, 4, 0, 0, 0, 0, 0, 32, 10, 77, 60, 1]), TreatAsWithdraw),
    row("RFC 4271 6.3", "MP_REACH_NLRI", Value, Ibgp, "IPv6 next hop ff02::1 (multicast) for IPv4 (RFC 8950)",
        MpOnly(&[0x80, 14, 26, 0, 1, 1, 16, 0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
                 0, 32, 10, 77, 60, 1]), TreatAsWithdraw),
    row("RFC 7606 3(c)", "MP_REACH_NLRI", Flags, Ibgp, "MP_REACH_NLRI flagged transitive",
        MpOnly(&[0xc0, 14, 14, 0, 1, 1, 4, 192, 0, 2, 7, 0, 32, 10, 77, 60, 1]), TreatAsWithdraw),
    row("RFC 7606 3(g)", "MP_REACH_NLRI", Duplicate, Ibgp, "two MP_REACH_NLRI",
        MpOnly(&[0x80, 14, 14, 0, 1, 1, 4, 192, 0, 2, 7, 0, 32, 10, 77, 60, 1,
                 0x80, 14, 14, 0, 1, 1, 4, 192, 0, 2, 7, 0, 32, 10, 77, 60, 3]), Reset(1)),
    row("RFC 4271 6.3", "MP_REACH_NLRI", Value, Ibgp, "239.1.0.0/16 (multicast) after P1 in its NLRI",
        MpOnly(&[0x80, 14, 17, 0, 1, 1, 4, 192, 0, 2, 7, 0, 32, 10, 77, 60, 1, 16, 239, 1]),
        PrefixIgnore("239.1.0.0/16")),
    row("RFC 4760 7", "MP_REACH_NLRI", Value, Ibgp, "AFI/SAFI 1/128 we do not speak: ignored",
        Add(&[0x80, 14, 14, 0, 1, 128, 4, 192, 0, 2, 7, 0, 32, 10, 77, 60, 9]), Accept),

    // ---- MP_UNREACH_NLRI (RFC 4760 4, 7; RFC 7606 7.12, 5.3, 3(g)) ----
    row("RFC 7606 7.12", "MP_UNREACH_NLRI", Length, Ibgp, "2 octets: no SAFI",
        Only(&[0x80, 15, 2, 0, 1]), Reset(9)),
    row("RFC 7606 5.3", "MP_UNREACH_NLRI", Value, Ibgp, "withdrawn /32 with 2 octets left",
        Only(&[0x80, 15, 6, 0, 1, 1, 32, 10, 77]), Reset(9)),
    row("RFC 7606 3(c)", "MP_UNREACH_NLRI", Flags, Ibgp, "MP_UNREACH_NLRI flagged transitive (still withdraws)",
        Only(&[0xc0, 15, 8, 0, 1, 1, 32, 10, 77, 60, 1]), TreatAsWithdraw),
    row("RFC 7606 3(g)", "MP_UNREACH_NLRI", Duplicate, Ibgp, "two MP_UNREACH_NLRI",
        Only(&[0x80, 15, 8, 0, 1, 1, 32, 10, 77, 60, 1, 0x80, 15, 8, 0, 1, 1, 32, 10, 77, 60, 3]), Reset(1)),

    // ---- EXTENDED_COMMUNITIES (RFC 4360; RFC 7606 7.14) ----
    row("RFC 7606 7.14", "EXTENDED_COMMUNITIES", Length, Ibgp, "EXTENDED_COMMUNITIES of 7 octets",
        Add(&[0xc0, 16, 7, 0, 2, 0xfd, 0xe8, 0, 0, 0]), TreatAsWithdraw),
    row("RFC 7606 7.14", "EXTENDED_COMMUNITIES", Length, Ibgp, "EXTENDED_COMMUNITIES of 0 octets",
        Add(&[0xc0, 16, 0]), TreatAsWithdraw),
    row("RFC 7606 3(c)", "EXTENDED_COMMUNITIES", Flags, Ibgp, "EXTENDED_COMMUNITIES flagged non-transitive",
        Add(&[0x80, 16, 8, 0, 2, 0xfd, 0xe8, 0, 0, 0, 1]), TreatAsWithdraw),
    row("RFC 7606 3(g)", "EXTENDED_COMMUNITIES", Duplicate, Ibgp, "EXTENDED_COMMUNITIES twice",
        Add(&[0xc0, 16, 8, 0, 2, 0xfd, 0xe8, 0, 0, 0, 1, 0xc0, 16, 8, 0, 2, 0xfd, 0xe8, 0, 0, 0, 2]), AttributeDiscard),
    row("RFC 4360 2", "EXTENDED_COMMUNITIES", Value, Ibgp, "EXTENDED_COMMUNITIES of 8 octets (valid)",
        Add(&[0xc0, 16, 8, 0, 2, 0xfd, 0xe8, 0, 0, 0, 1]), Accept),

    // ---- AS4_PATH (RFC 6793 3, 4.2.3, 6; RFC 7607) ----
    row("RFC 6793 6", "AS4_PATH", NotAllowed, Ibgp, "AS4_PATH between 4-octet speakers",
        Add(&[0xc0, 17, 6, 2, 1, 0, 0, 0xfd, 0xe9]), AttributeDiscard),
    row("RFC 6793 6", "AS4_PATH", Length, Old, "AS4_PATH of 5 octets",
        Add(&[0xc0, 17, 5, 2, 1, 0, 0, 0xfd]), AttributeDiscard),
    row("RFC 6793 6", "AS4_PATH", Length, Old, "AS4_PATH of 4 octets (no ASN fits)",
        Add(&[0xc0, 17, 4, 2, 1, 0xfd, 0xe9]), AttributeDiscard),
    row("RFC 6793 6", "AS4_PATH", Length, Old, "AS4_PATH segment length 0",
        Add(&[0xc0, 17, 6, 2, 0, 0, 0, 0xfd, 0xe9]), AttributeDiscard),
    row("RFC 6793 6", "AS4_PATH", Length, Old, "AS4_PATH segment of 2 ASNs with 1 present",
        Add(&[0xc0, 17, 6, 2, 2, 0, 0, 0xfd, 0xe9]), AttributeDiscard),
    row("RFC 6793 6", "AS4_PATH", Value, Old, "AS4_PATH segment type 7",
        Add(&[0xc0, 17, 6, 7, 1, 0, 0, 0xfd, 0xe9]), AttributeDiscard),
    row("RFC 7607 2", "AS4_PATH", Value, Old, "AS4_PATH with AS 0",
        Add(&[0xc0, 17, 6, 2, 1, 0, 0, 0, 0]), AttributeDiscard),
    row("RFC 7606 3(c)", "AS4_PATH", Flags, Old, "AS4_PATH flagged non-transitive",
        Add(&[0x80, 17, 6, 2, 1, 0, 0, 0xfd, 0xe9]), TreatAsWithdraw),
    row("RFC 7606 3(g)", "AS4_PATH", Duplicate, Old, "AS4_PATH twice",
        Add(&[0xc0, 17, 6, 2, 1, 0, 1, 0, 0, 0xc0, 17, 6, 2, 1, 0, 1, 0, 1]), AttributeDiscard),
    row("RFC 6793 4.2.3", "AS4_PATH", Value, Old, "AS_PATH AS_TRANS, then AS4_PATH 65536, from a 2-octet speaker (valid)",
        Set(AS_PATH, &[0x40, 2, 4, 2, 1, 0x5b, 0xa0, 0xc0, 17, 6, 2, 1, 0, 1, 0, 0]), Accept),
    row("RFC 6793 4.2.3", "AS4_PATH", Value, Old, "AS4_PATH of 1 ASN, AS_PATH of none: AS4_PATH ignored",
        Add(&[0xc0, 17, 6, 2, 1, 0, 1, 0, 0]), AttributeDiscard),

    // ---- AS4_AGGREGATOR (RFC 6793 3, 4.2.3, 6; RFC 7607) ----
    row("RFC 6793 6", "AS4_AGGREGATOR", NotAllowed, Ibgp, "AS4_AGGREGATOR between 4-octet speakers",
        Add(&[0xc0, 18, 8, 0, 1, 0, 0, 192, 0, 2, 9]), AttributeDiscard),
    row("RFC 6793 6", "AS4_AGGREGATOR", Length, Old, "AS4_AGGREGATOR of 6 octets",
        Add(&[0xc0, 18, 6, 0xfd, 0xe9, 192, 0, 2, 9]), AttributeDiscard),
    row("RFC 7607 2", "AS4_AGGREGATOR", Value, Old, "AS4_AGGREGATOR with AS 0",
        Add(&[0xc0, 18, 8, 0, 0, 0, 0, 192, 0, 2, 9]), AttributeDiscard),
    row("RFC 7606 3(c)", "AS4_AGGREGATOR", Flags, Old, "AS4_AGGREGATOR flagged non-transitive",
        Add(&[0x80, 18, 8, 0, 1, 0, 0, 192, 0, 2, 9]), TreatAsWithdraw),
    row("RFC 6793 4.2.3", "AS4_AGGREGATOR", Value, Old, "AS4_AGGREGATOR with AGGREGATOR AS_TRANS (valid)",
        Add(&[0xc0, 7, 6, 0x5b, 0xa0, 192, 0, 2, 9, 0xc0, 18, 8, 0, 1, 0, 0, 192, 0, 2, 9]), Accept),
    row("RFC 6793 4.2.3", "AS4_AGGREGATOR", Value, Old, "AS4_AGGREGATOR beside AGGREGATOR 65001 (not AS_TRANS): ignored",
        Add(&[0xc0, 7, 6, 0xfd, 0xe9, 192, 0, 2, 9, 0xc0, 18, 8, 0, 1, 0, 0, 192, 0, 2, 9]), AttributeDiscard),
    row("RFC 6793 4.2.3", "AS4_AGGREGATOR", Value, Old, "AS4_AGGREGATOR without AGGREGATOR: ignored",
        Add(&[0xc0, 18, 8, 0, 1, 0, 0, 192, 0, 2, 9]), AttributeDiscard),

    // ---- IPv6 Address Specific Extended Community (RFC 5701; RFC 7606 7.15) ----
    row("RFC 7606 7.15", "IPV6_EXTENDED_COMMUNITIES", Length, Ibgp, "of 19 octets",
        Add(&[0xc0, 25, 19, 0, 2, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1]), TreatAsWithdraw),
    row("RFC 7606 3(c)", "IPV6_EXTENDED_COMMUNITIES", Flags, Ibgp, "flagged non-transitive",
        Add(&[0x80, 25, 20, 0, 2, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1]), TreatAsWithdraw),
    row("RFC 5701 2", "IPV6_EXTENDED_COMMUNITIES", Value, Ibgp, "of 20 octets (valid)",
        Add(&[0xc0, 25, 20, 0, 2, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1]), Accept),

    // ---- LARGE_COMMUNITY (RFC 8092 3, 6) ----
    row("RFC 8092 6", "LARGE_COMMUNITY", Length, Ibgp, "LARGE_COMMUNITY of 11 octets",
        Add(&[0xc0, 32, 11, 0, 0, 0xfd, 0xe8, 0, 0, 0, 1, 0, 0, 0]), TreatAsWithdraw),
    row("RFC 8092 6", "LARGE_COMMUNITY", Length, Ibgp, "LARGE_COMMUNITY of 0 octets",
        Add(&[0xc0, 32, 0]), TreatAsWithdraw),
    row("RFC 7606 3(c)", "LARGE_COMMUNITY", Flags, Ibgp, "LARGE_COMMUNITY flagged non-transitive",
        Add(&[0x80, 32, 12, 0, 0, 0xfd, 0xe8, 0, 0, 0, 1, 0, 0, 0, 2]), TreatAsWithdraw),
    row("RFC 7606 3(g)", "LARGE_COMMUNITY", Duplicate, Ibgp, "LARGE_COMMUNITY twice",
        Add(&[0xc0, 32, 12, 0, 0, 0xfd, 0xe8, 0, 0, 0, 1, 0, 0, 0, 2,
              0xc0, 32, 12, 0, 0, 0xfd, 0xe8, 0, 0, 0, 1, 0, 0, 0, 3]), AttributeDiscard),
    row("RFC 8092 3", "LARGE_COMMUNITY", Value, Ibgp, "LARGE_COMMUNITY of 24 octets (valid)",
        Add(&[0xc0, 32, 24, 0, 0, 0xfd, 0xe8, 0, 0, 0, 1, 0, 0, 0, 2,
              0, 0, 0xfd, 0xe8, 0, 0, 0, 1, 0, 0, 0, 3]), Accept),
];

// ---------------------------------------------------------------------------
// The harness: a speaker with one neighbor, and its connection without sockets.

const LOCAL: &str = "192.0.2.1";
const REMOTE: &str = "192.0.2.2";
const P1: [u8; 5] = [32, 10, 77, 60, 1];
const P2: [u8; 5] = [32, 10, 77, 60, 2];

fn p(s: &str) -> Prefix {
    Prefix::V4(s.parse().unwrap())
}

fn frame(typ: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0xffu8; 16];
    m.extend_from_slice(&((HEADER_LEN + body.len()) as u16).to_be_bytes());
    m.push(typ);
    m.extend_from_slice(body);
    m
}

fn update_body(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut b = (withdrawn.len() as u16).to_be_bytes().to_vec();
    b.extend_from_slice(withdrawn);
    b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    b.extend_from_slice(attrs);
    b.extend_from_slice(nlri);
    b
}

/// The valid attributes of a session, as (type code, raw attribute).
fn valid_attrs(peer: Peer) -> Vec<(u8, Vec<u8>)> {
    let mut v = vec![(ORIGIN, vec![0x40, 1, 1, 0])];
    match peer {
        // eBGP from AS 65001: the path starts with it (4-octet ASNs).
        Ebgp => v.push((AS_PATH, vec![0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xe9])),
        Ibgp | Old => v.push((AS_PATH, vec![0x40, 2, 0])),
    }
    v.push((NEXT_HOP, vec![0x40, 3, 4, 192, 0, 2, 7]));
    if peer != Ebgp {
        v.push((LOCAL_PREF, vec![0x40, 5, 4, 0, 0, 0, 100]));
    }
    v
}

fn join(attrs: &[(u8, Vec<u8>)]) -> Vec<u8> {
    attrs.iter().flat_map(|(_, a)| a.iter().copied()).collect()
}

/// The UPDATE body a row sends.
fn build(peer: Peer, msg: Msg) -> Vec<u8> {
    let mut attrs = valid_attrs(peer);
    match msg {
        Set(c, bytes) => {
            match attrs.iter_mut().find(|(code, _)| *code == c) {
                Some(a) => a.1 = bytes.to_vec(),
                None => attrs.push((c, bytes.to_vec())),
            }
            update_body(&[], &join(&attrs), &P1)
        }
        Add(bytes) => update_body(&[], &[join(&attrs), bytes.to_vec()].concat(), &P1),
        Drop(c) => {
            attrs.retain(|(code, _)| *code != c);
            update_body(&[], &join(&attrs), &P1)
        }
        Nlri(nlri) => update_body(&[], &join(&attrs), nlri),
        MpOnly(bytes) => {
            attrs.retain(|(code, _)| *code != NEXT_HOP);
            update_body(&[], &[join(&attrs), bytes.to_vec()].concat(), &[])
        }
        Only(bytes) => update_body(&[], bytes, &[]),
        Body(body) => body.to_vec(),
    }
}

/// An OPEN from the peer: IPv4 and IPv6 unicast, 4-octet AS unless `Old`.
fn open_from(peer: Peer) -> Vec<u8> {
    let asn: u32 = if peer == Ebgp { 65001 } else { 65000 };
    let mut caps = vec![1, 4, 0, 1, 0, 1, 1, 4, 0, 2, 0, 1];
    if peer != Old {
        caps.extend_from_slice(&[65, 4]);
        caps.extend_from_slice(&asn.to_be_bytes());
    }
    let mut params = vec![2, caps.len() as u8];
    params.extend_from_slice(&caps);
    let mut body = vec![4];
    body.extend_from_slice(&(asn as u16).to_be_bytes());
    body.extend_from_slice(&90u16.to_be_bytes());
    body.extend_from_slice(&[192, 0, 2, 2, params.len() as u8]);
    body.extend_from_slice(&params);
    frame(1, &body)
}

/// What happened to one UPDATE.
#[derive(Debug, Default)]
struct Outcome {
    /// The NOTIFICATION sent (the session was reset).
    notification: Option<Notification>,
    /// The errors found (handled or resetting).
    errors: Vec<UpdateError>,
}

struct Harness {
    peer_kind: Peer,
    speaker: Speaker,
    peer: PeerId,
    conn: Connection,
}

impl Harness {
    /// A speaker (AS 65000) with one passive neighbor, session established.
    fn new(peer_kind: Peer) -> Harness {
        let mut speaker = Speaker::new(SpeakerConfig {
            local_as: 65000,
            router_id: LOCAL.parse().unwrap(),
            cluster_id: None,
            hold_time: 90,
            connect_retry: Duration::from_secs(30),
            graceful_restart: None,
            restarting: false,
            forwarding_preserved: false,
            decision: DecisionConfig::default(),
        });
        let peer = speaker.add_neighbor(NeighborConfig {
            remote: SocketAddr::new(REMOTE.parse().unwrap(), 179),
            local: Some(LOCAL.parse().unwrap()),
            peer_as: match peer_kind {
                Ebgp => PeerAs::Is(65001),
                Ibgp | Old => PeerAs::Internal,
            },
            passive: true,
            rr_client: false,
            next_hop_self: false,
            import: None,
            export: None,
            description: None,
            interface: None,
            add_path: Default::default(),
            security: Default::default(),
            keep_received: true,
        });
        let mut h = Harness {
            peer_kind,
            speaker,
            peer,
            conn: Connection::new(fsm_config(peer_kind), LOCAL.parse().unwrap()),
        };
        h.connect();
        h
    }

    /// A new connection through OPEN and KEEPALIVE to Established.
    fn connect(&mut self) {
        self.conn = Connection::new(fsm_config(self.peer_kind), LOCAL.parse().unwrap());
        let mut actions = self.conn.fsm.handle(Event::Connected);
        actions.extend(self.conn.receive(&open_from(self.peer_kind)).0);
        actions.extend(self.conn.receive(&packet::keepalive()).0);
        let mut out = Outcome::default();
        self.perform(actions, &mut out);
        assert_eq!(self.conn.fsm.state, State::Established, "{out:?}");
        assert_eq!(self.summary().state, "Established");
    }

    /// Performs FSM actions as the session loop does.
    fn perform(&mut self, actions: Vec<Action>, out: &mut Outcome) {
        for a in actions {
            match a {
                Action::SendNotification(n) => {
                    self.conn.notified = true;
                    out.notification = Some(n);
                }
                Action::Established(n) => {
                    self.conn.established(&n);
                    self.speaker.handle(PeerEvent::Established {
                        peer: self.peer,
                        negotiated: n,
                        local_addr: LOCAL.parse::<IpAddr>().unwrap(),
                    });
                }
                Action::Close(reason) => {
                    self.speaker.handle(PeerEvent::Down {
                        peer: self.peer,
                        reason,
                        was_established: true,
                        tcp_failure: !self.conn.notified,
                    });
                }
                Action::SendOpen
                | Action::SendKeepalive
                | Action::ArmHold(_)
                | Action::ArmKeepalive(_) => {}
            }
        }
    }

    /// Sends one UPDATE (body) and applies what it leads to.
    fn send(&mut self, body: &[u8]) -> Outcome {
        let mut out = Outcome::default();
        let (actions, inbound) = self.conn.receive(&frame(2, body));
        match inbound {
            Some(Inbound::Update(update)) => {
                out.errors = update.errors.clone();
                self.speaker.handle(PeerEvent::Update {
                    peer: self.peer,
                    update,
                });
            }
            Some(Inbound::UpdateReset(error)) => {
                out.errors = vec![error.clone()];
                self.speaker.handle(PeerEvent::UpdateReset {
                    peer: self.peer,
                    error,
                });
            }
            Some(Inbound::RouteRefresh(_)) | None => {}
        }
        self.perform(actions, &mut out);
        out
    }

    fn announce(&mut self, nlri: &[u8]) -> Outcome {
        let body = update_body(&[], &join(&valid_attrs(self.peer_kind)), nlri);
        self.send(&body)
    }

    fn installed(&self, prefix: &str) -> bool {
        self.speaker
            .rib()
            .best(&p(prefix))
            .is_some_and(|path| path.source.peer == self.peer)
    }

    fn summary(&self) -> NeighborSummary {
        self.speaker.summary().remove(0)
    }
}

fn fsm_config(peer: Peer) -> FsmConfig {
    FsmConfig {
        local_as: 65000,
        router_id: LOCAL.parse().unwrap(),
        peer_as: match peer {
            Ebgp => PeerAs::Is(65001),
            Ibgp | Old => PeerAs::Internal,
        },
        hold_time: 90,
        caps: Capabilities {
            ipv4_unicast: true,
            ipv6_unicast: true,
            four_octet_as: Some(65000),
            route_refresh: true,
            extended_next_hop_v4: true,
            graceful_restart: None,
            add_path_v4: Default::default(),
            extended_message: false,
        },
    }
}

/// Runs one row (see the module doc); panics with the row on failure.
fn run(r: &Row) {
    let ctx = format!(
        "[{} | {} {} | {:?} | {}]",
        r.rfc,
        r.subject,
        r.kind.name(),
        r.peer,
        r.what
    );
    let mut h = Harness::new(r.peer);
    let out = h.announce(&P1);
    assert!(
        out.errors.is_empty(),
        "{ctx}: baseline UPDATE: {:?}",
        out.errors
    );
    assert!(
        h.installed("10.77.60.1/32"),
        "{ctx}: baseline route not installed"
    );

    let out = h.send(&build(r.peer, r.msg));
    let s = h.summary();
    let cause = |action: &str| format!("{action}: {} {}", r.subject, r.kind.name());
    let rule_named = |errors: &[UpdateError]| errors.iter().any(|e| e.rule.contains(r.rfc));
    match r.expect {
        TreatAsWithdraw => {
            assert_eq!(out.notification, None, "{ctx}");
            assert_eq!(s.state, "Established", "{ctx}");
            assert!(
                !h.installed("10.77.60.1/32"),
                "{ctx}: P1 survived: {:?}",
                out.errors
            );
            assert_eq!(s.treat_as_withdraw, 1, "{ctx}: {s:?}");
            assert!(
                s.update_errors.contains_key(&cause("treat-as-withdraw")),
                "{ctx}: {:?}",
                s.update_errors
            );
            assert!(
                rule_named(&out.errors),
                "{ctx}: rule not named by {:?}",
                out.errors
            );
        }
        AttributeDiscard => {
            assert_eq!(out.notification, None, "{ctx}");
            assert_eq!(s.state, "Established", "{ctx}");
            assert!(
                h.installed("10.77.60.1/32"),
                "{ctx}: P1 not installed: {:?}",
                out.errors
            );
            assert_eq!(s.treat_as_withdraw, 0, "{ctx}: {:?}", out.errors);
            assert!(s.attribute_discard >= 1, "{ctx}: {s:?}");
            assert!(
                s.update_errors.contains_key(&cause("attribute-discard")),
                "{ctx}: {:?}",
                s.update_errors
            );
            assert!(
                rule_named(&out.errors),
                "{ctx}: rule not named by {:?}",
                out.errors
            );
        }
        Reset(subcode) => {
            let n = out
                .notification
                .clone()
                .unwrap_or_else(|| panic!("{ctx}: no NOTIFICATION: {:?}", out.errors));
            assert_eq!((n.code, n.subcode), (3, subcode), "{ctx}: {}", n.describe());
            assert_eq!(h.conn.fsm.state, State::Idle, "{ctx}");
            assert_ne!(s.state, "Established", "{ctx}");
            assert!(
                !h.installed("10.77.60.1/32"),
                "{ctx}: the old route survived the reset"
            );
            assert!(
                s.update_errors.contains_key(&cause("session-reset")),
                "{ctx}: {:?}",
                s.update_errors
            );
            assert!(
                rule_named(&out.errors),
                "{ctx}: rule not named by {:?}",
                out.errors
            );
            h.connect();
        }
        PrefixIgnore(ignored) => {
            assert_eq!(out.notification, None, "{ctx}");
            assert_eq!(s.state, "Established", "{ctx}");
            assert!(
                h.installed("10.77.60.1/32"),
                "{ctx}: P1 not installed: {:?}",
                out.errors
            );
            assert!(!h.installed(ignored), "{ctx}: {ignored} installed");
            assert_eq!(s.treat_as_withdraw, 0, "{ctx}: {:?}", out.errors);
            assert_eq!(s.prefixes_ignored, 1, "{ctx}: {s:?}");
            assert!(
                s.update_errors.contains_key(&cause("prefix-ignore")),
                "{ctx}: {:?}",
                s.update_errors
            );
            assert!(
                rule_named(&out.errors),
                "{ctx}: rule not named by {:?}",
                out.errors
            );
        }
        Accept => {
            assert!(out.errors.is_empty(), "{ctx}: {:?}", out.errors);
            assert_eq!(s.state, "Established", "{ctx}");
            assert!(h.installed("10.77.60.1/32"), "{ctx}: P1 not installed");
            assert!(s.update_errors.is_empty(), "{ctx}: {:?}", s.update_errors);
        }
    }
    // The next valid UPDATE is installed: no error outlives its message.
    let out = h.announce(&P2);
    assert!(
        out.errors.is_empty(),
        "{ctx}: following UPDATE: {:?}",
        out.errors
    );
    assert!(
        h.installed("10.77.60.2/32"),
        "{ctx}: following valid route not installed"
    );
}

#[tokio::test]
async fn rfc7606_conformance_table() {
    for r in TABLE {
        run(r);
    }
    // Every recognized attribute has rows for its length and flags errors.
    for name in [
        "ORIGIN",
        "AS_PATH",
        "NEXT_HOP",
        "MULTI_EXIT_DISC",
        "LOCAL_PREF",
        "ATOMIC_AGGREGATE",
        "AGGREGATOR",
        "COMMUNITIES",
        "ORIGINATOR_ID",
        "CLUSTER_LIST",
        "MP_REACH_NLRI",
        "MP_UNREACH_NLRI",
        "EXTENDED_COMMUNITIES",
        "AS4_PATH",
        "AS4_AGGREGATOR",
        "IPV6_EXTENDED_COMMUNITIES",
        "LARGE_COMMUNITY",
    ] {
        for kind in [Length, Flags] {
            assert!(
                TABLE.iter().any(|r| r.subject == name && r.kind == kind),
                "no {} row for {name}",
                kind.name()
            );
        }
    }
    println!("{} conformance rows passed", TABLE.len());
}

// ---------------------------------------------------------------------------
// One regression test per violation listed in issue 15.

fn bad_next_hop_len5(peer: Peer) -> Vec<u8> {
    build(peer, Set(NEXT_HOP, &[0x40, 3, 5, 192, 0, 2, 7, 0]))
}

#[tokio::test]
async fn issue15_valid_update_after_next_hop_of_length_5_is_installed() {
    let mut h = Harness::new(Ibgp);
    let out = h.send(&bad_next_hop_len5(Ibgp));
    assert_eq!(out.errors[0].cause(), "treat-as-withdraw: NEXT_HOP length");
    let out = h.announce(&P2);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert!(h.installed("10.77.60.2/32"));
    assert_eq!(h.summary().treat_as_withdraw, 1);
}

#[tokio::test]
async fn issue15_valid_update_after_atomic_aggregate_of_length_1_is_installed() {
    let mut h = Harness::new(Ibgp);
    let out = h.send(&build(Ibgp, Add(&[0x40, 6, 1, 0])));
    assert_eq!(
        out.errors[0].cause(),
        "attribute-discard: ATOMIC_AGGREGATE length"
    );
    let out = h.announce(&P2);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert!(h.installed("10.77.60.1/32") && h.installed("10.77.60.2/32"));
    let s = h.summary();
    assert_eq!((s.treat_as_withdraw, s.attribute_discard), (0, 1));
}

#[tokio::test]
async fn issue15_attribute_overrunning_the_field_is_treat_as_withdraw() {
    let mut h = Harness::new(Ibgp);
    h.announce(&P1);
    // LOCAL_PREF claims 9 octets, 4 remain before the NLRI.
    let body = update_body(
        &[],
        &[
            0x40, 1, 1, 0, 0x40, 2, 0, 0x40, 3, 4, 192, 0, 2, 7, 0x40, 5, 9, 0, 0, 0, 100,
        ],
        &P1,
    );
    let out = h.send(&body);
    assert_eq!(out.notification, None, "no reset");
    assert_eq!(out.errors[0].rule, "RFC 7606 4");
    assert!(!h.installed("10.77.60.1/32"));
    assert_eq!(h.summary().state, "Established");
}

#[tokio::test]
async fn issue15_trailing_octets_in_the_attribute_field_are_treat_as_withdraw() {
    let mut h = Harness::new(Ibgp);
    h.announce(&P1);
    let out = h.send(&build(Ibgp, Add(&[0x40, 1])));
    assert_eq!(out.notification, None, "no reset");
    assert_eq!(
        out.errors[0].cause(),
        "treat-as-withdraw: path attributes framing"
    );
    assert!(!h.installed("10.77.60.1/32"));
    assert_eq!(h.summary().state, "Established");
}

#[tokio::test]
async fn issue15_as4_path_error_is_attribute_discard() {
    let mut h = Harness::new(Old);
    let out = h.send(&build(Old, Add(&[0xc0, 17, 5, 2, 1, 0, 0, 0xfd])));
    assert_eq!(out.errors[0].cause(), "attribute-discard: AS4_PATH length");
    assert!(h.installed("10.77.60.1/32"));
    assert_eq!(h.summary().treat_as_withdraw, 0);
}

#[tokio::test]
async fn issue15_aggregator_error_is_attribute_discard() {
    let mut h = Harness::new(Ibgp);
    let out = h.send(&build(
        Ibgp,
        Add(&[0xc0, 7, 7, 0, 0, 0xfd, 0xe9, 192, 0, 2]),
    ));
    assert_eq!(
        out.errors[0].cause(),
        "attribute-discard: AGGREGATOR length"
    );
    let best = h.speaker.rib().best(&p("10.77.60.1/32")).unwrap();
    assert_eq!(best.attrs.aggregator, None, "the attribute is gone");
    assert_eq!(h.summary().treat_as_withdraw, 0);
}

#[tokio::test]
async fn issue15_atomic_aggregate_error_is_attribute_discard() {
    let mut h = Harness::new(Ibgp);
    let out = h.send(&build(Ibgp, Add(&[0x40, 6, 2, 0, 0])));
    assert_eq!(
        out.errors[0].cause(),
        "attribute-discard: ATOMIC_AGGREGATE length"
    );
    let best = h.speaker.rib().best(&p("10.77.60.1/32")).unwrap();
    assert!(!best.attrs.atomic_aggregate);
}

#[tokio::test]
async fn issue15_mp_reach_next_hop_length_7_resets_and_drops_the_old_route() {
    let mut h = Harness::new(Ibgp);
    h.send(&build(Ibgp, MpOnly(MP_REACH_P1)));
    assert!(h.installed("10.77.60.1/32"));
    let out = h.send(&build(
        Ibgp,
        MpOnly(&[
            0x80, 14, 17, 0, 1, 1, 7, 192, 0, 2, 7, 0, 0, 0, 0, 32, 10, 77, 60, 1,
        ]),
    ));
    let n = out.notification.expect("NOTIFICATION");
    assert_eq!((n.code, n.subcode), (3, 9), "Optional Attribute Error");
    assert_eq!(n.data[..3], [0x80, 14, 17], "the attribute in the data");
    assert!(
        !h.installed("10.77.60.1/32"),
        "the old route must not survive"
    );
    assert!(h
        .summary()
        .last_error
        .unwrap()
        .contains("next-hop length 7"));
}

#[tokio::test]
async fn issue15_two_mp_reach_attributes_reset_the_session() {
    let mut h = Harness::new(Ibgp);
    let two = [MP_REACH_P1, MP_REACH_P1].concat();
    let mut attrs = valid_attrs(Ibgp);
    attrs.retain(|(c, _)| *c != NEXT_HOP);
    let out = h.send(&update_body(&[], &[join(&attrs), two].concat(), &[]));
    let n = out.notification.expect("NOTIFICATION");
    assert_eq!((n.code, n.subcode), (3, 1), "Malformed Attribute List");
    assert_eq!(out.errors[0].rule, "RFC 7606 3(g)");
}

#[tokio::test]
async fn issue15_two_mp_unreach_attributes_reset_the_session() {
    let mut h = Harness::new(Ibgp);
    let out = h.send(&update_body(
        &[],
        &[MP_UNREACH_P1, MP_UNREACH_P1].concat(),
        &[],
    ));
    let n = out.notification.expect("NOTIFICATION");
    assert_eq!((n.code, n.subcode), (3, 1), "Malformed Attribute List");
}

#[tokio::test]
async fn issue15_next_hop_0_0_0_0_is_not_installed() {
    let mut h = Harness::new(Ibgp);
    h.announce(&P1);
    let out = h.send(&build(Ibgp, Set(NEXT_HOP, &[0x40, 3, 4, 0, 0, 0, 0])));
    assert_eq!(out.errors[0].cause(), "treat-as-withdraw: NEXT_HOP value");
    assert!(!h.installed("10.77.60.1/32"), "withdrawn, not installed");
}

#[tokio::test]
async fn issue15_multicast_next_hop_is_not_installed() {
    let mut h = Harness::new(Ibgp);
    h.announce(&P1);
    let out = h.send(&build(Ibgp, Set(NEXT_HOP, &[0x40, 3, 4, 239, 1, 2, 3])));
    assert!(
        out.errors[0].reason.contains("multicast"),
        "{:?}",
        out.errors
    );
    assert!(!h.installed("10.77.60.1/32"));
}

#[tokio::test]
async fn issue15_next_hop_equal_to_our_address_is_not_installed() {
    let mut h = Harness::new(Ebgp);
    let out = h.send(&build(Ebgp, Set(NEXT_HOP, &[0x40, 3, 4, 192, 0, 2, 1])));
    assert!(
        out.errors[0].reason.contains("our own address"),
        "{:?}",
        out.errors
    );
    assert!(!h.installed("10.77.60.1/32"));
}

#[tokio::test]
async fn issue15_unknown_well_known_attribute_resets_with_3_2() {
    let mut h = Harness::new(Ibgp);
    let out = h.send(&build(Ibgp, Add(&[0x40, 99, 2, 7, 7])));
    let n = out.notification.expect("NOTIFICATION");
    assert_eq!(
        (n.code, n.subcode),
        (3, 2),
        "Unrecognized Well-known Attribute"
    );
    assert_eq!(n.data, vec![0x40, 99, 2, 7, 7], "the attribute in the data");
}

#[tokio::test]
async fn issue15_nlri_prefix_length_33_resets_with_3_10() {
    let mut h = Harness::new(Ibgp);
    let out = h.send(&build(Ibgp, Nlri(&[33, 10, 77, 60, 1, 0])));
    let n = out.notification.expect("NOTIFICATION");
    assert_eq!((n.code, n.subcode), (3, 10), "Invalid Network Field");
}

// ---------------------------------------------------------------------------
// RFC 6793 4.2.3 and RFC 4271 6.3 through the speaker: what reaches the RIB.

#[tokio::test]
async fn rfc6793_path_and_aggregator_from_a_2_octet_peer_are_rebuilt_in_the_rib() {
    let mut h = Harness::new(Old);
    // AS_PATH 65010 AS_TRANS, AS4_PATH 4200000001, AGGREGATOR AS_TRANS 192.0.2.9,
    // AS4_AGGREGATOR 4200000009 192.0.2.9.
    let wide = [
        &[0x40, 2, 6, 2, 2, 0xfd, 0xf2, 0x5b, 0xa0][..],
        &[0xc0, 17, 6, 2, 1],
        &4_200_000_001u32.to_be_bytes(),
        &[0xc0, 7, 6, 0x5b, 0xa0, 192, 0, 2, 9],
        &[0xc0, 18, 8],
        &4_200_000_009u32.to_be_bytes(),
        &[192, 0, 2, 9],
    ]
    .concat();
    let mut attrs = valid_attrs(Old);
    attrs.retain(|(c, _)| *c != AS_PATH);
    attrs.push((AS_PATH, wide));
    let out = h.send(&update_body(&[], &join(&attrs), &P1));
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let best = h.speaker.rib().best(&p("10.77.60.1/32")).unwrap();
    assert_eq!(
        best.attrs.as_path,
        vec![AsSegment {
            kind: AsSegmentKind::Sequence,
            asns: vec![65010, 4_200_000_001],
        }]
    );
    assert_eq!(
        best.attrs.aggregator,
        Some((4_200_000_009, "192.0.2.9".parse().unwrap()))
    );
}

#[tokio::test]
async fn rfc4271_multicast_prefixes_are_counted_and_the_rest_installed() {
    let mut h = Harness::new(Ebgp);
    let out = h.send(&build(
        Ebgp,
        Nlri(&[
            32, 224, 0, 0, 5, 32, 10, 77, 60, 1, 8, 239, 32, 10, 77, 60, 2,
        ]),
    ));
    assert_eq!(
        out.errors.len(),
        1,
        "one error for the field: {:?}",
        out.errors
    );
    assert!(out.errors[0].reason.contains("2 of 4"), "{}", out.errors[0]);
    assert!(h.installed("10.77.60.1/32") && h.installed("10.77.60.2/32"));
    assert!(!h.installed("224.0.0.5/32") && !h.installed("239.0.0.0/8"));
    let s = h.summary();
    assert_eq!(s.prefixes_ignored, 2);
    assert_eq!(s.update_errors.get("prefix-ignore: NLRI value"), Some(&1));
    assert_eq!((s.treat_as_withdraw, s.attribute_discard), (0, 0));
}
