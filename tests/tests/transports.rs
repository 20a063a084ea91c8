//! Two cer-dataplanes carry traffic between two host namespaces over each
//! transport (IPIP, GRE with key, FOU, GUE): ping, a 100 MB TCP transfer
//! with matching sha256, DF / no-DF pings around the tunnel MTU, TCP MSS
//! as the far end sees it. The wire is captured on the WAN and dissected by
//! tshark and scapy; scapy-built tunnel packets are decapsulated.
//!
//!   hA 10.1.0.10 -- lan [dpA] wan 10.10.0.1 ===veth=== 10.10.0.2 wan [dpB] lan -- hB 10.3.0.10

use anyhow::{Context, Result};
use cer_e2e::*;
use std::path::Path;
use std::time::Duration;

struct Site {
    // The dataplane stops (SIGTERM) before its namespaces go.
    _dp: Proc,
    host: Netns,
    dp_ns: Netns,
    admin: std::path::PathBuf,
    feed: std::path::PathBuf,
}

struct Topo {
    a: Site,
    b: Site,
    scratch: Scratch,
    wan_a: String,
}

fn dataplane_config(
    dir: &Path,
    name: &str,
    lan_if: &str,
    lan: &str,
    wan_if: &str,
    wan: &str,
    tunnel: Tunnel,
) -> Result<std::path::PathBuf> {
    DataplaneConfig::new(name, lan.split('/').next().unwrap())
        .admin_socket(&dir.join(format!("{name}-admin.sock")))
        .feed_socket(&dir.join(format!("{name}-feed.sock")))
        .mbufs(8191)
        .file_prefix(&format!("{name}{}", tag()))
        .port(Port::af_packet("lan", lan_if, lan))
        .port(Port::af_packet("wan", wan_if, wan))
        .tunnel(tunnel)
        .write(&dir.join(format!("{name}.toml")))
}

/// Readies interfaces a dataplane takes over: no IPv6, link up.
fn dataplane_ifaces(ns: &Netns, ifs: &[&str]) -> Result<()> {
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

/// A host namespace behind a dataplane: address, default route, checksums
/// computed in software (veth would leave them to the "hardware").
fn host(ns: &Netns, cidr: &str, gw: &str) -> Result<()> {
    ns.addr("eth0", cidr)?;
    ns.run(&["ip", "route", "add", "default", "via", gw])?;
    ns.run(&["ethtool", "-K", "eth0", "tx", "off"])?;
    Ok(())
}

/// `cerctl dataplane feed --socket SOCKET ARGS...`.
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
    fn new(kind: &str, gre_key: Option<u32>) -> Result<Topo> {
        let scratch = Scratch::new(&format!("tr-{kind}"))?;
        let t = tag();
        let (la, wa, wb, lb) = (
            format!("la{t}"),
            format!("wa{t}"),
            format!("wb{t}"),
            format!("lb{t}"),
        );
        let ha = Netns::new("ha")?;
        let da = Netns::new("da")?;
        let db = Netns::new("db")?;
        let hb = Netns::new("hb")?;
        veth(&la, &da, "eth0", &ha)?;
        veth(&wa, &da, &wb, &db)?;
        veth(&lb, &db, "eth0", &hb)?;
        dataplane_ifaces(&da, &[&la, &wa])?;
        dataplane_ifaces(&db, &[&wb, &lb])?;
        host(&ha, "10.1.0.10/24", "10.1.0.1")?;
        host(&hb, "10.3.0.10/24", "10.3.0.1")?;
        let tun = |local: &str, remote: &str| {
            let t = Tunnel::new(1, kind, local, remote);
            match gre_key {
                Some(k) => t.gre_key(k),
                None => t,
            }
        };
        let (tun_a, tun_b) = (tun("10.10.0.1", "10.10.0.2"), tun("10.10.0.2", "10.10.0.1"));
        let (tun_a, tun_b) = if kind == "wireguard" {
            let (ka, kb) = (wg::genkey()?, wg::genkey()?);
            let (pa, pb) = (wg::pubkey(&ka)?, wg::pubkey(&kb)?);
            (
                tun_a.wireguard_keys(&ka, &pb),
                tun_b.wireguard_keys(&kb, &pa),
            )
        } else {
            (tun_a, tun_b)
        };
        let cfg_a = dataplane_config(
            &scratch.path,
            "a",
            &la,
            "10.1.0.1/24",
            &wa,
            "10.10.0.1/24",
            tun_a,
        )?;
        let cfg_b = dataplane_config(
            &scratch.path,
            "b",
            &lb,
            "10.3.0.1/24",
            &wb,
            "10.10.0.2/24",
            tun_b,
        )?;
        let dpa = start_dataplane(&da, &cfg_a, &scratch.file("a.log"))?;
        let dpb = start_dataplane(&db, &cfg_b, &scratch.file("b.log"))?;
        let site = |host, dp_ns, dp, name: &str| Site {
            _dp: dp,
            host,
            dp_ns,
            admin: scratch.file(&format!("{name}-admin.sock")),
            feed: scratch.file(&format!("{name}-feed.sock")),
        };
        let topo = Topo {
            a: site(ha, da, dpa, "a"),
            b: site(hb, db, dpb, "b"),
            scratch,
            wan_a: wa,
        };
        // The /32 of each host lives at its own site: the other site sends it into the tunnel.
        topo.feed(&topo.a, &["endpoint-set", "10.3.0.10", "--tunnel", "1"])?;
        topo.feed(&topo.b, &["endpoint-set", "10.1.0.10", "--tunnel", "1"])?;
        Ok(topo)
    }

    fn feed(&self, site: &Site, args: &[&str]) -> Result<()> {
        feed(&site.feed, args)
    }

    fn counters(&self, site: &Site) -> String {
        admin(&site.admin, "counters")
            .map(|v| v.to_string())
            .unwrap_or_default()
    }

    /// A TCP transfer hA -> hB of `bytes`; returns (MB/s, MSS the receiver saw).
    fn transfer(&self, bytes: u64) -> Result<(f64, u32)> {
        tcp_transfer(
            &self.a.host,
            &self.b.host,
            "10.3.0.10",
            bytes,
            &self.scratch,
        )
    }
}

