//! Request/response shape check against moto (an independent EC2 implementation): the same
//! requests go to moto_server and to the emulator, seeded alike, and the XML element structure is
//! compared. moto does not model reassignment, so only shapes are compared, never holders;
//! `DescribeInstanceTypes` answers are also compared figure by figure with moto's copy of AWS's
//! instance type data.
//! Skipped (with a message) when `moto_server` is not installed (`pip install 'moto[server]'`).

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261121/us-east-1/ec2/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=00";

struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts moto_server on a free loopback port; `None` when it is not installed.
async fn start_moto() -> Option<(Moto, SocketAddr)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    // scripts/bootstrap installs moto in a venv; scripts/test sets both variables
    // so that there a missing moto fails instead of skipping.
    let program = std::env::var("CER_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
    let required = std::env::var_os("CER_REQUIRE_MOTO").is_some();
    let child = match Command::new(&program)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            assert!(
                !required,
                "CER_REQUIRE_MOTO is set but {program} cannot start: {e}"
            );
            eprintln!("SKIPPED: moto_server not available ({e}); pip install 'moto[server]'");
            return None;
        }
    };
    let moto = Moto(child);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().ok()?;
    let t0 = Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if t0.elapsed() > Duration::from_secs(30) {
            assert!(
                !required,
                "moto_server did not listen on {addr} within 30 s"
            );
            eprintln!("SKIPPED: moto_server did not listen on {addr} within 30 s");
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Some((moto, addr))
}

/// A signed-looking EC2 call (moto routes by the credential scope).
async fn call(addr: SocketAddr, params: &[(&str, &str)]) -> Resp {
    let mut f = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        f.append_pair(k, v);
    }
    f.append_pair("Version", "2016-11-15");
    http(
        addr,
        "POST",
        "/",
        &[
            (
                "Content-Type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
            ("X-Amz-Date", &amz_date(std::time::SystemTime::now())),
            ("Authorization", AUTH),
        ],
        f.finish().as_bytes(),
    )
    .await
}

/// Element paths (`Root/child/item/leaf`) of a document, and the root's xmlns.
fn paths(xml: &str) -> (BTreeSet<String>, String) {
    let mut out = BTreeSet::new();
    let mut stack: Vec<String> = Vec::new();
    let mut xmlns = String::new();
    let mut rest = xml;
    while let Some(i) = rest.find('<') {
        let Some(j) = rest[i..].find('>') else { break };
        let tag = &rest[i + 1..i + j];
        rest = &rest[i + j + 1..];
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(
                stack.pop().as_deref(),
                Some(name.trim()),
                "well formed: {xml}"
            );
            continue;
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let name = tag.split_whitespace().next().unwrap_or("").to_string();
        if stack.is_empty() {
            if let Some(p) = tag.find("xmlns=\"") {
                xmlns = tag[p + 7..].split('"').next().unwrap_or("").to_string();
            }
        }
        stack.push(name);
        out.insert(stack.join("/"));
        if self_closing {
            stack.pop();
        }
    }
    assert!(stack.is_empty(), "unclosed elements in {xml}");
    (out, xmlns)
}

fn root(p: &BTreeSet<String>) -> String {
    p.iter()
        .next()
        .map(|s| s.split('/').next().unwrap_or("").to_string())
        .unwrap_or_default()
}

