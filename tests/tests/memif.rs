//! cer-dataplane on `net_memif` ports (`driver = "memif"`), end to end with
//! real DPDK peers: two `dpdk-testpmd` processes as memif clients, one
//! sending UDP into the LAN link (txonly), one receiving on the WAN link
//! (rxonly). No kernel on the packet path.
//!
//! Shows: forwarding through /32 exact match over memif; a peer that is
//! missing at start or disconnects is a link-down state (`show ports`:
//! `link_up = false`, `link_down_events` counted), packets for it are named
//! drops, nothing crashes; the peer reconnecting brings traffic back; a stale
//! socket file left by a killed dataplane is cleaned up at start.

use anyhow::{Context, Result};
use cer_e2e::*;
use cer_shared::feed::{EndpointAction, FibChange};
use cer_shared::feed_client::FeedClient;
use cer_shared::MacAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const LAN_MAC: &str = "02:00:00:00:01:01";
const SINK_MAC: [u8; 6] = [2, 0, 0, 0, 2, 0x10];

/// A testpmd process; on drop it is ended by PID and its EAL runtime
/// directory (shared config files, kept by memif's multi-process channel) removed.
struct Testpmd {
    proc: Proc,
    prefix: String,
}

impl std::ops::Deref for Testpmd {
    type Target = Proc;
    fn deref(&self) -> &Proc {
        &self.proc
    }
}

impl Drop for Testpmd {
    fn drop(&mut self) {
        self.proc.terminate(Duration::from_secs(10));
        let _ = std::fs::remove_dir_all(Path::new("/var/run/dpdk").join(&self.prefix));
    }
}

/// A testpmd memif client on `socket`: `txonly` towards the dataplane's LAN
/// port, or `rxonly` on its WAN link. Statistics every second on stdout.
fn testpmd(dir: &Path, name: &str, socket: &Path, mode: &str) -> Result<Testpmd> {
    let log = dir.join(format!("{name}.log"));
    let prefix = format!("e2e{name}{}", tag());
    let mut args: Vec<String> = vec![
        "--lcores=0@0,1@0".into(),
        "--no-pci".into(),
        "--no-huge".into(),
        "-m".into(),
        "256".into(),
        "--no-telemetry".into(),
        format!("--file-prefix={prefix}"),
        format!(
            "--vdev=net_memif0,role=client,id=0,socket={},socket-abstract=no,mac={}",
            socket.display(),
            MacAddr(SINK_MAC)
        ),
        "--".into(),
        "--total-num-mbufs=8192".into(),
        format!("--forward-mode={mode}"),
        "--stats-period=1".into(),
        "--disable-link-check".into(),
        "--no-mlockall".into(),
        "--txpkts=64".into(),
    ];
    if mode == "txonly" {
        args.push(format!("--eth-peer=0,{LAN_MAC}"));
        args.push("--tx-ip=10.1.0.10,10.128.0.7".into());
    }
    let child = Command::new("dpdk-testpmd")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log)?)
        .stderr(std::fs::File::create(dir.join(format!("{name}.err")))?)
        .spawn()
        .context("starting dpdk-testpmd (package dpdk-dev)")?;
    Ok(Testpmd {
        proc: Proc::from_child(child, &log),
        prefix,
    })
}

/// The last "RX-packets: N" testpmd printed (its periodic port statistics).
fn rx_packets(p: &Testpmd) -> u64 {
    let text = p.log_text();
    text.rsplit("RX-packets:")
        .next()
        .filter(|_| text.contains("RX-packets:"))
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn port<'a>(ports: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    ports
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == name))
        .unwrap_or(&serde_json::Value::Null)
}

struct Node {
    // Dropped first: the dataplane gets SIGTERM before its directory goes.
    proc: Proc,
    admin: PathBuf,
    feed: PathBuf,
    lan: PathBuf,
    wan: PathBuf,
    _scratch: Scratch,
}

