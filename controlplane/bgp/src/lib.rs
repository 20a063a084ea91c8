//! cer-bgp: the BGP speaker of cer-control.
//!
//! Layout follows the protocol: `route` (prefixes, path attributes, paths),
//! `decision` (RFC 4271 9.1.2.2 + RFC 4456 tie-breakers), `rib` (Adj-RIB-In,
//! Loc-RIB), `adj_in` (a peer's pre-policy Adj-RIB-In and the per-neighbor RIB views), `adj_out` (what an update group was sent), `update_group` (peers that get the same UPDATEs), `intern` (shared attribute sets), `policy` (import/export), `packet` (the wire format:
//! framing, OPEN, UPDATE decoding with RFC 7606 error handling, encoding), `fsm` (RFC 4271 session state
//! machine, no sockets), `speaker` (sans-IO: events in, outputs out), `events` (what crosses
//! between the speaker and IO), `session` (TCP + timers driving the FSM, one task per peer) and `driver`
//! (performs the speaker's outputs on the session tasks).

pub mod adj_in;
pub mod adj_out;
pub mod decision;
pub mod driver;
pub mod events;
pub mod export;
pub mod fsm;
pub mod intern;
pub mod packet;
pub mod policy;
pub mod rib;
pub mod route;
pub mod session;
pub mod sockopt;
pub mod speaker;
pub mod update_group;
