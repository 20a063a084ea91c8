//! `cer-dataplane` as the engine under test: two `driver = "memif"` ports
//! (the memif servers), one busy-polling core on the DUT CPU, all five
//! tunnels to the generator's WAN address, its /32 table loaded through the
//! FIB feed per case, busy cycles per packet from its per-core counters.

use super::{Bench, Cycles, Engine, EngineKind, Memory};
use crate::frames::{
    Case, Transport, ENDPOINT_BASE, GEN_LAN_MAC, GEN_WAN_ADDR, GEN_WAN_MAC, GRE_KEY, LAN_ADDR,
    LAN_MAC, WAN_ADDR, WAN_MAC,
};
use crate::gen::WgKeys;
use anyhow::{Context, Result};
use cer_dataplane::tunnel::wireguard::{generate_private_key, public_key_of};
use cer_e2e::{admin, bin, Proc};
use cer_shared::feed::{EndpointAction, FibChange};
use cer_shared::feed_client::FeedClient;
use cer_shared::MacAddr;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

pub struct Cer {
    bench: Bench,
    proc: Option<Proc>,
    admin: PathBuf,
    feed: FeedClient,
    engine_key: String,
    gen_key: String,
    mark: (u64, u64, u64, u64),
}

impl Cer {
    pub fn start(bench: &Bench) -> Result<Cer> {
        bench.remove_sockets();
        let engine_key = generate_private_key();
        let gen_key = generate_private_key();
        let admin = bench.dir.join("cer-admin.sock");
        let feed_sock = bench.dir.join("cer-feed.sock");
        let mac = |m: [u8; 6]| MacAddr(m).to_string();
        let mut tunnels = String::new();
        for t in Transport::ALL {
            tunnels += &format!(
                "\n[[tunnel]]\nid = {}\nkind = \"{}\"\nlocal = \"{WAN_ADDR}\"\nremote = \"{GEN_WAN_ADDR}\"\n",
                t.tunnel_id(),
                t.name()
            );
            match t {
                Transport::Gre => tunnels += &format!("gre_key = {GRE_KEY}\n"),
                Transport::Wireguard => {
                    tunnels += &format!(
                        "private_key = \"{engine_key}\"\npeer_public_key = \"{}\"\n",
                        public_key_of(&gen_key).map_err(anyhow::Error::msg)?
                    )
                }
                _ => {}
            }
        }
        let cfg = format!(
            r#"[node]
name = "benchio"
router_address = "{WAN_ADDR}"

[dataplane]
cores = [1]
main_lcore = 0
cpus = [{dut}]
poll_mode = "busy"
admin_socket = "{admin}"
feed_socket = "{feed}"
[dataplane.memory]
hugepages = {huge}
memory_mb = 1024
mbufs = 32767
file_prefix = "cerio-cer-{pid}"

[[port]]
name = "lan"
driver = "memif"
socket = "{lan}"
address = "{LAN_ADDR}/24"
mac = "{lan_mac}"
mtu = 1600

[[port]]
name = "wan"
driver = "memif"
socket = "{wan}"
address = "{WAN_ADDR}/24"
mac = "{wan_mac}"
mtu = 1600
{tunnels}"#,
            dut = bench.dut_cpu,
            admin = admin.display(),
            feed = feed_sock.display(),
            huge = bench.memory == Memory::Hugepages,
            pid = std::process::id(),
            lan = bench.socket(0).display(),
            wan = bench.socket(1).display(),
            lan_mac = mac(LAN_MAC),
            wan_mac = mac(WAN_MAC),
        );
        let cfg_path = bench.dir.join("cer.toml");
        std::fs::write(&cfg_path, cfg)?;
        let log = bench.dir.join("cer-dataplane.log");
        let child = Command::new(bin("cer-dataplane"))
            .args(["--config", cfg_path.to_str().unwrap_or_default()])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::create(bench.dir.join("cer-dataplane.err"))?)
            .spawn()
            .context("starting cer-dataplane")?;
        let mut proc = Proc::from_child(child, &log);
        proc.wait_for_log("cer-dataplane: ready", Duration::from_secs(30))
            .with_context(|| {
                format!(
                    "cer-dataplane: {}",
                    std::fs::read_to_string(bench.dir.join("cer-dataplane.err"))
                        .unwrap_or_default()
                )
            })?;
        let feed = FeedClient::connect(&feed_sock, "cer-bench-io")?;
        Ok(Cer {
            bench: bench.clone(),
            proc: Some(proc),
            admin,
            feed,
            engine_key,
            gen_key,
            mark: (0, 0, 0, 0),
        })
    }

    /// (busy cycles, idle cycles, packets received on the NIC ports, stalls)
    /// summed over cores.
    fn cycles(&self) -> Result<(u64, u64, u64, u64)> {
        let c = admin(&self.admin, "counters")?;
        let (mut busy, mut idle, mut rx, mut stalls) = (0, 0, 0, 0);
        for core in c.as_array().into_iter().flatten() {
            busy += core["busy_cycles"].as_u64().unwrap_or(0);
            idle += core["idle_cycles"].as_u64().unwrap_or(0);
            stalls += core["stalls"].as_u64().unwrap_or(0);
            for port in ["lan", "wan"] {
                rx += core["rx"][port].as_u64().unwrap_or(0);
            }
        }
        Ok((busy, idle, rx, stalls))
    }

    /// Every drop reason with a non-zero count (for the report).
    fn drops(&self) -> Result<Vec<(String, u64)>> {
        let c = admin(&self.admin, "counters")?;
        let mut out: std::collections::BTreeMap<String, u64> = Default::default();
        for core in c.as_array().into_iter().flatten() {
            if let Some(d) = core["drops"].as_object() {
                for (k, v) in d {
                    *out.entry(k.clone()).or_default() += v.as_u64().unwrap_or(0);
                }
            }
        }
        Ok(out.into_iter().filter(|(_, v)| *v > 0).collect())
    }
}

