//! Transport benchmark on in-memory ports: encap and decap Mpps, ns/packet
//! and inner Gbps per core for IPIP, GRE (with key), FOU, GUE and WireGuard
//! at several inner IPv4 packet sizes, through the real `Worker::poll` path
//! (classify, IPv4 checks, /32 exact match, tunnel MTU, TTL, encapsulate or
//! decapsulate, underlay route, neighbor, Ethernet rewrite, tx). Only
//! `Worker::poll` is timed; every round checks that every packet came out on
//! the expected port with the expected length, and the first round checks
//! the bytes (WireGuard output is decrypted by an independent boringtun peer).
//! A counting allocator counts allocations and frees in the measured loop.
//!
//! `cer-bench-transports --sizes 64,512,1400 --packets 10000000 --wg-packets 2000000 --json out.json`

use anyhow::{bail, ensure, Context, Result};
use arc_swap::ArcSwap;
use cer_dataplane::counters::CoreStats;
use cer_dataplane::fib::{Fib, FibPort};
use cer_dataplane::packet::{MemBuf, MemPorts, PacketBuf, HEADROOM, MEM_DATA_ROOM};
use cer_dataplane::pipeline::{
    CoreLinks, IoRole, OwnedWgPeer, PipelineConfig, PortInfo, WgHandoff, Worker,
};
use cer_dataplane::snapshot::{Hop, HopGroup, Route};
use cer_dataplane::tunnel::wireguard::{
    encap_out_len, generate_private_key, public_key_of, WgOut, WgPeer,
};
use cer_dataplane::tunnel::{self, TunnelInfo, TunnelTable};
use cer_dataplane::wire::{self, be16, be32, ip, put16, put32};
use cer_shared::config::TunnelKind;
use cer_shared::feed::{EndpointAction, FibChange};
use cer_shared::MacAddr;
use clap::Parser;
use crossbeam_queue::ArrayQueue;
use serde_json::{json, Value};
use std::alloc::{GlobalAlloc, Layout, System};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counts allocations and frees made while `COUNTING` is set, and keeps
/// freed in-memory packet buffers on a free list for the next `MemBuf::new`.
///
/// WireGuard encrypts and decrypts into a fresh pool buffer and drops the one
/// it received (under DPDK: `rte_pktmbuf_alloc` / `rte_pktmbuf_free` on a
/// mempool, a few ns each). A dropped `MemBuf` is a heap free of ~10 KB, and
/// glibc's chunk consolidation made those frees a third of the measured
/// WireGuard decap time. The free list is the benchmark's mempool: O(1) push
/// and pop, no syscalls. `--glibc-free` turns it off.
struct CountingAlloc;
static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static FREES: AtomicU64 = AtomicU64::new(0);
static RECYCLE: AtomicBool = AtomicBool::new(true);
/// Head of the intrusive free list of `MemBuf` storage blocks (each free
/// block holds the next pointer in its first bytes).
static FREE_LIST: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static FREE_LIST_LOCK: AtomicBool = AtomicBool::new(false);
/// Bytes of one `MemBuf` storage block.
const MEMBUF_BLOCK: usize = HEADROOM + MEM_DATA_ROOM;

fn recyclable(l: &Layout) -> bool {
    l.size() == MEMBUF_BLOCK && l.align() <= 16 && RECYCLE.load(Ordering::Relaxed)
}

fn with_free_list<T>(f: impl FnOnce(&AtomicPtr<u8>) -> T) -> T {
    while FREE_LIST_LOCK
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        std::hint::spin_loop();
    }
    let r = f(&FREE_LIST);
    FREE_LIST_LOCK.store(false, Ordering::Release);
    r
}

