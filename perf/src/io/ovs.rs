//! OVS-DPDK 3.1 (userspace datapath) in the engine's place: its own
//! database and vswitchd in a network namespace, two netdev bridges joined by
//! patch ports (br0: LAN memif port and a GRE port; br1: WAN memif port and
//! the tunnel's underlay address), OpenFlow rules per case; cycles per
//! packet from `dpif-netdev/pmd-stats-show`.

use super::{remove_runtime_dir, Bench, Cycles, Engine, EngineKind, Memory};
use crate::frames::{
    Case, Transport, GEN_LAN_MAC, GEN_WAN_ADDR, GEN_WAN_MAC, GRE_KEY, LAN_MAC, WAN_ADDR, WAN_MAC,
};
use anyhow::{bail, Context, Result};
use cer_e2e::Netns;
use cer_shared::MacAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

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
            "ofport_request=1", "options:n_rxq=2", "mtu_request=1600", &m0,
            "--", "add-port", "br0", "gre0", "--", "set", "Interface", "gre0", "type=gre",
            "ofport_request=2", &gre_remote, &gre_key, "options:packet_type=legacy_l3",
            "--", "add-port", "br0", "patch0", "--", "set", "Interface", "patch0", "type=patch",
            "ofport_request=3", "options:peer=patch1",
            "--", "add-br", "br1", "--", "set", "bridge", "br1", "datapath_type=netdev", &hw1,
            "--", "add-port", "br1", "dpdk1", "--", "set", "Interface", "dpdk1", "type=dpdk",
            "ofport_request=1", "options:n_rxq=2", "mtu_request=1600", &m1,
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

    fn end(&mut self) -> Result<Cycles> {
        let s = self.appctl(&["dpif-netdev/pmd-stats-show"])?;
        // The PMD thread on the DUT core: processing cycles / packets received.
        let core = format!("core_id {}:", self.bench.dut_cpu);
        let Some(sec) = s.split("pmd thread").find(|b| b.contains(&core)) else {
            return Ok(Cycles::default());
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
        let idle = num("idle cycles:").unwrap_or(0.0);
        Ok(Cycles {
            per_packet: (pkts > 0.0).then(|| busy / pkts),
            busy: (busy + idle > 0.0).then(|| busy / (busy + idle)),
        })
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
