"""App version history in the SQLite store: plain document storage, one row per (app, version).

A mixin of `SQLiteStateStore` (it uses the store's connections and write transactions). The
table is created on first use, so files made by earlier versions get it without a migration.
What a version *is* and how many to keep are the caller's business (the API stores every
definition it accepts and keeps the newest `keep`); this only stores, lists and prunes."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from scheduler.sqlite_codec import dumps

Doc = dict[str, Any]

_TABLE = """CREATE TABLE IF NOT EXISTS app_versions (
    app_id TEXT NOT NULL, version TEXT NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (app_id, version)) WITHOUT ROWID"""


class SQLiteAppVersions:
    _versions_table_ready = False

    def _versions_table(self, conn: sqlite3.Connection | None = None) -> None:
        """Create the table once per store object. Inside `conn`'s transaction if given, but
        then it is not known to exist until a transaction of its own made it: the caller's
        may still roll back, taking the table with it."""
        if self._versions_table_ready:
            return
        if conn is not None:
            conn.execute(_TABLE)
            return
        with self._write() as c:  # type: ignore[attr-defined]
            c.execute(_TABLE)
        self._versions_table_ready = True

    def put_app_version(self, app_id: str, version: str, doc: Doc, *, keep: int) -> None:
        with self._write() as c:  # type: ignore[attr-defined]
            self._put_version(c, app_id, version, doc, keep)

    def _put_version(self, c: sqlite3.Connection, app_id: str, version: str, doc: Doc,
                     keep: int) -> None:
        """`put_app_version` inside the caller's write transaction `c`."""
        self._versions_table(c)
        c.execute("INSERT OR REPLACE INTO app_versions (app_id, version, doc) "
                  "VALUES (?, ?, ?)", (app_id, version, dumps(doc)))
        # Older than the keep-th newest: one index seek (NOT IN over the newest `keep` cost
        # a third more per scale PUT). Fewer than `keep` versions: the bound is NULL, no row.
        c.execute("DELETE FROM app_versions WHERE app_id = ?1 AND version < ("
                  "SELECT version FROM app_versions WHERE app_id = ?1 "
                  "ORDER BY version DESC LIMIT 1 OFFSET ?2)", (app_id, max(1, int(keep)) - 1))

    def list_app_versions(self, app_id: str) -> list[str]:
        self._versions_table()
        rows = self._conn().execute(  # type: ignore[attr-defined]
            "SELECT version FROM app_versions WHERE app_id = ? ORDER BY version DESC",
            (app_id,)).fetchall()
        return [r[0] for r in rows]

    def get_app_version(self, app_id: str, version: str) -> Doc | None:
        self._versions_table()
        row = self._conn().execute(  # type: ignore[attr-defined]
            "SELECT doc FROM app_versions WHERE app_id = ? AND version = ?",
            (app_id, version)).fetchone()
        return json.loads(row[0]) if row else None

    def delete_app_versions(self, app_id: str) -> None:
        with self._write() as c:  # type: ignore[attr-defined]
            self._delete_versions(c, app_id)

    def _delete_versions(self, c: sqlite3.Connection, app_id: str) -> None:
        """`delete_app_versions` inside the caller's write transaction `c`."""
        self._versions_table(c)
        c.execute("DELETE FROM app_versions WHERE app_id = ?", (app_id,))
