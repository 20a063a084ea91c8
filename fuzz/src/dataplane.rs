//! The dataplane pipeline on in-memory ports, as the fuzz targets drive it.
//!
//! `Rig` is one polling core (`Worker`) with a LAN port (proxy ARP, strict
//! uRPF), a WAN port, both ports' exception TAPs, and a tunnel of every
//! kind to its own peer: IPIP, GRE with a key, FOU, GUE and (optionally)
//! WireGuard with a session up. Endpoints sit behind every tunnel and on the
//! LAN, and a default route leaves by the WAN gateway, so a frame can reach
//! every stage: ARP, ND, RFC 1812 checks, reassembly, decapsulation,
//! encapsulation, fragmentation, ICMP errors and the exception path.
//!
//! Inputs are a sequence of records (`Step`), each a frame injected on a
//! port, optionally wrapped in valid outer headers so the fuzzer's bytes
//! land past the parts it would otherwise spend its time guessing (Ethernet
//! addresses, IPv4 checksums, the tunnel peer's address, the GRE key), or a
//! change of the I/O around the worker: the clock, a full tx ring, an empty
//! buffer pool. After every poll the frames the worker sent are checked
//! (`check_sent`): what a router puts on a wire must be a well-formed frame
//! that fits the port.

use crate::replies::read_len;
use arc_swap::ArcSwap;
use cer_dataplane::counters::CoreStats;
use cer_dataplane::packet::{MemBuf, MemPorts, PacketBuf, MEM_DATA_ROOM};
use cer_dataplane::pipeline::{
    CoreLinks, Hygiene, IoRole, OwnedWgPeer, PipelineConfig, PortInfo, WgHandoff, Worker,
};
use cer_dataplane::tunnel::wireguard::{public_key_of, WgOut, WgPeer};
use cer_dataplane::tunnel::{TunnelInfo, TunnelTable};
use cer_dataplane::wire::{self, be16, ip, put16, put32};
use cer_shared::config::{TunnelKind, UrpfMode};
use cer_shared::feed::{EndpointAction, FibChange, NextHop};
use cer_shared::MacAddr;
use crossbeam_queue::ArrayQueue;
use libfuzzer_sys::arbitrary::Unstructured;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

pub const LAN: usize = 0;
pub const WAN: usize = 1;
const LAN_TAP: usize = 2;
const WAN_TAP: usize = 3;
const PORTS: usize = 4;

pub const LAN_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
pub const WAN_MAC: [u8; 6] = [2, 0, 0, 0, 2, 1];
const HOST_MAC: [u8; 6] = [2, 0, 0, 0, 1, 0x10];
const GW_MAC: [u8; 6] = [2, 0, 0, 0, 2, 0xfe];
/// All tunnel peers sit on the WAN segment behind one MAC (a switch port).
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 2, 0x20];

pub const LAN_ADDR: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
pub const WAN_ADDR: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 1);
const HOST: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 16);
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 254);
const LAN_MTU: u16 = 9000;
const WAN_MTU: u16 = 1500;

/// One tunnel per kind: (kind, GRE key, peer address, an endpoint behind it).
const TUNNELS: [(TunnelKind, Option<u32>, Ipv4Addr, Ipv4Addr); 5] = [
    (
        TunnelKind::Ipip,
        None,
        Ipv4Addr::new(10, 2, 0, 31),
        Ipv4Addr::new(10, 77, 1, 1),
    ),
    (
        TunnelKind::Gre,
        Some(0x0102_0304),
        Ipv4Addr::new(10, 2, 0, 32),
        Ipv4Addr::new(10, 77, 2, 1),
    ),
    (
        TunnelKind::Fou,
        None,
        Ipv4Addr::new(10, 2, 0, 33),
        Ipv4Addr::new(10, 77, 3, 1),
    ),
    (
        TunnelKind::Gue,
        None,
        Ipv4Addr::new(10, 2, 0, 34),
        Ipv4Addr::new(10, 77, 4, 1),
    ),
    (
        TunnelKind::Wireguard,
        None,
        Ipv4Addr::new(10, 2, 0, 35),
        Ipv4Addr::new(10, 77, 5, 1),
    ),
];
const WG: usize = 4;

