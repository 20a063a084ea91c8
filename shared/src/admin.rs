//! The dataplane admin API: JSON lines over a Unix socket. One request per
//! line, one response per line. `cerctl dataplane ...` is the client.

use crate::addr::MacAddr;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum AdminRequest {
    /// Everything below in one answer.
    State,
    Counters,
    Ports,
    Neighbors,
    /// The IPv6 neighbor table (link-local -> MAC per port, from RA/NS/NA)
    /// and each port's link-local address.
    Neighbors6,
    ProxyArp,
    Snapshot,
    /// Exact-match /32 entries and underlay routes (bounded by `limit`).
    Fib {
        limit: Option<usize>,
    },
    Feed,
    /// Configured tunnels, with WireGuard session state.
    Tunnels,
    /// Re-read the node file and apply what can change live (routes,
    /// tunnels other than WireGuard, proxy ARP per port, ARP timers); a
    /// change that needs a restart refuses the whole reload, naming the
    /// fields.
    Reload,
    /// Packets at observation points (`port:NAME:rx|tx`, `tunnel:ID:inner|outer`)
    /// that match a BPF filter (tcpdump syntax; empty: every packet). The
    /// answer is one `Ok` (or `Error`) line, then `CaptureFrame` lines until
    /// `End`. Any line the client sends meanwhile stops the capture; the
    /// client closing the connection stops it too.
    Capture {
        points: Vec<String>,
        #[serde(default)]
        filter: String,
        /// Stop after this many packets.
        count: Option<u64>,
        /// Stop after this long.
        duration_ms: Option<u64>,
        /// Bytes kept of each packet (default `CAPTURE_SNAPLEN_DEFAULT`).
        snaplen: Option<u32>,
    },
}

/// Snap length of a capture that names none.
pub const CAPTURE_SNAPLEN_DEFAULT: u32 = 2048;
/// The largest snap length a capture accepts.
pub const CAPTURE_SNAPLEN_MAX: u32 = 65535;

/// The lines of a running capture after its `Ok` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "frame", rename_all = "snake_case")]
pub enum CaptureFrame {
    /// pcapng bytes (base64), whole blocks: the first carries the section
    /// header and interface descriptions.
    Data { pcapng: String },
    /// Sent every second (a client that went away is noticed by it).
    Progress {
        written: u64,
        matched: u64,
        ring_drops: u64,
    },
    /// The capture stopped; nothing follows.
    End(CaptureSummary),
}

