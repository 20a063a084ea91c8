//! Packet-buffer pools ([`Mempool`], `rte_pktmbuf_pool_create`): creation,
//! allocation of [`Mbuf`]s, occupancy counters, and a release that never
//! frees a pool something still points into.

use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use arrayvec::ArrayVec;
use dpdk_sys as sys;

use crate::eal::require_eal;
use crate::error::DpdkError;
use crate::mbuf::Mbuf;
use crate::port;

/// Default data room of a packet buffer: 2048 bytes of packet plus the
/// `RTE_PKTMBUF_HEADROOM` (128) in front (`RTE_MBUF_DEFAULT_BUF_SIZE`).
pub const DEFAULT_DATA_ROOM: u16 = 2048 + sys::CER_PKTMBUF_HEADROOM;

/// Headroom reserved in front of the packet data of a fresh mbuf.
pub const PKTMBUF_HEADROOM: u16 = sys::CER_PKTMBUF_HEADROOM;

/// `SOCKET_ID_ANY`: let DPDK pick the NUMA socket.
pub const SOCKET_ANY: i32 = sys::SOCKET_ID_ANY;

/// Mempools created and not yet freed (including released ones that could
/// not be freed yet).
static LIVE_POOLS: AtomicUsize = AtomicUsize::new(0);

/// Pools whose `Mempool` was dropped while mbufs were still out or a port
/// still used them; freed by [`reap_released_pools`] at EAL teardown.
static RELEASED_POOLS: Mutex<Vec<PoolPtr>> = Mutex::new(Vec::new());

struct PoolPtr(NonNull<sys::rte_mempool>);
// SAFETY: a plain address of a DPDK mempool; rte_mempool_* are thread-safe.
unsafe impl Send for PoolPtr {}

/// A pool of packet buffers.
///
/// `Send + Sync`: allocation and release go through DPDK's multi-producer /
/// multi-consumer ring, with a per-lcore cache used only by the EAL thread
/// that owns that lcore.
///
/// Dropping it frees the pool if no mbuf of it is in use and no port is
/// configured with it; otherwise the pool stays allocated and is freed at
/// [`crate::Eal`] teardown once that is safe.
pub struct Mempool {
    ptr: NonNull<sys::rte_mempool>,
    name: String,
    size: u32,
}

