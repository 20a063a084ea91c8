//! The manager's answers to admin queries (`cerctl show ...`): counters,
//! ports, neighbors, snapshot, proxy ARP, FIB and tunnels as JSON views of
//! the state it owns, and the sample a metrics scrape encodes. Read-only:
//! nothing here changes the FIB.

use super::Manager;
use crate::counters::{DropReason, Event};
use cer_shared::admin::{
    AdminRequest, AdminResponse, CoreCounters, Neighbor6State, NeighborState, Neighbors6State,
    PortLinkLocal, ProxyArpState, SnapshotState,
};
use cer_shared::MacAddr;
use serde_json::json;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

impl Manager {
    pub(super) fn ports(&self) -> serde_json::Value {
        let kernel = self.kernel_proc.as_ref().and_then(|p| p.sample());
        let ports = (self.port_state)();
        let list: Vec<serde_json::Value> = ports
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut v = json!(p);
                // The live value: a reload may have changed it.
                v["proxy_arp"] = json!(self.fib.proxy_arp_on(i));
                if let (Some(k), true) = (kernel, self.af_packet.get(i) == Some(&true)) {
                    v["kernel_reassembly"] = json!(k);
                }
                v
            })
            .collect();
        json!(list)
    }

    /// Asks the first core to send each unnumbered port's Router
    /// Advertisement, at start and then every `ra_interval`.
    pub(super) fn counters(&self) -> Vec<CoreCounters> {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        self.stats
            .iter()
            .enumerate()
            .map(|(k, s)| CoreCounters {
                lcore: s.lcore,
                bursts: load(&s.bursts),
                busy_cycles: load(&s.busy_cycles),
                busy_polls: load(&s.busy_polls),
                idle_cycles: load(&s.idle_cycles),
                idle_polls: load(&s.idle_polls),
                tsc_hz: self.tsc_hz,
                stalls: load(&s.stalls),
                sleeps: load(&s.sleeps),
                wake_events: load(&s.wake_events),
                wake_timeouts: load(&s.wake_timeouts),
                wake_sources: self
                    .core_wake
                    .get(k)
                    .map(|w| w.sources.clone())
                    .unwrap_or_default(),
                wake_timer_for: self
                    .core_wake
                    .get(k)
                    .map(|w| w.timer_for.clone())
                    .unwrap_or_default(),
                wake_bound_us: self.core_wake.get(k).and_then(|w| w.bound_us),
                poll_mode: self
                    .core_wake
                    .get(k)
                    .map(|w| w.poll_mode.clone())
                    .unwrap_or_default(),
                snapshot_version: load(&s.snapshot_version),
                rx: self
                    .io_names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (n.clone(), load(&s.rx[i])))
                    .collect(),
                tx: self
                    .io_names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (n.clone(), load(&s.tx[i])))
                    .collect(),
                events: Event::ALL
                    .iter()
                    .map(|e| (e.name().to_string(), s.events_of(*e)))
                    .collect(),
                drops: DropReason::ALL
                    .iter()
                    .map(|d| (d.name().to_string(), s.drops_of(*d)))
                    .chain(
                        crate::tunnel::wireguard::WgDrop::ALL
                            .iter()
                            .enumerate()
                            .map(|(i, d)| {
                                (
                                    d.name().to_string(),
                                    s.wg_drops.get(i).map(load).unwrap_or(0),
                                )
                            }),
                    )
                    .collect(),
            })
            .collect()
    }

    pub(super) fn neighbors(&self) -> Vec<NeighborState> {
        let names: Vec<String> = self.fib.port_names().map(String::from).collect();
        let now = Instant::now();
        let mut out: Vec<NeighborState> = self
            .fib
            .learned
            .iter()
            .filter(|(k, _)| !self.fib.feed.neighbors.contains_key(k))
            .map(|((p, ip), n)| NeighborState {
                port: names[*p as usize].clone(),
                ip: Ipv4Addr::from(*ip),
                mac: MacAddr(n.mac),
                state: if n.stale { "stale" } else { "reachable" }.into(),
                confirmed_secs_ago: now.saturating_duration_since(n.confirmed).as_secs(),
            })
            .collect();
        out.extend(
            self.fib
                .feed
                .neighbors
                .iter()
                .map(|((p, ip), mac)| NeighborState {
                    port: names[*p as usize].clone(),
                    ip: Ipv4Addr::from(*ip),
                    mac: MacAddr(*mac),
                    state: "static".into(),
                    confirmed_secs_ago: 0,
                }),
        );
        out.sort_by(|a, b| (&a.port, a.ip).cmp(&(&b.port, b.ip)));
        out
    }

    pub(super) fn neighbors6(&self) -> Neighbors6State {
        let names: Vec<String> = self.fib.port_names().map(String::from).collect();
        let now = Instant::now();
        let mut neighbors: Vec<Neighbor6State> = self
            .fib
            .learned6
            .iter()
            .map(|((p, ip), n)| Neighbor6State {
                port: names[*p as usize].clone(),
                ip: *ip,
                mac: MacAddr(n.mac),
                state: if n.stale { "stale" } else { "reachable" }.into(),
                router: n.router,
                confirmed_secs_ago: now.saturating_duration_since(n.confirmed).as_secs(),
            })
            .collect();
        neighbors.sort_by(|a, b| (&a.port, a.ip).cmp(&(&b.port, b.ip)));
        Neighbors6State {
            ports: self
                .link_locals
                .iter()
                .zip(&names)
                .map(|((ll, unnumbered), name)| PortLinkLocal {
                    port: name.clone(),
                    link_local: *ll,
                    unnumbered: *unnumbered,
                })
                .collect(),
            neighbors,
        }
    }

    pub(super) fn snapshot_state(&self) -> SnapshotState {
        let s = self.fib.current();
        SnapshotState {
            version: s.version,
            endpoints: s.endpoints.len(),
            routes: s.routes.len(),
            neighbors: s.neighbors.len(),
            proxy_arp: s.proxy_arp.set.len(),
            built_us: self.fib.last_build.as_micros() as u64,
        }
    }

    pub(super) fn proxy(&self) -> ProxyArpState {
        ProxyArpState {
            duplicate_holder_alarms: self.duplicate_alarms(),
            duplicate_holders: self.duplicate_holders(),
            active: self.fib.feed.proxy_active,
            addresses: self
                .fib
                .feed
                .proxy
                .iter()
                .map(|ip| Ipv4Addr::from(*ip))
                .collect(),
        }
    }

    pub(super) fn fib_json(&self, limit: usize) -> serde_json::Value {
        let names: Vec<String> = self.fib.port_names().map(String::from).collect();
        let s = self.fib.current();
        let mut eps: Vec<(u32, String)> = s
            .endpoints
            .iter()
            .map(|(ip, a)| {
                let what = match a {
                    crate::snapshot::EndpointAction::Local { port } => {
                        format!("local {}", names[port as usize])
                    }
                    crate::snapshot::EndpointAction::Tunnel { tunnel } => {
                        format!("tunnel {tunnel}")
                    }
                    crate::snapshot::EndpointAction::Drop => "drop".into(),
                };
                (ip, what)
            })
            .collect();
        eps.sort();
        let routes: Vec<serde_json::Value> = s
            .routes
            .routes()
            .iter()
            .map(|r| {
                json!({
                    "prefix": format!("{}/{}", Ipv4Addr::from(r.addr), r.len),
                    "nexthops": r.group.hops.iter().map(|h| match s.gateways6.get(h.gateway) {
                        // An IPv6 link-local gateway: its address and resolved MAC.
                        Some((_, ll)) => json!({
                            "port": names[h.port as usize],
                            "gateway6": ll.to_string(),
                            "mac": s.neighbors.get(h.port, h.gateway).map(|n| MacAddr(n.mac).to_string()),
                        }),
                        None => json!({
                            "port": names[h.port as usize],
                            "gateway": if h.gateway == 0 { None } else { Some(Ipv4Addr::from(h.gateway).to_string()) },
                        }),
                    }).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "version": s.version,
            "endpoints_total": eps.len(),
            "endpoints": eps.iter().take(limit).map(|(ip, a)| json!({"ip": Ipv4Addr::from(*ip).to_string(), "action": a})).collect::<Vec<_>>(),
            "routes": routes,
        })
    }

    /// The snapshot's tunnels, with WireGuard session state where it applies.
    pub(super) fn tunnels(&self) -> serde_json::Value {
        let s = self.published.load();
        let r = Ordering::Relaxed;
        let list: Vec<serde_json::Value> = s
            .tunnels
            .iter()
            .map(|t| {
                let mut v = json!({
                    "id": t.id,
                    "kind": t.kind,
                    "local": Ipv4Addr::from(t.local).to_string(),
                    "remote": Ipv4Addr::from(t.remote).to_string(),
                    "mtu": t.mtu,
                    "overhead": t.overhead(),
                    "gre_key": t.gre_key,
                    "port": t.port,
                    "force_fragment": t.force_fragment,
                });
                if let Some(w) = self.wg_state.iter().find(|w| w.tunnel == t.id) {
                    let p = &w.published;
                    let opt = |x: u64| (x != u64::MAX).then_some(x);
                    v["wireguard"] = json!({
                        "lcore": w.lcore,
                        "published": p.ticks.load(Ordering::Acquire) > 0,
                        "session_established": p.session_established.load(r),
                        "handshake_age_ms": opt(p.handshake_age_ms.load(r)),
                        "handshakes": p.handshakes.load(r),
                        "tx_bytes": p.tx_bytes.load(r),
                        "rx_bytes": p.rx_bytes.load(r),
                        "estimated_loss_ppm": p.loss_ppm.load(r),
                        "handshake_rtt_ms": opt(p.handshake_rtt_ms.load(r)),
                        "queued": p.queued.load(r),
                    });
                }
                v
            })
            .collect();
        json!(list)
    }

    /// A `/metrics` scrape: the counters, ports, snapshot and feed the
    /// views above show, as plain data (`crate::metrics`).
    pub fn metrics_sample(&self) -> crate::metrics::MetricsSample {
        crate::metrics::MetricsSample {
            node: self.node.clone(),
            cores: self.counters(),
            ports: (self.port_state)(),
            snapshot: self.snapshot_state(),
            feed: self.feed.clone(),
            proxy_arp_active: self.fib.feed.proxy_active,
        }
    }

    pub fn query(&self, req: &AdminRequest) -> AdminResponse {
        let data = match req {
            AdminRequest::Counters => json!(self.counters()),
            AdminRequest::Ports => self.ports(),
            AdminRequest::Neighbors => json!(self.neighbors()),
            AdminRequest::Neighbors6 => json!(self.neighbors6()),
            AdminRequest::ProxyArp => json!(self.proxy()),
            AdminRequest::Snapshot => json!(self.snapshot_state()),
            AdminRequest::Feed => json!(self.feed),
            AdminRequest::Tunnels => self.tunnels(),
            AdminRequest::Fib { limit } => self.fib_json(limit.unwrap_or(1000)),
            AdminRequest::Capture { .. } => {
                return AdminResponse::Error {
                    message: "a capture is served on its admin connection, not by the manager"
                        .into(),
                }
            }
            AdminRequest::Reload => {
                return AdminResponse::Error {
                    message: "a reload changes state: the manager handles it in `handle`".into(),
                }
            }
            AdminRequest::State => json!({
                "node": self.node,
                "boot_id": self.boot_id,
                "snapshot": self.snapshot_state(),
                "feed": self.feed,
                "ports": self.ports(),
                "neighbors": self.neighbors(),
                "neighbors6": self.neighbors6(),
                "proxy_arp": self.proxy(),
                "tunnels": self.tunnels(),
                "cores": self.counters(),
            }),
        };
        AdminResponse::Ok { data }
    }
}
