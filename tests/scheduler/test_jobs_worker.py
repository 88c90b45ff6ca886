"""The jobs hook in the worker, against a real SQLite store and a driver that records calls
and what the store held at each: a run is stored before its ACCEPT, a job's update before its
ACKNOWLEDGE, a failing jobs round does not cost the apps theirs, a store without job documents
leaves jobs off."""

from __future__ import annotations

import queue

from scheduler.framework import Worker
from scheduler.jobs.plan import iso
from scheduler.jobs.spec import parse_job
from tests.scheduler.builders import make_offer
from tests.scheduler.test_framework import NOW, RecordingDriver, env, put_app, status  # noqa: F401


class JobDriver(RecordingDriver):
    def acceptOffers(self, offer_ids, operations, filters=None):
        launched = [i["task_id"]["value"] for op in operations for i in op["launch"]["task_infos"]]
        stored = {tid: (self.store.get_job_run(tid) or {}).get("state") for tid in launched}
        self.calls.append(("accept", launched, stored))

    def acknowledgeStatusUpdate(self, status):
        run = self.store.get_job_run(status["task_id"]["value"])
        self.calls.append(("ack", status["task_id"]["value"], run and run["state"]))


def add_job(store, **kw):
    doc = {"name": "j", "command": "true", "schedule": f"R/{iso(NOW - 1)}/PT1H", "mem": 16,
           "disk": 0, **kw}
    store.write_jobs([dict(parse_job(doc, now=NOW).to_json(), version=iso(NOW - 10))])


def subscribed(store, driver):
    worker = Worker(store, driver, queue.Queue(), clock=lambda: NOW)
    worker.handle("subscribed", ("F1", {"hostname": "m", "port": 5050}))
    driver.calls.clear()
    return worker


def test_a_due_run_is_stored_before_its_accept_and_its_updates_before_their_acks(env):  # noqa: F811
    store, _, _ = env
    driver = JobDriver(store)
    worker = subscribed(store, driver)
    add_job(store)
    worker.tick()
    (run,) = store.list_job_runs("j")
    assert run["state"] == "queued" and ("revive",) in driver.calls
    worker.handle("offers", ([make_offer()],))
    accept = [c for c in driver.calls if c[0] == "accept"]
    assert accept == [("accept", [run["id"]], {run["id"]: "staging"})]
    worker.handle("status", (status(run["id"], "TASK_RUNNING"),))
    worker.handle("status", (status(run["id"], "TASK_FINISHED"),))
    assert [c for c in driver.calls if c[0] == "ack"] == [
        ("ack", run["id"], "running"), ("ack", run["id"], "succeeded")]
    assert store.get_job_status("j")["successCount"] == 1
    # on a new subscription the active runs are reconciled with the tasks
    add_job(store, name="k")
    worker.tick()
    worker.handle("offers", ([make_offer()],))
    driver.calls.clear()
    worker.handle("subscribed", ("F1", {"hostname": "m", "port": 5050}))
    (k,) = store.list_job_runs("k")
    assert ("reconcile", [k["id"]]) in driver.calls


