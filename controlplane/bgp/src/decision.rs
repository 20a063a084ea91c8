//! The BGP decision process: RFC 4271 9.1.2.2 with the RFC 4456 route-reflection
//! tie-breakers, in FRR's order. `best` runs the RFC's elimination steps over a
//! candidate set; `compare` and `ranked` order paths for display; `explain` says why.

use crate::route::{AsSegmentKind, Asn, Origin, Path, PeerId};
use std::cmp::Ordering;
use std::fmt;

/// Knobs of the decision process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecisionConfig {
    /// Compare MED between paths from different neighbor ASes
    /// (`bgp always-compare-med`). Off by default, as the RFC says.
    pub always_compare_med: bool,
}

/// One step of the decision process, in the order it is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Step {
    /// Highest LOCAL_PREF (missing = 100).
    LocalPref,
    /// A locally originated path beats a learned one.
    LocalOrigin,
    /// Shortest AS_PATH (an AS_SET counts 1).
    AsPathLen,
    /// Lowest ORIGIN (IGP < EGP < INCOMPLETE).
    Origin,
    /// Lowest MED among paths from the same neighbor AS (missing = 0).
    Med,
    /// eBGP-learned over iBGP-learned.
    Ebgp,
    /// Lowest ORIGINATOR_ID, else the peer's router id (RFC 4456).
    Originator,
    /// Shortest CLUSTER_LIST (RFC 4456).
    ClusterListLen,
    /// Lowest peer session address.
    PeerAddr,
    /// Lowest internal peer id: only distinguishes otherwise identical paths,
    /// so the result never depends on input order.
    PeerId,
    /// Lowest received path identifier (RFC 7911): two paths of one ADD-PATH
    /// peer that tie everywhere else, ordered the same whatever their input order.
    PathId,
}

impl Step {
    /// All steps in application order.
    pub const ALL: [Step; 11] = [
        Step::LocalPref,
        Step::LocalOrigin,
        Step::AsPathLen,
        Step::Origin,
        Step::Med,
        Step::Ebgp,
        Step::Originator,
        Step::ClusterListLen,
        Step::PeerAddr,
        Step::PeerId,
        Step::PathId,
    ];

