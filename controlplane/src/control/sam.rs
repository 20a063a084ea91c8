//! The SAM ownership plane (DESIGN.md section 2): per-node marker routes give
//! liveness, a /32's owner is the best path among marker-valid paths, and the
//! RIB trap emits an ownership event with a path signature on every change.
//!
//! A path is marker-valid when it carries an identity community whose node's
//! marker route (a route carrying the marker community and that identity) is
//! in the Loc-RIB. Marker gone = owner dead = its paths are ignored.

use cer_bgp::decision::{self, DecisionConfig};
use cer_bgp::rib::Rib;
use cer_bgp::route::{Community, Ipv4Prefix, NextHop, Path, PeerId, Prefix};
use cer_bgp::route::{FastMap, FastSet};
use serde::Serialize;
use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;
use std::time::SystemTime;

/// Hash of what an ownership decision was made from: prefix, owner identity,
/// next hop, LOCAL_PREF, communities, originator and marker state. Capture
/// actions carry it; a changed signature makes a planned action stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct PathSignature(pub u64);

impl std::fmt::Display for PathSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The current owner of a /32.
#[derive(Debug, Clone)]
pub struct Owner {
    pub prefix: Ipv4Prefix,
    /// The owning node's identity community.
    pub identity: Community,
    /// Owned by this node.
    pub local: bool,
    /// Owned at this site: by this node or by one of `site_identities` (the
    /// /32 lives on this site's network: delivered here, never captured).
    pub site_local: bool,
    pub path: Path,
    pub signature: PathSignature,
    /// Why this path beat the runner-up (empty with one candidate).
    pub reason: String,
    pub since: SystemTime,
}

/// One RIB-trap event: the owner of `prefix` changed.
#[derive(Debug, Clone, Serialize)]
pub struct TrapEvent {
    pub seq: u64,
    pub prefix: Ipv4Prefix,
    pub old: Option<OwnerView>,
    pub new: Option<OwnerView>,
}

/// What operators and the capture plane see of an owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OwnerView {
    pub identity: String,
    pub local: bool,
    pub site_local: bool,
    pub next_hop: String,
    pub local_pref: u32,
    pub originator: Ipv4Addr,
    pub signature: String,
}

impl Owner {
    pub fn view(&self) -> OwnerView {
        OwnerView {
            identity: self.identity.to_string(),
            local: self.local,
            site_local: self.site_local,
            next_hop: self.path.attrs.next_hop.to_string(),
            local_pref: self.path.local_pref(),
            originator: self.path.originator(),
            signature: self.signature.to_string(),
        }
    }
}

/// Marker state of one identity.
#[derive(Debug, Clone, Default)]
struct Marker {
    /// Marker prefixes currently carrying this identity.
    prefixes: FastSet<Ipv4Prefix>,
}

pub struct Sam {
    pub identity: Community,
    /// The other CERs of this site (`sam.site_identities`).
    pub site_identities: Vec<Community>,
    pub marker_community: Community,
    pub pool: Vec<Ipv4Prefix>,
    decision: DecisionConfig,
    owners: BTreeMap<Ipv4Prefix, Owner>,
    markers: FastMap<Community, Marker>,
    /// Marker prefix -> identities its paths carry (to see what changed).
    marker_prefixes: FastMap<Ipv4Prefix, FastSet<Community>>,
    /// Identity -> endpoint prefixes with a candidate path carrying it.
    by_identity: FastMap<Community, FastSet<Ipv4Prefix>>,
    seq: u64,
}

impl Sam {
    pub fn new(
        identity: Community,
        marker_community: Community,
        pool: Vec<Ipv4Prefix>,
        decision: DecisionConfig,
    ) -> Self {
        Sam {
            identity,
            site_identities: Vec::new(),
            marker_community,
            pool,
            decision,
            owners: BTreeMap::new(),
            markers: FastMap::default(),
            marker_prefixes: FastMap::default(),
            by_identity: FastMap::default(),
            seq: 0,
        }
    }

    /// Ownership changes (trap events) since start.
    pub fn changes(&self) -> u64 {
        self.seq
    }

    pub fn in_pool(&self, p: &Ipv4Prefix) -> bool {
        p.len() == 32 && self.pool.iter().any(|pool| pool.contains(p.addr()))
    }

    pub fn owners(&self) -> impl Iterator<Item = &Owner> {
        self.owners.values()
    }

    pub fn owner(&self, p: &Ipv4Prefix) -> Option<&Owner> {
        self.owners.get(p)
    }

