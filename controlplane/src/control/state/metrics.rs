//! cer-control's Prometheus metrics, read from the event loop's own state.
//! A scrape is a request through the loop, as an admin request is: the
//! metrics thread (`cer_shared::metrics`, a plain thread) sends a `MetricsAsk`
//! to the loop, which answers with the families below (BGP peers, ownership,
//! feed, capture, VRRP, BFD), and the thread encodes them. The loop is the
//! one owner of this state, so nothing here needs atomics or locks of its
//! own; a loop that does not answer within `METRICS_WAIT` makes the scrape
//! fail with 503 rather than hang.

use super::ControlState;
use cer_shared::metrics::{Families, Histogram, Labels, Render};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// A scrape's request to the event loop: where to send the families.
pub type MetricsAsk = std::sync::mpsc::SyncSender<Families>;

/// How long a scrape waits for the event loop.
pub const METRICS_WAIT: Duration = Duration::from_secs(3);

/// `cer_bgp_peer_state`'s values: the RFC 4271 FSM states numbered as in
/// the BGP4-MIB's `bgpPeerState` (RFC 4273).
pub fn bgp_state_number(state: &str) -> f64 {
    match state {
        "Idle" => 1.0,
        "Connect" => 2.0,
        "Active" => 3.0,
        "OpenSent" => 4.0,
        "OpenConfirm" => 5.0,
        "Established" => 6.0,
        _ => 0.0,
    }
}

/// `cer_vrrp_state`'s values.
fn vrrp_state_number(s: crate::control::vrrp::VrrpState) -> f64 {
    use crate::control::vrrp::VrrpState::*;
    match s {
        Unknown => 0.0,
        Backup => 1.0,
        Master => 2.0,
        Fault => 3.0,
        Stop => 4.0,
    }
}

/// The `/metrics` renderer: asks the event loop through `loop_tx` and
/// encodes its answer.
pub fn render(loop_tx: mpsc::Sender<MetricsAsk>) -> Render {
    Arc::new(move || {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        loop_tx
            .try_send(tx)
            .map_err(|_| "cer-control's event loop is stopping or busy".to_string())?;
        rx.recv_timeout(METRICS_WAIT)
            .map_err(|_| "cer-control's event loop did not answer".to_string())?
            .render()
    })
}

fn peer(p: &str) -> Labels {
    vec![("peer", p.to_string())]
}

impl ControlState {
    /// Every metric family of cer-control (names in README "Metrics"). A
    /// family with nothing to show (no capture provider, no VRRP, no BFD)
    /// is still described, with no series.
    pub fn metrics(&self) -> Families {
        let mut f = Families::default();
        f.gauge(
            "cer_control_info",
            "Always 1; the node name and SAM identity as labels.",
            vec![(
                vec![
                    ("node", self.cfg.node.name.clone()),
                    ("identity", self.cfg.sam.identity.to_string()),
                ],
                1.0,
            )],
        );
        f.gauge1(
            "cer_control_ready",
            "1 once cer-control has converged after start (the admin status' ready).",
            f64::from(u8::from(self.ready)),
        );
        f.gauge1(
            "cer_control_uptime_seconds",
            "Seconds since cer-control started.",
            self.started.elapsed().as_secs_f64(),
        );
        self.bgp_metrics(&mut f);
        f.counter1(
            "cer_control_ownership_changes",
            "Ownership changes of endpoint /32s (RIB trap events) since start.",
            self.sam.changes(),
        );
        f.gauge1(
            "cer_control_owners",
            "Endpoint /32s with a known owner.",
            self.sam.owners().count() as f64,
        );
        f.gauge1(
            "cer_control_markers",
            "Live node markers (CERs whose marker route is in the RIB).",
            self.sam.live_identities().len() as f64,
        );
        f.gauge1(
            "cer_control_endpoints",
            "Endpoint /32s this node advertises.",
            self.endpoints.iter().count() as f64,
        );
        f.gauge1(
            "cer_control_captured",
            "On-prem capture: remote-owned /32s this node proxy-ARPs for.",
            self.captured.len() as f64,
        );
        self.feed_metrics(&mut f);
        self.capture_metrics(&mut f);
        self.vrrp_metrics(&mut f);
        self.bfd_metrics(&mut f);
        f
    }

