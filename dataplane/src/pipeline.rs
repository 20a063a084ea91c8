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

use crate::counters::{CoreStats, DropReason, Event};
use crate::nd::{self, Ipv6In, NdKind, NdMessage};
use crate::packet::{PacketBuf, PortIo, BURST};
use crate::reassembly::{Outcome, Reassembly};
use crate::snapshot::{is_gateway6_key, EndpointAction, NeighborStatus, Snapshot};
use crate::tunnel::wireguard::{self as wg, WgOut, WgPeer};
use crate::tunnel::{self, Decap, TunnelInfo};
use crate::wire::{self, be16, be32, ip, put16, put32};
use arc_swap::ArcSwap;
use arrayvec::ArrayVec;
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
    pub proxy_arp: bool,
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

    #[inline]
    fn subnet_broadcast(&self) -> u32 {
        self.addr | !self.subnet_mask()
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

/// Neighbor discovery facts of one port, computed once.
struct PortNd {
    /// The link-local address (EUI-64 from the port MAC).
    ll: Ipv6Addr,
    /// The Router Advertisement frame sent on `CoreCommand::RouterAdvert`.
    ra: Box<[u8]>,
    /// Router Solicitations are answered with `ra` (the port is unnumbered).
    answers_rs: bool,
    /// When this core last sent `ra` (solicited answers are rate limited).
    last_ra_ns: Option<u64>,
}

/// RFC 4861 MIN_DELAY_BETWEEN_RAS: solicited RAs at most this often.
const MIN_DELAY_BETWEEN_RAS_NS: u64 = 3_000_000_000;
/// The largest MTU a DPDK `net_tap` exception path carries (its ethdev
/// reports a 1522-byte max frame), and the largest frame punted to it.
pub const TAP_MAX_MTU: u16 = 1500;
pub const TAP_MAX_FRAME: usize = TAP_MAX_MTU as usize + 14 + 4;

impl PortNd {
    fn for_ports(ports: &[PortInfo], ra_lifetime_secs: u16) -> Vec<PortNd> {
        ports
            .iter()
            .map(|p| PortNd {
                ll: nd::link_local(p.mac),
                ra: nd::router_advert(p.mac, ra_lifetime_secs).into_boxed_slice(),
                answers_rs: false,
                last_ra_ns: None,
            })
            .collect()
    }
}

/// Queues between the manager and the cores (lock-free, bounded).
pub struct CoreLinks {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub learn: Arc<ArrayQueue<Learn>>,
    pub commands: Arc<ArrayQueue<CoreCommand>>,
    pub stats: Arc<CoreStats>,
}

const ARP_LIMITER_SLOTS: usize = 1024;

/// Token bucket for ICMP errors, refilled from the burst timestamp.
struct TokenBucket {
    tokens: u64,
    cap: u64,
    per_sec: u64,
    last_ns: u64,
}

impl TokenBucket {
    fn new(per_sec: u32) -> Self {
        let per_sec = u64::from(per_sec.max(1));
        TokenBucket {
            tokens: per_sec.min(50),
            cap: per_sec.min(50),
            per_sec,
            last_ns: 0,
        }
    }

    #[inline]
    fn take(&mut self, now_ns: u64) -> bool {
        let elapsed = now_ns.saturating_sub(self.last_ns);
        let add = elapsed.saturating_mul(self.per_sec) / 1_000_000_000;
        if add > 0 {
            self.tokens = (self.tokens + add).min(self.cap);
            self.last_ns = now_ns;
        }
        if self.tokens > 0 {
            self.tokens -= 1;
            true
        } else {
            false
        }
    }
}

/// One polling core's pipeline state.
pub struct Worker<B: PacketBuf> {
    cfg: Arc<PipelineConfig>,
    links: CoreLinks,
    tx: Vec<ArrayVec<B, BURST>>,
    rx: ArrayVec<B, BURST>,
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
}

/// Where a routed packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// Out of a port towards a next hop.
    Port(usize, u32),
    /// Into a tunnel.
    Tunnel(u32),
}

/// A WireGuard peer owned by this core, and where it was last heard from.
pub struct OwnedWgPeer {
    pub tunnel: u32,
    pub peer: WgPeer,
    /// UDP port the peer sends from (its endpoint; roaming follows it).
    pub peer_port: u16,
}

/// Work for the core that owns a WireGuard tunnel.
pub enum WgWork<B> {
    Encap {
        tunnel: u32,
        in_port: usize,
        buf: B,
    },
    Decap {
        tunnel: u32,
        port: usize,
        offset: usize,
        buf: B,
    },
}

/// One lock-free queue per core: packets for the WireGuard peers it owns.
pub struct WgHandoff<B> {
    pub queues: Vec<ArrayQueue<WgWork<B>>>,
}

impl<B> WgHandoff<B> {
    pub fn new(cores: usize) -> Self {
        WgHandoff {
            queues: (0..cores).map(|_| ArrayQueue::new(1024)).collect(),
        }
    }
}

/// How often the owning core runs WireGuard timers (rekey, keepalive, retries).
const WG_TICK_NS: u64 = 100_000_000;

/// Where fragments go.
#[derive(Clone, Copy)]
enum FragSink {
    Port {
        out: usize,
        dst_mac: [u8; 6],
        src_mac: [u8; 6],
    },
    Tunnel(TunnelInfo),
}

impl<B: PacketBuf> Worker<B> {
    pub fn new(cfg: Arc<PipelineConfig>, links: CoreLinks) -> Self {
        let n_io = cfg.roles.len();
        Worker {
            icmp: TokenBucket::new(cfg.icmp_rate_per_sec),
            tx: (0..n_io).map(|_| ArrayVec::new()).collect(),
            rx: ArrayVec::new(),
            arp_sent: vec![(u64::MAX, 0u64); ARP_LIMITER_SLOTS].into_boxed_slice(),
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
            cfg,
            links,
        }
    }

    /// Gives this core (number `core` of `cores`) the WireGuard peers it owns
    /// and the handoff queues shared by all cores.
    pub fn with_wireguard(
        mut self,
        core: usize,
        cores: usize,
        peers: Vec<OwnedWgPeer>,
        handoff: Arc<WgHandoff<B>>,
    ) -> Self {
        self.set_wireguard(core, cores, peers, handoff);
        self
    }

    pub fn set_wireguard(
        &mut self,
        core: usize,
        cores: usize,
        peers: Vec<OwnedWgPeer>,
        handoff: Arc<WgHandoff<B>>,
    ) {
        self.wg_core = core;
        self.wg_cores = cores.max(1);
        self.wg_peers = peers;
        self.wg_handoff = Some(handoff);
    }

    /// Connects IPv6 neighbor learning to the manager's queue and sets the
    /// router lifetime the Router Advertisements carry.
    pub fn set_nd(&mut self, learn6: Arc<ArrayQueue<Learn6>>, ra_lifetime_secs: u16) {
        self.nd = PortNd::for_ports(&self.cfg.ports, ra_lifetime_secs);
        self.learn6 = Some(learn6);
    }

    pub fn with_nd(mut self, learn6: Arc<ArrayQueue<Learn6>>, ra_lifetime_secs: u16) -> Self {
        self.set_nd(learn6, ra_lifetime_secs);
        self
    }

