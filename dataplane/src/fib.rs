//! The manager's master copy of the FIB, and how it becomes a snapshot.
//!
//! State comes from three places: the node config (connected and static
//! routes), the control process's feed (endpoints, routes, static neighbors,
//! the proxy-ARP set and its gate), and the cores (learned neighbors). A full
//! sync stages a complete new feed state and swaps it in at `SyncEnd`, so the
//! cores never see a half-synced FIB.

use crate::pipeline::{Learn, Learn6};
use crate::snapshot::{
    EndpointAction, ExactTable, Gateways6, Hop, HopGroup, Lpm, Neighbor, Neighbor6Table,
    NeighborStatus, NeighborTable, ProxyArp, Route, Snapshot, GATEWAY6_BASE, MAX_ECMP,
    MAX_GATEWAYS6,
};
use cer_shared::config::NodeConfig;
use cer_shared::feed::{self, FibChange};
use cer_shared::Ipv4Prefix;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv6Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why the FIB refused a feed change (the whole batch, for `apply_batch`);
/// the text goes back to the feeding session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FibError {
    #[error("unknown port '{name}' (ports: {known})")]
    UnknownPort { name: String, known: String },
    #[error("sync_end without sync_begin")]
    SyncEndWithoutBegin,
    #[error("{0} cannot be an endpoint or neighbor")]
    NotAHost(std::net::Ipv4Addr),
    #[error("route {prefix}: {reason}")]
    Route { prefix: String, reason: String },
    #[error("neighbor {ip}: {reason}")]
    Neighbor {
        ip: std::net::Ipv4Addr,
        reason: String,
    },
    #[error("change #{index}: {error}")]
    InBatch { index: usize, error: Box<FibError> },
}

/// Everything the feed installs; replaced as a whole by a full sync.
#[derive(Debug, Clone, Default)]
pub struct FeedTables {
    pub endpoints: HashMap<u32, EndpointAction>,
    pub routes: BTreeMap<(u32, u8), HopGroup>,
    pub neighbors: HashMap<(u16, u32), [u8; 6]>,
    pub proxy: BTreeSet<u32>,
    pub proxy_active: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct LearnedNeighbor {
    pub mac: [u8; 6],
    pub confirmed: Instant,
    pub stale: bool,
}

/// An IPv6 neighbor learned from RA, NS or NA.
#[derive(Debug, Clone, Copy)]
pub struct LearnedNeighbor6 {
    pub mac: [u8; 6],
    pub confirmed: Instant,
    pub stale: bool,
    /// Seen advertising itself as a router (RA, or NA with the R flag).
    pub router: bool,
}

#[derive(Debug, Default, Clone, Copy)]
struct Dirty {
    endpoints: bool,
    routes: bool,
    neighbors: bool,
    proxy: bool,
}

impl Dirty {
    fn all() -> Self {
        Dirty {
            endpoints: true,
            routes: true,
            neighbors: true,
            proxy: true,
        }
    }
    fn any(&self) -> bool {
        self.endpoints || self.routes || self.neighbors || self.proxy
    }
}

/// Port facts the FIB needs to validate feed input.
#[derive(Debug, Clone)]
pub struct FibPort {
    pub name: String,
    pub subnet: Ipv4Prefix,
    /// Answer ARP for the proxy-ARP set on this port (`proxy_arp`; a reload
    /// may change it).
    pub proxy_arp: bool,
}

pub struct Fib {
    ports: Vec<FibPort>,
    config_routes: Vec<Route>,
    pub feed: FeedTables,
    staging: Option<FeedTables>,
    pub learned: HashMap<(u16, u32), LearnedNeighbor>,
    pub learned6: HashMap<(u16, Ipv6Addr), LearnedNeighbor6>,
    /// IPv6 gateways of feed routes; a gateway's index + `GATEWAY6_BASE` is
    /// its synthetic IPv4 next-hop key (stable for the process's life).
    gateways6: Vec<(u16, Ipv6Addr)>,
    gateway6_keys: HashMap<(u16, Ipv6Addr), u32>,
    dirty: Dirty,
    version: u64,
    last: Arc<Snapshot>,
    pub reachable: Duration,
    pub stale_gc: Duration,
    pub last_build: Duration,
    tunnels: Arc<crate::tunnel::TunnelTable>,
}

impl Fib {
    pub fn new(
        ports: Vec<FibPort>,
        config_routes: Vec<Route>,
        reachable: Duration,
        stale_gc: Duration,
    ) -> Self {
        let n = ports.len();
        Fib {
            ports,
            config_routes,
            feed: FeedTables::default(),
            staging: None,
            learned: HashMap::new(),
            learned6: HashMap::new(),
            gateways6: Vec::new(),
            gateway6_keys: HashMap::new(),
            dirty: Dirty::all(),
            version: 0,
            last: Arc::new(Snapshot::empty(n)),
            reachable,
            stale_gc,
            last_build: Duration::ZERO,
            tunnels: Arc::new(crate::tunnel::TunnelTable::default()),
        }
    }

