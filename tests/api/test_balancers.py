"""`/v2/balancers` (the drain contract's registrations) and how the task's `leaving` mark and
`task_leaving_event` show: only to clients that ask for accessd's extras."""

from __future__ import annotations

import pytest
import requests

from tests.api.conftest import SseReader, make_task
from tests.fixtures_api import start_api
from tests.support import wait_until


@pytest.fixture(scope="module")
def api(state_path, store):
    proc, base = start_api(state_path, workers=1,
                           env={"ACCESSD_API_SSE_KEEPALIVE": "1", "ACCESSD_API_SSE_POLL": "0.05"})
    yield base
    proc.stop()


def test_register_renew_list_and_end(api):
    resp = requests.put(f"{api}/v2/balancers/lb-1", json={"drained": ["b", "a", "a"],
                                                          "ttlSeconds": 30}, timeout=5)
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    assert doc["name"] == "lb-1" and doc["drained"] == ["a", "b"] and doc["live"] is True
    assert doc["expiresAt"] > doc["renewedAt"]
    listed = requests.get(f"{api}/v2/balancers", timeout=5).json()["balancers"]
    assert [b["name"] for b in listed] == ["lb-1"]
    assert requests.get(f"{api}/v2/balancers/lb-1", timeout=5).json()["drained"] == ["a", "b"]
    assert requests.delete(f"{api}/v2/balancers/lb-1", timeout=5).status_code == 204
    assert requests.delete(f"{api}/v2/balancers/lb-1", timeout=5).status_code == 404
    assert requests.get(f"{api}/v2/balancers/lb-1", timeout=5).status_code == 404


@pytest.mark.parametrize("body,path", [
    ({"drained": "t1"}, "/drained"),
    ({"drained": [1]}, "/drained"),
    ({"ttlSeconds": 0}, "/ttlSeconds"),
    ({"ttlSeconds": True}, "/ttlSeconds"),
    ({"drainde": []}, "/drainde"),
])
def test_bad_registrations_are_400_and_store_nothing(api, body, path):
    resp = requests.put(f"{api}/v2/balancers/lb-bad", json=body, timeout=5)
    assert resp.status_code == 400, resp.text
    assert resp.json()["details"][0]["path"] == path
    assert requests.get(f"{api}/v2/balancers/lb-bad", timeout=5).status_code == 404


def test_leaving_is_an_accessd_extra(api, store):
    app = {"id": "/drain/x", "instances": 1, "cpus": 0.1, "mem": 32, "disk": 0,
           "versionInfo": {"lastConfigChangeAt": "2026-12-03T10:00:00.000Z"}}
    task = dict(make_task(app), leaving={"since": "2026-12-03T10:00:00.000Z",
                                         "reason": "scale down",
                                         "deadline": "2026-12-03T10:00:05.000Z"})
    store.upsert_task(task)
    plain = requests.get(f"{api}/v2/tasks", timeout=5).json()["tasks"]
    extra = requests.get(f"{api}/v2/tasks?embed=accessd", timeout=5).json()["tasks"]
    assert all("leaving" not in t for t in plain)
    assert [t["leaving"]["reason"] for t in extra if t["id"] == task["id"]] == ["scale down"]
    marathon = SseReader(f"{api}/v2/events")
    ours = SseReader(f"{api}/v2/events?embed=accessd")
    try:
        wait_until(lambda: marathon.status and ours.status, timeout=10)
        wait_until(lambda: marathon.comments and ours.comments, timeout=10)
        store.append_event("task_leaving_event", {"appId": "/drain/x", "taskId": task["id"]})
        store.append_event("app_terminated_event", {"appId": "/drain/x"})
        wait_until(lambda: any(e["event"] == "app_terminated_event" for e in marathon.events)
                   and any(e["event"] == "app_terminated_event" for e in ours.events),
                   timeout=10)
        assert [e["event"] for e in ours.events] == ["task_leaving_event",
                                                     "app_terminated_event"]
        assert [e["event"] for e in marathon.events] == ["app_terminated_event"]
    finally:
        marathon.close()
        ours.close()
        store.delete_task(task["id"])
