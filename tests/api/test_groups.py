"""`/v2/groups` through a real gunicorn on a real store: create a group with nested groups and
dependencies, read the tree (Marathon's GroupInfo), update it (changed, added and removed apps;
scaleBy), refuse an invalid group without storing anything, delete it."""

from __future__ import annotations

import pytest
import requests

from tests.api.conftest import finish_deployments, snapshot
from tests.fixtures_api import start_api

GROUP_FIELDS = {"id", "apps", "groups", "pods", "dependencies", "version", "enforceRole"}


@pytest.fixture(scope="module")
def api(state_path, store):
    proc, base = start_api(state_path, workers=1)
    yield base
    proc.stop()


def group_doc() -> dict:
    return {
        "id": "/shop",
        "apps": [{"id": "web", "cmd": "sleep 600", "cpus": 0.1, "mem": 16, "instances": 2,
                  "dependencies": ["data/db"]}],
        "groups": [{"id": "data", "dependencies": ["/shared/cache"],
                    "apps": [{"id": "db", "cmd": "sleep 600", "cpus": 0.1, "mem": 16}]}],
    }


def check_group(group: dict) -> None:
    assert not set(group) - GROUP_FIELDS, set(group)
    for sub in group.get("groups") or ():
        check_group(sub)


def test_create_read_update_delete_a_group(api, store):
    r = requests.post(api + "/v2/groups", json=group_doc(), timeout=10)
    assert r.status_code == 201, r.text
    assert r.headers["Marathon-Deployment-Id"] == r.json()["deploymentId"]
    assert store.get_app("/shop/web")["dependencies"] == ["/shop/data/db"]
    # the group's dependencies go to each of its apps
    assert store.get_app("/shop/data/db")["dependencies"] == ["/shared/cache"]
    finish_deployments(store)

    root = requests.get(api + "/v2/groups", timeout=10).json()
    check_group(root)
    assert root["id"] == "/" and root["apps"] == [] and root["pods"] == []
    [shop] = root["groups"]
    assert shop["id"] == "/shop" and [a["id"] for a in shop["apps"]] == ["/shop/web"]
    assert [g["id"] for g in shop["groups"]] == ["/shop/data"]
    assert [a["id"] for a in shop["groups"][0]["apps"]] == ["/shop/data/db"]
    data = requests.get(api + "/v2/groups/shop/data", timeout=10).json()
    assert data["id"] == "/shop/data" and data["apps"][0]["cmd"] == "sleep 600"
    counted = requests.get(api + "/v2/groups/shop", params={"embed": "group.apps.counts"},
                           timeout=10).json()
    assert counted["apps"][0]["tasksRunning"] == 0
    only_groups = requests.get(api + "/v2/groups/shop", params={"embed": "group.groups"},
                               timeout=10).json()
    assert only_groups["apps"] == [] and only_groups["groups"][0]["id"] == "/shop/data"
    assert requests.get(api + "/v2/groups/nope", timeout=10).status_code == 404
    assert requests.post(api + "/v2/groups", json=group_doc(), timeout=10).status_code == 409

    # update: web changed, db left out (removed), cache added
    update = {"id": "/shop", "apps": [
        {"id": "web", "cmd": "sleep 700", "cpus": 0.1, "mem": 16, "instances": 2},
        {"id": "cache", "cmd": "sleep 600", "cpus": 0.1, "mem": 16}]}
    r = requests.put(api + "/v2/groups/shop", json=update, params={"force": "true"},
                     timeout=10)
    assert r.status_code == 200, r.text
    assert store.get_app("/shop/web")["cmd"] == "sleep 700"
    assert store.get_app("/shop/cache") is not None and store.get_app("/shop/data/db") is None
    finish_deployments(store)
    r = requests.put(api + "/v2/groups/shop", json={"scaleBy": 2}, params={"force": "true"},
                     timeout=10)
    assert r.status_code == 200, r.text
    assert store.get_app("/shop/web")["instances"] == 4
    assert store.get_app("/shop/cache")["instances"] == 2
    finish_deployments(store)

    r = requests.delete(api + "/v2/groups/shop", params={"force": "true"}, timeout=10)
    assert r.status_code == 200, r.text
    assert [a for a in store.list_apps() if a["id"].startswith("/shop/")] == []
    assert requests.delete(api + "/v2/groups/shop", timeout=10).status_code == 404


