//! `cerctl dataplane capture` end to end: two cer-dataplanes with an IPIP
//! tunnel between two host namespaces. While hA pings hB, a capture on A's
//! `tunnel:1:inner` and `tunnel:1:outer` (cerctl alone, no tcpdump) is read
//! by tshark: inner src/dst are the workload addresses, outer src/dst the
//! CER transport addresses, as many inner as outer packets (no NAT). Then
//! the bad inputs: a filter that does not compile, a point that does not
//! exist, a second capture at once, cerctl killed mid-capture, a full disk.
//!
//!   hA 10.1.0.10 -- lan [dpA] wan 10.10.0.1 ===veth=== 10.10.0.2 wan [dpB] lan -- hB 10.3.0.10

use anyhow::{Context, Result};
use cer_e2e::*;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

struct Topo {
    _a: Proc,
    _b: Proc,
    ha: Netns,
    _hb: Netns,
    _da: Netns,
    _db: Netns,
    admin_a: std::path::PathBuf,
    scratch: Scratch,
}

fn up(ns: &Netns, ifs: &[&str]) -> Result<()> {
    for i in ifs {
        ns.run(&[
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{i}.disable_ipv6=1"),
        ])?;
        ns.run(&["ip", "link", "set", i, "up"])?;
    }
    Ok(())
}

fn host(ns: &Netns, cidr: &str, gw: &str) -> Result<()> {
    ns.addr("eth0", cidr)?;
    ns.run(&["ip", "route", "add", "default", "via", gw])?;
    ns.run(&["ethtool", "-K", "eth0", "tx", "off"])?;
    Ok(())
}

fn config(
    dir: &Path,
    name: &str,
    lan: (&str, &str),
    wan: (&str, &str),
    t: Tunnel,
) -> Result<std::path::PathBuf> {
    DataplaneConfig::new(name, lan.1.split('/').next().unwrap())
        .admin_socket(&dir.join(format!("{name}-admin.sock")))
        .feed_socket(&dir.join(format!("{name}-feed.sock")))
        .file_prefix(&format!("cap{name}{}", tag()))
        .port(Port::af_packet("lan", lan.0, lan.1))
        .port(Port::af_packet("wan", wan.0, wan.1))
        .tunnel(t)
        .write(&dir.join(format!("{name}.toml")))
}

fn feed(socket: &Path, args: &[&str]) -> Result<()> {
    let cerctl = bin("cerctl");
    let mut full = vec![
        cerctl.to_str().unwrap(),
        "dataplane",
        "feed",
        "--socket",
        socket.to_str().unwrap(),
    ];
    full.extend_from_slice(args);
    sh(&full)?;
    Ok(())
}

impl Topo {
    fn new() -> Result<Topo> {
        let scratch = Scratch::new("dpcap")?;
        let t = tag();
        let (la, wa, wb, lb) = (
            format!("la{t}"),
            format!("wa{t}"),
            format!("wb{t}"),
            format!("lb{t}"),
        );
        let ha = Netns::new("capha")?;
        let da = Netns::new("capda")?;
        let db = Netns::new("capdb")?;
        let hb = Netns::new("caphb")?;
        veth(&la, &da, "eth0", &ha)?;
        veth(&wa, &da, &wb, &db)?;
        veth(&lb, &db, "eth0", &hb)?;
        up(&da, &[&la, &wa])?;
        up(&db, &[&wb, &lb])?;
        host(&ha, "10.1.0.10/24", "10.1.0.1")?;
        host(&hb, "10.3.0.10/24", "10.3.0.1")?;
        let dir = &scratch.path;
        let ca = config(
            dir,
            "a",
            (&la, "10.1.0.1/24"),
            (&wa, "10.10.0.1/24"),
            Tunnel::new(1, "ipip", "10.10.0.1", "10.10.0.2"),
        )?;
        let cb = config(
            dir,
            "b",
            (&lb, "10.3.0.1/24"),
            (&wb, "10.10.0.2/24"),
            Tunnel::new(1, "ipip", "10.10.0.2", "10.10.0.1"),
        )?;
        let a = start_dataplane(&da, &ca, &scratch.file("a.log"))?;
        let b = start_dataplane(&db, &cb, &scratch.file("b.log"))?;
        feed(
            &scratch.file("a-feed.sock"),
            &["endpoint-set", "10.3.0.10", "--tunnel", "1"],
        )?;
        feed(
            &scratch.file("b-feed.sock"),
            &["endpoint-set", "10.1.0.10", "--tunnel", "1"],
        )?;
        Ok(Topo {
            _a: a,
            _b: b,
            ha,
            _hb: hb,
            _da: da,
            _db: db,
            admin_a: scratch.file("a-admin.sock"),
            scratch,
        })
    }

