"""In-process checks of the pure parts (views, label selectors, routing) and of the credential
rules in each configuration, on the real Falcon app over a real SQLite store file (the gunicorn
tests cover the same app as a server; these cover the combinations cheaply)."""

from __future__ import annotations

import base64
import time

import falcon.testing
import pytest

from api import views
from api.app import ApiConfig, create_app
from api.auth import presented_token
from api.routing import OrderedRouter
from scheduler.spec import format_time
from scheduler.sqlite_state import SQLiteStateStore

APP = {"id": "/u/app", "cmd": "sleep 1", "cpus": 0.1, "mem": 16, "instances": 1}


@pytest.fixture()
def make_client(tmp_path):
    stores = []

    def make(token=None, read_token=None):
        store = SQLiteStateStore(tmp_path / f"s{len(stores)}.db")
        stores.append(store)
        app = create_app(ApiConfig(state_path="unused", token=token, read_token=read_token),
                         store)
        return falcon.testing.TestClient(app), store

    yield make
    for s in stores:
        s.close()


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def test_no_credentials_everything_open(make_client):
    client, store = make_client()
    assert client.simulate_post("/v2/apps", json=APP).status_code == 201
    assert client.simulate_get("/v2/apps").status_code == 200


def test_write_token_only(make_client):
    client, store = make_client(token="w")
    assert client.simulate_get("/v2/apps").status_code == 401
    assert client.simulate_get("/v2/apps", headers=auth("w")).status_code == 200
    r = client.simulate_post("/v2/apps", json=APP)
    assert r.status_code == 401 and "Bearer" in r.headers["WWW-Authenticate"]
    assert store.get_app("/u/app") is None
    assert client.simulate_post("/v2/apps", json=APP, headers=auth("w")).status_code == 201
    basic = base64.b64encode(b"me:w").decode()
    r = client.simulate_put("/v2/apps/u/app", json={"instances": 2}, params={"force": "true"},
                            headers={"Authorization": "Basic " + basic})
    assert r.status_code == 200


def test_read_token_restricts_reads(make_client):
    client, _ = make_client(token="w", read_token="r")
    assert client.simulate_get("/v2/apps").status_code == 401
    assert client.simulate_get("/v2/apps", headers=auth("r")).status_code == 200
    assert client.simulate_get("/v2/apps", headers=auth("w")).status_code == 200
    assert client.simulate_post("/v2/apps", json=APP, headers=auth("r")).status_code == 403
    assert client.simulate_get("/ping").text == "pong"


def test_presented_token_forms():
    assert presented_token("Bearer abc") == "abc"
    assert presented_token("bearer  abc ") == "abc"
    assert presented_token("Basic " + base64.b64encode(b"u:p:q").decode()) == "p:q"
    assert presented_token("Basic " + base64.b64encode(b"nocolon").decode()) is None
    assert presented_token("Basic ***") is None
    assert presented_token(None) is None and presented_token("Digest x") is None


def test_status_label_precedence():
    now = time.time()
    app = {"id": "/a", "instances": 2}
    future = {"delay": {"until": format_time(now + 60), "seconds": 60},
              "waiting": {"reason": "no offers", "since": format_time(now), "count": 1}}
    deploying = [{"id": "d"}]
    # A deployment held up by backoff or by demand no offer fits says why (Marathon's UI too).
    assert views.status_label(app, future, deploying, now) == "Delayed"
    past = {**future, "delay": {"until": format_time(now - 1), "seconds": 1}}
    assert views.status_label(app, past, deploying, now) == "Waiting"
    assert views.status_label(app, None, deploying, now) == "Deploying"
    assert views.status_label({**app, "instances": 0}, None, [], now) == "Suspended"
    assert views.status_label({**app, "instances": 0}, future, [], now) == "Suspended"
    assert views.status_label({**app, "instances": 0}, None, deploying, now) == "Deploying"
    assert views.status_label(app, future, [], now) == "Delayed"
    assert views.status_label(app, past, [], now) == "Waiting"
    assert views.status_label(app, {"delay": None, "waiting": None}, [], now) == "Running"
    assert views.status_label(app, None, [], now) == "Running"


def test_counts_and_queue_item():
    tasks = [{"state": "TASK_RUNNING", "healthy": True}, {"state": "TASK_RUNNING", "healthy": False},
             {"state": "TASK_STAGING", "healthy": None}, {"state": "TASK_STARTING"}]
    assert views.counts(tasks) == {"tasksStaged": 2, "tasksRunning": 2, "tasksHealthy": 1,
                                   "tasksUnhealthy": 1}
    now = time.time()
    overdue = {"delay": {"until": format_time(now - 5), "seconds": 1}, "waiting": None}
    item = views.queue_item({"id": "/a", "instances": 3}, overdue, tasks[:1], now)
    assert item["count"] == 2 and item["delay"] == {"timeLeftSeconds": 0, "overdue": True}
    assert views.queue_item({"id": "/a", "instances": 1}, {"delay": None, "waiting": None},
                            [], now) is None


def test_label_selectors():
    """Marathon's LabelSelectorParsers: every selector needs the label to exist (`nope!=x` and
    `nope notin (x)` select nothing), backslash escapes, whitespace between tokens, an empty
    query selects everything."""
    labels = {"team": "jpm", "tier": "web", "!!!": "&&&", "a b": "c,d"}
    cases = {"team": True, "nope": False, "team==jpm": True, "team==x": False,
             "team!=x": True, "nope!=x": False, "nope notin (x)": False,
             "tier in (web, db)": True, "tier notin (web)": False, "tier notin ()": True,
             "team==jpm,tier==web": True, "team==jpm,tier==db": False,
             " team == jpm , tier in ( db , web ) ": True,
             r"\!\!\! in (\-\-\-, \&\&\&)": True, r"a\ b==c\,d": True, "": True}
    for text, expected in cases.items():
        assert views.labels_match(labels, views.parse_label_selector(text)) is expected, text
    for bad in ("a in (b", "==x", "a==b c", "a!b", "a,", "a==(b)"):
        with pytest.raises(ValueError):
            views.parse_label_selector(bad)


