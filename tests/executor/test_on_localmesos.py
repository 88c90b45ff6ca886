"""accessd's executor under a real agent (localmesos), driven by a real pymesos scheduler.

Statuses are asserted as the scheduler receives them; what the service saw (environment, cwd)
comes from the service itself (tests/executor/toy_service.py); "nothing left behind" is checked
in the process table. TaskInfos are those accessd's scheduler builds (`build_task_info`).
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import signal
import time
from pathlib import Path

import pytest

from tests.executor.mesos_harness import start_framework
from tests.executor.proctable import live_in_group, live_with_environ, pid_alive
from tests.fixtures_mesos import start_localmesos
from tests.support import PYTHON, wait_until

TOY = shlex.quote(str(Path(__file__).with_name("toy_service.py")))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    work = tmp_path_factory.mktemp("executor-mesos")
    mesos = start_localmesos(work / "mesos", agents=2)
    framework = driver = None
    try:
        framework, driver = start_framework(mesos.master)
        ctl = work / "ctl"
        ctl.mkdir()
        yield mesos, framework, ctl
    finally:
        if driver is not None:
            driver.stop()
        mesos.stop()


def app(ctl: Path, app_id: str, args: str = "", *, checks=(), grace=None, ports=1, env=None):
    doc = {"id": app_id, "cmd": f"exec {shlex.quote(PYTHON)} {TOY} {args}", "cpus": 0.1,
           "mem": 32, "portDefinitions": [{"port": 0, "name": f"p{i}" if i else "http"}
                                          for i in range(ports)],
           "env": {"CTL": str(ctl), "APP_VAR": "from-app", **(env or {})},
           "healthChecks": list(checks)}
    if grace is not None:
        doc["taskKillGracePeriodSeconds"] = grace
    return doc


def seen_by(ctl: Path, task_id: str, timeout: float = 30.0) -> dict:
    path = ctl / f"{task_id}.json"
    wait_until(path.exists, timeout=timeout, message=f"{path.name}")
    return json.loads(path.read_text())


def states(framework, task_id):
    return [s["state"] for s in framework.of(task_id) if "healthy" not in s]


def health_updates(framework, task_id):
    return [s for s in framework.of(task_id) if "healthy" in s]


def executor_alive(task_id: str) -> list[int]:
    """Live processes started for this task's executor (build_task_info: executor id = task id)."""
    return live_with_environ(f"MESOS_EXECUTOR_ID={task_id}\0")


def test_finished_task_env_sandbox_and_executor_exit(cluster):
    mesos, framework, ctl = cluster
    t0 = time.monotonic()
    task_id, launched = framework.launch(app(ctl, "/it/env", "--exit 0"))
    finished = framework.wait_state(task_id, "TASK_FINISHED", timeout=40)
    print(f"launch -> TASK_FINISHED in {time.monotonic() - t0:.2f}s")
    assert states(framework, task_id) == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]
    assert finished["message"] == "Command exited with status 0"
    assert all(s["source"] == "SOURCE_EXECUTOR" for s in framework.of(task_id))
    assert finished["agent_id"]["value"] == launched["agent_id"]

    seen = seen_by(ctl, task_id)
    env, port = seen["env"], launched["ports"][0]
    assert {k: env.get(k) for k in ("PORT0", "PORT", "PORTS", "PORT_HTTP", "HOST",
                                    "MESOS_TASK_ID", "MARATHON_APP_ID", "APP_VAR")} == {
        "PORT0": str(port), "PORT": str(port), "PORTS": str(port), "PORT_HTTP": str(port),
        "HOST": launched["hostname"], "MESOS_TASK_ID": task_id, "MARATHON_APP_ID": "/it/env",
        "APP_VAR": "from-app"}
    sandbox = env["MESOS_SANDBOX"]
    assert seen["cwd"] == sandbox and os.path.isdir(sandbox)
    assert "toy service" in Path(sandbox, "stdout").read_text()  # output in the sandbox
    assert seen["pgid"] != os.getpgid(0)
    # The executor exits once its task is terminal and the update acknowledged.
    wait_until(lambda: not executor_alive(task_id), timeout=15, message="executor exit")
    assert not live_in_group(seen["pgid"])


def test_exit_code_and_signal_are_reported(cluster):
    mesos, framework, ctl = cluster
    failed, _ = framework.launch(app(ctl, "/it/fail", "--exit 3"))
    signalled, _ = framework.launch(dict(app(ctl, "/it/sig"), cmd="kill -TERM $$"))
    assert framework.wait_state(failed, "TASK_FAILED", 40)["message"] == \
        "Command exited with status 3"
    assert framework.wait_state(signalled, "TASK_FAILED", 40)["message"] == \
        "Command terminated with signal Terminated"


