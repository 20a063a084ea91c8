//! The engines measured in the kernel-free benchmark, each in the DUT's
//! place on the same two memif links (the engine is the memif server):
//! - `cer`: the real `cer-dataplane` (driver = "memif"), its /32 table
//!   loaded through the FIB feed, cycles from its per-core busy counters;
//! - `ceiling`: `dpdk-testpmd` in io forwarding mode (what the PMD moves
//!   with no work done), cycles from `--record-core-cycles`;
//! - `ovs`: OVS-DPDK 3.1 (userspace datapath) doing L3 forwarding (OpenFlow
//!   dec_ttl + MAC rewrite) and GRE encap/decap (native tunneling,
//!   `packet_type=legacy_l3`), cycles from `dpif-netdev/pmd-stats-show`.
//!
//! Every process is started here and ended by PID; sockets, the OVS
//! database and the namespace are removed on drop, also after a failure.

use super::frames::{
    Case, Transport, ENDPOINT_BASE, GEN_LAN_MAC, GEN_WAN_ADDR, GEN_WAN_MAC, GRE_KEY, LAN_ADDR,
    LAN_MAC, WAN_ADDR, WAN_MAC,
};
use super::gen::WgKeys;
use anyhow::{bail, Context, Result};
use cer_dataplane::tunnel::wireguard::{generate_private_key, public_key_of};
use cer_e2e::{admin, bin, Netns, Proc};
use cer_shared::feed::{EndpointAction, FibChange};
use cer_shared::feed_client::FeedClient;
use cer_shared::MacAddr;
use serde::Serialize;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    Cer,
    Ovs,
    Ceiling,
}

impl EngineKind {
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Cer => "cer",
            EngineKind::Ovs => "ovs",
            EngineKind::Ceiling => "ceiling",
        }
    }

    pub fn parse(s: &str) -> Option<EngineKind> {
        [EngineKind::Cer, EngineKind::Ovs, EngineKind::Ceiling]
            .into_iter()
            .find(|e| e.name() == s)
    }

    /// The cases this engine is measured on. The ceiling moves frames
    /// without looking at them: its forward row is the bound for forward
    /// and encap input (inner frames), its gre-decap row for decap input.
    pub fn cases(self) -> Vec<Case> {
        match self {
            EngineKind::Cer => Case::all(),
            EngineKind::Ovs => vec![
                Case::Forward,
                Case::Encap(Transport::Gre),
                Case::Decap(Transport::Gre),
            ],
            EngineKind::Ceiling => vec![Case::Forward, Case::Decap(Transport::Gre)],
        }
    }
}

/// Memory mode shared by every DPDK process of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Memory {
    Hugepages,
    NoHuge,
}

/// What all engines share: where sockets live, which CPU the engine polls on.
#[derive(Debug, Clone)]
pub struct Bench {
    pub dir: PathBuf,
    pub dut_cpu: u32,
    pub gen_cpu: u32,
    pub memory: Memory,
    pub entries: usize,
}

impl Bench {
    pub fn socket(&self, port: usize) -> PathBuf {
        self.dir
            .join(if port == 0 { "lan.sock" } else { "wan.sock" })
    }

    fn mem_args(&self, mb: u32) -> Vec<String> {
        match self.memory {
            Memory::NoHuge => vec!["--no-huge".into(), "-m".into(), mb.to_string()],
            Memory::Hugepages => vec!["-m".into(), mb.to_string(), "--huge-unlink".into()],
        }
    }

    /// The generator's EAL arguments (memif clients to the engine's sockets).
    pub fn gen_eal(&self) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "cer-bench-io-gen".into(),
            "--lcores".into(),
            format!("0@{}", self.gen_cpu),
            "--no-pci".into(),
            "--no-telemetry".into(),
            "--file-prefix".into(),
            format!("cerio-gen-{}", std::process::id()),
        ];
        a.extend(self.mem_args(1024));
        for p in 0..2 {
            a.push("--vdev".into());
            a.push(format!(
                "net_memif{p},role=client,id=0,socket={},socket-abstract=no",
                self.socket(p).display()
            ));
        }
        a
    }

    fn remove_sockets(&self) {
        for p in 0..2 {
            let _ = std::fs::remove_file(self.socket(p));
        }
    }
}