/// Fixed keys, so a crash reproduces from its input alone.
const OUR_KEY: &str = "EBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBA=";
const PEER_KEY: &str = "ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICA=";

fn tunnel_info(i: usize) -> TunnelInfo {
    let (kind, gre_key, peer, _) = TUNNELS[i];
    TunnelInfo {
        id: i as u32 + 1,
        kind,
        local: u32::from(WAN_ADDR),
        remote: u32::from(peer),
        mtu: WAN_MTU - kind.overhead(gre_key.is_some()),
        gre_key,
        port: kind.default_port().unwrap_or(0),
        force_fragment: false,
    }
}

pub struct Rig {
    pub worker: Worker<MemBuf>,
    pub io: MemPorts,
    pub stats: Arc<CoreStats>,
    pub cfg: Arc<PipelineConfig>,
    /// The WireGuard peer's side of the session (with `wireguard`).
    pub remote: Option<WgPeer>,
    /// A kernel frame (from a TAP) is in flight: the router sends those as
    /// the kernel wrote them, so only their size is checked.
    kernel_frame: bool,
    /// When the WireGuard session was made (with `wireguard`).
    session_at: Option<std::time::Instant>,
}

impl Rig {
    /// A fresh rig; with `wireguard`, a WireGuard session is set up first
    /// (the worker initiates, a boringtun peer answers).
    pub fn new(wireguard: bool) -> Rig {
        let tunnels: Vec<TunnelInfo> = (0..TUNNELS.len()).map(tunnel_info).collect();
        let mut fib = crate::two_port_fib();
        fib.set_tunnels(TunnelTable::build(tunnels));
        let mut changes = vec![
            FibChange::RouteSet {
                prefix: "0.0.0.0/0".parse().unwrap(),
                nexthops: vec![NextHop {
                    port: "wan".into(),
                    gateway: Some(GATEWAY),
                    gateway6: None,
                }],
            },
            FibChange::NeighborSet {
                port: "wan".into(),
                ip: GATEWAY,
                mac: MacAddr(GW_MAC),
            },
            FibChange::NeighborSet {
                port: "lan".into(),
                ip: HOST,
                mac: MacAddr(HOST_MAC),
            },
            FibChange::EndpointSet {
                ip: HOST,
                action: EndpointAction::Local { port: "lan".into() },
            },
            // Owned here but not yet resolved: ARP requests, pending queue.
            FibChange::EndpointSet {
                ip: Ipv4Addr::new(10, 1, 0, 17),
                action: EndpointAction::Local { port: "lan".into() },
            },
            FibChange::EndpointSet {
                ip: Ipv4Addr::new(10, 77, 9, 9),
                action: EndpointAction::Drop,
            },
        ];
        for (i, &(_, _, peer, endpoint)) in TUNNELS.iter().enumerate() {
            changes.push(FibChange::NeighborSet {
                port: "wan".into(),
                ip: peer,
                mac: MacAddr(PEER_MAC),
            });
            changes.push(FibChange::EndpointSet {
                ip: endpoint,
                action: EndpointAction::Tunnel {
                    tunnel: i as u32 + 1,
                },
            });
        }
        fib.apply_batch(&changes).expect("fuzz rig FIB");
        let snap = fib.build().expect("fuzz rig snapshot");
        let port = |mac, addr: Ipv4Addr, mtu: u16, tap| PortInfo {
            mac,
            addr: u32::from(addr),
            prefix_len: 24,
            mtu,
            max_frame: mtu + 18,
            tap: Some(tap),
        };
        let cfg = Arc::new(PipelineConfig {
            ports: vec![
                port(LAN_MAC, LAN_ADDR, LAN_MTU, LAN_TAP),
                port(WAN_MAC, WAN_ADDR, WAN_MTU, WAN_TAP),
            ],
            port_names: vec!["lan".into(), "wan".into()],
            roles: vec![
                IoRole::Phys(0),
                IoRole::Phys(1),
                IoRole::Tap(0),
                IoRole::Tap(1),
            ],
            router_addr: u32::from(WAN_ADDR),
            icmp_rate_per_sec: 1000,
            arp_retry_ns: 1_000_000_000,
        });
        let stats = Arc::new(CoreStats::new(1));
        let links = CoreLinks {
            snapshot: Arc::new(ArcSwap::new(snap)),
            learn: Arc::new(ArrayQueue::new(64)),
            commands: Arc::new(ArrayQueue::new(64)),
            stats: stats.clone(),
        };
        let hygiene = Hygiene {
            urpf: vec![UrpfMode::Strict, UrpfMode::Off],
            ..Hygiene::default()
        };
        let worker = Worker::new(cfg.clone(), links)
            .with_hygiene(&hygiene)
            .with_nd(Arc::new(ArrayQueue::new(64)), 30);
        let mut rig = Rig {
            worker,
            io: MemPorts::new(PORTS, 16),
            stats,
            cfg,
            remote: None,
            kernel_frame: false,
            session_at: None,
        };
        if wireguard {
            rig.wireguard_session();
        }
        rig
    }

