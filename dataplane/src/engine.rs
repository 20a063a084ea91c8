//! Bring-up and shutdown of the DPDK dataplane: EAL arguments from the node
//! config, the mbuf pool, NIC ports and their exception TAPs, the manager /
//! feed / admin threads, and one pinned polling loop per configured lcore.

use crate::capture::stream::CaptureContext;
use crate::capture::CaptureHub;
use crate::counters::{CoreStats, MAX_PORTS};
use crate::dpdk_io::DpdkIo;
use crate::fib::Fib;
use crate::kernel_reasm::{FragTimeout, ProcFiles};
use crate::manager::{
    bind_socket, serve_admin, serve_feed, Manager, ManagerMsg, PortStateFn, WgTunnelState,
};
use crate::packet::HEADROOM;
use crate::pipeline::{
    CoreLinks, Hygiene, IoRole, LinkState, OwnedWgPeer, PipelineConfig, PortInfo, WgHandoff, Worker,
};
use crate::snapshot::Snapshot;
use crate::tunnel::wireguard::{self as wg, WgPeer, WgRateLimiter};
use anyhow::{bail, Context, Result};
use arc_swap::ArcSwap;
use cer_dpdk::{Eal, Mempool, Port, PortSetup};
use cer_shared::admin::{PortHwStats, PortState};
use cer_shared::config::{IdleWake, MemifRole, NodeConfig, PollMode, PortDriver, UrpfMode};
use cer_shared::MacAddr;
use crossbeam_queue::ArrayQueue;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::time::Duration;

/// Empty polls in a row before a core sleeps: adaptive (~50-100 µs of
/// spinning: a burst gap does not cost a wake-up) and shared (a few µs: the
/// core is someone else's while this dataplane is idle).
const IDLE_POLLS_ADAPTIVE: u32 = 1024;
const IDLE_POLLS_SHARED: u32 = 32;

/// `net_af_packet` ring frame size. DPDK 22.11's af_packet PMD joins its
/// sockets to a fanout group with PACKET_FANOUT_FLAG_DEFRAG, so the kernel
/// hands it reassembled datagrams; frames this large hold them (a datagram
/// beyond it arrives truncated and is dropped as such). The kernel's
/// reassembly itself is bounded and shown by `kernel_reasm`.
pub const AF_PACKET_FRAME: usize = 16384;
/// `net_af_packet` ring depth (frames per queue, rx and tx rings alike: 16
/// MiB each). The ring absorbs what arrives while the polling core is away
/// (asleep in a `shared` or `adaptive` poll mode, or preempted on a shared
/// CPU): 512, DPDK's default, overflowed by 2-3% under one TCP stream in the
/// lab (`kernel_ring_drops`); 1024 did not. Set `framecnt` in the port's
/// `devargs` to choose another depth.
pub const AF_PACKET_RING_FRAMES: usize = 1024;
// Every configurable MTU fits an af_packet frame (the pipeline keeps 64 bytes of it).
const _: () = assert!(cer_shared::config::MAX_MTU as usize + 18 <= AF_PACKET_FRAME - 64);

/// Mbufs of an af_packet port's rx pool (large buffers; the PMD copies into
/// one per received frame, so in-flight packets are what it must cover).
const AF_PACKET_MBUFS: u32 = 2047;

/// The memif buffer size for a port MTU: a whole Ethernet frame (with a
/// VLAN tag) in one buffer, at least DPDK's default of 2048 bytes.
pub fn memif_buffer_size(mtu: u16) -> u32 {
    (u32::from(mtu) + 18).next_power_of_two().max(2048)
}