    /// Is the marker of `identity` in the Loc-RIB?
    pub fn marker_present(&self, identity: Community) -> bool {
        self.markers
            .get(&identity)
            .is_some_and(|m| !m.prefixes.is_empty())
    }

    /// The LOCAL_PREF `identity`'s marker route carries (the highest, if
    /// several paths carry its marker); None while its marker is absent.
    /// Cloud pairs advertise their capture preference this way (`pair`).
    pub fn marker_preference(&self, rib: &Rib, identity: Community) -> Option<u32> {
        let m = self.markers.get(&identity)?;
        m.prefixes
            .iter()
            .flat_map(|p| rib.paths(&Prefix::V4(*p)))
            .filter(|p| {
                p.attrs.has_community(self.marker_community)
                    && self.identity_of(p) == Some(identity)
            })
            .map(|p| p.local_pref())
            .max()
    }

    pub fn live_identities(&self) -> Vec<(Community, Vec<Ipv4Prefix>)> {
        let mut v: Vec<_> = self
            .markers
            .iter()
            .filter(|(_, m)| !m.prefixes.is_empty())
            .map(|(c, m)| {
                let mut p: Vec<_> = m.prefixes.iter().copied().collect();
                p.sort();
                (*c, p)
            })
            .collect();
        v.sort();
        v
    }

    /// The identity community a path carries (the first that is neither the
    /// marker community nor a well-known one).
    pub fn identity_of(&self, p: &Path) -> Option<Community> {
        p.attrs
            .communities
            .iter()
            .copied()
            .find(|c| *c != self.marker_community && c.0 >> 16 != 0xffff && c.0 >> 16 != 0)
    }

    /// Is this path valid for ownership: its identity's marker is present?
    pub fn marker_valid(&self, p: &Path) -> bool {
        self.identity_of(p)
            .is_some_and(|id| self.marker_present(id))
    }

    /// Re-evaluates after the candidate paths of `prefix` changed in `rib`.
    /// Returns the ownership changes (RIB trap events).
    pub fn on_prefix_change(&mut self, rib: &Rib, prefix: &Prefix) -> Vec<TrapEvent> {
        let Prefix::V4(p4) = prefix else {
            return Vec::new();
        };
        let mut events = Vec::new();
        // Marker bookkeeping first: a marker appearing or vanishing re-evaluates
        // every endpoint of the identities it carries.
        let has_marker = rib
            .paths(prefix)
            .iter()
            .any(|p| p.attrs.has_community(self.marker_community));
        if !has_marker && !self.marker_prefixes.contains_key(p4) {
            // The common case (an endpoint or another route): no marker bookkeeping.
            // An owner outside the pool: the pool shrank (a reload), so the
            // /32 is no endpoint any more and its owner goes.
            return if self.in_pool(p4) || self.owners.contains_key(p4) {
                self.reevaluate(rib, *p4).into_iter().collect()
            } else {
                events
            };
        }
        let marker_ids: FastSet<Community> = rib
            .paths(prefix)
            .iter()
            .filter(|p| p.attrs.has_community(self.marker_community))
            .filter_map(|p| self.identity_of(p))
            .collect();
        let old_ids = self.marker_prefixes.get(p4).cloned().unwrap_or_default();
        if marker_ids != old_ids {
            let mut touched = Vec::new();
            for id in old_ids.difference(&marker_ids) {
                if let Some(m) = self.markers.get_mut(id) {
                    m.prefixes.remove(p4);
                    if m.prefixes.is_empty() {
                        touched.push(*id);
                    }
                }
            }
            for id in marker_ids.difference(&old_ids) {
                let m = self.markers.entry(*id).or_default();
                if m.prefixes.is_empty() {
                    touched.push(*id);
                }
                m.prefixes.insert(*p4);
            }
            if marker_ids.is_empty() {
                self.marker_prefixes.remove(p4);
            } else {
                self.marker_prefixes.insert(*p4, marker_ids);
            }
            for id in touched {
                let prefixes: Vec<Ipv4Prefix> = self
                    .by_identity
                    .get(&id)
                    .map(|s| s.iter().copied().collect())
                    .unwrap_or_default();
                for ep in prefixes {
                    events.extend(self.reevaluate(rib, ep));
                }
            }
        }
        if self.in_pool(p4) || self.owners.contains_key(p4) {
            events.extend(self.reevaluate(rib, *p4));
        }
        events
    }

