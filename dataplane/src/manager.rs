//! The dataplane's manager thread, off the polling cores: it owns the `Fib`,
//! applies the feed, learns and ages neighbors and publishes snapshots. The
//! Unix-socket servers around it never touch the FIB; they send requests to
//! the manager, which handles them in order:
//! - `feed_server.rs`: the FIB feed (cer-control, `cerctl feed`), framed JSON;
//! - `admin_server.rs`: the admin API (`cerctl show ...`), JSON lines;
//! - `views.rs`: the manager's answers to admin queries (counters, ports,
//!   neighbors, FIB, tunnels, proxy ARP) and to metrics scrapes;
//! - `tests.rs`: the manager driven by messages, no sockets.
//!
//!
//! Capture gate: the feed session whose hello sets `capture_gate` owns the
//! proxy-ARP gate. When it ends for any reason (EOF, error, the controller
//! was killed) the manager closes the gate in the live tables and publishes,
//! while every forwarding entry stays (non-stop forwarding); the controller's
//! next full sync decides again. Sessions without the flag (`cerctl`'s
//! one-shot commands) leave the gate as it is when they end. A one-shot
//! session supersedes the owner's (the newest session feeds); the owner's
//! controller is alive and reconnects at once, so then the gate closes only
//! if no owner says hello within `GATE_GRACE`.
//!
//! Duplicate holders: the manager polls each core's last offender (a
//! sequence-locked record beside its counters) every loop turn, keeps the
//! recent ones for the admin view and the feed acks, and logs each at
//! error level (once per (ip, mac) every 10 s).
//!
//! Neighbor discovery: the manager records the IPv6 neighbors the cores
//! report (`Learn6`) and, every RA interval, asks the first core to send the
//! precomputed Router Advertisement of each `unnumbered` port.

use crate::counters::{CoreStats, Event};
use crate::fib::Fib;
use crate::pipeline::{CoreCommand, Learn, Learn6};
use crate::snapshot::Snapshot;
use arc_swap::ArcSwap;
use cer_shared::admin::{AdminRequest, AdminResponse, FeedState, PortState};
use cer_shared::feed::{
    ControlMsg, DataplaneMsg, DuplicateHolder, FeedCommand, FEED_PROTOCOL_VERSION,
    MAX_DUPLICATE_HOLDERS,
};
use cer_shared::MacAddr;
use crossbeam_queue::ArrayQueue;
use std::net::Ipv4Addr;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod admin_server;
mod feed_server;
mod reload;
#[cfg(test)]
mod tests;
mod views;

pub use admin_server::serve_admin;
pub use feed_server::serve_feed;

/// Requests to the manager thread.
pub enum ManagerMsg {
    FeedHello {
        session: u64,
        client: String,
        capture_gate: bool,
        reply: SyncSender<DataplaneMsg>,
    },
    Feed {
        session: u64,
        msg: ControlMsg,
        reply: SyncSender<DataplaneMsg>,
    },
    /// A session refused before its hello was accepted (garbage, wrong
    /// version): counted before the refusal is written back, so a client
    /// that reads the refusal and then asks `show feed` sees it counted.
    FeedRefused {
        session: u64,
        message: String,
        reply: SyncSender<()>,
    },
    FeedClosed {
        session: u64,
        /// Why the session ended, when it did not end cleanly.
        error: Option<String>,
        /// The error was already counted (a refusal or an answered error).
        counted: bool,
    },
    Query {
        req: AdminRequest,
        reply: SyncSender<AdminResponse>,
    },
    /// A scrape of `/metrics` (`crate::metrics`): the same counters the
    /// admin views read, as plain data.
    Metrics {
        reply: SyncSender<crate::metrics::MetricsSample>,
    },
}

/// Reads port state (link, PMD stats) for the admin API.
/// A WireGuard tunnel's published peer state and the lcore that owns it.
#[derive(Debug, Clone)]
pub struct WgTunnelState {
    pub tunnel: u32,
    pub lcore: u32,
    pub published: Arc<crate::tunnel::wireguard::WgPublished>,
}

pub type PortStateFn = Arc<dyn Fn() -> Vec<PortState> + Send + Sync>;

