//! BGP benchmark, bgperf-style, all receivers measured in the same run on the
//! same machine: gobgpd (injector) holds N /32 paths before the session comes
//! up; each receiver (cer-control, BIRD, FRR, gobgpd) is started, dials it,
//! and is timed from process start until it holds all N paths.
//! Then marker loss to FIB: cer-control feeding a real cer-dataplane learns
//! N endpoints of node 9 plus node 9's marker; the marker is withdrawn at the
//! injector, and the time from that UPDATE reaching cer-control to the
//! dataplane's acknowledgement of the FIB delta is reported (cer-control
//! measures it), together with the wall time seen from outside.
//!
//! `cer-bench-bgp --counts 10000,100000 --json perf/reports/DATE-bgp.json` (root)

mod procfs;

use anyhow::{bail, Context, Result};
use cer_e2e::peers::{
    bird_config, bird_protocol_name, frr_config, gobgp_config, Bird, BulkRoute, Frr, GoBgp,
    IbgpConf,
};
use cer_e2e::{bin, sh, veth, FeedTarget, Netns, Scratch};
use clap::Parser;
use procfs::cpu_of;
use serde_json::{json, Value};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    counts: Vec<u32>,
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "cer-control,bird,frr,gobgpd"
    )]
    receivers: Vec<String>,
    /// Runs per receiver and count (interleaved across receivers); the
    /// summary is the median run by time learned after established.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Endpoints for the marker-loss measurement.
    #[arg(long, default_value_t = 10000)]
    marker_endpoints: u32,
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

const FIRST: Ipv4Addr = Ipv4Addr::new(10, 128, 0, 0);

fn routes(n: u32, communities: &[&str], lp: Option<u32>) -> Vec<BulkRoute> {
    let lp = lp.or(Some(100));
    (0..n)
        .map(|i| BulkRoute {
            prefix: Ipv4Addr::from(u32::from(FIRST) + i),
            len: 32,
            next_hop: "10.10.0.9".parse().unwrap(),
            as_path: vec![],
            local_pref: lp,
            communities: communities.iter().map(|c| c.to_string()).collect(),
        })
        .collect()
}

struct Pair {
    inj_ns: Netns,
    rcv_ns: Netns,
    gobgp: GoBgp,
    scratch: Scratch,
}

/// Injector gobgpd (passive, 10.10.0.1) already holding `r`, receiver namespace at 10.10.0.2.
fn pair(r: &[BulkRoute]) -> Result<Pair> {
    let scratch = Scratch::new("bgpbench")?;
    let inj_ns = Netns::new("inj")?;
    let rcv_ns = Netns::new("rcv")?;
    veth("eth0", &inj_ns, "eth0", &rcv_ns)?;
    inj_ns.addr("eth0", "10.10.0.1/24")?;
    rcv_ns.addr("eth0", "10.10.0.2/24")?;
    let conf = gobgp_config(&IbgpConf {
        asn: 65000,
        router_id: "10.10.0.1",
        local_addr: "10.10.0.1",
        neighbors: &["10.10.0.2"],
        rr_clients: false,
        passive: true,
        networks: &[],
    });
    let gobgp = GoBgp::start(&inj_ns, &scratch.path, &conf)?;
    gobgp.add_routes(r)?;
    Ok(Pair {
        inj_ns,
        rcv_ns,
        gobgp,
        scratch,
    })
}

