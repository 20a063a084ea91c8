"""The lab's network: its namespaces, veths, bridges, addresses and routes (`build_topology`).

Per site: on-prem is an L2 segment (LAN + VRRP link) with two CERs and a workload; each cloud is
a CER, a fabric namespace (the VPC router and the provider API) and a workload. Every CER and the
route reflector hang off one WAN router namespace.
"""

from __future__ import annotations

from .processes import ns_run, run
from .topology import API_ADDR, CLOUDS, REFLECTORS, SITE, Lab, Node, mac_for


def veth(a: str, ns_a: str, b: str, ns_b: str, mtu: int | None = None) -> None:
    run(["ip", "link", "add", a, "netns", ns_a, "type", "veth", "peer", "name", b, "netns", ns_b])
    if mtu:
        ns_run(ns_a, "ip", "link", "set", a, "mtu", str(mtu))
        ns_run(ns_b, "ip", "link", "set", b, "mtu", str(mtu))


def sysctl(ns: str, *kv: str) -> None:
    ns_run(ns, "sysctl", "-qw", *kv)


def subnet_end(ns: str, iface: str, router: str, first: bool, host: str) -> None:
    """The router's end (`router`, in a /24) of a veth to one host of a subnet that several veths
    share: the first carries the subnet itself, a later one the router's address as /32 and a host
    route to its one host. Brings the link up."""
    ns_run(ns, "ip", "addr", "add", f"{router}/{24 if first else 32}", "dev", iface)
    link_up(ns, iface)
    if not first:
        ns_run(ns, "ip", "route", "add", f"{host}/32", "dev", iface)


def link_up(ns: str, *ifs: str) -> None:
    for i in ifs:
        ns_run(ns, "ip", "link", "set", i, "up")


def dataplane_iface(ns: str, iface: str) -> None:
    # DPDK af_packet owns it: no IPv6 (the kernel would answer), link up.
    sysctl(ns, f"net.ipv6.conf.{iface}.disable_ipv6=1")
    link_up(ns, iface)


def workload_iface(ns: str, iface: str = "eth0") -> None:
    # veth leaves checksums to the "hardware"; a userspace router sees them unfinished.
    ns_run(ns, "ethtool", "-K", iface, "tx", "off")
    link_up(ns, iface)


def build_topology(lab: Lab) -> None:
    for ns in lab.all_namespaces():
        run(["ip", "netns", "add", ns])
        ns_run(ns, "ip", "link", "set", "lo", "up")
    wan = lab.ns("wan")
    sysctl(wan, "net.ipv4.ip_forward=1")
    # Route reflectors on the WAN: the first owns 100.64.0.0/24 at the WAN router; a second one
    # (--rrs 2) gets a host route on its own veth, the router's .254 on both.
    for role in lab.reflectors():
        ns = lab.ns(role)
        addr = REFLECTORS[role]
        veth(role, wan, "eth0", ns)
        subnet_end(wan, role, "100.64.0.254", role == "rr", addr)
        ns_run(ns, "ip", "addr", "add", f"{addr}/24", "dev", "eth0")
        workload_iface(ns)
        ns_run(ns, "ip", "route", "add", "default", "via", "100.64.0.254")

    # On-prem: the L2 segment (LAN + VRRP), its WAN segment, the workload.
    seg = lab.ns("opseg")
    ns_run(seg, "ip", "link", "add", "br0", "type", "bridge")
    link_up(seg, "br0")
    ns_run(wan, "ip", "link", "add", "opbr", "type", "bridge")
    ns_run(wan, "ip", "addr", "add", f"{lab.wan_gw('onprem')}/24", "dev", "opbr")
    link_up(wan, "opbr")
    wl = lab.ns("opwl")
    veth("wl", seg, "eth0", wl)
    ns_run(seg, "ip", "link", "set", "wl", "master", "br0")
    link_up(seg, "wl")
    # The on-prem /32s are addresses in the segment's /24: the first one added is the
    # primary and the rest secondaries, which Linux deletes with the primary unless told
    # to promote one (removing 10.77.60.10 must not take the others with it).
    sysctl(wl, "net.ipv4.conf.eth0.promote_secondaries=1")
    ns_run(wl, "ip", "addr", "add", f"{SITE['onprem']['ip']}/24", "dev", "eth0")
    batch_addresses(wl, "add", [f"{ip}/24" for ip in lab.extra_ips("onprem")])
    workload_iface(wl)
    for node in lab.nodes_of("onprem"):
        ns = lab.node_ns(node)
        t = node["tag"][-1]  # a / b
        veth(f"{t}lan", seg, "lan0", ns)
        veth(f"{t}ka", seg, "ka0", ns)
        for i in (f"{t}lan", f"{t}ka"):
            ns_run(seg, "ip", "link", "set", i, "master", "br0")
            link_up(seg, i)
        veth(f"op{t}", wan, "wan0", ns)
        ns_run(wan, "ip", "link", "set", f"op{t}", "master", "opbr")
        link_up(wan, f"op{t}")
        ns_run(ns, "ip", "addr", "add", f"192.168.77.{node['wan_host'] + 1}/24", "dev", "ka0")
        link_up(ns, "ka0")
        sysctl(ns, "net.ipv4.conf.ka0.arp_ignore=1")
        dataplane_iface(ns, "lan0")
        dataplane_iface(ns, "wan0")

    # Cloud sites: CER(s), fabric (VPC router + API), workload.
    for site in CLOUDS:
        tag = SITE[site]["tag"]
        mtu = SITE[site]["mtu"]
        fab, wl = lab.ns(tag + "fab"), lab.ns(tag + "wl")
        v = lab.vpc(site)
        sysctl(fab, "net.ipv4.ip_forward=1")
        sysctl(fab, "net.ipv4.conf.all.rp_filter=0")
        sysctl(fab, "net.ipv4.conf.default.rp_filter=0")
        for node in lab.nodes_of(site):
            cloud_cer(lab, node, mtu, v["gw"])
        veth("wl", fab, "eth0", wl, mtu)
        ns_run(wl, "ip", "link", "set", "eth0", "address", mac_for(site, 0x14))
        fabric_port(fab, "wl", v["gw"])
        ns_run(wl, "ip", "addr", "add", f"{v['wl']}/24", "dev", "eth0")
        ns_run(wl, "ip", "addr", "add", f"{SITE[site]['ip']}/32", "dev", "eth0")
        batch_addresses(wl, "add", [f"{ip}/32" for ip in lab.extra_ips(site)])
        workload_iface(wl)
        ns_run(wl, "ip", "route", "add", "default", "via", v["gw"], "dev", "eth0", "src", SITE[site]["ip"])
    ns_run(wan, "ip", "link", "set", "opbr", "mtu", "1500")


