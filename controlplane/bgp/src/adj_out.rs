//! Adj-RIB-Out: what has been sent, per prefix, so that a change is sent
//! as the difference from it. One is kept per update group (the speaker's
//! peers that get the same UPDATEs), not per peer: each entry records the
//! peer the path came from, and a member is never sent its own paths, so a
//! member's view is the group's minus the entries from it ([`diff`] with
//! `except`). Without ADD-PATH an entry holds at most one path per prefix
//! (our best); with ADD-PATH (RFC 7911) it holds every path the group may
//! receive, each under our path id (`Path::id`), and a change sends only
//! the paths that changed.

use crate::route::{FastMap, Nlri, PathAttrs, PathId, PeerId, Prefix};
use std::sync::Arc;

/// One path as exported: our path id, the attributes as sent, and the peer
/// the path was learned from (`PeerId::LOCAL` for our own routes).
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    pub id: PathId,
    pub attrs: Arc<PathAttrs>,
    pub from: PeerId,
}

/// The paths the group should have for one prefix, at most one without
/// ADD-PATH.
pub type Wanted = Vec<Sent>;

/// What to send to make a peer's view of some prefixes right.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Diff {
    pub announce: Vec<(Nlri, Arc<PathAttrs>)>,
    pub withdraw: Vec<Nlri>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.announce.is_empty() && self.withdraw.is_empty()
    }

    /// Adds `other`'s entries whose prefix `keep` accepts.
    pub fn extend_filtered(&mut self, other: &Diff, keep: impl Fn(&Prefix) -> bool) {
        self.withdraw
            .extend(other.withdraw.iter().filter(|n| keep(&n.prefix)));
        self.announce.extend(
            other
                .announce
                .iter()
                .filter(|(n, _)| keep(&n.prefix))
                .cloned(),
        );
    }
}

#[derive(Debug)]
enum Table {
    /// One path per prefix, sent without a path identifier.
    Best(FastMap<Prefix, Sent>),
    /// Every path, by our path id, sorted by id.
    All(FastMap<Prefix, Wanted>),
}

#[derive(Debug)]
pub struct AdjOut {
    table: Table,
    /// Paths held, by the peer they came from (what a member is not sent).
    from: FastMap<PeerId, usize>,
}

impl Default for AdjOut {
    fn default() -> Self {
        AdjOut::new(false)
    }
}

