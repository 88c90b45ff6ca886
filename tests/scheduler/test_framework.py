"""The worker's ordering guarantees, against a real SQLite store and a driver that records calls
(and, on ACKNOWLEDGE, what the store held at that moment). The real driver and master are
exercised by the integration tests; this pins the rules that are hard to observe from outside:
framework id first, store before acknowledge, kill unknown tasks, SUPPRESS/REVIVE transitions."""

from __future__ import annotations

import queue

import pytest

from scheduler import taskstate
from scheduler.framework import AccessdScheduler, Worker
from scheduler.spec import format_time, parse_app
from scheduler.sqlite_state import SQLiteStateStore, open_state

NOW = 1_795_000_000.0
V1 = "2026-11-24T06:00:00.000Z"


class RecordingDriver:
    framework_id = "F1"

    def __init__(self, store):
        self.store = store
        self.calls: list[tuple] = []

    def reconcileTasks(self, tasks):
        self.calls.append(("reconcile", [t["task_id"]["value"] for t in tasks]))

    def acknowledgeStatusUpdate(self, status):
        task = self.store.get_task(status["task_id"]["value"])
        self.calls.append(("ack", status["task_id"]["value"], task and task["state"]))

    def killTask(self, task_id):
        self.calls.append(("kill", task_id["value"]))

    def reviveOffers(self, roles=()):
        self.calls.append(("revive",))

    def suppressOffers(self, roles=()):
        self.calls.append(("suppress",))

    def acceptOffers(self, offer_ids, operations, filters=None):
        launched = [i["task_id"]["value"] for op in operations for i in op["launch"]["task_infos"]]
        self.calls.append(("accept", launched,
                           [e["eventType"] for _, e in self.store.events_since(0)]))

    def declineOffer(self, offer_ids, filters=None):
        self.calls.append(("decline", [o["value"] for o in offer_ids]))

    def kinds(self):
        return [c[0] for c in self.calls]


@pytest.fixture
def env(tmp_path):
    store = open_state(str(tmp_path / "state.db"))
    driver = RecordingDriver(store)
    worker = Worker(store, driver, queue.Queue(), clock=lambda: NOW)
    yield store, driver, worker
    store.close()


def put_app(store, instances=1, app_id="/a"):
    doc = parse_app({"id": app_id, "cmd": "sleep 600", "cpus": 0.1, "mem": 16,
                     "instances": instances, "backoffSeconds": 2, "backoffFactor": 2}).to_json()
    doc["version"] = V1
    doc["versionInfo"] = {"lastScalingAt": V1, "lastConfigChangeAt": V1}
    dep = {"id": f"d-{app_id}", "version": V1, "affectedApps": [app_id], "status": "succeeded",
           "steps": [], "currentStep": 1, "totalSteps": 1, "currentActions": []}
    store.apply_app_change(app_id, doc, dep)


def put_task(store, n=1, state="TASK_RUNNING", app_id="/a"):
    doc = {"id": f"a.{n:032x}", "appId": app_id, "host": "agent1", "slaveId": "A1",
           "agentId": "A1", "ipAddresses": [], "ports": [31000], "servicePorts": [],
           "stagedAt": format_time(NOW - 100), "startedAt": None, "version": V1,
           "state": state, "healthy": None, "healthCheckResults": [], "message": None,
           "reason": None, "attributes": {}, "resources": {}, "killRequested": False}
    store.upsert_task(doc)
    return doc


def status(task_id, state, **extra):
    return {"task_id": {"value": task_id}, "state": state, "uuid": "dXVpZA==",
            "agent_id": {"value": "A1"}, **extra}


def test_callbacks_only_enqueue_and_never_raise():
    work: queue.Queue = queue.Queue()
    sched = AccessdScheduler(work)
    sched.registered(None, {"value": "F1"}, {"hostname": "m", "port": 5050})
    sched.statusUpdate(None, status("a.1", "TASK_RUNNING"))
    sched.resourceOffers(None, [{"id": {"value": "o1"}}])
    assert [work.get_nowait()[0] for _ in range(3)] == ["subscribed", "status", "offers"]
    broken = AccessdScheduler(None)  # put() fails: the callback still returns
    broken.statusUpdate(None, status("a.1", "TASK_RUNNING"))


