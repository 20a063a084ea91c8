//! cer-dataplane end to end: the real binary on DPDK virtual devices
//! (`net_af_packet` / `net_af_xdp` on veths, `net_tap` for the exception
//! path) in network namespaces, with Linux hosts on each side.
//!
//! Topology (all names unique per run):
//!   h1 (10.1.0.10) --lan-- [ cer-dataplane ] --wan-- h2 (10.2.0.20)
//!                                 |   \--dmz-- h3 (10.3.0.30)
//!                          TAP (kernel, 10.2.0.1)

use anyhow::{bail, Context, Result};
use cer_e2e::*;
use std::time::Duration;

const RESPONDER: &str = include_str!("../scripts/tcp_name_responder.py");

const FETCH: &str = include_str!("../scripts/tcp_name_fetch.py");

#[derive(Clone, Copy, PartialEq)]
enum Driver {
    AfPacket,
    AfXdp,
}

struct Topo {
    // Dropped first: the dataplane gets SIGTERM and cleans up before its
    // namespace goes.
    dataplane: Proc,
    dp: Netns,
    h1: Netns,
    h2: Netns,
    h3: Netns,
    scratch: Scratch,
    admin: std::path::PathBuf,
    feed: std::path::PathBuf,
    tap: String,
    prefix: String,
}

impl Topo {
    fn new(driver: Driver) -> Result<Topo> {
        Self::with(driver, |c| c)
    }

    /// `tune` changes the node config (cores, poll mode, memory) from the defaults.
    fn with(driver: Driver, tune: impl FnOnce(DataplaneConfig) -> DataplaneConfig) -> Result<Topo> {
        let scratch = Scratch::new("dp")?;
        let dp = Netns::new("dp")?;
        let h1 = Netns::new("h1")?;
        let h2 = Netns::new("h2")?;
        let h3 = Netns::new("h3")?;
        let t = tag();
        let (dl, dw, dd) = (format!("cl{t}"), format!("cw{t}"), format!("cd{t}"));
        let tap = format!("ct{t}");
        veth(&dl, &dp, "eth0", &h1)?;
        veth(&dw, &dp, "eth0", &h2)?;
        veth(&dd, &dp, "eth0", &h3)?;
        for i in [&dl, &dw, &dd] {
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
            (&h3, "10.3.0.30/24", "10.3.0.1"),
        ] {
            h.addr("eth0", addr)?;
            h.run(&["ip", "route", "add", "default", "via", gw])?;
            // veth leaves TCP/UDP checksums to "hardware" (CHECKSUM_PARTIAL);
            // a userspace forwarder sees them unfinished. Real NICs fill them.
            h.run(&["ethtool", "-K", "eth0", "tx", "off"])?;
        }
        let drv = match driver {
            Driver::AfPacket => "af_packet",
            Driver::AfXdp => "af_xdp",
        };
        // Jumbo frames on the af_packet WAN (its limit is the packet socket's frame).
        let wan_mtu = match driver {
            Driver::AfPacket => 9000,
            Driver::AfXdp => 1500,
        };
        for h in [&h2, &h3] {
            h.run(&["ip", "link", "set", "eth0", "mtu", &wan_mtu.to_string()])?;
        }
        let admin = scratch.file("admin.sock");
        let feed = scratch.file("feed.sock");
        let prefix = format!("e2e{t}");
        let cfg = DataplaneConfig::new(&format!("e2e{t}"), "10.2.0.1")
            .admin_socket(&admin)
            .feed_socket(&feed)
            .arp_retry_ms(200)
            .file_prefix(&prefix)
            .port(Port::new("lan", drv, &dl, "10.1.0.1/24").proxy_arp())
            .port(
                Port::new("wan", drv, &dw, "10.2.0.1/24")
                    .exception_tap(&tap)
                    .mtu(wan_mtu),
            )
            .port(Port::new("dmz", drv, &dd, "10.3.0.1/24").mtu(wan_mtu));
        let cfg_path = tune(cfg).write(&scratch.file("node.toml"))?;
        let dataplane = start_dataplane(&dp, &cfg_path, &scratch.file("dataplane.log"))?;
        Ok(Topo {
            dp,
            h1,
            h2,
            h3,
            dataplane,
            scratch,
            admin,
            feed,
            tap,
            prefix,
        })
    }