/// How a capture went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureSummary {
    /// Packets written to the pcapng stream.
    pub written: u64,
    /// Packets that matched the filter at the observation points.
    pub matched: u64,
    /// Matching packets the capture ring had no room for.
    pub ring_drops: u64,
    /// Why it stopped: `count`, `duration`, `client`, `error: ...`.
    pub stopped: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum AdminResponse {
    Ok { data: serde_json::Value },
    Error { message: String },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PortState {
    pub name: String,
    pub driver: String,
    pub device: String,
    pub mac: MacAddr,
    pub address: String,
    pub mtu: u16,
    pub link_up: bool,
    /// Times the link went down since start (a memif/vhost peer that
    /// disconnected, a carrier loss).
    #[serde(default)]
    pub link_down_events: u64,
    pub speed_mbps: u32,
    pub proxy_arp: bool,
    pub exception_tap: Option<String>,
    /// Hardware/PMD statistics.
    pub hw: PortHwStats,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PortHwStats {
    pub ipackets: u64,
    pub opackets: u64,
    pub ibytes: u64,
    pub obytes: u64,
    pub imissed: u64,
    pub ierrors: u64,
    pub oerrors: u64,
    pub rx_nombuf: u64,
    /// `net_af_packet` only: frames the kernel dropped because the PMD's
    /// receive ring was full (the socket's PACKET_STATISTICS, which DPDK
    /// 22.11 does not report in `imissed`). A dataplane that is not polling
    /// often enough, or a ring too shallow for the traffic's bursts.
    #[serde(default)]
    pub kernel_ring_drops: u64,
}

/// Counters of one polling core.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CoreCounters {
    pub lcore: u32,
    pub bursts: u64,
    /// TSC cycles in polls that received packets / such polls; divided by
    /// the packets received, the forwarding cost per packet on this core.
    #[serde(default)]
    pub busy_cycles: u64,
    #[serde(default)]
    pub busy_polls: u64,
    /// TSC cycles in polls that received nothing (and sleeps between them).
    #[serde(default)]
    pub idle_cycles: u64,
    #[serde(default)]
    pub idle_polls: u64,
    /// TSC frequency, to turn cycles into time.
    #[serde(default)]
    pub tsc_hz: u64,
    /// Polls that took over 100 µs without sleeping: the core was taken
    /// away (preemption, a hypervisor pause); each can overflow rx rings.
    #[serde(default)]
    pub stalls: u64,
    /// Idle sleeps (poll modes adaptive/shared) and how they ended.
    #[serde(default)]
    pub sleeps: u64,
    #[serde(default)]
    pub wake_events: u64,
    #[serde(default)]
    pub wake_timeouts: u64,
    /// What wakes this core from an idle sleep (ports that signal traffic),
    /// ports it must wake up for on a timer, and that timer's bound.
    #[serde(default)]
    pub wake_sources: Vec<String>,
    #[serde(default)]
    pub wake_timer_for: Vec<String>,
    #[serde(default)]
    pub wake_bound_us: Option<u64>,
    /// The poll mode (busy, adaptive, shared).
    #[serde(default)]
    pub poll_mode: String,
    /// Per port (by name): packets received / transmitted by this core.
    pub rx: BTreeMap<String, u64>,
    pub tx: BTreeMap<String, u64>,
    /// Events that are not drops (arp_reply_sent, icmp_sent, punted ...).
    pub events: BTreeMap<String, u64>,
    /// Drops by reason; every reason is listed, zero or not.
    pub drops: BTreeMap<String, u64>,
    pub snapshot_version: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NeighborState {
    pub port: String,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    /// "reachable", "stale" or "static".
    pub state: String,
    pub confirmed_secs_ago: u64,
}

/// The answer to `neighbors6`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Neighbors6State {
    /// Every port's IPv6 link-local address and whether it sends RAs.
    pub ports: Vec<PortLinkLocal>,
    pub neighbors: Vec<Neighbor6State>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PortLinkLocal {
    pub port: String,
    pub link_local: Ipv6Addr,
    /// Router Advertisements are sent on this port (`unnumbered = true`).
    pub unnumbered: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Neighbor6State {
    pub port: String,
    pub ip: Ipv6Addr,
    pub mac: MacAddr,
    /// "reachable" or "stale".
    pub state: String,
    /// Learned from a Router Advertisement (the peer is a router).
    pub router: bool,
    pub confirmed_secs_ago: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProxyArpState {
    pub active: bool,
    pub addresses: Vec<Ipv4Addr>,
    /// Foreign ARP replies/GARPs for an address answered here, since start.
    #[serde(default)]
    pub duplicate_holder_alarms: u64,
    /// The most recent offenders, newest first.
    #[serde(default)]
    pub duplicate_holders: Vec<crate::feed::DuplicateHolder>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SnapshotState {
    pub version: u64,
    pub endpoints: usize,
    pub routes: usize,
    pub neighbors: usize,
    pub proxy_arp: usize,
    pub built_us: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FeedState {
    pub connected: bool,
    pub client: Option<String>,
    pub last_seq: u64,
    pub syncs_completed: u64,
    pub sessions: u64,
    pub errors: u64,
    pub last_error: Option<String>,
    /// A session owning the capture gate (cer-control's feeder) is open.
    #[serde(default)]
    pub gate_owner_connected: bool,
    /// Times the proxy-ARP gate was closed because its owner disconnected.
    #[serde(default)]
    pub gate_closed_on_disconnect: u64,
    /// Stalls the dataplane noticed (it was stopped longer than the guard).
    #[serde(default)]
    pub stalls: u64,
    /// Times a stall closed an open proxy-ARP gate.
    #[serde(default)]
    pub gate_closed_on_stall: u64,
}
