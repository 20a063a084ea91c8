//! Packet captures: live tcpdump on an interface of a namespace (written to
//! a pcap file), read back with tshark; the outer-header checker script.

use crate::{ns_spawn, sh, tag, Proc};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How every test starts a live capture (then `-i IFACE -w FILE ...`). libpcap 1.10 on Linux
/// reads through a TPACKET_V3 ring unless immediate mode is asked for, and that ring hands
/// frames to tcpdump a block at a time: a block is retired when full or when the 1 s block
/// timeout tcpdump sets expires, so a frame reaches tcpdump (and, with `-U`, the file) up to
/// 1 s after it was on the wire, and a tcpdump stopped meanwhile (SIGTERM: `pcap_breakloop`,
/// then exit) never reads the block it was filling: those frames are not in the file at all.
/// `--immediate-mode` makes libpcap use TPACKET_V2, one frame at a time (measured here: a
/// frame is in the file 0-4 ms after it was sent, against 0-1000 ms without); `-U` writes each
/// frame as it is delivered instead of when tcpdump's stdio buffer fills.
pub const TCPDUMP_LIVE: [&str; 3] = ["tcpdump", "--immediate-mode", "-U"];

/// The command line of a live capture: [`TCPDUMP_LIVE`] followed by `args`.
pub fn tcpdump_live<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut v = TCPDUMP_LIVE.to_vec();
    v.extend_from_slice(args);
    v
}

/// A packet capture (tcpdump, pcap file) on one interface of a namespace.
pub struct Capture {
    proc: Proc,
    pub pcap: PathBuf,
}

impl Capture {
    /// Starts capturing on `iface` in `ns` with BPF `filter` (may be empty)
    /// and waits until tcpdump is listening.
    pub fn start(ns: &str, iface: &str, filter: &str, dir: &Path, name: &str) -> Result<Capture> {
        Capture::start_snap(ns, iface, filter, dir, name, 256)
    }

    /// `start` keeping `snaplen` octets of each packet (0: all of it, for
    /// checks that reassemble a TCP stream).
    pub fn start_snap(
        ns: &str,
        iface: &str,
        filter: &str,
        dir: &Path,
        name: &str,
        snaplen: u32,
    ) -> Result<Capture> {
        let t = tag();
        let pcap = dir.join(format!("{name}-{t}.pcap"));
        let snap = snaplen.to_string();
        let mut args =
            tcpdump_live(&["-n", "-s", &snap, "-i", iface, "-w", pcap.to_str().unwrap()]);
        if !filter.is_empty() {
            args.push(filter);
        }
        let mut proc = ns_spawn(ns, &args, &dir.join(format!("{name}-{t}.tcpdump.log")))?;
        proc.wait_for_log("listening on", Duration::from_secs(5))
            .with_context(|| format!("tcpdump on {iface} in {ns}"))?;
        Ok(Capture { proc, pcap })
    }

    /// Stops tcpdump (SIGTERM flushes the file) and returns the pcap path.
    pub fn stop(&mut self) -> PathBuf {
        // Give the last packets time to be written.
        std::thread::sleep(Duration::from_millis(300));
        self.proc.terminate(Duration::from_secs(3));
        self.pcap.clone()
    }
}

/// `tshark -r PCAP [-d DECODE]... -Y FILTER -T fields -e F...`: one row per packet.
/// Nested fields (e.g. `ip.src` in a tunnel) come comma-separated, outer first.
pub fn tshark_fields(
    pcap: &Path,
    decode_as: &[&str],
    filter: &str,
    fields: &[&str],
) -> Result<Vec<Vec<String>>> {
    let mut args = vec!["tshark", "-n", "-r", pcap.to_str().unwrap()];
    for d in decode_as {
        args.extend_from_slice(&["-d", d]);
    }
    if !filter.is_empty() {
        args.extend_from_slice(&["-Y", filter]);
    }
    args.extend_from_slice(&["-T", "fields"]);
    for f in fields {
        args.extend_from_slice(&["-e", f]);
    }
    let out = sh(&args)?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('\t').map(|s| s.to_string()).collect())
        .collect())
}

/// The TCP MSS options of SYNs (and SYN-ACKs) in a pcap, as `(src, dst, syn_ack, mss)`.
pub fn syn_mss(pcap: &Path) -> Result<Vec<(String, String, bool, u32)>> {
    Ok(tshark_fields(
        pcap,
        &[],
        "tcp.flags.syn == 1 && tcp.options.mss_val",
        &["ip.src", "ip.dst", "tcp.flags.ack", "tcp.options.mss_val"],
    )?
    .into_iter()
    .filter_map(|r| {
        Some((
            r.first()?.clone(),
            r.get(1)?.clone(),
            matches!(r.get(2)?.as_str(), "1" | "True"),
            r.get(3)?.parse().ok()?,
        ))
    })
    .collect())
}
