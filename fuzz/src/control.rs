//! The dataplane's control side as the fuzz targets drive it: the FIB feed
//! protocol and the admin requests, decoded from JSON lines the way the
//! socket servers decode them (`cer_shared::framing`), handled by the real
//! manager (`cer_dataplane::manager::Manager`), which owns the FIB.
//!
//! An input is a sequence of lines. Each line is offered to the feed
//! session (after a hello the harness sends, as cer-control does) and, when
//! it is not a feed message, to the admin server. The manager must answer
//! every message (`Ack` or `Error`, never a panic), a refused message ends
//! the session as the server ends it, and after every answer the FIB must
//! still publish a snapshot and answer every admin request.

use arc_swap::ArcSwap;
use cer_dataplane::manager::{Manager, ManagerMsg};
use cer_dataplane::counters::CoreStats;
use cer_dataplane::tunnel::{TunnelInfo, TunnelTable};
use cer_shared::admin::{AdminRequest, AdminResponse};
use cer_shared::config::TunnelKind;
use cer_shared::feed::{ControlMsg, DataplaneMsg, FEED_PROTOCOL_VERSION};
use cer_shared::framing::{self, MAX_LINE};
use crossbeam_queue::ArrayQueue;
use std::sync::mpsc::sync_channel;
use std::sync::Arc;

/// Every admin request, asked after each accepted feed message.
const ADMIN: [&str; 11] = [
    r#"{"cmd":"state"}"#,
    r#"{"cmd":"counters"}"#,
    r#"{"cmd":"ports"}"#,
    r#"{"cmd":"neighbors"}"#,
    r#"{"cmd":"neighbors6"}"#,
    r#"{"cmd":"proxy_arp"}"#,
    r#"{"cmd":"snapshot"}"#,
    r#"{"cmd":"fib"}"#,
    r#"{"cmd":"fib","limit":3}"#,
    r#"{"cmd":"feed"}"#,
    r#"{"cmd":"tunnels"}"#,
];

/// A manager over a two-port FIB with a GRE and a WireGuard tunnel.
pub fn manager() -> Manager {
    let mut fib = crate::two_port_fib();
    let tunnel = |id, kind: TunnelKind, remote| TunnelInfo {
        id,
        kind,
        local: 0x0a02_0001,
        remote,
        mtu: 1400,
        gre_key: None,
        port: kind.default_port().unwrap_or(0),
        force_fragment: false,
    };
    fib.set_tunnels(TunnelTable::build(vec![
        tunnel(1, TunnelKind::Gre, 0x0a02_0002),
        tunnel(2, TunnelKind::Wireguard, 0x0a02_0003),
    ]));
    let published = Arc::new(ArcSwap::from(fib.current().clone()));
    Manager::new(
        fib,
        published,
        Arc::new(ArrayQueue::new(64)),
        vec![Arc::new(ArrayQueue::new(64))],
        vec![Arc::new(CoreStats::new(1))],
        vec!["lan".into(), "wan".into(), "tap-lan".into()],
        "fuzz".into(),
        Arc::new(Vec::new),
    )
}

fn feed(m: &mut Manager, session: u64, msg: ControlMsg) -> DataplaneMsg {
    let (tx, rx) = sync_channel(1);
    m.handle(ManagerMsg::Feed {
        session,
        msg,
        reply: tx,
    });
    rx.try_recv()
        .expect("the manager left a feed message unanswered")
}

fn query(m: &mut Manager, req: AdminRequest) -> AdminResponse {
    let (tx, rx) = sync_channel(1);
    m.handle(ManagerMsg::Query { req, reply: tx });
    rx.try_recv()
        .expect("the manager left an admin request unanswered")
}

fn hello(m: &mut Manager, session: u64, capture_gate: bool) {
    let (tx, rx) = sync_channel(1);
    m.handle(ManagerMsg::FeedHello {
        session,
        client: "fuzz".into(),
        capture_gate,
        reply: tx,
    });
    let welcome = rx.try_recv().expect("hello unanswered");
    assert!(
        matches!(welcome, DataplaneMsg::Welcome { version, .. } if version == FEED_PROTOCOL_VERSION),
        "hello answered with {welcome:?}"
    );
}

/// Runs one fuzz input.
pub fn run(data: &[u8]) {
    let mut m = manager();
    let mut session = 1;
    hello(&mut m, session, true);
    let mut accepted = 0usize;
    for line in data.split(|&b| b == b'\n').take(256) {
        if line.len() > MAX_LINE || line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if let Ok(msg) = framing::decode::<ControlMsg>(line) {
            if let ControlMsg::Hello { capture_gate, .. } = msg {
                // A new session supersedes the old one, as the server does.
                m.handle(ManagerMsg::FeedClosed {
                    session,
                    error: None,
                    counted: false,
                });
                session += 1;
                hello(&mut m, session, capture_gate);
                continue;
            }
            match feed(&mut m, session, msg) {
                DataplaneMsg::Ack { .. } => accepted += 1,
                DataplaneMsg::Error { message, .. } => {
                    assert!(!message.is_empty(), "a refusal without a reason");
                    // The server closes the session after a refusal; the
                    // controller reconnects and says hello again.
                    m.handle(ManagerMsg::FeedClosed {
                        session,
                        error: Some(message),
                        counted: true,
                    });
                    session += 1;
                    hello(&mut m, session, true);
                }
                other => panic!("a feed message answered with {other:?}"),
            }
            m.publish();
        } else if let Ok(req) = framing::decode::<AdminRequest>(line) {
            answer_ok(&mut m, req);
        }
    }
    if accepted > 0 {
        for req in ADMIN {
            answer_ok(&mut m, framing::decode(req.as_bytes()).unwrap());
        }
    }
}

/// The admin answer must be an `Ok` that serializes, or an `Error` with a reason.
fn answer_ok(m: &mut Manager, req: AdminRequest) {
    match query(m, req) {
        AdminResponse::Ok { data } => {
            serde_json::to_vec(&data).expect("admin answer does not serialize");
        }
        AdminResponse::Error { message } => assert!(!message.is_empty()),
    }
}
