#!/usr/bin/env python3
"""Where the time of one lab transfer goes, per packet, kernel and CER alike.

perf/run-lab --profile records the whole machine (`perf record -a -g -e cpu-clock`) during one
extra transfer per forwarder. This reads `perf script` of that recording and charges every sample to
a stage of the packet's path: the leaf frame's function, or for a kernel helper (memcpy, checksum,
locks) the nearest caller that names a stage. Dividing each stage's CPU time by the number of data
segments the transfer carried gives microseconds per packet.

    perf script -i FILE -F comm,tid,period,ip,sym,dso | lab_profile.py --packets N --seconds S --json OUT

Stages are matched by function name only (no source lines), so a function this list does not know
lands in "kernel: other" or "user: other"; the report shows their top symbols so the list can be
extended when they grow.
"""
import argparse
import collections
import json
import re
import sys

# (stage, regex on the function name). First match wins; checked from the leaf up the stack, and a
# frame matching only HELPERS is skipped over so that memcpy under tpacket_rcv counts as tpacket_rcv.
KERNEL_STAGES = [
    ("af_packet rx: kernel copies each frame into the PMD's ring", r"^(tpacket_rcv|packet_rcv|packet_rcv_fanout|__packet_rcv_has_room|packet_lookup_frame|run_filter|__packet_set_status|tpacket_get_timestamp|prb_.*|fanout_demux.*|ip_check_defrag)$"),
    ("af_packet tx: sendto() per burst, frames copied into skbs", r"^(tpacket_snd|packet_sendmsg|packet_snd|tpacket_fill_skb|__sys_sendto|__x64_sys_sendto|packet_direct_xmit|packet_read_pending|packet_pick_tx_queue|sock_alloc_send_pskb)$"),
    ("epoll / sleep / wake-up (poll modes)", r"^(do_epoll_wait|ep_poll|ep_poll_callback|ep_item_poll|__x64_sys_epoll_wait|timerfd_.*|hrtimer_.*|do_nanosleep|__x64_sys_clock_nanosleep|eventfd_.*|try_to_wake_up|ttwu_.*|sched_yield|do_sched_yield|__x64_sys_sched_yield)$"),
    ("veth + softirq (netif_rx, backlog)", r"^(veth_.*|netif_rx.*|__netif_rx|enqueue_to_backlog|process_backlog|net_rx_action|__netif_receive_skb.*|netif_receive_skb.*|__napi_poll|napi_.*|dev_hard_start_xmit|__dev_queue_xmit|dev_queue_xmit|validate_xmit_skb.*|sch_direct_xmit|__qdisc_run|pfifo_fast_.*|__dev_xmit_skb|eth_type_trans|skb_.*defer.*|do_softirq.*|__do_softirq|handle_softirqs|__local_bh_enable_ip|irq_exit_rcu|dev_forward_skb|__dev_forward_skb.*)$"),
    ("kernel IP forwarding, routing, netfilter", r"^(ip_forward.*|ip_rcv.*|ip_route_.*|fib_.*|ip_output|ip_finish_output.*|__ip_finish_output|ip_sublist_rcv.*|ip_list_rcv|neigh_.*|nf_.*|nft_.*|ipv4_.*|ip_fragment.*|ip_do_fragment|dst_.*|__ip_local_out|ip_local_out|ip_mc_.*|rt_.*)$"),
    ("TCP/UDP endpoints (iperf3, prober)", r"^(tcp_.*|__tcp_.*|udp_.*|__udp.*|inet_.*|sock_.*|__sock_.*|sk_.*|__sk_.*|release_sock|lock_sock.*|skb_copy_datagram.*|__skb_datagram_iter|simple_copy_to_iter|__x64_sys_(recvfrom|sendmsg|write|read|recvmsg)|ksys_(read|write)|vfs_(read|write)|sock_(read|write)_iter|ip_queue_xmit|__ip_queue_xmit|ip_local_deliver.*|ip_protocol_deliver_rcu|raw_local_deliver|__inet_lookup.*)$"),
    ("scheduler / context switch", r"^(__schedule|schedule|schedule_.*|pick_next_.*|finish_task_switch.*|__switch_to.*|switch_mm.*|update_curr|dequeue_task.*|enqueue_task.*|put_prev_.*|set_next_.*|load_balance|newidle_balance|sched_.*|psi_.*|update_.*load.*|context_tracking.*|syscall_exit_to_user_mode|exit_to_user_mode.*|irqentry_exit_to_user_mode)$"),
    ("idle", r"^(default_idle.*|cpu_idle.*|do_idle|arch_cpu_idle.*|cpuidle_.*|poll_idle|native_safe_halt|acpi_idle.*|intel_idle.*|amd_e400_idle|mwait_idle.*|cpu_startup_entry)$"),
]
HELPERS = re.compile(
    r"^(memcpy.*|__memcpy.*|memmove|memset.*|__memset.*|copy_.*|_copy_.*|rep_movs.*|csum_.*|__csum.*|"
    r"_raw_spin_.*|raw_spin_.*|queued_spin_.*|native_queued_.*|__kmalloc.*|kmalloc.*|kmem_cache_.*|"
    r"__alloc_skb|alloc_skb.*|__build_skb.*|kfree_skb.*|__kfree_skb|consume_skb|skb_release_.*|skb_free_head|"
    r"skb_put|skb_push|skb_pull|__skb_.*|pskb_.*|skb_clone|skb_copy_bits|skb_store_bits|__pskb_.*|"
    r"rcu_.*|__rcu_.*|ktime_get.*|read_tsc|entry_SYSCALL.*|do_syscall_64|x64_sys_call|syscall_.*|"
    r"fput|fdget|__fget.*|__check_object_size|check_heap_object|__virt_addr_valid|mod_.*state.*|"
    r"page_.*|__page_.*|free_.*page.*|get_page_from_freelist|__alloc_pages.*|_find_next_bit|"
    r"preempt_.*|__cond_resched|__rcu_read_.*|irq_.*|__irq_.*|asm_.*|sysvec_.*|__sysvec_.*|"
    r"native_.*|paravirt_.*|clear_page.*|__x86_indirect_thunk.*|__x86_return_thunk|srso_.*|retbleed_.*)$"
)
KERNEL_RE = [(name, re.compile(rx)) for name, rx in KERNEL_STAGES]

