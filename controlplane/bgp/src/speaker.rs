//! The speaker: the one place BGP state changes, with no IO (sans-IO).
//! It owns the RIB, every peer's runtime state and Adj-RIB-Out, and the
//! locally originated routes. It consumes `PeerEvent`s (from the sessions),
//! imports (loop checks, hygiene, policy), runs the decision process through
//! the `Rib`, and exports diffs to established peers as `Output`s: once per
//! update group (`update_group`: the peers that get the same UPDATEs), so
//! a reflector with many clients exports, diffs and has each change encoded
//! once, not once per client. The `Output`s are what the
//! IO layer (`driver`, over `session`'s tokio tasks) takes with
//! `take_outputs` and performs. Every call returns the prefixes whose
//! candidate paths changed, so the caller (cer-control's ownership plane) can
//! re-evaluate them. Tests drive it with events and read its outputs, no
//! sockets (`speaker/tests.rs`).

use crate::adj_in::{AdjRibIn, ImportOutcome, Received, Rejection};
use crate::adj_out::{Diff, Wanted};
use crate::decision::DecisionConfig;
use crate::events::{Output, PeerEvent, PeerSession, SessionCmd};
use crate::export::{import_check, import_normalize, ExportCtx};
use crate::fsm::{FsmConfig, Negotiated, PeerAs, State};
use crate::intern::Interner;
use crate::packet::{
    AddPath, Capabilities, ErrorAction, Family, GracefulRestart, Notification, UpdateError,
};
use crate::policy::Policy;
use crate::rib::Rib;
use crate::route::{
    FastMap, FastSet, NextHop, Nlri, PathAttrs, PathSource, PeerId, Prefix, DEFAULT_LOCAL_PREF,
};
use crate::sockopt::SessionSecurity;
use crate::update_group::{GroupExport, GroupKey, UpdateGroup};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Prefixes exported (and their diffs queued) at a time: bounds the
/// memory a burst's export takes while keeping UPDATEs full.
const EXPORT_CHUNK: usize = 4096;

#[derive(Debug, Clone)]
pub struct SpeakerConfig {
    pub local_as: u32,
    pub router_id: Ipv4Addr,
    /// `Some` makes us a route reflector with this cluster id.
    pub cluster_id: Option<Ipv4Addr>,
    pub hold_time: u16,
    pub connect_retry: Duration,
    /// Graceful restart time we advertise; `None` disables GR.
    pub graceful_restart: Option<u16>,
    /// We restarted (RFC 4724 R bit): peers should not wait for our End-of-RIB
    /// before sending theirs.
    pub restarting: bool,
    /// Forwarding survives a restart of this process (the dataplane is separate):
    /// the F bit, which makes helpers keep our routes across the restart.
    pub forwarding_preserved: bool,
    pub decision: DecisionConfig,
}

#[derive(Debug, Clone)]
pub struct NeighborConfig {
    pub remote: SocketAddr,
    pub local: Option<IpAddr>,
    pub peer_as: PeerAs,
    pub passive: bool,
    pub rr_client: bool,
    pub next_hop_self: bool,
    pub import: Option<Policy>,
    pub export: Option<Policy>,
    pub description: Option<String>,
    /// BGP unnumbered: the interface the peer was discovered on (its
    /// link-local session address carries the interface as scope id).
    pub interface: Option<String>,
    /// ADD-PATH for IPv4 unicast (RFC 7911) we offer this peer: receive
    /// its paths with identifiers, send it every path we may.
    pub add_path: AddPath,
    /// TCP-MD5 and GTSM on its sessions (`sockopt`).
    pub security: SessionSecurity,
    /// Keep what it sends as it sent it (the pre-policy Adj-RIB-In,
    /// `adj_in`): `received-routes` shows it, and an import-policy change
    /// is applied from it without asking the peer to resend.
    pub keep_received: bool,
}

