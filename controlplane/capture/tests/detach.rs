//! A NIC of this router detached from its instance while captures are in flight, through the
//! reconciler and the Azure and OCI clients against the `cer-cloud-emulator` binary: one of two
//! NICs detached: every /32 ends confirmed on the other; the only NIC detached: a clear error
//! per /32 until it is attached again (Azure) or captured onto what is left (OCI).

mod common;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use cer_capture::azure::{AzureConfig, AzureProvider, Timing};
use cer_capture::reconciler::{IpStatus, Phase};
use cer_capture::{Desired, ErrorKind, Intent, Reconciler, ReconcilerConfig};
use common::*;
use serde_json::json;

const RG: &str = "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.Network";
const VM: &str =
    "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.Compute/virtualMachines/vm-r";
const VM_A: &str =
    "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.Compute/virtualMachines/vm-a";

fn nic(name: &str) -> String {
    format!("{RG}/networkInterfaces/{name}")
}

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 1, 0, last)
}

/// VM `vm-r`: `nic-m` (primary, never captures), `nic-r` and `nic-s` (ours); a workload NIC
/// `nic-a` holding .100-.119.
fn start_azure() -> Emulator {
    let subnet = format!("{RG}/virtualNetworks/vnet-1/subnets/default");
    let workload: Vec<String> = (100..120).map(|i| format!("10.1.0.{i}")).collect();
    Emulator::start(&json!({
        "move_delay_ms": 200,
        "subnets": [{"id": subnet, "cidr": "10.1.0.0/24", "vpc": "vnet-1"}],
        "nics": [
            {"id": nic("nic-m"), "provider": "azure", "instance": VM, "subnet": subnet,
             "primary_ip": "10.1.0.3", "device_index": 0},
            {"id": nic("nic-r"), "provider": "azure", "instance": VM, "subnet": subnet,
             "primary_ip": "10.1.0.4", "device_index": 1},
            {"id": nic("nic-s"), "provider": "azure", "instance": VM, "subnet": subnet,
             "primary_ip": "10.1.0.5", "device_index": 2},
            {"id": nic("nic-a"), "provider": "azure", "instance": VM_A, "subnet": subnet,
             "primary_ip": "10.1.0.6", "secondary_ips": workload}
        ]
    }))
}

fn azure(emu: &Emulator, extra: &[&str]) -> AzureProvider {
    let cfg = AzureConfig {
        nic_id: nic("nic-r"),
        arm_endpoint: Some(emu.url()),
        imds_endpoint: Some(emu.url()),
        client_id: None,
        api_version: None,
        max_ip_configs: None,
        extra_nic_ids: Some(extra.iter().map(|n| nic(n)).collect()),
        write_budget: None,
        read_budget: None,
    };
    let timing = Timing {
        connect: Duration::from_secs(2),
        request: Duration::from_secs(2),
        operation: Duration::from_secs(10),
        attempts: 4,
        max_wait: Duration::from_secs(1),
    };
    AzureProvider::with_timing(&cfg, timing).unwrap()
}

fn reconciler(pool: Ipv4Addr) -> Reconciler {
    Reconciler::new(ReconcilerConfig {
        backoff_base: Duration::from_millis(100),
        backoff_max: Duration::from_millis(1500),
        throttle_base: Duration::from_millis(200),
        confirm_timeout: Duration::from_secs(4),
        confirm_interval: Duration::from_millis(50),
        call_timeout: Duration::from_secs(15),
        resync: Duration::from_secs(3600),
        pool: vec![(pool, 24)],
        ..Default::default()
    })
}

fn capture(r: &Reconciler, ips: impl IntoIterator<Item = Ipv4Addr>) {
    for a in ips {
        r.set(
            a,
            Intent {
                desired: Desired::Capture,
                signature: 9,
            },
        );
    }
}

