//! The cer-control event loop: the one place state changes (holo style).
//! Session events, accepted connections, admin requests and a 1 s tick come
//! in; the speaker updates the RIB; the SAM plane turns candidate changes
//! into ownership changes (RIB trap events); ownership becomes dataplane FIB
//! operations for the feed thread. Its Prometheus metrics are read here
//! too (`state/metrics.rs`), by a request through the loop.

use super::admin::{ControlRequest, ControlResponse};
use super::config::{CaptureMode, ControlConfig};
use super::endpoints::{Endpoint, Endpoints};
use super::fibfeed::{FeedOp, SharedStatus};
use super::sam::{Owner, Sam, TrapEvent};
use super::underlay::{self, Via};
use super::unnumbered::{LinkEvent, PeerChange, Unnumbered};
use cer_bgp::driver::SpeakerIo;
use cer_bgp::route::{Community, Ipv4Prefix, NextHop, PathAttrs, PeerId, Prefix};
use cer_bgp::session::SessionEvent;
use cer_bgp::speaker::{NeighborConfig, Speaker, SpeakerConfig};
use cer_capture::{Desired, Intent};
use cer_shared::feed::EndpointAction;
use cer_shared::state_file::StateFileError;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, oneshot};

pub type AdminMsg = (ControlRequest, oneshot::Sender<ControlResponse>);

const TRAP_LOG: usize = 1000;

mod bfd_client;
mod metrics;
mod northbound;
mod reload;
mod rib_views;
pub use bfd_client::BfdClient;
pub use metrics::{bgp_state_number, render as metrics_render, MetricsAsk};

/// Whether the cloud reconciler may start acting (activate once): after the
/// initial sync, and only with routes to plan from. With neighbors
/// configured that means a session established and either every
/// established peer's End-of-RIB seen (`converged`) or, for a peer that
/// never sends one, `delay` since the first session came up. Never on a
/// timer alone: a CER restarted while its WAN is down would find no path
/// for the /32s on its NIC and release them. A node with no neighbor has
/// nothing to wait for.
pub(crate) fn capture_may_start(
    ready: bool,
    has_neighbors: bool,
    converged: bool,
    since_established: Option<Duration>,
    delay: Duration,
) -> bool {
    ready && (!has_neighbors || converged || since_established.is_some_and(|d| d >= delay))
}

#[cfg(test)]
mod tests;

/// Why cer-control could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("bgp.neighbor[{0}]: no address or interface")]
    NeighborWithoutAddress(usize),
    #[error(transparent)]
    State(#[from] StateFileError),
}

/// What the FIB holds for one endpoint, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct FibEntry {
    pub action: Option<EndpointAction>,
    pub note: String,
}

pub struct ControlState {
    pub cfg: ControlConfig,
    /// The BGP speaker (sans-IO) and the IO layer performing its outputs:
    /// every entry point of `ControlState` that can change the speaker ends with
    /// `flush` (see `ControlState::flush`).
    pub speaker: Speaker,
    bgp_io: SpeakerIo,
    pub sam: Sam,
    endpoints: Endpoints,
    fib: BTreeMap<Ipv4Addr, FibEntry>,
    /// BGP unnumbered: the peer of each interface neighbor.
    pub unnumbered: Unnumbered,
    /// The speaker neighbor running each unnumbered interface's session.
    unnumbered_sessions: BTreeMap<usize, PeerId>,
    /// Underlay routes fed to the dataplane (learned from interface neighbors).
    underlay: BTreeMap<Ipv4Prefix, Vec<Via>>,
    /// Pool /32s captured here by proxy ARP (on-prem capture: owned elsewhere).
    captured: BTreeSet<Ipv4Addr>,
    /// The VRRP gate of on-prem capture (set by the binary when configured).
    pub vrrp: Option<super::vrrp::SharedVrrp>,
    /// Who may use the admin socket (set by the binary), with its refusals.
    pub admin_access: Option<cer_shared::sockperm::SocketAccess>,
    /// The WAN health keepalived tracks (`capture.vrrp_track_file`).
    pub vrrp_track: Option<super::vrrp_track::TrackFile>,
    /// Cloud capture: the reconciler this state feeds intents to.
    pub reconciler: Option<cer_capture::Reconciler>,
    /// Cloud pairs: this CER's role (`capture.pair_preference`).
    pub pair: Option<super::pair::Pair>,
    /// BFD to the neighbors with `bfd = true` (set by the binary when any has).
    pub bfd: Option<BfdClient>,
    feed: Option<std::sync::mpsc::Sender<FeedOp>>,
    pub feed_status: SharedStatus,
    trap_log: VecDeque<TrapEvent>,
    pub trap_tx: broadcast::Sender<TrapEvent>,
    started: Instant,
    ready: bool,
    /// The cloud reconciler was let act (`capture_may_start`).
    capture_active: bool,
    /// When a BGP session was first seen established after start.
    first_established: Option<Instant>,
    /// The file the configuration was read from (`reload` reads it again).
    pub config_path: Option<std::path::PathBuf>,
}

