//! Forward-path benchmark on in-memory ports: Mpps per core and ns/packet
//! for 64-byte frames (60 bytes + FCS) through the full pipeline (classify,
//! IPv4 checks, /32 exact match, neighbor, TTL, Ethernet rewrite), with the
//! /32 table at each requested size. A counting allocator proves the measured
//! loop allocates nothing.
//!
//! `cer-bench-forward --entries 1000,1000000 --packets 50000000 --json out.json`
//!
//! `--capture miss|all` runs a capture on the LAN port's rx while
//! forwarding (`cerctl dataplane capture`'s hot path): `miss` with a filter
//! no packet matches (the cost of the BPF program per packet), `all` with
//! every packet copied into the ring and a writer thread turning the records
//! into pcapng (ring drops counted). Allocations are counted on the
//! forwarding thread only.

use arc_swap::ArcSwap;
use cer_dataplane::counters::{CoreStats, DropReason, Event};
use cer_dataplane::fib::{Fib, FibPort};
use cer_dataplane::packet::{MemBuf, MemPorts, PacketBuf};
use cer_dataplane::pipeline::{CoreLinks, IoRole, PipelineConfig, PortInfo, Worker};
use cer_dataplane::snapshot::Snapshot;
use cer_dataplane::wire;
use cer_shared::feed::{EndpointAction, FibChange};
use cer_shared::MacAddr;
use clap::Parser;
use crossbeam_queue::ArrayQueue;
use serde_json::json;
use std::alloc::{GlobalAlloc, Layout, System};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counts allocations the forwarding thread makes while `COUNTING` is set.
struct CountingAlloc;
static COUNTING: AtomicBool = AtomicBool::new(false);
thread_local! {
    /// Set on the forwarding thread: a capture's writer thread is not counted.
    static FORWARDER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn counted() -> bool {
    COUNTING.load(Ordering::Relaxed) && FORWARDER.with(|f| f.get())
}
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator; only adds a counter.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if counted() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if counted() {
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
    /// /32 table sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "1000,1000000")]
    entries: Vec<usize>,
    /// Packets to forward per table size.
    #[arg(long, default_value_t = 50_000_000)]
    packets: u64,
    /// Distinct flows (destinations drawn from the table).
    #[arg(long, default_value_t = 65536)]
    flows: usize,
    /// Write results as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// A capture on the LAN port's rx while forwarding.
    #[arg(long, value_enum, default_value = "off")]
    capture: CaptureMode,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum CaptureMode {
    /// No capture (the hot path pays one relaxed load per poll).
    Off,
    /// A capture whose filter (`tcp`) no benchmark packet matches.
    Miss,
    /// Every packet captured; a writer thread makes pcapng of the records.
    All,
}

const LAN_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
const WAN_MAC: [u8; 6] = [2, 0, 0, 0, 2, 1];
const BURST: usize = 32;
const QUEUED: usize = 4096;

fn endpoint_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(0x0a80_0000u32 + i as u32)
}

/// A 60-byte UDP frame from 10.1.0.10 to `dst`.
fn frame(dst: Ipv4Addr, sport: u16) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    wire::write_eth(
        &mut f,
        &LAN_MAC,
        &[2, 0, 0, 0, 1, 0x10],
        wire::ETHERTYPE_IPV4,
    );
    let ip = &mut f[14..];
    ip[..20].copy_from_slice(&[
        0x45, 0, 0, 46, 0, 1, 0, 0, 64, 17, 0, 0, 10, 1, 0, 10, 0, 0, 0, 0,
    ]);
    ip[16..20].copy_from_slice(&dst.octets());
    wire::fill_ip_checksum(ip, 20);
    ip[20..22].copy_from_slice(&sport.to_be_bytes());
    ip[22..24].copy_from_slice(&4789u16.to_be_bytes());
    ip[24..26].copy_from_slice(&26u16.to_be_bytes());
    f
}

struct Result1 {
    captured: u64,
    ring_drops: u64,
    entries: usize,
    packets: u64,
    secs: f64,
    allocs: u64,
    forwarded: u64,
    drops: u64,
    build_ms: f64,
}