    /// Which ports (by index) answer Router Solicitations with their RA
    /// (the `unnumbered` ones; call after `set_nd`).
    pub fn set_unnumbered(&mut self, unnumbered: &[bool]) {
        for (nd, u) in self.nd.iter_mut().zip(unnumbered) {
            nd.answers_rs = *u;
        }
    }

    pub fn with_unnumbered(mut self, unnumbered: &[bool]) -> Self {
        self.set_unnumbered(unnumbered);
        self
    }

    pub fn stats(&self) -> &Arc<CoreStats> {
        &self.links.stats
    }

    /// One poll over every port: returns the packets received.
    pub fn poll<I: PortIo<Buf = B>>(&mut self, io: &mut I) -> usize {
        self.now_ns = io.now_ns();
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
            let mut rx = std::mem::take(&mut self.rx);
            io.rx_burst(io_port, &mut rx);
            let n = rx.len();
            if n == 0 {
                self.rx = rx;
                continue;
            }
            total += n;
            self.links.stats.rx(io_port, n as u64);
            match self.cfg.roles[io_port] {
                IoRole::Phys(p) => {
                    // Vector stages (VPP style): the table misses of all packets
                    // in the burst overlap instead of stalling one by one.
                    for buf in rx.iter() {
                        if let Some(dst) = peek_ipv4_dst(buf.data()) {
                            snap.endpoints.prefetch(dst);
                        }
                    }
                    for buf in rx.iter() {
                        if let Some(dst) = peek_ipv4_dst(buf.data()) {
                            if let Some(EndpointAction::Local { port }) = snap.endpoints.get(dst) {
                                snap.neighbors.prefetch(port, dst);
                            }
                        }
                    }
                    for buf in rx.drain(..) {
                        self.process(io, snap, p as usize, buf);
                    }
                }
                IoRole::Tap(p) => {
                    self.links.stats.event_n(Event::FromTap, n as u64);
                    for buf in rx.drain(..) {
                        self.enqueue(io, p as usize, buf);
                    }
                }
            }
            self.rx = rx;
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
                let Some(mut buf) = io.alloc() else {
                    self.links.stats.dropped(DropReason::NoMbuf);
                    return;
                };
                let p = self.cfg.ports[port as usize];
                if build_arp(&mut buf, 1, &p.mac, ip, &[0; 6], ip, &wire::BROADCAST) {
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

    /// Sends the port's precomputed Router Advertisement.
    fn router_advert<I: PortIo<Buf = B>>(&mut self, io: &mut I, port: usize) {
        let Some(nd) = self.nd.get_mut(port) else {
            return;
        };
        nd.last_ra_ns = Some(self.now_ns);
        let Some(mut buf) = io.alloc() else {
            self.links.stats.dropped(DropReason::NoMbuf);
            return;
        };
        let ra = &self.nd[port].ra;
        if !buf.set_len(ra.len()) {
            return self.drop_pkt(DropReason::NoMbuf, buf);
        }
        buf.data_mut().copy_from_slice(ra);
        self.links.stats.event(Event::RouterAdvertSent);
        self.enqueue(io, port, buf);
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
        let q = &mut self.tx[io_port];
        if q.is_empty() {
            return;
        }
        let sent = io.tx_burst(io_port, q);
        self.links.stats.tx(io_port, sent as u64);
        let left = q.len();
        if left > 0 {
            // The driver's ring is full: drop the rest (freed on clear).
            for _ in 0..left {
                self.links.stats.dropped(DropReason::TxFull);
            }
            q.clear();
        }
    }

    fn flush_all<I: PortIo<Buf = B>>(&mut self, io: &mut I) {
        for p in 0..self.tx.len() {
            self.flush(io, p);
        }
    }

    #[inline]
    fn drop_pkt(&self, reason: DropReason, buf: B) {
        self.links.stats.dropped(reason);
        drop(buf);
    }

    /// Ethernet classify for a frame received on NIC port `port`.
    #[inline]
    fn process<I: PortIo<Buf = B>>(&mut self, io: &mut I, snap: &Snapshot, port: usize, buf: B) {
        if !buf.is_contiguous() {
            return self.drop_pkt(DropReason::MultiSegment, buf);
        }
        let d = buf.data();
        if d.len() < wire::ETH_LEN {
            return self.drop_pkt(DropReason::EthTruncated, buf);
        }
        let info = self.cfg.ports[port];
        // A giant: more than the port accepts (MTU + Ethernet + VLAN on NICs).
        if d.len() > usize::from(info.max_frame) {
            return self.drop_pkt(DropReason::Oversized, buf);
        }
        // IPv6 multicast (33:33:..) is checked by group in `ipv6`.
        let ipv6_multicast = d[0] == 0x33 && d[1] == 0x33 && be16(d, 12) == wire::ETHERTYPE_IPV6;
        if d[0..6] != info.mac && d[0..6] != wire::BROADCAST && !ipv6_multicast {
            let reason = if d[0] & 1 == 1 {
                DropReason::L2Multicast
            } else {
                DropReason::L2OtherHost
            };
            return self.drop_pkt(reason, buf);
        }
        match be16(d, 12) {
            wire::ETHERTYPE_IPV4 => self.ipv4(io, snap, port, buf, 0),
            wire::ETHERTYPE_ARP => self.arp(io, snap, port, buf),
            wire::ETHERTYPE_IPV6 => self.ipv6(io, snap, port, buf),
            _ => self.drop_pkt(DropReason::UnsupportedEthertype, buf),
        }
    }

    /// IPv6 for the router: neighbor discovery is validated, learned and
    /// answered here; then the packet (ND included) goes to the port's TAP.
    /// IPv6 is not routed.
    fn ipv6<I: PortIo<Buf = B>>(&mut self, io: &mut I, snap: &Snapshot, port: usize, mut buf: B) {
        let d = buf.data();
        if d.len() < wire::ETH_LEN + nd::IPV6_LEN {
            return self.drop_pkt(DropReason::Ipv6Malformed, buf);
        }
        let total = nd::IPV6_LEN + usize::from(be16(d, wire::ETH_LEN + 4));
        let have = d.len() - wire::ETH_LEN;
        if total > have {
            return self.drop_pkt(DropReason::Ipv6Malformed, buf);
        }
        if have > total {
            // Ethernet padding.
            buf.trim(have - total);
        }
        match nd::classify(&buf.data()[wire::ETH_LEN..]) {
            Err(reason) => self.drop_pkt(reason, buf),
            Ok(Ipv6In::NotForUs) => self.drop_pkt(DropReason::Ipv6NotForUs, buf),
            Ok(Ipv6In::ForUs) => match self.cfg.ports[port].tap {
                Some(tap) => self.punt(io, tap, buf),
                None => self.drop_pkt(DropReason::NoExceptionPath, buf),
            },
            Ok(Ipv6In::Nd(m)) => {
                let mut eth_src = [0u8; 6];
                eth_src.copy_from_slice(&buf.data()[6..12]);
                self.nd_input(io, snap, port, &m, eth_src);
                match self.cfg.ports[port].tap {
                    Some(tap) => self.punt(io, tap, buf),
                    None => {
                        self.links.stats.event(Event::NdConsumed);
                        drop(buf);
                    }
                }
            }
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

    /// Learns from a valid ND message and answers a solicitation for our
    /// link-local address (router, solicited, override).
    fn nd_input<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        snap: &Snapshot,
        port: usize,
        m: &NdMessage,
        eth_src: [u8; 6],
    ) {
        let mac = self.cfg.ports[port].mac;
        if eth_src == mac || m.lladdr == Some(mac) {
            // Our own frame looped back (or a MAC clash): never learn from it.
            return;
        }
        let ll = self.nd[port].ll;
        match m.kind {
            NdKind::RouterAdvert { .. } => {
                if let Some(l) = m.lladdr {
                    self.learn6(snap, port, m.src, l, true);
                }
            }
            NdKind::NeighborSolicit { target } => {
                if m.src.is_unspecified() {
                    // Duplicate address detection: the kernel side defends.
                    return;
                }
                if let Some(l) = m.lladdr {
                    self.learn6(snap, port, m.src, l, false);
                }
                if target != ll {
                    return;
                }
                let Some(mut out) = io.alloc() else {
                    self.links.stats.dropped(DropReason::NoMbuf);
                    return;
                };
                if !out.set_len(nd::NA_LEN) {
                    return self.drop_pkt(DropReason::NoMbuf, out);
                }
                nd::write_advert(out.data_mut(), mac, &m.src, m.lladdr.unwrap_or(eth_src));
                self.links.stats.event(Event::NeighborAdvertSent);
                self.enqueue(io, port, out);
            }
            NdKind::NeighborAdvert {
                target,
                router,
                solicited,
                ..
            } => {
                let l = m.lladdr.or((target == m.src).then_some(eth_src));
                let known = snap.neighbors6.get(port as u16, &target).is_some();
                if let Some(l) = l {
                    if target != ll && (solicited || known) {
                        self.learn6(snap, port, target, l, router);
                    }
                }
            }
            NdKind::RouterSolicit => {
                let nd = &self.nd[port];
                if !nd.answers_rs {
                    return;
                }
                let recent = nd
                    .last_ra_ns
                    .is_some_and(|t| self.now_ns.saturating_sub(t) < MIN_DELAY_BETWEEN_RAS_NS);
                if recent {
                    self.links.stats.event(Event::RouterAdvertSuppressed);
                    return;
                }
                // To all-nodes, as FRR answers (RFC 4861 6.2.6 allows it).
                self.router_advert(io, port);
            }
            NdKind::Redirect => {}
        }
    }

    /// Queues an IPv6 neighbor for the manager unless the snapshot already
    /// has it reachable at that MAC (RAs always go: they mark routers).
    fn learn6(&self, snap: &Snapshot, port: usize, ip: Ipv6Addr, mac: [u8; 6], router: bool) {
        if ip.is_unspecified() || ip.is_multicast() || ip == self.nd[port].ll {
            return;
        }
        if !router {
            if let Some(n) = snap.neighbors6.get(port as u16, &ip) {
                if n.mac == mac && n.status == NeighborStatus::Reachable {
                    return;
                }
            }
        }
        let Some(q) = &self.learn6 else { return };
        let l = Learn6 {
            port: port as u16,
            ip,
            mac,
            router,
        };
        if q.push(l).is_ok() {
            self.links.stats.event(Event::NdLearned);
        } else {
            self.links.stats.event(Event::NdLearnQueueFull);
        }
    }

    /// Is `ip` one of the router's own addresses?
    #[inline]
    fn is_local(&self, ip: u32) -> bool {
        ip == self.cfg.router_addr || self.cfg.ports.iter().any(|p| p.addr == ip)
    }

    /// Does the router answer ARP for `ip` on `port`?
    #[inline]
    fn owns_on_port(&self, port: usize, ip: u32) -> bool {
        let p = &self.cfg.ports[port];
        ip == p.addr || (ip == self.cfg.router_addr && p.on_link(ip))
    }

    fn arp<I: PortIo<Buf = B>>(&mut self, io: &mut I, snap: &Snapshot, port: usize, mut buf: B) {
        let d = buf.data();
        if d.len() < wire::ETH_LEN + wire::ARP_LEN {
            return self.drop_pkt(DropReason::ArpMalformed, buf);
        }
        let a = &d[wire::ETH_LEN..];
        let op = be16(a, 6);
        if be16(a, 0) != 1
            || be16(a, 2) != wire::ETHERTYPE_IPV4
            || a[4] != 6
            || a[5] != 4
            || !(op == 1 || op == 2)
        {
            return self.drop_pkt(DropReason::ArpMalformed, buf);
        }
        let mut sha = [0u8; 6];
        sha.copy_from_slice(&a[8..14]);
        let spa = be32(a, 14);
        let tpa = be32(a, 24);
        if sha[0] & 1 == 1 || sha == [0; 6] {
            return self.drop_pkt(DropReason::ArpMalformed, buf);
        }
        let info = self.cfg.ports[port];
        if sha == info.mac {
            // Our own frame looped back (or a MAC clash): never learn from it.
            return self.drop_pkt(DropReason::ArpNotForUs, buf);
        }
        // Someone else claims an address we proxy for: two holders.
        if spa != 0 && info.proxy_arp && snap.proxy_arp.answers(spa) {
            self.links.stats.duplicate_holder(port as u16, spa, sha);
        }
        let for_us = self.owns_on_port(port, tpa);
        // Learn from ARP aimed at us (replies to our requests may come from
        // /32 endpoints outside the port's subnet); unsolicited ARP (GARP)
        // only refreshes entries we already have.
        if spa >> 24 != 0 && spa >> 28 < 14 && spa != u32::MAX && !self.is_local(spa) {
            let known = snap.neighbors.get(port as u16, spa);
            let refresh = match known {
                Some(n) if n.status == NeighborStatus::Static => false,
                Some(n) => n.mac != sha || n.status == NeighborStatus::Stale,
                None => for_us,
            };
            if refresh {
                let learn = Learn {
                    port: port as u16,
                    ip: spa,
                    mac: sha,
                };
                if self.links.learn.push(learn).is_ok() {
                    self.links.stats.event(Event::ArpLearned);
                } else {
                    self.links.stats.event(Event::ArpLearnQueueFull);
                }
            }
        }
        if op == 1 {
            let proxy = !for_us && info.proxy_arp && snap.proxy_arp.holds(tpa) && spa != tpa;
            if proxy && !snap.proxy_arp.active {
                // Gate closed (VRRP backup, or capture not ours): stay silent.
                self.links.stats.event(Event::ProxyArpSilent);
                return self.drop_pkt(DropReason::ArpNotForUs, buf);
            }
            if !(for_us || proxy) {
                return self.drop_pkt(DropReason::ArpNotForUs, buf);
            }
            let mac = info.mac;
            let d = buf.data_mut();
            let a_off = wire::ETH_LEN;
            d[0..6].copy_from_slice(&sha);
            d[6..12].copy_from_slice(&mac);
            put16(d, a_off + 6, 2);
            d[a_off + 18..a_off + 24].copy_from_slice(&sha);
            put32(d, a_off + 24, spa);
            d[a_off + 8..a_off + 14].copy_from_slice(&mac);
            put32(d, a_off + 14, tpa);
            self.links.stats.event(if proxy {
                Event::ProxyArpReplySent
            } else {
                Event::ArpReplySent
            });
            self.enqueue(io, port, buf);
        } else if for_us {
            // A reply to a request (ours, or the kernel's through the TAP).
            match info.tap {
                Some(tap) => {
                    self.punt(io, tap, buf);
                }
                None => {
                    self.links.stats.event(Event::ArpReplyConsumed);
                    drop(buf);
                }
            }
        } else {
            self.drop_pkt(DropReason::ArpNotForUs, buf)
        }
    }

    /// IPv4 from `port`; `depth` is 1 for the inner packet of a decapsulated one.
    fn ipv4<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        snap: &Snapshot,
        port: usize,
        mut buf: B,
        depth: u8,
    ) {
        let d = buf.data();
        if d.len() < wire::ETH_LEN + wire::IPV4_MIN {
            return self.drop_pkt(DropReason::Ipv4Truncated, buf);
        }
        let h = &d[wire::ETH_LEN..];
        if h[0] >> 4 != 4 {
            return self.drop_pkt(DropReason::Ipv4BadVersion, buf);
        }
        let ihl = usize::from(h[0] & 0x0f) * 4;
        if ihl < wire::IPV4_MIN || ihl > h.len() {
            return self.drop_pkt(DropReason::Ipv4BadIhl, buf);
        }
        let total = usize::from(be16(h, ip::TOTAL_LEN));
        if total < ihl {
            return self.drop_pkt(DropReason::Ipv4BadLength, buf);
        }
        if total > h.len() {
            return self.drop_pkt(DropReason::Ipv4Truncated, buf);
        }
        if wire::checksum(&h[..ihl]) != 0 {
            return self.drop_pkt(DropReason::Ipv4BadChecksum, buf);
        }
        let src = be32(h, ip::SRC);
        let dst = be32(h, ip::DST);
        let ttl = h[ip::TTL];
        let proto = h[ip::PROTO];
        let fragmented = be16(h, ip::FLAGS_FRAG) & (ip::MF | ip::OFFSET_MASK) != 0;
        let extra = h.len() - total;
        if extra > 0 {
            // Ethernet padding beyond the IP total length.
            buf.trim(extra);
        }
        let info = self.cfg.ports[port];
        if src >> 24 == 127 || src >> 28 >= 14 || src == 0 || src == info.subnet_broadcast() {
            return self.drop_pkt(DropReason::Ipv4MartianSource, buf);
        }
        if dst >> 28 >= 14 || dst == info.subnet_broadcast() {
            // Multicast and broadcast are not routed; the kernel side may want them.
            return match info.tap {
                Some(tap) => self.punt(io, tap, buf),
                None => self.drop_pkt(DropReason::Ipv4NotRoutable, buf),
            };
        }
        if self.is_local(dst) {
            let tunnel_proto = matches!(
                proto,
                tunnel::PROTO_IPIP | tunnel::PROTO_GRE | wire::PROTO_UDP
            );
            if tunnel_proto && !snap.tunnels.is_empty() {
                if fragmented {
                    return self.reassemble(io, snap, port, buf, depth);
                }
                return self.decap(io, snap, port, buf, ihl, depth);
            }
            return self.local(io, snap, port, buf, ihl);
        }
        if ttl <= 1 {
            self.links.stats.dropped(DropReason::TtlExpired);
            return self.icmp_error(io, snap, port, buf, 11, 0, 0);
        }
        match self.route(snap, dst, &buf, ihl) {
            Ok(Target::Port(out, nh)) => self.output(io, snap, port, out, nh, buf, ihl, true),
            Ok(Target::Tunnel(t)) => self.enter_tunnel(io, snap, port, t, buf, ihl, true),
            Err(DropReason::NoRoute) => {
                self.links.stats.dropped(DropReason::NoRoute);
                self.icmp_error(io, snap, port, buf, 3, 0, 0)
            }
            Err(reason) => self.drop_pkt(reason, buf),
        }
    }

    /// Outer fragments to us: reassemble, then decapsulate the whole packet.
    fn reassemble<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        snap: &Snapshot,
        port: usize,
        buf: B,
        depth: u8,
    ) {
        match self.reasm.insert(io, buf, self.now_ns) {
            Outcome::Pending => {}
            Outcome::Dropped(reason) => self.links.stats.dropped(reason),
            Outcome::Complete(whole) => {
                self.links.stats.event(Event::Reassembled);
                let ihl = usize::from(whole.data()[wire::ETH_LEN] & 0x0f) * 4;
                self.decap(io, snap, port, whole, ihl, depth)
            }
        }
    }

    /// Tunnel traffic to us from a configured peer: strip the outer headers
    /// and forward the inner packet; anything else for us: the exception path.
    fn decap<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        snap: &Snapshot,
        port: usize,
        mut buf: B,
        ihl: usize,
        depth: u8,
    ) {
        match tunnel::classify(&buf.data()[wire::ETH_LEN..], ihl, &snap.tunnels) {
            Decap::NotTunnel => self.local(io, snap, port, buf, ihl),
            Decap::Drop(reason) => self.drop_pkt(reason, buf),
            Decap::Wireguard { offset, tunnel } => {
                if depth > 0 {
                    return self.drop_pkt(DropReason::TunnelNested, buf);
                }
                self.wg_decap(io, snap, port, tunnel, offset, buf)
            }
            Decap::Inner { offset, .. } => {
                if depth > 0 {
                    return self.drop_pkt(DropReason::TunnelNested, buf);
                }
                // [eth][outer..][inner] -> [eth][inner]: drop `offset` bytes and
                // rewrite the 14 bytes now in front as an Ethernet header.
                if !buf.adj(offset) || buf.len() < wire::ETH_LEN + wire::IPV4_MIN {
                    return self.drop_pkt(DropReason::TunnelMalformed, buf);
                }
                let mac = self.cfg.ports[port].mac;
                wire::write_eth(buf.data_mut(), &mac, &[0; 6], wire::ETHERTYPE_IPV4);
                self.links.stats.event(Event::Decapsulated);
                self.ipv4(io, snap, port, buf, depth + 1)
            }
        }
    }

