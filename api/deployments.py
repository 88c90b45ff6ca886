"""`/v2/deployments`: list running deployments, cancel or roll one back.

`DELETE /v2/deployments/{id}`:
- with `?force=true` the deployment is just cancelled (202, no body): the app keeps its new
  definition and the scheduler stops driving that deployment (tasks stay as they are);
- without it the change is rolled back, as in Marathon: a new deployment restores the app
  document the deployment replaced (kept in the deployment's `original`; a create is rolled back
  by deleting the app, a delete by recreating it), in one transaction that marks the rolled-back
  deployment `superseded`. The answer is `{"deploymentId", "version"}` of the rollback (200).
"""

from __future__ import annotations

import falcon

from api import changes, shapes
from api.apps import Ctx, extras
from api.errors import ApiError, not_found
from scheduler.state import StateError


def _active_or_404(ctx: Ctx, deployment_id: str) -> dict:
    dep = ctx.store.get_deployment(deployment_id)
    if dep is None or dep.get("status", "running") != "running":
        raise not_found(f"DeploymentPlan {deployment_id} does not exist")
    return dep


class Deployments:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Running deployments, oldest first (`?embed=accessd`: with status, progress, target)."""
        resp.media = [shapes.deployment(d, extras(req))
                      for d in self.ctx.store.list_deployments(active_only=True)]


class Deployment:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, deployment_id: str) -> None:
        """One deployment, in any status (the 409 message points here)."""
        dep = self.ctx.store.get_deployment(deployment_id)
        if dep is None:
            raise not_found(f"DeploymentPlan {deployment_id} does not exist")
        resp.media = shapes.deployment(dep, extras(req))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, deployment_id: str) -> None:
        """Roll a running deployment back (default) or just cancel it (`?force=true`)."""
        store = self.ctx.store
        dep = _active_or_404(self.ctx, deployment_id)
        if req.get_param_as_bool("force", default=False):
            try:
                store.cancel_deployment(deployment_id)
            except StateError:  # finished meanwhile
                raise not_found(f"DeploymentPlan {deployment_id} does not exist") from None
            resp.status = falcon.HTTP_202
            return
        if "original" not in dep:
            raise ApiError(409, f"DeploymentPlan {deployment_id} cannot be rolled back (it "
                                "does not record the app it replaced): cancel it with "
                                "'?force=true'")
        app_id = (dep.get("target") or {}).get("app") or (dep.get("affectedApps") or [None])[0]
        current = store.get_app(app_id)
        original = dep["original"]
        if original is None and current is None:
            store.cancel_deployment(deployment_id)
            resp.status = falcon.HTTP_202
            return
        change = changes.apply(store, req, app_id, current, original, force=True,
                               keep_versions=True, port_range=self.ctx.port_range)
        resp.set_header("Marathon-Deployment-Id", change.deployment["id"])
        resp.media = changes.deployment_result(change)
