//! Route-reflector benchmark (issue 20), bgperf2-style, every reflector
//! under test in the same run on the same machine, interleaved: N gobgpd
//! clients each originate K /32s of their own; one more gobgpd client
//! observes. The clients are passive and loaded before the reflector starts,
//! and the reflector (cer-control with `route_reflector = true`, FRR bgpd,
//! BIRD) dials them all, so the whole load starts with its process.
//!
//! Measured from the reflector's process start:
//! - `established`: the observer's session up;
//! - `observer_all`: the observer holds all N*K paths;
//! - `last_update`: the last UPDATE the reflector put on the wire (a capture
//!   on its interface: the last TCP segment from it with more payload than a
//!   KEEPALIVE or an End-of-RIB);
//! - `cpu`: the reflector's CPU seconds (user + system; FRR: bgpd + zebra)
//!   once the wire has been quiet for 2 s;
//! - `peak_rss`: VmHWM (FRR: bgpd + zebra), and `rss_per_path`: peak RSS over
//!   the N*K paths received (an upper bound: it includes the process's idle size).
//!
//! Bounds: the clients run in one namespace on the same 2 cores as the
//! reflector; gobgpd clients keep every reflected path in their Adj-RIB-In
//! (a global import policy rejects them from their RIB; gobgpd has no way
//! to not store them), so the clients' own work competes with the reflector.
//!
//! `cer-bench-rr --scales 10x10000,20x5000,50x2000 --json perf/reports/DATE-rr.json` (root)

mod procfs;

use anyhow::{bail, Context, Result};
use cer_e2e::peers::{bird_config, frr_config, Bird, BulkRoute, Frr, GoBgp, IbgpConf};
use cer_e2e::{bin, sh, veth, Netns, Proc, Scratch};
use clap::Parser;
use procfs::{cpu_of, peak_rss};
use serde_json::{json, Value};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Clients x routes per client.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10x10000,20x5000,50x2000"
    )]
    scales: Vec<String>,
    #[arg(long, value_delimiter = ',', default_value = "cer-control,frr,bird")]
    reflectors: Vec<String>,
    /// Runs per reflector and scale (interleaved across reflectors).
    #[arg(long, default_value_t = 1)]
    runs: usize,
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

const ASN: u32 = 65000;
const RR: &str = "10.30.0.1";
const OBSERVER: &str = "10.30.2.1";

fn client_addr(i: u32) -> String {
    format!("10.30.1.{}", i + 1)
}

/// Client `i`'s routes: K /32s from 10.(64+i).0.0, next hop itself.
fn client_routes(i: u32, k: u32) -> Vec<BulkRoute> {
    let base = u32::from(Ipv4Addr::new(10, 64 + i as u8, 0, 0));
    let nh: Ipv4Addr = client_addr(i).parse().expect("address");
    (0..k)
        .map(|j| BulkRoute {
            prefix: Ipv4Addr::from(base + j),
            len: 32,
            next_hop: nh,
            as_path: vec![],
            local_pref: Some(100),
            communities: vec![],
        })
        .collect()
}

/// A passive gobgpd client of the reflector; `reject` keeps reflected
/// routes out of its RIB.
fn client_conf(addr: &str, reject: bool) -> String {
    let mut t = format!(
        "[global.config]\n  as = {ASN}\n  router-id = \"{addr}\"\n  local-address-list = [\"{addr}\"]\n"
    );
    if reject {
        // Only what comes from the reflector: the client's own (injected)
        // routes go through the same global import policy.
        t.push_str(&format!(
            "[global.apply-policy.config]\n  import-policy-list = [\"drop-reflected\"]\n  default-import-policy = \"accept-route\"\n\
             [[defined-sets.neighbor-sets]]\n  neighbor-set-name = \"rr\"\n  neighbor-info-list = [\"{RR}\"]\n\
             [[policy-definitions]]\n  name = \"drop-reflected\"\n  [[policy-definitions.statements]]\n    name = \"from-rr\"\n\
             [policy-definitions.statements.conditions.match-neighbor-set]\n      neighbor-set = \"rr\"\n\
             [policy-definitions.statements.actions]\n      route-disposition = \"reject-route\"\n"
        ));
    }
    t.push_str(&format!(
        "\n[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{RR}\"\n    peer-as = {ASN}\n  [neighbors.transport.config]\n    local-address = \"{addr}\"\n    passive-mode = true\n  [neighbors.timers.config]\n    hold-time = 90\n    keepalive-interval = 30\n"
    ));
    t
}

