//! The Azure capture client against the `cer-cloud-emulator` binary: observe, the two-step move
//! with long-running operations, release, fault classification, and fencing (before any call and
//! between the two steps).

mod common;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use cer_capture::azure::{AzureConfig, AzureProvider, Timing};
use cer_capture::{CaptureProvider, ErrorKind, Fence, Holding};
use common::*;
use serde_json::json;

const RG: &str = "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.Network";

fn nic(name: &str) -> String {
    format!("{RG}/networkInterfaces/{name}")
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// Our NIC `nic-r`, `nic-a` holding .100 and .101, `nic-b` idle (all in vnet-1), and `nic-x` in
/// another VNet of the same resource group holding the same .100. Pages of 2 NICs.
fn start() -> Emulator {
    let subnet = format!("{RG}/virtualNetworks/vnet-1/subnets/default");
    let other = format!("{RG}/virtualNetworks/vnet-2/subnets/default");
    Emulator::start(&json!({
        "move_delay_ms": 300,
        "azure_list_page_size": 2,
        "subnets": [
            {"id": subnet, "cidr": "10.1.0.0/24", "vpc": "vnet-1"},
            {"id": other, "cidr": "10.1.0.0/24", "vpc": "vnet-2"}
        ],
        "nics": [
            {"id": nic("nic-a"), "provider": "azure", "subnet": subnet, "primary_ip": "10.1.0.5",
             "secondary_ips": ["10.1.0.100", "10.1.0.101"]},
            {"id": nic("nic-b"), "provider": "azure", "subnet": subnet, "primary_ip": "10.1.0.6"},
            {"id": nic("nic-r"), "provider": "azure", "subnet": subnet, "primary_ip": "10.1.0.4"},
            {"id": nic("nic-x"), "provider": "azure", "subnet": other, "primary_ip": "10.1.0.7",
             "secondary_ips": ["10.1.0.100"]}
        ]
    }))
}

fn config(emu: &Emulator, nic_id: &str) -> AzureConfig {
    AzureConfig {
        nic_id: nic_id.to_string(),
        arm_endpoint: Some(emu.url()),
        imds_endpoint: Some(emu.url()),
        client_id: None,
        api_version: None,
        max_ip_configs: None,
        extra_nic_ids: None,
        write_budget: None,
        read_budget: None,
    }
}

fn timing() -> Timing {
    Timing {
        connect: Duration::from_secs(2),
        request: Duration::from_secs(2),
        operation: Duration::from_secs(10),
        attempts: 4,
        max_wait: Duration::from_secs(1),
    }
}

fn provider(emu: &Emulator) -> AzureProvider {
    AzureProvider::with_timing(&config(emu, &nic("nic-r")), timing()).unwrap()
}

/// NICs (by name) holding `a` in vnet-1's target view, nic-x excluded.
async fn holders(emu: &Emulator, a: &str) -> Vec<String> {
    emu.target_holders(a)
        .await
        .into_iter()
        .map(|(n, _)| n.rsplit('/').next().unwrap().to_string())
        .filter(|n| n != "nic-x")
        .collect()
}

#[tokio::test]
async fn observe_nobody_elsewhere_ours() {
    let emu = start();
    let p = provider(&emu);
    assert_eq!(p.name(), "azure");
    assert!(p.describe().contains("nic-r"));
    // .100 is held by nic-a in our VNet (nic-x holds it in another VNet: ignored).
    assert_eq!(
        within(10, p.observe(ip("10.1.0.100"))).await.unwrap(),
        Holding::Elsewhere(nic("nic-a"))
    );
    assert_eq!(
        within(10, p.observe(ip("10.1.0.150"))).await.unwrap(),
        Holding::Nobody
    );
    assert_eq!(
        within(10, p.observe(ip("10.1.0.4"))).await.unwrap(),
        Holding::Ours
    );
    // Our NIC missing from its resource group: the operator's problem.
    let ghost = AzureProvider::with_timing(&config(&emu, &nic("nic-ghost")), timing()).unwrap();
    let e = within(10, ghost.observe(ip("10.1.0.100")))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Config, "{e}");
}

