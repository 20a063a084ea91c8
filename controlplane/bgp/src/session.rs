//! One task per configured peer: connect-retry with jitter (or passive),
//! inbound connections handed over by the listener, RFC 4271 6.8 collision
//! resolution, and the per-connection loop that runs a `Connection` (codec +
//! `fsm`, no sockets) with a reader task (whole frames, cancel-safe) and a
//! writer task. Everything the RIB needs goes to the speaker as
//! `PeerEvent`s (wrapped in `SessionEvent`); the speaker answers with
//! `SessionCmd`s, which `driver` delivers on the command channel an
//! established session hands over with its `Established` event.
//!
//! The connection loop never waits on its writer: what the writer's queue
//! cannot take waits in a backlog, and no new command is taken until that
//! drains. A peer that stops reading therefore neither blocks the loop (its
//! hold timer still ends the session) nor grows the loop's memory beyond
//! one command's messages. Its commands wait in its queue (`Commands`,
//! which counts them) as shared bytes (`SessionCmd::Encoded`), and once too
//! many wait the driver holds back what it owes the peer as prefixes, not
//! messages (`Speaker::missed`).

pub use crate::events::{session_context, PeerEvent, PeerSession, SessionCmd};
use crate::fsm::{self, Action, Event, Fsm, FsmConfig, Negotiated, State};
use crate::packet::{
    self, notify, Codec, Family, Message, Notification, Open, UpdateError, HEADER_LEN, MAX_LEN,
};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

/// Messages between a connection's loop and its writer task.
const WRITE_QUEUE: usize = 1024;
/// The writer gathers queued messages into writes of about this size.
const WRITE_BATCH: usize = 64 * 1024;

/// A `PeerEvent` on its way from a session task to the speaker, with the
/// command channel of the connection when it just got established (the
/// driver keeps it; the speaker never sees a channel).
#[derive(Debug)]
pub struct SessionEvent {
    pub event: PeerEvent,
    pub commands: Option<Commands>,
}

/// The sending end of an established connection's command queue, with the
/// number of commands waiting in it: the driver holds back a peer that
/// falls behind instead of queuing without bound (`driver`).
#[derive(Debug, Clone)]
pub struct Commands {
    tx: mpsc::UnboundedSender<SessionCmd>,
    waiting: Arc<AtomicUsize>,
}

impl Commands {
    /// Queues `cmd`; false when the connection is gone.
    pub fn send(&self, cmd: SessionCmd) -> bool {
        // Counted first, so the receiver never takes away more than was added.
        self.waiting.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(cmd).is_err() {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Commands queued and not yet taken by the connection.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
}

/// The receiving end of a command queue (the connection's loop).
#[derive(Debug)]
pub struct CommandReceiver {
    rx: mpsc::UnboundedReceiver<SessionCmd>,
    waiting: Arc<AtomicUsize>,
}

impl CommandReceiver {
    pub async fn recv(&mut self) -> Option<SessionCmd> {
        let c = self.rx.recv().await?;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        Some(c)
    }

    /// Commands queued and not yet taken.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    pub fn try_recv(&mut self) -> Option<SessionCmd> {
        let c = self.rx.try_recv().ok()?;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        Some(c)
    }
}

/// A connection's command queue.
pub fn command_queue() -> (Commands, CommandReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let waiting = Arc::new(AtomicUsize::new(0));
    (
        Commands {
            tx,
            waiting: waiting.clone(),
        },
        CommandReceiver { rx, waiting },
    )
}

impl From<PeerEvent> for SessionEvent {
    fn from(event: PeerEvent) -> Self {
        SessionEvent {
            event,
            commands: None,
        }
    }
}

/// What a received frame brings the speaker.
#[derive(Debug)]
pub enum Inbound {
    Update(packet::Update),
    RouteRefresh(Family),
    /// The UPDATE error that reset the session.
    UpdateReset(UpdateError),
}

/// The socket-free part of one connection: the codec and the FSM. A frame in
/// gives the FSM's actions and what the speaker must hear of it; the
/// tokio loop (`run_connection`) only moves bytes and timers around it, so
/// tests drive decoding, RFC 7606 handling and the FSM without sockets.
pub struct Connection {
    pub codec: Codec,
    pub fsm: Fsm,
    local_addr: IpAddr,
    /// A NOTIFICATION was received or sent (graceful restart does not apply).
    pub notified: bool,
}

impl Connection {
    pub fn new(cfg: FsmConfig, local_addr: IpAddr) -> Self {
        Connection {
            codec: Codec::new(),
            fsm: Fsm::new(cfg),
            local_addr,
            notified: false,
        }
    }

