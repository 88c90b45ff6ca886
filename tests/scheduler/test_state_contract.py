"""The state store contract: every backend (SQLite, ZooKeeper) passes the same tests.

The ZooKeeper backend runs against a real ZooKeeper server (Debian's `zookeeper` package, started
once for the module on a loopback port); each test gets its own root node.
"""

from __future__ import annotations

import threading
import uuid

import orjson
import pytest

from scheduler.deployment_plans import mark_part
from scheduler.state import (
    AppExists,
    AppNotFound,
    DeploymentConflict,
    StateError,
    StateStore,
)
from tests.scheduler.state_docs import app_doc, dep, task
from tests.support import wait_until


class Backend:
    """Opens stores of one backend on the same data (`open()` again: another process's view)."""

    def __init__(self, kind: str, request, tmp_path) -> None:
        self.kind = kind
        self.opened: list[StateStore] = []
        if kind == "sqlite":
            self.url = str(tmp_path / "state.db")
        else:
            zk = request.getfixturevalue("zookeeper")
            self.zk = zk
            self.url = zk.url(f"/t{uuid.uuid4().hex[:12]}") + "?session_timeout=4"

    def open(self) -> StateStore:
        from scheduler.stores import open_state

        store = open_state(self.url)
        self.opened.append(store)
        return store

    def close(self) -> None:
        for store in self.opened:
            try:
                store.close()
            except StateError:
                pass


@pytest.fixture(params=["sqlite", "zk"])
def backend(request, tmp_path):
    b = Backend(request.param, request, tmp_path)
    yield b
    b.close()


@pytest.fixture
def store(backend):
    return backend.open()


def test_framework_id(store):
    assert store.get_framework_id() is None
    store.set_framework_id("fw-1")
    assert store.get_framework_id() == "fw-1"
    store.set_framework_id(None)
    assert store.get_framework_id() is None


def test_integers_past_64_bits_come_back_exactly(backend):
    """orjson reads such an integer as a float (1e+25) and refuses to write one; both stores
    keep documents as they were given, in another process's view too."""
    store, other = backend.open(), backend.open()
    big, negative = 10**25, -(2**64)
    doc = dict(app_doc("/big"), backoffSeconds=big, labels={"n": "1"}, extra=[negative, 1.5])
    store.apply_app_change("/big", doc, dep("d1", "/big"), must_exist=False,
                           events=[{"eventType": "x", "value": big}])
    for reader in (store, other):
        got = reader.get_app("/big")
        assert got["backoffSeconds"] == big and type(got["backoffSeconds"]) is int
        assert got["extra"] == [negative, 1.5] and type(got["extra"][0]) is int
        assert [a["backoffSeconds"] for a in reader.list_apps()] == [big]
        assert [e["value"] for _, e in reader.events_since(0) if e["eventType"] == "x"] == [big]


def test_finished_deployments_are_pruned_to_the_newest(backend, monkeypatch):
    import scheduler.state as state_module

    monkeypatch.setattr(state_module, "PRUNE_CHUNK", 3)   # several transactions (ZooKeeper)
    store, other = backend.open(), backend.open()
    store.apply_app_change("/old", app_doc("/old"), dep("keeps-running", "/old"))
    store.apply_app_change("/p", app_doc("/p"), None)
    for n in range(8):   # each forced change supersedes the one before
        store.apply_app_change("/p", app_doc("/p", instances=n), dep(f"p{n}", "/p"), force=True)
    store.cancel_deployment("p7")
    assert store.prune_deployments(keep_finished=2) == 6
    expected = ["keeps-running", "p6", "p7"]
    assert [d["id"] for d in store.list_deployments(active_only=False)] == expected
    wait_until(lambda: [d["id"] for d in other.list_deployments(active_only=False)] == expected,
               10, message="the other store object to see the prune")
    assert other.get_deployment("p0") is None and store.prune_deployments(2) == 0
    with pytest.raises(DeploymentConflict):   # the running one still locks its app
        store.apply_app_change("/old", app_doc("/old", instances=2), dep("d-new", "/old"))


