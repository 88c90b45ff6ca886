"""`GET /openapi.json` of each access service, through real gunicorn processes on SQLite stores:
the document is valid OpenAPI 3.1 (openapi-spec-validator), lists exactly the routes and methods
the app serves (Falcon's router walked), and real answers (successes and errors) validate against
the schemas it documents for their status. Then a bounded schemathesis run over the time-series
and last-quote services and `POST /predict`: no 5xx, every answer is JSON that conforms."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import falcon
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker
from openapi_spec_validator import validate as validate_spec
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services import prediction, quotes, timeseries
from services.common import ServiceConfig
from services.openapi import op, openapi_document
from services.store import open_store
from tests.services.service_fixtures import (
    SYMBOL,
    Service,
    bring_store_back,
    seed,
    take_store_away,
)
from tests.services.test_prediction import train_and_publish

MODULES = {"timeseries": timeseries, "quotes": quotes, "prediction": prediction}
# Representative requests per service: (method, document path, concrete path, query, body).
REQUESTS: dict[str, list[tuple[str, str, str, dict | None, Any]]] = {
    "timeseries": [
        ("get", "/timeseries/{symbol}", f"/timeseries/{SYMBOL}",
         {"from": "2026-01-02T15:00", "to": "1767370500000", "limit": "5"}, None),
        ("get", "/timeseries/{symbol}", f"/timeseries/{SYMBOL}",
         {"from": "2026-01-05", "fields": "open,close", "limit": 3}, None),
        ("get", "/timeseries/{symbol}", f"/timeseries/{SYMBOL}", {"from": "2030-01-01"}, None),
        ("get", "/timeseries/{symbol}", "/timeseries/NOPE", None, None),
        ("get", "/timeseries/{symbol}", f"/timeseries/{SYMBOL}", {"from": "yesterday"}, None),
        ("get", "/timeseries/{symbol}", f"/timeseries/{SYMBOL}", {"fields": "price"}, None),
    ],
    "quotes": [
        ("get", "/quotes/{symbol}/last", f"/quotes/{SYMBOL}/last", None, None),
        ("get", "/quotes/{symbol}/last", f"/quotes/{SYMBOL}/last", {"fields": "close"}, None),
        ("get", "/quotes/{symbol}/last", "/quotes/NOPE/last", None, None),
        ("get", "/quotes/{symbol}/last", f"/quotes/{SYMBOL}/last", {"limit": "1"}, None),
    ],
    "prediction": [
        ("get", "/predict/{symbol}", f"/predict/{SYMBOL}", None, None),
        ("get", "/predict/{symbol}", "/predict/NOPE", None, None),
        ("post", "/predict", "/predict", None, {"symbol": SYMBOL, "closes": [100.0 + i / 10
                                                                            for i in range(11)]}),
        ("post", "/predict", "/predict", None, {"symbol": SYMBOL, "inputs": [
            {"closes": [100.0] * 11, "ts": "2026-01-02T15:00:00Z"}, {"closes": [99.0] * 12}]}),
        ("post", "/predict", "/predict", None, {"symbol": SYMBOL, "closes": [1.0]}),
        ("get", "/models/{symbol}", f"/models/{SYMBOL}", None, None),
        ("get", "/models", "/models", None, None),
        ("get", "/models/{symbol}/metrics", f"/models/{SYMBOL}/metrics", None, None),
        ("get", "/predictions/{symbol}/recent", f"/predictions/{SYMBOL}/recent", {"n": 5}, None),
        ("get", "/predictions/{symbol}/recent", f"/predictions/{SYMBOL}/recent", {"n": 0}, None),
    ],
}
COMMON = [("get", "/health", "/health", None, None), ("get", "/metrics", "/metrics", None, None),
          ("get", "/openapi.json", "/openapi.json", None, None)]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("openapi")
    db, models = tmp / "quotes.db", tmp / "models"
    seed(f"sqlite://{db}", days=2)
    train_and_publish(db, models, window=10)
    return db, models


@pytest.fixture(scope="module", params=list(MODULES))
def running(request: pytest.FixtureRequest, data: tuple[Path, Path]) -> Iterator[tuple[str,
                                                                                       Service]]:
    db, models = data
    svc = Service(request.param, f"sqlite://{db}", models)
    yield request.param, svc
    svc.stop()


def served_routes(app: falcon.App) -> dict[str, list[str]]:
    """Template -> methods with a responder of the resource, from Falcon's compiled router."""
    out: dict[str, list[str]] = {}
    nodes = list(app._router._roots)
    while nodes:
        node = nodes.pop()
        nodes.extend(node.children)
        if node.resource is not None:
            out[node.uri_template] = sorted(
                m for m in ("get", "post", "put", "patch", "delete")
                if callable(getattr(node.resource, f"on_{m}", None)))
    return out


def check_answer(document: dict, path: str, method: str, resp: requests.Response) -> None:
    """`resp` has a documented status, its content type, and a body valid for its schema."""
    responses = document["paths"][path][method]["responses"]
    assert str(resp.status_code) in responses, (path, method, resp.status_code, resp.text[:200])
    content = responses[str(resp.status_code)]["content"]
    (media, spec), = content.items()
    assert resp.headers["Content-Type"].split(";")[0] == media
    if media == "application/json":
        Draft202012Validator(spec["schema"], format_checker=FormatChecker()).validate(resp.json())