def test_subscribe_stores_framework_id_then_reconciles_explicitly_then_implicitly(env):
    store, driver, worker = env
    t = put_task(store)
    worker.handle("subscribed", ("F1", {"hostname": "127.0.0.1", "port": 5050}))
    assert store.get_framework_id() == "F1"
    assert driver.calls == [("reconcile", [t["id"]]), ("reconcile", [])]
    events = [e for _, e in store.events_since(0)]
    assert events[0]["eventType"] == "scheduler_registered_event"
    assert events[0]["frameworkId"] == "F1"


def test_status_is_stored_before_it_is_acknowledged(env):
    store, driver, worker = env
    t = put_task(store, state="TASK_STAGING")
    worker.handle("status", (status(t["id"], "TASK_RUNNING"),))
    assert driver.calls == [("ack", t["id"], "TASK_RUNNING")]
    assert store.get_task(t["id"])["startedAt"] == format_time(NOW)


def test_running_update_for_unknown_task_kills_it_and_acknowledges(env):
    store, driver, worker = env
    worker.handle("status", (status("a.ffff", "TASK_RUNNING"),))
    assert driver.calls == [("kill", "a.ffff"), ("ack", "a.ffff", None)]


def test_failure_removes_task_delays_app_and_records_last_failure(env):
    store, driver, worker = env
    put_app(store)
    t = put_task(store)
    worker.handle("status", (status(t["id"], "TASK_FAILED", message="exit 1"),))
    assert store.get_task(t["id"]) is None
    assert driver.calls == [("ack", t["id"], None)]
    st = store.get_app_status("/a")
    assert st["consecutiveFailures"] == 1 and st["delay"]["seconds"] == 2
    assert st["lastTaskFailure"]["taskId"] == t["id"]
    assert st["lastTaskFailure"]["message"] == "exit 1"
    types = [e["eventType"] for _, e in store.events_since(0)]
    assert "status_update_event" in types


def test_tick_kills_surplus_marks_it_and_suppresses(env):
    store, driver, worker = env
    put_app(store, instances=0)
    t = put_task(store)
    worker.subscribed = True
    worker.tick()
    assert ("kill", t["id"]) in driver.calls
    assert store.get_task(t["id"])["killRequested"] is True
    assert driver.kinds().count("suppress") == 1
    driver.calls.clear()
    worker.tick()  # nothing new: no second kill, no second SUPPRESS
    assert driver.calls == []
    # the kill lands: the task goes away and is not a failure
    worker.handle("status", (status(t["id"], taskstate.KILLED),))
    assert store.get_task(t["id"]) is None
    assert (store.get_app_status("/a") or {}).get("consecutiveFailures", 0) == 0


def test_revive_when_demand_appears_or_grows_only(env):
    store, driver, worker = env
    worker.subscribed = True
    worker.suppressed = True
    put_app(store, instances=2)
    worker.tick()
    assert driver.kinds() == ["revive"]
    worker.tick()
    assert driver.kinds() == ["revive"]  # same demand: let the refuse filter work
    store.request_kills([], scale=False)  # unrelated write
    put_app(store, instances=3, app_id="/b")
    worker.tick()
    assert driver.kinds() == ["revive", "revive"]


def test_operator_kill_request_is_carried_out_and_completed(env):
    store, driver, worker = env
    put_app(store, instances=1)
    t = put_task(store)
    store.request_kills([t["id"]], scale=False)
    worker.subscribed = True
    worker.tick()
    assert ("kill", t["id"]) in driver.calls
    worker.handle("status", (status(t["id"], taskstate.KILLED),))
    assert store.pending_kill_requests() == []


def test_waiting_no_offers_after_a_while(env):
    store, driver, worker = env
    put_app(store, instances=1)
    worker.subscribed = True
    worker.tick()
    assert (store.get_app_status("/a") or {}).get("waiting") is None
    worker.clock = lambda: NOW + 10
    worker.last_round = 0.0  # as if the safety-net period had passed
    worker.tick()
    assert store.get_app_status("/a")["waiting"]["reason"] == "no offers"


