"""Start localmesos (the embedded Mesos cluster) as a real process for a test.

    lm = start_localmesos(tmp_path, agents=3)   # blocks until `ready master=127.0.0.1:P`
    lm.master          # "127.0.0.1:P"  (give it to pymesos / the scheduler as --master)
    lm.url             # "http://127.0.0.1:P"
    lm.state()         # GET /state as a dict (Mesos's shape: "slaves", "frameworks", ...)
    lm.agents()        # [{"id", "hostname", "port", "running", "pids"}] (test control surface)
    lm.stop_agent("127.0.1.2")   # machine loss: processes killed, tasks TASK_LOST
    lm.start_agent("127.0.1.2")  # the machine comes back (a new, empty agent id)
    lm.restart_master()                  # master failover: schedulers must re-subscribe
    lm.stop()          # SIGTERM; every task/executor process group ends with it

`localmesos` is the pytest fixture (function scope, sandboxes under tmp_path, 3 agents, and
unacknowledged status updates re-sent after 1 s instead of Mesos's 10 s). Options that do not
have a parameter go through `extra_args`, e.g. `("--offer-timeout", "2")`; `python -m localmesos
--help` lists them. Agents claim port blocks going down from the configured range (31000-31999,
then 30000-30999, …, skipping blocks other localmesos processes hold; `localmesos/portblocks.py`):
tests that bind offered ports should pick free ones (`fixtures_scheduler.agent_port_plan`).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.support import PYTHON, REPO, Proc, free_port


class LocalMesos:
    def __init__(self, proc: Proc, port: int, work_dir: Path) -> None:
        self.proc = proc
        self.port = port
        self.master = f"127.0.0.1:{port}"
        self.url = f"http://{self.master}"
        self.work_dir = work_dir

    def _call(self, method: str, path: str) -> Any:
        req = urllib.request.Request(self.url + path, method=method,
                                     data=b"" if method == "POST" else None)
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def state(self) -> dict[str, Any]:
        return self._call("GET", "/state")

    def agents(self) -> list[dict[str, Any]]:
        return self._call("GET", "/_localmesos/agents")["agents"]

    def stop_agent(self, agent: str) -> dict[str, Any]:
        """`agent`: an agent id, hostname (`127.0.1.2`) or index (`2`)."""
        return self._call("POST", f"/_localmesos/agents/{agent}/stop")

    def start_agent(self, agent: str) -> dict[str, Any]:
        return self._call("POST", f"/_localmesos/agents/{agent}/start")

    def restart_master(self) -> dict[str, Any]:
        return self._call("POST", "/_localmesos/master/restart")

    def silence_master(self) -> dict[str, Any]:
        return self._call("POST", "/_localmesos/master/silence")

    def stop(self) -> int | None:
        return self.proc.stop()


def start_localmesos(work_dir: Path | str, agents: int = 3, resources: str | None = None,
                     attributes: str | Sequence[str] | None = None,
                     extra_args: Sequence[str] = ()) -> LocalMesos:
    """Start `python -m localmesos` on a free port and wait for its ready line."""
    port = free_port()
    work = Path(work_dir) / "localmesos"
    args = [PYTHON, "-m", "localmesos", "--port", str(port), "--agents", str(agents),
            "--work-dir", str(work)]
    if resources is not None:
        args += ["--resources", resources]
    if isinstance(attributes, str):
        attributes = [attributes]
    for spec in attributes or ():
        args += ["--attributes", spec]
    args += list(extra_args)
    proc = Proc(args, cwd=REPO)
    try:
        proc.wait_for_line(lambda line: line == f"ready master=127.0.0.1:{port}", timeout=30)
    except BaseException:
        proc.stop()
        raise
    return LocalMesos(proc, port, work)


@pytest.fixture
def localmesos(tmp_path: Path) -> Iterator[LocalMesos]:
    lm = start_localmesos(tmp_path, extra_args=("--status-update-retry", "1"))
    try:
        yield lm
    finally:
        lm.stop()
