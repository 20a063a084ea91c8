//! The node configuration file (TOML). One file describes a CER node: its
//! identity, the dataplane's cores, memory, ports and static underlay routes.
//! Loading validates everything and names the field and value on error.

use crate::addr::{Ipv4Interface, Ipv4Prefix, MacAddr};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// A configuration error that names the file, the field and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {path}: {field}: {message}")]
    Invalid {
        path: PathBuf,
        field: String,
        message: String,
    },
}

/// Reads a configuration file; the error names it.
pub fn read_config(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Parses configuration text as TOML into `T` (validation is the caller's);
/// `path` only names the source in the error, whose message is on one line.
pub fn parse_toml<T: serde::de::DeserializeOwned>(
    text: &str,
    path: &Path,
) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().replace('\n', " | "),
    })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub node: NodeSection,
    #[serde(default)]
    pub dataplane: DataplaneSection,
    #[serde(default, rename = "port")]
    pub ports: Vec<PortConfig>,
    #[serde(default, rename = "route")]
    pub routes: Vec<StaticRoute>,
    #[serde(default, rename = "tunnel")]
    pub tunnels: Vec<TunnelConfig>,
    /// `[metrics] listen = "ADDR:PORT"`: Prometheus `/metrics` (off without it).
    #[serde(default)]
    pub metrics: crate::metrics::MetricsSection,
}

/// How a tunnel encapsulates (DESIGN.md section 5 overheads, IPv4 outer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TunnelKind {
    /// IP-in-IP (protocol 4), 20 bytes.
    Ipip,
    /// GRE (RFC 2784/2890, protocol 47), 24 bytes, 28 with a key.
    Gre,
    /// Foo-over-UDP: the inner IPv4 packet is the UDP payload, 28 bytes.
    Fou,
    /// Generic UDP Encapsulation, version 0 header, 32 bytes.
    Gue,
    /// WireGuard (UDP), 60 bytes.
    Wireguard,
}

impl TunnelKind {
    /// Outer bytes added in front of the inner IPv4 packet (WireGuard: also the tag).
    pub fn overhead(self, gre_key: bool) -> u16 {
        match self {
            TunnelKind::Ipip => 20,
            TunnelKind::Gre => {
                if gre_key {
                    28
                } else {
                    24
                }
            }
            TunnelKind::Fou => 28,
            TunnelKind::Gue => 32,
            TunnelKind::Wireguard => 60,
        }
    }

    pub fn default_port(self) -> Option<u16> {
        match self {
            TunnelKind::Fou => Some(5555),
            TunnelKind::Gue => Some(6080),
            TunnelKind::Wireguard => Some(51820),
            _ => None,
        }
    }
}

/// A tunnel to a remote CER.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelConfig {
    /// Referenced by FIB endpoint actions (`tunnel N`) and cer-control's `[[tunnel]]` map.
    pub id: u32,
    #[serde(default)]
    pub name: Option<String>,
    pub kind: TunnelKind,
    /// Our transport address (a port address or the router address).
    pub local: Ipv4Addr,
    /// The remote CER's transport address.
    pub remote: Ipv4Addr,
    /// Inner MTU; default: the underlay port MTU minus the overhead.
    #[serde(default)]
    pub mtu: Option<u16>,
    /// GRE key (RFC 2890); both ends must agree.
    #[serde(default)]
    pub gre_key: Option<u32>,
    /// UDP destination port (FOU 5555, GUE 6080, WireGuard 51820 by default).
    #[serde(default)]
    pub port: Option<u16>,
    /// Fragment inner packets even with DF set (trusted paths only).
    #[serde(default)]
    pub force_fragment: bool,
    /// WireGuard: our private key (base64), or a file holding it.
    #[serde(default)]
    pub private_key: Option<String>,
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
    /// WireGuard: the peer's public key (base64).
    #[serde(default)]
    pub peer_public_key: Option<String>,
    #[serde(default)]
    pub preshared_key: Option<String>,
    /// WireGuard: seconds between keepalives (none by default).
    #[serde(default)]
    pub persistent_keepalive: Option<u16>,
}

