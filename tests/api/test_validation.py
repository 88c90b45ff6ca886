"""Refused requests on a real gunicorn: each bad input gets the right status and a clear
Marathon-shaped message, and leaves the store exactly as it was. Also the read-only endpoints:
info, leader, ping, the status page files, metrics (parsed) and the OpenAPI document (which must
list every route of the router)."""

from __future__ import annotations

import json
import re
import socket

import pytest
import requests

from api.app import ApiConfig, create_app
from tests.api.conftest import snapshot
from tests.fixtures_api import start_api
from tests.support import PYTHON, REPO, Proc, assert_no_traceback, free_port

MAX_BODY = 1024 * 1024
SERVER: dict[str, Proc] = {}


def valid(app_id: str = "/v/app") -> dict:
    return {"id": app_id, "cmd": "sleep 1000", "cpus": 0.1, "mem": 32, "instances": 1}


@pytest.fixture(scope="module")
def api(state_path, store):
    proc, base = start_api(state_path, workers=2, extra_args=("--max-body", str(MAX_BODY)))
    r = requests.post(base + "/v2/apps", json=valid(), timeout=10)
    assert r.status_code == 201, r.text
    SERVER["proc"] = proc
    yield base
    proc.stop()
    # Every refusal of the module was an answer, not a crash (checked whichever tests ran).
    assert_no_traceback([proc])


def test_without_credentials_it_says_so_and_stays_on_loopback(api, state_path):
    line = SERVER["proc"].wait_for_line(lambda s: "no credentials configured" in s, timeout=10)
    assert "binding to 127.0.0.1 only, every local caller may change state" in line
    # A non-loopback address is refused outright (nothing is bound: the command exits).
    refused_proc = Proc([PYTHON, "-m", "accessd.cli", "api", "--bind", f"0.0.0.0:{free_port()}",
                         "--workers", "1", "--state", str(state_path)], cwd=REPO)
    try:
        assert refused_proc.popen.wait(30) == 2
        assert "refusing to bind to 0.0.0.0" in refused_proc.output()
    finally:
        refused_proc.stop()


def refused(store, send) -> requests.Response:
    before = snapshot(store)
    r = send()
    assert snapshot(store) == before, "a refused request changed the store"
    body = r.json()
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], list)
    assert "Traceback" not in r.text
    return r


def paths(r: requests.Response) -> dict[str, list[str]]:
    return {d["path"]: d["errors"] for d in r.json()["details"]}


def test_malformed_json_is_400(api, store):
    r = refused(store, lambda: requests.post(
        api + "/v2/apps", data=b'{"id": "/x", "cmd": ', timeout=10,
        headers={"Content-Type": "application/json"}))
    assert r.status_code == 400 and r.json()["message"].startswith("Invalid JSON")
    r = refused(store, lambda: requests.post(api + "/v2/apps", json=[valid("/x")], timeout=10))
    assert r.status_code == 400 and "JSON object" in r.json()["message"]
    r = refused(store, lambda: requests.post(api + "/v2/apps", data=json.dumps(valid("/x")),
                                             headers={"Content-Type": "text/csv"}, timeout=10))
    assert r.status_code == 400 and "Content-Type" in r.json()["message"]
    r = refused(store, lambda: requests.put(api + "/v2/apps/v/app", data=b"", timeout=10,
                                            headers={"Content-Type": "application/json"}))
    assert r.status_code == 400 and "empty" in r.json()["message"]


def test_unknown_field_with_typo_is_422_with_hint(api, store):
    doc = valid("/x")
    doc["instanses"] = 2
    r = refused(store, lambda: requests.post(api + "/v2/apps", json=doc, timeout=10))
    assert r.status_code == 422
    assert "did you mean 'instances'" in " ".join(paths(r)["/instanses"])


def test_zero_and_negative_resources_are_422(api, store):
    doc = valid("/x")
    doc.update(cpus=0, mem=-5, instances=-1)
    r = refused(store, lambda: requests.post(api + "/v2/apps", json=doc, timeout=10))
    assert r.status_code == 422
    assert {"/cpus", "/mem", "/instances"} <= set(paths(r))  # every problem at once
    r = refused(store, lambda: requests.put(api + "/v2/apps/v/app", json={"instances": -2},
                                            timeout=10))
    assert r.status_code == 422 and "/instances" in paths(r)