#[tokio::test]
async fn capture_moves_in_two_steps_is_idempotent_and_releases() {
    let emu = start();
    let p = provider(&emu);
    let t0 = Instant::now();
    within(30, p.capture(ip("10.1.0.100"), &Fence::open()))
        .await
        .unwrap();
    // Step 1 waited for the old NIC's operation (>= move delay) before step 2.
    assert!(t0.elapsed() >= Duration::from_millis(300));
    assert_eq!(holders(&emu, "10.1.0.100").await, ["nic-r"]);
    assert_eq!(holders(&emu, "10.1.0.101").await, ["nic-a"]);
    assert_eq!(p.observe(ip("10.1.0.100")).await.unwrap(), Holding::Ours);
    // The other VNet's holder is untouched.
    assert!(emu
        .target_holders("10.1.0.100")
        .await
        .iter()
        .any(|(n, _)| n.ends_with("nic-x")));

    // Idempotent: no further change.
    emu.settle().await;
    let before = emu.target().await;
    within(30, p.capture(ip("10.1.0.100"), &Fence::open()))
        .await
        .unwrap();
    assert_eq!(emu.target().await, before);

    // Release removes it from our NIC only; again is a no-op.
    within(30, p.release(ip("10.1.0.100"), &Fence::open()))
        .await
        .unwrap();
    assert!(holders(&emu, "10.1.0.100").await.is_empty());
    within(30, p.release(ip("10.1.0.100"), &Fence::open()))
        .await
        .unwrap();
    assert_eq!(p.observe(ip("10.1.0.100")).await.unwrap(), Holding::Nobody);
}

#[tokio::test]
async fn capture_of_a_free_address_and_release_never_touches_other_nics() {
    let emu = start();
    let p = provider(&emu);
    within(30, p.capture(ip("10.1.0.150"), &Fence::open()))
        .await
        .unwrap();
    assert_eq!(holders(&emu, "10.1.0.150").await, ["nic-r"]);
    let nic_r = emu
        .target()
        .await
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == nic("nic-r"))
        .cloned()
        .unwrap();
    assert_eq!(nic_r["names"]["10.1.0.150"], "cer-10-1-0-150");
    assert_eq!(p.held().await.unwrap(), Some(vec![ip("10.1.0.150")]));

    // Releasing an address another NIC holds changes nothing.
    emu.settle().await;
    let before = emu.target().await;
    within(30, p.release(ip("10.1.0.101"), &Fence::open()))
        .await
        .unwrap();
    assert_eq!(emu.target().await, before);
    // Our primary is never released, nor another NIC's primary captured.
    let e = p.release(ip("10.1.0.4"), &Fence::open()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Config, "{e}");
    let e = p.capture(ip("10.1.0.5"), &Fence::open()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Config, "{e}");
    assert!(e.message.contains("primary"), "{e}");
    assert_eq!(emu.target().await, before);
}

#[tokio::test]
async fn faults_are_classified_and_never_hang() {
    let emu = start();
    let p = provider(&emu);
    // One 429 on a PUT is retried within the call (after Retry-After).
    emu.fault(json!({"provider": "azure", "action": "PutNetworkInterface", "kind": "throttle"}))
        .await;
    within(30, p.capture(ip("10.1.0.150"), &Fence::open()))
        .await
        .unwrap();
    assert_eq!(holders(&emu, "10.1.0.150").await, ["nic-r"]);

    // Persistent 429: Throttled after a bounded number of attempts.
    emu.fault(json!({"provider": "azure", "action": "ListNetworkInterfaces", "kind": "throttle", "count": 50}))
        .await;
    let e = within(20, p.observe(ip("10.1.0.100"))).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Throttled, "{e}");
    assert!(e.message.contains("RetryableError"), "{e}");
    emu.clear_faults().await;

    // 500: Transient, with the provider's code.
    emu.fault(json!({"provider": "azure", "action": "GetNetworkInterface", "kind": "error"}))
        .await;
    let e = within(20, p.capture(ip("10.1.0.101"), &Fence::open()))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transient, "{e}");
    assert!(e.message.contains("InternalServerError"), "{e}");

    // A request the provider never answers: Transient after the request timeout.
    emu.fault(json!({"provider": "azure", "action": "ListNetworkInterfaces", "kind": "timeout", "delay_ms": 30000}))
        .await;
    let t0 = Instant::now();
    let e = within(20, p.observe(ip("10.1.0.100"))).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transient, "{e}");
    assert!(t0.elapsed() < Duration::from_secs(10));

    // The managed identity endpoint failing: a fresh client cannot get a token.
    emu.fault(json!({"provider": "azure", "action": "GetToken", "kind": "error"}))
        .await;
    let fresh = provider(&emu);
    let e = within(20, fresh.observe(ip("10.1.0.100")))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transient, "{e}");
    assert!(e.step.contains("token"), "{e}");
}

