"""The app lifecycle through a real gunicorn on a real SQLite store: create, read, scale up and
down, patch, restart, conflicting changes and force, tasks and kills (task documents inserted as
the scheduler would write them), deployments (cancel and rollback), the queue and the delay
reset, delete, and the event stream showing every step.

The API process and its store are shared by the module (a gunicorn start costs seconds), so each
test makes its own app (`new_app`, an id of its own) and brings it to the state it needs: the
tests pass in any order (`pytest --reverse`)."""

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


def new_app(api: str, store, app_id: str, *, instances: int = 1, finished: bool = True,
            **fields) -> dict:
    """Create `app_id` through the API from the example definition (with `fields` replaced);
    with `finished`, its deployment is marked done as the scheduler would. Every test starts
    from one of these, so none relies on what an earlier test left in the shared store."""
    doc = dict(definition(), id=app_id, instances=instances, **fields)
    r = requests.post(api + "/v2/apps", json=doc, timeout=10)
    assert r.status_code == 201, r.text
    if finished:
        finish_deployments(store)
    return store.get_app(app_id)


def url(app_id: str) -> str:
    return "/v2/apps" + app_id


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
    posted = wait_until(lambda: [e for e in events.of_type("api_post_event")
                                 if (e["appDefinition"] or {}).get("id") == APP_ID], 10,
                        message="api_post_event")
    assert len(posted) == 1 and posted[0]["uri"] == "/v2/apps"
    info = wait_until(lambda: [e for e in events.of_type("deployment_info")
                               if e["plan"]["id"] == dep_id], 10, message="deployment_info")
    assert info[0]["currentStep"]["actions"][0]["action"] == "StartApplication"


def test_duplicate_create_is_409_and_changes_nothing(api, store):
    new_app(api, store, "/jpm/duplicate")
    before = snapshot(store)
    r = requests.post(api + "/v2/apps", json=dict(definition(), id="/jpm/duplicate"), timeout=10)
    assert r.status_code == 409 and "already exists" in r.json()["message"]
    assert snapshot(store) == before


def test_get_list_and_filters(api, store):
    app_id = "/filters/listed"
    labels = dict(definition()["labels"], **{"filters.only": "yes"})
    new_app(api, store, app_id, labels=labels)
    r = requests.get(api + url(app_id), timeout=10)
    assert r.status_code == 200 and r.json()["app"]["id"] == app_id
    assert requests.get(api + url(app_id) + "/", timeout=10).json()["app"]["id"] == app_id
    apps = requests.get(api + "/v2/apps", params={"id": "ilters/list"}, timeout=10).json()["apps"]
    assert [a["id"] for a in apps] == [app_id]
    assert requests.get(api + "/v2/apps", params={"id": "nope"}, timeout=10).json() == {"apps": []}
    assert len(requests.get(api + "/v2/apps", params={"label": "filters.only"},
                            timeout=10).json()["apps"]) == 1
    assert requests.get(api + "/v2/apps", params={"label": "filters.only==x"},
                        timeout=10).json()["apps"] == []
    assert app_id in {a["id"] for a in requests.get(
        api + "/v2/apps", params={"label": "accessd.service"}, timeout=10).json()["apps"]}
    assert requests.get(api + "/v2/apps/jpm/nope", timeout=10).status_code == 404


