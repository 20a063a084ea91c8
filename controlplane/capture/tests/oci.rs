//! The OCI capture client against the `cer-cloud-emulator` binary, with signature verification
//! on: observe, move / create / delete, etag races, fault classification, fencing, bad keys, and
//! the instance principal flow (IMDS identity + X.509 federation + session token).

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use cer_capture::oci::{OciAuth, OciConfig, OciProvider, Timing};
use cer_capture::{CaptureProvider, ErrorKind, Fence, Holding};
use common::*;
use serde_json::json;

const SUBNET: &str = "ocid1.subnet.oc1..s1";
const VNIC_R: &str = "ocid1.vnic.oc1..r";
const VNIC_A: &str = "ocid1.vnic.oc1..a";
const VNIC_B: &str = "ocid1.vnic.oc1..b";
const TENANCY: &str = "ocid1.tenancy.oc1..t";
const USER: &str = "ocid1.user.oc1..u";
const FP: &str = "11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00";

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn read(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap()
}

/// Our VNIC `r`, `a` holding .100 and .101, `b` idle; one API key; the instance principal.
fn start() -> Emulator {
    Emulator::start(&json!({
        "move_delay_ms": 200,
        "subnets": [{"id": SUBNET, "cidr": "10.2.0.0/24"}],
        "nics": [
            {"id": VNIC_R, "provider": "oci", "subnet": SUBNET, "primary_ip": "10.2.0.4"},
            {"id": VNIC_A, "provider": "oci", "subnet": SUBNET, "primary_ip": "10.2.0.10",
             "secondary_ips": ["10.2.0.100", "10.2.0.101"]},
            {"id": VNIC_B, "provider": "oci", "subnet": SUBNET, "primary_ip": "10.2.0.20"}
        ],
        "oci_api_keys": { format!("{TENANCY}/{USER}/{FP}"): read("api_key_public.pem") },
        "oci_instance_principal": {
            "tenancy": "ocid1.tenancy.oc1..emulatortenancy",
            "cert_pem": read("leaf_cert.pem"),
            "key_pem": read("leaf_key.pem"),
            "intermediate_pem": read("intermediate.pem")
        }
    }))
}

fn config(emu: &Emulator, vnic: &str, key: &str) -> OciConfig {
    OciConfig {
        vnic_id: vnic.to_string(),
        subnet_id: SUBNET.to_string(),
        endpoint: Some(emu.url()),
        region: None,
        write_budget: None,
        read_budget: None,
        max_secondary_ips: None,
        extra_vnic_ids: None,
        auth: OciAuth::ApiKey {
            tenancy: TENANCY.to_string(),
            user: USER.to_string(),
            fingerprint: FP.to_string(),
            key_file: fixture(key),
        },
    }
}

fn timing(attempts: u32) -> Timing {
    Timing {
        connect: Duration::from_secs(2),
        request: Duration::from_secs(2),
        attempts,
    }
}

fn provider_for(emu: &Emulator, vnic: &str) -> OciProvider {
    OciProvider::with_timing(&config(emu, vnic, "api_key.pem"), timing(3)).unwrap()
}

/// VNICs holding `a` in the target view.
async fn holders(emu: &Emulator, a: &str) -> Vec<String> {
    emu.target_holders(a)
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}

#[tokio::test]
async fn observe_nobody_elsewhere_ours() {
    let emu = start();
    let p = provider_for(&emu, VNIC_R);
    assert_eq!(p.name(), "oci");
    assert!(p.describe().contains(VNIC_R));
    assert_eq!(
        within(10, p.observe(ip("10.2.0.100"))).await.unwrap(),
        Holding::Elsewhere(VNIC_A.to_string())
    );
    assert_eq!(
        within(10, p.observe(ip("10.2.0.150"))).await.unwrap(),
        Holding::Nobody
    );
    assert_eq!(
        within(10, p.observe(ip("10.2.0.4"))).await.unwrap(),
        Holding::Ours
    );
}

