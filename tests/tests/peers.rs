//! The real-peer launchers of `cer_e2e::peers` proven with real sessions:
//! gobgpd as route reflector, BIRD and FRR as its clients, iBGP AS 65000 on
//! one bridged LAN.
//!
//! ```text
//!            lan (bridge br0, own netns)
//!      /               |                \
//!   rr: gobgpd     bird: BIRD        frr: FRR
//!   10.10.0.1      10.10.0.2         10.10.0.3
//! ```

use anyhow::Result;
use cer_e2e::peers::*;
use cer_e2e::*;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const ASN: u32 = 65000;
const RR: &str = "10.10.0.1";
const BIRD: &str = "10.10.0.2";
const FRR: &str = "10.10.0.3";
/// A next hop on the LAN for routes gobgpd originates (BIRD treats a route
/// whose NEXT_HOP is one of its own addresses as withdrawn).
const HOST: &str = "10.10.0.9";
const UP: Duration = Duration::from_secs(20);
const PROPAGATE: Duration = Duration::from_secs(10);

/// Field order is drop order: daemons stop before their namespaces go.
struct Topo {
    frr: Frr,
    bird: Bird,
    gobgp: GoBgp,
    _frr_ns: Netns,
    _bird_ns: Netns,
    rr_ns: Netns,
    _lan: Lan,
    scratch: Scratch,
}

impl Topo {
    fn new() -> Result<Topo> {
        let scratch = Scratch::new("peers")?;
        let lan = Lan::new()?;
        let rr_ns = Netns::new("rr")?;
        let bird_ns = Netns::new("bd")?;
        let frr_ns = Netns::new("fr")?;
        lan.attach(&rr_ns, "eth0", &format!("{RR}/24"))?;
        lan.attach(&bird_ns, "eth0", &format!("{BIRD}/24"))?;
        lan.attach(&frr_ns, "eth0", &format!("{FRR}/24"))?;

        let t0 = Instant::now();
        let gobgp = GoBgp::start(
            &rr_ns,
            &scratch.path,
            &gobgp_rr_config(ASN, RR, RR, &[BIRD, FRR]),
        )?;
        let t_gobgp = t0.elapsed();
        let bird = Bird::start(
            &bird_ns,
            &scratch.path,
            &bird_client_config(ASN, BIRD, BIRD, &[RR], &[]),
        )?;
        let t_bird = t0.elapsed() - t_gobgp;
        let frr = Frr::start(
            &frr_ns,
            &scratch.path,
            &frr_client_config(ASN, FRR, &[RR], &[]),
        )?;
        eprintln!(
            "started: gobgpd {t_gobgp:?}, BIRD {t_bird:?}, FRR {:?}",
            t0.elapsed() - t_gobgp - t_bird
        );
        Ok(Topo {
            frr,
            bird,
            gobgp,
            _frr_ns: frr_ns,
            _bird_ns: bird_ns,
            rr_ns,
            _lan: lan,
            scratch,
        })
    }

    /// Waits for all four session ends; returns the time until all were up.
    fn establish(&self) -> Result<Duration> {
        let t0 = Instant::now();
        let g_bird = self.gobgp.wait_established(BIRD, UP)?;
        let g_frr = self.gobgp.wait_established(FRR, UP)?;
        self.bird.wait_established(&bird_protocol_name(RR), UP)?;
        self.frr.wait_established(RR, UP)?;
        eprintln!(
            "established: gobgpd<->BIRD after {g_bird:?}, gobgpd<->FRR after {:?}, all after {:?}",
            g_bird + g_frr,
            t0.elapsed()
        );
        Ok(t0.elapsed())
    }
}

