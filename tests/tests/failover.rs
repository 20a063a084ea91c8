//! Failover and mobility on the four-site lab (`scripts/lab`): endpoint add,
//! endpoint move between two clouds (and back), the BGP owner's CER killed,
//! the on-prem VRRP master killed. Each scenario runs a steady ping probe
//! (every 50 ms) across the event, prints the outage it saw (facts, not timed
//! assertions: only an upper sanity bound is asserted), and checks the end
//! state: owners, RR, FIBs, captures (no errors, fenced counts reported), the
//! emulators' holders, the on-prem proxy-ARP gate.

use anyhow::{bail, ensure, Context, Result};
use cer_e2e::apps::*;
use cer_e2e::*;
use std::time::{Duration, Instant};

const PROBE_EVERY: Duration = Duration::from_millis(50);

/// Identity community of each lab node (lab.json `identity`).
fn identity(lab: &Lab, node: &str) -> String {
    lab.node(node)
        .map(|n| n["identity"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

/// Tunnel id towards a node (lab.json `tunnel_id`).
fn tunnel_to(lab: &Lab, node: &str) -> u64 {
    lab.node(node)
        .map(|n| n["tunnel_id"].as_u64().unwrap_or(0))
        .unwrap_or(0)
}

/// Node names of every CER in the lab.
fn all_nodes(lab: &Lab) -> Vec<String> {
    SITES
        .iter()
        .flat_map(|s| lab.cers(s))
        .filter_map(|c| c["node"].as_str().map(str::to_string))
        .collect()
}

/// The owner identity of `ip` as a node's cer-control sees it.
fn owner_seen_by(lab: &Lab, node: &str, ip: &str) -> Option<String> {
    let owners = lab.control(node, "owners").ok()?;
    owners
        .as_array()?
        .iter()
        .find(|o| o["prefix"] == format!("{ip}/32"))
        .and_then(|o| o["identity"].as_str().map(str::to_string))
}

/// The dataplane FIB action for `ip` on a node ("tunnel 4", "local ...").
fn fib_action(lab: &Lab, node: &str, ip: &str) -> Option<String> {
    let fib = lab.dataplane(node, "fib").ok()?;
    fib["endpoints"]
        .as_array()?
        .iter()
        .find(|e| e["ip"] == ip)
        .and_then(|e| e["action"].as_str().map(str::to_string))
}

/// The capture state of `ip` on a cloud CER: (desired, phase).
fn capture_of(lab: &Lab, node: &str, ip: &str) -> Option<(String, String)> {
    let c = lab.control(node, "capture").ok()?;
    let e = &c["ips"][ip];
    Some((
        e["desired"].as_str()?.to_string(),
        e["phase"].as_str()?.to_string(),
    ))
}

/// The NIC holding `ip` in a cloud site's provider emulator, and whether changes are pending.
fn holder(lab: &Lab, site: &str, ip: &str) -> Result<(Option<String>, usize)> {
    let h = lab.emulator_get(site, &format!("/_emulator/holders?ip={ip}"))?;
    let nic = h["holders"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|x| x["ip"] == ip)
        .and_then(|x| x["nic"].as_str().map(str::to_string));
    Ok((nic, h["pending"].as_array().map_or(0, |p| p.len())))
}

/// Waits until `f` holds (polling every 100 ms); the time it took.
fn wait_for(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<bool>,
) -> Result<Duration> {
    let t0 = Instant::now();
    let mut last = None;
    loop {
        match f() {
            Ok(true) => return Ok(t0.elapsed()),
            Ok(false) => {}
            Err(e) => last = Some(e),
        }
        if t0.elapsed() > timeout {
            bail!(
                "timed out after {timeout:?} waiting for {what}{}",
                last.map(|e| format!(": {e:#}")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every live CER sees `want` as the owner of `ip`, and every other site's
/// dataplane sends it into the tunnel towards `owner_node`'s site.
fn converged_on(
    lab: &Lab,
    ip: &str,
    want: &str,
    owner_site: &str,
    live: &[String],
) -> Result<bool> {
    for node in live {
        if owner_seen_by(lab, node, ip).as_deref() != Some(want) {
            return Ok(false);
        }
    }
    let owner_tunnels: Vec<String> = lab
        .cers(owner_site)
        .iter()
        .filter_map(|c| c["node"].as_str())
        .map(|n| format!("tunnel {}", tunnel_to(lab, n)))
        .collect();
    for site in SITES.iter().filter(|s| **s != owner_site) {
        for c in lab.cers(site) {
            let node = c["node"].as_str().unwrap_or("");
            if !live.iter().any(|l| l == node) {
                continue;
            }
            match fib_action(lab, node, ip) {
                Some(a) if owner_tunnels.contains(&a) => {}
                _ => return Ok(false),
            }
        }
    }
    Ok(true)
}

/// Cloud capture end state for `ip` owned at `owner_site`: the owner's CER
/// released it and the provider shows it on the workload NIC; every other
/// cloud CER captured it (provider: on the CER NIC); nothing in flight; no
/// change pending in any emulator. Returns the fenced (stale, skipped) counts.
fn capture_end_state(lab: &Lab, ip: &str, owner_site: &str) -> Result<String> {
    let mut notes = Vec::new();
    for site in ["aws", "azure", "oci"] {
        let node = lab.cers(site)[0]["node"].as_str().unwrap_or("").to_string();
        let want = if site == owner_site {
            "release"
        } else {
            "capture"
        };
        let (desired, phase) = capture_of(lab, &node, ip)
            .with_context(|| format!("{node}: no capture entry for {ip}"))?;
        ensure!(
            desired == want && phase == "confirmed",
            "{node}: capture of {ip} is {desired}/{phase}, want {want}/confirmed"
        );
        let c = lab.control(&node, "capture")?;
        // Provider errors retried to success (e.g. Azure's etag race with the
        // operator's own assignment) are reported, not failed: the provider's
        // holders below are the ground truth.
        let errors = c["errors_total"].as_u64().unwrap_or(0);
        ensure!(
            c["in_flight"].as_u64() == Some(0),
            "{node}: capture actions still in flight: {c}"
        );
        let fenced = c["fenced_total"].as_u64().unwrap_or(0);
        let (nic, pending) = holder(lab, site, ip)?;
        let nic = nic.with_context(|| format!("{site} emulator: nobody holds {ip}"))?;
        let wl_side = nic.contains("workload");
        ensure!(
            wl_side == (site == owner_site),
            "{site} emulator: {ip} held by {nic} (owner site {owner_site})"
        );
        ensure!(
            pending == 0,
            "{site} emulator: {pending} changes still pending"
        );
        let last = c["ips"][ip]["last_error"]
            .as_str()
            .unwrap_or("none")
            .to_string();
        notes.push(format!(
            "{site}: {desired} confirmed, held by {nic}, fenced {fenced}, provider errors retried {errors} (last for this /32: {last})"
        ));
    }
    Ok(notes.join("; "))
}

/// Starts probes from each site in `from` to `dst`; waits until each answers.
fn probes(
    lab: &Lab,
    from: &[&str],
    dst: &str,
    dir: &std::path::Path,
) -> Result<Vec<(String, Probe)>> {
    let mut v = Vec::new();
    for s in from {
        let p = Probe::start(&lab.wl(s), dst, PROBE_EVERY, dir)?;
        p.wait_replies(5, Duration::from_secs(15))
            .with_context(|| format!("probe {s} -> {dst} before the event"))?;
        v.push((s.to_string(), p));
    }
    Ok(v)
}

/// Stops the probes after they have answered again for a second; prints and returns the outages.
fn finish_probes(ps: Vec<(String, Probe)>, event: &str, bound: Duration) -> Result<Vec<Outage>> {
    let mut out = Vec::new();
    for (s, p) in &ps {
        p.wait_replies(20, bound)
            .with_context(|| format!("{event}: probe {s} -> {} never recovered", p.dst))?;
    }
    for (s, p) in ps {
        let dst = p.dst.clone();
        let o = p.stop();
        eprintln!("OUTAGE {event}: {s} -> {dst}: {o}");
        ensure!(o.recovered, "{event}: {s} -> {dst} did not recover: {o}");
        ensure!(
            o.longest_gap_ms <= bound.as_millis() as u64,
            "{event}: {s} -> {dst}: outage over the sanity bound {bound:?}: {o}"
        );
        out.push(o);
    }
    Ok(out)
}

/// Endpoint add: 10.77.60.20 appears at Azure (workload address, `cerctl
/// endpoint add` via `scripts/lab move`, provider assignment). The owner
/// advertises, the RR reflects, every peer imports it into its FIB towards
/// Azure, AWS and OCI capture it, the on-prem master proxy-ARPs it, and
/// traffic flows from every other site.
#[test]
fn failover_endpoint_add() -> Result<()> {
    let _g = serial();
    require_root();
    let scratch = Scratch::new("fo-add")?;
    let lab = Lab::up("foa", &[])?;
    let ip = "10.77.60.20";
    // Before: nobody owns it, nothing answers.
    ensure!(
        owner_seen_by(&lab, "aws", ip).is_none(),
        "{ip} owned before it was added"
    );
    let ps: Vec<(String, Probe)> = ["onprem", "aws", "oci"]
        .iter()
        .map(|s| {
            Ok((
                s.to_string(),
                Probe::start(&lab.wl(s), ip, PROBE_EVERY, &scratch.path)?,
            ))
        })
        .collect::<Result<_>>()?;
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    let out = lab.run(&["move", ip, "azure"])?;
    let took = t0.elapsed();
    eprintln!(
        "scripts/lab move {ip} azure ({:.1} s):\n{out}",
        took.as_secs_f64()
    );
    let az = identity(&lab, "azure");
    // The owner advertises ...
    let local = lab.control("azure", "owners")?;
    ensure!(
        local
            .as_array()
            .into_iter()
            .flatten()
            .any(|o| o["prefix"] == format!("{ip}/32")
                && o["identity"] == az.as_str()
                && o["local"] == true),
        "azure does not own {ip} locally: {local}"
    );
    // ... the RR reflects (its RIB carries the owner's identity community and next hop) ...
    let az_addr = lab.cer_addrs("azure")[0].clone();
    let rib = lab.rr_rib()?;
    ensure!(
        rib.iter().any(|r| r.prefix == format!("{ip}/32")
            && r.next_hop == az_addr
            && r.has_community(&az)),
        "route reflector RIB for {ip}: {:?}",
        rib.iter()
            .filter(|r| r.prefix == format!("{ip}/32"))
            .collect::<Vec<_>>()
    );
    // ... every peer imports it towards Azure and the captures follow.
    let live = all_nodes(&lab);
    wait_for(
        "every CER to import the new endpoint",
        Duration::from_secs(30),
        || converged_on(&lab, ip, &az, "azure", &live),
    )?;
    let cap = (|| -> Result<String> {
        let r = wait_for(
            "captures of the new endpoint",
            Duration::from_secs(30),
            || Ok(capture_end_state(&lab, ip, "azure").is_ok()),
        );
        let s = capture_end_state(&lab, ip, "azure")?;
        r?;
        Ok(s)
    })()?;
    let master = lab.vrrp_master().context("no on-prem VRRP master")?;
    wait_for(
        "the on-prem master to proxy-ARP the new endpoint",
        Duration::from_secs(10),
        || {
            let pa = lab.dataplane(&master, "proxy_arp")?;
            Ok(pa["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|a| a == ip))
        },
    )?;
    // Traffic flows: time from the command to the first answer, per site.
    for (_, p) in &ps {
        p.wait_replies(10, Duration::from_secs(20))
            .with_context(|| format!("traffic to the new endpoint\n{}", lab.status()))?;
    }
    for (s, p) in ps {
        let dst = p.dst.clone();
        let o = p.stop();
        let first_ms = (o.sent.saturating_sub(o.received)) * PROBE_EVERY.as_millis() as u64;
        eprintln!("ENDPOINT ADD: {s} -> {dst}: reachable about {first_ms} ms after the probe started ({o}); the add command took {} ms", took.as_millis());
        ensure!(o.received >= 10, "{s} -> {dst}: {o}");
    }
    eprintln!("ENDPOINT ADD end state: {cap}; on-prem proxy-ARP on {master}");
    Ok(())
}

/// Endpoint move between two clouds: 10.77.60.11 AWS -> Azure, then back to
/// AWS, under steady probes from OCI and on-prem. After each move every CER
/// sees the new owner, FIBs point at it, the old site's CER captures and the
/// new one released (emulator holders agree), nothing left in flight.
#[test]
fn failover_endpoint_move_between_clouds() -> Result<()> {
    let _g = serial();
    require_root();
    let scratch = Scratch::new("fo-move")?;
    let lab = Lab::up("fom", &[])?;
    let ip = lab.ip("aws");
    let live = all_nodes(&lab);
    for (to, node) in [("azure", "azure"), ("aws", "aws")] {
        let ps = probes(&lab, &["oci", "onprem"], &ip, &scratch.path)?;
        let t0 = Instant::now();
        let out = lab.run(&["move", &ip, to])?;
        eprintln!(
            "scripts/lab move {ip} {to} ({:.1} s):\n{out}",
            t0.elapsed().as_secs_f64()
        );
        let want = identity(&lab, node);
        wait_for(
            &format!("every CER to see {want} as owner of {ip}"),
            Duration::from_secs(30),
            || converged_on(&lab, &ip, &want, to, &live),
        )?;
        let conv = t0.elapsed();
        let outages = finish_probes(ps, &format!("move {ip} -> {to}"), Duration::from_secs(20))?;
        let cap = capture_end_state(&lab, &ip, to)?;
        eprintln!(
            "MOVE {ip} -> {to}: BGP + FIBs converged {} ms after the command; outages {:?} ms; {cap}",
            conv.as_millis(),
            outages.iter().map(|o| o.longest_gap_ms).collect::<Vec<_>>()
        );
        // The moved workload itself reaches the other sites from its new home.
        let ok = ns_try(
            &lab.wl(to),
            &[
                "ping",
                "-n",
                "-c",
                "3",
                "-i",
                "0.2",
                "-W",
                "1",
                "-I",
                &ip,
                &lab.ip("oci"),
            ],
        );
        ensure!(ok.status.success(), "{ip} at {to} -> OCI: {}", text(&ok));
        let explain = lab.cerctl("oci", &["explain", &ip])?;
        ensure!(
            explain.contains(&want),
            "cerctl explain {ip} on oci does not name {want}:\n{explain}"
        );
        ensure!(
            explain.contains("Fencing:"),
            "cerctl explain shows no fencing line:\n{explain}"
        );
    }
    Ok(())
}

/// The BGP owner's CER killed: 10.77.60.10 is advertised by both on-prem
/// CERs; onprem-a's path is best everywhere. SIGKILL of onprem-a (`scripts/lab
/// fail onprem-a`): its marker disappears from the RR and the peers, the best
/// path moves to onprem-b, every peer's FIB follows (tunnel to onprem-b),
/// onprem-b becomes VRRP master and captures (proxy ARP). Probes from AWS and
/// OCI to 10.77.60.10 measure the inbound outage; `heal` brings onprem-a back.
#[test]
fn failover_owner_cer_killed() -> Result<()> {
    let _g = serial();
    require_root();
    let scratch = Scratch::new("fo-kill")?;
    let lab = Lab::up("fok", &[])?;
    let ip = lab.ip("onprem");
    let (ida, idb) = (identity(&lab, "onprem-a"), identity(&lab, "onprem-b"));
    let before = owner_seen_by(&lab, "aws", &ip).context("no owner of the on-prem /32")?;
    let (dead, survivor, id_survivor) = if before == ida {
        ("onprem-a", "onprem-b", idb.clone())
    } else {
        ("onprem-b", "onprem-a", ida.clone())
    };
    let dead_marker = lab.control("aws", "markers")?;
    ensure!(
        dead_marker.to_string().contains(&identity(&lab, dead)),
        "marker of {dead} missing before the failure: {dead_marker}"
    );
    let ps = probes(&lab, &["aws", "oci"], &ip, &scratch.path)?;
    let t0 = Instant::now();
    lab.run(&["fail", dead])?;
    let fail_took = t0.elapsed();
    let dead_id = identity(&lab, dead);
    let others: Vec<String> = all_nodes(&lab).into_iter().filter(|n| n != dead).collect();
    wait_for(
        &format!("the marker of {dead} to disappear"),
        Duration::from_secs(30),
        || {
            for n in &others {
                if lab.control(n, "markers")?.to_string().contains(&dead_id) {
                    return Ok(false);
                }
            }
            Ok(true)
        },
    )?;
    let marker_gone = t0.elapsed();
    wait_for(
        &format!("best path of {ip} to move to {survivor}"),
        Duration::from_secs(30),
        || converged_on(&lab, &ip, &id_survivor, "onprem", &others),
    )?;
    let conv = t0.elapsed();
    let left: Vec<_> = lab
        .rr_rib()?
        .into_iter()
        .filter(|r| r.has_community(&dead_id))
        .collect();
    ensure!(
        left.is_empty(),
        "the route reflector still carries routes of {dead}: {left:?}"
    );
    wait_for(
        &format!("{survivor} to hold the on-prem proxy-ARP gate"),
        Duration::from_secs(15),
        || Ok(lab.vrrp_master().as_deref() == Some(survivor)),
    )?;
    let outages = finish_probes(ps, &format!("owner {dead} killed"), Duration::from_secs(20))?;
    for site in ["aws", "azure", "oci"] {
        let node = site;
        ensure!(
            fib_action(&lab, node, &ip) == Some(format!("tunnel {}", tunnel_to(&lab, survivor))),
            "{node}: FIB for {ip} is {:?}",
            fib_action(&lab, node, &ip)
        );
    }
    eprintln!(
        "OWNER KILLED ({dead}): marker gone from every peer {} ms, best path {ip} -> {id_survivor} in every FIB {} ms after `scripts/lab fail` started (it SIGKILLs cer-control, keepalived, then the dataplane; done {} ms after the start, polled every 100 ms); outages {:?} ms",
        marker_gone.as_millis(),
        conv.as_millis(),
        fail_took.as_millis(),
        outages.iter().map(|o| o.longest_gap_ms).collect::<Vec<_>>()
    );
    // Heal: the node comes back, the lab converges, traffic flows throughout.
    let ps = probes(&lab, &["aws", "oci"], &ip, &scratch.path)?;
    let t1 = Instant::now();
    lab.run(&["heal", dead])?;
    let outages = finish_probes(ps, &format!("{dead} healed"), Duration::from_secs(20))?;
    let status = lab.status();
    ensure!(
        status.contains("\nconverged"),
        "not converged after heal:\n{status}"
    );
    eprintln!(
        "HEAL {dead}: {} ms to converge; outages {:?} ms",
        t1.elapsed().as_millis(),
        outages.iter().map(|o| o.longest_gap_ms).collect::<Vec<_>>()
    );
    for c in lab.cers("onprem") {
        let pa = lab.dataplane(c["node"].as_str().unwrap(), "proxy_arp")?;
        ensure!(
            pa["duplicate_holder_alarms"].as_u64() == Some(0),
            "{}: duplicate proxy-ARP holders: {pa}",
            c["node"]
        );
    }
    Ok(())
}

/// The on-prem VRRP master killed (`scripts/lab fail onprem`: its
/// cer-control, keepalived and dataplane): the backup becomes master, opens
/// its proxy-ARP gate and announces the remote /32s (GARP), so the on-prem
/// workload's ARP entries move to its MAC; never two gates open; no
/// duplicate-holder alarm. Probes from the on-prem workload to every cloud
/// /32 measure the outbound outage; `heal` brings the old master back as
/// backup (nopreempt) without a second outage.
#[test]
fn failover_onprem_vrrp_master_killed() -> Result<()> {
    let _g = serial();
    require_root();
    let scratch = Scratch::new("fo-vrrp")?;
    let lab = Lab::up("fov", &[])?;
    let master = lab.vrrp_master().context("no on-prem VRRP master")?;
    let backup = lab
        .cers("onprem")
        .iter()
        .filter_map(|c| c["node"].as_str().map(str::to_string))
        .find(|n| *n != master)
        .context("no backup")?;
    let backup_mac = lab
        .dataplane(&backup, "ports")?
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "lan")
        .and_then(|p| p["mac"].as_str().map(str::to_string))
        .context("backup lan MAC")?;
    let dsts: Vec<String> = ["aws", "azure", "oci"].iter().map(|s| lab.ip(s)).collect();
    let mut ps = Vec::new();
    for d in &dsts {
        ps.extend(probes(&lab, &["onprem"], d, &scratch.path)?);
    }
    // Never two gates open: watch both dataplanes while the master dies.
    let watch_stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let both_open = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let watcher = {
        let (stop, both) = (watch_stop.clone(), both_open.clone());
        let socks: Vec<std::path::PathBuf> = lab
            .cers("onprem")
            .iter()
            .filter_map(|c| c["dataplane_socket"].as_str().map(std::path::PathBuf::from))
            .collect();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let open = socks
                    .iter()
                    .filter(|s| {
                        admin(s, "proxy_arp")
                            .map(|p| p["active"] == true)
                            .unwrap_or(false)
                    })
                    .count();
                if open > 1 {
                    both.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let t0 = Instant::now();
    lab.run(&["fail", "onprem"])?;
    let fail_took = t0.elapsed();
    wait_for(
        &format!("{backup} to become master"),
        Duration::from_secs(15),
        || Ok(lab.vrrp_master().as_deref() == Some(backup.as_str())),
    )?;
    let took = t0.elapsed();
    let outages = finish_probes(
        ps,
        &format!("VRRP master {master} killed"),
        Duration::from_secs(20),
    )?;
    // The workload's ARP entries for the remote /32s now name the new master's MAC.
    let neigh =
        String::from_utf8_lossy(&ns_run(&lab.wl("onprem"), &["ip", "neigh", "show"])?.stdout)
            .to_string();
    for d in &dsts {
        let line = neigh
            .lines()
            .find(|l| l.starts_with(&format!("{d} ")))
            .with_context(|| format!("no ARP entry for {d}:\n{neigh}"))?;
        ensure!(
            line.contains(&backup_mac),
            "ARP entry for {d} does not name {backup} ({backup_mac}): {line}"
        );
    }
    let pa = lab.dataplane(&backup, "proxy_arp")?;
    ensure!(
        pa["duplicate_holder_alarms"].as_u64() == Some(0),
        "{backup}: duplicate-holder alarm: {pa}"
    );
    let mut want: Vec<String> = dsts.clone();
    want.sort();
    let mut got: Vec<String> = pa["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    got.sort();
    ensure!(got == want, "{backup} proxy-ARPs {got:?}, want {want:?}");
    eprintln!(
        "VRRP MASTER KILLED ({master}): {backup} master (gate open) {} ms after `scripts/lab fail onprem` started (SIGKILL of cer-control, keepalived, then the dataplane; done after {} ms, polled every 100 ms); outages {:?} ms",
        took.as_millis(),
        fail_took.as_millis(),
        outages.iter().map(|o| o.longest_gap_ms).collect::<Vec<_>>()
    );
    // Heal: the old master comes back as backup (scripts/lab runs keepalived with nopreempt).
    let mut ps = Vec::new();
    for d in &dsts {
        ps.extend(probes(&lab, &["onprem"], d, &scratch.path)?);
    }
    let t1 = Instant::now();
    lab.run(&["heal", &master])?;
    let now = lab.vrrp_master();
    ensure!(
        now.as_deref() == Some(backup.as_str()),
        "after healing {master} the gate is open on {now:?}, want {backup} (nopreempt)"
    );
    let outages = finish_probes(ps, &format!("{master} healed"), Duration::from_secs(20))?;
    watch_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = watcher.join();
    let both: u64 = both_open.load(std::sync::atomic::Ordering::Relaxed);
    ensure!(
        both == 0,
        "both on-prem proxy-ARP gates were open in {both} samples"
    );
    eprintln!(
        "HEAL {master}: back as backup in {} ms, {backup} stays master (nopreempt); outages {:?} ms; never two gates open",
        t1.elapsed().as_millis(),
        outages.iter().map(|o| o.longest_gap_ms).collect::<Vec<_>>()
    );
    Ok(())
}

/// A CER that restarts loses its WireGuard sessions; its peers keep sending
/// on the old session. Traffic into it must not be black-holed for long once
/// BGP prefers it again. Before e282d52, after `heal onprem-a`, AWS ->
/// 10.77.60.10 (onprem-aws is a WireGuard pair) was lost for 3-9 s while
/// onprem-a counted `wg_no_session` drops, until AWS's WireGuard timers
/// re-handshaked; now the first such packet makes onprem-a initiate a
/// handshake (measured: 50 ms lost, one `wg_no_session` drop).
#[test]
fn failover_wireguard_into_a_restarted_cer() -> Result<()> {
    let _g = serial();
    require_root();
    let scratch = Scratch::new("fo-wg")?;
    let lab = Lab::up("fow", &[])?;
    let ip = lab.ip("onprem");
    // Sessions aws <-> onprem-a exist (the probe flows through onprem-a, the best path).
    let ps = probes(&lab, &["aws"], &ip, &scratch.path)?;
    lab.run(&["fail", "onprem-a"])?;
    finish_probes(ps, "onprem-a killed", Duration::from_secs(20))?;
    let ps = probes(&lab, &["aws", "oci"], &ip, &scratch.path)?;
    lab.run(&["heal", "onprem-a"])?;
    let outages = finish_probes(ps, "onprem-a healed", Duration::from_secs(20))?;
    let no_session = counter(
        std::path::Path::new(
            lab.node("onprem-a")?["dataplane_socket"]
                .as_str()
                .unwrap_or(""),
        ),
        "drops",
        "wg_no_session",
    );
    eprintln!("onprem-a after heal: drops.wg_no_session = {no_session}");
    ensure!(
        outages[0].longest_gap_ms <= 2000,
        "aws -> {ip} over WireGuard lost {} ms after onprem-a came back (IPIP from OCI: {} ms); onprem-a drops.wg_no_session = {no_session}",
        outages[0].longest_gap_ms,
        outages[1].longest_gap_ms
    );
    Ok(())
}

/// A 300 ms ownership flap of OCI's 10.77.60.13 to AWS (`cerctl endpoint add
/// --local-pref 300` on the AWS CER, then `endpoint remove`).
fn flap_to_aws(lab: &Lab, ip: &str) -> Result<()> {
    lab.cerctl("aws", &["endpoint", "add", ip, "--local-pref", "300"])?;
    std::thread::sleep(Duration::from_millis(300));
    lab.cerctl("aws", &["endpoint", "remove", ip])?;
    let want = identity(lab, "oci");
    let live = all_nodes(lab);
    wait_for("ownership back at OCI", Duration::from_secs(20), || {
        converged_on(lab, ip, &want, "oci", &live)
    })?;
    Ok(())
}

/// A stale provider action is fenced, never executed: the AWS CER briefly
/// becomes the owner of OCI's 10.77.60.13 while its first provider calls are
/// held 1.5 s by the emulator. The release planned while AWS owned the /32
/// must be skipped (fenced) before its provider call: the AWS emulator's
/// holders never change (.13 stays on the AWS CER's ENI), `cerctl show
/// capture` and `cerctl explain` count the fenced action.
#[test]
fn failover_stale_release_is_fenced() -> Result<()> {
    let _g = serial();
    require_root();
    let lab = Lab::up("fof", &[])?;
    let ip = lab.ip("oci");
    let (nic0, _) = holder(&lab, "aws", &ip)?;
    let nic0 = nic0.context("nobody holds .13 at AWS")?;
    ensure!(
        nic0.contains("cer"),
        "before: {ip} at AWS held by {nic0}, want the CER's ENI"
    );
    let gen0 = lab.emulator_get("aws", "/_emulator/holders")?["generation"].clone();
    let fenced0 = lab.control("aws", "capture")?["fenced_total"]
        .as_u64()
        .unwrap_or(0);
    lab.emulator_post(
        "aws",
        "/_emulator/faults",
        r#"[{"provider":"aws","action":"*","kind":"delay","delay_ms":1500,"count":2}]"#,
    )?;
    flap_to_aws(&lab, &ip)?;
    wait_for(
        "the AWS capture of .13 confirmed again",
        Duration::from_secs(30),
        || Ok(capture_of(&lab, "aws", &ip) == Some(("capture".into(), "confirmed".into()))),
    )?;
    std::thread::sleep(Duration::from_secs(3));
    let cap = lab.control("aws", "capture")?;
    let fenced = cap["fenced_total"].as_u64().unwrap_or(0) - fenced0;
    let (nic1, pending) = holder(&lab, "aws", &ip)?;
    let gen1 = lab.emulator_get("aws", "/_emulator/holders")?["generation"].clone();
    let explain = lab.cerctl("aws", &["explain", &ip])?;
    eprintln!(
        "FENCING: {fenced} stale action(s) fenced on aws; holder {nic1:?} (generation {gen0} -> {gen1}, {pending} pending); {}",
        serde_json::to_string(&cap["fencing"]["recent"]).unwrap_or_default()
    );
    ensure!(
        nic1.as_deref() == Some(nic0.as_str()) && pending == 0,
        "{ip} at AWS now held by {nic1:?} ({pending} pending): a stale release ran"
    );
    ensure!(gen0 == gen1, "the AWS emulator's holders changed ({gen0} -> {gen1}): a provider action ran for a flap that was over");
    ensure!(
        fenced >= 1,
        "no stale action counted as fenced: {}\n{explain}",
        cap["fencing"]
    );
    ensure!(
        explain.contains("skipped release planned from signature"),
        "cerctl explain names no skipped release:\n{explain}"
    );
    Ok(())
}

/// After the same 300 ms flap (no provider delays), OCI's own workload must
/// hold 10.77.60.13 again and traffic to it recover. The OCI CER, told by BGP
/// that AWS owned .13, may capture it from the workload's VNIC (a valid
/// action at the time; it remembers that VNIC); when ownership comes back its
/// release hands .13 back to that VNIC (UpdatePrivateIp), not to nobody.
/// Before the fix OCI's emulator showed nobody holding .13 (`cerctl show
/// capture` on oci: release confirmed, observed "nobody") and .13 was
/// unreachable from every site until an operator re-assigned it.
#[test]
fn failover_flap_gives_the_address_back_to_the_workload() -> Result<()> {
    let _g = serial();
    require_root();
    let scratch = Scratch::new("fo-flap")?;
    let lab = Lab::up("fob", &[])?;
    let ip = lab.ip("oci");
    let ps = probes(&lab, &["aws", "azure"], &ip, &scratch.path)?;
    flap_to_aws(&lab, &ip)?;
    // Let OCI's reconciler settle (release confirmed), then look at who holds .13 there.
    wait_for(
        "the OCI CER's release of .13 confirmed",
        Duration::from_secs(30),
        || Ok(capture_of(&lab, "oci", &ip) == Some(("release".into(), "confirmed".into()))),
    )?;
    std::thread::sleep(Duration::from_secs(2));
    let r = wait_for(
        "OCI's workload VNIC to hold .13 again",
        Duration::from_secs(10),
        || {
            Ok(holder(&lab, "oci", &ip)?
                .0
                .is_some_and(|n| n.contains("workload")))
        },
    );
    let oci_cap = lab.cerctl("oci", &["show", "capture"]).unwrap_or_default();
    let h = holder(&lab, "oci", &ip).ok();
    r.with_context(|| format!("OCI holder of {ip}: {h:?}\n{oci_cap}"))?;
    // Confirmed where it belongs, nothing left remembered or pending; and the
    // release did move it (a hand-back ran): the OCI CER had captured .13
    // during the flap, else this test would prove nothing.
    let c = lab.control("oci", "capture")?;
    let e = &c["ips"][ip.as_str()];
    ensure!(
        e["observed"]
            .as_str()
            .is_some_and(|o| o.starts_with("elsewhere:") && o.contains("workload"))
            && e["captured_from"].is_null(),
        "OCI capture state of {ip}: {e}\n{oci_cap}"
    );
    ensure!(
        e["changed_provider"] == true,
        "the OCI CER's release of {ip} changed nothing at the provider: it never captured .13 during the flap, so nothing was handed back (the flap proves nothing): {e}\n{oci_cap}"
    );
    let log = std::fs::read_to_string(
        lab.node("oci")?["logs"]["ctl"]
            .as_str()
            .context("oci ctl log")?,
    )?;
    let trail: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(ip.as_str()) && (l.contains("confirmed") || l.contains("handed")))
        .collect();
    ensure!(
        trail
            .iter()
            .any(|l| l.contains("handed") && l.contains("back to")),
        "no hand-back in the OCI CER's log:\n{}",
        trail.join("\n")
    );
    eprintln!(
        "FLAP: OCI's capture of {ip} after the flap: {e}\nFLAP: OCI CER log:\n  {}",
        trail.join("\n  ")
    );
    let outages = finish_probes(
        ps,
        "ownership flap OCI -> AWS -> OCI",
        Duration::from_secs(20),
    )?;
    eprintln!(
        "FLAP: outages {:?} ms",
        outages.iter().map(|o| o.longest_gap_ms).collect::<Vec<_>>()
    );
    Ok(())
}

/// The flap with the original holder gone: AWS takes 10.77.60.13 over, the
/// OCI CER captures it from its workload's VNIC, and that VNIC is deleted
/// (the VM terminated) before ownership comes back. The hand-back is refused
/// (the emulator answers 404 NotAuthorizedOrNotFound, and the VNIC has no
/// private IP left in the subnet, so it is gone rather than hidden); the
/// release gives .13 to nobody, where the deletion would have left it:
/// confirmed once, not retried, nothing remembered, and `cerctl explain` on
/// OCI names the gone VNIC. The /32 is not kept on the CER's VNIC, where a
/// replacement workload could not take it.
#[test]
fn failover_flap_with_the_workload_nic_deleted_releases_to_nobody() -> Result<()> {
    let _g = serial();
    require_root();
    let lab = Lab::up("fog", &[])?;
    let ip = lab.ip("oci");
    let wl_nic = holder(&lab, "oci", &ip)?
        .0
        .filter(|n| n.contains("workload"))
        .with_context(|| format!("before: {ip} at OCI not on the workload's VNIC"))?;
    let live = all_nodes(&lab);

    // AWS owns .13 for now: the OCI CER captures it from the workload VNIC.
    lab.cerctl("aws", &["endpoint", "add", &ip, "--local-pref", "300"])?;
    let aws = identity(&lab, "aws");
    wait_for("ownership at AWS", Duration::from_secs(20), || {
        converged_on(&lab, &ip, &aws, "aws", &live)
    })?;
    wait_for(
        "the OCI CER's capture of .13 confirmed",
        Duration::from_secs(30),
        || Ok(capture_of(&lab, "oci", &ip) == Some(("capture".into(), "confirmed".into()))),
    )?;
    // The provider API answers from its own (target) state at once; wait
    // until the fabric delivers .13 to the CER too, as before a real VM's end.
    wait_for(
        "the OCI fabric to deliver .13 to the CER",
        Duration::from_secs(10),
        || Ok(matches!(holder(&lab, "oci", &ip)?, (Some(n), 0) if n.contains("cer"))),
    )?;
    let c = lab.control("oci", "capture")?;
    let origins0 = c["origins_remembered"].as_u64().unwrap_or(0);
    ensure!(
        c["ips"][ip.as_str()]["captured_from"] == wl_nic.as_str(),
        "OCI remembers {} as the origin of {ip}, want {wl_nic}",
        c["ips"][ip.as_str()]["captured_from"]
    );
    let errors0 = c["errors_total"].as_u64().unwrap_or(0);

    // The workload VM is terminated while AWS owns .13: its VNIC is deleted.
    lab.emulator_post(
        "oci",
        "/_emulator/nics/delete",
        &serde_json::json!({ "id": wl_nic }).to_string(),
    )?;

    // Ownership comes back to OCI.
    lab.cerctl("aws", &["endpoint", "remove", &ip])?;
    let oci = identity(&lab, "oci");
    wait_for("ownership back at OCI", Duration::from_secs(20), || {
        converged_on(&lab, &ip, &oci, "oci", &live)
    })?;
    wait_for(
        "the OCI CER's release of .13 confirmed",
        Duration::from_secs(30),
        || Ok(capture_of(&lab, "oci", &ip) == Some(("release".into(), "confirmed".into()))),
    )?;
    let oci_cap = lab.cerctl("oci", &["show", "capture"]).unwrap_or_default();
    let explain = lab.cerctl("oci", &["explain", &ip])?;
    eprintln!("GONE: cerctl show capture on oci:\n{oci_cap}\nGONE: cerctl explain {ip} on oci:\n{explain}");
    // The fabric follows the provider after its move delay.
    let r = wait_for("nobody to hold .13 at OCI", Duration::from_secs(10), || {
        Ok(holder(&lab, "oci", &ip)? == (None, 0))
    });
    let h = holder(&lab, "oci", &ip);
    r.with_context(|| format!("{ip} at OCI: {h:?}, want nobody\n{oci_cap}"))?;
    let c = lab.control("oci", "capture")?;
    let e = &c["ips"][ip.as_str()];
    ensure!(
        e["observed"] == "nobody"
            && e["captured_from"].is_null()
            && e["attempts"] == 0
            && e["note"]
                .as_str()
                .is_some_and(|n| n.contains("released to nobody") && n.contains(wl_nic.as_str()))
            && c["released_holder_gone_total"] == 1
            && c["origins_remembered"].as_u64() == Some(origins0 - 1),
        "OCI capture state of {ip}: {e}\n{c}"
    );
    ensure!(
        explain.contains("released to nobody") && explain.contains(wl_nic.as_str()),
        "cerctl explain on OCI does not name the gone VNIC:\n{explain}"
    );
    // Done for good: no retries, no errors, nothing changes any more.
    let gen0 = lab.emulator_get("oci", "/_emulator/holders")?["generation"].clone();
    std::thread::sleep(Duration::from_secs(3));
    let gen1 = lab.emulator_get("oci", "/_emulator/holders")?["generation"].clone();
    let c = lab.control("oci", "capture")?;
    ensure!(
        gen0 == gen1 && c["in_flight"] == 0,
        "OCI's holders still change ({gen0} -> {gen1}) or actions in flight: {c}"
    );
    eprintln!(
        "GONE: provider errors on the OCI CER during the release: {}",
        c["errors_total"].as_u64().unwrap_or(0) - errors0
    );
    Ok(())
}

/// The two on-prem CERs share one LAN (`sam.site_identities` names each
/// other): a /32 either of them owns lives at this site for both, so neither
/// captures it by proxy ARP nor looks for a tunnel to the other; both deliver
/// it on the LAN. And `endpoint move` on the second CER of the site joins the
/// first at its LOCAL_PREF instead of outbidding it. Found by the chaos soak:
/// after moves, onprem-b advertised a /32 at 120 and onprem-a at 110;
/// onprem-a saw onprem-b as "another site", answered ARP for the on-prem
/// workload's own /32 (a duplicate holder) and had no route to it.
#[test]
fn onprem_cers_deliver_each_others_endpoints_and_never_capture_them() -> Result<()> {
    let _g = serial();
    require_root();
    let lab = Lab::up("fos", &[])?;
    let (a, b) = ("onprem-a", "onprem-b");
    let ip = "10.77.60.40";
    let owner_is = |node: &str, owner: &str| {
        let want = identity(&lab, owner);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if owner_seen_by(&lab, node, ip).as_deref() == Some(want.as_str()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    };
    // A moves the /32 to this site; once B sees A own it, B moves it too.
    lab.cerctl(a, &["endpoint", "move", ip])?;
    ensure!(owner_is(b, a), "{b} never saw {a} own {ip}");
    let out = lab.cerctl(b, &["endpoint", "move", ip])?;
    println!("{b}: endpoint move {ip}: {out}");
    let pref = |node: &str| -> Option<u64> {
        let sock = lab.node(node).ok()?["control_socket"].as_str()?.to_string();
        let e: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(sock.replace("-control.sock", "-endpoints.json")).ok()?,
        )
        .ok()?;
        e["endpoints"]
            .as_array()?
            .iter()
            .find(|x| x["ip"] == ip)
            .and_then(|x| x["local_pref"].as_u64())
    };
    ensure!(
        pref(a).is_some() && pref(a) == pref(b),
        "{a} advertises {ip} at {:?}, {b} at {:?}: the second outbid the first",
        pref(a),
        pref(b)
    );
    // The operator prefers B (a higher LOCAL_PREF): B owns it, and for A it
    // still lives at this site.
    lab.cerctl(b, &["endpoint", "add", ip, "--local-pref", "300"])?;
    ensure!(owner_is(a, b), "{a} never saw {b} own {ip}");
    std::thread::sleep(Duration::from_millis(500));
    let fib = fib_action(&lab, a, ip);
    ensure!(
        fib.as_deref().is_some_and(|x| x.starts_with("local")),
        "{a}: {ip} (owned by {b}, same LAN) should be delivered on the LAN, FIB has {fib:?}"
    );
    let pa = lab.dataplane(a, "proxy_arp")?;
    ensure!(
        !pa["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|x| x == ip),
        "{a} answers ARP for {ip}, which lives on its own LAN: {pa}"
    );
    let explain = lab.cerctl(a, &["explain", ip])?;
    ensure!(
        explain.contains("here: not captured here") && explain.contains("owned at this site by"),
        "{a}: {explain}"
    );
    Ok(())
}
