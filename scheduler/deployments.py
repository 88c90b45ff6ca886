"""Deployment planning and progress, pure: no I/O, the time is always passed in.

A deployment document (DEVELOPERS.md "Deployment document") records one change of one app:
create = [StartApplication] then [ScaleApplication]; scale = [ScaleApplication]; new definition
("update") or restart = [RestartApplication]; delete = [StopApplication]. The scheduler does the
work by reconciling tasks toward the stored app; `advance` only *observes* how far that got.

Invariants:
- `target` is fixed when the deployment is planned: `{"app", "instances", "configVersion"}`,
  where `configVersion` is the new app's `versionInfo.lastConfigChangeAt` (None for a delete).
- a task is *current* when its `version` equals `target.configVersion`; it is *ready* when it is
  current, `TASK_RUNNING`, not being killed, healthy (`healthy is True` if the app has
  health checks, `healthy` not False if it has none) and, if the app has readiness checks,
  ready (Marathon's readiness: `scheduler.readiness` probes and records the result).
- a create/scale/update/restart succeeds when exactly `target.instances` tasks remain and all
  are ready (no old-version and no surplus tasks left); a delete succeeds when no task remains.
- a running deployment whose app disappeared (or, for a non-delete, whose app's configuration
  moved on to another version) fails; a final deployment (`succeeded`, `failed`, `cancelled`,
  `superseded`) never changes again.
- steps complete in order, each exactly once, each with one `deployment_step_success` event;
  the last is followed by `deployment_success` (Marathon payloads: step events carry
  `{plan, currentStep}`, final events `{id, plan}`).
"""

from __future__ import annotations

import copy
import math
import random
import time
import uuid
from typing import Any

from scheduler.spec import AppSpec, parse_app

__all__ = [
    "ACTIVE", "FINAL_STATUSES", "KINDS", "advance", "affects", "fail", "is_active",
    "plan_deployment", "rolling_restart_budget", "task_is_ready",
]

Doc = dict[str, Any]
Event = tuple[str, Doc]

ACTIVE = "running"
FINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled", "superseded"})
KINDS = ("create", "scale", "update", "restart", "delete")

_STEPS = {
    "create": ("StartApplication", "ScaleApplication"),
    "scale": ("ScaleApplication",),
    "update": ("RestartApplication",),
    "restart": ("RestartApplication",),
    "delete": ("StopApplication",),
}

# Rounding guard: 10 * 0.7 is 7.000000000000001 in floats; capacities are given to a few decimals,
# so anything within 1e-9 of a whole number is that number.
_EPS = 1e-9


def _config_version(app: Doc | None) -> str | None:
    if app is None:
        return None
    info = app.get("versionInfo") or {}
    return info.get("lastConfigChangeAt") or app.get("version")


def _infer_kind(old_app: Doc | None, new_app: Doc | None) -> str:
    if new_app is None:
        return "delete"
    if old_app is None:
        return "create"
    old_v, new_v = _config_version(old_app), _config_version(new_app)
    if old_v is not None and old_v == new_v:
        return "scale"
    return "update"


def _actions(names: tuple[str, ...] | list[str], app_id: str) -> list[Doc]:
    return [{"action": name, "app": app_id} for name in names]


def _current_actions(step: Doc | None) -> list[Doc]:
    if step is None:
        return []
    return [dict(a, readinessCheckResults=[]) for a in step.get("actions", [])]


