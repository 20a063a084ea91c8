//! Harness for end-to-end tests on network-namespace topologies: namespaces
//! and veths with unique names that are removed even when a test fails,
//! processes started inside them and ended by PID, and paths to the project's
//! built binaries.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());
static NEXT: AtomicU32 = AtomicU32::new(0);

/// Tests that start dataplanes (pinned polling cores) run one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Fails clearly when not root (network namespaces need it).
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(
        uid, 0,
        "end-to-end tests create network namespaces and need root"
    );
}

/// A short unique tag for names (interface names are limited to 15 bytes).
pub fn tag() -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{:x}{n}", std::process::id() % 0xfff)
}

/// A built binary of this workspace (same profile as the running program):
/// next to it (a binary in target/<profile>) or one level up (a test in
/// target/<profile>/deps).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let here = exe.parent().expect("exe dir");
    let p = [here.join(name), here.parent().map(|d| d.join(name)).unwrap_or_default()]
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not built next to {}; run `cargo build --workspace --bins` with the same profile first (scripts/test does)",
                exe.display()
            )
        });
    p
}

/// Starts the real `cer-dataplane` in `ns` with the config file `cfg`
/// (output to `log`) and waits until it reports ready.
pub fn start_dataplane(ns: &Netns, cfg: &Path, log: &Path) -> Result<Proc> {
    let mut p = ns.spawn(
        &[
            bin("cer-dataplane").to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
        ],
        log,
    )?;
    p.wait_for_log("cer-dataplane: ready", Duration::from_secs(20))?;
    Ok(p)
}

