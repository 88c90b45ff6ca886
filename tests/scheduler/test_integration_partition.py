"""The partition-aware scheduler on localmesos: an agent that stops answering makes its tasks
TASK_UNREACHABLE after the master's ping timeouts (0.2 s x 3 here); the app's
`unreachableStrategy` decides when a replacement is launched, and a task that comes back
before it is expunged is kept while the surplus instance is killed by `killSelection`.
"""

from __future__ import annotations

import time

import pytest

from scheduler.spec import SpecError, parse_app, parse_time
from tests.fixtures_scheduler import deploy_app, scheduler_cluster, store_tasks
from tests.support import wait_until


def _strategy_supported() -> bool:
    try:
        parse_app({"id": "/x", "cmd": "true", "unreachableStrategy":
                   {"inactiveAfterSeconds": 1, "expungeAfterSeconds": 2}})
        return True
    except SpecError:
        return False


pytestmark = pytest.mark.skipif(not _strategy_supported(),
                                reason="the app spec does not accept unreachableStrategy yet")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    work = tmp_path_factory.mktemp("partition")
    with scheduler_cluster(work, extra_args=("--agent-ping-timeout", "0.2",
                                             "--max-agent-ping-timeouts", "3")) as (m, s, p):
        yield m, s, p


def app(app_id: str, inactive: int, expunge: int) -> dict:
    return {"id": app_id, "cmd": "sleep 600", "cpus": 0.1, "mem": 32, "instances": 1,
            "portDefinitions": [], "killSelection": "YOUNGEST_FIRST",
            "unreachableStrategy": {"inactiveAfterSeconds": inactive,
                                    "expungeAfterSeconds": expunge}}


def agent_control(mesos, hostname: str, action: str) -> None:
    mesos._call("POST", f"/_localmesos/agents/{hostname}/{action}")


def launched_ids(store, app_id: str) -> set[str]:
    return {e["taskId"] for _, e in store.events_since(0, limit=100000)
            if e.get("eventType") == "status_update_event" and e.get("appId") == app_id}


def test_replacement_waits_inactive_after_and_the_returning_task_is_kept(cluster):
    mesos, store, sched = cluster
    deploy_app(store, app("/part/wait", inactive=3, expunge=120))
    (first,) = wait_until(lambda: store_tasks(store, "/part/wait"), timeout=30,
                          message="the task running")
    agent_control(mesos, first["host"], "stop?keep_executors=true")
    away = wait_until(lambda: (t := store.get_task(first["id"]))
                      and t["state"] == "TASK_UNREACHABLE" and t, timeout=10,
                      message="the task unreachable")
    (replacement,) = wait_until(lambda: [t for t in store_tasks(store, "/part/wait")
                                         if t["id"] != first["id"]], timeout=20,
                                message="a replacement running")
    waited = parse_time(replacement["stagedAt"]) - parse_time(away["unreachableSince"])
    print(f"unreachable -> replacement staged after {waited:.2f}s (inactiveAfterSeconds 3)")
    assert waited >= 3.0
    assert store.get_task(first["id"])["state"] == "TASK_UNREACHABLE"  # inactive, not expunged

    agent_control(mesos, first["host"], "start")
    # Back RUNNING within expungeAfterSeconds: kept; YOUNGEST_FIRST kills the replacement.
    final = wait_until(lambda: [t["id"] for t in store_tasks(store, "/part/wait", None)]
                       == [first["id"]] and store_tasks(store, "/part/wait"), timeout=30,
                       message="only the original task left")
    assert final[0]["state"] == "TASK_RUNNING" and "unreachableSince" not in final[0]
    assert launched_ids(store, "/part/wait") == {first["id"], replacement["id"]}


def test_task_back_before_inactive_after_is_never_replaced(cluster):
    mesos, store, sched = cluster
    deploy_app(store, app("/part/brief", inactive=60, expunge=120))
    (first,) = wait_until(lambda: store_tasks(store, "/part/brief"), timeout=30,
                          message="the task running")
    agent_control(mesos, first["host"], "stop?keep_executors=true")
    wait_until(lambda: store.get_task(first["id"])["state"] == "TASK_UNREACHABLE", timeout=10,
               message="the task unreachable")
    started = time.monotonic()
    agent_control(mesos, first["host"], "start")
    wait_until(lambda: store.get_task(first["id"])["state"] == "TASK_RUNNING", timeout=15,
               message="the task back")
    print(f"agent back -> task RUNNING again in {time.monotonic() - started:.2f}s")
    assert launched_ids(store, "/part/brief") == {first["id"]}


def test_master_that_forgot_its_agents_replaces_nothing(cluster):
    """The issue's scenario: a master restarted with an in-memory registry forgets its agents
    for a while; reconciliation answers TASK_UNKNOWN for tasks that still run. Within
    inactiveAfterSeconds nothing is replaced, and when the agents re-register the same tasks
    are RUNNING again."""
    mesos, store, sched = cluster
    deploy_app(store, dict(app("/part/forgot", inactive=30, expunge=120), instances=2))
    tasks = wait_until(lambda: len(r := store_tasks(store, "/part/forgot")) == 2 and r,
                       timeout=30, message="2 tasks running")
    ids = {t["id"] for t in tasks}
    mesos._call("POST", "/_localmesos/master/restart?forget_agents_seconds=3")
    wait_until(lambda: all(store.get_task(i)["state"] == "TASK_UNKNOWN" for i in ids),
               timeout=15, message="both tasks TASK_UNKNOWN")
    started = time.monotonic()
    wait_until(lambda: all(store.get_task(i)["state"] == "TASK_RUNNING" for i in ids),
               timeout=30, message="both tasks RUNNING again")
    print(f"tasks unknown -> RUNNING again {time.monotonic() - started:.2f}s later "
          f"(agents re-register 3s after the restart; unknown tasks reconciled every 5s)")
    assert launched_ids(store, "/part/forgot") == ids
