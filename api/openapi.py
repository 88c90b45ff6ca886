"""`GET /v2/openapi.json`: an OpenAPI 3.0 document generated from the live route table.

Paths are not listed by hand: every route of the router and every method its resource implements
becomes an operation; the summary and description are the responder's docstring, the query
parameters are the `?name=` mentions in that docstring, path parameters come from the template
(a `{appId*}` field spans several segments: app ids are paths). So a route cannot exist without
appearing here, and the test compares the document with the router. Request and response bodies
are the JSON schemas of `api.schemas` (derived from the app schema and Marathon's field lists),
by operation.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import falcon

from api import schemas
from api.routing import OrderedRouter

_QUERY_RE = re.compile(r"\?([a-z_]+)=")

_SUCCESS = {"GET": "200", "POST": "200", "PUT": "200", "PATCH": "200", "DELETE": "200"}
_ERRORS = {
    "400": "Malformed request (bad JSON, wrong content type, bad parameter)",
    "401": "Missing or wrong credentials",
    "403": "The credential may only read",
    "404": "Unknown app, task or deployment",
    "409": "Conflicting deployment (use ?force=true) or duplicate id",
    "413": "Body larger than the configured limit",
    "422": "Invalid app definition (details list every problem)",
}


def _operation(route_template: str, fields: list[tuple[str, bool]], method: str,
               responder: Any) -> dict[str, Any]:
    responder = inspect.unwrap(responder)  # a wrapped responder (api.jobs' store guard)
    doc = inspect.getdoc(responder) or ""
    summary = doc.split("\n\n", 1)[0].replace("\n", " ").strip()
    params: list[dict[str, Any]] = []
    for name, multi in fields:
        params.append({
            "name": name, "in": "path", "required": True, "schema": {"type": "string"},
            "description": ("a path of one or more segments, e.g. jpm/timeseries" if multi
                            else "one path segment"),
        })
    for name in dict.fromkeys(_QUERY_RE.findall(doc)):
        schema: dict[str, Any] = ({"type": "boolean"} if name in ("force", "scale")
                                  else {"type": "string"})
        params.append({"name": name, "in": "query", "required": False, "schema": schema})
    owner = getattr(responder, "__self__", None)  # a bound on_<method>, or a plain function
    key = (type(owner).__name__ if owner is not None
           else getattr(responder, "__qualname__", "op").split(".")[0], method.lower())
    success = schemas.RESPONSES.get(key) or {_SUCCESS[method]: {}}
    responses: dict[str, Any] = {}
    for code, schema in success.items():
        responses[code] = ({"description": "Success"} if schema is None else
                           {"description": "Success",
                            "content": {"application/json": {"schema": schema}}})
    for code, text in _ERRORS.items():
        responses[code] = {"description": text, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Error"}}}}
    op: dict[str, Any] = {
        "operationId": f"{key[0]}.{method.lower()}",
        "summary": summary,
        "description": doc,
        "parameters": params,
        "responses": responses,
    }
    if key in schemas.REQUESTS:
        op["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": schemas.REQUESTS[key]}}}
    return op


def build(router: OrderedRouter, version: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for route in router.routes:
        path = route.template.replace("*}", "}")
        item = paths.setdefault(path, {})
        for method in route.methods():
            item[method.lower()] = _operation(route.template, route.fields, method,
                                              route.method_map[method])
    return {
        "openapi": "3.1.0",
        "info": {"title": "accessd control API",
                 "description": "Marathon REST v2 compatible where the two overlap.",
                 "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas.components(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "basic": {"type": "http", "scheme": "basic"}},
        },
        "security": [{"bearer": []}, {"basic": []}],
    }


class OpenApi:
    def __init__(self, router: OrderedRouter, version: str) -> None:
        self.router = router
        self.version = version
        self._doc: dict[str, Any] | None = None

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """This document."""
        if self._doc is None:  # built on first use: every route is registered by then
            self._doc = build(self.router, self.version)
        resp.media = self._doc
