//! Protocol peers for the acceptance and failover tests, run inside network
//! namespaces given by name (a test's own `Netns` or a lab site's workload
//! namespace): vsftpd, nfs-ganesha with rpcbind in a private mount namespace,
//! iperf3, a TCP bulk transfer with sha256 on both ends, tcpdump captures
//! read back with tshark, and a steady ping probe that measures outages.
//! Every daemon is ended by its PID when its value drops. `Lab` drives a
//! four-site lab (`scripts/lab`) for one test and reads its lab.json.

use crate::{
    ns_run, ns_spawn, ns_try, send_signal, sh, tag, text, wait_listen, Proc, TCP_RECEIVER,
    TCP_SENDER,
};
use anyhow::{bail, ensure, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let out = sh(&["sha256sum", path.to_str().unwrap()])?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string())
}

/// Writes `bytes` of pseudo-random content (not compressible, not zeros) to `path`.
pub fn random_file(path: &Path, bytes: u64) -> Result<()> {
    let mb = bytes.div_ceil(1 << 20);
    sh(&[
        "sh",
        "-c",
        &format!(
            "head -c {bytes} /dev/urandom > {p} && test $(stat -c %s {p}) -eq {bytes}",
            p = path.display()
        ),
    ])
    .with_context(|| format!("writing {mb} MiB to {}", path.display()))?;
    Ok(())
}

/// A vsftpd serving `root` anonymously on `addr` (read-only, passive and
/// active mode), with its protocol log (which shows the client address it saw).
pub struct Ftp {
    pub proc: Proc,
    pub root: PathBuf,
    pub addr: String,
    pub log: PathBuf,
}

impl Ftp {
    pub fn start(ns: &str, dir: &Path, addr: &str) -> Result<Ftp> {
        let t = tag();
        let root = dir.join(format!("ftp-root-{t}"));
        std::fs::create_dir_all(&root)?;
        // vsftpd refuses an anonymous root writable by the ftp user; the
        // files must be readable by it.
        sh(&[
            "chmod",
            "755",
            dir.to_str().unwrap(),
            root.to_str().unwrap(),
        ])?;
        let log = dir.join(format!("vsftpd-{t}.log"));
        let conf = dir.join(format!("vsftpd-{t}.conf"));
        std::fs::write(
            &conf,
            format!(
                "listen=YES\nlisten_ipv6=NO\nlisten_address={addr}\nbackground=NO\n\
                 anonymous_enable=YES\nno_anon_password=YES\nanon_root={root}\n\
                 local_enable=NO\nwrite_enable=NO\n\
                 pasv_enable=YES\npasv_min_port=40000\npasv_max_port=40100\n\
                 port_enable=YES\nconnect_from_port_20=YES\nseccomp_sandbox=NO\n\
                 xferlog_enable=YES\nlog_ftp_protocol=YES\ndual_log_enable=YES\n\
                 vsftpd_log_file={log}\nsecure_chroot_dir=/var/run/vsftpd/empty\n",
                root = root.display(),
                log = log.display()
            ),
        )?;
        std::fs::create_dir_all("/var/run/vsftpd/empty")?;
        let proc = ns_spawn(
            ns,
            &["vsftpd", conf.to_str().unwrap()],
            &dir.join(format!("vsftpd-{t}.out")),
        )?;
        wait_listen(ns, addr, 21, Duration::from_secs(5))
            .with_context(|| format!("vsftpd: {}", proc.log_text()))?;
        Ok(Ftp {
            proc,
            root,
            addr: addr.to_string(),
            log,
        })
    }

    /// The server's protocol log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// How an FTP client opens the data connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FtpMode {
    /// PASV: the client connects to the server's data port.
    Passive,
    /// PORT (no EPRT): the server connects back to the client's address.
    Active,
}

/// Downloads `ftp://server/name` with curl from `ns` (bound to `client_addr`)
/// into `out`.
pub fn ftp_get(
    ns: &str,
    client_addr: &str,
    server: &str,
    name: &str,
    mode: FtpMode,
    out: &Path,
) -> Result<()> {
    let url = format!("ftp://{server}/{name}");
    let mut args = vec![
        "curl",
        "-sS",
        "--max-time",
        "60",
        "--interface",
        client_addr,
        "-o",
        out.to_str().unwrap(),
    ];
    if mode == FtpMode::Active {
        args.extend_from_slice(&["-P", client_addr, "--disable-eprt"]);
    } else {
        args.push("--disable-epsv");
    }
    args.push(&url);
    ns_run(ns, &args).with_context(|| format!("ftp {mode:?} {url}"))?;
    Ok(())
}

