//! API rate limits (token buckets) and call statistics over real HTTP on loopback.
//!
//! Exact counts use buckets configured without refill (`refill_per_sec = 0`), so no timing can
//! change them; refills are checked with generous slack (at least the elapsed time's worth of
//! tokens, never a tight deadline), and the default buckets by bounds computed from each
//! burst's measured duration.

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const RG: &str = "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.Network";
const RG2: &str = "/subscriptions/sub-2/resourceGroups/rg-2/providers/Microsoft.Network";
const OCI_SUBNET: &str = "ocid1.subnet.oc1..s1";
const VNIC_A: &str = "ocid1.vnic.oc1..a";
const VNIC_B: &str = "ocid1.vnic.oc1..b";

fn nic_a() -> String {
    format!("{RG}/networkInterfaces/nic-a")
}

fn nic_z() -> String {
    format!("{RG2}/networkInterfaces/nic-z")
}

/// One site per provider; `limits` is the seed's `[limits]` section (absent: defaults).
async fn start_with(limits: Option<Value>) -> cer_cloud_emulator::Running {
    let subnet = format!("{RG}/virtualNetworks/vnet-1/subnets/default");
    let mut seed = json!({
        "move_delay_ms": 0,
        "subnets": [
            {"id": "subnet-1", "cidr": "10.0.1.0/24", "vpc": "vpc-1"},
            {"id": subnet, "cidr": "10.1.0.0/24", "vpc": "vnet-1"},
            {"id": OCI_SUBNET, "cidr": "10.2.0.0/24", "vpc": "vcn-1"}
        ],
        "nics": [
            {"id": "eni-a", "instance": "i-a", "subnet": "subnet-1", "primary_ip": "10.0.1.10",
             "secondary_ips": ["10.0.1.100"]},
            {"id": "eni-b", "instance": "i-b", "subnet": "subnet-1", "primary_ip": "10.0.1.20"},
            {"id": nic_a(), "provider": "azure", "subnet": subnet, "primary_ip": "10.1.0.4",
             "secondary_ips": ["10.1.0.100"]},
            {"id": nic_z(), "provider": "azure", "subnet": subnet, "primary_ip": "10.1.0.5"},
            {"id": VNIC_A, "provider": "oci", "subnet": OCI_SUBNET, "primary_ip": "10.2.0.10",
             "secondary_ips": ["10.2.0.100"]},
            {"id": VNIC_B, "provider": "oci", "subnet": OCI_SUBNET, "primary_ip": "10.2.0.20"}
        ]
    });
    if let Some(l) = limits {
        seed["limits"] = l;
    }
    start_json(seed).await
}

fn budget(capacity: u32) -> Value {
    json!({"capacity": capacity, "refill_per_sec": 0})
}

fn is_aws_throttle(r: &Resp) -> bool {
    if r.status == 503 {
        assert_ec2_error(r, 503, "RequestLimitExceeded");
        assert_eq!(tag_values(&r.body, "Message"), ["Request limit exceeded."]);
        true
    } else {
        false
    }
}

fn is_arm_throttle(r: &Resp) -> bool {
    r.status == 429 && r.json()["error"]["code"] == "SubscriptionRequestsThrottled"
}

fn is_oci_throttle(r: &Resp) -> bool {
    if r.status == 429 {
        assert_eq!(r.json()["code"], "TooManyRequests", "{}", r.body);
        true
    } else {
        false
    }
}

async fn dry_assign(a: SocketAddr) -> Resp {
    ec2(
        a,
        &[
            ("Action", "AssignPrivateIpAddresses"),
            ("NetworkInterfaceId", "eni-b"),
            ("PrivateIpAddress.1", "10.0.1.150"),
            ("DryRun", "true"),
        ],
    )
    .await
}