    /// Installs the tunnel set (from the node config).
    pub fn set_tunnels(&mut self, t: crate::tunnel::TunnelTable) {
        self.tunnels = Arc::new(t);
        self.dirty.endpoints = true;
    }

    pub fn tunnels(&self) -> &Arc<crate::tunnel::TunnelTable> {
        &self.tunnels
    }

    /// Ports, connected routes and static routes from a node config.
    pub fn from_config(cfg: &NodeConfig) -> Self {
        let ports: Vec<FibPort> = cfg
            .ports
            .iter()
            .map(|p| FibPort {
                name: p.name.clone(),
                subnet: p.address.subnet(),
                proxy_arp: p.proxy_arp,
            })
            .collect();
        let mut fib = Fib::new(
            ports,
            Self::config_routes(cfg),
            Duration::from_secs(u64::from(cfg.dataplane.arp_reachable_secs)),
            Duration::from_secs(u64::from(cfg.dataplane.arp_stale_secs)),
        );
        fib.set_tunnels(crate::tunnel::TunnelTable::from_config(cfg));
        fib
    }

    /// Connected routes of the ports, then the static routes (`[[route]]`)
    /// whose gateways are on a port's subnet.
    pub fn config_routes(cfg: &NodeConfig) -> Vec<Route> {
        let mut routes = Vec::new();
        for (i, p) in cfg.ports.iter().enumerate() {
            let subnet = p.address.subnet();
            let mut g = HopGroup::default();
            g.hops.push(Hop {
                port: i as u16,
                gateway: 0,
            });
            routes.push(Route {
                addr: u32::from(subnet.addr()),
                len: subnet.len(),
                group: g,
            });
        }
        for r in &cfg.routes {
            let mut g = HopGroup::default();
            for gw in r.via.iter().take(MAX_ECMP) {
                if let Some(port) = cfg.port_for_gateway(*gw) {
                    g.hops.push(Hop {
                        port: port as u16,
                        gateway: u32::from(*gw),
                    });
                }
            }
            routes.push(Route {
                addr: u32::from(r.prefix.addr()),
                len: r.prefix.len(),
                group: g,
            });
        }
        routes
    }

    /// Replaces the config routes (a reload); feed routes still override
    /// config routes with the same prefix.
    pub fn set_config_routes(&mut self, routes: Vec<Route>) {
        self.config_routes = routes;
        self.dirty.routes = true;
    }

    /// Turns proxy ARP on or off on port `port` (a reload).
    pub fn set_proxy_arp(&mut self, port: usize, on: bool) {
        if let Some(p) = self.ports.get_mut(port) {
            p.proxy_arp = on;
            self.dirty.proxy = true;
        }
    }

    /// Whether port `port` answers proxy ARP.
    pub fn proxy_arp_on(&self, port: usize) -> bool {
        self.ports.get(port).is_some_and(|p| p.proxy_arp)
    }

