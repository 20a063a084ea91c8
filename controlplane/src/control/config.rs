//! cer-control's configuration file (TOML): node identity, BGP neighbors and
//! policies, the SAM ownership plane (identity community, marker route, pool,
//! which BGP next hop is which tunnel), the dataplane feed and the admin API.
//! Every error names the file, the field and the value.

use cer_bgp::fsm::PeerAs;
use cer_bgp::policy::Policy;
use cer_bgp::route::{Community, Ipv4Prefix};
use serde::{Deserialize, Deserializer};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The configuration error of every CER config file (names the file, the
/// field and what is wrong), shared with the dataplane's.
pub use cer_shared::config::ConfigError;
use cer_shared::config::{parse_toml, read_config};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    pub node: Node,
    pub bgp: Bgp,
    #[serde(default, rename = "policy")]
    pub policies: Vec<Policy>,
    pub sam: Sam,
    #[serde(default, rename = "tunnel")]
    pub tunnels: Vec<TunnelMap>,
    #[serde(default)]
    pub dataplane: Dataplane,
    #[serde(default)]
    pub admin: Admin,
    #[serde(default)]
    pub capture: Capture,
    /// `[metrics] listen = "ADDR:PORT"`: Prometheus `/metrics` (off without it).
    #[serde(default)]
    pub metrics: cer_shared::metrics::MetricsSection,
}

/// How ingress for remote-owned /32s is realized at this site (DESIGN.md
/// section 3): on-prem proxy ARP, or one cloud's API through the reconciler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptureMode {
    /// No capture: remote-owned /32s are reachable only by routing.
    #[default]
    None,
    /// Proxy ARP (+ GARP) in the dataplane on `dataplane.lan_port`, gated by VRRP.
    Onprem,
    /// AWS: secondary private IPs on this router's ENI (`[capture.aws]`).
    Aws,
    /// Azure: ipConfigurations on this router's NIC (`[capture.azure]`).
    Azure,
    /// OCI: secondary private IPs on this router's VNIC (`[capture.oci]`).
    Oci,
}

impl CaptureMode {
    /// A cloud API realizes capture (through the reconciler).
    pub fn is_cloud(self) -> bool {
        matches!(
            self,
            CaptureMode::Aws | CaptureMode::Azure | CaptureMode::Oci
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            CaptureMode::None => "none",
            CaptureMode::Onprem => "onprem",
            CaptureMode::Aws => "aws",
            CaptureMode::Azure => "azure",
            CaptureMode::Oci => "oci",
        }
    }
}

/// Tuning of the capture reconciler (cloud modes).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcilerTuning {
    /// /32 actions in flight at once; their provider calls are batched (one
    /// call per class in flight), so this bounds a batch, not the provider's load.
    #[serde(default = "d_concurrency")]
    pub concurrency: usize,
    /// Longest wait for the provider to show an accepted change.
    #[serde(default = "d_confirm")]
    pub confirm_timeout_secs: u64,
    /// Re-observe every managed /32 this often.
    #[serde(default = "d_resync")]
    pub resync_secs: u64,
    /// Ceiling of the retry backoff.
    #[serde(default = "d_backoff_max")]
    pub backoff_max_secs: u64,
}

fn d_concurrency() -> usize {
    512
}
fn d_confirm() -> u64 {
    30
}
fn d_resync() -> u64 {
    60
}
fn d_backoff_max() -> u64 {
    30
}