impl Engine for Cer {
    fn kind(&self) -> EngineKind {
        EngineKind::Cer
    }

    fn macs(&self) -> ([u8; 6], [u8; 6]) {
        (LAN_MAC, WAN_MAC)
    }

    fn wg_keys(&self) -> Option<WgKeys> {
        Some(WgKeys {
            private_key: self.gen_key.clone(),
            engine_public_key: public_key_of(&self.engine_key).ok()?,
        })
    }

    fn prepare(&mut self, case: Case) -> Result<()> {
        let n = self.bench.entries;
        let mut changes = Vec::with_capacity(n * 2 + 1);
        let (action, neighbor) = match case {
            Case::Forward => (
                EndpointAction::Local { port: "wan".into() },
                Some(("wan", GEN_WAN_MAC)),
            ),
            Case::Encap(t) => (
                EndpointAction::Tunnel {
                    tunnel: t.tunnel_id(),
                },
                None,
            ),
            Case::Decap(_) => (
                EndpointAction::Local { port: "lan".into() },
                Some(("lan", GEN_LAN_MAC)),
            ),
        };
        // The tunnel peer / next hop on the WAN link.
        changes.push(FibChange::NeighborSet {
            port: "wan".into(),
            ip: GEN_WAN_ADDR,
            mac: MacAddr(GEN_WAN_MAC),
        });
        for i in 0..n {
            let ip = Ipv4Addr::from(ENDPOINT_BASE + i as u32);
            changes.push(FibChange::EndpointSet {
                ip,
                action: action.clone(),
            });
            if let Some((port, mac)) = neighbor {
                changes.push(FibChange::NeighborSet {
                    port: port.into(),
                    ip,
                    mac: MacAddr(mac),
                });
            }
        }
        self.feed
            .full_sync(changes)
            .with_context(|| format!("loading {n} /32s for {case}"))?;
        Ok(())
    }

    fn begin(&mut self) -> Result<()> {
        self.mark = self.cycles()?;
        Ok(())
    }

    fn drop_counters(&self) -> Result<Vec<(String, u64)>> {
        self.drops()
    }

    fn stalls(&self) -> Option<u64> {
        self.cycles().ok().map(|c| c.3)
    }

    fn end(&mut self) -> Result<Cycles> {
        let (busy, idle, rx, _) = self.cycles()?;
        let (b0, i0, r0, _) = self.mark;
        let (busy, idle, pkts) = (busy - b0, idle - i0, rx.saturating_sub(r0));
        Ok(Cycles {
            per_packet: (pkts > 0).then(|| busy as f64 / pkts as f64),
            busy: (busy + idle > 0).then(|| busy as f64 / (busy + idle) as f64),
        })
    }
}

impl Drop for Cer {
    fn drop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.terminate(Duration::from_secs(10));
        }
        self.bench.remove_sockets();
    }
}