/// Largest tunnel id (ids index a table in the snapshot).
pub const MAX_TUNNEL_ID: u32 = 4095;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Node name, used in logs, EAL file prefix and admin output.
    pub name: String,
    /// The router's own address: source of ICMP errors it sends, and the
    /// transport address carried by the exception-path TAP.
    pub router_address: Ipv4Addr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PollMode {
    /// Spin on rx bursts forever: dedicated cores, the lowest latency; the
    /// core shows 100% busy (production on bare metal).
    #[default]
    Busy,
    /// Spin while there is traffic; after about 1024 empty polls (~50-100
    /// µs), sleep until a port signals traffic (its PMD's sockets or rx
    /// interrupts), with a back-off bound (`idle_backoff_us`) for ports that
    /// cannot signal. Dedicated cores that should not burn power when idle.
    Adaptive,
    /// As `adaptive`, but sleeps after 32 empty polls (a few µs): for hosts
    /// where dataplanes share cores with each other or with other work (the
    /// lab runs five on one core); an idle dataplane costs almost nothing.
    Shared,
}

/// How a sleeping core learns of traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum IdleWake {
    /// Port events where the PMD has them (af_packet/af_xdp sockets, rx
    /// interrupts), the back-off bound elsewhere.
    #[default]
    Events,
    /// Never block on port events: sleep the back-off bound and poll (for
    /// a PMD whose events misbehave).
    Timer,
}

/// What the dataplane does with IPv4 packets that carry a loose or strict
/// source route option (LSRR/SSRR, RFC 791 3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SourceRoutePolicy {
    /// Drop them, counted as `ipv4_source_route` (RFC 7126 4.3/4.4: the
    /// default for routers; a source route lets a sender steer traffic
    /// around filters).
    #[default]
    Drop,
    /// Route them by their destination address like any other packet (the
    /// option is carried untouched: the router never acts as a source-route
    /// hop), counted as the event `ipv4_source_route_forwarded`.
    Forward,
}

/// Reverse-path forwarding check on a port (RFC 3704).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UrpfMode {
    /// No check.
    #[default]
    Off,
    /// Strict (RFC 3704 2.2): a packet is accepted only if the route back to
    /// its source (the /32 table first, then the underlay routes) leaves by
    /// the port it arrived on; else it is dropped as `ipv4_urpf_strict_failed`.
    /// For single-homed LAN sides, not for ports with asymmetric routes.
    Strict,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataplaneSection {
    /// DPDK lcores that run polling loops (one pinned loop per lcore).
    pub cores: Vec<u32>,
    /// The EAL main lcore: runs the manager, feed and admin threads.
    pub main_lcore: u32,
    /// CPU each polling lcore is pinned to (same order as `cores`). Empty:
    /// lcore N runs on CPU N (production). Several lcores may share a CPU in
    /// labs (EAL `--lcores lcore@cpu`).
    pub cpus: Vec<u32>,
    pub poll_mode: PollMode,
    /// `adaptive`/`shared`: how a sleeping core learns of traffic.
    pub idle_wake: IdleWake,
    /// `adaptive`/`shared`: the longest a sleeping core waits before it
    /// polls again when some port cannot signal traffic (memif, PCI NICs),
    /// so a packet there never waits longer, in microseconds.
    pub idle_backoff_us: u32,
    /// Admin socket (JSON lines): counters, neighbors, snapshot state.
    pub admin_socket: PathBuf,
    /// FIB feed socket the control process connects to.
    pub feed_socket: PathBuf,
    /// Permission bits of both sockets (TOML octal, `socket_mode = 0o660`).
    pub socket_mode: u32,
    /// Group of both sockets (name or gid): root, the dataplane's user and
    /// members of this group may connect; others are refused (SO_PEERCRED).
    pub socket_group: String,
    /// ICMP errors each polling core may send per second (token bucket).
    pub icmp_rate_per_sec: u32,
    /// A resolved neighbor is reachable this long after its last confirmation.
    pub arp_reachable_secs: u32,
    /// A stale neighbor not confirmed for this long is removed.
    pub arp_stale_secs: u32,
    /// Minimum interval between ARP requests for one next hop, per core.
    pub arp_retry_ms: u32,
    /// Router Advertisement interval on `unnumbered` ports, in seconds (FRR's
    /// `ipv6 nd ra-interval`, which BGP unnumbered sets to 10). The router
    /// lifetime advertised is three times this, as FRR does.
    pub ra_interval_secs: u32,
    /// IPv4 packets with a loose or strict source route option: `drop`
    /// (default) or `forward`.
    pub source_route: SourceRoutePolicy,
    /// `af_packet` ports: DPDK's `net_af_packet` makes the kernel reassemble
    /// IPv4 fragments before the dataplane sees them, in the network
    /// namespace's fragment memory (`net.ipv4.ipfrag_high_thresh`). A queue
    /// that never completes holds its share for `net.ipv4.ipfrag_time`; the
    /// dataplane sets that sysctl of its namespace to this many seconds while
    /// it runs (restored at exit), so a flood of incomplete datagrams black-holes
    /// fragmented traffic for at most this long after it stops. 0 leaves the
    /// kernel's value. Nodes without af_packet ports never touch it.
    pub kernel_reassembly_secs: u32,
    pub memory: MemorySection,
    /// Extra EAL arguments appended verbatim (e.g. `--log-level=pmd.net.af_packet:debug`).
    pub eal_args: Vec<String>,
}

