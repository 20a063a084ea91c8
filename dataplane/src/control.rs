//! The dataplane's control side, off the polling cores: the manager thread
//! (owns the `Fib`, applies the feed, learns and ages neighbors, publishes
//! snapshots), the FIB feed server and the admin server (Unix sockets, JSON
//! lines). Socket threads never touch the FIB; they send requests to the
//! manager, which handles them in order.

use crate::counters::{CoreStats, DropReason, Event};
use crate::fib::Fib;
use crate::pipeline::{CoreCommand, Learn};
use crate::snapshot::Snapshot;
use arc_swap::ArcSwap;
use cer_shared::admin::{
    AdminRequest, AdminResponse, CoreCounters, FeedState, NeighborState, PortState, ProxyArpState,
    SnapshotState,
};
use cer_shared::feed::{ControlMsg, DataplaneMsg, FeedCommand, FEED_PROTOCOL_VERSION};
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
use std::time::{Duration, Instant};

/// Requests to the manager thread.
pub enum ManagerMsg {
    FeedHello {
        session: u64,
        client: String,
        reply: SyncSender<DataplaneMsg>,
    },
    Feed {
        session: u64,
        msg: ControlMsg,
        reply: SyncSender<DataplaneMsg>,
    },
    FeedClosed {
        session: u64,
        error: Option<String>,
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
    feed: FeedState,
    session: u64,
    expected_seq: u64,
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
            wg_state: Vec::new(),
            feed: FeedState::default(),
            session: 0,
            expected_seq: 1,
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
            if now.duration_since(last_age) >= Duration::from_secs(1) {
                self.fib.age(now);
                last_age = now;
            }
            self.publish();
        }
    }

    pub fn drain_learned(&mut self, now: Instant) {
        while let Some(l) = self.learn.pop() {
            self.fib.learn(l, now);
        }
    }

    pub fn handle(&mut self, m: ManagerMsg) {
        match m {
            ManagerMsg::FeedHello {
                session,
                client,
                reply,
            } => {
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
            ManagerMsg::FeedClosed { session, error } => {
                if session == self.session {
                    if self.fib.syncing() {
                        // An unfinished sync is dropped; the last snapshot stays.
                        self.fib.abort_sync();
                    }
                    self.feed.connected = false;
                }
                // Refused messages were counted when answered; this counts
                // sessions that failed before or outside that (bad hello, garbage).
                if let Some(e) = error {
                    if self.feed.last_error.as_deref() != Some(e.as_str()) {
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
            return err("this feed session was superseded by a newer connection".into());
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
        };
        match result {
            Ok(()) => {
                self.expected_seq += 1;
                self.feed.last_seq = seq_n;
                self.publish();
                DataplaneMsg::Ack {
                    seq: seq_n,
                    snapshot_version: self.fib.version(),
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
                Ok(())
            }
        }
    }

    fn counters(&self) -> Vec<CoreCounters> {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        self.stats
            .iter()
            .map(|s| CoreCounters {
                lcore: s.lcore,
                bursts: load(&s.bursts),
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
                    "nexthops": r.group.hops.iter().map(|h| json!({
                        "port": names[h.port as usize],
                        "gateway": if h.gateway == 0 { None } else { Some(Ipv4Addr::from(h.gateway).to_string()) },
                    })).collect::<Vec<_>>(),
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
            AdminRequest::Ports => json!((self.port_state)()),
            AdminRequest::Neighbors => json!(self.neighbors()),
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
                "ports": (self.port_state)(),
                "neighbors": self.neighbors(),
                "proxy_arp": self.proxy(),
                "tunnels": self.tunnels(),
                "cores": self.counters(),
            }),
        };
        AdminResponse::Ok { data }
    }
}

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
                let error = feed_session(stream, session, &mgr).err();
                if let Some(e) = &error {
                    log::warn!("feed session {session} ended: {e}");
                } else {
                    log::info!("feed session {session} closed");
                }
                let _ = mgr.send(ManagerMsg::FeedClosed { session, error });
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

fn feed_session(
    stream: UnixStream,
    session: u64,
    mgr: &SyncSender<ManagerMsg>,
) -> Result<(), String> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    let mut writer = BufWriter::new(stream);
    let mut buf = Vec::new();
    let reply_err = |w: &mut BufWriter<UnixStream>, seq: Option<u64>, message: String| {
        let _ = framing::write_msg(
            w,
            &DataplaneMsg::Error {
                seq,
                message: message.clone(),
            },
        );
        Err(message)
    };
    let hello: ControlMsg = match framing::read_msg(&mut reader, &mut buf) {
        Ok(m) => m,
        Err(FrameError::Closed) => return Ok(()),
        Err(e) => return reply_err(&mut writer, None, format!("bad hello: {e}")),
    };
    let ControlMsg::Hello { version, client } = hello else {
        return reply_err(
            &mut writer,
            hello.seq(),
            "the first message must be hello".into(),
        );
    };
    if version != FEED_PROTOCOL_VERSION {
        return reply_err(
            &mut writer,
            None,
            format!("feed protocol version {version} is not supported (this dataplane speaks {FEED_PROTOCOL_VERSION})"),
        );
    }
    let welcome = ask(mgr, |reply| ManagerMsg::FeedHello {
        session,
        client,
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
            Err(e) => return reply_err(&mut writer, None, e.to_string()),
        };
        let answer = ask(mgr, |reply| ManagerMsg::Feed {
            session,
            msg,
            reply,
        })?;
        let failed = matches!(answer, DataplaneMsg::Error { .. });
        framing::write_msg(&mut writer, &answer).map_err(|e| e.to_string())?;
        if let DataplaneMsg::Error { message, .. } = answer {
            debug_assert!(failed);
            return Err(message);
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
