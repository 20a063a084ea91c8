//! ADD-PATH (RFC 7911) interop, both directions, with the real peers.
//!
//! 1. cer-control as the route reflector, FRR, BIRD 2 and gobgpd as its
//!    clients, all four on one LAN. The three clients originate the same /32
//!    (three owner candidates, as when a /32 moves between sites). cer sends
//!    every path to each client (`add_path = "both"`), so each client holds
//!    the other two clients' paths, not only the reflector's best; one
//!    withdrawal takes away that path alone.
//!
//!    ```text
//!                      lan (bridge, own netns)
//!       /              |               |              \
//!   cer (RR)         FRR             BIRD           gobgpd
//!   10.10.0.1        10.10.0.2       10.10.0.3      10.10.0.4
//!                    all three originate 10.99.0.10/32
//!    ```
//!
//! 2. cer-control as a client (`add_path = "receive"`) of three reflectors
//!    at once, FRR (`addpath-tx-all-paths`), BIRD (`add paths tx`) and gobgpd
//!    (`send-max`); two gobgpd clients of all three originate the same /32.
//!    cer holds both paths from every reflector (six, told apart by path id)
//!    and its ownership view (`explain`) lists all six candidates; a
//!    withdrawal at one originator leaves the other's three.
//!
//!    ```text
//!   cer 10.10.0.1 ── FRR RR 10.10.0.2, BIRD RR 10.10.0.3, gobgpd RR 10.10.0.4
//!                    ── gobgpd A 10.10.0.5, gobgpd B 10.10.0.6 (clients of all three)
//!    ```

use anyhow::Result;
use cer_e2e::peers::*;
use cer_e2e::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::Duration;

const ASN: u32 = 65000;
const SHARED: &str = "10.99.0.10/32";
const UP: Duration = Duration::from_secs(40);
const SETTLE: Duration = Duration::from_secs(20);

/// One gobgpd neighbor: address, passive, route-reflector client, ADD-PATH
/// (receive, send-max).
struct GobgpPeer<'a> {
    addr: &'a str,
    passive: bool,
    rr_client: bool,
    add_path: Option<(bool, u8)>,
}

/// gobgpd TOML with per-neighbor passive mode, reflection and ADD-PATH.
fn gobgp_conf(router_id: &str, peers: &[GobgpPeer]) -> String {
    let mut t = format!(
        "[global.config]\n  as = {ASN}\n  router-id = \"{router_id}\"\n  local-address-list = [\"{router_id}\"]\n"
    );
    for p in peers {
        let _ = write!(
            t,
            "\n[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{}\"\n    peer-as = {ASN}\n  [neighbors.transport.config]\n    local-address = \"{router_id}\"\n    passive-mode = {}\n  [neighbors.timers.config]\n    connect-retry = 1\n",
            p.addr, p.passive
        );
        if p.rr_client {
            let _ = write!(
                t,
                "  [neighbors.route-reflector.config]\n    route-reflector-client = true\n    route-reflector-cluster-id = \"{router_id}\"\n"
            );
        }
        if let Some((receive, send_max)) = p.add_path {
            let _ = write!(
                t,
                "  [neighbors.add-paths.config]\n    receive = {receive}\n    send-max = {send_max}\n"
            );
        }
    }
    t
}

/// The next hops of every path a daemon holds for `prefix`.
fn next_hops(routes: &[RibEntry], prefix: &str) -> BTreeSet<String> {
    routes
        .iter()
        .filter(|r| r.prefix == prefix)
        .map(|r| r.next_hop.clone())
        .collect()
}

fn set(hops: &[&str]) -> BTreeSet<String> {
    hops.iter().map(|h| h.to_string()).collect()
}

/// cer-control's neighbor at `addr` (`show bgp summary`).
fn cer_neighbor(cer: &Control, addr: &str) -> Option<Value> {
    let v = cer.json(&["show", "bgp", "summary"]).ok()?;
    v["neighbors"]
        .as_array()?
        .iter()
        .find(|n| n["address"].as_str().is_some_and(|a| a.starts_with(addr)))
        .cloned()
}

