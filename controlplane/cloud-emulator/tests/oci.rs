//! OCI privateIps over real HTTP on loopback.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const SUBNET: &str = "ocid1.subnet.oc1..s1";
const VNIC_A: &str = "ocid1.vnic.oc1..a";
const VNIC_B: &str = "ocid1.vnic.oc1..b";
const SIG: &str = r#"Signature version="1",keyId="ocid1.tenancy.oc1..t/ocid1.user.oc1..u/aa:bb",algorithm="rsa-sha256",headers="(request-target) date host",signature="AAAA""#;

async fn start_oci() -> cer_cloud_emulator::Running {
    let seed: cer_cloud_emulator::Seed = serde_json::from_value(json!({
        "move_delay_ms": 200,
        "subnets": [{"id": SUBNET, "cidr": "10.2.0.0/24", "availability_zone": "Uocm:EU-FRANKFURT-1-AD-1"},
                    {"id": "ocid1.subnet.oc1..s2", "cidr": "10.3.0.0/24"}],
        "nics": [
            {"id": VNIC_A, "provider": "oci", "instance": "ocid1.instance.oc1..a", "subnet": SUBNET,
             "primary_ip": "10.2.0.10", "secondary_ips": ["10.2.0.100"]},
            {"id": VNIC_B, "provider": "oci", "instance": "ocid1.instance.oc1..b", "subnet": SUBNET, "primary_ip": "10.2.0.20"},
            {"id": "ocid1.vnic.oc1..c", "provider": "oci", "subnet": "ocid1.subnet.oc1..s2", "primary_ip": "10.3.0.30"}
        ]
    }))
    .unwrap();
    cer_cloud_emulator::start(seed, "127.0.0.1:0".parse().unwrap(), &[])
        .await
        .unwrap()
}

async fn oci(
    a: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
    extra: &[(&str, &str)],
) -> Resp {
    let mut h = vec![("Authorization", SIG), ("Content-Type", "application/json")];
    h.extend_from_slice(extra);
    let b = body.map(|b| b.to_string()).unwrap_or_default();
    http(a, method, path, &h, b.as_bytes()).await
}

async fn find(a: SocketAddr, ip: &str) -> Vec<Value> {
    let r = oci(
        a,
        "GET",
        &format!("/20160918/privateIps?ipAddress={ip}&subnetId={SUBNET}"),
        None,
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json().as_array().unwrap().clone()
}

#[tokio::test]
async fn list_update_move_with_etags_create_delete() {
    let emu = start_oci().await;
    let a = emu.addr;

    let found = find(a, "10.2.0.100").await;
    assert_eq!(found.len(), 1);
    let pip = &found[0];
    assert_eq!(pip["vnicId"], VNIC_A);
    assert_eq!(pip["isPrimary"], false);
    assert_eq!(pip["subnetId"], SUBNET);
    let id = pip["id"].as_str().unwrap().to_string();
    let r = oci(a, "GET", &format!("/20160918/privateIps/{id}"), None, &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.header("opc-request-id").is_some());
    let etag = r.header("etag").unwrap().to_string();

    // Move with the right etag; a stale etag afterwards is 412 NoEtagMatch.
    let r = oci(
        a,
        "PUT",
        &format!("/20160918/privateIps/{id}"),
        Some(&json!({"vnicId": VNIC_B})),
        &[("if-match", &etag)],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["vnicId"], VNIC_B);
    assert_eq!(
        r.json()["id"],
        id.as_str(),
        "the private IP object keeps its OCID"
    );
    assert_ne!(r.header("etag").unwrap(), etag);
    // The fabric follows after the delay.
    assert_eq!(api_holder(a, "10.2.0.100").await.as_deref(), Some(VNIC_A));
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(api_holder(a, "10.2.0.100").await.as_deref(), Some(VNIC_B));
    let r = oci(
        a,
        "PUT",
        &format!("/20160918/privateIps/{id}"),
        Some(&json!({"vnicId": VNIC_A})),
        &[("if-match", &etag)],
    )
    .await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (412, Some("NoEtagMatch"))
    );
    // Listing by VNIC.
    let r = oci(
        a,
        "GET",
        &format!("/20160918/privateIps?vnicId={VNIC_B}"),
        None,
        &[],
    )
    .await;
    let list = r.json();
    let addrs: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["ipAddress"].as_str().unwrap())
        .collect();
    assert_eq!(addrs, ["10.2.0.20", "10.2.0.100"]);

    // Create: a free address works, a held one is a conflict, another subnet is refused.
    let r = oci(
        a,
        "POST",
        "/20160918/privateIps",
        Some(&json!({"vnicId": VNIC_A, "ipAddress": "10.2.0.101"})),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let created = r.json()["id"].as_str().unwrap().to_string();
    let r = oci(
        a,
        "POST",
        "/20160918/privateIps",
        Some(&json!({"vnicId": VNIC_A, "ipAddress": "10.2.0.100"})),
        &[],
    )
    .await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (409, Some("Conflict"))
    );
    let r = oci(
        a,
        "POST",
        "/20160918/privateIps",
        Some(&json!({"vnicId": VNIC_A, "ipAddress": "10.3.0.5"})),
        &[],
    )
    .await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (400, Some("InvalidParameter"))
    );
    let r = oci(
        a,
        "POST",
        "/20160918/privateIps",
        Some(&json!({"vnicId": VNIC_A})),
        &[],
    )
    .await;
    assert_eq!(r.json()["ipAddress"], "10.2.0.4");

    // Delete; then it is gone.
    let r = oci(
        a,
        "DELETE",
        &format!("/20160918/privateIps/{created}"),
        None,
        &[],
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = oci(
        a,
        "GET",
        &format!("/20160918/privateIps/{created}"),
        None,
        &[],
    )
    .await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (404, Some("NotAuthorizedOrNotFound"))
    );
    emu.stop();
}

