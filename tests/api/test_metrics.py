"""The API's `/metrics` in process, on the real Falcon app over a real SQLite store file: names,
labels, buckets, content type, the store gauges read at scrape time, and one registry per app
instance (each gunicorn worker reports only its own requests)."""

from __future__ import annotations

import falcon.testing

from api.app import ApiConfig, create_app
from api.metrics import LATENCY_BUCKETS
from scheduler.sqlite_state import SQLiteStateStore
from tests.support import metric_samples

APP = {"id": "/m/app", "cmd": "sleep 1", "cpus": 0.1, "mem": 16, "instances": 3}


def test_api_metrics(tmp_path):
    store = SQLiteStateStore(tmp_path / "state.db")
    try:
        client = falcon.testing.TestClient(create_app(ApiConfig(state_path="unused"), store))
        other = falcon.testing.TestClient(create_app(ApiConfig(state_path="unused"), store))
        assert client.simulate_post("/v2/apps", json=APP).status_code == 201
        assert client.simulate_get("/v2/apps/m/app").status_code == 200
        resp = client.simulate_get("/metrics")
        assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = resp.text
        for name, kind in [("accessd_api_requests_total", "counter"),
                           ("accessd_api_request_duration_seconds", "histogram"),
                           ("accessd_apps", "gauge"), ("accessd_app_instances_desired", "gauge"),
                           ("accessd_tasks", "gauge"), ("accessd_deployments_active", "gauge"),
                           ("accessd_apps_delayed", "gauge"), ("accessd_apps_waiting", "gauge"),
                           ("process_start_time_seconds", "gauge"),
                           ("accessd_store_write_transactions_total", "counter"),
                           ("accessd_store_writes_total", "counter"),
                           ("accessd_store_write_turn_wait_seconds_total", "counter"),
                           ("accessd_store_write_turn_held_seconds_total", "counter"),
                           ("accessd_store_write_turn_cpu_seconds_total", "counter")]:
            assert f"# TYPE {name} {kind}\n" in text
        got = metric_samples(text)
        assert not any(name.endswith("_created") for name in got)
        assert ({"route": "/v2/apps", "method": "POST", "status": "201"}, 1.0) in \
            got["accessd_api_requests_total"]
        assert ({"route": "/v2/apps/{appId*}", "method": "GET", "status": "200"}, 1.0) in \
            got["accessd_api_requests_total"]
        bounds = [labels["le"] for labels, _ in got["accessd_api_request_duration_seconds_bucket"]
                  if labels["route"] == "/v2/apps"]
        assert bounds == [repr(b) for b in LATENCY_BUCKETS] + ["+Inf"]
        assert got["accessd_apps"] == [({}, 1.0)]
        assert got["accessd_app_instances_desired"] == [({}, 3.0)]
        assert got["accessd_deployments_active"] == [({}, 1.0)]
        assert ({"state": "TASK_RUNNING"}, 0.0) in got["accessd_tasks"]
        assert ({"state": "TASK_STAGING"}, 0.0) in got["accessd_tasks"]
        assert got["accessd_apps_delayed"] == [({}, 0.0)]
        assert got["accessd_apps_waiting"] == [({}, 0.0)]
        # The POST was one write transaction of this process's writers' turn.
        assert got["accessd_store_write_transactions_total"] == [({}, 1.0)]
        assert got["accessd_store_writes_total"] == [({}, 1.0)]
        [(_, held)] = got["accessd_store_write_turn_held_seconds_total"]
        [(_, cpu)] = got["accessd_store_write_turn_cpu_seconds_total"]
        assert held >= cpu > 0
        # Another app instance (another worker): its own requests, the same store gauges.
        got_other = metric_samples(other.simulate_get("/metrics").text)
        assert "accessd_api_requests_total" not in got_other
        assert got_other["accessd_apps"] == [({}, 1.0)]
    finally:
        store.close()


def test_repeated_requests_count_on_the_same_children(tmp_path):
    """The middleware keeps each (route, method, status)'s children (no `labels()` per
    request): every request still counts once, in its own series."""
    store = SQLiteStateStore(tmp_path / "state.db")
    try:
        client = falcon.testing.TestClient(create_app(ApiConfig(state_path="unused"), store))
        assert client.simulate_post("/v2/apps", json=APP).status_code == 201
        for _ in range(3):
            assert client.simulate_get("/v2/apps/m/app").status_code == 200
        for _ in range(2):
            assert client.simulate_get("/v2/apps/m/none").status_code == 404
        got = metric_samples(client.simulate_get("/metrics").text)
        route = "/v2/apps/{appId*}"
        assert ({"route": route, "method": "GET", "status": "200"}, 3.0) in \
            got["accessd_api_requests_total"]
        assert ({"route": route, "method": "GET", "status": "404"}, 2.0) in \
            got["accessd_api_requests_total"]
        assert ({"route": route}, 5.0) in got["accessd_api_request_duration_seconds_count"]
    finally:
        store.close()
