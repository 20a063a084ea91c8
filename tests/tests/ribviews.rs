//! Per-neighbor RIB views against a real peer: FRR (eBGP, AS 65001,
//! `soft-reconfiguration inbound` so that it keeps what we send as
//! received) and cer-control with an import policy that rejects one of
//! FRR's prefixes and raises the LOCAL_PREF of another. What cerctl shows
//! as received before policy is what FRR says it advertised to us; what
//! cerctl shows as advertised is what FRR says it received from us.
//!
//!   c (cer-control 10.10.0.1, AS 65000) -- lan -- f (FRR 10.10.0.7, AS 65001)

use anyhow::Result;
use cer_e2e::peers::{Frr, Lan};
use cer_e2e::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

const IMPORT: &str = r#"
[[policy]]
name = "in"
default = "accept"
[[policy.term]]
match = { prefix = ["10.88.2.0/24"] }
action = { accept = false }
[[policy.term]]
match = { prefix = ["10.88.3.0/24"] }
action = { accept = true, set_local_pref = 300 }
"#;

fn frr_conf() -> String {
    let mut c = String::from(
        "hostname ribv\nlog stdout informational\n!\nrouter bgp 65001\n bgp router-id 10.10.0.7\n no bgp ebgp-requires-policy\n no bgp network import-check\n neighbor 10.10.0.1 remote-as 65000\n neighbor 10.10.0.1 timers connect 1\n address-family ipv4 unicast\n",
    );
    for n in 1..=3 {
        c.push_str(&format!("  network 10.88.{n}.0/24 route-map C\n"));
    }
    c.push_str("  neighbor 10.10.0.1 soft-reconfiguration inbound\n exit-address-family\n!\nroute-map C permit 10\n set community 65001:5\n set metric 20\n!\n");
    c
}

