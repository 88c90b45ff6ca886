"""The queue a SQLite state store's writers wait in before `BEGIN IMMEDIATE`.

SQLite makes a writer that finds the write lock taken wait by sleeping (its busy handler: 1, 2,
5, 10 ... 100 ms between tries), however soon the lock is free. With the API's gunicorn workers
each running 16 threads, concurrent writes (scale PUTs) spent more time asleep than writing.
Here the writers of one process queue on a lock of their own (woken as soon as it is free),
and the processes meet at an advisory `flock` of a file beside the database (`<db>-writers`),
polled every 0.2-2 ms by one thread per process.

Correctness never depends on this queue: SQLite's own lock still serialises the writes, so a
process that does not take part (an older version, a tool) is merely slower to meet. A writer
that cannot get the file lock within the busy timeout goes on to SQLite's lock as before.
`flock` locks belong to the open file, not the process's other descriptors, so this never
touches the POSIX locks SQLite holds on the database itself.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

_POLL_FIRST_S = 0.0002
_POLL_MAX_S = 0.002


class WriterQueue:
    """`with queue.turn(): ...` around a write transaction (see the module docstring)."""

    def __init__(self, db_path: str, timeout: float) -> None:
        self.path = db_path + "-writers"
        self.timeout = timeout
        self._pid = -1
        self._lock = threading.RLock()
        self._fd: int | None = None
        self._depth = 0

    def _for_this_process(self) -> None:
        if self._pid != os.getpid():    # a forked child: its own lock and descriptor
            self._pid = os.getpid()
            self._lock = threading.RLock()
            self._fd = None
            self._depth = 0

    @contextmanager
    def turn(self) -> Iterator[None]:
        self._for_this_process()
        with self._lock:
            self._depth += 1
            locked = self._depth == 1 and self._flock()
            try:
                yield
            finally:
                self._depth -= 1
                if locked and self._fd is not None:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _flock(self) -> bool:
        """Take the file lock (polling briefly: one thread per process polls, the others wait
        on the thread lock); False if it cannot be had (no file, or the timeout passed)."""
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:
                return False
        deadline = time.monotonic() + self.timeout
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
            with self._lock:
                os.close(self._fd)
                self._fd = None
