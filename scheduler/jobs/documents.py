"""Job documents in any state store: the writes, defined once over `StateStore.transact`.

Both backends (`SQLiteStateStore`, `ZooKeeperStateStore`) inherit `JobDocuments`; each only
implements the reads (`jobs_revision`, `get_job`, `list_jobs`, `pending_job_actions`,
`get_job_status`, `list_job_status`, `get_job_run`, `list_job_runs`) and a snapshot `JobReader`
inside `transact`. The plans below are pure: a snapshot in, a `Transaction` of plain puts and
deletes out. They compute no counters, states or schedules (`scheduler.jobs.plan` does).

Documents (kinds of the generic store):
- `jobs`: job definitions keyed by `name` (Chronos JSON plus `version`), written by the API.
  `meta/jobs_revision` grows with every definition write, and a write may name the revision it
  was computed from (`expect_revision`): a concurrent change makes it raise `JobsChanged`, so
  the graph checks (unknown parents, cycles) of two API workers can never both pass on stale
  data.
- `job_status`: one runtime document per job (counters, the schedule cursor), written by the
  scheduler only.
- `job_runs`: one document per run attempt, keyed by its Mesos task id, with `job` and an
  `active` flag; listed newest first (by creation; an update keeps a run's place).
- `job_requests`: run-now and kill requests from the API, keyed by their `seq` (it grows with
  every request, `meta/job_request_seq`), consumed by the scheduler in the same transaction
  that records what it did about them (`record_jobs(done_requests=)`).

On ZooKeeper every method is one `multi` carrying version checks of what its plan read and the
leader's fence; on SQLite one BEGIN IMMEDIATE transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from scheduler.state import Delete, Op, Put, Reader, StateError, Transaction

Doc = dict[str, Any]


class JobsChanged(StateError):
    """The jobs changed since the revision (or the statuses) a write was computed from."""

    def __init__(self) -> None:
        super().__init__("the jobs changed meanwhile; try again")


class JobReader(Reader, Protocol):
    """The job reads of a transaction's snapshot (besides the `Reader` ones)."""

    def jobs_revision(self) -> int: ...

    def job(self, name: str) -> Doc | None:
        """The job's definition (None: no such job)."""
        ...

    def job_status(self, name: str) -> Doc | None: ...

    def job_runs(self, job: str, *, active: bool | None = None) -> list[Doc]:
        """The job's runs, newest first."""
        ...

    def old_job_run_ids(self, job: str, keep: int) -> list[str]:
        """The ids of the job's finished runs after its newest `keep` (what a prune deletes),
        without decoding them where the store can."""
        ...

    def job_requests(self, job: str) -> list[Doc]:
        """The job's pending requests (each with its `seq`)."""
        ...

    def job_request_seq(self) -> int:
        """The highest request `seq` ever handed out (0 for none)."""
        ...


def request_key(seq: int) -> str:
    return f"{int(seq):012d}"


# -- plans (pure) ----------------------------------------------------------------------------------
def jobs_write(r: JobReader, put: list[Doc], delete: list[str],
               expect_revision: int | None) -> tuple[Transaction, int]:
    revision = r.jobs_revision()
    if expect_revision is not None and revision != expect_revision:
        raise JobsChanged()
    ops: list[Op] = [Put("jobs", doc["name"], doc) for doc in put]
    for name in delete:
        ops.append(Delete("jobs", name))
        # read, not deleted blindly: on ZooKeeper that makes the delete conditional on the
        # status it saw, and every write that creates a run of the job moves that status (a
        # round's record, a retry), so a run created after the listing below was made makes
        # this delete conflict and be planned again on a listing that has it
        r.job_status(name)
        ops.append(Delete("job_status", name))
        ops.extend(Delete("job_requests", request_key(q["seq"])) for q in r.job_requests(name))
        ops.extend(Delete("job_runs", run["id"]) for run in r.job_runs(name, active=False))
    ops.append(Put("meta", "jobs_revision", {"value": str(revision + 1)}))
    return Transaction(tuple(ops)), revision + 1


