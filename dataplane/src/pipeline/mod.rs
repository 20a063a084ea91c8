//! The per-core packet pipeline: rx burst -> classify -> ARP | IPv4 sanity ->
//! local/exception | /32 exact match | underlay LPM (ECMP) -> neighbor ->
//! MTU (ICMP frag-needed or fragment) -> TTL -> tx burst.
//!
//! A `Worker` is owned by one polling core. It loads the current snapshot
//! once per poll, processes each rx burst to completion, and keeps one tx
//! buffer per port that is flushed at the end of the burst. Nothing here
//! allocates from the heap, takes a lock or makes a syscall: generated
//! packets (ARP, ICMP) reuse the packet that caused them, or come from the
//! port I/O's buffer pool (an mbuf mempool under DPDK).
//!
//! IPv6 is not routed: neighbor discovery (`nd`) is answered and learned
//! from here, and every IPv6 packet for the router also goes to the port's
//! TAP, so the kernel there can run BGP over link-local addresses.
//!
//! The stages are `impl Worker` blocks, one file each, in packet order:
//! `burst` (the whole rx burst: transit IPv4 checked, its /32 slots
//! prefetched and looked up together), `ethernet` (L2 classify), `arp`, `ipv6` (ND, IPv6 to the TAP), `ipv4`
//! (sanity, RFC 1812 checks, the router's own traffic; their address facts
//! and policies in `hygiene`), `tunnel` (decap and encap),
//! `wireguard`, `lookup` (/32 exact match, LPM, ECMP), `output` (neighbor,
//! MTU, TTL, L2 rewrite), `frag`, `icmp` (errors the router sends), and
//! `capture` (the observation points of `cerctl dataplane capture`). A
//! packet travels with its `Meta`. This file owns the worker, its
//! configuration, the poll loop, the tx queues and the manager's commands.

mod arp;
mod burst;
mod capture;
mod ethernet;
mod frag;
mod hygiene;
mod icmp;
mod ipv4;
mod ipv6;
mod lookup;
mod output;
mod tunnel;
mod wireguard;

pub use self::hygiene::Hygiene;
pub use self::wireguard::{OwnedWgPeer, WgHandoff, WgWork};

use self::icmp::TokenBucket;
use self::ipv6::PortNd;
use crate::counters::{CoreStats, DropReason, Event};
use crate::nd;
use crate::packet::{PacketBuf, PortIo, BURST};
use crate::reassembly::Reassembly;
use crate::snapshot::Snapshot;
use crate::wire;
use arc_swap::ArcSwap;
use arrayvec::ArrayVec;
use cer_shared::config::SourceRoutePolicy;
use crossbeam_queue::ArrayQueue;
use std::net::Ipv6Addr;
use std::sync::Arc;

/// Static facts about one physical port (from the node config).
#[derive(Debug, Clone, Copy)]
pub struct PortInfo {
    pub mac: [u8; 6],
    pub addr: u32,
    pub prefix_len: u8,
    pub mtu: u16,
    /// Largest frame accepted on receive. MTU + Ethernet + VLAN on NICs; on
    /// `net_af_packet` the kernel defragments for the packet socket (DPDK
    /// 22.11 sets PACKET_FANOUT_FLAG_DEFRAG), so whole datagrams up to the
    /// ring frame size arrive and are re-fragmented on output as needed.
    pub max_frame: u16,
    /// I/O index of this port's exception-path TAP.
    pub tap: Option<usize>,
}

impl PortInfo {
    #[inline]
    fn subnet_mask(&self) -> u32 {
        cer_shared::addr::mask(self.prefix_len)
    }

    #[inline]
    fn on_link(&self, ip: u32) -> bool {
        (ip ^ self.addr) & self.subnet_mask() == 0
    }

    /// The subnet's broadcast address: none on a /31 (RFC 3021: both
    /// addresses are hosts) or a /32.
    #[inline]
    fn subnet_broadcast(&self) -> Option<u32> {
        (self.prefix_len <= 30).then(|| self.addr | !self.subnet_mask())
    }

    /// The subnet's network address (host part zero), which no host holds:
    /// none on a /31 or a /32.
    #[inline]
    fn subnet_network(&self) -> Option<u32> {
        (self.prefix_len <= 30).then(|| self.addr & self.subnet_mask())
    }
}

/// What an I/O port index is to the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoRole {
    /// A NIC port (index into `PipelineConfig::ports`).
    Phys(u16),
    /// The exception TAP paired with this NIC port.
    Tap(u16),
}

/// Static pipeline configuration shared by all cores.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub ports: Vec<PortInfo>,
    /// Port names, by the same index (for counters and logs).
    pub port_names: Vec<String>,
    /// Role of every I/O port index (NIC ports first, then TAPs).
    pub roles: Vec<IoRole>,
    pub router_addr: u32,
    pub icmp_rate_per_sec: u32,
    pub arp_retry_ns: u64,
}

