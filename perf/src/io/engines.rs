//! The engines measured in the kernel-free benchmark, each in the DUT's
//! place on the same two memif links (the engine is the memif server):
//! - `cer`: the real `cer-dataplane` (driver = "memif"), its /32 table
//!   loaded through the FIB feed, cycles from its per-core busy counters;
//! - `ceiling`: `dpdk-testpmd` in io forwarding mode (what the PMD moves
//!   with no work done), cycles from `--record-core-cycles`;
//! - `ovs`: OVS-DPDK 3.1 (userspace datapath) doing L3 forwarding (OpenFlow
//!   dec_ttl + MAC rewrite) and GRE encap/decap (native tunneling,
//!   `packet_type=legacy_l3`), cycles from `dpif-netdev/pmd-stats-show`.
//!
//! This file holds what they share (the trait, the bench's sockets and CPUs);
//! each engine lives in its own file. Every process is started there and
//! ended by PID; sockets, the OVS database and the namespace are removed on
//! drop, also after a failure.

use super::frames::{Case, Transport};
use super::gen::WgKeys;
use anyhow::Result;
use serde::Serialize;
use std::path::PathBuf;

#[path = "ceiling.rs"]
mod ceiling;
#[path = "cer.rs"]
mod cer;
#[path = "ovs.rs"]
mod ovs;

pub use ceiling::Ceiling;
pub use cer::Cer;
pub use ovs::Ovs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    Cer,
    Ovs,
    Ceiling,
}

impl EngineKind {
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Cer => "cer",
            EngineKind::Ovs => "ovs",
            EngineKind::Ceiling => "ceiling",
        }
    }

    pub fn parse(s: &str) -> Option<EngineKind> {
        [EngineKind::Cer, EngineKind::Ovs, EngineKind::Ceiling]
            .into_iter()
            .find(|e| e.name() == s)
    }

    /// The cases this engine is measured on. The ceiling moves frames
    /// without looking at them: its forward row is the bound for forward
    /// and encap input (inner frames), its gre-decap row for decap input.
    pub fn cases(self) -> Vec<Case> {
        match self {
            EngineKind::Cer => Case::all(),
            EngineKind::Ovs => vec![
                Case::Forward,
                Case::Encap(Transport::Gre),
                Case::Decap(Transport::Gre),
            ],
            EngineKind::Ceiling => vec![Case::Forward, Case::Decap(Transport::Gre)],
        }
    }
}

/// Memory mode shared by every DPDK process of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Memory {
    Hugepages,
    NoHuge,
}

/// What all engines share: where sockets live, which CPU the engine polls on.
#[derive(Debug, Clone)]
pub struct Bench {
    pub dir: PathBuf,
    pub dut_cpu: u32,
    pub gen_cpu: u32,
    pub memory: Memory,
    pub entries: usize,
    /// log2 of the memif ring size (the client, the generator, sets it).
    pub ring_log2: u8,
}

impl Bench {
    pub fn socket(&self, port: usize) -> PathBuf {
        self.dir
            .join(if port == 0 { "lan.sock" } else { "wan.sock" })
    }

    pub(crate) fn mem_args(&self, mb: u32) -> Vec<String> {
        match self.memory {
            Memory::NoHuge => vec!["--no-huge".into(), "-m".into(), mb.to_string()],
            Memory::Hugepages => vec!["-m".into(), mb.to_string(), "--huge-unlink".into()],
        }
    }

    /// The generator's EAL arguments (memif clients to the engine's sockets).
    pub fn gen_eal(&self) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "cer-bench-io-gen".into(),
            "--lcores".into(),
            format!("0@{}", self.gen_cpu),
            "--no-pci".into(),
            "--no-telemetry".into(),
            "--file-prefix".into(),
            format!("cerio-gen-{}", std::process::id()),
        ];
        a.extend(self.mem_args(1024));
        for p in 0..2 {
            a.push("--vdev".into());
            a.push(format!(
                "net_memif{p},role=client,id=0,socket={},socket-abstract=no,rsize={}",
                self.socket(p).display(),
                self.ring_log2
            ));
        }
        a
    }

    pub(crate) fn remove_sockets(&self) {
        for p in 0..2 {
            let _ = std::fs::remove_file(self.socket(p));
        }
    }
}

/// What the engine's core spent over a trial, as the engine reports it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cycles {
    /// Busy cycles per received packet.
    pub per_packet: Option<f64>,
    /// Share of the core's cycles spent in polls that received packets: near
    /// 1.0 the engine is the bound; well below, the generator is.
    pub busy: Option<f64>,
}

/// An engine in the DUT's place.
pub trait Engine {
    fn kind(&self) -> EngineKind;
    /// The MACs the generator addresses on the LAN and WAN links.
    fn macs(&self) -> ([u8; 6], [u8; 6]);
    /// memif queue pairs the generator must open.
    fn gen_queues(&self) -> u16 {
        1
    }
    /// WireGuard keys for the generator's peer role, if the engine has a tunnel.
    fn wg_keys(&self) -> Option<WgKeys> {
        None
    }
    /// Sets the engine up for `case` (tables, flows).
    fn prepare(&mut self, case: Case) -> Result<()>;
    /// Right before a trial: reset or snapshot the cycle counters.
    fn begin(&mut self) -> Result<()>;
    /// Right after: the engine core's cost over the trial.
    fn end(&mut self) -> Result<Cycles>;
    /// A counter of stalled polls (over 100 µs), read without disturbing the
    /// engine (unlike `begin`/`end`, which restart testpmd's forwarding).
    fn stalls(&self) -> Option<u64> {
        None
    }
    /// Named drop counters over the whole run (non-zero ones), if the engine has them.
    fn drop_counters(&self) -> Result<Vec<(String, u64)>> {
        Ok(Vec::new())
    }
}

/// The directory of a run: sockets, configs, logs (removed at the end
/// unless kept for inspection).
pub fn work_dir() -> Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("cer-io-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// Removes the EAL runtime directory (shared config files, megabytes) a
/// DPDK process this run started left under its own file prefix.
pub(crate) fn remove_runtime_dir(prefix: &str) {
    let _ = std::fs::remove_dir_all(std::path::Path::new("/var/run/dpdk").join(prefix));
}
