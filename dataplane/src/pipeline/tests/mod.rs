//! Pipeline tests on in-memory ports. Frames are built and checked with
//! smoltcp's wire module, an implementation independent of ours.

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
                proxy_arp: true,
                tap: None,
            },
            PortInfo {
                mac: WAN_MAC,
                addr: u("10.2.0.1"),
                prefix_len: 24,
                mtu: 1400,
                max_frame: 1400 + 18,
                proxy_arp: false,
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
                },
                FibPort {
                    name: "wan".into(),
                    subnet: "10.2.0.0/24".parse().unwrap(),
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

#[test]
fn arp_reply_for_port_address() {
    let mut r = Rig::new(false);
    r.run(LAN, &arp_request(HOST_MAC, "10.1.0.10", "10.1.0.1"));
    let out = r.io.sent(LAN);
    assert_eq!(out.len(), 1);
    match parse_arp(&out[0]) {
        ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            target_hardware_addr,
            target_protocol_addr,
        } => {
            assert_eq!(operation, ArpOperation::Reply);
            assert_eq!(source_hardware_addr.0, LAN_MAC);
            assert_eq!(source_protocol_addr, a("10.1.0.1"));
            assert_eq!(target_hardware_addr.0, HOST_MAC);
            assert_eq!(target_protocol_addr, a("10.1.0.10"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(&out[0][0..6], &HOST_MAC);
    assert_eq!(r.events(Event::ArpReplySent), 1);
    // The requester was learned.
    let n = r.snap.load().neighbors.get(0, u("10.1.0.10")).unwrap();
    assert_eq!(n.mac, HOST_MAC);
}

#[test]
fn arp_for_foreign_target_is_dropped_silently() {
    let mut r = Rig::new(false);
    r.run(LAN, &arp_request(HOST_MAC, "10.1.0.10", "10.1.0.99"));
    assert!(r.nothing_sent());
    assert_eq!(r.drops(DropReason::ArpNotForUs), 1);
    // Not learned: the request was not for us.
    assert!(r.snap.load().neighbors.get(0, u("10.1.0.10")).is_none());
}

#[test]
fn proxy_arp_answers_only_while_active_and_only_on_enabled_ports() {
    let mut r = Rig::new(false);
    r.change(FibChange::ProxyArpSet {
        ip: "10.1.0.77".parse().unwrap(),
    });
    // Gate closed (VRRP backup): silent.
    r.run(LAN, &arp_request(HOST_MAC, "10.1.0.10", "10.1.0.77"));
    assert!(r.nothing_sent());
    assert_eq!(r.events(Event::ProxyArpSilent), 1);
    r.change(FibChange::ProxyArpActive { active: true });
    r.run(LAN, &arp_request(HOST_MAC, "10.1.0.10", "10.1.0.77"));
    let out = r.io.sent(LAN);
    assert_eq!(out.len(), 1);
    let ArpRepr::EthernetIpv4 {
        source_hardware_addr,
        source_protocol_addr,
        ..
    } = parse_arp(&out[0])
    else {
        unreachable!()
    };
    assert_eq!(source_hardware_addr.0, LAN_MAC);
    assert_eq!(source_protocol_addr, a("10.1.0.77"));
    assert_eq!(r.events(Event::ProxyArpReplySent), 1);
    // WAN has proxy_arp = false.
    r.run(WAN, &arp_request(GW_MAC, "10.2.0.254", "10.1.0.77"));
    assert!(r.nothing_sent());
    // A gratuitous ARP from someone else for the captured /32 is never answered,
    // and raises the duplicate-holder alarm.
    r.run(LAN, &arp_request(HOST_MAC, "10.1.0.77", "10.1.0.77"));
    assert!(r.nothing_sent());
    assert_eq!(r.events(Event::DuplicateHolder), 1);
    // Deactivated again: silent.
    r.change(FibChange::ProxyArpActive { active: false });
    r.run(LAN, &arp_request(HOST_MAC, "10.1.0.10", "10.1.0.77"));
    assert!(r.nothing_sent());
}

#[test]
fn resolution_requests_rate_limits_then_forwards() {
    let mut r = Rig::new(false);
    r.change(FibChange::EndpointSet {
        ip: "10.77.60.10".parse().unwrap(),
        action: FeedAction::Local { port: "lan".into() },
    });
    r.run(WAN, &ping(WAN_MAC, "10.2.0.50", "10.77.60.10", 64, 32));
    let out = r.io.sent(LAN);
    assert_eq!(out.len(), 1, "one ARP request");
    let ArpRepr::EthernetIpv4 {
        operation,
        source_protocol_addr,
        target_protocol_addr,
        ..
    } = parse_arp(&out[0])
    else {
        unreachable!()
    };
    assert_eq!(
        (operation, source_protocol_addr, target_protocol_addr),
        (ArpOperation::Request, a("10.1.0.1"), a("10.77.60.10"))
    );
    assert_eq!(&out[0][0..6], &[0xff; 6]);
    assert_eq!(r.drops(DropReason::NeighborUnresolved), 1);
    // Second packet within arp_retry: no new request.
    r.run(WAN, &ping(WAN_MAC, "10.2.0.50", "10.77.60.10", 64, 32));
    assert!(r.io.sent(LAN).is_empty());
    assert_eq!(r.events(Event::ArpRequestSuppressed), 1);
    // After the retry interval a new request goes out.
    r.io.now_ns += 1_100_000_000;
    r.run(WAN, &ping(WAN_MAC, "10.2.0.50", "10.77.60.10", 64, 32));
    assert_eq!(r.io.sent(LAN).len(), 1);
    // The reply teaches the neighbor, although the /32 is outside the LAN subnet.
    r.run(
        LAN,
        &arp_frame(
            ArpOperation::Reply,
            HOST_MAC,
            "10.77.60.10",
            LAN_MAC,
            "10.1.0.1",
            LAN_MAC,
        ),
    );
    assert_eq!(
        r.snap
            .load()
            .neighbors
            .get(0, u("10.77.60.10"))
            .unwrap()
            .mac,
        HOST_MAC
    );
    // An unsolicited ARP from a stranger teaches nothing.
    r.run(
        LAN,
        &arp_request([2, 0, 0, 0, 9, 9], "10.77.60.99", "10.77.60.99"),
    );
    assert!(r.snap.load().neighbors.get(0, u("10.77.60.99")).is_none());
    let pkt = ping(WAN_MAC, "10.2.0.50", "10.77.60.10", 64, 32);
    r.run(WAN, &pkt);
    let out = r.io.sent(LAN);
    assert_eq!(out.len(), 1);
    let (frame, ip) = parse_ip(&out[0]);
    assert_eq!(frame.dst_addr().0, HOST_MAC);
    assert_eq!(frame.src_addr().0, LAN_MAC);
    assert_eq!(ip.hop_limit(), 63);
    assert_eq!(ip.src_addr(), a("10.2.0.50"), "source preserved");
    assert_eq!(ip.dst_addr(), a("10.77.60.10"));
    // Inner bytes other than TTL and checksum are untouched.
    assert_eq!(&out[0][14 + 20..], &pkt[14 + 20..]);
    assert_eq!(r.events(Event::Forwarded), 1);
}

#[test]
fn arp_reply_teaches_on_link_neighbor() {
    let mut r = Rig::new(false);
    r.run(WAN, &ping(WAN_MAC, "10.2.0.50", "10.1.0.10", 64, 8));
    assert_eq!(r.io.sent(LAN).len(), 1);
    r.run(
        LAN,
        &arp_frame(
            ArpOperation::Reply,
            HOST_MAC,
            "10.1.0.10",
            LAN_MAC,
            "10.1.0.1",
            LAN_MAC,
        ),
    );
    assert_eq!(r.events(Event::ArpLearned), 1);
    assert_eq!(r.events(Event::ArpReplyConsumed), 1);
    r.run(WAN, &ping(WAN_MAC, "10.2.0.50", "10.1.0.10", 64, 8));
    let out = r.io.sent(LAN);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0][0..6], &HOST_MAC);
}

#[test]
fn lpm_default_route_and_ecmp() {
    let mut r = Rig::new(false);
    r.neighbor("wan", "10.2.0.254", GW_MAC);
    r.neighbor("wan", "10.2.0.253", GW2_MAC);
    r.default_via_wan_gateway();
    r.run(LAN, &ping(LAN_MAC, "10.1.0.10", "192.0.2.1", 64, 8));
    let out = r.io.sent(WAN);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0][0..6], &GW_MAC);
    // ECMP over two gateways, stable per flow.
    r.change(FibChange::RouteSet {
        prefix: "0.0.0.0/0".parse().unwrap(),
        nexthops: vec![
            NextHop {
                port: "wan".into(),
                gateway: Some("10.2.0.254".parse().unwrap()),
                gateway6: None,
            },
            NextHop {
                port: "wan".into(),
                gateway: Some("10.2.0.253".parse().unwrap()),
                gateway6: None,
            },
        ],
    });
    let mut used = [0; 2];
    for i in 0..64 {
        let dst = format!("198.51.100.{i}");
        r.run(LAN, &ping(LAN_MAC, "10.1.0.10", &dst, 64, 8));
        r.run(LAN, &ping(LAN_MAC, "10.1.0.10", &dst, 64, 8));
        let out = r.io.sent(WAN);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0][0..6], out[1][0..6], "same flow, same next hop");
        used[usize::from(out[0][0..6] == GW2_MAC)] += 1;
    }
    assert!(used[0] > 8 && used[1] > 8, "{used:?}");
}

