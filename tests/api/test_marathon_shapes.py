"""Answers carry Marathon's fields only (per object type, `tests/api/marathon_fields.py`), with
accessd's own fields only when asked for with `embed=accessd`; Marathon's embed values give
what Marathon's give. Through a real gunicorn on a real store, tasks written as the scheduler
writes them."""

from __future__ import annotations

import pytest
import requests

from scheduler.spec import iso_now
from tests.api import marathon_fields as mf
from tests.api.conftest import SseReader, put_task
from tests.fixtures_api import start_api
from tests.support import wait_until

APP_ID = "/shapes/web"
URL = "/v2/apps/shapes/web"
EXTRAS = {"embed": "accessd"}


@pytest.fixture(scope="module")
def api(state_path, store):
    proc, base = start_api(state_path, workers=1,
                           env={"ACCESSD_API_SSE_KEEPALIVE": "1", "ACCESSD_API_SSE_POLL": "0.05"})
    yield base
    proc.stop()


@pytest.fixture(scope="module")
def app_with_tasks(api, store):
    events = SseReader(api + "/v2/events")
    r = requests.post(api + "/v2/apps", timeout=10, json={
        "id": APP_ID, "cmd": "python3 -m http.server $PORT0", "instances": 2, "cpus": 0.1,
        "mem": 32, "portDefinitions": [{"port": 0}],
        "healthChecks": [{"protocol": "HTTP", "path": "/"}]})
    assert r.status_code == 201, r.text
    put_task(store, APP_ID, healthy=True, n=0)
    put_task(store, APP_ID, healthy=False, n=1, cause="HTTP 500")
    store.put_app_status(APP_ID, {
        "appId": APP_ID, "delay": None, "consecutiveFailures": 1, "updatedAt": iso_now(),
        "waiting": {"reason": "insufficient cpus", "since": iso_now(), "count": 1},
        "lastTaskFailure": {"appId": APP_ID, "host": "127.0.1.1", "message": "exit 1",
                            "state": "TASK_FAILED", "taskId": "shapes_web.x",
                            "timestamp": iso_now(), "version": "v", "slaveId": "s"}})
    wait_until(lambda: events.of_type("deployment_info"), 10, message="deployment_info event")
    yield events
    events.close()


def mine(apps: list[dict]) -> dict:
    """The fixture's app in a list (the module's other tests add apps that sort before it)."""
    return next(a for a in apps if a["id"] == APP_ID)


def test_app_views_have_marathon_fields_only(api, app_with_tasks):
    created_app = requests.get(api + URL, timeout=10).json()["app"]
    mf.check_app(created_app)
    # GET /v2/apps/{id}: counts, tasks, deployments, lastTaskFailure (as Marathon's show does)
    assert len(created_app["tasks"]) == 2 and created_app["tasksUnhealthy"] == 1
    assert created_app["lastTaskFailure"]["message"] == "exit 1"
    assert created_app["deployments"] and "status" not in created_app
    for task in created_app["tasks"]:
        assert "healthy" not in task and "agentId" not in task and "resources" not in task
    every = ("apps.tasks,apps.counts,apps.deployments,apps.readiness,apps.lastTaskFailure,"
             "apps.failures,apps.taskStats")
    for params in ({}, {"embed": every}, {"embed": "apps.taskStats"}, {"label": "nope!=x"}):
        for app in requests.get(api + "/v2/apps", params=params, timeout=10).json()["apps"]:
            mf.check_app(app)
    plain = mine(requests.get(api + "/v2/apps", timeout=10).json()["apps"])
    # GET /v2/apps: counts and deployments always; tasks and lastTaskFailure when embedded
    assert "tasksRunning" in plain and "deployments" in plain
    assert "tasks" not in plain and "lastTaskFailure" not in plain
    full = mine(requests.get(api + "/v2/apps", params={"embed": every}, timeout=10).json()["apps"])
    assert len(full["tasks"]) == 2 and full["lastTaskFailure"]["taskId"] == "shapes_web.x"
    assert full["readinessCheckResults"] == []
    stats = full["tasksStats"]
    assert stats["totalSummary"]["stats"]["counts"] == {"staged": 0, "running": 2,
                                                        "healthy": 1, "unhealthy": 1}
    assert stats["withLatestConfig"]["stats"]["counts"]["running"] == 2
    assert "withOutdatedConfig" not in stats  # no task on an older config
    assert stats["totalSummary"]["stats"]["lifeTime"]["averageSeconds"] >= 0


def test_extras_only_with_embed_accessd(api, app_with_tasks):
    app = requests.get(api + URL, params=EXTRAS, timeout=10).json()["app"]
    assert app["status"] == "Waiting"
    task = app["tasks"][0]
    assert {"agentId", "attributes", "healthy", "resources", "killRequested"} <= set(task)
    listed = mine(requests.get(api + "/v2/apps", params={"embed": ["apps.tasks", "accessd"]},
                               timeout=10).json()["apps"])
    assert listed["status"] == "Waiting" and "healthy" in listed["tasks"][0]
    tasks = requests.get(api + URL + "/tasks", params=EXTRAS, timeout=10).json()["tasks"]
    assert all("healthy" in t for t in tasks)