    fn reevaluate(&mut self, rib: &Rib, p: Ipv4Prefix) -> Option<TrapEvent> {
        let prefix = Prefix::V4(p);
        let paths = rib.paths(&prefix);
        // Index every identity seen, valid or not, so a marker arriving later finds it.
        for path in paths {
            if let Some(id) = self.identity_of(path) {
                self.by_identity.entry(id).or_default().insert(p);
            }
        }
        // Marker routes are liveness, never endpoints, even inside a pool;
        // outside the pool nothing is an endpoint.
        let in_pool = self.in_pool(&p);
        let valid: Vec<Path> = paths
            .iter()
            .filter(|x| {
                in_pool && !x.attrs.has_community(self.marker_community) && self.marker_valid(x)
            })
            .cloned()
            .collect();
        let new = decision::explain(&valid, &self.decision).map(|ex| {
            let path = valid[ex.best].clone();
            let identity = self.identity_of(&path).unwrap_or(Community(0));
            let signature = signature(&p, identity, &path, true);
            let local = path.source.peer == PeerId::LOCAL || identity == self.identity;
            Owner {
                prefix: p,
                identity,
                local,
                site_local: local || self.site_identities.contains(&identity),
                path,
                signature,
                reason: if ex.runner_up.is_some() {
                    ex.reason
                } else {
                    String::new()
                },
                since: SystemTime::now(),
            }
        });
        let old = self.owners.get(&p);
        let changed = match (old, &new) {
            (None, None) => false,
            (Some(o), Some(n)) => o.signature != n.signature,
            _ => true,
        };
        if !changed {
            // Same owner (keeps `since`), but the runner-up may have changed.
            if let (Some(n), Some(o)) = (new, self.owners.get_mut(&p)) {
                o.reason = n.reason;
            }
            return None;
        }
        self.seq += 1;
        let ev = TrapEvent {
            seq: self.seq,
            prefix: p,
            old: old.map(|o| o.view()),
            new: new.as_ref().map(|n| n.view()),
        };
        match new {
            Some(n) => {
                self.owners.insert(p, n);
            }
            None => {
                self.owners.remove(&p);
            }
        }
        if paths.is_empty() {
            for set in self.by_identity.values_mut() {
                set.remove(&p);
            }
        }
        Some(ev)
    }
}

