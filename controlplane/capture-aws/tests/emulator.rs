//! `AwsProvider` against the real `cer-cloud-emulator` binary (EC2 query API with move
//! semantics, IMDSv2, fault injection): discovery, observe, asynchronous capture with
//! AllowReassignment, release, error classification, bounded timeouts and fencing.

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use cer_capture::{CaptureProvider, ErrorKind, Fence, Holding};
use cer_capture_aws::{AwsConfig, AwsProvider, OPERATION_TIMEOUT};
use common::*;
use serde_json::json;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// A provider for `eni-cer0` discovered through the emulator's IMDS, capturing on that ENI
/// alone (`eni_ids = []`): the instance's second ENI, `eni-cer1`, plays another holder.
async fn provider(emu: &Emulator) -> AwsProvider {
    test_env();
    let cfg = AwsConfig {
        endpoint_url: Some(emu.endpoint()),
        imds_endpoint: Some(emu.imds_endpoint()),
        eni_ids: Some(Vec::new()),
        ..Default::default()
    };
    AwsProvider::new(&cfg).await.expect("provider starts")
}

/// Without `eni_ids`, every ENI of the instance in the capture subnet may hold captures, the
/// discovered one first; both are this router's.
#[tokio::test]
async fn discovery_finds_the_instances_other_enis_in_the_subnet() {
    let emu = Emulator::start();
    test_env();
    let cfg = AwsConfig {
        endpoint_url: Some(emu.endpoint()),
        imds_endpoint: Some(emu.imds_endpoint()),
        ..Default::default()
    };
    let p = AwsProvider::new(&cfg).await.expect("provider starts");
    assert_eq!(p.eni_ids(), ["eni-cer0", "eni-cer1"]);
    assert!(p.is_own_nic("eni-cer1"));
    assert_eq!(p.observe(ip("10.0.1.111")).await.unwrap(), Holding::Ours);
    let held = p.held().await.unwrap().unwrap();
    assert!(held.contains(&ip("10.0.1.111")), "{held:?}");
}

#[tokio::test]
async fn imds_discovery_finds_the_eni() {
    let emu = Emulator::start();
    let p = provider(&emu).await;
    assert_eq!(p.name(), "aws");
    assert_eq!(p.eni_id(), "eni-cer0");
    let d = p.describe();
    for part in ["eni-cer0", "i-cer", "vpc-1", "subnet-1", "eu-west-1"] {
        assert!(d.contains(part), "{part} in {d}");
    }

    let cfg = AwsConfig {
        endpoint_url: Some(emu.endpoint()),
        imds_endpoint: Some(emu.imds_endpoint()),
        device_index: Some(1),
        ..Default::default()
    };
    let p1 = AwsProvider::new(&cfg).await.expect("device 1");
    assert_eq!(p1.eni_id(), "eni-cer1");
    assert_eq!(p1.observe(ip("10.0.1.111")).await.unwrap(), Holding::Ours);

    let cfg = AwsConfig {
        device_index: Some(7),
        ..cfg
    };
    let e = AwsProvider::new(&cfg).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Config, "{e}");
    assert!(e.message.contains("device index 7"), "{e}");
}

#[tokio::test]
async fn explicit_eni_and_region_need_no_imds() {
    let emu = Emulator::start();
    test_env();
    let cfg = AwsConfig {
        region: Some("eu-west-1".into()),
        endpoint_url: Some(emu.endpoint()),
        eni_id: Some("eni-cer1".into()),
        ..Default::default()
    };
    let p = AwsProvider::new(&cfg).await.expect("provider starts");
    assert_eq!(p.eni_id(), "eni-cer1");
    // The instance comes from the ENI's attachment.
    assert!(p.describe().contains("i-cer"), "{}", p.describe());

    let cfg = AwsConfig {
        eni_id: Some("eni-nope".into()),
        ..cfg
    };
    let e = AwsProvider::new(&cfg).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Config, "{e}");
    assert!(
        e.message.contains("InvalidNetworkInterfaceID.NotFound"),
        "{e}"
    );
}