impl ControlState {
    pub fn new(
        cfg: ControlConfig,
        events: mpsc::Sender<SessionEvent>,
        feed: Option<std::sync::mpsc::Sender<FeedOp>>,
        feed_status: SharedStatus,
    ) -> Result<ControlState, StateFileError> {
        // A state file from an earlier run means this is a restart (RFC 4724 R bit).
        let restarting = cfg.sam.state_file.exists();
        let endpoints = Endpoints::load(&cfg.sam.state_file)?;
        let speaker_cfg = SpeakerConfig {
            local_as: cfg.node.asn,
            router_id: cfg.node.router_id,
            cluster_id: cfg
                .bgp
                .route_reflector
                .then(|| cfg.bgp.cluster_id.unwrap_or(cfg.node.router_id)),
            hold_time: cfg.bgp.hold_time,
            connect_retry: Duration::from_secs(cfg.bgp.connect_retry_secs.max(1)),
            graceful_restart: (cfg.bgp.graceful_restart_secs > 0)
                .then_some(cfg.bgp.graceful_restart_secs),
            restarting,
            // The dataplane forwards on its last FIB while we restart (F bit).
            forwarding_preserved: cfg.dataplane.feed_socket.is_some(),
            decision: cer_bgp::decision::DecisionConfig {
                always_compare_med: cfg.bgp.always_compare_med,
            },
        };
        let mut sam = Sam::new(
            cfg.sam.identity,
            cfg.sam.marker_community,
            cfg.sam.pool.clone(),
            speaker_cfg.decision,
        );
        sam.site_identities = cfg.sam.site_identities.clone();
        let (trap_tx, _) = broadcast::channel(4096);
        Ok(ControlState {
            speaker: Speaker::new(speaker_cfg),
            bgp_io: SpeakerIo::new(events),
            sam,
            endpoints,
            fib: BTreeMap::new(),
            unnumbered: Unnumbered::default(),
            unnumbered_sessions: BTreeMap::new(),
            underlay: BTreeMap::new(),
            captured: BTreeSet::new(),
            vrrp: None,
            admin_access: None,
            vrrp_track: cfg
                .capture
                .vrrp_track_file
                .clone()
                .map(super::vrrp_track::TrackFile::new),
            reconciler: None,
            pair: cfg.capture.pair_preference.map(|pref| {
                super::pair::Pair::new(cfg.sam.identity, pref, cfg.sam.site_identities.clone())
            }),
            bfd: None,
            feed,
            feed_status,
            trap_log: VecDeque::new(),
            trap_tx,
            started: Instant::now(),
            ready: false,
            capture_active: false,
            first_established: None,
            config_path: None,
            cfg,
        })
    }

