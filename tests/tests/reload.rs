//! `cerctl reload` against real peers: cer-control starts with FRR
//! (eBGP, import policy "in") and gobgpd A (iBGP); the reload removes A,
//! adds gobgpd B and changes the import policy. FRR's session is not
//! touched (FRR counts no new establishment), the new policy shows in
//! received-routes and the Loc-RIB at once, and a reload that needs a
//! session reset, or a broken file, is refused and changes nothing.
//!
//!   c (cer-control 10.10.0.1) -- lan -- f (FRR 10.10.0.7, AS 65001)
//!                                   \-- a (gobgpd 10.10.0.8), b (gobgpd 10.10.0.9)

use anyhow::Result;
use cer_e2e::peers::{gobgp_rr_config, Frr, GoBgp, Lan};
use cer_e2e::*;
use std::time::Duration;

const POLICIES: &str = r#"
[[policy]]
name = "in"
default = "accept"
[[policy.term]]
match = { prefix = ["10.88.2.0/24"] }
action = { accept = false }
[[policy]]
name = "in2"
default = "accept"
[[policy.term]]
match = { prefix = ["10.88.1.0/24"] }
action = { accept = false }
"#;

fn config(dir: &std::path::Path, policy: &str, gobgp: &str, extra: &str) -> String {
    ControlConfig::new("c", "10.10.0.1", 65000)
        .listen(&["10.10.0.1"])
        .fast_timers()
        .graceful_restart_secs(0)
        .neighbor(Neighbor::ebgp("10.10.0.7", 65001).import_policy(policy))
        .neighbor(Neighbor::internal(gobgp))
        .sam("65000:1001", "10.255.0.1/32", &dir.join("ep.json"))
        .raw(POLICIES)
        .raw(extra)
        .to_string()
}

/// FRR's count of sessions established with cer-control.
fn frr_established(frr: &Frr) -> u64 {
    frr.neighbors_json().map_or(0, |v| {
        v["10.10.0.1"]["connectionsEstablished"]
            .as_u64()
            .unwrap_or(0)
    })
}

