"""The lab's life: `up` (preflight, build, network, configs, daemons, convergence; idempotent, a
broken lab repaired), `down` (every recorded PID, the namespaces, run dir and DPDK runtime dirs),
`status`, and the report of where each /32 lives.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time

from .config import control_config, dataplane_config, keepalived_config, make_keys
from .daemons import (
    after_dataplane,
    build,
    endpoint_op,
    preflight,
    process_keys,
    rr_keys,
    start_control,
    start_dataplane,
    start_emulator,
    start_fabric_agent,
    start_keepalived,
    start_node,
    start_rr,
    vtysh_rr,
)
from .messages import LabError, die, log
from .network import build_topology
from .processes import netns_list, ns_run, run, wait_until
from .state import LabState, write_state
from .topology import CLOUDS, PAIR_NODES, POOL, REFLECTORS, SITE, SITES, Lab, name_opt
from .views import converge, convergence_problems, pair_roles, try_admin, vrrp_master, where_table


def written_state(lab: Lab) -> LabState:
    """lab.json of a lab this command has just written it for."""
    st = lab.load_state()
    if st is None:
        die(f"{lab.state_path} is missing or unreadable")
    return st


def start_vrrp_pair(lab: Lab) -> None:
    """keepalived on the on-prem nodes, the first (priority 150) becoming the initial VRRP master.

    With `nopreempt`, whichever keepalived's master-down timer runs out first stays master, and the
    39 ms the higher priority shortens it by are less than a keepalived's start-up on a loaded
    machine: the second one starts once the first holds the proxy-ARP gate.
    """
    nodes = lab.nodes_of("onprem")
    for i, n in enumerate(nodes):
        start_keepalived(lab, n)
        if i == 0 and len(nodes) > 1:
            first = n["node"]

            def first_is_master(first: str = first) -> bool:
                m = vrrp_master(lab)
                return m is not None and m["node"] == first

            wait_until(f"{first} to become the VRRP master", 20, first_is_master)


def cmd_up(lab: Lab) -> int:
    preflight(lab)
    state = lab.load_state()
    present = [ns for ns in lab.all_namespaces() if ns in netns_list()]
    if state:
        if (
            (lab.transport_opt and state.get("transport_mode") != lab.transport_opt)
            or (lab.rr_opt and state["rr"]["kind"] != lab.rr_opt)
            or (lab.rrs_opt and state.get("rr_count", 1) != lab.rrs_opt)
            or (lab.cloud_pairs_opt is not None and bool(state.get("cloud_pairs", False)) != lab.cloud_pairs_opt)
            or (lab.extra_opt is not None and int(state.get("extra_endpoints", 0)) != lab.extra_opt)
        ):
            die(
                f"lab {lab.name} is up with transport {state.get('transport_mode')}, rr {state['rr']['kind']}, "
                f"{state.get('rr_count', 1)} reflector(s), {'two CERs' if state.get('cloud_pairs') else 'one CER'} per cloud site "
                f"and {state.get('extra_endpoints', 0)} extra /32s per site; "
                f"run `scripts/lab --name {lab.name} down` first to change them"
            )
        dead = [k for k in process_keys(lab) if not lab.alive(k)]
        missing = [ns for ns in lab.all_namespaces() if ns not in present]
        if not dead and not missing:
            log(f"lab {lab.name} is already up; nothing changed")
            converge(lab, state["endpoints"], timeout=30)
            report(lab, state)
            return 0
        if missing:
            log(f"lab {lab.name} lost namespaces {', '.join(missing)}: rebuilding it")
            cmd_down(lab, quiet=True)
        else:
            log(f"lab {lab.name}: repairing {', '.join(dead)}")
            repair(lab, dead)
            converge(lab, state["endpoints"], timeout=90)
            report(lab, written_state(lab))
            return 0
    elif present or lab.run_dir.exists():
        log(f"leftovers of an unfinished lab {lab.name}: removing them first")
        cmd_down(lab, quiet=True)

    build(lab)
    t0 = time.time()
    lab.run_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(lab.run_dir, 0o700)
    try:
        keys = make_keys(lab)
        endpoints = lab.initial_endpoints()
        log(f"namespaces and links ({len(lab.all_namespaces())} namespaces)")
        build_topology(lab)
        nodes = lab.nodes()
        for n in nodes:
            lab.f(f"{n['tag']}-dataplane.toml").write_text(dataplane_config(lab, n, keys))
            lab.f(f"{n['tag']}-control.toml").write_text(control_config(lab, n))
            if n["site"] == "onprem":
                lab.f(f"{n['tag']}-keepalived.conf").write_text(keepalived_config(lab, n))
                fifo = lab.f(f"{n['tag']}-notify.fifo")
                if not fifo.exists():
                    os.mkfifo(fifo, 0o600)
        # Check every config before starting anything.
        for n in nodes:
            run([lab.bin("cer-dataplane"), "--config", str(lab.f(f"{n['tag']}-dataplane.toml")), "--check"])
            run([lab.bin("cer-control"), "--config", str(lab.f(f"{n['tag']}-control.toml")), "--check"])
        write_state(lab, endpoints)
        log("provider emulators and fabric agents (aws, azure, oci)")
        for site in CLOUDS:
            start_emulator(lab, site)
        for site in CLOUDS:
            lab.wait_log(f"{SITE[site]['tag']}-emu", "listening on", 15)
            start_fabric_agent(lab, site)
        for role in lab.reflectors():
            log(f"route reflector {role} ({lab.rr}) at {REFLECTORS[role]}")
            start_rr(lab, role)
        log(f"dataplanes ({len(nodes)} x cer-dataplane on af_packet)")
        for n in nodes:
            start_dataplane(lab, n)
        for n in nodes:
            lab.wait_log(f"{n['tag']}-dp", "cer-dataplane: ready", 40)
            after_dataplane(lab, n)
        log("cer-control on every CER, keepalived on-prem")
        for n in nodes:
            start_control(lab, n)
        for n in nodes:
            lab.wait_log(f"{n['tag']}-ctl", "cer-control: ready", 20)
        start_vrrp_pair(lab)
        for ip, site in endpoints.items():
            for n in lab.nodes_of(site):
                endpoint_op(lab, n, "add", ip)
        log("waiting for BGP, ownership, capture and the fabrics to converge")
        converge(lab, endpoints, timeout=90)
    except BaseException as e:
        msg = str(e) if isinstance(e, LabError) else repr(e)
        print(f"lab: up failed: {msg}", file=sys.stderr)
        if os.environ.get("CER_LAB_KEEP_FAILED"):
            print(
                f"lab: CER_LAB_KEEP_FAILED set: leaving {lab.run_dir} and the namespaces for inspection; "
                f"`scripts/lab --name {lab.name} down` removes them",
                file=sys.stderr,
            )
        else:
            print(
                f"lab: removing what was built (set CER_LAB_KEEP_FAILED=1 to keep it for inspection); logs were in {lab.run_dir}",
                file=sys.stderr,
            )
            dump_logs(lab)
            cmd_down(lab, quiet=True)
        return 1
    state = written_state(lab)
    warm_paths(lab, state)
    log(f"up in {time.time() - t0:.0f}s")
    report(lab, state)
    return 0


def warm_paths(lab: Lab, state: LabState) -> None:
    """Two pings from every workload to every other site's /32, all at once, results ignored:
    the first packet on a path resolves neighbors (cer-dataplane drops the packet that triggers an
    ARP/ND resolution, as Linux does with a full queue) and starts WireGuard handshakes, so the
    try-it line then shows the steady state."""
    procs = []
    for ip, owner in sorted((state.get("endpoints") or {}).items()):
        for site in SITES:
            if site == owner or lab.wl_ns(site) not in netns_list():
                continue
            procs.append(
                subprocess.Popen(
                    ["ip", "netns", "exec", lab.wl_ns(site), "ping", "-q", "-c", "2", "-i", "0.3", "-W", "1", ip],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def dump_logs(lab: Lab) -> None:
    for p in sorted(lab.run_dir.glob("*.log")) if lab.run_dir.exists() else []:
        lines = p.read_text(errors="replace").splitlines()
        bad = [line for line in lines if re.search(r"ERROR|error|panick|failed", line)]
        if bad:
            print(f"--- {p.name} (error lines, last 8)", file=sys.stderr)
            for line in bad[-8:]:
                print(f"    {line}", file=sys.stderr)


def repair(lab: Lab, dead: list[str]) -> None:
    for site in CLOUDS:
        t = SITE[site]["tag"]
        if f"{t}-emu" in dead:
            lab.stop(f"{t}-emu")
            start_emulator(lab, site)
            lab.wait_log(f"{t}-emu", "listening on", 15)
        if f"{t}-fabric" in dead:
            lab.stop(f"{t}-fabric")
            start_fabric_agent(lab, site)
    for role in lab.reflectors():
        if any(k in dead for k in rr_keys(lab, role)):
            lab.stop(role)
            start_rr(lab, role)
    for n in lab.nodes():
        start_node(lab, n, written_state(lab)["endpoints"])


def report(lab: Lab, state: LabState) -> None:
    print()
    rrs = ", ".join(REFLECTORS[r] for r in lab.reflectors())
    print(f"Lab {lab.name}: pool {POOL}, route reflector {lab.rr} {rrs}, state {lab.state_path}")
    print()
    print(f"  {'/32':<13} {'lives at':<8} {'BGP owner (seen by the CERs)':<30} delivered by")
    rows = where_table(lab, state["endpoints"])
    # With --endpoints, each site's first /32s (status lists them all).
    shown = rows if len(rows) <= 24 else [r for s in SITES for r in [x for x in rows if x[1] == s][:3]]
    for ip, site, owners, where in shown:
        print(f"  {ip:<13} {site:<8} {owners:<30} {where}")
    if len(shown) < len(rows):
        counts = ", ".join(f"{sum(1 for r in rows if r[1] == s)} at {s}" for s in SITES)
        print(f"  ... {len(rows)} /32s in all ({counts}): scripts/lab{name_opt(lab)} status lists every one")
    print()
    print("  transports:", ", ".join(f"{k} {v['transport']} (mtu {v['tunnel_mtu']})" for k, v in state["pairs"].items()))
    aws = state["sites"]["aws"]["cers"][0]
    print()
    print(f"Try it:   scripts/lab{name_opt(lab)} exec aws -- ping -c3 10.77.60.10")
    print(f"Explain:  {aws['cerctl'][0]} explain 10.77.60.10 --socket {aws['control_socket']}")
    print(f"Status:   scripts/lab{name_opt(lab)} status      Stop: scripts/lab{name_opt(lab)} down")


def cmd_down(lab: Lab, quiet: bool = False) -> int:
    if os.geteuid() != 0:
        die("needs root: sudo scripts/lab down")
    stopped = 0
    # Processes first (control before dataplane), by the PIDs the lab recorded.
    order = sorted(
        (p.stem for p in lab.pid_dir.glob("*.pid")) if lab.pid_dir.exists() else [],
        key=lambda k: 0 if k.endswith("-ctl") or k.endswith("-ka") or k in REFLECTORS else 1 if k.endswith("-dp") else 2,
    )
    for key in order:
        if lab.alive(key):
            stopped += 1
        lab.stop(key)
    # Every reflector's and second cloud CER's namespace, whatever the lab's state says about them.
    ours = set(lab.possible_namespaces())
    removed = 0
    for ns in netns_list():
        if ns not in ours:
            continue
        # Anything left inside a namespace of ours was started by the lab.
        pids = run(["ip", "netns", "pids", ns], check=False).stdout.split()
        for p in pids:
            try:
                os.kill(int(p), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        run(["ip", "netns", "del", ns], check=False)
        removed += 1
    for n in lab.nodes() + PAIR_NODES:
        shutil.rmtree(f"/var/run/dpdk/{lab.file_prefix(n['tag'])}", ignore_errors=True)
    shutil.rmtree(lab.run_dir, ignore_errors=True)
    try:
        lab.run_dir.parent.rmdir()
    except OSError:
        pass
    if not quiet:
        log(f"lab {lab.name} down: {stopped} processes stopped, {removed} namespaces removed, run dir and DPDK runtime dirs gone")
    return 0


# ---------------------------------------------------------------- status


def rr_status(lab: Lab, kind: str, role: str) -> None:
    """One reflector's view of its sessions, as its daemon shows them."""
    if not lab.alive(role):
        print(f"\nroute reflector {role}: not running")
    elif kind == "gobgp":
        out = ns_run(lab.ns(role), "gobgp", "neighbor", check=False).stdout
        print(f"\nroute reflector {role} (gobgp neighbor):")
        for line in out.splitlines():
            print(f"  {line}")
    elif kind == "frr":
        print(f"\nroute reflector {role} (FRR bgpd, show bgp summary):")
        for cmd in ("show bgp summary", "show bfd peers brief"):
            p = vtysh_rr(lab, cmd, check=False, role=role)
            for line in (p.stdout + p.stderr).splitlines():
                print(f"  {line}")
    else:
        s = try_admin(lab.f(f"{role}-control.sock"), "bgp_summary")
        print(f"\nroute reflector {role} (cer-control, route_reflector = true):")
        if not s:
            print("  cer-control not answering")
        for nb in (s or {}).get("neighbors", []):
            print(
                f"  {nb.get('description') or '':<9} {nb.get('address', '?')!s:<16} {nb.get('state', '?')!s:<12} "
                f"received {nb.get('prefixes_received', '?')}  sent {nb.get('prefixes_sent', '?')}"
            )


