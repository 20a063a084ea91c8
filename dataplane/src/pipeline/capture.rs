//! Capture hooks, the stage: where the polling core offers packets to a
//! running capture (`crate::capture`). While none runs, a hook costs a
//! test of a field the poll set (`CoreTap::refresh`, one relaxed load per
//! poll); the burst hooks (port rx, port tx) test it once per burst.

use super::Worker;
use crate::capture::Point;
use crate::packet::PacketBuf;
use crate::wire;
use arrayvec::ArrayVec;

impl<B: PacketBuf> Worker<B> {
    /// A received burst on NIC port `port`.
    #[inline(always)]
    pub(super) fn capture_rx(&self, port: usize, rx: &ArrayVec<B, { crate::packet::BURST }>) {
        if let Some(s) = self.capture.active() {
            for b in rx.iter() {
                s.offer(
                    self.capture.core(),
                    Point::PortRx(port as u16),
                    self.now_ns,
                    b.data(),
                    true,
                );
            }
        }
    }

    /// A burst about to be handed to NIC port `port`'s driver.
    #[inline(always)]
    pub(super) fn capture_tx(&self, io_port: usize) {
        if let Some(s) = self.capture.active() {
            let Some(super::IoRole::Phys(p)) = self.cfg.roles.get(io_port).copied() else {
                return;
            };
            for b in self.tx[io_port].iter() {
                s.offer(
                    self.capture.core(),
                    Point::PortTx(p),
                    self.now_ns,
                    b.data(),
                    false,
                );
            }
        }
    }

    /// A tunnel's packet, Ethernet header in front (`data[ETH_LEN..]` is the
    /// IPv4 packet): `outer` or inner, inbound (decapsulation) or outbound.
    #[inline(always)]
    pub(super) fn capture_tunnel_eth(&self, tunnel: u32, outer: bool, inbound: bool, data: &[u8]) {
        if let Some(ip) = data.get(wire::ETH_LEN..) {
            self.capture_tunnel(tunnel, outer, inbound, ip)
        }
    }

    /// A tunnel's IPv4 packet (no link-layer header).
    #[inline(always)]
    pub(super) fn capture_tunnel(&self, tunnel: u32, outer: bool, inbound: bool, ip: &[u8]) {
        if let Some(s) = self.capture.active() {
            let point = if outer {
                Point::TunnelOuter(tunnel)
            } else {
                Point::TunnelInner(tunnel)
            };
            s.offer(self.capture.core(), point, self.now_ns, ip, inbound);
        }
    }
}
