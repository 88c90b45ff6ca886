"""Job documents in the SQLite state store: the reads, and the rows the writes become.

`SQLiteStateStore` inherits `SQLiteJobDocuments`; the writes (`write_jobs`, `record_jobs`,
`request_job_action`, `prune_job_runs`) are `scheduler.jobs.documents.JobDocuments`', defined
over `transact`, whose puts and deletes land in the tables below (`JOB_PUT_SQL`,
`JOB_DELETE_SQL`) and whose snapshot reads are `SQLiteJobReader`'s. Nothing here computes
counters, states or schedules (that is `scheduler.jobs.plan`'s job).

Tables: `jobs` and `job_status` keyed by name; `job_runs` keyed by task id, with `job` and an
`active` flag taken from the document, kept in insertion order (`seq`; an update keeps it);
`job_requests` keyed by their `seq`; `meta` keeps `jobs_revision` (and `job_request_seq`).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from scheduler.jobs.documents import JobDocuments, JobsChanged

__all__ = ["JobsChanged", "SQLiteJobDocuments", "SQLiteJobReader", "JOB_PUT_SQL",
           "JOB_DELETE_SQL"]

Doc = dict[str, Any]

JOB_TABLES = (
    "CREATE TABLE IF NOT EXISTS jobs (name TEXT PRIMARY KEY, doc TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS job_status (name TEXT PRIMARY KEY, doc TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS job_runs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, job TEXT NOT NULL,
        active INTEGER NOT NULL, doc TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS job_runs_job ON job_runs (job, seq)",
    "CREATE INDEX IF NOT EXISTS job_runs_active ON job_runs (active)",
    # one job's (in)active runs in order, without visiting every other job's: with only the
    # two indexes above, `job=? AND active=0` walked all finished runs of all jobs (a prune of
    # 5 jobs with 100 runs each took ~120 ms, growing with the history)
    "CREATE INDEX IF NOT EXISTS job_runs_job_active ON job_runs (job, active, seq)",
    """CREATE TABLE IF NOT EXISTS job_requests (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL, doc TEXT NOT NULL)""",
    "INSERT OR IGNORE INTO meta (key, value) VALUES ('jobs_revision', '0')",
)


def _dumps(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"))


class SQLiteJobDocuments(JobDocuments):
    """Mixin for `SQLiteStateStore`: the reads (the writes are `JobDocuments`', over
    `transact`; the rows they become are `JOB_PUT_SQL` / `JOB_DELETE_SQL`)."""

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

    # -- requests (API -> scheduler) --------------------------------------------------------------
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


class SQLiteJobReader:
    """The job reads of a transaction's snapshot (`self.c`: the connection inside BEGIN
    IMMEDIATE); mixed into the SQLite store's `_Reader`."""

    c: sqlite3.Connection

    def jobs_revision(self) -> int:
        row = self.c.execute("SELECT value FROM meta WHERE key='jobs_revision'").fetchone()
        return int(row[0]) if row else 0

    def job(self, name: str) -> Doc | None:
        row = self.c.execute("SELECT doc FROM jobs WHERE name=?", (name,)).fetchone()
        return json.loads(row[0]) if row else None

    def job_status(self, name: str) -> Doc | None:
        row = self.c.execute("SELECT doc FROM job_status WHERE name=?", (name,)).fetchone()
        return json.loads(row[0]) if row else None

    def job_runs(self, job: str, *, active: bool | None = None) -> list[Doc]:
        sql, args = "SELECT doc FROM job_runs WHERE job=?", [job]
        if active is not None:
            sql += " AND active=?"
            args.append(1 if active else 0)
        rows = self.c.execute(sql + " ORDER BY seq DESC", args).fetchall()
        return [json.loads(r[0]) for r in rows]

    def old_job_run_ids(self, job: str, keep: int) -> list[str]:
        rows = self.c.execute(
            "SELECT id FROM job_runs WHERE job=? AND active=0 ORDER BY seq DESC "
            "LIMIT -1 OFFSET ?", (job, max(0, int(keep)))).fetchall()
        return [r[0] for r in rows]

    def job_requests(self, job: str) -> list[Doc]:
        rows = self.c.execute("SELECT seq, doc FROM job_requests WHERE job=? ORDER BY seq",
                              (job,)).fetchall()
        return [dict(json.loads(d), seq=int(q)) for q, d in rows]

    def job_request_seq(self) -> int:
        # sqlite_sequence: the highest seq ever used, also by files made before the counter
        row = self.c.execute(
            "SELECT MAX(v) FROM (SELECT CAST(value AS INTEGER) AS v FROM meta "
            "WHERE key='job_request_seq' UNION ALL SELECT seq FROM sqlite_sequence "
            "WHERE name='job_requests')").fetchone()
        return int(row[0] or 0)


def _request_row(op: Any) -> tuple[int, str, str]:
    return (int(op.key), op.doc["job"], _dumps({k: v for k, v in op.doc.items() if k != "seq"}))


# How the job kinds' operations land in their tables: (sql, args of the op).
JOB_PUT_SQL = {
    "jobs": ("INSERT OR REPLACE INTO jobs (name, doc) VALUES (?, ?)",
             lambda op: (op.key, _dumps(op.doc))),
    "job_status": ("INSERT OR REPLACE INTO job_status (name, doc) VALUES (?, ?)",
                   lambda op: (op.key, _dumps(op.doc))),
    "job_runs": ("INSERT INTO job_runs (id, job, active, doc) VALUES (?, ?, ?, ?) "
                 "ON CONFLICT(id) DO UPDATE SET job=excluded.job, active=excluded.active, "
                 "doc=excluded.doc",
                 lambda op: (op.key, op.doc["job"], 1 if op.doc.get("active") else 0,
                             _dumps(op.doc))),
    "job_requests": ("INSERT OR REPLACE INTO job_requests (seq, job, doc) VALUES (?, ?, ?)",
                     _request_row),
}
JOB_DELETE_SQL = {
    "jobs": ("DELETE FROM jobs WHERE name=?", lambda op: (op.key,)),
    "job_status": ("DELETE FROM job_status WHERE name=?", lambda op: (op.key,)),
    "job_runs": ("DELETE FROM job_runs WHERE id=?", lambda op: (op.key,)),
    "job_requests": ("DELETE FROM job_requests WHERE seq=?", lambda op: (int(op.key),)),
}