def test_conflicting_change_is_409_until_forced(api, store):
    app_id = "/jpm/conflicting"
    new_app(api, store, app_id, finished=False)  # its create deployment still runs
    new_app(api, store, "/jpm/bystander", finished=False)  # another app's does not lock it
    running = [d["id"] for d in store.list_deployments() if app_id in d["affectedApps"]]
    assert len(running) == 1
    before = snapshot(store)
    r = requests.put(api + url(app_id), json={"instances": 3}, timeout=10)
    assert r.status_code == 409
    body = r.json()
    assert "locked by one or more deployments" in body["message"] and "force=true" in body["message"]
    assert body["deployments"] == [{"id": i} for i in running]
    assert snapshot(store) == before
    old_info = store.get_app(app_id)["versionInfo"]
    r = requests.put(api + url(app_id), params={"force": "true"}, json={"instances": 3},
                     timeout=10)
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"deploymentId", "version"}
    assert r.headers["Marathon-Deployment-Id"] == r.json()["deploymentId"]
    for dep_id in running:
        assert store.get_deployment(dep_id)["status"] == "superseded"
    app = store.get_app(app_id)
    assert app["instances"] == 3
    # A scale keeps the config version (running tasks stay current) and moves lastScalingAt.
    assert app["versionInfo"]["lastConfigChangeAt"] == old_info["lastConfigChangeAt"]
    assert app["versionInfo"]["lastScalingAt"] > old_info["lastScalingAt"]
    dep = store.get_deployment(r.json()["deploymentId"])
    assert dep["steps"][0]["actions"][0]["action"] == "ScaleApplication"
    assert dep["target"]["instances"] == 3
    finish_deployments(store)


def test_scale_down_and_status_labels(api, store):
    app_id = "/jpm/scaled"
    new_app(api, store, app_id, instances=3)
    app_url = url(app_id)
    assert requests.get(api + app_url, params=EXTRAS, timeout=10).json()["app"]["status"] == "Running"
    r = requests.put(api + app_url, json={"instances": 1}, timeout=10)
    assert r.status_code == 200, r.text
    assert store.get_app(app_id)["instances"] == 1
    finish_deployments(store)
    r = requests.put(api + app_url, json={"instances": 0}, timeout=10)
    assert r.status_code == 200
    finish_deployments(store)
    assert requests.get(api + app_url, params=EXTRAS, timeout=10).json()["app"]["status"] == "Suspended"
    assert requests.put(api + app_url, json={"instances": 3}, timeout=10).status_code == 200
    finish_deployments(store)


def test_patch_changes_config_version(api, store):
    app_id = "/jpm/patched"
    app_url = url(app_id)
    before = new_app(api, store, app_id, instances=3)
    r = requests.patch(api + app_url, json={"cpus": 0.25, "env": {"A": "1"}}, timeout=10)
    assert r.status_code == 200, r.text
    app = store.get_app(app_id)
    assert app["cpus"] == 0.25 and app["env"] == {"A": "1"} and app["instances"] == 3
    assert app["versionInfo"]["lastConfigChangeAt"] > before["versionInfo"]["lastConfigChangeAt"]
    dep = store.get_deployment(r.json()["deploymentId"])
    assert dep["steps"][0]["actions"][0]["action"] == "RestartApplication"
    finish_deployments(store)
    # A full PUT of the same definition with other instances is a scale, not a restart.
    full = {k: v for k, v in app.items() if k not in ("version", "versionInfo")}
    full["instances"] = 2
    r = requests.put(api + app_url, json=full, timeout=10)
    assert r.status_code == 200
    after = store.get_app(app_id)
    assert after["versionInfo"]["lastConfigChangeAt"] == app["versionInfo"]["lastConfigChangeAt"]
    finish_deployments(store)
    # PUT merges a partial body (Marathon's default, partialUpdate=true) ...
    r = requests.put(api + app_url, json={"instances": 3, "labels": {"x": "y"}}, timeout=10)
    assert r.status_code == 200, r.text
    merged = store.get_app(app_id)
    assert merged["labels"] == {"x": "y"} and merged["cpus"] == 0.25 and merged["instances"] == 3
    assert merged["env"] == {"A": "1"} and merged["cmd"] == app["cmd"]
    finish_deployments(store)
    # ... and ?partialUpdate=false replaces the whole definition (which then needs a cmd)
    before = snapshot(store)
    r = requests.put(api + app_url, params={"partialUpdate": "false"}, json={"cpus": 0.5},
                     timeout=10)
    assert r.status_code == 422 and "cmd" in r.text
    assert snapshot(store) == before
    r = requests.put(api + app_url, params={"partialUpdate": "false"}, timeout=10,
                     json={"cmd": "sleep 100", "cpus": 0.5})
    assert r.status_code == 200, r.text
    replaced = store.get_app(app_id)
    assert replaced["cmd"] == "sleep 100" and replaced["env"] == {} and replaced["instances"] == 1
    assert replaced["labels"] == {}
    finish_deployments(store)
    # ... and a whole definition replaces it back
    r = requests.put(api + app_url, params={"partialUpdate": "false"},
                     json=dict(full, instances=3), timeout=10)
    assert r.status_code == 200, r.text
    finish_deployments(store)


