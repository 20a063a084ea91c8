//! The speaker driven by events alone, no sockets and no runtime: what
//! it outputs for each peer (session start and stop, announcements,
//! withdrawals, End-of-RIB) as routes are imported, exported, reflected and
//! kept across a graceful restart. Connection collisions are decided by
//! `fsm::collision_keeps_current` (tested in `fsm.rs`); the speaker only ever
//! sees the surviving connection's events.

use super::*;
use crate::events::{Output, PeerEvent, SessionCmd};
use crate::packet::{Reach, Update};
use crate::route::{AsSegment, AsSegmentKind, Ipv4Prefix};

const LOCAL_AS: u32 = 65000;
const LOCAL_ID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const CLUSTER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);

fn speaker(cluster_id: Option<Ipv4Addr>) -> Speaker {
    Speaker::new(SpeakerConfig {
        local_as: LOCAL_AS,
        router_id: LOCAL_ID,
        cluster_id,
        hold_time: 90,
        connect_retry: Duration::from_secs(5),
        graceful_restart: Some(120),
        restarting: false,
        forwarding_preserved: true,
        decision: DecisionConfig::default(),
    })
}

fn neighbor(addr: &str, peer_as: PeerAs, rr_client: bool) -> NeighborConfig {
    NeighborConfig {
        remote: SocketAddr::new(addr.parse().unwrap(), 179),
        local: None,
        peer_as,
        passive: false,
        rr_client,
        next_hop_self: false,
        import: None,
        export: None,
        description: None,
        interface: None,
        add_path: AddPath::default(),
        security: Default::default(),
        keep_received: true,
    }
}

fn pfx(s: &str) -> Prefix {
    Prefix::V4(s.parse::<Ipv4Prefix>().unwrap())
}

fn attrs(next_hop: &str, as_path: &[u32]) -> PathAttrs {
    let mut a = PathAttrs::local(NextHop::V4 {
        addr: next_hop.parse().unwrap(),
    });
    if !as_path.is_empty() {
        a.as_path = vec![AsSegment {
            kind: AsSegmentKind::Sequence,
            asns: as_path.to_vec(),
        }];
    }
    a
}

/// What an IPv4 session with a peer of `peer_as` (router id `id`)
/// negotiated, with the peer's graceful-restart capability `gr`.
fn negotiated(peer_as: u32, id: &str, gr: Option<GracefulRestart>) -> Box<Negotiated> {
    Box::new(Negotiated {
        peer_graceful_restart: gr,
        ..Negotiated::ipv4(peer_as, id.parse().unwrap())
    })
}

/// A peer of `peer_as` with router id `id`, established; our address on the
/// session is `local`. `gr`: the peer restarts gracefully (120 s, IPv4).
fn establish(s: &mut Speaker, peer: PeerId, peer_as: u32, id: &str, local: &str, gr: bool) {
    let gr = gr.then(|| GracefulRestart {
        restart_time: 120,
        restarting: false,
        families: vec![(Family::Ipv4Unicast, true)],
    });
    s.handle(PeerEvent::Established {
        peer,
        negotiated: negotiated(peer_as, id, gr),
        local_addr: local.parse().unwrap(),
    });
}

fn update(s: &mut Speaker, peer: PeerId, prefix: &str, a: PathAttrs) -> Vec<Prefix> {
    s.handle(PeerEvent::Update {
        peer,
        update: Update {
            announced: vec![Reach {
                prefixes: vec![pfx(prefix).into()],
                attrs: Arc::new(a),
            }],
            ..Update::default()
        },
    })
}

fn withdraw(s: &mut Speaker, peer: PeerId, prefix: &str) -> Vec<Prefix> {
    s.handle(PeerEvent::Update {
        peer,
        update: Update {
            withdrawn: vec![pfx(prefix).into()],
            ..Update::default()
        },
    })
}

fn end_of_rib(s: &mut Speaker, peer: PeerId) -> Vec<Prefix> {
    s.handle(PeerEvent::Update {
        peer,
        update: Update {
            end_of_rib: Some(Family::Ipv4Unicast),
            ..Update::default()
        },
    })
}

fn down(s: &mut Speaker, peer: PeerId, tcp_failure: bool) -> Vec<Prefix> {
    s.handle(PeerEvent::Down {
        peer,
        reason: "test".into(),
        was_established: true,
        tcp_failure,
    })
}

/// The session commands each peer was sent since the last call.
fn sent(s: &mut Speaker) -> BTreeMap<PeerId, Vec<SessionCmd>> {
    let mut by_peer: BTreeMap<PeerId, Vec<SessionCmd>> = BTreeMap::new();
    for out in s.take_outputs() {
        match out {
            Output::Send(peer, cmd) => by_peer.entry(peer).or_default().push(cmd),
            Output::SendMany(peers, cmd) => {
                for peer in peers.iter() {
                    by_peer.entry(*peer).or_default().push(cmd.clone());
                }
            }
            _ => {}
        }
    }
    by_peer
}

/// The attributes `peer` was sent for `prefix` (in its last announcement of it).
fn announced(cmds: &[SessionCmd], prefix: &str) -> Option<Arc<PathAttrs>> {
    cmds.iter().rev().find_map(|c| match c {
        SessionCmd::Announce(ps, a) if ps.contains(&pfx(prefix).into()) => Some(a.clone()),
        _ => None,
    })
}

fn withdrawn(cmds: &[SessionCmd], prefix: &str) -> bool {
    cmds.iter()
        .any(|c| matches!(c, SessionCmd::Withdraw(ps) if ps.contains(&pfx(prefix).into())))
}

/// The counters of one peer (`show bgp summary`).
fn summary_of(s: &Speaker, id: PeerId) -> NeighborSummary {
    s.summary().into_iter().find(|n| n.peer == id.0).unwrap()
}

/// eBGP peer A (graceful restart, 120 s) with 10.5.0.0/16 installed, and
/// eBGP peer B that hears what happens to it; both established.
fn gr_peer_and_listener() -> (Speaker, PeerId, PeerId) {
    let mut s = speaker(None);
    let a = s.add_neighbor(neighbor("10.0.0.2", PeerAs::Is(65001), false));
    let b = s.add_neighbor(neighbor("10.0.0.3", PeerAs::Is(65002), false));
    establish(&mut s, a, 65001, "10.0.0.2", "10.0.0.1", true);
    establish(&mut s, b, 65002, "10.0.0.3", "10.0.0.1", false);
    update(&mut s, a, "10.5.0.0/16", attrs("10.0.0.2", &[65001]));
    (s, a, b)
}

