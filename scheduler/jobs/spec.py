"""The one job-definition schema, Chronos's field names: `parse_job(doc) -> JobSpec` or
`JobError` listing every problem at once; `check_graph` for what needs the other jobs
(unknown parents, dependency cycles).

Pure. A job is *scheduled* (`schedule`, posted to `/v1/scheduler/iso8601`) or *dependent*
(`parents`, posted to `/v1/scheduler/dependency`), never both. The fields Chronos returns and
clients send back (`successCount`, `errorCount`, `lastSuccess`, `lastError`,
`errorsSinceLastSuccess`) are read-only: accepted and ignored on input, filled in from the
job's runtime status on output (`job_json`). Chronos fields for features accessd does not have
(Docker `container`, `async`, a custom `executor`, …) are refused when they ask for something,
accepted at their default; any other field is an error (with a hint for near misses), so a
typo never passes silently.

Defaults are Chronos's: `retries` 2, `cpus` 0.1, `mem` 128, `disk` 256, `epsilon` PT60S
(Chronos's `--task_epsilon`), `shell` true.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from scheduler.constraint_regex import check_pattern
from scheduler.jobs.fetch import FetchItem, parse_fetch
from scheduler.jobs.schedule import ScheduleError, parse_duration, parse_schedule, with_start
from scheduler.jobs.schedule import zone as tz_zone

Doc = dict[str, Any]

# Chronos's job-name pattern, but whitespace is the space only: a tab, newline or other control
# character in a name ends up in task ids, sandbox paths and log lines. A name of dots only
# (".", "..") is refused too: names are URL path segments (`/v1/scheduler/job/{name}`).
NAME_RE = re.compile(r"(?!\.+$)[\w .#_-]+")
MAX_NAME = 200
DEFAULT_EPSILON = "PT60S"
CONSTRAINT_OPERATORS = ("EQUALS", "LIKE", "UNLIKE")

READ_ONLY_FIELDS = frozenset({"successCount", "errorCount", "lastSuccess", "lastError",
                              "errorsSinceLastSuccess", "softError"})
# Chronos fields accessd accepts only at their "off" value (they would need features it lacks)
_OFF_VALUES: dict[str, tuple[Any, ...]] = {
    "async": (False, None), "container": (None, {}), "executor": ("", None),
    "executorFlags": ("", None), "taskInfoData": ("", None),
    "dataJob": (False, None), "highPriority": (False, None), "runAsUser": ("", None),
}
# why, for the fields a user is likely to try
_WHY_OFF = {
    "async": ": an async job ends by a callback from Chronos's asynchronous executor, which "
             "accessd does not have; runs here end when their command exits (an outside "
             "process can still report with PUT /v1/scheduler/job/success/{name})",
    "container": ": job runs use the Mesos command executor without a container image "
                 "(Docker images are not run for jobs); fetch what the command needs with "
                 "'fetch' or 'uris'",
    "executor": ": job runs use the Mesos command executor",
}
_FIELDS = frozenset({"name", "command", "schedule", "scheduleTimeZone", "parents", "epsilon",
                     "retries", "owner", "ownerName", "description", "disabled", "concurrent",
                     "cpus", "mem", "disk", "environmentVariables", "constraints", "uris",
                     "shell", "arguments", "dataProcessingJobType", "fetch"})


class JobError(ValueError):
    """An invalid job. `details` lists every problem: `[{"path": "/schedule", "errors": [..]}]`."""

    def __init__(self, message: str, details: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return "; ".join(f"{d['path']}: {', '.join(d['errors'])}" for d in self.details) \
            or self.message


class _Errors:
    def __init__(self) -> None:
        self.by_path: dict[str, list[str]] = {}

    def add(self, path: str, message: str) -> None:
        self.by_path.setdefault(path, []).append(message)

    def details(self) -> list[dict[str, Any]]:
        return [{"path": p, "errors": list(e)} for p, e in self.by_path.items()]

    def __bool__(self) -> bool:
        return bool(self.by_path)


@dataclass(frozen=True)
class JobSpec:
    name: str
    command: str
    schedule: str | None = None             # stored form: the start always filled in
    schedule_time_zone: str = ""
    parents: tuple[str, ...] = ()
    epsilon: str = DEFAULT_EPSILON
    retries: int = 2
    owner: str = ""
    owner_name: str = ""
    description: str = ""
    disabled: bool = False
    concurrent: bool = False
    cpus: float = 0.1
    mem: float = 128.0
    disk: float = 256.0
    environment_variables: tuple[tuple[str, str], ...] = ()
    constraints: tuple[tuple[str, str, str], ...] = ()
    uris: tuple[str, ...] = ()
    fetch: tuple[FetchItem, ...] = ()       # `uris` and `fetch` both end up here
    shell: bool = True
    arguments: tuple[str, ...] = ()
    data_processing_job_type: bool = False  # takes task progress (POST …/task/{id}/progress)
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def is_dependent(self) -> bool:
        return self.schedule is None

    @property
    def epsilon_seconds(self) -> float:
        return _epsilon_seconds(self.epsilon)

    def parsed_schedule(self):  # -> Schedule (kept lazy: a dependent job has none)
        if self.schedule is None:
            raise ValueError(f"job {self.name} has no schedule")
        return _schedule(self.schedule, self.schedule_time_zone or None)

    def to_json(self) -> Doc:
        """Chronos's job JSON with every default filled in (no runtime counters)."""
        out: Doc = {"name": self.name, "command": self.command}
        if self.schedule is not None:
            out["schedule"] = self.schedule
            out["scheduleTimeZone"] = self.schedule_time_zone
        else:
            out["parents"] = list(self.parents)
        out.update({
            "epsilon": self.epsilon, "retries": self.retries, "owner": self.owner,
            "ownerName": self.owner_name, "description": self.description,
            "disabled": self.disabled, "concurrent": self.concurrent, "async": False,
            "executor": "", "executorFlags": "", "shell": self.shell,
            "arguments": list(self.arguments), "dataProcessingJobType":
            self.data_processing_job_type, "cpus": self.cpus, "mem": self.mem,
            "disk": self.disk,
            "environmentVariables": [{"name": k, "value": v}
                                     for k, v in self.environment_variables],
            "constraints": [list(c) for c in self.constraints],
            "uris": [f.uri for f in self.fetch], "fetch": [f.to_json() for f in self.fetch],
        })
        return out