#[tokio::test]
async fn capture_moves_is_idempotent_and_releases() {
    let emu = start();
    let p = provider_for(&emu, VNIC_R);
    within(10, p.capture(ip("10.2.0.100"), &Fence::open()))
        .await
        .unwrap();
    assert_eq!(holders(&emu, "10.2.0.100").await, [VNIC_R]);
    assert_eq!(holders(&emu, "10.2.0.101").await, [VNIC_A]);
    assert_eq!(p.observe(ip("10.2.0.100")).await.unwrap(), Holding::Ours);

    emu.settle().await;
    let before = emu.target().await;
    within(10, p.capture(ip("10.2.0.100"), &Fence::open()))
        .await
        .unwrap();
    assert_eq!(emu.target().await, before, "idempotent capture");

    within(10, p.release(ip("10.2.0.100"), &Fence::open()))
        .await
        .unwrap();
    assert!(holders(&emu, "10.2.0.100").await.is_empty());
    within(10, p.release(ip("10.2.0.100"), &Fence::open()))
        .await
        .unwrap();
    assert_eq!(p.observe(ip("10.2.0.100")).await.unwrap(), Holding::Nobody);
}

#[tokio::test]
async fn create_when_nobody_holds_it_and_release_never_touches_other_vnics() {
    let emu = start();
    let p = provider_for(&emu, VNIC_R);
    within(10, p.capture(ip("10.2.0.150"), &Fence::open()))
        .await
        .unwrap();
    assert_eq!(holders(&emu, "10.2.0.150").await, [VNIC_R]);
    assert_eq!(p.held().await.unwrap(), Some(vec![ip("10.2.0.150")]));

    emu.settle().await;
    let before = emu.target().await;
    within(10, p.release(ip("10.2.0.101"), &Fence::open()))
        .await
        .unwrap();
    assert_eq!(emu.target().await, before, "another VNIC's address stays");
    let e = p.release(ip("10.2.0.4"), &Fence::open()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Config, "{e}");
    let e = p
        .capture(ip("10.2.0.10"), &Fence::open())
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Config, "{e}");
    assert!(e.message.contains("primary"), "{e}");
    assert_eq!(emu.target().await, before);
}

#[tokio::test]
async fn etag_race_is_retried_or_reported_transient() {
    let emu = start();
    let ours = provider_for(&emu, VNIC_R);
    let once = OciProvider::with_timing(&config(&emu, VNIC_R, "api_key.pem"), timing(1)).unwrap();
    let a = provider_for(&emu, VNIC_A);
    // Our UpdatePrivateIp of .100 is held 600 ms; meanwhile VNIC a releases .101, which changes
    // .100's etag: the update arrives with a stale if-match.
    let delay =
        json!({"provider": "oci", "action": "UpdatePrivateIp", "kind": "delay", "delay_ms": 600});
    let open = Fence::open();
    emu.fault(delay.clone()).await;
    let (r, _) = tokio::join!(once.capture(ip("10.2.0.100"), &open), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        a.release(ip("10.2.0.101"), &Fence::open()).await.unwrap();
    });
    let e = r.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transient, "{e}");
    assert!(e.message.contains("NoEtagMatch"), "{e}");
    assert_eq!(holders(&emu, "10.2.0.100").await, [VNIC_A]);

    // With retries, the second attempt re-reads the etag and succeeds.
    emu.fault(delay).await;
    let b = provider_for(&emu, VNIC_B);
    let (r, _) = tokio::join!(ours.capture(ip("10.2.0.100"), &open), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        b.capture(ip("10.2.0.160"), &Fence::open()).await.unwrap();
        a.capture(ip("10.2.0.161"), &Fence::open()).await.unwrap();
    });
    r.unwrap();
    assert_eq!(holders(&emu, "10.2.0.100").await, [VNIC_R]);
}

#[tokio::test]
async fn faults_are_classified_and_never_hang() {
    let emu = start();
    let p = provider_for(&emu, VNIC_R);
    emu.fault(json!({"provider": "oci", "action": "ListPrivateIps", "kind": "throttle"}))
        .await;
    let e = within(10, p.observe(ip("10.2.0.100"))).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Throttled, "{e}");
    assert!(e.message.contains("TooManyRequests"), "{e}");

    emu.fault(json!({"provider": "oci", "action": "UpdatePrivateIp", "kind": "error"}))
        .await;
    let e = within(10, p.capture(ip("10.2.0.100"), &Fence::open()))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transient, "{e}");
    assert!(e.message.contains("InternalServerError"), "{e}");
    assert_eq!(holders(&emu, "10.2.0.100").await, [VNIC_A]);

    emu.fault(json!({"provider": "oci", "action": "CreatePrivateIp", "kind": "timeout", "delay_ms": 30000}))
        .await;
    let t0 = Instant::now();
    let e = within(10, p.capture(ip("10.2.0.150"), &Fence::open()))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transient, "{e}");
    assert!(e.message.contains("timed out"), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(8));
}

