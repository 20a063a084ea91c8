"""The report of perf/run-io: reads the benchmark's JSON (RESULTS) and the runner's context
(environment), writes perf/reports/<date>-io.{md,json} and <date>-io.svg. Every figure comes
from the measurement of this run; nothing is estimated here. A hand-written analysis of the
run, if present as <date>-io.analysis.md beside the report, is appended to it."""

import json
import os

e = os.environ
OUT, DATE = e["OUT"], e["DATE"]
res = json.load(open(e["RESULTS"]))
rows = res["rows"]
CASE_ORDER = ["forward"] + [f"{t}-{op}" for op in ("encap", "decap")
                            for t in ("ipip", "gre", "fou", "gue", "wireguard")]
FRAMES = ["64", "imix", "1400"]
ENGINES = ["ceiling", "cer", "ovs"]
COLORS = {"ceiling": "#9e9e9e", "cer": "#1f77b4", "ovs": "#ff7f0e"}


def row(case, frame, engine):
    for r in rows:
        if r["case"] == case and r["frame"] == frame and r["engine"] == engine:
            return r
    return None


def ceiling_for(case, frame):
    """The ceiling row that bounds a case: inner frames (forward, encap) or outer (decap)."""
    return row("gre-decap" if case.endswith("-decap") else "forward", frame, "ceiling")


def f(v, fmt="{:.2f}"):
    return "-" if v is None else fmt.format(v)


def bound(r):
    """Who limited the maximum trial, from the engine core's busy share (measured)."""
    b = r.get("engine_busy")
    if b is None:
        return "?"
    return "engine" if b >= 0.9 else "generator"


# ---------------------------------------------------------------- JSON (comparable across runs)
json.dump({
    "rows": [{k: r[k] for k in ("case", "frame", "engine", "max_mpps", "ndr_mpps", "gbps",
                                "cycles_per_packet")} | {"engine_busy": r.get("engine_busy"),
        "ndr_gbps": r["ndr_gbps"], "offered_mpps": r["offered_mpps"],
        "unexpected_frames": r["unexpected_frames"], "unexpected_sample": r.get("unexpected_sample"),
        "generator_behind": r["generator_behind"],
        "ndr_steps": r["ndr_steps"]} for r in rows],
    "entries": res["entries"], "max_secs": res["max_secs"], "ndr_secs": res["ndr_secs"],
    "memory": res["memory"], "ring_log2": res.get("ring_log2"), "failures": res["failures"],
    "engine_drops": res["engine_drops"],
    "drift": res.get("drift"), "head_to_head": res.get("head_to_head"),
    "command": e["COMMAND"], "machine": e["MACHINE"], "versions": e["VERSIONS"],
}, open(e["JSON"], "w"), indent=1)

# ---------------------------------------------------------------- markdown
md = []
w = md.append
w(f"# Kernel-free DPDK path: CER vs the PMD ceiling vs OVS-DPDK ({DATE})\n")
w(f"Command: `{e['COMMAND']}` (runs `{e['RUNS']}`)\n")
w(f"Machine: {e['MACHINE']}; {e['VERSIONS']}\n")
w("Setup: the generator (`cer-bench-io gen`: DPDK, memif clients, one core) on CPU "
  f"{0} and the engine under test busy-polling CPU 1, joined by two `net_memif` links (socket "
  "files, no kernel on the path). Each engine is the memif server in the same place on the same "
  f"links (memif rings of {2 ** res.get('ring_log2', 10)} slots). Memory: " + res["memory"] + ". The generator sends the case's frames with the "
  f"destination drawn from CER's table of {res['entries']:,} /32s (every entry, pseudo-random "
  "order) and counts what comes back on the other link.\n")
w("- **ceiling**: `dpdk-testpmd --forward-mode=io` (receives and transmits, touches nothing). "
  "Its `forward` row bounds forward and encap (inner frames in), its `gre-decap` row bounds "
  "decap (outer frames in).")