#[test]
fn neighbors_start_and_stop_through_outputs() {
    let mut s = speaker(None);
    let a = s.add_neighbor(neighbor("192.0.2.2", PeerAs::Is(65001), false));
    let outs = s.take_outputs();
    let [Output::Start(session)] = &outs[..] else {
        panic!("{outs:?}")
    };
    assert_eq!(session.peer, a);
    assert_eq!(session.remote, "192.0.2.2:179".parse().unwrap());
    assert_eq!(session.fsm.local_as, LOCAL_AS);
    assert!(session.fsm.caps.graceful_restart.is_some());
    assert!(s.take_outputs().is_empty(), "outputs are taken once");

    s.reset(a);
    assert!(
        matches!(&s.take_outputs()[..], [Output::Reset(p, n)] if *p == a && n.code == 6 && n.subcode == 4)
    );
    s.remove_neighbor(a);
    assert!(
        matches!(&s.take_outputs()[..], [Output::Stop(p, n)] if *p == a && n.code == 6 && n.subcode == 3)
    );
    // Events of a removed peer (its session's last words) change nothing.
    assert!(down(&mut s, a, true).is_empty());
    assert!(s.take_outputs().is_empty());
}

#[test]
fn an_established_peer_gets_the_table_then_end_of_rib() {
    let mut s = speaker(None);
    s.originate(pfx("10.77.60.10/32"), attrs("10.0.0.1", &[]));
    let b = s.add_neighbor(neighbor("192.0.2.2", PeerAs::Is(65001), false));
    s.take_outputs();
    // Nothing is sent before the session is established.
    s.originate(pfx("10.77.60.11/32"), attrs("10.0.0.1", &[]));
    assert!(sent(&mut s).is_empty());
    establish(&mut s, b, 65001, "192.0.2.2", "192.0.2.1", false);
    let out = sent(&mut s).remove(&b).unwrap();
    let a = announced(&out, "10.77.60.10/32").expect("table announced");
    assert!(announced(&out, "10.77.60.11/32").is_some());
    // eBGP: our AS first, our session address as next hop.
    assert_eq!(a.as_path[0].asns, vec![LOCAL_AS]);
    assert_eq!(
        a.next_hop,
        NextHop::V4 {
            addr: "192.0.2.1".parse().unwrap()
        }
    );
    assert_eq!(out.last(), Some(&SessionCmd::EndOfRib(Family::Ipv4Unicast)));
    // A ROUTE-REFRESH gets the table again.
    s.handle(PeerEvent::RouteRefresh {
        peer: b,
        family: Family::Ipv4Unicast,
    });
    let again = sent(&mut s).remove(&b).unwrap();
    assert!(announced(&again, "10.77.60.10/32").is_some());
    assert_eq!(
        again.last(),
        Some(&SessionCmd::EndOfRib(Family::Ipv4Unicast))
    );
}

#[test]
fn import_drops_loops_and_policy_rejections_and_installs_the_rest() {
    let mut s = speaker(None);
    let a = s.add_neighbor(neighbor("192.0.2.2", PeerAs::Is(65001), false));
    let mut strict = neighbor("192.0.2.3", PeerAs::Is(65002), false);
    strict.import = Some(Policy::reject_all("deny-in"));
    let c = s.add_neighbor(strict);
    establish(&mut s, a, 65001, "192.0.2.2", "192.0.2.1", false);
    establish(&mut s, c, 65002, "192.0.2.3", "192.0.2.1", false);
    s.take_outputs();

    // Our own AS in the path: a loop (RFC 4271 9.1.2), not installed.
    update(
        &mut s,
        a,
        "10.1.0.0/16",
        attrs("192.0.2.2", &[65001, LOCAL_AS]),
    );
    assert!(s.rib().best(&pfx("10.1.0.0/16")).is_none());
    // Rejected by the import policy: counted, not installed.
    update(&mut s, c, "10.2.0.0/16", attrs("192.0.2.3", &[65002]));
    assert!(s.rib().best(&pfx("10.2.0.0/16")).is_none());
    assert_eq!(summary_of(&s, c).import_rejected, 1);
    // A clean path is installed, reported as changed, exported to the other peer.
    let changed = update(&mut s, a, "10.3.0.0/16", attrs("192.0.2.2", &[65001]));
    assert_eq!(changed, vec![pfx("10.3.0.0/16")]);
    assert_eq!(s.rib().best(&pfx("10.3.0.0/16")).unwrap().source.peer, a);
    let out = sent(&mut s);
    let to_c = announced(&out[&c], "10.3.0.0/16").expect("exported to the other eBGP peer");
    assert_eq!(to_c.as_path[0].asns, vec![LOCAL_AS, 65001]);
    assert!(!out.contains_key(&a), "never back to the peer it came from");
    // Its withdrawal follows.
    withdraw(&mut s, a, "10.3.0.0/16");
    assert!(withdrawn(&sent(&mut s)[&c], "10.3.0.0/16"));
}

#[test]
fn ibgp_routes_are_not_passed_between_ibgp_peers_without_reflection() {
    let mut s = speaker(None);
    let a = s.add_neighbor(neighbor("10.0.0.2", PeerAs::Internal, false));
    let b = s.add_neighbor(neighbor("10.0.0.3", PeerAs::Internal, false));
    establish(&mut s, a, LOCAL_AS, "10.0.0.2", "10.0.0.1", false);
    establish(&mut s, b, LOCAL_AS, "10.0.0.3", "10.0.0.1", false);
    s.take_outputs();
    update(&mut s, a, "10.77.60.10/32", attrs("10.0.0.2", &[]));
    assert!(s.rib().best(&pfx("10.77.60.10/32")).is_some());
    assert!(sent(&mut s).is_empty(), "iBGP split horizon");
}

