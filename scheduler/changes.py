"""Changes of stored state, computed purely from a snapshot: the domain rules of the store.

Every function takes a `Reader` (the snapshot `StateStore.transact` hands it) and plain data,
and returns `(Transaction, result)`; it never writes. A backend only applies the transaction, so
the rules below exist once, whatever the backend (SQLite, ZooKeeper):

- a change to an app locked by a running deployment is a `DeploymentConflict` naming its plan
  (`scheduler.deployment_plans`), unless forced: then the locking deployments become
  `superseded` (with `finishedAt` and who superseded them), with the running parts of their
  plans: a plan is superseded whole, as Marathon cancels a conflicting plan;
- a deployment in a final status stays final: a progress update from a scheduler that has not
  seen the cancel yet is dropped (`False`);
- a scale by kills lowers `instances` by the app's live tasks among the killed ones (never below
  0), stamps `version` / `versionInfo.lastScalingAt`, and its deployment targets the new count;
- a kill request keeps its first request's time and place; a later scale request marks it `scale`;
- one pending delay reset per app, with a `seq` that grows with every request; a status write
  consumes only the very request it includes;
- a stored app's port-0 service ports are assigned in the transaction that stores it, unique
  across apps (`scheduler.service_ports`);
- every change of desired state (apps, deployments created, superseded or cancelled, kill
  requests, delay resets) bumps the desired generation.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from scheduler import service_ports
from scheduler.deployment_plans import PLAN_KEY, parts_of, plan_id
from scheduler.pending_reader import PendingReader, merged
from scheduler.service_ports import DEFAULT_RANGE, PortRange
from scheduler.spec import task_id_to_app_id
from scheduler.state import (
    FINAL_DEPLOYMENT_STATUSES,
    AppExists,
    AppNotFound,
    Delete,
    DeploymentConflict,
    Doc,
    Op,
    Put,
    Reader,
    StateError,
    Transaction,
    Update,
)


def superseded(reader: Reader, app_ids: set[str], *, force: bool, by: Doc | None,
               now: str) -> list[Op]:
    """The puts that mark the running deployments locking `app_ids` superseded by `by`, or
    DeploymentConflict naming them when not `force`."""
    blocking = reader.running_deployments(app_ids) if app_ids else []
    if not blocking:
        return []
    if not force:
        raise DeploymentConflict(list(dict.fromkeys(plan_id(d) for d in blocking)))
    ops: list[Op] = []
    for dep in _with_plan_parts(reader, blocking):
        dep = dict(dep, status="superseded", finishedAt=now)
        if by is not None and by.get("id"):
            dep["message"] = f"superseded by deployment {plan_id(by)}"
        ops.append(Put("deployments", dep["id"], dep))
    return ops


def _with_plan_parts(reader: Reader, deployments: list[Doc]) -> list[Doc]:
    """`deployments` and the other running parts of their plans, each once, in order."""
    out = {d["id"]: d for d in deployments}
    firsts: dict[str, Doc] = {}   # one deployment of each plan
    for d in deployments:
        if PLAN_KEY in d:
            firsts.setdefault(plan_id(d), d)
    for first in firsts.values():
        for part in parts_of(first, lambda i: out.get(i) or reader.deployment(i)):
            if part.get("status", "running") == "running":
                out.setdefault(part["id"], part)
    return list(out.values())


def _new_deployment(reader: Reader, deployment: Doc) -> Put:
    if not deployment.get("id"):
        raise StateError("a deployment needs an 'id'")
    if reader.deployment(deployment["id"]) is not None:
        raise StateError(f"deployment {deployment['id']} already exists")
    return Put("deployments", deployment["id"], deployment)


_UNREAD: Any = object()


def app_change(reader: Reader, app_id: str, app: Doc | None, deployment: Doc | None, *,
               force: bool, must_exist: bool | None, now: str,
               port_range: PortRange = DEFAULT_RANGE,
               previous: Doc | None = _UNREAD) -> tuple[Transaction, Doc | None]:
    """Store `app` (None: delete it, with its pending delay reset) and its `deployment`;
    returns the stored app, its port-0 service ports assigned (`scheduler.service_ports`).
    `previous`: the app as `reader` holds it, when the caller has read it already."""
    if previous is _UNREAD:
        previous = reader.app(app_id)
    exists = previous is not None
    if must_exist is True and not exists:
        raise AppNotFound(app_id)
    if must_exist is False and exists:
        raise AppExists(app_id)
    ops = superseded(reader, {app_id}, force=force, by=deployment, now=now)
    if app is None:
        ops += [Delete("apps", app_id), Delete("delay_resets", app_id)]
    else:
        if not service_ports.unchanged(app, previous):  # a scale keeps them: read no app
            app = service_ports.assign(app, previous,
                                       service_ports.ports_in_use(reader.apps(), app_id),
                                       port_range)
        ops.append(Put("apps", app_id, app))
    if deployment is not None:
        ops.append(_new_deployment(reader, deployment))
    return Transaction(tuple(ops), bump_generation=True), app


def app_update(reader: Reader, app_id: str, update: Update, *,
               force: bool, now: str, port_range: PortRange = DEFAULT_RANGE
               ) -> tuple[Transaction, tuple[Doc | None, Doc | None]]:
    """`app_change` of what `update` (pure) makes of the app as this snapshot holds it:
    `update(previous)` gives `(app, deployment)` (it may raise to refuse the change). The app
    is read once, here, and the change cannot be based on a stale read. Returns the stored
    app and the deployment."""
    previous = reader.app(app_id)
    app, deployment = update(previous)
    txn, stored = app_change(reader, app_id, app, deployment, force=force,
                             must_exist=previous is not None, now=now, port_range=port_range,
                             previous=previous)
    return txn, (stored, deployment)


def apps_update(reader: Reader, updates: Sequence[tuple[str, Update]], *, force: bool,
                now: str, port_range: PortRange = DEFAULT_RANGE
                ) -> tuple[Transaction, list[tuple[Doc | None, Doc | None]]]:
    """`app_update` of several apps (distinct ids), in order, as one transaction: all of them
    or, if one is refused, none. Each app's change is planned on the snapshot as the changes
    before it leave it (`PendingReader`): a service port given to one app is not given to the
    next, a deployment superseded once is not superseded again. Returns each app's stored
    document and deployment, in order."""
    pending = PendingReader(reader)
    ops: list[Op] = []
    results: list[tuple[Doc | None, Doc | None]] = []
    for app_id, update in updates:
        txn, result = app_update(pending, app_id, update, force=force, now=now,
                                 port_range=port_range)
        pending.add(txn.ops)
        ops += txn.ops
        results.append(result)
    return Transaction(merged(ops), bump_generation=bool(ops)), results


def deployment_update(reader: Reader, deployment: Doc) -> tuple[Transaction, bool]:
    """Replace a deployment's document, unless the stored one is final (then False)."""
    stored = reader.deployment(str(deployment.get("id")))
    if stored is None:
        raise StateError(f"deployment {deployment.get('id')} does not exist")
    if stored.get("status", "running") in FINAL_DEPLOYMENT_STATUSES:
        return Transaction(), False
    return Transaction((Put("deployments", deployment["id"], deployment),)), True