def test_restart_bumps_config_version(api, store, events):
    app_id = "/jpm/restarted"
    before = new_app(api, store, app_id, instances=2)
    r = requests.post(api + url(app_id) + "/restart", timeout=10)
    assert r.status_code == 200, r.text
    dep_id = r.json()["deploymentId"]
    after = store.get_app(app_id)
    assert after["versionInfo"]["lastConfigChangeAt"] > before["versionInfo"]["lastConfigChangeAt"]
    assert after["instances"] == before["instances"] and after["cpus"] == before["cpus"]
    assert store.get_deployment(dep_id)["steps"][0]["actions"][0]["action"] == \
        "RestartApplication"
    wait_until(lambda: any(e["plan"]["id"] == dep_id for e in events.of_type("deployment_info")),
               10, message="restart's deployment_info")
    finish_deployments(store)


def test_tasks_views_and_kills(api, store):
    app_id = "/jpm/killing"
    app_url = url(app_id)
    app = new_app(api, store, app_id, instances=3)
    tasks = [make_task(app, host="127.0.1.1", port=31001),
             make_task(app, host="127.0.1.2", port=31002, healthy=False),
             make_task(app, host="127.0.1.2", port=31003, state="TASK_STAGING",
                       healthy=None)]
    for t in tasks:
        store.upsert_task(t)
    view = requests.get(api + app_url, params={"embed": "app.tasks"}, timeout=10).json()["app"]
    assert (view["tasksRunning"], view["tasksStaged"], view["tasksHealthy"],
            view["tasksUnhealthy"]) == (2, 1, 1, 1)
    shown = {t["id"]: t for t in view["tasks"]}
    assert set(shown) == {t["id"] for t in tasks}
    t0 = shown[tasks[0]["id"]]
    assert t0["host"] == "127.0.1.1" and t0["ports"] == [31001]
    # the app's assigned service port (unique across apps: this test's app need not be the
    # store's first, so not necessarily 10000)
    service_ports = [d["port"] for d in store.get_app(app_id)["portDefinitions"]]
    assert t0["servicePorts"] == service_ports and 10000 <= service_ports[0] < 20000
    assert t0["ipAddresses"] == [{"ipAddress": "127.0.1.1", "protocol": "IPv4"}]
    assert t0["healthCheckResults"][0]["alive"] is True
    listed = requests.get(api + "/v2/apps", params={"embed": "apps.tasks"}, timeout=10).json()
    assert len(next(a for a in listed["apps"] if a["id"] == app_id)["tasks"]) == 3
    assert all("tasks" not in a for a in requests.get(api + "/v2/apps", timeout=10).json()["apps"])
    assert len(requests.get(api + app_url + "/tasks", timeout=10).json()["tasks"]) == 3
    # (other tests' apps may have tasks in the shared store: every one listed is in the state
    # asked for, and this app's are exactly the expected ones)
    running = requests.get(api + "/v2/tasks", params={"status": "running"}, timeout=10).json()
    assert {t["state"] for t in running["tasks"]} == {"TASK_RUNNING"}
    assert {t["id"] for t in running["tasks"] if t["appId"] == app_id} == \
        {tasks[0]["id"], tasks[1]["id"]}
    staging = requests.get(api + "/v2/tasks", params={"status": "staging"}, timeout=10).json()
    assert {t["state"] for t in staging["tasks"]} == {"TASK_STAGING"}
    assert [t["id"] for t in staging["tasks"] if t["appId"] == app_id] == [tasks[2]["id"]]
    assert requests.get(api + "/v2/tasks", params={"status": "zombie"},
                        timeout=10).status_code == 400

    # Kill without scale: a kill request, instances unchanged (the scheduler replaces it).
    r = requests.delete(api + app_url + "/tasks/" + tasks[0]["id"], timeout=10)
    assert r.status_code == 200 and r.json()["task"]["id"] == tasks[0]["id"]
    assert store.pending_kill_requests()[-1]["taskId"] == tasks[0]["id"]
    assert store.pending_kill_requests()[-1]["scale"] is False
    assert store.get_app(app_id)["instances"] == 3

    # Kill with scale: instances drop by one, with a scale deployment.
    r = requests.delete(api + app_url + "/tasks/" + tasks[1]["id"], params={"scale": "true"},
                        timeout=10)
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"deploymentId", "version"}
    assert store.get_app(app_id)["instances"] == 2
    kill = [k for k in store.pending_kill_requests() if k["taskId"] == tasks[1]["id"]]
    assert kill and kill[0]["scale"] is True
    dep = store.get_deployment(r.json()["deploymentId"])
    assert dep["steps"][0]["actions"][0]["action"] == "ScaleApplication"
    assert dep["target"]["instances"] == 2
    finish_deployments(store)

    # Unknown task: 404, nothing recorded.
    before = snapshot(store)
    assert requests.delete(api + app_url + "/tasks/jpm_killing.nope",
                           timeout=10).status_code == 404
    r = requests.post(api + "/v2/tasks/delete", json={"ids": [tasks[2]["id"], "x.nope"]},
                      timeout=10)
    assert r.status_code == 404 and "x.nope" in r.json()["message"]
    assert snapshot(store) == before

    # Bulk kill by id, then all of an app's tasks on one host.
    r = requests.post(api + "/v2/tasks/delete", json={"ids": [tasks[2]["id"]]}, timeout=10)
    assert r.status_code == 200 and [t["id"] for t in r.json()["tasks"]] == [tasks[2]["id"]]
    assert tasks[2]["id"] in {k["taskId"] for k in store.pending_kill_requests()}
    extra = make_task(store.get_app(app_id), host="127.0.1.3", port=31004)
    store.upsert_task(extra)
    r = requests.delete(api + app_url + "/tasks", params={"host": "127.0.1.3",
                                                         "scale": "true"}, timeout=10)
    assert r.status_code == 200 and "deploymentId" in r.json()
    assert store.get_app(app_id)["instances"] == 1
    finish_deployments(store)
    # The scheduler would now complete the kills and drop the tasks.
    for t in (*tasks, extra):
        store.complete_kill_request(t["id"])
        store.delete_task(t["id"])


