//! Admin sockets (JSON lines): one query to a dataplane or cer-control
//! ([`admin`]) and the per-core counters of a dataplane ([`counter`]).

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::time::Duration;

/// One JSON admin query to a dataplane, answered with the `data` field.
pub fn admin(socket: &Path, cmd: &str) -> Result<serde_json::Value> {
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket)
        .with_context(|| format!("connecting {}", socket.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    writeln!(s, "{{\"cmd\":\"{cmd}\"}}")?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    let v: serde_json::Value = serde_json::from_str(&line)?;
    if v["status"] != "ok" {
        bail!("admin {cmd}: {line}");
    }
    Ok(v["data"].clone())
}

/// Sum of one named counter over every polling core.
pub fn counter(socket: &Path, section: &str, name: &str) -> u64 {
    admin(socket, "counters")
        .map(|d| {
            d.as_array()
                .into_iter()
                .flatten()
                .map(|c| c[section][name].as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}
