//! Fuzzes BGP message decoding: header checks, netgauze parsing, RFC 7606
//! fallback (locate_nlri). Any input must decode or fail cleanly.
#![no_main]

use cer_bgp::packet::{check_header, locate_nlri, Codec, HEADER_LEN, MAX_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = locate_nlri(data);
    if data.len() < HEADER_LEN {
        return;
    }
    let h: [u8; HEADER_LEN] = data[..HEADER_LEN].try_into().unwrap();
    if let Ok((len, _)) = check_header(&h, MAX_LEN) {
        if let Some(frame) = data.get(..len) {
            let _ = Codec::new().decode(frame);
        }
    }
});