fn tunnel_mtu(kind: &str) -> u32 {
    1500 - match kind {
        "ipip" => 20,
        "gre" => 28, // with key
        "fou" => 28,
        "gue" => 32,
        "wireguard" => 60,
        _ => unreachable!(),
    }
}

fn scenario(kind: &str) -> Result<()> {
    let _g = serial();
    require_root();
    let gre_key = (kind == "gre").then_some(4242);
    let t = Topo::new(kind, gre_key)?;
    let key_arg = if kind == "gre" { Some("4242") } else { None };

    // Capture A's tunnel packets where they arrive (B's end of the WAN: DPDK's
    // af_packet transmits with PACKET_QDISC_BYPASS, invisible to taps on the
    // sending interface), and the workload's packets at host A.
    let outer_pcap = t.scratch.file("outer.pcap");
    let inner_pcap = t.scratch.file("inner.pcap");
    let wan_b = format!("wb{}", &t.wan_a[2..]);
    let mut cap_outer = t.b.dp_ns.spawn(
        &cer_e2e::apps::tcpdump_live(&["-n", "-i", &wan_b, "-w", outer_pcap.to_str().unwrap()]),
        &t.scratch.file("tcpdump-outer.log"),
    )?;
    let mut cap_inner = t.a.host.spawn(
        &cer_e2e::apps::tcpdump_live(&[
            "-n",
            "-i",
            "eth0",
            "-w",
            inner_pcap.to_str().unwrap(),
            "icmp",
        ]),
        &t.scratch.file("tcpdump-inner.log"),
    )?;
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        t.a.host.ping_until("10.3.0.10", Duration::from_secs(10)),
        "{kind}: hA -> hB\nA: {}\nB: {}",
        t.counters(&t.a),
        t.counters(&t.b)
    );
    assert!(t.a.host.ping("10.3.0.10", 5), "{kind}: steady ping");

    // PMTU: DF at the tunnel MTU passes, one byte more gets "frag needed" with the tunnel MTU.
    let mtu = tunnel_mtu(kind);
    let fits = (mtu - 28).to_string();
    let over = (mtu - 27).to_string();
    let ok = t.a.host.try_run(&[
        "ping",
        "-c",
        "2",
        "-W",
        "1",
        "-M",
        "do",
        "-s",
        &fits,
        "10.3.0.10",
    ]);
    assert!(
        ok.status.success(),
        "{kind}: DF ping of {} bytes: {}",
        mtu,
        String::from_utf8_lossy(&ok.stdout)
    );
    let too_big = t.a.host.try_run(&[
        "ping",
        "-c",
        "2",
        "-W",
        "1",
        "-M",
        "do",
        "-s",
        &over,
        "10.3.0.10",
    ]);
    let text = String::from_utf8_lossy(&too_big.stdout).to_string()
        + &String::from_utf8_lossy(&too_big.stderr);
    assert!(
        text.contains(&format!("mtu = {mtu}")),
        "{kind}: expected frag-needed with mtu {mtu}: {text}"
    );
    // No DF: fragmented inside the tunnel, reassembled by the far host.
    let frag = t.a.host.try_run(&[
        "ping",
        "-c",
        "2",
        "-W",
        "2",
        "-M",
        "dont",
        "-s",
        "4000",
        "10.3.0.10",
    ]);
    assert!(
        frag.status.success(),
        "{kind}: 4000-byte ping without DF: {}\nA: {}\nB: {}",
        String::from_utf8_lossy(&frag.stdout),
        t.counters(&t.a),
        t.counters(&t.b)
    );

    std::thread::sleep(Duration::from_millis(300));
    cap_outer.terminate(Duration::from_secs(3));
    cap_inner.terminate(Duration::from_secs(3));
    if kind == "wireguard" {
        // Encrypted: check the framing with tshark's WireGuard dissector instead.
        let out = sh(&[
            "tshark",
            "-r",
            outer_pcap.to_str().unwrap(),
            "-d",
            "udp.port==51820,wg",
            "-Y",
            "wg",
            "-T",
            "fields",
            "-e",
            "ip.src",
            "-e",
            "ip.dst",
            "-e",
            "udp.srcport",
            "-e",
            "udp.dstport",
            "-e",
            "wg.type",
        ])?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let data: Vec<&str> = text.lines().filter(|l| l.ends_with("\t4")).collect();
        assert!(
            !data.is_empty(),
            "wireguard: no transport data messages seen:\n{text}"
        );
        for l in &data {
            assert!(
                l.starts_with("10.10.0.1\t10.10.0.2\t51820\t51820"),
                "wireguard outer: {l}"
            );
        }
        assert!(
            text.lines()
                .any(|l| l.ends_with("\t1") || l.ends_with("\t2")),
            "a handshake on the wire:\n{text}"
        );
        eprintln!(
            "tshark wireguard: {} data messages, handshake seen",
            data.len()
        );
    }
    // scapy: every tunnel packet well formed, inner identical except TTL.
    let checker = test_script("tunnel_pcap.py");
    let mut args = vec![
        "/usr/bin/python3",
        checker.to_str().unwrap(),
        "check",
        outer_pcap.to_str().unwrap(),
        inner_pcap.to_str().unwrap(),
        kind,
        "10.10.0.1",
        "10.10.0.2",
    ];
    if let Some(k) = key_arg {
        args.push(k);
    }
    if kind != "wireguard" {
        let out = sh(&args).with_context(|| format!("{kind}: scapy check"))?;
        eprintln!("{}", String::from_utf8_lossy(&out.stdout).trim());
    }
    // tshark dissects GRE, IPIP and FOU (decode-as) natively.
    if kind != "gue" && kind != "wireguard" {
        let mut targs = vec![
            "tshark",
            "-r",
            outer_pcap.to_str().unwrap(),
            "-T",
            "fields",
            "-e",
            "ip.src",
            "-e",
            "ip.dst",
        ];
        let (filter, decode);
        match kind {
            "gre" => {
                filter = "gre".to_string();
                targs.extend_from_slice(&["-e", "gre.key", "-e", "gre.proto"]);
            }
            "ipip" => filter = "ip.proto == 4".to_string(),
            _ => {
                filter = "udp.dstport == 5555".to_string();
                decode = "udp.port==5555,ip".to_string();
                targs.extend_from_slice(&["-d", &decode]);
            }
        }
        targs.extend_from_slice(&["-Y", &filter]);
        let out = sh(&targs)?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        // tshark lists nested IP layers comma-separated: outer, then inner.
        let line = text
            .lines()
            .find(|l| l.starts_with("10.10.0.1,10.1.0.10\t10.10.0.2,10.3.0.10"))
            .with_context(|| format!("{kind}: tshark saw no A->B tunnel packet with inner 10.1.0.10 -> 10.3.0.10:\n{text}"))?;

        if kind == "gre" {
            assert!(
                line.contains(&format!("{:#010x}", 4242)),
                "GRE key 4242 in tshark fields: {line}"
            );
        }
        eprintln!("tshark {kind}: {line}");
    }

    if kind == "wireguard" {
        return wg_rest(&t, mtu);
    }
    // scapy-built tunnel packets are decapsulated: an echo request to hA from hB's /32,
    // sent on B's side of the WAN with B's transport address; A's encapsulated reply is seen.
    let ports = admin(&t.a.admin, "ports")?;
    let a_wan_mac = ports
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "wan")
        .unwrap()["mac"]
        .as_str()
        .unwrap()
        .to_string();
    let reply_pcap = t.scratch.file("reply.pcap");
    let mut cap = t.b.dp_ns.spawn(
        &cer_e2e::apps::tcpdump_live(&["-n", "-i", &wan_b, "-w", reply_pcap.to_str().unwrap()]),
        &t.scratch.file("tcpdump-reply.log"),
    )?;
    std::thread::sleep(Duration::from_millis(500));
    let mut sargs = vec![
        "/usr/bin/python3",
        checker.to_str().unwrap(),
        "send",
        &wan_b,
        &a_wan_mac,
        kind,
        "10.10.0.2",
        "10.10.0.1",
        "10.3.0.10",
        "10.1.0.10",
        "4321",
    ];
    if let Some(k) = key_arg {
        sargs.push(k);
    }
    t.b.dp_ns
        .run(&sargs)
        .with_context(|| format!("{kind}: scapy send"))?;
    std::thread::sleep(Duration::from_millis(800));
    cap.terminate(Duration::from_secs(3));
    let out = sh(&[
        "/usr/bin/python3",
        checker.to_str().unwrap(),
        "replies",
        reply_pcap.to_str().unwrap(),
        "4321",
        "10.10.0.1",
    ])
    .with_context(|| format!("{kind}: reply to the scapy-built packet"))?;
    eprintln!(
        "{kind}: {} encapsulated replies to the scapy-built request",
        String::from_utf8_lossy(&out.stdout).trim()
    );

    // 100 MB over TCP, sha256 on both ends; the MSS the far end sees fits the tunnel.
    let mb: u64 = std::env::var("CER_TRANSFER_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let (rate, mss) = t.transfer(mb << 20)?;
    eprintln!("{kind}: {mb} MiB at {rate:.1} MB/s, receiver MSS {mss}");
    assert!(
        mss > 0 && mss <= mtu - 40,
        "{kind}: MSS {mss} must fit the tunnel MTU {mtu} - 40"
    );
    let stats = admin(&t.a.admin, "counters")?;
    let enc = stats[0]["events"]["encapsulated"].as_u64().unwrap_or(0);
    assert!(enc > 1000, "{kind}: encapsulated {enc}");
    Ok(())
}