pub struct Manager {
    pub fib: Fib,
    pub published: Arc<ArcSwap<Snapshot>>,
    pub learn: Arc<ArrayQueue<Learn>>,
    /// Command queue of each core (GARP and similar go to the first).
    pub commands: Vec<Arc<ArrayQueue<CoreCommand>>>,
    pub stats: Vec<Arc<CoreStats>>,
    /// Names of every I/O port index (NIC ports, then TAPs).
    pub io_names: Vec<String>,
    pub node: String,
    pub boot_id: u64,
    pub port_state: PortStateFn,
    /// WireGuard peers' published state (set by the engine after `new`).
    pub wg_state: Vec<WgTunnelState>,
    /// IPv6 neighbors from the cores (the engine hands the same queue to
    /// each core's `Worker::set_nd`).
    pub learn6: Arc<ArrayQueue<Learn6>>,
    /// Per port (config order): link-local address and whether RAs go out.
    pub link_locals: Vec<(std::net::Ipv6Addr, bool)>,
    /// Router Advertisement interval on unnumbered ports.
    pub ra_interval: Duration,
    /// TSC frequency of the polling cores (their cycle counters); 0 unknown.
    pub tsc_hz: u64,
    /// Per core: what wakes it from an idle sleep (set by the engine).
    pub core_wake: Vec<CoreWakeInfo>,
    /// Per core: wakes it when a command was queued for it.
    pub wakers: Vec<Arc<crate::wake::CoreWaker>>,
    /// Per port (config order): an af_packet port, whose IPv4 fragments
    /// the kernel reassembles (`kernel_reasm`).
    pub af_packet: Vec<bool>,
    /// Where the namespace's reassembly figures are read (set by the engine
    /// when af_packet ports exist).
    pub kernel_proc: Option<crate::kernel_reasm::ProcFiles>,
    kernel_watch: crate::kernel_reasm::FailureWatch,
    /// The stall guard's heartbeat, shared with every core (`liveness.rs`).
    pub liveness: Arc<crate::liveness::Liveness>,
    /// The node file and the config running now (`reload.rs`); none in
    /// tests that build a manager without a file.
    pub config: Option<(std::path::PathBuf, cer_shared::config::NodeConfig)>,
    /// Set by SIGHUP: reload the node file at the next loop turn.
    pub reload_signal: Arc<AtomicBool>,
    /// Held polls already accounted for.
    held_seen: u64,
    next_ra: Option<Instant>,
    /// When the last stall was counted.
    last_stall: Option<Instant>,
    feed: FeedState,
    session: u64,
    expected_seq: u64,
    /// The session owning the proxy-ARP gate, and its client name.
    gate_session: Option<(u64, String)>,
    /// The gate owner was superseded by a session without the flag (a
    /// `cerctl` one-shot): its controller is alive and reconnects; the gate
    /// closes at this deadline unless an owner says hello first.
    gate_grace: Option<Instant>,
    /// Per core: the sequence of the last offender already taken in.
    dup_seen: Vec<u64>,
    /// Recent duplicate holders, newest first, with when each was last logged.
    dup_holders: Vec<(DuplicateHolder, Instant)>,
}