w("- **cer**: `cer-dataplane` with two `driver = \"memif\"` ports, one polling core; forward: "
  "/32 exact match, neighbor, TTL, Ethernet rewrite; encap: the same into the transport's tunnel "
  "(MSS clamp check, tunnel MTU, outer header, underlay route); decap: outer checks, peer lookup, "
  "strip, then forward. Port MTU 1600 (IMIX 1518-byte frames fit every tunnel without "
  "fragmentation).")
w("- **ovs**: OVS-DPDK userspace datapath, PMD on CPU 1. Forward: one OpenFlow rule "
  "`ip,nw_dst=10.128.0.0/9 actions=dec_ttl,mod_dl_src,mod_dl_dst,output` (a route with one "
  "next hop: OVS's megaflow covers every destination, so OVS does less per packet than a 1M-entry "
  "FIB with per-host neighbors); GRE: native tunneling with `packet_type=legacy_l3`, key 77 "
  "(the same 28-byte encapsulation as CER's GRE).")
w("")
w(f"Trials: maximum = offered as fast as the generator can for {res['max_secs']} s, three times "
  "(the median trial is reported; the range is in the JSON); no-drop rate "
  f"(NDR) = highest offered rate with zero loss over {res['ndr_secs']} s (binary search from the "
  "maximum, 1% resolution; a ring the engine did not drain counts as loss). Mpps are packets "
  "delivered; Gbps = delivered packets x mean frame size of the input frames with FCS (64 B, "
  "IMIX 7:4:1 of 64/570/1518 = 353.8 B, 1400 B) x 8. Cycles/packet = TSC cycles the engine's "
  "core spent in polls that received packets / packets received, during the maximum trial "
  "(cer: its per-core busy counters; ovs: `dpif-netdev/pmd-stats-show` processing cycles / "
  "packets received; ceiling: testpmd `--record-core-cycles`).\n")

h2h = res.get("head_to_head") or []
H2H = {}
if h2h:
    import statistics
    w("## Head to head: forward and GRE encap at 64 B, engines measured back to back\n")
    w(f"{len(h2h)} rounds; in each round every engine is started fresh and measured "
      "(one maximum trial per case) within about a minute of the others, so the per-round ratios "
      "share the host's speed of that minute. Medians over the rounds.\n")
    w("| round | case | ceiling Mpps | CER Mpps | OVS Mpps | CER / ceiling | CER cycles/pkt | OVS cycles/pkt | CER / OVS cycles |")
    w("|---|---|---|---|---|---|---|---|---|")
    per = {}
    for rd in h2h:
        by = {(x["engine"], x["case"]): x for x in rd["rows"]}
        for case in ("forward", "gre-encap"):
            c, ceil, o = by.get(("cer", case)), by.get(("ceiling", "forward")), by.get(("ovs", case))
            if not c:
                continue
            r1 = c["max_mpps"] / ceil["max_mpps"] if ceil else None
            r2 = (c["cycles_per_packet"] / o["cycles_per_packet"]
                  if o and o["cycles_per_packet"] and c["cycles_per_packet"] else None)
            per.setdefault(case, []).append((c, ceil, o, r1, r2))
            w(f"| {rd['round']} | {case} | {f(ceil and ceil['max_mpps'])} | {f(c['max_mpps'])} | "
              f"{f(o and o['max_mpps'])} | {f(r1 and r1 * 100, '{:.0f}%')} | "
              f"{f(c['cycles_per_packet'], '{:.0f}')} | {f(o and o['cycles_per_packet'], '{:.0f}')} | "
              f"{f(r2, '{:.2f}')} |")
    w("")
    for case, xs in per.items():
        med = lambda v: statistics.median(v) if v else None
        H2H[case] = {
            "cer_over_ceiling": med([x[3] for x in xs if x[3] is not None]),
            "cer_over_ovs_cycles": med([x[4] for x in xs if x[4] is not None]),
            "cer_mpps": med([x[0]["max_mpps"] for x in xs]),
            "cer_cycles": med([x[0]["cycles_per_packet"] for x in xs if x[0]["cycles_per_packet"]]),
            "ovs_cycles": med([x[2]["cycles_per_packet"] for x in xs if x[2] and x[2]["cycles_per_packet"]]),
            "cer_busy": med([x[0]["engine_busy"] for x in xs if x[0].get("engine_busy") is not None]),
            "ceiling_busy": med([x[1]["engine_busy"] for x in xs if x[1] and x[1].get("engine_busy") is not None]),
        }
    for case, h in H2H.items():
        w(f"- {case}: CER / ceiling median {f(h['cer_over_ceiling'] and h['cer_over_ceiling'] * 100, '{:.0f}%')}, "
          f"CER cycles / OVS cycles median {f(h['cer_over_ovs_cycles'])} (CER {f(h['cer_cycles'], '{:.0f}')}, "
          f"OVS {f(h['ovs_cycles'], '{:.0f}')} cycles/packet); busy share median CER "
          f"{f(h['cer_busy'] and h['cer_busy'] * 100, '{:.0f}%')}, ceiling "
          f"{f(h['ceiling_busy'] and h['ceiling_busy'] * 100, '{:.0f}%')}.")
    w("")

