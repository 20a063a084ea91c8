//! The manager driven by feed and admin messages, no sockets: sessions
//! refused or broken, the capture gate and its owner, one-shot sessions,
//! duplicate holders, Router Advertisements.

use super::*;
use crate::counters::CoreStats;
use crate::fib::FibPort;
use cer_shared::admin::Neighbors6State;
use cer_shared::feed::{EndpointAction, FibChange};

fn manager() -> Manager {
    let fib = Fib::new(
        vec![FibPort {
            name: "lan".into(),
            subnet: "10.1.0.0/24".parse().unwrap(),
            proxy_arp: true,
        }],
        Vec::new(),
        Duration::from_secs(30),
        Duration::from_secs(60),
    );
    let published = Arc::new(ArcSwap::from(fib.current().clone()));
    Manager::new(
        fib,
        published,
        Arc::new(ArrayQueue::new(16)),
        vec![Arc::new(ArrayQueue::new(16))],
        vec![Arc::new(CoreStats::new(1))],
        vec!["lan".into()],
        "t".into(),
        Arc::new(Vec::new),
    )
}

fn hello(m: &mut Manager, session: u64, client: &str, capture_gate: bool) {
    let (tx, rx) = sync_channel(1);
    m.handle(ManagerMsg::FeedHello {
        session,
        client: client.into(),
        capture_gate,
        reply: tx,
    });
    assert!(matches!(rx.recv().unwrap(), DataplaneMsg::Welcome { .. }));
}

fn send(m: &mut Manager, session: u64, msg: ControlMsg) -> DataplaneMsg {
    let (tx, rx) = sync_channel(1);
    m.handle(ManagerMsg::Feed {
        session,
        msg,
        reply: tx,
    });
    rx.recv().unwrap()
}

fn closed(m: &mut Manager, session: u64, error: Option<&str>) {
    m.handle(ManagerMsg::FeedClosed {
        session,
        error: error.map(String::from),
        counted: false,
    });
}

/// cer-control's session: full sync of one endpoint, one captured /32, gate open.
fn controller_syncs(m: &mut Manager, session: u64) {
    hello(m, session, "cer-control", true);
    let changes = vec![
        FibChange::EndpointSet {
            ip: "10.77.60.11".parse().unwrap(),
            action: EndpointAction::Local { port: "lan".into() },
        },
        FibChange::ProxyArpSet {
            ip: "10.77.60.12".parse().unwrap(),
        },
        FibChange::ProxyArpActive { active: true },
    ];
    for msg in [
        ControlMsg::SyncBegin { seq: 1 },
        ControlMsg::Changes { seq: 2, changes },
        ControlMsg::SyncEnd { seq: 3 },
    ] {
        assert!(matches!(send(m, session, msg), DataplaneMsg::Ack { .. }));
    }
    assert!(m.published.load().proxy_arp.active);
    assert!(m.feed.gate_owner_connected);
}

#[test]
fn every_refused_or_broken_session_is_counted_once() {
    let mut m = manager();
    // Two sessions refused with the same text are two errors.
    for session in [1, 2] {
        let (tx, rx) = sync_channel(1);
        m.handle(ManagerMsg::FeedRefused {
            session,
            message: "bad hello: expected value at line 1".into(),
            reply: tx,
        });
        rx.recv().unwrap();
        m.handle(ManagerMsg::FeedClosed {
            session,
            error: Some("bad hello: expected value at line 1".into()),
            counted: true,
        });
    }
    assert_eq!(m.feed.errors, 2);
    // An answered error is counted by the answer, not again at close.
    hello(&mut m, 3, "cerctl", false);
    let e = send(&mut m, 3, ControlMsg::SyncEnd { seq: 1 });
    assert!(matches!(e, DataplaneMsg::Error { .. }), "{e:?}");
    assert_eq!(m.feed.errors, 3);
    m.handle(ManagerMsg::FeedClosed {
        session: 3,
        error: Some("no sync in progress".into()),
        counted: true,
    });
    assert_eq!(m.feed.errors, 3);
    // A session that broke on I/O is counted when it closes.
    hello(&mut m, 4, "cerctl", false);
    closed(&mut m, 4, Some("connection reset"));
    assert_eq!(m.feed.errors, 4);
    assert_eq!(m.feed.last_error.as_deref(), Some("connection reset"));
}

