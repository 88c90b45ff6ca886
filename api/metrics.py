"""`GET /metrics`: Prometheus text (format 0.0.4), in the style of `services/common.py`.

Request counters and latency histograms are per worker process (each gunicorn worker counts the
requests it answers; Prometheus sums them); the gauges (apps, tasks by state, active
deployments, queued apps) are read from the shared store at scrape time, so every worker reports
the same values for them.
"""

from __future__ import annotations

import bisect
import threading
import time
from typing import Any

import falcon

from api.views import delay_left
from scheduler.state import StateStore

LATENCY_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                      1.0, 2.5, 5.0, 10.0)


def _label(value: str) -> str:
    return value.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")


class Metrics:
    """Request counts by (route, method, status) and latency by route, thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str], int] = {}
        self._latency: dict[str, tuple[list[int], float, int]] = {}
        self.started = time.time()

    def observe(self, route: str, method: str, status: str, seconds: float) -> None:
        with self._lock:
            key = (route, method, status)
            self._counts[key] = self._counts.get(key, 0) + 1
            buckets, total, count = self._latency.get(route) or (
                [0] * (len(LATENCY_BUCKETS) + 1), 0.0, 0)
            buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
            self._latency[route] = (buckets, total + seconds, count + 1)

    def render(self, store: StateStore) -> str:
        lines = [
            "# HELP accessd_api_requests_total HTTP requests answered by this worker process.",
            "# TYPE accessd_api_requests_total counter",
        ]
        with self._lock:
            counts = sorted(self._counts.items())
            latency = sorted((r, (list(b), s, c)) for r, (b, s, c) in self._latency.items())
        for (route, method, status), n in counts:
            lines.append(f'accessd_api_requests_total{{route="{_label(route)}",'
                         f'method="{method}",status="{status}"}} {n}')
        lines += [
            "# HELP accessd_api_request_duration_seconds Time until the response headers "
            "(time to first byte for the event stream).",
            "# TYPE accessd_api_request_duration_seconds histogram",
        ]
        for route, (buckets, total, count) in latency:
            labels = f'route="{_label(route)}"'
            cumulative = 0
            for bound, n in zip((*LATENCY_BUCKETS, None), buckets, strict=True):
                cumulative += n
                le = "+Inf" if bound is None else repr(bound)
                lines.append(f'accessd_api_request_duration_seconds_bucket{{{labels},le="{le}"}} '
                             f"{cumulative}")
            lines.append(f"accessd_api_request_duration_seconds_sum{{{labels}}} {total:.6f}")
            lines.append(f"accessd_api_request_duration_seconds_count{{{labels}}} {count}")
        lines += _state_gauges(store)
        lines += [
            "# HELP process_start_time_seconds Start time of this worker process.",
            "# TYPE process_start_time_seconds gauge",
            f"process_start_time_seconds {self.started:.3f}",
        ]
        return "\n".join(lines) + "\n"


def _state_gauges(store: StateStore) -> list[str]:
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
    lines = [
        "# HELP accessd_apps Apps in the desired state.",
        "# TYPE accessd_apps gauge",
        f"accessd_apps {len(apps)}",
        "# HELP accessd_app_instances_desired Sum of the apps' instances.",
        "# TYPE accessd_app_instances_desired gauge",
        f"accessd_app_instances_desired {sum(int(a.get('instances', 0)) for a in apps)}",
        "# HELP accessd_tasks Live tasks by Mesos state.",
        "# TYPE accessd_tasks gauge",
    ]
    for state in sorted(set(by_state) | {"TASK_RUNNING", "TASK_STAGING"}):
        lines.append(f'accessd_tasks{{state="{_label(state)}"}} {by_state.get(state, 0)}')
    lines += [
        "# HELP accessd_deployments_active Deployments in progress.",
        "# TYPE accessd_deployments_active gauge",
        f"accessd_deployments_active {len(deployments)}",
        "# HELP accessd_apps_delayed Apps whose launches wait for a backoff delay.",
        "# TYPE accessd_apps_delayed gauge",
        f"accessd_apps_delayed {delayed}",
        "# HELP accessd_apps_waiting Apps with launches waiting for suitable offers.",
        "# TYPE accessd_apps_waiting gauge",
        f"accessd_apps_waiting {waiting}",
    ]
    return lines


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
        self.store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Prometheus metrics: requests, latency, apps, tasks by state, deployments."""
        resp.content_type = "text/plain; version=0.0.4; charset=utf-8"
        resp.text = self.metrics.render(self.store)