#[tokio::test]
async fn closed_fence_changes_nothing() {
    let emu = start();
    let p = provider_for(&emu, VNIC_R);
    let closed = || false;
    let fence = Fence::new(closed);
    let before = emu.target().await;
    for a in ["10.2.0.100", "10.2.0.150"] {
        let e = within(10, p.capture(ip(a), &fence)).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Fenced, "{a}: {e}");
    }
    assert_eq!(emu.target().await, before);
    p.capture(ip("10.2.0.150"), &Fence::open()).await.unwrap();
    let before = emu.target().await;
    let e = within(10, p.release(ip("10.2.0.150"), &fence))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Fenced, "{e}");
    assert_eq!(emu.target().await, before);
}

#[tokio::test]
async fn signatures_are_verified_and_bad_keys_are_config_errors() {
    let emu = start();
    // The right keyId with the wrong private key: 401 NotAuthenticated.
    let wrong =
        OciProvider::with_timing(&config(&emu, VNIC_R, "wrong_key.pem"), timing(3)).unwrap();
    let e = within(10, wrong.observe(ip("10.2.0.100")))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Config, "{e}");
    assert!(
        e.message.contains("401") && e.message.contains("NotAuthenticated"),
        "{e}"
    );
    // An unknown keyId.
    let mut cfg = config(&emu, VNIC_R, "api_key.pem");
    if let OciAuth::ApiKey { user, .. } = &mut cfg.auth {
        *user = "ocid1.user.oc1..other".into();
    }
    let other = OciProvider::with_timing(&cfg, timing(3)).unwrap();
    let e = other.observe(ip("10.2.0.100")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Config, "{e}");
    // Missing and unparsable key files fail at construction.
    let e = OciProvider::new(&config(&emu, VNIC_R, "no_such_key.pem"))
        .err()
        .unwrap();
    assert_eq!(e.kind, ErrorKind::Config, "{e}");
    let e = OciProvider::new(&config(&emu, VNIC_R, "leaf_cert.pem"))
        .err()
        .unwrap();
    assert_eq!(e.kind, ErrorKind::Config, "{e}");
    // A signed body whose bytes were changed would not verify either: the good key works for
    // GET, POST, PUT and DELETE.
    let p = provider_for(&emu, VNIC_R);
    p.capture(ip("10.2.0.100"), &Fence::open()).await.unwrap();
    p.capture(ip("10.2.0.150"), &Fence::open()).await.unwrap();
    p.release(ip("10.2.0.150"), &Fence::open()).await.unwrap();
}

#[tokio::test]
async fn instance_principal_federates_and_signs_with_the_session_token() {
    let emu = start();
    let cfg = OciConfig {
        vnic_id: VNIC_R.to_string(),
        subnet_id: SUBNET.to_string(),
        endpoint: Some(emu.url()),
        region: Some("eu-frankfurt-1".into()),
        write_budget: None,
        read_budget: None,
        max_secondary_ips: None,
        extra_vnic_ids: None,
        auth: OciAuth::InstancePrincipal {
            imds_endpoint: Some(emu.url()),
            auth_endpoint: Some(emu.url()),
        },
    };
    let p = OciProvider::with_timing(&cfg, timing(3)).unwrap();
    within(60, p.capture(ip("10.2.0.100"), &Fence::open()))
        .await
        .unwrap();
    assert_eq!(holders(&emu, "10.2.0.100").await, [VNIC_R]);
    within(10, p.release(ip("10.2.0.100"), &Fence::open()))
        .await
        .unwrap();
    assert!(holders(&emu, "10.2.0.100").await.is_empty());

    // The federation endpoint failing is reported, not hung on.
    emu.fault(json!({"provider": "oci", "action": "X509Federation", "kind": "error"}))
        .await;
    let fresh = OciProvider::with_timing(&cfg, timing(3)).unwrap();
    let e = within(60, fresh.observe(ip("10.2.0.100")))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transient, "{e}");
    assert!(e.step.contains("federation"), "{e}");
}