/// Polls `f` every 100 ms for at most `secs`.
async fn eventually<F, Fut>(secs: u64, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if f().await {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every address of `ips` confirmed "ours" and held by `nic_id` (target view).
async fn all_on(emu: &Emulator, r: &Reconciler, ips: &[Ipv4Addr], nic_id: &str, secs: u64) -> bool {
    eventually(secs, || async {
        for a in ips {
            let ok = r.ip_status(*a).is_some_and(|s| {
                s.phase == Phase::Confirmed && s.observed.as_deref() == Some("ours")
            });
            if !ok {
                return false;
            }
            let h = emu.target_holders(&a.to_string()).await;
            if h.len() != 1 || h[0].0 != nic_id {
                return false;
            }
        }
        true
    })
    .await
}

async fn detach(emu: &Emulator, id: &str) -> serde_json::Value {
    emu.post("/_emulator/nics/detach", json!({ "id": id }))
        .await
}

async fn attach(emu: &Emulator, id: &str) -> serde_json::Value {
    emu.post("/_emulator/nics/attach", json!({ "id": id }))
        .await
}

#[tokio::test]
async fn azure_one_of_two_nics_detached_with_captures_in_flight_ends_on_the_other() {
    let emu = start_azure();
    let r = reconciler(ip(0));
    let first: Vec<Ipv4Addr> = (100..105).map(ip).collect();
    let more: Vec<Ipv4Addr> = (105..107).map(ip).collect();
    r.start(Arc::new(azure(&emu, &["nic-s"])));
    r.activate();
    capture(&r, first.clone());
    assert!(
        all_on(&emu, &r, &first, &nic("nic-r"), 20).await,
        "{:#?}",
        r.status().ips
    );

    // Two more: their PUTs wait in the emulator while nic-r is detached.
    emu.fault(
        json!({"provider": "azure", "action": "PutNetworkInterface", "kind": "delay",
                     "delay_ms": 400, "count": 2}),
    )
    .await;
    capture(&r, more.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let d = detach(&emu, &nic("nic-r")).await;
    assert_eq!(d["instance"], VM);
    r.resync();
    let all: Vec<Ipv4Addr> = first.iter().chain(&more).copied().collect();
    assert!(
        all_on(&emu, &r, &all, &nic("nic-s"), 30).await,
        "{:#?}",
        r.status().ips
    );
    assert!(r.status().provider_detail.contains("nic-r"));
    // The workload's other addresses stayed where they were.
    assert_eq!(emu.target_holders("10.1.0.107").await[0].0, nic("nic-a"));
}

fn detached_error(s: &IpStatus, what: &str) -> bool {
    s.phase == Phase::Backoff
        && s.last_error_kind == Some(ErrorKind::Config)
        && s.last_error
            .as_deref()
            .is_some_and(|e| e.contains(what) && (e.contains("attach") || e.contains("configure")))
}

#[tokio::test]
async fn azure_the_only_nic_detached_is_a_clear_error_until_attached_again() {
    let emu = start_azure();
    let r = reconciler(ip(0));
    let held: Vec<Ipv4Addr> = (100..102).map(ip).collect();
    r.start(Arc::new(azure(&emu, &[])));
    r.activate();
    capture(&r, held.clone());
    assert!(all_on(&emu, &r, &held, &nic("nic-r"), 20).await);
    detach(&emu, &nic("nic-r")).await;
    r.resync();
    capture(&r, [ip(102)]);
    let what = format!("NIC {} is detached from VM {VM}", nic("nic-r"));
    let affected: Vec<Ipv4Addr> = (100..103).map(ip).collect();
    assert!(
        eventually(10, || async {
            affected
                .iter()
                .all(|a| r.ip_status(*a).is_some_and(|s| detached_error(&s, &what)))
        })
        .await,
        "{:#?}",
        r.status().ips
    );
    let s = r.ip_status(ip(100)).unwrap();
    assert!(
        s.observed
            .as_deref()
            .is_some_and(|o| o.starts_with("detached: ")),
        "{s:?}"
    );
    // Slow retries, and nothing moved: the held ones wait on nic-r, the new one on nic-a.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s = r.ip_status(ip(100)).unwrap();
    assert!((1..=6).contains(&s.attempts), "{s:?}");
    assert_eq!(emu.target_holders("10.1.0.100").await[0].0, nic("nic-r"));
    assert_eq!(emu.target_holders("10.1.0.102").await[0].0, nic("nic-a"));

    attach(&emu, &nic("nic-r")).await;
    assert!(
        all_on(&emu, &r, &affected, &nic("nic-r"), 15).await,
        "{:#?}",
        r.status().ips
    );
}

const SUBNET: &str = "ocid1.subnet.oc1..s1";
const VNIC_R: &str = "ocid1.vnic.oc1..r";
const VNIC_S: &str = "ocid1.vnic.oc1..s";
const VNIC_A: &str = "ocid1.vnic.oc1..a";

fn oip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 2, 0, last)
}

/// Our VNICs `r` and `s`, a workload VNIC `a` holding .100-.119; signatures verified.
fn start_oci() -> Emulator {
    let workload: Vec<String> = (100..120).map(|i| format!("10.2.0.{i}")).collect();
    let key = std::fs::read_to_string(fixture("api_key_public.pem")).unwrap();
    Emulator::start(&json!({
        "move_delay_ms": 200,
        "subnets": [{"id": SUBNET, "cidr": "10.2.0.0/24"}],
        "nics": [
            {"id": VNIC_R, "provider": "oci", "instance": "ocid1.instance.oc1..r", "subnet": SUBNET, "primary_ip": "10.2.0.4"},
            {"id": VNIC_S, "provider": "oci", "instance": "ocid1.instance.oc1..r", "subnet": SUBNET, "primary_ip": "10.2.0.5"},
            {"id": VNIC_A, "provider": "oci", "instance": "ocid1.instance.oc1..a", "subnet": SUBNET, "primary_ip": "10.2.0.10",
             "secondary_ips": workload}
        ],
        "oci_api_keys": { "ocid1.tenancy.oc1..t/ocid1.user.oc1..u/11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00": key }
    }))
}

fn oci(emu: &Emulator, extra: &[&str]) -> cer_capture::oci::OciProvider {
    let cfg = cer_capture::oci::OciConfig {
        vnic_id: VNIC_R.to_string(),
        subnet_id: SUBNET.to_string(),
        endpoint: Some(emu.url()),
        region: None,
        write_budget: None,
        read_budget: None,
        max_secondary_ips: None,
        extra_vnic_ids: Some(extra.iter().map(|v| v.to_string()).collect()),
        auth: cer_capture::oci::OciAuth::ApiKey {
            tenancy: "ocid1.tenancy.oc1..t".into(),
            user: "ocid1.user.oc1..u".into(),
            fingerprint: "11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00".into(),
            key_file: fixture("api_key.pem"),
        },
    };
    let timing = cer_capture::oci::Timing {
        connect: Duration::from_secs(2),
        request: Duration::from_secs(2),
        attempts: 3,
    };
    cer_capture::oci::OciProvider::with_timing(&cfg, timing).unwrap()
}

/// OCI deletes a secondary VNIC when it is detached, with its private IPs: the /32s it held
/// (and those moving onto it) are captured again, from nobody, onto the other VNIC.
#[tokio::test]
async fn oci_one_of_two_vnics_detached_with_captures_in_flight_ends_on_the_other() {
    let emu = start_oci();
    let r = reconciler(oip(0));
    let first: Vec<Ipv4Addr> = (100..104).map(oip).collect();
    let more: Vec<Ipv4Addr> = (104..106).map(oip).collect();
    r.start(Arc::new(oci(&emu, &[VNIC_S])));
    r.activate();
    capture(&r, first.clone());
    assert!(
        all_on(&emu, &r, &first, VNIC_R, 20).await,
        "{:#?}",
        r.status().ips
    );

    emu.fault(
        json!({"provider": "oci", "action": "UpdatePrivateIp", "kind": "delay",
                     "delay_ms": 400, "count": 2}),
    )
    .await;
    capture(&r, more.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let d = detach(&emu, VNIC_R).await;
    assert_eq!(d["deleted"], true);
    r.resync();
    let all: Vec<Ipv4Addr> = first.iter().chain(&more).copied().collect();
    assert!(
        all_on(&emu, &r, &all, VNIC_S, 30).await,
        "{:#?}",
        r.status().ips
    );
    assert_eq!(emu.target_holders("10.2.0.106").await[0].0, VNIC_A);
}

/// The only VNIC detached (so deleted): every /32 shows that it cannot be captured and why,
/// retried slowly, never dropped.
#[tokio::test]
async fn oci_the_only_vnic_detached_is_a_clear_error() {
    let emu = start_oci();
    let r = reconciler(oip(0));
    let held: Vec<Ipv4Addr> = (100..102).map(oip).collect();
    r.start(Arc::new(oci(&emu, &[])));
    r.activate();
    capture(&r, held.clone());
    assert!(all_on(&emu, &r, &held, VNIC_R, 20).await);
    detach(&emu, VNIC_R).await;
    r.resync();
    capture(&r, [oip(102)]);
    let what = format!("VNIC {VNIC_R} no longer exists");
    let affected: Vec<Ipv4Addr> = (100..103).map(oip).collect();
    assert!(
        eventually(15, || async {
            affected
                .iter()
                .all(|a| r.ip_status(*a).is_some_and(|s| detached_error(&s, &what)))
        })
        .await,
        "{:#?}",
        r.status().ips
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s = r.ip_status(oip(100)).unwrap();
    assert!((1..=6).contains(&s.attempts), "{s:?}");
    assert_eq!(s.desired, Desired::Capture);
    // The workload's address was never taken.
    assert_eq!(emu.target_holders("10.2.0.102").await[0].0, VNIC_A);
}
