//! Azure ARM NICs and the managed identity endpoint over real HTTP on loopback.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const RG: &str = "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.Network";
const API: &str = "api-version=2023-09-01";

fn nic_id(name: &str) -> String {
    format!("{RG}/networkInterfaces/{name}")
}

async fn start_azure() -> cer_cloud_emulator::Running {
    let subnet = format!("{RG}/virtualNetworks/vnet-1/subnets/default");
    let seed: cer_cloud_emulator::Seed = serde_json::from_value(json!({
        "move_delay_ms": 300,
        "subnets": [{"id": subnet, "cidr": "10.1.0.0/24"}],
        "nics": [
            {"id": nic_id("nic-a"), "provider": "azure", "instance": "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.Compute/virtualMachines/vm-a",
             "subnet": subnet, "primary_ip": "10.1.0.4", "secondary_ips": ["10.1.0.100"]},
            {"id": nic_id("nic-b"), "provider": "azure", "subnet": subnet, "primary_ip": "10.1.0.5"}
        ]
    }))
    .unwrap();
    cer_cloud_emulator::start(seed, "127.0.0.1:0".parse().unwrap(), &[])
        .await
        .unwrap()
}

async fn arm(
    a: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
    extra: &[(&str, &str)],
) -> Resp {
    let mut headers = vec![
        ("Authorization", "Bearer token"),
        ("Content-Type", "application/json"),
    ];
    headers.extend_from_slice(extra);
    let b = body.map(|b| b.to_string()).unwrap_or_default();
    http(a, method, &format!("{path}?{API}"), &headers, b.as_bytes()).await
}

