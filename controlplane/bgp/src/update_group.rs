//! Update groups: the established peers that get the same UPDATEs, so a
//! change is exported, diffed and encoded once for all of them (FRR's
//! update groups, BIRD's shared channel exports). Peers share a group when
//! everything that shapes what they are sent is equal ([`GroupKey`]): the
//! export context but the peer itself (iBGP or eBGP, reflector client or
//! not, the peer AS, our next hop toward them), the export policy, and the
//! negotiated capabilities that decide the address families, ADD-PATH and
//! the encoding (AS width).
//!
//! The one thing that differs between members is the rule that a path is
//! never sent back to the peer it came from (`export::may_advertise`). The
//! group's Adj-RIB-Out records each path's source, a member's view is the
//! group's minus its own paths, and a change that touches a member's own
//! path gets that member a diff of its own while the others share one.

use crate::adj_out::{diff, AdjOut, Diff, Sent, Wanted};
use crate::export::{export_with_policy, ExportCtx};
use crate::intern::Interner;
use crate::policy::Policy;
use crate::rib::Rib;
use crate::route::{FastMap, FastSet, NextHop, Nlri, Path, PathAttrs, PeerId, Prefix};
use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::sync::Arc;

/// What makes two peers' UPDATEs the same.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupKey {
    /// The export context with `peer` set to `PeerId::NONE`.
    pub ctx: ExportCtx,
    pub policy: Option<Policy>,
    pub ipv4_unicast: bool,
    pub ipv6_unicast: bool,
    /// IPv4 with IPv6 next hops (RFC 8950).
    pub extended_next_hop: bool,
    /// ADD-PATH send: every path, with path ids on the wire.
    pub add_path_tx: bool,
    /// 4-octet AS numbers on the wire.
    pub asn4: bool,
    /// UPDATEs up to 65535 octets (RFC 8654).
    pub extended_message: bool,
    /// Our IPv6 address on the sessions, when IPv4 goes to them only with
    /// IPv6 next hops (it replaces an IPv4 next hop).
    pub v6_self: Option<Ipv6Addr>,
}

impl GroupKey {
    /// Whether the group takes routes of `prefix`'s family.
    pub fn family_ok(&self, prefix: &Prefix) -> bool {
        match prefix {
            Prefix::V4(_) => self.ipv4_unicast || self.extended_next_hop,
            Prefix::V6(_) => self.ipv6_unicast,
        }
    }
}

/// What an update group should hold, computed from the RIB: for each
/// prefix the best path (every path with ADD-PATH send), exported with the
/// group's context and interned. Without an export policy (the one part of
/// an export that may look at the prefix) a path's export depends only on
/// its attribute set, its source and its family, and the RIB's attribute
/// sets are interned: so one pass exports each distinct (set, source)
/// once, however many prefixes share it (a client's thousands of /32s).
pub struct GroupExport<'a> {
    rib: &'a Rib,
    key: &'a GroupKey,
    exported: &'a mut Interner,
    /// (the path's attribute set by address, its source, IPv4) -> export.
    /// The addresses stay valid: the RIB is borrowed for the whole pass.
    memo: FastMap<(usize, PeerId, bool), Option<Arc<PathAttrs>>>,
}

impl<'a> GroupExport<'a> {
    pub fn new(rib: &'a Rib, key: &'a GroupKey, exported: &'a mut Interner) -> Self {
        GroupExport {
            rib,
            key,
            exported,
            memo: FastMap::default(),
        }
    }

    /// The paths the group should have for `prefix`, with the peer each
    /// came from (a member is not sent its own).
    pub fn wanted(&mut self, prefix: &Prefix) -> Wanted {
        if !self.key.family_ok(prefix) {
            return Vec::new();
        }
        let rib = self.rib;
        let sent = |this: &mut Self, path: &Path| {
            Some(Sent {
                id: path.id,
                attrs: this.export(prefix, path)?,
                from: path.source.peer,
            })
        };
        if self.key.add_path_tx && matches!(prefix, Prefix::V4(_)) {
            rib.paths(prefix)
                .iter()
                .filter_map(|path| sent(self, path))
                .collect()
        } else {
            rib.best(prefix)
                .and_then(|path| sent(self, path))
                .into_iter()
                .collect()
        }
    }

    fn export(&mut self, prefix: &Prefix, path: &Path) -> Option<Arc<PathAttrs>> {
        if self.key.policy.is_some() {
            let a = self.compute(prefix, path)?;
            return Some(self.exported.intern(a));
        }
        let k = (
            Arc::as_ptr(&path.attrs) as usize,
            path.source.peer,
            matches!(prefix, Prefix::V4(_)),
        );
        if let Some(done) = self.memo.get(&k) {
            return done.clone();
        }
        let done = self.compute(prefix, path).map(|a| self.exported.intern(a));
        self.memo.insert(k, done.clone());
        done
    }

    fn compute(&self, prefix: &Prefix, path: &Path) -> Option<PathAttrs> {
        let key = self.key;
        let mut attrs = export_with_policy(prefix, path, &key.ctx, key.policy.as_ref())?;
        // An IPv4 next hop cannot go to a peer that only takes IPv4 over
        // MP-BGP with IPv6 next hops.
        if let (Prefix::V4(_), NextHop::V4 { .. }, Some(v6)) = (prefix, attrs.next_hop, key.v6_self)
        {
            attrs.next_hop = NextHop::V6 {
                global: v6,
                link_local: None,
            };
        }
        Some(attrs)
    }
}

