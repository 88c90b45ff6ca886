"""`/v2/queue`: launches that wait (no suitable offer) or are delayed (backoff), with why.

Read from the app runtime status documents the scheduler writes. `DELETE
/v2/queue/{appId}/delay` resets an app's backoff: it writes the status with `delay: null`,
`consecutiveFailures: 0` and `delayResetAt` (now). The scheduler reads statuses from the store
when it plans, so the next launch round no longer waits; `delayResetAt` lets it tell a reset
from its own write (it may keep its own failure count in memory and must drop it then).
"""

from __future__ import annotations

import time

import falcon

from api import views
from api.apps import Ctx, get_app_or_404, path_app_id
from scheduler.spec import iso_now


class Queue:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Apps with launches waiting for offers or delayed by backoff, with the reason."""
        store = self.ctx.store
        statuses = store.list_app_status()
        queue = []
        if statuses:
            tasks = views.group_tasks(store.list_tasks())
            deps = views.deployments_by_app(store.list_deployments(active_only=True))
            now = time.time()
            for app in store.list_apps():
                status = statuses.get(app["id"])
                if not status:
                    continue
                app_tasks = tasks.get(app["id"], [])
                view = views.app_view(app, app_tasks, status, deps.get(app["id"], []), set(), now)
                item = views.queue_item(view, status, app_tasks, now)
                if item is not None:
                    queue.append(item)
        resp.media = {"queue": queue}


class QueueDelay:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    def on_delete(self, req: falcon.Request, resp: falcon.Response, app_id: str) -> None:
        """Reset the app's launch backoff (204)."""
        store = self.ctx.store
        app = get_app_or_404(store, path_app_id(app_id))
        now = iso_now()
        status = dict(store.get_app_status(app["id"]) or {
            "appId": app["id"], "waiting": None, "lastTaskFailure": None})
        status.update({"delay": None, "consecutiveFailures": 0, "delayResetAt": now,
                       "updatedAt": now})
        store.put_app_status(app["id"], status)
        resp.status = falcon.HTTP_204
