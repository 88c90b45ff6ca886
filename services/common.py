"""What every access service shares: configuration, time parsing, errors, metrics and health.

Each service module (`timeseries`, `quotes`, `prediction`) builds its Falcon app with
`make_app(config, store, routes)`, which adds, the same way everywhere:

- `GET /health` — 200 `{"status": "ok", "store": "reachable"}`, or 503 (with `Retry-After`)
  when the store does not answer;
- `GET /metrics` — Prometheus text (`prometheus_client`): requests by route/method/status and a
  latency histogram, for the worker process that answers (each gunicorn worker counts its own
  requests);
- one JSON error shape, `{"title": ..., "description": ...}` (Falcon's `HTTPError` serialisation):
  400 for bad parameters, 404 for unknown symbols/routes, 503 + `Retry-After` whenever the store
  is unreachable (`StoreUnavailable`), and 500 without a traceback for anything unexpected (the
  traceback goes to the server log only).

The store is opened by `get_app()`, which gunicorn runs in each worker after it forks; there it
checks the store's settings against its backend (`check_configuration`: a Cassandra store
connects, a wrong datacenter or consistency level stops the worker from booting), and connects
again by itself whenever it has to.
"""

from __future__ import annotations

import gc
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import falcon
import prometheus_client
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from services.openapi import OpenApiResource, health_schema, op, openapi_document
from services.store import MAX_TS_MS, MIN_TS_MS, QuoteStore, StoreUnavailable

log = logging.getLogger("accessd.services")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT_RE = re.compile(r"[+-]?\d+")


# -- configuration ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ServiceConfig:
    """Settings of an access service, normally read from the environment by `from_env`.

    `retry_after`: seconds suggested to clients in `Retry-After` when the store is down.
    `model_check_interval`: seconds between checks of a model's `current` pointer (0: every
    request; a `stat` per request is cheap next to a store read).
    """

    store_url: str
    models_dir: Path | None = None
    retry_after: int = 5
    model_check_interval: float = 0.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServiceConfig:
        """`ACCESSD_STORE` (required), `ACCESSD_MODELS_DIR`, `ACCESSD_RETRY_AFTER`,
        `ACCESSD_MODEL_CHECK_INTERVAL`. A missing or malformed value is a `ValueError` naming it."""
        env = os.environ if env is None else env
        store_url = env.get("ACCESSD_STORE", "").strip()
        if not store_url:
            raise ValueError("ACCESSD_STORE is not set (e.g. sqlite:///var/lib/accessd/quotes.db)")
        models = env.get("ACCESSD_MODELS_DIR", "").strip()
        try:
            retry_after = int(env.get("ACCESSD_RETRY_AFTER", "5"))
            interval = float(env.get("ACCESSD_MODEL_CHECK_INTERVAL", "0"))
        except ValueError as exc:
            raise ValueError(f"bad ACCESSD_RETRY_AFTER / ACCESSD_MODEL_CHECK_INTERVAL: {exc}") from None
        if retry_after < 1 or interval < 0:
            raise ValueError("ACCESSD_RETRY_AFTER must be >= 1 and ACCESSD_MODEL_CHECK_INTERVAL >= 0")
        return cls(store_url=store_url, models_dir=Path(models) if models else None,
                   retry_after=retry_after, model_check_interval=interval)


