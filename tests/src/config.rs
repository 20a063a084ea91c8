//! Builders of the config files tests start CER with, rendered as TOML text:
//! a cer-dataplane node file ([`DataplaneConfig`], the `NodeConfig` of
//! shared/src/config.rs) and a cer-control file ([`ControlConfig`], the
//! `ControlConfig` of controlplane/src/control/config.rs, without `[admin]`,
//! which [`crate::Control::start`] adds).
//!
//! Only fields tests set are modelled; a field left unset is not written,
//! so the daemon's default applies. Field names are the config structs'
//! own; the unit tests below parse every shape with the real parsers.

use anyhow::{Context, Result};
use std::fmt::{self, Display, Write as _};
use std::path::{Path, PathBuf};

/// A TOML basic string.
fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn qp(p: &Path) -> String {
    q(&p.display().to_string())
}

/// A TOML array of strings.
fn qa<S: AsRef<str>>(v: &[S]) -> String {
    let items: Vec<String> = v.iter().map(|s| q(s.as_ref())).collect();
    format!("[{}]", items.join(", "))
}

/// A TOML array of numbers.
fn na(v: &[u32]) -> String {
    let items: Vec<String> = v.iter().map(u32::to_string).collect();
    format!("[{}]", items.join(", "))
}

/// `key = value` when the value is set.
fn opt(out: &mut String, key: &str, v: Option<String>) {
    if let Some(v) = v {
        let _ = writeln!(out, "{key} = {v}");
    }
}

/// `key = true` when set.
fn flag(out: &mut String, key: &str, on: bool) {
    if on {
        let _ = writeln!(out, "{key} = true");
    }
}

// ---------------------------------------------------------------------------
// cer-dataplane

/// A cer-dataplane node file. [`DataplaneConfig::new`] starts from what every
/// test dataplane uses: one polling core (lcore 1) in `adaptive` poll mode,
/// no hugepages, 256 MiB and 4095 mbufs.
#[derive(Debug, Clone)]
pub struct DataplaneConfig {
    name: String,
    router_address: String,
    cores: Vec<u32>,
    cpus: Vec<u32>,
    poll_mode: Option<String>,
    idle_wake: Option<String>,
    idle_backoff_us: Option<u32>,
    admin_socket: Option<PathBuf>,
    feed_socket: Option<PathBuf>,
    arp_retry_ms: Option<u32>,
    ra_interval_secs: Option<u32>,
    kernel_reassembly_secs: Option<u32>,
    hugepages: bool,
    secondary_processes: bool,
    memory_mb: u32,
    mbufs: u32,
    file_prefix: Option<String>,
    ports: Vec<Port>,
    routes: Vec<(String, Vec<String>)>,
    tunnels: Vec<Tunnel>,
    metrics_listen: Option<String>,
}

impl DataplaneConfig {
    /// Node `name` with `router_address` (`[node]`), on the test defaults.
    pub fn new(name: &str, router_address: &str) -> Self {
        DataplaneConfig {
            name: name.into(),
            router_address: router_address.into(),
            cores: vec![1],
            cpus: Vec::new(),
            poll_mode: Some("adaptive".into()),
            idle_wake: None,
            idle_backoff_us: None,
            admin_socket: None,
            feed_socket: None,
            arp_retry_ms: None,
            ra_interval_secs: None,
            kernel_reassembly_secs: None,
            hugepages: false,
            secondary_processes: false,
            memory_mb: 256,
            mbufs: 4095,
            file_prefix: None,
            ports: Vec::new(),
            routes: Vec::new(),
            tunnels: Vec::new(),
            metrics_listen: None,
        }
    }

    /// `[metrics] listen`: serve Prometheus `/metrics` at `addr`.
    pub fn metrics_listen(mut self, addr: &str) -> Self {
        self.metrics_listen = Some(addr.into());
        self
    }

    /// `dataplane.cores`: the polling lcores.
    pub fn cores(mut self, cores: &[u32]) -> Self {
        self.cores = cores.to_vec();
        self
    }

    /// `dataplane.cpus`: the CPU of each polling lcore.
    pub fn cpus(mut self, cpus: &[u32]) -> Self {
        self.cpus = cpus.to_vec();
        self
    }

    /// `dataplane.poll_mode`: `busy`, `adaptive` or `shared`.
    pub fn poll_mode(mut self, mode: &str) -> Self {
        self.poll_mode = Some(mode.into());
        self
    }

    /// `dataplane.idle_wake`: `events` or `timer`.
    pub fn idle_wake(mut self, wake: &str) -> Self {
        self.idle_wake = Some(wake.into());
        self
    }

    pub fn idle_backoff_us(mut self, us: u32) -> Self {
        self.idle_backoff_us = Some(us);
        self
    }