/// `n` calls back to back: how many were throttled, and how long the burst took.
async fn burst<F, Fut>(n: usize, mut call: F) -> (usize, Duration)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let t0 = Instant::now();
    let mut throttled = 0;
    for _ in 0..n {
        if call().await {
            throttled += 1;
        }
    }
    (throttled, t0.elapsed())
}

/// A burst of `capacity + k` calls on a default bucket: at most `k` throttles, and at least `k`
/// less what the bucket can have refilled while the burst ran (plus one for rounding).
fn assert_burst(what: &str, capacity: usize, refill: f64, k: usize, got: (usize, Duration)) {
    let (throttled, elapsed) = got;
    let refilled = (refill * elapsed.as_secs_f64()).ceil() as usize + 1;
    eprintln!("{what}: {throttled} of {capacity} + {k} throttled in {elapsed:?}");
    assert!(
        throttled <= k,
        "{what}: {throttled} throttles in a burst of {capacity} + {k}"
    );
    assert!(
        throttled + refilled >= k,
        "{what}: {throttled} throttles in a burst of {capacity} + {k} lasting {elapsed:?}"
    );
}

#[tokio::test]
async fn aws_buckets_are_per_action_and_throttled_calls_are_not_executed() {
    let emu = start_with(Some(json!({
        "aws_assign": budget(3),
        "aws_unassign": budget(2),
        "aws_describe": budget(2),
        "aws_describe_unfiltered": budget(1)
    })))
    .await;
    let a = emu.addr;
    let before = journal(a).await.len();
    // Five assigns: three served, two throttled and not executed.
    let mut statuses = Vec::new();
    for i in 101..106 {
        let ip = format!("10.0.1.{i}");
        let r = ec2(
            a,
            &[
                ("Action", "AssignPrivateIpAddresses"),
                ("NetworkInterfaceId", "eni-b"),
                ("PrivateIpAddress.1", &ip),
            ],
        )
        .await;
        statuses.push(if is_aws_throttle(&r) { 503 } else { r.status });
    }
    assert_eq!(statuses, [200, 200, 200, 503, 503]);
    assert_eq!(journal(a).await.len(), before + 3);
    assert_eq!(api_holder(a, "10.0.1.103").await.as_deref(), Some("eni-b"));
    assert_eq!(api_holder(a, "10.0.1.104").await, None);
    assert_eq!(api_holder(a, "10.0.1.105").await, None);

    // Unassign has its own bucket (AWS meters each action separately).
    let mut statuses = Vec::new();
    for ip in ["10.0.1.101", "10.0.1.102", "10.0.1.103"] {
        let r = ec2(
            a,
            &[
                ("Action", "UnassignPrivateIpAddresses"),
                ("NetworkInterfaceId", "eni-b"),
                ("PrivateIpAddress.1", ip),
            ],
        )
        .await;
        statuses.push(if is_aws_throttle(&r) { 503 } else { r.status });
    }
    assert_eq!(statuses, [200, 200, 503]);
    assert_eq!(api_holder(a, "10.0.1.103").await.as_deref(), Some("eni-b"));

    // Describes: a filtered DescribeNetworkInterfaces, DescribeInstanceTypes and an unfiltered
    // DescribeNetworkInterfaces each have their own bucket.
    let filtered = [
        ("Action", "DescribeNetworkInterfaces"),
        ("Filter.1.Name", "subnet-id"),
        ("Filter.1.Value.1", "subnet-1"),
    ];
    let types = [("Action", "DescribeInstanceTypes")];
    let unfiltered = [("Action", "DescribeNetworkInterfaces")];
    let mut throttles = Vec::new();
    for p in [
        &filtered[..],
        &filtered[..],
        &types[..],
        &unfiltered[..],
        &filtered[..],
        &types[..],
        &types[..],
        &unfiltered[..],
    ] {
        throttles.push(is_aws_throttle(&ec2(a, p).await));
    }
    assert_eq!(
        throttles,
        [false, false, false, false, true, false, true, true]
    );
    assert_eq!(
        stats(a).await,
        json!([
            {"provider": "aws", "action": "AssignPrivateIpAddresses", "served": 3, "throttled": 2, "failed": 0},
            {"provider": "aws", "action": "DescribeInstanceTypes", "served": 2, "throttled": 1, "failed": 0},
            {"provider": "aws", "action": "DescribeNetworkInterfaces", "served": 3, "throttled": 2, "failed": 0},
            {"provider": "aws", "action": "UnassignPrivateIpAddresses", "served": 2, "throttled": 1, "failed": 0}
        ])
    );
    emu.stop();
}