w("## 64-byte frames\n")
w("Busy = share of the engine core's cycles in polls that received packets during the maximum "
  "trial; at 90% and above the engine is the bound, below it the generator (it could not offer more).\n")
w("| case | ceiling Mpps (busy) | CER Mpps (busy) | CER / ceiling | CER NDR | OVS Mpps (busy) | OVS NDR | CER cycles/pkt | OVS cycles/pkt | CER cycles / OVS |")
w("|---|---|---|---|---|---|---|---|---|---|")
for case in CASE_ORDER:
    c = row(case, "64", "cer")
    if c is None:
        continue
    ceil = ceiling_for(case, "64")
    o = row(case, "64", "ovs")
    ratio = c["max_mpps"] / ceil["max_mpps"] if ceil else None
    cyc = (c["cycles_per_packet"] / o["cycles_per_packet"]
           if o and o["cycles_per_packet"] and c["cycles_per_packet"] else None)
    busy = lambda r: f"{f(r['max_mpps'])} ({f(r.get('engine_busy') and r['engine_busy'] * 100, '{:.0f}%')})" if r else "-"
    w(f"| {case} | {busy(ceil)} | {busy(c)} | "
      f"{f(ratio and ratio * 100, '{:.0f}%')} | {f(c['ndr_mpps'])} | {busy(o)} | "
      f"{f(o and o['ndr_mpps'])} | {f(c['cycles_per_packet'], '{:.0f}')} | "
      f"{f(o and o['cycles_per_packet'], '{:.0f}')} | {f(cyc, '{:.2f}')} |")
w("")

w("## Targets (issue 12), from this run\n")
if H2H:
    w("From the head-to-head rounds (engines measured within a minute of each other; the matrix's "
      "engines ran up to an hour apart, see the drift check):\n")
    for case, h in H2H.items():
        r, c = h["cer_over_ceiling"], h["cer_over_ovs_cycles"]
        if r is not None:
            w(f"- {case} 64 B: CER / ceiling median {r * 100:.0f}% (target >= 95%: "
              f"{'met' if r >= 0.95 else f'missed by {(0.95 - r) * 100:.0f} points'}); the engine was the "
              f"bound (CER busy {f(h['cer_busy'] and h['cer_busy'] * 100, '{:.0f}%')}).")
        if c is not None:
            w(f"- {case} 64 B cycles/packet: CER / OVS median {c:.2f} (target <= 2/3: "
              f"{'met' if c <= 2 / 3 else 'missed'}).")
    w("")
