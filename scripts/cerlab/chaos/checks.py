"""The soak's invariants (`Checks`): each check raises a `Violation` with its evidence. Probes:
reachability and source preservation; providers: who holds each /32; on-prem: one proxy-ARP
holder (the ARP capture, the CERs' duplicate-holder alarms); fencing: the emulators' journals
against the CERs' logged intents; processes: no death, panic or leak; the operator's view
(`cerctl explain`). `continuous` runs while operations run, `strict` at quiescent points.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import time
from pathlib import Path

from ..daemons import process_keys
from ..journal import Intent, read_intents, stale_mutations
from ..messages import LabError
from ..processes import netns_list, ns_run, run
from ..topology import CLOUDS, SITES, Node
from ..views import alive_nodes, capture_view, expected_owner_nodes, node_view, try_admin
from .bounds import DARK_BOUND, FENCE_EPS_MS, NOBODY_BOUND, ONPREM_CLAIM_SLACK, PROBE_MS, REACH_BOUND, now_ms
from .run_state import Claim, DualHolder, Json, RunState, Span, Violation


def parse_pcap(path: Path, offset: int) -> tuple[list[tuple[float, int, str, str, str]], int]:
    """ARP frames of a (growing) classic pcap from `offset`: [(ts, op, sha, spa, tpa)], new offset."""
    out: list[tuple[float, int, str, str, str]] = []
    try:
        with open(path, "rb") as fh:
            if offset == 0:
                hdr = fh.read(24)
                if len(hdr) < 24:
                    return out, 0
                offset = 24
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return out, offset
    i = 0
    while i + 16 <= len(data):
        sec, usec, incl, _orig = struct.unpack_from("<IIII", data, i)
        if i + 16 + incl > len(data):
            break
        frame = data[i + 16 : i + 16 + incl]
        i += 16 + incl
        if len(frame) >= 42 and frame[12:14] == b"\x08\x06":
            op = struct.unpack_from("!H", frame, 20)[0]
            sha = ":".join(f"{b:02x}" for b in frame[22:28])
            spa = socket.inet_ntoa(frame[28:32])
            tpa = socket.inet_ntoa(frame[38:42])
            out.append((sec + usec / 1e6, op, sha, spa, tpa))
    return out, offset + i


class Checks:
    """The invariants of one soak, over its `RunState`."""

    def __init__(self, state: RunState) -> None:
        self.c = state
        self.lab = state.lab
        # The clouds whose providers are checked (the self-test narrows it).
        self.clouds = list(CLOUDS)

    # -------------------------------------------- probes: reachability and source preservation

    def probe_runs(self) -> dict[tuple[str, str], list[list[int]]]:
        """(src, dst) -> merged [start_slot, end_slot] runs of received probes, from every receiver."""
        runs: dict[tuple[str, str], list[list[int]]] = {}
        for site in SITES:
            ev = self.c.out / f"probe-{site}.events.jsonl"
            try:
                for line in ev.read_text().splitlines():
                    e = json.loads(line)
                    if e.get("run"):
                        s, d, a, b = e["run"]
                        runs.setdefault((s, d), []).append([a, b])
            except (OSError, ValueError):
                pass
            try:
                st = json.loads((self.c.out / f"probe-{site}.state.json").read_text())
                for k, (a, b) in st.get("open", {}).items():
                    s, d = k.split(">")
                    runs.setdefault((s, d), []).append([a, b])
            except (OSError, ValueError):
                pass
        merged = {}
        for k, rs in runs.items():
            rs.sort()
            m: list[list[int]] = []
            for a, b in rs:
                if m and a <= m[-1][1] + 1:
                    m[-1][1] = max(m[-1][1], b)
                else:
                    m.append([a, b])
            merged[k] = m
        return merged

    def live_pairs(self) -> list[tuple[str, str]]:
        with self.c.mu:
            ips = sorted(self.c.endpoints)
        return [(s, d) for s in ips for d in ips if s != d]

    def dark_pairs(self, since_ms: int) -> list[str]:
        """Pairs with no probe sent after since_ms received yet."""
        slot = since_ms // PROBE_MS
        runs = self.probe_runs()
        return [f"{s}>{d}" for s, d in self.live_pairs() if not runs.get((s, d)) or runs[(s, d)][-1][1] < slot]

    def workload_addresses(self) -> dict[str, set[str]]:
        """site -> the pool /32s its workload namespace holds now."""
        held = {}
        for site in SITES:
            out = ns_run(self.lab.wl_ns(site), "ip", "-j", "-4", "addr", "show", "dev", "eth0", check=False).stdout
            try:
                held[site] = {
                    a["local"] for i in json.loads(out) for a in i.get("addr_info", []) if a.get("local", "").startswith("10.77.60.")
                }
            except ValueError:
                held[site] = set()
        return held

    @staticmethod
    def holding_problems(endpoints: dict[str, str], held: dict[str, set[str]]) -> list[str]:
        """What the lab's own bookkeeping gets wrong: a /32 its workload does not hold, or one
        held by a workload it does not live at (a harness fault, not the router's)."""
        probs = [
            f"{ip} lives at {site} but its workload does not hold it"
            for ip, site in sorted(endpoints.items())
            if ip not in held.get(site, set())
        ]
        probs += [
            f"the {site} workload holds {ip}, which lives at {endpoints.get(ip) or 'no site (removed)'}"
            for site, ips in sorted(held.items())
            for ip in sorted(ips)
            if endpoints.get(ip) != site
        ]
        return probs

    def workloads_hold(self, endpoints: dict[str, str]) -> None:
        """Quiescent: every workload holds exactly the /32s that live at its site, so a dark pair
        is never the harness having lost an address (as deleting the on-prem primary once did)."""
        probs = self.holding_problems(endpoints, self.workload_addresses())
        if probs:
            raise Violation("harness", f"{len(probs)} workload addresses disagree with the lab's endpoints", {"problems": probs})

    def reachability(self, t_conv: float) -> int:
        """Quiescent: every pair exchanges probes sent after convergence within REACH_BOUND."""
        since = int(t_conv * 1000)
        while True:
            dark = self.dark_pairs(since)
            if not dark:
                return len(self.live_pairs())
            if time.time() - t_conv > REACH_BOUND:
                raise Violation(
                    "reachability",
                    f"{len(dark)} pairs of /32s exchange no probes {REACH_BOUND:.0f} s after convergence",
                    {
                        "dark_pairs": dark,
                        "runs_tail": {f"{s}>{d}": r[-3:] for (s, d), r in self.probe_runs().items()},
                        "explain": self.explain_all(),
                    },
                )
            time.sleep(0.25)

    def source_preserved(self) -> None:
        bad = []
        for site in SITES:
            try:
                for line in (self.c.out / f"probe-{site}.events.jsonl").read_text().splitlines():
                    e = json.loads(line)
                    if e.get("bad_source"):
                        bad.append({"receiver": site, **e["bad_source"]})
            except (OSError, ValueError):
                pass
        if bad:
            raise Violation(
                "source_preserved", f"{len(bad)} probes arrived with a source other than the sender's /32", {"probes": bad[:50]}
            )

    def outages_per_op(self) -> dict[int, int]:
        """op index -> longest probe gap (ms) that began while it ran or up to 5 s after."""
        runs = self.probe_runs()
        holes: list[tuple[int, int]] = []
        end_ms = now_ms() - 1500
        with self.c.mu:
            life = {ip: [Span(x.added_ms, x.removed_ms) for x in v] for ip, v in self.c.life.items()}
        for s in life:
            for d in life:
                if s == d:
                    continue
                rs = runs.get((s, d), [])
                self.pair_holes(holes, rs, life[s], life[d], end_ms)
        out: dict[int, int] = {}
        for op in self.c.oplog:
            if "start_ms" not in op:
                continue
            lo, hi = op["start_ms"] - 500, (op.get("end_ms") or end_ms) + 5000
            out[op["i"]] = max([dur for t, dur in holes if lo <= t <= hi], default=0)
        return out

    @staticmethod
    def pair_holes(holes: list[tuple[int, int]], rs: list[list[int]], life_s: list[Span], life_d: list[Span], end_ms: int) -> None:
        """Appends (start_ms, length_ms) of every run of unreceived probe slots of one pair while
        both of its /32s existed."""
        for ls in life_s:
            for ld in life_d:
                a = max(ls.added_ms, ld.added_ms)
                b = min(ls.removed_ms or end_ms, ld.removed_ms or end_ms, end_ms)
                if b - a < PROBE_MS * 2:
                    continue
                lo, hi = a // PROBE_MS, b // PROBE_MS
                prev = lo - 1
                for x, y in rs:
                    if y < lo or x > hi:
                        continue
                    if x > prev + 1:
                        holes.append(((prev + 1) * PROBE_MS, (x - prev - 1) * PROBE_MS))
                    prev = max(prev, y)
                if prev < hi:
                    holes.append(((prev + 1) * PROBE_MS, (hi - prev) * PROBE_MS))

    # -------------------------------------------- providers: holders

    def holders(self, site: str) -> dict[str, str]:
        st, body = self.c.emu(site, "GET", "/_emulator/holders")
        if st != 200:
            raise LabError(f"{site} holders: {st}")
        return {h["ip"]: h["nic"] for h in body["holders"] if not h.get("primary")}

    def cer_nics(self, site: str) -> set[str]:
        """Every NIC of the site's CER (several on a lab up with --endpoints)."""
        return {nic for n in self.lab.nodes_of(site) for nic in self.lab.cer_nics(n)}

    def expected_nics(self, site: str, owner: str | None) -> set[str]:
        """The NICs that may hold a /32 owned at OWNER: the workload's at its own site, the CER's
        elsewhere (none when nobody owns it)."""
        if owner is None:
            return set()
        return set(self.lab.wl_nics(site)) if owner == site else self.cer_nics(site)

    def provider_holders(self, strict: bool) -> None:
        """Each cloud: every owned /32 held by exactly the NIC its owner implies; never by nobody
        while owned (continuously: not longer than NOBODY_BOUND); a /32 nobody owns never on the
        CER's NIC (strict)."""
        with self.c.mu:
            endpoints = dict(self.c.endpoints)
            removed = [ip for ip in self.c.life if ip not in endpoints]
            # A /32 removed and added again starts a new life: "nobody since" never carries over.
            lives = {ip: len(spans) for ip, spans in self.c.life.items()}
        bad = []
        now = time.time()
        for site in self.clouds:
            h = self.holders(site)
            for ip, owner in endpoints.items():
                want = sorted(self.expected_nics(site, owner))
                got = h.get(ip)
                key = (site, ip, lives.get(ip, 0))
                if got is None:
                    since = self.c.nobody_since.setdefault(key, now)
                    if strict or now - since > NOBODY_BOUND:
                        bad.append(
                            {"site": site, "ip": ip, "owner": owner, "holder": None, "want": want, "nobody_for_s": round(now - since, 1)}
                        )
                else:
                    self.c.nobody_since.pop(key, None)
                    if strict and got not in want:
                        bad.append({"site": site, "ip": ip, "owner": owner, "holder": got, "want": want})
            if strict:
                for ip in removed:
                    if h.get(ip) in self.cer_nics(site):
                        bad.append({"site": site, "ip": ip, "owner": None, "holder": h.get(ip), "want": "not the CER's NIC"})
        if bad:
            raise Violation("provider_holder", f"{len(bad)} /32s held by the wrong holder at a provider", {"holders": bad})

    def removed_problems(self) -> list[str]:
        """What still names a removed /32: a CER's owner view, a capture on a CER's NIC."""
        with self.c.mu:
            removed = [ip for ip in self.c.life if ip not in self.c.endpoints]
        if not removed:
            return []
        probs = []
        for n in alive_nodes(self.lab):
            v = node_view(self.lab, n)
            probs += [f"{n['node']}: removed {ip} still owned by {v[ip].get('identity')}" for ip in removed if ip in v]
        for site in self.clouds:
            h = self.holders(site)
            cer = self.cer_nics(site)
            probs += [f"{site}: removed {ip} still on the CER's NIC" for ip in removed if h.get(ip) in cer]
        return probs

    def owners_agree(self) -> None:
        """Strict: every live CER's BGP owner of every /32 is a node of the site the /32 lives at."""
        with self.c.mu:
            endpoints = dict(self.c.endpoints)
            removed = [ip for ip in self.c.life if ip not in endpoints]
        bad = []
        for n in alive_nodes(self.lab):
            v = node_view(self.lab, n)
            for ip in endpoints:
                o = v.get(ip)
                want = expected_owner_nodes(self.lab, endpoints, ip)
                if not o or o.get("identity") not in want:
                    bad.append({"node": n["node"], "ip": ip, "owner": o.get("identity") if o else None, "want": sorted(want)})
            for ip in removed:
                if v.get(ip):
                    bad.append({"node": n["node"], "ip": ip, "owner": v[ip].get("identity"), "want": None})
        if bad:
            raise Violation("bgp_owner", "CERs disagree with where the /32s live", {"owners": bad})

    # -------------------------------------------- on-prem: proxy-ARP holders

    def onprem_macs(self) -> dict[str, str]:
        macs = {}
        for n in self.lab.nodes_of("onprem"):
            out = ns_run(self.lab.node_ns(n), "ip", "-j", "link", "show", "lan0", check=False).stdout
            try:
                macs[json.loads(out)[0]["address"]] = n["node"]
            except (ValueError, IndexError, KeyError):
                pass
        out = ns_run(self.lab.wl_ns("onprem"), "ip", "-j", "link", "show", "eth0", check=False).stdout
        try:
            macs[json.loads(out)[0]["address"]] = "workload"
        except (ValueError, IndexError, KeyError):
            pass
        return macs

    def proxy_arp_pcap(self) -> None:
        """Never two holders on the segment at once. Two patterns on the ARP capture show two
        holders (claims are ARP replies and gratuitous ARPs for pool /32s):
        - one ARP request for a /32 answered by two MACs (before the next request, within 250 ms);
        - claims alternating X, Y, X with both gaps <= 300 ms and Y's claims within 300 ms (two
          holders both announcing). A Y that claimed for longer while X stayed silent, with a
          quick handover at each end, is two clean handovers, one holder at a time (chaos seed 3:
          VRRP master killed twice in 4 s, every request answered by exactly one MAC).
        A handover is not two holders: the old holder's last claim followed by the new holder's
        first, however close (a thawed VRRP master resumes within milliseconds), passes. Claims
        around an ownership change of that /32 that involves on-prem are exempt (the lab gives the
        workload the address before BGP moves it). A thawed on-prem node gets no exemption: its
        stall guard keeps it silent until VRRP has settled and keepalived confirmed MASTER."""
        frames, self.c.pcap_off = parse_pcap(self.c.out / "onprem-arp.pcap", self.c.pcap_off)

        def pool(ip: str) -> bool:
            # Pool /32s only (not the routers' own .1-.9, nor VRRP's address on its own link).
            return ip.startswith("10.77.60.") and int(ip.split(".")[3]) >= 10

        events = []
        for ts, op, sha, spa, tpa in frames:
            if op == 2 and pool(spa):
                events.append((ts, spa, sha, "reply"))
            elif op == 1 and spa == tpa and pool(spa):
                events.append((ts, spa, sha, "garp"))
            elif op == 1 and spa != tpa and pool(tpa):
                events.append((ts, tpa, sha, "request"))
        self.c.pcap_claims = [e for e in self.c.pcap_claims if e[0] > time.time() - 10] + events
        windows = self.c.onprem_windows(*ONPREM_CLAIM_SLACK)

        def exempt(ip: str, ts: float) -> bool:
            return any(w_ip == ip and a <= ts <= b for w_ip, a, b in windows)

        dual: list[DualHolder] = []
        by_ip: dict[str, list[Claim]] = {}
        for e in sorted(self.c.pcap_claims):
            by_ip.setdefault(e[1], []).append(e)
        for ip, evs in by_ip.items():
            # 1. One request, two answering MACs.
            req: float | None = None
            answered: dict[str, float] = {}
            for ts, _, mac, kind in evs:
                if kind == "request":
                    req, answered = ts, {}
                elif kind == "reply" and req is not None and ts - req <= 0.25 and not exempt(ip, ts):
                    answered.setdefault(mac, ts)
                    if len(answered) == 2:
                        (m1, t1), (m2, t2) = sorted(answered.items(), key=lambda kv: kv[1])
                        dual.append(
                            {
                                "ip": ip,
                                "pattern": f"request at {req:.3f} answered by two MACs",
                                "first": {"t": t1, "mac": m1},
                                "second": {"t": t2, "mac": m2},
                            }
                        )
            # 2. X, Y, X alternation with both gaps <= 300 ms.
            runs: list[tuple[str, float, float]] = []  # (mac, first ts, last ts) per run of one MAC's claims
            for ts, _, mac, kind in evs:
                if kind == "request":
                    continue
                if runs and runs[-1][0] == mac:
                    runs[-1] = (mac, runs[-1][1], ts)
                else:
                    runs.append((mac, ts, ts))
            for x1, y, x2 in zip(runs, runs[1:], runs[2:], strict=False):
                if x1[0] == x2[0] and y[1] - x1[2] <= 0.3 and x2[1] - y[2] <= 0.3 and y[2] - y[1] <= 0.3 and not exempt(ip, y[1]):
                    dual.append(
                        {
                            "ip": ip,
                            "pattern": "claims alternating X, Y, X within 300 ms",
                            "first": {"t": x1[2], "mac": x1[0]},
                            "second": {"t": y[1], "mac": y[0]},
                            "third": {"t": x2[1], "mac": x2[0]},
                        }
                    )
        if dual:
            macs = self.onprem_macs()
            for d in dual:
                for claimant in (d["first"], d["second"], d.get("third")):
                    if claimant is not None:
                        claimant["who"] = macs.get(claimant.get("mac", ""), "?")
            raise Violation(
                "proxy_arp_holders",
                f"two holders of {dual[0]['ip']} on the on-prem segment: {dual[0]['pattern']}",
                {"claims": dual[:20], "pcap": str(self.c.out / "onprem-arp.pcap")},
            )

    def duplicate_alarms(self) -> None:
        """No duplicate-holder alarm on an on-prem CER except where a fault causes one by design:
        around an ownership change of that /32 involving on-prem (the workload and the CER both
        claim it for a moment). None after a thaw: the stall guard keeps the thawed node silent."""
        windows = self.c.onprem_windows(ONPREM_CLAIM_SLACK[0], 5)
        for n in self.lab.nodes_of("onprem"):
            if n["tag"] in self.c.frozen:
                continue
            c = self.onprem_capture(n)
            if c is None:
                continue
            count = c.get("duplicate_holder_alarms")
            if count is None:
                continue
            base = self.c.alarm_base.get(n["node"], 0)
            if count < base:  # the dataplane restarted
                base = 0
            if count > base:
                new = c.get("duplicate_holders") or []
                unexplained = [
                    d for d in new if not any(w == d.get("ip") and a - 1 <= (d.get("last_unix") or 0) <= b + 1 for w, a, b in windows)
                ]
                if unexplained or not new:
                    raise Violation(
                        "duplicate_holder_alarm",
                        f"{n['node']} raised {count - base} duplicate-holder alarm(s) outside an on-prem ownership change",
                        {"node": n["node"], "count": count, "holders": new, "windows": windows[-10:]},
                    )
            self.c.alarm_base[n["node"]] = count

    def onprem_capture(self, node: Node) -> dict[str, Json] | None:
        """An on-prem CER's `capture` answer (alarm counts and holders), None while it is down."""
        if not self.lab.alive(f"{node['tag']}-ctl"):
            return None
        c: dict[str, Json] = try_admin(self.lab.ctl_sock(node), "capture") or {}
        return c

    # -------------------------------------------- fencing: provider journal vs intents

    def intents(self, node: Node) -> tuple[dict[str, list[Intent]], int]:
        """The capture intents NODE's reconciler logged and how many stale actions it fenced."""
        return read_intents(self.lab.f(f"{node['tag']}-ctl.log"))

    def journal(self, site: str) -> tuple[int, Json]:
        """The emulator's journal of accepted changes: (status, body)."""
        return self.c.emu(site, "GET", "/_emulator/journal")

    def fencing(self) -> None:
        """No provider mutation executed from a stale path signature: every change the emulator
        accepted from the CER moves its /32 the way the CER's intent pointed when the request
        arrived (or within FENCE_EPS_MS before)."""
        bad = []
        for site in self.clouds:
            node = self.lab.nodes_of(site)[0]
            st, body = self.journal(site)
            if st != 200 or not isinstance(body, dict):
                raise Violation("fencing", f"{site}: the emulator journal is not available ({st})", {"answer": body})
            intents, fenced = self.intents(node)
            initial = {ip: nic for nic, ips in self.lab.wl_seed(site).items() for ip in ips}
            found, n_cer = stale_mutations(
                body["entries"], intents, set(self.lab.cer_nics(node)), initial, self.lab.mgmt_addr(node), FENCE_EPS_MS
            )
            bad += [{"site": site, **b} for b in found]
            self.c.fence_stats[site] = {"cer_mutations": n_cer, "fenced": fenced, "journal_dropped": body.get("dropped", 0)}
        if bad:
            raise Violation(
                "fencing",
                f"{len(bad)} provider mutations executed against the CER's current intent (stale path signature)",
                {"mutations": bad[:20]},
            )

    # -------------------------------------------- processes

    def processes(self) -> None:
        """Every lab process runs unless an operation took it down on purpose; no panic in any log."""
        dead = []
        with self.c.mu:
            expected = dict(self.c.expected_down)
        for key in process_keys(self.lab):
            if key in expected:
                continue
            if not self.lab.alive(key):
                dead.append(key)
        if dead:
            raise Violation("process", f"lab processes died without an operation killing them: {', '.join(dead)}", {"dead": dead})
        panics = []
        for f in self.lab.run_dir.glob("*.log"):
            off = self.c.log_offsets.get(f.name, 0)
            try:
                with open(f, "rb") as fh:
                    fh.seek(off)
                    data = fh.read()
            except OSError:
                continue
            self.c.log_offsets[f.name] = off + len(data)
            for line in data.decode(errors="replace").splitlines():
                if "panicked at" in line or "RUST_BACKTRACE" in line:
                    panics.append(f"{f.name}: {line}")
        if panics:
            raise Violation("panic", f"a lab process panicked ({panics[0]})", {"lines": panics[:20]})

    def leaks(self) -> None:
        """No process in the lab's namespaces but the lab's and this soak's; no namespace
        with the lab's prefix that the lab does not own."""
        known = set()
        for key in process_keys(self.lab):
            p = self.lab.pid_of(key)
            if p:
                known.add(p)
        for n in self.lab.nodes():
            try:
                known.add(int(self.lab.f(f"{n['tag']}-ka-vrrp.pid").read_text().split()[0]))
            except (OSError, ValueError, IndexError):
                pass
        known |= {p.pid for p in self.c.helpers}

        def unknown() -> set[tuple[str, int]]:
            u = set()
            for ns in self.lab.all_namespaces():
                out = run(["ip", "netns", "pids", ns], check=False).stdout.split()
                u |= {(ns, int(p)) for p in out if p.isdigit() and int(p) not in known}
            return u

        u = unknown()
        if u:
            time.sleep(1.5)  # the fabric agents run short-lived `ip` commands
            u &= unknown()
        if u:
            info = []
            for ns, p in sorted(u):
                try:
                    cmd = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                except OSError:
                    cmd = "?"
                info.append({"netns": ns, "pid": p, "cmdline": cmd})
            raise Violation("leak", f"{len(u)} unknown processes in the lab's namespaces", {"processes": info})
        extra = [ns for ns in netns_list() if ns.startswith(self.lab.name + "-") and ns not in self.lab.all_namespaces()]
        if extra:
            raise Violation("leak", f"namespaces with the lab's prefix that the lab does not own: {extra}", {"namespaces": extra})

    # -------------------------------------------- operator's view

    def explain_all(self) -> dict[str, str]:
        out = {}
        with self.c.mu:
            ips = sorted(set(self.c.endpoints) | set(self.c.life))
        for n in alive_nodes(self.lab):
            if n["tag"] in self.c.frozen:
                continue
            for ip in ips:
                p = run([self.lab.bin("cerctl"), "explain", ip, "--socket", str(self.lab.ctl_sock(n))], check=False, timeout=10)
                out[f"{n['node']} {ip}"] = (p.stdout + p.stderr)[-3000:]
        return out

    def stuck_captures(self) -> list[tuple[str, str, str | None]]:
        """When the operations of a round end, every cloud capture not yet confirmed (stuck
        behind a provider fault, in backoff, in flight) and every fenced action must be readable
        by an operator: `cerctl explain IP` names the phase, the provider error of a capture in
        backoff, and the number of fenced actions. Returns the stuck ones."""
        words = {"backoff": "retrying", "in_flight": "in flight", "pending": "queued", "settling": "re-observing", "waiting": "waiting"}
        stuck = []
        for site in self.clouds:
            n = self.lab.nodes_of(site)[0]
            view = capture_view(self.lab, n)
            for ip, c in view.items():
                phase, err, fenced = c.get("phase"), c.get("last_error"), c.get("fenced") or 0
                if phase == "confirmed" and not fenced:
                    continue
                if phase != "confirmed":
                    stuck.append((n["node"], ip, phase))
                text = run([self.lab.bin("cerctl"), "explain", ip, "--socket", str(self.lab.ctl_sock(n))], check=False, timeout=10).stdout
                need = words.get(phase or "")
                m = re.search(r"6\. Fencing: (\d+) stale actions fenced", text)
                ok = (
                    "5. Capture" in text
                    and (need is None or need in text)
                    and (phase != "backoff" or not err or err.split(":")[0] in text)
                    and (m is not None and int(m.group(1)) >= fenced)
                )
                rec: dict[str, object] = {
                    "node": n["node"],
                    "ip": ip,
                    "phase": phase,
                    "last_error": err,
                    "fenced": fenced,
                    "explained": ok,
                    "capture_line": next((line.strip() for line in text.splitlines() if line.strip().startswith("here:")), ""),
                }
                if not ok:
                    # The state may have moved on between the two questions: ask again.
                    again = capture_view(self.lab, n).get(ip, {})
                    if (again.get("phase"), again.get("last_error")) != (phase, err):
                        continue
                    raise Violation(
                        "operator_view",
                        f"cerctl explain {ip} on {n['node']} does not name its capture state ({phase}, {err}, {fenced} fenced)",
                        {"explain": text, "capture": c},
                    )
                if len(self.c.explains) < 200:
                    self.c.explains.append(rec)
        return stuck

    # -------------------------------------------- schedules

    def baseline(self) -> None:
        for n in self.lab.nodes_of("onprem"):
            c = try_admin(self.lab.ctl_sock(n), "capture") or {}
            self.c.alarm_base[n["node"]] = c.get("duplicate_holder_alarms") or 0
        for f in self.lab.run_dir.glob("*.log"):
            self.c.log_offsets[f.name] = f.stat().st_size
        self.processes()

    def continuous(self, i: int) -> None:
        self.processes()
        self.source_preserved()
        with self.c.mu:
            since = now_ms() - int(DARK_BOUND * 1000)
        dark = [p for p in self.dark_pairs(since) if self.pair_old_enough(p, since)]
        if dark:
            raise Violation(
                "reachability", f"{len(dark)} pairs dark for more than {DARK_BOUND:.0f} s during the operations", {"dark_pairs": dark}
            )
        if i % 2 == 0:
            self.provider_holders(strict=False)
            self.duplicate_alarms()
        if i % 5 == 0:
            self.proxy_arp_pcap()

    def pair_old_enough(self, pair: str, since: int) -> bool:
        s, d = pair.split(">")
        with self.c.mu:
            return self.c.life[s][-1].added_ms < since and self.c.life[d][-1].added_ms < since

    def strict(self) -> None:
        self.processes()
        self.source_preserved()
        self.owners_agree()
        self.provider_holders(strict=True)
        self.proxy_arp_pcap()
        self.duplicate_alarms()
        self.fencing()
        self.leaks()

    def final(self) -> None:
        self.strict()