/// Counters and state of one peer, for `show bgp summary`.
#[derive(Debug, Clone, Serialize)]
pub struct NeighborSummary {
    pub peer: u32,
    pub address: String,
    /// Unnumbered neighbors: the interface (the session runs over the peer's link-local address on it).
    pub interface: Option<String>,
    pub description: Option<String>,
    pub remote_as: Option<u32>,
    pub router_id: Option<Ipv4Addr>,
    pub state: &'static str,
    pub uptime_secs: Option<u64>,
    pub prefixes_received: usize,
    pub prefixes_stale: usize,
    pub prefixes_sent: usize,
    /// Paths it fell behind on (its queue was full): sent as they are when
    /// it catches up.
    pub prefixes_owed: usize,
    pub updates_received: u64,
    /// UPDATEs whose announcements RFC 7606 turned into withdrawals.
    pub treat_as_withdraw: u64,
    /// Path attributes dropped by RFC 7606 "attribute discard".
    pub attribute_discard: u64,
    /// Announced prefixes ignored as semantically incorrect (RFC 4271 6.3:
    /// multicast), the rest of their UPDATEs processed.
    pub prefixes_ignored: u64,
    /// Every RFC 7606 action (and RFC 4271 6.3 prefix-ignore) taken on this
    /// peer's UPDATEs, by cause ("treat-as-withdraw: NEXT_HOP value": count).
    pub update_errors: BTreeMap<String, u64>,
    pub import_rejected: u64,
    /// Prefixes announced by the peer (NLRI in its UPDATEs, accepted or
    /// not) since the neighbor was added.
    pub prefixes_announced: u64,
    pub flaps: u32,
    pub last_error: Option<String>,
    pub capabilities: Vec<String>,
    pub rr_client: bool,
    /// TCP-MD5 (RFC 2385) is configured for this neighbor.
    pub tcp_md5: bool,
    /// GTSM (RFC 5082) is configured for this neighbor.
    pub ttl_security: bool,
    /// Our connection attempts that timed out since the session was last
    /// established (or the neighbor added): with TCP-MD5 or GTSM, what a
    /// mismatch looks like, as the kernel drops the peer's segments silently.
    pub connect_timeouts: u32,
}

struct PeerRt {
    cfg: NeighborConfig,
    state: State,
    negotiated: Option<Negotiated>,
    source: Option<Arc<PathSource>>,
    /// Established as far as the speaker is concerned (from its `Established`
    /// event to its `Down`): only then does it get UPDATEs.
    up: bool,
    local_addr: Option<IpAddr>,
    /// The update group it is in while up (`Speaker::groups`).
    group: Option<u32>,
    /// What it was not sent while it fell behind (`missed`): sent as it
    /// is then when it catches up (`caught_up`).
    owed: FastSet<Nlri>,
    owed_eor: Vec<Family>,
    established_at: Option<Instant>,
    last_error: Option<String>,
    flaps: u32,
    updates_in: u64,
    treat_as_withdraw: u64,
    attribute_discard: u64,
    prefixes_ignored: u64,
    update_errors: BTreeMap<String, u64>,
    import_rejected: u64,
    prefixes_announced: u64,
    /// Graceful restart: stale paths are swept at this time.
    gr_deadline: Option<Instant>,
    /// Connect attempts that timed out since it was last established.
    connect_timeouts: u32,
    /// What the current session sent, before import (`keep_received`).
    received: AdjRibIn,
}

impl PeerRt {
    /// Counts one RFC 7606 error by cause (and attribute discards in total).
    fn count(&mut self, e: &UpdateError) {
        if e.action == ErrorAction::AttributeDiscard {
            self.attribute_discard += 1;
        }
        *self.update_errors.entry(e.cause()).or_default() += 1;
    }
}

pub struct Speaker {
    pub cfg: SpeakerConfig,
    rib: Rib,
    peers: BTreeMap<PeerId, PeerRt>,
    local: FastMap<Prefix, Arc<PathAttrs>>,
    local_source: Arc<PathSource>,
    /// What the IO layer has to do, in order (`take_outputs`).
    outbox: Vec<Output>,
    next_id: u32,
    /// Peers whose End-of-RIB we have seen since they came up.
    eor_seen: FastSet<PeerId>,
    /// Imported attribute sets, one `Arc` per distinct value: the paths of
    /// the RIB point at these (`intern`).
    imported: Interner,
    /// Exported attribute sets: every update group's Adj-RIB-Out points at
    /// these instead of holding its own copy.
    exported: Interner,
    /// While `Some`, exports wait here (`defer_exports`).
    deferred: Option<Vec<Prefix>>,
    /// Update groups by id; each up peer is in exactly one.
    groups: BTreeMap<u32, UpdateGroup>,
    next_group: u32,
    pub started: SystemTime,
}

impl Speaker {
    pub fn new(cfg: SpeakerConfig) -> Self {
        let local_source = Arc::new(PathSource {
            peer: PeerId::LOCAL,
            peer_addr: IpAddr::V4(cfg.router_id),
            router_id: cfg.router_id,
            peer_as: cfg.local_as,
            ibgp: true,
            rr_client: false,
        });
        Speaker {
            rib: Rib::new(cfg.decision),
            cfg,
            peers: BTreeMap::new(),
            local: FastMap::default(),
            local_source,
            outbox: Vec::new(),
            next_id: 1,
            eor_seen: FastSet::default(),
            imported: Interner::default(),
            exported: Interner::default(),
            deferred: None,
            groups: BTreeMap::new(),
            next_group: 0,
            started: SystemTime::now(),
        }
    }

