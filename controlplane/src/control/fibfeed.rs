//! Feeds the dataplane: a thread holding the FIB feed connection. It keeps a
//! mirror of the desired FIB (endpoints from the ownership plane, underlay
//! routes learned over BGP unnumbered), does a full sync on
//! every (re)connect and sends deltas after; when the socket drops it
//! reconnects and resyncs (the dataplane forwards on its last snapshot
//! meanwhile). The first sync waits for `Ready` (initial BGP convergence),
//! so a restarted cer-control does not replace a good FIB with a partial one.
//!
//! The session owns the dataplane's proxy-ARP gate (`capture_gate` in the
//! hello): if this process dies, the dataplane closes the gate by itself and
//! keeps forwarding; the full sync after a reconnect sends the gate as VRRP
//! has it now.
//!
//! While connected and idle the feeder pings the dataplane every second.
//! Every ack carries the dataplane's duplicate proxy-ARP holder alarm (count
//! and recent offenders); it lands in `FeedStatus` and each new alarm is
//! logged at error level with the IP and MAC. Two holders of one /32 is a
//! capture failure the operator must see.

use cer_shared::feed::{DuplicateHolder, EndpointAction, FeedCommand, FibChange, NextHop};
use cer_shared::feed_client::FeedClient;
use cer_shared::stall::StallWatch;
use cer_shared::Ipv4Prefix;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub enum FeedOp {
    Set(Ipv4Addr, EndpointAction, Instant),
    Del(Ipv4Addr, Instant),
    /// An underlay route (BGP unnumbered: next hops via peer link-locals).
    Route(Ipv4Prefix, Vec<NextHop>, Instant),
    RouteDel(Ipv4Prefix, Instant),
    Command(FeedCommand),
    /// Initial convergence reached: the first full sync may go.
    Ready,
    /// On-prem capture of a /32 starts (true) or ends: proxy ARP set membership.
    Capture(Ipv4Addr, bool, Instant),
    /// The proxy-ARP gate (VRRP master, or single_router) opens or closes.
    Gate(bool),
}

