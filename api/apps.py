"""`/v2/apps`: list, create, read, replace or scale (PUT), patch, delete and restart apps.

Reads assemble views from four store reads (apps, tasks, statuses, active deployments) whatever
the number of apps; writes go through `api.changes`, one transaction each.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import falcon
import orjson

from api import changes, shapes, views
from api.body import read_json, read_object
from api.cache import ViewCache
from api.errors import ApiError, bad_request, not_found
from api.pathcheck import check_url_id
from api.task_views import TaskViewCache
from scheduler.service_ports import DEFAULT_RANGE, PortRange
from scheduler.spec import SpecError, merge_patch, normalize_app_id
from scheduler.state import StateStore

Doc = dict[str, Any]


@dataclass(frozen=True)
class Ctx:
    """What every resource needs, injected by `create_app`."""

    store: StateStore
    max_body: int
    cache: ViewCache = field(default_factory=lambda: ViewCache(None, 0))
    port_range: PortRange = DEFAULT_RANGE  # service ports (--local-port-min/--local-port-max)
    task_views: TaskViewCache = field(default_factory=TaskViewCache)


@functools.lru_cache(maxsize=1024)
def path_app_id(raw: str) -> str:
    """The normalised app id from a URL, 400 for traversal or control characters, or 404 if
    it cannot name an app. Remembered for the last 1,024 ids that name one (a pure function
    of the URL, run on every request about an app; refusals are not remembered)."""
    check_url_id(raw)
    try:
        return normalize_app_id("/" + raw.strip("/"))
    except SpecError:
        raise not_found(f"App '/{raw.strip('/')}' does not exist") from None


def force_param(req: falcon.Request) -> bool:
    return req.get_param_as_bool("force", default=False) or False


def embeds(req: falcon.Request, always: frozenset[str] = frozenset()) -> set[str]:
    """The request's Marathon embeds plus those Marathon adds anyway (`always`)."""
    return views.parse_embeds(req.get_param_as_list("embed") or []) | always


def extras(req: falcon.Request) -> bool:
    """Whether the request asked for accessd's own fields (`embed=accessd`, see api.shapes)."""
    return shapes.wants_extras(req.get_param_as_list("embed") or [])


def _merged(patch: Doc) -> Callable[[Doc], Doc]:
    """`patch` merged onto an app's definition (validated), for `changes.apply` to run on the
    app as its transaction reads it."""
    return lambda app: changes.patched(app, patch)


def get_app_or_404(store: StateStore, app_id: str) -> Doc:
    app = store.get_app(app_id)
    if app is None:
        raise not_found(f"App '{app_id}' does not exist")
    return app


def render_apps(store: StateStore, apps: list[Doc], embed: set[str],
                with_extras: bool = False, task_views: TaskViewCache | None = None,
                encoded_tasks: bool = False) -> list[Doc]:
    """Views of `apps` (four store reads in all); with `task_views`, tasks are decoded and
    shaped only when their stored revision moved since this worker last did it, and, with
    `encoded_tasks`, embedded as pre-encoded `orjson.Fragment`s (for an answer encoded by
    `orjson.dumps`, as `resp.media` is: nothing may read the tasks of what is returned)."""
    if not apps:
        return []
    one = len(apps) == 1
    shown: dict[str, list[Doc]] = {}
    if task_views is not None and not one:
        tasks, shown = task_views.tasks_by_app(store, shaped="tasks" in embed,
                                               extras=with_extras, encoded=encoded_tasks)
    else:
        tasks = views.group_tasks(store.list_tasks(apps[0]["id"]) if one else store.list_tasks())
    if one:
        status = store.get_app_status(apps[0]["id"])
        statuses = {apps[0]["id"]: status} if status else {}
    else:
        statuses = store.list_app_status()
    deps = views.deployments_by_app(store.list_deployments(active_only=True))
    now = time.time()
    return [views.app_view(a, tasks.get(a["id"], []), statuses.get(a["id"]),
                           deps.get(a["id"], []), embed, now, extras=with_extras,
                           task_views=shown.get(a["id"], []) if shown else None)
            for a in apps]


