"""The status page's pipeline panel (#/pipeline) in headless Chromium: a real prediction service
(gunicorn over a SQLite quote store and a models directory), a real API, and the store written
as the scheduler would (the service's app and its running task at the service's port).

It shows the newest quote's time, the served version, the held-out MAE next to naive's and a
chart of recent predictions vs actual closes — and a new version after a retrain.
"""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from scheduler.spec import iso_now, parse_app, stamp_app
from scheduler.sqlite_state import SQLiteStateStore
from services.store import open_store
from tests.api.conftest import make_task
from tests.api.test_status_page import browser, page  # noqa: F401 - fixtures
from tests.fixtures_api import start_api
from tests.services.service_fixtures import SYMBOL, Service, seed
from tests.services.test_prediction import train_and_publish

pytestmark = pytest.mark.timeout(120)
LIVE = 15_000


@pytest.fixture
def pipeline(tmp_path):
    db, models = tmp_path / "quotes.db", tmp_path / "models"
    seed(f"sqlite://{db}", days=2)
    assert train_and_publish(db, models, window=10) == "v1"
    svc = Service("prediction", f"sqlite://{db}", models)
    store = SQLiteStateStore(tmp_path / "state.db")
    api_proc, base = start_api(str(tmp_path / "state.db"), workers=1)
    try:
        doc = {"id": "/jpm/prediction", "cmd": "gunicorn 'services.prediction:get_app()'",
               "cpus": 0.5, "mem": 320, "instances": 1, "portDefinitions": [{"port": 0}],
               "labels": {"accessd.service": "prediction service: GET /predict/{symbol}"}}
        app = stamp_app(parse_app(doc).to_json(), None, iso_now(), scale_only=False)
        store.apply_app_change(app["id"], app, None)
        # the service really listens on 127.0.0.1 (not under localmesos): that is its host
        store.upsert_task(make_task(app, host="127.0.0.1", port=svc.port, healthy=None))
        yield base, db, models
    finally:
        api_proc.stop()
        store.close()
        svc.stop()


def test_pipeline_panel_shows_the_served_model_and_a_new_version_after_a_retrain(
        pipeline, page):  # noqa: F811 - the fixture
    base, db, models = pipeline
    page.goto(base + "/#/pipeline")
    card = page.locator(f'.pipeline-card[data-symbol="{SYMBOL}"]')
    expect(card.locator(".model-version")).to_have_text("v1", timeout=LIVE)
    expect(page.locator("#list-view")).to_be_hidden()
    expect(page.locator("#jobs-view")).to_be_hidden()
    expect(page.locator(".topbar nav a.active")).to_have_text("Pipeline")
    with open_store(f"sqlite://{db}") as store:
        last = store.last(SYMBOL)
    assert last is not None
    expected_ts = last.to_json()["ts"].replace("T", " ").split(".")[0].rstrip("Z")
    expect(card.locator(".newest-quote")).to_contain_text(expected_ts)
    metrics = json.loads((models / SYMBOL / "v1" / "metrics.json").read_text())
    expect(card.locator(".mae-model")).to_have_text(f"{metrics['model']['mae']:.4f}")
    expect(card.locator(".mae-naive")).to_have_text(f"{metrics['naive']['mae']:.4f}")
    expect(card.locator(".verdict")).to_contain_text("naive")
    for line in ("actual", "predicted"):
        points = card.locator(f"polyline.line-{line}").get_attribute("points")
        assert points is not None and len(points.split()) == 60
    # Retrain: a new version is published; the panel shows it without a reload.
    assert train_and_publish(db, models, window=5) == "v2"
    expect(card.locator(".model-version")).to_have_text("v2", timeout=LIVE)
    metrics2 = json.loads((models / SYMBOL / "v2" / "metrics.json").read_text())
    expect(card.locator(".mae-model")).to_have_text(f"{metrics2['model']['mae']:.4f}")
    # The other views take over the page and the nav: Jobs, then Applications.
    page.goto(base + "/#/jobs")
    expect(page.locator("#pipeline-view")).to_be_hidden()
    expect(page.locator("#jobs-view")).to_be_visible()
    expect(page.locator(".topbar nav a.active")).to_have_text("Jobs")
    page.goto(base + "/#/")
    expect(page.locator("#list-view")).to_be_visible()
    expect(page.locator(".topbar nav a.active")).to_have_text("Applications")
