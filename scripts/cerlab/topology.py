"""The lab model: its sites, CER nodes, provider resource ids, and the `Lab` that names every
namespace, file and address of one lab instance (NAME). Pure naming and constants; the processes
a lab runs are in `processes`, its lab.json in `state`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, NotRequired, TypedDict

from .messages import die
from .processes import ProcessTable

if TYPE_CHECKING:
    from .state import LabState

ROOT = Path(__file__).resolve().parent.parent.parent
# The entry point: helpers run inside namespaces (`_fabric`, `_http`, `_probe`, `_arp`, `_relay`)
# are started as `PY LAB_SCRIPT _helper ...` so their command line names the lab.
LAB_SCRIPT = ROOT / "scripts" / "lab"
PY = "/usr/bin/python3"
POOL = "10.77.60.0/24"
ASN = 65000
MARKER_COMMUNITY = "65000:999"
RR_ADDR = "100.64.0.1"
# With --rrs 2, a second reflector of the same kind; every CER is a client of both.
RR2_ADDR = "100.64.0.2"
REFLECTORS = {"rr": RR_ADDR, "rr2": RR2_ADDR}
API_ADDR = "169.254.169.254"
SITES = ["onprem", "aws", "azure", "oci"]
CLOUDS = ["aws", "azure", "oci"]
TRANSPORTS = ["wireguard", "ipip", "gre", "fou", "gue"]
GRE_KEY = 77
# Prometheus /metrics of each CER, on loopback inside its own namespace (README "Metrics").
DP_METRICS = "127.0.0.1:9461"
CTL_METRICS = "127.0.0.1:9462"
# The CERs' ports run at the site MTU (af_packet ports carry up to ~16 KiB frames; cer-dataplane
# sizes the kernel interface under each port). CER_LAB_DATAPLANE_MTU_MAX caps them for experiments;
# the provider networks (WAN links, VPC fabrics, workloads) always keep the site MTUs.
DATAPLANE_MTU_MAX = int(os.environ.get("CER_LAB_DATAPLANE_MTU_MAX", "9600"))
OVERHEAD = {"ipip": 20, "gre": 28, "fou": 28, "gue": 32, "wireguard": 60}
DEFAULT_PAIRS = {
    ("onprem", "aws"): "wireguard",
    ("onprem", "azure"): "gre",
    ("onprem", "oci"): "ipip",
    ("aws", "azure"): "fou",
    ("aws", "oci"): "gue",
    ("azure", "oci"): "wireguard",
}


class SiteInfo(TypedDict):
    """Per site: short namespace tag, pool /32, MTU (LAN and WAN), WAN subnet (/24 prefix), VPC byte."""

    tag: str
    ip: str
    mtu: int
    wan: str
    byte: int


SITE: dict[str, SiteInfo] = {
    "onprem": {"tag": "op", "ip": "10.77.60.10", "mtu": 1500, "wan": "100.64.10", "byte": 10},
    "aws": {"tag": "aws", "ip": "10.77.60.11", "mtu": 9001, "wan": "100.64.11", "byte": 11},
    "azure": {"tag": "az", "ip": "10.77.60.12", "mtu": 1500, "wan": "100.64.12", "byte": 12},
    "oci": {"tag": "oci", "ip": "10.77.60.13", "mtu": 9000, "wan": "100.64.13", "byte": 13},
}


class Node(TypedDict):
    """A CER node: n = tunnel id towards the node, identity 65000:100n, marker 10.255.0.n/32."""

    node: str
    site: str
    tag: str
    n: int
    wan_host: int
    prio: NotRequired[int]  # VRRP priority (on-prem only)


NODES: list[Node] = [
    {"node": "onprem-a", "site": "onprem", "tag": "opa", "n": 1, "wan_host": 1, "prio": 150},
    {"node": "onprem-b", "site": "onprem", "tag": "opb", "n": 2, "wan_host": 2, "prio": 100},
    {"node": "aws", "site": "aws", "tag": "aws", "n": 3, "wan_host": 1},
    {"node": "azure", "site": "azure", "tag": "az", "n": 4, "wan_host": 1},
    {"node": "oci", "site": "oci", "tag": "oci", "n": 5, "wan_host": 1},
]
# --cloud-pairs: a second CER per cloud site (wan_host 2: the site's WAN .2, VPC .11, fabric
# interface "cerb", management address 169.254.169.11). The first CER of a paired site is then
# named SITE-a (its tag, namespaces and files stay SITE's), so that SITE alone names the site.
PAIR_NODES: list[Node] = [
    {"node": "aws-b", "site": "aws", "tag": "awsb", "n": 6, "wan_host": 2},
    {"node": "azure-b", "site": "azure", "tag": "azb", "n": 7, "wan_host": 2},
    {"node": "oci-b", "site": "oci", "tag": "ocib", "n": 8, "wan_host": 2},
]
# cer-control's capture.pair_preference: the first CER of a pair is preferred (the active one
# while both run; it takes the role back when it returns).
PAIR_PREFERENCE = {1: 200, 2: 100}


class ProviderIds(TypedDict):
    """A cloud site's resource ids at its provider (emulator seed and API requests); `cer_b_*`
    are the second CER's (--cloud-pairs)."""

    subnet: str
    vpc: str
    cer_nic: str
    wl_nic: str
    cer_inst: str
    wl_inst: str
    cer_b_nic: str
    cer_b_inst: str