impl Manager {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        fib: Fib,
        published: Arc<ArcSwap<Snapshot>>,
        learn: Arc<ArrayQueue<Learn>>,
        commands: Vec<Arc<ArrayQueue<CoreCommand>>>,
        stats: Vec<Arc<CoreStats>>,
        io_names: Vec<String>,
        node: String,
        port_state: PortStateFn,
    ) -> Self {
        let boot_id = {
            let mut b = [0u8; 8];
            if std::fs::File::open("/dev/urandom")
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
                .is_err()
            {
                b = (std::process::id() as u64 ^ Instant::now().elapsed().as_nanos() as u64)
                    .to_le_bytes();
            }
            u64::from_le_bytes(b) >> 11
        };
        Manager {
            fib,
            published,
            learn,
            commands,
            stats,
            io_names,
            node,
            boot_id,
            port_state,
            tsc_hz: 0,
            core_wake: Vec::new(),
            wakers: Vec::new(),
            af_packet: Vec::new(),
            kernel_proc: None,
            kernel_watch: Default::default(),
            liveness: Arc::new(crate::liveness::Liveness::new()),
            config: None,
            reload_signal: Arc::new(AtomicBool::new(false)),
            held_seen: 0,
            last_stall: None,
            wg_state: Vec::new(),
            learn6: Arc::new(ArrayQueue::new(1024)),
            link_locals: Vec::new(),
            ra_interval: Duration::from_secs(10),
            next_ra: None,
            feed: FeedState::default(),
            session: 0,
            expected_seq: 1,
            gate_session: None,
            gate_grace: None,
            dup_seen: Vec::new(),
            dup_holders: Vec::new(),
        }
    }

    /// Publishes a new snapshot if anything changed.
    pub fn publish(&mut self) {
        if let Some(s) = self.fib.build() {
            self.published.store(s);
        }
    }

    /// Runs until `stop` is set: requests in order, learning, aging, publishing.
    pub fn run(mut self, rx: Receiver<ManagerMsg>, stop: Arc<AtomicBool>) {
        self.publish();
        self.beat();
        let mut last_age = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let waited = Instant::now();
            let msg = rx.recv_timeout(Duration::from_millis(2));
            // A 2 ms wait that took longer than the guard: the process was
            // stopped. Close the gate before beating again.
            let gap = waited.elapsed();
            if gap.as_nanos() as u64 > crate::liveness::STALL_GUARD_NS {
                self.stalled(gap, "the manager's 2 ms wait overran");
            }
            self.check_held();
            self.beat();
            match msg {
                Ok(m) => self.handle(m),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if self.reload_signal.swap(false, Ordering::Relaxed) {
                // SIGHUP: the outcome goes to the log (cerctl gets it in
                // its answer instead).
                let _ = self.reload("SIGHUP");
            }
            let now = Instant::now();
            self.drain_learned(now);
            self.router_adverts(now);
            self.poll_duplicates(now);
            if self.gate_grace.is_some_and(|d| now >= d) {
                self.gate_owner_gone(0, Some("superseded and no owner reconnected"));
            }
            if now.duration_since(last_age) >= Duration::from_secs(1) {
                self.fib.age(now);
                self.watch_kernel_reassembly(now);
                last_age = now;
            }
            self.publish();
        }
    }

    pub fn drain_learned(&mut self, now: Instant) {
        while let Some(l) = self.learn.pop() {
            self.fib.learn(l, now);
        }
        while let Some(l) = self.learn6.pop() {
            self.fib.learn6(l, now);
        }
    }

    /// Samples the kernel's reassembly in front of the af_packet ports and
    /// warns (at most every 10 s) when it failed reassemblies.
    pub fn watch_kernel_reassembly(&mut self, now: Instant) {
        let Some(s) = self.kernel_proc.as_ref().and_then(|p| p.sample()) else {
            return;
        };
        if let Some(msg) = self.kernel_watch.observe(s, now, Duration::from_secs(10)) {
            log::warn!("{msg}");
        }
    }

    /// `show ports`: each port's state; af_packet ports also carry the
    /// kernel's reassembly in front of them (`kernel_reassembly`, shared by
    /// the namespace), read now.
    pub fn router_adverts(&mut self, now: Instant) {
        if self.next_ra.is_some_and(|t| now < t) {
            return;
        }
        self.next_ra = Some(now + self.ra_interval);
        let Some(q) = self.commands.first() else {
            return;
        };
        for (port, (_, unnumbered)) in self.link_locals.iter().enumerate() {
            if *unnumbered
                && q.push(CoreCommand::RouterAdvert { port: port as u16 })
                    .is_err()
            {
                log::warn!("core command queue full: router advertisement skipped");
            }
        }
        self.wake_core(0);
    }

    /// Wakes core `k` if it sleeps (a command was queued for it).
    fn wake_core(&self, k: usize) {
        if let Some(w) = self.wakers.get(k) {
            w.wake();
        }
    }

    pub fn handle(&mut self, m: ManagerMsg) {
        match m {
            ManagerMsg::FeedHello {
                session,
                client,
                capture_gate,
                reply,
            } => {
                if capture_gate {
                    log::info!("feed session {session} ({client}) owns the capture gate");
                    self.gate_session = Some((session, client.clone()));
                    self.gate_grace = None;
                    self.feed.gate_owner_connected = true;
                }
                // The newest session wins: a restarted controller takes over.
                if self.fib.syncing() {
                    self.fib.abort_sync();
                }
                self.session = session;
                self.expected_seq = 1;
                self.feed.connected = true;
                self.feed.client = Some(client);
                self.feed.sessions += 1;
                self.feed.last_seq = 0;
                let _ = reply.send(DataplaneMsg::Welcome {
                    version: FEED_PROTOCOL_VERSION,
                    node: self.node.clone(),
                    boot_id: self.boot_id,
                    snapshot_version: self.fib.version(),
                });
            }
            ManagerMsg::Feed {
                session,
                msg,
                reply,
            } => {
                let answer = self.feed_msg(session, msg);
                if let DataplaneMsg::Error { message, .. } = &answer {
                    self.feed.errors += 1;
                    self.feed.last_error = Some(message.clone());
                }
                let _ = reply.send(answer);
            }
            ManagerMsg::FeedRefused {
                session,
                message,
                reply,
            } => {
                log::warn!("feed session {session} refused: {message}");
                self.feed.errors += 1;
                self.feed.last_error = Some(message);
                let _ = reply.send(());
            }
            ManagerMsg::FeedClosed {
                session,
                error,
                counted,
            } => {
                if session == self.session {
                    if self.fib.syncing() {
                        // An unfinished sync is dropped; the last snapshot stays.
                        self.fib.abort_sync();
                    }
                    self.feed.connected = false;
                }
                if self
                    .gate_session
                    .as_ref()
                    .is_some_and(|(s, _)| *s == session)
                {
                    let superseded = session != self.session
                        && error.as_deref().is_some_and(|e| e.contains(SUPERSEDED));
                    if superseded {
                        // A one-shot session took the feed; the controller
                        // reconnects at once (the close came from its next
                        // message). Do not flap the gate for that.
                        self.gate_grace = Some(Instant::now() + GATE_GRACE);
                        self.feed.gate_owner_connected = false;
                        log::info!(
                            "feed session {session} (capture gate owner) superseded; \
                             the gate closes in {GATE_GRACE:?} unless its controller reconnects"
                        );
                    } else {
                        self.gate_owner_gone(session, error.as_deref());
                    }
                }
                // Refusals and answered errors were counted when they were
                // answered; this counts the rest (I/O errors, a peer that hung up
                // mid-message).
                if let Some(e) = error {
                    if !counted {
                        self.feed.errors += 1;
                        self.feed.last_error = Some(e);
                    }
                }
            }
            ManagerMsg::Query {
                req: AdminRequest::Reload,
                reply,
            } => {
                let _ = reply.send(match self.reload("cerctl") {
                    Ok(data) => AdminResponse::Ok { data },
                    Err(message) => AdminResponse::Error { message },
                });
            }
            ManagerMsg::Query { req, reply } => {
                let _ = reply.send(self.query(&req));
            }
            ManagerMsg::Metrics { reply } => {
                let _ = reply.send(self.metrics_sample());
            }
        }
    }

    fn feed_msg(&mut self, session: u64, msg: ControlMsg) -> DataplaneMsg {
        let seq = msg.seq();
        let err = |message: String| DataplaneMsg::Error { seq, message };
        if session != self.session {
            return err(format!(
                "this feed session was {SUPERSEDED} by a newer connection"
            ));
        }
        let Some(seq_n) = seq else {
            return err("hello sent twice".into());
        };
        if seq_n != self.expected_seq {
            if self.fib.syncing() {
                self.fib.abort_sync();
            }
            return err(format!(
                "sequence gap: expected {}, got {seq_n}; reconnect and resync",
                self.expected_seq
            ));
        }
        let result = match msg {
            ControlMsg::Hello { .. } => Err("hello sent twice".into()),
            ControlMsg::SyncBegin { .. } => {
                self.fib.begin_sync();
                Ok(())
            }
            ControlMsg::Changes { changes, .. } => {
                self.fib.apply_batch(&changes).map_err(|e| e.to_string())
            }
            ControlMsg::SyncEnd { .. } => self
                .fib
                .end_sync()
                .map(|_| self.feed.syncs_completed += 1)
                .map_err(|e| e.to_string()),
            ControlMsg::Command { command, .. } => self.command(command).map_err(|e| e.to_string()),
            ControlMsg::Ping { .. } => Ok(()),
        };
        match result {
            Ok(()) => {
                self.expected_seq += 1;
                self.feed.last_seq = seq_n;
                self.publish();
                self.poll_duplicates(Instant::now());
                DataplaneMsg::Ack {
                    seq: seq_n,
                    snapshot_version: self.fib.version(),
                    duplicate_holder_alarms: self.duplicate_alarms(),
                    duplicate_holders: self.duplicate_holders(),
                    stalls: self.feed.stalls,
                }
            }
            Err(message) => {
                if self.fib.syncing() {
                    self.fib.abort_sync();
                }
                err(message)
            }
        }
    }

    /// The heartbeat in the cores' clock.
    fn beat(&self) {
        if self.tsc_hz > 0 {
            self.liveness.beat(crate::dpdk_io::tsc_ns(self.tsc_hz));
        }
    }

    /// A core held proxy ARP since the last turn (it found the beat stale):
    /// the process was stopped, or this thread starved past the guard.
    pub fn check_held(&mut self) {
        let held = self.liveness.held_polls();
        if held != self.held_seen {
            self.held_seen = held;
            self.stalled(
                Duration::ZERO,
                "a polling core found the manager's beat stale",
            );
        }
    }

    /// After a stall: close the proxy-ARP gate (fail closed) and count it;
    /// the next ack tells cer-control, which re-confirms the VRRP role
    /// before it opens the gate again. One stall is counted once even when
    /// both the wait and the cores saw it.
    pub fn stalled(&mut self, gap: Duration, how: &str) {
        let now = Instant::now();
        if self
            .last_stall
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.last_stall = Some(now);
        self.feed.stalls += 1;
        if self.fib.close_proxy_gate() {
            self.feed.gate_closed_on_stall += 1;
            self.publish();
            log::warn!(
                "stalled ({how}{}): proxy ARP gate closed (fail closed) until cer-control \
                 re-confirms the VRRP role; forwarding continues",
                if gap.is_zero() {
                    String::new()
                } else {
                    format!(", {} ms", gap.as_millis())
                }
            );
        } else {
            log::warn!("stalled ({how}); the proxy ARP gate was closed already");
        }
    }

    /// The session that owned the capture gate ended: close the gate in the
    /// live tables (not in a sync another session may be staging), keep
    /// every forwarding entry.
    fn gate_owner_gone(&mut self, session: u64, error: Option<&str>) {
        self.gate_grace = None;
        let (session, client) = self.gate_session.take().unwrap_or((session, String::new()));
        self.feed.gate_owner_connected = false;
        let why = error.unwrap_or("closed");
        if self.fib.close_proxy_gate() {
            self.feed.gate_closed_on_disconnect += 1;
            self.publish();
            log::warn!(
                "feed session {session} ({client}) that owns the capture gate ended ({why}): \
                 proxy ARP gate closed (fail closed); forwarding continues on snapshot {} \
                 until the controller resyncs",
                self.fib.version()
            );
        } else {
            log::warn!(
                "feed session {session} ({client}) that owns the capture gate ended ({why}); \
                 the gate was already closed; forwarding continues on snapshot {}",
                self.fib.version()
            );
        }
    }

    /// Takes in each core's last duplicate proxy-ARP holder, if new.
    pub fn poll_duplicates(&mut self, now: Instant) {
        if self.dup_seen.len() != self.stats.len() {
            self.dup_seen.resize(self.stats.len(), 0);
        }
        for i in 0..self.stats.len() {
            let Some(d) = self.stats[i].last_duplicate() else {
                continue;
            };
            if d.seq == self.dup_seen[i] {
                continue;
            }
            self.dup_seen[i] = d.seq;
            let ip = Ipv4Addr::from(d.ip);
            let mac = MacAddr(d.mac);
            let port = self
                .fib
                .port_names()
                .nth(d.port as usize)
                .unwrap_or("?")
                .to_string();
            let unix = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|t| t.as_secs())
                .unwrap_or(0);
            let pos = self
                .dup_holders
                .iter()
                .position(|(h, _)| h.ip == ip && h.mac == mac);
            let (mut h, logged) = match pos {
                Some(p) => self.dup_holders.remove(p),
                None => (
                    DuplicateHolder {
                        ip,
                        mac,
                        port: port.clone(),
                        seen: 0,
                        last_unix: unix,
                    },
                    now,
                ),
            };
            h.seen += 1;
            h.last_unix = unix;
            h.port = port;
            let first = pos.is_none();
            let log_now = first || now.duration_since(logged) >= Duration::from_secs(10);
            if log_now {
                log::error!(
                    "DUPLICATE PROXY-ARP HOLDER: {} on port {} claims {} (ARP reply or GARP), \
                     an address this dataplane answers for; two routers capture it \
                     (seen {} times)",
                    h.mac,
                    h.port,
                    h.ip,
                    h.seen
                );
            }
            self.dup_holders
                .insert(0, (h, if log_now { now } else { logged }));
            self.dup_holders.truncate(MAX_DUPLICATE_HOLDERS);
        }
    }

    fn duplicate_alarms(&self) -> u64 {
        self.stats
            .iter()
            .map(|s| s.events_of(Event::DuplicateHolder))
            .sum()
    }

    fn duplicate_holders(&self) -> Vec<DuplicateHolder> {
        self.dup_holders.iter().map(|(h, _)| h.clone()).collect()
    }

    fn command(&mut self, c: FeedCommand) -> Result<(), CommandError> {
        match c {
            FeedCommand::GratuitousArp { port, ip, count } => {
                let idx = self
                    .fib
                    .port_names()
                    .position(|p| p == port)
                    .ok_or(CommandError::UnknownPort(port))?;
                let q = self.commands.first().ok_or(CommandError::NoCore)?;
                for _ in 0..count.clamp(1, 10) {
                    q.push(CoreCommand::GratuitousArp {
                        port: idx as u16,
                        ip: u32::from(ip),
                    })
                    .map_err(|_| CommandError::QueueFull)?;
                }
                self.wake_core(0);
                Ok(())
            }
        }
    }
}

