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
//! | `harness.rs` | one dataplane test at a time, root check, unique tags, built binaries |
//! | `netns.rs` | commands on the host and in namespaces (owned [`Netns`] or by name), veths |
//! | `proc.rs` | [`Proc`]: a started process, stopped by PID on drop; signals, liveness |
//! | `scratch.rs` | [`Scratch`]: a test's directory |
//! | `admin.rs` | JSON queries to admin sockets, dataplane counters |
//! | `dataplane.rs` | starting `cer-dataplane`; [`FeedTarget`] |
//! | `control.rs` | [`Control`]: a running `cer-control` and `cerctl` |
//! | `apps/` | protocol peers, captures, outage probe, the four-site lab |
//! | `peers/` | real BGP daemons (gobgpd, FRR, BIRD) and their configs |
//! | `wg.rs` | wireguard-go as a peer |

use anyhow::{bail, Result};
use std::time::{Duration, Instant};

mod admin;
mod control;
mod dataplane;
mod harness;
mod netns;
mod proc;
mod scratch;

pub use admin::{admin, counter};
pub use control::Control;
pub use dataplane::{start_dataplane, FeedTarget};
pub use harness::{bin, require_root, serial, tag};
pub use netns::{netns_command, ns_run, ns_spawn, ns_try, sh, text, veth, wait_listen, Netns};
pub use proc::{pid_alive, send_signal, Proc};
pub use scratch::Scratch;

/// Real BGP daemons (gobgpd, FRR, BIRD) as peers inside a test's namespaces.
pub mod peers;

/// wireguard-go as a peer inside a test's namespace.
pub mod wg;

/// Protocol peers (vsftpd, nfs-ganesha + rpcbind, iperf3, bulk TCP with sha256),
/// captures read with tshark, an outage probe, and the four-site lab driver.
pub mod apps;

/// Sends `total` bytes over TCP and prints the count, the sha256 and the seconds taken.
pub const TCP_SENDER: &str = include_str!("../scripts/tcp_sender.py");

/// Receives one TCP connection and prints the byte count, sha256 and the MSS it saw.
pub const TCP_RECEIVER: &str = include_str!("../scripts/tcp_receiver.py");

/// A TCP transfer of `bytes` from `from` to `to_ip` (a receiver in `to`), with
/// sha256 computed on both ends and compared. Returns (MB/s, receiver's MSS).
pub fn tcp_transfer(
    from: &Netns,
    to: &Netns,
    to_ip: &str,
    bytes: u64,
    scratch: &Scratch,
) -> Result<(f64, u32)> {
    let recv = scratch.file("tcp_recv.py");
    let send = scratch.file("tcp_send.py");
    std::fs::write(&recv, TCP_RECEIVER)?;
    std::fs::write(&send, TCP_SENDER)?;
    let log = scratch.file(&format!("tcp_recv-{}.log", tag()));
    let r = to.spawn(
        &["/usr/bin/python3", recv.to_str().unwrap(), to_ip, "7001"],
        &log,
    )?;
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let out = from.run(&[
        "/usr/bin/python3",
        send.to_str().unwrap(),
        to_ip,
        "7001",
        &bytes.to_string(),
    ])?;
    let secs = t0.elapsed().as_secs_f64();
    let sent = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let got = loop {
        let t = r.log_text();
        if t.split_whitespace().count() >= 3 {
            break t.trim().to_string();
        }
        if Instant::now() > deadline {
            bail!("receiver did not finish: {t}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let s: Vec<&str> = sent.split_whitespace().collect();
    let g: Vec<&str> = got.split_whitespace().collect();
    if s.first().map(|x| x.to_string()) != Some(bytes.to_string()) {
        bail!("sender: {sent}");
    }
    if (g[0], g[1]) != (s[0], s[1]) {
        bail!(
            "transfer mismatch: sent {} bytes sha256 {}, received {} bytes sha256 {}",
            s[0],
            s[1],
            g[0],
            g[1]
        );
    }
    Ok((bytes as f64 / secs / 1e6, g[2].parse().unwrap_or(0)))
}
