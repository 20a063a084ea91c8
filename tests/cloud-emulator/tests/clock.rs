//! The emulator's clock offset (`clock_offset_secs`): the `Date` header of every reply and the
//! SigV4 date check (15 minutes, else 400 `RequestExpired`) follow it.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use common::*;

const SIGV4: &str = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261121/eu-west-1/ec2/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=0123456789abcdef";

/// A signed-looking `DescribeNetworkInterfaces` dated `date`.
async fn describe_at(a: SocketAddr, date: SystemTime) -> Resp {
    let d = amz_date(date);
    http(
        a,
        "POST",
        "/",
        &[
            ("Authorization", SIGV4),
            ("X-Amz-Date", &d),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        b"Action=DescribeNetworkInterfaces&Version=2016-11-15&NetworkInterfaceId.1=eni-b",
    )
    .await
}

/// The reply's `Date` minus the host's clock, in seconds.
fn offset_of(r: &Resp) -> i64 {
    let d = r.header("date").expect("every reply has a Date header");
    let server = httpdate::parse_http_date(d).expect("an HTTP date");
    let now = SystemTime::now();
    match server.duration_since(now) {
        Ok(ahead) => ahead.as_secs_f64().round() as i64,
        Err(behind) => -(behind.duration().as_secs_f64().round() as i64),
    }
}

#[tokio::test]
async fn the_clock_offset_moves_the_date_header_and_the_sigv4_window() {
    let mut seed = seed();
    seed.clock_offset_secs = 600;
    let emu = cer_cloud_emulator::start(seed, "127.0.0.1:0".parse().unwrap(), &[])
        .await
        .unwrap();
    let a = emu.addr;
    let now = SystemTime::now;

    // Ten minutes ahead: every reply (EC2, control API) says so; a request signed with the
    // host's time is inside AWS's 15 minutes and served.
    let r = describe_at(a, now()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        (599..=601).contains(&offset_of(&r)),
        "{:?}",
        r.header("date")
    );
    let r = http(a, "GET", "/_emulator/state", &[], b"").await;
    assert_eq!(r.json()["clock_offset_secs"], 600);
    assert!((599..=601).contains(&offset_of(&r)));

    // Twenty minutes ahead: the host's time is refused, as EC2 refuses a skewed clock; a request
    // dated by the emulator's clock (what a client learns from the Date header) is served.
    let c = config(a, serde_json::json!({"clock_offset_secs": 1200})).await;
    assert_eq!(c["clock_offset_secs"], 1200);
    let r = describe_at(a, now()).await;
    assert_ec2_error(&r, 400, "RequestExpired");
    assert!(r.body.contains("Request has expired."), "{}", r.body);
    assert!((1199..=1201).contains(&offset_of(&r)));
    let r = describe_at(a, now() + Duration::from_secs(1200)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Too far in the future is refused too; 14 minutes either way is not.
    let r = describe_at(a, now() + Duration::from_secs(1200 + 16 * 60)).await;
    assert_ec2_error(&r, 400, "RequestExpired");
    let r = describe_at(a, now() + Duration::from_secs(1200 - 14 * 60)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = describe_at(a, now() + Duration::from_secs(1200 + 14 * 60)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // A refused call is counted as failed, and changes nothing.
    let calls = stats(a).await;
    let d = calls
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["action"] == "DescribeNetworkInterfaces")
        .unwrap()
        .clone();
    assert_eq!(
        (d["served"].as_u64(), d["failed"].as_u64()),
        (Some(4), Some(2))
    );

    // A malformed date is an incomplete signature, not an expired one.
    let r = http(
        a,
        "POST",
        "/",
        &[
            ("Authorization", SIGV4),
            ("X-Amz-Date", "2026-12-07T05:50:00Z"),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        b"Action=DescribeNetworkInterfaces&Version=2016-11-15",
    )
    .await;
    assert_ec2_error(&r, 400, "IncompleteSignature");
    // Unsigned requests (tests, tools) are not date-checked.
    let r = ec2(a, &[("Action", "DescribeNetworkInterfaces")]).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Behind works too; out of range is refused; reset goes back to the seed's offset.
    config(a, serde_json::json!({"clock_offset_secs": -1200})).await;
    assert_ec2_error(&describe_at(a, now()).await, 400, "RequestExpired");
    let r = describe_at(a, now() - Duration::from_secs(1200)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!((-1201..=-1199).contains(&offset_of(&r)));
    let r = http(
        a,
        "POST",
        "/_emulator/config",
        &[],
        br#"{"clock_offset_secs": 99999999999}"#,
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = http(a, "POST", "/_emulator/reset", &[], b"").await;
    assert_eq!(r.status, 200);
    let r = describe_at(a, now()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!((599..=601).contains(&offset_of(&r)));
    // The seed is checked.
    let mut bad = seed_with_offset(i64::MAX);
    assert!(bad.validate().is_err());
    bad.clock_offset_secs = -3600;
    bad.validate().unwrap();
    emu.stop();
}

fn seed_with_offset(secs: i64) -> cer_cloud_emulator::Seed {
    let mut s = seed();
    s.clock_offset_secs = secs;
    s
}
