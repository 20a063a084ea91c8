//! Fuzzes BGP message decoding: header checks, OPEN (netgauze) and UPDATE
//! decoding with RFC 7606 handling, on a 4-octet iBGP and a 2-octet eBGP
//! session. Any input must decode or fail cleanly.
#![no_main]

use cer_bgp::packet::{check_header, Codec, SessionContext, HEADER_LEN, MAX_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < HEADER_LEN {
        return;
    }
    let h: [u8; HEADER_LEN] = data[..HEADER_LEN].try_into().unwrap();
    if let Ok((len, _)) = check_header(&h, MAX_LEN) {
        if let Some(frame) = data.get(..len) {
            let _ = Codec::new().decode(frame);
            let mut ebgp2 = Codec::new();
            ebgp2.set_session(SessionContext {
                asn4: false,
                ibgp: false,
                peer_as: Some(65001),
                local_addr: Some("10.0.0.1".parse().unwrap()),
                // ADD-PATH receive: path identifiers in front of IPv4 NLRI.
                add_path_rx: true,
                add_path_tx: false,
                extended_message: false,
            });
            let _ = ebgp2.decode(frame);
        }
    }
});
