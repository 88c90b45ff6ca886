"""Marathon fields with a runtime effect, end to end: `accessd api` + `accessd scheduler` on
localmesos. A definition exported from Marathon POSTs unchanged and runs healthy; `fetch` puts
an archive, extracted, into the sandbox of a task started with `args` (the service then serves
the extracted file); `user` runs the task as that user; an app without `portDefinitions` gets
Marathon's one port, so `$PORT0` and a `portIndex: 0` health check work."""

from __future__ import annotations

import functools
import http.server
import io
import json
import os
import pwd
import tarfile
import threading
from collections.abc import Iterator

import pytest
import requests

from scheduler.state import StateStore
from tests.fixtures_api import start_api
from tests.fixtures_scheduler import scheduler_cluster
from tests.support import REPO, wait_until

SERVE = "exec python3 -m http.server $PORT0 --bind $HOST"
CHECK = {"protocol": "HTTP", "path": "/", "portIndex": 0, "gracePeriodSeconds": 30,
         "intervalSeconds": 1, "timeoutSeconds": 0.5, "maxConsecutiveFailures": 3}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, StateStore]]:
    work = tmp_path_factory.mktemp("marathon-fields")
    with scheduler_cluster(work) as (_mesos, store, _sched):
        api, base = start_api(work / "state.db", workers=1)
        try:
            yield base, store
        finally:
            api.stop()


@pytest.fixture(scope="module")
def stack(cluster: tuple[str, StateStore]) -> str:
    return cluster[0]


@pytest.fixture(scope="module")
def archive_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("served")
    data = b"symbol,weight\nJPM,0.42\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("model/weights.csv")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (root / "model.tgz").write_bytes(buf.getvalue())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/model.tgz"
    server.shutdown()
    server.server_close()


def healthy_tasks(base: str, app_id: str, want: int, timeout: float = 60.0) -> list[dict]:
    def ready():
        r = requests.get(base + "/v2/apps" + app_id, timeout=10)
        app = r.json().get("app") if r.status_code == 200 else None
        return app["tasks"] if app and app["tasksHealthy"] >= want else None
    return wait_until(ready, timeout, message=f"{want} healthy task(s) of {app_id}")


def test_marathon_export_posts_unchanged_and_runs(cluster: tuple[str, StateStore]) -> None:
    stack, store = cluster
    doc = json.loads((REPO / "tests/data/marathon/app-export-1.10.json").read_text())["app"]
    doc["healthChecks"] = [dict(doc["healthChecks"][0], intervalSeconds=1, timeoutSeconds=0.5,
                                gracePeriodSeconds=30)]  # only faster checks, for the test
    # The export's fixed service ports must be free in this module's store: an app another
    # test created may have been assigned them (from 10000 up). Nothing to do in file order.
    wanted = {p["port"] for p in doc["portDefinitions"] if p["port"]}
    for app in store.list_apps():
        if wanted & {p["port"] for p in app.get("portDefinitions", [])}:
            gone = requests.delete(stack + "/v2/apps" + app["id"], params={"force": "true"},
                                   timeout=10)
            assert gone.status_code == 200, gone.text
    r = requests.post(stack + "/v2/apps", json=doc, timeout=10)
    assert r.status_code == 201, r.text
    (task,) = healthy_tasks(stack, doc["id"], 1)
    assert requests.get(f"http://{task['host']}:{task['ports'][0]}/", timeout=5).status_code == 200


def test_default_port_definition_gives_port0_and_health_check(stack: str) -> None:
    r = requests.post(stack + "/v2/apps", timeout=10, json={
        "id": "/fields/default-port", "cmd": SERVE, "cpus": 0.1, "mem": 32,
        "healthChecks": [CHECK]})
    assert r.status_code == 201, r.text
    (task,) = healthy_tasks(stack, "/fields/default-port", 1)
    assert len(task["ports"]) == 1


def test_fetch_and_args_put_an_extracted_archive_in_the_sandbox(stack: str,
                                                               archive_url: str) -> None:
    r = requests.post(stack + "/v2/apps", timeout=10, json={
        "id": "/fields/fetch", "args": ["sh", "-c", f"test -f model/weights.csv && {SERVE}"],
        "cpus": 0.1, "mem": 32, "fetch": [{"uri": archive_url}], "healthChecks": [CHECK]})
    assert r.status_code == 201, r.text
    (task,) = healthy_tasks(stack, "/fields/fetch", 1)
    served = requests.get(f"http://{task['host']}:{task['ports'][0]}/model/weights.csv",
                          timeout=5)
    assert served.text == "symbol,weight\nJPM,0.42\n"


