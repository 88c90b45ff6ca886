"""Where a SQLite state store's writers wait for their turn, before `BEGIN IMMEDIATE`.

SQLite makes a writer that finds the write lock taken wait by sleeping (its busy handler: 1, 2,
5, 10 ... 100 ms between tries), however soon the lock is free. The API's gunicorn workers run
16 threads each, all writing through their own connections: under a stream of scale PUTs most
writers slept while the lock was free (p99 of 250-700 ms at ~1 ms of work per write).

Here the writers of one process first queue on a lock of their own (woken as soon as it is
free), so at most one writer per process meets SQLite's lock; the processes meet at an advisory
`flock` of a file beside the database (`<db>-writers`), which one waiting thread per process
polls every 0.1-1 ms.

Correctness never depends on this queue: SQLite's own lock still serialises the writes, so a
process that does not take part (an older version, the sqlite3 shell) merely meets the busy
handler. A writer that cannot get the file lock within the busy timeout, or cannot open the
file, goes on to SQLite's lock as before. `flock` locks belong to the open file description,
never to the POSIX locks SQLite holds on the database itself, and the file is opened per
process (a forked child gets its own), so parent and child never share a turn.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

_POLL_FIRST_S = 0.0001
_POLL_MAX_S = 0.001


class WriterQueue:
    """`with queue.turn(): ...` around one write transaction (see the module docstring)."""

    def __init__(self, db_path: str, timeout: float) -> None:
        self.path = db_path + "-writers"
        self.timeout = timeout
        self._pid = -1
        self._lock = threading.RLock()
        self._fd: int | None = None
        self._depth = 0

    def _for_this_process(self) -> None:
        if self._pid != os.getpid():    # new, or a forked child: its own lock and descriptor
            self._pid = os.getpid()
            self._lock = threading.RLock()
            self._fd = None
            self._depth = 0

    @contextmanager
    def turn(self) -> Iterator[bool]:
        """The process's turn to write: one thread at a time in a process (a nested turn of
        the same thread is part of its outer one), one process at a time beside it. Yields
        whether this thread holds the process's turn (False only past the timeout)."""
        self._for_this_process()
        deadline = time.monotonic() + self.timeout
        # Past the timeout without the process's lock: go on to SQLite's own wait.
        queued = self._lock.acquire(timeout=self.timeout)
        try:
            self._depth += queued
            locked = queued and self._depth == 1 and self._flock(deadline)
            try:
                yield queued
            finally:
                if locked and self._fd is not None:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            if queued:
                self._depth -= 1
                self._lock.release()

    def _flock(self, deadline: float) -> bool:
        """Take the file lock, polling (the process's other writers wait on its thread lock);
        False if it cannot be had (no file, or the deadline passed)."""
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:
                return False
        pause = _POLL_FIRST_S
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(pause)
                pause = min(pause * 2, _POLL_MAX_S)
            except OSError:
                return False

    def close(self) -> None:
        if self._pid == os.getpid() and self._fd is not None:
            os.close(self._fd)
            self._fd = None
