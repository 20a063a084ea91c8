//! On-prem capture end to end: two full CER nodes (cer-dataplane on
//! `net_af_packet` + `net_tap`, cer-control in `[capture] mode = "onprem"`
//! following its own keepalived through `notify_fifo`) on one L2 segment with
//! a workload; a gobgpd route reflector carries a /32 owned by a third node
//! (identity 65000:1009 with its marker), so both CERs must capture it and
//! exactly the VRRP master answers ARP for it.
//!
//! ```text
//!             segment netns: br0 (LAN 10.77.60.0/24 + VRRP/BGP 192.168.77.0/24)
//!   wl 10.77.60.100 --+-- [dp A lan .2] [ka0 192.168.77.2: keepalived 150, cer-control A]
//!   rr 192.168.77.1 --+-- [dp B lan .3] [ka0 192.168.77.3: keepalived 100, cer-control B]
//!             br1 (underlay 10.30.0.0/24): dp A wan .1, dp B wan .2, far 10.30.0.9 (node 9)
//! ```
//!
//! The workload sends an ARP request for the captured 10.77.60.20 every 50 ms
//! for the whole test and every frame on its bridge port is captured. Then:
//! 1. SIGKILL A's cer-control: A's dataplane closes its gate within ~1 s by
//!    itself (the feed session that owned the gate ended) and keeps
//!    forwarding the /32 into the tunnel on its last snapshot.
//! 2. SIGKILL A's keepalived: B becomes master, its gate opens, its MAC
//!    answers and it sends GARPs.
//! 3. A foreign host GARPs the captured /32: B's dataplane raises the
//!    duplicate-holder alarm and cer-control B shows it in its status.
//!
//! From the pcap: every ARP frame claiming 10.77.60.20 (sender IP = the /32:
//! replies and GARPs) before the foreign GARP came from A's or B's LAN MAC;
//! A claimed it only while its cer-control lived (no A frame later than
//! 1 s after the kill); B claimed it only after A's keepalived died; and no
//! frame from A's MAC follows the first frame from B's MAC: never two
//! holders in an overlapping window.

use anyhow::{bail, Context, Result};
use cer_e2e::peers::{gobgp_rr_config, GoBgp, Lan};
use cer_e2e::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const CAPTURED: &str = "10.77.60.20";
const FOREIGN_MAC: &str = "02:00:00:c0:ff:ee";

/// Sends an ARP request for `target` every 50 ms until killed.
const PROBER: &str = include_str!("../scripts/onprem_prober.py");

/// Three gratuitous ARP replies claiming `ip` from `mac`: a second holder.
const FOREIGN_GARP: &str = include_str!("../scripts/foreign_garp.py");

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A veth from `ns` (as `iface`) into bridge `br` of the segment namespace.
fn plug(lan: &Lan, br: &str, port: &str, ns: &Netns, iface: &str) -> Result<()> {
    veth(port, &lan.ns, iface, ns)?;
    lan.ns.run(&["ip", "link", "set", port, "master", br])?;
    lan.ns.run(&["ip", "link", "set", port, "up"])?;
    Ok(())
}

/// keepalived and its VRRP child, both SIGKILLed by PID (a crash) on `kill` or drop.
struct Keepalived {
    proc: Option<Proc>,
    vrrp_pid: PathBuf,
}