/// The transfer part for WireGuard (no scapy-built packets: they would need the session keys).
fn wg_rest(t: &Topo, mtu: u32) -> Result<()> {
    let mb: u64 = std::env::var("CER_TRANSFER_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let (rate, mss) = t.transfer(mb << 20)?;
    eprintln!("wireguard: {mb} MiB at {rate:.1} MB/s, receiver MSS {mss}");
    assert!(
        mss > 0 && mss <= mtu - 40,
        "wireguard: MSS {mss} must fit the tunnel MTU {mtu} - 40"
    );
    Ok(())
}

#[test]
fn transport_wireguard() -> Result<()> {
    scenario("wireguard")
}

#[test]
fn transport_ipip() -> Result<()> {
    scenario("ipip")
}

#[test]
fn transport_gre_with_key() -> Result<()> {
    scenario("gre")
}

#[test]
fn transport_fou() -> Result<()> {
    scenario("fou")
}

#[test]
fn transport_gue() -> Result<()> {
    scenario("gue")
}

/// cer-dataplane against wireguard-go, the reference userspace WireGuard:
///
///   hA 10.1.0.10 -- lan [dpA] wan 10.10.0.1 ===veth=== 10.10.0.2 [wireguard-go wgX 10.3.0.10/32]
///
/// Handshake initiated by us, traffic both ways (ping, 100 MiB TCP each way
/// with sha256), a rekey by timer with traffic flowing (REKEY_AFTER_TIME is
/// 120 s), then wireguard-go restarts with the same key and initiates the
/// new handshake itself; traffic resumes both ways.
#[test]
fn transport_wireguard_with_wireguard_go() -> Result<()> {
    let _g = serial();
    require_root();
    let scratch = Scratch::new("tr-wggo")?;
    let t = tag();
    let (la, wa, wb) = (format!("la{t}"), format!("wa{t}"), format!("wb{t}"));
    let wg_if = format!("wgx{t}");
    let ha = Netns::new("ha")?;
    let da = Netns::new("da")?;
    let wgb = Netns::new("wgb")?;
    veth(&la, &da, "eth0", &ha)?;
    veth(&wa, &da, &wb, &wgb)?;
    dataplane_ifaces(&da, &[&la, &wa])?;
    host(&ha, "10.1.0.10/24", "10.1.0.1")?;
    wgb.addr(&wb, "10.10.0.2/24")?;
    wgb.run(&["ethtool", "-K", &wb, "tx", "off"])?;

    let (ka, kb) = (wg::genkey()?, wg::genkey()?);
    let (pa, pb) = (wg::pubkey(&ka)?, wg::pubkey(&kb)?);
    let tunnel = Tunnel::new(1, "wireguard", "10.10.0.1", "10.10.0.2").wireguard_keys(&ka, &pb);
    let cfg = dataplane_config(
        &scratch.path,
        "a",
        &la,
        "10.1.0.1/24",
        &wa,
        "10.10.0.1/24",
        tunnel,
    )?;
    let mut dp = start_dataplane(&da, &cfg, &scratch.file("a.log"))?;
    let admin_sock = scratch.file("a-admin.sock");
    feed(
        &scratch.file("a-feed.sock"),
        &["endpoint-set", "10.3.0.10", "--tunnel", "1"],
    )?;
    let endpoint_a: std::net::SocketAddr = "10.10.0.1:51820".parse()?;
    let start_peer = || -> Result<wg::WgGo> {
        let w = wg::WgGo::start(&wgb, &scratch.path, &wg_if, &kb, 51820, "10.3.0.10/32")?;
        w.add_peer(&pa, Some(endpoint_a), &["10.1.0.0/24"], None)?;
        wgb.run(&["ip", "route", "replace", "10.1.0.0/24", "dev", &wg_if])?;
        Ok(w)
    };
    let counters = || {
        admin(&admin_sock, "counters")
            .map(|v| v.to_string())
            .unwrap_or_default()
    };
    // Our side of the session as the owning core publishes it (every 100 ms).
    let wg_state = || -> Result<serde_json::Value> {
        let t = admin(&admin_sock, "tunnels")?;
        let w = t[0]["wireguard"].clone();
        anyhow::ensure!(
            t[0]["id"] == 1 && t[0]["kind"] == "wireguard" && w.is_object(),
            "admin tunnels: {t}"
        );
        Ok(w)
    };
    let wait_handshakes = |n: u64| -> Result<serde_json::Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        loop {
            let w = wg_state()?;
            if w["session_established"] == true && w["handshakes"].as_u64() >= Some(n) {
                return Ok(w);
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "admin tunnels: waiting for {n} handshakes: {w}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let mut peer = start_peer()?;

    // 1. We initiate: the first packet to 10.3.0.10 starts the handshake.
    assert!(
        ha.ping_until("10.3.0.10", Duration::from_secs(10)),
        "hA -> wireguard-go\n{}\n{}",
        counters(),
        peer.log_text()
    );
    let first = peer.wait_handshake(Duration::from_secs(5))?;
    assert_eq!(
        first.endpoint,
        Some(endpoint_a),
        "wireguard-go learned our transport address and port"
    );
    let h1 = first.latest_handshake.context("handshake time")?;
    let w = wait_handshakes(1)?;
    assert!(
        w["handshake_age_ms"].as_u64().is_some_and(|a| a < 10_000),
        "fresh session: {w}"
    );
    // 2. Traffic both ways.
    assert!(
        wgb.ping("10.1.0.10", 3),
        "wireguard-go side -> hA\n{}",
        counters()
    );
    let mb: u64 = std::env::var("CER_TRANSFER_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let (rate, mss) = tcp_transfer(&ha, &wgb, "10.3.0.10", mb << 20, &scratch)?;
    eprintln!("hA -> wireguard-go: {mb} MiB at {rate:.1} MB/s, receiver MSS {mss}");
    assert!(
        mss > 0 && mss <= 1440 - 40,
        "MSS {mss} clamped to the tunnel MTU"
    );
    let (rate, _) = tcp_transfer(&wgb, &ha, "10.1.0.10", mb << 20, &scratch)?;
    eprintln!("wireguard-go -> hA: {mb} MiB at {rate:.1} MB/s");

    // 3. Rekey by timer: we initiated, so we rekey REKEY_AFTER_TIME (120 s) after
    //    the first handshake while traffic flows; no ping may be lost across it.
    let rekey = loop {
        assert!(
            ha.ping("10.3.0.10", 1),
            "ping while waiting for the rekey\n{}",
            counters()
        );
        let s = peer.show()?;
        let p = s.peer(&pa).context("our peer in wg show")?;
        if p.latest_handshake.is_some_and(|h| h > h1) {
            break p.latest_handshake.unwrap();
        }
        let waited = std::time::SystemTime::now()
            .duration_since(h1)
            .unwrap_or_default();
        assert!(
            waited < Duration::from_secs(150),
            "no rekey within {waited:?} of the first handshake\n{}",
            counters()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let after = rekey.duration_since(h1).unwrap_or_default();
    eprintln!("rekey {after:?} after the first handshake");
    assert!(
        after >= Duration::from_secs(110),
        "rekey after {after:?}: too early for REKEY_AFTER_TIME"
    );
    assert!(ha.ping("10.3.0.10", 3), "after the rekey");
    assert!(wgb.ping("10.1.0.10", 3), "after the rekey, reverse");
    let w = wait_handshakes(2)?;
    assert!(
        w["rx_bytes"].as_u64() > Some(100 << 20) && w["tx_bytes"].as_u64() > Some(100 << 20),
        "bytes both ways: {w}"
    );

    // 4. Peer restart: a fresh wireguard-go (same key, no session) initiates.
    drop(peer);
    peer = start_peer()?;
    assert!(
        wgb.ping_until("10.1.0.10", Duration::from_secs(15)),
        "restarted wireguard-go -> hA\n{}\n{}",
        counters(),
        peer.log_text()
    );
    let again = peer.wait_handshake(Duration::from_secs(5))?;
    assert_eq!(again.endpoint, Some(endpoint_a));
    assert!(
        ha.ping("10.3.0.10", 3),
        "hA -> restarted wireguard-go\n{}",
        counters()
    );
    wait_handshakes(3)?;
    let shown = sh(&[
        bin("cerctl").to_str().unwrap(),
        "dataplane",
        "show",
        "tunnels",
        "--admin-socket",
        admin_sock.to_str().unwrap(),
    ])?;
    let shown = String::from_utf8_lossy(&shown.stdout).to_string();
    eprintln!("{shown}");
    assert!(
        shown.contains("wireguard") && shown.contains("session up"),
        "cerctl dataplane show tunnels:\n{shown}"
    );
    let stats = admin(&admin_sock, "counters")?;
    eprintln!("dataplane counters: {stats}");
    let enc = stats[0]["events"]["encapsulated"].as_u64().unwrap_or(0);
    assert!(enc > 10_000, "encapsulated {enc}");
    drop(peer);
    dp.terminate(Duration::from_secs(5));
    Ok(())
}