    pub fn admin_socket(mut self, path: &Path) -> Self {
        self.admin_socket = Some(path.into());
        self
    }

    pub fn feed_socket(mut self, path: &Path) -> Self {
        self.feed_socket = Some(path.into());
        self
    }

    pub fn arp_retry_ms(mut self, ms: u32) -> Self {
        self.arp_retry_ms = Some(ms);
        self
    }

    pub fn ra_interval_secs(mut self, secs: u32) -> Self {
        self.ra_interval_secs = Some(secs);
        self
    }

    pub fn kernel_reassembly_secs(mut self, secs: u32) -> Self {
        self.kernel_reassembly_secs = Some(secs);
        self
    }

    /// `dataplane.memory.hugepages`.
    pub fn hugepages(mut self, on: bool) -> Self {
        self.hugepages = on;
        self
    }

    /// `dataplane.memory.secondary_processes` (dpdk-dumpcap may attach).
    pub fn secondary_processes(mut self, on: bool) -> Self {
        self.secondary_processes = on;
        self
    }

    pub fn memory_mb(mut self, mb: u32) -> Self {
        self.memory_mb = mb;
        self
    }

    pub fn mbufs(mut self, n: u32) -> Self {
        self.mbufs = n;
        self
    }

    /// `dataplane.memory.file_prefix` (EAL `--file-prefix`).
    pub fn file_prefix(mut self, prefix: &str) -> Self {
        self.file_prefix = Some(prefix.into());
        self
    }

    /// A `[[port]]`, in order (the first is port 0).
    pub fn port(mut self, port: Port) -> Self {
        self.ports.push(port);
        self
    }

    /// A static `[[route]]` to `prefix` via the gateways `via`.
    pub fn route(mut self, prefix: &str, via: &[&str]) -> Self {
        self.routes
            .push((prefix.into(), via.iter().map(|s| s.to_string()).collect()));
        self
    }

    /// A `[[tunnel]]`.
    pub fn tunnel(mut self, tunnel: Tunnel) -> Self {
        self.tunnels.push(tunnel);
        self
    }

    /// Writes the TOML to `path` and returns the path.
    pub fn write(&self, path: &Path) -> Result<PathBuf> {
        std::fs::write(path, self.to_string())
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path.to_path_buf())
    }
}

impl Display for DataplaneConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut t = String::new();
        let _ = writeln!(t, "[node]\nname = {}", q(&self.name));
        let _ = writeln!(t, "router_address = {}", q(&self.router_address));
        t.push_str("[dataplane]\n");
        let _ = writeln!(t, "cores = {}", na(&self.cores));
        if !self.cpus.is_empty() {
            let _ = writeln!(t, "cpus = {}", na(&self.cpus));
        }
        opt(&mut t, "poll_mode", self.poll_mode.as_deref().map(q));
        opt(&mut t, "idle_wake", self.idle_wake.as_deref().map(q));
        opt(
            &mut t,
            "idle_backoff_us",
            self.idle_backoff_us.map(|v| v.to_string()),
        );
        opt(&mut t, "admin_socket", self.admin_socket.as_deref().map(qp));
        opt(&mut t, "feed_socket", self.feed_socket.as_deref().map(qp));
        opt(
            &mut t,
            "arp_retry_ms",
            self.arp_retry_ms.map(|v| v.to_string()),
        );
        opt(
            &mut t,
            "ra_interval_secs",
            self.ra_interval_secs.map(|v| v.to_string()),
        );
        opt(
            &mut t,
            "kernel_reassembly_secs",
            self.kernel_reassembly_secs.map(|v| v.to_string()),
        );
        t.push_str("[dataplane.memory]\n");
        let _ = writeln!(t, "hugepages = {}", self.hugepages);
        flag(&mut t, "secondary_processes", self.secondary_processes);
        let _ = writeln!(t, "memory_mb = {}", self.memory_mb);
        let _ = writeln!(t, "mbufs = {}", self.mbufs);
        opt(&mut t, "file_prefix", self.file_prefix.as_deref().map(q));
        for p in &self.ports {
            p.render(&mut t);
        }
        for (prefix, via) in &self.routes {
            let _ = writeln!(t, "[[route]]\nprefix = {}\nvia = {}", q(prefix), qa(via));
        }
        for tun in &self.tunnels {
            tun.render(&mut t);
        }
        if let Some(a) = &self.metrics_listen {
            let _ = writeln!(t, "[metrics]\nlisten = {}", q(a));
        }
        f.write_str(&t)
    }
}