def batch_addresses(ns: str, verb: str, cidrs: list[str], dev: str = "eth0", check: bool = True) -> None:
    """`ip addr add|del` of every CIDR on DEV in NS, in one `ip -batch` (without `check`, an address
    already there or already gone does not stop the rest)."""
    if cidrs:
        cmds = "".join(f"addr {verb} {c} dev {dev}\n" for c in cidrs)
        run(["ip", "netns", "exec", ns, "ip", *([] if check else ["-force"]), "-batch", "-"], check=check, input=cmds)


def fabric_port(fab: str, iface: str, gw: str) -> None:
    # The VPC router answers ARP for every address it routes elsewhere (as a VPC does).
    ns_run(fab, "ip", "addr", "add", f"{gw}/32", "dev", iface)
    sysctl(fab, f"net.ipv4.conf.{iface}.proxy_arp=1", f"net.ipv4.neigh.{iface}.proxy_delay=0")
    sysctl(fab, f"net.ipv4.conf.{iface}.rp_filter=0")
    link_up(fab, iface)


def cloud_cer(lab: Lab, node: Node, mtu: int, gw: str) -> None:
    """A cloud CER's three links: wan0 to the WAN router (the interface there carries the node's
    tag), lan0 into the VPC fabric (its NIC's MAC), mgmt0 to the provider API (169.254.169.254).
    The first CER of a site owns the site's WAN /24 and the API's /24 at the other ends; a second
    one (--cloud-pairs) gets host routes on its own veths, the router's addresses on both."""
    site = node["site"]
    tag = SITE[site]["tag"]
    wan, fab, cer = lab.ns("wan"), lab.ns(tag + "fab"), lab.node_ns(node)
    first = not lab.second(node)
    w = node["tag"]
    veth(w, wan, "wan0", cer, mtu)
    subnet_end(wan, w, lab.wan_gw(site), first, lab.wan_addr(node))
    dataplane_iface(cer, "wan0")
    f = lab.fab_iface(node)
    veth(f, fab, "lan0", cer, mtu)
    ns_run(cer, "ip", "link", "set", "lan0", "address", lab.cer_mac(node))
    dataplane_iface(cer, "lan0")
    fabric_port(fab, f, gw)
    api = lab.api_iface(node)
    veth(api, fab, "mgmt0", cer)
    subnet_end(fab, api, API_ADDR, first, lab.mgmt_addr(node))
    ns_run(cer, "ip", "addr", "add", f"{lab.mgmt_addr(node)}/24", "dev", "mgmt0")
    link_up(cer, "mgmt0")