def test_embeds():
    """Marathon's resolution: any of its prefixes or none, `tasks` brings `deployments`,
    `failures` is tasks + lastTaskFailure + deployments, unknown values are ignored."""
    assert views.parse_embeds(["apps.tasks,apps.counts", "app.x", "apps.lastTaskFailure"]) == {
        "tasks", "deployments", "counts", "lastTaskFailure"}
    assert views.parse_embeds(["app.failures"]) == {"tasks", "lastTaskFailure", "deployments"}
    assert views.parse_embeds(["group.apps.taskStats", "readiness", "accessd"]) == {
        "taskStats", "readiness"}


def test_router_multi_segment_fields_and_order():
    router = OrderedRouter()

    class R:
        def on_get(self, req, resp, **kw):
            pass

    for template in ("/v2/apps/{appId*}/tasks/{taskId}", "/v2/apps/{appId*}/tasks",
                     "/v2/apps/{appId*}"):
        router.add_route(template, R())
    found = router.find("/v2/apps/a/b/c/tasks/a_b_c.1234")
    assert found[2] == {"app_id": "a/b/c", "task_id": "a_b_c.1234"}
    assert found[3] == "/v2/apps/{appId*}/tasks/{taskId}"
    assert router.find("/v2/apps/a/b/tasks")[2] == {"app_id": "a/b"}
    assert router.find("/v2/apps/a/b")[2] == {"app_id": "a/b"}
    assert router.find("/v2/apps") is None


def test_store_failure_is_503_without_traceback(tmp_path):
    path = tmp_path / "broken.db"
    store = SQLiteStateStore(path)
    try:
        client = falcon.testing.TestClient(create_app(ApiConfig(state_path=str(path)), store))
        assert client.simulate_get("/v2/apps").status_code == 200
        store.close()
        for suffix in ("", "-wal", "-shm"):
            p = tmp_path / ("broken.db" + suffix)
            if p.exists():
                p.unlink()
        path.write_bytes(b"this is not a database" * 100)
        broken_client = falcon.testing.TestClient(
            create_app(ApiConfig(state_path=str(path)), _Reopening(path)))
        r = broken_client.simulate_get("/v2/apps")
        assert r.status_code == 503 and r.headers["Retry-After"] == "5"
        assert "State store unavailable" in r.json["message"] and "Traceback" not in r.text
    finally:
        store.close()


class _Reopening:
    """Opens the real SQLite store on each call, as a worker would on first use."""

    def __init__(self, path):
        self.path = path

    def __getattr__(self, name):
        return getattr(SQLiteStateStore(self.path), name)


def test_event_streams_per_worker_are_bounded(tmp_path):
    from api.errors import ApiError
    from api.events import Events

    store = SQLiteStateStore(tmp_path / "streams.db")
    try:
        events = Events(store, keepalive=1, poll=0.01, max_streams=2)
        opened = []
        for _ in range(2):
            resp = falcon.Response()
            events.on_get(falcon.testing.create_req(path="/v2/events"), resp)
            opened.append(resp.stream)
        assert next(iter(opened[0])).startswith(b": accessd")
        with pytest.raises(ApiError) as refused:
            events.on_get(falcon.testing.create_req(path="/v2/events"), falcon.Response())
        assert refused.value.status_code == 503 and refused.value.headers["Retry-After"] == "5"
        opened[1].close()  # never iterated: the slot comes back all the same
        resp = falcon.Response()
        events.on_get(falcon.testing.create_req(path="/v2/events"), resp)
        store.append_event("app_terminated_event", {"appId": "/a"})
        first = iter(resp.stream)
        assert next(first).startswith(b": accessd")
        assert next(first).startswith(b"id: 1\nevent: app_terminated_event\ndata: {")
        for s in (opened[0], resp.stream):
            s.close()
    finally:
        store.close()


class _StoreWithoutJobs:
    """A real SQLite store seen through a backend that keeps no job documents."""

    def __init__(self, store):
        self._store = store

    def __getattr__(self, name):
        if name in ("list_jobs", "write_jobs", "jobs_revision", "list_job_runs"):
            raise AttributeError(name)
        return getattr(self._store, name)


def test_jobs_on_a_store_without_job_documents_are_a_clear_501(tmp_path):
    store = SQLiteStateStore(tmp_path / "state.db")
    try:
        client = falcon.testing.TestClient(
            create_app(ApiConfig(state_path=str(tmp_path / "state.db")), _StoreWithoutJobs(store)))
        assert client.simulate_get("/v2/apps").status_code == 200
        for method, path in (("GET", "/v1/scheduler/jobs"), ("PUT", "/v1/scheduler/job/x"),
                             ("POST", "/v1/scheduler/iso8601")):
            r = client.simulate_request(method, path, json={"name": "x"})
            assert r.status_code == 501, (method, path, r.status_code, r.text)
            assert "SQLite state store" in r.json["message"] and "Traceback" not in r.text
        assert client.simulate_post("/v1/scheduler/jobs").status_code == 405
    finally:
        store.close()
