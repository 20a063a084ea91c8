//! The cer-control event loop: the one place state changes (holo style).
//! Session events, accepted connections, admin requests and a 1 s tick come
//! in; the speaker updates the RIB; the SAM plane turns candidate changes
//! into ownership changes (RIB trap events); ownership becomes dataplane FIB
//! operations for the feed thread.

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
use cer_capture::reconciler::Phase;
use cer_capture::{Desired, Intent};
use cer_shared::feed::EndpointAction;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, oneshot};

pub type AdminMsg = (ControlRequest, oneshot::Sender<ControlResponse>);

const TRAP_LOG: usize = 1000;

/// What the FIB holds for one endpoint, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct FibEntry {
    pub action: Option<EndpointAction>,
    pub note: String,
}

pub struct Core {
    pub cfg: ControlConfig,
    /// The BGP speaker (sans-IO) and the IO layer performing its outputs:
    /// every entry point of `Core` that can change the speaker ends with
    /// `flush` (see `Core::flush`).
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
    /// Cloud capture: the reconciler this core feeds intents to.
    pub reconciler: Option<cer_capture::Reconciler>,
    feed: Option<std::sync::mpsc::Sender<FeedOp>>,
    pub feed_status: SharedStatus,
    trap_log: VecDeque<TrapEvent>,
    pub trap_tx: broadcast::Sender<TrapEvent>,
    started: Instant,
    ready: bool,
}

impl Core {
    pub fn new(
        cfg: ControlConfig,
        events: mpsc::Sender<SessionEvent>,
        feed: Option<std::sync::mpsc::Sender<FeedOp>>,
        feed_status: SharedStatus,
    ) -> Result<Core, String> {
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
        Ok(Core {
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
            reconciler: None,
            feed,
            feed_status,
            trap_log: VecDeque::new(),
            trap_tx,
            started: Instant::now(),
            ready: false,
            cfg,
        })
    }