#[test]
fn a_reflector_reflects_client_routes_with_originator_and_cluster_list() {
    let mut s = speaker(Some(CLUSTER));
    let c1 = s.add_neighbor(neighbor("10.0.0.11", PeerAs::Internal, true));
    let c2 = s.add_neighbor(neighbor("10.0.0.12", PeerAs::Internal, true));
    let n1 = s.add_neighbor(neighbor("10.0.0.21", PeerAs::Internal, false));
    let n2 = s.add_neighbor(neighbor("10.0.0.22", PeerAs::Internal, false));
    for (p, id) in [
        (c1, "10.0.0.11"),
        (c2, "10.0.0.12"),
        (n1, "10.0.0.21"),
        (n2, "10.0.0.22"),
    ] {
        establish(&mut s, p, LOCAL_AS, id, "10.0.0.1", false);
    }
    s.take_outputs();

    // From a client: to every other peer, clients and non-clients.
    update(&mut s, c1, "10.77.60.11/32", attrs("10.0.0.11", &[]));
    let out = sent(&mut s);
    assert!(!out.contains_key(&c1));
    for p in [c2, n1, n2] {
        let a = announced(&out[&p], "10.77.60.11/32").expect("reflected");
        assert_eq!(a.originator_id, Some("10.0.0.11".parse().unwrap()));
        assert_eq!(a.cluster_list, vec![CLUSTER]);
        // Reflection changes neither the next hop nor the path.
        assert_eq!(a.next_hop, attrs("10.0.0.11", &[]).next_hop);
        assert!(a.as_path.is_empty());
    }

    // From a non-client: to clients only.
    update(&mut s, n1, "10.77.60.12/32", attrs("10.0.0.21", &[]));
    let out = sent(&mut s);
    assert!(announced(&out[&c1], "10.77.60.12/32").is_some());
    assert!(announced(&out[&c2], "10.77.60.12/32").is_some());
    assert!(!out.contains_key(&n1) && !out.contains_key(&n2));

    // A path that already carries our cluster id is a reflection loop (RFC 4456 8).
    let mut looped = attrs("10.0.0.21", &[]);
    looped.cluster_list = vec![CLUSTER];
    looped.originator_id = Some("10.0.0.99".parse().unwrap());
    update(&mut s, n2, "10.77.60.13/32", looped);
    assert!(s.rib().best(&pfx("10.77.60.13/32")).is_none());
}

#[test]
fn graceful_restart_keeps_stale_routes_until_end_of_rib() {
    let (mut s, a, b) = gr_peer_and_listener();
    update(&mut s, a, "10.6.0.0/16", attrs("10.0.0.2", &[65001]));
    s.take_outputs();

    // The TCP session dies without a NOTIFICATION: the routes stay, stale,
    // and nothing is withdrawn from the other peer.
    assert!(down(&mut s, a, true).is_empty());
    assert!(s.rib().best(&pfx("10.5.0.0/16")).is_some());
    assert_eq!(summary_of(&s, a).prefixes_stale, 2);
    assert!(sent(&mut s).is_empty());

    // It comes back, announces one of the two again, then End-of-RIB: the
    // other is swept and withdrawn.
    establish(&mut s, a, 65001, "10.0.0.2", "10.0.0.1", true);
    update(&mut s, a, "10.5.0.0/16", attrs("10.0.0.2", &[65001]));
    let swept = end_of_rib(&mut s, a);
    assert!(swept.contains(&pfx("10.6.0.0/16")));
    assert!(s.rib().best(&pfx("10.6.0.0/16")).is_none());
    assert!(s.rib().best(&pfx("10.5.0.0/16")).is_some());
    assert_eq!(summary_of(&s, a).prefixes_stale, 0);
    let out = sent(&mut s);
    assert!(withdrawn(&out[&b], "10.6.0.0/16"));
    assert!(!withdrawn(&out[&b], "10.5.0.0/16"));
}

#[test]
fn graceful_restart_sweeps_at_the_restart_time_if_the_peer_stays_away() {
    let (mut s, a, b) = gr_peer_and_listener();
    s.take_outputs();
    let lost = Instant::now();
    down(&mut s, a, true);
    assert!(s.tick_at(lost + Duration::from_secs(60)).is_empty());
    assert!(s.rib().best(&pfx("10.5.0.0/16")).is_some());
    let swept = s.tick_at(lost + Duration::from_secs(121));
    assert_eq!(swept, vec![pfx("10.5.0.0/16")]);
    assert!(s.rib().best(&pfx("10.5.0.0/16")).is_none());
    assert!(withdrawn(&sent(&mut s)[&b], "10.5.0.0/16"));
}

#[test]
fn a_notification_or_a_helper_only_peer_withdraws_at_once() {
    let (mut s, a, b) = gr_peer_and_listener();
    s.take_outputs();
    // A NOTIFICATION was exchanged: graceful restart does not apply.
    assert_eq!(down(&mut s, a, false), vec![pfx("10.5.0.0/16")]);
    assert!(s.rib().best(&pfx("10.5.0.0/16")).is_none());
    assert!(withdrawn(&sent(&mut s)[&b], "10.5.0.0/16"));
    // And a down peer is sent nothing until it is established again.
    update(&mut s, b, "10.9.0.0/16", attrs("10.0.0.3", &[65002]));
    assert!(!sent(&mut s).contains_key(&a));

    // A peer whose capability lists no families (a helper only, FRR's
    // default) is not kept either, even on a TCP failure (RFC 4724 4.2).
    let helper = negotiated(
        65003,
        "10.0.0.4",
        Some(GracefulRestart {
            restart_time: 120,
            restarting: false,
            families: vec![],
        }),
    );
    let h = s.add_neighbor(neighbor("10.0.0.4", PeerAs::Is(65003), false));
    s.handle(PeerEvent::Established {
        peer: h,
        negotiated: helper,
        local_addr: "10.0.0.1".parse().unwrap(),
    });
    update(&mut s, h, "10.8.0.0/16", attrs("10.0.0.4", &[65003]));
    assert_eq!(down(&mut s, h, true), vec![pfx("10.8.0.0/16")]);
}

#[test]
fn a_failed_path_withdraws_at_once_despite_graceful_restart() {
    let (mut s, a, b) = gr_peer_and_listener();
    s.take_outputs();
    // BFD saw the path to A fail: A's routes go now, although A restarts
    // gracefully, and A's session is reset with Cease / BFD Down.
    assert_eq!(s.peer_failed(a, "BFD down"), vec![pfx("10.5.0.0/16")]);
    assert!(s.rib().best(&pfx("10.5.0.0/16")).is_none());
    assert_eq!(summary_of(&s, a).prefixes_stale, 0);
    let outs = s.take_outputs();
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::Reset(p, n) if *p == a && n.code == 6 && n.subcode == 10
    )));
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::Send(p, SessionCmd::Withdraw(ps)) if *p == b && ps.contains(&pfx("10.5.0.0/16").into())
    )));
    // An UPDATE queued before the reset is ignored; the session's own Down
    // (a TCP failure once the reset closes it) finds A down already: nothing
    // is kept stale and nothing is counted twice.
    assert!(update(&mut s, a, "10.6.0.0/16", attrs("10.0.0.2", &[65001])).is_empty());
    assert!(down(&mut s, a, true).is_empty());
    assert_eq!(summary_of(&s, a).prefixes_stale, 0);
    assert_eq!(summary_of(&s, a).flaps, 1);
    assert_eq!(summary_of(&s, a).last_error.as_deref(), Some("BFD down"));
    // A peer that is not up is not failed twice.
    assert!(s.peer_failed(a, "BFD down").is_empty());
    assert!(s.take_outputs().is_empty());
    // A comes back: its routes are taken again.
    establish(&mut s, a, 65001, "10.0.0.2", "10.0.0.1", true);
    update(&mut s, a, "10.5.0.0/16", attrs("10.0.0.2", &[65001]));
    assert!(s.rib().best(&pfx("10.5.0.0/16")).is_some());
}

