//! Fuzzes cer-control's configuration: any text parses to a configuration
//! or fails with an error that says what is wrong (never a panic).
#![no_main]

use cer_controlplane::control::config::ControlConfig;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(e) = ControlConfig::parse(&text, Path::new("control.toml")) {
        assert!(
            !e.to_string().trim().is_empty(),
            "a configuration error that says nothing"
        );
    }
});