AZ_SUB = "/subscriptions/sub-cerlab/resourceGroups/rg-cerlab/providers"
PROVIDER: dict[str, ProviderIds] = {
    "aws": {
        "subnet": "subnet-0cerlab",
        "vpc": "vpc-0cerlab",
        "cer_nic": "eni-0cerlab0cer",
        "wl_nic": "eni-0cerlab0workload",
        "cer_inst": "i-0cerlab0cer",
        "wl_inst": "i-0cerlab0workload",
        "cer_b_nic": "eni-0cerlab0cerb",
        "cer_b_inst": "i-0cerlab0cerb",
    },
    "azure": {
        "subnet": f"{AZ_SUB}/Microsoft.Network/virtualNetworks/vnet-cerlab/subnets/default",
        "vpc": "vnet-cerlab",
        "cer_nic": f"{AZ_SUB}/Microsoft.Network/networkInterfaces/nic-cer",
        "wl_nic": f"{AZ_SUB}/Microsoft.Network/networkInterfaces/nic-workload",
        "cer_inst": f"{AZ_SUB}/Microsoft.Compute/virtualMachines/vm-cer",
        "wl_inst": f"{AZ_SUB}/Microsoft.Compute/virtualMachines/vm-workload",
        "cer_b_nic": f"{AZ_SUB}/Microsoft.Network/networkInterfaces/nic-cer-b",
        "cer_b_inst": f"{AZ_SUB}/Microsoft.Compute/virtualMachines/vm-cer-b",
    },
    "oci": {
        "subnet": "ocid1.subnet.oc1.eu-frankfurt-1.cerlab",
        "vpc": "ocid1.vcn.oc1.eu-frankfurt-1.cerlab",
        "cer_nic": "ocid1.vnic.oc1.eu-frankfurt-1.cerlabcer",
        "wl_nic": "ocid1.vnic.oc1.eu-frankfurt-1.cerlabworkload",
        "cer_inst": "ocid1.instance.oc1.eu-frankfurt-1.cerlabcer",
        "wl_inst": "ocid1.instance.oc1.eu-frankfurt-1.cerlabworkload",
        "cer_b_nic": "ocid1.vnic.oc1.eu-frankfurt-1.cerlabcerb",
        "cer_b_inst": "ocid1.instance.oc1.eu-frankfurt-1.cerlabcerb",
    },
}
OCI_TENANCY = "ocid1.tenancy.oc1..cerlab"
OCI_USER = "ocid1.user.oc1..cerlab"
BINS = ["cer-dataplane", "cer-control", "cerctl", "cer-cloud-emulator"]

