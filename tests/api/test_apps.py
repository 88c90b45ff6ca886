"""The app lifecycle through a real gunicorn on a real SQLite store: create, read, scale up and
down, patch, restart, conflicting changes and force, tasks and kills (task documents inserted as
the scheduler would write them), deployments (cancel and rollback), the queue and the delay
reset, delete, and the event stream showing every step."""

from __future__ import annotations

import copy
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from scheduler import backoff
from scheduler.spec import iso_now
from tests.api.conftest import SseReader, finish_deployments, make_task, snapshot
from tests.fixtures_api import start_api
from tests.support import REPO, wait_until

APP_ID = "/jpm/timeseries"
URL_ID = "/v2/apps/jpm/timeseries"
EXTRAS = {"embed": "accessd"}  # accessd's own fields (status label, waiting reason, ...)


@pytest.fixture(scope="module")
def api(state_path, store):
    proc, base = start_api(state_path, workers=2,
                           env={"ACCESSD_API_SSE_KEEPALIVE": "1", "ACCESSD_API_SSE_POLL": "0.05"})
    yield base
    proc.stop()


@pytest.fixture(scope="module")
def events(api):
    reader = SseReader(api + "/v2/events")
    yield reader
    reader.close()


def definition() -> dict:
    return json.loads((REPO / "examples" / "apps" / "timeseries.json").read_text())


def test_create_returns_201_with_location_deployment_and_events(api, store, events):
    assert events.status == 200 and events.content_type.startswith("text/event-stream")
    r = requests.post(api + "/v2/apps", json=definition(), timeout=10)
    assert r.status_code == 201, r.text
    dep_id = r.headers["Marathon-Deployment-Id"]
    assert r.headers["Location"].endswith(URL_ID)
    app = r.json()
    assert app["id"] == APP_ID and app["instances"] == 1 and app["cpus"] == 0.5
    assert app["deployments"] == [{"id": dep_id}] and app["tasksRunning"] == 0
    assert "status" not in app and "lastTaskFailure" not in app  # Marathon's fields only
    assert requests.get(api + URL_ID, params={"embed": "accessd"},
                        timeout=10).json()["app"]["status"] == "Deploying"
    stored = store.get_app(APP_ID)
    assert stored["version"] == stored["versionInfo"]["lastConfigChangeAt"]
    dep = store.get_deployment(dep_id)
    assert dep["status"] == "running" and dep["affectedApps"] == [APP_ID]
    assert [s["actions"][0]["action"] for s in dep["steps"]][0] == "StartApplication"
    # The stream shows the step: the API post and the deployment it started.
    posted = wait_until(lambda: events.of_type("api_post_event"), 10, message="api_post_event")
    assert posted[0]["appDefinition"]["id"] == APP_ID and posted[0]["uri"] == "/v2/apps"
    info = wait_until(lambda: [e for e in events.of_type("deployment_info")
                               if e["plan"]["id"] == dep_id], 10, message="deployment_info")
    assert info[0]["currentStep"]["actions"][0]["action"] == "StartApplication"


def test_duplicate_create_is_409_and_changes_nothing(api, store):
    before = snapshot(store)
    r = requests.post(api + "/v2/apps", json=definition(), timeout=10)
    assert r.status_code == 409 and "already exists" in r.json()["message"]
    assert snapshot(store) == before


def test_get_list_and_filters(api, store):
    r = requests.get(api + URL_ID, timeout=10)
    assert r.status_code == 200 and r.json()["app"]["id"] == APP_ID
    assert requests.get(api + URL_ID + "/", timeout=10).json()["app"]["id"] == APP_ID
    apps = requests.get(api + "/v2/apps", params={"id": "timeser"}, timeout=10).json()["apps"]
    assert [a["id"] for a in apps] == [APP_ID]
    assert requests.get(api + "/v2/apps", params={"id": "nope"}, timeout=10).json() == {"apps": []}
    assert len(requests.get(api + "/v2/apps", params={"label": "accessd.service"},
                            timeout=10).json()["apps"]) == 1
    assert requests.get(api + "/v2/apps", params={"label": "accessd.service==x"},
                        timeout=10).json()["apps"] == []
    assert requests.get(api + "/v2/apps/jpm/nope", timeout=10).status_code == 404