    pub fn rib(&self) -> &Rib {
        &self.rib
    }

    /// What the IO layer must do now, in the order it was asked (start
    /// sessions, send to established ones, reset, stop). Call after every
    /// input (event, tick, admin change).
    pub fn take_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outbox)
    }

    /// From now until `release_exports`, changes are not exported as they
    /// happen but collected: a burst of UPDATEs (the IO layer drains what
    /// is queued) is exported, diffed and encoded once per prefix, with as
    /// many prefixes per UPDATE as share attributes.
    pub fn defer_exports(&mut self) {
        self.deferred.get_or_insert_with(Vec::new);
    }

    /// Exports what changed since `defer_exports`.
    pub fn release_exports(&mut self) {
        if let Some(prefixes) = self.deferred.take() {
            self.propagate(&prefixes);
        }
    }

    /// The IO layer did not send `cmd` to `peer`, which fell behind: the
    /// prefixes (and End-of-RIB) in it are owed to the peer, as they will be
    /// when it catches up. A set, so what a peer is owed is bounded by the
    /// table however much changes meanwhile.
    pub fn missed(&mut self, peer: PeerId, cmd: &SessionCmd) {
        let Some(p) = self.peers.get_mut(&peer).filter(|p| p.up) else {
            return;
        };
        match cmd {
            SessionCmd::Announce(nlri, _) | SessionCmd::Withdraw(nlri) => {
                p.owed.extend(nlri.iter().copied())
            }
            SessionCmd::EndOfRib(f) => p.owed_eor.push(*f),
            // Never held back by the driver (it announces nothing).
            SessionCmd::RouteRefresh(_) => {}
            // The speaker never sends encoded bytes itself.
            SessionCmd::Encoded(_) => {}
        }
    }

    /// `peer` caught up: it is sent the current state of everything it was
    /// owed (announced as its group now holds it, or withdrawn), then the
    /// End-of-RIBs it missed.
    pub fn caught_up(&mut self, peer: PeerId) {
        let Some(p) = self.peers.get_mut(&peer).filter(|p| p.up) else {
            return;
        };
        let owed: Vec<Nlri> = std::mem::take(&mut p.owed).into_iter().collect();
        let eor = std::mem::take(&mut p.owed_eor);
        let Some(g) = p.group.and_then(|g| self.groups.get(&g)) else {
            return;
        };
        let diff = g.current_for(peer, &owed);
        queue_diff(&mut self.outbox, vec![peer], diff);
        for f in eor {
            self.outbox
                .push(Output::Send(peer, SessionCmd::EndOfRib(f)));
        }
    }

    fn capabilities(&self, n: &NeighborConfig) -> Capabilities {
        Capabilities {
            ipv4_unicast: true,
            ipv6_unicast: true,
            four_octet_as: Some(self.cfg.local_as),
            route_refresh: true,
            extended_next_hop_v4: n.remote.is_ipv6(),
            graceful_restart: self.cfg.graceful_restart.map(|t| GracefulRestart {
                restart_time: t,
                restarting: self.cfg.restarting,
                families: vec![
                    (Family::Ipv4Unicast, self.cfg.restarting),
                    (Family::Ipv6Unicast, self.cfg.restarting),
                ],
            }),
            add_path_v4: n.add_path,
            extended_message: true,
        }
    }

    /// Adds a neighbor; its session starts when the IO layer performs the
    /// `Output::Start` this queues.
    pub fn add_neighbor(&mut self, n: NeighborConfig) -> PeerId {
        let id = PeerId(self.next_id);
        self.next_id += 1;
        let session = PeerSession {
            peer: id,
            remote: n.remote,
            local: n.local,
            passive: n.passive,
            security: n.security.clone(),
            connect_retry: self.cfg.connect_retry,
            fsm: FsmConfig {
                local_as: self.cfg.local_as,
                router_id: self.cfg.router_id,
                peer_as: n.peer_as,
                hold_time: self.cfg.hold_time,
                caps: self.capabilities(&n),
            },
        };
        self.outbox.push(Output::Start(session));
        self.peers.insert(
            id,
            PeerRt {
                cfg: n,
                state: State::Idle,
                negotiated: None,
                source: None,
                up: false,
                local_addr: None,
                group: None,
                owed: FastSet::default(),
                owed_eor: Vec::new(),
                established_at: None,
                last_error: None,
                flaps: 0,
                updates_in: 0,
                treat_as_withdraw: 0,
                attribute_discard: 0,
                prefixes_ignored: 0,
                update_errors: BTreeMap::new(),
                import_rejected: 0,
                prefixes_announced: 0,
                gr_deadline: None,
                connect_timeouts: 0,
                received: AdjRibIn::default(),
            },
        );
        id
    }

    /// Stops a neighbor's session (Cease) and forgets it: its routes leave
    /// the RIB at once and the change goes to every other peer. Returns the
    /// prefixes whose candidates changed.
    pub fn remove_neighbor(&mut self, id: PeerId) -> Vec<Prefix> {
        self.leave_group(id);
        if self.peers.remove(&id).is_none() {
            return vec![];
        }
        self.outbox.push(Output::Stop(
            id,
            Notification::new(
                crate::packet::notify::CEASE,
                crate::packet::notify::CEASE_PEER_DECONFIGURED,
            ),
        ));
        self.eor_seen.remove(&id);
        let prefixes = self.rib.peer_down(id);
        self.propagate(&prefixes);
        prefixes
    }

    /// The neighbor configured for a connection from `remote`: same address,
    /// and for IPv6 link-local addresses also the same interface (scope id).
    pub fn neighbor_for(&self, remote: SocketAddr) -> Option<PeerId> {
        let ip = canonical(remote.ip());
        let scope = |a: SocketAddr| match a {
            SocketAddr::V6(v6) if v6.ip().segments()[0] & 0xffc0 == 0xfe80 => v6.scope_id(),
            _ => 0,
        };
        self.peers
            .iter()
            .find(|(_, p)| {
                canonical(p.cfg.remote.ip()) == ip && scope(p.cfg.remote) == scope(remote)
            })
            .map(|(id, _)| *id)
    }

    /// The session security of a neighbor (GTSM on its accepted connections).
    pub fn security(&self, id: PeerId) -> Option<&SessionSecurity> {
        self.peers.get(&id).map(|p| &p.cfg.security)
    }

    /// The interface of an unnumbered neighbor.
    pub fn peer_interface(&self, id: PeerId) -> Option<&str> {
        self.peers.get(&id).and_then(|p| p.cfg.interface.as_deref())
    }

    /// Resets a session (admin), e.g. after a policy change.
    pub fn reset(&mut self, peer: PeerId) {
        if self.peers.contains_key(&peer) {
            self.outbox
                .push(Output::Reset(peer, Notification::new(6, 4)));
        }
    }

    /// The path to an established peer failed (BFD went down): the session
    /// ends now (Cease, BFD Down, RFC 9384) and the peer's routes leave the
    /// RIB at once, graceful restart or not (RFC 5882 4.3.2: a forwarding
    /// failure is not a restart). The `Down` its session task reports later
    /// finds the peer down already. Returns the prefixes whose candidates
    /// changed.
    pub fn peer_failed(&mut self, peer: PeerId, reason: &str) -> Vec<Prefix> {
        let up = self.peers.get(&peer).is_some_and(|p| p.up);
        if !up {
            return vec![];
        }
        self.outbox.push(Output::Reset(
            peer,
            Notification::new(
                crate::packet::notify::CEASE,
                crate::packet::notify::CEASE_BFD_DOWN,
            ),
        ));
        self.down(peer, reason.to_string(), true, false)
    }

    /// Cease (administrative shutdown) to every peer; their sessions end.
    pub fn shutdown(&mut self) {
        for id in self.peers.keys() {
            self.outbox.push(Output::Stop(*id, Notification::new(6, 2)));
        }
    }

    pub fn established_peers(&self) -> usize {
        self.peers
            .values()
            .filter(|p| p.state == State::Established)
            .count()
    }

    /// Every established peer has sent End-of-RIB (initial convergence).
    pub fn converged(&self) -> bool {
        self.peers
            .iter()
            .all(|(id, p)| p.state != State::Established || self.eor_seen.contains(id))
    }

    /// Handles a session event; returns the prefixes whose candidates changed.
    pub fn handle(&mut self, ev: PeerEvent) -> Vec<Prefix> {
        match ev {
            PeerEvent::State { peer, state } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.state = state;
                }
                vec![]
            }
            PeerEvent::Established {
                peer,
                negotiated,
                local_addr,
            } => self.established(peer, *negotiated, local_addr),
            PeerEvent::Update { peer, update } => self.update(peer, update),
            PeerEvent::UpdateReset { peer, error } => self.update_reset(peer, error),
            PeerEvent::RouteRefresh { peer, family } => {
                self.send_table(peer, Some(family));
                vec![]
            }
            PeerEvent::Down {
                peer,
                reason,
                was_established,
                tcp_failure,
            } => self.down(peer, reason, was_established, tcp_failure),
        }
    }

    fn established(&mut self, peer: PeerId, n: Negotiated, local_addr: IpAddr) -> Vec<Prefix> {
        let local_as = self.cfg.local_as;
        let Some(p) = self.peers.get_mut(&peer) else {
            return vec![];
        };
        log::info!(
            "peer {} established (AS {}, id {})",
            p.cfg.remote,
            n.peer_as,
            n.peer_router_id
        );
        p.state = State::Established;
        p.source = Some(Arc::new(PathSource {
            peer,
            peer_addr: p.cfg.remote.ip(),
            router_id: n.peer_router_id,
            peer_as: n.peer_as,
            ibgp: n.peer_as == local_as,
            rr_client: p.cfg.rr_client,
        }));
        p.negotiated = Some(n);
        p.up = true;
        p.local_addr = Some(local_addr);
        p.established_at = Some(Instant::now());
        p.connect_timeouts = 0;
        p.received = AdjRibIn::default();
        self.eor_seen.remove(&peer);
        self.join_group(peer);
        self.send_table(peer, None);
        vec![]
    }

    fn down(
        &mut self,
        peer: PeerId,
        reason: String,
        was_established: bool,
        tcp_failure: bool,
    ) -> Vec<Prefix> {
        let Some(p) = self.peers.get_mut(&peer) else {
            return vec![];
        };
        if was_established && !p.up {
            // Already taken down by `peer_failed`: its reason stays.
            return vec![];
        }
        p.last_error = Some(reason.clone());
        if !was_established {
            if reason.ends_with(crate::session::CONNECT_TIMED_OUT) {
                p.connect_timeouts = p.connect_timeouts.saturating_add(1);
            }
            return vec![];
        }
        log::warn!("peer {} down: {reason}", p.cfg.remote);
        p.flaps += 1;
        p.state = State::Idle;
        p.up = false;
        p.established_at = None;
        // What the session sent ends with it (stale paths, if graceful
        // restart keeps them, stay in the RIB and the post-policy view).
        p.received = AdjRibIn::default();
        let gr = p
            .negotiated
            .as_ref()
            .and_then(|n| n.peer_graceful_restart.clone());
        self.eor_seen.remove(&peer);
        self.leave_group(peer);
        match gr {
            // RFC 4724 4.2: only for a peer that listed address families in
            // its capability (helper-only speakers such as FRR's default
            // list none: their routes go at once).
            Some(gr) if tcp_failure && gr.restart_time > 0 && !gr.families.is_empty() => {
                // RFC 4724: keep the peer's routes, marked stale, for its restart time.
                let n = self.rib.stale_peer(peer);
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.gr_deadline =
                        Some(Instant::now() + Duration::from_secs(u64::from(gr.restart_time)));
                }
                log::info!(
                    "keeping {n} routes of the restarting peer for {} s",
                    gr.restart_time
                );
                vec![]
            }
            _ => {
                let prefixes = self.rib.peer_down(peer);
                self.propagate(&prefixes);
                prefixes
            }
        }
    }

    /// An UPDATE that reset the session: counted by cause (the `Down` that follows cleans up).
    fn update_reset(&mut self, peer: PeerId, e: UpdateError) -> Vec<Prefix> {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.count(&e);
            log::warn!("peer {}: {e}", p.cfg.remote);
        }
        vec![]
    }

    /// Loop checks and RFC hygiene of received attributes, before policy:
    /// the interned attributes import policy starts from, or why the path
    /// is dropped.
    fn check_and_normalize(
        &mut self,
        received: &PathAttrs,
        ibgp: bool,
    ) -> Result<Arc<PathAttrs>, &'static str> {
        let c = &self.cfg;
        import_check(received, c.local_as, c.router_id, c.cluster_id, ibgp)?;
        let mut a = received.clone();
        import_normalize(&mut a, ibgp, DEFAULT_LOCAL_PREF);
        Ok(self.imported.intern(a))
    }

    fn update(&mut self, peer: PeerId, u: crate::packet::Update) -> Vec<Prefix> {
        let Some(p) = self.peers.get_mut(&peer) else {
            return vec![];
        };
        // Queued before a `peer_failed` that took the session down.
        if !p.up {
            return vec![];
        }
        let Some(source) = p.source.clone() else {
            return vec![];
        };
        p.updates_in += 1;
        for e in &u.errors {
            p.count(e);
        }
        for e in u.discarded().chain(u.prefix_ignores()) {
            log::warn!("peer {}: {e}", p.cfg.remote);
        }
        p.prefixes_ignored += u.ignored.len() as u64;
        if let Some(e) = u.treat_as_withdraw() {
            p.treat_as_withdraw += 1;
            log::warn!(
                "peer {}: {e}: treating {} prefixes as withdrawn",
                p.cfg.remote,
                u.withdrawn.len()
            );
        }
        let keep = p.cfg.keep_received;
        let mut touched = Vec::with_capacity(u.withdrawn.len() + u.announced_prefixes().count());
        for nlri in &u.withdrawn {
            p.received.remove(nlri);
            self.rib.update(&source, *nlri, None);
            touched.push(nlri.prefix);
        }
        for reach in &u.announced {
            let received = keep.then(|| self.imported.intern_arc(reach.attrs.clone()));
            let checked = self.check_and_normalize(&reach.attrs, source.ibgp);
            let p = self.peers.get_mut(&peer).expect("peer exists");
            p.prefixes_announced += reach.prefixes.len() as u64;
            for nlri in &reach.prefixes {
                let (accepted, outcome) =
                    import_policy(&mut self.imported, &checked, p.cfg.import.as_ref(), nlri);
                if accepted.is_none() {
                    p.import_rejected += 1;
                }
                if let Some(r) = &received {
                    p.received.insert(
                        *nlri,
                        Received {
                            attrs: r.clone(),
                            outcome,
                        },
                    );
                }
                self.rib.update(&source, *nlri, accepted);
                touched.push(nlri.prefix);
            }
        }
        if u.end_of_rib.is_some() {
            self.eor_seen.insert(peer);
            let stale = self.rib.sweep_stale(peer);
            if let Some(p) = self.peers.get_mut(&peer) {
                p.gr_deadline = None;
            }
            touched.extend(stale);
        }
        self.propagate(&touched);
        self.imported.sweep();
        touched
    }

    /// Graceful-restart timers: sweeps stale routes of peers that did not come back.
    pub fn tick(&mut self) -> Vec<Prefix> {
        self.tick_at(Instant::now())
    }

    /// `tick` as of `now` (tests step time without waiting).
    pub fn tick_at(&mut self, now: Instant) -> Vec<Prefix> {
        let due: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.gr_deadline.is_some_and(|d| d <= now))
            .map(|(id, _)| *id)
            .collect();
        let mut out = Vec::new();
        for id in due {
            if let Some(p) = self.peers.get_mut(&id) {
                p.gr_deadline = None;
            }
            out.extend(self.rib.sweep_stale(id));
        }
        self.propagate(&out);
        out
    }

    /// Originates (or replaces) a local route.
    pub fn originate(&mut self, prefix: Prefix, attrs: PathAttrs) -> Vec<Prefix> {
        let a = Arc::new(attrs);
        self.local.insert(prefix, a.clone());
        self.rib.update(&self.local_source.clone(), prefix, Some(a));
        self.propagate(&[prefix]);
        vec![prefix]
    }

    pub fn withdraw_local(&mut self, prefix: Prefix) -> Vec<Prefix> {
        if self.local.remove(&prefix).is_none() {
            return vec![];
        }
        self.rib.update(&self.local_source.clone(), prefix, None);
        self.propagate(&[prefix]);
        vec![prefix]
    }

    pub fn local_routes(&self) -> impl Iterator<Item = (&Prefix, &Arc<PathAttrs>)> {
        self.local.iter()
    }

    /// What decides the UPDATEs an established peer gets (its update group).
    fn group_key(&self, p: &PeerRt) -> Option<GroupKey> {
        let n = p.negotiated.as_ref()?;
        let ibgp = n.peer_as == self.cfg.local_as;
        let local = p.local_addr.map(canonical);
        let self_nh = local.map(|a| match a {
            IpAddr::V4(v4) => NextHop::V4 { addr: v4 },
            IpAddr::V6(v6) => NextHop::V6 {
                global: v6,
                link_local: None,
            },
        });
        let ctx = ExportCtx {
            local_as: self.cfg.local_as,
            router_id: self.cfg.router_id,
            cluster_id: self.cfg.cluster_id,
            peer: PeerId::NONE,
            peer_as: n.peer_as,
            ibgp,
            rr_client: p.cfg.rr_client,
            next_hop_self: if !ibgp || p.cfg.next_hop_self {
                self_nh
            } else {
                None
            },
            local_pref_default: DEFAULT_LOCAL_PREF,
        };
        let v6_self = match local {
            Some(IpAddr::V6(v6)) if !n.ipv4_unicast => Some(v6),
            _ => None,
        };
        Some(GroupKey {
            ctx,
            policy: p.cfg.export.clone(),
            ipv4_unicast: n.ipv4_unicast,
            ipv6_unicast: n.ipv6_unicast,
            extended_next_hop: n.extended_next_hop,
            add_path_tx: n.add_path_tx,
            asn4: n.asn4,
            extended_message: n.extended_message,
            v6_self,
        })
    }

    /// Puts an established peer into the group of its key, making the group
    /// (filled from the RIB) when it is the first of its kind.
    fn join_group(&mut self, id: PeerId) {
        self.leave_group(id);
        let Some(key) = self.peers.get(&id).and_then(|p| self.group_key(p)) else {
            return;
        };
        let gid = match self.groups.iter().find(|(_, g)| g.key == key) {
            Some((gid, _)) => *gid,
            None => {
                let gid = self.next_group;
                self.next_group += 1;
                let mut ex = GroupExport::new(&self.rib, &key, &mut self.exported);
                let wanted: Vec<(Prefix, Wanted)> = self
                    .rib
                    .iter_best()
                    .map(|(prefix, _)| (*prefix, ex.wanted(prefix)))
                    .collect();
                let mut g = UpdateGroup::new(key);
                g.fill(wanted);
                self.groups.insert(gid, g);
                gid
            }
        };
        if let Some(g) = self.groups.get_mut(&gid) {
            g.join(id);
        }
        if let Some(p) = self.peers.get_mut(&id) {
            p.group = Some(gid);
        }
    }

    /// Takes a peer out of its update group; the last member out ends it.
    fn leave_group(&mut self, id: PeerId) {
        if let Some(p) = self.peers.get_mut(&id) {
            // A new session gets the whole table: nothing is owed to it.
            p.owed = FastSet::default();
            p.owed_eor.clear();
        }
        let Some(gid) = self.peers.get_mut(&id).and_then(|p| p.group.take()) else {
            return;
        };
        if let Some(g) = self.groups.get_mut(&gid) {
            g.leave(id);
            if g.members().is_empty() {
                self.groups.remove(&gid);
                self.exported.sweep();
            }
        }
    }

    /// Sends the changes of `prefixes` to every established peer, once per
    /// update group, `EXPORT_CHUNK` prefixes at a time.
    fn propagate(&mut self, prefixes: &[Prefix]) {
        if prefixes.is_empty() {
            return;
        }
        if let Some(d) = self.deferred.as_mut() {
            d.extend_from_slice(prefixes);
            return;
        }
        let mut prefixes = prefixes.to_vec();
        prefixes.sort_unstable();
        prefixes.dedup();
        let gids: Vec<u32> = self.groups.keys().copied().collect();
        for gid in gids {
            let key = self.groups[&gid].key.clone();
            let mut ex = GroupExport::new(&self.rib, &key, &mut self.exported);
            for chunk in prefixes.chunks(EXPORT_CHUNK) {
                let wanted: Vec<(Prefix, Wanted)> =
                    chunk.iter().map(|p| (*p, ex.wanted(p))).collect();
                let Some(g) = self.groups.get_mut(&gid) else {
                    break;
                };
                for (to, diff) in g.update(wanted) {
                    queue_diff(&mut self.outbox, to, diff);
                }
            }
        }
        self.exported.sweep();
    }

    /// The full table to one peer (on establishment or ROUTE-REFRESH), from
    /// its update group's Adj-RIB-Out, then End-of-RIB.
    fn send_table(&mut self, id: PeerId, family: Option<Family>) {
        let Some(p) = self.peers.get(&id) else { return };
        let (Some(n), Some(gid), true) = (p.negotiated.clone(), p.group, p.up) else {
            return;
        };
        let Some(g) = self.groups.get(&gid) else {
            return;
        };
        let diff = g.table_for(id, |prefix| match family {
            Some(Family::Ipv4Unicast) => matches!(prefix, Prefix::V4(_)),
            Some(Family::Ipv6Unicast) => matches!(prefix, Prefix::V6(_)),
            None => true,
        });
        queue_diff(&mut self.outbox, vec![id], diff);
        let fams: Vec<Family> = match family {
            Some(f) => vec![f],
            None => n.families(),
        };
        for f in fams {
            self.outbox.push(Output::Send(id, SessionCmd::EndOfRib(f)));
        }
    }

    pub fn summary(&self) -> Vec<NeighborSummary> {
        self.peers
            .iter()
            .map(|(id, p)| {
                let n = p.negotiated.as_ref();
                let mut caps = Vec::new();
                if let Some(n) = n {
                    if n.ipv4_unicast {
                        caps.push("ipv4-unicast".into());
                    }
                    if n.ipv6_unicast {
                        caps.push("ipv6-unicast".into());
                    }
                    if n.asn4 {
                        caps.push("4-octet-as".into());
                    }
                    if n.route_refresh {
                        caps.push("route-refresh".into());
                    }
                    if n.extended_next_hop {
                        caps.push("extended-nexthop".into());
                    }
                    if n.peer_graceful_restart.is_some() {
                        caps.push("graceful-restart".into());
                    }
                    if n.add_path_rx {
                        caps.push("add-path-receive".into());
                    }
                    if n.add_path_tx {
                        caps.push("add-path-send".into());
                    }
                    if n.extended_message {
                        caps.push("extended-message".into());
                    }
                }
                NeighborSummary {
                    peer: id.0,
                    address: p.cfg.remote.to_string(),
                    interface: p.cfg.interface.clone(),
                    description: p.cfg.description.clone(),
                    remote_as: n.map(|n| n.peer_as),
                    router_id: n.map(|n| n.peer_router_id),
                    state: p.state.name(),
                    uptime_secs: p.established_at.map(|t| t.elapsed().as_secs()),
                    prefixes_received: self.rib.prefix_count(*id),
                    prefixes_stale: self.rib.stale_count(*id),
                    prefixes_sent: p
                        .group
                        .and_then(|g| self.groups.get(&g))
                        .map_or(0, |g| g.sent_to(*id)),
                    prefixes_owed: p.owed.len(),
                    updates_received: p.updates_in,
                    treat_as_withdraw: p.treat_as_withdraw,
                    attribute_discard: p.attribute_discard,
                    prefixes_ignored: p.prefixes_ignored,
                    update_errors: p.update_errors.clone(),
                    import_rejected: p.import_rejected,
                    prefixes_announced: p.prefixes_announced,
                    flaps: p.flaps,
                    last_error: p.last_error.clone(),
                    capabilities: caps,
                    rr_client: p.cfg.rr_client,
                    tcp_md5: p.cfg.security.md5_key.is_some(),
                    ttl_security: p.cfg.security.ttl_security,
                    connect_timeouts: p.connect_timeouts,
                }
            })
            .collect()
    }

    /// The session address of a peer (for `explain`).
    pub fn peer_address(&self, id: PeerId) -> Option<SocketAddr> {
        self.peers.get(&id).map(|p| p.cfg.remote)
    }
}

