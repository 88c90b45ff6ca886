"""App version history in the SQLite store: plain document storage, one row per (app, version).

A mixin of `SQLiteStateStore` (it uses the store's connections and write transactions). The
table is created on first use, so files made by earlier versions get it without a migration.
What a version *is* and how many to keep are the caller's business (the API stores every
definition it accepts and keeps the newest `keep`); this only stores, lists and prunes.

Pruning is exact for readers and lazy on disk. The `keep` in force is one row of `meta`
(`app_versions_keep`), and every read applies it: a version past the newest `keep` is neither
listed nor readable from the moment a newer one commits. The rows themselves go on an app's
first write in a process and then every `PRUNE_EVERY` writes: deleting the oldest row on
every write read its cold pages (an old version's leaf and overflow page) and freed a page
each time, which made it a scale PUT's costliest statement. At most `keep + PRUNE_EVERY - 1`
versions of an app are on disk per writing process between prunes.

The rows are in a rowid table, in the order they were written, with a unique index on
(app, version). Files made before keep them in a table clustered on (app, version) (`WITHOUT
ROWID`) until opened: there a ~1 KB document did not fit beside its key in a leaf (an index
B-tree's rows get a quarter of a page), so each version took an overflow page of its own, and
each write descended a tree as large as the whole history to a leaf of its app's; a scale PUT
wrote one page more and read twice as many after another process's commit."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from scheduler.doc_codec import dumps

Doc = dict[str, Any]

PRUNE_EVERY = 16   # an app's writes between two deletions of its old rows (per process)

_COLUMNS = """(
    app_id TEXT NOT NULL, version TEXT NOT NULL, doc TEXT NOT NULL, UNIQUE (app_id, version))"""
_TABLE = "CREATE TABLE IF NOT EXISTS app_versions " + _COLUMNS
_KEEP = "(SELECT CAST(value AS INTEGER) FROM meta WHERE key='app_versions_keep')"
# The oldest version still kept of app ?1 (NULL while it has no more than `keep`).
_OLDEST_KEPT = ("(SELECT version FROM app_versions WHERE app_id = ?1 ORDER BY version DESC "
                "LIMIT 1 OFFSET coalesce(" + _KEEP + ", 1 << 40) - 1)")


class SQLiteAppVersions:
    _versions_table_ready = False
    _keep_stored: int | None = None    # the `keep` seen committed in `meta` (None: check)
    _writes_since_prune: dict[str, int] | None = None

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
            _move_to_rowid_table(c)
        self._versions_table_ready = True

    def put_app_version(self, app_id: str, version: str, doc: Doc, *, keep: int) -> None:
        with self._write() as c:  # type: ignore[attr-defined]
            self._put_version(c, app_id, version, doc, keep)

    def _put_version(self, c: sqlite3.Connection, app_id: str, version: str, doc: Doc,
                     keep: int) -> None:
        """`put_app_version` inside the caller's write transaction `c`."""
        self._versions_table(c)
        keep = max(1, int(keep))
        if self._keep_stored != keep:
            self._store_keep(c, keep)
        c.execute("INSERT INTO app_versions (app_id, version, doc) VALUES (?, ?, ?) "
                  "ON CONFLICT (app_id, version) DO UPDATE SET doc=excluded.doc",
                  (app_id, version, dumps(doc)))
        writes = self._writes_since_prune
        if writes is None:
            writes = self._writes_since_prune = {}
        done = writes.get(app_id, PRUNE_EVERY - 1) + 1   # an app's first write here prunes
        if done < PRUNE_EVERY:
            writes[app_id] = done
            return
        writes[app_id] = 0
        # Older than the keep-th newest: one index seek. Fewer than `keep`: NULL, no row.
        c.execute("DELETE FROM app_versions WHERE app_id = ?1 AND version < " + _OLDEST_KEPT,
                  (app_id,))

    def _store_keep(self, c: sqlite3.Connection, keep: int) -> None:
        """Make `keep` the bound readers apply. Believed stored only once a later transaction
        read it back (this one may still roll back). A bound that grows would bring back
        versions that were past the old one: those go first."""
        row = c.execute("SELECT CAST(value AS INTEGER) FROM meta "
                        "WHERE key='app_versions_keep'").fetchone()
        stored = None if row is None else int(row[0])
        if stored == keep:
            self._keep_stored = keep
            return
        if stored is not None and stored < keep:
            c.execute("DELETE FROM app_versions WHERE (app_id, version) IN (SELECT app_id, "
                      "version FROM (SELECT app_id, version, row_number() OVER (PARTITION BY "
                      "app_id ORDER BY version DESC) AS n FROM app_versions) WHERE n > ?)",
                      (stored,))
        c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('app_versions_keep', ?)",
                  (str(keep),))

    def _versions_rolled_back(self) -> None:
        """A write transaction failed: what it stored of `keep` may be gone with it."""
        self._keep_stored = None

    def list_app_versions(self, app_id: str) -> list[str]:
        self._versions_table()
        rows = self._conn().execute(  # type: ignore[attr-defined]
            "SELECT version FROM app_versions WHERE app_id = ? ORDER BY version DESC "
            "LIMIT coalesce(" + _KEEP + ", -1)", (app_id,)).fetchall()
        return [r[0] for r in rows]

    def get_app_version(self, app_id: str, version: str) -> Doc | None:
        self._versions_table()
        row = self._conn().execute(  # type: ignore[attr-defined]
            "SELECT doc FROM app_versions WHERE app_id = ?1 AND version = ?2 "
            "AND ?2 >= coalesce(" + _OLDEST_KEPT + ", '')", (app_id, version)).fetchone()
        return json.loads(row[0]) if row else None

    def delete_app_versions(self, app_id: str) -> None:
        with self._write() as c:  # type: ignore[attr-defined]
            self._delete_versions(c, app_id)

    def _delete_versions(self, c: sqlite3.Connection, app_id: str) -> None:
        """`delete_app_versions` inside the caller's write transaction `c`."""
        self._versions_table(c)
        c.execute("DELETE FROM app_versions WHERE app_id = ?", (app_id,))
        if self._writes_since_prune is not None:
            self._writes_since_prune.pop(app_id, None)


def _move_to_rowid_table(c: sqlite3.Connection) -> None:
    """Give a file made before the rowid table (see the module) its rows in one, inside the
    caller's transaction. Other connections re-prepare their statements on their own."""
    row = c.execute("SELECT sql FROM sqlite_master WHERE type='table' AND "
                    "name='app_versions'").fetchone()
    if row is None or "WITHOUT ROWID" not in row[0].upper():
        return
    c.execute("CREATE TABLE app_versions_rowid " + _COLUMNS)
    c.execute("INSERT INTO app_versions_rowid (app_id, version, doc) "
              "SELECT app_id, version, doc FROM app_versions ORDER BY app_id, version")
    c.execute("DROP TABLE app_versions")
    c.execute("ALTER TABLE app_versions_rowid RENAME TO app_versions")
