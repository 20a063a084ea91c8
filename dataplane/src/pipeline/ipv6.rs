//! IPv6 for the router (not routed): neighbor discovery is validated,
//! learned and answered here (NS for our link-local address, RS on
//! unnumbered ports, RAs on command), then every IPv6 packet for us goes to
//! the port's TAP, where the kernel runs BGP over link-local addresses.

use super::{Learn6, Meta, PortInfo, Worker};
use crate::counters::{DropReason, Event};
use crate::nd::{self, Ipv6In, NdKind, NdMessage};
use crate::packet::{PacketBuf, PortIo};
use crate::snapshot::{NeighborStatus, Snapshot};
use crate::wire::{self, ethernet::Frame as EthernetFrame};
use crossbeam_queue::ArrayQueue;
use smoltcp::wire::Ipv6Packet;
use std::net::Ipv6Addr;
use std::sync::Arc;

/// Neighbor discovery facts of one port, computed once.
pub(super) struct PortNd {
    /// The link-local address (EUI-64 from the port MAC).
    ll: Ipv6Addr,
    /// The Router Advertisement frame sent on `CoreCommand::RouterAdvert`.
    ra: Box<[u8]>,
    /// Router Solicitations are answered with `ra` (the port is unnumbered).
    answers_rs: bool,
    /// When this core last sent `ra` (solicited answers are rate limited).
    last_ra_ns: Option<u64>,
}

/// RFC 4861 MIN_DELAY_BETWEEN_RAS: solicited RAs at most this often.
const MIN_DELAY_BETWEEN_RAS_NS: u64 = 3_000_000_000;

impl PortNd {
    pub(super) fn for_ports(ports: &[PortInfo], ra_lifetime_secs: u16) -> Vec<PortNd> {
        ports
            .iter()
            .map(|p| PortNd {
                ll: nd::link_local(p.mac),
                ra: nd::router_advert(p.mac, ra_lifetime_secs).into_boxed_slice(),
                answers_rs: false,
                last_ra_ns: None,
            })
            .collect()
    }
}

impl<B: PacketBuf> Worker<B> {
    /// Connects IPv6 neighbor learning to the manager's queue and sets the
    /// router lifetime the Router Advertisements carry.
    pub fn set_nd(&mut self, learn6: Arc<ArrayQueue<Learn6>>, ra_lifetime_secs: u16) {
        self.nd = PortNd::for_ports(&self.cfg.ports, ra_lifetime_secs);
        self.learn6 = Some(learn6);
    }

    pub fn with_nd(mut self, learn6: Arc<ArrayQueue<Learn6>>, ra_lifetime_secs: u16) -> Self {
        self.set_nd(learn6, ra_lifetime_secs);
        self
    }

    /// Which ports (by index) answer Router Solicitations with their RA
    /// (the `unnumbered` ones; call after `set_nd`).
    pub fn set_unnumbered(&mut self, unnumbered: &[bool]) {
        for (nd, u) in self.nd.iter_mut().zip(unnumbered) {
            nd.answers_rs = *u;
        }
    }

    pub fn with_unnumbered(mut self, unnumbered: &[bool]) -> Self {
        self.set_unnumbered(unnumbered);
        self
    }

    /// Sends the port's precomputed Router Advertisement.
    pub(super) fn router_advert<I: PortIo<Buf = B>>(&mut self, io: &mut I, port: usize) {
        let Some(nd) = self.nd.get_mut(port) else {
            return;
        };
        nd.last_ra_ns = Some(self.now_ns);
        let Some(mut buf) = io.alloc() else {
            self.links.stats.dropped(DropReason::NoMbuf);
            return;
        };
        let ra = &self.nd[port].ra;
        if !buf.set_len(ra.len()) {
            return self.drop_pkt(DropReason::NoMbuf, buf);
        }
        buf.data_mut().copy_from_slice(ra);
        self.links.stats.event(Event::RouterAdvertSent);
        self.enqueue(io, port, buf);
    }

