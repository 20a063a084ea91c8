//! cer-control: the BGP control process. `state` is what its single event
//! loop owns, the one place state changes (its admin answers and JSON views
//! in `state/northbound.rs`); `config`, `sam` (ownership + RIB trap),
//! `bfd` (BFD sessions of BGP neighbors: sockets and timers around cer-bfd),
//! `endpoints` (persisted local endpoints), `fibfeed` (dataplane feed
//! thread), `admin` (the request/response types of the JSON API for cerctl),
//! `capture` (the cloud reconciler's wiring), `pair` (the active capturer
//! of a cloud pair, elected from BGP), `reload` (what a reload changes or why it is refused), `underlay` and `unnumbered`
//! (BGP unnumbered), `vrrp` (the proxy-ARP gate) and `vrrp_track` (the WAN
//! health keepalived tracks) hang off it.

pub mod admin;
pub mod bfd;
pub mod capture;
pub mod config;
pub mod endpoints;
pub mod fibfeed;
pub mod pair;
pub mod reload;
pub mod sam;
pub mod state;
pub mod underlay;
pub mod unnumbered;
pub mod vrrp;
pub mod vrrp_track;