class AppsCollection:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """List apps (`?id=` substring, `?cmd=` substring, `?label=` selector,
        `?embed=apps.tasks|apps.counts|apps.deployments|apps.readiness|apps.lastTaskFailure|
        apps.failures|apps.taskStats`, and `accessd` for accessd's own fields)."""
        # Token first, then the data (see api.cache): a cached body is never staler than it.
        key = req.query_string
        token = self.ctx.cache.token()
        body = self.ctx.cache.get(key, token)
        if body is not None:
            resp.content_type = falcon.MEDIA_JSON
            resp.data = body
            return
        apps = self.ctx.store.list_apps()
        id_part = req.get_param("id")
        if id_part:
            apps = [a for a in apps if id_part.lower() in a["id"].lower()]
        cmd_part = req.get_param("cmd")
        if cmd_part:
            apps = [a for a in apps if cmd_part.lower() in (a.get("cmd") or "").lower()]
        selector = req.get_param("label")
        if selector:
            try:
                terms = views.parse_label_selector(selector)
            except ValueError as exc:
                raise bad_request(f"Invalid label selector: {exc}", "/label") from None
            apps = [a for a in apps if views.labels_match(a.get("labels") or {}, terms)]
        # orjson: encoding 10,000 embedded tasks is a third of this answer's time with json.
        body = orjson.dumps({"apps": render_apps(self.ctx.store, apps,
                                                 embeds(req, views.LIST_EMBEDS), extras(req),
                                                 self.ctx.task_views, encoded_tasks=True)})
        self.ctx.cache.put(key, token, body)
        resp.content_type = falcon.MEDIA_JSON
        resp.data = body

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Create an app: 201 with the app, `Location` and `Marathon-Deployment-Id`."""
        doc = read_object(req, self.ctx.max_body)
        new_json = changes.validated(doc)
        change = changes.apply(self.ctx.store, req, new_json["id"], None, new_json,
                               force=force_param(req),
                               port_range=self.ctx.port_range)
        assert change.app is not None
        resp.status = falcon.HTTP_201
        resp.location = "/v2/apps" + change.app["id"]
        resp.set_header("Marathon-Deployment-Id", changes.deployment_id(change))
        resp.media = views.app_view(change.app, [], None, [change.deployment],
                                    set(views.LIST_EMBEDS), time.time(), extras=extras(req))


    def on_put(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Create or update several apps (`[{app}, ...]`): each as `PUT /v2/apps/{id}` does
        (merged onto the stored definition, `?partialUpdate=false` replaces; missing apps are
        created). Every definition is validated before any is stored, and all are stored in
        one transaction (a 409 for one app stores none), as one deployment plan, which the
        answer names."""
        self._batch(req, resp, create=True)

    def on_patch(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Change several existing apps (`[{app}, ...]`, each merged as PATCH does)."""
        self._batch(req, resp, create=False)

    def _batch(self, req: falcon.Request, resp: falcon.Response, *, create: bool) -> None:
        docs = read_json(req, self.ctx.max_body)
        if not isinstance(docs, list) or not all(isinstance(d, dict) for d in docs):
            raise bad_request("Expected a JSON array of app definitions")
        store = self.ctx.store
        partial = req.get_param_as_bool("partialUpdate", default=True) or not create
        todo: list[tuple[str, Doc | None, changes.NewDefinition]] = []
        details: list[Doc] = []
        for i, doc in enumerate(docs):
            try:
                app_id = normalize_app_id(doc.get("id"))
                old = store.get_app(app_id)
                if old is None and not create:
                    raise not_found(f"App '{app_id}' does not exist")
                base = changes.definition(old) if old is not None and partial else None
                new = changes.validated(merge_patch(base, doc) if base is not None
                                        else {**doc, "id": app_id})
                # Validated here, all before any is stored; a patch is merged again onto the
                # app as its own transaction reads it, so a change made meanwhile stays.
                todo.append((app_id, old, new if base is None else _merged(doc)))
            except SpecError as exc:
                details += [{"path": f"/{i}{d['path'].rstrip('/')}", "errors": d["errors"]}
                            for d in exc.details]
        if details:
            raise ApiError(422, "Object is not valid", details)
        if len({t[0] for t in todo}) != len(todo):
            raise ApiError(422, "Object is not valid", [{"path": "/", "errors": [
                "an app id is given more than once"]}])
        results = changes.apply_all(store, req, todo, force=force_param(req),
                                    port_range=self.ctx.port_range)
        if results:
            resp.set_header("Marathon-Deployment-Id", changes.deployment_id(results[0]))
            resp.media = changes.deployment_result(results[0])
        else:
            resp.media = {"deploymentId": None, "version": None}


class AppResource:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, app_id: str) -> None:
        """One app: `{"app": ...}` with its tasks, counters, deployments and last task failure
        (`?embed=app.readiness|app.taskStats`, and `accessd` for accessd's own fields)."""
        app = get_app_or_404(self.ctx.store, path_app_id(app_id))
        resp.media = {"app": render_apps(self.ctx.store, [app], embeds(req, views.SINGLE_EMBEDS),
                                         extras(req))[0]}

    def on_put(self, req: falcon.Request, resp: falcon.Response, app_id: str) -> None:
        """Update an app as Marathon does: the body's fields are merged onto the stored
        definition (each top-level field given replaces the stored one; `?partialUpdate=false`
        replaces the whole definition instead); a missing app is created (201). A body with only
        `instances` is a scale; one with only `version` rolls back to that stored version (see
        `GET /v2/apps/{appId}/versions`). `?force=true` overrides a running deployment."""
        app_id = path_app_id(app_id)
        doc = read_object(req, self.ctx.max_body)
        if doc.get("id") is not None:
            try:
                body_id = normalize_app_id(doc["id"])
            except SpecError as exc:
                raise ApiError(422, exc.message, exc.details) from None
            if body_id != app_id:
                raise ApiError(422, "Object is not valid", [{
                    "path": "/id",
                    "errors": [f"the body's id {body_id} differs from the URL's {app_id}"]}])
        store = self.ctx.store
        partial = req.get_param_as_bool("partialUpdate", default=True)
        if partial and changes.scale_count(doc) is not None:
            # a scale: computed in the store's transaction from the app as it reads it
            change = changes.scale(store, req, app_id, doc, force=force_param(req),
                                   port_range=self.ctx.port_range)
            resp.set_header("Marathon-Deployment-Id", changes.deployment_id(change))
            resp.media = changes.deployment_result(change)
            return
        old = store.get_app(app_id)
        if set(doc) - {"id"} == {"version"}:
            # Marathon's rollback: the definition stored as that version becomes current
            if old is None:
                raise not_found(f"App '{app_id}' does not exist")
            past = store.get_app_version(app_id, str(doc["version"]))
            if past is None and doc["version"] == old.get("version"):
                past = old
            if past is None:
                raise not_found(f"App '{app_id}' does not exist in version {doc['version']}")
            doc = changes.definition(past)
            partial = False
        if old is None and set(doc) - {"id"} == {"instances"}:
            # a scale of an app that is not there: say so (a definition needs a command)
            raise not_found(f"App '{app_id}' does not exist")
        if old is not None and partial:
            new_json: changes.NewDefinition = _merged(doc)   # 422 from inside the transaction
        else:
            new_json = changes.validated({**doc, "id": app_id})
        change = changes.apply(store, req, app_id, old, new_json, force=force_param(req),
                               port_range=self.ctx.port_range)
        resp.set_header("Marathon-Deployment-Id", changes.deployment_id(change))
        if old is None:
            resp.status = falcon.HTTP_201
            resp.location = "/v2/apps" + app_id
        resp.media = changes.deployment_result(change)

    def on_patch(self, req: falcon.Request, resp: falcon.Response, app_id: str) -> None:
        """Change some fields of an app (each top-level field given replaces the stored one)."""
        app_id = path_app_id(app_id)
        doc = read_object(req, self.ctx.max_body)
        if changes.scale_count(doc) is not None:  # a scale, as PUT does it: one read
            change = changes.scale(self.ctx.store, req, app_id, doc, force=force_param(req),
                                   port_range=self.ctx.port_range)
        else:
            old = get_app_or_404(self.ctx.store, app_id)
            change = changes.apply(self.ctx.store, req, app_id, old, _merged(doc),
                                   force=force_param(req), port_range=self.ctx.port_range)
        resp.set_header("Marathon-Deployment-Id", changes.deployment_id(change))
        resp.media = changes.deployment_result(change)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, app_id: str) -> None:
        """Delete an app (its tasks are killed by the scheduler's StopApplication)."""
        app_id = path_app_id(app_id)
        old = get_app_or_404(self.ctx.store, app_id)
        change = changes.apply(self.ctx.store, req, app_id, old, None, force=force_param(req),
                               port_range=self.ctx.port_range)
        resp.set_header("Marathon-Deployment-Id", changes.deployment_id(change))
        resp.media = changes.deployment_result(change)


class AppsInGroup:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, app_id: str) -> None:
        """The apps under a group, as Marathon's `GET /v2/apps/{group}/*`: `{"*": [...]}`, each
        app as `GET /v2/apps/{appId}` shows it; 404 when no app is under the group."""
        prefix = "/" + app_id.strip("/")
        apps = [a for a in self.ctx.store.list_apps() if a["id"].startswith(prefix + "/")]
        if not apps:
            raise not_found(f"Group '{prefix}' does not exist")
        resp.media = {"*": render_apps(self.ctx.store, apps, embeds(req, views.SINGLE_EMBEDS),
                                       extras(req))}


