"""The prediction service, on a real gunicorn over a SQLite store and a models directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from services.model import load_current, publish, train
from services.prediction import latest_quotes
from services.store import Quote, QuoteStore, open_store
from tests.services.service_fixtures import (
    SYMBOL,
    Service,
    assert_error,
    bring_store_back,
    seed,
    take_store_away,
)
from tests.support import wait_until


def train_and_publish(db: Path, models: Path, window: int) -> str:
    with open_store(f"sqlite://{db}") as store:
        closes = np.array([q.close for q in store.read_range(SYMBOL)])
    model, metrics = train(SYMBOL, closes, window)
    return publish(models, model, metrics)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    db, models = tmp_path / "quotes.db", tmp_path / "models"
    seed(f"sqlite://{db}", days=2)
    assert train_and_publish(db, models, window=10) == "v1"
    return db, models


@pytest.fixture
def service(setup: tuple[Path, Path]) -> Iterator[Service]:
    db, models = setup
    svc = Service("prediction", f"sqlite://{db}", models)
    yield svc
    svc.stop()


def test_get_predicts_from_the_latest_quotes(service: Service, setup: tuple[Path, Path]):
    db, models = setup
    with open_store(f"sqlite://{db}") as store:
        recent = list(store.read_range(SYMBOL))[-11:]
    model = load_current(models, SYMBOL)
    assert model is not None
    doc = service.get(f"/predict/{SYMBOL}").json()
    assert doc["modelVersion"] == "v1"
    assert doc["inputTs"] == recent[-1].to_json()["ts"]
    assert doc["inputEpochMs"] == recent[-1].ts
    assert doc["prediction"] == pytest.approx(model.predict([q.close for q in recent]))


def test_post_single_and_batch(service: Service, setup: tuple[Path, Path]):
    model = load_current(setup[1], SYMBOL)
    assert model is not None
    closes = [100 + 0.1 * i for i in range(15)]
    doc = service.post("/predict", json={"symbol": SYMBOL, "closes": closes,
                                         "ts": "2026-01-05T15:00:00Z"}).json()
    assert doc["prediction"] == pytest.approx(model.predict(closes))
    assert doc["modelVersion"] == "v1"
    assert doc["inputTs"] == "2026-01-05T15:00:00.000Z"
    batch = service.post("/predict", json={"symbol": SYMBOL, "inputs": [
        {"closes": closes[:11], "ts": 1767625200000}, {"closes": closes[4:]}]}).json()
    assert [p["prediction"] for p in batch["predictions"]] == pytest.approx(
        [model.predict(closes[:11]), model.predict(closes[4:])])
    assert [p["inputTs"] for p in batch["predictions"]] == ["2026-01-05T15:00:00.000Z", None]


@pytest.mark.parametrize("body", [
    {"symbol": SYMBOL, "closes": [1.0] * 5},                 # fewer than window + 1
    {"symbol": SYMBOL, "closes": [1.0] * 10 + [-1.0]},       # not positive
    {"symbol": SYMBOL, "closes": ["1"] * 11},
    {"symbol": SYMBOL},
    {"symbol": SYMBOL, "closes": [1.0] * 11, "inputs": []},
    {"symbol": SYMBOL, "inputs": []},
    {"symbol": SYMBOL, "inputs": [{"closes": [1.0] * 11, "extra": 1}]},
    {"symbol": SYMBOL, "closes": [1.0] * 11, "ts": "not a time"},
    {"closes": [1.0] * 11},
    [1, 2, 3],
])
def test_bad_bodies_are_400(service: Service, body: object):
    assert_error(service.post("/predict", json=body), 400)


def test_malformed_json_is_400(service: Service):
    assert_error(service.post("/predict", data=b"{nope",
                              headers={"Content-Type": "application/json"}), 400)


def test_unknown_symbol_or_model_is_404(service: Service):
    assert_error(service.get("/predict/NOPE"), 404)
    assert_error(service.post("/predict", json={"symbol": "NOPE", "closes": [1.0] * 11}), 404)
    assert_error(service.get("/predict/..%2F..%2Fetc"), 404)
    assert_error(service.get("/models/NOPE"), 404)


def test_model_info(service: Service):
    doc = service.get(f"/models/{SYMBOL}").json()
    assert doc["version"] == "v1" and doc["window"] == 10 and doc["inputsNeeded"] == 11


def test_a_new_version_is_served_without_a_restart(service: Service, setup: tuple[Path, Path]):
    db, models = setup
    pid_before = service.proc.pid
    assert train_and_publish(db, models, window=5) == "v2"
    doc = wait_until(lambda: (d := service.get(f"/predict/{SYMBOL}").json())["modelVersion"]
                     == "v2" and d, timeout=10, message="v2 served")
    assert service.get(f"/models/{SYMBOL}").json()["inputsNeeded"] == 6
    assert service.post("/predict", json={"symbol": SYMBOL, "closes": [1.0] * 6}).json()[
        "modelVersion"] == "v2"
    assert doc["symbol"] == SYMBOL
    assert service.proc.pid == pid_before and service.proc.popen.poll() is None


def test_store_outage(service: Service, setup: tuple[Path, Path]):
    db, _ = setup
    aside = take_store_away(db)
    resp = service.get(f"/predict/{SYMBOL}")
    assert_error(resp, 503)
    assert resp.headers["Retry-After"] == "2"
    # Explicit inputs need no store.
    assert service.post("/predict", json={"symbol": SYMBOL, "closes": [1.0] * 11}).status_code \
        == 200
    assert service.get("/health").json()["store"] == "unreachable"
    bring_store_back(aside, db)
    wait_until(lambda: service.get(f"/predict/{SYMBOL}").status_code == 200, timeout=10,
               message="predictions from the store again")
    assert service.get("/health").json() == {"status": "ok", "store": "reachable",
                                             "models": "available"}


def test_health_is_503_without_a_models_directory(tmp_path: Path):
    db = tmp_path / "quotes.db"
    seed(f"sqlite://{db}", days=1)
    svc = Service("prediction", f"sqlite://{db}", tmp_path / "missing")
    try:
        resp = svc.get("/health")
        assert resp.status_code == 503 and resp.json()["models"] == "unavailable"
    finally:
        svc.stop()


def test_latest_quotes_looks_back_over_gaps(sqlite_store: QuoteStore):
    # Daily bars: the first one-hour look-back finds one quote; the span has to grow.
    day = 86_400_000
    sqlite_store.write([Quote("D", 1_767_364_200_000 + i * day, 1.0, 1.0, 1.0, 1.0 + i, 1)
                        for i in range(30)])
    got = latest_quotes(sqlite_store, "D", 12)
    assert [q.close for q in got] == [1.0 + i for i in range(18, 30)]
    assert len(latest_quotes(sqlite_store, "D", 100)) == 30
    assert latest_quotes(sqlite_store, "none", 3) == []


def test_bodies_nested_too_deep_or_too_large_are_refused(service: Service):
    from services.body import MAX_BODY, MAX_DEPTH

    json_headers = {"Content-Type": "application/json"}
    deep = b'{"symbol": "X", "closes": ' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}"
    doc = assert_error(service.post("/predict", data=deep, headers=json_headers), 400)
    assert "nested deeper" in doc["description"]
    deeper = b"[" * 200_000 + b"]" * 200_000   # past the interpreter's recursion limit
    assert_error(service.post("/predict", data=deeper, headers=json_headers), 400)
    huge = b'{"symbol": "' + b"x" * MAX_BODY + b'"}'
    assert_error(service.post("/predict", data=huge, headers=json_headers), 413)


def test_symbols_with_control_characters_or_traversal_are_404(service: Service):
    for symbol in ("JPM%00", "JPM%0a", "..%2f..%2fetc", "%1b%5b31m", "%2e%2e"):
        assert_error(service.get(f"/predict/{symbol}"), 404)
        assert_error(service.get(f"/models/{symbol}"), 404)


@pytest.mark.parametrize("symbol", ["JPM\x00", "JPM\n", "\x1b[31mJPM"])
def test_quotes_with_control_characters_in_the_symbol_are_not_written(tmp_path: Path,
                                                                      symbol: str):
    with open_store(f"sqlite://{tmp_path / 'q.db'}") as store:
        with pytest.raises(ValueError, match="control characters|non-empty string"):
            store.write([Quote(symbol, 1_700_000_000_000, 1.0, 1.0, 1.0, 1.0, 1)])
        assert store.symbols() == []
