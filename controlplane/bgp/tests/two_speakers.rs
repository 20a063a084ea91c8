//! Two cer-bgp speakers over real TCP on loopback addresses: session
//! establishment, route exchange with communities, replacement, withdrawal,
//! End-of-RIB, and graceful restart keeping routes across a session loss.

use cer_bgp::decision::DecisionConfig;
use cer_bgp::fsm::PeerAs;
use cer_bgp::route::{Community, Ipv4Prefix, NextHop, PathAttrs, Prefix};
use cer_bgp::session::SessionEvent;
use cer_bgp::speaker::{NeighborConfig, Speaker, SpeakerConfig};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

struct Node {
    speaker: Arc<Mutex<Speaker>>,
    task: tokio::task::JoinHandle<()>,
}

async fn node(ip: &str, port: u16, peer_ip: &str, gr: Option<u16>) -> Node {
    let (tx, mut rx) = mpsc::channel::<SessionEvent>(1024);
    let cfg = SpeakerConfig {
        local_as: 65000,
        router_id: ip.parse().unwrap(),
        cluster_id: None,
        hold_time: 9,
        connect_retry: Duration::from_millis(500),
        graceful_restart: gr,
        restarting: false,
        forwarding_preserved: false,
        decision: DecisionConfig::default(),
    };
    let mut s = Speaker::new(cfg, tx);
    s.add_neighbor(NeighborConfig {
        remote: SocketAddr::new(peer_ip.parse().unwrap(), port),
        local: Some(ip.parse().unwrap()),
        peer_as: PeerAs::Internal,
        passive: false,
        rr_client: false,
        next_hop_self: false,
        import: None,
        export: None,
        description: None,
        interface: None,
    });
    let speaker = Arc::new(Mutex::new(s));
    let listener = TcpListener::bind(SocketAddr::new(ip.parse().unwrap(), port))
        .await
        .unwrap();
    let sp = speaker.clone();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some(ev) => { sp.lock().unwrap().handle(ev); }
                    None => return,
                },
                c = listener.accept() => if let Ok((stream, _)) = c {
                    sp.lock().unwrap().inbound(stream);
                },
            }
        }
    });
    Node { speaker, task }
}

fn p(s: &str) -> Prefix {
    Prefix::V4(s.parse::<Ipv4Prefix>().unwrap())
}

