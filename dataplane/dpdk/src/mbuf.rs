//! An owned DPDK packet buffer ([`Mbuf`]): its data as a byte slice,
//! headroom/tailroom edits (prepend, adj, append, trim) and receive
//! metadata. Hot accessors read the `rte_mbuf` fields directly (the layout
//! is checked against the C compiler's in `dpdk-sys`); edits go through
//! DPDK's own inline helpers via the C shim.

use std::ptr::NonNull;

use arrayvec::ArrayVec;
use dpdk_sys as sys;

use crate::mempool::Mempool;

/// One packet buffer, owned: dropping it returns it to its pool
/// (`rte_pktmbuf_free`, which frees the whole segment chain).
///
/// The accessors work on the first segment, which holds the whole packet
/// when [`Mbuf::is_contiguous`] (always the case for mbufs this crate
/// allocates and for received packets unless the port was set up for
/// scattered receive).
#[repr(transparent)]
pub struct Mbuf(NonNull<sys::rte_mbuf>);

// SAFETY: an Mbuf is the sole owner of its buffer (see `from_raw`); DPDK
// mbufs may be freed from any thread (the pool is MP/MC safe).
unsafe impl Send for Mbuf {}

impl Mbuf {
    #[inline]
    fn raw(&self) -> &sys::rte_mbuf {
        // SAFETY: self.0 points to a live mbuf owned by self.
        unsafe { self.0.as_ref() }
    }

    /// The packet bytes of the first segment.
    #[inline]
    pub fn data(&self) -> &[u8] {
        let m = self.raw();
        // SAFETY: buf_addr + data_off .. + data_len lies inside the mbuf's
        // buffer (DPDK invariant); the bytes are owned by self and shared
        // only through &self.
        unsafe {
            std::slice::from_raw_parts(
                m.buf_addr.cast::<u8>().add(usize::from(m.data_off)),
                usize::from(m.data_len),
            )
        }
    }

