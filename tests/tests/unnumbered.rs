//! BGP unnumbered and RFC 5549/8950 end to end: a CER leaf (the real
//! cer-dataplane on `net_af_packet` veths + cer-control on the port TAPs)
//! against FRR (`neighbor IFACE interface remote-as external`) and BIRD 2
//! (`extended next hop on`) over links with only IPv6 link-local addresses.
//!
//! Leaf:  h1 (10.1.0.10) --lan-- [ cer-dataplane ] --swpN (unnumbered)-- peer N
//!                                     | TAP per port (kernel, same MAC)
//!                                cer-control: neighbor interface = TAP
//!
//! The leaf borrows its router address (10.97.0.2/32) on every unnumbered
//! port and advertises its LAN (10.1.0.0/24, `bgp.networks`).

use anyhow::{bail, Context, Result};
use cer_e2e::peers::{Bird, Frr};
use cer_e2e::*;
use serde_json::Value;
use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const LEAF_AS: u32 = 65001;
const LEAF_ADDR: &str = "10.97.0.2";

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// The link-local address of `iface` in `ns` (as the kernel formed it).
fn kernel_link_local(ns: &Netns, iface: &str) -> Result<Ipv6Addr> {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let out = ns.try_run(&[
            "ip", "-6", "-o", "addr", "show", "dev", iface, "scope", "link",
        ]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let ll = text
            .split_whitespace()
            .skip_while(|w| *w != "inet6")
            .nth(1)
            .and_then(|a| a.split('/').next())
            .and_then(|a| a.parse().ok());
        // Wait out duplicate address detection: a tentative address cannot be used.
        if let Some(ll) = ll {
            if !text.contains("tentative") {
                return Ok(ll);
            }
        }
        if Instant::now() > end {
            bail!(
                "{iface} in {} has no usable link-local address: {text}",
                ns.name
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn mac_of(ns: &Netns, iface: &str) -> Result<String> {
    let out = ns.run(&["cat", &format!("/sys/class/net/{iface}/address")])?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A peer namespace on the far end of one unnumbered port.
struct Uplink {
    port: String,
    tap: String,
}

/// The CER leaf: dataplane + cer-control, h1 on the LAN.
/// Fields drop in order: cer-control, the dataplane, then the namespaces.
struct Leaf {
    control: Control,
    dataplane: Proc,
    admin_sock: PathBuf,
    uplinks: Vec<Uplink>,
    h1: Netns,
    dp: Netns,
}

impl Leaf {
    /// Builds the leaf with one unnumbered port per peer namespace (each
    /// peer's end is `eth0` there), and starts it.
    fn start(scratch: &Scratch, peers: &[&Netns]) -> Result<Leaf> {
        let dp = Netns::new("leaf")?;
        let h1 = Netns::new("h1")?;
        let t = tag();
        let lan = format!("ul{t}");
        veth(&lan, &dp, "eth0", &h1)?;
        let mut uplinks = Vec::new();
        let mut ports = Vec::new();
        let mut neighbors = Vec::new();
        for (i, peer) in peers.iter().enumerate() {
            let n = i + 1;
            let dev = format!("u{n}{t}");
            let tap = format!("s{n}{t}");
            veth(&dev, &dp, "eth0", peer)?;
            peer.run(&["ip", "link", "set", "eth0", "up"])?;
            peer.run(&["ethtool", "-K", "eth0", "tx", "off"])?;
            ports.push(
                Port::af_packet(&format!("swp{n}"), &dev, &format!("{LEAF_ADDR}/32"))
                    .exception_tap(&tap)
                    .unnumbered(),
            );
            neighbors.push(
                Neighbor::unnumbered(&tap, &format!("swp{n}")).description(&format!("spine {n}")),
            );
            uplinks.push(Uplink {
                port: format!("swp{n}"),
                tap,
            });
        }
        for i in std::iter::once(lan.clone()).chain(
            peers
                .iter()
                .enumerate()
                .map(|(i, _)| format!("u{}{t}", i + 1)),
        ) {
            dp.run(&[
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{i}.disable_ipv6=1"),
            ])?;
            dp.run(&["ip", "link", "set", &i, "up"])?;
        }
        h1.addr("eth0", "10.1.0.10/24")?;
        h1.run(&["ip", "route", "add", "default", "via", "10.1.0.1"])?;
        h1.run(&["ethtool", "-K", "eth0", "tx", "off"])?;

        let admin_sock = scratch.file("dataplane.sock");
        let feed_sock = scratch.file("feed.sock");
        let mut cfg = DataplaneConfig::new(&format!("leaf{t}"), LEAF_ADDR)
            .admin_socket(&admin_sock)
            .feed_socket(&feed_sock)
            .arp_retry_ms(200)
            .ra_interval_secs(4)
            .file_prefix(&format!("leaf{t}"))
            .port(Port::af_packet("lan", &lan, "10.1.0.1/24"));
        for p in ports {
            cfg = cfg.port(p);
        }
        let cfg_path = cfg.write(&scratch.file("leaf.toml"))?;
        let dataplane = start_dataplane(&dp, &cfg_path, &scratch.file("dataplane.log"))?;
        let mut ctl = ControlConfig::new(&format!("leaf{t}"), LEAF_ADDR, LEAF_AS)
            .fast_timers()
            .networks(&["10.1.0.0/24"]);
        for n in neighbors {
            ctl = ctl.neighbor(n);
        }
        let ctl = ctl
            .sam(
                &format!("{LEAF_AS}:1"),
                "10.255.0.2/32",
                &scratch.file("endpoints.json"),
            )
            .feed_socket(&feed_sock)
            .initial_sync_delay_secs(1);
        let control = Control::start(Some(&dp), &scratch.path, "control", &ctl.to_string())?;
        Ok(Leaf {
            control,
            dataplane,
            admin_sock,
            uplinks,
            h1,
            dp,
        })
    }

    fn summary(&self) -> Value {
        self.control
            .json(&["show", "bgp", "summary"])
            .unwrap_or_default()
    }

    /// The summary row of the unnumbered neighbor on uplink `i`.
    fn neighbor(&self, i: usize) -> Value {
        let tap = &self.uplinks[i].tap;
        self.summary()["neighbors"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["unnumbered"]["interface"] == tap.as_str())
            .cloned()
            .unwrap_or_default()
    }

    fn established(&self, i: usize) -> bool {
        self.neighbor(i)["state"] == "Established"
    }

    /// The dataplane's next hops for `prefix` (empty when it has no such route).
    fn fib_nexthops(&self, prefix: &str) -> Vec<Value> {
        admin(&self.admin_sock, "fib")
            .ok()
            .and_then(|f| {
                f["routes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|r| r["prefix"] == prefix)
                    .map(|r| r["nexthops"].as_array().cloned().unwrap_or_default())
            })
            .unwrap_or_default()
    }

    fn our_link_local(&self, i: usize) -> Result<Ipv6Addr> {
        let n6 = admin(&self.admin_sock, "neighbors6")?;
        let port = &self.uplinks[i].port;
        let p = n6["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["port"] == port.as_str())
            .context("port in neighbors6")?;
        Ok(p["link_local"].as_str().unwrap_or_default().parse()?)
    }

    fn explain(&self, ip: &str) -> Result<String> {
        let argv = [
            bin("cerctl").display().to_string(),
            "explain".into(),
            ip.into(),
            "--socket".into(),
            self.control.socket.display().to_string(),
            "--dataplane-socket".into(),
            self.admin_sock.display().to_string(),
        ];
        let refs: Vec<&str> = argv.iter().map(|s| s.as_str()).collect();
        Ok(String::from_utf8_lossy(&sh(&refs)?.stdout).into_owned())
    }

    fn dump(&self, what: &str) -> String {
        format!(
            "{what}\nsummary: {}\nfib: {}\nneighbors6: {}\ncontrol log:\n{}\ndataplane log:\n{}",
            self.summary(),
            admin(&self.admin_sock, "fib")
                .map(|v| v.to_string())
                .unwrap_or_default(),
            admin(&self.admin_sock, "neighbors6")
                .map(|v| v.to_string())
                .unwrap_or_default(),
            self.control.proc.log_text(),
            self.dataplane.log_text(),
        )
    }
}

/// FRR as an unnumbered eBGP peer with `lo` = `addr`/32 announced.
fn frr_conf(asn: u32, router_id: &str, ifaces: &[&str], networks: &[&str]) -> String {
    let mut c = format!(
        "frr defaults datacenter\nhostname frr{asn}\nlog stdout informational\n!\nrouter bgp {asn}\n bgp router-id {router_id}\n no bgp ebgp-requires-policy\n bgp bestpath as-path multipath-relax\n"
    );
    for i in ifaces {
        c.push_str(&format!(" neighbor {i} interface remote-as external\n"));
    }
    c.push_str(" address-family ipv4 unicast\n");
    for n in networks {
        c.push_str(&format!("  network {n}\n"));
    }
    c.push_str(" exit-address-family\n!\n");
    c
}

/// Starts FRR in `ns` with RAs every second on `ifaces` (BGP unnumbered
/// turns RAs on; the short interval makes loss detection quick).
fn start_frr(ns: &Netns, scratch: &Scratch, conf: &str, ifaces: &[&str]) -> Result<Frr> {
    let frr = Frr::start(ns, &scratch.path, conf)?;
    let mut lines = Vec::new();
    for i in ifaces {
        lines.push(format!("interface {i}"));
        lines.push("ipv6 nd ra-interval 1".into());
        lines.push("exit".into());
    }
    let refs: Vec<&str> = lines.iter().map(|s| s.as_str()).collect();
    frr.configure(&refs)?;
    Ok(frr)
}

fn loopback(ns: &Netns, cidr: &str) -> Result<()> {
    ns.run(&["ip", "link", "set", "lo", "up"])?;
    ns.run(&["ip", "addr", "add", cidr, "dev", "lo"])?;
    Ok(())
}

#[test]
fn frr_unnumbered_extended_next_hop_both_ways_and_peer_loss() -> Result<()> {
    require_root();
    let _serial = serial();
    let scratch = Scratch::new("unnum-frr")?;
    let spine = Netns::new("frr")?;
    loopback(&spine, "10.97.0.1/32")?;
    let leaf = Leaf::start(&scratch, &[&spine])?;
    let frr = start_frr(
        &spine,
        &scratch,
        &frr_conf(65000, "10.97.0.1", &["eth0"], &["10.97.0.1/32"]),
        &["eth0"],
    )?;
    let frr_ll = kernel_link_local(&spine, "eth0")?;
    let frr_mac = mac_of(&spine, "eth0")?;
    let our_ll = leaf.our_link_local(0)?;
    let dump = |what: &str| format!("{}\nFRR:\n{}", leaf.dump(what), frr.log());

    // 1. Session up over link-local, extended next hop on both sides.
    let t0 = Instant::now();
    frr.wait_established("eth0", Duration::from_secs(40))
        .with_context(|| dump("FRR session"))?;
    assert!(
        wait_until(Duration::from_secs(10), || leaf.established(0)),
        "{}",
        dump("our session not established")
    );
    println!(
        "unnumbered session with FRR established after {:?}",
        t0.elapsed()
    );
    let n = leaf.neighbor(0);
    assert_eq!(
        n["unnumbered"]["peer_link_local"],
        frr_ll.to_string(),
        "{n}"
    );
    assert_eq!(n["unnumbered"]["dataplane_port"], "swp1", "{n}");
    assert!(
        n["capabilities"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c == "extended-nexthop")),
        "{n}"
    );
    assert_eq!(n["remote_as"], 65000, "{n}");
    let fn_json = frr.neighbors_json()?;
    assert_eq!(
        fn_json["eth0"]["neighborCapabilities"]["extendedNexthop"], "advertisedAndReceived",
        "{fn_json}"
    );
    let plain = leaf.control.ctl(&["show", "bgp", "summary"])?;
    assert!(
        plain.contains(&leaf.uplinks[0].tap) && plain.contains(&frr_ll.to_string()),
        "summary does not show the peer by interface:\n{plain}"
    );

    // 2. FRR installs our LAN via our link-local; we install its /32 via its.
    let installed = wait_until(Duration::from_secs(15), || {
        let out = spine.try_run(&["ip", "route", "show", "10.1.0.0/24"]);
        let r = String::from_utf8_lossy(&out.stdout).to_string();
        r.contains("inet6") && r.contains(&our_ll.to_string())
    });
    assert!(
        installed,
        "{}",
        dump(&format!(
            "FRR did not install 10.1.0.0/24 via inet6 {our_ll}: {}",
            String::from_utf8_lossy(&spine.try_run(&["ip", "route"]).stdout)
        ))
    );
    assert!(
        wait_until(Duration::from_secs(15), || {
            leaf.fib_nexthops("10.97.0.1/32")
                .iter()
                .any(|h| h["gateway6"] == frr_ll.to_string() && h["port"] == "swp1")
        }),
        "{}",
        dump("10.97.0.1/32 not in our FIB via FRR's link-local")
    );

    // 3. Traffic both ways through the dataplane.
    assert!(
        leaf.h1.ping_until("10.97.0.1", Duration::from_secs(15)),
        "{}",
        dump("h1 -> 10.97.0.1 failed")
    );
    assert!(spine.ping("10.1.0.10", 3), "{}", dump("FRR -> h1 failed"));
    let hop = &leaf.fib_nexthops("10.97.0.1/32")[0];
    assert_eq!(hop["mac"], frr_mac.as_str(), "{hop}");

    // 4. explain shows the link-local next hop and the resolved MAC.
    let ex = leaf.explain("10.97.0.1")?;
    assert!(
        ex.contains(&format!("via {frr_ll} on port swp1"))
            && ex.contains(&format!("resolved to MAC {frr_mac}")),
        "explain:\n{ex}"
    );

    // 5. RAs stop (dropped on the way out of FRR's namespace): the peer
    //    expires after 3 RA intervals, the session goes, the route leaves the FIB.
    spine.run(&[
        "nft",
        "add table ip6 ra_cut; add chain ip6 ra_cut out { type filter hook output priority 0; }; add rule ip6 ra_cut out icmpv6 type nd-router-advert drop",
    ])?;
    let cut = Instant::now();
    assert!(
        wait_until(Duration::from_secs(15), || leaf
            .fib_nexthops("10.97.0.1/32")
            .is_empty()),
        "{}",
        dump("route still in the FIB after RAs stopped")
    );
    println!(
        "RAs stopped: route withdrawn from the FIB after {:?}",
        cut.elapsed()
    );
    let n = leaf.neighbor(0);
    assert_ne!(n["state"], "Established", "{n}");
    assert!(
        n["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("no Router Advertisement")),
        "{n}"
    );
    spine.run(&["nft", "delete table ip6 ra_cut"])?;
    assert!(
        wait_until(Duration::from_secs(30), || !leaf
            .fib_nexthops("10.97.0.1/32")
            .is_empty()),
        "{}",
        dump("route not back after RAs resumed")
    );

    // 6. Link down on FRR's side: our port loses carrier, the TAP follows,
    //    the peer and its routes go at once. Only the TAP's carrier is
    //    mirrored: it stays administratively up, so a kernel route an
    //    operator put on it survives the flap (an admin-down TAP made the
    //    kernel flush it, and a node lost its WAN default route for good).
    let tap = leaf.uplinks[0].tap.clone();
    leaf.dp
        .run(&["ip", "route", "add", "10.99.77.0/24", "dev", &tap])?;
    spine.run(&["ip", "link", "set", "eth0", "down"])?;
    let down = Instant::now();
    assert!(
        wait_until(Duration::from_secs(10), || leaf
            .fib_nexthops("10.97.0.1/32")
            .is_empty()),
        "{}",
        dump("route still in the FIB after link down")
    );
    println!(
        "link down: route withdrawn from the FIB after {:?}",
        down.elapsed()
    );
    assert!(
        leaf.neighbor(0)["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("down")),
        "{}",
        leaf.neighbor(0)
    );
    let show = |args: &[&str]| {
        leaf.dp
            .run(args)
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let link = show(&["ip", "-o", "link", "show", "dev", &tap])?;
    assert!(
        link.contains("NO-CARRIER") && link.contains(",UP"),
        "the TAP should be up without carrier: {link}"
    );
    let route = show(&["ip", "-o", "route", "show", "10.99.77.0/24"])?;
    assert!(
        route.contains("linkdown"),
        "the kernel route on the TAP should be kept as linkdown: {route:?}"
    );
    spine.run(&["ip", "link", "set", "eth0", "up"])?;
    assert!(
        wait_until(Duration::from_secs(10), || show(&[
            "ip",
            "-o",
            "route",
            "show",
            "10.99.77.0/24"
        ])
        .is_ok_and(|r| r.contains("10.99.77.0/24") && !r.contains("linkdown"))),
        "the kernel route on the TAP should be live again with the carrier"
    );
    assert!(
        wait_until(Duration::from_secs(40), || leaf.established(0)
            && !leaf.fib_nexthops("10.97.0.1/32").is_empty()),
        "{}",
        dump("session not back after link up")
    );
    assert!(
        leaf.h1.ping_until("10.97.0.1", Duration::from_secs(15)),
        "{}",
        dump("h1 -> 10.97.0.1 failed after link up")
    );
    drop(leaf);
    Ok(())
}

#[test]
fn bird_extended_next_hop_over_link_local() -> Result<()> {
    require_root();
    let _serial = serial();
    let scratch = Scratch::new("unnum-bird")?;
    let peer = Netns::new("bird")?;
    loopback(&peer, "10.96.0.1/32")?;
    let leaf = Leaf::start(&scratch, &[&peer])?;
    let our_ll = leaf.our_link_local(0)?;
    let bird_ll = kernel_link_local(&peer, "eth0")?;
    let bird_mac = mac_of(&peer, "eth0")?;
    // BIRD dials our link-local address (it runs no RAs): cer-control
    // learns the peer from that connection.
    let conf = format!(
        r#"
router id 10.96.0.1;
protocol device {{ }}
protocol direct {{ ipv4; interface "lo"; }}
protocol kernel {{ ipv4 {{ import none; export where source = RTS_BGP; }}; }}
protocol bgp leaf {{
  local as 65003;
  neighbor {our_ll}%eth0 as {LEAF_AS};
  connect retry time 1;
  ipv4 {{ import all; export where source = RTS_DEVICE; extended next hop on; }};
}}
"#
    );
    let bird = Bird::start(&peer, &scratch.path, &conf)?;
    let dump = |what: &str| format!("{}\nBIRD:\n{}", leaf.dump(what), bird.log());
    bird.wait_established("leaf", Duration::from_secs(40))
        .with_context(|| dump("BIRD session"))?;
    assert!(
        wait_until(Duration::from_secs(10), || leaf.established(0)),
        "{}",
        dump("our session not established")
    );
    let n = leaf.neighbor(0);
    assert_eq!(n["unnumbered"]["learned_from"], "connection", "{n}");
    assert_eq!(
        n["unnumbered"]["peer_link_local"],
        bird_ll.to_string(),
        "{n}"
    );
    assert!(
        n["capabilities"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c == "extended-nexthop")),
        "{n}"
    );
    // BIRD's route to our LAN: an IPv4 prefix with our link-local next hop.
    let ok = wait_until(Duration::from_secs(15), || {
        bird.birdc("show route 10.1.0.0/24 all")
            .map(|r| r.contains(&our_ll.to_string()))
            .unwrap_or(false)
    });
    assert!(
        ok,
        "{}",
        dump(&format!(
            "BIRD has no 10.1.0.0/24 via {our_ll}: {}",
            bird.birdc("show route all").unwrap_or_default()
        ))
    );
    let caps = bird.birdc("show protocols all leaf")?;
    assert!(
        caps.to_lowercase().contains("extended next hop"),
        "BIRD does not report extended next hop:\n{caps}"
    );
    // Ours: BIRD's /32 via its link-local, resolved to its MAC, and traffic.
    assert!(
        wait_until(Duration::from_secs(15), || {
            leaf.fib_nexthops("10.96.0.1/32")
                .iter()
                .any(|h| h["gateway6"] == bird_ll.to_string())
        }),
        "{}",
        dump("10.96.0.1/32 not in our FIB via BIRD's link-local")
    );
    let installed = wait_until(Duration::from_secs(10), || {
        let r = peer.try_run(&["ip", "route", "show", "10.1.0.0/24"]);
        String::from_utf8_lossy(&r.stdout).contains("inet6")
    });
    assert!(
        installed,
        "{}",
        dump(&format!(
            "BIRD's kernel protocol did not install 10.1.0.0/24 via inet6: {}",
            String::from_utf8_lossy(&peer.try_run(&["ip", "route"]).stdout)
        ))
    );
    assert!(
        leaf.h1.ping_until("10.96.0.1", Duration::from_secs(15)),
        "{}",
        dump("h1 -> 10.96.0.1 through BIRD's link-local failed")
    );
    let hop = &leaf.fib_nexthops("10.96.0.1/32")[0];
    assert_eq!(hop["mac"], bird_mac.as_str(), "{hop}");
    drop(leaf);
    Ok(())
}

#[test]
fn leaf_with_two_frr_spines_ecmp_and_one_spine_down() -> Result<()> {
    require_root();
    let _serial = serial();
    let scratch = Scratch::new("unnum-ecmp")?;
    let s1 = Netns::new("sp1")?;
    let s2 = Netns::new("sp2")?;
    let l2 = Netns::new("leaf2")?;
    loopback(&l2, "10.98.0.1/32")?;
    let t = tag();
    // Spine i: eth0 to our leaf, eth1 to leaf2 (leaf2's eth1 / eth2).
    veth(&format!("a{t}"), &s1, "eth1", &l2)?;
    veth(&format!("b{t}"), &s2, "eth2", &l2)?;
    for (ns, ifs) in [(&s1, vec![format!("a{t}")]), (&s2, vec![format!("b{t}")])] {
        for i in ifs {
            ns.run(&["ip", "link", "set", &i, "name", "eth1"])?;
            ns.run(&["ip", "link", "set", "eth1", "up"])?;
        }
    }
    for i in ["eth1", "eth2"] {
        l2.run(&["ip", "link", "set", i, "up"])?;
    }
    for sp in [&s1, &s2] {
        sp.run(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    }
    let leaf = Leaf::start(&scratch, &[&s1, &s2])?;
    // Both spines in AS 65000 (the datacenter convention), leaf2 in 65002.
    let sp1 = start_frr(
        &s1,
        &scratch,
        &frr_conf(65000, "10.97.1.1", &["eth0", "eth1"], &[]),
        &["eth0", "eth1"],
    )?;
    let sp2 = start_frr(
        &s2,
        &scratch,
        &frr_conf(65000, "10.97.1.2", &["eth0", "eth1"], &[]),
        &["eth0", "eth1"],
    )?;
    let far = start_frr(
        &l2,
        &scratch,
        &frr_conf(65002, "10.98.0.1", &["eth1", "eth2"], &["10.98.0.1/32"]),
        &["eth1", "eth2"],
    )?;
    let s1_ll = kernel_link_local(&s1, "eth0")?;
    let s2_ll = kernel_link_local(&s2, "eth0")?;
    let dump = |what: &str| {
        format!(
            "{}\nspine1:\n{}\nspine2:\n{}\nleaf2:\n{}",
            leaf.dump(what),
            sp1.log(),
            sp2.log(),
            far.log()
        )
    };
    let ecmp = wait_until(Duration::from_secs(60), || {
        let hops = leaf.fib_nexthops("10.98.0.1/32");
        hops.len() == 2
            && hops
                .iter()
                .any(|h| h["gateway6"] == s1_ll.to_string() && h["port"] == "swp1")
            && hops
                .iter()
                .any(|h| h["gateway6"] == s2_ll.to_string() && h["port"] == "swp2")
    });
    assert!(ecmp, "{}", dump("no two-way ECMP for 10.98.0.1/32"));
    let ex = leaf.explain("10.98.0.1")?;
    assert!(
        ex.contains("(ECMP)") && ex.contains(&s1_ll.to_string()) && ex.contains(&s2_ll.to_string()),
        "explain:\n{ex}"
    );
    // leaf2 must reach our LAN (ECMP over the spines as well).
    assert!(
        leaf.h1.ping_until("10.98.0.1", Duration::from_secs(30)),
        "{}",
        dump("h1 -> 10.98.0.1 over the spines failed")
    );
    // Several flows spread over both spines (flow hash): each spine counts
    // the probe flows it forwards.
    for sp in [&s1, &s2] {
        sp.run(&[
            "nft",
            "add table inet flows; add chain inet flows counted { type filter hook forward priority 0; }; add rule inet flows counted ip daddr 10.98.0.1 udp dport 20000-20031 counter",
        ])?;
    }
    for p in 0..32u16 {
        leaf.h1.try_run(&[
            "bash",
            "-c",
            &format!("echo x > /dev/udp/10.98.0.1/{}", 20000 + p),
        ]);
    }
    let per_spine: Vec<u64> = [&s1, &s2].iter().map(|sp| flow_count(sp)).collect();
    println!(
        "32 UDP flows: spine 1 forwarded {}, spine 2 {}",
        per_spine[0], per_spine[1]
    );
    assert!(
        per_spine[0] > 0 && per_spine[1] > 0 && per_spine[0] + per_spine[1] == 32,
        "32 flows were not spread over both spines: {per_spine:?}"
    );

    // Spine 1 dies: its session and paths go, traffic stays up on spine 2.
    let mut probe = leaf.h1.spawn(
        &["ping", "-i", "0.05", "-W", "1", "10.98.0.1"],
        &scratch.file("probe.log"),
    )?;
    std::thread::sleep(Duration::from_secs(1));
    // Both daemons of spine 1, by PID (bgpd sends its Cease on the way out).
    sh(&[
        "kill",
        "-TERM",
        &sp1.bgpd_pid().to_string(),
        &sp1.zebra_pid().to_string(),
    ])?;
    let killed = Instant::now();
    assert!(
        wait_until(Duration::from_secs(20), || {
            let hops = leaf.fib_nexthops("10.98.0.1/32");
            hops.len() == 1 && hops[0]["gateway6"] == s2_ll.to_string()
        }),
        "{}",
        dump("FIB did not shrink to spine 2")
    );
    println!(
        "spine 1 down: FIB down to spine 2 after {:?}",
        killed.elapsed()
    );
    std::thread::sleep(Duration::from_secs(3));
    probe.terminate(Duration::from_secs(2));
    let log = probe.log_text();
    let replies = log.matches("bytes from").count();
    let last_seq = log
        .lines()
        .filter_map(|l| l.split("icmp_seq=").nth(1))
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    println!(
        "probe at 50 ms: {replies} replies up to icmp_seq {last_seq}, {} lost (~{} ms of outage)",
        last_seq.saturating_sub(replies as u64),
        last_seq.saturating_sub(replies as u64) * 50
    );
    assert!(
        leaf.h1.ping("10.98.0.1", 3),
        "{}",
        dump("traffic did not stay up on spine 2")
    );
    drop(leaf);
    Ok(())
}

/// Probe-flow packets a spine forwarded (its nftables counter).
fn flow_count(ns: &Netns) -> u64 {
    let out = ns.try_run(&["nft", "list", "table", "inet", "flows"]);
    String::from_utf8_lossy(&out.stdout)
        .split("packets ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
