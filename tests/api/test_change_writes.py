"""The write path of app changes (issue 15: cheaper scale PUTs, still one transaction): a change,
its events and its version commit together; concurrent writers of several processes all land."""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import threading
from pathlib import Path

import falcon.testing
import pytest

from api import changes
from api.app import ApiConfig, create_app
from scheduler.spec import merge_patch
from scheduler.sqlite_state import SQLiteStateStore
from tests.support import container_ids, wait_until

APP = {"id": "/w/app", "cmd": "sleep 100", "cpus": 0.1, "mem": 32, "instances": 1}


@pytest.fixture()
def client_and_store(tmp_path: Path):
    store = SQLiteStateStore(tmp_path / "state.db")
    client = falcon.testing.TestClient(create_app(ApiConfig(state_path="unused"), store))
    yield client, store, tmp_path / "state.db"
    store.close()


def _running_tasks(store: SQLiteStateStore, app_id: str, n: int) -> list[str]:
    ids = [f"{app_id.strip('/').replace('/', '_')}.{k}" for k in range(n)]
    for tid in ids:
        store.upsert_task({"id": tid, "appId": app_id, "state": "TASK_RUNNING",
                           "stagedAt": "2026-12-03T00:00:00.000Z", "version": "v"})
    return ids


def test_killing_and_scaling_tasks_of_several_apps_is_one_change(client_and_store) -> None:
    """`POST /v2/tasks/delete?scale=true` with tasks of two apps: one transaction and one
    deployment plan, answered in Marathon's shape; an app locked by a running deployment
    refuses all of it (before, each app was its own transaction: the first stayed scaled)."""
    client, store, _ = client_and_store
    for app_id in ("/w/a", "/w/b"):
        assert client.simulate_post("/v2/apps", json=dict(APP, id=app_id, instances=3)
                                    ).status_code == 201
    a, b = _running_tasks(store, "/w/a", 3), _running_tasks(store, "/w/b", 3)
    for dep in store.list_deployments(active_only=True):
        store.update_deployment(dict(dep, status="succeeded"))
    assert client.simulate_put("/v2/apps/w/b", json={"instances": 4}).status_code == 200
    before = (store.get_app("/w/a"), store.pending_kill_requests(), store.latest_event_id())
    r = client.simulate_post("/v2/tasks/delete", params={"scale": "true"},
                             json={"ids": [a[0], b[0]]})
    assert r.status_code == 409, r.text
    assert (store.get_app("/w/a"), store.pending_kill_requests(),
            store.latest_event_id()) == before

    r = client.simulate_post("/v2/tasks/delete", params={"scale": "true", "force": "true"},
                             json={"ids": [a[0], a[1], b[0]]})
    assert r.status_code == 200, r.text
    assert set(r.json) == {"deploymentId", "version"}
    assert r.headers["Marathon-Deployment-Id"] == r.json["deploymentId"]
    assert [store.get_app(i)["instances"] for i in ("/w/a", "/w/b")] == [1, 3]
    assert {k["taskId"] for k in store.pending_kill_requests()} == {a[0], a[1], b[0]}
    [plan] = client.simulate_get("/v2/deployments").json
    assert plan["id"] == r.json["deploymentId"]
    assert sorted(plan["affectedApps"]) == ["/w/a", "/w/b"]
    assert {store.list_app_versions(i)[0] for i in ("/w/a", "/w/b")} == {r.json["version"]}


def test_a_scale_and_its_events_are_one_transaction(client_and_store) -> None:
    client, store, path = client_and_store
    assert client.simulate_post("/v2/apps", json=APP).status_code == 201
    before = store.latest_event_id()
    r = client.simulate_put("/v2/apps/w/app", params={"force": "true"}, json={"instances": 3})
    assert r.status_code == 200
    events = store.events_since(before)
    assert [e["eventType"] for _, e in events] == ["api_post_event", "deployment_info"]
    assert events[0][1]["appDefinition"]["instances"] == 3
    assert events[1][1]["plan"]["id"] == r.json["deploymentId"]
    # Events that cannot be stored: the change is not stored either (before, the app was
    # committed first and its events appended after, so it stood without them).
    conn = sqlite3.connect(path)
    conn.execute("CREATE TRIGGER no_events BEFORE INSERT ON events "
                 "BEGIN SELECT RAISE(ABORT, 'events refused'); END")
    conn.commit()
    r = client.simulate_put("/v2/apps/w/app", params={"force": "true"}, json={"instances": 5})
    assert r.status_code >= 500
    assert store.get_app("/w/app")["instances"] == 3
    # ...nor its version (one transaction with the change on SQLite).
    assert len(store.list_app_versions("/w/app")) == 2
    assert store.get_app_version("/w/app", store.list_app_versions("/w/app")[0]) == \
        store.get_app("/w/app")
    assert {d["id"] for d in store.list_deployments(active_only=False)} == {
        e["plan"]["id"] for _, e in store.events_since(0) if e["eventType"] == "deployment_info"}
    conn.execute("DROP TRIGGER no_events")
    conn.commit()
    conn.close()


