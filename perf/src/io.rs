//! Kernel-free DPDK-to-DPDK benchmark (`perf/run-io` drives it): a
//! generator on one core and the engine under test busy-polling the other,
//! joined by two memif links, with no kernel on the path. For each engine
//! (CER, the testpmd io ceiling, OVS-DPDK), case (forward at the /32 table
//! size, encap and decap per transport) and frame mix (64 B, IMIX, 1400 B):
//! the maximum delivered rate, the no-drop rate (RFC 2544 binary search,
//! zero loss over a trial) and the engine's busy cycles per packet.
//!
//! `cer-bench-io run --json out.json [--engines cer,ovs,ceiling] [--cases ...] [--frames 64,imix,1400]`
//! `cer-bench-io gen --setup FILE` is the generator process `run` starts.

#[path = "io/engines.rs"]
mod engines;
#[path = "io/frames.rs"]
mod frames;
#[path = "io/gen.rs"]
mod gen;
#[path = "io/search.rs"]
mod search;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use engines::{Bench, Ceiling, Cer, Engine, EngineKind, Memory, Ovs};
use frames::{Case, FrameMix};
use gen::{GenSetup, Reply, Request, TrialResult};
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Set by SIGINT/SIGTERM: the run stops at the next trial and cleans up
/// (processes by PID, sockets, OVS database, namespace) instead of dying
/// with them still running.
static STOP: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();

fn interrupted() -> Result<()> {
    if STOP.get().is_some_and(|s| s.load(Ordering::Relaxed)) {
        bail!("interrupted");
    }
    Ok(())
}

#[derive(Parser)]
#[command(about = "Kernel-free DPDK benchmark: CER vs the testpmd ceiling vs OVS-DPDK over memif")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Measure and write the JSON report.
    Run(RunArgs),
    /// The generator process (started by `run`).
    Gen {
        #[arg(long)]
        setup: PathBuf,
    },
}

#[derive(Parser, Clone)]
struct RunArgs {
    /// Engines to measure, in order.
    #[arg(long, value_delimiter = ',', default_value = "ceiling,cer,ovs")]
    engines: Vec<String>,
    /// Cases (forward, ipip-encap, gre-decap, ...); default every case each engine supports.
    #[arg(long, value_delimiter = ',')]
    cases: Vec<String>,
    /// Frame mixes: 64, imix, 1400.
    #[arg(long, value_delimiter = ',', default_value = "64,imix,1400")]
    frames: Vec<String>,
    /// /32 entries in CER's exact-match table (destinations are drawn from all of them).
    #[arg(long, default_value_t = 1_000_000)]
    entries: usize,
    /// Seconds of the flat-out trial (maximum rate, cycles per packet).
    #[arg(long, default_value_t = 5.0)]
    max_secs: f64,
    /// Maximum trials per measurement (the median is reported, with the range).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Seconds of each no-drop-rate trial (RFC 2544: zero loss over the trial).
    #[arg(long, default_value_t = 10.0)]
    ndr_secs: f64,
    /// Stop the no-drop search when the bracket is this fraction of the rate.
    #[arg(long, default_value_t = 0.01)]
    resolution: f64,
    /// Trials per no-drop search at most (0: skip the search).
    #[arg(long, default_value_t = 8)]
    ndr_trials: usize,
    /// CPU the engine under test polls on.
    #[arg(long, default_value_t = 1)]
    dut_cpu: u32,
    /// CPU of the generator.
    #[arg(long, default_value_t = 0)]
    gen_cpu: u32,
    /// Run every DPDK process with --no-huge (default: hugepages).
    #[arg(long)]
    no_huge: bool,
    #[arg(long)]
    json: PathBuf,
    /// log2 of the memif ring size the generator (the memif client) sets up
    /// for both links (DPDK's default is 10: 1024 slots). A deeper ring rides
    /// out a longer stall of the engine's core before it drops.
    #[arg(long, default_value_t = 10)]
    ring_log2: u8,
    /// Head-to-head rounds before the matrix: each round starts every engine
    /// in turn and takes one maximum trial of forward and GRE encap at 64 B,
    /// so the engines of a round are measured within a minute of each other
    /// (the shared host's speed drifts over minutes). 0: none.
    #[arg(long, default_value_t = 0)]
    head_to_head: usize,
    /// Skip the full matrix (with --head-to-head: only the rounds).
    #[arg(long)]
    no_matrix: bool,
    /// Keep the work directory (configs, logs) for inspection.
    #[arg(long)]
    keep: bool,
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Gen { setup } => gen::main(&setup),
        Cmd::Run(a) => run(a),
    };
    if let Err(e) = r {
        eprintln!("cer-bench-io: error: {e:#}");
        std::process::exit(1);
    }
}