def test_conflicting_change_is_409_until_forced(api, store):
    running = [d["id"] for d in store.list_deployments()]
    assert running
    before = snapshot(store)
    r = requests.put(api + URL_ID, json={"instances": 3}, timeout=10)
    assert r.status_code == 409
    body = r.json()
    assert "locked by one or more deployments" in body["message"] and "force=true" in body["message"]
    assert body["deployments"] == [{"id": i} for i in running]
    assert snapshot(store) == before
    old_info = store.get_app(APP_ID)["versionInfo"]
    r = requests.put(api + URL_ID, params={"force": "true"}, json={"instances": 3}, timeout=10)
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"deploymentId", "version"}
    assert r.headers["Marathon-Deployment-Id"] == r.json()["deploymentId"]
    for dep_id in running:
        assert store.get_deployment(dep_id)["status"] == "superseded"
    app = store.get_app(APP_ID)
    assert app["instances"] == 3
    # A scale keeps the config version (running tasks stay current) and moves lastScalingAt.
    assert app["versionInfo"]["lastConfigChangeAt"] == old_info["lastConfigChangeAt"]
    assert app["versionInfo"]["lastScalingAt"] > old_info["lastScalingAt"]
    dep = store.get_deployment(r.json()["deploymentId"])
    assert dep["steps"][0]["actions"][0]["action"] == "ScaleApplication"
    assert dep["target"]["instances"] == 3


def test_scale_down_and_status_labels(api, store):
    finish_deployments(store)
    assert requests.get(api + URL_ID, params=EXTRAS, timeout=10).json()["app"]["status"] == "Running"
    r = requests.put(api + URL_ID, json={"instances": 1}, timeout=10)
    assert r.status_code == 200, r.text
    assert store.get_app(APP_ID)["instances"] == 1
    finish_deployments(store)
    r = requests.put(api + URL_ID, json={"instances": 0}, timeout=10)
    assert r.status_code == 200
    finish_deployments(store)
    assert requests.get(api + URL_ID, params=EXTRAS, timeout=10).json()["app"]["status"] == "Suspended"
    assert requests.put(api + URL_ID, json={"instances": 3}, timeout=10).status_code == 200
    finish_deployments(store)


def test_patch_changes_config_version(api, store):
    before = store.get_app(APP_ID)
    r = requests.patch(api + URL_ID, json={"cpus": 0.25, "env": {"A": "1"}}, timeout=10)
    assert r.status_code == 200, r.text
    app = store.get_app(APP_ID)
    assert app["cpus"] == 0.25 and app["env"] == {"A": "1"} and app["instances"] == 3
    assert app["versionInfo"]["lastConfigChangeAt"] > before["versionInfo"]["lastConfigChangeAt"]
    dep = store.get_deployment(r.json()["deploymentId"])
    assert dep["steps"][0]["actions"][0]["action"] == "RestartApplication"
    finish_deployments(store)
    # A full PUT of the same definition with other instances is a scale, not a restart.
    full = {k: v for k, v in app.items() if k not in ("version", "versionInfo")}
    full["instances"] = 2
    r = requests.put(api + URL_ID, json=full, timeout=10)
    assert r.status_code == 200
    after = store.get_app(APP_ID)
    assert after["versionInfo"]["lastConfigChangeAt"] == app["versionInfo"]["lastConfigChangeAt"]
    finish_deployments(store)
    # PUT merges a partial body (Marathon's default, partialUpdate=true) ...
    r = requests.put(api + URL_ID, json={"instances": 3, "labels": {"x": "y"}}, timeout=10)
    assert r.status_code == 200, r.text
    merged = store.get_app(APP_ID)
    assert merged["labels"] == {"x": "y"} and merged["cpus"] == 0.25 and merged["instances"] == 3
    assert merged["env"] == {"A": "1"} and merged["cmd"] == app["cmd"]
    finish_deployments(store)
    # ... and ?partialUpdate=false replaces the whole definition (which then needs a cmd)
    before = snapshot(store)
    r = requests.put(api + URL_ID, params={"partialUpdate": "false"}, json={"cpus": 0.5},
                     timeout=10)
    assert r.status_code == 422 and "cmd" in r.text
    assert snapshot(store) == before
    r = requests.put(api + URL_ID, params={"partialUpdate": "false"}, timeout=10,
                     json={"cmd": "sleep 100", "cpus": 0.5})
    assert r.status_code == 200, r.text
    replaced = store.get_app(APP_ID)
    assert replaced["cmd"] == "sleep 100" and replaced["env"] == {} and replaced["instances"] == 1
    assert replaced["labels"] == {}
    finish_deployments(store)
    # back to the full definition for the tests that follow
    r = requests.put(api + URL_ID, params={"partialUpdate": "false"},
                     json=dict(full, instances=3), timeout=10)
    assert r.status_code == 200, r.text
    finish_deployments(store)


