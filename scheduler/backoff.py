"""Per-app launch backoff, pure over the app runtime status document.

The status document (DEVELOPERS.md, "App runtime status") carries everything: `delay`
(`{"until", "seconds"}` or null), `consecutiveFailures` and `lastTaskFailure`. Functions here take
a status and return a new one; they never mutate their input and never read the clock.

Invariants:
- after the n-th consecutive failure the delay is
  `min(backoffSeconds * backoffFactor ** (n - 1), maxLaunchDelaySeconds)`, counted from the
  failure, so delays grow geometrically and are capped;
- the delay and the failure count reset once a task of the app's current version has run for
  `stable_seconds` while healthy (or RUNNING, for an app without health checks), and when the
  app's configuration changes (a failure of an older version says nothing about the new one);
- a delay only blocks launches of the configuration version whose task failed.
"""

from __future__ import annotations

import copy
from typing import Any, Protocol

from scheduler.spec import format_time, parse_time

Doc = dict[str, Any]

# How long a task must run (healthy, when checked) before the app's failures are forgiven.
STABLE_SECONDS = 10.0


class BackoffParams(Protocol):
    backoff_seconds: float
    backoff_factor: float
    max_launch_delay_seconds: float


def empty_status(app_id: str, now: float) -> Doc:
    return {"appId": app_id, "delay": None, "waiting": None, "lastTaskFailure": None,
            "consecutiveFailures": 0, "updatedAt": format_time(now)}


def delay_seconds(app: BackoffParams, failures: int) -> float:
    """The launch delay after `failures` consecutive failures (0 for none)."""
    if failures <= 0:
        return 0.0
    seconds = float(app.backoff_seconds) * float(app.backoff_factor) ** (failures - 1)
    return min(seconds, float(app.max_launch_delay_seconds))


def record_failure(status: Doc, app: BackoffParams, failure: Doc, now: float) -> Doc:
    """Count one more failure (`failure` is the `lastTaskFailure` document) and delay launches."""
    new = copy.deepcopy(status)
    failures = int(new.get("consecutiveFailures") or 0) + 1
    seconds = delay_seconds(app, failures)
    new["consecutiveFailures"] = failures
    new["lastTaskFailure"] = failure
    new["delay"] = {"until": format_time(now + seconds), "seconds": round(seconds, 3)}
    new["updatedAt"] = format_time(now)
    return new


def reset(status: Doc, now: float) -> Doc:
    """Forget the failures (the last failure itself stays on record, as in Marathon)."""
    if not status.get("delay") and not status.get("consecutiveFailures"):
        return status
    new = copy.deepcopy(status)
    new["delay"] = None
    new["consecutiveFailures"] = 0
    new["updatedAt"] = format_time(now)
    return new


def apply_delay_reset(status: Doc, request: Doc, now: float) -> Doc:
    """The status after an operator's reset (`request` from the store's
    `pending_delay_resets()`): no delay, no failures counted, `delayResetAt` the request's time;
    the last failure stays on record."""
    new = copy.deepcopy(status)
    new["delay"] = None
    new["consecutiveFailures"] = 0
    new["delayResetAt"] = request.get("requestedAt") or format_time(now)
    new["updatedAt"] = format_time(now)
    return new


def _failure_version(status: Doc) -> str | None:
    return (status.get("lastTaskFailure") or {}).get("version")


def delay_remaining(status: Doc | None, config_version: str | None, now: float) -> float:
    """Seconds until the app may launch tasks of `config_version` again (0 = now)."""
    if not status or not status.get("delay"):
        return 0.0
    if config_version is not None and _failure_version(status) not in (None, config_version):
        return 0.0
    return max(0.0, parse_time(status["delay"]["until"]) - now)


def launch_allowed(status: Doc | None, config_version: str | None, now: float) -> bool:
    return delay_remaining(status, config_version, now) <= 0.0


def _stable(task: Doc, has_health_checks: bool, now: float, stable_seconds: float) -> bool:
    if task.get("state") != "TASK_RUNNING" or task.get("killRequested"):
        return False
    if has_health_checks:
        if task.get("healthy") is not True:
            return False
        result = (task.get("healthCheckResults") or [{}])[0]
        since = result.get("firstSuccess") or task.get("startedAt")
    else:
        since = task.get("startedAt")
    return bool(since) and now - parse_time(since) >= stable_seconds


def settle(status: Doc, tasks: list[Doc], config_version: str | None, has_health_checks: bool,
           now: float, stable_seconds: float = STABLE_SECONDS) -> Doc:
    """Reset the backoff if the app's configuration changed since its last failure or one of
    its current tasks has been stable for `stable_seconds`; otherwise return `status` as is."""
    if not status.get("delay") and not status.get("consecutiveFailures"):
        return status
    failed_version = _failure_version(status)
    if config_version is not None and failed_version not in (None, config_version):
        return reset(status, now)
    if any(t.get("version") == config_version and
           _stable(t, has_health_checks, now, stable_seconds) for t in tasks):
        return reset(status, now)
    return status