#[test]
fn gate_closes_when_its_owner_disconnects_and_forwarding_stays() {
    let mut m = manager();
    controller_syncs(&mut m, 1);
    let before = m.published.load().endpoints.len();
    closed(&mut m, 1, Some("connection reset"));
    let snap = m.published.load();
    assert!(!snap.proxy_arp.active, "gate still open");
    assert!(snap
        .proxy_arp
        .holds(u32::from(Ipv4Addr::new(10, 77, 60, 12))));
    assert_eq!(snap.endpoints.len(), before, "forwarding entries kept");
    assert_eq!(m.feed.gate_closed_on_disconnect, 1);
    assert!(!m.feed.gate_owner_connected);
    let p = m.proxy();
    assert!(!p.active && p.addresses.len() == 1);
    // The controller comes back and its full sync opens the gate again.
    controller_syncs(&mut m, 2);
    // A clean EOF (killed controller: the kernel closes the socket) closes it too.
    closed(&mut m, 2, None);
    assert!(!m.published.load().proxy_arp.active);
    assert_eq!(m.feed.gate_closed_on_disconnect, 2);
}

#[test]
fn one_shot_sessions_leave_the_gate_alone() {
    let mut m = manager();
    controller_syncs(&mut m, 1);
    // cerctl: no gate flag; its end does not close the gate.
    hello(&mut m, 2, "cerctl", false);
    let ack = send(&mut m, 2, ControlMsg::Ping { seq: 1 });
    assert!(matches!(ack, DataplaneMsg::Ack { seq: 1, .. }), "{ack:?}");
    closed(&mut m, 2, None);
    assert!(m.published.load().proxy_arp.active);
    assert_eq!(m.feed.gate_closed_on_disconnect, 0);
    // cerctl supersedes the owner (the owner's next message is refused,
    // its session ends): the gate stays open while the controller
    // reconnects, and closes if it does not.
    hello(&mut m, 5, "cerctl", false);
    let e = send(&mut m, 1, ControlMsg::Ping { seq: 4 });
    let DataplaneMsg::Error { message, .. } = e else {
        panic!("{e:?}")
    };
    closed(&mut m, 1, Some(&message));
    assert!(m.published.load().proxy_arp.active, "gate flapped");
    assert!(m.gate_grace.is_some());
    controller_syncs(&mut m, 6);
    assert!(m.gate_grace.is_none() && m.published.load().proxy_arp.active);
    hello(&mut m, 7, "cerctl", false);
    closed(&mut m, 6, Some(&message));
    m.gate_grace = Some(Instant::now());
    let (_tx, rx) = sync_channel(1);
    let stop = Arc::new(AtomicBool::new(false));
    let stopper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            stop.store(true, Ordering::Relaxed);
        })
    };
    let published = m.published.clone();
    m.run(rx, stop);
    stopper.join().unwrap();
    assert!(
        !published.load().proxy_arp.active,
        "grace expired: gate closed"
    );
}

#[test]
fn a_late_close_of_an_old_owner_is_ignored() {
    let mut m = manager();
    controller_syncs(&mut m, 1);
    // A stale owner's late close does not touch a newer owner's gate.
    controller_syncs(&mut m, 3);
    closed(&mut m, 1, Some("superseded"));
    assert!(m.published.load().proxy_arp.active);
    assert!(m.feed.gate_owner_connected);
    // cerctl may still close the gate explicitly.
    hello(&mut m, 4, "cerctl", false);
    let changes = vec![FibChange::ProxyArpActive { active: false }];
    assert!(matches!(
        send(&mut m, 4, ControlMsg::Changes { seq: 1, changes }),
        DataplaneMsg::Ack { .. }
    ));
    assert!(!m.published.load().proxy_arp.active);
}

#[test]
fn duplicate_holders_reach_acks_and_the_admin_view() {
    let mut m = manager();
    controller_syncs(&mut m, 1);
    let ip = Ipv4Addr::new(10, 77, 60, 12);
    let mac = [2, 0, 0, 0, 0, 0x42];
    m.stats[0].duplicate_holder(0, u32::from(ip), mac);
    m.stats[0].duplicate_holder(0, u32::from(ip), mac);
    let ack = send(&mut m, 1, ControlMsg::Ping { seq: 4 });
    let DataplaneMsg::Ack {
        duplicate_holder_alarms,
        duplicate_holders,
        ..
    } = ack
    else {
        panic!("{ack:?}")
    };
    assert_eq!(duplicate_holder_alarms, 2);
    assert_eq!(duplicate_holders.len(), 1);
    let h = &duplicate_holders[0];
    assert_eq!((h.ip, h.mac, h.port.as_str()), (ip, MacAddr(mac), "lan"));
    // Another offender comes first; the list stays bounded.
    for i in 0..20u8 {
        m.stats[0].duplicate_holder(0, u32::from(ip), [2, 0, 0, 0, 1, i]);
        m.poll_duplicates(Instant::now());
    }
    let p = m.proxy();
    assert_eq!(p.duplicate_holder_alarms, 22);
    assert_eq!(p.duplicate_holders.len(), MAX_DUPLICATE_HOLDERS);
    assert_eq!(p.duplicate_holders[0].mac, MacAddr([2, 0, 0, 0, 1, 19]));
}

