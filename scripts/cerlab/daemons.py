"""Starting the lab's daemons, each recorded by PID (`Lab.spawn`): the provider emulators and
fabric agents, the route reflector (gobgpd, cer-control or FRR with bfdd), and per CER node cer-dataplane,
cer-control and (on-prem) keepalived; `start_node` restarts whatever of a node is dead.
Also what `up` needs first: `preflight` (root, system packages) and `build` (the binaries).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from .config import emulator_seed, rr_cer_config, rr_frr_configs, rr_gobgp_config
from .messages import die, log
from .processes import ns_run, remove_stale_pid_file, run, wait_until
from .topology import API_ADDR, BINS, CLOUDS, LAB_SCRIPT, PY, ROOT, SITE, Lab, Node
from .views import admin_query

REQUIRED = {
    "ip": "iproute2",
    "ethtool": "ethtool",
    "nft": "nftables",
    "ping": "iputils-ping",
    "keepalived": "keepalived",
    "wg": "wireguard-tools",
    "openssl": "openssl",
}


def preflight(lab: Lab) -> None:
    if os.geteuid() != 0:
        die("needs root (network namespaces, DPDK af_packet, keepalived): sudo scripts/lab up")
    need = dict(REQUIRED)
    if lab.rr == "gobgp":
        need.update({"gobgpd": "gobgpd", "gobgp": "gobgpd"})
    if lab.rr == "frr":
        need.update({f"{FRR_DIR}/{d}": "frr" for d in ("zebra", "bfdd", "bgpd")} | {"vtysh": "frr"})

    def missing() -> list[str]:
        m = [f"{c} ({p})" for c, p in need.items() if not shutil.which(c)]
        if not os.path.exists(PY):
            m.append(f"{PY} (python3)")
        return m

    if missing():
        # A fresh machine: install the system packages as scripts/test does.
        log(f"missing {', '.join(missing())}: running scripts/bootstrap")
        if subprocess.run([str(ROOT / "scripts" / "bootstrap")]).returncode != 0 or missing():
            die(f"missing: {', '.join(missing()) or 'see above'}; scripts/bootstrap (as root) installs the system packages")


def build(lab: Lab) -> None:
    if os.environ.get("CER_LAB_BIN_DIR"):
        missing = [b for b in BINS if not os.access(lab.bin(b), os.X_OK)]
        if missing:
            die(f"CER_LAB_BIN_DIR={lab.bin_dir} lacks {', '.join(missing)}")
        return
    cargo = shutil.which("cargo") or (
        os.path.expanduser("~/.cargo/bin/cargo") if os.path.exists(os.path.expanduser("~/.cargo/bin/cargo")) else None
    )
    if not cargo:
        if all(os.access(lab.bin(b), os.X_OK) for b in BINS):
            log(f"cargo not found; using the binaries in {lab.bin_dir} as they are")
            return
        die("cargo not found: install Rust (https://rustup.rs), then scripts/bootstrap for the system packages")
    log(
        "building the workspace with scripts/build (release binaries and tests: the same build scripts/test uses, "
        "so the second README command finds it done; cargo's progress follows; a no-op when up to date)"
    )
    t0 = time.time()
    p = subprocess.run([str(ROOT / "scripts" / "build")], cwd=ROOT, env={**os.environ, "CARGO": cargo})
    if p.returncode != 0:
        die("cargo build failed (see above); scripts/bootstrap installs DPDK, clang and the other build packages")
    log(f"build done in {time.time() - t0:.0f}s")


def start_emulator(lab: Lab, site: str) -> str:
    tag = SITE[site]["tag"]
    seed = lab.f(f"{tag}-emulator-seed.toml")
    seed.write_text(emulator_seed(lab, site))
    key = f"{tag}-emu"
    lab.spawn(key, lab.ns(tag + "fab"), [lab.bin("cer-cloud-emulator"), "--listen", f"{API_ADDR}:80", "--state", str(seed)])
    return key


def start_fabric_agent(lab: Lab, site: str) -> str:
    tag = SITE[site]["tag"]
    key = f"{tag}-fabric"
    # Every NIC of the VPC and the fabric interface behind it: the CER(s), the workload.
    maps = [a for n in lab.nodes_of(site) for nic in lab.cer_nics(n) for a in ("--map", f"{nic}={lab.fab_iface(n)}")]
    lab.spawn(
        key,
        lab.ns(tag + "fab"),
        [
            PY,
            str(LAB_SCRIPT),
            "_fabric",
            "--url",
            f"http://{API_ADDR}",
            *maps,
            *(a for nic in lab.wl_nics(site) for a in ("--map", f"{nic}=wl")),
            "--state",
            str(lab.f(f"{tag}-fabric.json")),
        ],
        expect=LAB_SCRIPT.name,
    )
    return key


def start_dataplane(lab: Lab, node: Node) -> str:
    key = f"{node['tag']}-dp"
    cfg = lab.f(f"{node['tag']}-dataplane.toml")
    lab.spawn(key, lab.node_ns(node), [lab.bin("cer-dataplane"), "--config", str(cfg)])
    return key


def after_dataplane(lab: Lab, node: Node) -> None:
    # The kernel of the router namespace reaches the WAN (BGP to the reflector) over the exception TAP.
    ns_run(lab.node_ns(node), "ip", "route", "replace", "default", "via", lab.wan_gw(node["site"]), "dev", "wantap")


def control_env(lab: Lab, node: Node) -> dict[str, str]:
    env = {"RUST_LOG": os.environ.get("RUST_LOG", "info")}
    if node["site"] == "aws":
        # Credentials for the SDK's standard chain (the emulator checks the signature's shape);
        # nothing from the host's AWS configuration.
        env.update(
            {
                "AWS_ACCESS_KEY_ID": "AKIDCERLAB",
                "AWS_SECRET_ACCESS_KEY": "cer-lab-secret",
                "AWS_SHARED_CREDENTIALS_FILE": str(lab.f("aws-none")),
                "AWS_CONFIG_FILE": str(lab.f("aws-none")),
                "AWS_EC2_METADATA_SERVICE_ENDPOINT": f"http://{API_ADDR}",
            }
        )
    return env


def start_control(lab: Lab, node: Node) -> str:
    key = f"{node['tag']}-ctl"
    cfg = lab.f(f"{node['tag']}-control.toml")
    lab.spawn(key, lab.node_ns(node), [lab.bin("cer-control"), "--config", str(cfg)], env=control_env(lab, node))
    return key


def start_keepalived(lab: Lab, node: Node) -> str:
    tag = node["tag"]
    key = f"{tag}-ka"
    tmp = lab.f(f"{tag}-katmp")
    tmp.mkdir(exist_ok=True)
    # keepalived does not start while its pid files name a process that exists, and a zombie
    # exists: the VRRP child of a SIGKILLed keepalived stays one until PID 1 reaps it, so a heal
    # right after a fail would leave the node without keepalived.
    for pid_file in (lab.f(f"{tag}-ka.pid"), lab.f(f"{tag}-ka-vrrp.pid")):
        remove_stale_pid_file(pid_file, "keepalived")
    lab.spawn(
        key,
        lab.node_ns(node),
        [
            "keepalived",
            "-n",
            "-l",
            "-D",
            "-P",
            "-f",
            str(lab.f(f"{tag}-keepalived.conf")),
            "-p",
            str(lab.f(f"{tag}-ka.pid")),
            "-r",
            str(lab.f(f"{tag}-ka-vrrp.pid")),
        ],
        env={"TMPDIR": str(tmp)},
    )
    return key


def start_rr(lab: Lab, role: str = "rr") -> None:
    """The reflector `role` ("rr", or "rr2" with --rrs 2), of the lab's kind."""
    ns = lab.ns(role)
    if lab.rr == "gobgp":
        cfg = lab.f(f"{role}-gobgpd.toml")
        cfg.write_text(rr_gobgp_config(lab, role))
        lab.spawn(role, ns, ["gobgpd", "-f", str(cfg), "-p", "--api-hosts=127.0.0.1:50051", "--pprof-disable"])
    elif lab.rr == "frr":
        start_rr_frr(lab, role)
    else:
        cfg = lab.f(f"{role}-control.toml")
        cfg.write_text(rr_cer_config(lab, role))
        lab.spawn(role, ns, [lab.bin("cer-control"), "--config", str(cfg)], env={"RUST_LOG": "info"})
        lab.wait_log(role, "cer-control: ready", 15)


