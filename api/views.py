"""Pure functions turning stored documents into the API's Marathon-shaped answers.

Nothing here touches the store or Falcon: the resources fetch documents once per request (all
apps, all tasks, all statuses, all active deployments) and these functions assemble the views,
so `GET /v2/apps?embed=apps.tasks` costs four store reads whatever the number of apps.

The status label follows DEVELOPERS.md ("App runtime status"): `Deploying` if an active
deployment affects the app, else `Suspended` if `instances == 0`, else `Delayed` if the backoff
delay ends in the future, else `Waiting` if the scheduler recorded a waiting reason, else
`Running`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from api import shapes
from scheduler.deployment_plans import plan_id
from scheduler.spec import parse_time

Doc = dict[str, Any]

APP_EMBEDS = ("tasks", "deployments", "lastTaskFailure", "counts", "readiness", "taskStats")
# What Marathon embeds whatever the request asks: a list (`GET /v2/apps`) and one app.
LIST_EMBEDS = frozenset({"counts", "deployments"})
SINGLE_EMBEDS = frozenset({"counts", "tasks", "lastTaskFailure", "deployments"})
STAGED_STATES = frozenset({"TASK_STAGING", "TASK_STARTING"})
RUNNING_STATES = frozenset({"TASK_RUNNING"})


_EMBED_PREFIXES = ("group.apps.", "apps.", "app.")


def parse_embeds(values: Iterable[str], prefix: str | None = None) -> set[str]:
    """Marathon's app embeds: `["apps.tasks", "apps.counts"]` → `{"tasks", "counts"}`.

    As Marathon does, any of its prefixes (`apps.`, `app.`, `group.apps.`) or none is accepted
    whatever the endpoint, `tasks` implies `deployments`, and `failures` (deprecated) means
    tasks, lastTaskFailure and deployments. Unknown values are ignored, so newer clients keep
    working. `prefix` is accepted for compatibility and ignored."""
    out: set[str] = set()
    for raw in values:
        for value in raw.split(","):
            name = value.strip()
            for p in _EMBED_PREFIXES:
                if name.startswith(p):
                    name = name[len(p):]
                    break
            if name == "tasks":
                out |= {"tasks", "deployments"}
            elif name == "failures":
                out |= {"tasks", "lastTaskFailure", "deployments"}
            elif name in APP_EMBEDS:
                out.add(name)
    return out


def group_tasks(tasks: Iterable[Doc]) -> dict[str, list[Doc]]:
    """Tasks by `appId`, each list in the order given."""
    out: dict[str, list[Doc]] = {}
    for task in tasks:
        out.setdefault(task.get("appId", ""), []).append(task)
    return out


def deployments_by_app(deployments: Iterable[Doc]) -> dict[str, list[Doc]]:
    """Active deployments by affected app id."""
    out: dict[str, list[Doc]] = {}
    for dep in deployments:
        if dep.get("status", "running") != "running":
            continue
        for app_id in dep.get("affectedApps") or ():
            out.setdefault(app_id, []).append(dep)
    return out


def counts(tasks: Iterable[Doc]) -> dict[str, int]:
    """Marathon's task counters of an app."""
    running = staged = healthy = unhealthy = 0
    for task in tasks:
        state = task.get("state")
        if state in RUNNING_STATES:
            running += 1
        elif state in STAGED_STATES:
            staged += 1
        if task.get("healthy") is True:
            healthy += 1
        elif task.get("healthy") is False:
            unhealthy += 1
    return {"tasksStaged": staged, "tasksRunning": running, "tasksHealthy": healthy,
            "tasksUnhealthy": unhealthy}


def delay_left(status: Doc | None, now: float) -> float | None:
    """Seconds of backoff delay left (<= 0: overdue), or None when there is no delay."""
    delay = (status or {}).get("delay")
    if not delay or not delay.get("until"):
        return None
    try:
        return parse_time(delay["until"]) - now
    except (ValueError, TypeError):
        return None


def status_label(app: Doc, status: Doc | None, active_deployments: list[Doc], now: float) -> str:
    """Marathon's status label. Delayed and Waiting come first, as in Marathon's UI: a deployment
    that cannot progress (backoff, or demand no offer fits) should say why, not just Deploying."""
    wants_tasks = app.get("instances", 0) > 0  # a backoff or a wait matters only then
    left = delay_left(status, now)
    if wants_tasks and left is not None and left > 0:
        return "Delayed"
    if wants_tasks and (status or {}).get("waiting"):
        return "Waiting"
    if active_deployments:
        return "Deploying"
    if app.get("instances", 0) == 0:
        return "Suspended"
    return "Running"