#[tokio::test]
async fn observe_nobody_elsewhere_ours() {
    let emu = Emulator::start();
    let p = provider(&emu).await;
    assert_eq!(p.observe(ip("10.0.1.99")).await.unwrap(), Holding::Nobody);
    assert_eq!(
        p.observe(ip("10.0.1.100")).await.unwrap(),
        Holding::Elsewhere("eni-wl".into())
    );
    // A primary address of another ENI.
    assert_eq!(
        p.observe(ip("10.0.1.20")).await.unwrap(),
        Holding::Elsewhere("eni-wl".into())
    );
    // Our other ENI is "elsewhere" too: only this ENI is ours.
    assert_eq!(
        p.observe(ip("10.0.1.111")).await.unwrap(),
        Holding::Elsewhere("eni-cer1".into())
    );
    assert_eq!(p.observe(ip("10.0.1.50")).await.unwrap(), Holding::Ours);
    assert_eq!(p.observe(ip("10.0.1.10")).await.unwrap(), Holding::Ours);
    // Held in another VPC only: nobody in ours.
    assert_eq!(p.observe(ip("10.0.1.150")).await.unwrap(), Holding::Nobody);
}

#[tokio::test]
async fn capture_moves_asynchronously_and_is_idempotent() {
    let emu = Emulator::start();
    let p = provider(&emu).await;
    emu.set_move_delay(1500).await;
    let t0 = Instant::now();
    p.capture(ip("10.0.1.100"), &Fence::open())
        .await
        .expect("capture accepted");
    // Accepted, not yet visible: the move is asynchronous.
    if t0.elapsed() < Duration::from_millis(1000) {
        assert_eq!(
            p.observe(ip("10.0.1.100")).await.unwrap(),
            Holding::Elsewhere("eni-wl".into())
        );
    }
    let ours = eventually(Duration::from_secs(10), || async {
        p.observe(ip("10.0.1.100")).await.ok() == Some(Holding::Ours)
    })
    .await;
    assert!(ours, "10.0.1.100 never became ours");
    assert_eq!(emu.holder("10.0.1.100").await.as_deref(), Some("eni-cer0"));

    // Idempotent: already ours means no AssignPrivateIpAddresses call (the armed fault
    // would fail it and stays unconsumed).
    emu.fault(json!({"provider": "aws", "action": "AssignPrivateIpAddresses", "kind": "error", "count": 1}))
        .await;
    p.capture(ip("10.0.1.100"), &Fence::open())
        .await
        .expect("idempotent capture");
    assert_eq!(emu.faults().await.as_array().map(Vec::len), Some(1));
    emu.clear_faults().await;

    // Capturing an address nobody holds.
    emu.set_move_delay(0).await;
    p.capture(ip("10.0.1.77"), &Fence::open()).await.unwrap();
    let ours = eventually(Duration::from_secs(5), || async {
        p.observe(ip("10.0.1.77")).await.ok() == Some(Holding::Ours)
    })
    .await;
    assert!(ours);
}

#[tokio::test]
async fn release_touches_only_our_eni() {
    let emu = Emulator::start();
    let p = provider(&emu).await;
    emu.set_move_delay(0).await;
    p.release(ip("10.0.1.50"), &Fence::open())
        .await
        .expect("release ours");
    let gone = eventually(Duration::from_secs(5), || async {
        p.observe(ip("10.0.1.50")).await.ok() == Some(Holding::Nobody)
    })
    .await;
    assert!(gone, "10.0.1.50 still held");
    // Idempotent.
    p.release(ip("10.0.1.50"), &Fence::open())
        .await
        .expect("second release");

    // Held elsewhere: no UnassignPrivateIpAddresses call at all, the holder keeps it.
    emu.fault(json!({"provider": "aws", "action": "UnassignPrivateIpAddresses", "kind": "error", "count": 1}))
        .await;
    p.release(ip("10.0.1.101"), &Fence::open())
        .await
        .expect("release of a foreign address is a no-op");
    assert_eq!(emu.faults().await.as_array().map(Vec::len), Some(1));
    emu.clear_faults().await;
    assert_eq!(emu.holder("10.0.1.101").await.as_deref(), Some("eni-wl"));

    // Our primary address is never released.
    let e = p
        .release(ip("10.0.1.10"), &Fence::open())
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Config, "{e}");
    assert_eq!(emu.holder("10.0.1.10").await.as_deref(), Some("eni-cer0"));

    // Capture then release round trip.
    p.capture(ip("10.0.1.102"), &Fence::open()).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            p.observe(ip("10.0.1.102")).await.ok() == Some(Holding::Ours)
        })
        .await
    );
    p.release(ip("10.0.1.102"), &Fence::open()).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            p.observe(ip("10.0.1.102")).await.ok() == Some(Holding::Nobody)
        })
        .await
    );
}