/// Import policy on one checked, normalized path (`check_and_normalize`):
/// what goes into the Adj-RIB-In (`None`: rejected) and why.
fn import_policy(
    imported: &mut Interner,
    checked: &Result<Arc<PathAttrs>, &'static str>,
    policy: Option<&Policy>,
    nlri: &Nlri,
) -> (Option<Arc<PathAttrs>>, ImportOutcome) {
    let a = match checked {
        Err(why) => return (None, ImportOutcome::Rejected(Rejection::Check(why))),
        Ok(a) => a,
    };
    let Some(pol) = policy else {
        return (Some(a.clone()), ImportOutcome::Accepted);
    };
    match pol.apply_arc(&nlri.prefix, a) {
        None => (None, ImportOutcome::Rejected(Rejection::Policy)),
        Some(r) if Arc::ptr_eq(&r, a) || r == *a => (Some(r), ImportOutcome::Accepted),
        // Changed by the policy: shared with every prefix the policy
        // changed the same way.
        Some(r) => (Some(imported.intern_arc(r)), ImportOutcome::Modified),
    }
}

/// Queues `diff` for `to` (one peer, or an update group's members that
/// share it): withdrawals first, then announcements grouped by attributes
/// (one UPDATE carries many prefixes).
fn queue_diff(outbox: &mut Vec<Output>, to: Vec<PeerId>, diff: Diff) {
    let out = |cmd| match to.as_slice() {
        [one] => Output::Send(*one, cmd),
        _ => Output::SendMany(to.as_slice().into(), cmd),
    };
    if to.is_empty() {
        return;
    }
    if !diff.withdraw.is_empty() {
        outbox.push(out(SessionCmd::Withdraw(diff.withdraw)));
    }
    let mut announce: FastMap<Arc<PathAttrs>, Vec<Nlri>> = FastMap::default();
    for (nlri, a) in diff.announce {
        announce.entry(a).or_default().push(nlri);
    }
    for (a, ps) in announce {
        outbox.push(out(SessionCmd::Announce(ps, a)));
    }
}

/// IPv4-mapped IPv6 addresses compare as IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

mod reconfig;
mod rib_views;
pub use reconfig::ImportReapply;

#[cfg(test)]
mod tests;
