"""Deleting a job while the scheduler creates one of its runs, on both stores: the run never
outlives the job in the history (`scheduler.jobs.documents`: the delete is conditional on the
job's status, which every run-creating write moves; a write computed from a status needs the
job to still exist)."""

from __future__ import annotations

import pytest

from scheduler.jobs import documents
from scheduler.jobs.documents import JobsChanged
from scheduler.jobs.plan import new_run
from tests.scheduler.test_jobs_store import scheduler_store
from tests.scheduler.test_jobs_worker import NOW, JobDriver, add_job
from tests.scheduler.test_state_contract import backend  # noqa: F401

STATUS = {"name": "j", "nextSlot": 1}


def test_a_run_recorded_between_the_deletes_listing_and_its_commit_goes_with_the_job(
        backend, monkeypatch):  # noqa: F811
    """The scheduler's write lands after the API's delete has listed the job's runs and before
    the delete commits (on ZooKeeper a real window: the listing comes from a cache; on SQLite
    the delete's transaction holds the write lock, so the write lands before it instead)."""
    api, sched = backend.open(), scheduler_store(backend)
    add_job(api)
    getattr(sched, "refresh", lambda: None)()
    sched.record_jobs(statuses=[STATUS], expect_statuses={"j": None})
    getattr(api, "refresh", lambda: None)()
    run = new_run("j", "schedule", NOW, NOW, slot=1)
    real_plan, raced = documents.jobs_write, []

    def plan_then_race(r, put, delete, expect_revision):
        txn = real_plan(r, put, delete, expect_revision)
        if not raced:  # once: the scheduler records a run now, after this listing
            raced.append(True)
            if backend.kind == "zk":
                sched.record_jobs(statuses=[dict(STATUS, nextSlot=2)], runs=[run],
                                  expect_statuses={"j": STATUS})
        return txn

    if backend.kind == "sqlite":  # see the docstring: the write cannot enter the window
        sched.record_jobs(statuses=[dict(STATUS, nextSlot=2)], runs=[run],
                          expect_statuses={"j": STATUS})
    monkeypatch.setattr(documents, "jobs_write", plan_then_race)
    api.write_jobs(delete=["j"])
    monkeypatch.undo()
    after = backend.open()
    assert after.get_job("j") is None and after.get_job_status("j") is None
    # the queued run is still there for the scheduler to end: its next round deletes it
    from scheduler.jobs.runner import JobRunner

    JobRunner(sched, JobDriver(sched)).tick(NOW + 1)
    assert backend.open().list_job_runs("j") == []


def test_a_round_planned_before_the_delete_records_nothing_after_it(backend):  # noqa: F811
    """Planned while the job existed without a status; the job is deleted; the record (status
    expected absent, which it still is) must not bring back a status and a run of it."""
    api, sched = backend.open(), scheduler_store(backend)
    add_job(api)
    getattr(sched, "refresh", lambda: None)()
    api.write_jobs(delete=["j"])
    getattr(sched, "refresh", lambda: None)()
    with pytest.raises(JobsChanged):
        sched.record_jobs(statuses=[STATUS], runs=[new_run("j", "schedule", NOW, NOW, slot=0)],
                          expect_statuses={"j": None})
    after = backend.open()
    assert after.get_job_status("j") is None and after.list_job_runs("j") == []


def test_a_deleted_jobs_running_run_leaves_no_history_when_it_ends(backend):  # noqa: F811
    from scheduler.jobs.runner import JobRunner
    from tests.scheduler.test_framework import status

    api, sched = backend.open(), scheduler_store(backend)
    add_job(api)
    getattr(sched, "refresh", lambda: None)()
    runner = JobRunner(sched, JobDriver(sched))
    runner.tick(NOW)
    (run,) = sched.list_job_runs("j")
    sched.record_jobs(runs=[dict(run, state="running")])
    api.write_jobs(delete=["j"])
    getattr(sched, "refresh", lambda: None)()
    runner.tick(NOW + 1)  # the job is gone: its run is killed
    assert ("kill", run["id"]) in runner.driver.calls
    assert runner.on_status_batch([status(run["id"], "TASK_KILLED")], NOW + 2)
    assert backend.open().list_job_runs("j") == []