def test_a_failing_jobs_round_does_not_cost_the_apps_their_round(env, monkeypatch):  # noqa: F811
    store, _, _ = env
    driver = JobDriver(store)
    worker = subscribed(store, driver)
    put_app(store, instances=1)

    def broken(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(worker.jobs, "_tick", broken)
    worker.tick()
    assert ("revive",) in driver.calls  # the app's launch still asked for offers


def test_a_store_without_job_documents_leaves_jobs_off(tmp_path):
    from scheduler.sqlite_state import open_state

    real = open_state(str(tmp_path / "s.db"))

    class AppsOnly:  # the StateStore interface alone, as another backend would have it
        def __getattr__(self, name):
            if "job" in name:
                raise AttributeError(name)
            return getattr(real, name)

    store = AppsOnly()
    driver = JobDriver(real)
    worker = subscribed(store, driver)
    assert not worker.jobs.enabled
    put_app(real, instances=1)
    worker.tick()
    worker.handle("offers", ([make_offer()],))
    assert [c[0] for c in driver.calls].count("accept") == 1
    real.close()


class Crash(BaseException):
    """The scheduler process dying (kill -9) at this point: nothing after it runs."""


def test_a_crash_between_recording_and_accept_launches_the_slot_once_after_restart(env):  # noqa: F811
    store, _, _ = env
    add_job(store)
    first = JobDriver(store)
    worker = subscribed(store, first)
    worker.tick()

    def dies(*a, **k):
        raise Crash()

    first.acceptOffers = dies
    try:
        worker.handle("offers", ([make_offer()],))
    except Crash:
        pass
    (run,) = store.list_job_runs("j")
    assert run["state"] == "staging"         # stored, but the ACCEPT never left

    second = JobDriver(store)                 # the restarted scheduler, same store
    restarted = subscribed_keeping(store, second)
    assert ("reconcile", [run["id"]]) in second.calls
    restarted.handle("status", (status(run["id"], "TASK_LOST", reason="REASON_RECONCILIATION",
                                       message="Reconciliation: Task is unknown"),))
    assert store.get_job_run(run["id"])["state"] == "queued"
    restarted.tick()
    assert len(store.list_job_runs("j")) == 1  # the slot is not recorded a second time
    restarted.handle("offers", ([make_offer()],))
    accepts = [c for c in second.calls if c[0] == "accept"]
    assert accepts == [("accept", [run["id"]], {run["id"]: "staging"})]
    restarted.tick()
    restarted.handle("offers", ([make_offer()],))
    assert [c for c in second.calls if c[0] == "accept"] == accepts  # once


def subscribed_keeping(store, driver):
    """A new worker subscribing; the driver's calls kept (the reconciliation is checked)."""
    worker = Worker(store, driver, queue.Queue(), clock=lambda: NOW)
    worker.handle("subscribed", ("F1", {"hostname": "m", "port": 5050}))
    return worker


def test_two_schedulers_planning_from_one_snapshot_record_a_slot_once(env, monkeypatch):  # noqa: F811
    """A leader change can leave two schedulers planning at once on one store: the status
    each round was computed from must still be the stored one, or that round records nothing."""
    from scheduler.jobs.runner import JobRunner

    store, _, _ = env
    add_job(store)
    snapshot = store.list_job_status()           # both plan from this (nothing yet)
    a, b = JobRunner(store, JobDriver(store)), JobRunner(store, JobDriver(store))
    assert a.tick(NOW) is True                   # A records the slot
    monkeypatch.setattr(store, "list_job_status", lambda: snapshot)
    assert b.tick(NOW) is False                  # B's write finds A's status: refused
    monkeypatch.undo()
    assert len(store.list_job_runs("j")) == 1
    b.tick(NOW + 0.25)                           # B plans again from the store: no new slot
    assert len(store.list_job_runs("j")) == 1


def test_a_batch_of_job_updates_is_one_write_before_its_acks(env, monkeypatch):  # noqa: F811
    """Updates that arrive together (RUNNING then FINISHED of one run, a failure with a retry
    of another) are applied in order and stored in one transaction, then acknowledged."""
    store, _, _ = env
    driver = JobDriver(store)
    worker = subscribed(store, driver)
    add_job(store)
    add_job(store, name="k", command="false", retries=1)
    worker.tick()
    worker.handle("offers", ([make_offer()],))
    j, k = store.list_job_runs("j")[0], store.list_job_runs("k")[0]
    writes = []
    real = store.record_jobs
    monkeypatch.setattr(store, "record_jobs", lambda **kw: (writes.append(kw), real(**kw)))
    driver.calls.clear()
    worker.on_status_batch([status(j["id"], "TASK_RUNNING"), status(k["id"], "TASK_RUNNING"),
                            status(j["id"], "TASK_FINISHED"), status(k["id"], "TASK_FAILED")])
    assert len(writes) == 1
    assert [c for c in driver.calls if c[0] == "ack"] == [
        ("ack", j["id"], "succeeded"), ("ack", k["id"], "failed"),
        ("ack", j["id"], "succeeded"), ("ack", k["id"], "failed")]
    assert store.get_job_status("j")["successCount"] == 1
    (retry, failed) = store.list_job_runs("k")
    assert failed["id"] == k["id"] and retry["attempt"] == 1 and retry["state"] == "queued"


class SendingLaterDriver(JobDriver):
    """A driver with `acceptOffersAsync` (as `scheduler.driver.ReconnectingDriver`): the call
    is only noted (with the run's stored state then), and its failure reported when told."""

    def acceptOffersAsync(self, offer_ids, operations, filters, on_failure,  # noqa: N802
                          on_sent=None):
        launched = [i["task_id"]["value"] for op in operations for i in op["launch"]["task_infos"]]
        stored = {tid: (self.store.get_job_run(tid) or {}).get("state") for tid in launched}
        self.calls.append(("accept-later", launched, stored))
        self.on_failure, self.on_sent = on_failure, on_sent


def test_job_runs_accept_is_sent_later_and_a_failed_one_queues_the_runs_again(env):  # noqa: F811
    store, _, _ = env
    driver = SendingLaterDriver(store)
    worker = subscribed(store, driver)
    add_job(store)
    worker.tick()
    (run,) = store.list_job_runs("j")
    worker.handle("offers", ([make_offer()],))
    # handed to the sender only once stored as staging; the worker did not wait for it
    assert [c for c in driver.calls if c[0].startswith("accept")] == [
        ("accept-later", [run["id"]], {run["id"]: "staging"})]
    driver.on_failure("HTTP 503")             # from a sender thread: an event for the worker
    kind, payload = worker.work.get_nowait()
    assert kind == "launch_failed" and payload[1] == (run["id"],)
    worker.handle(kind, payload)
    assert store.get_job_run(run["id"])["state"] == "queued"
    worker.handle("offers", ([make_offer()],))  # the next offer launches the same run
    assert [c for c in driver.calls if c[0].startswith("accept")][-1] == (
        "accept-later", [run["id"]], {run["id"]: "staging"})
    assert len(store.list_job_runs("j")) == 1


def test_an_offer_with_an_app_task_is_still_accepted_by_the_worker(env):  # noqa: F811
    store, _, _ = env
    driver = SendingLaterDriver(store)
    worker = subscribed(store, driver)
    put_app(store, instances=1)
    add_job(store)
    worker.tick()
    worker.handle("offers", ([make_offer(cpus=8, mem=4096)],))
    (call,) = [c for c in driver.calls if c[0].startswith("accept")]
    assert call[0] == "accept" and len(call[1]) == 2  # the app's task and the run, one call


def test_the_tick_comes_forward_to_a_slots_instant_and_to_a_runs_end(env):  # noqa: F811
    import time

    from scheduler.framework import JOBS_TICK_GAP_SECONDS, TICK_SECONDS

    store, _, _ = env
    driver = JobDriver(store)
    worker = subscribed(store, driver)
    add_job(store, schedule=f"R/{iso(NOW + 0.1)}/PT1H")  # idle, its slot 0.1 s from now
    worker.tick()
    assert store.list_job_runs("j") == [] and worker.jobs.next_round_at() == NOW + 0.1
    mono = time.monotonic()
    at = worker._tick_at(mono + TICK_SECONDS, mono)
    assert mono + 0.1 <= at <= time.monotonic() + 0.102  # at the slot, not a whole tick later
    add_job(store)                            # its slot passed: recorded now, and busy
    worker.tick()
    (run,) = store.list_job_runs("j")
    assert worker.jobs.next_round_at() == float("inf")  # waiting for the run to end
    worker.handle("status", (status(run["id"], "TASK_FINISHED"),))
    assert worker.jobs.next_round_at() <= NOW  # the run ended: a round is wanted now
    mono = time.monotonic()
    assert worker._tick_at(mono + TICK_SECONDS, mono) == mono + JOBS_TICK_GAP_SECONDS


def test_active_runs_after_a_round_are_what_the_store_lists(env):  # noqa: F811
    from scheduler.jobs.plan import Record, new_run
    from scheduler.jobs.runner import active_after

    store, _, _ = env
    store.write_jobs([{"name": n} for n in "abc"])
    old = [new_run("a", "schedule", NOW - 3, NOW), new_run("b", "schedule", NOW - 2, NOW),
           dict(new_run("c", "schedule", NOW - 1, NOW), state="running")]
    store.record_jobs(runs=old)
    before = store.list_job_runs(active=True)
    records = (Record(runs=(dict(before[0], killRequested=True),        # c: still active
                            new_run("a", "manual", NOW, NOW, suffix="m1"))),
               Record(runs=(dict(new_run("b", "schedule", NOW - 2, NOW), state="killed",
                                 active=False),)),                       # b: ended
               Record(runs=(new_run("c", "schedule", NOW + 1, NOW),), deleted_runs=(
                   old[0]["id"],)))                                      # a's first: gone
    for record in records:
        store.record_jobs(runs=record.runs, delete_runs=record.deleted_runs)
    assert active_after(before, records) == store.list_job_runs(active=True)


def test_an_offer_kept_for_the_next_slot_launches_it_without_a_revive(env):  # noqa: F811
    store, _, _ = env
    clock = [NOW]
    driver = SendingLaterDriver(store)
    worker = Worker(store, driver, queue.Queue(), clock=lambda: clock[0])
    worker.handle("subscribed", ("F1", {"hostname": "m", "port": 5050}))
    add_job(store, schedule=f"R/{iso(NOW - 0.5)}/PT1S")
    worker.tick()
    (first,) = store.list_job_runs("j")
    driver.calls.clear()
    a, b = make_offer(offer_id="o-a", agent_id="a1"), make_offer(offer_id="o-b", agent_id="a2")
    worker.handle("offers", ([a, b],))
    launches = [c for c in driver.calls if c[0] == "accept-later"]
    assert launches == [("accept-later", [first["id"]], {first["id"]: "staging"})]
    assert "decline" not in driver.kinds() and len(worker.held) == 1  # the next slot is 0.5 s off
    worker.handle("status", (status(first["id"], "TASK_FINISHED"),))
    clock[0] = NOW + 0.6                      # the next slot has come
    driver.calls.clear()
    worker.tick()
    (second,) = [r for r in store.list_job_runs("j") if r["id"] != first["id"]]
    assert [c for c in driver.calls if c[0] == "accept-later"] == [
        ("accept-later", [second["id"]], {second["id"]: "staging"})]
    assert "revive" not in driver.kinds() and len(worker.held) == 0
    # no slot due soon (the job disabled): a held offer is declined, not kept
    worker.held.keep([make_offer(offer_id="o-c")])
    store.write_jobs([dict(store.get_job("j"), disabled=True)])
    worker.handle("status", (status(second["id"], "TASK_FINISHED"),))
    worker.tick()
    assert ("decline", ["o-c"]) in driver.calls and len(worker.held) == 0


def test_held_offers_are_forgotten_when_rescinded_or_the_subscription_ends(env):  # noqa: F811
    store, _, _ = env
    driver = SendingLaterDriver(store)
    worker = subscribed(store, driver)
    worker.held.keep([make_offer(offer_id="o-1"), make_offer(offer_id="o-2")])
    worker.handle("rescinded", ({"value": "o-1"},))
    assert list(worker.held.offers) == ["o-2"]
    worker.handle("disconnected", ())
    assert len(worker.held) == 0 and "decline" not in driver.kinds()


def test_an_apps_revive_gives_the_held_offers_back_first(env):  # noqa: F811
    store, _, _ = env
    driver = SendingLaterDriver(store)
    worker = subscribed(store, driver)
    worker.held.keep([make_offer(offer_id="o-held")])
    put_app(store, instances=1)               # an app now wants a task: a REVIVE
    worker.tick()
    kinds = driver.kinds()
    assert ("decline", ["o-held"]) in driver.calls and "revive" in kinds
    assert kinds.index("decline") < kinds.index("revive") and len(worker.held) == 0


def test_a_jobs_round_between_ticks_launches_on_held_offers_without_the_apps_plan(env,  # noqa: F811
                                                                                 monkeypatch):
    store, _, _ = env
    driver = SendingLaterDriver(store)
    worker = subscribed(store, driver)
    worker.held.keep([make_offer(offer_id="o-held")])
    add_job(store)
    monkeypatch.setattr(store, "list_tasks", lambda: 1 / 0)  # the apps' snapshot: not read
    assert worker.jobs_round() is False       # recorded and launched: no REVIVE wanted
    (run,) = store.list_job_runs("j")
    assert [c for c in driver.calls if c[0] == "accept-later"] == [
        ("accept-later", [run["id"]], {run["id"]: "staging"})]
    assert "revive" not in driver.kinds()


def test_a_run_whose_accept_is_still_on_its_way_is_not_reconciled(env):  # noqa: F811
    """Reconciled before the master has its ACCEPT, the master answers TASK_LOST and the run
    would be queued and launched again under the same task id."""
    store, _, _ = env
    driver = SendingLaterDriver(store)
    worker = subscribed(store, driver)
    add_job(store)
    worker.tick()
    (run,) = store.list_job_runs("j")
    worker.handle("offers", ([make_offer()],))
    driver.calls.clear()
    worker.reconcile_all()
    assert ("reconcile", [run["id"]]) not in driver.calls
    driver.on_sent()                          # the master took the ACCEPT
    worker.reconcile_all()
    assert ("reconcile", [run["id"]]) in driver.calls


def test_an_offer_tried_and_kept_again_keeps_its_age(monkeypatch):
    from scheduler import held_offers

    clock = [100.0]
    monkeypatch.setattr(held_offers.time, "monotonic", lambda: clock[0])
    held = held_offers.HeldOffers()
    held.keep([make_offer(offer_id="o-1")])
    clock[0] += held_offers.HOLD_MAX_SECONDS / 2
    held.keep(held.take())                    # tried by a round, unused, kept again
    clock[0] += held_offers.HOLD_MAX_SECONDS / 2 + 0.01
    assert [o["id"]["value"] for o in held.expired(wanted=True)] == ["o-1"]
