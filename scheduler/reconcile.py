"""Reconciliation toward desired state, pure: (desired apps, live tasks, statuses, kill
requests, now) -> a `Plan` of launches, kills and whether the framework wants offers.

The framework calls `plan()` whenever something changed (an API write, a status update, an offer
round, a delay running out) and carries the plan out; running it again on the same inputs gives
the same plan, so a lost kill or launch is simply planned again.

Invariants:
- a task is *live* for planning when it is in the store and the scheduler has not asked to kill
  it (`killRequested`); tasks being killed are never planned twice;
- a task is *current* when its `version` equals its app's `versionInfo.lastConfigChangeAt`;
  *old* tasks are replaced, rolling, whether or not a deployment is still tracking it (a
  cancelled deployment leaves a mix that the next plan keeps converging);
- during a replacement the app never has fewer than `ceil(instances * minimumHealthCapacity)`
  healthy tasks because of a kill we plan (old tasks die only once replacements are healthy),
  and never more than `instances + floor(instances * maximumOverCapacity)` tasks (those being
  killed included) because of a launch we plan; when both bounds leave no room (1.0 / 0.0) one
  old task is killed at a time, as Marathon does (`deployments.rolling_restart_budget`);
- no launch is planned for an app whose backoff delay for its current version has not run out;
- an app with `dependencies` starts (its first task of a version) only once every app it
  depends on runs its instances, all current and healthy (Marathon's dependency order; `held`);
- unhealthy tasks of `//cmd` apps are left to Mesos, which kills them after
  `maxConsecutiveFailures` (it reports every failed probe as `healthy: false`);
- kill order within an app: operator kill requests, unhealthy tasks (counted as failures),
  old-version tasks, then surplus by `killSelection` (YOUNGEST_FIRST kills the latest staged);
- an unreachable task (TASK_UNREACHABLE / TASK_UNKNOWN) counts as an instance until its app's
  `unreachableStrategy.inactiveAfterSeconds` has passed, then a replacement is launched; after
  `expungeAfterSeconds` it is expunged (a `Kill` with `expunge`: forget it, kill it if it comes
  back). One that comes back RUNNING before counts again: the surplus goes by `killSelection`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from scheduler import backoff
from scheduler.deployments import rolling_restart_budget
from scheduler.spec import AppSpec, SpecError, parse_app
from scheduler.unreachable import DEFAULT as DEFAULT_UNREACHABLE
from scheduler.unreachable import (
    EXPUNGE,
    INACTIVE,
    UNREACHABLE_STATES,
    UnreachableStrategy,
    unreachable_strategy,
    verdict,
)

Doc = dict[str, Any]

REVIVE = "REVIVE"
SUPPRESS = "SUPPRESS"

# kill reasons (they show up in logs, events and `lastTaskFailure`)
KILL_REQUESTED = "operator kill request"
KILL_UNHEALTHY = "unhealthy"
KILL_APP_DELETED = "app deleted"
KILL_SCALE_DOWN = "scale down"
KILL_REPLACED = "replaced by a new version"
KILL_EXPUNGED = "unreachable past expungeAfterSeconds"
KILL_UNANSWERABLE = "killed while unreachable: it cannot answer the kill"


@dataclass(frozen=True)
class LaunchNeed:
    """Launch `count` more tasks of `app` at configuration `config_version`."""

    app: AppSpec
    count: int
    config_version: str


@dataclass(frozen=True)
class Kill:
    task_id: str
    app_id: str
    agent_id: str | None
    reason: str
    failure: bool = False  # counts against the app's backoff (unhealthy kills)
    expunge: bool = False  # forget the task document (unreachable too long), then kill


@dataclass(frozen=True)
class Plan:
    launches: tuple[LaunchNeed, ...] = ()
    kills: tuple[Kill, ...] = ()
    done_kill_requests: tuple[str, ...] = ()  # requests whose task is already gone
    delayed: dict[str, float] = field(default_factory=dict)  # app id -> seconds left
    invalid: dict[str, str] = field(default_factory=dict)   # app id -> why it was skipped
    offers: str = SUPPRESS
    held: dict[str, str] = field(default_factory=dict)  # app id -> the dependencies it waits for

    @property
    def demand(self) -> int:
        return sum(need.count for need in self.launches)

    def need_for(self, app_id: str) -> int:
        return sum(n.count for n in self.launches if n.app.id == app_id)


def config_version(app_doc: Doc) -> str:
    info = app_doc.get("versionInfo") or {}
    return info.get("lastConfigChangeAt") or app_doc.get("version") or ""


def is_healthy(task: Doc, has_health_checks: bool) -> bool:
    """Counts as healthy for capacity: RUNNING and healthy (or unchecked without checks)."""
    if task.get("state") != "TASK_RUNNING":
        return False
    if has_health_checks:
        return task.get("healthy") is True
    return task.get("healthy") is not False


def _order_for_kill(tasks: Iterable[Doc], kill_selection: str) -> list[Doc]:
    """Tasks in the order they should die: YOUNGEST_FIRST = latest staged first."""
    key = lambda t: (t.get("stagedAt") or "", t["id"])  # noqa: E731
    return sorted(tasks, key=key, reverse=(kill_selection != "OLDEST_FIRST"))


def _plan_app(spec: AppSpec, version: str, tasks: list[Doc], requested: set[str],
              status: Doc | None, now: float, kills: list[Kill],
              strategy: UnreachableStrategy = DEFAULT_UNREACHABLE) -> tuple[int, float]:
    """Append this app's kills; return `(launch_count, delay_left)`."""
    checks = bool(spec.health_checks)
    # Under Mesos's command executor the check is Mesos's own: every counted failure is reported
    # `healthy: false` and Mesos itself kills the task after `maxConsecutiveFailures` in a row.
    # Killing at the first report would turn one failed probe into a kill. (accessd's executor
    # reports `healthy: false` only once the limit is reached, so there the kill is ours.)
    mesos_kills_unhealthy = spec.executor == "//cmd"

    def kill(task: Doc, reason: str, failure: bool = False) -> None:
        kills.append(Kill(task["id"], spec.id, task.get("agentId") or task.get("slaveId"),
                          reason, failure))

    live: list[Doc] = []
    for task in tasks:
        if task.get("killRequested"):
            _expunge_unanswerable(task, spec.id, kills)
            continue
        if task["id"] in requested:
            kill(task, KILL_REQUESTED)
        elif (task.get("state") == "TASK_RUNNING" and task.get("healthy") is False
              and not mesos_kills_unhealthy):
            kill(task, f"{KILL_UNHEALTHY}: {task.get('message') or 'health check failed'}",
                 failure=True)
        elif (seen := verdict(task, strategy, now)) == EXPUNGE:
            kills.append(Kill(task["id"], spec.id, task.get("agentId") or task.get("slaveId"),
                              KILL_EXPUNGED, failure=True, expunge=True))
        elif seen != INACTIVE:  # inactive: still expected back, but a replacement launches
            live.append(task)

    current = [t for t in live if t.get("version") == version]
    old = [t for t in live if t.get("version") != version]
    n = spec.instances

    surplus = len(current) - n
    for task in _order_for_kill(current, spec.kill_selection)[:max(0, surplus)]:
        kill(task, KILL_SCALE_DOWN)
    if not old:
        launch = max(0, n - len(current))
    else:
        # The upgradeStrategy arithmetic is the deployments module's; it sees the tasks killed
        # in this round as being killed (they still hold capacity until they are gone).
        killing = {k.task_id for k in kills}
        view = [dict(t, killRequested=True) if t["id"] in killing else t for t in tasks]
        launch, may_kill = rolling_restart_budget(spec, view, version=version)
        unhealthy_first = sorted(
            _order_for_kill(old, spec.kill_selection),
            key=lambda t: is_healthy(t, checks))  # stable: keeps kill-selection order
        for task in unhealthy_first[:may_kill]:
            kill(task, KILL_REPLACED)

    delay = backoff.delay_remaining(status, version, now)
    if delay > 0:
        return 0, delay
    return launch, 0.0


