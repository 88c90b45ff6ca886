"""The write path of app changes (issue 15: cheaper scale PUTs, still one transaction): a change,
its events and its version commit together; concurrent writers of several processes all land."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from pathlib import Path

import falcon.testing
import pytest

from api.app import ApiConfig, create_app
from scheduler.sqlite_state import SQLiteStateStore

APP = {"id": "/w/app", "cmd": "sleep 100", "cpus": 0.1, "mem": 32, "instances": 1}


@pytest.fixture()
def client_and_store(tmp_path: Path):
    store = SQLiteStateStore(tmp_path / "state.db")
    client = falcon.testing.TestClient(create_app(ApiConfig(state_path="unused"), store))
    yield client, store, tmp_path / "state.db"
    store.close()


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
