"""The soak's timing: probe and ARP intervals, and the bounds its invariants hold the lab to."""

import time

from ..journal import FENCE_EPS_MS as JOURNAL_FENCE_EPS_MS

PROBE_PORT = 7977
PROBE_MS = 50
ARP_MS = 200
# After quiescence: convergence (BGP + capture + fabrics + VRRP gate), then probes between every pair.
CONVERGE_BOUND = 60.0
REACH_BOUND = 8.0
# Continuous bounds (while operations run): a pair dark for longer, or an owned /32 held by nobody
# at a provider for longer, is a violation even in the middle of the chaos.
DARK_BOUND = 120.0
NOBODY_BOUND = 60.0
# When a provider mutation from the CER counts as stale: journal.FENCE_EPS_MS (shared with mass-move).
FENCE_EPS_MS = JOURNAL_FENCE_EPS_MS
# Mutation windows in which the workload and a CER may both claim an on-prem /32 (the lab adds the
# address at the workload before BGP moves ownership): seconds around such an operation.
ONPREM_CLAIM_SLACK = (1.0, 3.0)


def now_ms() -> int:
    return int(time.time() * 1000)
