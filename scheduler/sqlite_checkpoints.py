"""WAL checkpoints of a SQLite state store, off the writers' path.

SQLite copies the write-ahead log back into the database (a checkpoint) by itself once the log
holds 1,000 pages, inside the COMMIT that crossed the mark: that writer copies every page
changed since the last checkpoint and waits for two fdatasyncs while it still holds the
writers' turn (`scheduler.sqlite_writers`), so every other writer waits too. Under a stream of
scale PUTs (~22 pages each) that was one COMMIT in 45 taking ~8 ms instead of ~0.1 ms: 60% of
all COMMIT time.

Here a process's writers only count their commits; every `every` commits a thread of the
process checkpoints (PASSIVE: it never blocks a writer or a reader) on a connection of its own,
while the writers go on. SQLite's own checkpoint stays as a safety net at a higher mark
(`AUTOCHECKPOINT_PAGES`), for a process that writes much between two of these.

The count is a process's own, so processes that each commit less than `every` times before
they end (a scheduler killed and restarted, API workers replaced) never checkpointed: in `make
chaos` the log grew to the 24 MB of the store's filesystem while the database file stayed at
one page, and every write failed "database or disk is full" from then on. So every
`WAL_CHECK_EVERY` commits the log's size is looked at too (one stat), and a log past
`WAL_CHECKPOINT_BYTES` is checkpointed whatever the count.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

AUTOCHECKPOINT_PAGES = 10_000     # SQLite's own, per writing connection (its default: 1,000)
EVERY_COMMITS = 200               # ~4,400 pages of scale PUTs, fewer when commits are grouped
WAL_CHECK_EVERY = 20              # commits between two looks at the log's size
WAL_CHECKPOINT_BYTES = 4 << 20    # a log past this is checkpointed whatever the count (1,000 pages)


class Checkpoints:
    """`committed()` after each COMMIT; checkpoints run in a thread of the process."""

    def __init__(self, connect: Callable[[], sqlite3.Connection],
                 every: int = EVERY_COMMITS, wal_path: str | None = None,
                 wal_bytes: int = WAL_CHECKPOINT_BYTES) -> None:
        self._connect = connect
        self.every = every
        self.wal_path = wal_path
        self.wal_bytes = wal_bytes
        self._pid = -1
        self.done = 0               # checkpoints run by this process (for tests and logs)

    def _for_this_process(self) -> None:
        if self._pid != os.getpid():    # new, or a forked child: its own count and thread
            self._pid = os.getpid()
            self._count = 0
            self._cv = threading.Condition(threading.Lock())
            self._due = self._closed = False
            self._thread: threading.Thread | None = None

    def committed(self) -> None:
        self._for_this_process()
        self._count += 1
        if self._count % self.every and not self._wal_is_long():
            return
        with self._cv:
            if self._closed:
                return
            self._due = True
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sqlite-checkpoints",
                                                daemon=True)
                self._thread.start()
            self._cv.notify()

    def _wal_is_long(self) -> bool:
        """Every `WAL_CHECK_EVERY` commits (and the first): whether the log is past the mark."""
        if self.wal_path is None or self._count % WAL_CHECK_EVERY != 1:
            return False
        try:
            return os.path.getsize(self.wal_path) > self.wal_bytes
        except OSError:
            return False

    def close(self) -> None:
        if self._pid != os.getpid():
            return
        with self._cv:
            self._closed = True
            self._cv.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5)

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while True:
                with self._cv:
                    self._cv.wait_for(lambda: self._due or self._closed)
                    if self._closed:
                        return
                    self._due = False
                try:
                    conn = conn or self._connect()
                    busy, frames, copied = conn.execute(
                        "PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.done += 1
                    log.debug("WAL checkpoint: %s of %s pages copied%s", copied, frames,
                              " (busy)" if busy else "")
                except sqlite3.Error as exc:   # the next one will try again
                    log.warning("WAL checkpoint failed: %s", exc)
        finally:
            if conn is not None:
                conn.close()
