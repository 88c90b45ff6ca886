"""Job documents in every state store (SQLite, ZooKeeper on a real server): plain storage, one
transaction per method, the same semantics on both backends (`scheduler.jobs.documents`)."""

from __future__ import annotations

import logging

import pytest

from scheduler.jobs.documents import JobsChanged
from scheduler.state import NotLeader
from tests.scheduler.test_jobs_worker import NOW, JobDriver, add_job
from tests.scheduler.test_state_contract import backend  # noqa: F401


@pytest.fixture
def store(backend):  # noqa: F811
    return backend.open()


def scheduler_store(backend):  # noqa: F811
    """A store as the scheduler opens it (ZooKeeper: reads from its own cache)."""
    from scheduler.stores import open_state

    s = open_state(backend.url, session_reads=True)
    backend.opened.append(s)
    return s


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


def test_two_api_workers_on_one_revision_cannot_both_write(backend):  # noqa: F811
    one, two = backend.open(), backend.open()
    rev = one.jobs_revision()
    assert two.jobs_revision() == rev
    one.write_jobs([{"name": "a"}], expect_revision=rev)
    with pytest.raises(JobsChanged):
        two.write_jobs([{"name": "b"}], expect_revision=rev)
    assert [j["name"] for j in two.list_jobs()] == ["a"]


def test_runs_status_and_requests_in_one_transaction_and_reopen(backend, store):  # noqa: F811
    req = store.request_job_action("a", "run", "2026-01-01T00:00:00.000Z")
    assert store.pending_job_actions() == [req]
    req2 = store.request_job_action("a", "kill", "2026-01-01T00:00:01.000Z")
    assert req2["seq"] > req["seq"]
    store.record_jobs(statuses=[{"name": "a", "nextSlot": 3}],
                      runs=[run("a", 1, active=True), run("a", 2)], done_requests=[req["seq"]])
    assert store.pending_job_actions() == [req2]
    again = backend.open()  # another process's view of the same data
    assert again.get_job_status("a") == {"name": "a", "nextSlot": 3}
    assert [r["id"] for r in again.list_job_runs("a")] == ["ct:2:0:a", "ct:1:0:a"]
    assert [r["id"] for r in again.list_job_runs(active=True)] == ["ct:1:0:a"]
    assert again.pending_job_actions() == [req2]
    # an update keeps the run's place in the history and its active flag follows the doc
    store.record_jobs(runs=[run("a", 1, active=False, state="done")])
    assert store.list_job_runs(active=True) == []
    assert [r["state"] for r in store.list_job_runs("a")] == ["x", "done"]
    # a later run comes first
    store.record_jobs(runs=[run("a", 0)])
    assert [r["id"] for r in again.list_job_runs("a", limit=2)] == ["ct:0:0:a", "ct:2:0:a"]


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
    store.write_jobs([{"name": "a"}, {"name": "b"}])
    store.request_job_action("a", "run", "t")
    kept = store.request_job_action("b", "run", "t")
    store.record_jobs(statuses=[{"name": "a"}], runs=[run("a", 1, active=True), run("a", 2)])
    store.write_jobs(delete=["a"])
    assert store.get_job("a") is None and store.get_job_status("a") is None
    assert store.pending_job_actions() == [kept]
    assert [r["id"] for r in store.list_job_runs("a")] == ["ct:1:0:a"]  # still running


def test_a_round_records_only_on_the_statuses_it_planned_from(backend):  # noqa: F811
    """Two schedulers (a leader change) record the same slot: the second write was computed
    from a status that is no longer the stored one, so it is refused whole."""
    backend.open().write_jobs([{"name": "j"}])  # a status is only ever recorded for a job
    a, b = scheduler_store(backend), scheduler_store(backend)
    for s in (a, b):
        getattr(s, "refresh", lambda: None)()
    status = {"name": "j", "cursor": 1}
    a.record_jobs(statuses=[status], runs=[run("j", 0, active=True)],
                  expect_statuses={"j": None})
    with pytest.raises(JobsChanged):
        b.record_jobs(statuses=[status], runs=[run("j", 0, active=True, state="dup"),
                                               run("j", 9)], expect_statuses={"j": None})
    assert [(r["id"], r["state"]) for r in backend.open().list_job_runs("j")] == [
        ("ct:0:0:j", "x")]
    b.record_jobs(statuses=[dict(status, cursor=2)], expect_statuses={"j": status})
    assert backend.open().get_job_status("j") == {"name": "j", "cursor": 2}


def test_two_schedulers_planning_from_one_snapshot_record_a_slot_once(backend, monkeypatch,  # noqa: F811
                                                                    caplog):  # noqa: F811
    from scheduler.jobs.runner import JobRunner

    api, first, second = backend.open(), scheduler_store(backend), scheduler_store(backend)
    add_job(api)
    for s in (first, second):  # what the watch brings within moments, now
        getattr(s, "refresh", lambda: None)()
    snapshot = second.list_job_status()         # both plan from this (nothing yet)
    active = second.list_job_runs(active=True)
    a, b = JobRunner(first, JobDriver(first)), JobRunner(second, JobDriver(second))
    assert a.enabled and b.enabled
    assert a.tick(NOW) is True                   # A records the slot
    (queued,) = first.list_job_runs("j")
    first.record_jobs(runs=[dict(queued, state="staging")])  # and launches it
    monkeypatch.setattr(second, "list_job_status", lambda: snapshot)
    monkeypatch.setattr(second, "list_job_runs", lambda *a, **k: active)
    with caplog.at_level(logging.WARNING, "accessd.scheduler.jobs"):
        assert b.tick(NOW) is False              # B's write finds A's status: refused
    assert "planning again next tick" in caplog.text
    monkeypatch.undo()
    assert [(r["id"], r["state"]) for r in api.list_job_runs("j")] == [
        (queued["id"], "staging")]               # not queued again: it would run twice
    b.tick(NOW + 0.25)                           # B plans again from the store: no new slot
    assert len(api.list_job_runs("j")) == 1


def test_a_deposed_leader_records_nothing(backend, caplog):  # noqa: F811
    from scheduler.jobs.runner import JobRunner

    if backend.kind != "zk":
        pytest.skip("the leader fence is the ZooKeeper store's")
    store = scheduler_store(backend)
    add_job(store)
    store.fence = store.root + "/no-such-election-node"
    with pytest.raises(NotLeader):
        store.record_jobs(statuses=[{"name": "j"}], runs=[run("j", 0, active=True)])
    driver = JobDriver(store)
    with caplog.at_level(logging.WARNING, "accessd.scheduler.jobs"):
        assert JobRunner(store, driver).tick(NOW) is False  # the due slot: refused, no launch
    assert "refused a write" in caplog.text and "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    store.fence = None
    assert store.list_job_runs() == [] and store.get_job_status("j") is None
    assert driver.calls == []