def _refuse(path: Path, name: str, when: str) -> sqlite3.Connection:
    """A trigger refusing `when` on the version history: the failure a change meets at its
    version write (a full disk, a killed process) made repeatable."""
    conn = sqlite3.connect(path)
    conn.execute(f"CREATE TRIGGER {name} BEFORE {when} ON app_versions "
                 "BEGIN SELECT RAISE(ABORT, 'history refused'); END")
    conn.commit()
    return conn


def test_a_delete_and_its_history_removal_are_one_transaction(client_and_store) -> None:
    client, store, path = client_and_store
    assert client.simulate_post("/v2/apps", json=APP).status_code == 201
    versions = store.list_app_versions("/w/app")
    conn = _refuse(path, "keep_history", "DELETE")
    r = client.simulate_delete("/v2/apps/w/app", params={"force": "true"})
    assert r.status_code >= 500
    # before: the app was deleted first and its history after, so it stood without its app
    assert store.get_app("/w/app") is not None
    assert store.list_app_versions("/w/app") == versions
    conn.execute("DROP TRIGGER keep_history")
    conn.commit()
    conn.close()
    r = client.simulate_delete("/v2/apps/w/app", params={"force": "true"})
    assert r.status_code == 200
    assert store.get_app("/w/app") is None and store.list_app_versions("/w/app") == []


@pytest.mark.parametrize(("route", "left"), [("/v2/tasks/delete", 2),
                                             ("/v2/apps/w/app/tasks/{}", 2),
                                             ("/v2/apps/w/app/tasks", 0)])
def test_a_scale_by_kills_and_its_version_are_one_transaction(client_and_store, route,
                                                              left) -> None:
    client, store, path = client_and_store
    assert client.simulate_post("/v2/apps", json=dict(APP, instances=3)).status_code == 201
    ids = [f"w_app.{n}" for n in range(3)]
    for tid in ids:
        store.upsert_task({"id": tid, "appId": "/w/app", "state": "TASK_RUNNING",
                           "stagedAt": "2026-12-03T00:00:00.000Z", "version": "v"})
    app = store.get_app("/w/app")
    before = store.latest_event_id()

    def kill(task_id: str) -> falcon.testing.Result:
        params = {"scale": "true", "force": "true"}
        if route == "/v2/tasks/delete":
            return client.simulate_post(route, params=params, json={"ids": [task_id]})
        return client.simulate_delete(route.format(task_id), params=params)  # .../tasks: all

    conn = _refuse(path, "no_versions", "INSERT")
    assert kill(ids[0]).status_code >= 500
    # before: the app was scaled first and its version written after, so it stood without it
    assert store.get_app("/w/app") == app
    assert store.pending_kill_requests() == [] and store.latest_event_id() == before
    conn.execute("DROP TRIGGER no_versions")
    conn.commit()
    conn.close()
    r = kill(ids[0])
    assert r.status_code == 200
    scaled = store.get_app("/w/app")
    assert scaled["instances"] == left and scaled["version"] == r.json["version"]
    assert store.get_app_version("/w/app", store.list_app_versions("/w/app")[0]) == scaled
    events = [e for _, e in store.events_since(before)]
    assert [e["eventType"] for e in events] == ["api_post_event", "deployment_info"]
    assert events[0]["appDefinition"] == scaled


def _append_many(path: str, n: int, tag: str) -> None:
    store = SQLiteStateStore(path)
    try:
        threads = [threading.Thread(target=lambda k=k: [store.append_event(tag, {"k": k, "i": i})
                                                      for i in range(n)]) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        store.close()


def test_writers_of_several_processes_and_threads_all_land(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    SQLiteStateStore(path).close()
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(path, 25, f"p{i}")) for i in range(2)]
    for p in procs:
        p.start()
    _append_many(path, 25, "main")
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = SQLiteStateStore(path)
    try:
        events = store.events_since(0, limit=10_000)
        ids = [i for i, _ in events]
        assert len(events) == 3 * 8 * 25 and ids == sorted(set(ids))
    finally:
        store.close()