def test_full_round_only_when_something_changed(env):
    store, driver, worker = env
    put_app(store, instances=1)
    worker.subscribed = True
    worker.tick()
    assert driver.kinds() == ["revive"]
    t = put_task(store)  # observed state only: no desired change, no event
    store.upsert_task(dict(t, appId="/gone"))
    worker.tick()
    assert driver.kinds() == ["revive"]  # not planned again yet
    put_app(store, instances=0, app_id="/b")  # an API write: planned at the next tick
    worker.tick()
    assert ("kill", t["id"]) in driver.calls


def test_command_line_and_framework_info():
    from scheduler.main import framework_info, parse_args

    args = parse_args(["--master", "127.0.0.1:5050", "--state", "/tmp/s.db"])
    info = framework_info(args, None)
    assert info["failover_timeout"] == 604800 and info["checkpoint"] is True
    assert info["name"] == "accessd" and info["role"] == "*" and "id" not in info
    assert args.refuse_seconds == 5 and args.executor_python
    args = parse_args(["--master", "zk://h:2181/mesos", "--state", "s", "--role", "r",
                       "--failover-timeout", "60", "--principal", "p", "--secret", "s"])
    info = framework_info(args, "F9")
    assert info["id"] == {"value": "F9"}  # pymesos re-subscribes with it
    assert info["principal"] == "p" and info["role"] == "r" and info["failover_timeout"] == 60
    with pytest.raises(SystemExit):
        parse_args(["--master", "m", "--state", "s", "--principal", "p"])  # no secret


class RacingStore(SQLiteStateStore):
    """A real store where the API cancels a deployment just before the worker's update of it
    lands (the race the worker must survive: it listed the deployment while still running)."""

    def update_deployment(self, deployment):
        if self.get_deployment(deployment["id"])["status"] == "running":
            self.cancel_deployment(deployment["id"])  # the API's DELETE /v2/deployments/{id}
        return super().update_deployment(deployment)


@pytest.mark.parametrize("kind", ["scale", "delete"])
def test_stale_deployment_update_appends_no_events(tmp_path, kind):
    from scheduler.deployments import plan_deployment

    store = RacingStore(tmp_path / "state.db")
    try:
        put_app(store, instances=1)
        app = store.get_app("/a")
        if kind == "scale":
            put_task(store)  # the one instance, running: the scale is done at the next round
            dep = plan_deployment(app, dict(app, instances=1), now=V1, kind="scale")
            store.apply_app_change("/a", app, dep)
        else:  # no task left: the delete is done at the next round
            dep = plan_deployment(app, None, now=V1, kind="delete")
            store.apply_app_change("/a", None, dep)
        before = store.latest_event_id()
        worker = Worker(store, RecordingDriver(store), queue.Queue(), clock=lambda: NOW)
        worker.subscribed = True
        worker.tick()
        assert store.get_deployment(dep["id"])["status"] == "cancelled"  # the API's word stands
        types = [e["eventType"] for _, e in store.events_since(before)]
        assert not {"deployment_step_success", "deployment_success",
                    "app_terminated_event"} & set(types), types
    finally:
        store.close()


def test_deployment_update_that_lands_appends_its_events(env):
    from scheduler.deployments import plan_deployment

    store, driver, worker = env
    put_app(store, instances=1)
    put_task(store)
    app = store.get_app("/a")
    dep = plan_deployment(app, dict(app), now=V1, kind="scale")
    store.apply_app_change("/a", app, dep)
    before = store.latest_event_id()
    worker.subscribed = True
    worker.tick()
    assert store.get_deployment(dep["id"])["status"] == "succeeded"
    types = [e["eventType"] for _, e in store.events_since(before)]
    assert types == ["deployment_step_success", "deployment_success"]