FRR_DIR = "/usr/lib/frr"


def rr_frr_dir(lab: Lab, role: str = "rr") -> Path:
    return lab.f(f"{role}-frr")


def rr_keys(lab: Lab, role: str) -> list[str]:
    """The process keys of one reflector: FRR's bgpd is the role itself, zebra and bfdd beside it."""
    return [role] + ([f"{role}-bfdd", f"{role}-zebra"] if lab.rr == "frr" else [])


def start_rr_frr(lab: Lab, role: str = "rr") -> None:
    """zebra, then bfdd and bgpd (keys ROLE-zebra, ROLE-bfdd, ROLE), whichever is not running, with
    their sockets and configs in ROLE-frr/ (owned by user frr, which the daemons drop to)."""
    ns = lab.ns(role)
    d = rr_frr_dir(lab, role)
    d.mkdir(parents=True, exist_ok=True)
    for name, text in rr_frr_configs(lab, role).items():
        (d / name).write_text(text)
    run(["chown", "-R", "frr:frr", str(d)])
    for a in d.parents:
        if a == Path("/"):
            break
        os.chmod(a, os.stat(a).st_mode | 0o001)

    def daemon(key: str, name: str) -> None:
        if lab.alive(key):
            return
        lab.stop(key)
        argv = [f"{FRR_DIR}/{name}", "-f", str(d / f"{name}.conf"), "-i", str(d / f"{name}.pid"), "-z", str(d / "zserv.api")]
        argv += ["--vty_socket", str(d), "-P", "0", "-u", "frr", "-g", "frr", "--log", "stdout"]
        lab.spawn(key, ns, argv)

    daemon(f"{role}-zebra", "zebra")
    wait_until("FRR zebra's zserv.api", 15, lambda: (d / "zserv.api").exists())
    daemon(f"{role}-bfdd", "bfdd")
    daemon(role, "bgpd")
    wait_until("FRR bgpd answering vtysh", 15, lambda: vtysh_rr(lab, "show bgp summary json", check=False, role=role).returncode == 0)


