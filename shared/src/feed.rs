//! The FIB feed protocol: cer-control (client) -> cer-dataplane (server) over
//! a Unix socket, JSON lines (see `framing`).
//!
//! A session is: `Hello` (protocol version) -> `Welcome`; then a full sync
//! (`SyncBegin`, any number of `Changes`, `SyncEnd`), then deltas (`Changes`).
//! Every client message after `Hello` carries `seq`, starting at 1 and rising
//! by one; the dataplane answers each with `Ack` (or `Error`, then closes).
//! A full sync replaces everything the feed installed before; until `SyncEnd`
//! the dataplane keeps forwarding on its previous snapshot. If the socket
//! drops, the dataplane keeps its last snapshot; the client reconnects and
//! syncs again (a dataplane restart is seen as a new `boot_id`).
//!
//! Capture gate ownership: the session whose `Hello` sets `capture_gate`
//! (cer-control's feeder, never `cerctl`'s one-shot commands) owns the
//! proxy-ARP gate. When that session ends (EOF, error, the controller was
//! killed), the dataplane closes the gate at once (`ProxyArpActive` false:
//! fail closed, another router may hold the /32s now) but keeps forwarding
//! on its last snapshot. The controller's next full sync opens it again if
//! VRRP says master. Other sessions leave the gate alone when they end.
//!
//! `Ping` changes nothing; its `Ack` (like every `Ack`) carries the
//! dataplane's duplicate proxy-ARP holder alarm: the count since the
//! dataplane started and the recent offenders (foreign ARP replies or GARPs
//! claiming a /32 this dataplane answers for).

use crate::addr::{Ipv4Prefix, MacAddr};
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, Ipv6Addr};

pub const FEED_PROTOCOL_VERSION: u32 = 1;

/// Where traffic to a /32 endpoint goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EndpointAction {
    /// Owned at this site: deliver on this LAN port (ARP-resolved).
    Local { port: String },
    /// Owned at a remote site: encapsulate into this tunnel.
    Tunnel { tunnel: u32 },
    /// Known but must not be forwarded (counted drop).
    Drop,
}

/// One next hop of an underlay route; several make an ECMP group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextHop {
    pub port: String,
    /// `None`: the destination itself is on the port's link (connected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    /// An IPv6 link-local gateway on `port` (RFC 5549/8950: an IPv4 route
    /// learned over BGP unnumbered). The dataplane resolves it through its
    /// IPv6 neighbor table to the peer's MAC (the userspace form of the
    /// kernel's 169.254.0.1 onlink trick). Exclusive with `gateway`; absent
    /// from older messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<Ipv6Addr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum FibChange {
    EndpointSet {
        ip: Ipv4Addr,
        action: EndpointAction,
    },
    EndpointDel {
        ip: Ipv4Addr,
    },
    RouteSet {
        prefix: Ipv4Prefix,
        nexthops: Vec<NextHop>,
    },
    RouteDel {
        prefix: Ipv4Prefix,
    },
    NeighborSet {
        port: String,
        ip: Ipv4Addr,
        mac: MacAddr,
    },
    NeighborDel {
        port: String,
        ip: Ipv4Addr,
    },
    ProxyArpSet {
        ip: Ipv4Addr,
    },
    ProxyArpDel {
        ip: Ipv4Addr,
    },
    /// Whether the proxy-ARP set is answered (the capture plane's gate:
    /// VRRP master or explicit single-router mode).
    ProxyArpActive {
        active: bool,
    },
}