def test_bad_constraints_are_422(api, store):
    doc = valid("/x")
    doc["constraints"] = [["hostname", "UNIQE"], ["rack", "LIKE", "r[0-"]]
    r = refused(store, lambda: requests.post(api + "/v2/apps", json=doc, timeout=10))
    assert r.status_code == 422
    text = json.dumps(r.json()["details"])
    assert "UNIQE" in text and "r[0-" in text


def test_patch_with_invalid_change_is_422(api, store):
    r = refused(store, lambda: requests.patch(api + "/v2/apps/v/app", json={"mem": 0},
                                              timeout=10))
    assert r.status_code == 422 and "/mem" in paths(r)
    r = refused(store, lambda: requests.put(api + "/v2/apps/v/app",
                                            json=valid("/v/other"), timeout=10))
    assert r.status_code == 422 and "/id" in paths(r)


def test_duplicate_id_is_409(api, store):
    r = refused(store, lambda: requests.post(api + "/v2/apps", json=valid(), timeout=10))
    assert r.status_code == 409 and "already exists" in r.json()["message"]


def test_unknown_things_are_404_and_wrong_methods_405(api, store):
    for send in (lambda: requests.get(api + "/v2/apps/v/nope", timeout=10),
                 lambda: requests.patch(api + "/v2/apps/v/nope", json={"mem": 64}, timeout=10),
                 lambda: requests.put(api + "/v2/apps/v/nope", json={"instances": 2}, timeout=10),
                 lambda: requests.post(api + "/v2/apps/v/nope/restart", timeout=10),
                 lambda: requests.get(api + "/v2/apps/v/nope/tasks", timeout=10),
                 lambda: requests.delete(api + "/v2/deployments/nope", timeout=10),
                 lambda: requests.get(api + "/v2/nothing", timeout=10),
                 lambda: requests.get(api + "/v2/apps/Bad_Id", timeout=10)):
        assert refused(store, send).status_code == 404
    r = refused(store, lambda: requests.delete(api + "/v2/apps", timeout=10))
    assert r.status_code == 405 and "POST" in r.headers["Allow"]


def test_bad_query_parameters_are_400(api, store):
    r = refused(store, lambda: requests.put(api + "/v2/apps/v/app?force=maybe",
                                            json={"instances": 2}, timeout=10))
    assert r.status_code == 400
    r = refused(store, lambda: requests.get(api + "/v2/apps", params={"label": "a in (b"},
                                            timeout=10))
    assert r.status_code == 400


def _raw_request(api: str, head: bytes, body_parts, read_timeout: float = 10.0) -> bytes:
    host, port = api.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=read_timeout) as s:
        s.sendall(head)
        for part in body_parts:
            try:
                s.sendall(part)
            except OSError:  # the server answered and closed: exactly what we want to see
                break
        chunks = []
        while True:
            try:
                data = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            chunks.append(data)
            if b"\r\n\r\n" in b"".join(chunks) and b'"message"' in b"".join(chunks):
                break
        return b"".join(chunks)


def test_ten_megabyte_body_is_413_without_reading_it(api, store):
    before = snapshot(store)
    size = 10 * 1024 * 1024
    head = (f"POST /v2/apps HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {size}\r\n\r\n").encode()
    # Only 64 KiB of the announced 10 MB are ever sent: the answer must come anyway.
    answer = _raw_request(api, head, [b'{"id": "/big", "cmd": "' + b"x" * 65000])
    status_line = answer.split(b"\r\n", 1)[0]
    assert b" 413 " in status_line, answer[:300]
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1].split(b"\n")[0] or b"{}")
    assert "too large" in body["message"]
    assert snapshot(store) == before