/// The generator process and its request/reply pipe.
struct GenProc {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    log: PathBuf,
}

impl GenProc {
    fn start(bench: &Bench, queues: u16, tag: &str) -> Result<GenProc> {
        let setup = GenSetup {
            eal: bench.gen_eal(),
            queues,
            mbufs: 32767,
        };
        let path = bench.dir.join(format!("gen-{tag}.json"));
        std::fs::write(&path, serde_json::to_string(&setup)?)?;
        let log = bench.dir.join(format!("gen-{tag}.log"));
        let mut child = Command::new(std::env::current_exe()?)
            .args(["gen", "--setup", path.to_str().unwrap_or_default()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting the generator")?;
        let stdin = child.stdin.take().context("generator stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("generator stdout")?);
        let mut g = GenProc {
            child,
            stdin,
            stdout,
            log,
        };
        match g.read()? {
            Reply::Ready { .. } => Ok(g),
            other => bail!("generator: {other:?}"),
        }
    }

    fn read(&mut self) -> Result<Reply> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!(
                "the generator exited: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
        serde_json::from_str(&line).with_context(|| format!("generator reply {line:?}"))
    }

    fn ask(&mut self, r: &Request) -> Result<Reply> {
        serde_json::to_writer(&mut self.stdin, r)?;
        self.stdin.write_all(b"\n")?;
        self.stdin.flush()?;
        match self.read()? {
            Reply::Error { message } => bail!("generator: {message}"),
            other => Ok(other),
        }
    }

    fn trial(&mut self, rate_pps: f64, secs: f64) -> Result<TrialResult> {
        interrupted()?;
        match self.ask(&Request::Trial {
            rate_pps,
            secs,
            drain_ms: 200,
        })? {
            Reply::Trial(t) => Ok(t),
            other => bail!("generator: unexpected {other:?}"),
        }
    }
}

impl Drop for GenProc {
    fn drop(&mut self) {
        let _ = serde_json::to_writer(&mut self.stdin, &Request::Quit);
        let _ = self.stdin.write_all(b"\n");
        let _ = self.stdin.flush();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One measured (engine, case, frame mix).
fn measure(
    a: &RunArgs,
    e: &mut dyn Engine,
    g: &mut GenProc,
    case: Case,
    mix: FrameMix,
) -> Result<serde_json::Value> {
    let (lan_mac, wan_mac) = e.macs();
    let wg = match case.transport() {
        Some(frames::Transport::Wireguard) => e.wg_keys(),
        _ => None,
    };
    g.ask(&Request::Load {
        case,
        mix,
        lan_mac,
        wan_mac,
        entries: a.entries,
        wg,
    })?;
    let warm = match g.ask(&Request::Warm { timeout_ms: 8000 })? {
        Reply::Warm { received, .. } => received,
        other => bail!("generator: unexpected {other:?}"),
    };
    if warm == 0 {
        bail!("nothing came back while warming up (8 s)");
    }
    // The maximum, `repeat` times: the median trial is reported (the host is
    // shared, a single trial can land in someone else's burst), with the range.
    let mut maxes = Vec::new();
    for _ in 0..a.repeat.max(1) {
        e.begin()?;
        let t = g.trial(0.0, a.max_secs)?;
        let c = e.end()?;
        maxes.push((t.received as f64 / t.secs, t, c));
    }
    maxes.sort_by(|x, y| x.0.total_cmp(&y.0));
    let spread = (maxes[0].0, maxes[maxes.len() - 1].0);
    let (delivered, max, cycles) = maxes.swap_remove(maxes.len() / 2);
    let offered = max.attempted as f64 / max.secs;
    let (ndr, steps) = if a.ndr_trials == 0 {
        (f64::NAN, Vec::new())
    } else {
        search::no_drop_rate(offered, delivered, a.resolution, a.ndr_trials, |rate| {
            // Only a passive counter read here: testpmd's statistics reset
            // (`begin`) stops and restarts its forwarding, which loses ~10 ms
            // of traffic per trial: fatal for a zero-loss search.
            let s0 = e.stalls();
            let r = g.trial(rate, a.ndr_secs)?;
            let s = search::Step {
                engine_stalls: s0.zip(e.stalls()).map(|(a, b)| b.saturating_sub(a)),
                ..search::Step::of(rate, &r)
            };
            eprintln!(
                "    {}/{}/{}: {:.3} Mpps offered -> {} lost{}{}",
                e.kind().name(),
                case,
                mix.name(),
                rate / 1e6,
                s.lost,
                if s.behind { " (generator behind)" } else { "" },
                s.engine_stalls
                    .map(|n| format!(
                        ", engine stalls {n}, generator late up to {:.0} us",
                        s.lag_max_us
                    ))
                    .unwrap_or_default()
            );
            Ok(s)
        })?
    };
    let bits = mix.mean_bytes() * 8.0;
    let row = json!({
        "case": case.name(),
        "frame": mix.name(),
        "engine": e.kind().name(),
        "max_mpps": delivered / 1e6,
        "max_mpps_range": [spread.0 / 1e6, spread.1 / 1e6],
        "ndr_mpps": if ndr.is_nan() { serde_json::Value::Null } else { json!(ndr / 1e6) },
        "gbps": delivered * bits / 1e9,
        "ndr_gbps": if ndr.is_nan() { serde_json::Value::Null } else { json!(ndr * bits / 1e9) },
        "cycles_per_packet": cycles.per_packet,
        "engine_busy": cycles.busy,
        "offered_mpps": offered / 1e6,
        "refused_by_engine": max.refused,
        "unexpected_frames": max.unexpected,
        "unexpected_sample": max.unexpected_sample,
        "wg_handshakes": max.wg_handshakes,
        "generator_behind": max.behind,
        "ndr_steps": steps,
    });
    eprintln!(
        "  {:<8} {:<16} {:<5} max {:>7.3} Mpps ({:>6.2} Gbps) offered {:>7.3}  ndr {:>7}  cycles/pkt {:>7}",
        e.kind().name(),
        case.name(),
        mix.name(),
        delivered / 1e6,
        delivered * bits / 1e9,
        offered / 1e6,
        if ndr.is_nan() { "-".to_string() } else { format!("{:.3}", ndr / 1e6) },
        cycles
            .per_packet
            .map(|c| format!("{c:.0}"))
            .unwrap_or("-".into())
    );
    Ok(row)
}

fn run(a: RunArgs) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("needs root (DPDK memif, OVS, network namespaces)");
    }
    let mixes: Vec<FrameMix> = a
        .frames
        .iter()
        .map(|f| {
            FrameMix::parse(f).with_context(|| format!("--frames: unknown '{f}' (64, imix, 1400)"))
        })
        .collect::<Result<_>>()?;
    let only: Vec<Case> = a
        .cases
        .iter()
        .map(|c| Case::parse(c).with_context(|| format!("--cases: unknown '{c}'")))
        .collect::<Result<_>>()?;
    let kinds: Vec<EngineKind> = a
        .engines
        .iter()
        .map(|e| {
            EngineKind::parse(e)
                .with_context(|| format!("--engines: unknown '{e}' (cer, ovs, ceiling)"))
        })
        .collect::<Result<_>>()?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let _ = STOP.set(stop);
    let dir = engines::work_dir()?;
    if !(8..=14).contains(&a.ring_log2) {
        bail!("--ring-log2 {}: memif takes 8..=14", a.ring_log2);
    }
    let bench = Bench {
        ring_log2: a.ring_log2,
        dir: dir.clone(),
        dut_cpu: a.dut_cpu,
        gen_cpu: a.gen_cpu,
        memory: if a.no_huge {
            Memory::NoHuge
        } else {
            Memory::Hugepages
        },
        entries: a.entries,
    };
    let started = Instant::now();
    let h2h = head_to_head(&a, &bench, &kinds)?;
    let kinds = if a.no_matrix { Vec::new() } else { kinds };
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    let mut drops = serde_json::Map::new();
    for kind in &kinds {
        let cases: Vec<Case> = kind
            .cases()
            .into_iter()
            .filter(|c| only.is_empty() || only.contains(c))
            .collect();
        if cases.is_empty() {
            continue;
        }
        eprintln!(
            "== {} ({} cases x {} frame mixes)",
            kind.name(),
            cases.len(),
            mixes.len()
        );
        let mut engine: Box<dyn Engine> = match kind {
            EngineKind::Cer => Box::new(Cer::start(&bench)?),
            EngineKind::Ceiling => Box::new(Ceiling::start(&bench)?),
            EngineKind::Ovs => Box::new(Ovs::start(&bench)?),
        };
        let mut g = GenProc::start(&bench, engine.gen_queues(), kind.name())?;
        for &case in &cases {
            let t = Instant::now();
            engine
                .prepare(case)
                .with_context(|| format!("{}: preparing {case}", kind.name()))?;
            eprintln!("  {case}: prepared in {:.1} s", t.elapsed().as_secs_f64());
            for &mix in &mixes {
                match measure(&a, engine.as_mut(), &mut g, case, mix) {
                    Ok(row) => rows.push(row),
                    Err(e) if interrupted().is_err() => return Err(e),
                    Err(e) => {
                        let msg = format!("{}/{case}/{}: {e:#}", kind.name(), mix.name());
                        eprintln!("  FAILED {msg}");
                        failures.push(msg);
                    }
                }
            }
        }
        match engine.drop_counters() {
            Ok(d) if !d.is_empty() => {
                drops.insert(kind.name().into(), json!(d));
            }
            Ok(_) => {}
            Err(e) => eprintln!("  {}: drop counters: {e:#}", kind.name()),
        }
        drop(g);
        drop(engine);
    }
    // Drift check: the ceiling's forward 64 B maximum once more at the end. A
    // shared host changes under a long run; if the two ceilings differ, the
    // ratios between engines measured far apart carry that error.
    let mut drift = serde_json::Value::Null;
    let first_ceiling = rows
        .iter()
        .find(|r| r["engine"] == "ceiling" && r["case"] == "forward" && r["frame"] == "64")
        .and_then(|r| r["max_mpps"].as_f64());
    if let (Some(first), true) = (first_ceiling, kinds.len() > 1) {
        eprintln!("== drift check: the ceiling's forward 64 B maximum again");
        let again = (|| -> Result<f64> {
            let mut e = Ceiling::start(&bench)?;
            let mut g = GenProc::start(&bench, e.gen_queues(), "drift")?;
            let drift_args = RunArgs {
                ndr_trials: 0,
                ..a.clone()
            };
            let row = measure(&drift_args, &mut e, &mut g, Case::Forward, FrameMix::F64)?;
            row["max_mpps"].as_f64().context("drift row")
        })();
        match again {
            Ok(end) => {
                eprintln!(
                    "  ceiling forward 64 B: {first:.3} Mpps at the start, {end:.3} at the end"
                );
                drift = json!({"ceiling_forward_64_start_mpps": first, "ceiling_forward_64_end_mpps": end});
            }
            Err(e) => failures.push(format!("drift check: {e:#}")),
        }
    }
    if let Ok(d) = std::fs::read_dir(&dir) {
        for f in d.flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.ends_with(".log") || name.ends_with(".err") {
                let text = std::fs::read_to_string(f.path()).unwrap_or_default();
                if text.contains("panicked") {
                    failures.push(format!(
                        "{name}: a panic: {}",
                        text.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
                    ));
                }
            }
        }
    }
    let out = json!({
        "rows": rows,
        "failures": failures,
        "engine_drops": drops,
        "drift": drift,
        "head_to_head": h2h,
        "entries": a.entries,
        "max_secs": a.max_secs,
        "ndr_secs": a.ndr_secs,
        "resolution": a.resolution,
        "dut_cpu": a.dut_cpu,
        "gen_cpu": a.gen_cpu,
        "memory": if a.no_huge { "no-huge" } else { "hugepages" },
        "ring_log2": a.ring_log2,
        "elapsed_secs": started.elapsed().as_secs(),
    });
    write_json(&a.json, &out)?;
    if !a.keep {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("kept {}", dir.display());
    }
    if !failures.is_empty() {
        bail!(
            "{} measurements failed: {}",
            failures.len(),
            failures.join("; ")
        );
    }
    Ok(())
}

/// `--head-to-head` rounds: per round, per engine, one maximum trial of each
/// target case at 64 B, each engine started fresh.
fn head_to_head(a: &RunArgs, bench: &Bench, kinds: &[EngineKind]) -> Result<serde_json::Value> {
    let cases = [Case::Forward, Case::Encap(frames::Transport::Gre)];
    let one = RunArgs {
        ndr_trials: 0,
        repeat: 1,
        ..a.clone()
    };
    let mut rounds = Vec::new();
    for round in 0..a.head_to_head {
        eprintln!("== head-to-head round {}/{}", round + 1, a.head_to_head);
        let mut results = Vec::new();
        for kind in kinds {
            let mut engine: Box<dyn Engine> = match kind {
                EngineKind::Cer => Box::new(Cer::start(bench)?),
                EngineKind::Ceiling => Box::new(Ceiling::start(bench)?),
                EngineKind::Ovs => Box::new(Ovs::start(bench)?),
            };
            let mut g =
                GenProc::start(bench, engine.gen_queues(), &format!("h2h-{}", kind.name()))?;
            for &case in &cases {
                // The ceiling's forward row bounds encap too (inner frames in).
                if !kind.cases().contains(&case) {
                    continue;
                }
                engine.prepare(case)?;
                let row = measure(&one, engine.as_mut(), &mut g, case, FrameMix::F64)?;
                results.push(row);
            }
        }
        rounds.push(json!({ "round": round + 1, "rows": results }));
    }
    Ok(json!(rounds))
}

fn write_json(path: &Path, v: &serde_json::Value) -> Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(v)?)
        .with_context(|| format!("writing {}", path.display()))
}