#[tokio::test]
async fn default_buckets_hold_their_documented_capacity() {
    let emu = start_with(None).await;
    let a = emu.addr;
    let k = 5;
    // AWS (DryRun calls are metered but change nothing).
    let got = burst(100 + k, move || async move {
        is_aws_throttle(&dry_assign(a).await)
    })
    .await;
    assert_burst("AssignPrivateIpAddresses", 100, 5.0, k, got);
    let got = burst(100 + k, move || async move {
        let r = ec2(
            a,
            &[
                ("Action", "UnassignPrivateIpAddresses"),
                ("NetworkInterfaceId", "eni-a"),
                ("PrivateIpAddress.1", "10.0.1.100"),
                ("DryRun", "true"),
            ],
        )
        .await;
        is_aws_throttle(&r)
    })
    .await;
    assert_burst("UnassignPrivateIpAddresses", 100, 5.0, k, got);
    let got = burst(100 + k, move || async move {
        let r = ec2(
            a,
            &[
                ("Action", "DescribeNetworkInterfaces"),
                ("NetworkInterfaceId.1", "eni-a"),
            ],
        )
        .await;
        is_aws_throttle(&r)
    })
    .await;
    assert_burst("DescribeNetworkInterfaces (by id)", 100, 20.0, k, got);
    let got = burst(50 + k, move || async move {
        is_aws_throttle(&ec2(a, &[("Action", "DescribeNetworkInterfaces")]).await)
    })
    .await;
    assert_burst("DescribeNetworkInterfaces (unfiltered)", 50, 10.0, k, got);
    let got = burst(100 + k, move || async move {
        let r = ec2(
            a,
            &[
                ("Action", "DescribeInstanceTypes"),
                ("InstanceType.1", "m5.large"),
            ],
        )
        .await;
        is_aws_throttle(&r)
    })
    .await;
    assert_burst("DescribeInstanceTypes", 100, 20.0, k, got);

    // Azure: identical PUTs (no change, so no running operation) and GETs.
    let id = nic_a();
    let body = arm_call(a, "GET", &id, None).await.json();
    let (id, body) = (id.as_str(), &body);
    let got = burst(200 + k, move || async move {
        is_arm_throttle(&arm_call(a, "PUT", id, Some(body)).await)
    })
    .await;
    assert_burst("ARM writes", 200, 10.0, k, got);
    let got = burst(250 + k, move || async move {
        is_arm_throttle(&arm_call(a, "GET", id, None).await)
    })
    .await;
    // One GET above already took a read token.
    assert_burst("ARM reads", 249, 25.0, k + 1, got);

    // OCI: renames (no move) and reads.
    let pip = cer_cloud_emulator::oci::private_ip_id(OCI_SUBNET, "10.2.0.100".parse().unwrap());
    let path = format!("/20160918/privateIps/{pip}");
    let path = path.as_str();
    let got = burst(50 + k, move || async move {
        let r = oci_call(a, "PUT", path, Some(&json!({"displayName": "x"}))).await;
        is_oci_throttle(&r)
    })
    .await;
    assert_burst("OCI mutations", 50, 10.0, k, got);
    let got = burst(100 + k, move || async move {
        is_oci_throttle(&oci_call(a, "GET", path, None).await)
    })
    .await;
    assert_burst("OCI reads", 100, 20.0, k, got);
    emu.stop();
}