/// One `[[port]]` of a dataplane.
#[derive(Debug, Clone)]
pub struct Port {
    name: String,
    driver: String,
    iface: Option<String>,
    socket: Option<PathBuf>,
    role: Option<String>,
    address: String,
    mtu: Option<u16>,
    mac: Option<String>,
    proxy_arp: bool,
    exception_tap: Option<String>,
    unnumbered: bool,
    urpf: Option<String>,
}

impl Port {
    /// A port on kernel interface `iface` with `driver` (`af_packet` or `af_xdp`).
    pub fn new(name: &str, driver: &str, iface: &str, address: &str) -> Port {
        Port {
            name: name.into(),
            driver: driver.into(),
            iface: Some(iface.into()),
            socket: None,
            role: None,
            address: address.into(),
            mtu: None,
            mac: None,
            proxy_arp: false,
            exception_tap: None,
            unnumbered: false,
            urpf: None,
        }
    }

    /// An `af_packet` port on kernel interface `iface`.
    pub fn af_packet(name: &str, iface: &str, address: &str) -> Port {
        Port::new(name, "af_packet", iface, address)
    }

    /// A `memif` port on the control socket `socket`.
    pub fn memif(name: &str, socket: &Path, address: &str) -> Port {
        Port {
            iface: None,
            socket: Some(socket.into()),
            ..Port::new(name, "memif", "", address)
        }
    }

    pub fn mtu(mut self, mtu: u16) -> Self {
        self.mtu = Some(mtu);
        self
    }

    pub fn mac(mut self, mac: &str) -> Self {
        self.mac = Some(mac.into());
        self
    }

    /// memif: `server` or `client`.
    pub fn role(mut self, role: &str) -> Self {
        self.role = Some(role.into());
        self
    }

    pub fn proxy_arp(mut self) -> Self {
        self.proxy_arp = true;
        self
    }

    /// The kernel TAP of this port's exception path.
    pub fn exception_tap(mut self, tap: &str) -> Self {
        self.exception_tap = Some(tap.into());
        self
    }

    /// BGP unnumbered: Router Advertisements from the port's link-local address.
    pub fn unnumbered(mut self) -> Self {
        self.unnumbered = true;
        self
    }

    /// Reverse-path check: `off` or `strict`.
    pub fn urpf(mut self, mode: &str) -> Self {
        self.urpf = Some(mode.into());
        self
    }

    fn render(&self, t: &mut String) {
        let _ = writeln!(t, "[[port]]\nname = {}", q(&self.name));
        let _ = writeln!(t, "driver = {}", q(&self.driver));
        opt(t, "iface", self.iface.as_deref().map(q));
        opt(t, "socket", self.socket.as_deref().map(qp));
        opt(t, "role", self.role.as_deref().map(q));
        let _ = writeln!(t, "address = {}", q(&self.address));
        opt(t, "mtu", self.mtu.map(|v| v.to_string()));
        opt(t, "mac", self.mac.as_deref().map(q));
        flag(t, "proxy_arp", self.proxy_arp);
        opt(t, "exception_tap", self.exception_tap.as_deref().map(q));
        flag(t, "unnumbered", self.unnumbered);
        opt(t, "urpf", self.urpf.as_deref().map(q));
    }
}

/// One `[[tunnel]]` of a dataplane.
#[derive(Debug, Clone)]
pub struct Tunnel {
    id: u32,
    kind: String,
    local: String,
    remote: String,
    gre_key: Option<u32>,
    private_key: Option<String>,
    peer_public_key: Option<String>,
}

impl Tunnel {
    /// The remote transport address.
    pub fn remote(&self) -> &str {
        &self.remote
    }

    /// Tunnel `id` of `kind` (`ipip`, `gre`, `fou`, `gue`, `wireguard`) from
    /// our transport address `local` to `remote`.
    pub fn new(id: u32, kind: &str, local: &str, remote: &str) -> Tunnel {
        Tunnel {
            id,
            kind: kind.into(),
            local: local.into(),
            remote: remote.into(),
            gre_key: None,
            private_key: None,
            peer_public_key: None,
        }
    }

    pub fn gre_key(mut self, key: u32) -> Self {
        self.gre_key = Some(key);
        self
    }

    /// WireGuard: our private key and the peer's public key (base64).
    pub fn wireguard_keys(mut self, private_key: &str, peer_public_key: &str) -> Self {
        self.private_key = Some(private_key.into());
        self.peer_public_key = Some(peer_public_key.into());
        self
    }

    fn render(&self, t: &mut String) {
        let _ = writeln!(t, "[[tunnel]]\nid = {}\nkind = {}", self.id, q(&self.kind));
        let _ = writeln!(
            t,
            "local = {}\nremote = {}",
            q(&self.local),
            q(&self.remote)
        );
        opt(t, "gre_key", self.gre_key.map(|v| v.to_string()));
        opt(t, "private_key", self.private_key.as_deref().map(q));
        opt(t, "peer_public_key", self.peer_public_key.as_deref().map(q));
    }
}

