//! Two cer-bgp speakers over real TCP on loopback addresses: session
//! establishment, route exchange with communities, replacement, withdrawal,
//! End-of-RIB, graceful restart keeping routes across a session loss, and a
//! 4-octet AS path crossing a session negotiated with 2-octet ASNs, and a
//! peer that stops reading ended by its hold timer.

use cer_bgp::decision::DecisionConfig;
use cer_bgp::driver::SpeakerIo;
use cer_bgp::fsm::PeerAs;
use cer_bgp::route::{AsSegment, AsSegmentKind, Community, Ipv4Prefix, NextHop, PathAttrs, Prefix};
use cer_bgp::session::SessionEvent;
use cer_bgp::speaker::{NeighborConfig, Speaker, SpeakerConfig};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::mpsc;

struct Node {
    speaker: Arc<Mutex<Speaker>>,
    task: tokio::task::JoinHandle<()>,
}

async fn node(ip: &str, port: u16, peer_ip: &str, gr: Option<u16>) -> Node {
    let remote = SocketAddr::new(peer_ip.parse().unwrap(), port);
    node_to(ip, port, remote, false, gr).await
}

/// A speaker on `ip:port` with one iBGP neighbor at `remote`.
async fn node_to(ip: &str, port: u16, remote: SocketAddr, passive: bool, gr: Option<u16>) -> Node {
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
    let mut s = Speaker::new(cfg);
    s.add_neighbor(NeighborConfig {
        remote,
        local: Some(ip.parse().unwrap()),
        peer_as: PeerAs::Internal,
        passive,
        rr_client: false,
        next_hop_self: false,
        import: None,
        export: None,
        description: None,
        interface: None,
        add_path: Default::default(),
        security: Default::default(),
        keep_received: true,
    });
    let speaker = Arc::new(Mutex::new(s));
    let listener = TcpListener::bind(SocketAddr::new(ip.parse().unwrap(), port))
        .await
        .unwrap();
    let sp = speaker.clone();
    let mut io = SpeakerIo::new(tx);
    // The test changes the speaker from outside this loop (originate,
    // shutdown): its outputs are performed within 20 ms.
    let mut flush = tokio::time::interval(Duration::from_millis(20));
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some(ev) => {
                        let mut s = sp.lock().unwrap();
                        io.event(&mut s, ev);
                        io.flush(&mut s);
                    }
                    None => return,
                },
                c = listener.accept() => if let Ok((stream, _)) = c {
                    let mut s = sp.lock().unwrap();
                    io.flush(&mut s);
                    io.inbound(&s, stream);
                },
                _ = flush.tick() => io.flush(&mut sp.lock().unwrap()),
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

/// Copies BGP messages from `rd` to `wr`, taking the 4-octet AS capability
/// (code 65) out of OPENs.
async fn relay_without_asn4(mut rd: OwnedReadHalf, mut wr: OwnedWriteHalf) {
    loop {
        let mut h = [0u8; 19];
        if rd.read_exact(&mut h).await.is_err() {
            return;
        }
        let len = usize::from(u16::from_be_bytes([h[16], h[17]]));
        let mut m = h.to_vec();
        m.resize(len.max(19), 0);
        if rd.read_exact(&mut m[19..]).await.is_err() {
            return;
        }
        if m[18] == 1 {
            m = open_without_asn4(&m);
        }
        if wr.write_all(&m).await.is_err() {
            return;
        }
    }
}

/// An OPEN (RFC 4271 4.2) with the 4-octet AS capability (RFC 6793 9) left out.
fn open_without_asn4(m: &[u8]) -> Vec<u8> {
    let mut params = Vec::new();
    let mut rest = &m[29..];
    while let [typ, len, tail @ ..] = rest {
        let (value, next) = tail.split_at(usize::from(*len));
        if *typ == 2 {
            // A Capabilities parameter: keep each capability but 65.
            let mut caps = Vec::new();
            let mut c = value;
            while let [code, clen, ctail @ ..] = c {
                let (cvalue, cnext) = ctail.split_at(usize::from(*clen));
                if *code != 65 {
                    caps.extend_from_slice(&[*code, *clen]);
                    caps.extend_from_slice(cvalue);
                }
                c = cnext;
            }
            params.extend_from_slice(&[2, caps.len() as u8]);
            params.extend_from_slice(&caps);
        } else {
            params.extend_from_slice(&[*typ, *len]);
            params.extend_from_slice(value);
        }
        rest = next;
    }
    let mut out = m[..28].to_vec();
    out.push(params.len() as u8);
    out.extend_from_slice(&params);
    let len = out.len() as u16;
    out[16..18].copy_from_slice(&len.to_be_bytes());
    out
}