    fn bgp_metrics(&self, f: &mut Families) {
        let sessions = self.speaker.summary();
        let label = |n: &cer_bgp::speaker::NeighborSummary| {
            let ip = n
                .address
                .parse::<std::net::SocketAddr>()
                .map(|a| a.ip().to_string())
                .unwrap_or_else(|_| n.address.clone());
            match &n.interface {
                Some(i) => peer(&format!("{ip}%{i}")),
                None => peer(&ip),
            }
        };
        let mut state: Vec<(Labels, f64)> = sessions
            .iter()
            .map(|n| (label(n), bgp_state_number(n.state)))
            .collect();
        // Unnumbered interfaces still waiting for their peer: Idle.
        for (k, i) in self.unnumbered.ifaces.iter().enumerate() {
            if !self.unnumbered_sessions.contains_key(&k) {
                state.push((peer(&format!("unnumbered%{}", i.name)), 1.0));
            }
        }
        f.gauge(
            "cer_bgp_peer_state",
            "BGP FSM state per peer: 1 Idle, 2 Connect, 3 Active, 4 OpenSent, 5 OpenConfirm, 6 Established (BGP4-MIB bgpPeerState).",
            state,
        );
        let per = |v: &dyn Fn(&cer_bgp::speaker::NeighborSummary) -> f64| {
            sessions
                .iter()
                .map(|n| (label(n), v(n)))
                .collect::<Vec<_>>()
        };
        let per_u64 = |v: &dyn Fn(&cer_bgp::speaker::NeighborSummary) -> u64| {
            sessions
                .iter()
                .map(|n| (label(n), v(n)))
                .collect::<Vec<_>>()
        };
        f.gauge(
            "cer_bgp_peer_uptime_seconds",
            "Seconds the session has been Established (0 when it is not).",
            per(&|n| n.uptime_secs.unwrap_or(0) as f64),
        );
        f.counter(
            "cer_bgp_peer_flaps",
            "Times the session left Established.",
            per_u64(&|n| u64::from(n.flaps)),
        );
        f.counter(
            "cer_bgp_peer_prefixes_received",
            "Prefixes the peer announced (NLRI), accepted or not.",
            per_u64(&|n| n.prefixes_announced),
        );
        f.counter(
            "cer_bgp_peer_prefixes_rejected",
            "Announced prefixes refused by the import checks or policy.",
            per_u64(&|n| n.import_rejected),
        );
        f.gauge(
            "cer_bgp_peer_prefixes_accepted",
            "Paths from the peer held in its Adj-RIB-In after import (stale ones included).",
            per(&|n| n.prefixes_received as f64),
        );
        f.gauge(
            "cer_bgp_peer_prefixes_advertised",
            "Prefixes advertised to the peer (its update group's Adj-RIB-Out).",
            per(&|n| n.prefixes_sent as f64),
        );
        f.counter(
            "cer_bgp_peer_updates_received",
            "UPDATE messages received from the peer.",
            per_u64(&|n| n.updates_received),
        );
        f.gauge1(
            "cer_bgp_loc_rib_prefixes",
            "Prefixes in the Loc-RIB.",
            self.speaker.rib().len() as f64,
        );
    }

    fn feed_metrics(&self, f: &mut Families) {
        let s = self
            .feed_status
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        f.gauge1(
            "cer_control_feed_connected",
            "1 while the FIB feed to the dataplane is connected.",
            f64::from(u8::from(s.connected)),
        );
        f.gauge1(
            "cer_control_feed_snapshot_generation",
            "The dataplane snapshot generation of the last acknowledged feed message.",
            s.snapshot_version as f64,
        );
        f.gauge1(
            "cer_control_feed_change_to_ack_seconds",
            "Last delta: time from the ownership change to the dataplane's acknowledgement.",
            s.last_change_to_ack_us.unwrap_or(0) as f64 / 1e6,
        );
        f.counter1(
            "cer_control_feed_full_syncs",
            "Full synchronisations sent to the dataplane.",
            s.full_syncs,
        );
        f.counter1(
            "cer_control_feed_deltas",
            "Delta messages sent to the dataplane.",
            s.deltas,
        );
        f.gauge1(
            "cer_control_feed_entries",
            "Endpoint entries fed to the dataplane.",
            s.entries as f64,
        );
    }

