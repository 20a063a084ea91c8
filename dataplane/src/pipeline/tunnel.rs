//! Tunnels, the stage: decapsulation of GRE, IPIP, FOU and GUE traffic for
//! us (after reassembling outer fragments; WireGuard goes to `wireguard`),
//! and the way in: MSS clamp, tunnel MTU, TTL, encapsulation, underlay
//! route. The header formats themselves are in `crate::tunnel`.

use super::frag::FragSink;
use super::icmp::IcmpError;
use super::{Meta, Worker};
use crate::counters::{DropReason, Event};
use crate::packet::{PacketBuf, PortIo};
use crate::reassembly::Outcome;
use crate::snapshot::Snapshot;
use crate::tunnel::{self, Decap, TunnelInfo};
use crate::wire::{self, ipv4::Packet as Ipv4Packet};
use cer_shared::config::TunnelKind;

impl<B: PacketBuf> Worker<B> {
    /// Outer fragments to us: reassemble, then decapsulate the whole packet.
    pub(super) fn reassemble<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        snap: &Snapshot,
        m: Meta,
        buf: B,
    ) {
        match self.reasm.insert(io, buf, self.now_ns) {
            Outcome::Pending => {}
            Outcome::Dropped(reason) => self.links.stats.dropped(reason),
            Outcome::Complete(whole) => {
                self.links.stats.event(Event::Reassembled);
                let ihl = Ipv4Packet::new_unchecked(&whole.data()[wire::ETH_LEN..]).header_len();
                let m = Meta {
                    ihl: ihl as u8,
                    ..m
                };
                self.decap(io, snap, m, whole)
            }
        }
    }

    /// Tunnel traffic to us from a configured peer: strip the outer headers
    /// and forward the inner packet; anything else for us: the exception path.
    pub(super) fn decap<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        snap: &Snapshot,
        m: Meta,
        buf: B,
    ) {
        let d = tunnel::classify(&buf.data()[wire::ETH_LEN..], m.ihl(), &snap.tunnels);
        self.decap_classified(io, snap, m, buf, d)
    }

    /// `decap` once the outer packet is classified (`tunnel::classify`; the
    /// burst stage classifies a whole burst first).
    pub(super) fn decap_classified<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        snap: &Snapshot,
        m: Meta,
        mut buf: B,
        d: Decap,
    ) {
        match d {
            Decap::NotTunnel => self.local(io, snap, m, buf),
            Decap::Drop(reason) => self.drop_pkt(reason, buf),
            Decap::Wireguard { offset, tunnel } => {
                if m.depth > 0 {
                    return self.drop_pkt(DropReason::TunnelNested, buf);
                }
                self.capture_tunnel_eth(tunnel, true, true, buf.data());
                self.wg_decap(io, snap, m.port(), tunnel, offset, buf)
            }
            Decap::Inner { offset, tunnel } => {
                if m.depth > 0 {
                    return self.drop_pkt(DropReason::TunnelNested, buf);
                }
                self.capture_tunnel_eth(tunnel, true, true, buf.data());
                // [eth][outer..][inner] -> [eth][inner]: drop `offset` bytes and
                // rewrite the 14 bytes now in front as an Ethernet header.
                if !buf.adj(offset) || buf.len() < wire::ETH_LEN + wire::IPV4_MIN {
                    return self.drop_pkt(DropReason::TunnelMalformed, buf);
                }
                let mac = self.cfg.ports[m.port()].mac;
                wire::write_eth(buf.data_mut(), &mac, &[0; 6], wire::ETHERTYPE_IPV4);
                self.links.stats.event(Event::Decapsulated);
                self.capture_tunnel_eth(tunnel, false, true, buf.data());
                let inner = Meta {
                    depth: m.depth + 1,
                    ..m
                };
                self.ipv4(io, snap, inner, buf)
            }
        }
    }

    /// Into tunnel `tid`: MSS clamp, tunnel MTU (ICMP frag-needed with DF,
    /// else fragment the inner packet), TTL, encapsulate, route the outer packet.
    pub(super) fn enter_tunnel<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        snap: &Snapshot,
        m: Meta,
        tid: u32,
        mut buf: B,
    ) {
        let Some(&t) = snap.tunnels.get(tid) else {
            return self.drop_pkt(DropReason::NoTunnel, buf);
        };
        if wire::clamp_mss(
            &mut buf.data_mut()[wire::ETH_LEN..],
            m.ihl(),
            t.mtu.saturating_sub(40),
        ) {
            self.links.stats.event(Event::MssClamped);
        }
        let total = buf.len() - wire::ETH_LEN;
        if total > usize::from(t.mtu) {
            let df = Ipv4Packet::new_unchecked(&buf.data()[wire::ETH_LEN..]).dont_frag();
            if df && !t.force_fragment {
                self.links.stats.dropped(DropReason::FragNeeded);
                if m.forwarded {
                    let err = IcmpError::FragNeeded { mtu: t.mtu };
                    return self.icmp_error(io, snap, m, buf, err);
                }
                return;
            }
            return self.fragment(io, snap, m, FragSink::Tunnel(t), buf, usize::from(t.mtu));
        }
        if m.forwarded {
            Ipv4Packet::new_unchecked(&mut buf.data_mut()[wire::ETH_LEN..]).decrement_ttl();
        }
        self.encap_send(io, snap, m, &t, buf);
    }

    /// Encapsulates an inner packet (Ethernet header in front, TTL already
    /// handled) and sends the outer packet over the underlay.
    pub(super) fn encap_send<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        snap: &Snapshot,
        m: Meta,
        t: &TunnelInfo,
        mut buf: B,
    ) {
        self.capture_tunnel_eth(t.id, false, false, buf.data());
        if t.kind == TunnelKind::Wireguard {
            return self.wg_encap(io, snap, m.port(), t.id, buf);
        }
        let hash = match buf.rss_hash() {
            Some(h) => h,
            None => Ipv4Packet::new_unchecked(&buf.data()[wire::ETH_LEN..]).flow_hash(),
        };
        self.ip_ident = self.ip_ident.wrapping_add(1);
        if !buf.adj(wire::ETH_LEN) || !tunnel::encap(&mut buf, t, self.ip_ident, hash) {
            return self.drop_pkt(DropReason::NoMbuf, buf);
        }
        match self.underlay(snap, t.remote, hash) {
            Ok((out, nh)) => {
                self.links.stats.event(Event::Encapsulated);
                self.capture_tunnel_eth(t.id, true, false, buf.data());
                let outer = Meta::originated(m.port(), wire::IPV4_MIN);
                self.output(io, snap, outer, buf, out, nh)
            }
            Err(_) => self.drop_pkt(DropReason::TunnelNoUnderlay, buf),
        }
    }
}
