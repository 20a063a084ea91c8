//! Ethernet classify, the first stage: a frame received on a NIC port is
//! checked (single segment, length, destination MAC) and handed to ARP,
//! IPv4 or IPv6 by EtherType; anything else is a counted drop.

use super::{Meta, Worker};
use crate::counters::DropReason;
use crate::packet::{PacketBuf, PortIo};
use crate::snapshot::Snapshot;
use crate::wire::{self, ethernet::Frame as EthernetFrame};

impl<B: PacketBuf> Worker<B> {
    /// Ethernet classify for a frame received on NIC port `m.in_port`.
    #[inline]
    pub(super) fn process<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        snap: &Snapshot,
        m: Meta,
        buf: B,
    ) {
        if !buf.is_contiguous() {
            return self.drop_pkt(DropReason::MultiSegment, buf);
        }
        let d = buf.data();
        let Ok(frame) = EthernetFrame::new_checked(d) else {
            return self.drop_pkt(DropReason::EthTruncated, buf);
        };
        let info = self.cfg.ports[m.port()];
        // A giant: more than the port accepts (MTU + Ethernet + VLAN on NICs).
        if d.len() > usize::from(info.max_frame) {
            return self.drop_pkt(DropReason::Oversized, buf);
        }
        // IPv6 multicast (33:33:..) is checked by group in `ipv6`; IPv4 in a
        // broadcast or multicast frame must be broadcast or multicast IP
        // (checked in `ipv4`).
        let dst = frame.dst_addr();
        if dst != info.mac && dst != wire::BROADCAST && !frame.is_ipv6_multicast() {
            let reason = if frame.dst_is_group() {
                DropReason::L2Multicast
            } else {
                DropReason::L2OtherHost
            };
            return self.drop_pkt(reason, buf);
        }
        match frame.ethertype() {
            wire::ETHERTYPE_IPV4 => self.ipv4(io, snap, m, buf),
            wire::ETHERTYPE_ARP => self.arp(io, snap, m, buf),
            wire::ETHERTYPE_IPV6 => self.ipv6(io, snap, m, buf),
            _ => self.drop_pkt(DropReason::UnsupportedEthertype, buf),
        }
    }
}