fn same(a: &Arc<PathAttrs>, b: &Arc<PathAttrs>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

/// Adds to `diff` what turns `had` into `want` for a peer, leaving out the
/// paths learned from `except` (a member is not sent its own paths: its
/// view of the group's table lacks them). Without `add_path` only the
/// first path of each side counts and no path id goes on the wire.
pub fn diff(
    prefix: Prefix,
    had: &[Sent],
    want: &[Sent],
    add_path: bool,
    except: Option<PeerId>,
    diff: &mut Diff,
) {
    let keep = |s: &&Sent| Some(s.from) != except;
    if !add_path {
        let had = had.first().filter(keep);
        match (want.first().filter(keep), had) {
            (Some(w), Some(h)) if same(&w.attrs, &h.attrs) => {}
            (Some(w), _) => diff.announce.push((prefix.into(), Arc::clone(&w.attrs))),
            (None, Some(_)) => diff.withdraw.push(prefix.into()),
            (None, None) => {}
        }
        return;
    }
    // Both sides are sorted by id (`AdjOut::set`).
    for h in had.iter().filter(keep) {
        let wanted = want
            .binary_search_by_key(&h.id, |w| w.id)
            .is_ok_and(|i| keep(&&want[i]));
        if !wanted {
            diff.withdraw.push(Nlri {
                prefix,
                path_id: h.id,
            });
        }
    }
    for w in want.iter().filter(keep) {
        let sent = had
            .binary_search_by_key(&w.id, |h| h.id)
            .is_ok_and(|i| keep(&&had[i]) && same(&had[i].attrs, &w.attrs));
        if !sent {
            diff.announce.push((
                Nlri {
                    prefix,
                    path_id: w.id,
                },
                Arc::clone(&w.attrs),
            ));
        }
    }
}

impl AdjOut {
    /// An empty Adj-RIB-Out for peers that did (`add_path`) or did not
    /// negotiate ADD-PATH send.
    pub fn new(add_path: bool) -> Self {
        let table = if add_path {
            Table::All(FastMap::default())
        } else {
            Table::Best(FastMap::default())
        };
        AdjOut {
            table,
            from: FastMap::default(),
        }
    }

    /// Whether every path goes (ADD-PATH send).
    pub fn all_paths(&self) -> bool {
        matches!(self.table, Table::All(_))
    }

    /// Paths held (prefixes, or more with ADD-PATH).
    pub fn len(&self) -> usize {
        match &self.table {
            Table::Best(m) => m.len(),
            Table::All(m) => m.values().map(Vec::len).sum(),
        }
    }

    pub fn is_empty(&self) -> bool {
        match &self.table {
            Table::Best(m) => m.is_empty(),
            Table::All(m) => m.is_empty(),
        }
    }

    /// Paths held that were learned from `peer` (a member of the group is
    /// sent `len() - from(member)` of them).
    pub fn from(&self, peer: PeerId) -> usize {
        self.from.get(&peer).copied().unwrap_or(0)
    }

    /// What is held for `prefix`, sorted by path id.
    pub fn get(&self, prefix: &Prefix) -> &[Sent] {
        match &self.table {
            Table::Best(m) => m.get(prefix).map_or(&[][..], std::slice::from_ref),
            Table::All(m) => m.get(prefix).map_or(&[][..], Vec::as_slice),
        }
    }

    /// Every prefix held, with its paths.
    pub fn iter(&self) -> impl Iterator<Item = (&Prefix, &[Sent])> {
        let (best, all) = match &self.table {
            Table::Best(m) => (Some(m), None),
            Table::All(m) => (None, Some(m)),
        };
        let best = best
            .into_iter()
            .flat_map(|m| m.iter().map(|(p, s)| (p, std::slice::from_ref(s))));
        let all = all
            .into_iter()
            .flat_map(|m| m.iter().map(|(p, w)| (p, w.as_slice())));
        best.chain(all)
    }

    /// Sets what is held for `prefix` to `want` (past its first path without
    /// ADD-PATH; with it, ids must be unique, as our path ids are) and
    /// returns what was held before, for [`diff`].
    pub fn set(&mut self, prefix: Prefix, mut want: Wanted) -> Wanted {
        for s in &want {
            *self.from.entry(s.from).or_default() += 1;
        }
        let old: Wanted = match &mut self.table {
            Table::Best(m) => {
                want.truncate(1);
                match want.pop() {
                    Some(w) => m.insert(prefix, w).into_iter().collect(),
                    None => m.remove(&prefix).into_iter().collect(),
                }
            }
            Table::All(m) => {
                want.sort_unstable_by_key(|s| s.id);
                if want.is_empty() {
                    m.remove(&prefix).unwrap_or_default()
                } else {
                    m.insert(prefix, want).unwrap_or_default()
                }
            }
        };
        for s in &old {
            if let Some(n) = self.from.get_mut(&s.from) {
                *n -= 1;
                if *n == 0 {
                    self.from.remove(&s.from);
                }
            }
        }
        old
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

    fn sent(id: PathId, lp: u32, from: u32) -> Sent {
        Sent {
            id,
            attrs: attrs(lp),
            from: PeerId(from),
        }
    }

    /// Sets `want` and returns the diff for a peer that is not `except`.
    fn apply(out: &mut AdjOut, want: Wanted, except: Option<PeerId>) -> Diff {
        let old = out.set(pfx(), want);
        let mut d = Diff::default();
        diff(
            pfx(),
            &old,
            out.get(&pfx()),
            out.all_paths(),
            except,
            &mut d,
        );
        d
    }

    #[test]
    fn best_only_sends_one_path_without_an_id() {
        let mut out = AdjOut::new(false);
        let d = apply(&mut out, vec![sent(7, 100, 1), sent(8, 200, 1)], None);
        assert_eq!(d.announce, vec![(nlri(0), attrs(100))]);
        assert_eq!(out.len(), 1);
        let d = apply(&mut out, vec![sent(9, 100, 2)], None);
        assert!(d.is_empty(), "same attributes");
        let d = apply(&mut out, vec![], None);
        assert_eq!(d.withdraw, vec![nlri(0)]);
        assert!(out.is_empty());
        assert_eq!(out.from(PeerId(2)), 0);
    }

    #[test]
    fn add_path_sends_only_the_paths_that_changed() {
        let mut out = AdjOut::new(true);
        let d = apply(&mut out, vec![sent(2, 100, 1), sent(1, 200, 1)], None);
        assert_eq!(
            d.announce,
            vec![(nlri(1), attrs(200)), (nlri(2), attrs(100))]
        );
        assert_eq!(out.len(), 2);
        // Path 1 changes, path 2 goes, path 3 comes.
        let d = apply(&mut out, vec![sent(3, 50, 1), sent(1, 150, 1)], None);
        assert_eq!(d.withdraw, vec![nlri(2)]);
        assert_eq!(
            d.announce,
            vec![(nlri(1), attrs(150)), (nlri(3), attrs(50))]
        );
        // Nothing changed: nothing sent.
        let d = apply(&mut out, vec![sent(1, 150, 1), sent(3, 50, 1)], None);
        assert!(d.is_empty());
        let d = apply(&mut out, vec![], None);
        assert_eq!(d.withdraw, vec![nlri(1), nlri(3)]);
        assert!(out.is_empty());
    }

    #[test]
    fn a_member_is_not_sent_its_own_paths() {
        // Best path from peer 1: the group announces it, peer 1 gets nothing.
        let mut out = AdjOut::new(false);
        let d = apply(&mut out, vec![sent(1, 100, 1)], Some(PeerId(1)));
        assert!(d.is_empty());
        assert_eq!((out.len(), out.from(PeerId(1))), (1, 1));
        // The best moves to peer 2's path: peer 1 now gets it, peer 2 loses
        // what it had (peer 1's path).
        let old = out.set(pfx(), vec![sent(2, 200, 2)]);
        let (mut d1, mut d2) = (Diff::default(), Diff::default());
        diff(
            pfx(),
            &old,
            out.get(&pfx()),
            false,
            Some(PeerId(1)),
            &mut d1,
        );
        diff(
            pfx(),
            &old,
            out.get(&pfx()),
            false,
            Some(PeerId(2)),
            &mut d2,
        );
        assert_eq!(d1.announce, vec![(nlri(0), attrs(200))]);
        assert!(d2.announce.is_empty() && d2.withdraw == vec![nlri(0)]);
        assert_eq!((out.from(PeerId(1)), out.from(PeerId(2))), (0, 1));
        // ADD-PATH: each member gets every path but its own.
        let mut out = AdjOut::new(true);
        let d = apply(
            &mut out,
            vec![sent(1, 100, 1), sent(2, 200, 2)],
            Some(PeerId(2)),
        );
        assert_eq!(d.announce, vec![(nlri(1), attrs(100))]);
        let d = apply(&mut out, vec![sent(2, 200, 2)], Some(PeerId(2)));
        assert!(d.announce.is_empty() && d.withdraw == vec![nlri(1)]);
    }
}
