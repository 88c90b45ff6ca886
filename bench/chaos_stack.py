"""The real stack `bench/chaos.py` beats on: localmesos, `accessd scheduler` and `accessd api`
(gunicorn) on one SQLite store kept on a small tmpfs, each a child process of its own session,
with the fault primitives (kill -9, agent and master controls, filling the store's filesystem)
and the observations (store, master `/state`, process table, scheduler CPU).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from tests.fixtures_disk import mount_tmpfs, unmount
from tests.support import free_port, wait_until

REPO = Path(__file__).resolve().parent.parent
AGENT_RESOURCES = "cpus:64;mem:65536;disk:100000;ports:[31000-31999]"


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.1) -> Any:
    """`tests.support.wait_until` raising TimeoutError (bench/chaos.py catches it); an error
    raised by `check` itself is not retried."""
    return wait_until(check, timeout, every, what, error=TimeoutError, retry_on=())


def children(ppid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(stat[1]) == ppid and stat[0] != "Z":
                out.append(int(entry))
    return out


def process_tree(roots: list[int]) -> set[int]:
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry))
    tree: set[int] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid not in tree:
            tree.add(pid)
            todo.extend(parents.get(pid, []))
    return tree


class Stack:
    """localmesos (3 agents) + scheduler + API (2 gunicorn workers) on `work`; the store in
    `work/state/` (a tmpfs of `state_mb` when `mount` allows it)."""

    def __init__(self, work: Path, state_mb: int = 24) -> None:
        self.work = work
        self.state_dir = work / "state"
        self.tmpfs_refused = mount_tmpfs(self.state_dir, state_mb)
        self.state_path = self.state_dir / "state.db"
        self.mesos_dir = work / "mesos"
        self.procs: dict[str, subprocess.Popen] = {}
        self.master_port, self.api_port = free_port(), free_port()
        self.mesos = f"http://127.0.0.1:{self.master_port}"
        self.base = f"http://127.0.0.1:{self.api_port}"
        self.http = requests.Session()
        self.scheduler_started = 0.0
        lm = self._start("localmesos", "-m", "localmesos", "--port", str(self.master_port),
                         "--agents", "3", "--work-dir", str(self.mesos_dir),
                         "--resources", AGENT_RESOURCES, "--status-update-retry", "2",
                         "--log-level", "INFO")
        wait_for("localmesos", lambda: self._answers(self.mesos + "/health") or
                 lm.poll() is not None, 60, 0.2)
        if lm.poll() is not None:
            raise SystemExit(f"localmesos exited: {self.log_tail('localmesos')}")
        self.start_scheduler()
        self.start_api()

    # -- processes -------------------------------------------------------------------------------
    def _start(self, name: str, *args: str) -> subprocess.Popen:
        log = (self.work / f"{name}.log").open("ab")
        proc = subprocess.Popen([sys.executable, *args], cwd=REPO, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        return proc

    def log_tail(self, name: str, chars: int = 3000) -> str:
        try:
            return (self.work / f"{name}.log").read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def _answers(self, url: str) -> bool:
        try:
            return self.http.get(url, timeout=2).status_code < 500
        except requests.RequestException:
            return False

    def start_scheduler(self) -> None:
        self._start("scheduler", "-m", "accessd.cli", "scheduler", "--master",
                    f"127.0.0.1:{self.master_port}", "--state", str(self.state_path),
                    "--refuse-seconds", "1")
        self.scheduler_started = time.monotonic()

    def start_api(self) -> None:
        self._start("api", "-m", "accessd.cli", "api", "--bind", f"127.0.0.1:{self.api_port}",
                    "--workers", "2", "--state", str(self.state_path))
        wait_for("the API", lambda: self._answers(self.base + "/ping"), 60, 0.2)

    @property
    def scheduler_pid(self) -> int:
        return self.procs["scheduler"].pid

    def kill_scheduler(self) -> None:
        proc = self.procs["scheduler"]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def api_workers(self) -> list[int]:
        return children(self.procs["api"].pid)

    def stop(self) -> None:
        for name in ("api", "scheduler", "localmesos"):
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)
        if self.tmpfs_refused is None:
            unmount(self.state_dir)

    # -- localmesos ------------------------------------------------------------------------------
    def control(self, path: str) -> dict:
        resp = self.http.post(self.mesos + path, timeout=30)
        resp.raise_for_status()
        return resp.json() if resp.content else {}

    def agents(self) -> list[dict]:
        return self.http.get(self.mesos + "/_localmesos/agents", timeout=10).json()["agents"]

    def mesos_live_tasks(self) -> dict[str, dict]:
        state = self.http.get(self.mesos + "/state", timeout=10).json()
        return {t["id"]: t for f in state.get("frameworks") or [] for t in f.get("tasks") or []
                if t.get("state") in ("TASK_STAGING", "TASK_STARTING", "TASK_RUNNING",
                                      "TASK_KILLING")}

    def sandbox_processes(self) -> set[int]:
        """Live (non-zombie) processes whose MESOS_SANDBOX lies in this cluster's work dir."""
        needle = f"MESOS_SANDBOX={self.mesos_dir}".encode()
        found = set()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if needle not in f.read():
                        continue
                if Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
            except OSError:
                continue
            found.add(int(entry))
        return found
