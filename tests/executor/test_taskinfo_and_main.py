"""TaskInfo decoding (every bad input is a clear TaskInfoError, never a crash) and the command's
behaviour when started without an agent's environment."""

from __future__ import annotations

import base64
import json
import os
import subprocess

import pytest

from executor.taskinfo import TaskInfoError, parse_task
from tests.support import PYTHON, REPO


def task_info(data, **extra):
    raw = data if isinstance(data, str) else base64.b64encode(json.dumps(data).encode()).decode()
    info = {"task_id": {"value": "jpm_ts.1"}, "data": raw}
    info.update(extra)
    return info


def test_full_task():
    config = parse_task(task_info(
        {"appId": "/jpm/ts", "cmd": "serve --port $PORT0", "env": {"A": "1", "N": 2},
         "ports": [31000, 31001], "host": "127.0.1.1",
         "healthChecks": [{"protocol": "HTTP", "path": "/health", "portIndex": 1}]},
        kill_policy={"grace_period": {"nanoseconds": 1500000000}}))
    assert config.task_id == "jpm_ts.1" and config.app_id == "/jpm/ts"
    assert config.command == "serve --port $PORT0"
    assert config.env == {"A": "1", "N": "2"}
    assert config.ports == (31000, 31001) and config.host == "127.0.1.1"
    assert config.health_checks[0].port == 31001
    assert config.kill_grace_seconds == 1.5


def test_args_and_default_grace():
    config = parse_task(task_info({"appId": "/a", "args": ["python", "-m", "x"]}))
    assert config.command == ("python", "-m", "x")
    assert config.kill_grace_seconds == 3.0
    assert config.ports == () and config.health_checks == ()


@pytest.mark.parametrize("info, message", [
    (task_info("not base64 at all!"), "not base64 of a JSON object"),
    (task_info(base64.b64encode(b"{not json").decode()), "not base64 of a JSON object"),
    (task_info([1, 2]), "not a JSON object"),
    (task_info({"appId": "/a"}), "needs a non-empty cmd"),
    (task_info({"appId": "/a", "cmd": "x", "args": ["y"]}), "both cmd and args"),
    (task_info({"appId": "/a", "args": []}), "needs a non-empty cmd"),
    (task_info({"cmd": "x"}), "no appId"),
    (task_info({"appId": "/a", "cmd": "x", "ports": ["80"]}), "ports must be"),
    (task_info({"appId": "/a", "cmd": "x", "healthChecks": [{"portIndex": 0}]}), "portIndex"),
    ({"task_id": {"value": "t"}}, "no data"),
    ({"data": "e30="}, "no task_id"),
    (None, "no task_id"),
])
def test_bad_task_infos(info, message):
    with pytest.raises(TaskInfoError, match=message):
        parse_task(info)


def test_main_without_agent_environment_exits_clearly():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESOS_")}
    for argv in ([PYTHON, "-m", "executor"], [PYTHON, "-m", "accessd.cli", "executor"]):
        proc = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert "missing MESOS_AGENT_ENDPOINT, MESOS_FRAMEWORK_ID, MESOS_EXECUTOR_ID" in proc.stderr
