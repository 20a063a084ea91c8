//! The per-neighbor RIB views of the speaker (`adj_in`): a neighbor found
//! by address or interface, what it sent before and after import policy
//! (`received-routes`), and what its update group's Adj-RIB-Out holds for
//! it (`advertised-routes`).

use super::{canonical, Speaker};
use crate::adj_in::{selected, AdvertisedRoute, AdvertisedRoutes, ReceivedRoute, ReceivedRoutes};
use crate::route::{Nlri, PeerId, Prefix};
use std::collections::BTreeMap;
use std::net::IpAddr;

impl Speaker {
    /// The neighbor an operator names: its address (IPv4-mapped IPv6 as
    /// IPv4) or, for an unnumbered neighbor, its interface.
    pub fn find_peer(&self, name: &str) -> Option<PeerId> {
        let ip = name.parse::<IpAddr>().ok().map(canonical);
        self.peers
            .iter()
            .find(|(_, p)| match ip {
                Some(ip) => canonical(p.cfg.remote.ip()) == ip,
                None => p.cfg.interface.as_deref() == Some(name),
            })
            .map(|(id, _)| *id)
    }

    /// What `peer` sent, before and after import policy, for every prefix
    /// or the one `filter` names; `None` for an unknown peer.
    pub fn received_routes(&self, peer: PeerId, filter: Option<&Prefix>) -> Option<ReceivedRoutes> {
        let p = self.peers.get(&peer)?;
        let mut rows: BTreeMap<Nlri, ReceivedRoute> = BTreeMap::new();
        for (nlri, r) in p.received.iter().filter(|(n, _)| selected(filter, n)) {
            rows.insert(
                *nlri,
                ReceivedRoute {
                    nlri: *nlri,
                    pre_policy: Some(r.attrs.clone()),
                    post_policy: None,
                    outcome: Some(r.outcome),
                    stale: false,
                },
            );
        }
        // The post-policy side is the RIB's own Adj-RIB-In (it also holds
        // the paths graceful restart keeps stale, which the pre-policy
        // table of the ended session no longer has).
        for (nlri, attrs) in self.rib.adj_in(peer).filter(|(n, _)| selected(filter, n)) {
            let row = rows.entry(*nlri).or_insert_with(|| ReceivedRoute {
                nlri: *nlri,
                pre_policy: None,
                post_policy: None,
                outcome: None,
                stale: false,
            });
            row.post_policy = Some(attrs.clone());
            row.stale = self.rib.is_stale(peer, *nlri);
        }
        Some(ReceivedRoutes {
            peer,
            keep_received: p.cfg.keep_received,
            source: p.source.clone(),
            routes: rows.into_values().collect(),
        })
    }

    /// What `peer` has been sent (after export policy), for every prefix
    /// or the one `filter` names: its update group's Adj-RIB-Out without
    /// the peer's own paths, owed paths marked pending. `None` for an
    /// unknown peer; no routes while it is not established.
    pub fn advertised_routes(
        &self,
        peer: PeerId,
        filter: Option<&Prefix>,
    ) -> Option<AdvertisedRoutes> {
        let p = self.peers.get(&peer)?;
        let Some(g) = p.group.and_then(|g| self.groups.get(&g)) else {
            return Some(AdvertisedRoutes {
                peer,
                group_members: vec![],
                withheld_own: 0,
                routes: vec![],
            });
        };
        let (sent, withheld_own) =
            g.advertised_to(peer, |prefix| filter.is_none_or(|f| f == prefix));
        let routes = sent
            .into_iter()
            .map(|(nlri, s)| AdvertisedRoute {
                pending: p.owed.contains(&nlri),
                nlri,
                attrs: s.attrs,
                from: s.from,
            })
            .collect();
        Some(AdvertisedRoutes {
            peer,
            group_members: g.members().to_vec(),
            withheld_own,
            routes,
        })
    }
}