/// One update group: its key, its members and its Adj-RIB-Out.
#[derive(Debug)]
pub struct UpdateGroup {
    pub key: GroupKey,
    /// Sorted.
    members: Vec<PeerId>,
    adj_out: AdjOut,
}

/// Who gets a diff: several members (encoded once) or one.
pub type GroupSend = (Vec<PeerId>, Diff);

impl UpdateGroup {
    pub fn new(key: GroupKey) -> Self {
        let adj_out = AdjOut::new(key.add_path_tx);
        UpdateGroup {
            key,
            members: Vec::new(),
            adj_out,
        }
    }

    pub fn members(&self) -> &[PeerId] {
        &self.members
    }

    pub fn is_member(&self, peer: PeerId) -> bool {
        self.members.binary_search(&peer).is_ok()
    }

    pub fn join(&mut self, peer: PeerId) {
        if let Err(i) = self.members.binary_search(&peer) {
            self.members.insert(i, peer);
        }
    }

    pub fn leave(&mut self, peer: PeerId) {
        if let Ok(i) = self.members.binary_search(&peer) {
            self.members.remove(i);
        }
    }

    /// Paths a member has been sent: the group's minus its own.
    pub fn sent_to(&self, peer: PeerId) -> usize {
        self.adj_out.len() - self.adj_out.from(peer)
    }

    /// Sets the group's paths for some prefixes without sending anything
    /// (a new group, filled before its first member gets its table).
    pub fn fill(&mut self, wanted: Vec<(Prefix, Wanted)>) {
        for (prefix, want) in wanted {
            self.adj_out.set(prefix, want);
        }
    }

    /// Sets the group's paths for some prefixes and returns what goes to
    /// whom: one diff for every member none of whose own paths changed (the
    /// common case: encoded once for all of them), and a diff of its own for
    /// each member whose paths are among the changes.
    pub fn update(&mut self, wanted: Vec<(Prefix, Wanted)>) -> Vec<GroupSend> {
        let all = self.adj_out.all_paths();
        let mut common = Diff::default();
        // Members whose own paths changed: those prefixes, and their diffs.
        let mut own: BTreeMap<PeerId, (FastSet<Prefix>, Diff)> = BTreeMap::new();
        for (prefix, want) in wanted {
            let old = self.adj_out.set(prefix, want);
            let new = self.adj_out.get(&prefix);
            diff(prefix, &old, new, all, None, &mut common);
            for from in old.iter().chain(new).map(|s| s.from) {
                if !self.is_member(from) {
                    continue;
                }
                let (prefixes, d) = own.entry(from).or_default();
                if prefixes.insert(prefix) {
                    diff(prefix, &old, new, all, Some(from), d);
                }
            }
        }
        // Members whose own paths changed get their diff even when the
        // others' changes are all they miss: never the common one.
        let rest: Vec<PeerId> = self
            .members
            .iter()
            .copied()
            .filter(|m| !own.contains_key(m))
            .collect();
        let mut out = Vec::with_capacity(own.len() + 1);
        for (peer, (prefixes, mut d)) in own {
            d.extend_filtered(&common, |p| !prefixes.contains(p));
            if !d.is_empty() {
                out.push((vec![peer], d));
            }
        }
        if !rest.is_empty() && !common.is_empty() {
            out.push((rest, common));
        }
        out
    }

    /// What `peer` should have for each of `owed` now: announced as the
    /// group holds it (but the peer's own paths), or withdrawn (harmless
    /// when the peer never had it). For a member that fell behind.
    pub fn current_for(&self, peer: PeerId, owed: &[Nlri]) -> Diff {
        let all = self.adj_out.all_paths();
        let mut d = Diff::default();
        for n in owed {
            let held = self
                .adj_out
                .get(&n.prefix)
                .iter()
                .filter(|s| s.from != peer)
                .find(|s| !all || s.id == n.path_id);
            match held {
                Some(s) => d.announce.push((*n, s.attrs.clone())),
                None => d.withdraw.push(*n),
            }
        }
        d
    }

    /// What `peer` holds from the group for the prefixes `keep` accepts
    /// (`advertised-routes`), with our path ids on an ADD-PATH session;
    /// and how many of the group's paths it was not sent because they came
    /// from it. Without ADD-PATH a prefix whose group path is the peer's
    /// own is not sent at all (the next best is not sent instead), which
    /// is what `diff` does.
    pub fn advertised_to(
        &self,
        peer: PeerId,
        keep: impl Fn(&Prefix) -> bool,
    ) -> (Vec<(Nlri, Sent)>, usize) {
        let all = self.adj_out.all_paths();
        let (mut out, mut own) = (Vec::new(), 0);
        for (prefix, sent) in self.adj_out.iter() {
            if !keep(prefix) {
                continue;
            }
            let held = if all {
                sent
            } else {
                &sent[..sent.len().min(1)]
            };
            for s in held {
                if s.from == peer {
                    own += 1;
                    continue;
                }
                let path_id = if all { s.id } else { 0 };
                out.push((
                    Nlri {
                        prefix: *prefix,
                        path_id,
                    },
                    s.clone(),
                ));
            }
        }
        out.sort_by_key(|(n, _)| *n);
        (out, own)
    }

    /// Everything the group holds for the prefixes `keep` accepts, as `peer`
    /// should see it: its table on establishment or ROUTE-REFRESH.
    pub fn table_for(&self, peer: PeerId, keep: impl Fn(&Prefix) -> bool) -> Diff {
        let all = self.adj_out.all_paths();
        let mut d = Diff::default();
        for (prefix, sent) in self.adj_out.iter() {
            if keep(prefix) {
                diff(*prefix, &[], sent, all, Some(peer), &mut d);
            }
        }
        d
    }
}