// SAFETY: forwards to the system allocator; a freed block of `MEMBUF_BLOCK`
// bytes is kept (not returned) and handed out again for the same layout.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        if recyclable(&l) {
            let p = with_free_list(|head| {
                let p = head.load(Ordering::Relaxed);
                if !p.is_null() {
                    // SAFETY: a free block holds the next pointer at its start.
                    let next = unsafe { p.cast::<*mut u8>().read_unaligned() };
                    head.store(next, Ordering::Relaxed);
                }
                p
            });
            if !p.is_null() {
                return p;
            }
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if COUNTING.load(Ordering::Relaxed) {
            FREES.fetch_add(1, Ordering::Relaxed);
        }
        if recyclable(&l) {
            with_free_list(|head| {
                // SAFETY: the block is ours again and larger than a pointer.
                unsafe {
                    p.cast::<*mut u8>()
                        .write_unaligned(head.load(Ordering::Relaxed))
                };
                head.store(p, Ordering::Relaxed);
            });
            return;
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if recyclable(&l) || n == MEMBUF_BLOCK {
            // Not a path `MemBuf` takes; keeps the free list exact anyway
            // (counted as one allocation and one free).
            // SAFETY: same contract as the caller's; `alloc`/`dealloc` above.
            unsafe {
                let q = self.alloc(Layout::from_size_align_unchecked(n, l.align()));
                if !q.is_null() {
                    std::ptr::copy_nonoverlapping(p, q, l.size().min(n));
                    self.dealloc(p, l);
                }
                return q;
            }
        }
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

#[derive(Parser)]
struct Args {
    /// Transports to measure (ipip, gre, fou, gue, wireguard).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ipip,gre,fou,gue,wireguard"
    )]
    transports: Vec<String>,
    /// Inner IPv4 packet sizes in bytes (IPv4 total length).
    #[arg(long, value_delimiter = ',', default_value = "64,512,1400")]
    sizes: Vec<usize>,
    /// Packets per (transport, direction, size) for IPIP, GRE, FOU and GUE.
    #[arg(long, default_value_t = 10_000_000)]
    packets: u64,
    /// Packets per (direction, size) for WireGuard.
    #[arg(long, default_value_t = 2_000_000)]
    wg_packets: u64,
    /// Distinct inner flows (UDP source ports).
    #[arg(long, default_value_t = 1024)]
    flows: usize,
    /// Directions to measure (encap, decap).
    #[arg(long, value_delimiter = ',', default_value = "encap,decap")]
    directions: Vec<String>,
    /// Free dropped in-memory buffers with glibc instead of the benchmark's
    /// free list (shows how much of the WireGuard figures is heap cost).
    #[arg(long)]
    glibc_free: bool,
    /// Write results as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

const LAN: usize = 0;
const WAN: usize = 1;
const LAN_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
const WAN_MAC: [u8; 6] = [2, 0, 0, 0, 2, 1];
/// The LAN host that owns the local /32.
const HOST_MAC: [u8; 6] = [2, 0, 0, 0, 1, 0x10];
/// The tunnel peer, on the WAN subnet.
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 2, 0xfe];
const LOCAL: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 254);
/// A /32 local on the LAN (decap destination, encap source).
const HOST: Ipv4Addr = Ipv4Addr::new(10, 77, 60, 10);
/// A /32 behind the tunnel (encap destination, decap source).
const FAR: Ipv4Addr = Ipv4Addr::new(10, 77, 60, 20);
const TUNNEL_ID: u32 = 5;
const GRE_KEY: u32 = 0x00c0_ffee;
const PORT_MTU: u16 = 1500;
const BURST: usize = 32;
/// Packets queued per round (refilled outside the timed polls).
const ROUND: usize = 4096;
const WARMUP_ROUNDS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Encap,
    Decap,
}

impl Dir {
    fn name(self) -> &'static str {
        match self {
            Dir::Encap => "encap",
            Dir::Decap => "decap",
        }
    }
}

