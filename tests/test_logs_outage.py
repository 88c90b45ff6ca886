"""`accessd logs --follow` rides out a restart of the control API: it says so once on stderr,
keeps its position, and prints every line once when the API is back."""

from __future__ import annotations

import shlex
import signal
import subprocess
import threading
from pathlib import Path

import pytest
import requests

from tests.fixtures_mesos import start_localmesos
from tests.fixtures_scheduler import start_scheduler
from tests.support import (
    PYTHON,
    REPO,
    Proc,
    assert_no_traceback,
    free_port,
    wait_until,
    watch_processes,
)

pytestmark = pytest.mark.timeout(180)


def api_on(port: int, state: Path, master: str) -> Proc:
    proc = Proc([PYTHON, "-m", "accessd.cli", "api", "--bind", f"127.0.0.1:{port}",
                 "--workers", "1", "--state", str(state), "--master", master], cwd=REPO)
    wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/ping", timeout=2).ok, 60,
               message="the API answering")
    return proc


def test_follow_survives_an_api_restart(tmp_path):
    state, go = tmp_path / "state.db", tmp_path / "go"
    with watch_processes() as procs:
        mesos = start_localmesos(tmp_path, agents=1)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        api = sched = follower = None
        try:
            api = api_on(port, state, mesos.master)
            sched = start_scheduler(mesos.master, state, ["--refuse-seconds", "1"])
            script = (f"echo one; while [ ! -e {shlex.quote(str(go))} ]; do sleep 0.05; done; "
                      "echo two; exec sleep 600")
            r = requests.post(f"{base}/v2/apps", json={"id": "/outage/app", "cmd": script,
                                                        "cpus": 0.1, "mem": 32,
                                                        "portDefinitions": []}, timeout=10)
            assert r.status_code == 201, r.text
            # `accessd logs APP` names the app's newest task, so it needs one to exist (with
            # none it says so and exits: under load the scheduler may not have launched yet).
            wait_until(lambda: requests.get(f"{base}/v2/apps/outage/app",
                                            params={"embed": "app.tasks"},
                                            timeout=5).json()["app"]["tasks"],
                       60, message="a task of the app")
            follower = subprocess.Popen(
                [PYTHON, "-m", "accessd.cli", "logs", "/outage/app", "--follow", "--api", base],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                start_new_session=True)
            out: list[str] = []
            err: list[str] = []
            for stream, sink in ((follower.stdout, out), (follower.stderr, err)):
                threading.Thread(target=lambda s=stream, k=sink: [k.append(x.rstrip("\n"))
                                                                  for x in s], daemon=True).start()
            wait_until(lambda: "one" in out, 60, message="the first line")
            api.stop()
            wait_until(lambda: any("retrying" in e for e in err), 20, message="the outage noticed")
            api = api_on(port, state, mesos.master)
            go.touch()
            wait_until(lambda: "two" in out, 20, message="the line written after the restart")
            assert out == ["one", "two"], out
            assert any("reconnected" in e for e in err), err
        finally:
            if follower is not None:
                follower.send_signal(signal.SIGINT)
                follower.wait(10)
            if sched is not None:
                sched.stop()
            if api is not None:
                api.stop()
            mesos.stop()
    assert_no_traceback(procs)
