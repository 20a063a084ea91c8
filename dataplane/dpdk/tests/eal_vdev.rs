//! Real-device test of the binding on DPDK virtual devices in a fresh
//! network namespace: `net_af_packet` and `net_af_xdp` on a veth pair and
//! `net_tap` (the exception path). A frame sent through DPDK must arrive
//! at the kernel side (a plain AF_PACKET socket) and the other way round;
//! stats, MAC and link are checked too.
//!
//! The EAL initializes once per process and works in the namespace of its
//! process, so each case re-executes this test binary as a child under
//! `ip netns exec` (an environment variable tells it to be the child). The
//! parent creates the namespace and links and always deletes the namespace
//! (a guard's Drop), even on failure. Needs root; skipped otherwise.

use std::ffi::CString;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cer_dpdk::{
    format_mac, tsc, Burst, Eal, Mempool, Port, PortSetup, DEFAULT_DATA_ROOM, SOCKET_ANY,
};

/// Set in the child's environment to the case it must run.
const CHILD_ENV: &str = "CER_DPDK_NETNS_CHILD";
/// Experimental EtherType (IEEE 802 local experimental 1): no kernel
/// protocol handler touches these frames.
const ETHERTYPE_TEST: u16 = 0x88b5;
const CHILD_TIMEOUT: Duration = Duration::from_secs(120);

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a command, panicking with its stderr if it fails.
fn run(cmd: &[&str]) {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace deleted when dropped.
struct Netns {
    name: String,
}

impl Netns {
    fn create(name: String) -> Netns {
        // Leftover from a crashed earlier run with the same pid: ignore errors.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NS ...`
    fn ip(&self, args: &[&str]) {
        let mut cmd = vec!["ip", "-n", &self.name];
        cmd.extend_from_slice(args);
        run(&cmd);
    }

    /// A veth pair with both ends up and IPv6 off (no kernel chatter).
    fn veth_pair(&self, a: &str, b: &str) {
        self.ip(&["link", "add", a, "type", "veth", "peer", "name", b]);
        for end in [a, b] {
            self.disable_ipv6(end);
            self.ip(&["link", "set", end, "up"]);
        }
    }

    fn disable_ipv6(&self, iface: &str) {
        run(&[
            "ip",
            "netns",
            "exec",
            &self.name,
            "sysctl",
            "-q",
            "-w",
            &format!("net.ipv6.conf.{iface}.disable_ipv6=1"),
        ]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        match Command::new("ip")
            .args(["netns", "del", &self.name])
            .output()
        {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "warning: ip netns del {} failed: {}",
                self.name,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("warning: cannot run ip netns del {}: {e}", self.name),
        }
    }
}

/// The names a case uses, derived from the parent's pid.
struct CaseNames {
    netns: String,
    /// Kernel interface DPDK drives (veth end or TAP).
    dpdk_iface: String,
    /// Kernel interface the raw socket watches (veth peer, or the TAP itself).
    kernel_iface: String,
}

fn case_names(case: &str, pid: u32) -> CaseNames {
    let netns = format!("cerdpdk-{case}-{pid}");
    match case {
        "af_packet" => CaseNames {
            netns,
            dpdk_iface: format!("dpdkt{pid}a"),
            kernel_iface: format!("dpdkt{pid}b"),
        },
        "af_xdp" => CaseNames {
            netns,
            dpdk_iface: format!("dpdkx{pid}a"),
            kernel_iface: format!("dpdkx{pid}b"),
        },
        "tap" => CaseNames {
            netns,
            dpdk_iface: format!("cerT{pid}"),
            kernel_iface: format!("cerT{pid}"),
        },
        other => panic!("unknown case {other}"),
    }
}

/// EAL `--file-prefix` of a case's child: unique per run.
fn file_prefix(case: &str, pid: u32) -> String {
    format!("cerdpdk{case}{pid}")
}

/// Parent side: namespace + links, child run under `ip netns exec`.
fn run_case(case: &str, test_name: &str) {
    if let Ok(child_case) = std::env::var(CHILD_ENV) {
        if child_case == case {
            child_main(case);
        }
        return;
    }
    if !is_root() {
        eprintln!("SKIPPED {test_name}: needs root (network namespaces, DPDK EAL)");
        return;
    }
    let pid = std::process::id();
    let names = case_names(case, pid);
    let ns = Netns::create(names.netns.clone());
    if names.dpdk_iface != names.kernel_iface {
        ns.veth_pair(&names.dpdk_iface, &names.kernel_iface);
    }

    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .arg(&exe)
        .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, case)
        .env("CER_DPDK_PARENT_PID", pid.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child under ip netns exec");

    // Drain both pipes on threads so a chatty child cannot block.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + CHILD_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = out_t.join().unwrap_or_default();
    let err = err_t.join().unwrap_or_default();
    // The child's EAL runtime directory, left behind when its cleanup was
    // skipped (af_xdp) or the child failed.
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{}", file_prefix(case, pid)));
    eprintln!("----- child {case} stdout -----\n{out}\n----- child {case} stderr -----\n{err}");
    match status {
        Some(s) if s.success() => {
            assert!(
                out.contains(&format!("CHILD {case} OK")),
                "child exited 0 without finishing the {case} checks"
            );
        }
        Some(s) => panic!("child for {case} failed with {s}; see its output above"),
        None => panic!("child for {case} did not finish within {CHILD_TIMEOUT:?}"),
    }
    drop(ns);
}

#[test]
fn af_packet_veth_in_netns() {
    run_case("af_packet", "af_packet_veth_in_netns");
}

#[test]
fn af_xdp_veth_in_netns() {
    run_case("af_xdp", "af_xdp_veth_in_netns");
}

#[test]
fn tap_exception_port_in_netns() {
    run_case("tap", "tap_exception_port_in_netns");
}

// ---------------------------------------------------------------- child --

/// A raw AF_PACKET socket on one kernel interface.
struct RawSocket {
    fd: i32,
    ifindex: i32,
}

impl RawSocket {
    fn open(iface: &str) -> RawSocket {
        let cname = CString::new(iface).unwrap();
        // SAFETY: plain libc calls with valid arguments; the fd is owned by
        // the returned RawSocket and closed in Drop.
        unsafe {
            let ifindex = libc::if_nametoindex(cname.as_ptr()) as i32;
            assert!(ifindex > 0, "no interface {iface}");
            let proto = (libc::ETH_P_ALL as u16).to_be();
            let fd = libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(proto),
            );
            assert!(
                fd >= 0,
                "socket(AF_PACKET): {}",
                std::io::Error::last_os_error()
            );
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = ifindex;
            let rc = libc::bind(
                fd,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(
                rc,
                0,
                "bind to {iface}: {}",
                std::io::Error::last_os_error()
            );
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 50_000,
            };
            let rc = libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            );
            assert_eq!(rc, 0, "SO_RCVTIMEO: {}", std::io::Error::last_os_error());
            RawSocket { fd, ifindex }
        }
    }

    fn send(&self, frame: &[u8]) {
        // SAFETY: frame is a valid buffer; the socket is bound to ifindex.
        let n = unsafe { libc::send(self.fd, frame.as_ptr().cast(), frame.len(), 0) };
        assert_eq!(
            n,
            frame.len() as isize,
            "send: {}",
            std::io::Error::last_os_error()
        );
    }

    /// The next frame *received* by the interface (not our own outgoing
    /// ones), or None after the receive timeout.
    fn recv_incoming(&self) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 4096];
        // SAFETY: buf and sll are valid for writes of the given sizes.
        unsafe {
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            let n = libc::recvfrom(
                self.fd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&mut sll as *mut libc::sockaddr_ll).cast(),
                &mut len,
            );
            if n < 0 || sll.sll_pkttype == libc::PACKET_OUTGOING || sll.sll_ifindex != self.ifindex
            {
                return None;
            }
            buf.truncate(n as usize);
            Some(buf)
        }
    }
}