def plan(apps: list[Doc], tasks: list[Doc], statuses: dict[str, Doc],
         deployments: list[Doc], kill_requests: list[Doc], now: float) -> Plan:
    """The plan for one round. `apps` are stored app documents, `tasks` the store's live task
    documents, `statuses` app runtime statuses by app id, `kill_requests` the pending ones.

    `deployments` (the active ones) are accepted so a future rule can depend on them; the
    replacement itself follows task versions, which is what deployments track.
    """
    del deployments  # see docstring: replacement is driven by task versions
    requested = {r["taskId"] for r in kill_requests}
    known = {t["id"] for t in tasks}
    by_app: dict[str, list[Doc]] = {}
    for task in tasks:
        by_app.setdefault(task.get("appId") or "", []).append(task)

    kills: list[Kill] = []
    launches: list[LaunchNeed] = []
    delayed: dict[str, float] = {}
    invalid: dict[str, str] = {}
    held: dict[str, str] = {}
    settled = _settled_apps(apps, by_app)
    desired_ids = set()
    for doc in sorted(apps, key=lambda d: d.get("id", "")):
        app_id = doc.get("id", "")
        desired_ids.add(app_id)
        try:
            spec = parse_app(doc)
        except SpecError as exc:
            invalid[app_id] = str(exc)  # leave its tasks alone: never kill on a parse problem
            continue
        version = config_version(doc)
        count, delay = _plan_app(spec, version, by_app.get(app_id, []), requested,
                                 statuses.get(app_id), now, kills, unreachable_strategy(doc))
        if delay > 0:
            delayed[app_id] = delay
        if count > 0 and spec.dependencies:
            waiting = _unsettled_dependencies(spec, version, by_app.get(app_id, []), apps,
                                              settled)
            if waiting:
                held[app_id] = ", ".join(waiting)
                count = 0
        if count > 0:
            launches.append(LaunchNeed(spec, count, version))

    for app_id, app_tasks in sorted(by_app.items()):
        if app_id in desired_ids:
            continue
        for task in app_tasks:
            if task.get("killRequested"):
                _expunge_unanswerable(task, app_id, kills)
            else:
                kills.append(Kill(task["id"], app_id, task.get("agentId") or task.get("slaveId"),
                                  KILL_APP_DELETED))

    done = tuple(r["taskId"] for r in kill_requests if r["taskId"] not in known)
    return Plan(launches=tuple(launches), kills=tuple(kills), done_kill_requests=done,
                delayed=delayed, invalid=invalid,
                offers=REVIVE if launches else SUPPRESS, held=held)