def test_launch_announces_task_staging_after_the_accept(env):
    from tests.scheduler.builders import make_offer

    store, driver, worker = env
    put_app(store, instances=2)
    worker.subscribed = True
    worker.handle("offers", ([make_offer(ports=[(31000, 31010)])],))
    accepts = [c for c in driver.calls if c[0] == "accept"]
    assert len(accepts) == 1 and len(accepts[0][1]) == 2
    assert "status_update_event" not in accepts[0][2]  # the document first, the news after
    events = [e for _, e in store.events_since(0) if e["eventType"] == "status_update_event"]
    assert [e["taskId"] for e in events] == accepts[0][1]
    for event in events:
        doc = store.get_task(event["taskId"])
        assert event["taskStatus"] == "TASK_STAGING" and event["appId"] == "/a"
        assert event["host"] == doc["host"] and event["ports"] == doc["ports"]
        assert event["version"] == V1 and event["slaveId"] == doc["slaveId"]


def test_failed_accept_announces_nothing(env):
    from tests.scheduler.builders import make_offer

    store, driver, worker = env

    def broken(*args, **kwargs):
        raise RuntimeError("master gone")

    driver.acceptOffers = broken
    put_app(store, instances=1)
    worker.subscribed = True
    worker.handle("offers", ([make_offer()],))
    assert store.list_tasks() == []
    assert [e for _, e in store.events_since(0) if e["eventType"] == "status_update_event"] == []


def test_accept_that_crossed_a_master_failover_is_one_warning(env, caplog):
    # Found by bench/chaos.py: an ACCEPT sent as the master restarted got 403 "Framework is
    # not subscribed"; its tasks were forgotten (right) with an ERROR and a traceback.
    from tests.scheduler.builders import make_offer

    store, driver, worker = env

    def refused(*args, **kwargs):
        raise RuntimeError("Failed to send request 403: b'Framework is not subscribed'\n"
                           "b'{\"type\": \"ACCEPT\"}'")

    driver.acceptOffers = refused
    put_app(store, instances=1)
    worker.subscribed = True
    with caplog.at_level("INFO", logger="accessd.scheduler"):
        worker.handle("offers", ([make_offer()],))
    assert store.list_tasks() == []
    (line,) = [r for r in caplog.records if "ACCEPT of offer" in r.getMessage()]
    assert line.levelname == "WARNING" and line.exc_info is None
    assert "crossed a master change (Failed to send request 403: b'Framework is not " \
           "subscribed')" in line.getMessage()


class ResettingStore(SQLiteStateStore):
    """A real store where the API resets an app's delay (`DELETE /v2/queue/{id}/delay`, i.e.
    `request_delay_reset`) right before the worker's `reset_at`-th app-status write lands: after
    the worker read the status that write was computed from. No threads, no sleeps."""

    def __init__(self, path, reset_at):
        super().__init__(path)
        self.reset_at = reset_at
        self.writes = 0
        self.request = None
        self.overwrite = None  # what the write that followed the reset stored

    def put_app_status(self, app_id, status, *, delay_reset=None):
        self.writes += 1
        if self.writes == self.reset_at:
            self.request = self.request_delay_reset("/a")  # what api/queue.py does
            self.overwrite = status
        super().put_app_status(app_id, status, delay_reset=delay_reset)


def delayed(store, failures=3):
    """/a delayed after `failures` failures, with a stale waiting reason a round would clear."""
    store.put_app_status("/a", {
        "appId": "/a", "delay": {"until": format_time(NOW + 8), "seconds": 8},
        "waiting": {"reason": "no offers", "since": format_time(NOW - 9), "count": 1},
        "lastTaskFailure": {"taskId": "a.1", "version": V1, "state": "TASK_FAILED"},
        "consecutiveFailures": failures, "updatedAt": format_time(NOW - 1)})


def settle_rounds(worker, store, rounds=4):
    for _ in range(rounds):
        worker.dirty = True
        worker.tick()
    assert store.pending_delay_resets() == []


def test_a_status_round_cannot_undo_a_delay_reset_made_meanwhile(tmp_path):
    # write 1 is the test's own setup; 2 is the round's status write (it clears the waiting
    # reason), computed from the delayed status it read before the reset
    store = ResettingStore(tmp_path / "state.db", reset_at=2)
    try:
        put_app(store, instances=1)
        delayed(store)
        worker = Worker(store, RecordingDriver(store), queue.Queue(), clock=lambda: NOW)
        worker.subscribed = True
        worker.tick()
        settle_rounds(worker, store)
        # the reset did land between a read and a write, and that write held the old delay
        assert store.request is not None and store.overwrite["delay"] is not None
        status = store.get_app_status("/a")
        assert status["delay"] is None and status["consecutiveFailures"] == 0, status
        assert status["delayResetAt"] == store.request["requestedAt"]
        assert status["lastTaskFailure"]["taskId"] == "a.1"  # the last failure stays on record
        assert worker.make_plan(NOW).need_for("/a") == 1  # the app launches again
    finally:
        store.close()


