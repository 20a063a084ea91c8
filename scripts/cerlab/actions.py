"""What a user does to a running lab: `exec` a command in a site's workload, `move` a /32 to
another site (workload address, BGP endpoint, provider NIC), `fail` a site's CER (SIGKILL) and
`heal` what is dead, frozen or cut (`hardfail` has `freeze`, `thaw` and `cut`).
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import time

from . import hardfail
from .daemons import ctl, start_emulator, start_fabric_agent, start_node
from .messages import die, log
from .processes import ns_run, wait_until
from .provider import provider_assign_to_workload
from .state import LabState, write_state
from .topology import CLOUDS, POOL, SITE, SITES, Lab, name_opt
from .views import active_capturer, capture_view, converge, vrrp_master


def need_state(lab: Lab) -> LabState:
    if os.geteuid() != 0:
        die("needs root (ip netns exec)")
    st = lab.load_state()
    if not st:
        die(f"lab {lab.name} is not up: scripts/lab{name_opt(lab)} up")
    return st


def site_arg(lab: Lab, s: str, allow_nodes: bool = False) -> str:
    aliases = {"on-prem": "onprem", "az": "azure", "op": "onprem"}
    s = aliases.get(s, s)
    nodes = [n["node"] for n in lab.nodes() if n["node"] not in SITES]
    if s in SITES or (allow_nodes and s in nodes):
        return s
    die(f"unknown site {s!r}: one of {', '.join(SITES)}" + (f" (or a node: {', '.join(nodes)})" if allow_nodes else ""))


def cmd_exec(lab: Lab, site: str, cmd: list[str]) -> int:
    need_state(lab)
    site = site_arg(lab, site)
    if not cmd:
        die("exec SITE -- CMD...: no command")
    os.execvp("ip", ["ip", "netns", "exec", lab.wl_ns(site), *cmd])


def cmd_fail(lab: Lab, what: str) -> int:
    state = need_state(lab)
    what = site_arg(lab, what, allow_nodes=True)
    if what == "onprem":
        node = vrrp_master(lab)
        if not node:
            die("no on-prem CER is VRRP master right now; name one: fail onprem-a|onprem-b")
        nodes = [node]
    elif lab.paired(what):
        nodes = [active_capturer(lab, what)]
    else:
        nodes = [n for n in lab.nodes() if n["node"] == what or n["site"] == what]
    for n in nodes:
        t = n["tag"]
        # A crash: SIGKILL. cer-control first (its BGP session ends with the kernel's FIN through
        # the still-running dataplane), then keepalived (on-prem), then the dataplane.
        for key in (f"{t}-ctl", f"{t}-ka", f"{t}-dp"):
            if key.endswith("-ka") and n["site"] != "onprem":
                continue
            lab.stop(key, sig=signal.SIGKILL)
        log(f"failed {n['node']} at {time.time():.3f} (cer-control, {'keepalived, ' if n['site'] == 'onprem' else ''}cer-dataplane killed)")
    failed = sorted(set(state.get("failed", [])) | {n["node"] for n in nodes})
    write_state(lab, state["endpoints"], failed=failed)
    return 0


def cmd_heal(lab: Lab, what: str) -> int:
    state = need_state(lab)
    what = site_arg(lab, what, allow_nodes=True)
    nodes = [n for n in lab.nodes() if n["site"] == what or n["node"] == what]
    t0 = time.time()
    hardfail.restore(lab, state, nodes)
    site = nodes[0]["site"]
    if site in CLOUDS:
        # The provider (emulator + fabric) normally survives a CER failure; restart it if not.
        t = SITE[site]["tag"]
        if not lab.alive(f"{t}-emu"):
            lab.stop(f"{t}-emu")
            start_emulator(lab, site)
            lab.wait_log(f"{t}-emu", "listening on", 15)
        if not lab.alive(f"{t}-fabric"):
            lab.stop(f"{t}-fabric")
            start_fabric_agent(lab, site)
    for n in nodes:
        start_node(lab, n, state["endpoints"])
    failed = [f for f in state.get("failed", []) if f not in {n["node"] for n in nodes}]
    write_state(lab, state["endpoints"], failed=failed)
    log(f"healed {', '.join(n['node'] for n in nodes)} in {time.time() - t0:.1f}s; waiting for convergence")
    converge(lab, state["endpoints"], timeout=90)
    return 0


def workload_set_default_src(lab: Lab, site: str) -> None:
    """Points the workload's default route's source at a pool /32 it holds.

    Moves may run at once (the chaos soak overlaps them): another move can
    take the chosen address away between reading the addresses and
    replacing the route ("Invalid prefsrc address"). Then the addresses are
    read again; with none left the route has no source address."""
    if site == "onprem":
        return
    ns = lab.wl_ns(site)
    pool = ipaddress.ip_network(POOL)
    base = ["ip", "route", "replace", "default", "via", lab.vpc(site)["gw"], "dev", "eth0"]
    for _ in range(5):
        addrs = ns_run(ns, "ip", "-j", "addr", "show", "dev", "eth0").stdout
        held = [
            a["local"]
            for i in json.loads(addrs)
            for a in i.get("addr_info", [])
            if a.get("family") == "inet" and ipaddress.ip_address(a["local"]) in pool
        ]
        if not held:
            break
        if ns_run(ns, *base, "src", held[0], check=False).returncode == 0:
            return
    ns_run(ns, *base)


def cmd_move(lab: Lab, ip: str, to: str) -> int:
    state = need_state(lab)
    to = site_arg(lab, to)
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        die(f"{ip!r} is not an IPv4 address")
    if addr not in ipaddress.ip_network(POOL) or int(str(addr).split(".")[-1]) < 10:
        die(f"{ip} is not a lab endpoint address: use {POOL} from .10 up (.1-.9 are router addresses)")
    endpoints = dict(state["endpoints"])
    old = endpoints.get(ip)
    if old == to:
        log(f"{ip} already lives at {to}")
        return 0
    if not any(lab.alive(f"{n['tag']}-ctl") for n in lab.nodes_of(to)):
        die(f"{to} has no running CER to take {ip} (heal it first: scripts/lab{name_opt(lab)} heal {to})")
    if old and not any(lab.alive(f"{n['tag']}-ctl") for n in lab.nodes_of(old)):
        log(f"{old} is down: its CER stops advertising {ip} when healed")
    t0 = time.time()
    # 1. The workload at the new site gets the address (the host moved there).
    if to == "onprem":
        ns_run(lab.wl_ns(to), "ip", "addr", "replace", f"{ip}/24", "dev", "eth0")
    else:
        ns_run(lab.wl_ns(to), "ip", "addr", "replace", f"{ip}/32", "dev", "eth0")
        workload_set_default_src(lab, to)
    # 2. BGP: the new site's CERs take ownership, the old site's stop advertising.
    for n in lab.nodes_of(to):
        if lab.alive(f"{n['tag']}-ctl"):
            ctl(lab, n, "endpoint", "move" if old else "add", ip)
    if old:
        for n in lab.nodes_of(old):
            if lab.alive(f"{n['tag']}-ctl"):
                ctl(lab, n, "endpoint", "remove", ip)
        # 3. The old workload no longer holds it (its CER now captures it).
        ns_run(lab.wl_ns(old), "ip", "addr", "del", f"{ip}/{24 if old == 'onprem' else 32}", "dev", "eth0", check=False)
        workload_set_default_src(lab, old)
    endpoints[ip] = to
    write_state(lab, endpoints, failed=state.get("failed"))
    log(f"{ip}: ownership moved {old or '(new)'} -> {to} in BGP ({time.time() - t0:.1f}s)")
    # 4. In a cloud the workload's NIC must hold the secondary IP once our CER(s) released it.
    if to != "onprem":
        nodes = [n for n in lab.nodes_of(to) if lab.alive(f"{n['tag']}-ctl")]

        def released() -> bool:
            cs = [capture_view(lab, n).get(ip, {}) for n in nodes]
            return all(c.get("desired") == "release" and c.get("phase") == "confirmed" for c in cs)

        wait_until(f"{to} CER releasing {ip}", 45, released)
        provider_assign_to_workload(lab, to, ip)
        log(f"{ip}: {to} provider assigned it to the workload NIC ({time.time() - t0:.1f}s)")
    converge(lab, endpoints, timeout=60)
    log(f"{ip} lives at {to}: converged in {time.time() - t0:.1f}s")
    return 0
