//! Real BGP daemons as test peers: gobgpd, FRR (zebra + bgpd) and BIRD 2,
//! each started inside a network namespace the test created.
//!
//! | file | job |
//! |---|---|
//! | `mod.rs` | [`RibEntry`] / [`RibSource`], CLI calls with a time limit, waits, shared helpers |
//! | `config.rs` | config builders for the three daemons ([`IbgpConf`]) |
//! | `lan.rs` | [`Lan`]: a bridge segment in its own namespace |
//! | `gobgp.rs` | [`GoBgp`] and the parsers of `gobgp -j` output |
//! | `mrt.rs` | MRT TABLE_DUMP_V2 encoding of bulk routes for gobgpd |
//! | `frr.rs` | [`Frr`] (zebra + bgpd) and the parser of its JSON routes |
//! | `bird.rs` | [`Bird`] and the parser of `birdc show route all` |
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
//! Declare a launcher *after* the [`Netns`](crate::Netns) it runs in: locals drop in
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

use crate::{netns_command, pid_alive, tag, Proc};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod bird;
mod config;
mod frr;
mod gobgp;
mod lan;
mod mrt;

pub use bird::*;
pub use config::*;
pub use frr::*;
pub use gobgp::*;
pub use lan::*;
pub use mrt::*;

/// Time limit of one CLI call (`gobgp`, `vtysh`, `birdc`).
pub const CLI_TIMEOUT: Duration = Duration::from_secs(20);
/// Time a daemon gets to answer its CLI after start.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(100);

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
    let crate::Finished {
        status,
        stdout,
        stderr,
    } = crate::run_limited(netns_command(ns, args), &cmdline, None, timeout)
        .with_context(|| label.to_string())?;
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
    if pid_alive(proc.pid()) {
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
