//! Fuzzes the UPDATE path past decoding: a decoded UPDATE goes through import
//! checks and hygiene into a RIB, as the speaker does, then is re-encoded.
//! The first input octet picks the session: its low bit turns on ADD-PATH
//! (path identifiers in IPv4 NLRI, both ways).
#![no_main]

use cer_bgp::decision::DecisionConfig;
use cer_bgp::export::{import_check, import_normalize};
use cer_bgp::packet::{Codec, Message, HEADER_LEN};
use cer_bgp::rib::Rib;
use cer_bgp::route::{PathSource, PeerId};
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

fuzz_target!(|input: &[u8]| {
    let Some((&session, body)) = input.split_first() else {
        return;
    };
    let mut codec = Codec::new();
    codec.session.add_path_rx = session & 1 != 0;
    codec.session.add_path_tx = session & 1 != 0;
    // Wrap the input as an UPDATE body so the fuzzer spends its time there.
    if body.len() + HEADER_LEN > 4096 {
        return;
    }
    let mut frame = vec![0xffu8; 16];
    frame.extend_from_slice(&((HEADER_LEN + body.len()) as u16).to_be_bytes());
    frame.push(2);
    frame.extend_from_slice(body);
    let Ok(Message::Update(u)) = codec.decode(&frame) else {
        return;
    };
    let src = Arc::new(PathSource {
        peer: PeerId(1),
        peer_addr: "10.0.0.2".parse().unwrap(),
        router_id: "10.0.0.2".parse().unwrap(),
        peer_as: 65000,
        ibgp: true,
        rr_client: false,
    });
    let mut rib = Rib::new(DecisionConfig::default());
    for p in &u.withdrawn {
        rib.update(&src, *p, None);
    }
    for r in &u.announced {
        let mut a = (*r.attrs).clone();
        let ok = import_check(&a, 65000, "10.0.0.1".parse().unwrap(), None, true).is_ok();
        import_normalize(&mut a, true, 100);
        let a = Arc::new(a);
        for p in &r.prefixes {
            rib.update(&src, *p, ok.then(|| a.clone()));
        }
        let _ = codec.encode_announce(&r.prefixes, &a);
    }
});
