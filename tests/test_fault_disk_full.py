"""The state store's filesystem full, with the real API (gunicorn), scheduler and localmesos.

The store lives on a 16 MB tmpfs that the test fills with a ballast file (the WAL truncated
first, so the very next write needs space). Writes then answer 503 with a message that says
why and that nothing changed; a status update the scheduler cannot store is not acknowledged
(the agent sends it again), logged as a warning, not a traceback; no running task is touched.
Once the ballast is gone, the retried update is stored and writes work again.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
import requests

from tests.executor.proctable import live_with_environ
from tests.fixtures_api import start_api
from tests.fixtures_disk import fill_filesystem, small_tmpfs, truncate_wal
from tests.fixtures_mesos import start_localmesos
from tests.fixtures_scheduler import agent_resources, mesos_tasks, start_scheduler
from tests.support import assert_no_traceback, wait_until

APP = {"id": "/full/sleep", "cmd": "sleep 100000", "executor": "//cmd", "cpus": 0.05,
       "mem": 16, "instances": 2, "portDefinitions": [], "backoffSeconds": 0.2}


def running(base: str) -> list[dict]:
    tasks = requests.get(f"{base}/v2/apps/full/sleep/tasks", timeout=10).json()["tasks"]
    return [t for t in tasks if t["state"] == "TASK_RUNNING"]


def test_full_disk_refuses_writes_with_503_keeps_tasks_and_recovers(tmp_path):
    state_dir = tmp_path / "state"
    with small_tmpfs(state_dir, 16) as refused:
        if refused is not None:
            pytest.skip(f"mount -t tmpfs refused here: {refused}")
        mesos = start_localmesos(tmp_path / "mesos", agents=1, resources=agent_resources(1),
                                 extra_args=("--status-update-retry", "0.5"))
        state = state_dir / "state.db"
        sched = api = None
        try:
            api, base = start_api(state)
            sched = start_scheduler(mesos.master, state, ["--refuse-seconds", "1"])
            assert requests.post(f"{base}/v2/apps", json=APP, timeout=10).status_code == 201
            before = wait_until(lambda: len(r := running(base)) == 2 and r, timeout=30,
                                message="2 running tasks")
            wait_until(lambda: requests.get(f"{base}/v2/deployments", timeout=10).json() == [],
                       timeout=20, message="the create deployment to finish")
            app_before = requests.get(f"{base}/v2/apps/full/sleep", timeout=10).json()["app"]

            assert truncate_wal(state), "the WAL was not truncated within 10 s"
            ballast = fill_filesystem(state_dir)
            resp = requests.put(f"{base}/v2/apps/full/sleep", json={"instances": 3}, timeout=30)
            assert resp.status_code == 503, resp.text
            assert resp.headers["Retry-After"] == "5"
            message = resp.json()["message"]
            assert message.startswith("State store unavailable: no space to write"), message
            assert "nothing was changed" in message
            app = requests.get(f"{base}/v2/apps/full/sleep", timeout=10).json()["app"]
            assert (app["instances"], app["version"]) == (2, app_before["version"])
            assert requests.get(f"{base}/v2/deployments", timeout=10).json() == []

            # A task dies: the scheduler cannot store its TASK_FAILED, so it does not
            # acknowledge it, and the agent retries; the other task runs on, untouched.
            victim, other = before
            for pid in live_with_environ(victim["id"]):  # its sandbox path names it
                os.kill(pid, signal.SIGKILL)
            sched.wait_for_line(lambda line: "state store refused a write while handling "
                                "status updates: no space to write" in line, timeout=20)
            live = mesos_tasks(mesos.state(), sched.framework_id)
            assert set(live) == {other["id"]}
            assert {t["id"] for t in running(base)} == {victim["id"], other["id"]}  # unstored

            ballast.unlink()
            wait_until(lambda: victim["id"] not in {t["id"] for t in running(base)},
                       timeout=20, message="the retried TASK_FAILED stored")
            started = time.monotonic()
            resp = requests.put(f"{base}/v2/apps/full/sleep", json={"instances": 3}, timeout=30)
            assert resp.status_code == 200, resp.text
            final = wait_until(lambda: len(r := running(base)) == 3 and r, timeout=30,
                               message="3 running tasks after the space came back")
            print(f"space back -> 3 running in {time.monotonic() - started:.2f}s")
            assert other["id"] in {t["id"] for t in final}
        finally:
            for proc in (sched, api):
                if proc is not None:
                    proc.stop()
            mesos.stop()
        assert_no_traceback([sched])
