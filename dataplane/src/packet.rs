//! The packet-buffer and port-I/O abstractions the pipeline is written
//! against. DPDK mbufs implement `PacketBuf` in `dpdk_io`; `MemBuf` and
//! `MemPorts` here are the pure-Rust backend for unit tests and benchmarks.

use arrayvec::ArrayVec;
use std::collections::VecDeque;

/// Packets per rx/tx burst.
pub const BURST: usize = 32;
/// Headroom reserved in front of received data (room for encapsulation).
pub const HEADROOM: usize = 128;
/// Data room of one in-memory buffer: a 9600-byte jumbo frame fits.
pub const MEM_DATA_ROOM: usize = 9728;

/// A hint to the CPU to start loading `r`'s cache line (table slots, headers).
#[inline(always)]
pub fn prefetch_read<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of the x86_64 baseline, and a prefetch is only a
    // hint: it never faults and has no effect on program state.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((r as *const T).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}

/// A single-segment packet buffer with headroom (an mbuf, or `MemBuf`).
pub trait PacketBuf: Sized {
    fn data(&self) -> &[u8];
    fn data_mut(&mut self) -> &mut [u8];
    #[inline]
    fn len(&self) -> usize {
        self.data().len()
    }
    #[inline]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Grows the packet at the front by `n` bytes; false if headroom is short.
    fn prepend(&mut self, n: usize) -> bool;
    /// Removes `n` bytes from the front.
    fn adj(&mut self, n: usize) -> bool;
    /// Grows the packet at the end by `n` bytes; false if tailroom is short.
    fn append(&mut self, n: usize) -> bool;
    /// Removes `n` bytes from the end.
    fn trim(&mut self, n: usize) -> bool;
    /// False for chained (multi-segment) buffers, which the pipeline drops.
    fn is_contiguous(&self) -> bool;
    /// The NIC's RSS hash, when it computed one.
    fn rss_hash(&self) -> Option<u32>;
    /// Starts loading the first cache line of the packet data (a hint).
    #[inline(always)]
    fn prefetch_data(&self) {}
    /// Sets the length to exactly `len` bytes (trim or append).
    #[inline]
    fn set_len(&mut self, len: usize) -> bool {
        let cur = self.len();
        if len <= cur {
            self.trim(cur - len)
        } else {
            self.append(len - cur)
        }
    }
}

/// What a polling core does with ports: burst rx/tx, buffers, time.
pub trait PortIo {
    type Buf: PacketBuf;
    /// Monotonic nanoseconds (read once per burst).
    fn now_ns(&self) -> u64;
    /// Appends up to the spare capacity of `out` from `port`'s rx queue.
    fn rx_burst(&mut self, port: usize, out: &mut ArrayVec<Self::Buf, BURST>);
    /// Sends a prefix of `bufs`, removing what was sent; returns that count.
    fn tx_burst(&mut self, port: usize, bufs: &mut ArrayVec<Self::Buf, BURST>) -> usize;
    /// A fresh empty buffer with the standard headroom, if the pool has one.
    fn alloc(&mut self) -> Option<Self::Buf>;
}

/// In-memory packet buffer: fixed storage, headroom, no chaining. Small
/// (16 bytes) so bursts move it as cheaply as an mbuf pointer: benchmarks
/// on these ports measure the pipeline, not buffer shuffling.
pub struct MemBuf {
    store: Box<[u8; HEADROOM + MEM_DATA_ROOM]>,
    start: u16,
    end: u16,
    /// Pretend to be a chained (multi-segment) buffer, for tests.
    pub chained: bool,
}

// The offsets fit u16.
const _: () = assert!(HEADROOM + MEM_DATA_ROOM <= u16::MAX as usize);

impl MemBuf {
    pub fn new() -> Self {
        MemBuf {
            store: Box::new([0u8; HEADROOM + MEM_DATA_ROOM]),
            start: HEADROOM as u16,
            end: HEADROOM as u16,
            chained: false,
        }
    }

    /// A buffer holding a copy of `frame` (panics only if the frame exceeds the data room,
    /// which is a test-construction error).
    pub fn from_frame(frame: &[u8]) -> Self {
        let mut b = Self::new();
        b.load(frame);
        b
    }

    /// Resets the buffer to hold exactly `frame` at the standard headroom.
    pub fn load(&mut self, frame: &[u8]) {
        assert!(
            frame.len() <= MEM_DATA_ROOM,
            "frame of {} bytes exceeds the data room",
            frame.len()
        );
        self.start = HEADROOM as u16;
        self.end = (HEADROOM + frame.len()) as u16;
        self.store[HEADROOM..HEADROOM + frame.len()].copy_from_slice(frame);
    }
}

