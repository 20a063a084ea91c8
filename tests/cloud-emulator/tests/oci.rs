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

mod signing {
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine as _;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::{SignatureEncoding, Signer};
    use sha2::{Digest, Sha256};

    pub fn fixture(name: &str) -> String {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(name),
        )
        .unwrap()
    }

    pub fn key(name: &str) -> rsa::RsaPrivateKey {
        let pem = fixture(name);
        rsa::RsaPrivateKey::from_pkcs8_pem(&pem)
            .or_else(|_| {
                use rsa::pkcs1::DecodeRsaPrivateKey;
                rsa::RsaPrivateKey::from_pkcs1_pem(&pem)
            })
            .unwrap()
    }

    /// Headers of a request signed the OCI way; `date` overrides the current time.
    pub fn sign(
        key_id: &str,
        key: &rsa::RsaPrivateKey,
        method: &str,
        target: &str,
        host: &str,
        body: Option<&[u8]>,
        date: Option<std::time::SystemTime>,
    ) -> Vec<(String, String)> {
        let date = httpdate::fmt_http_date(date.unwrap_or_else(std::time::SystemTime::now));
        let mut names = vec!["date", "(request-target)", "host"];
        let mut lines = vec![
            format!("date: {date}"),
            format!("(request-target): {} {target}", method.to_ascii_lowercase()),
            format!("host: {host}"),
        ];
        let mut headers = vec![("Date".to_string(), date.clone())];
        if let Some(b) = body {
            let sha = B64.encode(Sha256::digest(b));
            lines.push(format!("x-content-sha256: {sha}"));
            lines.push("content-type: application/json".into());
            lines.push(format!("content-length: {}", b.len()));
            names.extend(["x-content-sha256", "content-type", "content-length"]);
            headers.push(("x-content-sha256".into(), sha));
        }
        let sig =
            rsa::pkcs1v15::SigningKey::<Sha256>::new(key.clone()).sign(lines.join("\n").as_bytes());
        headers.push((
            "Authorization".into(),
            format!(
                "Signature version=\"1\",keyId=\"{key_id}\",algorithm=\"rsa-sha256\",headers=\"{}\",signature=\"{}\"",
                names.join(" "),
                B64.encode(sig.to_bytes())
            ),
        ));
        headers
    }
}