/// An engine in the DUT's place.
pub trait Engine {
    fn kind(&self) -> EngineKind;
    /// The MACs the generator addresses on the LAN and WAN links.
    fn macs(&self) -> ([u8; 6], [u8; 6]);
    /// memif queue pairs the generator must open.
    fn gen_queues(&self) -> u16 {
        1
    }
    /// WireGuard keys for the generator's peer role, if the engine has a tunnel.
    fn wg_keys(&self) -> Option<WgKeys> {
        None
    }
    /// Sets the engine up for `case` (tables, flows).
    fn prepare(&mut self, case: Case) -> Result<()>;
    /// Right before a trial: reset or snapshot the cycle counters.
    fn begin(&mut self) -> Result<()>;
    /// Right after: busy cycles per received packet over the trial.
    fn end(&mut self) -> Result<Option<f64>>;
    /// Named drop counters over the whole run (non-zero ones), if the engine has them.
    fn drop_counters(&self) -> Result<Vec<(String, u64)>> {
        Ok(Vec::new())
    }
}

// ---------------------------------------------------------------- cer

pub struct Cer {
    bench: Bench,
    proc: Option<Proc>,
    admin: PathBuf,
    feed: FeedClient,
    engine_key: String,
    gen_key: String,
    mark: (u64, u64),
}

impl Cer {
    pub fn start(bench: &Bench) -> Result<Cer> {
        bench.remove_sockets();
        let engine_key = generate_private_key();
        let gen_key = generate_private_key();
        let admin = bench.dir.join("cer-admin.sock");
        let feed_sock = bench.dir.join("cer-feed.sock");
        let mac = |m: [u8; 6]| MacAddr(m).to_string();
        let mut tunnels = String::new();
        for t in Transport::ALL {
            tunnels += &format!(
                "\n[[tunnel]]\nid = {}\nkind = \"{}\"\nlocal = \"{WAN_ADDR}\"\nremote = \"{GEN_WAN_ADDR}\"\n",
                t.tunnel_id(),
                t.name()
            );
            match t {
                Transport::Gre => tunnels += &format!("gre_key = {GRE_KEY}\n"),
                Transport::Wireguard => {
                    tunnels += &format!(
                        "private_key = \"{engine_key}\"\npeer_public_key = \"{}\"\n",
                        public_key_of(&gen_key).map_err(anyhow::Error::msg)?
                    )
                }
                _ => {}
            }
        }
        let cfg = format!(
            r#"[node]
name = "benchio"
router_address = "{WAN_ADDR}"

[dataplane]
cores = [1]
main_lcore = 0
cpus = [{dut}]
poll_mode = "busy"
admin_socket = "{admin}"
feed_socket = "{feed}"
[dataplane.memory]
hugepages = {huge}
memory_mb = 1024
mbufs = 32767
file_prefix = "cerio-cer-{pid}"

[[port]]
name = "lan"
driver = "memif"
socket = "{lan}"
address = "{LAN_ADDR}/24"
mac = "{lan_mac}"
mtu = 1600

[[port]]
name = "wan"
driver = "memif"
socket = "{wan}"
address = "{WAN_ADDR}/24"
mac = "{wan_mac}"
mtu = 1600
{tunnels}"#,
            dut = bench.dut_cpu,
            admin = admin.display(),
            feed = feed_sock.display(),
            huge = bench.memory == Memory::Hugepages,
            pid = std::process::id(),
            lan = bench.socket(0).display(),
            wan = bench.socket(1).display(),
            lan_mac = mac(LAN_MAC),
            wan_mac = mac(WAN_MAC),
        );
        let cfg_path = bench.dir.join("cer.toml");
        std::fs::write(&cfg_path, cfg)?;
        let log = bench.dir.join("cer-dataplane.log");
        let child = Command::new(bin("cer-dataplane"))
            .args(["--config", cfg_path.to_str().unwrap_or_default()])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::create(bench.dir.join("cer-dataplane.err"))?)
            .spawn()
            .context("starting cer-dataplane")?;
        let mut proc = Proc::from_child(child, &log);
        proc.wait_for_log("cer-dataplane: ready", Duration::from_secs(30))
            .with_context(|| {
                format!(
                    "cer-dataplane: {}",
                    std::fs::read_to_string(bench.dir.join("cer-dataplane.err"))
                        .unwrap_or_default()
                )
            })?;
        let feed = FeedClient::connect(&feed_sock, "cer-bench-io")?;
        Ok(Cer {
            bench: bench.clone(),
            proc: Some(proc),
            admin,
            feed,
            engine_key,
            gen_key,
            mark: (0, 0),
        })
    }

    /// (busy cycles, packets received on the NIC ports) summed over cores.
    fn cycles(&self) -> Result<(u64, u64)> {
        let c = admin(&self.admin, "counters")?;
        let mut busy = 0;
        let mut rx = 0;
        for core in c.as_array().into_iter().flatten() {
            busy += core["busy_cycles"].as_u64().unwrap_or(0);
            for port in ["lan", "wan"] {
                rx += core["rx"][port].as_u64().unwrap_or(0);
            }
        }
        Ok((busy, rx))
    }

    /// Every drop reason with a non-zero count (for the report).
    fn drops(&self) -> Result<Vec<(String, u64)>> {
        let c = admin(&self.admin, "counters")?;
        let mut out: std::collections::BTreeMap<String, u64> = Default::default();
        for core in c.as_array().into_iter().flatten() {
            if let Some(d) = core["drops"].as_object() {
                for (k, v) in d {
                    *out.entry(k.clone()).or_default() += v.as_u64().unwrap_or(0);
                }
            }
        }
        Ok(out.into_iter().filter(|(_, v)| *v > 0).collect())
    }
}