/// Accepts connections on `listen` and relays each to `to`, from `from`'s
/// address (so `to` sees its configured neighbor), OPENs without the
/// 4-octet AS capability: both ends negotiate 2-octet ASNs (RFC 6793 "OLD").
async fn asn4_stripping_relay(listen: SocketAddr, to: SocketAddr, from: IpAddr) {
    let listener = TcpListener::bind(listen).await.unwrap();
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            return;
        };
        let sock = TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::new(from, 0)).unwrap();
        let Ok(outbound) = sock.connect(to).await else {
            continue;
        };
        let (ir, iw) = inbound.into_split();
        let (or, ow) = outbound.into_split();
        tokio::spawn(relay_without_asn4(ir, ow));
        tokio::spawn(relay_without_asn4(or, iw));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_octet_path_crosses_a_two_octet_session_intact() {
    // a -> relay (127.0.0.42:11180) -> b (127.0.0.42:11179); b only listens.
    let relay = SocketAddr::new("127.0.0.42".parse().unwrap(), 11180);
    let b_addr = SocketAddr::new("127.0.0.42".parse().unwrap(), 11179);
    let a_addr = SocketAddr::new("127.0.0.41".parse().unwrap(), 11179);
    let relay_task = tokio::spawn(asn4_stripping_relay(relay, b_addr, a_addr.ip()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let b = node_to("127.0.0.42", 11179, a_addr, true, None).await;
    let a = node_to("127.0.0.41", 11179, relay, false, None).await;
    wait_for("established", || {
        a.speaker.lock().unwrap().established_peers() == 1
            && b.speaker.lock().unwrap().established_peers() == 1
    })
    .await;
    for s in [&a, &b] {
        let caps = s.speaker.lock().unwrap().summary()[0].capabilities.clone();
        assert!(!caps.iter().any(|c| c == "4-octet-as"), "{caps:?}");
    }
    let mut attrs = PathAttrs::local(NextHop::V4 {
        addr: "10.10.0.41".parse().unwrap(),
    });
    attrs.as_path = vec![
        AsSegment {
            kind: AsSegmentKind::Sequence,
            asns: vec![4_200_000_001, 65010, 4_200_000_002],
        },
        AsSegment {
            kind: AsSegmentKind::Set,
            asns: vec![4_200_000_003, 65011],
        },
    ];
    attrs.aggregator = Some((4_200_000_009, "192.0.2.9".parse().unwrap()));
    a.speaker
        .lock()
        .unwrap()
        .originate(p("10.77.60.41/32"), attrs.clone());
    wait_for("route at b", || {
        b.speaker
            .lock()
            .unwrap()
            .rib()
            .best(&p("10.77.60.41/32"))
            .is_some()
    })
    .await;
    let bs = b.speaker.lock().unwrap();
    let got = bs.rib().best(&p("10.77.60.41/32")).unwrap();
    assert_eq!(
        got.attrs.as_path, attrs.as_path,
        "AS_TRANS + AS4_PATH merged back"
    );
    assert_eq!(got.attrs.aggregator, attrs.aggregator);
    let s = &bs.summary()[0];
    assert!(s.update_errors.is_empty(), "{:?}", s.update_errors);
    drop(bs);
    a.task.abort();
    b.task.abort();
    relay_task.abort();
}

/// A peer that stops reading (and sending) is ended by its hold timer
/// while we still have plenty for it: the peer opens the session (hold
/// time 3 s), shrinks its receive buffer, then goes silent while 100000
/// routes of distinct attributes (one small UPDATE each) are queued for
/// it. What this does not show on loopback: a session loop that waited on
/// its writer would pass too, because the driver stops queuing at 1024
/// commands (`driver::BEHIND_AT`) and loopback's send buffer (sized from
/// its 64 KiB MSS) takes what gets through; the loop's not waiting is by
/// construction (`session::queue`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_is_ended_by_its_hold_timer() {
    use cer_bgp::packet::{Capabilities, Codec};
    let peer_addr: SocketAddr = "127.0.0.52:11179".parse().unwrap();
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.set_reuseaddr(true).unwrap();
    sock.bind(peer_addr).unwrap();
    let listener = sock.listen(4).unwrap();
    let a = node_to("127.0.0.51", 11179, peer_addr, false, None).await;
    let (stream, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .expect("cer-bgp connects")
        .unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let caps = Capabilities {
        ipv4_unicast: true,
        four_octet_as: Some(65000),
        ..Capabilities::default()
    };
    let open = Codec::new().encode_open(65000, 3, "127.0.0.52".parse().unwrap(), &caps);
    wr.write_all(&open).await.unwrap();
    wr.write_all(&cer_bgp::packet::keepalive()).await.unwrap();
    // Its OPEN and KEEPALIVE, then nothing more is read.
    let mut got = [0u8; 19];
    let mut seen = 0;
    while seen < 2 {
        rd.read_exact(&mut got[..19]).await.unwrap();
        let len = usize::from(u16::from_be_bytes([got[16], got[17]]));
        let mut rest = vec![0u8; len - 19];
        rd.read_exact(&mut rest).await.unwrap();
        seen += 1;
    }
    wait_for("established", || {
        a.speaker.lock().unwrap().established_peers() == 1
    })
    .await;
    {
        let mut s = a.speaker.lock().unwrap();
        for i in 0..100_000u32 {
            let mut attrs = PathAttrs::local(NextHop::V4 {
                addr: "127.0.0.51".parse().unwrap(),
            });
            attrs.med = Some(i);
            let prefix = Prefix::V4(Ipv4Prefix::host(std::net::Ipv4Addr::from(0x0a5a_0000 + i)));
            s.originate(prefix, attrs);
        }
    }
    let t0 = std::time::Instant::now();
    wait_for("the hold timer to end the session", || {
        a.speaker.lock().unwrap().established_peers() == 0
    })
    .await;
    let s = a.speaker.lock().unwrap();
    let n = &s.summary()[0];
    assert!(
        n.last_error.as_deref().is_some_and(|e| e.contains("hold")),
        "{:?}",
        n.last_error
    );
    eprintln!(
        "ended by its hold timer {:?} after the routes were queued",
        t0.elapsed()
    );
    drop(s);
    drop((rd, wr));
    a.task.abort();
}
