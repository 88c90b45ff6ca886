"""The autoscaler's shell (`accessd lb --autoscale`): HAProxy's counters in, scale requests to
the control API out; the decisions are `lb.autoscale`'s."""

from __future__ import annotations

import logging
import time
from typing import Any

import requests

from lb.autoscale import RateMeter, decide, policy
from lb.control import ControlApi
from lb.metrics import Metrics
from lb.slots import Applied

log = logging.getLogger("accessd.lb.autoscale")


class Autoscaler:
    def __init__(self, api: ControlApi, metrics: Metrics, every: float = 5.0,
                 window: float = 10.0) -> None:
        self.api = api
        self.metrics = metrics
        self.every = every
        self.meter = RateMeter(window)
        self.last_tick = float("-inf")
        self.refused: set[str] = set()

    def due(self) -> bool:
        return time.monotonic() - self.last_tick >= self.every

    def tick(self, apps: list[dict[str, Any]], applied: Applied | None,
             stats: list[dict[str, str]]) -> None:
        self.last_tick = mono = time.monotonic()
        if applied is None:
            return
        rows = {r.get("pxname"): r for r in stats if r.get("svname") == "BACKEND"}
        by_id = {a["id"]: a for a in apps}
        for svc in applied.services:
            app = by_id.get(svc.app_id)
            if app is None or svc.port_index != 0:
                continue
            p, problem = policy(app)
            if problem and svc.app_id not in self.refused:
                log.warning("ignored: %s", problem)
                self.refused.add(svc.app_id)
            row = rows.get(svc.name)
            if p is None or row is None:
                continue
            total = row.get("req_tot") or row.get("stot") or "0"
            self.meter.add(svc.name, mono, int(total))
            rate = self.meter.rate(svc.name)
            if rate is None:
                continue
            instances = int(app.get("instances") or 0)
            want = decide(p, instances, rate, (app.get("versionInfo") or {}).get(
                "lastScalingAt"), time.time())
            if want is None:
                continue
            try:
                code = self.api.scale(svc.app_id, want)
            except requests.RequestException as exc:
                log.warning("autoscale %s: %s", svc.app_id, exc)
                continue
            if code in (200, 201):
                self.metrics.add("autoscale_changes")
                log.info("autoscale %s: %d -> %d instances (%.1f req/s, target %g per "
                         "instance)", svc.app_id, instances, want, rate, p.target_rps)
            else:
                log.info("autoscale %s: %d -> %d refused (HTTP %s; a deployment runs?), "
                         "later", svc.app_id, instances, want, code)