@pytest.mark.parametrize("reset_at", [2])
def test_a_failure_write_cannot_undo_a_delay_reset_made_meanwhile(tmp_path, reset_at):
    # The failure itself is recorded by the status batch's own transaction, which reads the
    # pending reset inside it (test_a_failure_after_a_reset_request_counts_from_zero): no
    # window there. Write 2 is the round after it, computed from the status it read before.
    store = ResettingStore(tmp_path / "state.db", reset_at)
    try:
        put_app(store, instances=1)
        delayed(store)
        t = put_task(store)
        worker = Worker(store, RecordingDriver(store), queue.Queue(), clock=lambda: NOW)
        worker.subscribed = True
        worker.handle("status", (status(t["id"], "TASK_FAILED", message="exit 1"),))
        settle_rounds(worker, store)
        assert store.request is not None and store.overwrite["delay"] is not None
        got = store.get_app_status("/a")
        assert got["delay"] is None and got["consecutiveFailures"] == 0, got
        assert got["delayResetAt"] == store.request["requestedAt"]
        assert got["lastTaskFailure"]["taskId"] == t["id"]
    finally:
        store.close()


def test_a_failure_after_a_reset_request_counts_from_zero(env):
    store, driver, worker = env
    put_app(store, instances=1)
    delayed(store)
    worker.subscribed = True
    t = put_task(store)
    request = store.request_delay_reset("/a")  # pending: no round has carried it out yet
    worker.handle("status", (status(t["id"], "TASK_FAILED", message="exit 1"),))
    got = store.get_app_status("/a")
    # the failure's write folded the reset in and consumed it: one failure, the first delay
    assert got["consecutiveFailures"] == 1 and got["delay"]["seconds"] == 2, got
    assert got["delayResetAt"] == request["requestedAt"]
    assert store.pending_delay_resets() == []
    worker.tick()  # nothing left to reset: the new failure stands
    assert store.get_app_status("/a")["consecutiveFailures"] == 1


def test_a_reset_request_is_carried_out_by_the_next_round(env):
    store, driver, worker = env
    put_app(store, instances=1)
    delayed(store)
    worker.subscribed = True
    worker.tick()
    assert worker.make_plan(NOW).need_for("/a") == 0  # delayed
    generation = store.desired_generation()
    store.request_delay_reset("/a")
    assert store.desired_generation() > generation  # so the next tick is a full round
    worker.tick()
    assert store.pending_delay_resets() == []
    got = store.get_app_status("/a")
    assert got["delay"] is None and got["consecutiveFailures"] == 0
    assert ("revive",) in driver.calls  # demand appeared: offers wanted again


def test_a_round_prunes_the_event_log_to_its_newest_events(env, monkeypatch):
    store, _, worker = env
    monkeypatch.setattr("scheduler.periodic_round.EVENTS_KEPT", 5)
    for n in range(12):
        store.append_event("api_post_event", {"n": n})
    worker.handle("subscribed", ("F1", {"hostname": "127.0.0.1", "port": 5050}))
    worker.tick()
    kept = [e for _, e in store.events_since(0)]
    assert len(kept) == 5
    assert kept[-1] == store.events_since(store.latest_event_id() - 1)[0][1]  # the newest stay
    store.append_event("api_post_event", {"n": 12})
    worker.dirty = True
    worker.tick()  # within the period: no second prune
    assert len(store.events_since(0)) == 6