impl Engine for Cer {
    fn kind(&self) -> EngineKind {
        EngineKind::Cer
    }

    fn macs(&self) -> ([u8; 6], [u8; 6]) {
        (LAN_MAC, WAN_MAC)
    }

    fn wg_keys(&self) -> Option<WgKeys> {
        Some(WgKeys {
            private_key: self.gen_key.clone(),
            engine_public_key: public_key_of(&self.engine_key).ok()?,
        })
    }

    fn prepare(&mut self, case: Case) -> Result<()> {
        let n = self.bench.entries;
        let mut changes = Vec::with_capacity(n * 2 + 1);
        let (action, neighbor) = match case {
            Case::Forward => (
                EndpointAction::Local { port: "wan".into() },
                Some(("wan", GEN_WAN_MAC)),
            ),
            Case::Encap(t) => (
                EndpointAction::Tunnel {
                    tunnel: t.tunnel_id(),
                },
                None,
            ),
            Case::Decap(_) => (
                EndpointAction::Local { port: "lan".into() },
                Some(("lan", GEN_LAN_MAC)),
            ),
        };
        // The tunnel peer / next hop on the WAN link.
        changes.push(FibChange::NeighborSet {
            port: "wan".into(),
            ip: GEN_WAN_ADDR,
            mac: MacAddr(GEN_WAN_MAC),
        });
        for i in 0..n {
            let ip = Ipv4Addr::from(ENDPOINT_BASE + i as u32);
            changes.push(FibChange::EndpointSet {
                ip,
                action: action.clone(),
            });
            if let Some((port, mac)) = neighbor {
                changes.push(FibChange::NeighborSet {
                    port: port.into(),
                    ip,
                    mac: MacAddr(mac),
                });
            }
        }
        self.feed
            .full_sync(changes)
            .with_context(|| format!("loading {n} /32s for {case}"))?;
        Ok(())
    }

    fn begin(&mut self) -> Result<()> {
        self.mark = self.cycles()?;
        Ok(())
    }

    fn drop_counters(&self) -> Result<Vec<(String, u64)>> {
        self.drops()
    }

    fn end(&mut self) -> Result<Option<f64>> {
        let (busy, rx) = self.cycles()?;
        let (b0, r0) = self.mark;
        let pkts = rx.saturating_sub(r0);
        Ok((pkts > 0).then(|| busy.saturating_sub(b0) as f64 / pkts as f64))
    }
}

impl Drop for Cer {
    fn drop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.terminate(Duration::from_secs(10));
        }
        self.bench.remove_sockets();
    }
}

// ---------------------------------------------------------------- testpmd io

/// `dpdk-testpmd --forward-mode=io`: the PMD's own ceiling.
pub struct Ceiling {
    bench: Bench,
    child: Option<Child>,
    log: PathBuf,
    stops_seen: usize,
}