// SAFETY: see the type documentation; the pointer is only used through
// thread-safe DPDK calls.
unsafe impl Send for Mempool {}
// SAFETY: as above; &Mempool exposes only thread-safe operations.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// Creates a pool of `n` packet buffers (`rte_pktmbuf_pool_create`).
    ///
    /// - `name`: unique among the process's pools, at most 25 bytes.
    /// - `cache`: per-lcore cache size (0 for none, at most 512 and at most
    ///   `n / 1.5`); DPDK is most efficient when `n` is a multiple of 2^k - 1.
    /// - `data_room`: buffer size *including* the headroom, e.g.
    ///   [`DEFAULT_DATA_ROOM`].
    /// - `socket`: NUMA socket, or [`SOCKET_ANY`].
    pub fn new_pktmbuf(
        name: &str,
        n: u32,
        cache: u32,
        data_room: u16,
        socket: i32,
    ) -> Result<Mempool, DpdkError> {
        const CALL: &str = "rte_pktmbuf_pool_create";
        require_eal(CALL)?;
        let cname = CString::new(name).map_err(|_| DpdkError::InvalidArgument {
            call: CALL,
            reason: format!("pool name {name:?} contains a NUL byte"),
        })?;
        if data_room <= PKTMBUF_HEADROOM {
            return Err(DpdkError::InvalidArgument {
                call: CALL,
                reason: format!(
                    "data_room {data_room} leaves no room for packet data after the {PKTMBUF_HEADROOM}-byte headroom"
                ),
            });
        }
        // SAFETY: cname is a valid C string for the duration of the call; the
        // EAL is running.
        let p =
            unsafe { sys::rte_pktmbuf_pool_create(cname.as_ptr(), n, cache, 0, data_room, socket) };
        let ptr = NonNull::new(p).ok_or_else(|| {
            DpdkError::from_rte_errno(
                CALL,
                format!(
                    "name {name:?}, n {n}, cache {cache}, data_room {data_room}, socket {socket}"
                ),
            )
        })?;
        LIVE_POOLS.fetch_add(1, Ordering::AcqRel);
        Ok(Mempool {
            ptr,
            name: name.to_string(),
            size: n,
        })
    }

    /// Takes one packet buffer (`rte_pktmbuf_alloc`): reset, empty, with
    /// the default headroom. `None` when the pool is exhausted.
    #[inline]
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: self.ptr is a live packet mempool.
        let m = unsafe { sys::cer_pktmbuf_alloc(self.ptr.as_ptr()) };
        // SAFETY: a non-null result is a fresh mbuf owned by nobody else.
        NonNull::new(m).map(|m| unsafe { Mbuf::from_raw(m.as_ptr()) })
    }

    /// Takes `count` buffers at once (`rte_pktmbuf_alloc_bulk`) and appends
    /// them to `out`; all or nothing. False if the pool has fewer than
    /// `count` free or `out` has less spare capacity.
    #[inline]
    pub fn alloc_bulk<const N: usize>(&self, out: &mut ArrayVec<Mbuf, N>, count: usize) -> bool {
        let len = out.len();
        if count == 0 {
            return true;
        }
        if count > N - len {
            return false;
        }
        // SAFETY: the spare capacity holds at least `count` slots; Mbuf is a
        // transparent wrapper over a non-null *mut rte_mbuf, so DPDK can
        // write mbuf pointers there; on success every slot is initialized.
        unsafe {
            let slots = out.as_mut_ptr().add(len).cast::<*mut sys::rte_mbuf>();
            if sys::cer_pktmbuf_alloc_bulk(self.ptr.as_ptr(), slots, count as u32) != 0 {
                return false;
            }
            out.set_len(len + count);
        }
        true
    }

    /// Buffers that can still be allocated (`rte_mempool_avail_count`).
    #[inline]
    pub fn available(&self) -> u32 {
        // SAFETY: self.ptr is a live mempool.
        unsafe { sys::rte_mempool_avail_count(self.ptr.as_ptr()) }
    }

    /// Buffers currently allocated (`rte_mempool_in_use_count`): held by the
    /// application or sitting in device rings.
    #[inline]
    pub fn in_use(&self) -> u32 {
        // SAFETY: self.ptr is a live mempool.
        unsafe { sys::rte_mempool_in_use_count(self.ptr.as_ptr()) }
    }

    /// Number of buffers the pool was created with.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The underlying `rte_mempool`, for DPDK calls this crate does not wrap.
    pub fn as_ptr(&self) -> *mut sys::rte_mempool {
        self.ptr.as_ptr()
    }
}

impl std::fmt::Debug for Mempool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mempool")
            .field("name", &self.name)
            .field("size", &self.size)
            .field("available", &self.available())
            .field("in_use", &self.in_use())
            .finish()
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        if try_free(self.ptr) {
            return;
        }
        log::debug!(
            "mempool {:?} released with {} mbufs in use or a port still using it; freeing it at EAL teardown",
            self.name,
            self.in_use()
        );
        RELEASED_POOLS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(PoolPtr(self.ptr));
    }
}

/// Frees the pool if nothing points into it any more.
fn try_free(ptr: NonNull<sys::rte_mempool>) -> bool {
    // SAFETY: ptr is a live mempool (not freed yet by construction).
    let in_use = unsafe { sys::rte_mempool_in_use_count(ptr.as_ptr()) };
    if in_use != 0 || port::pool_in_use_by_port(ptr.as_ptr()) {
        return false;
    }
    // SAFETY: no mbuf of the pool is allocated and no port refers to it, so
    // nothing can reach its memory after this call.
    unsafe { sys::rte_mempool_free(ptr.as_ptr()) };
    LIVE_POOLS.fetch_sub(1, Ordering::AcqRel);
    true
}

/// Mempools still owned by a live [`Mempool`] value.
pub(crate) fn live_pools_held() -> usize {
    let released = RELEASED_POOLS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .len();
    LIVE_POOLS.load(Ordering::Acquire).saturating_sub(released)
}

/// Frees released pools that became free; returns how many remain.
pub(crate) fn reap_released_pools() -> usize {
    let mut released = RELEASED_POOLS.lock().unwrap_or_else(|e| e.into_inner());
    released.retain(|p| !try_free(p.0));
    released.len()
}