/// Establishes `peer` (iBGP) with ADD-PATH as negotiated: `rx` we receive
/// path ids from it, `tx` we send it every path.
fn establish_add_path(s: &mut Speaker, peer: PeerId, id: &str, rx: bool, tx: bool) {
    let mut n = negotiated(LOCAL_AS, id, None);
    n.add_path_rx = rx;
    n.add_path_tx = tx;
    s.handle(PeerEvent::Established {
        peer,
        negotiated: n,
        local_addr: "10.0.0.1".parse().unwrap(),
    });
}

/// Every (path id, next hop) `cmds` announced for `prefix`, and the path ids withdrawn.
fn paths_sent(cmds: &[SessionCmd], prefix: &str) -> (Vec<(u32, NextHop)>, Vec<u32>) {
    let (mut ann, mut wd) = (Vec::new(), Vec::new());
    for c in cmds {
        match c {
            SessionCmd::Announce(ns, a) => ann.extend(
                ns.iter()
                    .filter(|n| n.prefix == pfx(prefix))
                    .map(|n| (n.path_id, a.next_hop)),
            ),
            SessionCmd::Withdraw(ns) => wd.extend(
                ns.iter()
                    .filter(|n| n.prefix == pfx(prefix))
                    .map(|n| n.path_id),
            ),
            SessionCmd::EndOfRib(_) | SessionCmd::Encoded(_) | SessionCmd::RouteRefresh(_) => {}
        }
    }
    ann.sort_by_key(|(id, _)| *id);
    wd.sort_unstable();
    (ann, wd)
}

fn nh(s: &str) -> NextHop {
    NextHop::V4 {
        addr: s.parse().unwrap(),
    }
}

#[test]
fn a_reflector_sends_every_path_to_add_path_clients_and_the_best_to_others() {
    let mut s = speaker(Some(CLUSTER));
    let a = s.add_neighbor(neighbor("10.0.0.2", PeerAs::Internal, true));
    let b = s.add_neighbor(neighbor("10.0.0.3", PeerAs::Internal, true));
    let c = s.add_neighbor(neighbor("10.0.0.4", PeerAs::Internal, true));
    let d = s.add_neighbor(neighbor("10.0.0.5", PeerAs::Internal, true));
    establish_add_path(&mut s, a, "10.0.0.2", false, false);
    establish_add_path(&mut s, b, "10.0.0.3", false, false);
    establish_add_path(&mut s, c, "10.0.0.4", false, true);
    establish_add_path(&mut s, d, "10.0.0.5", false, false);
    s.take_outputs();
    // Two owner candidates for one /32; A's wins (lower router id).
    update(&mut s, a, "10.77.60.10/32", attrs("10.0.0.2", &[]));
    update(&mut s, b, "10.77.60.10/32", attrs("10.0.0.3", &[]));
    let out = sent(&mut s);
    let (to_c, _) = paths_sent(&out[&c], "10.77.60.10/32");
    assert_eq!(to_c.len(), 2, "both paths to the ADD-PATH client: {to_c:?}");
    assert_ne!(to_c[0].0, to_c[1].0, "under different path ids");
    assert!(to_c.iter().all(|(id, _)| *id != 0));
    let id_of = |hop: &str| to_c.iter().find(|(_, h)| *h == nh(hop)).unwrap().0;
    let (id_a, id_b) = (id_of("10.0.0.2"), id_of("10.0.0.3"));
    let (to_d, _) = paths_sent(&out[&d], "10.77.60.10/32");
    assert_eq!(to_d, vec![(0, nh("10.0.0.2"))], "the best only, no path id");
    // B gets A's path and A gets B's: never a path back to its source.
    assert_eq!(
        paths_sent(&out[&b], "10.77.60.10/32").0,
        vec![(0, nh("10.0.0.2"))]
    );
    assert_eq!(summary_of(&s, c).prefixes_sent, 2);

    // A withdraws: C loses that path alone (B's keeps its id), D gets B's as the new best.
    withdraw(&mut s, a, "10.77.60.10/32");
    let out = sent(&mut s);
    assert_eq!(
        paths_sent(&out[&c], "10.77.60.10/32"),
        (vec![], vec![id_a]),
        "only A's path goes; B's is not re-sent"
    );
    assert_eq!(
        paths_sent(&out[&d], "10.77.60.10/32").0,
        vec![(0, nh("10.0.0.3"))]
    );
    // A comes back with a better path: C gets it under a path id B's is not using.
    let mut better = attrs("10.0.0.2", &[]);
    better.local_pref = Some(200);
    update(&mut s, a, "10.77.60.10/32", better);
    let out = sent(&mut s);
    let (to_c, wd) = paths_sent(&out[&c], "10.77.60.10/32");
    assert!(wd.is_empty());
    assert_eq!(to_c.len(), 1);
    assert_ne!(to_c[0].0, id_b);
    // A client that comes up later gets every path in its table.
    s.handle(PeerEvent::RouteRefresh {
        peer: c,
        family: Family::Ipv4Unicast,
    });
    let (all, _) = paths_sent(&sent(&mut s)[&c], "10.77.60.10/32");
    assert_eq!(all.len(), 2);
}

#[test]
fn paths_received_with_ids_are_kept_apart_and_withdrawn_one_by_one() {
    let mut s = speaker(None);
    let rr = s.add_neighbor(neighbor("10.0.0.9", PeerAs::Internal, false));
    establish_add_path(&mut s, rr, "10.0.0.9", true, false);
    s.take_outputs();
    let announce = |s: &mut Speaker, path_id: u32, hop: &str| {
        let mut a = attrs(hop, &[]);
        a.originator_id = Some(hop.parse().unwrap());
        a.cluster_list = vec![CLUSTER];
        s.handle(PeerEvent::Update {
            peer: rr,
            update: Update {
                announced: vec![Reach {
                    prefixes: vec![Nlri {
                        prefix: pfx("10.77.60.10/32"),
                        path_id,
                    }],
                    attrs: Arc::new(a),
                }],
                ..Update::default()
            },
        })
    };
    announce(&mut s, 1, "10.0.0.2");
    let changed = announce(&mut s, 2, "10.0.0.3");
    assert_eq!(
        changed,
        vec![pfx("10.77.60.10/32")],
        "a second path is a change"
    );
    let paths = s.rib().paths(&pfx("10.77.60.10/32"));
    assert_eq!(paths.len(), 2, "one reflector, two owner candidates");
    assert_eq!(summary_of(&s, rr).prefixes_received, 2);
    assert!(summary_of(&s, rr)
        .capabilities
        .contains(&"add-path-receive".to_string()));
    // Withdrawing path 1 leaves path 2.
    let changed = s.handle(PeerEvent::Update {
        peer: rr,
        update: Update {
            withdrawn: vec![Nlri {
                prefix: pfx("10.77.60.10/32"),
                path_id: 1,
            }],
            ..Update::default()
        },
    });
    assert_eq!(changed, vec![pfx("10.77.60.10/32")]);
    let paths = s.rib().paths(&pfx("10.77.60.10/32"));
    assert_eq!(paths.len(), 1);
    assert_eq!(paths[0].rx_id, 2);
    assert_eq!(paths[0].attrs.next_hop, nh("10.0.0.3"));
    // The session goes: every path of it goes, and the prefix is reported.
    announce(&mut s, 1, "10.0.0.2");
    assert_eq!(down(&mut s, rr, false), vec![pfx("10.77.60.10/32")]);
    assert!(s.rib().paths(&pfx("10.77.60.10/32")).is_empty());
}