def test_apps_create_update_delete(store):
    g0 = store.desired_generation()
    store.apply_app_change("/b", app_doc("/b"), dep("d1", "/b"), must_exist=False)
    store.apply_app_change("/a", app_doc("/a"), dep("d2", "/a"), must_exist=False)
    assert [a["id"] for a in store.list_apps()] == ["/a", "/b"]
    assert store.get_app("/a") == app_doc("/a")
    assert store.get_app("/nope") is None
    g1 = store.desired_generation()
    assert g1 > g0
    with pytest.raises(AppExists):
        store.apply_app_change("/a", app_doc("/a"), dep("d3", "/a"), must_exist=False,
                               force=True)
    with pytest.raises(AppNotFound):
        store.apply_app_change("/c", app_doc("/c"), dep("d4", "/c"), must_exist=True)
    assert store.desired_generation() == g1
    assert store.get_deployment("d3") is None and store.get_deployment("d4") is None
    store.update_deployment(dict(dep("d2", "/a"), status="succeeded"))
    store.apply_app_change("/a", app_doc("/a", instances=3), dep("d5", "/a"), must_exist=True)
    assert store.get_app("/a")["instances"] == 3
    store.update_deployment(dict(dep("d5", "/a"), status="succeeded"))
    store.apply_app_change("/a", None, dep("d6", "/a"), must_exist=True)
    assert store.get_app("/a") is None
    assert store.desired_generation() > g1


def test_conflict_leaves_nothing(store):
    store.apply_app_change("/a", app_doc("/a"), dep("d1"))
    before = (store.get_app("/a"), store.list_deployments(active_only=False),
              store.desired_generation())
    with pytest.raises(DeploymentConflict) as info:
        store.apply_app_change("/a", app_doc("/a", instances=5), dep("d2"))
    assert info.value.deployment_ids == ["d1"]
    after = (store.get_app("/a"), store.list_deployments(active_only=False),
             store.desired_generation())
    assert after == before
    # other apps are not locked
    store.apply_app_change("/b", app_doc("/b"), dep("d3", "/b"))


def test_force_supersedes(store):
    store.apply_app_change("/a", app_doc("/a"), dep("d1"))
    store.apply_app_change("/a", app_doc("/a", instances=2), dep("d2"), force=True)
    old = store.get_deployment("d1")
    assert old["status"] == "superseded" and old["finishedAt"]
    assert "d2" in old["message"]
    assert [d["id"] for d in store.list_deployments()] == ["d2"]
    assert [d["id"] for d in store.list_deployments(active_only=False)] == ["d1", "d2"]
    assert store.get_app("/a")["instances"] == 2


def test_a_plans_conflict_names_the_plan_and_force_supersedes_all_of_it(store):
    """The deployments of one change of several apps are one plan (`planId`, the first's id):
    a conflict on any of its apps names the plan, and a forced change supersedes every running
    part of it (a part already finished stays as it finished)."""
    parts = [dep("p1", "/a"), dep("p2", "/b"), dep("p3", "/c")]
    for part in parts:
        mark_part(part, ["p1", "p2", "p3"])
    for part in parts:
        app_id = part["affectedApps"][0]
        store.apply_app_change(app_id, app_doc(app_id), part)
    store.update_deployment(dict(store.get_deployment("p3"), status="succeeded"))
    with pytest.raises(DeploymentConflict) as info:
        store.apply_app_change("/b", app_doc("/b", instances=2), dep("d9", "/b"))
    assert info.value.deployment_ids == ["p1"]
    store.apply_app_change("/b", app_doc("/b", instances=2), dep("d9", "/b"), force=True)
    statuses = {d["id"]: d["status"] for d in store.list_deployments(active_only=False)}
    assert statuses == {"p1": "superseded", "p2": "superseded", "p3": "succeeded",
                        "d9": "running"}
    assert "d9" in store.get_deployment("p1")["message"]
    assert store.get_app("/a")["instances"] == 1   # its definition stays


def test_conflict_by_any_affected_app(store):
    both = dict(dep("d1", "/a"), affectedApps=["/a", "/b"])
    store.apply_app_change("/a", app_doc("/a"), both)
    store.apply_app_change("/c", app_doc("/c"), dep("d2", "/c"))
    for app_id in ("/a", "/b"):
        with pytest.raises(DeploymentConflict) as info:
            store.apply_app_change(app_id, app_doc(app_id), dep("d3", app_id))
        assert info.value.deployment_ids == ["d1"]
    store.upsert_task(task("b.1", "/b"))
    with pytest.raises(DeploymentConflict) as info:
        store.request_kills(["b.1"], scale=True, deployment=dep("d3", "/c"))
    assert info.value.deployment_ids == ["d1", "d2"]  # oldest first
    # a final deployment no longer locks its apps
    store.update_deployment(dict(both, status="succeeded"))
    store.apply_app_change("/b", app_doc("/b"), dep("d4", "/b"))
    with pytest.raises(DeploymentConflict) as info:
        store.apply_app_change("/b", app_doc("/b"), dep("d5", "/b"))
    assert info.value.deployment_ids == ["d4"]