#[tokio::test]
async fn closed_fence_changes_nothing() {
    let emu = start();
    let p = provider(&emu);
    let before = emu.target().await;
    let closed = || false;
    let fence = Fence::new(closed);
    for (a, what) in [("10.1.0.100", "elsewhere"), ("10.1.0.150", "nobody")] {
        let e = within(20, p.capture(ip(a), &fence)).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Fenced, "{what}: {e}");
    }
    assert_eq!(emu.target().await, before);
    // Release of an address we hold is fenced too.
    within(30, p.capture(ip("10.1.0.150"), &Fence::open()))
        .await
        .unwrap();
    let before = emu.target().await;
    let e = within(20, p.release(ip("10.1.0.150"), &fence))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Fenced, "{e}");
    assert_eq!(emu.target().await, before);
}

#[tokio::test]
async fn fence_tripping_between_the_steps_stops_before_step_two() {
    let emu = start();
    let p = provider(&emu);
    // Open for the first check (before the old NIC's PUT), closed from then on.
    let checks = AtomicU32::new(0);
    let current = move || checks.fetch_add(1, Ordering::SeqCst) == 0;
    let fence = Fence::new(current);
    let e = within(30, p.capture(ip("10.1.0.100"), &fence))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Fenced, "{e}");
    assert!(e.step.contains("between"), "{e}");
    // Released from the old NIC, not created on ours.
    assert!(holders(&emu, "10.1.0.100").await.is_empty());
    assert_eq!(holders(&emu, "10.1.0.101").await, ["nic-a"]);
    assert_eq!(p.observe(ip("10.1.0.100")).await.unwrap(), Holding::Nobody);
}

#[test]
fn config_is_validated_with_field_names() {
    let good = AzureConfig {
        nic_id: nic("nic-r"),
        arm_endpoint: None,
        imds_endpoint: None,
        client_id: Some("11111111-2222-3333-4444-555555555555".into()),
        api_version: None,
        max_ip_configs: None,
        extra_nic_ids: None,
        write_budget: None,
        read_budget: None,
    };
    good.validate().unwrap();
    let bad = AzureConfig {
        nic_id: "/subscriptions/s/nic".into(),
        ..good.clone()
    };
    let e = bad.validate().unwrap_err();
    assert!(
        e.contains("nic_id") && e.contains("/subscriptions/s/nic"),
        "{e}"
    );
    let bad = AzureConfig {
        arm_endpoint: Some("ftp://x".into()),
        ..good.clone()
    };
    assert!(bad.validate().unwrap_err().contains("arm_endpoint"));
    assert_eq!(
        AzureProvider::new(&bad).err().map(|e| e.kind),
        Some(ErrorKind::Config)
    );
    let parsed: AzureConfig =
        serde_json::from_value(json!({"nic_id": nic("n"), "api_version": "2023-09-01"})).unwrap();
    parsed.validate().unwrap();
    assert!(serde_json::from_value::<AzureConfig>(json!({"nic_id": "x", "nope": 1})).is_err());
}

