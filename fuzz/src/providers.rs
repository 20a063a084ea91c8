//! A capture provider client driven against scripted replies: the input
//! picks one provider call (observe, capture, release, hand back, held),
//! the address, when the path-signature fence goes stale, and the replies
//! the loopback server gives (`replies`).
//!
//! Checked after every call: it returned (the client's time limits and the
//! finite script bound every retry and poll loop; libFuzzer's timeout
//! catches a hang); an error names its provider and says what was wrong;
//! and no mutating request (anything but GET) reached the provider after
//! the fence said the path signature was stale: a stale action is fenced,
//! never executed.

use crate::replies::{read_script, Server};
use cer_capture::provider::{CaptureError, CaptureProvider, Fence, Holding};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The provider call an input makes.
#[derive(Debug, Clone, Copy)]
pub enum Call {
    Observe,
    Capture,
    Release,
    HandBack,
    Held,
}

pub struct Case {
    pub call: Call,
    pub ip: Ipv4Addr,
    /// The fence goes stale at this check (0: never).
    pub stale_at: usize,
}

impl Case {
    pub fn read(u: &mut Unstructured) -> Result<Case> {
        let b: u8 = u.arbitrary()?;
        let call = match b % 5 {
            0 => Call::Observe,
            1 => Call::Capture,
            2 => Call::Release,
            3 => Call::HandBack,
            _ => Call::Held,
        };
        let ip = Ipv4Addr::new(10, 0, 0, u.arbitrary()?);
        let stale_at = usize::from(u.arbitrary::<u8>()? % 6);
        Ok(Case { call, ip, stale_at })
    }
}

/// Runs `case` against `provider` with the script in `u`; `to` is the NIC
/// a hand-back goes to.
pub fn run(
    rt: &tokio::runtime::Runtime,
    provider: &dyn CaptureProvider,
    case: &Case,
    to: &str,
    u: &mut Unstructured,
) -> Result<()> {
    let server = Server::get();
    let script = read_script(u, &server.url())?;
    server.set_script(script);
    let checks = AtomicUsize::new(0);
    // How many requests had been served when the fence first said stale.
    let stale_after = Arc::new(Mutex::new(None::<usize>));
    let stale_at = case.stale_at;
    let fence_stale_after = stale_after.clone();
    let current = move || {
        let n = checks.fetch_add(1, Ordering::SeqCst) + 1;
        let stale = stale_at != 0 && n >= stale_at;
        if stale {
            let mut s = fence_stale_after.lock().unwrap();
            if s.is_none() {
                *s = Some(server.served().len());
            }
        }
        !stale
    };
    let fence = Fence::new(current);
    let outcome: std::result::Result<(), CaptureError> = rt.block_on(async {
        match case.call {
            Call::Observe => provider.observe(case.ip).await.map(check_holding),
            Call::Capture => provider.capture(case.ip, &fence).await,
            Call::Release => provider.release(case.ip, &fence).await,
            Call::HandBack => provider.hand_back(case.ip, to, &fence).await,
            Call::Held => provider.held().await.map(|_| ()),
        }
    });
    if let Err(e) = &outcome {
        assert_eq!(e.provider, provider.name(), "error from another provider");
        assert!(!e.message.is_empty(), "an error that says nothing: {e:?}");
    }
    let served = server.served();
    if let Some(at) = *stale_after.lock().unwrap() {
        let late: Vec<&String> = served[at.min(served.len())..]
            .iter()
            .filter(|m| m.as_str() != "GET")
            .collect();
        assert!(
            late.is_empty(),
            "{:?} sent {late:?} after the fence went stale (requests: {served:?})",
            case.call
        );
    }
    Ok(())
}

fn check_holding(h: Holding) {
    if let Holding::Elsewhere(id) = &h {
        assert!(!id.is_empty(), "held by a NIC without an id");
    }
}