#[test]
fn config_is_validated_with_field_names() {
    let parsed: OciConfig = serde_json::from_value(json!({
        "vnic_id": VNIC_R, "subnet_id": SUBNET, "region": "eu-frankfurt-1",
        "auth": {"type": "instance_principal"}
    }))
    .unwrap();
    parsed.validate().unwrap();
    let parsed: OciConfig = serde_json::from_value(json!({
        "vnic_id": VNIC_R, "subnet_id": SUBNET, "endpoint": "http://127.0.0.1:1",
        "auth": {"type": "api_key", "tenancy": TENANCY, "user": USER, "fingerprint": FP, "key_file": "/k.pem"}
    }))
    .unwrap();
    parsed.validate().unwrap();
    assert!(serde_json::from_value::<OciConfig>(json!({
        "vnic_id": VNIC_R, "subnet_id": SUBNET, "region": "r",
        "auth": {"type": "instance_principal", "bogus": 1}
    }))
    .is_err());
    let mut bad = parsed.clone();
    bad.vnic_id = "vnic-1".into();
    let e = bad.validate().unwrap_err();
    assert!(e.contains("vnic_id") && e.contains("vnic-1"), "{e}");
    let mut bad = parsed.clone();
    bad.endpoint = None;
    assert!(bad.validate().unwrap_err().contains("region"));
    let mut bad = parsed;
    if let OciAuth::ApiKey { fingerprint, .. } = &mut bad.auth {
        *fingerprint = "xx".into();
    }
    assert!(bad.validate().unwrap_err().contains("fingerprint"));
}

/// A release of an address captured from another VNIC hands it back: one UpdatePrivateIp to that
/// VNIC (the private IP object moves, its OCID stays), idempotent, never taken from a third VNIC,
/// created on the holder when it is on nobody, fenced.
#[tokio::test]
async fn hand_back_moves_the_private_ip_to_the_vnic_it_came_from() {
    let emu = start();
    let p = provider_for(&emu, VNIC_R);
    within(10, p.capture(ip("10.2.0.100"), &Fence::open()))
        .await
        .unwrap();
    assert_eq!(holders(&emu, "10.2.0.100").await, [VNIC_R]);
    within(10, p.hand_back(ip("10.2.0.100"), VNIC_A, &Fence::open()))
        .await
        .unwrap();
    assert_eq!(holders(&emu, "10.2.0.100").await, [VNIC_A]);
    assert_eq!(
        p.observe(ip("10.2.0.100")).await.unwrap(),
        Holding::Elsewhere(VNIC_A.to_string())
    );

    emu.settle().await;
    let before = emu.target().await;
    within(10, p.hand_back(ip("10.2.0.100"), VNIC_A, &Fence::open()))
        .await
        .unwrap();
    within(10, p.hand_back(ip("10.2.0.101"), VNIC_B, &Fence::open()))
        .await
        .unwrap();
    assert_eq!(
        emu.target().await,
        before,
        "idempotent; a third VNIC's address stays"
    );

    within(10, p.hand_back(ip("10.2.0.150"), VNIC_B, &Fence::open()))
        .await
        .unwrap();
    assert_eq!(holders(&emu, "10.2.0.150").await, [VNIC_B]);

    let e = p
        .hand_back(ip("10.2.0.150"), VNIC_R, &Fence::open())
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Config, "{e}");
    assert!(p.is_own_nic(VNIC_R) && !p.is_own_nic(VNIC_A));

    within(10, p.capture(ip("10.2.0.150"), &Fence::open()))
        .await
        .unwrap();
    let closed = || false;
    let before = emu.target().await;
    let e = within(
        10,
        p.hand_back(ip("10.2.0.150"), VNIC_B, &Fence::new(closed)),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Fenced, "{e}");
    assert_eq!(e.step, format!("UpdatePrivateIp to {VNIC_B}"));
    assert_eq!(emu.target().await, before);
}