def first_end(store: StateStore, app_id: str) -> dict:
    """The first status_update_event of `app_id` in a terminal state."""
    def ended():
        return next((e for _, e in store.events_since(0, 100000)
                     if e.get("eventType") == "status_update_event" and e.get("appId") == app_id
                     and e.get("taskStatus") in ("TASK_FINISHED", "TASK_FAILED")), None)
    return wait_until(ended, 60, message=f"a task of {app_id} to end")


@pytest.mark.skipif(os.geteuid() != 0, reason="switching user needs an agent running as root")
def test_user_runs_the_task_as_that_user(cluster: tuple[str, StateStore]) -> None:
    """The task checks who it runs as and exits 0 only if it is the app's user (a task that
    ends is observable whatever the permissions of the test's temporary directories: pytest's
    are 0700, which a process of another user cannot traverse by absolute path, as on a real
    agent whose work dir is not world-traversable; accessd's executor, which writes to its
    sandbox by absolute path, needs that, so this runs under the command executor)."""
    base, store = cluster
    user = pwd.getpwuid(65534).pw_name
    app_id, executor = "/fields/user", "//cmd"
    r = requests.post(base + "/v2/apps", timeout=10, json={
        "id": app_id, "cmd": f'test "$(id -un)" = {user}', "user": user, "executor": executor,
        "cpus": 0.1, "mem": 32})
    assert r.status_code == 201, r.text
    event = first_end(store, app_id)
    assert event["taskStatus"] == "TASK_FINISHED", event
    requests.delete(base + "/v2/apps" + app_id, timeout=10)


def test_a_user_missing_on_the_agent_fails_the_task(cluster: tuple[str, StateStore]) -> None:
    base, store = cluster
    r = requests.post(base + "/v2/apps", timeout=10, json={
        "id": "/fields/no-user", "cmd": "sleep 60", "user": "no-such-user-here",
        "executor": "//cmd", "cpus": 0.1, "mem": 32})
    assert r.status_code == 201, r.text
    event = first_end(store, "/fields/no-user")
    assert event["taskStatus"] == "TASK_FAILED"
    assert "Failed to get user information for 'no-such-user-here'" in event["message"]
    requests.delete(base + "/v2/apps/fields/no-user", timeout=10)



def test_readiness_check_holds_the_deployment_until_ready(cluster, tmp_path) -> None:
    """The task is healthy at once (`/` answers) but ready only when `/ready` answers 200: the
    deployment stays running, its current action showing the not-ready results, until the test
    creates that file; then it succeeds."""
    base, store = cluster
    served = tmp_path / "served"
    served.mkdir()
    r = requests.post(base + "/v2/apps", timeout=10, json={
        "id": "/fields/ready", "cpus": 0.1, "mem": 32,
        "cmd": f"exec python3 -m http.server $PORT0 --bind $HOST --directory {served}",
        "portDefinitions": [{"port": 0, "name": "http"}], "healthChecks": [CHECK],
        "readinessChecks": [{"name": "ready", "portName": "http", "path": "/ready",
                             "intervalSeconds": 2, "timeoutSeconds": 1,
                             "preserveLastResponse": True}]})
    assert r.status_code == 201, r.text
    dep_id = r.headers["Marathon-Deployment-Id"]
    (task,) = healthy_tasks(base, "/fields/ready", 1)

    def not_ready_results():
        dep = store.get_deployment(dep_id)
        results = [res for a in dep.get("currentActions") or ()
                   for res in a.get("readinessCheckResults") or ()]
        # (a first probe may find the server not listening yet: status 0, "no answer")
        answered = [res for res in results if (res.get("lastResponse") or {}).get("status")]
        return answered if answered and dep["status"] == "running" else None
    results = wait_until(not_ready_results, 30, message="a not-ready readiness answer")
    assert results[0]["ready"] is False and results[0]["lastResponse"]["status"] == 404
    assert results[0]["taskId"] == task["id"] and results[0]["name"] == "ready"
    listed = requests.get(base + "/v2/deployments", timeout=10).json()
    assert any(d["id"] == dep_id for d in listed)  # still running though healthy
    shown = requests.get(base + "/v2/apps/fields/ready", params={"embed": "app.readiness"},
                         timeout=10).json()["app"]
    assert shown["readinessCheckResults"] and shown["readinessCheckResults"][0]["ready"] is False

    (served / "ready").write_text("ok")
    wait_until(lambda: store.get_deployment(dep_id)["status"] == "succeeded", 30,
               message="the deployment to succeed once the task is ready")