/// One-shot actions that are not FIB state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum FeedCommand {
    /// Send `count` gratuitous ARPs for `ip` (our MAC) on `port`.
    GratuitousArp {
        port: String,
        ip: Ipv4Addr,
        count: u8,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControlMsg {
    Hello {
        version: u32,
        client: String,
        /// This session owns the proxy-ARP gate: the dataplane closes the
        /// gate when the session ends (cer-control sets it; cerctl does not).
        #[serde(default, skip_serializing_if = "is_false")]
        capture_gate: bool,
    },
    SyncBegin {
        seq: u64,
    },
    Changes {
        seq: u64,
        changes: Vec<FibChange>,
    },
    SyncEnd {
        seq: u64,
    },
    Command {
        seq: u64,
        command: FeedCommand,
    },
    /// Changes nothing; answered with an `Ack` (alarm state, liveness).
    Ping {
        seq: u64,
    },
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl ControlMsg {
    pub fn seq(&self) -> Option<u64> {
        match self {
            ControlMsg::Hello { .. } => None,
            ControlMsg::SyncBegin { seq }
            | ControlMsg::Changes { seq, .. }
            | ControlMsg::SyncEnd { seq }
            | ControlMsg::Command { seq, .. }
            | ControlMsg::Ping { seq } => Some(*seq),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DataplaneMsg {
    Welcome {
        version: u32,
        node: String,
        /// Random per dataplane start: a change means the dataplane restarted.
        boot_id: u64,
        snapshot_version: u64,
    },
    /// `seq` was applied; `snapshot_version` is the snapshot now published.
    Ack {
        seq: u64,
        snapshot_version: u64,
        /// Duplicate proxy-ARP holder alarms since the dataplane started.
        #[serde(default)]
        duplicate_holder_alarms: u64,
        /// The most recent offenders, newest first (bounded).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        duplicate_holders: Vec<DuplicateHolder>,
        /// Stalls since the dataplane started: each closed the proxy-ARP
        /// gate, which the controller re-opens only after re-confirming its
        /// VRRP role (`liveness.rs` in the dataplane).
        #[serde(default)]
        stalls: u64,
    },
    /// The message was refused; the dataplane closes the session after this.
    Error { seq: Option<u64>, message: String },
}

/// A foreign station that claimed (ARP reply or GARP) a /32 this dataplane
/// answers proxy ARP for: two holders of one address, a capture failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DuplicateHolder {
    pub ip: Ipv4Addr,
    /// The sender hardware address of the offending ARP.
    pub mac: MacAddr,
    /// The dataplane port it arrived on.
    pub port: String,
    /// Times the dataplane's manager saw this (ip, mac) (a lower bound of the
    /// packets: it samples the cores' last offender).
    pub seen: u64,
    /// Unix seconds of the last sighting.
    pub last_unix: u64,
}

/// How many offenders an `Ack` and the admin view carry.
pub const MAX_DUPLICATE_HOLDERS: usize = 8;

/// Full-sync chunk size clients should use (keeps lines well under MAX_LINE).
pub const SYNC_CHUNK: usize = 20_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_is_stable() {
        let m = ControlMsg::Changes {
            seq: 3,
            changes: vec![
                FibChange::EndpointSet {
                    ip: "10.77.60.11".parse().unwrap(),
                    action: EndpointAction::Local { port: "lan".into() },
                },
                FibChange::RouteSet {
                    prefix: "0.0.0.0/0".parse().unwrap(),
                    nexthops: vec![NextHop {
                        port: "wan".into(),
                        gateway: Some("10.0.0.254".parse().unwrap()),
                        gateway6: None,
                    }],
                },
            ],
        };
        let s = serde_json::to_string(&m).unwrap();
        assert_eq!(
            s,
            r#"{"type":"changes","seq":3,"changes":[{"op":"endpoint_set","ip":"10.77.60.11","action":{"kind":"local","port":"lan"}},{"op":"route_set","prefix":"0.0.0.0/0","nexthops":[{"port":"wan","gateway":"10.0.0.254"}]}]}"#
        );
        let back: ControlMsg = serde_json::from_str(&s).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.seq(), Some(3));
    }

    #[test]
    fn hello_gate_flag_is_optional_on_the_wire() {
        // An old client's hello (no flag) does not own the gate.
        let old: ControlMsg =
            serde_json::from_str(r#"{"type":"hello","version":1,"client":"x"}"#).unwrap();
        assert_eq!(
            old,
            ControlMsg::Hello {
                version: 1,
                client: "x".into(),
                capture_gate: false
            }
        );
        let owner = ControlMsg::Hello {
            version: 1,
            client: "cer-control".into(),
            capture_gate: true,
        };
        let s = serde_json::to_string(&owner).unwrap();
        assert_eq!(
            s,
            r#"{"type":"hello","version":1,"client":"cer-control","capture_gate":true}"#
        );
        assert_eq!(serde_json::from_str::<ControlMsg>(&s).unwrap(), owner);
        let ping: ControlMsg = serde_json::from_str(r#"{"type":"ping","seq":7}"#).unwrap();
        assert_eq!(ping.seq(), Some(7));
    }

    #[test]
    fn ack_alarm_fields_default() {
        let a: DataplaneMsg =
            serde_json::from_str(r#"{"type":"ack","seq":2,"snapshot_version":5}"#).unwrap();
        assert_eq!(
            a,
            DataplaneMsg::Ack {
                seq: 2,
                snapshot_version: 5,
                duplicate_holder_alarms: 0,
                duplicate_holders: vec![],
                stalls: 0,
            }
        );
        let b = DataplaneMsg::Ack {
            seq: 3,
            snapshot_version: 6,
            duplicate_holder_alarms: 4,
            duplicate_holders: vec![DuplicateHolder {
                ip: "10.77.60.20".parse().unwrap(),
                mac: "02:00:00:00:00:09".parse().unwrap(),
                port: "lan".into(),
                seen: 2,
                last_unix: 1,
            }],
            stalls: 1,
        };
        let s = serde_json::to_string(&b).unwrap();
        assert_eq!(serde_json::from_str::<DataplaneMsg>(&s).unwrap(), b);
    }

    #[test]
    fn link_local_gateway_is_optional_on_the_wire() {
        // An old message (no gateway6) still parses.
        let old: FibChange = serde_json::from_str(
            r#"{"op":"route_set","prefix":"10.9.0.0/16","nexthops":[{"port":"wan","gateway":"10.0.0.1"}]}"#,
        )
        .unwrap();
        let FibChange::RouteSet { nexthops, .. } = &old else {
            panic!("{old:?}")
        };
        assert_eq!(nexthops[0].gateway6, None);
        let new = FibChange::RouteSet {
            prefix: "10.77.60.11/32".parse().unwrap(),
            nexthops: vec![NextHop {
                port: "swp1".into(),
                gateway: None,
                gateway6: Some("fe80::1".parse().unwrap()),
            }],
        };
        let s = serde_json::to_string(&new).unwrap();
        assert_eq!(
            s,
            r#"{"op":"route_set","prefix":"10.77.60.11/32","nexthops":[{"port":"swp1","gateway6":"fe80::1"}]}"#
        );
        assert_eq!(serde_json::from_str::<FibChange>(&s).unwrap(), new);
    }

    #[test]
    fn garbage_is_rejected() {
        for bad in [
            r#"{"type":"changes","seq":1,"changes":[{"op":"endpoint_set","ip":"10.0.0.300","action":{"kind":"drop"}}]}"#,
            r#"{"type":"changes","seq":-1,"changes":[]}"#,
            r#"{"type":"nope"}"#,
            r#"{"type":"changes","seq":1,"changes":[{"op":"route_set","prefix":"10.0.0.1/8","nexthops":[]}]}"#,
        ] {
            assert!(serde_json::from_str::<ControlMsg>(bad).is_err(), "{bad}");
        }
    }
}
