"""`/v2/groups`: Marathon's groups over accessd's apps.

A group here is the set of apps under an id prefix (`/jpm` holds `/jpm/timeseries` and the group
`/jpm/models` with its apps); groups are not stored on their own, so an empty group does not
exist. Answers are Marathon's `GroupInfo` (`id`, `apps`, `groups`, `pods: []`, `dependencies`,
`version`); the default embeds are `group.groups` and `group.apps`, and `group.apps.*` embeds
work as on `/v2/apps`.

Changes (`POST /v2/groups`, `PUT /v2/groups/{id}`, `DELETE /v2/groups/{id}`) change the
group's apps through `api.changes.apply_all`: every app is validated before any is stored, and
all of them are stored in one transaction (a refused group, 422 or 409 for any of its apps,
changes nothing), as one deployment plan (`scheduler.deployment_plans`), which the answer and
`Marathon-Deployment-Id` name. The order between the group's
apps is kept by their `dependencies` (a group's `dependencies` go to each of its apps), which
the scheduler honours when it starts them (`scheduler.reconcile`).
"""

from __future__ import annotations

import functools
from typing import Any

import falcon

from api import changes
from api.apps import Ctx, embeds, extras, force_param, render_apps
from api.body import read_object
from api.errors import ApiError, not_found
from api.pathcheck import check_url_id
from scheduler.spec import SpecError, normalize_app_id

Doc = dict[str, Any]
GROUP_FIELDS = frozenset({"id", "apps", "groups", "dependencies", "pods", "version",
                          "enforceRole", "scaleBy"})


def group_id(raw: str | None, where: str = "the URL") -> str:
    check_url_id(raw or "", "group id", where)
    text = "/" + (raw or "").strip("/")
    if text == "/":
        return "/"
    try:
        return normalize_app_id(text)
    except SpecError:
        raise not_found(f"Group '{text}' does not exist") from None


def _under(app_id: str, gid: str) -> bool:
    return gid == "/" or app_id.startswith(gid + "/")


def build_tree(gid: str, apps: list[Doc], with_apps: bool, with_groups: bool) -> Doc:
    """GroupInfo of `gid` from the (already rendered) apps under it."""
    prefix = "" if gid == "/" else gid
    direct = [a for a in apps if a["id"].rsplit("/", 1)[0] == prefix]
    children = sorted({prefix + "/" + a["id"][len(prefix) + 1:].split("/", 1)[0]
                       for a in apps if a not in direct})
    out: Doc = {"id": gid}
    out["apps"] = direct if with_apps else []
    out["groups"] = ([build_tree(c, [a for a in apps if _under(a["id"], c)], with_apps,
                                 with_groups) for c in children] if with_groups else [])
    out["pods"] = []
    out["dependencies"] = []
    versions = [a.get("version") for a in apps if a.get("version")]
    if versions:
        out["version"] = max(versions)
    return out


def _flatten(group: Any, gid: str, inherited: list[str], errs: list[Doc],
             out: list[Doc], path: str) -> None:
    """The apps of a `GroupUpdate` body with absolute ids and the group's dependencies."""
    if not isinstance(group, dict):
        errs.append({"path": path or "/", "errors": ["must be an object"]})
        return
    unknown = set(group) - GROUP_FIELDS
    for key in sorted(unknown):
        errs.append({"path": f"{path}/{key}", "errors": [f"unknown field '{key}'"]})
    for key in ("pods",):
        if group.get(key):
            errs.append({"path": f"{path}/{key}",
                         "errors": ["pods are not supported here: they need a container "
                                    "runtime (nested containers)"]})
    deps = group.get("dependencies") or []
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        errs.append({"path": f"{path}/dependencies", "errors": ["must be an array of ids"]})
        deps = []
    deps = [d if d.startswith("/") else f"{gid.rstrip('/')}/{d}" for d in deps]
    for i, app in enumerate(group.get("apps") or []):
        if not isinstance(app, dict) or not isinstance(app.get("id"), str):
            errs.append({"path": f"{path}/apps/{i}/id", "errors": ["is required"]})
            continue
        raw = app["id"]
        doc = dict(app, id=raw if raw.startswith("/") else f"{gid.rstrip('/')}/{raw}")
        if deps:
            doc["dependencies"] = list(dict.fromkeys([*(app.get("dependencies") or []),
                                                      *deps]))
        out.append(doc)
    for i, sub in enumerate(group.get("groups") or []):
        raw = sub.get("id") if isinstance(sub, dict) else None
        if not isinstance(raw, str):
            errs.append({"path": f"{path}/groups/{i}/id", "errors": ["is required"]})
            continue
        sub_id = raw if raw.startswith("/") else f"{gid.rstrip('/')}/{raw}"
        _flatten(sub, sub_id, deps, errs, out, f"{path}/groups/{i}")


def _validated_apps(body: Doc, gid: str) -> list[Doc]:
    errs: list[Doc] = []
    docs: list[Doc] = []
    _flatten(body, gid, [], errs, docs, "")
    out: list[Doc] = []
    for doc in docs:
        try:
            out.append(changes.validated(doc))
        except SpecError as exc:
            errs.extend({"path": f"/apps[{doc['id']}]{d['path']}", "errors": d["errors"]}
                        for d in exc.details)
    if errs:
        raise ApiError(422, "Object is not valid", errs)
    ids = [d["id"] for d in out]
    if len(set(ids)) != len(ids):
        raise ApiError(422, "Object is not valid", [{"path": "/apps", "errors": [
            "an app id is given more than once"]}])
    return out


