//! The routing decision: /32 exact match first (local delivery, a tunnel,
//! or a drop), then the underlay LPM with ECMP by flow hash (the NIC's RSS
//! hash when it has one).

use super::Worker;
use crate::counters::DropReason;
use crate::packet::PacketBuf;
use crate::snapshot::{EndpointAction, Snapshot};
use crate::wire::{self, flow_hash};

/// Where a routed packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    /// Out of a port towards a next hop.
    Port(usize, u32),
    /// Into a tunnel.
    Tunnel(u32),
}

impl<B: PacketBuf> Worker<B> {
    /// /32 exact match first, then the underlay LPM.
    #[inline]
    pub(super) fn route(
        &self,
        snap: &Snapshot,
        dst: u32,
        buf: &B,
        ihl: usize,
    ) -> Result<Target, DropReason> {
        self.route_with(snap, dst, snap.endpoints.get(dst), buf, ihl)
    }

    /// As `route`, with the /32 exact match `exact` already looked up.
    /// Always inlined: on the fast path (`transit`) the call and the
    /// `Result` passed through memory cost more than the body.
    #[inline(always)]
    pub(super) fn route_with(
        &self,
        snap: &Snapshot,
        dst: u32,
        exact: Option<EndpointAction>,
        buf: &B,
        ihl: usize,
    ) -> Result<Target, DropReason> {
        match exact {
            Some(EndpointAction::Local { port }) => Ok(Target::Port(port as usize, dst)),
            Some(EndpointAction::Tunnel { tunnel }) => Ok(Target::Tunnel(tunnel)),
            Some(EndpointAction::Drop) => Err(DropReason::EndpointDrop),
            None => {
                let hash = match buf.rss_hash() {
                    Some(h) => h,
                    None => flow_hash(&buf.data()[wire::ETH_LEN..], ihl),
                };
                let (out, nh) = self.underlay(snap, dst, hash)?;
                Ok(Target::Port(out, nh))
            }
        }
    }

    /// The underlay LPM (ECMP by flow hash): (egress port, next-hop IP).
    #[inline]
    pub(super) fn underlay(
        &self,
        snap: &Snapshot,
        dst: u32,
        hash: u32,
    ) -> Result<(usize, u32), DropReason> {
        let r = snap.routes.lookup(dst).ok_or(DropReason::NoRoute)?;
        let hop = r.group.select(hash).ok_or(DropReason::NoRoute)?;
        let nh = if hop.gateway == 0 { dst } else { hop.gateway };
        Ok((hop.port as usize, nh))
    }
}
