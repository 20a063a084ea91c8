//! The RIB: per-peer Adj-RIB-In (post import policy) and the Loc-RIB (every
//! candidate path per prefix and the index of the best). Updates are O(paths
//! of one prefix); attributes are shared through `Arc`; graceful restart keeps
//! stale paths. A peer may hold several paths per prefix when it sends path
//! identifiers (RFC 7911 ADD-PATH): paths are keyed by (prefix, received id).

use crate::decision::{self, DecisionConfig};
use crate::route::{FastMap, Nlri, Path, PathAttrs, PathId, PathSource, PeerId, Prefix};
use std::sync::Arc;

/// A change of the best path of one prefix (`old`/`new` `None`: no path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BestChange {
    pub prefix: Prefix,
    pub old: Option<Path>,
    pub new: Option<Path>,
}

/// One route in a peer's Adj-RIB-In.
#[derive(Clone, Debug)]
struct AdjRoute {
    attrs: Arc<PathAttrs>,
    /// Kept over a graceful restart, not yet refreshed (RFC 4724).
    stale: bool,
}

/// One peer's Adj-RIB-In, by prefix and received path id.
#[derive(Clone, Debug, Default)]
struct AdjRibIn {
    routes: FastMap<Nlri, AdjRoute>,
    stale: usize,
}

/// The candidates of one prefix; never empty while stored.
#[derive(Clone, Debug)]
struct Destination {
    paths: Vec<Path>,
    best: usize,
}

impl Destination {
    fn best_path(&self) -> Option<&Path> {
        self.paths.get(self.best)
    }

    fn reselect(&mut self, cfg: &DecisionConfig) {
        self.best = decision::best(&self.paths, cfg).unwrap_or(0);
    }
}

/// Our path identifiers (`Path::id`): one per (source peer, received path id),
/// held while any prefix has a path with that pair. A peer without ADD-PATH
/// takes one id for all its paths; ids are reused once free, so a peer
/// cycling through received ids cannot make the table grow beyond the paths
/// the RIB holds.
#[derive(Clone, Debug, Default)]
struct PathIds {
    held: FastMap<(PeerId, PathId), (PathId, usize)>,
    free: Vec<PathId>,
    next: PathId,
}

impl PathIds {
    fn acquire(&mut self, peer: PeerId, rx: PathId) -> PathId {
        let (free, next) = (&mut self.free, &mut self.next);
        let e = self.held.entry((peer, rx)).or_insert_with(|| {
            let id = free.pop().unwrap_or_else(|| {
                *next += 1;
                *next
            });
            (id, 0)
        });
        e.1 += 1;
        e.0
    }

    fn release(&mut self, peer: PeerId, rx: PathId) {
        if let Some(e) = self.held.get_mut(&(peer, rx)) {
            e.1 -= 1;
            if e.1 == 0 {
                self.free.push(e.0);
                self.held.remove(&(peer, rx));
            }
        }
    }
}

/// Adj-RIB-In of every peer plus the Loc-RIB.
#[derive(Clone, Debug, Default)]
pub struct Rib {
    cfg: DecisionConfig,
    peers: FastMap<PeerId, AdjRibIn>,
    loc: FastMap<Prefix, Destination>,
    paths: usize,
    ids: PathIds,
}

/// `Some` when the best path differs (by source or attribute values).
fn change(prefix: Prefix, old: Option<Path>, new: Option<&Path>) -> Option<BestChange> {
    if old.as_ref() == new {
        None
    } else {
        Some(BestChange {
            prefix,
            old,
            new: new.cloned(),
        })
    }
}

/// Sorted, each prefix once.
fn sorted(mut prefixes: Vec<Prefix>) -> Vec<Prefix> {
    prefixes.sort_unstable();
    prefixes.dedup();
    prefixes
}

impl Rib {
    pub fn new(cfg: DecisionConfig) -> Self {
        Rib {
            cfg,
            ..Rib::default()
        }
    }

    pub fn config(&self) -> &DecisionConfig {
        &self.cfg
    }

    /// Changes the decision configuration and reruns the decision for every
    /// prefix (O(prefixes); for configuration changes only).
    pub fn set_config(&mut self, cfg: DecisionConfig) -> Vec<BestChange> {
        self.cfg = cfg;
        let mut out = Vec::new();
        for (prefix, dest) in &mut self.loc {
            let old = dest.best_path().cloned();
            dest.reselect(&self.cfg);
            out.extend(change(*prefix, old, dest.best_path()));
        }
        out.sort_by_key(|c| c.prefix);
        out
    }