impl Drop for RawSocket {
    fn drop(&mut self) {
        // SAFETY: fd is owned by self.
        unsafe { libc::close(self.fd) };
    }
}

fn test_frame(dst: [u8; 6], src: [u8; 6], payload: &str) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ETHERTYPE_TEST.to_be_bytes());
    f.extend_from_slice(payload.as_bytes());
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

fn has_payload(frame: &[u8], payload: &str) -> bool {
    frame.len() >= 14
        && frame[12..14] == ETHERTYPE_TEST.to_be_bytes()
        && frame[14..].starts_with(payload.as_bytes())
}

fn sysfs_mac(iface: &str) -> String {
    std::fs::read_to_string(format!("/sys/class/net/{iface}/address"))
        .unwrap_or_else(|e| panic!("read MAC of {iface}: {e}"))
        .trim()
        .to_string()
}

/// First CPU this process may run on (the EAL's only lcore here).
fn first_allowed_cpu() -> usize {
    // SAFETY: set is a valid, zeroed cpu_set_t of the size passed.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return 0;
        }
        (0..libc::CPU_SETSIZE as usize)
            .find(|&c| libc::CPU_ISSET(c, &set))
            .unwrap_or(0)
    }
}

fn child_main(case: &str) {
    let parent: u32 = std::env::var("CER_DPDK_PARENT_PID")
        .unwrap()
        .parse()
        .unwrap();
    let names = case_names(case, parent);
    let (vdev, dev_name, driver) = match case {
        "af_packet" => (
            format!("net_af_packet0,iface={}", names.dpdk_iface),
            "net_af_packet0",
            "net_af_packet",
        ),
        "af_xdp" => (
            format!(
                "net_af_xdp0,iface={},start_queue=0,queue_count=1",
                names.dpdk_iface
            ),
            "net_af_xdp0",
            "net_af_xdp",
        ),
        "tap" => (
            format!("net_tap0,iface={}", names.dpdk_iface),
            "net_tap0",
            "net_tap",
        ),
        other => panic!("unknown case {other}"),
    };
    let args: Vec<String> = vec![
        format!("cer-dpdk-{case}-test"),
        "-l".into(),
        first_allowed_cpu().to_string(),
        "--no-huge".into(),
        "-m".into(),
        "256".into(),
        "--no-pci".into(),
        "--no-shconf".into(),
        "--no-telemetry".into(),
        format!("--file-prefix={}", file_prefix(case, parent)),
        format!("--vdev={vdev}"),
    ];
    println!("EAL args: {}", args[1..].join(" "));
    let eal = Eal::init(&args).expect("EAL init");

    let pool = Mempool::new_pktmbuf("netns_pool", 4095, 64, DEFAULT_DATA_ROOM, SOCKET_ANY)
        .expect("mempool");
    let port = Port::by_name(dev_name).expect("port by name");
    assert_eq!(port.driver_name(), driver);
    assert_eq!(port.name(), dev_name);
    assert!(port.max_rx_queues() >= 1 && port.max_tx_queues() >= 1);
    let setup = PortSetup {
        rx_queues: 1,
        tx_queues: 1,
        rx_desc: 512,
        tx_desc: 512,
        mtu: None,
        rss: true, // one queue: must be ignored, not fail
        promiscuous: true,
        rx_interrupts: false,
    };
    port.configure(&setup, &pool).expect("configure");
    port.start().expect("start");

    if case == "tap" {
        // The kernel side of the exception path: quiet, and up (the PMD
        // brings it up on start).
        let flags = std::fs::read_to_string(format!("/sys/class/net/{}/flags", names.kernel_iface))
            .expect("tap interface exists in the namespace");
        let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap();
        assert_ne!(flags & libc::IFF_UP as u32, 0, "tap interface is not up");
        let _ = Command::new("sysctl")
            .args([
                "-q",
                "-w",
                &format!("net.ipv6.conf.{}.disable_ipv6=1", names.kernel_iface),
            ])
            .output();
    } else {
        // af_packet / af_xdp report the veth's own MAC.
        assert_eq!(format_mac(&port.mac()), sysfs_mac(&names.dpdk_iface));
    }

    let deadline = Instant::now() + Duration::from_secs(10);
    while !port.link().up && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let link = port.link();
    println!("link: {link:?}");
    assert!(link.up, "link of {dev_name} did not come up");

    let sock = RawSocket::open(&names.kernel_iface);
    let nonce = tsc();
    let port_mac = port.mac();
    let peer_mac = [0x02, 0x00, 0x00, 0xce, 0x00, 0x02];

    // DPDK -> kernel.
    let out_payload = format!("cer-dpdk->kernel {case} {nonce}");
    let out_frame = test_frame([0xff; 6], port_mac, &out_payload);
    let mut seen = false;
    let mut sent = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen && Instant::now() < deadline {
        let mut burst = Burst::new();
        let mut m = pool.alloc().expect("mbuf");
        assert!(m.extend_from_slice(&out_frame));
        burst.push(m);
        let n = port.tx_burst(0, &mut burst);
        sent += n;
        drop(burst); // unsent (if any) go back to the pool
        let until = Instant::now() + Duration::from_millis(500);
        while Instant::now() < until {
            if let Some(f) = sock.recv_incoming() {
                if has_payload(&f, &out_payload) {
                    assert_eq!(&f[..out_frame.len()], out_frame.as_slice());
                    seen = true;
                    break;
                }
            }
        }
    }
    assert!(
        seen,
        "frame sent by DPDK ({sent} accepted by tx_burst) never reached {}",
        names.kernel_iface
    );
    println!("DPDK -> kernel ok after {sent} transmission(s)");

    // kernel -> DPDK.
    let in_payload = format!("kernel->cer-dpdk {case} {nonce}");
    let in_frame = test_frame(port_mac, peer_mac, &in_payload);
    let mut got = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.is_none() && Instant::now() < deadline {
        sock.send(&in_frame);
        let until = Instant::now() + Duration::from_millis(500);
        while got.is_none() && Instant::now() < until {
            let mut burst = Burst::new();
            if port.rx_burst(0, &mut burst) == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            got = burst
                .into_iter()
                .find(|m| has_payload(m.data(), &in_payload));
        }
    }
    let m =
        got.unwrap_or_else(|| panic!("frame sent on {} never reached DPDK", names.kernel_iface));
    assert_eq!(m.port(), port.id());
    assert!(m.is_contiguous());
    assert_eq!(&m.data()[..in_frame.len()], in_frame.as_slice());
    drop(m);
    println!("kernel -> DPDK ok");

    let stats = port.stats().expect("stats");
    println!("stats: {stats:?}");
    assert!(stats.opackets >= 1 && stats.obytes >= 60, "{stats:?}");
    assert!(stats.ipackets >= 1 && stats.ibytes >= 60, "{stats:?}");

    if case == "af_packet" {
        // The PMD sets the kernel interface's address.
        let new_mac = [0x02, 0x00, 0x5e, 0x10, 0x20, 0x30];
        port.set_mac(new_mac).expect("set_mac");
        assert_eq!(port.mac(), new_mac);
        assert_eq!(sysfs_mac(&names.dpdk_iface), format_mac(&new_mac));
    }

    port.stop().expect("stop");
    port.close();
    assert!(Port::by_name(dev_name).is_err(), "closed port still listed");
    let in_use = pool.in_use();
    drop(pool);
    let runtime_dir = cer_dpdk::runtime_dir().expect("runtime dir");
    match (case, eal.shutdown()) {
        // DPDK 22.11's af_xdp PMD does not give the mbufs of its fill ring
        // back to the pool when the port closes, so the binding refuses to
        // release DPDK memory (something might still point into it).
        ("af_xdp", Err(cer_dpdk::DpdkError::CleanupSkipped { reason })) => {
            assert!(in_use > 0);
            println!("af_xdp: {in_use} mbufs kept by the closed PMD; cleanup skipped: {reason}");
        }
        (_, result) => {
            result.expect("EAL cleanup");
            assert_eq!(in_use, 0, "mbufs still in use after close");
            assert!(
                !runtime_dir.exists(),
                "{} left behind",
                runtime_dir.display()
            );
        }
    }
    println!("CHILD {case} OK");
}