/// The path signature of an ownership decision.
pub fn signature(
    prefix: &Ipv4Prefix,
    identity: Community,
    path: &Path,
    marker_present: bool,
) -> PathSignature {
    let mut h = DefaultHasher::new();
    prefix.hash(&mut h);
    identity.hash(&mut h);
    match path.attrs.next_hop {
        NextHop::V4 { addr } => addr.hash(&mut h),
        NextHop::V6 { global, link_local } => {
            global.hash(&mut h);
            link_local.hash(&mut h);
        }
    }
    path.local_pref().hash(&mut h);
    let mut cs = path.attrs.communities.clone();
    cs.sort();
    cs.hash(&mut h);
    path.originator().hash(&mut h);
    marker_present.hash(&mut h);
    PathSignature(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cer_bgp::route::{PathAttrs, PathSource};
    use std::collections::HashSet;
    use std::sync::Arc;

    const MARKER: Community = Community(65000 << 16 | 999);
    const A: Community = Community(65000 << 16 | 1001);
    const B: Community = Community(65000 << 16 | 1002);

    fn source(peer: u32, id: &str) -> Arc<PathSource> {
        Arc::new(PathSource {
            peer: PeerId(peer),
            peer_addr: id.parse::<Ipv4Addr>().unwrap().into(),
            router_id: id.parse().unwrap(),
            peer_as: 65000,
            ibgp: true,
            rr_client: false,
        })
    }

    fn attrs(nh: &str, lp: u32, communities: &[Community], originator: &str) -> Arc<PathAttrs> {
        let mut a = PathAttrs::local(NextHop::V4 {
            addr: nh.parse().unwrap(),
        });
        a.local_pref = Some(lp);
        a.communities = communities.to_vec();
        a.originator_id = Some(originator.parse().unwrap());
        Arc::new(a)
    }

    fn p(s: &str) -> Prefix {
        Prefix::V4(s.parse().unwrap())
    }

    struct World {
        rib: Rib,
        sam: Sam,
        rr: Arc<PathSource>,
    }

    impl World {
        fn new() -> Self {
            World {
                rib: Rib::new(DecisionConfig::default()),
                sam: Sam::new(
                    A,
                    MARKER,
                    vec!["10.77.60.0/24".parse().unwrap()],
                    DecisionConfig::default(),
                ),
                rr: source(1, "10.10.0.1"),
            }
        }
        fn set(&mut self, prefix: &str, a: Option<Arc<PathAttrs>>) -> Vec<TrapEvent> {
            self.set_from(self.rr.clone(), prefix, a)
        }
        fn set_from(
            &mut self,
            src: Arc<PathSource>,
            prefix: &str,
            a: Option<Arc<PathAttrs>>,
        ) -> Vec<TrapEvent> {
            self.rib.update(&src, p(prefix), a);
            self.sam.on_prefix_change(&self.rib, &p(prefix))
        }
    }

    #[test]
    fn owner_needs_its_marker() {
        let mut w = World::new();
        // Endpoint from node B, but B's marker is not there yet: no owner.
        let ev = w.set(
            "10.77.60.11/32",
            Some(attrs("10.10.0.3", 100, &[B], "10.10.0.3")),
        );
        assert!(ev.is_empty());
        assert!(w.sam.owner(&"10.77.60.11/32".parse().unwrap()).is_none());
        // B's marker arrives: B owns it.
        let ev = w.set(
            "10.255.0.3/32",
            Some(attrs("10.10.0.3", 100, &[MARKER, B], "10.10.0.3")),
        );
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].new.as_ref().unwrap().identity, "65000:1002");
        assert!(!ev[0].new.as_ref().unwrap().local);
        // Marker withdrawn: owner gone (paths ignored), one trap event.
        let ev = w.set("10.255.0.3/32", None);
        assert_eq!(ev.len(), 1);
        assert!(ev[0].new.is_none() && ev[0].old.is_some());
    }

    #[test]
    fn an_owner_among_the_site_identities_is_site_local_not_local() {
        let mut w = World::new();
        w.set(
            "10.255.0.3/32",
            Some(attrs("10.10.0.3", 100, &[MARKER, B], "10.10.0.3")),
        );
        w.set(
            "10.77.60.12/32",
            Some(attrs("10.10.0.3", 120, &[B], "10.10.0.3")),
        );
        let o = w.sam.owner(&"10.77.60.12/32".parse().unwrap()).unwrap();
        assert!(!o.local && !o.site_local, "B is another site by default");
        // B is the other CER of this site: the same owner, now site-local.
        w.sam.site_identities = vec![B];
        let ev = w.set(
            "10.77.60.12/32",
            Some(attrs("10.10.0.3", 121, &[B], "10.10.0.3")),
        );
        let new = ev[0].new.as_ref().unwrap();
        assert!(!new.local && new.site_local, "{new:?}");
    }

    #[test]
    fn marker_loss_moves_ownership_to_the_next_best() {
        let mut w = World::new();
        let local = source(0, "10.10.0.2");
        w.set_from(
            local.clone(),
            "10.255.0.2/32",
            Some(attrs("10.10.0.2", 100, &[MARKER, A], "10.10.0.2")),
        );
        w.set(
            "10.255.0.3/32",
            Some(attrs("10.10.0.3", 100, &[MARKER, B], "10.10.0.3")),
        );
        // B advertises with 200, we (A) with 100: B owns.
        w.set(
            "10.77.60.10/32",
            Some(attrs("10.10.0.3", 200, &[B], "10.10.0.3")),
        );
        let ev = w.set_from(
            local.clone(),
            "10.77.60.10/32",
            Some(attrs("10.10.0.2", 100, &[A], "10.10.0.2")),
        );
        assert!(ev.is_empty(), "B still owns: {ev:?}");
        let o = w.sam.owner(&"10.77.60.10/32".parse().unwrap()).unwrap();
        assert_eq!(o.identity, B);
        assert!(o.reason.contains("local-pref"), "{}", o.reason);
        // B's marker goes (B died): A owns, without any change to the /32's own paths.
        let ev = w.set("10.255.0.3/32", None);
        assert_eq!(ev.len(), 1);
        let new = ev[0].new.as_ref().unwrap();
        assert!(new.local);
        assert_eq!(new.identity, "65000:1001");
        assert_ne!(ev[0].old.as_ref().unwrap().signature, new.signature);
        // B comes back: B owns again.
        let ev = w.set(
            "10.255.0.3/32",
            Some(attrs("10.10.0.3", 100, &[MARKER, B], "10.10.0.3")),
        );
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].new.as_ref().unwrap().identity, "65000:1002");
    }

    #[test]
    fn signature_covers_what_matters() {
        let src = source(1, "10.10.0.1");
        let prefix: Ipv4Prefix = "10.77.60.10/32".parse().unwrap();
        let path =
            |nh: &str, lp, cs: &[Community]| Path::new(attrs(nh, lp, cs, "10.10.0.3"), src.clone());
        let base = signature(&prefix, B, &path("10.10.0.3", 100, &[B]), true);
        assert_eq!(
            base,
            signature(&prefix, B, &path("10.10.0.3", 100, &[B]), true)
        );
        assert_ne!(
            base,
            signature(&prefix, B, &path("10.10.0.4", 100, &[B]), true)
        );
        assert_ne!(
            base,
            signature(&prefix, B, &path("10.10.0.3", 200, &[B]), true)
        );
        assert_ne!(
            base,
            signature(
                &prefix,
                B,
                &path("10.10.0.3", 100, &[B, Community(7)]),
                true
            )
        );
        assert_ne!(
            base,
            signature(&prefix, B, &path("10.10.0.3", 100, &[B]), false)
        );
        // Community order does not matter.
        assert_eq!(
            signature(
                &prefix,
                B,
                &path("10.10.0.3", 100, &[B, Community(7)]),
                true
            ),
            signature(
                &prefix,
                B,
                &path("10.10.0.3", 100, &[Community(7), B]),
                true
            )
        );
    }

    /// A reload changes the pool: a /32 that left it loses its owner, one
    /// that entered it gets one, each with a trap event.
    #[test]
    fn a_changed_pool_is_decided_again() {
        let mut w = World::new();
        w.set(
            "10.255.0.3/32",
            Some(attrs("10.10.0.3", 100, &[MARKER, B], "10.10.0.3")),
        );
        w.set(
            "10.77.60.7/32",
            Some(attrs("10.10.0.3", 100, &[B], "10.10.0.3")),
        );
        w.set(
            "10.88.0.1/32",
            Some(attrs("10.10.0.3", 100, &[B], "10.10.0.3")),
        );
        assert!(w.sam.owner(&"10.77.60.7/32".parse().unwrap()).is_some());
        assert!(w.sam.owner(&"10.88.0.1/32".parse().unwrap()).is_none());
        w.sam.pool = vec!["10.88.0.0/24".parse().unwrap()];
        let gone = w.sam.on_prefix_change(&w.rib, &p("10.77.60.7/32"));
        let came = w.sam.on_prefix_change(&w.rib, &p("10.88.0.1/32"));
        assert_eq!(gone.len(), 1, "{gone:?}");
        assert_eq!(came.len(), 1, "{came:?}");
        assert!(w.sam.owner(&"10.77.60.7/32".parse().unwrap()).is_none());
        assert!(w.sam.owner(&"10.88.0.1/32".parse().unwrap()).is_some());
    }

    #[test]
    fn a_marker_inside_the_pool_is_not_an_endpoint() {
        let mut w = World::new();
        let ev = w.set(
            "10.77.60.200/32",
            Some(attrs("10.10.0.3", 100, &[MARKER, B], "10.10.0.3")),
        );
        assert!(ev.is_empty(), "{ev:?}");
        assert!(w.sam.marker_present(B));
        assert!(w.sam.owner(&"10.77.60.200/32".parse().unwrap()).is_none());
    }

    #[test]
    fn outside_pool_and_ipv6_are_not_endpoints() {
        let mut w = World::new();
        w.set(
            "10.255.0.3/32",
            Some(attrs("10.10.0.3", 100, &[MARKER, B], "10.10.0.3")),
        );
        assert!(w
            .set(
                "10.88.0.1/32",
                Some(attrs("10.10.0.3", 100, &[B], "10.10.0.3"))
            )
            .is_empty());
        assert!(w
            .set(
                "10.77.60.0/24",
                Some(attrs("10.10.0.3", 100, &[B], "10.10.0.3"))
            )
            .is_empty());
    }

    #[test]
    fn many_endpoints_follow_one_marker() {
        let mut w = World::new();
        w.set(
            "10.255.0.3/32",
            Some(attrs("10.10.0.3", 100, &[MARKER, B], "10.10.0.3")),
        );
        for i in 1..=200 {
            let prefix = format!("10.77.60.{}/32", i % 250 + 1);
            w.set(&prefix, Some(attrs("10.10.0.3", 100, &[B], "10.10.0.3")));
        }
        assert_eq!(w.sam.owners().count(), 200);
        let ev = w.set("10.255.0.3/32", None);
        assert_eq!(ev.len(), 200);
        assert_eq!(w.sam.owners().count(), 0);
        let seqs: HashSet<u64> = ev.iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs.len(),
            200,
            "every trap event has its own sequence number"
        );
    }
}
