"""What one soak knows while it runs, shared by its operations, its checks and its report
(`RunState`): where each /32 lives and lived, the windows in which faults are expected, what is
killed, frozen or cut on purpose, the helpers it started and its relays to the emulators.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from ..provider import ProviderRelay
from ..topology import Lab
from .bounds import now_ms
from .plan import Op

# A JSON answer of an emulator (its shape is the emulator's, `tests/cloud-emulator`).
Json = Any


@dataclass
class Span:
    """One lifetime of a /32 in the soak (unix ms): added, and removed (None while it exists)."""

    added_ms: int
    removed_ms: int | None = None


class Interrupted(Exception):
    """An operation gave up waiting because the soak is stopping (after a violation elsewhere):
    not a finding of its own."""


class Violation(Exception):
    """An invariant the lab broke, with the evidence that shows it."""

    def __init__(self, invariant: str, message: str, evidence: dict[str, object] | None = None) -> None:
        super().__init__(f"{invariant}: {message}")
        self.invariant = invariant
        self.message = message
        self.evidence = evidence or {}


class Claimant(TypedDict, total=False):
    """One ARP claim of a dual-holder pattern: when, which MAC, and who that is."""

    t: float
    mac: str
    who: str


class DualHolder(TypedDict):
    """Two holders of an on-prem /32 seen in the ARP capture."""

    ip: str
    pattern: str
    first: Claimant
    second: Claimant
    third: NotRequired[Claimant]


class FenceStats(TypedDict):
    cer_mutations: int
    fenced: int
    journal_dropped: int


class Quiescent(TypedDict):
    """One quiescent point: when, how long convergence and reachability took, over what."""

    at_ms: int
    converge_s: float
    reach_s: float
    endpoints: dict[str, str]
    stuck_at_start: int
    pairs: int


@dataclass
class IpWindow:
    """Ownership of `ip` changing between `sites` (unix ms); `end_ms` is None while the change
    is still under way (a check running meanwhile must see the window)."""

    ip: str
    start_ms: int
    end_ms: int | None
    sites: set[str]


# An ARP claim or request in the capture: (unix time, ip, mac, "reply" | "garp" | "request").
Claim = tuple[float, str, str, str]


class RunState:
    """The soak's shared state; `mu` guards what operation threads and the sampler both touch."""

    def __init__(self, lab: Lab, out: Path, endpoints: dict[str, str]) -> None:
        self.lab = lab
        self.out = out
        self.endpoints = dict(endpoints)
        self.mu = threading.RLock()
        self.locks: dict[str, threading.Lock] = {}
        self.oplog: list[Op] = []  # every operation: kind, params, start, end, error
        self.life: dict[str, list[Span]] = {ip: [Span(0)] for ip in self.endpoints}
        self.ip_windows: list[IpWindow] = []
        self.expected_down: dict[str, str] = {}  # process key -> why
        self.frozen: dict[str, list[int]] = {}  # node tag -> [pids]
        self.cut: dict[str, str] = {}  # node tag -> wan iface
        self.fault_windows: list[tuple[str, int, int]] = []  # (site, start_ms, end_ms)
        self.helpers: list[subprocess.Popen[str]] = []  # our helpers (probers, arp, tcpdump, relays)
        self.relays: dict[str, ProviderRelay] = {}
        self.violations: list[Violation] = []
        self.stop = threading.Event()
        self.quiescent: list[Quiescent] = []
        self.alarm_base: dict[str, int] = {}
        self.nobody_since: dict[tuple[str, str, int], float] = {}  # (site, ip, life) -> unix time
        self.log_offsets: dict[str, int] = {}
        self.pcap_claims: list[Claim] = []
        self.pcap_off = 0
        self.fence_stats: dict[str, FenceStats] = {}
        self.explains: list[dict[str, object]] = []
        self.t0: float | None = None
        self.planned: int | None = None
        self.evidence_dir: Path | None = None

    def onprem_windows(self, before_s: float, after_s: float) -> list[tuple[str, float, float]]:
        """(ip, from_s, to_s) around every ownership change involving on-prem: before_s before it
        and after_s after it (a change still under way runs to now)."""
        with self.mu:
            return [
                (w.ip, w.start_ms / 1000 - before_s, (w.end_ms if w.end_ms is not None else now_ms()) / 1000 + after_s)
                for w in self.ip_windows
                if "onprem" in w.sites
            ]

    def log(self, msg: str) -> None:
        line = f"chaos {time.strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        with open(self.out / "chaos.log", "a") as fh:
            fh.write(line + "\n")

    def lock(self, name: str) -> threading.Lock:
        with self.mu:
            return self.locks.setdefault(name, threading.Lock())

    def emu(self, site: str, method: str, path: str, body: str | None = None) -> tuple[int, Json]:
        """One request to SITE's emulator through its relay: (status, body as JSON or text)."""
        status, _, text = self.relays[site].request(method, path, body)
        try:
            return status, json.loads(text) if text else None
        except ValueError:
            return status, text