// ---------------------------------------------------------------------------
// cer-control

/// A cer-control config body (everything but `[admin]`).
#[derive(Debug, Clone)]
pub struct ControlConfig {
    name: String,
    router_id: String,
    asn: u32,
    transport_address: String,
    listen: Vec<String>,
    hold_time: Option<u16>,
    connect_retry_secs: Option<u64>,
    graceful_restart_secs: Option<u16>,
    route_reflector: bool,
    networks: Vec<String>,
    neighbors: Vec<Neighbor>,
    sam: Option<Sam>,
    tunnels: Vec<(u32, String)>,
    feed_socket: Option<PathBuf>,
    lan_port: Option<String>,
    initial_sync_delay_secs: Option<u64>,
    capture: Vec<(String, String)>,
    capture_aws: Option<[String; 3]>,
    reconciler: Option<(u64, u64)>,
    raw: String,
    metrics_listen: Option<String>,
}

#[derive(Debug, Clone)]
struct Sam {
    identity: String,
    marker_community: String,
    marker_prefix: String,
    pool: Vec<String>,
    state_file: PathBuf,
    endpoints: Vec<String>,
}

impl ControlConfig {
    /// Node `name` in `asn` with `router_id`, which is also its transport
    /// address unless [`ControlConfig::transport_address`] says otherwise.
    pub fn new(name: &str, router_id: &str, asn: u32) -> Self {
        ControlConfig {
            name: name.into(),
            router_id: router_id.into(),
            asn,
            transport_address: router_id.into(),
            listen: Vec::new(),
            hold_time: None,
            connect_retry_secs: None,
            graceful_restart_secs: None,
            route_reflector: false,
            networks: Vec::new(),
            neighbors: Vec::new(),
            sam: None,
            tunnels: Vec::new(),
            feed_socket: None,
            lan_port: None,
            initial_sync_delay_secs: None,
            capture: Vec::new(),
            capture_aws: None,
            reconciler: None,
            raw: String::new(),
            metrics_listen: None,
        }
    }

    /// TOML tables appended as they are (`[[policy]]` definitions).
    pub fn raw(mut self, toml: &str) -> Self {
        self.raw.push_str(toml);
        self.raw.push('\n');
        self
    }

    /// `[metrics] listen`: serve Prometheus `/metrics` at `addr`.
    pub fn metrics_listen(mut self, addr: &str) -> Self {
        self.metrics_listen = Some(addr.into());
        self
    }

    pub fn transport_address(mut self, addr: &str) -> Self {
        self.transport_address = addr.into();
        self
    }