/// Field order is drop order: daemons stop before their namespaces go.
struct Stage {
    _clients: Vec<GoBgp>,
    observer: GoBgp,
    rr_ns: Netns,
    _cl_ns: Netns,
    scratch: Scratch,
}

/// N loaded clients and the observer, waiting for a reflector at 10.30.0.1.
fn stage(n: u32, k: u32) -> Result<Stage> {
    let scratch = Scratch::new("rrbench")?;
    let rr_ns = Netns::new("rrb")?;
    let cl_ns = Netns::new("rrc")?;
    veth("eth0", &rr_ns, "eth0", &cl_ns)?;
    rr_ns.addr("eth0", &format!("{RR}/16"))?;
    for i in 0..n {
        cl_ns.addr("eth0", &format!("{}/16", client_addr(i)))?;
    }
    cl_ns.addr("eth0", &format!("{OBSERVER}/16"))?;
    let mut clients = Vec::new();
    for i in 0..n {
        // API ports below the ephemeral range (32768-60999): the gobgp CLI's
        // own connections to the others would otherwise take them.
        let g = GoBgp::start_with_api_port(
            &cl_ns,
            &scratch.path,
            &client_conf(&client_addr(i), true),
            20100 + i as u16,
        )?;
        g.add_routes(&client_routes(i, k))
            .with_context(|| format!("loading client {i}"))?;
        clients.push(g);
    }
    let observer =
        GoBgp::start_with_api_port(&cl_ns, &scratch.path, &client_conf(OBSERVER, false), 20099)?;
    Ok(Stage {
        _clients: clients,
        observer,
        rr_ns,
        _cl_ns: cl_ns,
        scratch,
    })
}

fn peers(n: u32) -> Vec<String> {
    let mut v: Vec<String> = (0..n).map(client_addr).collect();
    v.push(OBSERVER.into());
    v
}

/// The reflector under test, started; its pids (CPU and memory are summed over them).
enum Reflector {
    Cer(Proc),
    Frr(Frr),
    Bird(Bird),
}

impl Reflector {
    fn pids(&self) -> Vec<u32> {
        match self {
            Reflector::Cer(p) => vec![p.pid()],
            Reflector::Frr(f) => vec![f.bgpd_pid(), f.zebra_pid()],
            Reflector::Bird(b) => vec![b.pid()],
        }
    }
}

fn start_reflector(kind: &str, s: &Stage, n: u32) -> Result<Reflector> {
    let dir = &s.scratch.path;
    let peers = peers(n);
    let refs: Vec<&str> = peers.iter().map(String::as_str).collect();
    let ibgp = IbgpConf {
        asn: ASN,
        router_id: RR,
        local_addr: RR,
        neighbors: &refs,
        rr_clients: true,
        passive: false,
        networks: &[],
    };
    let rr_ns = &s.rr_ns;
    Ok(match kind {
        "cer-control" => {
            let mut t = format!(
                "[node]\nname = \"rr\"\nrouter_id = \"{RR}\"\nasn = {ASN}\ntransport_address = \"{RR}\"\n\
                 [bgp]\nlisten = [\"{RR}\"]\nhold_time = 90\nconnect_retry_secs = 1\ngraceful_restart_secs = 0\nroute_reflector = true\n"
            );
            for p in &peers {
                t.push_str(&format!(
                    "[[bgp.neighbor]]\naddress = \"{p}\"\nremote_as = \"internal\"\nrr_client = true\n"
                ));
            }
            t.push_str(&format!(
                "[sam]\nidentity = \"65000:1100\"\nmarker_community = \"65000:999\"\nmarker_prefix = \"10.255.0.100/32\"\npool = [\"10.77.60.0/24\"]\nstate_file = \"{}\"\n[admin]\nsocket = \"{}\"\n",
                dir.join("rr-ep.json").display(),
                dir.join("rr.sock").display()
            ));
            let path = dir.join("rr.toml");
            std::fs::write(&path, t)?;
            let exe = bin("cer-control").display().to_string();
            let p = rr_ns.spawn(
                &[&exe, "--config", &path.display().to_string()],
                &dir.join("rr.log"),
            )?;
            Reflector::Cer(p)
        }
        // `bgp no-rib`: like the other two, the reflector keeps its routes
        // out of the kernel (zebra gets none).
        "frr" => Reflector::Frr(Frr::start(
            rr_ns,
            dir,
            &format!("bgp no-rib\n{}", frr_config(&ibgp)),
        )?),
        "bird" => Reflector::Bird(Bird::start(
            rr_ns,
            dir,
            // The reflector's own table only: nothing to the kernel.
            &bird_config(&ibgp),
        )?),
        other => bail!("unknown reflector {other}"),
    })
}

