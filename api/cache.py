"""A per-worker cache of rendered read answers, valid while the store has not changed.

`GET /v2/apps` with many apps spends its time decoding the stored documents and encoding the
answer; between two changes of the store, the answer is the same bytes. The cache keeps the
bytes with the store's *change token* read before the data; a request whose token differs (any
commit by any process since) recomputes. The token is read before the data, so an answer is
never newer than its token claims... only older, which a later token comparison catches: a stale
answer is never served. Answers also expire after `max_age` seconds because some fields depend
on the clock (a `Delayed` label ends when the delay runs out).

The change token for SQLite is `PRAGMA data_version` on one connection of this process that never
writes: SQLite guarantees it changes whenever another connection (any thread or process)
commits. Other backends may provide their own token or none (then nothing is cached).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from urllib.parse import quote

ChangeToken = Callable[[], "int | None"]


class SQLiteChangeToken:
    """`PRAGMA data_version` of a private read-only connection (re-opened after a fork)."""

    def __init__(self, path: str | Callable[[], str]) -> None:
        # A callable defers asking the (lazily opened) store for its file until first use.
        self._path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0

    def __call__(self) -> int | None:
        with self._lock:
            try:
                if self._conn is None or self._pid != os.getpid():
                    path = self._path() if callable(self._path) else self._path
                    self._conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True,
                                                 check_same_thread=False, timeout=5)
                    self._pid = os.getpid()
                return int(self._conn.execute("PRAGMA data_version").fetchone()[0])
            except sqlite3.Error:
                # No file yet, or unreadable: no token, so no caching (never a wrong answer).
                self._conn = None
                return None


class ViewCache:
    """Rendered bodies by key, each with the change token it was computed under."""

    def __init__(self, change_token: ChangeToken | None, max_age: float,
                 max_entries: int = 64) -> None:
        self.change_token = change_token if max_age > 0 else None
        self.max_age = max_age
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[int, float, bytes]] = OrderedDict()

    def token(self) -> int | None:
        return self.change_token() if self.change_token is not None else None

    def get(self, key: str, token: int | None) -> bytes | None:
        if token is None:
            return None
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            entry_token, at, body = entry
            if entry_token != token or time.monotonic() - at > self.max_age:
                del self._entries[key]
                return None
            return body

    def put(self, key: str, token: int | None, body: bytes) -> None:
        if token is None:
            return
        with self._lock:
            self._entries[key] = (token, time.monotonic(), body)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
