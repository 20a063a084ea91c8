"""The report of perf/run-lab: reads what the runner measured (its environment and $TMP) and writes
perf/reports/<date>-lab.{md,json} and <date>-lab-{throughput,latency-idle,latency-load,cpu}.svg.
Every figure comes from a file the runner wrote in this run; nothing is estimated here."""

import json
import math
import os
import statistics

e = os.environ
TMP, OUT, DATE = e["TMP"], e["OUT"], e["DATE"]
# The lab dataplanes' poll_mode; a mode other than the lab's default names its own files.
POLL_MODE = e.get("POLL_MODE", "shared")
REPORT = f"{DATE}-lab" + ("" if POLL_MODE == "shared" else f"-{POLL_MODE}")
TICK = float(e["TICK"])
TRANSPORTS = e["TRANSPORTS"].split(",")
records = [json.loads(line) for line in open(e["RESULTS"]) if line.strip()]


def load(path):
    with open(path) as fh:
        return json.load(fh)


def stat_delta(r):
    b0, s0, t0 = (int(x) for x in r["stat0"].split())
    b1, s1, t1 = (int(x) for x in r["stat1"].split())
    return (b1 - b0) / TICK, (s1 - s0) / TICK, (t1 - t0) / TICK


def summarize(label):
    idle = [r for r in records if r["label"] == label and r["phase"] == "idle"]
    loads = [r for r in records if r["label"] == label and r["phase"] == "load"]
    if not loads:
        return None
    runs = []
    for r in loads:
        ip = load(r["iperf"])
        if "error" in ip:
            raise SystemExit(f"{label}: iperf3 error: {ip['error']}")
        end = ip["end"]
        wall = r["t1"] - r["t0"]
        busy, softirq, total = stat_delta(r)
        runs.append(
            {
                "repeat": r["repeat"],
                "receiver_gbps": end["sum_received"]["bits_per_second"] / 1e9,
                "sender_gbps": end["sum_sent"]["bits_per_second"] / 1e9,
                "received_bytes": end["sum_received"]["bytes"],
                "iperf3_seconds": end["sum_received"]["seconds"],
                "retransmits": end["sum_sent"].get("retransmits"),
                "wall_seconds": wall,
                "forwarder_cpu_seconds": r["fwd_ticks"] / TICK,
                "all_dataplanes_cpu_seconds": r["all_dp_ticks"] / TICK,
                "machine_busy_cpu_seconds": busy,
                "machine_softirq_cpu_seconds": softirq,
                "machine_cpu_seconds_available": total,
                "loadavg_after": r["loadavg"],
            }
        )
    gbits = sum(x["received_bytes"] * 8 / 1e9 for x in runs)
    wall = sum(x["wall_seconds"] for x in runs)
    i = idle[0]
    iwall = i["t1"] - i["t0"]
    ibusy, isoft, _ = stat_delta(i)
    bg_cores = ibusy / iwall
    fwd_cpu = sum(x["forwarder_cpu_seconds"] for x in runs)
    busy = sum(x["machine_busy_cpu_seconds"] for x in runs)
    gbps = [x["receiver_gbps"] for x in runs]
    return {
        "forwarder": loads[0]["kind"],
        "runs": runs,
        "receiver_gbps_median": statistics.median(gbps),
        "receiver_gbps_min": min(gbps),
        "receiver_gbps_max": max(gbps),
        "retransmits_total": sum(x["retransmits"] or 0 for x in runs),
        "gbit_transferred": gbits,
        "transfer_wall_seconds": wall,
        # CPU seconds per Gbit moved = cores busy per Gbps of goodput.
        "forwarder_cores_per_gbps": fwd_cpu / gbits if loads[0]["kind"] != "kernel-routing" else None,
        "forwarder_cores_busy": fwd_cpu / wall,
        "all_dataplanes_cores_per_gbps": sum(x["all_dataplanes_cpu_seconds"] for x in runs) / gbits,
        "machine_busy_cores_per_gbps": busy / gbits,
        "machine_busy_cores": busy / wall,
        "machine_softirq_cores": sum(x["machine_softirq_cpu_seconds"] for x in runs) / wall,
        "idle_phase": {
            "seconds": iwall,
            "forwarder_cores_busy": i["fwd_ticks"] / TICK / iwall,
            "all_dataplanes_cores_busy": i["all_dp_ticks"] / TICK / iwall,
            "machine_busy_cores": bg_cores,
            "machine_softirq_cores": isoft / iwall,
        },
        "latency_idle": load(f"{TMP}/{label}-idle-hist.json"),
        "latency_load": load(f"{TMP}/{label}-load-hist.json"),
    }