fn ips(nic: &Value) -> Vec<(String, String, bool)> {
    nic["properties"]["ipConfigurations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["properties"]["privateIPAddress"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                c["properties"]["primary"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// The NIC body with its secondaries replaced by `secondaries` (name, address).
fn with_secondaries(nic: &Value, secondaries: &[(&str, &str)]) -> Value {
    let mut n = nic.clone();
    let cfgs = n["properties"]["ipConfigurations"].as_array_mut().unwrap();
    cfgs.retain(|c| c["properties"]["primary"] == true);
    let subnet = cfgs[0]["properties"]["subnet"].clone();
    for (name, ip) in secondaries {
        cfgs.push(json!({"name": name, "properties": {
            "privateIPAddress": ip, "privateIPAllocationMethod": "Static", "subnet": subnet, "primary": false}}));
    }
    n
}

/// Polls an Azure-AsyncOperation URL until it is no longer InProgress.
async fn poll(a: SocketAddr, url: &str) -> (String, Duration) {
    let path = url
        .split_once(&a.to_string())
        .expect("operation on this host")
        .1;
    let t0 = Instant::now();
    loop {
        let r = http(a, "GET", path, &[("Authorization", "Bearer token")], b"").await;
        assert_eq!(r.status, 200, "{}", r.body);
        let s = r.json()["status"].as_str().unwrap().to_string();
        if s != "InProgress" {
            return (s, t0.elapsed());
        }
        assert!(t0.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn two_step_move_with_lro_and_allocation_conflict() {
    let emu = start_azure().await;
    let a = emu.addr;
    let old = arm(a, "GET", &nic_id("nic-a"), None, &[]).await;
    assert_eq!(old.status, 200, "{}", old.body);
    let old_nic = old.json();
    assert_eq!(old_nic["properties"]["provisioningState"], "Succeeded");
    assert_eq!(old_nic["type"], "Microsoft.Network/networkInterfaces");
    assert_eq!(
        ips(&old_nic),
        vec![
            ("ipconfig1".into(), "10.1.0.4".into(), true),
            ("ipconfig-10-1-0-100".into(), "10.1.0.100".into(), false)
        ]
    );
    assert_eq!(old.header("etag"), old_nic["etag"].as_str());
    let new_nic = arm(a, "GET", &nic_id("nic-b"), None, &[]).await.json();

    // Creating the address on nic-b while nic-a holds it: PrivateIPAddressIsAllocated.
    let r = arm(
        a,
        "PUT",
        &nic_id("nic-b"),
        Some(&with_secondaries(&new_nic, &[("cer-1", "10.1.0.100")])),
        &[],
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "PrivateIPAddressIsAllocated");
    assert_eq!(
        r.json()["error"]["message"],
        format!(
            "IP configuration {}/ipConfigurations/cer-1 is using the private IP address 10.1.0.100 which is already allocated to resource {}/ipConfigurations/ipconfig-10-1-0-100.",
            nic_id("nic-b"),
            nic_id("nic-a")
        )
    );

    // Step 1: release on nic-a (LRO).
    let r = arm(
        a,
        "PUT",
        &nic_id("nic-a"),
        Some(&with_secondaries(&old_nic, &[])),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["properties"]["provisioningState"], "Updating");
    let op = r
        .header("azure-asyncoperation")
        .expect("async header")
        .to_string();
    assert!(r.header("retry-after").is_some());
    // While it runs: the address is still allocated, nic-a is busy, and the fabric still sees nic-a.
    let r2 = arm(
        a,
        "PUT",
        &nic_id("nic-b"),
        Some(&with_secondaries(&new_nic, &[("cer-1", "10.1.0.100")])),
        &[],
    )
    .await;
    assert_eq!(
        r2.json()["error"]["code"],
        "PrivateIPAddressIsAllocated",
        "{}",
        r2.body
    );
    let r2 = arm(
        a,
        "PUT",
        &nic_id("nic-a"),
        Some(&with_secondaries(&old_nic, &[])),
        &[],
    )
    .await;
    assert_eq!(r2.status, 429);
    assert_eq!(
        r2.json()["error"]["code"],
        "RetryableErrorDueToAnotherOperation"
    );
    assert_eq!(api_holder(a, "10.1.0.100").await, Some(nic_id("nic-a")));
    let (status, took) = poll(a, &op).await;
    assert_eq!(status, "Succeeded");
    assert!(took >= Duration::from_millis(150), "LRO lasted {took:?}");
    assert_eq!(api_holder(a, "10.1.0.100").await, None);
    let nic_a = arm(a, "GET", &nic_id("nic-a"), None, &[]).await.json();
    assert_eq!(nic_a["properties"]["provisioningState"], "Succeeded");
    assert_eq!(ips(&nic_a).len(), 1);

    // Step 2: create on nic-b.
    let r = arm(
        a,
        "PUT",
        &nic_id("nic-b"),
        Some(&with_secondaries(&new_nic, &[("cer-1", "10.1.0.100")])),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (status, _) = poll(a, r.header("azure-asyncoperation").unwrap()).await;
    assert_eq!(status, "Succeeded");
    assert_eq!(api_holder(a, "10.1.0.100").await, Some(nic_id("nic-b")));
    let nic_b = arm(a, "GET", &nic_id("nic-b"), None, &[]).await.json();
    assert_eq!(ips(&nic_b)[1], ("cer-1".into(), "10.1.0.100".into(), false));

    // The same PUT again is a no-op without an operation.
    let r = arm(a, "PUT", &nic_id("nic-b"), Some(&nic_b), &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.header("azure-asyncoperation").is_none());
    emu.stop();
}

#[tokio::test]
async fn etags_validation_faults_and_auth() {
    let emu = start_azure().await;
    let a = emu.addr;
    let nic = arm(a, "GET", &nic_id("nic-a"), None, &[]).await.json();
    let stale = nic["etag"].as_str().unwrap().to_string();

    // A NIC keeps at least one (primary) configuration.
    let mut none = nic.clone();
    none["properties"]["ipConfigurations"] = json!([]);
    let r = arm(a, "PUT", &nic_id("nic-a"), Some(&none), &[]).await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (400, Some("InvalidRequestFormat"))
    );
    let mut no_primary = with_secondaries(&nic, &[("x", "10.1.0.50")]);
    no_primary["properties"]["ipConfigurations"][0]["properties"]["primary"] = json!(false);
    assert_eq!(
        arm(a, "PUT", &nic_id("nic-a"), Some(&no_primary), &[])
            .await
            .status,
        400
    );
    for (body, code) in [
        (
            with_secondaries(&nic, &[("x", "10.1.0.999")]),
            "PrivateIPAddressInvalid",
        ),
        (
            with_secondaries(&nic, &[("x", "10.2.0.9")]),
            "PrivateIPAddressNotInSubnet",
        ),
        (
            with_secondaries(&nic, &[("x", "10.1.0.9"), ("x", "10.1.0.10")]),
            "InvalidRequestFormat",
        ),
        (
            with_secondaries(&nic, &[("x", "10.1.0.5")]),
            "PrivateIPAddressIsAllocated",
        ),
        (json!("not an object"), "InvalidRequestFormat"),
    ] {
        let r = arm(a, "PUT", &nic_id("nic-a"), Some(&body), &[]).await;
        assert_eq!(r.status, 400, "{}", r.body);
        assert_eq!(r.json()["error"]["code"], code, "{}", r.body);
    }
    let r = http(
        a,
        "PUT",
        &format!("{}?{API}", nic_id("nic-a")),
        &[("Authorization", "Bearer t")],
        b"{not json",
    )
    .await;
    assert_eq!(r.status, 400);

    // If-Match: the current etag passes, a stale one is 412.
    let r = arm(
        a,
        "PUT",
        &nic_id("nic-a"),
        Some(&with_secondaries(&nic, &[("x", "10.1.0.50")])),
        &[("If-Match", &stale)],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    tokio::time::sleep(Duration::from_millis(350)).await;
    let r = arm(
        a,
        "PUT",
        &nic_id("nic-a"),
        Some(&with_secondaries(&nic, &[])),
        &[("If-Match", &stale)],
    )
    .await;
    assert_eq!(r.status, 412, "{}", r.body);

    // Static without an address.
    let mut missing = with_secondaries(&nic, &[]);
    missing["properties"]["ipConfigurations"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "st", "properties": {"privateIPAllocationMethod": "Static", "primary": false}}));
    let r = arm(a, "PUT", &nic_id("nic-a"), Some(&missing), &[]).await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (400, Some("PrivateIPAddressMissing"))
    );

    // Dynamic allocation picks a free address.
    let mut dynamic = with_secondaries(&nic, &[]);
    dynamic["properties"]["ipConfigurations"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "dyn", "properties": {"privateIPAllocationMethod": "Dynamic", "primary": false}}));
    let r = arm(a, "PUT", &nic_id("nic-a"), Some(&dynamic), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(ips(&r.json())[1], ("dyn".into(), "10.1.0.6".into(), false));

    // Unknown NIC, missing api-version, missing token.
    let r = arm(a, "GET", &nic_id("nic-zz"), None, &[]).await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (404, Some("ResourceNotFound"))
    );
    let r = http(
        a,
        "GET",
        &nic_id("nic-a"),
        &[("Authorization", "Bearer t")],
        b"",
    )
    .await;
    assert_eq!(r.json()["error"]["code"], "MissingApiVersionParameter");
    let r = http(a, "GET", &format!("{}?{API}", nic_id("nic-a")), &[], b"").await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (401, Some("AuthenticationFailed"))
    );

    // Throttling and 500s.
    http(a, "POST", "/_emulator/faults", &[], br#"[{"provider":"azure","action":"PutNetworkInterface","kind":"throttle"},{"provider":"azure","action":"GetNetworkInterface","kind":"error"}]"#).await;
    let r = arm(a, "PUT", &nic_id("nic-b"), Some(&nic), &[]).await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (429, Some("RetryableError"))
    );
    assert_eq!(r.header("retry-after"), Some("1"));
    let r = arm(a, "GET", &nic_id("nic-b"), None, &[]).await;
    assert_eq!(r.status, 500);
    assert_eq!(arm(a, "GET", &nic_id("nic-b"), None, &[]).await.status, 200);

    // Managed identity token.
    let tok = "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com%2F";
    assert_eq!(http(a, "GET", tok, &[], b"").await.status, 400);
    let r = http(a, "GET", tok, &[("Metadata", "true")], b"").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let t = r.json();
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["resource"], "https://management.azure.com/");
    assert!(t["access_token"].as_str().unwrap().len() > 10);
    let r = http(
        a,
        "GET",
        "/metadata/identity/oauth2/token?api-version=2018-02-01",
        &[("Metadata", "true")],
        b"",
    )
    .await;
    assert_eq!(r.status, 400);
    emu.stop();
}