    /// Handles one received frame (header checked by `packet::check_header`).
    pub fn receive(&mut self, frame: &[u8]) -> (Vec<Action>, Option<Inbound>) {
        let established = self.fsm.state == State::Established;
        let (ev, inbound) = match self.codec.decode(frame) {
            Ok(Message::Open(o)) => (Event::Open(o), None),
            Ok(Message::Keepalive) => (Event::Keepalive, None),
            Ok(Message::Notification(n)) => {
                self.notified = true;
                (Event::Notification(n), None)
            }
            Ok(Message::Update(u)) => (Event::Update, established.then_some(Inbound::Update(u))),
            Ok(Message::RouteRefresh(f)) => (
                Event::Update,
                established.then_some(Inbound::RouteRefresh(f)),
            ),
            Err(e) => {
                let inbound = match e.update {
                    Some(u) if established => Some(Inbound::UpdateReset(*u)),
                    _ => None,
                };
                (Event::Malformed(e.notification, e.reason), inbound)
            }
        };
        (self.fsm.handle(ev), inbound)
    }

    /// Performs `Action::Established`: decoding and encoding follow what was
    /// negotiated (AS width, iBGP or eBGP, our address on the session).
    pub fn established(&mut self, n: &Negotiated) {
        self.codec.set_session(session_context(
            n,
            self.fsm.config().local_as,
            self.local_addr,
        ));
    }
}

/// Control of a peer task from the speaker (admin reset, removal).
#[derive(Debug)]
pub enum PeerCtl {
    Inbound(TcpStream),
    Reset(Notification),
    Shutdown(Notification),
}

/// Runs a peer until `Shutdown` (or the control channel closes).
pub async fn run_peer(
    cfg: PeerSession,
    mut ctl: mpsc::Receiver<PeerCtl>,
    events: mpsc::Sender<SessionEvent>,
) {
    let peer = cfg.peer;
    // First attempt soon (jittered), then the connect-retry interval.
    let mut next_connect = Instant::now() + jitter(Duration::from_millis(300));
    loop {
        let _ = events
            .send(SessionEvent::from(PeerEvent::State {
                peer,
                state: if cfg.passive {
                    State::Active
                } else {
                    State::Connect
                },
            }))
            .await;
        let conn = tokio::select! {
            c = ctl.recv() => match c {
                Some(PeerCtl::Inbound(s)) => Some((s, false)),
                Some(PeerCtl::Reset(_)) => None,
                Some(PeerCtl::Shutdown(_)) | None => return,
            },
            _ = sleep_until(next_connect), if !cfg.passive => {
                next_connect = Instant::now() + jitter(cfg.connect_retry);
                match connect(&cfg).await {
                    Ok(s) => Some((s, true)),
                    Err(e) => {
                        let _ = events.send(PeerEvent::Down { peer, reason: format!("connect to {}: {e}", cfg.remote), was_established: false, tcp_failure: true }.into()).await;
                        None
                    }
                }
            }
        };
        let Some((stream, outbound)) = conn else {
            continue;
        };
        let mut current = Some((stream, outbound, None));
        while let Some((stream, outbound, opened)) = current.take() {
            match run_connection(&cfg, stream, outbound, opened, &mut ctl, &events).await {
                Next::Retry => {}
                Next::Switch(s, open) => current = Some((s, false, Some(open))),
                Next::Shutdown => return,
            }
        }
        if !cfg.passive {
            next_connect = next_connect.min(Instant::now() + jitter(cfg.connect_retry));
        }
    }
}

enum Next {
    Retry,
    /// Continue with this (inbound) connection: it won a collision. Our OPEN
    /// was sent on it and the peer's OPEN read.
    Switch(TcpStream, Box<Open>),
    Shutdown,
}

/// How a connect attempt that got no answer ends its `Down` reason (the
/// speaker counts these: with TCP-MD5 or GTSM, a mismatch looks like this).
pub const CONNECT_TIMED_OUT: &str = "connect timed out";

/// RFC 4271 suggests jitter of 0.75..1.0 of a timer.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.75 + fastrand::f64() * 0.25)
}

