//! Real BGP daemons as test peers: gobgpd, FRR (zebra + bgpd) and BIRD 2,
//! each started inside a network namespace the test created.
//!
//! Every launcher
//! - creates its own directory under the scratch directory it is given
//!   (config, logs, pid files, control sockets) and removes it on drop
//!   (kept when `CER_KEEP_SCRATCH` is set, like [`crate::Scratch`]);
//! - runs its daemons in the foreground as children of the test, so they are
//!   stopped by PID on drop (SIGTERM, then SIGKILL after 5 s; see [`Proc`]);
//! - runs the daemon's own CLI (`gobgp`, `vtysh`, `birdc`) inside the same
//!   namespace with a time limit, and names the daemon, the namespace and the
//!   command in every error (command failure, time-out, unparsable output);
//! - reads routes into one shape, [`RibEntry`], so a test can check what
//!   gobgpd, FRR and BIRD received the same way ([`RibSource`]).
//!
//! Declare a launcher *after* the [`Netns`] it runs in: locals drop in
//! reverse order, so the daemon gets its SIGTERM and cleans up before the
//! namespace goes (the namespace's drop would SIGKILL it anyway).
//!
//! Quirks these launchers handle (Debian 12: gobgpd 3.10, FRR 8.4, BIRD 2.0.12):
//! - gobgpd: each namespace can bind its own `127.0.0.1:50051`, so the API
//!   port only needs changing for a second gobgpd in one namespace. Its own
//!   connect retry has a 5 s floor, so the builders make gobgpd passive
//!   (`passive: true`) and let the peers dial: sessions are up in about 1 s.
//!   `gobgp neighbor -j` reports `session_state` as a number (6 = established).
//!   `gobgp global rib add` costs a process per route (~10 ms): bulk routes go
//!   through MRT TABLE_DUMP_V2 records and `gobgp mrt inject global`, fed by
//!   a FIFO because the 3.10 CLI drops the tail of a regular file
//!   ([`GoBgp::add_routes`]).
//! - FRR: zebra and bgpd run without `-d`, with per-instance `-i` (pid file),
//!   `-z` (zserv socket) and `--vty_socket` paths and `-P 0` (no vty TCP), as
//!   user `frr`: the instance directory is chowned to `frr` and every
//!   directory above it must be searchable by others. `show bgp ipv4 unicast
//!   json` has no communities, originator or cluster list in 8.4: routes are
//!   read from `show bgp ipv4 unicast json detail`, whose arrays start with a
//!   header object before the paths. `network X` needs
//!   `no bgp network import-check` unless zebra has a route for X.
//! - BIRD: `rr` and `originate` are keywords (not protocol names); iBGP
//!   sessions are multihop by default, so received next hops stay unresolved
//!   ("unreachable") without an IGP table; the builder declares the session
//!   `direct` (multihop sessions refuse `gateway direct`). The first connect
//!   waits `connect delay time` (5 s by default, 1 s in the builder). BIRD
//!   treats a received route whose NEXT_HOP is one of its own addresses as
//!   withdrawn ("Invalid NEXT_HOP attribute - address ... is local").
//!   `birdc` has no JSON: `show route all` is parsed ([`parse_bird_routes`]).

use crate::{sh, tag, Netns, Proc};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use std::fmt::Write as _;
use std::io::Read;
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Time limit of one CLI call (`gobgp`, `vtysh`, `birdc`).
pub const CLI_TIMEOUT: Duration = Duration::from_secs(20);
/// Time a daemon gets to answer its CLI after start.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(100);

// ---------------------------------------------------------------------------
// Shared types and helpers

/// One path of one prefix as a daemon shows it, normalised across daemons.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RibEntry {
    /// `10.99.0.1/32`.
    pub prefix: String,
    /// BGP next hop (the first one for IPv6 global + link-local); empty when the
    /// daemon shows none (e.g. a BIRD static blackhole). FRR shows `0.0.0.0`
    /// for its own networks.
    pub next_hop: String,
    /// AS numbers in order; AS_SET members are flattened in.
    pub as_path: Vec<u32>,
    /// `igp`, `egp` or `incomplete`; empty when unknown.
    pub origin: String,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    /// Standard communities as `ASN:VALUE`.
    pub communities: Vec<String>,
    /// Large communities as `GLOBAL:LOCAL1:LOCAL2`.
    pub large_communities: Vec<String>,
    pub originator_id: Option<String>,
    pub cluster_list: Vec<String>,
    /// The daemon selected this path as best (always false for gobgpd adj-in).
    pub best: bool,
}

impl RibEntry {
    pub fn has_community(&self, c: &str) -> bool {
        self.communities.iter().any(|x| x == c)
    }
}

/// The best path for `prefix` (or its only path) in a route list.
pub fn best_for<'a>(routes: &'a [RibEntry], prefix: &str) -> Option<&'a RibEntry> {
    let mut it = routes.iter().filter(|r| r.prefix == prefix);
    let first = it.clone().next()?;
    Some(it.find(|r| r.best).unwrap_or(first))
}

/// A daemon whose selected routes can be read and waited on.
pub trait RibSource {
    /// `gobgpd@NETNS`, `FRR@NETNS`, `BIRD@NETNS`: used in error messages.
    fn label(&self) -> String;
    /// Every path the daemon holds for IPv4 unicast (its Loc-RIB).
    fn loc_rib(&self) -> Result<Vec<RibEntry>>;
    /// Fails (with the log tail) when a daemon of this instance has exited.
    fn check_running(&self) -> Result<()>;

    /// Waits until the best path for `prefix` satisfies `pred`; returns it.
    /// The time-out error shows the last path seen (or that there was none).
    fn wait_route(
        &self,
        prefix: &str,
        timeout: Duration,
        pred: &dyn Fn(&RibEntry) -> bool,
    ) -> Result<RibEntry> {
        wait_for(
            &format!("{}: route {prefix} as expected", self.label()),
            timeout,
            || self.check_running(),
            |last| {
                let rib = self.loc_rib()?;
                match best_for(&rib, prefix) {
                    Some(r) if pred(r) => Ok(Some(r.clone())),
                    Some(r) => {
                        *last = format!("{r:?}");
                        Ok(None)
                    }
                    None => {
                        *last = format!("no route for {prefix} ({} routes)", rib.len());
                        Ok(None)
                    }
                }
            },
        )
    }

    /// Waits until the daemon has no path for `prefix`.
    fn wait_withdrawn(&self, prefix: &str, timeout: Duration) -> Result<()> {
        wait_for(
            &format!("{}: {prefix} withdrawn", self.label()),
            timeout,
            || self.check_running(),
            |last| {
                let rib = self.loc_rib()?;
                match best_for(&rib, prefix) {
                    Some(r) => {
                        *last = format!("still present: {r:?}");
                        Ok(None)
                    }
                    None => Ok(Some(())),
                }
            },
        )
    }
}

/// Polls `f` every 100 ms until it yields a value. `f` may note what it saw
/// in `last`, which the time-out error shows; an `Err` from `f` counts as "not
/// yet" (and is shown the same way) unless `alive` fails, which ends the wait
/// at once (a daemon that exited will not come up).
fn wait_for<T>(
    what: &str,
    timeout: Duration,
    alive: impl Fn() -> Result<()>,
    mut f: impl FnMut(&mut String) -> Result<Option<T>>,
) -> Result<T> {
    let start = Instant::now();
    let mut last = String::new();
    loop {
        match f(&mut last) {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = format!("error: {e:#}"),
        }
        alive()?;
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
        }
        std::thread::sleep(POLL);
    }
}

/// Runs `args` inside netns `ns` with a time limit and returns stdout. Errors
/// name `label` (daemon@netns) and the command. The child is killed by PID
/// on time-out.
fn run_cli(label: &str, ns: &str, args: &[&str], timeout: Duration) -> Result<String> {
    let cmdline = args.join(" ");
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("{label}: starting `{cmdline}`"))?;
    let mut so = child.stdout.take().expect("piped stdout");
    let mut se = child.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let mut nap = Duration::from_millis(1);
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if start.elapsed() > timeout {
            // Child::kill is kill(2) on this child's PID.
            let _ = child.kill();
            let _ = child.wait();
            bail!("{label}: `{cmdline}` timed out after {timeout:?}");
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(20));
    };
    let stdout = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
    if !status.success() {
        bail!(
            "{label}: `{cmdline}` failed ({status}): {}{}",
            stderr.trim(),
            if stdout.trim().is_empty() {
                String::new()
            } else {
                format!(" / stdout: {}", excerpt(&stdout))
            }
        );
    }
    Ok(stdout)
}

