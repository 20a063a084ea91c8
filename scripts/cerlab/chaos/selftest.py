"""The self-test of the soak's checks (`python3 -m cerlab.chaos selftest`, run by scripts/test):
each invariant check fed fabricated evidence of a violation must raise, and fed the same evidence
without the fault must not: a check that cannot fail proves nothing. Needs no lab and no root.
"""

from __future__ import annotations

import json
import shutil
import socket
import struct
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ..topology import PROVIDER, Lab, Node
from .bounds import PROBE_MS, REACH_BOUND
from .checks import Checks
from .run_state import IpWindow, Json, RunState, Span, Violation

CER_NIC = PROVIDER["aws"]["cer_nic"]
WL_NIC = PROVIDER["aws"]["wl_nic"]
# A claim in a fabricated capture: (ts, mac, ip) is an ARP reply for ip; (ts, mac, ip, "req") a
# request for ip; (ts, mac, ip, "garp") a gratuitous ARP.
ArpClaim = tuple[float, str, str] | tuple[float, str, str, str]


class FabricatedChecks(Checks):
    """The checks, with what they would ask the lab (emulators, admin sockets, logs) fabricated."""

    def __init__(self, state: RunState) -> None:
        super().__init__(state)
        self.clouds = ["aws"]
        self.fake_holders: dict[str, str] = {}
        self.fake_intents: dict[str, list[tuple[int, str, str]]] = {}
        self.fake_journal: list[dict[str, Json]] = []
        self.fake_capture: dict[str, Json] = {}

    def onprem_macs(self) -> dict[str, str]:
        return {}

    def holders(self, site: str) -> dict[str, str]:
        return dict(self.fake_holders)

    def intents(self, node: Node) -> tuple[dict[str, list[tuple[int, str, str]]], int]:
        return self.fake_intents, 0

    def journal(self, site: str) -> tuple[int, Json]:
        return 200, {"entries": self.fake_journal, "dropped": 0}

    def onprem_capture(self, node: Node) -> dict[str, Json] | None:
        return self.fake_capture


