"""`/v2/queue`: launches that wait (no suitable offer) or are delayed (backoff), with why.

Read from the app runtime status documents the scheduler writes. `DELETE
/v2/queue/{appId}/delay` resets an app's backoff by recording a request in the store
(`request_delay_reset`, desired state: it moves the desired generation), never by writing the
status itself: the scheduler is the status document's only writer, so none of its writes can
undo the reset. Its next round (within about a tick) writes the status with `delay: null`,
`consecutiveFailures: 0` and `delayResetAt` (the request's time) and consumes the request in
the same transaction; until then `/v2/queue` still shows the old delay.
"""

from __future__ import annotations

import time

import falcon

from api import shapes, views
from api.apps import Ctx, extras, get_app_or_404, path_app_id


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
                view = views.app_view(app, app_tasks, status, deps.get(app["id"], []), set(), now,
                                      extras=True)
                item = views.queue_item(view, status, app_tasks, now)
                if item is not None:
                    queue.append(shapes.queue_item(item, extras(req)))
        resp.media = {"queue": queue}


class QueueDelay:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    def on_delete(self, req: falcon.Request, resp: falcon.Response, app_id: str) -> None:
        """Reset the app's launch backoff (204); the scheduler carries it out at its next round."""
        store = self.ctx.store
        app = get_app_or_404(store, path_app_id(app_id))
        store.request_delay_reset(app["id"])  # AppNotFound (404) if deleted meanwhile
        resp.status = falcon.HTTP_204