def task_view(task: Doc, extras: bool = False) -> Doc:
    """A task as Marathon shows it (the fields a client relies on guaranteed present); accessd's
    own fields (agent attributes, resources, health verdict, message, …) only with `extras`."""
    out = shapes.task(task, extras)  # a new dict: the defaults below never touch `task`
    for key, default in _TASK_DEFAULTS:
        if key not in out:
            out[key] = [] if default is list else default
    return out


# Fields a client relies on, filled in when a stored task lacks them (`list`: a new empty list).
_TASK_DEFAULTS = (("host", None), ("ports", list), ("servicePorts", list),
                  ("ipAddresses", list), ("healthCheckResults", list), ("stagedAt", None),
                  ("startedAt", None))


def _lifetime(tasks: list[Doc], now: float) -> Doc | None:
    ages = sorted(now - parse_time(t["startedAt"]) for t in tasks if t.get("startedAt"))
    if not ages:
        return None
    mid = len(ages) // 2
    median = ages[mid] if len(ages) % 2 else (ages[mid - 1] + ages[mid]) / 2
    return {"averageSeconds": round(sum(ages) / len(ages), 3), "medianSeconds": round(median, 3)}


def _stats(tasks: list[Doc], now: float) -> Doc:
    c = counts(tasks)
    out: Doc = {"counts": {"staged": c["tasksStaged"], "running": c["tasksRunning"],
                           "healthy": c["tasksHealthy"], "unhealthy": c["tasksUnhealthy"]}}
    life = _lifetime(tasks, now)
    if life is not None:
        out["lifeTime"] = life
    return {"stats": out}


def task_stats(app: Doc, tasks: list[Doc], now: float) -> Doc:
    """Marathon's `TaskStatsByVersion`: counters and lifetimes of all tasks, of those on the
    current config, of older ones, and of those started after the last scaling; a group with
    no task is left out, as Marathon does."""
    info = app.get("versionInfo") or {}
    config = info.get("lastConfigChangeAt") or app.get("version")
    scaled = info.get("lastScalingAt")
    groups = {
        "totalSummary": tasks,
        "withLatestConfig": [t for t in tasks if t.get("version") == config],
        "withOutdatedConfig": [t for t in tasks if t.get("version") != config],
        "startedAfterLastScaling": [t for t in tasks if scaled and t.get("stagedAt")
                                    and parse_time(t["stagedAt"]) >= parse_time(scaled)],
    }
    return {name: _stats(group, now) for name, group in groups.items() if group}


def app_view(app: Doc, tasks: list[Doc], status: Doc | None, deployments: list[Doc],
             embeds: set[str], now: float, *, extras: bool = False,
             task_views: list[Doc] | None = None) -> Doc:
    """The app as Marathon's `AppInfo`: the definition plus what `embeds` names (see
    `parse_embeds`; callers add `LIST_EMBEDS` or `SINGLE_EMBEDS` as Marathon does). accessd's
    `status` label only with `extras`. `task_views`: `tasks` already shaped by `task_view`
    (with the same `extras`), used as they are; `tasks` then hold only the fields
    `api.task_views.COUNTED_FIELDS` names (add there any field read here)."""
    out = dict(app)
    if "counts" in embeds:
        out.update(counts(tasks))
    if "deployments" in embeds:
        out["deployments"] = [{"id": plan_id(d)} for d in deployments]
    if "readiness" in embeds:
        out["readinessCheckResults"] = [r for d in deployments
                                        for a in d.get("currentActions") or ()
                                        if a.get("app") == app.get("id")
                                        for r in a.get("readinessCheckResults") or ()]
    if "lastTaskFailure" in embeds and (status or {}).get("lastTaskFailure"):
        out["lastTaskFailure"] = status["lastTaskFailure"]  # type: ignore[index]
    if "taskStats" in embeds:
        out["tasksStats"] = task_stats(app, tasks, now)
    if extras:
        out["status"] = status_label(app, status, deployments, now)
    shaped = shapes.app(out, extras)
    if "tasks" in embeds:  # shaped here once (shapes.app would shape them a second time)
        shaped["tasks"] = (task_views if task_views is not None
                           else [task_view(t, extras) for t in tasks])
    return shaped


