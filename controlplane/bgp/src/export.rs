//! What we advertise to whom, with which attributes (RFC 4271 scope rules,
//! RFC 1997 well-known communities, RFC 4456 reflection), and the import-side
//! loop checks and attribute hygiene applied before import policy.

use crate::policy::Policy;
use crate::route::{Asn, Community, NextHop, Path, PathAttrs, PeerId, Prefix};
use std::net::Ipv4Addr;

/// Attribute flag bits (RFC 4271 4.3).
const FLAG_OPTIONAL: u8 = 0x80;
const FLAG_TRANSITIVE: u8 = 0x40;
const FLAG_PARTIAL: u8 = 0x20;

/// The peer we are exporting to, and who we are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportCtx {
    pub local_as: Asn,
    pub router_id: Ipv4Addr,
    /// `Some` when we are a route reflector (our CLUSTER_ID).
    pub cluster_id: Option<Ipv4Addr>,
    pub peer: PeerId,
    pub peer_as: Asn,
    pub ibgp: bool,
    /// The peer is one of our route-reflector clients.
    pub rr_client: bool,
    /// Our next hop toward this peer; required for eBGP, optional for iBGP.
    pub next_hop_self: Option<NextHop>,
    /// LOCAL_PREF sent to iBGP peers when the path has none.
    pub local_pref_default: u32,
}

/// Whether `path` may be advertised to the peer at all (scope rules only,
/// no attribute work): not back to its source, NO_ADVERTISE / NO_EXPORT,
/// and the iBGP split horizon relaxed by route reflection (RFC 4456 8).
pub fn may_advertise(path: &Path, to: &ExportCtx) -> bool {
    let src = &path.source;
    if src.peer == to.peer {
        return false;
    }
    let a = &path.attrs;
    if a.has_community(Community::NO_ADVERTISE) {
        return false;
    }
    if !to.ibgp
        && (a.has_community(Community::NO_EXPORT)
            || a.has_community(Community::NO_EXPORT_SUBCONFED))
    {
        return false;
    }
    if src.peer == PeerId::LOCAL || !src.ibgp || !to.ibgp {
        // Local or eBGP-learned paths go everywhere; anything goes to eBGP.
        return true;
    }
    // iBGP-learned to iBGP: only a route reflector re-advertises, from a
    // client to everyone, from a non-client to clients only.
    to.cluster_id.is_some() && (src.rr_client || to.rr_client)
}

/// The attributes to advertise `path` with to the peer in `to`, or `None`
/// when it must not be advertised. No export policy; see
/// [`export_with_policy`].
pub fn export(path: &Path, to: &ExportCtx) -> Option<PathAttrs> {
    export_inner(path, to, Some)
}

/// Like [`export`], with the peer's export policy applied in the middle, as
/// FRR does: scope rules and attribute hygiene first (so a policy can set a
/// MED toward eBGP or add NO_EXPORT for the receiving AS), then the policy,
/// then the eBGP rewrite (our AS in front of any policy prepend, next hop
/// self, iBGP-only attributes stripped).
pub fn export_with_policy(
    prefix: &Prefix,
    path: &Path,
    to: &ExportCtx,
    policy: Option<&Policy>,
) -> Option<PathAttrs> {
    match policy {
        Some(pol) => export_inner(path, to, |a| pol.apply(prefix, &a)),
        None => export(path, to),
    }
}