class AppVersions:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, app_id: str) -> None:
        """The app's stored versions, newest first: `{"versions": [...]}` (the newest 50)."""
        app = get_app_or_404(self.ctx.store, path_app_id(app_id))
        versions = self.ctx.store.list_app_versions(app["id"])
        if app.get("version") and app["version"] not in versions:  # stored before histories
            versions.insert(0, app["version"])
        resp.media = {"versions": versions}


class AppVersion:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, app_id: str,
               version: str) -> None:
        """The app's definition as it was at `version`; roll back to it with
        `PUT /v2/apps/{appId}` and the body `{"version": "<version>"}`."""
        app = get_app_or_404(self.ctx.store, path_app_id(app_id))
        doc = self.ctx.store.get_app_version(app["id"], version)
        if doc is None and version == app.get("version"):
            doc = app
        if doc is None:
            raise not_found(f"App '{app['id']}' does not exist in version {version}")
        resp.media = shapes.only(doc, shapes.APP_DEFINITION_FIELDS)


class AppRestart:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response, app_id: str) -> None:
        """Restart an app: a new config version, so every task is replaced (rolling)."""
        app_id = path_app_id(app_id)
        old = get_app_or_404(self.ctx.store, app_id)
        change = changes.apply(self.ctx.store, req, app_id, old, changes.definition,
                               force=force_param(req), restart=True,
                               port_range=self.ctx.port_range)
        resp.set_header("Marathon-Deployment-Id", changes.deployment_id(change))
        resp.media = changes.deployment_result(change)
