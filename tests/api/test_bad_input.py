"""Bad input that could hurt the scheduler, on a real gunicorn: JSON nested too deep on every
endpoint that takes a body, ids in URLs that try path traversal or carry control characters,
job names and static file names of the same kind. Each gets a clear 4xx in the API's error
shape and leaves the store (apps, deployments, tasks, events, jobs) exactly as it was."""

from __future__ import annotations

import pytest
import requests

from api.body import MAX_DEPTH
from tests.api.conftest import snapshot
from tests.fixtures_api import start_api
from tests.support import assert_no_traceback

APP = {"id": "/bad/app", "cmd": "sleep 1000", "cpus": 0.1, "mem": 32, "instances": 0}
JOB = {"name": "bad-input-job", "command": "true", "schedule": "R/2030-01-01T00:00:00Z/PT1H"}


@pytest.fixture(scope="module")
def api(state_path, store):
    proc, base = start_api(state_path, workers=1)
    assert requests.post(base + "/v2/apps", json=APP, timeout=10).status_code == 201
    assert requests.post(base + "/v1/scheduler/iso8601", json=JOB, timeout=10).status_code == 204
    yield base
    proc.stop()
    assert_no_traceback([proc])


def everything(api: str, store) -> dict:
    jobs = requests.get(api + "/v1/scheduler/jobs", timeout=10).json()
    return {**snapshot(store), "jobs": jobs}


def refused(api: str, store, method: str, path: str, **kw) -> requests.Response:
    before = everything(api, store)
    r = requests.request(method, api + path, timeout=10, **kw)
    assert 400 <= r.status_code < 500, (method, path, r.status_code, r.text[:300])
    body = r.json()
    assert isinstance(body["message"], str) and isinstance(body["details"], list), body
    assert everything(api, store) == before, f"{method} {path} changed the store"
    return r


def nested(depth: int) -> bytes:
    """A JSON object whose field holds arrays nested so the whole is `depth` levels deep."""
    return ('{"id": "/bad/deep", "labels": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}"
            ).encode()


BODY_ENDPOINTS = [("POST", "/v2/apps"), ("PUT", "/v2/apps/bad/app"),
                  ("PATCH", "/v2/apps/bad/app"), ("POST", "/v2/groups"),
                  ("PUT", "/v2/groups/bad"), ("POST", "/v2/tasks/delete"),
                  ("POST", "/v1/scheduler/iso8601"), ("POST", "/v1/scheduler/dependency")]


@pytest.mark.parametrize("method,path", BODY_ENDPOINTS)
def test_json_nested_too_deep_is_400_on_every_body(api, store, method, path):
    headers = {"Content-Type": "application/json"}
    for body in (nested(MAX_DEPTH + 1), b"[" * 200_000 + b"]" * 200_000):
        r = refused(api, store, method, path, data=body, headers=headers)
        assert r.status_code == 400, r.text[:300]
        assert r.json()["message"] == f"Invalid JSON: nested deeper than {MAX_DEPTH} levels"


def test_json_at_the_depth_limit_is_parsed(api, store):
    # Exactly MAX_DEPTH levels is not refused for its depth (it is refused for what it says).
    r = refused(api, store, "POST", "/v2/apps", data=nested(MAX_DEPTH),
                headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "nested" not in r.json()["message"]


TRAVERSALS = ["%2e%2e/x", "bad/%2e%2e/other", "bad/%2e/app", "%2E%2E/%2E%2E/etc/passwd",
              "bad/app%00", "bad/a%01pp", "bad/app%7f", "%c2%85bad"]


@pytest.mark.parametrize("raw", TRAVERSALS)
def test_app_ids_in_urls_with_traversal_or_control_characters_are_400(api, store, raw):
    for method, path, kw in (("GET", f"/v2/apps/{raw}", {}),
                             ("PUT", f"/v2/apps/{raw}", {"json": {"instances": 1}}),
                             ("PATCH", f"/v2/apps/{raw}", {"json": {"instances": 1}}),
                             ("DELETE", f"/v2/apps/{raw}", {}),
                             ("POST", f"/v2/apps/{raw}/restart", {}),
                             ("DELETE", f"/v2/queue/{raw}/delay", {}),
                             ("GET", f"/v2/groups/{raw}", {}),
                             ("PUT", f"/v2/groups/{raw}", {"json": {"apps": [APP]}}),
                             ("DELETE", f"/v2/groups/{raw}", {})):
        r = refused(api, store, method, path, **kw)
        assert r.status_code == 400, (method, path, r.text)
        assert r.json()["message"].startswith(("Invalid app id", "Invalid group id"))


def test_a_group_id_in_the_body_that_climbs_out_is_400(api, store):
    r = refused(api, store, "POST", "/v2/groups",
                json={"id": "/bad/../../x", "apps": [{**APP, "id": "a"}]})
    assert r.status_code == 400 and "in the body" in r.json()["message"]


@pytest.mark.parametrize("name", ["..", ".", "a\nb", "tab\there", "nul\x00", "esc\x1b[31m",
                                  "../../etc/passwd", "a/b"])
def test_job_names_with_traversal_or_control_characters_are_400(api, store, name):
    r = refused(api, store, "POST", "/v1/scheduler/iso8601", json={**JOB, "name": name})
    assert r.status_code == 400 and "/name" in str(r.json()["details"])


@pytest.mark.parametrize("name", ["%2e%2e%2fapp.py", "..%2f..%2fsetup.py", "app.js%0a",
                                  "%2e%2e", "app.js%00.css"])
def test_static_file_names_that_try_traversal_are_404(api, name):
    r = requests.get(f"{api}/static/{name}", timeout=10)
    assert r.status_code == 404 and "Traceback" not in r.text
    assert r.json()["message"]
