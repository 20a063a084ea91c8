"""lab.json (`/run/cer-lab/NAME/lab.json`, documented in README "## The four-site lab"): its shape
as TypedDicts and `write_state`, which writes it atomically. Tests and the acceptance suite drive
the lab through this file: its keys are an interface.
"""

from __future__ import annotations

import json
from typing import NotRequired, TypedDict

from .topology import (
    API_ADDR,
    ASN,
    BINS,
    CTL_METRICS,
    DEFAULT_PAIRS,
    DP_METRICS,
    LAB_SCRIPT,
    OVERHEAD,
    POOL,
    REFLECTORS,
    RR_ADDR,
    SITE,
    SITES,
    Lab,
    Node,
    Vpc,
    dp_mtu,
)


class CapturePoint(TypedDict):
    netns: str
    iface: str


class CapturePoints(TypedDict):
    inner: CapturePoint
    outer: CapturePoint


class CerState(TypedDict):
    node: str
    netns: str
    transport_address: str
    router_id: str
    identity: str
    tunnel_id: int
    wan_gateway: str
    control_socket: str
    dataplane_socket: str
    cerctl: list[str]
    cerctl_suffix: list[str]
    cerctl_example: str
    cerctl_dataplane: list[str]
    capture_points: CapturePoints
    logs: dict[str, str]
    # Prometheus /metrics URLs, reached inside the CER's namespace (ip netns exec NETNS curl URL).
    metrics: dict[str, str]
    # Clouds: the CER's NIC as the provider names it (ENI id, Azure NIC id, OCI VNIC OCID), its
    # primary VPC address, the fabric's interface towards it, and the address its provider API and
    # IMDS requests come from (mgmt0; the emulator journal's request.client).
    nic: NotRequired[str]
    nics: NotRequired[list[str]]  # every NIC of the CER (--endpoints gives it several), nic first
    vpc_address: NotRequired[str]
    fabric_iface: NotRequired[str]
    mgmt_address: NotRequired[str]
    pair_preference: NotRequired[int]  # --cloud-pairs: cer-control's capture.pair_preference


class SiteNetns(TypedDict):
    cers: list[str]
    workload: str
    fabric: str


class VrrpState(TypedDict):
    instance: str
    interface: str
    priorities: dict[str, int]


class EmulatorState(TypedDict):
    url: str
    netns: str
    provider: str


class SiteState(TypedDict):
    capture: str
    netns: SiteNetns
    workload_ip: str
    workload_iface: str
    gateway: str | None
    lan_mtu: int
    wan_mtu: int
    dataplane_mtu: int
    cers: list[CerState]
    vrrp: NotRequired[VrrpState]  # on-prem
    emulator: NotRequired[EmulatorState]  # clouds
    fabric_state: NotRequired[str]  # clouds
    vpc: NotRequired[Vpc]  # clouds
    workload_nics: NotRequired[list[str]]  # clouds: the workload instance's NICs at the provider


class PairState(TypedDict):
    sites: list[str]
    transport: str
    wan_mtu: int
    tunnel_mtu: int
    overhead: int


class RrState(TypedDict):
    kind: str
    netns: str
    address: str
    control_socket: str | None


class ReflectorState(TypedDict):
    role: str  # "rr", "rr2": process key, namespace suffix, freeze/thaw target
    netns: str
    address: str
    control_socket: str | None


class WanState(TypedDict):
    netns: str
    router: dict[str, str]


class LabState(TypedDict):
    name: str
    run_dir: str
    pool: str
    asn: int
    transport_mode: str
    rr: RrState  # the first reflector (all of them: reflectors)
    rr_count: NotRequired[int]
    reflectors: NotRequired[list[ReflectorState]]
    track_wan: NotRequired[bool]
    cloud_pairs: NotRequired[bool]
    extra_endpoints: NotRequired[int]  # --endpoints N: N more pool /32s per site
    poll_mode: NotRequired[str]  # --poll-mode: the dataplanes' poll_mode
    wan: WanState
    sites: dict[str, SiteState]
    pairs: dict[str, PairState]
    endpoints: dict[str, str]  # /32 -> the site it lives at
    bins: dict[str, str]
    namespaces: list[str]
    script: str
    failed: NotRequired[list[str]]  # nodes `fail` killed and `heal` has not restarted
    frozen: NotRequired[list[str]]  # nodes `freeze` stopped (SIGSTOP) and `thaw`/`heal` has not resumed
    cut: NotRequired[list[str]]  # nodes whose WAN link `cut` took down and `heal` has not restored


def capture_points(lab: Lab, node: Node) -> CapturePoints:
    """Where to tcpdump a CER's traffic: the far ends of its DPDK-owned veths (net_af_packet sends
    with PACKET_QDISC_BYPASS, so a capture on the CER's own interface misses what it transmits)."""
    site = node["site"]
    inner: CapturePoint
    outer: CapturePoint
    if site == "onprem":
        t = node["tag"][-1]
        inner = {"netns": lab.ns("opseg"), "iface": f"{t}lan"}
        outer = {"netns": lab.ns("wan"), "iface": f"op{t}"}
    else:
        tag = SITE[site]["tag"]
        inner = {"netns": lab.ns(tag + "fab"), "iface": lab.fab_iface(node)}
        outer = {"netns": lab.ns("wan"), "iface": node["tag"]}
    return {"inner": inner, "outer": outer}


