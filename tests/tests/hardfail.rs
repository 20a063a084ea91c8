//! Hard failures on the four-site lab. With cer-control (`--rr cer`) or FRR
//! (`--rr frr`) as the reflector every CER's session to it runs multihop BFD
//! (300 ms x 3); gobgpd has none.
//! A frozen router says nothing: `scripts/lab freeze` SIGSTOPs every process
//! of the node (dataplane, cer-control, keepalived), so no FIN, no
//! NOTIFICATION, no VRRP advert. Steady 50 ms probes from AWS and OCI to the
//! on-prem /32 measure the outage, with BFD (`--rr cer`, `--rr frr`) and
//! without it (`--rr gobgp`: the reflector's 9 s hold timer and VRRP alone).

use anyhow::{ensure, Context, Result};
use cer_e2e::apps::*;
use cer_e2e::*;
use std::time::{Duration, Instant};

const PROBE_EVERY: Duration = Duration::from_millis(50);

/// The reflector's BFD session to `node`'s WAN address: `cerctl show bfd`
/// on a cer-control reflector, `show bfd peers json` on an FRR one ("Up",
/// "Down", "Init").
fn rr_bfd_state(lab: &Lab, node: &str) -> Option<String> {
    let addr = lab.node(node).ok()?["transport_address"]
        .as_str()?
        .to_string();
    if lab.state["rr"]["kind"] == "frr" {
        let dir = format!("{}/rr-frr", lab.state["run_dir"].as_str()?);
        let out = ns_run(
            lab.state["rr"]["netns"].as_str()?,
            &["vtysh", "--vty_socket", &dir, "-c", "show bfd peers json"],
        )
        .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let st = v.as_array()?.iter().find(|p| p["peer"] == addr.as_str())?["status"]
            .as_str()?
            .to_string();
        // FRR says up/down/init.
        let mut c = st.chars();
        return c
            .next()
            .map(|f| f.to_uppercase().collect::<String>() + c.as_str());
    }
    let sock = lab_rr_socket(lab)?;
    let out = sh(&[
        bin("cerctl").to_str()?,
        "show",
        "bfd",
        "--json",
        "--socket",
        &sock,
    ])
    .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["sessions"]
        .as_array()?
        .iter()
        .find(|s| s["peer"] == addr.as_str())
        .and_then(|s| s["state"].as_str().map(str::to_string))
}

fn lab_rr_socket(lab: &Lab) -> Option<String> {
    lab.state["rr"]["control_socket"]
        .as_str()
        .map(str::to_string)
}

/// Freezes the on-prem VRRP master of a lab with reflector `rr` while AWS
/// and OCI probe the on-prem /32; returns the outages (ms). With a
/// reflector that runs BFD (all but gobgpd), its BFD session to the frozen
/// node must go Down.
fn freeze_onprem_master(rr: &str) -> Result<Vec<u64>> {
    let bfd = rr != "gobgp";
    let scratch = Scratch::new("hf-freeze")?;
    let lab = Lab::up(&format!("hf{}", &rr[..1]), &["--rr", rr])?;
    let master = lab.vrrp_master().context("no on-prem VRRP master")?;
    let dst = lab.ip("onprem");
    if bfd {
        wait_until(
            &format!("the reflector's BFD to {master} Up"),
            Duration::from_secs(30),
            || rr_bfd_state(&lab, &master).as_deref() == Some("Up"),
        )?;
    }
    let mut ps = Vec::new();
    for s in ["aws", "oci"] {
        let p = Probe::start(&lab.wl(s), &dst, PROBE_EVERY, &scratch.path)?;
        p.wait_replies(5, Duration::from_secs(15))
            .with_context(|| format!("probe {s} -> {dst} before the freeze"))?;
        ps.push((s, p));
    }
    let t0 = Instant::now();
    lab.run(&["freeze", "onprem"])?;
    let bfd_down = if bfd {
        wait_until(
            &format!("the reflector's BFD to the frozen {master} Down"),
            Duration::from_secs(15),
            || rr_bfd_state(&lab, &master).as_deref() == Some("Down"),
        )?;
        // From the start of the freeze, not of the wait.
        Some(t0.elapsed())
    } else {
        None
    };
    for (s, p) in &ps {
        p.wait_replies(20, Duration::from_secs(30))
            .with_context(|| format!("{s} -> {dst} never recovered with {master} frozen"))?;
    }
    let mut outages = Vec::new();
    let label = if bfd { "BFD" } else { "no BFD" };
    for (s, p) in ps {
        let o = p.stop();
        eprintln!("OUTAGE on-prem VRRP master {master} frozen (reflector {rr}, {label}): {s} -> {dst}: {o}");
        ensure!(o.recovered, "{s} -> {dst} did not recover: {o}");
        outages.push(o.longest_gap_ms);
    }
    let new_master = lab.vrrp_master();
    eprintln!(
        "VRRP MASTER FROZEN ({master}, reflector {rr}, {label}): reflector's BFD Down after {bfd_down:?}; new VRRP master {new_master:?}; outages {outages:?} ms (BGP hold time 9 s)"
    );
    ensure!(
        new_master.is_some() && new_master.as_deref() != Some(master.as_str()),
        "no new VRRP master after freezing {master}: {new_master:?}"
    );
    // Heal thaws the node; the lab converges again.
    lab.run(&["heal", "onprem"])?;
    Ok(outages)
}

