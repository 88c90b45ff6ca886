"""Job planning: what to record, launch and kill this round; what a task status means for a run.

Pure: plain documents and `now` in, documents out; nothing is mutated.

Run document (one per attempt, keyed by its Mesos task id; `scheduler.jobs.sqlite_jobs`):
`{"id", "job", "trigger": "schedule"|"dependency"|"manual", "scheduledAt" (the slot's instant,
the parents' success, or the request's time), "slot" (schedule slot index | null), "attempt"
(0 = first try), "state": "queued"|"staging"|"running"|"succeeded"|"failed"|"killed"|"skipped",
"active", "createdAt", "stagedAt", "startedAt", "finishedAt", "exitCode", "message",
"taskState", "agentId", "host", "killRequested", "skippedCount" (skipped records)}`.

Status document (one per job, written by the scheduler only): Chronos's counters
(`successCount`, `errorCount`, `lastSuccess`, `lastError`, `errorsSinceLastSuccess`) and the
cursors: `scheduleKey` (the schedule it was computed for), `nextSlot` (first slot not yet
handled), `parentsSeenAt` (parent successes up to this time are used up), plus `lastRunState`.

Invariants:
- exactly once per slot: a slot becomes a run (or a skipped record) in the same transaction
  (`Record`) that moves the job's `nextSlot` past it, and that transaction happens before the
  run's task is launched; a restarted scheduler continues from the stored cursor;
- a job whose schedule changed starts from the first slot at or after its new version time
  minus epsilon; earlier slots of the new schedule are never recorded;
- a non-concurrent job has at most one active run from its schedule or parents; a due slot
  waits for it (and is skipped once older than epsilon);
- a dependent job runs once all its parents have succeeded since its own last trigger
  (`parentsSeenAt`, initially its version time);
- `disabled` jobs run nothing from schedule or parents (the cursors move on silently); a
  manual run (`PUT /v1/scheduler/job/{name}`) is an explicit order and runs anyway;
- a failed attempt is retried (a new queued run, attempt + 1) until `retries` retries were
  made; only the last failure counts in `errorCount`; a requested kill is never retried.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from scheduler.jobs.schedule import due
from scheduler.jobs.spec import JobError, JobSpec, parse_job

Doc = dict[str, Any]
log = logging.getLogger("accessd.scheduler.jobs")

ACTIVE_STATES = frozenset({"queued", "staging", "running"})
SUCCESS_TASK_STATES = frozenset({"TASK_FINISHED"})
KILLED_TASK_STATES = frozenset({"TASK_KILLED"})
FAILED_TASK_STATES = frozenset({"TASK_FAILED", "TASK_ERROR", "TASK_LOST", "TASK_DROPPED",
                                "TASK_GONE", "TASK_GONE_BY_OPERATOR", "TASK_UNREACHABLE",
                                "TASK_UNKNOWN"})
# Reconciliation answers that mean "this task does not run anywhere": TASK_GONE (partition-
# aware: the agent is registered and does not have it), TASK_LOST (not partition-aware), and
# TASK_DROPPED. TASK_UNKNOWN (the master does not know the agent) and TASK_UNREACHABLE may
# still run: a failure (retried, as Chronos and Marathon's default do), never "not launched".
NEVER_LAUNCHED_STATES = frozenset({"TASK_LOST", "TASK_DROPPED", "TASK_GONE"})
HISTORY_KEPT = 100
_EXIT_RE = re.compile(r"(?:exited with status|exit status|exit code)\D*(-?\d+)", re.I)


def iso(epoch: float) -> str:
    dt = datetime.fromtimestamp(epoch, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def epoch(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class Job:
    """A stored job: its parsed definition and the time of its last change."""

    spec: JobSpec
    version: float


def load_jobs(docs: list[Doc], cache: dict[str, tuple[Doc, Job]] | None = None
              ) -> dict[str, Job]:
    """Stored job documents as `plan.Job`s (an unparsable one is logged and left out).
    `cache` (name -> (document, job)) spares re-parsing documents that did not change."""
    jobs: dict[str, Job] = {}
    for doc in docs:
        hit = cache.get(doc.get("name", "")) if cache is not None else None
        if hit is not None and hit[0] == doc:
            jobs[hit[1].spec.name] = hit[1]
            continue
        body = {k: v for k, v in doc.items() if k != "version"}
        try:
            spec = parse_job(body)
        except JobError as exc:
            log.error("stored job %s is invalid, not scheduled: %s", doc.get("name"), exc)
            continue
        jobs[spec.name] = Job(spec, epoch(doc.get("version")) or 0.0)
        if cache is not None:
            cache[spec.name] = (doc, jobs[spec.name])
    if cache is not None:
        for name in set(cache) - set(jobs):
            del cache[name]
    return jobs


@dataclass(frozen=True)
class Record:
    """One transaction: status documents, run documents, requests consumed."""

    statuses: tuple[Doc, ...] = ()
    runs: tuple[Doc, ...] = ()
    done_requests: tuple[int, ...] = ()
    deleted_runs: tuple[str, ...] = ()   # run ids to delete (a deleted job's queued runs)
    # the status documents this was computed from (name -> document | None): the write must
    # find exactly these, or another scheduler got there first
    expect: tuple[tuple[str, Doc | None], ...] = ()


@dataclass(frozen=True)
class RoundPlan:
    records: tuple[Record, ...] = ()
    kills: tuple[str, ...] = ()          # task ids to kill now
    log: tuple[str, ...] = field(default=(), compare=False)


def empty_status(name: str) -> Doc:
    return {"name": name, "successCount": 0, "errorCount": 0, "lastSuccess": None,
            "lastError": None, "errorsSinceLastSuccess": 0, "scheduleKey": None,
            "nextSlot": 0, "parentsSeenAt": None, "lastRunState": None}


def task_id(name: str, scheduled: float, attempt: int, suffix: str = "") -> str:
    """Chronos's shape: `ct:<scheduled ms>:<attempt>:<job name>:<suffix>` (whitespace in
    the name becomes `_`: Mesos ids must not contain it)."""
    safe = re.sub(r"\s", "_", name)
    return f"ct:{int(round(scheduled * 1000))}:{attempt}:{safe}:{suffix}"


def new_run(name: str, trigger: str, scheduled: float, now: float, *, slot: int | None = None,
            attempt: int = 0, suffix: str = "") -> Doc:
    return {"id": task_id(name, scheduled, attempt, suffix), "job": name, "trigger": trigger,
            "scheduledAt": iso(scheduled), "slot": slot, "attempt": attempt, "state": "queued",
            "active": True, "createdAt": iso(now), "stagedAt": None, "startedAt": None,
            "finishedAt": None, "exitCode": None, "message": None, "taskState": None,
            "agentId": None, "host": None, "killRequested": False}


def schedule_key(spec: JobSpec) -> str | None:
    return None if spec.schedule is None else f"{spec.schedule}|{spec.schedule_time_zone}"


def _skipped(name: str, schedule, first: int, last: int, count: int, now: float) -> Doc:
    at = schedule.instant(first)
    doc = new_run(name, "schedule", at, now, slot=first, suffix="skipped")
    doc.update(state="skipped", active=False, skippedCount=count, finishedAt=iso(now),
               lastSkippedAt=iso(schedule.instant(last)),
               message=f"{count} slot(s) older than epsilon skipped")
    return doc


def _plan_schedule(job: Job, status: Doc, busy: bool, now: float
                   ) -> tuple[Doc, list[Doc], list[str]]:
    spec = job.spec
    schedule = spec.parsed_schedule()
    eps = spec.epsilon_seconds
    key = schedule_key(spec)
    notes: list[str] = []
    if status.get("scheduleKey") != key:
        # a new or changed schedule starts at its version time (minus epsilon)
        status = dict(status, scheduleKey=key,
                      nextSlot=schedule.first_slot_after(job.version - eps - 1e-3))
    cursor = int(status.get("nextSlot") or 0)
    if spec.disabled:
        passed = schedule.first_slot_after(now)
        if schedule.repetitions is not None:
            passed = min(passed, schedule.repetitions)
        return (dict(status, nextSlot=max(cursor, passed)), [], notes)
    decision = due(schedule, cursor, now, eps)
    runs: list[Doc] = []
    if decision.skipped:
        first, last, count = decision.skipped
        runs.append(_skipped(spec.name, schedule, first, last, count, now))
        notes.append(f"job {spec.name}: {count} slot(s) from {iso(schedule.instant(first))} "
                     f"skipped (older than epsilon {spec.epsilon})")
    next_slot = decision.next_slot
    if decision.run is not None:
        if busy:  # a run of this job is still active: the slot waits (until epsilon)
            next_slot = decision.run
        else:
            at = schedule.instant(decision.run)
            runs.append(new_run(spec.name, "schedule", at, now, slot=decision.run))
            late = now - at
            notes.append(f"job {spec.name}: slot {iso(at)} recorded"
                         + (f" ({late:.3f}s late)" if late > 1 else ""))
    return dict(status, nextSlot=next_slot), runs, notes


def _plan_dependency(job: Job, status: Doc, statuses: Mapping[str, Doc], busy: bool,
                     now: float) -> tuple[Doc, list[Doc], list[str]]:
    spec = job.spec
    seen = epoch(status.get("parentsSeenAt"))
    if seen is None:
        seen = job.version
    successes = [epoch((statuses.get(p) or {}).get("lastSuccess")) for p in spec.parents]
    if not successes or any(s is None or s <= seen for s in successes):
        return status, [], []
    trigger = max(s for s in successes if s is not None)
    if spec.disabled:
        return dict(status, parentsSeenAt=iso(trigger)), [], []
    if busy:
        return status, [], []
    run = new_run(spec.name, "dependency", trigger, now, suffix="dep")
    return (dict(status, parentsSeenAt=iso(trigger)), [run],
            [f"job {spec.name}: all parents ({', '.join(spec.parents)}) succeeded; run "
             "recorded"])


def plan_round(jobs: Mapping[str, Job], statuses: Mapping[str, Doc],
               active_runs: Iterable[Doc], requests: Iterable[Doc], now: float,
               recent: Mapping[str, list[Doc]] | None = None) -> RoundPlan:
    """Everything this round decides, as transactions to apply in order, then kills.
    `recent`: finished runs by job, for progress reports on runs that already ended."""
    recent = recent or {}
    active = [r for r in active_runs if r.get("active")]
    by_job: dict[str, list[Doc]] = {}
    for r in active:
        by_job.setdefault(r["job"], []).append(r)
    pending: dict[str, list[Doc]] = {}
    records: list[Record] = []
    kills: list[str] = []
    notes: list[str] = []
    for req in requests:
        if req.get("job") in jobs:
            pending.setdefault(req["job"], []).append(req)
        else:  # the job is gone: the request with it
            records.append(Record(done_requests=(int(req["seq"]),)))

    # parents' statuses as this round leaves them are not needed: a success is recorded by a
    # status update, never by planning, so `statuses` is current for the dependency check
    for name in sorted(jobs):
        job = jobs[name]
        old = statuses.get(name) or empty_status(name)
        mine = by_job.get(name, [])
        busy = bool(mine) and not job.spec.concurrent
        if job.spec.is_dependent:
            status, runs, n = _plan_dependency(job, old, statuses, busy, now)
        else:
            status, runs, n = _plan_schedule(job, old, busy, now)
        notes += n
        done: list[int] = []
        for req in pending.get(name, []):
            done.append(int(req["seq"]))
            if req.get("action") == "run":
                at = epoch(req.get("requestedAt")) or now
                run = new_run(name, "manual", at, now, suffix=f"m{req['seq']}")
                if req.get("arguments"):  # PUT …/job/{name}?arguments=: this run's only
                    run["arguments"] = str(req["arguments"])
                runs.append(run)
                notes.append(f"job {name}: run requested at {req.get('requestedAt')}")
            elif req.get("action") == "success":  # PUT …/job/success/{name}
                status = mark_success(status, req.get("requestedAt") or iso(now))
                notes.append(f"job {name}: marked successful ({req.get('requestedAt')})")
            elif req.get("action") == "progress":
                runs += [dict(r, numElementsProcessed=int(r.get("numElementsProcessed") or 0)
                              + int(req.get("count") or 0))
                         for r in _find_run(req.get("taskId"), mine, recent.get(name, []))]
            elif req.get("action") == "kill":
                for r in mine:
                    runs.append(_kill_run(r, now))
                    if r["state"] != "queued":
                        kills.append(r["id"])
                notes.append(f"job {name}: kill of {len(mine)} active run(s) requested")
        if status != old or runs or done:
            if runs and runs[-1]["state"] == "queued":
                status = dict(status, lastRunState="queued")
            records.append(Record(statuses=(status,), runs=tuple(runs),
                                  done_requests=tuple(done),
                                  expect=((name, statuses.get(name)),)))

    for name, runs in sorted(by_job.items()):
        if name in jobs:
            continue
        # the job was deleted: its runs end too, and leave no history (a queued one goes
        # now; a launched one is killed and goes with its last update)
        records.append(Record(runs=tuple(_kill_run(r, now) for r in runs
                                         if r["state"] != "queued"),
                              deleted_runs=tuple(r["id"] for r in runs
                                                 if r["state"] == "queued")))
        kills += [r["id"] for r in runs if r["state"] != "queued"]
        notes.append(f"job {name} deleted: killing {len(runs)} active run(s)")
    return RoundPlan(tuple(records), tuple(dict.fromkeys(kills)), tuple(notes))


def mark_success(status: Doc, at: str) -> Doc:
    """Chronos's "mark job successful": counted as a success now, so its dependents run."""
    return dict(status, successCount=int(status.get("successCount") or 0) + 1, lastSuccess=at,
                errorsSinceLastSuccess=0, lastRunState="succeeded")


