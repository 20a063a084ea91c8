//! IMDSv2 and the /_emulator control API over real HTTP on loopback.

mod common;

use std::time::Duration;

use serde_json::json;

use common::*;

const TTL: &str = "X-aws-ec2-metadata-token-ttl-seconds";
const TOKEN: &str = "X-aws-ec2-metadata-token";

async fn token(addr: std::net::SocketAddr, ttl: &str) -> String {
    let r = http(addr, "PUT", "/latest/api/token", &[(TTL, ttl)], b"").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header(TTL), Some(ttl));
    assert!(!r.body.is_empty());
    r.body
}

#[tokio::test]
async fn imdsv2_token_flow() {
    let emu = start().await;
    let a = emu.addr;

    // No token, bad TTLs, wrong method, proxied token requests.
    let r = http(a, "GET", "/latest/meta-data/instance-id", &[], b"").await;
    assert_eq!(r.status, 401);
    for ttl in ["0", "21601", "abc"] {
        let r = http(a, "PUT", "/latest/api/token", &[(TTL, ttl)], b"").await;
        assert_eq!(r.status, 400, "ttl {ttl}");
    }
    assert_eq!(
        http(a, "PUT", "/latest/api/token", &[], b"").await.status,
        400
    );
    assert_eq!(
        http(a, "GET", "/latest/api/token", &[], b"").await.status,
        405
    );
    let r = http(
        a,
        "PUT",
        "/latest/api/token",
        &[(TTL, "60"), ("X-Forwarded-For", "10.9.9.9")],
        b"",
    )
    .await;
    assert_eq!(r.status, 403);
    let r = http(
        a,
        "GET",
        "/latest/meta-data/instance-id",
        &[(TOKEN, "forged")],
        b"",
    )
    .await;
    assert_eq!(r.status, 401);

    let t = token(a, "60").await;
    let get = |path: &'static str, t: String| async move {
        http(a, "GET", path, &[(TOKEN, t.as_str())], b"").await
    };
    let r = get("/latest/meta-data/instance-id", t.clone()).await;
    assert_eq!((r.status, r.body.as_str()), (200, "i-a"));
    let r = get("/latest/meta-data/mac", t.clone()).await;
    assert_eq!(r.body, "02:00:00:00:00:0a");
    let r = get("/latest/meta-data/local-ipv4", t.clone()).await;
    assert_eq!(r.body, "10.0.1.10");
    let r = get(
        "/latest/meta-data/network/interfaces/macs/02:00:00:00:00:0a/interface-id",
        t.clone(),
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (200, "eni-a"));
    let r = get(
        "/latest/meta-data/network/interfaces/macs/02:00:00:00:00:0a/local-ipv4s",
        t.clone(),
    )
    .await;
    assert_eq!(r.body, "10.0.1.10\n10.0.1.100");
    let r = get("/latest/meta-data/placement/region", t.clone()).await;
    assert_eq!(r.body, "eu-west-1");
    let r = get("/latest/meta-data/placement/availability-zone", t.clone()).await;
    assert_eq!(r.body, "eu-west-1a");
    let r = get(
        "/latest/meta-data/network/interfaces/macs/02:00:00:00:00:0b/interface-id",
        t.clone(),
    )
    .await;
    assert_eq!(r.status, 404, "another instance's MAC");
    assert_eq!(get("/latest/meta-data/nope", t.clone()).await.status, 404);
    assert_eq!(get("/latest/user-data", t.clone()).await.status, 404);

    // The dedicated IMDS listener for i-b: two NICs by device index.
    let (inst, b) = emu.imds_addrs[0].clone();
    assert_eq!(inst, "i-b");
    let tb = token(b, "21600").await;
    let r = http(
        b,
        "GET",
        "/latest/meta-data/instance-id",
        &[(TOKEN, &tb)],
        b"",
    )
    .await;
    assert_eq!(r.body, "i-b");
    let r = http(
        b,
        "GET",
        "/latest/meta-data/network/interfaces/macs/",
        &[(TOKEN, &tb)],
        b"",
    )
    .await;
    assert_eq!(r.body, "02:00:00:00:00:0b/\n02:00:00:00:00:0c/");
    let r = http(
        b,
        "GET",
        "/latest/meta-data/network/interfaces/macs/02:00:00:00:00:0c/device-number",
        &[(TOKEN, &tb)],
        b"",
    )
    .await;
    assert_eq!(r.body, "1");
    // The IMDS listener serves nothing else.
    let r = http(b, "GET", "/_emulator/holders", &[], b"").await;
    assert_eq!(r.status, 401);

    // Tokens expire.
    let short = token(a, "1").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = http(
        a,
        "GET",
        "/latest/meta-data/instance-id",
        &[(TOKEN, &short)],
        b"",
    )
    .await;
    assert_eq!(r.status, 401);

    // IMDS faults.
    http(
        a,
        "POST",
        "/_emulator/faults",
        &[],
        br#"{"provider":"imds","action":"/latest/api/token","kind":"throttle"}"#,
    )
    .await;
    assert_eq!(
        http(a, "PUT", "/latest/api/token", &[(TTL, "60")], b"")
            .await
            .status,
        429
    );
    token(a, "60").await;
    emu.stop();
}

