//! IPv4 in: header sanity (version, IHL, lengths, checksum) and RFC 1812
//! checks (martian sources and destinations, the router's own addresses as
//! source, link-layer broadcasts carrying unicast IP, source routes, strict
//! uRPF; the facts and policies in `hygiene`), then the fork: tunnel traffic
//! for us, the router's own traffic (exception path to the TAP, or an echo
//! reply), TTL expiry, or a route. Also routes what the router originates.

use super::hygiene::{self, Options};
use super::icmp::IcmpError;
use super::lookup::Target;
use super::{Meta, Worker};
use crate::counters::{DropReason, Event};
use crate::packet::{PacketBuf, PortIo};
use crate::snapshot::{EndpointAction, Snapshot};
use crate::tunnel;
use crate::wire::{self, checksum_adjust, icmpv4, ipv4::Packet as Ipv4Packet};
use cer_shared::config::SourceRoutePolicy;

/// The drop reason of a structurally broken IPv4 header.
fn malformed(e: wire::Error) -> DropReason {
    match e {
        wire::Error::Version => DropReason::Ipv4BadVersion,
        wire::Error::HeaderLen => DropReason::Ipv4BadIhl,
        wire::Error::TotalLen => DropReason::Ipv4BadLength,
        // `Unsupported` is not an outcome of the IPv4 checks.
        wire::Error::Truncated | wire::Error::Unsupported => DropReason::Ipv4Truncated,
    }
}

/// What the routing decision needs of a checked transit packet.
#[derive(Debug, Clone, Copy)]
pub(super) struct Transit {
    pub dst: u32,
    pub ttl: u8,
    /// The destination's /32 exact match, already looked up.
    pub exact: Option<EndpointAction>,
}

impl<B: PacketBuf> Worker<B> {
    /// Is `ip` one of the router's own addresses?
    #[inline(always)]
    pub(super) fn is_local(&self, ip: u32) -> bool {
        self.addrs.local.contains(ip)
    }

