"""How the operator commands print apps, tasks and deployments (tables, labels, raw JSON)."""

from __future__ import annotations

import json
from typing import Any

# --------------------------------------------------------------------------------------------
# Presentation
# --------------------------------------------------------------------------------------------

def status_label(app: dict[str, Any]) -> str:
    """The API's `status`; without one, what can be told from the app document alone."""
    if app.get("status"):
        return str(app["status"])
    if app.get("deployments"):
        return "Deploying"
    if app.get("instances") == 0:
        return "Suspended"
    return "Running"


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(c) for c in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def number(x: Any) -> str:
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return "" if x is None else str(x)


def apps_table(apps: list[dict[str, Any]]) -> str:
    rows = []
    for app in apps:
        checks = bool(app.get("healthChecks"))
        healthy = str(app.get("tasksHealthy", 0)) if checks else "-"
        if checks and app.get("tasksUnhealthy"):
            healthy += f" ({app['tasksUnhealthy']} unhealthy)"
        rows.append([app.get("id"), f"{app.get('tasksRunning', 0)}/{app.get('instances', 0)}",
                     healthy, status_label(app), number(app.get("cpus")),
                     number(app.get("mem"))])
    return table(["ID", "INSTANCES", "HEALTHY", "STATUS", "CPUS", "MEM"], rows)


def task_health(task: dict[str, Any]) -> str:
    healthy = task.get("healthy")
    if healthy is None:
        results = task.get("healthCheckResults") or []
        if not results:
            return "-"
        healthy = all(r.get("alive") for r in results)
    if healthy:
        return "healthy"
    causes = [r.get("lastFailureCause") for r in task.get("healthCheckResults") or []
              if r.get("lastFailureCause")]
    return "unhealthy" + (f" ({causes[0]})" if causes else "")


def tasks_table(tasks: list[dict[str, Any]]) -> str:
    rows = []
    for t in sorted(tasks, key=lambda t: (t.get("startedAt") or t.get("stagedAt") or "",
                                          t.get("id", ""))):
        rows.append([t.get("id"), t.get("host"), ",".join(str(p) for p in t.get("ports") or []),
                     t.get("state", ""), task_health(t), t.get("startedAt") or "-"])
    return table(["ID", "HOST", "PORTS", "STATE", "HEALTH", "STARTED"], rows)


def deployments_table(deployments: list[dict[str, Any]]) -> str:
    rows = []
    for d in deployments:
        actions = ", ".join(f"{a.get('action')} {a.get('app')}"
                            for a in d.get("currentActions") or [])
        progress = d.get("progress") or {}
        prog = (f"{progress.get('running', 0)} running, {progress.get('healthy', 0)} healthy"
                if progress else "")
        rows.append([d.get("id"), ",".join(d.get("affectedApps") or []),
                     f"{d.get('currentStep', '?')}/{d.get('totalSteps', '?')}", actions,
                     d.get("status", "running"), prog])
    return table(["ID", "APPS", "STEP", "ACTIONS", "STATUS", "PROGRESS"], rows)


def print_json(doc: Any) -> None:
    print(json.dumps(doc, indent=2, sort_keys=True))


