"""`python3 -m cerlab.chaos` (with scripts/ on the path): the soak's tools that need no lab.

selftest                         every check against a fabricated violation (scripts/test)
plan --seed S --minutes M        the schedule a seed gives on a fresh lab, as JSON
summarize DIR...                 Markdown over several runs' report.json
_probe | _arp | _relay ...       the helpers (the soak starts them as `scripts/lab _NAME`)
"""

import argparse
import json
import sys
from collections.abc import Callable

from ..provider import helper_relay
from .plan import plan
from .probes import helper_arp, helper_probe
from .report import summarize
from .selftest import selftest


def plan_cmd(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m cerlab.chaos plan")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--minutes", type=float, required=True)
    a = ap.parse_args(argv)
    nodes = {"onprem": ["onprem-a", "onprem-b"], "aws": ["aws"], "azure": ["azure"], "oci": ["oci"]}
    print(json.dumps(plan(a.seed, a.minutes, nodes), indent=1))
    return 0


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "selftest": lambda argv: selftest(),
    "plan": plan_cmd,
    "summarize": summarize,
    "_probe": helper_probe,
    "_arp": helper_arp,
    "_relay": helper_relay,
}


def main(argv: list[str]) -> int:
    if argv and argv[0] in COMMANDS:
        return COMMANDS[argv[0]](argv[1:])
    print(
        f"usage: python3 -m cerlab.chaos {{{'|'.join(COMMANDS)}}} ... (the soak itself: scripts/lab chaos --seed S --minutes M)",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
