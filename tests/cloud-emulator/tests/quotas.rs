//! Per-NIC address quotas (AWS by instance type, Azure ipConfigurations per NIC, OCI secondary
//! IPs per VNIC), `DescribeInstanceTypes`, and multi-address calls: a call that would exceed a
//! quota fails as a whole and changes nothing; several addresses in one call are one change.

mod common;

use common::*;
use serde_json::{json, Value};

const AWS_SUBNET: &str = "subnet-1";

/// AWS: eni-micro on a t3.micro (2 addresses per ENI), eni-m5 on an m5.large (10; 8 held),
/// eni-def and eni-other on instances of the default type (c5.4xlarge: 30).
async fn start_aws() -> cer_cloud_emulator::Running {
    let m5_secondaries: Vec<String> = (100..107).map(|i| format!("10.0.1.{i}")).collect();
    start_json(json!({
        "move_delay_ms": 0,
        "instance_types": {"i-micro": "t3.micro", "i-m5": "m5.large"},
        "subnets": [{"id": AWS_SUBNET, "cidr": "10.0.1.0/24", "vpc": "vpc-1"}],
        "nics": [
            {"id": "eni-micro", "instance": "i-micro", "subnet": AWS_SUBNET, "primary_ip": "10.0.1.10"},
            {"id": "eni-m5", "instance": "i-m5", "subnet": AWS_SUBNET, "primary_ip": "10.0.1.20",
             "secondary_ips": m5_secondaries},
            {"id": "eni-def", "instance": "i-def", "subnet": AWS_SUBNET, "primary_ip": "10.0.1.30"},
            {"id": "eni-other", "instance": "i-other", "subnet": AWS_SUBNET, "primary_ip": "10.0.1.40",
             "secondary_ips": ["10.0.1.200", "10.0.1.201"]}
        ]
    }))
    .await
}

async fn assign(a: std::net::SocketAddr, eni: &str, ips: &[&str], reassign: bool) -> Resp {
    let keys: Vec<String> = (1..=ips.len())
        .map(|i| format!("PrivateIpAddress.{i}"))
        .collect();
    let mut p = vec![
        ("Action", "AssignPrivateIpAddresses"),
        ("NetworkInterfaceId", eni),
    ];
    for (k, ip) in keys.iter().zip(ips) {
        p.push((k.as_str(), ip));
    }
    if reassign {
        p.push(("AllowReassignment", "true"));
    }
    ec2(a, &p).await
}

