"""A change of several apps as one deployment plan, as Marathon shows it (pure, no I/O).

Marathon makes one deployment of a group change (`PUT /v2/groups`, a batch `PUT /v2/apps`):
one id in the answer, listed by `GET /v2/deployments` until every app of it is deployed. In
accessd each app's change is a deployment document of its own (`scheduler.deployments`: the
scheduler drives and observes one app per document). The documents of one change share a
`planId`: the id of the first of them, which also lists them all (`planParts`), so a plan is
found by its id and its parts by theirs. This module makes the plan clients see from them:

- its `id` is the `planId`; `affectedApps` are the parts' apps, in the change's order;
- step n holds the actions of every part's step n (`totalSteps` is the longest part's);
- while a part runs, the plan runs: `currentStep` is the lowest step a running part is at,
  `currentActions` the actions of the running parts at that step;
- once no part runs, the plan is `succeeded` if every part is, else `failed`, `cancelled` or
  `superseded` (the first of these any part has), and finished when its last part finished;
- the plan's end is one event, `deployment_success` or else `deployment_failed` with the plan's
  id (`final_event`), sent as its last part ends, instead of each part's own; the parts' step
  events stay theirs.

A document without a `planId` (the change of one app) is its own plan.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = ["FINAL_EVENTS", "PARTS_KEY", "PLAN_KEY", "final_event", "mark_part", "part_ids",
           "parts_of", "plan_id", "plan_of", "plans"]

Doc = dict[str, Any]

PLAN_KEY = "planId"
PARTS_KEY = "planParts"
_RUNNING = "running"
_ENDINGS = ("failed", "cancelled", "superseded")
FINAL_EVENTS = frozenset({"deployment_success", "deployment_failed"})


def plan_id(deployment: Doc) -> str:
    """The id clients know `deployment` by: its plan's, or its own."""
    return deployment.get(PLAN_KEY) or deployment["id"]


def mark_part(deployment: Doc, parts: Sequence[str]) -> None:
    """Make `deployment` a part of the plan of the deployments `parts` (ids, in the change's
    order; its own among them): the plan's id is the first's, and the first lists them all."""
    deployment[PLAN_KEY] = parts[0]
    if deployment["id"] == parts[0]:
        deployment[PARTS_KEY] = list(parts)


def part_ids(deployment: Doc) -> list[str]:
    """The ids of the parts of the plan `deployment` is the first of (itself alone if none)."""
    return list(deployment.get(PARTS_KEY) or [deployment["id"]])


def parts_of(deployment: Doc, lookup: Callable[[str], Doc | None]) -> list[Doc]:
    """All the parts of `deployment`'s plan in the plan's order, the others read by id with
    `lookup` (those gone, pruned, left out); `deployment` alone if it is no part of a plan or
    its plan's first part is gone."""
    if PLAN_KEY not in deployment:
        return [deployment]
    head = (deployment if deployment["id"] == deployment[PLAN_KEY]
            else lookup(deployment[PLAN_KEY]))
    if head is None:
        return [deployment]
    found = [deployment if part == deployment["id"] else lookup(part)
             for part in part_ids(head)]
    return [part for part in found if part is not None]


def final_event(parts: Sequence[Doc]) -> tuple[str, Doc] | None:
    """The plan's final event once none of its `parts` runs (Marathon's payload, `id` and
    `plan`); None while one does."""
    if any(_running(part) for part in parts):
        return None
    plan = plan_of(parts)
    kind = "deployment_success" if plan["status"] == "succeeded" else "deployment_failed"
    return kind, {"id": plan["id"], "plan": plan}


def _running(part: Doc) -> bool:
    return part.get("status", _RUNNING) == _RUNNING


def _status(parts: Sequence[Doc]) -> str:
    statuses = {part.get("status", _RUNNING) for part in parts}
    if _RUNNING in statuses:
        return _RUNNING
    return next((s for s in _ENDINGS if s in statuses), "succeeded")


def plan_of(parts: Sequence[Doc]) -> Doc:
    """The plan made of `parts` (the deployment documents of one change, in its order; one
    document without a `planId` is returned as it is)."""
    if len(parts) == 1 and PLAN_KEY not in parts[0]:
        return parts[0]
    apps = list(dict.fromkeys(app for part in parts for app in part.get("affectedApps") or ()))
    total = max(len(part.get("steps") or ()) for part in parts)
    steps = [{"actions": [action for part in parts
                          for action in (_step(part, n).get("actions") or ())]}
             for n in range(1, total + 1)]
    running = [part for part in parts if _running(part)]
    current = min((int(part.get("currentStep") or 1) for part in running), default=total)
    finished = [part.get("finishedAt") for part in parts]
    kinds = {part.get("kind") for part in parts}
    return {
        "id": plan_id(parts[0]),
        "version": parts[0].get("version"),
        "affectedApps": apps,
        "affectedPods": [],
        "steps": steps,
        "currentStep": current,
        "totalSteps": total,
        "currentActions": [action for part in running
                           if int(part.get("currentStep") or 1) == current
                           for action in part.get("currentActions") or ()],
        "status": _status(parts),
        "createdAt": min((part.get("createdAt") or "" for part in parts), default=None),
        "finishedAt": None if running or None in finished else max(finished),
        "message": "; ".join(part["message"] for part in parts if part.get("message")) or None,
        "kind": kinds.pop() if len(kinds) == 1 else "update",
        "parts": [part["id"] for part in parts],
    }


def _step(part: Doc, n: int) -> Doc:
    steps = part.get("steps") or ()
    return steps[n - 1] if n <= len(steps) else {}


def plans(deployments: Iterable[Doc], lookup: Callable[[str], Doc | None]) -> list[Doc]:
    """`deployments` as the plans clients see, each where its first document stands: a
    document of a plan stands for all of its plan's parts (`parts_of`: those not among
    `deployments` read by id with `lookup`)."""
    listed = {doc["id"]: doc for doc in deployments}
    out: list[Doc] = []
    seen: set[str] = set()
    for deployment in listed.values():
        key = plan_id(deployment)
        if key not in seen:
            seen.add(key)
            out.append(plan_of(parts_of(deployment, lambda i: listed.get(i) or lookup(i))))
    return out