/// Why a feed command (an action for the polling cores) was refused.
#[derive(Debug, thiserror::Error)]
enum CommandError {
    #[error("unknown port '{0}'")]
    UnknownPort(String),
    #[error("no polling core")]
    NoCore,
    #[error("core command queue full; retry")]
    QueueFull,
}

/// How a polling core sleeps when idle, for `show state` / `show counters`.
#[derive(Debug, Clone, Default)]
pub struct CoreWakeInfo {
    pub poll_mode: String,
    /// Ports (and how) that wake the core when traffic arrives.
    pub sources: Vec<String>,
    /// Ports the core wakes up for on a timer (no event source).
    pub timer_for: Vec<String>,
    /// That timer's bound (µs), when one is in force.
    pub bound_us: Option<u64>,
}

/// Word in the error a superseded session gets (and reports when it ends).
const SUPERSEDED: &str = "superseded";

/// How long a superseded gate owner's controller has to reconnect before
/// the gate closes (it reconnects within its ping interval plus a resync).
pub const GATE_GRACE: Duration = Duration::from_secs(3);

/// Binds a Unix socket, replacing a stale file, creating the directory,
/// with `mode` and the group of `access` on the file.
pub fn bind_socket(
    path: &Path,
    mode: u32,
    access: &cer_shared::sockperm::SocketAccess,
) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        // A live dataplane with the same socket would answer: refuse to steal it.
        if UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{} is in use by a running process", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let l = UnixListener::bind(path)?;
    access.apply(path, mode)?;
    Ok(l)
}