def test_an_invalid_group_changes_nothing(api, store):
    bad = group_doc()
    bad["groups"][0]["apps"][0]["cpus"] = -1
    bad["pods"] = [{"id": "p"}]
    before = snapshot(store)
    r = requests.post(api + "/v2/groups", json=bad, timeout=10)
    assert r.status_code == 422, r.text
    paths = {d["path"] for d in r.json()["details"]}
    assert "/apps[/shop/data/db]/cpus" in paths and "/pods" in paths
    assert snapshot(store) == before


def test_a_group_change_refused_for_one_app_changes_none(api, store):
    """All of a group's apps are stored in one transaction: a 409 for its second app leaves
    the first as it was (before, the first was already stored: half a group changed)."""
    apps = [{"id": name, "cmd": "sleep 600", "cpus": 0.1, "mem": 16} for name in ("a", "b")]
    r = requests.post(api + "/v2/groups", json={"id": "/lock", "apps": apps}, timeout=10)
    assert r.status_code == 201, r.text
    finish_deployments(store)
    r = requests.put(api + "/v2/apps/lock/b", json={"instances": 2}, timeout=10)
    assert r.status_code == 200, r.text  # /lock/b is locked by its running deployment now
    before = snapshot(store)
    changed = {"id": "/lock", "apps": [dict(app, cmd="sleep 700") for app in apps]}
    r = requests.put(api + "/v2/groups/lock", json=changed, timeout=10)
    assert r.status_code == 409, r.text
    assert r.json()["deployments"] == [{"id": before["deployments"][-1]["id"]}]
    r = requests.put(api + "/v2/groups/lock", json={"scaleBy": 3}, timeout=10)
    assert r.status_code == 409, r.text
    assert snapshot(store) == before
    r = requests.put(api + "/v2/groups/lock", json=changed, params={"force": "true"},
                     timeout=10)
    assert r.status_code == 200, r.text
    assert [store.get_app(f"/lock/{n}")["cmd"] for n in "ab"] == ["sleep 700"] * 2
    assert store.get_app("/lock/a")["version"] == store.get_app("/lock/b")["version"]
    finish_deployments(store)


def test_a_new_groups_apps_get_distinct_service_ports(api, store):
    apps = [{"id": name, "cmd": "sleep 600", "cpus": 0.1, "mem": 16, "instances": 0,
             "portDefinitions": [{"port": 0, "name": "http"}]} for name in ("a", "b", "c")]
    r = requests.post(api + "/v2/groups", json={"id": "/ports", "apps": apps}, timeout=10)
    assert r.status_code == 201, r.text
    ports = [store.get_app(f"/ports/{n}")["portDefinitions"][0]["port"] for n in "abc"]
    assert len(set(ports)) == 3 and all(10000 <= p < 20000 for p in ports)
    finish_deployments(store)