fn excerpt(s: &str) -> String {
    let s = s.trim();
    if s.len() <= 400 {
        s.to_string()
    } else {
        let mut end = 400;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}... ({} bytes)", &s[..end], s.len())
    }
}

fn parse_json(label: &str, cmd: &str, text: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| {
        anyhow!(
            "{label}: parsing output of `{cmd}` as JSON: {e}; output: {}",
            excerpt(text)
        )
    })
}

/// True while `pid` runs (not exited, not a zombie).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => match s
            .rfind(')')
            .and_then(|i| s[i + 1..].split_whitespace().next())
        {
            Some(state) => state != "Z" && state != "X",
            None => false,
        },
        Err(_) => false,
    }
}

/// True when a TCP socket listens on `port` in the network namespace of
/// `pid` (read from `/proc/PID/net/tcp`, which shows that namespace).
fn tcp_listening(pid: u32, port: u16) -> bool {
    let want = format!(":{port:04X}");
    std::fs::read_to_string(format!("/proc/{pid}/net/tcp"))
        .map(|t| {
            t.lines().skip(1).any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 3 && f[1].ends_with(&want) && f[3] == "0A"
            })
        })
        .unwrap_or(false)
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn check_alive(label: &str, proc: &Proc) -> Result<()> {
    if alive(proc.pid()) {
        Ok(())
    } else {
        bail!(
            "{label}: daemon (pid {}) exited; log {}:\n{}",
            proc.pid(),
            proc.log.display(),
            log_tail(&proc.log, 30)
        )
    }
}

fn need_binary(label: &str, path: &str) -> Result<()> {
    let found = if path.contains('/') {
        Path::new(path).exists()
    } else {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(path).exists()))
            .unwrap_or(false)
    };
    if !found {
        bail!("{label}: {path} not found; run `bash scripts/bootstrap` as root");
    }
    Ok(())
}

/// A fresh per-instance directory under `scratch`.
fn instance_dir(scratch: &Path, kind: &str) -> Result<PathBuf> {
    let dir = scratch.join(format!("{kind}-{}", tag()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn remove_dir(dir: &Path) {
    if std::env::var_os("CER_KEEP_SCRATCH").is_none() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn origin_name(code: u64) -> &'static str {
    match code {
        0 => "igp",
        1 => "egp",
        2 => "incomplete",
        _ => "",
    }
}

fn parse_community(c: &str) -> Result<u32> {
    let (a, b) = c
        .split_once(':')
        .ok_or_else(|| anyhow!("community {c:?} is not ASN:VALUE"))?;
    let a: u16 = a.parse().with_context(|| format!("community {c:?}"))?;
    let b: u16 = b.parse().with_context(|| format!("community {c:?}"))?;
    Ok(((a as u32) << 16) | b as u32)
}

// ---------------------------------------------------------------------------
// Config builders

/// An iBGP speaker for the config builders: one session per neighbor, all in
/// `asn`, IPv4 unicast, local `networks` originated.
#[derive(Debug, Clone)]
pub struct IbgpConf<'a> {
    pub asn: u32,
    pub router_id: &'a str,
    /// Address the sessions use (gobgpd also listens only there).
    pub local_addr: &'a str,
    pub neighbors: &'a [&'a str],
    /// Neighbors are route-reflector clients (cluster id = router id).
    pub rr_clients: bool,
    /// Wait for neighbors to dial instead of dialing (gobgpd's own dial has a
    /// 5 s floor, so make gobgpd the passive end).
    pub passive: bool,
    /// Prefixes this speaker originates (gobgpd: add them with
    /// [`GoBgp::add_route`] instead; its config has no static routes).
    pub networks: &'a [&'a str],
}

/// gobgpd as a passive route reflector for `clients` (the clients dial).
pub fn gobgp_rr_config(asn: u32, router_id: &str, listen_addr: &str, clients: &[&str]) -> String {
    gobgp_config(&IbgpConf {
        asn,
        router_id,
        local_addr: listen_addr,
        neighbors: clients,
        rr_clients: true,
        passive: true,
        networks: &[],
    })
}

/// gobgpd TOML for an [`IbgpConf`] (`networks` is ignored).
pub fn gobgp_config(c: &IbgpConf) -> String {
    let mut t = format!(
        "[global.config]\n  as = {}\n  router-id = \"{}\"\n  local-address-list = [\"{}\"]\n",
        c.asn, c.router_id, c.local_addr
    );
    for n in c.neighbors {
        let _ = write!(
            t,
            "\n[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{n}\"\n    peer-as = {}\n",
            c.asn
        );
        let _ = write!(
            t,
            "  [neighbors.transport.config]\n    local-address = \"{}\"\n    passive-mode = {}\n",
            c.local_addr, c.passive
        );
        // 1 s between connect attempts (gobgpd still waits ~5 s before its first).
        t.push_str("  [neighbors.timers.config]\n    connect-retry = 1\n");
        if c.rr_clients {
            let _ = write!(
                t,
                "  [neighbors.route-reflector.config]\n    route-reflector-client = true\n    route-reflector-cluster-id = \"{}\"\n",
                c.router_id
            );
        }
    }
    t
}

/// FRR bgpd.conf for an RR client of the reflectors `rrs`, originating `networks`.
pub fn frr_client_config(asn: u32, router_id: &str, rrs: &[&str], networks: &[&str]) -> String {
    frr_config(&IbgpConf {
        asn,
        router_id,
        local_addr: "",
        neighbors: rrs,
        rr_clients: false,
        passive: false,
        networks,
    })
}

/// FRR bgpd.conf for an [`IbgpConf`] (`local_addr` is used as update-source
/// when not empty). Connect retry is 1 s; networks need no IGP route.
pub fn frr_config(c: &IbgpConf) -> String {
    let mut t = format!(
        "hostname bgpd-{}\nlog stdout informational\n!\nrouter bgp {}\n bgp router-id {}\n bgp log-neighbor-changes\n no bgp default ipv4-unicast\n no bgp network import-check\n",
        c.router_id, c.asn, c.router_id
    );
    if c.rr_clients {
        let _ = writeln!(t, " bgp cluster-id {}", c.router_id);
    }
    for n in c.neighbors {
        let _ = writeln!(t, " neighbor {n} remote-as {}", c.asn);
        let _ = writeln!(t, " neighbor {n} timers connect 1");
        if !c.local_addr.is_empty() {
            let _ = writeln!(t, " neighbor {n} update-source {}", c.local_addr);
        }
        if c.passive {
            let _ = writeln!(t, " neighbor {n} passive");
        }
    }
    t.push_str(" address-family ipv4 unicast\n");
    for n in c.neighbors {
        let _ = writeln!(t, "  neighbor {n} activate");
        if c.rr_clients {
            let _ = writeln!(t, "  neighbor {n} route-reflector-client");
        }
    }
    for p in c.networks {
        let _ = writeln!(t, "  network {p}");
    }
    t.push_str(" exit-address-family\n!\n");
    t
}

/// BIRD protocol name of the session to `neighbor` in the builders'
/// configs: `n10_10_0_1` (use it with [`Bird::wait_established`]).
pub fn bird_protocol_name(neighbor: &str) -> String {
    format!("n{}", neighbor.replace(['.', ':', '%'], "_"))
}

/// BIRD config for an RR client of `rrs`, originating `networks` (static
/// blackholes in protocol `local_nets`).
pub fn bird_client_config(
    asn: u32,
    router_id: &str,
    local_addr: &str,
    rrs: &[&str],
    networks: &[&str],
) -> String {
    bird_config(&IbgpConf {
        asn,
        router_id,
        local_addr,
        neighbors: rrs,
        rr_clients: false,
        passive: false,
        networks,
    })
}

