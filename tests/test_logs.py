"""Task logs end to end: localmesos (its agents' files API) + `accessd scheduler` + `accessd api
--master`, read through `GET /v2/apps/{app}/tasks/{task}/logs` and `accessd logs`.

The follow test's service waits for a go-file, then writes 60 timestamped lines 50 ms apart and,
after line 30, rotates its log as a logrotate-style logger does (`stdout` renamed to `stdout.1`,
a new `stdout` begun). `accessd logs --follow` must print every line exactly once, in order,
each within 1 s of being written.
"""

from __future__ import annotations

import shlex
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.fixtures_api import start_api
from tests.fixtures_mesos import start_localmesos
from tests.fixtures_scheduler import start_scheduler
from tests.support import PYTHON, REPO, assert_no_traceback, wait_until, watch_processes

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    work = tmp_path_factory.mktemp("logs")
    state = work / "state.db"
    with watch_processes() as procs:
        mesos = start_localmesos(work, agents=2, extra_args=("--status-update-retry", "1"))
        api_proc = sched = None
        try:
            api_proc, base = start_api(state, workers=2, extra_args=("--master", mesos.master))
            sched = start_scheduler(mesos.master, state, ["--refuse-seconds", "1"])
            yield base, work
        finally:
            if sched is not None:
                sched.stop()
            if api_proc is not None:
                api_proc.stop()
            mesos.stop()
    assert_no_traceback(procs)


def deploy(base: str, app: dict) -> dict:
    r = requests.post(f"{base}/v2/apps", json={"cpus": 0.1, "mem": 32, "instances": 1,
                                                "portDefinitions": [], **app}, timeout=10)
    assert r.status_code == 201, r.text
    return wait_until(lambda: next((t for t in requests.get(
        f"{base}/v2/apps{app['id']}/tasks", timeout=10).json()["tasks"]
        if t["state"] == "TASK_RUNNING"), None), 60, message=f"{app['id']} running")


def logs(base: str, app_id: str, task_id: str, **params) -> requests.Response:
    return requests.get(f"{base}/v2/apps{app_id}/tasks/{task_id}/logs", params=params, timeout=10)


def accessd(*args: str) -> list[str]:
    return [PYTHON, "-m", "accessd.cli", *args]


