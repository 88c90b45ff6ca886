"""Where a SQLite state store's writers of one process wait for their turn, before
`BEGIN IMMEDIATE`.

SQLite makes a writer that finds the write lock taken wait by sleeping (its busy handler: 1, 2,
5, 10 ... 100 ms between tries), however soon the lock is free. The API's gunicorn workers run
16 threads each, all writing through their own connections: under a stream of scale PUTs most
writers slept while the lock was free (p99 of 250-700 ms at ~1 ms of work per write).

Here the writers of one process queue on a lock of their own (woken as soon as it is free), so
at most one writer per process meets SQLite's lock, and the holder of the turn writes on the
process's one writing connection (`SQLiteStateStore._writer_conn`). Processes still meet at
SQLite's own lock and busy handler: a `flock` queue between them (polled, or blocking without a
timeout) measured no different here, so there is none.

Correctness never depends on this queue: SQLite's lock still serialises the writes. A writer
that cannot get the turn within the busy timeout goes on to SQLite's lock as before. A forked
child gets its own lock (a copy of the parent's may be held by a thread the child does not
have).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class WriterQueue:
    """`with queue.turn() as mine: ...` around one write transaction (see the module)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._pid = -1
        self._lock = threading.RLock()

    @contextmanager
    def turn(self) -> Iterator[bool]:
        """The process's turn to write: one thread at a time (a nested turn of the same thread
        is part of its outer one). Yields whether this thread holds the turn (False only past
        the timeout)."""
        if self._pid != os.getpid():    # new, or a forked child: its own lock
            self._pid = os.getpid()
            self._lock = threading.RLock()
        lock = self._lock
        mine = lock.acquire(timeout=self.timeout)
        try:
            yield mine
        finally:
            if mine:
                lock.release()