def test_restart_bumps_config_version(api, store, events):
    before = store.get_app(APP_ID)
    r = requests.post(api + URL_ID + "/restart", timeout=10)
    assert r.status_code == 200, r.text
    dep_id = r.json()["deploymentId"]
    after = store.get_app(APP_ID)
    assert after["versionInfo"]["lastConfigChangeAt"] > before["versionInfo"]["lastConfigChangeAt"]
    assert after["instances"] == before["instances"] and after["cpus"] == before["cpus"]
    assert store.get_deployment(dep_id)["steps"][0]["actions"][0]["action"] == \
        "RestartApplication"
    wait_until(lambda: any(e["plan"]["id"] == dep_id for e in events.of_type("deployment_info")),
               10, message="restart's deployment_info")
    finish_deployments(store)


def test_tasks_views_and_kills(api, store):
    app = store.get_app(APP_ID)
    tasks = [make_task(app, host="127.0.1.1", port=31001),
             make_task(app, host="127.0.1.2", port=31002, healthy=False),
             make_task(app, host="127.0.1.2", port=31003, state="TASK_STAGING",
                       healthy=None)]
    for t in tasks:
        store.upsert_task(t)
    view = requests.get(api + URL_ID, params={"embed": "app.tasks"}, timeout=10).json()["app"]
    assert (view["tasksRunning"], view["tasksStaged"], view["tasksHealthy"],
            view["tasksUnhealthy"]) == (2, 1, 1, 1)
    shown = {t["id"]: t for t in view["tasks"]}
    assert set(shown) == {t["id"] for t in tasks}
    t0 = shown[tasks[0]["id"]]
    assert t0["host"] == "127.0.1.1" and t0["ports"] == [31001]
    assert t0["servicePorts"] == [10000]  # the app's assigned service port
    assert t0["ipAddresses"] == [{"ipAddress": "127.0.1.1", "protocol": "IPv4"}]
    assert t0["healthCheckResults"][0]["alive"] is True
    listed = requests.get(api + "/v2/apps", params={"embed": "apps.tasks"}, timeout=10).json()
    assert len(listed["apps"][0]["tasks"]) == 3
    assert "tasks" not in requests.get(api + "/v2/apps", timeout=10).json()["apps"][0]
    assert len(requests.get(api + URL_ID + "/tasks", timeout=10).json()["tasks"]) == 3
    running = requests.get(api + "/v2/tasks", params={"status": "running"}, timeout=10).json()
    assert {t["id"] for t in running["tasks"]} == {tasks[0]["id"], tasks[1]["id"]}
    staging = requests.get(api + "/v2/tasks", params={"status": "staging"}, timeout=10).json()
    assert [t["id"] for t in staging["tasks"]] == [tasks[2]["id"]]
    assert requests.get(api + "/v2/tasks", params={"status": "zombie"},
                        timeout=10).status_code == 400

    # Kill without scale: a kill request, instances unchanged (the scheduler replaces it).
    r = requests.delete(api + URL_ID + "/tasks/" + tasks[0]["id"], timeout=10)
    assert r.status_code == 200 and r.json()["task"]["id"] == tasks[0]["id"]
    assert store.pending_kill_requests()[-1]["taskId"] == tasks[0]["id"]
    assert store.pending_kill_requests()[-1]["scale"] is False
    assert store.get_app(APP_ID)["instances"] == 3

    # Kill with scale: instances drop by one, with a scale deployment.
    r = requests.delete(api + URL_ID + "/tasks/" + tasks[1]["id"], params={"scale": "true"},
                        timeout=10)
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"deploymentId", "version"}
    assert store.get_app(APP_ID)["instances"] == 2
    kill = [k for k in store.pending_kill_requests() if k["taskId"] == tasks[1]["id"]]
    assert kill and kill[0]["scale"] is True
    dep = store.get_deployment(r.json()["deploymentId"])
    assert dep["steps"][0]["actions"][0]["action"] == "ScaleApplication"
    assert dep["target"]["instances"] == 2
    finish_deployments(store)

    # Unknown task: 404, nothing recorded.
    before = snapshot(store)
    assert requests.delete(api + URL_ID + "/tasks/jpm_timeseries.nope",
                           timeout=10).status_code == 404
    r = requests.post(api + "/v2/tasks/delete", json={"ids": [tasks[2]["id"], "x.nope"]},
                      timeout=10)
    assert r.status_code == 404 and "x.nope" in r.json()["message"]
    assert snapshot(store) == before

    # Bulk kill by id, then all of an app's tasks on one host.
    r = requests.post(api + "/v2/tasks/delete", json={"ids": [tasks[2]["id"]]}, timeout=10)
    assert r.status_code == 200 and [t["id"] for t in r.json()["tasks"]] == [tasks[2]["id"]]
    assert tasks[2]["id"] in {k["taskId"] for k in store.pending_kill_requests()}
    extra = make_task(store.get_app(APP_ID), host="127.0.1.3", port=31004)
    store.upsert_task(extra)
    r = requests.delete(api + URL_ID + "/tasks", params={"host": "127.0.1.3",
                                                         "scale": "true"}, timeout=10)
    assert r.status_code == 200 and "deploymentId" in r.json()
    assert store.get_app(APP_ID)["instances"] == 1
    finish_deployments(store)
    # The scheduler would now complete the kills and drop the tasks.
    for t in (*tasks, extra):
        store.complete_kill_request(t["id"])
        store.delete_task(t["id"])