/// Prepares the control socket of a memif server port: creates its
/// directory, and removes a socket file left by a process that died (nobody
/// accepts on it), since DPDK refuses to listen on an existing path. A path
/// that is not a socket, or one a live process listens on, is an error that
/// names it.
pub fn prepare_memif_socket(path: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("memif socket directory {}", dir.display()))?;
    }
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("memif socket {}", path.display())),
    };
    if !meta.file_type().is_socket() {
        bail!(
            "memif socket {}: exists and is not a socket; remove it or choose another path",
            path.display()
        );
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => bail!(
            "memif socket {}: another process is listening on it (a second dataplane, or a memif server on the same socket)",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            log::info!("memif socket {}: removing a stale socket file", path.display());
            std::fs::remove_file(path)
                .with_context(|| format!("removing stale memif socket {}", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("memif socket {}: probing", path.display())),
    }
}

/// The DPDK device name and devargs of every NIC port and TAP.
pub struct DeviceArgs {
    /// EAL `--vdev` values.
    pub vdevs: Vec<String>,
    /// EAL `-a` (allow) PCI addresses.
    pub pci: Vec<String>,
    /// DPDK device name per NIC port (by config index).
    pub port_dev: Vec<String>,
    /// DPDK device name of each port's TAP (by config index).
    pub tap_dev: Vec<Option<String>>,
}

pub fn device_args(cfg: &NodeConfig) -> DeviceArgs {
    let queues = cfg.dataplane.cores.len();
    let mut d = DeviceArgs {
        vdevs: vec![],
        pci: vec![],
        port_dev: vec![],
        tap_dev: vec![],
    };
    for (i, p) in cfg.ports.iter().enumerate() {
        let extra = p
            .devargs
            .as_deref()
            .map(|a| format!(",{a}"))
            .unwrap_or_default();
        let iface = p.iface.as_deref().unwrap_or_default();
        match p.driver {
            PortDriver::Pci => {
                let pci = p.pci.clone().unwrap_or_default();
                d.pci.push(if extra.is_empty() {
                    pci.clone()
                } else {
                    format!("{pci}{extra}")
                });
                d.port_dev.push(pci);
            }
            PortDriver::AfPacket => {
                let name = format!("net_af_packet{i}");
                // Ring frames large enough for datagrams the kernel reassembles
                // for the packet socket (see AF_PACKET_FRAME), unless set by hand.
                let ring = if extra.contains("framesz") {
                    String::new()
                } else if extra.contains("framecnt") {
                    format!(",blocksz={AF_PACKET_FRAME},framesz={AF_PACKET_FRAME}")
                } else {
                    format!(",blocksz={AF_PACKET_FRAME},framesz={AF_PACKET_FRAME},framecnt={AF_PACKET_RING_FRAMES}")
                };
                d.vdevs
                    .push(format!("{name},iface={iface},qpairs={queues}{ring}{extra}"));
                d.port_dev.push(name);
            }
            PortDriver::AfXdp => {
                let name = format!("net_af_xdp{i}");
                d.vdevs.push(format!(
                    "{name},iface={iface},start_queue=0,queue_count={queues}{extra}"
                ));
                d.port_dev.push(name);
            }
            PortDriver::Memif => {
                let name = format!("net_memif{i}");
                let role = p.role.unwrap_or_default();
                let socket = p.socket.as_deref().unwrap_or(std::path::Path::new(""));
                // The client supplies the shared memory: its buffers must
                // hold a whole frame at the port MTU (a bigger frame would
                // arrive chained, which the pipeline drops).
                let bsize = if role == MemifRole::Client && !extra.contains("bsize") {
                    format!(",bsize={}", memif_buffer_size(p.mtu))
                } else {
                    String::new()
                };
                // The PMD takes the MAC at probe only (no mac_addr_set).
                let mac = p.mac.map(|m| format!(",mac={m}")).unwrap_or_default();
                d.vdevs.push(format!(
                    "{name},role={},id={},socket={},socket-abstract=no{mac}{bsize}{extra}",
                    role.as_str(),
                    p.memif_id.unwrap_or(0),
                    socket.display()
                ));
                d.port_dev.push(name);
            }
        }
        d.tap_dev.push(p.exception_tap.as_ref().map(|tap| {
            let name = format!("net_tap{i}");
            d.vdevs.push(format!("{name},iface={tap}"));
            name
        }));
    }
    d
}

/// The full EAL argument vector for a node config.
pub fn eal_args(cfg: &NodeConfig) -> Vec<String> {
    let dp = &cfg.dataplane;
    let mut lcores = vec![dp.main_lcore];
    lcores.extend(&dp.cores);
    let mut a: Vec<String> = vec!["cer-dataplane".into()];
    if dp.cpus.is_empty() {
        a.push("-l".into());
        a.push(
            lcores
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(","),
        );
    } else {
        // Explicit lcore -> CPU pinning (several polling lcores may share a CPU in labs).
        let mut map = vec![format!("{0}@{0}", dp.main_lcore)];
        map.extend(
            dp.cores
                .iter()
                .zip(&dp.cpus)
                .map(|(l, c)| format!("{l}@{c}")),
        );
        a.push("--lcores".into());
        a.push(map.join(","));
    }
    a.extend([
        "--main-lcore".into(),
        dp.main_lcore.to_string(),
        "--file-prefix".into(),
        cfg.file_prefix(),
        "-m".into(),
        dp.memory.memory_mb.to_string(),
    ]);
    // No secondary processes attach to us: no shared config files, and with
    // hugepages the files are unlinked right after mapping, so the pages
    // return to the pool when the process exits, however it exits. The
    // memif PMD registers a multi-process action at probe and fails
    // without the multi-process channel, so memif ports keep it.
    // `memory.secondary_processes` keeps both for dpdk-dumpcap and friends
    // (the engine removes the hugepage files at exit instead).
    let secondary = dp.memory.secondary_processes;
    if !secondary && !cfg.ports.iter().any(|p| p.driver == PortDriver::Memif) {
        a.push("--no-shconf".into());
    }
    if dp.memory.hugepages {
        if !secondary {
            a.push("--huge-unlink".into());
        }
    } else {
        a.push("--no-huge".into());
    }
    // Our own admin socket replaces DPDK telemetry (and leaves no socket behind).
    a.push("--no-telemetry".into());
    let dev = device_args(cfg);
    if dev.pci.is_empty() {
        a.push("--no-pci".into());
    }
    for p in dev.pci {
        a.push("-a".into());
        a.push(p);
    }
    for v in dev.vdevs {
        a.push("--vdev".into());
        a.push(v);
    }
    a.extend(dp.eal_args.iter().cloned());
    a
}

/// Runs `ip` for kernel-side setup of a TAP (setup time only, never on the packet path).
fn ip_cmd(args: &[&str]) -> Result<()> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// How often the link mirror looks at the ports.
const LINK_MIRROR_EVERY: Duration = Duration::from_millis(200);
/// How often a port's kernel ring drops may be logged (they are counted always).
const RING_DROP_LOG_EVERY: Duration = Duration::from_secs(10);

/// The carrier of a kernel interface (`/sys/class/net/IF/carrier`); a
/// missing interface or an admin-down one (the file cannot be read) is down.
fn kernel_carrier(iface: &str) -> bool {
    std::fs::read_to_string(format!("/sys/class/net/{iface}/carrier"))
        .map(|c| c.trim() == "1")
        .unwrap_or(false)
}

/// Watches each port's link (the PMD's view, and for `af_packet` /
/// `af_xdp` ports also the carrier of the kernel interface under them,
/// since those PMDs report their link up regardless). A change is logged
/// and counted, and mirrored onto the port's exception TAP (the linux-cp
/// model): when the port loses its link the TAP loses its carrier, so the
/// kernel side and cer-control (BGP unnumbered peers, sessions over the TAP)
/// see the loss at once instead of waiting for a hold timer.
///
/// Only the carrier is mirrored (`IFLA_CARRIER`, which the tun driver
/// implements), never the administrative state: setting the TAP down would
/// make the kernel flush every route and address through it (the default
/// route an operator or `scripts/lab` installed once, the IPv6 link-local),
/// and nothing would put them back when the link returns. With carrier off
/// they stay, marked `linkdown`, and are live again with the carrier.
/// Runs on its own thread, off the polling path.
fn spawn_link_watch(
    cfg: &NodeConfig,
    nic: &[Port],
    stop: Arc<AtomicBool>,
) -> Result<Arc<LinkState>> {
    let watched: Vec<(String, Port, Option<String>, Option<String>)> = cfg
        .ports
        .iter()
        .zip(nic)
        .map(|(p, port)| {
            let kernel = match p.driver {
                PortDriver::AfPacket | PortDriver::AfXdp => p.iface.clone(),
                _ => None,
            };
            (p.name.clone(), *port, kernel, p.exception_tap.clone())
        })
        .collect();
    let link_up = |port: &Port, kernel: &Option<String>| {
        port.link().up && kernel.as_deref().is_none_or(kernel_carrier)
    };
    let watch = Arc::new(LinkState {
        up: watched
            .iter()
            .map(|(_, port, kernel, _)| AtomicBool::new(link_up(port, kernel)))
            .collect(),
        down_events: watched.iter().map(|_| AtomicU64::new(0)).collect(),
        kernel_ring_drops: watched.iter().map(|_| AtomicU64::new(0)).collect(),
    });
    let socks = crate::wake::bound_sockets();
    let mut rings: Vec<Option<crate::ring_stats::PacketRing>> = cfg
        .ports
        .iter()
        .map(|p| match (p.driver, p.iface.as_deref()) {
            (PortDriver::AfPacket, Some(iface)) => {
                Some(crate::ring_stats::PacketRing::new(iface, &socks))
            }
            _ => None,
        })
        .collect();
    for (i, (name, ..)) in watched.iter().enumerate() {
        if !watch.up[i].load(Ordering::Relaxed) {
            log::warn!("port {name}: link down at start (peer missing?); packets sent there are dropped as port_link_down until it comes up");
        }
    }
    let w = watch.clone();
    std::thread::Builder::new()
        .name("link-watch".into())
        .spawn(move || {
            // TAPs start up: mirror the first observation too.
            let mut mirrored: Vec<bool> = vec![true; watched.len()];
            let mut logged_drops = vec![0u64; watched.len()];
            let mut last_log: Vec<Option<std::time::Instant>> = vec![None; watched.len()];
            while !stop.load(Ordering::Relaxed) {
                for (i, ring) in rings.iter_mut().enumerate() {
                    let Some(ring) = ring else { continue };
                    ring.poll();
                    w.kernel_ring_drops[i].store(ring.drops, Ordering::Relaxed);
                    // At most one line per port every 10 s, with the count since the last.
                    if ring.drops > logged_drops[i]
                        && last_log[i].is_none_or(|t| t.elapsed() >= RING_DROP_LOG_EVERY)
                    {
                        log::warn!(
                            "port {}: the kernel dropped {} frames in front of the af_packet ring (ring full: the core did not poll in time; kernel_ring_drops in show ports)",
                            watched[i].0,
                            ring.drops - logged_drops[i]
                        );
                        logged_drops[i] = ring.drops;
                        last_log[i] = Some(std::time::Instant::now());
                    }
                }
                for (i, (name, port, kernel, tap)) in watched.iter().enumerate() {
                    let up = link_up(port, kernel);
                    if w.up[i].swap(up, Ordering::Relaxed) != up {
                        if up {
                            log::warn!("port {name}: link up");
                        } else {
                            w.down_events[i].fetch_add(1, Ordering::Relaxed);
                            log::warn!("port {name}: link down");
                        }
                    }
                    let Some(tap) = tap else { continue };
                    if up == mirrored[i] {
                        continue;
                    }
                    let carrier = if up { "on" } else { "off" };
                    match ip_cmd(&["link", "set", "dev", tap, "carrier", carrier]) {
                        Ok(()) => {
                            log::warn!("port {name}: TAP {tap} carrier {carrier}");
                            mirrored[i] = up;
                        }
                        Err(e) => {
                            log::warn!("port {name}: link {carrier}, TAP {tap} carrier: {e:#}")
                        }
                    }
                }
                std::thread::sleep(LINK_MIRROR_EVERY);
            }
        })?;
    Ok(watch)
}

/// Keeps the kernel of this network namespace from also processing frames
/// that arrive on interfaces DPDK drives through `net_af_packet`: an nftables
/// netdev-ingress drop on each. AF_PACKET sockets see a frame before the
/// ingress hook, so the dataplane still receives everything, while the kernel
/// no longer answers ARP or IP for addresses it holds on the TAPs (weak host
/// model). Removed again on shutdown.
struct KernelIsolation {
    table: String,
}

impl KernelIsolation {
    fn install(table: &str, ifaces: &[&str]) -> Result<Option<KernelIsolation>> {
        if ifaces.is_empty() {
            return Ok(None);
        }
        let _ = nft(&format!("delete table netdev {table}\n"));
        let mut script = format!("table netdev {table} {{\n");
        for (i, iface) in ifaces.iter().enumerate() {
            script.push_str(&format!(
                "  chain in{i} {{ type filter hook ingress device \"{iface}\" priority -500; policy drop; }}\n"
            ));
        }
        script.push_str("}\n");
        nft(&script).context(
            "isolating af_packet interfaces from the kernel needs nftables (scripts/bootstrap installs it)",
        )?;
        Ok(Some(KernelIsolation {
            table: table.to_string(),
        }))
    }
}

impl std::ops::Drop for KernelIsolation {
    fn drop(&mut self) {
        if let Err(e) = nft(&format!("delete table netdev {}\n", self.table)) {
            log::warn!("removing nftables table {}: {e:#}", self.table);
        }
    }
}

fn nft(script: &str) -> Result<()> {
    use std::io::Write;
    let mut child = std::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running nft")?;
    child
        .stdin
        .take()
        .context("nft stdin")?
        .write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("nft: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Brings the dataplane up, runs until SIGINT/SIGTERM, and shuts it down.
/// `path` is the node file `cfg` was read from: `cerctl dataplane reload`
/// and SIGHUP read it again.
pub fn run(cfg: NodeConfig, path: Option<&std::path::Path>) -> Result<()> {
    let dp = cfg.dataplane.clone();
    if dp.memory.hugepages {
        cer_hugepages::check_available(u64::from(dp.memory.memory_mb)).context(
            "hugepages: reserve them with `scripts/hugepages --mb N`, or set dataplane.memory.hugepages = false for a small lab",
        )?;
    }
    let af_packet: Vec<&str> = cfg
        .ports
        .iter()
        .filter(|p| p.driver == PortDriver::AfPacket)
        .filter_map(|p| p.iface.as_deref())
        .collect();
    let table = format!(
        "cer_{}",
        cfg.file_prefix()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    );
    let isolation = KernelIsolation::install(&table, &af_packet)?;
    // The kernel reassembles fragments for af_packet ports (kernel_reasm):
    // bound how long an incomplete datagram holds its memory there.
    let frag_timeout = if !af_packet.is_empty() && dp.kernel_reassembly_secs > 0 {
        let secs = u64::from(dp.kernel_reassembly_secs);
        match FragTimeout::set(&ProcFiles::default(), secs) {
            Ok(Some(g)) => {
                log::info!(
                    "af_packet ports: the kernel reassembles IPv4 fragments for them; {} = {secs} s in this namespace while the dataplane runs (was {} s)",
                    g.path().display(),
                    g.previous()
                );
                Some(g)
            }
            Ok(None) => None,
            Err(e) => {
                log::warn!(
                    "af_packet ports: could not set net.ipv4.ipfrag_time to {secs} s ({e}); the kernel's value stays"
                );
                None
            }
        }
    } else {
        None
    };
    for p in &cfg.ports {
        if let (PortDriver::Memif, Some(sock), MemifRole::Server) =
            (p.driver, &p.socket, p.role.unwrap_or_default())
        {
            prepare_memif_socket(sock).with_context(|| format!("port {}", p.name))?;
        }
    }
    let args = eal_args(&cfg);
    log::info!("EAL arguments: {}", args.join(" "));
    let eal = Eal::init(&args).context("DPDK EAL initialisation failed")?;
    // DPDK's own capture tools (dpdk-dumpcap) attach as secondary processes;
    // `cerctl dataplane capture` needs none of this.
    match cer_dpdk::pdump_init() {
        Ok(()) => log::info!(
            "packet capture framework ready: dpdk-dumpcap --file-prefix {} can attach",
            cfg.file_prefix()
        ),
        Err(e) => log::info!(
            "dpdk-dumpcap cannot attach ({e}): the EAL runs without multi-process support \
             (--no-shconf; dataplane.memory.secondary_processes = true allows it); \
             use cerctl dataplane capture"
        ),
    }
    let ncores = dp.cores.len();
    for c in &dp.cores {
        if !cer_dpdk::worker_lcores().contains(c) {
            bail!(
                "dataplane.cores: lcore {c} is not an EAL worker lcore (workers: {:?})",
                cer_dpdk::worker_lcores()
            );
        }
    }

    let max_mtu = cfg
        .ports
        .iter()
        .map(|p| usize::from(p.mtu))
        .max()
        .unwrap_or(1500);
    let data_room = (max_mtu + 14 + 64).max(2048) + usize::from(cer_dpdk::PKTMBUF_HEADROOM);
    let data_room = u16::try_from(data_room).context("port MTU too large for an mbuf")?;
    // One rx pool per NIC port (af_xdp registers its pool as the UMEM and
    // keeps ~2k mbufs in its fill ring, so ports must not share one), plus
    // one pool for the TAPs and for packets the cores generate (ARP, ICMP,
    // fragments).
    let mk_pool = |name: String, n: u32, data_room: u16| -> Result<Arc<Mempool>> {
        Ok(Arc::new(
            Mempool::new_pktmbuf(&name, n, 256, data_room, cer_dpdk::SOCKET_ANY).with_context(
                || format!("creating mbuf pool {name} (dataplane.memory.mbufs / memory_mb)"),
            )?,
        ))
    };
    let af_packet_room = u16::try_from(AF_PACKET_FRAME + usize::from(cer_dpdk::PKTMBUF_HEADROOM))
        .context("af_packet frame size too large for an mbuf")?;
    let rx_pools: Vec<Arc<Mempool>> = cfg
        .ports
        .iter()
        .enumerate()
        .map(|(i, p)| match p.driver {
            PortDriver::AfPacket => mk_pool(
                format!("cer_rx{i}"),
                dp.memory.mbufs.min(AF_PACKET_MBUFS),
                af_packet_room,
            ),
            _ => mk_pool(format!("cer_rx{i}"), dp.memory.mbufs, data_room),
        })
        .collect::<Result<_>>()?;
    let pool = mk_pool("cer_gen".into(), dp.memory.mbufs, data_room)?;
    debug_assert!(usize::from(cer_dpdk::PKTMBUF_HEADROOM) >= HEADROOM);

    let dev = device_args(&cfg);
    let setup_for = |p: &cer_shared::config::PortConfig, mtu: Option<u16>| PortSetup {
        rx_queues: ncores as u16,
        tx_queues: ncores as u16,
        rx_desc: p.rx_desc,
        tx_desc: p.tx_desc,
        mtu,
        rss: ncores > 1,
        promiscuous: true,
        rx_interrupts: false,
    };
    let sleeping = dp.poll_mode != PollMode::Busy && dp.idle_wake == IdleWake::Events;
    let mut nic: Vec<Port> = Vec::new();
    let mut infos: Vec<PortInfo> = Vec::new();
    for (i, p) in cfg.ports.iter().enumerate() {
        let port = Port::by_name(&dev.port_dev[i]).with_context(|| {
            format!(
                "port[{i}] ({}): DPDK device {} not found",
                p.name, dev.port_dev[i]
            )
        })?;
        // net_af_packet reports a 1518-byte max_rx_pktlen to ethdev whatever
        // its frame size, so ethdev refuses MTUs above 1500 there. Its real
        // limit is the packet socket's frame (AF_PACKET_FRAME): leave the
        // ethdev MTU alone and size the kernel interface under it, which is
        // what decides the frames it passes (veth drops frames above it).
        let ethdev_mtu = match (p.driver, &p.iface) {
            (PortDriver::AfPacket, Some(iface)) => {
                ip_cmd(&["link", "set", "dev", iface, "mtu", &p.mtu.to_string()])
                    .with_context(|| format!("port[{i}] ({}): mtu {}", p.name, p.mtu))?;
                None
            }
            // net_memif also reports a 1518-byte max frame to ethdev; its
            // real limit is the buffers: received frames are copied into our
            // rx pool's mbufs (sized for the port MTU), and transmitted ones
            // into the peer's buffers (chained there when they are smaller).
            (PortDriver::Memif, _) => None,
            _ => Some(p.mtu),
        };
        port.configure(&setup_for(p, ethdev_mtu), &rx_pools[i])
            .with_context(|| format!("port[{i}] ({}): configure", p.name))?;
        // memif takes its MAC as a devarg at probe (it cannot change it later).
        if let (Some(mac), false) = (p.mac, p.driver == PortDriver::Memif) {
            port.set_mac(mac.0)
                .with_context(|| format!("port[{i}] ({}): set mac {mac}", p.name))?;
        }
        port.start()
            .with_context(|| format!("port[{i}] ({}): start", p.name))?;
        let mac = port.mac();
        log::info!(
            "port {} = {} ({}), mac {}",
            p.name,
            dev.port_dev[i],
            port.driver_name(),
            MacAddr(mac)
        );
        infos.push(PortInfo {
            mac,
            addr: u32::from(p.address.addr),
            prefix_len: p.address.len,
            mtu: p.mtu,
            max_frame: match p.driver {
                PortDriver::AfPacket => (AF_PACKET_FRAME - 64) as u16,
                _ => p.mtu + 18,
            },
            tap: None,
        });
        nic.push(port);
    }
    let mut io_ports = nic.clone();
    let mut roles: Vec<IoRole> = (0..nic.len()).map(|i| IoRole::Phys(i as u16)).collect();
    let mut io_names: Vec<String> = cfg.ports.iter().map(|p| p.name.clone()).collect();
    let mut first_tap: Option<String> = None;
    for (i, p) in cfg.ports.iter().enumerate() {
        let (Some(tap_name), Some(tap_dev)) = (&p.exception_tap, &dev.tap_dev[i]) else {
            continue;
        };
        let tap = Port::by_name(tap_dev)
            .with_context(|| format!("port[{i}] ({}): TAP {tap_dev} not found", p.name))?;
        // A sleeping core wakes on the TAP's rx interrupt (net_tap has them).
        let with_intr = PortSetup {
            rx_interrupts: sleeping,
            ..setup_for(p, None)
        };
        if let Err(e) = tap.configure(&with_intr, &pool) {
            if !sleeping {
                return Err(e)
                    .with_context(|| format!("port[{i}] ({}): configure TAP {tap_name}", p.name));
            }
            log::warn!(
                "TAP {tap_name}: no rx interrupts ({e}); a sleeping core polls it on a timer"
            );
            tap.configure(&setup_for(p, None), &pool)
                .with_context(|| format!("port[{i}] ({}): configure TAP {tap_name}", p.name))?;
        }
        // The kernel side speaks with the NIC's MAC, so its frames leave unchanged.
        tap.set_mac(infos[i].mac)
            .with_context(|| format!("TAP {tap_name}: set mac"))?;
        tap.start()
            .with_context(|| format!("TAP {tap_name}: start"))?;
        // The kernel side of the TAP speaks at most what net_tap carries
        // (ethdev caps it at 1500): BGP/SSH/ICMP to the router stay below it.
        let tap_mtu = p.mtu.min(crate::pipeline::TAP_MAX_MTU);
        if tap_mtu < p.mtu {
            log::info!(
                "TAP {tap_name}: mtu {tap_mtu} (port {} has {}; net_tap carries at most {tap_mtu}; bigger frames for the router are dropped as exception_path_too_big)",
                p.name,
                p.mtu
            );
        }
        ip_cmd(&["link", "set", "dev", tap_name, "mtu", &tap_mtu.to_string()])?;
        ip_cmd(&["addr", "replace", &p.address.to_string(), "dev", tap_name])?;
        ip_cmd(&["link", "set", "dev", tap_name, "up"])?;
        infos[i].tap = Some(io_ports.len());
        roles.push(IoRole::Tap(i as u16));
        io_names.push(format!("tap:{tap_name}"));
        io_ports.push(tap);
        first_tap.get_or_insert(tap_name.clone());
    }
    // What wakes each core from an idle sleep (adaptive/shared modes).
    let kernel_ports: Vec<crate::wake::KernelPort> = cfg
        .ports
        .iter()
        .filter_map(|p| match (p.driver, p.iface.as_deref()) {
            (PortDriver::AfPacket, Some(iface)) => Some(crate::wake::KernelPort {
                name: &p.name,
                iface,
                xdp: false,
            }),
            (PortDriver::AfXdp, Some(iface)) => Some(crate::wake::KernelPort {
                name: &p.name,
                iface,
                xdp: true,
            }),
            _ => None,
        })
        .collect();
    let intr_ports: Vec<(String, Port)> = cfg
        .ports
        .iter()
        .zip(&dev.tap_dev)
        .filter_map(|(p, t)| {
            Some((
                format!("tap {}", p.exception_tap.clone()?),
                Port::by_name(t.as_ref()?).ok()?,
            ))
        })
        .collect();
    let silent_ports: Vec<String> = cfg
        .ports
        .iter()
        .filter(|p| matches!(p.driver, PortDriver::Memif | PortDriver::Pci))
        .map(|p| format!("{} ({:?}: no rx event source)", p.name, p.driver).to_lowercase())
        .collect();
    let bound = Duration::from_micros(u64::from(dp.idle_backoff_us));
    let mut wake: Vec<(crate::wake::WakeSources, Arc<crate::wake::CoreWaker>)> = Vec::new();
    for (k, lcore) in dp.cores.iter().enumerate() {
        let w = crate::wake::discover(
            &kernel_ports,
            &intr_ports,
            &silent_ports,
            k as u16,
            ncores as u16,
        );
        if dp.poll_mode != PollMode::Busy {
            match (dp.idle_wake, w.missing.is_empty()) {
                (IdleWake::Timer, _) => log::info!(
                    "lcore {lcore}: poll mode {:?}, idle_wake = timer: polls every {} us when idle",
                    dp.poll_mode,
                    dp.idle_backoff_us
                ),
                (IdleWake::Events, true) => log::info!(
                    "lcore {lcore}: poll mode {:?}: sleeps when idle, woken by {}",
                    dp.poll_mode,
                    w.fds.iter().map(|f| f.1.as_str()).collect::<Vec<_>>().join(", ")
                ),
                (IdleWake::Events, false) => log::warn!(
                    "lcore {lcore}: poll mode {:?}: no rx event source for {}: a sleeping core polls them every {} us (woken by events for {})",
                    dp.poll_mode,
                    w.missing.join(", "),
                    dp.idle_backoff_us,
                    if w.fds.is_empty() { "nothing".to_string() } else { w.fds.iter().map(|f| f.1.as_str()).collect::<Vec<_>>().join(", ") }
                ),
            }
        }
        wake.push((
            w,
            Arc::new(crate::wake::CoreWaker::new().context("core waker eventfd")?),
        ));
    }
    let router = cfg.node.router_address;
    if !cfg.ports.iter().any(|p| p.address.addr == router) {
        if let Some(tap) = &first_tap {
            ip_cmd(&["addr", "replace", &format!("{router}/32"), "dev", tap])?;
        }
    }
    if io_ports.len() > MAX_PORTS {
        bail!("{} ports and TAPs; at most {MAX_PORTS}", io_ports.len());
    }

    let pcfg = Arc::new(PipelineConfig {
        ports: infos,
        port_names: cfg.ports.iter().map(|p| p.name.clone()).collect(),
        roles,
        router_addr: u32::from(router),
        icmp_rate_per_sec: dp.icmp_rate_per_sec,
        arp_retry_ns: u64::from(dp.arp_retry_ms) * 1_000_000,
    });
    let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::empty(cfg.ports.len())));
    let learn = Arc::new(ArrayQueue::new(4096));
    let stats: Vec<Arc<CoreStats>> = dp
        .cores
        .iter()
        .map(|c| Arc::new(CoreStats::new(*c)))
        .collect();
    let commands: Vec<Arc<ArrayQueue<_>>> = dp
        .cores
        .iter()
        .map(|_| Arc::new(ArrayQueue::new(256)))
        .collect();

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let links_watch = spawn_link_watch(&cfg, &nic, stop.clone())?;
    let port_state: PortStateFn = {
        let nic = nic.clone();
        let watch = links_watch.clone();
        let cfg = cfg.clone();
        let dev_names = dev.port_dev.clone();
        Arc::new(move || {
            nic.iter()
                .zip(cfg.ports.iter())
                .zip(dev_names.iter())
                .enumerate()
                .map(|(i, ((port, p), devname))| {
                    let link = port.link();
                    let hw = port.stats().unwrap_or_default();
                    PortState {
                        name: p.name.clone(),
                        driver: port.driver_name(),
                        device: devname.clone(),
                        mac: MacAddr(port.mac()),
                        address: p.address.to_string(),
                        mtu: p.mtu,
                        link_up: link.up && watch.up[i].load(Ordering::Relaxed),
                        link_down_events: watch.down_events[i].load(Ordering::Relaxed),
                        speed_mbps: link.speed_mbps,
                        proxy_arp: p.proxy_arp,
                        exception_tap: p.exception_tap.clone(),
                        hw: PortHwStats {
                            ipackets: hw.ipackets,
                            opackets: hw.opackets,
                            ibytes: hw.ibytes,
                            obytes: hw.obytes,
                            imissed: hw.imissed,
                            ierrors: hw.ierrors,
                            oerrors: hw.oerrors,
                            rx_nombuf: hw.rx_nombuf,
                            kernel_ring_drops: watch.kernel_ring_drops[i].load(Ordering::Relaxed),
                        },
                    }
                })
                .collect()
        })
    };

    // WireGuard: each tunnel's peer state lives on one core (id % cores);
    // other cores hand it packets through lock-free queues.
    let mut wg_owned: Vec<Vec<OwnedWgPeer>> = dp.cores.iter().map(|_| Vec::new()).collect();
    let mut limiters: Vec<(String, WgRateLimiter)> = Vec::new();
    let mut wg_state: Vec<WgTunnelState> = Vec::new();
    for t in cfg
        .tunnels
        .iter()
        .filter(|t| t.kind == cer_shared::config::TunnelKind::Wireguard)
    {
        let what = |field: &str| format!("tunnel id {}: {field}", t.id);
        let private = match (&t.private_key, &t.private_key_file) {
            (Some(k), _) => k.clone(),
            (None, Some(f)) => wg::read_private_key_file(f)
                .map_err(|e| anyhow::anyhow!("{}: {e}", what("private_key_file")))?,
            (None, None) => bail!("{}: missing", what("private_key")),
        };
        let limiter = match limiters.iter().find(|(k, _)| *k == private) {
            Some((_, l)) => l.clone(),
            None => {
                let l = WgRateLimiter::new(&private, wg::DEFAULT_HANDSHAKES_PER_SECOND)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", what("private_key")))?;
                limiters.push((private.clone(), l.clone()));
                l
            }
        };
        let peer = WgPeer::new_with_limiter(
            &private,
            t.peer_public_key.as_deref().unwrap_or_default(),
            t.preshared_key.as_deref(),
            t.persistent_keepalive,
            t.id,
            &limiter,
        )
        .map_err(|e| anyhow::anyhow!("{}: {e}", what("keys")))?;
        let owner = t.id as usize % ncores;
        wg_state.push(WgTunnelState {
            tunnel: t.id,
            lcore: dp.cores[owner],
            published: peer.published(),
        });
        let port = t.port.unwrap_or(51820);
        wg_owned[owner].push(OwnedWgPeer {
            tunnel: t.id,
            peer,
            peer_port: port,
        });
        log::info!(
            "WireGuard tunnel {} to {} owned by lcore {}",
            t.id,
            t.remote,
            dp.cores[owner]
        );
    }
    let wg_handoff = Arc::new(WgHandoff::new(ncores));

    // Mode and group on both socket files; every connection's credentials checked.
    let gid = cer_shared::sockperm::resolve_group(&dp.socket_group)
        .map_err(|e| anyhow::anyhow!("dataplane.socket_group: {e}"))?;
    let feed_access = cer_shared::sockperm::SocketAccess::new(gid);
    let admin_access = cer_shared::sockperm::SocketAccess::new(gid);
    let feed_listener = bind_socket(&dp.feed_socket, dp.socket_mode, &feed_access)
        .with_context(|| format!("feed socket {}", dp.feed_socket.display()))?;
    let admin_listener = bind_socket(&dp.admin_socket, dp.socket_mode, &admin_access)
        .with_context(|| format!("admin socket {}", dp.admin_socket.display()))?;
    let (mgr_tx, mgr_rx) = sync_channel::<ManagerMsg>(1024);
    let mut manager = Manager::new(
        Fib::from_config(&cfg),
        snapshot.clone(),
        learn.clone(),
        commands.clone(),
        stats.clone(),
        io_names,
        cfg.node.name.clone(),
        port_state,
    );
    manager.wg_state = wg_state;
    manager.config = path.map(|p| (p.to_path_buf(), cfg.clone()));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, manager.reload_signal.clone())
        .context("installing the SIGHUP handler")?;
    manager.af_packet = cfg
        .ports
        .iter()
        .map(|p| p.driver == PortDriver::AfPacket)
        .collect();
    if manager.af_packet.contains(&true) {
        manager.kernel_proc = Some(ProcFiles::default());
    }
    manager.tsc_hz = cer_dpdk::tsc_hz();
    let liveness = manager.liveness.clone();
    manager.wakers = wake.iter().map(|(_, w)| w.clone()).collect();
    manager.core_wake = wake
        .iter()
        .map(|(w, _)| {
            let events = dp.poll_mode != PollMode::Busy && dp.idle_wake == IdleWake::Events;
            crate::manager::CoreWakeInfo {
                poll_mode: format!("{:?}", dp.poll_mode).to_lowercase(),
                sources: if events {
                    w.fds.iter().map(|f| f.1.clone()).collect()
                } else {
                    Vec::new()
                },
                timer_for: match (dp.poll_mode, events) {
                    (PollMode::Busy, _) => Vec::new(),
                    (_, true) => w.missing.clone(),
                    (_, false) => vec!["every port (idle_wake = timer)".into()],
                },
                bound_us: (dp.poll_mode != PollMode::Busy && (!events || !w.missing.is_empty()))
                    .then_some(u64::from(dp.idle_backoff_us)),
            }
        })
        .collect();
    manager.ra_interval = Duration::from_secs(u64::from(dp.ra_interval_secs));
    manager.link_locals = pcfg
        .ports
        .iter()
        .zip(&cfg.ports)
        .map(|(info, p)| (crate::nd::link_local(info.mac), p.unnumbered))
        .collect();
    for (p, (ll, unnumbered)) in cfg.ports.iter().zip(&manager.link_locals) {
        if *unnumbered {
            log::info!(
                "port {}: unnumbered, router advertisements from {ll} every {} s",
                p.name,
                dp.ra_interval_secs
            );
        }
    }
    let learn6 = manager.learn6.clone();
    let unnumbered: Vec<bool> = cfg.ports.iter().map(|p| p.unnumbered).collect();
    let ra_lifetime = crate::nd::router_lifetime(dp.ra_interval_secs);
    let mgr_stop = stop.clone();
    let capture_hub = Arc::new(CaptureHub::default());
    let manager_thread = std::thread::Builder::new()
        .name("manager".into())
        .spawn(move || manager.run(mgr_rx, mgr_stop))?;
    {
        let tx = mgr_tx.clone();
        std::thread::Builder::new().name("feed".into()).spawn({
            let feed_access = feed_access.clone();
            move || serve_feed(feed_listener, tx, feed_access)
        })?;
        let tx = mgr_tx.clone();
        let tsc_hz = cer_dpdk::tsc_hz();
        let capture = CaptureContext {
            hub: capture_hub.clone(),
            ports: cfg.ports.iter().map(|p| p.name.clone()).collect(),
            cores: dp.cores.len(),
            snapshot: snapshot.clone(),
            clock: Arc::new(move || crate::dpdk_io::tsc_ns(tsc_hz)),
        };
        std::thread::Builder::new()
            .name("admin".into())
            .spawn(move || serve_admin(admin_listener, tx, admin_access, feed_access, capture))?;
        // Prometheus: a plain thread asking the manager, like the admin socket.
        if let Some(addr) = cfg
            .metrics
            .addr()
            .map_err(|m| anyhow::anyhow!("metrics.listen: {m}"))?
        {
            let at =
                cer_shared::metrics::spawn(addr, crate::manager::metrics_render(mgr_tx.clone()))?;
            log::info!("metrics: serving /metrics on http://{at}");
        }
    }

    let hygiene = Hygiene {
        source_route: dp.source_route,
        urpf: cfg.ports.iter().map(|p| p.urpf).collect(),
    };
    for p in cfg.ports.iter().filter(|p| p.urpf == UrpfMode::Strict) {
        log::info!("port {}: strict uRPF (RFC 3704)", p.name);
    }
    for (k, lcore) in dp.cores.iter().enumerate() {
        let links = CoreLinks {
            snapshot: snapshot.clone(),
            learn: learn.clone(),
            commands: commands[k].clone(),
            stats: stats[k].clone(),
        };
        let mut worker = Worker::new(pcfg.clone(), links)
            .with_wireguard(
                k,
                ncores,
                std::mem::take(&mut wg_owned[k]),
                wg_handoff.clone(),
            )
            .with_nd(learn6.clone(), ra_lifetime)
            .with_unnumbered(&unnumbered)
            .with_hygiene(&hygiene);
        worker.set_link_state(links_watch.clone());
        worker.set_liveness(liveness.clone());
        worker.set_capture(capture_hub.clone(), k);
        let mut io = DpdkIo::new(io_ports.clone(), k as u16, pool.clone());
        let stop = stop.clone();
        let mode = dp.poll_mode;
        let events = dp.idle_wake == IdleWake::Events;
        let (sources, waker) = wake[k].clone();
        // The WireGuard timers of the peers this core owns run every 100 ms.
        let duty = if cfg.tunnels.iter().any(|t| {
            t.kind == cer_shared::config::TunnelKind::Wireguard && t.id as usize % ncores == k
        }) {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(1)
        };
        cer_dpdk::launch(
            *lcore,
            Box::new(move || {
                let stats = worker.stats().clone();
                let spin = match mode {
                    PollMode::Busy => u32::MAX,
                    PollMode::Adaptive => IDLE_POLLS_ADAPTIVE,
                    PollMode::Shared => IDLE_POLLS_SHARED,
                };
                let mut sleeper = if mode == PollMode::Busy {
                    None
                } else {
                    crate::wake::tighten_timer_slack();
                    match crate::wake::Sleeper::new(&sources, waker, bound, events) {
                        Ok(s) => Some(s),
                        Err(e) => {
                            log::error!("idle sleep unavailable ({e}); busy polling instead");
                            None
                        }
                    }
                };
                let mut idle = 0u32;
                let stall = cer_dpdk::tsc_hz() / (1_000_000_000 / crate::counters::STALL_NS);
                let mut t0 = cer_dpdk::tsc();
                while !stop.load(Ordering::Relaxed) {
                    let mut slept = false;
                    let n = worker.poll(&mut io);
                    if n > 0 {
                        idle = 0;
                    } else {
                        idle = idle.saturating_add(1);
                        if idle >= spin {
                            if let Some(s) = sleeper.as_mut() {
                                // Armed, then one more poll: traffic that came
                                // before the arm is not left waiting.
                                s.arm();
                                if worker.poll(&mut io) == 0 {
                                    let woke = s.wait(duty);
                                    slept = true;
                                    stats.slept(woke == crate::wake::Woke::Event);
                                    // After an event traffic likely follows:
                                    // spin again; after a timeout sleep again
                                    // at the next empty poll.
                                    idle = if woke == crate::wake::Woke::Event {
                                        0
                                    } else {
                                        spin
                                    };
                                } else {
                                    s.wait_cancel();
                                    idle = 0;
                                }
                            }
                        }
                    }
                    // Busy/idle cycle accounting (one TSC read per poll).
                    let t1 = cer_dpdk::tsc();
                    let dt = t1.wrapping_sub(t0);
                    stats.poll_cycles(dt, n > 0);
                    if dt > stall && !slept {
                        stats.stalled();
                    }
                    t0 = t1;
                }
                0
            }),
        )
        .with_context(|| format!("launching the polling loop on lcore {lcore}"))?;
    }
    log::info!(
        "cer-dataplane {} forwarding on lcores {:?}; feed {}, admin {}",
        cfg.node.name,
        dp.cores,
        dp.feed_socket.display(),
        dp.admin_socket.display()
    );
    println!("cer-dataplane: ready");

    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    log::info!("shutting down");
    // Sleeping cores see the stop flag at once, and the main thread does not
    // spin in rte_eal_wait_lcore (on a shared CPU that spin would take the
    // core's own time slice) while they finish their last poll.
    for (_, w) in &wake {
        w.wake();
    }
    for lcore in &dp.cores {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !cer_dpdk::lcore_is_idle(*lcore) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let rc = cer_dpdk::wait_lcore(*lcore);
        if rc != 0 {
            log::warn!("lcore {lcore} exited with {rc}");
        }
    }
    let _ = manager_thread.join();
    for p in &io_ports {
        if let Err(e) = p.stop() {
            log::warn!("stopping port {}: {e}", p.name());
        }
        p.close();
    }
    let _ = std::fs::remove_file(&dp.feed_socket);
    let _ = std::fs::remove_file(&dp.admin_socket);
    drop(pool);
    drop(rx_pools);
    let runtime_dir = cer_dpdk::runtime_dir();
    drop(eal);
    if let Some(dir) = runtime_dir {
        // EAL keeps it when a driver still held mbufs at cleanup (af_xdp does).
        let _ = std::fs::remove_dir(dir);
    }
    if dp.memory.hugepages && dp.memory.secondary_processes {
        // Kept for secondary processes (no --huge-unlink): ours to remove.
        let n = cer_hugepages::remove_dpdk_files(&cfg.file_prefix());
        log::info!(
            "removed {n} hugepage file(s) of prefix {}",
            cfg.file_prefix()
        );
    }
    drop(isolation);
    drop(frag_timeout);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn node(ports: &str) -> NodeConfig {
        let text = format!(
            r#"
[node]
name = "t"
router_address = "10.2.0.1"
[dataplane]
cores = [1, 2]
{ports}"#
        );
        NodeConfig::parse(&text, Path::new("t.toml")).expect("config")
    }

    #[test]
    fn memif_ports_become_memif_vdevs_with_role_id_and_buffer_size() {
        let c = node(
            r#"
[[port]]
name = "lan"
driver = "memif"
socket = "/run/cer/lan.sock"
address = "10.1.0.1/24"
[[port]]
name = "wan"
driver = "memif"
socket = "/run/cer/vpp.sock"
role = "client"
memif_id = 3
mtu = 9000
mac = "02:00:00:00:02:01"
address = "10.2.0.1/24"
"#,
        );
        let d = device_args(&c);
        assert_eq!(d.port_dev, ["net_memif0", "net_memif1"]);
        assert_eq!(
            d.vdevs[0],
            "net_memif0,role=server,id=0,socket=/run/cer/lan.sock,socket-abstract=no"
        );
        // A client supplies the buffers: a whole jumbo frame fits in one.
        assert_eq!(
            d.vdevs[1],
            "net_memif1,role=client,id=3,socket=/run/cer/vpp.sock,socket-abstract=no,mac=02:00:00:00:02:01,bsize=16384"
        );
        let eal = eal_args(&c);
        assert!(eal.contains(&"--no-pci".to_string()));
        // memif needs the multi-process channel (it registers an action at probe).
        assert!(!eal.contains(&"--no-shconf".to_string()));
        assert_eq!(memif_buffer_size(1500), 2048);
        assert_eq!(memif_buffer_size(2100), 4096);
    }

    #[test]
    fn a_stale_memif_socket_is_removed_and_a_live_one_refused() {
        let dir = std::env::temp_dir().join(format!("cer-memif-sock-{}", std::process::id()));
        let path = dir.join("sub/x.sock");
        // A missing directory is created.
        prepare_memif_socket(&path).unwrap();
        assert!(dir.join("sub").is_dir());
        // Left by a dead process: bound, nobody listening.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        prepare_memif_socket(&path).unwrap();
        assert!(!path.exists());
        // Someone listens: refused, naming the path.
        let live = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let e = prepare_memif_socket(&path).unwrap_err().to_string();
        assert!(e.contains("listening") && e.contains("x.sock"), "{e}");
        drop(live);
        // Not a socket at all.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"x").unwrap();
        let e = prepare_memif_socket(&path).unwrap_err().to_string();
        assert!(e.contains("not a socket"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