/// Runs a command, failing with its output when it fails.
pub fn sh(args: &[&str]) -> Result<Output> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// A network namespace, deleted (with every process in it) on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(prefix: &str) -> Result<Netns> {
        let name = format!("cer{prefix}{}", tag());
        sh(&["ip", "netns", "add", &name])?;
        let ns = Netns { name };
        ns.run(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Runs a command inside the namespace; fails if it fails.
    pub fn run(&self, args: &[&str]) -> Result<Output> {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// Runs a command inside the namespace and returns its status and output.
    pub fn try_run(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .expect("ip netns exec")
    }

    /// Starts a long-running process inside the namespace.
    pub fn spawn(&self, args: &[&str], log: &Path) -> Result<Proc> {
        let f = std::fs::File::create(log)?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .stdin(Stdio::null())
            .stdout(f.try_clone()?)
            .stderr(f)
            .spawn()
            .with_context(|| format!("starting {}", args.join(" ")))?;
        Ok(Proc {
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    /// `ip addr add` + `ip link set up` on an interface in this namespace.
    pub fn addr(&self, iface: &str, cidr: &str) -> Result<()> {
        self.run(&["ip", "addr", "add", cidr, "dev", iface])?;
        self.run(&["ip", "link", "set", iface, "up"])?;
        Ok(())
    }

    pub fn ping(&self, dst: &str, count: u32) -> bool {
        self.try_run(&[
            "ping",
            "-c",
            &count.to_string(),
            "-W",
            "1",
            "-i",
            "0.2",
            dst,
        ])
        .status
        .success()
    }

    /// Pings until one answer arrives or `timeout` passes.
    pub fn ping_until(&self, dst: &str, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self
                .try_run(&["ping", "-c", "1", "-W", "1", dst])
                .status
                .success()
            {
                return true;
            }
        }
        false
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // End what still runs in the namespace (only processes this test started live there).
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    // SAFETY: plain kill(2) on a PID inside our own namespace.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Creates a veth pair with ends in two namespaces.
pub fn veth(a: &str, ns_a: &Netns, b: &str, ns_b: &Netns) -> Result<()> {
    sh(&[
        "ip", "link", "add", a, "netns", &ns_a.name, "type", "veth", "peer", "name", b, "netns",
        &ns_b.name,
    ])?;
    Ok(())
}

/// A process started by a test; SIGTERM then SIGKILL on drop, by PID.
pub struct Proc {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    /// Wraps a child started elsewhere (e.g. in the host namespace).
    pub fn from_child(child: Child, log: &Path) -> Proc {
        Proc {
            child: Some(child),
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Waits until the log contains `needle` (or the process exits / time runs out).
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if text.contains(needle) {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    bail!("process exited ({status}) before '{needle}':\n{text}");
                }
            }
            if start.elapsed() > timeout {
                bail!("timed out waiting for '{needle}':\n{text}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit code.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let mut c = self.child.take()?;
        // SAFETY: kill(2) on the PID of a child we spawned and have not reaped.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(s)) = c.try_wait() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.terminate(Duration::from_secs(5));
    }
}

/// A scratch directory removed on drop.
pub struct Scratch {
    pub path: PathBuf,
}

impl Scratch {
    pub fn new(name: &str) -> Result<Scratch> {
        let path = std::env::temp_dir().join(format!("cer-e2e-{name}-{}", tag()));
        std::fs::create_dir_all(&path)?;
        Ok(Scratch { path })
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("CER_KEEP_SCRATCH").is_none() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// One JSON admin query to a dataplane, answered with the `data` field.
pub fn admin(socket: &Path, cmd: &str) -> Result<serde_json::Value> {
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket)
        .with_context(|| format!("connecting {}", socket.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    writeln!(s, "{{\"cmd\":\"{cmd}\"}}")?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    let v: serde_json::Value = serde_json::from_str(&line)?;
    if v["status"] != "ok" {
        bail!("admin {cmd}: {line}");
    }
    Ok(v["data"].clone())
}

/// Sum of one named counter over every polling core.
pub fn counter(socket: &Path, section: &str, name: &str) -> u64 {
    admin(socket, "counters")
        .map(|d| {
            d.as_array()
                .into_iter()
                .flatten()
                .map(|c| c[section][name].as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

/// Real BGP daemons (gobgpd, FRR, BIRD) as peers inside a test's namespaces.
pub mod peers;

/// A cer-dataplane with one LAN port (`dplan`, on a veth pair inside `ns`),
/// for tests that need a real FIB consumer: its admin and feed sockets.
pub struct FeedTarget {
    pub proc: Proc,
    pub admin: PathBuf,
    pub feed: PathBuf,
}

impl FeedTarget {
    pub fn start(ns: &Netns, dir: &Path, lan_cidr: &str) -> Result<FeedTarget> {
        ns.run(&[
            "ip", "link", "add", "dplan", "type", "veth", "peer", "name", "dphost",
        ])?;
        ns.run(&["ip", "link", "set", "dplan", "up"])?;
        ns.run(&["ip", "link", "set", "dphost", "up"])?;
        let admin = dir.join("dp-admin.sock");
        let feed = dir.join("dp-feed.sock");
        let cfg = dir.join("dp.toml");
        let router = lan_cidr.split('/').next().unwrap_or(lan_cidr);
        std::fs::write(
            &cfg,
            format!(
                "[node]\nname = \"feedtarget\"\nrouter_address = \"{router}\"\n\
                 [dataplane]\ncores = [1]\npoll_mode = \"adaptive\"\nadmin_socket = \"{}\"\nfeed_socket = \"{}\"\n\
                 [dataplane.memory]\nhugepages = false\nmemory_mb = 256\nmbufs = 4095\nfile_prefix = \"ft{}\"\n\
                 [[port]]\nname = \"lan\"\ndriver = \"af_packet\"\niface = \"dplan\"\naddress = \"{lan_cidr}\"\n",
                admin.display(),
                feed.display(),
                tag()
            ),
        )?;
        let mut proc = ns.spawn(
            &[
                bin("cer-dataplane").to_str().unwrap(),
                "--config",
                cfg.to_str().unwrap(),
            ],
            &dir.join("dp.log"),
        )?;
        proc.wait_for_log("cer-dataplane: ready", Duration::from_secs(20))?;
        Ok(FeedTarget { proc, admin, feed })
    }

    /// The dataplane's `/32` endpoints as `(ip, action)` pairs.
    pub fn endpoints(&self) -> Vec<(String, String)> {
        admin(&self.admin, "fib")
            .map(|f| {
                f["endpoints"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| {
                        (
                            e["ip"].as_str().unwrap_or("").to_string(),
                            e["action"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn has(&self, ip: &str, action: &str) -> bool {
        self.endpoints().iter().any(|(i, a)| i == ip && a == action)
    }
}

/// A running cer-control and its admin socket; `cerctl` against it.
pub struct Control {
    pub proc: Proc,
    pub socket: PathBuf,
}

impl Control {
    /// Writes `body` (a cer-control TOML without `[admin]`) to `dir/NAME.toml`,
    /// adds the admin socket, starts cer-control in `ns` (or in the host
    /// namespace when `ns` is None) and waits until it is ready.
    pub fn start(ns: Option<&Netns>, dir: &Path, name: &str, body: &str) -> Result<Control> {
        let socket = dir.join(format!("{name}.sock"));
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!("{body}\n[admin]\nsocket = \"{}\"\n", socket.display()),
        )?;
        let log = dir.join(format!("{name}.log"));
        let argv = [
            bin("cer-control").display().to_string(),
            "--config".into(),
            path.display().to_string(),
        ];
        let refs: Vec<&str> = argv.iter().map(|s| s.as_str()).collect();
        let mut proc = match ns {
            Some(ns) => ns.spawn(&refs, &log)?,
            None => {
                let f = std::fs::File::create(&log)?;
                let child = Command::new(refs[0])
                    .args(&refs[1..])
                    .stdin(Stdio::null())
                    .stdout(f.try_clone()?)
                    .stderr(f)
                    .spawn()?;
                Proc::from_child(child, &log)
            }
        };
        proc.wait_for_log("cer-control: ready", Duration::from_secs(10))?;
        Ok(Control { proc, socket })
    }

    pub fn ctl(&self, args: &[&str]) -> Result<String> {
        let mut full = vec![bin("cerctl").display().to_string()];
        full.extend(args.iter().map(|s| s.to_string()));
        full.push("--socket".into());
        full.push(self.socket.display().to_string());
        let refs: Vec<&str> = full.iter().map(|s| s.as_str()).collect();
        Ok(String::from_utf8_lossy(&sh(&refs)?.stdout).into_owned())
    }

    pub fn json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&self.ctl(&a)?).context("cerctl --json output")
    }
}
pub mod wg;

/// Protocol peers (vsftpd, nfs-ganesha + rpcbind, iperf3, bulk TCP with sha256),
/// captures read with tshark, and an outage probe, for the acceptance and failover tests.
pub mod apps;

/// Sends `total` bytes over TCP and prints the count, the sha256 and the seconds taken.
pub const TCP_SENDER: &str = include_str!("../scripts/tcp_sender.py");

/// Receives one TCP connection and prints the byte count, sha256 and the MSS it saw.
pub const TCP_RECEIVER: &str = include_str!("../scripts/tcp_receiver.py");

/// A TCP transfer of `bytes` from `from` to `to_ip` (a receiver in `to`), with
/// sha256 computed on both ends and compared. Returns (MB/s, receiver's MSS).
pub fn tcp_transfer(
    from: &Netns,
    to: &Netns,
    to_ip: &str,
    bytes: u64,
    scratch: &Scratch,
) -> Result<(f64, u32)> {
    let recv = scratch.file("tcp_recv.py");
    let send = scratch.file("tcp_send.py");
    std::fs::write(&recv, TCP_RECEIVER)?;
    std::fs::write(&send, TCP_SENDER)?;
    let log = scratch.file(&format!("tcp_recv-{}.log", tag()));
    let r = to.spawn(
        &["/usr/bin/python3", recv.to_str().unwrap(), to_ip, "7001"],
        &log,
    )?;
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let out = from.run(&[
        "/usr/bin/python3",
        send.to_str().unwrap(),
        to_ip,
        "7001",
        &bytes.to_string(),
    ])?;
    let secs = t0.elapsed().as_secs_f64();
    let sent = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let got = loop {
        let t = r.log_text();
        if t.split_whitespace().count() >= 3 {
            break t.trim().to_string();
        }
        if Instant::now() > deadline {
            bail!("receiver did not finish: {t}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let s: Vec<&str> = sent.split_whitespace().collect();
    let g: Vec<&str> = got.split_whitespace().collect();
    if s.first().map(|x| x.to_string()) != Some(bytes.to_string()) {
        bail!("sender: {sent}");
    }
    if (g[0], g[1]) != (s[0], s[1]) {
        bail!(
            "transfer mismatch: sent {} bytes sha256 {}, received {} bytes sha256 {}",
            s[0],
            s[1],
            g[0],
            g[1]
        );
    }
    Ok((bytes as f64 / secs / 1e6, g[2].parse().unwrap_or(0)))
}
