//! iperf3: one transfer of a byte count to a one-shot server, read from its JSON.

use crate::{ns_spawn, ns_try, tag, text, wait_listen};
use anyhow::{ensure, Context, Result};
use std::path::Path;
use std::time::Duration;

/// `iperf3 -c` result: bytes the receiver got and its rate.
#[derive(Clone, Debug)]
pub struct Iperf {
    pub bytes_sent: u64,
    /// What the server had counted when it reported (may trail the last bytes).
    pub bytes_received: u64,
    pub seconds: f64,
    pub bits_per_second: f64,
    pub retransmits: u64,
}

/// Sends `bytes` with iperf3 from `client_ns` to a one-shot server on
/// `server_addr` in `server_ns`.
pub fn iperf3(
    client_ns: &str,
    client_addr: &str,
    server_ns: &str,
    server_addr: &str,
    bytes: u64,
    dir: &Path,
) -> Result<Iperf> {
    let port = "5211";
    let mut server = ns_spawn(
        server_ns,
        &["iperf3", "-s", "-1", "-B", server_addr, "-p", port],
        &dir.join(format!("iperf3-server-{}.log", tag())),
    )?;
    wait_listen(server_ns, server_addr, 5211, Duration::from_secs(5))
        .with_context(|| server.log_text())?;
    let out = ns_try(
        client_ns,
        &[
            "iperf3",
            "-c",
            server_addr,
            "-B",
            client_addr,
            "-p",
            port,
            "-n",
            &bytes.to_string(),
            "-J",
        ],
    );
    server.terminate(Duration::from_secs(3));
    ensure!(out.status.success(), "iperf3 client: {}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("iperf3 -J output")?;
    let r = &v["end"]["sum_received"];
    Ok(Iperf {
        bytes_sent: v["end"]["sum_sent"]["bytes"].as_u64().unwrap_or(0),
        bytes_received: r["bytes"].as_u64().unwrap_or(0),
        seconds: r["seconds"].as_f64().unwrap_or(0.0),
        bits_per_second: r["bits_per_second"].as_f64().unwrap_or(0.0),
        retransmits: v["end"]["sum_sent"]["retransmits"].as_u64().unwrap_or(0),
    })
}
