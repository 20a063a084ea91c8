//! A mass move on the four-site lab (issue 18): `scripts/lab --endpoints 50
//! up` gives every site 50 more pool /32s (204 in all), so every cloud CER
//! captures 153 of them with the providers' default quotas in force (AWS
//! c5.4xlarge: 30 addresses per ENI, primary included, so the AWS CER needs
//! six of its eight ENIs; OCI 64 secondaries per VNIC: three of its four
//! VNICs; Azure 256 per NIC) and the API rate limits of the emulators.
//! `scripts/lab mass-move --count 200` then moves 200 of them at once, each
//! to the next site (onprem -> aws -> azure -> oci -> onprem): every cloud
//! site captures 50 and releases 50 at the same time while its operator gives
//! the arriving ones to the workload's NICs. The command checks every
//! invariant of the capture plane and writes its evidence; this test checks
//! the report and, independently, the providers' holders and the fabrics.

use anyhow::{ensure, Context, Result};
use cer_e2e::apps::*;
use cer_e2e::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

const CLOUDS: [&str; 3] = ["aws", "azure", "oci"];
/// Secondary addresses per NIC at each emulated provider (its default quota).
fn room(site: &str) -> usize {
    match site {
        "aws" => 29,
        "azure" => 255,
        _ => 64,
    }
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// Every NIC of the site's CERs and of its workload (lab.json).
fn nics(lab: &Lab, site: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let cer = lab
        .cers(site)
        .iter()
        .flat_map(|c| strings(&c["nics"]))
        .collect();
    (cer, strings(&lab.site(site)["workload_nics"]))
}

/// Each NIC's count of secondary addresses, and every address on a NIC of
/// `set`, at the site's provider.
fn load(
    holders: &BTreeMap<String, String>,
    set: &BTreeSet<String>,
) -> (BTreeMap<String, usize>, usize) {
    let mut per = BTreeMap::new();
    for nic in holders.values().filter(|n| set.contains(*n)) {
        *per.entry(nic.clone()).or_insert(0) += 1;
    }
    let total = per.values().sum();
    (per, total)
}

/// Where each pool /32 lives, by lab.json.
fn lives_at(lab: &Lab) -> Result<BTreeMap<String, String>> {
    Ok(lab.state["endpoints"]
        .as_object()
        .context("lab.json endpoints")?
        .iter()
        .map(|(ip, s)| (ip.clone(), s.as_str().unwrap_or_default().to_string()))
        .collect())
}

#[test]
fn two_hundred_endpoints_move_between_sites_at_once_with_quotas_in_force() -> Result<()> {
    let mut lab = Lab::up("mm", &["--endpoints", "50"])?;
    let endpoints = lives_at(&lab)?;
    ensure!(
        endpoints.len() == 204,
        "--endpoints 50: want 204 pool /32s, lab.json has {}",
        endpoints.len()
    );

    // Before: each cloud CER holds the 153 remote /32s, spread over its
    // NICs within the quota.
    for site in CLOUDS {
        let (cer, _) = nics(&lab, site);
        let h = lab.emulator_holders(site)?;
        let (per, total) = load(&h, &cer);
        ensure!(
            total == 153,
            "{site}: the CER NICs hold {total} /32s, want 153: {per:?}"
        );
        ensure!(
            per.values().all(|n| *n <= room(site)),
            "{site}: a CER NIC over the provider's quota: {per:?}"
        );
        if site == "aws" {
            ensure!(
                per.len() >= 6,
                "aws: 153 /32s at 29 per ENI need six ENIs: {per:?}"
            );
        }
    }

    let report_path = std::env::temp_dir().join(format!("{}-massmove.json", lab.name));
    let report = report_path.to_string_lossy().to_string();
    let out = lab.run(&["mass-move", "--count", "200", "--json", &report]);
    let r: Value = serde_json::from_str(
        &std::fs::read_to_string(&report_path)
            .with_context(|| format!("mass-move wrote no report: {out:?}"))?,
    )?;
    let _ = std::fs::remove_file(&report_path);
    eprintln!("{}", serde_json::to_string_pretty(&r)?);
    ensure!(
        out.is_ok() && r["ok"] == true,
        "mass-move found problems: {}\n{}",
        r["problems"],
        lab.status()
    );
    ensure!(r["moved"] == 200, "moved {}", r["moved"]);
    ensure!(
        r["converged_s"].as_f64().is_some(),
        "never converged: {}",
        r["errors"]
    );
    for site in ["onprem", "aws", "azure", "oci"] {
        let s = &r["sites"][site];
        // 150 of the 200 moved /32s live elsewhere than `site` (50 arrived here).
        ensure!(
            s["reach"]["probed"] == 150
                && s["reach"]["unreachable"]
                    .as_array()
                    .is_some_and(Vec::is_empty),
            "{site}: moved /32s not answering: {}",
            s["reach"]
        );
        if site != "onprem" {
            ensure!(
                s["fencing"]["stale"].as_array().is_some_and(Vec::is_empty),
                "{site}: stale provider actions executed: {}",
                s["fencing"]["stale"]
            );
            ensure!(
                s["fencing"]["journal_dropped"] == 0,
                "{site}: the journal dropped entries, the fencing check saw only part"
            );
            ensure!(
                s["holders"]["problems"]
                    .as_array()
                    .is_some_and(Vec::is_empty),
                "{site}: {}",
                s["holders"]["problems"]
            );
        }
    }

    // Independently: where each /32 now lives, by lab.json, and who holds it
    // at each provider.
    lab.reload()?;
    let after = lives_at(&lab)?;
    let moved: Vec<&String> = after
        .iter()
        .filter(|(ip, s)| endpoints.get(*ip) != Some(*s))
        .map(|(ip, _)| ip)
        .collect();
    ensure!(
        moved.len() == 200,
        "lab.json: {} /32s moved, want 200",
        moved.len()
    );
    for site in CLOUDS {
        let (cer, wl) = nics(&lab, site);
        let h = lab.emulator_holders(site)?;
        for (ip, owner) in &after {
            let want = if owner == site { &wl } else { &cer };
            let got = h.get(ip);
            ensure!(
                got.is_some_and(|n| want.contains(n)),
                "{site}: {ip} (lives at {owner}) is held by {got:?}, want one of {want:?}"
            );
        }
        let (per, total) = load(&h, &cer);
        ensure!(
            total == 153,
            "{site}: the CER NICs hold {total} /32s after the move, want 153"
        );
        ensure!(
            per.values().all(|n| *n <= room(site)),
            "{site}: a CER NIC over the provider's quota: {per:?}"
        );
    }
    // A sample of the moved /32s answers from every other site's workload.
    for site in ["onprem", "aws", "azure", "oci"] {
        let sample: Vec<&&String> = moved
            .iter()
            .filter(|ip| after[**ip] != site)
            .step_by(25)
            .collect();
        for ip in sample {
            let o = ns_run(&lab.wl(site), &["ping", "-c", "1", "-W", "2", "-q", ip])?;
            ensure!(
                o.status.success(),
                "{site} workload: no answer from {ip} (lives at {})",
                after[*ip]
            );
        }
    }
    Ok(())
}