/// A reflector sends one path to all its clients with the same attributes:
/// they are one update group, the UPDATE goes out once for all of them
/// (`SendMany`, encoded once by the IO layer), the group's one
/// Adj-RIB-Out holds one shared attribute set, and the set is dropped once
/// nothing refers to it.
#[test]
fn exported_attributes_are_shared_between_peers() {
    let mut s = speaker(Some(CLUSTER));
    let peers = clients(&mut s, 4);
    s.take_outputs();
    update(&mut s, peers[0], "10.77.60.10/32", attrs("10.0.0.2", &[]));
    let outs = s.take_outputs();
    assert_eq!(outs.len(), 1, "one send for the group: {outs:?}");
    let Output::SendMany(to, SessionCmd::Announce(_, a)) = &outs[0] else {
        panic!("not a group send: {outs:?}");
    };
    assert_eq!(
        &to[..],
        &peers[1..],
        "every client but the one it came from"
    );
    assert_eq!(a.cluster_list, vec![CLUSTER]);
    let a = Arc::clone(a);
    // The speaker's set, the group's Adj-RIB-Out, the UPDATE in `outs`, ours.
    assert_eq!(Arc::strong_count(&a), 4);
    drop(outs);
    assert_eq!(summary_of(&s, peers[0]).prefixes_sent, 0);
    assert_eq!(summary_of(&s, peers[1]).prefixes_sent, 1);
    // Withdrawn everywhere: only the set (and our copy) hold it; a sweep
    // drops it once the set has grown enough.
    withdraw(&mut s, peers[0], "10.77.60.10/32");
    s.take_outputs();
    assert_eq!(Arc::strong_count(&a), 2);
}

/// A policy that accepts everything with `modify`.
fn policy_for_all(name: &str, modify: crate::policy::Modify) -> Policy {
    use crate::policy::{Action, DefaultAction, Match, Term};
    Policy::new(
        name,
        DefaultAction::Accept,
        vec![Term {
            name: "all".into(),
            matches: Match::default(),
            action: Action::Accept(modify),
        }],
    )
}

/// `n` iBGP reflector clients 10.0.0.2.., established.
fn clients(s: &mut Speaker, n: u8) -> Vec<PeerId> {
    (2..2 + n)
        .map(|i| {
            let addr = format!("10.0.0.{i}");
            let p = s.add_neighbor(neighbor(&addr, PeerAs::Internal, true));
            establish(s, p, LOCAL_AS, &addr, "10.0.0.1", false);
            p
        })
        .collect()
}

/// When the best path moves from one member to another, the member that
/// had it gets the new best, the new source loses what it was sent, and
/// the rest share one UPDATE.
#[test]
fn update_group_members_never_get_their_own_paths() {
    let mut s = speaker(Some(CLUSTER));
    let peers = clients(&mut s, 4);
    let (a, b) = (peers[0], peers[1]);
    update(&mut s, a, "10.77.60.10/32", attrs("10.0.0.2", &[]));
    s.take_outputs();
    let mut better = attrs("10.0.0.3", &[]);
    better.local_pref = Some(200);
    update(&mut s, b, "10.77.60.10/32", better);
    let outs = s.take_outputs();
    let many: Vec<&Output> = outs
        .iter()
        .filter(|o| matches!(o, Output::SendMany(..)))
        .collect();
    assert_eq!(many.len(), 1, "{outs:?}");
    let Output::SendMany(to, SessionCmd::Announce(_, a3)) = many[0] else {
        panic!("{outs:?}");
    };
    assert_eq!(&to[..], &peers[2..]);
    assert_eq!(a3.next_hop, nh("10.0.0.3"));
    let mut by_peer: BTreeMap<PeerId, Vec<SessionCmd>> = BTreeMap::new();
    for o in outs {
        if let Output::Send(p, c) = o {
            by_peer.entry(p).or_default().push(c);
        }
    }
    let got_a = announced(&by_peer[&a], "10.77.60.10/32").expect("A gets B's path");
    assert_eq!(got_a.next_hop, nh("10.0.0.3"));
    assert!(
        withdrawn(&by_peer[&b], "10.77.60.10/32"),
        "B loses A's path"
    );
    assert_eq!(summary_of(&s, a).prefixes_sent, 1);
    assert_eq!(summary_of(&s, b).prefixes_sent, 0);
}

