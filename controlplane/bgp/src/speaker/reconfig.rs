//! Neighbor changes the speaker applies to a running session (a reload of
//! cer-control's configuration), none of which resets it: a new import
//! policy re-evaluates the kept pre-policy Adj-RIB-In (`adj_in`) or asks
//! the peer to resend (ROUTE-REFRESH, RFC 2918); a new export policy or
//! next-hop-self moves the peer to the update group of its new key and
//! sends it the difference between the two groups' views.

use super::{queue_diff, Speaker};
use crate::adj_in::AdjRibIn;
use crate::adj_out::Diff;
use crate::events::{Output, SessionCmd};
use crate::policy::Policy;
use crate::route::{FastMap, FastSet, Nlri, PathAttrs, PeerId, Prefix};
use std::sync::Arc;

/// How an import-policy change reached a neighbor's routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportReapply {
    /// The same policy: nothing to do.
    Unchanged,
    /// Not established: its next session imports with the new policy.
    NotEstablished,
    /// Every kept received path re-evaluated (`paths` of them).
    Reevaluated { paths: usize },
    /// The peer was asked to resend its routes (ROUTE-REFRESH).
    RouteRefresh,
    /// Received paths are not kept and the peer does not do ROUTE-REFRESH:
    /// the policy applies to what it sends from now on; a session reset
    /// applies it to everything.
    FromNowOn,
}

impl ImportReapply {
    pub fn describe(self) -> String {
        match self {
            ImportReapply::Unchanged => "unchanged".into(),
            ImportReapply::NotEstablished => "applies when the session comes up".into(),
            ImportReapply::Reevaluated { paths } => {
                format!("re-evaluated {paths} received paths (no session reset)")
            }
            ImportReapply::RouteRefresh => {
                "asked the peer to resend its routes (ROUTE-REFRESH, RFC 2918)".into()
            }
            ImportReapply::FromNowOn => "applies to routes the peer sends from now on (received routes not kept, no ROUTE-REFRESH from the peer); reset the session to apply it to all".into(),
        }
    }
}

impl Speaker {
    /// Sets a neighbor's import policy and applies it to the routes it has
    /// sent; returns how, and the prefixes whose candidates changed.
    pub fn set_import_policy(
        &mut self,
        peer: PeerId,
        policy: Option<Policy>,
    ) -> (ImportReapply, Vec<Prefix>) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return (ImportReapply::Unchanged, vec![]);
        };
        if p.cfg.import == policy {
            return (ImportReapply::Unchanged, vec![]);
        }
        p.cfg.import = policy;
        let (Some(source), true) = (p.source.clone(), p.up) else {
            return (ImportReapply::NotEstablished, vec![]);
        };
        if !p.cfg.keep_received {
            return (self.route_refresh(peer), vec![]);
        }
        let received: Vec<(Nlri, Arc<PathAttrs>)> = p
            .received
            .iter()
            .map(|(n, r)| (*n, r.attrs.clone()))
            .collect();
        // Attribute sets are shared: checked and normalized once each.
        let mut checked: FastMap<usize, Result<Arc<PathAttrs>, &'static str>> = FastMap::default();
        let mut touched = Vec::with_capacity(received.len());
        for (nlri, attrs) in &received {
            let key = Arc::as_ptr(attrs) as usize;
            let c = match checked.get(&key) {
                Some(c) => c.clone(),
                None => {
                    let c = self.check_and_normalize(attrs, source.ibgp);
                    checked.insert(key, c.clone());
                    c
                }
            };
            let Some(p) = self.peers.get_mut(&peer) else {
                break;
            };
            let (accepted, outcome) =
                super::import_policy(&mut self.imported, &c, p.cfg.import.as_ref(), nlri);
            if let Some(r) = p.received.get_mut(nlri) {
                r.outcome = outcome;
            }
            self.rib.update(&source, *nlri, accepted);
            touched.push(nlri.prefix);
        }
        self.propagate(&touched);
        self.imported.sweep();
        (
            ImportReapply::Reevaluated {
                paths: received.len(),
            },
            touched,
        )
    }

    /// Asks an established peer to resend every family of the session.
    fn route_refresh(&mut self, peer: PeerId) -> ImportReapply {
        let Some(n) = self.peers.get(&peer).and_then(|p| p.negotiated.clone()) else {
            return ImportReapply::NotEstablished;
        };
        if !n.route_refresh {
            return ImportReapply::FromNowOn;
        }
        for f in n.families() {
            self.outbox
                .push(Output::Send(peer, SessionCmd::RouteRefresh(f)));
        }
        ImportReapply::RouteRefresh
    }

    /// Turns keeping a neighbor's received paths on or off. Turned on on an
    /// established session, the peer is asked to resend (ROUTE-REFRESH) to
    /// fill the table; turned off, the table is dropped.
    pub fn set_keep_received(&mut self, peer: PeerId, keep: bool) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.cfg.keep_received == keep {
            return;
        }
        p.cfg.keep_received = keep;
        if !keep {
            p.received = AdjRibIn::default();
        } else if p.up {
            self.route_refresh(peer);
        }
    }

    /// Sets what decides the UPDATEs a neighbor gets besides its session
    /// (export policy, next-hop-self). An established peer moves to the
    /// update group of its new key and is sent the difference between what
    /// it had and what that group holds. Returns whether anything changed.
    pub fn set_export(
        &mut self,
        peer: PeerId,
        policy: Option<Policy>,
        next_hop_self: bool,
    ) -> bool {
        let Some(p) = self.peers.get_mut(&peer) else {
            return false;
        };
        if p.cfg.export == policy && p.cfg.next_hop_self == next_hop_self {
            return false;
        }
        p.cfg.export = policy;
        p.cfg.next_hop_self = next_hop_self;
        if p.up {
            self.regroup(peer);
        }
        true
    }

    /// A neighbor's description (shown in `show bgp summary`).
    pub fn set_description(&mut self, peer: PeerId, description: Option<String>) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.cfg.description = description;
        }
    }

    /// Moves an established peer into the group of its (changed) key and
    /// sends it what differs between its old and new view; what it was owed
    /// is sent as the new group holds it.
    fn regroup(&mut self, id: PeerId) {
        let Some(p) = self.peers.get(&id) else {
            return;
        };
        let owed = p.owed.clone();
        let owed_eor = p.owed_eor.clone();
        let view = |s: &Speaker| -> FastMap<Nlri, Arc<PathAttrs>> {
            s.peers
                .get(&id)
                .and_then(|p| p.group)
                .and_then(|g| s.groups.get(&g))
                .map(|g| g.table_for(id, |_| true).announce.into_iter().collect())
                .unwrap_or_default()
        };
        let before = view(self);
        self.join_group(id);
        let after = view(self);
        let mut d = Diff::default();
        let gone: FastSet<Nlri> = before
            .keys()
            .chain(owed.iter())
            .filter(|n| !after.contains_key(n))
            .copied()
            .collect();
        d.withdraw.extend(gone);
        for (n, a) in after {
            let had = before
                .get(&n)
                .is_some_and(|b| !owed.contains(&n) && (Arc::ptr_eq(b, &a) || **b == *a));
            if !had {
                d.announce.push((n, a));
            }
        }
        queue_diff(&mut self.outbox, vec![id], d);
        for f in owed_eor {
            self.outbox.push(Output::Send(id, SessionCmd::EndOfRib(f)));
        }
        self.exported.sweep();
    }
}