#[test]
fn onprem_vrrp_master_frozen_with_bfd() -> Result<()> {
    let _g = serial();
    require_root();
    freeze_onprem_master("cer").map(|_| ())
}

/// The same freeze with gobgpd as the reflector (no BFD): the figure BFD is
/// measured against.
#[test]
fn onprem_vrrp_master_frozen_without_bfd() -> Result<()> {
    let _g = serial();
    require_root();
    freeze_onprem_master("gobgp").map(|_| ())
}

/// The same freeze with FRR (bgpd + bfdd) as the reflector: BFD between
/// FRR's bfdd and every CER's cer-control.
#[test]
fn onprem_vrrp_master_frozen_with_frr_bfd() -> Result<()> {
    let _g = serial();
    require_root();
    freeze_onprem_master("frr").map(|_| ())
}

/// A cloud CER's WAN link cut at the WAN router (`scripts/lab cut aws`), its
/// processes running on: the reflector's BFD session to it goes Down, its
/// marker leaves the other CERs; `heal` reconnects the link and the /32
/// behind it is reached again. (One CER per cloud site: nothing can carry
/// its /32s while it is cut, until cloud pairs land.)
#[test]
fn cloud_cer_wan_cut_and_heal() -> Result<()> {
    let _g = serial();
    require_root();
    let lab = Lab::up("hfc", &[])?;
    wait_until(
        "the reflector's BFD to aws Up",
        Duration::from_secs(30),
        || rr_bfd_state(&lab, "aws").as_deref() == Some("Up"),
    )?;
    let aws_id = lab.node("aws")?["identity"]
        .as_str()
        .context("aws identity")?
        .to_string();
    let t0 = Instant::now();
    lab.run(&["cut", "aws"])?;
    wait_until(
        "the reflector's BFD to the cut aws Down",
        Duration::from_secs(15),
        || rr_bfd_state(&lab, "aws").as_deref() == Some("Down"),
    )?;
    let bfd_down = t0.elapsed();
    wait_until("aws's marker gone at oci", Duration::from_secs(15), || {
        lab.control("oci", "markers")
            .map(|m| !m.to_string().contains(&aws_id))
            .unwrap_or(false)
    })?;
    let marker_gone = t0.elapsed();
    // aws's own processes ran on through the cut.
    ensure!(
        lab.control("aws", "status").is_ok(),
        "aws's cer-control stopped answering during the cut"
    );
    eprintln!(
        "AWS WAN CUT: the reflector's BFD Down after {bfd_down:?}, aws's marker gone at oci after {marker_gone:?} (BGP hold time 9 s)"
    );
    lab.run(&["heal", "aws"])?;
    let dst = lab.ip("aws");
    let ok = ns_try(
        &lab.wl("oci"),
        &["ping", "-n", "-c", "5", "-i", "0.2", "-W", "1", &dst],
    );
    ensure!(
        ok.status.success(),
        "oci -> {dst} after heal: {}",
        text(&ok)
    );
    Ok(())
}

/// One sample of both on-prem gates after a thaw: (ms since the thaw,
/// gates open, duplicate-holder alarms per node).
type GateSample = (u64, Vec<bool>, Vec<u64>);

