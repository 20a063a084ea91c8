//! cer-dataplane: a userspace IPv4 router on DPDK poll-mode drivers.
//!
//! The pipeline (`pipeline`, one file per stage) is written against
//! `packet::PortIo`, so the same code runs on DPDK ports (`dpdk_io`) and on
//! in-memory ports (tests, benchmarks); it reads and rewrites headers through
//! the typed views in `wire`. The manager thread (`manager`, with its feed and
//! admin socket servers) owns the FIB (`fib`), applies the control process's
//! feed and publishes immutable `snapshot`s; `engine` brings the whole dataplane up. Tunnel formats are in
//! `tunnel`, outer-fragment reassembly in `reassembly`, per-core counters in
//! `counters`. IPv6 neighbor discovery (`nd`) serves BGP unnumbered and IPv4
//! routes via IPv6 link-local next hops. `wake` puts an idle polling core
//! to sleep on its ports' events (poll modes `adaptive` and `shared`).
//! `kernel_reasm` bounds and shows the kernel's reassembly in front of
//! af_packet ports, whose kernel ring drops `ring_stats` reads.
//! `liveness` is the stall guard: after the process was stopped, no proxied
//! /32 is claimed until the controller has re-confirmed the router's role.
//! `metrics` is what a Prometheus scrape of `[metrics] listen` shows.

pub mod capture;
pub mod cli;
pub mod counters;
pub mod dpdk_io;
pub mod engine;
pub mod fib;
pub mod kernel_reasm;
pub mod liveness;
pub mod manager;
pub mod metrics;
pub mod nd;
pub mod packet;
pub mod pipeline;
pub mod reassembly;
pub mod reload;
pub mod ring_stats;
pub mod snapshot;
pub mod tunnel;
pub mod wake;
pub mod wire;
