"""Health checks of one task (HTTP, TCP, COMMAND) and the healthy/unhealthy verdict they yield.

Invariants (DEVELOPERS.md, "Task launched with accessd's executor"):
- HTTP and TCP probes target the task's host (TaskInfo.data `host`, the agent's address; 127.0.0.1
  when absent), where clients reach it: a service that listens only on 127.0.0.1 of a machine
  whose address is elsewhere is not reachable, so it is not healthy (Marathon's HTTP and TCP checks
  probe host:port from outside too).
- HTTP: `GET http://<host>:<port><path>`, a status 200–399 is a success (redirects are not
  followed). TCP: a connection is accepted. COMMAND: `/bin/sh -c <command>` in the task's
  environment and sandbox exits 0. Each probe is bounded by `timeoutSeconds` (a timed-out
  COMMAND probe has its whole process group SIGKILLed).
- Failures within `gracePeriodSeconds` of the task's start do not count, unless the check has
  already succeeded once (Marathon's rule: the grace period ends at the first success).
- A check becomes *unhealthy* once `maxConsecutiveFailures` counted failures happen in a row
  (0 = never: with that value Marathon never kills, and the scheduler kills what we call
  unhealthy), and *healthy* on any success. The task's verdict is unhealthy if any check is,
  healthy when all are; the callback runs only when that verdict changes, never twice in a row
  with the same value.
"""

from __future__ import annotations

import http.client
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from executor.process import spawn

log = logging.getLogger(__name__)

PROTOCOL_ALIASES = {"HTTP": "HTTP", "MESOS_HTTP": "HTTP", "TCP": "TCP", "MESOS_TCP": "TCP",
                    "COMMAND": "COMMAND"}


@dataclass(frozen=True)
class CheckSpec:
    """One health check in the executor's terms (Marathon's field defaults)."""

    protocol: str  # "HTTP" | "TCP" | "COMMAND"
    port: int | None = None
    path: str = "/"
    command: str | None = None
    grace_period_seconds: float = 300.0
    interval_seconds: float = 60.0
    timeout_seconds: float = 20.0
    max_consecutive_failures: int = 3
    host: str = "127.0.0.1"

    @property
    def target(self) -> str:
        if self.protocol == "HTTP":
            return f"http://{_netloc(self.host, self.port)}{self.path}"
        if self.protocol == "TCP":
            return _netloc(self.host, self.port)
        return repr(self.command)