    /// Starts neighbors, originates the marker and the endpoints.
    pub fn start(&mut self) -> Result<(), StartError> {
        for (i, n) in self.cfg.bgp.neighbors.clone().into_iter().enumerate() {
            match (n.address, &n.interface) {
                (Some(address), _) => {
                    let remote = SocketAddr::new(address, n.port.unwrap_or(179));
                    let cfg = self.neighbor_config(i, remote, None);
                    self.speaker.add_neighbor(cfg);
                }
                (None, Some(ifname)) => {
                    // The session starts once the peer is learned (RA or its connection).
                    self.unnumbered
                        .add(ifname, i, Duration::from_secs(n.ra_timeout_secs));
                }
                (None, None) => return Err(StartError::NeighborWithoutAddress(i)),
            }
        }
        for net in self.cfg.bgp.networks.clone() {
            let a = self.local_attrs(self.cfg.sam.local_pref);
            let changed = self.speaker.originate(Prefix::V4(net), a);
            self.after(changed);
        }
        // A cloud pair member advertises its capture preference on its marker (`pair`).
        let marker_pref = self
            .cfg
            .capture
            .pair_preference
            .unwrap_or(self.cfg.sam.local_pref);
        let mut marker = self.local_attrs(marker_pref);
        marker.communities = vec![self.cfg.sam.marker_community, self.cfg.sam.identity];
        let changed = self
            .speaker
            .originate(Prefix::V4(self.cfg.sam.marker_prefix), marker);
        self.after(changed);
        for ip in self.cfg.sam.endpoints.clone() {
            if self.endpoints.get(ip).is_none() {
                self.endpoints.set(Endpoint {
                    ip,
                    local_pref: self.cfg.sam.local_pref,
                })?;
            }
        }
        self.endpoints.persist()?;
        let eps: Vec<Endpoint> = self.endpoints.iter().copied().collect();
        for e in eps {
            self.advertise(e);
        }
        self.flush();
        Ok(())
    }

    /// The speaker's view of configured neighbor `i` at `remote`.
    fn neighbor_config(
        &self,
        i: usize,
        remote: SocketAddr,
        interface: Option<String>,
    ) -> NeighborConfig {
        let n = &self.cfg.bgp.neighbors[i];
        NeighborConfig {
            remote,
            local: n.local_address,
            peer_as: n.remote_as,
            passive: n.passive,
            rr_client: n.rr_client,
            next_hop_self: n.next_hop_self,
            import: self.cfg.policy(&n.import_policy).cloned(),
            export: self.cfg.policy(&n.export_policy).cloned(),
            description: n.description.clone(),
            interface,
            add_path: n.add_path.into(),
            // Checked when the configuration was loaded.
            security: n.security().unwrap_or_default(),
            keep_received: n.keep_received,
        }
    }

    /// A link or Router Advertisement event from an unnumbered interface.
    pub fn on_link(&mut self, ev: LinkEvent) {
        let changes = self.unnumbered.on_event(ev, Instant::now());
        self.apply_unnumbered(changes);
    }

    /// Starts or stops unnumbered sessions as their peers come and go.
    fn apply_unnumbered(&mut self, changes: Vec<PeerChange>) {
        for ch in changes {
            match ch {
                PeerChange::Up { iface, peer } => {
                    let i = &self.unnumbered.ifaces[iface];
                    let (name, neighbor) = (i.name.clone(), i.neighbor);
                    log::info!(
                        "unnumbered {name}: peer {} (learned from {:?}): starting the session",
                        peer.addr,
                        peer.learned
                    );
                    let cfg = self.neighbor_config(neighbor, peer.socket(), Some(name));
                    let id = self.speaker.add_neighbor(cfg);
                    if let Some(old) = self.unnumbered_sessions.insert(iface, id) {
                        let changed = self.speaker.remove_neighbor(old);
                        self.after(changed);
                    }
                }
                PeerChange::Down { iface, reason } => {
                    log::warn!(
                        "unnumbered {}: peer lost ({reason}): session down, its routes withdrawn",
                        self.unnumbered.ifaces[iface].name
                    );
                    if let Some(id) = self.unnumbered_sessions.remove(&iface) {
                        let changed = self.speaker.remove_neighbor(id);
                        self.after(changed);
                    }
                }
            }
        }
    }