impl Keepalived {
    fn kill(&mut self) {
        let child = std::fs::read_to_string(&self.vrrp_pid)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        if let Some(p) = &self.proc {
            // SAFETY: kill(2) on a process this test started.
            unsafe { libc::kill(p.pid() as i32, libc::SIGKILL) };
        }
        if let Some(c) = child.filter(|c| *c > 0) {
            // SAFETY: the VRRP child of our keepalived (its own pid file).
            unsafe { libc::kill(c, libc::SIGKILL) };
        }
        drop(self.proc.take());
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One CER: dataplane, cer-control, keepalived in one namespace. Fields drop
/// in order: processes first, the namespace last.
struct Node {
    control: Option<Control>,
    keepalived: Option<Keepalived>,
    dataplane: Proc,
    admin: PathBuf,
    fifo: PathBuf,
    dir: PathBuf,
    name: String,
    lan_mac: String,
    ns: Netns,
}

impl Node {
    /// `idx` 2 or 3: LAN 10.77.60.idx, VRRP/BGP 192.168.77.idx, underlay 10.30.0.(idx-1).
    fn start(lan: &Lan, scratch: &Path, name: &str, idx: u8, t: &str) -> Result<Node> {
        let ns = Netns::new(name)?;
        let dir = scratch.join(name);
        std::fs::create_dir_all(&dir)?;
        plug(lan, "br0", &format!("pl{idx}{t}"), &ns, "lan0")?;
        plug(lan, "br1", &format!("pw{idx}{t}"), &ns, "wan0")?;
        plug(lan, "br0", &format!("pk{idx}{t}"), &ns, "ka0")?;
        ns.addr("ka0", &format!("192.168.77.{idx}/24"))?;
        // The kernel holds the LAN address on the TAP: never answer for it on ka0.
        ns.run(&["sysctl", "-qw", "net.ipv4.conf.ka0.arp_ignore=1"])?;
        for i in ["lan0", "wan0"] {
            ns.run(&[
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{i}.disable_ipv6=1"),
            ])?;
            ns.run(&["ip", "link", "set", i, "up"])?;
        }
        let admin = dir.join("dp-admin.sock");
        let feed = dir.join("dp-feed.sock");
        let wan = idx - 1;
        let cfg_path = DataplaneConfig::new(name, &format!("10.77.60.{idx}"))
            .admin_socket(&admin)
            .feed_socket(&feed)
            .arp_retry_ms(200)
            .file_prefix(&format!("op{idx}{t}"))
            .port(
                Port::af_packet("lan", "lan0", &format!("10.77.60.{idx}/24"))
                    .proxy_arp()
                    .exception_tap(&format!("tp{idx}{t}")),
            )
            .port(Port::af_packet("wan", "wan0", &format!("10.30.0.{wan}/24")))
            .tunnel(Tunnel::new(
                9,
                "ipip",
                &format!("10.30.0.{wan}"),
                "10.30.0.9",
            ))
            .write(&dir.join("dp.toml"))?;
        let dataplane = start_dataplane(&ns, &cfg_path, &dir.join("dp.log"))?;
        let ports = admin_q(&admin, "ports")?;
        let lan_mac = ports[0]["mac"]
            .as_str()
            .context("lan port mac")?
            .to_lowercase();
        let fifo = dir.join("notify.fifo");
        sh(&["mkfifo", "-m", "0600", fifo.to_str().unwrap()])?;
        let body = ControlConfig::new(name, &format!("192.168.77.{idx}"), 65000)
            .transport_address(&format!("10.30.0.{wan}"))
            .fast_timers()
            .graceful_restart_secs(0)
            .neighbor(Neighbor::internal("192.168.77.1"))
            .sam(
                &format!("65000:100{idx}"),
                &format!("10.255.0.{idx}/32"),
                &dir.join("endpoints.json"),
            )
            .tunnel(9, "10.30.0.9")
            .feed_socket(&feed)
            .lan_port("lan")
            .initial_sync_delay_secs(2)
            .capture_mode("onprem")
            .vrrp(&fifo, &format!("VI_{t}"))
            .garp_count(3)
            .to_string();
        let control = Control::start(Some(&ns), &dir, "control", &body)?;
        Ok(Node {
            control: Some(control),
            keepalived: None,
            dataplane,
            admin,
            fifo,
            dir,
            name: name.to_string(),
            lan_mac,
            ns,
        })
    }

    fn start_keepalived(&mut self, prio: u8, t: &str) -> Result<()> {
        let conf = self.dir.join("keepalived.conf");
        std::fs::write(
            &conf,
            format!(
                r#"global_defs {{
    router_id {name}{t}
    notify_fifo {fifo}
    vrrp_garp_master_delay 0
}}
vrrp_instance VI_{t} {{
    state BACKUP
    nopreempt
    interface ka0
    virtual_router_id 78
    priority {prio}
    advert_int 1
    virtual_ipaddress {{
        192.168.77.100/32
    }}
}}
"#,
                name = self.name,
                fifo = self.fifo.display(),
            ),
        )?;
        let pid = self.dir.join("keepalived.pid");
        let vrrp_pid = self.dir.join("vrrp.pid");
        let proc = self.ns.spawn(
            &[
                "keepalived",
                "-n",
                "-l",
                "-D",
                "-P",
                "-f",
                conf.to_str().unwrap(),
                "-p",
                pid.to_str().unwrap(),
                "-r",
                vrrp_pid.to_str().unwrap(),
            ],
            &self.dir.join("keepalived.log"),
        )?;
        self.keepalived = Some(Keepalived {
            proc: Some(proc),
            vrrp_pid,
        });
        Ok(())
    }

