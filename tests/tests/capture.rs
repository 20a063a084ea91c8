//! Cloud capture end to end: cer-control in AWS mode (the real aws-sdk-ec2
//! client, IMDSv2 discovery) against the provider emulator, with ownership
//! decided by BGP through a gobgpd route reflector.
//!
//!   rr (gobgpd 10.10.0.1) -- lan -- x (cer-control 10.10.0.2, capture mode aws,
//!                                      cer-cloud-emulator on x's loopback)
//!
//! Node 9 (identity 65000:1009) is injected at the reflector: its marker and
//! its path for a pool /32 make it the remote owner, so x must capture the
//! /32 onto its ENI; when x owns the /32 itself it must release it.

use anyhow::{Context, Result};
use cer_e2e::peers::{gobgp_rr_config, GoBgp, Lan};
use cer_e2e::*;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const IP: &str = "10.77.60.11";

fn seed_toml() -> &'static str {
    r#"
region = "eu-west-1"
move_delay_ms = 500
imds_instance = "i-cer"

[[subnets]]
id = "subnet-0lab"
cidr = "10.77.0.0/16"
vpc = "vpc-0lab"

[[nics]]
id = "eni-0cer"
instance = "i-cer"
subnet = "subnet-0lab"
primary_ip = "10.77.1.10"

[[nics]]
id = "eni-0workload"
instance = "i-workload"
subnet = "subnet-0lab"
primary_ip = "10.77.1.20"
secondary_ips = ["10.77.60.11"]
"#
}

fn x_config(dir: &Path) -> String {
    ControlConfig::new("x", "10.10.0.2", 65000)
        .fast_timers()
        .graceful_restart_secs(0)
        .neighbor(Neighbor::internal("10.10.0.1"))
        .sam("65000:1002", "10.255.0.2/32", &dir.join("x-endpoints.json"))
        .initial_sync_delay_secs(2)
        .capture_mode("aws")
        .capture_aws(
            "eu-west-1",
            "http://127.0.0.1:8700",
            "http://127.0.0.1:8700",
        )
        .reconciler(10, 5)
        .to_string()
}

struct Emulator {
    _proc: Proc,
}

impl Emulator {
    fn start(ns: &Netns, dir: &Path) -> Result<Emulator> {
        let seed = dir.join("seed.toml");
        std::fs::write(&seed, seed_toml())?;
        let exe = bin("cer-cloud-emulator").display().to_string();
        let seed_s = seed.display().to_string();
        let mut proc = ns.spawn(
            &[&exe, "--listen", "127.0.0.1:8700", "--state", &seed_s],
            &dir.join("emulator.log"),
        )?;
        proc.wait_for_log("listening on", Duration::from_secs(10))?;
        Ok(Emulator { _proc: proc })
    }
}