@functools.lru_cache(maxsize=256)
def _epsilon_seconds(text: str) -> float:  # read for every job in every round
    return parse_duration(text).approx_seconds()


@functools.lru_cache(maxsize=4096)
def _schedule(text: str, time_zone: str | None):
    """A stored job's schedule, parsed once (a frozen value; the planner asks every round)."""
    return parse_schedule(text, time_zone)


def _hint(name: str) -> str:
    close = difflib.get_close_matches(name, sorted(_FIELDS | READ_ONLY_FIELDS), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _number(doc: Doc, key: str, default: float, errs: _Errors, *, minimum: float) -> float:
    value = doc.get(key, default)
    if isinstance(value, str):  # Chronos's own examples send "0.5"
        try:
            value = float(value)
        except ValueError:
            errs.add(f"/{key}", f"must be a number, got {value!r}")
            return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        errs.add(f"/{key}", f"must be a number, got {value!r}")
        return default
    if value < minimum or (minimum == 0 and key == "cpus" and value == 0):
        errs.add(f"/{key}", f"must be {'>' if key == 'cpus' else '>='} {minimum}")
    return float(value)


def _string(doc: Doc, key: str, errs: _Errors, default: str = "") -> str:
    value = doc.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        errs.add(f"/{key}", f"must be a string, got {type(value).__name__}")
        return default
    return value


def _bool(doc: Doc, key: str, default: bool, errs: _Errors) -> bool:
    value = doc.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        errs.add(f"/{key}", f"must be true or false, got {value!r}")
        return default
    return value


def _string_list(doc: Doc, key: str, errs: _Errors) -> tuple[str, ...]:
    value = doc.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        errs.add(f"/{key}", "must be a list of strings")
        return ()
    return tuple(value)


def parse_job(doc: Any, *, kind: str | None = None, now: float | None = None) -> JobSpec:
    """Validate a Chronos job; `kind` is "iso8601" or "dependency" (the endpoint it came to;
    None: whichever the document is). An empty schedule start is filled in with `now`.
    Raises JobError listing every problem."""
    errs = _Errors()
    if not isinstance(doc, dict):
        errs.add("/", f"a job must be a JSON object, got {type(doc).__name__}")
        raise JobError("Invalid job", errs.details())
    for key in sorted(doc):
        if key in _FIELDS or key in READ_ONLY_FIELDS:
            continue
        if key in _OFF_VALUES:
            if doc[key] not in _OFF_VALUES[key]:
                errs.add(f"/{key}", f"'{key}' is not supported by accessd (only "
                                    f"{_OFF_VALUES[key][0]!r})" + _WHY_OFF.get(key, ""))
            continue
        errs.add(f"/{key}", f"unknown field '{key}'{_hint(key)}")

    name = doc.get("name")
    if not isinstance(name, str) or not name.strip():
        errs.add("/name", "required: a non-empty string")
        name = ""
    elif not NAME_RE.fullmatch(name) or len(name) > MAX_NAME:
        errs.add("/name", f"may only contain letters, digits, '-', '_', '#', '.' and "
                          f"spaces, not only dots (at most {MAX_NAME} characters)")
    command = doc.get("command")
    if not isinstance(command, str) or not command.strip():
        errs.add("/command", "required: a non-empty string")
        command = ""

    has_schedule = doc.get("schedule") not in (None, "")
    has_parents = doc.get("parents") not in (None, [])
    if kind == "iso8601" and not has_schedule:
        errs.add("/schedule", "required for a scheduled job (POST /v1/scheduler/iso8601)")
    if kind == "dependency" and not has_parents:
        errs.add("/parents", "required for a dependent job (POST /v1/scheduler/dependency): "
                             "a non-empty list of job names")
    if kind is None and not has_schedule and not has_parents:
        errs.add("/schedule", "a job needs a 'schedule' or 'parents'")
    if has_schedule and has_parents:
        errs.add("/parents", "a job has either 'schedule' or 'parents', not both")

    time_zone = _string(doc, "scheduleTimeZone", errs)
    schedule: str | None = None
    if time_zone:
        try:
            tz_zone(time_zone)
        except ScheduleError as exc:
            errs.add("/scheduleTimeZone", str(exc))
    if has_schedule and kind != "dependency":
        raw = doc.get("schedule")
        try:
            parse_schedule(raw, None, now=0.0 if now is None else now)  # the form alone
            schedule = with_start(raw, now) if now is not None else raw.strip()
        except ScheduleError as exc:
            errs.add("/schedule", str(exc))

    parents: tuple[str, ...] = ()
    if has_parents and kind != "iso8601":
        parents = _string_list(doc, "parents", errs)
        if len(set(parents)) != len(parents):
            errs.add("/parents", "lists a job more than once")
        if name and name in parents:
            errs.add("/parents", f"job '{name}' cannot depend on itself")

    epsilon = _string(doc, "epsilon", errs, DEFAULT_EPSILON) or DEFAULT_EPSILON
    try:
        parse_duration(epsilon)
    except ScheduleError as exc:
        errs.add("/epsilon", str(exc))

    retries = doc.get("retries", 2)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 100:
        errs.add("/retries", f"must be an integer from 0 to 100, got {retries!r}")
        retries = 2

    cpus = _number(doc, "cpus", 0.1, errs, minimum=0)
    mem = _number(doc, "mem", 128.0, errs, minimum=0)
    disk = _number(doc, "disk", 256.0, errs, minimum=0)

    env: list[tuple[str, str]] = []
    raw_env = doc.get("environmentVariables") or []
    if not isinstance(raw_env, list):
        errs.add("/environmentVariables", "must be a list of {\"name\", \"value\"}")
        raw_env = []
    for i, item in enumerate(raw_env):
        if (not isinstance(item, dict) or not isinstance(item.get("name"), str)
                or not item.get("name") or not isinstance(item.get("value", ""), str)
                or set(item) - {"name", "value"}):
            errs.add(f"/environmentVariables/{i}", "must be {\"name\": string, \"value\": "
                                                   "string}")
            continue
        env.append((item["name"], item.get("value", "")))

    constraints: list[tuple[str, str, str]] = []
    raw_constraints = doc.get("constraints") or []
    if not isinstance(raw_constraints, list):
        errs.add("/constraints", "must be a list of [field, operator, value]")
        raw_constraints = []
    for i, c in enumerate(raw_constraints):
        if (not isinstance(c, list) or len(c) != 3 or not all(isinstance(x, str) for x in c)):
            errs.add(f"/constraints/{i}", "must be [field, operator, value] (strings)")
            continue
        fld, op, value = c[0], c[1].upper(), c[2]
        if op not in CONSTRAINT_OPERATORS:
            errs.add(f"/constraints/{i}", f"unknown operator {c[1]!r} (one of "
                                          f"{', '.join(CONSTRAINT_OPERATORS)})")
            continue
        if op in ("LIKE", "UNLIKE"):
            why = check_pattern(value)
            if why is not None:
                errs.add(f"/constraints/{i}", f"{value!r} is not a usable regular expression: "
                                              f"{why}")
                continue
        constraints.append((fld, op, value))

    uris = _string_list(doc, "uris", errs)
    fetch = parse_fetch(doc.get("fetch"), uris, errs.add)
    arguments = _string_list(doc, "arguments", errs)
    spec_kwargs = dict(
        owner=_string(doc, "owner", errs), owner_name=_string(doc, "ownerName", errs),
        description=_string(doc, "description", errs),
        disabled=_bool(doc, "disabled", False, errs),
        concurrent=_bool(doc, "concurrent", False, errs),
        shell=_bool(doc, "shell", True, errs),
        data_processing_job_type=_bool(doc, "dataProcessingJobType", False, errs))
    if errs:
        raise JobError("Invalid job definition", errs.details())
    return JobSpec(name=name, command=command, schedule=schedule,
                   schedule_time_zone=time_zone if schedule is not None else "",
                   parents=parents, epsilon=epsilon, retries=retries, cpus=cpus, mem=mem,
                   disk=disk, environment_variables=tuple(env), constraints=tuple(constraints),
                   uris=tuple(f.uri for f in fetch), fetch=fetch, arguments=arguments,
                   **spec_kwargs)


def find_cycle(parents_of: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A dependency cycle as a path (`[a, b, a]`), or None. Iterative DFS (deep chains must
    not hit the recursion limit)."""
    color: dict[str, int] = {}
    for root in sorted(parents_of):
        if color.get(root):
            continue
        stack: list[tuple[str, list[str]]] = [(root, sorted(parents_of.get(root, ())))]
        path = [root]
        color[root] = 1
        while stack:
            node, todo = stack[-1]
            if not todo:
                color[node] = 2
                stack.pop()
                path.pop()
                continue
            nxt = todo.pop()
            if color.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if not color.get(nxt) and nxt in parents_of:
                color[nxt] = 1
                path.append(nxt)
                stack.append((nxt, sorted(parents_of.get(nxt, ()))))
    return None


def check_graph(jobs: Mapping[str, JobSpec], changed: str | None = None) -> list[dict[str, Any]]:
    """Problems of the whole set of jobs (in JobError `details` form): parents that do not
    exist, and a dependency cycle. `changed` names the job being written (its problems are
    reported at its own paths)."""
    errs = _Errors()
    for name in sorted(jobs):
        if changed is not None and name != changed:
            continue
        for parent in jobs[name].parents:
            if parent not in jobs:
                errs.add("/parents", f"unknown parent job '{parent}'")
    cycle = find_cycle({n: j.parents for n, j in jobs.items()})
    if cycle:
        errs.add("/parents", "dependency cycle: " + " -> ".join(reversed(cycle)))
    return errs.details()


def children_of(jobs: Mapping[str, JobSpec], name: str) -> list[str]:
    return sorted(n for n, j in jobs.items() if name in j.parents)


def job_json(spec: JobSpec, status: Mapping[str, Any] | None) -> Doc:
    """The job as Chronos returns it: the definition plus its counters."""
    out = spec.to_json()
    status = status or {}
    out.update({"successCount": int(status.get("successCount", 0)),
                "errorCount": int(status.get("errorCount", 0)),
                "lastSuccess": status.get("lastSuccess") or "",
                "lastError": status.get("lastError") or "",
                "errorsSinceLastSuccess": int(status.get("errorsSinceLastSuccess", 0)),
                "softError": False})
    return out
