"""Marathon app definitions through a real gunicorn on a real store: an exported definition
(`GET /v2/apps/{id}` of a Marathon cluster, every field with its empty, null or default value and
the read-only fields) POSTs unchanged; what cannot work here is a 422 that says why."""

from __future__ import annotations

import json

import pytest
import requests

from tests.api.conftest import finish_deployments, snapshot
from tests.fixtures_api import start_api
from tests.support import REPO

MARATHON = REPO / "tests" / "data" / "marathon"


@pytest.fixture(scope="module")
def api(state_path, store):
    proc, base = start_api(state_path, workers=1)
    yield base
    proc.stop()


def exported(name: str) -> dict:
    return json.loads((MARATHON / name).read_text())["app"]


@pytest.mark.parametrize("name", ["app-export-1.10.json", "app-export-1.4.json"])
def test_exported_definition_posts_unchanged(api, store, name):
    doc = exported(name)
    # The export's fixed service ports must be free in this module's store: an app another
    # test created may have been assigned them (from 10000 up). Nothing to do in file order.
    wanted = {p["port"] for p in doc["portDefinitions"] if p["port"]}
    for app in store.list_apps():
        mappings = ((app.get("container") or {}).get("portMappings") or [])
        held = {p["port"] for p in app.get("portDefinitions") or []} | {
            m.get("servicePort") for m in mappings}  # a Docker app's are its mappings'
        if wanted & held:
            gone = requests.delete(api + "/v2/apps" + app["id"], params={"force": "true"},
                                   timeout=10)
            assert gone.status_code == 200, gone.text
    r = requests.post(api + "/v2/apps", json=doc, timeout=10)
    assert r.status_code == 201, r.text
    stored = store.get_app(doc["id"])
    assert stored["cmd"] == doc["cmd"] and stored["instances"] == doc["instances"]
    assert stored["unreachableStrategy"] == doc["unreachableStrategy"]
    assert [p["port"] for p in stored["portDefinitions"]] == \
        [p["port"] for p in doc["portDefinitions"]]
    # the read-only fields sent back were not stored as part of the definition
    assert "tasks" not in stored and "tasksRunning" not in stored
    # and the stored definition, read back and PUT again, is a no-op scale
    again = requests.get(api + "/v2/apps" + doc["id"], timeout=10).json()["app"]
    r = requests.put(api + "/v2/apps" + doc["id"], json=again, params={"force": "true"},
                     timeout=10)
    assert r.status_code == 200, r.text


def test_app_without_port_definitions_gets_one_port(api, store):
    """issue 18 item 4: Marathon's default port definition, so portIndex 0 checks work."""
    r = requests.post(api + "/v2/apps", timeout=10, json={
        "id": "/ports/default", "cmd": "sleep 60", "cpus": 0.1, "mem": 16,
        "healthChecks": [{"protocol": "HTTP", "path": "/", "portIndex": 0}]})
    assert r.status_code == 201, r.text
    (default,) = r.json()["portDefinitions"]
    # its port 0 became an assigned service port (issue 12), as Marathon's exports show
    assert default == {"port": default["port"], "protocol": "tcp", "name": "default",
                       "labels": {}} and 10000 <= default["port"] < 20000
    r = requests.post(api + "/v2/apps", timeout=10, json={
        "id": "/ports/none", "cmd": "sleep 60", "portDefinitions": []})
    assert r.status_code == 201 and r.json()["portDefinitions"] == []


REFUSED = [
    ({"container": {"type": "DOCKER", "docker": {"image": "nginx", "forcePullImage": True}}},
     "/container/docker/forcePullImage", "no Docker registry"),
    ({"container": {"type": "MESOS", "volumes": [{"containerPath": "data", "mode": "RW",
                                                  "persistent": {"size": 100}}]}},
     "/container/volumes", "persistent volumes"),
    ({"networks": [{"mode": "container", "name": "overlay"}]}, "/networks/0", "IP-per-task"),
    ({"ipAddress": {"networkName": "overlay"}}, "/ipAddress", "IP-per-task"),
    ({"secrets": {"pw": {"source": "/db/../etc/pw"}}}, "/secrets/pw/source", "'..'"),
    ({"env": {"PW": {"secret": "pw"}}}, "/env/PW", "undefined secret"),
]