    /// An accepted BGP connection: to its configured neighbor; a connection
    /// from a link-local address on an unnumbered interface without a known
    /// peer teaches that peer first. Returns false when nobody takes it.
    pub fn inbound(&mut self, stream: tokio::net::TcpStream) -> bool {
        if let Ok(remote) = stream.peer_addr() {
            if self.speaker.neighbor_for(remote).is_none() {
                if let Some(ch) = self.unnumbered.on_connection(remote) {
                    self.apply_unnumbered(vec![ch]);
                }
            }
        }
        self.flush();
        self.bgp_io.inbound(&self.speaker, stream)
    }

    /// Performs what the speaker asked for (start, send, reset, stop
    /// sessions). The binary's event loop calls it after every input; the
    /// entry points that run outside that loop (`start`, `shutdown`) call it
    /// themselves.
    pub fn flush(&mut self) {
        self.bgp_io.flush(&mut self.speaker);
    }

    /// Interface and dataplane port of an unnumbered session.
    fn unnumbered_port(&self, id: PeerId) -> Option<(String, String)> {
        let (&iface, _) = self.unnumbered_sessions.iter().find(|(_, p)| **p == id)?;
        let i = self.unnumbered.ifaces.get(iface)?;
        let port = self.cfg.bgp.neighbors.get(i.neighbor)?.port()?.to_string();
        Some((i.name.clone(), port))
    }

    /// Re-derives the underlay route of one prefix and feeds the change.
    fn underlay_for(&mut self, prefix: &Prefix, now: Instant) {
        let Prefix::V4(p) = prefix else { return };
        let in_pool = self
            .cfg
            .sam
            .pool
            .iter()
            .any(|pool| pool.contains(p.addr()) || p.contains(pool.addr()));
        let rib = self.speaker.rib();
        let marker = rib
            .best(prefix)
            .is_some_and(|b| b.attrs.communities.contains(&self.cfg.sam.marker_community));
        let want = if in_pool || marker || self.unnumbered_sessions.is_empty() {
            None
        } else {
            underlay::route(
                rib.paths(prefix),
                rib.best_index(prefix),
                self.cfg.bgp.maximum_paths,
                |id| self.unnumbered_port(id),
            )
        };
        if self.underlay.get(p) == want.as_ref() {
            return;
        }
        let op = match &want {
            Some(v) => FeedOp::Route(*p, v.iter().map(Via::next_hop).collect(), now),
            None => FeedOp::RouteDel(*p, now),
        };
        match want {
            Some(v) => self.underlay.insert(*p, v),
            None => self.underlay.remove(p),
        };
        if let Some(feed) = &self.feed {
            let _ = feed.send(op);
        }
    }

    fn local_attrs(&self, local_pref: u32) -> PathAttrs {
        let nh = match self.cfg.node.transport_address {
            IpAddr::V4(a) => NextHop::V4 { addr: a },
            IpAddr::V6(a) => NextHop::V6 {
                global: a,
                link_local: None,
            },
        };
        let mut a = PathAttrs::local(nh);
        a.local_pref = Some(local_pref);
        a
    }

    fn advertise(&mut self, e: Endpoint) {
        let mut a = self.local_attrs(e.local_pref);
        a.communities = vec![self.cfg.sam.identity];
        let changed = self
            .speaker
            .originate(Prefix::V4(Ipv4Prefix::host(e.ip)), a);
        self.after(changed);
    }

    /// After the RIB changed for `prefixes`: ownership, trap, FIB.
    pub fn after(&mut self, prefixes: Vec<Prefix>) {
        self.after_at(prefixes, Instant::now());
    }

    /// As `after`, with the time the causing BGP event arrived (the feed
    /// measures change-to-dataplane-ack latency from it). Also brings the
    /// WAN health keepalived tracks up to date.
    pub fn after_at(&mut self, prefixes: Vec<Prefix>, cause: Instant) {
        let mut owners_changed = Vec::new();
        for p in prefixes {
            self.underlay_for(&p, cause);
            let events = self.sam.on_prefix_change(self.speaker.rib(), &p);
            for ev in events {
                owners_changed.push(ev.prefix);
                let _ = self.trap_tx.send(ev.clone());
                if self.trap_log.len() == TRAP_LOG {
                    self.trap_log.pop_front();
                }
                self.trap_log.push_back(ev);
            }
        }
        // Sessions come and go with the same events (and BFD's resets).
        self.track_wan();
        // The role first: the intents below follow it (a pair member that
        // just lost its last session stands by instead of releasing).
        let role_changed = self.elect_pair();
        for p in owners_changed {
            self.fib_for(p, cause);
        }
        if role_changed {
            self.reset_capture_intents();
        }
    }