/// The manager thread is gone (the dataplane is stopping): a session
/// asking it anything ends.
#[derive(Debug, thiserror::Error)]
#[error("dataplane manager stopped")]
pub struct ManagerStopped;

/// How long a metrics scrape waits for the manager before answering 503.
const METRICS_WAIT: Duration = Duration::from_secs(3);

/// The `/metrics` renderer: asks the manager for a sample (as an admin
/// query does) and encodes it; a manager that is gone or busy past
/// `METRICS_WAIT` makes the scrape fail (503) instead of hanging.
pub fn metrics_render(mgr: SyncSender<ManagerMsg>) -> cer_shared::metrics::Render {
    Arc::new(move || {
        let (tx, rx) = sync_channel(1);
        mgr.try_send(ManagerMsg::Metrics { reply: tx })
            .map_err(|_| "the dataplane manager is stopped or its queue is full".to_string())?;
        let sample = rx
            .recv_timeout(METRICS_WAIT)
            .map_err(|_| "the dataplane manager did not answer".to_string())?;
        crate::metrics::families(&sample).render()
    })
}

fn ask<T>(
    mgr: &SyncSender<ManagerMsg>,
    make: impl FnOnce(SyncSender<T>) -> ManagerMsg,
) -> Result<T, ManagerStopped> {
    let (tx, rx) = sync_channel(1);
    mgr.send(make(tx)).map_err(|_| ManagerStopped)?;
    rx.recv().map_err(|_| ManagerStopped)
}