def cmd_status(lab: Lab) -> int:
    state = lab.load_state()
    if not state:
        present = [ns for ns in lab.all_namespaces() if ns in netns_list()]
        print(f"lab {lab.name}: down" + (f" (leftover namespaces: {', '.join(present)}; run down)" if present else ""))
        return 1
    pairs = ", two CERs per cloud site" if lab.cloud_pairs else ""
    print(f"lab {lab.name}: {state['run_dir']} (transport {state['transport_mode']}, rr {state['rr']['kind']}{pairs})")
    print("\nprocesses:")
    for key in process_keys(lab):
        pid = lab.pid_of(key)
        print(f"  {key:<12} {'pid ' + str(pid) if pid else 'DEAD'}")
    print("\nBGP sessions (per CER, to the route reflectors):")
    for n in lab.nodes():
        s = try_admin(lab.ctl_sock(n), "bgp_summary")
        if not s:
            print(f"  {n['node']:<9} cer-control not answering")
            continue
        for nb in s.get("neighbors", []):
            print(
                f"  {n['node']:<9} {nb.get('address', '?')!s:<16} {nb.get('state', '?')!s:<12} up {nb.get('uptime_secs', '-')!s:>5}s"
                f"  received {nb.get('prefixes_received', '?')}  sent {nb.get('prefixes_sent', '?')}  flaps {nb.get('flaps', '?')}"
            )
    for role in lab.reflectors():
        rr_status(lab, state["rr"]["kind"], role)
    m = vrrp_master(lab)
    print(f"\non-prem VRRP master (gate open): {m['node'] if m else 'none'}")
    if lab.cloud_pairs:
        print("\ncloud pairs (cer-control's pair role; the active one captures):")
        for site in CLOUDS:
            roles = pair_roles(lab, site)
            print(f"  {site:<6} " + ", ".join(f"{n['node']} {roles.get(n['node']) or 'not answering'}" for n in lab.nodes_of(site)))
    print("\nwhere each /32 lives:")
    for ip, site, owners, where in where_table(lab, state["endpoints"]):
        print(f"  {ip:<13} {site:<8} owner {owners:<20} {where}")
    probs = convergence_problems(lab, state["endpoints"])
    print("\nconverged" if not probs else "\nnot converged:\n  " + "\n  ".join(probs))
    return 0
