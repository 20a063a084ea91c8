"""`scripts/lab chaos`: a seeded chaos soak on a running four-site lab (issue 16 item 3).

    scripts/lab [--name NAME] chaos --seed S --minutes M [--out DIR] [--kinds a,b,...]

One job per part of this file:

- **Plan** (`plan`): the whole schedule is drawn from `random.Random(seed)` before anything runs
  and written to `schedule.json`: operation kind, parameters and start offset. The same seed gives
  the same operations in the same order; only their timing can drift (an operation waits for the
  resources an earlier one still holds: a killed node, a frozen one, the reflector, a /32).
  Every kind runs once early (a shuffled first round), then kinds are drawn by weight.
  Operations overlap: the next one starts while earlier ones still run or converge.
- **Operations** (`Runner.op_*`): endpoint move / add / remove, ownership flap, CER SIGKILL + heal,
  freeze + thaw (SIGSTOP/SIGCONT of every process of a node), WAN cut + heal (link down of the
  node's WAN veth at the WAN router), VRRP master kill (keepalived only) + restart, reflector
  restart, provider faults through the emulator (throttling, 500s, lost replies, latency spikes,
  eventual-consistency delays), BGP session reset (`gobgp neighbor ADDR reset` at the reflector).
- **Probes** (`helper_probe`, one per workload namespace): every 50 ms a UDP datagram from each
  /32 the namespace holds to every other /32; the receiver checks that the packet's source address
  is the /32 the sender wrote in it, and records runs of consecutive received probes per pair.
  `helper_arp` asks the on-prem segment for every remote /32 every 200 ms and tcpdump records
  the ARP frames on the workload's segment port: the proxy-ARP holders' evidence.
- **Invariants** (`Checks.*`): each returns a list of violations, each with its evidence. Checked
  continuously (a sampler thread) and at every quiescent point (no operation in flight, then
  convergence awaited up to `CONVERGE_BOUND`, then reachability up to `REACH_BOUND`).
- **Report** (`report.md`, `report.json`): operations by kind, outage per kind (p50/p99/max),
  quiescent points, fences, violations. A violation stops the run and keeps the evidence
  (`violation-N/`: the invariant, its evidence, the operation log, holder views and journals,
  the ARP pcap, `cerctl explain` of every /32 from every CER, every lab log).

Bounds (see README "Chaos soak"): after the last operation of a round ends, the lab must converge
(every CER agrees on every owner, every cloud capture confirmed, every fabric delivering as the
owners say, exactly one on-prem gate open) within CONVERGE_BOUND = 60 s, and then every pair of
/32s must exchange probes within REACH_BOUND = 8 s.
"""

import argparse
import json
import os
import random
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

SELF = Path(__file__).resolve()
PY = "/usr/bin/python3"
PROBE_PORT = 7977
PROBE_MS = 50
ARP_MS = 200
# After quiescence: convergence (BGP + capture + fabrics + VRRP gate), then probes between every pair.
CONVERGE_BOUND = 60.0
REACH_BOUND = 8.0
# Continuous bounds (while operations run): a pair dark for longer, or an owned /32 held by nobody
# at a provider for longer, is a violation even in the middle of the chaos.
DARK_BOUND = 120.0
NOBODY_BOUND = 60.0
# A provider mutation from the CER counts as stale when the CER's intent for the /32 pointed the
# other way for this long before the request reached the provider (fence check -> request: ms).
FENCE_EPS_MS = 300
# Mutation windows in which the workload and a CER may both claim an on-prem /32 (the lab adds the
# address at the workload before BGP moves ownership): seconds around such an operation.
ONPREM_CLAIM_SLACK = (1.0, 3.0)
# After an on-prem node thaws, its keepalived still believes what it believed when frozen (a master
# stays master until it hears the other's adverts, up to 3 advert intervals of 1 s) and its
# dataplane answers ARP at once: two holders for a moment, by design of VRRP. The other node's
# duplicate-holder alarm (or the thawed node's own) in this window is expected, not a violation.
THAW_SLACK = 5.0

KINDS = [
    "move", "add", "remove", "flap", "cer_kill", "freeze", "wan_cut", "vrrp_kill", "rr_restart",
    "fault_throttle", "fault_500", "fault_lost_reply", "fault_latency", "fault_consistency", "bgp_reset",
]
WEIGHTS = {
    "move": 5, "add": 2, "remove": 2, "flap": 4, "cer_kill": 2, "freeze": 2, "wan_cut": 2,
    "vrrp_kill": 1, "rr_restart": 1, "fault_throttle": 2, "fault_500": 2, "fault_lost_reply": 1,
    "fault_latency": 2, "fault_consistency": 1, "bgp_reset": 2,
}
CLOUDS = ["aws", "azure", "oci"]
NEW_IPS = [f"10.77.60.{i}" for i in range(20, 40)]


def now_ms():
    return int(time.time() * 1000)


def pctl(values, p):
    if not values:
        return None
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * (len(v) - 1)))))
    return v[k]


class Interrupted(Exception):
    """An operation gave up waiting because the soak is stopping (after a violation elsewhere):
    not a finding of its own."""


class Violation(Exception):
    def __init__(self, invariant, message, evidence=None):
        super().__init__(f"{invariant}: {message}")
        self.invariant = invariant
        self.message = message
        self.evidence = evidence or {}


# ---------------------------------------------------------------- plan


DEFAULT_ENDPOINTS = {"10.77.60.10": "onprem", "10.77.60.11": "aws", "10.77.60.12": "azure", "10.77.60.13": "oci"}


def plan(seed, minutes, sites_nodes, kinds=None, endpoints=None):
    """The schedule, from the seed (and the lab's endpoints at the start, by default those of a
    fresh lab): [{i, at, kind, params}]. `sites_nodes`: site -> nodes."""
    rng = random.Random(seed)
    kinds = [k for k in KINDS if not kinds or k in kinds]
    horizon = minutes * 60.0
    endpoints = dict(endpoints or DEFAULT_ENDPOINTS)
    all_nodes = [n for s in sites_nodes for n in sites_nodes[s]]
    first = list(kinds)
    rng.shuffle(first)
    ops = []
    t = 5.0
    i = 0
    # Leave time at the end for the operations to finish (holds are at most ~25 s).
    while t < max(horizon - 30.0, 20.0):
        kind = first.pop(0) if first else rng.choices(kinds, [WEIGHTS[k] for k in kinds])[0]
        p = {}
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


# ---------------------------------------------------------------- the run


