//! Idle wake-up of a polling core (poll modes `adaptive` and `shared`): when
//! its ports have been empty for a while, the core sleeps in `epoll_wait` on
//! what signals traffic for its queue, instead of spinning or sleeping blind:
//! - `af_packet` / `af_xdp` ports: the PMD's own packet / XDP sockets (found
//!   by address among the process's descriptors: DPDK gives no API for
//!   them); a socket is readable while its receive ring holds frames;
//! - ports configured with receive interrupts (the exception TAPs):
//!   `rte_eth_dev_rx_intr_ctl_q_get_fd`, armed before sleeping;
//! - an eventfd the manager writes after queuing a command for the core;
//! - a timerfd: the next timer duty of the core (WireGuard, 100 ms), and the
//!   back-off bound when some port has no event source (memif, PCI NICs
//!   here), so a packet there never waits longer than the bound.
//!
//! Nothing here runs while packets flow: the core only calls `sleep` after
//! a poll found every queue empty (setup and sleeping are syscalls; the
//! packet path makes none).

use cer_dpdk::Port;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

/// What wakes a sleeping core, per port.
#[derive(Debug, Clone, Default)]
pub struct WakeSources {
    /// Descriptors to wait on, each with what it is (for logs and `show state`).
    pub fds: Vec<(RawFd, String)>,
    /// Ports whose receive interrupts must be armed before sleeping.
    pub interrupts: Vec<(Port, u16)>,
    /// Ports with no event source: the core wakes every back-off bound for them.
    pub missing: Vec<String>,
}

/// Lets the manager wake a sleeping core (an eventfd).
#[derive(Debug)]
pub struct CoreWaker {
    fd: OwnedFd,
}

