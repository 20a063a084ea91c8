"""One soak run (`Soak.run`): start the helpers (probers, ARP requester and capture, relays),
check the baseline, start each planned operation when due (in its own thread), pause for a
quiescent point every minute, check the invariants continuously and at each quiescent point,
then keep the evidence of a violation and write the report. `cmd_chaos` is `scripts/lab chaos`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import traceback
from pathlib import Path

from ..messages import die
from ..processes import ns_run
from ..provider import ProviderRelay
from ..topology import CLOUDS, LAB_SCRIPT, PY, SITES, Lab, name_opt
from ..views import convergence_problems
from .bounds import ARP_MS, CONVERGE_BOUND, PROBE_MS, PROBE_PORT, now_ms
from .checks import Checks
from .operations import Operations
from .plan import DEFAULT_ENDPOINTS, KINDS, plan
from .report import keep_evidence, write_report
from .run_state import Quiescent, Violation


class Soak(Operations):
    """A seeded soak on one running lab."""

    def __init__(self, lab: Lab, seed: int, minutes: float, out: Path, kinds: list[str] | None = None) -> None:
        state = lab.load_state()
        if state is None:
            die(f"lab {lab.name} is not up: scripts/lab{name_opt(lab)} up")
        super().__init__(lab, out, state["endpoints"])
        self.seed = seed
        self.minutes = minutes
        self.kinds = kinds
        self.checks = Checks(self)

    def spawn_helper(self, ns: str, args: list[str], logname: str) -> subprocess.Popen[str]:
        """Starts one helper inside ns (a `_relay` talks over pipes; the others log to LOGNAME)."""
        logf = open(self.out / logname, "ab")
        p = subprocess.Popen(
            ["ip", "netns", "exec", ns, *args],
            stdin=subprocess.PIPE if args[2] == "_relay" else subprocess.DEVNULL,
            stdout=subprocess.PIPE if args[2] == "_relay" else logf,
            stderr=logf,
            start_new_session=True,
            text=True,
        )
        logf.close()
        self.helpers.append(p)
        return p

    def start_helpers(self) -> None:
        self.write_peers()
        for site in CLOUDS:
            p = self.spawn_helper(self.lab.fab_ns(site), [PY, str(LAB_SCRIPT), "_relay"], f"relay-{site}.log")
            self.relays[site] = ProviderRelay(p, site)
        for site in SITES:
            self.spawn_helper(
                self.lab.wl_ns(site),
                [
                    PY,
                    str(LAB_SCRIPT),
                    "_probe",
                    "--site",
                    site,
                    "--peers",
                    str(self.out / "peers.json"),
                    "--out",
                    str(self.out),
                    "--interval-ms",
                    str(PROBE_MS),
                    "--port",
                    str(PROBE_PORT),
                ],
                f"probe-{site}.log",
            )
        self.spawn_helper(
            self.lab.wl_ns("onprem"),
            [PY, str(LAB_SCRIPT), "_arp", "--peers", str(self.out / "peers.json"), "--interval-ms", str(ARP_MS)],
            "arp.log",
        )
        self.spawn_helper(
            self.lab.ns("opseg"),
            ["tcpdump", "-Z", "root", "-i", "wl", "-n", "-U", "-w", str(self.out / "onprem-arp.pcap"), "arp"],
            "tcpdump.log",
        )

    def stop_helpers(self) -> None:
        for p in self.helpers:
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in self.helpers:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()

    # ------------------------------------------------------------ the soak

    def run(self) -> int:
        """The soak; 0 when no invariant broke, 1 otherwise."""
        self.out.mkdir(parents=True, exist_ok=True)
        sites_nodes = {s: [n["node"] for n in self.nodes_of(s)] for s in SITES}
        ops = plan(self.seed, self.minutes, sites_nodes, self.kinds, self.endpoints)
        if self.endpoints != DEFAULT_ENDPOINTS:
            print(f"chaos: the lab's endpoints are not a fresh lab's ({self.endpoints}): the schedule depends on them too", flush=True)
        (self.out / "schedule.json").write_text(json.dumps({"seed": self.seed, "minutes": self.minutes, "operations": ops}, indent=1))
        print(
            f"chaos: seed {self.seed}, {self.minutes} min, {len(ops)} operations planned "
            f"(reproduce: scripts/lab{name_opt(self.lab)} chaos --seed {self.seed} --minutes {self.minutes}); out {self.out}",
            flush=True,
        )
        threads: list[threading.Thread] = []
        sampler = None
        try:
            self.start_helpers()
            self.checks.baseline()
            self.wait_probes_flowing()
            self.t0 = time.time()
            sampler = threading.Thread(target=self.sample_loop, daemon=True)
            sampler.start()
            next_quiesce = self.t0 + 60
            # --minutes is wall time: quiescent points shift the schedule, and what does not fit
            # before the deadline is not run (the report says how many ran).
            deadline = self.t0 + self.minutes * 60 - 20
            self.planned = len(ops)
            idx = 0
            while idx < len(ops) and not self.stop.is_set() and time.time() < deadline:
                op = ops[idx]
                due = self.t0 + op["at"]
                if time.time() >= next_quiesce:
                    self.quiesce(threads)
                    threads = []
                    # Shift the remaining schedule by the time the quiescent point took.
                    self.t0 += time.time() - next_quiesce
                    next_quiesce = time.time() + 60
                    continue
                if time.time() < due:
                    time.sleep(min(0.1, due - time.time()))
                    continue
                t = threading.Thread(target=self.run_op, args=(op,), daemon=True)
                t.start()
                threads.append(t)
                self.oplog.append(op)
                idx += 1
            if not self.stop.is_set():
                self.quiesce(threads)
                threads = []
            if not self.stop.is_set():
                self.checks.final()
        except Violation as v:
            self.violations.append(v)
        except KeyboardInterrupt:
            self.violations.append(Violation("interrupted", "the run was interrupted"))
        except Exception as e:  # noqa: BLE001 - the soak cannot vouch for anything after this
            self.violations.append(
                Violation("harness", f"the soak itself failed: {type(e).__name__}: {e}", {"trace": traceback.format_exc()})
            )
        finally:
            self.stop.set()
            for t in threads:
                t.join(timeout=90)
            self.thaw_all()
            if self.violations:
                keep_evidence(self)
            self.stop_helpers()
            write_report(self)
        return 1 if self.violations else 0

    def thaw_all(self) -> None:
        with self.mu:
            frozen = dict(self.frozen)
            cut = dict(self.cut)
        for pids in frozen.values():
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
        for iface in cut.values():
            ns_run(self.lab.ns("wan"), "ip", "link", "set", iface, "up", check=False)

    def wait_probes_flowing(self) -> None:
        end = time.time() + 30
        while True:
            dark = self.checks.dark_pairs(now_ms() - 1000)
            if not dark:
                break
            if time.time() > end:
                raise Violation("reachability", f"before any operation, {len(dark)} pairs receive no probes", {"dark": dark})
            time.sleep(0.5)
        start = now_ms()
        with self.mu:
            for ip in self.life:
                self.life[ip][0].added_ms = start
        self.log("probes flow between every pair; operations start")

    def sample_loop(self) -> None:
        i = 0
        while not self.stop.is_set():
            try:
                self.checks.continuous(i)
            except Violation as v:
                self.violations.append(v)
                self.log(f"VIOLATION {v}")
                self.stop.set()
                return
            except Exception as e:  # noqa: BLE001 - a broken check must not pass silently
                self.violations.append(Violation("checker", f"continuous check failed: {e}", {"trace": traceback.format_exc()}))
                self.stop.set()
                return
            i += 1
            self.stop.wait(1.0)

    def quiesce(self, threads: list[threading.Thread]) -> None:
        self.log(f"quiescent point: waiting for {sum(t.is_alive() for t in threads)} operations to end")
        for t in threads:
            while t.is_alive() and not self.stop.is_set():
                t.join(timeout=1)
        if self.stop.is_set():
            return
        t_q = time.time()
        with self.mu:
            endpoints = dict(self.endpoints)
        stuck = self.checks.stuck_captures()
        probs = None
        while True:
            probs = convergence_problems(self.lab, endpoints) + self.checks.removed_problems()
            if not probs:
                break
            if time.time() - t_q > CONVERGE_BOUND:
                raise Violation(
                    "convergence",
                    f"not converged {CONVERGE_BOUND:.0f} s after the operations ended",
                    {"problems": probs, "explain": self.checks.explain_all()},
                )
            time.sleep(0.5)
        t_conv = time.time()
        self.checks.workloads_hold(endpoints)
        reach = self.checks.reachability(t_conv)
        t_reach = time.time()
        self.checks.strict()
        q: Quiescent = {
            "at_ms": int(t_q * 1000),
            "converge_s": round(t_conv - t_q, 2),
            "reach_s": round(t_reach - t_conv, 2),
            "endpoints": endpoints,
            "stuck_at_start": len(stuck),
            "pairs": reach,
        }
        self.quiescent.append(q)
        self.log(
            f"quiescent point {len(self.quiescent)}: converged in {q['converge_s']} s, "
            f"every pair reached {q['reach_s']} s later; invariants hold"
        )


def cmd_chaos(lab: Lab, seed: int, minutes: float, out: str | None, kinds_opt: str | None) -> int:
    """`scripts/lab chaos --seed S --minutes M [--out DIR] [--kinds a,b]`."""
    if os.geteuid() != 0:
        die("needs root")
    st = lab.load_state()
    if not st:
        die(f"lab {lab.name} is not up: scripts/lab{name_opt(lab)} up")
    if lab.cloud_pairs:
        die(f"lab {lab.name} runs two CERs per cloud site (--cloud-pairs): the soak's checks model one; use a lab without it")
    out_dir = Path(out or f"/var/tmp/cer-chaos/{lab.name}-seed{seed}-{time.strftime('%Y%m%dT%H%M%S')}")
    kinds = [k.strip() for k in kinds_opt.split(",")] if kinds_opt else None
    if kinds:
        unknown = [k for k in kinds if k not in KINDS]
        if unknown:
            die(f"unknown kinds {unknown}: {', '.join(KINDS)}")
    return Soak(lab, seed, minutes, out_dir, kinds).run()