class Chaos:
    def __init__(self, L, lab, seed, minutes, out, kinds=None):
        self.L = L
        self.lab = lab
        self.seed = seed
        self.minutes = minutes
        self.out = Path(out)
        self.kinds = kinds
        self.state = lab.load_state()
        self.endpoints = dict(self.state["endpoints"])
        self.mu = threading.RLock()
        self.locks = {}
        self.oplog = []  # every operation: kind, params, start, end, error
        self.life = {ip: [[0, None]] for ip in self.endpoints}  # ip -> [[added_ms, removed_ms]]
        self.ip_windows = []  # [ip, start_ms, end_ms or None while it runs, sites]: ownership of ip changing
        self.expected_down = {}  # process key -> why
        self.frozen = {}  # node tag -> [pids]
        self.thaws = []  # unix time of each on-prem node's thaw
        self.thaw_duals = []  # two holders right after a thaw (by design of VRRP; reported, not violations)
        self.cut = {}  # node tag -> wan iface
        self.fault_windows = []  # (site, start_ms, end_ms)
        self.helpers = []  # Popen of our helpers (probers, arp, tcpdump, relays)
        self.relays = {}
        self.violations = []
        self.stop = threading.Event()
        self.quiescent = []
        self.alarm_base = {}
        self.nobody_since = {}
        self.log_offsets = {}
        self.pcap_claims = []
        self.pcap_off = 0
        self.checked_fence_seq = {}
        self.fence_stats = {}
        self.explains = []
        self.t0 = None

    # ------------------------------------------------------------ helpers

    def log(self, msg):
        line = f"chaos {time.strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        with open(self.out / "chaos.log", "a") as fh:
            fh.write(line + "\n")

    def lock(self, name):
        with self.mu:
            return self.locks.setdefault(name, threading.Lock())

    def node(self, name):
        return next(n for n in self.L.NODES if n["node"] == name)

    def nodes_of(self, site):
        return self.lab.nodes_of(site)

    def emu(self, site, method, path, body=None):
        r = self.relays[site]
        with r["lock"]:
            req = {"method": method, "path": path, "body": body}
            r["proc"].stdin.write(json.dumps(req) + "\n")
            r["proc"].stdin.flush()
            line = r["proc"].stdout.readline()
        if not line:
            raise self.L.LabError(f"emulator relay for {site} ended")
        v = json.loads(line)
        if v.get("error"):
            raise self.L.LabError(f"{site} emulator {method} {path}: {v['error']}")
        try:
            return v["status"], json.loads(v["body"]) if v["body"] else None
        except ValueError:
            return v["status"], v["body"]

    def cerctl(self, node, *args):
        if args[:2] == ("endpoint", "remove"):
            # A node healed meanwhile already dropped what moved away while it was down.
            p = self.L.run([self.lab.bin("cerctl"), *args, "--socket", str(self.lab.ctl_sock(node))], check=False)
            if p.returncode != 0 and "is not an endpoint of this node" not in p.stderr + p.stdout:
                raise self.L.LabError(f"cerctl {' '.join(args)} on {node['node']} failed: {p.stderr.strip()} {p.stdout.strip()}")
            return p.stdout
        return self.L.ctl(self.lab, node, *args)

    def write_peers(self):
        with self.mu:
            peers = sorted(self.endpoints)
        tmp = self.out / "peers.json.tmp"
        tmp.write_text(json.dumps({"peers": peers}))
        tmp.replace(self.out / "peers.json")

    def save_lab_state(self):
        with self.mu:
            failed = sorted({k.rsplit("-", 1)[0] for k in self.expected_down})
            self.L.write_state(self.lab, dict(self.endpoints), {"failed": [n["node"] for n in self.L.NODES if n["tag"] in failed]})

    def spawn_helper(self, ns, args, logname):
        logf = open(self.out / logname, "ab")
        p = subprocess.Popen(["ip", "netns", "exec", ns, *args], stdin=subprocess.PIPE if args[2] == "_relay" else subprocess.DEVNULL,
                             stdout=subprocess.PIPE if args[2] == "_relay" else logf, stderr=logf, start_new_session=True,
                             text=True)
        logf.close()
        self.helpers.append(p)
        return p

    def start_helpers(self):
        self.write_peers()
        for site in CLOUDS:
            p = self.spawn_helper(self.lab.fab_ns(site), [PY, str(SELF), "_relay"], f"relay-{site}.log")
            self.relays[site] = {"proc": p, "lock": threading.Lock()}
        for site in self.L.SITES:
            self.spawn_helper(self.lab.wl_ns(site), [PY, str(SELF), "_probe", "--site", site, "--peers", str(self.out / "peers.json"),
                                                     "--out", str(self.out), "--interval-ms", str(PROBE_MS), "--port", str(PROBE_PORT)],
                              f"probe-{site}.log")
        self.spawn_helper(self.lab.wl_ns("onprem"), [PY, str(SELF), "_arp", "--peers", str(self.out / "peers.json"),
                                                     "--interval-ms", str(ARP_MS)], "arp.log")
        self.spawn_helper(self.lab.ns("opseg"), ["tcpdump", "-Z", "root", "-i", "wl", "-n", "-U", "-w", str(self.out / "onprem-arp.pcap"), "arp"],
                          "tcpdump.log")

    def stop_helpers(self):
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

    # ------------------------------------------------------------ operations

    def record(self, op, **kw):
        with self.mu:
            op.update(kw)
        with open(self.out / "operations.jsonl", "a") as fh:
            fh.write(json.dumps({k: v for k, v in op.items() if not k.startswith("_")}) + "\n")

    def run_op(self, op):
        kind, p = op["kind"], op["params"]
        res = self.resources(op)
        for r in sorted(res):
            self.lock(r).acquire()
        try:
            op["start_ms"] = now_ms()
            self.log(f"op {op['i']} {kind} {json.dumps(p)} starts")
            getattr(self, "op_" + kind)(op, p)
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

    def resources(self, op):
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

    def with_node(self, node, f):
        """Runs f() while NODE is usable (not killed, frozen or cut by another operation)."""
        with self.lock(f"node:{node['node']}"):
            return f()

    def ownership_change(self, op, ip, old, new, fn):
        # The window is open from the start: a check that runs while the change is under way
        # must see it (the workload and a CER both claim an on-prem /32 during it).
        w = [ip, now_ms(), None, {s for s in (old, new) if s}]
        with self.mu:
            self.ip_windows.append(w)
        try:
            fn()
        finally:
            with self.mu:
                w[2] = now_ms()

    def onprem_windows(self, after_s):
        """(ip, from_s, to_s) around every ownership change involving on-prem, ONPREM_CLAIM_SLACK[0]
        before it and after_s after it (a change still under way runs to now)."""
        with self.mu:
            return [(ip, a / 1000 - ONPREM_CLAIM_SLACK[0], (b if b is not None else now_ms()) / 1000 + after_s)
                    for ip, a, b, s in self.ip_windows if "onprem" in s]

    def op_move(self, op, p, add=False):
        L, lab = self.L, self.lab
        ip, to = p["ip"], p["to"]
        with self.mu:
            old = self.endpoints.get(ip)
        if old == to:
            op["note"] = f"{ip} already at {to}"
            return
        op["from"] = old

        def bgp_part():
            # 1. The workload at the new site gets the address.
            if to == "onprem":
                L.ns_run(lab.wl_ns(to), "ip", "addr", "replace", f"{ip}/24", "dev", "eth0")
            else:
                L.ns_run(lab.wl_ns(to), "ip", "addr", "replace", f"{ip}/32", "dev", "eth0")
                L.workload_set_default_src(lab, to)
            # 2. BGP: the new site's CERs take ownership, the old site's stop advertising.
            for n in self.nodes_of(to):
                self.with_node(n, lambda n=n: self.cerctl(n, "endpoint", "move" if old else "add", ip))
            with self.mu:
                self.endpoints[ip] = to
                if old is None:
                    self.life.setdefault(ip, []).append([now_ms(), None])
            if old:
                for n in self.nodes_of(old):
                    self.with_node(n, lambda n=n: self.cerctl(n, "endpoint", "remove", ip))
                # 3. The old workload no longer holds it.
                L.ns_run(lab.wl_ns(old), "ip", "addr", "del", f"{ip}/{24 if old == 'onprem' else 32}", "dev", "eth0", check=False)
                L.workload_set_default_src(lab, old)
            self.write_peers()
            self.save_lab_state()
            # 4. In a cloud, the operator gives the workload NIC the address once our CER released it.
            if to != "onprem":
                node = self.nodes_of(to)[0]
                t_end = time.time() + 60
                while time.time() < t_end and not self.stop.is_set():
                    c = L.capture_view(lab, node).get(ip, {})
                    if c.get("desired") == "release" and c.get("phase") == "confirmed":
                        break
                    time.sleep(0.2)
                else:
                    if self.stop.is_set():
                        raise Interrupted(f"the soak stopped while waiting for the {to} CER to release {ip}")
                    raise L.LabError(f"{to} CER did not confirm the release of {ip} within 60 s")
                # The operator retries through injected provider faults (a lost reply ends the
                # lab's request helper without an answer).
                t_end = time.time() + 90
                while True:
                    try:
                        L.provider_assign_to_workload(lab, to, ip)
                        break
                    except L.LabError as e:
                        if time.time() > t_end or self.stop.is_set():
                            raise
                        self.log(f"operator: assigning {ip} to the {to} workload NIC failed ({str(e)[:120]}); retrying")
                        time.sleep(1)

        self.ownership_change(op, ip, old, to, bgp_part)

    def op_add(self, op, p):
        self.op_move(op, p, add=True)

    def op_remove(self, op, p):
        L, lab = self.L, self.lab
        ip = p["ip"]
        with self.mu:
            site = self.endpoints.get(ip)
        if site is None:
            op["note"] = f"{ip} is not an endpoint"
            return

        def part():
            for n in self.nodes_of(site):
                self.with_node(n, lambda n=n: self.cerctl(n, "endpoint", "remove", ip))
            with self.mu:
                del self.endpoints[ip]
                self.life[ip][-1][1] = now_ms()
            L.ns_run(lab.wl_ns(site), "ip", "addr", "del", f"{ip}/{24 if site == 'onprem' else 32}", "dev", "eth0", check=False)
            L.workload_set_default_src(lab, site)
            self.write_peers()
            self.save_lab_state()

        self.ownership_change(op, ip, site, None, part)

    def op_flap(self, op, p):
        ip, to = p["ip"], p["to"]
        with self.mu:
            home = self.endpoints.get(ip)
        if home is None or home == to:
            op["note"] = "nothing to flap"
            return

        def part():
            nodes = self.nodes_of(to)
            for n in nodes:
                self.with_node(n, lambda n=n: self.cerctl(n, "endpoint", "add", ip, "--local-pref", "300"))
            time.sleep(p["hold_ms"] / 1000.0)
            for n in nodes:
                self.with_node(n, lambda n=n: self.cerctl(n, "endpoint", "remove", ip))

        self.ownership_change(op, ip, home, to, part)

    def kill_node(self, n):
        t = n["tag"]
        keys = [f"{t}-ctl"] + ([f"{t}-ka"] if n["site"] == "onprem" else []) + [f"{t}-dp"]
        with self.mu:
            for k in keys:
                self.expected_down[k] = "cer_kill"
        for k in keys:
            self.lab.stop(k, sig=signal.SIGKILL)
        self.save_lab_state()

    def heal_node(self, n):
        L, lab = self.L, self.lab
        with self.mu:
            endpoints = dict(self.endpoints)
        L.start_node(lab, n, endpoints)
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

    def op_cer_kill(self, op, p):
        site = p["site"]
        if site == "onprem":
            m = self.L.vrrp_master(self.lab)
            nodes = [m] if m else [self.nodes_of("onprem")[0]]
        else:
            nodes = self.nodes_of(site)
        op["nodes"] = [n["node"] for n in nodes]
        for n in nodes:
            self.kill_node(n)
        time.sleep(p["hold"])
        for n in nodes:
            self.heal_node(n)

    def node_pids(self, n):
        t = n["tag"]
        pids = [self.lab.pid_of(k) for k in (f"{t}-ctl", f"{t}-dp", f"{t}-ka")]
        try:
            c = int(self.lab.f(f"{t}-ka-vrrp.pid").read_text().split()[0])
            if self.L.pid_matches(c, "keepalived"):
                pids.append(c)
        except (OSError, ValueError, IndexError):
            pass
        return [x for x in pids if x]

    def op_freeze(self, op, p):
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
            if n["site"] == "onprem":
                self.thaws.append(time.time())

    def wan_iface(self, n):
        return n["tag"] if n["site"] != "onprem" else f"op{n['tag'][-1]}"

    def op_wan_cut(self, op, p):
        n = self.node(p["node"])
        iface = self.wan_iface(n)
        with self.mu:
            self.cut[n["tag"]] = iface
        self.L.ns_run(self.lab.ns("wan"), "ip", "link", "set", iface, "down")
        time.sleep(p["hold"])
        self.L.ns_run(self.lab.ns("wan"), "ip", "link", "set", iface, "up")
        with self.mu:
            self.cut.pop(n["tag"], None)

    def op_vrrp_kill(self, op, p):
        m = self.L.vrrp_master(self.lab)
        if not m:
            op["note"] = "no VRRP master"
            return
        op["node"] = m["node"]
        key = f"{m['tag']}-ka"
        with self.mu:
            self.expected_down[key] = "vrrp_kill"
        self.lab.stop(key, sig=signal.SIGKILL)
        time.sleep(p["hold"])
        self.L.start_keepalived(self.lab, m)
        with self.mu:
            self.expected_down.pop(key, None)

    def op_rr_restart(self, op, p):
        with self.mu:
            self.expected_down["rr"] = "rr_restart"
        self.lab.stop("rr", sig=signal.SIGKILL)
        time.sleep(p["hold"])
        self.L.start_rr(self.lab)
        with self.mu:
            self.expected_down.pop("rr", None)

    def op_bgp_reset(self, op, p):
        n = self.node(p["node"])
        if self.lab.rr == "gobgp":
            self.L.ns_run(self.lab.ns("rr"), "gobgp", "neighbor", self.lab.wan_addr(n), "reset")
        else:
            # cer-control reflector: the session is reset from the client side by a restart of
            # nothing else: drop the TCP connection with ss (kernel of the CER's namespace).
            self.L.ns_run(self.lab.node_ns(n), "ss", "-K", "dst", self.L.RR_ADDR, "dport", "=", "179", check=False)

    def fault(self, op, p, rules=None, move_delay=None):
        site = p["site"]
        start = now_ms()
        if rules:
            st, body = self.emu(site, "POST", "/_emulator/faults", json.dumps(rules))
            if st != 200:
                raise self.L.LabError(f"{site}: faults refused: {st} {body}")
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

    def provider(self, site):
        return site

    def op_fault_throttle(self, op, p):
        self.fault(op, p, [{"provider": p["site"], "kind": "throttle", "count": p["count"]}])

    def op_fault_500(self, op, p):
        self.fault(op, p, [{"provider": p["site"], "kind": "error", "count": p["count"]}])

    def op_fault_lost_reply(self, op, p):
        self.fault(op, p, [{"provider": p["site"], "kind": "timeout", "apply": True, "delay_ms": p["delay_ms"], "count": p["count"]}])

    def op_fault_latency(self, op, p):
        self.fault(op, p, [{"provider": p["site"], "kind": "delay", "delay_ms": p["delay_ms"], "count": p["count"]}])

    def op_fault_consistency(self, op, p):
        self.fault(op, p, None, move_delay=p["move_delay_ms"])

    # ------------------------------------------------------------ the soak

    def run(self):
        self.out.mkdir(parents=True, exist_ok=True)
        sites_nodes = {s: [n["node"] for n in self.nodes_of(s)] for s in self.L.SITES}
        ops = plan(self.seed, self.minutes, sites_nodes, self.kinds, self.endpoints)
        if self.endpoints != DEFAULT_ENDPOINTS:
            print(f"chaos: the lab's endpoints are not a fresh lab's ({self.endpoints}): the schedule depends on them too", flush=True)
        (self.out / "schedule.json").write_text(json.dumps({"seed": self.seed, "minutes": self.minutes, "operations": ops}, indent=1))
        print(f"chaos: seed {self.seed}, {self.minutes} min, {len(ops)} operations planned "
              f"(reproduce: scripts/lab{self.L.name_opt(self.lab)} chaos --seed {self.seed} --minutes {self.minutes}); out {self.out}", flush=True)
        self.checks = Checks(self)
        threads = []
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
            self.violations.append(Violation("harness", f"the soak itself failed: {type(e).__name__}: {e}", {"trace": traceback.format_exc()}))
        finally:
            self.stop.set()
            for t in threads:
                t.join(timeout=90)
            self.thaw_all()
            if self.violations:
                self.keep_evidence()
            self.stop_helpers()
            self.report()
        return 1 if self.violations else 0

    def thaw_all(self):
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
            self.L.ns_run(self.lab.ns("wan"), "ip", "link", "set", iface, "up", check=False)

    def wait_probes_flowing(self):
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
                self.life[ip][0][0] = start
        self.log("probes flow between every pair; operations start")

    def sample_loop(self):
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

    def quiesce(self, threads):
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
            probs = self.L.convergence_problems(self.lab, endpoints) + self.checks.removed_problems()
            if not probs:
                break
            if time.time() - t_q > CONVERGE_BOUND:
                raise Violation("convergence", f"not converged {CONVERGE_BOUND:.0f} s after the operations ended", {"problems": probs, "explain": self.checks.explain_all()})
            time.sleep(0.5)
        t_conv = time.time()
        self.checks.workloads_hold(endpoints)
        reach = self.checks.reachability(t_conv)
        t_reach = time.time()
        self.checks.strict()
        q = {"at_ms": int(t_q * 1000), "converge_s": round(t_conv - t_q, 2), "reach_s": round(t_reach - t_conv, 2),
             "endpoints": endpoints, "stuck_at_start": len(stuck), "pairs": reach}
        self.quiescent.append(q)
        self.log(f"quiescent point {len(self.quiescent)}: converged in {q['converge_s']} s, every pair reached {q['reach_s']} s later; invariants hold")

    # ------------------------------------------------------------ evidence and report

    def keep_evidence(self):
        d = self.out / f"violation-{len(list(self.out.glob('violation-*'))) + 1}"
        d.mkdir(parents=True, exist_ok=True)
        v = self.violations[0]
        (d / "violation.json").write_text(json.dumps({"seed": self.seed, "invariant": v.invariant, "message": v.message,
                                                       "evidence": v.evidence, "all": [str(x) for x in self.violations]}, indent=1, default=str))
        with self.mu:
            (d / "operations.json").write_text(json.dumps([{k: x for k, x in o.items() if not k.startswith("_")} for o in self.oplog], indent=1))
        for site in CLOUDS:
            for what in ("state", "journal"):
                try:
                    st, body = self.emu(site, "GET", f"/_emulator/{what}")
                    (d / f"{site}-emulator-{what}.json").write_text(json.dumps(body, indent=1))
                except Exception as e:  # noqa: BLE001
                    (d / f"{site}-emulator-{what}.json").write_text(json.dumps({"error": str(e)}))
        try:
            (d / "explain.json").write_text(json.dumps(self.checks.explain_all(), indent=1))
        except Exception as e:  # noqa: BLE001
            (d / "explain.json").write_text(json.dumps({"error": str(e)}))
        st = subprocess.run([PY, str(self.L.SELF), "--name", self.lab.name, "status"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
        (d / "lab-status.txt").write_text(st.stdout)
        logs = d / "logs"
        logs.mkdir(exist_ok=True)
        for f in self.lab.run_dir.glob("*"):
            if f.suffix in (".log", ".json", ".toml", ".conf"):
                try:
                    (logs / f.name).write_bytes(f.read_bytes())
                except OSError:
                    pass
        for f in self.out.glob("*"):
            if f.is_file() and (f.suffix in (".pcap", ".jsonl") or f.name.startswith("probe-")):
                try:
                    (d / f.name).write_bytes(f.read_bytes())
                except OSError:
                    pass
        self.evidence_dir = d
        print(f"chaos: VIOLATION of {v.invariant}: {v.message}\nchaos: seed {self.seed}; evidence kept in {d}", file=sys.stderr, flush=True)

    def report(self):
        outages = self.checks.outages_per_op() if self.t0 else {}
        by_kind = {}
        for op in self.oplog:
            k = op["kind"]
            e = by_kind.setdefault(k, {"count": 0, "errors": 0, "outages_ms": []})
            e["count"] += 1
            if op.get("error"):
                e["errors"] += 1
            if op["i"] in outages:
                e["outages_ms"].append(outages[op["i"]])
        rows = []
        for k in KINDS:
            e = by_kind.get(k)
            if not e:
                continue
            o = e["outages_ms"]
            e.update({"p50_ms": pctl(o, 50), "p99_ms": pctl(o, 99), "max_ms": max(o) if o else None})
            rows.append(f"| {k} | {e['count']} | {e['p50_ms']} | {e['p99_ms']} | {e['max_ms']} |")
        rep = {
            "seed": self.seed, "minutes": self.minutes, "lab": self.lab.name,
            "operations": len(self.oplog), "planned": getattr(self, "planned", None), "by_kind": by_kind, "quiescent_points": self.quiescent,
            "violations": [{"invariant": v.invariant, "message": v.message} for v in self.violations],
            "evidence_dir": str(getattr(self, "evidence_dir", "")) or None,
            "fences": self.fence_stats, "explained": self.explains, "thaw_dual_holders": self.thaw_duals,
            "bounds": {"converge_s": CONVERGE_BOUND, "reach_s": REACH_BOUND, "dark_s": DARK_BOUND, "nobody_s": NOBODY_BOUND, "fence_eps_ms": FENCE_EPS_MS},
        }
        (self.out / "report.json").write_text(json.dumps(rep, indent=1, default=str))
        md = [f"# Chaos soak: seed {self.seed}, {self.minutes} min", "",
              f"Lab `{self.lab.name}`, {len(self.oplog)} operations run (of {getattr(self, 'planned', '?')} planned), {len(self.quiescent)} quiescent points, "
              f"**{len(self.violations)} violations**.", "",
              "Outage per operation: the longest run of lost 50 ms probes, over every pair of /32s, that began while the "
              "operation ran or within 5 s after it ended (overlapping operations share an outage).", "",
              "| kind | operations | outage p50 ms | p99 ms | max ms |", "|---|---|---|---|---|", *rows, ""]
        if self.quiescent:
            conv = [q["converge_s"] for q in self.quiescent]
            reach = [q["reach_s"] for q in self.quiescent]
            md += [f"Quiescent points: convergence after the last operation {min(conv)}-{max(conv)} s (bound {CONVERGE_BOUND:.0f} s), "
                   f"then every pair reachable within {max(reach)} s (bound {REACH_BOUND:.0f} s).", ""]
        if self.fence_stats:
            md += ["Provider mutations from the CERs checked against their intents: " +
                   ", ".join(f"{s}: {v['cer_mutations']} mutations, {v['fenced']} fenced" for s, v in sorted(self.fence_stats.items())), ""]
        if self.thaw_duals:
            md += [f"Two proxy-ARP holders right after an on-prem node thawed (VRRP's behaviour, reported, not violations): "
                   f"{len(self.thaw_duals)} claims, {min(d['after_thaw_ms'] for d in self.thaw_duals)}-"
                   f"{max(d['after_thaw_ms'] for d in self.thaw_duals)} ms after the thaw.", ""]
        for v in self.violations:
            md += [f"- VIOLATION `{v.invariant}`: {v.message}"]
        if getattr(self, "evidence_dir", None):
            md += ["", f"Evidence: `{self.evidence_dir}`"]
        (self.out / "report.md").write_text("\n".join(md) + "\n")
        print("\n".join(md), flush=True)


# ---------------------------------------------------------------- invariants


def parse_pcap(path, offset):
    """ARP frames of a (growing) classic pcap from `offset`: [(ts, op, sha, spa, tpa)], new offset."""
    out = []
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
        frame = data[i + 16:i + 16 + incl]
        i += 16 + incl
        if len(frame) >= 42 and frame[12:14] == b"\x08\x06":
            op = struct.unpack_from("!H", frame, 20)[0]
            sha = ":".join(f"{b:02x}" for b in frame[22:28])
            spa = socket.inet_ntoa(frame[28:32])
            tpa = socket.inet_ntoa(frame[38:42])
            out.append((sec + usec / 1e6, op, sha, spa, tpa))
    return out, offset + i


class Checks:
    def __init__(self, chaos):
        self.c = chaos
        self.L = chaos.L
        self.lab = chaos.lab

    # -------------------------------------------- probes: reachability and source preservation

    def probe_runs(self):
        """(src, dst) -> merged [start_slot, end_slot] runs of received probes, from every receiver."""
        runs = {}
        for site in self.L.SITES:
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
            m = []
            for a, b in rs:
                if m and a <= m[-1][1] + 1:
                    m[-1][1] = max(m[-1][1], b)
                else:
                    m.append([a, b])
            merged[k] = m
        return merged

    def live_pairs(self):
        with self.c.mu:
            ips = sorted(self.c.endpoints)
        return [(s, d) for s in ips for d in ips if s != d]

    def dark_pairs(self, since_ms):
        """Pairs with no probe sent after since_ms received yet."""
        slot = since_ms // PROBE_MS
        runs = self.probe_runs()
        return [f"{s}>{d}" for s, d in self.live_pairs() if not runs.get((s, d)) or runs[(s, d)][-1][1] < slot]

    def workload_addresses(self):
        """site -> the pool /32s its workload namespace holds now."""
        held = {}
        for site in self.L.SITES:
            out = self.L.ns_run(self.lab.wl_ns(site), "ip", "-j", "-4", "addr", "show", "dev", "eth0", check=False).stdout
            try:
                held[site] = {a["local"] for i in json.loads(out) for a in i.get("addr_info", []) if a.get("local", "").startswith("10.77.60.")}
            except ValueError:
                held[site] = set()
        return held

    @staticmethod
    def holding_problems(endpoints, held):
        """What the lab's own bookkeeping gets wrong: a /32 its workload does not hold, or one
        held by a workload it does not live at (a harness fault, not the router's)."""
        probs = [f"{ip} lives at {site} but its workload does not hold it" for ip, site in sorted(endpoints.items()) if ip not in held.get(site, set())]
        probs += [f"the {site} workload holds {ip}, which lives at {endpoints.get(ip) or 'no site (removed)'}"
                  for site, ips in sorted(held.items()) for ip in sorted(ips) if endpoints.get(ip) != site]
        return probs

    def workloads_hold(self, endpoints):
        """Quiescent: every workload holds exactly the /32s that live at its site, so a dark pair
        is never the harness having lost an address (as deleting the on-prem primary once did)."""
        probs = self.holding_problems(endpoints, self.workload_addresses())
        if probs:
            raise Violation("harness", f"{len(probs)} workload addresses disagree with the lab's endpoints", {"problems": probs})

    def reachability(self, t_conv):
        """Quiescent: every pair exchanges probes sent after convergence within REACH_BOUND."""
        since = int(t_conv * 1000)
        while True:
            dark = self.dark_pairs(since)
            if not dark:
                return len(self.live_pairs())
            if time.time() - t_conv > REACH_BOUND:
                raise Violation("reachability", f"{len(dark)} pairs of /32s exchange no probes {REACH_BOUND:.0f} s after convergence",
                                {"dark_pairs": dark, "runs_tail": {f"{s}>{d}": r[-3:] for (s, d), r in self.probe_runs().items()},
                                 "explain": self.explain_all()})
            time.sleep(0.25)

    def source_preserved(self):
        bad = []
        for site in self.L.SITES:
            try:
                for line in (self.c.out / f"probe-{site}.events.jsonl").read_text().splitlines():
                    e = json.loads(line)
                    if e.get("bad_source"):
                        bad.append({"receiver": site, **e["bad_source"]})
            except (OSError, ValueError):
                pass
        if bad:
            raise Violation("source_preserved", f"{len(bad)} probes arrived with a source other than the sender's /32", {"probes": bad[:50]})

    def outages_per_op(self):
        """op index -> longest probe gap (ms) that began while it ran or up to 5 s after."""
        runs = self.probe_runs()
        holes = []
        end_ms = now_ms() - 1500
        with self.c.mu:
            life = {ip: [list(x) for x in v] for ip, v in self.c.life.items()}
        for s in life:
            for d in life:
                if s == d:
                    continue
                rs = runs.get((s, d), [])
                self.pair_holes(holes, rs, life[s], life[d], end_ms)
        out = {}

        for op in self.c.oplog:
            if "start_ms" not in op:
                continue
            lo, hi = op["start_ms"] - 500, (op.get("end_ms") or end_ms) + 5000
            out[op["i"]] = max([dur for t, dur in holes if lo <= t <= hi], default=0)
        return out

    @staticmethod
    def pair_holes(holes, rs, life_s, life_d, end_ms):
        """Appends (start_ms, length_ms) of every run of unreceived probe slots of one pair while
        both of its /32s existed."""
        for ls in life_s:
            for ld in life_d:
                a = max(ls[0], ld[0])
                b = min(ls[1] or end_ms, ld[1] or end_ms, end_ms)
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

    def holders(self, site):
        st, body = self.c.emu(site, "GET", "/_emulator/holders")
        if st != 200:
            raise self.L.LabError(f"{site} holders: {st}")
        return {h["ip"]: h["nic"] for h in body["holders"] if not h.get("primary")}

    def expected_nic(self, site, owner):
        p = self.L.PROVIDER[site]
        if owner is None:
            return None
        return p["wl_nic"] if owner == site else p["cer_nic"]

    def provider_holders(self, strict):
        """Each cloud: every owned /32 held by exactly the NIC its owner implies; never by nobody
        while owned (continuously: not longer than NOBODY_BOUND); a /32 nobody owns never on the
        CER's NIC (strict)."""
        with self.c.mu:
            endpoints = dict(self.c.endpoints)
            removed = [ip for ip, l in self.c.life.items() if ip not in endpoints]
        bad = []
        now = time.time()
        for site in CLOUDS:
            h = self.holders(site)
            for ip, owner in endpoints.items():
                want = self.expected_nic(site, owner)
                got = h.get(ip)
                key = (site, ip)
                if got is None:
                    since = self.c.nobody_since.setdefault(key, now)
                    if strict or now - since > NOBODY_BOUND:
                        bad.append({"site": site, "ip": ip, "owner": owner, "holder": None, "want": want, "nobody_for_s": round(now - since, 1)})
                else:
                    self.c.nobody_since.pop(key, None)
                    if strict and got != want:
                        bad.append({"site": site, "ip": ip, "owner": owner, "holder": got, "want": want})
            if strict:
                for ip in removed:
                    if h.get(ip) == self.L.PROVIDER[site]["cer_nic"]:
                        bad.append({"site": site, "ip": ip, "owner": None, "holder": h.get(ip), "want": "not the CER's NIC"})
        if bad:
            raise Violation("provider_holder", f"{len(bad)} /32s held by the wrong holder at a provider", {"holders": bad})

    def removed_problems(self):
        """What still names a removed /32: a CER's owner view, a capture on a CER's NIC."""
        with self.c.mu:
            removed = [ip for ip in self.c.life if ip not in self.c.endpoints]
        if not removed:
            return []
        probs = []
        for n in self.L.alive_nodes(self.lab):
            v = self.L.node_view(self.lab, n)
            probs += [f"{n['node']}: removed {ip} still owned by {v[ip].get('identity')}" for ip in removed if ip in v]
        for site in CLOUDS:
            h = self.holders(site)
            probs += [f"{site}: removed {ip} still on the CER's NIC" for ip in removed if h.get(ip) == self.L.PROVIDER[site]["cer_nic"]]
        return probs

    def owners_agree(self):
        """Strict: every live CER's BGP owner of every /32 is a node of the site the /32 lives at."""
        with self.c.mu:
            endpoints = dict(self.c.endpoints)
            removed = [ip for ip in self.c.life if ip not in endpoints]
        bad = []
        for n in self.L.alive_nodes(self.lab):
            v = self.L.node_view(self.lab, n)
            for ip, site in endpoints.items():
                o = v.get(ip)
                want = self.L.expected_owner_nodes(endpoints, ip)
                if not o or o.get("identity") not in want:
                    bad.append({"node": n["node"], "ip": ip, "owner": o.get("identity") if o else None, "want": sorted(want)})
            for ip in removed:
                if v.get(ip):
                    bad.append({"node": n["node"], "ip": ip, "owner": v[ip].get("identity"), "want": None})
        if bad:
            raise Violation("bgp_owner", "CERs disagree with where the /32s live", {"owners": bad})

    # -------------------------------------------- on-prem: proxy-ARP holders

    def onprem_macs(self):
        macs = {}
        for n in self.lab.nodes_of("onprem"):
            out = self.L.ns_run(self.lab.node_ns(n), "ip", "-j", "link", "show", "lan0", check=False).stdout
            try:
                macs[json.loads(out)[0]["address"]] = n["node"]
            except (ValueError, IndexError, KeyError):
                pass
        out = self.L.ns_run(self.lab.wl_ns("onprem"), "ip", "-j", "link", "show", "eth0", check=False).stdout
        try:
            macs[json.loads(out)[0]["address"]] = "workload"
        except (ValueError, IndexError, KeyError):
            pass
        return macs

    def proxy_arp_pcap(self):
        """Never two holders on the segment at once. Two patterns on the ARP capture show two
        holders (claims are ARP replies and gratuitous ARPs for pool /32s):
        - one ARP request for a /32 answered by two MACs (before the next request, within 250 ms);
        - claims alternating X, Y, X with both gaps <= 300 ms (two holders both announcing).
        A handover is not two holders: the old holder's last claim followed by the new holder's
        first, however close (a thawed VRRP master resumes within milliseconds), passes. Claims
        around an ownership change of that /32 that involves on-prem are exempt (the lab gives the
        workload the address before BGP moves it). Two holders within THAW_SLACK after an on-prem
        node thaws are VRRP's own behaviour (the thawed node answers with the state it was frozen
        with until its keepalived hears the master): they are reported (`thaw_dual_holders` in
        the report, with the gap), not violations."""
        frames, self.c.pcap_off = parse_pcap(self.c.out / "onprem-arp.pcap", self.c.pcap_off)

        def pool(ip):
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
        windows = self.c.onprem_windows(ONPREM_CLAIM_SLACK[1])

        def exempt(ip, ts):
            return any(w_ip == ip and a <= ts <= b for w_ip, a, b in windows)

        dual = []
        by_ip = {}
        for e in sorted(self.c.pcap_claims):
            by_ip.setdefault(e[1], []).append(e)
        for ip, evs in by_ip.items():
            # 1. One request, two answering MACs.
            req, answered = None, {}
            for ts, _, mac, kind in evs:
                if kind == "request":
                    req, answered = ts, {}
                elif kind == "reply" and req is not None and ts - req <= 0.25 and not exempt(ip, ts):
                    answered.setdefault(mac, ts)
                    if len(answered) == 2:
                        (m1, t1), (m2, t2) = sorted(answered.items(), key=lambda kv: kv[1])
                        dual.append({"ip": ip, "pattern": f"request at {req:.3f} answered by two MACs",
                                     "first": {"t": t1, "mac": m1}, "second": {"t": t2, "mac": m2}})
            # 2. X, Y, X alternation with both gaps <= 300 ms.
            runs = []  # [mac, first ts, last ts] per run of one MAC's claims
            for ts, _, mac, kind in evs:
                if kind == "request":
                    continue
                if runs and runs[-1][0] == mac:
                    runs[-1][2] = ts
                else:
                    runs.append([mac, ts, ts])
            for x1, y, x2 in zip(runs, runs[1:], runs[2:]):
                if x1[0] == x2[0] and y[1] - x1[2] <= 0.3 and x2[1] - y[2] <= 0.3 and not exempt(ip, y[1]):
                    dual.append({"ip": ip, "pattern": "claims alternating X, Y, X within 300 ms",
                                 "first": {"t": x1[2], "mac": x1[0]}, "second": {"t": y[1], "mac": y[0]},
                                 "third": {"t": x2[1], "mac": x2[0]}})
        kept = []
        for d in dual:
            thaw = self.thaw_before(d["second"]["t"])
            if thaw is None:
                kept.append(d)
            elif all((x["ip"], x["second"]["t"]) != (d["ip"], d["second"]["t"]) for x in self.c.thaw_duals):
                self.c.thaw_duals.append({**d, "after_thaw_ms": round((d["second"]["t"] - thaw) * 1000)})
        dual = kept
        if dual:
            macs = self.onprem_macs()
            for d in dual:
                for k in ("first", "second", "third"):
                    if k in d:
                        d[k]["who"] = macs.get(d[k]["mac"], "?")
            raise Violation("proxy_arp_holders", f"two holders of {dual[0]['ip']} on the on-prem segment: {dual[0]['pattern']}",
                            {"claims": dual[:20], "pcap": str(self.c.out / "onprem-arp.pcap")})

    def thaw_before(self, ts):
        """The on-prem thaw that `ts` (unix seconds) falls within THAW_SLACK after, if any."""
        with self.c.mu:
            near = [t for t in self.c.thaws if t - 1 <= ts <= t + THAW_SLACK]
        return max(near) if near else None

    def duplicate_alarms(self):
        """No duplicate-holder alarm on an on-prem CER except where a fault causes one by design:
        around an ownership change of that /32 involving on-prem (the workload and the CER both
        claim it for a moment), and within THAW_SLACK after an on-prem node thaws (it resumes with
        the VRRP state it was frozen with)."""
        windows = self.c.onprem_windows(5)
        for n in self.lab.nodes_of("onprem"):
            if not self.lab.alive(f"{n['tag']}-ctl") or n["tag"] in self.c.frozen:
                continue
            c = self.L.try_admin(self.lab.ctl_sock(n), "capture") or {}
            count = c.get("duplicate_holder_alarms")
            if count is None:
                continue
            base = self.c.alarm_base.get(n["node"], 0)
            if count < base:  # the dataplane restarted
                base = 0
            if count > base:
                new = c.get("duplicate_holders") or []
                unexplained = [d for d in new if self.thaw_before(d.get("last_unix") or 0) is None
                               and not any(w == d.get("ip") and a - 1 <= (d.get("last_unix") or 0) <= b + 1 for w, a, b in windows)]
                if unexplained or not new:
                    raise Violation("duplicate_holder_alarm", f"{n['node']} raised {count - base} duplicate-holder alarm(s) outside an on-prem ownership change",
                                    {"node": n["node"], "count": count, "holders": new, "windows": windows[-10:]})
            self.c.alarm_base[n["node"]] = count

    # -------------------------------------------- fencing: provider journal vs intents

    def intents(self, node):
        out = {}
        path = self.lab.f(f"{node['tag']}-ctl.log")
        rx = re.compile(r"capture: intent (\S+) (Capture|Release) signature ([0-9a-f]+) at unix_ms (\d+)")
        try:
            text = path.read_text(errors="replace")
        except OSError:
            return out, 0
        for m in rx.finditer(text):
            out.setdefault(m.group(1), []).append((int(m.group(4)), m.group(2).lower(), m.group(3)))
        fenced = len(re.findall(r"capture: fenced stale", text))
        return out, fenced

    def fencing(self):
        """No provider mutation executed from a stale path signature: every change the emulator
        accepted from the CER moves its /32 the way the CER's intent pointed when the request
        arrived (or within FENCE_EPS_MS before)."""
        bad = []
        for site in CLOUDS:
            node = self.lab.nodes_of(site)[0]
            st, body = self.c.emu(site, "GET", "/_emulator/journal")
            if st != 200 or not isinstance(body, dict):
                raise Violation("fencing", f"{site}: the emulator journal is not available ({st})", {"answer": body})
            p = self.L.PROVIDER[site]
            cer, wl = p["cer_nic"], p["wl_nic"]
            holder = {self.L.SITE[site]["ip"]: wl}
            sec = {cer: set(), wl: {self.L.SITE[site]["ip"]}}
            intents, fenced = self.intents(node)
            n_cer = 0
            for e in body["entries"]:
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
                        holder[ip] = nic
                    sec[nic] = new
                elif op == "delete":
                    for ip in sec.pop(nic, set()):
                        if holder.get(ip) == nic:
                            del holder[ip]
                client = ((e.get("request") or {}).get("client") or "")
                if not client.startswith("169.254.169.10:"):
                    continue  # the operator (this soak, the lab's move) or the emulator itself
                n_cer += 1
                t = e["request"]["received_unix_ms"]
                for ip in set(before) | set(holder):
                    b, a = before.get(ip), holder.get(ip)
                    if a == b:
                        continue
                    d = "capture" if (a == cer or (b not in (None, cer) and a is None)) else "release"
                    tl = intents.get(ip, [])
                    prior = [x for x in tl if x[0] <= t - FENCE_EPS_MS]
                    recent = [x for x in tl if t - FENCE_EPS_MS < x[0] <= t]
                    ok = (prior and prior[-1][1] == d) or any(x[1] == d for x in recent)
                    if not ok:
                        bad.append({"site": site, "ip": ip, "direction": d, "from": b, "to": a, "entry": e,
                                    "intent_before": prior[-3:], "intent_recent": recent})
            self.c.fence_stats[site] = {"cer_mutations": n_cer, "fenced": fenced, "journal_dropped": body.get("dropped", 0)}
        if bad:
            raise Violation("fencing", f"{len(bad)} provider mutations executed against the CER's current intent (stale path signature)", {"mutations": bad[:20]})

    # -------------------------------------------- processes

    def processes(self):
        """Every lab process runs unless an operation took it down on purpose; no panic in any log."""
        dead = []
        with self.c.mu:
            expected = dict(self.c.expected_down)
        for key in self.L.process_keys(self.lab):
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

    def leaks(self):
        """No process in the lab's namespaces but the lab's and this soak's; no namespace
        with the lab's prefix that the lab does not own."""
        known = set()
        for key in self.L.process_keys(self.lab):
            p = self.lab.pid_of(key)
            if p:
                known.add(p)
        for n in self.L.NODES:
            try:
                known.add(int(self.lab.f(f"{n['tag']}-ka-vrrp.pid").read_text().split()[0]))
            except (OSError, ValueError, IndexError):
                pass
        known |= {p.pid for p in self.c.helpers}

        def unknown():
            u = set()
            for ns in self.lab.all_namespaces():
                out = self.L.run(["ip", "netns", "pids", ns], check=False).stdout.split()
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
        extra = [ns for ns in self.L.netns_list() if ns.startswith(self.lab.name + "-") and ns not in self.lab.all_namespaces()]
        if extra:
            raise Violation("leak", f"namespaces with the lab's prefix that the lab does not own: {extra}", {"namespaces": extra})

    # -------------------------------------------- operator's view

    def explain_all(self):
        out = {}
        with self.c.mu:
            ips = sorted(set(self.c.endpoints) | set(self.c.life))
        for n in self.L.alive_nodes(self.lab):
            if n["tag"] in self.c.frozen:
                continue
            for ip in ips:
                p = self.L.run([self.lab.bin("cerctl"), "explain", ip, "--socket", str(self.lab.ctl_sock(n))], check=False, timeout=10)
                out[f"{n['node']} {ip}"] = (p.stdout + p.stderr)[-3000:]
        return out

    def stuck_captures(self):
        """When the operations of a round end, every cloud capture not yet confirmed (stuck
        behind a provider fault, in backoff, in flight) and every fenced action must be readable
        by an operator: `cerctl explain IP` names the phase, the provider error of a capture in
        backoff, and the number of fenced actions. Returns the stuck ones."""
        words = {"backoff": "retrying", "in_flight": "in flight", "pending": "queued", "settling": "re-observing", "waiting": "waiting"}
        stuck = []
        for site in CLOUDS:
            n = self.lab.nodes_of(site)[0]
            view = self.L.capture_view(self.lab, n)
            for ip, c in view.items():
                phase, err, fenced = c.get("phase"), c.get("last_error"), c.get("fenced") or 0
                if phase == "confirmed" and not fenced:
                    continue
                if phase != "confirmed":
                    stuck.append((n["node"], ip, phase))
                text = self.L.run([self.lab.bin("cerctl"), "explain", ip, "--socket", str(self.lab.ctl_sock(n))], check=False, timeout=10).stdout
                need = words.get(phase)
                m = re.search(r"6\. Fencing: (\d+) stale actions fenced", text)
                ok = "5. Capture" in text and (need is None or need in text) \
                    and (phase != "backoff" or not err or err.split(":")[0] in text) \
                    and (m is not None and int(m.group(1)) >= fenced)
                rec = {"node": n["node"], "ip": ip, "phase": phase, "last_error": err, "fenced": fenced, "explained": ok,
                       "capture_line": next((l.strip() for l in text.splitlines() if l.strip().startswith("here:")), "")}
                if not ok:
                    # The state may have moved on between the two questions: ask again.
                    again = self.L.capture_view(self.lab, n).get(ip, {})
                    if (again.get("phase"), again.get("last_error")) != (phase, err):
                        continue
                    raise Violation("operator_view", f"cerctl explain {ip} on {n['node']} does not name its capture state ({phase}, {err}, {fenced} fenced)",
                                    {"explain": text, "capture": c})
                if len(self.c.explains) < 200:
                    self.c.explains.append(rec)
        return stuck

    # -------------------------------------------- schedules

    def baseline(self):
        for n in self.lab.nodes_of("onprem"):
            c = self.L.try_admin(self.lab.ctl_sock(n), "capture") or {}
            self.c.alarm_base[n["node"]] = c.get("duplicate_holder_alarms") or 0
        for f in self.lab.run_dir.glob("*.log"):
            self.c.log_offsets[f.name] = f.stat().st_size
        self.processes()

    def continuous(self, i):
        self.processes()
        self.source_preserved()
        with self.c.mu:
            since = now_ms() - int(DARK_BOUND * 1000)
        dark = [p for p in self.dark_pairs(since) if self.pair_old_enough(p, since)]
        if dark:
            raise Violation("reachability", f"{len(dark)} pairs dark for more than {DARK_BOUND:.0f} s during the operations", {"dark_pairs": dark})
        if i % 2 == 0:
            self.provider_holders(strict=False)
            self.duplicate_alarms()
        if i % 5 == 0:
            self.proxy_arp_pcap()

    def pair_old_enough(self, pair, since):
        s, d = pair.split(">")
        with self.c.mu:
            return self.c.life[s][-1][0] < since and self.c.life[d][-1][0] < since

    def strict(self):
        self.processes()
        self.source_preserved()
        self.owners_agree()
        self.provider_holders(strict=True)
        self.proxy_arp_pcap()
        self.duplicate_alarms()
        self.fencing()
        self.leaks()

    def final(self):
        self.strict()


# ---------------------------------------------------------------- helpers inside namespaces


def local_pool_addrs(iface="eth0"):
    out = subprocess.run(["ip", "-j", "-4", "addr", "show", "dev", iface], stdout=subprocess.PIPE, text=True).stdout
    try:
        v = json.loads(out)
    except ValueError:
        return set()
    return {a["local"] for i in v for a in i.get("addr_info", []) if a.get("local", "").startswith("10.77.60.")}


def helper_probe(argv):
    """UDP prober of one workload namespace: sends from every pool /32 it holds to every peer
    every interval; receives on every /32 it holds, checks the source against the /32 the sender
    wrote, and records runs of consecutive received probes per (src, dst)."""
    ap = argparse.ArgumentParser(prog="lab_chaos _probe")
    ap.add_argument("--site", required=True)
    ap.add_argument("--peers", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--interval-ms", type=int, default=PROBE_MS)
    ap.add_argument("--port", type=int, default=PROBE_PORT)
    a = ap.parse_args(argv)
    out = Path(a.out)
    events = open(out / f"probe-{a.site}.events.jsonl", "a")
    state_path = out / f"probe-{a.site}.state.json"
    socks = {}  # ip -> socket
    runs = {}  # (src, dst) -> [start, end]
    peers, peers_mtime = [], 0
    counters = {"sent": 0, "send_errors": 0, "received": 0, "bad_source": 0}
    stop = [False]
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
    last_cfg = last_state = 0.0
    next_send = time.time()

    def end_run(k):
        s, d = k
        a0, b0 = runs.pop(k)
        events.write(json.dumps({"run": [s, d, a0, b0]}) + "\n")

    while not stop[0]:
        now = time.time()
        if now - last_cfg > 0.5:
            last_cfg = now
            try:
                m = os.stat(a.peers).st_mtime
                if m != peers_mtime:
                    peers = json.loads(Path(a.peers).read_text())["peers"]
                    peers_mtime = m
            except (OSError, ValueError):
                pass
            have = local_pool_addrs()
            for ip in list(socks):
                if ip not in have:
                    socks.pop(ip).close()
            for ip in have - set(socks):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.setsockopt(socket.SOL_IP, 15, 1)  # IP_FREEBIND
                try:
                    s.bind((ip, a.port))
                except OSError:
                    s.close()
                    continue
                s.setblocking(False)
                socks[ip] = s
        if now >= next_send:
            slot = int(now * 1000) // a.interval_ms
            for src, s in socks.items():
                for dst in peers:
                    if dst == src:
                        continue
                    try:
                        s.sendto(f"C1 {src} {dst} {slot}".encode(), (dst, a.port))
                        counters["sent"] += 1
                    except OSError:
                        counters["send_errors"] += 1
            next_send = (slot + 1) * a.interval_ms / 1000.0
        timeout = max(0.0, min(next_send - time.time(), 0.05))
        r, _, _ = select.select(list(socks.values()), [], [], timeout) if socks else ([], [], time.sleep(timeout))
        for s in r:
            while True:
                try:
                    data, addr = s.recvfrom(256)
                except (BlockingIOError, OSError):
                    break
                try:
                    tag, src, dst, slot = data.decode().split()
                    slot = int(slot)
                except ValueError:
                    continue
                if tag != "C1":
                    continue
                counters["received"] += 1
                if addr[0] != src:
                    counters["bad_source"] += 1
                    events.write(json.dumps({"bad_source": {"claimed": src, "seen": addr[0], "dst": dst, "slot": slot, "t": time.time()}}) + "\n")
                    events.flush()
                    continue
                k = (src, dst)
                cur = runs.get(k)
                if cur is None:
                    runs[k] = [slot, slot]
                elif cur[0] <= slot <= cur[1] + 1:
                    cur[1] = max(cur[1], slot)
                elif slot > cur[1] + 1:
                    end_run(k)
                    runs[k] = [slot, slot]
                else:
                    events.write(json.dumps({"run": [src, dst, slot, slot]}) + "\n")
        if time.time() - last_state > 0.25:
            last_state = time.time()
            events.flush()
            tmp = state_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"t": int(time.time() * 1000), "open": {f"{s}>{d}": v for (s, d), v in runs.items()}, **counters}))
            tmp.replace(state_path)
    for k in list(runs):
        end_run(k)
    events.close()
    return 0