    /// IPv4 from `m.in_port`; `m.depth` is 1 for the inner packet of a
    /// decapsulated one. Sets `m.ihl` for the stages after it.
    ///
    /// The RFC 1812 checks, in this order (`burst::candidate` sends only
    /// packets that pass all of them but uRPF to `transit` or `decap`, and
    /// checks uRPF itself):
    /// 1. source: not martian by class (0/8, 127/8, 169.254/16, 224/4,
    ///    240/4), not any port's subnet broadcast (`ipv4_martian_source`),
    ///    not one of the router's own addresses (`ipv4_source_is_router`,
    ///    also for a decapsulated inner packet);
    /// 2. strict uRPF where the arrival port has it (`ipv4_urpf_strict_failed`);
    /// 3. destination: multicast, the limited broadcast or the arrival
    ///    port's subnet broadcast go to the kernel side (never routed);
    ///    unicast IP in a link-layer broadcast or multicast frame is
    ///    dropped (RFC 1812 5.3.4, RFC 1122 3.3.6: `ipv4_unicast_in_l2_broadcast`);
    ///    0/8, 127/8, 169.254/16 and 240/4 are never routed
    ///    (`ipv4_martian_destination`), nor another port's subnet broadcast
    ///    (RFC 2644: `ipv4_directed_broadcast`);
    /// 4. options: malformed (`ipv4_bad_options`), loose or strict source
    ///    route (`ipv4_source_route`, unless `source_route = "forward"`);
    /// 5. a decapsulated packet for a tunnel peer's transport address is
    ///    a hairpin (`tunnel_hairpin`, see `transit`).
    pub(super) fn ipv4<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        snap: &Snapshot,
        mut m: Meta,
        mut buf: B,
    ) {
        let d = buf.data();
        if d.len() < wire::ETH_LEN + wire::IPV4_MIN {
            return self.drop_pkt(DropReason::Ipv4Truncated, buf);
        }
        // Received as a link-layer broadcast or multicast (a decapsulated
        // packet's Ethernet header is ours: unicast).
        let l2_group = d[0] & 1 != 0;
        let ip = match Ipv4Packet::new_checked(&d[wire::ETH_LEN..]) {
            Ok(ip) => ip,
            Err(e) => return self.drop_pkt(malformed(e), buf),
        };
        if !ip.verify_checksum() {
            return self.drop_pkt(DropReason::Ipv4BadChecksum, buf);
        }
        let ihl = ip.header_len();
        let src = ip.src_addr();
        let dst = ip.dst_addr();
        let ttl = ip.ttl();
        let proto = ip.protocol();
        let fragmented = ip.is_fragment();
        let options = if ihl > wire::IPV4_MIN {
            hygiene::scan_options(ip.options())
        } else {
            Options::Plain
        };
        let extra = ip.buffer_len() - usize::from(ip.total_len());
        if extra > 0 {
            // Ethernet padding beyond the IP total length.
            buf.trim(extra);
        }
        m.ihl = ihl as u8;
        let port = m.port();
        let info = self.cfg.ports[port];
        if hygiene::martian_class(src) || self.addrs.broadcast.contains(src) {
            return self.drop_pkt(DropReason::Ipv4MartianSource, buf);
        }
        if self.is_local(src) {
            return self.drop_pkt(DropReason::Ipv4SourceIsRouter, buf);
        }
        if m.depth == 0 && self.urpf_on(port) && !self.urpf_ok(snap, src, port) {
            return self.drop_pkt(DropReason::Ipv4UrpfFailed, buf);
        }
        if hygiene::group_destination(dst) || Some(dst) == info.subnet_broadcast() {
            // Multicast and broadcast are not routed; the kernel side may want them.
            return match info.tap {
                Some(tap) => self.punt(io, tap, buf),
                None => self.drop_pkt(DropReason::Ipv4NotRoutable, buf),
            };
        }
        if l2_group {
            return self.drop_pkt(DropReason::Ipv4UnicastInL2Broadcast, buf);
        }
        if hygiene::martian_class(dst) {
            return self.drop_pkt(DropReason::Ipv4MartianDestination, buf);
        }
        if self.addrs.broadcast.contains(dst) {
            return self.drop_pkt(DropReason::Ipv4DirectedBroadcast, buf);
        }
        match options {
            Options::Plain => {}
            Options::Malformed => return self.drop_pkt(DropReason::Ipv4BadOptions, buf),
            Options::SourceRoute => match self.source_route {
                SourceRoutePolicy::Drop => return self.drop_pkt(DropReason::Ipv4SourceRoute, buf),
                SourceRoutePolicy::Forward => {
                    self.links.stats.event(Event::SourceRouteForwarded);
                }
            },
        }
        if m.depth > 0 && snap.tunnels.is_remote(dst) {
            return self.drop_pkt(DropReason::TunnelHairpin, buf);
        }
        if self.is_local(dst) {
            let tunnel_proto = matches!(
                proto,
                tunnel::PROTO_IPIP | tunnel::PROTO_GRE | wire::PROTO_UDP
            );
            if tunnel_proto && !snap.tunnels.is_empty() {
                if fragmented {
                    return self.reassemble(io, snap, m, buf);
                }
                return self.decap(io, snap, m, buf);
            }
            return self.local(io, snap, m, buf);
        }
        let exact = snap.endpoints.get(dst);
        self.transit(io, snap, m, buf, Transit { dst, ttl, exact })
    }

    /// A checked transit packet (not for us, not multicast): TTL expiry, or
    /// the route to its destination, whose /32 exact match was already
    /// looked up (here, or by the burst stage).
    ///
    /// Tunnel hairpins: a decapsulated packet is never encapsulated again,
    /// into any tunnel (`tunnel_hairpin`). The overlay is a full mesh, so a
    /// sender always has a direct tunnel to the owner of a /32 and no site
    /// relays for another; a packet that would go back into the overlay means
    /// two sites disagree about the owner (a move in progress), and relaying
    /// it would bounce it between them until its TTL ran out. Dropping it
    /// costs that packet while BGP converges, never a loop.
    #[inline]
    pub(super) fn transit<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        snap: &Snapshot,
        m: Meta,
        buf: B,
        t: Transit,
    ) {
        let Transit { dst, ttl, exact } = t;
        if ttl <= 1 {
            self.links.stats.dropped(DropReason::TtlExpired);
            return self.icmp_error(io, snap, m, buf, IcmpError::TtlExpired);
        }
        match self.route_with(snap, dst, exact, &buf, m.ihl()) {
            Ok(Target::Port(out, nh)) => self.output(io, snap, m, buf, out, nh),
            Ok(Target::Tunnel(_)) if m.depth > 0 => self.drop_pkt(DropReason::TunnelHairpin, buf),
            Ok(Target::Tunnel(t)) => self.enter_tunnel(io, snap, m, t, buf),
            Err(DropReason::NoRoute) => {
                self.links.stats.dropped(DropReason::NoRoute);
                self.icmp_error(io, snap, m, buf, IcmpError::NetUnreachable)
            }
            Err(reason) => self.drop_pkt(reason, buf),
        }
    }

    /// Traffic for the router itself. The arrival port's TAP takes it (the
    /// kernel there holds that port's address and replies on the same link);
    /// without one, the dataplane answers ICMP echo itself, and anything else
    /// goes to the router's default TAP, if there is one.
    pub(super) fn local<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        snap: &Snapshot,
        m: Meta,
        mut buf: B,
    ) {
        if let Some(tap) = self.cfg.ports[m.port()].tap {
            return self.punt(io, tap, buf);
        }
        let mut ip = Ipv4Packet::new_unchecked(&mut buf.data_mut()[wire::ETH_LEN..]);
        let is_echo = ip.protocol() == wire::PROTO_ICMP
            && !ip.is_fragment()
            && icmpv4::Packet::new_checked(ip.payload()).is_ok_and(|icmp| {
                icmp.msg_type() == icmpv4::TYPE_ECHO_REQUEST && icmp.msg_code() == 0
            });
        if !is_echo {
            return match self.cfg.default_tap() {
                Some(tap) => self.punt(io, tap, buf),
                None => self.drop_pkt(DropReason::NoExceptionPath, buf),
            };
        }
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        ip.set_src_addr(dst);
        ip.set_dst_addr(src);
        ip.set_ttl(64);
        ip.fill_checksum();
        let mut icmp = icmpv4::Packet::new_unchecked(ip.payload_mut());
        icmp.set_msg_type(icmpv4::TYPE_ECHO_REPLY);
        // Type 8 -> 0 changes one 16-bit word (type/code).
        let c = checksum_adjust(icmp.checksum(), 0x0800, 0x0000);
        icmp.set_checksum(c);
        self.links.stats.event(Event::IcmpEchoReplied);
        self.send_local(io, snap, m, buf);
    }

    /// Routes a packet the router originated (ICMP), no TTL decrement;
    /// `m.ihl` is its header length.
    pub(super) fn send_local<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        snap: &Snapshot,
        m: Meta,
        buf: B,
    ) {
        let m = Meta {
            forwarded: false,
            ..m
        };
        let dst = Ipv4Packet::new_unchecked(&buf.data()[wire::ETH_LEN..]).dst_addr();
        match self.route(snap, dst, &buf, m.ihl()) {
            Ok(Target::Port(out, nh)) => self.output(io, snap, m, buf, out, nh),
            Ok(Target::Tunnel(t)) => self.enter_tunnel(io, snap, m, t, buf),
            Err(reason) => self.drop_pkt(reason, buf),
        }
    }
}
