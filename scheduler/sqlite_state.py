"""SQLite backend of the state store, shared by the API's gunicorn workers and the scheduler.

Invariants:
- The database is in WAL mode with a busy timeout, so readers never block the writer and
  concurrent writers from several processes wait their turn instead of failing.
- Each thread (and each process, after a fork) has its own connection; every method runs in one
  transaction, and every write transaction starts with BEGIN IMMEDIATE, which takes the write
  lock up front: a transaction never fails half-way on a lock upgrade, and a rejected change
  (conflict, missing app) rolls back and leaves nothing.
- Writers are serialised by SQLite, so event ids (AUTOINCREMENT) become visible in id order: a
  reader tailing `events_since(last_seen)` never skips an event.
- `desired_generation` is one integer in `meta`, bumped in the same transaction as every
  desired-state change (apps, deployments created, superseded or cancelled, kill requests).
- A deployment in a final status (`succeeded`, `failed`, `cancelled`, `superseded`) stays final:
  `update_deployment` from a scheduler that has not yet seen a cancel does not revive it.
- Documents are stored as JSON text; nothing is cached in memory, so a reopened store (or
  another process) sees exactly what was committed.
- `delay_resets` holds at most one pending backoff-reset request per app (the API's
  `DELETE /v2/queue/{id}/delay`); only `put_app_status(..., delay_reset=)` consumes one, in the
  transaction that writes the status including it, and only the very request (`seq`) it was
  given. A file made before the table existed gets it on open (`CREATE TABLE IF NOT EXISTS`).
- `deployment_apps` lists (app, deployment) for every running deployment and nothing else;
  triggers on `deployments` maintain it in the writing transaction, and the conflict check of
  a change looks its apps up there.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from scheduler.balancer_store import SQLiteBalancers
from scheduler.doc_codec import dumps, loads
from scheduler.jobs.sqlite_jobs import SQLiteJobDocuments
from scheduler.spec import iso_now
from scheduler.sqlite_checkpoints import AUTOCHECKPOINT_PAGES, Checkpoints
from scheduler.sqlite_ops import APPLY, Reader
from scheduler.sqlite_versions import SQLiteAppVersions
from scheduler.sqlite_writers import WriterQueue, WriterStats
from scheduler.state import (
    FINAL_DEPLOYMENT_STATUSES,
    Doc,
    Plan,
    StateError,
    StateStore,
    StoreUnavailable,
    T,
)

__all__ = ["SQLiteStateStore", "open_state", "FINAL_DEPLOYMENT_STATUSES"]
_NO_SPACE_ERRORS = ("SQLITE_FULL", "SQLITE_IOERR")
BUSY_TIMEOUT_SECONDS = 30.0
PRUNE_CHUNK = 2_000     # rows deleted per transaction by the prunes
EVENTS_PER_INSERT = 500  # rows of one INSERT (SQLite allows 32,766 parameters)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS apps (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS deployments (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, status TEXT NOT NULL,
    doc TEXT NOT NULL);
DROP INDEX IF EXISTS deployments_status;
CREATE INDEX IF NOT EXISTS deployments_running ON deployments (seq) WHERE status='running';
CREATE TABLE IF NOT EXISTS kill_requests (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, task_id TEXT NOT NULL UNIQUE, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (id TEXT PRIMARY KEY, app_id TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS tasks_app ON tasks (app_id);
CREATE TABLE IF NOT EXISTS app_status (app_id TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS delay_resets (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, app_id TEXT NOT NULL UNIQUE, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT, doc TEXT NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('generation', '0');
"""
# `deployments_running` indexes only the running deployments, in creation order: finished
# ones stay in the table, and an index of every row's status (`deployments_status`, dropped
# from files made before) had two of its leaves rewritten by each change that superseded one.