impl PipelineConfig {
    /// The router's default TAP: the first port's TAP that exists (it also
    /// carries the router address).
    fn default_tap(&self) -> Option<usize> {
        self.ports.iter().find_map(|p| p.tap)
    }
}

/// A neighbor confirmation seen by a core, for the manager to record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Learn {
    pub port: u16,
    pub ip: u32,
    pub mac: [u8; 6],
}

/// An IPv6 neighbor seen by a core (RA, NS or NA), for the manager to record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Learn6 {
    pub port: u16,
    pub ip: Ipv6Addr,
    pub mac: [u8; 6],
    /// It advertised itself as a router (RA, or NA with the R flag).
    pub router: bool,
}

/// Work the manager asks of a core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoreCommand {
    GratuitousArp {
        port: u16,
        ip: u32,
    },
    /// Send the port's (precomputed) Router Advertisement.
    RouterAdvert {
        port: u16,
    },
}

/// The largest MTU a DPDK `net_tap` exception path carries (its ethdev
/// reports a 1522-byte max frame), and the largest frame punted to it.
pub const TAP_MAX_MTU: u16 = 1500;
pub const TAP_MAX_FRAME: usize = TAP_MAX_MTU as usize + 14 + 4;

/// The link of every NIC port as the engine's link watcher last saw it
/// (by port index), and how often each went down. Cores read it only when
/// a transmit falls short, to name the drop: a port whose peer is gone
/// (memif/vhost disconnect, carrier loss) is `port_link_down`, not a full ring.
#[derive(Debug, Default)]
pub struct LinkState {
    pub up: Vec<std::sync::atomic::AtomicBool>,
    pub down_events: Vec<std::sync::atomic::AtomicU64>,
    /// Frames the kernel dropped in front of the port (af_packet ring full;
    /// `ring_stats`), as last read by the link-watch thread.
    pub kernel_ring_drops: Vec<std::sync::atomic::AtomicU64>,
}