#[tokio::test]
async fn signatures_are_verified_when_keys_are_configured() {
    use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
    use base64::Engine as _;
    use rsa::pkcs8::EncodePublicKey;
    use signing::*;

    const KEY_ID: &str = "ocid1.tenancy.oc1..t/ocid1.user.oc1..u/11:22";
    const TENANCY: &str = "ocid1.tenancy.oc1..emulatortenancy";
    let mut seed: cer_cloud_emulator::Seed = serde_json::from_value(json!({
        "move_delay_ms": 0,
        "subnets": [{"id": SUBNET, "cidr": "10.2.0.0/24"}],
        "nics": [{"id": VNIC_A, "provider": "oci", "subnet": SUBNET, "primary_ip": "10.2.0.10", "secondary_ips": ["10.2.0.100"]}],
        "oci_api_keys": { KEY_ID: fixture("api_key_public.pem") },
        "oci_instance_principal": {
            "tenancy": TENANCY,
            "cert_pem": fixture("leaf_cert.pem"),
            "key_pem": fixture("leaf_key.pem"),
            "intermediate_pem": fixture("intermediate.pem"),
            "token_ttl_secs": 600
        }
    }))
    .unwrap();
    seed.validate().unwrap();
    let emu = cer_cloud_emulator::start(seed.clone(), "127.0.0.1:0".parse().unwrap(), &[])
        .await
        .unwrap();
    let a = emu.addr;
    let host = a.to_string();
    let api = key("api_key.pem");
    let list = format!("/20160918/privateIps?ipAddress=10.2.0.100&subnetId={SUBNET}");
    let send = |method: &'static str, target: String, h: Vec<(String, String)>, body: Vec<u8>| async move {
        let hv: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        http(a, method, &target, &hv, &body).await
    };

    // A good signature.
    let h = sign(KEY_ID, &api, "GET", &list, &host, None, None);
    let r = send("GET", list.clone(), h, Vec::new()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()[0]["vnicId"], VNIC_A);
    // The shape-only header of the other tests, a wrong key, an unknown keyId, a signature over
    // another path, and a stale date are refused.
    let r = oci(a, "GET", &list, None, &[]).await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (401, Some("NotAuthenticated"))
    );
    let h = sign(
        KEY_ID,
        &key("leaf_key.pem"),
        "GET",
        &list,
        &host,
        None,
        None,
    );
    assert_eq!(send("GET", list.clone(), h, Vec::new()).await.status, 401);
    let h = sign(
        "ocid1.tenancy.oc1..t/ocid1.user.oc1..x/11:22",
        &api,
        "GET",
        &list,
        &host,
        None,
        None,
    );
    assert_eq!(send("GET", list.clone(), h, Vec::new()).await.status, 401);
    let h = sign(
        KEY_ID,
        &api,
        "GET",
        "/20160918/privateIps",
        &host,
        None,
        None,
    );
    assert_eq!(send("GET", list.clone(), h, Vec::new()).await.status, 401);
    let old = std::time::SystemTime::now() - Duration::from_secs(600);
    let h = sign(KEY_ID, &api, "GET", &list, &host, None, Some(old));
    let r = send("GET", list.clone(), h, Vec::new()).await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("5 minutes"), "{}", r.body);

    // The emulator's clock ten minutes ahead: the host's date is refused, and the refusal's
    // Date header gives the emulator's time, which a client re-signs with.
    let c = http(
        a,
        "POST",
        "/_emulator/config",
        &[],
        br#"{"clock_offset_secs": 600}"#,
    )
    .await;
    assert_eq!(c.status, 200, "{}", c.body);
    let h = sign(KEY_ID, &api, "GET", &list, &host, None, None);
    let r = send("GET", list.clone(), h, Vec::new()).await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (401, Some("NotAuthenticated"))
    );
    assert!(r.body.contains("5 minutes"), "{}", r.body);
    let server = httpdate::parse_http_date(r.header("date").unwrap()).unwrap();
    let ahead = server
        .duration_since(std::time::SystemTime::now())
        .unwrap()
        .as_secs();
    assert!((598..=601).contains(&ahead), "{ahead}");
    let h = sign(KEY_ID, &api, "GET", &list, &host, None, Some(server));
    let r = send("GET", list.clone(), h, Vec::new()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let c = http(
        a,
        "POST",
        "/_emulator/config",
        &[],
        br#"{"clock_offset_secs": 0}"#,
    )
    .await;
    assert_eq!(c.status, 200, "{}", c.body);

    // Bodies: the hash must match and the body headers must be signed.
    let body = json!({"vnicId": VNIC_A, "ipAddress": "10.2.0.101"})
        .to_string()
        .into_bytes();
    let mut h = sign(
        KEY_ID,
        &api,
        "POST",
        "/20160918/privateIps",
        &host,
        Some(&body),
        None,
    );
    h.push(("Content-Type".into(), "application/json".into()));
    let tampered = json!({"vnicId": VNIC_A, "ipAddress": "10.2.0.102"})
        .to_string()
        .into_bytes();
    let r = send("POST", "/20160918/privateIps".into(), h.clone(), tampered).await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("x-content-sha256"), "{}", r.body);
    let unsigned_body = sign(
        KEY_ID,
        &api,
        "POST",
        "/20160918/privateIps",
        &host,
        None,
        None,
    );
    let r = send(
        "POST",
        "/20160918/privateIps".into(),
        unsigned_body,
        body.clone(),
    )
    .await;
    assert_eq!(r.status, 401);
    let r = send("POST", "/20160918/privateIps".into(), h, body).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Instance metadata identity: Bearer Oracle only.
    let r = http(a, "GET", "/opc/v2/identity/cert.pem", &[], b"").await;
    assert_eq!(r.status, 401);
    let r = http(
        a,
        "GET",
        "/opc/v2/identity/cert.pem",
        &[("Authorization", "Bearer Oracle")],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, fixture("leaf_cert.pem"));
    let r = http(
        a,
        "GET",
        "/opc/v2/identity/nope.pem",
        &[("Authorization", "Bearer Oracle")],
        b"",
    )
    .await;
    assert_eq!(r.status, 404);

    // Federation: signed with the leaf key as {tenancy}/fed-x509/{fingerprint}.
    let leaf = B64
        .decode(
            fixture("leaf_cert.pem")
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<String>(),
        )
        .unwrap();
    let fp = {
        use sha1::Digest as _;
        sha1::Sha1::digest(&leaf)
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    // The session key: any RSA key (the API key's, to keep the test fast).
    let session_pub = api.to_public_key().to_public_key_der().unwrap();
    let fed = json!({
        "certificate": B64.encode(&leaf),
        "publicKey": B64.encode(session_pub.as_bytes()),
        "intermediateCertificates": [],
        "purpose": "DEFAULT",
        "fingerprintAlgorithm": "SHA256",
    })
    .to_string()
    .into_bytes();
    let leaf_key = key("leaf_key.pem");
    let fed_id = format!("{TENANCY}/fed-x509/{fp}");
    let mut h = sign(&fed_id, &api, "POST", "/v1/x509", &host, Some(&fed), None);
    h.push(("Content-Type".into(), "application/json".into()));
    assert_eq!(
        send("POST", "/v1/x509".into(), h, fed.clone()).await.status,
        401,
        "leaf key required"
    );
    let mut h = sign(
        &fed_id,
        &leaf_key,
        "POST",
        "/v1/x509",
        &host,
        Some(&fed),
        None,
    );
    h.push(("Content-Type".into(), "application/json".into()));
    let r = send("POST", "/v1/x509".into(), h, fed.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let token = r.json()["token"].as_str().unwrap().to_string();
    let claims: Value =
        serde_json::from_slice(&B64URL.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert_eq!(claims["tenant"], TENANCY);
    assert!(claims["exp"].as_u64().unwrap() > claims["iat"].as_u64().unwrap() + 500);
    // The federation keyId is accepted nowhere else; the token is, with the session key.
    let h = sign(&fed_id, &leaf_key, "GET", &list, &host, None, None);
    assert_eq!(send("GET", list.clone(), h, Vec::new()).await.status, 401);
    let h = sign(
        &format!("ST${token}"),
        &api,
        "GET",
        &list,
        &host,
        None,
        None,
    );
    let r = send("GET", list.clone(), h, Vec::new()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let h = sign("ST$forged", &api, "GET", &list, &host, None, None);
    assert_eq!(send("GET", list.clone(), h, Vec::new()).await.status, 401);

    // A seed with a bad key is refused.
    seed.oci_api_keys.insert("x".into(), "not a key".into());
    assert!(seed.validate().is_err());
    emu.stop();
}
