"""The last-quote service, on a real gunicorn over a SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.store import Quote, open_store
from tests.services.service_fixtures import (
    SYMBOL,
    Service,
    assert_error,
    bring_store_back,
    metric_value,
    seed,
    take_store_away,
)
from tests.support import wait_until


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "quotes.db"
    seed(f"sqlite://{path}", days=1)
    return path


@pytest.fixture
def service(db: Path) -> Iterator[Service]:
    svc = Service("quotes", f"sqlite://{db}")
    yield svc
    svc.stop()


def test_last_quote_is_the_latest_bar(service: Service, db: Path):
    with open_store(f"sqlite://{db}") as store:
        last = store.last(SYMBOL)
    assert last is not None
    resp = service.get(f"/quotes/{SYMBOL}/last")
    assert resp.status_code == 200
    assert resp.json() == last.to_json()
    assert resp.json()["ts"] == "2026-01-02T20:59:00.000Z"   # 15:59 New York, the last bar


def test_a_newer_quote_is_seen_at_once(service: Service, db: Path):
    newer = Quote(SYMBOL, 1_800_000_000_000, 1.0, 2.0, 0.5, 1.5, 7)
    with open_store(f"sqlite://{db}") as store:
        store.write([newer])
    assert service.get(f"/quotes/{SYMBOL}/last").json() == newer.to_json()


def test_fields(service: Service):
    doc = service.get(f"/quotes/{SYMBOL}/last", params={"fields": "close"}).json()
    assert set(doc) == {"symbol", "ts", "epochMs", "close"}
    assert_error(service.get(f"/quotes/{SYMBOL}/last", params={"fields": "price"}), 400)
    assert_error(service.get(f"/quotes/{SYMBOL}/last", params={"limit": "1"}), 400)


def test_unknown_symbol_is_404(service: Service):
    assert "ZZZ" in assert_error(service.get("/quotes/ZZZ/last"), 404)["description"]


def test_store_outage_is_503_with_retry_after_and_recovers(service: Service, db: Path):
    aside = take_store_away(db)
    resp = service.get(f"/quotes/{SYMBOL}/last")
    assert_error(resp, 503)
    assert resp.headers["Retry-After"] == "2"
    assert service.get("/health").status_code == 503
    bring_store_back(aside, db)
    wait_until(lambda: service.get(f"/quotes/{SYMBOL}/last").status_code == 200, timeout=10,
               message="last quote served again")
    assert service.get("/health").json() == {"status": "ok", "store": "reachable"}
    metrics = service.get("/metrics").text
    assert 'accessd_store_unavailable_total{service="quotes"} ' in metrics
    assert metric_value(metrics, "accessd_http_requests_total", service="quotes",
                        route="/quotes/{symbol}/last", method="GET", status="503") == 1


def test_two_workers_serve_concurrent_clients(db: Path):
    from concurrent.futures import ThreadPoolExecutor

    svc = Service("quotes", f"sqlite://{db}", workers=2)
    try:
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(
                lambda _: svc.get(f"/quotes/{SYMBOL}/last").status_code, range(200)))
        assert statuses == [200] * 200
    finally:
        svc.stop()


def test_a_service_started_before_its_store_exists_recovers(tmp_path: Path):
    db = tmp_path / "later" / "quotes.db"     # its directory does not exist yet
    svc = Service("quotes", f"sqlite://{db}")
    try:
        assert_error(svc.get("/health"), 503)
        assert_error(svc.get(f"/quotes/{SYMBOL}/last"), 503)
        db.parent.mkdir()
        seed(f"sqlite://{db}", days=1)
        wait_until(lambda: svc.get(f"/quotes/{SYMBOL}/last").status_code == 200, timeout=10,
                   message="quotes once the store exists")
    finally:
        svc.stop()


@pytest.mark.parametrize("name", ["timeseries", "quotes", "prediction"])
def test_example_app_definition_runs_and_gets_healthy(tmp_path: Path, db: Path, name: str):
    """The example app's `cmd`, as an executor would run it: sh -c, PORT0 and env filled in."""
    import json
    import os

    import requests

    from services.model import publish, train
    from tests.support import PYTHON, REPO, Proc, free_port

    app = json.loads((REPO / "examples" / "apps" / f"{name}.json").read_text())
    assert app["id"] == f"/jpm/{name}" and app["portDefinitions"] == [
        {"port": 0, "protocol": "tcp", "name": "http"}]
    assert app["healthChecks"][0]["path"] == "/health"
    models = tmp_path / "models"
    with open_store(f"sqlite://{db}") as store:
        closes = [q.close for q in store.read_range(SYMBOL)]
    import numpy as np

    publish(models, *train(SYMBOL, np.array(closes), 10))
    env = dict(app["env"])
    assert env == {"ACCESSD_STORE": "@ACCESSD_STORE@", "ACCESSD_MODELS_DIR": "@ACCESSD_MODELS_DIR@"}
    port = free_port()
    env.update(ACCESSD_STORE=f"sqlite://{db}", ACCESSD_MODELS_DIR=str(models), PORT0=str(port),
               PATH=os.path.dirname(PYTHON) + os.pathsep + os.environ.get("PATH", ""))
    proc = Proc(["sh", "-c", app["cmd"]], env=env, cwd=tmp_path)
    try:
        wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/health", timeout=2)
                   .status_code == 200, timeout=30, message=f"{name} healthy")
    finally:
        proc.stop(grace=5)
