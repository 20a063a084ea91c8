//! Bad input never panics: deterministic random garbage at every API, over real HTTP. A panic in a
//! handler would drop the connection (status 0); every answer must be a well-formed error or a
//! success, and the emulator must keep serving.

mod common;

use common::*;
use serde_json::{json, Value};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[(self.next() % v.len() as u64) as usize]
    }
}

const KEYS: &[&str] = &[
    "Action",
    "NetworkInterfaceId",
    "PrivateIpAddress.1",
    "PrivateIpAddress.2",
    "PrivateIpAddress.0",
    "PrivateIpAddress.99999999999",
    "PrivateIpAddress.x",
    "PrivateIpAddress.1.2",
    "AllowReassignment",
    "Filter.1.Name",
    "Filter.1.Value.1",
    "Filter.2.Name",
    "Filter.2.Value.7",
    "Filter.1.Value.0",
    "Filter.0.Name",
    "Filter.1",
    "Filter..Name",
    "NetworkInterfaceId.1",
    "NetworkInterfaceId.0",
    "MaxResults",
    "NextToken",
    "DryRun",
    "SecondaryPrivateIpAddressCount",
    "InstanceType.1",
    "InstanceType.2",
    "Version",
    "",
];
const ACTIONS: &[&str] = &[
    "AssignPrivateIpAddresses",
    "UnassignPrivateIpAddresses",
    "DescribeNetworkInterfaces",
    "DescribeInstanceTypes",
    "Nope",
    "",
];
const VALUES: &[&str] = &[
    "eni-a",
    "eni-b",
    "eni-c",
    "eni-",
    "eni-zz",
    "10.0.1.100",
    "10.0.1.5",
    "10.0.1.10",
    "10.0.1.255",
    "255.255.255.255",
    "::1",
    "",
    "true",
    "false",
    "TRUE",
    "1",
    "0",
    "-1",
    "99999999999999999999",
    "*",
    "?",
    "**",
    "network-interface-id",
    "addresses.private-ip-address",
    "attachment.instance-id",
    "emu-1",
    "emu-999999999999999999999",
    "\u{fffd}\u{1f600}",
    "<xml>&amp;",
    "%00",
    "5",
    "1000",
    "c5.large",
    "t3.*",
];

#[tokio::test]
async fn garbage_everywhere() {
    let emu = start().await;
    let a = emu.addr;
    // Hundreds of calls in a burst: the rate limits (tested in limits.rs) would throttle them
    // and hide the handlers this test is about.
    let r = http(
        a,
        "POST",
        "/_emulator/config",
        &[],
        br#"{"move_delay_ms": 0, "limits": {"enabled": false}}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut rng = Rng(0x9e3779b97f4a7c15);

    // EC2: random parameter soups.
    for _ in 0..400 {
        let mut params: Vec<(&str, &str)> = vec![("Action", rng.pick(ACTIONS))];
        for _ in 0..(rng.next() % 6) {
            params.push((rng.pick(KEYS), rng.pick(VALUES)));
        }
        let r = ec2(a, &params).await;
        assert!(
            matches!(r.status, 200 | 400 | 412),
            "{params:?} -> {} {}",
            r.status,
            r.body
        );
        if r.status != 200 {
            assert!(
                r.body.contains("<Response><Errors><Error><Code>"),
                "{params:?}: {}",
                r.body
            );
        }
    }

    // Raw bytes to every front end.
    for path in [
        "/",
        "/_emulator/faults",
        "/_emulator/reset",
        "/_emulator/config",
        "/latest/api/token",
        "/subscriptions/s/resourceGroups/r/providers/Microsoft.Network/networkInterfaces/n?api-version=1",
        "/20160918/privateIps",
        "/metadata/identity/oauth2/token?api-version=1&resource=x",
    ] {
        for method in ["GET", "POST", "PUT", "DELETE"] {
            let len = (rng.next() % 300) as usize;
            let body: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let r = http(
                a,
                method,
                path,
                &[
                    ("Authorization", "Bearer x"),
                    ("Metadata", "true"),
                    ("X-aws-ec2-metadata-token-ttl-seconds", "60"),
                ],
                &body,
            )
            .await;
            assert!(r.status >= 200 && r.status < 500, "{method} {path} -> {} {}", r.status, r.body);
        }
    }
    // The control API refused garbage seeds: the seed state is intact.
    assert_eq!(api_holder(a, "10.0.1.10").await.as_deref(), Some("eni-a"));
    emu.stop();
}

fn mutate(rng: &mut Rng, v: &mut Value, depth: u32) {
    let junk = [
        json!(null),
        json!(1),
        json!("x"),
        json!([]),
        json!({}),
        json!(true),
        json!("10.1.0.9"),
        json!("999.1.1.1"),
        json!([{"name": "q"}]),
        json!(-5),
    ];
    match v {
        Value::Object(m) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                match rng.next() % 6 {
                    0 => {
                        m.remove(&k);
                    }
                    1 => {
                        m.insert(k, junk[(rng.next() % junk.len() as u64) as usize].clone());
                    }
                    _ if depth < 6 => mutate(rng, m.get_mut(&k).unwrap(), depth + 1),
                    _ => {}
                }
            }
        }
        Value::Array(a) => {
            if rng.next().is_multiple_of(4) {
                a.clear();
            }
            for x in a.iter_mut() {
                if depth < 6 {
                    mutate(rng, x, depth + 1);
                }
            }
        }
        _ => {
            if rng.next().is_multiple_of(3) {
                *v = junk[(rng.next() % junk.len() as u64) as usize].clone();
            }
        }
    }
}