/// nfs-ganesha (VFS FSAL, NFS v3 over TCP and UDP) exporting a directory,
/// with rpcbind beside it. Both run in a private mount namespace with their
/// own tmpfs /run (rpcbind and ganesha use fixed /run paths).
pub struct Nfs {
    ganesha: Proc,
    rpcbind_pid_file: PathBuf,
    /// The exported directory; NFS v3 clients mount it by this path.
    pub export: PathBuf,
    pub addr: String,
    pub log: PathBuf,
}

impl Nfs {
    pub fn start(ns: &str, dir: &Path, addr: &str) -> Result<Nfs> {
        let t = tag();
        let export = dir.join(format!("nfs-export-{t}"));
        std::fs::create_dir_all(&export)?;
        let conf = dir.join(format!("ganesha-{t}.conf"));
        let log = dir.join(format!("ganesha-{t}.log"));
        let rpcbind_pid_file = dir.join(format!("rpcbind-{t}.pid"));
        std::fs::write(
            &conf,
            format!(
                "NFS_CORE_PARAM {{ Protocols = 3; Bind_addr = {addr}; Enable_NLM = false; Enable_RQUOTA = false; }}\n\
                 NFSV4 {{ Graceless = true; }}\n\
                 EXPORT {{ Export_Id = 1; Path = {export}; Pseudo = /export; Access_Type = RW;\n\
                   Squash = No_Root_Squash; SecType = sys; Protocols = 3; Transports = TCP, UDP;\n\
                   FSAL {{ Name = VFS; }} }}\n",
                export = export.display()
            ),
        )?;
        let script = dir.join(format!("nfs-{t}.sh"));
        std::fs::write(
            &script,
            format!(
                "set -e\nmount -t tmpfs cer-nfs-run /run\nmkdir -p /run/rpcbind /run/ganesha\n\
                 rpcbind -f -w &\necho $! > {rp}\n\
                 i=0; while [ ! -S /run/rpcbind.sock ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done\n\
                 exec ganesha.nfsd -F -f {conf} -L {log} -p {dir}/ganesha-{t}.pid -N NIV_EVENT\n",
                rp = rpcbind_pid_file.display(),
                conf = conf.display(),
                log = log.display(),
                dir = dir.display(),
            ),
        )?;
        // `unshare` without --fork execs sh, which execs ganesha: one PID.
        let ganesha = ns_spawn(
            ns,
            &[
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                script.to_str().unwrap(),
            ],
            &dir.join(format!("nfs-{t}.out")),
        )?;
        let nfs = Nfs {
            ganesha,
            rpcbind_pid_file,
            export,
            addr: addr.to_string(),
            log,
        };
        // Up when mountd is registered and NFS answers a NULL call over TCP.
        let start = Instant::now();
        loop {
            let o = ns_try(ns, &["rpcinfo", "-t", addr, "nfs", "3"]);
            let m = ns_try(ns, &["rpcinfo", "-t", addr, "mountd", "3"]);
            if o.status.success() && m.status.success() {
                break;
            }
            if start.elapsed() > Duration::from_secs(20) {
                bail!(
                    "nfs-ganesha on {addr} not answering: {}{}\n{}\n{}",
                    text(&o),
                    text(&m),
                    nfs.ganesha.log_text(),
                    std::fs::read_to_string(&nfs.log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(nfs)
    }

    /// `nfs://ADDR/EXPORT/name` for libnfs.
    pub fn url(&self, name: &str) -> String {
        format!("nfs://{}{}/{name}", self.addr, self.export.display())
    }
}

impl Drop for Nfs {
    fn drop(&mut self) {
        if let Ok(p) = std::fs::read_to_string(&self.rpcbind_pid_file) {
            if let Ok(pid) = p.trim().parse::<u32>() {
                send_signal(pid, libc::SIGTERM);
            }
        }
        self.ganesha.terminate(Duration::from_secs(5));
        // The tmpfs on /run goes with the mount namespace (its last process).
    }
}

/// `nfs-cp SRC DST` in `ns` (either side may be an nfs:// URL).
pub fn nfs_cp(ns: &str, src: &str, dst: &str) -> Result<()> {
    ns_run(ns, &["nfs-cp", src, dst]).with_context(|| format!("nfs-cp {src} {dst}"))?;
    Ok(())
}

/// One line of `rpcinfo -p`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpcProgram {
    pub program: u32,
    pub version: u32,
    pub proto: String,
    pub port: u16,
    pub service: String,
}

/// `rpcinfo -p ADDR` from `ns`: the portmapper's registrations.
pub fn rpcinfo(ns: &str, addr: &str) -> Result<Vec<RpcProgram>> {
    let out = ns_run(ns, &["rpcinfo", "-p", addr])?;
    parse_rpcinfo(&String::from_utf8_lossy(&out.stdout))
}

pub fn parse_rpcinfo(text: &str) -> Result<Vec<RpcProgram>> {
    let mut v = Vec::new();
    for line in text.lines().skip_while(|l| !l.contains("program")).skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 {
            continue;
        }
        v.push(RpcProgram {
            program: f[0]
                .parse()
                .with_context(|| format!("rpcinfo line {line}"))?,
            version: f[1].parse()?,
            proto: f[2].to_string(),
            port: f[3].parse()?,
            service: f.get(4).unwrap_or(&"").to_string(),
        });
    }
    ensure!(!v.is_empty(), "rpcinfo listed nothing: {text}");
    Ok(v)
}

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
        let t = tag();
        let pcap = dir.join(format!("{name}-{t}.pcap"));
        let mut args =
            tcpdump_live(&["-n", "-s", "256", "-i", iface, "-w", pcap.to_str().unwrap()]);
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

/// A steady ping (every `interval`) from `ns` to `dst`; on `stop` the replies
/// tell the longest run of unanswered probes (the outage) and the total lost.
pub struct Probe {
    proc: Proc,
    interval: Duration,
    started: Instant,
    pub dst: String,
}

/// What a probe saw.
#[derive(Clone, Debug)]
pub struct Outage {
    pub sent: u64,
    pub received: u64,
    /// Longest run of consecutive lost probes, times the interval.
    pub longest_gap_ms: u64,
    /// All lost probes, times the interval.
    pub lost_ms: u64,
    /// Whether the last probes were answered (the flow recovered).
    pub recovered: bool,
}

impl std::fmt::Display for Outage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "outage {} ms (longest gap), {} ms lost in total, {}/{} answered{}",
            self.longest_gap_ms,
            self.lost_ms,
            self.received,
            self.sent,
            if self.recovered {
                ""
            } else {
                ", NOT recovered"
            }
        )
    }
}

