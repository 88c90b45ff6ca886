"""The agent's fetcher and user switch (localmesos/fetcher.py): a command task's URIs are in its
sandbox before the command starts (files, archives extracted, executables, output names); a
fetch that fails and a user that does not exist fail the launch as a Mesos agent does; a task
with a user runs as that user. Files are served by an HTTP server on 127.0.0.1."""

from __future__ import annotations

import functools
import http.server
import io
import os
import pwd
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.localmesos.helpers import Recorder, command_task


@pytest.fixture
def files(tmp_path: Path) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 serving a script and a tar.gz archive; its base URL."""
    root = tmp_path / "served"
    root.mkdir()
    (root / "hello.sh").write_text("#!/bin/sh\necho hello from a fetched script\n")
    data = b"x,y\n1,2\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("model/weights.csv")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (root / "model.tar.gz").write_bytes(buf.getvalue())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _run(sched: Recorder, task_id: str, cmd: str, **command: object) -> dict:
    offer = sched.take_offer()
    task = command_task(task_id, offer, cmd)
    task["command"].update(command)
    sched.driver.launchTasks(offer["id"], [task])
    return sched.wait_for(lambda: next((s for s in sched.statuses(task_id)
                                        if s["state"] in ("TASK_FINISHED", "TASK_FAILED")),
                                       None), 30, f"{task_id} to end")


def test_uris_are_in_the_sandbox_before_the_command_starts(sched: Recorder, files: str) -> None:
    check = ("test -x bin/hello && ./bin/hello | grep -q 'hello from a fetched' "
             "&& test \"$(cat model/weights.csv)\" = \"$(printf 'x,y\\n1,2')\" "
             "&& test -f model.tar.gz")
    status = _run(sched, "fetch-ok", check, uris=[
        {"value": files + "/hello.sh", "executable": True, "extract": False,
         "output_file": "bin/hello"},
        {"value": files + "/model.tar.gz", "extract": True, "cache": False}])
    assert status["state"] == "TASK_FINISHED", status
    # without `extract` the archive stays as it came
    status = _run(sched, "fetch-raw", "test -f model.tar.gz && test ! -e model", uris=[
        {"value": files + "/model.tar.gz", "extract": False}])
    assert status["state"] == "TASK_FINISHED", status


def test_a_failed_fetch_fails_the_launch(sched: Recorder, files: str) -> None:
    status = _run(sched, "fetch-404", "true", uris=[{"value": files + "/missing.tgz"}])
    assert status["state"] == "TASK_FAILED"
    assert status["reason"] == "REASON_CONTAINER_LAUNCH_FAILED"
    assert status["source"] == "SOURCE_AGENT"
    assert "Failed to fetch all URIs" in status["message"] and "404" in status["message"]
    assert not [s for s in sched.statuses("fetch-404") if s["state"] == "TASK_RUNNING"]


def test_user_that_does_not_exist_fails_the_launch(sched: Recorder) -> None:
    status = _run(sched, "no-user", "true", user="no-such-user-here")
    assert status["state"] == "TASK_FAILED"
    assert status["reason"] == "REASON_CONTAINER_LAUNCH_FAILED"
    assert "Failed to get user information for 'no-such-user-here'" in status["message"]


@pytest.mark.skipif(os.geteuid() != 0, reason="switching user needs an agent running as root")
def test_task_runs_as_its_user(sched: Recorder, files: str) -> None:
    user = pwd.getpwuid(65534).pw_name  # nobody
    status = _run(sched, "as-user",
                  f"test \"$(id -un)\" = {user} && test \"$USER\" = {user} "
                  "&& touch written-by-user && test -O hello.sh",
                  user=user, uris=[{"value": files + "/hello.sh", "extract": False}])
    assert status["state"] == "TASK_FINISHED", status