impl Default for ReconcilerTuning {
    fn default() -> Self {
        ReconcilerTuning {
            concurrency: d_concurrency(),
            confirm_timeout_secs: d_confirm(),
            resync_secs: d_resync(),
            backoff_max_secs: d_backoff_max(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capture {
    #[serde(default)]
    pub mode: CaptureMode,
    /// keepalived's `notify_fifo`: proxy ARP only while `vrrp_instance` is MASTER.
    pub vrrp_notify_fifo: Option<PathBuf>,
    /// The VRRP instance (or sync group) to follow.
    pub vrrp_instance: Option<String>,
    /// keepalived's pid file (`keepalived -p`, e.g. `/run/keepalived.pid`).
    /// When the VRRP state is unknown after (re)opening the notify FIFO (e.g.
    /// right after cer-control starts while keepalived runs on), cer-control
    /// sends keepalived's JSON signal (`keepalived --signum=JSON`) once to that
    /// pid and reads the state from keepalived's read-only JSON dump.
    pub keepalived_pid_file: Option<PathBuf>,
    /// Where keepalived writes that JSON dump: `$TMPDIR/keepalived.json` of
    /// the keepalived process (default `/tmp/keepalived.json`).
    pub keepalived_json_file: Option<PathBuf>,
    /// One site, one router, one owner: proxy ARP without VRRP. Must be said explicitly.
    #[serde(default)]
    pub single_router: bool,
    /// Gratuitous ARPs sent per /32 when capture starts or the gate opens.
    #[serde(default = "d_garp")]
    pub garp_count: u8,
    /// After this router was stalled (stopped longer than half a second), the
    /// proxy-ARP gate stays closed this long while VRRP settles, then opens
    /// only if keepalived confirms MASTER. At least 3 advert intervals plus
    /// skew: 3500 suits keepalived's default 1 s adverts.
    #[serde(default = "d_stall_settle")]
    pub vrrp_stall_settle_ms: u64,
    /// A file keepalived tracks (`vrrp_track_file`, weight 0): cer-control
    /// writes 0 while a BGP session is established, 1 when none is, so a
    /// router whose WAN is cut goes to FAULT and hands VRRP to the other.
    pub vrrp_track_file: Option<PathBuf>,
    /// Cloud pairs: two CERs at one cloud site (the other one is named in
    /// `sam.site_identities`), exactly one of them the active capturer. Set
    /// on both: the live CER of the site with the highest preference is
    /// active (ties: the lower identity). It is advertised as the LOCAL_PREF
    /// of this node's marker route, so every CER sees it through BGP (no
    /// second election protocol); the standby captures nothing.
    pub pair_preference: Option<u32>,
    /// Cloud pairs: the provider ids of the other CER's NIC(s) (AWS ENI id,
    /// Azure NIC resource id, OCI VNIC OCID). A /32 taken over from there
    /// has no workload to be handed back to on release.
    #[serde(default)]
    pub pair_nics: Vec<String>,
    /// mode = "aws": this router's ENI, region, endpoint overrides.
    pub aws: Option<cer_capture_aws::AwsConfig>,
    /// mode = "azure": this router's NIC and the ARM / identity endpoints.
    pub azure: Option<cer_capture::azure::AzureConfig>,
    /// mode = "oci": this router's VNIC, subnet and request signing.
    pub oci: Option<cer_capture::oci::OciConfig>,
    #[serde(default)]
    pub reconciler: ReconcilerTuning,
}

fn d_garp() -> u8 {
    3
}

fn d_stall_settle() -> u64 {
    crate::control::vrrp::DEFAULT_STALL_SETTLE.as_millis() as u64
}

impl Default for Capture {
    fn default() -> Self {
        Capture {
            mode: CaptureMode::None,
            vrrp_notify_fifo: None,
            vrrp_instance: None,
            keepalived_pid_file: None,
            keepalived_json_file: None,
            single_router: false,
            garp_count: d_garp(),
            vrrp_stall_settle_ms: d_stall_settle(),
            vrrp_track_file: None,
            pair_preference: None,
            pair_nics: Vec::new(),
            aws: None,
            azure: None,
            oci: None,
            reconciler: ReconcilerTuning::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub name: String,
    pub router_id: Ipv4Addr,
    pub asn: u32,
    /// This node's transport address: the BGP next hop of what it originates,
    /// and the tunnel endpoint other sites encapsulate to.
    pub transport_address: IpAddr,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bgp {
    /// Addresses to accept connections on (port 179 unless given).
    #[serde(default)]
    pub listen: Vec<String>,
    #[serde(default = "d_hold")]
    pub hold_time: u16,
    #[serde(default = "d_retry")]
    pub connect_retry_secs: u64,
    /// Graceful restart time we advertise (0 disables GR).
    #[serde(default = "d_gr")]
    pub graceful_restart_secs: u16,
    /// Act as a route reflector (RFC 4456) for neighbors marked rr_client.
    #[serde(default)]
    pub route_reflector: bool,
    /// Cluster id when reflecting (default: router id).
    #[serde(default)]
    pub cluster_id: Option<Ipv4Addr>,
    #[serde(default)]
    pub always_compare_med: bool,
    /// Prefixes this node originates into BGP besides its endpoints and
    /// marker (e.g. its LAN or loopback for an unnumbered fabric), with the
    /// transport address as next hop (next-hop-self towards eBGP peers).
    #[serde(default)]
    pub networks: Vec<Ipv4Prefix>,
    /// ECMP: at most this many equal paths learned from unnumbered
    /// (interface) neighbors are installed for one underlay prefix (as FRR's
    /// `maximum-paths`, with `as-path multipath-relax`: equal LOCAL_PREF,
    /// AS path length, ORIGIN and MED). 1 disables ECMP.
    #[serde(default = "d_max_paths")]
    pub maximum_paths: usize,
    #[serde(default, rename = "neighbor")]
    pub neighbors: Vec<Neighbor>,
}

fn d_max_paths() -> usize {
    16
}

fn d_hold() -> u16 {
    90
}
fn d_retry() -> u64 {
    5
}
fn d_gr() -> u16 {
    120
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Neighbor {
    /// The peer's address; or, for BGP unnumbered, leave it out and name the `interface`.
    #[serde(default)]
    pub address: Option<IpAddr>,
    /// BGP unnumbered (FRR's `neighbor IFACE interface`): the kernel
    /// interface the peer is on, the dataplane port's exception TAP. The
    /// peer's IPv6 link-local address is learned from its Router
    /// Advertisements on that interface (or from its connection to us);
    /// the session runs over link-local with the extended next hop
    /// capability (RFC 8950).
    #[serde(default)]
    pub interface: Option<String>,
    /// The dataplane port behind `interface`: routes learned from this
    /// neighbor go out of it to the peer's MAC. Default: the interface name.
    #[serde(default)]
    pub dataplane_port: Option<String>,
    /// Unnumbered: the peer counts as gone (session stopped, its routes
    /// withdrawn) when its Router Advertisements stop: after 3 of its
    /// observed RA intervals (at least 3 s), or after this many seconds
    /// while only one RA has been seen. 0 disables RA expiry (the link
    /// state and the hold timer still apply).
    #[serde(default = "d_ra_timeout")]
    pub ra_timeout_secs: u64,
    #[serde(deserialize_with = "de_peer_as")]
    pub remote_as: PeerAs,
    #[serde(default)]
    pub description: Option<String>,
    /// Only accept connections (never dial).
    #[serde(default)]
    pub passive: bool,
    /// Source address for our connections.
    #[serde(default)]
    pub local_address: Option<IpAddr>,
    #[serde(default)]
    pub rr_client: bool,
    #[serde(default)]
    pub next_hop_self: bool,
    #[serde(default)]
    pub import_policy: Option<String>,
    #[serde(default)]
    pub export_policy: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    /// BFD (RFC 5880) to this neighbor: when its session goes from Up to
    /// Down (not by the peer's AdminDown), the BGP session is reset and the
    /// neighbor's routes are withdrawn at once, graceful restart or not.
    #[serde(default)]
    pub bfd: bool,
    /// The interval we would like to send at (ms).
    #[serde(default = "d_bfd_ms")]
    pub bfd_min_tx_ms: u64,
    /// The fastest the peer may send to us (ms).
    #[serde(default = "d_bfd_ms")]
    pub bfd_min_rx_ms: u64,
    /// Packets missed before the session is declared down.
    #[serde(default = "d_bfd_multiplier")]
    pub bfd_multiplier: u8,
    /// RFC 5883 multihop (UDP 4784, any TTL) instead of RFC 5881 single hop
    /// (UDP 3784, TTL 255 only): for a neighbor that is not on a directly
    /// connected network, such as a reflector across the WAN.
    #[serde(default)]
    pub bfd_multihop: bool,
    /// Keyed SHA1 authentication (RFC 5880 6.7.4): the shared key (1-20
    /// bytes) and its id. Both sides must agree.
    #[serde(default)]
    pub bfd_key: Option<String>,
    #[serde(default = "d_bfd_key_id")]
    pub bfd_key_id: u8,
    /// ADD-PATH for IPv4 unicast (RFC 7911) offered to this neighbor:
    /// `receive` its paths with path identifiers (every candidate a
    /// reflector has, not only its best), `send` it every path we may, or
    /// `both`. Used when the neighbor offers the other side.
    #[serde(default)]
    pub add_path: AddPathMode,
    /// TCP-MD5 signature (RFC 2385): the shared key (1-80 bytes, as FRR's
    /// `neighbor X password`, BIRD's `password` and gobgpd's
    /// `auth-password`). The kernel signs and checks every segment; a
    /// mismatch drops them silently, which `show bgp summary` names.
    #[serde(default)]
    pub password: Option<String>,
    /// GTSM (RFC 5082): send with TTL 255 and take only segments that
    /// arrive with 254 or more, so only a directly connected peer can reach
    /// the session (FRR's `neighbor X ttl-security hops 1`, BIRD's
    /// `ttl security on`). Not for multihop neighbors.
    #[serde(default)]
    pub ttl_security: bool,
    /// Keep the neighbor's routes as received, before import policy (its
    /// pre-policy Adj-RIB-In, as FRR's `soft-reconfiguration inbound` and
    /// BIRD's `import table`): `cerctl show bgp neighbor X received-routes`
    /// shows them beside the post-policy ones, and a changed import policy
    /// (`cerctl reload`) is applied from them without the peer resending.
    /// Costs one table entry per received path; the attribute sets are
    /// shared. Off: the post-policy view only, and a policy change asks the
    /// peer to resend (ROUTE-REFRESH, RFC 2918).
    #[serde(default = "d_true")]
    pub keep_received: bool,
}

fn d_true() -> bool {
    true
}

/// What a neighbor's `add_path` offers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AddPathMode {
    #[default]
    Off,
    Receive,
    Send,
    Both,
}

impl From<AddPathMode> for cer_bgp::packet::AddPath {
    fn from(m: AddPathMode) -> Self {
        cer_bgp::packet::AddPath {
            receive: matches!(m, AddPathMode::Receive | AddPathMode::Both),
            send: matches!(m, AddPathMode::Send | AddPathMode::Both),
        }
    }
}

fn d_ra_timeout() -> u64 {
    30
}

fn d_bfd_ms() -> u64 {
    300
}

fn d_bfd_multiplier() -> u8 {
    3
}

fn d_bfd_key_id() -> u8 {
    1
}

impl Neighbor {
    /// How the neighbor is named in messages: its address or its interface.
    pub fn name(&self) -> String {
        match (&self.address, &self.interface) {
            (Some(a), _) => a.to_string(),
            (None, Some(i)) => format!("interface {i}"),
            (None, None) => "?".into(),
        }
    }

    /// The BFD session parameters of a neighbor with `bfd = true`, or the
    /// field that is wrong and why.
    pub fn bfd_config(&self) -> Result<cer_bfd::Config, (&'static str, String)> {
        if !matches!(self.address, Some(IpAddr::V4(_))) {
            return Err((
                "bfd",
                "BFD runs to an IPv4 neighbor address (not to unnumbered or IPv6 neighbors)".into(),
            ));
        }
        for (field, ms) in [
            ("bfd_min_tx_ms", self.bfd_min_tx_ms),
            ("bfd_min_rx_ms", self.bfd_min_rx_ms),
        ] {
            if !(10..=60_000).contains(&ms) {
                return Err((field, format!("{ms} is not within 10-60000 ms")));
            }
        }
        if self.bfd_multiplier == 0 {
            return Err(("bfd_multiplier", "must be at least 1".into()));
        }
        let auth = match &self.bfd_key {
            None => None,
            Some(k) if k.is_empty() || k.len() > 20 => {
                return Err((
                    "bfd_key",
                    format!("keyed SHA1 takes a 1-20 byte key, not {} bytes", k.len()),
                ))
            }
            Some(k) => Some(cer_bfd::AuthConfig {
                key_id: self.bfd_key_id,
                key: k.as_bytes().to_vec(),
                meticulous: false,
            }),
        };
        Ok(cer_bfd::Config {
            desired_min_tx: Duration::from_millis(self.bfd_min_tx_ms),
            required_min_rx: Duration::from_millis(self.bfd_min_rx_ms),
            detect_mult: self.bfd_multiplier,
            auth,
        })
    }

    /// TCP-MD5 and GTSM of this neighbor's sessions, or the field that is
    /// wrong and why.
    pub fn security(&self) -> Result<cer_bgp::sockopt::SessionSecurity, (&'static str, String)> {
        let md5_key = match &self.password {
            None => None,
            Some(k) if k.is_empty() => {
                return Err((
                    "password",
                    "is empty: give the TCP-MD5 key (1-80 bytes) or leave password out".into(),
                ))
            }
            Some(k) if k.len() > cer_bgp::sockopt::MD5_MAX_KEY_LEN => {
                return Err((
                    "password",
                    format!(
                        "is {} bytes: a TCP-MD5 key is at most {} bytes (Linux TCP_MD5SIG_MAXKEYLEN)",
                        k.len(),
                        cer_bgp::sockopt::MD5_MAX_KEY_LEN
                    ),
                ))
            }
            Some(_) if self.interface.is_some() => {
                return Err((
                    "password",
                    "TCP-MD5 is not supported on unnumbered (interface) neighbors: the key belongs to a peer address, and theirs is learned at run time; give the neighbor's address instead".into(),
                ))
            }
            Some(k) => Some(k.as_bytes().to_vec()),
        };
        if self.ttl_security && self.bfd_multihop {
            return Err((
                "ttl_security",
                "GTSM (RFC 5082) is for directly connected neighbors: this one runs multihop BFD (bfd_multihop = true), so its segments arrive with a TTL below 254".into(),
            ));
        }
        Ok(cer_bgp::sockopt::SessionSecurity {
            md5_key,
            ttl_security: self.ttl_security,
        })
    }

    /// The dataplane port of an unnumbered neighbor.
    pub fn port(&self) -> Option<&str> {
        self.dataplane_port.as_deref().or(self.interface.as_deref())
    }
}

fn de_peer_as<'de, D: Deserializer<'de>>(d: D) -> Result<PeerAs, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Num(u32),
        Word(String),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::Num(n) => PeerAs::Is(n),
        Raw::Word(w) => match w.as_str() {
            "internal" => PeerAs::Internal,
            "external" => PeerAs::External,
            "auto" | "any" => PeerAs::Any,
            other => {
                return Err(serde::de::Error::custom(format!(
                    "remote_as '{other}': use a number, \"internal\", \"external\" or \"auto\""
                )))
            }
        },
    })
}

fn de_community<'de, D: Deserializer<'de>>(d: D) -> Result<Community, D::Error> {
    String::deserialize(d)?
        .parse()
        .map_err(serde::de::Error::custom)
}

fn de_communities<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Community>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|c| c.parse().map_err(serde::de::Error::custom))
        .collect()
}

/// The SAM ownership plane.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sam {
    /// This node's identity community, carried by its marker and its endpoints.
    #[serde(deserialize_with = "de_community")]
    pub identity: Community,
    /// The identities of the other CERs at this site (the VRRP pair on-prem,
    /// a second CER in the same VPC): a /32 one of them owns lives at this
    /// site, so this node delivers it on its LAN port and never captures it,
    /// and `endpoint move` here joins that owner at its LOCAL_PREF instead of
    /// outbidding it.
    #[serde(default, deserialize_with = "de_communities")]
    pub site_identities: Vec<Community>,
    /// Tags marker routes (every node uses the same one).
    #[serde(deserialize_with = "de_community")]
    pub marker_community: Community,
    /// The per-node marker route this node advertises.
    pub marker_prefix: Ipv4Prefix,
    /// The pools whose /32s are endpoints.
    pub pool: Vec<Ipv4Prefix>,
    /// LOCAL_PREF of the endpoints this node advertises.
    #[serde(default = "d_pref")]
    pub local_pref: u32,
    /// Where endpoints persist across restarts.
    #[serde(default = "d_state")]
    pub state_file: PathBuf,
    /// Endpoints owned here from the start (more via `cerctl endpoint add`).
    #[serde(default)]
    pub endpoints: Vec<Ipv4Addr>,
}

fn d_pref() -> u32 {
    100
}
fn d_state() -> PathBuf {
    PathBuf::from("/var/lib/cer/endpoints.json")
}

/// Which dataplane tunnel reaches the node whose transport address is `remote`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelMap {
    pub id: u32,
    pub remote: IpAddr,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dataplane {
    /// The dataplane's FIB feed socket; none runs cer-control without a dataplane.
    pub feed_socket: Option<PathBuf>,
    /// The port locally owned endpoints are delivered on.
    #[serde(default = "d_lan")]
    pub lan_port: String,
    /// Wait this long after start for peers' End-of-RIB before the first full sync.
    #[serde(default = "d_sync_delay")]
    pub initial_sync_delay_secs: u64,
}

impl Default for Dataplane {
    fn default() -> Self {
        Dataplane {
            feed_socket: None,
            lan_port: d_lan(),
            initial_sync_delay_secs: d_sync_delay(),
        }
    }
}

fn d_lan() -> String {
    "lan".into()
}
fn d_sync_delay() -> u64 {
    5
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    pub socket: PathBuf,
    /// The socket file's permission bits (TOML octal: `mode = 0o660`).
    #[serde(default = "d_socket_mode")]
    pub mode: u32,
    /// The socket file's group (name or gid): root, the process's user and
    /// members of this group may use the socket; others are refused.
    #[serde(default = "d_socket_group")]
    pub group: String,
}

fn d_socket_mode() -> u32 {
    cer_shared::sockperm::DEFAULT_MODE
}
fn d_socket_group() -> String {
    cer_shared::sockperm::DEFAULT_GROUP.into()
}

impl Default for Admin {
    fn default() -> Self {
        Admin {
            socket: PathBuf::from("/run/cer/control.sock"),
            mode: d_socket_mode(),
            group: d_socket_group(),
        }
    }
}

impl Admin {
    /// The group's id (checked when the configuration is loaded).
    pub fn gid(&self) -> Result<u32, String> {
        cer_shared::sockperm::resolve_group(&self.group)
    }
}

impl ControlConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::parse(&read_config(path)?, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let cfg: ControlConfig = parse_toml(text, path)?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |field: String, message: String| ConfigError::Invalid {
            path: path.into(),
            field,
            message,
        };
        if self.node.asn == 0 || self.node.asn == cer_bgp::packet::AS_TRANS {
            return Err(bad(
                "node.asn".into(),
                format!("{} is not a usable AS number", self.node.asn),
            ));
        }
        if self.node.router_id.is_unspecified() {
            return Err(bad(
                "node.router_id".into(),
                "0.0.0.0 is not a router id".into(),
            ));
        }
        if self.bgp.hold_time != 0 && self.bgp.hold_time < 3 {
            return Err(bad(
                "bgp.hold_time".into(),
                format!("{} must be 0 or at least 3", self.bgp.hold_time),
            ));
        }
        for l in &self.bgp.listen {
            parse_listen(l).map_err(|m| bad("bgp.listen".into(), m))?;
        }
        cer_shared::sockperm::check_mode(self.admin.mode)
            .map_err(|m| bad("admin.mode".into(), m))?;
        self.admin.gid().map_err(|m| bad("admin.group".into(), m))?;
        self.metrics
            .addr()
            .map_err(|m| bad("metrics.listen".into(), m))?;
        let names: HashSet<&str> = self.policies.iter().map(|p| p.name()).collect();
        let mut seen = HashSet::new();
        for (i, n) in self.bgp.neighbors.iter().enumerate() {
            let f = |x: &str| format!("bgp.neighbor[{i}] ({}).{x}", n.name());
            match (&n.address, &n.interface) {
                (Some(_), Some(_)) => {
                    return Err(bad(
                        f("interface"),
                        "give either address (numbered) or interface (unnumbered), not both"
                            .into(),
                    ))
                }
                (None, None) => {
                    return Err(bad(
                        f("address"),
                        "missing: give address = \"PEER-IP\", or interface = \"IFACE\" for BGP unnumbered".into(),
                    ))
                }
                (None, Some(ifname)) => {
                    if ifname.is_empty() || ifname.len() > 15 || ifname.contains('/') {
                        return Err(bad(
                            f("interface"),
                            format!("'{ifname}' is not a Linux interface name (1-15 bytes, no '/')"),
                        ));
                    }
                    if n.local_address.is_some() || n.port.is_some() {
                        return Err(bad(
                            f("interface"),
                            "an unnumbered neighbor takes no local_address or port: the session runs between the link-local addresses on port 179".into(),
                        ));
                    }
                }
                (Some(_), None) => {
                    if n.dataplane_port.is_some() {
                        return Err(bad(
                            f("dataplane_port"),
                            "is for unnumbered (interface) neighbors only".into(),
                        ));
                    }
                }
            }
            let key = n.address.map(|a| a.to_string()).or(n.interface.clone());
            if !seen.insert(key) {
                return Err(bad(f("address"), "listed twice".into()));
            }
            for (field, p) in [
                ("import_policy", &n.import_policy),
                ("export_policy", &n.export_policy),
            ] {
                if let Some(p) = p {
                    if !names.contains(p.as_str()) {
                        return Err(bad(f(field), format!("no [[policy]] named '{p}'")));
                    }
                }
            }
            if n.rr_client && !self.bgp.route_reflector {
                return Err(bad(
                    f("rr_client"),
                    "needs bgp.route_reflector = true".into(),
                ));
            }
            if n.bfd {
                n.bfd_config().map_err(|(field, m)| bad(f(field), m))?;
            }
            n.security().map_err(|(field, m)| bad(f(field), m))?;
        }
        if self.sam.pool.is_empty() {
            return Err(bad(
                "sam.pool".into(),
                "at least one pool prefix is needed".into(),
            ));
        }
        if let Some(pool) = self
            .sam
            .pool
            .iter()
            .find(|p| p.contains(self.sam.marker_prefix.addr()))
        {
            return Err(bad(
                "sam.marker_prefix".into(),
                format!(
                    "{} is inside sam.pool {pool}: markers and endpoints must not overlap",
                    self.sam.marker_prefix
                ),
            ));
        }
        if self.sam.identity == self.sam.marker_community {
            return Err(bad(
                "sam.identity".into(),
                "must differ from sam.marker_community".into(),
            ));
        }
        for c in &self.sam.site_identities {
            if *c == self.sam.identity || *c == self.sam.marker_community {
                return Err(bad(
                    "sam.site_identities".into(),
                    format!(
                        "{c} is this node's identity or the marker community: list the other CERs of this site"
                    ),
                ));
            }
        }
        for e in &self.sam.endpoints {
            if !self.in_pool(*e) {
                return Err(bad(
                    "sam.endpoints".into(),
                    format!("{e} is not inside sam.pool"),
                ));
            }
        }
        let c = &self.capture;
        if c.mode != CaptureMode::Onprem && (c.vrrp_notify_fifo.is_some() || c.single_router) {
            return Err(bad(
                "capture.mode".into(),
                "vrrp_notify_fifo / single_router need mode = \"onprem\"".into(),
            ));
        }
        if c.keepalived_pid_file.is_some()
            && (c.mode != CaptureMode::Onprem || c.vrrp_notify_fifo.is_none())
        {
            return Err(bad(
                "capture.keepalived_pid_file".into(),
                "is only for mode = \"onprem\" with vrrp_notify_fifo (it asks keepalived for its VRRP states)".into(),
            ));
        }
        if c.keepalived_json_file.is_some()
            && (c.mode != CaptureMode::Onprem
                || c.vrrp_notify_fifo.is_none()
                || c.keepalived_pid_file.is_none())
        {
            return Err(bad(
                "capture.keepalived_json_file".into(),
                "is only for mode = \"onprem\" with vrrp_notify_fifo and keepalived_pid_file (where keepalived writes its JSON state dump)".into(),
            ));
        }
        for (name, present) in [
            ("aws", c.aws.is_some()),
            ("azure", c.azure.is_some()),
            ("oci", c.oci.is_some()),
        ] {
            if present && c.mode.name() != name {
                return Err(bad(
                    format!("capture.{name}"),
                    format!(
                        "is set but capture.mode is \"{}\": set mode = \"{name}\" or remove the section",
                        c.mode.name()
                    ),
                ));
            }
        }
        let cloud = match c.mode {
            CaptureMode::Aws => c.aws.as_ref().map(|a| a.validate()),
            CaptureMode::Azure => c.azure.as_ref().map(|a| a.validate()),
            CaptureMode::Oci => c.oci.as_ref().map(|a| a.validate()),
            _ => Some(Ok(())),
        };
        match cloud {
            None => {
                return Err(bad(
                    format!("capture.{}", c.mode.name()),
                    format!(
                        "mode = \"{0}\" needs a [capture.{0}] section (this router's NIC and the API endpoints)",
                        c.mode.name()
                    ),
                ))
            }
            Some(Err(e)) => return Err(bad(format!("capture.{}", c.mode.name()), e)),
            Some(Ok(())) => {}
        }
        if c.reconciler.concurrency == 0 || c.reconciler.concurrency > 4096 {
            return Err(bad(
                "capture.reconciler.concurrency".into(),
                format!("{} is outside 1..=4096", c.reconciler.concurrency),
            ));
        }
        if c.reconciler.confirm_timeout_secs == 0 || c.reconciler.resync_secs == 0 {
            return Err(bad(
                "capture.reconciler".into(),
                "confirm_timeout_secs and resync_secs must be at least 1".into(),
            ));
        }
        match c.mode {
            CaptureMode::None | CaptureMode::Aws | CaptureMode::Azure | CaptureMode::Oci => {}
            CaptureMode::Onprem => match (&c.vrrp_notify_fifo, c.single_router) {
                (Some(_), true) => {
                    return Err(bad(
                        "capture.single_router".into(),
                        "is for a router without VRRP: remove it or vrrp_notify_fifo".into(),
                    ))
                }
                (None, false) => {
                    return Err(bad(
                        "capture.vrrp_notify_fifo".into(),
                        "on-prem capture needs keepalived's notify_fifo (VRRP gate), or single_router = true for one site with one router".into(),
                    ))
                }
                (Some(_), false) if c.vrrp_instance.as_deref().unwrap_or("").is_empty() => {
                    return Err(bad(
                        "capture.vrrp_instance".into(),
                        "name the keepalived vrrp_instance (or sync group) to follow".into(),
                    ))
                }
                _ => {}
            },
        }
        let cloud_mode = matches!(
            c.mode,
            CaptureMode::Aws | CaptureMode::Azure | CaptureMode::Oci
        );
        if c.pair_preference.is_some() && (!cloud_mode || self.sam.site_identities.is_empty()) {
            return Err(bad(
                "capture.pair_preference".into(),
                "is for a cloud pair: a cloud capture mode and the other CER of the site in sam.site_identities".into(),
            ));
        }
        if !c.pair_nics.is_empty() && c.pair_preference.is_none() {
            return Err(bad(
                "capture.pair_nics".into(),
                "names the other CER's NICs of a cloud pair: set pair_preference too".into(),
            ));
        }
        if c.vrrp_track_file.is_some()
            && (c.mode != CaptureMode::Onprem || c.vrrp_notify_fifo.is_none())
        {
            return Err(bad(
                "capture.vrrp_track_file".into(),
                "needs mode = \"onprem\" and vrrp_notify_fifo (it is keepalived's view of the WAN)"
                    .into(),
            ));
        }
        if !(100..=60_000).contains(&c.vrrp_stall_settle_ms) {
            return Err(bad(
                "capture.vrrp_stall_settle_ms".into(),
                format!("{} is outside 100..=60000", c.vrrp_stall_settle_ms),
            ));
        }
        if c.garp_count > 20 {
            return Err(bad(
                "capture.garp_count".into(),
                format!("{} is more than 20", c.garp_count),
            ));
        }
        if self.bgp.maximum_paths == 0 || self.bgp.maximum_paths > 64 {
            return Err(bad(
                "bgp.maximum_paths".into(),
                format!("{} is outside 1..=64", self.bgp.maximum_paths),
            ));
        }
        for n in &self.bgp.networks {
            if self
                .sam
                .pool
                .iter()
                .any(|p| p.contains(n.addr()) || n.contains(p.addr()))
            {
                return Err(bad(
                    "bgp.networks".into(),
                    format!(
                        "{n} overlaps sam.pool: endpoints are advertised per /32 by the SAM plane"
                    ),
                ));
            }
        }
        let mut ids = HashSet::new();
        for (i, t) in self.tunnels.iter().enumerate() {
            if !ids.insert(t.id) {
                return Err(bad(
                    format!("tunnel[{i}].id"),
                    format!("tunnel id {} is used twice", t.id),
                ));
            }
        }
        Ok(())
    }

