//! The ceiling: `dpdk-testpmd --forward-mode=io` in the engine's place
//! (receives and transmits on the same memif links, touches nothing), driven
//! over its interactive prompt; cycles per packet from `--record-core-cycles`.

use super::{remove_runtime_dir, Bench, Cycles, Engine, EngineKind};
use crate::frames::{Case, GEN_LAN_MAC, GEN_WAN_MAC};
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `dpdk-testpmd --forward-mode=io`: the PMD's own ceiling.
pub struct Ceiling {
    bench: Bench,
    child: Option<Child>,
    log: PathBuf,
    stops_seen: usize,
    /// When the measured forwarding started (busy share = its cycles / the wall time).
    started: Option<Instant>,
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
            started: None,
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
        self.say("start")?;
        self.started = Some(Instant::now());
        Ok(())
    }

    fn end(&mut self) -> Result<Cycles> {
        let text = self.stop_stats()?;
        let wall = self.started.take().map(|t| t.elapsed().as_secs_f64());
        self.say("start")?;
        // "CPU cycles/packet=293.12 (total cycles=683774 / total io packets=64) at 2600 MHz Clock"
        let last = text.rsplit("CPU cycles/packet=").next().unwrap_or("");
        let leading = |s: &str| -> Option<f64> {
            s.trim_start()
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect::<String>()
                .parse()
                .ok()
        };
        let after = |key: &str| last.split(key).nth(1).and_then(leading);
        let per_packet = leading(last);
        let total = after("total cycles=");
        let mhz = after(" at ");
        let busy = match (total, mhz, wall) {
            (Some(t), Some(m), Some(w)) if m > 0.0 && w > 0.0 => Some(t / (m * 1e6 * w)),
            _ => None,
        };
        Ok(Cycles { per_packet, busy })
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