async fn wait_for(what: &str, f: impl Fn() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_speakers_exchange_routes() {
    let a = node("127.0.0.21", 11179, "127.0.0.22", None).await;
    let b = node("127.0.0.22", 11179, "127.0.0.21", None).await;
    wait_for("established", || {
        a.speaker.lock().unwrap().established_peers() == 1
            && b.speaker.lock().unwrap().established_peers() == 1
    })
    .await;
    let mut attrs = PathAttrs::local(NextHop::V4 {
        addr: "10.10.0.21".parse().unwrap(),
    });
    attrs.communities = vec![Community::new(65000, 1001)];
    attrs.local_pref = Some(150);
    a.speaker
        .lock()
        .unwrap()
        .originate(p("10.77.60.10/32"), attrs.clone());
    wait_for("route at b", || {
        b.speaker
            .lock()
            .unwrap()
            .rib()
            .best(&p("10.77.60.10/32"))
            .is_some()
    })
    .await;
    {
        let bs = b.speaker.lock().unwrap();
        let got = bs.rib().best(&p("10.77.60.10/32")).unwrap();
        assert_eq!(got.attrs.communities, vec![Community::new(65000, 1001)]);
        assert_eq!(got.attrs.local_pref, Some(150));
        assert_eq!(
            got.attrs.next_hop,
            NextHop::V4 {
                addr: "10.10.0.21".parse().unwrap()
            }
        );
        assert!(got.source.ibgp);
        assert!(bs.converged(), "End-of-RIB seen");
        let sum = bs.summary();
        assert_eq!(sum[0].state, "Established");
        assert!(
            !sum[0].capabilities.iter().any(|c| c == "graceful-restart"),
            "GR not configured"
        );
    }
    // Replace, then withdraw.
    attrs.local_pref = Some(300);
    a.speaker
        .lock()
        .unwrap()
        .originate(p("10.77.60.10/32"), attrs.clone());
    wait_for("replacement", || {
        b.speaker
            .lock()
            .unwrap()
            .rib()
            .best(&p("10.77.60.10/32"))
            .is_some_and(|x| x.attrs.local_pref == Some(300))
    })
    .await;
    a.speaker
        .lock()
        .unwrap()
        .withdraw_local(p("10.77.60.10/32"));
    wait_for("withdrawal", || {
        b.speaker
            .lock()
            .unwrap()
            .rib()
            .best(&p("10.77.60.10/32"))
            .is_none()
    })
    .await;
    // Many routes at once.
    for i in 0..3000u32 {
        let prefix = Prefix::V4(Ipv4Prefix::host(std::net::Ipv4Addr::from(0x0a4d_0000 + i)));
        a.speaker.lock().unwrap().originate(prefix, attrs.clone());
    }
    wait_for("3000 routes", || {
        b.speaker
            .lock()
            .unwrap()
            .rib()
            .prefix_count(cer_bgp::route::PeerId(1))
            == 3000
    })
    .await;
    a.speaker.lock().unwrap().shutdown();
    wait_for("b sees the session go", || {
        b.speaker.lock().unwrap().established_peers() == 0
    })
    .await;
    // No graceful restart negotiated: routes are gone.
    assert_eq!(
        b.speaker
            .lock()
            .unwrap()
            .rib()
            .prefix_count(cer_bgp::route::PeerId(1)),
        0
    );
    a.task.abort();
    b.task.abort();
}

/// Runs node "a" on a runtime of its own, so "crashing" it (dropping the
/// runtime) closes its sockets without any NOTIFICATION, like a killed process.
fn crashable_node(
    routes: Vec<&'static str>,
) -> (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (die_tx, die_rx) = std::sync::mpsc::channel::<()>();
    let h = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let a = node("127.0.0.31", 11179, "127.0.0.32", Some(60)).await;
            let attrs = PathAttrs::local(NextHop::V4 {
                addr: "10.10.0.31".parse().unwrap(),
            });
            for r in routes {
                a.speaker.lock().unwrap().originate(p(r), attrs.clone());
            }
            let _ = tokio::task::spawn_blocking(move || die_rx.recv()).await;
        });
        // Waits until every task (and so every socket, the listener too) is gone.
        rt.shutdown_timeout(Duration::from_secs(2));
    });
    (die_tx, h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restart_keeps_routes_until_end_of_rib() {
    let b = node("127.0.0.32", 11179, "127.0.0.31", Some(60)).await;
    let (die, h) = crashable_node(vec!["10.77.60.31/32", "10.77.60.32/32"]);
    let peer = cer_bgp::route::PeerId(1);
    wait_for("routes at b", || {
        b.speaker.lock().unwrap().rib().prefix_count(peer) == 2
    })
    .await;
    assert!(b.speaker.lock().unwrap().summary()[0]
        .capabilities
        .contains(&"graceful-restart".to_string()));
    // "a" crashes: its sockets close with no NOTIFICATION.
    die.send(()).unwrap();
    h.join().unwrap();
    wait_for("b notices", || {
        b.speaker.lock().unwrap().established_peers() == 0
    })
    .await;
    {
        let bs = b.speaker.lock().unwrap();
        assert_eq!(bs.rib().prefix_count(peer), 2, "kept during the restart");
        assert_eq!(bs.rib().stale_count(peer), 2);
    }
    // "a" restarts, re-advertises one route, then End-of-RIB: the other is swept.
    let (die, h) = crashable_node(vec!["10.77.60.31/32"]);
    wait_for("re-established and swept", || {
        let bs = b.speaker.lock().unwrap();
        bs.established_peers() == 1
            && bs.rib().stale_count(peer) == 0
            && bs.rib().prefix_count(peer) == 1
    })
    .await;
    assert!(b
        .speaker
        .lock()
        .unwrap()
        .rib()
        .best(&p("10.77.60.32/32"))
        .is_none());
    assert!(b
        .speaker
        .lock()
        .unwrap()
        .rib()
        .best(&p("10.77.60.31/32"))
        .is_some());
    die.send(()).unwrap();
    h.join().unwrap();
    b.task.abort();
}