def test_chunked_body_over_the_limit_is_413(api, store):
    before = snapshot(store)
    head = (b"POST /v2/apps HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"x" * 65536
    parts = [b"%x\r\n" % len(chunk) + chunk + b"\r\n" for _ in range(MAX_BODY // len(chunk) + 2)]
    answer = _raw_request(api, head, parts)
    assert b" 413 " in answer.split(b"\r\n", 1)[0], answer[:300]
    assert snapshot(store) == before


def test_ping_info_leader_and_static(api, store):
    assert requests.get(api + "/ping", timeout=10).text == "pong"
    store.set_framework_id("fw-test-0001")
    info = requests.get(api + "/v2/info", timeout=10).json()
    assert info["name"] == "accessd" and info["frameworkId"] == "fw-test-0001"
    port = int(api.rsplit(":", 1)[1])
    assert info["leader"] == f"127.0.0.1:{port}" and info["http_config"]["http_port"] == port
    assert requests.get(api + "/v2/leader", timeout=10).json() == {"leader": f"127.0.0.1:{port}"}
    assert requests.get(api + "/static/..%2Fapp.py", timeout=10).status_code == 404
    index = requests.get(api + "/", timeout=10)
    assert index.status_code in (200, 404)  # the status page is the ui helper's file
    if index.status_code == 200:
        assert index.headers["Content-Type"].startswith("text/html")


# Values in Go's float syntax, as prometheus_client writes them (e.g. a short latency sum 9.5e-05).
_SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_]\w*="(?:[^"\\]|\\.)*",?)*\})?'
                        r" (-?[0-9.]+(?:e[+-]?[0-9]+)?|[+-]Inf|NaN)$")


def parse_metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """A strict reading of the Prometheus text format: every line is a comment or a sample."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        if not line or line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        m = _SAMPLE_RE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        labels = dict(re.findall(r'([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out.setdefault(m.group(1), []).append((labels, float(m.group(3))))
    return out


def test_metrics_parse_and_count(api, store):
    # The requests the counts below look for, made here (the test runs alone too), on one
    # kept-alive connection: the counters are per gunicorn worker, and a new connection may
    # go to the other worker than the scrape does.
    with requests.Session() as one_worker:
        for _ in range(3):
            one_worker.get(api + "/v2/apps", timeout=10)
        assert one_worker.get(api + "/v2/apps/v/app", timeout=10).status_code == 200
        assert one_worker.get(api + "/nope", timeout=10).status_code == 404
        text = one_worker.get(api + "/metrics", timeout=10).text
    metrics = parse_metrics(text)
    apps = metrics["accessd_apps"][0][1]
    assert apps == len(store.list_apps())
    requests_total = metrics["accessd_api_requests_total"]
    # Counted by route template, never by raw path.
    assert all("/nope" not in labels["route"] for labels, _ in requests_total)
    assert any(labels["route"] == "/v2/apps/{appId*}" for labels, _ in requests_total)
    assert "accessd_api_request_duration_seconds_bucket" in metrics
    assert any(labels.get("state") == "TASK_RUNNING" for labels, _ in metrics["accessd_tasks"])
    assert "# TYPE accessd_api_requests_total counter" in text


def test_openapi_lists_every_route(api, store, tmp_path):
    doc = requests.get(api + "/v2/openapi.json", timeout=10).json()
    assert doc["openapi"].startswith("3.")
    # The router of an app built the same way: every (template, method) must be documented.
    app = create_app(ApiConfig(state_path=str(tmp_path / "unused.db")), store)
    router = app._router  # noqa: SLF001 - the route table is what the document claims to cover
    expected = {(r.template.replace("*}", "}"), m.lower()) for r in router.routes
                for m in r.methods()}
    documented = {(p, m) for p, item in doc["paths"].items() for m in item}
    assert expected == documented
    assert ("/v2/apps/{appId}/tasks/{taskId}", "delete") in documented
    assert ("/v2/events", "get") in documented and ("/v2/queue/{appId}/delay", "delete") in documented
    apps_get = doc["paths"]["/v2/apps"]["get"]
    assert {"embed", "id", "label"} <= {p["name"] for p in apps_get["parameters"]}
    for item in doc["paths"].values():
        for op in item.values():
            assert op["summary"], op["operationId"]


def test_racing_creates_have_one_winner(api, store):
    from concurrent.futures import ThreadPoolExecutor

    doc = valid("/v/race")
    with ThreadPoolExecutor(8) as pool:
        codes = sorted(pool.map(lambda _: requests.post(api + "/v2/apps", json=doc,
                                                        timeout=30).status_code, range(8)))
    assert codes == [201] + [409] * 7
    deps = [d for d in store.list_deployments(active_only=False)
            if d["affectedApps"] == ["/v/race"]]
    assert len(deps) == 1