#[tokio::test]
async fn aws_bucket_refills_at_its_rate() {
    let emu = start_with(Some(json!({
        "aws_assign": {"capacity": 2, "refill_per_sec": 2.0}
    })))
    .await;
    let a = emu.addr;
    let got = burst(
        4,
        move || async move { is_aws_throttle(&dry_assign(a).await) },
    )
    .await;
    assert_burst("capacity 2", 2, 2.0, 2, got);
    // Make sure it is empty now, then wait for two tokens (2/s: one second, plus slack).
    while !is_aws_throttle(&dry_assign(a).await) {}
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let t0 = Instant::now();
    assert!(!is_aws_throttle(&dry_assign(a).await));
    assert!(!is_aws_throttle(&dry_assign(a).await));
    // Never more than the capacity: the third is refused unless the machine stalled long
    // enough (half a second) for another token.
    let third = is_aws_throttle(&dry_assign(a).await);
    if t0.elapsed() < Duration::from_millis(400) {
        assert!(third, "a bucket of 2 held 3 tokens");
    }
    emu.stop();
}

#[tokio::test]
async fn arm_throttling_reports_retry_after_and_remaining_tokens() {
    let emu = start_with(Some(json!({
        "azure_writes": {"capacity": 1, "refill_per_sec": 0.5}
    })))
    .await;
    let a = emu.addr;
    let id = nic_a();
    let get = arm_call(a, "GET", &id, None).await;
    assert_eq!(
        get.header("x-ms-ratelimit-remaining-subscription-reads"),
        Some("249")
    );
    let body = get.json();
    let r = arm_call(a, "GET", &id, None).await;
    assert_eq!(
        r.header("x-ms-ratelimit-remaining-subscription-reads"),
        Some("248")
    );
    assert_eq!(
        r.header("x-ms-ratelimit-remaining-subscription-writes"),
        None
    );

    let r = arm_call(a, "PUT", &id, Some(&body)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("x-ms-ratelimit-remaining-subscription-writes"),
        Some("0")
    );
    // The bucket is empty: a PUT that would change the NIC is refused and not executed.
    let before = journal(a).await.len();
    let mut changed = body.clone();
    changed["properties"]["ipConfigurations"]
        .as_array_mut()
        .unwrap()
        .push(
            json!({"name": "extra", "properties": {"privateIPAddress": "10.1.0.101",
            "privateIPAllocationMethod": "Static", "primary": false}}),
        );
    let r = arm_call(a, "PUT", &id, Some(&changed)).await;
    assert!(is_arm_throttle(&r), "{} {}", r.status, r.body);
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(
        (1..=2).contains(&retry),
        "Retry-After {retry} at 0.5 tokens/s"
    );
    assert_eq!(
        r.header("x-ms-ratelimit-remaining-subscription-writes"),
        Some("0")
    );
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        msg.starts_with("Number of 'write' requests for subscription 'sub-1'"),
        "{msg}"
    );
    assert!(msg.contains(&format!("Please try again after '{retry}' seconds")));
    assert_eq!(journal(a).await.len(), before);
    assert_eq!(api_holder(a, "10.1.0.101").await, None);
    // Another subscription has its own bucket.
    let z = arm_call(a, "GET", &nic_z(), None).await.json();
    let r = arm_call(a, "PUT", &nic_z(), Some(&z)).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // After Retry-After the call goes through, and the next is refused again.
    tokio::time::sleep(Duration::from_millis(retry * 1000 + 150)).await;
    let r = arm_call(a, "PUT", &id, Some(&changed)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(journal(a).await.len(), before + 1);
    let r = arm_call(a, "PUT", &id, Some(&changed)).await;
    assert!(is_arm_throttle(&r), "{} {}", r.status, r.body);
    emu.stop();
}

