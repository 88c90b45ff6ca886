"""Chronos's REST API (v1) for scheduled jobs, on the control API's port and credentials.

    POST   /v1/scheduler/iso8601               add or replace a scheduled job      204
    POST   /v1/scheduler/dependency            add or replace a dependent job      204
    GET    /v1/scheduler/jobs                  every job (Chronos JSON + counters)
    GET    /v1/scheduler/jobs/search           ?name=&command=&any=&limit=10&offset=0
    PUT    /v1/scheduler/job/{name}            run now                             204
    DELETE /v1/scheduler/job/{name}            delete (children rewired)           204
    DELETE /v1/scheduler/task/kill/{name}      kill the job's active runs          204
    GET    /v1/scheduler/job/stat/{name}       {"histogram": {...}, "taskStatHistory": [..]}
    GET    /v1/scheduler/stats/{statName}      [{"jobNameLabel", "time" (s)}], slowest first
    GET    /v1/scheduler/graph/csv             node,<name>,<last>,<current> / link,<p>,<c>

Status codes are Chronos's: 204 for accepted writes, 400 for an invalid job (every problem
named, Marathon-style `details`: bad ISO 8601, unknown parent, dependency cycle) and for an
unknown job name (Chronos answers a missing job with 400, not 404). A rejected write changes
nothing: definitions are written in one transaction guarded by the jobs revision they were
checked against. The API writes definitions and requests only; runs, counters and cursors are
the scheduler's (`scheduler.jobs`).

accessd extras, only when asked for: `GET /v1/scheduler/jobs?status=true` adds to each job an
`accessdStatus` object (next run, last run, active runs, median/p95 duration);
`GET /v1/scheduler/job/stat/{name}?runs=true` adds `runs` (the kept history, newest first).
"""

from __future__ import annotations

import functools
import time
from typing import Any

import falcon

from api.apps import Ctx
from api.body import read_object
from api.errors import ApiError, bad_request
from scheduler.jobs import plan as jobplan
from scheduler.jobs import stats
from scheduler.jobs.documents import JobsChanged
from scheduler.jobs.spec import JobError, JobSpec, check_graph, job_json, parse_job

Doc = dict[str, Any]
WRITE_ATTEMPTS = 5


def _unknown(name: str) -> ApiError:
    return bad_request(f"Job '{name}' not found", "/name")


def _stored(spec: JobSpec, version: str) -> Doc:
    return dict(spec.to_json(), version=version)


def _jobs(store: Any) -> dict[str, jobplan.Job]:
    return jobplan.load_jobs(store.list_jobs())


def _write(store: Any, change) -> None:
    """Compute a change from the current jobs and store it guarded by their revision; a
    concurrent writer makes the check run again on its result."""
    for _ in range(WRITE_ATTEMPTS):
        revision = store.jobs_revision()
        docs = store.list_jobs()
        put, delete = change(docs)
        try:
            store.write_jobs(put, delete, expect_revision=revision)
            return
        except JobsChanged:
            continue
    raise ApiError(409, "the jobs kept changing; try again")


