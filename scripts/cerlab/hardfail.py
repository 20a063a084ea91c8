"""Hard failures, the ones a router does not announce: `freeze` (SIGSTOP every process of a node:
no FIN, no RST, no NOTIFICATION, no VRRP advert, the frames on its links go unanswered), `thaw`
(SIGCONT) and `cut` (the node's WAN link down at the WAN router, its processes untouched). `heal`
thaws and reconnects what these did before restarting anything dead.
"""

from __future__ import annotations

import os
import signal
import time

from .daemons import rr_keys
from .messages import die, log
from .processes import ns_run
from .state import LabState, write_state
from .topology import Lab, Node
from .views import active_capturer, vrrp_master


def nodes_for(lab: Lab, what: str) -> list[Node]:
    """A site's nodes, one node by name, or for "onprem" the VRRP master and for a paired cloud
    site (--cloud-pairs) its active capturer (the one a failure hurts)."""
    if what in ("onprem", "on-prem", "op"):
        master = vrrp_master(lab)
        if not master:
            die("no on-prem CER is VRRP master right now; name one: onprem-a|onprem-b")
        return [master]
    if lab.paired(what):
        return [active_capturer(lab, what)]
    nodes = [n for n in lab.nodes() if n["node"] == what or n["site"] == what]
    if not nodes:
        names = sorted({n["site"] for n in lab.nodes()} | {n["node"] for n in lab.nodes()})
        die(f"unknown site or node {what!r}: one of {', '.join(names)}")
    return nodes


def node_pids(lab: Lab, node: Node) -> list[int]:
    """Every live process of a node: dataplane, cer-control and, on-prem, keepalived and its VRRP child."""
    t = node["tag"]
    pids = [p for k in (f"{t}-dp", f"{t}-ctl", f"{t}-ka") if (p := lab.pid_of(k)) is not None]
    if node["site"] == "onprem" and (child := lab.vrrp_child(f"{t}-ka")) is not None:
        pids.append(child)
    return pids


def signal_pids(pids: list[int], sig: int) -> list[int]:
    """Sends `sig` to each of `pids` (processes the lab started); returns them."""
    for p in pids:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass
    return pids


def signal_node(lab: Lab, node: Node, sig: int) -> list[int]:
    return signal_pids(node_pids(lab, node), sig)


def record(lab: Lab, state: LabState, frozen: set[str] | None = None, cut: set[str] | None = None) -> None:
    write_state(
        lab,
        state["endpoints"],
        failed=state.get("failed"),
        frozen=sorted(frozen) if frozen is not None else state.get("frozen", []),
        cut=sorted(cut) if cut is not None else state.get("cut", []),
    )


def reflector_pids(lab: Lab, role: str) -> list[int]:
    return [p for k in rr_keys(lab, role) if (p := lab.pid_of(k)) is not None]


def signal_reflector(lab: Lab, role: str, sig: int) -> list[int]:
    return signal_pids(reflector_pids(lab, role), sig)


def cmd_freeze(lab: Lab, state: LabState, what: str) -> int:
    if what in lab.reflectors():
        pids = signal_reflector(lab, what, signal.SIGSTOP)
        log(f"froze reflector {what} at {time.time():.3f}: SIGSTOP to {len(pids)} processes {pids}")
        record(lab, state, frozen=set(state.get("frozen", [])) | {what})
        return 0
    nodes = nodes_for(lab, what)
    for n in nodes:
        pids = signal_node(lab, n, signal.SIGSTOP)
        log(f"froze {n['node']} at {time.time():.3f}: SIGSTOP to {len(pids)} processes {pids}")
    record(lab, state, frozen=set(state.get("frozen", [])) | {n["node"] for n in nodes})
    return 0


def thaw_nodes(lab: Lab, state: LabState, nodes: list[Node]) -> list[str]:
    frozen = set(state.get("frozen", []))
    done = []
    for n in nodes:
        if n["node"] in frozen:
            pids = signal_node(lab, n, signal.SIGCONT)
            log(f"thawed {n['node']} at {time.time():.3f}: SIGCONT to {len(pids)} processes")
            done.append(n["node"])
    return done


def cmd_thaw(lab: Lab, state: LabState, what: str | None) -> int:
    frozen = set(state.get("frozen", []))
    # A site thaws every frozen CER of it (the VRRP master / active capturer it froze may have
    # changed since).
    if what is None:
        nodes = [n for n in lab.nodes() if n["node"] in frozen]
    else:
        nodes = [n for n in lab.nodes() if n["node"] == what or n["site"] == what]
        if what in ("onprem", "on-prem", "op"):
            nodes = lab.nodes_of("onprem")
    done = thaw_nodes(lab, state, nodes)
    for role in lab.reflectors():
        if role in frozen and what in (None, role):
            pids = signal_reflector(lab, role, signal.SIGCONT)
            log(f"thawed reflector {role} at {time.time():.3f}: SIGCONT to {len(pids)} processes")
            done.append(role)
    if not done:
        log("nothing frozen there")
    record(lab, state, frozen=frozen - set(done))
    return 0


def set_wan_link(lab: Lab, node: Node, up: bool) -> None:
    # The WAN router's end of the node's WAN veth carries the node's tag.
    ns_run(lab.ns("wan"), "ip", "link", "set", node["tag"], "up" if up else "down")


def cmd_cut(lab: Lab, state: LabState, what: str) -> int:
    nodes = nodes_for(lab, what)
    for n in nodes:
        set_wan_link(lab, n, False)
        log(f"cut {n['node']}'s WAN link at {time.time():.3f} (its processes run on)")
    record(lab, state, cut=set(state.get("cut", [])) | {n["node"] for n in nodes})
    return 0


def restore(lab: Lab, state: LabState, nodes: list[Node]) -> None:
    """For `heal`: thaw the frozen and reconnect the cut among `nodes`."""
    thawed = thaw_nodes(lab, state, nodes)
    cut = set(state.get("cut", []))
    joined = []
    for n in nodes:
        if n["node"] in cut:
            set_wan_link(lab, n, True)
            log(f"reconnected {n['node']}'s WAN link")
            joined.append(n["node"])
    if thawed or joined:
        record(lab, state, frozen=set(state.get("frozen", [])) - set(thawed), cut=cut - set(joined))