def test_logs_endpoint_reads_stdout_stderr_and_ended_tasks(stack):
    base, _ = stack
    task = deploy(base, {"id": "/logs/hello",
                         "cmd": "echo hello-out; echo hello-err >&2; exec sleep 600"})
    tid = task["id"]
    out = wait_until(lambda: (r := logs(base, "/logs/hello", tid)).ok
                     and "hello-out" in r.json()["data"] and r.json(), 20, message="stdout")
    assert out["data"] == "hello-out\n" and out["offset"] == 0 and out["nextOffset"] == 10
    assert out["size"] == 10 and out["taskId"] == tid and out["stream"] == "stdout"
    # stderr holds the executor's own log lines too, as a Mesos executor's does.
    wait_until(lambda: "hello-err\n" in logs(base, "/logs/hello", tid, stream="stderr"
                                              ).json()["data"], 20, message="stderr")
    assert logs(base, "/logs/hello", tid, offset=-1).json()["offset"] == 10
    assert logs(base, "/logs/hello", tid, offset=6, length=3).json()["data"] == "out"
    # Without offset: the tail, from the first line starting in it.
    assert logs(base, "/logs/hello", tid, length=4).json() == {
        **out, "offset": 10, "data": "", "nextOffset": 10}
    assert logs(base, "/logs/hello", tid, length=10).json() == out
    r = logs(base, "/logs/hello", tid, stream="environ")
    assert r.status_code == 400 and r.json()["details"][0]["path"] == "/stream"
    assert logs(base, "/logs/hello", tid, offset="x").status_code == 400
    assert logs(base, "/logs/hello", "logs_hello.nope").status_code == 404
    assert logs(base, "/logs/other", tid).status_code == 404

    # Kill it (scale to 0): the task leaves accessd's store, its sandbox stays on the agent.
    r = requests.delete(f"{base}/v2/apps/logs/hello/tasks/{tid}",
                        params={"scale": "true", "force": "true"},
                        timeout=10)
    assert r.status_code == 200, r.text
    wait_until(lambda: not requests.get(f"{base}/v2/apps/logs/hello/tasks",
                                        timeout=10).json()["tasks"], 30, message="task gone")
    ended = logs(base, "/logs/hello", tid)
    assert ended.status_code == 200, ended.text
    assert ended.json()["data"] == "hello-out\n"
    # The CLI reads an ended task by its id too, and --tail cuts lines.
    run = subprocess.run(accessd("logs", tid, "--api", base, "--tail", "1"),
                         capture_output=True, text=True, timeout=30, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "hello-out\n"
    run = subprocess.run(accessd("logs", tid, "--api", base, "--stderr"),
                         capture_output=True, text=True, timeout=30, cwd=REPO)
    assert run.returncode == 0 and "hello-err\n" in run.stdout, run.stderr


def test_follow_is_live_and_survives_a_rotation_without_duplicates(stack):
    base, work = stack
    go = work / "go"
    script = (f"echo ready; while [ ! -e {shlex.quote(str(go))} ]; do sleep 0.02; done; "
              "i=0; while [ $i -lt 60 ]; do i=$((i+1)); echo \"line-$i $(date +%s.%N)\"; "
              "if [ $i -eq 30 ]; then mv stdout stdout.1; exec >stdout; fi; sleep 0.05; done; "
              "exec sleep 600")
    deploy(base, {"id": "/logs/talker", "cmd": script})
    follower = subprocess.Popen(accessd("logs", "/logs/talker", "--follow", "--api", base),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=REPO, start_new_session=True)
    seen: list[tuple[float, str]] = []
    cond = threading.Condition()

    def read() -> None:
        assert follower.stdout is not None
        for line in follower.stdout:
            with cond:
                seen.append((time.time(), line.rstrip("\n")))
                cond.notify_all()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_until(lambda: any(text == "ready" for _, text in seen), 30, message="ready line")
        Path(go).touch()
        # A duplicate could only come from the rotation, in the middle: before line 60.
        wait_until(lambda: any(text.startswith("line-60 ") for _, text in seen), 30,
                   message="line 60 followed")
        with cond:
            lines = [(t, text) for t, text in seen if text.startswith("line-")]
    finally:
        follower.send_signal(signal.SIGINT)
        try:
            follower.wait(10)
        except subprocess.TimeoutExpired:
            follower.kill()
    with cond:
        final = [text for _, text in seen if text.startswith("line-")]
    numbers = [int(text.split()[0].split("-")[1]) for text in final]
    assert numbers == list(range(1, 61)), numbers
    delays = [arrived - float(text.split()[1]) for arrived, text in lines]
    print(f"follow latency: max {max(delays):.3f} s, mean {sum(delays) / len(delays):.3f} s")
    assert max(delays) < 1.0, delays


def test_a_zk_master_is_found_as_mesos_announces_it(tmp_path):
    """`--master zk://…`: the logs client finds the leading master through ZooKeeper (here a
    localmesos announcing itself as a Mesos master does) and reads its /state."""
    from api.logs_mesos import LogsError, MesosFiles, leader_from_zk
    from tests.fixtures_zk import start_zookeeper

    zk = start_zookeeper(tmp_path)
    try:
        with pytest.raises(LogsError, match="no Mesos master"):
            leader_from_zk(zk.url("/nobody"))
        mesos = start_localmesos(tmp_path, agents=1, extra_args=("--zk", zk.url("/mesos")))
        try:
            assert leader_from_zk(zk.url("/mesos")) == mesos.url
            files = MesosFiles(zk.url("/mesos"))
            assert files.master_state()["id"] == mesos.state()["id"]
        finally:
            mesos.stop()
    finally:
        zk.stop()


def test_logs_of_an_app_are_its_newest_tasks(stack):
    base, _ = stack
    first = deploy(base, {"id": "/logs/two", "cmd": "echo task=$MESOS_TASK_ID; exec sleep 600"})
    r = requests.put(f"{base}/v2/apps/logs/two", json={"instances": 2},
                     params={"force": "true"}, timeout=10)
    assert r.status_code == 200, r.text
    tasks = wait_until(lambda: len(ts := [t for t in requests.get(
        f"{base}/v2/apps/logs/two/tasks", timeout=10).json()["tasks"]
        if t["state"] == "TASK_RUNNING"]) == 2 and ts, 60, message="two running")
    newest = max(tasks, key=lambda t: t["stagedAt"])
    assert newest["id"] != first["id"]

    def printed() -> str:
        run = subprocess.run(accessd("logs", "/logs/two", "--api", base), capture_output=True,
                             text=True, timeout=30, cwd=REPO)
        assert run.returncode == 0, run.stderr
        return run.stdout
    assert wait_until(lambda: printed() == f"task={newest['id']}\n", 20,
                      message="the newest task's line")
    run = subprocess.run(accessd("logs", "/logs/none", "--api", base), capture_output=True,
                         text=True, timeout=30, cwd=REPO)
    assert run.returncode == 1 and "no app '/logs/none'" in run.stderr