impl Default for DataplaneSection {
    fn default() -> Self {
        Self {
            cores: vec![1],
            main_lcore: 0,
            cpus: Vec::new(),
            poll_mode: PollMode::Busy,
            idle_wake: IdleWake::Events,
            idle_backoff_us: 200,
            admin_socket: PathBuf::from("/run/cer/dataplane.sock"),
            feed_socket: PathBuf::from("/run/cer/feed.sock"),
            socket_mode: crate::sockperm::DEFAULT_MODE,
            socket_group: crate::sockperm::DEFAULT_GROUP.into(),
            icmp_rate_per_sec: 200,
            arp_reachable_secs: 30,
            arp_stale_secs: 300,
            arp_retry_ms: 1000,
            ra_interval_secs: 10,
            source_route: SourceRoutePolicy::Drop,
            kernel_reassembly_secs: 5,
            memory: MemorySection::default(),
            eal_args: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemorySection {
    /// Use hugepages (production). `false` runs EAL with `--no-huge` (small labs).
    pub hugepages: bool,
    /// Memory for EAL in MiB (`-m`).
    pub memory_mb: u32,
    /// Packet buffers in the pool (2^n - 1 is optimal for the ring).
    pub mbufs: u32,
    /// EAL `--file-prefix`; defaults to `cer-<node name>` so several nodes share a host.
    pub file_prefix: Option<String>,
    /// Let DPDK secondary processes attach (`dpdk-dumpcap`, `dpdk-proc-info`
    /// with `--file-prefix`): keeps the EAL's shared config and hugepage
    /// files while the dataplane runs (it removes the files at exit).
    /// Needs `hugepages = true`. Off by default: `cerctl dataplane capture`
    /// needs none of it.
    pub secondary_processes: bool,
}

impl Default for MemorySection {
    fn default() -> Self {
        Self {
            hugepages: true,
            memory_mb: 512,
            mbufs: 16383,
            file_prefix: None,
            secondary_processes: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortDriver {
    /// A PCI NIC bound to vfio-pci (`scripts/dpdk-setup`).
    Pci,
    /// DPDK `net_af_packet` on a kernel interface (veth in labs).
    AfPacket,
    /// DPDK `net_af_xdp` on a kernel interface.
    AfXdp,
    /// DPDK `net_memif`: a shared-memory packet interface to another
    /// userspace process on the same host (VPP, OVS-DPDK, a VNF, another
    /// DPDK application). No kernel on the path.
    Memif,
}

/// Which end of a memif connection a port is. The server listens on the
/// control socket; the client connects and supplies the shared memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MemifRole {
    #[default]
    Server,
    Client,
}

impl MemifRole {
    pub fn as_str(self) -> &'static str {
        match self {
            MemifRole::Server => "server",
            MemifRole::Client => "client",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    pub name: String,
    pub driver: PortDriver,
    /// Kernel interface for af_packet / af_xdp.
    #[serde(default)]
    pub iface: Option<String>,
    /// memif: the control socket path (a file; abstract sockets do not
    /// cross network namespaces). A server removes a stale socket file
    /// nobody listens on before it starts.
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// memif: `server` (default; listens on `socket`) or `client`.
    #[serde(default)]
    pub role: Option<MemifRole>,
    /// memif: the interface id inside the socket (default 0); several
    /// interfaces may share one socket with different ids.
    #[serde(default)]
    pub memif_id: Option<u32>,
    /// PCI address for pci, e.g. `0000:03:00.0`.
    #[serde(default)]
    pub pci: Option<String>,
    /// The port's address and subnet (a connected route is derived from it).
    pub address: Ipv4Interface,
    #[serde(default = "default_mtu")]
    pub mtu: u16,
    /// Override the MAC address (default: the device's).
    #[serde(default)]
    pub mac: Option<MacAddr>,
    /// Answer ARP for the proxy-ARP set on this port (while the set is active).
    #[serde(default)]
    pub proxy_arp: bool,
    /// Kernel TAP interface (DPDK `net_tap`) for the exception path of this
    /// port: traffic to the port's address that the dataplane does not consume
    /// goes to the kernel there, and kernel frames from it leave this port.
    #[serde(default)]
    pub exception_tap: Option<String>,
    /// BGP unnumbered on this port (RFC 5549/8950): the dataplane sends IPv6
    /// Router Advertisements from the port's link-local address (EUI-64 from
    /// the MAC) every `dataplane.ra_interval_secs`, so peers learn it.
    /// Neighbor discovery itself (NS/NA, learning) runs on every port.
    #[serde(default)]
    pub unnumbered: bool,
    /// Reverse-path check on packets received here: `off` (default) or
    /// `strict` (RFC 3704).
    #[serde(default)]
    pub urpf: UrpfMode,
    #[serde(default = "default_desc")]
    pub rx_desc: u16,
    #[serde(default = "default_desc")]
    pub tx_desc: u16,
    /// Extra devargs for the vdev (e.g. `blocksz=4096`).
    #[serde(default)]
    pub devargs: Option<String>,
}

fn default_mtu() -> u16 {
    1500
}
fn default_desc() -> u16 {
    1024
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticRoute {
    pub prefix: Ipv4Prefix,
    /// Gateways; several make an ECMP group. Each must be inside a port's subnet.
    pub via: Vec<Ipv4Addr>,
}

pub const MIN_MTU: u16 = 576;
pub const MAX_MTU: u16 = 9600;

impl NodeConfig {
    /// Reads and validates a node file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::parse(&read_config(path)?, path)
    }

    /// Parses and validates config text; `path` only names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let cfg: NodeConfig = parse_toml(text, path)?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |field: String, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            field,
            message,
        };
        if self.node.name.is_empty()
            || !self
                .node
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(bad(
                "node.name".into(),
                format!(
                    "'{}' must be non-empty letters, digits, '-' or '_'",
                    self.node.name
                ),
            ));
        }
        let dp = &self.dataplane;
        if dp.cores.is_empty() {
            return Err(bad(
                "dataplane.cores".into(),
                "at least one polling core is needed".into(),
            ));
        }
        let mut seen = HashSet::new();
        for c in &dp.cores {
            if !seen.insert(*c) {
                return Err(bad(
                    "dataplane.cores".into(),
                    format!("core {c} is listed twice"),
                ));
            }
            if *c == dp.main_lcore {
                return Err(bad(
                    "dataplane.cores".into(),
                    format!("core {c} is also dataplane.main_lcore; polling cores must be workers"),
                ));
            }
        }
        if !dp.cpus.is_empty() && dp.cpus.len() != dp.cores.len() {
            return Err(bad(
                "dataplane.cpus".into(),
                format!(
                    "{} CPUs for {} cores; give one CPU per core, or none",
                    dp.cpus.len(),
                    dp.cores.len()
                ),
            ));
        }
        if dp.cores.len() > 64 {
            return Err(bad(
                "dataplane.cores".into(),
                "at most 64 polling cores".into(),
            ));
        }
        if !(10..=100_000).contains(&dp.idle_backoff_us) {
            return Err(bad(
                "dataplane.idle_backoff_us".into(),
                format!("{} is outside 10..=100000", dp.idle_backoff_us),
            ));
        }
        crate::sockperm::check_mode(dp.socket_mode)
            .map_err(|m| bad("dataplane.socket_mode".into(), m))?;
        self.metrics
            .addr()
            .map_err(|m| bad("metrics.listen".into(), m))?;
        crate::sockperm::resolve_group(&dp.socket_group)
            .map_err(|m| bad("dataplane.socket_group".into(), m))?;
        if dp.icmp_rate_per_sec == 0 {
            return Err(bad(
                "dataplane.icmp_rate_per_sec".into(),
                "must be > 0".into(),
            ));
        }
        if dp.arp_reachable_secs == 0 || dp.arp_stale_secs == 0 || dp.arp_retry_ms == 0 {
            return Err(bad(
                "dataplane.arp_*".into(),
                "arp_reachable_secs, arp_stale_secs and arp_retry_ms must be > 0".into(),
            ));
        }
        if !(4..=1800).contains(&dp.ra_interval_secs) {
            return Err(bad(
                "dataplane.ra_interval_secs".into(),
                format!(
                    "{} is outside 4..=1800 (RFC 4861 MaxRtrAdvInterval)",
                    dp.ra_interval_secs
                ),
            ));
        }
        if dp.kernel_reassembly_secs > 300 {
            return Err(bad(
                "dataplane.kernel_reassembly_secs".into(),
                format!(
                    "{} is outside 0..=300 (0 leaves the kernel's net.ipv4.ipfrag_time)",
                    dp.kernel_reassembly_secs
                ),
            ));
        }
        if dp.memory.secondary_processes && !dp.memory.hugepages {
            return Err(bad(
                "dataplane.memory.secondary_processes".into(),
                "needs hugepages = true: secondary processes map the primary's hugepage files, \
                 and --no-huge memory cannot be shared"
                    .into(),
            ));
        }
        if dp.memory.mbufs < 1023 {
            return Err(bad(
                "dataplane.memory.mbufs".into(),
                format!("{} is too few; use at least 1023", dp.memory.mbufs),
            ));
        }
        if dp.memory.memory_mb < 64 {
            return Err(bad(
                "dataplane.memory.memory_mb".into(),
                format!(
                    "{} MiB is too little; DPDK needs at least 64",
                    dp.memory.memory_mb
                ),
            ));
        }
        if self.ports.is_empty() {
            return Err(bad("port".into(), "at least one [[port]] is needed".into()));
        }
        if self.ports.len() > 16 {
            return Err(bad("port".into(), "at most 16 ports".into()));
        }
        let mut names = HashSet::new();
        let mut ifaces = HashSet::new();
        let mut memif_ids = HashSet::new();
        for (i, p) in self.ports.iter().enumerate() {
            let f = |name: &str| format!("port[{i}] ({}).{name}", p.name);
            if p.name.is_empty() || p.name.len() > 15 {
                return Err(bad(f("name"), "must be 1..=15 characters".into()));
            }
            if !names.insert(p.name.clone()) {
                return Err(bad(f("name"), format!("'{}' is used twice", p.name)));
            }
            match p.driver {
                PortDriver::Pci => {
                    let Some(pci) = &p.pci else {
                        return Err(bad(
                            f("pci"),
                            "driver = \"pci\" needs pci = \"DDDD:BB:DD.F\"".into(),
                        ));
                    };
                    if !valid_pci(pci) {
                        return Err(bad(
                            f("pci"),
                            format!("'{pci}' is not a PCI address like 0000:03:00.0"),
                        ));
                    }
                }
                PortDriver::AfPacket | PortDriver::AfXdp => {
                    let Some(iface) = &p.iface else {
                        return Err(bad(
                            f("iface"),
                            "af_packet/af_xdp ports need iface = \"NAME\"".into(),
                        ));
                    };
                    if !valid_ifname(iface) {
                        return Err(bad(
                            f("iface"),
                            format!("'{iface}' is not a valid interface name"),
                        ));
                    }
                    if !ifaces.insert(iface.clone()) {
                        return Err(bad(f("iface"), format!("'{iface}' is used by two ports")));
                    }
                }
                PortDriver::Memif => {
                    let Some(sock) = &p.socket else {
                        return Err(bad(
                            f("socket"),
                            "driver = \"memif\" needs socket = \"/path/to/NAME.sock\"".into(),
                        ));
                    };
                    if !sock.is_absolute() || sock.file_name().is_none() {
                        return Err(bad(
                            f("socket"),
                            format!("'{}' must be an absolute file path", sock.display()),
                        ));
                    }
                    // sockaddr_un.sun_path holds 107 bytes and a NUL.
                    if sock.as_os_str().len() > 107 {
                        return Err(bad(
                            f("socket"),
                            format!(
                                "'{}' is {} bytes; a unix socket path holds at most 107",
                                sock.display(),
                                sock.as_os_str().len()
                            ),
                        ));
                    }
                    let key = (sock.clone(), p.memif_id.unwrap_or(0));
                    if !memif_ids.insert(key) {
                        return Err(bad(
                            f("memif_id"),
                            format!(
                                "socket '{}' id {} is used by two ports; give each its own memif_id",
                                sock.display(),
                                p.memif_id.unwrap_or(0)
                            ),
                        ));
                    }
                    if let Some(iface) = &p.iface {
                        return Err(bad(
                            f("iface"),
                            format!(
                                "'{iface}': memif ports have no kernel interface; remove iface"
                            ),
                        ));
                    }
                }
            }
            if p.driver != PortDriver::Memif {
                for (field, set) in [
                    ("socket", p.socket.is_some()),
                    ("role", p.role.is_some()),
                    ("memif_id", p.memif_id.is_some()),
                ] {
                    if set {
                        return Err(bad(
                            f(field),
                            format!(
                                "only memif ports take {field} (this port's driver is {:?})",
                                p.driver
                            ),
                        ));
                    }
                }
            }
            if p.address.len == 0 || p.address.len > 32 {
                return Err(bad(
                    f("address"),
                    format!("'{}' needs a prefix length 1..=32", p.address),
                ));
            }
            if !(MIN_MTU..=MAX_MTU).contains(&p.mtu) {
                return Err(bad(
                    f("mtu"),
                    format!("{} is outside {MIN_MTU}..={MAX_MTU}", p.mtu),
                ));
            }
            if let Some(mac) = p.mac {
                if !mac.is_unicast() {
                    return Err(bad(f("mac"), format!("{mac} is not a unicast MAC")));
                }
            }
            if let Some(tap) = &p.exception_tap {
                if !valid_ifname(tap) {
                    return Err(bad(
                        f("exception_tap"),
                        format!("'{tap}' is not a valid interface name"),
                    ));
                }
                if !ifaces.insert(tap.clone()) {
                    return Err(bad(f("exception_tap"), format!("'{tap}' is used twice")));
                }
            }
            for (field, v) in [("rx_desc", p.rx_desc), ("tx_desc", p.tx_desc)] {
                if !(64..=8192).contains(&v) {
                    return Err(bad(f(field), format!("{v} is outside 64..=8192")));
                }
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            if r.via.is_empty() {
                return Err(bad(
                    format!("route[{i}] ({}).via", r.prefix),
                    "needs at least one gateway".into(),
                ));
            }
            for gw in &r.via {
                if self.port_for_gateway(*gw).is_none() {
                    return Err(bad(
                        format!("route[{i}] ({}).via", r.prefix),
                        format!("gateway {gw} is not inside any port's subnet"),
                    ));
                }
            }
        }
        let mut ids = HashSet::new();
        for (i, t) in self.tunnels.iter().enumerate() {
            let f = |name: &str| format!("tunnel[{i}] (id {}).{name}", t.id);
            if t.id == 0 || t.id > MAX_TUNNEL_ID {
                return Err(bad(
                    f("id"),
                    format!("{} is outside 1..={MAX_TUNNEL_ID}", t.id),
                ));
            }
            if !ids.insert(t.id) {
                return Err(bad(f("id"), "used twice".into()));
            }
            if t.local != self.node.router_address
                && !self.ports.iter().any(|p| p.address.addr == t.local)
            {
                return Err(bad(
                    f("local"),
                    format!(
                        "{} is neither the router address nor a port address",
                        t.local
                    ),
                ));
            }
            if self.port_for_gateway(t.remote).is_none()
                && !self.routes.iter().any(|r| r.prefix.contains(t.remote))
            {
                return Err(bad(
                    f("remote"),
                    format!(
                        "{} is not reachable: no port subnet or [[route]] covers it",
                        t.remote
                    ),
                ));
            }
            if t.gre_key.is_some() && t.kind != TunnelKind::Gre {
                return Err(bad(f("gre_key"), "only GRE tunnels have a key".into()));
            }
            if t.port.is_some() && t.kind.default_port().is_none() {
                return Err(bad(
                    f("port"),
                    format!("{:?} tunnels have no UDP port", t.kind),
                ));
            }
            if let Some(mtu) = t.mtu {
                if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
                    return Err(bad(
                        f("mtu"),
                        format!("{mtu} is outside {MIN_MTU}..={MAX_MTU}"),
                    ));
                }
            }
            let wg = t.kind == TunnelKind::Wireguard;
            let has_key = t.private_key.is_some() || t.private_key_file.is_some();
            if wg && (!has_key || t.peer_public_key.is_none()) {
                return Err(bad(
                    f("private_key"),
                    "WireGuard tunnels need private_key (or private_key_file) and peer_public_key"
                        .into(),
                ));
            }
            if !wg && (has_key || t.peer_public_key.is_some() || t.persistent_keepalive.is_some()) {
                return Err(bad(
                    f("kind"),
                    "keys and keepalive are WireGuard settings".into(),
                ));
            }
        }
        Ok(())
    }

    /// The underlay MTU towards `remote`: the MTU of the port that reaches it.
    pub fn underlay_mtu(&self, remote: Ipv4Addr) -> u16 {
        let port = self.port_for_gateway(remote).or_else(|| {
            self.routes
                .iter()
                .filter(|r| r.prefix.contains(remote))
                .max_by_key(|r| r.prefix.len())
                .and_then(|r| r.via.first())
                .and_then(|gw| self.port_for_gateway(*gw))
        });
        port.map(|p| self.ports[p].mtu).unwrap_or(1500)
    }

    /// A tunnel's inner MTU: configured, or underlay MTU minus overhead.
    pub fn tunnel_mtu(&self, t: &TunnelConfig) -> u16 {
        t.mtu.unwrap_or_else(|| {
            self.underlay_mtu(t.remote)
                .saturating_sub(t.kind.overhead(t.gre_key.is_some()))
        })
    }

    /// Index of the port whose subnet contains `gw`.
    pub fn port_for_gateway(&self, gw: Ipv4Addr) -> Option<usize> {
        self.ports
            .iter()
            .position(|p| p.address.subnet().contains(gw))
    }

    pub fn port_index(&self, name: &str) -> Option<usize> {
        self.ports.iter().position(|p| p.name == name)
    }

    pub fn file_prefix(&self) -> String {
        self.dataplane
            .memory
            .file_prefix
            .clone()
            .unwrap_or_else(|| format!("cer-{}", self.node.name))
    }
}

fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn valid_pci(s: &str) -> bool {
    // DDDD:BB:DD.F
    let b = s.as_bytes();
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && s.chars()
            .enumerate()
            .all(|(i, c)| matches!(i, 4 | 7 | 10) || c.is_ascii_hexdigit())
}

/// Re-export for callers that build prefixes from config.
pub type Prefix = Ipv4Prefix;

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[node]
name = "cer-a"
router_address = "10.10.0.1"

[dataplane]
cores = [1]
poll_mode = "adaptive"
admin_socket = "/tmp/a.sock"
feed_socket = "/tmp/f.sock"
[dataplane.memory]
hugepages = false
memory_mb = 256

[[port]]
name = "lan"
driver = "af_packet"
iface = "veth-lan"
address = "10.1.0.1/24"
proxy_arp = true

[[port]]
name = "wan"
driver = "pci"
pci = "0000:03:00.0"
address = "10.10.0.1/24"
mtu = 9000
exception_tap = "cer-tap0"

[[route]]
prefix = "0.0.0.0/0"
via = ["10.10.0.254"]
"#;

    fn parse(s: &str) -> Result<NodeConfig, ConfigError> {
        NodeConfig::parse(s, Path::new("node.toml"))
    }

    #[test]
    fn good_config_parses() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.ports.len(), 2);
        assert_eq!(c.dataplane.poll_mode, PollMode::Adaptive);
        assert_eq!(c.ports[1].mtu, 9000);
        assert_eq!(c.port_for_gateway("10.10.0.254".parse().unwrap()), Some(1));
        assert_eq!(c.file_prefix(), "cer-cer-a");
    }

