//! ARP: requests and replies in (learning from valid unicast senders on the
//! port only, answering for the port's addresses), proxy ARP for captured
//! /32s while the gate is open, and the ARP requests the router sends to
//! resolve next hops.

use super::{hygiene, Learn, Meta, Worker};
use crate::counters::{DropReason, Event};
use crate::packet::{PacketBuf, PortIo};
use crate::snapshot::{EndpointAction, NeighborStatus, Snapshot};
use crate::wire::arp::{self, Packet as ArpPacket, Repr as ArpRepr};
use crate::wire::{self, ethernet::Frame as EthernetFrame};

/// Who sent an ARP packet, as far as learning goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sender {
    /// 0.0.0.0: an address probe (RFC 5227), answered, never learned.
    Probe,
    /// A host on the port: its subnet (not the network or broadcast
    /// address), or a /32 endpoint delivered on this port.
    Learnable,
    /// A unicast host off the port's subnet: answered when it asks for us,
    /// never learned (counted `arp_not_learned_off_subnet`).
    OffSubnet,
    /// Not one host (martian class, a subnet broadcast or network address)
    /// or one of the router's own addresses: dropped as `arp_bad_sender`.
    Bad,
}

impl<B: PacketBuf> Worker<B> {
    /// Classifies the sender protocol address of an ARP packet on `port`.
    /// Only valid unicast senders on the port become neighbors: an entry for
    /// a broadcast address or 127.0.0.1 would let directed broadcasts (or
    /// worse) be forwarded as unicast.
    fn arp_sender(&self, snap: &Snapshot, port: usize, spa: u32) -> Sender {
        if spa == 0 {
            return Sender::Probe;
        }
        let info = &self.cfg.ports[port];
        if hygiene::martian_class(spa)
            || self.addrs.not_source.contains(spa)
            || Some(spa) == info.subnet_network()
        {
            return Sender::Bad;
        }
        if info.on_link(spa)
            || snap.endpoints.get(spa) == Some(EndpointAction::Local { port: port as u16 })
        {
            Sender::Learnable
        } else {
            Sender::OffSubnet
        }
    }

    /// Does the router answer ARP for `ip` on `port`?
    #[inline]
    fn owns_on_port(&self, port: usize, ip: u32) -> bool {
        let p = &self.cfg.ports[port];
        ip == p.addr || (ip == self.cfg.router_addr && p.on_link(ip))
    }