impl Probe {
    pub fn start(ns: &str, dst: &str, interval: Duration, dir: &Path) -> Result<Probe> {
        let i = format!("{:.3}", interval.as_secs_f64());
        let proc = ns_spawn(
            ns,
            &["ping", "-n", "-i", &i, "-W", "1", dst],
            &dir.join(format!("probe-{dst}-{}.log", tag())),
        )?;
        Ok(Probe {
            proc,
            interval,
            started: Instant::now(),
            dst: dst.to_string(),
        })
    }

    /// Received so far (for waiting until the probe flow runs).
    pub fn received(&self) -> u64 {
        parse_ping_seqs(&self.proc.log_text()).len() as u64
    }

    /// Waits until `n` more replies arrive.
    pub fn wait_replies(&self, n: u64, timeout: Duration) -> Result<()> {
        let base = self.received();
        let start = Instant::now();
        while self.received() < base + n {
            ensure!(
                start.elapsed() < timeout,
                "probe to {}: no replies in {timeout:?}:\n{}",
                self.dst,
                self.proc.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Stops ping (SIGINT: it prints its summary) and measures.
    pub fn stop(mut self) -> Outage {
        send_signal(self.proc.pid(), libc::SIGINT);
        std::thread::sleep(Duration::from_millis(200));
        self.proc.terminate(Duration::from_secs(3));
        let text = self.proc.log_text();
        let mut seqs = parse_ping_seqs(&text);
        seqs.sort_unstable();
        seqs.dedup();
        let transmitted = text
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or_else(|| {
                (self.started.elapsed().as_secs_f64() / self.interval.as_secs_f64()) as u64
            });
        outage_from(&seqs, transmitted, self.interval)
    }
}

/// icmp_seq of every echo reply in ping's output.
pub fn parse_ping_seqs(text: &str) -> Vec<u64> {
    text.lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("icmp_seq="))
                .and_then(|s| s.parse().ok())
        })
        .collect()
}