def vtysh_rr(lab: Lab, cmd: str, check: bool = True, role: str = "rr") -> subprocess.CompletedProcess[str]:
    """`vtysh -c CMD` against one of the lab's FRR reflectors."""
    return ns_run(lab.ns(role), "vtysh", "--vty_socket", str(rr_frr_dir(lab, role)), "-c", cmd, check=check)


def start_node(lab: Lab, node: Node, endpoints: dict[str, str] | None = None) -> None:
    """Dataplane, TAP route, cer-control (+ keepalived on-prem): whatever of the node is not running.
    With `endpoints`, a restarted cer-control stops advertising what moved away while it was down
    (its state file still lists it)."""
    tag = node["tag"]
    if not lab.alive(f"{tag}-dp"):
        lab.stop(f"{tag}-dp")
        start_dataplane(lab, node)
        lab.wait_log(f"{tag}-dp", "cer-dataplane: ready", 30)
    after_dataplane(lab, node)
    if not lab.alive(f"{tag}-ctl"):
        lab.stop(f"{tag}-ctl")
        start_control(lab, node)
        lab.wait_log(f"{tag}-ctl", "cer-control: ready", 20)
        if endpoints is not None:
            try:
                saved = json.loads(lab.f(f"{tag}-endpoints.json").read_text()).get("endpoints", [])
            except (OSError, ValueError):
                saved = []
            for e in saved:
                if endpoints.get(e.get("ip")) != node["site"]:
                    log(f"{node['node']}: {e.get('ip')} moved away while it was down: endpoint remove")
                    ctl(lab, node, "endpoint", "remove", e["ip"])
    if node["site"] == "onprem" and not lab.alive(f"{tag}-ka"):
        lab.stop(f"{tag}-ka")
        start_keepalived(lab, node)


def ctl(lab: Lab, node: Node, *args: str, check: bool = True) -> str:
    p = run([lab.bin("cerctl"), *args, "--socket", str(lab.ctl_sock(node))], check=check)
    return p.stdout


def endpoint_op(lab: Lab, node: Node, op: str, ip: str) -> None:
    """`cerctl endpoint add|move|remove IP` on NODE, straight on its admin socket (a mass move
    makes hundreds of them)."""
    admin_query(lab.ctl_sock(node), f"endpoint_{op}", ip=ip)


def process_keys(lab: Lab) -> list[str]:
    keys = [k for role in lab.reflectors() for k in rr_keys(lab, role)]
    for site in CLOUDS:
        t = SITE[site]["tag"]
        keys += [f"{t}-emu", f"{t}-fabric"]
    for n in lab.nodes():
        keys += [f"{n['tag']}-dp", f"{n['tag']}-ctl"] + ([f"{n['tag']}-ka"] if n["site"] == "onprem" else [])
    return keys