def _find_run(task_id: Any, *pools: list[Doc]) -> list[Doc]:
    for pool in pools:
        for run in pool:
            if run["id"] == task_id:
                return [run]
    return []  # not kept (any more): the progress has nothing to add to


def _kill_run(run: Doc, now: float) -> Doc:
    if run["state"] == "queued":  # never launched: ends here
        return dict(run, state="killed", active=False, killRequested=True,
                    finishedAt=iso(now), message="killed before launch")
    return dict(run, killRequested=True)


def exit_code(message: str | None, state: str) -> int | None:
    if state == "TASK_FINISHED":
        return 0
    m = _EXIT_RE.search(message or "")
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class StatusOutcome:
    run: Doc
    status: Doc | None        # the job's status document, when it changed
    retry: Doc | None         # the next attempt, queued
    note: str


def apply_task_status(run: Doc, job_status: Doc | None, spec: JobSpec | None,
                      update: Mapping[str, Any], now: float) -> StatusOutcome:
    """What a Mesos status update means for `run` (and its job's status)."""
    state = str(update.get("state", ""))
    reason = str(update.get("reason", ""))
    message = update.get("message") or None
    run = dict(run, taskState=state)
    if update.get("agent_id"):
        run["agentId"] = (update["agent_id"] or {}).get("value") or run.get("agentId")
    status = dict(job_status) if job_status else None
    if state in ("TASK_STAGING", "TASK_STARTING"):
        return StatusOutcome(run, None, None, "")
    if state == "TASK_RUNNING":
        if run.get("startedAt") is None:
            run["startedAt"] = iso(now)
        run["state"] = "running"
        return StatusOutcome(run, None, None, f"run {run['id']} running")
    if state == "TASK_KILLING":
        return StatusOutcome(run, None, None, "")
    unreachable = "unreachable_time" in update or "unreachable" in str(message or "").lower()
    if (state in NEVER_LAUNCHED_STATES and reason == "REASON_RECONCILIATION"
            and not unreachable and run.get("startedAt") is None
            and not run.get("killRequested")):
        # The master never heard of it: the scheduler died between recording the launch and
        # the ACCEPT reaching the master. The slot is still owed: queue the same attempt.
        run.update(state="queued", stagedAt=None, agentId=None, host=None)
        return StatusOutcome(run, None, None,
                             f"run {run['id']} was never launched; queued again")
    if run.get("state") not in ACTIVE_STATES:
        return StatusOutcome(run, None, None, "")  # a late duplicate of a final update
    run.update(active=False, finishedAt=iso(now), message=message,
               exitCode=exit_code(message, state))
    if status is None or spec is None:  # the job was deleted meanwhile
        run["state"] = "killed" if run.get("killRequested") else (
            "succeeded" if state in SUCCESS_TASK_STATES else "failed")
        return StatusOutcome(run, None, None, f"run {run['id']} ended ({state})")
    if state in SUCCESS_TASK_STATES:
        run["state"] = "succeeded"
        status.update(successCount=int(status.get("successCount", 0)) + 1,
                      lastSuccess=iso(now), errorsSinceLastSuccess=0, lastRunState="succeeded")
        return StatusOutcome(run, status, None, f"run {run['id']} succeeded")
    if run.get("killRequested"):
        run["state"] = "killed"
        status.update(lastRunState="killed")
        return StatusOutcome(run, status, None, f"run {run['id']} killed")
    run["state"] = "failed"
    attempt = int(run.get("attempt", 0))
    if attempt < spec.retries:
        retry = new_run(spec.name, run["trigger"], epoch(run["scheduledAt"]) or now, now,
                        slot=run.get("slot"), attempt=attempt + 1,
                        suffix=run["id"].rsplit(":", 1)[-1])
        if run.get("arguments"):  # a manual run's arguments go with each of its attempts
            retry["arguments"] = run["arguments"]
        status.update(lastRunState="retrying")
        return StatusOutcome(run, status, retry,
                             f"run {run['id']} failed ({state}); retry {attempt + 1} of "
                             f"{spec.retries}")
    status.update(errorCount=int(status.get("errorCount", 0)) + 1, lastError=iso(now),
                  errorsSinceLastSuccess=int(status.get("errorsSinceLastSuccess", 0)) + 1,
                  lastRunState="failed")
    return StatusOutcome(run, status, None,
                         f"run {run['id']} failed ({state}) after {attempt + 1} attempt(s)")