fn export_inner(
    path: &Path,
    to: &ExportCtx,
    policy: impl FnOnce(PathAttrs) -> Option<PathAttrs>,
) -> Option<PathAttrs> {
    if !may_advertise(path, to) {
        return None;
    }
    if !to.ibgp && to.next_hop_self.is_none() {
        // An eBGP peer needs our address as next hop; without one we cannot
        // advertise (a configuration error the session layer should report).
        return None;
    }
    let src = &path.source;
    let local = src.peer == PeerId::LOCAL;
    let mut a = PathAttrs::clone(&path.attrs);

    // MED learned from another AS is not passed to a third AS (RFC 4271
    // 5.1.4); like FRR, only our own MED (local paths, or set by the export
    // policy below) goes to eBGP.
    if !to.ibgp && !local {
        a.med = None;
    }
    // Reflection (iBGP-learned to iBGP, allowed above only when we are an RR).
    if to.ibgp && src.ibgp && !local {
        if let Some(cluster) = to.cluster_id {
            a.originator_id.get_or_insert(src.router_id);
            a.cluster_list.insert(0, cluster);
        }
    }
    // Unrecognized attributes: only optional transitive ones travel on,
    // marked Partial (RFC 4271 5 and 9.1.3).
    a.unknown
        .retain(|u| u.flags & (FLAG_OPTIONAL | FLAG_TRANSITIVE) == FLAG_OPTIONAL | FLAG_TRANSITIVE);
    for u in &mut a.unknown {
        u.flags |= FLAG_PARTIAL;
    }

    let mut a = policy(a)?;

    if to.ibgp {
        a.local_pref.get_or_insert(to.local_pref_default);
        if let Some(nh) = to.next_hop_self {
            a.next_hop = nh;
        }
    } else {
        // Sender-side loop prevention: the peer would drop it anyway.
        if a.as_path.iter().any(|s| s.asns.contains(&to.peer_as)) {
            return None;
        }
        a.prepend_as(to.local_as, 1);
        a.next_hop = to.next_hop_self?;
        a.local_pref = None;
        a.originator_id = None;
        a.cluster_list.clear();
    }
    Some(a)
}

/// Import loop detection; `Err` carries the reason for logs and counters.
/// Drop the route (treat as withdrawn) on `Err`.
///
/// - eBGP path whose AS_PATH contains our AS (RFC 4271 9.1.2);
/// - iBGP path whose ORIGINATOR_ID is our router id (RFC 4456 8);
/// - iBGP path whose CLUSTER_LIST contains our cluster id, when we are a
///   reflector.
pub fn import_check(
    attrs: &PathAttrs,
    local_as: Asn,
    router_id: Ipv4Addr,
    cluster_id: Option<Ipv4Addr>,
    ibgp: bool,
) -> Result<(), &'static str> {
    if !ibgp && attrs.as_path.iter().any(|s| s.asns.contains(&local_as)) {
        return Err("AS_PATH contains our AS (AS loop)");
    }
    if !ibgp {
        // ORIGINATOR_ID and CLUSTER_LIST from eBGP are discarded by
        // `import_normalize`, not treated as loops (RFC 7606 7.9/7.10).
        return Ok(());
    }
    if attrs.originator_id == Some(router_id) {
        return Err("ORIGINATOR_ID is our router id (reflection loop)");
    }
    if let Some(cid) = cluster_id {
        if attrs.cluster_list.contains(&cid) {
            return Err("CLUSTER_LIST contains our cluster id (reflection loop)");
        }
    }
    Ok(())
}

