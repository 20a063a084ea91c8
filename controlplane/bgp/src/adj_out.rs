//! Adj-RIB-Out: what one established peer has been sent, per prefix, so
//! that a change is sent as the difference from it. A peer without ADD-PATH
//! holds at most one path per prefix (our best); a peer we send ADD-PATH to
//! (RFC 7911) holds every path it may receive, each under our path id
//! (`Path::id`), and a change sends only the paths that changed.

use crate::route::{FastMap, Nlri, PathAttrs, PathId, Prefix};
use std::sync::Arc;

/// The paths a peer should have for one prefix: (our path id, attributes as
/// exported to it), at most one without ADD-PATH.
pub type Wanted = Vec<(PathId, Arc<PathAttrs>)>;

/// What to send to make a peer's view of some prefixes right.
#[derive(Debug, Default)]
pub struct Diff {
    pub announce: Vec<(Nlri, Arc<PathAttrs>)>,
    pub withdraw: Vec<Nlri>,
}

#[derive(Debug)]
pub enum AdjOut {
    /// One path per prefix, sent without a path identifier.
    Best(FastMap<Prefix, Arc<PathAttrs>>),
    /// Every path, by our path id, sorted by id.
    All(FastMap<Prefix, Wanted>),
}

impl Default for AdjOut {
    fn default() -> Self {
        AdjOut::Best(FastMap::default())
    }
}

fn same(a: &Arc<PathAttrs>, b: &Arc<PathAttrs>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

impl AdjOut {
    /// An empty Adj-RIB-Out for a session that did (`add_path`) or did not
    /// negotiate ADD-PATH send.
    pub fn new(add_path: bool) -> Self {
        if add_path {
            AdjOut::All(FastMap::default())
        } else {
            AdjOut::Best(FastMap::default())
        }
    }

    /// Whether every path goes (ADD-PATH send).
    pub fn all_paths(&self) -> bool {
        matches!(self, AdjOut::All(_))
    }

    /// Paths held (prefixes, or more with ADD-PATH).
    pub fn len(&self) -> usize {
        match self {
            AdjOut::Best(m) => m.len(),
            AdjOut::All(m) => m.values().map(Vec::len).sum(),
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            AdjOut::Best(m) => m.is_empty(),
            AdjOut::All(m) => m.is_empty(),
        }
    }

    /// Sets what the peer has for `prefix` to `want` and adds to `diff` what
    /// must be sent for that. `want` is ignored past its first path without
    /// ADD-PATH; with it, ids must be unique (our path ids are).
    pub fn set(&mut self, prefix: Prefix, mut want: Wanted, diff: &mut Diff) {
        match self {
            AdjOut::Best(m) => match (want.into_iter().next(), m.get(&prefix)) {
                (Some((_, w)), Some(h)) if same(&w, h) => {}
                (Some((_, w)), _) => {
                    diff.announce.push((prefix.into(), Arc::clone(&w)));
                    m.insert(prefix, w);
                }
                (None, Some(_)) => {
                    m.remove(&prefix);
                    diff.withdraw.push(prefix.into());
                }
                (None, None) => {}
            },
            AdjOut::All(m) => {
                want.sort_unstable_by_key(|(id, _)| *id);
                let had = m.get(&prefix).map_or(&[][..], Vec::as_slice);
                for (id, _) in had {
                    if want.binary_search_by_key(id, |(w, _)| *w).is_err() {
                        diff.withdraw.push(Nlri {
                            prefix,
                            path_id: *id,
                        });
                    }
                }
                for (id, w) in &want {
                    let sent = had
                        .binary_search_by_key(id, |(h, _)| *h)
                        .is_ok_and(|i| same(&had[i].1, w));
                    if !sent {
                        diff.announce.push((
                            Nlri {
                                prefix,
                                path_id: *id,
                            },
                            Arc::clone(w),
                        ));
                    }
                }
                if want.is_empty() {
                    m.remove(&prefix);
                } else {
                    m.insert(prefix, want);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::NextHop;
    use std::net::Ipv4Addr;

    fn attrs(lp: u32) -> Arc<PathAttrs> {
        let mut a = PathAttrs::local(NextHop::V4 {
            addr: Ipv4Addr::new(192, 0, 2, 1),
        });
        a.local_pref = Some(lp);
        Arc::new(a)
    }

    fn pfx() -> Prefix {
        Prefix::V4("10.77.60.10/32".parse().unwrap())
    }

    fn nlri(path_id: PathId) -> Nlri {
        Nlri {
            prefix: pfx(),
            path_id,
        }
    }

    #[test]
    fn best_only_sends_one_path_without_an_id() {
        let mut out = AdjOut::new(false);
        let mut d = Diff::default();
        out.set(pfx(), vec![(7, attrs(100)), (8, attrs(200))], &mut d);
        assert_eq!(d.announce, vec![(nlri(0), attrs(100))]);
        let mut d = Diff::default();
        out.set(pfx(), vec![(9, attrs(100))], &mut d);
        assert!(
            d.announce.is_empty() && d.withdraw.is_empty(),
            "same attributes"
        );
        out.set(pfx(), vec![], &mut d);
        assert_eq!(d.withdraw, vec![nlri(0)]);
        assert!(out.is_empty());
    }

    #[test]
    fn add_path_sends_only_the_paths_that_changed() {
        let mut out = AdjOut::new(true);
        let mut d = Diff::default();
        out.set(pfx(), vec![(2, attrs(100)), (1, attrs(200))], &mut d);
        assert_eq!(
            d.announce,
            vec![(nlri(1), attrs(200)), (nlri(2), attrs(100))]
        );
        assert_eq!(out.len(), 2);
        // Path 1 changes, path 2 goes, path 3 comes.
        let mut d = Diff::default();
        out.set(pfx(), vec![(3, attrs(50)), (1, attrs(150))], &mut d);
        assert_eq!(d.withdraw, vec![nlri(2)]);
        assert_eq!(
            d.announce,
            vec![(nlri(1), attrs(150)), (nlri(3), attrs(50))]
        );
        // Nothing changed: nothing sent.
        let mut d = Diff::default();
        out.set(pfx(), vec![(1, attrs(150)), (3, attrs(50))], &mut d);
        assert!(d.announce.is_empty() && d.withdraw.is_empty());
        out.set(pfx(), vec![], &mut d);
        assert_eq!(d.withdraw, vec![nlri(1), nlri(3)]);
        assert!(out.is_empty());
    }
}
