"""The scheduler against the embedded cluster: launch backoff on a crashing command, and a
scheduler killed with SIGKILL coming back as the same framework with the same tasks.
"""

from __future__ import annotations

import signal
import time

import pytest

from scheduler.spec import parse_time
from scheduler.sqlite_state import open_state
from tests.fixtures_mesos import start_localmesos
from tests.fixtures_scheduler import (
    agent_resources,
    delete_app,
    deploy_app,
    mesos_tasks,
    scheduler_procs,
    start_scheduler,
    store_tasks,
)
from tests.support import assert_no_traceback, wait_until, watch_processes


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    work = tmp_path_factory.mktemp("failover")
    mesos = start_localmesos(work / "mesos", agents=3, resources=agent_resources())
    store = open_state(str(work / "state.db"))
    box = {"sched": None}
    with watch_processes() as started:
        try:
            box["sched"] = start_scheduler(mesos.master, work / "state.db",
                                           ["--refuse-seconds", "1"])
            yield mesos, store, box, work
        finally:
            if box["sched"] is not None:
                box["sched"].stop()
            store.close()
            mesos.stop()
    # every scheduler of the module (killed, stopped, replaced) lived through failovers and
    # reconciliation: none logged an exception, anywhere in its output
    assert_no_traceback(scheduler_procs(started))


STEADY = {"id": "/it/steady", "cmd": "sleep 600", "cpus": 0.1, "mem": 16, "executor": "//cmd",
          "instances": 3}


# Each test brings the module's cluster to the state it needs (scheduler up or down, the steady
# app running), so none depends on which tests ran before it.
def scheduler_up(cluster):
    mesos, _, box, work = cluster
    if box["sched"] is None or box["sched"].popen.poll() is not None:
        box["sched"] = start_scheduler(mesos.master, work / "state.db", ["--refuse-seconds", "1"])
    return box["sched"]


def scheduler_down(cluster) -> None:
    _, _, box, _ = cluster
    sched = box["sched"]
    if sched is not None and sched.popen.poll() is None:
        sched.signal(signal.SIGTERM)
        assert sched.popen.wait(15) == 0
    box["sched"] = None


def steady_tasks(cluster) -> set[str]:
    """/it/steady deployed, its 3 tasks running in the store and the cluster; their ids."""
    mesos, store, box, _ = cluster
    sched = scheduler_up(cluster)
    if store.get_app(STEADY["id"]) is None:
        deploy_app(store, STEADY)

    def three():
        ids = {t["id"] for t in store_tasks(store, STEADY["id"])}
        return len(ids) == 3 and ids <= set(mesos_tasks(mesos.state(), sched.framework_id,
                                                         ("TASK_RUNNING",))) and ids
    return wait_until(three, timeout=30, message="3 running tasks of /it/steady")


def test_crashing_command_is_delayed_with_growing_delays(cluster):
    mesos, store, box, _ = cluster
    scheduler_up(cluster)
    deploy_app(store, {"id": "/it/crash", "cmd": "exit 3", "cpus": 0.1, "mem": 16,
                       "executor": "//cmd", "instances": 1, "backoffSeconds": 0.5,
                       "backoffFactor": 2, "maxLaunchDelaySeconds": 4})
    seen: list[float] = []
    delayed_at_least_once = False

    def four_delays():
        nonlocal delayed_at_least_once
        status = store.get_app_status("/it/crash") or {}
        delay = status.get("delay")
        if delay and (not seen or delay["seconds"] != seen[-1]):
            seen.append(delay["seconds"])
        if delay and parse_time(delay["until"]) > time.time():
            delayed_at_least_once = True  # what the API shows as "Delayed"
        return len(seen) >= 4

    wait_until(four_delays, timeout=45, interval=0.02, message="four successive delays")
    assert seen[:4] == [0.5, 1.0, 2.0, 4.0]
    assert delayed_at_least_once
    status = store.get_app_status("/it/crash")
    assert status["consecutiveFailures"] >= 4
    assert status["lastTaskFailure"]["state"] in ("TASK_FAILED", "TASK_FINISHED")
    assert status["lastTaskFailure"]["appId"] == "/it/crash"
    delete_app(store, "/it/crash", force=True)


def test_sigkilled_scheduler_comes_back_with_same_framework_and_tasks(cluster):
    mesos, store, box, work = cluster
    before = steady_tasks(cluster)
    old = box["sched"]
    framework_id = old.framework_id
    assert set(mesos_tasks(mesos.state(), framework_id)) >= before

    old.signal(signal.SIGKILL)
    old.popen.wait(10)
    # the tasks outlive the scheduler (failover timeout: a week)
    assert set(mesos_tasks(mesos.state(), framework_id, ("TASK_RUNNING",))) >= before

    started = time.monotonic()
    box["sched"] = new = start_scheduler(mesos.master, work / "state.db",
                                         ["--refuse-seconds", "1"])
    print(f"restarted scheduler re-registered in {time.monotonic() - started:.2f}s")
    assert new.framework_id == framework_id
    new.wait_for_line(lambda line: "reconciling" in line, timeout=10)

    # For a while after re-registering (reconciliation answers, offers, plans), the store and
    # the cluster hold exactly the same three tasks: nothing lost, nothing duplicated.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        in_store = {t["id"] for t in store_tasks(store, "/it/steady", None)}
        # (this app's tasks only: a task of the previous test's app may still be ending)
        in_cluster = {t for t in mesos_tasks(mesos.state(), framework_id)
                      if t.startswith("it_steady.")}
        assert in_store == before, in_store ^ before
        assert in_cluster == before, in_cluster ^ before
        time.sleep(0.2)
    assert all(t["state"] == "TASK_RUNNING" for t in store_tasks(store, "/it/steady", None))
    frameworks = [f for f in mesos.state()["frameworks"] if f.get("name") == "accessd"]
    assert [f["id"] for f in frameworks] == [framework_id]