    fn wireguard_session(&mut self) {
        let ours_pub = public_key_of(OUR_KEY).unwrap();
        let peer_pub = public_key_of(PEER_KEY).unwrap();
        let t = tunnel_info(WG);
        let ours = WgPeer::new(OUR_KEY, &peer_pub, None, None, t.id).unwrap();
        let mut remote = WgPeer::new(PEER_KEY, &ours_pub, None, None, 9).unwrap();
        self.worker.set_wireguard(
            0,
            1,
            vec![OwnedWgPeer {
                tunnel: t.id,
                peer: ours,
                peer_port: t.port,
            }],
            Arc::new(WgHandoff::new(1)),
        );
        // A first packet to the endpoint behind the peer starts the handshake
        // (with buffers and tx room, whatever earlier inputs left).
        for p in 0..PORTS {
            self.io.sent(p);
        }
        self.io.tx_room.iter_mut().for_each(|r| *r = usize::MAX);
        if self.io.pool.len() < 16 {
            self.io.pool.extend((0..16).map(|_| MemBuf::new()));
        }
        let first = ipv4_packet(HOST, TUNNELS[WG].3, wire::PROTO_UDP, &[0; 16]);
        self.inject(
            LAN,
            &eth_frame(&LAN_MAC, &HOST_MAC, wire::ETHERTYPE_IPV4, &first),
        );
        self.worker.poll(&mut self.io);
        // The handshake initiation (message type 1, 148 bytes), among
        // whatever else the worker had to send.
        let init = self
            .io
            .sent(WAN)
            .iter()
            .map(|f| udp_payload(f))
            .find(|p| p.first() == Some(&1) && p.len() == 148)
            .expect("the worker sent no handshake initiation");
        let mut out = vec![0u8; 2048];
        let WgOut::Send(n) = remote.decapsulate(WAN_ADDR, &init, &mut out) else {
            panic!("the boringtun peer refused the worker's handshake");
        };
        let response = out[..n].to_vec();
        self.inject(WAN, &self.wg_datagram(&response));
        self.worker.poll(&mut self.io);
        for p in 0..PORTS {
            self.io.sent(p);
        }
        self.remote = Some(remote);
        self.session_at = Some(std::time::Instant::now());
    }

    /// boringtun keeps session time by the wall clock: a session older than
    /// 90 s is replaced before it expires (REJECT_AFTER_TIME is 180 s), so a
    /// long campaign keeps reaching the decrypted path.
    fn fresh_session(&mut self) {
        if self
            .session_at
            .is_some_and(|t| t.elapsed() > Duration::from_secs(90))
        {
            self.wireguard_session();
        }
    }

