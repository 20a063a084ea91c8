//! The burst stage for IPv4, VPP-style (ip4-input and ip4-lookup over a
//! whole vector): every frame of an rx burst is checked at once, the /32
//! slots of all transit packets (and of the inner packets of tunnel traffic
//! to us) are prefetched together, then looked up together (prefetching
//! their neighbors), so a million-entry table costs overlapping cache misses
//! instead of one stall per packet. Transit packets then enter the routing
//! decision directly (`Worker::transit`), tunnel packets the decapsulation
//! (`Worker::decap_classified`); every other frame (ARP, IPv6, the router's
//! own traffic, options, fragments to us, anything malformed) takes the
//! per-packet stages from `process`, in arrival order.

use super::ipv4::Transit;
use super::{hygiene, Meta, PortInfo, Worker};
use crate::packet::{PacketBuf, PortIo, BURST};
use crate::snapshot::{EndpointAction, Snapshot};
use crate::tunnel::{self, Decap};
use crate::wire::{self, ipv4::Packet as Ipv4Packet};
use arrayvec::ArrayVec;

/// How many frames ahead stage one loads packet headers.
const PREFETCH_AHEAD: usize = 4;

/// A checked IPv4 frame the burst stage handles itself.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    /// The destination whose /32 is looked up: the packet's own (transit),
    /// or the inner packet's (tunnel traffic to us).
    dst: u32,
    /// IPv4 total length (the frame may carry link padding after it).
    total: u16,
    ttl: u8,
    /// Tunnel traffic to us, classified; `None` for transit.
    decap: Option<Decap>,
}

impl<B: PacketBuf> Worker<B> {
    /// IPv4 that `process` and `ipv4` accept without a side effect and hand
    /// to `transit` or `decap`: a single-segment frame within the port's max
    /// frame, to the port's MAC (so not a link-layer broadcast), IPv4 without
    /// options (so no source route), a sound total length and header
    /// checksum, a source that is neither martian nor a broadcast nor one of
    /// the router's addresses, a destination that is neither martian nor
    /// multicast nor any port's subnet broadcast (strict uRPF, where the port
    /// has it, is checked by `phys_burst` on the candidates). Transit when the
    /// destination is not the router's; for the router, only unfragmented
    /// IPIP, GRE or UDP while tunnels exist (classified here; a WireGuard or
    /// GRE/UDP packet that is not tunnel traffic keeps its classification,
    /// which `decap_classified` acts on). Anything else returns `None` and
    /// goes the per-packet way, which names the reason. (The conditions
    /// mirror `process` and `ipv4`; the pipeline tests run both ways.)
    #[inline(always)]
    fn candidate(&self, snap: &Snapshot, buf: &B, info: &PortInfo) -> Option<Candidate> {
        if !buf.is_contiguous() {
            return None;
        }
        let d = buf.data();
        if d.len() < wire::ETH_LEN + wire::IPV4_MIN
            || d.len() > usize::from(info.max_frame)
            || d[0..6] != info.mac
            || wire::be16(d, 12) != wire::ETHERTYPE_IPV4
        {
            return None;
        }
        let h = &d[wire::ETH_LEN..];
        let ip = Ipv4Packet::new_unchecked(h);
        let total = ip.total_len();
        if h[0] != 0x45
            || usize::from(total) < wire::IPV4_MIN
            || usize::from(total) > h.len()
            || !ip.verify_checksum()
        {
            return None;
        }
        // RFC 1812: a source that is martian, a broadcast or ours, a
        // destination that is martian, multicast or any broadcast: the
        // per-packet stages name the drop (or punt). Screened by a table
        // load per address and one filter word per address for the common
        // miss (transit); the exact sets only behind a screen hit.
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        if hygiene::martian_pair(src, dst) {
            return None;
        }
        let f = &self.addrs;
        let local = if f.screen(src, dst) {
            if f.not_source.contains(src) || f.broadcast.contains(dst) {
                return None;
            }
            f.local.contains(dst)
        } else {
            false
        };
        let ttl = ip.ttl();
        if !local {
            return Some(Candidate {
                dst,
                total,
                ttl,
                decap: None,
            });
        }
        let tunnel_proto = matches!(
            ip.protocol(),
            tunnel::PROTO_IPIP | tunnel::PROTO_GRE | wire::PROTO_UDP
        );
        if !tunnel_proto || snap.tunnels.is_empty() || ip.is_fragment() {
            return None;
        }
        // Classified on the packet as `decap` will see it (padding trimmed).
        let outer = &h[..usize::from(total)];
        let decap = tunnel::classify(outer, wire::IPV4_MIN, &snap.tunnels);
        // The inner destination, to warm its /32 (a hint: unchecked here).
        let inner = match decap {
            Decap::Inner { offset, .. } if outer.len() >= offset + wire::IPV4_MIN => {
                wire::be32(outer, offset + wire::ip::DST)
            }
            _ => 0,
        };
        Some(Candidate {
            dst: inner,
            total,
            ttl,
            decap: Some(decap),
        })
    }

