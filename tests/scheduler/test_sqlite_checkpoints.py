"""scheduler.sqlite_checkpoints: the WAL goes back into the database from a thread of its own,
and the writers never wait for it."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from scheduler.sqlite_checkpoints import WAL_CHECK_EVERY
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


def test_a_long_log_is_checkpointed_by_a_process_that_commits_little(tmp_path: Path):
    """Each process counted its own commits: processes that ended before `every` commits
    (a scheduler killed and restarted, API workers replaced) never checkpointed, and in `make
    chaos` the log filled the store's filesystem. A log past the mark is checkpointed at the
    first commit that looks (every WAL_CHECK_EVERY)."""
    path = tmp_path / "state.db"
    writer = SQLiteStateStore(path)   # left open, as by a process killed -9: no closing copy
    writer._checkpoints.every = 10**9
    store = None
    try:
        for i in range(50):
            writer.append_event("e", {"i": i, "pad": "x" * 4000})
        assert events_in_database_file(path) == 0
        wal_bytes = Path(str(path) + "-wal").stat().st_size
        store = SQLiteStateStore(path)   # the next process's store: its count starts at 0
        checkpoints = store._checkpoints
        checkpoints.every = 10**9
        checkpoints.wal_bytes = wal_bytes // 2
        for i in range(50, 50 + WAL_CHECK_EVERY):   # the log is looked at within these
            store.append_event("e", {"i": i})
        wait_until(lambda: checkpoints.done >= 1, timeout=10, message="a checkpoint")
        assert events_in_database_file(path) >= 50
    finally:
        if store is not None:
            store.close()
        writer.close()