fn transport(name: &str) -> Result<(TunnelKind, Option<u32>)> {
    Ok(match name {
        "ipip" => (TunnelKind::Ipip, None),
        "gre" => (TunnelKind::Gre, Some(GRE_KEY)),
        "fou" => (TunnelKind::Fou, None),
        "gue" => (TunnelKind::Gue, None),
        "wireguard" | "wg" => (TunnelKind::Wireguard, None),
        other => bail!("unknown transport '{other}': expected ipip, gre, fou, gue or wireguard"),
    })
}

/// An IPv4/UDP packet of exactly `size` bytes from `src:sport` to `dst:4789`.
fn inner_packet(size: usize, src: Ipv4Addr, dst: Ipv4Addr, sport: u16) -> Vec<u8> {
    let mut p = vec![0u8; size];
    p[..12].copy_from_slice(&[0x45, 0, 0, 0, 0, 1, 0, 0, 64, wire::PROTO_UDP, 0, 0]);
    put16(&mut p, ip::TOTAL_LEN, size as u16);
    put32(&mut p, ip::SRC, u32::from(src));
    put32(&mut p, ip::DST, u32::from(dst));
    wire::fill_ip_checksum(&mut p, 20);
    put16(&mut p, 20, sport);
    put16(&mut p, 22, 4789);
    put16(&mut p, 24, (size - 20) as u16);
    for (i, b) in p[28..].iter_mut().enumerate() {
        *b = (i as u8) ^ (sport as u8);
    }
    p
}

fn with_eth(dst: &[u8; 6], src: &[u8; 6], l3: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; wire::ETH_LEN + l3.len()];
    wire::write_eth(&mut f, dst, src, wire::ETHERTYPE_IPV4);
    f[wire::ETH_LEN..].copy_from_slice(l3);
    f
}

/// `got` is `want` forwarded once: TTL one lower, valid header checksum,
/// every other byte identical (no NAT, payload untouched).
fn forwarded_once(got: &[u8], want: &[u8]) -> bool {
    got.len() == want.len()
        && got[..ip::TTL] == want[..ip::TTL]
        && got[ip::TTL] + 1 == want[ip::TTL]
        && got[ip::PROTO] == want[ip::PROTO]
        && got[ip::SRC..] == want[ip::SRC..]
        && wire::checksum(&got[..20]) == 0
}

/// One worker with one tunnel to `PEER`, FAR behind it, HOST local on the LAN.
struct Rig {
    worker: Worker<MemBuf>,
    io: MemPorts,
    stats: Arc<CoreStats>,
    tunnel: TunnelInfo,
    /// The far end's WireGuard state (WireGuard only), after a handshake.
    remote: Option<WgPeer>,
}

fn connected(port: u16) -> HopGroup {
    let mut g = HopGroup::default();
    g.hops.push(Hop { port, gateway: 0 });
    g
}