#[tokio::test]
async fn oci_buckets_refuse_without_executing() {
    let emu = start_with(Some(json!({
        "oci_mutations": budget(2),
        "oci_reads": budget(3)
    })))
    .await;
    let a = emu.addr;
    let pip = cer_cloud_emulator::oci::private_ip_id(OCI_SUBNET, "10.2.0.100".parse().unwrap());
    let path = format!("/20160918/privateIps/{pip}");
    let mut throttles = Vec::new();
    for vnic in [VNIC_B, VNIC_A, VNIC_B] {
        let r = oci_call(a, "PUT", &path, Some(&json!({"vnicId": vnic}))).await;
        throttles.push(is_oci_throttle(&r));
    }
    assert_eq!(throttles, [false, false, true]);
    assert_eq!(api_holder(a, "10.2.0.100").await.as_deref(), Some(VNIC_A));
    let mut throttles = Vec::new();
    for _ in 0..4 {
        throttles.push(is_oci_throttle(&oci_call(a, "GET", &path, None).await));
    }
    assert_eq!(throttles, [false, false, false, true]);
    assert_eq!(
        stats(a).await,
        json!([
            {"provider": "oci", "action": "GetPrivateIp", "served": 3, "throttled": 1, "failed": 0},
            {"provider": "oci", "action": "UpdatePrivateIp", "served": 2, "throttled": 1, "failed": 0}
        ])
    );
    emu.stop();
}

