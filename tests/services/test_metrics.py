"""The services' `/metrics` exporter in process: names, labels, buckets, content type, and one
registry per app instance (each gunicorn worker reports only its own requests)."""

from __future__ import annotations

import falcon.testing

from services.common import LATENCY_BUCKETS, ServiceConfig, make_app
from services.openapi import QUOTE, op
from services.store import QuoteStore, StoreUnavailable
from tests.support import metric_samples


class DownStore(QuoteStore):
    def write(self, quotes):  # type: ignore[no-untyped-def]
        raise StoreUnavailable("down")

    def read_range(self, symbol, start_ms=None, end_ms=None, *, limit=None):  # type: ignore[no-untyped-def]
        raise StoreUnavailable("down")

    def last(self, symbol):  # type: ignore[no-untyped-def]
        raise StoreUnavailable("down")

    def has_symbol(self, symbol):  # type: ignore[no-untyped-def]
        raise StoreUnavailable("down")

    def symbols(self):  # type: ignore[no-untyped-def]
        raise StoreUnavailable("down")

    def ping(self) -> None:
        raise StoreUnavailable("down")

    def close(self) -> None:
        pass


class Last:
    # make_app refuses a responder without its OpenAPI entry (services.openapi)
    OPENAPI = {"get": op("The last quote", QUOTE, errors=(404, 503))}

    def __init__(self, store: QuoteStore) -> None:
        self.store = store

    def on_get(self, req, resp, symbol):  # type: ignore[no-untyped-def]
        resp.media = self.store.last(symbol)


def client() -> falcon.testing.TestClient:
    store = DownStore()
    app = make_app("quotes", ServiceConfig(store_url="sqlite://unused"), store,
                   [("/quotes/{symbol}/last", Last(store))])
    return falcon.testing.TestClient(app)


def test_names_labels_buckets_and_content_type():
    c = client()
    assert c.simulate_get("/quotes/JPM/last").status_code == 503
    assert c.simulate_get("/nope").status_code == 404
    resp = c.simulate_get("/metrics")
    assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = resp.text
    for name, kind in [("accessd_http_requests_total", "counter"),
                       ("accessd_http_request_duration_seconds", "histogram"),
                       ("accessd_store_unavailable_total", "counter"),
                       ("process_start_time_seconds", "gauge")]:
        assert f"# TYPE {name} {kind}\n" in text
    got = metric_samples(text)
    # Exactly these series: no `_created`, no process collector.
    assert set(got) == {"accessd_http_requests_total", "accessd_http_request_duration_seconds_bucket",
                        "accessd_http_request_duration_seconds_sum",
                        "accessd_http_request_duration_seconds_count",
                        "accessd_store_unavailable_total", "process_start_time_seconds"}
    assert ({"service": "quotes", "route": "/quotes/{symbol}/last", "method": "GET",
             "status": "503"}, 1.0) in got["accessd_http_requests_total"]
    assert ({"service": "quotes", "route": "unmatched", "method": "GET", "status": "404"},
            1.0) in got["accessd_http_requests_total"]
    bounds = [labels["le"] for labels, _ in got["accessd_http_request_duration_seconds_bucket"]
              if labels["route"] == "unmatched"]
    assert bounds == [repr(b) for b in LATENCY_BUCKETS] + ["+Inf"]
    assert got["accessd_store_unavailable_total"] == [({"service": "quotes"}, 1.0)]
    [(labels, started)] = got["process_start_time_seconds"]
    assert labels == {} and started > 1.7e9


def test_each_app_instance_counts_its_own_requests():
    a, b = client(), client()
    a.simulate_get("/nope")
    a.simulate_get("/nope")
    got_a = metric_samples(a.simulate_get("/metrics").text)["accessd_http_requests_total"]
    got_b = metric_samples(b.simulate_get("/metrics").text)
    assert ({"service": "quotes", "route": "unmatched", "method": "GET", "status": "404"},
            2.0) in got_a
    assert "accessd_http_requests_total" not in got_b
    assert got_b["accessd_store_unavailable_total"] == [({"service": "quotes"}, 0.0)]
