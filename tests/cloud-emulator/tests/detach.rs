//! `POST /_emulator/nics/detach` and `/attach`: a NIC detached from its instance keeps its
//! addresses, each API shows it unattached the way its provider does, the holder view marks it
//! `attached: false`; OCI deletes a detached VNIC.

mod common;

use common::*;
use serde_json::json;

const AZ_SUB: &str =
    "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/virtualNetworks/v/subnets/sn";
const AZ_VM: &str =
    "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/vm";
const AZ_NIC0: &str =
    "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/networkInterfaces/n0";
const AZ_NIC1: &str =
    "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/networkInterfaces/n1";

async fn post(a: std::net::SocketAddr, path: &str, body: serde_json::Value) -> Resp {
    http(a, "POST", path, &[], body.to_string().as_bytes()).await
}

#[tokio::test]
async fn a_detached_nic_keeps_its_addresses_and_shows_unattached() {
    let emu = start_json(json!({
        "move_delay_ms": 0,
        "subnets": [
            {"id": "subnet-1", "cidr": "10.0.1.0/24", "vpc": "vpc-1"},
            {"id": AZ_SUB, "cidr": "10.1.0.0/24"},
            {"id": "ocid1.subnet.oc1..s", "cidr": "10.2.0.0/24"}
        ],
        "nics": [
            {"id": "eni-mgmt", "instance": "i-r", "subnet": "subnet-1", "primary_ip": "10.0.1.9"},
            {"id": "eni-cap", "instance": "i-r", "subnet": "subnet-1", "primary_ip": "10.0.1.10",
             "secondary_ips": ["10.0.1.100"]},
            {"id": AZ_NIC0, "provider": "azure", "instance": AZ_VM, "subnet": AZ_SUB, "primary_ip": "10.1.0.4"},
            {"id": AZ_NIC1, "provider": "azure", "instance": AZ_VM, "subnet": AZ_SUB, "primary_ip": "10.1.0.5",
             "secondary_ips": ["10.1.0.100"]},
            {"id": "ocid1.vnic.oc1..v", "provider": "oci", "instance": "ocid1.instance.oc1..i",
             "subnet": "ocid1.subnet.oc1..s", "primary_ip": "10.2.0.5", "secondary_ips": ["10.2.0.100"]}
        ]
    }))
    .await;
    let a = emu.addr;

    // AWS: the primary ENI cannot be detached; the second one can, once.
    let r = post(a, "/_emulator/nics/detach", json!({"id": "eni-mgmt"})).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("device index 0"), "{}", r.body);
    let g0 = http(a, "GET", "/_emulator/holders", &[], b"").await.json()["generation"].clone();
    let r = post(a, "/_emulator/nics/detach", json!({"id": "eni-cap"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["instance"], "i-r");
    assert_eq!(
        post(a, "/_emulator/nics/detach", json!({"id": "eni-cap"}))
            .await
            .status,
        400
    );
    assert_eq!(
        post(a, "/_emulator/nics/detach", json!({"id": "eni-x"}))
            .await
            .status,
        404
    );
    assert_eq!(
        post(a, "/_emulator/nics/detach", json!({"nic": "eni-cap"}))
            .await
            .status,
        400
    );
    // Its addresses stay on it; EC2 reports it available without an attachment.
    let r = ec2(
        a,
        &[
            ("Action", "DescribeNetworkInterfaces"),
            ("NetworkInterfaceId.1", "eni-cap"),
        ],
    )
    .await;
    assert_eq!(tag_values(&r.body, "status"), vec!["available"]);
    assert!(!r.body.contains("<attachment>"), "{}", r.body);
    assert!(r.body.contains("10.0.1.100"));
    let r = ec2(
        a,
        &[
            ("Action", "DescribeNetworkInterfaces"),
            ("Filter.1.Name", "attachment.instance-id"),
            ("Filter.1.Value.1", "i-r"),
        ],
    )
    .await;
    assert_eq!(tag_values(&r.body, "networkInterfaceId"), vec!["eni-mgmt"]);
    // The holder view still reports the NIC, unattached, and wakes long pollers.
    let h = http(a, "GET", "/_emulator/holders?ip=10.0.1.100", &[], b"")
        .await
        .json();
    assert_ne!(h["generation"], g0);
    assert_eq!(h["holders"][0]["nic"], "eni-cap");
    assert_eq!(h["holders"][0]["attached"], false);
    assert_eq!(h["holders"][0]["instance"], serde_json::Value::Null);
    let h = http(a, "GET", "/_emulator/holders?ip=10.0.1.9", &[], b"")
        .await
        .json();
    assert_eq!(h["holders"][0]["attached"], true);
    // Addresses still move onto and off it.
    let r = ec2(
        a,
        &[
            ("Action", "AssignPrivateIpAddresses"),
            ("NetworkInterfaceId", "eni-cap"),
            ("PrivateIpAddress.1", "10.0.1.101"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Attached back where it was (again: a no-op; elsewhere: refused).
    let r = post(a, "/_emulator/nics/attach", json!({"id": "eni-cap"})).await;
    assert_eq!(
        (r.status, r.json()["instance"].as_str()),
        (200, Some("i-r"))
    );
    assert_eq!(
        post(a, "/_emulator/nics/attach", json!({"id": "eni-cap"}))
            .await
            .status,
        200
    );
    assert_eq!(
        post(
            a,
            "/_emulator/nics/attach",
            json!({"id": "eni-cap", "instance": "i-z"})
        )
        .await
        .status,
        400
    );
    let r = ec2(
        a,
        &[
            ("Action", "DescribeNetworkInterfaces"),
            ("NetworkInterfaceId.1", "eni-cap"),
        ],
    )
    .await;
    assert_eq!(tag_values(&r.body, "status")[0], "in-use");
    assert!(r.body.contains("<attachment>"));

    // Azure: the NIC loses its virtualMachine, keeps its ipConfigurations.
    let r = post(a, "/_emulator/nics/detach", json!({"id": AZ_NIC1})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let nic = arm_call(a, "GET", AZ_NIC1, None).await.json();
    assert!(nic["properties"].get("virtualMachine").is_none(), "{nic}");
    assert!(nic.to_string().contains("10.1.0.100"));
    post(a, "/_emulator/nics/attach", json!({"id": AZ_NIC1})).await;
    let nic = arm_call(a, "GET", AZ_NIC1, None).await.json();
    assert_eq!(nic["properties"]["virtualMachine"]["id"], AZ_VM);

    // OCI deletes a detached VNIC, and its private IPs with it.
    let r = post(
        a,
        "/_emulator/nics/detach",
        json!({"id": "ocid1.vnic.oc1..v"}),
    )
    .await;
    assert_eq!((r.status, r.json()["deleted"].as_bool()), (200, Some(true)));
    let r = oci_call(
        a,
        "GET",
        "/20160918/privateIps?ipAddress=10.2.0.100&subnetId=ocid1.subnet.oc1..s",
        None,
    )
    .await;
    assert_eq!(r.json(), json!([]));
    // A reset brings everything back.
    assert_eq!(
        http(a, "POST", "/_emulator/reset", &[], b"").await.status,
        200
    );
    let h = http(a, "GET", "/_emulator/holders", &[], b"").await.json();
    assert!(h["holders"]
        .as_array()
        .unwrap()
        .iter()
        .all(|h| h["attached"] == true));
    emu.stop();
}
