//! `cer-bench-capture --mass N,...`: a site evacuation. N pool /32s held by
//! workload NICs change owner at once (a remote node now owns them), so this
//! CER must capture every one; one in twenty flips back to this node 50 ms
//! later (a flap inside the mass move, which must be fenced, never executed
//! stale). Through the real reconciler (batcher, budgets) and the real
//! clients against `cer-cloud-emulator` at its default latency and its
//! default quotas and API token buckets. The CER is seeded as AWS c5.4xlarge
//! with 8 ENIs in the subnet (30 addresses per ENI, primary included: 232
//! secondaries), Azure with two NICs (256 ipConfigurations each: 510
//! secondaries), OCI with four VNICs (64 secondary IPs each: 256).
//!
//! Measured per (provider, N): time from the change until every /32 that
//! fits is confirmed and every one that does not is alarmed over quota; the
//! provider API calls made and the throttle replies (the emulator's own
//! statistics); fenced actions; stale mutations executed (the emulator's
//! journal: a change to a flipped /32 accepted after its flip); and the
//! calls made in the 10 s after it settled (a retry storm would show there).

use crate::{client, http, Emulator};
use anyhow::{bail, Context, Result};
use cer_capture::reconciler::Phase;
use cer_capture::{Desired, Intent, Reconciler, ReconcilerConfig};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Workload /32s per workload NIC in the seed (under every quota).
const PER_WORKLOAD_NIC: usize = 20;
/// CER ENIs on AWS (c5.4xlarge: 8 ENIs x 30 addresses).
const AWS_CER_ENIS: usize = 8;
/// CER NICs on Azure (256 ipConfigurations each).
const AZURE_CER_NICS: usize = 2;
/// CER VNICs on OCI (64 secondary IPs each).
const OCI_CER_VNICS: usize = 4;
const AZ_RG: &str = "/subscriptions/sub-lab/resourceGroups/rg-lab/providers/Microsoft.Network";

fn pool_ip(i: usize) -> Ipv4Addr {
    // 10.77.64.0/18: room for 16k /32s, away from every primary.
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 77, 64, 0)) + i as u32)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The seed: the CER's NIC(s) and enough workload NICs to hold `n` /32s.
fn seed(provider: &str, n: usize, fixtures: &Path) -> Result<Value> {
    let wl_nics = n.div_ceil(PER_WORKLOAD_NIC).max(1);
    let share = |w: usize| -> Vec<String> {
        (w * PER_WORKLOAD_NIC..((w + 1) * PER_WORKLOAD_NIC).min(n))
            .map(|i| pool_ip(i).to_string())
            .collect()
    };
    Ok(match provider {
        "aws" => {
            let mut nics = Vec::new();
            for e in 0..AWS_CER_ENIS {
                nics.push(json!({"id": format!("eni-0cer{e}"), "instance": "i-cer", "subnet": "subnet-0lab",
                    "primary_ip": format!("10.77.1.{}", 10 + e), "device_index": e}));
            }
            let mut types = serde_json::Map::new();
            types.insert("i-cer".into(), json!("c5.4xlarge"));
            for w in 0..wl_nics {
                nics.push(json!({"id": format!("eni-0wl{w}"), "instance": format!("i-wl{w}"), "subnet": "subnet-0lab",
                    "primary_ip": format!("10.77.2.{}", 10 + w), "secondary_ips": share(w)}));
                types.insert(format!("i-wl{w}"), json!("c5.4xlarge"));
            }
            json!({
                "region": "eu-west-1",
                "imds_instance": "i-cer",
                "instance_types": types,
                "subnets": [{"id": "subnet-0lab", "cidr": "10.77.0.0/16", "vpc": "vpc-0lab"}],
                "nics": nics,
            })
        }
        "azure" => {
            let rg = AZ_RG;
            let subnet = format!("{rg}/virtualNetworks/vnet-lab/subnets/default");
            let mut nics = Vec::new();
            for id in our_nics("azure") {
                let primary = format!("10.77.1.{}", 10 + nics.len());
                nics.push(
                    json!({"id": id, "provider": "azure", "subnet": subnet, "primary_ip": primary}),
                );
            }
            for w in 0..wl_nics {
                nics.push(json!({"id": format!("{rg}/networkInterfaces/nic-wl{w}"), "provider": "azure",
                    "subnet": subnet, "primary_ip": format!("10.77.2.{}", 10 + w), "secondary_ips": share(w)}));
            }
            json!({
                "subnets": [{"id": subnet, "cidr": "10.77.0.0/16", "vpc": "vnet-lab"}],
                "nics": nics,
                "azure_list_page_size": 50,
            })
        }
        "oci" => {
            let mut nics = Vec::new();
            for id in our_nics("oci") {
                let primary = format!("10.77.1.{}", 10 + nics.len());
                nics.push(json!({"id": id, "provider": "oci", "subnet": "ocid1.subnet.oc1..lab", "primary_ip": primary}));
            }
            for w in 0..wl_nics {
                nics.push(
                    json!({"id": format!("ocid1.vnic.oc1..wl{w}"), "provider": "oci",
                    "subnet": "ocid1.subnet.oc1..lab", "primary_ip": format!("10.77.2.{}", 10 + w),
                    "secondary_ips": share(w)}),
                );
            }
            json!({
                "subnets": [{"id": "ocid1.subnet.oc1..lab", "cidr": "10.77.0.0/16", "vpc": "ocid1.vcn.oc1..lab"}],
                "nics": nics,
                "oci_api_keys": {
                    "ocid1.tenancy.oc1..bench/ocid1.user.oc1..bench/11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00":
                        std::fs::read_to_string(fixtures.join("api_key_public.pem")).context("api_key_public.pem")?
                }
            })
        }
        other => bail!("unknown provider '{other}' (aws, azure, oci)"),
    })
}

