//! IPv4 in: header sanity (version, IHL, lengths, checksum) and RFC 1812
//! checks (martian sources and destinations), then the fork: tunnel traffic
//! for us, the router's own traffic (exception path to the TAP, or an echo
//! reply), TTL expiry, or a route. Also routes what the router originates.

use super::icmp::IcmpError;
use super::lookup::Target;
use super::{Meta, Worker};
use crate::counters::{DropReason, Event};
use crate::packet::{PacketBuf, PortIo};
use crate::snapshot::{EndpointAction, Snapshot};
use crate::tunnel;
use crate::wire::{self, checksum_adjust, icmpv4, ipv4::Packet as Ipv4Packet};

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
    #[inline]
    pub(super) fn is_local(&self, ip: u32) -> bool {
        ip == self.cfg.router_addr || self.cfg.ports.iter().any(|p| p.addr == ip)
    }

    /// IPv4 from `m.in_port`; `m.depth` is 1 for the inner packet of a
    /// decapsulated one. Sets `m.ihl` for the stages after it.
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
        let extra = ip.buffer_len() - usize::from(ip.total_len());
        if extra > 0 {
            // Ethernet padding beyond the IP total length.
            buf.trim(extra);
        }
        m.ihl = ihl as u8;
        let info = self.cfg.ports[m.port()];
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