/// The outage from the sorted, deduplicated replied sequence numbers (ping
/// starts at 1) out of `sent` probes. Probes sent in the last second before
/// ping stopped may still be in flight: unanswered ones there are not lost.
pub fn outage_from(seqs: &[u64], sent: u64, interval: Duration) -> Outage {
    let ms = interval.as_millis() as u64;
    let in_flight = 1000 / ms.max(1);
    let mut longest = 0u64;
    let mut lost = 0u64;
    let mut prev = 0u64;
    for &s in seqs {
        let gap = s - prev - 1;
        longest = longest.max(gap);
        lost += gap;
        prev = s;
    }
    let tail = sent.saturating_sub(prev).saturating_sub(in_flight);
    longest = longest.max(tail);
    lost += tail;
    Outage {
        sent,
        received: seqs.len() as u64,
        longest_gap_ms: longest * ms,
        lost_ms: lost * ms,
        recovered: tail == 0 && !seqs.is_empty(),
    }
}

/// A four-site lab (`scripts/lab --name NAME`) brought up for one test and
/// taken down (`down`) when the value drops, also when the test fails
/// (`CER_KEEP_LAB=1` keeps it for debugging). It uses the binaries of this
/// build (`CER_LAB_BIN_DIR`), so a test never runs cargo.
pub struct Lab {
    pub name: String,
    /// `/run/cer-lab/NAME/lab.json` as last read.
    pub state: serde_json::Value,
    script: PathBuf,
    bin_dir: PathBuf,
}

/// A site pair of the lab and the transport it uses.
#[derive(Clone, Debug)]
pub struct Pair {
    pub a: String,
    pub b: String,
    pub transport: String,
    pub tunnel_mtu: u32,
}

