//! Fuzzes cer-control's admin API: JSON lines decoded as the admin socket
//! decodes them (`cer_shared::framing`), answered by a real `ControlState` built
//! from a small configuration (a reflector client with a pool, endpoints
//! and a tunnel; no peer is up). Every request is answered with `Ok` data
//! that serializes or an `Error` that says what was wrong; endpoint adds,
//! moves and removes change the state the next requests see.
#![no_main]

use cer_controlplane::control::admin::{ControlRequest, ControlResponse};
use cer_controlplane::control::config::ControlConfig;
use cer_controlplane::control::state::ControlState;
use cer_controlplane::control::fibfeed::SharedStatus;
use cer_fuzz::runtime;
use cer_shared::framing;
use libfuzzer_sys::fuzz_target;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn state_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("cer-fuzz-control-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

fn config() -> ControlConfig {
    let state = state_dir().join("endpoints.json");
    // A fresh start for every input: no state from the last one.
    let _ = std::fs::remove_file(&state);
    let text = format!(
        r#"
[node]
name = "cer-fuzz"
router_id = "10.10.0.2"
asn = 65000
transport_address = "10.10.0.2"

[bgp]
listen = ["127.0.0.1:0"]
[[bgp.neighbor]]
address = "10.10.0.1"
remote_as = "internal"

[sam]
identity = "65000:1002"
marker_community = "65000:999"
marker_prefix = "10.255.0.2/32"
pool = ["10.77.60.0/24"]
endpoints = ["10.77.60.10"]
state_file = "{}"

[[tunnel]]
id = 3
remote = "10.10.0.3"
"#,
        state.display()
    );
    ControlConfig::parse(&text, Path::new("control.toml")).expect("fuzz configuration")
}

fuzz_target!(|data: &[u8]| {
    let _rt = runtime().enter();
    let (events, _rx) = tokio::sync::mpsc::channel(64);
    let mut state = ControlState::new(config(), events, None, SharedStatus::default())
        .expect("control state from the fuzz configuration");
    for line in data.split(|&b| b == b'\n').take(64) {
        let Ok(req) = framing::decode::<ControlRequest>(line) else {
            continue;
        };
        match state.admin(req) {
            ControlResponse::Ok { data } => {
                serde_json::to_vec(&data).expect("an admin answer that does not serialize");
            }
            ControlResponse::Error { message } => {
                assert!(!message.is_empty(), "an admin error that says nothing")
            }
        }
    }
});