/// Peers whose UPDATEs differ are in different groups: another export
/// policy, another capability (ADD-PATH send), another kind of peer. A
/// member leaving does not disturb the others, and the last one out ends
/// its group; a member coming back gets its whole table from the group.
#[test]
fn update_group_membership_follows_policy_and_capabilities() {
    let mut s = speaker(Some(CLUSTER));
    let peers = clients(&mut s, 3);
    // A fourth client with an export policy that sets a MED.
    let mut n = neighbor("10.0.0.9", PeerAs::Internal, true);
    n.export = Some(policy_for_all(
        "med",
        crate::policy::Modify {
            set_med: Some(7),
            ..Default::default()
        },
    ));
    let with_policy = s.add_neighbor(n);
    establish(&mut s, with_policy, LOCAL_AS, "10.0.0.9", "10.0.0.1", false);
    // A fifth with ADD-PATH send.
    let add_path = s.add_neighbor(neighbor("10.0.0.10", PeerAs::Internal, true));
    establish_add_path(&mut s, add_path, "10.0.0.10", false, true);
    assert_eq!(s.groups.len(), 3);
    s.take_outputs();
    update(&mut s, peers[0], "10.77.60.10/32", attrs("10.0.0.2", &[]));
    let out = sent(&mut s);
    assert_eq!(
        announced(&out[&with_policy], "10.77.60.10/32").unwrap().med,
        Some(7)
    );
    assert_eq!(
        announced(&out[&peers[1]], "10.77.60.10/32").unwrap().med,
        None
    );
    assert_eq!(paths_sent(&out[&add_path], "10.77.60.10/32").0.len(), 1);
    // A member leaves mid-way: the rest still get changes, it does not.
    down(&mut s, peers[2], false);
    update(&mut s, peers[0], "10.77.60.11/32", attrs("10.0.0.2", &[]));
    let out = sent(&mut s);
    assert!(announced(&out[&peers[1]], "10.77.60.11/32").is_some());
    assert!(!out.contains_key(&peers[2]));
    // The last members of the policy's and ADD-PATH's groups leave: those
    // groups end.
    down(&mut s, with_policy, false);
    down(&mut s, add_path, false);
    assert_eq!(s.groups.len(), 1);
    // Coming back, a peer gets the group's whole table, then End-of-RIB.
    s.take_outputs();
    establish(&mut s, peers[2], LOCAL_AS, "10.0.0.4", "10.0.0.1", false);
    let out = sent(&mut s);
    let cmds = &out[&peers[2]];
    assert!(announced(cmds, "10.77.60.10/32").is_some());
    assert!(announced(cmds, "10.77.60.11/32").is_some());
    assert_eq!(
        cmds.last(),
        Some(&SessionCmd::EndOfRib(Family::Ipv4Unicast))
    );
    assert_eq!(s.groups.len(), 1);
    // The policy's client comes back into a group made anew from the RIB.
    establish(&mut s, with_policy, LOCAL_AS, "10.0.0.9", "10.0.0.1", false);
    let out = sent(&mut s);
    assert_eq!(
        announced(&out[&with_policy], "10.77.60.11/32").unwrap().med,
        Some(7)
    );
    assert_eq!(s.groups.len(), 2);
}

/// Equal attribute sets imported in different UPDATEs share one `Arc` in
/// the RIB, and so do those an import policy changed the same way.
#[test]
fn imported_attributes_are_shared_between_updates() {
    let mut s = speaker(Some(CLUSTER));
    let peers = clients(&mut s, 2);
    update(&mut s, peers[0], "10.77.60.10/32", attrs("10.0.0.2", &[]));
    update(&mut s, peers[0], "10.77.60.11/32", attrs("10.0.0.2", &[]));
    let attrs_of = |s: &Speaker, p: &str| Arc::clone(&s.rib().best(&pfx(p)).unwrap().attrs);
    assert!(Arc::ptr_eq(
        &attrs_of(&s, "10.77.60.10/32"),
        &attrs_of(&s, "10.77.60.11/32")
    ));
    // A client whose import policy sets LOCAL_PREF on everything.
    let mut n = neighbor("10.0.0.9", PeerAs::Internal, true);
    n.import = Some(policy_for_all(
        "lp",
        crate::policy::Modify {
            set_local_pref: Some(300),
            ..Default::default()
        },
    ));
    let c = s.add_neighbor(n);
    establish(&mut s, c, LOCAL_AS, "10.0.0.9", "10.0.0.1", false);
    update(&mut s, c, "10.77.60.20/32", attrs("10.0.0.9", &[]));
    update(&mut s, c, "10.77.60.21/32", attrs("10.0.0.9", &[]));
    let (a, b) = (
        attrs_of(&s, "10.77.60.20/32"),
        attrs_of(&s, "10.77.60.21/32"),
    );
    assert_eq!(a.local_pref, Some(300));
    assert!(Arc::ptr_eq(&a, &b));
}

/// With exports deferred, a burst of UPDATEs is exported once when
/// released: one UPDATE per attribute set to the group, carrying every
/// prefix of the burst, and a prefix changed twice goes out once, as it
/// is at the end.
#[test]
fn deferred_exports_go_out_once_per_burst() {
    let mut s = speaker(Some(CLUSTER));
    let peers = clients(&mut s, 3);
    s.take_outputs();
    s.defer_exports();
    update(&mut s, peers[0], "10.77.60.10/32", attrs("10.0.0.2", &[]));
    update(&mut s, peers[0], "10.77.60.11/32", attrs("10.0.0.2", &[]));
    update(&mut s, peers[0], "10.77.60.12/32", attrs("10.0.0.2", &[]));
    withdraw(&mut s, peers[0], "10.77.60.12/32");
    assert!(s.take_outputs().is_empty(), "nothing before the release");
    s.release_exports();
    let outs = s.take_outputs();
    assert_eq!(outs.len(), 1, "{outs:?}");
    let Output::SendMany(to, SessionCmd::Announce(ns, _)) = &outs[0] else {
        panic!("{outs:?}");
    };
    assert_eq!(&to[..], &peers[1..]);
    let mut got: Vec<Prefix> = ns.iter().map(|n| n.prefix).collect();
    got.sort_unstable();
    assert_eq!(got, vec![pfx("10.77.60.10/32"), pfx("10.77.60.11/32")]);
    // Released: changes go out as they happen again.
    update(&mut s, peers[0], "10.77.60.13/32", attrs("10.0.0.2", &[]));
    assert_eq!(s.take_outputs().len(), 1);
}

/// A peer that fell behind is owed prefixes, not messages: however often a
/// prefix changes meanwhile it is owed once, and when the peer catches up
/// it gets each as it is then (announced, or withdrawn), then the
/// End-of-RIB it missed.
#[test]
fn a_peer_behind_is_owed_prefixes_and_gets_them_as_they_are() {
    let mut s = speaker(Some(CLUSTER));
    let peers = clients(&mut s, 3);
    let (a, slow) = (peers[0], peers[2]);
    update(&mut s, a, "10.77.60.9/32", attrs("10.0.0.2", &[]));
    s.take_outputs();
    // What the IO layer held back from the slow peer, as it would.
    let hold_back = |s: &mut Speaker| {
        for out in s.take_outputs() {
            let (to, cmd) = match out {
                Output::Send(p, c) => (vec![p], c),
                Output::SendMany(ps, c) => (ps.to_vec(), c),
                _ => continue,
            };
            if to.contains(&slow) {
                s.missed(slow, &cmd);
            }
        }
    };
    for i in 0..50 {
        let mut a1 = attrs("10.0.0.2", &[]);
        a1.med = Some(i);
        update(&mut s, a, "10.77.60.10/32", a1);
        hold_back(&mut s);
    }
    update(&mut s, a, "10.77.60.11/32", attrs("10.0.0.2", &[]));
    withdraw(&mut s, a, "10.77.60.9/32");
    update(&mut s, a, "10.77.60.12/32", attrs("10.0.0.2", &[]));
    withdraw(&mut s, a, "10.77.60.12/32");
    hold_back(&mut s);
    s.missed(slow, &SessionCmd::EndOfRib(Family::Ipv4Unicast));
    assert_eq!(summary_of(&s, slow).prefixes_owed, 4);
    s.caught_up(slow);
    let out = sent(&mut s);
    assert_eq!(out.len(), 1, "only the peer that caught up: {out:?}");
    let cmds = &out[&slow];
    assert_eq!(announced(cmds, "10.77.60.10/32").unwrap().med, Some(49));
    assert!(announced(cmds, "10.77.60.11/32").is_some());
    assert!(withdrawn(cmds, "10.77.60.9/32"));
    assert!(withdrawn(cmds, "10.77.60.12/32"));
    assert_eq!(
        cmds.last(),
        Some(&SessionCmd::EndOfRib(Family::Ipv4Unicast))
    );
    assert_eq!(summary_of(&s, slow).prefixes_owed, 0);
    // A session that ends owes nothing (the next one gets the whole table).
    s.missed(
        slow,
        &SessionCmd::Withdraw(vec![pfx("10.77.60.11/32").into()]),
    );
    down(&mut s, slow, false);
    assert_eq!(summary_of(&s, slow).prefixes_owed, 0);
}

