//! Safe Rust API over the system DPDK 22.11 for the CER dataplane: the EAL
//! and lcores ([`Eal`], [`launch`]), packet-buffer pools ([`Mempool`]),
//! packet buffers ([`Mbuf`]) and Ethernet ports ([`Port`]) with the burst
//! receive/transmit fast path. All `unsafe` of the dataplane's DPDK use
//! lives here (and in `dpdk-sys`); each block states why it is sound.
//!
//! # Why the project binds DPDK itself
//!
//! The Rust DPDK framework `capsule` targets DPDK 19.11 and is no longer
//! maintained: its generated bindings and C shims are for the 19.11 ABI
//! (e.g. `rte_eth_dev_info`, `rte_mbuf` offload flags and the ethdev fast
//! path changed in 20.11 and 21.11), so it cannot build or link against
//! Debian 12's DPDK 22.11 (`libdpdk-dev`, shared objects `*.so.23`).
//! Other crates either vendor and build their own DPDK or cover only part
//! of the API. `dpdk-sys` therefore runs bindgen on the installed headers
//! at build time (so the layouts always match the library linked) and
//! compiles a small C shim for the `static inline` fast-path functions;
//! this crate wraps exactly what the dataplane uses.
//!
//! # Runtime notes
//!
//! - Debian's DPDK is linked as shared libraries; EAL loads every
//!   poll-mode driver plugin in its built-in directory
//!   ([`dpdk_sys::PMD_DIR`]) at init, so `--vdev=net_af_packet0,...`,
//!   `net_af_xdp`, `net_tap`, `net_ring`, `net_null` and the PCI drivers
//!   work without `-d`.
//! - The EAL initializes once per process ([`Eal::init`] a second time is an
//!   error) and runs in the network namespace of the process.
//! - Without hugepages use `--no-huge -m 256`; `--no-huge` implies legacy
//!   memory mode, which EAL refuses together with `--in-memory`, so use
//!   `--no-shconf` and a unique `--file-prefix` instead (EAL still creates
//!   `/var/run/dpdk/<prefix>/`; a clean teardown removes it again).
//! - Virtual devices used by the project, all verified in a network
//!   namespace: `--vdev=net_af_packet0,iface=IF`,
//!   `--vdev=net_af_xdp0,iface=IF,start_queue=0,queue_count=1` (libxdp
//!   warns that there is no bpffs and falls back to a single program:
//!   harmless) and `--vdev=net_tap0,iface=NAME` (the PMD creates the
//!   kernel interface and brings it up on start; without the kernel's
//!   multiq qdisc it disables rte_flow, which the project does not use).
//! - DPDK 22.11's af_xdp PMD does not return the mbufs of its fill ring to
//!   the pool when the port is closed, so after an af_xdp port the pool
//!   never drains and [`Eal::shutdown`] reports that it skipped
//!   `rte_eal_cleanup` (memory is released at process exit).
//! - Each receive/transmit queue must be polled by one thread at a time,
//!   as with DPDK itself.

#![warn(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod eal;
mod error;
mod mbuf;
mod mempool;
mod port;

pub use dpdk_sys as sys;
pub use eal::{
    launch, lcore_count, lcore_id, lcore_is_idle, lcore_socket, main_lcore, pdump_init,
    runtime_dir, tsc, tsc_hz, wait_lcore, worker_lcores, Eal, LCORE_PANICKED,
};
pub use error::{rte_errno, strerror, DpdkError};
pub use mbuf::{free_bulk, Mbuf};
pub use mempool::{Mempool, DEFAULT_DATA_ROOM, PKTMBUF_HEADROOM, SOCKET_ANY};
pub use port::{format_mac, LinkStatus, Port, PortSetup, PortStats};

/// Packets per receive/transmit burst on the fast path.
pub const BURST: usize = 32;

/// A burst of owned packet buffers, the unit the fast path works on.
pub type Burst = arrayvec::ArrayVec<Mbuf, BURST>;

/// Prefetches the cache line at `p` into all cache levels (`rte_prefetch0`).
/// Any address may be given: a prefetch never faults.
#[inline]
pub fn prefetch0<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: prefetcht0 is an SSE instruction (baseline on x86_64) that
        // never faults and has no architectural effect, whatever `p` is.
        unsafe {
            core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>())
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // SAFETY: rte_prefetch0 is a hint that never faults.
        unsafe { sys::cer_prefetch0(p.cast()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_is_a_transparent_pointer_array() {
        assert_eq!(
            std::mem::size_of::<Mbuf>(),
            std::mem::size_of::<*mut sys::rte_mbuf>()
        );
        assert_eq!(
            std::mem::size_of::<Option<Mbuf>>(),
            std::mem::size_of::<*mut sys::rte_mbuf>()
        );
        assert_eq!(Burst::new().capacity(), BURST);
    }

    #[test]
    fn prefetch_of_any_address_is_harmless() {
        prefetch0(std::ptr::null::<u8>());
        let x = 5u64;
        prefetch0(&x);
    }
}