w("From the matrix (each engine's rows at a different time of the run):\n")
for case in ["forward", "ipip-encap", "gre-encap", "fou-encap", "gue-encap", "wireguard-encap"]:
    c, ceil = row(case, "64", "cer"), ceiling_for(case, "64")
    if not (c and ceil):
        continue
    r = c["max_mpps"] / ceil["max_mpps"]
    verdict = "met" if r >= 0.95 else f"missed by {(0.95 - r) * 100:.0f} points"
    w(f"- {case} 64 B: CER {c['max_mpps']:.2f} Mpps = {r * 100:.0f}% of the ceiling's "
      f"{ceil['max_mpps']:.2f} (target >= 95%: {verdict}). Bound: ceiling run by the {bound(ceil)} "
      f"(testpmd busy {f(ceil.get('engine_busy') and ceil['engine_busy'] * 100, '{:.0f}%')}), "
      f"CER run by the {bound(c)} (CER busy {f(c.get('engine_busy') and c['engine_busy'] * 100, '{:.0f}%')}).")
for case in ["forward", "gre-encap"]:
    c, o = row(case, "64", "cer"), row(case, "64", "ovs")
    if c and o and c["cycles_per_packet"] and o["cycles_per_packet"]:
        r = c["cycles_per_packet"] / o["cycles_per_packet"]
        verdict = "met" if r <= 2 / 3 else f"missed ({r:.2f} > 0.67)"
        w(f"- {case} 64 B cycles/packet: CER {c['cycles_per_packet']:.0f} vs OVS "
          f"{o['cycles_per_packet']:.0f} = {r:.2f} (target <= 2/3: {verdict}).")
w("")

w("## Every measurement\n")
w("| case | frame | engine | max Mpps | max Gbps | NDR Mpps | NDR Gbps | cycles/pkt | busy | offered Mpps | NDR trials (Mpps offered: lost) |")
w("|---|---|---|---|---|---|---|---|---|---|---|")
for case in CASE_ORDER:
    for frame in FRAMES:
        for eng in ENGINES:
            r = row(case, frame, eng)
            if r is None:
                continue
            def step(s):
                t = f"{s['rate_pps'] / 1e6:.2f}: {s['lost']}"
                notes = []
                if s["behind"]:
                    notes.append("gen behind")
                if s.get("engine_stalls"):
                    notes.append(f"{s['engine_stalls']} CER stalls")
                if s.get("lag_max_us", 0) > 500:
                    notes.append(f"gen late {s['lag_max_us']:.0f} us")
                return t + (f" ({', '.join(notes)})" if notes else "")
            steps = ", ".join(step(s) for s in r["ndr_steps"])
            notes = ""
            if r["unexpected_frames"]:
                notes += (f" {r['unexpected_frames']} unexpected frames (first: "
                          f"`{r.get('unexpected_sample') or '?'}`);")
            w(f"| {case} | {frame} | {eng} | {f(r['max_mpps'])} | {f(r['gbps'])} | {f(r['ndr_mpps'])} | "
              f"{f(r['ndr_gbps'])} | {f(r['cycles_per_packet'], '{:.0f}')} | "
              f"{f(r.get('engine_busy') and r['engine_busy'] * 100, '{:.0f}%')} | {f(r['offered_mpps'])} | "
              f"{steps}{notes} |")
w("")
if res["engine_drops"]:
    w("Drop counters over the whole run (CER names every drop; `tx_queue_full`/refused rings are the "
      "overload of the maximum trials):\n")
    for eng, d in res["engine_drops"].items():
        w(f"- {eng}: " + ", ".join(f"{k} {v:,}" for k, v in d))
    w("")
if res["failures"]:
    w("Failed measurements:\n")
    for x in res["failures"]:
        w(f"- {x}")
    w("")