def next_due(jobs: Mapping[str, Job], statuses: Mapping[str, Doc],
             active_runs: Iterable[Doc], now: float) -> tuple[float, float]:
    """When a round next has a slot to record: the earliest next slot of a scheduled job
    without an active run (a job with one waits for it to end: its end wakes the round), and
    the earliest of any scheduled job; inf for none. A slot exactly at its instant is due
    (`schedule.due`)."""
    busy = {r["job"] for r in active_runs if r.get("active")}
    idle_at = any_at = float("inf")
    for name, job in jobs.items():
        spec = job.spec
        if spec.is_dependent or spec.disabled:
            continue
        nxt = _next_instant(job, statuses.get(name), now)
        if nxt is None:
            continue
        any_at = min(any_at, nxt)
        if name not in busy or spec.concurrent:
            idle_at = min(idle_at, nxt)
    return idle_at, any_at


def _next_instant(job: Job, status: Doc | None, now: float) -> float | None:
    """`next_run_at`, read straight from the cursor when it is current (every round calls
    this for every job)."""
    spec = job.spec
    if status is not None and status.get("scheduleKey") == schedule_key(spec):
        schedule = spec.parsed_schedule()
        cursor = int(status.get("nextSlot") or 0)
        if not schedule.has_slot(cursor):
            return None
        at = schedule.instant(cursor)
        if at > now - spec.epsilon_seconds:  # not past epsilon: the cursor's slot is next
            return at
    return next_run_at(job, status, now)


def next_run_at(job: Job, status: Doc | None, now: float) -> float | None:
    """When the job's next scheduled slot is (None: dependent, disabled, or exhausted)."""
    spec = job.spec
    if spec.schedule is None or spec.disabled:
        return None
    schedule = spec.parsed_schedule()
    cursor = int((status or {}).get("nextSlot") or 0)
    if (status or {}).get("scheduleKey") != schedule_key(spec):
        cursor = schedule.first_slot_after(job.version - spec.epsilon_seconds - 1e-3)
    n = max(cursor, schedule.first_slot_after(now - spec.epsilon_seconds))
    return schedule.instant(n) if schedule.has_slot(n) else None