    /// Injects a frame (cut to what an in-memory buffer holds).
    pub fn inject(&mut self, port: usize, frame: &[u8]) {
        let n = frame.len().min(MEM_DATA_ROOM);
        self.io.inject(port, &frame[..n]);
    }

    /// A UDP datagram from the WireGuard peer to our WireGuard port.
    pub fn wg_datagram(&self, payload: &[u8]) -> Vec<u8> {
        let t = tunnel_info(WG);
        let udp = udp(51820, t.port, payload);
        let outer = ipv4_packet(TUNNELS[WG].2, WAN_ADDR, wire::PROTO_UDP, &udp);
        eth_frame(&WAN_MAC, &PEER_MAC, wire::ETHERTYPE_IPV4, &outer)
    }

    /// Polls until the worker is idle (bounded) and checks every frame sent.
    pub fn settle(&mut self) {
        for _ in 0..8 {
            let busy = self.worker.poll(&mut self.io) > 0;
            self.check_sent();
            if !busy && self.io.rx.iter().all(|q| q.is_empty()) {
                break;
            }
        }
    }

    /// Every frame on a NIC port must be one a router may send; TAP frames
    /// go to the local kernel and only have to fit a buffer.
    pub fn check_sent(&mut self) {
        for p in 0..PORTS {
            let sent: Vec<MemBuf> = self.io.tx[p].drain(..).collect();
            for b in &sent {
                let f = b.data();
                assert!(f.len() <= MEM_DATA_ROOM, "frame beyond the data room");
                if p < self.cfg.ports.len() {
                    check_wire_frame(&self.cfg.ports[p], f, !self.kernel_frame);
                }
            }
            // Sent buffers go back to the pool, as a PMD frees them.
            let room = 256usize.saturating_sub(self.io.pool.len());
            self.io.pool.extend(sent.into_iter().take(room));
        }
    }

    /// Runs a fuzz input: records until the bytes run out, then settles.
    pub fn run(&mut self, data: &[u8]) {
        self.fresh_session();
        let mut u = Unstructured::new(data);
        let mut steps = 0;
        while !u.is_empty() && steps < 64 {
            steps += 1;
            let Ok(step) = Step::read(&mut u) else { break };
            self.step(step);
        }
        self.io.tx_room.iter_mut().for_each(|r| *r = usize::MAX);
        self.settle();
    }

    fn step(&mut self, s: Step) {
        let ihl_fix = s.fix_checksums;
        match s.kind {
            StepKind::Raw { port } => {
                self.kernel_frame = port >= self.cfg.ports.len();
                self.inject(port, &s.bytes);
            }
            StepKind::FromHost => {
                let mut l3 = s.bytes;
                if ihl_fix {
                    fix_ipv4(&mut l3);
                }
                self.inject(
                    LAN,
                    &eth_frame(&LAN_MAC, &HOST_MAC, wire::ETHERTYPE_IPV4, &l3),
                );
            }
            StepKind::FromGateway => {
                let mut l3 = s.bytes;
                if ihl_fix {
                    fix_ipv4(&mut l3);
                }
                self.inject(
                    WAN,
                    &eth_frame(&WAN_MAC, &GW_MAC, wire::ETHERTYPE_IPV4, &l3),
                );
            }
            StepKind::Tunnel { which } => {
                let mut inner = s.bytes;
                if ihl_fix {
                    fix_ipv4(&mut inner);
                }
                let frame = self.encapsulated(which, &inner);
                self.inject(WAN, &frame);
            }
            StepKind::WgSealed => {
                let mut inner = s.bytes;
                if ihl_fix {
                    fix_ipv4(&mut inner);
                }
                let Some(remote) = self.remote.as_mut() else {
                    return;
                };
                let mut out = vec![0u8; inner.len() + 64];
                if let WgOut::Send(n) = remote.encapsulate(&inner, &mut out) {
                    let frame = self.wg_datagram(&out[..n]);
                    self.inject(WAN, &frame);
                }
            }
            StepKind::Clock { ms } => self.io.now_ns += u64::from(ms) * 1_000_000,
            StepKind::TxRoom { port, room } => self.io.tx_room[port] = room,
            StepKind::Pool { keep } => self.io.pool.truncate(keep),
            StepKind::Poll => {}
        }
        self.worker.poll(&mut self.io);
        self.check_sent();
        self.kernel_frame = false;
    }