    /// IPv6 for the router: neighbor discovery is validated, learned and
    /// answered here; then the packet (ND included) goes to the port's TAP.
    /// IPv6 is not routed.
    pub(super) fn ipv6<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        snap: &Snapshot,
        m: Meta,
        mut buf: B,
    ) {
        let port = m.port();
        let d = buf.data();
        if d.len() < wire::ETH_LEN + nd::IPV6_LEN {
            return self.drop_pkt(DropReason::Ipv6Malformed, buf);
        }
        let payload_len = Ipv6Packet::new_unchecked(&d[wire::ETH_LEN..]).payload_len();
        let total = nd::IPV6_LEN + usize::from(payload_len);
        let have = d.len() - wire::ETH_LEN;
        if total > have {
            return self.drop_pkt(DropReason::Ipv6Malformed, buf);
        }
        if have > total {
            // Ethernet padding.
            buf.trim(have - total);
        }
        match nd::classify(&buf.data()[wire::ETH_LEN..]) {
            Err(reason) => self.drop_pkt(reason, buf),
            Ok(Ipv6In::NotForUs) => self.drop_pkt(DropReason::Ipv6NotForUs, buf),
            Ok(Ipv6In::ForUs) => match self.cfg.ports[port].tap {
                Some(tap) => self.punt(io, tap, buf),
                None => self.drop_pkt(DropReason::NoExceptionPath, buf),
            },
            Ok(Ipv6In::Nd(msg)) => {
                let eth_src = EthernetFrame::new_unchecked(buf.data()).src_addr();
                self.nd_input(io, snap, port, &msg, eth_src);
                match self.cfg.ports[port].tap {
                    Some(tap) => self.punt(io, tap, buf),
                    None => {
                        self.links.stats.event(Event::NdConsumed);
                        drop(buf);
                    }
                }
            }
        }
    }

    /// Learns from a valid ND message and answers a solicitation for our
    /// link-local address (router, solicited, override).
    fn nd_input<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        snap: &Snapshot,
        port: usize,
        m: &NdMessage,
        eth_src: [u8; 6],
    ) {
        let mac = self.cfg.ports[port].mac;
        if eth_src == mac || m.lladdr == Some(mac) {
            // Our own frame looped back (or a MAC clash): never learn from it.
            return;
        }
        let ll = self.nd[port].ll;
        match m.kind {
            NdKind::RouterAdvert { .. } => {
                if let Some(l) = m.lladdr {
                    self.learn6(snap, port, m.src, l, true);
                }
            }
            NdKind::NeighborSolicit { target } => {
                if m.src.is_unspecified() {
                    // Duplicate address detection: the kernel side defends.
                    return;
                }
                if let Some(l) = m.lladdr {
                    self.learn6(snap, port, m.src, l, false);
                }
                if target != ll {
                    return;
                }
                let Some(mut out) = io.alloc() else {
                    self.links.stats.dropped(DropReason::NoMbuf);
                    return;
                };
                if !out.set_len(nd::NA_LEN) {
                    return self.drop_pkt(DropReason::NoMbuf, out);
                }
                nd::write_advert(out.data_mut(), mac, &m.src, m.lladdr.unwrap_or(eth_src));
                self.links.stats.event(Event::NeighborAdvertSent);
                self.enqueue(io, port, out);
            }
            NdKind::NeighborAdvert {
                target,
                router,
                solicited,
                ..
            } => {
                let l = m.lladdr.or((target == m.src).then_some(eth_src));
                let known = snap.neighbors6.get(port as u16, &target).is_some();
                if let Some(l) = l {
                    if target != ll && (solicited || known) {
                        self.learn6(snap, port, target, l, router);
                    }
                }
            }
            NdKind::RouterSolicit => {
                let nd = &self.nd[port];
                if !nd.answers_rs {
                    return;
                }
                let recent = nd
                    .last_ra_ns
                    .is_some_and(|t| self.now_ns.saturating_sub(t) < MIN_DELAY_BETWEEN_RAS_NS);
                if recent {
                    self.links.stats.event(Event::RouterAdvertSuppressed);
                    return;
                }
                // To all-nodes, as FRR answers (RFC 4861 6.2.6 allows it).
                self.router_advert(io, port);
            }
            NdKind::Redirect => {}
        }
    }

    /// Queues an IPv6 neighbor for the manager unless the snapshot already
    /// has it reachable at that MAC (RAs always go: they mark routers).
    fn learn6(&self, snap: &Snapshot, port: usize, ip: Ipv6Addr, mac: [u8; 6], router: bool) {
        if ip.is_unspecified() || ip.is_multicast() || ip == self.nd[port].ll {
            return;
        }
        if !router {
            if let Some(n) = snap.neighbors6.get(port as u16, &ip) {
                if n.mac == mac && n.status == NeighborStatus::Reachable {
                    return;
                }
            }
        }
        let Some(q) = &self.learn6 else { return };
        let l = Learn6 {
            port: port as u16,
            ip,
            mac,
            router,
        };
        if q.push(l).is_ok() {
            self.links.stats.event(Event::NdLearned);
        } else {
            self.links.stats.event(Event::NdLearnQueueFull);
        }
    }
}