/// Where gratuitous ARPs for captured /32s go.
#[derive(Debug, Clone)]
pub struct GarpOptions {
    pub port: String,
    pub count: u8,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct FeedStatus {
    pub socket: String,
    pub connected: bool,
    pub ready: bool,
    pub dataplane_node: Option<String>,
    pub dataplane_boot_id: Option<u64>,
    pub snapshot_version: u64,
    pub full_syncs: u64,
    pub deltas: u64,
    pub entries: usize,
    /// Underlay routes fed (learned over BGP unnumbered).
    pub routes: usize,
    /// /32s in the dataplane's proxy-ARP set (on-prem capture).
    pub captured: usize,
    /// Whether the dataplane's proxy-ARP gate is open.
    pub proxy_arp_active: bool,
    pub last_error: Option<String>,
    /// The dataplane's duplicate proxy-ARP holder alarms since it started:
    /// foreign ARP replies/GARPs for a /32 it answers for (two holders).
    pub duplicate_holder_alarms: u64,
    /// The recent offenders the dataplane reported (ip, mac, port), newest first.
    pub duplicate_holders: Vec<DuplicateHolder>,
    /// Time from the ownership change to the dataplane's ack, last delta (microseconds).
    pub last_change_to_ack_us: Option<u64>,
    /// Stalls the dataplane reported since it started: each closed its
    /// proxy-ARP gate until the VRRP gate re-confirmed this router's role.
    pub dataplane_stalls: u64,
}

pub type SharedStatus = Arc<Mutex<FeedStatus>>;

/// Runs the feeder until `ops` is closed.
///
/// The mirror holds the endpoints, the proxy-ARP set and the gate; a full
/// sync sends all three (the gate closed until told otherwise: fail closed).
/// Gratuitous ARPs go out for a /32 whose capture starts while the gate is
/// open, and for every captured /32 when the gate opens.
///
/// A stall the dataplane reports in an ack (it closed its gate by itself) is
/// mirrored (`gate` false here too) and raised on `stall`, so the VRRP gate
/// holds, settles and re-confirms before it opens the gate again.
pub fn run(
    socket: PathBuf,
    ops: Receiver<FeedOp>,
    status: SharedStatus,
    garp: GarpOptions,
    stall: Option<Arc<StallWatch>>,
) {
    let mut mirror: BTreeMap<Ipv4Addr, EndpointAction> = BTreeMap::new();
    let mut routes: BTreeMap<Ipv4Prefix, Vec<NextHop>> = BTreeMap::new();
    let mut proxy: BTreeSet<Ipv4Addr> = BTreeSet::new();
    let mut gate = false;
    let mut ready = false;
    let mut client: Option<FeedClient> = None;
    let mut next_try = Instant::now();
    // (dataplane boot id, alarms already reported) for "new alarm" logging.
    let mut alarms_seen: (u64, u64) = (0, 0);
    // (dataplane boot id, stalls already seen).
    let mut stalls_seen: (u64, u64) = (0, 0);
    let set = |f: &dyn Fn(&mut FeedStatus)| {
        if let Ok(mut s) = status.lock() {
            f(&mut s);
        }
    };
    set(&|s| s.socket = socket.display().to_string());
    loop {
        let wait = if client.is_some() {
            PING_EVERY
        } else if ready {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(3600)
        };
        let first = match ops.recv_timeout(wait) {
            Ok(op) => Some(op),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        // Batch everything already queued into one delta.
        let mut batch: Vec<FibChange> = Vec::new();
        let mut commands = Vec::new();
        let mut oldest: Option<Instant> = None;
        for op in first
            .into_iter()
            .chain(std::iter::from_fn(|| ops.try_recv().ok()))
        {
            match op {
                FeedOp::Set(ip, a, t) => {
                    oldest = Some(oldest.map_or(t, |o| o.min(t)));
                    mirror.insert(ip, a.clone());
                    batch.push(FibChange::EndpointSet { ip, action: a });
                }
                FeedOp::Del(ip, t) => {
                    oldest = Some(oldest.map_or(t, |o| o.min(t)));
                    if mirror.remove(&ip).is_some() {
                        batch.push(FibChange::EndpointDel { ip });
                    }
                }
                FeedOp::Route(prefix, nexthops, t) => {
                    oldest = Some(oldest.map_or(t, |o| o.min(t)));
                    if routes.get(&prefix) != Some(&nexthops) {
                        routes.insert(prefix, nexthops.clone());
                        batch.push(FibChange::RouteSet { prefix, nexthops });
                    }
                }
                FeedOp::RouteDel(prefix, t) => {
                    oldest = Some(oldest.map_or(t, |o| o.min(t)));
                    if routes.remove(&prefix).is_some() {
                        batch.push(FibChange::RouteDel { prefix });
                    }
                }
                FeedOp::Command(c) => commands.push(c),
                FeedOp::Capture(ip, on, t) => {
                    oldest = Some(oldest.map_or(t, |o| o.min(t)));
                    if on && proxy.insert(ip) {
                        batch.push(FibChange::ProxyArpSet { ip });
                        if gate {
                            commands.push(garp_for(&garp, ip));
                        }
                    } else if !on && proxy.remove(&ip) {
                        batch.push(FibChange::ProxyArpDel { ip });
                    }
                }
                FeedOp::Gate(open) => {
                    if open != gate {
                        gate = open;
                        batch.push(FibChange::ProxyArpActive { active: open });
                        if open {
                            commands.extend(proxy.iter().map(|ip| garp_for(&garp, *ip)));
                        }
                    }
                }
                FeedOp::Ready => {
                    ready = true;
                    set(&|s| s.ready = true);
                }
            }
        }
        let n = mirror.len();
        let nr = routes.len();
        let (np, g) = (proxy.len(), gate);
        set(&|s| {
            s.entries = n;
            s.routes = nr;
            s.captured = np;
            s.proxy_arp_active = g;
        });
        if !ready {
            continue;
        }
        if client.is_none() {
            if Instant::now() < next_try {
                continue;
            }
            match connect_and_sync(&socket, &mirror, &routes, &proxy, gate) {
                Ok(c) => {
                    let (node, boot, v) = (c.node.clone(), c.boot_id, c.snapshot_version);
                    set(&|s| {
                        s.connected = true;
                        s.dataplane_node = Some(node.clone());
                        s.dataplane_boot_id = Some(boot);
                        s.snapshot_version = v;
                        s.full_syncs += 1;
                        s.last_error = None;
                    });
                    log::info!(
                        "dataplane {node} synced: {n} endpoints, {nr} underlay routes, snapshot {v}"
                    );
                    client = Some(c);
                    // The full sync carried the batch already; announce what
                    // we capture (the dataplane may have restarted).
                    batch.clear();
                    if gate {
                        commands = proxy.iter().map(|ip| garp_for(&garp, *ip)).collect();
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    set(&|s| {
                        s.connected = false;
                        s.last_error = Some(msg.clone());
                    });
                    next_try = Instant::now() + Duration::from_secs(1);
                    continue;
                }
            }
        }
        let Some(c) = client.as_mut() else { continue };
        let mut result = Ok(0);
        if !batch.is_empty() {
            result = c.changes(batch);
        } else if commands.is_empty() {
            // Idle (or only non-FIB ops): refresh the alarm, prove the session.
            result = c.ping().map(|_| 0);
        }
        for cmd in commands {
            if result.is_ok() {
                result = c.command(cmd);
            }
        }
        if result.is_ok() {
            note_alarms(c, &status, &mut alarms_seen);
            if note_stalls(c, &status, &mut stalls_seen) {
                gate = false;
                set(&|s| s.proxy_arp_active = false);
                if let Some(w) = &stall {
                    w.report(&format!(
                        "dataplane {} stalled and closed its proxy-ARP gate",
                        c.node
                    ));
                }
            }
        }
        match result {
            Ok(v) => {
                let latency = oldest.map(|t| t.elapsed().as_micros() as u64);
                set(&|s| {
                    if v > 0 {
                        s.snapshot_version = v;
                        s.deltas += 1;
                    }
                    if latency.is_some() {
                        s.last_change_to_ack_us = latency;
                    }
                });
            }
            Err(e) => {
                // Reconnect and resync from the mirror: nothing accepted is lost.
                log::warn!("dataplane feed: {e}; reconnecting");
                let msg = e.to_string();
                set(&|s| {
                    s.connected = false;
                    s.last_error = Some(msg.clone());
                });
                client = None;
                next_try = Instant::now();
            }
        }
    }
}

/// How often an idle connected feeder pings the dataplane.
const PING_EVERY: Duration = Duration::from_secs(1);

/// Copies the dataplane's duplicate-holder alarm into the status and logs
/// new alarms loudly, naming the IPs and MACs.
fn note_alarms(c: &FeedClient, status: &SharedStatus, seen: &mut (u64, u64)) {
    let count = c.duplicate_holder_alarms;
    if let Ok(mut s) = status.lock() {
        s.duplicate_holder_alarms = count;
        s.duplicate_holders = c.duplicate_holders.clone();
    }
    if seen.0 != c.boot_id {
        // A (re)started dataplane counts from zero.
        *seen = (c.boot_id, 0);
    }
    if count > seen.1 {
        let who: Vec<String> = c
            .duplicate_holders
            .iter()
            .map(|h| format!("{} claimed by {} on {}", h.ip, h.mac, h.port))
            .collect();
        log::error!(
            "DUPLICATE PROXY-ARP HOLDER on dataplane {}: {} new alarm(s), {count} total: {}; \
             another router (or host) answers ARP for a /32 this node captures",
            c.node,
            count - seen.1,
            if who.is_empty() {
                "offender not recorded".to_string()
            } else {
                who.join(", ")
            }
        );
        seen.1 = count;
    }
}

/// Copies the dataplane's stall count into the status; true when it went
/// up since the last ack of the same dataplane run (a restarted dataplane
/// counts from zero and starts with its gate closed: the full sync decides).
fn note_stalls(c: &FeedClient, status: &SharedStatus, seen: &mut (u64, u64)) -> bool {
    if let Ok(mut s) = status.lock() {
        s.dataplane_stalls = c.stalls;
    }
    if seen.0 != c.boot_id {
        *seen = (c.boot_id, c.stalls);
        return false;
    }
    let new = c.stalls > seen.1;
    seen.1 = c.stalls;
    new
}

fn garp_for(g: &GarpOptions, ip: Ipv4Addr) -> FeedCommand {
    FeedCommand::GratuitousArp {
        port: g.port.clone(),
        ip,
        count: g.count,
    }
}

fn connect_and_sync(
    socket: &std::path::Path,
    mirror: &BTreeMap<Ipv4Addr, EndpointAction>,
    routes: &BTreeMap<Ipv4Prefix, Vec<NextHop>>,
    proxy: &BTreeSet<Ipv4Addr>,
    gate: bool,
) -> Result<FeedClient, cer_shared::feed_client::FeedError> {
    // This session owns the capture gate: the dataplane closes it if we die.
    let mut c = FeedClient::connect_with(socket, "cer-control", true)?;
    let mut changes: Vec<FibChange> = mirror
        .iter()
        .map(|(ip, a)| FibChange::EndpointSet {
            ip: *ip,
            action: a.clone(),
        })
        .collect();
    changes.extend(routes.iter().map(|(prefix, nexthops)| FibChange::RouteSet {
        prefix: *prefix,
        nexthops: nexthops.clone(),
    }));
    changes.extend(proxy.iter().map(|ip| FibChange::ProxyArpSet { ip: *ip }));
    changes.push(FibChange::ProxyArpActive { active: gate });
    c.full_sync(changes)?;
    Ok(c)
}
