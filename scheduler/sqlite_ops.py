"""How a SQLite state store's transactions read and write: the snapshot a plan reads
(`Reader`, on the transaction's own connection inside BEGIN IMMEDIATE) and the statement each
operation of its `Transaction` becomes (`APPLY`). The rules of what to write are
`scheduler.changes`'; this only maps documents to rows."""

from __future__ import annotations

import sqlite3
from typing import Any

from scheduler.doc_codec import dumps, loads
from scheduler.jobs.sqlite_jobs import JOB_DELETE_SQL, JOB_PUT_SQL, SQLiteJobReader
from scheduler.spec import task_id_to_app_id
from scheduler.state import Delete, Doc, Put

__all__ = ["APPLY", "Reader", "blocking_deployments"]


def blocking_deployments(conn: sqlite3.Connection, app_ids: set[str]) -> list[Doc]:
    """Running deployments whose affectedApps include any of `app_ids`, oldest first
    (through the `deployment_apps` index: only those deployments are read)."""
    if not app_ids:
        return []
    # `+status`: not the index of running deployments (it would visit every one); the plan
    # starts from the apps' deployment_apps rows. One app (a scale, an update) is a key
    # lookup; several go in as one JSON array. Sorted here: ORDER BY built a temporary
    # B-tree for the usual zero or one row.
    if len(app_ids) == 1:
        rows = conn.execute(
            "SELECT seq, doc FROM deployments WHERE +status='running' AND id IN "
            "(SELECT deployment_id FROM deployment_apps WHERE app_id = ?)",
            (next(iter(app_ids)),)).fetchall()
    else:
        rows = conn.execute(
            "SELECT seq, doc FROM deployments WHERE +status='running' AND id IN "
            "(SELECT deployment_id FROM deployment_apps WHERE app_id IN "
            "(SELECT value FROM json_each(?)))", (dumps(sorted(app_ids)),)).fetchall()
    return [loads(text) for _, text in sorted(rows)]


class Reader(SQLiteJobReader):
    """The snapshot of a transaction: reads on its own connection, inside BEGIN IMMEDIATE."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.c = conn

    def _doc(self, sql: str, *args: Any) -> Doc | None:
        row = self.c.execute(sql, args).fetchone()
        return loads(row[0]) if row else None

    def app(self, app_id: str) -> Doc | None:
        return self._doc("SELECT doc FROM apps WHERE id=?", app_id)

    def apps(self) -> list[Doc]:
        return [loads(row[0]) for row in self.c.execute("SELECT doc FROM apps ORDER BY id")]

    def deployment(self, deployment_id: str) -> Doc | None:
        return self._doc("SELECT doc FROM deployments WHERE id=?", deployment_id)

    def running_deployments(self, app_ids: set[str]) -> list[Doc]:
        return blocking_deployments(self.c, app_ids)

    def task(self, task_id: str) -> Doc | None:
        return self._doc("SELECT doc FROM tasks WHERE id=?", task_id)

    def kill_request(self, task_id: str) -> Doc | None:
        return self._doc("SELECT doc FROM kill_requests WHERE task_id=?", task_id)

    def delay_reset(self, app_id: str) -> Doc | None:
        row = self.c.execute("SELECT seq, doc FROM delay_resets WHERE app_id=?",
                             (app_id,)).fetchone()
        return dict(loads(row[1]), seq=int(row[0])) if row else None

    def generation(self) -> int:
        row = self.c.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
        return int(row[0]) if row else 0


# How each operation lands in its table. Puts are upserts, which change the row where it is:
# INSERT OR REPLACE deleted it and inserted it again under a new rowid, touching two leaves of
# the table and one of its key's index (a scale PUT wrote ~2 pages more). Deployments and kill
# requests keep their `seq` (their place in creation order; the deployment_apps triggers follow).
_PUT_SQL = {
    "apps": ("INSERT INTO apps (id, doc) VALUES (?, ?) ON CONFLICT(id) "
             "DO UPDATE SET doc=excluded.doc",
             lambda op: (op.key, dumps(op.doc))),
    "deployments": ("INSERT INTO deployments (id, status, doc) VALUES (?, ?, ?) ON CONFLICT(id) "
                    "DO UPDATE SET status=excluded.status, doc=excluded.doc",
                    lambda op: (op.key, op.doc.get("status", "running"), dumps(op.doc))),
    "kill_requests": ("INSERT INTO kill_requests (task_id, doc) VALUES (?, ?) "
                      "ON CONFLICT(task_id) DO UPDATE SET doc=excluded.doc",
                      lambda op: (op.key, dumps(op.doc))),
    "delay_resets": ("INSERT OR REPLACE INTO delay_resets (seq, app_id, doc) VALUES (?, ?, ?)",
                     lambda op: (int(op.doc["seq"]), op.key, dumps(op.doc))),
    "tasks": ("INSERT INTO tasks (id, app_id, doc) VALUES (?, ?, ?) ON CONFLICT(id) "
              "DO UPDATE SET app_id=excluded.app_id, doc=excluded.doc",
              lambda op: (op.key, op.doc.get("appId") or task_id_to_app_id(op.key),
                          dumps(op.doc))),
    "app_status": ("INSERT INTO app_status (app_id, doc) VALUES (?, ?) ON CONFLICT(app_id) "
                   "DO UPDATE SET doc=excluded.doc",
                   lambda op: (op.key, dumps(op.doc))),
    "meta": ("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) "
             "DO UPDATE SET value=excluded.value",
             lambda op: (op.key, op.doc["value"])),
}
_DELETE_SQL = {
    "apps": "DELETE FROM apps WHERE id=?",
    "deployments": "DELETE FROM deployments WHERE id=?",
    "kill_requests": "DELETE FROM kill_requests WHERE task_id=?",
    "delay_resets": "DELETE FROM delay_resets WHERE app_id=?",
    "tasks": "DELETE FROM tasks WHERE id=?",
    "app_status": "DELETE FROM app_status WHERE app_id=?",
    "meta": "DELETE FROM meta WHERE key=?",
}


def _put(sql: str, args: Any) -> Any:
    return lambda c, op: c.execute(sql, args(op))


def _delete(sql: str) -> Any:
    return lambda c, op: c.execute(sql, (op.key,))


APPLY: dict[tuple[type, str], Any] = {
    **{(Put, kind): _put(sql, args) for kind, (sql, args) in _PUT_SQL.items()},
    **{(Delete, kind): _delete(sql) for kind, sql in _DELETE_SQL.items()},
    **{(Put, kind): _put(sql, args) for kind, (sql, args) in JOB_PUT_SQL.items()},
    **{(Delete, kind): _put(sql, args) for kind, (sql, args) in JOB_DELETE_SQL.items()},
}
