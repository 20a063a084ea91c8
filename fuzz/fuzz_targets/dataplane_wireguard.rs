//! Fuzzes the pipeline with a WireGuard session up: inner packets sealed by
//! the peer's session, raw datagrams to the WireGuard port (handshake,
//! cookie and data messages), and everything `dataplane_frames` sends.
//!
//! The handshake costs milliseconds, so the rig is made once per process
//! and kept: the session's counters and the worker's tables carry over from
//! one input to the next. Keys are fixed, so a crash that needs that state
//! still reproduces from the inputs run before it (libFuzzer's crash file
//! and `-runs` over the corpus directory).
#![no_main]

use cer_fuzz::dataplane::Rig;
use libfuzzer_sys::fuzz_target;
use std::sync::Mutex;

static RIG: Mutex<Option<Rig>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let mut g = RIG.lock().unwrap_or_else(|e| e.into_inner());
    let rig = g.get_or_insert_with(|| Rig::new(true));
    rig.run(data);
});
