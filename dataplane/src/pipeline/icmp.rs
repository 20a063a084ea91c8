//! ICMP errors the router sends (RFC 792, RFC 1812 4.3.2): time exceeded,
//! network unreachable, fragmentation needed with the next-hop MTU. Built
//! in the offending packet's buffer, sourced from the router address, rate
//! limited by a token bucket; never sent to a source that is not one host.

use super::{hygiene, Meta, Worker};
use crate::counters::{DropReason, Event};
use crate::packet::{PacketBuf, PortIo};
use crate::snapshot::Snapshot;
use crate::wire::{self, icmpv4, ipv4::Packet as Ipv4Packet};

/// An ICMP error the router sends, with what it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IcmpError {
    /// Time Exceeded: TTL expired in transit (type 11, code 0).
    TtlExpired,
    /// Destination Unreachable: no route (type 3, code 0).
    NetUnreachable,
    /// Destination Unreachable: fragmentation needed and DF set (type 3,
    /// code 4), with the next-hop MTU (RFC 1191).
    FragNeeded { mtu: u16 },
}

impl IcmpError {
    fn type_code(self) -> (u8, u8) {
        match self {
            IcmpError::TtlExpired => (icmpv4::TYPE_TIME_EXCEEDED, 0),
            IcmpError::NetUnreachable => (icmpv4::TYPE_DEST_UNREACHABLE, 0),
            IcmpError::FragNeeded { .. } => (icmpv4::TYPE_DEST_UNREACHABLE, 4),
        }
    }

    /// The four bytes after the checksum.
    fn rest_of_header(self) -> u32 {
        match self {
            IcmpError::FragNeeded { mtu } => u32::from(mtu),
            IcmpError::TtlExpired | IcmpError::NetUnreachable => 0,
        }
    }
}

/// The IPv4 header of an ICMP error before length, ident, addresses and
/// checksum: version 4, IHL 5, TOS 0xc0 (precedence 6, internetwork
/// control), DF clear, TTL 64, protocol ICMP.
const ERROR_IP_HEADER: [u8; wire::IPV4_MIN] = [
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
];

/// Token bucket for ICMP errors, refilled from the burst timestamp.
pub(super) struct TokenBucket {
    tokens: u64,
    cap: u64,
    per_sec: u64,
    last_ns: u64,
}

impl TokenBucket {
    pub(super) fn new(per_sec: u32) -> Self {
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

impl<B: PacketBuf> Worker<B> {
    /// Turns `buf` into an ICMP error about itself (RFC 792 / RFC 1812 4.3.2)
    /// and routes it back to the source, rate limited, sourced from the
    /// router address. The caller has already counted why the packet failed.
    pub(super) fn icmp_error<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        snap: &Snapshot,
        m: Meta,
        mut buf: B,
        err: IcmpError,
    ) {
        let ip = Ipv4Packet::new_unchecked(&buf.data()[wire::ETH_LEN..]);
        let ihl = ip.header_len();
        let src = ip.src_addr();
        // Never about a non-first fragment, never about an ICMP error.
        if ip.frag_offset() != 0 {
            return;
        }
        let payload = ip.payload();
        if ip.protocol() == wire::PROTO_ICMP
            && !payload.is_empty()
            && icmpv4::Packet::new_unchecked(payload).is_error()
        {
            return;
        }
        // RFC 1812 4.3.2.7: never about a datagram whose source is not one
        // host (martian, broadcast, multicast, ours), sent to a broadcast or
        // multicast address, or received as a link-layer broadcast. The IPv4
        // stage drops those before any error can be due; this is the last
        // guard, so an error never reaches them whatever path leads here.
        let dst = ip.dst_addr();
        if hygiene::martian_class(src)
            || self.addrs.not_source.contains(src)
            || hygiene::group_destination(dst)
            || self.addrs.broadcast.contains(dst)
            || buf.data()[0] & 1 != 0
        {
            self.links.stats.event(Event::IcmpSuppressed);
            return;
        }
        if !self.icmp.take(self.now_ns) {
            self.links.stats.event(Event::IcmpRateLimited);
            return;
        }
        let quote = ip.buffer_len().min(ihl + 8);
        if !buf.set_len(wire::ETH_LEN + quote) || !buf.prepend(wire::IPV4_MIN + icmpv4::HEADER_LEN)
        {
            self.links.stats.dropped(DropReason::NoMbuf);
            return;
        }
        self.ip_ident = self.ip_ident.wrapping_add(1);
        let ident = self.ip_ident;
        let router = self.cfg.router_addr;
        let total = wire::IPV4_MIN + icmpv4::HEADER_LEN + quote;
        let mut ip = Ipv4Packet::new_unchecked(&mut buf.data_mut()[wire::ETH_LEN..]);
        ip.as_mut_bytes()[..wire::IPV4_MIN].copy_from_slice(&ERROR_IP_HEADER);
        ip.set_total_len(total as u16);
        ip.set_ident(ident);
        ip.set_src_addr(router);
        ip.set_dst_addr(src);
        ip.fill_checksum();
        let (icmp_type, code) = err.type_code();
        let mut icmp = icmpv4::Packet::new_unchecked(ip.payload_mut());
        icmp.set_msg_type(icmp_type);
        icmp.set_msg_code(code);
        icmp.set_rest_of_header(err.rest_of_header());
        icmp.fill_checksum();
        self.links.stats.event(Event::IcmpSent);
        self.send_local(io, snap, Meta::originated(m.port(), wire::IPV4_MIN), buf);
    }
}