    /// `inner` as tunnel `which`'s peer sends it to us.
    fn encapsulated(&self, which: usize, inner: &[u8]) -> Vec<u8> {
        let t = tunnel_info(which);
        let peer = TUNNELS[which].2;
        let (proto, payload) = match t.kind {
            TunnelKind::Ipip => (4, inner.to_vec()),
            TunnelKind::Gre => {
                let mut g = vec![0x20, 0, 0x08, 0];
                g.extend_from_slice(&t.gre_key.unwrap_or(0).to_be_bytes());
                g.extend_from_slice(inner);
                (47, g)
            }
            TunnelKind::Fou => (wire::PROTO_UDP, udp(40000, t.port, inner)),
            TunnelKind::Gue => {
                let mut g = vec![0, 4, 0, 0];
                g.extend_from_slice(inner);
                (wire::PROTO_UDP, udp(40000, t.port, &g))
            }
            TunnelKind::Wireguard => (wire::PROTO_UDP, udp(51820, t.port, inner)),
        };
        let outer = ipv4_packet(peer, WAN_ADDR, proto, &payload);
        eth_frame(&WAN_MAC, &PEER_MAC, wire::ETHERTYPE_IPV4, &outer)
    }
}

/// One record of a fuzz input.
pub struct Step {
    kind: StepKind,
    fix_checksums: bool,
    bytes: Vec<u8>,
}

enum StepKind {
    /// The bytes are the whole frame, on any I/O port (NIC or TAP).
    Raw {
        port: usize,
    },
    /// The bytes are an IPv4 packet from the LAN host.
    FromHost,
    /// The bytes are an IPv4 packet from the WAN gateway.
    FromGateway,
    /// The bytes are the inner packet of a tunnel peer's packet to us.
    Tunnel {
        which: usize,
    },
    /// The bytes are sealed by the WireGuard peer's session (if up).
    WgSealed,
    Clock {
        ms: u32,
    },
    TxRoom {
        port: usize,
        room: usize,
    },
    Pool {
        keep: usize,
    },
    Poll,
}

impl Step {
    fn read(u: &mut Unstructured) -> libfuzzer_sys::arbitrary::Result<Step> {
        let op: u8 = u.arbitrary()?;
        let fix_checksums = op & 0x80 != 0;
        let kind = match op & 0x0f {
            0 | 1 => StepKind::Raw {
                port: usize::from(u.arbitrary::<u8>()?) % PORTS,
            },
            2 | 3 => StepKind::FromHost,
            4 => StepKind::FromGateway,
            5..=7 => StepKind::Tunnel {
                which: usize::from(u.arbitrary::<u8>()?) % TUNNELS.len(),
            },
            8 | 9 => StepKind::WgSealed,
            10 => StepKind::Clock {
                ms: read_len(u)? as u32 * 16,
            },
            11 => StepKind::TxRoom {
                port: usize::from(u.arbitrary::<u8>()?) % PORTS,
                room: usize::from(u.arbitrary::<u8>()? % 4),
            },
            12 => StepKind::Pool {
                keep: usize::from(u.arbitrary::<u8>()? % 8),
            },
            _ => StepKind::Poll,
        };
        let len = read_len(u)? % (MEM_DATA_ROOM + 1);
        let len = len.min(u.len());
        let bytes = u.bytes(len)?.to_vec();
        Ok(Step {
            kind,
            fix_checksums,
            bytes,
        })
    }
}

