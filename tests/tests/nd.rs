//! IPv6 neighbor discovery in cer-dataplane, end to end: the real binary on
//! `net_af_packet` veths against Linux kernels in network namespaces.
//!
//! Topology (names unique per run):
//!   h1 (10.1.0.10) --lan-- [ cer-dataplane ] --wan (unnumbered)-- h2
//!                                  |                  (link-local only + 10.9.9.9/32)
//!                           TAP (kernel, same MAC: same link-local)
//!
//! Checked: h2's kernel takes our Router Advertisement (default route via our
//! link-local address, neighbor marked router); h2 pings our link-local
//! address (our NA, then the kernel on the TAP answers the echo); the
//! dataplane's `neighbors6` shows h2; an IPv4 route whose next hop is h2's
//! link-local address (feed `gateway6`) carries h1's pings to 10.9.9.9 on
//! h2, which routes back `via inet6` our link-local address (RFC 5549 on
//! both sides).

use anyhow::{bail, Context, Result};
use cer_e2e::*;
use cer_shared::feed::{ControlMsg, DataplaneMsg, FibChange, NextHop};
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

/// The modified EUI-64 link-local address of a MAC (as Linux derives it).
fn link_local(mac: &str) -> Ipv6Addr {
    let b: Vec<u8> = mac
        .split(':')
        .map(|x| u8::from_str_radix(x, 16).unwrap())
        .collect();
    Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([b[0] ^ 2, b[1]]),
        u16::from_be_bytes([b[2], 0xff]),
        u16::from_be_bytes([0xfe, b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
    )
}

fn mac_of(ns: &Netns, iface: &str) -> Result<String> {
    let out = ns.run(&["cat", &format!("/sys/class/net/{iface}/address")])?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// One feed session: hello, then each batch of changes acked in order.
fn feed(socket: &std::path::Path, changes: Vec<FibChange>) -> Result<()> {
    let s = std::os::unix::net::UnixStream::connect(socket)
        .with_context(|| format!("connecting {}", socket.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    let hello = ControlMsg::Hello {
        version: cer_shared::feed::FEED_PROTOCOL_VERSION,
        client: "e2e-nd".into(),
        capture_gate: false,
    };
    writeln!(w, "{}", serde_json::to_string(&hello)?)?;
    r.read_line(&mut line)?;
    let msg = ControlMsg::Changes { seq: 1, changes };
    writeln!(w, "{}", serde_json::to_string(&msg)?)?;
    line.clear();
    r.read_line(&mut line)?;
    match serde_json::from_str::<DataplaneMsg>(&line)? {
        DataplaneMsg::Ack { seq: 1, .. } => Ok(()),
        other => bail!("feed: {other:?}"),
    }
}

#[test]
fn unnumbered_port_ra_ns_na_and_ipv4_via_link_local_next_hop() -> Result<()> {
    require_root();
    let _serial = serial();
    let scratch = Scratch::new("nd")?;
    let dp = Netns::new("dp")?;
    let h1 = Netns::new("h1")?;
    let h2 = Netns::new("h2")?;
    let t = tag();
    let (dl, dw, tap) = (format!("nl{t}"), format!("nw{t}"), format!("nt{t}"));
    veth(&dl, &dp, "eth0", &h1)?;
    veth(&dw, &dp, "eth0", &h2)?;
    for i in [&dl, &dw] {
        // The dataplane owns these; the kernel must not run ND on them.
        dp.run(&[
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{i}.disable_ipv6=1"),
        ])?;
        dp.run(&["ip", "link", "set", i, "up"])?;
    }
    h1.addr("eth0", "10.1.0.10/24")?;
    h1.run(&["ip", "route", "add", "default", "via", "10.1.0.1"])?;
    h1.run(&["ethtool", "-K", "eth0", "tx", "off"])?;
    // h2: no IPv4 on the link, only its link-local address; accepts RAs.
    h2.run(&["sysctl", "-qw", "net.ipv6.conf.eth0.accept_ra=2"])?;
    h2.run(&["ip", "link", "set", "eth0", "up"])?;
    h2.run(&["ip", "addr", "add", "10.9.9.9/32", "dev", "lo"])?;
    h2.run(&["ethtool", "-K", "eth0", "tx", "off"])?;
    let h2_mac = mac_of(&h2, "eth0")?;
    let h2_ll = link_local(&h2_mac);

    let admin_sock = scratch.file("admin.sock");
    let feed_sock = scratch.file("feed.sock");
    let cfg_path = DataplaneConfig::new(&format!("nd{t}"), "10.1.0.1")
        .admin_socket(&admin_sock)
        .feed_socket(&feed_sock)
        .arp_retry_ms(200)
        .ra_interval_secs(4)
        .file_prefix(&format!("nd{t}"))
        .port(Port::af_packet("lan", &dl, "10.1.0.1/24"))
        .port(
            Port::af_packet("wan", &dw, "192.0.2.1/30")
                .exception_tap(&tap)
                .unnumbered(),
        )
        .write(&scratch.file("node.toml"))?;
    let dataplane = start_dataplane(&dp, &cfg_path, &scratch.file("dataplane.log"))?;
    let dump = |what: &str| -> String {
        format!(
            "{what}\ndataplane log:\n{}\nneighbors6: {}\ncounters: {}\nh2 neigh: {}\nh2 routes: {}",
            dataplane.log_text(),
            admin(&admin_sock, "neighbors6")
                .map(|v| v.to_string())
                .unwrap_or_default(),
            admin(&admin_sock, "counters")
                .map(|v| v.to_string())
                .unwrap_or_default(),
            String::from_utf8_lossy(&h2.try_run(&["ip", "-6", "neigh", "show"]).stdout),
            String::from_utf8_lossy(&h2.try_run(&["ip", "-6", "route", "show"]).stdout),
        )
    };

    let n6 = admin(&admin_sock, "neighbors6")?;
    let wan = n6["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["port"] == "wan")
        .context("wan in neighbors6")?
        .clone();
    assert_eq!(wan["unnumbered"], true);
    let our_ll: Ipv6Addr = wan["link_local"].as_str().unwrap().parse()?;
    let ports = admin(&admin_sock, "ports")?;
    let our_mac = ports
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "wan")
        .map(|p| p["mac"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default();
    assert_eq!(our_ll, link_local(&our_mac));

    // 1. h2's kernel accepts our RA: default route via our link-local.
    let ra = wait_until(Duration::from_secs(15), || {
        let out = h2.try_run(&["ip", "-6", "route", "show", "default"]);
        String::from_utf8_lossy(&out.stdout).contains(&our_ll.to_string())
    });
    assert!(ra, "{}", dump("no default route from our RA on h2"));
    let neigh =
        String::from_utf8_lossy(&h2.try_run(&["ip", "-6", "neigh", "show"]).stdout).to_string();
    assert!(
        neigh.contains(&our_ll.to_string()) && neigh.contains("router"),
        "{}",
        dump("h2 did not learn us as a router")
    );

    // 2. h2 pings our link-local address: our NA, then the TAP kernel's echo reply.
    let target = format!("{our_ll}%eth0");
    let pinged = wait_until(Duration::from_secs(15), || {
        h2.try_run(&["ping", "-6", "-c", "1", "-W", "1", &target])
            .status
            .success()
    });
    assert!(pinged, "{}", dump("ping -6 to our link-local failed"));
    assert!(
        counter(&admin_sock, "events", "nd_neighbor_advert_sent") >= 1 || {
            // h2 may have resolved us from the RA alone (it carries our MAC).
            neigh.contains(&our_mac)
        }
    );

    // 3. The dataplane knows h2 (from its NS/NA) at its MAC.
    let known = wait_until(Duration::from_secs(10), || {
        admin(&admin_sock, "neighbors6")
            .map(|v| {
                v["neighbors"].as_array().into_iter().flatten().any(|n| {
                    n["port"] == "wan"
                        && n["ip"] == h2_ll.to_string()
                        && n["mac"].as_str() == Some(h2_mac.as_str())
                })
            })
            .unwrap_or(false)
    });
    assert!(known, "{}", dump("h2 not in neighbors6"));

    // 4. IPv4 via h2's link-local address (RFC 5549), h2 back via ours.
    feed(
        &feed_sock,
        vec![FibChange::RouteSet {
            prefix: "10.9.9.9/32".parse()?,
            nexthops: vec![NextHop {
                port: "wan".into(),
                gateway: None,
                gateway6: Some(h2_ll),
            }],
        }],
    )?;
    h2.run(&[
        "ip",
        "route",
        "add",
        "10.1.0.0/24",
        "via",
        "inet6",
        &our_ll.to_string(),
        "dev",
        "eth0",
    ])?;
    assert!(
        h1.ping_until("10.9.9.9", Duration::from_secs(10)),
        "{}",
        dump("h1 -> 10.9.9.9 via link-local next hop failed")
    );
    let fib = admin(&admin_sock, "fib")?;
    let hop = fib["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["prefix"] == "10.9.9.9/32")
        .map(|r| r["nexthops"][0].clone())
        .unwrap_or_default();
    assert_eq!(hop["gateway6"], h2_ll.to_string(), "{fib}");
    assert_eq!(hop["mac"], h2_mac.as_str(), "{fib}");
    drop(dataplane);
    Ok(())
}
