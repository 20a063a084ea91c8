//! Pipeline tests on in-memory ports, one file per stage like the pipeline.
//! This file holds the fixture (`Rig`: a worker, its FIB and ports) and the
//! frame builders and parsers. Frames are built and checked with smoltcp's
//! wire module, an implementation independent of ours.

use super::*;
use crate::fib::{Fib, FibPort};
use crate::packet::{MemBuf, MemPorts};
use crate::snapshot::{Hop, HopGroup, Route};
use cer_shared::feed::{EndpointAction as FeedAction, FibChange, NextHop};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Address, Ipv4Packet, Ipv4Repr,
};
use std::time::{Duration, Instant};

const LAN: usize = 0;
const WAN: usize = 1;
const LAN_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
const WAN_MAC: [u8; 6] = [2, 0, 0, 0, 2, 1];
const HOST_MAC: [u8; 6] = [2, 0, 0, 0, 1, 0x10];
const GW_MAC: [u8; 6] = [2, 0, 0, 0, 2, 0xfe];
const GW2_MAC: [u8; 6] = [2, 0, 0, 0, 2, 0xfd];

fn a(s: &str) -> Ipv4Address {
    let ip: std::net::Ipv4Addr = s.parse().unwrap();
    Ipv4Address::from_bytes(&ip.octets())
}
fn u(s: &str) -> u32 {
    u32::from(s.parse::<std::net::Ipv4Addr>().unwrap())
}

struct Rig {
    io: MemPorts,
    worker: Worker<MemBuf>,
    snap: Arc<ArcSwap<Snapshot>>,
    fib: Fib,
    learn: Arc<ArrayQueue<Learn>>,
    learn6: Arc<ArrayQueue<Learn6>>,
    commands: Arc<ArrayQueue<CoreCommand>>,
    stats: Arc<CoreStats>,
}

impl Rig {
    fn new(with_tap: bool) -> Rig {
        let ports = vec![
            PortInfo {
                mac: LAN_MAC,
                addr: u("10.1.0.1"),
                prefix_len: 24,
                mtu: 9000,
                max_frame: 9000 + 18,
                tap: None,
            },
            PortInfo {
                mac: WAN_MAC,
                addr: u("10.2.0.1"),
                prefix_len: 24,
                mtu: 1400,
                max_frame: 1400 + 18,
                tap: with_tap.then_some(2),
            },
        ];
        let mut roles = vec![IoRole::Phys(0), IoRole::Phys(1)];
        if with_tap {
            roles.push(IoRole::Tap(1));
        }
        let cfg = Arc::new(PipelineConfig {
            ports,
            port_names: vec!["lan".into(), "wan".into()],
            roles: roles.clone(),
            router_addr: u("10.2.0.1"),
            icmp_rate_per_sec: 1000,
            arp_retry_ns: 1_000_000_000,
        });
        let fib = Fib::new(
            vec![
                FibPort {
                    name: "lan".into(),
                    subnet: "10.1.0.0/24".parse().unwrap(),
                    proxy_arp: true,
                },
                FibPort {
                    name: "wan".into(),
                    subnet: "10.2.0.0/24".parse().unwrap(),
                    proxy_arp: false,
                },
            ],
            vec![
                Route {
                    addr: u("10.1.0.0"),
                    len: 24,
                    group: one_hop(0, 0),
                },
                Route {
                    addr: u("10.2.0.0"),
                    len: 24,
                    group: one_hop(1, 0),
                },
            ],
            Duration::from_secs(30),
            Duration::from_secs(60),
        );
        let snap = Arc::new(ArcSwap::from_pointee(Snapshot::empty(2)));
        let learn = Arc::new(ArrayQueue::new(64));
        let commands = Arc::new(ArrayQueue::new(64));
        let stats = Arc::new(CoreStats::new(1));
        let links = CoreLinks {
            snapshot: snap.clone(),
            learn: learn.clone(),
            commands: commands.clone(),
            stats: stats.clone(),
        };
        let learn6 = Arc::new(ArrayQueue::new(64));
        let mut r = Rig {
            io: MemPorts::new(roles.len(), 64),
            worker: Worker::new(cfg, links).with_nd(learn6.clone(), 30),
            learn6,
            snap,
            fib,
            learn,
            commands,
            stats,
        };
        r.publish();
        r
    }

    fn publish(&mut self) {
        while let Some(l) = self.learn.pop() {
            self.fib.learn(l, Instant::now());
        }
        while let Some(l) = self.learn6.pop() {
            self.fib.learn6(l, Instant::now());
        }
        if let Some(s) = self.fib.build() {
            self.snap.store(s);
        }
    }

    fn change(&mut self, c: FibChange) {
        self.fib.apply(&c).unwrap();
        self.publish();
    }

    fn neighbor(&mut self, port: &str, ip: &str, mac: [u8; 6]) {
        self.change(FibChange::NeighborSet {
            port: port.into(),
            ip: ip.parse().unwrap(),
            mac: cer_shared::MacAddr(mac),
        });
    }

    /// 0.0.0.0/0 via 10.2.0.254 on the WAN port.
    fn default_via_wan_gateway(&mut self) {
        self.change(FibChange::RouteSet {
            prefix: "0.0.0.0/0".parse().unwrap(),
            nexthops: vec![NextHop {
                port: "wan".into(),
                gateway: Some("10.2.0.254".parse().unwrap()),
                gateway6: None,
            }],
        });
    }

    fn run(&mut self, port: usize, frame: &[u8]) {
        self.io.inject(port, frame);
        self.worker.poll(&mut self.io);
        self.publish();
    }

    fn drops(&self, r: DropReason) -> u64 {
        self.stats.drops_of(r)
    }