/// The VNIC an address came from was deleted: UpdatePrivateIp is refused (404), reported as
/// HolderGone, and the private IP stays on our VNIC; from nobody, CreatePrivateIp is refused the
/// same way and nothing is created.
#[tokio::test]
async fn hand_back_to_a_deleted_vnic_is_holder_gone_and_keeps_the_address() {
    let emu = start();
    let p = provider_for(&emu, VNIC_R);
    within(10, p.capture(ip("10.2.0.100"), &Fence::open()))
        .await
        .unwrap();
    emu.delete_nic(VNIC_A).await;
    let e = within(10, p.hand_back(ip("10.2.0.100"), VNIC_A, &Fence::open()))
        .await
        .unwrap_err();
    eprintln!("holder gone: {e}");
    assert_eq!(e.kind, ErrorKind::HolderGone, "{e}");
    assert!(e.message.contains(VNIC_A), "{e}");
    assert_eq!(holders(&emu, "10.2.0.100").await, [VNIC_R]);
    assert_eq!(p.observe(ip("10.2.0.100")).await.unwrap(), Holding::Ours);

    let e = within(10, p.hand_back(ip("10.2.0.150"), VNIC_A, &Fence::open()))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::HolderGone, "{e}");
    assert!(holders(&emu, "10.2.0.150").await.is_empty());
}

/// OCI answers 404 `NotAuthorizedOrNotFound` also for a VNIC that exists but this principal may
/// not use: that VNIC is still listed in our subnet, so the refusal is a Config error naming the
/// permission, not a gone holder (which would release the address to nobody).
#[tokio::test]
async fn hand_back_refused_for_an_existing_vnic_is_config_not_holder_gone() {
    let emu = start();
    let p = provider_for(&emu, VNIC_R);
    within(10, p.capture(ip("10.2.0.100"), &Fence::open()))
        .await
        .unwrap();
    emu.fault(json!({"provider": "oci", "action": "UpdatePrivateIp", "kind": "denied"}))
        .await;
    let e = within(10, p.hand_back(ip("10.2.0.100"), VNIC_A, &Fence::open()))
        .await
        .unwrap_err();
    eprintln!("denied: {e}");
    assert_eq!(e.kind, ErrorKind::Config, "{e}");
    assert!(
        e.message.contains("NotAuthorizedOrNotFound") && e.message.contains("exists"),
        "{e}"
    );
    assert_eq!(holders(&emu, "10.2.0.100").await, [VNIC_R]);
    // The same from nobody (CreatePrivateIp).
    emu.fault(json!({"provider": "oci", "action": "CreatePrivateIp", "kind": "denied"}))
        .await;
    let e = within(10, p.hand_back(ip("10.2.0.150"), VNIC_B, &Fence::open()))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Config, "{e}");
    assert!(holders(&emu, "10.2.0.150").await.is_empty());
}

/// Two VNICs of ours at a quota of 2 secondary IPs: 6 captures (4 moved from `a`'s VNIC, 2
/// created from nobody) fill `r` then `b`; the 2 that fit nowhere are refused as `Quota`
/// without a call and stay where they were; a single capture also goes to the VNIC with room.
#[tokio::test]
async fn captures_spread_over_our_vnics_and_the_rest_stays_where_it_was() {
    let emu = Emulator::start(&json!({
        "move_delay_ms": 100,
        "oci_max_secondary_ips": 2,
        "subnets": [{"id": SUBNET, "cidr": "10.2.0.0/24"}],
        "nics": [
            {"id": VNIC_R, "provider": "oci", "subnet": SUBNET, "primary_ip": "10.2.0.4"},
            {"id": VNIC_B, "provider": "oci", "subnet": SUBNET, "primary_ip": "10.2.0.20"},
            {"id": VNIC_A, "provider": "oci", "subnet": SUBNET, "primary_ip": "10.2.0.10",
             "secondary_ips": ["10.2.0.100", "10.2.0.101"]},
            {"id": "ocid1.vnic.oc1..c", "provider": "oci", "subnet": SUBNET, "primary_ip": "10.2.0.11",
             "secondary_ips": ["10.2.0.102", "10.2.0.103"]}
        ],
        "oci_api_keys": { format!("{TENANCY}/{USER}/{FP}"): read("api_key_public.pem") }
    }));
    let cfg = OciConfig {
        max_secondary_ips: Some(2),
        extra_vnic_ids: Some(vec![VNIC_B.to_string()]),
        ..config(&emu, VNIC_R, "api_key.pem")
    };
    let p = OciProvider::with_timing(&cfg, timing(3)).unwrap();
    assert!(p.is_own_nic(VNIC_B));
    let items: Vec<cer_capture::Item> = (100..106)
        .map(|i| cer_capture::Item {
            ip: Ipv4Addr::new(10, 2, 0, i),
            fence: Fence::open(),
        })
        .collect();
    let out = within(30, p.capture_many(&items)).await;
    let ok: Vec<usize> = (0..6).filter(|&i| out[i].is_ok()).collect();
    assert_eq!(ok, vec![0, 1, 2, 3], "{out:?}");
    for r in &out[4..] {
        assert_eq!(r.as_ref().unwrap_err().kind, ErrorKind::Quota, "{r:?}");
    }
    assert_eq!(holders(&emu, "10.2.0.100").await, vec![VNIC_R.to_string()]);
    assert_eq!(holders(&emu, "10.2.0.101").await, vec![VNIC_R.to_string()]);
    assert_eq!(holders(&emu, "10.2.0.102").await, vec![VNIC_B.to_string()]);
    assert_eq!(holders(&emu, "10.2.0.103").await, vec![VNIC_B.to_string()]);
    assert!(
        holders(&emu, "10.2.0.104").await.is_empty(),
        "never created"
    );
    assert_eq!(
        within(10, p.observe(ip("10.2.0.102"))).await.unwrap(),
        Holding::Ours
    );
    // A release from `b` makes room there: a single capture goes to it.
    within(10, p.release(ip("10.2.0.103"), &Fence::open()))
        .await
        .unwrap();
    within(10, p.capture(ip("10.2.0.104"), &Fence::open()))
        .await
        .unwrap();
    assert_eq!(holders(&emu, "10.2.0.104").await, vec![VNIC_B.to_string()]);
    let held = within(10, p.held()).await.unwrap().unwrap();
    assert_eq!(held.len(), 4, "{held:?}");
}

