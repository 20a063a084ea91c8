//! Acceptance suite of issue 7 on the four-site lab (`scripts/lab`): across
//! site pairs so that every transport is covered - ping; no NAT proven by
//! captures at the inner (workload) and outer (WAN) observation points; FTP
//! active and passive; NFS v3; RPC (rpcinfo); 100 MB bulk with sha256; DF and
//! no-DF PMTU probes around each tunnel MTU; the TCP MSS the far end sees.
//! `protocol_peers_on_a_veth_pair` checks the peers themselves without the lab.

use anyhow::{ensure, Context, Result};
use cer_e2e::apps::*;
use cer_e2e::*;
use std::time::{Duration, Instant};

/// The protocol peers work between two plain namespaces (no CER): a failure
/// here is the harness, not the product.
#[test]
fn protocol_peers_on_a_veth_pair() -> Result<()> {
    require_root();
    let t0 = Instant::now();
    let scratch = Scratch::new("apps")?;
    let dir = &scratch.path;
    let a = Netns::new("pa")?;
    let b = Netns::new("pb")?;
    veth("eth0", &a, "eth0", &b)?;
    a.addr("eth0", "10.9.0.1/24")?;
    b.addr("eth0", "10.9.0.2/24")?;
    let (ca, cb) = ("10.9.0.1", "10.9.0.2");

    // FTP both modes; the server log shows the client address it saw.
    let ftp = Ftp::start(&b.name, dir, cb)?;
    let src = ftp.root.join("f.bin");
    random_file(&src, 300_000)?;
    for mode in [FtpMode::Passive, FtpMode::Active] {
        let got = scratch.file(&format!("ftp-{mode:?}.bin"));
        ftp_get(&a.name, ca, cb, "f.bin", mode, &got)?;
        assert_eq!(sha256_file(&got)?, sha256_file(&src)?, "ftp {mode:?}");
    }
    let log = ftp.log_text();
    assert!(log.contains(&format!("CONNECT: Client \"{ca}\"")), "{log}");
    assert!(
        log.contains("PORT 10,9,0,1,"),
        "active mode used PORT: {log}"
    );
    assert!(
        log.contains("227 Entering Passive Mode (10,9,0,2,"),
        "{log}"
    );

    // NFS v3 both ways, RPC registrations.
    let nfs = Nfs::start(&b.name, dir, cb)?;
    let progs = rpcinfo(&a.name, cb)?;
    for (p, svc) in [(100000, "portmapper"), (100003, "nfs"), (100005, "mountd")] {
        assert!(
            progs.iter().any(|r| r.program == p && r.proto == "tcp"),
            "rpcinfo -p {cb}: no {svc}: {progs:?}"
        );
    }
    let up = scratch.file("up.bin");
    random_file(&up, 200_000)?;
    nfs_cp(&a.name, up.to_str().unwrap(), &nfs.url("up.bin"))?;
    assert_eq!(sha256_file(&nfs.export.join("up.bin"))?, sha256_file(&up)?);
    let down = scratch.file("down.bin");
    nfs_cp(&a.name, &nfs.url("up.bin"), down.to_str().unwrap())?;
    assert_eq!(sha256_file(&down)?, sha256_file(&up)?);
    drop(nfs);

    // Bulk: iperf3, the sha256 TCP transfer and an nc file copy; SYN MSS captured.
    let mut cap = Capture::start(&b.name, "eth0", "tcp", dir, "syn")?;
    let ip = iperf3(&a.name, ca, &b.name, cb, 5 << 20, dir)?;
    assert!(ip.bytes_sent >= 5 << 20 && ip.bytes_received > 0, "{ip:?}");
    let bulk = bulk_sha256(&a.name, &b.name, cb, 7001, 5 << 20, dir)?;
    assert!(
        bulk.receiver_mss > 0 && bulk.receiver_mss <= 1460,
        "{bulk:?}"
    );
    let f = scratch.file("nc.bin");
    random_file(&f, 1 << 20)?;
    let got = scratch.file("nc-got.bin");
    nc_file(&a.name, ca, 7002, &f, &b.name, &got, dir)?;
    assert_eq!(sha256_file(&got)?, sha256_file(&f)?);
    let pcap = cap.stop();
    let syns = syn_mss(&pcap)?;
    assert!(
        syns.iter()
            .any(|(s, d, ack, mss)| s == ca && d == cb && !ack && *mss == 1460),
        "SYN MSS at the far end: {syns:?}"
    );

    // The probe sees a cut link as an outage.
    let probe = Probe::start(&a.name, cb, Duration::from_millis(50), dir)?;
    probe.wait_replies(5, Duration::from_secs(5))?;
    b.run(&["sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=1"])?;
    std::thread::sleep(Duration::from_millis(500));
    b.run(&["sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=0"])?;
    probe.wait_replies(25, Duration::from_secs(10))?;
    let o = probe.stop();
    eprintln!("probe across 500 ms of unanswered echoes: {o}");
    assert!(
        o.recovered && o.longest_gap_ms >= 300 && o.longest_gap_ms < 3000,
        "{o}"
    );
    eprintln!(
        "protocol peers self-test: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Counter `section.name` summed over the polling cores of a site's CERs.
fn site_counter(lab: &Lab, site: &str, section: &str, name: &str) -> u64 {
    lab.cers(site)
        .iter()
        .filter_map(|c| c["dataplane_socket"].as_str())
        .map(|s| counter(std::path::Path::new(s), section, name))
        .sum()
}

/// Collects failed checks so one lab run reports every failure, not just the first.
#[derive(Default)]
struct Checks {
    failed: Vec<String>,
    passed: usize,
}

impl Checks {
    fn check(&mut self, what: &str, r: Result<String>) {
        match r {
            Ok(note) => {
                self.passed += 1;
                eprintln!("PASS {what}: {note}");
            }
            Err(e) => {
                eprintln!("FAIL {what}: {e:#}");
                self.failed.push(format!("{what}: {e:#}"));
            }
        }
    }

    fn finish(self, lab: &Lab) -> Result<()> {
        ensure!(
            self.failed.is_empty(),
            "{} of {} checks failed:\n{}\n\nlab status:\n{}",
            self.failed.len(),
            self.failed.len() + self.passed,
            self.failed.join("\n"),
            lab.status()
        );
        Ok(())
    }
}

/// A BPF expression matching packets from any of `srcs` to any of `dsts`.
fn bpf_between(srcs: &[String], dsts: &[String]) -> String {
    let any = |dir: &str, v: &[String]| {
        v.iter()
            .map(|a| format!("{dir} host {a}"))
            .collect::<Vec<_>>()
            .join(" or ")
    };
    format!(
        "(({}) and ({})) or (({}) and ({}))",
        any("src", srcs),
        any("dst", dsts),
        any("src", dsts),
        any("dst", srcs)
    )
}

/// Outer packets of `pair` captured on the WAN, in the direction `from` -> `to`:
/// the right encapsulation between the CER transport addresses, inner
/// addresses the workload /32s. Returns a one-line summary.
fn check_outer(
    lab: &Lab,
    pcap: &std::path::Path,
    pair: &Pair,
    from: &str,
    to: &str,
) -> Result<String> {
    let srcs = lab.cer_addrs(from);
    let dsts = lab.cer_addrs(to);
    let (isrc, idst) = (lab.ip(from), lab.ip(to));
    if pair.transport == "wireguard" {
        // Encrypted: UDP between the transport addresses on the WireGuard port,
        // transport data messages (type 4) dissected by tshark.
        let rows = tshark_fields(
            pcap,
            &["udp.port==51820,wg"],
            "udp",
            &["ip.src", "ip.dst", "udp.srcport", "udp.dstport", "wg.type"],
        )?;
        let ours: Vec<&Vec<String>> = rows
            .iter()
            .filter(|r| srcs.contains(&r[0]) && dsts.contains(&r[1]))
            .collect();
        let data = ours
            .iter()
            .filter(|r| r.get(4).map(String::as_str) == Some("4"))
            .count();
        ensure!(
            data >= 5,
            "{from}->{to}: {data} WireGuard data messages between {srcs:?} and {dsts:?}: {rows:?}"
        );
        for r in &ours {
            ensure!(
                r[3] == "51820" && r.get(4).is_some_and(|t| !t.is_empty()),
                "{from}->{to}: a non-WireGuard UDP packet between the CERs: {r:?}"
            );
        }
        // Nothing else (plain IP, GRE ...) between the two CERs but BGP-free UDP.
        let all = tshark_fields(
            pcap,
            &[],
            "ip.proto != 17 && ip.proto != 6 && ip.proto != 1",
            &["ip.src", "ip.dst", "ip.proto"],
        )?;
        let leak: Vec<_> = all
            .iter()
            .filter(|r| srcs.contains(&r[0]) && dsts.contains(&r[1]))
            .collect();
        ensure!(
            leak.is_empty(),
            "{from}->{to}: unencrypted tunnel packets on a WireGuard pair: {leak:?}"
        );
        return Ok(format!(
            "{data} WireGuard data messages {srcs:?} -> {dsts:?} on UDP 51820"
        ));
    }
    // The GRE key the lab configures; FOU and GUE use the default ports.
    let key = if pair.transport == "gre" { "77" } else { "" };
    let script = test_script("tunnel_pcap.py");
    let mut args = vec![
        "/usr/bin/python3",
        script.to_str().unwrap(),
        "outer",
        pcap.to_str().unwrap(),
        &pair.transport,
    ];
    let (src_list, dst_list) = (srcs.join(","), dsts.join(","));
    args.extend([src_list.as_str(), &dst_list, &isrc, &idst, "10.77.60.0/24"]);
    if !key.is_empty() {
        args.push(key);
    }
    let out =
        sh(&args).with_context(|| format!("scapy check of {} {from}->{to}", pair.transport))?;
    let t = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let n: Vec<u64> = t
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    ensure!(
        n.len() == 3 && n[1] >= 5,
        "{from}->{to}: {} packets with inner {isrc} -> {idst}: {t}",
        n.get(1).unwrap_or(&0)
    );
    // tshark's own dissectors agree for the kinds it knows (GUE: scapy only).
    if pair.transport != "gue" {
        let (filter, decode): (&str, Vec<&str>) = match pair.transport.as_str() {
            "gre" => ("gre && icmp", vec![]),
            "ipip" => ("ip.proto == 4 && icmp", vec![]),
            _ => ("udp.dstport == 5555 && icmp", vec!["udp.port==5555,ip"]),
        };
        let rows = tshark_fields(pcap, &decode, filter, &["ip.src", "ip.dst"])?;
        let want = rows
            .iter()
            .filter(|r| {
                let s: Vec<&str> = r[0].split(',').collect();
                let d: Vec<&str> = r[1].split(',').collect();
                s.len() == 2
                    && srcs.iter().any(|x| x == s[0])
                    && s[1] == isrc
                    && d.len() == 2
                    && dsts.iter().any(|x| x == d[0])
                    && d[1] == idst
            })
            .count();
        ensure!(want >= 5, "{from}->{to}: tshark saw {want} {} ICMP echoes outer {srcs:?}->{dsts:?} inner {isrc}->{idst}: {rows:?}", pair.transport);
    }
    Ok(format!("{} {from}->{to}: {} tunnel packets, {} ICMP echoes with inner {isrc} -> {idst}, outer {srcs:?} -> {dsts:?}", pair.transport, n[0], n[1]))
}

/// At the far workload: the echo requests arrive from the near /32 (source
/// preserved), and no packet carries a CER or WAN address (no NAT).
fn check_inner(lab: &Lab, pcap: &std::path::Path, from: &str, to: &str) -> Result<String> {
    let (isrc, idst) = (lab.ip(from), lab.ip(to));
    let rows = tshark_fields(pcap, &[], "ip", &["ip.src", "ip.dst", "icmp.type"])?;
    let echo = rows
        .iter()
        .filter(|r| r[0] == isrc && r[1] == idst && r.get(2).map(String::as_str) == Some("8"))
        .count();
    ensure!(
        echo >= 5,
        "{to} workload saw {echo} echo requests {isrc} -> {idst}: {rows:?}"
    );
    let foreign: Vec<_> = rows
        .iter()
        .filter(|r| r[0].starts_with("100.64.") || r[1].starts_with("100.64."))
        .collect();
    ensure!(
        foreign.is_empty(),
        "{to} workload saw transport addresses (NAT?): {foreign:?}"
    );
    Ok(format!(
        "{echo} echo requests {isrc} -> {idst} at the {to} workload, no transport address seen"
    ))
}

/// DF and no-DF probes around the pair's tunnel MTU from `from`'s workload:
/// one byte over without DF is fragmented by the CER and answered; at the MTU
/// with DF passes; one byte over with DF gets frag-needed with the tunnel MTU.
fn check_pmtu(lab: &Lab, pair: &Pair, from: &str, to: &str) -> Result<String> {
    let ns = lab.wl(from);
    let dst = lab.ip(to);
    let mtu = pair.tunnel_mtu;
    let ping = |df: &str, payload: u32| {
        ns_try(
            &ns,
            &[
                "ping",
                "-n",
                "-c",
                "3",
                "-i",
                "0.2",
                "-W",
                "1",
                "-M",
                df,
                "-s",
                &payload.to_string(),
                &dst,
            ],
        )
    };
    ns_run(&ns, &["ip", "route", "flush", "cache"])?;
    let frag0 = site_counter(lab, from, "events", "fragmented");
    let o = ping("dont", mtu - 27);
    ensure!(
        o.status.success(),
        "{from}->{to}: no-DF ping of {} bytes (MTU {mtu} + 1): {}\n{}\n{}",
        mtu + 1,
        text(&o),
        site_counters(lab, from),
        site_counters(lab, to)
    );
    let frag = site_counter(lab, from, "events", "fragmented") - frag0;
    ensure!(
        frag >= 1,
        "{from}->{to}: the {from} CER fragmented nothing for a no-DF packet over the tunnel MTU"
    );
    let o = ping("do", mtu - 28);
    ensure!(
        o.status.success(),
        "{from}->{to}: DF ping of exactly the tunnel MTU {mtu}: {}",
        text(&o)
    );
    let o = ping("do", mtu - 27);
    let t = text(&o);
    ensure!(
        !o.status.success(),
        "{from}->{to}: DF ping over the tunnel MTU {mtu} was answered: {t}"
    );
    ensure!(
        t.contains(&format!("Frag needed and DF set (mtu = {mtu})")),
        "{from}->{to}: expected ICMP frag-needed with mtu {mtu} from the CER: {t}"
    );
    let icmp_from = t
        .lines()
        .find(|l| l.contains("Frag needed"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("")
        .to_string();
    ensure!(
        lab.cer_addrs(from).contains(&icmp_from),
        "{from}->{to}: frag-needed came from {icmp_from}, not the {from} CER: {t}"
    );
    ns_run(&ns, &["ip", "route", "flush", "cache"])?;
    Ok(format!("tunnel MTU {mtu}: {} B no-DF fragmented by the CER ({frag} packets), {mtu} B DF passes, {} B DF -> frag-needed mtu {mtu} from {icmp_from}", mtu + 1, mtu + 1))
}

/// Every workload of `sites` pings every other site's /32 (first answer
/// within 10 s, then 5 of 5), one check per direction.
fn ping_mesh(lab: &Lab, checks: &mut Checks, sites: &[&str]) {
    for from in sites {
        for to in SITES {
            if *from == to {
                continue;
            }
            let (ns, dst) = (lab.wl(from), lab.ip(to));
            let start = Instant::now();
            let ok = loop {
                if ns_try(&ns, &["ping", "-n", "-c", "1", "-W", "1", &dst])
                    .status
                    .success()
                {
                    break true;
                }
                if start.elapsed() > Duration::from_secs(10) {
                    break false;
                }
            };
            let r = if ok {
                let o = ns_try(
                    &ns,
                    &["ping", "-n", "-c", "5", "-i", "0.1", "-W", "1", &dst],
                );
                if o.status.success() && text(&o).contains(" 0% packet loss") {
                    Ok("5/5".to_string())
                } else {
                    Err(anyhow::anyhow!("steady ping lost packets: {}", text(&o)))
                }
            } else {
                Err(anyhow::anyhow!("no answer in 10 s"))
            };
            checks.check(&format!("ping {from} -> {to} ({dst})"), r);
        }
    }
}

/// The same lab with gobgpd as the route reflector (`--rr gobgp`) instead
/// of the default cer-control: every CER's session to it is up, the full
/// mesh pings, a /32 moves between two clouds and is reached at its new
/// site from everywhere.
#[test]
fn lab_with_gobgp_route_reflector() -> Result<()> {
    let _g = serial();
    require_root();
    let t0 = Instant::now();
    let lab = Lab::up("acr", &["--rr", "gobgp"])?;
    let mut checks = Checks::default();
    ensure!(
        lab.state["rr"]["kind"] == "gobgp",
        "lab.json rr: {}",
        lab.state["rr"]
    );
    for site in SITES {
        for c in lab.cers(site) {
            let node = c["node"].as_str().unwrap_or("").to_string();
            checks.check(
                &format!("BGP {node} -> gobgpd RR"),
                (|| {
                    let s = lab.control(&node, "bgp_summary")?;
                    let up = s["neighbors"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|n| n.to_string().contains("Established"));
                    ensure!(up, "{node}: no established session: {s}");
                    Ok("Established".to_string())
                })(),
            );
        }
    }
    ping_mesh(&lab, &mut checks, &SITES);
    let ip = lab.ip("oci");
    checks.check(
        &format!("move {ip} oci -> aws"),
        lab.run(&["move", &ip, "aws"])
            .map(|o| o.lines().last().unwrap_or("").to_string()),
    );
    for from in ["onprem", "azure"] {
        let ns = lab.wl(from);
        let o = ns_try(&ns, &["ping", "-n", "-c", "5", "-i", "0.1", "-W", "1", &ip]);
        checks.check(
            &format!("ping {from} -> {ip} at its new site"),
            if o.status.success() {
                Ok("answered".into())
            } else {
                Err(anyhow::anyhow!("{}", text(&o)))
            },
        );
    }
    eprintln!(
        "lab_with_gobgp_route_reflector: {} checks in {:.1} s",
        checks.passed + checks.failed.len(),
        t0.elapsed().as_secs_f64()
    );
    checks.finish(&lab)
}

/// From a workload whose LAN MTU exceeds the tunnel MTU (a 9001 VPC): a
/// 2028-byte DF ping gets frag-needed with the tunnel MTU from its CER; a
/// 4028-byte no-DF ping is fragmented by the CER and answered (the far end's
/// reply comes back the same way, fragmented by the far CER or its host).
fn check_jumbo(lab: &Lab, pair: &Pair, from: &str, to: &str) -> Result<String> {
    let ns = lab.wl(from);
    let dst = lab.ip(to);
    let mtu = pair.tunnel_mtu;
    ns_run(&ns, &["ip", "route", "flush", "cache"])?;
    let frag0 = site_counter(lab, from, "events", "fragmented");
    let o = ns_try(
        &ns,
        &[
            "ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", "-M", "dont", "-s", "4000", &dst,
        ],
    );
    ensure!(
        o.status.success(),
        "{from}->{to}: 4028-byte no-DF ping: {}\n{}\n{}",
        text(&o),
        site_counters(lab, from),
        site_counters(lab, to)
    );
    let frag = site_counter(lab, from, "events", "fragmented") - frag0;
    ensure!(
        frag >= 1,
        "{from}->{to}: the {from} CER fragmented nothing for a 4028-byte no-DF packet"
    );
    let o = ns_try(
        &ns,
        &[
            "ping", "-n", "-c", "2", "-i", "0.2", "-W", "1", "-M", "do", "-s", "2000", &dst,
        ],
    );
    let t = text(&o);
    ensure!(
        t.contains(&format!("Frag needed and DF set (mtu = {mtu})")),
        "{from}->{to}: 2028-byte DF ping from a {} LAN: expected frag-needed with mtu {mtu}: {t}",
        lab.site(from)["lan_mtu"]
    );
    ns_run(&ns, &["ip", "route", "flush", "cache"])?;
    Ok(format!("4028 B no-DF answered ({frag} packets fragmented by the {from} CER), 2028 B DF -> frag-needed mtu {mtu}"))
}

/// `CER_ACC_PAIRS=aws-azure,onprem-oci` restricts the per-pair checks (debugging).
fn selected(p: &Pair) -> bool {
    std::env::var("CER_ACC_PAIRS").map_or(true, |v| {
        v.split(',')
            .any(|x| x == format!("{}-{}", p.a, p.b) || x == format!("{}-{}", p.b, p.a))
    })
}

/// Drop and event counters of a site's CERs (for failure messages).
fn site_counters(lab: &Lab, site: &str) -> String {
    lab.cers(site)
        .iter()
        .filter_map(|c| {
            let node = c["node"].as_str()?;
            let v = lab.dataplane(node, "counters").ok()?;
            Some(format!("{node}: {v}"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Ping, no NAT (inner and outer captures), PMTU and the TCP MSS for every
/// site pair (every transport), both directions, on one lab.
#[test]
fn lab_reachability_no_nat_pmtu_mss() -> Result<()> {
    let _g = serial();
    require_root();
    let t0 = Instant::now();
    let scratch = Scratch::new("acc-net")?;
    let dir = &scratch.path;
    let lab = Lab::up("acn", &[])?;
    let mut checks = Checks::default();

    // Full mesh: every workload reaches every other /32.
    ping_mesh(&lab, &mut checks, &SITES);

    for pair in lab.pairs().into_iter().filter(selected) {
        for (from, to) in [
            (pair.a.clone(), pair.b.clone()),
            (pair.b.clone(), pair.a.clone()),
        ] {
            let name = format!("{} {from}->{to}", pair.transport);
            // Captures: inner at the far workload, outer on the WAN router's port of the near site.
            let r = (|| -> Result<(Capture, Capture)> {
                let inner = Capture::start(
                    &lab.wl(&to),
                    "eth0",
                    "ip",
                    dir,
                    &format!("inner-{from}-{to}"),
                )?;
                let bpf = bpf_between(&lab.cer_addrs(&from), &lab.cer_addrs(&to));
                let outer = Capture::start(
                    &lab.wan_ns(),
                    &lab.wan_iface(&from)?,
                    &bpf,
                    dir,
                    &format!("outer-{from}-{to}"),
                )?;
                Ok((inner, outer))
            })();
            let (mut inner, mut outer) = match r {
                Ok(c) => c,
                Err(e) => {
                    checks.check(&format!("captures {name}"), Err(e));
                    continue;
                }
            };
            let o = ns_try(
                &lab.wl(&from),
                &[
                    "ping",
                    "-n",
                    "-c",
                    "8",
                    "-i",
                    "0.1",
                    "-W",
                    "1",
                    &lab.ip(&to),
                ],
            );
            let ping_ok = o.status.success();
            // A TCP connection for the MSS: the SYN as the far workload sees it.
            let bulk = bulk_sha256(
                &lab.wl(&from),
                &lab.wl(&to),
                &lab.ip(&to),
                7001,
                1 << 20,
                dir,
            );
            let inner_pcap = inner.stop();
            let outer_pcap = outer.stop();
            checks.check(
                &format!("ping {name}"),
                if ping_ok {
                    Ok("8 echoes".into())
                } else {
                    Err(anyhow::anyhow!("{}", text(&o)))
                },
            );
            checks.check(
                &format!("no NAT, inner {name}"),
                check_inner(&lab, &inner_pcap, &from, &to),
            );
            checks.check(
                &format!("no NAT, outer {name}"),
                check_outer(&lab, &outer_pcap, &pair, &from, &to),
            );
            // The echo replies travel the other way, through both CERs' other direction.
            checks.check(
                &format!("no NAT, outer replies {name}"),
                check_outer(&lab, &outer_pcap, &pair, &to, &from),
            );
            checks.check(&format!("TCP MSS {name}"), (|| {
                let b = bulk?;
                let syns = syn_mss(&inner_pcap)?;
                let (isrc, idst) = (lab.ip(&from), lab.ip(&to));
                let syn = syns.iter().find(|(s, d, ack, _)| *s == isrc && *d == idst && !ack).with_context(|| format!("no SYN {isrc} -> {idst} at the {to} workload: {syns:?}"))?;
                ensure!(syn.3 <= pair.tunnel_mtu - 40, "SYN MSS {} at the {to} workload > tunnel MTU {} - 40", syn.3, pair.tunnel_mtu);
                Ok(format!("SYN MSS {} at the far end (tunnel MTU {} - 40 = {}), 1 MiB sha256 ok, receiver MSS {}", syn.3, pair.tunnel_mtu, pair.tunnel_mtu - 40, b.receiver_mss))
            })());
            checks.check(&format!("PMTU {name}"), check_pmtu(&lab, &pair, &from, &to));
        }
    }
    // Jumbo frames from the 9001 / 9000 VPCs (AWS, OCI) towards 1500 sites:
    // DF gets frag-needed with the tunnel MTU from the CER, no-DF arrives
    // fragmented by the CER, and the far end's 4028-byte reply comes back.
    for pair in lab.pairs().into_iter().filter(selected) {
        for (from, to) in [
            (pair.a.clone(), pair.b.clone()),
            (pair.b.clone(), pair.a.clone()),
        ] {
            let lan = lab.site(&from)["lan_mtu"].as_u64().unwrap_or(1500) as u32;
            if lan < 4028 || pair.tunnel_mtu >= 4028 {
                continue;
            }
            checks.check(
                &format!("jumbo {} {from}->{to}", pair.transport),
                check_jumbo(&lab, &pair, &from, &to),
            );
        }
    }
    eprintln!(
        "lab_reachability_no_nat_pmtu_mss: {} checks in {:.1} s",
        checks.passed + checks.failed.len(),
        t0.elapsed().as_secs_f64()
    );
    checks.finish(&lab)
}

/// FTP (passive and active), NFS v3 and RPC between the workloads of every
/// site pair, both directions: one vsftpd and one nfs-ganesha (+ rpcbind) per
/// site workload, bound to its /32; clients bound to theirs.
#[test]
fn lab_ftp_nfs_rpc() -> Result<()> {
    let _g = serial();
    require_root();
    let t0 = Instant::now();
    let scratch = Scratch::new("acc-apps")?;
    let dir = &scratch.path;
    let lab = Lab::up("aca", &[])?;
    let mut checks = Checks::default();
    // Servers (dropped before the lab: declared after it).
    let mut ftp = std::collections::BTreeMap::new();
    let mut nfs = std::collections::BTreeMap::new();
    for site in SITES {
        let f = Ftp::start(&lab.wl(site), dir, &lab.ip(site))?;
        random_file(&f.root.join("file.bin"), 2 << 20)?;
        ftp.insert(site, f);
        nfs.insert(site, Nfs::start(&lab.wl(site), dir, &lab.ip(site))?);
    }
    for pair in lab.pairs().into_iter().filter(selected) {
        for (from, to) in [
            (pair.a.clone(), pair.b.clone()),
            (pair.b.clone(), pair.a.clone()),
        ] {
            let name = format!("{} {from}->{to}", pair.transport);
            let (cns, cip, sip) = (lab.wl(&from), lab.ip(&from), lab.ip(&to));
            let server = &ftp[to.as_str()];
            for mode in [FtpMode::Passive, FtpMode::Active] {
                checks.check(
                    &format!("FTP {mode:?} {name}"),
                    (|| {
                        let got = scratch.file(&format!("ftp-{from}-{to}-{mode:?}.bin"));
                        let before = server.log_text().len();
                        let t = Instant::now();
                        ftp_get(&cns, &cip, &sip, "file.bin", mode, &got)?;
                        let secs = t.elapsed().as_secs_f64();
                        let want = sha256_file(&server.root.join("file.bin"))?;
                        ensure!(sha256_file(&got)? == want, "content differs");
                        let log = server.log_text()[before..].to_string();
                        // The server saw the client's own /32 (no NAT, source preserved) ...
                        ensure!(
                            log.contains(&format!("CONNECT: Client \"{cip}\"")),
                            "vsftpd saw another client address:\n{log}"
                        );
                        // ... and the data connection used the real addresses in the FTP payload.
                        let port_arg = cip.replace('.', ",");
                        let pasv_arg = sip.replace('.', ",");
                        match mode {
                            FtpMode::Active => ensure!(
                                log.contains(&format!("\"PORT {port_arg},")),
                                "no PORT with {cip}:\n{log}"
                            ),
                            FtpMode::Passive => ensure!(
                                log.contains(&format!("227 Entering Passive Mode ({pasv_arg},")),
                                "no PASV reply with {sip}:\n{log}"
                            ),
                        }
                        ensure!(
                            log.contains("OK DOWNLOAD"),
                            "no completed download in the log:\n{log}"
                        );
                        Ok(format!("2 MiB sha256 ok in {secs:.2} s, server saw {cip}"))
                    })(),
                );
            }
            let server = &nfs[to.as_str()];
            checks.check(
                &format!("NFS v3 {name}"),
                (|| {
                    let up = scratch.file(&format!("nfs-{from}-{to}.bin"));
                    random_file(&up, 1 << 20)?;
                    let remote = format!("{from}.bin");
                    nfs_cp(&cns, up.to_str().unwrap(), &server.url(&remote))?;
                    ensure!(
                        sha256_file(&server.export.join(&remote))? == sha256_file(&up)?,
                        "written file differs on the server"
                    );
                    let back = scratch.file(&format!("nfs-{from}-{to}-back.bin"));
                    nfs_cp(&cns, &server.url(&remote), back.to_str().unwrap())?;
                    ensure!(
                        sha256_file(&back)? == sha256_file(&up)?,
                        "read-back differs"
                    );
                    Ok("1 MiB written and read back, sha256 equal".to_string())
                })(),
            );
            checks.check(
                &format!("RPC {name}"),
                (|| {
                    let progs = rpcinfo(&cns, &sip)?;
                    for (p, svc) in [(100000, "portmapper"), (100003, "nfs"), (100005, "mountd")] {
                        ensure!(
                            progs.iter().any(|r| r.program == p && r.proto == "tcp"),
                            "rpcinfo -p {sip}: no {svc} over tcp: {progs:?}"
                        );
                    }
                    for (p, v) in [("nfs", "3"), ("mountd", "3")] {
                        let o = ns_try(&cns, &["rpcinfo", "-t", &sip, p, v]);
                        ensure!(o.status.success(), "rpcinfo -t {sip} {p} {v}: {}", text(&o));
                        let o = ns_try(&cns, &["rpcinfo", "-u", &sip, p, v]);
                        ensure!(o.status.success(), "rpcinfo -u {sip} {p} {v}: {}", text(&o));
                    }
                    Ok(format!(
                        "{} registrations; nfs v3 and mountd v3 answer NULL over TCP and UDP",
                        progs.len()
                    ))
                })(),
            );
        }
    }
    drop(nfs);
    drop(ftp);
    eprintln!(
        "lab_ftp_nfs_rpc: {} checks in {:.1} s",
        checks.passed + checks.failed.len(),
        t0.elapsed().as_secs_f64()
    );
    checks.finish(&lab)
}

/// 100 MB over TCP between the workloads of every site pair: a generated
/// stream with sha256 on both ends, a 100 MB file copied with nc and compared
/// by sha256, and iperf3 -n 100M.
#[test]
fn lab_bulk_100mb() -> Result<()> {
    let _g = serial();
    require_root();
    let t0 = Instant::now();
    let scratch = Scratch::new("acc-bulk")?;
    let dir = &scratch.path;
    let lab = Lab::up("acb", &[])?;
    let mut checks = Checks::default();
    let mb: u64 = std::env::var("CER_TRANSFER_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let bytes = mb * 1_000_000;
    let file = scratch.file("bulk.bin");
    random_file(&file, bytes)?;
    let want = sha256_file(&file)?;
    for pair in lab.pairs().into_iter().filter(selected) {
        let (a, b) = (pair.a.clone(), pair.b.clone());
        let name = format!("{} {a}<->{b}", pair.transport);
        checks.check(
            &format!("bulk stream {name}"),
            (|| {
                let x = bulk_sha256(&lab.wl(&a), &lab.wl(&b), &lab.ip(&b), 7001, bytes, dir)?;
                ensure!(
                    x.receiver_mss > 0 && x.receiver_mss <= pair.tunnel_mtu - 40,
                    "receiver MSS {} over tunnel MTU {} - 40",
                    x.receiver_mss,
                    pair.tunnel_mtu
                );
                Ok(format!(
                    "{a}->{b} {mb} MB sha256 {} at {:.0} MB/s",
                    &x.sha256[..16],
                    x.mbytes_per_sec
                ))
            })(),
        );
        checks.check(
            &format!("file copy {name}"),
            (|| {
                let got = scratch.file(&format!("got-{a}-{b}.bin"));
                let secs = nc_file(
                    &lab.wl(&b),
                    &lab.ip(&b),
                    7002,
                    &file,
                    &lab.wl(&a),
                    &got,
                    dir,
                )?;
                let h = sha256_file(&got)?;
                let _ = std::fs::remove_file(&got);
                ensure!(h == want, "{b}->{a}: sha256 {h} != {want}");
                Ok(format!(
                    "{b}->{a} {mb} MB file sha256 equal, {:.0} MB/s",
                    bytes as f64 / secs / 1e6
                ))
            })(),
        );
        checks.check(
            &format!("iperf3 {name}"),
            (|| {
                let r = iperf3(
                    &lab.wl(&a),
                    &lab.ip(&a),
                    &lab.wl(&b),
                    &lab.ip(&b),
                    bytes,
                    dir,
                )?;
                ensure!(r.bytes_sent >= bytes, "{r:?}");
                Ok(format!(
                    "{a}->{b} {:.2} Gbit/s, {} retransmits",
                    r.bits_per_second / 1e9,
                    r.retransmits
                ))
            })(),
        );
    }
    eprintln!(
        "lab_bulk_100mb: {} checks in {:.1} s",
        checks.passed + checks.failed.len(),
        t0.elapsed().as_secs_f64()
    );
    checks.finish(&lab)
}
