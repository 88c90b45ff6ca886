"""What `accessd lb` applied, counted, and the small HTTP server that shows it:
`GET /metrics` (Prometheus text), `GET /v1/lb` (JSON: the services, their slots and the
counters), `GET /ping`."""

from __future__ import annotations

import json
import threading
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from lb.slots import Applied

COUNTERS = {
    "syncs": "full syncs against the control API",
    "sync_errors": "syncs that failed (API unreachable, HAProxy refused)",
    "reloads": "hitless HAProxy reloads",
    "runtime_commands": "runtime API commands applied (no reload)",
    "haproxy_restarts": "HAProxy restarts after it died",
    "drains_acknowledged": "leaving tasks reported drained to the control API",
    "events": "control API events received",
    "autoscale_changes": "scale requests made by the autoscaler (accessd lb --autoscale)",
}


class Metrics:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.applied: Applied | None = None

    def add(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.counts[name] += n

    def prometheus(self) -> str:
        """Prometheus text, written by `prometheus_client` (as the API's `/metrics`)."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self))
        return generate_latest(registry).decode()

    def document(self) -> dict[str, Any]:
        with self.lock:
            applied = self.applied
            counts = dict(self.counts)
        services = []
        if applied:
            for svc, slots in applied.pairs():
                doc = asdict(svc)
                doc.pop("members")
                doc["servers"] = [dict(asdict(s), name=f"s{i + 1}")
                                  for i, s in enumerate(slots) if s.task_id]
                services.append(doc)
        return {"services": services, "counters": counts}


def serve(metrics: Metrics, bind: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path == "/metrics":
                body, kind = metrics.prometheus().encode(), "text/plain; version=0.0.4"
            elif self.path == "/v1/lb":
                body, kind = json.dumps(metrics.document()).encode(), "application/json"
            elif self.path == "/ping":
                body, kind = b"pong\n", "text/plain"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((bind, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="lb-metrics", daemon=True).start()
    return server


class _Collector:
    """The counters and the servers per backend and state, read at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Any:
        with self.metrics.lock:
            counts = dict(self.metrics.counts)
            applied = self.metrics.applied
        for name, help_text in COUNTERS.items():
            yield CounterMetricFamily(f"accessd_lb_{name}", help_text, value=counts[name])
        servers = GaugeMetricFamily("accessd_lb_servers", "servers per backend and state",
                                    labels=["backend", "app", "state"])
        for svc, slots in (applied.pairs() if applied else []):
            for state in ("ready", "drain"):
                servers.add_metric([svc.name, svc.app_id, state],
                                   sum(1 for s in slots if s.state == state))
        yield servers
