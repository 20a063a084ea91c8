"""The schedule of a soak, drawn from its seed before anything runs (`plan`), and the shape of
an operation (`Op`) as `schedule.json` and `operations.jsonl` record it.
"""

import random
from typing import Required, TypedDict

from ..topology import CLOUDS

KINDS = [
    "move",
    "add",
    "remove",
    "flap",
    "cer_kill",
    "freeze",
    "wan_cut",
    "vrrp_kill",
    "rr_restart",
    "fault_throttle",
    "fault_500",
    "fault_lost_reply",
    "fault_latency",
    "fault_consistency",
    "bgp_reset",
]
WEIGHTS = {
    "move": 5,
    "add": 2,
    "remove": 2,
    "flap": 4,
    "cer_kill": 2,
    "freeze": 2,
    "wan_cut": 2,
    "vrrp_kill": 1,
    "rr_restart": 1,
    "fault_throttle": 2,
    "fault_500": 2,
    "fault_lost_reply": 1,
    "fault_latency": 2,
    "fault_consistency": 1,
    "bgp_reset": 2,
}
NEW_IPS = [f"10.77.60.{i}" for i in range(20, 40)]


class OpParams(TypedDict, total=False):
    """An operation's parameters (which ones depends on its kind)."""

    ip: str
    to: str
    hold_ms: int
    site: str
    hold: float
    node: str
    window: float
    count: int
    delay_ms: int
    move_delay_ms: int


# An operation: planned (i, at, kind, params), then what running it recorded.
Op = TypedDict(
    "Op",
    {
        "i": Required[int],
        "at": Required[float],
        "kind": Required[str],
        "params": Required[OpParams],
        "start_ms": int,
        "end_ms": int,
        "error": str,
        "trace": str,
        "note": str,
        "from": str | None,
        "nodes": list[str],
        "pids": list[int],
        "node": str,
        "unconsumed": int | None,
    },
    total=False,
)

DEFAULT_ENDPOINTS = {"10.77.60.10": "onprem", "10.77.60.11": "aws", "10.77.60.12": "azure", "10.77.60.13": "oci"}


def plan(
    seed: int,
    minutes: float,
    sites_nodes: dict[str, list[str]],
    kinds: list[str] | None = None,
    endpoints: dict[str, str] | None = None,
) -> list[Op]:
    """The schedule, from the seed (and the lab's endpoints at the start, by default those of a
    fresh lab): [{i, at, kind, params}]. `sites_nodes`: site -> nodes."""
    rng = random.Random(seed)
    kinds = [k for k in KINDS if not kinds or k in kinds]
    horizon = minutes * 60.0
    endpoints = dict(endpoints or DEFAULT_ENDPOINTS)
    all_nodes = [n for s in sites_nodes for n in sites_nodes[s]]
    first = list(kinds)
    rng.shuffle(first)
    ops: list[Op] = []
    t = 5.0
    i = 0
    # Leave time at the end for the operations to finish (holds are at most ~25 s).
    while t < max(horizon - 30.0, 20.0):
        kind = first.pop(0) if first else rng.choices(kinds, [WEIGHTS[k] for k in kinds])[0]
        p: OpParams = {}
        if kind == "move":
            ip = rng.choice(sorted(endpoints))
            p = {"ip": ip, "to": rng.choice([s for s in sites_nodes if s != endpoints[ip]])}
            endpoints[ip] = p["to"]
        elif kind == "add":
            free = [a for a in NEW_IPS if a not in endpoints]
            if not free or len(endpoints) >= 7:
                kind = "flap"
            else:
                p = {"ip": rng.choice(free), "to": rng.choice(sorted(sites_nodes))}
                endpoints[p["ip"]] = p["to"]
        elif kind == "remove":
            if len(endpoints) <= 3:
                kind = "flap"
            else:
                ip = rng.choice(sorted(endpoints))
                p = {"ip": ip}
                del endpoints[ip]
        if kind == "flap":
            ip = rng.choice(sorted(endpoints))
            p = {"ip": ip, "to": rng.choice([s for s in sites_nodes if s != endpoints[ip]]), "hold_ms": rng.randint(100, 1000)}
        elif kind == "cer_kill":
            p = {"site": rng.choice(sorted(sites_nodes)), "hold": round(rng.uniform(2, 15), 2)}
        elif kind == "freeze":
            p = {"node": rng.choice(all_nodes), "hold": round(rng.uniform(0.5, 12), 2)}
        elif kind == "wan_cut":
            p = {"node": rng.choice(all_nodes), "hold": round(rng.uniform(1, 12), 2)}
        elif kind == "vrrp_kill":
            p = {"hold": round(rng.uniform(2, 10), 2)}
        elif kind == "rr_restart":
            p = {"hold": round(rng.uniform(0.5, 5), 2)}
        elif kind == "bgp_reset":
            p = {"node": rng.choice(all_nodes)}
        elif kind.startswith("fault_"):
            p = {"site": rng.choice(CLOUDS), "window": round(rng.uniform(8, 25), 2)}
            if kind in ("fault_throttle", "fault_500"):
                p["count"] = rng.randint(2, 8)
            elif kind == "fault_lost_reply":
                p["count"] = rng.randint(1, 3)
                p["delay_ms"] = rng.randint(4500, 7000)
            elif kind == "fault_latency":
                p["count"] = rng.randint(2, 6)
                p["delay_ms"] = rng.randint(2000, 6000)
            else:
                p["move_delay_ms"] = rng.randint(2000, 6000)
        ops.append({"i": i, "at": round(t, 3), "kind": kind, "params": p})
        i += 1
        t += rng.uniform(1.0, 6.0)
    return ops
