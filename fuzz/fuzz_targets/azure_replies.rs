//! Fuzzes the Azure capture client (ARM JSON, the managed identity token,
//! long-running operations, paging, ETags, Retry-After) against replies the
//! input writes. See `cer_fuzz::providers`.
#![no_main]

use cer_capture::azure::{AzureConfig, AzureProvider, Timing};
use cer_fuzz::providers::{self, Case};
use cer_fuzz::replies::Server;
use cer_fuzz::runtime;
use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

const NIC: &str =
    "/subscriptions/s1/resourceGroups/g1/providers/Microsoft.Network/networkInterfaces/cer";
const OTHER: &str =
    "/subscriptions/s1/resourceGroups/g1/providers/Microsoft.Network/networkInterfaces/workload";

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(case) = Case::read(&mut u) else { return };
    let url = Server::get().url();
    let cfg = AzureConfig {
        nic_id: NIC.into(),
        arm_endpoint: Some(url.clone()),
        imds_endpoint: Some(url),
        client_id: None,
        api_version: None,
        max_ip_configs: None,
        extra_nic_ids: None,
        write_budget: None,
        read_budget: None,
    };
    let timing = Timing {
        connect: Duration::from_secs(2),
        request: Duration::from_secs(2),
        operation: Duration::from_millis(200),
        attempts: 3,
        max_wait: Duration::from_millis(1),
    };
    // A new client per input: the token cache starts empty every time.
    let _rt = runtime().enter();
    let provider = AzureProvider::with_timing(&cfg, timing).expect("azure client");
    let _ = providers::run(runtime(), &provider, &case, OTHER, &mut u);
});
