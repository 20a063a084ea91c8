//! RFC 1812 hygiene end to end: the real `cer-dataplane` on af_packet veths
//! in network namespaces gets frames a router must not forward, built by
//! scapy (`tests/scripts/rfc1812_frames.py`), from a LAN host and from a
//! tunnel peer on the WAN. Each frame must move its named drop counter and
//! nothing of it may reach the far side (both hosts capture what arrives,
//! every frame carries a marker); no ICMP error may leave the router. Then
//! `feed neighbor-del` on a learned entry, and a fragment flood against the
//! kernel reassembly in front of af_packet ports: visible in `show ports`,
//! logged, and over within `kernel_reassembly_secs`.
//!
//!   h1 10.1.0.10 --lan (urpf strict)-- [ cer-dataplane ] --wan-- h2 10.2.0.20
//!                                       default route via h2; FOU, GUE and
//!                                       IPIP tunnels to h2; 10.77.0.9 behind FOU

use anyhow::{bail, Context, Result};
use cer_e2e::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Kernel reassembly timeout the dataplane sets in its namespace here.
const KERNEL_REASSEMBLY_SECS: u64 = 3;

struct Topo {
    // Dropped first: the dataplane stops before its namespace goes.
    dataplane: Proc,
    dp: Netns,
    h1: Netns,
    h2: Netns,
    scratch: Scratch,
    admin: PathBuf,
    feed: PathBuf,
    lan_mac: String,
    wan_mac: String,
}

fn script() -> PathBuf {
    test_script("rfc1812_frames.py")
}