/// Import hygiene, after [`import_check`] and before import policy:
/// from eBGP, LOCAL_PREF, ORIGINATOR_ID and CLUSTER_LIST are discarded
/// (RFC 4271 5.1.5, RFC 7606 7.5/7.9/7.10); then a missing LOCAL_PREF is set
/// to `local_pref_default`, so the decision process and what we send to
/// iBGP peers agree on the value.
pub fn import_normalize(attrs: &mut PathAttrs, ibgp: bool, local_pref_default: u32) {
    if !ibgp {
        attrs.local_pref = None;
        attrs.originator_id = None;
        attrs.cluster_list.clear();
    }
    attrs.local_pref.get_or_insert(local_pref_default);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Action, DefaultAction, Modify, Term};
    use crate::route::{AsSegment, AsSegmentKind, PathSource, RawAttr};
    use std::net::IpAddr;
    use std::sync::Arc;

    const LOCAL_AS: Asn = 65000;
    const RID: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 1);
    const CLUSTER: Ipv4Addr = Ipv4Addr::new(10, 255, 255, 1);
    const NH_SELF: NextHop = NextHop::V4 {
        addr: Ipv4Addr::new(198, 51, 100, 1),
    };
    const NH_ORIG: NextHop = NextHop::V4 {
        addr: Ipv4Addr::new(192, 0, 2, 7),
    };

    #[derive(Clone, Copy, PartialEq, Debug)]
    enum Kind {
        Local,
        Ebgp,
        IbgpClient,
        IbgpNonClient,
    }

    fn source(id: u32, kind: Kind) -> Arc<PathSource> {
        if kind == Kind::Local {
            return Arc::new(PathSource::local(RID, LOCAL_AS));
        }
        let o = u8::try_from(id).expect("small id");
        Arc::new(PathSource {
            peer: PeerId(id),
            peer_addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, o)),
            router_id: Ipv4Addr::new(1, 1, 1, o),
            peer_as: if kind == Kind::Ebgp { 64500 } else { LOCAL_AS },
            ibgp: kind != Kind::Ebgp,
            rr_client: kind == Kind::IbgpClient,
        })
    }

    fn path(id: u32, kind: Kind, f: impl FnOnce(&mut PathAttrs)) -> Path {
        let mut a = PathAttrs::local(NH_ORIG);
        if kind == Kind::Ebgp {
            a.as_path = vec![AsSegment {
                kind: AsSegmentKind::Sequence,
                asns: vec![64500, 64501],
            }];
        }
        f(&mut a);
        Path::new(Arc::new(a), source(id, kind))
    }

    fn ctx(peer: u32, ibgp: bool, rr_client: bool, rr: bool) -> ExportCtx {
        ExportCtx {
            local_as: LOCAL_AS,
            router_id: RID,
            cluster_id: rr.then_some(CLUSTER),
            peer: PeerId(peer),
            peer_as: if ibgp { LOCAL_AS } else { 64999 },
            ibgp,
            rr_client,
            next_hop_self: if ibgp { None } else { Some(NH_SELF) },
            local_pref_default: 100,
        }
    }

    #[test]
    fn never_back_to_source() {
        let p = path(5, Kind::Ebgp, |_| {});
        assert!(export(&p, &ctx(5, false, false, false)).is_none());
        assert!(export(&p, &ctx(6, false, false, false)).is_some());
        let p = path(5, Kind::IbgpClient, |_| {});
        assert!(export(&p, &ctx(5, true, true, true)).is_none());
    }

    /// RFC 4456 8: who gets an iBGP-learned route, for every source kind,
    /// target kind and reflector on/off.
    #[test]
    fn reflection_matrix() {
        use Kind::*;
        // (source, rr, to_client, expected) for iBGP targets.
        let cases = [
            (Local, false, false, true),
            (Local, true, false, true),
            (Local, true, true, true),
            (Ebgp, false, false, true),
            (Ebgp, true, false, true),
            (Ebgp, true, true, true),
            // Not a reflector: iBGP split horizon.
            (IbgpNonClient, false, false, false),
            (IbgpClient, false, false, false),
            (IbgpClient, false, true, false),
            // Reflector: client -> clients and non-clients.
            (IbgpClient, true, true, true),
            (IbgpClient, true, false, true),
            // Reflector: non-client -> clients only.
            (IbgpNonClient, true, true, true),
            (IbgpNonClient, true, false, false),
        ];
        for (src, rr, to_client, want) in cases {
            let p = path(2, src, |_| {});
            let got = export(&p, &ctx(3, true, to_client, rr));
            assert_eq!(got.is_some(), want, "{src:?} rr={rr} to_client={to_client}");
            // Every kind may go to eBGP.
            assert!(
                export(&p, &ctx(3, false, false, rr)).is_some(),
                "{src:?} to eBGP"
            );
        }
    }

    #[test]
    fn reflection_sets_originator_and_cluster_list() {
        let p = path(2, Kind::IbgpClient, |a| {
            a.cluster_list = vec![Ipv4Addr::new(9, 9, 9, 9)]
        });
        let a = export(&p, &ctx(3, true, false, true)).expect("reflected");
        assert_eq!(a.originator_id, Some(Ipv4Addr::new(1, 1, 1, 2)));
        assert_eq!(a.cluster_list, vec![CLUSTER, Ipv4Addr::new(9, 9, 9, 9)]);
        assert_eq!(a.next_hop, NH_ORIG, "a reflector keeps the next hop");
        // An existing ORIGINATOR_ID is kept.
        let p = path(2, Kind::IbgpNonClient, |a| {
            a.originator_id = Some(Ipv4Addr::new(7, 7, 7, 7))
        });
        let a = export(&p, &ctx(3, true, true, true)).expect("reflected");
        assert_eq!(a.originator_id, Some(Ipv4Addr::new(7, 7, 7, 7)));
        assert_eq!(a.cluster_list, vec![CLUSTER]);
        // Not reflection: local and eBGP-learned paths get neither.
        for kind in [Kind::Local, Kind::Ebgp] {
            let a = export(&path(2, kind, |_| {}), &ctx(3, true, true, true)).expect("sent");
            assert_eq!(
                (a.originator_id, a.cluster_list.len()),
                (None, 0),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn ibgp_local_pref_and_next_hop() {
        // Missing LOCAL_PREF gets the default; a present one is kept.
        let mut c = ctx(3, true, false, false);
        c.local_pref_default = 150;
        let a = export(&path(2, Kind::Ebgp, |_| {}), &c).expect("sent");
        assert_eq!(a.local_pref, Some(150));
        assert_eq!(a.next_hop, NH_ORIG);
        assert_eq!(
            a.as_path[0].asns,
            vec![64500, 64501],
            "iBGP: AS_PATH unchanged"
        );
        assert_eq!(a.med, None);
        let a = export(&path(2, Kind::Ebgp, |a| a.local_pref = Some(300)), &c).expect("sent");
        assert_eq!(a.local_pref, Some(300));
        // MED from eBGP is passed inside the AS.
        let a = export(&path(2, Kind::Ebgp, |a| a.med = Some(7)), &c).expect("sent");
        assert_eq!(a.med, Some(7));
        // next-hop-self on iBGP.
        c.next_hop_self = Some(NH_SELF);
        let a = export(&path(2, Kind::Ebgp, |_| {}), &c).expect("sent");
        assert_eq!(a.next_hop, NH_SELF);
    }

    #[test]
    fn ebgp_rewrite() {
        let p = path(2, Kind::IbgpNonClient, |a| {
            a.as_path = vec![AsSegment {
                kind: AsSegmentKind::Sequence,
                asns: vec![64510],
            }];
            a.local_pref = Some(200);
            a.med = Some(50);
            a.originator_id = Some(Ipv4Addr::new(7, 7, 7, 7));
            a.cluster_list = vec![CLUSTER];
        });
        let a = export(&p, &ctx(3, false, false, true)).expect("sent");
        assert_eq!(
            a.as_path,
            vec![AsSegment {
                kind: AsSegmentKind::Sequence,
                asns: vec![LOCAL_AS, 64510],
            }],
            "merged into the leading SEQUENCE"
        );
        assert_eq!(a.next_hop, NH_SELF);
        assert_eq!(a.local_pref, None);
        assert_eq!(
            a.med, None,
            "MED learned elsewhere is not passed to another AS"
        );
        assert_eq!(a.originator_id, None);
        assert!(a.cluster_list.is_empty());
        // A local path: empty AS_PATH becomes [local AS]; its MED is ours.
        let a = export(
            &path(0, Kind::Local, |a| a.med = Some(5)),
            &ctx(3, false, false, false),
        )
        .expect("sent");
        assert_eq!(a.as_path[0].asns, vec![LOCAL_AS]);
        assert_eq!(a.med, Some(5));
        // A leading AS_SET gets a new SEQUENCE in front.
        let p = path(2, Kind::Ebgp, |a| {
            a.as_path = vec![AsSegment {
                kind: AsSegmentKind::Set,
                asns: vec![64501, 64502],
            }]
        });
        let a = export(&p, &ctx(3, false, false, false)).expect("sent");
        assert_eq!(a.as_path.len(), 2);
        assert_eq!(a.as_path[0].asns, vec![LOCAL_AS]);
        // No next hop for an eBGP peer: not advertised.
        let mut c = ctx(3, false, false, false);
        c.next_hop_self = None;
        assert!(export(&p, &c).is_none());
        // Sender-side loop check: the peer's AS is already in the path.
        let mut c = ctx(3, false, false, false);
        c.peer_as = 64501;
        assert!(export(&path(2, Kind::Ebgp, |_| {}), &c).is_none());
    }

    #[test]
    fn well_known_communities() {
        let no_adv = path(2, Kind::Ebgp, |a| {
            a.communities = vec![Community::NO_ADVERTISE]
        });
        assert!(export(&no_adv, &ctx(3, true, false, false)).is_none());
        assert!(export(&no_adv, &ctx(3, false, false, false)).is_none());
        for c in [Community::NO_EXPORT, Community::NO_EXPORT_SUBCONFED] {
            let p = path(2, Kind::IbgpClient, |a| {
                a.communities = vec![Community::new(65000, 1), c]
            });
            assert!(
                export(&p, &ctx(3, false, false, true)).is_none(),
                "{c} to eBGP"
            );
            let a = export(&p, &ctx(3, true, true, true)).expect("stays inside the AS");
            assert_eq!(
                a.communities,
                vec![Community::new(65000, 1), c],
                "communities kept"
            );
        }
        // Ordinary communities go to eBGP unchanged.
        let p = path(2, Kind::Ebgp, |a| {
            a.communities = vec![Community::new(64500, 9)]
        });
        let a = export(&p, &ctx(3, false, false, false)).expect("sent");
        assert_eq!(a.communities, vec![Community::new(64500, 9)]);
    }

    #[test]
    fn unknown_attributes() {
        let raw = |flags: u8, code: u8| RawAttr {
            flags,
            code,
            value: vec![1, 2, 3],
        };
        let p = path(2, Kind::Ebgp, |a| {
            a.unknown = vec![
                raw(0xC0, 99),  // optional transitive: passed, Partial set
                raw(0xE0, 100), // already partial: passed
                raw(0x80, 101), // optional non-transitive: dropped
            ]
        });
        for to in [ctx(3, false, false, false), ctx(3, true, false, false)] {
            let a = export(&p, &to).expect("sent");
            assert_eq!(
                a.unknown,
                vec![raw(0xE0, 99), raw(0xE0, 100)],
                "ibgp={}",
                to.ibgp
            );
        }
    }

    fn policy(m: Modify) -> Policy {
        Policy::new(
            "out",
            DefaultAction::Reject,
            vec![Term {
                name: "t".into(),
                matches: Default::default(),
                action: Action::Accept(m),
            }],
        )
    }

    #[test]
    fn export_policy_runs_between_hygiene_and_rewrite() {
        let pfx = Prefix::V4("10.77.60.5/32".parse().expect("prefix"));
        let p = path(2, Kind::IbgpClient, |a| a.med = Some(99));
        let pol = policy(Modify {
            set_med: Some(20),
            set_local_pref: Some(500),
            add_communities: vec![Community::NO_EXPORT],
            prepend: Some(crate::policy::Prepend {
                asn: LOCAL_AS,
                times: 2,
            }),
            ..Modify::default()
        });
        let a =
            export_with_policy(&pfx, &p, &ctx(3, false, false, true), Some(&pol)).expect("sent");
        assert_eq!(a.med, Some(20), "policy MED survives toward eBGP");
        assert_eq!(a.local_pref, None, "LOCAL_PREF never goes to eBGP");
        assert_eq!(a.as_path[0].asns, vec![LOCAL_AS; 3], "our AS + 2 prepends");
        assert_eq!(
            a.communities,
            vec![Community::NO_EXPORT],
            "added for the receiving AS"
        );
        // Rejecting policy.
        let rej = Policy::reject_all("none");
        assert!(export_with_policy(&pfx, &p, &ctx(3, false, false, true), Some(&rej)).is_none());
        // No policy = export().
        assert_eq!(
            export_with_policy(&pfx, &p, &ctx(3, false, false, true), None),
            export(&p, &ctx(3, false, false, true))
        );
        // Scope rules come first: the policy cannot resurrect a NO_EXPORT path.
        let ne = path(2, Kind::IbgpClient, |a| {
            a.communities = vec![Community::NO_EXPORT]
        });
        let acc = Policy::accept_all("all");
        assert!(export_with_policy(&pfx, &ne, &ctx(3, false, false, true), Some(&acc)).is_none());
    }

    #[test]
    fn import_checks() {
        let mut a = PathAttrs::local(NH_ORIG);
        a.as_path = vec![AsSegment {
            kind: AsSegmentKind::Sequence,
            asns: vec![64500, LOCAL_AS, 64501],
        }];
        assert_eq!(
            import_check(&a, LOCAL_AS, RID, None, false),
            Err("AS_PATH contains our AS (AS loop)")
        );
        // Our AS inside an AS_SET counts too.
        a.as_path[0].kind = AsSegmentKind::Set;
        assert!(import_check(&a, LOCAL_AS, RID, None, false).is_err());
        // iBGP: not checked.
        assert_eq!(import_check(&a, LOCAL_AS, RID, None, true), Ok(()));
        let mut a = PathAttrs::local(NH_ORIG);
        a.originator_id = Some(RID);
        assert_eq!(
            import_check(&a, LOCAL_AS, RID, Some(CLUSTER), true),
            Err("ORIGINATOR_ID is our router id (reflection loop)")
        );
        let mut a = PathAttrs::local(NH_ORIG);
        a.originator_id = Some(Ipv4Addr::new(1, 1, 1, 1));
        a.cluster_list = vec![Ipv4Addr::new(9, 9, 9, 9), CLUSTER];
        assert_eq!(
            import_check(&a, LOCAL_AS, RID, Some(CLUSTER), true),
            Err("CLUSTER_LIST contains our cluster id (reflection loop)")
        );
        // Not a reflector: the cluster list is not ours to check.
        assert_eq!(import_check(&a, LOCAL_AS, RID, None, true), Ok(()));
        // From eBGP these attributes are discarded, not loops.
        let mut e = a.clone();
        e.originator_id = Some(RID);
        assert_eq!(
            import_check(&e, LOCAL_AS, RID, Some(CLUSTER), false),
            Ok(())
        );
        assert_eq!(
            import_check(
                &PathAttrs::local(NH_ORIG),
                LOCAL_AS,
                RID,
                Some(CLUSTER),
                false
            ),
            Ok(())
        );
    }

    #[test]
    fn import_normalization() {
        let mut a = PathAttrs::local(NH_ORIG);
        a.local_pref = Some(1000);
        a.originator_id = Some(Ipv4Addr::new(7, 7, 7, 7));
        a.cluster_list = vec![CLUSTER];
        let mut e = a.clone();
        import_normalize(&mut e, false, 100);
        assert_eq!(e.local_pref, Some(100), "eBGP LOCAL_PREF is ignored");
        assert_eq!((e.originator_id, e.cluster_list.len()), (None, 0));
        let mut i = a.clone();
        import_normalize(&mut i, true, 100);
        assert_eq!(i, a, "iBGP attributes kept");
        let mut m = PathAttrs::local(NH_ORIG);
        import_normalize(&mut m, true, 120);
        assert_eq!(m.local_pref, Some(120), "missing LOCAL_PREF defaulted");
    }
}
