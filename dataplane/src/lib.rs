//! cer-dataplane: a userspace IPv4 router on DPDK poll-mode drivers.
//!
//! The pipeline (`pipeline`) is written against `packet::PortIo`, so the same
//! code runs on DPDK ports (`dpdk_io`) and on in-memory ports (tests,
//! benchmarks). The manager thread (`manager`) owns the FIB, applies the
//! control process's feed (`feed`) and publishes immutable `snapshot`s.
//! IPv6 neighbor discovery (`nd`) serves BGP unnumbered and IPv4 routes via
//! IPv6 link-local next hops.

pub mod control;
pub mod counters;
pub mod dpdk_io;
pub mod engine;
pub mod fib;
pub mod nd;
pub mod packet;
pub mod pipeline;
pub mod reassembly;
pub mod snapshot;
pub mod tunnel;
pub mod wire;