/// What a router may put on a wire: an Ethernet frame within the port's
/// largest frame; IPv4 with a valid header that fits the frame and the MTU,
/// a live TTL and no martian address (RFC 1812 5.3.7: 0/8, 127/8 never
/// leave a router). The IPv4 checks are skipped for the kernel's frames.
fn check_wire_frame(port: &PortInfo, f: &[u8], ipv4: bool) {
    assert!(
        f.len() >= wire::ETH_LEN,
        "runt frame sent: {} bytes",
        f.len()
    );
    assert!(
        f.len() <= usize::from(port.max_frame),
        "frame of {} bytes on a port whose largest frame is {}",
        f.len(),
        port.max_frame
    );
    if !ipv4 || be16(f, 12) != wire::ETHERTYPE_IPV4 {
        return;
    }
    let h = &f[wire::ETH_LEN..];
    assert!(h.len() >= 20, "truncated IPv4 header sent");
    assert_eq!(h[0] >> 4, 4, "IPv4 frame without version 4");
    let ihl = usize::from(h[0] & 0x0f) * 4;
    assert!(ihl >= 20 && ihl <= h.len(), "bad IHL sent");
    assert_eq!(
        wire::checksum(&h[..ihl]),
        0,
        "bad IPv4 header checksum sent"
    );
    let total = usize::from(be16(h, ip::TOTAL_LEN));
    assert!(
        total >= ihl && total <= h.len(),
        "IPv4 total length beyond the frame"
    );
    assert!(
        total <= usize::from(port.mtu),
        "IPv4 packet above the port MTU"
    );
    assert!(h[ip::TTL] > 0, "TTL 0 sent");
    for (what, a) in [("source", h[ip::SRC]), ("destination", h[ip::DST])] {
        assert!(a != 0 && a != 127, "martian {what} {}.x.x.x sent", a);
    }
}

/// Sets the IPv4 header checksum of `p` if it looks like an IPv4 header
/// (and the total length to the bytes there are when it says 0).
fn fix_ipv4(p: &mut [u8]) {
    if p.len() < 20 || p[0] >> 4 != 4 {
        return;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    if ihl < 20 || ihl > p.len() {
        return;
    }
    if be16(p, ip::TOTAL_LEN) == 0 {
        put16(p, ip::TOTAL_LEN, p.len().min(0xffff) as u16);
    }
    wire::fill_ip_checksum(p, ihl);
}

fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 20];
    p[..12].copy_from_slice(&[0x45, 0, 0, 0, 0, 1, 0, 0, 64, proto, 0, 0]);
    put16(
        &mut p,
        ip::TOTAL_LEN,
        (20 + payload.len()).min(0xffff) as u16,
    );
    put32(&mut p, ip::SRC, u32::from(src));
    put32(&mut p, ip::DST, u32::from(dst));
    wire::fill_ip_checksum(&mut p, 20);
    p.extend_from_slice(payload);
    p
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = vec![0u8; 8];
    put16(&mut u, 0, sport);
    put16(&mut u, 2, dport);
    put16(&mut u, 4, (8 + payload.len()).min(0xffff) as u16);
    u.extend_from_slice(payload);
    u
}

fn eth_frame(dst: &[u8; 6], src: &[u8; 6], ethertype: u16, l3: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; wire::ETH_LEN];
    wire::write_eth(&mut f, dst, src, ethertype);
    f.extend_from_slice(l3);
    f
}

/// The UDP payload of an IPv4 frame (the rig's own frames: well formed).
fn udp_payload(f: &[u8]) -> Vec<u8> {
    let Some(h) = f.get(wire::ETH_LEN..) else {
        return Vec::new();
    };
    let ihl = usize::from(h.first().copied().unwrap_or(0) & 0x0f) * 4;
    h.get(ihl + 8..).map(<[u8]>::to_vec).unwrap_or_default()
}
