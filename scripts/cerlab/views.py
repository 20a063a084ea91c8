"""What the lab's daemons say: the JSON admin sockets of cer-control and cer-dataplane, the fabric
agents' route tables, and from them whether the lab is converged (`convergence_problems`,
`converge`) and where each /32 lives (`where_table`).
"""

from __future__ import annotations

import ipaddress
import json
import socket
import time
from pathlib import Path
from typing import Any, TypedDict

from .fabric import FabricTable
from .messages import LabError, die, log
from .topology import ASN, CLOUDS, SITE, Lab, Node

# An admin socket's `data`: JSON whose shape depends on the command (the Rust side owns it).
AdminData = Any


class Owner(TypedDict, total=False):
    """cer-control `owners`: one /32's BGP owner as this CER sees it."""

    prefix: str
    identity: str


class CaptureIp(TypedDict, total=False):
    """cer-control `capture`: one /32's capture state at a cloud CER."""

    desired: str
    phase: str
    last_error: str | None
    fenced: int


def admin_query(sock: Path | str, cmd: str, timeout: float = 5.0, **kw: object) -> AdminData:
    """One JSON request to a cer-control or cer-dataplane admin socket: the `data` field."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(sock))
        req: dict[str, object] = {"cmd": cmd}
        req.update(kw)
        s.sendall((json.dumps(req) + "\n").encode())
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    finally:
        s.close()
    v = json.loads(buf.decode() or "{}")
    if v.get("status") != "ok":
        raise LabError(f"{cmd} on {sock}: {v.get('message', v)}")
    return v.get("data")


def try_admin(sock: Path | str, cmd: str) -> AdminData:
    """admin_query, or None when the daemon does not answer."""
    try:
        return admin_query(sock, cmd)
    except (OSError, LabError, ValueError):
        return None


def expected_owner_nodes(lab: Lab, endpoints: dict[str, str], ip: str) -> set[str]:
    return {f"{ASN}:100{n['n']}" for n in lab.nodes() if n["site"] == endpoints.get(ip)}


def node_view(lab: Lab, node: Node) -> dict[str, Owner]:
    owners: list[Owner] = try_admin(lab.ctl_sock(node), "owners") or []
    return {o["prefix"].split("/")[0]: o for o in owners if o.get("prefix")}


def fabric_view(lab: Lab, site: str) -> FabricTable:
    try:
        t: FabricTable = json.loads(lab.f(f"{SITE[site]['tag']}-fabric.json").read_text())
        return t
    except (OSError, ValueError):
        return {}


def capture_view(lab: Lab, node: Node) -> dict[str, CaptureIp]:
    return capture_ips(try_admin(lab.ctl_sock(node), "capture"))


def capture_ips(c: AdminData) -> dict[str, CaptureIp]:
    """The per-/32 part of a cer-control `capture` answer."""
    ips: dict[str, CaptureIp] = c.get("ips", {}) if isinstance(c, dict) else {}
    return ips


def pair_role(c: AdminData) -> str | None:
    """A cloud pair member's role in a cer-control `capture` answer: "active", "standby", or None
    (not answering, or not a pair member)."""
    pair = c.get("pair") if isinstance(c, dict) else None
    role = pair.get("role") if isinstance(pair, dict) else None
    return role if isinstance(role, str) else None


def pair_roles(lab: Lab, site: str) -> dict[str, str | None]:
    """node -> its pair role, for the running CERs of a paired cloud site (a frozen one does not
    answer: None)."""
    return {n["node"]: pair_role(try_admin(lab.ctl_sock(n), "capture")) for n in alive_nodes(lab) if n["site"] == site}


def active_capturers(lab: Lab, site: str) -> list[Node]:
    """The CERs of a paired cloud site that say they are the active capturer (one when settled)."""
    roles = pair_roles(lab, site)
    return [n for n in lab.nodes_of(site) if roles.get(n["node"]) == "active"]


def active_capturer(lab: Lab, site: str) -> Node:
    """The one active capturer of a paired cloud site (what `freeze|cut|fail SITE` hit), or die
    saying what the CERs report."""
    roles = pair_roles(lab, site)
    active = [n for n in lab.nodes_of(site) if roles.get(n["node"]) == "active"]
    if len(active) != 1:
        names = "|".join(n["node"] for n in lab.nodes_of(site))
        die(f"{site}: no single active capturer right now (pair roles {roles}); name one: {names}")
    return active[0]


def alive_nodes(lab: Lab) -> list[Node]:
    """The nodes whose dataplane and cer-control both run."""
    return [n for n in lab.nodes() if lab.alive(f"{n['tag']}-dp") and lab.alive(f"{n['tag']}-ctl")]


def convergence_problems(lab: Lab, endpoints: dict[str, str]) -> list[str]:
    """What is not yet as the endpoints say (empty when converged). At a paired cloud site exactly
    one live CER is the active capturer: it captures the remote /32s, the standby stands by (holds
    none), and the fabric delivers them to the active one's NIC."""
    problems = []
    live = alive_nodes(lab)
    live_sites = {n["site"] for n in live}
    roles: dict[str, str | None] = {}
    for node in live:
        view = node_view(lab, node)
        for ip, site in endpoints.items():
            if site not in live_sites:
                continue
            o = view.get(ip)
            want = expected_owner_nodes(lab, endpoints, ip)
            if not o or o.get("identity") not in want:
                problems.append(f"{node['node']}: owner of {ip} is {o.get('identity') if o else 'none'}, want {sorted(want)}")
        if node["site"] != "onprem":
            status = try_admin(lab.ctl_sock(node), "capture")
            cap = capture_ips(status)
            role = roles[node["node"]] = pair_role(status) if lab.paired(node["site"]) else None
            if lab.paired(node["site"]) and role not in ("active", "standby"):
                problems.append(f"{node['node']}: no cloud pair role in its capture status (pair.role {role})")
            for ip, site in endpoints.items():
                if site not in live_sites:
                    continue
                c = cap.get(ip, {})
                want_c = "release" if site == node["site"] else "standby" if role == "standby" else "capture"
                if c.get("desired") != want_c or c.get("phase") != "confirmed":
                    problems.append(f"{node['node']}: capture of {ip} is {c.get('desired')}/{c.get('phase')}, want {want_c}/confirmed")
    for site in CLOUDS:
        if site not in live_sites:
            continue
        capturer = "cer"
        if lab.paired(site):
            active = [n for n in live if n["site"] == site and roles.get(n["node"]) == "active"]
            if len(active) != 1:
                problems.append(f"{site}: {len(active)} active capturers {[n['node'] for n in active]} (want exactly one)")
            capturer = lab.fab_iface(active[0]) if len(active) == 1 else "the active CER"
        fab = fabric_view(lab, site).get("routes", {})
        for ip, owner_site in endpoints.items():
            if owner_site not in live_sites:
                continue
            want_if = "wl" if owner_site == site else capturer
            got = fab[ip]["iface"] if ip in fab else None
            if got != want_if:
                problems.append(f"{site} fabric: {ip} goes to {got}, want {want_if}")
    op = [n for n in live if n["site"] == "onprem"]
    if op:
        gates = [n["node"] for n in op if (try_admin(lab.dp_sock(n), "proxy_arp") or {}).get("active")]
        if len(gates) != 1:
            problems.append(f"onprem: proxy-ARP gate open on {gates or 'no CER'} (want exactly the VRRP master)")
    return problems


