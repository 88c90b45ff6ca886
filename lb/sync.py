"""The balancer's loop: keep HAProxy equal to the control API's state.

A sync reads the apps with their tasks, computes the desired model (`lb.model`), and the step
from what HAProxy runs (`lb.slots`): runtime-API commands, or a checked, hitless reload. Syncs
run when an event arrives on `/v2/events` (any event: they are cheap), after the stream
(re)connects, and every `resync_seconds` whatever happens. While tasks drain, HAProxy's
per-server counters are polled every `drain_poll` seconds; a leaving task whose servers have
no request in flight or queued is reported drained to the control API, which is what lets the
scheduler kill it early. The lease (`PUT /v2/balancers/{name}`) is renewed every third of
`lease_seconds`; a balancer that stops renewing is no longer waited for.
"""

from __future__ import annotations

import logging
import threading
import time

import requests

from lb.config import Settings, render
from lb.control import ControlApi
from lb.haproxy import HAProxy, HAProxyError
from lb.metrics import Metrics
from lb.model import desired
from lb.scaler import Autoscaler
from lb.slots import Applied, drained, draining, step

log = logging.getLogger("accessd.lb")


class Balancer:
    def __init__(self, api: ControlApi, proxy: HAProxy, settings: Settings, *,
                 groups: frozenset[str], http_port: int | None, name: str,
                 resync_seconds: float = 30.0, lease_seconds: float = 10.0,
                 drain_poll: float = 0.05, metrics: Metrics | None = None,
                 autoscaler: Autoscaler | None = None) -> None:
        self.api = api
        self.proxy = proxy
        self.settings = settings
        self.groups = groups
        self.http_port = http_port
        self.name = name
        self.resync_seconds = resync_seconds
        self.lease_seconds = lease_seconds
        self.drain_poll = drain_poll
        self.metrics = metrics or Metrics()
        self.applied: Applied | None = None
        self.apps: list[dict] = []
        self.autoscaler = autoscaler
        self.wake = threading.Event()
        self.stop_event = threading.Event()
        self.last_sync = float("-inf")
        self.reported: list[str] | None = None
        self.last_report = float("-inf")
        self.problems: tuple[str, ...] = ()

    # -- one sync ---------------------------------------------------------------------------------
    def sync(self) -> None:
        self.apps = self.api.apps()
        model = desired(self.apps, self.groups)
        if model.problems != self.problems:
            for problem in model.problems:
                log.warning("ignored: %s", problem)
            self.problems = model.problems
        plan = step(self.applied, model, self.http_port)
        text = render(plan.applied, self.settings)
        if plan.reload:
            self.proxy.check(text)
            self.proxy.write(text)
            if self.proxy.alive():
                self.proxy.reload()
                self.metrics.add("reloads")
                log.info("reloaded haproxy: %s", _summary(plan.applied))
            else:
                self.proxy.start()
                log.info("started haproxy: %s", _summary(plan.applied))
        elif plan.commands:
            self.proxy.apply(plan.commands)
            self.proxy.write(text)  # a restart comes back with this assignment
            self.metrics.add("runtime_commands", len(plan.commands))
            for command in plan.commands:
                log.info("applied: %s", command)
        self.applied = plan.applied
        self.metrics.applied = plan.applied
        self.metrics.add("syncs")

    def drained(self) -> list[str]:
        """Leaving tasks (any app's) this balancer no longer holds any request for."""
        leaving = {str(t["id"]) for app in self.apps for t in app.get("tasks") or []
                   if t.get("leaving") is not None}
        if not leaving:
            return []
        busy: set[str] = set()
        routed = draining(self.applied) if self.applied else {}
        if routed and self.proxy.old_workers():
            # A reload's old worker may still carry requests to them, and its counters are
            # not ours to read: wait until it is gone (hard-stop-after bounds it).
            busy = {server for servers in routed.values() for server in servers}
        elif routed:
            for row in self.proxy.stats():
                if int(row.get("scur") or 0) or int(row.get("qcur") or 0):
                    busy.add(f"{row.get('pxname')}/{row.get('svname')}")
        return drained(leaving, self.applied, busy)

    def report(self, drained: list[str]) -> None:
        now = time.monotonic()
        if drained == self.reported and now - self.last_report < self.lease_seconds / 3:
            return
        self.api.register(self.name, drained, self.lease_seconds)
        new = set(drained) - set(self.reported or [])
        for task_id in sorted(new):
            log.info("drained %s: acknowledged", task_id)
        self.metrics.add("drains_acknowledged", len(new))
        self.reported = drained
        self.last_report = now

    # -- the loop ---------------------------------------------------------------------------------
    def on_event(self, kind: str, payload: dict) -> None:
        self.metrics.add("events")
        self.wake.set()

    def run(self) -> None:
        threading.Thread(target=self.api.follow_events, name="lb-events", daemon=True,
                         args=(self.on_event, self.stop_event, self.wake.set)).start()
        while not self.stop_event.is_set():
            due = time.monotonic() - self.last_sync >= self.resync_seconds
            if self.wake.is_set() or due or self.applied is None:
                self.wake.clear()
                try:
                    self.sync()
                    self.last_sync = time.monotonic()
                except (requests.RequestException, HAProxyError, OSError, ValueError) as exc:
                    self.metrics.add("sync_errors")
                    log.warning("sync failed: %s", exc)
                    self.stop_event.wait(0.5)
                    self.wake.set()
                    continue
            try:
                drained = self.drained() if self.proxy.alive() else (self.reported or [])
                self.report(drained)
            except (requests.RequestException, HAProxyError, OSError, ValueError) as exc:
                log.warning("drain report failed: %s", exc)
            if self.autoscaler and self.autoscaler.due() and self.proxy.alive():
                try:
                    self.autoscaler.tick(self.apps, self.applied, self.proxy.stats())
                except (HAProxyError, OSError, ValueError) as exc:
                    log.warning("autoscale round failed: %s", exc)
            busy = bool(self.applied and draining(self.applied))
            self.wake.wait(self.drain_poll if busy else 1.0)

    def stop(self) -> None:
        self.stop_event.set()
        self.wake.set()


def _summary(applied: Applied) -> str:
    parts = []
    for svc, slots in applied.pairs():
        ready = sum(1 for s in slots if s.state == "ready")
        parts.append(f"{svc.app_id}:{svc.service_port}({svc.mode}, {ready} ready)")
    return ", ".join(parts) or "no services"
