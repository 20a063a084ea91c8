"""`scripts/lab chaos`: a seeded chaos soak on a running four-site lab (issue 16 item 3).

    scripts/lab [--name NAME] chaos --seed S --minutes M [--out DIR] [--kinds a,b,...]
    python3 -m cerlab.chaos selftest | plan --seed S --minutes M | summarize DIR...   (cwd scripts/)

One job per module:

- **Plan** (`plan`): the whole schedule is drawn from `random.Random(seed)` before anything runs
  and written to `schedule.json`: operation kind, parameters and start offset. The same seed gives
  the same operations in the same order; only their timing can drift (an operation waits for the
  resources an earlier one still holds: a killed node, a frozen one, the reflector, a /32).
  Every kind runs once early (a shuffled first round), then kinds are drawn by weight.
  Operations overlap: the next one starts while earlier ones still run or converge.
- **Operations** (`operations`, `Operations.op_*`): endpoint move / add / remove, ownership flap,
  CER SIGKILL + heal, freeze + thaw (SIGSTOP/SIGCONT of every process of a node), WAN cut + heal
  (link down of the node's WAN veth at the WAN router), VRRP master kill (keepalived only) +
  restart, reflector restart, provider faults through the emulator (throttling, 500s, lost replies,
  latency spikes, eventual-consistency delays), BGP session reset (`gobgp neighbor ADDR reset`).
- **Probes** (`probes`: `helper_probe`, one per workload namespace): every 50 ms a UDP datagram
  from each /32 the namespace holds to every other /32; the receiver checks that the packet's
  source address is the /32 the sender wrote in it, and records runs of consecutive received
  probes per pair. `helper_arp` asks the on-prem segment for every remote /32 every 200 ms and
  tcpdump records the ARP frames on the workload's segment port: the proxy-ARP holders' evidence.
- **Invariants** (`checks`, `Checks.*`): each returns a list of violations, each with its
  evidence. Checked continuously (a sampler thread) and at every quiescent point (no operation in
  flight, then convergence awaited up to `CONVERGE_BOUND`, then reachability up to `REACH_BOUND`).
- **The run** (`soak`): helpers, the schedule loop, quiescent points.
- **Report** (`report`: `report.md`, `report.json`): operations by kind, outage per kind
  (p50/p99/max), quiescent points, fences, violations. A violation stops the run and keeps the
  evidence (`violation-N/`: the invariant, its evidence, the operation log, holder views and
  journals, the ARP pcap, `cerctl explain` of every /32 from every CER, every lab log).
- **Self-test** (`selftest`): every check against a fabricated violation and without it.

Bounds (`bounds`; see README "Chaos soak"): after the last operation of a round ends, the lab must
converge (every CER agrees on every owner, every cloud capture confirmed, every fabric delivering as
the owners say, exactly one on-prem gate open) within CONVERGE_BOUND = 60 s, and then every pair of
/32s must exchange probes within REACH_BOUND = 8 s.
"""