class JobPost:
    """`POST /v1/scheduler/iso8601` and `/v1/scheduler/dependency`."""

    def __init__(self, ctx: Ctx, kind: str) -> None:
        self.ctx = ctx
        self.kind = kind

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Add or replace a job (Chronos JSON); 204, or 400 naming every problem."""
        doc = read_object(req, self.ctx.max_body)
        now = time.time()
        try:
            spec = parse_job(doc, kind=self.kind, now=now)
        except JobError as exc:
            raise ApiError(400, exc.message, exc.details) from None

        def change(docs: list[Doc]) -> tuple[list[Doc], list[str]]:
            jobs = {j.spec.name: j.spec for j in jobplan.load_jobs(docs).values()}
            jobs[spec.name] = spec
            problems = check_graph(jobs, changed=spec.name)
            if problems:
                raise ApiError(400, "Invalid job definition", problems)
            old = next((d for d in docs if d.get("name") == spec.name), None)
            version = jobplan.iso(now)
            if old is not None and {k: v for k, v in old.items() if k != "version"} \
                    == spec.to_json():
                version = old.get("version") or version  # an unchanged re-post
            return [_stored(spec, version)], []

        _write(self.ctx.store, change)
        resp.status = falcon.HTTP_204


class JobsList:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Every job with its counters; `?status=true` adds `accessdStatus`."""
        store = self.ctx.store
        jobs = _jobs(store)
        statuses = store.list_job_status()
        out = [job_json(j.spec, statuses.get(n)) for n, j in sorted(jobs.items())]
        if req.get_param_as_bool("status", default=False):
            now = time.time()
            active = _active_by_job(store)
            for item in out:
                name = item["name"]
                item["accessdStatus"] = status_view(jobs[name], statuses.get(name),
                                                    active.get(name, []),
                                                    store.list_job_runs(name, limit=100), now)
        resp.media = out


def status_view(job: jobplan.Job, status: Doc | None, active: list[Doc], history: list[Doc],
                now: float) -> Doc:
    last = next((r for r in history if r.get("state") != "skipped"), None)
    nxt = jobplan.next_run_at(job, status, now)
    hist = stats.histogram(history)
    return {"nextRunAt": jobplan.iso(nxt) if nxt is not None else None,
            "lastRun": None if last is None else {
                k: last.get(k) for k in ("id", "scheduledAt", "startedAt", "finishedAt",
                                         "state", "exitCode", "attempt", "host")},
            "state": stats.current_state(active), "activeRuns": len(active),
            "medianMs": hist["median"], "p95Ms": hist["95thPercentile"]}


def _active_by_job(store: Any) -> dict[str, list[Doc]]:
    out: dict[str, list[Doc]] = {}
    for r in store.list_job_runs(active=True):
        out.setdefault(r["job"], []).append(r)
    return out


class JobsSearch:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Jobs whose name/command contain the terms: `?name=`, `?command=`, `?any=`, `?limit=` (10), `?offset=`."""
        name = (req.get_param("name") or "").lower()
        command = (req.get_param("command") or "").lower()
        anything = (req.get_param("any") or "").lower()
        limit = req.get_param_as_int("limit", min_value=0, default=10)
        offset = req.get_param_as_int("offset", min_value=0, default=0)
        store = self.ctx.store
        statuses = store.list_job_status()
        found = []
        for n, job in sorted(_jobs(store).items()):
            ok = (not name or name in n.lower()) and (
                not command or command in job.spec.command.lower())
            if not ok and anything and (anything in n.lower()
                                        or anything in job.spec.command.lower()):
                ok = True
            if ok:
                found.append(job_json(job.spec, statuses.get(n)))
        resp.media = found[offset:offset + limit]


class JobResource:
    """`PUT /v1/scheduler/job/{name}` (run now), `DELETE` (delete)."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    def on_put(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        """Run the job now (204); the scheduler starts it within a round."""
        store = self.ctx.store
        if store.get_job(name) is None:
            raise _unknown(name)
        store.request_job_action(name, "run", jobplan.iso(time.time()))
        resp.status = falcon.HTTP_204

    def on_delete(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        """Delete the job (204); its children are rewired as Chronos does."""
        now = time.time()

        def change(docs: list[Doc]) -> tuple[list[Doc], list[str]]:
            jobs = {j.spec.name: j for j in jobplan.load_jobs(docs).values()}
            if name not in jobs:
                raise _unknown(name)
            specs = {n: j.spec for n, j in jobs.items()}
            rewired = stats.rewire_on_delete(specs, name)
            return [_stored(s, jobplan.iso(now)) for s in rewired], [name]

        _write(self.ctx.store, change)
        resp.status = falcon.HTTP_204


class TaskKill:
    """`DELETE /v1/scheduler/task/kill/{name}`: kill every active run of the job."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    def on_delete(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        """Kill every active run of the job (204)."""
        store = self.ctx.store
        if store.get_job(name) is None:
            raise _unknown(name)
        store.request_job_action(name, "kill", jobplan.iso(time.time()))
        resp.status = falcon.HTTP_204


class JobStat:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        """Duration histogram and run history of a job; `?runs=true` adds the runs."""
        store = self.ctx.store
        if store.get_job(name) is None:
            raise _unknown(name)
        runs = store.list_job_runs(name)
        out: Doc = {"histogram": stats.histogram(runs),
                    "taskStatHistory": [stats.task_stat(r) for r in runs
                                        if r.get("state") != "skipped"]}
        if req.get_param_as_bool("runs", default=False):
            out["runs"] = runs
        resp.media = out


class StatsResource:
    """`GET /v1/scheduler/stats/{statName}`: jobs by that duration statistic, in seconds."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, stat_name: str) -> None:
        """Jobs ranked by a duration statistic (seconds), slowest first."""
        store = self.ctx.store
        out = []
        if stat_name in stats.STAT_NAMES:  # Chronos answers an unknown name with []
            for name in sorted(_jobs(store)):
                hist = stats.histogram(store.list_job_runs(name))
                out.append({"jobNameLabel": name, "time": hist[stat_name] / 1000.0})
            out.sort(key=lambda item: item["time"], reverse=True)
        resp.media = out