    /// `cerctl dataplane --admin-socket A capture ARGS...`, as a command line.
    fn capture_args(&self, args: &[&str]) -> Vec<String> {
        let mut v = vec![
            bin("cerctl").display().to_string(),
            "dataplane".into(),
            "--admin-socket".into(),
            self.admin_a.display().to_string(),
            "capture".into(),
        ];
        v.extend(args.iter().map(|s| s.to_string()));
        v
    }

    fn capture(&self, args: &[&str]) -> Output {
        let v = self.capture_args(args);
        std::process::Command::new(&v[0])
            .args(&v[1..])
            .output()
            .expect("running cerctl")
    }

    fn capture_bg(&self, args: &[&str], log: &str) -> Result<Proc> {
        let v = self.capture_args(args);
        let child = std::process::Command::new(&v[0])
            .args(&v[1..])
            .stdout(std::fs::File::create(self.scratch.file(log))?)
            .stderr(std::fs::File::create(
                self.scratch.file(&format!("{log}.err")),
            )?)
            .spawn()?;
        Ok(Proc::from_child(
            child,
            &self.scratch.file(&format!("{log}.err")),
        ))
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `tshark -r FILE` fields: (interface name, ip.src list, ip.dst list) per packet.
fn tshark_rows(file: &Path) -> Result<Vec<(String, String, String)>> {
    let o = sh(&[
        "tshark",
        "-r",
        file.to_str().unwrap(),
        "-T",
        "fields",
        "-E",
        "separator=/t",
        "-e",
        "frame.interface_name",
        "-e",
        "ip.src",
        "-e",
        "ip.dst",
    ])?;
    Ok(String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (
                f.first().unwrap_or(&"").to_string(),
                f.get(1).unwrap_or(&"").to_string(),
                f.get(2).unwrap_or(&"").to_string(),
            )
        })
        .collect())
}