/// BIRD config for an [`IbgpConf`]: one `protocol bgp` per neighbor named by
/// [`bird_protocol_name`], the neighbor on a shared subnet (`direct`, so
/// received next hops resolve on the interface), first connect after 1 s.
pub fn bird_config(c: &IbgpConf) -> String {
    let mut t = format!(
        "router id {};\nlog stderr all;\nprotocol device {{}}\nprotocol static local_nets {{\n  ipv4;\n",
        c.router_id
    );
    for p in c.networks {
        let _ = writeln!(t, "  route {p} blackhole;");
    }
    t.push_str("}\n");
    for n in c.neighbors {
        let _ = write!(
            t,
            "protocol bgp {} {{\n  local {} as {};\n  neighbor {n} as {};\n  direct;\n  connect delay time 1;\n  connect retry time 1;\n",
            bird_protocol_name(n),
            c.local_addr,
            c.asn,
            c.asn
        );
        if c.rr_clients {
            let _ = write!(t, "  rr client;\n  rr cluster id {};\n", c.router_id);
        }
        if c.passive {
            t.push_str("  passive on;\n");
        }
        t.push_str("  ipv4 { import all; export all; };\n}\n");
    }
    t
}

// ---------------------------------------------------------------------------
// Lan: a bridge in its own namespace

/// A layer-2 segment: a Linux bridge in a namespace of its own, with one veth
/// per attached namespace. Removed with its namespace on drop.
pub struct Lan {
    pub ns: Netns,
}

impl Lan {
    pub fn new() -> Result<Lan> {
        let ns = Netns::new("lan")?;
        ns.run(&["ip", "link", "add", "br0", "type", "bridge"])?;
        ns.run(&["ip", "link", "set", "br0", "up"])?;
        Ok(Lan { ns })
    }

    /// Plugs `ns` into the bridge as interface `iface` with address `cidr`.
    pub fn attach(&self, ns: &Netns, iface: &str, cidr: &str) -> Result<()> {
        let port = format!("lp{}", tag());
        crate::veth(&port, &self.ns, iface, ns)?;
        self.ns
            .run(&["ip", "link", "set", &port, "master", "br0"])?;
        self.ns.run(&["ip", "link", "set", &port, "up"])?;
        ns.addr(iface, cidr)
    }
}

// ---------------------------------------------------------------------------
// gobgpd

/// One row of `gobgp neighbor -j`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoBgpNeighbor {
    pub address: String,
    pub peer_as: u32,
    /// `idle`, `connect`, `active`, `opensent`, `openconfirm`, `established`.
    pub state: String,
    /// The peer's BGP identifier once OPEN was received.
    pub router_id: Option<String>,
    /// IPv4 unicast prefixes received / accepted from this neighbor.
    pub received: u64,
    pub accepted: u64,
}

/// One route for [`GoBgp::add_routes`].
#[derive(Debug, Clone)]
pub struct BulkRoute {
    pub prefix: Ipv4Addr,
    pub len: u8,
    pub next_hop: Ipv4Addr,
    pub as_path: Vec<u32>,
    pub local_pref: Option<u32>,
    /// `ASN:VALUE`.
    pub communities: Vec<String>,
}

/// A gobgpd in a namespace, API on `127.0.0.1:api_port` there.
pub struct GoBgp {
    proc: Proc,
    ns: String,
    pub dir: PathBuf,
    pub api_port: u16,
}

impl GoBgp {
    /// Starts gobgpd with `config_toml` (`-p --api-hosts=127.0.0.1:50051
    /// --pprof-disable`) and waits until its API answers.
    pub fn start(ns: &Netns, scratch_dir: &Path, config_toml: &str) -> Result<GoBgp> {
        Self::start_with_api_port(ns, scratch_dir, config_toml, 50051)
    }