def test_tasks_deployments_queue_info_have_marathon_fields_only(api, app_with_tasks):
    for path in (URL + "/tasks", "/v2/tasks", "/v2/tasks?status=running"):
        tasks = requests.get(api + path, timeout=10).json()["tasks"]
        assert len(tasks) == 2
        for task in tasks:
            mf.check_task(task)
    deployments = requests.get(api + "/v2/deployments", timeout=10).json()
    assert deployments
    for dep in deployments:
        mf.check_deployment(dep)
    one = requests.get(api + "/v2/deployments/" + deployments[0]["id"], timeout=10).json()
    mf.check_deployment(one)
    with_extras = requests.get(api + "/v2/deployments", params=EXTRAS, timeout=10).json()
    assert with_extras[0]["status"] == "running" and "target" in with_extras[0]
    [item] = requests.get(api + "/v2/queue", timeout=10).json()["queue"]
    assert not set(item) - mf.QUEUE_ITEM
    assert not set(item["app"]) - mf.APP and "tasksRunning" not in item["app"]
    assert item["count"] == 1
    info = requests.get(api + "/v2/info", timeout=10).json()
    assert not set(info) - mf.INFO and info["name"] == "accessd"
    assert set(info["http_config"]) <= {"http_port", "https_port"}


def test_events_have_marathon_fields_only(api, store, app_with_tasks):
    events = app_with_tasks
    store.append_event("status_update_event", {
        "slaveId": "s", "taskId": "shapes_web.y", "taskStatus": "TASK_RUNNING", "message": "",
        "appId": APP_ID, "host": "127.0.1.1", "ipAddresses": [], "ports": [31000],
        "version": "v", "accessdOnly": 1})
    wait_until(lambda: events.of_type("status_update_event"), 10, message="status update")
    for event in events.events:
        data = event["data"]
        allowed = mf.EVENTS.get(data["eventType"])
        if allowed is not None:
            assert not set(data) - allowed - mf.EVENT_COMMON, (data["eventType"], set(data))
        if "plan" in data:
            assert not set(data["plan"]) - mf.PLAN, set(data["plan"])
        if "appDefinition" in data:
            assert not set(data["appDefinition"]) - mf.APP


def test_queries_id_cmd_label_and_task_kills_by_host(api, store, app_with_tasks):
    for doc in ({"id": "/shapes/db", "cmd": "Postgres -D data", "portDefinitions": [],
                 "labels": {"tier": "db", "team": "jpm"}},
                {"id": "/shapes/cache", "cmd": "redis-server", "portDefinitions": [],
                 "labels": {"tier": "cache", "odd key!": "x"}}):
        assert requests.post(api + "/v2/apps", json=doc, timeout=10).status_code == 201

    def ids(**params):
        r = requests.get(api + "/v2/apps", params=params, timeout=10)
        assert r.status_code == 200, r.text
        return sorted(a["id"] for a in r.json()["apps"])

    assert ids(id="SHAPES/D") == ["/shapes/db"]  # case-insensitive substring, as Marathon
    assert ids(cmd="postgres") == ["/shapes/db"]
    assert ids(label="tier") == ["/shapes/cache", "/shapes/db"]
    assert ids(label="tier!=db") == ["/shapes/cache"]  # the label must exist
    assert ids(label="tier in (db, web), team==jpm") == ["/shapes/db"]
    assert ids(label=r"odd\ key\!==x") == ["/shapes/cache"]
    assert ids(label="tier notin (db)", cmd="redis") == ["/shapes/cache"]
    r = requests.get(api + "/v2/apps", params={"label": "tier in (db"}, timeout=10)
    assert r.status_code == 400 and r.json()["message"].startswith("Invalid label selector")

    tasks = requests.get(api + URL + "/tasks", timeout=10).json()["tasks"]
    on_agent2 = [t for t in tasks if t["host"] == "127.0.1.2"]
    assert len(on_agent2) == 1 and len(tasks) == 2
    r = requests.delete(api + URL + "/tasks", params={"host": "127.0.1.2",
                                                      "scale": "true", "force": "true"},
                        timeout=10)
    assert r.status_code == 200, r.text
    killed = {k["taskId"] for k in store.pending_kill_requests()}
    assert on_agent2[0]["id"] in killed and not killed & {t["id"] for t in tasks
                                                          if t not in on_agent2}
    assert store.get_app(APP_ID)["instances"] == 1


def test_apps_of_a_group_with_the_star_path(api, app_with_tasks):
    r = requests.get(api + "/v2/apps/shapes/*", timeout=10)
    assert r.status_code == 200, r.text
    apps = r.json()["*"]
    assert "/shapes/web" in {a["id"] for a in apps}
    for app in apps:
        mf.check_app(app)
    web = next(a for a in apps if a["id"] == "/shapes/web")
    assert len(web["tasks"]) >= 1  # as GET /v2/apps/{id} shows an app
    assert requests.get(api + "/v2/apps/nothing/here/*", timeout=10).status_code == 404
