//! cer-control: the BGP control process. `core` is the single event loop
//! that owns all state; `config`, `sam` (ownership + RIB trap), `endpoints`
//! (persisted local endpoints), `fibfeed` (dataplane feed thread) and
//! `admin` (JSON API for cerctl) hang off it.

pub mod admin;
pub mod capture;
pub mod config;
pub mod core;
pub mod endpoints;
pub mod fibfeed;
pub mod sam;
pub mod underlay;
pub mod unnumbered;
pub mod vrrp;