/// Compares one exchange: same status, same root element, `required` paths in both, and every
/// moto path known to the emulator except `moto_only`.
fn compare(what: &str, ours: &Resp, moto: &Resp, required: &[&str], moto_only: &[&str]) {
    assert_eq!(
        ours.status, moto.status,
        "{what}: status\nours: {}\nmoto: {}",
        ours.body, moto.body
    );
    let (po, xo) = paths(&ours.body);
    let (pm, xm) = paths(&moto.body);
    assert_eq!(root(&po), root(&pm), "{what}: root element");
    // moto writes the namespace without the trailing slash EC2 uses; EC2 error documents
    // (`Response`) carry no namespace, moto's do.
    if root(&po) != "Response" {
        assert_eq!(
            xo.trim_end_matches('/'),
            xm.trim_end_matches('/'),
            "{what}: xmlns"
        );
    }
    for r in required {
        assert!(po.contains(*r), "{what}: emulator lacks {r}\n{}", ours.body);
        assert!(pm.contains(*r), "{what}: moto lacks {r}\n{}", moto.body);
    }
    let missing: Vec<&String> = pm
        .difference(&po)
        .filter(|p| !moto_only.iter().any(|m| p.starts_with(m)))
        .collect();
    assert!(
        missing.is_empty(),
        "{what}: elements moto has and the emulator lacks: {missing:?}"
    );
    let extra: Vec<&String> = po.difference(&pm).collect();
    if !extra.is_empty() {
        eprintln!("{what}: emulator-only elements (real EC2 fields moto omits): {extra:?}");
    }
}

/// ENI ids in a response, sorted (the order of a Describe is unspecified).
fn ids(xml: &str) -> Vec<String> {
    let mut v = tag_values(xml, "networkInterfaceId");
    v.sort();
    v
}

fn first(xml: &str, tag: &str) -> String {
    tag_values(xml, tag)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no <{tag}> in {xml}"))
}