def test_bad_task_info_fails_with_a_message(cluster):
    mesos, framework, ctl = cluster

    def garbage(info):
        info["data"] = "this is !! not base64"

    def no_command(info):
        info["data"] = base64.b64encode(json.dumps({"appId": "/it/bad"}).encode()).decode()

    bad_data, _ = framework.launch(app(ctl, "/it/bad"), mutate=garbage)
    no_cmd, _ = framework.launch(app(ctl, "/it/bad"), mutate=no_command)
    s1 = framework.wait_state(bad_data, "TASK_FAILED", 40)
    s2 = framework.wait_state(no_cmd, "TASK_FAILED", 40)
    assert "invalid TaskInfo.data: not base64 of a JSON object" in s1["message"]
    assert "needs a non-empty cmd" in s2["message"]
    for tid in (bad_data, no_cmd):
        assert "TASK_RUNNING" not in states(framework, tid)
        wait_until(lambda tid=tid: not executor_alive(tid), timeout=15, message="executor exit")


HTTP_CHECK = {"protocol": "HTTP", "path": "/health", "portIndex": 0, "gracePeriodSeconds": 15,
              "intervalSeconds": 0.4, "timeoutSeconds": 0.35, "maxConsecutiveFailures": 3}


def test_http_health_healthy_then_unhealthy_then_kill(cluster):
    mesos, framework, ctl = cluster
    task_id, launched = framework.launch(app(ctl, "/it/http", checks=[HTTP_CHECK], grace=5))
    healthy = framework.wait_for(task_id, lambda s: s.get("healthy") is True, 40, "healthy")
    assert healthy["state"] == "TASK_RUNNING"
    assert healthy["labels"] == {"labels": [{"key": "consecutiveFailures", "value": "0"}]}

    (ctl / f"{task_id}.sick").touch()
    sick_at = time.monotonic()
    unhealthy = framework.wait_for(task_id, lambda s: s.get("healthy") is False, 20, "unhealthy")
    print(f"/health 500 -> healthy:false in {unhealthy['t'] - sick_at:.2f}s "
          "(interval 0.4s, maxConsecutiveFailures 3)")
    assert unhealthy["state"] == "TASK_RUNNING"
    port = launched["ports"][0]
    assert unhealthy["message"] == (f"HTTP health check failed: 500 Internal Server Error from "
                                    f"http://{launched['hostname']}:{port}/health; 3 consecutive failures")
    assert unhealthy["labels"] == {"labels": [{"key": "consecutiveFailures", "value": "3"}]}
    assert unhealthy["t"] - sick_at >= 0.4  # three failing probes, 0.4 s apart

    kill_at = time.monotonic()
    framework.kill(task_id)
    killed = framework.wait_state(task_id, "TASK_KILLED", 20)
    print(f"kill -> TASK_KILLED (service honours SIGTERM) in {killed['t'] - kill_at:.3f}s")
    assert killed["message"] == "Command terminated with signal Terminated"
    assert killed["t"] - kill_at < 2.0
    # one update per verdict change, none after the kill
    assert [s["healthy"] for s in health_updates(framework, task_id)] == [True, False]
    assert states(framework, task_id)[-1] == "TASK_KILLED"


def test_tcp_and_command_checks(cluster):
    mesos, framework, ctl = cluster
    tcp = {"protocol": "TCP", "portIndex": 0, "gracePeriodSeconds": 30, "intervalSeconds": 0.3,
           "timeoutSeconds": 0.25, "maxConsecutiveFailures": 2}
    command = {"protocol": "COMMAND", "command": {"value": 'test -f "$CTL/$MESOS_TASK_ID.ok"'},
               "gracePeriodSeconds": 30, "intervalSeconds": 0.5, "timeoutSeconds": 0.45,
               "maxConsecutiveFailures": 2}
    both, _ = framework.launch(app(ctl, "/it/tcpcmd", checks=[tcp, command], grace=1))
    closed = {"protocol": "TCP", "portIndex": 1, "gracePeriodSeconds": 0, "intervalSeconds": 0.3,
              "timeoutSeconds": 0.25, "maxConsecutiveFailures": 2}
    refused, launched = framework.launch(app(ctl, "/it/closed", checks=[closed], ports=2,
                                             grace=1))

    bad = framework.wait_for(refused, lambda s: s.get("healthy") is False, 30, "unhealthy")
    assert bad["message"] == (f"TCP health check failed: connection refused "
                              f"({launched['hostname']}:{launched['ports'][1]}); 2 consecutive failures")

    seen_by(ctl, both)
    framework.wait_state(both, "TASK_RUNNING")
    # The COMMAND check fails (in its grace period) until the file exists: no verdict yet.
    (ctl / f"{both}.ok").touch()
    framework.wait_for(both, lambda s: s.get("healthy") is True, 20, "healthy")
    (ctl / f"{both}.ok").unlink()
    down = framework.wait_for(both, lambda s: s.get("healthy") is False, 20, "unhealthy")
    assert down["message"] == "COMMAND health check failed: exit status 1; 2 consecutive failures"
    assert [s["healthy"] for s in health_updates(framework, both)] == [True, False]
    for tid in (both, refused):
        framework.kill(tid)
        framework.wait_state(tid, "TASK_KILLED", 20)