impl LinkState {
    /// Is NIC port (I/O index) `io_port` known to be down?
    #[inline]
    fn is_down(&self, io_port: usize) -> bool {
        self.up
            .get(io_port)
            .is_some_and(|u| !u.load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// Queues between the manager and the cores (lock-free, bounded).
pub struct CoreLinks {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub learn: Arc<ArrayQueue<Learn>>,
    pub commands: Arc<ArrayQueue<CoreCommand>>,
    pub stats: Arc<CoreStats>,
}

/// One polling core's pipeline state.
pub struct Worker<B: PacketBuf> {
    cfg: Arc<PipelineConfig>,
    links: CoreLinks,
    tx: Vec<ArrayVec<B, BURST>>,
    /// Direct-mapped (port,ip) -> last ARP request time, to rate-limit resolution.
    arp_sent: Box<[(u64, u64)]>,
    icmp: TokenBucket,
    ip_ident: u16,
    now_ns: u64,
    reasm: Reassembly<B>,
    polls: u64,
    /// WireGuard peers this core owns (tunnel id % cores == this core's index).
    wg_peers: Vec<OwnedWgPeer>,
    wg_core: usize,
    wg_cores: usize,
    wg_handoff: Option<Arc<WgHandoff<B>>>,
    wg_last_tick: u64,
    nd: Vec<PortNd>,
    /// Where IPv6 neighbors go (the manager's queue; `set_nd`).
    learn6: Option<Arc<ArrayQueue<Learn6>>>,
    /// Port links (`set_link_state`); without it a short transmit is a full ring.
    link_state: Option<Arc<LinkState>>,
    /// The manager's heartbeat (`set_liveness`): a stale one holds proxy ARP.
    liveness: Option<Arc<crate::liveness::Liveness>>,
    /// This poll runs right after a stall: the proxy-ARP gate counts as closed.
    held: bool,
    /// The router's addresses and the ports' broadcasts (RFC 1812 checks).
    addrs: hygiene::AddrFacts,
    /// Source-routed packets (`set_hygiene`; drop by default).
    source_route: SourceRoutePolicy,
    /// Strict uRPF per NIC port (`set_hygiene`; off by default).
    urpf: Vec<bool>,
    /// The running capture, if any (`set_capture`; checked once per poll).
    capture: crate::capture::CoreTap,
    /// Tests: every frame through the per-packet stages, bypassing `burst`
    /// (the reference the burst stage is compared with).
    #[cfg(test)]
    per_packet: bool,
}

/// Per-packet metadata the stages hand each other (VPP's `vnet_buffer`):
/// what a stage knows about the packet that its headers do not say. Six
/// bytes, passed by value in a register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Meta {
    /// The NIC port the packet arrived on; for a packet the router builds
    /// (ICMP, outer headers), the port whose traffic caused it.
    in_port: u16,
    /// IPv4 header length in bytes, set by the stage that checked or wrote
    /// the header (0 before the IPv4 stage).
    ihl: u8,
    /// A transit packet: its TTL is decremented on output and ICMP errors
    /// about it go back to its source. False for packets the router originates.
    forwarded: bool,
    /// Decapsulations so far: 0 off the wire, 1 for a tunnel's inner packet
    /// (which must not be a tunnel packet again).
    depth: u8,
}

impl Meta {
    /// A frame just received on NIC port `port`.
    #[inline(always)]
    fn received(port: usize) -> Meta {
        Meta {
            in_port: port as u16,
            ihl: 0,
            forwarded: true,
            depth: 0,
        }
    }

    /// A packet the router built, with an `ihl`-byte IPv4 header, on behalf
    /// of traffic from `in_port`.
    #[inline(always)]
    fn originated(in_port: usize, ihl: usize) -> Meta {
        Meta {
            in_port: in_port as u16,
            ihl: ihl as u8,
            forwarded: false,
            depth: 0,
        }
    }

    #[inline(always)]
    fn port(self) -> usize {
        usize::from(self.in_port)
    }

    #[inline(always)]
    fn ihl(self) -> usize {
        usize::from(self.ihl)
    }
}

impl<B: PacketBuf> Worker<B> {
    pub fn new(cfg: Arc<PipelineConfig>, links: CoreLinks) -> Self {
        let n_io = cfg.roles.len();
        Worker {
            icmp: TokenBucket::new(cfg.icmp_rate_per_sec),
            tx: (0..n_io).map(|_| ArrayVec::new()).collect(),
            arp_sent: vec![(u64::MAX, 0u64); output::ARP_LIMITER_SLOTS].into_boxed_slice(),
            ip_ident: (links.stats.lcore as u16).wrapping_mul(0x1357),
            now_ns: 0,
            reasm: Reassembly::new(),
            polls: 0,
            wg_peers: Vec::new(),
            wg_core: 0,
            wg_cores: 1,
            wg_handoff: None,
            wg_last_tick: 0,
            nd: PortNd::for_ports(&cfg.ports, nd::router_lifetime(10)),
            learn6: None,
            link_state: None,
            liveness: None,
            held: false,
            addrs: hygiene::AddrFacts::of(&cfg),
            source_route: SourceRoutePolicy::Drop,
            urpf: vec![false; cfg.ports.len()],
            capture: crate::capture::CoreTap::new(Default::default(), 0),
            #[cfg(test)]
            per_packet: false,
            cfg,
            links,
        }
    }

    /// Shares the engine's view of the port links, so packets that cannot
    /// leave a port whose link is down are counted as `port_link_down`.
    pub fn set_link_state(&mut self, links: Arc<LinkState>) {
        self.link_state = Some(links);
    }

    /// Shares the manager's heartbeat: while it is stale (the process was
    /// stopped) this core claims no proxied /32 (`liveness.rs`).
    pub fn set_liveness(&mut self, l: Arc<crate::liveness::Liveness>) {
        self.liveness = Some(l);
    }

    /// Shares the dataplane's capture hub; `core` picks this core's ring.
    pub fn set_capture(&mut self, hub: Arc<crate::capture::CaptureHub>, core: usize) {
        self.capture = crate::capture::CoreTap::new(hub, core);
    }

    pub fn stats(&self) -> &Arc<CoreStats> {
        &self.links.stats
    }

    /// One poll over every port: returns the packets received.
    pub fn poll<I: PortIo<Buf = B>>(&mut self, io: &mut I) -> usize {
        self.now_ns = io.now_ns();
        self.capture.refresh();
        self.held = self.liveness.as_ref().is_some_and(|l| l.hold(self.now_ns));
        let guard = self.links.snapshot.load();
        let snap: &Snapshot = &guard;
        let stats = self.links.stats.clone();
        if stats
            .snapshot_version
            .load(std::sync::atomic::Ordering::Relaxed)
            != snap.version
        {
            stats
                .snapshot_version
                .store(snap.version, std::sync::atomic::Ordering::Relaxed);
        }
        while let Some(cmd) = self.links.commands.pop() {
            self.run_command(io, snap, cmd);
        }
        self.wireguard_housekeeping(io, snap);
        self.polls = self.polls.wrapping_add(1);
        if self.polls.is_multiple_of(1024) {
            let n = self.reasm.sweep(self.now_ns);
            for _ in 0..n {
                self.links.stats.dropped(DropReason::ReassemblyTimeout);
            }
        }
        let mut total = 0;
        for io_port in 0..self.cfg.roles.len() {
            // A local burst (only its length is initialized): nothing is
            // moved in or out of the worker per poll.
            let mut rx: ArrayVec<B, BURST> = ArrayVec::new();
            io.rx_burst(io_port, &mut rx);
            let n = rx.len();
            if n == 0 {
                continue;
            }
            total += n;
            self.links.stats.rx(io_port, n as u64);
            match self.cfg.roles[io_port] {
                #[cfg(test)]
                IoRole::Phys(p) if self.per_packet => {
                    self.capture_rx(p as usize, &rx);
                    for buf in rx.drain(..) {
                        self.process(io, snap, Meta::received(p as usize), buf);
                    }
                }
                IoRole::Phys(p) => {
                    self.capture_rx(p as usize, &rx);
                    self.phys_burst(io, snap, p as usize, &mut rx)
                }
                IoRole::Tap(p) => {
                    self.links.stats.event_n(Event::FromTap, n as u64);
                    // The kernel's frames go out as they are, but never a
                    // runt or a frame the port cannot carry.
                    let max = usize::from(self.cfg.ports[p as usize].max_frame);
                    for buf in rx.drain(..) {
                        let len = buf.data().len();
                        if len < wire::ETH_LEN {
                            self.links.stats.dropped(DropReason::EthTruncated);
                        } else if len > max {
                            self.links.stats.dropped(DropReason::Oversized);
                        } else {
                            self.enqueue(io, p as usize, buf);
                        }
                    }
                }
            }
            self.flush_all(io);
        }
        if total > 0 {
            self.links.stats.burst();
        }
        total
    }

    fn run_command<I: PortIo<Buf = B>>(&mut self, io: &mut I, _snap: &Snapshot, cmd: CoreCommand) {
        match cmd {
            CoreCommand::GratuitousArp { port, ip } => {
                if self.held {
                    // Queued before a stall: the controller re-announces
                    // once it has re-confirmed this router's role.
                    self.links.stats.event(Event::GratuitousArpHeld);
                    return;
                }
                let Some(mut buf) = io.alloc() else {
                    self.links.stats.dropped(DropReason::NoMbuf);
                    return;
                };
                let p = self.cfg.ports[port as usize];
                let garp = wire::arp::Repr {
                    operation: wire::arp::OP_REQUEST,
                    sender_hw_addr: p.mac,
                    sender_proto_addr: ip,
                    target_hw_addr: [0; 6],
                    target_proto_addr: ip,
                };
                if arp::build_arp(&mut buf, &garp, &wire::BROADCAST) {
                    self.links.stats.event(Event::GratuitousArpSent);
                    self.enqueue(io, port as usize, buf);
                    self.flush_all(io);
                }
            }
            CoreCommand::RouterAdvert { port } => {
                self.router_advert(io, port as usize);
                self.flush_all(io);
            }
        }
    }

    #[inline]
    fn enqueue<I: PortIo<Buf = B>>(&mut self, io: &mut I, io_port: usize, buf: B) {
        if self.tx[io_port].is_full() {
            self.flush(io, io_port);
        }
        if self.tx[io_port].try_push(buf).is_err() {
            self.links.stats.dropped(DropReason::TxFull);
        }
    }

    #[inline]
    fn flush<I: PortIo<Buf = B>>(&mut self, io: &mut I, io_port: usize) {
        if self.tx[io_port].is_empty() {
            return;
        }
        self.capture_tx(io_port);
        let q = &mut self.tx[io_port];
        let sent = io.tx_burst(io_port, q);
        self.links.stats.tx(io_port, sent as u64);
        let left = q.len();
        if left > 0 {
            // The driver's ring is full, or the port has no link: drop the
            // rest (freed on clear).
            let reason = match &self.link_state {
                Some(l) if l.is_down(io_port) => DropReason::PortLinkDown,
                _ => DropReason::TxFull,
            };
            self.links.stats.dropped_n(reason, left as u64);
            q.clear();
        }
    }

    fn flush_all<I: PortIo<Buf = B>>(&mut self, io: &mut I) {
        for p in 0..self.tx.len() {
            self.flush(io, p);
        }
    }

    /// Hands a frame to the kernel through a TAP. DPDK's `net_tap` carries
    /// at most a 1500-byte MTU (its ethdev limit), so bigger frames are a
    /// counted drop instead of a silent TAP transmit failure.
    #[inline]
    fn punt<I: PortIo<Buf = B>>(&mut self, io: &mut I, tap: usize, buf: B) {
        if buf.data().len() > TAP_MAX_FRAME {
            return self.drop_pkt(DropReason::ExceptionPathTooBig, buf);
        }
        self.links.stats.event(Event::PuntedToTap);
        self.enqueue(io, tap, buf)
    }

    #[inline]
    fn drop_pkt(&self, reason: DropReason, buf: B) {
        self.links.stats.dropped(reason);
        drop(buf);
    }
}

#[cfg(test)]
mod tests;