def helper_arp(argv):
    """Asks the on-prem segment who has every remote /32, every interval (broadcast ARP requests
    from the workload's pool address), so that every holder shows itself in the capture."""
    ap = argparse.ArgumentParser(prog="lab_chaos _arp")
    ap.add_argument("--peers", required=True)
    ap.add_argument("--iface", default="eth0")
    ap.add_argument("--interval-ms", type=int, default=ARP_MS)
    a = ap.parse_args(argv)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
    s.bind((a.iface, 0))
    mac = bytes.fromhex(Path(f"/sys/class/net/{a.iface}/address").read_text().strip().replace(":", ""))
    stop = [False]
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
    have, last = set(), 0.0
    while not stop[0]:
        if time.time() - last > 1.0:
            last = time.time()
            have = local_pool_addrs(a.iface)
            try:
                peers = json.loads(Path(a.peers).read_text())["peers"]
            except (OSError, ValueError):
                peers = []
        if have:
            spa = socket.inet_aton(sorted(have)[0])
            for ip in peers:
                if ip in have:
                    continue
                frame = b"\xff" * 6 + mac + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + spa + b"\x00" * 6 + socket.inet_aton(ip)
                try:
                    s.send(frame)
                except OSError:
                    pass
        time.sleep(a.interval_ms / 1000.0)
    return 0