#[test]
fn exact_match_beats_lpm_and_tunnel_or_drop_actions_count() {
    let mut r = Rig::new(false);
    r.neighbor("wan", "10.2.0.254", GW_MAC);
    r.neighbor("lan", "10.77.60.10", HOST_MAC);
    r.change(FibChange::RouteSet {
        prefix: "10.77.60.0/24".parse().unwrap(),
        nexthops: vec![NextHop {
            port: "wan".into(),
            gateway: Some("10.2.0.254".parse().unwrap()),
            gateway6: None,
        }],
    });
    r.change(FibChange::EndpointSet {
        ip: "10.77.60.10".parse().unwrap(),
        action: FeedAction::Local { port: "lan".into() },
    });
    r.change(FibChange::EndpointSet {
        ip: "10.77.60.11".parse().unwrap(),
        action: FeedAction::Tunnel { tunnel: 3 },
    });
    r.change(FibChange::EndpointSet {
        ip: "10.77.60.12".parse().unwrap(),
        action: FeedAction::Drop,
    });
    r.run(WAN, &ping(WAN_MAC, "10.2.0.50", "10.77.60.10", 64, 8));
    assert_eq!(r.io.sent(LAN).len(), 1);
    r.run(LAN, &ping(LAN_MAC, "10.1.0.10", "10.77.60.13", 64, 8));
    assert_eq!(
        r.io.sent(WAN).len(),
        1,
        "LPM fallback for a /32 not in the table"
    );
    r.run(LAN, &ping(LAN_MAC, "10.1.0.10", "10.77.60.11", 64, 8));
    r.run(LAN, &ping(LAN_MAC, "10.1.0.10", "10.77.60.12", 64, 8));
    assert!(r.nothing_sent());
    assert_eq!(r.drops(DropReason::NoTunnel), 1);
    assert_eq!(r.drops(DropReason::EndpointDrop), 1);
    // Moving the /32 changes where packets go, without restarting anything.
    r.change(FibChange::EndpointDel {
        ip: "10.77.60.10".parse().unwrap(),
    });
    r.run(LAN, &ping(LAN_MAC, "10.1.0.10", "10.77.60.10", 64, 8));
    assert_eq!(r.io.sent(WAN).len(), 1);
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

#[test]
fn ttl_expiry_sends_time_exceeded_from_router_address() {
    let mut r = Rig::new(false);
    r.neighbor("lan", "10.1.0.10", HOST_MAC);
    r.neighbor("wan", "10.2.0.254", GW_MAC);
    r.default_via_wan_gateway();
    let pkt = ping(LAN_MAC, "10.1.0.10", "192.0.2.1", 1, 16);
    r.run(LAN, &pkt);
    assert!(r.io.sent(WAN).is_empty());
    let out = r.io.sent(LAN);
    assert_eq!(out.len(), 1);
    let icmp = expect_icmp_error(&out[0], 11, 0, "10.1.0.10");
    // Quote: the original header + 8 bytes.
    assert_eq!(&icmp[8..8 + 28], &pkt[14..14 + 28]);
    assert_eq!(&out[0][0..6], &HOST_MAC);
    assert_eq!(r.drops(DropReason::TtlExpired), 1);
    assert_eq!(r.events(Event::IcmpSent), 1);
    // TTL 0 too.
    r.run(LAN, &ping(LAN_MAC, "10.1.0.10", "192.0.2.1", 0, 16));
    assert_eq!(r.drops(DropReason::TtlExpired), 2);
}

#[test]
fn no_route_sends_unreachable_and_icmp_is_rate_limited() {
    let mut r = Rig::new(false);
    r.neighbor("lan", "10.1.0.10", HOST_MAC);
    r.run(LAN, &ping(LAN_MAC, "10.1.0.10", "192.0.2.1", 64, 16));
    let out = r.io.sent(LAN);
    assert_eq!(out.len(), 1);
    expect_icmp_error(&out[0], 3, 0, "10.1.0.10");
    assert_eq!(r.drops(DropReason::NoRoute), 1);
    // Burst well past the bucket: some are rate limited, none panics.
    for _ in 0..200 {
        r.run(LAN, &ping(LAN_MAC, "10.1.0.10", "192.0.2.1", 64, 16));
    }
    assert!(r.events(Event::IcmpRateLimited) > 0);
    assert!(r.events(Event::IcmpSent) <= 51);
}

#[test]
fn df_too_big_gets_frag_needed_with_mtu() {
    let mut r = Rig::new(false);
    r.neighbor("lan", "10.1.0.10", HOST_MAC);
    r.neighbor("wan", "10.2.0.254", GW_MAC);
    r.default_via_wan_gateway();
    let mut pkt = ping(LAN_MAC, "10.1.0.10", "192.0.2.1", 64, 1450);
    set_df(&mut pkt, true);
    r.run(LAN, &pkt);
    assert!(r.io.sent(WAN).is_empty());
    let out = r.io.sent(LAN);
    let icmp = expect_icmp_error(&out[0], 3, 4, "10.1.0.10");
    assert_eq!(
        u16::from_be_bytes([icmp[6], icmp[7]]),
        1400,
        "next-hop MTU of the WAN port"
    );
    assert_eq!(r.drops(DropReason::FragNeeded), 1);
}

#[test]
fn df_clear_too_big_is_fragmented_and_reassembles() {
    let mut r = Rig::new(false);
    r.neighbor("wan", "10.2.0.254", GW_MAC);
    r.default_via_wan_gateway();
    let mut pkt = ping(LAN_MAC, "10.1.0.10", "192.0.2.1", 64, 3000);
    set_df(&mut pkt, false);
    r.run(LAN, &pkt);
    let out = r.io.sent(WAN);
    let dropped: Vec<_> = DropReason::ALL
        .iter()
        .filter(|d| r.drops(**d) > 0)
        .map(|d| d.name())
        .collect();
    assert_eq!(out.len(), 3, "drops: {dropped:?}");
    let orig = Ipv4Packet::new_checked(&pkt[14..]).unwrap();
    let mut payload = Vec::new();
    for (i, f) in out.iter().enumerate() {
        let (frame, ip) = parse_ip(f);
        assert_eq!(frame.dst_addr().0, GW_MAC);
        assert!(ip.total_len() <= 1400);
        assert_eq!(ip.ident(), orig.ident());
        assert_eq!(ip.hop_limit(), 63);
        assert_eq!(usize::from(ip.frag_offset()), payload.len());
        assert_eq!(ip.more_frags(), i < 2);
        payload.extend_from_slice(ip.payload());
    }
    assert_eq!(payload, orig.payload());
    assert_eq!(r.events(Event::FragmentsSent), 3);
}

#[test]
fn router_answers_echo_without_tap_and_punts_with_tap() {
    let mut r = Rig::new(false);
    r.neighbor("lan", "10.1.0.10", HOST_MAC);
    r.run(LAN, &ping(LAN_MAC, "10.1.0.10", "10.1.0.1", 64, 16));
    let out = r.io.sent(LAN);
    assert_eq!(out.len(), 1);
    let (_, ip) = parse_ip(&out[0]);
    assert_eq!(
        (ip.src_addr(), ip.dst_addr()),
        (a("10.1.0.1"), a("10.1.0.10"))
    );
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum());
    assert!(matches!(
        Icmpv4Repr::parse(&icmp, &ChecksumCapabilities::default()).unwrap(),
        Icmpv4Repr::EchoReply {
            ident: 7,
            seq_no: 1,
            ..
        }
    ));
    // TCP to the router without a TAP: counted drop.
    let mut tcp = ping(LAN_MAC, "10.1.0.10", "10.1.0.1", 64, 16);
    tcp[14 + 9] = 6;
    Ipv4Packet::new_unchecked(&mut tcp[14..]).fill_checksum();
    r.run(LAN, &tcp);
    assert_eq!(r.drops(DropReason::NoExceptionPath), 1);

    let mut r = Rig::new(true);
    let pkt = ping(WAN_MAC, "10.2.0.50", "10.2.0.1", 64, 16);
    r.run(WAN, &pkt);
    let out = r.io.sent(2);
    assert_eq!(out, vec![pkt.clone()], "punted unchanged to the TAP");
    // Kernel frames from the TAP leave on the paired NIC port unchanged.
    r.run(2, &pkt);
    assert_eq!(r.io.sent(WAN), vec![pkt]);
    assert_eq!(r.events(Event::FromTap), 1);
    // ARP replies for us reach the kernel too.
    r.run(
        WAN,
        &arp_frame(
            ArpOperation::Reply,
            GW_MAC,
            "10.2.0.254",
            WAN_MAC,
            "10.2.0.1",
            WAN_MAC,
        ),
    );
    assert_eq!(r.io.sent(2).len(), 1);
}

