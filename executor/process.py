"""One task's service process: start it in its own process group, wait for it, kill it with grace.

Invariants:
- Every service runs in a process group of its own whose leader is a tiny *guard* (`/bin/sh`
  blocked on a pipe whose only writer is this executor). When the executor dies for any reason,
  SIGKILL included, the pipe reaches EOF and the guard SIGKILLs its whole group, so grandchildren
  the service forked die too. The service's direct child also carries PR_SET_PDEATHSIG=SIGKILL
  (set in `preexec_fn`), which kills it at once without waiting for the guard to be scheduled.
- PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the process. All
  children are therefore forked by one daemon thread that lives as long as the executor
  (`_Spawner`), never by short-lived worker threads or pymesos's I/O thread.
- Once the service's main process has exited, whatever is left of its group is SIGKILLed (the
  guard included) and waited for until the group holds no running process (at most 5 s), so
  when `wait()` or `kill()` returns no process of the task remains.
- `kill(grace)` is SIGTERM to the group, up to `grace` seconds for the main process to exit, then
  SIGKILL to the group. It may be called any number of times from any thread.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from queue import Queue
from typing import Any

PR_SET_PDEATHSIG = 1
# SIGKILL is delivered at once but a process only dies when the kernel next schedules it, which
# on a loaded machine takes a while: `_end_group` waits up to this long for the group to be empty.
GROUP_GONE_TIMEOUT = 5.0
# The guard ignores the signals a kill sends to the group, so that it outlives the grace period
# (if the executor dies during it, the guard still cleans up); the final SIGKILL ends it.
GUARD_SCRIPT = 'trap "" TERM INT HUP QUIT; read _ignored; kill -KILL 0'

try:
    _libc: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
except OSError:  # not Linux/glibc: the guard alone protects against orphans
    _libc = None


@dataclass(frozen=True)
class ExitStatus:
    """How the service's main process ended: an exit code or a signal."""

    code: int | None
    signal: int | None

    @classmethod
    def from_returncode(cls, returncode: int) -> ExitStatus:
        if returncode < 0:
            return cls(code=None, signal=-returncode)
        return cls(code=returncode, signal=None)

    @property
    def succeeded(self) -> bool:
        return self.code == 0

    @property
    def message(self) -> str:
        """Mesos's wording (the command executor's), e.g. `Command exited with status 3`."""
        if self.signal is not None:
            try:
                name = signal.strsignal(self.signal) or f"signal {self.signal}"
            except ValueError:
                name = f"signal {self.signal}"
            return f"Command terminated with signal {name}"
        return f"Command exited with status {self.code}"