impl Lab {
    /// `scripts/lab --name PREFIX<tag> [extra...] up`.
    pub fn up(prefix: &str, extra: &[&str]) -> Result<Lab> {
        let name = format!("{prefix}{}", tag());
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/lab");
        let bin_dir = crate::bin("cer-dataplane")
            .parent()
            .expect("bin dir")
            .to_path_buf();
        let mut lab = Lab {
            name,
            state: serde_json::Value::Null,
            script,
            bin_dir,
        };
        let t0 = Instant::now();
        let mut args: Vec<&str> = extra.to_vec();
        args.push("up");
        let out = lab.cmd(&args).output().context("running scripts/lab up")?;
        eprintln!(
            "lab {} up in {:.1} s:\n{}",
            lab.name,
            t0.elapsed().as_secs_f64(),
            text(&out)
        );
        ensure!(
            out.status.success(),
            "scripts/lab up failed: {}",
            text(&out)
        );
        lab.reload()?;
        Ok(lab)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.script);
        c.arg("--name")
            .arg(&self.name)
            .args(args)
            .env("CER_LAB_BIN_DIR", &self.bin_dir)
            .stdin(Stdio::null());
        c
    }

    /// `scripts/lab --name NAME ARGS...`; fails with its output when it fails.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let out = self
            .cmd(args)
            .output()
            .with_context(|| format!("scripts/lab {}", args.join(" ")))?;
        let t = text(&out);
        ensure!(
            out.status.success(),
            "scripts/lab {} failed ({}): {t}",
            args.join(" "),
            out.status
        );
        Ok(t)
    }

    /// Re-reads lab.json.
    pub fn reload(&mut self) -> Result<()> {
        let p = Path::new("/run/cer-lab").join(&self.name).join("lab.json");
        self.state = serde_json::from_str(
            &std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?,
        )
        .with_context(|| format!("parsing {}", p.display()))?;
        Ok(())
    }

    pub fn site(&self, site: &str) -> &serde_json::Value {
        &self.state["sites"][site]
    }

    /// The site's workload namespace.
    pub fn wl(&self, site: &str) -> String {
        self.site(site)["netns"]["workload"]
            .as_str()
            .unwrap_or_else(|| panic!("lab.json: no workload namespace for {site}"))
            .to_string()
    }

    /// The site's own /32 (its workload address at bring-up).
    pub fn ip(&self, site: &str) -> String {
        self.site(site)["workload_ip"]
            .as_str()
            .unwrap_or_else(|| panic!("lab.json: no workload_ip for {site}"))
            .to_string()
    }

    /// The site's CER nodes (lab.json `cers[]`).
    pub fn cers(&self, site: &str) -> Vec<serde_json::Value> {
        self.site(site)["cers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Transport addresses of the site's CERs.
    pub fn cer_addrs(&self, site: &str) -> Vec<String> {
        self.cers(site)
            .iter()
            .filter_map(|c| c["transport_address"].as_str().map(str::to_string))
            .collect()
    }

    /// One CER by node name (`onprem-a`, `aws`, ...).
    pub fn node(&self, node: &str) -> Result<serde_json::Value> {
        SITES
            .iter()
            .flat_map(|s| self.cers(s))
            .find(|c| c["node"] == node)
            .with_context(|| format!("lab.json: no CER node {node}"))
    }

    /// Every site pair with its transport and tunnel MTU.
    pub fn pairs(&self) -> Vec<Pair> {
        let mut v: Vec<Pair> = self.state["pairs"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(_, p)| {
                Some(Pair {
                    a: p["sites"][0].as_str()?.to_string(),
                    b: p["sites"][1].as_str()?.to_string(),
                    transport: p["transport"].as_str()?.to_string(),
                    tunnel_mtu: p["tunnel_mtu"].as_u64()? as u32,
                })
            })
            .collect();
        v.sort_by(|x, y| (&x.a, &x.b).cmp(&(&y.a, &y.b)));
        v
    }

    /// The WAN router's namespace.
    pub fn wan_ns(&self) -> String {
        self.state["wan"]["netns"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// The WAN router's interface towards `site` (the one holding the
    /// site's WAN gateway address): every outer packet of the site crosses it.
    pub fn wan_iface(&self, site: &str) -> Result<String> {
        let gw = self.state["wan"]["router"][site]
            .as_str()
            .with_context(|| format!("lab.json: no WAN router address for {site}"))?;
        let out = ns_run(&self.wan_ns(), &["ip", "-j", "addr", "show"])?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        v.as_array()
            .into_iter()
            .flatten()
            .find(|i| {
                i["addr_info"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|a| a["local"] == gw)
            })
            .and_then(|i| i["ifname"].as_str().map(str::to_string))
            .with_context(|| format!("no interface with {gw} in {}", self.wan_ns()))
    }

    /// `cerctl ARGS... --socket <node's cer-control>`.
    pub fn cerctl(&self, node: &str, args: &[&str]) -> Result<String> {
        let n = self.node(node)?;
        let socket = n["control_socket"].as_str().context("control_socket")?;
        let cerctl = self.bin_dir.join("cerctl");
        let mut full = vec![cerctl.to_str().unwrap()];
        full.extend_from_slice(args);
        full.extend_from_slice(&["--socket", socket]);
        Ok(String::from_utf8_lossy(&sh(&full)?.stdout).into_owned())
    }

    /// One JSON query to a node's cer-control admin socket (`owners`, `capture`, ...).
    pub fn control(&self, node: &str, cmd: &str) -> Result<serde_json::Value> {
        let n = self.node(node)?;
        crate::admin(
            Path::new(n["control_socket"].as_str().context("control_socket")?),
            cmd,
        )
    }

    /// One JSON query to a node's dataplane admin socket.
    pub fn dataplane(&self, node: &str, cmd: &str) -> Result<serde_json::Value> {
        let n = self.node(node)?;
        crate::admin(
            Path::new(n["dataplane_socket"].as_str().context("dataplane_socket")?),
            cmd,
        )
    }

    /// The on-prem CER whose proxy-ARP gate is open (the VRRP master).
    pub fn vrrp_master(&self) -> Option<String> {
        self.cers("onprem").iter().find_map(|c| {
            let node = c["node"].as_str()?;
            let pa = self.dataplane(node, "proxy_arp").ok()?;
            (pa["active"] == true).then(|| node.to_string())
        })
    }

    /// A GET on a cloud site's provider emulator (from its fabric namespace).
    pub fn emulator_get(&self, site: &str, path: &str) -> Result<serde_json::Value> {
        let emu = &self.site(site)["emulator"];
        let url = format!("{}{path}", emu["url"].as_str().context("emulator url")?);
        let out = ns_run(
            emu["netns"].as_str().context("emulator netns")?,
            &["curl", "-sS", "--max-time", "10", &url],
        )?;
        serde_json::from_slice(&out.stdout)
            .with_context(|| format!("{url}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// A POST with a JSON body to a cloud site's provider emulator (e.g. `/_emulator/faults`).
    pub fn emulator_post(&self, site: &str, path: &str, body: &str) -> Result<serde_json::Value> {
        let emu = &self.site(site)["emulator"];
        let url = format!("{}{path}", emu["url"].as_str().context("emulator url")?);
        let out = ns_run(
            emu["netns"].as_str().context("emulator netns")?,
            &[
                "curl",
                "-sS",
                "--max-time",
                "10",
                "-X",
                "POST",
                "-H",
                "content-type: application/json",
                "--data",
                body,
                &url,
            ],
        )?;
        serde_json::from_slice(&out.stdout)
            .with_context(|| format!("{url}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// Runs `scripts/lab status` (for failure messages).
    pub fn status(&self) -> String {
        self.cmd(&["status"])
            .output()
            .map(|o| text(&o))
            .unwrap_or_default()
    }
}

/// The lab's sites.
pub const SITES: [&str; 4] = ["onprem", "aws", "azure", "oci"];

impl Drop for Lab {
    fn drop(&mut self) {
        if std::env::var_os("CER_KEEP_LAB").is_some() {
            eprintln!("CER_KEEP_LAB: leaving lab {} up", self.name);
            return;
        }
        let t0 = Instant::now();
        match self.cmd(&["down"]).output() {
            Ok(o) if o.status.success() => {
                eprintln!(
                    "lab {} down in {:.1} s",
                    self.name,
                    t0.elapsed().as_secs_f64()
                )
            }
            Ok(o) => eprintln!("lab {} down failed: {}", self.name, text(&o)),
            Err(e) => eprintln!("lab {} down: {e}", self.name),
        }
    }
}

/// Checks the outer packets of one tunnel kind in a WAN capture: every
/// packet from a sender CER address to a receiver CER address is well-formed
/// `KIND` (GRE with the key, IPIP, FOU to its port, GUE v0 to its port); the
/// inner headers of ICMP echo requests are counted by inner src/dst, and no
/// inner address lies outside the pool. Prints `whole matched other`.
pub const OUTER_CHECK: &str = include_str!("../scripts/outer_check.py");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpcinfo_lines() {
        let t = "   program vers proto   port  service\n    100000    4   tcp    111  portmapper\n    100003    3   tcp   2049  nfs\n";
        let v = parse_rpcinfo(t).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].service, "nfs");
        assert_eq!(v[1].port, 2049);
    }

    #[test]
    fn outage_counts_the_longest_gap() {
        let seqs: Vec<u64> = (1..=10).chain(21..=60).collect();
        let o = outage_from(&seqs, 80, Duration::from_millis(50));
        // 80 sent, the last 20 (1 s) may be in flight: gap 11..=20 only.
        assert_eq!(o.longest_gap_ms, 500);
        assert_eq!(o.lost_ms, 500);
        assert!(o.recovered);
        let dead: Vec<u64> = (1..=10).collect();
        let o = outage_from(&dead, 80, Duration::from_millis(50));
        assert!(!o.recovered);
        assert_eq!(o.longest_gap_ms, 50 * 50);
    }

    #[test]
    fn ping_lines() {
        let t = "PING 10.0.0.1 (10.0.0.1) 56(84) bytes of data.\n64 bytes from 10.0.0.1: icmp_seq=1 ttl=64 time=0.05 ms\n64 bytes from 10.0.0.1: icmp_seq=3 ttl=64 time=0.05 ms\n";
        assert_eq!(parse_ping_seqs(t), vec![1, 3]);
    }
}
