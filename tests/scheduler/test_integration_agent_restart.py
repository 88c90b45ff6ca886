"""An agent restarted with its work dir (an agent upgrade), with accessd's scheduler and executor.

localmesos's `restart?keep_executors=true` stops the agent process (its port refuses
connections) while executors and services keep running, and brings it back with the same id
after `down_seconds`; then, as a Mesos agent with checkpointing, it waits
`--executor-reregistration-timeout` (2 s) for each executor to SUBSCRIBE again and kills the
others, their tasks TASK_GONE (TASK_LOST to frameworks that are not partition-aware)
"Executor did not reregister within 2secs".

The agents stay down 8 s: pymesos's own reconnect backoff (2, 4, 8 s ± a quarter) then has no
attempt between 7.5 s and 10.5 s, so an executor that uses it misses the 8-10 s window every
time; accessd's executor, capped by MESOS_SUBSCRIPTION_BACKOFF_MAX, is back within a second.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from scheduler.deployments import task_is_ready
from tests.executor.proctable import live_with_environ
from tests.fixtures_scheduler import deploy_app, scheduler_cluster, store_tasks
from tests.scheduler.test_integration_executor import served_app
from tests.support import wait_until

DOWN_SECONDS = 8.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    work = tmp_path_factory.mktemp("agent-restart")
    with scheduler_cluster(work) as (mesos, store, sched):
        yield mesos, store, sched, work


def ready(store, app_id):
    return [t for t in store_tasks(store, app_id, None) if task_is_ready(t, True)]


def restart_agent(mesos, agent: str, down_seconds: float) -> dict:
    return mesos._call("POST", f"/_localmesos/agents/{agent}/restart?keep_executors=true"
                               f"&down_seconds={down_seconds:g}")


def executors(mesos) -> dict[str, dict]:
    """executor id (= task id for accessd's executor) -> {"pid", "subscribed", "agent"}"""
    return {e["id"]: dict(e, agent=a["hostname"], running=a["running"])
            for a in mesos.agents() for e in a["executors"]}


def lost_events(store, task_ids) -> list[dict]:
    return [e for _, e in store.events_since(0, limit=100000)
            if e.get("eventType") == "status_update_event" and e.get("taskId") in task_ids
            and e.get("taskStatus") not in ("TASK_STAGING", "TASK_STARTING", "TASK_RUNNING")]


def test_agent_restart_keeps_executor_tasks_running_and_healthy(cluster):
    mesos, store, sched, work = cluster
    deploy_app(store, served_app("/restart/web", 3, work / "www"))
    tasks = wait_until(lambda: len(r := ready(store, "/restart/web")) == 3 and r, timeout=60,
                       message="3 healthy tasks")
    ids = {t["id"] for t in tasks}
    before = executors(mesos)
    agents = sorted({before[i]["agent"] for i in ids})
    pids = {i: before[i]["pid"] for i in ids}

    for agent in agents:
        restart_agent(mesos, agent, DOWN_SECONDS)
    went_down = time.monotonic()
    wait_until(lambda: not any(a["running"] for a in mesos.agents() if a["hostname"] in agents),
               timeout=5, message="the agents to go down")
    wait_until(lambda: all(a["running"] for a in mesos.agents() if a["hostname"] in agents),
               timeout=DOWN_SECONDS + 5, message="the agents to come back")
    back = time.monotonic()
    now = wait_until(lambda: all((e := executors(mesos).get(i)) and e["subscribed"] for i in ids)
                     and executors(mesos), timeout=10,
                     message="every executor to re-subscribe")
    print(f"agents down {back - went_down:.2f}s; back -> all {len(ids)} executors re-subscribed "
          f"in {time.monotonic() - back:.2f}s")
    # Re-subscribed (so the window's end kills nothing) by the very same processes.
    assert {i: now[i]["pid"] for i in ids} == pids
    final = wait_until(lambda: len(r := ready(store, "/restart/web")) == 3 and r, timeout=20,
                       message="3 healthy tasks after the restart")
    assert {t["id"] for t in final} == ids, sched.output()
    assert {t["id"] for t in store_tasks(store, "/restart/web", None)} == ids
    assert lost_events(store, ids) == []
    assert all(t["healthy"] is True and t["state"] == "TASK_RUNNING" for t in final)
    for pid in pids.values():
        os.kill(pid, 0)  # the very same executor processes


def test_executor_not_back_within_the_window_is_killed_and_replaced(cluster):
    mesos, store, sched, work = cluster
    deploy_app(store, served_app("/restart/stuck", 1, work / "www"))
    (task,) = wait_until(lambda: len(r := ready(store, "/restart/stuck")) == 1 and r, timeout=60,
                         message="a healthy task")
    ex = executors(mesos)[task["id"]]
    restart_agent(mesos, ex["agent"], 1.0)
    os.killpg(ex["pid"], signal.SIGSTOP)  # hung (the executor's group): it will not re-subscribe
    try:
        replaced = wait_until(
            lambda: len(r := ready(store, "/restart/stuck")) == 1 and r[0]["id"] != task["id"]
            and r, timeout=60, message="a healthy replacement")
    except AssertionError:
        print(mesos.proc.output()[-6000:])
        print(sched.output()[-6000:])
        print(store_tasks(store, "/restart/stuck", None))
        raise
    finally:
        try:
            os.killpg(ex["pid"], signal.SIGCONT)
        except ProcessLookupError:
            pass
    (lost,) = lost_events(store, {task["id"]})
    assert lost["taskStatus"] == "TASK_GONE"  # TASK_LOST for a framework not partition-aware
    assert lost["message"] == "Executor did not reregister within 2secs"
    wait_until(lambda: not _alive(ex["pid"]), timeout=10, message="the hung executor killed")
    assert replaced[0]["healthy"] is True


def test_executor_dead_while_its_agent_was_away_is_failed_and_replaced(cluster):
    mesos, store, sched, work = cluster
    deploy_app(store, served_app("/restart/dead", 1, work / "www"))
    (task,) = wait_until(lambda: len(r := ready(store, "/restart/dead")) == 1 and r, timeout=60,
                         message="a healthy task")
    ex = executors(mesos)[task["id"]]
    restart_agent(mesos, ex["agent"], 2.0)
    wait_until(lambda: not any(a["running"] for a in mesos.agents()
                               if a["hostname"] == ex["agent"]), timeout=5,
               message="the agent to go down")
    os.killpg(ex["pid"], signal.SIGKILL)  # the executor's process group
    wait_until(lambda: len(r := ready(store, "/restart/dead")) == 1 and r[0]["id"] != task["id"]
               and r, timeout=60, message="a healthy replacement")
    (ended,) = lost_events(store, {task["id"]})
    # As a Mesos agent that finds, on recovery, an executor gone: its tasks fail, "Executor
    # terminated" (source and reason: tests/executor/test_agent_restart.py).
    assert (ended["taskStatus"], ended["message"]) == ("TASK_FAILED", "Executor terminated")
    assert f"task {task['id']} TASK_FAILED (Executor terminated)" in sched.output()


def test_update_sent_while_the_agent_was_away_reaches_the_scheduler_and_the_store(cluster):
    mesos, store, sched, work = cluster
    deploy_app(store, served_app("/restart/away", 1, work / "www"))
    (task,) = wait_until(lambda: len(r := ready(store, "/restart/away")) == 1 and r, timeout=60,
                         message="a healthy task")
    ex = executors(mesos)[task["id"]]
    restart_agent(mesos, ex["agent"], 4.0)
    wait_until(lambda: not any(a["running"] for a in mesos.agents()
                               if a["hostname"] == ex["agent"]), timeout=5,
               message="the agent to go down")
    # The service dies while its agent is away: the executor (alive) reports TASK_FAILED and
    # keeps the update, unacknowledged, until an agent takes it.
    (service,) = live_with_environ(f"MESOS_TASK_ID={task['id']}\0")
    os.kill(service, signal.SIGKILL)
    wait_until(lambda: not live_with_environ(f"MESOS_TASK_ID={task['id']}\0"), timeout=5,
               message="the service to die")
    assert _alive(ex["pid"])
    assert lost_events(store, {task["id"]}) == []  # nobody could have told the scheduler yet
    assert not all(a["running"] for a in mesos.agents()), "the agent came back too soon"
    (ended,) = wait_until(lambda: lost_events(store, {task["id"]}), timeout=30,
                          message="the update sent while the agent was away, stored")
    assert ended["taskStatus"] == "TASK_FAILED"
    assert "signal" in ended["message"], ended  # the executor's own words, not the agent's
    assert store.get_task(task["id"]) is None
    wait_until(lambda: len(r := ready(store, "/restart/away")) == 1 and r[0]["id"] != task["id"],
               timeout=60, message="a healthy replacement")
    # Acknowledged once stored, the executor's work is done: it exits.
    wait_until(lambda: not _alive(ex["pid"]), timeout=15, message="the executor to exit")
    assert len(lost_events(store, {task["id"]})) == 1


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False