impl Rig {
    fn new(kind: TunnelKind, gre_key: Option<u32>) -> Result<Rig> {
        let tunnel = TunnelInfo {
            id: TUNNEL_ID,
            kind,
            local: u32::from(LOCAL),
            remote: u32::from(PEER),
            mtu: PORT_MTU - kind.overhead(gre_key.is_some()),
            gre_key,
            port: kind.default_port().unwrap_or(0),
            force_fragment: false,
        };
        let mut fib = Fib::new(
            vec![
                FibPort {
                    name: "lan".into(),
                    subnet: "10.1.0.0/24".parse()?,
                    proxy_arp: false,
                },
                FibPort {
                    name: "wan".into(),
                    subnet: "10.2.0.0/24".parse()?,
                    proxy_arp: false,
                },
            ],
            vec![
                Route {
                    addr: 0x0a01_0000,
                    len: 24,
                    group: connected(0),
                },
                Route {
                    addr: 0x0a02_0000,
                    len: 24,
                    group: connected(1),
                },
            ],
            Duration::from_secs(30),
            Duration::from_secs(300),
        );
        fib.set_tunnels(TunnelTable::build(vec![tunnel]));
        fib.apply_batch(&[
            FibChange::NeighborSet {
                port: "wan".into(),
                ip: PEER,
                mac: MacAddr(PEER_MAC),
            },
            FibChange::NeighborSet {
                port: "lan".into(),
                ip: HOST,
                mac: MacAddr(HOST_MAC),
            },
            FibChange::EndpointSet {
                ip: FAR,
                action: EndpointAction::Tunnel { tunnel: TUNNEL_ID },
            },
            FibChange::EndpointSet {
                ip: HOST,
                action: EndpointAction::Local { port: "lan".into() },
            },
        ])
        .map_err(anyhow::Error::msg)
        .context("bench FIB")?;
        let snap = fib.build().context("snapshot")?;
        let port = |mac, addr: Ipv4Addr| PortInfo {
            mac,
            addr: u32::from(addr),
            prefix_len: 24,
            mtu: PORT_MTU,
            max_frame: PORT_MTU + 18,
            tap: None,
        };
        let cfg = Arc::new(PipelineConfig {
            ports: vec![
                port(LAN_MAC, Ipv4Addr::new(10, 1, 0, 1)),
                port(WAN_MAC, LOCAL),
            ],
            port_names: vec!["lan".into(), "wan".into()],
            roles: vec![IoRole::Phys(0), IoRole::Phys(1)],
            router_addr: u32::from(LOCAL),
            icmp_rate_per_sec: 100,
            arp_retry_ns: 1_000_000_000,
        });
        let stats = Arc::new(CoreStats::new(1));
        let links = CoreLinks {
            snapshot: Arc::new(ArcSwap::new(snap)),
            learn: Arc::new(ArrayQueue::new(64)),
            commands: Arc::new(ArrayQueue::new(64)),
            stats: stats.clone(),
        };
        let mut rig = Rig {
            worker: Worker::new(cfg, links),
            io: MemPorts::new(2, 0),
            stats,
            tunnel,
            remote: None,
        };
        if kind == TunnelKind::Wireguard {
            rig.wireguard_handshake()?;
        }
        Ok(rig)
    }

    /// Gives the worker a WireGuard peer and completes a handshake with a
    /// boringtun peer through `Worker::poll` (the worker initiates).
    fn wireguard_handshake(&mut self) -> Result<()> {
        let (ka, kb) = (generate_private_key(), generate_private_key());
        let pa = public_key_of(&ka).map_err(anyhow::Error::msg)?;
        let pb = public_key_of(&kb).map_err(anyhow::Error::msg)?;
        let ours = WgPeer::new(&ka, &pb, None, None, TUNNEL_ID).map_err(anyhow::Error::msg)?;
        let mut remote = WgPeer::new(&kb, &pa, None, None, 9).map_err(anyhow::Error::msg)?;
        self.worker.set_wireguard(
            0,
            1,
            vec![OwnedWgPeer {
                tunnel: TUNNEL_ID,
                peer: ours,
                peer_port: self.tunnel.port,
            }],
            Arc::new(WgHandoff::new(1)),
        );
        self.io.pool.extend((0..16).map(|_| MemBuf::new()));
        let first = inner_packet(100, HOST, FAR, 1);
        self.io.inject(LAN, &with_eth(&LAN_MAC, &HOST_MAC, &first));
        self.worker.poll(&mut self.io);
        let sent = self.io.sent(WAN);
        ensure!(sent.len() == 1, "expected a handshake initiation");
        let init = udp_payload(&sent[0])?;
        let mut out = vec![0u8; 4096];
        let WgOut::Send(n) = remote.decapsulate(LOCAL, &init, &mut out) else {
            bail!("the boringtun peer rejected our handshake initiation");
        };
        let response = out[..n].to_vec();
        self.io.inject(WAN, &wg_frame(&response));
        self.worker.poll(&mut self.io);
        let sent = self.io.sent(WAN);
        ensure!(
            sent.len() == 2,
            "expected a keepalive and the queued packet"
        );
        let keepalive = udp_payload(&sent[0])?;
        ensure!(matches!(
            remote.decapsulate(LOCAL, &keepalive, &mut out),
            WgOut::Nothing
        ));
        let data = udp_payload(&sent[1])?;
        let WgOut::Inner(n) = remote.decapsulate(LOCAL, &data, &mut out) else {
            bail!("the boringtun peer could not decrypt the first packet");
        };
        ensure!(forwarded_once(&out[..n], &first), "first packet mangled");
        ensure!(self.stats.total_drops() == 0, "drops during the handshake");
        self.io.pool.clear();
        self.remote = Some(remote);
        Ok(())
    }
}