def _netloc(host: str, port: int | None) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_check(doc: Mapping, ports: Sequence[int], host: str = "") -> CheckSpec:
    """A Marathon-form health check (as in TaskInfo.data) → CheckSpec; ValueError if unusable.
    `host`: the task's host (probed by HTTP and TCP checks); empty means 127.0.0.1."""
    if not isinstance(doc, Mapping):
        raise ValueError(f"health check must be an object, got {type(doc).__name__}")
    raw_protocol = str(doc.get("protocol", "HTTP")).upper()
    protocol = PROTOCOL_ALIASES.get(raw_protocol)
    if protocol is None:
        raise ValueError(f"unsupported health check protocol {raw_protocol!r}")

    def number(name: str, default: float, minimum: float) -> float:
        value = doc.get(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
            raise ValueError(f"health check {name} must be a number >= {minimum}, got {value!r}")
        return float(value)

    port = None
    command = None
    if protocol in ("HTTP", "TCP"):
        if doc.get("port") is not None:
            port = int(doc["port"])
        else:
            index = doc.get("portIndex", 0)
            if not isinstance(index, int) or not 0 <= index < len(ports):
                raise ValueError(f"health check portIndex {index!r} but the task has "
                                 f"{len(ports)} port(s)")
            port = int(ports[index])
    else:
        raw = doc.get("command")
        command = raw.get("value") if isinstance(raw, Mapping) else raw  # Marathon: {"value": ..}
        if not isinstance(command, str) or not command.strip():
            raise ValueError("COMMAND health check needs a command")
    path = doc.get("path") or "/"
    if not isinstance(path, str):
        raise ValueError("health check path must be a string")
    return CheckSpec(
        protocol=protocol, port=port, path=path if path.startswith("/") else "/" + path,
        command=command,
        grace_period_seconds=number("gracePeriodSeconds", 300, 0),
        interval_seconds=number("intervalSeconds", 60, 0.01),
        timeout_seconds=number("timeoutSeconds", 20, 0.01),
        max_consecutive_failures=int(number("maxConsecutiveFailures", 3, 0)),
        host=host or "127.0.0.1",
    )


# --- probes: each returns (success, reason) and never raises ---------------------------------

def probe_http(port: int, path: str, timeout: float, host: str = "127.0.0.1") -> tuple[bool, str]:
    url = f"http://{_netloc(host, port)}{path}"
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": "accessd-executor"})
        resp = conn.getresponse()
        resp.read(65536)
        if 200 <= resp.status < 400:
            return True, f"HTTP health check passed: {resp.status} {resp.reason} from {url}"
        return False, f"HTTP health check failed: {resp.status} {resp.reason} from {url}"
    except TimeoutError:
        return False, f"HTTP health check failed: no answer from {url} within {timeout:g}s"
    except (OSError, http.client.HTTPException) as exc:
        return False, f"HTTP health check failed: {_describe(exc)} ({url})"
    finally:
        conn.close()


def probe_tcp(port: int, timeout: float, host: str = "127.0.0.1") -> tuple[bool, str]:
    where = _netloc(host, port)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, f"TCP health check passed: {where} accepted"
    except TimeoutError:
        return False, f"TCP health check failed: {where} no answer within {timeout:g}s"
    except OSError as exc:
        return False, f"TCP health check failed: {_describe(exc)} ({where})"


def probe_command(command: str, env: Mapping[str, str], cwd: str, timeout: float) -> tuple[bool, str]:
    try:
        # Forked by the spawner thread like the service (PDEATHSIG), in a group of its own so a
        # timeout can end everything the command started.
        proc = spawn(lambda: subprocess.Popen(
            ["/bin/sh", "-c", command], env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True))
    except OSError as exc:
        return False, f"COMMAND health check failed: cannot start: {exc}"
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _killpg(proc.pid)
        proc.communicate()
        return False, f"COMMAND health check failed: timed out after {timeout:g}s"
    _killpg(proc.pid)  # anything it left in the background
    tail = err.decode(errors="replace").strip().splitlines()[-1:] if err else []
    detail = f": {tail[0][:200]}" if tail else ""
    if proc.returncode == 0:
        return True, "COMMAND health check passed"
    if proc.returncode < 0:
        return False, (f"COMMAND health check failed: terminated by "
                       f"{signal.Signals(-proc.returncode).name}{detail}")
    return False, f"COMMAND health check failed: exit status {proc.returncode}{detail}"


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    return str(exc) or type(exc).__name__


def run_probe(spec: CheckSpec, env: Mapping[str, str], cwd: str) -> tuple[bool, str]:
    if spec.protocol == "HTTP":
        assert spec.port is not None
        return probe_http(spec.port, spec.path, spec.timeout_seconds, spec.host)
    if spec.protocol == "TCP":
        assert spec.port is not None
        return probe_tcp(spec.port, spec.timeout_seconds, spec.host)
    assert spec.command is not None
    return probe_command(spec.command, env, cwd, spec.timeout_seconds)


# --- verdicts --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    healthy: bool
    message: str
    consecutive_failures: int


class CheckTracker:
    """The counting rules for one check; pure (time is passed in), so they are unit-testable."""

    def __init__(self, spec: CheckSpec, started_at: float) -> None:
        self.spec = spec
        self.started_at = started_at
        self.consecutive_failures = 0
        self.ever_succeeded = False
        self.healthy: bool | None = None
        self.last_reason = ""

    def record(self, success: bool, reason: str, now: float) -> Verdict | None:
        """Count one probe result; return the new verdict if it changed, else None."""
        self.last_reason = reason
        if success:
            self.consecutive_failures = 0
            self.ever_succeeded = True
            if self.healthy is not True:
                self.healthy = True
                return Verdict(True, reason, 0)
            return None
        in_grace = now - self.started_at < self.spec.grace_period_seconds
        if in_grace and not self.ever_succeeded:
            return None  # a slow start is not a failure
        self.consecutive_failures += 1
        limit = self.spec.max_consecutive_failures
        if limit > 0 and self.consecutive_failures >= limit and self.healthy is not False:
            self.healthy = False
            return Verdict(False, f"{reason}; {self.consecutive_failures} consecutive failures",
                           self.consecutive_failures)
        return None


class HealthMonitor:
    """Runs every check of one task on its own thread; reports task verdict changes.

    `on_change(verdict)` runs on a check thread; it must not block for long (the executor hands
    the update to its sender queue).
    """

    def __init__(self, specs: Sequence[CheckSpec], env: Mapping[str, str], cwd: str,
                 on_change: Callable[[Verdict], None], started_at: float | None = None) -> None:
        start = time.monotonic() if started_at is None else started_at
        self.trackers = [CheckTracker(spec, start) for spec in specs]
        self._env = dict(env)
        self._cwd = cwd
        self._on_change = on_change
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._reported: bool | None = None
        self._threads = [threading.Thread(target=self._loop, args=(t,), daemon=True,
                                          name=f"health-{t.spec.protocol.lower()}-{i}")
                         for i, t in enumerate(self.trackers)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop probing; no callback runs after this returns (except one already running)."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout)

    def _loop(self, tracker: CheckTracker) -> None:
        interval = tracker.spec.interval_seconds
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                success, reason = run_probe(tracker.spec, self._env, self._cwd)
            except Exception as exc:  # a probe bug must not end health checking silently
                log.exception("health probe crashed")
                success, reason = False, f"{tracker.spec.protocol} health check error: {exc}"
            if self._stop.is_set():
                return
            with self._lock:
                changed = tracker.record(success, reason, time.monotonic())
                verdict = self._task_verdict(changed) if changed else None
            if verdict is not None:
                try:
                    self._on_change(verdict)
                except Exception:
                    log.exception("health callback failed")
            next_at += interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))
            next_at = max(next_at, time.monotonic() - interval)  # no burst after a slow probe

    def _task_verdict(self, changed: Verdict) -> Verdict | None:
        """Combine the checks (caller holds the lock); a Verdict only when the task's changes."""
        states = [t.healthy for t in self.trackers]
        if any(s is False for s in states):
            healthy: bool | None = False
        elif all(s is True for s in states):
            healthy = True
        else:
            healthy = None
        if healthy is None or healthy == self._reported:
            return None
        self._reported = healthy
        # The task's verdict only changes in the direction of the check that just changed
        # (all healthy needs this one healthy; any unhealthy, after none, needs this one).
        return changed