USER_STAGES = [
    ("CER pipeline (classify, lookup, rewrite, encap/decap)", re.compile(r"cer_dataplane|cer_shared|cer_wire|Worker|boringtun|chacha|poly1305|blake2|x25519")),
    ("CER poll loop, wake planning, counters", re.compile(r"cer_dpdk|engine|wake|poll_loop|lcore")),
    ("DPDK af_packet PMD and mbufs (user side)", re.compile(r"eth_af_packet|af_packet|rte_pktmbuf|rte_mempool|rte_eth|mbuf|common_ring|rte_ring|bucket_")),
    ("iperf3 / prober (user)", re.compile(r"iperf|cer_bench|hdrhistogram")),
]


# Processes on the measured path (threads by comm); the rest of the machine (builds, other labs,
# the lab's control daemons) is charged to "other processes" unless a sample of theirs is the
# kernel doing path work on their time (softirq forwarding runs on whatever task was interrupted).
PATH_COMMS = re.compile(r"^(lcore-worker-\d+|rte-worker-\d+|cer-dataplane|iperf3|cer-bench-lab|swapper/?\d*|ksoftirqd/\d+|wireguard-go|kworker/.*)$")


def stage_of(frames, comm=""):
    """frames: list of (sym, dso) from the leaf up. Returns the stage name."""
    leaf_sym, leaf_dso = frames[0] if frames else ("[unknown]", "[unknown]")
    kernel = "kernel" in leaf_dso or leaf_dso.startswith("[")
    on_path = bool(PATH_COMMS.match(comm))
    if kernel:
        for sym, dso in frames:
            if "kernel" not in dso and not dso.startswith("["):
                break  # reached user space: stop at the syscall boundary
            base = sym.split("+")[0].split(".")[0]
            for name, rx in KERNEL_RE:
                if rx.match(base):
                    return name
            if HELPERS.match(base):
                continue
        return "kernel: other" if on_path else "other processes (not on the path)"
    if not on_path:
        return "other processes (not on the path)"
    hay = f"{leaf_sym} {leaf_dso}"
    for name, rx in USER_STAGES:
        if rx.search(hay):
            return name
    if re.search(r"libc|ld-linux|memcpy|memmove|memset", hay):
        return "libc (memcpy in the PMD copies, etc.)"
    return "user: other"


