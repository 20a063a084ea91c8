//! The northbound side of the event loop: the admin API (`cerctl`) answered
//! from live state. `answer` dispatches each request; the rest build its JSON
//! views (status, BGP summary and RIB, owners, capture and fencing, explain).
//! Only the endpoint requests change state, through the same paths as the
//! rest of the control state.

use super::ControlState;
use crate::control::admin::ControlRequest;
use crate::control::config::CaptureMode;
use crate::control::endpoints::Endpoint;
use crate::control::sam::Owner;
use cer_bgp::route::{Ipv4Prefix, Nlri, Prefix};
use cer_capture::reconciler::Phase;
use cer_capture::Desired;
use cer_shared::feed::EndpointAction;
use serde_json::{json, Value};
use std::net::Ipv4Addr;

impl ControlState {
    /// Capture at this site: the mechanism, the gate and, for one /32,
    /// whether it is captured here.
    pub(super) fn capture_json(&self, ip: Option<Ipv4Addr>) -> Value {
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
                "dataplane_stalls": feed.dataplane_stalls,
                "wan_track": self.vrrp_track.as_ref().map(|t| json!({
                    "file": t.path().display().to_string(),
                    "wan_up": t.healthy(),
                    "changes": t.changes,
                    "last_error": t.last_error,
                })),
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
                        _ => "OCI: VNIC secondary private IP (UpdatePrivateIp move or CreatePrivateIp; one address alone with an if-match etag)",
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
                    "stall_holds": st.stall_holds,
                    "stall_hold_until_unix_ms": st.stall_hold_until_ms,
                    "standing_by": count(Desired::Standby, true) + count(Desired::Standby, false),
                    "pair": self.pair.as_ref().map(|p| json!(p)),
                    "over_quota": st.over_quota,
                    "quota_alarm": st.quota_alarm,
                    "batch": st.batch,
                    "budgets": st.budgets,
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
                                (Desired::Standby, _) => format!(
                                    "stand by (owned by a remote node; {} is this cloud pair's active capturer and holds it)",
                                    self.pair.as_ref().and_then(|p| p.active.clone()).unwrap_or_else(|| "no CER".into())
                                ),
                            };
                            let state = match s.phase {
                                Phase::Confirmed => format!("confirmed by the provider ({})", s.observed.as_deref().unwrap_or("?")),
                                Phase::Settling => "looks right; an older accepted change may still land, re-observing".to_string(),
                                Phase::Waiting => "waiting (provider client not ready or BGP not converged)".to_string(),
                                Phase::Pending => "queued".to_string(),
                                Phase::InFlight => "in flight at the provider".to_string(),
                                Phase::Backoff => format!("failed {} time(s), retrying: {}", s.attempts, s.last_error.clone().unwrap_or_default()),
                                Phase::OverQuota => format!(
                                    "ALARM: this /32 cannot be captured, every NIC of this router is at the provider's address quota ({}); tried again when one of this router's addresses is released",
                                    s.last_error.clone().unwrap_or_default()
                                ),
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
    pub(super) fn fencing_json(&self, ip: Option<Ipv4Addr>) -> Value {
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

    pub(super) fn answer(&mut self, req: ControlRequest) -> Result<Value, String> {
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
                // Admin connections refused by their credentials (SO_PEERCRED).
                "admin_refused": self.admin_access.as_ref().map(|a| a.refused()),
            }),
            ControlRequest::BgpSummary => json!({
                "router_id": self.cfg.node.router_id,
                "asn": self.cfg.node.asn,
                "route_reflector": self.cfg.bgp.route_reflector,
                "loc_rib_prefixes": self.speaker.rib().len(),
                "neighbors": self.neighbors_json(),
                // This namespace's (cer-control's own) silently dropped segments.
                "kernel_tcp_drops": cer_bgp::sockopt::kernel_drops(),
            }),
            ControlRequest::BgpRib { prefix } => self.rib_json(prefix.as_deref())?,
            ControlRequest::BgpNeighborRoutes { peer, side, prefix } => {
                self.neighbor_routes_json(&peer, side, prefix.as_deref())?
            }
            ControlRequest::Bfd => self.bfd_json(),
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
                self.endpoints.set(e).map_err(|e| e.to_string())?;
                self.advertise(e);
                json!({"advertised": ip, "local_pref": e.local_pref})
            }
            ControlRequest::EndpointRemove { ip } => {
                if !self.endpoints.remove(ip).map_err(|e| e.to_string())? {
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
                self.endpoints.set(e).map_err(|e| e.to_string())?;
                self.advertise(e);
                json!({"advertised": ip, "local_pref": pref, "previous_owner_local_pref": current.map(|c| c.2)})
            }
            ControlRequest::Explain { ip } => self.explain(ip),
            ControlRequest::Reload => self.reload()?,
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
    pub(super) fn neighbors_json(&self) -> Vec<Value> {
        let mut out: Vec<Value> = Vec::new();
        let sessions = self.speaker.summary();
        let drops = cer_bgp::sockopt::kernel_drops();
        for n in &sessions {
            let mut v = json!(n);
            // Never a silent Connect: a TCP-MD5 or GTSM mismatch only shows
            // as timeouts and the kernel's counters, so say so.
            v["diagnosis"] = json!(cer_bgp::sockopt::diagnose(
                n.state == "Established",
                n.tcp_md5,
                n.ttl_security,
                n.connect_timeouts,
                drops.as_ref(),
            ));
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
    pub(super) fn underlay_json(&self, ip: Ipv4Addr) -> Value {
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

    pub(super) fn check_pool(&self, ip: Ipv4Addr) -> Result<(), String> {
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

    pub(super) fn feed_json(&self) -> Value {
        match self.feed_status.lock() {
            Ok(s) => json!(*s),
            Err(_) => Value::Null,
        }
    }

    pub(super) fn rib_json(&self, prefix: Option<&str>) -> Result<Value, String> {
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
                    "path_id": path.rx_id,
                    "stale": rib.is_stale(path.source.peer, Nlri { prefix: p, path_id: path.rx_id }),
                }));
            }
        }
        Ok(json!(out))
    }

