//! Underlay routes learned over BGP unnumbered (RFC 5549/8950): an IPv4
//! prefix whose best path came from an interface neighbor goes into the
//! dataplane as (port, peer link-local address) next hops, which the
//! dataplane resolves to the peer's MAC through its IPv6 neighbor table (the
//! userspace form of the kernel's 169.254.0.1 onlink trick). Equal paths
//! from several interface neighbors (a leaf with two spines) make an ECMP
//! group, as FRR's `maximum-paths` with `bgp bestpath as-path multipath-relax`.

use cer_bgp::decision::med;
use cer_bgp::route::{NextHop, Path, PeerId};
use cer_shared::feed;
use serde::Serialize;
use std::net::{IpAddr, Ipv6Addr};

/// One next hop of an underlay route, with where it came from (for `explain`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Via {
    /// The dataplane port the packets leave on.
    pub port: String,
    /// The peer's link-local address on that port.
    pub link_local: Ipv6Addr,
    /// The kernel interface the BGP session runs on.
    pub interface: String,
    /// The BGP session the path came from.
    pub peer: String,
}

impl Via {
    pub fn next_hop(&self) -> feed::NextHop {
        feed::NextHop {
            port: self.port.clone(),
            gateway: None,
            gateway6: Some(self.link_local),
        }
    }
}

fn is_link_local(a: &Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// The link-local gateway of a path from a directly connected (interface)
/// peer: the RFC 2545 link-local next hop; a link-local address sent in the
/// global field (what peers without a global address send); else the peer's
/// own session address (as FRR does for interface peers).
pub fn gateway6(path: &Path) -> Option<Ipv6Addr> {
    match path.attrs.next_hop {
        NextHop::V6 {
            link_local: Some(ll),
            ..
        } if is_link_local(&ll) => Some(ll),
        NextHop::V6 { global, .. } if is_link_local(&global) => Some(global),
        _ => match path.source.peer_addr {
            IpAddr::V6(a) if is_link_local(&a) => Some(a),
            _ => None,
        },
    }
}

/// Paths equal for ECMP: the decision process up to the IGP cost, with the
/// AS path compared by length only (multipath-relax: two spines in
/// different ASes still share the load).
pub fn multipath_equal(a: &Path, b: &Path) -> bool {
    a.local_pref() == b.local_pref()
        && a.attrs.as_path_len() == b.attrs.as_path_len()
        && a.attrs.origin == b.attrs.origin
        && med(a) == med(b)
        && a.source.ibgp == b.source.ibgp
}

/// The next hops of a prefix from its candidate paths: `None` unless the
/// best path came from an interface neighbor (`port_of` gives the
/// interface and dataplane port of such a peer). At most `max_paths`,
/// sorted, each (port, link-local) once.
pub fn route(
    paths: &[Path],
    best: Option<usize>,
    max_paths: usize,
    port_of: impl Fn(PeerId) -> Option<(String, String)>,
) -> Option<Vec<Via>> {
    let best = paths.get(best?)?;
    let via = |p: &Path| -> Option<Via> {
        let (interface, port) = port_of(p.source.peer)?;
        Some(Via {
            port,
            link_local: gateway6(p)?,
            interface,
            peer: p.source.peer_addr.to_string(),
        })
    };
    let first = via(best)?;
    let mut out = vec![first];
    for p in paths {
        if std::ptr::eq(p, best) || !multipath_equal(best, p) {
            continue;
        }
        if let Some(v) = via(p) {
            out.push(v);
        }
    }
    out.sort();
    out.dedup_by(|a, b| a.port == b.port && a.link_local == b.link_local);
    out.truncate(max_paths.max(1));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cer_bgp::route::{AsSegment, AsSegmentKind, PathAttrs, PathSource};
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    fn path(peer: u32, peer_as: u32, nh: NextHop, as_path: &[u32], lp: u32) -> Path {
        let mut a = PathAttrs::local(nh);
        a.as_path = vec![AsSegment {
            kind: AsSegmentKind::Sequence,
            asns: as_path.to_vec(),
        }];
        a.local_pref = Some(lp);
        Path::new(
            Arc::new(a),
            Arc::new(PathSource {
                peer: PeerId(peer),
                peer_addr: IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, peer as u16)),
                router_id: Ipv4Addr::new(10, 0, 0, peer as u8),
                peer_as,
                ibgp: false,
                rr_client: false,
            }),
        )
    }

    fn ll(x: u16) -> Ipv6Addr {
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, x)
    }

    fn v6(global: Ipv6Addr, link_local: Option<Ipv6Addr>) -> NextHop {
        NextHop::V6 { global, link_local }
    }

    fn ports(id: PeerId) -> Option<(String, String)> {
        match id.0 {
            1 => Some(("cer-swp1".into(), "swp1".into())),
            2 => Some(("cer-swp2".into(), "swp2".into())),
            _ => None,
        }
    }

    #[test]
    fn two_spines_make_an_ecmp_group() {
        let paths = vec![
            path(1, 65000, v6(ll(0x11), None), &[65000, 65003], 100),
            path(2, 65100, v6(ll(0x22), None), &[65100, 65003], 100),
        ];
        let r = route(&paths, Some(0), 16, ports).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].port.as_str(), r[0].link_local), ("swp1", ll(0x11)));
        assert_eq!((r[1].port.as_str(), r[1].link_local), ("swp2", ll(0x22)));
        assert_eq!(
            r[0].next_hop(),
            feed::NextHop {
                port: "swp1".into(),
                gateway: None,
                gateway6: Some(ll(0x11))
            }
        );
        // maximum_paths = 1: the best only.
        assert_eq!(route(&paths, Some(1), 1, ports).unwrap().len(), 1);
    }

    #[test]
    fn a_longer_as_path_is_not_equal() {
        let paths = vec![
            path(1, 65000, v6(ll(0x11), None), &[65000, 65003], 100),
            path(2, 65000, v6(ll(0x22), None), &[65000, 65009, 65003], 100),
        ];
        assert_eq!(route(&paths, Some(0), 16, ports).unwrap().len(), 1);
    }

    #[test]
    fn the_link_local_field_wins_then_a_link_local_global_then_the_peer() {
        let g: Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert_eq!(
            gateway6(&path(1, 1, v6(g, Some(ll(5))), &[1], 100)),
            Some(ll(5))
        );
        assert_eq!(
            gateway6(&path(1, 1, v6(ll(6), None), &[1], 100)),
            Some(ll(6))
        );
        assert_eq!(gateway6(&path(1, 1, v6(g, None), &[1], 100)), Some(ll(1)));
        assert_eq!(
            gateway6(&path(
                3,
                1,
                NextHop::V4 {
                    addr: Ipv4Addr::new(10, 0, 0, 1)
                },
                &[1],
                100
            )),
            Some(ll(3))
        );
    }

    #[test]
    fn a_best_path_from_a_numbered_peer_is_not_an_underlay_route() {
        let paths = vec![
            path(7, 65000, v6(ll(0x77), None), &[65000], 200),
            path(1, 65000, v6(ll(0x11), None), &[65000], 100),
        ];
        assert!(route(&paths, Some(0), 16, ports).is_none());
        assert!(route(&paths, None, 16, ports).is_none());
    }
}