    #[test]
    fn memif_ports_parse_with_roles_and_ids() {
        let two = GOOD
            .replace(
                "driver = \"af_packet\"\niface = \"veth-lan\"",
                "driver = \"memif\"\nsocket = \"/run/cer/io.sock\"\nrole = \"client\"",
            )
            .replace(
                "driver = \"pci\"\npci = \"0000:03:00.0\"",
                "driver = \"memif\"\nsocket = \"/run/cer/io.sock\"\nmemif_id = 1",
            );
        let c = parse(&two).unwrap();
        assert_eq!(c.ports[0].driver, PortDriver::Memif);
        assert_eq!(c.ports[0].role, Some(MemifRole::Client));
        assert_eq!(c.ports[1].role, None);
        assert_eq!(c.ports[1].memif_id, Some(1));
        // The same socket and id twice is refused, naming the field.
        let clash = two.replace("memif_id = 1", "memif_id = 0");
        let e = parse(&clash).unwrap_err().to_string();
        assert!(e.contains("port[1] (wan).memif_id"), "{e}");
    }

    #[test]
    fn unknown_field_is_named() {
        let e = parse(&GOOD.replace("proxy_arp = true", "proxy_arpp = true"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("proxy_arpp"), "{e}");
        assert!(e.contains("node.toml"), "{e}");
    }

    #[test]
    fn bad_values_name_field_and_value() {
        let cases = [
            (GOOD.replace("10.1.0.1/24", "10.1.0.1"), "address"),
            (GOOD.replace("mtu = 9000", "mtu = 100"), "port[1] (wan).mtu"),
            (GOOD.replace("0000:03:00.0", "03:00.0"), "'03:00.0'"),
            (
                GOOD.replace("10.10.0.254", "192.168.9.9"),
                "gateway 192.168.9.9",
            ),
            (
                GOOD.replace("cores = [1]", "cores = [0]"),
                "dataplane.cores",
            ),
            (GOOD.replace("cores = [1]", "cores = []"), "dataplane.cores"),
            (
                GOOD.replace("iface = \"veth-lan\"", ""),
                "port[0] (lan).iface",
            ),
            (
                GOOD.replace("name = \"wan\"", "name = \"lan\""),
                "used twice",
            ),
            (GOOD.replace("\"af_packet\"", "\"e1000\""), "e1000"),
            (
                GOOD.replace(
                    "driver = \"af_packet\"\niface = \"veth-lan\"",
                    "driver = \"memif\"",
                ),
                "port[0] (lan).socket",
            ),
            (
                GOOD.replace(
                    "driver = \"af_packet\"\niface = \"veth-lan\"",
                    "driver = \"memif\"\nsocket = \"lan.sock\"",
                ),
                "absolute",
            ),
            (
                GOOD.replace(
                    "driver = \"af_packet\"\niface = \"veth-lan\"",
                    "driver = \"memif\"\nsocket = \"/run/x.sock\"\nrole = \"master\"",
                ),
                "master",
            ),
            (
                GOOD.replace(
                    "iface = \"veth-lan\"",
                    "iface = \"veth-lan\"\nrole = \"client\"",
                ),
                "port[0] (lan).role",
            ),
            (
                GOOD.replace(
                    "driver = \"af_packet\"\niface = \"veth-lan\"",
                    "driver = \"memif\"\nsocket = \"/run/x.sock\"\niface = \"veth-lan\"",
                ),
                "no kernel interface",
            ),
            (
                GOOD.replace(
                    "driver = \"af_packet\"\niface = \"veth-lan\"",
                    &format!(
                        "driver = \"memif\"\nsocket = \"/run/{}.sock\"",
                        "x".repeat(110)
                    ),
                ),
                "at most 107",
            ),
        ];
        for (text, needle) in cases {
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(needle), "expected '{needle}' in: {e}");
        }
    }

