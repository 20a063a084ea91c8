//! WireGuard, the stage: each peer is owned by one core (tunnel id % cores)
//! and packets for it are handed off to that core over lock-free queues;
//! the owner encrypts, decrypts, answers handshakes and runs the timers.
//! The Noise state machine is in `crate::tunnel::wireguard`.

use super::{Meta, Worker};
use crate::counters::{DropReason, Event};
use crate::packet::{PacketBuf, PortIo};
use crate::snapshot::Snapshot;
use crate::tunnel;
use crate::tunnel::wireguard::{self as wg, WgOut, WgPeer};
use crate::wire::{self, ipv4::Packet as Ipv4Packet, udp};
use crossbeam_queue::ArrayQueue;
use std::sync::Arc;

/// A WireGuard peer owned by this core, and where it was last heard from.
pub struct OwnedWgPeer {
    pub tunnel: u32,
    pub peer: WgPeer,
    /// UDP port the peer sends from (its endpoint; roaming follows it).
    pub peer_port: u16,
}

/// Work for the core that owns a WireGuard tunnel.
pub enum WgWork<B> {
    Encap {
        tunnel: u32,
        in_port: usize,
        buf: B,
    },
    Decap {
        tunnel: u32,
        port: usize,
        offset: usize,
        buf: B,
    },
}

/// One lock-free queue per core: packets for the WireGuard peers it owns.
pub struct WgHandoff<B> {
    pub queues: Vec<ArrayQueue<WgWork<B>>>,
}

impl<B> WgHandoff<B> {
    pub fn new(cores: usize) -> Self {
        WgHandoff {
            queues: (0..cores).map(|_| ArrayQueue::new(1024)).collect(),
        }
    }
}

/// How often the owning core runs WireGuard timers (rekey, keepalive, retries).
const WG_TICK_NS: u64 = 100_000_000;

impl<B: PacketBuf> Worker<B> {
    /// Gives this core (number `core` of `cores`) the WireGuard peers it owns
    /// and the handoff queues shared by all cores.
    pub fn with_wireguard(
        mut self,
        core: usize,
        cores: usize,
        peers: Vec<OwnedWgPeer>,
        handoff: Arc<WgHandoff<B>>,
    ) -> Self {
        self.set_wireguard(core, cores, peers, handoff);
        self
    }

    pub fn set_wireguard(
        &mut self,
        core: usize,
        cores: usize,
        peers: Vec<OwnedWgPeer>,
        handoff: Arc<WgHandoff<B>>,
    ) {
        self.wg_core = core;
        self.wg_cores = cores.max(1);
        self.wg_peers = peers;
        self.wg_handoff = Some(handoff);
    }

    /// The core that owns a WireGuard tunnel.
    #[inline]
    fn wg_owner(&self, tunnel: u32) -> usize {
        tunnel as usize % self.wg_cores
    }

    fn wg_peer_index(&self, tunnel: u32) -> Option<usize> {
        self.wg_peers.iter().position(|p| p.tunnel == tunnel)
    }

    /// Hands `work` to the owning core; false (and counted) if its queue is full.
    fn wg_handoff(&self, owner: usize, work: WgWork<B>) {
        match self.wg_handoff.as_ref().and_then(|h| h.queues.get(owner)) {
            Some(q) => match q.push(work) {
                Ok(()) => self.links.stats.event(Event::WgHandedOff),
                Err(_) => self.links.stats.dropped(DropReason::Wireguard),
            },
            None => self.links.stats.dropped(DropReason::Wireguard),
        }
    }