#[tokio::test]
async fn throttling_is_throttled() {
    let emu = Emulator::start();
    let p = provider(&emu).await;
    emu.fault(json!({"provider": "aws", "action": "DescribeNetworkInterfaces", "kind": "throttle", "count": 10}))
        .await;
    let e = p.observe(ip("10.0.1.100")).await.unwrap_err();
    eprintln!("throttled: {e}");
    assert_eq!(e.kind, ErrorKind::Throttled, "{e}");
    assert_eq!(e.provider, "aws");
    assert!(e.message.contains("RequestLimitExceeded"), "{e}");
    emu.clear_faults().await;

    emu.fault(json!({"provider": "aws", "action": "AssignPrivateIpAddresses", "kind": "throttle", "count": 10}))
        .await;
    let e = p
        .capture(ip("10.0.1.100"), &Fence::open())
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Throttled, "{e}");
    assert_eq!(e.step, "AssignPrivateIpAddresses");
}

/// The describe budget as the provider reports it.
fn describe_budget(p: &AwsProvider) -> cer_capture::BudgetStatus {
    p.budgets()
        .into_iter()
        .find(|b| b.name == "aws describe")
        .expect("a describe budget")
}

/// A throttle reply the SDK retried away (the caller sees success) still
/// reaches the budget, and the retry attempt is charged to it: what EC2
/// counted, our bucket counted.
#[tokio::test]
async fn a_throttle_the_sdk_retried_away_still_reaches_the_budget() {
    let emu = Emulator::start();
    let p = provider(&emu).await;
    let before = describe_budget(&p);
    emu.fault(json!({"provider": "aws", "action": "DescribeNetworkInterfaces", "kind": "throttle", "count": 1}))
        .await;
    p.observe(ip("10.0.1.100"))
        .await
        .expect("the SDK's second attempt succeeds");
    let after = describe_budget(&p);
    assert_eq!(after.throttled - before.throttled, 1, "{after:?}");
    assert_eq!(
        after.calls - before.calls,
        2,
        "our token and the retry's: {after:?}"
    );
    let stats = emu.json("GET", "/_emulator/stats", "").await;
    let served: u64 = stats["calls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| {
            c["action"]
                .as_str()
                .is_some_and(|a| a.starts_with("Describe"))
        })
        .map(|c| c["served"].as_u64().unwrap_or(0) + c["throttled"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        served, after.calls,
        "EC2's count of Describe* calls and ours: {stats}"
    );
}

#[tokio::test]
async fn server_error_is_transient() {
    let emu = Emulator::start();
    let p = provider(&emu).await;
    emu.fault(json!({"provider": "aws", "action": "DescribeNetworkInterfaces", "kind": "error", "count": 10}))
        .await;
    let e = p.observe(ip("10.0.1.100")).await.unwrap_err();
    eprintln!("server error: {e}");
    assert_eq!(e.kind, ErrorKind::Transient, "{e}");
    assert!(e.message.contains("InternalError"), "{e}");
    assert!(e.message.contains("500"), "{e}");
    emu.clear_faults().await;
    // One failed attempt is absorbed by the SDK's single retry.
    emu.fault(json!({"provider": "aws", "action": "DescribeNetworkInterfaces", "kind": "error", "count": 1}))
        .await;
    assert_eq!(
        p.observe(ip("10.0.1.100")).await.unwrap(),
        Holding::Elsewhere("eni-wl".into())
    );
}