/// The host clock ten minutes behind OCI's (the emulator's clock ahead): the first request is
/// refused (401, date more than 5 minutes off), the client learns the skew from the refusal's
/// Date header and signs again; captures work, with an API key and with an instance principal
/// (whose federation request is date-checked too), and the skew is shown. A clock that jumps
/// the other way is corrected again.
#[tokio::test]
async fn a_host_clock_ten_minutes_off_is_corrected_from_the_date_header() {
    let emu = start();
    emu.config(json!({"clock_offset_secs": 600})).await;
    let p = provider_for(&emu, VNIC_R);
    assert!(!p.describe().contains("skew"), "{}", p.describe());
    within(20, p.capture(ip("10.2.0.100"), &Fence::open()))
        .await
        .unwrap();
    assert_eq!(holders(&emu, "10.2.0.100").await, [VNIC_R]);
    assert_eq!(
        within(10, p.observe(ip("10.2.0.100"))).await.unwrap(),
        Holding::Ours
    );
    let d = p.describe();
    assert!(d.contains("clock skew") && d.contains("behind"), "{d}");
    // The emulator's clock jumps to 15 minutes behind the host's.
    emu.config(json!({"clock_offset_secs": -900})).await;
    within(20, p.release(ip("10.2.0.100"), &Fence::open()))
        .await
        .unwrap();
    assert!(holders(&emu, "10.2.0.100").await.is_empty());
    assert!(p.describe().contains("ahead of"), "{}", p.describe());

    // Instance principal: federation and requests on the API's clock.
    emu.config(json!({"clock_offset_secs": 600})).await;
    let cfg = OciConfig {
        auth: OciAuth::InstancePrincipal {
            imds_endpoint: Some(emu.url()),
            auth_endpoint: Some(emu.url()),
        },
        ..config(&emu, VNIC_R, "api_key.pem")
    };
    let ip_p = OciProvider::with_timing(&cfg, timing(3)).unwrap();
    within(60, ip_p.capture(ip("10.2.0.101"), &Fence::open()))
        .await
        .unwrap();
    assert_eq!(holders(&emu, "10.2.0.101").await, [VNIC_R]);

    // A refusal that is not about the date (a wrong key) is not re-sent forever, and while the
    // clock is off its error names the skew.
    let bad = OciProvider::with_timing(&config(&emu, VNIC_R, "wrong_key.pem"), timing(3)).unwrap();
    let e = within(10, bad.observe(ip("10.2.0.101"))).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Config, "{e}");
    assert!(e.message.contains("401"), "{e}");
    assert!(e.message.contains("clock skew"), "{e}");
}