    fn proxy(&self) -> Value {
        admin_q(&self.admin, "proxy_arp").unwrap_or(Value::Null)
    }

    fn gate_open(&self) -> bool {
        self.proxy()["active"] == true
    }

    fn holds_captured(&self) -> bool {
        self.proxy()["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a == CAPTURED)
    }

    fn status(&self) -> Value {
        self.control
            .as_ref()
            .and_then(|c| c.json(&["show", "status"]).ok())
            .unwrap_or(Value::Null)
    }

    fn dump(&self) -> String {
        format!(
            "--- {} proxy_arp {}\nfeed {}\ncontrol status {}\ndataplane log tail:\n{}\ncontrol log tail:\n{}\nkeepalived log tail:\n{}",
            self.name,
            self.proxy(),
            admin_q(&self.admin, "feed").unwrap_or(Value::Null),
            self.status(),
            tail(&self.dataplane.log_text(), 15),
            tail(
                &self
                    .control
                    .as_ref()
                    .map(|c| c.proc.log_text())
                    .unwrap_or_default(),
                15
            ),
            tail(
                &std::fs::read_to_string(self.dir.join("keepalived.log")).unwrap_or_default(),
                10
            ),
        )
    }
}

fn admin_q(socket: &Path, cmd: &str) -> Result<Value> {
    admin(socket, cmd)
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// One ARP frame claiming the captured /32 (sender IP = the /32).
#[derive(Debug)]
struct Claim {
    t: f64,
    mac: String,
    op: u8,
}

fn claims(pcap: &Path) -> Result<Vec<Claim>> {
    let out = sh(&[
        "tshark",
        "-r",
        pcap.to_str().unwrap(),
        "-Y",
        &format!("arp.src.proto_ipv4 == {CAPTURED}"),
        "-T",
        "fields",
        "-e",
        "frame.time_epoch",
        "-e",
        "arp.src.hw_mac",
        "-e",
        "arp.opcode",
        "-E",
        "separator=,",
    ])?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut v = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 3 {
            bail!("unexpected tshark line {line:?}");
        }
        v.push(Claim {
            t: f[0].parse().with_context(|| format!("time in {line:?}"))?,
            mac: f[1].to_lowercase(),
            op: f[2]
                .parse()
                .with_context(|| format!("opcode in {line:?}"))?,
        });
    }
    Ok(v)
}

fn encapsulated(n: &Node) -> u64 {
    counter(&n.admin, "events", "encapsulated")
}

#[test]
fn onprem_failover_has_one_arp_holder_and_alarms_on_a_second() -> Result<()> {
    let _g = serial();
    require_root();
    let t0 = Instant::now();
    let scratch = Scratch::new("onprem")?;
    let t = tag();
    // Namespaces first: they drop last, after every process below.
    let lan = Lan::new()?;
    lan.ns
        .run(&["ip", "link", "add", "br1", "type", "bridge"])?;
    lan.ns.run(&["ip", "link", "set", "br1", "up"])?;
    let wl = Netns::new("wl")?;
    let wl_port = format!("pwl{t}");
    plug(&lan, "br0", &wl_port, &wl, "eth0")?;
    wl.addr("eth0", "10.77.60.100/24")?;
    wl.run(&["ethtool", "-K", "eth0", "tx", "off"])?;
    let rr_ns = Netns::new("rr")?;
    plug(&lan, "br0", &format!("prr{t}"), &rr_ns, "eth0")?;
    rr_ns.addr("eth0", "192.168.77.1/24")?;
    let far = Netns::new("far")?;
    plug(&lan, "br1", &format!("pfr{t}"), &far, "eth0")?;
    far.addr("eth0", "10.30.0.9/24")?;

    let rr = GoBgp::start(
        &rr_ns,
        &scratch.path,
        &gobgp_rr_config(
            65000,
            "192.168.77.1",
            "192.168.77.1",
            &["192.168.77.2", "192.168.77.3"],
        ),
    )?;
    let mut a = Node::start(&lan, &scratch.path, "opa", 2, &t)?;
    let mut b = Node::start(&lan, &scratch.path, "opb", 3, &t)?;
    rr.wait_established("192.168.77.2", Duration::from_secs(20))?;
    rr.wait_established("192.168.77.3", Duration::from_secs(20))?;
    // Node 9 (not running here) owns the /32 and is alive (marker present).
    rr.add_route(
        "10.255.0.9/32",
        "10.30.0.9",
        &["65000:999", "65000:1009"],
        None,
    )?;
    rr.add_route(
        &format!("{CAPTURED}/32"),
        "10.30.0.9",
        &["65000:1009"],
        Some(100),
    )?;

    // Both capture the /32; the gates stay closed until keepalived speaks.
    wait_until(
        "both dataplanes hold the /32",
        Duration::from_secs(20),
        || a.holds_captured() && b.holds_captured(),
    )
    .with_context(|| format!("{}\n{}", a.dump(), b.dump()))?;
    assert!(!a.gate_open() && !b.gate_open(), "gate open without VRRP");

    // A first (higher priority, elected first), then B as backup.
    a.start_keepalived(150, &t)?;
    wait_until("A master: gate open", Duration::from_secs(15), || {
        a.gate_open()
    })
    .with_context(|| a.dump())?;
    b.start_keepalived(100, &t)?;

    // Capture the workload's bridge port for the rest of the test, then probe.
    // In immediate mode (`apps::TCPDUMP_LIVE`): frames are in the file as they
    // arrive. Without it they reached the file up to 1 s late and the ones
    // of the last second before the stop never did (issue 16: the foreign
    // GARPs, sent well under a second before the stop, were missing).
    let pcap = scratch.file("segment.pcap");
    let mut dump = lan.ns.spawn(
        &cer_e2e::apps::tcpdump_live(&["-n", "-i", &wl_port, "-w", pcap.to_str().unwrap(), "arp"]),
        &scratch.file("tcpdump.log"),
    )?;
    dump.wait_for_log("listening on", Duration::from_secs(10))?;
    let prober_py = scratch.file("prober.py");
    std::fs::write(&prober_py, PROBER)?;
    let _prober = wl.spawn(
        &[
            "/usr/bin/python3",
            prober_py.to_str().unwrap(),
            "eth0",
            "10.77.60.100",
            CAPTURED,
        ],
        &scratch.file("prober.log"),
    )?;
    std::thread::sleep(Duration::from_secs(4));
    wait_until("A answers", Duration::from_secs(5), || {
        counter(&a.admin, "events", "proxy_arp_reply_sent") > 0
    })
    .with_context(|| a.dump())?;
    assert!(!b.gate_open(), "B's gate open while backup\n{}", b.dump());
    assert_eq!(counter(&b.admin, "events", "proxy_arp_reply_sent"), 0);
    assert!(
        counter(&b.admin, "events", "proxy_arp_inactive_silent") > 0,
        "B saw the probes and stayed silent\n{}",
        b.dump()
    );

    // Forwarding: the workload sends to the /32 through A (static neighbor:
    // A's LAN MAC); A encapsulates it to node 9.
    wl.run(&[
        "ip",
        "neigh",
        "replace",
        CAPTURED,
        "lladdr",
        &a.lan_mac,
        "dev",
        "eth0",
        "nud",
        "permanent",
    ])?;
    let enc0 = encapsulated(&a);
    wl.try_run(&["ping", "-c", "3", "-i", "0.2", "-W", "1", CAPTURED]);
    let enc1 = encapsulated(&a);
    // (The first may wait for the underlay neighbor.)
    assert!(
        enc1 >= enc0 + 2,
        "A forwards into the tunnel: {enc0} -> {enc1}\n{}",
        a.dump()
    );

    // 1. SIGKILL A's cer-control: A's dataplane closes the gate by itself.
    let kill_control = unix_now();
    let k0 = Instant::now();
    {
        let c = a.control.as_ref().context("A's control")?;
        // SAFETY: kill(2) on the cer-control this test started.
        unsafe { libc::kill(c.proc.pid() as i32, libc::SIGKILL) };
    }
    let closed = wait_until("A's gate closed", Duration::from_secs(3), || !a.gate_open())
        .with_context(|| a.dump())?;
    eprintln!("A's cer-control killed: dataplane gate closed after {closed:?}");
    assert!(
        k0.elapsed() < Duration::from_millis(1500),
        "gate closed after {:?}",
        k0.elapsed()
    );
    let feed = admin_q(&a.admin, "feed")?;
    assert_eq!(feed["gate_closed_on_disconnect"], 1, "{feed}");
    assert_eq!(feed["gate_owner_connected"], false, "{feed}");
    assert!(
        a.dataplane.log_text().contains("proxy ARP gate closed"),
        "{}",
        a.dump()
    );
    drop(a.control.take());
    // Non-stop forwarding: same snapshot entries, still encapsulating.
    let fib = admin_q(&a.admin, "fib")?;
    assert!(
        fib["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["ip"] == CAPTURED && e["action"] == "tunnel 9"),
        "A's FIB after the kill: {fib}"
    );
    assert!(
        a.holds_captured(),
        "the proxy set stays, only the gate closes"
    );
    wl.try_run(&["ping", "-c", "3", "-i", "0.2", "-W", "1", CAPTURED]);
    let enc2 = encapsulated(&a);
    assert!(
        enc2 >= enc1 + 3,
        "A still forwards: {enc1} -> {enc2}\n{}",
        a.dump()
    );
    // keepalived on A is still master: B must not take over, nobody answers.
    std::thread::sleep(Duration::from_secs(2));
    assert!(!b.gate_open(), "B took over while A's keepalived lives");
    let silent_a = counter(&a.admin, "events", "proxy_arp_inactive_silent");
    assert!(silent_a > 0, "A stayed silent for the probes\n{}", a.dump());

    // 2. SIGKILL A's keepalived: B becomes master and takes over.
    let kill_vrrp = unix_now();
    let k1 = Instant::now();
    if let Some(k) = a.keepalived.as_mut() {
        k.kill();
    }
    let took = wait_until("B's gate open", Duration::from_secs(15), || b.gate_open())
        .with_context(|| b.dump())?;
    eprintln!("A's keepalived killed: B's gate open after {took:?}");
    wait_until("B answers", Duration::from_secs(5), || {
        counter(&b.admin, "events", "proxy_arp_reply_sent") > 0
    })
    .with_context(|| b.dump())?;
    assert!(counter(&b.admin, "events", "gratuitous_arp_sent") >= 1);
    assert!(k1.elapsed() < Duration::from_secs(15));
    std::thread::sleep(Duration::from_secs(1));

    // 3. A foreign host claims the /32: B's duplicate-holder alarm.
    let foreign_at = unix_now();
    let garp_py = scratch.file("garp.py");
    std::fs::write(&garp_py, FOREIGN_GARP)?;
    wl.run(&[
        "/usr/bin/python3",
        garp_py.to_str().unwrap(),
        "eth0",
        CAPTURED,
        FOREIGN_MAC,
    ])?;
    let alarm = wait_until(
        "cer-control B reports the duplicate holder",
        Duration::from_secs(5),
        || {
            let s = b.status();
            s["feed"]["duplicate_holder_alarms"]
                .as_u64()
                .is_some_and(|n| n >= 1)
                && s["feed"]["duplicate_holders"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|h| h["ip"] == CAPTURED && h["mac"] == FOREIGN_MAC)
        },
    )
    .with_context(|| b.dump())?;
    eprintln!("duplicate holder visible in cer-control B after {alarm:?}");
    assert!(counter(&b.admin, "events", "duplicate_holder_alarm") >= 1);
    let p = b.proxy();
    assert_eq!(p["duplicate_holders"][0]["ip"], CAPTURED, "{p}");
    let blog = b
        .control
        .as_ref()
        .map(|c| c.proc.log_text())
        .unwrap_or_default();
    assert!(
        blog.contains("DUPLICATE PROXY-ARP HOLDER") && blog.contains(FOREIGN_MAC),
        "cer-control B log:\n{}",
        tail(&blog, 20)
    );
    let ctl = b.control.as_ref().context("cer-control B")?;
    let ex = ctl.json(&["explain", CAPTURED])?;
    assert!(
        ex["capture"]["duplicate_holder"]
            .as_str()
            .is_some_and(|t| t.starts_with("ALARM") && t.contains(FOREIGN_MAC)),
        "explain names the duplicate holder: {}",
        ex["capture"]
    );
    // A's gate was closed: it saw the GARP but raised nothing.
    assert_eq!(counter(&a.admin, "events", "duplicate_holder_alarm"), 0);

    // The wire: who claimed the /32, when. The foreign GARPs are the last
    // frames the test checks; the capture is stopped only once they are in the
    // file (each packet is written as it arrives), never after a guessed delay.
    let foreign_in_pcap = || {
        claims(&pcap)
            .map(|c| c.iter().filter(|c| c.mac == FOREIGN_MAC).count())
            .unwrap_or(0)
    };
    let written = wait_until(
        "the 3 foreign GARPs in the capture file",
        Duration::from_secs(5),
        || foreign_in_pcap() >= 3,
    );
    dump.terminate(Duration::from_secs(5));
    let all = claims(&pcap)?;
    let (amac, bmac) = (a.lan_mac.as_str(), b.lan_mac.as_str());
    // The foreign host's claims are told apart by MAC, not by time: pcap
    // timestamps and this process's clock are compared only for A and B.
    let before: Vec<&Claim> = all
        .iter()
        .filter(|c| c.mac != FOREIGN_MAC && c.t < foreign_at)
        .collect();
    let from = |m: &str| before.iter().filter(|c| c.mac == m).collect::<Vec<_>>();
    let (ca, cb) = (from(amac), from(bmac));
    let report = format!(
        "A {amac}: {} claims, B {bmac}: {} claims; killed control at {kill_control:.3}, keepalived at {kill_vrrp:.3}; first/last A {:?}/{:?}, first B {:?}",
        ca.len(),
        cb.len(),
        ca.first().map(|c| c.t),
        ca.last().map(|c| c.t),
        cb.first().map(|c| c.t),
    );
    eprintln!("{report}");
    let strangers: Vec<&&Claim> = before
        .iter()
        .filter(|c| c.mac != amac && c.mac != bmac)
        .collect();
    assert!(
        strangers.is_empty(),
        "other MACs claimed the /32: {strangers:?}"
    );
    assert!(ca.iter().any(|c| c.op == 2), "A never answered: {report}");
    assert!(
        cb.iter().any(|c| c.op == 2) && cb.iter().any(|c| c.op == 1),
        "B must answer and send GARPs: {report}"
    );
    // A stopped within ~1 s of its controller's death, B started only after
    // A's keepalived died.
    let a_last = ca.last().map(|c| c.t).unwrap_or(0.0);
    assert!(a_last < kill_control + 1.0, "A kept answering: {report}");
    let b_first = cb.first().map(|c| c.t).unwrap_or(f64::MAX);
    assert!(
        b_first > kill_vrrp,
        "B answered before the failover: {report}"
    );
    // The invariant: after the first claim from the new holder, none from the old.
    assert!(
        ca.iter().all(|c| c.t < b_first),
        "two holders overlapped: {report}"
    );
    // The foreign GARPs are on the wire too, all three of them.
    let foreign = all.iter().filter(|c| c.mac == FOREIGN_MAC).count();
    assert!(
        foreign == 3,
        "{foreign} of the 3 foreign GARPs in the capture ({written:?}): {report}\ntcpdump: {}",
        dump.log_text()
    );
    eprintln!(
        "foreign GARPs in the capture file after {:?} (one tshark read of the file takes ~0.3 s)",
        written.as_ref().ok()
    );
    eprintln!("onprem test took {:?}", t0.elapsed());
    drop(rr);
    Ok(())
}
