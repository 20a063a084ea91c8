"""Helpers the soak runs inside the lab's namespaces (as `scripts/lab _probe|_arp`): the UDP
prober of a workload and the ARP requester of the on-prem segment (the relay to a provider
emulator is `provider.helper_relay`).
"""

import argparse
import json
import os
import select
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

from .bounds import ARP_MS, PROBE_MS, PROBE_PORT


def local_pool_addrs(iface: str = "eth0") -> set[str]:
    out = subprocess.run(["ip", "-j", "-4", "addr", "show", "dev", iface], stdout=subprocess.PIPE, text=True).stdout
    try:
        v = json.loads(out)
    except ValueError:
        return set()
    return {a["local"] for i in v for a in i.get("addr_info", []) if a.get("local", "").startswith("10.77.60.")}


def helper_probe(argv: list[str]) -> int:
    """UDP prober of one workload namespace: sends from every pool /32 it holds to every peer
    every interval; receives on every /32 it holds, checks the source against the /32 the sender
    wrote, and records runs of consecutive received probes per (src, dst)."""
    ap = argparse.ArgumentParser(prog="lab _probe")
    ap.add_argument("--site", required=True)
    ap.add_argument("--peers", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--interval-ms", type=int, default=PROBE_MS)
    ap.add_argument("--port", type=int, default=PROBE_PORT)
    a = ap.parse_args(argv)
    out = Path(a.out)
    events = open(out / f"probe-{a.site}.events.jsonl", "a")
    state_path = out / f"probe-{a.site}.state.json"
    socks: dict[str, socket.socket] = {}  # ip -> socket
    runs: dict[tuple[str, str], list[int]] = {}  # (src, dst) -> [start slot, end slot]
    peers: list[str] = []
    peers_mtime = 0.0
    counters = {"sent": 0, "send_errors": 0, "received": 0, "bad_source": 0}
    stop = [False]
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
    last_cfg = last_state = 0.0
    next_send = time.time()

    def end_run(k: tuple[str, str]) -> None:
        s, d = k
        a0, b0 = runs.pop(k)
        events.write(json.dumps({"run": [s, d, a0, b0]}) + "\n")

    while not stop[0]:
        now = time.time()
        if now - last_cfg > 0.5:
            last_cfg = now
            try:
                m = os.stat(a.peers).st_mtime
                if m != peers_mtime:
                    peers = json.loads(Path(a.peers).read_text())["peers"]
                    peers_mtime = m
            except (OSError, ValueError):
                pass
            have = local_pool_addrs()
            for ip in list(socks):
                if ip not in have:
                    socks.pop(ip).close()
            for ip in have - set(socks):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.setsockopt(socket.SOL_IP, 15, 1)  # IP_FREEBIND
                try:
                    s.bind((ip, a.port))
                except OSError:
                    s.close()
                    continue
                s.setblocking(False)
                socks[ip] = s
        if now >= next_send:
            slot = int(now * 1000) // a.interval_ms
            for src, s in socks.items():
                for dst in peers:
                    if dst == src:
                        continue
                    try:
                        s.sendto(f"C1 {src} {dst} {slot}".encode(), (dst, a.port))
                        counters["sent"] += 1
                    except OSError:
                        counters["send_errors"] += 1
            next_send = (slot + 1) * a.interval_ms / 1000.0
        timeout = max(0.0, min(next_send - time.time(), 0.05))
        if socks:
            ready, _, _ = select.select(list(socks.values()), [], [], timeout)
        else:
            ready = []
            time.sleep(timeout)
        for s in ready:
            while True:
                try:
                    data, addr = s.recvfrom(256)
                except (BlockingIOError, OSError):
                    break
                try:
                    tag, src, dst, slot_s = data.decode().split()
                    slot = int(slot_s)
                except ValueError:
                    continue
                if tag != "C1":
                    continue
                counters["received"] += 1
                if addr[0] != src:
                    counters["bad_source"] += 1
                    events.write(
                        json.dumps({"bad_source": {"claimed": src, "seen": addr[0], "dst": dst, "slot": slot, "t": time.time()}}) + "\n"
                    )
                    events.flush()
                    continue
                k = (src, dst)
                cur = runs.get(k)
                if cur is None:
                    runs[k] = [slot, slot]
                elif cur[0] <= slot <= cur[1] + 1:
                    cur[1] = max(cur[1], slot)
                elif slot > cur[1] + 1:
                    end_run(k)
                    runs[k] = [slot, slot]
                else:
                    events.write(json.dumps({"run": [src, dst, slot, slot]}) + "\n")
        if time.time() - last_state > 0.25:
            last_state = time.time()
            events.flush()
            tmp = state_path.with_suffix(".tmp")
            tmp.write_text(
                json.dumps({"t": int(time.time() * 1000), "open": {f"{src}>{dst}": v for (src, dst), v in runs.items()}, **counters})
            )
            tmp.replace(state_path)
    for k in list(runs):
        end_run(k)
    events.close()
    return 0


def helper_arp(argv: list[str]) -> int:
    """Asks the on-prem segment who has every remote /32, every interval (broadcast ARP requests
    from the workload's pool address), so that every holder shows itself in the capture."""
    ap = argparse.ArgumentParser(prog="lab _arp")
    ap.add_argument("--peers", required=True)
    ap.add_argument("--iface", default="eth0")
    ap.add_argument("--interval-ms", type=int, default=ARP_MS)
    a = ap.parse_args(argv)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
    s.bind((a.iface, 0))
    mac = bytes.fromhex(Path(f"/sys/class/net/{a.iface}/address").read_text().strip().replace(":", ""))
    stop = [False]
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
    have, last = set(), 0.0
    while not stop[0]:
        if time.time() - last > 1.0:
            last = time.time()
            have = local_pool_addrs(a.iface)
            try:
                peers = json.loads(Path(a.peers).read_text())["peers"]
            except (OSError, ValueError):
                peers = []
        if have:
            spa = socket.inet_aton(sorted(have)[0])
            for ip in peers:
                if ip in have:
                    continue
                frame = (
                    b"\xff" * 6
                    + mac
                    + b"\x08\x06"
                    + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
                    + mac
                    + spa
                    + b"\x00" * 6
                    + socket.inet_aton(ip)
                )
                try:
                    s.send(frame)
                except OSError:
                    pass
        time.sleep(a.interval_ms / 1000.0)
    return 0