/// The UDP payload of an outer frame the worker sent to the peer.
fn udp_payload(f: &[u8]) -> Result<Vec<u8>> {
    ensure!(f.len() >= wire::ETH_LEN + 28, "short frame");
    let h = &f[wire::ETH_LEN..];
    ensure!(h[ip::PROTO] == wire::PROTO_UDP, "not UDP");
    ensure!(be32(h, ip::DST) == u32::from(PEER), "not to the peer");
    Ok(h[28..].to_vec())
}

/// A frame from the peer (51820 -> 51820) carrying a WireGuard message.
fn wg_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(wire::ETH_LEN + 28 + payload.len());
    wg_frame_into(&mut f, payload);
    f
}

fn wg_frame_into(f: &mut Vec<u8>, payload: &[u8]) {
    f.clear();
    f.resize(wire::ETH_LEN + 28, 0);
    wire::write_eth(f, &WAN_MAC, &PEER_MAC, wire::ETHERTYPE_IPV4);
    let h = &mut f[wire::ETH_LEN..];
    h[..12].copy_from_slice(&[0x45, 0, 0, 0, 0, 7, 0, 0, 64, wire::PROTO_UDP, 0, 0]);
    put16(h, ip::TOTAL_LEN, (28 + payload.len()) as u16);
    put32(h, ip::SRC, u32::from(PEER));
    put32(h, ip::DST, u32::from(LOCAL));
    wire::fill_ip_checksum(h, 20);
    put16(h, 20, 51820);
    put16(h, 22, 51820);
    put16(h, 24, (8 + payload.len()) as u16);
    f.extend_from_slice(payload);
}

struct Row {
    transport: String,
    dir: Dir,
    size: usize,
    packets: u64,
    secs: f64,
    allocs: u64,
    frees: u64,
    drops: u64,
}

impl Row {
    fn mpps(&self) -> f64 {
        self.packets as f64 / self.secs / 1e6
    }
    fn ns(&self) -> f64 {
        self.secs * 1e9 / self.packets as f64
    }
    fn gbps(&self) -> f64 {
        self.packets as f64 * self.size as f64 * 8.0 / self.secs / 1e9
    }
}

fn all_drops(stats: &CoreStats) -> u64 {
    stats.total_drops()
        + stats
            .wg_drops
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum::<u64>()
}