class GraphCsv:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The dependency graph as CSV: node and link lines."""
        store = self.ctx.store
        specs = {n: j.spec for n, j in _jobs(store).items()}
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = stats.graph_csv(specs, store.list_job_status(), _active_by_job(store))


JOB_STORE_METHODS = ("list_jobs", "write_jobs", "jobs_revision", "list_job_runs")
RESPONDERS = ("on_get", "on_post", "on_put", "on_delete")


def _require_job_store(store: Any) -> None:
    """A clear 501, not a 500, on a store that keeps no job documents. Checked per request, not
    when the app is built: touching the store then would open it outside the error handling."""
    if not all(hasattr(store, m) for m in JOB_STORE_METHODS):
        raise ApiError(501, "Scheduled jobs need a store with job documents (the SQLite state "
                            "store or the ZooKeeper store); this API runs on one without")


def _guarded(ctx: Ctx, resource: object) -> object:
    """`resource` with the job-store check before each of its responders."""
    guarded = type(f"Guarded{type(resource).__name__}", (), {})()
    for name in RESPONDERS:
        responder = getattr(resource, name, None)
        if responder is not None:
            @functools.wraps(responder)  # keeps the docstring /v2/openapi.json shows
            def checked(req, resp, _responder=responder, **params):
                _require_job_store(ctx.store)
                _responder(req, resp, **params)
            setattr(guarded, name, checked)
    return guarded


def routes(ctx: Ctx) -> list[tuple[str, object]]:
    """The route table entries (specific before general, see api.routing). Both backends keep
    job documents; the 501 check is for a store that does not."""
    return [(path, _guarded(ctx, resource)) for path, resource in _routes(ctx)]


def _routes(ctx: Ctx) -> list[tuple[str, object]]:
    from api import jobs_more  # success, progress, graph/dot, run with arguments

    return jobs_more.routes(ctx) + [
        ("/v1/scheduler/iso8601", JobPost(ctx, "iso8601")),
        ("/v1/scheduler/dependency", JobPost(ctx, "dependency")),
        ("/v1/scheduler/jobs", JobsList(ctx)),
        ("/v1/scheduler/jobs/search", JobsSearch(ctx)),
        ("/v1/scheduler/job/stat/{name}", JobStat(ctx)),
        ("/v1/scheduler/job/{name}", jobs_more.JobRunWithArguments(ctx)),
        ("/v1/scheduler/task/kill/{name}", TaskKill(ctx)),
        ("/v1/scheduler/stats/{statName}", StatsResource(ctx)),
        ("/v1/scheduler/graph/csv", GraphCsv(ctx)),
    ]