def test_deployment_updates_and_cancel(store):
    store.apply_app_change("/a", app_doc("/a"), dep("d1"))
    progressed = dict(dep("d1"), progress={"healthy": 1, "running": 1, "old": 0})
    store.update_deployment(progressed)
    assert store.get_deployment("d1")["progress"]["healthy"] == 1
    g = store.desired_generation()
    cancelled = store.cancel_deployment("d1")
    assert cancelled["status"] == "cancelled" and cancelled["finishedAt"]
    assert store.desired_generation() > g
    assert store.list_deployments() == []
    # a scheduler that has not seen the cancel yet does not revive it
    store.update_deployment(dict(progressed, status="running"))
    assert store.get_deployment("d1")["status"] == "cancelled"
    with pytest.raises(StateError):
        store.cancel_deployment("d1")
    with pytest.raises(StateError):
        store.cancel_deployment("missing")
    with pytest.raises(StateError):
        store.update_deployment(dep("missing"))


def test_kill_requests(store):
    store.apply_app_change("/a", app_doc("/a", instances=3), dep("d1"))
    store.update_deployment(dict(dep("d1"), status="succeeded"))
    for i in (1, 2, 3):
        store.upsert_task(task(f"a.{i}"))
    g = store.desired_generation()
    store.request_kills(["a.1"], scale=False)
    assert store.desired_generation() > g
    assert store.get_app("/a")["instances"] == 3
    # a.9 is unknown: recorded, but it does not count for the scale
    store.request_kills(["a.2", "a.1", "a.9"], scale=True, deployment=dep("d2", instances=99))
    app = store.get_app("/a")
    assert app["instances"] == 1  # a.1 was already requested, but it still counts for the scale
    pending = store.pending_kill_requests()
    assert [p["taskId"] for p in pending] == ["a.1", "a.2", "a.9"]
    assert pending[0]["scale"] is True and pending[1]["scale"] is True
    assert all(p["requestedAt"] for p in pending)
    assert app["versionInfo"]["lastScalingAt"] == "v"  # the deployment's version
    assert app["versionInfo"]["lastConfigChangeAt"] == "2026-11-24T06:00:00.000Z"
    assert store.get_deployment("d2")["target"]["instances"] == 1
    store.complete_kill_request("a.2")
    assert [p["taskId"] for p in store.pending_kill_requests()] == ["a.1", "a.9"]
    # instances never drop below zero
    store.update_deployment(dict(dep("d2"), status="succeeded"))
    store.request_kills(["a.1", "a.2", "a.3"], scale=True)
    assert store.get_app("/a")["instances"] == 0


def test_scaling_kills_of_several_apps_are_one_transaction(store):
    """`request_scaling_kills`: the tasks of two apps, each app's scale its own deployment,
    its version and its events; all stored together, or, one app locked, none."""
    for app_id in ("/a", "/b"):
        store.apply_app_change(app_id, app_doc(app_id, instances=3), dep(f"{app_id}0", app_id))
        store.update_deployment(dict(dep(f"{app_id}0", app_id), status="succeeded"))
    for i in (1, 2, 3):
        store.upsert_task(task(f"a.{i}", "/a"))
        store.upsert_task(task(f"b.{i}", "/b"))
    store.apply_app_change("/b", app_doc("/b", instances=3), dep("b-lock", "/b"))
    deps = [dict(dep("da", "/a", instances=9), version="2026-11-24T07:00:00.000Z"),
            dict(dep("db", "/b", instances=9), version="2026-11-24T07:00:00.000Z")]
    before = (store.get_app("/a"), store.pending_kill_requests(), store.latest_event_id())

    def events(app, deployment):
        return [{"eventType": "api_post_event", "appDefinition": app, "by": deployment["id"]}]
    with pytest.raises(DeploymentConflict) as info:
        store.request_scaling_kills(["a.1", "b.1"], deps, events=events, history_keep=3)
    assert info.value.deployment_ids == ["b-lock"]
    assert (store.get_app("/a"), store.pending_kill_requests(),
            store.latest_event_id()) == before
    stored = store.request_scaling_kills(["a.1", "a.2", "b.1"], deps, force=True,
                                         events=events, history_keep=3)
    assert {k: v["instances"] for k, v in stored.items()} == {"/a": 1, "/b": 2}
    assert stored == {"/a": store.get_app("/a"), "/b": store.get_app("/b")}
    assert [store.get_deployment(d)["target"]["instances"] for d in ("da", "db")] == [1, 2]
    assert store.get_deployment("b-lock")["status"] == "superseded"
    assert [store.list_app_versions(a)[0] for a in ("/a", "/b")] == [deps[0]["version"]] * 2
    assert [e["by"] for _, e in store.events_since(before[2])] == ["da", "db"]