/// A running benchmark capture: the hub claim, the session, the writer's
/// stop flag and the writer thread (which returns the packets it wrote).
type BenchCapture = (
    cer_dataplane::capture::Claim,
    Arc<cer_dataplane::capture::Session>,
    Arc<AtomicBool>,
    std::thread::JoinHandle<u64>,
);

/// A capture on port 0's rx for `mode`, and its writer thread (pcapng into
/// memory, discarded); the thread stops when the flag is set.
fn start_capture(mode: CaptureMode, worker: &mut Worker<MemBuf>) -> Option<BenchCapture> {
    use cer_dataplane::capture::{libpcap, pcapng::PcapngStream, CaptureHub, Point, Session};
    let filter = match mode {
        CaptureMode::Off => return None,
        CaptureMode::Miss => "tcp",
        CaptureMode::All => "",
    };
    let hub = Arc::new(CaptureHub::default());
    let claim = hub.claim().expect("a fresh hub");
    let prog = libpcap::compile(filter, libpcap::Dlt::Ethernet, 2048).expect("filter");
    let session = Arc::new(Session::new(
        hub.next_id(),
        vec![Point::PortRx(0)],
        Some(prog),
        None,
        2048,
        1,
    ));
    claim.publish(session.clone());
    worker.set_capture(hub, 0);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = std::thread::spawn({
        let (s, stop) = (session.clone(), stop.clone());
        move || {
            let mut pcap =
                PcapngStream::new(&[("port lan rx".into(), libpcap::Dlt::Ethernet)], 2048)
                    .expect("pcapng");
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut got = false;
                while let Some(r) = s.rings[0].pop() {
                    got = true;
                    let _ = pcap.packet(
                        r.point,
                        Duration::from_nanos(r.ts_ns),
                        r.orig_len,
                        &r.data,
                        r.inbound,
                    );
                    n += 1;
                    s.rings[0].recycle(r);
                    if pcap.pending() > 1 << 20 {
                        drop(pcap.take());
                    }
                }
                if !got {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            n
        }
    });
    Some((claim, session, stop, writer))
}

fn run(entries: usize, packets: u64, flows: usize, mode: CaptureMode) -> Result1 {
    let mut fib = Fib::new(
        vec![
            FibPort {
                name: "lan".into(),
                subnet: "10.1.0.0/24".parse().unwrap(),
                proxy_arp: false,
            },
            FibPort {
                name: "wan".into(),
                subnet: "10.2.0.0/24".parse().unwrap(),
                proxy_arp: false,
            },
        ],
        vec![],
        Duration::from_secs(30),
        Duration::from_secs(300),
    );
    let mut changes = Vec::with_capacity(entries * 2);
    for i in 0..entries {
        let ip = endpoint_ip(i);
        changes.push(FibChange::EndpointSet {
            ip,
            action: EndpointAction::Local { port: "wan".into() },
        });
        let o = ip.octets();
        changes.push(FibChange::NeighborSet {
            port: "wan".into(),
            ip,
            mac: MacAddr([2, 0xee, o[0], o[1], o[2], o[3]]),
        });
    }
    let t = Instant::now();
    fib.apply_batch(&changes).expect("bench FIB");
    let snap = fib.build().expect("snapshot");
    let build_ms = t.elapsed().as_secs_f64() * 1e3;
    drop(changes);

    let cfg = Arc::new(PipelineConfig {
        ports: vec![
            PortInfo {
                mac: LAN_MAC,
                addr: 0x0a01_0001,
                prefix_len: 24,
                mtu: 1500,
                max_frame: 1500 + 18,
                tap: None,
            },
            PortInfo {
                mac: WAN_MAC,
                addr: 0x0a02_0001,
                prefix_len: 24,
                mtu: 1500,
                max_frame: 1500 + 18,
                tap: None,
            },
        ],
        port_names: vec!["lan".into(), "wan".into()],
        roles: vec![IoRole::Phys(0), IoRole::Phys(1)],
        router_addr: 0x0a02_0001,
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
    let _: &Snapshot = &links.snapshot.load();
    let mut worker: Worker<MemBuf> = Worker::new(cfg, links);
    let mut io = MemPorts::new(2, 0);
    let capture = start_capture(mode, &mut worker);
    FORWARDER.with(|f| f.set(true));

    // Templates: flows spread over the whole table (cache misses at 1M).
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let templates: Vec<Vec<u8>> = (0..flows)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            frame(endpoint_ip((x as usize) % entries), i as u16)
        })
        .collect();
    let mut free: Vec<MemBuf> = (0..QUEUED).map(|_| MemBuf::new()).collect();
    let mut next = 0usize;
    let mut refill = |io: &mut MemPorts, free: &mut Vec<MemBuf>| {
        while let Some(mut b) = free.pop() {
            b.load(&templates[next]);
            next = (next + 1) % templates.len();
            io.rx[0].push_back(b);
        }
    };
    // Warm up.
    for _ in 0..4 {
        refill(&mut io, &mut free);
        while worker.poll(&mut io) > 0 {}
        free.extend(io.tx[1].drain(..));
    }
    let mut done = 0u64;
    let mut busy = Duration::ZERO;
    let allocs_before = ALLOCS.load(Ordering::Relaxed);
    while done < packets {
        refill(&mut io, &mut free);
        COUNTING.store(true, Ordering::Relaxed);
        let t = Instant::now();
        for _ in 0..QUEUED / BURST {
            worker.poll(&mut io);
        }
        busy += t.elapsed();
        COUNTING.store(false, Ordering::Relaxed);
        done += QUEUED as u64;
        free.extend(io.tx[1].drain(..));
        assert_eq!(free.len(), QUEUED, "every packet must come out");
        let _ = PacketBuf::len(&free[0]);
    }
    FORWARDER.with(|f| f.set(false));
    let (captured, ring_drops) = match capture {
        Some((claim, session, stop, writer)) => {
            claim.stop();
            stop.store(true, Ordering::Relaxed);
            (writer.join().unwrap_or(0), session.ring_drops())
        }
        None => (0, 0),
    };
    Result1 {
        captured,
        ring_drops,
        entries,
        packets: done,
        secs: busy.as_secs_f64(),
        allocs: ALLOCS.load(Ordering::Relaxed) - allocs_before,
        forwarded: stats.events_of(Event::Forwarded),
        drops: DropReason::ALL.iter().map(|d| stats.drops_of(*d)).sum(),
        build_ms,
    }
}

fn main() {
    let args = Args::parse();
    let mut rows = Vec::new();
    println!("capture: {:?}", args.capture);
    println!(
        "{:>9} {:>12} {:>10} {:>10} {:>12} {:>8} {:>12} {:>10} {:>10}",
        "entries",
        "packets",
        "Mpps",
        "ns/pkt",
        "allocations",
        "drops",
        "build ms",
        "captured",
        "ring drop"
    );
    for &n in &args.entries {
        let r = run(n, args.packets, args.flows, args.capture);
        let mpps = r.packets as f64 / r.secs / 1e6;
        let ns = r.secs * 1e9 / r.packets as f64;
        println!(
            "{:>9} {:>12} {:>10.2} {:>10.2} {:>12} {:>8} {:>12.1} {:>10} {:>10}",
            r.entries, r.packets, mpps, ns, r.allocs, r.drops, r.build_ms, r.captured, r.ring_drops
        );
        assert_eq!(r.drops, 0, "the benchmark traffic must all be forwarded");
        assert!(r.forwarded >= r.packets);
        rows.push(json!({
            "entries": r.entries, "packets": r.packets, "mpps": mpps, "ns_per_packet": ns,
            "allocations_in_measured_loop": r.allocs, "drops": r.drops, "snapshot_build_ms": r.build_ms,
            "frame_bytes": 60, "flows": args.flows,
            "capture": format!("{:?}", args.capture).to_lowercase(),
            "captured": r.captured, "ring_drops": r.ring_drops,
        }));
    }
    if let Some(p) = args.json {
        std::fs::write(
            &p,
            serde_json::to_string_pretty(&json!({ "forward": rows })).unwrap(),
        )
        .expect("write json");
    }
}