def test_deployments_list_cancel_and_rollback(api, store):
    app_id = "/jpm/rolledback"
    app_url = url(app_id)
    new_app(api, store, app_id)
    finish_deployments(store)  # other tests' too: the list below must show this test's only
    r = requests.put(api + app_url, json={"instances": 4}, timeout=10)
    dep_id = r.json()["deploymentId"]
    listed = requests.get(api + "/v2/deployments", timeout=10).json()
    assert [d["id"] for d in listed] == [dep_id]
    assert listed[0]["affectedApps"] == [app_id] and listed[0]["totalSteps"] >= 1
    # force: just cancelled, the app keeps its new definition.
    r = requests.delete(api + f"/v2/deployments/{dep_id}", params={"force": "true"}, timeout=10)
    assert r.status_code == 202
    assert store.get_deployment(dep_id)["status"] == "cancelled"
    assert store.get_app(app_id)["instances"] == 4
    assert requests.delete(api + f"/v2/deployments/{dep_id}", timeout=10).status_code == 404
    assert requests.get(api + "/v2/deployments", timeout=10).json() == []

    # Without force: rolled back by a new deployment restoring the replaced app.
    before = store.get_app(app_id)
    r = requests.patch(api + app_url, json={"mem": 300, "instances": 5}, timeout=10)
    dep_id = r.json()["deploymentId"]
    assert store.get_app(app_id)["mem"] == 300
    r = requests.delete(api + f"/v2/deployments/{dep_id}", timeout=10)
    assert r.status_code == 200, r.text
    rollback = r.json()["deploymentId"]
    assert store.get_deployment(dep_id)["status"] == "superseded"
    assert store.get_deployment(rollback)["status"] == "running"
    restored = store.get_app(app_id)
    assert restored["mem"] == before["mem"] and restored["instances"] == 4
    assert restored["versionInfo"] == before["versionInfo"]
    assert requests.delete(api + "/v2/deployments/nope", timeout=10).status_code == 404
    finish_deployments(store)


