//! BGP unnumbered (FRR's `neighbor IFACE interface`): who the peer on an
//! interface is. One watcher thread per interface reads ICMPv6 on it (a raw
//! socket bound to the device), reports Router Advertisements (the peer's
//! link-local address) and the interface's link state as `LinkEvent`s, and
//! sends Router Solicitations while it has heard no RA. `Unnumbered` (owned
//! by the control state, no I/O) turns those events, inbound connections and time into
//! `PeerChange`s: start a session to this link-local address, or stop it.
//!
//! RAs reach the interface through the dataplane, which validates ND (hop
//! limit 255, lengths, options) before punting it to the TAP; the watcher
//! only takes well-formed RAs from link-local sources.

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ICMPV6_ROUTER_SOLICIT: u8 = 133;
const ICMPV6_ROUTER_ADVERT: u8 = 134;
/// The RA header: type, code, checksum, hop limit, flags, lifetime, reachable, retrans.
const RA_LEN: usize = 16;
/// How often the watcher looks at the link and solicits while it hears no RA.
const POLL: Duration = Duration::from_millis(250);
const SOLICIT_EVERY: Duration = Duration::from_secs(4);
/// Below this, an expiry would trip on one late RA.
const MIN_EXPIRY: Duration = Duration::from_secs(3);
/// Intervals kept to estimate the peer's RA interval (the largest is used,
/// so an RA answering our solicitation does not shorten it).
const INTERVALS: usize = 3;

/// What a watcher saw on its interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// A Router Advertisement from `addr` (link-local, on `ifindex`).
    RouterAdvert {
        iface: usize,
        addr: Ipv6Addr,
        ifindex: u32,
    },
    /// The interface is (or is no longer) usable: it exists, is up and has carrier.
    Link {
        iface: usize,
        up: bool,
        ifindex: Option<u32>,
    },
}

/// How the peer's address was learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Learned {
    RouterAdvert,
    /// It connected to us from its link-local address before we heard an RA.
    Connection,
}

/// The peer of one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub addr: Ipv6Addr,
    pub ifindex: u32,
    pub learned: Learned,
    pub last_ra: Option<Instant>,
    intervals: [Option<Duration>; INTERVALS],
}

impl Peer {
    /// The session address: the link-local address with the interface as scope.
    pub fn socket(&self) -> SocketAddr {
        SocketAddr::V6(SocketAddrV6::new(self.addr, 179, 0, self.ifindex))
    }

    /// The peer's RA interval as observed (the largest of the last few).
    pub fn ra_interval(&self) -> Option<Duration> {
        self.intervals.iter().flatten().max().copied()
    }
}

/// One unnumbered neighbor's interface.
#[derive(Debug, Clone)]
pub struct Iface {
    pub name: String,
    /// Index of the neighbor in `bgp.neighbor`.
    pub neighbor: usize,
    pub ra_timeout: Duration,
    pub ifindex: Option<u32>,
    pub link_up: bool,
    pub peer: Option<Peer>,
    /// Why the last peer went away (for `show bgp summary`).
    pub last_loss: Option<String>,
}

/// What the control state must do with the speaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerChange {
    /// Start a session to this peer of interface `iface`.
    Up { iface: usize, peer: Peer },
    /// Stop the session of interface `iface` (the peer is gone or changed).
    Down { iface: usize, reason: String },
}

/// The peers of every unnumbered interface.
#[derive(Debug, Default)]
pub struct Unnumbered {
    pub ifaces: Vec<Iface>,
}

impl Unnumbered {
    pub fn add(&mut self, name: &str, neighbor: usize, ra_timeout: Duration) -> usize {
        self.ifaces.push(Iface {
            name: name.to_string(),
            neighbor,
            ra_timeout,
            ifindex: None,
            link_up: false,
            peer: None,
            last_loss: None,
        });
        self.ifaces.len() - 1
    }

    fn lose(&mut self, iface: usize, reason: String, out: &mut Vec<PeerChange>) {
        let i = &mut self.ifaces[iface];
        if i.peer.take().is_some() {
            i.last_loss = Some(reason.clone());
            out.push(PeerChange::Down { iface, reason });
        }
    }

