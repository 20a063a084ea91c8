"""The provider fabric agent (`scripts/lab _fabric`), run inside a cloud site's fabric namespace:
the VPC router that delivers each /32 to the NIC the provider (emulator) says holds it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
import urllib.request
from typing import TypedDict


class FabricRoute(TypedDict):
    """A fabric agent's route for one /32: the fabric interface and the NIC behind it."""

    iface: str
    mac: str | None
    nic: str | None
    primary: bool


class FabricTable(TypedDict, total=False):
    generation: int | None
    updated_unix_ms: int
    routes: dict[str, FabricRoute]


def helper_fabric(argv: list[str]) -> int:
    """The provider fabric agent: routes each /32 to the NIC the emulator says holds it.

    Follows GET /_emulator/holders?since=G&wait_ms=N (long poll) and programs, in this (fabric)
    namespace, `ip route replace IP/32 dev IFACE` plus a permanent neighbor IP -> NIC MAC, removing
    what no NIC holds any more. Writes its table to --state after every change."""
    ap = argparse.ArgumentParser(prog="lab _fabric")
    ap.add_argument("--url", required=True)
    ap.add_argument("--map", action="append", default=[], help="NIC_ID=IFACE")
    ap.add_argument("--state", required=True)
    a = ap.parse_args(argv)
    nic_iface = dict(m.rsplit("=", 1) for m in a.map)
    installed: dict[str, FabricRoute] = {}  # ip -> the route to the NIC that holds it
    gen: int | None = None

    def ip_(*args: str) -> None:
        subprocess.run(["ip", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def save() -> None:
        tmp = a.state + ".tmp"
        with open(tmp, "w") as fh:
            json.dump({"generation": gen, "updated_unix_ms": int(time.time() * 1000), "routes": installed}, fh, indent=1)
        os.replace(tmp, a.state)

    print(f"fabric agent: following {a.url}/_emulator/holders for {nic_iface}", flush=True)
    save()
    while True:
        q = "" if gen is None else f"?since={gen}&wait_ms=20000"
        try:
            with urllib.request.urlopen(f"{a.url}/_emulator/holders{q}", timeout=30) as r:
                v = json.loads(r.read())
        except (OSError, ValueError) as e:
            print(f"fabric agent: emulator not answering ({e}); retrying", flush=True)
            time.sleep(0.5)
            continue
        if v.get("generation") == gen and gen is not None:
            continue
        gen = v.get("generation")
        want: dict[str, FabricRoute] = {}
        for h in v.get("holders", []):
            if h.get("attached") is False:
                continue  # a NIC detached from its instance: the VPC delivers its addresses nowhere
            iface = nic_iface.get(h.get("nic"))
            if iface:
                want[h["ip"]] = {"iface": iface, "mac": h.get("mac"), "nic": h.get("nic"), "primary": h.get("primary", False)}
        for ip, w in want.items():
            if installed.get(ip) != w:
                ip_("route", "replace", f"{ip}/32", "dev", w["iface"])
                old = installed.get(ip)
                if old and old["iface"] != w["iface"]:
                    ip_("neigh", "del", ip, "dev", old["iface"])
                if w["mac"]:
                    ip_("neigh", "replace", ip, "lladdr", w["mac"], "dev", w["iface"], "nud", "permanent")
                print(f"fabric agent: {time.time():.3f} gen {gen}: {ip} -> {w['nic']} ({w['iface']})", flush=True)
                installed[ip] = w
        for ip in [i for i in installed if i not in want]:
            old = installed.pop(ip)
            ip_("route", "del", f"{ip}/32", "dev", old["iface"])
            ip_("neigh", "del", ip, "dev", old["iface"])
            print(f"fabric agent: {time.time():.3f} gen {gen}: {ip} held by no NIC: route removed", flush=True)
        save()
