//! A steady ping that measures an outage: the longest run of unanswered
//! probes and the total lost, from ping's own output.

use crate::{ns_spawn, send_signal, tag, Proc};
use anyhow::{ensure, Result};
use std::path::Path;
use std::time::{Duration, Instant};

/// A steady ping (every `interval`) from `ns` to `dst`; on `stop` the replies
/// tell the longest run of unanswered probes (the outage) and the total lost.
pub struct Probe {
    proc: Proc,
    interval: Duration,
    started: Instant,
    pub dst: String,
}

/// What a probe saw.
#[derive(Clone, Debug)]
pub struct Outage {
    pub sent: u64,
    pub received: u64,
    /// Longest run of consecutive lost probes, times the interval.
    pub longest_gap_ms: u64,
    /// All lost probes, times the interval.
    pub lost_ms: u64,
    /// Whether the last probes were answered (the flow recovered).
    pub recovered: bool,
}

impl std::fmt::Display for Outage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "outage {} ms (longest gap), {} ms lost in total, {}/{} answered{}",
            self.longest_gap_ms,
            self.lost_ms,
            self.received,
            self.sent,
            if self.recovered {
                ""
            } else {
                ", NOT recovered"
            }
        )
    }
}

impl Probe {
    pub fn start(ns: &str, dst: &str, interval: Duration, dir: &Path) -> Result<Probe> {
        let i = format!("{:.3}", interval.as_secs_f64());
        let proc = ns_spawn(
            ns,
            &["ping", "-n", "-i", &i, "-W", "1", dst],
            &dir.join(format!("probe-{dst}-{}.log", tag())),
        )?;
        Ok(Probe {
            proc,
            interval,
            started: Instant::now(),
            dst: dst.to_string(),
        })
    }

    /// Received so far (for waiting until the probe flow runs).
    pub fn received(&self) -> u64 {
        parse_ping_seqs(&self.proc.log_text()).len() as u64
    }

    /// Waits until `n` more replies arrive.
    pub fn wait_replies(&self, n: u64, timeout: Duration) -> Result<()> {
        let base = self.received();
        let start = Instant::now();
        while self.received() < base + n {
            ensure!(
                start.elapsed() < timeout,
                "probe to {}: no replies in {timeout:?}:\n{}",
                self.dst,
                self.proc.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Stops ping (SIGINT: it prints its summary) and measures.
    pub fn stop(mut self) -> Outage {
        send_signal(self.proc.pid(), libc::SIGINT);
        std::thread::sleep(Duration::from_millis(200));
        self.proc.terminate(Duration::from_secs(3));
        let text = self.proc.log_text();
        let mut seqs = parse_ping_seqs(&text);
        seqs.sort_unstable();
        seqs.dedup();
        let transmitted = text
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or_else(|| {
                (self.started.elapsed().as_secs_f64() / self.interval.as_secs_f64()) as u64
            });
        outage_from(&seqs, transmitted, self.interval)
    }
}

/// icmp_seq of every echo reply in ping's output.
pub fn parse_ping_seqs(text: &str) -> Vec<u64> {
    text.lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("icmp_seq="))
                .and_then(|s| s.parse().ok())
        })
        .collect()
}

/// The outage from the sorted, deduplicated replied sequence numbers (ping
/// starts at 1) out of `sent` probes. Probes sent in the last second before
/// ping stopped may still be in flight: unanswered ones there are not lost.
pub fn outage_from(seqs: &[u64], sent: u64, interval: Duration) -> Outage {
    let ms = interval.as_millis() as u64;
    let in_flight = 1000 / ms.max(1);
    let mut longest = 0u64;
    let mut lost = 0u64;
    let mut prev = 0u64;
    for &s in seqs {
        let gap = s - prev - 1;
        longest = longest.max(gap);
        lost += gap;
        prev = s;
    }
    let tail = sent.saturating_sub(prev).saturating_sub(in_flight);
    longest = longest.max(tail);
    lost += tail;
    Outage {
        sent,
        received: seqs.len() as u64,
        longest_gap_ms: longest * ms,
        lost_ms: lost * ms,
        recovered: tail == 0 && !seqs.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outage_counts_the_longest_gap() {
        let seqs: Vec<u64> = (1..=10).chain(21..=60).collect();
        let o = outage_from(&seqs, 80, Duration::from_millis(50));
        // 80 sent, the last 20 (1 s) may be in flight: gap 11..=20 only.
        assert_eq!(o.longest_gap_ms, 500);
        assert_eq!(o.lost_ms, 500);
        assert!(o.recovered);
        let dead: Vec<u64> = (1..=10).collect();
        let o = outage_from(&dead, 80, Duration::from_millis(50));
        assert!(!o.recovered);
        assert_eq!(o.longest_gap_ms, 50 * 50);
    }

    #[test]
    fn ping_lines() {
        let t = "PING 10.0.0.1 (10.0.0.1) 56(84) bytes of data.\n64 bytes from 10.0.0.1: icmp_seq=1 ttl=64 time=0.05 ms\n64 bytes from 10.0.0.1: icmp_seq=3 ttl=64 time=0.05 ms\n";
        assert_eq!(parse_ping_seqs(t), vec![1, 3]);
    }
}
