//! cer-bgp: the BGP speaker of cer-control.
//!
//! Layout follows the protocol: `route` (prefixes, path attributes, paths),
//! `decision` (RFC 4271 9.1.2.2 + RFC 4456 tie-breakers), `rib` (Adj-RIB-In,
//! Loc-RIB, Adj-RIB-Out), `policy` (import/export), `wire` (netgauze codec
//! adapter, RFC 7606 error handling), `fsm` (RFC 4271 session state
//! machine, no sockets), `session` (TCP + timers driving the FSM).

pub mod decision;
pub mod export;
pub mod fsm;
pub mod policy;
pub mod rib;
pub mod route;
pub mod session;
pub mod speaker;
pub mod wire;