def configure_logging() -> None:
    """One-line log records on stderr (gunicorn captures them), unless already configured."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=os.environ.get("ACCESSD_LOG_LEVEL", "INFO"),
                            format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")


# -- time ------------------------------------------------------------------------------------------
def parse_time(text: str) -> int:
    """Epoch milliseconds UTC from an integer string (already epoch ms) or ISO 8601.

    ISO forms are those of `datetime.fromisoformat` (a date alone means its midnight; `Z` and
    offsets are honoured; no offset means UTC). `ValueError` with a readable message otherwise,
    including for instants outside years 1..9999.
    """
    s = text.strip()
    if not s:
        raise ValueError("empty time")
    if _INT_RE.fullmatch(s):
        ms = int(s)
    else:
        try:
            dt = datetime.fromisoformat(s)
        except ValueError:
            raise ValueError(f"{text!r} is neither epoch milliseconds nor ISO 8601") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        # Integer arithmetic on timedelta: exact, where .timestamp() would go through a float.
        ms = (dt - _EPOCH) // timedelta(milliseconds=1)
    if not MIN_TS_MS <= ms <= MAX_TS_MS:
        raise ValueError(f"{text!r} is outside years 1..9999")
    return ms


# -- errors ----------------------------------------------------------------------------------------
def bad_param(name: str, description: str) -> falcon.HTTPBadRequest:
    """A 400 naming the offending parameter."""
    return falcon.HTTPBadRequest(title=f"Invalid parameter '{name}'", description=description)


def unknown_symbol(symbol: str) -> falcon.HTTPNotFound:
    return falcon.HTTPNotFound(title="Unknown symbol", description=f"no quotes for {symbol!r}")


def _store_unavailable_handler(retry_after: int, metrics: Metrics) -> Callable[..., None]:
    def handle(req: falcon.Request, resp: falcon.Response, ex: StoreUnavailable,
               params: dict) -> None:
        metrics.store_errors.inc()
        log.warning("store unavailable on %s %s: %s", req.method, req.path, ex)
        raise falcon.HTTPServiceUnavailable(title="Store unavailable", description=str(ex),
                                            retry_after=retry_after)
    return handle


def _unexpected_handler(req: falcon.Request, resp: falcon.Response, ex: Exception,
                        params: dict) -> None:
    # Falcon resolves handlers by the exception's MRO, so HTTPError/HTTPStatus keep their own
    # handlers; only genuinely unexpected exceptions land here.
    log.exception("unexpected error on %s %s", req.method, req.path)
    raise falcon.HTTPInternalServerError(title="Internal error",
                                         description="the server log has the details")


# -- metrics ---------------------------------------------------------------------------------------
# Each app instance has its own registry, so each gunicorn worker reports its own requests
# (Prometheus sums the workers). No `_created` series: the workers report exactly the samples
# below (process-wide setting of prometheus_client; these services have no other registry).
prometheus_client.disable_created_metrics()

# What `generate_latest` writes (named here: newer prometheus_client versions default to 1.0.0).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                      1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Per-process request metrics (prometheus_client, text format version 0.0.4).

    Latency is measured until the response headers are ready: for a streamed body that is the
    time to first byte, not the time to send the whole stream.
    """

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "accessd_http_requests_total", "HTTP requests answered by this worker process.",
            ["service", "route", "method", "status"], registry=self.registry)
        self._latency = Histogram(
            "accessd_http_request_duration_seconds",
            "Time until the response headers (time to first byte for streams).",
            ["service", "route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.store_errors = Counter(
            "accessd_store_unavailable_total",
            "Requests answered 503 because the store was unreachable.",
            ["service"], registry=self.registry).labels(service)
        started = Gauge("process_start_time_seconds", "Start time of this worker process.",
                        registry=self.registry)
        started.set_to_current_time()
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def observe(self, route: str, method: str, status: str, seconds: float) -> None:
        # The labelled children, once per label set (bounded: routes are templates): looking
        # them up through `labels()` on every request cost more than the counting itself.
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self._requests.labels(self.service, route, method, status),
                self._latency.labels(self.service, route))
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Times every request and counts it by route template (never the raw path: bounded labels)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = time.perf_counter()

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        started = getattr(req.context, "started", None)
        if started is None:
            return
        route = req.uri_template or "unmatched"
        status = str(resp.status_code)
        self.metrics.observe(route, req.method, status, time.perf_counter() - started)


class MetricsResource:
    OPENAPI = {"get": op("Prometheus text of the worker process that answers",
                         {"type": "string"}, media="text/plain")}

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = CONTENT_TYPE
        resp.data = self.metrics.render()


# -- health ----------------------------------------------------------------------------------------
class HealthResource:
    """`GET /health`: the store answers a ping, and every extra check passes.

    `checks` maps a name to a callable returning a short status string, or raising
    `StoreUnavailable`/`RuntimeError` with the reason it is not ready (e.g. no model yet).
    """

    def __init__(self, store: QuoteStore, retry_after: int,
                 checks: Mapping[str, Callable[[], str]] | None = None) -> None:
        self.store = store
        self.retry_after = retry_after
        self.checks = dict(checks or {})
        ok, down = health_schema(self.checks)
        self.OPENAPI = {"get": op("The store (and the service's other needs) answer", ok,
                                  extra={503: ("Not ready; Retry-After says when to ask again",
                                               down)})}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        body: dict[str, str] = {"status": "ok", "store": "reachable"}
        problems: list[str] = []
        try:
            self.store.ping()
        except StoreUnavailable as exc:
            body["store"] = "unreachable"
            problems.append(str(exc))
        for name, check in self.checks.items():
            try:
                body[name] = check()
            except (StoreUnavailable, RuntimeError) as exc:
                body[name] = "unavailable"
                problems.append(str(exc))
        if problems:
            # Also in the one error shape ({"title", "description"}), for generic clients.
            body["status"] = "unavailable"
            body["title"] = "Service unavailable"
            body["description"] = "; ".join(problems)
            resp.status = falcon.HTTP_503
            resp.retry_after = self.retry_after
        resp.media = body