#[test]
fn route_reflection_between_bird_and_frr() -> Result<()> {
    require_root();
    let _g = serial();
    let topo = Topo::new()?;
    topo.establish()?;

    // gobgpd's neighbor view.
    let ns = topo.gobgp.neighbors()?;
    for addr in [BIRD, FRR] {
        let n = ns.iter().find(|n| n.address == addr).expect("neighbor");
        assert_eq!(n.state, "established");
        assert_eq!(n.peer_as, ASN);
        assert_eq!(n.router_id.as_deref(), Some(addr));
    }
    let summary = topo.frr.bgp_summary_json()?;
    assert_eq!(summary["peers"][RR]["state"], "Established", "{summary}");

    // A route originated in gobgpd reaches both clients with its community
    // and local-pref.
    let t0 = Instant::now();
    topo.gobgp
        .add_route("10.99.0.1/32", HOST, &["65000:100"], Some(200))?;
    let want = |r: &RibEntry| r.has_community("65000:100") && r.local_pref == Some(200);
    let at_bird = topo.bird.wait_route("10.99.0.1/32", PROPAGATE, &want)?;
    let at_frr = topo.frr.wait_route("10.99.0.1/32", PROPAGATE, &want)?;
    eprintln!("gobgpd route at BIRD and FRR after {:?}", t0.elapsed());
    assert_eq!(at_bird.next_hop, HOST);
    assert_eq!(at_frr.next_hop, HOST);
    assert_eq!(at_frr.communities, vec!["65000:100".to_string()]);
    assert!(at_frr.as_path.is_empty() && at_bird.as_path.is_empty());
    let local = topo.gobgp.rib()?;
    let g = best_for(&local, "10.99.0.1/32").expect("in gobgpd's RIB");
    assert!(g.best && g.has_community("65000:100") && g.local_pref == Some(200));

    // A route originated by BIRD is reflected to FRR with ORIGINATOR_ID
    // (BIRD's router id) and CLUSTER_LIST (the RR's cluster id).
    let t0 = Instant::now();
    topo.bird.reconfigure(&bird_client_config(
        ASN,
        BIRD,
        BIRD,
        &[RR],
        &["10.98.0.1/32"],
    ))?;
    let r = topo
        .frr
        .wait_route("10.98.0.1/32", PROPAGATE, &|r| r.best)?;
    eprintln!("BIRD route reflected to FRR after {:?}", t0.elapsed());
    assert_eq!(r.originator_id.as_deref(), Some(BIRD), "{r:?}");
    assert_eq!(r.cluster_list, vec![RR.to_string()], "{r:?}");
    assert_eq!(r.next_hop, BIRD, "{r:?}");
    assert!(r.best, "{r:?}");
    assert_eq!(r.origin, "igp");
    // gobgpd got it from BIRD (adj-in), without reflection attributes.
    let adj_in = topo.gobgp.rib_in(BIRD)?;
    let a = best_for(&adj_in, "10.98.0.1/32").expect("in adj-in from BIRD");
    assert_eq!(a.next_hop, BIRD);
    assert_eq!(a.originator_id, None);
    // ...and does not send it back to its originator.
    assert!(best_for(&topo.gobgp.rib_out(BIRD)?, "10.98.0.1/32").is_none());
    assert!(best_for(&topo.gobgp.rib_out(FRR)?, "10.98.0.1/32").is_some());

    // Withdrawing it at BIRD removes it at the RR and at FRR.
    topo.bird
        .reconfigure(&bird_client_config(ASN, BIRD, BIRD, &[RR], &[]))?;
    topo.frr.wait_withdrawn("10.98.0.1/32", PROPAGATE)?;
    topo.gobgp.wait_withdrawn("10.98.0.1/32", PROPAGATE)?;

    // Withdrawing the gobgpd route removes it at both clients.
    topo.gobgp.del_route("10.99.0.1/32")?;
    topo.bird.wait_withdrawn("10.99.0.1/32", PROPAGATE)?;
    topo.frr.wait_withdrawn("10.99.0.1/32", PROPAGATE)?;
    Ok(())
}

