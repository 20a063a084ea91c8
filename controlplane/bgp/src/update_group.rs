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

use crate::adj_out::{diff, AdjOut, Diff, Wanted};
use crate::export::ExportCtx;
use crate::policy::Policy;
use crate::route::{FastSet, PeerId, Prefix};
use std::collections::BTreeMap;
use std::net::Ipv6Addr;

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

/// One update group: its key, its members and its Adj-RIB-Out.
#[derive(Debug)]
pub struct UpdateGroup {
    pub key: GroupKey,
    /// Sorted.
    members: Vec<PeerId>,
    adj_out: AdjOut,
}

/// Who gets a diff: several members (encoded once) or one.
pub type Send = (Vec<PeerId>, Diff);

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

    /// Paths held for the whole group.
    pub fn len(&self) -> usize {
        self.adj_out.len()
    }

    pub fn is_empty(&self) -> bool {
        self.adj_out.is_empty()
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
    pub fn update(&mut self, wanted: Vec<(Prefix, Wanted)>) -> Vec<Send> {
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
