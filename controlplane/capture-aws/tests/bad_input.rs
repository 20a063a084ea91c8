//! `AwsProvider` against the `cer-cloud-emulator` binary with bad input from the provider: a
//! clock skew between the host and EC2 (SigV4 dates), and ENIs detached from the instance while
//! captures are in flight.

mod common;

use std::net::Ipv4Addr;

use cer_capture::{CaptureProvider, Fence, Holding};
use cer_capture_aws::{AwsConfig, AwsProvider};
use common::*;
use serde_json::json;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

async fn provider(
    emu: &Emulator,
    eni_ids: Option<Vec<String>>,
) -> Result<AwsProvider, cer_capture::CaptureError> {
    test_env();
    let cfg = AwsConfig {
        endpoint_url: Some(emu.endpoint()),
        imds_endpoint: Some(emu.imds_endpoint()),
        eni_ids,
        ..Default::default()
    };
    AwsProvider::new(&cfg).await
}

/// (served, failed) of an EC2 action in the emulator's statistics.
async fn calls(emu: &Emulator, action: &str) -> (u64, u64) {
    let stats = emu.json("GET", "/_emulator/stats", "").await;
    stats["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] == action)
        .fold((0, 0), |(s, f), c| {
            (
                s + c["served"].as_u64().unwrap_or(0),
                f + c["failed"].as_u64().unwrap_or(0),
            )
        })
}

/// The emulator's clock ten minutes ahead of the host's: inside SigV4's 15 minutes, nothing
/// is refused. Twenty minutes ahead, then behind: EC2 refuses the first request of a client
/// (400 `RequestExpired`); the SDK measured the skew from the refusal's `Date` header and our
/// classifier retries it at once, signed with EC2's time: starting, capturing and releasing all
/// succeed, and every later request is signed right (one refusal per clock jump).
#[tokio::test]
async fn a_host_clock_off_by_10_or_20_minutes_keeps_capturing() {
    let emu = Emulator::start();
    let offset = |secs: i64| {
        let emu = &emu;
        async move {
            emu.json(
                "POST",
                "/_emulator/config",
                &json!({ "clock_offset_secs": secs }).to_string(),
            )
            .await;
        }
    };
    offset(600).await;
    let p = provider(&emu, Some(Vec::new()))
        .await
        .expect("starts 10 minutes off");
    p.capture(ip("10.0.1.100"), &Fence::open()).await.unwrap();
    assert!(
        eventually(std::time::Duration::from_secs(5), || async {
            p.observe(ip("10.0.1.100")).await.ok() == Some(Holding::Ours)
        })
        .await
    );
    assert_eq!(calls(&emu, "DescribeNetworkInterfaces").await.1, 0);
    assert_eq!(calls(&emu, "AssignPrivateIpAddresses").await, (1, 0));

    // Twenty minutes: a fresh client starts (its first call refused once, then corrected).
    offset(1200).await;
    emu.json("DELETE", "/_emulator/stats", "").await;
    let fresh = provider(&emu, Some(Vec::new()))
        .await
        .expect("starts 20 minutes off");
    let (served, failed) = calls(&emu, "DescribeNetworkInterfaces").await;
    assert_eq!(failed, 1, "one refusal, then signed with EC2's time");
    assert!(served >= 1);
    fresh
        .release(ip("10.0.1.100"), &Fence::open())
        .await
        .unwrap();
    assert!(
        eventually(std::time::Duration::from_secs(5), || async {
            fresh.observe(ip("10.0.1.100")).await.ok() == Some(Holding::Nobody)
        })
        .await
    );
    assert_eq!(calls(&emu, "DescribeNetworkInterfaces").await.1, 1);
    assert_eq!(calls(&emu, "UnassignPrivateIpAddresses").await, (1, 0));

    // The first client, whose clock the SDK believed 10 minutes off, meets a jump to 20 minutes
    // behind: its next call is refused once and retried; captures go on.
    offset(-1200).await;
    emu.json("DELETE", "/_emulator/stats", "").await;
    p.capture(ip("10.0.1.100"), &Fence::open()).await.unwrap();
    assert!(
        eventually(std::time::Duration::from_secs(5), || async {
            p.observe(ip("10.0.1.100")).await.ok() == Some(Holding::Ours)
        })
        .await
    );
    let (_, failed) = calls(&emu, "DescribeNetworkInterfaces").await;
    assert_eq!(failed, 1);
    assert_eq!(calls(&emu, "AssignPrivateIpAddresses").await, (1, 0));
}

/// Our instance `i-cer`: `eni-mgmt` (device 0, never captures), `eni-cer0` and `eni-cer1` in
/// the capture subnet (t3.large: 12 addresses per ENI); a workload ENI holding .100-.119.
fn detach_seed() -> serde_json::Value {
    let workload: Vec<String> = (100..120).map(|i| format!("10.0.1.{i}")).collect();
    json!({
        "region": "eu-west-1",
        "move_delay_ms": 300,
        "imds_instance": "i-cer",
        "instance_types": {"i-cer": "t3.large"},
        "subnets": [{"id": "subnet-1", "cidr": "10.0.1.0/24", "vpc": "vpc-1"}],
        "nics": [
            {"id": "eni-mgmt", "instance": "i-cer", "subnet": "subnet-1", "primary_ip": "10.0.1.9", "device_index": 0},
            {"id": "eni-cer0", "instance": "i-cer", "subnet": "subnet-1", "primary_ip": "10.0.1.10", "device_index": 1},
            {"id": "eni-cer1", "instance": "i-cer", "subnet": "subnet-1", "primary_ip": "10.0.1.11", "device_index": 2},
            {"id": "eni-w", "instance": "i-w", "subnet": "subnet-1", "primary_ip": "10.0.1.20",
             "secondary_ips": workload}
        ]
    })
}

async fn detach_provider(emu: &Emulator, enis: &[&str]) -> AwsProvider {
    test_env();
    let cfg = AwsConfig {
        region: Some("eu-west-1".into()),
        endpoint_url: Some(emu.endpoint()),
        eni_id: Some(enis[0].to_string()),
        eni_ids: Some(enis.iter().map(|e| e.to_string()).collect()),
        instance_type: Some("t3.large".into()),
        ..Default::default()
    };
    AwsProvider::new(&cfg).await.expect("provider starts")
}

fn reconciler() -> cer_capture::Reconciler {
    cer_capture::Reconciler::new(cer_capture::ReconcilerConfig {
        backoff_base: std::time::Duration::from_millis(100),
        backoff_max: std::time::Duration::from_millis(1500),
        throttle_base: std::time::Duration::from_millis(200),
        confirm_timeout: std::time::Duration::from_secs(4),
        confirm_interval: std::time::Duration::from_millis(50),
        call_timeout: std::time::Duration::from_secs(10),
        resync: std::time::Duration::from_secs(3600),
        pool: vec![(ip("10.0.1.0"), 24)],
        ..Default::default()
    })
}

fn capture(rec: &cer_capture::Reconciler, ips: impl IntoIterator<Item = u8>) {
    for i in ips {
        rec.set(
            Ipv4Addr::new(10, 0, 1, i),
            cer_capture::Intent {
                desired: cer_capture::Desired::Capture,
                signature: 7,
            },
        );
    }
}

/// Every /32 of `ips` confirmed by the reconciler and held by `eni` in the emulator's view.
async fn all_confirmed_on(
    emu: &Emulator,
    rec: &cer_capture::Reconciler,
    ips: std::ops::Range<u8>,
    eni: &str,
    within: std::time::Duration,
) -> bool {
    eventually(within, || {
        let ips = ips.clone();
        async move {
            for i in ips {
                let a = Ipv4Addr::new(10, 0, 1, i);
                let st = rec.ip_status(a);
                let confirmed = st.as_ref().is_some_and(|s| {
                    s.phase == cer_capture::reconciler::Phase::Confirmed
                        && s.observed.as_deref() == Some("ours")
                });
                if !confirmed || emu.holder(&a.to_string()).await.as_deref() != Some(eni) {
                    return false;
                }
            }
            true
        }
    })
    .await
}

/// Two ENIs of ours; the preferred one, holding eight captured /32s and receiving three more
/// (their AssignPrivateIpAddresses delayed in the emulator), is detached: the three land on the
/// detached ENI, are seen there and captured again onto the other one; the eight follow at the
/// resync. Every /32 ends confirmed on the attached ENI, none is lost.
#[tokio::test]
async fn detaching_one_of_two_enis_moves_its_addresses_and_captures_in_flight() {
    let emu = Emulator::start();
    emu.json("POST", "/_emulator/reset", &detach_seed().to_string())
        .await;
    let p = detach_provider(&emu, &["eni-cer0", "eni-cer1"]).await;
    let rec = reconciler();
    rec.start(std::sync::Arc::new(p));
    rec.activate();
    capture(&rec, 100..108);
    assert!(
        all_confirmed_on(
            &emu,
            &rec,
            100..108,
            "eni-cer0",
            std::time::Duration::from_secs(15)
        )
        .await,
        "{:?}",
        rec.status().ips
    );

    // Three more, whose assign waits in the emulator while eni-cer0 is detached.
    emu.fault(json!({"provider": "aws", "action": "AssignPrivateIpAddresses", "kind": "delay", "delay_ms": 600}))
        .await;
    capture(&rec, 108..111);
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    emu.json(
        "POST",
        "/_emulator/nics/detach",
        &json!({"id": "eni-cer0"}).to_string(),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    // The delayed assign went to the (now detached) eni-cer0.
    assert!(
        eventually(std::time::Duration::from_secs(3), || async {
            emu.holder("10.0.1.108").await.as_deref() == Some("eni-cer0")
        })
        .await
    );
    rec.resync();
    assert!(
        all_confirmed_on(
            &emu,
            &rec,
            100..111,
            "eni-cer1",
            std::time::Duration::from_secs(20)
        )
        .await,
        "{:#?}",
        rec.status().ips
    );
    let st = rec.status();
    assert!(
        st.provider_detail.contains("eni-cer0"),
        "{}",
        st.provider_detail
    );
    // The workload's other addresses were never touched.
    assert_eq!(emu.holder("10.0.1.111").await.as_deref(), Some("eni-w"));
}

/// The router's only capture ENI detached: every affected /32 shows why in its status (not
/// dropped, retried at the slow pace, not in a hot loop), and is confirmed again once the ENI
/// is attached again.
#[tokio::test]
async fn detaching_the_only_eni_is_a_clear_error_until_it_is_attached_again() {
    let emu = Emulator::start();
    emu.json("POST", "/_emulator/reset", &detach_seed().to_string())
        .await;
    let p = detach_provider(&emu, &["eni-cer0"]).await;
    let rec = reconciler();
    rec.start(std::sync::Arc::new(p));
    rec.activate();
    capture(&rec, 100..103);
    assert!(
        all_confirmed_on(
            &emu,
            &rec,
            100..103,
            "eni-cer0",
            std::time::Duration::from_secs(15)
        )
        .await
    );
    emu.json(
        "POST",
        "/_emulator/nics/detach",
        &json!({"id": "eni-cer0"}).to_string(),
    )
    .await;
    emu.json("DELETE", "/_emulator/stats", "").await;
    rec.resync();
    // A new /32 while detached fails the same way.
    capture(&rec, 103..104);
    let clear = |s: &cer_capture::reconciler::IpStatus| {
        s.phase == cer_capture::reconciler::Phase::Backoff
            && s.last_error_kind == Some(cer_capture::ErrorKind::Config)
            && s.last_error.as_deref().is_some_and(|e| {
                e.contains("ENI eni-cer0 is detached from instance i-cer") && e.contains("attach")
            })
    };
    assert!(
        eventually(std::time::Duration::from_secs(10), || async {
            (100..104).all(|i| {
                rec.ip_status(Ipv4Addr::new(10, 0, 1, i))
                    .is_some_and(|s| clear(&s))
            })
        })
        .await,
        "{:#?}",
        rec.status().ips
    );
    let st = rec.ip_status(ip("10.0.1.100")).unwrap();
    assert!(
        st.observed
            .as_deref()
            .is_some_and(|o| o.starts_with("detached: ")),
        "{st:?}"
    );
    // Slow retries: a few seconds bring a handful of attempts, not a storm.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let st = rec.ip_status(ip("10.0.1.100")).unwrap();
    assert!((1..=6).contains(&st.attempts), "{st:?}");
    assert_eq!(calls(&emu, "AssignPrivateIpAddresses").await, (0, 0));
    let (described, _) = calls(&emu, "DescribeNetworkInterfaces").await;
    assert!(described < 60, "{described} describes in ~4 s");
    // Nothing was moved off the detached ENI: the addresses wait there.
    assert_eq!(emu.holder("10.0.1.100").await.as_deref(), Some("eni-cer0"));

    emu.json(
        "POST",
        "/_emulator/nics/attach",
        &json!({"id": "eni-cer0"}).to_string(),
    )
    .await;
    assert!(
        all_confirmed_on(
            &emu,
            &rec,
            100..104,
            "eni-cer0",
            std::time::Duration::from_secs(10)
        )
        .await,
        "{:#?}",
        rec.status().ips
    );
    assert!(rec
        .ip_status(ip("10.0.1.100"))
        .unwrap()
        .last_error
        .is_none());
}
