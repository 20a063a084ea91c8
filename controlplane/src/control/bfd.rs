//! BFD for cer-control's BGP neighbors: the UDP sockets and timers around
//! `cer-bfd`'s sans-IO sessions, on one tokio task.
//!
//! Where the packets go: like BGP, BFD runs over the kernel's UDP stack in
//! the node's namespace, so on a CER it crosses the dataplane's exception
//! path (the TAP of the port holding the router address). At 300 ms x 3 that
//! is ~7 packets a second per session; the exception path is not the
//! polling path, and its rings are served every burst, so a loaded polling
//! core delays a BFD packet by at most a burst, well under the 300 ms
//! interval. A stalled dataplane is exactly what BFD must see, and does.
//!
//! Single hop (RFC 5881): to UDP 3784, sent with TTL 255 and accepted only
//! with TTL 255 (GTSM), source port 49152-65535. Multihop (RFC 5883, the
//! sessions to a reflector): UDP 4784, TTL 255 sent, any TTL accepted.
//! Received packets are demultiplexed by Your Discriminator, or, while that
//! is 0, by the peer's address. Every refused packet is counted by reason.

use cer_bfd::{Config, ControlPacket, Session, StateChange, View};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// The UDP ports (RFC 5881 / 5883; tests use others).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub single_hop: u16,
    pub multihop: u16,
}

impl Default for Ports {
    fn default() -> Self {
        Ports {
            single_hop: cer_bfd::packet::PORT_SINGLE_HOP,
            multihop: cer_bfd::packet::PORT_MULTIHOP,
        }
    }
}

/// One BFD peer (a BGP neighbor with `bfd = true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpec {
    pub peer: Ipv4Addr,
    /// Our address towards it (the BGP session's local address).
    pub local: Ipv4Addr,
    pub multihop: bool,
    pub cfg: Config,
}

/// From the control state to the BFD task.
#[derive(Debug)]
pub enum Cmd {
    Add(PeerSpec),
    Remove(Ipv4Addr),
}

/// From the BFD task to the control state: a session changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub peer: Ipv4Addr,
    pub change: StateChange,
}

/// What `cerctl show bfd` reads: every session's view and the drops.
#[derive(Debug, Default, Clone)]
pub struct Shared {
    pub sessions: BTreeMap<Ipv4Addr, (PeerSpec, View)>,
    /// Refused packets by reason: `PacketError::name`/`RxDrop::name`, `ttl`
    /// (a single-hop packet not sent with TTL 255), `no_session`,
    /// `wrong_source` (a known discriminator from another address),
    /// `rate_limited_pauses` (times a listener stopped reading under a flood).
    pub drops: BTreeMap<String, u64>,
}

pub type SharedBfd = Arc<Mutex<Shared>>;

/// A received datagram with its IP TTL.
struct Rx {
    data: Vec<u8>,
    src: Ipv4Addr,
    ttl: u8,
    multihop: bool,
}

struct Entry {
    spec: PeerSpec,
    session: Session,
    tx: std::net::UdpSocket,
}