fn wait_count(
    what: &str,
    n: u64,
    timeout: Duration,
    mut count: impl FnMut() -> u64,
) -> Result<Duration> {
    let start = Instant::now();
    loop {
        if count() >= n {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            bail!("{what}: timed out with {} of {n}", count());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn control_config(
    dir: &Path,
    name: &str,
    pool: &str,
    extra: &str,
) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let sock = dir.join(format!("{name}.sock"));
    let cfg = format!(
        "[node]\nname = \"{name}\"\nrouter_id = \"10.10.0.2\"\nasn = 65000\ntransport_address = \"10.10.0.2\"\n\
         [bgp]\nconnect_retry_secs = 1\ngraceful_restart_secs = 0\n[[bgp.neighbor]]\naddress = \"10.10.0.1\"\nremote_as = \"internal\"\n\
         [sam]\nidentity = \"65000:1002\"\nmarker_community = \"65000:999\"\nmarker_prefix = \"10.255.0.2/32\"\npool = [\"{pool}\"]\nstate_file = \"{}\"\n\
         [admin]\nsocket = \"{}\"\n{extra}",
        dir.join(format!("{name}-ep.json")).display(),
        sock.display()
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, cfg)?;
    Ok((path, sock))
}

fn cerctl_json(sock: &Path, args: &[&str]) -> Result<Value> {
    let mut full = vec![bin("cerctl").display().to_string()];
    full.extend(args.iter().map(|s| s.to_string()));
    full.extend([
        "--socket".to_string(),
        sock.display().to_string(),
        "--json".into(),
    ]);
    let refs: Vec<&str> = full.iter().map(|s| s.as_str()).collect();
    Ok(serde_json::from_slice(&sh(&refs)?.stdout)?)
}

/// One receiver's timings, all from just before its process was started.
struct Learned {
    established: Duration,
    all: Duration,
    /// CPU time (user + system) the receiver's BGP process used, start to all learned.
    cpu: Duration,
}

/// Polls `state` (session established?) and `count` (paths received) until all `n` are in.
fn phases(
    what: &str,
    t0: Instant,
    pid: u32,
    n: u64,
    timeout: Duration,
    mut up: impl FnMut() -> bool,
    mut count: impl FnMut() -> u64,
) -> Result<Learned> {
    let mut established = None;
    loop {
        if established.is_none() && up() {
            established = Some(t0.elapsed());
        }
        if count() >= n {
            let all = t0.elapsed();
            return Ok(Learned {
                established: established.unwrap_or(all),
                all,
                cpu: cpu_of(pid),
            });
        }
        if t0.elapsed() > timeout {
            bail!("{what}: timed out with {} of {n}", count());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Time for one receiver to establish and learn `n` paths.
fn learn(receiver: &str, n: u32) -> Result<Learned> {
    let p = pair(&routes(n, &["65000:1009"], None))?;
    let timeout = Duration::from_secs(120 + u64::from(n) / 500);
    let dir = &p.scratch.path;
    let n64 = u64::from(n);
    let t0 = Instant::now();
    let took = match receiver {
        "cer-control" => {
            let (cfg, sock) = control_config(dir, "rcv", "10.128.0.0/10", "")?;
            let cer_control = bin("cer-control");
            let mut argv: Vec<String> = std::env::var("CER_PROFILE_CMD")
                .map(|c| c.split_whitespace().map(String::from).collect())
                .unwrap_or_default();
            argv.extend([
                cer_control.display().to_string(),
                "--config".into(),
                cfg.display().to_string(),
            ]);
            let refs: Vec<&str> = argv.iter().map(|s| s.as_str()).collect();
            let mut proc = p.rcv_ns.spawn(&refs, &dir.join("rcv.log"))?;
            let summary = || cerctl_json(&sock, &["show", "bgp", "summary"]).ok();
            let pid = proc.pid();
            let r = phases(
                "cer-control",
                t0,
                pid,
                n64,
                timeout,
                || summary().is_some_and(|v| v["neighbors"][0]["state"] == "Established"),
                || {
                    summary()
                        .and_then(|v| v["neighbors"][0]["prefixes_received"].as_u64())
                        .unwrap_or(0)
                },
            );
            proc.terminate(Duration::from_secs(5));
            r?
        }
        "bird" => {
            let conf = bird_config(&IbgpConf {
                asn: 65000,
                router_id: "10.10.0.2",
                local_addr: "10.10.0.2",
                neighbors: &["10.10.0.1"],
                rr_clients: false,
                passive: false,
                networks: &[],
            })
            .replace("import all; export all;", "import all; export none;");
            let b = Bird::start(&p.rcv_ns, dir, &conf)?;
            let proto = bird_protocol_name("10.10.0.1");
            phases(
                "bird",
                t0,
                b.pid(),
                n64,
                timeout,
                || b.bgp_state(&proto).is_ok_and(|s| s == "Established"),
                || {
                    b.birdc(&format!("show protocols all {proto}"))
                        .ok()
                        .and_then(|t| bird_imported(&t))
                        .unwrap_or(0)
                },
            )?
        }
        "frr" => {
            let conf = frr_config(&IbgpConf {
                asn: 65000,
                router_id: "10.10.0.2",
                local_addr: "10.10.0.2",
                neighbors: &["10.10.0.1"],
                rr_clients: false,
                passive: false,
                networks: &[],
            });
            let f = Frr::start(&p.rcv_ns, dir, &conf)?;
            let peer = || {
                f.bgp_summary_json()
                    .ok()
                    .map(|v| v["peers"]["10.10.0.1"].clone())
            };
            phases(
                "frr",
                t0,
                f.bgpd_pid(),
                n64,
                timeout,
                || peer().is_some_and(|v| v["state"] == "Established"),
                || peer().and_then(|v| v["pfxRcd"].as_u64()).unwrap_or(0),
            )?
        }
        "gobgpd" => {
            let conf = gobgp_config(&IbgpConf {
                asn: 65000,
                router_id: "10.10.0.2",
                local_addr: "10.10.0.2",
                neighbors: &["10.10.0.1"],
                rr_clients: false,
                passive: false,
                networks: &[],
            });
            let g = GoBgp::start(&p.rcv_ns, dir, &conf)?;
            let nb = || g.neighbors().ok().and_then(|v| v.first().cloned());
            phases(
                "gobgpd",
                t0,
                g.pid(),
                n64,
                timeout,
                || nb().is_some_and(|x| x.state == "established"),
                || nb().map(|x| x.received).unwrap_or(0),
            )?
        }
        other => bail!("unknown receiver {other}"),
    };
    let _ = &p.inj_ns;
    Ok(took)
}

fn bird_imported(t: &str) -> Option<u64> {
    // "Routes:         10000 imported, 0 exported, ..."
    let line = t.lines().find(|l| l.trim_start().starts_with("Routes:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Marker withdrawal at the injector -> FIB delta acknowledged by cer-dataplane.
fn marker_loss(n: u32) -> Result<Value> {
    let mut r = routes(n, &["65000:1009"], Some(200));
    r.push(BulkRoute {
        prefix: "10.255.0.9".parse().unwrap(),
        len: 32,
        next_hop: "10.10.0.9".parse().unwrap(),
        as_path: vec![],
        local_pref: None,
        communities: vec!["65000:999".into(), "65000:1009".into()],
    });
    let p = pair(&r)?;
    let dir = &p.scratch.path;
    // The dataplane (one LAN port on a veth pair inside the receiver namespace).
    let mut ft = FeedTarget::start(&p.rcv_ns, dir, "10.200.0.1/24")?;
    let (cfg, sock) = control_config(
        dir,
        "rcv",
        "10.128.0.0/10",
        &format!("[dataplane]\nfeed_socket = \"{}\"\ninitial_sync_delay_secs = 1\n[[tunnel]]\nid = 9\nremote = \"10.10.0.9\"\n", ft.feed.display()),
    )?;
    let mut ctl = p.rcv_ns.spawn(
        &[
            bin("cer-control").to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
        ],
        &dir.join("rcv.log"),
    )?;
    let endpoints = |admin_sock: &Path| -> u64 {
        cer_e2e::admin(admin_sock, "snapshot")
            .ok()
            .and_then(|v| v["endpoints"].as_u64())
            .unwrap_or(0)
    };
    let loaded = wait_count(
        "dataplane loaded",
        u64::from(n),
        Duration::from_secs(180),
        || endpoints(&ft.admin),
    )?;
    let before = cerctl_json(&sock, &["show", "status"])?;
    let deltas_before = before["feed"]["deltas"].as_u64().unwrap_or(0);
    let t0 = Instant::now();
    p.gobgp.del_route("10.255.0.9/32")?;
    let start = Instant::now();
    while endpoints(&ft.admin) != 0 {
        if start.elapsed() > Duration::from_secs(30) {
            bail!(
                "dataplane still has {} endpoints after the marker withdrawal ({}); cer-control fib {}; markers at cer-control: {}; marker at gobgpd: {:?}",
                endpoints(&ft.admin),
                cer_e2e::admin(&ft.admin, "fib").map(|f| f["endpoints"].to_string()).unwrap_or_default(),
                cerctl_json(&sock, &["show", "fib"]).map(|f| f["entries"].to_string()).unwrap_or_default(),
                cerctl_json(&sock, &["show", "markers"]).unwrap_or_default(),
                p.gobgp.lookup("10.255.0.9/32").map(|r| r.len())
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let wall = t0.elapsed();
    // The feed batches what is queued; wait for the last ack to be recorded.
    std::thread::sleep(Duration::from_millis(200));
    let st = cerctl_json(&sock, &["show", "status"])?;
    let us = st["feed"]["last_change_to_ack_us"]
        .as_u64()
        .context("feed latency")?;
    ctl.terminate(Duration::from_secs(5));
    ft.proc.terminate(Duration::from_secs(5));
    Ok(json!({
        "endpoints": n,
        "initial_load_secs": loaded.as_secs_f64(),
        "marker_update_to_dataplane_ack_ms": us as f64 / 1000.0,
        "wall_from_gobgp_cli_to_empty_fib_ms": wall.as_secs_f64() * 1000.0,
        "feed_deltas": st["feed"]["deltas"].as_u64().unwrap_or(0) - deltas_before,
    }))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut learn_rows = Vec::new();
    println!(
        "{:>8} {:<12} {:>14} {:>22} {:>10} {:>8}",
        "paths", "receiver", "established s", "learned after estab. s", "total s", "CPU s"
    );
    let mut summary = Vec::new();
    for &n in &args.counts {
        let mut runs: Vec<Vec<(Duration, Duration, Duration)>> =
            vec![Vec::new(); args.receivers.len()];
        for _ in 0..args.runs.max(1) {
            for (i, r) in args.receivers.iter().enumerate() {
                let t = learn(r, n).with_context(|| format!("{r} learning {n}"))?;
                let after = t.all.saturating_sub(t.established);
                println!(
                    "{:>8} {:<12} {:>14.3} {:>22.3} {:>10.3} {:>8.2}",
                    n,
                    r,
                    t.established.as_secs_f64(),
                    after.as_secs_f64(),
                    t.all.as_secs_f64(),
                    t.cpu.as_secs_f64()
                );
                learn_rows.push(json!({
                    "paths": n, "receiver": r,
                    "established_secs": t.established.as_secs_f64(),
                    "learned_after_established_secs": after.as_secs_f64(),
                    "total_secs": t.all.as_secs_f64(),
                    "cpu_secs": t.cpu.as_secs_f64(),
                }));
                runs[i].push((after, t.cpu, t.all));
            }
        }
        for (i, r) in args.receivers.iter().enumerate() {
            let v = &mut runs[i];
            v.sort();
            let (after, cpu, _) = v[v.len() / 2];
            let min = v[0].0;
            let max = v[v.len() - 1].0;
            summary.push(json!({
                "paths": n, "receiver": r, "runs": v.len(),
                "median_learned_after_established_secs": after.as_secs_f64(),
                "min_secs": min.as_secs_f64(), "max_secs": max.as_secs_f64(),
                "median_run_cpu_secs": cpu.as_secs_f64(),
            }));
        }
    }
    println!();
    println!(
        "{:>8} {:<12} {:>5} {:>28} {:>18} {:>14}",
        "paths", "receiver", "runs", "median learned after estab. s", "min-max s", "CPU s (median)"
    );
    for row in &summary {
        println!(
            "{:>8} {:<12} {:>5} {:>28.3} {:>18} {:>14.2}",
            row["paths"].as_u64().unwrap_or(0),
            row["receiver"].as_str().unwrap_or(""),
            row["runs"].as_u64().unwrap_or(0),
            row["median_learned_after_established_secs"]
                .as_f64()
                .unwrap_or(0.0),
            format!(
                "{:.3}-{:.3}",
                row["min_secs"].as_f64().unwrap_or(0.0),
                row["max_secs"].as_f64().unwrap_or(0.0)
            ),
            row["median_run_cpu_secs"].as_f64().unwrap_or(0.0)
        );
    }
    let marker = marker_loss(args.marker_endpoints)?;
    println!("marker loss: {marker}");
    if let Some(p) = args.json {
        std::fs::write(
            p,
            serde_json::to_string_pretty(
                &json!({"learn": learn_rows, "summary": summary, "marker_loss": marker}),
            )?,
        )?;
    }
    Ok(())
}