/// Provider API calls (served, throttled, failed) from the emulator's statistics.
fn calls(url: &str) -> Result<(u64, u64, u64)> {
    let v = http(url, "GET", "/_emulator/stats")?;
    let mut t = (0, 0, 0);
    for c in v["calls"].as_array().into_iter().flatten() {
        t.0 += c["served"].as_u64().unwrap_or(0);
        t.1 += c["throttled"].as_u64().unwrap_or(0);
        t.2 += c["failed"].as_u64().unwrap_or(0);
    }
    Ok(t)
}

/// Mutations of flipped /32s onto our NICs accepted after their flip.
fn stale_executed(
    url: &str,
    flipped: &HashSet<Ipv4Addr>,
    ours: &[String],
    flip_ms: u64,
) -> Result<Vec<u64>> {
    let v = http(url, "GET", "/_emulator/journal")?;
    let mut late = Vec::new();
    // What each of our NICs holds after each journaled change: an Azure
    // `set` lists every secondary the NIC keeps, so what it adds is the
    // difference with the NIC's previous set (our NICs start without pool /32s).
    let mut held: HashMap<String, HashSet<Ipv4Addr>> = HashMap::new();
    for e in v["entries"].as_array().into_iter().flatten() {
        let list = |k: &str| -> Vec<Ipv4Addr> {
            e[k].as_array()
                .into_iter()
                .flatten()
                .filter_map(|ip| ip.as_str().or_else(|| ip.get(0).and_then(Value::as_str)))
                .filter_map(|t| t.parse().ok())
                .collect()
        };
        let nic = e["nic"].as_str().unwrap_or("");
        if e["op"].as_str() == Some("assign") {
            // An assignment moves the addresses off every other NIC (a
            // hand-back takes them off ours).
            for (other, set) in held.iter_mut() {
                if other != nic {
                    for a in list("ips") {
                        set.remove(&a);
                    }
                }
            }
        }
        if !ours.iter().any(|o| o == nic) {
            continue;
        }
        let now = held.entry(nic.to_string()).or_default();
        let added: Vec<Ipv4Addr> = match e["op"].as_str() {
            Some("assign") => list("ips").into_iter().filter(|a| now.insert(*a)).collect(),
            Some("unassign") => {
                for a in list("ips") {
                    now.remove(&a);
                }
                Vec::new()
            }
            Some("set") => {
                let next: HashSet<Ipv4Addr> = list("secondaries").into_iter().collect();
                let added = next.difference(now).copied().collect();
                *now = next;
                added
            }
            _ => Vec::new(),
        };
        // Received after the flip (5 ms for the fence check to reach the
        // wire): a call planned from the old intent that nothing stopped.
        let received = e["request"]["received_unix_ms"]
            .as_u64()
            .or_else(|| e["accepted_unix_ms"].as_u64())
            .unwrap_or(0);
        if received > flip_ms + 5 {
            late.extend(
                added
                    .iter()
                    .filter(|a| flipped.contains(a))
                    .map(|_| received - flip_ms),
            );
        }
    }
    Ok(late)
}

/// The CER's NICs, the one the client is configured with first (`nic-cer` and
/// `ocid1.vnic.oc1..cer`, as the latency benchmark's client expects).
fn our_nics(provider: &str) -> Vec<String> {
    match provider {
        "aws" => (0..AWS_CER_ENIS).map(|e| format!("eni-0cer{e}")).collect(),
        "azure" => (0..AZURE_CER_NICS)
            .map(|i| match i {
                0 => format!("{AZ_RG}/networkInterfaces/nic-cer"),
                _ => format!("{AZ_RG}/networkInterfaces/nic-cer{i}"),
            })
            .collect(),
        _ => (0..OCI_CER_VNICS)
            .map(|i| match i {
                0 => "ocid1.vnic.oc1..cer".to_string(),
                _ => format!("ocid1.vnic.oc1..cer{i}"),
            })
            .collect(),
    }
}