d = res.get("drift") or {}
if d:
    a, b = d["ceiling_forward_64_start_mpps"], d["ceiling_forward_64_end_mpps"]
    w(f"Drift check: the ceiling's forward 64 B maximum was {a:.2f} Mpps at the start of the run and "
      f"{b:.2f} at the end ({(b - a) / a * 100:+.1f}%): ratios between engines measured at different "
      "times carry about that much host noise.\n")
w("Load context (machine shared; figures are ratios within this run):\n")
w("```")
w("start:")
w(e.get("LOAD_START", ""))
w("other polling processes at start: " + (e.get("POLLERS_START", "").strip() or "none"))
w("end:")
w(e.get("LOAD_END", ""))
w("other polling processes at end: " + (e.get("POLLERS_END", "").strip() or "none"))
w("```\n")
w(f"![rates](./{DATE}-io.svg)\n")
analysis = os.path.join(OUT, f"{DATE}-io.analysis.md")
if os.path.exists(analysis):
    w(open(analysis).read())
open(os.path.join(OUT, f"{DATE}-io.md"), "w").write("\n".join(md) + "\n")

# ---------------------------------------------------------------- SVG: rate vs frame mix per case
cases = [c for c in CASE_ORDER if any(r["case"] == c for r in rows)]
cols = 4
cw, ch = 300, 210
rws = (len(cases) + cols - 1) // cols
W, H = cols * cw + 20, rws * ch + 70
top = max([r["max_mpps"] for r in rows] + [1])
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<text x="10" y="18" font-size="14">Delivered Mpps (bar: maximum, black tick: no-drop rate) by frame mix, {DATE}</text>']
x = 10
for eng in ENGINES:
    svg.append(f'<rect x="{x}" y="30" width="12" height="12" fill="{COLORS[eng]}"/>'
               f'<text x="{x + 16}" y="40">{eng}</text>')
    x += 90
for i, case in enumerate(cases):
    ox, oy = 10 + (i % cols) * cw, 60 + (i // cols) * ch
    ph = ch - 50
    svg.append(f'<text x="{ox + 30}" y="{oy + 10}" font-size="12">{case}</text>')
    svg.append(f'<line x1="{ox + 30}" y1="{oy + 15 + ph}" x2="{ox + cw - 10}" y2="{oy + 15 + ph}" stroke="black"/>')
    for k in range(0, 5):
        v = top * k / 4
        y = oy + 15 + ph - ph * k / 4
        svg.append(f'<text x="{ox}" y="{y + 4:.0f}" font-size="9">{v:.0f}</text>'
                   f'<line x1="{ox + 28}" y1="{y:.0f}" x2="{ox + cw - 10}" y2="{y:.0f}" stroke="#eee"/>')
    gw = (cw - 50) / len(FRAMES)
    for j, frame in enumerate(FRAMES):
        gx = ox + 35 + j * gw
        svg.append(f'<text x="{gx + gw / 2 - 10:.0f}" y="{oy + 30 + ph}">{frame}</text>')
        bw = (gw - 10) / len(ENGINES)
        for k, eng in enumerate(ENGINES):
            r = row(case, frame, eng) or (ceiling_for(case, frame) if eng == "ceiling" else None)
            if r is None:
                continue
            hgt = ph * r["max_mpps"] / top
            bx = gx + k * bw
            svg.append(f'<rect x="{bx:.1f}" y="{oy + 15 + ph - hgt:.1f}" width="{bw - 2:.1f}" '
                       f'height="{hgt:.1f}" fill="{COLORS[eng]}"/>')
            if r["ndr_mpps"] is not None:
                ny = oy + 15 + ph - ph * r["ndr_mpps"] / top
                svg.append(f'<line x1="{bx:.1f}" y1="{ny:.1f}" x2="{bx + bw - 2:.1f}" y2="{ny:.1f}" '
                           f'stroke="black" stroke-width="2"/>')
svg.append("</svg>")
open(os.path.join(OUT, f"{DATE}-io.svg"), "w").write("\n".join(svg) + "\n")