    /// Ports with proxy ARP on, as the snapshot's bit mask.
    fn proxy_ports(&self) -> u64 {
        self.ports
            .iter()
            .enumerate()
            .filter(|(i, p)| p.proxy_arp && *i < 64)
            .fold(0, |m, (i, _)| m | 1 << i)
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn current(&self) -> &Arc<Snapshot> {
        &self.last
    }

    pub fn syncing(&self) -> bool {
        self.staging.is_some()
    }

    pub fn port_names(&self) -> impl Iterator<Item = &str> {
        self.ports.iter().map(|p| p.name.as_str())
    }

    fn port(&self, name: &str) -> Result<u16, FibError> {
        self.ports
            .iter()
            .position(|p| p.name == name)
            .map(|i| i as u16)
            .ok_or_else(|| FibError::UnknownPort {
                name: name.to_string(),
                known: self.port_names().collect::<Vec<_>>().join(", "),
            })
    }

    pub fn begin_sync(&mut self) {
        self.staging = Some(FeedTables::default());
    }

    /// Drops a full sync that did not finish (the session ended).
    pub fn abort_sync(&mut self) {
        self.staging = None;
    }

    pub fn end_sync(&mut self) -> Result<(), FibError> {
        let staged = self.staging.take().ok_or(FibError::SyncEndWithoutBegin)?;
        self.feed = staged;
        self.dirty = Dirty::all();
        Ok(())
    }

    /// Closes the proxy-ARP gate in the live feed tables (never in a staged
    /// sync: that belongs to the session now feeding). Returns whether it
    /// was open.
    pub fn close_proxy_gate(&mut self) -> bool {
        let was = self.feed.proxy_active;
        if was {
            self.feed.proxy_active = false;
            self.dirty.proxy = true;
        }
        was
    }

    /// Validates every change first, then applies them all: a batch with one
    /// bad change is refused whole, with the change's index in the error.
    pub fn apply_batch(&mut self, changes: &[FibChange]) -> Result<(), FibError> {
        let resolved = changes
            .iter()
            .enumerate()
            .map(|(i, c)| {
                self.resolve(c).map_err(|e| FibError::InBatch {
                    index: i,
                    error: Box::new(e),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        for r in resolved {
            self.apply_resolved(r);
        }
        Ok(())
    }

    /// Validates and applies one change to the staged sync or the live feed
    /// state. A rejected change leaves the state untouched.
    pub fn apply(&mut self, change: &FibChange) -> Result<(), FibError> {
        let resolved = self.resolve(change)?;
        self.apply_resolved(resolved);
        Ok(())
    }

    /// The synthetic next-hop key of an IPv6 gateway on `port` (assigned on
    /// first use; None when the key space is exhausted).
    fn gateway6_key(&mut self, port: u16, ip: Ipv6Addr) -> Option<u32> {
        if let Some(k) = self.gateway6_keys.get(&(port, ip)) {
            return Some(*k);
        }
        if self.gateways6.len() >= MAX_GATEWAYS6 {
            return None;
        }
        let key = GATEWAY6_BASE + self.gateways6.len() as u32;
        self.gateways6.push((port, ip));
        self.gateway6_keys.insert((port, ip), key);
        self.dirty.neighbors = true;
        Some(key)
    }

    fn apply_resolved(&mut self, resolved: Resolved) {
        let resolved = match resolved {
            Resolved::RouteSetVia(k, hops) => {
                let mut g = HopGroup::default();
                for (port, gw) in hops {
                    let gateway = match gw {
                        Gateway::V4(ip) => ip,
                        Gateway::V6(ip) => match self.gateway6_key(port, ip) {
                            Some(key) => key,
                            None => continue,
                        },
                    };
                    g.hops.push(Hop { port, gateway });
                }
                Resolved::RouteSet(k, g)
            }
            other => other,
        };
        let in_sync = self.staging.is_some();
        let t = match self.staging.as_mut() {
            Some(s) => s,
            None => &mut self.feed,
        };
        let mut d = Dirty::default();
        match resolved {
            Resolved::EndpointSet(ip, a) => {
                t.endpoints.insert(ip, a);
                d.endpoints = true;
            }
            Resolved::EndpointDel(ip) => d.endpoints = t.endpoints.remove(&ip).is_some(),
            Resolved::RouteSet(k, g) => {
                t.routes.insert(k, g);
                d.routes = true;
            }
            Resolved::RouteSetVia(..) => unreachable!("converted above"),
            Resolved::RouteDel(k) => d.routes = t.routes.remove(&k).is_some(),
            Resolved::NeighborSet(k, mac) => {
                t.neighbors.insert(k, mac);
                d.neighbors = true;
            }
            Resolved::NeighborDel(k) => {
                d.neighbors = t.neighbors.remove(&k).is_some();
                // A learned entry goes too, at once (it is not feed state:
                // no sync stages it). The next ARP from a valid sender may
                // teach it again.
                if self.learned.remove(&k).is_some() {
                    self.dirty.neighbors = true;
                }
            }
            Resolved::ProxySet(ip) => d.proxy = t.proxy.insert(ip),
            Resolved::ProxyDel(ip) => d.proxy = t.proxy.remove(&ip),
            Resolved::ProxyActive(a) => {
                d.proxy = t.proxy_active != a;
                t.proxy_active = a;
            }
        }
        if !in_sync {
            self.dirty.endpoints |= d.endpoints;
            self.dirty.routes |= d.routes;
            self.dirty.neighbors |= d.neighbors;
            self.dirty.proxy |= d.proxy;
        }
    }

    fn resolve(&self, change: &FibChange) -> Result<Resolved, FibError> {
        let host = |ip: std::net::Ipv4Addr| -> Result<u32, FibError> {
            let v = u32::from(ip);
            if v == 0 || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback() {
                Err(FibError::NotAHost(ip))
            } else {
                Ok(v)
            }
        };
        Ok(match change {
            FibChange::EndpointSet { ip, action } => {
                let a = match action {
                    feed::EndpointAction::Local { port } => EndpointAction::Local {
                        port: self.port(port)?,
                    },
                    feed::EndpointAction::Tunnel { tunnel } => {
                        EndpointAction::Tunnel { tunnel: *tunnel }
                    }
                    feed::EndpointAction::Drop => EndpointAction::Drop,
                };
                Resolved::EndpointSet(host(*ip)?, a)
            }
            FibChange::EndpointDel { ip } => Resolved::EndpointDel(u32::from(*ip)),
            FibChange::RouteSet { prefix, nexthops } => {
                let route = |reason: String| FibError::Route {
                    prefix: prefix.to_string(),
                    reason,
                };
                if nexthops.is_empty() {
                    return Err(route("no next hops".into()));
                }
                if nexthops.len() > MAX_ECMP {
                    return Err(route(format!(
                        "{} next hops, at most {MAX_ECMP}",
                        nexthops.len()
                    )));
                }
                let mut hops = Vec::with_capacity(nexthops.len());
                for nh in nexthops {
                    let port = self.port(&nh.port)?;
                    let gateway = match (nh.gateway, nh.gateway6) {
                        (Some(_), Some(_)) => {
                            return Err(route(format!(
                                "next hop on '{}' has both gateway and gateway6",
                                nh.port
                            )))
                        }
                        (None, Some(gw6)) => {
                            if !crate::nd::is_link_local_unicast(&gw6) {
                                return Err(route(format!(
                                    "gateway6 {gw6} is not an IPv6 link-local unicast address (fe80::/10)"
                                )));
                            }
                            hops.push((port, Gateway::V6(gw6)));
                            continue;
                        }
                        (Some(gw), None) => {
                            if !self.ports[port as usize].subnet.contains(gw) {
                                return Err(route(format!(
                                    "gateway {gw} is not on port '{}' ({})",
                                    nh.port, self.ports[port as usize].subnet
                                )));
                            }
                            host(gw)?
                        }
                        (None, None) => 0,
                    };
                    hops.push((port, Gateway::V4(gateway)));
                }
                Resolved::RouteSetVia((u32::from(prefix.addr()), prefix.len()), hops)
            }
            FibChange::RouteDel { prefix } => {
                Resolved::RouteDel((u32::from(prefix.addr()), prefix.len()))
            }
            FibChange::NeighborSet { port, ip, mac } => {
                if !mac.is_unicast() {
                    return Err(FibError::Neighbor {
                        ip: *ip,
                        reason: format!("{mac} is not a unicast MAC"),
                    });
                }
                let p = self.port(port)?;
                if self.not_a_host_on(p, u32::from(*ip)) {
                    return Err(FibError::Neighbor {
                        ip: *ip,
                        reason: format!(
                            "the network or broadcast address of port '{port}' ({})",
                            self.ports[p as usize].subnet
                        ),
                    });
                }
                Resolved::NeighborSet((p, host(*ip)?), mac.0)
            }
            FibChange::NeighborDel { port, ip } => {
                Resolved::NeighborDel((self.port(port)?, u32::from(*ip)))
            }
            FibChange::ProxyArpSet { ip } => Resolved::ProxySet(host(*ip)?),
            FibChange::ProxyArpDel { ip } => Resolved::ProxyDel(u32::from(*ip)),
            FibChange::ProxyArpActive { active } => Resolved::ProxyActive(*active),
        })
    }

    /// Is `ip` the network or broadcast address of port `port`'s subnet
    /// (prefixes up to /30; a /31 or /32 has neither)?
    fn not_a_host_on(&self, port: u16, ip: u32) -> bool {
        let subnet = self.ports[port as usize].subnet;
        if subnet.len() > 30 {
            return false;
        }
        let net = u32::from(subnet.addr());
        ip == net || ip == net | !subnet.mask()
    }

    /// Records a neighbor confirmation from a core. The cores learn only
    /// from valid unicast senders; an address that is not one host on the
    /// port is refused here too.
    pub fn learn(&mut self, l: Learn, now: Instant) {
        if (l.port as usize) >= self.ports.len() {
            return;
        }
        let ip = std::net::Ipv4Addr::from(l.ip);
        if ip.is_unspecified()
            || ip.is_loopback()
            || ip.is_multicast()
            || ip.is_broadcast()
            || self.not_a_host_on(l.port, l.ip)
        {
            return;
        }
        let fresh = LearnedNeighbor {
            mac: l.mac,
            confirmed: now,
            stale: false,
        };
        match self.learned.insert((l.port, l.ip), fresh) {
            Some(old) if old.mac == l.mac && !old.stale => {}
            _ => self.dirty.neighbors = true,
        }
    }

    /// Records an IPv6 neighbor (RA, NS or NA) from a core.
    pub fn learn6(&mut self, l: Learn6, now: Instant) {
        if (l.port as usize) >= self.ports.len() {
            return;
        }
        let router = l.router
            || self
                .learned6
                .get(&(l.port, l.ip))
                .is_some_and(|o| o.router && o.mac == l.mac);
        let fresh = LearnedNeighbor6 {
            mac: l.mac,
            confirmed: now,
            stale: false,
            router,
        };
        match self.learned6.insert((l.port, l.ip), fresh) {
            Some(old) if old.mac == l.mac && !old.stale => {}
            _ => self.dirty.neighbors = true,
        }
    }

    /// The IPv6 gateways of routes, by synthetic key order.
    pub fn gateways6(&self) -> &[(u16, Ipv6Addr)] {
        &self.gateways6
    }

    /// Reachable -> stale after `reachable`; stale entries unconfirmed for
    /// `stale_gc` are removed.
    pub fn age(&mut self, now: Instant) {
        let (reachable, gc) = (self.reachable, self.stale_gc);
        let mut changed = false;
        // Keep an entry? Marks it stale on the way (IPv4 and IPv6 alike).
        let mut keep = |confirmed: Instant, stale: &mut bool| {
            let age = now.saturating_duration_since(confirmed);
            if age >= reachable + gc {
                changed = true;
                return false;
            }
            if age >= reachable && !*stale {
                *stale = true;
                changed = true;
            }
            true
        };
        self.learned6.retain(|_, n| keep(n.confirmed, &mut n.stale));
        self.learned.retain(|_, n| keep(n.confirmed, &mut n.stale));
        self.dirty.neighbors |= changed;
    }

    pub fn dirty(&self) -> bool {
        self.dirty.any()
    }

    /// Builds the next snapshot, reusing unchanged tables; `None` if nothing changed.
    pub fn build(&mut self) -> Option<Arc<Snapshot>> {
        if !self.dirty.any() {
            return None;
        }
        let started = Instant::now();
        let prev = &self.last;
        let d = self.dirty;
        let endpoints = if d.endpoints {
            let t = &self.feed.endpoints;
            Arc::new(ExactTable::build(t.iter().map(|(k, v)| (*k, *v)), t.len()))
        } else {
            prev.endpoints.clone()
        };
        let routes = if d.routes {
            let mut all = self.config_routes.clone();
            // Feed routes override config routes with the same prefix.
            all.retain(|r| !self.feed.routes.contains_key(&(r.addr, r.len)));
            all.extend(self.feed.routes.iter().map(|((addr, len), g)| Route {
                addr: *addr,
                len: *len,
                group: g.clone(),
            }));
            Arc::new(Lpm::build(all))
        } else {
            prev.routes.clone()
        };
        let neighbors = if d.neighbors {
            let mut entries: Vec<(u16, u32, Neighbor)> = self
                .learned
                .iter()
                .filter(|(k, _)| !self.feed.neighbors.contains_key(k))
                .map(|((p, ip), n)| {
                    let status = if n.stale {
                        NeighborStatus::Stale
                    } else {
                        NeighborStatus::Reachable
                    };
                    (*p, *ip, Neighbor { mac: n.mac, status })
                })
                .collect();
            entries.extend(self.feed.neighbors.iter().map(|((p, ip), mac)| {
                (
                    *p,
                    *ip,
                    Neighbor {
                        mac: *mac,
                        status: NeighborStatus::Static,
                    },
                )
            }));
            // An IPv4 next hop can never be in 0.0.0.0/8: those keys are the
            // IPv6 gateways', resolved through the IPv6 neighbors.
            entries.retain(|(_, ip, _)| !crate::snapshot::is_gateway6_key(*ip));
            for (i, (port, ip)) in self.gateways6.iter().enumerate() {
                if let Some(n) = self.learned6.get(&(*port, *ip)) {
                    let status = if n.stale {
                        NeighborStatus::Stale
                    } else {
                        NeighborStatus::Reachable
                    };
                    entries.push((
                        *port,
                        GATEWAY6_BASE + i as u32,
                        Neighbor { mac: n.mac, status },
                    ));
                }
            }
            Arc::new(NeighborTable::build(self.ports.len(), &entries))
        } else {
            prev.neighbors.clone()
        };
        let (neighbors6, gateways6) = if d.neighbors {
            let entries: Vec<(u16, Ipv6Addr, Neighbor)> = self
                .learned6
                .iter()
                .map(|((p, ip), n)| {
                    let status = if n.stale {
                        NeighborStatus::Stale
                    } else {
                        NeighborStatus::Reachable
                    };
                    (*p, *ip, Neighbor { mac: n.mac, status })
                })
                .collect();
            (
                Arc::new(Neighbor6Table::build(self.ports.len(), &entries)),
                Arc::new(Gateways6 {
                    list: self.gateways6.clone(),
                }),
            )
        } else {
            (prev.neighbors6.clone(), prev.gateways6.clone())
        };
        let proxy_arp = if d.proxy {
            Arc::new(ProxyArp {
                active: self.feed.proxy_active,
                ports: self.proxy_ports(),
                set: ExactTable::build(
                    self.feed.proxy.iter().map(|ip| (*ip, ())),
                    self.feed.proxy.len(),
                ),
            })
        } else {
            prev.proxy_arp.clone()
        };
        self.version += 1;
        let snap = Arc::new(Snapshot {
            version: self.version,
            endpoints,
            routes,
            neighbors,
            proxy_arp,
            tunnels: self.tunnels.clone(),
            neighbors6,
            gateways6,
        });
        self.last = snap.clone();
        self.dirty = Dirty::default();
        self.last_build = started.elapsed();
        Some(snap)
    }
}

/// A validated next-hop gateway before IPv6 ones get their synthetic key.
enum Gateway {
    V4(u32),
    V6(Ipv6Addr),
}

enum Resolved {
    EndpointSet(u32, EndpointAction),
    EndpointDel(u32),
    RouteSet((u32, u8), HopGroup),
    RouteSetVia((u32, u8), Vec<(u16, Gateway)>),
    RouteDel((u32, u8)),
    NeighborSet((u16, u32), [u8; 6]),
    NeighborDel((u16, u32)),
    ProxySet(u32),
    ProxyDel(u32),
    ProxyActive(bool),
}

#[cfg(test)]
mod tests {
    use super::*;
    use cer_shared::feed::{EndpointAction as FeedAction, NextHop};

    fn fib() -> Fib {
        Fib::new(
            vec![
                FibPort {
                    name: "lan".into(),
                    subnet: "10.1.0.0/24".parse().unwrap(),
                    proxy_arp: false,
                },
                FibPort {
                    name: "wan".into(),
                    subnet: "10.2.0.0/24".parse().unwrap(),
                    proxy_arp: false,
                },
            ],
            vec![],
            Duration::from_secs(30),
            Duration::from_secs(60),
        )
    }

    fn ep(ip: &str, port: &str) -> FibChange {
        FibChange::EndpointSet {
            ip: ip.parse().unwrap(),
            action: FeedAction::Local { port: port.into() },
        }
    }

    #[test]
    fn full_sync_replaces_and_is_atomic() {
        let mut f = fib();
        f.apply(&ep("10.77.60.10", "lan")).unwrap();
        let s1 = f.build().unwrap();
        assert_eq!(s1.endpoints.len(), 1);
        f.begin_sync();
        f.apply(&ep("10.77.60.11", "wan")).unwrap();
        // Nothing published mid-sync.
        assert!(f.build().is_none());
        f.end_sync().unwrap();
        let s2 = f.build().unwrap();
        assert_eq!(s2.endpoints.len(), 1);
        assert_eq!(
            s2.endpoints
                .get(u32::from(std::net::Ipv4Addr::new(10, 77, 60, 11))),
            Some(EndpointAction::Local { port: 1 })
        );
        assert!(s2.version > s1.version);
    }

    #[test]
    fn aborted_sync_keeps_old_state() {
        let mut f = fib();
        f.apply(&ep("10.77.60.10", "lan")).unwrap();
        f.build();
        f.begin_sync();
        f.apply(&ep("10.77.60.11", "lan")).unwrap();
        f.abort_sync();
        assert!(f.build().is_none());
        assert_eq!(f.current().endpoints.len(), 1);
    }

    #[test]
    fn bad_changes_are_named_and_not_applied() {
        let mut f = fib();
        let e = f.apply(&ep("10.77.60.10", "nope")).unwrap_err().to_string();
        assert!(e.contains("unknown port 'nope'"), "{e}");
        let e = f.apply(&ep("0.0.0.0", "lan")).unwrap_err().to_string();
        assert!(e.contains("0.0.0.0"), "{e}");
        let e = f
            .apply(&FibChange::RouteSet {
                prefix: "0.0.0.0/0".parse().unwrap(),
                nexthops: vec![NextHop {
                    port: "lan".into(),
                    gateway: Some("10.2.0.1".parse().unwrap()),
                    gateway6: None,
                }],
            })
            .unwrap_err()
            .to_string();
        assert!(e.contains("not on port 'lan'"), "{e}");
        assert!(f.feed.endpoints.is_empty() && f.feed.routes.is_empty());
    }

    #[test]
    fn unchanged_tables_are_shared() {
        let mut f = fib();
        f.apply(&ep("10.77.60.10", "lan")).unwrap();
        let a = f.build().unwrap();
        f.learn(
            Learn {
                port: 0,
                ip: 0x0a01_0005,
                mac: [2, 0, 0, 0, 0, 5],
            },
            Instant::now(),
        );
        let b = f.build().unwrap();
        assert!(Arc::ptr_eq(&a.endpoints, &b.endpoints));
        assert!(!Arc::ptr_eq(&a.neighbors, &b.neighbors));
        assert_eq!(
            b.neighbors.get(0, 0x0a01_0005).unwrap().status,
            NeighborStatus::Reachable
        );
    }

    #[test]
    fn neighbors_age_to_stale_then_go() {
        let mut f = fib();
        let t0 = Instant::now();
        f.learn(
            Learn {
                port: 0,
                ip: 0x0a01_0005,
                mac: [2, 0, 0, 0, 0, 5],
            },
            t0,
        );
        f.build();
        f.age(t0 + Duration::from_secs(31));
        let s = f.build().unwrap();
        assert_eq!(
            s.neighbors.get(0, 0x0a01_0005).unwrap().status,
            NeighborStatus::Stale
        );
        f.age(t0 + Duration::from_secs(91));
        let s = f.build().unwrap();
        assert!(s.neighbors.get(0, 0x0a01_0005).is_none());
    }

    #[test]
    fn feed_route_overrides_config_route() {
        let mut g = HopGroup::default();
        g.hops.push(Hop {
            port: 0,
            gateway: 0x0a01_00fe,
        });
        let mut f = Fib::new(
            vec![
                FibPort {
                    name: "lan".into(),
                    subnet: "10.1.0.0/24".parse().unwrap(),
                    proxy_arp: false,
                },
                FibPort {
                    name: "wan".into(),
                    subnet: "10.2.0.0/24".parse().unwrap(),
                    proxy_arp: false,
                },
            ],
            vec![Route {
                addr: 0,
                len: 0,
                group: g,
            }],
            Duration::from_secs(30),
            Duration::from_secs(60),
        );
        let s = f.build().unwrap();
        assert_eq!(s.routes.lookup(0x0808_0808).unwrap().group.hops[0].port, 0);
        f.apply(&FibChange::RouteSet {
            prefix: "0.0.0.0/0".parse().unwrap(),
            nexthops: vec![NextHop {
                port: "wan".into(),
                gateway: Some("10.2.0.1".parse().unwrap()),
                gateway6: None,
            }],
        })
        .unwrap();
        let s = f.build().unwrap();
        assert_eq!(s.routes.lookup(0x0808_0808).unwrap().group.hops[0].port, 1);
        assert_eq!(s.routes.len(), 1);
    }

    #[test]
    fn link_local_gateways_resolve_through_learned6_and_age() {
        let mut f = fib();
        let peer: Ipv6Addr = "fe80::1".parse().unwrap();
        f.apply(&FibChange::RouteSet {
            prefix: "0.0.0.0/0".parse().unwrap(),
            nexthops: vec![NextHop {
                port: "wan".into(),
                gateway: None,
                gateway6: Some(peer),
            }],
        })
        .unwrap();
        let s = f.build().unwrap();
        let hop = s.routes.lookup(0x0808_0808).unwrap().group.hops[0];
        assert_eq!(hop.port, 1);
        assert!(crate::snapshot::is_gateway6_key(hop.gateway));
        assert_eq!(s.gateways6.get(hop.gateway), Some((1, peer)));
        assert!(s.neighbors.get(1, hop.gateway).is_none(), "unresolved");
        let t0 = Instant::now();
        f.learn6(
            Learn6 {
                port: 1,
                ip: peer,
                mac: [2, 0, 0, 0, 0, 9],
                router: true,
            },
            t0,
        );
        let s = f.build().unwrap();
        assert_eq!(
            s.neighbors.get(1, hop.gateway).unwrap().mac,
            [2, 0, 0, 0, 0, 9]
        );
        assert_eq!(s.neighbors6.get(1, &peer).unwrap().mac, [2, 0, 0, 0, 0, 9]);
        // The same gateway in another route shares the key.
        f.apply(&FibChange::RouteSet {
            prefix: "10.9.0.0/16".parse().unwrap(),
            nexthops: vec![NextHop {
                port: "wan".into(),
                gateway: None,
                gateway6: Some(peer),
            }],
        })
        .unwrap();
        let s = f.build().unwrap();
        assert_eq!(
            s.routes.lookup(0x0a09_0001).unwrap().group.hops[0].gateway,
            hop.gateway
        );
        // Aging: stale, then gone (and the route's MAC with it).
        f.age(t0 + Duration::from_secs(31));
        let s = f.build().unwrap();
        assert_eq!(
            s.neighbors.get(1, hop.gateway).unwrap().status,
            NeighborStatus::Stale
        );
        f.age(t0 + Duration::from_secs(91));
        let s = f.build().unwrap();
        assert!(s.neighbors.get(1, hop.gateway).is_none());
        assert!(s.neighbors6.is_empty());
    }

    #[test]
    fn neighbor_del_removes_learned_entries_and_broadcasts_are_never_neighbors() {
        let mut f = fib();
        let now = Instant::now();
        let learn = |ip: u32| Learn {
            port: 0,
            ip,
            mac: [2, 0, 0, 0, 0, 5],
        };
        f.learn(learn(0x0a01_0005), now);
        // The port's broadcast and network addresses, loopback: refused.
        for bad in [0x0a01_00ff, 0x0a01_0000, 0x7f00_0001] {
            f.learn(learn(bad), now);
        }
        let s = f.build().unwrap();
        assert!(s.neighbors.get(0, 0x0a01_0005).is_some());
        for bad in [0x0a01_00ff, 0x0a01_0000, 0x7f00_0001] {
            assert!(s.neighbors.get(0, bad).is_none(), "{bad:#x} learned");
        }
        // neighbor-del removes the learned entry (no static entry exists).
        f.apply(&FibChange::NeighborDel {
            port: "lan".into(),
            ip: "10.1.0.5".parse().unwrap(),
        })
        .unwrap();
        let s = f.build().unwrap();
        assert!(s.neighbors.get(0, 0x0a01_0005).is_none());
        assert!(f.learned.is_empty());
        // Also during a full sync (learned entries are not staged).
        f.learn(learn(0x0a01_0005), now);
        f.build();
        f.begin_sync();
        f.apply(&FibChange::NeighborDel {
            port: "lan".into(),
            ip: "10.1.0.5".parse().unwrap(),
        })
        .unwrap();
        f.end_sync().unwrap();
        assert!(f.build().unwrap().neighbors.get(0, 0x0a01_0005).is_none());
        // A static entry for a broadcast or network address is refused.
        for ip in ["10.1.0.255", "10.1.0.0"] {
            let e = f
                .apply(&FibChange::NeighborSet {
                    port: "lan".into(),
                    ip: ip.parse().unwrap(),
                    mac: cer_shared::MacAddr([2, 0, 0, 0, 0, 9]),
                })
                .unwrap_err()
                .to_string();
            assert!(e.contains("broadcast address of port 'lan'"), "{e}");
        }
    }
}