#[tokio::test]
async fn control_api_holders_state_reset() {
    let emu = start().await;
    let a = emu.addr;

    let v = http(a, "GET", "/_emulator/holders", &[], b"").await.json();
    let holders = v["holders"].as_array().expect("holders");
    let ips: Vec<&str> = holders.iter().map(|h| h["ip"].as_str().unwrap()).collect();
    assert_eq!(ips, ["10.0.1.10", "10.0.1.20", "10.0.1.30", "10.0.1.100"]);
    assert_eq!(holders[3]["nic"], "eni-a");
    assert_eq!(holders[3]["instance"], "i-a");
    assert_eq!(holders[3]["primary"], false);
    assert_eq!(holders[3]["mac"], "02:00:00:00:00:0a");
    let g0 = v["generation"].as_u64().unwrap();

    let r = http(a, "GET", "/_emulator/holders?ip=bogus", &[], b"").await;
    assert_eq!(r.status, 400);
    let r = http(a, "GET", "/_emulator/holders?provider=azure", &[], b"").await;
    assert_eq!(r.json()["holders"], serde_json::json!([]));

    // A move bumps the generation once visible; reset restores the seed.
    http(
        a,
        "POST",
        "/_emulator/config",
        &[],
        br#"{"move_delay_ms": 50}"#,
    )
    .await;
    let r = ec2(
        a,
        &[
            ("Action", "AssignPrivateIpAddresses"),
            ("NetworkInterfaceId", "eni-c"),
            ("PrivateIpAddress.1", "10.0.1.100"),
            ("AllowReassignment", "true"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let v = http(a, "GET", "/_emulator/holders", &[], b"").await.json();
    assert!(v["generation"].as_u64().unwrap() > g0);
    assert_eq!(api_holder(a, "10.0.1.100").await.as_deref(), Some("eni-c"));
    let s = http(a, "GET", "/_emulator/state", &[], b"").await.json();
    assert_eq!(s["move_delay_ms"], 50);
    let eni_c = s["nics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "eni-c")
        .unwrap();
    assert_eq!(eni_c["version"], 2);

    http(a, "POST", "/_emulator/faults", &[], br#"{"kind":"error"}"#).await;
    let r = http(a, "POST", "/_emulator/reset", &[], b"").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(api_holder(a, "10.0.1.100").await.as_deref(), Some("eni-a"));
    let s = http(a, "GET", "/_emulator/state", &[], b"").await.json();
    assert_eq!(s["move_delay_ms"], 400);
    assert_eq!(s["faults"], serde_json::json!([]));

    // Reset with a new seed; a bad seed is refused and changes nothing.
    let new_seed = serde_json::json!({
        "subnets": [{"id": "subnet-9", "cidr": "192.168.9.0/24"}],
        "nics": [{"id": "eni-9", "instance": "i-9", "subnet": "subnet-9", "primary_ip": "192.168.9.9"}]
    });
    let r = http(
        a,
        "POST",
        "/_emulator/reset",
        &[],
        new_seed.to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(api_holder(a, "192.168.9.9").await.as_deref(), Some("eni-9"));
    let bad = br#"{"nics": [{"id": "eni-x", "subnet": "nope", "primary_ip": "1.2.3.4"}]}"#;
    let r = http(a, "POST", "/_emulator/reset", &[], bad).await;
    assert_eq!(r.status, 400);
    assert_eq!(api_holder(a, "192.168.9.9").await.as_deref(), Some("eni-9"));

    // Unknown endpoints and methods, bad config.
    assert_eq!(
        http(a, "GET", "/_emulator/nope", &[], b"").await.status,
        404
    );
    assert_eq!(
        http(a, "PUT", "/_emulator/holders", &[], b"").await.status,
        405
    );
    assert_eq!(
        http(a, "POST", "/_emulator/config", &[], b"{\"x\":1}")
            .await
            .status,
        400
    );
    assert_eq!(
        http(
            a,
            "POST",
            "/_emulator/config",
            &[],
            br#"{"move_delay_ms": 99999999}"#
        )
        .await
        .status,
        400
    );
    emu.stop();
}

/// A NIC deleted through the control API (its VM terminated): EC2 refuses it at once
/// (`InvalidNetworkInterfaceID.NotFound`, as for an ENI id that never existed), its addresses
/// are free, and the holder view follows after the move delay.
#[tokio::test]
async fn control_api_deletes_a_nic() {
    let emu = start().await;
    let a = emu.addr;
    http(
        a,
        "POST",
        "/_emulator/config",
        &[],
        br#"{"move_delay_ms": 50}"#,
    )
    .await;
    let r = http(
        a,
        "POST",
        "/_emulator/nics/delete",
        &[],
        br#"{"id": "eni-a"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["deleted"], "eni-a");
    let r = ec2(
        a,
        &[
            ("Action", "AssignPrivateIpAddresses"),
            ("NetworkInterfaceId", "eni-a"),
            ("PrivateIpAddress.1", "10.0.1.100"),
            ("AllowReassignment", "true"),
        ],
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.body.contains("InvalidNetworkInterfaceID.NotFound"),
        "{}",
        r.body
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(api_holder(a, "10.0.1.100").await, None);
    // Free: assignable without reassignment.
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
    let r = http(
        a,
        "POST",
        "/_emulator/nics/delete",
        &[],
        br#"{"id": "eni-a"}"#,
    )
    .await;
    assert_eq!(r.status, 404);
    let r = http(
        a,
        "POST",
        "/_emulator/nics/delete",
        &[],
        br#"{"nic": "eni-b"}"#,
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        http(a, "GET", "/_emulator/nics/delete", &[], b"")
            .await
            .status,
        405
    );
    emu.stop();
}

#[test]
fn seed_files_load_as_toml_and_json_and_are_checked() {
    let dir = std::env::temp_dir().join(format!("cer-cloud-emulator-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let toml_path = dir.join("seed.toml");
    std::fs::write(&toml_path, SEED).unwrap();
    let s = cer_cloud_emulator::Seed::load(&toml_path).unwrap();
    assert_eq!(s, seed());
    let json_path = dir.join("seed.json");
    std::fs::write(&json_path, serde_json::to_string(&s).unwrap()).unwrap();
    assert_eq!(cer_cloud_emulator::Seed::load(&json_path).unwrap(), s);

    for bad in [
        "nics = 3",
        "[[nics]]\nid = \"eni-a\"\nsubnet = \"s\"\nprimary_ip = \"10.0.0.1\"",
        "[[subnets]]\nid = \"s\"\ncidr = \"10.0.0.0/24\"\n[[nics]]\nid = \"eni-a\"\nsubnet = \"s\"\nprimary_ip = \"10.0.1.1\"",
        "[[subnets]]\nid = \"s\"\ncidr = \"10.0.0.0/40\"",
        "unknown_key = 1",
    ] {
        std::fs::write(&toml_path, bad).unwrap();
        assert!(cer_cloud_emulator::Seed::load(&toml_path).is_err(), "{bad}");
    }
    assert!(cer_cloud_emulator::Seed::load(&dir.join("missing.toml")).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn example_lab_seed_captures_one_pool_address_at_every_site() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/lab.toml");
    let mut seed = cer_cloud_emulator::Seed::load(&path).expect("the example seed loads");
    seed.move_delay_ms = 0;
    let emu = cer_cloud_emulator::start(seed, "127.0.0.1:0".parse().unwrap(), &[])
        .await
        .unwrap();
    let a = emu.addr;
    // 10.100.200.1 is owned at AWS: the Azure and OCI CER NICs capture it.
    let r = ec2(
        a,
        &[
            ("Action", "DescribeNetworkInterfaces"),
            ("Filter.1.Name", "addresses.private-ip-address"),
            ("Filter.1.Value.1", "10.100.200.1"),
        ],
    )
    .await;
    assert_eq!(tag_values(&r.body, "networkInterfaceId"), vec!["eni-0wl"]);
    let nic = "/subscriptions/sub-lab/resourceGroups/rg-lab/providers/Microsoft.Network/networkInterfaces/nic-cer";
    let path = format!("{nic}?api-version=2023-09-01");
    let mut body = http(a, "GET", &path, &[("Authorization", "Bearer t")], b"")
        .await
        .json();
    let subnet = body["properties"]["ipConfigurations"][0]["properties"]["subnet"].clone();
    body["properties"]["ipConfigurations"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "cer-10-100-200-1", "properties": {"privateIPAddress": "10.100.200.1", "subnet": subnet, "primary": false}}));
    let r = http(
        a,
        "PUT",
        &path,
        &[("Authorization", "Bearer t")],
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let sig =
        r#"Signature version="1",keyId="k",algorithm="rsa-sha256",headers="date",signature="s""#;
    let r = http(
        a,
        "POST",
        "/20160918/privateIps",
        &[("Authorization", sig)],
        br#"{"vnicId": "ocid1.vnic.oc1.eu-frankfurt-1.cer", "ipAddress": "10.100.200.1"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = http(a, "GET", "/_emulator/holders?ip=10.100.200.1", &[], b"")
        .await
        .json();
    let holders: Vec<&str> = v["holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["nic"].as_str().unwrap())
        .collect();
    assert_eq!(
        holders,
        ["eni-0wl", nic, "ocid1.vnic.oc1.eu-frankfurt-1.cer"]
    );
    emu.stop();
}

#[tokio::test]
async fn holder_long_poll_returns_when_the_move_becomes_visible() {
    let emu = start().await;
    let a = emu.addr;
    let g = http(a, "GET", "/_emulator/holders", &[], b"").await.json()["generation"]
        .as_u64()
        .unwrap();
    // Nothing changes: the poll times out with the same generation.
    let t = std::time::Instant::now();
    let v = http(
        a,
        "GET",
        &format!("/_emulator/holders?since={g}&wait_ms=100"),
        &[],
        b"",
    )
    .await
    .json();
    assert_eq!(v["generation"].as_u64(), Some(g));
    assert!(t.elapsed() >= Duration::from_millis(100));
    // A move (400 ms delay): the poll answers once it is visible, with the new holder.
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
    assert_eq!(r.status, 200);
    let t = std::time::Instant::now();
    let v = http(
        a,
        "GET",
        &format!("/_emulator/holders?since={g}&wait_ms=5000&ip=10.0.1.100"),
        &[],
        b"",
    )
    .await
    .json();
    let waited = t.elapsed();
    assert!(v["generation"].as_u64().unwrap() > g);
    assert_eq!(v["holders"][0]["nic"], "eni-b");
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_millis(2000),
        "{waited:?}"
    );
    for bad in ["since=x", "since=1&wait_ms=-1", "since=1&wait_ms=60001"] {
        let r = http(a, "GET", &format!("/_emulator/holders?{bad}"), &[], b"").await;
        assert_eq!(r.status, 400, "{bad}");
    }
    emu.stop();
}

/// The main listener's IMDS answers each caller for its own instance, told apart by the
/// caller's address (`imds_clients`, as the lab's cloud pairs use it: two CERs behind one
/// metadata address); an address it cannot map gets `imds_instance`, as before.
#[tokio::test]
async fn imds_answers_per_caller_address() {
    let mut seed = seed();
    seed.imds_clients
        .insert("127.0.0.2".parse().unwrap(), "i-b".to_string());
    let emu = cer_cloud_emulator::start(seed, "127.0.0.1:0".parse().unwrap(), &[])
        .await
        .expect("emulator starts");
    let a = emu.addr;
    let ask = |src: &'static str, path: &'static str| async move {
        let src: std::net::IpAddr = src.parse().unwrap();
        let t = http_from(src, a, "PUT", "/latest/api/token", &[(TTL, "60")], b"").await;
        assert_eq!(t.status, 200, "{}", t.body);
        let r = http_from(src, a, "GET", path, &[(TOKEN, t.body.as_str())], b"").await;
        assert_eq!(r.status, 200, "{src} {path}: {}", r.body);
        r.body
    };
    assert_eq!(
        ask("127.0.0.2", "/latest/meta-data/instance-id").await,
        "i-b"
    );
    assert_eq!(
        ask("127.0.0.2", "/latest/meta-data/mac").await,
        "02:00:00:00:00:0b"
    );
    assert_eq!(
        ask("127.0.0.2", "/latest/meta-data/network/interfaces/macs/").await,
        "02:00:00:00:00:0b/\n02:00:00:00:00:0c/"
    );
    assert_eq!(
        ask(
            "127.0.0.2",
            "/latest/meta-data/network/interfaces/macs/02:00:00:00:00:0b/interface-id"
        )
        .await,
        "eni-b"
    );
    // Unmapped callers: the seed's imds_instance.
    for src in ["127.0.0.1", "127.0.0.3"] {
        assert_eq!(ask(src, "/latest/meta-data/instance-id").await, "i-a");
        assert_eq!(
            ask(
                src,
                "/latest/meta-data/network/interfaces/macs/02:00:00:00:00:0a/interface-id"
            )
            .await,
            "eni-a"
        );
    }
    let st = http(a, "GET", "/_emulator/state", &[], b"").await.json();
    assert_eq!(st["imds_clients"]["127.0.0.2"], "i-b");
    emu.stop();
}