fn start_node() -> Result<Node> {
    let scratch = Scratch::new("memif")?;
    let (lan, wan) = (scratch.file("lan.sock"), scratch.file("wan.sock"));
    let admin = scratch.file("admin.sock");
    let feed = scratch.file("feed.sock");
    // A socket file left behind by a dataplane that was killed: bound, nobody listening.
    drop(std::os::unix::net::UnixListener::bind(&wan)?);
    assert!(wan.exists());
    let t = tag();
    let cfg_path = DataplaneConfig::new(&format!("memif{t}"), "10.2.0.1")
        .admin_socket(&admin)
        .feed_socket(&feed)
        .file_prefix(&format!("memif{t}"))
        .port(Port::memif("lan", &lan, "10.1.0.1/24").mac(LAN_MAC))
        .port(Port::memif("wan", &wan, "10.2.0.1/24").role("server"))
        .write(&scratch.file("node.toml"))?;
    let log = scratch.file("dataplane.log");
    let child = Command::new(bin("cer-dataplane"))
        .args(["--config", cfg_path.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log)?)
        .stderr(std::fs::File::create(scratch.file("dataplane.err"))?)
        .spawn()?;
    let mut proc = Proc::from_child(child, &log);
    proc.wait_for_log("cer-dataplane: ready", Duration::from_secs(30))
        .with_context(|| {
            std::fs::read_to_string(scratch.file("dataplane.err")).unwrap_or_default()
        })?;
    Ok(Node {
        proc,
        admin,
        feed,
        lan,
        wan,
        _scratch: scratch,
    })
}

#[test]
fn memif_ports_forward_and_survive_peer_loss() -> Result<()> {
    require_root();
    let _g = serial();
    let node = start_node()?;
    let err = node.proc.log.with_extension("err");
    let stderr = || std::fs::read_to_string(&err).unwrap_or_default();
    assert!(
        stderr().contains("removing a stale socket file"),
        "stale wan.sock not reported: {}",
        stderr()
    );

    // No peer yet: both links down, the dataplane runs.
    let ports = admin(&node.admin, "ports")?;
    assert_eq!(port(&ports, "lan")["driver"], "net_memif", "{ports}");
    assert_eq!(port(&ports, "wan")["link_up"], false, "{ports}");

    let mut feed = FeedClient::connect(&node.feed, "e2e-memif")?;
    feed.changes(vec![
        FibChange::EndpointSet {
            ip: "10.128.0.7".parse()?,
            action: EndpointAction::Local { port: "wan".into() },
        },
        FibChange::NeighborSet {
            port: "wan".into(),
            ip: "10.128.0.7".parse()?,
            mac: MacAddr(SINK_MAC),
        },
    ])?;

    let dir = node.lan.parent().unwrap().to_path_buf();
    let sink = testpmd(&dir, "sink", &node.wan, "rxonly")?;
    let source = testpmd(&dir, "source", &node.lan, "txonly")?;
    wait_until("both memif links up", Duration::from_secs(20), || {
        admin(&node.admin, "ports")
            .map(|p| port(&p, "lan")["link_up"] == true && port(&p, "wan")["link_up"] == true)
            .unwrap_or(false)
    })?;
    wait_until(
        "the sink to receive 10000 forwarded packets",
        Duration::from_secs(20),
        || rx_packets(&sink) > 10_000,
    )
    .with_context(|| format!("sink log: {}", sink.log_text()))?;
    let fwd = counter(&node.admin, "events", "forwarded");
    assert!(fwd > 10_000, "forwarded {fwd}");

    // The sink goes away: the WAN link is down and counted; the dataplane
    // keeps running and names the drops of what it cannot send.
    drop(sink);
    wait_until("the WAN link down", Duration::from_secs(10), || {
        admin(&node.admin, "ports")
            .map(|p| {
                port(&p, "wan")["link_up"] == false
                    && port(&p, "wan")["link_down_events"].as_u64() >= Some(1)
            })
            .unwrap_or(false)
    })?;
    let down0 = counter(&node.admin, "drops", "port_link_down");
    wait_until(
        "drops named port_link_down",
        Duration::from_secs(10),
        || counter(&node.admin, "drops", "port_link_down") > down0 + 1000,
    )?;
    assert!(stderr().contains("port wan: link down"), "{}", stderr());

    // It comes back: traffic flows again.
    let sink2 = testpmd(&dir, "sink2", &node.wan, "rxonly")?;
    wait_until("the WAN link up again", Duration::from_secs(20), || {
        admin(&node.admin, "ports")
            .map(|p| port(&p, "wan")["link_up"] == true)
            .unwrap_or(false)
    })?;
    wait_until(
        "the new sink to receive 10000 packets",
        Duration::from_secs(20),
        || rx_packets(&sink2) > 10_000,
    )
    .with_context(|| format!("sink2 log: {}", sink2.log_text()))?;
    drop(source);
    drop(sink2);
    assert!(!stderr().contains("panicked"), "{}", stderr());
    Ok(())
}