#[test]
fn attributes_read_alike_from_all_three() -> Result<()> {
    require_root();
    let _g = serial();
    let topo = Topo::new()?;
    topo.establish()?;
    // Multi-valued attributes, set through the gobgp CLI directly.
    topo.gobgp.gobgp(&[
        "global",
        "rib",
        "add",
        "-a",
        "ipv4",
        "10.99.1.0/24",
        "nexthop",
        HOST,
        "community",
        "65000:1,65000:2",
        "large-community",
        "65000:7:8",
        "med",
        "42",
        "local-pref",
        "150",
        "origin",
        "egp",
        "aspath",
        "65001,65002",
    ])?;
    let check = |who: &str, r: &RibEntry| {
        assert_eq!(r.communities, vec!["65000:1", "65000:2"], "{who}: {r:?}");
        assert_eq!(r.large_communities, vec!["65000:7:8"], "{who}: {r:?}");
        assert_eq!(r.med, Some(42), "{who}: {r:?}");
        assert_eq!(r.local_pref, Some(150), "{who}: {r:?}");
        assert_eq!(r.origin, "egp", "{who}: {r:?}");
        assert_eq!(r.as_path, vec![65001, 65002], "{who}: {r:?}");
        assert_eq!(r.next_hop, HOST, "{who}: {r:?}");
    };
    let present = |r: &RibEntry| r.med == Some(42);
    check(
        "gobgpd",
        &topo.gobgp.wait_route("10.99.1.0/24", PROPAGATE, &present)?,
    );
    let b = topo.bird.wait_route("10.99.1.0/24", PROPAGATE, &present)?;
    check("BIRD", &b);
    let f = topo.frr.wait_route("10.99.1.0/24", PROPAGATE, &present)?;
    check("FRR", &f);
    // Reflected: both clients see the RR as originator and cluster.
    for (who, r) in [("BIRD", &b), ("FRR", &f)] {
        assert_eq!(r.originator_id.as_deref(), Some(RR), "{who}: {r:?}");
        assert_eq!(r.cluster_list, vec![RR.to_string()], "{who}: {r:?}");
    }
    Ok(())
}

/// Bulk origination through MRT injection; reports the rate. Size with
/// CER_BULK_ROUTES (default 20000).
#[test]
fn gobgp_bulk_injection() -> Result<()> {
    require_root();
    let _g = serial();
    let n: u32 = std::env::var("CER_BULK_ROUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let topo = Topo::new()?;
    topo.establish()?;
    let t0 = Instant::now();
    topo.gobgp.add_many(
        Ipv4Addr::new(10, 200, 0, 0),
        n,
        HOST.parse()?,
        &["65000:300"],
        Some(120),
    )?;
    let inject = t0.elapsed();
    let (dests, _) = topo.gobgp.rib_count()?;
    assert_eq!(dests, n as u64);
    eprintln!(
        "injected {n} /32s into gobgpd in {inject:?} ({:.0} routes/s)",
        n as f64 / inject.as_secs_f64()
    );
    // FRR receives them all.
    let t1 = Instant::now();
    let deadline = Duration::from_secs(60 + n as u64 / 1000);
    loop {
        let s = topo.frr.bgp_summary_json()?;
        let got = s["peers"][RR]["pfxRcd"].as_u64().unwrap_or(0);
        if got == n as u64 {
            break;
        }
        assert!(t1.elapsed() < deadline, "FRR has {got} of {n} prefixes");
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("FRR received all {n} after {:?} more", t1.elapsed());
    // Spot-check attributes on the last one, at FRR.
    let last = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 200, 0, 0)) + n - 1);
    let out = topo
        .frr
        .vtysh(&format!("show bgp ipv4 unicast {last}/32 json"))?;
    let r = parse_frr_routes(&out)?;
    assert_eq!(r.len(), 1, "{out}");
    assert!(
        r[0].has_community("65000:300") && r[0].local_pref == Some(120),
        "{r:?}"
    );
    assert_eq!(r[0].next_hop, HOST);

    topo.gobgp.del_all()?;
    let t2 = Instant::now();
    loop {
        let s = topo.frr.bgp_summary_json()?;
        if s["peers"][RR]["pfxRcd"].as_u64().unwrap_or(0) == 0 {
            break;
        }
        assert!(t2.elapsed() < deadline, "FRR still has routes");
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("withdrawn at FRR after {:?}", t2.elapsed());
    Ok(())
}

