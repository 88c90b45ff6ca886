"""How fast localmesos answers, measured through pymesos (real Mesos, recorded: SUBSCRIBED
~60 ms, first OFFERS a few ms later, RUNNING ~0.6 s after ACCEPT, KILLED ~0.2 s after KILL).

Run with `-s` to see the numbers. The bounds are loose (a loaded 2-core machine): they catch a
broken fast path, not a slow machine.
"""

from __future__ import annotations

import statistics
import time

from tests.localmesos.helpers import Recorder, command_task, start_driver, stop_driver


def test_latencies(lm) -> None:
    rec = Recorder()
    t0 = time.monotonic()
    start_driver(lm.master, rec)
    try:
        subscribed = rec.events[0][2] - t0
        first_offer = rec.wait_for(lambda: [t for k, _, t in rec.events if k == "offer"],
                                   what="an offer")[0] - t0
        running, killed = [], []
        for i in range(5):
            offer = rec.take_offer()
            tid = f"lat{i}"
            t_accept = time.monotonic()
            rec.driver.launchTasks(offer["id"], [command_task(tid, offer, "sleep 60")])
            rec.wait_state(tid, "TASK_RUNNING")
            running.append(_at(rec, tid, "TASK_RUNNING") - t_accept)
            t_kill = time.monotonic()
            rec.driver.killTask({"value": tid})
            rec.wait_state(tid, "TASK_KILLED")
            killed.append(_at(rec, tid, "TASK_KILLED") - t_kill)
        print(f"\nTIMINGS subscribe->SUBSCRIBED {subscribed * 1000:.1f} ms, "
              f"subscribe->first OFFERS {first_offer * 1000:.1f} ms, "
              f"ACCEPT->RUNNING median {statistics.median(running) * 1000:.1f} ms, "
              f"KILL->KILLED median {statistics.median(killed) * 1000:.1f} ms")
        assert subscribed < 1.0 and first_offer < 1.0
        assert statistics.median(running) < 1.0
        assert statistics.median(killed) < 1.0
    finally:
        stop_driver(rec.driver)


def _at(rec: Recorder, tid: str, state: str) -> float:
    return next(t for k, p, t in rec.events
                if k == "status" and p["task_id"]["value"] == tid and p["state"] == state)
