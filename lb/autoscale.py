"""Opt-in autoscaling from HAProxy's request rate, pure: labels → a policy, a rate → a count.

An app opts in with labels (and the balancer with `accessd lb --autoscale`, so that of several
balancers one scales):
- `ACCESSD_AUTOSCALE_TARGET_RPS`: requests/s one instance should serve (required, > 0);
- `ACCESSD_AUTOSCALE_MIN_INSTANCES` (1) and `ACCESSD_AUTOSCALE_MAX_INSTANCES` (10);
- `ACCESSD_AUTOSCALE_COOLDOWN_SECONDS` (30): no change sooner after the app's last scaling
  (`versionInfo.lastScalingAt`, so a restarted balancer keeps the cooldown).

The wanted count is `ceil(rate / target)` within [min, max]. Scaling down waits until the rate
would fit in the smaller count with 20 % to spare, so a rate on a boundary does not flap. The
change goes through the control API (`PUT /v2/apps/{id}` with `instances`): it is an ordinary
deployment with its events, and its removals are drained like any scale-down.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Doc = dict[str, Any]
PREFIX = "ACCESSD_AUTOSCALE_"
DOWN_HEADROOM = 0.8


@dataclass(frozen=True)
class Policy:
    target_rps: float
    min_instances: int = 1
    max_instances: int = 10
    cooldown_seconds: float = 30.0


def policy(app: Doc) -> tuple[Policy | None, str | None]:
    """The app's policy, or None (not opted in, or why its labels are refused)."""
    labels = app.get("labels") or {}
    if f"{PREFIX}TARGET_RPS" not in labels:
        return None, None
    try:
        p = Policy(float(labels[f"{PREFIX}TARGET_RPS"]),
                   int(labels.get(f"{PREFIX}MIN_INSTANCES", 1)),
                   int(labels.get(f"{PREFIX}MAX_INSTANCES", 10)),
                   float(labels.get(f"{PREFIX}COOLDOWN_SECONDS", 30)))
    except ValueError as exc:
        return None, f"{app.get('id')}: autoscale labels: {exc}"
    if p.target_rps <= 0 or p.min_instances < 0 or p.max_instances < max(1, p.min_instances) \
            or p.cooldown_seconds < 0:
        return None, (f"{app.get('id')}: autoscale labels need TARGET_RPS > 0 and "
                      "0 <= MIN_INSTANCES <= MAX_INSTANCES (>= 1), COOLDOWN_SECONDS >= 0")
    return p, None


def decide(p: Policy, instances: int, rps: float, last_scaling: str | None,
           now: float) -> int | None:
    """The new instance count, or None to leave the app as it is."""
    try:
        since = now - parse_time(last_scaling) if last_scaling else math.inf
    except ValueError:
        since = math.inf
    want = min(p.max_instances, max(p.min_instances, math.ceil(rps / p.target_rps)))
    if want == instances:
        return None
    if instances < p.min_instances or instances > p.max_instances:
        return want  # out of bounds (someone scaled by hand): back in at once
    if since < p.cooldown_seconds:
        return None
    if want < instances and rps > DOWN_HEADROOM * p.target_rps * want:
        return None
    return want


def parse_time(iso: str) -> float:
    """Epoch seconds of the API's ISO 8601 times (`2026-12-03T10:00:00.000Z`)."""
    dt = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


class RateMeter:
    """Requests/s per backend from HAProxy's cumulative counters (`req_tot`, or `stot` in TCP
    mode), over the last `window` seconds of samples; a counter that went down (a reload or a
    restart started a new worker) starts over."""

    def __init__(self, window: float = 10.0) -> None:
        self.window = window
        self.samples: dict[str, list[tuple[float, int]]] = {}

    def add(self, backend: str, at: float, total: int) -> None:
        series = self.samples.setdefault(backend, [])
        if series and total < series[-1][1]:
            series.clear()
        series.append((at, total))
        while len(series) > 2 and at - series[1][0] >= self.window:
            series.pop(0)

    def rate(self, backend: str) -> float | None:
        series = self.samples.get(backend) or []
        if len(series) < 2 or series[-1][0] <= series[0][0]:
            return None
        (t0, n0), (t1, n1) = series[0], series[-1]
        return (n1 - n0) / (t1 - t0)
