"""Service ports through the API (a real gunicorn on a real SQLite store): port 0 is assigned
from the configured range, unique across apps, kept by updates; a port another app has is a 422
naming it; an exhausted range is a 422 too; nothing is stored by a refused request."""

from __future__ import annotations

import pytest
import requests

from scheduler.sqlite_state import SQLiteStateStore
from tests.api.conftest import snapshot
from tests.fixtures_api import start_api

LOW, HIGH = 15000, 15005  # --local-port-min/--local-port-max: five ports, 15000-15004


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    state = tmp_path_factory.mktemp("ports") / "state.db"
    store = SQLiteStateStore(state)
    proc, base = start_api(state, workers=2, extra_args=[
        "--local-port-min", str(LOW), "--local-port-max", str(HIGH)])
    yield base, store
    proc.stop()
    store.close()


def app(app_id: str, *ports: int, **extra) -> dict:
    return {"id": app_id, "cmd": "sleep 100", "cpus": 0.1, "mem": 32, "instances": 1,
            "portDefinitions": [{"port": p, "name": f"p{i}"} for i, p in enumerate(ports)],
            **extra}


def ports_of(base: str, app_id: str) -> list[int]:
    body = requests.get(f"{base}/v2/apps{app_id}", timeout=10).json()["app"]
    assert "ports" not in body  # Marathon 1.10's shape: service ports in portDefinitions only
    return [d["port"] for d in body["portDefinitions"]]


def test_assigned_kept_and_refused(stack):
    base, store = stack
    r = requests.post(base + "/v2/apps", json=app("/sp/a", 0), timeout=10)
    assert r.status_code == 201, r.text
    assert r.json()["portDefinitions"][0]["port"] == LOW  # the answer carries it already
    r = requests.post(base + "/v2/apps", json=app("/sp/b", 0, 8080, 0), timeout=10)
    assert r.status_code == 201, r.text
    assert ports_of(base, "/sp/a") == [LOW]
    assert ports_of(base, "/sp/b") == [LOW + 1, 8080, LOW + 2]  # a fixed port is kept as asked
    # the default port definition (no portDefinitions at all) gets one too
    r = requests.post(base + "/v2/apps", json={"id": "/sp/default", "cmd": "sleep 1",
                                               "cpus": 0.1, "mem": 32}, timeout=10)
    assert r.status_code == 201, r.text
    assert ports_of(base, "/sp/default") == [LOW + 3]

    # a PUT of the same definition with port 0 keeps the port and is no config change
    before = requests.get(base + "/v2/apps/sp/a", timeout=10).json()["app"]
    r = requests.put(base + "/v2/apps/sp/a?force=true", json=app("/sp/a", 0), timeout=10)
    assert r.status_code == 200, r.text
    after = requests.get(base + "/v2/apps/sp/a", timeout=10).json()["app"]
    assert ports_of(base, "/sp/a") == [LOW]
    assert after["versionInfo"]["lastConfigChangeAt"] == before["versionInfo"]["lastConfigChangeAt"]
    # a scale keeps it; so does a restart
    r = requests.put(base + "/v2/apps/sp/a?force=true", json={"instances": 3}, timeout=10)
    assert r.status_code == 200, r.text
    r = requests.post(base + "/v2/apps/sp/a/restart?force=true", timeout=10)
    assert r.status_code == 200, r.text
    assert ports_of(base, "/sp/a") == [LOW]
    # more port definitions: the old port first, then the next free one
    r = requests.put(base + "/v2/apps/sp/a?force=true&partialUpdate=false",
                     json=app("/sp/a", 0, 0), timeout=10)
    assert r.status_code == 200, r.text
    assert ports_of(base, "/sp/a") == [LOW, LOW + 4]

    # a port another app has: 422 in Marathon's shape, naming that app; nothing changes
    held = snapshot(store)
    r = requests.post(base + "/v2/apps", json=app("/sp/c", 0, 8080), timeout=10)
    assert r.status_code == 422, r.text
    assert r.json() == {"message": "Object is not valid", "details": [
        {"path": "/portDefinitions/1/port",
         "errors": ["service port 8080 is already used by app /sp/b"]}]}
    r = requests.put(base + "/v2/apps/sp/a?force=true", json={"portDefinitions": [
        {"port": LOW + 1}]}, timeout=10)
    assert r.status_code == 422 and "/sp/b" in r.text, r.text
    # the range is used up: 422 saying so
    r = requests.post(base + "/v2/apps", json=app("/sp/c", 0), timeout=10)
    assert r.status_code == 422, r.text
    assert f"no free service port left in {LOW}-{HIGH - 1}" in r.text
    assert snapshot(store) == held

    # a deleted app's ports are free again
    r = requests.delete(base + "/v2/apps/sp/default?force=true", timeout=10)
    assert r.status_code == 200, r.text
    r = requests.post(base + "/v2/apps", json=app("/sp/c", 0), timeout=10)
    assert r.status_code == 201, r.text
    assert ports_of(base, "/sp/c") == [LOW + 3]
    # the legacy `ports` array is assigned the same way
    requests.delete(base + "/v2/apps/sp/c?force=true", timeout=10)
    doc = app("/sp/legacy")
    del doc["portDefinitions"]
    r = requests.post(base + "/v2/apps", json=dict(doc, ports=[0]), timeout=10)
    assert r.status_code == 201, r.text
    assert ports_of(base, "/sp/legacy") == [LOW + 3]