def cancel_deployment(reader: Reader, deployment_id: str, *,
                      now: str) -> tuple[Transaction, Doc]:
    stored = reader.deployment(deployment_id)
    if stored is None:
        raise StateError(f"deployment {deployment_id} does not exist")
    status = stored.get("status", "running")
    if status != "running":
        raise StateError(f"deployment {deployment_id} is not active (status {status})")
    dep = dict(stored, status="cancelled", finishedAt=now)
    return Transaction((Put("deployments", deployment_id, dep),), bump_generation=True), dep


def scaled_app(app: Doc, killed: int, stamp: str) -> Doc:
    """`app` with `killed` fewer instances (not below 0), versioned as a scale at `stamp`."""
    app = copy.deepcopy(app)
    app["instances"] = max(0, int(app.get("instances", 0)) - killed)
    app["version"] = stamp
    info = dict(app.get("versionInfo") or {})
    info["lastScalingAt"] = stamp
    info.setdefault("lastConfigChangeAt", stamp)
    app["versionInfo"] = info
    return app


def kill_requests(reader: Reader, task_ids: list[str], *, scale: bool,
                  deployments: Sequence[Doc], force: bool, now: str
                  ) -> tuple[Transaction, dict[str, Doc | None]]:
    """Record kill requests; with `scale`, lower the owning apps' instances (see the module),
    each app's change recorded by its deployment among `deployments` (one per app, the
    target's). Returns each deployment's target app as stored after the change (None when
    there is no such app; nothing without `scale`)."""
    ops: list[Op] = []
    targets = {_target(d): d for d in deployments if _target(d)} if scale else {}
    stored = {app_id: reader.app(app_id) for app_id in targets}
    per_app: dict[str, int] = {}
    for tid in dict.fromkeys(task_ids):
        task = reader.task(tid)
        if task is not None:  # only live tasks the scheduler knows count for a scale
            app_id = task.get("appId") or task_id_to_app_id(tid)
            per_app[app_id] = per_app.get(app_id, 0) + 1
        old = reader.kill_request(tid)
        if old is None:
            ops.append(Put("kill_requests", tid,
                           {"taskId": tid, "scale": bool(scale), "requestedAt": now}))
        elif scale and not old.get("scale"):
            ops.append(Put("kill_requests", tid, dict(old, scale=True)))
    if scale:
        # the deployments' own apps are locked too, even if none of the tasks is live
        locked = set(per_app) | {a for d in deployments for a in d.get("affectedApps") or ()}
        first = deployments[0] if deployments else None
        ops += superseded(reader, locked, force=force, by=first, now=now)
        stamp = (first or {}).get("version") or now
        new_deployments = {d["id"]: d for d in deployments}
        for app_id, killed in per_app.items():
            app = reader.app(app_id)
            if app is None:
                continue
            app = scaled_app(app, killed, stamp)
            ops.append(Put("apps", app_id, app))
            if app_id in targets:
                stored[app_id] = app
                deployment = copy.deepcopy(targets[app_id])
                deployment["target"]["instances"] = app["instances"]
                new_deployments[deployment["id"]] = deployment
        ops += [_new_deployment(reader, d) for d in new_deployments.values()]
    return Transaction(tuple(ops), bump_generation=True), stored


def _target(deployment: Doc) -> str | None:
    return (deployment.get("target") or {}).get("app")


def delay_reset_request(reader: Reader, app_id: str, *, now: str) -> tuple[Transaction, Doc]:
    """A new pending reset for the app (replacing one still pending); its `seq` is the
    generation this change creates, so it grows with every request."""
    if reader.app(app_id) is None:
        raise AppNotFound(app_id)
    old = reader.delay_reset(app_id)
    seq = max(reader.generation(), int(old["seq"]) if old else 0) + 1
    doc = {"appId": app_id, "requestedAt": now, "seq": seq}
    return Transaction((Put("delay_resets", app_id, doc),), bump_generation=True), doc


def app_status_write(reader: Reader, app_id: str, status: Doc,
                     delay_reset: Doc | None) -> tuple[Transaction, None]:
    """Write the app's status; consume `delay_reset` if it is still the pending request."""
    ops: list[Op] = [Put("app_status", app_id, status)]
    if delay_reset is not None:
        pending = reader.delay_reset(app_id)
        if pending is not None and int(pending["seq"]) == int(delay_reset["seq"]):
            ops.append(Delete("delay_resets", app_id))
    return Transaction(tuple(ops)), None
