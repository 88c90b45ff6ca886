"""A health-check storm: many tasks with 1 s health checks whose checks all fail at once for
about two seconds (fewer failures than `maxConsecutiveFailures`), then pass again. Every
failure is a TASK_RUNNING `healthy: false` update and every recovery a `healthy: true` one,
all reaching the scheduler within a few seconds. It must store them, kill nothing, and stay
well under one core (bench/chaos.py does the same with 200 tasks).
"""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path

from tests.fixtures_scheduler import deploy_app, scheduler_cluster, store_tasks
from tests.support import wait_until

TASKS = 60
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def healthy(store) -> list[dict]:
    return [t for t in store_tasks(store, "/storm/sleep") if t.get("healthy") is True]


def test_health_flap_of_many_tasks_kills_nothing_and_costs_little_cpu(tmp_path):
    flag = tmp_path / "sick"
    app = {"id": "/storm/sleep", "cmd": "sleep 100000", "executor": "//cmd", "cpus": 0.01,
           "mem": 4, "instances": TASKS, "portDefinitions": [],
           "healthChecks": [{"protocol": "COMMAND",
                             "command": {"value": f"[ ! -e {shlex.quote(str(flag))} ]"},
                             "gracePeriodSeconds": 30, "intervalSeconds": 1,
                             "timeoutSeconds": 0.9, "maxConsecutiveFailures": 6}]}
    with scheduler_cluster(tmp_path) as (mesos, store, sched):
        deploy_app(store, app)
        up = wait_until(lambda: len(h := healthy(store)) == TASKS and h, timeout=60,
                        message=f"{TASKS} healthy tasks")
        ids = {t["id"] for t in up}
        first = store.latest_event_id()
        cpu0, wall0 = cpu_seconds(sched.pid), time.monotonic()
        flag.touch()
        wait_until(lambda: not healthy(store), timeout=15, message="every task unhealthy")
        flag.unlink()
        wait_until(lambda: len(healthy(store)) == TASKS, timeout=15,
                   message="every task healthy again")
        cpu = (cpu_seconds(sched.pid) - cpu0) / (time.monotonic() - wall0)
        changes = [e for _, e in store.events_since(first, 100000)
                   if e["eventType"] == "health_status_changed_event"]
        print(f"{TASKS} tasks: {len(changes)} health changes stored; scheduler CPU "
              f"{100 * cpu:.1f}% of a core over {time.monotonic() - wall0:.1f}s")
        assert {t["id"] for t in store_tasks(store, "/storm/sleep")} == ids  # nothing killed
        assert len([e for e in changes if e["alive"] is False]) >= TASKS
        assert cpu < 0.5
