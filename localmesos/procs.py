"""Child processes of localmesos: spawning, process groups, and the no-orphans guarantee.

Invariants:
- Every task and executor runs in its own session (hence its own process group, pgid == pid).
- Every child is spawned from one long-lived thread with PR_SET_PDEATHSIG=SIGKILL set in the
  child: Linux delivers the death signal when the *thread* that forked exits, so forking from
  short-lived HTTP handler threads would kill children early.
- A guardian process (own session, so a kill of localmesos's group does not reach it) holds the
  list of live process groups; when localmesos dies, even by SIGKILL, the guardian's stdin hits
  EOF and it SIGKILLs every group still listed — grandchildren that PDEATHSIG cannot reach too.
"""

from __future__ import annotations

import ctypes
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
from concurrent.futures import Future
from typing import Any

log = logging.getLogger("localmesos.procs")

PR_SET_PDEATHSIG = 1

try:
    _libc: Any = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - non-Linux
    _libc = None

GUARDIAN = r"""
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
groups = set()
for line in sys.stdin:
    line = line.strip()
    if line[:1] == "+":
        groups.add(int(line[1:]))
    elif line[:1] == "-":
        groups.discard(int(line[1:]))
for g in groups:
    try:
        os.killpg(g, signal.SIGKILL)
    except OSError:
        pass
"""


def _child_setup(parent_pid: int) -> None:
    if _libc is not None:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def kill_group(pgid: int, sig: int) -> bool:
    """Signal a whole process group; False when no such group exists any more."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def group_alive(pgid: int) -> bool:
    return kill_group(pgid, 0)


class Spawner:
    """Starts children from one dedicated thread; tells the guardian about their groups."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[dict[str, Any], Future] | None] = queue.Queue()
        self._guard_lock = threading.Lock()
        self._guardian: subprocess.Popen | None = None
        self._thread = threading.Thread(target=self._run, name="spawner", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._guardian = subprocess.Popen(
                [sys.executable, "-c", GUARDIAN], stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                text=True, close_fds=True)
        except OSError:
            log.exception("could not start the guardian process")
        while True:
            job = self._jobs.get()
            if job is None:
                return
            spec, fut = job
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(self._spawn(**spec))
            except Exception as exc:
                fut.set_exception(exc)

    def _spawn(self, argv: list[str], env: dict[str, str], cwd: str, stdout: str,
               stderr: str) -> subprocess.Popen:
        parent = os.getpid()
        with open(stdout, "ab") as out, open(stderr, "ab") as err:
            p = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=err, start_new_session=True, close_fds=True,
                                 preexec_fn=lambda: _child_setup(parent))
        self.guard(p.pid)
        return p

    def spawn(self, argv: list[str], env: dict[str, str], cwd: str, stdout: str,
              stderr: str) -> Future:
        fut: Future = Future()
        self._jobs.put((dict(argv=argv, env=env, cwd=cwd, stdout=stdout, stderr=stderr), fut))
        return fut

    def _tell(self, line: str) -> None:
        with self._guard_lock:
            g = self._guardian
            if g is None or g.stdin is None:
                return
            try:
                g.stdin.write(line + "\n")
                g.stdin.flush()
            except (OSError, ValueError):
                pass

    def guard(self, pgid: int) -> None:
        self._tell(f"+{pgid}")

    def unguard(self, pgid: int) -> None:
        self._tell(f"-{pgid}")

    def stop(self) -> None:
        """Stop the spawner thread, then let the guardian finish (it kills what is left)."""
        self._jobs.put(None)
        self._thread.join(5)
        with self._guard_lock:
            g = self._guardian
            self._guardian = None
        if g is not None and g.stdin is not None:
            try:
                g.stdin.close()
            except OSError:
                pass
            try:
                g.wait(5)
            except subprocess.TimeoutExpired:
                g.kill()
