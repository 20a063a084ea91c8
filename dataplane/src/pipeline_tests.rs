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
                proxy_arp: true,
                tap: None,
            },
            PortInfo {
                mac: WAN_MAC,
                addr: u("10.2.0.1"),
                prefix_len: 24,
                mtu: 1400,
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
        let mut r = Rig {
            io: MemPorts::new(roles.len(), 64),
            worker: Worker::new(cfg, links),
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
            },
            NextHop {
                port: "wan".into(),
                gateway: Some("10.2.0.253".parse().unwrap()),
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
    cases.push((v6, DropReason::UnsupportedEthertype));
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