#[tokio::test]
async fn hung_endpoint_times_out() {
    let emu = Emulator::start();
    let p = provider(&emu).await;
    emu.fault(json!({"provider": "aws", "action": "DescribeNetworkInterfaces", "kind": "timeout", "count": 10}))
        .await;
    let t0 = Instant::now();
    let r = tokio::time::timeout(
        OPERATION_TIMEOUT + Duration::from_secs(20),
        p.observe(ip("10.0.1.100")),
    )
    .await
    .expect("observe hung past its timeout");
    let e = r.unwrap_err();
    let took = t0.elapsed();
    eprintln!("hung endpoint after {took:?}: {e}");
    assert_eq!(e.kind, ErrorKind::Transient, "{e}");
    assert!(
        took <= OPERATION_TIMEOUT + Duration::from_secs(2),
        "took {took:?}: {e}"
    );
}

#[tokio::test]
async fn unreachable_endpoint_is_transient() {
    let emu = Emulator::start();
    test_env();
    let port = free_port();
    let cfg = AwsConfig {
        endpoint_url: Some(format!("http://127.0.0.1:{port}")),
        imds_endpoint: Some(emu.imds_endpoint()),
        ..Default::default()
    };
    let e = AwsProvider::new(&cfg).await.unwrap_err();
    eprintln!("unreachable: {e}");
    assert_eq!(e.kind, ErrorKind::Transient, "{e}");
}

#[tokio::test]
async fn imds_failure_is_reported() {
    let emu = Emulator::start();
    test_env();
    emu.fault(json!({"provider": "imds", "kind": "error", "count": 100}))
        .await;
    let cfg = AwsConfig {
        endpoint_url: Some(emu.endpoint()),
        imds_endpoint: Some(emu.imds_endpoint()),
        ..Default::default()
    };
    let e = AwsProvider::new(&cfg).await.unwrap_err();
    eprintln!("imds: {e}");
    assert!(e.step.starts_with("IMDS"), "{e}");
    assert_eq!(e.kind, ErrorKind::Transient, "{e}");
}

#[tokio::test]
async fn closed_fence_changes_nothing() {
    let emu = Emulator::start();
    let p = provider(&emu).await;
    emu.set_move_delay(0).await;
    let closed = || false;
    let fence = Fence::new(closed);
    let before = emu.state().await;

    let e = p.capture(ip("10.0.1.100"), &fence).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Fenced, "{e}");
    assert_eq!(e.step, "AssignPrivateIpAddresses");
    let e = p.release(ip("10.0.1.50"), &fence).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Fenced, "{e}");
    assert_eq!(e.step, "UnassignPrivateIpAddresses");

    let after = emu.state().await;
    assert_eq!(before["nics"], after["nics"]);
    assert_eq!(before["target_nics"], after["target_nics"]);
    assert_eq!(after["pending"].as_array().map(Vec::len), Some(0));
    assert_eq!(emu.holder("10.0.1.100").await.as_deref(), Some("eni-wl"));
    assert_eq!(emu.holder("10.0.1.50").await.as_deref(), Some("eni-cer0"));

    // Already ours: capture needs no mutating call, so a closed fence does not matter.
    p.capture(ip("10.0.1.50"), &fence).await.unwrap();
    // Not ours: release needs no mutating call either.
    p.release(ip("10.0.1.100"), &fence).await.unwrap();
}

#[tokio::test]
async fn lost_reply_is_transient_and_observe_tells_the_outcome() {
    let emu = Emulator::start();
    let p = provider(&emu).await;
    emu.set_move_delay(0).await;
    // EC2 executes the call but the reply never arrives: the caller cannot know, observe can.
    emu.fault(json!({"provider": "aws", "action": "AssignPrivateIpAddresses", "kind": "timeout", "apply": true, "count": 10}))
        .await;
    let t0 = Instant::now();
    let e = p
        .capture(ip("10.0.1.101"), &Fence::open())
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transient, "{e}");
    assert!(t0.elapsed() <= OPERATION_TIMEOUT + Duration::from_secs(2));
    emu.clear_faults().await;
    let ours = eventually(Duration::from_secs(5), || async {
        p.observe(ip("10.0.1.101")).await.ok() == Some(Holding::Ours)
    })
    .await;
    assert!(ours, "the executed capture is visible through observe");
}