@pytest.mark.parametrize("extra,path,why", REFUSED, ids=[r[1] for r in REFUSED])
def test_what_cannot_work_here_is_a_422_that_says_why(api, store, extra, path, why):
    before = snapshot(store)
    doc = {"id": "/refused/app", "cmd": "sleep 60", **extra}
    r = requests.post(api + "/v2/apps", json=doc, timeout=10)
    assert r.status_code == 422, r.text
    details = {d["path"]: d["errors"] for d in r.json()["details"]}
    assert any(why in e for e in details.get(path, [])), details
    assert snapshot(store) == before


def test_versions_list_show_and_rollback_survive_a_restart(state_path, store):
    proc, api = start_api(state_path, workers=1)
    try:
        url = api + "/v2/apps/versions/app"
        r = requests.post(api + "/v2/apps", timeout=10, json={
            "id": "/versions/app", "cmd": "sleep 100", "cpus": 0.1, "mem": 16,
            "env": {"STAGE": "one"}})
        assert r.status_code == 201, r.text
        first = r.json()["version"]
        r = requests.put(url, json={"env": {"STAGE": "two"}}, params={"force": "true"},
                         timeout=10)
        assert r.status_code == 200, r.text
        second = r.json()["version"]
        r = requests.put(url, json={"instances": 3}, params={"force": "true"}, timeout=10)
        third = r.json()["version"]
        assert requests.get(url + "/versions", timeout=10).json() == {
            "versions": [third, second, first]}
        old = requests.get(url + "/versions/" + first, timeout=10).json()
        assert old["env"] == {"STAGE": "one"} and old["version"] == first
        assert requests.get(url + "/versions/2001-01-01T00:00:00.000Z",
                            timeout=10).status_code == 404
        assert requests.get(api + "/v2/apps/versions/none/versions",
                            timeout=10).status_code == 404
    finally:
        proc.stop()
    # a new API process on the same store: the history is still there, and rollback works
    proc, api = start_api(state_path, workers=1)
    try:
        url = api + "/v2/apps/versions/app"
        assert len(requests.get(url + "/versions", timeout=10).json()["versions"]) == 3
        before = snapshot(store)
        r = requests.put(url, json={"version": "2001-01-01T00:00:00.000Z"}, timeout=10)
        assert r.status_code == 404 and snapshot(store) == before
        r = requests.put(url, json={"version": first}, params={"force": "true"}, timeout=10)
        assert r.status_code == 200, r.text
        now = store.get_app("/versions/app")
        assert now["env"] == {"STAGE": "one"} and now["instances"] == 1
        assert now["version"] == r.json()["version"] > third
        versions = requests.get(url + "/versions", timeout=10).json()["versions"]
        assert versions[0] == now["version"] and len(versions) == 4
        # the history is bounded: the newest 50 versions
        for n in range(50):
            r = requests.put(url, json={"instances": n % 3}, params={"force": "true"},
                             timeout=10)
            assert r.status_code == 200, r.text
        versions = requests.get(url + "/versions", timeout=10).json()["versions"]
        assert len(versions) == 50 and versions[0] == store.get_app("/versions/app")["version"]
        assert first not in versions
        # deleting the app deletes its history
        assert requests.delete(url, params={"force": "true"}, timeout=10).status_code == 200
        assert store.list_app_versions("/versions/app") == []
    finally:
        proc.stop()


