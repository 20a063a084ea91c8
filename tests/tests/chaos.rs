//! The chaos soak on the four-site lab (issue 16 item 3): `scripts/lab chaos`
//! (`scripts/cerlab/chaos/`) with a fixed seed for about three minutes on a lab
//! brought up for this test. The soak itself checks the invariants
//! (reachability with the source preserved, provider holders, one proxy-ARP
//! holder, fencing against the provider's journal, no crash, panic or leak)
//! continuously and at every quiescent point, and exits non-zero with the
//! evidence kept when one breaks. This test asserts that it ran clean, that
//! every operation kind ran at least once, that quiescent points were
//! reached, and that `down` leaves nothing behind. The lab goes down also
//! when the test fails (`CER_KEEP_LAB=1` keeps it).
//!
//! `CER_CHAOS_SEED` and `CER_CHAOS_MINUTES` override the seed (1) and the
//! duration (3); the report and any evidence stay in
//! `/var/tmp/cer-chaos/<lab name>`.

use anyhow::{ensure, Context, Result};
use cer_e2e::apps::*;
use cer_e2e::*;
use std::path::PathBuf;

/// Every operation kind the soak knows (`KINDS` in scripts/cerlab/chaos/plan.py).
const KINDS: [&str; 15] = [
    "move",
    "add",
    "remove",
    "flap",
    "cer_kill",
    "freeze",
    "wan_cut",
    "vrrp_kill",
    "rr_restart",
    "fault_throttle",
    "fault_500",
    "fault_lost_reply",
    "fault_latency",
    "fault_consistency",
    "bgp_reset",
];

#[test]
fn chaos_soak_with_a_fixed_seed() -> Result<()> {
    require_root();
    let _serial = serial();
    let seed = std::env::var("CER_CHAOS_SEED").unwrap_or_else(|_| "1".into());
    let minutes = std::env::var("CER_CHAOS_MINUTES").unwrap_or_else(|_| "3".into());
    let lab = Lab::up("chaos", &[])?;
    let name = lab.name.clone();
    let out = PathBuf::from("/var/tmp/cer-chaos").join(&name);
    let run = lab.run(&[
        "chaos",
        "--seed",
        &seed,
        "--minutes",
        &minutes,
        "--out",
        out.to_str().unwrap(),
    ]);
    let report_path = out.join("report.json");
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&report_path)
            .with_context(|| format!("no report at {} ({run:?})", report_path.display()))?,
    )?;
    eprintln!(
        "chaos report ({}):\n{}",
        out.display(),
        std::fs::read_to_string(out.join("report.md")).unwrap_or_default()
    );
    let violations = report["violations"].as_array().cloned().unwrap_or_default();
    ensure!(
        violations.is_empty(),
        "seed {seed}: {} violation(s): {violations:?}; evidence in {}",
        violations.len(),
        report["evidence_dir"]
    );
    run.context("scripts/lab chaos failed without a violation")?;
    for k in KINDS {
        let n = report["by_kind"][k]["count"].as_u64().unwrap_or(0);
        ensure!(
            n >= 1,
            "operation kind {k} never ran: {}",
            report["by_kind"]
        );
        let errors = report["by_kind"][k]["errors"].as_u64().unwrap_or(0);
        ensure!(errors == 0, "{errors} {k} operation(s) failed");
        ensure!(
            report["by_kind"][k]["max_ms"].is_u64(),
            "no outage figure for {k}: {}",
            report["by_kind"][k]
        );
    }
    let quiescent = report["quiescent_points"].as_array().map_or(0, |q| q.len());
    ensure!(
        quiescent >= 2,
        "only {quiescent} quiescent points were checked"
    );
    let fences = &report["fences"];
    for site in ["aws", "azure", "oci"] {
        ensure!(
            fences[site]["cer_mutations"].as_u64().unwrap_or(0) > 0,
            "{site}: no provider mutation from the CER was checked against its intents: {fences}"
        );
    }
    drop(lab);
    // `down` leaves no namespace and no run dir.
    let left = sh(&["ip", "netns", "list"])?;
    let left = String::from_utf8_lossy(&left.stdout);
    ensure!(
        !left.lines().any(|l| l.starts_with(&format!("{name}-"))),
        "namespaces left after down: {left}"
    );
    ensure!(
        !PathBuf::from("/run/cer-lab").join(&name).exists(),
        "run dir left after down"
    );
    Ok(())
}
