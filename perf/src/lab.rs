//! UDP round-trip prober for `perf/run-lab`: `echo` reflects datagrams in one workload namespace,
//! `probe` sends one datagram at a time from another and records every round trip, `summarize`
//! merges sample files into an HDR histogram (p50/p90/p99/p99.9/max) as JSON.

use std::fs;
use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use serde_json::json;

/// Percentiles written to the summary, for the report's table and its plot.
const PERCENTILES: [f64; 13] = [
    0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0,
];
/// Histogram range: 1 us to 60 s, 3 significant digits (0.1% value resolution).
const LOWEST_NS: u64 = 1_000;
const HIGHEST_NS: u64 = 60_000_000_000;
const SIGFIGS: u8 = 3;

#[derive(Parser)]
#[command(
    name = "cer-bench-lab",
    about = "UDP round-trip prober for perf/run-lab (echo, probe, summarize)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Reflect every datagram to its sender until killed (or --max-seconds pass).
    Echo {
        #[arg(long)]
        bind: SocketAddr,
        #[arg(long, default_value_t = 1800)]
        max_seconds: u64,
    },
    /// Send one datagram, wait for its echo, record the round trip; repeat.
    Probe {
        /// Local address (the workload's /32) to send from.
        #[arg(long)]
        bind: SocketAddr,
        #[arg(long)]
        target: SocketAddr,
        /// Send interval; a probe whose reply comes later is followed at once by the next.
        #[arg(long, default_value_t = 1000)]
        interval_us: u64,
        /// Stop after this many probes (0: until --stop-file exists or --max-seconds pass).
        #[arg(long, default_value_t = 0)]
        count: u64,
        /// Stop once this file exists (checked before every probe).
        #[arg(long)]
        stop_file: Option<PathBuf>,
        #[arg(long, default_value_t = 600)]
        max_seconds: u64,
        /// A probe without a reply within this time counts as lost.
        #[arg(long, default_value_t = 500)]
        timeout_ms: u64,
        /// UDP payload bytes (at least 8: the sequence number).
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Round trips in ns, one per line.
        #[arg(long)]
        samples: PathBuf,
        /// Probe counters (sent, received, lost, late) as JSON.
        #[arg(long)]
        json: PathBuf,
    },
    /// Merge sample files into one HDR histogram and write its percentiles as JSON.
    Summarize {
        #[arg(long)]
        json: PathBuf,
        /// Probe counter files to add up (sent, lost, late).
        #[arg(long = "counters")]
        counters: Vec<PathBuf>,
        samples: Vec<PathBuf>,
    },
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Echo { bind, max_seconds } => echo(bind, Duration::from_secs(max_seconds)),
        Cmd::Probe {
            bind,
            target,
            interval_us,
            count,
            stop_file,
            max_seconds,
            timeout_ms,
            size,
            samples,
            json,
        } => {
            let plan = ProbePlan {
                bind,
                target,
                interval: Duration::from_micros(interval_us),
                count,
                stop_file,
                max: Duration::from_secs(max_seconds),
                timeout: Duration::from_millis(timeout_ms),
                size: size.max(8),
            };
            let run = probe(&plan)?;
            let mut f = fs::File::create(&samples)
                .with_context(|| format!("creating {}", samples.display()))?;
            let mut text = String::with_capacity(run.rtts_ns.len() * 8);
            for v in &run.rtts_ns {
                text.push_str(&v.to_string());
                text.push('\n');
            }
            f.write_all(text.as_bytes())?;
            let counters = json!({
                "sent": run.sent,
                "received": run.rtts_ns.len(),
                "lost": run.lost,
                "late_replies": run.late,
                "interval_us": interval_us,
                "timeout_ms": timeout_ms,
                "payload_bytes": plan.size,
                "seconds": run.seconds,
            });
            fs::write(&json, serde_json::to_string_pretty(&counters)?)
                .with_context(|| format!("writing {}", json.display()))?;
            Ok(())
        }
        Cmd::Summarize {
            json,
            counters,
            samples,
        } => summarize(&json, &counters, &samples),
    }
}

fn echo(bind: SocketAddr, max: Duration) -> Result<()> {
    let sock = UdpSocket::bind(bind).with_context(|| format!("binding {bind}"))?;
    sock.set_read_timeout(Some(Duration::from_secs(1)))?;
    let start = Instant::now();
    let mut buf = [0u8; 2048];
    while start.elapsed() < max {
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                let _ = sock.send_to(&buf[..n], from);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e).context("echo recv"),
        }
    }
    Ok(())
}

