"""`accessd local`'s block of service ports (`accessd.local_lb.service_port_min`): two runs
starting together get different blocks, before either HAProxy listens on its ports."""

from __future__ import annotations

from tests.support import PYTHON, Proc

CLAIM = ("import time; from accessd.local_lb import service_port_min; "
         "print(service_port_min(low=19500, high=20000), flush=True); time.sleep(600)")


def test_runs_starting_together_claim_different_blocks():
    first = Proc([PYTHON, "-c", CLAIM])
    second = Proc([PYTHON, "-c", CLAIM])
    try:
        bases = [int(p.wait_for_line(str.isdigit, timeout=30)) for p in (first, second)]
        # nothing listens on them yet: only the claim keeps the second run off the first's
        assert len(set(bases)) == 2, bases
    finally:
        first.stop()
        second.stop()
    # a run that ended left its block free for the next one
    third = Proc([PYTHON, "-c", CLAIM])
    try:
        assert int(third.wait_for_line(str.isdigit, timeout=30)) == min(bases)
    finally:
        third.stop()
