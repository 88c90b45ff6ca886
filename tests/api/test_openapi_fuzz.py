"""A bounded property-based fuzz test over `/v2/openapi.json` with schemathesis, through a real
gunicorn on a real store. Requests (bodies, path and query parameters) are generated from the
document's own schemas: the app definition derived from scheduler.spec, group updates, kill
lists. For every case: no 5xx; the status code, content type and body conform to the operation's
documented responses (closed schemas: Marathon's fields only); a refused request (4xx) changes
nothing in the store. About 1,000 cases in all with `--fuzz-scale 1` (`make fuzz`, `make
test-all`); `make test` runs a quarter of each operation's count."""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from scheduler.spec import SpecError, parse_app
from tests.api.conftest import put_task, snapshot
from tests.fixtures_api import start_api

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
OPERATIONS = [  # (path, method, full cases): about 1,000 in all
    ("/v2/apps", "POST", 300), ("/v2/apps/{appId}", "PUT", 150),
    ("/v2/apps/{appId}", "PATCH", 100), ("/v2/groups", "POST", 100),
    ("/v2/apps", "PUT", 50),
    ("/v2/apps", "GET", 100), ("/v2/apps/{appId}", "GET", 50), ("/v2/tasks", "GET", 50),
    ("/v2/tasks/delete", "POST", 50), ("/v2/groups", "GET", 50),
]


VALID = {"id": "/fuzz/new", "cmd": "sleep 600", "cpus": 0.1, "mem": 16, "instances": 0}
VALID_IN_GROUP = {"id": "app", "cmd": "sleep 600", "cpus": 0.1, "mem": 16, "instances": 0}


def valid_alone(key: str, value: Any) -> bool:
    """Whether the generated field is acceptable on its own (so grafted bodies pass more often
    and their answers get checked too)."""
    try:
        parse_app({**VALID, key: value})
    except SpecError:
        return False
    return True


@pytest.fixture(scope="module")
def api(state_path, store):
    proc, base = start_api(state_path, workers=2)
    yield base
    proc.stop()


@pytest.fixture(scope="module")
def document(api, store) -> dict[str, Any]:
    r = requests.post(api + "/v2/apps", timeout=10, json={
        "id": "/fuzz/base", "cmd": "sleep 600", "cpus": 0.1, "mem": 16})
    assert r.status_code == 201, r.text
    put_task(store, "/fuzz/base", n=0)  # something for reads and kills to show
    return requests.get(api + "/v2/openapi.json", timeout=10).json()


def test_openapi_document_has_real_schemas(document):
    for schema in document["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    for path, item in document["paths"].items():
        for method, op in item.items():
            if "requestBody" in op:
                body = op["requestBody"]["content"]["application/json"]["schema"]
                assert body.get("$ref") or body.get("items", {}).get("$ref"), (method, path)
            ok = [c for c in op["responses"] if c.startswith("2")]
            assert ok, (method, path)
    assert document["components"]["schemas"]["App"]["additionalProperties"] is False
    assert document["components"]["schemas"]["Task"]["additionalProperties"] is False


@pytest.mark.parametrize("path,method,cases", OPERATIONS,
                         ids=[f"{m} {p}" for p, m, _ in OPERATIONS])
def test_fuzz(api, store, document, fuzz_cases, path, method, cases):
    cases = fuzz_cases(cases)
    schema = schemathesis.openapi.from_dict(document)
    strategy = schema[path][method].as_strategy()
    seen: dict[int, int] = {}

    @settings(max_examples=cases, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy, st.booleans())
    def run(case, graft):
        if graft:  # half the cases aim at what exists / is valid, so many are accepted
            if isinstance(case.body, list) and case.body:
                case.body = [{**VALID, "id": "/fuzz/base", **{
                    k: v for k, v in case.body[0].items() if isinstance(case.body[0], dict)
                    and k not in ("id", "cmd", "args") and valid_alone(k, v)}}]
            if "appId" in (case.path_parameters or {}):
                case.path_parameters["appId"] = "fuzz/base"
            if isinstance(case.body, dict) and path == "/v2/apps":
                case.body = {**VALID, **{k: v for k, v in case.body.items()
                                         if k not in ("id", "cmd", "args", "instances")
                                         and valid_alone(k, v)}}
            case.query = dict(case.query or {}, force="true")
            if isinstance(case.body, dict) and path == "/v2/groups":
                case.body = dict(case.body, id="/fuzz/g", apps=[VALID_IN_GROUP])
        before = snapshot(store)
        response = case.call(base_url=api, timeout=10)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        case.validate_response(response, checks=CHECKS)
        if response.status_code == 201 and method == "POST":  # leave room for the next case
            location = response.headers.get("location") or [""]  # schemathesis: lists
            where = urljoin(api + "/", location[0] if isinstance(location, list) else location)
            # (an app whose last id segment names a sub-resource, e.g. /a/versions, cannot be
            # addressed by its URL, as in Marathon: it stays)
            if where.rsplit("/", 1)[-1] not in ("tasks", "restart", "versions", "delay"):
                gone = requests.delete(where, params={"force": "true"}, timeout=10)
                assert gone.status_code == 200, (where, gone.text)
        if 400 <= response.status_code < 500 or method == "GET":
            assert snapshot(store) == before, (case.path, case.body, response.text[:300])

    run()
    assert not [code for code in seen if code >= 500], seen
    print(f"{method} {path}: {sum(seen.values())} cases, statuses {dict(sorted(seen.items()))}")