/// Encap or decap `packets` packets of `size` inner bytes through `Worker::poll`.
fn measure(
    rig: &mut Rig,
    name: &str,
    dir: Dir,
    size: usize,
    packets: u64,
    flows: usize,
) -> Result<Row> {
    let t = rig.tunnel;
    let wg = t.kind == TunnelKind::Wireguard;
    let (in_port, out_port) = match dir {
        Dir::Encap => (LAN, WAN),
        Dir::Decap => (WAN, LAN),
    };
    let out_len = wire::ETH_LEN
        + size
        + match dir {
            Dir::Encap => t.overhead(),
            Dir::Decap => 0,
        };
    // Inner packets as they enter the tunnel (encap) or leave it (decap).
    let inners: Vec<Vec<u8>> = (0..flows)
        .map(|i| {
            let sport = 1024 + i as u16;
            match dir {
                Dir::Encap => inner_packet(size, HOST, FAR, sport),
                Dir::Decap => inner_packet(size, FAR, HOST, sport),
            }
        })
        .collect();
    // Frames received by the worker (WireGuard decap: made per round).
    let templates: Vec<Vec<u8>> = match (dir, wg) {
        (Dir::Encap, _) => inners
            .iter()
            .map(|p| with_eth(&LAN_MAC, &HOST_MAC, p))
            .collect(),
        (Dir::Decap, false) => {
            // The peer's view of the tunnel builds what it would send us.
            let mut peer = t;
            peer.local = t.remote;
            peer.remote = t.local;
            inners
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let mut b = MemBuf::from_frame(p);
                    assert!(tunnel::encap(
                        &mut b,
                        &peer,
                        i as u16,
                        i as u32 * 0x9E37_79B9
                    ));
                    wire::write_eth(b.data_mut(), &WAN_MAC, &PEER_MAC, wire::ETHERTYPE_IPV4);
                    b.data().to_vec()
                })
                .collect()
        }
        (Dir::Decap, true) => Vec::new(),
    };
    // Pool buffers the worker takes per packet: WireGuard encrypts/decrypts into
    // a fresh buffer (and decap probes for packets queued during a handshake).
    let pool_need = match (wg, dir) {
        (false, _) => 0,
        (true, Dir::Encap) => ROUND,
        (true, Dir::Decap) => 2 * ROUND,
    };
    let mut spare: Vec<MemBuf> = Vec::with_capacity(ROUND);
    let mut ciphertext = vec![0u8; encap_out_len(size)];
    let mut scratch = Vec::with_capacity(size + 128);
    let mut plain = vec![0u8; size + 128];
    let mut next = 0usize;
    let mut done = 0u64;
    let mut busy = Duration::ZERO;
    let (mut allocs, mut frees) = (0u64, 0u64);
    let drops_before = all_drops(&rig.stats);
    let tx_before = rig.stats.tx[out_port].load(Ordering::Relaxed);
    let mut round = 0usize;
    while done < packets {
        let measured = round >= WARMUP_ROUNDS;
        // Untimed: queue ROUND received frames, top up the buffer pool.
        for _ in 0..ROUND {
            let mut b = spare.pop().unwrap_or_default();
            match (dir, wg) {
                (Dir::Decap, true) => {
                    let remote = rig.remote.as_mut().context("no WireGuard peer")?;
                    let WgOut::Send(n) = remote.encapsulate(&inners[next], &mut ciphertext) else {
                        bail!("the boringtun peer could not encrypt");
                    };
                    wg_frame_into(&mut scratch, &ciphertext[..n]);
                    b.load(&scratch);
                }
                _ => b.load(&templates[next]),
            }
            next = (next + 1) % flows;
            rig.io.rx[in_port].push_back(b);
        }
        while rig.io.pool.len() < pool_need {
            rig.io.pool.push(MemBuf::new());
        }
        let (a0, f0) = (
            ALLOCS.load(Ordering::Relaxed),
            FREES.load(Ordering::Relaxed),
        );
        COUNTING.store(true, Ordering::Relaxed);
        let start = Instant::now();
        for _ in 0..ROUND / BURST {
            rig.worker.poll(&mut rig.io);
        }
        let took = start.elapsed();
        COUNTING.store(false, Ordering::Relaxed);
        if measured {
            busy += took;
            done += ROUND as u64;
            allocs += ALLOCS.load(Ordering::Relaxed) - a0;
            frees += FREES.load(Ordering::Relaxed) - f0;
        }
        // Untimed: every packet came out where and as expected.
        ensure!(
            rig.io.rx[in_port].is_empty(),
            "{name} {}: worker left input queued",
            dir.name()
        );
        ensure!(
            rig.io.tx[in_port].is_empty(),
            "{name} {}: frames sent back out of the input port",
            dir.name()
        );
        let got = rig.io.tx[out_port].len();
        ensure!(
            got == ROUND,
            "{name} {} {size} B: {got} of {ROUND} frames came out (drops {})",
            dir.name(),
            all_drops(&rig.stats) - drops_before
        );
        for (i, b) in rig.io.tx[out_port].iter().enumerate() {
            let f = b.data();
            ensure!(
                f.len() == out_len,
                "{name} {} {size} B: frame of {} bytes, expected {out_len}",
                dir.name(),
                f.len()
            );
            if round == 0 {
                check_frame(
                    rig.remote.as_mut(),
                    &t,
                    dir,
                    f,
                    &inners[i % flows],
                    &mut plain,
                )
                .with_context(|| format!("{name} {} {size} B frame {i}", dir.name()))?;
            }
        }
        spare.extend(rig.io.tx[out_port].drain(..));
        round += 1;
    }
    let drops = all_drops(&rig.stats) - drops_before;
    let sent = rig.stats.tx[out_port].load(Ordering::Relaxed) - tx_before;
    ensure!(drops == 0, "{name} {} {size} B: {drops} drops", dir.name());
    ensure!(
        sent == done + (WARMUP_ROUNDS * ROUND) as u64,
        "{name} {} {size} B: tx counter {sent}",
        dir.name()
    );
    rig.io.pool.clear();
    Ok(Row {
        transport: name.to_string(),
        dir,
        size,
        packets: done,
        secs: busy.as_secs_f64(),
        allocs,
        frees,
        drops,
    })
}