# -- a scale patch is not validated again (api.changes.patched) -------------------------------------
DATA = Path(__file__).resolve().parent.parent / "data" / "marathon"
SCALED_APPS = [
    APP,
    {"id": "/w/ports", "cmd": "serve $PORT0 $PORT1", "instances": 2, "portDefinitions": [
        {"port": 0, "name": "http", "labels": {"VIP_0": "x"}}, {"port": 0, "protocol": "udp"}],
     "requirePorts": False, "env": {"A": "1"}, "labels": {"team": "t"},
     "healthChecks": [{"protocol": "HTTP", "path": "/", "portIndex": 0}],
     "constraints": [["hostname", "UNIQUE"]], "upgradeStrategy": {
         "minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.2}},
    {"id": "/w/docker", "container": {"type": "DOCKER", "docker": {"image": "busybox"},
                                      "portMappings": [{"containerPort": 80, "hostPort": 0}]},
     "networks": [{"mode": "container/bridge"}], "cpus": 0.2, "mem": 16},
    *(json.loads(p.read_text())["app"] for p in sorted(DATA.glob("app-export-*.json"))),
]


@pytest.mark.parametrize("definition", SCALED_APPS, ids=lambda d: d["id"])
def test_a_scale_stores_what_validating_the_whole_app_would(client_and_store,
                                                           definition: dict) -> None:
    client, store, _ = client_and_store
    assert client.simulate_post("/v2/apps", json=definition).status_code == 201
    old = store.get_app(definition["id"])
    for patch in ({"instances": 7}, {"instances": 0}, {"id": old["id"], "instances": 3}):
        full = changes.validated(merge_patch(changes.definition(old), patch))
        assert changes.patched(old, patch) == full
    r = client.simulate_put("/v2/apps" + old["id"], params={"force": "true"},
                            json={"instances": 4})
    assert r.status_code == 200
    new = store.get_app(old["id"])
    assert changes.definition(new) == dict(changes.definition(old), instances=4)
    assert new["versionInfo"]["lastConfigChangeAt"] == old["versionInfo"]["lastConfigChangeAt"]


@pytest.mark.parametrize("patch,status,instances", [
    ({"instances": -1}, 422, 1), ({"instances": "3"}, 422, 1), ({"instances": True}, 422, 1),
    ({"instances": 2.0}, 200, 2), ({"instances": 2.5}, 422, 1), ({"instances": None}, 200, 1),
    ({"id": "/w/other", "instances": 2}, 422, 1), ({"id": "w/app", "instances": 2}, 200, 2),
    ({"id": "/w/app/", "instances": 0}, 200, 0)])
def test_other_instance_patches_take_the_full_validation(client_and_store, patch: dict,
                                                          status: int, instances: int) -> None:
    client, store, _ = client_and_store
    assert client.simulate_post("/v2/apps", json=APP).status_code == 201
    r = client.simulate_put("/v2/apps/w/app", params={"force": "true"}, json=patch)
    assert r.status_code == status, r.text
    assert store.get_app("/w/app")["instances"] == instances


def _blocked_on_flock(pid: int, path: str) -> bool:
    """Whether process `pid` waits for a `flock` of `path` (a `->` line of /proc/locks)."""
    inode = os.stat(path).st_ino
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields and "FLOCK" in fields and str(pid) in fields \
                and any(f.endswith(f":{inode}") for f in fields):
            return True
    return False


def test_a_forked_child_has_its_own_turn_and_waits_for_its_parents(tmp_path: Path) -> None:
    """The writers' turns (scheduler.sqlite_writers) are per process: a child forked while a
    thread of its parent holds the parent's turn does not inherit it (a copy of a lock held by
    a thread the child does not have would never be released), and it waits for the parent's
    turn as any other process does (the flock of `<db>-writers`), writing the moment it ends."""
    path = str(tmp_path / "state.db")
    store = SQLiteStateStore(path)
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        # The turn alone at the fork: SQLite itself cannot fork inside a transaction (the
        # child inherits the process's lock bookkeeping), which the API never does.
        with store._writers.turn():
            inside.set()
            release.wait(30)
            store.append_event("parent", {})   # a write inside the held turn

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert inside.wait(10)
        # The child writes through the store object it inherited (as a forked worker would).
        child = multiprocessing.get_context("fork").Process(
            target=lambda: store.append_event("child", {}))
        child.start()
        wait_until(lambda: _blocked_on_flock(child.pid, path + "-writers"), timeout=10,
                   message="the child waiting for the parent's turn")
    finally:
        release.set()
        holder.join()
    child.join(10)   # well inside the 30 s past which a writer skips the queue
    if child.exitcode is None:
        child.kill()
        child.join()
    assert child.exitcode == 0
    assert [e["eventType"] for _, e in store.events_since(0)] == ["parent", "child"]
    store.close()


def test_a_scale_copies_the_app_once_and_changes_nothing_it_read(client_and_store) -> None:
    """The fast scale path shares the stored app's nested values (no copy per field): what the
    change stores and returns still owns its objects, and the app it read is left as it was
    (it is the deployment's `original`, stored as it was read)."""
    client, store, _ = client_and_store
    definition = dict(APP, env={"A": "1"}, labels={"l": "v"}, portDefinitions=[{"port": 0}])
    assert client.simulate_post("/v2/apps", json=definition).status_code == 201
    old = store.get_app("/w/app")
    as_read = json.dumps(old)
    new_json = changes.patched(old, {"instances": 4})
    req = falcon.testing.create_req(method="PUT", path="/v2/apps/w/app")
    change = changes.apply(store, req, "/w/app", old, new_json, force=True)
    assert json.dumps(old) == as_read
    assert change.app is not None and change.app["instances"] == 4
    assert not container_ids(change.app) & (container_ids(old) | container_ids(new_json))
    stored = store.get_app("/w/app")
    assert stored == change.app
    assert store.get_deployment(change.deployment["id"])["original"] == old
    change.app["env"]["A"] = "2"
    change.app["portDefinitions"][0]["port"] = 1
    assert json.dumps(old) == as_read and store.get_app("/w/app") == stored


class _RacedStore(SQLiteStateStore):
    """Commits `race` (a change by another writer) just before each transaction of its own:
    what lands between a request's read of the app and its write."""

    race: list = []

    def transact_with_versions(self, plan, keep):  # every app change's (one app or several)
        while self.race:
            self.race.pop(0)()
        return super().transact_with_versions(plan, keep)


def test_a_scale_keeps_a_change_committed_before_its_transaction(tmp_path: Path) -> None:
    """A scale is computed from the app as its transaction reads it: a definition change that
    commits between the request's arrival and its write stays (before, the API read the app
    first and the scale wrote back that older definition), and the answer and events are a
    scale's."""
    store = _RacedStore(tmp_path / "state.db")
    other = SQLiteStateStore(tmp_path / "state.db")
    try:
        client = falcon.testing.TestClient(create_app(ApiConfig(state_path="unused"), store))
        assert client.simulate_post("/v2/apps", json=APP).status_code == 201
        first = store.get_app("/w/app")
        changed = dict(first, cmd="sleep 200", version="2030-01-01T00:00:00.000Z",
                       versionInfo={"lastScalingAt": "2030-01-01T00:00:00.000Z",
                                    "lastConfigChangeAt": "2030-01-01T00:00:00.000Z"})
        store.race = [lambda: other.apply_app_change("/w/app", changed, None, force=True)]
        before = store.latest_event_id()
        r = client.simulate_put("/v2/apps/w/app", params={"force": "true"},
                                json={"instances": 3})
        assert r.status_code == 200, r.text
        now = store.get_app("/w/app")
        assert now["cmd"] == "sleep 200" and now["instances"] == 3
        assert now["versionInfo"]["lastConfigChangeAt"] == "2030-01-01T00:00:00.000Z"
        assert now["version"] == r.json["version"] > "2030-01-01T00:00:00.000Z"
        dep = store.get_deployment(r.json["deploymentId"])
        assert dep["kind"] == "scale" and dep["original"] == changed
        assert dep["target"]["instances"] == 3
        events = [e for _, e in store.events_since(before)]
        assert [e["eventType"] for e in events] == ["api_post_event", "deployment_info"]
        assert events[0]["appDefinition"] == now and events[1]["plan"] == dep
        assert store.get_app_version("/w/app", now["version"]) == now
    finally:
        other.close()
        store.close()


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_a_scale_of_a_missing_app_is_404_and_stores_nothing(client_and_store,
                                                            method: str) -> None:
    client, store, _ = client_and_store
    generation = store.desired_generation()
    r = client.simulate_request(method, "/v2/apps/w/none", params={"force": "true"},
                                json={"instances": 2})
    assert r.status_code == 404 and r.json["message"] == "App '/w/none' does not exist"
    assert store.desired_generation() == generation and store.list_deployments(active_only=False) == []


def test_a_forced_scale_supersedes_the_running_deployment_at_its_own_time(
        client_and_store) -> None:
    client, store, _ = client_and_store
    assert client.simulate_post("/v2/apps", json=APP).status_code == 201
    first = client.simulate_put("/v2/apps/w/app", params={"force": "true"}, json={"instances": 2})
    r = client.simulate_put("/v2/apps/w/app", json={"instances": 3})
    assert r.status_code == 409 and r.json["deployments"] == [{"id": first.json["deploymentId"]}]
    second = client.simulate_put("/v2/apps/w/app", params={"force": "true"},
                                 json={"instances": 3})
    assert second.status_code == 200
    old = store.get_deployment(first.json["deploymentId"])
    new = store.get_deployment(second.json["deploymentId"])
    assert old["status"] == "superseded" and old["finishedAt"] == new["createdAt"]
    assert old["message"] == f"superseded by deployment {new['id']}"
    assert [d["id"] for d in store.list_deployments()] == [new["id"]]


def test_a_patch_of_instances_scales_as_a_put_does(client_and_store) -> None:
    client, store, _ = client_and_store
    assert client.simulate_post("/v2/apps", json=APP).status_code == 201
    before = store.get_app("/w/app")
    r = client.simulate_patch("/v2/apps/w/app", params={"force": "true"}, json={"instances": 4})
    assert r.status_code == 200 and r.headers["Marathon-Deployment-Id"] == r.json["deploymentId"]
    after = store.get_app("/w/app")
    assert changes.definition(after) == dict(changes.definition(before), instances=4)
    assert after["version"] == r.json["version"]
    assert after["versionInfo"]["lastConfigChangeAt"] == before["versionInfo"][
        "lastConfigChangeAt"]
    assert store.get_deployment(r.json["deploymentId"])["kind"] == "scale"


@pytest.fixture()
def raced(tmp_path: Path):
    """A client with /w/app created, whose store commits `race(doc)` (another writer's
    change of the app; None deletes it) just before its next transaction."""
    store = _RacedStore(tmp_path / "state.db")
    other = SQLiteStateStore(tmp_path / "state.db")
    client = falcon.testing.TestClient(create_app(ApiConfig(state_path="unused"), store))
    assert client.simulate_post("/v2/apps", json=APP).status_code == 201

    def race(doc):
        store.race = [lambda: other.apply_app_change("/w/app", doc, None, force=True)]

    yield client, store, race
    other.close()
    store.close()


@pytest.mark.parametrize("request_made", [
    ("PATCH", "/v2/apps/w/app", {"cmd": "sleep 300"}),
    ("PUT", "/v2/apps/w/app", {"cmd": "sleep 300"}),
    ("PUT", "/v2/apps", [{"id": "/w/app", "cmd": "sleep 300"}]),
    ("PATCH", "/v2/apps", [{"id": "/w/app", "cmd": "sleep 300"}]),
])
def test_a_patch_is_merged_onto_the_app_its_transaction_reads(raced, request_made) -> None:
    """A partial update merged onto an app read before its transaction wrote back that older
    app: a scale committed in between was lost, and the deployment's `original` (what a
    rollback restores) was stale."""
    client, store, race = raced
    method, path, body = request_made
    scaled = dict(store.get_app("/w/app"), instances=7)
    race(scaled)
    r = client.simulate_request(method, path, params={"force": "true"}, json=body)
    assert r.status_code == 200, r.text
    now = store.get_app("/w/app")
    assert now["cmd"] == "sleep 300" and now["instances"] == 7
    dep = store.get_deployment(r.json["deploymentId"])
    assert dep["original"] == scaled and dep["kind"] == "update"


def test_a_group_scale_by_a_factor_scales_the_count_its_transaction_reads(raced) -> None:
    client, store, race = raced
    race(dict(store.get_app("/w/app"), instances=3))
    r = client.simulate_put("/v2/groups/w", params={"force": "true"}, json={"scaleBy": 2})
    assert r.status_code == 200, r.text
    assert store.get_app("/w/app")["instances"] == 6   # 3 x 2, not the 1 read before


def test_a_restart_keeps_a_definition_committed_before_its_transaction(raced) -> None:
    client, store, race = raced
    race(dict(store.get_app("/w/app"), cmd="sleep 400"))
    r = client.simulate_post("/v2/apps/w/app/restart", params={"force": "true"})
    assert r.status_code == 200, r.text
    assert store.get_app("/w/app")["cmd"] == "sleep 400"
    assert store.get_deployment(r.json["deploymentId"])["kind"] == "restart"


def test_a_patch_of_an_app_deleted_before_its_transaction_is_404(raced) -> None:
    client, store, race = raced
    race(None)
    r = client.simulate_patch("/v2/apps/w/app", params={"force": "true"},
                              json={"cmd": "sleep 300"})
    assert r.status_code == 404, r.text
    assert store.get_app("/w/app") is None