#[test]
fn gratuitous_arp_on_command() {
    let mut r = Rig::new(false);
    r.commands
        .push(CoreCommand::GratuitousArp {
            port: 0,
            ip: u("10.1.0.77"),
        })
        .unwrap();
    r.worker.poll(&mut r.io);
    let out = r.io.sent(LAN);
    assert_eq!(out.len(), 1);
    let ArpRepr::EthernetIpv4 {
        source_protocol_addr,
        target_protocol_addr,
        source_hardware_addr,
        ..
    } = parse_arp(&out[0])
    else {
        unreachable!()
    };
    assert_eq!(source_protocol_addr, target_protocol_addr);
    assert_eq!(source_hardware_addr.0, LAN_MAC);
    assert_eq!(&out[0][0..6], &[0xff; 6]);
    assert_eq!(r.events(Event::GratuitousArpSent), 1);
}

#[test]
fn every_malformed_input_has_a_named_drop() {
    let mut r = Rig::new(false);
    let good = ping(LAN_MAC, "10.1.0.10", "10.1.0.1", 64, 16);
    let mut cases: Vec<(Vec<u8>, DropReason)> = vec![
        (good[..10].to_vec(), DropReason::EthTruncated),
        (
            ping([2, 9, 9, 9, 9, 9], "10.1.0.10", "10.1.0.1", 64, 16),
            DropReason::L2OtherHost,
        ),
        (
            ping([1, 0, 0x5e, 0, 0, 1], "10.1.0.10", "10.1.0.1", 64, 16),
            DropReason::L2Multicast,
        ),
        (good[..30].to_vec(), DropReason::Ipv4Truncated),
    ];
    let mut other = good.clone();
    other[12] = 0x88;
    other[13] = 0xcc;
    cases.push((other, DropReason::UnsupportedEthertype));
    let mut v6 = good.clone();
    v6[12] = 0x86;
    v6[13] = 0xdd;
    cases.push((v6, DropReason::Ipv6Malformed));
    let mut bad_arp = arp_request(HOST_MAC, "10.1.0.10", "10.1.0.1");
    bad_arp[14 + 4] = 8;
    cases.push((bad_arp, DropReason::ArpMalformed));
    cases.push((
        arp_request(HOST_MAC, "10.1.0.10", "10.1.0.1")[..30].to_vec(),
        DropReason::ArpMalformed,
    ));
    let mut bc_arp = arp_request([0xff; 6], "10.1.0.10", "10.1.0.1");
    bc_arp[6..12].copy_from_slice(&HOST_MAC);
    cases.push((bc_arp, DropReason::ArpMalformed));
    let mut ver = good.clone();
    ver[14] = 0x65;
    cases.push((ver, DropReason::Ipv4BadVersion));
    let mut ihl = good.clone();
    ihl[14] = 0x44;
    cases.push((ihl, DropReason::Ipv4BadIhl));
    let mut len = good.clone();
    len[16] = 0;
    len[17] = 10;
    cases.push((len, DropReason::Ipv4BadLength));
    let mut long = good.clone();
    long[16] = 0x05;
    long[17] = 0xdc;
    cases.push((long, DropReason::Ipv4Truncated));
    let mut csum = good.clone();
    csum[14 + 10] ^= 0xff;
    cases.push((csum, DropReason::Ipv4BadChecksum));
    cases.push((
        ping(LAN_MAC, "127.0.0.1", "10.1.0.1", 64, 8),
        DropReason::Ipv4MartianSource,
    ));
    cases.push((
        ping(LAN_MAC, "224.0.0.1", "10.1.0.1", 64, 8),
        DropReason::Ipv4MartianSource,
    ));
    cases.push((
        ping(LAN_MAC, "0.0.0.0", "10.1.0.1", 64, 8),
        DropReason::Ipv4MartianSource,
    ));
    cases.push((
        ping(LAN_MAC, "10.1.0.10", "10.1.0.255", 64, 8),
        DropReason::Ipv4NotRoutable,
    ));
    cases.push((
        ping(LAN_MAC, "10.1.0.10", "239.1.1.1", 64, 8),
        DropReason::Ipv4NotRoutable,
    ));
    // A giant over the LAN MTU (9000) is not forwarded, whatever it carries.
    cases.push((
        ping(LAN_MAC, "10.1.0.10", "10.2.0.20", 64, 9100),
        DropReason::Oversized,
    ));
    for (frame, reason) in cases {
        let before = r.drops(reason);
        r.run(LAN, &frame);
        assert_eq!(
            r.drops(reason),
            before + 1,
            "{}: {:02x?}",
            reason.name(),
            &frame[..frame.len().min(40)]
        );
        assert!(r.nothing_sent(), "{} sent something", reason.name());
    }
}

#[test]
fn chained_buffers_are_dropped() {
    let mut r = Rig::new(false);
    let mut b = MemBuf::from_frame(&ping(LAN_MAC, "10.1.0.10", "10.1.0.1", 64, 8));
    b.chained = true;
    r.io.rx[LAN].push_back(b);
    r.worker.poll(&mut r.io);
    assert_eq!(r.drops(DropReason::MultiSegment), 1);
    assert!(r.nothing_sent());
}

#[test]
fn tx_full_and_no_mbuf_are_counted() {
    let mut r = Rig::new(false);
    r.neighbor("lan", "10.1.0.10", HOST_MAC);
    r.neighbor("wan", "10.2.0.254", GW_MAC);
    r.default_via_wan_gateway();
    r.io.tx_room[WAN] = 3;
    for _ in 0..10 {
        r.io.inject(LAN, &ping(LAN_MAC, "10.1.0.10", "192.0.2.1", 64, 8));
    }
    r.worker.poll(&mut r.io);
    assert_eq!(r.io.sent(WAN).len(), 3);
    assert_eq!(r.drops(DropReason::TxFull), 7);
    // Fragmenting with an empty buffer pool.
    r.io.tx_room[WAN] = usize::MAX;
    r.io.pool.clear();
    let mut big = ping(LAN_MAC, "10.1.0.10", "192.0.2.1", 64, 3000);
    set_df(&mut big, false);
    r.run(LAN, &big);
    assert_eq!(r.drops(DropReason::NoMbuf), 1);
    assert_eq!(r.drops(DropReason::FragFailed), 1);
}

#[test]
fn random_garbage_never_panics() {
    let mut r = Rig::new(true);
    r.neighbor("lan", "10.1.0.10", HOST_MAC);
    r.change(FibChange::ProxyArpSet {
        ip: "10.1.0.77".parse().unwrap(),
    });
    r.change(FibChange::ProxyArpActive { active: true });
    let seeds = [
        ping(LAN_MAC, "10.1.0.10", "192.0.2.1", 64, 64),
        ping(LAN_MAC, "10.1.0.10", "10.1.0.1", 2, 64),
        arp_request(HOST_MAC, "10.1.0.10", "10.1.0.77"),
    ];
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..30_000 {
        let mut f = seeds[i % seeds.len()].clone();
        for _ in 0..(rnd() % 6) {
            let at = (rnd() as usize) % f.len();
            f[at] = rnd() as u8;
        }
        let cut = (rnd() as usize) % (f.len() + 1);
        f.truncate(cut.max(f.len() * 3 / 4));
        r.io.inject((rnd() % 3) as usize, &f);
        if i % 32 == 0 {
            r.worker.poll(&mut r.io);
            for p in 0..3 {
                r.io.tx[p].clear();
            }
            r.publish();
            while r.io.pool.len() < 16 {
                r.io.pool.push(MemBuf::new());
            }
        }
    }
    r.worker.poll(&mut r.io);
    assert!(r.stats.total_drops() > 0);
}

mod tunnels {
    use super::*;
    use crate::tunnel::{TunnelInfo, TunnelTable};
    use cer_shared::config::TunnelKind;

    const PEER: &str = "10.2.0.254";

    fn tunnel(kind: TunnelKind, key: Option<u32>, mtu: u16) -> TunnelInfo {
        TunnelInfo {
            id: 5,
            kind,
            local: u("10.2.0.1"),
            remote: u(PEER),
            mtu,
            gre_key: key,
            port: kind.default_port().unwrap_or(0),
            force_fragment: false,
        }
    }

