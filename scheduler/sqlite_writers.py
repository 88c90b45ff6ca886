"""How a SQLite state store's writers take turns: one write transaction at a time per process
and across processes, concurrent writes of one process committed together.

SQLite makes a writer that finds the write lock taken wait by sleeping (its busy handler: 1, 2,
5, 10 ... 100 ms between tries), however soon the lock is free. The API's gunicorn workers run
16 threads each: under a stream of scale PUTs most writers slept while the lock was free.

- **In a process**, writers queue on a lock of their own (woken as soon as it is free) and the
  holder of the turn writes on the process's one writing connection
  (`SQLiteStateStore._writer_conn`, whose page cache stays warm).
- **Between processes** (gunicorn's workers, the scheduler), the holder of a process's turn
  then takes an advisory `flock` of `<db>-writers`, so the next process is woken the moment
  the previous one commits instead of polling SQLite's lock. The wait is bounded: past the
  timeout, a writer goes on to SQLite's own lock as before. Correctness never depends on this
  file: SQLite's lock still serialises the writes (the sqlite3 shell does not take part).
  Before it sleeps for the lock, a writer tries again for `SPIN_SECONDS` (an adaptive lock's
  spin, yielding the CPU between tries): the other process's turn is one transaction, about a
  millisecond, and a writer put to sleep for it is woken late, on a CPU gone idle. Under a
  stream of scale PUTs on a 2-CPU VM, the API made 19% more PUTs with a 3 ms spin than
  without, and 10% more again with 10 ms (`bench/api_ab.py`, medians of 16 paired rounds).
  A wait that outlasts the spin (the holder's transaction is long) costs that much CPU.
- **Group commit** (`WriterQueue.run`): writers that arrive while a transaction is under way
  wait for it; the next one to lead then applies all of them in one transaction, each inside
  its own SAVEPOINT, so one that fails (a rejected change) takes only its own statements back.
  A commit writes each changed page once, however many changes touched it (a scale PUT alone
  writes ~22 pages: app, deployment, events, version history, indexes), and nobody's result
  is given out before the COMMIT that stored it: a failed COMMIT fails all of them.

A forked child gets its own locks and lock file descriptor (its copies of the parent's could
be held by a thread the child does not have, and a `flock` belongs to the open file).

`WriterQueue.stats()` says what the turns of `run` cost this process so far (`WriterStats`,
exported by the API's `/metrics`): how long leaders waited for the turn, how long they held it
and how much of that was their own CPU, and how many writes each transaction carried. Held
time well above its CPU means the holder waited between its SQLite calls, for the GIL or,
with every CPU busy, for a CPU.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")
Transaction = Callable[[bool], AbstractContextManager[sqlite3.Connection]]

SPIN_SECONDS = 0.010  # how long a writer retries the processes' lock before sleeping for it


class ProcessTurn:
    """The processes' turn: an exclusive `flock` of `path`, waited for with a deadline.

    An uncontended lock is taken on the spot. A contended one is waited for by a keeper thread
    blocked in `flock` (woken by the kernel as the holder releases), so the waiting writer can
    give up at its deadline; a lock the keeper gets for a writer that gave up is released.
    Before the keeper is asked, the lock is tried again for `spin` seconds (see the module).
    One thread of the process asks at a time (the holder of the process's own turn)."""

    def __init__(self, path: str, spin: float = SPIN_SECONDS) -> None:
        self.path = path
        self.spin = spin
        self._pid = -1

    def _for_this_process(self) -> None:
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._fd: int | None = None
            self._cv = threading.Condition(threading.Lock())
            self._wanted = self._granted = self._keeper_waits = self._closed = False
            self._keeper: threading.Thread | None = None

    def acquire(self, timeout: float) -> bool:
        """True with the lock held; False if it could not be had (no file, or the deadline)."""
        self._for_this_process()
        with self._cv:
            if self._closed:
                return False
            if self._fd is None:
                try:
                    self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                except OSError:
                    return False
            if not self._keeper_waits:  # (else the keeper's own request is in the kernel's queue)
                got = self._try_spinning(self._fd, min(self.spin, timeout))
                if got is not None:
                    return got
            if self._keeper is None:
                self._keeper = threading.Thread(target=self._keep, args=(self._fd,),
                                                name="sqlite-writers-flock", daemon=True)
                self._keeper.start()
            self._wanted = True
            self._cv.notify_all()
            if self._cv.wait_for(lambda: self._granted, timeout):
                self._granted = False
                return True
            self._wanted = False   # the keeper releases what it gets from now on
            return False

    @staticmethod
    def _try_spinning(fd: int, spin: float) -> bool | None:
        """True with the lock, False if it cannot be had (an error), None if still busy after
        `spin` seconds of retries."""
        end = time.monotonic() + spin
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                pass
            except OSError:
                return False
            if time.monotonic() >= end:
                return None
            os.sched_yield()

    def release(self) -> None:
        if self._pid == os.getpid() and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the file (its lock goes with it) and let the keeper end."""
        if self._pid != os.getpid():
            return
        with self._cv:
            self._closed = True
            self._cv.notify_all()
            if self._fd is not None and not self._keeper_waits:
                os.close(self._fd)
            self._fd = None

    def _keep(self, fd: int) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._wanted or self._closed)
                if self._closed:
                    return
                self._keeper_waits = True
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)   # blocks, without the GIL, until released
            except OSError:
                pass
            with self._cv:
                self._keeper_waits = False
                if self._closed:                 # closed meanwhile: the file is the keeper's
                    os.close(fd)
                    return
                if self._wanted:
                    self._wanted, self._granted = False, True
                    self._cv.notify_all()
                else:
                    fcntl.flock(fd, fcntl.LOCK_UN)


@dataclass
class WriterStats:
    """What the writers' turns of `WriterQueue.run` cost one process so far (monotonic)."""

    transactions: int = 0          # transactions led through the queue
    writes: int = 0                # the works they carried (several per transaction: group commit)
    wait_seconds: float = 0.0      # leaders waiting for the turn (this process's, then the file's)
    held_seconds: float = 0.0      # the turn held: BEGIN to COMMIT and the works between
    held_cpu_seconds: float = 0.0  # the leading thread's own CPU while it held the turn


def _held_lock() -> threading.Lock:
    lock = threading.Lock()
    lock.acquire()
    return lock


@dataclass
class _Pending:
    """One writer's work in the group-commit queue, and what became of it.

    The writer waits for `woken` to be released, once, by whoever wakes it (a leader hands
    it the next lead, or gives it its result). A bare lock rather than an Event: Event.set
    notifies under a condition lock that the woken thread must take again, one more wait
    and wake per writer in a batch."""

    work: Callable[[sqlite3.Connection], Any]
    woken: threading.Lock = field(default_factory=_held_lock)
    leads: bool = False           # woken to lead the next transaction
    result: Any = None
    error: BaseException | None = None

    def wait(self) -> None:
        self.woken.acquire()

    def wake(self) -> None:
        self.woken.release()

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


class WriterQueue:
    """The turns of one store's writers (see the module): `turn()` around one exclusive write
    transaction, `run(work, transaction)` for a write that may share its transaction."""

    def __init__(self, timeout: float, lock_path: str | None = None) -> None:
        self.timeout = timeout
        self._process_turn = ProcessTurn(lock_path) if lock_path else None
        self._pid = -1

    def _for_this_process(self) -> None:
        if self._pid != os.getpid():    # new, or a forked child: its own locks and queue
            self._pid = os.getpid()
            self._lock = threading.RLock()
            self._depth = 0
            self._mutex = threading.Lock()
            self._waiting: list[_Pending] = []
            self._leading = False
            self._leader: int | None = None
            self._conn: sqlite3.Connection | None = None
            self._stats = WriterStats()

    def stats(self) -> WriterStats:
        """A copy of this process's `WriterStats`."""
        self._for_this_process()
        with self._mutex:
            return WriterStats(**vars(self._stats))

    def close(self) -> None:
        if self._process_turn is not None:
            self._process_turn.close()

    @contextmanager
    def turn(self) -> Iterator[bool]:
        """The turn to write: one thread at a time in the process (a nested turn of the same
        thread is part of its outer one), one process at a time beside it. Yields whether this
        thread holds the process's turn (False only past the timeout)."""
        self._for_this_process()
        lock = self._lock
        mine = lock.acquire(timeout=self.timeout)
        shared = False
        try:
            if mine:
                self._depth += 1
                if self._depth == 1 and self._process_turn is not None:
                    shared = self._process_turn.acquire(self.timeout)
            yield mine
        finally:
            if shared and self._process_turn is not None:
                self._process_turn.release()
            if mine:
                self._depth -= 1
                lock.release()

    def run(self, work: Callable[[sqlite3.Connection], T], transaction: Transaction) -> T:
        """`work(conn)` inside a write transaction, possibly with other threads' works (each in
        its own SAVEPOINT, in arrival order); returns its result, or raises its error, once the
        transaction committed. `transaction(mine)` opens one (BEGIN IMMEDIATE ... COMMIT) on
        the connection for a holder of the turn (`mine`) or not."""
        self._for_this_process()
        if self._leader == threading.get_ident():   # a work that writes again: same transaction
            assert self._conn is not None
            return _in_savepoint(self._conn, work)
        me = _Pending(work)
        with self._mutex:
            self._waiting.append(me)
            me.leads = not self._leading
            self._leading = True
        if not me.leads:
            me.wait()
            if not me.leads:
                return me.outcome()
        batch: list[_Pending] = []
        asked = time.perf_counter()
        try:
            with self.turn() as mine:
                held, cpu = time.perf_counter(), time.thread_time()
                with self._mutex:
                    batch, self._waiting = self._waiting, []
                try:
                    self._apply(batch, transaction, mine)
                finally:
                    self._count(batch, held - asked, time.perf_counter() - held,
                                time.thread_time() - cpu)
        except BaseException as exc:  # the transaction failed (BEGIN or COMMIT): all of it did
            if not batch:
                with self._mutex:
                    self._waiting.remove(me)
                raise
            for pending in batch:
                if pending.error is None:
                    pending.result, pending.error = None, exc
        finally:
            with self._mutex:
                if self._waiting:          # hand the lead to the first who came meanwhile
                    self._waiting[0].leads = True
                    self._waiting[0].wake()
                else:
                    self._leading = False
            for pending in batch:
                if pending is not me:
                    pending.wake()
        return me.outcome()

    def _count(self, batch: list[_Pending], waited: float, held: float, cpu: float) -> None:
        with self._mutex:
            stats = self._stats
            stats.transactions += 1
            stats.writes += len(batch)
            stats.wait_seconds += waited
            stats.held_seconds += held
            stats.held_cpu_seconds += cpu

    def _apply(self, batch: list[_Pending], transaction: Transaction, mine: bool) -> None:
        with transaction(mine) as conn:
            self._leader, self._conn = threading.get_ident(), conn
            try:
                if len(batch) == 1:      # alone: its error rolls the transaction back
                    batch[0].result = batch[0].work(conn)
                    return
                for pending in batch:
                    try:
                        pending.result = _in_savepoint(conn, pending.work)
                    except Exception as exc:  # noqa: BLE001 - it is that writer's answer
                        pending.error = exc
                        if not conn.in_transaction:   # SQLite rolled it all back (disk full)
                            raise
            finally:
                self._leader, self._conn = None, None


def _in_savepoint(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    conn.execute("SAVEPOINT writer")
    try:
        result = work(conn)
    except BaseException:
        if conn.in_transaction:   # (else SQLite rolled back the whole transaction itself)
            conn.execute("ROLLBACK TO writer")
            conn.execute("RELEASE writer")
        raise
    conn.execute("RELEASE writer")
    return result
