//! cer-control's admin API: JSON lines on a Unix socket. Requests are
//! forwarded to the control state, which answers from live state.

use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum ControlRequest {
    BgpSummary,
    BgpRib {
        prefix: Option<String>,
    },
    /// One neighbor's routes (`show bgp neighbor PEER received-routes |
    /// advertised-routes [PREFIX]`): `peer` is its address or, unnumbered,
    /// its interface.
    BgpNeighborRoutes {
        peer: String,
        side: RibSide,
        prefix: Option<String>,
    },
    /// BFD sessions (neighbors with `bfd = true`) and refused packets.
    Bfd,
    Owners,
    Markers,
    Fib,
    Trap {
        since: Option<u64>,
    },
    EndpointAdd {
        ip: Ipv4Addr,
        local_pref: Option<u32>,
    },
    EndpointRemove {
        ip: Ipv4Addr,
    },
    /// Take ownership here: advertise with a LOCAL_PREF above the current owner's.
    EndpointMove {
        ip: Ipv4Addr,
    },
    Explain {
        ip: Ipv4Addr,
    },
    Status,
    /// Re-read the configuration file and apply what changed, all or
    /// nothing (`control::reload`).
    Reload,
    /// The capture plane: mechanism, reconciler state per /32, fenced actions.
    Capture,
}

/// Which side of a neighbor's session `BgpNeighborRoutes` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RibSide {
    /// Its Adj-RIB-In, before and after import policy.
    Received,
    /// What it was sent, after export policy.
    Advertised,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ControlResponse {
    Ok { data: serde_json::Value },
    Error { message: String },
}