class _Spawner:
    """A daemon thread that forks every child, so PDEATHSIG tracks the executor's lifetime."""

    def __init__(self) -> None:
        self._queue: Queue[tuple[Callable[[], Any], Future]] = Queue()
        self._thread = threading.Thread(target=self._run, name="spawner", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            fn, future = self._queue.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the caller, never kills the spawner
                future.set_exception(exc)

    def call(self, fn: Callable[[], Any]) -> Any:
        future: Future = Future()
        self._queue.put((fn, future))
        return future.result()


_spawner: _Spawner | None = None
_spawner_lock = threading.Lock()


def spawn(fn: Callable[[], Any]) -> Any:
    """Run `fn` (which forks) on the long-lived spawner thread and return its result."""
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = _Spawner()
    return _spawner.call(fn)


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    """preexec_fn: SIGKILL this child when the forking thread dies; give up if it already has."""

    def preexec() -> None:
        if _libc is not None:
            _libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent_pid:  # the executor died between fork and prctl
            os._exit(127)

    return preexec


def task_environment(base: Mapping[str, str], *, app_env: Mapping[str, str], ports: Sequence[int],
                     port_names: Sequence[str | None] = (), host: str, task_id: str, app_id: str,
                     sandbox: str) -> dict[str, str]:
    """The service's environment, per DEVELOPERS.md's executor contract.

    The executor's own environment (PATH, the MESOS_* variables, as a command task sees them) is
    the base; the app's `env` overrides it, and the variables the contract names override both,
    as Marathon does.
    """
    env = dict(base)
    env.update({str(k): str(v) for k, v in app_env.items()})
    for i, port in enumerate(ports):
        env[f"PORT{i}"] = str(port)
    for name, port in zip(port_names, ports, strict=False):
        if name:
            env["PORT_" + "".join(c if c.isalnum() else "_" for c in name).upper()] = str(port)
    if ports:
        env["PORT"] = str(ports[0])
    env["PORTS"] = ",".join(str(p) for p in ports)
    env["HOST"] = host
    env["MESOS_TASK_ID"] = task_id
    env["MARATHON_APP_ID"] = app_id
    env["MESOS_SANDBOX"] = sandbox
    return env


def live_in_group(pgid: int) -> list[int]:
    """The processes of group `pgid` that still run (zombies excluded: they are already dead)."""
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:  # no procfs: nothing can be checked, the SIGKILL has to do
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                text = f.read()
        except OSError:  # gone meanwhile
            continue
        # "pid (comm) state ppid pgrp ..."; comm may hold spaces and parentheses.
        fields = text[text.rindex(b")") + 2:].split()
        if len(fields) > 2 and fields[0] not in (b"Z", b"X") and int(fields[2]) == pgid:
            found.append(int(entry))
    return found


class ServiceProcess:
    """A started service: its guard (group leader), its main process, and how it ended."""

    def __init__(self, command: str | Sequence[str], env: Mapping[str, str], sandbox: str) -> None:
        """Start `command` (a string runs under `/bin/sh -c`, a list is an argv) in `sandbox`.

        Raises OSError if the command cannot be started (e.g. argv[0] does not exist); nothing
        is left running in that case.
        """
        self.sandbox = sandbox
        self._lock = threading.Lock()
        self._exited = threading.Event()
        self._status: ExitStatus | None = None
        self.killed = False  # a kill was requested (the status will be TASK_KILLED)
        self.started_at = time.monotonic()
        read_end, self._guard_pipe = os.pipe()  # both non-inheritable, as Python makes them
        try:
            self._guard = spawn(lambda: subprocess.Popen(
                ["/bin/sh", "-c", GUARD_SCRIPT], stdin=read_end, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, cwd=sandbox, process_group=0))
        finally:
            os.close(read_end)
        self.pgid = self._guard.pid
        stdout = stderr = None
        try:
            # Append: the agent sends the executor's own output to the same sandbox files.
            stdout = open(os.path.join(sandbox, "stdout"), "ab")
            stderr = open(os.path.join(sandbox, "stderr"), "ab")
            shell = isinstance(command, str)
            argv: str | list[str] = command if shell else list(command)
            self._popen = spawn(lambda: subprocess.Popen(
                argv, shell=shell, executable="/bin/sh" if shell else None, env=dict(env),
                cwd=sandbox, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                process_group=self.pgid, preexec_fn=_die_with_parent(os.getpid())))
        except BaseException:
            self._end_group()
            raise
        finally:
            for f in (stdout, stderr):
                if f is not None:
                    f.close()
        self.pid = self._popen.pid
        self._waiter = threading.Thread(target=self._wait, name=f"wait-{self.pid}", daemon=True)
        self._waiter.start()

    def _wait(self) -> None:
        returncode = self._popen.wait()
        status = ExitStatus.from_returncode(returncode)
        self._end_group()  # leftovers of the service die with it; the guard is no longer needed
        with self._lock:
            self._status = status
        self._exited.set()

    def _end_group(self) -> None:
        """SIGKILL the whole group and return once none of its processes runs any more.

        `killpg` only queues the signal (the kernel sees to it that a member forking meanwhile
        cannot escape it); each member dies when it is next scheduled, and the members other than
        the guard are not our children, so they cannot be waited for: the group is polled in
        /proc until it holds nothing but zombies, for at most GROUP_GONE_TIMEOUT seconds.
        """
        deadline = time.monotonic() + GROUP_GONE_TIMEOUT
        self.signal_group(signal.SIGKILL)
        try:
            self._guard.wait(GROUP_GONE_TIMEOUT)
        except subprocess.TimeoutExpired:  # SIGKILLed, so only a stuck kernel gets here
            pass
        delay = 0.001
        while live_in_group(self.pgid) and time.monotonic() < deadline:
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        try:
            os.close(self._guard_pipe)
        except OSError:
            pass

    @property
    def status(self) -> ExitStatus | None:
        with self._lock:
            return self._status

    def wait(self, timeout: float | None = None) -> ExitStatus | None:
        """The exit status once the main process has exited (and its group is gone), or None."""
        self._exited.wait(timeout)
        return self.status

    def kill(self, grace: float) -> ExitStatus:
        """SIGTERM the group, wait up to `grace` seconds, then SIGKILL it; return the exit status."""
        with self._lock:
            self.killed = True
        if not self._exited.is_set():
            self.signal_group(signal.SIGTERM)
            if not self._exited.wait(max(0.0, grace)):
                self.signal_group(signal.SIGKILL)
        self._exited.wait()
        status = self.status
        assert status is not None
        return status

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