/// FRR's own prefixes as cer-control received them (FRR also sends our
/// marker back, which import rejects as an AS loop: not FRR's).
fn received(c: &Control) -> Vec<(String, String)> {
    c.json(&["show", "bgp", "neighbor", "10.10.0.7", "received-routes"])
        .map(|v| {
            v["routes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| {
                    r["prefix"]
                        .as_str()
                        .is_some_and(|p| p.starts_with("10.88."))
                })
                .map(|r| {
                    (
                        r["prefix"].as_str().unwrap_or("").to_string(),
                        r["import"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn reload_adds_removes_and_changes_policy_without_a_reset() -> Result<()> {
    let _g = serial();
    require_root();
    let scratch = Scratch::new("reload")?;
    let lan = Lan::new()?;
    let c_ns = Netns::new("rlc")?;
    let f_ns = Netns::new("rlf")?;
    let a_ns = Netns::new("rla")?;
    let b_ns = Netns::new("rlb")?;
    lan.attach(&c_ns, "eth0", "10.10.0.1/24")?;
    lan.attach(&f_ns, "eth0", "10.10.0.7/24")?;
    lan.attach(&a_ns, "eth0", "10.10.0.8/24")?;
    lan.attach(&b_ns, "eth0", "10.10.0.9/24")?;
    let frr = Frr::start(
        &f_ns,
        &scratch.path,
        "hostname rl\nlog stdout informational\n!\nrouter bgp 65001\n bgp router-id 10.10.0.7\n no bgp ebgp-requires-policy\n no bgp network import-check\n neighbor 10.10.0.1 remote-as 65000\n neighbor 10.10.0.1 timers connect 1\n address-family ipv4 unicast\n  network 10.88.1.0/24\n  network 10.88.2.0/24\n exit-address-family\n!\n",
    )?;
    let ga = GoBgp::start(
        &a_ns,
        &scratch.path.join("a"),
        &gobgp_rr_config(65000, "10.10.0.8", "10.10.0.8", &["10.10.0.1"]),
    )?;
    let gb = GoBgp::start(
        &b_ns,
        &scratch.path.join("b"),
        &gobgp_rr_config(65000, "10.10.0.9", "10.10.0.9", &["10.10.0.1"]),
    )?;
    let c = Control::start(
        Some(&c_ns),
        &scratch.path,
        "c",
        &config(&scratch.path, "in", "10.10.0.8", ""),
    )?;
    frr.wait_established("10.10.0.1", Duration::from_secs(20))?;
    ga.wait_established("10.10.0.1", Duration::from_secs(20))?;
    wait_until(
        "FRR's routes, 10.88.2/24 rejected",
        Duration::from_secs(15),
        || received(&c).len() == 2,
    )?;
    assert_eq!(
        received(&c),
        vec![
            ("10.88.1.0/24".into(), "accepted".into()),
            ("10.88.2.0/24".into(), "rejected".into())
        ]
    );
    let established_before = frr_established(&frr);
    assert!(established_before >= 1);
    let path = scratch.path.join("c.toml");
    let original = std::fs::read_to_string(&path)?;
    let admin = &original[original.find("[admin]").unwrap()..];

    // A change that needs a session reset (FRR's remote AS) beside an
    // acceptable one: refused by name, nothing applied.
    let bad = config(&scratch.path, "in2", "10.10.0.9", "")
        .replace("remote_as = 65001", "remote_as = 65009");
    std::fs::write(&path, format!("{bad}\n{admin}"))?;
    let out = run_reload(&c);
    assert!(
        !out.0
            && out.1.contains("bgp.neighbor[10.10.0.7].remote_as")
            && out.1.contains("nothing applied"),
        "{out:?}"
    );
    // A file that does not parse: the error names the file.
    std::fs::write(&path, format!("{original}\n[bgp\n"))?;
    let out = run_reload(&c);
    assert!(!out.0 && out.1.contains("c.toml"), "{out:?}");
    assert_eq!(received(&c)[1].1, "rejected", "nothing changed");
    let s = c.json(&["show", "bgp", "summary"])?;
    assert_eq!(s["neighbors"].as_array().unwrap().len(), 2);

    // The real reload: A out, B in, import policy "in2" for FRR.
    std::fs::write(
        &path,
        format!("{}\n{admin}", config(&scratch.path, "in2", "10.10.0.9", "")),
    )?;
    let out = run_reload(&c);
    assert!(out.0, "{out:?}");
    assert!(
        out.1.contains("10.10.0.8") && out.1.contains("removed"),
        "{}",
        out.1
    );
    assert!(
        out.1.contains("10.10.0.9") && out.1.contains("added"),
        "{}",
        out.1
    );
    assert!(
        // FRR's two prefixes and our own marker it sent back.
        out.1.contains("import policy in2") && out.1.contains("re-evaluated 3"),
        "{}",
        out.1
    );
    assert_eq!(
        received(&c),
        vec![
            ("10.88.1.0/24".into(), "rejected".into()),
            ("10.88.2.0/24".into(), "accepted".into())
        ]
    );
    let rib = c.json(&["show", "bgp", "rib"])?;
    let prefixes: Vec<&str> = rib
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["prefix"].as_str())
        .collect();
    assert!(
        prefixes.contains(&"10.88.2.0/24") && !prefixes.contains(&"10.88.1.0/24"),
        "{rib}"
    );
    gb.wait_established("10.10.0.1", Duration::from_secs(20))?;
    wait_until("A gone at cer-control", Duration::from_secs(5), || {
        c.json(&["show", "bgp", "summary"]).is_ok_and(|s| {
            let n = s["neighbors"].as_array().cloned().unwrap_or_default();
            n.len() == 2
                && !n.iter().any(|x| {
                    x["address"]
                        .as_str()
                        .is_some_and(|a| a.starts_with("10.10.0.8"))
                })
        })
    })?;

    // The pool, live: an endpoint of this node outside the new pool is
    // refused by name; a wider pool is applied and the endpoint stays ours.
    c.ctl(&["endpoint", "add", "10.77.60.5"])?;
    let now = std::fs::read_to_string(&path)?;
    assert!(now.contains("pool = [\"10.77.60.0/24\"]"), "{now}");
    std::fs::write(
        &path,
        now.replace("pool = [\"10.77.60.0/24\"]", "pool = [\"10.77.61.0/24\"]"),
    )?;
    let out = run_reload(&c);
    assert!(
        !out.0 && out.1.contains("sam.pool") && out.1.contains("10.77.60.5"),
        "{out:?}"
    );
    std::fs::write(
        &path,
        now.replace(
            "pool = [\"10.77.60.0/24\"]",
            "pool = [\"10.77.60.0/24\", \"10.77.61.0/24\"]",
        ),
    )?;
    let out = run_reload(&c);
    assert!(out.0 && out.1.contains("sam.pool"), "{out:?}");
    let owners = c.json(&["show", "owners"])?.to_string();
    assert!(owners.contains("10.77.60.5"), "{owners}");

    // FRR's session was never reset.
    assert_eq!(frr_established(&frr), established_before);
    assert_eq!(
        frr.neighbors_json()?["10.10.0.1"]["bgpState"],
        "Established"
    );
    Ok(())
}

/// `cerctl reload`: success and its stdout, or failure and its stderr.
fn run_reload(c: &Control) -> (bool, String) {
    let out = std::process::Command::new(bin("cerctl"))
        .args(["reload", "--socket"])
        .arg(&c.socket)
        .output()
        .expect("cerctl runs");
    let text = if out.status.success() {
        &out.stdout
    } else {
        &out.stderr
    };
    (
        out.status.success(),
        String::from_utf8_lossy(text).into_owned(),
    )
}