/// Checks one output frame against the inner packet that went in.
fn check_frame(
    remote: Option<&mut WgPeer>,
    t: &TunnelInfo,
    dir: Dir,
    f: &[u8],
    inner: &[u8],
    plain: &mut [u8],
) -> Result<()> {
    let h = &f[wire::ETH_LEN..];
    ensure!(be16(f, 12) == wire::ETHERTYPE_IPV4, "not IPv4");
    match dir {
        Dir::Decap => {
            ensure!(f[..6] == HOST_MAC && f[6..12] == LAN_MAC, "Ethernet header");
            ensure!(forwarded_once(h, inner), "inner packet changed");
        }
        Dir::Encap => {
            ensure!(f[..6] == PEER_MAC && f[6..12] == WAN_MAC, "Ethernet header");
            ensure!(wire::checksum(&h[..20]) == 0, "outer checksum");
            ensure!(
                be32(h, ip::SRC) == t.local && be32(h, ip::DST) == t.remote,
                "outer addresses"
            );
            ensure!(
                usize::from(be16(h, ip::TOTAL_LEN)) == h.len(),
                "outer length"
            );
            let (proto, inner_at) = match t.kind {
                TunnelKind::Ipip => (tunnel::PROTO_IPIP, 20),
                TunnelKind::Gre => (tunnel::PROTO_GRE, t.overhead()),
                TunnelKind::Fou | TunnelKind::Gue => (wire::PROTO_UDP, t.overhead()),
                TunnelKind::Wireguard => (wire::PROTO_UDP, 28),
            };
            ensure!(h[ip::PROTO] == proto, "outer protocol {}", h[ip::PROTO]);
            if t.kind == TunnelKind::Wireguard {
                let remote = remote.context("no WireGuard peer")?;
                let WgOut::Inner(n) = remote.decapsulate(LOCAL, &h[inner_at..], plain) else {
                    bail!("the boringtun peer could not decrypt");
                };
                ensure!(
                    forwarded_once(&plain[..n], inner),
                    "decrypted packet differs"
                );
            } else {
                ensure!(
                    forwarded_once(&h[inner_at..], inner),
                    "inner packet changed"
                );
            }
        }
    }
    Ok(())
}

