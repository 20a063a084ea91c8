//! The dataplane's control side, off the polling cores: the manager thread
//! (owns the `Fib`, applies the feed, learns and ages neighbors, publishes
//! snapshots), the FIB feed server and the admin server (Unix sockets, JSON
//! lines). Socket threads never touch the FIB; they send requests to the
//! manager, which handles them in order.
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

use crate::counters::{CoreStats, DropReason, Event};
use crate::fib::Fib;
use crate::pipeline::{CoreCommand, Learn, Learn6};
use crate::snapshot::Snapshot;
use arc_swap::ArcSwap;
use cer_shared::admin::{
    AdminRequest, AdminResponse, CoreCounters, FeedState, Neighbor6State, NeighborState,
    Neighbors6State, PortLinkLocal, PortState, ProxyArpState, SnapshotState,
};
use cer_shared::feed::{
    ControlMsg, DataplaneMsg, DuplicateHolder, FeedCommand, FEED_PROTOCOL_VERSION,
    MAX_DUPLICATE_HOLDERS,
};
use cer_shared::framing::{self, FrameError};
use cer_shared::MacAddr;
use crossbeam_queue::ArrayQueue;
use serde_json::json;
use std::io::{BufReader, BufWriter};
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
    next_ra: Option<Instant>,
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
        let mut last_age = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            match rx.recv_timeout(Duration::from_millis(2)) {
                Ok(m) => self.handle(m),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
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
    fn ports(&self) -> serde_json::Value {
        let kernel = self.kernel_proc.as_ref().and_then(|p| p.sample());
        let ports = (self.port_state)();
        let list: Vec<serde_json::Value> = ports
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut v = json!(p);
                if let (Some(k), true) = (kernel, self.af_packet.get(i) == Some(&true)) {
                    v["kernel_reassembly"] = json!(k);
                }
                v
            })
            .collect();
        json!(list)
    }

    /// Asks the first core to send each unnumbered port's Router
    /// Advertisement, at start and then every `ra_interval`.
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
            ManagerMsg::Query { req, reply } => {
                let _ = reply.send(self.query(&req));
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
            ControlMsg::Changes { changes, .. } => self.fib.apply_batch(&changes),
            ControlMsg::SyncEnd { .. } => {
                self.fib.end_sync().map(|_| self.feed.syncs_completed += 1)
            }
            ControlMsg::Command { command, .. } => self.command(command),
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

    fn command(&mut self, c: FeedCommand) -> Result<(), String> {
        match c {
            FeedCommand::GratuitousArp { port, ip, count } => {
                let idx = self
                    .fib
                    .port_names()
                    .position(|p| p == port)
                    .ok_or_else(|| format!("unknown port '{port}'"))?;
                let q = self.commands.first().ok_or("no polling core")?;
                for _ in 0..count.clamp(1, 10) {
                    q.push(CoreCommand::GratuitousArp {
                        port: idx as u16,
                        ip: u32::from(ip),
                    })
                    .map_err(|_| "core command queue full; retry".to_string())?;
                }
                self.wake_core(0);
                Ok(())
            }
        }
    }

    fn counters(&self) -> Vec<CoreCounters> {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        self.stats
            .iter()
            .enumerate()
            .map(|(k, s)| CoreCounters {
                lcore: s.lcore,
                bursts: load(&s.bursts),
                busy_cycles: load(&s.busy_cycles),
                busy_polls: load(&s.busy_polls),
                idle_cycles: load(&s.idle_cycles),
                idle_polls: load(&s.idle_polls),
                tsc_hz: self.tsc_hz,
                stalls: load(&s.stalls),
                sleeps: load(&s.sleeps),
                wake_events: load(&s.wake_events),
                wake_timeouts: load(&s.wake_timeouts),
                wake_sources: self
                    .core_wake
                    .get(k)
                    .map(|w| w.sources.clone())
                    .unwrap_or_default(),
                wake_timer_for: self
                    .core_wake
                    .get(k)
                    .map(|w| w.timer_for.clone())
                    .unwrap_or_default(),
                wake_bound_us: self.core_wake.get(k).and_then(|w| w.bound_us),
                poll_mode: self
                    .core_wake
                    .get(k)
                    .map(|w| w.poll_mode.clone())
                    .unwrap_or_default(),
                snapshot_version: load(&s.snapshot_version),
                rx: self
                    .io_names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (n.clone(), load(&s.rx[i])))
                    .collect(),
                tx: self
                    .io_names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (n.clone(), load(&s.tx[i])))
                    .collect(),
                events: Event::ALL
                    .iter()
                    .map(|e| (e.name().to_string(), s.events_of(*e)))
                    .collect(),
                drops: DropReason::ALL
                    .iter()
                    .map(|d| (d.name().to_string(), s.drops_of(*d)))
                    .chain(
                        crate::tunnel::wireguard::WgDrop::ALL
                            .iter()
                            .enumerate()
                            .map(|(i, d)| {
                                (
                                    d.name().to_string(),
                                    s.wg_drops.get(i).map(load).unwrap_or(0),
                                )
                            }),
                    )
                    .collect(),
            })
            .collect()
    }

    fn neighbors(&self) -> Vec<NeighborState> {
        let names: Vec<String> = self.fib.port_names().map(String::from).collect();
        let now = Instant::now();
        let mut out: Vec<NeighborState> = self
            .fib
            .learned
            .iter()
            .filter(|(k, _)| !self.fib.feed.neighbors.contains_key(k))
            .map(|((p, ip), n)| NeighborState {
                port: names[*p as usize].clone(),
                ip: Ipv4Addr::from(*ip),
                mac: MacAddr(n.mac),
                state: if n.stale { "stale" } else { "reachable" }.into(),
                confirmed_secs_ago: now.saturating_duration_since(n.confirmed).as_secs(),
            })
            .collect();
        out.extend(
            self.fib
                .feed
                .neighbors
                .iter()
                .map(|((p, ip), mac)| NeighborState {
                    port: names[*p as usize].clone(),
                    ip: Ipv4Addr::from(*ip),
                    mac: MacAddr(*mac),
                    state: "static".into(),
                    confirmed_secs_ago: 0,
                }),
        );
        out.sort_by(|a, b| (&a.port, a.ip).cmp(&(&b.port, b.ip)));
        out
    }

    fn neighbors6(&self) -> Neighbors6State {
        let names: Vec<String> = self.fib.port_names().map(String::from).collect();
        let now = Instant::now();
        let mut neighbors: Vec<Neighbor6State> = self
            .fib
            .learned6
            .iter()
            .map(|((p, ip), n)| Neighbor6State {
                port: names[*p as usize].clone(),
                ip: *ip,
                mac: MacAddr(n.mac),
                state: if n.stale { "stale" } else { "reachable" }.into(),
                router: n.router,
                confirmed_secs_ago: now.saturating_duration_since(n.confirmed).as_secs(),
            })
            .collect();
        neighbors.sort_by(|a, b| (&a.port, a.ip).cmp(&(&b.port, b.ip)));
        Neighbors6State {
            ports: self
                .link_locals
                .iter()
                .zip(&names)
                .map(|((ll, unnumbered), name)| PortLinkLocal {
                    port: name.clone(),
                    link_local: *ll,
                    unnumbered: *unnumbered,
                })
                .collect(),
            neighbors,
        }
    }

    fn snapshot_state(&self) -> SnapshotState {
        let s = self.fib.current();
        SnapshotState {
            version: s.version,
            endpoints: s.endpoints.len(),
            routes: s.routes.len(),
            neighbors: s.neighbors.len(),
            proxy_arp: s.proxy_arp.set.len(),
            built_us: self.fib.last_build.as_micros() as u64,
        }
    }

    fn proxy(&self) -> ProxyArpState {
        ProxyArpState {
            duplicate_holder_alarms: self.duplicate_alarms(),
            duplicate_holders: self.duplicate_holders(),
            active: self.fib.feed.proxy_active,
            addresses: self
                .fib
                .feed
                .proxy
                .iter()
                .map(|ip| Ipv4Addr::from(*ip))
                .collect(),
        }
    }

    fn fib_json(&self, limit: usize) -> serde_json::Value {
        let names: Vec<String> = self.fib.port_names().map(String::from).collect();
        let s = self.fib.current();
        let mut eps: Vec<(u32, String)> = s
            .endpoints
            .iter()
            .map(|(ip, a)| {
                let what = match a {
                    crate::snapshot::EndpointAction::Local { port } => {
                        format!("local {}", names[port as usize])
                    }
                    crate::snapshot::EndpointAction::Tunnel { tunnel } => {
                        format!("tunnel {tunnel}")
                    }
                    crate::snapshot::EndpointAction::Drop => "drop".into(),
                };
                (ip, what)
            })
            .collect();
        eps.sort();
        let routes: Vec<serde_json::Value> = s
            .routes
            .routes()
            .iter()
            .map(|r| {
                json!({
                    "prefix": format!("{}/{}", Ipv4Addr::from(r.addr), r.len),
                    "nexthops": r.group.hops.iter().map(|h| match s.gateways6.get(h.gateway) {
                        // An IPv6 link-local gateway: its address and resolved MAC.
                        Some((_, ll)) => json!({
                            "port": names[h.port as usize],
                            "gateway6": ll.to_string(),
                            "mac": s.neighbors.get(h.port, h.gateway).map(|n| MacAddr(n.mac).to_string()),
                        }),
                        None => json!({
                            "port": names[h.port as usize],
                            "gateway": if h.gateway == 0 { None } else { Some(Ipv4Addr::from(h.gateway).to_string()) },
                        }),
                    }).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "version": s.version,
            "endpoints_total": eps.len(),
            "endpoints": eps.iter().take(limit).map(|(ip, a)| json!({"ip": Ipv4Addr::from(*ip).to_string(), "action": a})).collect::<Vec<_>>(),
            "routes": routes,
        })
    }

    /// The snapshot's tunnels, with WireGuard session state where it applies.
    fn tunnels(&self) -> serde_json::Value {
        let s = self.published.load();
        let r = Ordering::Relaxed;
        let list: Vec<serde_json::Value> = s
            .tunnels
            .iter()
            .map(|t| {
                let mut v = json!({
                    "id": t.id,
                    "kind": t.kind,
                    "local": Ipv4Addr::from(t.local).to_string(),
                    "remote": Ipv4Addr::from(t.remote).to_string(),
                    "mtu": t.mtu,
                    "overhead": t.overhead(),
                    "gre_key": t.gre_key,
                    "port": t.port,
                    "force_fragment": t.force_fragment,
                });
                if let Some(w) = self.wg_state.iter().find(|w| w.tunnel == t.id) {
                    let p = &w.published;
                    let opt = |x: u64| (x != u64::MAX).then_some(x);
                    v["wireguard"] = json!({
                        "lcore": w.lcore,
                        "published": p.ticks.load(Ordering::Acquire) > 0,
                        "session_established": p.session_established.load(r),
                        "handshake_age_ms": opt(p.handshake_age_ms.load(r)),
                        "handshakes": p.handshakes.load(r),
                        "tx_bytes": p.tx_bytes.load(r),
                        "rx_bytes": p.rx_bytes.load(r),
                        "estimated_loss_ppm": p.loss_ppm.load(r),
                        "handshake_rtt_ms": opt(p.handshake_rtt_ms.load(r)),
                        "queued": p.queued.load(r),
                    });
                }
                v
            })
            .collect();
        json!(list)
    }

    pub fn query(&self, req: &AdminRequest) -> AdminResponse {
        let data = match req {
            AdminRequest::Counters => json!(self.counters()),
            AdminRequest::Ports => self.ports(),
            AdminRequest::Neighbors => json!(self.neighbors()),
            AdminRequest::Neighbors6 => json!(self.neighbors6()),
            AdminRequest::ProxyArp => json!(self.proxy()),
            AdminRequest::Snapshot => json!(self.snapshot_state()),
            AdminRequest::Feed => json!(self.feed),
            AdminRequest::Tunnels => self.tunnels(),
            AdminRequest::Fib { limit } => self.fib_json(limit.unwrap_or(1000)),
            AdminRequest::State => json!({
                "node": self.node,
                "boot_id": self.boot_id,
                "snapshot": self.snapshot_state(),
                "feed": self.feed,
                "ports": self.ports(),
                "neighbors": self.neighbors(),
                "neighbors6": self.neighbors6(),
                "proxy_arp": self.proxy(),
                "tunnels": self.tunnels(),
                "cores": self.counters(),
            }),
        };
        AdminResponse::Ok { data }
    }
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

/// Binds a Unix socket, replacing a stale file, creating the directory.
pub fn bind_socket(path: &Path) -> std::io::Result<UnixListener> {
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
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(l)
}

/// Accepts feed connections; each runs in its own thread; the newest wins.
pub fn serve_feed(listener: UnixListener, mgr: SyncSender<ManagerMsg>) {
    let next = AtomicU64::new(1);
    for conn in listener.incoming() {
        let Ok(stream) = conn else { continue };
        let session = next.fetch_add(1, Ordering::Relaxed);
        let mgr = mgr.clone();
        let _ = std::thread::Builder::new()
            .name(format!("feed-{session}"))
            .spawn(move || {
                let (error, counted) = match feed_session(stream, session, &mgr) {
                    Ok(()) => (None, false),
                    Err(e) => (Some(e.message), e.counted),
                };
                if let Some(e) = &error {
                    log::warn!("feed session {session} ended: {e}");
                } else {
                    log::info!("feed session {session} closed");
                }
                let _ = mgr.send(ManagerMsg::FeedClosed {
                    session,
                    error,
                    counted,
                });
            });
    }
}

fn ask<T>(
    mgr: &SyncSender<ManagerMsg>,
    make: impl FnOnce(SyncSender<T>) -> ManagerMsg,
) -> Result<T, String> {
    let (tx, rx) = sync_channel(1);
    mgr.send(make(tx))
        .map_err(|_| "dataplane manager stopped".to_string())?;
    rx.recv()
        .map_err(|_| "dataplane manager stopped".to_string())
}

/// Why a feed session ended badly.
struct FeedEnd {
    message: String,
    /// The manager already counted it (refusal or answered error).
    counted: bool,
}

impl From<String> for FeedEnd {
    fn from(message: String) -> Self {
        FeedEnd {
            message,
            counted: false,
        }
    }
}

fn feed_session(
    stream: UnixStream,
    session: u64,
    mgr: &SyncSender<ManagerMsg>,
) -> Result<(), FeedEnd> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    let mut writer = BufWriter::new(stream);
    let mut buf = Vec::new();
    // Counted first, answered second: whoever reads the refusal and then
    // asks the admin socket finds it in `errors`.
    let refuse = |w: &mut BufWriter<UnixStream>, seq: Option<u64>, message: String| {
        let counted = ask(mgr, |reply| ManagerMsg::FeedRefused {
            session,
            message: message.clone(),
            reply,
        })
        .is_ok();
        let _ = framing::write_msg(
            w,
            &DataplaneMsg::Error {
                seq,
                message: message.clone(),
            },
        );
        Err(FeedEnd { message, counted })
    };
    let hello: ControlMsg = match framing::read_msg(&mut reader, &mut buf) {
        Ok(m) => m,
        Err(FrameError::Closed) => return Ok(()),
        Err(e) => return refuse(&mut writer, None, format!("bad hello: {e}")),
    };
    let ControlMsg::Hello {
        version,
        client,
        capture_gate,
    } = hello
    else {
        return refuse(
            &mut writer,
            hello.seq(),
            "the first message must be hello".into(),
        );
    };
    if version != FEED_PROTOCOL_VERSION {
        return refuse(
            &mut writer,
            None,
            format!("feed protocol version {version} is not supported (this dataplane speaks {FEED_PROTOCOL_VERSION})"),
        );
    }
    let welcome = ask(mgr, |reply| ManagerMsg::FeedHello {
        session,
        client,
        capture_gate,
        reply,
    })?;
    framing::write_msg(&mut writer, &welcome).map_err(|e| e.to_string())?;
    // After the handshake the controller may stay idle for long: no read timeout.
    writer
        .get_ref()
        .set_read_timeout(None)
        .map_err(|e| e.to_string())?;
    loop {
        let msg: ControlMsg = match framing::read_msg(&mut reader, &mut buf) {
            Ok(m) => m,
            Err(FrameError::Closed) => return Ok(()),
            Err(e) => return refuse(&mut writer, None, e.to_string()),
        };
        let answer = ask(mgr, |reply| ManagerMsg::Feed {
            session,
            msg,
            reply,
        })?;
        framing::write_msg(&mut writer, &answer).map_err(|e| e.to_string())?;
        if let DataplaneMsg::Error { message, .. } = answer {
            // Counted by the manager when it answered.
            return Err(FeedEnd {
                message,
                counted: true,
            });
        }
    }
}

/// Accepts admin connections: one JSON request per line, one answer per line.
pub fn serve_admin(listener: UnixListener, mgr: SyncSender<ManagerMsg>) {
    for conn in listener.incoming() {
        let Ok(stream) = conn else { continue };
        let mgr = mgr.clone();
        let _ = std::thread::Builder::new()
            .name("admin".into())
            .spawn(move || {
                let _ = admin_session(stream, &mgr);
            });
    }
}

fn admin_session(stream: UnixStream, mgr: &SyncSender<ManagerMsg>) -> Result<(), String> {
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    let mut writer = BufWriter::new(stream);
    let mut buf = Vec::new();
    loop {
        let resp = match framing::read_msg::<_, AdminRequest>(&mut reader, &mut buf) {
            Ok(req) => ask(mgr, |reply| ManagerMsg::Query { req, reply })?,
            Err(FrameError::Closed) => return Ok(()),
            Err(e @ FrameError::Malformed { .. }) => AdminResponse::Error {
                message: format!("{e}; expected e.g. {{\"cmd\":\"counters\"}}"),
            },
            Err(e) => return Err(e.to_string()),
        };
        framing::write_msg(&mut writer, &resp).map_err(|e| e.to_string())?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::CoreStats;
    use crate::fib::FibPort;
    use cer_shared::feed::{EndpointAction, FibChange};

    fn manager() -> Manager {
        let fib = Fib::new(
            vec![FibPort {
                name: "lan".into(),
                subnet: "10.1.0.0/24".parse().unwrap(),
            }],
            Vec::new(),
            Duration::from_secs(30),
            Duration::from_secs(60),
        );
        let published = Arc::new(ArcSwap::from(fib.current().clone()));
        Manager::new(
            fib,
            published,
            Arc::new(ArrayQueue::new(16)),
            vec![Arc::new(ArrayQueue::new(16))],
            vec![Arc::new(CoreStats::new(1))],
            vec!["lan".into()],
            "t".into(),
            Arc::new(Vec::new),
        )
    }

    fn hello(m: &mut Manager, session: u64, client: &str, capture_gate: bool) {
        let (tx, rx) = sync_channel(1);
        m.handle(ManagerMsg::FeedHello {
            session,
            client: client.into(),
            capture_gate,
            reply: tx,
        });
        assert!(matches!(rx.recv().unwrap(), DataplaneMsg::Welcome { .. }));
    }

    fn send(m: &mut Manager, session: u64, msg: ControlMsg) -> DataplaneMsg {
        let (tx, rx) = sync_channel(1);
        m.handle(ManagerMsg::Feed {
            session,
            msg,
            reply: tx,
        });
        rx.recv().unwrap()
    }

    fn closed(m: &mut Manager, session: u64, error: Option<&str>) {
        m.handle(ManagerMsg::FeedClosed {
            session,
            error: error.map(String::from),
            counted: false,
        });
    }

    /// cer-control's session: full sync of one endpoint, one captured /32, gate open.
    fn controller_syncs(m: &mut Manager, session: u64) {
        hello(m, session, "cer-control", true);
        let changes = vec![
            FibChange::EndpointSet {
                ip: "10.77.60.11".parse().unwrap(),
                action: EndpointAction::Local { port: "lan".into() },
            },
            FibChange::ProxyArpSet {
                ip: "10.77.60.12".parse().unwrap(),
            },
            FibChange::ProxyArpActive { active: true },
        ];
        for msg in [
            ControlMsg::SyncBegin { seq: 1 },
            ControlMsg::Changes { seq: 2, changes },
            ControlMsg::SyncEnd { seq: 3 },
        ] {
            assert!(matches!(send(m, session, msg), DataplaneMsg::Ack { .. }));
        }
        assert!(m.published.load().proxy_arp.active);
        assert!(m.feed.gate_owner_connected);
    }

    #[test]
    fn every_refused_or_broken_session_is_counted_once() {
        let mut m = manager();
        // Two sessions refused with the same text are two errors.
        for session in [1, 2] {
            let (tx, rx) = sync_channel(1);
            m.handle(ManagerMsg::FeedRefused {
                session,
                message: "bad hello: expected value at line 1".into(),
                reply: tx,
            });
            rx.recv().unwrap();
            m.handle(ManagerMsg::FeedClosed {
                session,
                error: Some("bad hello: expected value at line 1".into()),
                counted: true,
            });
        }
        assert_eq!(m.feed.errors, 2);
        // An answered error is counted by the answer, not again at close.
        hello(&mut m, 3, "cerctl", false);
        let e = send(&mut m, 3, ControlMsg::SyncEnd { seq: 1 });
        assert!(matches!(e, DataplaneMsg::Error { .. }), "{e:?}");
        assert_eq!(m.feed.errors, 3);
        m.handle(ManagerMsg::FeedClosed {
            session: 3,
            error: Some("no sync in progress".into()),
            counted: true,
        });
        assert_eq!(m.feed.errors, 3);
        // A session that broke on I/O is counted when it closes.
        hello(&mut m, 4, "cerctl", false);
        closed(&mut m, 4, Some("connection reset"));
        assert_eq!(m.feed.errors, 4);
        assert_eq!(m.feed.last_error.as_deref(), Some("connection reset"));
    }

    #[test]
    fn gate_closes_when_its_owner_disconnects_and_forwarding_stays() {
        let mut m = manager();
        controller_syncs(&mut m, 1);
        let before = m.published.load().endpoints.len();
        closed(&mut m, 1, Some("connection reset"));
        let snap = m.published.load();
        assert!(!snap.proxy_arp.active, "gate still open");
        assert!(snap
            .proxy_arp
            .holds(u32::from(Ipv4Addr::new(10, 77, 60, 12))));
        assert_eq!(snap.endpoints.len(), before, "forwarding entries kept");
        assert_eq!(m.feed.gate_closed_on_disconnect, 1);
        assert!(!m.feed.gate_owner_connected);
        let p = m.proxy();
        assert!(!p.active && p.addresses.len() == 1);
        // The controller comes back and its full sync opens the gate again.
        controller_syncs(&mut m, 2);
        // A clean EOF (killed controller: the kernel closes the socket) closes it too.
        closed(&mut m, 2, None);
        assert!(!m.published.load().proxy_arp.active);
        assert_eq!(m.feed.gate_closed_on_disconnect, 2);
    }

    #[test]
    fn one_shot_sessions_leave_the_gate_alone() {
        let mut m = manager();
        controller_syncs(&mut m, 1);
        // cerctl: no gate flag; its end does not close the gate.
        hello(&mut m, 2, "cerctl", false);
        let ack = send(&mut m, 2, ControlMsg::Ping { seq: 1 });
        assert!(matches!(ack, DataplaneMsg::Ack { seq: 1, .. }), "{ack:?}");
        closed(&mut m, 2, None);
        assert!(m.published.load().proxy_arp.active);
        assert_eq!(m.feed.gate_closed_on_disconnect, 0);
        // cerctl supersedes the owner (the owner's next message is refused,
        // its session ends): the gate stays open while the controller
        // reconnects, and closes if it does not.
        hello(&mut m, 5, "cerctl", false);
        let e = send(&mut m, 1, ControlMsg::Ping { seq: 4 });
        let DataplaneMsg::Error { message, .. } = e else {
            panic!("{e:?}")
        };
        closed(&mut m, 1, Some(&message));
        assert!(m.published.load().proxy_arp.active, "gate flapped");
        assert!(m.gate_grace.is_some());
        controller_syncs(&mut m, 6);
        assert!(m.gate_grace.is_none() && m.published.load().proxy_arp.active);
        hello(&mut m, 7, "cerctl", false);
        closed(&mut m, 6, Some(&message));
        m.gate_grace = Some(Instant::now());
        let (_tx, rx) = sync_channel(1);
        let stop = Arc::new(AtomicBool::new(false));
        let stopper = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                stop.store(true, Ordering::Relaxed);
            })
        };
        let published = m.published.clone();
        m.run(rx, stop);
        stopper.join().unwrap();
        assert!(
            !published.load().proxy_arp.active,
            "grace expired: gate closed"
        );
    }

    #[test]
    fn a_late_close_of_an_old_owner_is_ignored() {
        let mut m = manager();
        controller_syncs(&mut m, 1);
        // A stale owner's late close does not touch a newer owner's gate.
        controller_syncs(&mut m, 3);
        closed(&mut m, 1, Some("superseded"));
        assert!(m.published.load().proxy_arp.active);
        assert!(m.feed.gate_owner_connected);
        // cerctl may still close the gate explicitly.
        hello(&mut m, 4, "cerctl", false);
        let changes = vec![FibChange::ProxyArpActive { active: false }];
        assert!(matches!(
            send(&mut m, 4, ControlMsg::Changes { seq: 1, changes }),
            DataplaneMsg::Ack { .. }
        ));
        assert!(!m.published.load().proxy_arp.active);
    }

    #[test]
    fn duplicate_holders_reach_acks_and_the_admin_view() {
        let mut m = manager();
        controller_syncs(&mut m, 1);
        let ip = Ipv4Addr::new(10, 77, 60, 12);
        let mac = [2, 0, 0, 0, 0, 0x42];
        m.stats[0].duplicate_holder(0, u32::from(ip), mac);
        m.stats[0].duplicate_holder(0, u32::from(ip), mac);
        let ack = send(&mut m, 1, ControlMsg::Ping { seq: 4 });
        let DataplaneMsg::Ack {
            duplicate_holder_alarms,
            duplicate_holders,
            ..
        } = ack
        else {
            panic!("{ack:?}")
        };
        assert_eq!(duplicate_holder_alarms, 2);
        assert_eq!(duplicate_holders.len(), 1);
        let h = &duplicate_holders[0];
        assert_eq!((h.ip, h.mac, h.port.as_str()), (ip, MacAddr(mac), "lan"));
        // Another offender comes first; the list stays bounded.
        for i in 0..20u8 {
            m.stats[0].duplicate_holder(0, u32::from(ip), [2, 0, 0, 0, 1, i]);
            m.poll_duplicates(Instant::now());
        }
        let p = m.proxy();
        assert_eq!(p.duplicate_holder_alarms, 22);
        assert_eq!(p.duplicate_holders.len(), MAX_DUPLICATE_HOLDERS);
        assert_eq!(p.duplicate_holders[0].mac, MacAddr([2, 0, 0, 0, 1, 19]));
    }

    #[test]
    fn router_adverts_on_unnumbered_ports_and_neighbors6_view() {
        let mut m = manager();
        let ll = crate::nd::link_local([2, 0, 0, 0, 1, 1]);
        m.link_locals = vec![(ll, true)];
        let t0 = Instant::now();
        m.router_adverts(t0);
        assert_eq!(
            m.commands[0].pop(),
            Some(CoreCommand::RouterAdvert { port: 0 })
        );
        m.router_adverts(t0 + Duration::from_secs(5));
        assert!(m.commands[0].pop().is_none(), "not before the interval");
        m.router_adverts(t0 + Duration::from_secs(10));
        assert_eq!(
            m.commands[0].pop(),
            Some(CoreCommand::RouterAdvert { port: 0 })
        );
        // Not unnumbered: no RA.
        m.link_locals = vec![(ll, false)];
        m.router_adverts(t0 + Duration::from_secs(20));
        assert!(m.commands[0].pop().is_none());

        // A peer learned from an RA, and a route via its link-local address.
        let peer: std::net::Ipv6Addr = "fe80::5054:ff:fe00:31".parse().unwrap();
        m.learn6
            .push(Learn6 {
                port: 0,
                ip: peer,
                mac: [0x52, 0x54, 0, 0, 0, 0x31],
                router: true,
            })
            .unwrap();
        m.drain_learned(Instant::now());
        m.fib
            .apply(&FibChange::RouteSet {
                prefix: "10.77.0.0/16".parse().unwrap(),
                nexthops: vec![cer_shared::feed::NextHop {
                    port: "lan".into(),
                    gateway: None,
                    gateway6: Some(peer),
                }],
            })
            .unwrap();
        m.publish();
        let AdminResponse::Ok { data } = m.query(&AdminRequest::Neighbors6) else {
            panic!()
        };
        let v: Neighbors6State = serde_json::from_value(data).unwrap();
        assert_eq!(v.ports[0].link_local, ll);
        assert_eq!(v.neighbors.len(), 1);
        assert_eq!(v.neighbors[0].ip, peer);
        assert!(v.neighbors[0].router);
        assert_eq!(v.neighbors[0].state, "reachable");
        let AdminResponse::Ok { data } = m.query(&AdminRequest::Fib { limit: None }) else {
            panic!()
        };
        let hop = &data["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["prefix"] == "10.77.0.0/16")
            .unwrap()["nexthops"][0];
        assert_eq!(hop["gateway6"], "fe80::5054:ff:fe00:31");
        assert_eq!(hop["mac"], "52:54:00:00:00:31");
    }
}