    /// Announces (`Some`), replaces or withdraws (`None`) the path of
    /// `source.peer` for `nlri` (a prefix, and the path id it came with on
    /// an ADD-PATH session). `attrs` are post import policy. Returns `Some`
    /// only when the best path of the prefix changed, including a change of
    /// its attributes or source. Clears the stale mark of a refreshed path.
    pub fn update(
        &mut self,
        source: &Arc<PathSource>,
        nlri: impl Into<Nlri>,
        attrs: Option<Arc<PathAttrs>>,
    ) -> Option<BestChange> {
        let nlri = nlri.into();
        match attrs {
            Some(attrs) => self.announce(source, nlri, attrs),
            None => self.withdraw(source.peer, nlri),
        }
    }

    fn announce(
        &mut self,
        source: &Arc<PathSource>,
        nlri: Nlri,
        attrs: Arc<PathAttrs>,
    ) -> Option<BestChange> {
        let peer = source.peer;
        let adj = self.peers.entry(peer).or_default();
        let prev = adj.routes.insert(
            nlri,
            AdjRoute {
                attrs: Arc::clone(&attrs),
                stale: false,
            },
        );
        if prev.as_ref().is_some_and(|r| r.stale) {
            adj.stale -= 1;
        }
        let dest = self.loc.entry(nlri.prefix).or_insert_with(|| Destination {
            paths: Vec::with_capacity(1),
            best: 0,
        });
        let old = dest.best_path().cloned();
        let rx_id = nlri.path_id;
        match dest
            .paths
            .iter()
            .position(|p| p.source.peer == peer && p.rx_id == rx_id)
        {
            Some(i) => {
                let new = Path {
                    attrs,
                    source: Arc::clone(source),
                    rx_id,
                    id: dest.paths[i].id,
                };
                if dest.paths[i] == new {
                    return None;
                }
                dest.paths[i] = new;
            }
            None => {
                let id = self.ids.acquire(peer, rx_id);
                dest.paths.push(Path {
                    attrs,
                    source: Arc::clone(source),
                    rx_id,
                    id,
                });
                self.paths += 1;
            }
        }
        dest.reselect(&self.cfg);
        change(nlri.prefix, old, dest.best_path())
    }

    fn withdraw(&mut self, peer: PeerId, nlri: Nlri) -> Option<BestChange> {
        let adj = self.peers.get_mut(&peer)?;
        let removed = adj.routes.remove(&nlri)?;
        if removed.stale {
            adj.stale -= 1;
        }
        if adj.routes.is_empty() {
            self.peers.remove(&peer);
        }
        self.remove_path(peer, nlri)
    }

    /// Removes `peer`'s candidate for `nlri` from the Loc-RIB.
    fn remove_path(&mut self, peer: PeerId, nlri: Nlri) -> Option<BestChange> {
        let prefix = nlri.prefix;
        let dest = self.loc.get_mut(&prefix)?;
        let i = dest
            .paths
            .iter()
            .position(|p| p.source.peer == peer && p.rx_id == nlri.path_id)?;
        let old = dest.best_path().cloned();
        dest.paths.remove(i);
        self.paths -= 1;
        self.ids.release(peer, nlri.path_id);
        if dest.paths.is_empty() {
            self.loc.remove(&prefix);
            return change(prefix, old, None);
        }
        dest.reselect(&self.cfg);
        change(prefix, old, dest.best_path())
    }

    /// Removes every path of `peer` (session down without graceful restart,
    /// or the restart timer expired). Returns every prefix that lost a path,
    /// sorted: with ADD-PATH a path that was not the best matters too.
    pub fn peer_down(&mut self, peer: PeerId) -> Vec<Prefix> {
        let Some(adj) = self.peers.remove(&peer) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(adj.routes.len());
        for nlri in adj.routes.into_keys() {
            self.remove_path(peer, nlri);
            out.push(nlri.prefix);
        }
        sorted(out)
    }

    /// Graceful restart (RFC 4724), session lost: keeps `peer`'s paths but
    /// marks them stale. Returns how many were marked.
    pub fn stale_peer(&mut self, peer: PeerId) -> usize {
        let Some(adj) = self.peers.get_mut(&peer) else {
            return 0;
        };
        for r in adj.routes.values_mut() {
            r.stale = true;
        }
        adj.stale = adj.routes.len();
        adj.stale
    }