    /// Short operator-facing name (`cerctl explain`).
    pub fn name(self) -> &'static str {
        match self {
            Step::LocalPref => "local-pref",
            Step::LocalOrigin => "locally originated",
            Step::AsPathLen => "as-path length",
            Step::Origin => "origin",
            Step::Med => "med",
            Step::Ebgp => "ebgp over ibgp",
            Step::Originator => "originator id",
            Step::ClusterListLen => "cluster-list length",
            Step::PeerAddr => "peer address",
            Step::PeerId => "peer id",
            Step::PathId => "path id",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The MED comparison group of a path: the neighbor AS it was learned from.
///
/// RFC 4271 9.1.2.2 c): the first AS of a leading AS_SEQUENCE; a path with an
/// empty AS_PATH or one that starts with an AS_SET belongs to the local AS,
/// represented here as `None` (all such paths form one group).
pub fn med_group(path: &Path) -> Option<Asn> {
    match path.attrs.as_path.first() {
        Some(seg) if seg.kind == AsSegmentKind::Sequence => seg.asns.first().copied(),
        _ => None,
    }
}

/// MED for the decision process: a missing MED is 0 (RFC 4271 9.1.2.2 c).
pub fn med(path: &Path) -> u32 {
    path.attrs.med.unwrap_or(0)
}

fn is_local(path: &Path) -> bool {
    path.source.peer == PeerId::LOCAL
}

fn is_ebgp(path: &Path) -> bool {
    !path.source.ibgp
}

/// Compares `a` and `b` on one step; `Less` means `a` is preferred.
///
/// For `Step::Med` this is the pairwise rule (only same-group paths, unless
/// `always_compare_med`), which is not transitive over three or more paths.
fn cmp_step(step: Step, a: &Path, b: &Path, cfg: &DecisionConfig) -> Ordering {
    match step {
        Step::LocalPref => b.local_pref().cmp(&a.local_pref()),
        Step::LocalOrigin => is_local(b).cmp(&is_local(a)),
        Step::AsPathLen => a.attrs.as_path_len().cmp(&b.attrs.as_path_len()),
        Step::Origin => a.attrs.origin.cmp(&b.attrs.origin),
        Step::Med => {
            if cfg.always_compare_med || med_group(a) == med_group(b) {
                med(a).cmp(&med(b))
            } else {
                Ordering::Equal
            }
        }
        Step::Ebgp => is_ebgp(b).cmp(&is_ebgp(a)),
        Step::Originator => a.originator().cmp(&b.originator()),
        Step::ClusterListLen => a.attrs.cluster_list.len().cmp(&b.attrs.cluster_list.len()),
        Step::PeerAddr => a.source.peer_addr.cmp(&b.source.peer_addr),
        Step::PeerId => a.source.peer.cmp(&b.source.peer),
        Step::PathId => a.rx_id.cmp(&b.rx_id),
    }
}

/// Pairwise preference of two paths, for display ordering: `Less` means `a`
/// is preferred over `b`, `Equal` that they are indistinguishable.
///
/// Because MED is only compared within a neighbor-AS group, this is not a
/// total order over three or more paths (the classic MED non-transitivity).
/// Do not feed it to `sort_by`; use [`ranked`] to order a candidate set and
/// [`best`] to select from one.
pub fn compare(a: &Path, b: &Path, cfg: &DecisionConfig) -> Ordering {
    deciding_step(a, b, cfg).map_or(Ordering::Equal, |(_, o)| o)
}

/// The first step that tells `a` and `b` apart, and its verdict (`Less`: `a`
/// wins). `None` when the paths are indistinguishable.
pub fn deciding_step(a: &Path, b: &Path, cfg: &DecisionConfig) -> Option<(Step, Ordering)> {
    Step::ALL
        .iter()
        .find_map(|&step| match cmp_step(step, a, b, cfg) {
            Ordering::Equal => None,
            o => Some((step, o)),
        })
}

/// Runs the elimination steps over `cands` (indices into `paths`). Records,
/// for every eliminated path, the step that removed it. Returns the winner.
fn select(
    paths: &[Path],
    mut cands: Vec<usize>,
    cfg: &DecisionConfig,
    mut eliminated: Option<&mut [Option<Step>]>,
) -> Option<usize> {
    for step in Step::ALL {
        if cands.len() <= 1 {
            break;
        }
        let before = eliminated.is_some().then(|| cands.clone());
        if step == Step::Med {
            eliminate_med(paths, &mut cands, cfg);
        } else {
            // Every step other than MED compares one key with a total order:
            // keep the candidates equal to the best key.
            let mut top = cands[0];
            for &i in &cands[1..] {
                if cmp_step(step, &paths[i], &paths[top], cfg) == Ordering::Less {
                    top = i;
                }
            }
            cands.retain(|&i| cmp_step(step, &paths[i], &paths[top], cfg) == Ordering::Equal);
        }
        if let (Some(rec), Some(before)) = (eliminated.as_deref_mut(), before) {
            for i in before {
                if !cands.contains(&i) {
                    rec[i] = Some(step);
                }
            }
        }
    }
    // Several left only when they are identical in every step (same peer
    // twice): the first is as good as any.
    cands.into_iter().min()
}

/// RFC 4271 9.1.2.2 c): remove every path whose MED is higher than that of
/// some other remaining path with the same neighbor AS.
fn eliminate_med(paths: &[Path], cands: &mut Vec<usize>, cfg: &DecisionConfig) {
    if cfg.always_compare_med {
        let min = cands.iter().map(|&i| med(&paths[i])).min().unwrap_or(0);
        cands.retain(|&i| med(&paths[i]) == min);
        return;
    }
    // Per-group minimum; candidate sets are small, so a linear table is fine.
    let mut mins: Vec<(Option<Asn>, u32)> = Vec::with_capacity(cands.len());
    for &i in cands.iter() {
        let (g, m) = (med_group(&paths[i]), med(&paths[i]));
        match mins.iter_mut().find(|(k, _)| *k == g) {
            Some((_, min)) => *min = (*min).min(m),
            None => mins.push((g, m)),
        }
    }
    cands.retain(|&i| {
        let g = med_group(&paths[i]);
        mins.iter().any(|&(k, min)| k == g && med(&paths[i]) == min)
    });
}

/// The index of the best path among `paths`, or `None` when empty.
///
/// Applies the RFC 4271 9.1.2.2 elimination steps (with the RFC 4456
/// tie-breakers) to the whole set, so the winner does not depend on the
/// order of `paths` even where MED makes pairwise comparison non-transitive.
pub fn best(paths: &[Path], cfg: &DecisionConfig) -> Option<usize> {
    match paths.len() {
        0 => None,
        1 => Some(0),
        // Two paths: the elimination steps reduce to the pairwise rule (MED
        // within one group or not at all); ties keep the first, as `select`.
        2 => Some(usize::from(
            compare(&paths[1], &paths[0], cfg) == Ordering::Less,
        )),
        n => select(paths, (0..n).collect(), cfg, None),
    }
}

/// All indices of `paths` in preference order: the best, then the best of
/// the rest, and so on. Quadratic; meant for display of one prefix.
pub fn ranked(paths: &[Path], cfg: &DecisionConfig) -> Vec<usize> {
    let mut rest: Vec<usize> = (0..paths.len()).collect();
    let mut out = Vec::with_capacity(paths.len());
    while let Some(w) = select(paths, rest.clone(), cfg, None) {
        out.push(w);
        rest.retain(|&i| i != w);
    }
    out
}

/// Why the best path won, for `cerctl explain`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// Index of the best path.
    pub best: usize,
    /// Index of the runner-up (the best of the others), if any.
    pub runner_up: Option<usize>,
    /// The step at which the runner-up was eliminated (`None`: no runner-up,
    /// or it is identical to the best path).
    pub step: Option<Step>,
    /// Short human reason, e.g. `local-pref 200 > 100`.
    pub reason: String,
}

/// Explains the selection over `paths`: which path won, which came second
/// and why the second lost. `None` when `paths` is empty.
pub fn explain(paths: &[Path], cfg: &DecisionConfig) -> Option<Explanation> {
    let mut elim = vec![None; paths.len()];
    let best = select(paths, (0..paths.len()).collect(), cfg, Some(&mut elim))?;
    let others: Vec<usize> = (0..paths.len()).filter(|&i| i != best).collect();
    let Some(runner) = select(paths, others, cfg, None) else {
        return Some(Explanation {
            best,
            runner_up: None,
            step: None,
            reason: "only path".to_string(),
        });
    };
    let step = elim[runner];
    let reason = match step {
        Some(step) => reason(paths, best, runner, step, cfg),
        None => "identical to the best path".to_string(),
    };
    Some(Explanation {
        best,
        runner_up: Some(runner),
        step,
        reason,
    })
}

/// A short reason why `winner` beat `loser`, judged pairwise: the first step
/// that tells them apart. Prefer [`explain`] for a whole candidate set (with
/// MED, the path that eliminated the loser need not be the winner).
pub fn beat_reason(winner: &Path, loser: &Path, cfg: &DecisionConfig) -> String {
    match deciding_step(winner, loser, cfg) {
        Some((step, _)) => step_text(step, winner, loser, cfg),
        None => "identical to the best path".to_string(),
    }
}

fn reason(paths: &[Path], best: usize, runner: usize, step: Step, cfg: &DecisionConfig) -> String {
    let (w, r) = (&paths[best], &paths[runner]);
    if step == Step::Med && !cfg.always_compare_med {
        // The runner-up lost to a same-group path, not necessarily the winner.
        let g = med_group(r);
        let min = paths
            .iter()
            .filter(|p| med_group(p) == g)
            .map(med)
            .filter(|&m| m < med(r))
            .min()
            .unwrap_or(0);
        let group = match g {
            Some(asn) => format!("neighbor AS {asn}"),
            None => "the local AS".to_string(),
        };
        return format!("med {} > {} of a path from {group}", med(r), min);
    }
    step_text(step, w, r, cfg)
}

fn origin_name(o: Origin) -> &'static str {
    match o {
        Origin::Igp => "IGP",
        Origin::Egp => "EGP",
        Origin::Incomplete => "incomplete",
    }
}