    /// A burst received on NIC port `port`, drained.
    pub(super) fn phys_burst<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        snap: &Snapshot,
        port: usize,
        rx: &mut ArrayVec<B, BURST>,
    ) {
        let info = self.cfg.ports[port];
        // Per-packet stage results, pushed (not a pre-initialized array: a
        // burst is often short, and nothing here needs zeroing).
        let mut cand: ArrayVec<Option<Candidate>, BURST> = ArrayVec::new();
        // ip4-input: check every frame; prefetch the /32 slot of transit ones,
        // and the headers of the frame a few ahead (VPP's quad loop).
        for (i, buf) in rx.iter().enumerate() {
            if let Some(ahead) = rx.get(i + PREFETCH_AHEAD) {
                ahead.prefetch_data();
            }
            let c = self.candidate(snap, buf, &info);
            if let Some(c) = c {
                snap.endpoints.prefetch(c.dst);
            }
            cand.push(c);
        }
        // Strict uRPF (RFC 3704) where the port has it: a candidate whose
        // source fails it takes the per-packet path, which names the drop.
        // Its own loop, so a port without it pays one branch per burst.
        if self.urpf_on(port) {
            for (c, buf) in cand.iter_mut().zip(rx.iter()) {
                if c.is_some() {
                    let src = wire::be32(buf.data(), wire::ETH_LEN + wire::ip::SRC);
                    if !self.urpf_ok(snap, src, port) {
                        *c = None;
                    }
                }
            }
        }
        // ip4-lookup: the slots are (mostly) in cache now; start loading the
        // neighbor of each local delivery.
        let mut exact: ArrayVec<Option<EndpointAction>, BURST> = ArrayVec::new();
        for c in cand.iter() {
            let e = c.and_then(|c| snap.endpoints.get(c.dst));
            if let (Some(EndpointAction::Local { port }), Some(c)) = (e, c) {
                snap.neighbors.prefetch(port, c.dst);
            }
            exact.push(e);
        }
        // Then each packet, in arrival order.
        let m = Meta::received(port);
        for (i, mut buf) in rx.drain(..).enumerate() {
            let Some(c) = cand[i] else {
                self.process(io, snap, m, buf);
                continue;
            };
            let extra = buf.len() - wire::ETH_LEN - usize::from(c.total);
            if extra > 0 {
                // Ethernet padding beyond the IP total length.
                buf.trim(extra);
            }
            let m = Meta {
                ihl: wire::IPV4_MIN as u8,
                ..m
            };
            match c.decap {
                None => {
                    let t = Transit {
                        dst: c.dst,
                        ttl: c.ttl,
                        exact: exact[i],
                    };
                    self.transit(io, snap, m, buf, t);
                }
                Some(d) => self.decap_classified(io, snap, m, buf, d),
            }
        }
    }
}