struct ProbePlan {
    bind: SocketAddr,
    target: SocketAddr,
    interval: Duration,
    count: u64,
    stop_file: Option<PathBuf>,
    max: Duration,
    timeout: Duration,
    size: usize,
}

struct ProbeRun {
    rtts_ns: Vec<u64>,
    sent: u64,
    lost: u64,
    late: u64,
    seconds: f64,
}

fn probe(plan: &ProbePlan) -> Result<ProbeRun> {
    let sock = UdpSocket::bind(plan.bind).with_context(|| format!("binding {}", plan.bind))?;
    sock.connect(plan.target)
        .with_context(|| format!("connecting to {}", plan.target))?;
    let mut out = vec![0u8; plan.size];
    let mut inp = [0u8; 2048];
    let mut run = ProbeRun {
        rtts_ns: Vec::new(),
        sent: 0,
        lost: 0,
        late: 0,
        seconds: 0.0,
    };
    let start = Instant::now();
    let mut next = start;
    loop {
        if plan.count > 0 && run.sent >= plan.count {
            break;
        }
        if start.elapsed() >= plan.max {
            break;
        }
        if let Some(f) = &plan.stop_file {
            if Path::new(f).exists() {
                break;
            }
        }
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        next += plan.interval;
        let seq = run.sent;
        out[..8].copy_from_slice(&seq.to_be_bytes());
        let t0 = Instant::now();
        sock.send(&out).context("probe send")?;
        run.sent += 1;
        // Wait for this probe's echo; older (late) echoes are counted and skipped.
        let deadline = t0 + plan.timeout;
        let mut answered = false;
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            sock.set_read_timeout(Some(deadline - now))?;
            match sock.recv(&mut inp) {
                Ok(n) if n >= 8 => {
                    let got = u64::from_be_bytes(inp[..8].try_into().expect("8 bytes"));
                    if got == seq {
                        run.rtts_ns.push(t0.elapsed().as_nanos() as u64);
                        answered = true;
                        break;
                    }
                    run.late += 1;
                }
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                // ICMP unreachable (no route yet, echo not bound): a lost probe.
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => break,
                Err(e) => return Err(e).context("probe recv"),
            }
        }
        if !answered {
            run.lost += 1;
            // Do not burst after a long wait: restart the schedule from now.
            next = Instant::now() + plan.interval;
        } else if next < Instant::now() {
            next = Instant::now();
        }
    }
    run.seconds = start.elapsed().as_secs_f64();
    Ok(run)
}

fn summarize(json_path: &Path, counters: &[PathBuf], samples: &[PathBuf]) -> Result<()> {
    let mut h = Histogram::<u64>::new_with_bounds(LOWEST_NS, HIGHEST_NS, SIGFIGS)
        .context("histogram bounds")?;
    for p in samples {
        let text = fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        for line in text.lines().filter(|l| !l.is_empty()) {
            let v: u64 = line
                .parse()
                .with_context(|| format!("{}: bad sample '{line}'", p.display()))?;
            h.saturating_record(v.clamp(LOWEST_NS, HIGHEST_NS));
        }
    }
    let (mut sent, mut lost, mut late) = (0u64, 0u64, 0u64);
    for c in counters {
        let v: serde_json::Value = serde_json::from_str(
            &fs::read_to_string(c).with_context(|| format!("reading {}", c.display()))?,
        )?;
        sent += v["sent"].as_u64().unwrap_or(0);
        lost += v["lost"].as_u64().unwrap_or(0);
        late += v["late_replies"].as_u64().unwrap_or(0);
    }
    if h.is_empty() {
        bail!("no round trips in {samples:?}: every probe was lost");
    }
    let us = |ns: u64| ns as f64 / 1000.0;
    let curve: Vec<_> = PERCENTILES
        .iter()
        .map(|&p| json!({"percentile": p, "us": us(h.value_at_percentile(p))}))
        .collect();
    let out = json!({
        "samples": h.len(),
        "sent": sent,
        "lost": lost,
        "late_replies": late,
        "min_us": us(h.min()),
        "mean_us": h.mean() / 1000.0,
        "p50_us": us(h.value_at_quantile(0.50)),
        "p90_us": us(h.value_at_quantile(0.90)),
        "p99_us": us(h.value_at_quantile(0.99)),
        "p99_9_us": us(h.value_at_quantile(0.999)),
        "max_us": us(h.max()),
        "curve": curve,
        "histogram": format!("hdrhistogram 1us..60s, {SIGFIGS} significant digits"),
    });
    fs::write(json_path, serde_json::to_string_pretty(&out)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    Ok(())
}
