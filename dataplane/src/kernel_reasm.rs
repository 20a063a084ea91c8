//! The kernel's IPv4 reassembly in front of `net_af_packet` ports, made
//! bounded and visible. DPDK 22.11's af_packet PMD always joins its sockets
//! to a fanout group with `PACKET_FANOUT_FLAG_DEFRAG` (no devarg turns it
//! off; a socket cannot leave or change its group), so the kernel
//! reassembles every IPv4 fragment before the dataplane sees it, in the
//! network namespace's fragment memory (`net.ipv4.ipfrag_high_thresh`, 4 MiB
//! by default). Above that threshold the kernel refuses new datagrams until
//! queues expire (`net.ipv4.ipfrag_time`, 30 s by default): a flood of
//! incomplete datagrams black-holes valid fragmented traffic. The dataplane
//! never sees those fragments, so no counter of ours can move.
//!
//! Here: the namespace's reassembly counters (`/proc/net/snmp`, `Ip:`
//! ReasmReqds/ReasmOKs/ReasmFails/ReasmTimeout) and fragment memory
//! (`/proc/net/sockstat`, `FRAG:`), read by the manager once a second and
//! shown on every af_packet port in `show ports`, with a warning logged when
//! the kernel fails reassemblies; and `ipfrag_time` set for the namespace
//! while the dataplane runs (`dataplane.kernel_reassembly_secs`), restored
//! at exit, which bounds how long a flood's effect outlasts it.

use serde::Serialize;
use std::path::{Path, PathBuf};

/// The namespace's kernel reassembly, as `/proc` shows it. Counters are
/// since the namespace was created (the kernel's own reassembly for its
/// TAP-side traffic is in them too).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct KernelReassembly {
    /// Always "netns": the numbers belong to the network namespace, shared
    /// by every af_packet port in it.
    pub scope: &'static str,
    /// Fragments the kernel took in for reassembly (ReasmReqds).
    pub fragments: u64,
    /// Datagrams it completed (ReasmOKs).
    pub reassembled: u64,
    /// Reassembly failures (ReasmFails): fragments dropped because the
    /// fragment memory was full, queues that timed out, bad fragments.
    /// Every one is a loss the dataplane never sees.
    pub failed: u64,
    /// Queues that timed out (ReasmTimeout).
    pub timeouts: u64,
    /// Fragment memory in use now, and the limit above which the kernel
    /// refuses new datagrams.
    pub memory_bytes: u64,
    pub high_thresh_bytes: u64,
    /// How long an incomplete datagram holds its memory.
    pub timeout_secs: u64,
}

/// Where the namespace's `/proc` files are (a test points it elsewhere).
#[derive(Debug, Clone)]
pub struct ProcFiles {
    pub root: PathBuf,
}

impl Default for ProcFiles {
    fn default() -> Self {
        ProcFiles {
            root: PathBuf::from("/proc"),
        }
    }
}

impl ProcFiles {
    fn read(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.root.join(rel)).ok()
    }

    fn number(&self, rel: &str) -> Option<u64> {
        self.read(rel)?.trim().parse().ok()
    }

    /// The current figures; `None` if `/proc/net/snmp` cannot be read.
    pub fn sample(&self) -> Option<KernelReassembly> {
        let snmp = self.read("net/snmp")?;
        let ip = |name| snmp_field(&snmp, "Ip", name).unwrap_or(0);
        Some(KernelReassembly {
            scope: "netns",
            fragments: ip("ReasmReqds"),
            reassembled: ip("ReasmOKs"),
            failed: ip("ReasmFails"),
            timeouts: ip("ReasmTimeout"),
            memory_bytes: self
                .read("net/sockstat")
                .and_then(|s| frag_memory(&s))
                .unwrap_or(0),
            high_thresh_bytes: self.number(IPFRAG_HIGH_THRESH).unwrap_or(0),
            timeout_secs: self.number(IPFRAG_TIME).unwrap_or(0),
        })
    }
}

pub const IPFRAG_TIME: &str = "sys/net/ipv4/ipfrag_time";
pub const IPFRAG_HIGH_THRESH: &str = "sys/net/ipv4/ipfrag_high_thresh";

/// One field of a `/proc/net/snmp` table: a header line `Ip: A B C` and a
/// value line `Ip: 1 2 3`.
fn snmp_field(text: &str, table: &str, name: &str) -> Option<u64> {
    let prefix = format!("{table}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
    while let (Some(head), Some(values)) = (lines.next(), lines.next()) {
        let at = head.split_whitespace().position(|f| f == name);
        if let Some(at) = at {
            return values.split_whitespace().nth(at)?.parse().ok();
        }
    }
    None
}

/// `FRAG: inuse N memory M` of `/proc/net/sockstat`.
fn frag_memory(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("FRAG:"))?;
    let f: Vec<&str> = line.split_whitespace().collect();
    let at = f.iter().position(|x| *x == "memory")?;
    f.get(at + 1)?.parse().ok()
}

/// `net.ipv4.ipfrag_time` of this namespace, set while it lives and
/// restored on drop.
pub struct FragTimeout {
    path: PathBuf,
    previous: u64,
}