/// Import policy "in": rejects 10.2.0.0/16, sets LOCAL_PREF 300 on
/// 10.3.0.0/16, accepts the rest as it is.
fn import_policy_in(name: &str) -> Policy {
    use crate::policy::{Action, DefaultAction, Match, Modify, Term};
    let range = |s: &str| Match {
        prefix: vec![s.parse().unwrap()],
        ..Match::default()
    };
    Policy::new(
        name,
        DefaultAction::Accept,
        vec![
            Term {
                name: "deny".into(),
                matches: range("10.2.0.0/16"),
                action: Action::Reject,
            },
            Term {
                name: "prefer".into(),
                matches: range("10.3.0.0/16"),
                action: Action::Accept(Modify {
                    set_local_pref: Some(300),
                    ..Modify::default()
                }),
            },
        ],
    )
}

/// eBGP peer A (import policy `import_policy_in`) and eBGP peer B, both
/// established, A having sent 10.1/16 (accepted), 10.2/16 (rejected by
/// policy), 10.3/16 (modified) and 10.4/16 with our AS in its path (a loop).
fn peer_with_import_policy(keep_received: bool) -> (Speaker, PeerId, PeerId) {
    let mut s = speaker(None);
    let mut n = neighbor("192.0.2.2", PeerAs::Is(65001), false);
    n.import = Some(import_policy_in("in"));
    n.keep_received = keep_received;
    let a = s.add_neighbor(n);
    let b = s.add_neighbor(neighbor("192.0.2.3", PeerAs::Is(65002), false));
    establish(&mut s, a, 65001, "192.0.2.2", "192.0.2.1", false);
    establish(&mut s, b, 65002, "192.0.2.3", "192.0.2.1", false);
    for p in ["10.1.0.0/16", "10.2.0.0/16", "10.3.0.0/16"] {
        update(&mut s, a, p, attrs("192.0.2.2", &[65001]));
    }
    update(
        &mut s,
        a,
        "10.4.0.0/16",
        attrs("192.0.2.2", &[65001, LOCAL_AS]),
    );
    s.take_outputs();
    (s, a, b)
}