def test_a_round_prunes_finished_deployments_to_the_newest(env, monkeypatch):
    from tests.scheduler.state_docs import app_doc, dep

    store, _, worker = env
    monkeypatch.setattr("scheduler.periodic_round.FINISHED_DEPLOYMENTS_KEPT", 3)
    store.apply_app_change("/p", app_doc("/p", instances=0), None)
    for n in range(8):   # each forced change supersedes the one before
        store.apply_app_change("/p", app_doc("/p", instances=0), dep(f"p{n}", "/p"),
                               force=True)
    store.cancel_deployment("p7")
    worker.handle("subscribed", ("F1", {"hostname": "127.0.0.1", "port": 5050}))
    worker.tick()
    left = {d["id"]: d["status"] for d in store.list_deployments(active_only=False)}
    assert left == {"p5": "superseded", "p6": "superseded", "p7": "cancelled"}


@pytest.mark.parametrize("message,level,logged", [
    # pymesos between connections, and a call that crossed a master failover (seen in a test)
    ("Not connected yet", "WARNING", "master connection changing while handling tick"),
    ("Failed to send request 403: b'Framework is not subscribed'\nb'{\"type\": \"SUPPRESS\"}'",
     "WARNING", "master connection changing while handling tick"),
    ("Failed to send request 400: b'Bad call'\nb'{\"type\": \"SUPPRESS\"}'",
     "ERROR", "the master refused a call while handling tick: Failed to send request 400"),
])
def test_a_call_refused_by_pymesos_is_logged_without_a_traceback(env, caplog, message, level,
                                                                  logged):
    store, driver, worker = env

    def refused(roles=()):
        raise RuntimeError(message)

    driver.suppressOffers = refused
    worker.subscribed = True
    with caplog.at_level("WARNING", logger="accessd.scheduler"):
        worker._guard("tick", worker.tick)  # nothing waits: the round SUPPRESSes
    records = [r for r in caplog.records if r.name == "accessd.scheduler"]
    assert [(r.levelname, r.exc_info) for r in records] == [(level, None)]
    assert records[0].getMessage().startswith(logged)


def test_an_unexpected_error_in_a_round_is_logged_with_its_traceback(env, caplog):
    store, driver, worker = env

    def broken(roles=()):
        raise RuntimeError("a bug")

    driver.suppressOffers = broken
    worker.subscribed = True
    with caplog.at_level("WARNING", logger="accessd.scheduler"):
        worker._guard("tick", worker.tick)
    (record,) = [r for r in caplog.records if r.name == "accessd.scheduler"]
    assert record.levelname == "ERROR" and record.exc_info is not None


def test_a_rounds_kills_are_stored_in_one_transaction_before_any_is_sent(env, monkeypatch):
    store, driver, worker = env
    put_app(store, instances=0)
    tasks = [put_task(store, n) for n in range(1, 6)]
    transactions = []
    real_transact = store.transact

    def transact(plan):
        def recording(reader):
            txn, result = plan(reader)
            transactions.append([op.key for op in txn.ops if op.kind == "tasks"])
            return txn, result
        return real_transact(recording)

    def kill(task_id):  # what the store holds when each KILL goes out
        driver.calls.append(("kill", task_id["value"],
                             all(store.get_task(t["id"])["killRequested"] for t in tasks)))

    monkeypatch.setattr(store, "transact", transact)
    monkeypatch.setattr(driver, "killTask", kill)
    worker.subscribed = True
    worker.tick()
    kills = [c for c in driver.calls if c[0] == "kill"]
    assert sorted(k[1] for k in kills) == sorted(t["id"] for t in tasks)
    assert all(k[2] is True for k in kills)  # every one stored before the first was sent
    assert [sorted(t) for t in transactions if t] == [sorted(t["id"] for t in tasks)]


def test_no_kill_is_sent_when_the_store_refuses_the_round(env, monkeypatch):
    from scheduler.state import StoreUnavailable

    store, driver, worker = env
    put_app(store, instances=0)
    tasks = [put_task(store, n) for n in range(1, 4)]

    def refuse(plan):
        raise StoreUnavailable("no quorum")

    monkeypatch.setattr(store, "transact", refuse)
    worker.subscribed = True
    worker._guard("tick", worker.tick)
    assert "kill" not in driver.kinds()
    monkeypatch.undo()
    worker.dirty = True
    worker.tick()  # the next round carries them out
    assert sorted(c[1] for c in driver.calls if c[0] == "kill") == sorted(t["id"] for t in tasks)