def converge(lab: Lab, endpoints: dict[str, str], timeout: float) -> None:
    end = time.time() + timeout
    t0 = time.time()
    while True:
        probs = convergence_problems(lab, endpoints)
        if not probs:
            log(f"converged in {time.time() - t0:.1f}s")
            return
        if time.time() > end:
            problems = "\n  ".join(probs[:20])
            die(f"not converged after {timeout:.0f}s:\n  {problems}\n(logs in {lab.run_dir})")
        time.sleep(0.5)


def vrrp_master(lab: Lab) -> Node | None:
    """The on-prem node whose proxy-ARP gate is open (the VRRP master), if any."""
    for n in lab.nodes_of("onprem"):
        if (try_admin(lab.dp_sock(n), "proxy_arp") or {}).get("active"):
            return n
    return None


def where_table(lab: Lab, endpoints: dict[str, str]) -> list[tuple[str, str, str, str]]:
    """Where each /32 lives, from every CER's view (cer-control owners + capture) and the fabrics:
    (ip, site, owners, delivered by)."""
    rows = []
    views = {n["node"]: node_view(lab, n) for n in alive_nodes(lab)}
    ident = {f"{ASN}:100{n['n']}": n["node"] for n in lab.nodes()}
    for ip in sorted(endpoints, key=lambda a: ipaddress.ip_address(a)):
        site = endpoints[ip]
        owners = sorted({ident.get(v[ip].get("identity", ""), v[ip].get("identity", "")) for v in views.values() if ip in v})
        where = []
        for s in CLOUDS:
            r = fabric_view(lab, s).get("routes", {}).get(ip)
            if r:
                if r["iface"] == "wl":
                    where.append(f"{s}:workload")
                elif lab.paired(s):
                    # Which CER's NIC holds it.
                    cer = next((n["node"] for n in lab.nodes_of(s) if lab.fab_iface(n) == r["iface"]), r["iface"])
                    where.append(f"{s}:CER({cer})")
                else:
                    where.append(f"{s}:CER")
        m = vrrp_master(lab)
        where.append(f"onprem:{'workload' if site == 'onprem' else ('proxy-ARP ' + m['node'] if m else 'no proxy-ARP')}")
        rows.append((ip, site, ",".join(owners) or "-", " ".join(where)))
    return rows
