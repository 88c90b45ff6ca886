"""Run statistics and views for the Jobs API (pure): Chronos's duration histogram, its task
history entries, its dependency-graph CSV, and the Chronos delete semantics for dependents.

Histogram names are Chronos's (`75thPercentile`, `95thPercentile`, `98thPercentile`,
`99thPercentile`, `median`, `mean`, `count`), values in milliseconds of successful runs'
durations (start to end) in the kept history; quantiles interpolate between ranks as the
metrics library Chronos uses does (position q·(n+1)). `mean` is the arithmetic mean.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from scheduler.jobs.plan import epoch
from scheduler.jobs.spec import JobSpec

Doc = dict[str, Any]

PERCENTILES = {"75thPercentile": 0.75, "95thPercentile": 0.95, "98thPercentile": 0.98,
               "99thPercentile": 0.99, "median": 0.5}
STAT_NAMES = (*PERCENTILES, "mean")


def quantile(sorted_values: Sequence[float], q: float) -> float:
    n = len(sorted_values)
    if n == 0:
        return 0.0
    pos = q * (n + 1)
    if pos < 1:
        return float(sorted_values[0])
    if pos >= n:
        return float(sorted_values[-1])
    lower = sorted_values[int(pos) - 1]
    upper = sorted_values[int(pos)]
    return float(lower + (pos - math.floor(pos)) * (upper - lower))


def durations_ms(runs: Iterable[Doc]) -> list[float]:
    out = []
    for r in runs:
        start, end = epoch(r.get("startedAt")), epoch(r.get("finishedAt"))
        if r.get("state") == "succeeded" and start is not None and end is not None:
            out.append(max(0.0, (end - start) * 1000.0))
    return sorted(out)


def histogram(runs: Iterable[Doc]) -> Doc:
    values = durations_ms(runs)
    out: Doc = {name: quantile(values, q) for name, q in PERCENTILES.items()}
    out["mean"] = sum(values) / len(values) if values else 0.0
    out["count"] = len(values)
    return out


def _chronos_time(iso: str | None) -> str:
    t = epoch(iso)
    return "N/A" if t is None else datetime.fromtimestamp(t, tz=UTC).strftime("%m/%d/%y %H:%M:%S")


def _period(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = "".join(f"{v}{u}" for v, u in ((days, "d"), (hours, "h"), (minutes, "m")) if v)
    return text + f"{secs}s"


_STATUS = {"succeeded": "Success", "failed": "Fail", "killed": "Fail", "running": "Running",
           "staging": "Running", "queued": "Idle", "skipped": "Idle"}


def task_stat(run: Doc) -> Doc:
    """A run as an entry of Chronos's `taskStatHistory`."""
    out: Doc = {"taskId": run["id"], "jobName": run["job"], "slaveId": run.get("agentId") or "",
                "startTime": _chronos_time(run.get("startedAt")),
                "endTime": _chronos_time(run.get("finishedAt"))}
    start, end = epoch(run.get("startedAt")), epoch(run.get("finishedAt"))
    if start is not None and end is not None:
        out["duration"] = _period(end - start)
    out["status"] = _STATUS.get(run.get("state", ""), "Idle")
    return out


def last_state(status: Mapping[str, Any] | None) -> str:
    """Chronos's graph node state: fresh, success or failure (the later of the two)."""
    status = status or {}
    ok, err = epoch(status.get("lastSuccess")), epoch(status.get("lastError"))
    if ok is None and err is None:
        return "fresh"
    if ok is None:
        return "failure"
    if err is None or ok > err:
        return "success"
    return "failure"


def current_state(active_runs: Iterable[Doc]) -> str:
    states = {r.get("state") for r in active_runs}
    if states & {"staging", "running"}:
        return "running"
    return "queued" if "queued" in states else "idle"


def graph_csv(jobs: Mapping[str, JobSpec], statuses: Mapping[str, Doc],
              active_by_job: Mapping[str, list[Doc]]) -> str:
    lines = [f"node,{name},{last_state(statuses.get(name))},"
             f"{current_state(active_by_job.get(name, []))}" for name in sorted(jobs)]
    lines += [f"link,{parent},{name}" for name in sorted(jobs) for parent in jobs[name].parents]
    return "".join(line + "\n" for line in lines)


def rewire_on_delete(jobs: Mapping[str, JobSpec], name: str) -> list[JobSpec]:
    """The children of `name` as Chronos leaves them when it is deleted: a dependent job's
    children inherit its parents; a scheduled job's children that depended on it alone take
    over its schedule (the others just lose it as a parent)."""
    gone = jobs[name]
    out = []
    for child in sorted(n for n, j in jobs.items() if name in j.parents):
        spec = jobs[child]
        others = tuple(p for p in spec.parents if p != name)
        if gone.is_dependent:
            merged = tuple(dict.fromkeys(others + gone.parents))
            out.append(replace(spec, parents=merged))
        elif others:
            out.append(replace(spec, parents=others))
        else:
            out.append(replace(spec, parents=(), schedule=gone.schedule,
                               schedule_time_zone=gone.schedule_time_zone))
    return out