def test_kill_grace_of_a_sigterm_ignoring_service(cluster):
    mesos, framework, ctl = cluster
    stubborn, _ = framework.launch(app(ctl, "/it/stubborn", "--ignore-term --grandchild",
                                       grace=2))
    override, _ = framework.launch(app(ctl, "/it/override", "--ignore-term", grace=30))
    seen = seen_by(ctl, stubborn)
    seen_override = seen_by(ctl, override)
    framework.wait_state(stubborn, "TASK_RUNNING")
    framework.wait_state(override, "TASK_RUNNING")

    kill_at = time.monotonic()
    framework.kill(stubborn)
    killed = framework.wait_state(stubborn, "TASK_KILLED", 20)
    took = killed["t"] - kill_at
    print(f"kill -> TASK_KILLED (SIGTERM ignored, grace 2s) in {took:.3f}s")
    assert killed["message"] == "Command terminated with signal Killed"
    assert 2.0 <= took < 4.0
    assert not pid_alive(seen["pid"]) and not pid_alive(seen["grandchild"])
    assert not live_in_group(seen["pgid"])

    # A KILL carrying its own kill_policy overrides the TaskInfo's 30 s.
    kill_at = time.monotonic()
    framework.kill(override, grace=0.5)
    killed = framework.wait_state(override, "TASK_KILLED", 20)
    took = killed["t"] - kill_at
    print(f"kill with kill_policy 0.5s (TaskInfo says 30s) -> TASK_KILLED in {took:.3f}s")
    assert 0.5 <= took < 2.5
    assert not live_in_group(seen_override["pgid"])


def executor_pids(task_id: str) -> list[int]:
    """The executor's own process (`<python> -m executor`), not its children."""
    out = []
    for pid in executor_alive(task_id):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"-m\0executor" in cmdline:
            out.append(pid)
    return out


def test_sigterm_to_the_executor_kills_the_task_and_reports_it(cluster):
    mesos, framework, ctl = cluster
    task_id, _ = framework.launch(app(ctl, "/it/term", "--grandchild", grace=5))
    seen = seen_by(ctl, task_id)
    framework.wait_state(task_id, "TASK_RUNNING")
    (pid,) = executor_pids(task_id)
    os.kill(pid, signal.SIGTERM)
    killed = framework.wait_state(task_id, "TASK_KILLED", 20)
    assert killed["source"] == "SOURCE_EXECUTOR"
    assert killed["message"] == "Command terminated with signal Terminated"
    wait_until(lambda: not pid_alive(pid) and not executor_alive(task_id)
               and not live_in_group(seen["pgid"]) and not pid_alive(seen["grandchild"]),
               timeout=15, message="executor and task gone")


def test_framework_teardown_shuts_the_executor_down(cluster):
    """TEARDOWN → the agent sends SHUTDOWN → the executor kills its task (grace capped by the
    agent's shutdown grace period) and exits by itself; nothing is left."""
    mesos, framework, ctl = cluster
    other, other_driver = start_framework(mesos.master)
    try:
        task_id, _ = other.launch(app(ctl, "/it/teardown", "--ignore-term --grandchild",
                                      grace=60))
        seen = seen_by(ctl, task_id)
        other.wait_state(task_id, "TASK_RUNNING")
        sandbox = Path(seen["env"]["MESOS_SANDBOX"])
        shutdown_grace = float(seen["env"]["MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD"]
                               .removesuffix("secs"))
    finally:
        stopped_at = time.monotonic()
        other_driver.stop()  # not a failover: TEARDOWN
    wait_until(lambda: not executor_alive(task_id) and not live_in_group(seen["pgid"])
               and not pid_alive(seen["grandchild"]), timeout=shutdown_grace + 10,
               message="executor and task gone")
    took = time.monotonic() - stopped_at
    log = (sandbox / "stderr").read_text()
    print(f"teardown -> executor and SIGTERM-ignoring task gone in {took:.2f}s "
          f"(agent shutdown grace {shutdown_grace:g}s)")
    assert "shutting down: killing 1 task(s)" in log
    assert "executor done" in log  # it finished by itself, before the agent's SIGKILL
    assert took < shutdown_grace + 2


def test_stopping_the_agent_leaves_no_process(cluster):
    """Last in this module: it takes one of the two agents away."""
    mesos, framework, ctl = cluster
    task_id, launched = framework.launch(app(ctl, "/it/orphan", "--grandchild --ignore-term",
                                             grace=30))
    seen = seen_by(ctl, task_id)
    framework.wait_state(task_id, "TASK_RUNNING")
    assert executor_alive(task_id) and pid_alive(seen["grandchild"])
    stopped_at = time.monotonic()
    mesos.stop_agent(launched["agent_id"])
    wait_until(lambda: not pid_alive(seen["pid"]) and not pid_alive(seen["grandchild"])
               and not live_in_group(seen["pgid"]) and not executor_alive(task_id),
               timeout=30, message="every process of the task gone")
    print(f"agent stopped -> service, grandchild and executor gone in "
          f"{time.monotonic() - stopped_at:.2f}s")
