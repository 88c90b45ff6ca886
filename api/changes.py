"""Desired-state changes, the one path every mutating endpoint takes.

A change is: validate (the schema), stamp the versions, plan the deployment
(`scheduler.deployments.plan_deployment`), store app and deployment, its events
(`api_post_event`, `deployment_info`) and the app's version history (a deleted app's history
removed) in one transaction (`StateStore.apply_app_change`, `request_kills` for a scale by
killing tasks: a rejected change leaves nothing behind, and a change is never announced before
it is real nor real without its events or its history).

A scale (`PUT /v2/apps/{id}` with only `instances`, the commonest write) is computed inside that
transaction from the app as it reads it (`scale`, `StateStore.apply_app_update`): one read of
the app per PUT, and no change committed meanwhile is overwritten by one based on an older read.

Each deployment we create also carries `original`: the app document it replaces (null for a
create). That is what `DELETE /v2/deployments/{id}` (without force) restores to roll back, as
Marathon's plans carry their original state.

A change of several apps (`apply_all`: a group, a batch of apps) is one deployment plan, as
Marathon makes it: each app's deployment document carries the plan's id (`planId`, see
`scheduler.deployment_plans`), and the answer names the plan.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import falcon

from scheduler import service_ports
from scheduler.deployment_plans import mark_part, plan_id
from scheduler.deployments import new_deployment_id, plan_deployment
from scheduler.service_ports import DEFAULT_RANGE, PortRange
from scheduler.spec import (
    READ_ONLY_FIELDS,
    is_scale_only,
    iso_now,
    merge_patch,
    parse_app,
    stamp_app,
)
from scheduler.state import AppExists, AppNotFound, StateStore, Update

Doc = dict[str, Any]
# What `apply` stores: a definition, None (delete), or a function making it from the app.
NewDefinition = Doc | None | Callable[[Doc], Doc]
MAX_APP_VERSIONS = 50  # Marathon's --zk_max_versions default


@dataclass(frozen=True)
class Change:
    deployment: Doc
    app: Doc | None      # the stored document after the change (None: deleted)
    version: str


def definition(app_doc: Doc) -> Doc:
    """The definition part of a stored app (what a client may send back): a new dict whose
    values are `app_doc`'s own, not copies. Set its fields freely; copy a nested value before
    changing it in place. (Every caller sets top-level fields, or hands it to `merge_patch`,
    `parse_app` or `apply`, which copy; copying each value here was a third of a scale PUT's
    document copies.)"""
    return {k: v for k, v in app_doc.items() if k not in READ_ONLY_FIELDS}


def validated(doc: Doc) -> Doc:
    """The normalised Marathon JSON of a definition (raises SpecError → 422)."""
    return parse_app(doc).to_json()


def patched(old: Doc, patch: Doc) -> Doc:
    """The validated definition of `old` (a stored app) with `patch` merged onto it (Marathon's
    PATCH and partial PUT; raises SpecError → 422).

    A patch that only sets `instances` to a valid count (a scale, `{"instances": n}`, the
    commonest write) changes that one field of a definition validated when it was stored: it
    is not parsed again (parsing and normalising the whole app was ~40% of a scale PUT's CPU);
    like `definition`, that result shares `old`'s nested values. Any other patch, or an
    instance count that is not a plain non-negative integer, is merged and validated whole,
    errors and all."""
    count = scale_count(patch)
    if count is not None and patch.get("id", old["id"]) == old["id"]:
        new = definition(old)
        new["instances"] = count
        return new
    return validated(merge_patch(definition(old), patch))


def kind_of(old: Doc | None, new: Doc | None, *, restart: bool = False) -> str:
    if new is None:
        return "delete"
    if old is None:
        return "create"
    if restart:
        return "restart"
    return "scale" if is_scale_only(old, new) else "update"


def _event_docs(req: falcon.Request, app_doc: Doc | None, deployment: Doc,
                now: str) -> tuple[Doc, Doc]:
    """The change's two events, as stored (`eventType`, `timestamp`)."""
    steps = deployment.get("steps") or []
    current = int(deployment.get("currentStep") or 1)
    return ({"clientIp": req.remote_addr, "uri": req.path, "appDefinition": app_doc,
             "eventType": "api_post_event", "timestamp": now},
            {"plan": deployment,
             "currentStep": steps[current - 1] if 0 < current <= len(steps) else None,
             "eventType": "deployment_info", "timestamp": now})


def apply(store: StateStore, req: falcon.Request, app_id: str, old: Doc | None,
          new_json: NewDefinition, *, force: bool, restart: bool = False,
          keep_versions: bool = False, port_range: PortRange = DEFAULT_RANGE) -> Change:
    """Store `new_json` (validated Marathon JSON, or None to delete) in place of the app, as
    the store's transaction reads it (`StateStore.apply_app_update`).

    `old` is what the caller read, and says only whether the app must exist: a concurrent
    create or delete between read and write is a 409/404, not a silent overwrite. A
    definition made from the app (a merged patch, a restart, a scale by a factor) is given as
    a function of it, `new_json(app)`, run on the transaction's read (it may raise SpecError,
    422): a change committed meanwhile is not overwritten by one based on an older read. The
    deployment's kind, its `original` and the service ports kept come from that read too.
    `keep_versions` stores `new_json`'s own versionInfo (a rollback restoring an old version).
    Service ports sent as 0 get back the ones the app had before the change is classified (a
    PUT of the same definition with port 0 is no update); new ones are assigned from
    `port_range` in the store's transaction (`scheduler.service_ports`).

    The stored app is a copy (`stamp_app`): it shares nothing with `new_json` or the app read.
    The deployment's `original` is the app read (stored as JSON in the transaction).
    """
    return _change(store, req, app_id, old is not None, new_json, force=force, restart=restart,
                   keep_versions=keep_versions, port_range=port_range)


def _change(store: StateStore, req: falcon.Request, app_id: str, must_exist: bool,
            new_json: NewDefinition, *, force: bool, restart: bool = False,
            keep_versions: bool = False, port_range: PortRange = DEFAULT_RANGE,
            owned: bool = False) -> Change:
    """`apply` and `scale`: the change planned from the app as the transaction reads it.
    `owned`: what `new_json(app)` makes is this change's own (see `_planned`)."""
    now = iso_now()
    update = _update(app_id, must_exist, new_json, now=now, restart=restart,
                     keep_versions=keep_versions, port_range=port_range, owned=owned)
    stored, deployment = store.apply_app_update(
        app_id, update, force=force, port_range=port_range, history_keep=MAX_APP_VERSIONS,
        events=_events_of(req, now), now=now)
    return _change_of(stored, deployment, now)


def apply_all(store: StateStore, req: falcon.Request,
              todo: list[tuple[str, Doc | None, NewDefinition]], *, force: bool,
              keep_versions: bool = False,
              port_range: PortRange = DEFAULT_RANGE) -> list[Change]:
    """`apply` of several apps (distinct ids), all in one transaction of the store
    (`StateStore.apply_app_updates`): every change, or, if one is refused (a 409 for a locked
    or existing app, a 404, a 422), none. The apps share the change's time (their version);
    each app's deployment is a part of one plan (`planId`) when there are several.
    Returns the changes in `todo`'s order."""
    now = iso_now()
    ids = [new_deployment_id() for _ in todo]
    updates = [(app_id, _update(app_id, old is not None, new_json, now=now,
                                keep_versions=keep_versions, port_range=port_range,
                                deployment_id=own, plan=ids if len(ids) > 1 else None))
               for (app_id, old, new_json), own in zip(todo, ids, strict=True)]
    results = store.apply_app_updates(updates, force=force, port_range=port_range,
                                      history_keep=MAX_APP_VERSIONS,
                                      events=_events_of(req, now), now=now)
    return [_change_of(stored, deployment, now) for stored, deployment in results]


def _change_of(stored: Doc | None, deployment: Doc | None, now: str) -> Change:
    """The `Change` of a stored app change (every app change has its deployment)."""
    assert deployment is not None
    return Change(deployment, stored, deployment.get("version") or now)


def _update(app_id: str, must_exist: bool, new_json: NewDefinition, *, now: str,
            restart: bool = False, keep_versions: bool = False,
            port_range: PortRange = DEFAULT_RANGE, owned: bool = False,
            deployment_id: str | None = None, plan: list[str] | None = None) -> Update:
    """What the change makes of the app as the transaction reads it (`_planned`), with a
    deployment id of its own (`deployment_id`, or a new one), a part of the deployment plan
    of the deployments `plan` if given (`scheduler.deployment_plans`); AppNotFound or
    AppExists when `must_exist` is not so."""
    deployment_id = deployment_id or new_deployment_id()

    def update(previous: Doc | None) -> tuple[Doc | None, Doc]:
        if previous is None and must_exist:
            raise AppNotFound(app_id)
        if previous is not None and not must_exist:
            raise AppExists(app_id)
        wanted = new_json(previous) if callable(new_json) and previous is not None else new_json
        assert not callable(wanted), "a definition made from the app needs an existing app"
        new_doc, deployment = _planned(previous, wanted, now=now, deployment_id=deployment_id,
                                       restart=restart, keep_versions=keep_versions,
                                       port_range=port_range, owned=owned)
        if plan is not None:
            mark_part(deployment, plan)
        return new_doc, deployment
    return update


def _events_of(req: falcon.Request, now: str) -> Callable[[Doc | None, Doc], tuple[Doc, Doc]]:
    """The events of a change made by `req`, from its stored app and deployment."""
    return lambda stored, deployment: _event_docs(
        req, stored if stored is not None else deployment["original"], deployment, now)


def _planned(old: Doc | None, new_json: Doc | None, *, now: str, deployment_id: str,
             restart: bool = False, keep_versions: bool = False,
             port_range: PortRange = DEFAULT_RANGE, owned: bool = False
             ) -> tuple[Doc | None, Doc]:
    """The stored document `new_json` becomes in place of `old`, and its deployment (pure).
    `owned`: `old` and `new_json` are this change's own (nobody else holds them), so the
    stored document may share their nested values instead of copying them."""
    if new_json is not None and old is not None:
        new_json = service_ports.keep_previous(new_json, old, port_range)
    kind = kind_of(old, new_json, restart=restart)
    if new_json is None:
        new_doc = None
    elif keep_versions:
        new_doc = copy.deepcopy(new_json)
        new_doc["version"] = now
    else:
        new_doc = stamp_app(new_json, old, now, scale_only=(kind == "scale"), copy=not owned)
    deployment = plan_deployment(old, new_doc, now=now, deployment_id=deployment_id, kind=kind)
    deployment["original"] = old
    return new_doc, deployment


def scale_count(patch: Doc) -> int | None:
    """The instance count of a patch that only sets `instances` (besides, perhaps, the `id`) to
    a plain non-negative integer: a scale, `{"instances": n}`, the commonest write. None for
    any other patch."""
    count = patch.get("instances")
    if set(patch) - {"id"} == {"instances"} and type(count) is int and count >= 0:
        return count
    return None


def scale(store: StateStore, req: falcon.Request, app_id: str, patch: Doc, *, force: bool,
          port_range: PortRange = DEFAULT_RANGE) -> Change:
    """A partial update of an existing app (`patched`), computed from the app as the store's
    transaction reads it: the app is read once, and a change committed meanwhile is not
    overwritten by one based on an older read. For a scale (`scale_count`), whose update is
    cheap; the answers, documents and events are `apply`'s. AppNotFound (404) if there is no
    such app. The returned app shares nested values with the returned deployment's
    `original` (both stored as JSON already): copy before changing either in place."""
    # The app the transaction reads and the definition patched from it are this change's own:
    # nothing else holds either, and everything after only reads them until the transaction
    # writes them out as JSON, so the stored app is not copied.
    return _change(store, req, app_id, True, lambda previous: patched(previous, patch),
                   force=force, port_range=port_range, owned=True)


def scale_by_kills(store: StateStore, req: falcon.Request,
                   kills: list[tuple[Doc, list[str]]], *, force: bool) -> list[Change]:
    """Kill the tasks of each `(app, task_ids)` and lower each app's instances by as many,
    all in one transaction (`StateStore.request_scaling_kills` updates the apps and stores
    their deployments, events and version history entries): every app's scale or, if one is
    refused (a 409 for a locked app), none. The apps' deployments are one plan when there are
    several, as `apply_all`'s. Returns the changes in `kills`' order."""
    now = iso_now()
    ids = [new_deployment_id() for _ in kills]
    deployments, planned = [], {}
    for (app, task_ids), own in zip(kills, ids, strict=True):
        new_json = definition(app)
        new_json["instances"] = max(0, int(app.get("instances", 0)) - len(task_ids))
        planned[app["id"]] = stamp_app(new_json, app, now, scale_only=True)
        deployment = plan_deployment(app, planned[app["id"]], now=now, deployment_id=own,
                                     kind="scale")
        deployment["original"] = copy.deepcopy(app)
        if len(ids) > 1:
            mark_part(deployment, ids)
        deployments.append(deployment)
    stored = store.request_scaling_kills(
        [task for _, task_ids in kills for task in task_ids], deployments, force=force,
        history_keep=MAX_APP_VERSIONS,
        events=lambda app, deployment: _event_docs(
            req, app if app is not None else planned[deployment["target"]["app"]],
            deployment, now))
    return [Change(d, stored.get(d["target"]["app"]), d.get("version") or now)
            for d in deployments]


def deployment_id(change: Change) -> str:
    """The id of the deployment plan `change` is (a part of)."""
    return plan_id(change.deployment)


def deployment_result(change: Change) -> Doc:
    """Marathon's answer to an accepted change (naming its plan)."""
    return {"deploymentId": deployment_id(change), "version": change.version}