def parse(stream):
    """Yields (comm, period, frames) for each sample of `perf script -F comm,tid,period,ip,sym,dso`."""
    comm, period, frames = None, 1, []
    head = re.compile(r"^(\S.*?)\s+(\d+)\s+(\d+)\s*$")
    for line in stream:
        line = line.rstrip("\n")
        if not line.strip():
            if comm is not None:
                yield comm, period, frames
            comm, period, frames = None, 1, []
            continue
        if not line.startswith((" ", "\t")):
            if comm is not None:
                yield comm, period, frames
            m = head.match(line)
            if m:
                comm, period = m.group(1).strip(), int(m.group(3))
            else:
                parts = line.split()
                comm, period = parts[0], 1
            frames = []
            continue
        parts = line.strip().split(None, 1)
        if len(parts) < 2:
            continue
        rest = parts[1]
        m = re.match(r"^(.*) \((.*)\)$", rest)
        sym, dso = (m.group(1), m.group(2)) if m else (rest, "")
        frames.append((sym, dso))
    if comm is not None:
        yield comm, period, frames


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--packets", type=float, required=True, help="data segments the transfer carried")
    ap.add_argument("--seconds", type=float, required=True, help="recording wall time")
    ap.add_argument("--cpus", type=int, default=0, help="CPUs recorded (default: from the samples)")
    ap.add_argument("--json", required=True)
    ap.add_argument("--label", default="")
    a = ap.parse_args()
    by_stage = collections.Counter()
    by_comm = collections.Counter()
    other_syms = collections.defaultdict(collections.Counter)
    total = 0
    for comm, period, frames in parse(sys.stdin):
        st = stage_of(frames, comm)
        by_stage[st] += period
        c = re.sub(r"\d+$", "N", comm)
        by_comm[c] += period
        total += period
        if st in ("kernel: other", "user: other") and frames:
            other_syms[st][frames[0][0].split("+")[0]] += period
    if total == 0:
        json.dump({"label": a.label, "error": "no samples"}, open(a.json, "w"))
        print(f"{a.label}: no samples", file=sys.stderr)
        return
    # cpu-clock periods are nanoseconds of CPU time.
    cpu_s = total / 1e9
    out = {
        "label": a.label,
        "packets": a.packets,
        "seconds": a.seconds,
        "cpu_seconds_sampled": round(cpu_s, 3),
        "stages": [
            {
                "stage": st,
                "cpu_seconds": round(p / 1e9, 4),
                "share": round(p / total, 4),
                "us_per_packet": round(p / 1e3 / a.packets, 3) if a.packets else None,
            }
            for st, p in by_stage.most_common()
        ],
        "by_comm": [{"comm": c, "share": round(p / total, 4)} for c, p in by_comm.most_common(12)],
        "other_top": {st: [[s, round(p / total, 4)] for s, p in cnt.most_common(8)] for st, cnt in other_syms.items()},
    }
    json.dump(out, open(a.json, "w"), indent=1)
    busy = sum(p for st, p in by_stage.items() if st not in ("idle", "other processes (not on the path)"))
    print(f"{a.label}: {a.packets:.0f} packets, {cpu_s:.2f} CPU-s sampled, path busy {busy / 1e3 / a.packets:.2f} us/packet")
    for s in out["stages"]:
        print(f"  {s['us_per_packet']:7.3f} us/pkt {100 * s['share']:5.1f}%  {s['stage']}")


if __name__ == "__main__":
    main()
