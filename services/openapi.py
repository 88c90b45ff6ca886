"""`GET /openapi.json` of every access service: an OpenAPI 3.1 document built from its routes.

Nothing is listed by hand here: `make_app` passes the app's route table, and each resource
carries its own operations next to its responders, as a class attribute
`OPENAPI = {"get": op(...), "post": op(...)}`. A responder (`on_get`, ...) without its entry is
a `TypeError` when the app is built, so a route cannot be served undocumented. Path parameters
come from the route template; query parameters, bodies and responses from `op(...)`.

The schemas shared by the services (the error shape, a quote, the time formats) are below;
`services/` may not import `api/`, so this is the services' own small generator.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import falcon

from services.store import QUOTE_FIELDS

Schema = dict[str, Any]
_METHODS = ("get", "post", "put", "patch", "delete")
_FIELD_RE = re.compile(r"{(\w+)}")

# -- shared schemas --------------------------------------------------------------------------------
ERROR: Schema = {
    "type": "object", "required": ["title"], "additionalProperties": False,
    "properties": {"title": {"type": "string"}, "description": {"type": "string"}},
    "description": "The services' one error shape (Falcon's HTTPError serialisation)",
}
ISO_TIME: Schema = {"type": "string", "format": "date-time",
                    "description": "ISO 8601 UTC with milliseconds and Z, e.g. "
                                   "2026-01-02T14:30:00.000Z"}
EPOCH_MS: Schema = {"type": "integer", "description": "epoch milliseconds UTC"}
TIME_PARAM: Schema = {
    "anyOf": [
        {"type": "string", "pattern": r"^[+-]?\d+$", "description": "epoch milliseconds"},
        {"type": "string", "format": "date-time"},
        {"type": "string", "format": "date", "description": "a date alone: its midnight UTC"},
        {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$",
         "description": "ISO 8601 without an offset: UTC"},
    ],
    "description": "epoch milliseconds or ISO 8601 (any form of Python's "
                   "datetime.fromisoformat; no offset means UTC), within years 1..9999",
}
SYMBOL: Schema = {"type": "string", "minLength": 1, "maxLength": 64}
_PRICE: Schema = {"type": "number"}
QUOTE: Schema = {
    "type": "object", "required": ["symbol", "ts", "epochMs"], "additionalProperties": False,
    "properties": {"symbol": {"type": "string"}, "ts": ISO_TIME, "epochMs": EPOCH_MS,
                   "open": _PRICE, "high": _PRICE, "low": _PRICE, "close": _PRICE,
                   "volume": {"type": "integer", "minimum": 0}},
    "description": "One bar; with `fields`, only those of open, high, low, close, volume",
}
FIELDS_PARAM: Schema = {
    "type": "string", "pattern": rf"^({'|'.join(QUOTE_FIELDS)})(,({'|'.join(QUOTE_FIELDS)}))*$",
    "description": f"comma-separated subset of {', '.join(QUOTE_FIELDS)}",
}

_ERROR_TEXT = {
    400: "Bad parameter or body (unknown parameter, unparseable time, from after to, unknown "
         "field, bad limit, malformed body)",
    404: "Unknown symbol or model",
    409: "The store holds fewer quotes than the model needs",
    413: "Request body too large",
    500: "Unexpected error (no traceback; the server log has it)",
    503: "The store is unreachable (retry after Retry-After seconds)",
}


def query(name: str, schema: Schema, description: str = "",
          required: bool = False) -> dict[str, Any]:
    """A query parameter of an operation."""
    param: dict[str, Any] = {"name": name, "in": "query", "required": required, "schema": schema}
    if description:
        param["description"] = description
    return param


def op(summary: str, ok: Schema, *, errors: Iterable[int] = (), params: Iterable[dict] = (),
       body: Schema | None = None, status: int = 200, media: str = "application/json",
       extra: Mapping[int, tuple[str, Schema]] | None = None) -> dict[str, Any]:
    """One operation: `ok` is the schema of the `status` answer; `errors` the statuses of the
    error shape it can answer (500 always); `extra` other documented answers (code: text, schema).
    """
    responses: dict[str, Any] = {str(status): {"description": "Success",
                                               "content": {media: {"schema": ok}}}}
    for code, (text, schema) in (extra or {}).items():
        responses[str(code)] = {"description": text,
                                "content": {"application/json": {"schema": schema}}}
    for code in sorted({*errors, 500}):
        answer: dict[str, Any] = {"description": _ERROR_TEXT[code],
                                  "content": {"application/json": {"schema": ERROR}}}
        if code == 503:
            answer["headers"] = {"Retry-After": {"schema": {"type": "integer"},
                                                 "description": "seconds"}}
        responses.setdefault(str(code), answer)
    operation: dict[str, Any] = {"summary": summary, "parameters": list(params),
                                 "responses": responses}
    if body is not None:
        operation["requestBody"] = {"required": True,
                                    "content": {"application/json": {"schema": body}}}
    return operation


# -- the document ----------------------------------------------------------------------------------
def openapi_document(service: str, routes: Iterable[tuple[str, object]]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `routes` (template, resource). `TypeError` if a resource has a
    responder without an `OPENAPI` entry, or an entry without a responder."""
    paths: dict[str, Any] = {}
    for template, resource in routes:
        meta: Mapping[str, Any] = getattr(resource, "OPENAPI", {})
        served = [m for m in _METHODS if callable(getattr(resource, f"on_{m}", None))]
        if sorted(served) != sorted(meta):
            raise TypeError(f"{type(resource).__name__} at {template}: responders {served}, "
                            f"documented {sorted(meta)}")
        path_params = [{"name": name, "in": "path", "required": True,
                        "schema": SYMBOL if name == "symbol" else {"type": "string"}}
                       for name in _FIELD_RE.findall(template)]
        item: dict[str, Any] = {}
        for method in served:
            operation = dict(meta[method])
            operation["operationId"] = f"{method}{type(resource).__name__}"
            operation["parameters"] = path_params + list(operation.get("parameters", []))
            item[method] = operation
        paths[template] = item
    return {"openapi": "3.1.0",
            "info": {"title": f"accessd {service} service", "version": "1"},
            "paths": paths}


def health_schema(checks: Iterable[str]) -> tuple[Schema, Schema]:
    """(200 body, 503 body) of `/health` with the service's extra `checks`."""
    names = list(checks)
    props = {"status": {"type": "string", "enum": ["ok", "unavailable"]},
             "store": {"type": "string", "enum": ["reachable", "unreachable"]},
             **{name: {"type": "string"} for name in names},
             "title": {"type": "string"}, "description": {"type": "string"}}
    ok = {"type": "object", "additionalProperties": False,
          "required": ["status", "store", *names],
          "properties": {k: v for k, v in props.items() if k not in ("title", "description")}}
    down = {"type": "object", "additionalProperties": False,
            "required": ["status", "store", "title", "description", *names], "properties": props}
    return ok, down


class OpenApiResource:
    """`GET /openapi.json`: the document, built once when the app is."""

    OPENAPI = {"get": op("This OpenAPI 3.1 document", {
        "type": "object", "required": ["openapi", "info", "paths"],
        "properties": {"openapi": {"type": "string", "const": "3.1.0"},
                       "info": {"type": "object", "required": ["title", "version"]},
                       "paths": {"type": "object"}}})}

    def __init__(self) -> None:
        self.document: dict[str, Any] = {}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.document