#[tokio::test]
async fn request_and_response_shapes_match_moto() {
    let Some((_moto, m)) = start_moto().await else {
        return;
    };

    // Build the same world in moto and in the emulator.
    let r = call(m, &[("Action", "CreateVpc"), ("CidrBlock", "10.0.0.0/16")]).await;
    let vpc = first(&r.body, "vpcId");
    let r = call(
        m,
        &[
            ("Action", "CreateSubnet"),
            ("VpcId", &vpc),
            ("CidrBlock", "10.0.1.0/24"),
        ],
    )
    .await;
    let subnet = first(&r.body, "subnetId");
    let mut enis = Vec::new();
    for ip in ["10.0.1.10", "10.0.1.20"] {
        let r = call(
            m,
            &[
                ("Action", "CreateNetworkInterface"),
                ("SubnetId", &subnet),
                ("PrivateIpAddress", ip),
            ],
        )
        .await;
        enis.push(first(&r.body, "networkInterfaceId"));
    }
    let seed: cer_cloud_emulator::Seed = serde_json::from_value(serde_json::json!({
        "move_delay_ms": 0,
        "subnets": [{"id": subnet, "cidr": "10.0.1.0/24", "vpc": vpc}],
        "nics": [
            {"id": enis[0], "subnet": subnet, "primary_ip": "10.0.1.10"},
            {"id": enis[1], "subnet": subnet, "primary_ip": "10.0.1.20"}
        ]
    }))
    .unwrap();
    let emu = cer_cloud_emulator::start(seed, "127.0.0.1:0".parse().unwrap(), &[])
        .await
        .unwrap();
    let e = emu.addr;
    let both = |params: Vec<(&'static str, String)>| async move {
        let p: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        (call(e, &p).await, call(m, &p).await)
    };
    let s = |v: &str| v.to_string();
    let eni_fields = [
        "networkInterfaceId",
        "subnetId",
        "vpcId",
        "availabilityZone",
        "macAddress",
        "privateIpAddress",
        "status",
        "privateIpAddressesSet/item/privateIpAddress",
        "privateIpAddressesSet/item/primary",
    ];
    let describe_required: Vec<String> = eni_fields
        .iter()
        .map(|f| format!("DescribeNetworkInterfacesResponse/networkInterfaceSet/item/{f}"))
        .chain(std::iter::once(s(
            "DescribeNetworkInterfacesResponse/requestId",
        )))
        .collect();
    let describe_required: Vec<&str> = describe_required.iter().map(String::as_str).collect();
    // moto fills in a default security group and its requester; the emulator models neither.
    let moto_only = [
        "DescribeNetworkInterfacesResponse/networkInterfaceSet/item/groupSet/item",
        "DescribeNetworkInterfacesResponse/networkInterfaceSet/item/requesterId",
    ];

    let (o, mo) = both(vec![
        ("Action", s("AssignPrivateIpAddresses")),
        ("NetworkInterfaceId", enis[0].clone()),
        ("PrivateIpAddress.1", s("10.0.1.100")),
    ])
    .await;
    compare(
        "AssignPrivateIpAddresses",
        &o,
        &mo,
        &[
            "AssignPrivateIpAddressesResponse/requestId",
            "AssignPrivateIpAddressesResponse/networkInterfaceId",
            "AssignPrivateIpAddressesResponse/assignedPrivateIpAddressesSet/item/privateIpAddress",
        ],
        &[],
    );

    let (o, mo) = both(vec![
        ("Action", s("DescribeNetworkInterfaces")),
        ("NetworkInterfaceId.1", enis[0].clone()),
        ("NetworkInterfaceId.2", enis[1].clone()),
    ])
    .await;
    compare(
        "DescribeNetworkInterfaces by id",
        &o,
        &mo,
        &describe_required,
        &moto_only,
    );
    assert_eq!(ids(&o.body), ids(&mo.body));
    // Same addresses and primary flags per ENI (element order within an item may differ).
    let addrs = |x: &str| {
        let mut v: Vec<(String, String)> = tag_values(x, "privateIpAddressesSet")
            .iter()
            .flat_map(|set| {
                tag_values(set, "item")
                    .into_iter()
                    .map(|i| (first(&i, "privateIpAddress"), first(&i, "primary")))
                    .collect::<Vec<_>>()
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(addrs(&o.body), addrs(&mo.body));

    // Filters (moto's addresses.private-ip-address matches primaries only: use a primary).
    for (name, value) in [
        ("addresses.private-ip-address", s("10.0.1.20")),
        ("network-interface-id", enis[0].clone()),
        ("subnet-id", subnet.clone()),
    ] {
        let (o, mo) = both(vec![
            ("Action", s("DescribeNetworkInterfaces")),
            ("Filter.1.Name", s(name)),
            ("Filter.1.Value.1", value),
        ])
        .await;
        compare(
            &format!("Describe filter {name}"),
            &o,
            &mo,
            &describe_required,
            &moto_only,
        );
        assert_eq!(ids(&o.body), ids(&mo.body), "filter {name}");
    }

    // Reassignment: same request shape accepted by both (moto ignores the move).
    let (o, mo) = both(vec![
        ("Action", s("AssignPrivateIpAddresses")),
        ("NetworkInterfaceId", enis[1].clone()),
        ("PrivateIpAddress.1", s("10.0.1.100")),
        ("AllowReassignment", s("true")),
    ])
    .await;
    compare(
        "AssignPrivateIpAddresses AllowReassignment",
        &o,
        &mo,
        &["AssignPrivateIpAddressesResponse/requestId"],
        &[],
    );

    let (o, mo) = both(vec![
        ("Action", s("UnassignPrivateIpAddresses")),
        ("NetworkInterfaceId", enis[1].clone()),
        ("PrivateIpAddress.1", s("10.0.1.100")),
    ])
    .await;
    compare(
        "UnassignPrivateIpAddresses",
        &o,
        &mo,
        &["UnassignPrivateIpAddressesResponse/requestId"],
        &[],
    );

    // Error document for an unknown ENI.
    let (o, mo) = both(vec![
        ("Action", s("DescribeNetworkInterfaces")),
        ("NetworkInterfaceId.1", s("eni-0123456789abcdef0")),
    ])
    .await;
    compare(
        "DescribeNetworkInterfaces NotFound",
        &o,
        &mo,
        &[
            "Response/Errors/Error/Code",
            "Response/Errors/Error/Message",
            "Response/RequestID",
        ],
        &[],
    );
    assert_eq!(first(&o.body, "Code"), first(&mo.body, "Code"));
    assert_eq!(first(&o.body, "Message"), first(&mo.body, "Message"));

    // DescribeInstanceTypes: every type in the emulator's table, same shape and the same
    // figures as moto's copy of AWS's data.
    let item = "DescribeInstanceTypesResponse/instanceTypeSet/item";
    let required: Vec<String> = [
        "instanceType",
        "bareMetal",
        "vCpuInfo/defaultVCpus",
        "memoryInfo/sizeInMiB",
        "networkInfo/maximumNetworkInterfaces",
        "networkInfo/ipv4AddressesPerInterface",
        "networkInfo/ipv6AddressesPerInterface",
        "networkInfo/ipv6Supported",
        "networkInfo/networkCards/item/maximumNetworkInterfaces",
    ]
    .iter()
    .map(|f| format!("{item}/{f}"))
    .chain(std::iter::once(s(
        "DescribeInstanceTypesResponse/requestId",
    )))
    .collect();
    let required: Vec<&str> = required.iter().map(String::as_str).collect();
    // Facts the emulator does not model (processor, EBS, placement, Nitro features...).
    let moto_only: Vec<String> = [
        "processorInfo",
        "vCpuInfo/defaultCores",
        "vCpuInfo/defaultThreadsPerCore",
        "vCpuInfo/validCores",
        "vCpuInfo/validThreadsPerCore",
        "ebsInfo",
        "networkInfo/networkCards/item/baselineBandwidthInGbps",
        "networkInfo/networkCards/item/peakBandwidthInGbps",
        "networkInfo/networkCards/item/defaultEnaQueueCountPerInterface",
        "networkInfo/enaSrdSupported",
        "networkInfo/flexibleEnaQueuesSupport",
        "networkInfo/connectionTrackingConfiguration",
        "networkInfo/secondaryNetworkSupported",
        "networkInfo/efaInfo",
        "networkInfo/bandwidthWeightings",
        "placementGroupInfo",
        "hibernationSupported",
        "dedicatedHostsSupported",
        "autoRecoverySupported",
        "supportedBootModes",
        "nitroEnclavesSupport",
        "nitroTpmSupport",
        "nitroTpmInfo",
        "phcSupport",
        "rebootMigrationSupport",
    ]
    .iter()
    .map(|f| format!("{item}/{f}"))
    .collect();
    let moto_only: Vec<&str> = moto_only.iter().map(String::as_str).collect();
    for t in cer_cloud_emulator::instance_types::INSTANCE_TYPES {
        let (o, mo) = both(vec![
            ("Action", s("DescribeInstanceTypes")),
            ("InstanceType.1", s(t.name)),
        ])
        .await;
        compare(
            &format!("DescribeInstanceTypes {}", t.name),
            &o,
            &mo,
            &required,
            &moto_only,
        );
        for tag in [
            "instanceType",
            "maximumNetworkInterfaces",
            "ipv4AddressesPerInterface",
            "ipv6AddressesPerInterface",
            "defaultVCpus",
            "sizeInMiB",
            "networkPerformance",
            "maximumNetworkCards",
            "bareMetal",
            "hypervisor",
            "currentGeneration",
            "freeTierEligible",
            "burstablePerformanceSupported",
            "ipv6Supported",
            "enaSupport",
            "efaSupported",
            "encryptionInTransitSupported",
            "instanceStorageSupported",
        ] {
            assert_eq!(
                tag_values(&o.body, tag),
                tag_values(&mo.body, tag),
                "{} {tag}",
                t.name
            );
        }
    }
    let (o, mo) = both(vec![
        ("Action", s("DescribeInstanceTypes")),
        ("InstanceType.1", s("c5.nope")),
    ])
    .await;
    compare(
        "DescribeInstanceTypes unknown type",
        &o,
        &mo,
        &[
            "Response/Errors/Error/Code",
            "Response/Errors/Error/Message",
        ],
        &[],
    );
    assert_eq!(first(&o.body, "Code"), "InvalidInstanceType");
    assert_eq!(first(&o.body, "Message"), first(&mo.body, "Message"));
    emu.stop();
}