/// A release of an address captured from another ENI hands it back there: one
/// AssignPrivateIpAddresses to that ENI with AllowReassignment (asynchronous like a capture),
/// idempotent, never taking the address from a third ENI, fenced.
#[tokio::test]
async fn hand_back_returns_the_address_to_the_eni_it_came_from() {
    let emu = Emulator::start();
    let p = provider(&emu).await;
    emu.set_move_delay(0).await;
    p.capture(ip("10.0.1.100"), &Fence::open()).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            p.observe(ip("10.0.1.100")).await.ok() == Some(Holding::Ours)
        })
        .await
    );

    emu.set_move_delay(800).await;
    p.hand_back(ip("10.0.1.100"), "eni-wl", &Fence::open())
        .await
        .expect("hand back accepted");
    let back = eventually(Duration::from_secs(10), || async {
        p.observe(ip("10.0.1.100")).await.ok() == Some(Holding::Elsewhere("eni-wl".into()))
    })
    .await;
    assert!(back, "10.0.1.100 never went back to eni-wl");
    assert_eq!(emu.holder("10.0.1.100").await.as_deref(), Some("eni-wl"));
    emu.set_move_delay(0).await;

    // On eni-wl already, or held by a third ENI: no AssignPrivateIpAddresses at all (the armed
    // fault would fail it and stays unconsumed).
    emu.fault(json!({"provider": "aws", "action": "AssignPrivateIpAddresses", "kind": "error", "count": 1}))
        .await;
    p.hand_back(ip("10.0.1.100"), "eni-wl", &Fence::open())
        .await
        .expect("idempotent");
    p.hand_back(ip("10.0.1.101"), "eni-cer1", &Fence::open())
        .await
        .expect("a third ENI's address is left alone");
    assert_eq!(emu.faults().await.as_array().map(Vec::len), Some(1));
    emu.clear_faults().await;
    assert_eq!(emu.holder("10.0.1.101").await.as_deref(), Some("eni-wl"));

    // From nobody (an earlier hand-back or an operator removed it): assigned to the holder.
    p.hand_back(ip("10.0.1.77"), "eni-wl", &Fence::open())
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            emu.holder("10.0.1.77").await.as_deref() == Some("eni-wl")
        })
        .await
    );

    // Never to ourselves, never our primary.
    let e = p
        .hand_back(ip("10.0.1.50"), "eni-cer0", &Fence::open())
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Config, "{e}");
    let e = p
        .hand_back(ip("10.0.1.10"), "eni-wl", &Fence::open())
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Config, "{e}");
    assert!(e.message.contains("primary"), "{e}");
    assert!(p.is_own_nic("eni-cer0") && !p.is_own_nic("eni-cer1"));

    // A closed fence: nothing is sent.
    let before = emu.state().await;
    let closed = || false;
    let e = p
        .hand_back(ip("10.0.1.50"), "eni-wl", &Fence::new(closed))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Fenced, "{e}");
    assert_eq!(e.step, "AssignPrivateIpAddresses to eni-wl");
    let after = emu.state().await;
    assert_eq!(before["target_nics"], after["target_nics"]);
    assert_eq!(emu.holder("10.0.1.50").await.as_deref(), Some("eni-cer0"));
}

/// The ENI an address came from was deleted while it was captured: EC2 refuses the hand-back
/// (InvalidNetworkInterfaceID.NotFound), HolderGone, and nothing moved (the reconciler then
/// releases it to nobody). A refusal for lack of permission is a Config error instead.
#[tokio::test]
async fn hand_back_to_a_deleted_eni_is_holder_gone_and_keeps_the_address() {
    let emu = Emulator::start();
    let p = provider(&emu).await;
    emu.set_move_delay(0).await;
    p.capture(ip("10.0.1.100"), &Fence::open()).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            p.observe(ip("10.0.1.100")).await.ok() == Some(Holding::Ours)
        })
        .await
    );
    // Not allowed (403 UnauthorizedOperation) is not gone: Config, nothing moved.
    emu.fault(json!({"provider": "aws", "action": "AssignPrivateIpAddresses", "kind": "denied"}))
        .await;
    let e = p
        .hand_back(ip("10.0.1.100"), "eni-wl", &Fence::open())
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Config, "{e}");
    assert!(e.message.contains("UnauthorizedOperation"), "{e}");
    assert_eq!(emu.holder("10.0.1.100").await.as_deref(), Some("eni-cer0"));

    emu.delete_nic("eni-wl").await;
    let e = p
        .hand_back(ip("10.0.1.100"), "eni-wl", &Fence::open())
        .await
        .unwrap_err();
    eprintln!("holder gone: {e}");
    assert_eq!(e.kind, ErrorKind::HolderGone, "{e}");
    assert!(
        e.message.contains("eni-wl") && e.message.contains("InvalidNetworkInterfaceID.NotFound"),
        "{e}"
    );
    assert_eq!(p.observe(ip("10.0.1.100")).await.unwrap(), Holding::Ours);
    assert_eq!(emu.holder("10.0.1.100").await.as_deref(), Some("eni-cer0"));
    // The workload's other addresses went with its ENI.
    assert_eq!(p.observe(ip("10.0.1.101")).await.unwrap(), Holding::Nobody);
}