    fn cerctl(&self, args: &[&str]) -> Result<String> {
        let cerctl = bin("cerctl");
        let admin = self.admin.to_str().unwrap();
        let feed = self.feed.to_str().unwrap();
        let mut full = vec![
            cerctl.to_str().unwrap(),
            "dataplane",
            "--admin-socket",
            admin,
        ];
        if args[0] == "feed" {
            full.extend_from_slice(&["feed", "--socket", feed]);
            full.extend_from_slice(&args[1..]);
        } else {
            full.extend_from_slice(args);
        }
        Ok(String::from_utf8_lossy(&sh(&full)?.stdout).into_owned())
    }

    fn responder(&self, h: &Netns, ip: &str, name: &str) -> Result<Proc> {
        let script = self.scratch.file("responder.py");
        std::fs::write(&script, RESPONDER)?;
        h.run(&["ip", "addr", "add", &format!("{ip}/32"), "dev", "eth0"])?;
        let p = h.spawn(
            &["/usr/bin/python3", script.to_str().unwrap(), ip, name],
            &self.scratch.file(&format!("resp-{name}.log")),
        )?;
        std::thread::sleep(Duration::from_millis(300));
        Ok(p)
    }

    fn fetch(&self, from: &Netns, ip: &str) -> String {
        let script = self.scratch.file("fetch.py");
        std::fs::write(&script, FETCH).unwrap();
        let out = from.try_run(&["/usr/bin/python3", script.to_str().unwrap(), ip]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
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
}

fn forwarding_scenario(driver: Driver) -> Result<()> {
    let _g = serial();
    require_root();
    let mut t = Topo::new(driver)?;
    let pid = t.dataplane.pid();

    // ARP and forwarding between hosts on different ports.
    assert!(
        t.h1.ping_until("10.2.0.20", Duration::from_secs(10)),
        "h1 -> h2\n{}",
        t.dump()
    );
    assert!(t.h1.ping("10.3.0.30", 3), "h1 -> h3\n{}", t.dump());
    let neigh = admin(&t.admin, "neighbors")?;
    let learned: Vec<&str> = neigh
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["ip"].as_str())
        .collect();
    for ip in ["10.1.0.10", "10.2.0.20", "10.3.0.30"] {
        assert!(learned.contains(&ip), "{ip} not learned: {neigh}");
    }
    // The hosts resolved the router by the dataplane's ARP replies.
    let h1_neigh = String::from_utf8_lossy(&t.h1.run(&["ip", "neigh", "show", "10.1.0.1"])?.stdout)
        .into_owned();
    let ports = admin(&t.admin, "ports")?;
    let lan_mac = ports[0]["mac"].as_str().unwrap().to_string();
    assert!(
        h1_neigh.contains(&lan_mac),
        "h1 sees {h1_neigh}, lan port is {lan_mac}"
    );

    // TTL expiry: ICMP time exceeded from the router address.
    let out =
        t.h1.try_run(&["ping", "-c", "1", "-W", "1", "-t", "1", "10.2.0.20"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("From 10.2.0.1") && text.contains("Time to live exceeded"),
        "{text}"
    );

    // Exception path: the TAP's kernel answers for the router address, and can ping a host.
    assert!(
        t.h2.ping("10.2.0.1", 2),
        "h2 -> router via TAP\n{}",
        t.dump()
    );
    assert!(t.dp.ping("10.2.0.20", 2), "TAP kernel -> h2\n{}", t.dump());
    if driver == Driver::AfPacket {
        // MTU 9000 on two af_packet ports: 8028-byte packets with DF are
        // forwarded both ways (h2 <-> h3).
        let out = t.h2.try_run(&[
            "ping",
            "-c",
            "2",
            "-W",
            "2",
            "-M",
            "do",
            "-s",
            "8000",
            "10.3.0.30",
        ]);
        assert!(
            out.status.success(),
            "jumbo echo through the af_packet ports: {}\ndp links: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&t.dp.try_run(&["ip", "-s", "link"]).stdout),
            t.dump()
        );
        // The TAP carries at most 1500: a jumbo frame for the router is a named drop.
        let out = t.h2.try_run(&[
            "ping", "-c", "1", "-W", "1", "-M", "do", "-s", "8000", "10.2.0.1",
        ]);
        assert!(!out.status.success());
        assert!(
            counter(&t.admin, "drops", "exception_path_too_big") >= 1,
            "{}",
            t.dump()
        );
        assert!(
            t.h2.ping("10.2.0.1", 1),
            "small echo to the router after a jumbo one"
        );
    }
    // A port without a TAP: the dataplane answers echo itself.
    assert!(t.h1.ping("10.1.0.1", 2), "h1 -> lan address\n{}", t.dump());

    // A /32 fed over the socket moves without a restart.
    let _r2 = t.responder(&t.h2, "10.77.60.10", "h2")?;
    let _r3 = t.responder(&t.h3, "10.77.60.10", "h3")?;
    t.cerctl(&["feed", "endpoint-set", "10.77.60.10", "--port", "wan"])?;
    let got = t.fetch(&t.h1, "10.77.60.10");
    assert_eq!(
        got,
        "h2",
        "{}\nresponder: {}",
        t.dump(),
        std::fs::read_to_string(t.scratch.file("resp-h2.log")).unwrap_or_default()
    );
    t.cerctl(&["feed", "endpoint-set", "10.77.60.10", "--port", "dmz"])?;
    assert_eq!(t.fetch(&t.h1, "10.77.60.10"), "h3", "{}", t.dump());
    t.cerctl(&["feed", "endpoint-del", "10.77.60.10"])?;
    let out = t.h1.try_run(&["ping", "-c", "1", "-W", "1", "10.77.60.10"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Destination Net Unreachable"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Proxy ARP: 10.1.0.77 lives at h3 but is inside h1's subnet.
    t.h3.run(&["ip", "addr", "add", "10.1.0.77/32", "dev", "eth0"])?;
    t.cerctl(&["feed", "endpoint-set", "10.1.0.77", "--port", "dmz"])?;
    t.cerctl(&["feed", "proxy-arp-add", "10.1.0.77"])?;
    assert!(
        !t.h1.ping("10.1.0.77", 2),
        "proxy ARP answered while the gate is closed"
    );
    assert!(counter(&t.admin, "events", "proxy_arp_inactive_silent") > 0);
    t.cerctl(&["feed", "proxy-arp-active", "true"])?;
    t.h1.run(&["ip", "neigh", "flush", "dev", "eth0"])?;
    assert!(
        t.h1.ping_until("10.1.0.77", Duration::from_secs(5)),
        "proxy ARP\n{}",
        t.dump()
    );
    let n = String::from_utf8_lossy(&t.h1.run(&["ip", "neigh", "show", "10.1.0.77"])?.stdout)
        .into_owned();
    assert!(
        n.contains(&lan_mac),
        "10.1.0.77 resolves to the router: {n}"
    );
    t.cerctl(&["feed", "garp", "lan", "10.1.0.77", "--count", "2"])?;
    // The ack says the manager queued the burst; a polling core sends it
    // (and counts it) on its next turn.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while counter(&t.admin, "events", "gratuitous_arp_sent") < 2
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(counter(&t.admin, "events", "gratuitous_arp_sent"), 2);

    // Garbage on the feed socket: refused, the dataplane keeps forwarding.
    {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(&t.feed)?;
        s.write_all(b"\x00\x01garbage{{{\n")?;
        let mut answer = String::new();
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let _ = s.read_to_string(&mut answer);
        assert!(answer.contains("\"type\":\"error\""), "{answer}");
    }
    let feed = admin(&t.admin, "feed")?;
    assert!(feed["errors"].as_u64().unwrap() >= 1, "{feed}");
    assert!(t.h1.ping("10.2.0.20", 2), "forwarding after feed garbage");
    assert_eq!(t.dataplane.pid(), pid, "same process throughout");

    // Graceful shutdown removes what it installed.
    let code = t.dataplane.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{}", t.dataplane.log_text());
    let rules = String::from_utf8_lossy(&t.dp.run(&["nft", "list", "tables"])?.stdout).into_owned();
    assert!(
        !rules.contains(&t.prefix),
        "nftables table left behind: {rules}"
    );
    assert!(!t.feed.exists() && !t.admin.exists());
    let links = String::from_utf8_lossy(&t.dp.run(&["ip", "link"])?.stdout).into_owned();
    assert!(!links.contains(&t.tap), "TAP left behind");
    Ok(())
}

#[test]
fn forwarding_arp_feed_and_exception_path_on_af_packet() -> Result<()> {
    forwarding_scenario(Driver::AfPacket)
}

#[test]
fn forwarding_arp_feed_and_exception_path_on_af_xdp() -> Result<()> {
    forwarding_scenario(Driver::AfXdp)
}

/// Two polling lcores (sharing CPU 1 here; pinned to their own CPUs in
/// production): each owns queue i of every port, flows are spread over the
/// queues by the port (PACKET_FANOUT hash for af_packet), and both forward.
#[test]
fn two_polling_cores_each_own_a_queue() -> Result<()> {
    let _g = serial();
    require_root();
    let t = Topo::with(Driver::AfPacket, |c| c.cores(&[1, 2]).cpus(&[1, 1]))?;
    let cores = admin(&t.admin, "counters")?;
    assert_eq!(cores.as_array().unwrap().len(), 2, "{cores}");
    assert!(
        t.h1.ping_until("10.2.0.20", Duration::from_secs(10)),
        "{}",
        t.dump()
    );
    let script = t.scratch.file("responder.py");
    std::fs::write(&script, RESPONDER)?;
    let _r = t.h2.spawn(
        &[
            "/usr/bin/python3",
            script.to_str().unwrap(),
            "10.2.0.20",
            "h2",
        ],
        &t.scratch.file("r.log"),
    )?;
    std::thread::sleep(Duration::from_millis(300));
    // Many TCP connections = many flows (distinct source ports).
    for _ in 0..40 {
        assert_eq!(t.fetch(&t.h1, "10.2.0.20"), "h2", "{}", t.dump());
    }
    let cores = admin(&t.admin, "counters")?;
    for c in cores.as_array().unwrap() {
        let lan = c["rx"]["lan"].as_u64().unwrap_or(0);
        let fwd = c["events"]["forwarded"].as_u64().unwrap_or(0);
        assert!(
            lan > 0 && fwd > 0,
            "lcore {} did no work: {cores}",
            c["lcore"]
        );
    }
    Ok(())
}

/// RTT (ms) of `count` pings from `from` to `dst` every `interval_ms`:
/// (min, avg, max) from ping's summary line.
fn ping_rtts(from: &Netns, dst: &str, count: u32, interval_ms: u32) -> Result<(f64, f64, f64)> {
    let out = from.try_run(&[
        "ping",
        "-c",
        &count.to_string(),
        "-i",
        &format!("{:.3}", f64::from(interval_ms) / 1000.0),
        "-q",
        dst,
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // rtt min/avg/max/mdev = 0.051/0.072/0.210/0.020 ms
    let nums: Vec<f64> = text
        .lines()
        .find(|l| l.contains("min/avg/max"))
        .and_then(|l| l.split('=').nth(1))
        .map(|v| {
            v.trim()
                .trim_end_matches("ms")
                .split('/')
                .filter_map(|x| x.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default();
    if nums.len() < 3 || !text.contains(&format!("{count} received")) {
        bail!("ping {dst}: {text}");
    }
    Ok((nums[0], nums[1], nums[2]))
}

/// utime + stime of a process, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(") ").next().unwrap_or("");
    let f: Vec<u64> = after
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // After the comm: the state (not a number, skipped), then ppid...: utime
    // and stime (fields 14 and 15 of stat) are at 10 and 11.
    let (u, s) = (
        f.get(10).copied().unwrap_or(0),
        f.get(11).copied().unwrap_or(0),
    );
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (u + s) as f64 / tick
}

/// Poll mode `shared` on af_packet ports with an exception TAP: an idle
/// core sleeps on its ports' events (the PMD's packet sockets, the TAP's rx
/// interrupt) and costs almost no CPU, yet a ping through it is answered
/// at once (no back-off wait), and `show counters` says what wakes it.
#[test]
fn idle_cores_sleep_on_port_events_and_wake_for_traffic() -> Result<()> {
    idle_scenario(Driver::AfPacket, "af_packet")
}

/// The same on af_xdp ports, whose sockets have no getsockname: the core
/// finds them through sock_diag and sleeps on them too.
#[test]
fn idle_cores_sleep_on_af_xdp_socket_events() -> Result<()> {
    idle_scenario(Driver::AfXdp, "af_xdp")
}

fn idle_scenario(driver: Driver, kind: &str) -> Result<()> {
    let _g = serial();
    require_root();
    let t = Topo::with(driver, |c| c.poll_mode("shared"))?;
    assert!(
        t.h1.ping_until("10.2.0.20", Duration::from_secs(10)),
        "{}",
        t.dump()
    );
    let c = &admin(&t.admin, "counters")?[0];
    let sources: Vec<&str> = c["wake_sources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(c["poll_mode"], "shared", "{c}");
    for want in [
        format!("lan ({kind} socket"),
        format!("wan ({kind} socket"),
        format!("dmz ({kind} socket"),
        "(rx interrupt)".to_string(),
    ] {
        assert!(
            sources.iter().any(|s| s.contains(&want)),
            "{want}: {sources:?}\n{c}"
        );
    }
    assert!(c["wake_timer_for"].as_array().unwrap().is_empty(), "{c}");
    // Idle: the dataplane process uses almost nothing.
    std::thread::sleep(Duration::from_millis(500));
    let pid = t.dataplane.pid();
    let (cpu0, t0) = (cpu_secs(pid), std::time::Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let share = (cpu_secs(pid) - cpu0) / t0.elapsed().as_secs_f64();
    eprintln!(
        "idle shared-mode dataplane: {:.1}% of a core",
        share * 100.0
    );
    assert!(
        share < 0.10,
        "an idle shared-mode dataplane used {share:.2} of a core"
    );
    // Sparse pings (one per 50 ms: the core sleeps between them) are
    // answered at once: woken by traffic, not by a timer.
    let (min, avg, max) = ping_rtts(&t.h1, "10.2.0.20", 40, 50)?;
    eprintln!("sparse ping RTT through a sleeping core: min {min} avg {avg} max {max} ms");
    let c = &admin(&t.admin, "counters")?[0];
    assert!(c["wake_events"].as_u64().unwrap_or(0) >= 40, "{c}");
    assert!(
        avg < 2.0 && max < 20.0,
        "idle RTT avg {avg} ms, max {max} ms\n{}",
        t.dump()
    );
    Ok(())
}

/// A port that cannot signal traffic (forced here with `idle_wake =
/// "timer"`; memif and PCI ports are so) is polled every back-off bound by
/// a sleeping core: no packet waits longer, whatever the traffic pattern.
#[test]
fn without_port_events_a_packet_waits_at_most_the_backoff_bound() -> Result<()> {
    let _g = serial();
    require_root();
    let t = Topo::with(Driver::AfPacket, |c| {
        c.poll_mode("shared")
            .idle_wake("timer")
            .idle_backoff_us(3000)
    })?;
    assert!(
        t.h1.ping_until("10.2.0.20", Duration::from_secs(10)),
        "{}",
        t.dump()
    );
    let c = &admin(&t.admin, "counters")?[0];
    assert_eq!(c["wake_bound_us"], 3000, "{c}");
    assert!(!c["wake_timer_for"].as_array().unwrap().is_empty(), "{c}");
    // Each crossing waits at most one bound (3 ms) for the next poll; a
    // round trip crosses twice. Sparse pings land anywhere in the sleep.
    let (min, avg, max) = ping_rtts(&t.h1, "10.2.0.20", 40, 37)?;
    eprintln!("RTT with a 3 ms back-off bound: min {min} avg {avg} max {max} ms");
    let c = &admin(&t.admin, "counters")?[0];
    assert!(c["wake_timeouts"].as_u64().unwrap_or(0) > 100, "{c}");
    assert!(
        max < 2.0 * 3.0 + 4.0,
        "RTT max {max} ms exceeds two back-off bounds plus slack (min {min}, avg {avg})\n{}",
        t.dump()
    );
    // The timer, not the traffic, woke the core: the waits show.
    assert!(avg > 0.5, "RTT avg {avg} ms: did an event wake the core?");
    Ok(())
}

/// Restores the 2 MiB hugepage pool (and removes a mount it made) on drop.
struct HugepageGuard {
    original: String,
    mounted_by_us: bool,
}

impl HugepageGuard {
    const NR: &'static str = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";

    fn reserve(mb: u32) -> Result<HugepageGuard> {
        let original = std::fs::read_to_string(Self::NR)?.trim().to_string();
        let had_mount = std::fs::read_to_string("/proc/mounts")?.contains("hugetlbfs");
        let guard = HugepageGuard {
            original,
            mounted_by_us: !had_mount,
        };
        sh(&[
            bin("cer-hugepages").to_str().unwrap(),
            "ensure",
            "--mb",
            &mb.to_string(),
        ])?;
        Ok(guard)
    }
}

impl Drop for HugepageGuard {
    fn drop(&mut self) {
        let hp = bin("cer-hugepages");
        if self.mounted_by_us {
            let _ = sh(&[hp.to_str().unwrap(), "unmount", "--path", "/dev/hugepages"]);
        }
        let _ = sh(&[hp.to_str().unwrap(), "reserve", "--pages", &self.original]);
    }
}

/// The production memory path: EAL on hugetlbfs (reserved and mounted by
/// cer-hugepages, restored afterwards), forwarding as on --no-huge.
#[test]
fn forwarding_on_hugepages() -> Result<()> {
    let _g = serial();
    require_root();
    let _pages = HugepageGuard::reserve(320)?;
    let mut t = Topo::with(Driver::AfPacket, |c| c.hugepages(true))?;
    assert!(
        t.dataplane.log_text().contains("EAL") && !t.dataplane.log_text().contains("--no-huge")
    );
    assert!(
        t.h1.ping_until("10.2.0.20", Duration::from_secs(10)),
        "{}",
        t.dump()
    );
    assert!(t.h1.ping("10.3.0.30", 2), "{}", t.dump());
    stops_and_leaves_no_hugepage_files(&mut t)
}

/// SIGTERM: a clean exit, and no hugepage file of the dataplane's prefix left.
fn stops_and_leaves_no_hugepage_files(t: &mut Topo) -> Result<()> {
    assert_eq!(
        t.dataplane.terminate(Duration::from_secs(10)),
        Some(0),
        "{}",
        t.dataplane.log_text()
    );
    let left: Vec<_> = std::fs::read_dir("/dev/hugepages")?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(&t.prefix))
        .collect();
    assert!(left.is_empty(), "hugepage files left: {left:?}");
    Ok(())
}

/// `dataplane.memory.secondary_processes`: DPDK's own `dpdk-dumpcap`
/// attaches to the running dataplane (`rte_pdump_init`) and captures a
/// port's traffic; the dataplane still removes its hugepage files at exit.
#[test]
fn dpdk_dumpcap_attaches_with_secondary_processes() -> Result<()> {
    let _g = serial();
    require_root();
    let _pages = HugepageGuard::reserve(320)?;
    let mut t = Topo::with(Driver::AfPacket, |c| {
        c.hugepages(true).secondary_processes(true)
    })?;
    assert!(
        t.h1.ping_until("10.2.0.20", Duration::from_secs(10)),
        "{}",
        t.dump()
    );
    assert!(
        t.dataplane
            .log_text()
            .contains("dpdk-dumpcap --file-prefix"),
        "{}",
        t.dataplane.log_text()
    );
    let file = t.scratch.file("dumpcap.pcapng");
    let file_s = file.to_str().unwrap().to_string();
    let (ns, prefix) = (t.dp.name.clone(), t.prefix.clone());
    let dumpcap = std::thread::spawn(move || {
        ns_try(
            &ns,
            &[
                "dpdk-dumpcap",
                &format!("--file-prefix={prefix}"),
                "-i",
                "0",
                "-f",
                "icmp",
                "-a",
                "duration:6",
                "-w",
                &file_s,
            ],
        )
    });
    std::thread::sleep(Duration::from_secs(3));
    assert!(t.h1.ping("10.2.0.20", 3), "{}", t.dump());
    let out = dumpcap.join().expect("dumpcap thread");
    assert!(out.status.success(), "dpdk-dumpcap: {}", text(&out));
    let read = sh(&[
        "tshark",
        "-r",
        file.to_str().unwrap(),
        "-T",
        "fields",
        "-e",
        "ip.src",
        "-e",
        "ip.dst",
    ])?;
    let table = String::from_utf8_lossy(&read.stdout).into_owned();
    assert!(
        table
            .lines()
            .filter(|l| l.starts_with("10.1.0.10\t10.2.0.20"))
            .count()
            >= 3,
        "the lan port's echo requests, as dumpcap saw them:\n{table}\n{}",
        text(&out)
    );
    stops_and_leaves_no_hugepage_files(&mut t)
}

#[test]
fn bad_config_is_a_clear_error() -> Result<()> {
    let s = Scratch::new("cfg")?;
    let p = s.file("bad.toml");
    std::fs::write(
        &p,
        "[node]\nname = \"x\"\nrouter_address = \"10.0.0.1\"\n[[port]]\nname = \"lan\"\ndriver = \"af_packet\"\niface = \"v0\"\naddress = \"10.0.0.1/24\"\nmtu = 50\n",
    )?;
    let out = std::process::Command::new(bin("cer-dataplane"))
        .args(["--config", p.to_str().unwrap()])
        .output()?;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("port[0] (lan).mtu") && err.contains("50"),
        "{err}"
    );
    std::fs::write(&p, "[node]\nname = \"x\"\nrouter_adress = \"10.0.0.1\"\n")?;
    let out = std::process::Command::new(bin("cer-dataplane"))
        .args(["--config", p.to_str().unwrap()])
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("router_adress"), "{err}");
    let out = std::process::Command::new(bin("cer-dataplane"))
        .args(["--config", "/nonexistent/node.toml"])
        .output()
        .context("run")?;
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/node.toml"));
    Ok(())
}

/// `cerctl dataplane reload` and SIGHUP on the real binary: a static route,
/// a tunnel and proxy ARP change live, in one snapshot, while a ping stream
/// through the router loses nothing and the process, its ports and its
/// feed state stay; a restart field or a broken file changes nothing.
#[test]
fn node_file_reload_is_live_and_all_or_nothing() -> Result<()> {
    let _g = serial();
    require_root();
    let t = Topo::new(Driver::AfPacket)?;
    let pid = t.dataplane.pid();
    let node = t.scratch.file("node.toml");
    let original = std::fs::read_to_string(&node)?;
    assert!(
        t.h1.ping_until("10.2.0.20", Duration::from_secs(10)),
        "h1 -> h2\n{}",
        t.dump()
    );
    // 10.9.0.5 lives on h3, behind no route the dataplane knows yet.
    t.h3.run(&["ip", "addr", "add", "10.9.0.5/32", "dev", "eth0"])?;
    assert!(!t.h1.ping("10.9.0.5", 1), "routed before the reload");
    // A fed endpoint: it must survive the reload.
    t.cerctl(&["feed", "endpoint-set", "10.77.0.9", "--port", "lan"])?;
    let generation = |t: &Topo| -> u64 {
        admin(&t.admin, "snapshot").map_or(0, |s| s["version"].as_u64().unwrap_or(0))
    };

    // A ping stream across the reload.
    let h1 = t.h1.name.clone();
    let stream = std::thread::spawn(move || {
        ns_try(
            &h1,
            &[
                "ping",
                "-q",
                "-c",
                "300",
                "-i",
                "0.01",
                "-W",
                "1",
                "10.2.0.20",
            ],
        )
    });
    std::thread::sleep(Duration::from_millis(500));
    let before = generation(&t);
    std::fs::write(
        &node,
        original.replacen("proxy_arp = true", "proxy_arp = false", 1)
            + "\n[[route]]\nprefix = \"10.9.0.0/16\"\nvia = [\"10.3.0.30\"]\n\n\
               [[tunnel]]\nid = 7\nkind = \"ipip\"\nlocal = \"10.2.0.1\"\nremote = \"10.2.0.20\"\n",
    )?;
    let out = t.cerctl(&["reload"])?;
    assert!(
        out.contains("route: 0 -> 1 static routes")
            && out.contains("tunnel[7] (ipip) added")
            && out.contains("port[lan].proxy_arp: true -> false"),
        "{out}\n{}",
        t.dump()
    );
    assert_eq!(generation(&t), before + 1, "one snapshot for the reload");
    let ping = stream.join().expect("the ping thread");
    let log = text(&ping);
    assert!(
        ping.status.success() && log.contains("300 received"),
        "packets lost across the reload:\n{log}"
    );
    assert!(t.h1.ping("10.9.0.5", 2), "the new route\n{}", t.dump());
    let ports = admin(&t.admin, "ports")?;
    assert_eq!(ports[0]["proxy_arp"], false, "{ports}");
    assert_eq!(ports[0]["link_down_events"], 0, "{ports}");
    let tunnels = admin(&t.admin, "tunnels")?.to_string();
    assert!(tunnels.contains("\"id\":7"), "{tunnels}");
    let fib = t.cerctl(&["show", "fib", "--json"])?;
    assert!(fib.contains("10.77.0.9"), "the fed endpoint is gone: {fib}");

    // A restart field refuses the whole file, naming it: the route stays.
    std::fs::write(
        &node,
        original.replacen("name = \"wan\"", "name = \"wan\"\nrx_desc = 512", 1),
    )?;
    let out = reload_refused(&t)?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("port[wan].rx_desc")
            && err.contains("nothing applied"),
        "{err}"
    );
    assert!(
        t.h1.ping("10.9.0.5", 1),
        "a refused reload changed the route"
    );
    // A broken file: the file and the parser's complaint, nothing applied.
    std::fs::write(&node, "[node\n")?;
    let out = reload_refused(&t)?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("node.toml"), "{err}");

    // SIGHUP: back to the original file.
    std::fs::write(&node, &original)?;
    send_signal(pid, libc::SIGHUP);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while admin(&t.admin, "tunnels")?.to_string().contains("\"id\":7") {
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP did not reload\n{}",
            t.dump()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!t.h1.ping("10.9.0.5", 1), "the route outlived its removal");
    assert_eq!(admin(&t.admin, "ports")?[0]["proxy_arp"], true);
    assert!(t.h1.ping("10.2.0.20", 1));
    assert_eq!(t.dataplane.pid(), pid);
    assert!(t.dataplane.log_text().contains("reload (SIGHUP)"));
    Ok(())
}

/// `cerctl dataplane reload`, expected to fail: its output.
fn reload_refused(t: &Topo) -> Result<std::process::Output> {
    Ok(std::process::Command::new(bin("cerctl"))
        .args([
            "dataplane",
            "--admin-socket",
            t.admin.to_str().unwrap(),
            "reload",
        ])
        .output()?)
}
