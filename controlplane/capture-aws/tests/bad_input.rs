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