    /// Runs queued handoffs and, every 100 ms, the WireGuard timers.
    pub(super) fn wireguard_housekeeping<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        snap: &Snapshot,
    ) {
        if self.wg_peers.is_empty() {
            return;
        }
        if let Some(h) = self.wg_handoff.clone() {
            if let Some(q) = h.queues.get(self.wg_core) {
                while let Some(work) = q.pop() {
                    match work {
                        WgWork::Encap {
                            tunnel,
                            in_port,
                            buf,
                        } => self.wg_encap(io, snap, in_port, tunnel, buf),
                        WgWork::Decap {
                            tunnel,
                            port,
                            offset,
                            buf,
                        } => self.wg_decap(io, snap, port, tunnel, offset, buf),
                    }
                }
            }
        }
        if self.now_ns.saturating_sub(self.wg_last_tick) < WG_TICK_NS {
            return;
        }
        self.wg_last_tick = self.now_ns;
        for i in 0..self.wg_peers.len() {
            let Some(mut out) = io.alloc() else {
                self.links.stats.dropped(DropReason::NoMbuf);
                return;
            };
            if !out.append(wg::MIN_OUT_LEN) {
                return self.drop_pkt(DropReason::NoMbuf, out);
            }
            let tunnel = self.wg_peers[i].tunnel;
            let tick = self.wg_peers[i].peer.tick(out.data_mut());
            self.wg_peers[i].peer.publish();
            match tick {
                WgOut::Send(n) => {
                    out.set_len(n);
                    self.wg_send(io, snap, 0, tunnel, out);
                }
                WgOut::Drop(d) => self.wg_count(d),
                WgOut::Inner(_) | WgOut::Nothing => {}
            }
        }
    }

    /// Data for a session we do not have: the peer kept its session while
    /// this dataplane restarted. A handshake now gives it a new one at once
    /// instead of after its own retry timers (up to 15 s of black hole).
    /// boringtun sends at most one initiation per REKEY_TIMEOUT (5 s) per
    /// peer, so unauthenticated data cannot make us flood.
    fn wg_rehandshake<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        snap: &Snapshot,
        port: usize,
        tunnel: u32,
        i: usize,
    ) {
        let Some(mut out) = io.alloc() else {
            self.links.stats.dropped(DropReason::NoMbuf);
            return;
        };
        if !out.append(wg::MIN_OUT_LEN) {
            return self.drop_pkt(DropReason::NoMbuf, out);
        }
        match self.wg_peers[i].peer.initiate(false, out.data_mut()) {
            WgOut::Send(n) => {
                out.set_len(n);
                self.links.stats.event(Event::WgControlSent);
                self.wg_send(io, snap, port, tunnel, out);
            }
            WgOut::Drop(d) => self.wg_count(d),
            WgOut::Inner(_) | WgOut::Nothing => {}
        }
    }

    fn wg_count(&self, d: wg::WgDrop) {
        let i = wg::WgDrop::ALL.iter().position(|x| *x == d).unwrap_or(0);
        self.links.stats.wg_dropped(i);
    }

    /// Encrypts an inner packet (Ethernet header in front) for `tunnel` and sends it.
    pub(super) fn wg_encap<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        snap: &Snapshot,
        in_port: usize,
        tunnel: u32,
        buf: B,
    ) {
        let owner = self.wg_owner(tunnel);
        if owner != self.wg_core {
            return self.wg_handoff(
                owner,
                WgWork::Encap {
                    tunnel,
                    in_port,
                    buf,
                },
            );
        }
        let Some(i) = self.wg_peer_index(tunnel) else {
            return self.drop_pkt(DropReason::NoTunnel, buf);
        };
        let inner = &buf.data()[wire::ETH_LEN..];
        let Some(mut out) = io.alloc() else {
            return self.drop_pkt(DropReason::NoMbuf, buf);
        };
        if !out.append(wg::encap_out_len(inner.len())) {
            return self.drop_pkt(DropReason::NoMbuf, buf);
        }
        match self.wg_peers[i].peer.encapsulate(inner, out.data_mut()) {
            WgOut::Send(n) => {
                out.set_len(n);
                self.links.stats.event(Event::Encapsulated);
                self.wg_send(io, snap, in_port, tunnel, out);
            }
            WgOut::Drop(d) => self.wg_count(d),
            WgOut::Inner(_) | WgOut::Nothing => {}
        }
        drop(buf);
    }

    /// Sends a WireGuard message (UDP payload in `out`) to the tunnel's peer.
    fn wg_send<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        snap: &Snapshot,
        in_port: usize,
        tunnel: u32,
        mut out: B,
    ) {
        let Some(&t) = snap.tunnels.get(tunnel) else {
            return self.drop_pkt(DropReason::NoTunnel, out);
        };
        let dport = self
            .wg_peer_index(tunnel)
            .map(|i| self.wg_peers[i].peer_port)
            .unwrap_or(t.port);
        self.ip_ident = self.ip_ident.wrapping_add(1);
        if !tunnel::encap_udp(&mut out, t.local, t.remote, t.port, dport, self.ip_ident) {
            return self.drop_pkt(DropReason::NoMbuf, out);
        }
        match self.underlay(snap, t.remote, t.remote ^ u32::from(t.port)) {
            Ok((port, nh)) => {
                self.capture_tunnel_eth(tunnel, true, false, out.data());
                let m = Meta::originated(in_port, wire::IPV4_MIN);
                self.output(io, snap, m, out, port, nh)
            }
            Err(_) => self.drop_pkt(DropReason::TunnelNoUnderlay, out),
        }
    }

    /// A WireGuard datagram from a configured peer (UDP payload at `offset`
    /// after the Ethernet header): decrypt, forward the inner packet; answer
    /// handshakes; flush what waited for the handshake.
    pub(super) fn wg_decap<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        snap: &Snapshot,
        port: usize,
        tunnel: u32,
        offset: usize,
        buf: B,
    ) {
        let owner = self.wg_owner(tunnel);
        if owner != self.wg_core {
            return self.wg_handoff(
                owner,
                WgWork::Decap {
                    tunnel,
                    port,
                    offset,
                    buf,
                },
            );
        }
        let Some(i) = self.wg_peer_index(tunnel) else {
            return self.drop_pkt(DropReason::NoTunnel, buf);
        };
        let d = buf.data();
        let outer = Ipv4Packet::new_unchecked(&d[wire::ETH_LEN..]);
        let src = std::net::Ipv4Addr::from(outer.src_addr());
        let sport = udp::Packet::new_unchecked(outer.payload()).src_port();
        let dgram = &d[wire::ETH_LEN + offset..];
        let Some(mut out) = io.alloc() else {
            return self.drop_pkt(DropReason::NoMbuf, buf);
        };
        // Room for the decrypted packet and, for an inner packet, an Ethernet header.
        if !out.append(wg::decap_out_len(dgram.len()) + wire::ETH_LEN) || !out.adj(wire::ETH_LEN) {
            return self.drop_pkt(DropReason::NoMbuf, buf);
        }
        let result = self.wg_peers[i]
            .peer
            .decapsulate(src, dgram, out.data_mut());
        drop(buf);
        match result {
            WgOut::Inner(n) => {
                self.wg_peers[i].peer_port = sport;
                out.set_len(n);
                if !out.prepend(wire::ETH_LEN) {
                    return self.drop_pkt(DropReason::NoMbuf, out);
                }
                let mac = self.cfg.ports[port].mac;
                wire::write_eth(out.data_mut(), &mac, &[0; 6], wire::ETHERTYPE_IPV4);
                self.links.stats.event(Event::Decapsulated);
                self.capture_tunnel_eth(tunnel, false, true, out.data());
                let inner = Meta {
                    depth: 1,
                    ..Meta::received(port)
                };
                self.ipv4(io, snap, inner, out);
            }
            WgOut::Send(n) => {
                self.wg_peers[i].peer_port = sport;
                out.set_len(n);
                self.links.stats.event(Event::WgControlSent);
                self.wg_send(io, snap, port, tunnel, out);
            }
            WgOut::Drop(d) => {
                self.wg_count(d);
                if d == wg::WgDrop::NoSession {
                    drop(out);
                    self.wg_rehandshake(io, snap, port, tunnel, i);
                }
                return;
            }
            WgOut::Nothing => {}
        }
        // Packets boringtun queued while the handshake ran (checked before
        // taking a buffer: after a data message there is normally nothing).
        for _ in 0..256 {
            if !self.wg_peers[i].peer.has_flushable() {
                return;
            }
            let Some(mut q) = io.alloc() else { return };
            let mtu = snap
                .tunnels
                .get(tunnel)
                .map(|t| usize::from(t.mtu))
                .unwrap_or(1500);
            if !q.append(wg::encap_out_len(mtu)) {
                return self.drop_pkt(DropReason::NoMbuf, q);
            }
            match self.wg_peers[i].peer.flush_queued(q.data_mut()) {
                WgOut::Send(n) => {
                    q.set_len(n);
                    self.links.stats.event(Event::Encapsulated);
                    self.wg_send(io, snap, port, tunnel, q);
                }
                WgOut::Drop(d) => {
                    self.wg_count(d);
                    return;
                }
                WgOut::Inner(_) | WgOut::Nothing => return,
            }
        }
    }
}