#[tokio::test]
async fn mutated_azure_and_oci_bodies() {
    let subnet =
        "/subscriptions/s/resourceGroups/r/providers/Microsoft.Network/virtualNetworks/v/subnets/d";
    let nic = "/subscriptions/s/resourceGroups/r/providers/Microsoft.Network/networkInterfaces/n";
    // 600 calls in a burst: rate limits off (they are tested in limits.rs), so every call
    // reaches the handlers under test.
    let seed: cer_cloud_emulator::Seed = serde_json::from_value(json!({
        "move_delay_ms": 0,
        "limits": {"enabled": false},
        "subnets": [{"id": subnet, "cidr": "10.1.0.0/24"}, {"id": "ocid1.subnet.oc1..s", "cidr": "10.2.0.0/24"}],
        "nics": [
            {"id": nic, "provider": "azure", "subnet": subnet, "primary_ip": "10.1.0.4", "secondary_ips": ["10.1.0.100"]},
            {"id": "ocid1.vnic.oc1..a", "provider": "oci", "subnet": "ocid1.subnet.oc1..s", "primary_ip": "10.2.0.4", "secondary_ips": ["10.2.0.100"]},
            {"id": "ocid1.vnic.oc1..b", "provider": "oci", "subnet": "ocid1.subnet.oc1..s", "primary_ip": "10.2.0.5"}
        ]
    }))
    .unwrap();
    let emu = cer_cloud_emulator::start(seed, "127.0.0.1:0".parse().unwrap(), &[])
        .await
        .unwrap();
    let a = emu.addr;
    let mut rng = Rng(0x2545f4914f6cdd1d);
    let path = format!("{nic}?api-version=2023-09-01");
    let base = http(a, "GET", &path, &[("Authorization", "Bearer t")], b"")
        .await
        .json();
    for _ in 0..300 {
        let mut b = base.clone();
        mutate(&mut rng, &mut b, 0);
        let r = http(
            a,
            "PUT",
            &path,
            &[("Authorization", "Bearer t")],
            b.to_string().as_bytes(),
        )
        .await;
        assert!(
            matches!(r.status, 200 | 400 | 412 | 429),
            "{b} -> {} {}",
            r.status,
            r.body
        );
        assert!(r.json().is_object());
    }
    let sig =
        r#"Signature version="1",keyId="k",algorithm="rsa-sha256",headers="date",signature="s""#;
    let pip = cer_cloud_emulator::oci::private_ip_id(
        "ocid1.subnet.oc1..s",
        "10.2.0.100".parse().unwrap(),
    );
    for _ in 0..300 {
        let mut b =
            json!({"vnicId": "ocid1.vnic.oc1..b", "ipAddress": "10.2.0.7", "displayName": "x"});
        mutate(&mut rng, &mut b, 0);
        let (method, p) = if rng.next().is_multiple_of(2) {
            ("POST", "/20160918/privateIps".to_string())
        } else {
            ("PUT", format!("/20160918/privateIps/{pip}"))
        };
        let r = http(
            a,
            method,
            &p,
            &[("Authorization", sig)],
            b.to_string().as_bytes(),
        )
        .await;
        assert!(
            matches!(r.status, 200 | 400 | 404 | 409 | 412),
            "{method} {b} -> {} {}",
            r.status,
            r.body
        );
    }
    emu.stop();
}