# The apps each *running* deployment affects (its `affectedApps`), so the conflict check of a
# change reads only the deployments of the apps it touches instead of decoding every running
# deployment. Triggers keep it in step with `deployments` inside the writing transaction,
# whoever writes: a running deployment's rows are exactly the text values of its document's
# `affectedApps`, so the rows of a deployment that changes or goes are found from its old
# document by their key, (app, deployment). (An index on `deployment_id` served that before:
# two more leaves written by each change that superseded a deployment.) A file made before the
# table existed gets it, filled from its running deployments, on first open (`_migrate`).
_DEPLOYMENT_APPS = (
    """CREATE TABLE deployment_apps (
        app_id TEXT NOT NULL, deployment_id TEXT NOT NULL,
        PRIMARY KEY (app_id, deployment_id)) WITHOUT ROWID""",
    """INSERT OR IGNORE INTO deployment_apps (app_id, deployment_id)
    SELECT j.value, d.id FROM deployments d, json_each(d.doc, '$.affectedApps') j
    WHERE d.status = 'running' AND j.type = 'text'""",
)
# The triggers, checked on every open (statements with `BEGIN ... END;` bodies, one each).
# Those of files made before (`deployment_apps_update`, `deployment_apps_delete`) deleted by
# `deployment_id` through the index, and go with it. An update that keeps a deployment
# running for the same apps (the scheduler recording progress) leaves its rows alone.
_DEPLOYMENT_APPS_TRIGGERS = (
    "DROP TRIGGER IF EXISTS deployment_apps_update",
    "DROP TRIGGER IF EXISTS deployment_apps_delete",
    "DROP INDEX IF EXISTS deployment_apps_deployment",
    """CREATE TRIGGER IF NOT EXISTS deployment_apps_insert AFTER INSERT ON deployments
    WHEN NEW.status = 'running' BEGIN
        INSERT OR IGNORE INTO deployment_apps (app_id, deployment_id)
        SELECT value, NEW.id FROM json_each(NEW.doc, '$.affectedApps') WHERE type = 'text';
    END""",
    """CREATE TRIGGER IF NOT EXISTS deployment_apps_changed AFTER UPDATE ON deployments
    WHEN NOT (OLD.status = 'running' AND NEW.status = 'running' AND OLD.id = NEW.id
              AND json_extract(OLD.doc, '$.affectedApps')
                  IS json_extract(NEW.doc, '$.affectedApps')) BEGIN
        DELETE FROM deployment_apps WHERE OLD.status = 'running' AND deployment_id = OLD.id
        AND app_id IN (SELECT value FROM json_each(OLD.doc, '$.affectedApps')
                       WHERE type = 'text');
        INSERT OR IGNORE INTO deployment_apps (app_id, deployment_id)
        SELECT value, NEW.id FROM json_each(NEW.doc, '$.affectedApps')
        WHERE type = 'text' AND NEW.status = 'running';
    END""",
    """CREATE TRIGGER IF NOT EXISTS deployment_apps_removed AFTER DELETE ON deployments
    WHEN OLD.status = 'running' BEGIN
        DELETE FROM deployment_apps WHERE deployment_id = OLD.id
        AND app_id IN (SELECT value FROM json_each(OLD.doc, '$.affectedApps')
                       WHERE type = 'text');
    END""",
)


class _Connection(sqlite3.Connection):
    """A connection that can be weakly referenced: when its thread ends, the thread-local
    reference goes away and the connection closes itself, so short-lived threads leak nothing."""

    pid: int = 0


# Connections a forked child inherited from its parent. SQLite forbids using them in the child,
# and closing them there could disturb the parent's locks, so the child keeps them, untouched.
_INHERITED: list[sqlite3.Connection] = []