    pub(super) fn arp<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        snap: &Snapshot,
        m: Meta,
        mut buf: B,
    ) {
        let port = m.port();
        let frame = EthernetFrame::new_unchecked(buf.data());
        let Ok(pkt) = ArpPacket::new_checked(frame.payload()) else {
            return self.drop_pkt(DropReason::ArpMalformed, buf);
        };
        let Ok(a) = ArpRepr::parse(&pkt) else {
            return self.drop_pkt(DropReason::ArpMalformed, buf);
        };
        let (op, sha, spa, tpa) = (
            a.operation,
            a.sender_hw_addr,
            a.sender_proto_addr,
            a.target_proto_addr,
        );
        if sha[0] & 1 == 1 || sha == [0; 6] {
            return self.drop_pkt(DropReason::ArpMalformed, buf);
        }
        let info = self.cfg.ports[port];
        if sha == info.mac {
            // Our own frame looped back (or a MAC clash): never learn from it.
            return self.drop_pkt(DropReason::ArpNotForUs, buf);
        }
        // Someone else claims an address we proxy for: two holders.
        if spa != 0 && snap.proxy_arp.on_port(port) && !self.held && snap.proxy_arp.answers(spa) {
            self.links.stats.duplicate_holder(port as u16, spa, sha);
        }
        let for_us = self.owns_on_port(port, tpa);
        let sender = self.arp_sender(snap, port, spa);
        if sender == Sender::Bad {
            return self.drop_pkt(DropReason::ArpBadSender, buf);
        }
        if sender == Sender::OffSubnet && for_us {
            self.links.stats.event(Event::ArpNotLearnedOffSubnet);
        }
        // Learn from ARP aimed at us (replies to our requests may come from
        // /32 endpoints outside the port's subnet); unsolicited ARP (GARP)
        // only refreshes entries we already have.
        if sender == Sender::Learnable {
            let known = snap.neighbors.get(port as u16, spa);
            let refresh = match known {
                Some(n) if n.status == NeighborStatus::Static => false,
                Some(n) => n.mac != sha || n.status == NeighborStatus::Stale,
                None => for_us,
            };
            if refresh {
                let learn = Learn {
                    port: port as u16,
                    ip: spa,
                    mac: sha,
                };
                if self.links.learn.push(learn).is_ok() {
                    self.links.stats.event(Event::ArpLearned);
                } else {
                    self.links.stats.event(Event::ArpLearnQueueFull);
                }
            }
        }
        if op == arp::OP_REQUEST {
            let proxy =
                !for_us && snap.proxy_arp.on_port(port) && snap.proxy_arp.holds(tpa) && spa != tpa;
            if proxy && !snap.proxy_arp.active {
                // Gate closed (VRRP backup, or capture not ours): stay silent.
                self.links.stats.event(Event::ProxyArpSilent);
                return self.drop_pkt(DropReason::ArpNotForUs, buf);
            }
            if proxy && self.held {
                // Right after a stall: silent until the role is re-confirmed.
                self.links.stats.event(Event::ProxyArpHeld);
                return self.drop_pkt(DropReason::ArpNotForUs, buf);
            }
            if !(for_us || proxy) {
                return self.drop_pkt(DropReason::ArpNotForUs, buf);
            }
            // The request becomes the reply, in place.
            let mac = info.mac;
            let mut frame = EthernetFrame::new_unchecked(buf.data_mut());
            frame.set_dst_addr(&sha);
            frame.set_src_addr(&mac);
            let mut reply = ArpPacket::new_unchecked(frame.payload_mut());
            reply.set_operation(arp::OP_REPLY);
            reply.set_target_hw_addr(&sha);
            reply.set_target_proto_addr(spa);
            reply.set_sender_hw_addr(&mac);
            reply.set_sender_proto_addr(tpa);
            self.links.stats.event(if proxy {
                Event::ProxyArpReplySent
            } else {
                Event::ArpReplySent
            });
            self.enqueue(io, port, buf);
        } else if for_us {
            // A reply to a request (ours, or the kernel's through the TAP).
            match info.tap {
                Some(tap) => {
                    self.punt(io, tap, buf);
                }
                None => {
                    self.links.stats.event(Event::ArpReplyConsumed);
                    drop(buf);
                }
            }
        } else {
            self.drop_pkt(DropReason::ArpNotForUs, buf)
        }
    }

    /// Sends an ARP request for `ip` on `port` unless one went out recently;
    /// uses `reuse` as the buffer when given (it is consumed either way).
    pub(super) fn resolve<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        port: usize,
        ip: u32,
        reuse: Option<B>,
    ) {
        let Some((key, slot)) = self.solicit_slot(port, ip, Event::ArpRequestSuppressed) else {
            return;
        };
        let Some(mut buf) = self.reuse_or_alloc(io, reuse) else {
            return;
        };
        let info = self.cfg.ports[port];
        let request = ArpRepr {
            operation: arp::OP_REQUEST,
            sender_hw_addr: info.mac,
            sender_proto_addr: info.addr,
            target_hw_addr: [0; 6],
            target_proto_addr: ip,
        };
        if build_arp(&mut buf, &request, &wire::BROADCAST) {
            self.arp_sent[slot] = (key, self.now_ns);
            self.links.stats.event(Event::ArpRequestSent);
            self.enqueue(io, port, buf);
        } else {
            self.links.stats.dropped(DropReason::NoMbuf);
        }
    }
}

/// Writes an Ethernet + ARP frame (padded to the 60-byte minimum) into `buf`.
pub(super) fn build_arp<B: PacketBuf>(buf: &mut B, repr: &ArpRepr, eth_dst: &[u8; 6]) -> bool {
    if !buf.set_len(wire::MIN_FRAME) {
        return false;
    }
    let d = buf.data_mut();
    d.fill(0);
    let mut frame = EthernetFrame::new_unchecked(d);
    frame.set_dst_addr(eth_dst);
    frame.set_src_addr(&repr.sender_hw_addr);
    frame.set_ethertype(wire::ETHERTYPE_ARP);
    repr.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
    true
}
