"""What the balancer's tests and `bench/lb.py` share: a cluster with `accessd lb` in front, the
echo service's app definition, and a bounded loopback load that counts every failure.

- `lb_cluster(work, drain_timeout=…)`: localmesos + `accessd scheduler` + `accessd api` +
  `accessd lb` (real HAProxy), all on 127.0.0.1, stopped in reverse order; yields `Cluster`.
- `echo_app(app_id, service_port, instances, ctl)`: `tests/lb/echo_service.py` with an HTTP
  health check every second, in the balancer's group.
- `Load(url, threads)`: threads with keep-alive sessions sending GETs until stopped (or
  `max_seconds`); `stop()` gives `LoadResult` (ok, failed with why, per-task counts, rps, p99).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.fixtures_api import start_api
from tests.fixtures_scheduler import scheduler_cluster
from tests.support import PYTHON, REPO, Proc, assert_no_traceback, free_port, wait_until

SERVICE = REPO / "tests" / "lb" / "echo_service.py"


@dataclass
class Cluster:
    api: str
    store: Any
    lb: Proc
    lb_work: Path
    metrics: str
    stats: str
    sched: Proc
    http: str  # the vhosts' shared port

    def get(self, path: str) -> Any:
        resp = requests.get(self.api + path, timeout=10)
        resp.raise_for_status()
        return resp.json()

    def lb_state(self) -> dict:
        return requests.get(self.metrics.replace("/metrics", "/v1/lb"), timeout=5).json()

    def servers(self, app_id: str, state: str = "ready") -> set[str]:
        return {s["task_id"] for svc in self.lb_state()["services"] if svc["app_id"] == app_id
                for s in svc["servers"] if s["state"] == state}

    def healthy(self, app_id: str) -> set[str]:
        app = self.get(f"/v2/apps{app_id}?embed=app.tasks&embed=accessd")["app"]
        return {t["id"] for t in app.get("tasks", [])
                if t.get("healthy") is True and not t.get("killRequested")}

    def wait_serving(self, app_id: str, n: int, timeout: float = 60) -> set[str]:
        """`n` healthy tasks, and the balancer routes to exactly those."""
        def ok() -> set[str] | None:
            healthy = self.healthy(app_id)
            return healthy if len(healthy) == n and self.servers(app_id) == healthy else None
        return wait_until(ok, timeout=timeout, interval=0.1,
                          message=f"{n} healthy tasks of {app_id} in rotation")

    def put(self, path: str, body: dict, **params: Any) -> dict:
        resp = requests.put(self.api + path, json=body, params=params, timeout=10)
        assert resp.status_code in (200, 201), resp.text
        return resp.json()

    def post(self, path: str, body: dict | None = None, **params: Any) -> dict:
        resp = requests.post(self.api + path, json=body, params=params, timeout=10)
        assert resp.status_code in (200, 201), resp.text
        return resp.json()

    def wait_deployments_done(self, timeout: float = 90, app_id: str | None = None) -> None:
        """No running deployment (of `app_id`, when given)."""
        def done() -> bool:
            return not [d for d in self.get("/v2/deployments")
                        if app_id is None or app_id in d.get("affectedApps", [])]
        wait_until(done, timeout=timeout, interval=0.1, message="no running deployment")


def start_lb(api: str, work: Path,
             extra: list[str] | None = None) -> tuple[Proc, str, str, str]:
    metrics_port, stats_port, http_port = free_port(), free_port(), free_port()
    proc = Proc([PYTHON, "-m", "accessd.cli", "lb", "--api", api, "--work-dir", str(work),
                 "--metrics-port", str(metrics_port), "--stats-port", str(stats_port),
                 "--http-port", str(http_port), "--name", f"test-lb-{metrics_port}",
                 "--lease", "5", "--autoscale", "--autoscale-every", "1", *(extra or [])],
                cwd=REPO)
    try:
        proc.wait_for_line(lambda line: line.startswith("ready lb="), timeout=60)
    except BaseException:
        proc.stop()
        raise
    return (proc, f"http://127.0.0.1:{metrics_port}/metrics",
            f"http://127.0.0.1:{stats_port}/haproxy?stats", f"http://127.0.0.1:{http_port}/")


@contextmanager
def lb_cluster(work: Path, drain_timeout: float = 5.0) -> Iterator[Cluster]:
    with scheduler_cluster(work, ["--drain-timeout", str(drain_timeout)]) as (_, store, sched):
        api, base = start_api(work / "state.db")
        lb = None
        try:
            lb, metrics, stats, http = start_lb(base, work / "lb")
            yield Cluster(base, store, lb, work / "lb", metrics, stats, sched, http)
        finally:
            if lb is not None:
                lb.stop()
            api.stop()
        if lb is not None:
            assert_no_traceback([lb])
            assert "stopping" in lb.full_output()  # SIGTERM: unregistered, HAProxy stopped


def echo_app(app_id: str, service_port: int, instances: int, ctl: Path, **extra: Any) -> dict:
    return {
        "id": app_id, "cmd": f"{PYTHON} {SERVICE}", "instances": instances,
        "cpus": 0.1, "mem": 64, "env": {"CTL": str(ctl)},
        "portDefinitions": [{"port": service_port, "name": "http", "protocol": "tcp"}],
        "labels": {"HAPROXY_GROUP": "external"},
        "healthChecks": [{"protocol": "HTTP", "path": "/health", "portIndex": 0,
                          "intervalSeconds": 1, "timeoutSeconds": 0.5, "gracePeriodSeconds": 10,
                          "maxConsecutiveFailures": 1}],
        "upgradeStrategy": {"minimumHealthCapacity": 1.0, "maximumOverCapacity": 0.5},
        **extra,
    }


@dataclass
class LoadResult:
    ok: int = 0
    failed: int = 0
    why: collections.Counter = field(default_factory=collections.Counter)
    by_task: collections.Counter = field(default_factory=collections.Counter)
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    @property
    def p99_ms(self) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


class Load:
    """`threads` clients sending GET `url` back to back (keep-alive) until `stop()` or
    `max_seconds`; every non-200 answer or connection error is a failed request."""

    def __init__(self, url: str, threads: int = 4, max_seconds: float = 120.0) -> None:
        self.url = url
        self.threads = threads
        self.max_seconds = max_seconds
        self.result = LoadResult()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.workers = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def start(self) -> Load:
        self.started = time.monotonic()
        for w in self.workers:
            w.start()
        return self

    def _run(self) -> None:
        session = requests.Session()
        deadline = self.started + self.max_seconds
        while not self.stopping.is_set() and time.monotonic() < deadline:
            t0 = time.monotonic()
            try:
                resp = session.get(self.url, timeout=10)
                ok = resp.status_code == 200
                why = None if ok else f"HTTP {resp.status_code}"
                task = resp.json().get("taskId") if ok else None
            except (requests.RequestException, ValueError) as exc:
                ok, why, task = False, type(exc).__name__, None
            took = time.monotonic() - t0
            with self.lock:
                if ok:
                    self.result.ok += 1
                    self.result.by_task[task] += 1
                    self.result.latencies.append(took)
                else:
                    self.result.failed += 1
                    self.result.why[why] += 1
        session.close()

    def stop(self) -> LoadResult:
        self.stopping.set()
        for w in self.workers:
            w.join(15)
        self.result.seconds = time.monotonic() - self.started
        return self.result