    /// Into a tunnel: MSS clamp, tunnel MTU (ICMP frag-needed with DF, else
    /// fragment the inner packet), TTL, encapsulate, route the outer packet.
    #[allow(clippy::too_many_arguments)]
    fn enter_tunnel<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        snap: &Snapshot,
        in_port: usize,
        tid: u32,
        mut buf: B,
        ihl: usize,
        forwarded: bool,
    ) {
        let Some(&t) = snap.tunnels.get(tid) else {
            return self.drop_pkt(DropReason::NoTunnel, buf);
        };
        if wire::clamp_mss(
            &mut buf.data_mut()[wire::ETH_LEN..],
            ihl,
            t.mtu.saturating_sub(40),
        ) {
            self.links.stats.event(Event::MssClamped);
        }
        let total = buf.len() - wire::ETH_LEN;
        if total > usize::from(t.mtu) {
            let flags = be16(buf.data(), wire::ETH_LEN + ip::FLAGS_FRAG);
            if flags & ip::DF != 0 && !t.force_fragment {
                self.links.stats.dropped(DropReason::FragNeeded);
                if forwarded {
                    return self.icmp_error(io, snap, in_port, buf, 3, 4, t.mtu);
                }
                return;
            }
            return self.fragment(
                io,
                snap,
                in_port,
                FragSink::Tunnel(t),
                buf,
                ihl,
                usize::from(t.mtu),
                forwarded,
            );
        }
        if forwarded {
            wire::decrement_ttl(&mut buf.data_mut()[wire::ETH_LEN..]);
        }
        self.encap_send(io, snap, in_port, &t, buf);
    }

    /// Encapsulates an inner packet (Ethernet header in front, TTL already
    /// handled) and sends the outer packet over the underlay.
    fn encap_send<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        snap: &Snapshot,
        in_port: usize,
        t: &TunnelInfo,
        mut buf: B,
    ) {
        if t.kind == cer_shared::config::TunnelKind::Wireguard {
            return self.wg_encap(io, snap, in_port, t.id, buf);
        }
        let ihl = usize::from(buf.data()[wire::ETH_LEN] & 0x0f) * 4;
        let hash = match buf.rss_hash() {
            Some(h) => h,
            None => wire::flow_hash(&buf.data()[wire::ETH_LEN..], ihl),
        };
        self.ip_ident = self.ip_ident.wrapping_add(1);
        if !buf.adj(wire::ETH_LEN) || !tunnel::encap(&mut buf, t, self.ip_ident, hash) {
            return self.drop_pkt(DropReason::NoMbuf, buf);
        }
        match self.underlay(snap, t.remote, hash) {
            Ok((out, nh)) => {
                self.links.stats.event(Event::Encapsulated);
                self.output(io, snap, in_port, out, nh, buf, wire::IPV4_MIN, false)
            }
            Err(_) => self.drop_pkt(DropReason::TunnelNoUnderlay, buf),
        }
    }

    /// /32 exact match first, then the underlay LPM.
    #[inline]
    fn route(&self, snap: &Snapshot, dst: u32, buf: &B, ihl: usize) -> Result<Target, DropReason> {
        match snap.endpoints.get(dst) {
            Some(EndpointAction::Local { port }) => Ok(Target::Port(port as usize, dst)),
            Some(EndpointAction::Tunnel { tunnel }) => Ok(Target::Tunnel(tunnel)),
            Some(EndpointAction::Drop) => Err(DropReason::EndpointDrop),
            None => {
                let hash = match buf.rss_hash() {
                    Some(h) => h,
                    None => wire::flow_hash(&buf.data()[wire::ETH_LEN..], ihl),
                };
                let (out, nh) = self.underlay(snap, dst, hash)?;
                Ok(Target::Port(out, nh))
            }
        }
    }

    /// The underlay LPM (ECMP by flow hash): (egress port, next-hop IP).
    #[inline]
    fn underlay(&self, snap: &Snapshot, dst: u32, hash: u32) -> Result<(usize, u32), DropReason> {
        let r = snap.routes.lookup(dst).ok_or(DropReason::NoRoute)?;
        let hop = r.group.select(hash).ok_or(DropReason::NoRoute)?;
        let nh = if hop.gateway == 0 { dst } else { hop.gateway };
        Ok((hop.port as usize, nh))
    }

    /// Neighbor resolution, MTU handling, TTL, Ethernet rewrite, enqueue.
    /// `forwarded` is false for packets the router itself originated.
    #[allow(clippy::too_many_arguments)]
    fn output<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        snap: &Snapshot,
        in_port: usize,
        out: usize,
        nh: u32,
        mut buf: B,
        ihl: usize,
        forwarded: bool,
    ) {
        let Some(&info) = self.cfg.ports.get(out) else {
            return self.drop_pkt(DropReason::NoRoute, buf);
        };
        let Some(neigh) = snap.neighbors.get(out as u16, nh) else {
            if is_gateway6_key(nh) {
                // An IPv6 link-local gateway (RFC 5549): solicit it.
                self.links.stats.dropped(DropReason::Neighbor6Unresolved);
                return self.solicit(io, snap, out, nh, None, Some(buf));
            }
            self.links.stats.dropped(DropReason::NeighborUnresolved);
            // Reuse the unroutable packet as the ARP request (no allocation).
            return self.resolve(io, out, nh, Some(buf));
        };
        if neigh.status == NeighborStatus::Stale {
            self.links.stats.event(Event::StaleProbe);
            if is_gateway6_key(nh) {
                self.solicit(io, snap, out, nh, Some(neigh.mac), None);
            } else {
                self.resolve(io, out, nh, None);
            }
        }
        let mtu = usize::from(info.mtu);
        let src_mac = info.mac;
        let total = buf.len() - wire::ETH_LEN;
        if total > mtu {
            let flags = be16(buf.data(), wire::ETH_LEN + ip::FLAGS_FRAG);
            if flags & ip::DF != 0 {
                self.links.stats.dropped(DropReason::FragNeeded);
                if forwarded {
                    return self.icmp_error(io, snap, in_port, buf, 3, 4, mtu as u16);
                }
                return;
            }
            let sink = FragSink::Port {
                out,
                dst_mac: neigh.mac,
                src_mac,
            };
            return self.fragment(io, snap, in_port, sink, buf, ihl, mtu, forwarded);
        }
        let d = buf.data_mut();
        if forwarded {
            wire::decrement_ttl(&mut d[wire::ETH_LEN..]);
        }
        wire::write_eth(d, &neigh.mac, &src_mac, wire::ETHERTYPE_IPV4);
        self.links.stats.event(Event::Forwarded);
        self.enqueue(io, out, buf);
    }

    /// The resolution rate limiter (ARP and ND share it): the (key, slot) to
    /// record a request for next hop `nh` on `port` in, or None (counted as
    /// `suppressed`) when one went out within `arp_retry_ns`.
    fn solicit_slot(&mut self, port: usize, nh: u32, suppressed: Event) -> Option<(u64, usize)> {
        let key = (port as u64) << 32 | u64::from(nh);
        let slot = ((key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54) as usize) % ARP_LIMITER_SLOTS;
        let (k, last) = self.arp_sent[slot];
        if k == key && self.now_ns.saturating_sub(last) < self.cfg.arp_retry_ns {
            self.links.stats.event(suppressed);
            return None;
        }
        Some((key, slot))
    }

    /// `reuse`, or a fresh buffer from the pool (a counted drop when empty).
    fn reuse_or_alloc<I: PortIo<Buf = B>>(&mut self, io: &mut I, reuse: Option<B>) -> Option<B> {
        let b = reuse.or_else(|| io.alloc());
        if b.is_none() {
            self.links.stats.dropped(DropReason::NoMbuf);
        }
        b
    }

    /// Sends an ARP request for `ip` on `port` unless one went out recently;
    /// uses `reuse` as the buffer when given (it is consumed either way).
    fn resolve<I: PortIo<Buf = B>>(&mut self, io: &mut I, port: usize, ip: u32, reuse: Option<B>) {
        let Some((key, slot)) = self.solicit_slot(port, ip, Event::ArpRequestSuppressed) else {
            return;
        };
        let Some(mut buf) = self.reuse_or_alloc(io, reuse) else {
            return;
        };
        let info = self.cfg.ports[port];
        let (mac, addr) = (info.mac, info.addr);
        if build_arp(&mut buf, 1, &mac, addr, &[0; 6], ip, &wire::BROADCAST) {
            self.arp_sent[slot] = (key, self.now_ns);
            self.links.stats.event(Event::ArpRequestSent);
            self.enqueue(io, port, buf);
        } else {
            self.links.stats.dropped(DropReason::NoMbuf);
        }
    }

    /// Sends a Neighbor Solicitation for the IPv6 gateway behind synthetic
    /// next-hop key `nh` on `port` (multicast, or unicast to `known` as a
    /// probe) unless one went out recently; `reuse` is consumed either way.
    fn solicit<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        snap: &Snapshot,
        port: usize,
        nh: u32,
        known: Option<[u8; 6]>,
        reuse: Option<B>,
    ) {
        let Some((_, target)) = snap.gateways6.get(nh) else {
            return;
        };
        let Some((key, slot)) = self.solicit_slot(port, nh, Event::NeighborSolicitSuppressed)
        else {
            return;
        };
        let Some(mut buf) = self.reuse_or_alloc(io, reuse) else {
            return;
        };
        if !buf.set_len(nd::NS_LEN) {
            return self.drop_pkt(DropReason::NoMbuf, buf);
        }
        let mac = self.cfg.ports[port].mac;
        nd::write_solicit(buf.data_mut(), mac, &target, known);
        self.arp_sent[slot] = (key, self.now_ns);
        self.links.stats.event(Event::NeighborSolicitSent);
        self.enqueue(io, port, buf);
    }

    /// Traffic for the router itself. The arrival port's TAP takes it (the
    /// kernel there holds that port's address and replies on the same link);
    /// without one, the dataplane answers ICMP echo itself, and anything else
    /// goes to the router's default TAP, if there is one.
    fn local<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        snap: &Snapshot,
        port: usize,
        mut buf: B,
        ihl: usize,
    ) {
        if let Some(tap) = self.cfg.ports[port].tap {
            return self.punt(io, tap, buf);
        }
        let d = buf.data_mut();
        let h = &mut d[wire::ETH_LEN..];
        let is_echo = h[ip::PROTO] == wire::PROTO_ICMP
            && be16(h, ip::FLAGS_FRAG) & (ip::MF | ip::OFFSET_MASK) == 0
            && h.len() >= ihl + 8
            && h[ihl] == 8
            && h[ihl + 1] == 0;
        if !is_echo {
            return match self.cfg.default_tap() {
                Some(tap) => self.punt(io, tap, buf),
                None => self.drop_pkt(DropReason::NoExceptionPath, buf),
            };
        }
        let (src, dst) = (be32(h, ip::SRC), be32(h, ip::DST));
        put32(h, ip::SRC, dst);
        put32(h, ip::DST, src);
        h[ip::TTL] = 64;
        wire::fill_ip_checksum(h, ihl);
        let icmp = &mut h[ihl..];
        icmp[0] = 0;
        // Type 8 -> 0 changes one 16-bit word (type/code).
        let c = wire::checksum_adjust(be16(icmp, 2), 0x0800, 0x0000);
        put16(icmp, 2, c);
        self.links.stats.event(Event::IcmpEchoReplied);
        self.send_local(io, snap, port, buf, ihl);
    }

    /// Routes a packet the router originated (ICMP), no TTL decrement.
    fn send_local<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        snap: &Snapshot,
        in_port: usize,
        buf: B,
        ihl: usize,
    ) {
        let dst = be32(buf.data(), wire::ETH_LEN + ip::DST);
        match self.route(snap, dst, &buf, ihl) {
            Ok(Target::Port(out, nh)) => self.output(io, snap, in_port, out, nh, buf, ihl, false),
            Ok(Target::Tunnel(t)) => self.enter_tunnel(io, snap, in_port, t, buf, ihl, false),
            Err(reason) => self.drop_pkt(reason, buf),
        }
    }

    /// Turns `buf` into an ICMP error about itself (RFC 792 / RFC 1812 4.3.2)
    /// and routes it back to the source, rate limited, sourced from the
    /// router address. The caller has already counted why the packet failed.
    #[allow(clippy::too_many_arguments)]
    fn icmp_error<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        snap: &Snapshot,
        in_port: usize,
        mut buf: B,
        icmp_type: u8,
        code: u8,
        mtu: u16,
    ) {
        let d = buf.data();
        let h = &d[wire::ETH_LEN..];
        let ihl = usize::from(h[0] & 0x0f) * 4;
        let src = be32(h, ip::SRC);
        let frag_offset = be16(h, ip::FLAGS_FRAG) & ip::OFFSET_MASK;
        // Never about a non-first fragment, never about an ICMP error.
        if frag_offset != 0 {
            return;
        }
        if h[ip::PROTO] == wire::PROTO_ICMP && h.len() > ihl && !matches!(h[ihl], 0 | 8 | 13 | 14) {
            return;
        }
        let _ = in_port;
        if !self.icmp.take(self.now_ns) {
            self.links.stats.event(Event::IcmpRateLimited);
            return;
        }
        let quote = (h.len()).min(ihl + 8);
        if !buf.set_len(wire::ETH_LEN + quote) || !buf.prepend(28) {
            self.links.stats.dropped(DropReason::NoMbuf);
            return;
        }
        self.ip_ident = self.ip_ident.wrapping_add(1);
        let ident = self.ip_ident;
        let router = self.cfg.router_addr;
        let d = buf.data_mut();
        let total = 20 + 8 + quote;
        let h = &mut d[wire::ETH_LEN..];
        h[..20].copy_from_slice(&[
            0x45,
            0xc0,
            0,
            0,
            0,
            0,
            0,
            0,
            64,
            wire::PROTO_ICMP,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        ]);
        put16(h, ip::TOTAL_LEN, total as u16);
        put16(h, ip::IDENT, ident);
        put32(h, ip::SRC, router);
        put32(h, ip::DST, src);
        wire::fill_ip_checksum(h, 20);
        let icmp = &mut h[20..];
        icmp[0] = icmp_type;
        icmp[1] = code;
        put16(icmp, 2, 0);
        put16(icmp, 4, 0);
        put16(icmp, 6, if icmp_type == 3 && code == 4 { mtu } else { 0 });
        let c = wire::checksum(icmp);
        put16(icmp, 2, c);
        self.links.stats.event(Event::IcmpSent);
        self.send_local(io, snap, in_port, buf, 20);
    }

    /// The core that owns a WireGuard tunnel.
    #[inline]
    fn wg_owner(&self, tunnel: u32) -> usize {
        tunnel as usize % self.wg_cores
    }

    fn wg_peer_index(&self, tunnel: u32) -> Option<usize> {
        self.wg_peers.iter().position(|p| p.tunnel == tunnel)
    }

    /// Hands `work` to the owning core; false (and counted) if its queue is full.
    fn wg_handoff(&self, owner: usize, work: WgWork<B>) {
        match self.wg_handoff.as_ref().and_then(|h| h.queues.get(owner)) {
            Some(q) => match q.push(work) {
                Ok(()) => self.links.stats.event(Event::WgHandedOff),
                Err(_) => self.links.stats.dropped(DropReason::Wireguard),
            },
            None => self.links.stats.dropped(DropReason::Wireguard),
        }
    }

    /// Runs queued handoffs and, every 100 ms, the WireGuard timers.
    fn wireguard_housekeeping<I: PortIo<Buf = B>>(&mut self, io: &mut I, snap: &Snapshot) {
        if self.wg_peers.is_empty() {
            return;
        }
        if let Some(h) = self.wg_handoff.clone() {
            if let Some(q) = h.queues.get(self.wg_core) {
                while let Some(work) = q.pop() {
                    match work {
                        WgWork::Encap {
                            tunnel,
                            in_port,
                            buf,
                        } => self.wg_encap(io, snap, in_port, tunnel, buf),
                        WgWork::Decap {
                            tunnel,
                            port,
                            offset,
                            buf,
                        } => self.wg_decap(io, snap, port, tunnel, offset, buf),
                    }
                }
            }
        }
        if self.now_ns.saturating_sub(self.wg_last_tick) < WG_TICK_NS {
            return;
        }
        self.wg_last_tick = self.now_ns;
        for i in 0..self.wg_peers.len() {
            let Some(mut out) = io.alloc() else {
                self.links.stats.dropped(DropReason::NoMbuf);
                return;
            };
            if !out.append(wg::MIN_OUT_LEN) {
                return self.drop_pkt(DropReason::NoMbuf, out);
            }
            let tunnel = self.wg_peers[i].tunnel;
            let tick = self.wg_peers[i].peer.tick(out.data_mut());
            self.wg_peers[i].peer.publish();
            match tick {
                WgOut::Send(n) => {
                    out.set_len(n);
                    self.wg_send(io, snap, 0, tunnel, out);
                }
                WgOut::Drop(d) => self.wg_count(d),
                WgOut::Inner(_) | WgOut::Nothing => {}
            }
        }
    }

    /// Data for a session we do not have: the peer kept its session while
    /// this dataplane restarted. A handshake now gives it a new one at once
    /// instead of after its own retry timers (up to 15 s of black hole).
    /// boringtun sends at most one initiation per REKEY_TIMEOUT (5 s) per
    /// peer, so unauthenticated data cannot make us flood.
    fn wg_rehandshake<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        snap: &Snapshot,
        port: usize,
        tunnel: u32,
        i: usize,
    ) {
        let Some(mut out) = io.alloc() else {
            self.links.stats.dropped(DropReason::NoMbuf);
            return;
        };
        if !out.append(wg::MIN_OUT_LEN) {
            return self.drop_pkt(DropReason::NoMbuf, out);
        }
        match self.wg_peers[i].peer.initiate(false, out.data_mut()) {
            WgOut::Send(n) => {
                out.set_len(n);
                self.links.stats.event(Event::WgControlSent);
                self.wg_send(io, snap, port, tunnel, out);
            }
            WgOut::Drop(d) => self.wg_count(d),
            WgOut::Inner(_) | WgOut::Nothing => {}
        }
    }

    fn wg_count(&self, d: wg::WgDrop) {
        let i = wg::WgDrop::ALL.iter().position(|x| *x == d).unwrap_or(0);
        self.links.stats.wg_dropped(i);
    }

    /// Encrypts an inner packet (Ethernet header in front) for `tunnel` and sends it.
    fn wg_encap<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        snap: &Snapshot,
        in_port: usize,
        tunnel: u32,
        buf: B,
    ) {
        let owner = self.wg_owner(tunnel);
        if owner != self.wg_core {
            return self.wg_handoff(
                owner,
                WgWork::Encap {
                    tunnel,
                    in_port,
                    buf,
                },
            );
        }
        let Some(i) = self.wg_peer_index(tunnel) else {
            return self.drop_pkt(DropReason::NoTunnel, buf);
        };
        let inner = &buf.data()[wire::ETH_LEN..];
        let Some(mut out) = io.alloc() else {
            return self.drop_pkt(DropReason::NoMbuf, buf);
        };
        if !out.append(wg::encap_out_len(inner.len())) {
            return self.drop_pkt(DropReason::NoMbuf, buf);
        }
        match self.wg_peers[i].peer.encapsulate(inner, out.data_mut()) {
            WgOut::Send(n) => {
                out.set_len(n);
                self.links.stats.event(Event::Encapsulated);
                self.wg_send(io, snap, in_port, tunnel, out);
            }
            WgOut::Drop(d) => self.wg_count(d),
            WgOut::Inner(_) | WgOut::Nothing => {}
        }
        drop(buf);
    }

    /// Sends a WireGuard message (UDP payload in `out`) to the tunnel's peer.
    fn wg_send<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        snap: &Snapshot,
        in_port: usize,
        tunnel: u32,
        mut out: B,
    ) {
        let Some(&t) = snap.tunnels.get(tunnel) else {
            return self.drop_pkt(DropReason::NoTunnel, out);
        };
        let dport = self
            .wg_peer_index(tunnel)
            .map(|i| self.wg_peers[i].peer_port)
            .unwrap_or(t.port);
        self.ip_ident = self.ip_ident.wrapping_add(1);
        if !tunnel::encap_udp(&mut out, t.local, t.remote, t.port, dport, self.ip_ident) {
            return self.drop_pkt(DropReason::NoMbuf, out);
        }
        match self.underlay(snap, t.remote, t.remote ^ u32::from(t.port)) {
            Ok((port, nh)) => self.output(io, snap, in_port, port, nh, out, wire::IPV4_MIN, false),
            Err(_) => self.drop_pkt(DropReason::TunnelNoUnderlay, out),
        }
    }

    /// A WireGuard datagram from a configured peer: decrypt, forward the inner
    /// packet; answer handshakes; flush what waited for the handshake.
    #[allow(clippy::too_many_arguments)]
    fn wg_decap<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        snap: &Snapshot,
        port: usize,
        tunnel: u32,
        offset: usize,
        buf: B,
    ) {
        let owner = self.wg_owner(tunnel);
        if owner != self.wg_core {
            return self.wg_handoff(
                owner,
                WgWork::Decap {
                    tunnel,
                    port,
                    offset,
                    buf,
                },
            );
        }
        let Some(i) = self.wg_peer_index(tunnel) else {
            return self.drop_pkt(DropReason::NoTunnel, buf);
        };
        let d = buf.data();
        let h = &d[wire::ETH_LEN..];
        let ihl = usize::from(h[0] & 0x0f) * 4;
        let src = std::net::Ipv4Addr::from(be32(h, ip::SRC));
        let sport = be16(h, ihl);
        let dgram = &d[wire::ETH_LEN + offset..];
        let Some(mut out) = io.alloc() else {
            return self.drop_pkt(DropReason::NoMbuf, buf);
        };
        // Room for the decrypted packet and, for an inner packet, an Ethernet header.
        if !out.append(wg::decap_out_len(dgram.len()) + wire::ETH_LEN) || !out.adj(wire::ETH_LEN) {
            return self.drop_pkt(DropReason::NoMbuf, buf);
        }
        let result = self.wg_peers[i]
            .peer
            .decapsulate(src, dgram, out.data_mut());
        drop(buf);
        match result {
            WgOut::Inner(n) => {
                self.wg_peers[i].peer_port = sport;
                out.set_len(n);
                if !out.prepend(wire::ETH_LEN) {
                    return self.drop_pkt(DropReason::NoMbuf, out);
                }
                let mac = self.cfg.ports[port].mac;
                wire::write_eth(out.data_mut(), &mac, &[0; 6], wire::ETHERTYPE_IPV4);
                self.links.stats.event(Event::Decapsulated);
                self.ipv4(io, snap, port, out, 1);
            }
            WgOut::Send(n) => {
                self.wg_peers[i].peer_port = sport;
                out.set_len(n);
                self.links.stats.event(Event::WgControlSent);
                self.wg_send(io, snap, port, tunnel, out);
            }
            WgOut::Drop(d) => {
                self.wg_count(d);
                if d == wg::WgDrop::NoSession {
                    drop(out);
                    self.wg_rehandshake(io, snap, port, tunnel, i);
                }
                return;
            }
            WgOut::Nothing => {}
        }
        // Packets boringtun queued while the handshake ran (checked before
        // taking a buffer: after a data message there is normally nothing).
        for _ in 0..256 {
            if !self.wg_peers[i].peer.has_flushable() {
                return;
            }
            let Some(mut q) = io.alloc() else { return };
            let mtu = snap
                .tunnels
                .get(tunnel)
                .map(|t| usize::from(t.mtu))
                .unwrap_or(1500);
            if !q.append(wg::encap_out_len(mtu)) {
                return self.drop_pkt(DropReason::NoMbuf, q);
            }
            match self.wg_peers[i].peer.flush_queued(q.data_mut()) {
                WgOut::Send(n) => {
                    q.set_len(n);
                    self.links.stats.event(Event::Encapsulated);
                    self.wg_send(io, snap, port, tunnel, q);
                }
                WgOut::Drop(d) => {
                    self.wg_count(d);
                    return;
                }
                WgOut::Inner(_) | WgOut::Nothing => return,
            }
        }
    }

    /// Fragments an IPv4 packet (DF clear) to `mtu` and sends every fragment.
    #[allow(clippy::too_many_arguments)]
    fn fragment<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        snap: &Snapshot,
        in_port: usize,
        sink: FragSink,
        buf: B,
        ihl: usize,
        mtu: usize,
        forwarded: bool,
    ) {
        let d = buf.data();
        let h = &d[wire::ETH_LEN..];
        let payload = &h[ihl..];
        let flags = be16(h, ip::FLAGS_FRAG);
        let base_off = usize::from(flags & ip::OFFSET_MASK) * 8;
        let orig_mf = flags & ip::MF != 0;
        // Options for non-first fragments: only those with the copied bit.
        let mut later_opts = [0u8; 40];
        let later_len = copied_options(&h[20..ihl], &mut later_opts);
        let mut sent = 0u64;
        let mut off = 0usize;
        let mut first = true;
        while off < payload.len() {
            let hlen = if first { ihl } else { 20 + later_len };
            let room = (mtu - hlen) & !7;
            if room == 0 {
                self.links.stats.dropped(DropReason::FragFailed);
                return;
            }
            let chunk = room.min(payload.len() - off);
            let last = off + chunk == payload.len();
            let Some(mut f) = io.alloc() else {
                self.links.stats.dropped(DropReason::NoMbuf);
                self.links.stats.dropped(DropReason::FragFailed);
                return;
            };
            let flen = wire::ETH_LEN + hlen + chunk;
            if !f.append(flen) {
                self.links.stats.dropped(DropReason::FragFailed);
                return;
            }
            let fd = f.data_mut();
            if let FragSink::Port {
                dst_mac, src_mac, ..
            } = &sink
            {
                wire::write_eth(fd, dst_mac, src_mac, wire::ETHERTYPE_IPV4);
            }
            let fh = &mut fd[wire::ETH_LEN..];
            fh[..20].copy_from_slice(&h[..20]);
            if first {
                fh[20..ihl].copy_from_slice(&h[20..ihl]);
            } else {
                fh[20..hlen].copy_from_slice(&later_opts[..later_len]);
            }
            fh[0] = 0x40 | (hlen / 4) as u8;
            put16(fh, ip::TOTAL_LEN, (hlen + chunk) as u16);
            let mf = if last && !orig_mf { 0 } else { ip::MF };
            // DF is clear on fragments (set only when a tunnel forces fragmentation).
            put16(
                fh,
                ip::FLAGS_FRAG,
                mf | (((base_off + off) / 8) as u16 & ip::OFFSET_MASK),
            );
            if forwarded {
                fh[ip::TTL] -= 1;
            }
            wire::fill_ip_checksum(fh, hlen);
            fh[hlen..hlen + chunk].copy_from_slice(&payload[off..off + chunk]);
            match sink {
                FragSink::Port { out, .. } => self.enqueue(io, out, f),
                FragSink::Tunnel(t) => self.encap_send(io, snap, in_port, &t, f),
            }
            sent += 1;
            off += chunk;
            first = false;
        }
        self.links.stats.event(Event::Fragmented);
        self.links.stats.event_n(Event::FragmentsSent, sent);
        drop(buf);
    }
}

