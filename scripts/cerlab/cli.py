"""The command line of `scripts/lab`: argparse, the subcommands, and the helper entry points run
inside namespaces (`_fabric`, `_relay`; the chaos soak's `_probe`, `_arp`).
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable

from . import actions, hardfail, lifecycle
from .chaos.probes import helper_arp, helper_probe
from .fabric import helper_fabric
from .messages import LabError
from .provider import helper_relay
from .topology import TRANSPORTS, Lab

USAGE = """The CER four-site lab: on-prem, AWS, Azure and OCI on one machine, in network namespaces.

  scripts/lab [--name NAME] [--transport T] [--rr cer|frr|gobgp] [--rrs 1|2] [--track-wan] [--cloud-pairs]
              [--endpoints N] [--poll-mode shared|adaptive|busy] up
  scripts/lab [--name NAME] down | status
  scripts/lab [--name NAME] move IP SITE       move a /32 (its workload address) to SITE
  scripts/lab [--name NAME] mass-move [--count K] [--json FILE]
                                               move K of the --endpoints /32s at once, each to the next site
                                               (onprem->aws->azure->oci->onprem), then check every capture invariant
  scripts/lab [--name NAME] fail SITE|NODE     kill SITE's CER (on-prem: the VRRP master's node; a paired cloud
                                               site: its active capturer)
  scripts/lab [--name NAME] heal SITE|NODE     thaw, reconnect and restart whatever of SITE is frozen, cut or dead
  scripts/lab [--name NAME] freeze SITE|NODE   SIGSTOP every process of the node(s) (onprem: the VRRP master;
                                               a paired cloud site: its active capturer; rr / rr2: a reflector)
  scripts/lab [--name NAME] thaw [SITE|NODE]   SIGCONT what freeze stopped
  scripts/lab [--name NAME] cut SITE|NODE      the node's WAN link down at the WAN router
  scripts/lab [--name NAME] exec SITE -- CMD   run CMD in SITE's workload namespace
  scripts/lab [--name NAME] chaos --seed S --minutes M [--out DIR] [--kinds K,...]
                                               seeded chaos soak on the running lab (scripts/cerlab/chaos)