def test_deployments_list_cancel_and_rollback(api, store):
    r = requests.put(api + URL_ID, json={"instances": 4}, timeout=10)
    dep_id = r.json()["deploymentId"]
    listed = requests.get(api + "/v2/deployments", timeout=10).json()
    assert [d["id"] for d in listed] == [dep_id]
    assert listed[0]["affectedApps"] == [APP_ID] and listed[0]["totalSteps"] >= 1
    # force: just cancelled, the app keeps its new definition.
    r = requests.delete(api + f"/v2/deployments/{dep_id}", params={"force": "true"}, timeout=10)
    assert r.status_code == 202
    assert store.get_deployment(dep_id)["status"] == "cancelled"
    assert store.get_app(APP_ID)["instances"] == 4
    assert requests.delete(api + f"/v2/deployments/{dep_id}", timeout=10).status_code == 404
    assert requests.get(api + "/v2/deployments", timeout=10).json() == []

    # Without force: rolled back by a new deployment restoring the replaced app.
    before = store.get_app(APP_ID)
    r = requests.patch(api + URL_ID, json={"mem": 300, "instances": 5}, timeout=10)
    dep_id = r.json()["deploymentId"]
    assert store.get_app(APP_ID)["mem"] == 300
    r = requests.delete(api + f"/v2/deployments/{dep_id}", timeout=10)
    assert r.status_code == 200, r.text
    rollback = r.json()["deploymentId"]
    assert store.get_deployment(dep_id)["status"] == "superseded"
    assert store.get_deployment(rollback)["status"] == "running"
    restored = store.get_app(APP_ID)
    assert restored["mem"] == before["mem"] and restored["instances"] == 4
    assert restored["versionInfo"] == before["versionInfo"]
    assert requests.delete(api + "/v2/deployments/nope", timeout=10).status_code == 404
    finish_deployments(store)