    /// Graceful restart, End-of-RIB received (or the stale timer expired):
    /// removes `peer`'s paths that were not refreshed since `stale_peer`.
    /// Returns the prefixes that lost a path, sorted.
    pub fn sweep_stale(&mut self, peer: PeerId) -> Vec<Prefix> {
        let Some(adj) = self.peers.get_mut(&peer) else {
            return Vec::new();
        };
        if adj.stale == 0 {
            return Vec::new();
        }
        let stale: Vec<Nlri> = adj
            .routes
            .iter()
            .filter(|(_, r)| r.stale)
            .map(|(n, _)| *n)
            .collect();
        adj.routes.retain(|_, r| !r.stale);
        adj.stale = 0;
        if adj.routes.is_empty() {
            self.peers.remove(&peer);
        }
        let mut out = Vec::with_capacity(stale.len());
        for nlri in stale {
            self.remove_path(peer, nlri);
            out.push(nlri.prefix);
        }
        sorted(out)
    }

    /// The best path of `prefix`.
    pub fn best(&self, prefix: &Prefix) -> Option<&Path> {
        self.loc.get(prefix).and_then(Destination::best_path)
    }

    /// Index of the best path within [`Rib::paths`].
    pub fn best_index(&self, prefix: &Prefix) -> Option<usize> {
        self.loc.get(prefix).map(|d| d.best)
    }

    /// Why the best path of `prefix` won over the runner-up (`cerctl explain`);
    /// indices refer to [`Rib::paths`].
    pub fn explain(&self, prefix: &Prefix) -> Option<decision::Explanation> {
        decision::explain(self.paths(prefix), &self.cfg)
    }

    /// Every candidate path of `prefix`, in arrival order (empty if none).
    pub fn paths(&self, prefix: &Prefix) -> &[Path] {
        self.loc.get(prefix).map_or(&[], |d| d.paths.as_slice())
    }