#[tokio::test]
async fn etag_race_and_another_operation_are_retried_within_the_call() {
    let emu = start();
    let p = provider(&emu);
    let other = provider(&emu);
    // Our PUT of nic-r is held 600 ms; meanwhile another writer changes nic-r (new etag, and an
    // operation running): the held PUT gets 412, the retry may meet 429
    // RetryableErrorDueToAnotherOperation, and the call still succeeds.
    emu.fault(json!({"provider": "azure", "action": "PutNetworkInterface", "kind": "delay", "delay_ms": 600}))
        .await;
    let open = Fence::open();
    let (r, _) = tokio::join!(within(30, p.capture(ip("10.1.0.150"), &open)), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        other
            .capture(ip("10.1.0.151"), &Fence::open())
            .await
            .unwrap();
    });
    r.unwrap();
    assert_eq!(holders(&emu, "10.1.0.150").await, ["nic-r"]);
    assert_eq!(holders(&emu, "10.1.0.151").await, ["nic-r"]);

    // With a single attempt the race is reported Transient with the provider's code.
    let once = AzureProvider::with_timing(
        &config(&emu, &nic("nic-r")),
        Timing {
            attempts: 1,
            ..timing()
        },
    )
    .unwrap();
    emu.settle().await;
    emu.fault(json!({"provider": "azure", "action": "PutNetworkInterface", "kind": "delay", "delay_ms": 600}))
        .await;
    let (r, _) = tokio::join!(within(30, once.capture(ip("10.1.0.152"), &open)), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        other
            .release(ip("10.1.0.151"), &Fence::open())
            .await
            .unwrap();
    });
    let e = r.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transient, "{e}");
    assert!(e.message.contains("PreconditionFailed"), "{e}");
    assert!(holders(&emu, "10.1.0.152").await.is_empty());
}

/// A release of an address captured from another NIC hands it back: the ipConfiguration leaves
/// our NIC (LRO polled), then is created on that NIC; idempotent; never taken from a third NIC;
/// a holder NIC it may not read is a Config error, not a gone holder.
#[tokio::test]
async fn hand_back_recreates_the_configuration_on_the_nic_it_came_from() {
    let emu = start();
    let p = provider(&emu);
    within(30, p.capture(ip("10.1.0.100"), &Fence::open()))
        .await
        .unwrap();
    assert_eq!(holders(&emu, "10.1.0.100").await, ["nic-r"]);
    let t0 = Instant::now();
    within(
        30,
        p.hand_back(ip("10.1.0.100"), &nic("nic-a"), &Fence::open()),
    )
    .await
    .unwrap();
    // Step 1 waited for our NIC's operation (>= move delay) before step 2.
    assert!(t0.elapsed() >= Duration::from_millis(300));
    assert_eq!(holders(&emu, "10.1.0.100").await, ["nic-a"]);
    assert_eq!(
        p.observe(ip("10.1.0.100")).await.unwrap(),
        Holding::Elsewhere(nic("nic-a"))
    );
    let nic_a = emu
        .target()
        .await
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == nic("nic-a"))
        .cloned()
        .unwrap();
    assert_eq!(nic_a["names"]["10.1.0.100"], "cer-10-1-0-100");
    // The other VNet's holder is untouched.
    assert!(emu
        .target_holders("10.1.0.100")
        .await
        .iter()
        .any(|(n, _)| n.ends_with("nic-x")));

    // Idempotent, and a third NIC's address is left alone.
    emu.settle().await;
    let before = emu.target().await;
    within(
        30,
        p.hand_back(ip("10.1.0.100"), &nic("nic-a"), &Fence::open()),
    )
    .await
    .unwrap();
    within(
        30,
        p.hand_back(ip("10.1.0.101"), &nic("nic-b"), &Fence::open()),
    )
    .await
    .unwrap();
    assert_eq!(emu.target().await, before);

    // From nobody (a hand-back stopped between the steps): created on the holder.
    within(
        30,
        p.hand_back(ip("10.1.0.150"), &nic("nic-b"), &Fence::open()),
    )
    .await
    .unwrap();
    assert_eq!(holders(&emu, "10.1.0.150").await, ["nic-b"]);

    // Never to ourselves.
    let e = p
        .hand_back(ip("10.1.0.150"), &nic("nic-r"), &Fence::open())
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Config, "{e}");
    assert!(p.is_own_nic(&nic("NIC-R")) && !p.is_own_nic(&nic("nic-a")));

    // A holder NIC this identity may not read (403) is not gone: Config, nothing leaves ours.
    within(30, p.capture(ip("10.1.0.150"), &Fence::open()))
        .await
        .unwrap();
    emu.fault(json!({"provider": "azure", "action": "GetNetworkInterface", "kind": "denied"}))
        .await;
    let e = within(
        20,
        p.hand_back(ip("10.1.0.150"), &nic("nic-b"), &Fence::open()),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Config, "{e}");
    assert!(e.message.contains("AuthorizationFailed"), "{e}");
    assert_eq!(holders(&emu, "10.1.0.150").await, ["nic-r"]);
}

