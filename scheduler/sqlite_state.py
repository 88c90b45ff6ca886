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

import copy
import json
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from scheduler.spec import iso_now, task_id_to_app_id
from scheduler.sqlite_versions import SQLiteAppVersions
from scheduler.state import (
    AppExists,
    AppNotFound,
    DeploymentConflict,
    Doc,
    StateError,
    StateStore,
)

__all__ = ["SQLiteStateStore", "open_state", "FINAL_DEPLOYMENT_STATUSES"]

FINAL_DEPLOYMENT_STATUSES = frozenset({"succeeded", "failed", "cancelled", "superseded"})
BUSY_TIMEOUT_SECONDS = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS apps (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS deployments (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, status TEXT NOT NULL,
    doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS deployments_status ON deployments (status);
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

# The apps each *running* deployment affects (its `affectedApps`), so the conflict check of a
# change reads only the deployments of the apps it touches instead of decoding every running
# deployment. Triggers keep it in step with `deployments` inside the writing transaction,
# whoever writes. A file made before the table existed gets it, filled from its running
# deployments, on first open (`_migrate`). Statements with `BEGIN ... END;` bodies, one each.
_DEPLOYMENT_APPS = (
    """CREATE TABLE deployment_apps (
        app_id TEXT NOT NULL, deployment_id TEXT NOT NULL,
        PRIMARY KEY (app_id, deployment_id)) WITHOUT ROWID""",
    "CREATE INDEX deployment_apps_deployment ON deployment_apps (deployment_id)",
    """CREATE TRIGGER deployment_apps_insert AFTER INSERT ON deployments
    WHEN NEW.status = 'running' BEGIN
        INSERT OR IGNORE INTO deployment_apps (app_id, deployment_id)
        SELECT value, NEW.id FROM json_each(NEW.doc, '$.affectedApps') WHERE type = 'text';
    END""",
    """CREATE TRIGGER deployment_apps_update AFTER UPDATE ON deployments BEGIN
        DELETE FROM deployment_apps WHERE deployment_id = OLD.id;
        INSERT OR IGNORE INTO deployment_apps (app_id, deployment_id)
        SELECT value, NEW.id FROM json_each(NEW.doc, '$.affectedApps')
        WHERE type = 'text' AND NEW.status = 'running';
    END""",
    """CREATE TRIGGER deployment_apps_delete AFTER DELETE ON deployments BEGIN
        DELETE FROM deployment_apps WHERE deployment_id = OLD.id;
    END""",
    """INSERT OR IGNORE INTO deployment_apps (app_id, deployment_id)
    SELECT j.value, d.id FROM deployments d, json_each(d.doc, '$.affectedApps') j
    WHERE d.status = 'running' AND j.type = 'text'""",
)


class _Connection(sqlite3.Connection):
    """A connection that can be weakly referenced: when its thread ends, the thread-local
    reference goes away and the connection closes itself, so short-lived threads leak nothing."""

    pid: int = 0


# Connections a forked child inherited from its parent. SQLite forbids using them in the child,
# and closing them there could disturb the parent's locks, so the child keeps them, untouched.
_INHERITED: list[sqlite3.Connection] = []


def _dumps(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"), sort_keys=False)


def _loads(text: str) -> Any:
    return json.loads(text)


class SQLiteStateStore(SQLiteAppVersions, StateStore):
    """`StateStore` on one SQLite file (created with its parent directories if missing)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: weakref.WeakSet[sqlite3.Connection] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._closed = False
        self._enable_wal()
        with self._write() as c:
            for stmt in _SCHEMA.strip().split(";"):
                if stmt.strip():
                    c.execute(stmt)
            self._migrate(c)

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        """Bring a file made by an earlier version up to the current schema (in the opening
        transaction: concurrent openers of an old file migrate it once)."""
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND "
                        "name='deployment_apps'").fetchone() is None:
            for stmt in _DEPLOYMENT_APPS:
                conn.execute(stmt)

    # -- connections and transactions ------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise StateError("state store is closed")
        conn = getattr(self._local, "conn", None)
        # A forked child (gunicorn worker) must not reuse its parent's connection.
        if conn is None or conn.pid != os.getpid():
            if conn is not None:
                _INHERITED.append(conn)
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS,
                                   isolation_level=None, check_same_thread=False,
                                   factory=_Connection)
            conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")
            conn.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; WAL-safe
            conn.execute("PRAGMA foreign_keys=ON")
            conn.pid = os.getpid()
            self._local.conn = conn
            with self._lock:
                self._all.add(conn)
        return conn

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
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @staticmethod
    def _bump(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='generation'")

    def close(self) -> None:
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

    # -- framework -------------------------------------------------------------------------------
    def get_framework_id(self) -> str | None:
        row = self._conn().execute("SELECT value FROM meta WHERE key='framework_id'").fetchone()
        return row[0] if row else None

    def set_framework_id(self, framework_id: str | None) -> None:
        with self._write() as c:
            if framework_id is None:
                c.execute("DELETE FROM meta WHERE key='framework_id'")
            else:
                c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('framework_id', ?)",
                          (framework_id,))

    # -- apps and deployments --------------------------------------------------------------------
    def get_app(self, app_id: str) -> Doc | None:
        row = self._conn().execute("SELECT doc FROM apps WHERE id=?", (app_id,)).fetchone()
        return _loads(row[0]) if row else None

    def list_apps(self) -> list[Doc]:
        rows = self._conn().execute("SELECT doc FROM apps ORDER BY id").fetchall()
        return [_loads(r[0]) for r in rows]

    @staticmethod
    def _blocking(conn: sqlite3.Connection, app_ids: set[str]) -> list[Doc]:
        """Running deployments whose affectedApps include any of `app_ids`, oldest first
        (through the `deployment_apps` index: only those deployments are read)."""
        if not app_ids:
            return []
        # `+status`: not the status index (it would visit every running deployment); the
        # plan starts from the apps' deployment_apps rows. The ids go in as one JSON array.
        rows = conn.execute(
            "SELECT doc FROM deployments WHERE +status='running' AND id IN "
            "(SELECT deployment_id FROM deployment_apps WHERE app_id IN "
            "(SELECT value FROM json_each(?))) ORDER BY seq",
            (_dumps(sorted(app_ids)),)).fetchall()
        return [_loads(text) for (text,) in rows]

    def _supersede_or_raise(self, conn: sqlite3.Connection, app_ids: set[str], force: bool,
                            by: Doc | None) -> None:
        blocking = self._blocking(conn, app_ids)
        if not blocking:
            return
        if not force:
            raise DeploymentConflict([d["id"] for d in blocking])
        now = iso_now()
        for dep in blocking:
            dep["status"] = "superseded"
            dep["finishedAt"] = now
            if by is not None and by.get("id"):
                dep["message"] = f"superseded by deployment {by['id']}"
            conn.execute("UPDATE deployments SET status=?, doc=? WHERE id=?",
                         (dep["status"], _dumps(dep), dep["id"]))

    @staticmethod
    def _insert_deployment(conn: sqlite3.Connection, deployment: Doc) -> None:
        if not deployment.get("id"):
            raise StateError("a deployment needs an 'id'")
        try:
            conn.execute("INSERT INTO deployments (id, status, doc) VALUES (?, ?, ?)",
                         (deployment["id"], deployment.get("status", "running"),
                          _dumps(deployment)))
        except sqlite3.IntegrityError as exc:
            raise StateError(f"deployment {deployment['id']} already exists") from exc

    def apply_app_change(self, app_id: str, app: Doc | None, deployment: Doc | None, *,
                         force: bool = False, must_exist: bool | None = None) -> None:
        with self._write() as c:
            exists = c.execute("SELECT 1 FROM apps WHERE id=?", (app_id,)).fetchone() is not None
            if must_exist is True and not exists:
                raise AppNotFound(app_id)
            if must_exist is False and exists:
                raise AppExists(app_id)
            self._supersede_or_raise(c, {app_id}, force, deployment)
            if app is None:
                c.execute("DELETE FROM apps WHERE id=?", (app_id,))
                c.execute("DELETE FROM delay_resets WHERE app_id=?", (app_id,))
            else:
                c.execute("INSERT OR REPLACE INTO apps (id, doc) VALUES (?, ?)",
                          (app_id, _dumps(app)))
            if deployment is not None:
                self._insert_deployment(c, deployment)
            self._bump(c)

    def get_deployment(self, deployment_id: str) -> Doc | None:
        row = self._conn().execute("SELECT doc FROM deployments WHERE id=?",
                                   (deployment_id,)).fetchone()
        return _loads(row[0]) if row else None

    def list_deployments(self, active_only: bool = True) -> list[Doc]:
        if active_only:
            rows = self._conn().execute(
                "SELECT doc FROM deployments WHERE status='running' ORDER BY seq").fetchall()
        else:
            rows = self._conn().execute("SELECT doc FROM deployments ORDER BY seq").fetchall()
        return [_loads(r[0]) for r in rows]

    def update_deployment(self, deployment: Doc) -> bool:
        """Replace a deployment document; True if stored. A deployment already final in the
        store keeps its stored document and this returns False (the API cancelled or
        superseded it meanwhile: its progress events are stale). Raises StateError for an
        unknown id."""
        with self._write() as c:
            row = c.execute("SELECT status FROM deployments WHERE id=?",
                            (deployment.get("id"),)).fetchone()
            if row is None:
                raise StateError(f"deployment {deployment.get('id')} does not exist")
            if row[0] in FINAL_DEPLOYMENT_STATUSES:
                return False
            c.execute("UPDATE deployments SET status=?, doc=? WHERE id=?",
                      (deployment.get("status", "running"), _dumps(deployment),
                       deployment["id"]))
            return True

    def cancel_deployment(self, deployment_id: str) -> Doc:
        with self._write() as c:
            row = c.execute("SELECT status, doc FROM deployments WHERE id=?",
                            (deployment_id,)).fetchone()
            if row is None:
                raise StateError(f"deployment {deployment_id} does not exist")
            if row[0] != "running":
                raise StateError(f"deployment {deployment_id} is not active (status {row[0]})")
            dep = _loads(row[1])
            dep["status"] = "cancelled"
            dep["finishedAt"] = iso_now()
            c.execute("UPDATE deployments SET status=?, doc=? WHERE id=?",
                      ("cancelled", _dumps(dep), deployment_id))
            self._bump(c)
            return dep

    # -- kill requests ---------------------------------------------------------------------------
    def request_kills(self, task_ids: list[str], *, scale: bool,
                      deployment: Doc | None = None, force: bool = False) -> None:
        """Record kill requests (a task already requested keeps its first request's time and
        place). With `scale`, each owning app's `instances` drops by the number of its live
        tasks (those in the store) among `task_ids` (not below 0) and its `version`/`versionInfo.lastScalingAt` become the deployment's version
        (or now); `deployment`, if given, is stored with `target.instances` set to the app's new
        count when it targets one of those apps. A scale on an app locked by a running
        deployment raises DeploymentConflict unless `force` (additive to the interface)."""
        now = iso_now()
        with self._write() as c:
            per_app: dict[str, int] = {}
            for tid in dict.fromkeys(task_ids):
                row = c.execute("SELECT app_id FROM tasks WHERE id=?", (tid,)).fetchone()
                if row is not None:  # only live tasks the scheduler knows count for a scale
                    per_app[row[0]] = per_app.get(row[0], 0) + 1
                old = c.execute("SELECT doc FROM kill_requests WHERE task_id=?",
                                (tid,)).fetchone()
                if old is None:
                    c.execute("INSERT INTO kill_requests (task_id, doc) VALUES (?, ?)",
                              (tid, _dumps({"taskId": tid, "scale": bool(scale),
                                            "requestedAt": now})))
                elif scale:  # keep the first request's time and place, mark it a scale
                    req = _loads(old[0])
                    req["scale"] = True
                    c.execute("UPDATE kill_requests SET doc=? WHERE task_id=?",
                              (_dumps(req), tid))
            if scale:
                # the deployment's own apps are locked too, even if none of the tasks is live
                locked = set(per_app) | set((deployment or {}).get("affectedApps") or ())
                self._supersede_or_raise(c, locked, force, deployment)
                stamp = (deployment or {}).get("version") or now
                for app_id, n in per_app.items():
                    row = c.execute("SELECT doc FROM apps WHERE id=?", (app_id,)).fetchone()
                    if row is None:
                        continue
                    app = _loads(row[0])
                    app["instances"] = max(0, int(app.get("instances", 0)) - n)
                    app["version"] = stamp
                    info = dict(app.get("versionInfo") or {})
                    info["lastScalingAt"] = stamp
                    info.setdefault("lastConfigChangeAt", stamp)
                    app["versionInfo"] = info
                    c.execute("UPDATE apps SET doc=? WHERE id=?", (_dumps(app), app_id))
                    if deployment is not None and (deployment.get("target") or {}).get(
                            "app") == app_id:
                        deployment = copy.deepcopy(deployment)
                        deployment["target"]["instances"] = app["instances"]
            if scale and deployment is not None:
                self._insert_deployment(c, deployment)
            self._bump(c)

    def pending_kill_requests(self) -> list[Doc]:
        rows = self._conn().execute("SELECT doc FROM kill_requests ORDER BY seq").fetchall()
        return [_loads(r[0]) for r in rows]

    def complete_kill_request(self, task_id: str) -> None:
        with self._write() as c:
            c.execute("DELETE FROM kill_requests WHERE task_id=?", (task_id,))

    # -- delay resets ----------------------------------------------------------------------------
    def request_delay_reset(self, app_id: str) -> Doc:
        with self._write() as c:
            if c.execute("SELECT 1 FROM apps WHERE id=?", (app_id,)).fetchone() is None:
                raise AppNotFound(app_id)
            # a new row, not an update: `seq` (AUTOINCREMENT, never reused) tells the requests apart
            c.execute("DELETE FROM delay_resets WHERE app_id=?", (app_id,))
            doc = {"appId": app_id, "requestedAt": iso_now()}
            cur = c.execute("INSERT INTO delay_resets (app_id, doc) VALUES (?, ?)",
                            (app_id, _dumps(doc)))
            self._bump(c)
        return dict(doc, seq=int(cur.lastrowid))

    def pending_delay_resets(self) -> list[Doc]:
        rows = self._conn().execute("SELECT seq, doc FROM delay_resets ORDER BY seq").fetchall()
        return [dict(_loads(doc), seq=int(seq)) for seq, doc in rows]

    def desired_generation(self) -> int:
        row = self._conn().execute("SELECT value FROM meta WHERE key='generation'").fetchone()
        return int(row[0]) if row else 0

    # -- observed state --------------------------------------------------------------------------
    def upsert_task(self, task: Doc) -> None:
        task_id = task.get("id")
        if not task_id:
            raise StateError("a task needs an 'id'")
        app_id = task.get("appId") or task_id_to_app_id(task_id)
        with self._write() as c:
            c.execute("INSERT OR REPLACE INTO tasks (id, app_id, doc) VALUES (?, ?, ?)",
                      (task_id, app_id, _dumps(task)))

    def get_task(self, task_id: str) -> Doc | None:
        row = self._conn().execute("SELECT doc FROM tasks WHERE id=?", (task_id,)).fetchone()
        return _loads(row[0]) if row else None

    def list_tasks(self, app_id: str | None = None) -> list[Doc]:
        """Tasks ordered by (stagedAt, id)."""
        if app_id is None:
            rows = self._conn().execute("SELECT doc FROM tasks").fetchall()
        else:
            rows = self._conn().execute("SELECT doc FROM tasks WHERE app_id=?",
                                        (app_id,)).fetchall()
        tasks = [_loads(r[0]) for r in rows]
        tasks.sort(key=lambda t: (t.get("stagedAt") or "", t.get("id") or ""))
        return tasks

    def delete_task(self, task_id: str) -> None:
        with self._write() as c:
            c.execute("DELETE FROM tasks WHERE id=?", (task_id,))

    def put_app_status(self, app_id: str, status: Doc, *, delay_reset: Doc | None = None) -> None:
        with self._write() as c:
            c.execute("INSERT OR REPLACE INTO app_status (app_id, doc) VALUES (?, ?)",
                      (app_id, _dumps(status)))
            if delay_reset is not None:
                # only the request the status includes; a newer one stays pending
                c.execute("DELETE FROM delay_resets WHERE app_id=? AND seq=?",
                          (app_id, int(delay_reset["seq"])))

    def get_app_status(self, app_id: str) -> Doc | None:
        row = self._conn().execute("SELECT doc FROM app_status WHERE app_id=?",
                                   (app_id,)).fetchone()
        return _loads(row[0]) if row else None

    def list_app_status(self) -> dict[str, Doc]:
        rows = self._conn().execute("SELECT app_id, doc FROM app_status ORDER BY app_id")
        return {r[0]: _loads(r[1]) for r in rows.fetchall()}

    def delete_app_status(self, app_id: str) -> None:
        """Forget an app's runtime status (additive: the scheduler calls it after a delete)."""
        with self._write() as c:
            c.execute("DELETE FROM app_status WHERE app_id=?", (app_id,))

    # -- events ----------------------------------------------------------------------------------
    def append_event(self, event_type: str, payload: Doc) -> int:
        doc = dict(payload)
        doc["eventType"] = event_type
        doc.setdefault("timestamp", iso_now())
        with self._write() as c:
            cur = c.execute("INSERT INTO events (doc) VALUES (?)", (_dumps(doc),))
            return int(cur.lastrowid)

    def events_since(self, after_id: int, limit: int = 1000) -> list[tuple[int, Doc]]:
        rows = self._conn().execute(
            "SELECT id, doc FROM events WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, max(0, int(limit)))).fetchall()
        return [(int(r[0]), _loads(r[1])) for r in rows]

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
