"""`GET /metrics`: Prometheus text (format 0.0.4), written by `prometheus_client`.

Request counters and latency histograms are per worker process (each app instance has its own
`CollectorRegistry`; each gunicorn worker counts the requests it answers; Prometheus sums them);
the gauges (apps, tasks by state, active deployments, queued apps) are read from the shared store
at scrape time by `StoreCollector`, so every worker reports the same values for them.

With a SQLite store, `WriterCollector` adds this worker's write-transaction counters
(`scheduler.sqlite_writers.WriterStats`): transactions, the writes they carried, and the seconds
their leaders waited for and held the writers' turn, and of those held the leaders' own CPU.
Per worker, like the request counters.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
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
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from api.views import delay_left
from scheduler.sqlite_writers import WriterStats
from scheduler.state import StateStore

# The workers report exactly the samples below: no `_created` series (a process-wide setting of
# prometheus_client; the API has no other registry).
prometheus_client.disable_created_metrics()

# What `generate_latest` writes (named here: newer prometheus_client versions default to 1.0.0).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                      1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Request counts by (route, method, status) and latency by route, in this worker's own
    registry. `attach(store)` adds the store-derived gauges."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "accessd_api_requests_total", "HTTP requests answered by this worker process.",
            ["route", "method", "status"], registry=self.registry)
        self._latency = Histogram(
            "accessd_api_request_duration_seconds",
            "Time until the response headers (time to first byte for the event stream).",
            ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        Gauge("process_start_time_seconds", "Start time of this worker process.",
              registry=self.registry).set_to_current_time()
        self._store_collector: StoreCollector | None = None
        # The labelled children by label values: `labels()` validates and locks on every
        # call; a dict hit does neither (a child, once made, lives as long as its metric).
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def attach(self, store: StateStore) -> None:
        """Also report the gauges read from `store` at each scrape (once; again is a no-op)."""
        if self._store_collector is None:
            self._store_collector = StoreCollector(store)
            self.registry.register(self._store_collector)
            self.registry.register(WriterCollector(store))

    def observe(self, route: str, method: str, status: str, seconds: float) -> None:
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = (self._requests.labels(route, method, status),
                        self._latency.labels(route))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class StoreCollector:
    """Gauges read from the shared store at each scrape."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def describe(self) -> list[Metric]:
        # Names only, for the registry's duplicate check (without reading the store).
        return [GaugeMetricFamily(name, "") for name in (
            "accessd_apps", "accessd_app_instances_desired", "accessd_tasks",
            "accessd_deployments_active", "accessd_apps_delayed", "accessd_apps_waiting")]

    def collect(self) -> Iterator[Metric]:
        store = self.store
        apps = store.list_apps()
        by_state: dict[str, int] = {}
        for task in store.list_tasks():
            state = str(task.get("state") or "unknown")
            by_state[state] = by_state.get(state, 0) + 1
        deployments = store.list_deployments(active_only=True)
        statuses = store.list_app_status()
        now = time.time()
        delayed = sum(1 for s in statuses.values() if (delay_left(s, now) or 0) > 0)
        waiting = sum(1 for s in statuses.values() if s.get("waiting"))

        yield GaugeMetricFamily("accessd_apps", "Apps in the desired state.", value=len(apps))
        yield GaugeMetricFamily("accessd_app_instances_desired", "Sum of the apps' instances.",
                                value=sum(int(a.get("instances", 0)) for a in apps))
        tasks = GaugeMetricFamily("accessd_tasks", "Live tasks by Mesos state.", labels=["state"])
        for state in sorted(set(by_state) | {"TASK_RUNNING", "TASK_STAGING"}):
            tasks.add_metric([state], by_state.get(state, 0))
        yield tasks
        yield GaugeMetricFamily("accessd_deployments_active", "Deployments in progress.",
                                value=len(deployments))
        yield GaugeMetricFamily("accessd_apps_delayed",
                                "Apps whose launches wait for a backoff delay.", value=delayed)
        yield GaugeMetricFamily("accessd_apps_waiting",
                                "Apps with launches waiting for suitable offers.", value=waiting)


# (name, help, WriterStats field) of the writers' counters.
_WRITER_COUNTERS = (
    ("accessd_store_write_transactions", "Write transactions this worker led.", "transactions"),
    ("accessd_store_writes", "Writes those transactions carried (group commit).", "writes"),
    ("accessd_store_write_turn_wait_seconds",
     "Seconds this worker's transaction leaders waited for the writers' turn.", "wait_seconds"),
    ("accessd_store_write_turn_held_seconds",
     "Seconds this worker held the writers' turn (BEGIN to COMMIT).", "held_seconds"),
    ("accessd_store_write_turn_cpu_seconds",
     "CPU seconds of the leading threads while they held the turn.", "held_cpu_seconds"),
)


class WriterCollector:
    """This worker's `WriterStats`, when the store keeps them (SQLite; none for ZooKeeper)."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def describe(self) -> list[Metric]:
        return [CounterMetricFamily(name, "") for name, _, _ in _WRITER_COUNTERS]

    def collect(self) -> Iterator[Metric]:
        reader = getattr(self.store, "writer_stats", None)
        stats: WriterStats | None = reader() if reader is not None else None
        if stats is None:
            return
        for name, text, field in _WRITER_COUNTERS:
            yield CounterMetricFamily(name, text, value=getattr(stats, field))


class MetricsMiddleware:
    """Times every request and counts it by route template (bounded label values)."""

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
        self.metrics.observe(route, req.method, str(resp.status_code),
                             time.perf_counter() - started)


class MetricsResource:
    def __init__(self, metrics: Metrics, store: StateStore) -> None:
        self.metrics = metrics
        metrics.attach(store)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Prometheus metrics: requests, latency, apps, tasks by state, deployments."""
        resp.content_type = CONTENT_TYPE
        resp.data = self.metrics.render()
