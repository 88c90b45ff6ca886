"""Helpers shared by the integration tests: free ports, real child processes, condition waits.

Waiting is always on an observable condition with a deadline (never a bare sleep): `wait_until`
polls a predicate and fails with the last value seen, so a slow machine makes a test slower, not
flaky, and a broken system makes it fail with a message.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    """True if nothing holds `port` on 127.0.0.1 now (another run may use the same agent ports)."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def metric_samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """A Prometheus exposition (`/metrics`) parsed: sample name -> [(labels, value)]."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05,
               message: str = "condition", *,
               error: Callable[[str], BaseException] = AssertionError,
               retry_on: tuple[type[BaseException], ...] = (Exception,)) -> Any:
    """Poll `predicate` until it returns something truthy; return that value or raise.

    An exception of a `retry_on` type counts as "not yet" (the system under test may not answer
    yet); others propagate. At the deadline, `error(text)` is raised: AssertionError for tests;
    the benches pass TimeoutError or SystemExit, and `retry_on=()` so a broken check stops them.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = predicate()
        except retry_on as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise error(f"timed out after {timeout}s waiting for {message}; last: {last!r}")
        time.sleep(interval)


class Proc:
    """A child process in its own process group, its output collected line by line.

    `stop()` ends the whole group (SIGTERM, then SIGKILL after `grace`), so nothing it started
    survives the test. Every line is kept (`full_output()`), also after the process ended, and
    each `watch_processes()` block open at creation time records the instance, so a process a
    test killed or replaced is still checked by `assert_no_traceback`.
    """

    _watchers: list[list[Proc]] = []

    def __init__(self, args: list[str], env: dict[str, str] | None = None,
                 cwd: str | os.PathLike | None = None) -> None:
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env.setdefault("PYTHONUNBUFFERED", "1")
        self.args = args
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.popen = subprocess.Popen(
            args, env=full_env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        for watcher in Proc._watchers:
            watcher.append(self)

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for_line(self, predicate: Callable[[str], bool], timeout: float = 60.0) -> str:
        """Block until an output line satisfies `predicate`; fail if the process exits first."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    if predicate(line):
                        return line
                seen = len(self.lines)
                if self.popen.poll() is not None and not self._reader.is_alive():
                    raise AssertionError(
                        f"{self.args[:3]} exited with {self.popen.returncode}:\n" + self.output())
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for a line from {self.args[:3]}:\n"
                                         + self.output())
                self._cond.wait(min(left, 0.5))

    def output(self, tail: int | None = 200) -> str:
        """The last `tail` lines (for failure messages); `full_output()` for checks."""
        with self._cond:
            return "\n".join(self.lines if tail is None else self.lines[-tail:])

    def full_output(self) -> str:
        """Every line so far. After `stop()` it waits for the reader to drain the pipe first."""
        if self.popen.poll() is not None:
            self._reader.join(5)
        return self.output(tail=None)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, grace: float = 10.0) -> int | None:
        if self.popen.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                pass
            # Whatever is left of the group: the leader was alive a moment ago, and its pid
            # stays reserved while any member of its group lives, so this reaches only them.
            self.signal(signal.SIGKILL)
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                pass
        # A leader already gone before this call (stopped earlier, or ended by the test) gets
        # no group signal: its pid may be another process group's by now (pid_max is 32,768
        # on these machines and the suite starts many processes).
        return self.popen.returncode


@contextmanager
def watch_processes() -> Iterator[list[Proc]]:
    """Yields the list of every `Proc` created inside the block (any thread), in order."""
    seen: list[Proc] = []
    Proc._watchers.append(seen)
    try:
        yield seen
    finally:
        Proc._watchers.remove(seen)


def assert_no_traceback(procs: Iterable[Proc]) -> None:
    """No process logged a traceback, anywhere in its whole output (not just the tail)."""
    for proc in procs:
        lines = proc.full_output().splitlines()
        hits = [i for i, line in enumerate(lines) if "Traceback" in line]
        if hits:
            first = hits[0]
            excerpt = "\n".join(lines[max(0, first - 5):first + 40])
            raise AssertionError(
                f"{' '.join(proc.args[:5])} (pid {proc.pid}, exit {proc.popen.returncode}) logged "
                f"{len(hits)} traceback(s) among {len(lines)} lines; the first at line "
                f"{first + 1}:\n{excerpt}")


def process_group_alive(pgid: int) -> bool:
    """True while any process of the group `pgid` exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def container_ids(doc: Any) -> set[int]:
    """The ids of every dict and list in `doc`, itself included (to check that two documents
    share no mutable part)."""
    if isinstance(doc, dict):
        return {id(doc)}.union(*(container_ids(v) for v in doc.values()))
    if isinstance(doc, list):
        return {id(doc)}.union(*(container_ids(v) for v in doc))
    return set()
