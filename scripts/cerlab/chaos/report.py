"""What a soak leaves behind: `report.md` and `report.json` (operations and outage per kind,
quiescent points, fences, violations), `violation-N/` with the evidence of a violation, and
`summarize` over several runs' reports.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NotRequired, TypedDict

from ..topology import CLOUDS, LAB_SCRIPT, PY
from .bounds import CONVERGE_BOUND, DARK_BOUND, FENCE_EPS_MS, NOBODY_BOUND, REACH_BOUND
from .plan import KINDS
from .run_state import Json

if TYPE_CHECKING:
    from .soak import Soak


class KindStats(TypedDict):
    """One operation kind in report.json `by_kind`."""

    count: int
    errors: int
    outages_ms: list[int]
    p50_ms: NotRequired[int | None]
    p99_ms: NotRequired[int | None]
    max_ms: NotRequired[int | None]


def pctl(values: list[int], p: float) -> int | None:
    """The p-th percentile (nearest rank) of values, None for none."""
    if not values:
        return None
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * (len(v) - 1)))))
    return v[k]


def keep_evidence(s: Soak) -> None:
    """Keeps the evidence of the first violation in `violation-N/` (see the package doc)."""
    d = s.out / f"violation-{len(list(s.out.glob('violation-*'))) + 1}"
    d.mkdir(parents=True, exist_ok=True)
    v = s.violations[0]
    (d / "violation.json").write_text(
        json.dumps(
            {
                "seed": s.seed,
                "invariant": v.invariant,
                "message": v.message,
                "evidence": v.evidence,
                "all": [str(x) for x in s.violations],
            },
            indent=1,
            default=str,
        )
    )
    with s.mu:
        (d / "operations.json").write_text(json.dumps([{k: x for k, x in o.items() if not k.startswith("_")} for o in s.oplog], indent=1))
    for site in CLOUDS:
        for what in ("state", "journal"):
            try:
                _, body = s.emu(site, "GET", f"/_emulator/{what}")
                (d / f"{site}-emulator-{what}.json").write_text(json.dumps(body, indent=1))
            except Exception as e:  # noqa: BLE001
                (d / f"{site}-emulator-{what}.json").write_text(json.dumps({"error": str(e)}))
    try:
        (d / "explain.json").write_text(json.dumps(s.checks.explain_all(), indent=1))
    except Exception as e:  # noqa: BLE001
        (d / "explain.json").write_text(json.dumps({"error": str(e)}))
    status = subprocess.run(
        [PY, str(LAB_SCRIPT), "--name", s.lab.name, "status"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60
    )
    (d / "lab-status.txt").write_text(status.stdout)
    logs = d / "logs"
    logs.mkdir(exist_ok=True)
    for f in s.lab.run_dir.glob("*"):
        if f.suffix in (".log", ".json", ".toml", ".conf"):
            try:
                (logs / f.name).write_bytes(f.read_bytes())
            except OSError:
                pass
    for f in s.out.glob("*"):
        if f.is_file() and (f.suffix in (".pcap", ".jsonl") or f.name.startswith("probe-")):
            try:
                (d / f.name).write_bytes(f.read_bytes())
            except OSError:
                pass
    s.evidence_dir = d
    print(f"chaos: VIOLATION of {v.invariant}: {v.message}\nchaos: seed {s.seed}; evidence kept in {d}", file=sys.stderr, flush=True)


def write_report(s: Soak) -> None:
    """`report.json` and `report.md` (printed too)."""
    outages = s.checks.outages_per_op() if s.t0 else {}
    by_kind: dict[str, KindStats] = {}
    for op in s.oplog:
        k = op["kind"]
        e = by_kind.setdefault(k, {"count": 0, "errors": 0, "outages_ms": []})
        e["count"] += 1
        if op.get("error"):
            e["errors"] += 1
        if op["i"] in outages:
            e["outages_ms"].append(outages[op["i"]])
    rows = []
    for k in KINDS:
        stats = by_kind.get(k)
        if not stats:
            continue
        o = stats["outages_ms"]
        stats["p50_ms"], stats["p99_ms"], stats["max_ms"] = pctl(o, 50), pctl(o, 99), max(o) if o else None
        rows.append(f"| {k} | {stats['count']} | {stats['p50_ms']} | {stats['p99_ms']} | {stats['max_ms']} |")
    rep: dict[str, object] = {
        "seed": s.seed,
        "minutes": s.minutes,
        "lab": s.lab.name,
        "operations": len(s.oplog),
        "planned": s.planned,
        "by_kind": by_kind,
        "quiescent_points": s.quiescent,
        "violations": [{"invariant": v.invariant, "message": v.message} for v in s.violations],
        "evidence_dir": str(s.evidence_dir) if s.evidence_dir else None,
        "fences": s.fence_stats,
        "explained": s.explains,
        "bounds": {
            "converge_s": CONVERGE_BOUND,
            "reach_s": REACH_BOUND,
            "dark_s": DARK_BOUND,
            "nobody_s": NOBODY_BOUND,
            "fence_eps_ms": FENCE_EPS_MS,
        },
    }
    (s.out / "report.json").write_text(json.dumps(rep, indent=1, default=str))
    md = [
        f"# Chaos soak: seed {s.seed}, {s.minutes} min",
        "",
        f"Lab `{s.lab.name}`, {len(s.oplog)} operations run (of {s.planned if s.planned is not None else '?'} planned), "
        f"{len(s.quiescent)} quiescent points, "
        f"**{len(s.violations)} violations**.",
        "",
        "Outage per operation: the longest run of lost 50 ms probes, over every pair of /32s, that began while the "
        "operation ran or within 5 s after it ended (overlapping operations share an outage).",
        "",
        "| kind | operations | outage p50 ms | p99 ms | max ms |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ]
    if s.quiescent:
        conv = [q["converge_s"] for q in s.quiescent]
        reach = [q["reach_s"] for q in s.quiescent]
        md += [
            f"Quiescent points: convergence after the last operation {min(conv)}-{max(conv)} s (bound {CONVERGE_BOUND:.0f} s), "
            f"then every pair reachable within {max(reach)} s (bound {REACH_BOUND:.0f} s).",
            "",
        ]
    if s.fence_stats:
        md += [
            "Provider mutations from the CERs checked against their intents: "
            + ", ".join(f"{s}: {v['cer_mutations']} mutations, {v['fenced']} fenced" for s, v in sorted(s.fence_stats.items())),
            "",
        ]
    for v in s.violations:
        md += [f"- VIOLATION `{v.invariant}`: {v.message}"]
    if s.evidence_dir:
        md += ["", f"Evidence: `{s.evidence_dir}`"]
    (s.out / "report.md").write_text("\n".join(md) + "\n")
    print("\n".join(md), flush=True)


def summarize(dirs: list[str]) -> int:
    """Markdown over several runs' report.json (for perf/reports/DATE-chaos.md): per run, then
    outage per kind over all runs."""
    # Each run's report.json, as written by write_report (possibly by an older version).
    reps: list[Json] = [json.loads((Path(d) / "report.json").read_text()) for d in dirs]
    md = ["| seed | minutes | operations (planned) | quiescent points | convergence s | violations |", "|---|---|---|---|---|---|"]
    allk: dict[str, KindStats] = {}
    for r in reps:
        conv = [q["converge_s"] for q in r["quiescent_points"]]
        md.append(
            f"| {r['seed']} | {r['minutes']} | {r['operations']} ({r.get('planned')}) | {len(conv)} | "
            f"{min(conv, default='-')}-{max(conv, default='-')} | {len(r['violations'])} |"
        )
        for k, e in r["by_kind"].items():
            a = allk.setdefault(k, {"count": 0, "errors": 0, "outages_ms": []})
            a["count"] += e["count"]
            a["outages_ms"] += e["outages_ms"]
    md += ["", "| kind | operations | outage p50 ms | p99 ms | max ms |", "|---|---|---|---|---|"]
    for k in KINDS:
        if k in allk:
            o = allk[k]["outages_ms"]
            md.append(f"| {k} | {allk[k]['count']} | {pctl(o, 50)} | {pctl(o, 99)} | {max(o) if o else None} |")
    for r in reps:
        for v in r["violations"]:
            md.append(f"\n- seed {r['seed']}: VIOLATION `{v['invariant']}`: {v['message']} (evidence {r.get('evidence_dir')})")
    print("\n".join(md))
    return 0