#[test]
fn capture_inner_and_outer_proves_no_nat() -> Result<()> {
    let _g = serial();
    require_root();
    let t = Topo::new()?;
    assert!(
        t.ha.ping_until("10.3.0.10", Duration::from_secs(10)),
        "hA -> hB over the tunnel"
    );

    // Inner and outer of tunnel 1 while 10 pings flow: 40 packets.
    let file = t.scratch.file("tunnel.pcapng");
    let mut cap = t.capture_bg(
        &[
            "--point",
            "tunnel:1:inner",
            "--point",
            "tunnel:1:outer",
            "--filter",
            "icmp or proto 4",
            "--count",
            "40",
            "--duration",
            "20s",
            "-w",
            file.to_str().unwrap(),
        ],
        "cap1",
    )?;
    cap.wait_for_log("capturing on", Duration::from_secs(5))?;
    assert!(t.ha.ping("10.3.0.10", 10));
    let t0 = Instant::now();
    while pid_alive(cap.pid()) && t0.elapsed() < Duration::from_secs(25) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = cap.log_text();
    assert!(
        log.contains("40 packets written") && log.contains("0 packets dropped by the capture ring"),
        "{log}"
    );
    let rows = tshark_rows(&file)?;
    let inner: Vec<_> = rows.iter().filter(|r| r.0 == "tunnel 1 inner").collect();
    let outer: Vec<_> = rows.iter().filter(|r| r.0 == "tunnel 1 outer").collect();
    eprintln!(
        "inner {} outer {}: {:?}",
        inner.len(),
        outer.len(),
        &rows[..4.min(rows.len())]
    );
    assert_eq!(inner.len(), 20, "{rows:?}");
    assert_eq!(outer.len(), inner.len(), "as many outer as inner packets");
    let hosts = ["10.1.0.10", "10.3.0.10"];
    for r in &inner {
        assert!(
            hosts.contains(&r.1.as_str()) && hosts.contains(&r.2.as_str()) && r.1 != r.2,
            "inner {r:?}"
        );
    }
    for r in &outer {
        // IPIP: tshark lists the outer, then the inner addresses.
        let src: Vec<&str> = r.1.split(',').collect();
        let dst: Vec<&str> = r.2.split(',').collect();
        assert!(
            ["10.10.0.1", "10.10.0.2"].contains(&src[0])
                && ["10.10.0.1", "10.10.0.2"].contains(&dst[0]),
            "outer {r:?}"
        );
        assert!(
            src.len() == 2 && hosts.contains(&src[1]) && hosts.contains(&dst[1]),
            "inner of outer {r:?}"
        );
    }
    drop(cap);

    // A port point through stdout (`-w -`) piped into tshark.
    let v = t.capture_args(&[
        "--point",
        "port:lan:rx",
        "--filter",
        "icmp and host 10.1.0.10",
        "-c",
        "3",
        "-w",
        "-",
    ]);
    let mut c = std::process::Command::new(&v[0])
        .args(&v[1..])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let pinger = std::thread::spawn({
        let ha = t.ha.name.clone();
        move || {
            sh(&[
                "ip",
                "netns",
                "exec",
                &ha,
                "ping",
                "-c",
                "6",
                "-i",
                "0.2",
                "10.3.0.10",
            ])
        }
    });
    let mut out = Vec::new();
    std::io::Read::read_to_end(c.stdout.as_mut().context("stdout")?, &mut out)?;
    c.wait()?;
    let _ = pinger.join();
    let piped = t.scratch.file("stdout.pcapng");
    std::fs::write(&piped, &out)?;
    let rows = tshark_rows(&piped)?;
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(
        rows.iter()
            .all(|r| r.0 == "port lan rx" && r.1 == "10.1.0.10"),
        "{rows:?}"
    );

    // Bad input, each named.
    let o = t.capture(&[
        "--point",
        "port:lan:rx",
        "--filter",
        "host 10.1.0.999",
        "-w",
        "/dev/null",
    ]);
    assert!(
        !o.status.success() && text(&o).contains("\"host 10.1.0.999\" does not compile"),
        "{}",
        text(&o)
    );
    let o = t.capture(&["--point", "port:dmz:rx", "-w", "/dev/null"]);
    assert!(
        !o.status.success()
            && text(&o).contains("no port named \"dmz\"")
            && text(&o).contains("tunnel:1:outer"),
        "{}",
        text(&o)
    );
    let o = t.capture(&["--point", "tunnel:9:inner", "-w", "/dev/null"]);
    assert!(text(&o).contains("no tunnel 9"), "{}", text(&o));

    // One capture at a time; a killed cerctl frees it.
    let mut first = t.capture_bg(&["--point", "port:wan:tx", "-w", "/dev/null"], "first")?;
    first.wait_for_log("capturing on", Duration::from_secs(5))?;
    let o = t.capture(&["--point", "port:wan:rx", "-w", "/dev/null"]);
    assert!(text(&o).contains("already running"), "{}", text(&o));
    send_signal(first.pid(), libc::SIGKILL);
    wait_until(
        "the killed capture's claim is freed",
        Duration::from_secs(5),
        || capture_is_free(&t),
    )?;
    drop(first);

    // A full disk: the capture stops with the cause named; forwarding goes on.
    let small = t.scratch.file("small");
    std::fs::create_dir_all(&small)?;
    sh(&[
        "mount",
        "-t",
        "tmpfs",
        "-o",
        "size=64k",
        "cerdpcap",
        small.to_str().unwrap(),
    ])?;
    let _umount = Unmount(small.clone());
    let mut full = t.capture_bg(
        &[
            "--point",
            "port:lan:rx",
            "--point",
            "port:lan:tx",
            "-d",
            "20s",
            "-w",
            small.join("cap.pcapng").to_str().unwrap(),
        ],
        "full",
    )?;
    full.wait_for_log("capturing on", Duration::from_secs(5))?;
    let _ =
        t.ha.try_run(&["ping", "-c", "100", "-i", "0.01", "-s", "1400", "10.3.0.10"]);
    let t0 = Instant::now();
    while pid_alive(full.pid()) && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = full.log_text();
    assert!(
        log.contains("No space left on device") && log.contains("capture stopped"),
        "{log}"
    );
    assert!(t.ha.ping("10.3.0.10", 3), "forwarding after the full disk");
    wait_until(
        "the capture ended at the dataplane",
        Duration::from_secs(5),
        || capture_is_free(&t),
    )?;
    Ok(())
}

/// Unmounts the test's tmpfs, even on failure.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = sh(&["umount", self.0.to_str().unwrap_or_default()]);
    }
}

/// A one-packet, 300 ms capture succeeds: no other capture holds the dataplane.
fn capture_is_free(t: &Topo) -> bool {
    t.capture(&[
        "--point",
        "port:wan:rx",
        "-c",
        "1",
        "-d",
        "300ms",
        "-w",
        "/dev/null",
    ])
    .status
    .success()
}
