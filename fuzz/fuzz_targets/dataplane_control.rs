//! Fuzzes the dataplane's FIB feed protocol and admin requests: JSON lines
//! decoded as the socket servers decode them, handled by the real manager.
//! See `cer_fuzz::control`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cer_fuzz::control::run(data);
});