impl CoreWaker {
    pub fn new() -> std::io::Result<CoreWaker> {
        // SAFETY: eventfd has no memory preconditions; a negative result is
        // an error, otherwise the descriptor is new and ours.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor owned by nobody else.
        Ok(CoreWaker {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Wakes the core if it sleeps (a sleeping core sees it at once; an
    /// awake one finds it on its next sleep and polls once more).
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd; a full
        // counter (EAGAIN) means a wake-up is already pending.
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from our non-blocking eventfd.
        unsafe { libc::read(self.fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }
}

/// Why a sleep ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woke {
    /// A port (or the manager) signalled.
    Event,
    /// The timer: the back-off bound or the core's next timer duty.
    Timeout,
}

/// A core's sleeping place: one epoll set, owned by the polling thread.
pub struct Sleeper {
    epoll: OwnedFd,
    timer: OwnedFd,
    waker: Arc<CoreWaker>,
    interrupts: Vec<(Port, u16)>,
    /// Some port has no event source: never sleep longer than this.
    bound: Option<Duration>,
}

const TAG_TIMER: u64 = u64::MAX;
const TAG_WAKER: u64 = u64::MAX - 1;

fn cvt(rc: libc::c_int) -> std::io::Result<libc::c_int> {
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

impl Sleeper {
    /// An epoll set over `sources`, the core's waker and a timer. `bound`
    /// is the back-off bound used when some port has no event source, or
    /// always when `events` is false (`idle_wake = "timer"`).
    pub fn new(
        sources: &WakeSources,
        waker: Arc<CoreWaker>,
        bound: Duration,
        events: bool,
    ) -> std::io::Result<Sleeper> {
        // SAFETY: plain syscalls creating new descriptors, owned below.
        let epoll = unsafe { OwnedFd::from_raw_fd(cvt(libc::epoll_create1(libc::EPOLL_CLOEXEC))?) };
        // SAFETY: as above.
        let timer = unsafe {
            OwnedFd::from_raw_fd(cvt(libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            ))?)
        };
        let add = |fd: RawFd, tag: u64| -> std::io::Result<()> {
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: tag,
            };
            // SAFETY: ev is a valid epoll_event for the duration of the call.
            cvt(unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) })
                .map(|_| ())
        };
        add(timer.as_raw_fd(), TAG_TIMER)?;
        add(waker.fd.as_raw_fd(), TAG_WAKER)?;
        if events {
            for (i, (fd, _)) in sources.fds.iter().enumerate() {
                add(*fd, i as u64)?;
            }
        }
        let bound = if !events || !sources.missing.is_empty() {
            Some(bound)
        } else {
            None
        };
        Ok(Sleeper {
            epoll,
            timer,
            waker,
            interrupts: if events {
                sources.interrupts.clone()
            } else {
                Vec::new()
            },
            bound,
        })
    }

    /// The back-off bound in force (some port cannot signal traffic).
    pub fn bound(&self) -> Option<Duration> {
        self.bound
    }

    /// Arms receive interrupts; call, poll once more (traffic may have come
    /// in between), and only then `wait` if that poll was empty.
    pub fn arm(&self) {
        for (port, q) in &self.interrupts {
            port.rx_intr_enable(*q);
        }
    }

    /// Disarms after `arm` when the extra poll found traffic (no sleep).
    pub fn wait_cancel(&self) {
        for (port, q) in &self.interrupts {
            port.rx_intr_disable(*q);
        }
    }

    /// Sleeps until an event, or `max` (the core's next timer duty), or the
    /// back-off bound if one is in force. Disarms the interrupts.
    pub fn wait(&mut self, max: Duration) -> Woke {
        let d = self
            .bound
            .map_or(max, |b| b.min(max))
            .max(Duration::from_micros(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: d.as_secs() as libc::time_t,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: spec is a valid itimerspec; a null old value is allowed.
        unsafe { libc::timerfd_settime(self.timer.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 8];
        let n = loop {
            // SAFETY: evs has room for 8 events; a negative timeout never
            // happens (the timerfd bounds the wait, -1 blocks on it).
            let n = unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), evs.as_mut_ptr(), 8, -1) };
            if n >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                break n.max(0) as usize;
            }
        };
        let mut woke = Woke::Timeout;
        for e in &evs[..n] {
            match e.u64 {
                TAG_TIMER => {
                    let mut v: u64 = 0;
                    // SAFETY: reads 8 bytes into a live u64 from our timerfd.
                    unsafe { libc::read(self.timer.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
                }
                TAG_WAKER => {
                    self.waker.drain();
                    woke = Woke::Event;
                }
                _ => woke = Woke::Event,
            }
        }
        if woke == Woke::Event {
            // Disarm the timer so a late expiry does not end the next sleep early.
            let zero = libc::itimerspec {
                it_interval: spec.it_interval,
                it_value: spec.it_interval,
            };
            // SAFETY: as above.
            unsafe {
                libc::timerfd_settime(self.timer.as_raw_fd(), 0, &zero, std::ptr::null_mut())
            };
        }
        for (port, q) in &self.interrupts {
            port.rx_intr_disable(*q);
        }
        woke
    }
}

/// Asks the kernel to wake this thread's timers within 1 µs of their time
/// (the default slack is 50 µs): the back-off bound is then what it says.
pub fn tighten_timer_slack() {
    // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's timer slack.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong, 0, 0, 0) };
}

/// Kernel interface index of `iface` (0 if unknown).
pub(crate) fn ifindex(iface: &str) -> u32 {
    let Ok(c) = std::ffi::CString::new(iface) else {
        return 0;
    };
    // SAFETY: c is a valid NUL-terminated string for the call.
    unsafe { libc::if_nametoindex(c.as_ptr()) }
}

/// The sockets of this process bound to an interface: (fd, family,
/// ifindex, queue) for every AF_PACKET (queue unknown: 0) and AF_XDP socket.
pub(crate) fn bound_sockets() -> Vec<(RawFd, i32, u32, u32)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return out;
    };
    // AF_XDP sockets have no getsockname: their interface and queue come
    // from sock_diag, by inode (asked once, only if needed).
    let mut xdp: Option<std::collections::HashMap<u64, (u32, u32)>> = None;
    for e in dir.flatten() {
        let Some(fd) = e.file_name().to_str().and_then(|n| n.parse::<RawFd>().ok()) else {
            continue;
        };
        let Some(inode) = std::fs::read_link(e.path()).ok().and_then(|l| {
            l.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse::<u64>()
                .ok()
        }) else {
            continue;
        };
        // SAFETY: a zeroed sockaddr_storage is a valid out buffer.
        let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: ss/len describe a live buffer; a closed or foreign fd just
        // makes the call fail.
        let rc = unsafe {
            libc::getsockname(
                fd,
                (&mut ss as *mut libc::sockaddr_storage).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            let info = xdp.get_or_insert_with(xdp_sockets);
            if let Some(&(ifi, q)) = info.get(&inode) {
                out.push((fd, libc::AF_XDP, ifi, q));
            } else if socket_domain(fd) == Some(libc::AF_XDP) {
                // A kernel without xsk_diag: an AF_XDP socket whose port is
                // unknown (ifindex 0), with its inode in place of the queue
                // (creation order; see `discover`).
                out.push((fd, libc::AF_XDP, 0, inode as u32));
            }
            continue;
        }
        let family = i32::from(ss.ss_family);
        if family == libc::AF_PACKET {
            // SAFETY: the kernel filled a sockaddr_ll for an AF_PACKET socket.
            let ll: libc::sockaddr_ll =
                unsafe { std::ptr::read((&ss as *const libc::sockaddr_storage).cast()) };
            out.push((fd, family, ll.sll_ifindex as u32, 0));
        } else if family == libc::AF_XDP {
            // struct sockaddr_xdp { u16 family, u16 flags, u32 ifindex, u32 queue_id, u32 shared_umem_fd }
            let b: [u8; 16] = {
                // SAFETY: sockaddr_storage is at least 16 bytes.
                unsafe { std::ptr::read((&ss as *const libc::sockaddr_storage).cast()) }
            };
            let ifi = u32::from_ne_bytes([b[4], b[5], b[6], b[7]]);
            let q = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
            out.push((fd, family, ifi, q));
        }
    }
    out.sort_by_key(|s| s.0);
    out
}

/// The address family of socket `fd` (SO_DOMAIN).
fn socket_domain(fd: RawFd) -> Option<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: v/len describe a live int; a bad fd makes the call fail.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_DOMAIN,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(v)
}