    pub fn on_event(&mut self, ev: LinkEvent, now: Instant) -> Vec<PeerChange> {
        let mut out = Vec::new();
        match ev {
            LinkEvent::Link { iface, up, ifindex } => {
                let Some(i) = self.ifaces.get_mut(iface) else {
                    return out;
                };
                i.link_up = up;
                i.ifindex = ifindex;
                if !up {
                    let name = i.name.clone();
                    self.lose(iface, format!("interface {name} went down"), &mut out);
                }
            }
            LinkEvent::RouterAdvert {
                iface,
                addr,
                ifindex,
            } => {
                let Some(i) = self.ifaces.get_mut(iface) else {
                    return out;
                };
                i.ifindex = Some(ifindex);
                i.link_up = true;
                match &mut i.peer {
                    Some(p) if p.addr == addr && p.ifindex == ifindex => {
                        if let Some(last) = p.last_ra {
                            p.intervals.rotate_right(1);
                            p.intervals[0] = Some(now.saturating_duration_since(last));
                        }
                        p.last_ra = Some(now);
                        p.learned = Learned::RouterAdvert;
                    }
                    _ => {
                        let name = i.name.clone();
                        self.lose(
                            iface,
                            format!("a different peer ({addr}) advertises on {name}"),
                            &mut out,
                        );
                        let peer = Peer {
                            addr,
                            ifindex,
                            learned: Learned::RouterAdvert,
                            last_ra: Some(now),
                            intervals: [None; INTERVALS],
                        };
                        self.ifaces[iface].peer = Some(peer.clone());
                        out.push(PeerChange::Up { iface, peer });
                    }
                }
            }
        }
        out
    }

    /// An inbound connection from a link-local address nobody is configured
    /// for: if it came in on an unnumbered interface that has no peer yet,
    /// that is the peer (it heard our RA before we heard its).
    pub fn on_connection(&mut self, remote: SocketAddr) -> Option<PeerChange> {
        let SocketAddr::V6(v6) = remote else {
            return None;
        };
        if v6.ip().segments()[0] & 0xffc0 != 0xfe80 || v6.scope_id() == 0 {
            return None;
        }
        let iface = self
            .ifaces
            .iter()
            .position(|i| i.ifindex == Some(v6.scope_id()) && i.peer.is_none())?;
        let peer = Peer {
            addr: *v6.ip(),
            ifindex: v6.scope_id(),
            learned: Learned::Connection,
            last_ra: None,
            intervals: [None; INTERVALS],
        };
        self.ifaces[iface].peer = Some(peer.clone());
        Some(PeerChange::Up { iface, peer })
    }

    /// When an RA-learned peer counts as gone: 3 observed intervals (at
    /// least `MIN_EXPIRY`), or `ra_timeout` until an interval is known.
    pub fn expiry(i: &Iface) -> Option<Instant> {
        let p = i.peer.as_ref()?;
        if i.ra_timeout.is_zero() || p.learned != Learned::RouterAdvert {
            return None;
        }
        let wait = match p.ra_interval() {
            Some(iv) => (iv * 3).max(MIN_EXPIRY),
            None => i.ra_timeout,
        };
        Some(p.last_ra? + wait)
    }

    /// Peers whose RAs stopped.
    pub fn tick(&mut self, now: Instant) -> Vec<PeerChange> {
        let mut out = Vec::new();
        for iface in 0..self.ifaces.len() {
            let i = &self.ifaces[iface];
            if let Some(t) = Self::expiry(i) {
                if now >= t {
                    let since = i
                        .peer
                        .as_ref()
                        .and_then(|p| p.last_ra)
                        .map(|l| now.saturating_duration_since(l).as_secs_f32())
                        .unwrap_or_default();
                    let reason = format!("no Router Advertisement on {} for {since:.1} s", i.name);
                    self.lose(iface, reason, &mut out);
                }
            }
        }
        out
    }
}

/// The interface's index and whether it is usable (up, with carrier).
fn link_state(name: &str) -> (bool, Option<u32>) {
    let read = |f: &str| std::fs::read_to_string(format!("/sys/class/net/{name}/{f}")).ok();
    let ifindex = read("ifindex").and_then(|s| s.trim().parse().ok());
    let flags = read("flags")
        .and_then(|s| u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok())
        .unwrap_or(0);
    let carrier = read("carrier").is_some_and(|c| c.trim() == "1");
    (ifindex.is_some() && flags & 1 != 0 && carrier, ifindex)
}

/// A raw ICMPv6 socket on `name`, used through `UdpSocket`'s datagram calls.
fn open_socket(name: &str, ifindex: u32) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
    s.bind_device(Some(name.as_bytes()))?;
    // ND messages must carry hop limit 255 (RFC 4861 6.1.1).
    s.set_multicast_hops_v6(255)?;
    s.set_unicast_hops_v6(255)?;
    s.set_multicast_if_v6(ifindex)?;
    s.set_read_timeout(Some(POLL))?;
    Ok(s.into())
}