    fn capture_metrics(&self, f: &mut Families) {
        let st = self.reconciler.as_ref().map(|r| r.status());
        let provider = || vec![("provider", self.cfg.capture.mode.name().to_string())];
        let one = |v: &dyn Fn(&cer_capture::reconciler::Status) -> u64| {
            st.iter().map(|s| (provider(), v(s))).collect::<Vec<_>>()
        };
        f.counter(
            "cer_capture_actions",
            "Capture actions (capture, release, hand back) dispatched to the provider.",
            one(&|s| s.actions_total),
        );
        f.counter(
            "cer_capture_confirmed",
            "Capture actions the provider confirmed.",
            one(&|s| s.confirmed_total),
        );
        f.counter(
            "cer_capture_errors",
            "Capture actions that failed (retried with backoff, or over quota).",
            one(&|s| s.errors_total),
        );
        f.counter(
            "cer_capture_fenced",
            "Stale capture actions fenced (skipped before their provider call).",
            one(&|s| s.fenced_total),
        );
        f.gauge(
            "cer_capture_in_flight",
            "Capture actions in flight now.",
            st.iter()
                .map(|s| (provider(), s.in_flight as f64))
                .collect(),
        );
        f.gauge(
            "cer_capture_over_quota",
            "/32s that cannot be captured because every NIC is at the provider's quota.",
            st.iter()
                .map(|s| (provider(), s.over_quota as f64))
                .collect(),
        );
        f.histogram(
            "cer_capture_action_seconds",
            "Time from an action's dispatch to its result (confirmed, failed or fenced).",
            st.iter()
                .map(|s| {
                    let h = &s.action_seconds;
                    (
                        provider(),
                        Histogram {
                            buckets: h.buckets(),
                            sum: h.sum_secs,
                            count: h.count,
                        },
                    )
                })
                .collect(),
        );
    }

    fn vrrp_metrics(&self, f: &mut Families) {
        let v = self
            .vrrp
            .as_ref()
            .and_then(|v| v.lock().ok().map(|v| v.clone()));
        let inst = |i: &str| vec![("instance", i.to_string())];
        f.gauge(
            "cer_vrrp_gate_open",
            "On-prem capture: 1 while the VRRP gate lets the dataplane proxy-ARP (this router is MASTER).",
            v.iter()
                .map(|v| (inst(&v.instance), f64::from(u8::from(v.gate_open))))
                .collect(),
        );
        f.gauge(
            "cer_vrrp_state",
            "keepalived's state of the followed instance: 0 unknown, 1 BACKUP, 2 MASTER, 3 FAULT, 4 STOP.",
            v.iter()
                .map(|v| (inst(&v.instance), vrrp_state_number(v.state)))
                .collect(),
        );
        f.counter(
            "cer_vrrp_stall_holds",
            "Times a stall closed the gate until VRRP settled and keepalived confirmed again.",
            v.iter()
                .map(|v| (inst(&v.instance), v.stall_holds))
                .collect(),
        );
    }

    fn bfd_metrics(&self, f: &mut Families) {
        let shared = self
            .bfd
            .as_ref()
            .and_then(|c| c.shared.lock().ok().map(|s| s.clone()))
            .unwrap_or_default();
        let sessions: Vec<_> = shared.sessions.iter().collect();
        f.gauge(
            "cer_bfd_session_state",
            "BFD session state per peer (RFC 5880 numbering): 0 AdminDown, 1 Down, 2 Init, 3 Up.",
            sessions
                .iter()
                .map(|(p, (_, v))| (peer(&p.to_string()), f64::from(v.state as u8)))
                .collect(),
        );
        f.counter(
            "cer_bfd_session_down_transitions",
            "Times the BFD session went down from Up.",
            sessions
                .iter()
                .map(|(p, (_, v))| (peer(&p.to_string()), v.stats.down_count))
                .collect(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bgp_states_follow_the_mib_numbering() {
        for (i, s) in [
            "Idle",
            "Connect",
            "Active",
            "OpenSent",
            "OpenConfirm",
            "Established",
        ]
        .iter()
        .enumerate()
        {
            assert_eq!(bgp_state_number(s), (i + 1) as f64);
        }
        assert_eq!(bgp_state_number("Bogus"), 0.0);
    }
}