    /// The packet bytes of the first segment, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let m = self.raw();
        let (addr, off, len) = (m.buf_addr.cast::<u8>(), m.data_off, m.data_len);
        // SAFETY: as in `data`; &mut self gives exclusive access to a buffer
        // no one else references (Mbuf is the sole owner).
        unsafe { std::slice::from_raw_parts_mut(addr.add(usize::from(off)), usize::from(len)) }
    }

    /// Length of [`Mbuf::data`] (the first segment's `data_len`).
    #[inline]
    pub fn len(&self) -> usize {
        usize::from(self.raw().data_len)
    }

    /// True when the first segment holds no bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.raw().data_len == 0
    }

    /// Length of the whole packet over all segments (`pkt_len`).
    #[inline]
    pub fn pkt_len(&self) -> usize {
        self.raw().pkt_len as usize
    }

    /// Number of segments in the chain.
    #[inline]
    pub fn nb_segs(&self) -> u16 {
        self.raw().nb_segs
    }

    /// True when the whole packet is in one segment (`nb_segs == 1`), so
    /// [`Mbuf::data`] is the whole packet.
    #[inline]
    pub fn is_contiguous(&self) -> bool {
        self.raw().nb_segs == 1
    }

    /// Free bytes in front of the data (what [`Mbuf::prepend`] can use).
    #[inline]
    pub fn headroom(&self) -> usize {
        usize::from(self.raw().data_off)
    }

    /// Free bytes after the data of the first segment.
    #[inline]
    pub fn tailroom(&self) -> usize {
        let m = self.raw();
        usize::from(m.buf_len)
            .saturating_sub(usize::from(m.data_off))
            .saturating_sub(usize::from(m.data_len))
    }

    /// Grows the data by `n` bytes at the front (`rte_pktmbuf_prepend`),
    /// e.g. to push an outer header; the new bytes are uninitialized
    /// garbage, overwrite them through [`Mbuf::data_mut`]. False (and no
    /// change) if the headroom is smaller than `n`.
    #[inline]
    pub fn prepend(&mut self, n: usize) -> bool {
        let Ok(n) = u16::try_from(n) else {
            return false;
        };
        // SAFETY: self owns a live mbuf; DPDK checks the headroom.
        !unsafe { sys::cer_pktmbuf_prepend(self.0.as_ptr(), n) }.is_null()
    }

    /// Removes `n` bytes from the front (`rte_pktmbuf_adj`), e.g. to strip
    /// an outer header. False (and no change) if `n` exceeds the first
    /// segment's length.
    #[inline]
    pub fn adj(&mut self, n: usize) -> bool {
        let Ok(n) = u16::try_from(n) else {
            return false;
        };
        // SAFETY: self owns a live mbuf; DPDK checks the length.
        !unsafe { sys::cer_pktmbuf_adj(self.0.as_ptr(), n) }.is_null()
    }

    /// Grows the data by `n` bytes at the end of the last segment
    /// (`rte_pktmbuf_append`); the new bytes are uninitialized garbage.
    /// False (and no change) if the tailroom is smaller than `n`.
    #[inline]
    pub fn append(&mut self, n: usize) -> bool {
        let Ok(n) = u16::try_from(n) else {
            return false;
        };
        // SAFETY: self owns a live mbuf; DPDK checks the tailroom.
        !unsafe { sys::cer_pktmbuf_append(self.0.as_ptr(), n) }.is_null()
    }

    /// Removes `n` bytes from the end of the last segment
    /// (`rte_pktmbuf_trim`). False (and no change) if that segment is
    /// shorter than `n`.
    #[inline]
    pub fn trim(&mut self, n: usize) -> bool {
        let Ok(n) = u16::try_from(n) else {
            return false;
        };
        // SAFETY: self owns a live mbuf; DPDK checks the length.
        unsafe { sys::cer_pktmbuf_trim(self.0.as_ptr(), n) == 0 }
    }

    /// Appends `bytes` at the end of a contiguous mbuf; false (and no
    /// change) if the tailroom is too small.
    #[inline]
    pub fn extend_from_slice(&mut self, bytes: &[u8]) -> bool {
        if !self.is_contiguous() {
            return false;
        }
        let old = self.len();
        if !self.append(bytes.len()) {
            return false;
        }
        self.data_mut()[old..].copy_from_slice(bytes);
        true
    }

    /// Input port the packet was received on.
    #[inline]
    pub fn port(&self) -> u16 {
        self.raw().port
    }

    /// Offload flags (`RTE_MBUF_F_*`).
    #[inline]
    pub fn ol_flags(&self) -> u64 {
        self.raw().ol_flags
    }

    /// The NIC's RSS hash of the packet, when the device computed one
    /// (`RTE_MBUF_F_RX_RSS_HASH`).
    #[inline]
    pub fn rss_hash(&self) -> Option<u32> {
        let m = self.raw();
        if m.ol_flags & sys::CER_MBUF_F_RX_RSS_HASH != 0 {
            // SAFETY: with RX_RSS_HASH set the hash union holds `rss`; any
            // u32 bit pattern is valid anyway.
            Some(unsafe { m.__bindgen_anon_2.hash.rss })
        } else {
            None
        }
    }

    /// Prefetches the first cache line of the packet data into L1
    /// (`rte_prefetch0`), to hide the miss while other packets are worked on.
    #[inline]
    pub fn prefetch_data(&self) {
        let m = self.raw();
        crate::prefetch0(
            m.buf_addr
                .cast::<u8>()
                .wrapping_add(usize::from(m.data_off)),
        );
    }

    /// A deep copy of the whole packet (all segments) into one new mbuf of
    /// `pool` (`rte_pktmbuf_copy`), with the same metadata; `None` if the
    /// pool is exhausted.
    pub fn deep_copy(&self, pool: &Mempool) -> Option<Mbuf> {
        // SAFETY: both pointers are live; rte_pktmbuf_copy only reads self.
        let m = unsafe { sys::cer_pktmbuf_copy(self.0.as_ptr(), pool.as_ptr()) };
        // SAFETY: a non-null result is a fresh mbuf owned by nobody else.
        NonNull::new(m).map(|m| unsafe { Mbuf::from_raw(m.as_ptr()) })
    }

    /// The raw `rte_mbuf`, still owned by `self`.
    #[inline]
    pub fn as_ptr(&self) -> *mut sys::rte_mbuf {
        self.0.as_ptr()
    }

    /// Gives up ownership: the caller must pass the pointer to DPDK (which
    /// then frees it) or back to [`Mbuf::from_raw`].
    #[inline]
    pub fn into_raw(self) -> *mut sys::rte_mbuf {
        let p = self.0.as_ptr();
        std::mem::forget(self);
        p
    }

    /// Takes ownership of a raw mbuf.
    ///
    /// # Safety
    /// `p` must be a non-null pointer to a live packet mbuf (first segment)
    /// that nothing else will use or free afterwards, whose data is not
    /// shared with another mbuf (reference count 1, not an indirect clone),
    /// e.g. one returned by a DPDK rx burst or allocation.
    #[inline]
    pub unsafe fn from_raw(p: *mut sys::rte_mbuf) -> Mbuf {
        Mbuf(NonNull::new(p).expect("Mbuf::from_raw: null rte_mbuf pointer"))
    }
}

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: self owns the mbuf and is never used again.
        unsafe { sys::cer_pktmbuf_free(self.0.as_ptr()) }
    }
}

impl std::fmt::Debug for Mbuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mbuf")
            .field("len", &self.len())
            .field("pkt_len", &self.pkt_len())
            .field("nb_segs", &self.nb_segs())
            .field("port", &self.port())
            .field("headroom", &self.headroom())
            .field("tailroom", &self.tailroom())
            .finish()
    }
}

/// Frees every mbuf in `bufs` with one DPDK call
/// (`rte_pktmbuf_free_bulk`) and leaves `bufs` empty.
#[inline]
pub fn free_bulk<const N: usize>(bufs: &mut ArrayVec<Mbuf, N>) {
    let n = bufs.len();
    if n == 0 {
        return;
    }
    // SAFETY: the first n slots hold owned mbufs (Mbuf is a transparent
    // *mut rte_mbuf); the length is set to 0 first so none of them is
    // dropped again, then DPDK frees them all.
    unsafe {
        bufs.set_len(0);
        sys::cer_pktmbuf_free_bulk(bufs.as_mut_ptr().cast::<*mut sys::rte_mbuf>(), n as u32);
    }
}