    /// Cloud pairs: re-elects the active capturer from the markers and this
    /// CER's sessions. True when this CER's role changed.
    fn elect_pair(&mut self) -> bool {
        let Some(pair) = self.pair.as_mut() else {
            return false;
        };
        let wan_up = self.speaker.established_peers() > 0;
        let (sam, rib) = (&self.sam, self.speaker.rib());
        pair.elect(wan_up, |id| sam.marker_preference(rib, id))
    }

    /// After a change of role, every /32 the reconciler manages and every
    /// owned one gets its intent anew (capture, stand by or release), which
    /// fences whatever was planned under the old role.
    fn reset_capture_intents(&mut self) {
        let Some(r) = &self.reconciler else {
            return;
        };
        let mut ips: BTreeSet<Ipv4Addr> = r.status().ips.keys().copied().collect();
        ips.extend(self.sam.owners().map(|o| o.prefix.addr()));
        for ip in ips {
            self.capture_intent(Ipv4Prefix::host(ip));
        }
    }

    /// Derives the FIB entry of one endpoint from its owner and queues the change.
    fn fib_for(&mut self, p: Ipv4Prefix, now: Instant) {
        let ip = p.addr();
        let entry = match self.sam.owner(&p) {
            None => None,
            // Owned here, or by another CER of this site: the workload is on
            // the network this node's LAN port is on.
            Some(o) if o.site_local => {
                let port = &self.cfg.dataplane.lan_port;
                Some(FibEntry {
                    action: Some(EndpointAction::Local { port: port.clone() }),
                    note: if o.local {
                        format!("owned here: delivered on port {port}")
                    } else {
                        format!(
                            "owned at this site by {} (sam.site_identities): delivered on port {port}",
                            o.identity
                        )
                    },
                })
            }
            Some(o) => {
                let nh = o.path.attrs.next_hop.ip();
                Some(match self.cfg.tunnels.iter().find(|t| t.remote == nh) {
                    Some(t) => FibEntry {
                        action: Some(EndpointAction::Tunnel { tunnel: t.id }),
                        note: format!("owned by {} at {nh}: tunnel {}", o.identity, t.id),
                    },
                    None => FibEntry {
                        action: None,
                        note: format!("owned by {} at {nh}, but no [[tunnel]] has remote = {nh}: not imported", o.identity),
                    },
                })
            }
        };
        let old = self.fib.get(&ip).and_then(|e| e.action.clone());
        let new = entry.as_ref().and_then(|e| e.action.clone());
        match entry {
            Some(e) => {
                self.fib.insert(ip, e);
            }
            None => {
                self.fib.remove(&ip);
            }
        }
        if old != new {
            if let Some(feed) = &self.feed {
                let _ = feed.send(match new {
                    Some(a) => FeedOp::Set(ip, a, now),
                    None => FeedOp::Del(ip, now),
                });
            }
        }
        // On-prem capture: answer ARP for pool /32s owned at another site
        // (the gate decides whether the dataplane actually answers); never
        // for one another CER of this site owns (its workload answers).
        let capture = self.cfg.capture.mode == CaptureMode::Onprem
            && self.cfg.in_pool(ip)
            && matches!(self.sam.owner(&p), Some(o) if !o.site_local);
        let changed = if capture {
            self.captured.insert(ip)
        } else {
            self.captured.remove(&ip)
        };
        if changed {
            if let Some(feed) = &self.feed {
                let _ = feed.send(FeedOp::Capture(ip, capture, now));
            }
        }
        self.capture_intent(p);
    }