/// The AF_XDP sockets of this network namespace, inode -> (ifindex, queue),
/// from a NETLINK_SOCK_DIAG dump (`ss --xdp` asks the same). Empty if the
/// kernel refuses (no xsk_diag): those ports then wake on the timer.
fn xdp_sockets() -> std::collections::HashMap<u64, (u32, u32)> {
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const XDP_SHOW_INFO: u32 = 1;
    const XDP_DIAG_INFO: u16 = 1;
    let mut map = std::collections::HashMap::new();
    // SAFETY: plain socket(2); the result is checked and owned below.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if raw < 0 {
        return map;
    }
    // SAFETY: raw is a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // nlmsghdr (16) + xdp_diag_req (family, protocol, pad16, ino, show, cookie[2]) (20).
    let mut req = Vec::with_capacity(36);
    req.extend_from_slice(&36u32.to_ne_bytes());
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes()); // seq
    req.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel
    req.push(libc::AF_XDP as u8);
    req.push(0);
    req.extend_from_slice(&0u16.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes()); // any inode
    req.extend_from_slice(&XDP_SHOW_INFO.to_ne_bytes());
    req.extend_from_slice(&[0u8; 8]);
    // SAFETY: a zeroed sockaddr_nl addresses the kernel.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: req and kernel are live for the call; sizes are theirs.
    let sent = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            req.as_ptr().cast(),
            req.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent != req.len() as isize {
        return map;
    }
    let mut buf = vec![0u8; 32 * 1024];
    let rd = |b: &[u8], at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    let rd16 = |b: &[u8], at: usize| -> Option<u16> {
        Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
    };
    // Bounded: a dump ends with NLMSG_DONE or an error; give up after 64 reads.
    for _ in 0..64 {
        // SAFETY: buf is a live buffer of buf.len() bytes.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            return map;
        }
        let data = &buf[..n as usize];
        let mut off = 0;
        while off + 16 <= data.len() {
            let Some(len) = rd(data, off).map(|l| l as usize) else {
                return map;
            };
            let ty = rd16(data, off + 4).unwrap_or(0);
            if len < 16 || off + len > data.len() {
                return map;
            }
            if ty == libc::NLMSG_DONE as u16 || ty == libc::NLMSG_ERROR as u16 {
                return map;
            }
            // xdp_diag_msg: family, type, pad16, ino (4), cookie (8) = 16 bytes.
            let msg = &data[off + 16..off + len];
            if let Some(ino) = rd(msg, 4) {
                let mut a = 16;
                while a + 4 <= msg.len() {
                    let alen = usize::from(rd16(msg, a).unwrap_or(0));
                    let aty = rd16(msg, a + 2).unwrap_or(0);
                    if alen < 4 || a + alen > msg.len() {
                        break;
                    }
                    if aty == XDP_DIAG_INFO {
                        if let (Some(ifi), Some(q)) = (rd(msg, a + 4), rd(msg, a + 8)) {
                            map.insert(u64::from(ino), (ifi, q));
                        }
                    }
                    a += (alen + 3) & !3;
                }
            }
            off += (len + 3) & !3;
        }
    }
    map
}