    /// Starts neighbors, originates the marker and the endpoints.
    pub fn start(&mut self) -> Result<(), String> {
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
                (None, None) => return Err(format!("bgp.neighbor[{i}]: no address or interface")),
            }
        }
        for net in self.cfg.bgp.networks.clone() {
            let a = self.local_attrs(self.cfg.sam.local_pref);
            let changed = self.speaker.originate(Prefix::V4(net), a);
            self.after(changed);
        }
        let mut marker = self.local_attrs(self.cfg.sam.local_pref);
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
    /// measures change-to-dataplane-ack latency from it).
    pub fn after_at(&mut self, prefixes: Vec<Prefix>, cause: Instant) {
        for p in prefixes {
            self.underlay_for(&p, cause);
            let events = self.sam.on_prefix_change(self.speaker.rib(), &p);
            for ev in events {
                self.fib_for(ev.prefix, cause);
                let _ = self.trap_tx.send(ev.clone());
                if self.trap_log.len() == TRAP_LOG {
                    self.trap_log.pop_front();
                }
                self.trap_log.push_back(ev);
            }
        }
    }

    /// Derives the FIB entry of one endpoint from its owner and queues the change.
    fn fib_for(&mut self, p: Ipv4Prefix, now: Instant) {
        let ip = p.addr();
        let entry = match self.sam.owner(&p) {
            None => None,
            Some(o) if o.local => Some(FibEntry {
                action: Some(EndpointAction::Local {
                    port: self.cfg.dataplane.lan_port.clone(),
                }),
                note: format!(
                    "owned here: delivered on port {}",
                    self.cfg.dataplane.lan_port
                ),
            }),
            // Owned by another CER of this site: the workload is on the
            // network this node shares with it.
            Some(o) if o.site_local => Some(FibEntry {
                action: Some(EndpointAction::Local {
                    port: self.cfg.dataplane.lan_port.clone(),
                }),
                note: format!(
                    "owned at this site by {} (sam.site_identities): delivered on port {}",
                    o.identity, self.cfg.dataplane.lan_port
                ),
            }),
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
        // Cloud capture: the intent (and the path signature that fences
        // every action planned from it) changes here, synchronously.
        if let Some(r) = &self.reconciler {
            if self.cfg.in_pool(ip) {
                let intent = match self.sam.owner(&p) {
                    Some(o) if !o.site_local => Intent {
                        desired: Desired::Capture,
                        signature: o.signature.0,
                    },
                    Some(o) => Intent {
                        desired: Desired::Release,
                        signature: o.signature.0,
                    },
                    None => Intent {
                        desired: Desired::Release,
                        signature: 0,
                    },
                };
                r.set(ip, intent);
            }
        }
    }

    pub fn on_session(&mut self, ev: SessionEvent) {
        let arrived = Instant::now();
        let changed = self.bgp_io.event(&mut self.speaker, ev);
        self.after_at(changed, arrived);
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
                // Captures are planned from converged routes only, so a
                // restart never releases what the provider still delivers.
                if let Some(r) = &self.reconciler {
                    r.activate();
                }
            }
        }
    }

    pub fn admin(&mut self, req: ControlRequest) -> ControlResponse {
        match self.answer(req) {
            Ok(data) => ControlResponse::Ok { data },
            Err(message) => ControlResponse::Error { message },
        }
    }

    /// Capture at this site: the mechanism, the gate and, for one /32,
    /// whether it is captured here.
    fn capture_json(&self, ip: Option<Ipv4Addr>) -> Value {
        let feed = self
            .feed_status
            .lock()
            .map(|f| f.clone())
            .unwrap_or_default();
        let c = &self.cfg.capture;
        let gate = match (&self.vrrp, c.single_router) {
            (Some(v), _) => v
                .lock()
                .map(|v| json!(*v))
                .unwrap_or_else(|_| json!("unavailable")),
            (None, true) => json!({"single_router": true, "gate_open": true}),
            (None, false) => json!(null),
        };
        let mut v = match c.mode {
            CaptureMode::None => json!({
                "mechanism": "none configured on this node ([capture] mode = \"none\")",
            }),
            CaptureMode::Onprem => json!({
                "mechanism": format!("on-prem proxy ARP + gratuitous ARP on dataplane port {}", self.cfg.dataplane.lan_port),
                "gate": gate,
                "captured_here": self.captured.len(),
                "dataplane_proxy_arp_entries": feed.captured,
                "dataplane_gate_open": feed.proxy_arp_active,
                "duplicate_holder_alarms": feed.duplicate_holder_alarms,
                "duplicate_holders": feed.duplicate_holders,
            }),
            CaptureMode::Aws | CaptureMode::Azure | CaptureMode::Oci => {
                let st = self
                    .reconciler
                    .as_ref()
                    .map(|r| r.status())
                    .unwrap_or_default();
                let count = |d: Desired, confirmed: bool| {
                    st.ips
                        .values()
                        .filter(|s| s.desired == d && (s.phase == Phase::Confirmed) == confirmed)
                        .count()
                };
                json!({
                    "mechanism": match c.mode {
                        CaptureMode::Aws => "AWS: ENI secondary private IP (AssignPrivateIpAddresses with AllowReassignment, verified with DescribeNetworkInterfaces)",
                        CaptureMode::Azure => "Azure: NIC ipConfiguration (removed from the old NIC, then created on ours; LRO polled)",
                        _ => "OCI: VNIC secondary private IP (UpdatePrivateIp move or CreatePrivateIp, if-match etag)",
                    },
                    "provider": st.provider_detail,
                    "provider_error": st.provider_error,
                    "reconciler_running": st.running,
                    "reconciler_active": st.active,
                    "captures_confirmed": count(Desired::Capture, true),
                    "captures_pending": count(Desired::Capture, false),
                    "releases_confirmed": count(Desired::Release, true),
                    "releases_pending": count(Desired::Release, false),
                    "released_holder_gone_total": st.released_holder_gone_total,
                    "origins_remembered": st.origins,
                    "origins_file": st.origins_file,
                    "origins_error": st.origins_error,
                    "in_flight": st.in_flight,
                    "errors_total": st.errors_total,
                    "fenced_total": st.fenced_total,
                    "throttled_until_unix_ms": st.throttled_until_ms,
                })
            }
        };
        if let Some(ip) = ip {
            v["this_ip"] = json!(match c.mode {
                CaptureMode::None => "not captured (no capture mechanism)".to_string(),
                CaptureMode::Onprem if self.captured.contains(&ip) && feed.proxy_arp_active =>
                    "captured here: the dataplane answers ARP for it".to_string(),
                CaptureMode::Onprem if self.captured.contains(&ip) =>
                    "captured here, but the gate is closed (not VRRP master): the dataplane stays silent".to_string(),
                CaptureMode::Onprem => "not captured here (owned at this site, not in the pool, or no owner)".to_string(),
                CaptureMode::Aws | CaptureMode::Azure | CaptureMode::Oci => {
                    match self.reconciler.as_ref().and_then(|r| r.ip_status(ip)) {
                        None if self.cfg.in_pool(ip) => "no capture action: no owner has been seen for it".to_string(),
                        None => "not in the pool: never captured".to_string(),
                        Some(s) => {
                            let from = s.captured_from.as_deref();
                            let what = match (s.desired, from) {
                                (Desired::Capture, Some(f)) => format!("capture onto this router's NIC (owned by a remote node; taken from {f}, handed back there on release)"),
                                (Desired::Capture, None) => "capture onto this router's NIC (owned by a remote node)".to_string(),
                                (Desired::Release, Some("nobody")) => "release from this router's NIC (owned here or by nobody; nobody held it when it was captured here, so it goes to nobody)".to_string(),
                                (Desired::Release, Some(f)) => format!("release from this router's NIC (owned here or by nobody): hand it back to {f}, the NIC it was captured from"),
                                (Desired::Release, None) => "release from this router's NIC (owned here or by nobody)".to_string(),
                            };
                            let state = match s.phase {
                                Phase::Confirmed => format!("confirmed by the provider ({})", s.observed.as_deref().unwrap_or("?")),
                                Phase::Settling => "looks right; an older accepted change may still land, re-observing".to_string(),
                                Phase::Waiting => "waiting (provider client not ready or BGP not converged)".to_string(),
                                Phase::Pending => "queued".to_string(),
                                Phase::InFlight => "in flight at the provider".to_string(),
                                Phase::Backoff => format!("failed {} time(s), retrying: {}", s.attempts, s.last_error.clone().unwrap_or_default()),
                            };
                            let note = s.note.as_ref().map(|n| format!("; {n}")).unwrap_or_default();
                            format!("{what}: {state}{note}")
                        }
                    }
                }
            });
            if let Some(d) = feed.duplicate_holders.iter().find(|d| d.ip == ip) {
                v["duplicate_holder"] = json!(format!(
                    "ALARM: another host ({} on port {}) claimed {ip} by ARP while this router answers for it ({} time(s)); two holders for one /32 is a failure: find and stop the other holder",
                    d.mac, d.port, d.seen
                ));
            }
            if let Some(s) = self.reconciler.as_ref().and_then(|r| r.ip_status(ip)) {
                v["this_ip_detail"] = json!(s);
                let overlay = self.fib.get(&ip).and_then(|e| e.action.clone()).is_some();
                if overlay && s.desired == Desired::Capture && s.phase != Phase::Confirmed {
                    v["note"] = json!("the overlay path is ready, but the provider has not confirmed the capture yet: local workloads reach this CER for it only once it does");
                }
            }
        }
        v
    }

    /// Stale capture actions skipped, for `explain` and the admin API.
    fn fencing_json(&self, ip: Option<Ipv4Addr>) -> Value {
        let Some(r) = &self.reconciler else {
            return json!({
                "stale_actions_fenced": 0,
                "note": format!("no capture actions are planned in capture mode \"{}\" (only the cloud modes call a provider)", self.cfg.capture.mode.name()),
            });
        };
        let st = r.status();
        let recent: Vec<_> = st
            .recent_fenced
            .iter()
            .filter(|f| ip.is_none_or(|ip| f.ip == ip))
            .collect();
        json!({
            "stale_actions_fenced": ip.and_then(|ip| st.ips.get(&ip)).map(|s| s.fenced).unwrap_or(st.fenced_total),
            "fenced_total_all_ips": st.fenced_total,
            "recent": recent,
            "note": "an action planned from a path signature that is no longer current is skipped before its provider call, never executed",
        })
    }

    fn answer(&mut self, req: ControlRequest) -> Result<Value, String> {
        Ok(match req {
            ControlRequest::Status => json!({
                "node": self.cfg.node.name,
                "router_id": self.cfg.node.router_id,
                "asn": self.cfg.node.asn,
                "identity": self.cfg.sam.identity.to_string(),
                "ready": self.ready,
                "uptime_secs": self.started.elapsed().as_secs(),
                "feed": self.feed_json(),
                "capture": self.capture_json(None),
            }),
            ControlRequest::BgpSummary => json!({
                "router_id": self.cfg.node.router_id,
                "asn": self.cfg.node.asn,
                "route_reflector": self.cfg.bgp.route_reflector,
                "loc_rib_prefixes": self.speaker.rib().len(),
                "neighbors": self.neighbors_json(),
            }),
            ControlRequest::BgpRib { prefix } => self.rib_json(prefix.as_deref())?,
            ControlRequest::Owners => json!(self.sam.owners().map(owner_json).collect::<Vec<_>>()),
            ControlRequest::Markers => json!(self
                .sam
                .live_identities()
                .iter()
                .map(|(c, p)| json!({"identity": c.to_string(), "marker_prefixes": p.iter().map(|x| x.to_string()).collect::<Vec<_>>()}))
                .collect::<Vec<_>>()),
            ControlRequest::Fib => json!({
                "feed": self.feed_json(),
                "entries": self.fib.iter().map(|(ip, e)| json!({"ip": ip, "action": e.action, "note": e.note})).collect::<Vec<_>>(),
            }),
            ControlRequest::Trap { since } => json!(self.trap_log.iter().filter(|e| since.is_none_or(|s| e.seq > s)).collect::<Vec<_>>()),
            ControlRequest::EndpointAdd { ip, local_pref } => {
                self.check_pool(ip)?;
                let e = Endpoint { ip, local_pref: local_pref.unwrap_or(self.cfg.sam.local_pref) };
                self.endpoints.set(e)?;
                self.advertise(e);
                json!({"advertised": ip, "local_pref": e.local_pref})
            }
            ControlRequest::EndpointRemove { ip } => {
                if !self.endpoints.remove(ip)? {
                    return Err(format!("{ip} is not an endpoint of this node"));
                }
                let changed = self.speaker.withdraw_local(Prefix::V4(Ipv4Prefix::host(ip)));
                self.after(changed);
                json!({"withdrawn": ip})
            }
            ControlRequest::EndpointMove { ip } => {
                self.check_pool(ip)?;
                let current = self
                    .sam
                    .owner(&Ipv4Prefix::host(ip))
                    .map(|o| (o.local, o.site_local, o.path.local_pref()));
                let pref = match current {
                    Some((true, _, lp)) => return Ok(json!({"already_owner": ip, "local_pref": lp})),
                    // Another CER of this site owns it: join it at the same
                    // preference (BGP breaks the tie), never outbid the site.
                    Some((false, true, lp)) => lp,
                    Some((false, false, lp)) => lp.saturating_add(10),
                    None => self.cfg.sam.local_pref,
                };
                let e = Endpoint { ip, local_pref: pref };
                self.endpoints.set(e)?;
                self.advertise(e);
                json!({"advertised": ip, "local_pref": pref, "previous_owner_local_pref": current.map(|c| c.2)})
            }
            ControlRequest::Explain { ip } => self.explain(ip),
            ControlRequest::Capture => {
                let mut v = self.capture_json(None);
                v["mode"] = json!(self.cfg.capture.mode.name());
                v["fencing"] = self.fencing_json(None);
                if let Some(r) = &self.reconciler {
                    v["ips"] = json!(r.status().ips);
                }
                v
            }
        })
    }

    /// Every neighbor for `show bgp summary`: sessions, and unnumbered
    /// interfaces with their peer (or what they wait for).
    fn neighbors_json(&self) -> Vec<Value> {
        let mut out: Vec<Value> = Vec::new();
        let sessions = self.speaker.summary();
        for n in &sessions {
            let mut v = json!(n);
            let iface = self
                .unnumbered_sessions
                .iter()
                .find(|(_, id)| id.0 == n.peer)
                .and_then(|(i, _)| self.unnumbered.ifaces.get(*i));
            if let Some(i) = iface {
                v["unnumbered"] = json!({
                    "interface": i.name,
                    "dataplane_port": self.cfg.bgp.neighbors.get(i.neighbor).and_then(|n| n.port()),
                    "peer_link_local": i.peer.as_ref().map(|p| p.addr),
                    "learned_from": i.peer.as_ref().map(|p| p.learned),
                    "ra_interval_secs": i.peer.as_ref().and_then(|p| p.ra_interval()).map(|d| d.as_secs_f32()),
                    "ra_age_secs": i.peer.as_ref().and_then(|p| p.last_ra).map(|t| t.elapsed().as_secs_f32()),
                });
            }
            out.push(v);
        }
        for (k, i) in self.unnumbered.ifaces.iter().enumerate() {
            if self.unnumbered_sessions.contains_key(&k) {
                continue;
            }
            let n = &self.cfg.bgp.neighbors[i.neighbor];
            let waiting = if i.link_up {
                format!("waiting for the peer: no Router Advertisement on {} yet (and no connection from a link-local address on it)", i.name)
            } else {
                format!("interface {} is down or missing", i.name)
            };
            out.push(json!({
                "peer": null,
                "address": format!("{} (unnumbered)", i.name),
                "interface": i.name,
                "description": n.description,
                "remote_as": null,
                "state": "Idle",
                "prefixes_received": 0,
                "prefixes_sent": 0,
                "last_error": i.last_loss.clone().map(|l| format!("{l}; {waiting}")).unwrap_or(waiting),
                "unnumbered": {
                    "interface": i.name,
                    "dataplane_port": n.port(),
                    "peer_link_local": null,
                },
            }));
        }
        out
    }

    /// The underlay route covering `ip` (longest match), for `explain`.
    fn underlay_json(&self, ip: Ipv4Addr) -> Value {
        let best = self
            .underlay
            .iter()
            .filter(|(p, _)| p.contains(ip))
            .max_by_key(|(p, _)| p.len());
        match best {
            None => Value::Null,
            Some((p, via)) => json!({
                "prefix": p.to_string(),
                "ecmp": via.len() > 1,
                "via": via,
                "note": "learned over BGP unnumbered: the dataplane sends to the peer's MAC, resolved from its link-local address by IPv6 neighbor discovery (RFC 5549/8950)",
            }),
        }
    }

    fn check_pool(&self, ip: Ipv4Addr) -> Result<(), String> {
        if self.cfg.in_pool(ip) {
            Ok(())
        } else {
            Err(format!(
                "{ip} is outside the endpoint pool ({})",
                self.cfg
                    .sam
                    .pool
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
    }

    fn feed_json(&self) -> Value {
        match self.feed_status.lock() {
            Ok(s) => json!(*s),
            Err(_) => Value::Null,
        }
    }

    fn rib_json(&self, prefix: Option<&str>) -> Result<Value, String> {
        let rib = self.speaker.rib();
        let filter: Option<Prefix> = match prefix {
            Some(s) => Some(match s.parse::<Ipv4Prefix>() {
                Ok(p) => Prefix::V4(p),
                Err(_) => Prefix::V4(Ipv4Prefix::host(
                    s.parse()
                        .map_err(|_| format!("'{s}' is not an IPv4 prefix or address"))?,
                )),
            }),
            None => None,
        };
        let mut out = Vec::new();
        let prefixes: Vec<Prefix> = match filter {
            Some(p) => vec![p],
            None => {
                let mut v: Vec<Prefix> = rib.iter_best().map(|(p, _)| *p).collect();
                v.sort();
                v
            }
        };
        for p in prefixes {
            let best = rib.best_index(&p);
            for (i, path) in rib.paths(&p).iter().enumerate() {
                let identity = self.sam.identity_of(path);
                out.push(json!({
                    "prefix": p.to_string(),
                    "best": Some(i) == best,
                    "next_hop": path.attrs.next_hop.to_string(),
                    "local_pref": path.local_pref(),
                    "med": path.attrs.med,
                    "as_path": path.attrs.as_path.iter().flat_map(|s| s.asns.iter()).collect::<Vec<_>>(),
                    "communities": path.attrs.communities.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
                    "originator_id": path.attrs.originator_id,
                    "cluster_list": path.attrs.cluster_list,
                    "from": if path.source.peer == cer_bgp::route::PeerId::LOCAL { "local".to_string() } else { path.source.peer_addr.to_string() },
                    "identity": identity.map(|c| c.to_string()),
                    "marker": identity.map(|c| if self.sam.marker_present(c) { "present" } else { "absent" }),
                    "stale": rib.is_stale(path.source.peer, &p),
                }));
            }
        }
        Ok(json!(out))
    }

    /// The seven questions of DESIGN.md section 4, from live state.
    fn explain(&self, ip: Ipv4Addr) -> Value {
        let p = Ipv4Prefix::host(ip);
        let prefix = Prefix::V4(p);
        let rib = self.speaker.rib();
        let candidates: Vec<Value> = rib
            .paths(&prefix)
            .iter()
            .map(|path| {
                let id = self.sam.identity_of(path);
                json!({
                    "identity": id.map(|c| c.to_string()),
                    "next_hop": path.attrs.next_hop.to_string(),
                    "local_pref": path.local_pref(),
                    "originator": path.originator(),
                    "from": if path.source.peer == cer_bgp::route::PeerId::LOCAL { "local".to_string() } else { path.source.peer_addr.to_string() },
                    "marker_present": id.is_some_and(|c| self.sam.marker_present(c)),
                    "marker_valid": self.sam.marker_valid(path),
                })
            })
            .collect();
        let owner = self.sam.owner(&p);
        let in_pool = self.cfg.in_pool(ip);
        let sessions: Vec<Value> = self
            .speaker
            .summary()
            .into_iter()
            .map(|n| json!({"neighbor": n.address, "state": n.state, "uptime_secs": n.uptime_secs}))
            .collect();
        let fib = self.fib.get(&ip);
        let workload = match (owner, fib) {
            (None, _) => {
                "no owner: nothing carries it (traffic follows the underlay routes)".to_string()
            }
            (Some(_), Some(e)) => e.note.clone(),
            (Some(_), None) => "not in the FIB".to_string(),
        };
        let owner_transport = owner.map(|o| o.path.attrs.next_hop.ip().to_string());
        let me = self.cfg.node.transport_address.to_string();
        let feed = self
            .feed_status
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        json!({
            "ip": ip,
            "in_pool": in_pool,
            "owner": owner.map(|o| json!({
                "identity": o.identity.to_string(),
                "local": o.local,
                "site_local": o.site_local,
                "next_hop": o.path.attrs.next_hop.to_string(),
                "local_pref": o.path.local_pref(),
                "originator": o.path.originator(),
                "signature": o.signature.to_string(),
                "why": if o.reason.is_empty() { "only marker-valid path".to_string() } else { o.reason.clone() },
                "since_unix": o.since.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            })),
            "candidates": candidates,
            "transport": {
                "ibgp_sessions": sessions,
                "workload": workload,
            },
            "capture_points": {
                "inner": format!("on the workload side of this CER (port {}): tcpdump -eni <lan-interface> host {ip}", self.cfg.dataplane.lan_port),
                "outer": match &owner_transport {
                    Some(t) if owner.is_some_and(|o| !o.site_local) => format!("on the transport side: tcpdump -eni <wan-interface> host {me} and host {t}"),
                    _ => "owned at this site: no outer (tunnel) header on this node".to_string(),
                },
            },
            "fib": {
                "imported": fib.and_then(|e| e.action.clone()),
                "note": fib.map(|e| e.note.clone()),
                "dataplane_connected": feed.connected,
                "dataplane_snapshot": feed.snapshot_version,
                "synced": feed.ready && feed.connected,
            },
            "underlay": self.underlay_json(ip),
            "capture": self.capture_json(Some(ip)),
            "fencing": self.fencing_json(Some(ip)),
            "no_nat_proof": [
                format!("inner: tcpdump -ni <lan-interface> -c 5 'host {ip}': src/dst are the workload /32s, unchanged end to end"),
                format!("outer: tcpdump -ni <wan-interface> -c 5 'host {me}': outer src/dst are the CER transport addresses; decode the inner header (tshark -d udp.port==PORT,ip for FOU) and compare it with the inner capture byte for byte (TTL aside)"),
            ],
        })
    }

    pub fn shutdown(&mut self) {
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

fn owner_json(o: &Owner) -> Value {
    json!({
        "prefix": o.prefix.to_string(),
        "identity": o.identity.to_string(),
        "local": o.local,
        "site_local": o.site_local,
        "next_hop": o.path.attrs.next_hop.to_string(),
        "local_pref": o.path.local_pref(),
        "originator": o.path.originator(),
        "signature": o.signature.to_string(),
        "why": o.reason,
    })
}
