"""The scheduler against the embedded cluster: constraints, waiting reasons, killSelection,
GROUP_BY spreading and replacing the tasks of a stopped agent.

Real processes: localmesos (3 agents, racks r1 r1 r2) and `accessd scheduler`; desired state
written to the store as the API writes it. Tasks use the Mesos command executor (`//cmd`) and
`sleep`, so these tests depend on neither the executor nor the services.
"""

from __future__ import annotations

import collections
import time

import pytest

from tests.fixtures_scheduler import (
    delete_app,
    deploy_app,
    mesos_tasks,
    scale_app,
    scheduler_cluster,
    start_scheduler,
    store_tasks,
)
from tests.support import wait_until

RACKS = ["rack:r1", "rack:r1", "rack:r2"]


def sleeper(app_id, instances, **fields):
    return {"id": app_id, "cmd": "sleep 600", "cpus": 0.1, "mem": 16, "instances": instances,
            "executor": "//cmd", "backoffSeconds": 0.5, **fields}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    work = tmp_path_factory.mktemp("cluster")
    with scheduler_cluster(work, attributes=RACKS) as (mesos, store, sched):
        yield mesos, store, sched


def running(store, app_id):
    return store_tasks(store, app_id, "TASK_RUNNING")


def cluster_running(mesos, sched):
    return mesos_tasks(mesos.state(), sched.framework_id, ("TASK_RUNNING",))


def test_unique_hostname_runs_three_of_six_and_says_why(cluster):
    mesos, store, sched = cluster
    started = time.monotonic()
    mark = store.latest_event_id()
    deploy_app(store, sleeper("/it/unique", 6, constraints=[["hostname", "UNIQUE"]]))
    tasks = wait_until(lambda: len(r := running(store, "/it/unique")) == 3 and r, timeout=30,
                       message="3 running tasks of /it/unique")
    print(f"app created -> 3 RUNNING in {time.monotonic() - started:.2f}s")
    assert len({t["host"] for t in tasks}) == 3
    # The status is rewritten each round: one written while fewer tasks were placed (a count
    # of 4 or 5) may still be stored; wait for the round that saw the 3 placed.
    status = wait_until(lambda: (s := store.get_app_status("/it/unique")) and s.get("waiting")
                        and s["waiting"].get("count") == 3 and s, timeout=20,
                        message="a waiting reason for the 3 unplaced instances")
    assert status["waiting"]["reason"] == "constraint hostname UNIQUE"
    # the cluster agrees with the store
    ours = {t["id"] for t in store_tasks(store, "/it/unique", None)}
    assert set(cluster_running(mesos, sched)) >= ours
    assert len(ours) == 3
    # and nothing beyond 3 was ever launched: every launch since the deploy is in the event log
    # (the store's task list holds live tasks only, so it cannot tell)
    launched = {e["taskId"] for _, e in store.events_since(mark, limit=100_000)
                if e.get("eventType") == "status_update_event" and e.get("appId") == "/it/unique"
                and e.get("taskStatus") == "TASK_STAGING"}
    assert launched == ours, launched ^ ours
    delete_app(store, "/it/unique", force=True)
    wait_until(lambda: not store_tasks(store, "/it/unique", None), timeout=20,
               message="the app's tasks gone")


def test_scale_down_kills_the_youngest(cluster):
    # An app of its own, 3 of 6 placed (hostname UNIQUE on 3 agents), whatever ran before.
    mesos, store, sched = cluster
    deploy_app(store, sleeper("/it/shrink", 6, constraints=[["hostname", "UNIQUE"]]))
    tasks = wait_until(lambda: len(r := running(store, "/it/shrink")) == 3 and r, timeout=30,
                       message="3 running tasks of /it/shrink")
    youngest = max(tasks, key=lambda t: (t["stagedAt"], t["id"]))
    started = time.monotonic()
    scale_app(store, "/it/shrink", 2, force=True)
    left = wait_until(lambda: len(r := store_tasks(store, "/it/shrink", None)) == 2 and r,
                      timeout=20, message="2 tasks left")
    print(f"scale 6 -> 2 took effect in {time.monotonic() - started:.2f}s")
    assert youngest["id"] not in {t["id"] for t in left}
    wait_until(lambda: youngest["id"] not in cluster_running(mesos, sched), timeout=20,
               message="the youngest task gone from the cluster")
    wait_until(lambda: (store.get_app_status("/it/shrink") or {}).get("waiting") is None,
               timeout=10, message="no waiting reason once nothing waits")
    delete_app(store, "/it/shrink", force=True)
    wait_until(lambda: not store_tasks(store, "/it/shrink", None), timeout=20,
               message="deleted app's tasks gone")