/// The fence is checked before each PUT and between the two steps: tripping between them leaves
/// the address on nobody (step 1 done), and the next hand-back finishes from there.
#[tokio::test]
async fn hand_back_fenced_between_the_steps_is_finished_by_the_next_one() {
    let emu = start();
    let p = provider(&emu);
    within(30, p.capture(ip("10.1.0.100"), &Fence::open()))
        .await
        .unwrap();
    let closed = || false;
    let before = emu.target().await;
    let e = within(
        20,
        p.hand_back(ip("10.1.0.100"), &nic("nic-a"), &Fence::new(closed)),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Fenced, "{e}");
    assert!(e.step.starts_with("PUT our NIC"), "{e}");
    assert_eq!(emu.target().await, before);

    let checks = AtomicU32::new(0);
    let current = move || checks.fetch_add(1, Ordering::SeqCst) == 0;
    let fence = Fence::new(current);
    let e = within(30, p.hand_back(ip("10.1.0.100"), &nic("nic-a"), &fence))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Fenced, "{e}");
    assert!(e.step.contains("between"), "{e}");
    assert!(holders(&emu, "10.1.0.100").await.is_empty());
    assert_eq!(p.observe(ip("10.1.0.100")).await.unwrap(), Holding::Nobody);

    within(
        30,
        p.hand_back(ip("10.1.0.100"), &nic("nic-a"), &Fence::open()),
    )
    .await
    .unwrap();
    assert_eq!(holders(&emu, "10.1.0.100").await, ["nic-a"]);
}

/// The NIC an address came from was deleted: refused before anything leaves our NIC
/// (HolderGone); deleted between the steps: HolderGone with the address left on no NIC, where
/// the deletion would have left it (the reconciler releases to nobody for a gone holder).
#[tokio::test]
async fn hand_back_to_a_deleted_nic_is_holder_gone_and_keeps_the_address() {
    let emu = start();
    let p = provider(&emu);
    within(30, p.capture(ip("10.1.0.100"), &Fence::open()))
        .await
        .unwrap();
    emu.delete_nic(&nic("nic-a")).await;
    emu.settle().await;
    let before = emu.target().await;
    let e = within(
        20,
        p.hand_back(ip("10.1.0.100"), &nic("nic-a"), &Fence::open()),
    )
    .await
    .unwrap_err();
    eprintln!("holder gone: {e}");
    assert_eq!(e.kind, ErrorKind::HolderGone, "{e}");
    assert!(e.message.contains("nic-a"), "{e}");
    assert_eq!(emu.target().await, before);
    assert_eq!(holders(&emu, "10.1.0.100").await, ["nic-r"]);

    // Give .150 to nic-b, capture it, then delete nic-b while step 1's operation is polled.
    within(
        30,
        p.hand_back(ip("10.1.0.150"), &nic("nic-b"), &Fence::open()),
    )
    .await
    .unwrap();
    within(30, p.capture(ip("10.1.0.150"), &Fence::open()))
        .await
        .unwrap();
    assert_eq!(holders(&emu, "10.1.0.150").await, ["nic-r"]);
    let (nic_b, open) = (nic("nic-b"), Fence::open());
    let (r, _) = tokio::join!(
        within(30, p.hand_back(ip("10.1.0.150"), &nic_b, &open)),
        async {
            // The LRO of step 1 is polled after Retry-After (1 s): delete nic-b meanwhile.
            tokio::time::sleep(Duration::from_millis(500)).await;
            emu.delete_nic(&nic("nic-b")).await;
        }
    );
    let e = r.unwrap_err();
    eprintln!("holder gone between the steps: {e}");
    assert_eq!(e.kind, ErrorKind::HolderGone, "{e}");
    assert!(e.message.contains("left on no NIC"), "{e}");
    assert!(holders(&emu, "10.1.0.150").await.is_empty());
    assert_eq!(p.observe(ip("10.1.0.150")).await.unwrap(), Holding::Nobody);
}

