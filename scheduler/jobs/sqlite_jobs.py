"""Job documents in the SQLite state store: a mixin of plain storage methods.

`SQLiteStateStore` inherits it; it uses the store's `_conn()` / `_write()` (one transaction a
method, BEGIN IMMEDIATE) and creates its tables with `create_job_tables`. It stores documents
and applies transactions; it never computes counters, states or schedules (that is
`scheduler.jobs.plan`'s job).

Documents:
- `jobs`: job definitions (Chronos JSON, as `JobSpec.to_json()` plus `version`), written by the
  API. `jobs_revision()` grows with every write, and a write may name the revision it was
  computed from (`expect_revision`): a concurrent change makes it raise `JobsChanged`, so the
  graph checks (unknown parents, cycles) of two API workers can never both pass on stale data.
- `job_status`: one runtime document per job (counters, the schedule cursor), written by the
  scheduler only.
- `job_runs`: one document per run attempt, keyed by its Mesos task id, with `job` and an
  `active` flag taken from the document; kept in insertion order (`seq`).
- `job_requests`: run-now and kill requests from the API, consumed by the scheduler in the
  same transaction that records what it did about them (`record_jobs(done_requests=)`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

from scheduler.state import StateError

Doc = dict[str, Any]

JOB_TABLES = (
    "CREATE TABLE IF NOT EXISTS jobs (name TEXT PRIMARY KEY, doc TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS job_status (name TEXT PRIMARY KEY, doc TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS job_runs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, job TEXT NOT NULL,
        active INTEGER NOT NULL, doc TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS job_runs_job ON job_runs (job, seq)",
    "CREATE INDEX IF NOT EXISTS job_runs_active ON job_runs (active)",
    """CREATE TABLE IF NOT EXISTS job_requests (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL, doc TEXT NOT NULL)""",
    "INSERT OR IGNORE INTO meta (key, value) VALUES ('jobs_revision', '0')",
)


class JobsChanged(StateError):
    """The jobs changed since the revision a write was computed from (retry the write)."""

    def __init__(self) -> None:
        super().__init__("the jobs changed meanwhile; try again")


def _dumps(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"))


class SQLiteJobDocuments:
    """Mixin for `SQLiteStateStore` (needs `_conn()` and `_write()`)."""

    @staticmethod
    def create_job_tables(conn: sqlite3.Connection) -> None:
        for stmt in JOB_TABLES:
            conn.execute(stmt)

    # -- definitions (API) ------------------------------------------------------------------------
    def jobs_revision(self) -> int:
        row = self._conn().execute(
            "SELECT value FROM meta WHERE key='jobs_revision'").fetchone()
        return int(row[0]) if row else 0

    def get_job(self, name: str) -> Doc | None:
        row = self._conn().execute("SELECT doc FROM jobs WHERE name=?", (name,)).fetchone()
        return json.loads(row[0]) if row else None

    def list_jobs(self) -> list[Doc]:
        rows = self._conn().execute("SELECT doc FROM jobs ORDER BY name").fetchall()
        return [json.loads(r[0]) for r in rows]

    def write_jobs(self, put: Iterable[Doc] = (), delete: Iterable[str] = (), *,
                   expect_revision: int | None = None) -> int:
        """Store job documents (keyed by `name`) and delete jobs by name, in one transaction;
        a deleted job's status, pending requests and finished runs go with it. Returns the new
        revision; raises JobsChanged if `expect_revision` is given and no longer current."""
        with self._write() as c:
            row = c.execute("SELECT value FROM meta WHERE key='jobs_revision'").fetchone()
            revision = int(row[0]) if row else 0
            if expect_revision is not None and revision != expect_revision:
                raise JobsChanged()
            for doc in put:
                c.execute("INSERT OR REPLACE INTO jobs (name, doc) VALUES (?, ?)",
                          (doc["name"], _dumps(doc)))
            for name in delete:
                c.execute("DELETE FROM jobs WHERE name=?", (name,))
                c.execute("DELETE FROM job_status WHERE name=?", (name,))
                c.execute("DELETE FROM job_requests WHERE job=?", (name,))
                c.execute("DELETE FROM job_runs WHERE job=? AND active=0", (name,))
            c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('jobs_revision', ?)",
                      (str(revision + 1),))
            return revision + 1

    # -- requests (API -> scheduler) --------------------------------------------------------------
    def request_job_action(self, name: str, action: str, requested_at: str) -> Doc:
        """Queue `{"job", "action", "requestedAt"}`; returns it with its `seq`."""
        doc = {"job": name, "action": action, "requestedAt": requested_at}
        with self._write() as c:
            cur = c.execute("INSERT INTO job_requests (job, doc) VALUES (?, ?)",
                            (name, _dumps(doc)))
        return dict(doc, seq=int(cur.lastrowid))

    def pending_job_actions(self) -> list[Doc]:
        rows = self._conn().execute("SELECT seq, doc FROM job_requests ORDER BY seq").fetchall()
        return [dict(json.loads(d), seq=int(s)) for s, d in rows]

    # -- runtime (scheduler) ----------------------------------------------------------------------
    def get_job_status(self, name: str) -> Doc | None:
        row = self._conn().execute("SELECT doc FROM job_status WHERE name=?",
                                   (name,)).fetchone()
        return json.loads(row[0]) if row else None

    def list_job_status(self) -> dict[str, Doc]:
        rows = self._conn().execute("SELECT name, doc FROM job_status").fetchall()
        return {n: json.loads(d) for n, d in rows}

    def record_jobs(self, *, statuses: Iterable[Doc] = (), runs: Iterable[Doc] = (),
                    done_requests: Iterable[int] = (),
                    expect_statuses: Mapping[str, Doc | None] | None = None) -> None:
        """One transaction: upsert status documents (keyed by `name`) and run documents (keyed
        by `id`; `job` and `active` read from the document), and consume requests by `seq`.
        With `expect_statuses` (name -> the status document the write was computed from, None
        for none), any other stored document raises JobsChanged and nothing is written: two
        schedulers planning from the same snapshot (a leader change) cannot both record."""
        with self._write() as c:
            for name, expected in (expect_statuses or {}).items():
                row = c.execute("SELECT doc FROM job_status WHERE name=?", (name,)).fetchone()
                if (json.loads(row[0]) if row else None) != expected:
                    raise JobsChanged()
            for status in statuses:
                c.execute("INSERT OR REPLACE INTO job_status (name, doc) VALUES (?, ?)",
                          (status["name"], _dumps(status)))
            for run in runs:
                c.execute(
                    "INSERT INTO job_runs (id, job, active, doc) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(id) DO UPDATE SET job=excluded.job, active=excluded.active, "
                    "doc=excluded.doc",
                    (run["id"], run["job"], 1 if run.get("active") else 0, _dumps(run)))
            for seq in done_requests:
                c.execute("DELETE FROM job_requests WHERE seq=?", (int(seq),))

    def get_job_run(self, run_id: str) -> Doc | None:
        row = self._conn().execute("SELECT doc FROM job_runs WHERE id=?", (run_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def list_job_runs(self, job: str | None = None, *, active: bool | None = None,
                      limit: int | None = None) -> list[Doc]:
        """Runs newest first, optionally of one job and/or only (in)active ones."""
        where, args = [], []
        if job is not None:
            where.append("job=?")
            args.append(job)
        if active is not None:
            where.append("active=?")
            args.append(1 if active else 0)
        sql = "SELECT doc FROM job_runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(max(0, int(limit)))
        return [json.loads(r[0]) for r in self._conn().execute(sql, args).fetchall()]

    def prune_job_runs(self, job: str, keep: int) -> int:
        """Delete all but the newest `keep` inactive runs of `job`; returns how many went."""
        with self._write() as c:
            cur = c.execute(
                "DELETE FROM job_runs WHERE job=? AND active=0 AND seq NOT IN "
                "(SELECT seq FROM job_runs WHERE job=? AND active=0 ORDER BY seq DESC LIMIT ?)",
                (job, job, max(0, int(keep))))
            return cur.rowcount