/// Starts the task; it ends when `cmds` closes.
pub fn spawn(
    ports: Ports,
    mut cmds: mpsc::Receiver<Cmd>,
    events: mpsc::Sender<Event>,
    shared: SharedBfd,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (rx_tx, mut rx_rx) = mpsc::channel::<Rx>(1024);
        let mut listeners: BTreeMap<(Ipv4Addr, bool), tokio::task::JoinHandle<()>> =
            BTreeMap::new();
        let mut sessions: BTreeMap<Ipv4Addr, Entry> = BTreeMap::new();
        let mut next_disc: u32 = 1 + (std::process::id() << 8);
        loop {
            let wake = sessions
                .values()
                .filter_map(|e| e.session.next_wakeup())
                .min();
            let sleep = async {
                match wake {
                    Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    None => break,
                    Some(Cmd::Add(spec)) => {
                        if let std::collections::btree_map::Entry::Vacant(slot) =
                            listeners.entry((spec.local, spec.multihop))
                        {
                            let port = if spec.multihop { ports.multihop } else { ports.single_hop };
                            match listen(spec.local, port) {
                                Ok(s) => {
                                    slot.insert(tokio::spawn(read_loop(s, spec.multihop, rx_tx.clone(), shared.clone())));
                                }
                                Err(e) => {
                                    log::error!("bfd: cannot listen on {}:{port}: {e}", spec.local);
                                    continue;
                                }
                            }
                        }
                        next_disc = next_disc.wrapping_add(1).max(1);
                        let dst_port = if spec.multihop { ports.multihop } else { ports.single_hop };
                        let tx = match sender(spec.local, next_disc, spec.peer, dst_port) {
                            Ok(t) => t,
                            Err(e) => {
                                log::error!("bfd: no socket to send to {}: {e}", spec.peer);
                                continue;
                            }
                        };
                        log::info!(
                            "bfd: session to {} from {} ({}, {:?} x {})",
                            spec.peer,
                            spec.local,
                            if spec.multihop { "multihop" } else { "single hop" },
                            spec.cfg.desired_min_tx,
                            spec.cfg.detect_mult
                        );
                        let session = Session::new(spec.cfg.clone(), next_disc, Instant::now(), u64::from(next_disc));
                        let e = Entry { spec, session, tx };
                        publish(&shared, &e);
                        sessions.insert(e.spec.peer, e);
                    }
                    Some(Cmd::Remove(peer)) => {
                        if let Some(mut e) = sessions.remove(&peer) {
                            let out = e.session.set_admin_down(true, Instant::now());
                            send_all(&e, out.send);
                        }
                        if let Ok(mut s) = shared.lock() {
                            s.sessions.remove(&peer);
                        }
                    }
                },
                Some(rx) = rx_rx.recv() => {
                    let now = Instant::now();
                    let count_drop = |why: &str| {
                        if let Ok(mut s) = shared.lock() {
                            *s.drops.entry(why.to_string()).or_default() += 1;
                        }
                    };
                    if !rx.multihop && rx.ttl != 255 {
                        count_drop("ttl");
                        continue;
                    }
                    let p = match ControlPacket::decode(&rx.data) {
                        Ok(p) => p,
                        Err(e) => {
                            count_drop(e.name());
                            continue;
                        }
                    };
                    let entry = if p.your_disc != 0 {
                        sessions.values_mut().find(|e| e.session.local_disc() == p.your_disc)
                    } else {
                        sessions.get_mut(&rx.src).filter(|e| e.spec.multihop == rx.multihop)
                    };
                    let Some(entry) = entry else {
                        count_drop("no_session");
                        continue;
                    };
                    if entry.spec.peer != rx.src {
                        count_drop("wrong_source");
                        continue;
                    }
                    match entry.session.on_packet(&rx.data, &p, now) {
                        Ok(out) => {
                            send_all(entry, out.send);
                            publish(&shared, entry);
                            if let Some(change) = out.change {
                                let _ = events.send(Event { peer: entry.spec.peer, change }).await;
                            }
                        }
                        Err(e) => {
                            publish(&shared, entry);
                            count_drop(e.name());
                        }
                    }
                }
                _ = sleep => {
                    let now = Instant::now();
                    for e in sessions.values_mut() {
                        if e.session.next_wakeup().is_some_and(|t| t <= now) {
                            let out = e.session.poll(now);
                            send_all(e, out.send);
                            publish(&shared, e);
                            if let Some(change) = out.change {
                                let _ = events.send(Event { peer: e.spec.peer, change }).await;
                            }
                        }
                    }
                }
            }
        }
        for (_, l) in listeners {
            l.abort();
        }
    })
}

/// Refreshes one session's view in the shared state (`show bfd`): only the
/// session an input touched, the spec copied once.
fn publish(shared: &SharedBfd, e: &Entry) {
    if let Ok(mut s) = shared.lock() {
        match s.sessions.get_mut(&e.spec.peer) {
            Some(slot) if slot.0 == e.spec => slot.1 = e.session.view(),
            _ => {
                s.sessions
                    .insert(e.spec.peer, (e.spec.clone(), e.session.view()));
            }
        }
    }
}