def test_scale_kill_conflict_is_atomic(store):
    store.apply_app_change("/a", app_doc("/a", instances=3), dep("d1"))
    store.upsert_task(task("a.1"))
    g = store.desired_generation()
    with pytest.raises(DeploymentConflict):
        store.request_kills(["a.1"], scale=True, deployment=dep("d2"))
    assert store.pending_kill_requests() == []
    assert store.get_app("/a")["instances"] == 3
    assert store.get_deployment("d2") is None and store.desired_generation() == g
    store.request_kills(["a.1"], scale=True, deployment=dep("d2"), force=True)
    assert store.get_deployment("d1")["status"] == "superseded"
    assert store.get_app("/a")["instances"] == 2
    # plain kills never conflict (the scheduler replaces the task)
    store.request_kills(["a.2"], scale=False)


def test_tasks(store):
    store.upsert_task(task("b.2", "/b", staged="2026-11-24T06:00:02.000Z"))
    store.upsert_task(task("a.1", "/a", staged="2026-11-24T06:00:03.000Z"))
    store.upsert_task(task("b.1", "/b", staged="2026-11-24T06:00:01.000Z"))
    assert [t["id"] for t in store.list_tasks()] == ["b.1", "b.2", "a.1"]
    assert [t["id"] for t in store.list_tasks("/b")] == ["b.1", "b.2"]
    assert store.list_tasks("/c") == []
    updated = dict(task("b.1", "/b", staged="2026-11-24T06:00:01.000Z"), healthy=True)
    store.upsert_task(updated)
    assert store.get_task("b.1") == updated
    store.delete_task("b.1")
    assert store.get_task("b.1") is None
    store.delete_task("b.1")  # deleting twice is fine
    with pytest.raises(StateError):
        store.upsert_task({"appId": "/a"})


def test_task_records_follow_list_tasks_and_move_with_each_write(store):
    store.upsert_task(task("b.2", "/b", staged="2026-11-24T06:00:02.000Z"))
    store.upsert_task(task("a.1", "/a", staged="2026-11-24T06:00:03.000Z"))
    records = store.task_records()
    if records is None:  # a backend without revisions (SQLite): readers use list_tasks
        return
    assert [(i, a) for i, a, _, _ in records] == [("b.2", "/b"), ("a.1", "/a")]
    assert [orjson.loads(data) for *_, data in records] == store.list_tasks()
    before = {i: rev for i, _, rev, _ in records}
    store.upsert_task(dict(task("a.1", "/a", staged="2026-11-24T06:00:03.000Z"), healthy=True))
    after = {i: rev for i, _, rev, _ in store.task_records()}
    assert after["b.2"] == before["b.2"] and after["a.1"] != before["a.1"]
    store.delete_task("a.1")  # gone, then back with the version it had at first
    store.upsert_task(task("a.1", "/a", staged="2026-11-24T06:00:03.000Z"))
    again = {i: rev for i, _, rev, _ in store.task_records()}
    assert again["a.1"] not in (before["a.1"], after["a.1"])


def test_app_status(store):
    status = {"appId": "/a", "delay": None, "waiting": {"reason": "no offers", "since": "t",
                                                         "count": 1},
              "lastTaskFailure": None, "consecutiveFailures": 0, "updatedAt": "t"}
    assert store.get_app_status("/a") is None
    store.put_app_status("/a", status)
    store.put_app_status("/b", dict(status, appId="/b"))
    assert store.get_app_status("/a") == status
    assert sorted(store.list_app_status()) == ["/a", "/b"]
    store.delete_app_status("/b")
    assert list(store.list_app_status()) == ["/a"]