    /// `bgp.listen`: addresses (or `address:port`) to accept sessions on.
    pub fn listen(mut self, addrs: &[&str]) -> Self {
        self.listen = addrs.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn hold_time(mut self, secs: u16) -> Self {
        self.hold_time = Some(secs);
        self
    }

    pub fn connect_retry_secs(mut self, secs: u64) -> Self {
        self.connect_retry_secs = Some(secs);
        self
    }

    /// What most tests use: hold time 9 s and connect retry 1 s, so
    /// sessions come up and fail fast.
    pub fn fast_timers(self) -> Self {
        self.hold_time(9).connect_retry_secs(1)
    }

    pub fn graceful_restart_secs(mut self, secs: u16) -> Self {
        self.graceful_restart_secs = Some(secs);
        self
    }

    /// `bgp.route_reflector = true`.
    pub fn route_reflector(mut self) -> Self {
        self.route_reflector = true;
        self
    }

    /// `bgp.networks`: prefixes this node originates.
    pub fn networks(mut self, prefixes: &[&str]) -> Self {
        self.networks = prefixes.iter().map(|s| s.to_string()).collect();
        self
    }

    /// A `[[bgp.neighbor]]`, in order.
    pub fn neighbor(mut self, n: Neighbor) -> Self {
        self.neighbors.push(n);
        self
    }

    /// `[sam]`: this node's `identity` community and marker prefix, its
    /// state file; marker community `ASN:999` and pool `10.77.60.0/24` (the
    /// tests' conventions).
    pub fn sam(mut self, identity: &str, marker_prefix: &str, state_file: &Path) -> Self {
        self.sam = Some(Sam {
            identity: identity.into(),
            marker_community: format!("{}:999", self.asn),
            marker_prefix: marker_prefix.into(),
            pool: vec!["10.77.60.0/24".into()],
            state_file: state_file.into(),
            endpoints: Vec::new(),
        });
        self
    }

    /// `sam.endpoints`: /32s owned from the start (after [`ControlConfig::sam`]).
    pub fn endpoints(mut self, ips: &[&str]) -> Self {
        let sam = self
            .sam
            .as_mut()
            .expect("ControlConfig::sam before endpoints");
        sam.endpoints = ips.iter().map(|s| s.to_string()).collect();
        self
    }

    /// A `[[tunnel]]`: dataplane tunnel `id` leads to the CER at `remote`.
    pub fn tunnel(mut self, id: u32, remote: &str) -> Self {
        self.tunnels.push((id, remote.into()));
        self
    }

    /// `dataplane.feed_socket`: the dataplane's FIB feed.
    pub fn feed_socket(mut self, path: &Path) -> Self {
        self.feed_socket = Some(path.into());
        self
    }

    /// `dataplane.lan_port`.
    pub fn lan_port(mut self, port: &str) -> Self {
        self.lan_port = Some(port.into());
        self
    }

    /// `dataplane.initial_sync_delay_secs`.
    pub fn initial_sync_delay_secs(mut self, secs: u64) -> Self {
        self.initial_sync_delay_secs = Some(secs);
        self
    }

    fn capture_key(mut self, key: &str, value: String) -> Self {
        self.capture.push((key.into(), value));
        self
    }

    /// `capture.mode`: `none`, `onprem`, `aws`, `azure` or `oci`.
    pub fn capture_mode(self, mode: &str) -> Self {
        self.capture_key("mode", q(mode))
    }

    /// `capture.single_router = true` (on-prem capture without VRRP).
    pub fn single_router(self) -> Self {
        self.capture_key("single_router", "true".into())
    }

    /// On-prem capture gated by keepalived: its notify FIFO and VRRP instance.
    pub fn vrrp(self, notify_fifo: &Path, instance: &str) -> Self {
        self.capture_key("vrrp_notify_fifo", qp(notify_fifo))
            .capture_key("vrrp_instance", q(instance))
    }

    pub fn garp_count(self, n: u8) -> Self {
        self.capture_key("garp_count", n.to_string())
    }

    /// `[capture.aws]`: region, EC2 endpoint and IMDS endpoint.
    pub fn capture_aws(mut self, region: &str, endpoint_url: &str, imds_endpoint: &str) -> Self {
        self.capture_aws = Some([region.into(), endpoint_url.into(), imds_endpoint.into()]);
        self
    }

    /// `[capture.reconciler]`: confirm time-out and resync period.
    pub fn reconciler(mut self, confirm_timeout_secs: u64, resync_secs: u64) -> Self {
        self.reconciler = Some((confirm_timeout_secs, resync_secs));
        self
    }
}

impl Display for ControlConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut t = String::new();
        let _ = writeln!(t, "[node]\nname = {}", q(&self.name));
        let _ = writeln!(t, "router_id = {}\nasn = {}", q(&self.router_id), self.asn);
        let _ = writeln!(t, "transport_address = {}", q(&self.transport_address));
        t.push_str("[bgp]\n");
        if !self.listen.is_empty() {
            let _ = writeln!(t, "listen = {}", qa(&self.listen));
        }
        opt(&mut t, "hold_time", self.hold_time.map(|v| v.to_string()));
        opt(
            &mut t,
            "connect_retry_secs",
            self.connect_retry_secs.map(|v| v.to_string()),
        );
        opt(
            &mut t,
            "graceful_restart_secs",
            self.graceful_restart_secs.map(|v| v.to_string()),
        );
        flag(&mut t, "route_reflector", self.route_reflector);
        if !self.networks.is_empty() {
            let _ = writeln!(t, "networks = {}", qa(&self.networks));
        }
        for n in &self.neighbors {
            n.render(&mut t);
        }
        if let Some(s) = &self.sam {
            let _ = writeln!(t, "[sam]\nidentity = {}", q(&s.identity));
            let _ = writeln!(t, "marker_community = {}", q(&s.marker_community));
            let _ = writeln!(t, "marker_prefix = {}", q(&s.marker_prefix));
            let _ = writeln!(t, "pool = {}", qa(&s.pool));
            let _ = writeln!(t, "state_file = {}", qp(&s.state_file));
            if !s.endpoints.is_empty() {
                let _ = writeln!(t, "endpoints = {}", qa(&s.endpoints));
            }
        }
        for (id, remote) in &self.tunnels {
            let _ = writeln!(t, "[[tunnel]]\nid = {id}\nremote = {}", q(remote));
        }
        if self.feed_socket.is_some()
            || self.lan_port.is_some()
            || self.initial_sync_delay_secs.is_some()
        {
            t.push_str("[dataplane]\n");
            opt(&mut t, "feed_socket", self.feed_socket.as_deref().map(qp));
            opt(&mut t, "lan_port", self.lan_port.as_deref().map(q));
            opt(
                &mut t,
                "initial_sync_delay_secs",
                self.initial_sync_delay_secs.map(|v| v.to_string()),
            );
        }
        if !self.capture.is_empty() || self.capture_aws.is_some() || self.reconciler.is_some() {
            t.push_str("[capture]\n");
            for (k, v) in &self.capture {
                let _ = writeln!(t, "{k} = {v}");
            }
        }
        if let Some([region, endpoint, imds]) = &self.capture_aws {
            let _ = writeln!(t, "[capture.aws]\nregion = {}", q(region));
            let _ = writeln!(t, "endpoint_url = {}", q(endpoint));
            let _ = writeln!(t, "imds_endpoint = {}", q(imds));
        }
        if let Some((confirm, resync)) = self.reconciler {
            let _ = writeln!(
                t,
                "[capture.reconciler]\nconfirm_timeout_secs = {confirm}\nresync_secs = {resync}"
            );
        }
        if let Some(a) = &self.metrics_listen {
            let _ = writeln!(t, "[metrics]\nlisten = {}", q(a));
        }
        t.push_str(&self.raw);
        f.write_str(&t)
    }
}