/// The IPv4 destination of an untagged IPv4 frame, unchecked (prefetch hint only).
#[inline(always)]
fn peek_ipv4_dst(d: &[u8]) -> Option<u32> {
    if d.len() >= wire::ETH_LEN + wire::IPV4_MIN && be16(d, 12) == wire::ETHERTYPE_IPV4 {
        Some(be32(d, wire::ETH_LEN + ip::DST))
    } else {
        None
    }
}

/// Copies the IPv4 options that must appear in every fragment (copied flag
/// set, RFC 791) into `out`, padded to a multiple of 4; returns the length.
fn copied_options(opts: &[u8], out: &mut [u8; 40]) -> usize {
    let mut i = 0;
    let mut n = 0;
    while i < opts.len() {
        let t = opts[i];
        match t {
            0 => break,
            1 => i += 1,
            _ => {
                let Some(&l) = opts.get(i + 1) else { break };
                let l = usize::from(l);
                if l < 2 || i + l > opts.len() {
                    break;
                }
                if t & 0x80 != 0 && n + l <= out.len() {
                    out[n..n + l].copy_from_slice(&opts[i..i + l]);
                    n += l;
                }
                i += l;
            }
        }
    }
    while n % 4 != 0 {
        out[n] = 0;
        n += 1;
    }
    n
}

/// Writes an Ethernet + ARP frame (padded to the 60-byte minimum) into `buf`.
fn build_arp<B: PacketBuf>(
    buf: &mut B,
    op: u16,
    sha: &[u8; 6],
    spa: u32,
    tha: &[u8; 6],
    tpa: u32,
    eth_dst: &[u8; 6],
) -> bool {
    if !buf.set_len(wire::MIN_FRAME) {
        return false;
    }
    let d = buf.data_mut();
    d.fill(0);
    wire::write_eth(d, eth_dst, sha, wire::ETHERTYPE_ARP);
    let a = &mut d[wire::ETH_LEN..];
    put16(a, 0, 1);
    put16(a, 2, wire::ETHERTYPE_IPV4);
    a[4] = 6;
    a[5] = 4;
    put16(a, 6, op);
    a[8..14].copy_from_slice(sha);
    put32(a, 14, spa);
    a[18..24].copy_from_slice(tha);
    put32(a, 24, tpa);
    true
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;