# --endpoints N: N more pool /32s per site, from .14 up (site by site, in SITES order), for mass
# moves. The pool /24 holds 4 x 60 of them.
EXTRA_BASE = 14
MAX_EXTRA = 60
# Secondary addresses one NIC may hold at each emulated provider (its default quotas): AWS
# c5.4xlarge 30 per ENI with the primary, 8 ENIs; Azure 256 ipConfigurations with the primary;
# OCI 64 secondaries per VNIC. With --endpoints the lab gives the CERs and the workloads as many
# NICs as their /32s need (the CERs: every pool /32 of the lab; the AWS CER at most its 8 ENIs).
NIC_ROOM = {"aws": 29, "azure": 255, "oci": 64}
MAX_NICS = {"aws": 8, "azure": 8, "oci": 8}


class Vpc(TypedDict):
    """A cloud site's VPC: the fabric's gateway, the CER's and the workload's primary address
    (and with --cloud-pairs the second CER's)."""

    gw: str
    cer: str
    wl: str
    net: str
    cer_b: NotRequired[str]


def subnet_host(prefix3: str, host: int) -> str:
    return f"{prefix3}.{host}"


def dp_mtu(site: str) -> int:
    return min(SITE[site]["mtu"], DATAPLANE_MTU_MAX)


def pair_key(a: str, b: str) -> tuple[str, str]:
    i, j = SITES.index(a), SITES.index(b)
    return (a, b) if i < j else (b, a)


def mac_for(site: str, role: int) -> str:
    # Locally administered, derived from the site and the role (CER LAN NIC 0a, the second
    # CER's 0b, workload 14).
    return f"02:ce:1a:00:{SITE[site]['byte']:02x}:{role:02x}"


def extra_nic_id(first: str, site: str, k: int) -> str:
    """The provider id of a NIC's k-th sibling (--endpoints): eni-...cer2, .../nic-cer-2, ...cer2."""
    return f"{first}-{k + 1}" if site == "azure" else f"{first}{k + 1}"


def name_opt(lab: Lab) -> str:
    """The `--name NAME` to repeat in a suggested command (empty for the default lab)."""
    return "" if lab.name == "cerlab" else f" --name {lab.name}"