SITE is onprem, aws, azure or oci; NODE one CER: onprem-a, onprem-b, and with --cloud-pairs aws-a,
aws-b, azure-a, azure-b, oci-a, oci-b (without it a cloud site's one CER is named like the site).
At a site with two CERs, SITE names the one a failure hurts (fail, freeze, cut): on-prem the VRRP
master, a paired cloud site its active capturer (cer-control's `capture` pair.role); thaw and heal
SITE take every CER of the site.
Needs root. `up` runs scripts/bootstrap when system packages are missing, builds the workspace
with scripts/build (release binaries and tests, the build scripts/test uses, with cargo's progress;
CER_LAB_BIN_DIR=DIR uses binaries already built there), is idempotent (a running lab is reported, a broken one repaired),
and prints where each /32 lives. `down` stops every process the
lab started (by PID from its run dir) and removes its namespaces, run dir and DPDK runtime dirs,
also after a partial `up`.

Topology (pool 10.77.60.0/24; AS 65000; every name below is prefixed with NAME-):

                              rr 100.64.0.1 (cer-control as reflector; --rr frr: FRR + bfdd; --rr gobgp: gobgpd)
                              rr2 100.64.0.2 (--rrs 2: a second reflector of the same kind)
                                    |
        +-------------------------- wan (kernel router, x.x.x.254) --------------------------+
        | 100.64.10.0/24 mtu 1500   | 100.64.11.0/24 mtu 9001 | 100.64.12.0/24 mtu 1500 | 100.64.13.0/24 mtu 9000
   opa .1      opb .2           aws .1                    az .1                     oci .1     CERs (DPDK)
   |  ka0 VRRP  |               | lan  | mgmt0 (API)       |                         |
   opseg: L2 bridge             awsfab: VPC router + emulator + fabric agent   (azfab, ocifab alike)
   |                            |
   opwl 10.77.60.10/24          awswl 10.77.11.20/24 + 10.77.60.11/32, default via 10.77.11.1
                                (azure: 10.77.12.x, .12; oci: 10.77.13.x, .13)

- On-prem: two CERs (onprem-a, onprem-b) with cer-control in capture mode "onprem", gated by
  keepalived VRRP (instance VI_LAB on ka0, a: priority 150, b: 100) through notify_fifo; the
  master's dataplane proxy-ARPs the remote /32s on the LAN. Both advertise 10.77.60.10.
- Cloud sites: one CER each (--cloud-pairs: two, below), cer-control in capture mode aws / azure / oci against its own
  cer-cloud-emulator (http://169.254.169.254, in the fabric namespace, reached over the CER's
  management NIC mgmt0). The fabric namespace is the VPC router: a fabric agent follows the
  emulator's /_emulator/holders long poll and routes each /32 to the NIC that holds it (static
  neighbor = the NIC's MAC; proxy ARP as a VPC does). The workload's default gateway is the fabric
  and never changes; capture moves the /32 to the CER's NIC and the fabric follows.
- --cloud-pairs: a second CER per cloud site (aws-b 100.64.11.2, VPC 10.77.11.11, fabric port cerb,
  mgmt0 169.254.169.11; azure-b, oci-b alike; identities 65000:1006/1007/1008), the first one named
  SITE-a. Both advertise the site's /32; cer-control elects the active capturer from BGP (markers
  + capture.pair_preference: 200 on SITE-a, 100 on SITE-b); the standby captures nothing. Every
  CER has a tunnel to each CER at the other sites. AWS CERs then find their ENI through IMDS,
  which the emulator answers per caller address (its seed's imds_clients).
- BGP: each CER peers with the route reflector over its WAN exception TAP (the linux-cp model).
- Transports (default, so that one lab exercises all five; --transport T forces one):
      onprem-aws wireguard, onprem-azure gre (key 77), onprem-oci ipip,
      aws-azure fou, aws-oci gue, azure-oci wireguard
  Tunnel MTU = min(WAN MTU of both sites) - overhead (ipip 20, gre+key 28, fou 28, gue 32, wg 60).

State: /run/cer-lab/NAME/lab.json (documented in README "## The four-site lab"):
  name, run_dir, pool, asn, transport_mode, rr {kind, netns, address}, rr_count, cloud_pairs,
  reflectors[] {role, netns, address, control_socket},
  wan {netns, router},
  sites.SITE {capture, netns {cers, workload, fabric}, workload_ip, workload_iface, gateway,
              lan_mtu, wan_mtu, emulator {url, netns} (clouds), cers[] {node, netns,
              transport_address, router_id, identity, tunnel_id, control_socket,
              dataplane_socket, cerctl + cerctl_suffix, cerctl_dataplane, wan_gateway,
              capture_points, logs, nic, vpc_address, fabric_iface, mgmt_address (clouds),
              pair_preference (--cloud-pairs)}},
  pairs["a-b"] {sites, transport, tunnel_mtu, wan_mtu}, endpoints {ip: site}, bins {...}.
"""

# Helpers started inside the lab's namespaces as `scripts/lab _NAME ARGS...` (no argparse of the lab).
HELPERS: dict[str, Callable[[list[str]], int]] = {
    "_fabric": helper_fabric,
    "_probe": helper_probe,
    "_arp": helper_arp,
    "_relay": helper_relay,
}


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    if argv and argv[0] in HELPERS:
        return HELPERS[argv[0]](argv[1:])
    ap = argparse.ArgumentParser(
        prog="scripts/lab",
        description=USAGE.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=USAGE.split("\n", 1)[1],
    )
    ap.add_argument(
        "--name", default="cerlab", help="lab name (default cerlab): prefixes every namespace, the run dir and DPDK file prefixes"
    )
    ap.add_argument("--transport", choices=TRANSPORTS, help="one transport for every site pair (default: the mixed table below)")
    ap.add_argument(
        "--rr",
        choices=["gobgp", "cer", "frr"],
        help="route reflector: cer-control with route_reflector = true (default), FRR bgpd + bfdd (both with BFD), or gobgpd (no BFD)",
    )
    ap.add_argument(
        "--rrs",
        type=int,
        choices=[1, 2],
        help="route reflectors (default 1): with 2, every CER is a client of both (rr, rr2), and one can be frozen or restarted",
    )
    ap.add_argument(
        "--cloud-pairs",
        action="store_true",
        default=None,
        help="two CERs per cloud site (SITE-a, SITE-b); cer-control elects the active capturer from BGP",
    )
    ap.add_argument(
        "--endpoints",
        type=int,
        metavar="N",
        help="N more pool /32s per site (0-60; for mass moves: `mass-move`); the cloud CERs and workloads get the NICs they need",
    )
    ap.add_argument(
        "--track-wan",
        action="store_true",
        default=None,
        help="keepalived tracks each on-prem CER's WAN (cer-control's vrrp_track_file): a cut master goes to FAULT",
    )
    ap.add_argument(
        "--poll-mode",
        choices=["shared", "adaptive", "busy"],
        help="the dataplanes' poll_mode (default shared: five dataplanes share the machine's CPUs; README \"Poll modes\")",
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("up", help="build and start the lab (idempotent)")
    sub.add_parser("down", help="stop and remove everything the lab made")
    sub.add_parser("status", help="processes, BGP sessions, owners")
    m = sub.add_parser("move", help="move a /32 (endpoint + workload address) to SITE; a new pool address is added")
    m.add_argument("ip")
    m.add_argument("site")
    mm = sub.add_parser("mass-move", help="move many --endpoints /32s at once, each to the next site, and check every capture invariant")
    mm.add_argument("--count", type=int, default=200, help="how many (default 200; taken from every site in turn)")
    mm.add_argument("--json", help="write the report (timings, API calls, holders, fencing, reachability) here")
    mm.add_argument("--timeout", type=float, default=180, help="seconds for the operators and for convergence (default 180)")
    f = sub.add_parser("fail", help="kill SITE's CER (on-prem: the VRRP master's node)")
    f.add_argument("site")
    h = sub.add_parser("heal", help="thaw, reconnect and restart what is frozen, cut or dead at SITE")
    h.add_argument("site")
    fr = sub.add_parser("freeze", help="SIGSTOP every process of SITE's CERs or of one NODE (onprem: the VRRP master)")
    fr.add_argument("site")
    th = sub.add_parser("thaw", help="SIGCONT what freeze stopped (all, or SITE/NODE)")
    th.add_argument("site", nargs="?")
    cu = sub.add_parser("cut", help="take SITE's (or NODE's) WAN link down at the WAN router; heal restores it")
    cu.add_argument("site")
    c = sub.add_parser("chaos", help="seeded chaos soak on the running lab with invariant checks (scripts/cerlab/chaos)")
    c.add_argument("--seed", type=int, required=True, help="the schedule is drawn from it (printed at start)")
    c.add_argument("--minutes", type=float, required=True)
    c.add_argument("--out", help="report and evidence directory (default /var/tmp/cer-chaos/NAME-seedS-TIME)")
    c.add_argument("--kinds", help="only these operation kinds (comma separated; default all)")
    e = sub.add_parser("exec", help="run CMD in SITE's workload namespace")
    e.add_argument("site")
    e.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args(argv)
    try:
        lab = Lab(a.name, a.transport, a.rr, a.track_wan, a.rrs, a.cloud_pairs, a.endpoints, a.poll_mode)
        if a.cmd == "up":
            return lifecycle.cmd_up(lab)
        if a.cmd == "down":
            return lifecycle.cmd_down(lab)
        if a.cmd == "status":
            return lifecycle.cmd_status(lab)
        if a.cmd == "move":
            return actions.cmd_move(lab, a.ip, a.site)
        if a.cmd == "mass-move":
            from .massmove import cmd_mass_move

            return cmd_mass_move(lab, a.count, a.json, a.timeout)
        if a.cmd == "fail":
            return actions.cmd_fail(lab, a.site)
        if a.cmd == "heal":
            return actions.cmd_heal(lab, a.site)
        if a.cmd in ("freeze", "thaw", "cut"):
            state = actions.need_state(lab)
            if a.cmd == "freeze":
                return hardfail.cmd_freeze(lab, state, a.site)
            if a.cmd == "thaw":
                return hardfail.cmd_thaw(lab, state, a.site)
            return hardfail.cmd_cut(lab, state, a.site)
        if a.cmd == "chaos":
            from .chaos.soak import cmd_chaos

            return cmd_chaos(lab, a.seed, a.minutes, a.out, a.kinds)
        if a.cmd == "exec":
            cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
            return actions.cmd_exec(lab, a.site, cmd)
    except LabError as err:
        print(f"scripts/lab: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("scripts/lab: interrupted", file=sys.stderr)
        return 130
    return 2