#[test]
fn router_adverts_on_unnumbered_ports_and_neighbors6_view() {
    let mut m = manager();
    let ll = crate::nd::link_local([2, 0, 0, 0, 1, 1]);
    m.link_locals = vec![(ll, true)];
    let t0 = Instant::now();
    m.router_adverts(t0);
    assert_eq!(
        m.commands[0].pop(),
        Some(CoreCommand::RouterAdvert { port: 0 })
    );
    m.router_adverts(t0 + Duration::from_secs(5));
    assert!(m.commands[0].pop().is_none(), "not before the interval");
    m.router_adverts(t0 + Duration::from_secs(10));
    assert_eq!(
        m.commands[0].pop(),
        Some(CoreCommand::RouterAdvert { port: 0 })
    );
    // Not unnumbered: no RA.
    m.link_locals = vec![(ll, false)];
    m.router_adverts(t0 + Duration::from_secs(20));
    assert!(m.commands[0].pop().is_none());

    // A peer learned from an RA, and a route via its link-local address.
    let peer: std::net::Ipv6Addr = "fe80::5054:ff:fe00:31".parse().unwrap();
    m.learn6
        .push(Learn6 {
            port: 0,
            ip: peer,
            mac: [0x52, 0x54, 0, 0, 0, 0x31],
            router: true,
        })
        .unwrap();
    m.drain_learned(Instant::now());
    m.fib
        .apply(&FibChange::RouteSet {
            prefix: "10.77.0.0/16".parse().unwrap(),
            nexthops: vec![cer_shared::feed::NextHop {
                port: "lan".into(),
                gateway: None,
                gateway6: Some(peer),
            }],
        })
        .unwrap();
    m.publish();
    let AdminResponse::Ok { data } = m.query(&AdminRequest::Neighbors6) else {
        panic!()
    };
    let v: Neighbors6State = serde_json::from_value(data).unwrap();
    assert_eq!(v.ports[0].link_local, ll);
    assert_eq!(v.neighbors.len(), 1);
    assert_eq!(v.neighbors[0].ip, peer);
    assert!(v.neighbors[0].router);
    assert_eq!(v.neighbors[0].state, "reachable");
    let AdminResponse::Ok { data } = m.query(&AdminRequest::Fib { limit: None }) else {
        panic!()
    };
    let hop = &data["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["prefix"] == "10.77.0.0/16")
        .unwrap()["nexthops"][0];
    assert_eq!(hop["gateway6"], "fe80::5054:ff:fe00:31");
    assert_eq!(hop["mac"], "52:54:00:00:00:31");
}

#[test]
fn a_stall_closes_the_gate_once_and_the_ack_reports_it() {
    let mut m = manager();
    controller_syncs(&mut m, 1);
    // A core found the beat stale (the process was stopped).
    m.liveness.beat(1);
    assert!(m.liveness.hold(10 * crate::liveness::STALL_GUARD_NS));
    m.check_held();
    assert!(
        !m.published.load().proxy_arp.active,
        "gate open after a stall"
    );
    assert_eq!((m.feed.stalls, m.feed.gate_closed_on_stall), (1, 1));
    // The manager's own overrun of the same stall is not a second one.
    m.stalled(Duration::from_secs(3), "test");
    assert_eq!(m.feed.stalls, 1);
    // Forwarding entries stay; the controller hears of it in its next ack.
    assert_eq!(m.published.load().endpoints.len(), 1);
    let DataplaneMsg::Ack { stalls, .. } = send(&mut m, 1, ControlMsg::Ping { seq: 4 }) else {
        panic!("no ack");
    };
    assert_eq!(stalls, 1);
    // The controller re-confirmed its role: the gate opens again.
    let ack = send(
        &mut m,
        1,
        ControlMsg::Changes {
            seq: 5,
            changes: vec![FibChange::ProxyArpActive { active: true }],
        },
    );
    assert!(matches!(ack, DataplaneMsg::Ack { seq: 5, .. }), "{ack:?}");
    assert!(m.published.load().proxy_arp.active);
}

const NODE_FILE: &str = r#"
[node]
name = "t"
router_address = "10.2.0.1"

[dataplane]
cores = [1]

[[port]]
name = "lan"
driver = "af_packet"
iface = "veth0"
address = "10.1.0.1/24"
proxy_arp = true

[[port]]
name = "wan"
driver = "af_packet"
iface = "veth1"
address = "10.2.0.1/24"
"#;

fn admin_req(m: &mut Manager, req: AdminRequest) -> AdminResponse {
    let (tx, rx) = sync_channel(1);
    m.handle(ManagerMsg::Query { req, reply: tx });
    rx.recv().unwrap()
}

/// A manager running `NODE_FILE` from a file it can reload.
fn manager_with_file(dir: &std::path::Path) -> (Manager, std::path::PathBuf) {
    let path = dir.join("node.toml");
    std::fs::write(&path, NODE_FILE).unwrap();
    let cfg = cer_shared::config::NodeConfig::load(&path).unwrap();
    let fib = Fib::from_config(&cfg);
    let published = Arc::new(ArcSwap::from(fib.current().clone()));
    let mut m = Manager::new(
        fib,
        published,
        Arc::new(ArrayQueue::new(16)),
        vec![Arc::new(ArrayQueue::new(16))],
        vec![Arc::new(CoreStats::new(1))],
        vec!["lan".into(), "wan".into()],
        "t".into(),
        Arc::new(Vec::new),
    );
    m.config = Some((path.clone(), cfg));
    m.publish();
    (m, path)
}

fn scratch_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("cer-mgr-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn reload_applies_routes_tunnels_and_proxy_arp_in_one_snapshot_and_keeps_the_feed() {
    let dir = scratch_dir("reload");
    let (mut m, path) = manager_with_file(&dir);
    hello(&mut m, 1, "cer-control", true);
    let ep = "10.77.0.5".parse().unwrap();
    let r = send(
        &mut m,
        1,
        ControlMsg::Changes {
            seq: 1,
            changes: vec![FibChange::EndpointSet {
                ip: ep,
                action: EndpointAction::Local { port: "lan".into() },
            }],
        },
    );
    assert!(matches!(r, DataplaneMsg::Ack { .. }), "{r:?}");
    m.publish();
    let before = m.published.load().version;
    let dst = u32::from(std::net::Ipv4Addr::new(10, 9, 1, 1));
    assert!(m.published.load().routes.lookup(dst).is_none());
    assert!(m.published.load().proxy_arp.on_port(0));

    std::fs::write(
        &path,
        NODE_FILE.replace("proxy_arp = true", "proxy_arp = false")
            + "\n[[route]]\nprefix = \"10.9.0.0/16\"\nvia = [\"10.2.0.254\"]\n\n\
               [[tunnel]]\nid = 7\nkind = \"ipip\"\nlocal = \"10.2.0.1\"\nremote = \"10.2.0.9\"\n",
    )
    .unwrap();
    let AdminResponse::Ok { data } = admin_req(&mut m, AdminRequest::Reload) else {
        panic!("reload refused")
    };
    assert_eq!(data["changed"], true, "{data}");
    assert_eq!(data["applied"].as_array().unwrap().len(), 3, "{data}");
    let s = m.published.load();
    assert_eq!(s.version, before + 1, "one snapshot for the whole reload");
    let hop = s
        .routes
        .lookup(dst)
        .expect("the new static route")
        .group
        .hops[0];
    assert_eq!(
        (hop.port, hop.gateway),
        (1, u32::from(std::net::Ipv4Addr::new(10, 2, 0, 254)))
    );
    assert!(!s.proxy_arp.on_port(0));
    assert!(s.tunnels.get(7).is_some());
    assert!(
        s.endpoints.get(u32::from(ep)).is_some(),
        "the feed's endpoint stays"
    );
    assert_eq!(m.feed.sessions, 1, "the feed session was not touched");

    // A restart field refuses the whole file: the route removal is not applied.
    std::fs::write(&path, NODE_FILE.replace("cores = [1]", "cores = [2]")).unwrap();
    let AdminResponse::Error { message } = admin_req(&mut m, AdminRequest::Reload) else {
        panic!("a cores change was applied")
    };
    assert!(
        message.contains("dataplane.cores") && message.contains("nothing applied"),
        "{message}"
    );
    assert!(m.published.load().routes.lookup(dst).is_some());
    // A broken file: the parser's message, nothing applied.
    std::fs::write(&path, "[node\n").unwrap();
    let AdminResponse::Error { message } = admin_req(&mut m, AdminRequest::Reload) else {
        panic!("a broken file was applied")
    };
    assert!(message.contains("node.toml"), "{message}");
    assert!(m.published.load().tunnels.get(7).is_some());
    // SIGHUP takes the same path.
    std::fs::write(&path, NODE_FILE).unwrap();
    m.reload_signal.store(true, Ordering::Relaxed);
    assert!(m.reload_signal.swap(false, Ordering::Relaxed));
    m.reload("SIGHUP").unwrap();
    assert!(m.published.load().tunnels.get(7).is_none());
    assert!(m.published.load().proxy_arp.on_port(0));
    let _ = std::fs::remove_dir_all(&dir);
}