def test_delay_reset_requests(store):
    with pytest.raises(AppNotFound):
        store.request_delay_reset("/a")  # only for an app that exists; nothing recorded
    assert store.pending_delay_resets() == []
    store.apply_app_change("/a", app_doc("/a"), dep("d1"))
    store.apply_app_change("/b", app_doc("/b"), dep("d2", "/b"))
    g = store.desired_generation()
    first = store.request_delay_reset("/a")
    assert store.desired_generation() > g  # desired state: the scheduler notices it
    assert first["appId"] == "/a" and first["requestedAt"] and isinstance(first["seq"], int)
    b = store.request_delay_reset("/b")
    again = store.request_delay_reset("/a")  # replaces the pending one, now the newest
    assert again["seq"] > b["seq"] > first["seq"]
    assert store.pending_delay_resets() == [b, again]
    status = {"appId": "/a", "delay": None, "consecutiveFailures": 0}
    # a write that includes the older request consumes nothing: the newer one stays pending
    store.put_app_status("/a", status, delay_reset=first)
    assert store.pending_delay_resets() == [b, again]
    g = store.desired_generation()
    store.put_app_status("/a", status, delay_reset=again)  # observed state: no new generation
    assert store.pending_delay_resets() == [b] and store.desired_generation() == g
    assert store.get_app_status("/a") == status
    store.put_app_status("/b", dict(status, appId="/b"))  # a plain write consumes nothing
    assert store.pending_delay_resets() == [b]
    # deleting the app drops its request with it (one transaction)
    store.apply_app_change("/b", None, dep("d3", "/b"), force=True)
    assert store.pending_delay_resets() == []


def test_events(store):
    assert store.latest_event_id() == 0 and store.events_since(0) == []
    ids = [store.append_event("status_update_event", {"taskId": f"t{i}"}) for i in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5
    events = store.events_since(0)
    assert [e[0] for e in events] == ids
    first = events[0][1]
    assert first["eventType"] == "status_update_event" and first["taskId"] == "t0"
    assert first["timestamp"].endswith("Z")
    assert [e[0] for e in store.events_since(ids[1], limit=2)] == ids[2:4]
    assert store.latest_event_id() == ids[-1]
    payload = {"appId": "/a"}
    store.append_event("app_terminated_event", payload)
    assert payload == {"appId": "/a"}  # the caller's dict is not modified
    assert store.prune_events(keep=2) == 4
    assert [e[1]["eventType"] for e in store.events_since(0)] == ["status_update_event",
                                                                  "app_terminated_event"]
    assert store.append_event("x", {}) > ids[-1] + 1  # ids are never reused


def test_threads_share_one_store(store):
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(30):
                store.append_event("t", {"n": n, "i": i})
                store.upsert_task(task(f"a.{n}-{i}"))
                store.list_tasks("/a")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.events_since(0, limit=1000)) == 120
    assert len(store.list_tasks()) == 120


def test_update_deployment_reports_stale_updates(store):
    store.apply_app_change("/a", app_doc("/a"), dep("d1"))
    assert store.update_deployment(dict(dep("d1"), progress={"healthy": 1, "running": 1,
                                                              "old": 0})) is True
    store.cancel_deployment("d1")
    assert store.update_deployment(dict(dep("d1"), status="succeeded")) is False
    assert store.get_deployment("d1")["status"] == "cancelled"


def test_reopen_keeps_everything(backend):
    s = backend.open()
    s.set_framework_id("fw")
    s.apply_app_change("/a", app_doc("/a"), dep("d1"))
    s.request_kills(["a.1"], scale=False)
    s.upsert_task(task("a.1"))
    s.put_app_status("/a", {"appId": "/a"})
    eid = s.append_event("deployment_info", {"plan": {"id": "d1"}})
    gen = s.desired_generation()
    s.close()
    with pytest.raises(StateError):
        s.get_app("/a")
    s2 = backend.open()
    assert s2.get_framework_id() == "fw"
    assert s2.get_app("/a") == app_doc("/a")
    assert s2.get_deployment("d1")["status"] == "running"
    assert [k["taskId"] for k in s2.pending_kill_requests()] == ["a.1"]
    assert s2.get_task("a.1")["id"] == "a.1"
    assert s2.get_app_status("/a") == {"appId": "/a"}
    assert s2.latest_event_id() == eid
    assert s2.desired_generation() == gen


