"""`Accept: text/plain` on /v2/tasks and /v2/apps/{id}/tasks: Marathon's script format, asked
for with raw HTTP requests as curl sends them."""

from __future__ import annotations

import socket

import pytest

from api.tasks_text import endpoints_text
from scheduler.spec import iso_now, parse_app, stamp_app
from scheduler.sqlite_state import SQLiteStateStore
from tests.api.conftest import make_task
from tests.fixtures_api import start_api


def test_format_one_line_per_service_port_tab_separated():
    apps = [{"id": "/jpm/ts", "portDefinitions": [{"port": 10000}, {"port": 10001}]},
            {"id": "/bare", "portDefinitions": []}]
    tasks = {"/jpm/ts": [{"host": "127.0.1.1", "ports": [31000, 31001], "state": "TASK_RUNNING"},
                         {"host": "127.0.1.2", "ports": [30000], "state": "TASK_RUNNING"},
                         {"host": "127.0.1.3", "ports": [29000, 29001],
                          "state": "TASK_STAGING"}],
             "/bare": [{"host": "127.0.1.3", "ports": [], "state": "TASK_RUNNING"}]}
    assert endpoints_text(apps, tasks) == (
        "jpm_ts\t10000\t127.0.1.1:31000\t127.0.1.2:30000\t\n"
        "jpm_ts\t10001\t127.0.1.1:31001\t127.0.1.2:0\t\n"
        "bare\t \t127.0.1.3 \n")
    assert endpoints_text([{"id": "/idle", "portDefinitions": [{"port": 10002}]}], {}) == \
        "idle\t10002\t\n"


def raw_get(base: str, path: str, accept: str | None) -> tuple[str, dict[str, str], str]:
    """One HTTP/1.1 GET as curl writes it; returns (status line, headers, body)."""
    host, port = base.removeprefix("http://").split(":")
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "User-Agent: curl/7.88.1"]
    if accept is not None:
        lines.append(f"Accept: {accept}")
    request = ("\r\n".join(lines + ["Connection: close", "", ""])).encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *header_lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return status, headers, body.decode()


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    state = tmp_path_factory.mktemp("text") / "state.db"
    store = SQLiteStateStore(state)
    for doc in ({"id": "/jpm/timeseries", "cmd": "x", "portDefinitions": [{"port": 10000}]},
                {"id": "/jpm/quotes", "cmd": "x", "portDefinitions": [{"port": 10001}]}):
        app = stamp_app(parse_app(doc).to_json(), None, iso_now(), scale_only=False)
        store.apply_app_change(app["id"], app, None)
    ts, quotes = store.get_app("/jpm/timeseries"), store.get_app("/jpm/quotes")
    store.upsert_task(make_task(ts, host="127.0.1.1", port=31001))
    store.upsert_task(make_task(ts, host="127.0.1.2", port=30001))
    store.upsert_task(make_task(quotes, host="127.0.1.3", port=29001))
    store.upsert_task(make_task(quotes, host="127.0.1.1", port=31002, state="TASK_STAGING"))
    proc, base = start_api(state, workers=1)
    yield base
    proc.stop()
    store.close()


def test_text_plain_answers_in_marathons_format(api):
    status, headers, body = raw_get(api, "/v2/tasks", "text/plain")
    assert status == "HTTP/1.1 200 OK" and headers["content-type"].startswith("text/plain")
    lines = body.splitlines(keepends=True)
    assert lines[0] == "jpm_quotes\t10001\t127.0.1.3:29001\t\n"  # running tasks only
    assert lines[1].startswith("jpm_timeseries\t10000\t") and len(lines) == 2
    assert sorted(lines[1].rstrip("\n").split("\t")[2:]) == ["", "127.0.1.1:31001",
                                                              "127.0.1.2:30001"]
    status, _, body = raw_get(api, "/v2/apps/jpm/quotes/tasks", "text/plain")
    assert status.endswith("200 OK") and body == "jpm_quotes\t10001\t127.0.1.3:29001\t\n"
    status, _, body = raw_get(api, "/v2/apps/jpm/nothing/tasks", "text/plain")
    assert status.endswith("404 Not Found")


def test_json_stays_the_default(api):
    for accept in (None, "*/*", "application/json", "application/json, text/plain;q=0.5"):
        status, headers, body = raw_get(api, "/v2/tasks", accept)
        assert status.endswith("200 OK") and headers["content-type"].startswith(
            "application/json"), (accept, headers)
        assert body.startswith('{"tasks":')
    _, headers, _ = raw_get(api, "/v2/tasks", "text/plain;q=0.9, application/json;q=0.1")
    assert headers["content-type"].startswith("text/plain")
