"""Many apps at once against the embedded cluster: 10 apps × 3 instances created in one burst
all run, spread as their constraints ask, with exactly one task per wanted instance; deleting
them all leaves nothing on the cluster. Prints the time from creation to all RUNNING.
"""

from __future__ import annotations

import collections
import time

import pytest

from tests.fixtures_scheduler import (
    delete_app,
    deploy_app,
    mesos_tasks,
    scheduler_cluster,
    store_tasks,
)
from tests.support import wait_until

APPS = [f"/many/app{i}" for i in range(10)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    work = tmp_path_factory.mktemp("many")
    with scheduler_cluster(work) as (mesos, store, sched):
        yield mesos, store, sched


def test_thirty_tasks_in_one_burst_then_gone(cluster):
    mesos, store, sched = cluster
    started = time.monotonic()
    for app_id in APPS:
        deploy_app(store, {"id": app_id, "cmd": "sleep 600", "cpus": 0.05, "mem": 8,
                           "instances": 3, "executor": "//cmd",
                           "constraints": [["hostname", "UNIQUE"]]})

    def all_running():
        tasks = store_tasks(store, None, "TASK_RUNNING")
        return len(tasks) == 30 and tasks

    tasks = wait_until(all_running, timeout=60, message="30 running tasks")
    print(f"10 apps x 3 created -> 30 RUNNING in {time.monotonic() - started:.2f}s")
    per_app = collections.defaultdict(set)
    for t in tasks:
        per_app[t["appId"]].add(t["host"])
    assert all(len(per_app[a]) == 3 for a in APPS)  # UNIQUE hostname held for every app
    assert set(mesos_tasks(mesos.state(), sched.framework_id)) == {t["id"] for t in tasks}

    wait_until(lambda: not store.list_deployments(True), timeout=10,
               message="every create deployment finished")
    started = time.monotonic()
    for app_id in APPS:
        delete_app(store, app_id)
    wait_until(lambda: not mesos_tasks(mesos.state(), sched.framework_id), timeout=60,
               message="no task left on the cluster")
    print(f"10 apps deleted -> cluster empty in {time.monotonic() - started:.2f}s")
    wait_until(lambda: store.list_tasks() == [], timeout=10,
               message="every KILLED update recorded")
    wait_until(lambda: not store.list_deployments(True), timeout=10,
               message="every deployment finished")

    def terminated():
        return [e["eventType"] for _, e in store.events_since(0, limit=100000)
                ].count("app_terminated_event")

    # the event is appended after the deployment is stored as succeeded (another write)
    wait_until(lambda: terminated() >= 10, timeout=10, message="10 app_terminated_event")
    assert terminated() == 10