/// The frozen on-prem VRRP master thaws believing it is still master (so
/// does its keepalived, until VRRP sorts it out). The stall guard keeps it
/// from claiming anything: its cores hold proxy ARP from the first poll
/// after the thaw, its dataplane closes the gate and tells cer-control,
/// which waits for VRRP to settle and keepalived's JSON dump to say MASTER
/// before it opens the gate and sends gratuitous ARPs. Two gates are never
/// open at once, no duplicate-holder alarm is raised on either node, and
/// the on-prem workload reaches AWS's /32 through it all.
#[test]
fn onprem_master_thaws_without_two_holders() -> Result<()> {
    let _g = serial();
    require_root();
    let scratch = Scratch::new("hf-thaw")?;
    let lab = Lab::up("hft", &[])?;
    let master = lab.vrrp_master().context("no on-prem VRRP master")?;
    let nodes: Vec<String> = lab
        .cers("onprem")
        .iter()
        .filter_map(|c| c["node"].as_str().map(str::to_string))
        .collect();
    let other = nodes
        .iter()
        .find(|n| **n != master)
        .context("a second on-prem CER")?
        .clone();
    let alarms = |n: &str| -> Result<u64> {
        lab.dataplane(n, "proxy_arp")?["duplicate_holder_alarms"]
            .as_u64()
            .context("duplicate_holder_alarms")
    };
    let before: Vec<u64> = nodes.iter().map(|n| alarms(n)).collect::<Result<_>>()?;
    let dst = lab.ip("aws");
    let probe = Probe::start(&lab.wl("onprem"), &dst, PROBE_EVERY, &scratch.path)?;
    probe.wait_replies(5, Duration::from_secs(15))?;
    lab.run(&["freeze", &master])?;
    wait_until(
        &format!("{other} VRRP master while {master} is frozen"),
        Duration::from_secs(10),
        || {
            lab.dataplane(&other, "proxy_arp")
                .map(|p| p["active"] == true)
                .unwrap_or(false)
        },
    )?;
    std::thread::sleep(Duration::from_secs(3));
    lab.run(&["thaw", &master])?;
    let thawed = Instant::now();
    let mut samples: Vec<GateSample> = Vec::new();
    while thawed.elapsed() < Duration::from_secs(6) {
        let mut open = Vec::new();
        let mut count = Vec::new();
        for n in &nodes {
            let p = lab.dataplane(n, "proxy_arp")?;
            open.push(p["active"] == true);
            count.push(p["duplicate_holder_alarms"].as_u64().unwrap_or(0));
        }
        samples.push((thawed.elapsed().as_millis() as u64, open, count));
        std::thread::sleep(Duration::from_millis(10));
    }
    let o = probe.stop();
    let both: Vec<&GateSample> = samples.iter().filter(|s| s.1.iter().all(|o| *o)).collect();
    let first_open = |i: usize| samples.iter().find(|s| s.1[i]).map(|s| s.0);
    let after: Vec<u64> = nodes.iter().map(|n| alarms(n)).collect::<Result<_>>()?;
    let feed = lab.dataplane(&master, "feed")?;
    let vrrp = lab.control(&master, "capture")?;
    eprintln!(
        "THAW of {master} after 3 s frozen: {} samples of both gates; {master} gate open again after {:?} ms, {other} {:?}; dataplane stalls {}, gate closed on stall {}; VRRP stall holds {}; on-prem -> aws: {o}",
        samples.len(),
        first_open(nodes.iter().position(|n| *n == master).unwrap_or(0)),
        first_open(nodes.iter().position(|n| *n == other).unwrap_or(1)),
        feed["stalls"],
        feed["gate_closed_on_stall"],
        vrrp["gate"]["stall_holds"],
    );
    ensure!(
        both.is_empty(),
        "both gates open after the thaw: {:?}",
        &both[..both.len().min(5)]
    );
    ensure!(
        before == after,
        "duplicate-holder alarms after the thaw: before {before:?}, after {after:?} ({nodes:?})"
    );
    ensure!(
        feed["stalls"].as_u64().unwrap_or(0) >= 1,
        "{master}'s dataplane saw no stall: {feed}"
    );
    ensure!(
        vrrp["gate"]["stall_holds"].as_u64().unwrap_or(0) >= 1,
        "{master}'s VRRP gate did not hold after the stall: {vrrp}"
    );
    ensure!(
        samples
            .last()
            .is_some_and(|s| s.1.iter().filter(|o| **o).count() == 1),
        "no single VRRP master 6 s after the thaw: {:?}",
        samples.last()
    );
    ensure!(o.recovered, "on-prem -> aws did not recover: {o}");
    Ok(())
}