def queue_item(app_view_doc: Doc, status: Doc, tasks: list[Doc], now: float) -> Doc | None:
    """A `/v2/queue` entry for an app with launches waiting or delayed, else None."""
    left = delay_left(status, now)
    waiting = status.get("waiting")
    if left is None and not waiting:
        return None
    instances = int(app_view_doc.get("instances", 0))
    missing = max(0, instances - len(tasks))
    count = int(waiting.get("count", missing)) if waiting else missing
    if count <= 0 and (left is None or left <= 0):
        return None
    since = (waiting or {}).get("since") or status.get("updatedAt")
    reason = (waiting or {}).get("reason")
    item: Doc = {
        "app": app_view_doc,
        "count": count,
        "delay": {"timeLeftSeconds": max(0, int(round(left or 0))),
                  "overdue": left is None or left <= 0},
        "since": since,
        "lastUnusedOfferReason": reason,
        "processedOffersSummary": {
            "rejectSummaryLastOffers": ([{"reason": reason, "declined": 1, "processed": 1}]
                                        if reason else []),
        },
        "consecutiveFailures": status.get("consecutiveFailures", 0),
    }
    return item


# -- label selectors (?label=) -------------------------------------------------------------------
# Marathon's grammar (LabelSelectorParsers): selectors separated by commas, each `key`,
# `key==v`, `key!=v`, `key in (a, b)` or `key notin (a, b)`; a term is made of A-Za-z0-9 `.-_`,
# any other character escaped with a backslash; whitespace between tokens is ignored. Every
# selector requires the label to exist (so `tier!=x` does not match an app without `tier`).
_TERM_RE = re.compile(r"\s*((?:\\.|[-A-Za-z0-9_.])+)")
_OP_RE = re.compile(r"\s*(==|!=)")
_SET_OP_RE = re.compile(r"\s*(notin|in)\s*\(")
_PUNCT_RE = re.compile(r"\s*([,)])")
_ESCAPE_RE = re.compile(r"\\(.)")

Selector = tuple[str, str | None, frozenset[str]]


def parse_label_selector(text: str) -> list[Selector]:
    """`[(key, op, values)]` (op None for existence, `==`, `!=`, `in`, `notin`). ValueError
    names what cannot be parsed. An empty selector selects everything, as in Marathon."""
    pos = 0
    terms: list[Selector] = []

    def term() -> str:
        nonlocal pos
        m = _TERM_RE.match(text, pos)
        if not m:
            raise ValueError(f"expected a label or value at {text[pos:]!r}")
        pos = m.end()
        return _ESCAPE_RE.sub(r"\1", m.group(1))

    if not text.strip():
        return terms
    while True:
        key = term()
        if m := _SET_OP_RE.match(text, pos):
            pos = m.end()
            values: list[str] = []
            while True:
                if p := _PUNCT_RE.match(text, pos):
                    if p.group(1) == ")" and not values:
                        pos = p.end()
                        break
                values.append(term())
                p = _PUNCT_RE.match(text, pos)
                if not p:
                    raise ValueError(f"expected ',' or ')' at {text[pos:]!r}")
                pos = p.end()
                if p.group(1) == ")":
                    break
            terms.append((key, m.group(1), frozenset(values)))
        elif m := _OP_RE.match(text, pos):
            pos = m.end()
            terms.append((key, m.group(1), frozenset([term()])))
        else:
            terms.append((key, None, frozenset()))
        rest = _PUNCT_RE.match(text, pos)
        if rest is None:
            if text[pos:].strip():
                raise ValueError(f"cannot parse label selector at {text[pos:]!r}")
            return terms
        if rest.group(1) != ",":
            raise ValueError(f"unexpected ')' at {text[pos:]!r}")
        pos = rest.end()


def labels_match(labels: Mapping[str, str], terms: list[Selector]) -> bool:
    for key, op, values in terms:
        if key not in labels:
            return False
        value = labels[key]
        if op in ("==", "in") and value not in values:
            return False
        if op in ("!=", "notin") and value in values:
            return False
    return True