    pub fn in_pool(&self, ip: Ipv4Addr) -> bool {
        self.sam.pool.iter().any(|p| p.contains(ip))
    }

    pub fn policy(&self, name: &Option<String>) -> Option<&Policy> {
        name.as_ref()
            .and_then(|n| self.policies.iter().find(|p| p.name() == n))
    }

    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.bgp
            .listen
            .iter()
            .filter_map(|l| parse_listen(l).ok())
            .collect()
    }
}

/// `ADDR`, `ADDR:PORT` or `[V6]:PORT`.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    s.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 179))
        .map_err(|_| format!("'{s}' is not ADDR or ADDR:PORT"))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const GOOD: &str = r#"
[node]
name = "cer-a"
router_id = "10.10.0.2"
asn = 65000
transport_address = "10.10.0.2"

[bgp]
listen = ["10.10.0.2"]
[[bgp.neighbor]]
address = "10.10.0.1"
remote_as = "internal"

[sam]
identity = "65000:1002"
marker_community = "65000:999"
marker_prefix = "10.255.0.2/32"
pool = ["10.77.60.0/24"]
endpoints = ["10.77.60.10"]

[[tunnel]]
id = 3
remote = "10.10.0.3"
"#;

    fn parse(s: &str) -> Result<ControlConfig, ConfigError> {
        ControlConfig::parse(s, Path::new("control.toml"))
    }

    #[test]
    fn good_config() {
        let c = parse(GOOD).unwrap();
        assert_eq!((c.admin.mode, c.admin.gid()), (0o660, Ok(0)));
        let c = parse(&format!(
            "{GOOD}\n[admin]\nsocket = \"/s\"\nmode = 0o600\ngroup = \"4321\""
        ))
        .unwrap();
        assert_eq!((c.admin.mode, c.admin.gid()), (0o600, Ok(4321)));
        let c = parse(GOOD).unwrap();
        assert_eq!(c.bgp.neighbors[0].remote_as, PeerAs::Internal);
        assert_eq!(c.listen_addrs(), vec!["10.10.0.2:179".parse().unwrap()]);
        assert_eq!(c.sam.identity, Community::new(65000, 1002));
        assert!(c.in_pool("10.77.60.200".parse().unwrap()));
    }

    #[test]
    fn bfd_per_neighbor_with_defaults_and_checks() {
        let with = |extra: &str| {
            parse(&GOOD.replace(
                "remote_as = \"internal\"",
                &format!("remote_as = \"internal\"\n{extra}"),
            ))
        };
        let c = with("bfd = true").unwrap();
        let b = c.bgp.neighbors[0].bfd_config().unwrap();
        assert_eq!(b.desired_min_tx, Duration::from_millis(300));
        assert_eq!(b.required_min_rx, Duration::from_millis(300));
        assert_eq!(b.detect_mult, 3);
        assert!(b.auth.is_none());
        assert!(!c.bgp.neighbors[0].bfd_multihop);
        let c = with("bfd = true\nbfd_min_tx_ms = 50\nbfd_multiplier = 5\nbfd_key = \"s3cret\"")
            .unwrap();
        let b = c.bgp.neighbors[0].bfd_config().unwrap();
        assert_eq!(
            (b.desired_min_tx, b.detect_mult),
            (Duration::from_millis(50), 5)
        );
        assert_eq!(b.auth.unwrap().key_id, 1);
        for (extra, field) in [
            ("bfd = true\nbfd_multiplier = 0", "bfd_multiplier"),
            ("bfd = true\nbfd_min_rx_ms = 5", "bfd_min_rx_ms"),
            ("bfd = true\nbfd_min_tx_ms = 100000", "bfd_min_tx_ms"),
            ("bfd = true\nbfd_key = \"\"", "bfd_key"),
            ("bfd = true\nbfd_key = \"012345678901234567890\"", "bfd_key"),
        ] {
            let e = with(extra).unwrap_err().to_string();
            assert!(
                e.contains(&format!("bgp.neighbor[0] (10.10.0.1).{field}")),
                "{extra}: {e}"
            );
        }
        // Without `bfd = true` the parameters are not checked.
        assert!(with("bfd_multiplier = 0").is_ok());
        // Unnumbered neighbors have no IPv4 address to run BFD to.
        let e = parse(&GOOD.replace(
            "address = \"10.10.0.1\"",
            "interface = \"eth1\"\nbfd = true",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("(interface eth1).bfd") && e.contains("IPv4"),
            "{e}"
        );
    }

    #[test]
    fn session_security_per_neighbor_and_its_checks() {
        let with = |extra: &str| {
            parse(&GOOD.replace(
                "remote_as = \"internal\"",
                &format!("remote_as = \"internal\"\n{extra}"),
            ))
        };
        let c = with("password = \"s3cret\"\nttl_security = true").unwrap();
        let s = c.bgp.neighbors[0].security().unwrap();
        assert_eq!(s.md5_key.as_deref(), Some(&b"s3cret"[..]));
        assert!(s.ttl_security);
        let s = parse(GOOD).unwrap().bgp.neighbors[0].security().unwrap();
        assert_eq!(s, cer_bgp::sockopt::SessionSecurity::default());
        // 80 bytes is Linux's TCP_MD5SIG_MAXKEYLEN.
        assert!(with(&format!("password = \"{}\"", "k".repeat(80))).is_ok());
        for (extra, field, needle) in [
            ("password = \"\"", "password", "is empty"),
            (
                &format!("password = \"{}\"", "k".repeat(81)),
                "password",
                "81 bytes: a TCP-MD5 key is at most 80 bytes",
            ),
            (
                "ttl_security = true\nbfd = true\nbfd_multihop = true",
                "ttl_security",
                "directly connected",
            ),
        ] {
            let e = with(extra).unwrap_err().to_string();
            assert!(
                e.contains(&format!("bgp.neighbor[0] (10.10.0.1).{field}")) && e.contains(needle),
                "{extra}: {e}"
            );
        }
        let e = parse(&GOOD.replace(
            "address = \"10.10.0.1\"",
            "interface = \"eth1\"\npassword = \"k\"",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("(interface eth1).password") && e.contains("unnumbered"),
            "{e}"
        );
        // GTSM on an unnumbered (link-local, always one hop) neighbor is fine.
        assert!(parse(&GOOD.replace(
            "address = \"10.10.0.1\"",
            "interface = \"eth1\"\nttl_security = true",
        ))
        .is_ok());
    }

    #[test]
    fn site_identities_name_the_other_cers_of_the_site() {
        let with = |list: &str| {
            parse(&GOOD.replace(
                "identity = \"65000:1002\"",
                &format!("identity = \"65000:1002\"\nsite_identities = {list}"),
            ))
        };
        assert_eq!(
            with(r#"["65000:1001"]"#).unwrap().sam.site_identities,
            vec![Community::new(65000, 1001)]
        );
        assert!(parse(GOOD).unwrap().sam.site_identities.is_empty());
        let e = with(r#"["65000:1002"]"#).unwrap_err().to_string();
        assert!(
            e.contains("sam.site_identities") && e.contains("65000:1002"),
            "{e}"
        );
        let e = with(r#"["65000:999"]"#).unwrap_err().to_string();
        assert!(e.contains("sam.site_identities"), "{e}");
        assert!(with(r#"["not-a-community"]"#).is_err());
    }

    #[test]
    fn unnumbered_neighbor_by_interface() {
        let c = parse(&GOOD.replace(
            "address = \"10.10.0.1\"\nremote_as = \"internal\"",
            "interface = \"cer-swp1\"\ndataplane_port = \"swp1\"\nremote_as = \"external\"",
        ))
        .unwrap();
        let n = &c.bgp.neighbors[0];
        assert_eq!(n.address, None);
        assert_eq!(n.interface.as_deref(), Some("cer-swp1"));
        assert_eq!(n.port(), Some("swp1"));
        assert_eq!(n.remote_as, PeerAs::External);
        assert_eq!(n.ra_timeout_secs, 30);
        assert_eq!(c.bgp.maximum_paths, 16);
    }

    #[test]
    fn errors_name_field_and_value() {
        for (text, needle) in [
            (GOOD.replace("\"internal\"", "\"sideways\""), "sideways"),
            (GOOD.replace("65000:1002", "65000-1002"), "65000-1002"),
            (
                GOOD.replace(
                    "endpoints = [\"10.77.60.10\"]",
                    "endpoints = [\"10.9.9.9\"]",
                ),
                "10.9.9.9 is not inside sam.pool",
            ),
            (
                GOOD.replace(
                    "remote_as = \"internal\"",
                    "remote_as = \"internal\"\nimport_policy = \"nope\"",
                ),
                "no [[policy]] named 'nope'",
            ),
            (
                GOOD.replace("listen = [\"10.10.0.2\"]", "listen = [\"x\"]"),
                "bgp.listen",
            ),
            (GOOD.replace("asn = 65000", "asn = 0"), "node.asn"),
            (
                format!("{GOOD}\n[admin]\nsocket = \"/s\"\nmode = 0o1777"),
                "admin.mode",
            ),
            (
                format!("{GOOD}\n[metrics]\nlisten = \"9462\""),
                "metrics.listen: \"9462\" is not an IP address and port",
            ),
            (
                format!("{GOOD}\n[admin]\nsocket = \"/s\"\ngroup = \"no-such-group-here\""),
                "admin.group: no group named 'no-such-group-here'",
            ),
            (GOOD.replace("id = 3", "idd = 3"), "idd"),
            (
                GOOD.replace("10.255.0.2/32", "10.77.60.250/32"),
                "markers and endpoints must not overlap",
            ),
            (
                GOOD.replace(
                    "address = \"10.10.0.1\"",
                    "address = \"10.10.0.1\"\ninterface = \"cer-swp1\"",
                ),
                "either address (numbered) or interface (unnumbered), not both",
            ),
            (
                GOOD.replace("address = \"10.10.0.1\"\n", ""),
                "bgp.neighbor[0] (?).address: missing",
            ),
            (
                GOOD.replace(
                    "address = \"10.10.0.1\"",
                    "interface = \"cer-swp1\"\nlocal_address = \"10.0.0.1\"",
                ),
                "(interface cer-swp1).interface: an unnumbered neighbor takes no local_address",
            ),
            (
                GOOD.replace(
                    "address = \"10.10.0.1\"",
                    "interface = \"a-name-that-is-too-long\"",
                ),
                "is not a Linux interface name",
            ),
            (
                GOOD.replace("[[bgp.neighbor]]", "maximum_paths = 0\n[[bgp.neighbor]]"),
                "bgp.maximum_paths",
            ),
            (
                GOOD.replace(
                    "[[bgp.neighbor]]",
                    "networks = [\"10.77.0.0/16\"]\n[[bgp.neighbor]]",
                ),
                "overlaps sam.pool",
            ),
        ] {
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(needle), "expected {needle} in {e}");
        }
    }

    #[test]
    fn capture_section_needs_an_explicit_gate() {
        let with = |c: &str| format!("{GOOD}\n[capture]\n{c}\n");
        let c = parse(&with(
            "mode = \"onprem\"\nvrrp_notify_fifo = \"/run/k.fifo\"\nvrrp_instance = \"VI_1\"",
        ))
        .unwrap();
        assert_eq!(c.capture.mode, CaptureMode::Onprem);
        assert_eq!(c.capture.garp_count, 3);
        assert!(parse(&with("mode = \"onprem\"\nsingle_router = true")).is_ok());
        let c = parse(&with(
            "mode = \"onprem\"\nvrrp_notify_fifo = \"/run/k.fifo\"\nvrrp_instance = \"VI_1\"\nkeepalived_pid_file = \"/run/keepalived.pid\"",
        ))
        .unwrap();
        assert_eq!(
            c.capture.keepalived_pid_file.as_deref(),
            Some(std::path::Path::new("/run/keepalived.pid"))
        );
        assert_eq!(c.capture.keepalived_json_file, None);
        let c = parse(&with(
            "mode = \"onprem\"\nvrrp_notify_fifo = \"/run/k.fifo\"\nvrrp_instance = \"VI_1\"\nkeepalived_pid_file = \"/run/keepalived.pid\"\nkeepalived_json_file = \"/run/keepalived/keepalived.json\"",
        ))
        .unwrap();
        assert_eq!(
            c.capture.keepalived_json_file.as_deref(),
            Some(std::path::Path::new("/run/keepalived/keepalived.json"))
        );
        assert_eq!(parse(GOOD).unwrap().capture.mode, CaptureMode::None);
        for (c, needle) in [
            ("mode = \"onprem\"", "capture.vrrp_notify_fifo"),
            (
                "mode = \"onprem\"\nvrrp_notify_fifo = \"/run/k.fifo\"",
                "capture.vrrp_instance",
            ),
            (
                "mode = \"onprem\"\nvrrp_notify_fifo = \"/f\"\nvrrp_instance = \"V\"\nsingle_router = true",
                "capture.single_router",
            ),
            ("single_router = true", "capture.mode"),
            (
                "mode = \"onprem\"\nsingle_router = true\nkeepalived_pid_file = \"/run/k.pid\"",
                "capture.keepalived_pid_file",
            ),
            (
                "keepalived_pid_file = \"/run/k.pid\"",
                "capture.keepalived_pid_file",
            ),
            (
                "mode = \"onprem\"\nsingle_router = true\nkeepalived_pid_file = \"/run/k.pid\"\nkeepalived_json_file = \"/tmp/k.json\"",
                "capture.keepalived_pid_file",
            ),
            (
                "mode = \"onprem\"\nsingle_router = true\nkeepalived_json_file = \"/tmp/k.json\"",
                "capture.keepalived_json_file",
            ),
            (
                "keepalived_json_file = \"/tmp/k.json\"",
                "capture.keepalived_json_file",
            ),
            (
                "mode = \"onprem\"\nvrrp_notify_fifo = \"/f\"\nvrrp_instance = \"V\"\nkeepalived_json_file = \"/tmp/k.json\"",
                "capture.keepalived_json_file",
            ),
            ("mode = \"aws\"", "aws"),
            (
                "mode = \"onprem\"\nsingle_router = true\ngarp_count = 200",
                "capture.garp_count",
            ),
            (
                "mode = \"onprem\"\nsingle_router = true\nvrrp_track_file = \"/run/wan\"",
                "capture.vrrp_track_file",
            ),
            (
                "mode = \"onprem\"\nvrrp_notify_fifo = \"/f\"\nvrrp_instance = \"V\"\nvrrp_stall_settle_ms = 10",
                "capture.vrrp_stall_settle_ms",
            ),
        ] {
            let e = parse(&with(c)).unwrap_err().to_string();
            assert!(e.contains(needle), "expected {needle} in {e}");
        }
    }

    #[test]
    fn cloud_capture_sections_are_checked() {
        let with = |c: &str| format!("{GOOD}\n[capture]\n{c}\n");
        let aws = "mode = \"aws\"\n[capture.aws]\nregion = \"eu-west-1\"\nendpoint_url = \"http://127.0.0.1:8700\"";
        let c = parse(&with(aws)).unwrap();
        assert_eq!(c.capture.mode, CaptureMode::Aws);
        assert_eq!(c.capture.reconciler.concurrency, 512);
        let azure = "[capture.azure]\nnic_id = \"/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/networkInterfaces/n\"";
        assert!(parse(&with(&format!("mode = \"azure\"\n{azure}"))).is_ok());
        for (c, needle) in [
            ("mode = \"aws\"", "[capture.aws] section"),
            ("mode = \"oci\"", "[capture.oci] section"),
            (&format!("mode = \"aws\"\n{azure}"), "capture.azure"),
            (
                &format!("{aws}\n[capture.reconciler]\nconcurrency = 0"),
                "capture.reconciler.concurrency",
            ),
            (
                "mode = \"aws\"\n[capture.aws]\nendpoint_url = \"not a url\"",
                "capture.aws",
            ),
            (
                "mode = \"azure\"\n[capture.azure]\nnic_id = \"nic-1\"",
                "capture.azure",
            ),
            ("mode = \"gcp\"", "unknown variant `gcp`"),
        ] {
            let e = parse(&with(c)).unwrap_err().to_string();
            assert!(e.contains(needle), "expected {needle} in {e}");
        }
    }

    #[test]
    fn cloud_pairs_need_a_cloud_mode_and_the_partner() {
        let aws = "mode = \"aws\"\npair_preference = 200\npair_nics = [\"eni-b\"]\n[capture.aws]\nregion = \"eu-west-1\"";
        let paired = |sam_extra: &str, capture: &str| {
            parse(&format!(
                "{}\n[capture]\n{capture}\n",
                GOOD.replace(
                    "identity = \"65000:1002\"",
                    &format!("identity = \"65000:1002\"\n{sam_extra}")
                )
            ))
        };
        let c = paired("site_identities = [\"65000:1006\"]", aws).unwrap();
        assert_eq!(c.capture.pair_preference, Some(200));
        assert_eq!(c.capture.pair_nics, vec!["eni-b".to_string()]);
        for (sam, capture, needle) in [
            ("", aws, "capture.pair_preference"),
            (
                "site_identities = [\"65000:1006\"]",
                "mode = \"onprem\"\nsingle_router = true\npair_preference = 1",
                "capture.pair_preference",
            ),
            (
                "site_identities = [\"65000:1006\"]",
                "mode = \"aws\"\npair_nics = [\"eni-b\"]\n[capture.aws]\nregion = \"eu-west-1\"",
                "capture.pair_nics",
            ),
        ] {
            let e = paired(sam, capture).unwrap_err().to_string();
            assert!(e.contains(needle), "expected {needle} in {e}");
        }
    }
}