    /// The seven questions of DESIGN.md section 4, from live state.
    pub(super) fn explain(&self, ip: Ipv4Addr) -> Value {
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
                    "path_id": path.rx_id,
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
        let me = self.cfg.node.transport_address.to_string();
        let lan = &self.cfg.dataplane.lan_port;
        let feed = self
            .feed_status
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        // The tunnel the FIB sends it into (its kind, endpoints and MTU are
        // the dataplane's: `cerctl explain` asks it), and where to observe
        // it on this node: `cerctl dataplane capture` points and filters.
        let tunnel_id = match fib.and_then(|e| e.action.as_ref()) {
            Some(EndpointAction::Tunnel { tunnel }) => Some(*tunnel),
            _ => None,
        };
        let tunnel = tunnel_id.map(|id| {
            let m = self.cfg.tunnels.iter().find(|t| t.id == id);
            json!({
                "id": id,
                "name": m.and_then(|t| t.name.clone()),
                "remote": m.map(|t| t.remote.to_string()),
            })
        });
        let host = format!("host {ip}");
        let capture_points = match (tunnel_id, fib.and_then(|e| e.action.as_ref())) {
            (Some(id), _) => {
                let remote = owner
                    .map(|o| o.path.attrs.next_hop.ip().to_string())
                    .unwrap_or_default();
                json!({
                    "inner": {
                        "points": [format!("port:{lan}:rx"), format!("tunnel:{id}:inner")],
                        "filter": host,
                        "what": format!("the workload's packets as they arrive on port {lan} and enter tunnel {id} (before encapsulation), and the replies after decapsulation"),
                    },
                    "outer": {
                        "points": [format!("tunnel:{id}:outer")],
                        "filter": format!("host {me} and host {remote}"),
                        "what": format!("tunnel {id}'s outer packets, {me} <-> {remote}, after encapsulation and before decapsulation"),
                    },
                })
            }
            (None, Some(EndpointAction::Local { port })) => {
                let tunnels: Vec<String> = self
                    .cfg
                    .tunnels
                    .iter()
                    .map(|t| format!("tunnel:{}:inner", t.id))
                    .collect();
                let outer: Vec<String> = self
                    .cfg
                    .tunnels
                    .iter()
                    .map(|t| format!("tunnel:{}:outer", t.id))
                    .collect();
                let mut inner = vec![format!("port:{port}:tx"), format!("port:{port}:rx")];
                inner.extend(tunnels);
                json!({
                    "inner": {
                        "points": inner,
                        "filter": host,
                        "what": format!("delivered on port {port}: its packets on the LAN, and what the tunnels from other sites carry for it after decapsulation"),
                    },
                    "outer": if outer.is_empty() { Value::Null } else { json!({
                        "points": outer,
                        "filter": format!("host {me}"),
                        "what": "the tunnels' outer packets (this node's transport address); this /32's traffic is inside them",
                    })},
                })
            }
            _ => json!({
                "inner": {
                    "points": [format!("port:{lan}:rx"), format!("port:{lan}:tx")],
                    "filter": host,
                    "what": format!("not in the FIB: only port {lan} can show what arrives for it (it follows the underlay routes)"),
                },
                "outer": Value::Null,
            }),
        };
        json!({
            "ip": ip,
            "in_pool": in_pool,
            "owner": owner.map(|o| {
                let mut v = owner_json(o);
                if let Some(m) = v.as_object_mut() {
                    m.remove("prefix");
                    if o.reason.is_empty() {
                        m.insert("why".into(), json!("only marker-valid path"));
                    }
                    m.insert("since_unix".into(), json!(o.since.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)));
                }
                v
            }),
            "candidates": candidates,
            "transport": {
                "ibgp_sessions": sessions,
                "workload": workload,
                "transport_address": me,
                "tunnel": tunnel,
            },
            "capture_points": capture_points,
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
            "no_nat_proof": {
                "inner_expect": format!("on the inner points src or dst is {ip} and the other end is a workload /32, never {me} or a tunnel address"),
                "outer_expect": format!("on the outer points src/dst are the CER transport addresses ({me} and the peer)"),
            },
        })
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