def _expunge_unanswerable(task: Doc, app_id: str, kills: list[Kill]) -> None:
    """A task being killed that became unreachable or unknown will never report TASK_KILLED
    (its agent is gone, or the master forgot it): forget it now, as Marathon expunges an
    instance whose kill cannot be answered. Should it come back, it is an unknown task and
    is killed then."""
    if task.get("state") in UNREACHABLE_STATES:
        kills.append(Kill(task["id"], app_id, task.get("agentId") or task.get("slaveId"),
                          KILL_UNANSWERABLE, expunge=True))


def _settled_apps(apps: list[Doc], by_app: dict[str, list[Doc]]) -> set[str]:
    """Apps whose current version runs its `instances` ready tasks and nothing else."""
    out: set[str] = set()
    for doc in apps:
        version = config_version(doc)
        tasks = [t for t in by_app.get(doc.get("id", ""), []) if not t.get("killRequested")]
        checks = bool(doc.get("healthChecks"))
        ready = [t for t in tasks if t.get("version") == version and is_healthy(t, checks)]
        if len(ready) >= int(doc.get("instances") or 0) and len(tasks) == len(ready):
            out.add(doc.get("id", ""))
    return out


def _unsettled_dependencies(spec: AppSpec, version: str, tasks: list[Doc], apps: list[Doc],
                            settled: set[str]) -> list[str]:
    """Marathon's dependency order: an app (re)starts only once the apps it depends on (an app
    id, or a group: every app under it) are deployed. Only a start waits: an app that already
    runs tasks of its current version is never held (a later failure of a dependency does not
    stop its replacements, as in Marathon)."""
    if any(t.get("version") == version for t in tasks):
        return []
    waiting = []
    for dep in spec.dependencies:
        members = [d.get("id", "") for d in apps
                   if d.get("id") == dep or str(d.get("id", "")).startswith(dep + "/")]
        if any(m not in settled for m in members):
            waiting.append(dep)
    return waiting