#[tokio::test]
async fn stats_count_every_provider_call_and_nothing_else() {
    let emu = start_with(None).await;
    let a = emu.addr;
    // Not provider API calls: IMDS, the managed identity token, the control API.
    let r = http(
        a,
        "PUT",
        "/latest/api/token",
        &[("X-aws-ec2-metadata-token-ttl-seconds", "60")],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    let r = http(
        a,
        "GET",
        "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/",
        &[("Metadata", "true")],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    http(a, "GET", "/_emulator/state", &[], b"").await;
    assert_eq!(stats(a).await, json!([]));

    // AWS: served, failed, a throttle fault, an error fault, an unknown action.
    let r = ec2(
        a,
        &[
            ("Action", "AssignPrivateIpAddresses"),
            ("NetworkInterfaceId", "eni-b"),
            ("PrivateIpAddress.1", "10.0.1.150"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = ec2(
        a,
        &[
            ("Action", "AssignPrivateIpAddresses"),
            ("NetworkInterfaceId", "eni-b"),
            ("PrivateIpAddress.1", "10.9.9.9"),
        ],
    )
    .await;
    assert_eq!(r.status, 400);
    let r = http(
        a,
        "POST",
        "/_emulator/faults",
        &[],
        br#"[{"provider":"aws","kind":"throttle"},{"provider":"aws","kind":"error"}]"#,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(dry_assign(a).await.status, 503);
    assert_eq!(dry_assign(a).await.status, 500);
    assert_eq!(ec2(a, &[("Action", "Nope")]).await.status, 400);
    // Azure and OCI.
    assert_eq!(arm_call(a, "GET", &nic_a(), None).await.status, 200);
    let gone = format!("{RG}/networkInterfaces/nope");
    assert_eq!(arm_call(a, "GET", &gone, None).await.status, 404);
    let list = format!("/20160918/privateIps?vnicId={VNIC_A}");
    assert_eq!(oci_call(a, "GET", &list, None).await.status, 200);
    let report = http(a, "GET", "/_emulator/stats", &[], b"").await.json();
    assert_eq!(
        report["calls"],
        json!([
            {"provider": "aws", "action": "(unknown)", "served": 0, "throttled": 0, "failed": 1},
            {"provider": "aws", "action": "AssignPrivateIpAddresses", "served": 1, "throttled": 1, "failed": 2},
            {"provider": "azure", "action": "GetNetworkInterface", "served": 1, "throttled": 0, "failed": 1},
            {"provider": "oci", "action": "ListPrivateIps", "served": 1, "throttled": 0, "failed": 0}
        ])
    );
    let since = report["since_unix_ms"].as_u64().unwrap();
    assert!(since > 1_700_000_000_000, "{report}");

    // DELETE zeroes them, and so does a reset.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let r = http(a, "DELETE", "/_emulator/stats", &[], b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["calls"], json!([]));
    assert!(r.json()["since_unix_ms"].as_u64().unwrap() > since);
    assert_eq!(arm_call(a, "GET", &nic_a(), None).await.status, 200);
    assert_eq!(stats(a).await.as_array().unwrap().len(), 1);
    assert_eq!(
        http(a, "POST", "/_emulator/reset", &[], b"").await.status,
        200
    );
    assert_eq!(stats(a).await, json!([]));
    assert_eq!(
        http(a, "PUT", "/_emulator/stats", &[], b"").await.status,
        405
    );
    emu.stop();
}

#[tokio::test]
async fn limits_can_be_disabled_changed_at_run_time_and_reset() {
    // Disabled in the seed: a bucket of one lets everything through.
    let emu = start_with(Some(json!({"enabled": false, "aws_assign": budget(1)}))).await;
    let a = emu.addr;
    for _ in 0..5 {
        assert_eq!(dry_assign(a).await.status, 412);
    }
    // Enabled at run time (absent keys take their defaults).
    let v = config(a, json!({"limits": {"aws_assign": budget(1)}})).await;
    assert_eq!(v["limits"]["enabled"], true);
    assert_eq!(v["limits"]["aws_assign"]["capacity"], 1);
    assert_eq!(v["limits"]["oci_reads"]["capacity"], 100);
    assert_eq!(dry_assign(a).await.status, 412);
    assert_eq!(dry_assign(a).await.status, 503);
    let s = http(a, "GET", "/_emulator/state", &[], b"").await.json();
    assert_eq!(s["limits"]["aws_assign"]["capacity"], 1);
    assert_eq!(s["default_instance_type"], "c5.4xlarge");

    // Other traffic is never metered: every bucket of one, no refill.
    let all_one: serde_json::Map<String, Value> = [
        "aws_assign",
        "aws_unassign",
        "aws_describe",
        "aws_describe_unfiltered",
        "azure_writes",
        "azure_deletes",
        "azure_reads",
        "oci_mutations",
        "oci_reads",
    ]
    .iter()
    .map(|k| (k.to_string(), budget(1)))
    .collect();
    config(a, json!({"limits": all_one})).await;
    for _ in 0..5 {
        let r = http(
            a,
            "PUT",
            "/latest/api/token",
            &[("X-aws-ec2-metadata-token-ttl-seconds", "60")],
            b"",
        )
        .await;
        assert_eq!(r.status, 200);
        let r = http(
            a,
            "GET",
            "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=x",
            &[("Metadata", "true")],
            b"",
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(
            http(a, "GET", "/_emulator/holders", &[], b"").await.status,
            200
        );
    }

    // Bad limits are refused and change nothing.
    for bad in [
        json!({"limits": {"aws_assign": {"capacity": 1, "refill_per_sec": -1}}}),
        json!({"limits": {"aws_nope": budget(1)}}),
        json!({"limits": {"aws_assign": {"capacity": 1}}}),
    ] {
        let r = http(
            a,
            "POST",
            "/_emulator/config",
            &[],
            bad.to_string().as_bytes(),
        )
        .await;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
    assert_eq!(dry_assign(a).await.status, 412);
    assert_eq!(dry_assign(a).await.status, 503);

    // A reset restores the seed's limits (disabled).
    assert_eq!(
        http(a, "POST", "/_emulator/reset", &[], b"").await.status,
        200
    );
    for _ in 0..5 {
        assert_eq!(dry_assign(a).await.status, 412);
    }
    emu.stop();
}