def test_queue_and_delay_reset(api, store):
    app_id = "/jpm/queued"
    app_url = url(app_id)
    new_app(api, store, app_id)
    until = (datetime.now(UTC) + timedelta(seconds=120)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    store.put_app_status(app_id, {
        "appId": app_id, "delay": {"until": until, "seconds": 120},
        "waiting": {"reason": "constraint hostname UNIQUE", "since": iso_now(), "count": 2},
        "lastTaskFailure": {"appId": app_id, "host": "127.0.1.1", "message": "exit 1",
                            "state": "TASK_FAILED", "taskId": "jpm_queued.x",
                            "timestamp": iso_now(), "version": "v", "slaveId": "s"},
        "consecutiveFailures": 3, "updatedAt": iso_now()})
    app = requests.get(api + app_url, params=EXTRAS, timeout=10).json()["app"]
    assert app["status"] == "Delayed" and app["lastTaskFailure"]["message"] == "exit 1"
    assert "lastUnusedOfferReason" not in requests.get(api + "/v2/queue",
                                                       timeout=10).json()["queue"][0]
    queue = requests.get(api + "/v2/queue", params=EXTRAS, timeout=10).json()["queue"]
    assert len(queue) == 1
    item = queue[0]
    assert item["app"]["id"] == app_id and item["count"] == 2
    assert 100 < item["delay"]["timeLeftSeconds"] <= 120 and item["delay"]["overdue"] is False
    assert item["lastUnusedOfferReason"] == "constraint hostname UNIQUE"
    before = store.get_app_status(app_id)
    generation = store.desired_generation()
    r = requests.delete(api + "/v2/queue/jpm/queued/delay", timeout=10)
    assert r.status_code == 204
    # The API records a request (desired state) and leaves the status to the scheduler, its
    # only writer, so no scheduler write computed from the old status can undo the reset.
    assert store.get_app_status(app_id) == before
    assert store.desired_generation() > generation
    [request] = store.pending_delay_resets()
    assert request["appId"] == app_id and request["requestedAt"]
    # The scheduler's part (framework.Worker): fold the request in, consume it with the write.
    now = time.time()
    store.put_app_status(app_id, backoff.apply_delay_reset(before, request, now),
                         delay_reset=request)
    assert store.pending_delay_resets() == []
    item = requests.get(api + "/v2/queue", params=EXTRAS, timeout=10).json()["queue"][0]
    assert item["delay"] == {"timeLeftSeconds": 0, "overdue": True}  # the delay is gone
    assert item["consecutiveFailures"] == 0 and item["count"] == 2  # still waiting for offers
    status = store.get_app_status(app_id)
    assert status["delay"] is None and status["delayResetAt"] == request["requestedAt"]
    assert status["lastTaskFailure"]["message"] == "exit 1"
    assert requests.get(api + app_url, params=EXTRAS, timeout=10).json()["app"]["status"] == "Waiting"
    generation = store.desired_generation()
    assert requests.delete(api + "/v2/queue/jpm/nope/delay", timeout=10).status_code == 404
    assert store.pending_delay_resets() == [] and store.desired_generation() == generation


def test_delete_app(api, store, events):
    app_id = "/jpm/deleted"
    app_url = url(app_id)
    new_app(api, store, app_id)
    r = requests.delete(api + app_url, timeout=10)
    assert r.status_code == 200, r.text
    dep = store.get_deployment(r.json()["deploymentId"])
    assert dep["steps"][0]["actions"][0]["action"] == "StopApplication"
    assert store.get_app(app_id) is None
    assert requests.get(api + app_url, timeout=10).status_code == 404
    assert requests.delete(api + app_url, timeout=10).status_code == 404
    wait_until(lambda: any(e["plan"]["id"] == dep["id"] for e in events.of_type("deployment_info")),
               10, message="delete's deployment_info")


def test_put_creates_and_event_stream_filters(api, store, events):
    app_id = "/jpm/put-created"
    filtered = SseReader(api + "/v2/events?event_type=deployment_info")
    try:
        doc = copy.deepcopy(definition())
        doc["id"] = app_id
        r = requests.put(api + url(app_id), json=doc, timeout=10)
        assert r.status_code == 201 and r.headers["Location"].endswith(url(app_id))
        dep_id = r.json()["deploymentId"]
        wait_until(lambda: any(e["plan"]["id"] == dep_id
                               for e in filtered.of_type("deployment_info")),
                   10, message="filtered stream's deployment_info")
        assert {e["event"] for e in filtered.events} == {"deployment_info"}
        # Keep-alive comments flow when nothing happens (1 s in this test server).
        wait_until(lambda: "keep-alive" in filtered.comments, 10, message="a keep-alive")
    finally:
        filtered.close()
    # Every accepted change shows in the unfiltered stream, in order, with ids: the create
    # above and nine scales.
    deployments = [dep_id]
    for instances in range(2, 11):
        r = requests.put(api + url(app_id), params={"force": "true"},
                         json={"instances": instances}, timeout=10)
        assert r.status_code == 200, r.text
        deployments.append(r.json()["deploymentId"])
    finish_deployments(store)

    def mine(event_type: str) -> list[dict]:
        return [e for e in list(events.events) if e.get("event") == event_type
                and app_id in json.dumps(e["data"])]

    wait_until(lambda: len(mine("deployment_info")) == 10, 10, message="ten deployment_info")
    assert [e["data"]["plan"]["id"] for e in mine("deployment_info")] == deployments
    posts = mine("api_post_event")
    assert [e["data"]["appDefinition"]["instances"] for e in posts] == list(range(1, 11))
    ids = [int(e["id"]) for e in events.events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert events.error is None


def test_events_from_other_processes_and_resume(api, store, events):
    # The scheduler is another process: an event it appends reaches every open stream.
    store.append_event("scheduler_registered_event", {"frameworkId": "fw-resume",
                                                      "master": "127.0.0.1:5050"})
    got = wait_until(lambda: [e for e in events.of_type("scheduler_registered_event")
                              if e["frameworkId"] == "fw-resume"], 10,
                     message="the other process's event")
    assert len(got) == 1 and got[0]["eventType"] == "scheduler_registered_event"
    # A reconnecting client resumes after the last id it saw, missing nothing.
    last = int(events.events[-1]["id"])
    assert events.events[-1]["data"]["frameworkId"] == "fw-resume"
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
    app_id = "/jpm/never-stale"
    new_app(api, store, app_id)
    for i in range(5):
        listed = requests.get(api + "/v2/apps", params={"embed": "apps.tasks"}, timeout=10).json()
        app = next(a for a in listed["apps"] if a["id"] == app_id)
        assert len(app["tasks"]) == i
        store.upsert_task(make_task(store.get_app(app_id), port=32000 + i))
    before = requests.get(api + "/v2/apps", timeout=10).json()
    assert any(a["id"] == app_id for a in before["apps"])
    r = requests.put(api + url(app_id) + "?force=true", json={"instances": 7}, timeout=10)
    assert r.status_code == 200
    for _ in range(4):  # whichever worker answers
        after = requests.get(api + "/v2/apps", timeout=10).json()
        assert next(a for a in after["apps"] if a["id"] == app_id)["instances"] == 7