def helper_relay(argv):
    """Serves JSON-line HTTP requests to the emulator from inside its fabric namespace."""
    import urllib.error
    import urllib.request

    while True:
        line = sys.stdin.readline()
        if not line:
            break
        try:
            r = json.loads(line)
            body = r.get("body")
            req = urllib.request.Request("http://169.254.169.254" + r["path"], method=r["method"],
                                         data=body.encode() if body is not None else None,
                                         headers={"content-type": "application/json"} if body is not None else {})
            try:
                with urllib.request.urlopen(req, timeout=15) as resp:
                    out = {"status": resp.status, "body": resp.read().decode(errors="replace")}
            except urllib.error.HTTPError as e:
                out = {"status": e.code, "body": e.read().decode(errors="replace")}
        except Exception as e:  # noqa: BLE001 - reported to the caller
            out = {"error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()
    return 0


# ---------------------------------------------------------------- self-test of the checks


def selftest():
    """Each invariant check fed fabricated evidence of a violation must raise, and fed the
    same evidence without the fault must not: a check that cannot fail proves nothing."""
    import tempfile
    import types

    tmp = Path(tempfile.mkdtemp(prefix="chaos-selftest-"))
    L = types.SimpleNamespace(SITES=["onprem", "aws", "azure", "oci"], LabError=RuntimeError,
                              PROVIDER={"aws": {"cer_nic": "eni-cer", "wl_nic": "eni-wl"}},
                              SITE={"aws": {"ip": "10.77.60.11"}}, alive_nodes=lambda lab: [])
    lab = types.SimpleNamespace(nodes_of=lambda site: [{"node": site, "tag": site}])
    c = types.SimpleNamespace(out=tmp, mu=threading.RLock(), endpoints={"10.77.60.11": "aws", "10.77.60.12": "azure"},
                              life={"10.77.60.11": [[0, None]], "10.77.60.12": [[0, None]]}, ip_windows=[], pcap_off=0,
                              pcap_claims=[], fence_stats={}, nobody_since={}, thaws=[], thaw_duals=[])
    c.onprem_windows = lambda after_s: Chaos.onprem_windows(c, after_s)
    ch = Checks.__new__(Checks)
    ch.c, ch.L, ch.lab = c, L, lab
    failures = []

    def expect(name, f, violates):
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
    def pcap(claims):
        """claims: (ts, mac, ip) replies, (ts, mac, ip, "req") requests for ip, (ts, mac, ip, "garp")."""
        with open(tmp / "onprem-arp.pcap", "wb") as fh:
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
        c.pcap_off, c.pcap_claims = 0, []

    t = time.time()
    ch.onprem_macs = lambda: {}
    a, b, host = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:10"
    pcap([(t, host, "10.77.60.11", "req"), (t + 0.001, a, "10.77.60.11"), (t + 0.002, b, "10.77.60.11")])
    expect("proxy_arp_holders, one request answered by two MACs", ch.proxy_arp_pcap, True)
    pcap([(t, host, "10.77.60.11", "req"), (t + 0.001, a, "10.77.60.11"), (t + 0.002, b, "10.77.60.11")])
    c.thaws = [t - 0.05]
    expect("proxy_arp_holders, two MACs 50 ms after a thaw (reported)", ch.proxy_arp_pcap, False)
    if len(c.thaw_duals) != 1 or c.thaw_duals[0]["after_thaw_ms"] != 52:
        failures.append(f"a dual holder after a thaw is not reported: {c.thaw_duals}")
    pcap([(t, host, "10.77.60.11", "req"), (t + 0.001, a, "10.77.60.11"), (t + 0.002, b, "10.77.60.11")])
    c.thaws, c.thaw_duals = [t - 30], []
    expect("proxy_arp_holders, two MACs 30 s after a thaw", ch.proxy_arp_pcap, True)
    c.thaws = []
    pcap([(t, a, "10.77.60.11"), (t + 0.1, b, "10.77.60.11"), (t + 0.2, a, "10.77.60.11")])
    expect("proxy_arp_holders, two MACs alternating", ch.proxy_arp_pcap, True)
    pcap([(t + i * 0.2, host, "10.77.60.11", "req") for i in range(4)]
         + [(t + 0.001, a, "10.77.60.11"), (t + 0.201, a, "10.77.60.11"), (t + 0.3, b, "10.77.60.11", "garp"), (t + 0.401, b, "10.77.60.11"), (t + 0.601, b, "10.77.60.11")])
    expect("proxy_arp_holders, a handover 100 ms apart", ch.proxy_arp_pcap, False)
    pcap([(t, a, "10.77.60.11"), (t + 3.5, b, "10.77.60.11")])
    expect("proxy_arp_holders, a failover 3.5 s apart", ch.proxy_arp_pcap, False)
    pcap([(t, a, "10.77.60.11"), (t + 0.1, b, "10.77.60.11"), (t + 0.2, a, "10.77.60.11")])
    c.ip_windows = [("10.77.60.11", int(t * 1000), int(t * 1000) + 50, {"onprem", "aws"})]
    expect("proxy_arp_holders, inside a move to on-prem", ch.proxy_arp_pcap, False)
    c.ip_windows = []

    # 1b. Duplicate-holder alarms of the on-prem CERs.
    lab.alive = lambda key: True
    lab.ctl_sock = lambda n: "ctl.sock"
    c.frozen, c.thaws = {}, []
    L.try_admin = lambda sock, cmd: {"duplicate_holder_alarms": 1, "duplicate_holders": [
        {"ip": "10.77.60.23", "last_unix": int(t), "mac": a, "port": "lan", "seen": 1}]}
    c.alarm_base = {}
    expect("duplicate_holder_alarm, out of the blue", ch.duplicate_alarms, True)
    c.alarm_base, c.thaws = {}, [t - 2]
    expect("duplicate_holder_alarm, 2 s after an on-prem node thawed", ch.duplicate_alarms, False)
    c.alarm_base, c.thaws = {}, [t - 30]
    expect("duplicate_holder_alarm, 30 s after a thaw", ch.duplicate_alarms, True)
    c.alarm_base, c.thaws = {}, []
    c.ip_windows = [("10.77.60.23", int(t * 1000) - 500, int(t * 1000), {"onprem", "aws"})]
    expect("duplicate_holder_alarm, inside a move to on-prem", ch.duplicate_alarms, False)
    c.alarm_base, c.ip_windows = {}, [("10.77.60.23", int(t * 1000) - 500, None, {"onprem", "azure"})]
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
    holes = []
    Checks.pair_holes(holes, [[0, 9], [30, 100]], [[0, None]], [[0, None]], 100 * PROBE_MS)
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
    c.life = {ip: [[0, None]] for ip in c.endpoints}
    global CLOUDS
    saved = CLOUDS
    CLOUDS = ["aws"]
    try:
        ch.holders = lambda site: {"10.77.60.11": "eni-wl", "10.77.60.12": "eni-cer"}
        expect("provider_holder, as the owners imply", lambda: ch.provider_holders(True), False)
        ch.holders = lambda site: {"10.77.60.11": "eni-cer", "10.77.60.12": "eni-cer"}
        expect("provider_holder, the CER holds a /32 owned at its own site", lambda: ch.provider_holders(True), True)
        ch.holders = lambda site: {"10.77.60.11": "eni-wl"}
        expect("provider_holder, an owned /32 held by nobody", lambda: ch.provider_holders(True), True)

        # 5. Fencing: a capture executed while the intent had been Release for 2 s.
        def journal(entries):
            c.emu = lambda site, m, path, body=None: (200, {"entries": entries, "dropped": 0})

        req = lambda t: {"client": "169.254.169.10:4000", "method": "POST", "path": "/", "received_unix_ms": t}
        journal([{"seq": 1, "op": "assign", "nic": "eni-cer", "ips": ["10.77.60.12"], "request": req(10_000)}])
        ch.intents = lambda node: ({"10.77.60.12": [(5_000, "capture", "a"), (8_000, "release", "0")]}, 0)
        expect("fencing, a stale capture executed 2 s after the release intent", ch.fencing, True)
        ch.intents = lambda node: ({"10.77.60.12": [(5_000, "release", "0"), (9_900, "capture", "b")]}, 0)
        expect("fencing, a capture 100 ms after its intent", ch.fencing, False)
        journal([{"seq": 1, "op": "assign", "nic": "eni-wl", "ips": ["10.77.60.12"], "request": req(10_000)}])
        ch.intents = lambda node: ({"10.77.60.12": [(5_000, "capture", "a")]}, 0)
        expect("fencing, a hand-back while the intent is Capture", ch.fencing, True)
        journal([{"seq": 1, "op": "assign", "nic": "eni-wl", "ips": ["10.77.60.12"],
                  "request": {"client": "127.0.0.1:5000", "method": "POST", "path": "/", "received_unix_ms": 10_000}}])
        expect("fencing, the operator's own assignment", ch.fencing, False)
    finally:
        CLOUDS = saved
    if failures:
        print("selftest FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("selftest: every check raised on its fabricated violation and stayed quiet otherwise")
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    return 0


def summarize(dirs):
    """Markdown over several runs' report.json (for perf/reports/DATE-chaos.md): per run, then
    outage per kind over all runs."""
    reps = [json.loads((Path(d) / "report.json").read_text()) for d in dirs]
    md = ["| seed | minutes | operations (planned) | quiescent points | convergence s | violations |", "|---|---|---|---|---|---|"]
    allk = {}
    for r in reps:
        conv = [q["converge_s"] for q in r["quiescent_points"]]
        md.append(f"| {r['seed']} | {r['minutes']} | {r['operations']} ({r.get('planned')}) | {len(conv)} | "
                  f"{min(conv, default='-')}-{max(conv, default='-')} | {len(r['violations'])} |")
        for k, e in r["by_kind"].items():
            a = allk.setdefault(k, {"count": 0, "outages_ms": []})
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


# ---------------------------------------------------------------- entry points


def cmd_chaos(L, lab, argv_ns):
    """`scripts/lab chaos`: called by scripts/lab with its own module as L."""
    if os.geteuid() != 0:
        L.die("needs root")
    st = lab.load_state()
    if not st:
        L.die(f"lab {lab.name} is not up: scripts/lab{L.name_opt(lab)} up")
    out = argv_ns.out or f"/var/tmp/cer-chaos/{lab.name}-seed{argv_ns.seed}-{time.strftime('%Y%m%dT%H%M%S')}"
    kinds = [k.strip() for k in argv_ns.kinds.split(",")] if argv_ns.kinds else None
    if kinds:
        unknown = [k for k in kinds if k not in KINDS]
        if unknown:
            L.die(f"unknown kinds {unknown}: {', '.join(KINDS)}")
    return Chaos(L, lab, argv_ns.seed, argv_ns.minutes, out, kinds).run()


def main(argv):
    helpers = {"_probe": helper_probe, "_arp": helper_arp, "_relay": helper_relay}
    if argv and argv[0] in helpers:
        return helpers[argv[0]](argv[1:])
    if argv and argv[0] == "summarize":
        return summarize(argv[1:])
    if argv and argv[0] == "selftest":
        return selftest()
    if argv and argv[0] == "plan":
        ap = argparse.ArgumentParser(prog="lab_chaos plan")
        ap.add_argument("--seed", type=int, required=True)
        ap.add_argument("--minutes", type=float, required=True)
        a = ap.parse_args(argv[1:])
        nodes = {"onprem": ["onprem-a", "onprem-b"], "aws": ["aws"], "azure": ["azure"], "oci": ["oci"]}
        print(json.dumps(plan(a.seed, a.minutes, nodes), indent=1))
        return 0
    print("usage: scripts/lab chaos --seed S --minutes M (this module's helpers: _probe, _arp, _relay, plan)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