/// One mass move: `n` /32s to capture at once, one in twenty flipped back.
pub async fn measure(provider: &str, n: usize, emulator: &Path, fixtures: &Path) -> Result<Value> {
    let dir = std::env::temp_dir().join(format!(
        "cer-bench-capture-mass-{}-{provider}-{n}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir)?;
    let emu = Emulator::start(emulator, &seed(provider, n, fixtures)?, &dir)?;
    // AWS finds the instance's ENIs itself; Azure and OCI are told the others.
    let extra: Vec<String> = if provider == "aws" {
        Vec::new()
    } else {
        our_nics(provider).into_iter().skip(1).collect()
    };
    let p = client(provider, &emu.url, fixtures, &extra).await?;
    let detail = p.describe();
    let r = Reconciler::new(ReconcilerConfig {
        pool: vec![(Ipv4Addr::new(10, 77, 64, 0), 18)],
        ..ReconcilerConfig::default()
    });
    r.start(p);
    r.activate();
    // Start-up calls (discovery) are not part of the move.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let u = emu.url.clone();
    tokio::task::spawn_blocking(move || http(&u, "DELETE", "/_emulator/stats")).await??;

    let ips: Vec<Ipv4Addr> = (0..n).map(pool_ip).collect();
    let flipped: HashSet<Ipv4Addr> = ips.iter().copied().step_by(20).collect();
    let t0 = Instant::now();
    for ip in &ips {
        r.set(
            *ip,
            Intent {
                desired: Desired::Capture,
                signature: 1,
            },
        );
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let flip_ms = unix_ms();
    for ip in &flipped {
        r.set(
            *ip,
            Intent {
                desired: Desired::Release,
                signature: 2,
            },
        );
    }
    // Settled: every /32 confirmed in its current intent, or over quota.
    let (settled_s, over) = loop {
        let st = r.status();
        let mut done = 0;
        let mut over = 0;
        for ip in &ips {
            match st.ips.get(ip).map(|s| s.phase) {
                Some(Phase::Confirmed) => done += 1,
                Some(Phase::OverQuota) => {
                    done += 1;
                    over += 1;
                }
                _ => {}
            }
        }
        if done == ips.len() {
            break (t0.elapsed().as_secs_f64(), over);
        }
        if t0.elapsed() > Duration::from_secs(300) {
            let phases: HashMap<String, usize> =
                st.ips.values().fold(HashMap::new(), |mut m, s| {
                    *m.entry(format!("{:?}", s.phase)).or_default() += 1;
                    m
                });
            bail!("{provider} n={n}: not settled within 300 s: {phases:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let u = emu.url.clone();
    let (served, throttled, failed) = tokio::task::spawn_blocking(move || calls(&u)).await??;
    // A retry storm would show in the next 10 s.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let u = emu.url.clone();
    let after = tokio::task::spawn_blocking(move || calls(&u)).await??;
    let calls_after = (after.0 + after.1 + after.2).saturating_sub(served + throttled + failed);
    let u = emu.url.clone();
    let ours = our_nics(provider);
    let fl = flipped.clone();
    let stale =
        tokio::task::spawn_blocking(move || stale_executed(&u, &fl, &ours, flip_ms)).await??;
    // The provider's view: every captured /32 on one of our NICs, no flipped one.
    let u = emu.url.clone();
    let holders =
        tokio::task::spawn_blocking(move || http(&u, "GET", "/_emulator/holders")).await??;
    let ours = our_nics(provider);
    let mut on_ours = 0;
    let mut flipped_on_ours = 0;
    for h in holders["holders"].as_array().into_iter().flatten() {
        let ip: Option<Ipv4Addr> = h["ip"].as_str().and_then(|s| s.parse().ok());
        let mine = h["nic"]
            .as_str()
            .is_some_and(|nic| ours.iter().any(|o| o == nic));
        if let (Some(ip), true) = (ip, mine) {
            if flipped.contains(&ip) {
                flipped_on_ours += 1;
            } else if ips.contains(&ip) {
                on_ours += 1;
            }
        }
    }
    let st = r.status();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(json!({
        "provider": provider,
        "n": n,
        "client": detail,
        "all_confirmed_s": (settled_s * 1000.0).round() / 1000.0,
        "api_calls": served + throttled + failed,
        "throttled": throttled,
        "failed_calls": failed,
        "fenced": st.fenced_total,
        "stale_executed": stale.len(),
        "stale_received_ms_after_flip": stale,
        "over_quota": over,
        "captured": on_ours,
        "flipped": flipped.len(),
        "flipped_left_on_ours": flipped_on_ours,
        "calls_in_10s_after": calls_after,
        "batch": st.batch,
        "reconciler_errors": st.errors_total,
        "quota_alarm": st.quota_alarm,
    }))
}