impl Topo {
    fn new() -> Result<Topo> {
        let scratch = Scratch::new("rfc1812")?;
        let dp = Netns::new("rd")?;
        let h1 = Netns::new("r1")?;
        let h2 = Netns::new("r2")?;
        let t = tag();
        let (dl, dw) = (format!("rl{t}"), format!("rw{t}"));
        veth(&dl, &dp, "eth0", &h1)?;
        veth(&dw, &dp, "eth0", &h2)?;
        for i in [&dl, &dw] {
            dp.run(&[
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{i}.disable_ipv6=1"),
            ])?;
            dp.run(&["ip", "link", "set", i, "up"])?;
        }
        for (h, addr, gw) in [
            (&h1, "10.1.0.10/24", "10.1.0.1"),
            (&h2, "10.2.0.20/24", "10.2.0.1"),
        ] {
            h.run(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])?;
            h.addr("eth0", addr)?;
            h.run(&["ip", "route", "add", "default", "via", gw])?;
            h.run(&["ethtool", "-K", "eth0", "tx", "off"])?;
        }
        let admin = scratch.file("admin.sock");
        let feed = scratch.file("feed.sock");
        let mut cfg = DataplaneConfig::new(&format!("rfc{t}"), "10.2.0.1")
            .admin_socket(&admin)
            .feed_socket(&feed)
            .arp_retry_ms(200)
            .kernel_reassembly_secs(KERNEL_REASSEMBLY_SECS as u32)
            .file_prefix(&format!("rfc{t}"))
            .port(Port::af_packet("lan", &dl, "10.1.0.1/24").urpf("strict"))
            .port(Port::af_packet("wan", &dw, "10.2.0.1/24"))
            .route("0.0.0.0/0", &["10.2.0.20"]);
        for (id, kind) in [(1, "fou"), (2, "gue"), (3, "ipip")] {
            cfg = cfg.tunnel(Tunnel::new(id, kind, "10.2.0.1", "10.2.0.20"));
        }
        let cfg_path = cfg.write(&scratch.file("node.toml"))?;
        let dataplane = start_dataplane(&dp, &cfg_path, &scratch.file("dataplane.log"))?;
        let ports = admin_retry(&admin, "ports")?;
        let mac = |i: usize| ports[i]["mac"].as_str().unwrap_or_default().to_string();
        let (lan_mac, wan_mac) = (mac(0), mac(1));
        Ok(Topo {
            dataplane,
            dp,
            h1,
            h2,
            scratch,
            admin,
            feed,
            lan_mac,
            wan_mac,
        })
    }

    fn feed(&self, args: &[&str]) -> Result<()> {
        let cerctl = bin("cerctl");
        let mut full = vec![
            cerctl.to_str().unwrap(),
            "dataplane",
            "--admin-socket",
            self.admin.to_str().unwrap(),
            "feed",
            "--socket",
            self.feed.to_str().unwrap(),
        ];
        full.extend_from_slice(args);
        sh(&full)?;
        Ok(())
    }

    /// Runs the frame script in `ns` (scapy needs the system python).
    fn frames(&self, ns: &Netns, args: &[&str]) -> Result<String> {
        let s = script();
        let mut full = vec!["/usr/bin/python3", s.to_str().unwrap()];
        full.extend_from_slice(args);
        let out = ns.run(&full)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn drops(&self) -> std::collections::BTreeMap<String, u64> {
        let mut m = std::collections::BTreeMap::new();
        if let Ok(cores) = admin(&self.admin, "counters") {
            for c in cores.as_array().into_iter().flatten() {
                for (k, v) in c["drops"].as_object().into_iter().flatten() {
                    *m.entry(k.clone()).or_insert(0) += v.as_u64().unwrap_or(0);
                }
            }
        }
        m
    }

    fn dump(&self) -> String {
        format!(
            "dataplane log:\n{}\ncounters: {}",
            self.dataplane.log_text(),
            admin(&self.admin, "counters")
                .map(|v| v.to_string())
                .unwrap_or_default()
        )
    }

    /// The dataplane's neighbor entries as (port, ip).
    fn neighbors(&self) -> Vec<(String, String)> {
        admin(&self.admin, "neighbors")
            .map(|n| {
                n.as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| {
                        (
                            e["port"].as_str().unwrap_or("").to_string(),
                            e["ip"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The kernel reassembly figures on the LAN port (`show ports`).
    fn kernel_reassembly(&self) -> Result<serde_json::Value> {
        let ports = admin(&self.admin, "ports")?;
        let k = ports[0]["kernel_reassembly"].clone();
        if k.is_null() {
            bail!("no kernel_reassembly on the af_packet port: {ports}");
        }
        Ok(k)
    }
}

/// The admin socket answers shortly after `ready`; retry briefly.
fn admin_retry(socket: &Path, cmd: &str) -> Result<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match admin(socket, cmd) {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// A capture of what arrives on a host's eth0, for the frame script's summary.
struct Capture {
    proc: Proc,
    pcap: PathBuf,
}

impl Capture {
    fn start(ns: &Netns, scratch: &Scratch, name: &str) -> Result<Capture> {
        let pcap = scratch.file(&format!("{name}.pcap"));
        let mut proc = ns.spawn(
            &cer_e2e::apps::tcpdump_live(&[
                "-i",
                "eth0",
                "-Q",
                "in",
                "-n",
                "-w",
                pcap.to_str().unwrap(),
            ]),
            &scratch.file(&format!("{name}.tcpdump.log")),
        )?;
        proc.wait_for_log("listening on", Duration::from_secs(5))?;
        Ok(Capture { proc, pcap })
    }

    /// What the capture holds so far: (markers seen, ICMP errors from the
    /// router). tcpdump writes each packet as it comes (immediate mode, `-U`).
    fn summary(&self, t: &Topo, ns: &Netns) -> Result<(BTreeSet<String>, u64)> {
        let out = t.frames(
            ns,
            &[
                "summary",
                self.pcap.to_str().unwrap(),
                "10.1.0.1",
                "10.2.0.1",
            ],
        )?;
        let v: serde_json::Value =
            serde_json::from_str(out.trim()).with_context(|| format!("summary: {out}"))?;
        let markers = v["markers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m.as_str().map(String::from))
            .collect();
        Ok((markers, v["icmp_errors_from_router"].as_u64().unwrap_or(0)))
    }

    /// Waits (up to `timeout`) until the capture holds every marker of
    /// `controls`, the frames sent last on their path: the frames sent
    /// before them on the same path have had their chance to arrive too. A
    /// fixed sleep was not enough: without immediate mode libpcap handed
    /// tcpdump the frames up to 1 s late, a TPACKET_V3 block at a time, and
    /// a stop lost the block it was filling (see `apps::TCPDUMP_LIVE`).
    fn wait_for(&self, t: &Topo, ns: &Netns, controls: &[&str], timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let (seen, _) = self.summary(t, ns)?;
            // Past the deadline the caller's assertion names what is missing.
            if controls.iter().all(|c| seen.contains(*c)) || Instant::now() > deadline {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the capture; returns (markers seen, ICMP errors from the router).
    fn finish(mut self, t: &Topo, ns: &Netns) -> Result<(BTreeSet<String>, u64)> {
        self.proc.terminate(Duration::from_secs(5));
        self.summary(t, ns)
    }
}

/// (case in the frame script, drop counter it must move).
const FROM_LAN: &[(&str, &str)] = &[
    ("src-net0", "ipv4_martian_source"),
    ("src-linklocal", "ipv4_martian_source"),
    ("src-loopback", "ipv4_martian_source"),
    ("src-other-port-broadcast", "ipv4_martian_source"),
    ("src-multicast", "ipv4_martian_source"),
    ("src-router", "ipv4_source_is_router"),
    ("dst-loopback", "ipv4_martian_destination"),
    ("dst-net0", "ipv4_martian_destination"),
    ("dst-linklocal", "ipv4_martian_destination"),
    ("dst-directed-broadcast", "ipv4_directed_broadcast"),
    ("l2-broadcast-unicast-ip", "ipv4_unicast_in_l2_broadcast"),
    (
        "l2-broadcast-unicast-ip-ttl1",
        "ipv4_unicast_in_l2_broadcast",
    ),
    ("lsrr", "ipv4_source_route"),
    ("ssrr", "ipv4_source_route"),
    ("urpf-spoofed", "ipv4_urpf_strict_failed"),
    ("arp-sender-lan-broadcast", "arp_bad_sender"),
    ("arp-sender-loopback", "arp_bad_sender"),
];

const FROM_WAN: &[(&str, &str)] = &[
    ("fou-udp-length-8", "tunnel_udp_bad_length"),
    ("fou-udp-length-short", "tunnel_udp_bad_length"),
    ("gue-udp-length-long", "tunnel_udp_bad_length"),
    ("hairpin-into-tunnel", "tunnel_hairpin"),
    ("hairpin-to-peer", "tunnel_hairpin"),
    ("inner-src-router", "ipv4_source_is_router"),
    ("arp-sender-wan-broadcast", "arp_bad_sender"),
];

/// Sends `cases` from `ns` to `mac` and checks each counter moved by exactly
/// the number of cases naming it (within a few seconds).
fn send_and_count(t: &Topo, ns: &Netns, mac: &str, cases: &[(&str, &str)]) -> Result<()> {
    let before = t.drops();
    let mut want: std::collections::BTreeMap<&str, u64> = Default::default();
    for (_, counter) in cases {
        *want.entry(counter).or_insert(0) += 1;
    }
    let mut args = vec!["send", "eth0", mac];
    args.extend(cases.iter().map(|(c, _)| *c));
    t.frames(ns, &args)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = t.drops();
        let moved =
            |c: &str| now.get(c).copied().unwrap_or(0) - before.get(c).copied().unwrap_or(0);
        let done = want.iter().all(|(c, n)| moved(c) >= *n);
        if done || Instant::now() > deadline {
            for (c, n) in &want {
                let names: Vec<&str> = cases
                    .iter()
                    .filter(|(_, x)| x == c)
                    .map(|(case, _)| *case)
                    .collect();
                assert_eq!(moved(c), *n, "{c} for {names:?}\n{}", t.dump());
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn frames_a_router_must_not_forward_are_dropped_by_name() -> Result<()> {
    let _g = serial();
    require_root();
    let t = Topo::new()?;
    // Both hosts resolved (the dataplane learns them from their ARP).
    assert!(
        t.h1.ping_until("10.2.0.20", Duration::from_secs(10)),
        "h1 -> h2\n{}",
        t.dump()
    );
    t.feed(&["endpoint-set", "10.77.0.9", "--tunnel", "1"])?;
    let cap1 = Capture::start(&t.h1, &t.scratch, "h1")?;
    let cap2 = Capture::start(&t.h2, &t.scratch, "h2")?;

    send_and_count(&t, &t.h1, &t.lan_mac, FROM_LAN)?;
    send_and_count(&t, &t.h2, &t.wan_mac, FROM_WAN)?;
    // Controls, which must arrive: plain data from h1, a record-route option
    // (it does not steer the packet), a well-formed FOU packet to h1.
    t.frames(
        &t.h1,
        &["send", "eth0", &t.lan_mac, "control", "record-route"],
    )?;
    t.frames(&t.h2, &["send", "eth0", &t.wan_mac, "fou-control"])?;
    cap1.wait_for(&t, &t.h1, &["fou-control"], Duration::from_secs(10))?;
    cap2.wait_for(
        &t,
        &t.h2,
        &["control", "record-route"],
        Duration::from_secs(10),
    )?;
    // And a moment for anything that would trail them (ICMP errors).
    std::thread::sleep(Duration::from_millis(300));

    let (at_h1, icmp_h1) = cap1.finish(&t, &t.h1)?;
    let (at_h2, icmp_h2) = cap2.finish(&t, &t.h2)?;
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(at_h2, set(&["control", "record-route"]), "{}", t.dump());
    assert_eq!(at_h1, set(&["fou-control"]), "{}", t.dump());
    assert_eq!(
        (icmp_h1, icmp_h2),
        (0, 0),
        "ICMP errors from the router reached a host"
    );
    let events = |name: &str| counter(&t.admin, "events", name);
    assert_eq!(events("icmp_error_sent"), 0, "{}", t.dump());

    // No neighbor was learned for a broadcast or loopback sender.
    let n = t.neighbors();
    for bad in ["10.1.0.255", "127.0.0.1", "10.2.0.255"] {
        assert!(!n.iter().any(|(_, ip)| ip == bad), "{bad} learned: {n:?}");
    }
    // feed neighbor-del removes a learned entry.
    assert!(
        n.contains(&("lan".to_string(), "10.1.0.10".to_string())),
        "{n:?}"
    );
    t.feed(&["neighbor-del", "lan", "10.1.0.10"])?;
    let n = t.neighbors();
    assert!(
        !n.iter().any(|(_, ip)| ip == "10.1.0.10"),
        "neighbor-del left the learned entry: {n:?}"
    );
    // Forwarding to h1 resolves it again.
    assert!(
        t.h2.ping_until("10.1.0.10", Duration::from_secs(5)),
        "{}",
        t.dump()
    );
    Ok(())
}

/// Pings `dst` with `size`-byte payloads (fragmented by the sender at its
/// 1500-byte MTU) once; true if answered within a second.
fn fragmented_ping(from: &Netns, dst: &str, size: u32) -> bool {
    from.try_run(&["ping", "-c", "1", "-W", "1", "-s", &size.to_string(), dst])
        .status
        .success()
}

#[test]
fn a_fragment_flood_against_kernel_reassembly_is_visible_and_bounded() -> Result<()> {
    let _g = serial();
    require_root();
    let mut t = Topo::new()?;
    // A small fragment memory in the dataplane's namespace, so a short
    // flood fills it (4 MiB by default; the behaviour is the same).
    t.dp.run(&["sysctl", "-qw", "net.ipv4.ipfrag_low_thresh=196608"])?;
    t.dp.run(&["sysctl", "-qw", "net.ipv4.ipfrag_high_thresh=262144"])?;
    assert!(
        t.h1.ping_until("10.2.0.20", Duration::from_secs(10)),
        "{}",
        t.dump()
    );
    // Valid fragmented datagrams pass (the kernel reassembles them for the
    // af_packet socket, the dataplane fragments them again).
    assert!(fragmented_ping(&t.h1, "10.2.0.20", 4000), "{}", t.dump());
    let k0 = t.kernel_reassembly()?;
    assert_eq!(k0["scope"], "netns", "{k0}");
    assert_eq!(k0["timeout_secs"], KERNEL_REASSEMBLY_SECS, "{k0}");
    assert!(k0["reassembled"].as_u64().unwrap_or(0) >= 1, "{k0}");
    let failed0 = k0["failed"].as_u64().unwrap_or(0);

    // 2000 first fragments that never complete, then at once a valid one.
    t.frames(
        &t.h1,
        &[
            "flood",
            "eth0",
            &t.lan_mac,
            "10.1.0.10",
            "10.2.0.20",
            "2000",
        ],
    )?;
    let flood_end = Instant::now();
    let blackholed = !fragmented_ping(&t.h1, "10.2.0.20", 4000);
    let k1 = t.kernel_reassembly()?;
    let failed1 = k1["failed"].as_u64().unwrap_or(0);
    assert!(
        failed1 > failed0 + 100,
        "the kernel's reassembly failures are not visible: {k0} -> {k1}"
    );
    assert!(
        k1["memory_bytes"].as_u64().unwrap_or(0) > 0,
        "fragment memory in use: {k1}"
    );
    eprintln!("after the flood: {k1} (valid fragmented ping black-holed: {blackholed})");
    // Logged (the manager samples once a second).
    t.dataplane.wait_for_log(
        "kernel reassembly in front of the af_packet ports failed",
        Duration::from_secs(5),
    )?;
    // Bounded: fragmented traffic flows again within the timeout set for
    // the namespace (the flood's queues expire at most that long after it
    // ended), plus a probe period (1.2 s) and some scheduling slack on a
    // shared machine; the kernel's default would be 30 s.
    let mut ok_after = None;
    while flood_end.elapsed() < Duration::from_secs(KERNEL_REASSEMBLY_SECS + 6) {
        if fragmented_ping(&t.h1, "10.2.0.20", 4000) {
            ok_after = Some(flood_end.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let ok_after = ok_after.with_context(|| {
        format!(
            "fragmented pings still black-holed {:?} after the flood: {}",
            flood_end.elapsed(),
            t.kernel_reassembly()
                .map(|k| k.to_string())
                .unwrap_or_default()
        )
    })?;
    eprintln!("fragmented ping answered again {ok_after:?} after the flood");
    assert!(
        ok_after <= Duration::from_secs(KERNEL_REASSEMBLY_SECS + 3),
        "took {ok_after:?}"
    );
    // The namespace's ipfrag_time goes back at exit.
    let code = t.dataplane.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{}", t.dataplane.log_text());
    let time = t.dp.run(&["sysctl", "-n", "net.ipv4.ipfrag_time"])?;
    assert_eq!(String::from_utf8_lossy(&time.stdout).trim(), "30");
    Ok(())
}
