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
    for e in dir.flatten() {
        let Some(fd) = e.file_name().to_str().and_then(|n| n.parse::<RawFd>().ok()) else {
            continue;
        };
        let is_socket =
            std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:"));
        if !is_socket {
            continue;
        }
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
    for k in kernel {
        let idx = ifindex(k.iface);
        let fam = if k.xdp { libc::AF_XDP } else { libc::AF_PACKET };
        let on: Vec<&(RawFd, i32, u32, u32)> = socks
            .iter()
            .filter(|s| s.1 == fam && s.2 == idx && idx != 0)
            .collect();
        let found = if k.xdp {
            on.iter().find(|s| s.3 == u32::from(queue)).map(|s| s.0)
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
