"""The soak's operations (`Operations.op_<kind>`, one per kind of `plan.KINDS`) and what they
share: running one with the resources it needs locked (`run_op`), recording it in
`operations.jsonl`, and keeping lab.json and the probers' peer list as the /32s move.
"""

from __future__ import annotations

import json
import os
import signal
import time
import traceback
from collections.abc import Callable

from ..actions import workload_set_default_src
from ..daemons import ctl, start_keepalived, start_node, start_rr, vtysh_rr
from ..hardfail import node_pids
from ..messages import LabError
from ..processes import ns_run, run
from ..provider import provider_assign_to_workload
from ..state import write_state
from ..topology import RR_ADDR, Node
from ..views import capture_view, vrrp_master
from .bounds import now_ms
from .plan import Op, OpParams
from .run_state import Interrupted, IpWindow, RunState, Span, Violation


class Operations(RunState):
    """The operations of a soak, over its shared state."""

    def node(self, name: str) -> Node:
        return next(n for n in self.lab.nodes() if n["node"] == name)

    def nodes_of(self, site: str) -> list[Node]:
        return self.lab.nodes_of(site)

    def cerctl(self, node: Node, *args: str) -> str:
        if args[:2] == ("endpoint", "remove"):
            # A node healed meanwhile already dropped what moved away while it was down.
            p = run([self.lab.bin("cerctl"), *args, "--socket", str(self.lab.ctl_sock(node))], check=False)
            if p.returncode != 0 and "is not an endpoint of this node" not in p.stderr + p.stdout:
                raise LabError(f"cerctl {' '.join(args)} on {node['node']} failed: {p.stderr.strip()} {p.stdout.strip()}")
            return p.stdout
        return ctl(self.lab, node, *args)

    def write_peers(self) -> None:
        with self.mu:
            peers = sorted(self.endpoints)
        tmp = self.out / "peers.json.tmp"
        tmp.write_text(json.dumps({"peers": peers}))
        tmp.replace(self.out / "peers.json")

    def save_lab_state(self) -> None:
        with self.mu:
            failed = sorted({k.rsplit("-", 1)[0] for k in self.expected_down})
            write_state(self.lab, dict(self.endpoints), failed=[n["node"] for n in self.lab.nodes() if n["tag"] in failed])

    # ------------------------------------------------------------ operations

    def record(self, op: Op, end_ms: int, error: str | None = None, trace: str | None = None) -> None:
        with self.mu:
            op["end_ms"] = end_ms
            if error is not None:
                op["error"] = error
            if trace is not None:
                op["trace"] = trace
        with open(self.out / "operations.jsonl", "a") as fh:
            fh.write(json.dumps({k: v for k, v in op.items() if not k.startswith("_")}) + "\n")

    def run_op(self, op: Op) -> None:
        kind, p = op["kind"], op["params"]
        res = self.resources(op)
        for r in sorted(res):
            self.lock(r).acquire()
        try:
            op["start_ms"] = now_ms()
            self.log(f"op {op['i']} {kind} {json.dumps(p)} starts")
            self.handler(kind)(op, p)
            self.record(op, end_ms=now_ms())
            self.log(f"op {op['i']} {kind} done in {(op['end_ms'] - op['start_ms']) / 1000:.1f}s {op.get('note', '')}")
        except Interrupted as e:
            self.record(op, end_ms=now_ms(), error=f"interrupted: {e}")
            self.log(f"op {op['i']} {kind} interrupted: {e}")
        except Exception as e:  # noqa: BLE001 - every failure of an operation is reported
            self.record(op, end_ms=now_ms(), error=f"{type(e).__name__}: {e}", trace=traceback.format_exc())
            self.log(f"op {op['i']} {kind} FAILED: {e}")
            self.violations.append(Violation("operation", f"operation {op['i']} {kind} {p} failed: {e}", {"trace": traceback.format_exc()}))
            self.stop.set()
        finally:
            for r in sorted(res, reverse=True):
                self.lock(r).release()

    def handler(self, kind: str) -> Callable[[Op, OpParams], None]:
        """The operation of `kind` (one per `plan.KINDS`)."""
        table: dict[str, Callable[[Op, OpParams], None]] = {
            "move": self.op_move,
            "add": self.op_add,
            "remove": self.op_remove,
            "flap": self.op_flap,
            "cer_kill": self.op_cer_kill,
            "freeze": self.op_freeze,
            "wan_cut": self.op_wan_cut,
            "vrrp_kill": self.op_vrrp_kill,
            "rr_restart": self.op_rr_restart,
            "fault_throttle": self.op_fault_throttle,
            "fault_500": self.op_fault_500,
            "fault_lost_reply": self.op_fault_lost_reply,
            "fault_latency": self.op_fault_latency,
            "fault_consistency": self.op_fault_consistency,
            "bgp_reset": self.op_bgp_reset,
        }
        return table[kind]

    def resources(self, op: Op) -> set[str]:
        """The locks an operation holds while it runs (a /32, nodes, the reflector, an emulator)."""
        kind, p = op["kind"], op["params"]
        if kind in ("move", "add", "remove", "flap"):
            return {f"ip:{p['ip']}"}
        if kind == "cer_kill":
            return {f"node:{n['node']}" for n in self.nodes_of(p["site"])}
        if kind in ("freeze", "wan_cut"):
            return {f"node:{p['node']}"}
        if kind == "vrrp_kill":
            return {f"node:{n['node']}" for n in self.nodes_of("onprem")}
        if kind in ("rr_restart", "bgp_reset"):
            return {"rr"}
        if kind.startswith("fault_"):
            return {f"emu:{p['site']}"}
        return set()

    def usable_cerctl(self, node: Node, *args: str) -> str:
        """cerctl on NODE once it is usable (not killed, frozen or cut by another operation)."""
        with self.lock(f"node:{node['node']}"):
            return self.cerctl(node, *args)

    def ownership_change(self, op: Op, ip: str, old: str | None, new: str | None, fn: Callable[[], None]) -> None:
        # The window is open from the start: a check that runs while the change is under way
        # must see it (the workload and a CER both claim an on-prem /32 during it).
        w = IpWindow(ip, now_ms(), None, {s for s in (old, new) if s})
        with self.mu:
            self.ip_windows.append(w)
        try:
            fn()
        finally:
            with self.mu:
                w.end_ms = now_ms()

    def op_move(self, op: Op, p: OpParams) -> None:
        lab = self.lab
        ip, to = p["ip"], p["to"]
        with self.mu:
            old = self.endpoints.get(ip)
        if old == to:
            op["note"] = f"{ip} already at {to}"
            return
        op["from"] = old

        def bgp_part() -> None:
            # 1. The workload at the new site gets the address.
            if to == "onprem":
                ns_run(lab.wl_ns(to), "ip", "addr", "replace", f"{ip}/24", "dev", "eth0")
            else:
                ns_run(lab.wl_ns(to), "ip", "addr", "replace", f"{ip}/32", "dev", "eth0")
                workload_set_default_src(lab, to)
            # 2. BGP: the new site's CERs take ownership, the old site's stop advertising.
            for n in self.nodes_of(to):
                self.usable_cerctl(n, "endpoint", "move" if old else "add", ip)
            with self.mu:
                self.endpoints[ip] = to
                if old is None:
                    self.life.setdefault(ip, []).append(Span(now_ms()))
            if old:
                for n in self.nodes_of(old):
                    self.usable_cerctl(n, "endpoint", "remove", ip)
                # 3. The old workload no longer holds it.
                ns_run(lab.wl_ns(old), "ip", "addr", "del", f"{ip}/{24 if old == 'onprem' else 32}", "dev", "eth0", check=False)
                workload_set_default_src(lab, old)
            self.write_peers()
            self.save_lab_state()
            # 4. In a cloud, the operator gives the workload NIC the address once our CER released it.
            if to != "onprem":
                node = self.nodes_of(to)[0]
                t_end = time.time() + 60
                while time.time() < t_end and not self.stop.is_set():
                    c = capture_view(lab, node).get(ip, {})
                    if c.get("desired") == "release" and c.get("phase") == "confirmed":
                        break
                    time.sleep(0.2)
                else:
                    if self.stop.is_set():
                        raise Interrupted(f"the soak stopped while waiting for the {to} CER to release {ip}")
                    raise LabError(f"{to} CER did not confirm the release of {ip} within 60 s")
                # The operator retries through injected provider faults (a lost reply ends the
                # lab's request helper without an answer).
                t_end = time.time() + 90
                while True:
                    try:
                        provider_assign_to_workload(lab, to, ip)
                        break
                    except LabError as e:
                        if time.time() > t_end or self.stop.is_set():
                            raise
                        self.log(f"operator: assigning {ip} to the {to} workload NIC failed ({str(e)[:120]}); retrying")
                        time.sleep(1)

        self.ownership_change(op, ip, old, to, bgp_part)

    def op_add(self, op: Op, p: OpParams) -> None:
        self.op_move(op, p)

    def op_remove(self, op: Op, p: OpParams) -> None:
        lab = self.lab
        ip = p["ip"]
        with self.mu:
            site = self.endpoints.get(ip)
        if site is None:
            op["note"] = f"{ip} is not an endpoint"
            return

        def part() -> None:
            for n in self.nodes_of(site):
                self.usable_cerctl(n, "endpoint", "remove", ip)
            with self.mu:
                del self.endpoints[ip]
                self.life[ip][-1].removed_ms = now_ms()
            ns_run(lab.wl_ns(site), "ip", "addr", "del", f"{ip}/{24 if site == 'onprem' else 32}", "dev", "eth0", check=False)
            workload_set_default_src(lab, site)
            self.write_peers()
            self.save_lab_state()

        self.ownership_change(op, ip, site, None, part)

    def op_flap(self, op: Op, p: OpParams) -> None:
        ip, to = p["ip"], p["to"]
        with self.mu:
            home = self.endpoints.get(ip)
        if home is None or home == to:
            op["note"] = "nothing to flap"
            return

        def part() -> None:
            nodes = self.nodes_of(to)
            for n in nodes:
                self.usable_cerctl(n, "endpoint", "add", ip, "--local-pref", "300")
            time.sleep(p["hold_ms"] / 1000.0)
            for n in nodes:
                self.usable_cerctl(n, "endpoint", "remove", ip)

        self.ownership_change(op, ip, home, to, part)

    def kill_node(self, n: Node) -> None:
        t = n["tag"]
        keys = [f"{t}-ctl"] + ([f"{t}-ka"] if n["site"] == "onprem" else []) + [f"{t}-dp"]
        with self.mu:
            for k in keys:
                self.expected_down[k] = "cer_kill"
        for k in keys:
            self.lab.stop(k, sig=signal.SIGKILL)
        self.save_lab_state()

    def heal_node(self, n: Node) -> None:
        lab = self.lab
        with self.mu:
            endpoints = dict(self.endpoints)
        start_node(lab, n, endpoints)
        # A node that was down while a /32 moved to its site advertises it now.
        try:
            saved = {e.get("ip") for e in json.loads(lab.f(f"{n['tag']}-endpoints.json").read_text()).get("endpoints", [])}
        except (OSError, ValueError):
            saved = set()
        for ip, site in endpoints.items():
            if site == n["site"] and ip not in saved:
                self.cerctl(n, "endpoint", "add", ip)
        with self.mu:
            for k in [k for k in self.expected_down if k.startswith(n["tag"] + "-")]:
                del self.expected_down[k]
        self.save_lab_state()

    def op_cer_kill(self, op: Op, p: OpParams) -> None:
        site = p["site"]
        if site == "onprem":
            m = vrrp_master(self.lab)
            nodes = [m] if m else [self.nodes_of("onprem")[0]]
        else:
            nodes = self.nodes_of(site)
        op["nodes"] = [n["node"] for n in nodes]
        for n in nodes:
            self.kill_node(n)
        time.sleep(p["hold"])
        for n in nodes:
            self.heal_node(n)

    def node_pids(self, n: Node) -> list[int]:
        return node_pids(self.lab, n)

    def op_freeze(self, op: Op, p: OpParams) -> None:
        n = self.node(p["node"])
        pids = self.node_pids(n)
        with self.mu:
            self.frozen[n["tag"]] = pids
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        op["pids"] = pids
        time.sleep(p["hold"])
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        with self.mu:
            self.frozen.pop(n["tag"], None)

    def wan_iface(self, n: Node) -> str:
        return n["tag"] if n["site"] != "onprem" else f"op{n['tag'][-1]}"

    def op_wan_cut(self, op: Op, p: OpParams) -> None:
        n = self.node(p["node"])
        iface = self.wan_iface(n)
        with self.mu:
            self.cut[n["tag"]] = iface
        ns_run(self.lab.ns("wan"), "ip", "link", "set", iface, "down")
        time.sleep(p["hold"])
        ns_run(self.lab.ns("wan"), "ip", "link", "set", iface, "up")
        with self.mu:
            self.cut.pop(n["tag"], None)

    def op_vrrp_kill(self, op: Op, p: OpParams) -> None:
        m = vrrp_master(self.lab)
        if not m:
            op["note"] = "no VRRP master"
            return
        op["node"] = m["node"]
        key = f"{m['tag']}-ka"
        with self.mu:
            self.expected_down[key] = "vrrp_kill"
        self.lab.stop(key, sig=signal.SIGKILL)
        time.sleep(p["hold"])
        start_keepalived(self.lab, m)
        with self.mu:
            self.expected_down.pop(key, None)

    def op_rr_restart(self, op: Op, p: OpParams) -> None:
        with self.mu:
            self.expected_down["rr"] = "rr_restart"
        self.lab.stop("rr", sig=signal.SIGKILL)
        time.sleep(p["hold"])
        start_rr(self.lab)
        with self.mu:
            self.expected_down.pop("rr", None)

    def op_bgp_reset(self, op: Op, p: OpParams) -> None:
        n = self.node(p["node"])
        if self.lab.rr == "gobgp":
            ns_run(self.lab.ns("rr"), "gobgp", "neighbor", self.lab.wan_addr(n), "reset")
        elif self.lab.rr == "frr":
            vtysh_rr(self.lab, f"clear bgp {self.lab.wan_addr(n)}")
        else:
            # cer-control reflector: the session is reset from the client side by a restart of
            # nothing else: drop the TCP connection with ss (kernel of the CER's namespace).
            ns_run(self.lab.node_ns(n), "ss", "-K", "dst", RR_ADDR, "dport", "=", "179", check=False)

    def fault(self, op: Op, p: OpParams, rules: list[dict[str, object]] | None = None, move_delay: int | None = None) -> None:
        site = p["site"]
        start = now_ms()
        if rules:
            st, body = self.emu(site, "POST", "/_emulator/faults", json.dumps(rules))
            if st != 200:
                raise LabError(f"{site}: faults refused: {st} {body}")
        if move_delay:
            self.emu(site, "POST", "/_emulator/config", json.dumps({"move_delay_ms": move_delay}))
        time.sleep(p["window"])
        st, left = self.emu(site, "GET", "/_emulator/faults")
        op["unconsumed"] = len((left or {}).get("faults", [])) if isinstance(left, dict) else None
        self.emu(site, "DELETE", "/_emulator/faults")
        if move_delay:
            self.emu(site, "POST", "/_emulator/config", json.dumps({"move_delay_ms": 500}))
        with self.mu:
            self.fault_windows.append((site, start, now_ms()))

    def op_fault_throttle(self, op: Op, p: OpParams) -> None:
        self.fault(op, p, [{"provider": p["site"], "kind": "throttle", "count": p["count"]}])

    def op_fault_500(self, op: Op, p: OpParams) -> None:
        self.fault(op, p, [{"provider": p["site"], "kind": "error", "count": p["count"]}])

    def op_fault_lost_reply(self, op: Op, p: OpParams) -> None:
        self.fault(op, p, [{"provider": p["site"], "kind": "timeout", "apply": True, "delay_ms": p["delay_ms"], "count": p["count"]}])

    def op_fault_latency(self, op: Op, p: OpParams) -> None:
        self.fault(op, p, [{"provider": p["site"], "kind": "delay", "delay_ms": p["delay_ms"], "count": p["count"]}])

    def op_fault_consistency(self, op: Op, p: OpParams) -> None:
        self.fault(op, p, None, move_delay=p["move_delay_ms"])