def job_request(r: JobReader, name: str, action: str, requested_at: str,
                extra: Mapping[str, Any] | None = None) -> tuple[Transaction, Doc]:
    seq = r.job_request_seq() + 1
    doc = {**(extra or {}), "job": name, "action": action, "requestedAt": requested_at,
           "seq": seq}
    return Transaction((Put("job_requests", request_key(seq), doc),
                        Put("meta", "job_request_seq", {"value": str(seq)}))), doc


def jobs_record(r: JobReader, statuses: list[Doc], runs: list[Doc], done_requests: list[int],
                expect_statuses: Mapping[str, Doc | None],
                delete_runs: list[str] = ()) -> tuple[Transaction, None]:
    for name, expected in expect_statuses.items():
        # computed from the job's status: that status, and the job itself, must still be
        # there (a job deleted meanwhile gets neither a status nor runs again)
        if r.job_status(name) != expected or r.job(name) is None:
            raise JobsChanged()
    ops: list[Op] = [Put("job_status", s["name"], s) for s in statuses]
    # a run without its `job` is refused (KeyError) before anything is written
    ops.extend(Put("job_runs", run["id"], dict(run, job=run["job"])) for run in runs)
    ops.extend(Delete("job_runs", run_id) for run_id in delete_runs)
    ops.extend(Delete("job_requests", request_key(seq)) for seq in done_requests)
    return Transaction(tuple(ops)), None


def runs_prune(r: JobReader, jobs: list[str], keep: int) -> tuple[Transaction, int]:
    gone = [run_id for job in jobs for run_id in r.old_job_run_ids(job, keep)]
    return Transaction(tuple(Delete("job_runs", run_id) for run_id in gone)), len(gone)


class JobDocuments:
    """The job writes of a state store (a mixin: needs `transact`)."""

    transact: Any

    def write_jobs(self, put: Iterable[Doc] = (), delete: Iterable[str] = (), *,
                   expect_revision: int | None = None) -> int:
        """Store job documents (keyed by `name`) and delete jobs by name, in one transaction;
        a deleted job's status, pending requests and finished runs go with it. Returns the new
        revision; raises JobsChanged if `expect_revision` is given and no longer current."""
        put, delete = list(put), list(delete)
        return self.transact(lambda r: jobs_write(r, put, delete, expect_revision))

    def request_job_action(self, name: str, action: str, requested_at: str,
                           **extra: Any) -> Doc:
        """Queue `{"job", "action", "requestedAt", **extra}` (actions: `run` with optional
        `arguments`, `kill`, `success`, `progress` with `taskId` and `count`); returns it
        with its `seq`."""
        return self.transact(lambda r: job_request(r, name, action, requested_at, extra))

    def record_jobs(self, *, statuses: Iterable[Doc] = (), runs: Iterable[Doc] = (),
                    done_requests: Iterable[int] = (),
                    expect_statuses: Mapping[str, Doc | None] | None = None,
                    delete_runs: Iterable[str] = ()) -> None:
        """One transaction: upsert status documents (keyed by `name`) and run documents (keyed
        by `id`; `job` and `active` read from the document), and consume requests by `seq`.
        With `expect_statuses` (name -> the status document the write was computed from, None
        for none), any other stored document, or the job's definition gone, raises JobsChanged
        and nothing is written: two schedulers planning from the same snapshot (a leader
        change) cannot both record, and a deleted job gets no status or run back.
        `delete_runs`: run ids to delete (runs of deleted jobs, once they are over)."""
        statuses, runs, done = list(statuses), list(runs), [int(q) for q in done_requests]
        expect, gone = dict(expect_statuses or {}), list(delete_runs)
        self.transact(lambda r: jobs_record(r, statuses, runs, done, expect, gone))

    def prune_job_runs(self, job: str | Iterable[str], keep: int) -> int:
        """Delete all but the newest `keep` inactive runs of `job` (a name, or several: one
        transaction for them all); returns how many went."""
        jobs = [job] if isinstance(job, str) else list(job)
        return self.transact(lambda r: runs_prune(r, jobs, keep))
