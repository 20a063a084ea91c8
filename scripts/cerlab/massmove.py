"""`scripts/lab mass-move`: many /32s change site at once (a site evacuation, a DR move), with the
providers' quotas and rate limits in force, then every invariant of the capture plane is checked:
exactly one holder per /32 at each provider (the workload's NICs where it lives, the capturing
CER's NICs elsewhere), the fabrics deliver (every moved /32 answers from every other site), no
stale provider action executed (the emulators' journals against the CERs' logged intents), no
quota alarm. Needs a lab brought up with `--endpoints N`.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from .actions import need_state, workload_set_default_src
from .daemons import endpoint_op
from .journal import FENCE_EPS_MS, read_intents, stale_mutations
from .messages import LabError, die, log
from .network import batch_addresses
from .processes import run
from .provider import ProviderRelay, assign_to_workload
from .state import write_state
from .topology import CLOUDS, SITES, Lab, Node, name_opt
from .views import active_capturers, alive_nodes, capture_view, converge, try_admin

Report = dict[str, Any]


def plan_moves(lab: Lab, endpoints: dict[str, str], count: int) -> list[tuple[str, str, str]]:
    """COUNT of the --endpoints /32s, each to the site after the one it lives at (onprem -> aws
    -> azure -> oci -> onprem), taken from every site in turn: [(ip, from, to)]."""
    per_site = [[ip for ip in lab.extra_ips(s) if endpoints.get(ip)] for s in SITES]
    order = [ip for group in zip(*per_site, strict=False) for ip in group]
    if count > len(order):
        die(f"mass-move --count {count}: the lab has {len(order)} --endpoints /32s (scripts/lab --endpoints N up: 4 x N)")
    out = []
    for ip in order[:count]:
        old = endpoints[ip]
        out.append((ip, old, SITES[(SITES.index(old) + 1) % len(SITES)]))
    return out


def set_addresses(lab: Lab, site: str, verb: str, ips: list[str]) -> None:
    """`ip addr add|del` of the /32s (on-prem: in the segment's /24) on SITE's workload."""
    plen = 24 if site == "onprem" else 32
    batch_addresses(lab.wl_ns(site), verb, [f"{ip}/{plen}" for ip in ips], check=False)


def released_everywhere(lab: Lab, site: str, ips: list[str]) -> list[str]:
    """Those of IPS every live CER of SITE has released (confirmed: off its NICs)."""
    nodes = [n for n in alive_nodes(lab) if n["site"] == site]
    views = [capture_view(lab, n) for n in nodes]
    return [ip for ip in ips if all(v.get(ip, {}).get("desired") == "release" and v.get(ip, {}).get("phase") == "confirmed" for v in views)]


def operator(lab: Lab, site: str, ips: list[str], out: Report, deadline_s: float) -> None:
    """SITE's cloud operator: as SITE's CERs release the arriving /32s, gives them to the
    workload's NICs (in batches, through the provider API)."""
    t0 = time.time()
    pending = list(ips)
    try:
        with ProviderRelay.start(lab, site) as relay:
            while pending:
                if time.time() - t0 > deadline_s:
                    raise LabError(f"{site}: {len(pending)} /32s not released by its CER within {deadline_s:.0f} s: {pending[:5]}")
                ready = released_everywhere(lab, site, pending)
                if ready:
                    assign_to_workload(lab, site, ready, relay, deadline_s=max(10.0, deadline_s - (time.time() - t0)))
                    pending = [ip for ip in pending if ip not in ready]
                else:
                    time.sleep(0.1)
        out["operator_s"] = round(time.time() - t0, 2)
    except LabError as e:
        out["error"] = str(e)


def emu_get(relay: ProviderRelay, path: str) -> Any:
    st, _, body = relay.request("GET", path)
    if st != 200:
        raise LabError(f"{relay.site} GET {path}: {st} {body[:200]}")
    return json.loads(body)


def provider_check(lab: Lab, site: str, endpoints: dict[str, str], relay: ProviderRelay) -> Report:
    """Exactly one holder per /32 at SITE's provider, the right one; the CERs' NICs within quota."""
    hs = [h for h in emu_get(relay, "/_emulator/holders")["holders"] if not h.get("primary")]
    seen: dict[str, list[str]] = {}
    for h in hs:
        seen.setdefault(h["ip"], []).append(h["nic"])
    capturers = active_capturers(lab, site) if lab.paired(site) else lab.nodes_of(site)
    cer_nics = {nic for n in capturers for nic in lab.cer_nics(n)}
    all_cer = {nic for n in lab.nodes_of(site) for nic in lab.cer_nics(n)}
    wl = set(lab.wl_nics(site))
    problems = []
    for ip, owner in endpoints.items():
        got = seen.get(ip, [])
        want = wl if owner == site else cer_nics
        if len(got) != 1 or got[0] not in want:
            problems.append(f"{site}: {ip} (lives at {owner}) held by {got or 'nobody'}, want one of {sorted(want)}")
    for ip, nics in seen.items():
        if ip not in endpoints and any(n in all_cer for n in nics):
            problems.append(f"{site}: {ip} is no endpoint but on a CER NIC {nics}")
    per_nic: dict[str, int] = {}
    for h in hs:
        if h["nic"] in all_cer:
            per_nic[h["nic"]] = per_nic.get(h["nic"], 0) + 1
    return {"problems": problems, "cer_nic_load": per_nic}


def fencing_check(lab: Lab, site: str, relay: ProviderRelay) -> Report:
    """No provider change executed from a stale intent, for each CER of SITE."""
    body = emu_get(relay, "/_emulator/journal")
    initial = {ip: nic for nic, ips in lab.wl_seed(site).items() for ip in ips}
    out: Report = {"stale": [], "cer_mutations": 0, "fenced": 0, "journal_dropped": body.get("dropped", 0)}
    for n in lab.nodes_of(site):
        intents, fenced = read_intents(lab.f(f"{n['tag']}-ctl.log"))
        bad, n_cer = stale_mutations(body["entries"], intents, set(lab.cer_nics(n)), initial, lab.mgmt_addr(n), FENCE_EPS_MS)
        out["stale"] += [{"node": n["node"], **b} for b in bad]
        out["cer_mutations"] += n_cer
        out["fenced"] += fenced
    return out


def api_calls(relay: ProviderRelay) -> Report:
    """The emulator's call counters (CERs and operator together): served and throttled per action."""
    calls = emu_get(relay, "/_emulator/stats")["calls"]
    return {
        "served": sum(c["served"] for c in calls),
        "throttled": sum(c["throttled"] for c in calls),
        "failed": sum(c["failed"] for c in calls),
        "by_action": {c["action"]: {k: c[k] for k in ("served", "throttled", "failed")} for c in calls},
    }


def unreachable(lab: Lab, site: str, ips: list[str]) -> list[str]:
    """Those of IPS that do not answer a ping from SITE's workload (three tries each)."""
    left = list(ips)
    for _ in range(3):
        if not left:
            break
        script = "for ip in " + " ".join(left) + '; do (ping -c 1 -W 2 -q "$ip" >/dev/null 2>&1 || echo "$ip") & done; wait'
        p = run(["ip", "netns", "exec", lab.wl_ns(site), "sh", "-c", script], check=False, timeout=30)
        left = p.stdout.split()
    return left


def capture_alarms(lab: Lab, node: Node) -> Report:
    c = try_admin(lab.ctl_sock(node), "capture") or {}
    return {"over_quota": c.get("over_quota"), "quota_alarm": c.get("quota_alarm"), "batch": c.get("batch")}


def cmd_mass_move(lab: Lab, count: int, json_out: str | None, timeout: float) -> int:
    state = need_state(lab)
    if not lab.extra:
        die(f"lab {lab.name} has no --endpoints /32s: scripts/lab{name_opt(lab)} down, then scripts/lab{name_opt(lab)} --endpoints N up")
    down = [n["node"] for n in lab.nodes() if n not in alive_nodes(lab)]
    if down:
        die(f"mass-move needs every CER running; not running: {', '.join(down)} (scripts/lab{name_opt(lab)} heal SITE)")
    endpoints = dict(state["endpoints"])
    moves = plan_moves(lab, endpoints, count)
    relays = {s: ProviderRelay.start(lab, s) for s in CLOUDS}
    try:
        for r in relays.values():
            r.request("DELETE", "/_emulator/stats")
        report = run_moves(lab, state.get("failed"), endpoints, moves, relays, timeout)
    finally:
        for r in relays.values():
            r.close()
    text = json.dumps(report, indent=1)
    if json_out:
        Path(json_out).write_text(text + "\n")
    summary(report)
    return 0 if report["ok"] else 1


def run_moves(
    lab: Lab,
    failed: list[str] | None,
    endpoints: dict[str, str],
    moves: list[tuple[str, str, str]],
    relays: dict[str, ProviderRelay],
    timeout: float,
) -> Report:
    log(f"mass move: {len(moves)} /32s at once ({', '.join(f'{a}->{b}' for a, b in sorted({(m[1], m[2]) for m in moves}))})")
    t0 = time.time()
    arriving: dict[str, list[str]] = {s: [] for s in SITES}
    leaving: dict[str, list[str]] = {s: [] for s in SITES}
    for ip, old, to in moves:
        arriving[to].append(ip)
        leaving[old].append(ip)
    # 1. The hosts move: the workloads at the new sites take the addresses.
    for s in SITES:
        set_addresses(lab, s, "add", arriving[s])
    # 2. BGP: each new site's CERs take ownership, the old site's stop advertising.
    for ip, _, to in moves:
        for n in lab.nodes_of(to):
            endpoint_op(lab, n, "move", ip)
    for ip, old, _ in moves:
        for n in lab.nodes_of(old):
            endpoint_op(lab, n, "remove", ip)
    t_bgp = time.time() - t0
    # 3. The old workloads let go of them.
    for s in SITES:
        set_addresses(lab, s, "del", leaving[s])
        if s != "onprem":
            workload_set_default_src(lab, s)
    for ip, _, to in moves:
        endpoints[ip] = to
    write_state(lab, endpoints, failed=failed)
    # 4. At each cloud the operator gives the arriving /32s to the workload once the CERs let go.
    ops: dict[str, Report] = {s: {} for s in CLOUDS}
    threads = [threading.Thread(target=operator, args=(lab, s, arriving[s], ops[s], timeout)) for s in CLOUDS if arriving[s]]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    t_operator = time.time() - t0
    errors = [f"{s} operator: {o['error']}" for s, o in ops.items() if o.get("error")]
    # 5. Everything converged: owners, capture states, fabrics.
    converged = None
    if not errors:
        try:
            converge(lab, endpoints, timeout=timeout)
            converged = round(time.time() - t0, 2)
        except LabError:
            errors.append(f"not converged within {timeout:.0f} s (scripts/lab{name_opt(lab)} status)")
    log(f"mass move: BGP changes made in {t_bgp:.1f}s, operators done at {t_operator:.1f}s, converged at {converged}s")
    # 6. The invariants.
    report: Report = {
        "moved": len(moves),
        "bgp_changes_s": round(t_bgp, 2),
        "operators_done_s": round(t_operator, 2),
        "converged_s": converged,
        "operators": ops,
        "errors": errors,
        "sites": {},
    }
    problems: list[str] = list(errors)
    moved = [ip for ip, _, _ in moves]
    for s in SITES:
        r: Report = {}
        if s in CLOUDS:
            relay = relays[s]
            pc = provider_check(lab, s, endpoints, relay)
            fc = fencing_check(lab, s, relay)
            r.update(holders=pc, fencing=fc, api=api_calls(relay))
            r["capture"] = {n["node"]: capture_alarms(lab, n) for n in lab.nodes_of(s)}
            problems += pc["problems"]
            problems += [f"{s}: stale {b['direction']} of {b['ip']} executed ({b['from']} -> {b['to']})" for b in fc["stale"]]
            problems += [f"{n}: quota alarm {c['quota_alarm']}" for n, c in r["capture"].items() if c.get("quota_alarm")]
        far = [ip for ip in moved if endpoints[ip] != s]
        lost = unreachable(lab, s, far)
        r["reach"] = {"probed": len(far), "unreachable": lost}
        problems += [f"{s} workload: no answer from {ip} (lives at {endpoints[ip]})" for ip in lost]
        report["sites"][s] = r
    report["problems"] = problems
    report["ok"] = not problems
    return report


def summary(report: Report) -> None:
    log(f"mass move of {report['moved']} /32s: converged at {report['converged_s']} s")
    for s, r in report["sites"].items():
        if "api" in r:
            a, f = r["api"], r["fencing"]
            load = sorted(r["holders"]["cer_nic_load"].values(), reverse=True)
            log(
                f"  {s}: API calls {a['served']} served, {a['throttled']} throttled, {a['failed']} failed; "
                f"CER mutations {f['cer_mutations']}, fenced {f['fenced']}, stale executed {len(f['stale'])}; "
                f"/32s per CER NIC {load}"
            )
        log(f"  {s}: {r['reach']['probed'] - len(r['reach']['unreachable'])}/{r['reach']['probed']} moved /32s answer")
    for p in report["problems"][:30]:
        log(f"  PROBLEM {p}")
    log("mass move: every invariant holds" if report["ok"] else f"mass move: {len(report['problems'])} problems")
