//! The EC2 query API over real HTTP on loopback.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test]
async fn assign_conflict_then_reassignment_moves_after_the_delay() {
    let emu = start().await;
    let a = emu.addr;

    // Held by eni-a: without AllowReassignment this is PrivateIpAddressInUse, and nothing moves.
    let r = ec2(
        a,
        &[
            ("Action", "AssignPrivateIpAddresses"),
            ("NetworkInterfaceId", "eni-b"),
            ("PrivateIpAddress.1", "10.0.1.100"),
        ],
    )
    .await;
    assert_ec2_error(&r, 400, "PrivateIpAddressInUse");
    assert!(
        emu.emulator.state().target().nics["eni-a"]
            .secondary_ips
            .len()
            == 1
    );
    let r = ec2(
        a,
        &[
            ("Action", "AssignPrivateIpAddresses"),
            ("NetworkInterfaceId", "eni-b"),
            ("PrivateIpAddress.1", "10.0.1.100"),
            ("AllowReassignment", "false"),
        ],
    )
    .await;
    assert_ec2_error(&r, 400, "PrivateIpAddressInUse");

    // With it the address moves, but only after the move delay (400 ms in the seed).
    let t0 = Instant::now();
    let r = ec2(
        a,
        &[
            ("Action", "AssignPrivateIpAddresses"),
            ("NetworkInterfaceId", "eni-b"),
            ("PrivateIpAddress.1", "10.0.1.100"),
            ("AllowReassignment", "true"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains(
        "<AssignPrivateIpAddressesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">"
    ));
    assert_eq!(tag_values(&r.body, "requestId").len(), 1);
    assert_eq!(tag_values(&r.body, "return"), vec!["true"]);
    assert_eq!(tag_values(&r.body, "networkInterfaceId"), vec!["eni-b"]);
    assert_eq!(tag_values(&r.body, "privateIpAddress"), vec!["10.0.1.100"]);
    assert!(r.body.contains("<assignedPrivateIpAddressesSet>"));
    assert!(r.header("x-amzn-requestid").is_some());

    let before = described_holders(a, "10.0.1.100").await;
    let api_before = api_holder(a, "10.0.1.100").await;
    let pending = http(a, "GET", "/_emulator/holders", &[], b"").await.json()["pending"].clone();
    if t0.elapsed() < Duration::from_millis(350) {
        assert_eq!(before, vec!["eni-a"], "old holder still visible");
        assert_eq!(api_before.as_deref(), Some("eni-a"));
        assert_eq!(pending.as_array().map(Vec::len), Some(1), "{pending}");
        assert_eq!(pending[0]["op"], "assign");
        assert_eq!(pending[0]["nic"], "eni-b");
    } else {
        eprintln!("machine too slow to observe the old holder; checking the end state only");
    }

    tokio::time::sleep(
        Duration::from_millis(400).saturating_sub(t0.elapsed()) + Duration::from_millis(50),
    )
    .await;
    assert_eq!(described_holders(a, "10.0.1.100").await, vec!["eni-b"]);
    assert_eq!(api_holder(a, "10.0.1.100").await.as_deref(), Some("eni-b"));
    // eni-a lost it: only its primary is left, flagged primary.
    let r = ec2(
        a,
        &[
            ("Action", "DescribeNetworkInterfaces"),
            ("NetworkInterfaceId.1", "eni-a"),
        ],
    )
    .await;
    assert_eq!(
        tag_values(&r.body, "privateIpAddress"),
        vec!["10.0.1.10", "10.0.1.10"]
    );
    assert_eq!(tag_values(&r.body, "primary"), vec!["true"]);
    // eni-b: primary then the moved secondary.
    let r = ec2(
        a,
        &[
            ("Action", "DescribeNetworkInterfaces"),
            ("NetworkInterfaceId.1", "eni-b"),
        ],
    )
    .await;
    assert_eq!(tag_values(&r.body, "primary"), vec!["true", "false"]);
    assert_eq!(
        tag_values(&r.body, "privateIpAddress"),
        vec!["10.0.1.20", "10.0.1.20", "10.0.1.100"]
    );
    let h = http(a, "GET", "/_emulator/holders", &[], b"").await.json();
    assert_eq!(h["pending"].as_array().map(Vec::len), Some(0));

    // Assigning to the holder again is a no-op success; another ENI's primary never moves.
    let r = ec2(
        a,
        &[
            ("Action", "AssignPrivateIpAddresses"),
            ("NetworkInterfaceId", "eni-b"),
            ("PrivateIpAddress.1", "10.0.1.100"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = ec2(
        a,
        &[
            ("Action", "AssignPrivateIpAddresses"),
            ("NetworkInterfaceId", "eni-b"),
            ("PrivateIpAddress.1", "10.0.1.10"),
            ("AllowReassignment", "true"),
        ],
    )
    .await;
    assert_ec2_error(&r, 400, "PrivateIpAddressInUse");
    emu.stop();
}

#[tokio::test]
async fn unassign_and_automatic_assignment() {
    let emu = start().await;
    let a = emu.addr;
    http(
        a,
        "POST",
        "/_emulator/config",
        &[],
        br#"{"move_delay_ms": 0}"#,
    )
    .await;

    let r = ec2(
        a,
        &[
            ("Action", "UnassignPrivateIpAddresses"),
            ("NetworkInterfaceId", "eni-a"),
            ("PrivateIpAddress.1", "10.0.1.100"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains(
        "<UnassignPrivateIpAddressesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">"
    ));
    assert_eq!(tag_values(&r.body, "return"), vec!["true"]);
    assert!(described_holders(a, "10.0.1.100").await.is_empty());
    assert_eq!(api_holder(a, "10.0.1.100").await, None);

    // Not held any more, and the primary can never be unassigned.
    for ip in ["10.0.1.100", "10.0.1.10", "10.0.1.20"] {
        let r = ec2(
            a,
            &[
                ("Action", "UnassignPrivateIpAddresses"),
                ("NetworkInterfaceId", "eni-a"),
                ("PrivateIpAddress.1", ip),
            ],
        )
        .await;
        assert_ec2_error(&r, 400, "InvalidParameterValue");
    }
    let r = ec2(
        a,
        &[
            ("Action", "UnassignPrivateIpAddresses"),
            ("NetworkInterfaceId", "eni-a"),
        ],
    )
    .await;
    assert_ec2_error(&r, 400, "MissingParameter");

    // A free address is now assignable without reassignment; a count picks free addresses.
    let r = ec2(
        a,
        &[
            ("Action", "AssignPrivateIpAddresses"),
            ("NetworkInterfaceId", "eni-c"),
            ("PrivateIpAddress.1", "10.0.1.100"),
            ("PrivateIpAddress.2", "10.0.1.101"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        tag_values(&r.body, "privateIpAddress"),
        vec!["10.0.1.100", "10.0.1.101"]
    );
    let r = ec2(
        a,
        &[
            ("Action", "AssignPrivateIpAddresses"),
            ("NetworkInterfaceId", "eni-c"),
            ("SecondaryPrivateIpAddressCount", "2"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        tag_values(&r.body, "privateIpAddress"),
        vec!["10.0.1.4", "10.0.1.5"]
    );
    assert_eq!(api_holder(a, "10.0.1.5").await.as_deref(), Some("eni-c"));
    // Outside the subnet.
    let r = ec2(
        a,
        &[
            ("Action", "AssignPrivateIpAddresses"),
            ("NetworkInterfaceId", "eni-c"),
            ("PrivateIpAddress.1", "10.0.2.1"),
        ],
    )
    .await;
    assert_ec2_error(&r, 400, "InvalidParameterValue");
    emu.stop();
}

#[tokio::test]
async fn describe_with_ids_and_filters() {
    let emu = start().await;
    let a = emu.addr;
    let ids = |r: &Resp| tag_values(&r.body, "networkInterfaceId");

    let r = ec2(a, &[("Action", "DescribeNetworkInterfaces")]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains(
        "<DescribeNetworkInterfacesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">"
    ));
    assert_eq!(ids(&r), vec!["eni-a", "eni-b", "eni-c"]);
    assert_eq!(tag_values(&r.body, "instanceId"), vec!["i-a", "i-b", "i-b"]);
    assert_eq!(tag_values(&r.body, "deviceIndex"), vec!["0", "0", "1"]);
    assert_eq!(tag_values(&r.body, "macAddress")[0], "02:00:00:00:00:0a");
    assert_eq!(tag_values(&r.body, "subnetId")[0], "subnet-1");
    assert_eq!(tag_values(&r.body, "vpcId")[0], "vpc-1");
    assert_eq!(tag_values(&r.body, "availabilityZone")[0], "eu-west-1a");
    assert_eq!(tag_values(&r.body, "privateIpAddressesSet").len(), 3);

    let r = ec2(
        a,
        &[
            ("Action", "DescribeNetworkInterfaces"),
            ("NetworkInterfaceId.2", "eni-c"),
            ("NetworkInterfaceId.1", "eni-a"),
        ],
    )
    .await;
    assert_eq!(ids(&r), vec!["eni-a", "eni-c"]);

    let r = ec2(
        a,
        &[
            ("Action", "DescribeNetworkInterfaces"),
            ("Filter.1.Name", "attachment.instance-id"),
            ("Filter.1.Value.1", "i-b"),
        ],
    )
    .await;
    assert_eq!(ids(&r), vec!["eni-b", "eni-c"]);

    // Two filters AND together; values within one filter OR; wildcards.
    let r = ec2(
        a,
        &[
            ("Action", "DescribeNetworkInterfaces"),
            ("Filter.1.Name", "attachment.instance-id"),
            ("Filter.1.Value.1", "i-b"),
            ("Filter.1.Value.2", "i-a"),
            ("Filter.2.Name", "network-interface-id"),
            ("Filter.2.Value.1", "eni-?"),
            ("Filter.3.Name", "addresses.private-ip-address"),
            ("Filter.3.Value.1", "10.0.1.1*"),
        ],
    )
    .await;
    assert_eq!(ids(&r), vec!["eni-a"], "{}", r.body);

    // Secondary addresses match addresses.private-ip-address, not private-ip-address.
    let r = ec2(
        a,
        &[
            ("Action", "DescribeNetworkInterfaces"),
            ("Filter.1.Name", "private-ip-address"),
            ("Filter.1.Value.1", "10.0.1.100"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(ids(&r).is_empty());
    assert!(r.body.contains("<networkInterfaceSet/>"));

    let r = ec2(
        a,
        &[
            ("Action", "DescribeNetworkInterfaces"),
            ("NetworkInterfaceId.1", "eni-a"),
            ("NetworkInterfaceId.2", "eni-zz"),
        ],
    )
    .await;
    assert_ec2_error(&r, 400, "InvalidNetworkInterfaceID.NotFound");
    assert!(r.body.contains("eni-zz"));

    let r = ec2(
        a,
        &[
            ("Action", "DescribeNetworkInterfaces"),
            ("Filter.1.Name", "no-such-filter"),
            ("Filter.1.Value.1", "x"),
        ],
    )
    .await;
    assert_ec2_error(&r, 400, "InvalidParameterValue");

    // Pagination.
    let r = ec2(
        a,
        &[("Action", "DescribeNetworkInterfaces"), ("MaxResults", "5")],
    )
    .await;
    assert_eq!(ids(&r).len(), 3);
    assert!(tag_values(&r.body, "nextToken").is_empty());
    emu.stop();
}

#[tokio::test]
async fn injected_throttling_errors_delays_and_timeouts() {
    let emu = start().await;
    let a = emu.addr;
    let assign = [
        ("Action", "AssignPrivateIpAddresses"),
        ("NetworkInterfaceId", "eni-b"),
        ("PrivateIpAddress.1", "10.0.1.150"),
    ];

    let r = http(
        a,
        "POST",
        "/_emulator/faults",
        &[],
        br#"[{"provider":"aws","action":"AssignPrivateIpAddresses","kind":"throttle","count":2},
            {"provider":"aws","action":"DescribeNetworkInterfaces","kind":"error"}]"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["faults"].as_array().map(Vec::len), Some(2));

    for _ in 0..2 {
        let r = ec2(a, &assign).await;
        assert_ec2_error(&r, 503, "RequestLimitExceeded");
    }
    assert!(emu
        .emulator
        .state()
        .target()
        .holder("10.0.1.150".parse().unwrap())
        .is_none());
    let r = ec2(a, &[("Action", "DescribeNetworkInterfaces")]).await;
    assert_ec2_error(&r, 500, "InternalError");
    let r = ec2(a, &assign).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = ec2(a, &[("Action", "DescribeNetworkInterfaces")]).await;
    assert_eq!(r.status, 200);
    let r = http(a, "GET", "/_emulator/faults", &[], b"").await;
    assert_eq!(r.json()["faults"], serde_json::json!([]));

    // Delay: answered normally, late.
    http(
        a,
        "POST",
        "/_emulator/faults",
        &[],
        br#"{"provider":"aws","kind":"delay","delay_ms":300}"#,
    )
    .await;
    let t = Instant::now();
    let r = ec2(a, &[("Action", "DescribeNetworkInterfaces")]).await;
    assert_eq!(r.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));

    // Timeout with apply: no answer, but the change happened.
    http(
        a,
        "POST",
        "/_emulator/faults",
        &[],
        br#"{"provider":"aws","action":"UnassignPrivateIpAddresses","kind":"timeout","delay_ms":300,"apply":true}"#,
    )
    .await;
    let r = ec2(
        a,
        &[
            ("Action", "UnassignPrivateIpAddresses"),
            ("NetworkInterfaceId", "eni-b"),
            ("PrivateIpAddress.1", "10.0.1.150"),
        ],
    )
    .await;
    assert_eq!(r.status, 0, "no answer: {r:?}");
    assert!(emu
        .emulator
        .state()
        .target()
        .holder("10.0.1.150".parse().unwrap())
        .is_none());

    // Bad rules are refused; DELETE clears.
    for bad in [
        &b"{"[..],
        br#"{"kind":"explode"}"#,
        br#"{"kind":"error","extra":1}"#,
    ] {
        let r = http(a, "POST", "/_emulator/faults", &[], bad).await;
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(r.json()["error"].is_string());
    }
    http(
        a,
        "POST",
        "/_emulator/faults",
        &[],
        br#"{"kind":"error","count":5}"#,
    )
    .await;
    let r = http(a, "DELETE", "/_emulator/faults", &[], b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        ec2(a, &[("Action", "DescribeNetworkInterfaces")])
            .await
            .status,
        200
    );
    emu.stop();
}

#[tokio::test]
async fn malformed_requests_get_ec2_error_documents() {
    let emu = start().await;
    let a = emu.addr;
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![], "MissingAction"),
        (vec![("Action", "RunInstances")], "InvalidAction"),
        (
            vec![
                ("Action", "AssignPrivateIpAddresses"),
                ("PrivateIpAddress.1", "10.0.1.5"),
            ],
            "MissingParameter",
        ),
        (
            vec![
                ("Action", "AssignPrivateIpAddresses"),
                ("NetworkInterfaceId", "eni-b"),
            ],
            "MissingParameter",
        ),
        (
            vec![
                ("Action", "AssignPrivateIpAddresses"),
                ("NetworkInterfaceId", "eni-b"),
                ("PrivateIpAddress.1", "10.0.1.999"),
            ],
            "InvalidParameterValue",
        ),
        (
            vec![
                ("Action", "AssignPrivateIpAddresses"),
                ("NetworkInterfaceId", "eni-b"),
                ("PrivateIpAddress.0", "10.0.1.5"),
            ],
            "InvalidParameterValue",
        ),
        (
            vec![
                ("Action", "AssignPrivateIpAddresses"),
                ("NetworkInterfaceId", "eni-b"),
                ("PrivateIpAddress.1", "10.0.1.5"),
                ("AllowReassignment", "yes"),
            ],
            "InvalidParameterValue",
        ),
        (
            vec![
                ("Action", "AssignPrivateIpAddresses"),
                ("NetworkInterfaceId", "eni-b"),
                ("PrivateIpAddress.1", "10.0.1.5"),
                ("SecondaryPrivateIpAddressCount", "1"),
            ],
            "InvalidParameterCombination",
        ),
        (
            vec![
                ("Action", "AssignPrivateIpAddresses"),
                ("NetworkInterfaceId", "eni-b"),
                ("SecondaryPrivateIpAddressCount", "-1"),
            ],
            "InvalidParameterValue",
        ),
        (
            vec![
                ("Action", "AssignPrivateIpAddresses"),
                ("NetworkInterfaceId", "nic-1"),
                ("PrivateIpAddress.1", "10.0.1.5"),
            ],
            "InvalidNetworkInterfaceId.Malformed",
        ),
        (
            vec![
                ("Action", "AssignPrivateIpAddresses"),
                ("NetworkInterfaceId", "eni-404"),
                ("PrivateIpAddress.1", "10.0.1.5"),
            ],
            "InvalidNetworkInterfaceID.NotFound",
        ),
        (
            vec![
                ("Action", "DescribeNetworkInterfaces"),
                ("Filter.x.Name", "subnet-id"),
            ],
            "InvalidParameterValue",
        ),
        (
            vec![
                ("Action", "DescribeNetworkInterfaces"),
                ("Filter.1.Name", "subnet-id"),
            ],
            "InvalidParameterValue",
        ),
        (
            vec![
                ("Action", "DescribeNetworkInterfaces"),
                ("Filter.1.Value.1", "x"),
            ],
            "MissingParameter",
        ),
        (
            vec![
                ("Action", "DescribeNetworkInterfaces"),
                ("Filter.1.Foo", "x"),
            ],
            "UnknownParameter",
        ),
        (
            vec![("Action", "DescribeNetworkInterfaces"), ("MaxResults", "1")],
            "InvalidParameterValue",
        ),
        (
            vec![
                ("Action", "DescribeNetworkInterfaces"),
                ("NextToken", "garbage"),
            ],
            "InvalidParameterValue",
        ),
    ];
    for (params, code) in cases {
        let r = ec2(a, &params).await;
        assert_ec2_error(&r, 400, code);
    }

    // DryRun.
    let r = ec2(
        a,
        &[("Action", "DescribeNetworkInterfaces"), ("DryRun", "true")],
    )
    .await;
    assert_ec2_error(&r, 412, "DryRunOperation");

    // No Version.
    let r = http(
        a,
        "POST",
        "/",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"Action=DescribeNetworkInterfaces",
    )
    .await;
    assert_ec2_error(&r, 400, "MissingParameter");

    // Binary garbage, a malformed Authorization header, a body over 1 MiB, a bad method.
    let r = http(
        a,
        "POST",
        "/",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &[0xff, 0xfe, b'%', b'&', b'=', 0],
    )
    .await;
    assert_ec2_error(&r, 400, "MissingAction");
    let body = b"Action=DescribeNetworkInterfaces&Version=2016-11-15";
    let r = http(
        a,
        "POST",
        "/",
        &[("Authorization", "Basic Zm9vOmJhcg==")],
        body,
    )
    .await;
    assert_ec2_error(&r, 400, "IncompleteSignature");
    let sigv4 = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261121/us-east-1/ec2/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=0123456789abcdef";
    let now = amz_date(std::time::SystemTime::now());
    let r = http(
        a,
        "POST",
        "/",
        &[
            ("Authorization", sigv4),
            ("X-Amz-Date", &now),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Signed without a date: refused, as AWS does.
    let r = http(
        a,
        "POST",
        "/",
        &[
            ("Authorization", sigv4),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        body,
    )
    .await;
    assert_ec2_error(&r, 400, "IncompleteSignature");
    let big = vec![b'a'; 2 << 20];
    let r = http(a, "POST", "/", &[], &big).await;
    assert_ec2_error(&r, 400, "RequestEntityTooLarge");
    let r = http(a, "DELETE", "/", &[], b"").await;
    assert_ec2_error(&r, 400, "InvalidAction");

    // GET with a query string works like a POST.
    let r = http(
        a,
        "GET",
        "/?Action=DescribeNetworkInterfaces&Version=2016-11-15&NetworkInterfaceId.1=eni-b",
        &[],
        b"",
    )
    .await;
    assert_eq!(tag_values(&r.body, "networkInterfaceId"), vec!["eni-b"]);

    // Still serving after all of that.
    assert_eq!(described_holders(a, "10.0.1.100").await, vec!["eni-a"]);
    emu.stop();
}