/// Targets of issue 4 on this machine.
fn targets(rows: &[Row]) -> Vec<Value> {
    let mut out = Vec::new();
    for r in rows {
        let (what, value, target, unit) = match (r.transport.as_str(), r.dir, r.size) {
            ("wireguard", _, 1400) => ("Gbps/core", r.gbps(), 2.0, "Gbps"),
            ("wireguard", _, _) => continue,
            // Issue 12: IPIP/GRE/FOU/GUE encap of 64-byte packets at >= 16 Mpps on one core.
            (_, Dir::Encap, 64) => ("Mpps/core", r.mpps(), 16.0, "Mpps"),
            _ => continue,
        };
        out.push(json!({
            "transport": r.transport, "direction": r.dir.name(), "inner_bytes": r.size,
            "metric": what, "value": value, "target": target, "unit": unit,
            "met": value >= target,
        }));
    }
    out
}

fn main() -> Result<()> {
    let args = Args::parse();
    RECYCLE.store(!args.glibc_free, Ordering::Relaxed);
    ensure!(args.flows > 0 && args.flows <= 60000, "--flows 1..=60000");
    for d in &args.directions {
        ensure!(
            d == "encap" || d == "decap",
            "--directions: '{d}' is not encap or decap"
        );
    }
    for &s in &args.sizes {
        ensure!(
            (28..=1400).contains(&s),
            "inner size {s}: 28..=1400 bytes (the WireGuard tunnel MTU is 1440)"
        );
    }
    println!(
        "{:<10} {:<6} {:>6} {:>10} {:>8} {:>9} {:>11} {:>7} {:>11} {:>6}",
        "transport",
        "dir",
        "bytes",
        "packets",
        "Mpps",
        "ns/pkt",
        "inner Gbps",
        "allocs",
        "frees/pkt",
        "drops"
    );
    let mut rows = Vec::new();
    for name in &args.transports {
        let (kind, key) = transport(name)?;
        let mut rig = Rig::new(kind, key).with_context(|| format!("setting up {name}"))?;
        let packets = if kind == TunnelKind::Wireguard {
            args.wg_packets
        } else {
            args.packets
        };
        for dir in [Dir::Encap, Dir::Decap] {
            if !args.directions.iter().any(|d| d == dir.name()) {
                continue;
            }
            for &size in &args.sizes {
                let r = measure(&mut rig, name, dir, size, packets, args.flows)?;
                println!(
                    "{:<10} {:<6} {:>6} {:>10} {:>8.2} {:>9.1} {:>11.2} {:>7} {:>11.2} {:>6}",
                    r.transport,
                    r.dir.name(),
                    r.size,
                    r.packets,
                    r.mpps(),
                    r.ns(),
                    r.gbps(),
                    r.allocs,
                    r.frees as f64 / r.packets as f64,
                    r.drops
                );
                rows.push(r);
            }
        }
    }
    let targets = targets(&rows);
    println!();
    for t in &targets {
        println!(
            "target {} {} {} B: {:.2} {} (target >= {}) {}",
            t["transport"].as_str().unwrap_or(""),
            t["direction"].as_str().unwrap_or(""),
            t["inner_bytes"],
            t["value"].as_f64().unwrap_or(0.0),
            t["unit"].as_str().unwrap_or(""),
            t["target"],
            if t["met"].as_bool() == Some(true) {
                "MET"
            } else {
                "NOT MET"
            }
        );
    }
    if let Some(p) = args.json {
        let results: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({
                    "transport": r.transport, "direction": r.dir.name(), "inner_bytes": r.size,
                    "packets": r.packets, "seconds_in_poll": r.secs, "mpps": r.mpps(),
                    "ns_per_packet": r.ns(), "inner_gbps": r.gbps(),
                    "allocations_in_measured_loop": r.allocs,
                    "frees_in_measured_loop": r.frees, "drops": r.drops,
                })
            })
            .collect();
        std::fs::write(
            &p,
            serde_json::to_string_pretty(&json!({
                "transports": results, "targets": targets, "flows": args.flows,
                "round_packets": ROUND, "burst": BURST,
                "dropped_buffers": if args.glibc_free { "glibc free" } else { "benchmark free list" },
            }))?,
        )
        .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}