/// Time of the last segment the reflector sent with more than a KEEPALIVE
/// or an End-of-RIB of payload, from the capture (unix seconds).
fn last_update(pcap: &Path) -> Result<f64> {
    let out = sh(&[
        "tshark",
        "-n",
        "-r",
        &pcap.display().to_string(),
        "-Y",
        &format!("ip.src == {RR} && tcp.len > 23"),
        "-T",
        "fields",
        "-e",
        "frame.time_epoch",
    ])?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| l.trim().parse::<f64>().ok())
        .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))))
        .context("no UPDATE from the reflector in the capture")
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// One reflector at one scale.
fn run(kind: &str, n: u32, k: u32) -> Result<Value> {
    let s = stage(n, k)?;
    let total = u64::from(n) * u64::from(k);
    let rr_ns = &s.rr_ns;
    let pcap = s.scratch.path.join("rr.pcap");
    let mut dump = rr_ns.spawn(
        &[
            "tcpdump",
            "-i",
            "eth0",
            "-n",
            "-U",
            "-s",
            "128",
            "-w",
            &pcap.display().to_string(),
            "tcp port 179",
        ],
        &s.scratch.path.join("tcpdump.log"),
    )?;
    std::thread::sleep(Duration::from_millis(500));
    let t0_unix = unix_now();
    let t0 = Instant::now();
    let r = start_reflector(kind, &s, n)?;
    let timeout = Duration::from_secs(120 + total / 1000);
    let mut established = None;
    let observer_all = loop {
        // The observer's session (asking all N clients would take N CLI
        // calls per poll).
        if established.is_none()
            && s.observer
                .neighbors()
                .ok()
                .and_then(|v| v.first().map(|x| x.state == "established"))
                .unwrap_or(false)
        {
            established = Some(t0.elapsed());
        }
        let (_, paths) = s.observer.rib_count().unwrap_or((0, 0));
        if paths >= total {
            break t0.elapsed();
        }
        if t0.elapsed() > timeout {
            bail!("{kind} {n}x{k}: the observer has {paths} of {total} paths after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Quiet on the wire: the reflector may still be sending to the clients.
    let mut last_size = 0;
    let mut quiet_since = Instant::now();
    loop {
        let size = std::fs::metadata(&pcap).map(|m| m.len()).unwrap_or(0);
        if size != last_size {
            last_size = size;
            quiet_since = Instant::now();
        }
        if quiet_since.elapsed() >= Duration::from_secs(2) || t0.elapsed() > timeout {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let pids = r.pids();
    let cpu: Duration = pids.iter().map(|p| cpu_of(*p)).sum();
    let rss: u64 = pids.iter().map(|p| peak_rss(*p)).sum();
    dump.terminate(Duration::from_secs(5));
    let last = match last_update(&pcap) {
        Ok(t) => Some(t - t0_unix),
        Err(e) => {
            eprintln!("{kind} {n}x{k}: no last UPDATE time: {e:#}");
            None
        }
    };
    drop(r);
    let row = json!({
        "reflector": kind,
        "clients": n,
        "routes_per_client": k,
        "paths": total,
        "observer_established_s": established.map(|d| d.as_secs_f64()),
        "observer_all_s": observer_all.as_secs_f64(),
        "last_update_s": last,
        "cpu_s": cpu.as_secs_f64(),
        "peak_rss_bytes": rss,
        "rss_per_path_bytes": rss / total.max(1),
    });
    eprintln!("{row}");
    Ok(row)
}

fn main() -> Result<()> {
    let a = Args::parse();
    let mut rows = Vec::new();
    for scale in &a.scales {
        let (n, k) = scale
            .split_once('x')
            .and_then(|(n, k)| Some((n.parse::<u32>().ok()?, k.parse::<u32>().ok()?)))
            .with_context(|| format!("--scales: '{scale}' is not NxK"))?;
        if n > 150 || k > 65536 {
            bail!("--scales {scale}: at most 150 clients of 65536 routes (address plan)");
        }
        for round in 0..a.runs {
            for kind in &a.reflectors {
                eprintln!("=== {kind} {n}x{k} run {}", round + 1);
                rows.push(run(kind, n, k)?);
            }
        }
    }
    let out = json!({ "rows": rows });
    match &a.json {
        Some(p) => std::fs::write(p, serde_json::to_string_pretty(&out)?)?,
        None => println!("{}", serde_json::to_string_pretty(&out)?),
    }
    Ok(())
}