#[test]
fn errors_name_daemon_and_command() -> Result<()> {
    require_root();
    let _g = serial();
    let topo = Topo::new()?;

    // Time-out: a neighbor that is not configured never comes up.
    let e = format!(
        "{:#}",
        topo.gobgp
            .wait_established("10.10.0.99", Duration::from_millis(500))
            .unwrap_err()
    );
    assert!(e.contains("gobgpd@") && e.contains("10.10.0.99"), "{e}");
    assert!(
        e.contains("gobgp neighbor -j") && e.contains("timed out"),
        "{e}"
    );
    let e = format!(
        "{:#}",
        topo.bird
            .wait_established("nosuch", Duration::from_millis(500))
            .unwrap_err()
    );
    assert!(
        e.contains("BIRD@") && e.contains("show protocols all nosuch"),
        "{e}"
    );

    let e = format!(
        "{:#}",
        topo.frr
            .wait_established("10.10.0.99", Duration::from_millis(500))
            .unwrap_err()
    );
    assert!(
        e.contains("FRR@") && e.contains("show bgp neighbors json"),
        "{e}"
    );

    // Command failures.
    let e = format!("{:#}", topo.frr.vtysh("show nonsense").unwrap_err());
    assert!(
        e.contains("FRR@") && e.contains("vtysh") && e.contains("show nonsense"),
        "{e}"
    );
    let e = format!("{:#}", topo.bird.birdc("show nonsense").unwrap_err());
    assert!(
        e.contains("BIRD@") && e.contains("birdc") && e.contains("show nonsense"),
        "{e}"
    );
    let e = format!("{:#}", topo.gobgp.del_route("not-a-prefix").unwrap_err());
    assert!(e.contains("gobgpd@") && e.contains("gobgp -u"), "{e}");

    // Unparsable output names the daemon and the command ...
    let e = format!("{:#}", topo.gobgp.gobgp_json(&["global"]).unwrap_err());
    assert!(
        e.contains("gobgpd@") && e.contains("`gobgp global`") && e.contains("JSON"),
        "{e}"
    );
    let e = format!("{:#}", topo.frr.vtysh_json("show version").unwrap_err());
    assert!(
        e.contains("FRR@") && e.contains("show version") && e.contains("JSON"),
        "{e}"
    );
    // ... and the parsers say what they expected ...
    let e = format!("{:#}", parse_gobgp_rib("{not json").unwrap_err());
    assert!(e.contains("not JSON"), "{e}");
    let e = format!("{:#}", parse_frr_routes("[1,2]").unwrap_err());
    assert!(e.contains("no `routes`"), "{e}");
    let e = format!("{:#}", parse_bird_routes("garbage line\n").unwrap_err());
    assert!(e.contains("line 1"), "{e}");

    // ... and a daemon that cannot start names itself and shows its log.
    let e = format!(
        "{:#}",
        Bird::start(&topo.rr_ns, &topo.scratch.path, "this is not bird config;")
            .err()
            .unwrap()
    );
    assert!(
        e.contains("BIRD@") && e.contains("exited") && e.contains("syntax error"),
        "{e}"
    );
    let e = format!(
        "{:#}",
        Frr::start(&topo.rr_ns, &topo.scratch.path, "router bgp notanumber\n")
            .err()
            .unwrap()
    );
    assert!(
        e.contains("FRR@") && e.contains("rejected") && e.contains("router bgp notanumber"),
        "{e}"
    );
    Ok(())
}

#[test]
fn drop_stops_daemons_and_removes_files() -> Result<()> {
    require_root();
    let _g = serial();
    let scratch = Scratch::new("peers-drop")?;
    let ns = Netns::new("dr")?;
    ns.addr("lo", "10.10.9.1/32")?;
    let g = GoBgp::start(
        &ns,
        &scratch.path,
        &gobgp_rr_config(ASN, "10.10.9.1", "10.10.9.1", &[]),
    )?;
    let b = Bird::start(
        &ns,
        &scratch.path,
        &bird_client_config(ASN, "10.10.9.1", "10.10.9.1", &[], &["10.98.9.0/24"]),
    )?;
    let f = Frr::start(
        &ns,
        &scratch.path,
        &frr_client_config(ASN, "10.10.9.1", &[], &[]),
    )?;
    let pids = [g.pid(), b.pid(), f.bgpd_pid(), f.zebra_pid()];
    let dirs = [g.dir.clone(), b.dir.clone(), f.dir.clone()];
    // BIRD's own static route is in its table.
    assert!(best_for(&b.routes()?, "10.98.9.0/24").is_some());
    for p in pids {
        assert!(std::path::Path::new(&format!("/proc/{p}")).exists());
    }
    drop((g, b, f));
    for p in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{p}")).exists(),
            "pid {p} still exists"
        );
    }
    for d in dirs {
        assert!(
            !d.exists() || std::env::var_os("CER_KEEP_SCRATCH").is_some(),
            "{} left",
            d.display()
        );
    }
    let left =
        String::from_utf8_lossy(&sh(&["ip", "netns", "pids", &ns.name])?.stdout).into_owned();
    assert!(left.trim().is_empty(), "left in {}: {left}", ns.name);
    Ok(())
}
