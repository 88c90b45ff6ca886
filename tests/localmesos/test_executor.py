"""Custom executors (pymesos MesosExecutorDriver in a real process) through an agent's executor API."""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from tests.localmesos.helpers import Recorder, key_paths, recorded, scalar
from tests.support import process_group_alive, wait_until

SCRIPT = Path(__file__).with_name("executor_script.py")


def executor_task(tid: str, offer: dict, eid: str = "exec-1", data: Any = None,
                  env: dict[str, str] | None = None, **fields: Any) -> dict:
    command: dict[str, Any] = {"shell": True, "value": f"{sys.executable} {SCRIPT}"}
    variables = [{"name": "PYTHONPATH", "value": str(Path(__file__).parents[2])}]
    variables += [{"name": k, "value": v} for k, v in (env or {}).items()]
    command["environment"] = {"variables": variables}
    task = {"task_id": {"value": tid}, "agent_id": offer["agent_id"], "name": tid,
            "executor": {"executor_id": {"value": eid}, "name": "test-exec", "command": command,
                         "resources": [scalar("cpus", 0.1), scalar("mem", 32)]},
            "resources": [scalar("cpus", 0.2), scalar("mem", 64)]}
    if data is not None:
        task["data"] = base64.b64encode(json.dumps(data).encode()).decode()
    task.update(fields)
    return task


def sandbox_of(lm, eid: str) -> Path:
    return wait_until(lambda: next(lm.work_dir.glob(f"slaves/*/frameworks/*/executors/{eid}/runs/*"),
                                   None), message=f"sandbox of {eid}")


def notes(sandbox: Path) -> list[dict]:
    path = sandbox / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_executor_gets_launch_sends_updates_and_is_acknowledged(lm, sched: Recorder) -> None:
    offer = sched.take_offer()
    sched.driver.launchTasks(offer["id"], [executor_task("e1", offer, data={"finish": "done!"})])
    finished = sched.wait_state("e1", "TASK_FINISHED")
    assert sched.states("e1") == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]
    assert finished["message"] == "done!"
    real = recorded("scheduler_side_updates_for_custom_executor.json")
    for st, want in zip(sched.statuses("e1"), real, strict=True):
        assert set(st) == set(want), (set(st) ^ set(want))
        assert set(st["container_status"]) == set(want["container_status"])
        assert st["source"] == "SOURCE_EXECUTOR"
    sandbox = sandbox_of(lm, "exec-1")
    # The executor's environment is the one a real agent gives (recorded names).
    env = json.loads((sandbox / "env.json").read_text())
    assert set(recorded("executor_env.json")) <= set(env)
    assert env["MESOS_SANDBOX"] == str(sandbox)
    assert env["MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD"] == "2secs"
    # Its side: SUBSCRIBED (recorded shape), LAUNCH with our data, one ACKNOWLEDGED per update
    # carrying the update's uuid.
    seen = wait_until(lambda: len([n for n in notes(sandbox) if n["kind"] == "ACKNOWLEDGED"]) >= 3
                      and notes(sandbox), message="three ACKNOWLEDGED events")
    sub = next(n["payload"] for n in seen if n["kind"] == "SUBSCRIBED")
    real_sub = recorded("executor_events.json")[0]["event"]["subscribed"]
    assert set(sub) == set(real_sub)
    assert set(sub["agent_info"]) == set(real_sub["agent_info"])
    launch = next(n["payload"] for n in seen if n["kind"] == "LAUNCH")
    real_launch = recorded("executor_events.json")[1]["event"]["launch"]["task"]
    assert set(launch) == set(real_launch)
    assert launch["executor"]["framework_id"]["value"] == sched.framework_id
    acked = [n["payload"]["uuid"] for n in seen if n["kind"] == "ACKNOWLEDGED"]
    assert acked == [s["uuid"] for s in sched.statuses("e1")]
    assert key_paths({"type": "ACKNOWLEDGED", "acknowledged": seen[-1]["payload"]}) == key_paths(
        recorded("executor_events.json")[2]["event"])