/// The prefixes of an FRR `advertisedRoutes` / `receivedRoutes` object.
fn frr_prefixes(v: &Value, key: &str) -> BTreeSet<String> {
    v[key]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn cer_prefixes(v: &Value) -> BTreeSet<String> {
    v["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["prefix"].as_str().unwrap().to_string())
        .collect()
}

fn route<'a>(v: &'a Value, prefix: &str) -> &'a Value {
    v["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["prefix"] == prefix)
        .unwrap_or_else(|| panic!("{prefix} not in {v}"))
}

#[test]
fn received_and_advertised_routes_match_frr() -> Result<()> {
    let _g = serial();
    require_root();
    let scratch = Scratch::new("ribviews")?;
    let lan = Lan::new()?;
    let c_ns = Netns::new("rvc")?;
    let f_ns = Netns::new("rvf")?;
    lan.attach(&c_ns, "eth0", "10.10.0.1/24")?;
    lan.attach(&f_ns, "eth0", "10.10.0.7/24")?;
    let frr = Frr::start(&f_ns, &scratch.path, &frr_conf())?;
    let cfg = ControlConfig::new("c", "10.10.0.1", 65000)
        .listen(&["10.10.0.1"])
        .fast_timers()
        .graceful_restart_secs(0)
        .neighbor(Neighbor::ebgp("10.10.0.7", 65001).import_policy("in"))
        .sam("65000:1001", "10.255.0.1/32", &scratch.file("ep.json"))
        .endpoints(&["10.77.60.70", "10.77.60.71"])
        .raw(IMPORT)
        .to_string();
    let c = Control::start(Some(&c_ns), &scratch.path, "c", &cfg)?;
    frr.wait_established("10.10.0.1", Duration::from_secs(20))?;
    let show = |side: &str| c.json(&["show", "bgp", "neighbor", "10.10.0.7", side]);
    wait_until(
        "FRR's three prefixes received",
        Duration::from_secs(15),
        || {
            show("received-routes").is_ok_and(|v| {
                cer_prefixes(&v)
                    .iter()
                    .filter(|p| p.starts_with("10.88."))
                    .count()
                    == 3
            })
        },
    )?;
    let frr_adv = "show ip bgp neighbors 10.10.0.1 advertised-routes json";
    let frr_rcv = "show ip bgp neighbors 10.10.0.1 received-routes json";
    wait_until("our routes at FRR", Duration::from_secs(15), || {
        frr.vtysh_json(frr_rcv)
            .is_ok_and(|v| frr_prefixes(&v, "receivedRoutes").len() == 3)
    })?;

    // Received: pre-policy is what FRR advertised, every path (FRR also
    // sends our own routes back, which import rejects as an AS loop).
    wait_until(
        "FRR's advertised set in our view",
        Duration::from_secs(15),
        || match (show("received-routes"), frr.vtysh_json(frr_adv)) {
            (Ok(r), Ok(a)) => cer_prefixes(&r) == frr_prefixes(&a, "advertisedRoutes"),
            _ => false,
        },
    )?;
    let rcv = show("received-routes")?;
    assert_eq!(rcv["keep_received"], true);
    let advertised_by_frr = frr.vtysh_json(frr_adv)?;
    assert_eq!(
        cer_prefixes(&rcv),
        frr_prefixes(&advertised_by_frr, "advertisedRoutes"),
        "{rcv}\n{advertised_by_frr}"
    );
    for n in 1..=3 {
        let r = route(&rcv, &format!("10.88.{n}.0/24"));
        let pre = &r["pre_policy"];
        assert_eq!(pre["as_path"], "65001", "{r}");
        assert_eq!(pre["next_hop"], "10.10.0.7", "{r}");
        assert_eq!(pre["communities"], serde_json::json!(["65001:5"]), "{r}");
        assert_eq!(pre["med"], 20, "{r}");
        assert_eq!(pre["origin"], "igp", "{r}");
        assert_eq!(pre["local_pref"], Value::Null, "eBGP sends none: {r}");
    }
    // Post-policy: accepted as is, rejected, modified.
    let r1 = route(&rcv, "10.88.1.0/24");
    assert_eq!(r1["import"], "accepted");
    assert_eq!(r1["post_policy"]["local_pref"], 100);
    assert_eq!(r1["best"], true);
    assert!(
        r1["signature"].as_str().is_some_and(|s| s.len() == 16),
        "{r1}"
    );
    let r2 = route(&rcv, "10.88.2.0/24");
    assert_eq!(r2["import"], "rejected");
    assert_eq!(r2["reason"], "import policy");
    assert_eq!(r2["post_policy"], Value::Null);
    let r3 = route(&rcv, "10.88.3.0/24");
    assert_eq!(r3["import"], "modified");
    assert_eq!(r3["post_policy"]["local_pref"], 300);
    // The Loc-RIB agrees.
    let rib = c.json(&["show", "bgp", "rib"])?;
    let in_rib: BTreeSet<String> = rib
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| {
            r["prefix"]
                .as_str()
                .filter(|p| p.starts_with("10.88."))
                .map(String::from)
        })
        .collect();
    assert_eq!(
        in_rib,
        ["10.88.1.0/24", "10.88.3.0/24"]
            .into_iter()
            .map(String::from)
            .collect()
    );
    // One prefix (an address means its /32; a /24 as given).
    let one = c.json(&[
        "show",
        "bgp",
        "neighbor",
        "10.10.0.7",
        "received-routes",
        "10.88.3.0/24",
    ])?;
    assert_eq!(cer_prefixes(&one).len(), 1);

    // Advertised: what FRR received from us, before its own policy.
    let adv = show("advertised-routes")?;
    let received_by_frr = frr.vtysh_json(frr_rcv)?;
    assert_eq!(
        cer_prefixes(&adv),
        frr_prefixes(&received_by_frr, "receivedRoutes"),
        "{adv}\n{received_by_frr}"
    );
    for (prefix, r) in received_by_frr["receivedRoutes"].as_object().unwrap() {
        let ours = route(&adv, prefix);
        assert_eq!(
            ours["attrs"]["next_hop"], r["nextHop"],
            "{prefix}: {ours} vs {r}"
        );
        assert_eq!(
            ours["attrs"]["as_path"], r["path"],
            "{prefix}: {ours} vs {r}"
        );
    }
    // Our endpoints and marker; never FRR's own prefixes back to it.
    assert!(cer_prefixes(&adv).contains("10.77.60.70/32"));
    assert!(!cer_prefixes(&adv).iter().any(|p| p.starts_with("10.88.")));

    // The table output has every route and the outcome.
    let table = c.ctl(&["show", "bgp", "neighbor", "10.10.0.7", "received-routes"])?;
    assert!(
        table.contains("10.88.2.0/24") && table.contains("rejected"),
        "{table}"
    );
    assert!(table.contains("modified"), "{table}");
    // Unknown peer, malformed prefix: errors naming them.
    let err = |args: &[&str]| -> String {
        let mut full = vec![bin("cerctl").display().to_string()];
        full.extend(args.iter().map(|s| s.to_string()));
        full.extend(["--socket".to_string(), c.socket.display().to_string()]);
        let out = std::process::Command::new(&full[0])
            .args(&full[1..])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = err(&["show", "bgp", "neighbor", "10.10.0.99", "received-routes"]);
    assert!(
        e.contains("no neighbor 10.10.0.99") && e.contains("10.10.0.7"),
        "{e}"
    );
    let e = err(&[
        "show",
        "bgp",
        "neighbor",
        "10.10.0.7",
        "advertised-routes",
        "10.88.0.0/33",
    ]);
    assert!(e.contains("'10.88.0.0/33'"), "{e}");
    Ok(())
}
