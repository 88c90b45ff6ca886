"""The scheduler with accessd's executor and HTTP health checks, against the embedded cluster:
a rolling restart keeps the healthy capacity (old tasks die only once replacements are healthy),
and an unhealthy task is killed and replaced while its siblings keep running.

Each task serves its own directory with `python -m http.server`; its health check asks for the
file `health` in it, so the test makes one task unhealthy by deleting that file.
"""

from __future__ import annotations

import shlex
import time

import pytest

from scheduler.deployments import task_is_ready
from tests.fixtures_scheduler import (
    capacity_from_events,
    deploy_app,
    restart_app,
    scheduler_cluster,
    store_tasks,
)
from tests.support import PYTHON, wait_until


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    work = tmp_path_factory.mktemp("executor")
    with scheduler_cluster(work) as (mesos, store, sched):
        yield mesos, store, sched, work


def served_app(app_id, instances, docroot):
    root = shlex.quote(str(docroot))
    cmd = (f"mkdir -p {root}/$MESOS_TASK_ID && touch {root}/$MESOS_TASK_ID/health && "
           f"exec {shlex.quote(PYTHON)} -m http.server $PORT0 --bind $HOST "
           f"--directory {root}/$MESOS_TASK_ID")
    return {"id": app_id, "cmd": cmd, "cpus": 0.1, "mem": 32, "instances": instances,
            "portDefinitions": [{"port": 0, "name": "http"}], "backoffSeconds": 0.5,
            "taskKillGracePeriodSeconds": 2,
            "healthChecks": [{"protocol": "HTTP", "path": "/health", "portIndex": 0,
                              "gracePeriodSeconds": 10, "intervalSeconds": 1,
                              "timeoutSeconds": 0.5, "maxConsecutiveFailures": 2}]}


def ready(store, app_id):
    return [t for t in store_tasks(store, app_id, None) if task_is_ready(t, True)]


def test_rolling_restart_waits_for_healthy_replacements(cluster):
    mesos, store, sched, work = cluster
    started = time.monotonic()
    created = deploy_app(store, served_app("/it/web", 2, work / "www"))
    first = wait_until(lambda: len(r := ready(store, "/it/web")) == 2 and r, timeout=40,
                       message="2 healthy tasks")
    print(f"app created -> 2 healthy in {time.monotonic() - started:.2f}s")
    wait_until(lambda: store.get_deployment(created["id"])["status"] == "succeeded",
               timeout=10, message="the create deployment to succeed")
    old_ids = {t["id"] for t in first}

    mark = store.latest_event_id()
    deployment = restart_app(store, "/it/web")
    wait_until(lambda: store.get_deployment(deployment["id"])["status"] == "succeeded"
               and not {t["id"] for t in store_tasks(store, "/it/web", None)} & old_ids,
               timeout=60, message="the restart to succeed with every task replaced")
    # minimumHealthCapacity 1.0: at every kill of an old task, both others were healthy (the
    # event log holds every change; sampling the store could miss a short dip)
    events = [(e["eventType"], e) for _, e in store.events_since(mark, limit=100_000)]
    at_kills, most = capacity_from_events(events, "/it/web", old_ids)
    assert {task for task, _ in at_kills} == old_ids, at_kills
    assert all(left >= 2 for _, left in at_kills), f"healthy left at each kill: {at_kills}"
    assert most <= 4, f"{most} tasks at once (> 4: maximumOverCapacity 1.0)"
    final = ready(store, "/it/web")
    assert len(final) == 2 and not {t["id"] for t in final} & old_ids
    version = store.get_app("/it/web")["versionInfo"]["lastConfigChangeAt"]
    assert all(t["version"] == version for t in final)


def test_unhealthy_task_is_replaced_and_siblings_stay(cluster):
    mesos, store, sched, work = cluster
    mark = store.latest_event_id()
    deploy_app(store, served_app("/it/sick", 2, work / "sick"))  # its own app: runs alone too
    tasks = wait_until(lambda: len(r := ready(store, "/it/sick")) == 2 and r, timeout=40,
                       message="2 healthy tasks")
    sick, sibling = tasks
    (work / "sick" / sick["id"] / "health").unlink()
    started = time.monotonic()
    replaced = wait_until(
        lambda: len(r := ready(store, "/it/sick")) == 2
        and sick["id"] not in {t["id"] for t in r} and r,
        timeout=60, message="the unhealthy task replaced by a healthy one")
    print(f"health file removed -> healthy replacement in {time.monotonic() - started:.2f}s")
    assert sibling["id"] in {t["id"] for t in replaced}, sched.output()
    events = [e for _, e in store.events_since(mark, limit=10000)]
    kills = [e for e in events if e["eventType"] == "unhealthy_task_kill_event"]
    assert [e["taskId"] for e in kills] == [sick["id"]]
    status = store.get_app_status("/it/sick")
    assert status["lastTaskFailure"]["taskId"] == sick["id"]