def test_sigterm_stops_with_failover_and_tasks_survive(cluster):
    mesos, store, box, _ = cluster
    before = steady_tasks(cluster)
    sched = box["sched"]
    framework_id = sched.framework_id
    sched.signal(signal.SIGTERM)
    assert sched.popen.wait(15) == 0
    box["sched"] = None
    assert set(mesos_tasks(mesos.state(), framework_id, ("TASK_RUNNING",))) >= before


def test_restart_reconciles_what_store_and_master_disagree_on(cluster):
    # The scheduler is stopped (previous test). Make the store disagree with the master both
    # ways: a STAGING document for a task the master never heard of (as if we died between
    # storing it and ACCEPT), and a running task the store forgot.
    mesos, store, box, work = cluster
    steady_tasks(cluster)
    scheduler_down(cluster)
    tasks = store_tasks(store, "/it/steady")
    forgotten = tasks[0]
    store.delete_task(forgotten["id"])
    phantom = dict(tasks[1], id="it_steady.00000000000000000000000000000000",
                   state="TASK_STAGING", startedAt=None)
    store.upsert_task(phantom)

    box["sched"] = sched = start_scheduler(mesos.master, work / "state.db",
                                           ["--refuse-seconds", "1"])
    framework_id = sched.framework_id

    def converged():
        in_store = {t["id"] for t in store_tasks(store, "/it/steady")}
        in_cluster = set(mesos_tasks(mesos.state(), framework_id))
        # the phantom is STAGING, never among the RUNNING ones: look for it in any state
        return (len(in_store) == 3 and in_store == in_cluster
                and store.get_task(phantom["id"]) is None
                and forgotten["id"] not in in_cluster)

    wait_until(converged, timeout=30, message="store and cluster agree on 3 tasks")
    # The log lines reach us through a pipe and a reader thread, possibly after the store and
    # the master changed: wait for each line rather than reading the output collected so far.
    # Reconciled with its agent id, a task its (registered) agent never heard of is TASK_GONE
    # for a partition-aware framework (TASK_LOST for the others).
    sched.wait_for_line(lambda line: f"task {phantom['id']} TASK_GONE" in line, timeout=10)
    sched.wait_for_line(lambda line: f"unknown task {forgotten['id']}: killing it" in line,
                        timeout=10)


def test_master_failover_keeps_framework_and_tasks(cluster):
    mesos, store, box, work = cluster
    before = steady_tasks(cluster)
    sched = box["sched"]
    framework_id = sched.framework_id
    registrations = sum("registered framework_id=" in line for line in sched.lines)
    started = time.monotonic()
    mesos.restart_master()
    wait_until(lambda: sum("registered framework_id=" in line for line in sched.lines)
               > registrations, timeout=60, message="re-registration after master failover")
    print(f"master restarted -> scheduler re-registered in {time.monotonic() - started:.2f}s")
    last = [line for line in sched.lines if "registered framework_id=" in line][-1]
    assert f"registered framework_id={framework_id} " in last
    wait_until(lambda: set(mesos_tasks(mesos.state(), framework_id, ("TASK_RUNNING",)))
               == before, timeout=30, message="the same tasks running after failover")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:  # and no duplicates appear while things settle
        assert {t["id"] for t in store_tasks(store, "/it/steady", None)} == before
        time.sleep(0.2)


def test_tasks_lost_while_the_scheduler_was_down_are_replaced(cluster):
    mesos, store, box, work = cluster
    steady_tasks(cluster)
    sched = box["sched"]
    framework_id = sched.framework_id
    before = store_tasks(store, "/it/steady")
    sched.signal(signal.SIGKILL)
    sched.popen.wait(10)
    box["sched"] = None
    agent = before[0]["agentId"]
    victims = {t["id"] for t in before if t["agentId"] == agent}  # no constraint: maybe two
    mesos.stop_agent(agent)  # its tasks die while nobody listens

    started = time.monotonic()
    box["sched"] = start_scheduler(mesos.master, work / "state.db", ["--refuse-seconds", "1"])
    assert box["sched"].framework_id == framework_id

    def replaced():
        in_store = {t["id"] for t in store_tasks(store, "/it/steady")}
        in_cluster = set(mesos_tasks(mesos.state(), framework_id))
        return len(in_store) == 3 and not in_store & victims and in_store == in_cluster

    wait_until(replaced, timeout=30, message="the lost task replaced after the restart")
    print(f"restart after an agent loss -> 3 RUNNING again in "
          f"{time.monotonic() - started:.2f}s")
    # accessd is partition-aware: the lost agent's tasks are TASK_UNREACHABLE, expunged at
    # once under Marathon's default unreachableStrategy (0 s), and counted as a failure then.
    failure = wait_until(
        lambda: (f := store.get_app_status("/it/steady")["lastTaskFailure"])
        and f["taskId"] in victims and f, timeout=10, message="the loss recorded")
    assert failure["state"] == "TASK_UNREACHABLE"
    mesos.start_agent(agent)  # the machine comes back for whichever test runs next
