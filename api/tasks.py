"""Tasks: list them (per app or all) and ask the scheduler to kill them.

The API never kills anything itself: it records kill requests in the store
(`StateStore.request_kills`) and the scheduler carries them out. With `?scale=true` the same
transaction lowers the owning app's `instances` and stores the scale deployment, so the killed
task is not replaced; without it the scheduler starts a replacement as for any lost task.
"""

from __future__ import annotations

import falcon

from api import changes, tasks_text, views
from api.apps import Ctx, extras, force_param, get_app_or_404, path_app_id
from api.body import read_object
from api.errors import ApiError, bad_request, not_found

Doc = dict


def _kill(ctx: Ctx, req: falcon.Request, resp: falcon.Response, tasks: list[Doc],
          single: bool) -> None:
    """Kill `tasks` (all known to exist); answer Marathon's shape."""
    scale = req.get_param_as_bool("scale", default=False) or False
    store = ctx.store
    if not tasks:
        resp.media = {"tasks": []}
        return
    if scale:
        # One transaction, one deployment plan, whatever the number of apps (as Marathon).
        kills = [(get_app_or_404(store, app_id), [t["id"] for t in app_tasks])
                 for app_id, app_tasks in views.group_tasks(tasks).items()]
        results = changes.scale_by_kills(store, req, kills, force=force_param(req))
        resp.set_header("Marathon-Deployment-Id", changes.deployment_id(results[0]))
        resp.media = changes.deployment_result(results[0])
        return
    store.request_kills([t["id"] for t in tasks], scale=False)
    if single:
        resp.media = {"task": views.task_view(tasks[0], extras(req))}
    else:
        resp.media = {"tasks": [views.task_view(t, extras(req)) for t in tasks]}


class AppTasks:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, app_id: str) -> None:
        """The app's live tasks: `{"tasks": [...]}`."""
        app = get_app_or_404(self.ctx.store, path_app_id(app_id))
        tasks = self.ctx.store.list_tasks(app["id"])
        if tasks_text.wants_text(req):
            tasks_text.respond(resp, [app], tasks)
            return
        resp.media = {"tasks": [views.task_view(t, extras(req)) for t in tasks]}

    def on_delete(self, req: falcon.Request, resp: falcon.Response, app_id: str) -> None:
        """Kill the app's tasks (`?host=` only those on that agent; `?scale=true` lowers
        `instances` instead of replacing them)."""
        app = get_app_or_404(self.ctx.store, path_app_id(app_id))
        tasks = self.ctx.store.list_tasks(app["id"])
        host = req.get_param("host")
        if host:
            tasks = [t for t in tasks if t.get("host") == host]
        _kill(self.ctx, req, resp, tasks, single=False)


class AppTask:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    def on_delete(self, req: falcon.Request, resp: falcon.Response, app_id: str,
                  task_id: str) -> None:
        """Kill one task (`?scale=true` lowers `instances` by one instead of replacing it)."""
        app = get_app_or_404(self.ctx.store, path_app_id(app_id))
        task = self.ctx.store.get_task(task_id)
        if task is None or task.get("appId") != app["id"]:
            raise not_found(f"Task '{task_id}' does not exist")
        _kill(self.ctx, req, resp, [task], single=True)


_STATUS_FILTERS = {
    "running": frozenset({"TASK_RUNNING"}),
    "staging": frozenset({"TASK_STAGING", "TASK_STARTING"}),
    "killing": frozenset({"TASK_KILLING"}),
    "unreachable": frozenset({"TASK_UNREACHABLE"}),
}


class Tasks:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """All live tasks (`?status=running|staging|killing|unreachable`, repeatable); with
        `Accept: text/plain` every app's running tasks in Marathon's text format (`status` is
        ignored there, as Marathon does)."""
        if tasks_text.wants_text(req):
            apps = sorted(self.ctx.store.list_apps(), key=lambda a: str(a.get("id")))
            tasks_text.respond(resp, apps, self.ctx.store.list_tasks())
            return
        wanted: set[str] = set()
        for value in req.get_param_as_list("status") or []:
            for name in value.split(","):
                states = _STATUS_FILTERS.get(name.strip().lower())
                if states is None:
                    raise bad_request(f"Unknown task status {name!r}: use one of "
                                      f"{', '.join(_STATUS_FILTERS)}", "/status")
                wanted |= states
        tasks = self.ctx.store.list_tasks()
        if wanted:
            tasks = [t for t in tasks if t.get("state") in wanted]
        resp.media = {"tasks": [views.task_view(t, extras(req)) for t in tasks]}


class TasksDelete:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Kill the tasks `{"ids": [...]}` of any apps (`?scale=true` as above). Every id must
        name a live task, else 404 and nothing is killed."""
        doc = read_object(req, self.ctx.max_body)
        ids = doc.get("ids")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ApiError(422, "Object is not valid",
                           [{"path": "/ids", "errors": ["must be an array of task ids"]}])
        tasks, missing = [], []
        for task_id in dict.fromkeys(ids):
            task = self.ctx.store.get_task(task_id)
            (tasks if task is not None else missing).append(task or task_id)
        if missing:
            raise ApiError(404, f"Unknown task(s): {', '.join(missing)}",
                           [{"path": "/ids", "errors": [f"unknown task {m}" for m in missing]}])
        _kill(self.ctx, req, resp, tasks, single=False)
