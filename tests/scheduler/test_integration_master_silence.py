"""A master connection that goes quiet without closing (hung master, half-open TCP connection):
the scheduler notices the missing heartbeats, subscribes again as the same framework, and offers
flow once more; its tasks are neither lost nor duplicated."""

from __future__ import annotations

import time

from tests.fixtures_scheduler import (
    deploy_app,
    mesos_tasks,
    scale_app,
    scheduler_cluster,
    store_tasks,
)
from tests.support import wait_until


def registered_lines(sched) -> list[str]:
    return [line for line in sched.lines if "registered framework_id=" in line]


APP = {"id": "/it/quiet", "cmd": "sleep 600", "cpus": 0.1, "mem": 32, "instances": 1}


def test_silent_master_connection_is_replaced_and_offers_flow_again(tmp_path) -> None:
    with scheduler_cluster(tmp_path, scheduler_args=["--missed-heartbeats", "4"],
                           extra_args=("--heartbeat-interval", "0.5")) as (mesos, store, sched):
        framework_id = sched.framework_id
        deploy_app(store, APP)
        wait_until(lambda: not store.list_deployments(), timeout=30,
                   message="the app's first deployment done")
        first = {t["id"] for t in store_tasks(store, APP["id"])}
        assert len(first) == 1
        registrations = registered_lines(sched)
        assert len(registrations) == 1
        assert mesos.silence_master() == {"silenced": [framework_id]}
        silenced = time.monotonic()
        sched.wait_for_line(lambda line: "connection presumed dead" in line, timeout=30)
        wait_until(lambda: len(registered_lines(sched)) == 2, timeout=30,
                   message="a second registration")
        print(f"silenced -> re-subscribed in {time.monotonic() - silenced:.2f}s")
        assert f"registered framework_id={framework_id} " in registered_lines(sched)[1]
        # Offers come on the stream: a scale-up is launched only if the new one works.
        scale_app(store, APP["id"], 2)
        running = wait_until(lambda: (lambda ids: ids if len(ids) == 2 else None)(
            {t["id"] for t in store_tasks(store, APP["id"])}), timeout=30,
            message="two tasks running after the scale-up")
        assert first < running
        wait_until(lambda: set(mesos_tasks(mesos.state(), framework_id, ("TASK_RUNNING",)))
                   == running, timeout=30, message="the master agrees")
        assert {t["id"] for t in store_tasks(store, APP["id"], None)} == running