def new_deployment_id() -> str:
    """A new deployment's id: a UUID in Marathon's text form whose first 48 bits are the time in
    milliseconds and the rest random (RFC 9562's version 7). Ids made one after the other sort
    together, so a store's index of them grows at its end, where the pages are already in
    memory, instead of one random page per deployment (uuid4). Python 3.11's `uuid` has no
    version 7 and one function does not warrant a dependency.

    The random bits come from `random`, not `os.urandom`: an id needs to be unique, not
    unguessable, and os.urandom lets go of the GIL for its system call, which under a
    contended GIL cost a writer a wait and a wake. (`random` is seeded anew from the system's
    entropy in each forked child, such as every gunicorn worker.)"""
    bits = (time.time_ns() // 1_000_000 & (1 << 48) - 1) << 80
    bits |= random.getrandbits(80) & ~(0xF << 76 | 0x3 << 62)
    return str(uuid.UUID(int=bits | 0x7 << 76 | 0x2 << 62))


def plan_deployment(old_app: Doc | None, new_app: Doc | None, *, now: str,
                    deployment_id: str | None = None, kind: str | None = None) -> Doc:
    """The deployment document for changing `old_app` into `new_app` (stored app documents;
    None = does not exist / deleted). `kind` ("create", "scale", "update", "restart",
    "delete") is inferred when None: same `lastConfigChangeAt` = scale, otherwise update."""
    if old_app is None and new_app is None:
        raise ValueError("a deployment needs an old or a new app")
    kind = kind or _infer_kind(old_app, new_app)
    if kind not in _STEPS:
        raise ValueError(f"unknown deployment kind {kind!r}; expected one of {', '.join(KINDS)}")
    if (kind == "delete") != (new_app is None):
        raise ValueError(f"kind {kind!r} does not fit new_app={'None' if new_app is None else 'set'}")
    app_id = (new_app or old_app or {})["id"]
    steps = [{"actions": _actions([name], app_id)} for name in _STEPS[kind]]
    return {
        "id": deployment_id or new_deployment_id(),
        "version": (new_app or {}).get("version") or now,
        "affectedApps": [app_id],
        "affectedPods": [],
        "steps": steps,
        "currentStep": 1,
        "totalSteps": len(steps),
        "currentActions": _current_actions(steps[0]),
        "status": ACTIVE,
        "createdAt": now,
        "finishedAt": None,
        "message": None,
        "kind": kind,  # additive: which of the four plans this is
        "target": {
            "app": app_id,
            "instances": 0 if new_app is None else int(new_app.get("instances", 0)),
            "configVersion": _config_version(new_app),
        },
        "progress": {"healthy": 0, "running": 0, "old": 0},
    }


def affects(deployment: Doc, app_id: str) -> bool:
    """Whether `deployment` changes `app_id` (its `affectedApps` names it)."""
    want = "/" + app_id.strip("/")
    return any("/" + str(a).strip("/") == want for a in deployment.get("affectedApps") or ())


def is_active(deployment: Doc) -> bool:
    return deployment.get("status") == ACTIVE


def _has_health_checks(app: Doc | AppSpec | None) -> bool:
    if app is None:
        return False
    if isinstance(app, AppSpec):
        return bool(app.health_checks)
    return bool(app.get("healthChecks"))


def _has_readiness_checks(app: Doc | AppSpec | None) -> bool:
    if app is None:
        return False
    if isinstance(app, AppSpec):
        return bool(app.readiness_checks)
    return bool(app.get("readinessChecks"))


def task_is_ready(task: Doc, has_health_checks: bool, has_readiness_checks: bool = False) -> bool:
    """Running, not being killed, healthy (checked apps need `healthy is True`) and, for apps
    with readiness checks, ready (`scheduler.readiness`: a result with `ready: true`)."""
    if task.get("state") != "TASK_RUNNING" or task.get("killRequested"):
        return False
    if has_readiness_checks and not any(r.get("ready") is True
                                        for r in task.get("readinessCheckResults") or ()):
        return False
    healthy = task.get("healthy")
    return healthy is True if has_health_checks else healthy is not False


def _progress(deployment: Doc, app: Doc | None, tasks: list[Doc]) -> Doc:
    target = deployment.get("target") or {}
    version = target.get("configVersion")
    checks = _has_health_checks(app)
    readiness = _has_readiness_checks(app)
    current = [t for t in tasks if version is not None and t.get("version") == version]
    return {
        "healthy": sum(task_is_ready(t, checks, readiness) for t in current),
        "running": sum(t.get("state") == "TASK_RUNNING" for t in current),
        "old": len(tasks) - len(current),
    }


def _finish(doc: Doc, status: str, now: str, message: str | None) -> None:
    doc["status"] = status
    doc["finishedAt"] = now
    doc["message"] = message
    doc["currentActions"] = []


def fail(deployment: Doc, *, now: str, message: str) -> tuple[Doc, list[Event]]:
    """Mark an active deployment failed; returns the document and its `deployment_failed`."""
    doc = copy.deepcopy(deployment)
    if doc.get("status") != ACTIVE:
        return doc, []
    _finish(doc, "failed", now, message)
    return doc, [("deployment_failed", {"id": doc["id"], "plan": copy.deepcopy(doc)})]


def advance(deployment: Doc, app: Doc | None, tasks: list[Doc], *,
            now: str) -> tuple[Doc, list[Event]]:
    """Observe `app`'s live `tasks` and move the deployment on: returns the updated document
    (a copy; equal to the input when nothing changed) and the events to append, in order."""
    doc = copy.deepcopy(deployment)
    if doc.get("status") != ACTIVE:
        return doc, []
    target = doc.get("target") or {}
    app_id = target.get("app") or (doc.get("affectedApps") or [None])[0]
    tasks = [t for t in tasks if t.get("appId", app_id) == app_id]
    deleting = target.get("configVersion") is None
    doc["progress"] = _progress(doc, app, tasks)
    if _has_readiness_checks(app):  # Marathon shows the new tasks' results in the action
        results = [r for t in tasks if t.get("version") == target.get("configVersion")
                   for r in t.get("readinessCheckResults") or ()]
        for action in doc.get("currentActions") or ():
            if action.get("app") == app_id:
                action["readinessCheckResults"] = results

    if not deleting:
        if app is None:
            return fail(doc, now=now, message=f"app {app_id} no longer exists")
        if _config_version(app) != target.get("configVersion"):
            return fail(doc, now=now, message=f"app {app_id} was changed by another deployment")

    steps = doc.get("steps") or []
    total = len(steps)
    step = int(doc.get("currentStep") or 1)
    events: list[Event] = []

    def step_success(done: Doc) -> None:
        events.append(("deployment_step_success",
                       {"plan": copy.deepcopy(doc), "currentStep": copy.deepcopy(done)}))

    def next_step() -> None:
        nonlocal step
        done = steps[step - 1]
        step += 1
        doc["currentStep"] = step
        doc["currentActions"] = _current_actions(steps[step - 1])
        step_success(done)

    # StartApplication is done once the app is stored (it starts with the new definition).
    while step < total and any(a.get("action") == "StartApplication"
                               for a in steps[step - 1].get("actions", [])):
        next_step()

    if deleting:
        finished = not tasks
    else:
        want = int(target.get("instances") or 0)
        finished = doc["progress"]["healthy"] == want and len(tasks) == want
    if finished:
        while step < total:
            next_step()
        doc["currentStep"] = total
        _finish(doc, "succeeded", now, None)
        if steps:
            step_success(steps[-1])
        events.append(("deployment_success", {"id": doc["id"], "plan": copy.deepcopy(doc)}))
    return doc, events


def _budget_inputs(app: AppSpec | Doc, version: str | None) -> tuple[AppSpec, str]:
    if isinstance(app, AppSpec):
        if version is None:
            raise ValueError("an AppSpec carries no version: pass version=lastConfigChangeAt")
        return app, version
    spec = parse_app(app)
    v = version or _config_version(app)
    if v is None:
        raise ValueError("the app document has no versionInfo.lastConfigChangeAt")
    return spec, v


def rolling_restart_budget(app: AppSpec | Doc, tasks: list[Doc], *,
                           version: str | None = None) -> tuple[int, int]:
    """Marathon's upgradeStrategy arithmetic for replacing old-version tasks:
    `(may_start_new, may_kill_old)` right now.

    With n = instances: keep at least `ceil(n * minimumHealthCapacity)` ready tasks (old or
    new) and run at most `n + floor(n * maximumOverCapacity)` (= floor(n * (1 + over)) for whole
    n) tasks in total, counting tasks being killed until they are gone. Rounding: the healthy
    floor rounds *up* and the capacity ceiling rounds *down*, both toward safety; values within
    1e-9 of a whole number count as that number. New tasks are started only up to n current
    ones; old tasks that are not ready may always be killed (that loses no health).

    When both bounds leave no room (minimumHealthCapacity 1 with maximumOverCapacity 0, or n
    small enough that both round to n) Marathon kills one old task anyway: so do we, one at a
    time (only when no kill is in flight and every current task is ready).
    `app` is a stored app document (its `versionInfo.lastConfigChangeAt` is the current
    version) or an `AppSpec` together with `version`.
    """
    spec, current_version = _budget_inputs(app, version)
    n = spec.instances
    checks = bool(spec.health_checks)
    readiness = bool(spec.readiness_checks)
    mine = [t for t in tasks if t.get("appId", spec.id) == spec.id]
    current = [t for t in mine if t.get("version") == current_version]
    old = [t for t in mine if t.get("version") != current_version]
    old_live = [t for t in old if not t.get("killRequested")]
    if n == 0:
        return 0, len(old_live)
    strategy = spec.upgrade_strategy
    min_ready = math.ceil(n * strategy.minimum_health_capacity - _EPS)
    max_total = n + math.floor(n * strategy.maximum_over_capacity + _EPS)
    current_live = [t for t in current if not t.get("killRequested")]
    may_start = max(0, min(n - len(current_live), max_total - len(mine)))
    ready = sum(task_is_ready(t, checks, readiness) for t in mine)
    old_not_ready = sum(not task_is_ready(t, checks, readiness) for t in old_live)
    may_kill = min(len(old_live), old_not_ready + max(0, ready - min_ready))
    killing = any(t.get("killRequested") for t in mine)
    if (may_start == 0 and may_kill == 0 and old_live and not killing
            and all(task_is_ready(t, checks, readiness) for t in current_live)):
        may_kill = 1  # no room either way: make room one task at a time, as Marathon does
    return may_start, may_kill