def _scaled(app: Doc, *, factor: float) -> Doc:
    return changes.patched(app, {"instances": int(round(app.get("instances", 0) * factor))})


def _apply_all(ctx: Ctx, req: falcon.Request, resp: falcon.Response,
               changes_to_make: list[tuple[str, Doc | None, changes.NewDefinition]],
               status: str) -> None:
    results = changes.apply_all(ctx.store, req, changes_to_make, force=force_param(req),
                                port_range=ctx.port_range)
    if not results:
        resp.media = {"deploymentId": None, "version": None}
        return
    resp.status = status
    resp.set_header("Marathon-Deployment-Id", changes.deployment_id(results[0]))
    resp.media = changes.deployment_result(results[0])


class Groups:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, group: str | None = None
               ) -> None:
        """A group with its apps and subgroups (Marathon's GroupInfo; `?embed=group.groups`,
        `group.apps`, `group.apps.tasks`, ... as on /v2/apps)."""
        gid = group_id(group)
        apps = [a for a in self.ctx.store.list_apps() if _under(a["id"], gid)]
        if gid != "/" and not apps:
            raise not_found(f"Group '{gid}' does not exist")
        raw = req.get_param_as_list("embed") or []
        group_embeds = {v.strip() for r in raw for v in r.split(",")}
        with_apps = not group_embeds or "group.apps" in group_embeds or any(
            e.startswith("group.apps.") for e in group_embeds)
        with_groups = not group_embeds or "group.groups" in group_embeds
        app_embeds = embeds(req) if any(e.startswith("group.apps.") for e in group_embeds) \
            else set()
        rendered = (render_apps(self.ctx.store, apps, app_embeds, extras(req),
                                self.ctx.task_views, encoded_tasks=True) if apps else [])
        resp.media = build_tree(gid, rendered, with_apps, with_groups)

    def on_post(self, req: falcon.Request, resp: falcon.Response, group: str | None = None
                ) -> None:
        """Create a group: all its apps (409 if any exists already), each its own
        deployment; 201 with the first deployment's `{"deploymentId", "version"}`."""
        body = read_object(req, self.ctx.max_body)
        parent = group_id(group)
        raw = body.get("id")
        gid = parent if raw in (None, "") else group_id(
            raw if str(raw).startswith("/") else f"{parent.rstrip('/')}/{raw}", "the body")
        new_apps = _validated_apps(body, gid)
        if not new_apps:
            raise ApiError(422, "Object is not valid", [{"path": "/apps", "errors": [
                "a group needs at least one app here: groups are the apps under an id, not "
                "stored on their own"]}])
        store = self.ctx.store
        existing = [a["id"] for a in new_apps if store.get_app(a["id"]) is not None]
        if existing:
            raise ApiError(409, f"An app with id [{existing[0]}] already exists.")
        _apply_all(self.ctx, req, resp, [(a["id"], None, a) for a in new_apps], falcon.HTTP_201)
        resp.location = "/v2/groups" + gid

    def on_put(self, req: falcon.Request, resp: falcon.Response, group: str | None = None
               ) -> None:
        """Update a group as Marathon does: the apps given are created or changed, the group's
        apps left out are removed (when `apps` or `groups` is given); `{"scaleBy": f}` scales
        every app by f."""
        gid = group_id(group)
        body = read_object(req, self.ctx.max_body)
        store = self.ctx.store
        current = {a["id"]: a for a in store.list_apps() if _under(a["id"], gid)}
        if "scaleBy" in body:
            factor = body["scaleBy"]
            if isinstance(factor, bool) or not isinstance(factor, int | float) or factor < 0:
                raise ApiError(422, "Object is not valid", [{"path": "/scaleBy", "errors": [
                    "must be a number >= 0"]}])
            if not current:
                raise not_found(f"Group '{gid}' does not exist")
            # Each count from the app as the transaction reads it (`changes.apply_all`): a
            # scale committed meanwhile is scaled, not overwritten.
            todo = [(app_id, old, functools.partial(_scaled, factor=factor))
                    for app_id, old in sorted(current.items())]
            _apply_all(self.ctx, req, resp, todo, falcon.HTTP_200)
            return
        wanted = _validated_apps(body, gid)
        todo: list[tuple[str, Doc | None, changes.NewDefinition]] = []
        for new in wanted:
            old = current.get(new["id"])
            if old is None or changes.definition(old) != new:  # unchanged apps stay as they are
                todo.append((new["id"], old, new))
        if "apps" in body or "groups" in body:
            keep = {a["id"] for a in wanted}
            todo += [(app_id, old, None) for app_id, old in sorted(current.items())
                     if app_id not in keep]
        _apply_all(self.ctx, req, resp, todo, falcon.HTTP_200 if current else falcon.HTTP_201)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, group: str | None = None
                  ) -> None:
        """Delete a group: every app under it (one plan of StopApplication actions)."""
        gid = group_id(group)
        current = [a for a in self.ctx.store.list_apps() if _under(a["id"], gid)]
        if not current and gid != "/":
            raise not_found(f"Group '{gid}' does not exist")
        _apply_all(self.ctx, req, resp, [(a["id"], a, None) for a in current],
                   falcon.HTTP_200)

