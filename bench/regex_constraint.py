"""Placement with a catastrophic-backtracking LIKE constraint, before and after RE2.

    .venv/bin/python bench/regex_constraint.py [--short 22] [--long 5000] [--offers 3]

The pattern `(a+)+$` against an attribute of `n` "a"s followed by "!" takes time exponential in
`n` in a backtracking engine. The baseline is what placement did before constraints moved to RE2:
Python's `re.fullmatch`, timed on the one match per offer that placement makes, with a short
attribute (`--short`; each 2 more characters roughly quadruple it; a long one would never end).
Then the real `scheduler.placement.place` (RE2) with the same short attribute and with a long
one (`--long`). The last line is
`RESULT re_short_s=<s> re2_short_s=<s> re2_long_s=<s> short=<n> long=<n> speedup_short=<x>`.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scheduler.placement import LaunchRequest, place  # noqa: E402
from scheduler.spec import parse_app  # noqa: E402

EVIL = "(a+)+$"


def offer(i: int, rack: str) -> dict:
    res = [{"name": n, "type": "SCALAR", "scalar": {"value": v}, "role": "*"}
           for n, v in (("cpus", 4.0), ("mem", 4096.0))]
    return {"id": {"value": f"o{i}"}, "agent_id": {"value": f"a{i}"}, "hostname": f"h{i}",
            "framework_id": {"value": "fw"}, "resources": res,
            "attributes": [{"name": "rack", "type": "TEXT", "text": {"value": rack}}]}


def timed_place(n: int, offers: int) -> float:
    app = parse_app({"id": "/evil", "cmd": "true", "cpus": 0.1, "mem": 16,
                     "portDefinitions": [], "constraints": [["rack", "LIKE", EVIL]]})
    batch = [offer(i, "a" * n + f"!{i}") for i in range(offers)]
    started = time.perf_counter()
    result = place(batch, [LaunchRequest(app, 1)], [])
    elapsed = time.perf_counter() - started
    assert result.unplaced["/evil"].reason == "constraint rack LIKE", result
    return elapsed


def timed_backtracking(n: int, offers: int) -> float:
    pattern = re.compile(EVIL)
    started = time.perf_counter()
    for i in range(offers):
        assert pattern.fullmatch("a" * n + f"!{i}") is None
    return time.perf_counter() - started


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--short", type=int, default=22)
    p.add_argument("--long", type=int, default=5000)
    p.add_argument("--offers", type=int, default=3)
    a = p.parse_args()
    re_short = timed_backtracking(a.short, a.offers)
    re2_short = timed_place(a.short, a.offers)
    re2_long = timed_place(a.long, a.offers)
    print(f"backtracking re, attribute {a.short} chars, {a.offers} offers: {re_short:.3f} s")
    print(f"placement (RE2), attribute {a.short} chars: {re2_short:.5f} s; "
          f"{a.long} chars: {re2_long:.5f} s")
    print(f"RESULT re_short_s={re_short:.3f} re2_short_s={re2_short:.5f} "
          f"re2_long_s={re2_long:.5f} short={a.short} long={a.long} "
          f"speedup_short={re_short / max(re2_short, 1e-6):.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