    /// Cloud capture: the intent of one pool /32 (and the path signature
    /// that fences every action planned from it), set synchronously. A cloud
    /// pair's standby stands by for remote /32s.
    fn capture_intent(&self, p: Ipv4Prefix) {
        let ip = p.addr();
        if let Some(r) = &self.reconciler {
            if self.cfg.in_pool(ip) {
                let standby = self.pair.as_ref().is_some_and(|x| !x.is_active());
                // A pair member without any BGP session has no view: what it
                // holds is the active CER's to take, not its to release.
                let blind = self.pair.is_some() && self.speaker.established_peers() == 0;
                let intent = match self.sam.owner(&p) {
                    Some(o) if !o.site_local => Intent {
                        desired: if standby {
                            Desired::Standby
                        } else {
                            Desired::Capture
                        },
                        signature: o.signature.0,
                    },
                    Some(o) => Intent {
                        desired: Desired::Release,
                        signature: o.signature.0,
                    },
                    // Owned by nobody: released (from this NIC only, so a
                    // standby's release never touches the active one's).
                    None => Intent {
                        desired: if blind {
                            Desired::Standby
                        } else {
                            Desired::Release
                        },
                        signature: 0,
                    },
                };
                r.set(ip, intent);
            }
        }
    }

    pub fn on_session(&mut self, ev: SessionEvent) {
        let arrived = Instant::now();
        if let cer_bgp::events::PeerEvent::Established {
            peer, local_addr, ..
        } = &ev.event
        {
            if let Some(remote) = self.speaker.peer_address(*peer) {
                self.bfd_on_established(remote, *local_addr);
            }
        }
        let changed = self.bgp_io.event(&mut self.speaker, ev);
        self.after_at(changed, arrived);
    }

    /// Tells keepalived (through its track file) whether this router
    /// reaches the WAN: a BGP session established.
    fn track_wan(&mut self) {
        let healthy = self.speaker.established_peers() > 0;
        if let Some(t) = self.vrrp_track.as_mut() {
            t.update(healthy);
        }
    }

    pub fn tick(&mut self) {
        let changed = self.speaker.tick();
        self.after(changed);
        let lost = self.unnumbered.tick(Instant::now());
        self.apply_unnumbered(lost);
        if !self.ready {
            let waited = self.started.elapsed();
            let delay = Duration::from_secs(self.cfg.dataplane.initial_sync_delay_secs);
            let converged = self.speaker.established_peers() > 0 && self.speaker.converged();
            if waited >= delay || (converged && waited >= Duration::from_millis(500)) {
                self.ready = true;
                log::info!(
                    "initial convergence after {} ms: feeding the dataplane",
                    waited.as_millis()
                );
                if let Some(feed) = &self.feed {
                    let _ = feed.send(FeedOp::Ready);
                }
            }
        }
        // Captures are planned from converged routes only, so a restart
        // never releases what the provider still delivers: not at the feed's
        // start-up deadline (a router that comes back with its WAN down has
        // no route at all then), but once BGP is up.
        let established = self.speaker.established_peers() > 0;
        if established && self.first_established.is_none() {
            self.first_established = Some(Instant::now());
        }
        if !self.capture_active
            && capture_may_start(
                self.ready,
                !self.cfg.bgp.neighbors.is_empty(),
                established && self.speaker.converged(),
                self.first_established.map(|t| t.elapsed()),
                Duration::from_secs(self.cfg.dataplane.initial_sync_delay_secs),
            )
        {
            self.capture_active = true;
            if let Some(r) = &self.reconciler {
                log::info!(
                    "capture: BGP converged {} ms after start: the reconciler may act",
                    self.started.elapsed().as_millis()
                );
                r.activate();
            }
        }
    }

    pub fn admin(&mut self, req: ControlRequest) -> ControlResponse {
        match self.answer(req) {
            Ok(data) => ControlResponse::Ok { data },
            Err(message) => ControlResponse::Error { message },
        }
    }

    pub fn shutdown(&mut self) {
        self.bfd_shutdown();
        self.speaker.shutdown();
        self.flush();
    }

    pub fn owner_of(&self, ip: Ipv4Addr) -> Option<&Owner> {
        self.sam.owner(&Ipv4Prefix::host(ip))
    }

    pub fn identity(&self) -> Community {
        self.cfg.sam.identity
    }
}
