//! BGP as the client of BFD (RFC 5882): which neighbors get a BFD session,
//! what a BFD state change does to their BGP session, and the view `cerctl
//! show bfd` reads. The sockets and timers are the BFD task's
//! (`control::bfd`); this side only sends it commands and takes its events.
//!
//! A neighbor with `bfd = true` gets its BFD session when its BGP session
//! is first established (that is when our address towards it is known, if
//! `local_address` does not give it); the BFD session then stays, so the
//! peer's BFD sees us across BGP flaps. On Up -> Down, unless the peer sent
//! AdminDown (RFC 5882 3.2: BFD was taken away, the path is not blamed),
//! the BGP session is reset and the neighbor's routes withdrawn at once,
//! graceful restart or not (`Speaker::peer_failed`). A session that never
//! came Up tears nothing down: a peer without BFD keeps its BGP session, as
//! with FRR and BIRD.

use super::ControlState;
use crate::control::bfd::{Cmd, Event, PeerSpec, SharedBfd};
use cer_bfd::State;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;
use tokio::sync::mpsc;

/// The control state's handle on the BFD task.
pub struct BfdClient {
    cmds: mpsc::Sender<Cmd>,
    pub shared: SharedBfd,
    /// The sessions asked for, by peer.
    started: BTreeMap<Ipv4Addr, PeerSpec>,
    /// BGP sessions BFD took down, by peer: how many times, the last diag.
    teardowns: BTreeMap<Ipv4Addr, (u64, String, Instant)>,
}

impl BfdClient {
    pub fn new(cmds: mpsc::Sender<Cmd>, shared: SharedBfd) -> Self {
        BfdClient {
            cmds,
            shared,
            started: BTreeMap::new(),
            teardowns: BTreeMap::new(),
        }
    }
}

impl ControlState {
    /// A BGP session came up with `local` as our address: start its BFD
    /// session if the neighbor wants one and it is not running yet.
    pub(super) fn bfd_on_established(&mut self, remote: SocketAddr, local: IpAddr) {
        let Some(client) = &mut self.bfd else { return };
        let (IpAddr::V4(peer), IpAddr::V4(local)) = (remote.ip(), local) else {
            return;
        };
        let Some(n) = self
            .cfg
            .bgp
            .neighbors
            .iter()
            .find(|n| n.bfd && n.address == Some(IpAddr::V4(peer)))
        else {
            return;
        };
        // Checked when the config was loaded.
        let Ok(cfg) = n.bfd_config() else { return };
        let local = match n.local_address {
            Some(IpAddr::V4(a)) => a,
            _ => local,
        };
        let spec = PeerSpec {
            peer,
            local,
            multihop: n.bfd_multihop,
            cfg,
        };
        if client.started.get(&peer) == Some(&spec) {
            return;
        }
        match client.cmds.try_send(Cmd::Add(spec.clone())) {
            Ok(()) => {
                client.started.insert(peer, spec);
            }
            Err(e) => log::error!("bfd: cannot start the session to {peer}: {e}"),
        }
    }

    /// A BFD session changed state.
    pub fn on_bfd(&mut self, ev: Event) {
        let c = ev.change;
        log::info!(
            "bfd {}: {} -> {} (diag {:?}, peer {})",
            ev.peer,
            c.from.name(),
            c.to.name(),
            c.diag,
            c.remote_state.name()
        );
        if c.from != State::Up || c.to != State::Down || c.remote_state == State::AdminDown {
            return;
        }
        let Some(id) = self
            .speaker
            .neighbor_for(SocketAddr::new(IpAddr::V4(ev.peer), 179))
        else {
            return;
        };
        let reason = format!("BFD down ({:?})", c.diag);
        let changed = self.speaker.peer_failed(id, &reason);
        log::warn!(
            "peer {}: {reason}: BGP session reset, {} prefixes changed",
            ev.peer,
            changed.len()
        );
        if let Some(client) = &mut self.bfd {
            let t = client
                .teardowns
                .entry(ev.peer)
                .or_insert((0, String::new(), Instant::now()));
            t.0 += 1;
            t.1 = reason;
            t.2 = Instant::now();
        }
        self.after(changed);
    }

    /// Planned shutdown: every BFD session goes AdminDown, so peers keep
    /// their BGP sessions to us up to BGP's own end (RFC 5882 3.2).
    pub(super) fn bfd_shutdown(&mut self) {
        if let Some(client) = &mut self.bfd {
            for peer in std::mem::take(&mut client.started).into_keys() {
                let _ = client.cmds.try_send(Cmd::Remove(peer));
            }
        }
    }

    /// `cerctl show bfd`.
    pub(super) fn bfd_json(&self) -> Value {
        let Some(client) = &self.bfd else {
            return json!({"sessions": [], "drops": {}, "note": "no neighbor has bfd = true"});
        };
        let shared = client.shared.lock().map(|s| s.clone()).unwrap_or_default();
        let sessions: Vec<Value> = shared
            .sessions
            .iter()
            .map(|(peer, (spec, v))| {
                let td = client.teardowns.get(peer);
                json!({
                    "peer": peer,
                    "local": spec.local,
                    "kind": if spec.multihop { "multihop" } else { "single hop" },
                    "state": v.state.name(),
                    "remote_state": v.remote_state.name(),
                    "local_diag": format!("{:?}", v.local_diag),
                    "local_discriminator": v.local_disc,
                    "remote_discriminator": v.remote_disc,
                    "desired_min_tx_ms": spec.cfg.desired_min_tx.as_millis() as u64,
                    "required_min_rx_ms": spec.cfg.required_min_rx.as_millis() as u64,
                    "multiplier": spec.cfg.detect_mult,
                    "authentication": spec.cfg.auth.as_ref().map(|a| format!("keyed SHA1, key id {}", a.key_id)),
                    "tx_interval_ms": v.tx_interval.as_secs_f64() * 1e3,
                    "detection_time_ms": v.detection_time.as_secs_f64() * 1e3,
                    "rx": v.stats.rx,
                    "tx": v.stats.tx,
                    "rx_dropped": v.stats.rx_dropped,
                    "up_count": v.stats.up_count,
                    "down_count": v.stats.down_count,
                    "bgp_teardowns": td.map(|t| t.0).unwrap_or(0),
                    "last_teardown": td.map(|t| t.1.clone()),
                    "last_teardown_secs_ago": td.map(|t| t.2.elapsed().as_secs()),
                })
            })
            .collect();
        json!({"sessions": sessions, "drops": shared.drops})
    }
}