def test_messages_kill_policy_and_shutdown(lm, sched: Recorder) -> None:
    offer = sched.take_offer()
    policy = {"grace_period": {"nanoseconds": 1_500_000_000}}
    sched.driver.launchTasks(offer["id"], [executor_task("e2", offer, eid="exec-2",
                                                         kill_policy=policy)])
    sched.wait_state("e2", "TASK_RUNNING")
    # Framework message both ways.
    sched.driver.sendFrameworkMessage({"value": "exec-2"}, offer["agent_id"],
                                      base64.b64encode(b"ping").decode())
    msg = sched.wait_for(lambda: sched.of("message"), what="the echoed message")[0]
    assert base64.b64decode(msg["data"]) == b"PING"
    assert msg["executor_id"]["value"] == "exec-2"
    # KILL carries the task's kill policy to the executor.
    sched.driver.killTask({"value": "e2"})
    killed = sched.wait_state("e2", "TASK_KILLED")
    assert killed["message"] == "killed by the test executor"
    sandbox = sandbox_of(lm, "exec-2")
    kill = next(n["payload"] for n in notes(sandbox) if n["kind"] == "KILL")
    assert kill["kill_policy"] == policy
    # The executor stays until the framework goes; TEARDOWN shuts it down.
    pid = next(a["pids"] for a in lm.agents() if a["hostname"] == offer["hostname"])[0]
    sched.driver.stop()
    sched.driver.join()
    wait_until(lambda: not process_group_alive(pid), timeout=10, message="executor gone")
    assert any(n["kind"] == "SHUTDOWN" for n in notes(sandbox))


def test_stubborn_executor_is_killed_after_the_shutdown_grace(lm, sched: Recorder) -> None:
    offer = sched.take_offer()
    sched.driver.launchTasks(offer["id"], [executor_task("e3", offer, eid="exec-3",
                                                         env={"STUBBORN": "1"})])
    sched.wait_state("e3", "TASK_RUNNING")
    pid = next(a["pids"] for a in lm.agents() if a["hostname"] == offer["hostname"])[0]
    sandbox = sandbox_of(lm, "exec-3")
    t0 = time.monotonic()
    sched.driver.stop()  # TEARDOWN: SHUTDOWN to the executor, which ignores it
    sched.driver.join()
    wait_until(lambda: any(n["kind"] == "SHUTDOWN" for n in notes(sandbox)), message="SHUTDOWN")
    wait_until(lambda: not process_group_alive(pid), timeout=10, message="executor killed")
    took = time.monotonic() - t0
    assert 1.8 <= took < 6, took  # the tests run with --executor-shutdown-grace 2
    assert not any(n["kind"] == "exit" for n in notes(sandbox))


def test_executor_exit_fails_its_tasks_and_reports_executor_lost(lm, sched: Recorder) -> None:
    offer = sched.take_offer()
    sched.driver.launchTasks(offer["id"], [executor_task("e4", offer, eid="exec-4",
                                                         env={"EXIT_ON_LAUNCH": "1"})])
    failed = sched.wait_state("e4", "TASK_FAILED")
    assert failed["reason"] == "REASON_EXECUTOR_TERMINATED"
    assert failed["source"] == "SOURCE_AGENT"
    lost = sched.wait_for(lambda: sched.of("executor_lost"), what="executorLost")[0]
    assert lost == {"executor_id": "exec-4", "status": 7 << 8}
    # Its resources (task and executor) are free again.
    wait_until(lambda: all(s["used_resources"]["cpus"] == 0 for s in lm.state()["slaves"]),
               message="resources released")
    assert os.path.exists(sandbox_of(lm, "exec-4") / "env.json")


def running(pid: int) -> bool:
    """The process exists and is not a zombie (killed, not reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_an_executors_tasks_fail_only_once_its_containers_processes_are_gone(
        lm, sched: Recorder) -> None:
    """As Mesos destroys a container before it reports the end of its executor: a process
    the task started in a session of its own (not in the executor's process group) is gone by
    the time TASK_FAILED arrives, not a reaper pass later."""
    offer = sched.take_offer()
    sched.driver.launchTasks(offer["id"], [executor_task(
        "e7", offer, eid="exec-7", env={"EXIT_ON_LAUNCH": "1", "CHILD_IN_OWN_SESSION": "1"})])
    child_pid = sandbox_of(lm, "exec-7") / "child.pid"
    sched.wait_state("e7", "TASK_RUNNING")
    child = int(child_pid.read_text())
    failed = sched.wait_state("e7", "TASK_FAILED")
    assert not running(child), "TASK_FAILED came while the task's own process still ran"
    assert failed["reason"] == "REASON_EXECUTOR_TERMINATED"