fn cer_caps(cer: &Control, addr: &str) -> Vec<String> {
    cer_neighbor(cer, addr)
        .and_then(|n| {
            n["capabilities"].as_array().map(|a| {
                a.iter()
                    .filter_map(|c| c.as_str().map(String::from))
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// cer-control's paths for `prefix`: (from, path id, next hop).
fn cer_paths(cer: &Control, prefix: &str) -> BTreeSet<(String, u64, String)> {
    cer.json(&["show", "bgp", "rib", prefix])
        .ok()
        .and_then(|v| {
            v.as_array().map(|a| {
                a.iter()
                    .map(|p| {
                        (
                            p["from"].as_str().unwrap_or_default().to_string(),
                            p["path_id"].as_u64().unwrap_or(u64::MAX),
                            p["next_hop"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
        })
        .unwrap_or_default()
}

#[test]
fn cer_reflector_sends_every_path_to_frr_bird_and_gobgp() -> Result<()> {
    const CER: &str = "10.10.0.1";
    const FRR: &str = "10.10.0.2";
    const BIRD: &str = "10.10.0.3";
    const GOBGP: &str = "10.10.0.4";
    let scratch = Scratch::new("addpath-rr")?;
    let lan = Lan::new()?;
    let cer_ns = Netns::new("cer")?;
    let frr_ns = Netns::new("fr")?;
    let bird_ns = Netns::new("bd")?;
    let gobgp_ns = Netns::new("gb")?;
    lan.attach(&cer_ns, "eth0", &format!("{CER}/24"))?;
    lan.attach(&frr_ns, "eth0", &format!("{FRR}/24"))?;
    lan.attach(&bird_ns, "eth0", &format!("{BIRD}/24"))?;
    lan.attach(&gobgp_ns, "eth0", &format!("{GOBGP}/24"))?;

    let mut body = ControlConfig::new("rr", CER, ASN)
        .listen(&[CER])
        .hold_time(90)
        .connect_retry_secs(1)
        .route_reflector()
        .sam(
            "65000:1001",
            "10.255.0.1/32",
            &scratch.file("endpoints.json"),
        );
    for (addr, name) in [(FRR, "frr"), (BIRD, "bird"), (GOBGP, "gobgp")] {
        body = body.neighbor(
            Neighbor::internal(addr)
                .rr_client()
                .description(name)
                .add_path("both"),
        );
    }
    let cer = Control::start(Some(&cer_ns), &scratch.path, "cer", &body.to_string())?;
    // FRR 8.4 offers to receive several paths on every session by default.
    let frr = Frr::start(
        &frr_ns,
        &scratch.path,
        &frr_client_config(ASN, FRR, &[CER], &[SHARED]),
    )?;
    let bird = Bird::start(
        &bird_ns,
        &scratch.path,
        &bird_client_config(ASN, BIRD, BIRD, &[CER], &[SHARED]).replace(
            "ipv4 { import all; export all; };",
            "ipv4 { import all; export all; add paths on; };",
        ),
    )?;
    let gobgp = GoBgp::start(
        &gobgp_ns,
        &scratch.path,
        &gobgp_conf(
            GOBGP,
            &[GobgpPeer {
                addr: CER,
                passive: true,
                rr_client: false,
                add_path: Some((true, 8)),
            }],
        ),
    )?;
    gobgp.add_route(SHARED, GOBGP, &[], None)?;
    frr.wait_established(CER, UP)?;
    bird.wait_established(&bird_protocol_name(CER), UP)?;
    gobgp.wait_established(CER, UP)?;

    // cer sends ADD-PATH to all three; BIRD also sends it ADD-PATH.
    for addr in [FRR, BIRD, GOBGP] {
        let caps = cer_caps(&cer, addr);
        assert!(
            caps.iter().any(|c| c == "add-path-send"),
            "{addr}: {caps:?}"
        );
    }
    assert!(cer_caps(&cer, BIRD).iter().any(|c| c == "add-path-receive"));

    // Three candidates at cer; each client holds the other two next to its own.
    wait_until("cer holds the three paths", SETTLE, || {
        cer_paths(&cer, SHARED).len() == 3
    })?;
    let all = set(&[FRR, BIRD, GOBGP]);
    let took = wait_until(
        "every client holds the other clients' paths",
        SETTLE,
        || {
            let frr_hops = frr.routes_json().map(|r| next_hops(&r, SHARED));
            let bird_hops = bird.routes().map(|r| next_hops(&r, SHARED));
            let gobgp_hops = gobgp.rib().map(|r| next_hops(&r, SHARED));
            // FRR shows its own network with next hop 0.0.0.0, BIRD its static
            // blackhole with none.
            frr_hops.is_ok_and(|h| h.is_superset(&set(&[BIRD, GOBGP])))
                && bird_hops.is_ok_and(|h| h.is_superset(&set(&[FRR, GOBGP])))
                && gobgp_hops.is_ok_and(|h| h.is_superset(&set(&[FRR, BIRD])))
        },
    )?;
    println!(
        "add-path reflection: all clients hold all {} paths after {took:?}",
        all.len()
    );

    // gobgpd withdraws: only its path goes, the others stay at every client.
    gobgp.del_route(SHARED)?;
    wait_until("gobgp's path leaves FRR and BIRD alone", SETTLE, || {
        let frr_hops = frr.routes_json().map(|r| next_hops(&r, SHARED));
        let bird_hops = bird.routes().map(|r| next_hops(&r, SHARED));
        frr_hops.is_ok_and(|h| h.contains(BIRD) && !h.contains(GOBGP))
            && bird_hops.is_ok_and(|h| h.contains(FRR) && !h.contains(GOBGP))
    })?;
    let hops = next_hops(&gobgp.rib()?, SHARED);
    assert_eq!(hops, set(&[FRR, BIRD]), "gobgpd keeps both reflected paths");
    assert_eq!(cer_paths(&cer, SHARED).len(), 2);
    Ok(())
}

#[test]
fn cer_client_receives_every_path_from_frr_bird_and_gobgp_reflectors() -> Result<()> {
    const CER: &str = "10.10.0.1";
    const FRR: &str = "10.10.0.2";
    const BIRD: &str = "10.10.0.3";
    const RR: &str = "10.10.0.4";
    const A: &str = "10.10.0.5";
    const B: &str = "10.10.0.6";
    let scratch = Scratch::new("addpath-client")?;
    let lan = Lan::new()?;
    let cer_ns = Netns::new("cer")?;
    let frr_ns = Netns::new("fr")?;
    let bird_ns = Netns::new("bd")?;
    let rr_ns = Netns::new("rr")?;
    let a_ns = Netns::new("ga")?;
    let b_ns = Netns::new("gb")?;
    for (ns, addr) in [
        (&cer_ns, CER),
        (&frr_ns, FRR),
        (&bird_ns, BIRD),
        (&rr_ns, RR),
        (&a_ns, A),
        (&b_ns, B),
    ] {
        lan.attach(ns, "eth0", &format!("{addr}/24"))?;
    }
    let reflectors = [(FRR, "frr"), (BIRD, "bird"), (RR, "gobgp")];
    let mut body = ControlConfig::new("client", CER, ASN)
        .listen(&[CER])
        .hold_time(90)
        .connect_retry_secs(1)
        .sam(
            "65000:1001",
            "10.255.0.1/32",
            &scratch.file("endpoints.json"),
        );
    for (addr, name) in reflectors {
        body = body.neighbor(
            Neighbor::internal(addr)
                .description(name)
                .add_path("receive"),
        );
    }
    let cer = Control::start(Some(&cer_ns), &scratch.path, "cer", &body.to_string())?;

    // FRR reflects for A, B and cer, and sends cer every path.
    let mut frr_conf = frr_config(&IbgpConf {
        asn: ASN,
        router_id: FRR,
        local_addr: FRR,
        neighbors: &[CER, A, B],
        rr_clients: true,
        passive: false,
        networks: &[],
    });
    frr_conf = frr_conf.replace(
        &format!("  neighbor {CER} route-reflector-client\n"),
        &format!(
            "  neighbor {CER} route-reflector-client\n  neighbor {CER} addpath-tx-all-paths\n"
        ),
    );
    let _frr = Frr::start(&frr_ns, &scratch.path, &frr_conf)?;
    // BIRD reflects for all three, with ADD-PATH send toward cer only.
    let bird_conf = bird_config(&IbgpConf {
        asn: ASN,
        router_id: BIRD,
        local_addr: BIRD,
        neighbors: &[CER, A, B],
        rr_clients: true,
        passive: false,
        networks: &[],
    });
    let cer_proto = format!("protocol bgp {} {{", bird_protocol_name(CER));
    let at = bird_conf.find(&cer_proto).expect("cer's protocol");
    let bird_conf = format!(
        "{}{}",
        &bird_conf[..at],
        bird_conf[at..].replacen(
            "ipv4 { import all; export all; };",
            "ipv4 { import all; export all; add paths tx; };",
            1
        )
    );
    let _bird = Bird::start(&bird_ns, &scratch.path, &bird_conf)?;
    // gobgpd reflects for all three (dials A and B, waits for cer), up to 8 paths to cer.
    let _rr = GoBgp::start(
        &rr_ns,
        &scratch.path,
        &gobgp_conf(
            RR,
            &[
                GobgpPeer {
                    addr: CER,
                    passive: true,
                    rr_client: true,
                    add_path: Some((false, 8)),
                },
                GobgpPeer {
                    addr: A,
                    passive: false,
                    rr_client: true,
                    add_path: None,
                },
                GobgpPeer {
                    addr: B,
                    passive: false,
                    rr_client: true,
                    add_path: None,
                },
            ],
        ),
    )?;
    // The originators: clients of all three reflectors, waiting to be dialed.
    let originator = |ns: &Netns, addr: &str| {
        let peers: Vec<GobgpPeer> = [FRR, BIRD, RR]
            .iter()
            .map(|r| GobgpPeer {
                addr: r,
                passive: true,
                rr_client: false,
                add_path: None,
            })
            .collect();
        GoBgp::start(ns, &scratch.path, &gobgp_conf(addr, &peers))
    };
    let a = originator(&a_ns, A)?;
    let b = originator(&b_ns, B)?;
    a.add_route(SHARED, A, &[], None)?;
    b.add_route(SHARED, B, &[], None)?;
    for (addr, _) in reflectors {
        wait_until(&format!("cer's session to {addr}"), UP, || {
            cer_neighbor(&cer, addr).is_some_and(|n| n["state"] == "Established")
        })?;
        let caps = cer_caps(&cer, addr);
        assert!(
            caps.iter().any(|c| c == "add-path-receive"),
            "{addr}: {caps:?}"
        );
    }
    for g in [&a, &b] {
        for r in [FRR, BIRD, RR] {
            g.wait_established(r, UP)?;
        }
    }

    // Two paths from every reflector, told apart by path id.
    let want: BTreeSet<(String, String)> = [FRR, BIRD, RR]
        .iter()
        .flat_map(|r| {
            [
                (r.to_string(), A.to_string()),
                (r.to_string(), B.to_string()),
            ]
        })
        .collect();
    let took = wait_until("cer holds both paths from each reflector", SETTLE, || {
        let got: BTreeSet<(String, String)> = cer_paths(&cer, SHARED)
            .into_iter()
            .map(|(from, _, hop)| (from, hop))
            .collect();
        got == want
    })?;
    println!("add-path receive: 6 paths from 3 reflectors after {took:?}");
    let paths = cer_paths(&cer, SHARED);
    assert_eq!(paths.len(), 6, "{paths:?}");
    for r in [FRR, BIRD, RR] {
        let ids: BTreeSet<u64> = paths
            .iter()
            .filter(|(from, _, _)| from == r)
            .map(|(_, id, _)| *id)
            .collect();
        assert_eq!(ids.len(), 2, "{r}: two distinct path ids: {paths:?}");
    }
    // The ownership view sees every candidate, not one per reflector.
    let ex = cer.json(&["explain", "10.99.0.10"])?;
    let candidates = ex["candidates"].as_array().map_or(0, Vec::len);
    assert_eq!(candidates, 6, "{ex}");

    // A withdraws: its path leaves from every reflector, B's three stay.
    a.del_route(SHARED)?;
    let b_only: BTreeSet<(String, String)> = [FRR, BIRD, RR]
        .iter()
        .map(|r| (r.to_string(), B.to_string()))
        .collect();
    wait_until("A's paths leave cer, B's stay", SETTLE, || {
        let got: BTreeSet<(String, String)> = cer_paths(&cer, SHARED)
            .into_iter()
            .map(|(from, _, hop)| (from, hop))
            .collect();
        got == b_only
    })?;
    Ok(())
}
