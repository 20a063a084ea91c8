//! Output to a port: neighbor resolution (ARP for IPv4 next hops, Neighbor
//! Solicitation for IPv6 link-local gateways, RFC 5549), the port MTU
//! (ICMP frag-needed or fragmentation), TTL decrement, Ethernet rewrite.

use super::frag::FragSink;
use super::icmp::IcmpError;
use super::{Meta, Worker};
use crate::counters::{DropReason, Event};
use crate::nd;
use crate::packet::{PacketBuf, PortIo};
use crate::snapshot::{is_gateway6_key, NeighborStatus, Snapshot};
use crate::wire::{self, ethernet::Frame as EthernetFrame, ipv4::Packet as Ipv4Packet};

/// Slots of the resolution rate limiter (`Worker::arp_sent`).
pub(super) const ARP_LIMITER_SLOTS: usize = 1024;

impl<B: PacketBuf> Worker<B> {
    /// Neighbor resolution, MTU handling, TTL, Ethernet rewrite, enqueue on
    /// port `out` towards next hop `nh`. `m.forwarded` is false for packets
    /// the router itself originated.
    pub(super) fn output<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        snap: &Snapshot,
        m: Meta,
        mut buf: B,
        out: usize,
        nh: u32,
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
            if Ipv4Packet::new_unchecked(&buf.data()[wire::ETH_LEN..]).dont_frag() {
                self.links.stats.dropped(DropReason::FragNeeded);
                if m.forwarded {
                    let err = IcmpError::FragNeeded { mtu: mtu as u16 };
                    return self.icmp_error(io, snap, m, buf, err);
                }
                return;
            }
            let sink = FragSink::Port {
                out,
                dst_mac: neigh.mac,
                src_mac,
            };
            return self.fragment(io, snap, m, sink, buf, mtu);
        }
        let mut frame = EthernetFrame::new_unchecked(buf.data_mut());
        if m.forwarded {
            Ipv4Packet::new_unchecked(frame.payload_mut()).decrement_ttl();
        }
        frame.set_dst_addr(&neigh.mac);
        frame.set_src_addr(&src_mac);
        frame.set_ethertype(wire::ETHERTYPE_IPV4);
        self.links.stats.event(Event::Forwarded);
        self.enqueue(io, out, buf);
    }

    /// The resolution rate limiter (ARP and ND share it): the (key, slot) to
    /// record a request for next hop `nh` on `port` in, or None (counted as
    /// `suppressed`) when one went out within `arp_retry_ns`.
    pub(super) fn solicit_slot(
        &mut self,
        port: usize,
        nh: u32,
        suppressed: Event,
    ) -> Option<(u64, usize)> {
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
    pub(super) fn reuse_or_alloc<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        reuse: Option<B>,
    ) -> Option<B> {
        let b = reuse.or_else(|| io.alloc());
        if b.is_none() {
            self.links.stats.dropped(DropReason::NoMbuf);
        }
        b
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
}
