"""scheduler.sqlite_writers: group commit (one transaction for the writers that queued meanwhile,
each in its own savepoint, nobody answered before the COMMIT) and the processes' bounded turn."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from scheduler.sqlite_state import SQLiteStateStore
from scheduler.sqlite_writers import ProcessTurn, WriterQueue, WriterStats
from scheduler.state import Transaction
from tests.support import wait_until


class Database:
    """A real SQLite file and the `transaction(mine)` WriterQueue.run expects, counting the
    transactions it opened and able to fail its next COMMIT."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("CREATE TABLE rows (k TEXT PRIMARY KEY)")
        self.transactions = 0
        self.fail_commit = False
        self.at_commit: list[object] = []   # what `answered` held when each COMMIT began
        self.answered: list[str] = []

    @contextmanager
    def transaction(self, mine: bool) -> Iterator[sqlite3.Connection]:
        self.transactions += 1
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.at_commit.append(list(self.answered))
        if self.fail_commit:
            self.conn.execute("ROLLBACK")
            raise sqlite3.OperationalError("disk I/O error")
        self.conn.execute("COMMIT")

    def keys(self) -> list[str]:
        return sorted(k for (k,) in self.conn.execute("SELECT k FROM rows"))


def insert(key: str, then_fail: bool = False):
    def work(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO rows (k) VALUES (?)", (key,))
        if then_fail:
            raise ValueError(f"{key} rejected")
        return key
    return work


def queued_behind_a_held_turn(queue: WriterQueue, db: Database, works: dict) -> dict:
    """Run `works` (name -> work) in threads while another thread holds the turn, release it
    once all of them wait, and return name -> result or exception."""
    outcomes: dict = {}
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        with queue.turn():
            inside.set()
            release.wait(30)

    def write(name: str, work) -> None:
        try:
            outcomes[name] = queue.run(work, db.transaction)
        except Exception as exc:   # noqa: BLE001 - the outcome under test
            outcomes[name] = exc
        db.answered.append(name)

    holder = threading.Thread(target=hold)
    holder.start()
    assert inside.wait(10)
    threads = []
    for name, work in works.items():
        threads.append(threading.Thread(target=write, args=(name, work)))
        threads[-1].start()
        # one at a time, so the order of arrival is known
        count = len(threads)
        wait_until(lambda count=count: len(queue._waiting) == count, timeout=10,
                   message=f"{count} writers waiting")
    release.set()
    for t in threads + [holder]:
        t.join(10)
    return outcomes


def test_writers_that_queued_meanwhile_share_one_transaction(tmp_path: Path) -> None:
    queue, db = WriterQueue(10), Database(tmp_path / "db")
    outcomes = queued_behind_a_held_turn(queue, db, {"a": insert("a"), "b": insert("b"),
                                                     "c": insert("c")})
    assert outcomes == {"a": "a", "b": "b", "c": "c"}
    assert db.transactions == 1 and db.keys() == ["a", "b", "c"]
    assert db.at_commit == [[]]   # nobody had its answer before the COMMIT


def test_stats_count_transactions_writes_the_wait_and_the_turn_held(tmp_path: Path) -> None:
    """`stats()`: one transaction for the three writers queued behind a held turn, and its
    leader's wait for that turn; then a work that holds the turn 0.2 s without using the CPU
    shows as held time well above the holder's CPU (as the GIL waits of a busy process do)."""
    queue, db = WriterQueue(10), Database(tmp_path / "db")
    assert queue.stats() == WriterStats()
    queued_behind_a_held_turn(queue, db, {"a": insert("a"), "b": insert("b"),
                                          "c": insert("c")})
    first = queue.stats()
    assert (first.transactions, first.writes) == (1, 3)
    assert first.wait_seconds > 0
    assert first.held_seconds >= first.held_cpu_seconds > 0

    def idle(conn: sqlite3.Connection) -> str:
        threading.Event().wait(0.2)   # the turn held, no CPU used: what is measured
        return "idle"

    assert queue.run(idle, db.transaction) == "idle"
    second = queue.stats()
    assert (second.transactions, second.writes) == (2, 4)
    assert second.held_seconds - first.held_seconds >= 0.2
    assert second.held_cpu_seconds - first.held_cpu_seconds < 0.1


def test_a_rejected_write_takes_back_only_its_own_statements(tmp_path: Path) -> None:
    queue, db = WriterQueue(10), Database(tmp_path / "db")
    outcomes = queued_behind_a_held_turn(
        queue, db, {"a": insert("a"), "b": insert("b", then_fail=True), "c": insert("c")})
    assert outcomes["a"] == "a" and outcomes["c"] == "c"
    assert isinstance(outcomes["b"], ValueError) and str(outcomes["b"]) == "b rejected"
    assert db.transactions == 1 and db.keys() == ["a", "c"]


def test_a_failed_commit_fails_every_writer_of_the_transaction(tmp_path: Path) -> None:
    queue, db = WriterQueue(10), Database(tmp_path / "db")
    db.fail_commit = True
    outcomes = queued_behind_a_held_turn(queue, db, {"a": insert("a"), "b": insert("b")})
    assert all(isinstance(o, sqlite3.OperationalError) for o in outcomes.values()), outcomes
    assert db.keys() == []
    db.fail_commit = False   # the queue goes on: the next writer leads its own transaction
    assert queue.run(insert("d"), db.transaction) == "d" and db.keys() == ["d"]


def test_a_write_from_inside_a_write_joins_its_transaction(tmp_path: Path) -> None:
    queue, db = WriterQueue(10), Database(tmp_path / "db")

    def outer(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO rows (k) VALUES ('outer')")
        return queue.run(insert("inner"), db.transaction)

    assert queue.run(outer, db.transaction) == "inner"
    assert db.transactions == 1 and db.keys() == ["inner", "outer"]


def test_a_store_under_concurrent_plans_loses_and_mixes_nothing(tmp_path: Path) -> None:
    """Many threads through the real store's shared transactions: each event lands once."""
    store = SQLiteStateStore(tmp_path / "state.db")

    def plan(k: int, i: int):
        return lambda r: (Transaction((), events=({"eventType": "t", "k": k, "i": i},)), (k, i))

    results: list = []

    def write(k: int) -> None:
        results.extend(store.transact(plan(k, i)) for i in range(40))

    threads = [threading.Thread(target=write, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    events = [(e["k"], e["i"]) for _, e in store.events_since(0, limit=1000)]
    assert sorted(events) == sorted(results) == [(k, i) for k in range(8) for i in range(40)]
    for k in range(8):   # each thread's writes in its own order
        assert [i for kk, i in events if kk == k] == list(range(40))
    store.close()


# -- the processes' turn ----------------------------------------------------------------------
@pytest.fixture
def other_holder(tmp_path: Path) -> Iterator[int]:
    """A descriptor of its own holding the flock (as another process's would: locks of
    different open files exclude each other even within one process)."""
    fd = os.open(tmp_path / "db-writers", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    yield fd
    os.close(fd)


def test_the_processes_turn_is_given_up_at_its_deadline(tmp_path: Path, other_holder: int) -> None:
    turn = ProcessTurn(str(tmp_path / "db-writers"))
    t0 = time.monotonic()
    assert turn.acquire(1.0) is False
    assert 1.0 <= time.monotonic() - t0 < 5
    assert turn._keeper_waits   # still queued in the kernel for the writer that gave up
    fcntl.flock(other_holder, fcntl.LOCK_UN)
    # What the keeper gets for a writer that gave up, it gives back: the other one can take it.
    wait_until(lambda: not turn._keeper_waits, timeout=10, message="the keeper's flock")
    assert _try_flock(other_holder)
    turn.close()


def test_the_processes_turn_is_had_as_soon_as_released(tmp_path: Path, other_holder: int) -> None:
    turn = ProcessTurn(str(tmp_path / "db-writers"))
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(turn.acquire(30)))
    waiter.start()
    wait_until(lambda: turn._keeper_waits, timeout=10, message="the keeper waiting")
    assert not got
    fcntl.flock(other_holder, fcntl.LOCK_UN)
    waiter.join(10)
    assert got == [True]
    assert not _try_flock(other_holder)   # held for the writer now
    turn.release()
    assert _try_flock(other_holder)
    turn.close()


def test_a_turn_released_while_the_writer_spins_is_had_without_sleeping(
        tmp_path: Path, other_holder: int) -> None:
    turn = ProcessTurn(str(tmp_path / "db-writers"), spin=30)
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(turn.acquire(60)))
    waiter.start()
    wait_until(lambda: waiter.native_id is not None and _thread_runs(waiter.native_id),
               timeout=10, message="the writer retrying the lock")
    assert not got
    fcntl.flock(other_holder, fcntl.LOCK_UN)
    waiter.join(10)
    assert got == [True]
    assert turn._keeper is None      # had by retrying: no thread was put to wait in flock
    assert not _try_flock(other_holder)
    turn.release()
    turn.close()


def _thread_runs(native_id: int) -> bool:
    """The thread is running or runnable (a writer retrying, not one asleep in a wait)."""
    stat = Path(f"/proc/self/task/{native_id}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "R"


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    fcntl.flock(fd, fcntl.LOCK_UN)
    return True
