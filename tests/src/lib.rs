//! Harness for end-to-end tests on network-namespace topologies: namespaces
//! and veths with unique names that are removed even when a test fails,
//! processes started inside them and ended by PID, and paths to the project's
//! built binaries.
//!
//! This file is the crate's map; each job lives in its own file, and the
//! flat paths (`cer_e2e::Netns`, `cer_e2e::admin`, ...) are re-exported here.
//!
//! | file | job |
//! |---|---|
//! | `harness.rs` | one dataplane test at a time, root check, unique tags, built binaries, `tests/scripts/` paths |
//! | `netns.rs` | commands on the host and in namespaces (owned [`Netns`] or by name), veths |
//! | `proc.rs` | [`Proc`]: a started process, stopped by PID on drop; signals, liveness |
//! | `scratch.rs` | [`Scratch`]: a test's directory |
//! | `admin.rs` | JSON queries to admin sockets, dataplane counters |
//! | `dataplane.rs` | starting `cer-dataplane`; [`FeedTarget`] |
//! | `control.rs` | [`Control`]: a running `cer-control` and `cerctl` |
//! | `config.rs` | builders of dataplane and cer-control configs ([`DataplaneConfig`], [`ControlConfig`]) |
//! | `apps/` | protocol peers, captures, outage probe, the four-site lab |
//! | `peers/` | real BGP daemons (gobgpd, FRR, BIRD) and their configs |
//! | `wg.rs` | wireguard-go as a peer |

mod admin;
pub mod config;
mod control;
mod dataplane;
mod harness;
mod netns;
mod proc;
mod scratch;

pub use admin::{admin, counter};
pub use config::{ControlConfig, DataplaneConfig, Neighbor, Port, Tunnel};
pub use control::Control;
pub use dataplane::{start_dataplane, FeedTarget};
pub use harness::{bin, require_root, serial, tag, test_script, wait_until};
pub use netns::{netns_command, ns_run, ns_spawn, ns_try, sh, text, veth, wait_listen, Netns};
pub use proc::{pid_alive, run_limited, send_signal, Finished, Proc};
pub use scratch::Scratch;

/// Real BGP daemons (gobgpd, FRR, BIRD) as peers inside a test's namespaces.
pub mod peers;

/// wireguard-go as a peer inside a test's namespace.
pub mod wg;

/// Protocol peers (vsftpd, nfs-ganesha + rpcbind, iperf3, bulk TCP with sha256),
/// captures read with tshark, an outage probe, and the four-site lab driver.
pub mod apps;

pub use apps::{tcp_transfer, TCP_RECEIVER, TCP_SENDER};
