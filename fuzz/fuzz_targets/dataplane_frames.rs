//! Fuzzes the packet pipeline: arbitrary frames on every port (LAN, WAN,
//! their TAPs), raw or inside valid tunnel headers from each tunnel peer,
//! with the clock, tx ring room and buffer pool varied in between. A fresh
//! rig per input. See `cer_fuzz::dataplane`.
#![no_main]

use cer_fuzz::dataplane::Rig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    Rig::new(false).run(data);
});