/// The source of a well-formed RA in `pkt` (ICMPv6 from the raw socket).
pub fn parse_router_advert(pkt: &[u8], from: SocketAddr) -> Option<(Ipv6Addr, u32)> {
    let SocketAddr::V6(v6) = from else {
        return None;
    };
    let ll = v6.ip().segments()[0] & 0xffc0 == 0xfe80;
    (pkt.len() >= RA_LEN && pkt[0] == ICMPV6_ROUTER_ADVERT && pkt[1] == 0 && ll)
        .then(|| (*v6.ip(), v6.scope_id()))
}

/// Watches interface `name` until `stop`: link changes and RAs go to `tx`.
pub fn spawn_watcher(
    iface: usize,
    name: String,
    tx: tokio::sync::mpsc::Sender<LinkEvent>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(format!("unnum-{name}"))
        .spawn(move || {
            let mut sock: Option<std::net::UdpSocket> = None;
            let mut last: Option<(bool, Option<u32>)> = None;
            let mut last_ra: Option<Instant> = None;
            let mut last_rs: Option<Instant> = None;
            let mut warned = false;
            let mut buf = [0u8; 1500];
            while !stop.load(Ordering::Relaxed) {
                let (up, ifindex) = link_state(&name);
                if last != Some((up, ifindex)) {
                    last = Some((up, ifindex));
                    sock = None;
                    if tx
                        .blocking_send(LinkEvent::Link { iface, up, ifindex })
                        .is_err()
                    {
                        return;
                    }
                }
                let (true, Some(idx)) = (up, ifindex) else {
                    std::thread::sleep(POLL);
                    continue;
                };
                if sock.is_none() {
                    match open_socket(&name, idx) {
                        Ok(s) => {
                            sock = Some(s);
                            last_rs = None;
                            warned = false;
                        }
                        Err(e) => {
                            if !warned {
                                log::warn!("unnumbered {name}: ICMPv6 socket: {e}; retrying");
                                warned = true;
                            }
                            std::thread::sleep(POLL);
                            continue;
                        }
                    }
                }
                let Some(s) = &sock else { continue };
                let quiet = last_ra.is_none_or(|t| t.elapsed() > SOLICIT_EVERY * 2);
                if quiet && last_rs.is_none_or(|t| t.elapsed() >= SOLICIT_EVERY) {
                    last_rs = Some(Instant::now());
                    let rs = [ICMPV6_ROUTER_SOLICIT, 0, 0, 0, 0, 0, 0, 0];
                    let all_routers =
                        SocketAddrV6::new(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2), 0, 0, idx);
                    if let Err(e) = s.send_to(&rs, all_routers) {
                        log::debug!("unnumbered {name}: router solicitation: {e}");
                    }
                }
                match s.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        if let Some((addr, scope)) = parse_router_advert(&buf[..n], from) {
                            last_ra = Some(Instant::now());
                            let ifindex = if scope == 0 { idx } else { scope };
                            if tx
                                .blocking_send(LinkEvent::RouterAdvert {
                                    iface,
                                    addr,
                                    ifindex,
                                })
                                .is_err()
                            {
                                return;
                            }
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => {
                        log::debug!("unnumbered {name}: receive: {e}; reopening");
                        sock = None;
                        std::thread::sleep(POLL);
                    }
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ll(x: u16) -> Ipv6Addr {
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, x)
    }

    fn ra(addr: Ipv6Addr) -> LinkEvent {
        LinkEvent::RouterAdvert {
            iface: 0,
            addr,
            ifindex: 7,
        }
    }

    fn table() -> Unnumbered {
        let mut u = Unnumbered::default();
        u.add("swp1", 0, Duration::from_secs(30));
        u
    }

    #[test]
    fn an_ra_starts_a_session_and_repeats_keep_it() {
        let mut u = table();
        let t0 = Instant::now();
        let up = u.on_event(ra(ll(1)), t0);
        assert!(
            matches!(&up[..], [PeerChange::Up { iface: 0, peer }] if peer.addr == ll(1) && peer.socket().to_string() == "[fe80::1%7]:179")
        );
        assert!(u
            .on_event(ra(ll(1)), t0 + Duration::from_secs(2))
            .is_empty());
        assert!(u.tick(t0 + Duration::from_secs(5)).is_empty());
    }

    #[test]
    fn silence_for_three_intervals_takes_the_peer_down() {
        let mut u = table();
        let t0 = Instant::now();
        u.on_event(ra(ll(1)), t0);
        u.on_event(ra(ll(1)), t0 + Duration::from_secs(1));
        u.on_event(ra(ll(1)), t0 + Duration::from_secs(2));
        // Interval 1 s: the floor of 3 s applies.
        assert!(u.tick(t0 + Duration::from_millis(4900)).is_empty());
        let down = u.tick(t0 + Duration::from_millis(5100));
        assert!(
            matches!(&down[..], [PeerChange::Down { iface: 0, reason }] if reason.contains("no Router Advertisement")),
            "{down:?}"
        );
        assert!(u.ifaces[0].peer.is_none());
        // A later RA brings it back.
        assert_eq!(u.on_event(ra(ll(1)), t0 + Duration::from_secs(9)).len(), 1);
    }

    #[test]
    fn an_answer_to_our_solicitation_does_not_shorten_the_interval() {
        let mut u = table();
        let t0 = Instant::now();
        u.on_event(ra(ll(1)), t0);
        u.on_event(ra(ll(1)), t0 + Duration::from_secs(10));
        u.on_event(ra(ll(1)), t0 + Duration::from_millis(10_100));
        assert_eq!(
            u.ifaces[0].peer.as_ref().unwrap().ra_interval(),
            Some(Duration::from_secs(10))
        );
        assert!(u.tick(t0 + Duration::from_secs(35)).is_empty());
        assert_eq!(u.tick(t0 + Duration::from_secs(41)).len(), 1);
    }

    #[test]
    fn one_ra_only_uses_the_configured_timeout() {
        let mut u = table();
        let t0 = Instant::now();
        u.on_event(ra(ll(1)), t0);
        assert!(u.tick(t0 + Duration::from_secs(29)).is_empty());
        assert_eq!(u.tick(t0 + Duration::from_secs(31)).len(), 1);
    }

    #[test]
    fn link_down_takes_the_peer_down_at_once() {
        let mut u = table();
        let t0 = Instant::now();
        u.on_event(ra(ll(1)), t0);
        let down = u.on_event(
            LinkEvent::Link {
                iface: 0,
                up: false,
                ifindex: Some(7),
            },
            t0,
        );
        assert!(
            matches!(&down[..], [PeerChange::Down { reason, .. }] if reason.contains("went down"))
        );
        // Down again: nothing more to do.
        assert!(u
            .on_event(
                LinkEvent::Link {
                    iface: 0,
                    up: false,
                    ifindex: None
                },
                t0
            )
            .is_empty());
    }

    #[test]
    fn a_new_peer_replaces_the_old_one() {
        let mut u = table();
        let t0 = Instant::now();
        u.on_event(ra(ll(1)), t0);
        let ch = u.on_event(ra(ll(2)), t0);
        assert!(
            matches!(&ch[..], [PeerChange::Down { .. }, PeerChange::Up { peer, .. }] if peer.addr == ll(2))
        );
    }

    #[test]
    fn a_connection_teaches_the_peer_only_on_an_unnumbered_interface_without_one() {
        let mut u = table();
        u.on_event(
            LinkEvent::Link {
                iface: 0,
                up: true,
                ifindex: Some(7),
            },
            Instant::now(),
        );
        let other_if: SocketAddr = "[fe80::9%8]:40000".parse().unwrap();
        assert!(u.on_connection(other_if).is_none());
        let global: SocketAddr = "[2001:db8::1]:40000".parse().unwrap();
        assert!(u.on_connection(global).is_none());
        let ok: SocketAddr = "[fe80::9%7]:40000".parse().unwrap();
        let ch = u.on_connection(ok).unwrap();
        assert!(
            matches!(&ch, PeerChange::Up { peer, .. } if peer.learned == Learned::Connection && peer.addr == ll(9))
        );
        // Learned by connection: no RA expiry.
        assert!(u
            .tick(Instant::now() + Duration::from_secs(3600))
            .is_empty());
        // The interface has its peer now.
        assert!(u
            .on_connection("[fe80::a%7]:40001".parse().unwrap())
            .is_none());
    }

    #[test]
    fn only_well_formed_router_adverts_from_link_local_sources_count() {
        let from: SocketAddr = "[fe80::1%3]:0".parse().unwrap();
        let mut pkt = [0u8; 24];
        pkt[0] = ICMPV6_ROUTER_ADVERT;
        assert_eq!(parse_router_advert(&pkt, from), Some((ll(1), 3)));
        assert_eq!(parse_router_advert(&pkt[..10], from), None);
        let global: SocketAddr = "[2001:db8::1]:0".parse().unwrap();
        assert_eq!(parse_router_advert(&pkt, global), None);
        pkt[0] = 135;
        assert_eq!(parse_router_advert(&pkt, from), None);
        pkt[0] = ICMPV6_ROUTER_ADVERT;
        pkt[1] = 1;
        assert_eq!(parse_router_advert(&pkt, from), None);
    }
}