def test_put_and_patch_several_apps(api, store):
    r = requests.put(api + "/v2/apps", timeout=10, params={"force": "true"}, json=[
        {"id": "/batch/a", "cmd": "sleep 60", "cpus": 0.1, "mem": 16},
        {"id": "/batch/b", "cmd": "sleep 60", "cpus": 0.1, "mem": 16, "env": {"K": "v"}}])
    assert r.status_code == 200, r.text
    assert r.headers["Marathon-Deployment-Id"] == r.json()["deploymentId"]
    assert store.get_app("/batch/a") and store.get_app("/batch/b")["env"] == {"K": "v"}
    r = requests.patch(api + "/v2/apps", timeout=10, params={"force": "true"}, json=[
        {"id": "/batch/b", "instances": 3}])
    assert r.status_code == 200, r.text
    b = store.get_app("/batch/b")
    assert b["instances"] == 3 and b["env"] == {"K": "v"}  # merged
    before = snapshot(store)
    r = requests.put(api + "/v2/apps", timeout=10, json=[
        {"id": "/batch/a", "cpus": 0.2}, {"id": "/batch/c", "cpus": -1}])
    assert r.status_code == 422 and {d["path"] for d in r.json()["details"]} >= {"/1/cpus"}
    assert snapshot(store) == before  # one bad definition: nothing stored
    assert requests.patch(api + "/v2/apps", json=[{"id": "/batch/none", "instances": 1}],
                          timeout=10).status_code == 404


def test_a_batch_refused_for_one_app_stores_none(api, store):
    """`PUT /v2/apps` with several apps is one transaction: a 409 for the second app (locked by
    its running deployment) leaves the first unchanged and creates no app."""
    r = requests.put(api + "/v2/apps", timeout=10, params={"force": "true"}, json=[
        {"id": "/atomic/a", "cmd": "sleep 60", "cpus": 0.1, "mem": 16, "instances": 0},
        {"id": "/atomic/b", "cmd": "sleep 60", "cpus": 0.1, "mem": 16, "instances": 0}])
    assert r.status_code == 200, r.text
    finish_deployments(store)
    r = requests.put(api + "/v2/apps/atomic/b", json={"instances": 1}, timeout=10)
    assert r.status_code == 200, r.text  # /atomic/b is locked by its running deployment now
    before = snapshot(store)
    r = requests.put(api + "/v2/apps", timeout=10, json=[
        {"id": "/atomic/a", "instances": 2}, {"id": "/atomic/new", "cmd": "sleep 60"},
        {"id": "/atomic/b", "instances": 2}])
    assert r.status_code == 409, r.text
    assert snapshot(store) == before
    finish_deployments(store)


def test_a_docker_app_is_accepted_and_answered_in_marathons_shape(api):
    """issue 22: container.docker no longer a 422; GET answers Marathon 1.5's form."""
    doc = {"id": "/docker/shape", "cmd": "httpd -f -p 8080", "cpus": 0.1, "mem": 32,
           "instances": 0, "networks": [{"mode": "container/bridge"}],
           "container": {"type": "DOCKER", "docker": {"image": "accessd/busybox:latest"},
                         "portMappings": [{"containerPort": 8080, "hostPort": 0,
                                           "name": "http"}]}}
    r = requests.post(api + "/v2/apps", json=doc, timeout=10)
    assert r.status_code == 201, r.text
    app = requests.get(api + "/v2/apps/docker/shape", timeout=10).json()["app"]
    assert app["networks"] == [{"mode": "container/bridge"}] and app["portDefinitions"] == []
    assert app["container"]["docker"] == {"image": "accessd/busybox:latest",
                                          "forcePullImage": False, "privileged": False,
                                          "parameters": []}
    service_port = app["container"]["portMappings"][0]["servicePort"]
    assert 10000 <= service_port < 20000  # assigned, as for portDefinitions
    assert app["container"]["portMappings"] == [{"containerPort": 8080, "hostPort": 0,
                                                 "servicePort": service_port, "protocol": "tcp",
                                                 "name": "http", "labels": {}}]
    bad = dict(doc, id="/docker/bad", container={"type": "DOCKER", "docker": {"image": "x"},
                                                 "portMappings": [{"containerPort": "80"}]})
    r = requests.post(api + "/v2/apps", json=bad, timeout=10)
    assert r.status_code == 422, r.text
    assert any(d["path"] == "/container/portMappings/0/containerPort" for d in r.json()["details"])