impl Ceiling {
    pub fn start(bench: &Bench) -> Result<Ceiling> {
        bench.remove_sockets();
        let log = bench.dir.join("testpmd.log");
        let mut args: Vec<String> = vec![
            format!("--lcores=0@{0},1@{0}", bench.dut_cpu),
            "--no-pci".into(),
            "--no-telemetry".into(),
            format!("--file-prefix=cerio-tp-{}", std::process::id()),
        ];
        args.extend(bench.mem_args(1024));
        for p in 0..2 {
            args.push(format!(
                "--vdev=net_memif{p},role=server,id=0,socket={},socket-abstract=no",
                bench.socket(p).display()
            ));
        }
        args.extend(
            [
                "--",
                "-i",
                "--total-num-mbufs=32768",
                "--forward-mode=io",
                "--record-core-cycles",
                "--nb-cores=1",
                "--rxq=1",
                "--txq=1",
                "--disable-link-check",
                "--no-mlockall",
            ]
            .map(String::from),
        );
        // testpmd's statistics are printf'd: unbuffered, so each `stop`
        // shows at once instead of at exit.
        let child = Command::new("stdbuf")
            .arg("-o0")
            .arg("dpdk-testpmd")
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::create(bench.dir.join("testpmd.err"))?)
            .spawn()
            .context("starting dpdk-testpmd")?;
        let mut c = Ceiling {
            bench: bench.clone(),
            child: Some(child),
            log,
            stops_seen: 0,
        };
        c.wait_for(|t| t.contains("testpmd>"), Duration::from_secs(30))
            .context("dpdk-testpmd did not reach its prompt")?;
        // Forwarding runs all the time (warm-up included); each trial
        // restarts it to reset the statistics.
        c.say("start")?;
        Ok(c)
    }

    fn say(&mut self, cmd: &str) -> Result<()> {
        let c = self.child.as_mut().context("testpmd gone")?;
        let stdin = c.stdin.as_mut().context("testpmd stdin")?;
        writeln!(stdin, "{cmd}")?;
        stdin.flush()?;
        Ok(())
    }

    fn wait_for(&mut self, pred: impl Fn(&str) -> bool, timeout: Duration) -> Result<String> {
        let t = Instant::now();
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if pred(&text) {
                return Ok(text);
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(s)) = c.try_wait() {
                    bail!("dpdk-testpmd exited ({s}): {}", tail(&text));
                }
            }
            if t.elapsed() > timeout {
                bail!("dpdk-testpmd: timed out; log: {}", tail(&text));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

impl Engine for Ceiling {
    fn kind(&self) -> EngineKind {
        EngineKind::Ceiling
    }

    /// io mode sends frames out unchanged: address them to the generator's
    /// own receiving side, so they come back as expected frames.
    fn macs(&self) -> ([u8; 6], [u8; 6]) {
        (GEN_WAN_MAC, GEN_LAN_MAC)
    }

    fn prepare(&mut self, _case: Case) -> Result<()> {
        Ok(())
    }

    fn begin(&mut self) -> Result<()> {
        // `start` resets the forwarding statistics (warm-up traffic out).
        self.stop_stats()?;
        self.say("start")
    }

    fn end(&mut self) -> Result<Option<f64>> {
        let text = self.stop_stats()?;
        self.say("start")?;
        // "CPU cycles/packet=293.12 (busy cycles=... / total io packets=...)"
        let last = text.rsplit("CPU cycles/packet=").next().unwrap_or("");
        let v: String = last
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        Ok(v.parse().ok())
    }
}

impl Ceiling {
    /// `stop`: forwarding stops and testpmd prints the statistics since
    /// the last `start`; returns the log up to them.
    fn stop_stats(&mut self) -> Result<String> {
        self.say("stop")?;
        let want = self.stops_seen + 1;
        let text = self.wait_for(
            |t| t.matches("Done.").count() >= want,
            Duration::from_secs(10),
        )?;
        self.stops_seen = want;
        Ok(text)
    }
}

impl Drop for Ceiling {
    fn drop(&mut self) {
        let _ = self.say("quit");
        if let Some(mut c) = self.child.take() {
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        remove_runtime_dir(&format!("cerio-tp-{}", std::process::id()));
        self.bench.remove_sockets();
    }
}

/// Removes the EAL runtime directory (shared config files, megabytes) a
/// DPDK process this run started left under its own file prefix.
fn remove_runtime_dir(prefix: &str) {
    let _ = std::fs::remove_dir_all(std::path::Path::new("/var/run/dpdk").join(prefix));
}

// ---------------------------------------------------------------- OVS-DPDK

const OVS_VSWITCHD: &str = "/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk";

/// OVS-DPDK with its own database, in its own namespace (its bridges'
/// LOCAL taps live there), ended by PID.
pub struct Ovs {
    bench: Bench,
    ns: Option<Netns>,
    dir: PathBuf,
    mark_reset: bool,
}

impl Ovs {
    pub fn start(bench: &Bench) -> Result<Ovs> {
        bench.remove_sockets();
        let dir = bench.dir.join("ovs");
        for d in ["run", "db", "log", "etc"] {
            std::fs::create_dir_all(dir.join(d))?;
        }
        let ns = Netns::new("io")?;
        let mut o = Ovs {
            bench: bench.clone(),
            ns: Some(ns),
            dir,
            mark_reset: false,
        };
        o.bring_up().context("OVS-DPDK setup")?;
        Ok(o)
    }

    fn env(&self, c: &mut Command) {
        c.env("OVS_RUNDIR", self.dir.join("run"))
            .env("OVS_DBDIR", self.dir.join("db"))
            .env("OVS_LOGDIR", self.dir.join("log"))
            .env("OVS_SYSCONFDIR", self.dir.join("etc"));
    }

    fn run(&self, prog: &str, args: &[&str]) -> Result<String> {
        let mut c = Command::new(prog);
        c.args(args);
        self.env(&mut c);
        let out = c.output().with_context(|| format!("running {prog}"))?;
        if !out.status.success() {
            bail!(
                "{prog} {} failed: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn vsctl(&self, args: &[&str]) -> Result<String> {
        let db = format!("--db=unix:{}", self.dir.join("run/db.sock").display());
        let mut a = vec![db.as_str(), "--timeout=30"];
        a.extend_from_slice(args);
        self.run("ovs-vsctl", &a)
    }

    fn ofctl(&self, args: &[&str]) -> Result<String> {
        let mut a = vec!["-O", "OpenFlow13"];
        a.extend_from_slice(args);
        // ovs-ofctl finds the bridge's management socket in OVS_RUNDIR.
        self.run("ovs-ofctl", &a)
    }

    fn appctl(&self, args: &[&str]) -> Result<String> {
        let ctl = self.dir.join("run/ovs-vswitchd.ctl");
        let t = ctl.display().to_string();
        let mut a = vec!["-t", t.as_str()];
        a.extend_from_slice(args);
        self.run("ovs-appctl", &a)
    }

    fn ns_name(&self) -> &str {
        self.ns
            .as_ref()
            .map(|n| n.name.as_str())
            .unwrap_or_default()
    }

    fn bring_up(&mut self) -> Result<()> {
        let d = &self.dir;
        let db = d.join("db/conf.db");
        self.run(
            "ovsdb-tool",
            &[
                "create",
                db.to_str().unwrap_or_default(),
                "/usr/share/openvswitch/vswitch.ovsschema",
            ],
        )?;
        let remote = format!("--remote=punix:{}", d.join("run/db.sock").display());
        let pid = format!("--pidfile={}", d.join("run/ovsdb-server.pid").display());
        let ctl = format!("--unixctl={}", d.join("run/ovsdb-server.ctl").display());
        let log = format!("--log-file={}", d.join("log/ovsdb-server.log").display());
        self.run(
            "ovsdb-server",
            &[
                db.to_str().unwrap_or_default(),
                &remote,
                &pid,
                &ctl,
                &log,
                "--detach",
            ],
        )?;
        self.vsctl(&["--no-wait", "init"])?;
        let mem = match self.bench.memory {
            Memory::NoHuge => "--no-huge -m 1024 --legacy-mem".to_string(),
            Memory::Hugepages => "-m 1024 --huge-unlink".to_string(),
        };
        let extra = format!(
            "other_config:dpdk-extra={mem} --no-pci --no-telemetry --file-prefix=cerio-ovs-{}",
            std::process::id()
        );
        let pmd = format!(
            "other_config:pmd-cpu-mask={:#x}",
            1u64 << self.bench.dut_cpu
        );
        let lcore = format!(
            "other_config:dpdk-lcore-mask={:#x}",
            1u64 << self.bench.gen_cpu
        );
        self.vsctl(&[
            "--no-wait",
            "set",
            "Open_vSwitch",
            ".",
            "other_config:dpdk-init=true",
            &lcore,
            &pmd,
            &extra,
        ])?;
        let ns = self.ns_name().to_string();
        for k in ["all", "default"] {
            let _ = Command::new("ip")
                .args(["netns", "exec", &ns, "sysctl", "-qw"])
                .arg(format!("net.ipv6.conf.{k}.disable_ipv6=1"))
                .output();
        }
        let vsw_pid = d.join("run/ovs-vswitchd.pid");
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &ns, OVS_VSWITCHD])
            .arg(format!("unix:{}", d.join("run/db.sock").display()))
            .arg(format!("--pidfile={}", vsw_pid.display()))
            .arg(format!(
                "--unixctl={}",
                d.join("run/ovs-vswitchd.ctl").display()
            ))
            .arg(format!(
                "--log-file={}",
                d.join("log/ovs-vswitchd.log").display()
            ))
            .arg("--detach");
        self.env(&mut c);
        let out = c.output().context("starting ovs-vswitchd-dpdk")?;
        if !out.status.success() {
            bail!(
                "ovs-vswitchd-dpdk failed: {}{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(d.join("log/ovs-vswitchd.log")).unwrap_or_default()
            );
        }
        let memif = |p: usize| {
            format!(
                "options:dpdk-devargs=\"net_memif{p},role=server,id=0,socket={},socket-abstract=no\"",
                self.bench.socket(p).display()
            )
        };
        let (m0, m1) = (memif(0), memif(1));
        let hw0 = format!("other-config:hwaddr={}", MacAddr(LAN_MAC));
        let hw1 = format!("other-config:hwaddr={}", MacAddr(WAN_MAC));
        let gre_remote = format!("options:remote_ip={GEN_WAN_ADDR}");
        let gre_key = format!("options:key={GRE_KEY}");
        // br0: LAN port, the GRE tunnel, a patch to br1. br1: WAN port and
        // the tunnel's underlay (its LOCAL port holds the tunnel address).
        #[rustfmt::skip]
        self.vsctl(&[
            "add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev", &hw0,
            "--", "add-port", "br0", "dpdk0", "--", "set", "Interface", "dpdk0", "type=dpdk",
            "ofport_request=1", "options:n_rxq=2", &m0,
            "--", "add-port", "br0", "gre0", "--", "set", "Interface", "gre0", "type=gre",
            "ofport_request=2", &gre_remote, &gre_key, "options:packet_type=legacy_l3",
            "--", "add-port", "br0", "patch0", "--", "set", "Interface", "patch0", "type=patch",
            "ofport_request=3", "options:peer=patch1",
            "--", "add-br", "br1", "--", "set", "bridge", "br1", "datapath_type=netdev", &hw1,
            "--", "add-port", "br1", "dpdk1", "--", "set", "Interface", "dpdk1", "type=dpdk",
            "ofport_request=1", "options:n_rxq=2", &m1,
            "--", "add-port", "br1", "patch1", "--", "set", "Interface", "patch1", "type=patch",
            "ofport_request=2", "options:peer=patch0",
        ])?;
        let ns = self.ns.as_ref().context("namespace")?;
        ns.run(&["ip", "link", "set", "br0", "up"])?;
        ns.run(&["ip", "addr", "add", &format!("{WAN_ADDR}/24"), "dev", "br1"])?;
        ns.run(&["ip", "link", "set", "br1", "up"])?;
        let gw = GEN_WAN_ADDR.to_string();
        let gm = MacAddr(GEN_WAN_MAC).to_string();
        // OVS learns the underlay route from the namespace; the neighbor is static.
        let t = Instant::now();
        loop {
            if self.appctl(&["tnl/arp/set", "br1", &gw, &gm]).is_ok()
                && self
                    .appctl(&["ovs/route/show"])
                    .map(|r| r.contains("10.2.0.0/24"))
                    .unwrap_or(false)
            {
                break;
            }
            if t.elapsed() > Duration::from_secs(10) {
                bail!(
                    "OVS did not learn the underlay route 10.2.0.0/24: {}",
                    self.appctl(&["ovs/route/show"]).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    fn flows(&self, br0: &[String], br1: &[String]) -> Result<()> {
        for (br, flows) in [("br0", br0), ("br1", br1)] {
            self.ofctl(&["del-flows", br])?;
            for f in flows {
                self.ofctl(&["add-flow", br, f])?;
            }
        }
        Ok(())
    }

    fn pid_of(&self, name: &str) -> Option<i32> {
        std::fs::read_to_string(self.dir.join("run").join(name))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Engine for Ovs {
    fn kind(&self) -> EngineKind {
        EngineKind::Ovs
    }

    fn macs(&self) -> ([u8; 6], [u8; 6]) {
        (LAN_MAC, WAN_MAC)
    }

    /// OVS's PMD transmits on queue 1 (queue 0 belongs to the main thread).
    fn gen_queues(&self) -> u16 {
        2
    }

    fn prepare(&mut self, case: Case) -> Result<()> {
        let mac = |m: [u8; 6]| MacAddr(m).to_string();
        let table = "nw_dst=10.128.0.0/9";
        let (br0, br1) = match case {
            Case::Forward => (
                vec![format!(
                    "priority=20,ip,in_port=1,{table},actions=dec_ttl,mod_dl_src:{},mod_dl_dst:{},output:3",
                    mac(WAN_MAC),
                    mac(GEN_WAN_MAC)
                )],
                vec!["in_port=2,actions=output:1".to_string()],
            ),
            Case::Encap(Transport::Gre) => (
                vec![format!("priority=20,ip,in_port=1,{table},actions=dec_ttl,output:2")],
                vec!["in_port=LOCAL,actions=output:1".to_string()],
            ),
            Case::Decap(Transport::Gre) => (
                vec![format!(
                    "priority=20,ip,in_port=2,{table},actions=dec_ttl,mod_dl_src:{},mod_dl_dst:{},output:1",
                    mac(LAN_MAC),
                    mac(GEN_LAN_MAC)
                )],
                vec![format!("priority=20,ip,in_port=1,nw_dst={WAN_ADDR},actions=output:LOCAL")],
            ),
            other => bail!("OVS is not measured on {other}"),
        };
        self.flows(&br0, &br1)
    }

    fn begin(&mut self) -> Result<()> {
        self.appctl(&["dpif-netdev/pmd-stats-clear"])?;
        self.mark_reset = true;
        Ok(())
    }

    fn end(&mut self) -> Result<Option<f64>> {
        let s = self.appctl(&["dpif-netdev/pmd-stats-show"])?;
        // The PMD thread on the DUT core: processing cycles / packets received.
        let core = format!("core_id {}:", self.bench.dut_cpu);
        let Some(sec) = s.split("pmd thread").find(|b| b.contains(&core)) else {
            return Ok(None);
        };
        let num = |key: &str| -> Option<f64> {
            let rest = sec.split(key).nth(1)?;
            rest.trim_start()
                .split(|c: char| c.is_whitespace() || c == '(')
                .next()?
                .parse()
                .ok()
        };
        let pkts = num("packets received:").unwrap_or(0.0);
        let busy = num("processing cycles:").unwrap_or(0.0);
        Ok((pkts > 0.0).then(|| busy / pkts))
    }
}

impl Drop for Ovs {
    fn drop(&mut self) {
        for name in ["ovs-vswitchd.pid", "ovsdb-server.pid"] {
            if let Some(pid) = self.pid_of(name) {
                // SAFETY: kill(2) on a PID this run started (from its own pidfile).
                unsafe { libc::kill(pid, libc::SIGTERM) };
                let t = Instant::now();
                // SAFETY: kill with signal 0 only checks that the process exists.
                while unsafe { libc::kill(pid, 0) } == 0 && t.elapsed() < Duration::from_secs(10) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                // SAFETY: as above: a liveness check of our own process.
                let alive = unsafe { libc::kill(pid, 0) } == 0;
                if alive {
                    // SAFETY: our own process, which ignored SIGTERM for 10 s.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        drop(self.ns.take());
        remove_runtime_dir(&format!("cerio-ovs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&self.dir);
        self.bench.remove_sockets();
    }
}

/// The directory of a run: sockets, configs, logs (removed at the end
/// unless kept for inspection).
pub fn work_dir() -> Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("cer-io-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