def cer_state(lab: Lab, n: Node, cerctl: str) -> CerState:
    site = n["site"]
    c: CerState = {
        "node": n["node"],
        "netns": lab.node_ns(n),
        "transport_address": lab.wan_addr(n),
        "router_id": lab.wan_addr(n),
        "identity": f"{ASN}:100{n['n']}",
        "tunnel_id": n["n"],
        "wan_gateway": lab.wan_gw(site),
        "control_socket": str(lab.ctl_sock(n)),
        "dataplane_socket": str(lab.dp_sock(n)),
        # cerctl's --socket belongs to its subcommands: BIN + [command...] + cerctl_suffix.
        "cerctl": [cerctl],
        "cerctl_suffix": ["--socket", str(lab.ctl_sock(n))],
        "cerctl_example": f"{cerctl} show owners --socket {lab.ctl_sock(n)}",
        "cerctl_dataplane": [cerctl, "dataplane", "--admin-socket", str(lab.dp_sock(n))],
        "capture_points": capture_points(lab, n),
        "logs": {k: str(lab.f(f"{n['tag']}-{k}.log")) for k in ("dp", "ctl") + (("ka",) if site == "onprem" else ())},
        "metrics": {"dataplane": f"http://{DP_METRICS}/metrics", "control": f"http://{CTL_METRICS}/metrics"},
    }
    if site != "onprem":
        c["nic"] = lab.cer_nic(n)
        c["nics"] = lab.cer_nics(n)
        c["vpc_address"] = lab.cer_vpc_addr(n)
        c["fabric_iface"] = lab.fab_iface(n)
        c["mgmt_address"] = lab.mgmt_addr(n)
    pref = lab.pair_preference(n)
    if pref is not None:
        c["pair_preference"] = pref
    return c


def site_state(lab: Lab, site: str, cerctl: str) -> SiteState:
    nodes = lab.nodes_of(site)
    s: SiteState = {
        "capture": site,
        "netns": {
            "cers": [lab.node_ns(n) for n in nodes],
            "workload": lab.wl_ns(site),
            "fabric": lab.fab_ns(site),
        },
        "workload_ip": SITE[site]["ip"],
        "workload_iface": "eth0",
        "gateway": None if site == "onprem" else lab.vpc(site)["gw"],
        "lan_mtu": SITE[site]["mtu"],
        "wan_mtu": SITE[site]["mtu"],
        "dataplane_mtu": dp_mtu(site),
        "cers": [],
    }
    if site == "onprem":
        s["vrrp"] = {"instance": "VI_LAB", "interface": "ka0", "priorities": {n["node"]: n.get("prio", 0) for n in nodes}}
    else:
        s["emulator"] = {"url": f"http://{API_ADDR}", "netns": lab.fab_ns(site), "provider": site}
        s["fabric_state"] = str(lab.f(f"{SITE[site]['tag']}-fabric.json"))
        s["vpc"] = lab.vpc(site)
        s["workload_nics"] = lab.wl_nics(site)
    s["cers"] = [cer_state(lab, n, cerctl) for n in nodes]
    return s


def write_state(
    lab: Lab,
    endpoints: dict[str, str],
    failed: list[str] | None = None,
    frozen: list[str] | None = None,
    cut: list[str] | None = None,
) -> LabState:
    """Writes lab.json (atomically) for `endpoints`; `failed` lists the nodes `fail` killed, `frozen`
    and `cut` the nodes `freeze` and `cut` hit (None: as lab.json has them)."""
    old = lab.load_state()
    if frozen is None:
        frozen = list(old.get("frozen", [])) if old else []
    if cut is None:
        cut = list(old.get("cut", [])) if old else []
    bins = {b: lab.bin(b) for b in BINS}
    pairs: dict[str, PairState] = {}
    for a, b in DEFAULT_PAIRS:
        kind = lab.pair_transport(a, b)
        wmtu = min(SITE[a]["mtu"], SITE[b]["mtu"])
        tmtu = min(dp_mtu(a), dp_mtu(b)) - OVERHEAD[kind]
        pairs[f"{a}-{b}"] = {"sites": [a, b], "transport": kind, "wan_mtu": wmtu, "tunnel_mtu": tmtu, "overhead": OVERHEAD[kind]}
    state: LabState = {
        "name": lab.name,
        "run_dir": str(lab.run_dir),
        "pool": POOL,
        "asn": ASN,
        "transport_mode": lab.transport or "mixed",
        "track_wan": lab.track_wan,
        "cloud_pairs": lab.cloud_pairs,
        "extra_endpoints": lab.extra,
        "poll_mode": lab.poll_mode,
        "rr": {
            "kind": lab.rr,
            "netns": lab.ns("rr"),
            "address": RR_ADDR,
            "control_socket": str(lab.f("rr-control.sock")) if lab.rr == "cer" else None,
        },
        "rr_count": lab.rr_count,
        "reflectors": [
            {
                "role": role,
                "netns": lab.ns(role),
                "address": REFLECTORS[role],
                "control_socket": str(lab.f(f"{role}-control.sock")) if lab.rr == "cer" else None,
            }
            for role in lab.reflectors()
        ],
        "wan": {"netns": lab.ns("wan"), "router": {s: lab.wan_gw(s) for s in SITES}},
        "sites": {site: site_state(lab, site, bins["cerctl"]) for site in SITES},
        "pairs": pairs,
        "endpoints": endpoints,
        "bins": bins,
        "namespaces": lab.all_namespaces(),
        "script": str(LAB_SCRIPT),
    }
    if failed is not None:
        state["failed"] = failed
    if frozen:
        state["frozen"] = frozen
    if cut:
        state["cut"] = cut
    tmp = lab.state_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(lab.state_path)
    return state