/// The on-prem VRRP master's WAN link cut at the WAN router, its processes
/// running on, with keepalived tracking the WAN (`--track-wan`: cer-control
/// writes 0/1 to a file keepalived tracks with weight 0). Without tracking
/// the cut master keeps VRRP and answers proxy ARP for /32s it can no longer
/// reach: a black hole for as long as the cut lasts. With it, its BGP
/// session goes (BFD), the file says 1, keepalived goes to FAULT and the
/// other router takes over. Probes from the on-prem workload to AWS's and
/// OCI's /32 measure the outage.
#[test]
fn onprem_master_wan_cut_with_wan_tracking() -> Result<()> {
    let _g = serial();
    require_root();
    let scratch = Scratch::new("hf-wancut")?;
    let lab = Lab::up("hfw", &["--track-wan"])?;
    let master = lab.vrrp_master().context("no on-prem VRRP master")?;
    wait_until(
        &format!("{master}'s WAN tracked as up"),
        Duration::from_secs(30),
        || {
            lab.control(&master, "capture")
                .map(|c| c["wan_track"]["wan_up"] == true)
                .unwrap_or(false)
        },
    )?;
    let mut ps = Vec::new();
    for s in ["aws", "oci"] {
        let dst = lab.ip(s);
        let p = Probe::start(&lab.wl("onprem"), &dst, PROBE_EVERY, &scratch.path)?;
        p.wait_replies(5, Duration::from_secs(15))
            .with_context(|| format!("probe onprem -> {s} before the cut"))?;
        ps.push((s, dst, p));
    }
    let t0 = Instant::now();
    lab.run(&["cut", "onprem"])?;
    wait_until(
        &format!("a new VRRP master after {master}'s WAN cut"),
        Duration::from_secs(15),
        || lab.vrrp_master().is_some_and(|m| m != master),
    )?;
    let took_over = t0.elapsed();
    for (s, dst, p) in &ps {
        p.wait_replies(20, Duration::from_secs(30))
            .with_context(|| format!("onprem -> {s} ({dst}) never recovered after the cut"))?;
    }
    let track = lab.control(&master, "capture")?;
    let mut outages = Vec::new();
    for (s, dst, p) in ps {
        let o = p.stop();
        eprintln!(
            "OUTAGE on-prem master {master} WAN cut (WAN tracked): onprem -> {s} ({dst}): {o}"
        );
        ensure!(o.recovered, "onprem -> {s} did not recover: {o}");
        outages.push(o.longest_gap_ms);
    }
    eprintln!(
        "ONPREM MASTER WAN CUT ({master}, keepalived tracking the WAN): new VRRP master after {took_over:?}; outages {outages:?} ms; {master}'s track: {}",
        track["wan_track"]
    );
    ensure!(
        track["wan_track"]["wan_up"] == false,
        "{master} still reports its WAN up: {}",
        track["wan_track"]
    );
    ensure!(
        track["gate"]["state"] == "fault",
        "{master}'s keepalived is not in FAULT: {}",
        track["gate"]
    );
    // Heal: the WAN comes back, the file says 0, the cut router leaves
    // FAULT as backup (nopreempt: the other stays master).
    lab.run(&["heal", "onprem"])?;
    wait_until(
        &format!("{master}'s WAN tracked as up after heal"),
        Duration::from_secs(30),
        || {
            lab.control(&master, "capture")
                .map(|c| c["wan_track"]["wan_up"] == true && c["gate"]["state"] == "backup")
                .unwrap_or(false)
        },
    )?;
    Ok(())
}

