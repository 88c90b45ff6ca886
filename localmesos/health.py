"""Health checks of command tasks (TaskInfo.health_check), as Mesos's command executor runs them.

Semantics (Mesos 1.12 health checker): the first check runs `delay_seconds` (15) after the task
starts, then every `interval_seconds` (10), each allowed `timeout_seconds` (20). HTTP is healthy
on a 2xx/3xx answer, TCP on a completed connect, COMMAND on exit status 0. Until the first
success, failures within `grace_period_seconds` (10) of the start are ignored. A success after
start-up or after failures sends TASK_RUNNING with `healthy: true`; every counted failure sends
TASK_RUNNING with `healthy: false`; `consecutive_failures` (3) in a row kill the task, whose
final TASK_KILLED then carries `healthy: false`.

HTTP and TCP checks probe the agent's address (`localmesos/addresses.py`): a real agent probes
127.0.0.1, its machine's own loopback; here each agent is a machine whose address is 127.0.1.k.

Invariants: checks run on the checker's own thread, never under the cluster lock; results are
applied under the lock and ignored once the task is terminal or being killed; a COMMAND check
is a child like any other (own session, sandbox env) and is killed on timeout.
"""

from __future__ import annotations

import http.client
import logging
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from typing import TYPE_CHECKING, Any

from localmesos.procs import kill_group, kill_tree

if TYPE_CHECKING:
    from localmesos.agent import Agent
    from localmesos.model import Task

log = logging.getLogger("localmesos.health")

DEFAULTS = {"delay_seconds": 15.0, "interval_seconds": 10.0, "timeout_seconds": 20.0,
            "consecutive_failures": 3, "grace_period_seconds": 10.0}


def _num(check: dict[str, Any], key: str) -> float:
    v = check.get(key)
    if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0:
        return float(v)
    return float(DEFAULTS[key])


class HealthChecker:
    def __init__(self, agent: Agent, task: Task, check: dict[str, Any], env: dict[str, str]) -> None:
        self.agent = agent
        self.task = task
        self.check = check
        self.env = env
        self.delay = _num(check, "delay_seconds")
        self.interval = max(0.05, _num(check, "interval_seconds"))
        self.timeout = max(0.05, _num(check, "timeout_seconds"))
        self.max_failures = max(1, int(_num(check, "consecutive_failures")))
        self.grace = _num(check, "grace_period_seconds")
        self.failures = 0
        self.initializing = True
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"health-{task.id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        if self._stop.wait(self.delay):
            return
        while not self._stop.is_set():
            try:
                ok, why = self._probe()
            except Exception as exc:  # a broken check is a failed check, never a crash
                ok, why = False, f"{type(exc).__name__}: {exc}"
            with self.agent.cluster.lock:
                if self._stop.is_set():
                    return
                self._apply(ok, why)
            if self._stop.wait(self.interval):
                return

    def _apply(self, ok: bool, why: str) -> None:
        task = self.task
        if task.terminal or task.kill_requested:
            self._stop.set()
            return
        if ok:
            if self.initializing or self.failures > 0:
                self.agent.health_update(task, True)
            self.failures = 0
            self.initializing = False
            return
        if self.initializing and time.monotonic() - self.started < self.grace:
            log.debug("task %s health check failed within its grace period: %s", task.id, why)
            return
        self.failures += 1
        log.info("task %s health check failed (%d/%d): %s", task.id, self.failures,
                 self.max_failures, why)
        self.agent.health_update(task, False)
        if self.failures >= self.max_failures:
            self._stop.set()
            self.agent.kill_unhealthy(task)

    def _probe(self) -> tuple[bool, str]:
        kind = self.check.get("type")
        if kind is None:
            kind = "HTTP" if "http" in self.check else "TCP" if "tcp" in self.check else "COMMAND"
        if kind == "HTTP":
            return self._http(self.check.get("http") or {})
        if kind == "TCP":
            return self._tcp(self.check.get("tcp") or {})
        if kind == "COMMAND":
            return self._command(self.check.get("command") or {})
        return False, f"unsupported health check type {kind}"

    def _http(self, spec: dict[str, Any]) -> tuple[bool, str]:
        port = int(spec.get("port") or 0)
        path = str(spec.get("path") or "/")
        if str(spec.get("scheme") or "http") == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self.agent.ip, port, timeout=self.timeout,
                context=ssl._create_unverified_context())
        else:
            conn = http.client.HTTPConnection(self.agent.ip, port, timeout=self.timeout)
        try:
            conn.request("GET", path)
            status = conn.getresponse().status
        except (OSError, http.client.HTTPException) as exc:
            return False, f"HTTP GET {path} on port {port}: {exc}"
        finally:
            conn.close()
        if 200 <= status <= 399:
            return True, ""
        return False, f"HTTP GET {path} on port {port} returned {status}"

    def _tcp(self, spec: dict[str, Any]) -> tuple[bool, str]:
        port = int(spec.get("port") or 0)
        try:
            with socket.create_connection((self.agent.ip, port), timeout=self.timeout):
                return True, ""
        except OSError as exc:
            return False, f"TCP connect to port {port}: {exc}"

    def _command(self, spec: dict[str, Any]) -> tuple[bool, str]:
        env = dict(self.env)
        for var in ((spec.get("environment") or {}).get("variables")) or []:
            if isinstance(var, dict) and isinstance(var.get("name"), str):
                env[var["name"]] = str(var.get("value", ""))
        argv = self.agent.argv_of(spec)
        sandbox = self.task.directory
        fut = self.agent.cluster.spawner.spawn(argv, env, sandbox, os.devnull,
                                               os.path.join(sandbox, "stderr"))
        popen = fut.result(timeout=30)
        try:
            rc = popen.wait(self.timeout)
        except subprocess.TimeoutExpired:
            kill_tree(popen.pid, signal.SIGKILL)
            popen.wait()
            return False, f"command timed out after {self.timeout:g}s"
        finally:
            kill_group(popen.pid, signal.SIGKILL)  # leftovers of the check's own group
            self.agent.cluster.spawner.ended(popen.pid, sandbox)
        return rc == 0, f"command exited with status {rc}"