/// The addresses DescribeNetworkInterfaces reports for one ENI (primary first).
async fn eni_addresses(a: std::net::SocketAddr, eni: &str) -> Vec<String> {
    let r = ec2(
        a,
        &[
            ("Action", "DescribeNetworkInterfaces"),
            ("NetworkInterfaceId.1", eni),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let set = tag_values(&r.body, "privateIpAddressesSet");
    tag_values(&set[0], "privateIpAddress")
}

fn assert_limit_exceeded(r: &Resp) {
    assert_ec2_error(r, 400, "PrivateIpAddressLimitExceeded");
    assert_eq!(
        tag_values(&r.body, "Message"),
        ["Number of private addresses will exceed limit."]
    );
}

#[tokio::test]
async fn aws_addresses_per_eni_follow_the_instance_type() {
    let emu = start_aws().await;
    let a = emu.addr;
    let before = journal(a).await.len();

    // t3.micro: the primary and one secondary. Two at once fail as a whole.
    let r = assign(a, "eni-micro", &["10.0.1.50", "10.0.1.51"], false).await;
    assert_limit_exceeded(&r);
    assert_eq!(eni_addresses(a, "eni-micro").await, ["10.0.1.10"]);
    assert_eq!(
        journal(a).await.len(),
        before,
        "a refused call is not journaled"
    );
    let r = assign(a, "eni-micro", &["10.0.1.50"], false).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_limit_exceeded(&assign(a, "eni-micro", &["10.0.1.51"], false).await);

    // m5.large: 10 per ENI, 8 held. Three new fail, two fit; an address the ENI already holds
    // does not count, one more does.
    let r = assign(
        a,
        "eni-m5",
        &["10.0.1.107", "10.0.1.108", "10.0.1.109"],
        false,
    )
    .await;
    assert_limit_exceeded(&r);
    assert_eq!(eni_addresses(a, "eni-m5").await.len(), 8);
    let r = assign(a, "eni-m5", &["10.0.1.107", "10.0.1.108"], false).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(eni_addresses(a, "eni-m5").await.len(), 10);
    let r = assign(a, "eni-m5", &["10.0.1.100"], false).await;
    assert_eq!(r.status, 200, "re-assigning a held address: {}", r.body);
    assert_limit_exceeded(&assign(a, "eni-m5", &["10.0.1.100", "10.0.1.110"], false).await);
    // Reassignment onto the full ENI is refused too, and the address stays where it was.
    assert_limit_exceeded(&assign(a, "eni-m5", &["10.0.1.200"], true).await);
    assert_eq!(
        api_holder(a, "10.0.1.200").await.as_deref(),
        Some("eni-other")
    );
    let r = ec2(
        a,
        &[
            ("Action", "AssignPrivateIpAddresses"),
            ("NetworkInterfaceId", "eni-m5"),
            ("SecondaryPrivateIpAddressCount", "1"),
        ],
    )
    .await;
    assert_limit_exceeded(&r);
    // Unassigning makes room again.
    let r = ec2(
        a,
        &[
            ("Action", "UnassignPrivateIpAddresses"),
            ("NetworkInterfaceId", "eni-m5"),
            ("PrivateIpAddress.1", "10.0.1.100"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = assign(a, "eni-m5", &["10.0.1.200"], true).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(api_holder(a, "10.0.1.200").await.as_deref(), Some("eni-m5"));

    // The default type (c5.4xlarge): 30 addresses, so 29 secondaries.
    let r = ec2(
        a,
        &[
            ("Action", "AssignPrivateIpAddresses"),
            ("NetworkInterfaceId", "eni-def"),
            ("SecondaryPrivateIpAddressCount", "29"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(eni_addresses(a, "eni-def").await.len(), 30);
    assert_limit_exceeded(&assign(a, "eni-def", &["10.0.1.250"], false).await);
    assert_eq!(api_holder(a, "10.0.1.250").await, None);
    emu.stop();
}

#[test]
fn seeds_are_checked_against_the_quotas() {
    let base = json!({
        "subnets": [{"id": "s", "cidr": "10.0.0.0/16"}],
        "nics": [{"id": "eni-a", "instance": "i-a", "subnet": "s", "primary_ip": "10.0.0.10"}]
    });
    let check = |patch: Value| -> Result<(), String> {
        let mut v = base.clone();
        for (k, val) in patch.as_object().unwrap() {
            v[k] = val.clone();
        }
        let seed: cer_cloud_emulator::Seed =
            serde_json::from_value(v).map_err(|e| e.to_string())?;
        seed.validate().map_err(|e| e.to_string())
    };
    check(json!({})).unwrap();
    check(json!({"instance_types": {"i-a": "m5.large"}})).unwrap();
    let e = check(json!({"instance_types": {"i-a": "m5.huge"}})).unwrap_err();
    assert!(e.contains("m5.huge"), "{e}");
    let e = check(json!({"default_instance_type": "nope.large"})).unwrap_err();
    assert!(e.contains("default_instance_type"), "{e}");
    let e = check(json!({"instance_types": {"i-zz": "m5.large"}})).unwrap_err();
    assert!(e.contains("i-zz"), "{e}");
    // More ENIs than the type allows (t3.micro: 2).
    let nic = |n: u32| {
        json!({"id": format!("eni-{n}"), "instance": "i-a", "subnet": "s",
               "primary_ip": format!("10.0.1.{n}")})
    };
    let two = json!([nic(1), nic(2)]);
    let three = json!([nic(1), nic(2), nic(3)]);
    check(json!({"instance_types": {"i-a": "t3.micro"}, "nics": two})).unwrap();
    let e = check(json!({"instance_types": {"i-a": "t3.micro"}, "nics": three})).unwrap_err();
    assert!(e.contains("more than 2 network interfaces"), "{e}");
    // More addresses than the type allows per ENI (t3.micro: 2).
    let full = json!([{"id": "eni-a", "instance": "i-a", "subnet": "s", "primary_ip": "10.0.0.10",
                       "secondary_ips": ["10.0.0.11", "10.0.0.12"]}]);
    let e = check(json!({"instance_types": {"i-a": "t3.micro"}, "nics": full})).unwrap_err();
    assert!(e.contains("eni-a"), "{e}");
    // Azure and OCI limits.
    let azure = json!([{"id": "nic", "provider": "azure", "subnet": "s", "primary_ip": "10.0.0.10",
                        "secondary_ips": ["10.0.0.11"]}]);
    check(json!({"nics": azure, "azure_max_ip_configs": 2})).unwrap();
    assert!(check(json!({"nics": azure, "azure_max_ip_configs": 1})).is_err());
    assert!(check(json!({"azure_max_ip_configs": 0})).is_err());
    let oci = json!([{"id": "vnic", "provider": "oci", "subnet": "s", "primary_ip": "10.0.0.10",
                      "secondary_ips": ["10.0.0.11", "10.0.0.12"]}]);
    check(json!({"nics": oci, "oci_max_secondary_ips": 2})).unwrap();
    assert!(check(json!({"nics": oci, "oci_max_secondary_ips": 1})).is_err());
    // TOML spells instance_types as a table.
    let t: cer_cloud_emulator::Seed = toml::from_str(
        "instance_types = { \"i-a\" = \"c5.large\" }\ndefault_instance_type = \"m5.xlarge\"\n[[subnets]]\nid = \"s\"\ncidr = \"10.0.0.0/16\"\n[[nics]]\nid = \"eni-a\"\ninstance = \"i-a\"\nsubnet = \"s\"\nprimary_ip = \"10.0.0.10\"\n",
    )
    .unwrap();
    t.validate().unwrap();
}

/// Per item of a `DescribeInstanceTypes` answer: (type, max ENIs, IPv4 per ENI).
fn instance_types(xml: &str) -> Vec<(String, u32, u32)> {
    let set = tag_values(xml, "instanceTypeSet");
    let Some(set) = set.first() else {
        return Vec::new();
    };
    // Items nest (`networkCards/item`): split on the type element instead.
    set.split("<instanceType>")
        .skip(1)
        .map(|item| {
            let name = item.split("</instanceType>").next().unwrap().to_string();
            let net = &tag_values(item, "networkInfo")[0];
            let n = |tag: &str| tag_values(net, tag)[0].parse::<u32>().unwrap();
            (
                name,
                n("maximumNetworkInterfaces"),
                n("ipv4AddressesPerInterface"),
            )
        })
        .collect()
}

#[tokio::test]
async fn describe_instance_types() {
    let emu = start_aws().await;
    let a = emu.addr;
    let call = |extra: Vec<(&'static str, &'static str)>| async move {
        let mut p = vec![("Action", "DescribeInstanceTypes")];
        p.extend(extra);
        ec2(a, &p).await
    };
    // Every type in the table.
    let r = call(vec![]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains(
        "<DescribeInstanceTypesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">"
    ));
    assert_eq!(tag_values(&r.body, "requestId").len(), 1);
    let all = instance_types(&r.body);
    assert_eq!(
        all.len(),
        cer_cloud_emulator::instance_types::INSTANCE_TYPES.len()
    );
    assert!(all.contains(&("t3.micro".into(), 2, 2)));
    assert!(all.contains(&("c5.metal".into(), 15, 50)));

    // By name, in the table's order.
    let r = call(vec![
        ("InstanceType.1", "m5.large"),
        ("InstanceType.2", "c5.4xlarge"),
    ])
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        instance_types(&r.body),
        [("c5.4xlarge".into(), 8, 30), ("m5.large".into(), 3, 10)]
    );
    assert_eq!(tag_values(&r.body, "ipv6Supported"), ["true", "true"]);
    assert_eq!(tag_values(&r.body, "hypervisor"), ["nitro", "nitro"]);
    // Bare metal has no hypervisor.
    let r = call(vec![("InstanceType.1", "c5.metal")]).await;
    assert!(tag_values(&r.body, "hypervisor").is_empty(), "{}", r.body);
    assert_eq!(tag_values(&r.body, "bareMetal"), ["true"]);

    // Unknown types.
    let r = call(vec![
        ("InstanceType.1", "m5.large"),
        ("InstanceType.2", "c5.nope"),
    ])
    .await;
    assert_ec2_error(&r, 400, "InvalidInstanceType");
    assert_eq!(
        tag_values(&r.body, "Message"),
        ["The following supplied instance types do not exist: [c5.nope]"]
    );

    // The instance-type filter (wildcards), other filters are refused.
    let r = call(vec![
        ("Filter.1.Name", "instance-type"),
        ("Filter.1.Value.1", "c5.*"),
    ])
    .await;
    let names: Vec<String> = instance_types(&r.body).into_iter().map(|t| t.0).collect();
    assert_eq!(
        names,
        [
            "c5.18xlarge",
            "c5.2xlarge",
            "c5.4xlarge",
            "c5.9xlarge",
            "c5.large",
            "c5.metal",
            "c5.xlarge"
        ]
    );
    let r = call(vec![
        ("Filter.1.Name", "instance-type"),
        ("Filter.1.Value.1", "x9.*"),
    ])
    .await;
    assert!(r.body.contains("<instanceTypeSet/>"), "{}", r.body);
    let r = call(vec![
        ("Filter.1.Name", "vcpu-info.default-vcpus"),
        ("Filter.1.Value.1", "2"),
    ])
    .await;
    assert_ec2_error(&r, 400, "InvalidParameterValue");

    // Pages.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut p = vec![("Action", "DescribeInstanceTypes"), ("MaxResults", "5")];
        if let Some(t) = &token {
            p.push(("NextToken", t.as_str()));
        }
        let r = ec2(a, &p).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let page = instance_types(&r.body);
        assert!(page.len() <= 5);
        seen.extend(page);
        token = tag_values(&r.body, "nextToken").into_iter().next();
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen, all);
    let r = call(vec![("MaxResults", "4")]).await;
    assert_ec2_error(&r, 400, "InvalidParameterValue");
    emu.stop();
}

/// Several addresses in one AWS call: validated together, one journal entry, all or nothing.
#[tokio::test]
async fn aws_multi_address_calls_are_atomic() {
    let emu = start_aws().await;
    let a = emu.addr;
    let before = journal(a).await.len();
    // One address held elsewhere, without reassignment: nothing happens.
    let r = assign(
        a,
        "eni-def",
        &["10.0.1.60", "10.0.1.61", "10.0.1.200"],
        false,
    )
    .await;
    assert_ec2_error(&r, 400, "PrivateIpAddressInUse");
    assert_eq!(eni_addresses(a, "eni-def").await, ["10.0.1.30"]);
    assert_eq!(journal(a).await.len(), before);
    // With reassignment: all three in one change.
    let r = assign(
        a,
        "eni-def",
        &["10.0.1.60", "10.0.1.61", "10.0.1.200"],
        true,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        tag_values(&r.body, "privateIpAddress"),
        ["10.0.1.60", "10.0.1.61", "10.0.1.200"]
    );
    let j = journal(a).await;
    assert_eq!(j.len(), before + 1, "{j:?}");
    let last = &j[j.len() - 1];
    assert_eq!(last["op"], "assign");
    assert_eq!(last["ips"], json!(["10.0.1.60", "10.0.1.61", "10.0.1.200"]));
    assert_eq!(
        eni_addresses(a, "eni-def").await,
        ["10.0.1.30", "10.0.1.60", "10.0.1.61", "10.0.1.200"]
    );
    assert_eq!(
        eni_addresses(a, "eni-other").await,
        ["10.0.1.40", "10.0.1.201"]
    );
    // Unassign several: one not held fails the call; all held is one change.
    let unassign = |ips: [&'static str; 2]| async move {
        ec2(
            a,
            &[
                ("Action", "UnassignPrivateIpAddresses"),
                ("NetworkInterfaceId", "eni-def"),
                ("PrivateIpAddress.1", ips[0]),
                ("PrivateIpAddress.2", ips[1]),
            ],
        )
        .await
    };
    let r = unassign(["10.0.1.60", "10.0.1.201"]).await;
    assert_ec2_error(&r, 400, "InvalidParameterValue");
    assert_eq!(eni_addresses(a, "eni-def").await.len(), 4);
    let r = unassign(["10.0.1.60", "10.0.1.61"]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let j = journal(a).await;
    assert_eq!(j.len(), before + 2);
    assert_eq!(j[j.len() - 1]["op"], "unassign");
    assert_eq!(j[j.len() - 1]["ips"], json!(["10.0.1.60", "10.0.1.61"]));
    assert_eq!(
        eni_addresses(a, "eni-def").await,
        ["10.0.1.30", "10.0.1.200"]
    );
    emu.stop();
}

const RG: &str = "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.Network";

fn azure_subnet() -> String {
    format!("{RG}/virtualNetworks/vnet-1/subnets/default")
}

fn azure_nic(name: &str) -> String {
    format!("{RG}/networkInterfaces/{name}")
}

/// The NIC body with its secondaries replaced by `ips` (Static, named `c<i>`).
fn with_secondaries(nic: &Value, ips: &[String]) -> Value {
    let mut n = nic.clone();
    let cfgs = n["properties"]["ipConfigurations"].as_array_mut().unwrap();
    cfgs.retain(|c| c["properties"]["primary"] == true);
    let subnet = cfgs[0]["properties"]["subnet"].clone();
    for (i, ip) in ips.iter().enumerate() {
        cfgs.push(json!({"name": format!("c{i}"), "properties": {
            "privateIPAddress": ip, "privateIPAllocationMethod": "Static", "subnet": subnet,
            "primary": false}}));
    }
    n
}

fn config_count(nic: &Value) -> usize {
    nic["properties"]["ipConfigurations"]
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test]
async fn azure_ip_configurations_per_nic() {
    let emu = start_json(json!({
        "move_delay_ms": 0,
        "azure_max_ip_configs": 4,
        "subnets": [{"id": azure_subnet(), "cidr": "10.1.0.0/24"}],
        "nics": [{"id": azure_nic("nic-a"), "provider": "azure", "subnet": azure_subnet(),
                  "primary_ip": "10.1.0.4", "secondary_ips": ["10.1.0.100"]}]
    }))
    .await;
    let a = emu.addr;
    let id = azure_nic("nic-a");
    let nic = arm_call(a, "GET", &id, None).await.json();
    let before = journal(a).await.len();
    // Three new configurations in one PUT: one change, all visible.
    let three: Vec<String> = (101..104).map(|i| format!("10.1.0.{i}")).collect();
    let r = arm_call(a, "PUT", &id, Some(&with_secondaries(&nic, &three))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let j = journal(a).await;
    assert_eq!(j.len(), before + 1);
    assert_eq!(j[before]["op"], "set");
    assert_eq!(j[before]["secondaries"].as_array().unwrap().len(), 3);
    let nic = arm_call(a, "GET", &id, None).await.json();
    assert_eq!(config_count(&nic), 4);
    for ip in &three {
        assert_eq!(api_holder(a, ip).await.as_deref(), Some(id.as_str()));
    }
    // A fifth configuration is over the limit: refused as a whole.
    let four: Vec<String> = (101..105).map(|i| format!("10.1.0.{i}")).collect();
    let r = arm_call(a, "PUT", &id, Some(&with_secondaries(&nic, &four))).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.json()["error"]["code"],
        "IpConfigurationCountLimitReached"
    );
    assert_eq!(journal(a).await.len(), before + 1);
    assert_eq!(config_count(&arm_call(a, "GET", &id, None).await.json()), 4);
    assert_eq!(api_holder(a, "10.1.0.104").await, None);
    emu.stop();
}

#[tokio::test]
async fn azure_default_limit_is_256_configurations() {
    let held: Vec<String> = (1..=255).map(|i| format!("10.1.1.{i}")).collect();
    let emu = start_json(json!({
        "move_delay_ms": 0,
        "subnets": [{"id": azure_subnet(), "cidr": "10.1.0.0/22"}],
        "nics": [{"id": azure_nic("nic-a"), "provider": "azure", "subnet": azure_subnet(),
                  "primary_ip": "10.1.0.4", "secondary_ips": held}]
    }))
    .await;
    let a = emu.addr;
    let id = azure_nic("nic-a");
    let nic = arm_call(a, "GET", &id, None).await.json();
    assert_eq!(config_count(&nic), 256);
    let mut more: Vec<String> = nic["properties"]["ipConfigurations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["properties"]["primary"] == false)
        .map(|c| {
            c["properties"]["privateIPAddress"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    more.push("10.1.2.1".into());
    let r = arm_call(a, "PUT", &id, Some(&with_secondaries(&nic, &more))).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.json()["error"]["code"],
        "IpConfigurationCountLimitReached"
    );
    assert_eq!(api_holder(a, "10.1.2.1").await, None);
    emu.stop();
}

const OCI_SUBNET: &str = "ocid1.subnet.oc1..s1";
const VNIC_A: &str = "ocid1.vnic.oc1..a";
const VNIC_B: &str = "ocid1.vnic.oc1..b";

fn pip(ip: &str) -> String {
    cer_cloud_emulator::oci::private_ip_id(OCI_SUBNET, ip.parse().unwrap())
}

fn assert_oci_limit(r: &Resp) {
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["code"], "LimitExceeded", "{}", r.body);
}

#[tokio::test]
async fn oci_secondary_ips_per_vnic() {
    let emu = start_json(json!({
        "move_delay_ms": 0,
        "oci_max_secondary_ips": 2,
        "subnets": [{"id": OCI_SUBNET, "cidr": "10.2.0.0/24"}],
        "nics": [
            {"id": VNIC_A, "provider": "oci", "subnet": OCI_SUBNET, "primary_ip": "10.2.0.10",
             "secondary_ips": ["10.2.0.100"]},
            {"id": VNIC_B, "provider": "oci", "subnet": OCI_SUBNET, "primary_ip": "10.2.0.20",
             "secondary_ips": ["10.2.0.110", "10.2.0.111"]}
        ]
    }))
    .await;
    let a = emu.addr;
    let create = |vnic: &'static str, ip: &'static str| async move {
        oci_call(
            a,
            "POST",
            "/20160918/privateIps",
            Some(&json!({"vnicId": vnic, "ipAddress": ip})),
        )
        .await
    };
    let before = journal(a).await.len();
    // A full VNIC takes no more: created or moved onto it.
    assert_oci_limit(&create(VNIC_B, "10.2.0.112").await);
    assert_eq!(api_holder(a, "10.2.0.112").await, None);
    let r = create(VNIC_A, "10.2.0.101").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = oci_call(
        a,
        "PUT",
        &format!("/20160918/privateIps/{}", pip("10.2.0.110")),
        Some(&json!({"vnicId": VNIC_A})),
    )
    .await;
    assert_oci_limit(&r);
    assert_eq!(api_holder(a, "10.2.0.110").await.as_deref(), Some(VNIC_B));
    assert_eq!(journal(a).await.len(), before + 1);
    // Deleting one makes room for the move.
    let r = oci_call(
        a,
        "DELETE",
        &format!("/20160918/privateIps/{}", pip("10.2.0.101")),
        None,
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = oci_call(
        a,
        "PUT",
        &format!("/20160918/privateIps/{}", pip("10.2.0.110")),
        Some(&json!({"vnicId": VNIC_A})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(api_holder(a, "10.2.0.110").await.as_deref(), Some(VNIC_A));
    emu.stop();
}

#[tokio::test]
async fn oci_default_limit_is_64_secondary_ips() {
    let held: Vec<String> = (1..=64).map(|i| format!("10.2.0.{}", 100 + i)).collect();
    let emu = start_json(json!({
        "move_delay_ms": 0,
        "subnets": [{"id": OCI_SUBNET, "cidr": "10.2.0.0/24"}],
        "nics": [{"id": VNIC_A, "provider": "oci", "subnet": OCI_SUBNET, "primary_ip": "10.2.0.10",
                  "secondary_ips": held}]
    }))
    .await;
    let a = emu.addr;
    let r = oci_call(
        a,
        "POST",
        "/20160918/privateIps",
        Some(&json!({"vnicId": VNIC_A, "ipAddress": "10.2.0.20"})),
    )
    .await;
    assert_oci_limit(&r);
    emu.stop();
}

/// IMDS answers each instance's type, and lists every ENI of an instance with several.
#[tokio::test]
async fn imds_reports_the_instance_type_and_every_eni() {
    let seed: cer_cloud_emulator::Seed = serde_json::from_value(json!({
        "instance_types": {"i-m5": "m5.large"},
        "subnets": [{"id": AWS_SUBNET, "cidr": "10.0.1.0/24"}],
        "nics": [
            {"id": "eni-m5", "instance": "i-m5", "subnet": AWS_SUBNET, "primary_ip": "10.0.1.20",
             "mac": "02:00:00:00:00:01"},
            {"id": "eni-m5b", "instance": "i-m5", "subnet": AWS_SUBNET, "primary_ip": "10.0.1.21",
             "mac": "02:00:00:00:00:02", "secondary_ips": ["10.0.1.120"]},
            {"id": "eni-def", "instance": "i-def", "subnet": AWS_SUBNET, "primary_ip": "10.0.1.30"}
        ]
    }))
    .unwrap();
    let imds = [
        ("127.0.0.1:0".parse().unwrap(), "i-m5".to_string()),
        ("127.0.0.1:0".parse().unwrap(), "i-def".to_string()),
    ];
    let emu = cer_cloud_emulator::start(seed, "127.0.0.1:0".parse().unwrap(), &imds)
        .await
        .unwrap();
    let get = |addr: std::net::SocketAddr, path: &'static str| async move {
        let t = http(
            addr,
            "PUT",
            "/latest/api/token",
            &[("X-aws-ec2-metadata-token-ttl-seconds", "60")],
            b"",
        )
        .await
        .body;
        let r = http(
            addr,
            "GET",
            path,
            &[("X-aws-ec2-metadata-token", t.as_str())],
            b"",
        )
        .await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        r.body
    };
    let (m5, def) = (emu.imds_addrs[0].1, emu.imds_addrs[1].1);
    assert_eq!(get(m5, "/latest/meta-data/instance-type").await, "m5.large");
    assert_eq!(
        get(def, "/latest/meta-data/instance-type").await,
        "c5.4xlarge"
    );
    assert!(get(m5, "/latest/meta-data/")
        .await
        .lines()
        .any(|l| l == "instance-type"));
    assert_eq!(
        get(m5, "/latest/meta-data/network/interfaces/macs/").await,
        "02:00:00:00:00:01/\n02:00:00:00:00:02/"
    );
    assert_eq!(
        get(
            m5,
            "/latest/meta-data/network/interfaces/macs/02:00:00:00:00:02/local-ipv4s"
        )
        .await,
        "10.0.1.21\n10.0.1.120"
    );
    emu.stop();
}