/// One `[[bgp.neighbor]]` of cer-control.
#[derive(Debug, Clone)]
pub struct Neighbor {
    address: Option<String>,
    interface: Option<String>,
    dataplane_port: Option<String>,
    /// The rendered TOML value: a number or a quoted word.
    remote_as: String,
    description: Option<String>,
    passive: bool,
    rr_client: bool,
    /// `bfd = true` with (min tx ms, min rx ms, multiplier).
    bfd: Option<(u64, u64, u8)>,
    bfd_multihop: bool,
    bfd_key: Option<String>,
    /// `add_path = "receive" | "send" | "both"`.
    add_path: Option<String>,
    /// TCP-MD5 key (`password`).
    password: Option<String>,
    ttl_security: bool,
    import_policy: Option<String>,
    export_policy: Option<String>,
    /// `keep_received = false` when set.
    drop_received: bool,
}

impl Neighbor {
    fn with_remote_as(address: Option<&str>, remote_as: String) -> Neighbor {
        Neighbor {
            address: address.map(str::to_string),
            interface: None,
            dataplane_port: None,
            remote_as,
            description: None,
            passive: false,
            rr_client: false,
            bfd: None,
            bfd_multihop: false,
            bfd_key: None,
            add_path: None,
            password: None,
            ttl_security: false,
            import_policy: None,
            export_policy: None,
            drop_received: false,
        }
    }

    /// An iBGP neighbor at `address` (`remote_as = "internal"`).
    pub fn internal(address: &str) -> Neighbor {
        Neighbor::with_remote_as(Some(address), q("internal"))
    }

    /// An eBGP neighbor at `address` in AS `remote_as`.
    pub fn ebgp(address: &str, remote_as: u32) -> Neighbor {
        Neighbor::with_remote_as(Some(address), remote_as.to_string())
    }

    /// A BGP unnumbered neighbor behind the exception TAP `interface` of
    /// `dataplane_port`, in any other AS (`remote_as = "external"`).
    pub fn unnumbered(interface: &str, dataplane_port: &str) -> Neighbor {
        Neighbor {
            interface: Some(interface.into()),
            dataplane_port: Some(dataplane_port.into()),
            ..Neighbor::with_remote_as(None, q("external"))
        }
    }

    pub fn description(mut self, text: &str) -> Self {
        self.description = Some(text.into());
        self
    }

    /// Wait for the neighbor to connect.
    pub fn passive(mut self) -> Self {
        self.passive = true;
        self
    }

    /// A route-reflector client of this node.
    pub fn rr_client(mut self) -> Self {
        self.rr_client = true;
        self
    }

    /// BFD to this neighbor: `bfd = true`, its intervals and multiplier.
    pub fn bfd(mut self, min_tx_ms: u64, min_rx_ms: u64, multiplier: u8) -> Self {
        self.bfd = Some((min_tx_ms, min_rx_ms, multiplier));
        self
    }

    /// RFC 5883 multihop BFD (after [`Neighbor::bfd`]).
    pub fn bfd_multihop(mut self) -> Self {
        self.bfd_multihop = true;
        self
    }

    /// Keyed SHA1 with `key` (key id 1) (after [`Neighbor::bfd`]).
    pub fn bfd_key(mut self, key: &str) -> Self {
        self.bfd_key = Some(key.into());
        self
    }

    /// ADD-PATH (RFC 7911) offered: `receive`, `send` or `both`.
    pub fn add_path(mut self, mode: &str) -> Self {
        self.add_path = Some(mode.into());
        self
    }