def test_dependencies_start_an_app_after_the_apps_it_depends_on(cluster, tmp_path) -> None:
    base, store = cluster
    served = tmp_path / "db"
    served.mkdir()
    web = {"id": "/fields/web", "cmd": "sleep 600", "cpus": 0.1, "mem": 16,
           "portDefinitions": [], "dependencies": ["db"]}  # relative: /fields/db
    db = {"id": "/fields/db", "cpus": 0.1, "mem": 32,
          "cmd": f"exec python3 -m http.server $PORT0 --bind $HOST --directory {served}",
          "healthChecks": [dict(CHECK, path="/up")]}
    assert requests.post(base + "/v2/apps", json=web, timeout=10).status_code == 201
    assert requests.post(base + "/v2/apps", json=db, timeout=10).status_code == 201

    def db_running_web_waiting():
        status = store.get_app_status("/fields/web") or {}
        db_tasks = store.list_tasks("/fields/db")
        waiting = (status.get("waiting") or {}).get("reason")
        return (waiting if db_tasks and db_tasks[0].get("state") == "TASK_RUNNING"
                and waiting else None)
    reason = wait_until(db_running_web_waiting, 30, message="/fields/web waiting for /fields/db")
    assert reason == "dependencies /fields/db"
    assert store.list_tasks("/fields/web") == []  # the db runs, but is not healthy: no start
    (served / "up").write_text("ok")
    wait_until(lambda: [t for t in store.list_tasks("/fields/web")
                        if t.get("state") == "TASK_RUNNING"], 30,
               message="/fields/web to start once /fields/db is healthy")
    assert store.list_tasks("/fields/db")[0]["healthy"] is True


def test_a_groups_deployment_is_listed_until_its_last_app_runs(cluster, tmp_path) -> None:
    """The group's answer names one deployment plan; a client waiting for it to leave
    `GET /v2/deployments` (as Marathon's clients do) waits for every app of the group: here
    until the db is healthy and, after it, the web app depending on it runs."""
    base, store = cluster
    served = tmp_path / "db"
    served.mkdir()
    group = {"id": "/plan", "apps": [
        {"id": "web", "cmd": "sleep 600", "cpus": 0.1, "mem": 16, "portDefinitions": [],
         "dependencies": ["db"]},
        {"id": "db", "cpus": 0.1, "mem": 32,
         "cmd": f"exec python3 -m http.server $PORT0 --bind $HOST --directory {served}",
         "healthChecks": [dict(CHECK, path="/up")]}]}
    r = requests.post(base + "/v2/groups", json=group, timeout=10)
    assert r.status_code == 201, r.text
    plan = r.json()["deploymentId"]

    def listed() -> list[dict]:
        return [d for d in requests.get(base + "/v2/deployments", timeout=10).json()
                if d["id"] == plan]
    wait_until(lambda: [t for t in store.list_tasks("/plan/db") if t["state"] == "TASK_RUNNING"],
               30, message="/plan/db to run")
    [waiting] = listed()
    assert sorted(waiting["affectedApps"]) == ["/plan/db", "/plan/web"]
    assert store.list_tasks("/plan/web") == []
    (served / "up").write_text("ok")
    wait_until(lambda: not listed(), 60, message="the group's deployment to finish")
    assert [t["state"] for t in store.list_tasks("/plan/web")] == ["TASK_RUNNING"]
    assert store.list_tasks("/plan/db")[0]["healthy"] is True
    done = requests.get(base + f"/v2/deployments/{plan}", params={"embed": "accessd"},
                        timeout=10).json()
    assert done["status"] == "succeeded" and len(done["parts"]) == 2
    # the plan's end is one event, with the plan's id, not one per app
    def ends() -> list[dict]:
        return [e for _, e in store.events_since(0, limit=100_000)
                if e["eventType"] in ("deployment_success", "deployment_failed")
                and e["id"] in done["parts"]]
    [end] = wait_until(ends, 10, message="the plan's deployment_success")
    assert end["eventType"] == "deployment_success" and end["id"] == plan
    assert sorted(end["plan"]["affectedApps"]) == ["/plan/db", "/plan/web"]
    assert ends() == [end]