fn send_all(e: &Entry, packets: Vec<Vec<u8>>) {
    for p in packets {
        if let Err(err) = e.tx.send(&p) {
            log::debug!("bfd: send to {}: {err}", e.spec.peer);
        }
    }
}

/// The receive socket of one local address and kind, with IP_RECVTTL.
fn listen(local: Ipv4Addr, port: u16) -> std::io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    let one: libc::c_int = 1;
    // SAFETY: setsockopt with a valid int option value on our socket.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_RECVTTL,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    s.bind(&SockAddr::from(SocketAddrV4::new(local, port)))?;
    UdpSocket::from_std(s.into())
}

/// The send socket of one session: from `local`, a source port in
/// 49152-65535 derived from the discriminator, TTL 255, connected to the
/// peer.
fn sender(
    local: Ipv4Addr,
    disc: u32,
    peer: Ipv4Addr,
    port: u16,
) -> std::io::Result<std::net::UdpSocket> {
    let mut last = None;
    for k in 0..64u32 {
        let src = 49152 + ((disc.wrapping_add(k)) % 16384) as u16;
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        s.set_ttl_v4(255)?;
        s.set_nonblocking(true)?;
        match s.bind(&SockAddr::from(SocketAddrV4::new(local, src))) {
            Ok(()) => {
                s.connect(&SockAddr::from(SocketAddr::V4(SocketAddrV4::new(
                    peer, port,
                ))))?;
                return Ok(s.into());
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free source port")))
}

/// Packets a listener takes per second before it pauses (every session
/// together: 100 sessions at 10 ms is 10 000/s). Beyond it the loop stops
/// reading for [`FLOOD_PAUSE`] and the kernel drops what overflows the
/// socket buffer, so a flood costs this task bounded CPU and never starves
/// the BGP sessions sharing the runtime.
const RX_RATE: f64 = 20_000.0;
const RX_BURST: f64 = 2_000.0;
const FLOOD_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);

async fn read_loop(s: UdpSocket, multihop: bool, out: mpsc::Sender<Rx>, shared: SharedBfd) {
    let mut buf = [0u8; 512];
    let fd = s.as_raw_fd();
    let mut tokens = RX_BURST;
    let mut refilled = Instant::now();
    loop {
        let now = Instant::now();
        tokens = (tokens + now.duration_since(refilled).as_secs_f64() * RX_RATE).min(RX_BURST);
        refilled = now;
        if tokens < 1.0 {
            if let Ok(mut sh) = shared.lock() {
                *sh.drops.entry("rate_limited_pauses".into()).or_default() += 1;
            }
            tokio::time::sleep(FLOOD_PAUSE).await;
            continue;
        }
        match s
            .async_io(Interest::READABLE, || recv_with_ttl(fd, &mut buf))
            .await
        {
            Ok((n, src, ttl)) => {
                tokens -= 1.0;
                let rx = Rx {
                    data: buf[..n].to_vec(),
                    src,
                    ttl,
                    multihop,
                };
                if out.send(rx).await.is_err() {
                    return;
                }
            }
            Err(e) => log::debug!("bfd: recv: {e}"),
        }
    }
}

/// recvmsg(2) with the IP_TTL control message.
fn recv_with_ttl(fd: i32, buf: &mut [u8]) -> std::io::Result<(usize, Ipv4Addr, u8)> {
    // SAFETY: zeroed plain C structs, filled by recvmsg below.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut cbuf = [0u64; 8];
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut addr as *mut libc::sockaddr_in).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf);
    // SAFETY: msg points at live buffers for the duration of the call.
    let n = unsafe { libc::recvmsg(fd, &mut msg, 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut ttl = 0u8;
    // SAFETY: walking the control messages recvmsg wrote into cbuf.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::IPPROTO_IP && (*c).cmsg_type == libc::IP_TTL {
                ttl = *(libc::CMSG_DATA(c) as *const libc::c_int) as u8;
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    let src = Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr));
    Ok((n as usize, src, ttl))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cer_bfd::State;
    use std::time::Duration;

    fn spec(peer: &str, local: &str) -> PeerSpec {
        PeerSpec {
            peer: peer.parse().unwrap(),
            local: local.parse().unwrap(),
            multihop: false,
            cfg: Config {
                desired_min_tx: Duration::from_millis(50),
                required_min_rx: Duration::from_millis(50),
                detect_mult: 3,
                auth: None,
            },
        }
    }

    async fn next_change(rx: &mut mpsc::Receiver<Event>) -> Event {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a BFD state change within 5 s")
            .expect("task alive")
    }

    /// Two BFD tasks on loopback addresses (127.0.0.21/22, ports of their
    /// own): both sessions come Up over real UDP with TTL 255, and when one
    /// side's task ends (a dead router), the other detects it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_tasks_come_up_over_udp_and_detect_a_dead_peer() {
        let ports = Ports {
            single_hop: 23784,
            multihop: 24784,
        };
        let (a_cmd, a_cmd_rx) = mpsc::channel(8);
        let (a_ev_tx, mut a_ev) = mpsc::channel(8);
        let a_shared = SharedBfd::default();
        let a = spawn(ports, a_cmd_rx, a_ev_tx, a_shared.clone());
        let (b_cmd, b_cmd_rx) = mpsc::channel(8);
        let (b_ev_tx, mut b_ev) = mpsc::channel(8);
        let b = spawn(ports, b_cmd_rx, b_ev_tx, SharedBfd::default());
        a_cmd
            .send(Cmd::Add(spec("127.0.0.22", "127.0.0.21")))
            .await
            .unwrap();
        b_cmd
            .send(Cmd::Add(spec("127.0.0.21", "127.0.0.22")))
            .await
            .unwrap();
        let mut a_up = false;
        while !a_up {
            let e = next_change(&mut a_ev).await;
            a_up = e.change.to == State::Up;
        }
        loop {
            if next_change(&mut b_ev).await.change.to == State::Up {
                break;
            }
        }
        // B dies without a word.
        b.abort();
        drop(b_cmd);
        let t0 = Instant::now();
        let e = next_change(&mut a_ev).await;
        assert_eq!(e.change.to, State::Down);
        assert_eq!(e.change.diag, cer_bfd::Diag::ControlDetectionTimeExpired);
        assert!(
            t0.elapsed() < Duration::from_millis(1000),
            "{:?}",
            t0.elapsed()
        );
        let s = a_shared.lock().unwrap().clone();
        assert_eq!(s.sessions.len(), 1);
        drop(a_cmd);
        let _ = a.await;
    }

    /// A flood of malformed packets at the BFD port: each is a counted
    /// drop, and the listener takes no more than its rate allows (it pauses
    /// instead), so the flood's cost to the runtime is bounded.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_is_counted_and_rate_limited() {
        let ports = Ports {
            single_hop: 25784,
            multihop: 26784,
        };
        let (cmd, cmd_rx) = mpsc::channel(8);
        let (ev_tx, _ev) = mpsc::channel(64);
        let shared = SharedBfd::default();
        let task = spawn(ports, cmd_rx, ev_tx, shared.clone());
        cmd.send(Cmd::Add(spec("127.0.0.32", "127.0.0.31")))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let t0 = Instant::now();
        let sent = tokio::task::spawn_blocking(|| {
            let s = std::net::UdpSocket::bind("127.0.0.33:0").unwrap();
            s.set_ttl(255).unwrap();
            let mut n = 0u64;
            let t = Instant::now();
            while t.elapsed() < Duration::from_millis(1500) {
                if s.send_to(&[0x20, 0x40], "127.0.0.31:25784").is_ok() {
                    n += 1;
                }
            }
            n
        })
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let elapsed = t0.elapsed().as_secs_f64();
        let s = shared.lock().unwrap().clone();
        let short = s.drops.get("short").copied().unwrap_or(0);
        assert!(short > 0, "{:?}", s.drops);
        assert!(
            short as f64 <= RX_RATE * elapsed + RX_BURST,
            "{short} read in {elapsed:.2} s: over the rate"
        );
        if sent as f64 > RX_RATE * elapsed + RX_BURST {
            assert!(s.drops.get("rate_limited_pauses").copied().unwrap_or(0) > 0);
        }
        drop(cmd);
        let _ = task.await;
    }
}
