"""Job documents in the ZooKeeper state store: the reads (cache-served, like every other read
of `ZooKeeperStateStore`) and the snapshot reads of a transaction.

The writes are `scheduler.jobs.documents.JobDocuments`', over `transact`: each is one `multi`
with version checks of what its plan read (the statuses a round planned from, the jobs
revision, a request counter) and the leader's fence. Nodes, under the store's root:

    jobs/<name>  job_status/<name>  job_runs/<task id>  job_requests/<seq, 12 digits>
    meta/jobs_revision  meta/job_request_seq

Runs are listed newest first by creation (the node's czxid; runs created in one transaction
share it and follow their `scheduledAt`, then their id); an update keeps a run's place.
"""

from __future__ import annotations

from typing import Any

from scheduler.doc_codec import loads
from scheduler.jobs.documents import JobDocuments

Doc = dict[str, Any]
_loads = loads


def job_tag(kind: str, doc: Doc) -> Any:
    """What the job listings filter and order on without decoding (see zk_state `_tag`)."""
    if kind == "job_runs":
        return (doc.get("job"), bool(doc.get("active")), doc.get("scheduledAt") or "")
    if kind == "job_requests":
        return doc.get("job")
    return None


def _run_order(item: tuple[str, Any]) -> tuple:
    key, entry = item
    return (entry[2], entry[3][2], key)


def _runs(entries: list[tuple[str, Any]], job: str | None, active: bool | None) -> list:
    found = [(k, e) for k, e in entries
             if (job is None or e[3][0] == job) and (active is None or e[3][1] == active)]
    found.sort(key=_run_order, reverse=True)
    return found


def _counter(doc: Doc | None) -> int:
    return int(doc["value"]) if doc else 0


class ZkJobDocuments(JobDocuments):
    """Mixin for `ZooKeeperStateStore` (needs `_doc`, `_docs`)."""

    _doc: Any
    _docs: Any

    def jobs_revision(self) -> int:
        return _counter(self._doc("meta", "jobs_revision"))

    def get_job(self, name: str) -> Doc | None:
        return self._doc("jobs", name)

    def list_jobs(self) -> list[Doc]:
        return [_loads(e[0]) for _, e in sorted(self._docs("jobs"))]

    def pending_job_actions(self) -> list[Doc]:
        return [_loads(e[0]) for _, e in sorted(self._docs("job_requests"))]

    def get_job_status(self, name: str) -> Doc | None:
        return self._doc("job_status", name)

    def list_job_status(self) -> dict[str, Doc]:
        return {key: _loads(e[0]) for key, e in sorted(self._docs("job_status"))}

    def get_job_run(self, run_id: str) -> Doc | None:
        return self._doc("job_runs", run_id)

    def list_job_runs(self, job: str | None = None, *, active: bool | None = None,
                      limit: int | None = None) -> list[Doc]:
        """Runs newest first, optionally of one job and/or only (in)active ones."""
        found = _runs(self._docs("job_runs"), job, active)
        if limit is not None:
            found = found[:max(0, int(limit))]
        return [_loads(e[0]) for _, e in found]


class ZkJobReader:
    """The job reads of a transaction's snapshot (mixed into zk_state's `_Reader`: `_get`
    records each document read and its version, so the `multi` checks it)."""

    s: Any
    _get: Any
    listed = False  # a listing read: the plan runs on a cache verified current


    def jobs_revision(self) -> int:
        return _counter(self._get("meta", "jobs_revision"))

    def job(self, name: str) -> Doc | None:
        return self._get("jobs", name)

    def job_status(self, name: str) -> Doc | None:
        return self._get("job_status", name)

    def job_runs(self, job: str, *, active: bool | None = None) -> list[Doc]:
        self.listed = True
        found = _runs(list(self.s._cache["job_runs"].items()), job, active)
        return [d for d in (self._get("job_runs", key) for key, _ in found) if d]

    def old_job_run_ids(self, job: str, keep: int) -> list[str]:
        # read (not only listed): each delete is then checked against the version it saw
        return [d["id"] for d in self.job_runs(job, active=False)[max(0, int(keep)):]]

    def job_requests(self, job: str) -> list[Doc]:
        self.listed = True
        keys = sorted(k for k, e in self.s._cache["job_requests"].items() if e[3] == job)
        return [d for d in (self._get("job_requests", key) for key in keys) if d]

    def job_request_seq(self) -> int:
        return _counter(self._get("meta", "job_request_seq"))