def dp_deltas(label):
    """Per path dataplane: port hw statistics and drop counters, after minus before the measurement."""
    out = {}
    for site in ("aws", "azure"):
        paths = [f"{TMP}/{label}-{site}-{k}-{n}.json" for k in ("ports", "counters") for n in (0, 1)]
        if not all(os.path.exists(p) for p in paths):
            return None
        p0, p1, c0, c1 = (load(p) for p in paths)
        ports = {}
        before = {p["name"]: p["hw"] for p in p0}
        for p in p1:
            b = before.get(p["name"], {})
            ports[p["name"]] = {k: v - b.get(k, 0) for k, v in p["hw"].items()}
            ports[p["name"]]["mtu"] = p.get("mtu")

        def drops(cs):
            d = {}
            for lc in cs:
                for k, v in lc.get("drops", {}).items():
                    d[k] = d.get(k, 0) + v
            return d

        d0, d1 = drops(c0), drops(c1)
        out[site] = {"ports": ports, "drops": {k: v - d0.get(k, 0) for k, v in d1.items() if v - d0.get(k, 0)}}
    return out


def link_drops(label):
    """Interfaces on the path whose drop/error counters moved during the measurement: {ns/iface: {counter: n}}."""
    try:
        a, b = load(f"{TMP}/{label}-links-0.json"), load(f"{TMP}/{label}-links-1.json")
    except OSError:
        return None
    out = {}
    for ns, links in b.items():
        before = {l["ifname"]: l.get("stats64", {}) for l in a.get(ns, [])}
        for l in links:
            s0, s1 = before.get(l["ifname"], {}), l.get("stats64", {})
            moved = {}
            for d in ("rx", "tx"):
                for k, v in s1.get(d, {}).items():
                    if k in ("bytes", "packets", "multicast"):
                        continue
                    delta = v - s0.get(d, {}).get(k, 0)
                    if delta:
                        moved[f"{d}_{k}"] = delta
            if moved:
                out[f"{ns}/{l['ifname']}"] = moved
    return out


results = {}
for t in TRANSPORTS:
    lab = load(f"{TMP}/{t}-lab.json")
    pinned = open(f"{TMP}/{t}-pinned").read().strip() if os.path.exists(f"{TMP}/{t}-pinned") else ""
    results[t] = {
        "lab": lab,
        "cer": summarize(f"{t}-cer"),
        "kernel": summarize(f"{t}-kernel"),
        "cer_dataplane_counters": dp_deltas(f"{t}-cer"),
        "link_drops": {"cer": link_drops(f"{t}-cer"), "kernel": link_drops(f"{t}-kernel")},
        "kernel_mtus": load(f"{TMP}/{t}-mtus.json") if os.path.exists(f"{TMP}/{t}-mtus.json") else None,
        "fabric_routes_pinned_for_kernel": pinned,
    }

inmem = {}
if e.get("INMEM") == "1":
    inmem = {
        "forward_command": e["FWD_CMD"],
        "forward": load(f"{TMP}/forward.json"),
        "forward_table": open(f"{TMP}/forward.txt").read().rstrip(),
        "transports_command": e["TR_CMD"],
        "transports": load(f"{TMP}/transports.json"),
        "transports_table": open(f"{TMP}/transports.txt").read().rstrip(),
    }

wall_total = float(e["T_END"]) - float(e["T_START"])
command = "perf/run-lab" + (f" {e['ARGS']}" if e["ARGS"] else "")
report = {
    "date": DATE,
    "command": command,
    "machine": e["MACHINE"],
    "versions": e["VERSIONS"],
    "git": e["GIT"],
    "load_average_at_start": e["LOAD_START"],
    "load_average_at_end": e["LOAD_END"],
    "other_cer_dataplanes_at_start": int(e["OTHER_DP_START"]),
    "other_cer_dataplanes_at_end": int(e["OTHER_DP_END"]),
    "top_at_start": e["TOP_START"],
    "top_at_end": e["TOP_END"],
    "run_seconds": wall_total,
    "build_seconds": int(e["BUILD_SECS"]),
    "size": e["SIZE"],
    "repeat": int(e["REPEAT"]),
    "idle_probes": int(e["IDLE_PROBES"]),
    "probe_interval_us": int(e["INTERVAL_US"]),
    "poll_mode": POLL_MODE,
    "path": "aws workload 10.77.60.11 -> aws fabric -> aws CER -> WAN router -> azure CER -> azure fabric -> azure workload 10.77.60.12",
    "transports": results,
    "in_memory": inmem,
}
base = f"{OUT}/{REPORT}"
json.dump(report, open(f"{base}.json", "w"), indent=2)


# ---------------------------------------------------------------- plots (plain SVG)

COL = {"cer": "#1f77b4", "kernel": "#ff7f0e"}
TCOL = {"wireguard": "#1f77b4", "ipip": "#2ca02c", "gre": "#d62728", "fou": "#9467bd", "gue": "#8c564b"}


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;")