    /// Every prefix of the Loc-RIB with its best path (arbitrary order).
    pub fn iter_best(&self) -> impl Iterator<Item = (&Prefix, &Path)> + '_ {
        self.loc
            .iter()
            .filter_map(|(p, d)| d.best_path().map(|b| (p, b)))
    }

    /// `peer`'s Adj-RIB-In (post policy), arbitrary order; empty if unknown.
    pub fn adj_in(&self, peer: PeerId) -> impl Iterator<Item = (&Nlri, &Arc<PathAttrs>)> + '_ {
        self.peers
            .get(&peer)
            .into_iter()
            .flat_map(|a| a.routes.iter().map(|(n, r)| (n, &r.attrs)))
    }

    /// Whether `peer`'s path for `nlri` is stale (graceful restart).
    pub fn is_stale(&self, peer: PeerId, nlri: impl Into<Nlri>) -> bool {
        self.peers
            .get(&peer)
            .and_then(|a| a.routes.get(&nlri.into()))
            .is_some_and(|r| r.stale)
    }

    /// Paths in `peer`'s Adj-RIB-In (prefixes, or more with ADD-PATH).
    pub fn prefix_count(&self, peer: PeerId) -> usize {
        self.peers.get(&peer).map_or(0, |a| a.routes.len())
    }

    /// Stale paths of `peer`.
    pub fn stale_count(&self, peer: PeerId) -> usize {
        self.peers.get(&peer).map_or(0, |a| a.stale)
    }

    /// Peers with at least one path.
    pub fn peers(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.peers.keys().copied()
    }

    /// Prefixes in the Loc-RIB.
    pub fn len(&self) -> usize {
        self.loc.len()
    }

    pub fn is_empty(&self) -> bool {
        self.loc.is_empty()
    }

    /// Candidate paths over all prefixes.
    pub fn path_count(&self) -> usize {
        self.paths
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::{Ipv4Prefix, Ipv6Prefix, NextHop};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    use std::time::{Duration, Instant};

    fn src(id: u32) -> Arc<PathSource> {
        let o = u8::try_from(id).expect("small id");
        Arc::new(PathSource {
            peer: PeerId(id),
            peer_addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, o)),
            router_id: Ipv4Addr::new(1, 1, 1, o),
            peer_as: 65000,
            ibgp: true,
            rr_client: false,
        })
    }

    fn attrs(lp: u32) -> Arc<PathAttrs> {
        let mut a = PathAttrs::local(NextHop::V4 {
            addr: Ipv4Addr::new(192, 0, 2, 1),
        });
        a.local_pref = Some(lp);
        Arc::new(a)
    }

    fn pfx(i: u32) -> Prefix {
        Prefix::V4(Ipv4Prefix::host(Ipv4Addr::from(0x0a00_0000 + i)))
    }

    #[test]
    fn announce_replace_withdraw() {
        let mut rib = Rib::new(DecisionConfig::default());
        let (s1, s2) = (src(1), src(2));
        let p = pfx(1);
        let c = rib.update(&s1, p, Some(attrs(100))).expect("first path");
        assert_eq!(
            (c.old, c.new.map(|n| n.source.peer)),
            (None, Some(PeerId(1)))
        );
        // A worse path from peer 2: no best change.
        assert_eq!(rib.update(&s2, p, Some(attrs(50))), None);
        assert_eq!(rib.paths(&p).len(), 2);
        assert_eq!(rib.path_count(), 2);
        // Same attributes again (implicit withdraw + identical re-announce): nothing.
        assert_eq!(rib.update(&s1, p, Some(attrs(100))), None);
        assert_eq!(rib.path_count(), 2);
        // Peer 2 improves: best moves.
        let c = rib.update(&s2, p, Some(attrs(300))).expect("moves");
        assert_eq!(c.old.map(|o| o.source.peer), Some(PeerId(1)));
        assert_eq!(c.new.map(|n| n.source.peer), Some(PeerId(2)));
        assert_eq!(rib.best_index(&p), Some(1));
        // Attribute change of the best path counts as a change.
        let c = rib.update(&s2, p, Some(attrs(250))).expect("attrs changed");
        assert_eq!(c.old.map(|o| o.local_pref()), Some(300));
        assert_eq!(c.new.map(|n| n.local_pref()), Some(250));
        // A non-best path's change that does not win: no change.
        assert_eq!(rib.update(&s1, p, Some(attrs(200))), None);
        // Withdraw the best: falls back to peer 1.
        let c = rib.update(&s2, p, None).expect("fallback");
        assert_eq!(c.new.map(|n| n.source.peer), Some(PeerId(1)));
        // Withdrawing something we never had is a no-op.
        assert_eq!(rib.update(&s2, p, None), None);
        assert_eq!(rib.update(&s2, pfx(99), None), None);
        let c = rib.update(&s1, p, None).expect("gone");
        assert_eq!((c.new, rib.best(&p), rib.len()), (None, None, 0));
        assert!(rib.paths(&p).is_empty());
        assert_eq!(rib.path_count(), 0);
        assert_eq!(rib.peers().count(), 0);
    }

    #[test]
    fn source_change_counts_as_best_change() {
        let mut rib = Rib::new(DecisionConfig::default());
        let p = pfx(1);
        let a = attrs(100);
        rib.update(&src(1), p, Some(Arc::clone(&a)));
        let mut s = (*src(1)).clone();
        s.router_id = Ipv4Addr::new(9, 9, 9, 9);
        let c = rib.update(&Arc::new(s), p, Some(a)).expect("new router id");
        assert_eq!(
            c.new.map(|n| n.originator()),
            Some(Ipv4Addr::new(9, 9, 9, 9))
        );
    }

    #[test]
    fn ipv6_prefixes_and_adj_in() {
        let mut rib = Rib::new(DecisionConfig::default());
        let v6 = Prefix::V6(Ipv6Prefix::new(
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
            48,
        ));
        rib.update(&src(1), v6, Some(attrs(100)));
        rib.update(&src(1), pfx(1), Some(attrs(100)));
        rib.update(&src(2), pfx(1), Some(attrs(100)));
        assert_eq!(rib.prefix_count(PeerId(1)), 2);
        assert_eq!(rib.prefix_count(PeerId(2)), 1);
        assert_eq!(rib.prefix_count(PeerId(3)), 0);
        let mut adj: Vec<Prefix> = rib.adj_in(PeerId(1)).map(|(n, _)| n.prefix).collect();
        adj.sort();
        assert_eq!(adj, vec![pfx(1), v6]);
        assert_eq!(rib.adj_in(PeerId(7)).count(), 0);
        assert_eq!(rib.iter_best().count(), 2);
        assert_eq!(rib.path_count(), 3);
    }

    #[test]
    fn peer_down_removes_only_that_peer() {
        let mut rib = Rib::new(DecisionConfig::default());
        for i in 0..10 {
            rib.update(&src(1), pfx(i), Some(attrs(200)));
            if i % 2 == 0 {
                rib.update(&src(2), pfx(i), Some(attrs(100)));
            }
        }
        let ch = rib.peer_down(PeerId(1));
        assert_eq!(ch, (0..10).map(pfx).collect::<Vec<_>>(), "sorted");
        // Prefixes peer 2 also had fall back to it.
        for i in 0..10 {
            let expect = (i % 2 == 0).then_some(PeerId(2));
            assert_eq!(rib.best(&pfx(i)).map(|n| n.source.peer), expect);
        }
        assert_eq!(rib.len(), 5);
        assert_eq!(rib.path_count(), 5);
        assert!(rib.peer_down(PeerId(1)).is_empty());
    }

    #[test]
    fn graceful_restart_stale_then_sweep() {
        let mut rib = Rib::new(DecisionConfig::default());
        let s = src(1);
        for i in 0..4 {
            rib.update(&s, pfx(i), Some(attrs(100)));
        }
        rib.update(&src(2), pfx(3), Some(attrs(50)));
        assert_eq!(rib.stale_peer(PeerId(1)), 4);
        assert_eq!(rib.stale_peer(PeerId(9)), 0);
        assert_eq!(rib.stale_count(PeerId(1)), 4);
        // Stale paths keep forwarding: still best, still counted.
        assert_eq!(rib.best(&pfx(0)).map(|b| b.source.peer), Some(PeerId(1)));
        assert!(rib.is_stale(PeerId(1), pfx(0)));
        // The peer comes back and re-sends 0 (same) and 1 (changed).
        assert_eq!(rib.update(&s, pfx(0), Some(attrs(100))), None);
        assert!(rib.update(&s, pfx(1), Some(attrs(120))).is_some());
        assert!(!rib.is_stale(PeerId(1), pfx(0)));
        assert_eq!(rib.stale_count(PeerId(1)), 2);
        // It withdraws 2 explicitly (stale count follows).
        assert!(rib.update(&s, pfx(2), None).is_some());
        assert_eq!(rib.stale_count(PeerId(1)), 1);
        // End-of-RIB: 3 was not refreshed, goes; peer 2 takes over.
        let ch = rib.sweep_stale(PeerId(1));
        assert_eq!(ch, vec![pfx(3)]);
        assert_eq!(rib.best(&pfx(3)).map(|n| n.source.peer), Some(PeerId(2)));
        assert_eq!(rib.prefix_count(PeerId(1)), 2);
        assert_eq!(rib.stale_count(PeerId(1)), 0);
        assert!(rib.sweep_stale(PeerId(1)).is_empty());
        // A peer that never came back: sweep removes everything.
        rib.stale_peer(PeerId(2));
        let ch = rib.sweep_stale(PeerId(2));
        assert_eq!(ch, vec![pfx(3)]);
        assert!(rib.best(&pfx(3)).is_none());
        assert_eq!(rib.peers().collect::<Vec<_>>(), vec![PeerId(1)]);
    }

    #[test]
    fn add_path_paths_of_one_peer_and_their_ids() {
        let mut rib = Rib::new(DecisionConfig::default());
        let n = |i, path_id| Nlri {
            prefix: pfx(i),
            path_id,
        };
        // One peer, two paths for prefix 1 (received ids 5 and 6), one for prefix 2 (id 5).
        rib.update(&src(1), n(1, 5), Some(attrs(100)));
        rib.update(&src(1), n(1, 6), Some(attrs(200)));
        rib.update(&src(1), n(2, 5), Some(attrs(100)));
        rib.update(&src(2), pfx(1), Some(attrs(50)));
        assert_eq!(rib.paths(&pfx(1)).len(), 3);
        assert_eq!(rib.prefix_count(PeerId(1)), 3);
        assert_eq!(rib.best(&pfx(1)).map(|b| b.rx_id), Some(6));
        // Our ids: one per (peer, received id), so the same on both prefixes,
        // and different for different sources.
        let id = |rib: &Rib, i, peer, rx| {
            rib.paths(&pfx(i))
                .iter()
                .find(|p| p.source.peer == PeerId(peer) && p.rx_id == rx)
                .map(|p| p.id)
                .unwrap()
        };
        let (a, b, c) = (id(&rib, 1, 1, 5), id(&rib, 1, 1, 6), id(&rib, 1, 2, 0));
        assert_eq!(id(&rib, 2, 1, 5), a);
        assert!(a != b && b != c && a != c && a * b * c != 0);
        // Withdrawing one path leaves the other of the same peer.
        rib.update(&src(1), n(1, 6), None);
        assert_eq!(rib.best(&pfx(1)).map(|b| b.rx_id), Some(5));
        assert_eq!(id(&rib, 1, 1, 5), a, "ids stay while their paths live");
        // A freed id is reused, so a peer cycling ids cannot grow the table.
        for rx in 100..200 {
            rib.update(&src(1), n(3, rx), Some(attrs(100)));
            rib.update(&src(1), n(3, rx), None);
        }
        assert!(rib.ids.held.len() <= 3, "{:?}", rib.ids.held);
        assert_eq!(rib.peer_down(PeerId(1)), vec![pfx(1), pfx(2)]);
        assert_eq!(rib.ids.held.len(), 1, "only peer 2's id is held");
    }

    #[test]
    fn set_config_reselects() {
        let mut rib = Rib::new(DecisionConfig::default());
        let mk = |nas: u32, med: u32| {
            let mut a = PathAttrs::local(NextHop::V4 {
                addr: Ipv4Addr::new(192, 0, 2, 1),
            });
            a.as_path = vec![crate::route::AsSegment {
                kind: crate::route::AsSegmentKind::Sequence,
                asns: vec![nas],
            }];
            a.med = Some(med);
            Arc::new(a)
        };
        rib.update(&src(1), pfx(1), Some(mk(64501, 50)));
        rib.update(&src(2), pfx(1), Some(mk(64502, 10)));
        assert_eq!(rib.best(&pfx(1)).map(|b| b.source.peer), Some(PeerId(1)));
        let ch = rib.set_config(DecisionConfig {
            always_compare_med: true,
        });
        assert_eq!(ch.len(), 1);
        assert_eq!(rib.best(&pfx(1)).map(|b| b.source.peer), Some(PeerId(2)));
        assert!(rib.config().always_compare_med);
    }

    /// 100k prefixes from three peers (one shared attribute Arc per peer),
    /// then a full withdraw of one peer and a peer down. Guards against
    /// per-update scans: a quadratic RIB would take minutes here.
    #[test]
    fn scale_100k_prefixes() {
        const N: u32 = 100_000;
        let start = Instant::now();
        let mut rib = Rib::new(DecisionConfig::default());
        let shared: Vec<Arc<PathAttrs>> = (0..3).map(|i| attrs(100 + i)).collect();
        let sources: Vec<Arc<PathSource>> = (1..=3).map(src).collect();
        let mut changes = 0usize;
        for (s, a) in sources.iter().zip(&shared) {
            for i in 0..N {
                changes += usize::from(rib.update(s, pfx(i), Some(Arc::clone(a))).is_some());
            }
        }
        // Each peer is better than the previous: every update changed the best.
        assert_eq!(changes, 3 * N as usize);
        assert_eq!(rib.len(), N as usize);
        assert_eq!(rib.path_count(), 3 * N as usize);
        // Attributes are shared, not copied: Adj-RIB-In + Loc-RIB + ours.
        assert_eq!(Arc::strong_count(&shared[0]), 2 * N as usize + 1);
        for i in 0..N {
            assert!(rib.update(&sources[2], pfx(i), None).is_some());
        }
        assert_eq!(rib.best(&pfx(7)).map(|b| b.source.peer), Some(PeerId(2)));
        assert_eq!(rib.peer_down(PeerId(2)).len(), N as usize);
        assert_eq!(
            rib.iter_best()
                .filter(|(_, b)| b.source.peer == PeerId(1))
                .count(),
            N as usize
        );
        assert_eq!(rib.stale_peer(PeerId(1)), N as usize);
        assert_eq!(rib.sweep_stale(PeerId(1)).len(), N as usize);
        assert!(rib.is_empty());
        assert_eq!(Arc::strong_count(&shared[0]), 1);
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(30),
            "100k-prefix churn took {took:?}"
        );
    }
}