impl Default for MemBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl MemBuf {
    #[inline(always)]
    fn bounds(&self) -> (usize, usize) {
        (usize::from(self.start), usize::from(self.end))
    }
}

impl PacketBuf for MemBuf {
    #[inline]
    fn data(&self) -> &[u8] {
        let (s, e) = self.bounds();
        &self.store[s..e]
    }
    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        let (s, e) = self.bounds();
        &mut self.store[s..e]
    }
    #[inline]
    fn prepend(&mut self, n: usize) -> bool {
        let (s, _) = self.bounds();
        if n > s {
            return false;
        }
        self.start = (s - n) as u16;
        true
    }
    #[inline]
    fn adj(&mut self, n: usize) -> bool {
        let (s, e) = self.bounds();
        if n > e - s {
            return false;
        }
        self.start = (s + n) as u16;
        true
    }
    #[inline]
    fn append(&mut self, n: usize) -> bool {
        let (_, e) = self.bounds();
        if n > self.store.len() - e {
            return false;
        }
        self.end = (e + n) as u16;
        true
    }
    #[inline]
    fn trim(&mut self, n: usize) -> bool {
        let (s, e) = self.bounds();
        if n > e - s {
            return false;
        }
        self.end = (e - n) as u16;
        true
    }
    #[inline]
    fn is_contiguous(&self) -> bool {
        !self.chained
    }
    #[inline]
    fn rss_hash(&self) -> Option<u32> {
        None
    }
}

/// In-memory ports: per-port rx and tx queues of `MemBuf`s, plus a buffer
/// pool. Tests push frames into `rx` and read what the pipeline sent from `tx`;
/// benchmarks recycle tx buffers back to rx so nothing is allocated while measuring.
pub struct MemPorts {
    pub rx: Vec<VecDeque<MemBuf>>,
    pub tx: Vec<VecDeque<MemBuf>>,
    pub pool: Vec<MemBuf>,
    /// How many more packets each port's tx accepts (simulates a full ring).
    pub tx_room: Vec<usize>,
    pub now_ns: u64,
}

impl MemPorts {
    pub fn new(ports: usize, pool: usize) -> Self {
        MemPorts {
            rx: (0..ports).map(|_| VecDeque::new()).collect(),
            tx: (0..ports).map(|_| VecDeque::new()).collect(),
            pool: (0..pool).map(|_| MemBuf::new()).collect(),
            tx_room: vec![usize::MAX; ports],
            now_ns: 1_000_000_000,
        }
    }

    pub fn inject(&mut self, port: usize, frame: &[u8]) {
        self.rx[port].push_back(MemBuf::from_frame(frame));
    }

    /// Frames sent on `port` so far, oldest first (drains them).
    pub fn sent(&mut self, port: usize) -> Vec<Vec<u8>> {
        self.tx[port].drain(..).map(|b| b.data().to_vec()).collect()
    }
}

impl PortIo for MemPorts {
    type Buf = MemBuf;

    fn now_ns(&self) -> u64 {
        self.now_ns
    }

    #[inline]
    fn rx_burst(&mut self, port: usize, out: &mut ArrayVec<MemBuf, BURST>) {
        let q = &mut self.rx[port];
        while !out.is_full() {
            match q.pop_front() {
                Some(b) => out.push(b),
                None => break,
            }
        }
    }

    #[inline]
    fn tx_burst(&mut self, port: usize, bufs: &mut ArrayVec<MemBuf, BURST>) -> usize {
        let n = bufs.len().min(self.tx_room[port]);
        if self.tx_room[port] != usize::MAX {
            self.tx_room[port] -= n;
        }
        for b in bufs.drain(..n) {
            self.tx[port].push_back(b);
        }
        n
    }

    #[inline]
    fn alloc(&mut self) -> Option<MemBuf> {
        let mut b = self.pool.pop()?;
        b.start = HEADROOM as u16;
        b.end = HEADROOM as u16;
        b.chained = false;
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membuf_bounds() {
        let mut b = MemBuf::from_frame(&[1, 2, 3, 4]);
        assert!(b.prepend(HEADROOM));
        assert!(!b.prepend(1));
        assert!(b.adj(HEADROOM));
        assert_eq!(b.data(), &[1, 2, 3, 4]);
        assert!(!b.adj(5));
        assert!(b.trim(2));
        assert_eq!(b.data(), &[1, 2]);
        assert!(!b.trim(3));
        assert!(b.set_len(4));
        assert!(!b.append(MEM_DATA_ROOM));
    }
}