#[tokio::test]
async fn bad_input_auth_and_faults() {
    let emu = start_oci().await;
    let a = emu.addr;
    let primary = find(a, "10.2.0.10").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let secondary = find(a, "10.2.0.100").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    for (method, path, body, status, code) in [
        (
            "PUT",
            format!("/20160918/privateIps/{primary}"),
            json!({"vnicId": VNIC_B}),
            400,
            "InvalidParameter",
        ),
        (
            "PUT",
            format!("/20160918/privateIps/{secondary}"),
            json!({"vnicId": "ocid1.vnic.oc1..c"}),
            400,
            "InvalidParameter",
        ),
        (
            "PUT",
            format!("/20160918/privateIps/{secondary}"),
            json!({"vnicId": "ocid1.vnic.oc1..zz"}),
            404,
            "NotAuthorizedOrNotFound",
        ),
        (
            "PUT",
            format!("/20160918/privateIps/{secondary}"),
            json!({"vnicId": 7}),
            400,
            "InvalidParameter",
        ),
        (
            "PUT",
            format!("/20160918/privateIps/{secondary}"),
            json!([1]),
            400,
            "InvalidParameter",
        ),
        (
            "PUT",
            "/20160918/privateIps/ocid1.privateip.oc1..nope".to_string(),
            json!({}),
            404,
            "NotAuthorizedOrNotFound",
        ),
        (
            "POST",
            "/20160918/privateIps".to_string(),
            json!({"ipAddress": "10.2.0.50"}),
            400,
            "InvalidParameter",
        ),
        (
            "POST",
            "/20160918/privateIps".to_string(),
            json!({"vnicId": VNIC_A, "ipAddress": "300.1.1.1"}),
            400,
            "InvalidParameter",
        ),
        (
            "DELETE",
            format!("/20160918/privateIps/{primary}"),
            json!(null),
            400,
            "InvalidParameter",
        ),
        (
            "GET",
            "/20160918/privateIps".to_string(),
            json!(null),
            400,
            "InvalidParameter",
        ),
        (
            "GET",
            "/20160918/privateIps?ipAddress=x&subnetId=s".to_string(),
            json!(null),
            400,
            "InvalidParameter",
        ),
        (
            "PATCH",
            format!("/20160918/privateIps/{secondary}"),
            json!(null),
            405,
            "MethodNotAllowed",
        ),
    ] {
        let r = oci(a, method, &path, Some(&body), &[]).await;
        assert_eq!(r.status, status, "{method} {path}: {}", r.body);
        assert_eq!(r.json()["code"], code, "{method} {path}: {}", r.body);
    }
    let r = http(
        a,
        "PUT",
        &format!("/20160918/privateIps/{secondary}"),
        &[("Authorization", SIG)],
        b"{garbage",
    )
    .await;
    assert_eq!(r.status, 400);

    for p in [
        "/20160918/privateIpsX",
        "/20160918/vnics",
        "/20160918/privateIps/a/b",
    ] {
        let r = oci(a, "GET", p, None, &[]).await;
        assert_eq!(
            (r.status, r.json()["code"].as_str()),
            (404, Some("NotAuthorizedOrNotFound")),
            "{p}"
        );
    }
    // Unsigned or badly signed requests.
    let r = http(
        a,
        "GET",
        &format!("/20160918/privateIps/{secondary}"),
        &[],
        b"",
    )
    .await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (401, Some("NotAuthenticated"))
    );
    let r = http(
        a,
        "GET",
        &format!("/20160918/privateIps/{secondary}"),
        &[("Authorization", "Bearer x")],
        b"",
    )
    .await;
    assert_eq!(r.status, 401);

    // Throttling and 500s.
    http(a, "POST", "/_emulator/faults", &[], br#"[{"provider":"oci","action":"UpdatePrivateIp","kind":"throttle"},{"provider":"oci","action":"ListPrivateIps","kind":"error"}]"#).await;
    let r = oci(
        a,
        "PUT",
        &format!("/20160918/privateIps/{secondary}"),
        Some(&json!({"vnicId": VNIC_B})),
        &[],
    )
    .await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (429, Some("TooManyRequests"))
    );
    let r = oci(
        a,
        "GET",
        &format!("/20160918/privateIps?vnicId={VNIC_A}"),
        None,
        &[],
    )
    .await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (500, Some("InternalServerError"))
    );
    let r = oci(
        a,
        "PUT",
        &format!("/20160918/privateIps/{secondary}"),
        Some(&json!({"vnicId": VNIC_B})),
        &[],
    )
    .await;
    assert_eq!(r.status, 200);
    emu.stop();
}