    /// A rig whose /32 10.77.60.20 lives behind tunnel 5 (to 10.2.0.254 on WAN),
    /// and 10.77.60.10 is local on LAN.
    fn rig(t: TunnelInfo) -> Rig {
        let mut r = Rig::new(false);
        r.fib.set_tunnels(TunnelTable::build(vec![t]));
        r.neighbor("wan", PEER, GW_MAC);
        r.neighbor("lan", "10.77.60.10", HOST_MAC);
        r.change(FibChange::EndpointSet {
            ip: "10.77.60.20".parse().unwrap(),
            action: FeedAction::Tunnel { tunnel: 5 },
        });
        r.change(FibChange::EndpointSet {
            ip: "10.77.60.10".parse().unwrap(),
            action: FeedAction::Local { port: "lan".into() },
        });
        r
    }

    fn outer_of(f: &[u8]) -> Ipv4Packet<&[u8]> {
        let (frame, ip) = parse_ip(f);
        assert_eq!(frame.dst_addr().0, GW_MAC);
        assert_eq!(frame.src_addr().0, WAN_MAC);
        assert_eq!(
            (ip.src_addr(), ip.dst_addr()),
            (a("10.2.0.1"), a(PEER)),
            "outer src/dst = transport addresses"
        );
        ip
    }

    #[test]
    fn encapsulates_every_kind_with_the_inner_packet_untouched() {
        for (kind, key, proto, inner_at) in [
            (TunnelKind::Ipip, None, 4u8, 0usize),
            (TunnelKind::Gre, None, 47, 4),
            (TunnelKind::Gre, Some(77), 47, 8),
            (TunnelKind::Fou, None, 17, 8),
            (TunnelKind::Gue, None, 17, 12),
        ] {
            let mut r = rig(tunnel(kind, key, 1300));
            let pkt = ping(LAN_MAC, "10.77.60.10", "10.77.60.20", 64, 100);
            r.run(LAN, &pkt);
            let out = r.io.sent(WAN);
            assert_eq!(out.len(), 1, "{kind:?}");
            let ip = outer_of(&out[0]);
            assert_eq!(u8::from(ip.next_header()), proto);
            let payload = ip.payload();
            let inner = &payload[inner_at..];
            // Inner = original minus Ethernet, TTL 63 (checksum adjusted), nothing else changed.
            let orig = &pkt[14..];
            assert_eq!(inner.len(), orig.len(), "{kind:?}");
            assert_eq!(inner[8], 63);
            assert_eq!(&inner[..8], &orig[..8]);
            assert_eq!(
                &inner[12..],
                &orig[12..],
                "{kind:?}: src/dst and payload untouched (no NAT)"
            );
            assert!(Ipv4Packet::new_checked(inner).unwrap().verify_checksum());
            match kind {
                TunnelKind::Gre => {
                    assert_eq!(&payload[2..4], &[0x08, 0x00]);
                    if let Some(k) = key {
                        assert_eq!(payload[0] & 0x20, 0x20, "K bit");
                        assert_eq!(&payload[4..8], &k.to_be_bytes());
                    }
                }
                TunnelKind::Fou | TunnelKind::Gue => {
                    assert!(u16::from_be_bytes([payload[0], payload[1]]) >= 49152);
                    assert_eq!(
                        u16::from_be_bytes([payload[2], payload[3]]),
                        kind.default_port().unwrap()
                    );
                    assert_eq!(
                        usize::from(u16::from_be_bytes([payload[4], payload[5]])),
                        payload.len()
                    );
                    if kind == TunnelKind::Gue {
                        assert_eq!(&payload[8..12], &[0, 4, 0, 0]);
                    }
                }
                _ => {}
            }
            assert_eq!(r.events(Event::Encapsulated), 1);
        }
    }

    #[test]
    fn decapsulates_from_the_configured_peer_only() {
        for (kind, key) in [
            (TunnelKind::Ipip, None),
            (TunnelKind::Gre, Some(9)),
            (TunnelKind::Fou, None),
            (TunnelKind::Gue, None),
        ] {
            // Build the outer packet by encapsulating on a mirror rig, then feed it in.
            let t = tunnel(kind, key, 1300);
            let mut mirror = rig(t);
            mirror.run(LAN, &ping(LAN_MAC, "10.77.60.99", "10.77.60.20", 64, 64));
            let mut outer = mirror.io.sent(WAN).remove(0);
            // Swap it around as the peer would send it: from 10.2.0.254 to 10.2.0.1, to our MAC.
            outer[0..6].copy_from_slice(&WAN_MAC);
            outer[6..12].copy_from_slice(&GW_MAC);
            {
                let mut ip = Ipv4Packet::new_unchecked(&mut outer[14..]);
                ip.set_src_addr(a(PEER));
                ip.set_dst_addr(a("10.2.0.1"));
                ip.fill_checksum();
            }
            // Inner destination: the local endpoint 10.77.60.10.
            let inner_at = 14 + 20 + t.overhead() - 20;
            {
                let mut inner = Ipv4Packet::new_unchecked(&mut outer[inner_at..]);
                inner.set_dst_addr(a("10.77.60.10"));
                inner.fill_checksum();
            }
            let mut r = rig(t);
            r.run(WAN, &outer);
            let out = r.io.sent(LAN);
            assert_eq!(
                out.len(),
                1,
                "{kind:?}: {:?}",
                DropReason::ALL
                    .iter()
                    .filter(|d| r.drops(**d) > 0)
                    .map(|d| d.name())
                    .collect::<Vec<_>>()
            );
            let (frame, ip) = parse_ip(&out[0]);
            assert_eq!(frame.dst_addr().0, HOST_MAC);
            assert_eq!(
                (ip.src_addr(), ip.dst_addr()),
                (a("10.77.60.99"), a("10.77.60.10")),
                "source preserved"
            );
            assert_eq!(r.events(Event::Decapsulated), 1);
            // The same packet from another source is never relayed.
            let mut spoofed = outer.clone();
            {
                let mut ip = Ipv4Packet::new_unchecked(&mut spoofed[14..]);
                ip.set_src_addr(a("10.2.0.77"));
                ip.fill_checksum();
            }
            r.run(WAN, &spoofed);
            assert!(r.io.sent(LAN).is_empty());
            assert_eq!(r.drops(DropReason::TunnelUnknownPeer), 1, "{kind:?}");
        }
    }

    #[test]
    fn tunnel_mtu_df_gets_frag_needed_and_no_df_is_fragmented_then_encapsulated() {
        let t = tunnel(TunnelKind::Gre, None, 1000);
        let mut r = rig(t);
        let mut big = ping(LAN_MAC, "10.77.60.10", "10.77.60.20", 64, 1400);
        set_df(&mut big, true);
        r.run(LAN, &big);
        assert!(r.io.sent(WAN).is_empty());
        let back = r.io.sent(LAN);
        let icmp = expect_icmp_error(&back[0], 3, 4, "10.77.60.10");
        assert_eq!(
            u16::from_be_bytes([icmp[6], icmp[7]]),
            1000,
            "next-hop MTU = tunnel MTU"
        );
        set_df(&mut big, false);
        r.run(LAN, &big);
        let out = r.io.sent(WAN);
        assert_eq!(out.len(), 2, "two inner fragments, each encapsulated");
        let mut data = Vec::new();
        for f in &out {
            let outer = outer_of(f);
            assert!(usize::from(outer.total_len()) <= 1024);
            let inner = Ipv4Packet::new_checked(&outer.payload()[4..]).unwrap();
            assert!(inner.verify_checksum());
            assert_eq!(usize::from(inner.frag_offset()), data.len());
            data.extend_from_slice(inner.payload());
        }
        assert_eq!(data, Ipv4Packet::new_checked(&big[14..]).unwrap().payload());
        // force_fragment: DF ignored.
        let mut forced = tunnel(TunnelKind::Gre, None, 1000);
        forced.force_fragment = true;
        let mut r = rig(forced);
        set_df(&mut big, true);
        r.run(LAN, &big);
        assert_eq!(r.io.sent(WAN).len(), 2);
    }

    #[test]
    fn mss_is_clamped_into_the_tunnel() {
        let mut r = rig(tunnel(TunnelKind::Fou, None, 1372));
        // A TCP SYN with MSS 1460 from the LAN endpoint.
        let mut p = vec![0u8; 14];
        p[0..6].copy_from_slice(&LAN_MAC);
        p[6..12].copy_from_slice(&HOST_MAC);
        p[12] = 0x08;
        let mut ip = vec![
            0x45, 0, 0, 44, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 77, 60, 10, 10, 77, 60, 20,
        ];
        ip.extend_from_slice(&[
            0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x60, 0x02, 0xfa, 0xf0, 0, 0, 0, 0, 2, 4,
            0x05, 0xb4,
        ]);
        wire::fill_ip_checksum(&mut ip, 20);
        p.extend_from_slice(&ip);
        r.run(LAN, &p);
        let out = r.io.sent(WAN);
        let outer = outer_of(&out[0]);
        let inner = &outer.payload()[8..];
        assert_eq!(
            u16::from_be_bytes([inner[20 + 22], inner[20 + 23]]),
            1332,
            "MSS = tunnel MTU - 40"
        );
        assert_eq!(r.events(Event::MssClamped), 1);
    }