#[tokio::test]
async fn list_network_interfaces_pages_with_next_link() {
    let subnet = format!("{RG}/virtualNetworks/vnet-1/subnets/default");
    let other_rg = "/subscriptions/sub-1/resourceGroups/rg-2/providers/Microsoft.Network";
    let seed: cer_cloud_emulator::Seed = serde_json::from_value(json!({
        "move_delay_ms": 300,
        "azure_list_page_size": 2,
        "subnets": [{"id": subnet, "cidr": "10.1.0.0/24"}],
        "nics": [
            {"id": nic_id("nic-a"), "provider": "azure", "subnet": subnet, "primary_ip": "10.1.0.4", "secondary_ips": ["10.1.0.100"]},
            {"id": nic_id("nic-b"), "provider": "azure", "subnet": subnet, "primary_ip": "10.1.0.5"},
            {"id": nic_id("nic-c"), "provider": "azure", "subnet": subnet, "primary_ip": "10.1.0.6"},
            {"id": format!("{other_rg}/networkInterfaces/nic-z"), "provider": "azure", "subnet": subnet, "primary_ip": "10.1.0.7"}
        ]
    }))
    .unwrap();
    let emu = cer_cloud_emulator::start(seed, "127.0.0.1:0".parse().unwrap(), &[])
        .await
        .unwrap();
    let a = emu.addr;
    let list = format!("{RG}/networkInterfaces");
    // Page 1 of the resource group: two NICs and a nextLink on this host.
    let r = arm(a, "GET", &list, None, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let names = |v: &Value| -> Vec<String> {
        v["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&v), ["nic-a", "nic-b"]);
    assert_eq!(
        v["value"][0]["properties"]["ipConfigurations"][1]["properties"]["privateIPAddress"],
        "10.1.0.100"
    );
    let next = v["nextLink"].as_str().expect("nextLink").to_string();
    let path = next.split_once(&a.to_string()).expect("same host").1;
    assert!(
        path.contains("api-version=2023-09-01") && path.contains("$skiptoken="),
        "{next}"
    );
    // Page 2: the last NIC of rg-1, no nextLink (rg-2's NIC is not listed).
    let r = http(a, "GET", path, &[("Authorization", "Bearer token")], b"").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(names(&v), ["nic-c"]);
    assert!(v.get("nextLink").is_none(), "{v}");
    // A running change shows as Updating in the list.
    let nic = arm(a, "GET", &nic_id("nic-a"), None, &[]).await.json();
    let r = arm(
        a,
        "PUT",
        &nic_id("nic-a"),
        Some(&with_secondaries(&nic, &[])),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = arm(a, "GET", &list, None, &[]).await.json();
    assert_eq!(v["value"][0]["properties"]["provisioningState"], "Updating");
    assert_eq!(
        v["value"][0]["properties"]["ipConfigurations"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // The subscription-wide list has all four.
    let mut all = Vec::new();
    let mut next = "/subscriptions/sub-1/providers/Microsoft.Network/networkInterfaces".to_string();
    loop {
        let r = if next.starts_with("http") {
            let path = next.split_once(&a.to_string()).unwrap().1.to_string();
            http(a, "GET", &path, &[("Authorization", "Bearer token")], b"").await
        } else {
            arm(a, "GET", &next, None, &[]).await
        };
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json();
        all.extend(names(&v));
        match v["nextLink"].as_str() {
            Some(n) => next = n.to_string(),
            None => break,
        }
    }
    assert_eq!(all, ["nic-a", "nic-b", "nic-c", "nic-z"]);
    // Bad skip token, missing token, faults.
    let r = http(
        a,
        "GET",
        &format!("{list}?{API}&$skiptoken=zz"),
        &[("Authorization", "Bearer token")],
        b"",
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = http(a, "GET", &format!("{list}?{API}"), &[], b"").await;
    assert_eq!(r.json()["error"]["code"], "AuthenticationFailed");
    let r = http(
        a,
        "POST",
        "/_emulator/faults",
        &[],
        br#"{"provider":"azure","action":"ListNetworkInterfaces","kind":"throttle"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = arm(a, "GET", &list, None, &[]).await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (429, Some("RetryableError"))
    );
    assert_eq!(arm(a, "GET", &list, None, &[]).await.status, 200);
    emu.stop();
}
