"""The prediction service's answers for the status page's pipeline panel: `/models`,
`/models/{symbol}/metrics`, `/predictions/{symbol}/recent`, and CORS on its GETs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.model import load_current
from services.store import open_store
from tests.services.service_fixtures import SYMBOL, Service, seed
from tests.services.test_prediction import train_and_publish


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


def test_models_list_and_metrics(service: Service, setup: tuple[Path, Path]):
    _, models = setup
    assert service.get("/models").json() == {"models": [{"symbol": SYMBOL, "version": "v1"}]}
    metrics = service.get(f"/models/{SYMBOL}/metrics").json()
    assert metrics == json.loads((models / SYMBOL / "v1" / "metrics.json").read_text())
    assert {"model", "naive", "versusNaive", "testSamples"} <= set(metrics)
    assert service.get("/models/NOPE/metrics").status_code == 404


def test_recent_predictions_next_to_actual_closes(service: Service, setup: tuple[Path, Path]):
    db, models = setup
    doc = service.get(f"/predictions/{SYMBOL}/recent", params={"n": 5}).json()
    with open_store(f"sqlite://{db}") as store:
        quotes = list(store.read_range(SYMBOL))
    model = load_current(models, SYMBOL)
    assert model is not None
    assert doc["modelVersion"] == "v1" and doc["lastQuoteTs"] == quotes[-1].to_json()["ts"]
    assert [p["ts"] for p in doc["points"]] == [q.to_json()["ts"] for q in quotes[-5:]]
    for k, point in enumerate(doc["points"]):
        i = len(quotes) - 5 + k
        assert point["actual"] == quotes[i].close and point["naive"] == quotes[i - 1].close
        assert point["predicted"] == pytest.approx(
            model.predict([q.close for q in quotes[i - 11:i]]))
    for bad in ("0", "501", "x"):
        assert service.get(f"/predictions/{SYMBOL}/recent", params={"n": bad}).status_code == 400
    assert service.get("/predictions/NOPE/recent").status_code == 404


def test_gets_allow_other_origins(service: Service):
    r = service.get("/models", headers={"Origin": "http://127.0.0.1:8080"})
    assert r.headers["Access-Control-Allow-Origin"] == "*"