/// A kernel-facing port of the node file (af_packet or af_xdp on `iface`).
pub struct KernelPort<'a> {
    pub name: &'a str,
    pub iface: &'a str,
    pub xdp: bool,
}

/// What can wake the core polling queue `queue` of `queues`: the PMD
/// sockets of the kernel-facing ports, the receive interrupts of `intr`
/// ports (name, port), and `others` (ports with no event source). For
/// af_packet, the PMD opens one socket per queue pair in queue order, so
/// queue `q` is the `q`-th socket on the interface; anything else than
/// `queues` sockets there is reported as missing instead of guessed.
pub fn discover(
    kernel: &[KernelPort],
    intr: &[(String, Port)],
    others: &[String],
    queue: u16,
    queues: u16,
) -> WakeSources {
    let socks = bound_sockets();
    let mut w = WakeSources {
        fds: Vec::new(),
        interrupts: Vec::new(),
        missing: others.to_vec(),
    };
    // AF_XDP sockets the kernel could not place (no xsk_diag), in creation
    // order (inode). The PMD creates one per port at start, in port order.
    // With one queue per port they are then the af_xdp ports' sockets in
    // port order, and which is which does not matter for waking (the one
    // core polls every port); with several queues they cannot be told apart
    // and those ports wake on the timer instead.
    let mut unplaced: Vec<(u32, RawFd)> = socks
        .iter()
        .filter(|s| s.1 == libc::AF_XDP && s.2 == 0)
        .map(|s| (s.3, s.0))
        .collect();
    unplaced.sort_unstable();
    let xdp_ports = kernel.iter().filter(|k| k.xdp).count();
    let n_unplaced = unplaced.len();
    let mut by_order = (queues == 1 && unplaced.len() == xdp_ports)
        .then(|| unplaced.into_iter().map(|(_, fd)| fd))
        .into_iter()
        .flatten();
    for k in kernel {
        let idx = ifindex(k.iface);
        let fam = if k.xdp { libc::AF_XDP } else { libc::AF_PACKET };
        let on: Vec<&(RawFd, i32, u32, u32)> = socks
            .iter()
            .filter(|s| s.1 == fam && s.2 == idx && idx != 0)
            .collect();
        let found = if k.xdp {
            on.iter()
                .find(|s| s.3 == u32::from(queue))
                .map(|s| s.0)
                .or_else(|| by_order.next())
        } else if on.len() == usize::from(queues) {
            Some(on[usize::from(queue)].0)
        } else {
            None
        };
        match found {
            Some(fd) => w.fds.push((
                fd,
                format!(
                    "{} ({} socket on {})",
                    k.name,
                    if k.xdp { "af_xdp" } else { "af_packet" },
                    k.iface
                ),
            )),
            None if k.xdp && n_unplaced > 0 => w.missing.push(format!(
                "{} (af_xdp sockets on {}: {} found, {} expected; {} AF_XDP sockets of unknown port for {} af_xdp ports at {} queues)",
                k.name,
                k.iface,
                on.len(),
                queues,
                n_unplaced,
                xdp_ports,
                queues
            )),
            None => w.missing.push(format!(
                "{} ({} sockets on {}: {} found, {} expected)",
                k.name,
                if k.xdp { "af_xdp" } else { "af_packet" },
                k.iface,
                on.len(),
                queues
            )),
        }
    }
    for (name, port) in intr {
        match port.rx_intr_fd(queue) {
            Some(fd) => {
                w.fds.push((fd, format!("{name} (rx interrupt)")));
                w.interrupts.push((*port, queue));
            }
            None => w.missing.push(format!("{name} (no rx interrupt)")),
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn none() -> WakeSources {
        WakeSources {
            fds: Vec::new(),
            interrupts: Vec::new(),
            missing: vec!["memif0".into()],
        }
    }

    #[test]
    fn a_port_without_events_bounds_every_sleep() {
        let w = Arc::new(CoreWaker::new().unwrap());
        let mut s = Sleeper::new(&none(), w, Duration::from_micros(300), true).unwrap();
        assert_eq!(s.bound(), Some(Duration::from_micros(300)));
        for _ in 0..20 {
            let t = Instant::now();
            assert_eq!(s.wait(Duration::from_secs(1)), Woke::Timeout);
            // The bound, not the 1 s duty: a packet there waits at most this
            // (plus scheduling; generous for a shared CI machine).
            assert!(t.elapsed() < Duration::from_millis(50), "{:?}", t.elapsed());
        }
    }

    #[test]
    fn the_manager_wakes_a_sleeping_core_and_a_socket_event_does_too() {
        let w = Arc::new(CoreWaker::new().unwrap());
        let (a, b) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let sources = WakeSources {
            fds: vec![(b.as_raw_fd(), "test socket".into())],
            interrupts: Vec::new(),
            missing: Vec::new(),
        };
        let mut s = Sleeper::new(&sources, w.clone(), Duration::from_micros(300), true).unwrap();
        assert_eq!(s.bound(), None, "every port signals: no back-off bound");
        let t = Instant::now();
        let ww = w.clone();
        let h = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            ww.wake();
        });
        assert_eq!(s.wait(Duration::from_secs(5)), Woke::Event);
        assert!(t.elapsed() < Duration::from_secs(2));
        h.join().unwrap();
        // Without anything pending it sleeps the whole duty.
        let t = Instant::now();
        assert_eq!(s.wait(Duration::from_millis(40)), Woke::Timeout);
        assert!(
            t.elapsed() >= Duration::from_millis(35),
            "{:?}",
            t.elapsed()
        );
        // Traffic on a source ends the sleep (level-triggered: it stays
        // readable until the port is polled).
        a.send(b"x").unwrap();
        assert_eq!(s.wait(Duration::from_secs(5)), Woke::Event);
        assert_eq!(s.wait(Duration::from_secs(5)), Woke::Event);
    }

    #[test]
    fn timer_mode_ignores_events_and_sleeps_the_bound() {
        let w = Arc::new(CoreWaker::new().unwrap());
        let (a, b) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let sources = WakeSources {
            fds: vec![(b.as_raw_fd(), "test socket".into())],
            interrupts: Vec::new(),
            missing: Vec::new(),
        };
        let mut s = Sleeper::new(&sources, w, Duration::from_millis(2), false).unwrap();
        a.send(b"x").unwrap();
        assert_eq!(s.wait(Duration::from_secs(1)), Woke::Timeout);
    }

    #[test]
    fn our_own_packet_socket_is_found_by_interface() {
        // SAFETY: plain socket creation; closed below.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW,
                (libc::ETH_P_ALL as u16).to_be() as i32,
            )
        };
        if fd < 0 {
            // Not root: nothing to check here (the e2e tests run as root).
            return;
        }
        let lo = ifindex("lo");
        // SAFETY: a zeroed sockaddr_ll, then the fields bind needs.
        let mut ll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        ll.sll_family = libc::AF_PACKET as u16;
        ll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        ll.sll_ifindex = lo as i32;
        // SAFETY: ll is a valid sockaddr_ll for the call.
        let rc = unsafe {
            libc::bind(
                fd,
                (&ll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(rc, 0);
        let w = discover(
            &[KernelPort {
                name: "lo",
                iface: "lo",
                xdp: false,
            }],
            &[],
            &[],
            0,
            1,
        );
        assert_eq!(w.fds.len(), 1, "{w:?}");
        assert_eq!(w.fds[0].0, fd);
        // Two queues expected but one socket: reported missing, not guessed.
        let w = discover(
            &[KernelPort {
                name: "lo",
                iface: "lo",
                xdp: false,
            }],
            &[],
            &[],
            0,
            2,
        );
        assert!(w.fds.is_empty() && w.missing.len() == 1, "{w:?}");
        // SAFETY: our own socket, closed once.
        unsafe { libc::close(fd) };
    }
}