    /// TCP-MD5 (RFC 2385) with `key`.
    pub fn password(mut self, key: &str) -> Self {
        self.password = Some(key.into());
        self
    }

    /// GTSM (RFC 5082).
    pub fn ttl_security(mut self) -> Self {
        self.ttl_security = true;
        self
    }

    /// `import_policy`: a `[[policy]]` by name (see [`ControlConfig::raw`]).
    pub fn import_policy(mut self, name: &str) -> Self {
        self.import_policy = Some(name.into());
        self
    }

    /// `export_policy`: a `[[policy]]` by name.
    pub fn export_policy(mut self, name: &str) -> Self {
        self.export_policy = Some(name.into());
        self
    }

    /// `keep_received = false`: no pre-policy Adj-RIB-In.
    pub fn without_received(mut self) -> Self {
        self.drop_received = true;
        self
    }

    fn render(&self, t: &mut String) {
        t.push_str("[[bgp.neighbor]]\n");
        opt(t, "import_policy", self.import_policy.as_deref().map(q));
        opt(t, "export_policy", self.export_policy.as_deref().map(q));
        if self.drop_received {
            t.push_str("keep_received = false\n");
        }
        opt(t, "password", self.password.as_deref().map(q));
        flag(t, "ttl_security", self.ttl_security);
        opt(t, "add_path", self.add_path.as_deref().map(q));
        opt(t, "address", self.address.as_deref().map(q));
        opt(t, "interface", self.interface.as_deref().map(q));
        opt(t, "dataplane_port", self.dataplane_port.as_deref().map(q));
        let _ = writeln!(t, "remote_as = {}", self.remote_as);
        opt(t, "description", self.description.as_deref().map(q));
        flag(t, "passive", self.passive);
        flag(t, "rr_client", self.rr_client);
        if let Some((tx, rx, mult)) = self.bfd {
            let _ = writeln!(
                t,
                "bfd = true\nbfd_min_tx_ms = {tx}\nbfd_min_rx_ms = {rx}\nbfd_multiplier = {mult}"
            );
            flag(t, "bfd_multihop", self.bfd_multihop);
            opt(t, "bfd_key", self.bfd_key.as_deref().map(q));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cer_controlplane::control::config::ControlConfig as Parsed;
    use cer_shared::config::NodeConfig;

    fn node(c: &DataplaneConfig) -> NodeConfig {
        let text = c.to_string();
        NodeConfig::parse(&text, Path::new("test.toml")).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    fn control(c: &ControlConfig) -> Parsed {
        let text = c.to_string();
        Parsed::parse(&text, Path::new("test.toml")).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    #[test]
    fn quoting() {
        assert_eq!(q("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(qa(&["x", "y"]), r#"["x", "y"]"#);
        assert_eq!(na(&[1, 2]), "[1, 2]");
    }

    #[test]
    fn dataplane_defaults_parse() {
        let c = node(
            &DataplaneConfig::new("n", "10.1.0.1")
                .admin_socket(Path::new("/tmp/a.sock"))
                .feed_socket(Path::new("/tmp/f.sock"))
                .file_prefix("n1")
                .port(Port::af_packet("lan", "v0", "10.1.0.1/24")),
        );
        assert_eq!(c.node.name, "n");
        assert_eq!(c.dataplane.cores, vec![1]);
        assert_eq!(format!("{:?}", c.dataplane.poll_mode), "Adaptive");
        assert!(!c.dataplane.memory.hugepages);
        assert_eq!(c.dataplane.memory.memory_mb, 256);
        assert_eq!(c.dataplane.memory.mbufs, 4095);
        assert_eq!(c.dataplane.memory.file_prefix.as_deref(), Some("n1"));
        assert_eq!(c.dataplane.admin_socket, Path::new("/tmp/a.sock"));
        assert_eq!(c.ports.len(), 1);
        assert_eq!(c.ports[0].mtu, 1500);
        // Unset fields keep the daemon's defaults.
        assert_eq!(c.dataplane.arp_retry_ms, 1000);
    }

    #[test]
    fn dataplane_every_field_parses() {
        let c = node(
            &DataplaneConfig::new("n", "10.2.0.1")
                .cores(&[1, 2])
                .cpus(&[1, 1])
                .poll_mode("shared")
                .idle_wake("timer")
                .idle_backoff_us(3000)
                .admin_socket(Path::new("/tmp/a.sock"))
                .feed_socket(Path::new("/tmp/f.sock"))
                .arp_retry_ms(200)
                .ra_interval_secs(4)
                .kernel_reassembly_secs(2)
                .hugepages(true)
                .memory_mb(512)
                .mbufs(8191)
                .file_prefix("p")
                .port(
                    Port::new("lan", "af_xdp", "v0", "10.1.0.1/24")
                        .proxy_arp()
                        .urpf("strict"),
                )
                .port(
                    Port::af_packet("wan", "v1", "10.2.0.1/24")
                        .exception_tap("t0")
                        .mtu(9000)
                        .unnumbered(),
                )
                .port(
                    Port::memif("m", Path::new("/tmp/m.sock"), "10.3.0.1/24")
                        .role("server")
                        .mac("02:00:00:00:00:01"),
                )
                .route("0.0.0.0/0", &["10.2.0.20"])
                .tunnel(Tunnel::new(1, "gre", "10.2.0.1", "10.2.0.20").gre_key(4242))
                .tunnel(
                    Tunnel::new(2, "wireguard", "10.2.0.1", "10.2.0.21").wireguard_keys(
                        "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=",
                        "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=",
                    ),
                ),
        );
        assert_eq!(c.dataplane.cpus, vec![1, 1]);
        assert_eq!(c.dataplane.idle_backoff_us, 3000);
        assert_eq!(c.dataplane.kernel_reassembly_secs, 2);
        assert!(c.dataplane.memory.hugepages);
        assert!(c.ports[0].proxy_arp);
        assert_eq!(c.ports[1].exception_tap.as_deref(), Some("t0"));
        assert!(c.ports[1].unnumbered);
        assert_eq!(c.ports[2].socket.as_deref(), Some(Path::new("/tmp/m.sock")));
        assert_eq!(c.routes.len(), 1);
        assert_eq!(c.tunnels[0].gre_key, Some(4242));
        assert!(c.tunnels[1].peer_public_key.is_some());
    }

    #[test]
    fn control_parses() {
        let c = control(
            &ControlConfig::new("a", "10.10.0.2", 65000)
                .fast_timers()
                .graceful_restart_secs(0)
                .neighbor(Neighbor::internal("10.10.0.1"))
                .sam("65000:1002", "10.255.0.2/32", Path::new("/tmp/ep.json"))
                .tunnel(2, "10.10.0.2")
                .feed_socket(Path::new("/tmp/f.sock"))
                .lan_port("lan")
                .initial_sync_delay_secs(2)
                .capture_mode("onprem")
                .single_router(),
        );
        assert_eq!(c.bgp.hold_time, 9);
        assert_eq!(c.bgp.connect_retry_secs, 1);
        assert_eq!(c.bgp.graceful_restart_secs, 0);
        assert_eq!(c.sam.marker_community.to_string(), "65000:999");
        assert_eq!(c.tunnels.len(), 1);
        assert_eq!(c.dataplane.initial_sync_delay_secs, 2);
        assert!(c.capture.single_router);
    }

    #[test]
    fn control_every_field_parses() {
        let c = control(
            &ControlConfig::new("rr", "10.10.0.1", 65000)
                .transport_address("10.30.0.1")
                .listen(&["10.10.0.1"])
                .hold_time(30)
                .route_reflector()
                .networks(&["10.1.0.0/24"])
                .neighbor(Neighbor::internal("10.10.0.5").rr_client().passive())
                .neighbor(
                    Neighbor::ebgp("10.10.0.7", 65001)
                        .description("frr")
                        .bfd(100, 200, 4)
                        .bfd_multihop()
                        .bfd_key("k"),
                )
                .neighbor(Neighbor::unnumbered("tap0", "swp1"))
                .sam("65000:1050", "10.255.0.1/32", Path::new("/tmp/ep.json"))
                .endpoints(&["10.77.60.50"])
                .capture_mode("aws")
                .capture_aws(
                    "eu-west-1",
                    "http://127.0.0.1:8700",
                    "http://127.0.0.1:8700",
                )
                .reconciler(10, 5),
        );
        assert_eq!(c.node.transport_address.to_string(), "10.30.0.1");
        assert!(c.bgp.route_reflector);
        assert_eq!(c.bgp.neighbors.len(), 3);
        assert!(c.bgp.neighbors[0].rr_client && c.bgp.neighbors[0].passive);
        assert_eq!(c.bgp.neighbors[2].interface.as_deref(), Some("tap0"));
        let b = &c.bgp.neighbors[1];
        assert!(b.bfd && b.bfd_multihop && !c.bgp.neighbors[0].bfd);
        assert_eq!(
            (b.bfd_min_tx_ms, b.bfd_min_rx_ms, b.bfd_multiplier),
            (100, 200, 4)
        );
        assert_eq!(b.bfd_key.as_deref(), Some("k"));
        assert_eq!(c.sam.endpoints.len(), 1);
        assert!(c.capture.aws.is_some());
        assert_eq!(c.capture.reconciler.resync_secs, 5);
    }
}