def _listed(api: str) -> list[dict]:
    r = requests.get(api + "/v2/deployments", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def _finish(store, app_id: str) -> None:
    """The scheduler's report that `app_id`'s part of a deployment is done."""
    [dep] = [d for d in store.list_deployments(active_only=True)
             if d["affectedApps"] == [app_id]]
    store.update_deployment(dict(dep, status="succeeded", finishedAt="2026-12-04T12:00:00Z"))


def test_a_group_change_is_one_deployment_plan_until_its_last_app_is_deployed(api, store):
    """As Marathon: the answer's deployment is listed with all of the group's apps, and stays
    listed until each of them is deployed (a client waiting for it to go waits for all)."""
    finish_deployments(store)
    apps = [{"id": "a", "cmd": "sleep 600", "cpus": 0.1, "mem": 16, "instances": 1},
            {"id": "b", "cmd": "sleep 600", "cpus": 0.1, "mem": 16, "instances": 2}]
    r = requests.post(api + "/v2/groups", json={"id": "/plan", "apps": apps}, timeout=10)
    assert r.status_code == 201, r.text
    plan = r.json()["deploymentId"]
    assert r.headers["Marathon-Deployment-Id"] == plan
    [listed] = _listed(api)
    assert listed["id"] == plan and sorted(listed["affectedApps"]) == ["/plan/a", "/plan/b"]
    assert set(listed) == {"id", "version", "affectedApps", "affectedPods", "steps",
                           "currentActions", "currentStep", "totalSteps"}
    assert {(a["action"], a["app"]) for a in listed["steps"][0]["actions"]} == {
        ("StartApplication", "/plan/a"), ("StartApplication", "/plan/b")}
    assert listed["version"] == r.json()["version"]
    one = requests.get(api + "/v2/apps/plan/a", timeout=10).json()["app"]
    assert one["deployments"] == [{"id": plan}]
    r = requests.put(api + "/v2/apps/plan/a", json={"instances": 3}, timeout=10)
    assert r.status_code == 409 and r.json()["deployments"] == [{"id": plan}], r.text

    _finish(store, "/plan/a")
    [listed] = _listed(api)
    assert listed["id"] == plan and sorted(listed["affectedApps"]) == ["/plan/a", "/plan/b"]
    assert {a["app"] for a in listed["currentActions"]} == {"/plan/b"}
    _finish(store, "/plan/b")
    assert _listed(api) == []
    r = requests.get(api + f"/v2/deployments/{plan}", params={"embed": "accessd"}, timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text

    batch = [{"id": "/plan/a", "instances": 2}, {"id": "/plan/b", "instances": 1}]
    r = requests.put(api + "/v2/apps", json=batch, timeout=10)
    assert r.status_code == 200, r.text
    [listed] = _listed(api)
    assert listed["id"] == r.json()["deploymentId"] != plan
    assert sorted(listed["affectedApps"]) == ["/plan/a", "/plan/b"]
    finish_deployments(store)


def test_a_deployment_plan_is_rolled_back_or_cancelled_as_a_whole(api, store):
    finish_deployments(store)
    apps = [{"id": name, "cmd": "sleep 600", "cpus": 0.1, "mem": 16} for name in ("a", "b")]
    r = requests.post(api + "/v2/groups", json={"id": "/undo", "apps": apps}, timeout=10)
    assert r.status_code == 201, r.text
    finish_deployments(store)
    changed = {"id": "/undo", "apps": [dict(app, cmd="sleep 700") for app in apps]}
    r = requests.put(api + "/v2/groups/undo", json=changed, timeout=10)
    assert r.status_code == 200, r.text
    plan = r.json()["deploymentId"]

    r = requests.delete(api + f"/v2/deployments/{plan}", timeout=10)
    assert r.status_code == 200, r.text
    rollback = r.json()["deploymentId"]
    assert rollback != plan
    assert [store.get_app(f"/undo/{n}")["cmd"] for n in "ab"] == ["sleep 600"] * 2
    [listed] = _listed(api)
    assert listed["id"] == rollback and sorted(listed["affectedApps"]) == ["/undo/a", "/undo/b"]
    old = requests.get(api + f"/v2/deployments/{plan}", params={"embed": "accessd"},
                       timeout=10).json()
    assert old["status"] == "superseded" and len(old["parts"]) == 2

    r = requests.delete(api + f"/v2/deployments/{rollback}", params={"force": "true"},
                        timeout=10)
    assert r.status_code == 202, r.text
    assert _listed(api) == []
    assert [d["status"] for d in store.list_deployments(active_only=False)
            if d.get("planId") == rollback] == ["cancelled", "cancelled"]
    assert [store.get_app(f"/undo/{n}")["cmd"] for n in "ab"] == ["sleep 600"] * 2
    r = requests.delete(api + f"/v2/deployments/{rollback}", timeout=10)
    assert r.status_code == 404, r.text


def test_a_forced_change_of_one_app_supersedes_its_whole_plan(api, store):
    """As Marathon cancels a conflicting plan: the other apps keep their new definitions (the
    scheduler goes on converging them), and the old plan is no longer listed."""
    finish_deployments(store)
    apps = [{"id": name, "cmd": "sleep 600", "cpus": 0.1, "mem": 16} for name in ("a", "b")]
    r = requests.post(api + "/v2/groups", json={"id": "/over", "apps": apps}, timeout=10)
    assert r.status_code == 201, r.text
    plan = r.json()["deploymentId"]
    r = requests.put(api + "/v2/apps/over/a", json={"instances": 2}, params={"force": "true"},
                     timeout=10)
    assert r.status_code == 200, r.text
    [listed] = _listed(api)
    assert listed["id"] == r.json()["deploymentId"] and listed["affectedApps"] == ["/over/a"]
    old = requests.get(api + f"/v2/deployments/{plan}", params={"embed": "accessd"},
                       timeout=10).json()
    assert old["status"] == "superseded" and len(old["parts"]) == 2
    assert old["message"].count(f"superseded by deployment {listed['id']}") == 2
    assert store.get_app("/over/b")["cmd"] == "sleep 600"
    finish_deployments(store)