def write_pcap(path: Path, claims: list[ArpClaim]) -> None:
    """A classic pcap of ARP frames, one per claim."""
    with open(path, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for ts, mac, ip, *kind in claims:
            m = bytes.fromhex(mac.replace(":", ""))
            if kind == ["req"]:
                arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + m + socket.inet_aton("10.77.60.10") + b"\x00" * 6 + socket.inet_aton(ip)
            elif kind == ["garp"]:
                arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + m + socket.inet_aton(ip) + b"\x00" * 6 + socket.inet_aton(ip)
            else:
                arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + m + socket.inet_aton(ip) + b"\x00" * 6 + socket.inet_aton("10.77.60.10")
            f = b"\xff" * 6 + m + b"\x08\x06" + arp
            fh.write(struct.pack("<IIII", int(ts), int((ts % 1) * 1e6), len(f), len(f)) + f)


def selftest() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="chaos-selftest-"))
    lab = Lab("selftest")
    # Nothing outside tmp: no lab of this name runs, and its files would be here.
    lab.run_dir, lab.pid_dir = tmp, tmp / "pids"
    c = RunState(lab, tmp, {"10.77.60.11": "aws", "10.77.60.12": "azure"})
    ch = FabricatedChecks(c)
    failures: list[str] = []

    def expect(name: str, f: Callable[[], object], violates: bool) -> None:
        raised: Violation | None
        try:
            f()
            raised = None
        except Violation as v:
            raised = v
        if bool(raised) != violates:
            failures.append(f"{name}: expected {'a violation' if violates else 'no violation'}, got {raised}")
        else:
            print(f"selftest: {name}: {'violation raised: ' + str(raised) if raised else 'clean'}")

    # 1. Two proxy-ARP holders in an ARP capture.
    def pcap(claims: list[ArpClaim]) -> None:
        write_pcap(tmp / "onprem-arp.pcap", claims)
        c.pcap_off, c.pcap_claims = 0, []

    t = time.time()
    a, b, host = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:10"
    pcap([(t, host, "10.77.60.11", "req"), (t + 0.001, a, "10.77.60.11"), (t + 0.002, b, "10.77.60.11")])
    expect("proxy_arp_holders, one request answered by two MACs", ch.proxy_arp_pcap, True)
    pcap([(t, a, "10.77.60.11"), (t + 0.1, b, "10.77.60.11"), (t + 0.2, a, "10.77.60.11")])
    expect("proxy_arp_holders, two MACs alternating", ch.proxy_arp_pcap, True)
    handover: list[ArpClaim] = [(t + i * 0.2, host, "10.77.60.11", "req") for i in range(4)]
    handover += [
        (t + 0.001, a, "10.77.60.11"),
        (t + 0.201, a, "10.77.60.11"),
        (t + 0.3, b, "10.77.60.11", "garp"),
        (t + 0.401, b, "10.77.60.11"),
        (t + 0.601, b, "10.77.60.11"),
    ]
    pcap(handover)
    expect("proxy_arp_holders, a handover 100 ms apart", ch.proxy_arp_pcap, False)
    # Two handovers 4 s apart (X until t, Y until t + 4, X again), every request answered once: clean.
    back: list[ArpClaim] = [(t + i * 0.2, host, "10.77.60.12", "req") for i in range(30)]
    back += [(t + i * 0.2 + 0.001, a, "10.77.60.12") for i in range(2)]
    back += [(t + 0.35, b, "10.77.60.12", "garp")]
    back += [(t + i * 0.2 + 0.001, b, "10.77.60.12") for i in range(2, 21)]
    back += [(t + 4.25, a, "10.77.60.12", "garp")]
    back += [(t + i * 0.2 + 0.001, a, "10.77.60.12") for i in range(22, 30)]
    pcap(back)
    expect("proxy_arp_holders, two handovers 4 s apart (chaos seed 3)", ch.proxy_arp_pcap, False)
    pcap([(t, a, "10.77.60.11"), (t + 3.5, b, "10.77.60.11")])
    expect("proxy_arp_holders, a failover 3.5 s apart", ch.proxy_arp_pcap, False)
    pcap([(t, a, "10.77.60.11"), (t + 0.1, b, "10.77.60.11"), (t + 0.2, a, "10.77.60.11")])
    c.ip_windows = [IpWindow("10.77.60.11", int(t * 1000), int(t * 1000) + 50, {"onprem", "aws"})]
    expect("proxy_arp_holders, inside a move to on-prem", ch.proxy_arp_pcap, False)
    c.ip_windows = []

    # 1b. Duplicate-holder alarms of the on-prem CERs.
    c.frozen = {}
    ch.fake_capture = {
        "duplicate_holder_alarms": 1,
        "duplicate_holders": [{"ip": "10.77.60.23", "last_unix": int(t), "mac": a, "port": "lan", "seen": 1}],
    }
    c.alarm_base = {}
    expect("duplicate_holder_alarm, out of the blue", ch.duplicate_alarms, True)
    c.alarm_base = {}
    c.ip_windows = [IpWindow("10.77.60.23", int(t * 1000) - 500, int(t * 1000), {"onprem", "aws"})]
    expect("duplicate_holder_alarm, inside a move to on-prem", ch.duplicate_alarms, False)
    c.alarm_base, c.ip_windows = {}, [IpWindow("10.77.60.23", int(t * 1000) - 500, None, {"onprem", "azure"})]
    expect("duplicate_holder_alarm, inside a move from on-prem still under way", ch.duplicate_alarms, False)
    c.ip_windows = []

    # 2. Source preservation.
    ev = tmp / "probe-aws.events.jsonl"
    ev.write_text(json.dumps({"run": ["10.77.60.12", "10.77.60.11", 10, 20]}) + "\n")
    expect("source_preserved, clean", ch.source_preserved, False)
    with open(ev, "a") as fh:
        fh.write(json.dumps({"bad_source": {"claimed": "10.77.60.12", "seen": "100.64.12.1", "dst": "10.77.60.11", "slot": 21}}) + "\n")
    expect("source_preserved, a NATed probe", ch.source_preserved, True)

    # 3. Reachability: a hole in the received runs.
    holes: list[tuple[int, int]] = []
    Checks.pair_holes(holes, [[0, 9], [30, 100]], [Span(0)], [Span(0)], 100 * PROBE_MS)
    if holes != [(10 * PROBE_MS, 20 * PROBE_MS)]:
        failures.append(f"pair_holes: {holes}")
    else:
        print(f"selftest: outage of a pair: {holes[0][1]} ms lost from slot 10 (as fabricated)")
    eps = {"10.77.60.10": "onprem", "10.77.60.12": "onprem", "10.77.60.11": "aws"}
    held = {"onprem": {"10.77.60.10", "10.77.60.12"}, "aws": {"10.77.60.11"}, "azure": set()}
    if Checks.holding_problems(eps, held):
        failures.append(f"holding_problems, consistent: {Checks.holding_problems(eps, held)}")
    lost = Checks.holding_problems({"10.77.60.12": "onprem"}, {"onprem": set()})
    stale = Checks.holding_problems({}, {"onprem": {"10.77.60.10"}})
    if len(lost) != 1 or len(stale) != 1:
        failures.append(f"holding_problems: lost {lost}, stale {stale}")
    else:
        print(f"selftest: harness self-check names {lost[0]!r} and {stale[0]!r}")
    c.endpoints = {"10.77.60.11": "aws", "10.77.60.12": "azure"}
    expect("reachability, a pair silent since slot 20", lambda: ch.reachability(time.time() - REACH_BOUND - 1), True)

    # 4. Provider holders.
    c.endpoints = {"10.77.60.11": "aws", "10.77.60.12": "azure"}
    c.life = {ip: [Span(0)] for ip in c.endpoints}
    ch.fake_holders = {"10.77.60.11": WL_NIC, "10.77.60.12": CER_NIC}
    expect("provider_holder, as the owners imply", lambda: ch.provider_holders(True), False)
    ch.fake_holders = {"10.77.60.11": CER_NIC, "10.77.60.12": CER_NIC}
    expect("provider_holder, the CER holds a /32 owned at its own site", lambda: ch.provider_holders(True), True)
    ch.fake_holders = {"10.77.60.11": WL_NIC}
    expect("provider_holder, an owned /32 held by nobody", lambda: ch.provider_holders(True), True)
    # Held by nobody for long in an earlier life, removed, added again: a new life starts its clock.
    c.nobody_since = {("aws", "10.77.60.12", 1): time.time() - 1000}
    expect("provider_holder, nobody for long in an earlier life", lambda: ch.provider_holders(False), True)
    c.life["10.77.60.12"].append(Span(1))
    c.nobody_since = {("aws", "10.77.60.12", 1): time.time() - 1000}
    expect("provider_holder, just added again after a long-gone life", lambda: ch.provider_holders(False), False)

    # 5. Fencing: a capture executed while the intent had been Release for 2 s.
    def req(t: int) -> dict[str, Json]:
        return {"client": "169.254.169.10:4000", "method": "POST", "path": "/", "received_unix_ms": t}

    ch.fake_journal = [{"seq": 1, "op": "assign", "nic": CER_NIC, "ips": ["10.77.60.12"], "request": req(10_000)}]
    ch.fake_intents = {"10.77.60.12": [(5_000, "capture", "a"), (8_000, "release", "0")]}
    expect("fencing, a stale capture executed 2 s after the release intent", ch.fencing, True)
    ch.fake_intents = {"10.77.60.12": [(5_000, "release", "0"), (9_900, "capture", "b")]}
    expect("fencing, a capture 100 ms after its intent", ch.fencing, False)
    ch.fake_journal = [{"seq": 1, "op": "assign", "nic": WL_NIC, "ips": ["10.77.60.12"], "request": req(10_000)}]
    ch.fake_intents = {"10.77.60.12": [(5_000, "capture", "a")]}
    expect("fencing, a hand-back while the intent is Capture", ch.fencing, True)
    operator = {"client": "127.0.0.1:5000", "method": "POST", "path": "/", "received_unix_ms": 10_000}
    ch.fake_journal = [{"seq": 1, "op": "assign", "nic": WL_NIC, "ips": ["10.77.60.12"], "request": operator}]
    expect("fencing, the operator's own assignment", ch.fencing, False)

    if failures:
        print("selftest FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("selftest: every check raised on its fabricated violation and stayed quiet otherwise")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0
