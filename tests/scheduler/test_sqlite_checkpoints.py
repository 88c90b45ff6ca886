"""scheduler.sqlite_checkpoints: the WAL goes back into the database from a thread of its own,
and the writers never wait for it."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from scheduler.sqlite_state import SQLiteStateStore
from tests.support import wait_until


def events_in_database_file(path: Path) -> int:
    """Events in the database file itself, the write-ahead log ignored (`immutable`): what
    checkpoints have copied so far."""
    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    except sqlite3.OperationalError:   # not even the table has been copied yet
        return 0
    finally:
        conn.close()


def test_writes_go_on_while_a_checkpoint_waits_and_the_log_is_copied_after(tmp_path: Path):
    path = tmp_path / "state.db"
    store = SQLiteStateStore(path)
    checkpoints = store._checkpoints
    checkpoints.every = 5
    gate = threading.Event()
    connect = checkpoints._connect
    checkpoints._connect = lambda: (gate.wait(30), connect())[1]
    try:
        for i in range(12):   # the checkpoint thread is started, then held at the gate
            store.append_event("e", {"i": i})
        assert checkpoints._thread is not None and checkpoints._thread.is_alive()
        assert checkpoints.done == 0 and events_in_database_file(path) == 0
        gate.set()
        wait_until(lambda: checkpoints.done >= 1, timeout=10, message="a checkpoint")
        assert events_in_database_file(path) >= 5
        assert [e["i"] for _, e in store.events_since(0)] == list(range(12))
    finally:
        gate.set()
        store.close()
    assert not checkpoints._thread.is_alive()


def test_a_store_that_commits_less_than_the_interval_starts_no_thread(tmp_path: Path):
    store = SQLiteStateStore(tmp_path / "state.db")
    for i in range(3):
        store.append_event("e", {"i": i})
    assert store._checkpoints._thread is None
    store.close()