impl FragTimeout {
    /// Sets the namespace's `ipfrag_time` to `secs`; `Ok(None)` when it
    /// already has that value.
    pub fn set(proc: &ProcFiles, secs: u64) -> std::io::Result<Option<FragTimeout>> {
        let path = proc.root.join(IPFRAG_TIME);
        let previous: u64 = std::fs::read_to_string(&path)?
            .trim()
            .parse()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        if previous == secs {
            return Ok(None);
        }
        std::fs::write(&path, secs.to_string())?;
        Ok(Some(FragTimeout { path, previous }))
    }

    pub fn previous(&self) -> u64 {
        self.previous
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FragTimeout {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(&self.path, self.previous.to_string()) {
            log::warn!(
                "restoring {} to {}: {e}",
                self.path.display(),
                self.previous
            );
        }
    }
}

/// Follows the samples and says when the kernel failed reassemblies: at
/// most one warning per `every`.
#[derive(Debug, Default)]
pub struct FailureWatch {
    last: Option<KernelReassembly>,
    warned_at_failed: u64,
    last_warning: Option<std::time::Instant>,
}

impl FailureWatch {
    /// Takes a sample; returns a warning to log, if one is due.
    pub fn observe(
        &mut self,
        s: KernelReassembly,
        now: std::time::Instant,
        every: std::time::Duration,
    ) -> Option<String> {
        let first = self.last.is_none();
        self.last = Some(s);
        if first {
            // Failures before we started are not ours to report.
            self.warned_at_failed = s.failed;
            return None;
        }
        if s.failed <= self.warned_at_failed || self.last_warning.is_some_and(|t| now < t + every) {
            return None;
        }
        let n = s.failed - self.warned_at_failed;
        self.warned_at_failed = s.failed;
        self.last_warning = Some(now);
        Some(format!(
            "kernel reassembly in front of the af_packet ports failed {n} time(s) \
             (ReasmFails {}, {} timed out; fragment memory {} of {} bytes): those fragments \
             never reach the dataplane, and while the memory is full every fragmented datagram \
             is lost for up to {} s (net.ipv4.ipfrag_time)",
            s.failed, s.timeouts, s.memory_bytes, s.high_thresh_bytes, s.timeout_secs
        ))
    }

    pub fn last(&self) -> Option<KernelReassembly> {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    const SNMP: &str = "Ip: Forwarding DefaultTTL InReceives InHdrErrors InAddrErrors ForwDatagrams InUnknownProtos InDiscards InDelivers OutRequests OutDiscards OutNoRoutes ReasmTimeout ReasmReqds ReasmOKs ReasmFails FragOKs FragFails FragCreates OutTransmits
Ip: 2 64 9717 0 0 0 0 0 9717 6438 0 0 7 1500 20 1400 0 0 0 6438
Icmp: InMsgs InErrors
Icmp: 5 0
";

    #[test]
    fn reads_the_namespace_counters_and_memory() {
        let dir = std::env::temp_dir().join(format!("cer-kreasm-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("net")).unwrap();
        std::fs::create_dir_all(dir.join("sys/net/ipv4")).unwrap();
        std::fs::write(dir.join("net/snmp"), SNMP).unwrap();
        std::fs::write(
            dir.join("net/sockstat"),
            "sockets: used 5\nFRAG: inuse 3 memory 4194560\n",
        )
        .unwrap();
        std::fs::write(dir.join(IPFRAG_HIGH_THRESH), "4194304\n").unwrap();
        std::fs::write(dir.join(IPFRAG_TIME), "30\n").unwrap();
        let proc = ProcFiles { root: dir.clone() };
        let s = proc.sample().unwrap();
        assert_eq!(
            (s.fragments, s.reassembled, s.failed, s.timeouts),
            (1500, 20, 1400, 7)
        );
        assert_eq!(
            (s.memory_bytes, s.high_thresh_bytes, s.timeout_secs),
            (4194560, 4194304, 30)
        );
        // ipfrag_time set while the guard lives, restored after.
        {
            let g = FragTimeout::set(&proc, 5).unwrap().unwrap();
            assert_eq!(g.previous(), 30);
            assert_eq!(proc.sample().unwrap().timeout_secs, 5);
            assert!(FragTimeout::set(&proc, 5).unwrap().is_none());
        }
        assert_eq!(proc.sample().unwrap().timeout_secs, 30);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn warns_once_per_interval_about_new_failures_only() {
        let mut w = FailureWatch::default();
        let t0 = Instant::now();
        let every = Duration::from_secs(10);
        let s = |failed| KernelReassembly {
            failed,
            ..Default::default()
        };
        assert!(w.observe(s(100), t0, every).is_none(), "old failures");
        assert!(w
            .observe(s(100), t0 + Duration::from_secs(1), every)
            .is_none());
        let msg = w
            .observe(s(150), t0 + Duration::from_secs(2), every)
            .unwrap();
        assert!(msg.contains("failed 50 time(s)"), "{msg}");
        assert!(w
            .observe(s(160), t0 + Duration::from_secs(3), every)
            .is_none());
        let msg = w
            .observe(s(170), t0 + Duration::from_secs(13), every)
            .unwrap();
        assert!(msg.contains("failed 20 time(s)"), "{msg}");
        assert_eq!(w.last().unwrap().failed, 170);
    }
}