/// An HTTP request to the emulator inside `ns` (curl, loopback only).
fn emu(ns: &Netns, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
    let url = format!("http://127.0.0.1:8700{path}");
    let data = body.map(|b| b.to_string());
    let mut args = vec!["curl", "-sS", "--max-time", "10", "-X", method, &url];
    if let Some(d) = &data {
        args.extend(["-H", "content-type: application/json", "--data", d]);
    }
    let out = ns.run(&args)?;
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "emulator {method} {path}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The NIC holding `ip` in the emulator's visible view.
fn holder(ns: &Netns, ip: &str) -> Result<Option<String>> {
    let v = emu(ns, "GET", &format!("/_emulator/holders?ip={ip}"), None)?;
    Ok(v["holders"]
        .as_array()
        .and_then(|h| h.first())
        .and_then(|h| h["nic"].as_str())
        .map(String::from))
}

fn capture_ip(x: &Control) -> Result<Value> {
    let c = x.json(&["show", "capture"])?;
    Ok(c["ips"][IP].clone())
}

fn owner_identity(x: &Control) -> Option<String> {
    let ex = x.json(&["explain", IP]).ok()?;
    ex["owner"]["identity"].as_str().map(String::from)
}

#[test]
fn aws_capture_follows_bgp_ownership_and_fences_stale_actions() -> Result<()> {
    let _g = serial();
    require_root();
    let scratch = Scratch::new("cap")?;
    let dir = &scratch.path;
    let lan = Lan::new()?;
    let rr_ns = Netns::new("rr")?;
    let x_ns = Netns::new("x")?;
    lan.attach(&rr_ns, "eth0", "10.10.0.1/24")?;
    lan.attach(&x_ns, "eth0", "10.10.0.2/24")?;
    x_ns.run(&["ip", "link", "set", "lo", "up"])?;
    let rr = GoBgp::start(
        &rr_ns,
        dir,
        &gobgp_rr_config(65000, "10.10.0.1", "10.10.0.1", &["10.10.0.2"]),
    )?;
    let _emu = Emulator::start(&x_ns, dir)?;
    assert_eq!(holder(&x_ns, IP)?.as_deref(), Some("eni-0workload"));

    // Credentials for the SDK's standard chain (the emulator checks the
    // signature's shape only); nothing may reach a real metadata service.
    for v in [
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_CONFIG_FILE",
        "AWS_EC2_METADATA_SERVICE_ENDPOINT",
    ] {
        std::env::remove_var(v);
    }
    std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDCERTEST");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "cer-test-secret");
    let x = Control::start(Some(&x_ns), dir, "x", &x_config(dir))?;
    rr.wait_established("10.10.0.2", Duration::from_secs(15))?;

    // Node 9 comes alive (marker) and owns .11: x captures it onto its ENI.
    rr.add_route(
        "10.255.0.9/32",
        "10.10.0.9",
        &["65000:999", "65000:1009"],
        None,
    )?;
    rr.add_route(&format!("{IP}/32"), "10.10.0.9", &["65000:1009"], Some(100))?;
    wait_until("x sees node 9 as owner", Duration::from_secs(15), || {
        owner_identity(&x).as_deref() == Some("65000:1009")
    })?;
    wait_until("capture confirmed", Duration::from_secs(20), || {
        capture_ip(&x).is_ok_and(|c| c["phase"] == "confirmed" && c["desired"] == "capture")
    })?;
    assert_eq!(holder(&x_ns, IP)?.as_deref(), Some("eni-0cer"));
    let c = capture_ip(&x)?;
    assert_eq!(c["observed"], "ours");
    let first_ms = c["confirm_ms"].as_u64().context("confirm_ms")?;
    // The emulator makes a move visible 500 ms after it is accepted.
    assert!(first_ms >= 500, "confirmed in {first_ms} ms");
    let ex = x.json(&["explain", IP])?;
    assert!(
        ex["capture"]["this_ip"]
            .as_str()
            .is_some_and(|t| t.contains("confirmed by the provider")),
        "{}",
        ex["capture"]
    );

    // A -> B -> A under provider latency: every EC2 call now takes 1.2 s.
    emu(
        &x_ns,
        "POST",
        "/_emulator/faults",
        Some(&json!({"provider": "aws", "kind": "delay", "delay_ms": 1200, "count": 1000})),
    )?;
    // B: x takes ownership (its own endpoint, preferred) -> release planned.
    x.ctl(&["endpoint", "move", IP])?;
    wait_until("x owns .11", Duration::from_secs(5), || {
        owner_identity(&x).as_deref() == Some("65000:1002")
    })?;
    std::thread::sleep(Duration::from_millis(400));
    // A again: x gives the /32 back (node 9's path wins) while the release
    // is still observing the provider.
    x.ctl(&["endpoint", "remove", IP])?;
    wait_until("node 9 owns .11 again", Duration::from_secs(5), || {
        owner_identity(&x).as_deref() == Some("65000:1009")
    })?;
    wait_until("capture confirmed again", Duration::from_secs(30), || {
        capture_ip(&x).is_ok_and(|c| c["phase"] == "confirmed" && c["desired"] == "capture")
    })?;
    // End state: still captured here, and the stale release never ran.
    assert_eq!(holder(&x_ns, IP)?.as_deref(), Some("eni-0cer"));
    let cap = x.json(&["show", "capture"])?;
    let fenced = cap["fencing"]["recent"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        fenced
            .iter()
            .any(|f| f["ip"] == IP && f["planned"] == "release"),
        "the stale release is reported as fenced: {}",
        cap["fencing"]
    );
    let ex = x.json(&["explain", IP])?;
    assert!(
        ex["fencing"]["stale_actions_fenced"].as_u64() >= Some(1),
        "{}",
        ex["fencing"]
    );
    let text = x.ctl(&["explain", IP])?;
    assert!(
        text.contains("skipped release planned from signature"),
        "{text}"
    );
    // No Unassign reached the emulator: the ENI kept the address throughout.
    let log = x.proc.log_text();
    assert!(!log.contains("release confirmed"), "{log}");
    emu(&x_ns, "DELETE", "/_emulator/faults", None)?;

    // Owned here for good: the release hands .11 back to the workload's ENI it
    // was captured from (remembered, and persisted next to the endpoint state).
    assert_eq!(capture_ip(&x)?["captured_from"], "eni-0workload");
    let origins = std::fs::read_to_string(dir.join("x-endpoints.capture-origins.json"))?;
    assert!(origins.contains("eni-0workload"), "{origins}");
    x.ctl(&["endpoint", "move", IP])?;
    wait_until("release confirmed", Duration::from_secs(20), || {
        capture_ip(&x).is_ok_and(|c| c["phase"] == "confirmed" && c["desired"] == "release")
    })?;
    assert_eq!(holder(&x_ns, IP)?.as_deref(), Some("eni-0workload"));
    let c = capture_ip(&x)?;
    assert_eq!(c["observed"], "elsewhere: eni-0workload");
    assert_eq!(c["captured_from"], Value::Null);

    // Provider faults: throttled, then 500s; the capture is not lost.
    emu(
        &x_ns,
        "POST",
        "/_emulator/faults",
        Some(&json!([
            {"provider": "aws", "action": "AssignPrivateIpAddresses", "kind": "throttle", "count": 2},
            {"provider": "aws", "action": "AssignPrivateIpAddresses", "kind": "error", "count": 1}
        ])),
    )?;
    x.ctl(&["endpoint", "remove", IP])?;
    wait_until("captured despite faults", Duration::from_secs(40), || {
        capture_ip(&x).is_ok_and(|c| c["phase"] == "confirmed" && c["desired"] == "capture")
    })?;
    assert_eq!(holder(&x_ns, IP)?.as_deref(), Some("eni-0cer"));
    // The SDK retries once itself, so the reconciler sees at least one of
    // the three failures, backs off and tries again.
    let cap = x.json(&["show", "capture"])?;
    assert!(cap["errors_total"].as_u64() >= Some(1), "{cap}");
    let log = x.proc.log_text();
    assert!(
        log.contains("RequestLimitExceeded"),
        "throttling named in the log"
    );

    // An unexpected holder: someone moves the address away behind our back;
    // the resync (5 s here) finds it and captures it again.
    emu(&x_ns, "POST", "/_emulator/reset", None)?;
    wait_until(
        "recaptured after a foreign move",
        Duration::from_secs(30),
        || holder(&x_ns, IP).ok().flatten().as_deref() == Some("eni-0cer"),
    )?;
    Ok(())
}

#[test]
fn aws_capture_without_credentials_is_reported_and_bgp_runs_on() -> Result<()> {
    let _g = serial();
    require_root();
    let scratch = Scratch::new("capcred")?;
    let dir = &scratch.path;
    let x_ns = Netns::new("x")?;
    x_ns.run(&["ip", "link", "set", "lo", "up"])?;
    let _emu = Emulator::start(&x_ns, dir)?;
    // No credentials anywhere: env cleared for the child, no profile file,
    // the instance-role lookup goes to the emulator's IMDS (which has none).
    std::env::remove_var("AWS_ACCESS_KEY_ID");
    std::env::remove_var("AWS_SECRET_ACCESS_KEY");
    std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", dir.join("none"));
    std::env::set_var("AWS_CONFIG_FILE", dir.join("none"));
    std::env::set_var("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:8700");
    let x = Control::start(Some(&x_ns), dir, "x", &x_config(dir))?;
    wait_until("provider error shown", Duration::from_secs(30), || {
        x.json(&["show", "capture"]).is_ok_and(|c| {
            c["provider_error"]
                .as_str()
                .is_some_and(|e| e.contains("credentials"))
        })
    })?;
    let text = x.ctl(&["show", "capture"])?;
    assert!(text.contains("PROVIDER CLIENT NOT RUNNING"), "{text}");
    // BGP and the admin API are unaffected.
    x.json(&["show", "bgp", "summary"])?;
    std::env::remove_var("AWS_SHARED_CREDENTIALS_FILE");
    std::env::remove_var("AWS_CONFIG_FILE");
    std::env::remove_var("AWS_EC2_METADATA_SERVICE_ENDPOINT");
    Ok(())
}