    #[test]
    fn metrics_listen_is_off_by_default_and_checked() {
        assert_eq!(parse(GOOD).unwrap().metrics.listen, None);
        let on = format!("{GOOD}\n[metrics]\nlisten = \"127.0.0.1:9461\"\n");
        assert_eq!(
            parse(&on).unwrap().metrics.addr().unwrap(),
            Some("127.0.0.1:9461".parse().unwrap())
        );
        let bad = format!("{GOOD}\n[metrics]\nlisten = \"127.0.0.1\"\n");
        let e = parse(&bad).unwrap_err().to_string();
        assert!(
            e.contains("node.toml: metrics.listen: \"127.0.0.1\" is not an IP address and port"),
            "{e}"
        );
        let unknown = format!("{GOOD}\n[metrics]\nlisten_on = \"127.0.0.1:1\"\n");
        assert!(parse(&unknown)
            .unwrap_err()
            .to_string()
            .contains("listen_on"));
    }

    #[test]
    fn rfc1812_options_default_safe_parse_and_are_checked() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.dataplane.source_route, SourceRoutePolicy::Drop);
        assert_eq!(c.dataplane.kernel_reassembly_secs, 5);
        assert!(c.ports.iter().all(|p| p.urpf == UrpfMode::Off));
        let set = GOOD
            .replace(
                "poll_mode = \"adaptive\"",
                "poll_mode = \"adaptive\"\nsource_route = \"forward\"\nkernel_reassembly_secs = 0",
            )
            .replace("proxy_arp = true", "proxy_arp = true\nurpf = \"strict\"");
        let c = parse(&set).unwrap();
        assert_eq!(c.dataplane.source_route, SourceRoutePolicy::Forward);
        assert_eq!(c.dataplane.kernel_reassembly_secs, 0);
        assert_eq!(c.ports[0].urpf, UrpfMode::Strict);
        assert_eq!(c.ports[1].urpf, UrpfMode::Off);
        for (text, needle) in [
            (
                GOOD.replace(
                    "poll_mode = \"adaptive\"",
                    "poll_mode = \"adaptive\"\nsource_route = \"accept\"",
                ),
                "accept",
            ),
            (
                GOOD.replace("proxy_arp = true", "proxy_arp = true\nurpf = \"loose\""),
                "loose",
            ),
            (
                GOOD.replace(
                    "poll_mode = \"adaptive\"",
                    "poll_mode = \"adaptive\"\nkernel_reassembly_secs = 301",
                ),
                "dataplane.kernel_reassembly_secs",
            ),
            (
                GOOD.replace(
                    "hugepages = false",
                    "hugepages = false\nsecondary_processes = true",
                ),
                "dataplane.memory.secondary_processes: needs hugepages = true",
            ),
        ] {
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(needle), "expected '{needle}' in: {e}");
        }
    }
}