fn step_text(step: Step, w: &Path, l: &Path, cfg: &DecisionConfig) -> String {
    match step {
        Step::LocalPref => format!("local-pref {} > {}", w.local_pref(), l.local_pref()),
        Step::LocalOrigin => "locally originated".to_string(),
        Step::AsPathLen => format!(
            "shorter as-path ({} < {})",
            w.attrs.as_path_len(),
            l.attrs.as_path_len()
        ),
        Step::Origin => format!(
            "origin {} < {}",
            origin_name(w.attrs.origin),
            origin_name(l.attrs.origin)
        ),
        Step::Med => {
            let how = if cfg.always_compare_med {
                " (always-compare-med)"
            } else {
                ""
            };
            format!("med {} < {}{how}", med(w), med(l))
        }
        Step::Ebgp => "ebgp over ibgp".to_string(),
        Step::Originator => format!("originator id {} < {}", w.originator(), l.originator()),
        Step::ClusterListLen => format!(
            "shorter cluster list ({} < {})",
            w.attrs.cluster_list.len(),
            l.attrs.cluster_list.len()
        ),
        Step::PeerAddr => format!(
            "peer address {} < {}",
            w.source.peer_addr, l.source.peer_addr
        ),
        Step::PeerId => format!("peer id {} < {}", w.source.peer.0, l.source.peer.0),
        Step::PathId => format!("received path id {} < {}", w.rx_id, l.rx_id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::{AsSegment, NextHop, PathAttrs, PathSource};
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Arc;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("test address")
    }

    /// A learned path from peer `id` (address 10.0.0.id, router id 1.1.1.id).
    fn path(id: u32, ibgp: bool, f: impl FnOnce(&mut PathAttrs)) -> Path {
        let mut a = PathAttrs::local(NextHop::V4 {
            addr: ip("192.0.2.1"),
        });
        f(&mut a);
        let octet = u8::try_from(id).expect("small id");
        Path {
            attrs: Arc::new(a),
            source: Arc::new(PathSource {
                peer: PeerId(id),
                peer_addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, octet)),
                router_id: Ipv4Addr::new(1, 1, 1, octet),
                peer_as: if ibgp { 65000 } else { 64500 + id },
                ibgp,
                rr_client: false,
            }),
            rx_id: 0,
            id: 0,
        }
    }

    fn seq(asns: &[Asn]) -> Vec<AsSegment> {
        vec![AsSegment {
            kind: AsSegmentKind::Sequence,
            asns: asns.to_vec(),
        }]
    }

    fn local_path() -> Path {
        Path {
            attrs: Arc::new(PathAttrs::local(NextHop::V4 {
                addr: ip("192.0.2.9"),
            })),
            source: Arc::new(PathSource::local(ip("9.9.9.9"), 65000)),
            rx_id: 0,
            id: 0,
        }
    }

    const CFG: DecisionConfig = DecisionConfig {
        always_compare_med: false,
    };

    /// Checks that `winner` (index) wins for every rotation and reversal of
    /// the input, and that the explanation names `step`.
    fn assert_wins(paths: &[Path], winner: usize, step: Step) {
        let w = &paths[winner];
        for rot in 0..paths.len() {
            for rev in [false, true] {
                let mut p = paths.to_vec();
                p.rotate_left(rot);
                if rev {
                    p.reverse();
                }
                let b = best(&p, &CFG).expect("non-empty");
                assert_eq!(&p[b], w, "rotation {rot} reversed {rev}");
            }
        }
        let e = explain(paths, &CFG).expect("non-empty");
        assert_eq!(e.best, winner);
        assert_eq!(e.step, Some(step), "reason: {}", e.reason);
    }

    #[test]
    fn empty_and_single() {
        assert_eq!(best(&[], &CFG), None);
        assert_eq!(best(&[path(1, true, |_| {})], &CFG), Some(0));
        assert!(explain(&[], &CFG).is_none());
        let e = explain(&[path(1, true, |_| {})], &CFG).expect("one");
        assert_eq!((e.best, e.runner_up, e.step), (0, None, None));
        assert_eq!(e.reason, "only path");
    }

    #[test]
    fn step_local_pref() {
        let p = [
            path(1, true, |a| a.local_pref = Some(100)),
            path(2, true, |a| a.local_pref = Some(200)),
            // Missing LOCAL_PREF counts as 100.
            path(3, true, |_| {}),
        ];
        assert_wins(&p, 1, Step::LocalPref);
        let e = explain(&p, &CFG).expect("paths");
        assert_eq!(e.reason, "local-pref 200 > 100");
        assert_eq!(
            compare(&p[0], &p[2], &CFG),
            Ordering::Less,
            "lower peer address"
        );
        assert_eq!(
            deciding_step(&p[0], &p[2], &CFG).map(|s| s.0),
            Some(Step::Originator)
        );
    }

    #[test]
    fn step_local_origin() {
        // A learned path with a shorter everything still loses to a local one
        // of equal local-pref, whatever its AS path.
        let mut lp = local_path();
        Arc::make_mut(&mut lp.attrs).as_path = seq(&[65000, 65000]);
        let p = [path(1, false, |a| a.as_path = seq(&[])), lp];
        assert_wins(&p, 1, Step::LocalOrigin);
        assert_eq!(
            explain(&p, &CFG).expect("paths").reason,
            "locally originated"
        );
    }

    #[test]
    fn step_as_path_len_counts_set_as_one() {
        let p = [
            path(1, false, |a| a.as_path = seq(&[64501, 64502, 64503])),
            path(2, false, |a| {
                a.as_path = vec![
                    AsSegment {
                        kind: AsSegmentKind::Sequence,
                        asns: vec![64502],
                    },
                    AsSegment {
                        kind: AsSegmentKind::Set,
                        asns: vec![1, 2, 3, 4],
                    },
                ]
            }),
        ];
        assert_wins(&p, 1, Step::AsPathLen);
        assert_eq!(
            explain(&p, &CFG).expect("paths").reason,
            "shorter as-path (2 < 3)"
        );
    }

    #[test]
    fn step_origin() {
        let p = [
            path(1, true, |a| a.origin = Origin::Incomplete),
            path(2, true, |a| a.origin = Origin::Egp),
            path(3, true, |a| a.origin = Origin::Igp),
        ];
        assert_wins(&p, 2, Step::Origin);
        assert_eq!(explain(&p, &CFG).expect("paths").reason, "origin IGP < EGP");
    }

    #[test]
    fn step_med_same_neighbor_as() {
        let p = [
            path(1, false, |a| {
                a.as_path = seq(&[64501]);
                a.med = Some(50)
            }),
            path(2, false, |a| {
                a.as_path = seq(&[64501]);
                a.med = Some(10)
            }),
        ];
        assert_wins(&p, 1, Step::Med);
        assert_eq!(
            explain(&p, &CFG).expect("paths").reason,
            "med 50 > 10 of a path from neighbor AS 64501"
        );
    }

    #[test]
    fn med_missing_is_zero() {
        let p = [
            path(1, false, |a| {
                a.as_path = seq(&[64501]);
                a.med = Some(1)
            }),
            path(2, false, |a| a.as_path = seq(&[64501])),
        ];
        assert_wins(&p, 1, Step::Med);
    }

    #[test]
    fn med_not_compared_across_neighbor_as_unless_configured() {
        let p = [
            path(1, false, |a| {
                a.as_path = seq(&[64501]);
                a.med = Some(10)
            }),
            path(2, false, |a| {
                a.as_path = seq(&[64502]);
                a.med = Some(50)
            }),
        ];
        // Different neighbor AS: MED ignored, falls to router id.
        assert_wins(&p, 0, Step::Originator);
        let p2 = [p[1].clone(), p[0].clone()];
        assert_eq!(best(&p2, &CFG), Some(1));
        let always = DecisionConfig {
            always_compare_med: true,
        };
        // Flip router ids so always-compare-med is what decides.
        let q = [p[1].clone(), p[0].clone()];
        assert_eq!(best(&q, &always), Some(1));
        let e = explain(&q, &always).expect("paths");
        assert_eq!(e.step, Some(Step::Med));
        assert_eq!(e.reason, "med 10 < 50 (always-compare-med)");
        assert_eq!(compare(&q[1], &q[0], &always), Ordering::Less);
        assert_eq!(compare(&q[0], &q[1], &CFG), Ordering::Greater);
    }

    #[test]
    fn med_local_as_group_empty_path_and_leading_set() {
        // Empty AS_PATH and a leading AS_SET both belong to the local AS.
        let a = path(1, true, |a| a.med = Some(30));
        let b = path(2, true, |a| {
            a.as_path = vec![AsSegment {
                kind: AsSegmentKind::Set,
                asns: vec![64501],
            }];
            a.med = Some(20)
        });
        assert_eq!(med_group(&a), None);
        assert_eq!(med_group(&b), None);
        // b has a longer AS path (1 vs 0), so compare a vs an iBGP path with
        // an empty path and a lower MED instead.
        let c = path(3, true, |a| a.med = Some(5));
        let p = [a, c];
        assert_wins(&p, 1, Step::Med);
        assert_eq!(
            explain(&p, &CFG).expect("paths").reason,
            "med 30 > 5 of a path from the local AS"
        );
    }

    /// The classic MED non-transitivity case (RFC 3345 / RFC 4271 MED groups):
    /// A (AS 64501, MED 100, rid .1), B (AS 64502, MED 0, rid .2),
    /// C (AS 64501, MED 50, rid .3). Pairwise: A<B by router id, B<C by router
    /// id, C<A by MED -> a cycle. The RFC's elimination removes A (higher MED
    /// than C in group 64501), then B beats C by router id: B wins, whatever
    /// the input order.
    #[test]
    fn med_non_transitive_triangle_is_order_independent() {
        let a = path(1, false, |x| {
            x.as_path = seq(&[64501]);
            x.med = Some(100)
        });
        let b = path(2, false, |x| {
            x.as_path = seq(&[64502]);
            x.med = Some(0)
        });
        let c = path(3, false, |x| {
            x.as_path = seq(&[64501]);
            x.med = Some(50)
        });
        // The pairwise cycle exists.
        assert_eq!(compare(&a, &b, &CFG), Ordering::Less);
        assert_eq!(compare(&b, &c, &CFG), Ordering::Less);
        assert_eq!(compare(&c, &a, &CFG), Ordering::Less);
        let all = [a.clone(), b.clone(), c.clone()];
        for perm in permutations(&[0, 1, 2]) {
            let p: Vec<Path> = perm.iter().map(|&i| all[i].clone()).collect();
            let w = best(&p, &CFG).expect("non-empty");
            assert_eq!(p[w], b, "permutation {perm:?}");
            let r: Vec<&Path> = ranked(&p, &CFG).into_iter().map(|i| &p[i]).collect();
            assert_eq!(r, vec![&b, &c, &a], "ranking for {perm:?}");
        }
        let e = explain(&all, &CFG).expect("paths");
        assert_eq!(e.best, 1);
        assert_eq!(e.runner_up, Some(2));
        assert_eq!(e.step, Some(Step::Originator));
        assert_eq!(e.reason, "originator id 1.1.1.2 < 1.1.1.3");
        // With always-compare-med, B (MED 0) wins on MED outright.
        let always = DecisionConfig {
            always_compare_med: true,
        };
        assert_eq!(best(&all, &always), Some(1));
        assert_eq!(explain(&all, &always).expect("paths").step, Some(Step::Med));
    }

    #[test]
    fn step_ebgp_over_ibgp() {
        let p = [
            path(1, true, |a| a.as_path = seq(&[64501])),
            path(2, false, |a| a.as_path = seq(&[64502])),
        ];
        assert_wins(&p, 1, Step::Ebgp);
        assert_eq!(explain(&p, &CFG).expect("paths").reason, "ebgp over ibgp");
    }

    #[test]
    fn step_originator_id_overrides_router_id() {
        let p = [
            // Router id 1.1.1.1 but reflected: ORIGINATOR_ID 5.5.5.5.
            path(1, true, |a| {
                a.originator_id = Some(ip("5.5.5.5"));
                a.cluster_list = vec![ip("7.7.7.7")]
            }),
            // Router id 1.1.1.2, no ORIGINATOR_ID.
            path(2, true, |_| {}),
        ];
        assert_wins(&p, 1, Step::Originator);
        assert_eq!(
            explain(&p, &CFG).expect("paths").reason,
            "originator id 1.1.1.2 < 5.5.5.5"
        );
    }

    #[test]
    fn step_cluster_list_len() {
        // Same originator through two reflectors: the shorter cluster list wins.
        let p = [
            path(1, true, |a| {
                a.originator_id = Some(ip("5.5.5.5"));
                a.cluster_list = vec![ip("7.7.7.7"), ip("8.8.8.8")]
            }),
            path(2, true, |a| {
                a.originator_id = Some(ip("5.5.5.5"));
                a.cluster_list = vec![ip("8.8.8.8")]
            }),
        ];
        assert_wins(&p, 1, Step::ClusterListLen);
        assert_eq!(
            explain(&p, &CFG).expect("paths").reason,
            "shorter cluster list (1 < 2)"
        );
    }

    #[test]
    fn step_peer_addr() {
        let mut p = [
            path(1, true, |a| a.originator_id = Some(ip("5.5.5.5"))),
            path(2, true, |a| a.originator_id = Some(ip("5.5.5.5"))),
        ];
        // Peer 2 gets the lower address.
        Arc::make_mut(&mut p[1].source).peer_addr = IpAddr::V4(ip("10.0.0.0"));
        assert_wins(&p, 1, Step::PeerAddr);
        assert_eq!(
            explain(&p, &CFG).expect("paths").reason,
            "peer address 10.0.0.0 < 10.0.0.1"
        );
    }

    #[test]
    fn step_path_id_orders_two_paths_of_one_add_path_peer() {
        let mut p = [
            path(1, true, |a| a.originator_id = Some(ip("5.5.5.5"))),
            path(1, true, |a| a.originator_id = Some(ip("5.5.5.5"))),
        ];
        p[0].rx_id = 9;
        p[1].rx_id = 4;
        assert_wins(&p, 1, Step::PathId);
    }

    #[test]
    fn step_peer_id_and_identical_paths() {
        let mut p = [
            path(2, true, |a| a.originator_id = Some(ip("5.5.5.5"))),
            path(1, true, |a| a.originator_id = Some(ip("5.5.5.5"))),
        ];
        let addr = IpAddr::V4(ip("10.0.0.1"));
        Arc::make_mut(&mut p[0].source).peer_addr = addr;
        Arc::make_mut(&mut p[1].source).peer_addr = addr;
        assert_wins(&p, 1, Step::PeerId);
        // Exact duplicates: either is fine, the result is stable.
        let d = [p[0].clone(), p[0].clone()];
        assert_eq!(best(&d, &CFG), Some(0));
        assert_eq!(compare(&d[0], &d[1], &CFG), Ordering::Equal);
        let e = explain(&d, &CFG).expect("paths");
        assert_eq!(
            (e.step, e.reason.as_str()),
            (None, "identical to the best path")
        );
        assert_eq!(
            beat_reason(&d[0], &d[1], &CFG),
            "identical to the best path"
        );
    }

    #[test]
    fn earlier_steps_dominate_later_ones() {
        // Higher local-pref beats a locally originated path? No: local-pref
        // comes first, so a learned path with 200 beats a local one with 100.
        let learned = path(1, true, |a| a.local_pref = Some(200));
        let p = [local_path(), learned];
        assert_wins(&p, 1, Step::LocalPref);
        // Shorter AS path beats a better origin and MED.
        let p = [
            path(1, false, |a| {
                a.as_path = seq(&[64501, 64501]);
                a.origin = Origin::Igp;
                a.med = Some(0)
            }),
            path(2, false, |a| {
                a.as_path = seq(&[64501]);
                a.origin = Origin::Incomplete;
                a.med = Some(1000)
            }),
        ];
        assert_wins(&p, 1, Step::AsPathLen);
        assert_eq!(beat_reason(&p[1], &p[0], &CFG), "shorter as-path (1 < 2)");
    }

    fn permutations(items: &[usize]) -> Vec<Vec<usize>> {
        if items.len() <= 1 {
            return vec![items.to_vec()];
        }
        let mut out = Vec::new();
        for i in 0..items.len() {
            let mut rest = items.to_vec();
            let x = rest.remove(i);
            for mut p in permutations(&rest) {
                p.insert(0, x);
                out.push(p);
            }
        }
        out
    }

    /// Deterministic pseudo-random paths; every permutation of every subset
    /// of five must select the same path, and `ranked` must start with it.
    #[test]
    fn order_independence_over_all_permutations() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        for cfg in [
            CFG,
            DecisionConfig {
                always_compare_med: true,
            },
        ] {
            for _round in 0..40 {
                let paths: Vec<Path> = (1..=5)
                    .map(|id| {
                        let ibgp = next(2) == 0;
                        let lp = 100 + 100 * u32::try_from(next(2)).unwrap_or(0);
                        let nas = 64501 + u32::try_from(next(2)).unwrap_or(0);
                        let med = u32::try_from(next(3)).unwrap_or(0) * 10;
                        let rid = u8::try_from(next(3)).unwrap_or(0);
                        path(id, ibgp, |a| {
                            a.local_pref = Some(lp);
                            a.as_path = seq(&[nas]);
                            a.med = Some(med);
                            a.originator_id = Some(Ipv4Addr::new(5, 5, 5, rid));
                        })
                    })
                    .collect();
                let expect = &paths[best(&paths, &cfg).expect("five")];
                assert_eq!(&paths[ranked(&paths, &cfg)[0]], expect);
                for perm in permutations(&[0, 1, 2, 3, 4]) {
                    let p: Vec<Path> = perm.iter().map(|&i| paths[i].clone()).collect();
                    let w = best(&p, &cfg).expect("five");
                    assert_eq!(&p[w], expect, "perm {perm:?} cfg {cfg:?}");
                }
            }
        }
    }

    #[test]
    fn two_path_fast_path_agrees_with_elimination() {
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        let mut make = |id: u32| {
            let ibgp = next(2) == 0;
            let lp = 100 + 100 * u32::try_from(next(2)).unwrap_or(0);
            let nas = 64501 + u32::try_from(next(2)).unwrap_or(0);
            let med = u32::try_from(next(3)).unwrap_or(0);
            let rid = u8::try_from(next(2)).unwrap_or(0);
            let origin = [Origin::Igp, Origin::Egp][usize::from(next(2) == 0)];
            path(id, ibgp, |a| {
                a.local_pref = Some(lp);
                a.as_path = seq(&[nas]);
                a.med = Some(med);
                a.origin = origin;
                a.originator_id = Some(Ipv4Addr::new(5, 5, 5, rid));
            })
        };
        for cfg in [
            CFG,
            DecisionConfig {
                always_compare_med: true,
            },
        ] {
            for _ in 0..500 {
                let pair = [make(1), make(2)];
                let fast = best(&pair, &cfg);
                let full = select(&pair, vec![0, 1], &cfg, None);
                assert_eq!(fast, full, "{pair:?}");
            }
            let same = [local_path(), local_path()];
            assert_eq!(best(&same, &cfg), select(&same, vec![0, 1], &cfg, None));
        }
    }
}