def bars(title, ylabel, cats, series, path, whiskers=None, fmt="{:.2f}"):
    """Grouped bars; series = [(name, color, [value or None per cat])]; whiskers[name] = [(lo, hi)]."""
    W, H, L, R, T, B = 800, 380, 70, 20, 40, 70
    vals = [v for _, _, vs in series for v in vs if v is not None]
    if whiskers:
        vals += [hi for ws in whiskers.values() for _, hi in ws if hi is not None]
    top = max(vals) * 1.15 if vals else 1
    pw, ph = W - L - R, H - T - B
    gw = pw / max(len(cats), 1)
    bw = gw * 0.8 / max(len(series), 1)
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">']
    o.append(f'<rect width="{W}" height="{H}" fill="white"/>')
    o.append(f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">{esc(title)}</text>')
    for k in range(6):
        v = top * k / 5
        y = T + ph - ph * k / 5
        o.append(f'<line x1="{L}" y1="{y:.1f}" x2="{W - R}" y2="{y:.1f}" stroke="#ddd"/>')
        o.append(f'<text x="{L - 6}" y="{y + 4:.1f}" text-anchor="end">{v:.2f}</text>')
    o.append(f'<text x="16" y="{T + ph / 2}" transform="rotate(-90 16 {T + ph / 2})" text-anchor="middle">{esc(ylabel)}</text>')
    for ci, c in enumerate(cats):
        x0 = L + gw * ci + gw * 0.1
        for si, (name, color, vs) in enumerate(series):
            v = vs[ci]
            x = x0 + bw * si
            if v is None:
                o.append(f'<text x="{x + bw / 2:.1f}" y="{T + ph - 4}" text-anchor="middle" font-size="10">n/a</text>')
                continue
            h = ph * v / top
            o.append(f'<rect x="{x:.1f}" y="{T + ph - h:.1f}" width="{bw * 0.92:.1f}" height="{h:.1f}" fill="{color}"/>')
            o.append(f'<text x="{x + bw / 2:.1f}" y="{T + ph - h - 4:.1f}" text-anchor="middle" font-size="10">{fmt.format(v)}</text>')
            if whiskers and name in whiskers:
                lo, hi = whiskers[name][ci]
                if lo is not None:
                    xm = x + bw * 0.46
                    y1, y2 = T + ph - ph * lo / top, T + ph - ph * hi / top
                    o.append(f'<line x1="{xm:.1f}" y1="{y1:.1f}" x2="{xm:.1f}" y2="{y2:.1f}" stroke="black"/>')
        o.append(f'<text x="{L + gw * ci + gw / 2:.1f}" y="{T + ph + 18}" text-anchor="middle">{esc(c)}</text>')
    x = L + 10
    for name, color, _ in series:
        o.append(f'<rect x="{x}" y="{H - 28}" width="12" height="12" fill="{color}"/>')
        o.append(f'<text x="{x + 16}" y="{H - 18}">{esc(name)}</text>')
        x += 34 + 7 * len(name)
    o.append("</svg>")
    open(path, "w").write("\n".join(o) + "\n")


def curves(title, lines, path):
    """HDR percentile plot: x = -log10(1 - p), y = round trip (us, log). lines = [(name, color, dash, curve)]."""
    W, H, L, R, T, B = 820, 420, 70, 230, 40, 50
    pw, ph = W - L - R, H - T - B
    pts = [(pt["percentile"], pt["us"]) for _, _, _, cv in lines for pt in cv if pt["percentile"] < 100]
    ymin = min(v for _, v in pts)
    ymax = max(v for _, v in pts)
    lo, hi = math.floor(math.log10(ymin)), math.ceil(math.log10(ymax))
    if hi == lo:
        hi += 1
    xmax = 4.0

    def X(p):
        return L + pw * min(-math.log10(1 - p / 100), xmax) / xmax

    def Y(v):
        return T + ph - ph * (math.log10(v) - lo) / (hi - lo)

    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">']
    o.append(f'<rect width="{W}" height="{H}" fill="white"/>')
    o.append(f'<text x="{(W - R) / 2 + L / 2}" y="22" text-anchor="middle" font-size="15">{esc(title)}</text>')
    for d in range(lo, hi + 1):
        y = Y(10**d)
        o.append(f'<line x1="{L}" y1="{y:.1f}" x2="{W - R}" y2="{y:.1f}" stroke="#ddd"/>')
        o.append(f'<text x="{L - 6}" y="{y + 4:.1f}" text-anchor="end">{10**d:g} us</text>')
    for p, lab in [(0, "0%"), (90, "90%"), (99, "99%"), (99.9, "99.9%"), (99.99, "99.99%")]:
        x = X(p)
        o.append(f'<line x1="{x:.1f}" y1="{T}" x2="{x:.1f}" y2="{T + ph}" stroke="#ddd"/>')
        o.append(f'<text x="{x:.1f}" y="{T + ph + 16}" text-anchor="middle">{lab}</text>')
    o.append(f'<text x="{L + pw / 2}" y="{H - 8}" text-anchor="middle">percentile</text>')
    for k, (name, color, dash, cv) in enumerate(lines):
        p = " ".join(f"{X(pt['percentile']):.1f},{Y(pt['us']):.1f}" for pt in cv if pt["percentile"] < 100)
        o.append(f'<polyline points="{p}" fill="none" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/>')
        y = T + 10 + k * 18
        o.append(f'<line x1="{W - R + 10}" y1="{y}" x2="{W - R + 34}" y2="{y}" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/>')
        o.append(f'<text x="{W - R + 40}" y="{y + 4}">{esc(name)}</text>')
    o.append("</svg>")
    open(path, "w").write("\n".join(o) + "\n")


def kname(t):
    return "wireguard-go" if t == "wireguard" else "kernel routing"


ts = [t for t in TRANSPORTS if results[t]["cer"] and results[t]["kernel"]]
cats = [f"{t} / {kname(t)}" for t in ts]
bars(
    f"{e['SIZE']}B iperf3 transfers, aws -> azure workload (median of {e['REPEAT']}, whiskers min-max)",
    "Gbps (receiver goodput)",
    cats,
    [
        ("CER (cer-dataplane)", COL["cer"], [results[t]["cer"]["receiver_gbps_median"] for t in ts]),
        ("Linux kernel (same namespaces)", COL["kernel"], [results[t]["kernel"]["receiver_gbps_median"] for t in ts]),
    ],
    f"{base}-throughput.svg",
    whiskers={
        "CER (cer-dataplane)": [(results[t]["cer"]["receiver_gbps_min"], results[t]["cer"]["receiver_gbps_max"]) for t in ts],
        "Linux kernel (same namespaces)": [(results[t]["kernel"]["receiver_gbps_min"], results[t]["kernel"]["receiver_gbps_max"]) for t in ts],
    },
)
bars(
    "CPU per Gbps of goodput during the transfers",
    "cores per Gbps",
    cats,
    [
        ("CER: whole machine", COL["cer"], [results[t]["cer"]["machine_busy_cores_per_gbps"] for t in ts]),
        ("CER: the two path dataplanes", "#aec7e8", [results[t]["cer"]["forwarder_cores_per_gbps"] for t in ts]),
        ("kernel: whole machine", COL["kernel"], [results[t]["kernel"]["machine_busy_cores_per_gbps"] for t in ts]),
        ("kernel: wireguard-go", "#ffbb78", [results[t]["kernel"]["forwarder_cores_per_gbps"] for t in ts]),
    ],
    f"{base}-cpu.svg",
)
for phase, title in (("idle", "idle"), ("load", "alongside the transfers")):
    lines = []
    for t in ts:
        lines.append((f"{t} CER", TCOL[t], "", results[t]["cer"][f"latency_{phase}"]["curve"]))
        lines.append((f"{t} {kname(t)}", TCOL[t], "5,4", results[t]["kernel"][f"latency_{phase}"]["curve"]))
    curves(f"UDP round trip aws -> azure workload, {title}", lines, f"{base}-latency-{phase}.svg")


# ---------------------------------------------------------------- Markdown


def f(x, d=2):
    return "-" if x is None else f"{x:.{d}f}"


def lat(h):
    return f"{f(h['p50_us'], 0)} / {f(h['p90_us'], 0)} / {f(h['p99_us'], 0)} / {f(h['p99_9_us'], 0)} / {f(h['max_us'], 0)}"


L = []
w = L.append
w(f"# Bulk transfers through the four-site lab, CER vs the Linux kernel ({DATE})")
w("")
w(f"Command: `{command}` (as root; {wall_total / 60:.1f} min including {e['BUILD_SECS']} s of cargo build)")
w("")
w(f"Machine: {e['MACHINE']}. Tools: {e['VERSIONS']}. Source: {e['GIT']}.")
w("")
w(f"Load average (1/5/15 min): {e['LOAD_START']} at the start, {e['LOAD_END']} at the end; after each")
w("transfer it is in the JSON (`runs[].loadavg_after`), and per transport below. The machine was shared")
w("with other engineers' builds and tests during the run: cer-dataplane processes not started by this run")
w(f"(other labs and tests): {e['OTHER_DP_START']} at the start, {e['OTHER_DP_END']} at the end, and per transport in the table below.")
w("Busiest processes over one second (top) at the")
w("start (before the build and the first lab) and at the end (after the in-memory benchmarks):")
w("")
w("```")
w(e["TOP_START"])
w("...")
w(e["TOP_END"])
w("```")
w("")
w("## Summary")
w("")
w("Medians over the transfers; round trips in us; CPU in cores per Gbps of goodput (details and")
w("definitions below). Kernel side: wireguard-go for WireGuard, plain routing (no encapsulation) for the rest.")
w("")
w("| transport | Gbps CER / kernel | idle RTT p50 CER / kernel | RTT p99 under load CER / kernel | CER path dataplanes cores/Gbps | machine cores/Gbps CER / kernel |")
w("|---|---|---|---|---:|---|")
for t in ts:
    c, k = results[t]["cer"], results[t]["kernel"]
    w(f"| {t} | {f(c['receiver_gbps_median'])} / {f(k['receiver_gbps_median'])} | "
      f"{f(c['latency_idle']['p50_us'], 0)} / {f(k['latency_idle']['p50_us'], 0)} | "
      f"{f(c['latency_load']['p99_us'], 0)} / {f(k['latency_load']['p99_us'], 0)} | "
      f"{f(c['forwarder_cores_per_gbps'])} | {f(c['machine_busy_cores_per_gbps'])} / {f(k['machine_busy_cores_per_gbps'])} |")
w("")
w("## What was measured")
w("")
w(f"- For each transport, a fresh lab with every site pair on it: `scripts/lab --name {e['NAME']} --transport T --poll-mode {POLL_MODE} up`")
w("  (five CERs: `cer-dataplane` on `net_af_packet` + `cer-control`, gobgpd reflector, the provider")
w("  emulators and fabrics, keepalived on-prem), then `scripts/lab down`.")
w(f"- Path: {report['path']}. Both ends are cloud sites; the on-prem and OCI CERs run but carry nothing.")
w(f"- Throughput: `iperf3 -c 10.77.60.12 -B 10.77.60.11 -n {e['SIZE']} -J` in the AWS workload namespace,")
w(f"  {e['REPEAT']} transfers per transport and forwarder; the figure is iperf3's receiver goodput (median, min-max).")
w(f"- Latency: `cer-bench-lab probe`, one 64-byte UDP datagram at a time from 10.77.60.11 to an echo on")
w(f"  10.77.60.12, every {e['INTERVAL_US']} us (or as soon as the previous reply came), reply timeout 500 ms;")
w(f"  round trips recorded into an HDR histogram (hdrhistogram crate, 3 significant digits).")
w(f"  'Idle': {e['IDLE_PROBES']} probes with nothing else on the path. 'Loaded': the prober runs alongside each")
w("  transfer, from just before iperf3 starts until it exits; the repeats' samples are merged.")
w("- CPU per Gbps = CPU seconds / Gbit delivered over the transfers (= cores busy per Gbps of goodput):")
w("  - CER: utime + stime of the two path dataplanes (aws, azure) from /proc/PID/stat; every lab dataplane")
w(f"    runs `poll_mode = \"{POLL_MODE}\"` (scripts/lab --poll-mode), node n's polling lcore on CPU n mod CPUs (on two")
w("    CPUs: aws on CPU 1, azure on CPU 0), so this includes polling;")
w("  - wireguard-go: the two wireguard-go processes the same way;")
w("  - kernel routing: forwarding runs in softirq, charged to no process: only the machine figure applies;")
w("  - whole machine: busy ticks of all cores from /proc/stat (user+nice+system+irq+softirq+steal), which")
w("    includes iperf3 at both ends, the prober, the other lab daemons and anyone else's load; the")
w("    idle-probe phase just before each measurement shows that background (for CER it includes the")
w("    dataplanes' polling).")
w("- Kernel side by side, same run, same lab: after the CER measurement, `scripts/lab fail aws` and")
w("  `scripts/lab fail azure` SIGKILL both CERs' cer-control and dataplane; the runner deletes the netdev")
w("  ingress-drop table the dead dataplane left on its ports, puts the CER's own addresses on the same")
w("  `lan0`/`wan0` veths (unchanged MTUs), enables forwarding and adds routes:")
w("  - WireGuard: wireguard-go in each CER namespace (`wg` peers at the CERs' transport addresses, the")
w("    lab's tunnel MTU on the interface, the remote /32 routed into it);")
w("  - IPIP, GRE, FOU, GUE: **no encapsulation**. This kernel has no ipip/gre/fou modules")
w("    (shared/INTEROP.md), so the baseline is plain routed forwarding of the inner packets: the remote /32")
w("    via the WAN router (which gets routes for both /32s), with the tunnel's MTU locked on that route so")
w("    the packets have the same sizes as through the tunnel. The four plain-routing rows measure nearly")
w("    the same thing four times (once per lab, each with its transport's MTU) and show the run-to-run")
w("    spread; the encapsulation itself is not part of the kernel figure.")
w("  - Both: an nftables forward rule clamps the SYN MSS to the route MTU, as cer-dataplane does into a tunnel.")
w("  - The fabrics: when the first CER dies, the second one releases its capture of the first one's /32")
w("    (ownership lost) before it is killed too, and the fabric agent removes that route. The runner puts")
w("    back the two fabric routes the captures held (the /32 to the CER's NIC), as before the failure;")
w("    nothing changes the emulators afterwards. Pinned per transport is listed below.")
w("")
w("MTUs (from the namespaces during the run):")
w("")
w("| transport | tunnel MTU (overhead) | aws lan0 / wan0 | azure lan0 / wan0 | aws / azure workload | lab up | other cer-dataplanes running |")
w("|---|---:|---|---|---|---:|---:|")
for t in TRANSPORTS:
    lb = results[t]["lab"]
    w(f"| {t} | {lb['tunnel_mtu']} ({lb['overhead']}) | {lb['aws_lan0']} / {lb['aws_wan0']} | {lb['azure_lan0']} / {lb['azure_wan0']} | "
      f"{lb['aws_workload']} / {lb['azure_workload']} | {lb['lab_up_seconds']} s | {lb.get('other_dataplanes', '-')} |")
w("")
w("## Throughput")
w("")
w(f"![throughput]({REPORT}-throughput.svg)")
w("")
w(f"| transport | CER Gbps median (min-max) | CER retransmits | kernel side | kernel Gbps median (min-max) | kernel retransmits | CER / kernel |")
w("|---|---:|---:|---|---:|---:|---:|")
for t in ts:
    c, k = results[t]["cer"], results[t]["kernel"]
    w(f"| {t} | {f(c['receiver_gbps_median'])} ({f(c['receiver_gbps_min'])}-{f(c['receiver_gbps_max'])}) | {c['retransmits_total']} | "
      f"{kname(t)} | {f(k['receiver_gbps_median'])} ({f(k['receiver_gbps_min'])}-{f(k['receiver_gbps_max'])}) | {k['retransmits_total']} | "
      f"{f(c['receiver_gbps_median'] / k['receiver_gbps_median'])} |")
w("")
w("## Latency (UDP round trip, us)")
w("")
w("p50 / p90 / p99 / p99.9 / max; samples = round trips recorded (lost = no reply within 500 ms).")
w("")
w("| transport | forwarder | idle | samples (lost) | alongside the transfers | samples (lost) |")
w("|---|---|---|---:|---|---:|")
for t in ts:
    for side, name in (("cer", "CER"), ("kernel", kname(t))):
        s = results[t][side]
        li, ll = s["latency_idle"], s["latency_load"]
        w(f"| {t} | {name} | {lat(li)} | {li['samples']} ({li['lost']}) | {lat(ll)} | {ll['samples']} ({ll['lost']}) |")
w("")
w(f"![idle latency]({REPORT}-latency-idle.svg)")
w("")
w(f"![loaded latency]({REPORT}-latency-load.svg)")
w("")
w("## CPU per Gbps")
w("")
w(f"![cpu]({REPORT}-cpu.svg)")
w("")
w("Cores per Gbps of goodput during the transfers (CPU seconds / Gbit). 'Forwarder' is the two path")
w("dataplanes for CER, the two wireguard-go processes for WireGuard in the kernel, none for kernel routing.")
w("")
w("| transport | forwarder | forwarder cores/Gbps | forwarder cores busy | all 5 dataplanes cores/Gbps | machine busy cores/Gbps | machine busy / softirq cores | idle phase: forwarder / machine cores |")
w("|---|---|---:|---:|---:|---:|---:|---:|")
for t in ts:
    for side, name in (("cer", "CER"), ("kernel", kname(t))):
        s = results[t][side]
        ip = s["idle_phase"]
        w(f"| {t} | {name} | {f(s['forwarder_cores_per_gbps'])} | {f(s['forwarder_cores_busy'])} | "
          f"{f(s['all_dataplanes_cores_per_gbps']) if side == 'cer' else '-'} | {f(s['machine_busy_cores_per_gbps'])} | "
          f"{f(s['machine_busy_cores'])} / {f(s['machine_softirq_cores'])} | "
          f"{f(ip['forwarder_cores_busy'])} / {f(ip['machine_busy_cores'])} |")
w("")
w("## Dataplane counters during the CER measurements")
w("")
w("`cerctl dataplane show ports --json` / `show counters --json` of the two path dataplanes, after minus")
w("before each transport's CER measurement (warm-up excluded; idle probes and all transfers included).")
w("rx/tx = the ports' packets; imissed, ierrors, oerrors, rx_nombuf = the ethdev counters as")
w("net_af_packet reports them; ring drops = frames the kernel dropped because the af_packet receive ring")
w("was full (`kernel_ring_drops`, from the socket's PACKET_STATISTICS: DPDK does not count them);")
w("drops = the pipeline's named drop counters that moved.")
w("")
w("| transport | dataplane | port (MTU) | rx | tx | imissed | ring drops | ierrors | oerrors | rx_nombuf | drops |")
w("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
for t in ts:
    dc = results[t]["cer_dataplane_counters"]
    if not dc:
        continue
    for site in ("aws", "azure"):
        dr = ", ".join(f"{k} {v}" for k, v in sorted(dc[site]["drops"].items())) or "none"
        for i, (pn, h) in enumerate(sorted(dc[site]["ports"].items())):
            w(f"| {t} | {site} | {pn} ({h.get('mtu')}) | {h.get('ipackets', 0)} | {h.get('opackets', 0)} | {h.get('imissed', 0)} | {h.get('kernel_ring_drops', '-')} | "
              f"{h.get('ierrors', 0)} | {h.get('oerrors', 0)} | {h.get('rx_nombuf', 0)} | {dr if i == 0 else ''} |")
w("")
w("Packets the sending dataplane counted on its WAN port that the receiving one did not count (compare")
w("the interface counters below; the CERs' own BGP and ARP on the WAN, a few packets, are in the tx")
w("counts too, so a small difference is not a loss):")
w("")
for t in ts:
    dc = results[t]["cer_dataplane_counters"]
    if not dc:
        continue
    a, z = dc["aws"]["ports"].get("wan", {}), dc["azure"]["ports"].get("wan", {})
    fwd = a.get("opackets", 0) - z.get("ipackets", 0)
    rev = z.get("opackets", 0) - a.get("ipackets", 0)
    sent = a.get("opackets", 0)
    w(f"- {t}: aws wan tx - azure wan rx = {fwd} of {sent} ({100 * fwd / sent if sent else 0:.3f}%); azure wan tx - aws wan rx = {rev}")
w("")
w("Interface drop and error counters (`ip -s -j link`) that moved on the path's namespaces during each")
w("measurement (workloads, fabrics, CER namespaces, WAN router):")
w("")
for t in ts:
    for side in ("cer", "kernel"):
        ld = results[t]["link_drops"][side]
        txt = "none" if not ld else "; ".join(f"{k} " + ", ".join(f"{c} {n}" for c, n in v.items()) for k, v in sorted(ld.items()))
        w(f"- {t}, {'CER' if side == 'cer' else kname(t)}: {txt}")
w("")
w("Load average after each transport's last transfer (CER, kernel):")
w("")
for t in ts:
    w(f"- {t}: {results[t]['cer']['runs'][-1]['loadavg_after']}; {results[t]['kernel']['runs'][-1]['loadavg_after']}"
      f"{'; fabric routes pinned for the kernel run: ' + results[t]['fabric_routes_pinned_for_kernel'] if results[t]['fabric_routes_pinned_for_kernel'] else ''}")
w("")
if inmem:
    w("## In-memory Mpps/core (same run, after the lab is down)")
    w("")
    w("The forward path and the tunnel engines through `Worker::poll` on in-memory ports, one pinned core")
    w("(how they are measured: perf/reports/2026-11-21-forward.md and 2026-11-21-transports.md). Shorter")
    w("runs than those reports' commands, on the same machine while it was shared.")
    w("")
    w(f"`{inmem['forward_command']}`")
    w("```")
    w(inmem["forward_table"])
    w("```")
    w(f"`{inmem['transports_command']}`")
    w("```")
    w(inmem["transports_table"])
    w("```")
    rows = {(r["transport"], r["direction"], r["inner_bytes"]): r for r in inmem["transports"]["transports"]}
    w("")
    w("| transport | encap Mpps/core 64 B | decap Mpps/core 64 B | encap Gbps/core 1400 B | decap Gbps/core 1400 B |")
    w("|---|---:|---:|---:|---:|")
    for t in ["ipip", "gre", "fou", "gue", "wireguard"]:
        a, b = rows.get((t, "encap", 64)), rows.get((t, "decap", 64))
        c, d = rows.get((t, "encap", 1400)), rows.get((t, "decap", 1400))
        w(f"| {t} | {f(a and a['mpps'])} | {f(b and b['mpps'])} | {f(c and c['inner_gbps'])} | {f(d and d['inner_gbps'])} |")
    fw = inmem["forward"]["forward"]
    w("")
    w("Forward path (no tunnel), 64-byte frames: " + ", ".join(f"{f(r['mpps'], 1)} Mpps/core at {r['entries']} /32s" for r in fw) + ".")
    w("")
profiles = {}
for t in ts:
    for side in ("cer", "kernel"):
        pth = os.path.join(TMP, f"{t}-{side}-profile.json")
        if os.path.exists(pth):
            profiles.setdefault(t, {})[side] = load(pth)
if profiles:
    w("## Where each microsecond goes (`--profile`)")
    w("")
    w("One more transfer per forwarder with the whole machine recorded (`perf record -a -g -e cpu-clock`,")
    w("kernel and user stacks), every sample charged to a stage of the path by `perf/lab_profile.py` (the")
    w("leaf function, or for a helper such as memcpy or a checksum the nearest caller that names a stage).")
    w("CPU time per stage divided by the transfer's data segments (bytes / MSS) = microseconds of CPU per")
    w("packet, both cores together; 'idle' is what was left of the two cores.")
    w("")
    for t, pr in profiles.items():
        stages = []
        for side in ("cer", "kernel"):
            for s_ in pr.get(side, {}).get("stages", []):
                if s_["stage"] not in stages:
                    stages.append(s_["stage"])
        def us(side, st):
            for s_ in pr.get(side, {}).get("stages", []):
                if s_["stage"] == st:
                    return s_["us_per_packet"]
            return None
        w(f"**{t}** (CER: {f(pr.get('cer', {}).get('packets'), 0)} packets in {f(pr.get('cer', {}).get('seconds'), 2)} s; "
          f"{kname(t)}: {f(pr.get('kernel', {}).get('packets'), 0)} packets in {f(pr.get('kernel', {}).get('seconds'), 2)} s)")
        w("")
        w(f"| stage | CER us/packet | {kname(t)} us/packet |")
        w("|---|---:|---:|")
        for st in stages:
            w(f"| {st} | {f(us('cer', st), 3)} | {f(us('kernel', st), 3)} |")
        busy = {side: sum(s_["us_per_packet"] or 0 for s_ in pr.get(side, {}).get("stages", []) if s_["stage"] not in ("idle", "other processes (not on the path)")) for side in ("cer", "kernel")}
        w(f"| **path busy total** | **{f(busy['cer'], 3)}** | **{f(busy['kernel'], 3)}** |")
        w("")
        for side in ("cer", "kernel"):
            other = pr.get(side, {}).get("other_top", {})
            if other:
                w(f"- {side}: unclassified top symbols: " + "; ".join(
                    f"{k}: " + ", ".join(f"{sym} {100 * sh:.1f}%" for sym, sh in v[:5]) for k, v in other.items()))
        w("")
    report["profiles"] = profiles
    json.dump(report, open(f"{base}.json", "w"), indent=2)

w("## Caveats")
w("")
w("- 2 cores for everything: five dataplanes (polling lcores spread over both CPUs, main lcores on CPU 0),")
w("  five cer-controls, gobgpd, three emulators and fabric agents, keepalived, iperf3 at both ends, the")
w("  prober, wireguard-go in the WireGuard baseline, and other engineers' work. The CER figures are what")
w("  two dataplanes on two CPUs shared with three idle ones and the traffic generators do, not a")
w("  dataplane's capacity; the in-memory figures above are the per-core engine numbers.")
w("- veth + `net_af_packet`: every packet crosses the kernel twice per CER (veth xmit, then the")
w("  af_packet ring copy in and out). The port MTUs are in the table at the top; the aws-azure path MTU")
w("  is the WAN's 1500 either way, so the inner packets are at most the tunnel MTU; the kernel baseline")
w("  uses the same veths with the same MTUs.")
if POLL_MODE == "shared":
    w("- Poll mode `shared` (dataplane/src/wake.rs): a polling core spins while it finds packets; after 32")
    w("  empty polls in a row (a few us) it sleeps in epoll on its ports' events (the af_packet PMD's packet")
    w("  sockets, the exception TAP's rx interrupt) and wakes when a frame arrives, so an idle dataplane costs")
    w("  about nothing and a probe finds each of the four dataplane hops of its round trip (aws out, azure in,")
    w("  azure out, aws in) asleep but woken by the probe itself: the idle round trips include four wake-ups.")
    w("  `poll_mode = \"busy\"` would trade that for a core spinning all the time: with five dataplanes on one")
    w("  core the lab cannot.")
elif POLL_MODE == "adaptive":
    w("- Poll mode `adaptive` (dataplane/src/wake.rs): a polling core spins while it finds packets and for")
    w("  1024 empty polls after the last one (tens of us) before it sleeps in epoll on its ports' events, so")
    w("  a reply that comes back through a dataplane soon after the request passed finds it still polling;")
    w("  an idle dataplane still sleeps (it costs the same as in `shared` once traffic stops).")
else:
    w("- Poll mode `busy`: every polling core spins all the time, five dataplanes on two CPUs: each path")
    w("  dataplane shares its CPU with spinning idle ones, the traffic generators and the kernel's work.")
w("- iperf3 -n 100M over these links takes about a second: each CPU figure spans a few hundred clock ticks")
w(f"  ({int(TICK)} Hz), and a loaded histogram holds a few hundred round trips per transfer (the sample")
w("  counts are in the latency table), so p99.9 and max rest on a handful of samples. The prober keeps one datagram in flight (no correction for")
w("  coordinated omission: a slow reply delays the next probe).")
w("- The kernel baseline for IPIP/GRE/FOU/GUE does no encapsulation (no modules on this kernel); its")
w("  packets are the same size as the tunnel's inner packets, but it skips the outer header work.")
w("- wireguard-go is Debian 12's build, without the UDP GSO/GRO and TUN offloads of newer releases.")
w("- The kernel side runs after `scripts/lab fail` with two fabric routes put back by hand (see above);")
w("  the other three CERs, the emulators, fabric agents and the reflector keep running in both phases.")
open(f"{base}.md", "w").write("\n".join(L) + "\n")
print(f"wrote {base}.md, {base}.json and {base}-*.svg")
for t in ts:
    c, k = results[t]["cer"], results[t]["kernel"]
    print(f"  {t}: CER {c['receiver_gbps_median']:.2f} Gbps, {kname(t)} {k['receiver_gbps_median']:.2f} Gbps; "
          f"loaded p99 {c['latency_load']['p99_us']:.0f} / {k['latency_load']['p99_us']:.0f} us")