/// Two NICs of ours at a quota of 4 ipConfigurations (primary included): 8 captures from three
/// workload NICs fill `nic-r` (3) then `nic-r2` (3); the 2 that fit nowhere are refused as
/// `Quota` and never leave the workload NIC (no black hole).
#[tokio::test]
async fn captures_spread_over_our_nics_and_the_rest_stays_where_it_was() {
    let subnet = format!("{RG}/virtualNetworks/vnet-1/subnets/default");
    let emu = Emulator::start(&json!({
        "move_delay_ms": 100,
        "azure_max_ip_configs": 4,
        "subnets": [{"id": subnet, "cidr": "10.1.0.0/24", "vpc": "vnet-1"}],
        "nics": [
            {"id": nic("nic-r"), "provider": "azure", "subnet": subnet, "primary_ip": "10.1.0.4"},
            {"id": nic("nic-r2"), "provider": "azure", "subnet": subnet, "primary_ip": "10.1.0.5"},
            {"id": nic("nic-w1"), "provider": "azure", "subnet": subnet, "primary_ip": "10.1.0.6",
             "secondary_ips": ["10.1.0.100", "10.1.0.101", "10.1.0.102"]},
            {"id": nic("nic-w2"), "provider": "azure", "subnet": subnet, "primary_ip": "10.1.0.7",
             "secondary_ips": ["10.1.0.103", "10.1.0.104", "10.1.0.105"]},
            {"id": nic("nic-w3"), "provider": "azure", "subnet": subnet, "primary_ip": "10.1.0.8",
             "secondary_ips": ["10.1.0.106", "10.1.0.107"]}
        ]
    }));
    let cfg = AzureConfig {
        max_ip_configs: Some(4),
        extra_nic_ids: Some(vec![nic("nic-r2")]),
        ..config(&emu, &nic("nic-r"))
    };
    let p = AzureProvider::with_timing(&cfg, timing()).unwrap();
    assert!(p.is_own_nic(&nic("nic-r2")));
    let items: Vec<cer_capture::Item> = (100..108)
        .map(|i| cer_capture::Item {
            ip: Ipv4Addr::new(10, 1, 0, i),
            fence: Fence::open(),
        })
        .collect();
    let out = within(30, p.capture_many(&items)).await;
    let ok: Vec<usize> = (0..8).filter(|&i| out[i].is_ok()).collect();
    assert_eq!(ok, (0..6).collect::<Vec<_>>(), "{out:?}");
    for r in &out[6..] {
        let e = r.as_ref().unwrap_err();
        assert_eq!(e.kind, ErrorKind::Quota, "{e}");
        assert!(e.message.contains("quota of 4"), "{e}");
    }
    emu.settle().await;
    for i in 100..103 {
        let h = emu.target_holders(&format!("10.1.0.{i}")).await;
        assert_eq!(h, vec![(nic("nic-r"), false)], "10.1.0.{i}");
    }
    for i in 103..106 {
        let h = emu.target_holders(&format!("10.1.0.{i}")).await;
        assert_eq!(h, vec![(nic("nic-r2"), false)], "10.1.0.{i}");
    }
    for i in 106..108 {
        let h = emu.target_holders(&format!("10.1.0.{i}")).await;
        assert_eq!(
            h,
            vec![(nic("nic-w3"), false)],
            "10.1.0.{i} stays on the workload NIC"
        );
    }
    assert_eq!(
        within(10, p.observe(ip("10.1.0.104"))).await.unwrap(),
        Holding::Ours
    );
    // Release from whichever NIC of ours holds it.
    let rel: Vec<cer_capture::Item> = [101u8, 104]
        .iter()
        .map(|&i| cer_capture::Item {
            ip: Ipv4Addr::new(10, 1, 0, i),
            fence: Fence::open(),
        })
        .collect();
    let out = within(30, p.release_many(&rel)).await;
    assert!(out.iter().all(|r| r.is_ok()), "{out:?}");
    emu.settle().await;
    assert!(emu.target_holders("10.1.0.101").await.is_empty());
    assert!(emu.target_holders("10.1.0.104").await.is_empty());
    let held = within(10, p.held()).await.unwrap().unwrap();
    assert_eq!(held.len(), 4, "{held:?}");
}