async fn connect(cfg: &PeerSession) -> std::io::Result<TcpStream> {
    let sock = match cfg.remote {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(local) = cfg.local {
        let scope = match cfg.remote {
            SocketAddr::V6(v6) => v6.scope_id(),
            _ => 0,
        };
        let bind: SocketAddr = match local {
            IpAddr::V6(a) => SocketAddr::V6(std::net::SocketAddrV6::new(a, 0, 0, scope)),
            IpAddr::V4(a) => SocketAddr::new(IpAddr::V4(a), 0),
        };
        sock.bind(bind)?;
    }
    // Before the SYN: the key signs it, and GTSM sends it with TTL 255.
    cfg.security
        .apply_outgoing(std::os::fd::AsRawFd::as_raw_fd(&sock), cfg.remote)?;
    let s = tokio::time::timeout(Duration::from_secs(5), sock.connect(cfg.remote))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, CONNECT_TIMED_OUT))??;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Reads whole frames (header checked) and sends them on; an error ends it.
/// Reads whole frames. `offer_extended`: we offered Extended Messages
/// (RFC 8654), so once the peer's OPEN offers them too, frames may be up to
/// 65535 octets; `max_len` is where it starts (raised already when the OPEN
/// was read before this task, in a collision handshake).
async fn reader(
    mut rd: OwnedReadHalf,
    tx: mpsc::Sender<Result<Vec<u8>, packet::WireError>>,
    offer_extended: bool,
    mut max_len: usize,
) {
    loop {
        let mut h = [0u8; HEADER_LEN];
        if let Err(e) = rd.read_exact(&mut h).await {
            let _ = tx.send(Err(closed(e))).await;
            return;
        }
        let (len, typ) = match packet::check_header(&h, max_len) {
            Ok(x) => x,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        let mut frame = vec![0u8; len];
        frame[..HEADER_LEN].copy_from_slice(&h);
        if let Err(e) = rd.read_exact(&mut frame[HEADER_LEN..]).await {
            let _ = tx.send(Err(closed(e))).await;
            return;
        }
        // Read here, before the OPEN is decoded: the peer may send a large
        // UPDATE right after its KEEPALIVE.
        if typ == packet::MSG_OPEN && offer_extended && packet::open_offers_extended_message(&frame)
        {
            max_len = packet::MAX_EXTENDED_LEN;
        }
        if tx.send(Ok(frame)).await.is_err() {
            return;
        }
    }
}

/// A read error as a "connection closed" marker (code 0 = no NOTIFICATION to send).
fn closed(e: std::io::Error) -> packet::WireError {
    packet::WireError {
        notification: Notification::new(0, 0),
        reason: e.to_string(),
        update: None,
    }
}

async fn writer(mut wr: OwnedWriteHalf, mut rx: mpsc::Receiver<Bytes>) {
    // Messages queued together go out in one write (a table dump is
    // hundreds of UPDATEs: one syscall per WRITE_BATCH bytes, not per message).
    let mut buf = BytesMut::with_capacity(WRITE_BATCH);
    while let Some(b) = rx.recv().await {
        buf.extend_from_slice(&b);
        while buf.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(b) => buf.extend_from_slice(&b),
                Err(_) => break,
            }
        }
        if buf.is_empty() {
            continue;
        }
        if wr.write_all(&buf).await.is_err() {
            return;
        }
        buf.clear();
    }
    let _ = wr.shutdown().await;
}

/// Queues `b` for the writer without waiting: a message the writer's queue
/// has no room for waits in `backlog`, behind any already waiting there.
fn queue(wtx: &mpsc::Sender<Bytes>, backlog: &mut VecDeque<Bytes>, b: Bytes) {
    if !backlog.is_empty() {
        backlog.push_back(b);
        return;
    }
    if let Err(mpsc::error::TrySendError::Full(b)) = wtx.try_send(b) {
        backlog.push_back(b);
    }
}

/// A timer that may be disarmed.
struct Timer(Option<Instant>);

impl Timer {
    fn arm(&mut self, d: Duration) {
        self.0 = if d.is_zero() {
            None
        } else {
            Some(Instant::now() + d)
        };
    }
    async fn fired(&self) {
        match self.0 {
            Some(t) => sleep_until(t).await,
            None => std::future::pending().await,
        }
    }
}

