"""Fencing evidence: a provider emulator's journal of accepted changes replayed against the capture
intents a CER's reconciler logged. A change the CER's own requests made must move its /32 the way
the CER's intent pointed when the request reached the provider: otherwise a stale action (one
whose path signature was out of date) was executed. Used by the chaos soak's fencing check and by
`scripts/lab mass-move`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

# (unix_ms, "capture" | "release", path signature) of one logged intent.
Intent = tuple[int, str, str]
Entry = dict[str, Any]

# A provider change counts as stale when the CER's intent for the /32 pointed the other way for this
# long before the request reached the provider (fence check -> request, ms): the chaos soak and
# `mass-move` judge by the same figure.
FENCE_EPS_MS = 300

INTENT_RX = re.compile(r"capture: intent (\S+) (Capture|Release) signature ([0-9a-f]+) at unix_ms (\d+)")


def read_intents(log: Path) -> tuple[dict[str, list[Intent]], int]:
    """The intents a cer-control log holds (ip -> [Intent]) and how many stale actions it fenced."""
    out: dict[str, list[Intent]] = {}
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return out, 0
    for m in INTENT_RX.finditer(text):
        out.setdefault(m.group(1), []).append((int(m.group(4)), m.group(2).lower(), m.group(3)))
    return out, len(re.findall(r"capture: fenced stale", text))


def stale_mutations(
    entries: list[Entry],
    intents: dict[str, list[Intent]],
    cer_nics: set[str],
    initial: dict[str, str],
    cer_client: str,
    eps_ms: int,
) -> tuple[list[Entry], int]:
    """Replays the journal from the initial holders (ip -> NIC) and checks every change a request
    from `cer_client` (its address) made against `intents`; a change within eps_ms after an intent
    counts for it. Returns the offending changes and how many journal entries the CER made."""
    holder = dict(initial)
    sec: dict[str, set[str]] = {}
    for ip, nic in initial.items():
        sec.setdefault(nic, set()).add(ip)
    bad: list[Entry] = []
    n_cer = 0
    for e in entries:
        op, nic = e["op"], e["nic"]
        before = dict(holder)
        if op == "assign":
            for ip in e["ips"]:
                if ip in holder:
                    sec.setdefault(holder[ip], set()).discard(ip)
                holder[ip] = nic
                sec.setdefault(nic, set()).add(ip)
        elif op == "unassign":
            for ip in e["ips"]:
                if holder.get(ip) == nic:
                    del holder[ip]
                sec.setdefault(nic, set()).discard(ip)
        elif op == "set":
            new = {a for a, _ in e["secondaries"]}
            for ip in sec.get(nic, set()) - new:
                if holder.get(ip) == nic:
                    del holder[ip]
            for ip in new:
                if ip in holder and holder[ip] != nic:
                    sec.setdefault(holder[ip], set()).discard(ip)
                holder[ip] = nic
            sec[nic] = new
        elif op == "delete":
            for ip in sec.pop(nic, set()):
                if holder.get(ip) == nic:
                    del holder[ip]
        client = (e.get("request") or {}).get("client") or ""
        if not client.startswith(cer_client + ":"):
            continue  # the operator (the soak, the lab's move) or the emulator itself
        n_cer += 1
        t = e["request"]["received_unix_ms"]
        for ip in set(before) | set(holder):
            b, a = before.get(ip), holder.get(ip)
            if a == b:
                continue
            d = "capture" if (a in cer_nics or (b is not None and b not in cer_nics and a is None)) else "release"
            tl = intents.get(ip, [])
            prior = [x for x in tl if x[0] <= t - eps_ms]
            recent = [x for x in tl if t - eps_ms < x[0] <= t]
            ok = (prior and prior[-1][1] == d) or any(x[1] == d for x in recent)
            if not ok:
                bad.append({"ip": ip, "direction": d, "from": b, "to": a, "entry": e, "intent_before": prior[-3:], "intent_recent": recent})
    return bad, n_cer
