//! Harnesses of CER's fuzz targets (`fuzz_targets/`, run by `scripts/fuzz`):
//! each drives a real component the way its input reaches it in
//! production, and checks what must hold whatever the input.
//!
//! - `dataplane`: the packet pipeline on in-memory ports (every port kind,
//!   every tunnel kind, a WireGuard session up);
//! - `control`: the dataplane's FIB feed protocol and admin requests;
//! - `replies` + `providers`: the Azure and OCI capture clients against a
//!   loopback server answering with the input's replies.
//!
//! The BGP targets use `cer_bgp` directly; AWS and cer-control's admin API
//! live in `controlplane/fuzz` (they build the AWS SDK).

pub mod control;
pub mod dataplane;
pub mod providers;
pub mod replies;

use cer_dataplane::fib::{Fib, FibPort};
use cer_dataplane::snapshot::{Hop, HopGroup, Route};
use std::sync::OnceLock;
use std::time::Duration;

/// The process's tokio runtime (one thread) for the targets that call
/// async clients.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

/// The FIB both dataplane harnesses start from: `lan` 10.1.0.0/24 and
/// `wan` 10.2.0.0/24, each a connected route.
pub fn two_port_fib() -> Fib {
    let connected = |port| {
        let mut g = HopGroup::default();
        g.hops.push(Hop { port, gateway: 0 });
        g
    };
    Fib::new(
        vec![
            FibPort {
                name: "lan".into(),
                subnet: "10.1.0.0/24".parse().unwrap(),
                proxy_arp: true,
            },
            FibPort {
                name: "wan".into(),
                subnet: "10.2.0.0/24".parse().unwrap(),
                proxy_arp: false,
            },
        ],
        vec![
            Route {
                addr: 0x0a01_0000,
                len: 24,
                group: connected(0),
            },
            Route {
                addr: 0x0a02_0000,
                len: 24,
                group: connected(1),
            },
        ],
        Duration::from_secs(30),
        Duration::from_secs(300),
    )
}