/// The OPEN exchange on a second (inbound) connection while another is in
/// progress (RFC 4271 6.8): send our OPEN, read the peer's. Both connections
/// progress, so two speakers dialing each other at once never wait on each other.
async fn handshake(mut s: TcpStream, f: FsmConfig) -> Option<(TcpStream, Open)> {
    let mut codec = Codec::new();
    let open = codec.encode_open(f.local_as, f.hold_time, f.router_id, &f.caps);
    s.write_all(&open).await.ok()?;
    let read = async {
        let mut h = [0u8; HEADER_LEN];
        s.read_exact(&mut h).await.ok()?;
        let (len, typ) = packet::check_header(&h, MAX_LEN).ok()?;
        if typ != packet::MSG_OPEN {
            return None;
        }
        let mut frame = vec![0u8; len];
        frame[..HEADER_LEN].copy_from_slice(&h);
        s.read_exact(&mut frame[HEADER_LEN..]).await.ok()?;
        match codec.decode(&frame) {
            Ok(Message::Open(o)) => Some(o),
            _ => None,
        }
    };
    let o = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .ok()??;
    Some((s, o))
}

async fn run_connection(
    cfg: &PeerSession,
    stream: TcpStream,
    outbound: bool,
    opened: Option<Box<Open>>,
    ctl: &mut mpsc::Receiver<PeerCtl>,
    events: &mpsc::Sender<SessionEvent>,
) -> Next {
    let peer = cfg.peer;
    let local_addr = stream
        .local_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    let (ftx, mut frames) = mpsc::channel(64);
    let (wtx, wrx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    // What the writer's queue had no room for. The loop never waits on a
    // peer that does not read: it keeps its timers, so such a peer is ended
    // by its hold timer. New commands are taken only while this is empty,
    // so it holds at most one command's messages.
    let mut backlog: VecDeque<Bytes> = VecDeque::new();
    let offer_extended = cfg.fsm.caps.extended_message;
    let max_len = match &opened {
        Some(o) if offer_extended && o.caps.extended_message => packet::MAX_EXTENDED_LEN,
        _ => MAX_LEN,
    };
    let read_task = tokio::spawn(reader(rd, ftx, offer_extended, max_len));
    let write_task = tokio::spawn(writer(wr, wrx));
    let mut conn = Connection::new(cfg.fsm.clone(), local_addr);
    let mut hold = Timer(None);
    let mut keepalive = Timer(None);
    let mut pending: Option<tokio::task::JoinHandle<Option<(TcpStream, Open)>>> = None;
    let (cmd_tx, mut cmds) = command_queue();
    let mut established = false;
    let mut next = Next::Retry;
    let mut actions = conn.fsm.handle(Event::Connected);
    if let Some(open) = opened {
        // Our OPEN already went out during the collision handshake.
        conn.codec.encode_open(
            cfg.fsm.local_as,
            cfg.fsm.hold_time,
            cfg.fsm.router_id,
            &cfg.fsm.caps,
        );
        actions.retain(|a| *a != Action::SendOpen);
        actions.extend(conn.fsm.handle(Event::Open(*open)));
    }
    let mut last_state = conn.fsm.state;
    let _ = events
        .send(SessionEvent::from(PeerEvent::State {
            peer,
            state: conn.fsm.state,
        }))
        .await;
    'conn: loop {
        // Perform actions.
        for a in std::mem::take(&mut actions) {
            match a {
                Action::SendOpen => {
                    let f = &cfg.fsm;
                    let b = conn
                        .codec
                        .encode_open(f.local_as, f.hold_time, f.router_id, &f.caps);
                    queue(&wtx, &mut backlog, b);
                }
                Action::SendKeepalive => queue(&wtx, &mut backlog, packet::keepalive()),
                Action::SendNotification(n) => {
                    conn.notified = true;
                    queue(&wtx, &mut backlog, packet::notification(&n));
                }
                Action::ArmHold(d) => hold.arm(d),
                Action::ArmKeepalive(d) => keepalive.arm(d),
                Action::Established(n) => {
                    conn.established(&n);
                    established = true;
                    let _ = events
                        .send(SessionEvent {
                            event: PeerEvent::Established {
                                peer,
                                negotiated: n,
                                local_addr,
                            },
                            commands: Some(cmd_tx.clone()),
                        })
                        .await;
                }
                Action::Close(reason) => {
                    let _ = events
                        .send(SessionEvent::from(PeerEvent::State {
                            peer,
                            state: State::Idle,
                        }))
                        .await;
                    let _ = events
                        .send(SessionEvent::from(PeerEvent::Down {
                            peer,
                            reason,
                            was_established: established,
                            tcp_failure: !conn.notified,
                        }))
                        .await;
                    break 'conn;
                }
            }
        }
        if conn.fsm.state != last_state {
            last_state = conn.fsm.state;
            let _ = events
                .send(SessionEvent::from(PeerEvent::State {
                    peer,
                    state: conn.fsm.state,
                }))
                .await;
        }
        tokio::select! {
            f = frames.recv() => {
                let ev = match f {
                    Some(Ok(frame)) => {
                        let (a, inbound) = conn.receive(&frame);
                        actions = a;
                        let ev = match inbound {
                            Some(Inbound::Update(update)) => PeerEvent::Update { peer, update },
                            Some(Inbound::RouteRefresh(family)) => PeerEvent::RouteRefresh { peer, family },
                            Some(Inbound::UpdateReset(error)) => PeerEvent::UpdateReset { peer, error },
                            None => continue,
                        };
                        let _ = events.send(ev.into()).await;
                        continue;
                    }
                    Some(Err(e)) if e.notification.code == 0 => Event::TcpClosed(e.reason),
                    Some(Err(e)) => Event::Malformed(e.notification, e.reason),
                    None => Event::TcpClosed("reader stopped".into()),
                };
                actions = conn.fsm.handle(ev);
            }
            c = cmds.recv(), if established && backlog.is_empty() => {
                let Some(c) = c else { continue };
                let mp = !conn.fsm.negotiated.as_ref().is_some_and(|n| n.ipv4_unicast);
                for b in c.encode(&mut conn.codec, mp) {
                    queue(&wtx, &mut backlog, b);
                }
            }
            permit = wtx.reserve(), if !backlog.is_empty() => {
                if let (Ok(permit), Some(b)) = (permit, backlog.pop_front()) {
                    permit.send(b);
                }
                while let Some(b) = backlog.pop_front() {
                    if let Err(mpsc::error::TrySendError::Full(b)) = wtx.try_send(b) {
                        backlog.push_front(b);
                        break;
                    }
                }
            }
            c = ctl.recv() => match c {
                Some(PeerCtl::Inbound(s)) => {
                    if conn.fsm.state == State::Established || pending.is_some() {
                        reject_collision(s).await;
                    } else {
                        pending = Some(tokio::spawn(handshake(s, cfg.fsm.clone())));
                    }
                }
                Some(PeerCtl::Reset(n)) => actions = conn.fsm.handle(Event::Stop(n)),
                Some(PeerCtl::Shutdown(n)) => {
                    actions = conn.fsm.handle(Event::Stop(n));
                    next = Next::Shutdown;
                }
                None => {
                    actions = conn.fsm.handle(Event::Stop(Notification::new(notify::CEASE, notify::CEASE_PEER_DECONFIGURED)));
                    next = Next::Shutdown;
                }
            },
            done = async { pending.as_mut().expect("guarded").await }, if pending.is_some() => {
                pending = None;
                if let Ok(Some((s, open))) = done {
                    if fsm::collision_keeps_current(
                        conn.fsm.state,
                        outbound,
                        cfg.fsm.router_id,
                        open.router_id,
                    ) {
                        reject_collision(s).await;
                    } else {
                        actions = conn.fsm.handle(Event::Stop(Notification::new(notify::CEASE, notify::CEASE_COLLISION)));
                        next = Next::Switch(s, Box::new(open));
                    }
                }
            }
            _ = hold.fired() => actions = conn.fsm.handle(Event::HoldTimerExpired),
            _ = keepalive.fired() => actions = conn.fsm.handle(Event::KeepaliveTimerExpired),
        }
    }
    // Let the writer flush the NOTIFICATION (behind what is queued), then close.
    let flush = async {
        for b in backlog {
            if wtx.send(b).await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), flush).await;
    drop(wtx);
    let _ = tokio::time::timeout(Duration::from_secs(1), write_task).await;
    read_task.abort();
    if let Some(h) = pending {
        // This connection failed while a second one was mid-handshake: use it.
        if let (Next::Retry, Ok(Some((s, open)))) = (&next, h.await) {
            return Next::Switch(s, Box::new(open));
        }
    }
    next
}

/// Closes a connection that lost a collision with a Cease/collision NOTIFICATION.
async fn reject_collision(mut s: TcpStream) {
    let n = Notification::new(notify::CEASE, notify::CEASE_COLLISION);
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        s.write_all(&packet::notification(&n)),
    )
    .await;
    let _ = s.shutdown().await;
}
