//! Byte-exact TCP transfers: generated bulk data with sha256 on both ends
//! ([`bulk_sha256`], [`tcp_transfer`] for owned namespaces) and a file
//! served by a one-shot `nc` ([`nc_file`]).

use crate::{ns_spawn, ns_try, tag, text, wait_listen, Netns, Scratch};
use anyhow::{ensure, Context, Result};
use std::path::Path;
use std::time::{Duration, Instant};

/// Sends `total` bytes over TCP and prints the count, the sha256 and the seconds taken.
pub const TCP_SENDER: &str = include_str!("../../scripts/tcp_sender.py");

/// Receives one TCP connection and prints the byte count, sha256 and the MSS it saw.
pub const TCP_RECEIVER: &str = include_str!("../../scripts/tcp_receiver.py");

/// A TCP transfer of `bytes` generated on the fly, sha256 on both ends.
#[derive(Clone, Debug)]
pub struct Bulk {
    pub bytes: u64,
    pub sha256: String,
    pub mbytes_per_sec: f64,
    /// TCP_MAXSEG of the receiving socket.
    pub receiver_mss: u32,
}

/// Sends `bytes` over TCP from `from_ns` to `to_addr:port` (a receiver in
/// `to_ns`); fails unless the receiver got the same byte count and sha256.
pub fn bulk_sha256(
    from_ns: &str,
    to_ns: &str,
    to_addr: &str,
    port: u16,
    bytes: u64,
    dir: &Path,
) -> Result<Bulk> {
    let recv = dir.join("apps_tcp_recv.py");
    let send = dir.join("apps_tcp_send.py");
    std::fs::write(&recv, TCP_RECEIVER)?;
    std::fs::write(&send, TCP_SENDER)?;
    let mut r = ns_spawn(
        to_ns,
        &[
            "/usr/bin/python3",
            recv.to_str().unwrap(),
            to_addr,
            &port.to_string(),
        ],
        &dir.join(format!("bulk-recv-{}.log", tag())),
    )?;
    wait_listen(to_ns, to_addr, port, Duration::from_secs(5))
        .with_context(|| format!("bulk receiver: {}", r.log_text()))?;
    let t0 = Instant::now();
    let out = ns_try(
        from_ns,
        &[
            "/usr/bin/python3",
            send.to_str().unwrap(),
            to_addr,
            &port.to_string(),
            &bytes.to_string(),
        ],
    );
    let secs = t0.elapsed().as_secs_f64();
    ensure!(
        out.status.success(),
        "bulk sender to {to_addr}: {}",
        text(&out)
    );
    let sent = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let got = loop {
        let t = r.log_text();
        if t.split_whitespace().count() >= 3 {
            break t.trim().to_string();
        }
        ensure!(
            Instant::now() < deadline,
            "bulk receiver did not finish: {t}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    r.terminate(Duration::from_secs(2));
    let s: Vec<&str> = sent.split_whitespace().collect();
    let g: Vec<&str> = got.split_whitespace().collect();
    ensure!(
        s.len() >= 2 && s[0] == bytes.to_string(),
        "bulk sender: {sent}"
    );
    ensure!(
        (g[0], g[1]) == (s[0], s[1]),
        "bulk mismatch: sent {} bytes sha256 {}, received {} bytes sha256 {}",
        s[0],
        s[1],
        g[0],
        g[1]
    );
    Ok(Bulk {
        bytes,
        sha256: s[1].to_string(),
        mbytes_per_sec: bytes as f64 / secs / 1e6,
        receiver_mss: g[2].parse().unwrap_or(0),
    })
}

/// A TCP transfer of `bytes` from `from` to `to_ip` (a receiver in `to`, port
/// 7001), with sha256 computed on both ends and compared ([`bulk_sha256`]).
/// Returns (MB/s, receiver's MSS).
pub fn tcp_transfer(
    from: &Netns,
    to: &Netns,
    to_ip: &str,
    bytes: u64,
    scratch: &Scratch,
) -> Result<(f64, u32)> {
    let b = bulk_sha256(&from.name, &to.name, to_ip, 7001, bytes, &scratch.path)?;
    Ok((b.mbytes_per_sec, b.receiver_mss))
}

/// A file served by a one-shot `nc -l` in `from_ns` and fetched by `nc` in
/// `to_ns` into `out`: a byte-exact file transfer over TCP. Returns seconds.
pub fn nc_file(
    from_ns: &str,
    from_addr: &str,
    port: u16,
    file: &Path,
    to_ns: &str,
    out: &Path,
    dir: &Path,
) -> Result<f64> {
    let mut server = ns_spawn(
        from_ns,
        &[
            "sh",
            "-c",
            &format!(
                "exec nc -N -l {from_addr} {port} < {}",
                file.to_str().unwrap()
            ),
        ],
        &dir.join(format!("nc-server-{}.log", tag())),
    )?;
    wait_listen(from_ns, from_addr, port, Duration::from_secs(5))
        .with_context(|| format!("nc server: {}", server.log_text()))?;
    let t0 = Instant::now();
    let o = ns_try(
        to_ns,
        &[
            "sh",
            "-c",
            &format!(
                "timeout 120 nc -d {from_addr} {port} > {}",
                out.to_str().unwrap()
            ),
        ],
    );
    let secs = t0.elapsed().as_secs_f64();
    server.terminate(Duration::from_secs(2));
    ensure!(
        o.status.success(),
        "nc fetch from {from_addr}: {}",
        text(&o)
    );
    Ok(secs)
}