    fn events(&self, e: Event) -> u64 {
        self.stats.events_of(e)
    }

    fn nothing_sent(&mut self) -> bool {
        (0..self.io.tx.len()).all(|p| self.io.tx[p].is_empty())
    }
}

fn one_hop(port: u16, gateway: u32) -> HopGroup {
    let mut g = HopGroup::default();
    g.hops.push(Hop { port, gateway });
    g
}

fn eth(
    dst: [u8; 6],
    src: [u8; 6],
    ethertype: EthernetProtocol,
    payload_len: usize,
) -> (Vec<u8>, usize) {
    let repr = EthernetRepr {
        src_addr: EthernetAddress(src),
        dst_addr: EthernetAddress(dst),
        ethertype,
    };
    let mut buf = vec![0u8; repr.buffer_len() + payload_len];
    repr.emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
    (buf, repr.buffer_len())
}

fn arp_frame(
    op: ArpOperation,
    sha: [u8; 6],
    spa: &str,
    tha: [u8; 6],
    tpa: &str,
    eth_dst: [u8; 6],
) -> Vec<u8> {
    let repr = ArpRepr::EthernetIpv4 {
        operation: op,
        source_hardware_addr: EthernetAddress(sha),
        source_protocol_addr: a(spa),
        target_hardware_addr: EthernetAddress(tha),
        target_protocol_addr: a(tpa),
    };
    let (mut f, off) = eth(eth_dst, sha, EthernetProtocol::Arp, repr.buffer_len());
    repr.emit(&mut ArpPacket::new_unchecked(&mut f[off..]));
    f
}

fn arp_request(sha: [u8; 6], spa: &str, tpa: &str) -> Vec<u8> {
    arp_frame(ArpOperation::Request, sha, spa, [0; 6], tpa, [0xff; 6])
}

fn parse_arp(f: &[u8]) -> ArpRepr {
    let frame = EthernetFrame::new_checked(f).unwrap();
    assert_eq!(frame.ethertype(), EthernetProtocol::Arp);
    ArpRepr::parse(&ArpPacket::new_checked(frame.payload()).unwrap()).unwrap()
}

/// An ICMP echo request (`payload` bytes of data) in an Ethernet frame.
fn ping(dst_mac: [u8; 6], src: &str, dst: &str, ttl: u8, payload: usize) -> Vec<u8> {
    let data = vec![0x5au8; payload];
    let icmp = Icmpv4Repr::EchoRequest {
        ident: 7,
        seq_no: 1,
        data: &data,
    };
    let ip = Ipv4Repr {
        src_addr: a(src),
        dst_addr: a(dst),
        next_header: IpProtocol::Icmp,
        payload_len: icmp.buffer_len(),
        hop_limit: ttl,
    };
    let (mut f, off) = eth(
        dst_mac,
        HOST_MAC,
        EthernetProtocol::Ipv4,
        ip.buffer_len() + icmp.buffer_len(),
    );
    let caps = ChecksumCapabilities::default();
    let mut p = Ipv4Packet::new_unchecked(&mut f[off..]);
    ip.emit(&mut p, &caps);
    icmp.emit(&mut Icmpv4Packet::new_unchecked(p.payload_mut()), &caps);
    f
}

/// `f` (an Ethernet + IPv4 frame) with the IPv4 options `opts` (padded
/// to a multiple of 4 bytes) inserted after its header.
fn with_options(f: &[u8], opts: &[u8]) -> Vec<u8> {
    let mut o = opts.to_vec();
    while !o.len().is_multiple_of(4) {
        o.push(0);
    }
    let mut out = f[..14 + 20].to_vec();
    out.extend_from_slice(&o);
    out.extend_from_slice(&f[14 + 20..]);
    let mut ip = Ipv4Packet::new_unchecked(&mut out[14..]);
    ip.set_header_len((20 + o.len()) as u8);
    let total = ip.total_len() + o.len() as u16;
    ip.set_total_len(total);
    ip.fill_checksum();
    out
}

fn set_df(f: &mut [u8], df: bool) {
    let mut p = Ipv4Packet::new_unchecked(&mut f[14..]);
    p.set_dont_frag(df);
    p.fill_checksum();
}

fn parse_ip(f: &[u8]) -> (EthernetFrame<&[u8]>, Ipv4Packet<&[u8]>) {
    let frame = EthernetFrame::new_checked(f).unwrap();
    assert_eq!(frame.ethertype(), EthernetProtocol::Ipv4);
    let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
    assert!(ip.verify_checksum(), "bad IPv4 checksum");
    (frame, ip)
}

fn expect_icmp_error(f: &[u8], typ: u8, code: u8, dst: &str) -> Vec<u8> {
    let (frame, ip) = parse_ip(f);
    assert_eq!(
        ip.src_addr(),
        a("10.2.0.1"),
        "ICMP errors come from the router address"
    );
    assert_eq!(ip.dst_addr(), a(dst));
    assert_eq!(ip.next_header(), IpProtocol::Icmp);
    let _ = frame;
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum());
    assert_eq!((icmp.msg_type().into(), icmp.msg_code()), (typ, code));
    // The quote is a valid IPv4 header (smoltcp's Repr::parse wants the whole
    // quoted datagram, which ICMP errors never carry, so check the header).
    let quoted = Ipv4Packet::new_unchecked(&ip.payload()[8..]);
    assert_eq!(quoted.version(), 4);
    assert!(
        quoted.verify_checksum(),
        "quoted header is the original, unchanged"
    );
    ip.payload().to_vec()
}

mod arp;
mod burst;
mod forward;
mod ipv4;
mod ipv6;
mod malformed;
mod tunnel;
mod wireguard;
