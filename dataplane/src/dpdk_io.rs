//! The DPDK backend of the pipeline: `Mbuf` as a `PacketBuf`, and one polling
//! core's view of the ports (its own rx/tx queue on every port) as `PortIo`.

use crate::packet::{PacketBuf, PortIo, BURST};
use arrayvec::ArrayVec;
use cer_dpdk::{Mbuf, Mempool, Port};
use std::sync::Arc;

impl PacketBuf for Mbuf {
    #[inline(always)]
    fn data(&self) -> &[u8] {
        Mbuf::data(self)
    }
    #[inline(always)]
    fn data_mut(&mut self) -> &mut [u8] {
        Mbuf::data_mut(self)
    }
    #[inline(always)]
    fn len(&self) -> usize {
        Mbuf::len(self)
    }
    #[inline(always)]
    fn prepend(&mut self, n: usize) -> bool {
        Mbuf::prepend(self, n)
    }
    #[inline(always)]
    fn adj(&mut self, n: usize) -> bool {
        Mbuf::adj(self, n)
    }
    #[inline(always)]
    fn append(&mut self, n: usize) -> bool {
        Mbuf::append(self, n)
    }
    #[inline(always)]
    fn trim(&mut self, n: usize) -> bool {
        Mbuf::trim(self, n)
    }
    #[inline(always)]
    fn is_contiguous(&self) -> bool {
        Mbuf::is_contiguous(self)
    }
    #[inline(always)]
    fn rss_hash(&self) -> Option<u32> {
        Mbuf::rss_hash(self)
    }
    #[inline(always)]
    fn prefetch_data(&self) {
        Mbuf::prefetch_data(self)
    }
}

/// One polling core's queues: queue `queue` of every I/O port.
pub struct DpdkIo {
    ports: Vec<Port>,
    queue: u16,
    pool: Arc<Mempool>,
    tsc_hz: u64,
}

impl DpdkIo {
    pub fn new(ports: Vec<Port>, queue: u16, pool: Arc<Mempool>) -> Self {
        DpdkIo {
            ports,
            queue,
            pool,
            tsc_hz: cer_dpdk::tsc_hz().max(1),
        }
    }
}

/// The polling cores' clock: the TSC in nanoseconds (`tsc_hz` from
/// `cer_dpdk::tsc_hz`). The manager's stall-guard beat uses it too.
#[inline]
pub fn tsc_ns(tsc_hz: u64) -> u64 {
    (u128::from(cer_dpdk::tsc()) * 1_000_000_000 / u128::from(tsc_hz.max(1))) as u64
}

impl PortIo for DpdkIo {
    type Buf = Mbuf;

    #[inline]
    fn now_ns(&self) -> u64 {
        tsc_ns(self.tsc_hz)
    }

    #[inline]
    fn rx_burst(&mut self, port: usize, out: &mut ArrayVec<Mbuf, BURST>) {
        self.ports[port].rx_burst(self.queue, out);
    }

    #[inline]
    fn tx_burst(&mut self, port: usize, bufs: &mut ArrayVec<Mbuf, BURST>) -> usize {
        self.ports[port].tx_burst(self.queue, bufs)
    }

    #[inline]
    fn alloc(&mut self) -> Option<Mbuf> {
        self.pool.alloc()
    }
}
