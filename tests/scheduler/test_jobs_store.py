"""Job documents in the SQLite state store: plain storage, one transaction per method."""

from __future__ import annotations

import pytest

from scheduler.jobs.sqlite_jobs import JobsChanged
from scheduler.sqlite_state import SQLiteStateStore


@pytest.fixture
def store(tmp_path):
    s = SQLiteStateStore(tmp_path / "state.db")
    yield s
    s.close()


def run(job, n, active=False, **kw):
    return {"id": f"ct:{n}:0:{job}", "job": job, "active": active, "state": "x", **kw}


def test_jobs_revision_guards_concurrent_writes(store):
    rev = store.jobs_revision()
    rev2 = store.write_jobs([{"name": "a", "command": "true"}], expect_revision=rev)
    assert rev2 == rev + 1
    with pytest.raises(JobsChanged):
        store.write_jobs([{"name": "b", "command": "x"}], expect_revision=rev)
    assert [j["name"] for j in store.list_jobs()] == ["a"]  # the stale write left nothing
    store.write_jobs([{"name": "b", "command": "y"}], delete=["a"], expect_revision=rev2)
    assert [j["name"] for j in store.list_jobs()] == ["b"]


def test_runs_status_and_requests_in_one_transaction_and_reopen(tmp_path, store):
    req = store.request_job_action("a", "run", "2026-01-01T00:00:00.000Z")
    assert store.pending_job_actions() == [req]
    store.record_jobs(statuses=[{"name": "a", "nextSlot": 3}],
                      runs=[run("a", 1, active=True), run("a", 2)], done_requests=[req["seq"]])
    assert store.pending_job_actions() == []
    again = SQLiteStateStore(tmp_path / "state.db")
    try:
        assert again.get_job_status("a") == {"name": "a", "nextSlot": 3}
        assert [r["id"] for r in again.list_job_runs("a")] == ["ct:2:0:a", "ct:1:0:a"]
        assert [r["id"] for r in again.list_job_runs(active=True)] == ["ct:1:0:a"]
    finally:
        again.close()
    # an update keeps the run's place in the history and its active flag follows the doc
    store.record_jobs(runs=[run("a", 1, active=False, state="done")])
    assert store.list_job_runs(active=True) == []
    assert [r["state"] for r in store.list_job_runs("a")] == ["x", "done"]


def test_a_failing_transaction_leaves_nothing(store):
    with pytest.raises(KeyError):
        store.record_jobs(statuses=[{"name": "a"}], runs=[{"id": "no-job-field"}])
    assert store.list_job_status() == {} and store.list_job_runs() == []


def test_prune_keeps_newest_inactive_and_every_active(store):
    store.record_jobs(runs=[run("a", i, active=(i == 0)) for i in range(10)] + [run("b", 0)])
    assert store.prune_job_runs("a", 3) == 6
    assert [r["id"] for r in store.list_job_runs("a")] == [
        "ct:9:0:a", "ct:8:0:a", "ct:7:0:a", "ct:0:0:a"]
    assert len(store.list_job_runs("b")) == 1


def test_delete_job_takes_status_requests_and_finished_runs(store):
    store.write_jobs([{"name": "a"}])
    store.request_job_action("a", "run", "t")
    store.record_jobs(statuses=[{"name": "a"}], runs=[run("a", 1, active=True), run("a", 2)])
    store.write_jobs(delete=["a"])
    assert store.get_job("a") is None and store.get_job_status("a") is None
    assert store.pending_job_actions() == []
    assert [r["id"] for r in store.list_job_runs("a")] == ["ct:1:0:a"]  # still running
