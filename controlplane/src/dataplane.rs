//! Talking to cer-dataplane from the operator side: admin queries, and a FIB
//! description file (TOML) that `cerctl dataplane feed sync` turns into a
//! full sync, so the dataplane can be driven before cer-control exists.

use anyhow::{bail, Context, Result};
use cer_shared::admin::{AdminRequest, AdminResponse, CaptureFrame, CaptureSummary};
use cer_shared::feed::{EndpointAction, FibChange, NextHop};
use cer_shared::{framing, Ipv4Prefix, MacAddr};
use serde::Deserialize;
use std::io::{BufReader, Write as _};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// One admin request/response round trip.
pub fn admin(socket: &Path, req: &AdminRequest) -> Result<serde_json::Value> {
    let stream = UnixStream::connect(socket).with_context(|| {
        format!(
            "cannot connect to the dataplane admin socket {} (is cer-dataplane running?)",
            socket.display()
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut w = stream.try_clone()?;
    framing::write_msg(&mut w, req)?;
    let mut r = BufReader::new(stream);
    let mut buf = Vec::new();
    match framing::read_msg::<_, AdminResponse>(&mut r, &mut buf)? {
        AdminResponse::Ok { data } => Ok(data),
        AdminResponse::Error { message } => bail!("dataplane: {message}"),
    }
}

/// Runs a capture (`AdminRequest::Capture`): writes the pcapng stream to
/// `out` until the dataplane ends it, or until `stop` is set (Ctrl-C), when
/// the dataplane is asked to stop and the rest of the stream still arrives.
/// `out_name` names the output in errors. A write error (a full disk) ends
/// the capture: dropping the connection stops it at the dataplane.
pub fn capture(
    socket: &Path,
    req: &AdminRequest,
    out: &mut dyn std::io::Write,
    out_name: &str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Result<CaptureSummary> {
    use base64::Engine as _;
    use std::sync::atomic::Ordering;
    let stream = UnixStream::connect(socket).with_context(|| {
        format!(
            "cannot connect to the dataplane admin socket {} (is cer-dataplane running?)",
            socket.display()
        )
    })?;
    let mut w = stream.try_clone()?;
    framing::write_msg(&mut w, req)?;
    let mut r = BufReader::new(stream.try_clone()?);
    let mut buf = Vec::new();
    match framing::read_msg::<_, AdminResponse>(&mut r, &mut buf)? {
        AdminResponse::Ok { data } => {
            let points: Vec<String> = data["points"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|p| p.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            eprintln!(
                "capturing on {} (snaplen {}), writing {out_name}",
                points.join(", "),
                data["snaplen"]
            );
        }
        AdminResponse::Error { message } => bail!("dataplane: {message}"),
    }
    // Ctrl-C: one line to the dataplane asks it to stop; the stream then ends.
    let watcher = {
        let stop = stop.clone();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let d = done.clone();
        std::thread::spawn(move || {
            while !d.load(Ordering::Relaxed) {
                if stop.load(Ordering::Relaxed) {
                    let _ = w.write_all(b"stop\n");
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        done
    };
    let _stop_watcher = scopeguard(watcher);
    let mut written_bytes = 0u64;
    loop {
        let frame = match framing::read_msg::<_, CaptureFrame>(&mut r, &mut buf) {
            Ok(f) => f,
            Err(framing::FrameError::Closed) => {
                bail!("the dataplane closed the capture without a summary (did it stop?)")
            }
            Err(e) => return Err(e).context("reading the capture stream"),
        };
        match frame {
            CaptureFrame::Data { pcapng } => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(pcapng)
                    .context("a capture chunk is not base64")?;
                out.write_all(&bytes)
                    .and_then(|_| out.flush())
                    .with_context(|| {
                        format!("writing {out_name} after {written_bytes} bytes; capture stopped")
                    })?;
                written_bytes += bytes.len() as u64;
            }
            CaptureFrame::Progress { .. } => {}
            CaptureFrame::End(s) => return Ok(s),
        }
    }
}

/// Sets the flag when dropped (ends the Ctrl-C watcher thread).
struct FlagOnDrop(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for FlagOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn scopeguard(flag: std::sync::Arc<std::sync::atomic::AtomicBool>) -> FlagOnDrop {
    FlagOnDrop(flag)
}

/// The FIB file: what a full sync installs.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FibFile {
    #[serde(default)]
    pub proxy_arp_active: bool,
    #[serde(default)]
    pub proxy_arp: Vec<Ipv4Addr>,
    #[serde(default, rename = "endpoint")]
    pub endpoints: Vec<FibFileEndpoint>,
    #[serde(default, rename = "route")]
    pub routes: Vec<FibFileRoute>,
    #[serde(default, rename = "neighbor")]
    pub neighbors: Vec<FibFileNeighbor>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FibFileEndpoint {
    pub ip: Ipv4Addr,
    pub port: Option<String>,
    pub tunnel: Option<u32>,
    #[serde(default)]
    pub drop: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FibFileRoute {
    pub prefix: Ipv4Prefix,
    /// `PORT` (on-link) or `PORT:GATEWAY`.
    pub via: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FibFileNeighbor {
    pub port: String,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
}

/// Parses `PORT` or `PORT:GATEWAY`.
pub fn parse_via(s: &str) -> Result<NextHop> {
    match s.split_once(':') {
        None => Ok(NextHop {
            port: s.to_string(),
            gateway: None,
            gateway6: None,
        }),
        Some((port, gw)) => Ok(NextHop {
            port: port.to_string(),
            gateway: Some(
                gw.parse()
                    .with_context(|| format!("'{s}': '{gw}' is not an IPv4 gateway"))?,
            ),
            gateway6: None,
        }),
    }
}

pub fn endpoint_action(
    port: Option<String>,
    tunnel: Option<u32>,
    drop: bool,
) -> Result<EndpointAction> {
    match (port, tunnel, drop) {
        (Some(port), None, false) => Ok(EndpointAction::Local { port }),
        (None, Some(tunnel), false) => Ok(EndpointAction::Tunnel { tunnel }),
        (None, None, true) => Ok(EndpointAction::Drop),
        _ => bail!("give exactly one of port, tunnel or drop"),
    }
}

impl FibFile {
    pub fn load(path: &Path) -> Result<FibFile> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("{}: invalid FIB file", path.display()))
    }

    pub fn changes(self) -> Result<Vec<FibChange>> {
        let mut out = Vec::new();
        for (i, e) in self.endpoints.into_iter().enumerate() {
            let action = endpoint_action(e.port, e.tunnel, e.drop)
                .with_context(|| format!("endpoint[{i}] ({})", e.ip))?;
            out.push(FibChange::EndpointSet { ip: e.ip, action });
        }
        for (i, r) in self.routes.into_iter().enumerate() {
            let nexthops = r
                .via
                .iter()
                .map(|v| parse_via(v))
                .collect::<Result<Vec<_>>>()
                .with_context(|| format!("route[{i}] ({})", r.prefix))?;
            out.push(FibChange::RouteSet {
                prefix: r.prefix,
                nexthops,
            });
        }
        for n in self.neighbors {
            out.push(FibChange::NeighborSet {
                port: n.port,
                ip: n.ip,
                mac: n.mac,
            });
        }
        for ip in self.proxy_arp {
            out.push(FibChange::ProxyArpSet { ip });
        }
        out.push(FibChange::ProxyArpActive {
            active: self.proxy_arp_active,
        });
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fib_file_to_changes() {
        let f: FibFile = toml::from_str(
            r#"
proxy_arp_active = true
proxy_arp = ["10.1.0.77"]
[[endpoint]]
ip = "10.77.60.10"
port = "lan"
[[endpoint]]
ip = "10.77.60.11"
tunnel = 2
[[route]]
prefix = "0.0.0.0/0"
via = ["wan:10.2.0.254", "wan"]
"#,
        )
        .unwrap();
        let c = f.changes().unwrap();
        assert_eq!(c.len(), 5);
        assert!(
            matches!(&c[2], FibChange::RouteSet { nexthops, .. } if nexthops.len() == 2 && nexthops[1].gateway.is_none())
        );
        assert_eq!(c[4], FibChange::ProxyArpActive { active: true });
    }

    #[test]
    fn bad_fib_file_names_the_entry() {
        let f: FibFile =
            toml::from_str("[[endpoint]]\nip = \"10.0.0.1\"\nport = \"lan\"\ndrop = true\n")
                .unwrap();
        let e = format!("{:#}", f.changes().unwrap_err());
        assert!(e.contains("endpoint[0] (10.0.0.1)"), "{e}");
        assert!(parse_via("wan:10.0.0.300").is_err());
        assert!(toml::from_str::<FibFile>("[[endpoint]]\nipp = \"10.0.0.1\"\n").is_err());
    }
}
