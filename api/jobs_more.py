"""More of Chronos's v1 job endpoints (beside `api.jobs`):

    PUT  /v1/scheduler/job/{name}?arguments=…            run now, `arguments` appended   204
    PUT  /v1/scheduler/job/success/{name}                mark successful (dependents run)
         200 text/plain "marked job <name> as successful: true|false" (false: no such job)
    POST /v1/scheduler/job/{name}/task/{taskId}/progress {"numAdditionalElementsProcessed": n}
         204; 400 for an unknown job, a task id not of Chronos's shape, a job without
         `dataProcessingJobType`, or a negative count
    GET  /v1/scheduler/graph/dot                         the dependency graph, Graphviz DOT

As everywhere in the jobs API, the API only queues requests; the scheduler carries them out in
its next round (`scheduler.jobs.plan`), in the transaction that records what it did.
"""

from __future__ import annotations

import re
import time
from typing import Any

import falcon

from api.apps import Ctx
from api.body import read_object
from api.errors import bad_request
from api.jobs import JobResource, _jobs, _unknown
from scheduler.jobs import plan as jobplan

TASK_ID_RE = re.compile(r"ct:\d+:\d+:.+")  # Chronos's task id shape, ct:<ms>:<attempt>:<name>…


class JobRunWithArguments(JobResource):
    """`PUT /v1/scheduler/job/{name}`: run now; `?arguments=` is appended to this run's
    command (to the arguments of a `shell: false` job)."""

    def on_put(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        """Run the job now, with `?arguments=` appended to its command (204)."""
        store = self.ctx.store
        if store.get_job(name) is None:
            raise _unknown(name)
        arguments = req.get_param("arguments") or ""
        extra = {"arguments": arguments} if arguments.strip() else {}
        store.request_job_action(name, "run", jobplan.iso(time.time()), **extra)
        resp.status = falcon.HTTP_204


class JobSuccess:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    def on_put(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        """Mark the job successful now: its dependents run as after a real success."""
        store = self.ctx.store
        found = store.get_job(name) is not None
        if found:
            store.request_job_action(name, "success", jobplan.iso(time.time()))
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = f"marked job {name} as successful: {'true' if found else 'false'}"


class TaskProgress:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str,
                task_id: str) -> None:
        """Add `numAdditionalElementsProcessed` to the run's count of processed elements (204)."""
        store = self.ctx.store
        doc = store.get_job(name)
        if doc is None:
            raise _unknown(name)
        if not TASK_ID_RE.fullmatch(task_id):
            raise bad_request(f"Invalid task id format {task_id}", "/taskId")
        if not doc.get("dataProcessingJobType"):
            raise bad_request(f"Job '{name}' is not enabled to track data",
                              "/dataProcessingJobType")
        body = read_object(req, self.ctx.max_body)
        count = body.get("numAdditionalElementsProcessed")
        if count is not None:
            if isinstance(count, bool) or not isinstance(count, int):
                raise bad_request("numAdditionalElementsProcessed must be an integer",
                                  "/numAdditionalElementsProcessed")
            if count < 0:
                raise bad_request(f"numAdditionalElementsProcessed ({count}) is not positive",
                                  "/numAdditionalElementsProcessed")
            store.request_job_action(name, "progress", jobplan.iso(time.time()),
                                     taskId=task_id, count=count)
        resp.status = falcon.HTTP_204


def _dot_label(name: str) -> str:
    return name.replace("\\", "\\\\").replace('"', '\\"')


def graph_dot(parents_of: dict[str, tuple[str, ...]]) -> str:
    """Every job a numbered node labelled with its name, an edge parent -> child."""
    ids = {name: i for i, name in enumerate(sorted(parents_of), start=1)}
    lines = ["digraph G {"]
    lines += [f'  {i} [ label="{_dot_label(name)}" ];' for name, i in ids.items()]
    for child in sorted(parents_of):
        lines += [f"  {ids[p]} -> {ids[child]};" for p in parents_of[child] if p in ids]
    lines.append("}")
    return "\n".join(lines) + "\n"


class GraphDot:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The dependency graph in Graphviz's DOT language (text/plain)."""
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = graph_dot({n: j.spec.parents for n, j in _jobs(self.ctx.store).items()})


def routes(ctx: Ctx) -> list[tuple[str, Any]]:
    """Specific before general: these go before `api.jobs`'s `/job/{name}`."""
    return [
        ("/v1/scheduler/job/success/{name}", JobSuccess(ctx)),
        ("/v1/scheduler/job/{name}/task/{task_id}/progress", TaskProgress(ctx)),
        ("/v1/scheduler/graph/dot", GraphDot(ctx)),
    ]
