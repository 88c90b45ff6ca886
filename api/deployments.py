"""`/v2/deployments`: list running deployments, cancel or roll one back.

`DELETE /v2/deployments/{id}`:
- with `?force=true` the deployment is just cancelled (202, no body): the app keeps its new
  definition and the scheduler stops driving that deployment (tasks stay as they are);
- without it the change is rolled back, as in Marathon: a new deployment restores the app
  document the deployment replaced (kept in the deployment's `original`; a create is rolled back
  by deleting the app, a delete by recreating it), in one transaction that marks the rolled-back
  deployment `superseded`. The answer is `{"deploymentId", "version"}` of the rollback (200).

A change of several apps is one deployment plan (`scheduler.deployment_plans`): listed, read,
cancelled and rolled back by the plan's id, whatever each app's part of it has come to (a
rollback restores every app of the plan, in one transaction, as a plan of its own).
"""

from __future__ import annotations

from typing import Any

import falcon

from api import changes, shapes
from api.apps import Ctx, extras
from api.errors import ApiError, not_found
from scheduler.deployment_plans import parts_of, plan_of, plans
from scheduler.state import StateError, StateStore

Doc = dict[str, Any]


def _parts(store: StateStore, deployment_id: str) -> list[Doc]:
    """The deployment documents `deployment_id` names: one deployment, or all the parts of
    its plan, in the plan's order (those pruned meanwhile left out); none if it names none."""
    dep = store.get_deployment(deployment_id)
    return parts_of(dep, store.get_deployment) if dep is not None else []


def _running_parts_or_404(store: StateStore, deployment_id: str) -> list[Doc]:
    parts = _parts(store, deployment_id)
    if not any(d.get("status", "running") == "running" for d in parts):
        raise not_found(f"DeploymentPlan {deployment_id} does not exist")
    return [d for d in parts if d.get("status", "running") == "running"]


class Deployments:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Running deployment plans, oldest first (`?embed=accessd`: with status, progress,
        target; a plan of several apps with its `parts`)."""
        store = self.ctx.store
        # a plan's finished parts are read by id (its first part lists them)
        resp.media = [shapes.deployment(d, extras(req))
                      for d in plans(store.list_deployments(active_only=True),
                                     store.get_deployment)]


class Deployment:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, deployment_id: str) -> None:
        """One deployment plan, in any status (the 409 message points here)."""
        parts = _parts(self.ctx.store, deployment_id)
        if not parts:
            raise not_found(f"DeploymentPlan {deployment_id} does not exist")
        resp.media = shapes.deployment(plan_of(parts), extras(req))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, deployment_id: str) -> None:
        """Roll a running deployment plan back (default) or just cancel it (`?force=true`)."""
        store = self.ctx.store
        parts = _running_parts_or_404(store, deployment_id)
        if req.get_param_as_bool("force", default=False):
            self._cancel(parts, deployment_id)
            resp.status = falcon.HTTP_202
            return
        if any("original" not in dep for dep in parts):
            raise ApiError(409, f"DeploymentPlan {deployment_id} cannot be rolled back (it "
                                "does not record the app it replaced): cancel it with "
                                "'?force=true'")
        todo = []
        for dep in parts:
            app_id = ((dep.get("target") or {}).get("app")
                      or (dep.get("affectedApps") or [None])[0])
            current = store.get_app(app_id)
            if dep["original"] is not None or current is not None:
                todo.append((app_id, current, dep["original"]))
        if not todo:   # creates of apps deleted since: nothing to restore
            self._cancel(parts, deployment_id)
            resp.status = falcon.HTTP_202
            return
        results = changes.apply_all(store, req, todo, force=True, keep_versions=True,
                                    port_range=self.ctx.port_range)
        resp.set_header("Marathon-Deployment-Id", changes.deployment_id(results[0]))
        resp.media = changes.deployment_result(results[0])

    def _cancel(self, parts: list[Doc], deployment_id: str) -> None:
        """Cancel each running part (one finished meanwhile is left as it finished); 404 if
        every one had finished."""
        cancelled = 0
        for dep in parts:
            try:
                self.ctx.store.cancel_deployment(dep["id"])
                cancelled += 1
            except StateError:  # finished meanwhile
                pass
        if not cancelled:
            raise not_found(f"DeploymentPlan {deployment_id} does not exist")