def test_queue_and_delay_reset(api, store):
    until = (datetime.now(UTC) + timedelta(seconds=120)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    store.put_app_status(APP_ID, {
        "appId": APP_ID, "delay": {"until": until, "seconds": 120},
        "waiting": {"reason": "constraint hostname UNIQUE", "since": iso_now(), "count": 2},
        "lastTaskFailure": {"appId": APP_ID, "host": "127.0.1.1", "message": "exit 1",
                            "state": "TASK_FAILED", "taskId": "jpm_timeseries.x",
                            "timestamp": iso_now(), "version": "v", "slaveId": "s"},
        "consecutiveFailures": 3, "updatedAt": iso_now()})
    app = requests.get(api + URL_ID, params=EXTRAS, timeout=10).json()["app"]
    assert app["status"] == "Delayed" and app["lastTaskFailure"]["message"] == "exit 1"
    assert "lastUnusedOfferReason" not in requests.get(api + "/v2/queue",
                                                       timeout=10).json()["queue"][0]
    queue = requests.get(api + "/v2/queue", params=EXTRAS, timeout=10).json()["queue"]
    assert len(queue) == 1
    item = queue[0]
    assert item["app"]["id"] == APP_ID and item["count"] == 2
    assert 100 < item["delay"]["timeLeftSeconds"] <= 120 and item["delay"]["overdue"] is False
    assert item["lastUnusedOfferReason"] == "constraint hostname UNIQUE"
    before = store.get_app_status(APP_ID)
    generation = store.desired_generation()
    r = requests.delete(api + "/v2/queue/jpm/timeseries/delay", timeout=10)
    assert r.status_code == 204
    # The API records a request (desired state) and leaves the status to the scheduler, its
    # only writer, so no scheduler write computed from the old status can undo the reset.
    assert store.get_app_status(APP_ID) == before
    assert store.desired_generation() > generation
    [request] = store.pending_delay_resets()
    assert request["appId"] == APP_ID and request["requestedAt"]
    # The scheduler's part (framework.Worker): fold the request in, consume it with the write.
    now = time.time()
    store.put_app_status(APP_ID, backoff.apply_delay_reset(before, request, now),
                         delay_reset=request)
    assert store.pending_delay_resets() == []
    item = requests.get(api + "/v2/queue", params=EXTRAS, timeout=10).json()["queue"][0]
    assert item["delay"] == {"timeLeftSeconds": 0, "overdue": True}  # the delay is gone
    assert item["consecutiveFailures"] == 0 and item["count"] == 2  # still waiting for offers
    status = store.get_app_status(APP_ID)
    assert status["delay"] is None and status["delayResetAt"] == request["requestedAt"]
    assert status["lastTaskFailure"]["message"] == "exit 1"
    assert requests.get(api + URL_ID, params=EXTRAS, timeout=10).json()["app"]["status"] == "Waiting"
    generation = store.desired_generation()
    assert requests.delete(api + "/v2/queue/jpm/nope/delay", timeout=10).status_code == 404
    assert store.pending_delay_resets() == [] and store.desired_generation() == generation


def test_delete_app(api, store, events):
    r = requests.delete(api + URL_ID, timeout=10)
    assert r.status_code == 200, r.text
    dep = store.get_deployment(r.json()["deploymentId"])
    assert dep["steps"][0]["actions"][0]["action"] == "StopApplication"
    assert store.get_app(APP_ID) is None
    assert requests.get(api + URL_ID, timeout=10).status_code == 404
    assert requests.delete(api + URL_ID, timeout=10).status_code == 404
    wait_until(lambda: any(e["plan"]["id"] == dep["id"] for e in events.of_type("deployment_info")),
               10, message="delete's deployment_info")


def test_put_creates_and_event_stream_filters(api, store, events):
    filtered = SseReader(api + "/v2/events?event_type=deployment_info")
    try:
        doc = copy.deepcopy(definition())
        doc["id"] = "/jpm/other"
        r = requests.put(api + "/v2/apps/jpm/other", json=doc, timeout=10)
        assert r.status_code == 201 and r.headers["Location"].endswith("/v2/apps/jpm/other")
        dep_id = r.json()["deploymentId"]
        wait_until(lambda: any(e["plan"]["id"] == dep_id
                               for e in filtered.of_type("deployment_info")),
                   10, message="filtered stream's deployment_info")
        assert {e["event"] for e in filtered.events} == {"deployment_info"}
        # Keep-alive comments flow when nothing happens (1 s in this test server).
        wait_until(lambda: "keep-alive" in filtered.comments, 10, message="a keep-alive")
    finally:
        filtered.close()
    # Every accepted change so far shows in the unfiltered stream, in order, with ids.
    ids = [int(e["id"]) for e in events.events]
    assert ids == sorted(ids)
    posts = events.of_type("api_post_event")
    assert len(posts) >= 10
    assert events.error is None


def test_events_from_other_processes_and_resume(api, store, events):
    # The scheduler is another process: an event it appends reaches every open stream.
    store.append_event("scheduler_registered_event", {"frameworkId": "fw-1",
                                                      "master": "127.0.0.1:5050"})
    got = wait_until(lambda: events.of_type("scheduler_registered_event"), 10,
                     message="the other process's event")
    assert got[0]["frameworkId"] == "fw-1" and got[0]["eventType"] == "scheduler_registered_event"
    # A reconnecting client resumes after the last id it saw, missing nothing.
    last = int(events.events[-1]["id"])
    store.append_event("app_terminated_event", {"appId": "/gone"})
    resumed = SseReader(api + "/v2/events", headers={"Last-Event-ID": str(last - 1)})
    try:
        wait_until(lambda: len(resumed.events) >= 2, 10, message="the resumed events")
        assert [int(e["id"]) for e in resumed.events[:2]] == [last, last + 1]
        assert resumed.events[1]["event"] == "app_terminated_event"
    finally:
        resumed.close()


def test_app_list_never_stale(api, store):
    # GET /v2/apps answers come from a per-worker cache keyed by the store's change token: any
    # commit, by any process, must show in the very next answer.
    for i in range(5):
        listed = requests.get(api + "/v2/apps", params={"embed": "apps.tasks"}, timeout=10).json()
        app = next(a for a in listed["apps"] if a["id"] == "/jpm/other")
        assert len(app["tasks"]) == i
        store.upsert_task(make_task(store.get_app("/jpm/other"), port=32000 + i))
    before = requests.get(api + "/v2/apps", timeout=10).json()
    assert any(a["id"] == "/jpm/other" for a in before["apps"])
    r = requests.put(api + "/v2/apps/jpm/other?force=true", json={"instances": 7}, timeout=10)
    assert r.status_code == 200
    for _ in range(4):  # whichever worker answers
        after = requests.get(api + "/v2/apps", timeout=10).json()
        assert next(a for a in after["apps"] if a["id"] == "/jpm/other")["instances"] == 7