    /// As [`GoBgp::start`] with another API port (a second gobgpd in one
    /// namespace; it also needs its own `listen-port`).
    pub fn start_with_api_port(
        ns: &Netns,
        scratch_dir: &Path,
        config_toml: &str,
        api_port: u16,
    ) -> Result<GoBgp> {
        let label = format!("gobgpd@{}", ns.name);
        need_binary(&label, "gobgpd")?;
        need_binary(&label, "gobgp")?;
        let dir = instance_dir(scratch_dir, "gobgp")?;
        let conf = dir.join("gobgpd.toml");
        std::fs::write(&conf, config_toml)?;
        let api = format!("--api-hosts=127.0.0.1:{api_port}");
        let proc = ns.spawn(
            &["gobgpd", "-f", s(&conf), "-p", &api, "--pprof-disable"],
            &dir.join("gobgpd.log"),
        );
        let proc = match proc {
            Ok(p) => p,
            Err(e) => {
                remove_dir(&dir);
                return Err(e.context(label));
            }
        };
        let g = GoBgp {
            proc,
            ns: ns.name.clone(),
            dir,
            api_port,
        };
        // From here on, drop stops the daemon and removes the directory.
        // Wait for the API socket first: a `gobgp` call made before it
        // listens sits in gRPC's ~1 s reconnect back-off.
        wait_for(
            &format!("{label}: API listening on 127.0.0.1:{api_port}"),
            START_TIMEOUT,
            || g.check_alive(),
            |_| Ok(tcp_listening(g.pid(), api_port).then_some(())),
        )?;
        wait_for(
            &format!("{label}: API (`gobgp global`) answering"),
            START_TIMEOUT,
            || g.check_alive(),
            |_| g.gobgp(&["global", "-j"]).map(|_| Some(())),
        )?;
        Ok(g)
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    pub fn log(&self) -> String {
        self.proc.log_text()
    }

    fn check_alive(&self) -> Result<()> {
        check_alive(&self.label(), &self.proc)
    }

    /// Runs `gobgp -u 127.0.0.1 -p PORT ARGS` in the namespace; returns stdout.
    pub fn gobgp(&self, args: &[&str]) -> Result<String> {
        let port = self.api_port.to_string();
        let mut full = vec!["gobgp", "-u", "127.0.0.1", "-p", &port];
        full.extend_from_slice(args);
        run_cli(&self.label(), &self.ns, &full, CLI_TIMEOUT)
    }

    /// Runs a `gobgp` command and parses its output as JSON (add `-j`).
    pub fn gobgp_json(&self, args: &[&str]) -> Result<Value> {
        let out = self.gobgp(args)?;
        parse_json(&self.label(), &format!("gobgp {}", args.join(" ")), &out)
    }

    /// `gobgp neighbor -j`.
    pub fn neighbors(&self) -> Result<Vec<GoBgpNeighbor>> {
        let v = self.gobgp_json(&["neighbor", "-j"])?;
        parse_gobgp_neighbors(&v)
            .with_context(|| format!("{}: reading `gobgp neighbor -j`", self.label()))
    }

    /// Waits until the session to `addr` is established; returns the time waited.
    pub fn wait_established(&self, addr: &str, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        wait_for(
            &format!(
                "{}: neighbor {addr} established (`gobgp neighbor -j`)",
                self.label()
            ),
            timeout,
            || self.check_alive(),
            |last| {
                let ns = self.neighbors()?;
                match ns.iter().find(|n| n.address == addr) {
                    Some(n) if n.state == "established" => Ok(Some(())),
                    Some(n) => {
                        *last = format!("state {}", n.state);
                        Ok(None)
                    }
                    None => {
                        *last = format!("{addr} is not a configured neighbor");
                        Ok(None)
                    }
                }
            },
        )
        .map_err(|e| anyhow!("{e:#}\nlog tail:\n{}", log_tail(&self.proc.log, 10)))?;
        Ok(start.elapsed())
    }

    /// The global RIB (`gobgp global rib -a ipv4 -j`), every path.
    pub fn rib(&self) -> Result<Vec<RibEntry>> {
        self.rib_query(&["global", "rib", "-a", "ipv4", "-j"])
    }

    /// Paths received from `neighbor` before policy (`gobgp neighbor N adj-in`).
    pub fn rib_in(&self, neighbor: &str) -> Result<Vec<RibEntry>> {
        self.rib_query(&["neighbor", neighbor, "adj-in", "-a", "ipv4", "-j"])
    }

    /// Paths sent to `neighbor` (`gobgp neighbor N adj-out`).
    pub fn rib_out(&self, neighbor: &str) -> Result<Vec<RibEntry>> {
        self.rib_query(&["neighbor", neighbor, "adj-out", "-a", "ipv4", "-j"])
    }

    fn rib_query(&self, args: &[&str]) -> Result<Vec<RibEntry>> {
        let out = self.gobgp(args)?;
        parse_gobgp_rib(&out).with_context(|| {
            format!(
                "{}: parsing output of `gobgp {}`",
                self.label(),
                args.join(" ")
            )
        })
    }

    /// (destinations, paths) in the global IPv4 table, without listing it.
    pub fn rib_count(&self) -> Result<(u64, u64)> {
        let v = self.gobgp_json(&["global", "rib", "summary", "-a", "ipv4", "-j"])?;
        match (v["num_destination"].as_u64(), v["num_path"].as_u64()) {
            (Some(d), Some(p)) => Ok((d, p)),
            // Omitted when zero (protobuf JSON).
            _ if v.is_object() => Ok((
                v["num_destination"].as_u64().unwrap_or(0),
                v["num_path"].as_u64().unwrap_or(0),
            )),
            _ => bail!(
                "{}: unexpected `gobgp global rib summary -j`: {v}",
                self.label()
            ),
        }
    }

    /// Originates one route (`gobgp global rib add`).
    pub fn add_route(
        &self,
        prefix: &str,
        nexthop: &str,
        communities: &[&str],
        local_pref: Option<u32>,
    ) -> Result<()> {
        let mut args = vec![
            "global", "rib", "add", "-a", "ipv4", prefix, "nexthop", nexthop,
        ];
        let joined = communities.join(",");
        if !communities.is_empty() {
            args.extend_from_slice(&["community", &joined]);
        }
        let lp = local_pref.map(|l| l.to_string());
        if let Some(lp) = &lp {
            args.extend_from_slice(&["local-pref", lp]);
        }
        self.gobgp(&args).map(|_| ())
    }

    /// Withdraws a route this gobgpd originated.
    pub fn del_route(&self, prefix: &str) -> Result<()> {
        self.gobgp(&["global", "rib", "del", "-a", "ipv4", prefix])
            .map(|_| ())
    }

    /// Withdraws every IPv4 route this gobgpd originated (`gobgp global rib del all`).
    pub fn del_all(&self) -> Result<()> {
        self.gobgp(&["global", "rib", "-a", "ipv4", "del", "all"])
            .map(|_| ())
    }

    /// Originates `n` consecutive /32s from `first` with one next hop,
    /// communities and local-pref, through [`GoBgp::add_routes`].
    pub fn add_many(
        &self,
        first: Ipv4Addr,
        n: u32,
        next_hop: Ipv4Addr,
        communities: &[&str],
        local_pref: Option<u32>,
    ) -> Result<()> {
        let base = u32::from(first);
        let communities: Vec<String> = communities.iter().map(|c| c.to_string()).collect();
        let routes: Vec<BulkRoute> = (0..n)
            .map(|i| BulkRoute {
                prefix: Ipv4Addr::from(base.wrapping_add(i)),
                len: 32,
                next_hop,
                as_path: Vec::new(),
                local_pref,
                communities: communities.clone(),
            })
            .collect();
        self.add_routes(&routes)
    }

    /// Originates many routes fast, through `gobgp mrt inject global` (one
    /// gRPC AddPathStream, ~5*10^4 routes/s, instead of one process and
    /// ~10 ms per `gobgp global rib add`). The routes are encoded as MRT
    /// TABLE_DUMP_V2 ([`write_mrt`]; peer AS 0, so gobgpd takes them as
    /// locally originated, exactly like `gobgp global rib add`).
    ///
    /// The MRT "file" is a FIFO this function writes into, one record per
    /// atomic write (< PIPE_BUF), and keeps open until the last route is in
    /// the RIB: the gobgp 3.10 CLI exits right after its last `Send()`
    /// without `CloseAndRecv()`, which drops the stream's tail (measured:
    /// ~700 of 50000 routes, or all of a 3-route file, lost with a regular
    /// file). Routes in one stream are applied in order, so the last one
    /// present means all are. If the last route is already in the RIB it is
    /// deleted first, so its reappearance is a real signal.
    ///
    /// Measured on 2 cores: 100k /32s in ~2.3 s (~4*10^4 routes/s) with no
    /// session up; with two established receivers (FRR, BIRD) gobgpd
    /// advertises as it goes and the whole system manages ~8*10^3 routes/s.
    /// For a benchmark, load gobgpd first and let the peer under test
    /// connect afterwards (FRR then had all 100k 1.1 s after its start).
    pub fn add_routes(&self, routes: &[BulkRoute]) -> Result<()> {
        let Some(last) = routes.last() else {
            return Ok(());
        };
        let label = self.label();
        let last = format!("{}/{}", last.prefix, last.len);
        if !self.lookup(&last)?.is_empty() {
            self.del_route(&last)?;
        }
        let deadline = Instant::now()
            + Duration::from_secs(60)
            + Duration::from_micros(200 * routes.len() as u64);
        let fifo = self.dir.join(format!("inject-{}.mrt", tag()));
        let log = self.dir.join(format!("inject-{}.log", tag()));
        let c = std::ffi::CString::new(s(&fifo))?;
        // SAFETY: mkfifo(3) with a valid NUL-terminated path.
        if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
            bail!(
                "{label}: mkfifo {}: {}",
                fifo.display(),
                std::io::Error::last_os_error()
            );
        }
        let port = self.api_port.to_string();
        let args = [
            "gobgp",
            "-u",
            "127.0.0.1",
            "-p",
            &port,
            "mrt",
            "inject",
            "global",
            s(&fifo),
        ];
        let cmdline = args.join(" ");
        let logf = std::fs::File::create(&log)?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(logf.try_clone()?)
            .stderr(logf)
            .spawn()
            .with_context(|| format!("{label}: starting `{cmdline}`"))?;
        let mut child = KillOnDrop(child);
        let res = (|| -> Result<()> {
            let fail = |what: &str| {
                anyhow!(
                    "{label}: `{cmdline}` {what}; its output: {}",
                    excerpt(&std::fs::read_to_string(&log).unwrap_or_default())
                )
            };
            // Open the write end once the CLI has opened the read end
            // (non-blocking: ENXIO until then).
            let mut w = loop {
                match std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&fifo)
                {
                    Ok(f) => break f,
                    Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {}
                    Err(e) => return Err(fail(&format!("open fifo: {e}"))),
                }
                if child.0.try_wait()?.is_some() {
                    return Err(fail("exited before reading the routes"));
                }
                if Instant::now() > deadline {
                    return Err(fail("did not open the fifo"));
                }
                std::thread::sleep(Duration::from_millis(5));
            };
            mrt_encode(routes, |rec| {
                use std::io::Write;
                // A write of <= PIPE_BUF bytes is all-or-nothing: the CLI,
                // which reads a header and then a body with one read(2)
                // each, never sees half a record.
                loop {
                    match w.write(rec) {
                        Ok(n) if n == rec.len() => return Ok(()),
                        Ok(n) => bail!("short write {n} of {} to the fifo", rec.len()),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            if child.0.try_wait()?.is_some() {
                                return Err(fail("exited while reading the routes"));
                            }
                            if Instant::now() > deadline {
                                return Err(fail("stopped reading the routes (time-out)"));
                            }
                            std::thread::sleep(Duration::from_micros(200));
                        }
                        Err(e) => return Err(fail(&format!("write to fifo: {e}"))),
                    }
                }
            })?;
            // Everything is in the pipe or the stream; keep the pipe open
            // (so the CLI stays alive and flushes) until the last route lands.
            loop {
                if !self.lookup(&last)?.is_empty() {
                    break;
                }
                if child.0.try_wait()?.is_some() {
                    return Err(fail(&format!("exited before {last} was in the RIB")));
                }
                if Instant::now() > deadline {
                    return Err(fail(&format!("time-out waiting for {last} in the RIB")));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            drop(w);
            let stop = Instant::now() + Duration::from_secs(10);
            loop {
                if let Some(st) = child.0.try_wait()? {
                    if !st.success() {
                        return Err(fail(&format!("failed ({st})")));
                    }
                    return Ok(());
                }
                if Instant::now() > stop {
                    return Err(fail("did not exit after end of input"));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })();
        drop(child);
        let _ = std::fs::remove_file(&fifo);
        let _ = std::fs::remove_file(&log);
        res
    }

    /// The paths of one prefix in the global RIB (empty when absent).
    pub fn lookup(&self, prefix: &str) -> Result<Vec<RibEntry>> {
        let args = ["global", "rib", "-a", "ipv4", prefix, "-j"];
        let out = self.gobgp(&args)?;
        if !out.trim_start().starts_with('{') {
            // "Network not in table"
            return Ok(Vec::new());
        }
        parse_gobgp_rib(&out).with_context(|| {
            format!(
                "{}: parsing output of `gobgp {}`",
                self.label(),
                args.join(" ")
            )
        })
    }

    /// Stops gobgpd now (SIGTERM, then SIGKILL after `timeout`); returns its exit code.
    pub fn stop(&mut self, timeout: Duration) -> Option<i32> {
        self.proc.terminate(timeout)
    }
}

impl RibSource for GoBgp {
    fn label(&self) -> String {
        format!("gobgpd@{}", self.ns)
    }
    fn loc_rib(&self) -> Result<Vec<RibEntry>> {
        self.rib()
    }
    fn check_running(&self) -> Result<()> {
        self.check_alive()
    }
}

impl Drop for GoBgp {
    fn drop(&mut self) {
        self.proc.terminate(Duration::from_secs(5));
        remove_dir(&self.dir);
    }
}

fn session_state_name(v: &Value) -> String {
    if let Some(n) = v.as_u64() {
        return match n {
            1 => "idle",
            2 => "connect",
            3 => "active",
            4 => "opensent",
            5 => "openconfirm",
            6 => "established",
            _ => "unknown",
        }
        .to_string();
    }
    // Protobuf JSON spelling ("ESTABLISHED", "SESSION_STATE_ESTABLISHED").
    v.as_str()
        .map(|s| s.rsplit('_').next().unwrap_or(s).to_ascii_lowercase())
        .unwrap_or_else(|| "unknown".to_string())
}

/// Parses the JSON of `gobgp neighbor -j`.
pub fn parse_gobgp_neighbors(v: &Value) -> Result<Vec<GoBgpNeighbor>> {
    let arr = v
        .as_array()
        .ok_or_else(|| anyhow!("expected a JSON array, got {}", excerpt(&v.to_string())))?;
    arr.iter()
        .map(|n| {
            let st = &n["state"];
            let address = st["neighbor_address"]
                .as_str()
                .or(n["conf"]["neighbor_address"].as_str())
                .ok_or_else(|| {
                    anyhow!(
                        "neighbor without neighbor_address: {}",
                        excerpt(&n.to_string())
                    )
                })?
                .to_string();
            let v4 = n["afi_safis"].as_array().and_then(|a| {
                a.iter().find(|x| {
                    x["config"]["family"]["afi"] == 1 && x["config"]["family"]["safi"] == 1
                })
            });
            let count = |k: &str| v4.and_then(|x| x["state"][k].as_u64()).unwrap_or(0);
            Ok(GoBgpNeighbor {
                address,
                peer_as: st["peer_asn"]
                    .as_u64()
                    .or(n["conf"]["peer_asn"].as_u64())
                    .unwrap_or(0) as u32,
                state: session_state_name(&st["session_state"]),
                router_id: st["router_id"].as_str().map(str::to_string),
                received: count("received"),
                accepted: count("accepted"),
            })
        })
        .collect()
}

/// Parses the JSON of `gobgp global rib -j` / `gobgp neighbor N adj-in -j`:
/// `{"PREFIX": [{"nlri", "best", "attrs": [{"type": N, ...}]}]}`, with
/// attributes 1 origin, 2 as_paths, 3 nexthop, 4 metric, 5 local-pref,
/// 8 communities (u32), 9 originator, 10 cluster list, 14 MP_REACH nexthop,
/// 32 large communities.
pub fn parse_gobgp_rib(text: &str) -> Result<Vec<RibEntry>> {
    let text = text.trim();
    if text.is_empty() || text == "null" {
        return Ok(Vec::new());
    }
    let v: Value =
        serde_json::from_str(text).map_err(|e| anyhow!("not JSON ({e}): {}", excerpt(text)))?;
    let map = v
        .as_object()
        .ok_or_else(|| anyhow!("expected a JSON object of prefixes, got {}", excerpt(text)))?;
    let mut out = Vec::new();
    for (prefix, paths) in map {
        let paths = paths
            .as_array()
            .ok_or_else(|| anyhow!("{prefix}: expected an array of paths"))?;
        for p in paths {
            let mut r = RibEntry {
                prefix: p["nlri"]["prefix"].as_str().unwrap_or(prefix).to_string(),
                best: p["best"].as_bool().unwrap_or(false),
                ..RibEntry::default()
            };
            for a in p["attrs"].as_array().into_iter().flatten() {
                match a["type"].as_u64().unwrap_or(0) {
                    1 => r.origin = origin_name(a["value"].as_u64().unwrap_or(0)).to_string(),
                    2 => {
                        for seg in a["as_paths"].as_array().into_iter().flatten() {
                            r.as_path.extend(
                                seg["asns"]
                                    .as_array()
                                    .into_iter()
                                    .flatten()
                                    .filter_map(|x| x.as_u64().map(|x| x as u32)),
                            );
                        }
                    }
                    3 | 14 => {
                        if let Some(nh) = a["nexthop"].as_str() {
                            if r.next_hop.is_empty() {
                                r.next_hop = nh.to_string();
                            }
                        }
                    }
                    4 => r.med = a["metric"].as_u64().map(|x| x as u32),
                    5 => r.local_pref = a["value"].as_u64().map(|x| x as u32),
                    8 => {
                        r.communities = a["communities"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_u64)
                            .map(|c| format!("{}:{}", c >> 16, c & 0xffff))
                            .collect()
                    }
                    9 => r.originator_id = a["value"].as_str().map(str::to_string),
                    10 => {
                        r.cluster_list = a["value"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect()
                    }
                    32 => {
                        r.large_communities = a["value"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|c| {
                                format!(
                                    "{}:{}:{}",
                                    c["ASN"].as_u64().unwrap_or(0),
                                    c["LocalData1"].as_u64().unwrap_or(0),
                                    c["LocalData2"].as_u64().unwrap_or(0)
                                )
                            })
                            .collect()
                    }
                    _ => {}
                }
            }
            out.push(r);
        }
    }
    Ok(out)
}

/// Kills (by PID) and reaps a child still running when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Writes `routes` as an MRT TABLE_DUMP_V2 file (see [`GoBgp::add_routes`]
/// for the record layout); for inspection or for `gobgp mrt inject` by hand.
pub fn write_mrt(path: &Path, routes: &[BulkRoute]) -> Result<()> {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    mrt_encode(routes, |rec| Ok(w.write_all(rec)?))?;
    w.flush()?;
    Ok(())
}

/// Encodes `routes` as MRT TABLE_DUMP_V2 records (RFC 6396), handing each
/// whole record (header + body, < 512 bytes) to `emit`: one
/// PEER_INDEX_TABLE with a single peer of AS 0 (gobgpd then treats the
/// paths as its own), then one RIB_IPV4_UNICAST record per route with
/// ORIGIN IGP, AS_PATH (4-octet ASNs; empty for iBGP origination),
/// NEXT_HOP, optional LOCAL_PREF and COMMUNITIES.
fn mrt_encode(routes: &[BulkRoute], mut emit: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
    const TABLE_DUMP_V2: u16 = 13;
    const PEER_INDEX_TABLE: u16 = 1;
    const RIB_IPV4_UNICAST: u16 = 2;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0);
    let mut rec = Vec::with_capacity(512);
    let mut record = |sub: u16, body: &[u8]| {
        rec.clear();
        rec.extend_from_slice(&now.to_be_bytes());
        rec.extend_from_slice(&TABLE_DUMP_V2.to_be_bytes());
        rec.extend_from_slice(&sub.to_be_bytes());
        rec.extend_from_slice(&(body.len() as u32).to_be_bytes());
        rec.extend_from_slice(body);
        emit(&rec)
    };
    // PEER_INDEX_TABLE: collector id, empty view name, 1 peer
    // (type 0b10 = IPv4 address, 4-octet AS; id 0.0.0.0; address 0.0.0.0; AS 0).
    let mut pit = Vec::new();
    pit.extend_from_slice(&[0, 0, 0, 0]);
    pit.extend_from_slice(&0u16.to_be_bytes());
    pit.extend_from_slice(&1u16.to_be_bytes());
    pit.push(0b10);
    pit.extend_from_slice(&[0; 4]);
    pit.extend_from_slice(&[0; 4]);
    pit.extend_from_slice(&0u32.to_be_bytes());
    record(PEER_INDEX_TABLE, &pit)?;

    let mut body = Vec::with_capacity(256);
    let mut attrs = Vec::with_capacity(192);
    for (seq, r) in routes.iter().enumerate() {
        if r.len > 32 {
            bail!("MRT: bad prefix length {}/{}", r.prefix, r.len);
        }
        if r.as_path.len() > 32 || r.communities.len() > 32 {
            bail!("MRT: at most 32 ASNs and 32 communities per route");
        }
        attrs.clear();
        // ORIGIN (well-known transitive) IGP.
        attrs.extend_from_slice(&[0x40, 1, 1, 0]);
        // AS_PATH: one AS_SEQUENCE of 4-octet ASNs, or empty.
        if r.as_path.is_empty() {
            attrs.extend_from_slice(&[0x40, 2, 0]);
        } else {
            let len = 2 + 4 * r.as_path.len();
            attrs.extend_from_slice(&[0x40, 2, len as u8, 2, r.as_path.len() as u8]);
            for a in &r.as_path {
                attrs.extend_from_slice(&a.to_be_bytes());
            }
        }
        attrs.extend_from_slice(&[0x40, 3, 4]);
        attrs.extend_from_slice(&r.next_hop.octets());
        if let Some(lp) = r.local_pref {
            attrs.extend_from_slice(&[0x40, 5, 4]);
            attrs.extend_from_slice(&lp.to_be_bytes());
        }
        if !r.communities.is_empty() {
            // COMMUNITIES: optional transitive.
            attrs.extend_from_slice(&[0xc0, 8, 4 * r.communities.len() as u8]);
            for c in &r.communities {
                attrs.extend_from_slice(&parse_community(c)?.to_be_bytes());
            }
        }
        body.clear();
        body.extend_from_slice(&(seq as u32).to_be_bytes());
        body.push(r.len);
        body.extend_from_slice(&r.prefix.octets()[..(r.len as usize).div_ceil(8)]);
        body.extend_from_slice(&1u16.to_be_bytes()); // one RIB entry
        body.extend_from_slice(&0u16.to_be_bytes()); // peer index 0
        body.extend_from_slice(&now.to_be_bytes()); // originated time
        body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        body.extend_from_slice(&attrs);
        record(RIB_IPV4_UNICAST, &body)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// FRR

/// FRR zebra + bgpd in a namespace, with their own pid files, zserv socket
/// and vty sockets in a directory owned by user `frr`.
pub struct Frr {
    bgpd: Proc,
    zebra: Proc,
    ns: String,
    pub dir: PathBuf,
}

const FRR_DIR: &str = "/usr/lib/frr";

impl Frr {
    /// Starts zebra, then bgpd with `bgpd_conf`, and waits until vtysh
    /// reaches bgpd. Config lines either daemon rejected (FRR logs them and
    /// runs on) make this fail.
    pub fn start(ns: &Netns, scratch_dir: &Path, bgpd_conf: &str) -> Result<Frr> {
        let label = format!("FRR@{}", ns.name);
        let zebra_bin = format!("{FRR_DIR}/zebra");
        let bgpd_bin = format!("{FRR_DIR}/bgpd");
        need_binary(&label, &zebra_bin)?;
        need_binary(&label, &bgpd_bin)?;
        need_binary(&label, "vtysh")?;
        let dir = instance_dir(scratch_dir, "frr")?;
        let setup = || -> Result<()> {
            // The daemons drop to user frr: it must reach and write the directory.
            for a in dir.ancestors().skip(1) {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(a)?.permissions().mode();
                if mode & 0o001 == 0 {
                    bail!(
                        "{label}: {} (mode {mode:o}) is not searchable by user frr; use a scratch directory under /tmp",
                        a.display()
                    );
                }
            }
            std::fs::write(
                dir.join("zebra.conf"),
                "hostname zebra\nlog stdout informational\n",
            )?;
            std::fs::write(dir.join("bgpd.conf"), bgpd_conf)?;
            sh(&["chown", "-R", "frr:frr", s(&dir)]).with_context(|| {
                format!("{label}: chown to user frr (is package frr installed?)")
            })?;
            Ok(())
        };
        if let Err(e) = setup() {
            remove_dir(&dir);
            return Err(e);
        }
        let daemon = |name: &str, bin: &str| {
            let conf = dir.join(format!("{name}.conf"));
            let pid = dir.join(format!("{name}.pid"));
            let zserv = dir.join("zserv.api");
            ns.spawn(
                &[
                    bin,
                    "-f",
                    s(&conf),
                    "-i",
                    s(&pid),
                    "-z",
                    s(&zserv),
                    "--vty_socket",
                    s(&dir),
                    "-P",
                    "0",
                    "-u",
                    "frr",
                    "-g",
                    "frr",
                    "--log",
                    "stdout",
                ],
                &dir.join(format!("{name}.log")),
            )
        };
        let zebra = match daemon("zebra", &zebra_bin) {
            Ok(p) => p,
            Err(e) => {
                remove_dir(&dir);
                return Err(e.context(label));
            }
        };
        // bgpd connects to zserv.api: start it once zebra listens.
        let zserv = dir.join("zserv.api");
        let zlabel = format!("{label} (zebra)");
        if let Err(e) = wait_for(
            &format!("{zlabel}: {} to appear", zserv.display()),
            START_TIMEOUT,
            || check_alive(&zlabel, &zebra),
            |_| Ok(zserv.exists().then_some(())),
        ) {
            drop(zebra);
            remove_dir(&dir);
            return Err(e);
        }
        let bgpd = match daemon("bgpd", &bgpd_bin) {
            Ok(p) => p,
            Err(e) => {
                drop(zebra);
                remove_dir(&dir);
                return Err(e.context(label));
            }
        };
        let f = Frr {
            bgpd,
            zebra,
            ns: ns.name.clone(),
            dir,
        };
        wait_for(
            &format!("{label}: vtysh reaching bgpd (`show bgp summary json`)"),
            START_TIMEOUT,
            || f.check_alive(),
            |_| f.vtysh("show bgp summary json").map(|_| Some(())),
        )?;
        // FRR keeps running on config errors; a test wants them loud.
        for (name, p) in [("zebra", &f.zebra), ("bgpd", &f.bgpd)] {
            let text = p.log_text();
            let errs: Vec<&str> = text
                .lines()
                .filter(|l| l.contains("on config line"))
                .collect();
            if !errs.is_empty() {
                bail!("{label}: {name} rejected its config:\n{}", errs.join("\n"));
            }
        }
        Ok(f)
    }

    fn check_alive(&self) -> Result<()> {
        check_alive(&format!("{} (zebra)", self.label()), &self.zebra)?;
        check_alive(&format!("{} (bgpd)", self.label()), &self.bgpd)
    }

    pub fn bgpd_pid(&self) -> u32 {
        self.bgpd.pid()
    }

    pub fn zebra_pid(&self) -> u32 {
        self.zebra.pid()
    }

    /// zebra's and bgpd's logs.
    pub fn log(&self) -> String {
        format!(
            "--- zebra\n{}--- bgpd\n{}",
            self.zebra.log_text(),
            self.bgpd.log_text()
        )
    }

    /// `vtysh --vty_socket DIR -c CMD` in the namespace; returns stdout.
    /// vtysh exits non-zero on `% Unknown command` and similar.
    pub fn vtysh(&self, cmd: &str) -> Result<String> {
        self.vtysh_lines(&[cmd])
    }

    /// One vtysh run with several `-c` lines (e.g. a configuration session).
    pub fn vtysh_lines(&self, cmds: &[&str]) -> Result<String> {
        let mut args = vec!["vtysh", "--vty_socket", s(&self.dir)];
        for c in cmds {
            args.extend_from_slice(&["-c", c]);
        }
        run_cli(&self.label(), &self.ns, &args, CLI_TIMEOUT)
    }

    /// Applies configuration lines: `conf t`, LINES..., `end`.
    pub fn configure(&self, lines: &[&str]) -> Result<()> {
        let mut all = vec!["configure terminal"];
        all.extend_from_slice(lines);
        all.push("end");
        self.vtysh_lines(&all).map(|_| ())
    }

    /// Runs a vtysh command and parses its output as JSON (end it in `json`).
    pub fn vtysh_json(&self, cmd: &str) -> Result<Value> {
        let out = self.vtysh(cmd)?;
        parse_json(&self.label(), &format!("vtysh -c '{cmd}'"), &out)
    }

    /// `show bgp ipv4 unicast summary json` (`peers.ADDR.state`, `pfxRcd`, ...).
    pub fn bgp_summary_json(&self) -> Result<Value> {
        self.vtysh_json("show bgp ipv4 unicast summary json")
    }

    /// `show bgp neighbors json`: keyed by address (or interface for
    /// unnumbered peers), with `bgpState`.
    pub fn neighbors_json(&self) -> Result<Value> {
        self.vtysh_json("show bgp neighbors json")
    }

    /// Waits until `peer` (address or interface name) is Established;
    /// returns the time waited.
    pub fn wait_established(&self, peer: &str, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        wait_for(
            &format!(
                "{}: neighbor {peer} Established (`show bgp neighbors json`)",
                self.label()
            ),
            timeout,
            || self.check_alive(),
            |last| {
                let v = self.neighbors_json()?;
                match v[peer]["bgpState"].as_str() {
                    Some("Established") => Ok(Some(())),
                    Some(st) => {
                        *last = format!("bgpState {st}");
                        Ok(None)
                    }
                    None => {
                        *last = format!("no neighbor {peer}");
                        Ok(None)
                    }
                }
            },
        )
        .map_err(|e| anyhow!("{e:#}\nbgpd log tail:\n{}", log_tail(&self.bgpd.log, 10)))?;
        Ok(start.elapsed())
    }

    /// The BGP IPv4 unicast table as [`RibEntry`]s, every path. Read from
    /// `show bgp ipv4 unicast json detail`: plain `json` has no communities,
    /// originator or cluster list in FRR 8.4.
    pub fn routes_json(&self) -> Result<Vec<RibEntry>> {
        let cmd = "show bgp ipv4 unicast json detail";
        let out = self.vtysh(cmd)?;
        parse_frr_routes(&out)
            .with_context(|| format!("{}: parsing output of `vtysh -c '{cmd}'`", self.label()))
    }

    /// Stops bgpd, then zebra (SIGTERM, SIGKILL after `timeout` each).
    pub fn stop(&mut self, timeout: Duration) {
        self.bgpd.terminate(timeout);
        self.zebra.terminate(timeout);
    }
}

impl RibSource for Frr {
    fn label(&self) -> String {
        format!("FRR@{}", self.ns)
    }
    fn loc_rib(&self) -> Result<Vec<RibEntry>> {
        self.routes_json()
    }
    fn check_running(&self) -> Result<()> {
        self.check_alive()
    }
}

impl Drop for Frr {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
        remove_dir(&self.dir);
    }
}

/// Parses FRR's `show bgp ipv4 unicast json detail` (8.4): `routes` maps a
/// prefix to an array whose first element is a header (`prefix`,
/// `advertisedTo`) and the rest are paths (`aspath.segments`, `origin`,
/// `metric`, `locPrf`, `community.list`, `largeCommunity.list`,
/// `originatorId`, `clusterList.list`, `bestpath.overall`, `nexthops[].ip`).
/// Also accepts the per-prefix form (`show bgp ipv4 unicast P json`: `paths`).
pub fn parse_frr_routes(text: &str) -> Result<Vec<RibEntry>> {
    let v: Value = serde_json::from_str(text.trim())
        .map_err(|e| anyhow!("not JSON ({e}): {}", excerpt(text)))?;
    let mut out = Vec::new();
    let mut add = |prefix: &str, p: &Value| {
        if p.get("nexthops").is_none() && p.get("aspath").is_none() {
            return; // the header element
        }
        let list = |v: &Value| -> Vec<String> {
            v["list"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        };
        let mut as_path = Vec::new();
        for seg in p["aspath"]["segments"].as_array().into_iter().flatten() {
            as_path.extend(
                seg["list"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|x| x.as_u64().map(|x| x as u32)),
            );
        }
        let best = match &p["bestpath"] {
            Value::Object(o) => o.get("overall").and_then(Value::as_bool).unwrap_or(false),
            Value::Bool(b) => *b,
            _ => false,
        };
        out.push(RibEntry {
            prefix: prefix.to_string(),
            next_hop: p["nexthops"][0]["ip"].as_str().unwrap_or("").to_string(),
            as_path,
            origin: p["origin"].as_str().unwrap_or("").to_ascii_lowercase(),
            med: p["metric"].as_u64().map(|x| x as u32),
            local_pref: p["locPrf"].as_u64().map(|x| x as u32),
            communities: list(&p["community"]),
            large_communities: list(&p["largeCommunity"]),
            originator_id: p["originatorId"].as_str().map(str::to_string),
            cluster_list: list(&p["clusterList"]),
            best,
        });
    };
    if let Some(routes) = v.get("routes") {
        let routes = routes
            .as_object()
            .ok_or_else(|| anyhow!("`routes` is not an object"))?;
        for (prefix, paths) in routes {
            for p in paths
                .as_array()
                .ok_or_else(|| anyhow!("{prefix}: expected an array"))?
            {
                add(prefix, p);
            }
        }
    } else if let (Some(prefix), Some(paths)) = (v["prefix"].as_str(), v["paths"].as_array()) {
        for p in paths {
            add(prefix, p);
        }
    } else if !v.as_object().is_some_and(|o| o.is_empty()) {
        bail!("no `routes` in {}", excerpt(text));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// BIRD

/// A BIRD 2 in a namespace, control socket in its directory.
pub struct Bird {
    proc: Proc,
    ns: String,
    pub dir: PathBuf,
}

impl Bird {
    /// Starts `bird -f` with `conf` and waits until birdc answers.
    pub fn start(ns: &Netns, scratch_dir: &Path, conf: &str) -> Result<Bird> {
        let label = format!("BIRD@{}", ns.name);
        need_binary(&label, "bird")?;
        need_binary(&label, "birdc")?;
        let dir = instance_dir(scratch_dir, "bird")?;
        let cfg = dir.join("bird.conf");
        std::fs::write(&cfg, conf)?;
        let proc = ns.spawn(
            &[
                "bird",
                "-f",
                "-c",
                s(&cfg),
                "-s",
                s(&dir.join("bird.ctl")),
                "-P",
                s(&dir.join("bird.pid")),
            ],
            &dir.join("bird.log"),
        );
        let proc = match proc {
            Ok(p) => p,
            Err(e) => {
                remove_dir(&dir);
                return Err(e.context(label));
            }
        };
        let b = Bird {
            proc,
            ns: ns.name.clone(),
            dir,
        };
        wait_for(
            &format!("{label}: birdc answering (`show status`)"),
            START_TIMEOUT,
            || b.check_alive(),
            |_| b.birdc("show status").map(|_| Some(())),
        )?;
        Ok(b)
    }

    fn check_alive(&self) -> Result<()> {
        check_alive(&self.label(), &self.proc)
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    pub fn log(&self) -> String {
        self.proc.log_text()
    }

    /// `birdc -s CTL CMD` in the namespace; returns the reply without the
    /// `BIRD x.y ready.` banner. Replies BIRD marks as errors (`syntax
    /// error`, `No such ...`, `Unknown ...`) are errors.
    pub fn birdc(&self, cmd: &str) -> Result<String> {
        let ctl = self.dir.join("bird.ctl");
        let out = run_cli(
            &self.label(),
            &self.ns,
            &["birdc", "-s", s(&ctl), cmd],
            CLI_TIMEOUT,
        )?;
        let body: String = out
            .lines()
            .filter(|l| !(l.starts_with("BIRD ") && l.ends_with(" ready.")))
            .map(|l| format!("{l}\n"))
            .collect();
        let first = body.lines().next().unwrap_or("");
        if first.starts_with("syntax error")
            || first.starts_with("No such")
            || first.starts_with("Unknown")
            || first.starts_with("Permission denied")
        {
            bail!("{}: `birdc {cmd}` failed: {}", self.label(), body.trim());
        }
        Ok(body)
    }

    /// Replaces the configuration and applies it (`birdc configure`).
    pub fn reconfigure(&self, conf: &str) -> Result<()> {
        std::fs::write(self.dir.join("bird.conf"), conf)?;
        let out = self.birdc("configure")?;
        if !out.contains("Reconfigured") && !out.contains("Reconfiguration in progress") {
            bail!(
                "{}: `birdc configure` did not apply: {}",
                self.label(),
                out.trim()
            );
        }
        Ok(())
    }

    /// The `BGP state:` of `protocol` (`show protocols all NAME`), e.g. `Established`.
    pub fn bgp_state(&self, protocol: &str) -> Result<String> {
        let out = self.birdc(&format!("show protocols all {protocol}"))?;
        out.lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("BGP state:")
                    .map(|s| s.trim().to_string())
            })
            .ok_or_else(|| {
                anyhow!(
                    "{}: no `BGP state:` in `birdc show protocols all {protocol}`: {}",
                    self.label(),
                    excerpt(&out)
                )
            })
    }

    /// Waits until BGP protocol `protocol` is Established; returns the time waited.
    pub fn wait_established(&self, protocol: &str, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        wait_for(
            &format!(
                "{}: protocol {protocol} Established (`show protocols all {protocol}`)",
                self.label()
            ),
            timeout,
            || self.check_alive(),
            |last| {
                let st = self.bgp_state(protocol)?;
                if st == "Established" {
                    Ok(Some(()))
                } else {
                    *last = format!("BGP state {st}");
                    Ok(None)
                }
            },
        )
        .map_err(|e| anyhow!("{e:#}\nlog tail:\n{}", log_tail(&self.proc.log, 10)))?;
        Ok(start.elapsed())
    }

    /// Every route in BIRD's tables (`show route all`) as [`RibEntry`]s.
    pub fn routes(&self) -> Result<Vec<RibEntry>> {
        let out = self.birdc("show route all")?;
        parse_bird_routes(&out)
            .with_context(|| format!("{}: parsing output of `birdc show route all`", self.label()))
    }

    /// Stops BIRD (SIGTERM, SIGKILL after `timeout`); returns its exit code.
    pub fn stop(&mut self, timeout: Duration) -> Option<i32> {
        self.proc.terminate(timeout)
    }
}

impl RibSource for Bird {
    fn label(&self) -> String {
        format!("BIRD@{}", self.ns)
    }
    fn loc_rib(&self) -> Result<Vec<RibEntry>> {
        self.routes()
    }
    fn check_running(&self) -> Result<()> {
        self.check_alive()
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        self.proc.terminate(Duration::from_secs(5));
        remove_dir(&self.dir);
    }
}

/// `(a,b) (c,d)` / `(a, b, c)` -> `["a:b", "c:d"]` / `["a:b:c"]`.
fn bird_tuples(v: &str) -> Vec<String> {
    v.split('(')
        .filter_map(|t| t.split_once(')'))
        .map(|(inner, _)| {
            inner
                .split(',')
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(":")
        })
        .collect()
}

/// Parses BIRD 2's `show route all`:
///
/// ```text
/// Table master4:
/// 10.97.0.1/32         unicast [n10_10_0_1 11:12:35.719 from 10.10.0.1] * (100) [i]
///         via 10.10.0.3 on eth0
///         Type: BGP univ
///         BGP.origin: IGP
///         BGP.as_path: 65001 {65002 65003}
///         BGP.next_hop: 10.10.0.3
///         BGP.local_pref: 100
///         BGP.community: (65000,100)
///         BGP.large_community: (65000, 1, 2)
///         BGP.originator_id: 10.10.0.3
///         BGP.cluster_list: 10.10.0.1
///                      unicast [n10_10_0_9 ...] (100) [i]      <- another path
/// ```
/// `*` after the brackets marks the best path. The next hop is
/// `BGP.next_hop` (first address), else the `via` address.
pub fn parse_bird_routes(text: &str) -> Result<Vec<RibEntry>> {
    let mut out: Vec<RibEntry> = Vec::new();
    let mut prefix = String::new();
    let mut via = String::new();
    let mut have_bgp_nh = false;
    for (no, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty()
            || t.starts_with("Table ")
            || (t.starts_with("BIRD ") && t.ends_with("ready."))
        {
            continue;
        }
        let bad = || anyhow!("line {}: unexpected {line:?}", no + 1);
        let path_header = |rest: &str| -> Result<RibEntry> {
            let after = rest.split_once(']').ok_or_else(bad)?.1;
            Ok(RibEntry {
                best: after.split_whitespace().next() == Some("*"),
                ..RibEntry::default()
            })
        };
        if !line.starts_with(char::is_whitespace) {
            // New prefix and its first path.
            let (p, rest) = t.split_once(char::is_whitespace).ok_or_else(bad)?;
            if !p.contains('/') {
                return Err(bad());
            }
            prefix = p.to_string();
            let mut r = path_header(rest)?;
            r.prefix = prefix.clone();
            finish_bird(&mut out, &via, have_bgp_nh);
            via.clear();
            have_bgp_nh = false;
            out.push(r);
        } else if line.starts_with(' ') && t.contains('[') && t.contains(']') {
            // Another path for the same prefix (attribute lines start with a tab).
            if prefix.is_empty() {
                return Err(bad());
            }
            let mut r = path_header(t)?;
            r.prefix = prefix.clone();
            finish_bird(&mut out, &via, have_bgp_nh);
            via.clear();
            have_bgp_nh = false;
            out.push(r);
        } else if let Some(rest) = t.strip_prefix("via ") {
            if via.is_empty() {
                via = rest.split_whitespace().next().unwrap_or("").to_string();
            }
        } else if let Some((k, v)) = t.split_once(':') {
            let r = out.last_mut().ok_or_else(bad)?;
            let v = v.trim();
            let num = || v.parse::<u32>().map_err(|_| bad());
            match k {
                "BGP.origin" => r.origin = v.to_ascii_lowercase(),
                "BGP.as_path" => {
                    r.as_path = v
                        .split(|c: char| c.is_whitespace() || c == '{' || c == '}' || c == ',')
                        .filter(|x| !x.is_empty())
                        .map(|x| x.parse::<u32>().map_err(|_| bad()))
                        .collect::<Result<_>>()?
                }
                "BGP.next_hop" => {
                    r.next_hop = v.split_whitespace().next().unwrap_or("").to_string();
                    have_bgp_nh = true;
                }
                "BGP.med" => r.med = Some(num()?),
                "BGP.local_pref" => r.local_pref = Some(num()?),
                "BGP.community" => r.communities = bird_tuples(v),
                "BGP.large_community" => r.large_communities = bird_tuples(v),
                "BGP.originator_id" => r.originator_id = Some(v.to_string()),
                "BGP.cluster_list" => {
                    r.cluster_list = v.split_whitespace().map(str::to_string).collect()
                }
                _ => {}
            }
        } else if t.starts_with("dev ") || t.starts_with("Type") {
            // `dev eth0` (device route) or attributes without a value.
        } else {
            return Err(bad());
        }
    }
    finish_bird(&mut out, &via, have_bgp_nh);
    Ok(out)
}

fn finish_bird(out: &mut [RibEntry], via: &str, have_bgp_nh: bool) {
    if let Some(r) = out.last_mut() {
        if !have_bgp_nh && r.next_hop.is_empty() {
            r.next_hop = via.to_string();
        }
    }
}