# -- the app ---------------------------------------------------------------------------------------
def make_app(service: str, config: ServiceConfig, store: QuoteStore,
             routes: Iterable[tuple[str, object]],
             health_checks: Mapping[str, Callable[[], str]] | None = None) -> falcon.App:
    """A Falcon app with `routes` plus the shared health, metrics, OpenAPI document and error
    handling. Every resource documents its responders (`services.openapi`)."""
    metrics = Metrics(service)
    # CORS (Falcon's own): the status page, served by the control API on another origin, reads
    # these read-only answers for its pipeline panel.
    app = falcon.App(middleware=[MetricsMiddleware(metrics)], cors_enable=True)
    # "/quotes/JPM/last/" answers like "/quotes/JPM/last" rather than 404.
    app.req_options.strip_url_path_trailing_slash = True
    # Bad query strings (e.g. "?limit=") are reported by the resources, not silently dropped.
    app.req_options.keep_blank_qs_values = True
    app.add_error_handler(Exception, _unexpected_handler)
    app.add_error_handler(StoreUnavailable, _store_unavailable_handler(config.retry_after, metrics))
    openapi = OpenApiResource()
    table = [*routes,
             ("/health", HealthResource(store, config.retry_after, health_checks)),
             ("/metrics", MetricsResource(metrics)),
             ("/openapi.json", openapi)]
    openapi.document = openapi_document(service, table)
    for template, resource in table:
        app.add_route(template, resource)
    return app


class LazyStore(QuoteStore):
    """A store whose opening failed (e.g. its SQLite file cannot be created yet): every call
    tries to open it again, answering `StoreUnavailable` until that works, so a service started
    before its store exists comes up, reports 503, and recovers by itself."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._store: QuoteStore | None = None
        self._lock = threading.Lock()

    def _open(self) -> QuoteStore:
        from services.store import open_store

        with self._lock:
            if self._store is None:
                self._store = open_store(self.url)
            return self._store

    def write(self, quotes):  # type: ignore[no-untyped-def]
        return self._open().write(quotes)

    def read_range(self, symbol, start_ms=None, end_ms=None, *, limit=None):  # type: ignore[no-untyped-def]
        return self._open().read_range(symbol, start_ms, end_ms, limit=limit)

    def read_range_rows(self, symbol, start_ms=None, end_ms=None, *, limit=None):  # type: ignore[no-untyped-def]
        return self._open().read_range_rows(symbol, start_ms, end_ms, limit=limit)

    def data_version(self):  # type: ignore[no-untyped-def]
        return self._open().data_version()

    def last(self, symbol):  # type: ignore[no-untyped-def]
        return self._open().last(symbol)

    def has_symbol(self, symbol):  # type: ignore[no-untyped-def]
        return self._open().has_symbol(symbol)

    def symbols(self):  # type: ignore[no-untyped-def]
        return self._open().symbols()

    def ping(self) -> None:
        self._open().ping()

    def check_configuration(self) -> None:
        self._open().check_configuration()

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def app_from_env(factory: Callable[[ServiceConfig, QuoteStore], falcon.App]) -> falcon.App:
    """What each service's `get_app()` does: configuration from the environment, store opened
    (no connection yet: each worker connects on first use), the app built by `factory`.

    A malformed configuration or store URL fails here, loudly, at start-up, and so do settings
    the store's backend shows to be wrong (`StoreMisconfigured`: the worker does not boot); a
    store that is merely unreachable does not (see `LazyStore`).
    """
    from services.store import open_store

    configure_logging()
    config = ServiceConfig.from_env()
    try:
        store = open_store(config.store_url)
    except StoreUnavailable as exc:
        log.warning("store not available at start-up, will retry on each request: %s", exc)
        store = LazyStore(config.store_url)
    try:
        store.check_configuration()
    except StoreUnavailable as exc:
        log.warning("store not reachable at start-up, its settings are checked once it is: %s",
                    exc)
    app = factory(config, store)
    quiet_gc()
    return app


GC_GEN0_THRESHOLD = 100_000   # as the control API's workers (api.app.get_app)


def quiet_gc() -> None:
    """Keep the cycle collector off the request path's tail: what start-up built (modules, the
    app, the store) is frozen out of every later collection, and the young generation is
    collected after 100,000 allocations instead of 700. Measured in a time-series worker: a full
    collection over the start-up objects took ~50-120 ms (a request of that worker: < 1 ms), and
    none after `gc.freeze()`; requests make almost only acyclic garbage, freed by refcounts."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])