def test_document_is_valid_and_lists_exactly_the_served_routes(running, data):
    name, svc = running
    resp = svc.get("/openapi.json")
    assert resp.status_code == 200
    document = resp.json()
    validate_spec(document)     # OpenAPI 3.1, JSON Schema 2020-12 schemas included
    assert document["openapi"] == "3.1.0"
    db, models = data
    app = MODULES[name].create_app(ServiceConfig(f"sqlite://{db}", models),
                                   open_store(f"sqlite://{db}"))
    routes = served_routes(app)
    assert {p: sorted(item) for p, item in document["paths"].items()} == routes
    for item in document["paths"].values():
        for operation in item.values():
            for answer in operation["responses"].values():
                for media in answer["content"].values():  # every answer has a real schema
                    Draft202012Validator.check_schema(media["schema"])
                    assert media["schema"] != {"type": "object"}


def test_real_answers_validate_against_their_schemas(running):
    name, svc = running
    document = svc.get("/openapi.json").json()
    statuses = set()
    for method, path, concrete, params, body in REQUESTS[name] + COMMON:
        resp = svc.http.request(method.upper(), svc.url + concrete, params=params, json=body,
                                timeout=30)
        check_answer(document, path, method, resp)
        statuses.add(resp.status_code)
    assert {200, 404}.issubset(statuses), statuses
    if name != "prediction":
        assert 400 in statuses


def test_store_outage_answers_are_documented(data, tmp_path):
    db = tmp_path / "quotes.db"
    seed(f"sqlite://{db}", days=1)
    svc = Service("timeseries", f"sqlite://{db}")
    try:
        document = svc.get("/openapi.json").json()
        aside = take_store_away(db)
        try:
            for path, concrete in (("/timeseries/{symbol}", f"/timeseries/{SYMBOL}"),
                                   ("/health", "/health")):
                resp = svc.get(concrete)
                assert resp.status_code == 503, resp.text
                check_answer(document, path, "get", resp)
                assert "Retry-After" in resp.headers
        finally:
            bring_store_back(aside, db)
    finally:
        svc.stop()


def test_a_responder_without_its_document_is_refused():
    class Undocumented:
        def on_get(self, req, resp):  # pragma: no cover - never called
            pass

    class DocumentsTooMuch:
        OPENAPI = {"get": op("x", {"type": "string"}), "post": op("y", {"type": "string"})}

        def on_get(self, req, resp):  # pragma: no cover - never called
            pass

    for resource in (Undocumented(), DocumentsTooMuch()):
        with pytest.raises(TypeError, match="documented"):
            openapi_document("test", [("/x", resource)])


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@pytest.mark.parametrize("module,path,method,cases", [
    ("timeseries", "/timeseries/{symbol}", "GET", 100),
    ("quotes", "/quotes/{symbol}/last", "GET", 50),
    ("prediction", "/predict", "POST", 100)])
def test_fuzz(data, module, path, method, cases):
    db, models = data
    svc = Service(module, f"sqlite://{db}", models)
    try:
        document = svc.get("/openapi.json").json()
        strategy = schemathesis.openapi.from_dict(document)[path][method].as_strategy()
        seen: dict[int, int] = {}

        @settings(max_examples=cases, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(strategy, st.sampled_from([True, True, False]))
        def run(case, known_symbol):
            if known_symbol:    # most cases ask for data (a model) that exists
                if case.path_parameters and "symbol" in case.path_parameters:
                    case.path_parameters["symbol"] = SYMBOL
                if isinstance(case.body, dict):
                    case.body["symbol"] = SYMBOL
            response = case.call(base_url=svc.url, timeout=30)
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            case.validate_response(response, checks=CHECKS)

        run()
        assert 200 in seen and 404 in seen, seen
        print(f"{method} {path}: {sum(seen.values())} cases, statuses {dict(sorted(seen.items()))}")
    finally:
        svc.stop()


def test_closes_too_far_apart_are_refused_not_answered_nan(data):
    """Found by the fuzz run: such closes made the model's answer NaN/Infinity, which Falcon
    wrote into a 200 as bare `NaN` (not JSON)."""
    db, models = data
    svc = Service("prediction", f"sqlite://{db}", models)
    try:
        document = svc.get("/openapi.json").json()
        closes = [0.1, 9.105902349505092e+307, 7.0602975936354664e+16, 5036774989148595.0,  # the
                  3.512134966408602e+307, 5.656759892613644e+16, 3.459421251512177e+16, 2.5,
                  8.8588359308548e+307, 5.161105039191834e+16, 1.8754617787229496e+16,
                  3.834558476599598e+307, 9.61273978486942e+307, 4.3429212719375257e+307,
                  1.1125369292536007e-308, 0.025, 7.160685125505112e-177,
                  1.7976931348623157e+308, 1.0115364622526773e+308]  # fuzz run's input
        for body in ({"symbol": SYMBOL, "closes": closes},
                     {"symbol": SYMBOL, "inputs": [{"closes": [100.0] * 11}, {"closes": closes}]}):
            resp = svc.post("/predict", json=body)
            assert resp.status_code == 400, resp.text
            assert "NaN" not in resp.text and "Infinity" not in resp.text, resp.text
            json.loads(resp.text)
            check_answer(document, "/predict", "post", resp)
    finally:
        svc.stop()
