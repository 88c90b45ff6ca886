"""The API's one error shape, Marathon's: `{"message": ..., "details": [{"path", "errors"}]}`.

Every failure leaves through here: `ApiError` for the answers the resources choose, the store's
and the schema's exceptions mapped to Marathon's codes (422 invalid definition or a service port another app has, 409 conflicting
deployment or duplicate id, 404 unknown app), Falcon's own errors (404 no route, 405, bad
headers) re-shaped, and anything unexpected as a 500 whose traceback goes to the log only.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from typing import Any

import falcon

from scheduler.service_ports import ServicePortConflict, ServicePortsExhausted
from scheduler.spec import SpecError
from scheduler.state import (
    AppExists,
    AppNotFound,
    DeploymentConflict,
    NotLeader,
    StateError,
    StoreUnavailable,
)

log = logging.getLogger("accessd.api")


class ApiError(falcon.HTTPError):
    """An error answer: HTTP `status`, Marathon `message`, optional `details` and extra fields
    (e.g. `deployments` on a 409)."""

    def __init__(self, status: str | int, message: str,
                 details: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(status, title=message, headers=headers)
        self.message = message
        self.details = details or []
        self.extra = extra

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"message": self.message, "details": self.details}
        out.update(self.extra)
        return out


def not_found(message: str) -> ApiError:
    return ApiError(404, message)


def bad_request(message: str, path: str = "/") -> ApiError:
    return ApiError(400, message, [{"path": path, "errors": [message]}])


def serialize_error(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
    """Falcon's error serializer, replaced so every error (ours or Falcon's) has one shape."""
    if isinstance(exc, ApiError):
        body = exc.body()
    else:
        message = exc.title or "Error"
        if exc.description:
            message = f"{message}: {exc.description}"
        body = {"message": message, "details": []}
    resp.content_type = falcon.MEDIA_JSON
    resp.data = json.dumps(body).encode()


def _spec_error(req: falcon.Request, resp: falcon.Response, ex: SpecError, params: dict) -> None:
    raise ApiError(422, ex.message, ex.details)


def _conflict(req: falcon.Request, resp: falcon.Response, ex: DeploymentConflict,
              params: dict) -> None:
    raise ApiError(409, str(ex), deployments=[{"id": d} for d in ex.deployment_ids])


def _app_exists(req: falcon.Request, resp: falcon.Response, ex: AppExists, params: dict) -> None:
    raise ApiError(409, str(ex))


def _service_ports(req: falcon.Request, resp: falcon.Response,
                   ex: ServicePortConflict | ServicePortsExhausted, params: dict) -> None:
    raise ApiError(422, "Object is not valid", ex.details)


def _app_not_found(req: falcon.Request, resp: falcon.Response, ex: AppNotFound,
                   params: dict) -> None:
    raise ApiError(404, str(ex))


def _state_error(req: falcon.Request, resp: falcon.Response, ex: StateError,
                 params: dict) -> None:
    raise ApiError(409, str(ex))


def _store_unavailable(req: falcon.Request, resp: falcon.Response, ex: sqlite3.Error,
                       params: dict) -> None:
    # The SQLite file is unreadable, locked beyond the busy timeout, or the disk is full: the
    # request may succeed later, and nothing was half-applied (the transaction rolled back).
    log.warning("state store error on %s %s: %s", req.method, req.path, ex)
    raise ApiError(503, f"State store unavailable: {ex}", headers={"Retry-After": "5"})


def _no_quorum(req: falcon.Request, resp: falcon.Response, ex: StateError,
               params: dict) -> None:
    # ZooKeeper unreachable or without quorum: the write did not happen (one multi, all or
    # nothing), or, when the connection dropped during the commit and did not come back, the
    # message says its outcome is unknown (scheduler.zk_outcome); reads answer from the cache.
    log.warning("state store unavailable on %s %s: %s", req.method, req.path, ex)
    raise ApiError(503, f"State store unavailable: {ex}", headers={"Retry-After": "5"})


def _unexpected(req: falcon.Request, resp: falcon.Response, ex: Exception, params: dict) -> None:
    # Falcon picks handlers by the exception's MRO, so HTTPError keeps its own handler and only
    # genuinely unexpected exceptions land here.
    log.exception("unexpected error on %s %s", req.method, req.path)
    raise ApiError(500, "Internal server error: the server log has the details")


def install(app: falcon.App) -> None:
    """Register the handlers (most generic first: Falcon prefers the most specific class)."""
    app.add_error_handler(Exception, _unexpected)
    app.add_error_handler(sqlite3.Error, _store_unavailable)
    app.add_error_handler(StateError, _state_error)
    app.add_error_handler(StoreUnavailable, _no_quorum)
    app.add_error_handler(NotLeader, _no_quorum)
    app.add_error_handler(SpecError, _spec_error)
    app.add_error_handler(DeploymentConflict, _conflict)
    app.add_error_handler(AppExists, _app_exists)
    app.add_error_handler(AppNotFound, _app_not_found)
    app.add_error_handler(ServicePortConflict, _service_ports)
    app.add_error_handler(ServicePortsExhausted, _service_ports)
    app.set_error_serializer(serialize_error)