    #[test]
    fn fragmented_outer_packets_are_reassembled_then_decapsulated() {
        let t = tunnel(TunnelKind::Ipip, None, 1400);
        let mut r = rig(t);
        // An IPIP packet from the peer carrying a 1200-byte inner ping to the LAN endpoint,
        // fragmented by the underlay into 3 outer fragments.
        let mut inner = ping(LAN_MAC, "10.77.60.99", "10.77.60.10", 64, 1200)[14..].to_vec();
        // Not DF: the underlay may fragment the outer packet.
        Ipv4Packet::new_unchecked(&mut inner[..]).set_dont_frag(false);
        Ipv4Packet::new_unchecked(&mut inner[..]).fill_checksum();
        let mut payload_frags = Vec::new();
        for (i, chunk) in inner.chunks(512).enumerate() {
            let off = i * 512;
            let last = off + chunk.len() == inner.len();
            let mut f = vec![0u8; 14];
            f[0..6].copy_from_slice(&WAN_MAC);
            f[6..12].copy_from_slice(&GW_MAC);
            f[12] = 0x08;
            let total = 20 + chunk.len();
            let ff = ((off / 8) as u16) | if last { 0 } else { 0x2000 };
            let mut h = vec![
                0x45,
                0,
                (total >> 8) as u8,
                total as u8,
                0x12,
                0x34,
                (ff >> 8) as u8,
                ff as u8,
                60,
                4,
                0,
                0,
            ];
            h.extend_from_slice(&u(PEER).to_be_bytes());
            h.extend_from_slice(&u("10.2.0.1").to_be_bytes());
            wire::fill_ip_checksum(&mut h, 20);
            f.extend_from_slice(&h);
            f.extend_from_slice(chunk);
            payload_frags.push(f);
        }
        payload_frags.reverse();
        for f in &payload_frags {
            r.run(WAN, f);
        }
        let out = r.io.sent(LAN);
        assert_eq!(out.len(), 1);
        let (_, ip) = parse_ip(&out[0]);
        assert_eq!(ip.dst_addr(), a("10.77.60.10"));
        assert_eq!(usize::from(ip.total_len()), inner.len());
        assert_eq!(r.events(Event::Reassembled), 1);
    }

    #[test]
    fn nested_tunnels_and_garbage_outer_never_panic() {
        let t = tunnel(TunnelKind::Ipip, None, 1400);
        let mut r = rig(t);
        // IPIP inside IPIP to us: the inner tunnel packet is refused.
        let mut inner_tunnel = ping(WAN_MAC, PEER, "10.2.0.1", 64, 40)[14..].to_vec();
        inner_tunnel[9] = 4;
        Ipv4Packet::new_unchecked(&mut inner_tunnel[..]).fill_checksum();
        let mut f = vec![0u8; 14];
        f[0..6].copy_from_slice(&WAN_MAC);
        f[12] = 0x08;
        let total = 20 + inner_tunnel.len();
        let mut h = vec![
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            1,
            0,
            0,
            60,
            4,
            0,
            0,
        ];
        h.extend_from_slice(&u(PEER).to_be_bytes());
        h.extend_from_slice(&u("10.2.0.1").to_be_bytes());
        wire::fill_ip_checksum(&mut h, 20);
        f.extend_from_slice(&h);
        f.extend_from_slice(&inner_tunnel);
        r.run(WAN, &f);
        assert_eq!(r.drops(DropReason::TunnelNested), 1);
        // Random mutations of valid outer packets of every kind.
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for kind in [
            TunnelKind::Ipip,
            TunnelKind::Gre,
            TunnelKind::Fou,
            TunnelKind::Gue,
        ] {
            let t = tunnel(kind, None, 1300);
            let mut m = rig(t);
            m.run(LAN, &ping(LAN_MAC, "10.77.60.10", "10.77.60.20", 64, 64));
            let seed = m.io.sent(WAN).remove(0);
            let mut r = rig(t);
            for _ in 0..3000 {
                let mut f = seed.clone();
                f[0..6].copy_from_slice(&WAN_MAC);
                for _ in 0..1 + rnd() % 3 {
                    let at = 14 + (rnd() as usize) % (f.len() - 14);
                    f[at] = rnd() as u8;
                }
                r.io.inject(WAN, &f);
                r.worker.poll(&mut r.io);
                for p in 0..2 {
                    r.io.tx[p].clear();
                }
                while r.io.pool.len() < 16 {
                    r.io.pool.push(MemBuf::new());
                }
            }
        }
    }
}

mod wireguard {
    use super::*;
    use crate::tunnel::wireguard::{generate_private_key, public_key_of, WgOut, WgPeer};
    use crate::tunnel::{TunnelInfo, TunnelTable};
    use cer_shared::config::TunnelKind;

    const PEER: &str = "10.2.0.254";

    struct Pair {
        r: Rig,
        /// The remote CER's WireGuard state, driven by the test.
        remote: WgPeer,
        /// Our private key and the remote's public key.
        r_keys: (String, String),
    }

    fn pair() -> Pair {
        let (ka, kb) = (generate_private_key(), generate_private_key());
        let (pa, pb) = (public_key_of(&ka).unwrap(), public_key_of(&kb).unwrap());
        let mut r = Rig::new(false);
        r.fib.set_tunnels(TunnelTable::build(vec![TunnelInfo {
            id: 5,
            kind: TunnelKind::Wireguard,
            local: u("10.2.0.1"),
            remote: u(PEER),
            mtu: 1340,
            gre_key: None,
            port: 51820,
            force_fragment: false,
        }]));
        r.neighbor("wan", PEER, GW_MAC);
        r.neighbor("lan", "10.77.60.10", HOST_MAC);
        r.change(FibChange::EndpointSet {
            ip: "10.77.60.20".parse().unwrap(),
            action: FeedAction::Tunnel { tunnel: 5 },
        });
        r.change(FibChange::EndpointSet {
            ip: "10.77.60.10".parse().unwrap(),
            action: FeedAction::Local { port: "lan".into() },
        });
        let ours = WgPeer::new(&ka, &pb, None, None, 5).unwrap();
        r.worker.set_wireguard(
            0,
            1,
            vec![OwnedWgPeer {
                tunnel: 5,
                peer: ours,
                peer_port: 51820,
            }],
            Arc::new(WgHandoff::new(1)),
        );
        Pair {
            r,
            remote: WgPeer::new(&kb, &pa, None, None, 9).unwrap(),
            r_keys: (ka, pb),
        }
    }

    /// The UDP payload of a frame the dataplane sent to the peer.
    fn udp_payload(f: &[u8]) -> Vec<u8> {
        let (frame, ip) = parse_ip(f);
        assert_eq!(frame.dst_addr().0, GW_MAC);
        assert_eq!((ip.src_addr(), ip.dst_addr()), (a("10.2.0.1"), a(PEER)));
        assert_eq!(u8::from(ip.next_header()), 17);
        let u = ip.payload();
        assert_eq!(
            u16::from_be_bytes([u[0], u[1]]),
            51820,
            "stable source port (the peer's endpoint for us)"
        );
        assert_eq!(u16::from_be_bytes([u[2], u[3]]), 51820);
        u[8..].to_vec()
    }