/// The instance type caps the addresses per ENI (t3.large: 12, primary included): 25 captures
/// from nobody fill eni-cer0 (room 10), then eni-cer1 (room 10), one AssignPrivateIpAddresses
/// each; the 5 left are refused as `Quota` without a call (the emulator counts the calls).
#[tokio::test]
async fn captures_spread_over_the_enis_and_the_rest_is_quota_without_a_call() {
    let emu = Emulator::start();
    let mut seed: serde_json::Value = serde_json::json!({
        "region": "eu-west-1",
        "move_delay_ms": 0,
        "instance_types": {"i-cer": "t3.large"},
        "subnets": [{"id": "subnet-1", "cidr": "10.0.1.0/24", "vpc": "vpc-1"}],
        "nics": [
            {"id": "eni-cer0", "instance": "i-cer", "subnet": "subnet-1", "primary_ip": "10.0.1.10",
             "secondary_ips": ["10.0.1.50"], "mac": "02:00:00:00:00:10", "device_index": 0},
            {"id": "eni-cer1", "instance": "i-cer", "subnet": "subnet-1", "primary_ip": "10.0.1.11",
             "secondary_ips": ["10.0.1.111"], "mac": "02:00:00:00:00:11", "device_index": 1}
        ]
    });
    seed["imds_instance"] = json!("i-cer");
    emu.json("POST", "/_emulator/reset", &seed.to_string())
        .await;
    test_env();
    let cfg = AwsConfig {
        endpoint_url: Some(emu.endpoint()),
        imds_endpoint: Some(emu.imds_endpoint()),
        ..Default::default()
    };
    let p = AwsProvider::new(&cfg).await.expect("provider starts");
    assert_eq!(p.addresses_per_eni_limit(), Some(12), "{}", p.describe());
    emu.json("DELETE", "/_emulator/stats", "").await;
    let items: Vec<cer_capture::Item> = (200..225)
        .map(|i| cer_capture::Item {
            ip: Ipv4Addr::new(10, 0, 1, i),
            fence: Fence::open(),
        })
        .collect();
    let out = p.capture_many(&items).await;
    let ok = out.iter().filter(|r| r.is_ok()).count();
    let quota: Vec<&cer_capture::CaptureError> = out
        .iter()
        .filter_map(|r| r.as_ref().err())
        .filter(|e| e.kind == ErrorKind::Quota)
        .collect();
    assert_eq!(ok, 20, "{out:?}");
    assert_eq!(quota.len(), 5, "{out:?}");
    assert!(
        quota[0].message.contains("t3.large") && quota[0].message.contains("12"),
        "{}",
        quota[0]
    );
    let stats = emu.json("GET", "/_emulator/stats", "").await;
    let assigns: u64 = stats["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] == "AssignPrivateIpAddresses")
        .map(|c| c["served"].as_u64().unwrap_or(0) + c["failed"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        assigns, 2,
        "one call per ENI, none for what does not fit: {stats}"
    );
    let held = p.held().await.unwrap().unwrap();
    assert_eq!(held.len(), 22, "{held:?}");
    for ip in ["10.0.1.200", "10.0.1.209"] {
        assert_eq!(emu.holder(ip).await.as_deref(), Some("eni-cer0"));
    }
    for ip in ["10.0.1.210", "10.0.1.219"] {
        assert_eq!(emu.holder(ip).await.as_deref(), Some("eni-cer1"));
    }
    assert_eq!(emu.holder("10.0.1.220").await, None);
}