/// `node`'s BGP sessions: (neighbor address, state), from `cerctl show bgp summary`.
fn bgp_sessions(lab: &Lab, node: &str) -> Vec<(String, String)> {
    lab.control(node, "bgp_summary")
        .ok()
        .and_then(|v| {
            v["neighbors"].as_array().map(|a| {
                a.iter()
                    .map(|n| {
                        let addr = n["address"].as_str().unwrap_or_default();
                        let ip = addr.rsplit_once(':').map_or(addr, |(ip, _)| ip);
                        (
                            ip.to_string(),
                            n["state"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// Two reflectors (`--rrs 2`), every CER a client of both, keepalived
/// tracking the on-prem CERs' WAN health: one reflector frozen. Every CER's
/// BFD takes its session to the frozen one down, the other reflector carries
/// every route, so no /32 loses its owner, no VRRP router goes to FAULT, and
/// traffic between the sites does not stop; thawed, the sessions return.
#[test]
fn a_frozen_reflector_with_a_second_one() -> Result<()> {
    let _g = serial();
    require_root();
    let scratch = Scratch::new("hf-rr")?;
    let lab = Lab::up("hfr", &["--rrs", "2", "--track-wan"])?;
    let nodes: Vec<String> = ["onprem", "aws", "azure", "oci"]
        .iter()
        .flat_map(|s| lab.cers(s))
        .filter_map(|c| c["node"].as_str().map(str::to_string))
        .collect();
    let rr: Vec<(String, String)> = lab.state["reflectors"]
        .as_array()
        .context("reflectors in lab.json")?
        .iter()
        .filter_map(|r| Some((r["role"].as_str()?.into(), r["address"].as_str()?.into())))
        .collect();
    ensure!(rr.len() == 2, "two reflectors: {rr:?}");
    let (frozen, frozen_addr) = rr[0].clone();
    let other_addr = rr[1].1.clone();
    let state_of = |node: &str, addr: &str| {
        bgp_sessions(&lab, node)
            .into_iter()
            .find(|(a, _)| a == addr)
            .map(|(_, s)| s)
    };
    wait_until(
        "every CER established with both reflectors",
        Duration::from_secs(30),
        || {
            nodes.iter().all(|n| {
                state_of(n, &frozen_addr).as_deref() == Some("Established")
                    && state_of(n, &other_addr).as_deref() == Some("Established")
            })
        },
    )?;
    let master = lab.vrrp_master().context("no on-prem VRRP master")?;
    let mut ps = Vec::new();
    for (from, to) in [
        ("aws", "onprem"),
        ("oci", "onprem"),
        ("onprem", "aws"),
        ("azure", "oci"),
    ] {
        let dst = lab.ip(to);
        let p = Probe::start(&lab.wl(from), &dst, PROBE_EVERY, &scratch.path)?;
        p.wait_replies(5, Duration::from_secs(15))
            .with_context(|| format!("probe {from} -> {dst} before the freeze"))?;
        ps.push((format!("{from} -> {to} ({dst})"), p));
    }
    let t0 = Instant::now();
    lab.run(&["freeze", &frozen])?;
    wait_until(
        &format!("every CER's session to the frozen {frozen} down (BFD)"),
        Duration::from_secs(15),
        || {
            nodes
                .iter()
                .all(|n| state_of(n, &frozen_addr).as_deref() != Some("Established"))
        },
    )?;
    let all_down = t0.elapsed();
    // Hold the freeze past the 9 s hold time: nothing may depend on the frozen one.
    std::thread::sleep(Duration::from_secs(10).saturating_sub(t0.elapsed()));
    for n in &nodes {
        ensure!(
            state_of(n, &other_addr).as_deref() == Some("Established"),
            "{n}'s session to {other_addr} dropped while {frozen} was frozen"
        );
    }
    for site in ["onprem", "aws", "azure", "oci"] {
        let owner = lab.control(&nodes[0], "owners")?;
        ensure!(
            owner.to_string().contains(&lab.ip(site)),
            "{site}'s /32 lost its owner at {}: {owner}",
            nodes[0]
        );
    }
    let master_after = lab.vrrp_master();
    ensure!(
        master_after.as_deref() == Some(master.as_str()),
        "the VRRP master changed ({master} -> {master_after:?}) although the WAN stayed up through {other_addr}"
    );
    let mut outages = Vec::new();
    for (what, p) in ps {
        let o = p.stop();
        eprintln!("OUTAGE reflector {frozen} frozen (second reflector up): {what}: {o}");
        ensure!(o.recovered, "{what} did not recover: {o}");
        outages.push(o.longest_gap_ms);
    }
    eprintln!(
        "REFLECTOR FROZEN ({frozen}, {other_addr} up): every CER's session to it down after {all_down:?}; outages {outages:?} ms; VRRP master {master} throughout"
    );
    for (i, o) in outages.iter().enumerate() {
        ensure!(
            *o < 1000,
            "probe {i}: {o} ms outage with a reflector frozen"
        );
    }
    lab.run(&["thaw", &frozen])?;
    wait_until(
        &format!("every CER back with {frozen}"),
        Duration::from_secs(30),
        || {
            nodes
                .iter()
                .all(|n| state_of(n, &frozen_addr).as_deref() == Some("Established"))
        },
    )?;
    Ok(())
}
