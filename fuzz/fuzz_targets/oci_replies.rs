//! Fuzzes the OCI capture client (Core Services JSON, paging by
//! opc-next-page, if-match ETags, request signing with an API key) against
//! replies the input writes. See `cer_fuzz::providers`.
#![no_main]

use cer_capture::oci::{OciAuth, OciConfig, OciProvider, Timing};
use cer_fuzz::providers::{self, Case};
use cer_fuzz::replies::Server;
use cer_fuzz::runtime;
use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

const VNIC: &str = "ocid1.vnic.oc1.fuzz.cer";
const OTHER: &str = "ocid1.vnic.oc1.fuzz.workload";

/// An API signing key made once per process (1024 bits: signing is per
/// request and the fuzzer is after our reply handling, not RSA).
fn key_file() -> &'static PathBuf {
    static KEY: OnceLock<PathBuf> = OnceLock::new();
    KEY.get_or_init(|| {
        let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 1024).unwrap();
        let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap();
        let path = std::env::temp_dir().join(format!("cer-fuzz-oci-{}.pem", std::process::id()));
        std::fs::write(&path, pem.as_bytes()).unwrap();
        path
    })
}

fn provider() -> &'static OciProvider {
    static P: OnceLock<OciProvider> = OnceLock::new();
    P.get_or_init(|| {
        let cfg = OciConfig {
            vnic_id: VNIC.into(),
            subnet_id: "ocid1.subnet.oc1.fuzz.s1".into(),
            endpoint: Some(Server::get().url()),
            region: None,
            write_budget: None,
            read_budget: None,
            max_secondary_ips: None,
            extra_vnic_ids: None,
            auth: OciAuth::ApiKey {
                tenancy: "ocid1.tenancy.oc1..fuzz".into(),
                user: "ocid1.user.oc1..fuzz".into(),
                fingerprint: (0..16).map(|_| "ab").collect::<Vec<_>>().join(":"),
                key_file: key_file().clone(),
            },
        };
        let timing = Timing {
            connect: Duration::from_secs(2),
            request: Duration::from_secs(2),
            attempts: 3,
        };
        let _rt = runtime().enter();
        OciProvider::with_timing(&cfg, timing).expect("oci client")
    })
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(case) = Case::read(&mut u) else { return };
    // The client keeps no state between calls (API-key signing has no
    // session), so one client serves every input.
    let _ = providers::run(runtime(), provider(), &case, OTHER, &mut u);
});