    /// A frame from the peer carrying `payload` to our WireGuard port.
    fn from_peer(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[0..6].copy_from_slice(&WAN_MAC);
        f[6..12].copy_from_slice(&GW_MAC);
        f[12] = 0x08;
        let total = 28 + payload.len();
        let mut h = vec![
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            7,
            0,
            0,
            64,
            17,
            0,
            0,
        ];
        h.extend_from_slice(&u(PEER).to_be_bytes());
        h.extend_from_slice(&u("10.2.0.1").to_be_bytes());
        wire::fill_ip_checksum(&mut h, 20);
        f.extend_from_slice(&h);
        let ulen = (8 + payload.len()) as u16;
        f.extend_from_slice(&[0xca, 0x6c, 0xca, 0x6c]);
        f.extend_from_slice(&ulen.to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn data_on_a_session_lost_in_a_restart_starts_a_handshake() {
        let mut p = pair();
        // The remote established a session with this node before it restarted.
        let (ka, pb) = p.r_keys.clone();
        let mut before = WgPeer::new(&ka, &pb, None, None, 5).unwrap();
        let (mut b1, mut b2) = (vec![0u8; 2048], vec![0u8; 2048]);
        let WgOut::Send(n) = p.remote.initiate(false, &mut b1) else {
            panic!("no initiation")
        };
        let WgOut::Send(m) =
            before.decapsulate(std::net::Ipv4Addr::new(10, 2, 0, 254), &b1[..n], &mut b2)
        else {
            panic!("no response")
        };
        let _ = p
            .remote
            .decapsulate(std::net::Ipv4Addr::new(10, 2, 0, 1), &b2[..m], &mut b1);
        let mut back = ping(LAN_MAC, "10.77.60.20", "10.77.60.10", 64, 100)[14..].to_vec();
        Ipv4Packet::new_unchecked(&mut back[..]).fill_checksum();
        let WgOut::Send(n) = p.remote.encapsulate(&back, &mut b1) else {
            panic!("remote could not encrypt")
        };
        // This (restarted) node has no such session: counted, and it
        // initiates a handshake at once.
        p.r.run(WAN, &from_peer(&b1[..n]));
        assert!(p.r.io.sent(LAN).is_empty());
        let no_session = crate::tunnel::wireguard::WgDrop::ALL
            .iter()
            .position(|d| d.name() == "wg_no_session")
            .unwrap();
        assert_eq!(
            p.r.stats.wg_drops[no_session].load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        let sent = p.r.io.sent(WAN);
        assert_eq!(sent.len(), 1);
        let init = udp_payload(&sent[0]);
        assert_eq!(init[0], 1, "handshake initiation");
        let WgOut::Send(_) =
            p.remote
                .decapsulate(std::net::Ipv4Addr::new(10, 2, 0, 1), &init, &mut b2)
        else {
            panic!("the remote did not answer the new initiation")
        };
        // More stale data within REKEY_TIMEOUT: counted, no second initiation.
        p.r.run(WAN, &from_peer(&b1[..n]));
        assert!(p.r.io.sent(WAN).is_empty());
    }

    #[test]
    fn handshake_then_data_both_ways_and_replay_is_dropped() {
        let mut p = pair();
        let ping_out = ping(LAN_MAC, "10.77.60.10", "10.77.60.20", 64, 200);
        p.r.run(LAN, &ping_out);
        // No session yet: a handshake initiation goes out, the ping waits.
        let sent = p.r.io.sent(WAN);
        assert_eq!(sent.len(), 1);
        let init = udp_payload(&sent[0]);
        assert_eq!(init[0], 1, "handshake initiation");
        let mut out = vec![0u8; 2048];
        let WgOut::Send(n) =
            p.remote
                .decapsulate(std::net::Ipv4Addr::new(10, 2, 0, 1), &init, &mut out)
        else {
            panic!("peer rejected the initiation")
        };
        let response = out[..n].to_vec();
        assert_eq!(response[0], 2);
        // The response completes the handshake; the queued ping is flushed, encrypted.
        p.r.run(WAN, &from_peer(&response));
        // The initiator confirms the session with a keepalive, then the queued ping follows.
        let sent = p.r.io.sent(WAN);
        let kinds: Vec<(u8, usize)> = sent
            .iter()
            .map(|f| {
                let u = udp_payload(f);
                (u[0], u.len())
            })
            .collect();
        assert_eq!(
            kinds,
            vec![(4, 32), (4, 32 + 228)],
            "keepalive, then the ping"
        );
        let mut out_ka = vec![0u8; 2048];
        assert!(matches!(
            p.remote.decapsulate(
                std::net::Ipv4Addr::new(10, 2, 0, 1),
                &udp_payload(&sent[0]),
                &mut out_ka
            ),
            WgOut::Nothing
        ));
        let data = udp_payload(&sent[1]);
        assert_eq!(data[0], 4, "transport data");
        let inner =
            match p
                .remote
                .decapsulate(std::net::Ipv4Addr::new(10, 2, 0, 1), &data, &mut out)
            {
                WgOut::Inner(n) => out[..n].to_vec(),
                _ => panic!("peer could not decrypt"),
            };
        let orig = &ping_out[14..];
        assert_eq!(inner.len(), orig.len());
        assert_eq!(inner[8], 63, "TTL decremented once");
        assert_eq!(&inner[12..], &orig[12..], "inner untouched (no NAT)");
        // The peer sends a packet for the LAN endpoint.
        let mut back = ping(LAN_MAC, "10.77.60.20", "10.77.60.10", 64, 100)[14..].to_vec();
        Ipv4Packet::new_unchecked(&mut back[..]).fill_checksum();
        let WgOut::Send(n) = p.remote.encapsulate(&back, &mut out) else {
            panic!("peer could not encrypt")
        };
        let msg = out[..n].to_vec();
        p.r.run(WAN, &from_peer(&msg));
        let lan = p.r.io.sent(LAN);
        assert_eq!(lan.len(), 1, "decrypted and delivered on the LAN");
        let (frame, ip) = parse_ip(&lan[0]);
        assert_eq!(frame.dst_addr().0, HOST_MAC);
        assert_eq!(
            (ip.src_addr(), ip.dst_addr()),
            (a("10.77.60.20"), a("10.77.60.10"))
        );
        // The same datagram again is a replay.
        p.r.run(WAN, &from_peer(&msg));
        assert!(p.r.io.sent(LAN).is_empty());
        let replay = crate::tunnel::wireguard::WgDrop::ALL
            .iter()
            .position(|d| d.name() == "wg_replay")
            .unwrap();
        assert_eq!(
            p.r.stats.wg_drops[replay].load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        // Garbage to the WireGuard port never panics and is counted.
        for len in [0usize, 1, 4, 32, 148, 200] {
            p.r.run(WAN, &from_peer(&vec![4u8; len]));
        }
        let dropped: u64 =
            p.r.stats
                .wg_drops
                .iter()
                .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
                .sum();
        assert!(dropped >= 7, "{dropped}");
    }

    #[test]
    fn packets_for_a_peer_owned_elsewhere_are_handed_off() {
        let mut p = pair();
        // Pretend this worker is core 1 of 2: tunnel 5 belongs to core 1 (5 % 2).
        // Take the peer away and make this core 0: the packet must be queued for core 1.
        let handoff = Arc::new(WgHandoff::new(2));
        p.r.worker.set_wireguard(0, 2, Vec::new(), handoff.clone());
        p.r.run(LAN, &ping(LAN_MAC, "10.77.60.10", "10.77.60.20", 64, 64));
        assert!(p.r.io.sent(WAN).is_empty());
        assert_eq!(handoff.queues[1].len(), 1);
        assert_eq!(p.r.events(Event::WgHandedOff), 1);
    }
}

/// IPv6 neighbor discovery and IPv4 via IPv6 link-local next hops (RFC 5549).
mod nd_tests {
    use super::*;
    use crate::nd;
    use smoltcp::wire::{
        Icmpv6Packet, Icmpv6Repr, IpAddress, Ipv6Address, Ipv6Packet, NdiscNeighborFlags, NdiscRepr,
    };
    use std::net::Ipv6Addr;

    const PEER_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x31];
    const PEER2_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x32];
    const TAP: usize = 2;

    fn peer_ll(mac: [u8; 6]) -> Ipv6Addr {
        nd::link_local(mac)
    }

    fn ra_from(mac: [u8; 6]) -> Vec<u8> {
        nd::router_advert(mac, 30)
    }

    /// A solicitation from `mac`'s link-local address for `target`.
    fn ns_from(mac: [u8; 6], target: &Ipv6Addr) -> Vec<u8> {
        let mut f = vec![0u8; nd::NS_LEN];
        nd::write_solicit(&mut f, mac, target, None);
        f
    }

    /// A solicited advertisement of `mac`'s link-local address to `to`.
    fn na_from(mac: [u8; 6], to: &Ipv6Addr, to_mac: [u8; 6]) -> Vec<u8> {
        let mut f = vec![0u8; nd::NA_LEN];
        nd::write_advert(&mut f, mac, to, to_mac);
        f
    }

    /// (ethernet dst, ethernet src, IPv6 src, IPv6 dst, hop limit, ND repr)
    /// of a frame, parsed by smoltcp.
    fn parse_nd(f: &[u8]) -> ([u8; 6], [u8; 6], Ipv6Address, Ipv6Address, u8, String) {
        let eth = EthernetFrame::new_checked(f).unwrap();
        assert_eq!(eth.ethertype(), EthernetProtocol::Ipv6);
        let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
        let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        let repr = Icmpv6Repr::parse(
            &IpAddress::Ipv6(ip.src_addr()),
            &IpAddress::Ipv6(ip.dst_addr()),
            &icmp,
            &ChecksumCapabilities::default(),
        )
        .unwrap();
        (
            eth.dst_addr().0,
            eth.src_addr().0,
            ip.src_addr(),
            ip.dst_addr(),
            ip.hop_limit(),
            format!("{repr:?}"),
        )
    }

    fn v6(a: &Ipv6Addr) -> Ipv6Address {
        Ipv6Address::from_bytes(&a.octets())
    }

    fn via_ll(r: &mut Rig, prefix: &str, gws: &[Ipv6Addr]) {
        r.change(FibChange::RouteSet {
            prefix: prefix.parse().unwrap(),
            nexthops: gws
                .iter()
                .map(|g| NextHop {
                    port: "wan".into(),
                    gateway: None,
                    gateway6: Some(*g),
                })
                .collect(),
        });
    }

    #[test]
    fn router_advert_on_command_mirrors_frr() {
        let mut r = Rig::new(false);
        r.commands
            .push(CoreCommand::RouterAdvert { port: 1 })
            .unwrap();
        r.worker.poll(&mut r.io);
        let out = r.io.sent(WAN);
        assert_eq!(out.len(), 1);
        assert_eq!(r.events(Event::RouterAdvertSent), 1);
        let (dst, src, ip_src, ip_dst, hl, repr) = parse_nd(&out[0]);
        assert_eq!(dst, [0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(src, WAN_MAC);
        assert_eq!(ip_src, v6(&nd::link_local(WAN_MAC)));
        assert_eq!(ip_dst, v6(&nd::ALL_NODES));
        assert_eq!(hl, 255);
        let Icmpv6Repr::Ndisc(NdiscRepr::RouterAdvert {
            hop_limit,
            router_lifetime,
            lladdr,
            ..
        }) = Icmpv6Repr::parse(
            &IpAddress::Ipv6(ip_src),
            &IpAddress::Ipv6(ip_dst),
            &Icmpv6Packet::new_checked(&out[0][54..]).unwrap(),
            &ChecksumCapabilities::default(),
        )
        .unwrap()
        else {
            panic!("{repr}")
        };
        assert_eq!(hop_limit, 64);
        assert_eq!(router_lifetime.secs(), 30);
        assert_eq!(lladdr.unwrap().as_bytes(), &WAN_MAC);
        assert!(r.io.sent(LAN).is_empty());
    }

    #[test]
    fn router_solicitation_is_answered_on_unnumbered_ports_only_rate_limited() {
        let rs = |mac: [u8; 6]| -> Vec<u8> {
            let src = peer_ll(mac);
            let repr = Icmpv6Repr::Ndisc(NdiscRepr::RouterSolicit {
                lladdr: Some(smoltcp::wire::RawHardwareAddress::from_bytes(&mac)),
            });
            let ip = smoltcp::wire::Ipv6Repr {
                src_addr: v6(&src),
                dst_addr: v6(&nd::ALL_ROUTERS),
                next_header: IpProtocol::Icmpv6,
                payload_len: repr.buffer_len(),
                hop_limit: 255,
            };
            let (mut f, off) = eth(
                nd::multicast_mac(&nd::ALL_ROUTERS),
                mac,
                EthernetProtocol::Ipv6,
                40 + repr.buffer_len(),
            );
            ip.emit(&mut Ipv6Packet::new_unchecked(&mut f[off..]));
            repr.emit(
                &IpAddress::Ipv6(v6(&src)),
                &IpAddress::Ipv6(v6(&nd::ALL_ROUTERS)),
                &mut Icmpv6Packet::new_unchecked(&mut f[off + 40..]),
                &ChecksumCapabilities::default(),
            );
            f
        };
        // Not unnumbered: no answer.
        let mut r = Rig::new(false);
        r.run(WAN, &rs(PEER_MAC));
        assert!(r.io.sent(WAN).is_empty());
        // Unnumbered WAN: an RA to all-nodes, then nothing for 3 s.
        let mut r = Rig::new(false);
        r.worker.set_unnumbered(&[false, true]);
        r.io.now_ns = 10_000_000_000;
        r.run(WAN, &rs(PEER_MAC));
        let out = r.io.sent(WAN);
        assert_eq!(out.len(), 1);
        let (dst, src, _, ip_dst, _, repr) = parse_nd(&out[0]);
        assert_eq!((dst, src), ([0x33, 0x33, 0, 0, 0, 1], WAN_MAC));
        assert_eq!(ip_dst, v6(&nd::ALL_NODES));
        assert!(repr.contains("RouterAdvert"), "{repr}");
        r.io.now_ns += 1_000_000_000;
        r.run(WAN, &rs(PEER2_MAC));
        assert!(r.io.sent(WAN).is_empty());
        assert_eq!(r.events(Event::RouterAdvertSuppressed), 1);
        r.io.now_ns += 3_000_000_000;
        r.run(WAN, &rs(PEER2_MAC));
        assert_eq!(r.io.sent(WAN).len(), 1);
        assert!(r.io.sent(LAN).is_empty());
    }

    #[test]
    fn ra_ns_na_from_peers_teach_the_table_and_reach_the_tap() {
        let mut r = Rig::new(true);
        let our_ll = nd::link_local(WAN_MAC);
        // A Router Advertisement (what FRR's unnumbered interface sends).
        r.run(WAN, &ra_from(PEER_MAC));
        let n = r.fib.learned6[&(1, peer_ll(PEER_MAC))];
        assert_eq!(n.mac, PEER_MAC);
        assert!(n.router);
        let snap = r.snap.load();
        assert_eq!(
            snap.neighbors6.get(1, &peer_ll(PEER_MAC)).unwrap().mac,
            PEER_MAC
        );
        assert_eq!(r.io.sent(TAP).len(), 1, "the kernel gets the RA too");
        assert!(r.io.sent(WAN).is_empty());
        // A solicitation for our link-local address: learned, answered, copied.
        r.run(WAN, &ns_from(PEER2_MAC, &our_ll));
        assert_eq!(r.fib.learned6[&(1, peer_ll(PEER2_MAC))].mac, PEER2_MAC);
        let out = r.io.sent(WAN);
        assert_eq!(out.len(), 1);
        let (dst, src, ip_src, ip_dst, hl, _) = parse_nd(&out[0]);
        assert_eq!((dst, src, hl), (PEER2_MAC, WAN_MAC, 255));
        assert_eq!(ip_src, v6(&our_ll));
        assert_eq!(ip_dst, v6(&peer_ll(PEER2_MAC)));
        let icmp = Icmpv6Packet::new_checked(&out[0][54..]).unwrap();
        match Icmpv6Repr::parse(
            &IpAddress::Ipv6(ip_src),
            &IpAddress::Ipv6(ip_dst),
            &icmp,
            &ChecksumCapabilities::default(),
        )
        .unwrap()
        {
            Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
                flags,
                target_addr,
                lladdr,
            }) => {
                assert!(flags.contains(NdiscNeighborFlags::SOLICITED));
                assert!(flags.contains(NdiscNeighborFlags::OVERRIDE));
                assert!(flags.contains(NdiscNeighborFlags::ROUTER));
                assert_eq!(target_addr, v6(&our_ll));
                assert_eq!(lladdr.unwrap().as_bytes(), &WAN_MAC);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(r.events(Event::NeighborAdvertSent), 1);
        assert_eq!(r.io.sent(TAP).len(), 1);
        // A solicitation for someone else teaches but is not answered.
        let third = [0x52, 0x54, 0, 0, 0, 0x33];
        r.run(WAN, &ns_from(third, &"fe80::99".parse().unwrap()));
        assert!(r.io.sent(WAN).is_empty());
        assert!(r.fib.learned6.contains_key(&(1, peer_ll(third))));
        // A solicited advertisement (the answer to our NS) teaches.
        let fourth = [0x52, 0x54, 0, 0, 0, 0x34];
        r.run(WAN, &na_from(fourth, &our_ll, WAN_MAC));
        assert_eq!(r.fib.learned6[&(1, peer_ll(fourth))].mac, fourth);
        assert!(r.fib.learned6[&(1, peer_ll(fourth))].router);
        // Our own frames looped back teach nothing.
        r.run(WAN, &ra_from(WAN_MAC));
        assert!(!r.fib.learned6.contains_key(&(1, our_ll)));
        assert_eq!(r.fib.learned6.len(), 4);
    }

    #[test]
    fn ipv4_via_link_local_next_hop_resolves_by_ns_then_forwards() {
        let mut r = Rig::new(false);
        let gw = peer_ll(PEER_MAC);
        via_ll(&mut r, "0.0.0.0/0", &[gw]);
        // Unresolved: counted drop and one Neighbor Solicitation, rate limited.
        r.run(LAN, &ping(LAN_MAC, "10.1.0.10", "192.0.2.1", 64, 8));
        assert_eq!(r.drops(DropReason::Neighbor6Unresolved), 1);
        let out = r.io.sent(WAN);
        assert_eq!(out.len(), 1);
        let (dst, src, ip_src, ip_dst, hl, repr) = parse_nd(&out[0]);
        let group = nd::solicited_node(&gw);
        assert_eq!(dst, nd::multicast_mac(&group));
        assert_eq!((src, hl), (WAN_MAC, 255));
        assert_eq!(ip_src, v6(&nd::link_local(WAN_MAC)));
        assert_eq!(ip_dst, v6(&group));
        assert!(repr.contains("NeighborSolicit"), "{repr}");
        // The target address field (RFC 4861 4.3).
        assert_eq!(&out[0][14 + 40 + 8..14 + 40 + 24], &gw.octets());
        r.run(LAN, &ping(LAN_MAC, "10.1.0.10", "192.0.2.1", 64, 8));
        assert_eq!(r.drops(DropReason::Neighbor6Unresolved), 2);
        assert_eq!(r.events(Event::NeighborSolicitSuppressed), 1);
        assert!(r.io.sent(WAN).is_empty());
        // The peer answers; the next packet leaves with its MAC.
        r.run(WAN, &na_from(PEER_MAC, &nd::link_local(WAN_MAC), WAN_MAC));
        r.run(LAN, &ping(LAN_MAC, "10.1.0.10", "192.0.2.1", 64, 8));
        let out = r.io.sent(WAN);
        assert_eq!(out.len(), 1);
        let (eth, ip) = parse_ip(&out[0]);
        assert_eq!(eth.dst_addr().0, PEER_MAC);
        assert_eq!(eth.src_addr().0, WAN_MAC);
        assert_eq!(ip.dst_addr(), a("192.0.2.1"));
        assert_eq!(ip.hop_limit(), 63);
        assert!(ip.verify_checksum());
        // A /32 underlay route via a link-local next hop (no endpoint action).
        via_ll(&mut r, "10.77.60.11/32", &[gw]);
        r.run(LAN, &ping(LAN_MAC, "10.1.0.10", "10.77.60.11", 64, 8));
        let out = r.io.sent(WAN);
        assert_eq!(out.len(), 1);
        assert_eq!(&out[0][0..6], &PEER_MAC);
    }

    #[test]
    fn ecmp_over_two_link_local_next_hops_spreads_flows() {
        let mut r = Rig::new(false);
        r.run(WAN, &ra_from(PEER_MAC));
        r.run(WAN, &ra_from(PEER2_MAC));
        via_ll(
            &mut r,
            "0.0.0.0/0",
            &[peer_ll(PEER_MAC), peer_ll(PEER2_MAC)],
        );
        let mut used = [0; 2];
        for i in 0..64 {
            let dst = format!("198.51.100.{i}");
            r.run(LAN, &ping(LAN_MAC, "10.1.0.10", &dst, 64, 8));
            r.run(LAN, &ping(LAN_MAC, "10.1.0.10", &dst, 64, 8));
            let out = r.io.sent(WAN);
            assert_eq!(out.len(), 2);
            assert_eq!(out[0][0..6], out[1][0..6], "same flow, same next hop");
            assert!(out[0][0..6] == PEER_MAC || out[0][0..6] == PEER2_MAC);
            used[usize::from(out[0][0..6] == PEER2_MAC)] += 1;
        }
        assert!(used[0] > 8 && used[1] > 8, "{used:?}");
        assert_eq!(r.drops(DropReason::Neighbor6Unresolved), 0);
    }

    #[test]
    fn feed_rejects_bad_link_local_gateways() {
        let mut r = Rig::new(false);
        for (gw, gw6) in [
            (None, "2001:db8::1"),
            (None, "ff02::1"),
            (Some("10.2.0.254"), "fe80::1"),
        ] {
            let e = r
                .fib
                .apply(&FibChange::RouteSet {
                    prefix: "0.0.0.0/0".parse().unwrap(),
                    nexthops: vec![NextHop {
                        port: "wan".into(),
                        gateway: gw.map(|g| g.parse().unwrap()),
                        gateway6: Some(gw6.parse().unwrap()),
                    }],
                })
                .unwrap_err();
            assert!(e.contains("gateway6") || e.contains("gateway"), "{e}");
        }
        assert!(r.fib.feed.routes.is_empty());
    }

    #[test]
    fn ipv6_for_us_goes_to_the_tap_and_the_rest_is_named() {
        let mut r = Rig::new(true);
        let our_ll = nd::link_local(WAN_MAC);
        // Non-ND ICMPv6 (an echo) to our link-local address: the kernel's.
        let data = [1u8; 8];
        let echo = Icmpv6Repr::EchoRequest {
            ident: 1,
            seq_no: 1,
            data: &data,
        };
        let src = peer_ll(PEER_MAC);
        let mk = |dst: Ipv6Addr, eth_dst: [u8; 6], hop: u8, repr: &Icmpv6Repr| -> Vec<u8> {
            let ip = smoltcp::wire::Ipv6Repr {
                src_addr: v6(&src),
                dst_addr: v6(&dst),
                next_header: IpProtocol::Icmpv6,
                payload_len: repr.buffer_len(),
                hop_limit: hop,
            };
            let (mut f, off) = eth(
                eth_dst,
                PEER_MAC,
                EthernetProtocol::Ipv6,
                40 + repr.buffer_len(),
            );
            ip.emit(&mut Ipv6Packet::new_unchecked(&mut f[off..]));
            repr.emit(
                &IpAddress::Ipv6(v6(&src)),
                &IpAddress::Ipv6(v6(&dst)),
                &mut Icmpv6Packet::new_unchecked(&mut f[off + 40..]),
                &ChecksumCapabilities::default(),
            );
            f
        };
        r.run(WAN, &mk(our_ll, WAN_MAC, 64, &echo));
        assert_eq!(r.io.sent(TAP).len(), 1);
        // Site-scope multicast is not the router's.
        let site: Ipv6Addr = "ff05::2".parse().unwrap();
        r.run(WAN, &mk(site, nd::multicast_mac(&site), 64, &echo));
        assert_eq!(r.drops(DropReason::Ipv6NotForUs), 1);
        // ND with a hop limit below 255, a bad checksum, a truncated header.
        let ns = NdiscRepr::NeighborSolicit {
            target_addr: v6(&our_ll),
            lladdr: None,
        };
        let group = nd::solicited_node(&our_ll);
        r.run(
            WAN,
            &mk(group, nd::multicast_mac(&group), 64, &Icmpv6Repr::Ndisc(ns)),
        );
        assert_eq!(r.drops(DropReason::NdBadHopLimit), 1);
        let mut bad = ns_from(PEER_MAC, &our_ll);
        bad[nd::NS_LEN - 1] ^= 0x01;
        r.run(WAN, &bad);
        assert_eq!(r.drops(DropReason::Icmpv6BadChecksum), 1);
        r.run(WAN, &ns_from(PEER_MAC, &our_ll)[..50]);
        assert_eq!(r.drops(DropReason::Ipv6Malformed), 1);
        assert!(r.nothing_sent());
        assert!(r.fib.learned6.is_empty());
        // Without a TAP, non-ND IPv6 for us has nowhere to go.
        let mut r = Rig::new(false);
        r.run(WAN, &mk(our_ll, WAN_MAC, 64, &echo));
        assert_eq!(r.drops(DropReason::NoExceptionPath), 1);
        r.run(WAN, &ra_from(PEER_MAC));
        assert_eq!(r.events(Event::NdConsumed), 1);
    }

    #[test]
    fn random_icmpv6_is_counted_never_panics() {
        let mut r = Rig::new(true);
        let our_ll = nd::link_local(WAN_MAC);
        let seeds = [
            ra_from(PEER_MAC),
            ns_from(PEER_MAC, &our_ll),
            na_from(PEER_MAC, &our_ll, WAN_MAC),
        ];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let total_drops = |r: &Rig| -> u64 { DropReason::ALL.iter().map(|d| r.drops(*d)).sum() };
        let mut dropped = 0;
        for i in 0..3000 {
            let mut f = seeds[i % 3].clone();
            // Keep the Ethernet header (so it reaches the IPv6 path), then
            // flip, cut or replace bytes after it.
            let cut = 14 + (next() as usize) % (f.len() - 13);
            if i % 5 == 0 {
                f.truncate(cut);
            }
            for _ in 0..1 + next() % 4 {
                let at = 14 + (next() as usize) % (f.len() - 14).max(1);
                if at < f.len() {
                    f[at] = next() as u8;
                }
            }
            let before = total_drops(&r);
            r.run(WAN, &f);
            dropped += total_drops(&r) - before;
            r.io.sent(WAN);
            r.io.sent(TAP);
        }
        assert!(dropped > 2000, "{dropped}");
        let named = r.drops(DropReason::Icmpv6BadChecksum)
            + r.drops(DropReason::Ipv6Malformed)
            + r.drops(DropReason::NdBadHopLimit)
            + r.drops(DropReason::NdMalformed)
            + r.drops(DropReason::Icmpv6Malformed)
            + r.drops(DropReason::Ipv6BadSource)
            + r.drops(DropReason::Ipv6NotForUs);
        assert!(named > 2000, "{named}");
    }
}