def test_a_write_is_seen_at_once_by_another_store(backend):
    """Another store on the same data (another process: an API worker, the scheduler) sees
    every write committed before its read began: no stale cache, no lost read-your-writes."""
    a, b = backend.open(), backend.open()
    assert b.list_apps() == []
    for i in range(20):
        a.apply_app_change(f"/x{i}", app_doc(f"/x{i}"), dep(f"d{i}", f"/x{i}"))
        assert b.get_app(f"/x{i}") == app_doc(f"/x{i}")
        b.upsert_task(task(f"x{i}.1", f"/x{i}"))
        assert a.get_task(f"x{i}.1")["appId"] == f"/x{i}"
        b.delete_task(f"x{i}.1")
        assert a.get_task(f"x{i}.1") is None
    assert a.desired_generation() == b.desired_generation()


def test_racing_writers_lose_no_update(backend):
    """Two stores (two API nodes) scale the same app down by kills at once, forced, many times:
    every kill counts exactly once (no lost update), and creates of one app have one winner."""
    a, b = backend.open(), backend.open()
    a.apply_app_change("/a", app_doc("/a", instances=40), None)
    for i in range(40):
        a.upsert_task(task(f"a.{i}"))
    errors: list[BaseException] = []

    def scale(store: StateStore, ids: range) -> None:
        try:
            for i in ids:
                store.request_kills([f"a.{i}"], scale=True, force=True,
                                    deployment=dep(f"k{i}", instances=0))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=scale, args=(a, range(0, 40, 2))),
               threading.Thread(target=scale, args=(b, range(1, 40, 2)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert a.get_app("/a")["instances"] == 0
    assert len(a.pending_kill_requests()) == 40
    running = [d["id"] for d in a.list_deployments()]
    assert len(running) == 1  # each forced scale superseded the one before

    outcomes: list[str] = []

    def create(store: StateStore, name: str) -> None:
        try:
            store.apply_app_change("/race", dict(app_doc("/race"), by=name), dep(f"r-{name}",
                                   "/race"), must_exist=False)
            outcomes.append("created")
        except (AppExists, DeploymentConflict):
            outcomes.append("refused")

    threads = [threading.Thread(target=create, args=(s, n)) for s, n in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["created", "refused"]
    winner = a.get_app("/race")["by"]
    assert [d["id"] for d in b.list_deployments() if d["id"].startswith("r-")] == [f"r-{winner}"]


def test_balancer_registrations_are_plain_documents(backend):
    """`accessd lb`'s registrations (scheduler.balancer_store): put replaces, another store
    sees them at once, delete says whether there was one; none is desired state."""
    store, other = backend.open(), backend.open()
    generation = store.desired_generation()
    assert store.list_balancers() == []
    store.put_balancer("lb-b", {"name": "lb-b", "drained": []})
    store.put_balancer("lb-a", {"name": "lb-a", "drained": ["t1"]})
    store.put_balancer("lb-a", {"name": "lb-a", "drained": ["t1", "t2"]})
    assert other.list_balancers() == [{"name": "lb-a", "drained": ["t1", "t2"]},
                                      {"name": "lb-b", "drained": []}]
    assert other.delete_balancer("lb-b") is True
    assert other.delete_balancer("lb-b") is False
    assert [b["name"] for b in store.list_balancers()] == ["lb-a"]
    assert store.desired_generation() == generation


def test_concurrent_creates_never_get_the_same_service_port(backend):
    """Two stores (two API nodes) create apps with port 0 at once: the assignment happens in
    the transaction that stores each app, so no two apps end up with one service port; an
    update keeps what the app had, and a port another app has is refused naming it."""
    from scheduler.service_ports import ServicePortConflict

    a, b = backend.open(), backend.open()

    def with_port(app_id: str, port: int = 0) -> dict:
        return dict(app_doc(app_id), portDefinitions=[{"port": port, "protocol": "tcp"}])

    errors: list[BaseException] = []

    def create(store: StateStore, prefix: str) -> None:
        try:
            for i in range(8):
                store.apply_app_change(f"/{prefix}{i}", with_port(f"/{prefix}{i}"), None,
                                       must_exist=False)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(s, p)) for s, p in ((a, "p"), (b, "q"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    ports = [app["portDefinitions"][0]["port"] for app in a.list_apps()]
    assert len(ports) == 16 and sorted(ports) == list(range(10000, 10016))
    kept = b.apply_app_change("/p3", dict(with_port("/p3"), instances=2), None, must_exist=True)
    assert kept["portDefinitions"][0]["port"] == a.get_app("/p3")["portDefinitions"][0]["port"]
    taken = a.get_app("/q0")["portDefinitions"][0]["port"]
    with pytest.raises(ServicePortConflict, match="/q0"):
        a.apply_app_change("/new", with_port("/new", taken), None, must_exist=False)
    assert a.get_app("/new") is None


def test_a_change_and_its_version_history_entry_commit_together(store, monkeypatch):
    # A second step after the change's transaction is where a killed process leaves a change
    # without its history entry (issue 16's worker-kill finding); there must be none.
    def second_step(*args, **kwargs):
        raise AssertionError("the version history written after the change's transaction")

    monkeypatch.setattr(store, "put_app_version", second_step)
    first = store.apply_app_change("/v", app_doc("/v"), dep("d1", "/v"), history_keep=3)
    assert store.list_app_versions("/v") == [first["version"]]
    assert store.get_app_version("/v", first["version"]) == first
    versions = [first["version"]]
    for n in range(2, 6):  # a new version each time, the history bounded to the newest 3
        doc = dict(app_doc("/v", instances=n), version=f"2026-12-03T00:00:0{n}.000Z")
        versions.append(store.apply_app_change("/v", doc, dep(f"d{n}", "/v"), force=True,
                                               history_keep=3)["version"])
    assert sorted(store.list_app_versions("/v")) == sorted(versions[-3:])


def _no_second_step(store, monkeypatch) -> None:
    """A history write after the change's transaction fails, as a process killed there would."""
    def second_step(*args, **kwargs):
        raise AssertionError("the version history written after the change's transaction")

    monkeypatch.setattr(store, "put_app_version", second_step)
    monkeypatch.setattr(store, "delete_app_versions", second_step)


def test_a_delete_and_its_history_removal_commit_together(store, monkeypatch):
    _no_second_step(store, monkeypatch)
    first = store.apply_app_change("/v", app_doc("/v"), dep("d1", "/v"), history_keep=3)
    store.apply_app_change("/w", app_doc("/w"), dep("d2", "/w"), history_keep=3)
    # a delete refused (a deployment locks the app) keeps the app and its history
    with pytest.raises(DeploymentConflict):
        store.apply_app_change("/v", None, dep("d3", "/v"), must_exist=True, history_keep=3)
    assert store.list_app_versions("/v") == [first["version"]]
    assert store.apply_app_change("/v", None, dep("d3", "/v"), must_exist=True, force=True,
                                  history_keep=3) is None
    assert store.get_app("/v") is None
    assert store.list_app_versions("/v") == []
    assert store.list_app_versions("/w") != []  # another app's history stays


def test_a_scale_by_kills_and_its_version_commit_together(store, monkeypatch):
    _no_second_step(store, monkeypatch)
    store.apply_app_change("/a", app_doc("/a", instances=3), dep("d1"), history_keep=3)
    store.update_deployment(dict(dep("d1"), status="succeeded"))
    for i in (1, 2, 3):
        store.upsert_task(task(f"a.{i}"))
    before = store.latest_event_id()
    scale = dict(dep("d2", instances=1), version="2026-11-24T07:00:00.000Z")
    stored = store.request_kills(["a.1", "a.2"], scale=True, deployment=scale, history_keep=3,
                                 events=lambda app: [{"eventType": "api_post_event",
                                                      "appDefinition": app}])
    assert stored == store.get_app("/a") and stored["instances"] == 1
    assert store.list_app_versions("/a")[0] == stored["version"] == scale["version"]
    assert store.get_app_version("/a", stored["version"]) == stored
    assert [e["appDefinition"] for _, e in store.events_since(before)] == [stored]
    # a refused scale writes neither the app, nor its version, nor its events
    with pytest.raises(DeploymentConflict):
        store.request_kills(["a.3"], scale=True, history_keep=3,
                            deployment=dict(dep("d3"), version="2026-11-24T08:00:00.000Z"))
    assert store.get_app("/a") == stored and len(store.list_app_versions("/a")) == 2