def test_group_by_rack_spreads_evenly(cluster):
    mesos, store, sched = cluster
    deploy_app(store, sleeper("/it/grouped", 4, constraints=[["rack", "GROUP_BY"]]))
    tasks = wait_until(lambda: len(r := running(store, "/it/grouped")) == 4 and r, timeout=30,
                       message="4 running grouped tasks")
    per_rack = collections.Counter(t["attributes"].get("rack") for t in tasks)
    assert per_rack == {"r1": 2, "r2": 2}
    delete_app(store, "/it/grouped", force=True)
    wait_until(lambda: not store_tasks(store, "/it/grouped", None), timeout=20,
               message="grouped tasks gone")


def test_stopped_agent_tasks_are_replaced_within_constraints(cluster):
    mesos, store, sched = cluster
    deploy_app(store, sleeper("/it/moving", 2, constraints=[["hostname", "UNIQUE"]]))
    tasks = wait_until(lambda: len(r := running(store, "/it/moving")) == 2 and r, timeout=30,
                       message="2 running tasks")
    victim = tasks[0]
    started = time.monotonic()
    mesos.stop_agent(victim["agentId"])
    replaced = wait_until(
        lambda: len(r := running(store, "/it/moving")) == 2
        and victim["id"] not in {t["id"] for t in r} and r,
        timeout=60, message="the lost task replaced")
    print(f"agent stopped -> replacement RUNNING in {time.monotonic() - started:.2f}s")
    hosts = [t["host"] for t in replaced]
    assert len(set(hosts)) == 2 and victim["host"] not in hosts
    failure = store.get_app_status("/it/moving")["lastTaskFailure"]
    assert failure["taskId"] == victim["id"]
    # leave the cluster as it was for the other tests: the app gone, three agents again
    delete_app(store, "/it/moving", force=True)
    wait_until(lambda: not store_tasks(store, "/it/moving", None), timeout=20,
               message="moving tasks gone")
    mesos.start_agent(victim["agentId"])
    wait_until(lambda: sum(1 for a in mesos.agents() if a["running"]) == 3, timeout=20,
               message="three running agents again")


def test_operator_kill_requests(cluster):
    mesos, store, sched = cluster
    deploy_app(store, sleeper("/it/killme", 2))
    tasks = wait_until(lambda: len(r := running(store, "/it/killme")) == 2 and r, timeout=30,
                       message="2 running tasks")
    # a plain kill: the task dies and is replaced
    started = time.monotonic()
    store.request_kills([tasks[0]["id"]], scale=False)
    wait_until(lambda: tasks[0]["id"] not in cluster_running(mesos, sched), timeout=10,
               message="the killed task gone from the cluster")
    print(f"kill request -> task gone from the cluster in {time.monotonic() - started:.2f}s")
    # The store may still show the victim RUNNING until its TASK_KILLED is stored: wait for the
    # replacement itself, not for a count of two.
    after = wait_until(lambda: len(r := running(store, "/it/killme")) == 2
                       and tasks[0]["id"] not in {t["id"] for t in r} and r, timeout=30,
                       message="a replacement")
    # The replacement is launched as soon as the kill is sent (a task being killed no longer
    # counts); the request is consumed only once the victim's TASK_KILLED is stored.
    wait_until(lambda: store.pending_kill_requests() == [], timeout=10,
               message="the kill request consumed")
    assert store.get_task(tasks[0]["id"]) is None
    # a kill with scale: the app shrinks and nothing replaces it
    victim = after[0]
    store.request_kills([victim["id"]], scale=True, force=True)
    wait_until(lambda: [t["id"] for t in store_tasks(store, "/it/killme", None)]
               == [after[1]["id"]], timeout=10, message="one task left")
    assert store.get_app("/it/killme")["instances"] == 1
    # the task's deletion and its request's completion are two writes
    wait_until(lambda: store.pending_kill_requests() == [], timeout=10,
               message="the scale kill request consumed")
    delete_app(store, "/it/killme", force=True)
    wait_until(lambda: not store_tasks(store, "/it/killme", None), timeout=20,
               message="killme tasks gone")


def test_principal_is_passed_to_the_master(cluster, tmp_path):
    mesos, _, _ = cluster
    other = start_scheduler(mesos.master, tmp_path / "other.db",
                            ["--principal", "accessd-test", "--secret", "s3cret",
                             "--name", "accessd-auth"])
    try:
        fw = wait_until(lambda: [f for f in mesos.state()["frameworks"]
                                 if f["id"] == other.framework_id], timeout=10,
                        message="the second framework in /state")[0]
        assert fw["principal"] == "accessd-test" and fw["name"] == "accessd-auth"
        assert fw["failover_timeout"] == 604800
    finally:
        other.signal(15)
        assert other.popen.wait(15) == 0
        other.stop()