/// `received-routes`: every path as sent and as installed, with what
/// import made of it; a withdrawal removes both sides.
#[test]
fn received_routes_show_each_path_before_and_after_import_policy() {
    let (mut s, a, _) = peer_with_import_policy(true);
    assert_eq!(s.find_peer("192.0.2.2"), Some(a));
    assert_eq!(s.find_peer("::ffff:192.0.2.2"), Some(a));
    assert_eq!(s.find_peer("192.0.2.9"), None);
    let r = s.received_routes(a, None).unwrap();
    assert!(r.keep_received);
    let rows: Vec<(String, &str, Option<u32>, Option<u32>)> = r
        .routes
        .iter()
        .map(|x| {
            (
                x.nlri.to_string(),
                x.outcome.unwrap().name(),
                x.pre_policy.as_ref().and_then(|a| a.local_pref),
                x.post_policy.as_ref().and_then(|a| a.local_pref),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("10.1.0.0/16".into(), "accepted", None, Some(100)),
            ("10.2.0.0/16".into(), "rejected", None, None),
            ("10.3.0.0/16".into(), "modified", None, Some(300)),
            ("10.4.0.0/16".into(), "rejected", None, None),
        ]
    );
    assert_eq!(r.routes[1].outcome.unwrap().reason(), Some("import policy"));
    assert!(r.routes[3]
        .outcome
        .unwrap()
        .reason()
        .unwrap()
        .contains("AS loop"));
    // The pre-policy attributes are the peer's, AS path and all.
    assert_eq!(
        r.routes[1].pre_policy.as_ref().unwrap().as_path[0].asns,
        vec![65001]
    );
    // One prefix.
    let one = s.received_routes(a, Some(&pfx("10.3.0.0/16"))).unwrap();
    assert_eq!(one.routes.len(), 1);
    // Withdrawn: gone from both sides.
    withdraw(&mut s, a, "10.3.0.0/16");
    assert!(s
        .received_routes(a, Some(&pfx("10.3.0.0/16")))
        .unwrap()
        .routes
        .is_empty());
    // The session ends: what it sent goes with it.
    down(&mut s, a, false);
    assert!(s.received_routes(a, None).unwrap().routes.is_empty());
}

/// Without `keep_received` the view is post-policy only.
#[test]
fn without_keep_received_only_the_installed_paths_are_shown() {
    let (s, a, _) = peer_with_import_policy(false);
    let r = s.received_routes(a, None).unwrap();
    assert!(!r.keep_received);
    let shown: Vec<String> = r.routes.iter().map(|x| x.nlri.to_string()).collect();
    assert_eq!(shown, vec!["10.1.0.0/16", "10.3.0.0/16"]);
    assert!(r
        .routes
        .iter()
        .all(|x| x.pre_policy.is_none() && x.outcome.is_none()));
}

/// A new import policy is applied from the kept paths: the Loc-RIB and the
/// other peer follow, and nothing resets the session or asks the peer.
#[test]
fn an_import_policy_change_reevaluates_the_kept_paths_without_a_reset() {
    let (mut s, a, b) = peer_with_import_policy(true);
    let (how, changed) = s.set_import_policy(a, Some(Policy::reject_all("none")));
    assert_eq!(how, crate::speaker::ImportReapply::Reevaluated { paths: 4 });
    assert!(changed.contains(&pfx("10.1.0.0/16")));
    assert!(s.rib().best(&pfx("10.1.0.0/16")).is_none());
    let outs = s.take_outputs();
    assert!(
        !outs.iter().any(|o| matches!(
            o,
            Output::Reset(..) | Output::Stop(..) | Output::Send(_, SessionCmd::RouteRefresh(_))
        )),
        "{outs:?}"
    );
    let mut to_b = Vec::new();
    for o in outs {
        if let Output::Send(p, c) = o {
            if p == b {
                to_b.push(c);
            }
        }
    }
    assert!(withdrawn(&to_b, "10.1.0.0/16"));
    assert!(withdrawn(&to_b, "10.3.0.0/16"));
    let r = s.received_routes(a, None).unwrap();
    assert!(r
        .routes
        .iter()
        .all(|x| x.outcome.unwrap().name() == "rejected"));
    // Back to no policy: 10.2/16, rejected before, is installed from the
    // kept path; the loop stays out.
    let (how, _) = s.set_import_policy(a, None);
    assert_eq!(how, crate::speaker::ImportReapply::Reevaluated { paths: 4 });
    assert!(s.rib().best(&pfx("10.2.0.0/16")).is_some());
    assert!(s.rib().best(&pfx("10.4.0.0/16")).is_none());
    assert_eq!(s.rib().best(&pfx("10.3.0.0/16")).unwrap().local_pref(), 100);
    // The same policy again: nothing to do.
    assert_eq!(
        s.set_import_policy(a, None).0,
        crate::speaker::ImportReapply::Unchanged
    );
}

/// Received paths not kept: the peer is asked to resend (RFC 2918).
#[test]
fn an_import_policy_change_without_kept_paths_asks_for_a_route_refresh() {
    let (mut s, a, _) = peer_with_import_policy(false);
    let (how, _) = s.set_import_policy(a, None);
    assert_eq!(how, crate::speaker::ImportReapply::RouteRefresh);
    let out = sent(&mut s);
    assert_eq!(out[&a], vec![SessionCmd::RouteRefresh(Family::Ipv4Unicast)]);
    // Resent under the new policy, 10.2/16 is installed.
    update(&mut s, a, "10.2.0.0/16", attrs("192.0.2.2", &[65001]));
    assert!(s.rib().best(&pfx("10.2.0.0/16")).is_some());
}

/// `advertised-routes`: the group's Adj-RIB-Out without the member's own
/// paths, which are counted as withheld.
#[test]
fn advertised_routes_are_the_groups_table_without_the_members_own_paths() {
    let mut s = speaker(Some(CLUSTER));
    let peers = clients(&mut s, 2);
    let (a, b) = (peers[0], peers[1]);
    update(&mut s, a, "10.77.60.10/32", attrs("10.0.0.2", &[]));
    update(&mut s, b, "10.77.60.11/32", attrs("10.0.0.3", &[]));
    s.originate(pfx("10.77.60.12/32"), attrs("10.0.0.1", &[]));
    s.take_outputs();
    let to_a = s.advertised_routes(a, None).unwrap();
    assert_eq!(to_a.group_members, vec![a, b]);
    assert_eq!(to_a.withheld_own, 1);
    let shown: Vec<(String, PeerId)> = to_a
        .routes
        .iter()
        .map(|r| (r.nlri.to_string(), r.from))
        .collect();
    assert_eq!(
        shown,
        vec![
            ("10.77.60.11/32".into(), b),
            ("10.77.60.12/32".into(), PeerId::LOCAL)
        ]
    );
    // Reflected: ORIGINATOR_ID and CLUSTER_LIST as sent.
    assert_eq!(
        to_a.routes[0].attrs.originator_id,
        Some("10.0.0.3".parse().unwrap())
    );
    assert_eq!(to_a.routes[0].attrs.cluster_list, vec![CLUSTER]);
    assert!(!to_a.routes[0].pending);
    let one = s
        .advertised_routes(b, Some(&pfx("10.77.60.10/32")))
        .unwrap();
    assert_eq!(one.routes.len(), 1);
    assert_eq!(one.withheld_own, 0);
}

/// A new export policy moves the peer to another update group and sends
/// it only what differs; the other members are not disturbed.
#[test]
fn an_export_policy_change_sends_the_difference_without_a_reset() {
    let mut s = speaker(Some(CLUSTER));
    let peers = clients(&mut s, 3);
    let (a, c) = (peers[0], peers[2]);
    update(&mut s, a, "10.77.60.10/32", attrs("10.0.0.2", &[]));
    update(&mut s, a, "10.77.60.20/32", attrs("10.0.0.2", &[]));
    s.take_outputs();
    use crate::policy::{Action, DefaultAction, Match, Modify, Term};
    let export = Policy::new(
        "out",
        DefaultAction::Accept,
        vec![
            Term {
                name: "deny".into(),
                matches: Match {
                    prefix: vec!["10.77.60.10/32".parse().unwrap()],
                    ..Match::default()
                },
                action: Action::Reject,
            },
            Term {
                name: "med".into(),
                matches: Match::default(),
                action: Action::Accept(Modify {
                    set_med: Some(5),
                    ..Modify::default()
                }),
            },
        ],
    );
    assert!(s.set_export(c, Some(export.clone()), false));
    assert!(!s.set_export(c, Some(export), false), "unchanged");
    let outs = s.take_outputs();
    assert!(!outs
        .iter()
        .any(|o| matches!(o, Output::Reset(..) | Output::Stop(..))));
    let out = sent_of(outs);
    assert_eq!(out.keys().copied().collect::<Vec<_>>(), vec![c], "only C");
    assert!(withdrawn(&out[&c], "10.77.60.10/32"));
    assert_eq!(announced(&out[&c], "10.77.60.20/32").unwrap().med, Some(5));
    let view = s.advertised_routes(c, None).unwrap();
    assert_eq!(view.group_members, vec![c]);
    assert_eq!(view.routes.len(), 1);
    assert_eq!(view.routes[0].attrs.med, Some(5));
    // Removed again: back into the others' group, sent the difference.
    assert!(s.set_export(c, None, false));
    let out = sent(&mut s);
    assert_eq!(announced(&out[&c], "10.77.60.10/32").unwrap().med, None);
    assert_eq!(announced(&out[&c], "10.77.60.20/32").unwrap().med, None);
    assert_eq!(s.advertised_routes(c, None).unwrap().group_members.len(), 3);
}

fn sent_of(outs: Vec<Output>) -> BTreeMap<PeerId, Vec<SessionCmd>> {
    let mut by_peer: BTreeMap<PeerId, Vec<SessionCmd>> = BTreeMap::new();
    for out in outs {
        match out {
            Output::Send(peer, cmd) => by_peer.entry(peer).or_default().push(cmd),
            Output::SendMany(peers, cmd) => {
                for peer in peers.iter() {
                    by_peer.entry(*peer).or_default().push(cmd.clone());
                }
            }
            _ => {}
        }
    }
    by_peer
}