class Lab(ProcessTable):
    """One lab instance: the names of its namespaces, files and addresses, and (as a
    `ProcessTable`) the processes it started, recorded by PID in its run dir."""

    def __init__(
        self,
        name: str,
        transport: str | None = None,
        rr: str | None = None,
        track_wan: bool | None = None,
        rrs: int | None = None,
        cloud_pairs: bool | None = None,
        endpoints: int | None = None,
        poll_mode: str | None = None,
    ) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9]{0,11}", name):
            die(f"--name {name!r}: use 1-12 lowercase letters/digits, starting with a letter (namespaces are NAME-ROLE)")
        self.name = name
        self.run_dir = Path("/run/cer-lab") / name
        super().__init__(self.run_dir)
        self.state_path = self.run_dir / "lab.json"
        # None: not given on the command line (a running lab keeps its own; `up` defaults to cer,
        # cer-control as the reflector, with BFD to every CER).
        self.transport_opt = transport
        self.rr_opt = rr
        self.transport = transport
        self.rr = rr or "cer"
        # keepalived tracks each on-prem CER's WAN health (cer-control's track file): off by default,
        # as with one reflector both routers would go to FAULT while it restarts.
        self.track_wan_opt = track_wan
        self.track_wan = bool(track_wan)
        # How many reflectors (1 or 2; --rrs): a running lab keeps its own.
        self.rrs_opt = rrs
        self.rr_count = rrs or 1
        # Two CERs per cloud site (--cloud-pairs): a running lab keeps its own.
        self.cloud_pairs_opt = cloud_pairs
        self.cloud_pairs = bool(cloud_pairs)
        # Extra pool /32s per site (--endpoints): a running lab keeps its own.
        if endpoints is not None and not 0 <= endpoints <= MAX_EXTRA:
            die(f"--endpoints {endpoints}: 0 to {MAX_EXTRA} per site (the pool is one /24)")
        self.extra_opt = endpoints
        self.extra = endpoints or 0
        # The dataplanes' poll_mode (--poll-mode): a running lab keeps its own.
        self.poll_mode_opt = poll_mode
        self.poll_mode = poll_mode or "shared"
        bin_dir = os.environ.get("CER_LAB_BIN_DIR")
        target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
        self.bin_dir = Path(bin_dir) if bin_dir else target / "release"

    # names
    def ns(self, role: str) -> str:
        return f"{self.name}-{role}"

    def reflectors(self) -> list[str]:
        """The reflectors' roles ("rr", and "rr2" with --rrs 2): key, namespace and file prefix."""
        return list(REFLECTORS)[: self.rr_count]

    def nodes(self) -> list[Node]:
        """The lab's CER nodes: NODES, and with --cloud-pairs the first cloud CERs renamed SITE-a
        plus PAIR_NODES."""
        if not self.cloud_pairs:
            return NODES
        out = []
        for n in NODES:
            if n["site"] in CLOUDS:
                n = n.copy()
                n["node"] = f"{n['site']}-a"
            out.append(n)
        return out + PAIR_NODES

    def paired(self, site: str) -> bool:
        """SITE has two CERs (a cloud site with --cloud-pairs)."""
        return self.cloud_pairs and site in CLOUDS

    def all_namespaces(self) -> list[str]:
        roles = ["wan", *self.reflectors(), "opseg", "opwl", "opa", "opb"]
        for s in CLOUDS:
            t = SITE[s]["tag"]
            roles += [t, f"{t}fab", f"{t}wl"]
        roles += [n["tag"] for n in PAIR_NODES if self.paired(n["site"])]
        return [self.ns(r) for r in roles]

    def possible_namespaces(self) -> list[str]:
        """Every namespace a lab of this name may own, whatever its options (for `down`)."""
        return [*self.all_namespaces(), *(self.ns(r) for r in REFLECTORS), *(self.ns(n["tag"]) for n in PAIR_NODES)]

    def file_prefix(self, node_tag: str) -> str:
        return f"{self.name}-{node_tag}"

    def bin(self, name: str) -> str:
        return str(self.bin_dir / name)

    def pair_transport(self, a: str, b: str) -> str:
        if self.transport:
            return self.transport
        return DEFAULT_PAIRS[pair_key(a, b)]

    def wl_ns(self, site: str) -> str:
        return self.ns("opwl") if site == "onprem" else self.ns(SITE[site]["tag"] + "wl")

    def fab_ns(self, site: str) -> str:
        return self.ns("opseg") if site == "onprem" else self.ns(SITE[site]["tag"] + "fab")

    def node_ns(self, node: Node) -> str:
        return self.ns(node["tag"])

    def wan_addr(self, node: Node) -> str:
        return subnet_host(SITE[node["site"]]["wan"], node["wan_host"])

    def wan_gw(self, site: str) -> str:
        return subnet_host(SITE[site]["wan"], 254)

    def vpc(self, site: str) -> Vpc:
        b = SITE[site]["byte"]
        v: Vpc = {"gw": f"10.77.{b}.1", "cer": f"10.77.{b}.10", "wl": f"10.77.{b}.20", "net": f"10.77.{b}.0/24"}
        if self.paired(site):
            v["cer_b"] = f"10.77.{b}.11"
        return v

    def ctl_sock(self, node: Node) -> Path:
        return self.f(f"{node['tag']}-control.sock")

    def dp_sock(self, node: Node) -> Path:
        return self.f(f"{node['tag']}-dataplane.sock")

    def nodes_of(self, site: str) -> list[Node]:
        return [n for n in self.nodes() if n["site"] == site]

    # a cloud CER's resources: the first CER of a site (wan_host 1) has the site's original ones
    def second(self, node: Node) -> bool:
        return node["wan_host"] == 2 and node["site"] in CLOUDS

    def cer_nic(self, node: Node) -> str:
        """The provider id of a cloud CER's NIC (ENI id, Azure NIC resource id, OCI VNIC OCID)."""
        p = PROVIDER[node["site"]]
        return p["cer_b_nic"] if self.second(node) else p["cer_nic"]

    def cer_nics(self, node: Node) -> list[str]:
        """Every NIC of a cloud CER at its provider, the first one `cer_nic`. With --endpoints the
        CER has as many as the lab's pool /32s need (same MAC, one wire: the lab's extra NICs share
        the CER's LAN port; on a real instance each is its own port)."""
        first = self.cer_nic(node)
        return [first] + [extra_nic_id(first, node["site"], k) for k in range(1, self.nic_count(node["site"], 4 * (self.extra + 1)))]

    def wl_nics(self, site: str) -> list[str]:
        """Every NIC of a cloud site's workload instance: its pool /32s plus as many arriving in
        one mass move."""
        first = PROVIDER[site]["wl_nic"]
        return [first] + [extra_nic_id(first, site, k) for k in range(1, self.nic_count(site, 2 * (self.extra + 1)))]

    def wl_seed(self, site: str) -> dict[str, list[str]]:
        """The workload NICs' secondary addresses when the lab comes up: the site's pool /32s,
        as many per NIC as the provider allows."""
        own = [SITE[site]["ip"], *self.extra_ips(site)]
        room = NIC_ROOM[site]
        return {nic: own[k * room : (k + 1) * room] for k, nic in enumerate(self.wl_nics(site))}

    def nic_count(self, site: str, addresses: int) -> int:
        if not self.extra:
            return 1
        return max(1, min(MAX_NICS[site], -(-addresses // NIC_ROOM[site])))

    def extra_ips(self, site: str) -> list[str]:
        """The --endpoints /32s that start at SITE."""
        base = EXTRA_BASE + SITES.index(site) * self.extra
        return [f"{POOL.rsplit('.', 1)[0]}.{base + k}" for k in range(self.extra)]

    def initial_endpoints(self) -> dict[str, str]:
        """Where every pool /32 lives when the lab comes up: each site's workload address, and
        with --endpoints its N more."""
        out = {SITE[s]["ip"]: s for s in SITES}
        for s in SITES:
            out.update({ip: s for ip in self.extra_ips(s)})
        return out

    def cer_inst(self, node: Node) -> str:
        p = PROVIDER[node["site"]]
        return p["cer_b_inst"] if self.second(node) else p["cer_inst"]

    def cer_vpc_addr(self, node: Node) -> str:
        """A cloud CER's primary address in its VPC (10.77.B.10, the second CER 10.77.B.11)."""
        return f"10.77.{SITE[node['site']]['byte']}.{11 if self.second(node) else 10}"

    def cer_mac(self, node: Node) -> str:
        """A cloud CER's LAN NIC MAC (the provider's, set on its lan0)."""
        return mac_for(node["site"], 0x0B if self.second(node) else 0x0A)

    def fab_iface(self, node: Node) -> str:
        """The fabric's interface towards a cloud CER's LAN port."""
        return "cerb" if self.second(node) else "cer"

    def mgmt_addr(self, node: Node) -> str:
        """A cloud CER's management address (mgmt0: the provider API and IMDS)."""
        return "169.254.169.11" if self.second(node) else "169.254.169.10"

    def api_iface(self, node: Node) -> str:
        """The fabric's interface towards a cloud CER's mgmt0."""
        return "apib" if self.second(node) else "api"

    def pair_preference(self, node: Node) -> int | None:
        """cer-control's capture.pair_preference (paired cloud sites only)."""
        return PAIR_PREFERENCE[node["wan_host"]] if self.paired(node["site"]) else None

    def node_by_name(self, name: str) -> Node | None:
        return next((n for n in self.nodes() if n["node"] == name), None)

    def load_state(self) -> LabState | None:
        """lab.json, and the running lab's transport and reflector unless given explicitly."""
        try:
            st: LabState = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return None
        if self.rr_opt is None:
            self.rr = st.get("rr", {}).get("kind", "cer")
        if self.track_wan_opt is None:
            self.track_wan = bool(st.get("track_wan", False))
        if self.rrs_opt is None:
            self.rr_count = int(st.get("rr_count", 1))
        if self.cloud_pairs_opt is None:
            self.cloud_pairs = bool(st.get("cloud_pairs", False))
        if self.extra_opt is None:
            self.extra = int(st.get("extra_endpoints", 0))
        if self.poll_mode_opt is None:
            self.poll_mode = st.get("poll_mode", "shared")
        if self.transport_opt is None:
            mode = st.get("transport_mode", "mixed")
            self.transport = None if mode == "mixed" else mode
        return st