def out_of_space_error(path: str | os.PathLike, exc: sqlite3.OperationalError
                       ) -> StoreUnavailable | None:
    """The typed error for a write that found the store's disk full (or failing), else None:
    callers treat it as ZooKeeper's lost quorum — nothing was written, retry later."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if not name.startswith(_NO_SPACE_ERRORS) and "disk is full" not in str(exc):
        return None
    return StoreUnavailable(f"no space to write {path} ({exc}); nothing was changed, "
                            "retry once space is freed")


class SQLiteStateStore(SQLiteAppVersions, SQLiteBalancers, SQLiteJobDocuments, StateStore):
    """`StateStore` on one SQLite file (created with its parent directories if missing)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: weakref.WeakSet[sqlite3.Connection] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._closed = False
        self._writers = WriterQueue(BUSY_TIMEOUT_SECONDS, self.path + "-writers")
        self._writer: sqlite3.Connection | None = None
        self._checkpoints = Checkpoints(self._checkpoint_conn, wal_path=self.path + "-wal")
        self._enable_wal()
        with self._write() as c:
            for stmt in _SCHEMA.strip().split(";"):
                if stmt.strip():
                    c.execute(stmt)
            self._migrate(c)
            self.create_job_tables(c)  # scheduler.jobs: job definitions, status, runs

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        """Bring a file made by an earlier version up to the current schema (in the opening
        transaction: concurrent openers of an old file migrate it once)."""
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND "
                        "name='deployment_apps'").fetchone() is None:
            for stmt in _DEPLOYMENT_APPS:
                conn.execute(stmt)
        for stmt in _DEPLOYMENT_APPS_TRIGGERS:
            conn.execute(stmt)

    # -- connections and transactions ------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (reads, and writes past the writers' queue timeout)."""
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.pid != os.getpid() or self._closed:
            conn = self._local.conn = self._connect(conn)
        return conn

    def _writer_conn(self) -> sqlite3.Connection:
        """The process's writing connection (used only by the holder of the writers' turn)."""
        conn = self._writer
        if conn is None or conn.pid != os.getpid() or self._closed:
            conn = self._writer = self._connect(conn)
        return conn

    def _connect(self, old: sqlite3.Connection | None) -> sqlite3.Connection:
        if self._closed:
            raise StateError("state store is closed")
        # A forked child (gunicorn worker) must not reuse its parent's connection.
        if old is not None and old.pid != os.getpid():
            _INHERITED.append(old)
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS,
                               isolation_level=None, check_same_thread=False,
                               factory=_Connection)
        conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")
        conn.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; WAL-safe
        conn.execute("PRAGMA foreign_keys=ON")
        # Statement journals (a write inside a SAVEPOINT of a group commit, a trigger's rows)
        # in memory: as files, each was created, written and unlinked in /var/tmp.
        conn.execute("PRAGMA temp_store=MEMORY")
        # Checkpoints run off the writers' path (scheduler.sqlite_checkpoints); SQLite's own
        # only past a higher mark.
        conn.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
        conn.pid = os.getpid()
        with self._lock:
            self._all.add(conn)
        return conn

    def _checkpoint_conn(self) -> sqlite3.Connection:
        """The checkpoints' thread's own connection (closed by that thread)."""
        return sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None,
                               check_same_thread=False)

    def _enable_wal(self) -> None:
        """Switch to WAL (persistent in the file). Switching needs a moment without other
        connections; when several processes open a new file at once, SQLite may answer
        `locked` without calling the busy handler, so retry until the deadline."""
        deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
        while True:
            try:
                mode = self._conn().execute("PRAGMA journal_mode=WAL").fetchone()[0]
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
                continue
            if mode.lower() != "wal":
                raise StateError(f"cannot put {self.path} in WAL mode (got {mode})")
            return

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """An exclusive write transaction (schema, pruning, the rarer writes); the hot paths
        (`transact`) go through `_shared_write` and may share theirs (group commit)."""
        with self._writers.turn() as mine, self._transaction(mine) as conn:
            yield conn

    def _shared_write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return self._writers.run(work, self._transaction)
        except sqlite3.OperationalError as exc:  # one work's own, in a shared transaction
            self._raise_typed(exc)

    @contextmanager
    def _transaction(self, mine: bool) -> Iterator[sqlite3.Connection]:
        # The holder of the process's turn (scheduler.sqlite_writers) writes on the process's
        # one writing connection, whose page cache stays warm from one write to the next (a
        # connection per thread re-read the pages every other connection had changed).
        conn = self._writer_conn() if mine else self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                self._versions_rolled_back()
                if conn.in_transaction:  # (SQLite may have rolled it back itself: disk full)
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            self._checkpoints.committed()
        except sqlite3.OperationalError as exc:
            self._versions_rolled_back()
            if conn.in_transaction:  # a failed COMMIT may leave it open: nothing half-applied
                conn.execute("ROLLBACK")
            self._raise_typed(exc)

    def writer_stats(self) -> WriterStats:
        """What this process's write transactions waited and held (`sqlite_writers`)."""
        return self._writers.stats()

    def _raise_typed(self, exc: sqlite3.OperationalError) -> NoReturn:
        """`exc` as StoreUnavailable when the disk is full (or failing), else as it is."""
        out_of_space = out_of_space_error(self.path, exc)
        if out_of_space is None:
            raise exc
        raise out_of_space from exc

    @staticmethod
    def _bump(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='generation'")

    def close(self) -> None:
        self._checkpoints.close()
        with self._lock:
            conns, self._all = list(self._all), weakref.WeakSet()
            self._closed = True
        for conn in conns:
            if getattr(conn, "pid", None) != os.getpid():
                _INHERITED.append(conn)
                continue
            try:
                conn.close()
            except sqlite3.Error:
                pass
        self._local = threading.local()
        self._writer = None
        self._writers.close()

    # -- framework -------------------------------------------------------------------------------
    def get_framework_id(self) -> str | None:
        row = self._conn().execute("SELECT value FROM meta WHERE key='framework_id'").fetchone()
        return row[0] if row else None

    # -- apps and deployments --------------------------------------------------------------------
    def get_app(self, app_id: str) -> Doc | None:
        row = self._conn().execute("SELECT doc FROM apps WHERE id=?", (app_id,)).fetchone()
        return loads(row[0]) if row else None

    def list_apps(self) -> list[Doc]:
        rows = self._conn().execute("SELECT doc FROM apps ORDER BY id").fetchall()
        return [loads(r[0]) for r in rows]

    # -- transactions ----------------------------------------------------------------------------
    def transact(self, plan: Plan[T]) -> T:
        """`plan` reads inside the write transaction (BEGIN IMMEDIATE holds the write lock), so
        its snapshot is current at the commit by construction: plans never need a retry."""
        return self._shared_write(lambda c: self._apply_plan(c, plan))

    def transact_with_versions(self, plan: Plan[dict[str, Doc | None]],
                               keep: int) -> dict[str, Doc | None]:
        """The plan's transaction and each app's version history row (or, the app gone, the
        history's removal), one transaction."""
        if keep:
            self._versions_table()  # committed on its own first (once per store object)

        def work(c: sqlite3.Connection) -> dict[str, Doc | None]:
            stored = self._apply_plan(c, plan)
            for app_id, doc in stored.items():
                if keep and doc is not None:
                    self._put_version(c, app_id, doc["version"], doc, keep)
                elif keep:
                    self._delete_versions(c, app_id)
            return stored

        return self._shared_write(work)

    def _apply_plan(self, c: sqlite3.Connection, plan: Plan[T]) -> T:
        txn, result = plan(Reader(c))
        for op in txn.ops:
            APPLY[type(op), op.kind](c, op)
        # One statement per chunk of events, not one step each (executemany): each step lets
        # go of the GIL and waits to get it back, inside the writers' turn.
        for start in range(0, len(txn.events), EVENTS_PER_INSERT):
            chunk = txn.events[start:start + EVENTS_PER_INSERT]
            c.execute("INSERT INTO events (doc) VALUES " + ", ".join(["(?)"] * len(chunk)),
                      [dumps(doc) for doc in chunk])
        if txn.bump_generation:
            self._bump(c)
        return result

    def get_deployment(self, deployment_id: str) -> Doc | None:
        row = self._conn().execute("SELECT doc FROM deployments WHERE id=?",
                                   (deployment_id,)).fetchone()
        return loads(row[0]) if row else None

    def list_deployments(self, active_only: bool = True) -> list[Doc]:
        if active_only:
            rows = self._conn().execute(
                "SELECT doc FROM deployments WHERE status='running' ORDER BY seq").fetchall()
        else:
            rows = self._conn().execute("SELECT doc FROM deployments ORDER BY seq").fetchall()
        return [loads(r[0]) for r in rows]

    # -- kill requests ---------------------------------------------------------------------------
    def pending_kill_requests(self) -> list[Doc]:
        rows = self._conn().execute("SELECT doc FROM kill_requests ORDER BY seq").fetchall()
        return [loads(r[0]) for r in rows]

    def pending_delay_resets(self) -> list[Doc]:
        rows = self._conn().execute("SELECT seq, doc FROM delay_resets ORDER BY seq").fetchall()
        return [dict(loads(doc), seq=int(seq)) for seq, doc in rows]

    def desired_generation(self) -> int:
        row = self._conn().execute("SELECT value FROM meta WHERE key='generation'").fetchone()
        return int(row[0]) if row else 0

    # -- observed state --------------------------------------------------------------------------
    def get_task(self, task_id: str) -> Doc | None:
        row = self._conn().execute("SELECT doc FROM tasks WHERE id=?", (task_id,)).fetchone()
        return loads(row[0]) if row else None

    def list_tasks(self, app_id: str | None = None) -> list[Doc]:
        """Tasks ordered by (stagedAt, id)."""
        if app_id is None:
            rows = self._conn().execute("SELECT doc FROM tasks").fetchall()
        else:
            rows = self._conn().execute("SELECT doc FROM tasks WHERE app_id=?",
                                        (app_id,)).fetchall()
        tasks = [loads(r[0]) for r in rows]
        tasks.sort(key=lambda t: (t.get("stagedAt") or "", t.get("id") or ""))
        return tasks

    def get_app_status(self, app_id: str) -> Doc | None:
        row = self._conn().execute("SELECT doc FROM app_status WHERE app_id=?",
                                   (app_id,)).fetchone()
        return loads(row[0]) if row else None

    def list_app_status(self) -> dict[str, Doc]:
        rows = self._conn().execute("SELECT app_id, doc FROM app_status ORDER BY app_id")
        return {r[0]: loads(r[1]) for r in rows.fetchall()}

    # -- events ----------------------------------------------------------------------------------
    def append_event(self, event_type: str, payload: Doc) -> int:
        doc = dict(payload)
        doc["eventType"] = event_type
        doc.setdefault("timestamp", iso_now())
        with self._write() as c:
            cur = c.execute("INSERT INTO events (doc) VALUES (?)", (dumps(doc),))
            return int(cur.lastrowid)

    def events_since(self, after_id: int, limit: int = 1000) -> list[tuple[int, Doc]]:
        rows = self._conn().execute(
            "SELECT id, doc FROM events WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, max(0, int(limit)))).fetchall()
        return [(int(r[0]), loads(r[1])) for r in rows]

    def latest_event_id(self) -> int:
        # sqlite_sequence remembers the highest id ever handed out, even after pruning.
        row = self._conn().execute(
            "SELECT seq FROM sqlite_sequence WHERE name='events'").fetchone()
        return int(row[0]) if row else 0

    def prune_events(self, keep: int) -> int:
        """Delete all but the newest `keep` events (additive); ids are never reused."""
        with self._write() as c:
            cur = c.execute("DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?",
                            (max(0, int(keep)),))
            return cur.rowcount

    def prune_deployments(self, keep_finished: int) -> int:
        """Delete all but the newest `keep_finished` finished deployments (running ones stay,
        whatever their age), PRUNE_CHUNK at a time: the first prune of a store that kept
        every deployment may have tens of thousands to delete, and the API's writers wait
        for each transaction."""
        row = self._conn().execute(
            "SELECT seq FROM deployments WHERE status != 'running' ORDER BY seq DESC "
            "LIMIT 1 OFFSET ?", (max(0, int(keep_finished)),)).fetchone()
        if row is None:
            return 0
        pruned = 0
        while True:
            with self._write() as c:
                count = c.execute(
                    "DELETE FROM deployments WHERE seq IN (SELECT seq FROM deployments "
                    "WHERE status != 'running' AND seq <= ? ORDER BY seq LIMIT ?)",
                    (int(row[0]), PRUNE_CHUNK)).rowcount
            pruned += count
            if count < PRUNE_CHUNK:
                return pruned


def open_state(path_or_url: str) -> StateStore:
    """A store from a filesystem path or a `sqlite:///path` URL (`sqlite:///tmp/s.db` is
    `/tmp/s.db`; `sqlite:///./s.db` is relative). Parent directories are created."""
    text = str(path_or_url)
    if text.startswith("sqlite://"):
        text = text[len("sqlite://"):]
        if text.startswith("/./"):
            text = text[1:]
    if not text:
        raise StateError(f"no database path in {path_or_url!r}")
    return SQLiteStateStore(text)
