"""The jobs' part of the scheduler's worker round (the shell around `scheduler.jobs.plan`).

The framework's `Worker` owns the thread, the driver and the offers; it calls, from its one
worker thread:
- `tick(now)` every tick: reads jobs, statuses, active runs and requests, plans
  (`plan.plan_round`), applies each decision in one store transaction, then sends kills;
  returns True when new runs wait for offers (the worker then REVIVEs);
- `next_round_at()`: when the next round is wanted sooner than the worker's tick (a job's next
  slot falls due, a run of a non-concurrent job ended while its next slot waits): the worker
  ticks then, so a slot is recorded within a few ms of its instant instead of up to a tick
  period after it;
- `demand()`: the queued runs as placement demand keys (for REVIVE/SUPPRESS);
- `launch_requests()` / `prepare_launch(launch, now)` / `store_launches()`: queued runs join
  the apps' placement; the placed runs are stored as `staging` (task id, agent), in one
  transaction, before the worker sends any ACCEPT;
- `on_status_batch(statuses, now)`: the job runs' updates among them, stored in one
  transaction before the worker acknowledges them; a failure with retries left stores the
  next attempt in the same write;
- `active_runs()`: runs to reconcile on (re)subscription.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from scheduler.jobs import plan as jobplan
from scheduler.jobs.documents import JobsChanged
from scheduler.jobs.plan import load_jobs
from scheduler.jobs.spec import JobSpec
from scheduler.jobs.tasks import run_app, task_info
from scheduler.state import NotLeader, StoreUnavailable

log = logging.getLogger("accessd.scheduler.jobs")

Doc = dict[str, Any]
KILL_RETRY_SECONDS = 10.0
PRUNE_EVERY_SECONDS = 60.0
PRUNE_JOBS_PER_TICK = 5  # a pass over the histories is spread over ticks: no round stalls
STAGING_RECONCILE_SECONDS = 30.0  # ask the master about a run stuck in staging this long


def active_after(active: list[Doc], records: tuple[jobplan.Record, ...]) -> list[Doc]:
    """`active` (newest first) with the records' runs applied: what listing the store's active
    runs again would give (new runs come first, as the store lists them), without decoding
    them all again."""
    runs = {r["id"]: r for r in active}
    new: list[Doc] = []
    for record in records:
        for run in record.runs:
            if run["id"] not in runs:
                new.append(run)
            runs[run["id"]] = run
        for run_id in record.deleted_runs:
            runs.pop(run_id, None)
    order = [r["id"] for r in reversed(new)] + [r["id"] for r in active]
    return [runs[i] for i in dict.fromkeys(order) if i in runs and runs[i].get("active")]


class JobRunner:
    def __init__(self, store: Any, driver: Any) -> None:
        self.store = store
        self.driver = driver
        self.jobs: dict[str, jobplan.Job] = {}
        self.jobs_revision: int | None = None  # the revision `jobs` was loaded at
        self.parsed: dict[str, tuple[Doc, jobplan.Job]] = {}
        self.staged: list[Doc] = []
        self.asked_about: set[str] = set()
        # A store without job documents (neither SQLite nor ZooKeeper) leaves jobs off.
        self.enabled = all(hasattr(store, m) for m in ("list_jobs", "record_jobs",
                                                       "list_job_runs"))
        if not self.enabled:
            log.warning("the state store keeps no job documents: jobs are off")
        self.queued: list[Doc] = []
        self.kill_sent: dict[str, float] = {}
        self.last_prune = 0.0
        self.to_prune: list[str] = []  # the jobs the current pruning pass has still to do
        self.due_at = float("inf")   # clock time the next idle job's slot falls due
        self.next_slot_at = float("inf")  # the next slot of any job, idle or not
        # staged runs whose ACCEPT a sender thread has still to deliver: not reconciled yet
        # (set from the worker, emptied from sender threads: single set operations)
        self.accepting: set[str] = set()

    # -- the round -------------------------------------------------------------------------------
    def tick(self, now: float) -> bool:
        """The jobs' round; True when new runs wait for offers. An error is logged and the
        round retried next tick: it must not cost the apps their round."""
        if not self.enabled:
            return False
        try:
            return self._tick(now)
        except (NotLeader, StoreUnavailable) as exc:
            # ZooKeeper: deposed (the election loop stops us) or no quorum; nothing was
            # recorded, so nothing is launched or killed
            log.warning("jobs round: the state store refused a write: %s", exc)
            return False
        except Exception:
            log.exception("jobs round failed; retrying next tick")
            return False

    def _tick(self, now: float) -> bool:
        revision = self.store.jobs_revision()
        if revision != self.jobs_revision:  # every definition write moves the revision
            self.jobs = load_jobs(self.store.list_jobs(), self.parsed)
            self.jobs_revision = revision
        active = self.store.list_job_runs(active=True)
        requests = self.store.pending_job_actions()
        recent = {q["job"]: self.store.list_job_runs(q["job"], limit=jobplan.HISTORY_KEPT)
                  for q in requests if q.get("action") == "progress"}
        statuses = self.store.list_job_status()
        result = jobplan.plan_round(self.jobs, statuses, active, requests, now, recent)
        for note in result.log:
            log.info("%s", note)
        if result.records:  # one transaction, stored before anything is launched or killed
            try:
                self.store.record_jobs(
                    statuses=[s for r in result.records for s in r.statuses],
                    runs=[run for r in result.records for run in r.runs],
                    done_requests=[q for r in result.records for q in r.done_requests],
                    expect_statuses=dict(e for r in result.records for e in r.expect),
                    delete_runs=[i for r in result.records for i in r.deleted_runs])
            except JobsChanged:
                log.warning("the job statuses changed under this round (another scheduler?); "
                            "planning again next tick")
                return False
        for task_id in result.kills:
            self._kill(task_id)
        if result.records:  # the active runs as this round's writes left them
            active = active_after(active, result.records)
        self._retry_kills(active)
        stuck = [r for r in active if r["state"] == "staging" and r["id"] not in self.asked_about
                 and r["id"] not in self.accepting
                 and now - (jobplan.epoch(r.get("stagedAt")) or now) > STAGING_RECONCILE_SECONDS]
        if stuck:  # once each: the answer (or its absence) is handled like any update
            self.asked_about.update(r["id"] for r in stuck)
            self.driver.reconcileTasks([{"task_id": {"value": r["id"]}} for r in stuck])
        before = {r["id"] for r in self.queued}
        self.queued = sorted((r for r in active if r["state"] == "queued"),
                             key=lambda r: (r["scheduledAt"], r["id"]))
        after = dict(statuses)  # as this round left them
        for record in result.records:
            after.update((s["name"], s) for s in record.statuses)
        self.due_at, self.next_slot_at = jobplan.next_due(self.jobs, after, active, now)
        self._prune()
        return any(r["id"] not in before for r in self.queued)

    def next_round_at(self) -> float:
        """Clock time a jobs round is wanted (inf: none before the worker's next tick)."""
        return self.due_at

    def _prune(self) -> None:
        """Keep each job's newest `HISTORY_KEPT` finished runs: a pass over every job every
        `PRUNE_EVERY_SECONDS`, `PRUNE_JOBS_PER_TICK` of them a tick, in one transaction
        (a hundred jobs pruned in one round held that round's launches back ~1.5 s)."""
        if not self.to_prune and time.monotonic() - self.last_prune > PRUNE_EVERY_SECONDS:
            self.last_prune = time.monotonic()
            self.to_prune = sorted(self.jobs)
        if self.to_prune:
            batch = self.to_prune[:PRUNE_JOBS_PER_TICK]
            del self.to_prune[:PRUNE_JOBS_PER_TICK]
            self.store.prune_job_runs(batch, jobplan.HISTORY_KEPT)

    def _kill(self, task_id: str) -> None:
        log.info("killing job task %s", task_id)
        self.kill_sent[task_id] = time.monotonic()
        self.driver.killTask({"value": task_id})

    def _retry_kills(self, active: list[Doc]) -> None:
        mono = time.monotonic()
        for run in active:
            if run.get("killRequested") and run["state"] != "queued":
                sent = self.kill_sent.get(run["id"])
                if sent is None or mono - sent > KILL_RETRY_SECONDS:
                    self._kill(run["id"])

    # -- offers ----------------------------------------------------------------------------------
    def demand(self) -> dict[str, int]:
        if not self.enabled:
            return {}
        return {"job:" + r["id"]: 1 for r in self.queued if r["job"] in self.jobs}

    def launch_requests(self) -> list[Any]:
        from scheduler.placement import LaunchRequest

        if not self.enabled:
            return []
        return [LaunchRequest(app=run_app(r, self.jobs[r["job"]].spec), count=1)
                for r in self.queued if r["job"] in self.jobs]

    def is_run(self, app_id: str) -> bool:
        return any(r["id"] == app_id for r in self.queued)

    def prepare_launch(self, launch: Any, now: float) -> Doc:
        """The run's TaskInfo; the run, now staging on its agent, is stored by
        `store_launches()`, which the caller calls before sending any ACCEPT."""
        run = next(r for r in self.queued if r["id"] == launch.app_id)
        spec: JobSpec = self.jobs[run["job"]].spec
        staged = dict(run, state="staging", stagedAt=jobplan.iso(now), agentId=launch.agent_id,
                      host=launch.hostname)
        self.staged.append(staged)
        self.queued = [r for r in self.queued if r["id"] != run["id"]]
        return task_info(launch, staged, spec)

    def store_launches(self) -> None:
        """Store the runs `prepare_launch` placed, in one transaction (before the ACCEPTs)."""
        if self.staged:
            staged, self.staged = self.staged, []
            self.store.record_jobs(runs=staged)
            for run in staged:  # logged once stored (a deposed leader's write is refused)
                late = (jobplan.epoch(run["stagedAt"]) or 0) - (
                    jobplan.epoch(run["scheduledAt"]) or 0)
                log.info("launching job %s run %s on %s (%.3fs after its time)", run["job"],
                         run["id"], run["host"], late)

    def launch_failed(self, task_id: str) -> None:
        """The ACCEPT did not go out: the run waits for the next offer."""
        run = self.store.get_job_run(task_id)
        if run is not None and run.get("state") == "staging":
            self.store.record_jobs(runs=[dict(run, state="queued", stagedAt=None)])

    # -- status updates --------------------------------------------------------------------------
    def on_status(self, status: Doc, now: float) -> bool:
        """True if the update was a job run's (stored now; the caller acknowledges it)."""
        return bool(self.on_status_batch([status], now))

    def on_status_batch(self, statuses: list[Doc], now: float) -> list[Doc]:
        """The job runs' updates among `statuses`, in order, each applied to the run and job
        status the one before it left, stored in one transaction; returns them, for the
        caller to acknowledge now that they are stored (the others are not job runs').
        A write refused because a job changed meanwhile (deleted) is computed again once."""
        if not self.enabled:
            return []
        try:
            return self._status_batch(statuses, now)
        except JobsChanged:
            log.info("a job changed under a batch of its runs' updates; applying it again")
            return self._status_batch(statuses, now)

    def _status_batch(self, statuses: list[Doc], now: float) -> list[Doc]:
        runs: dict[str, Doc] = {}                 # the runs as this batch leaves them
        job_status: dict[str, Doc | None] = {}
        read: dict[str, Doc | None] = {}          # the statuses as stored (the write's check)
        gone: set[str] = set()                    # ended runs of deleted jobs: deleted
        changed: dict[str, Doc] = {}
        handled, notes = [], []
        for status in statuses:
            task_id = ((status.get("task_id") or {}).get("value")) or ""
            if not task_id.startswith("ct:"):
                continue
            run = runs.get(task_id) or self.store.get_job_run(task_id)
            if run is None:
                continue  # not ours (any more): the worker treats it as an unknown task
            name = run["job"]
            if name not in job_status:
                job_status[name] = read[name] = self.store.get_job_status(name)
            deleted = job_status[name] is None and self.store.get_job(name) is None
            spec = None if deleted else self._spec(name)
            outcome = jobplan.apply_task_status(run, job_status[name], spec, status, now)
            runs[task_id] = outcome.run
            if deleted and not outcome.run.get("active"):
                gone.add(task_id)  # its job was deleted: no history is kept of it
            if outcome.retry:
                runs[outcome.retry["id"]] = outcome.retry
            if outcome.status:
                job_status[name] = changed[name] = outcome.status
            if outcome.note:
                notes.append(f"job {name}: {outcome.note}")
            handled.append(status)
        if not handled:
            return []
        self.store.record_jobs(
            statuses=list(changed.values()),
            runs=[r for i, r in runs.items() if i not in gone], delete_runs=sorted(gone),
            expect_statuses={name: read[name] for name in changed})
        for note in notes:
            log.info("%s", note)
        for task_id, run in runs.items():
            if not run.get("active"):
                self.kill_sent.pop(task_id, None)
                # a non-concurrent job's next slot may be waiting for this run, and a
                # dependent job for this success: the next round is wanted now
                self.due_at = min(self.due_at, now)
        return handled

    def _spec(self, name: str) -> JobSpec | None:
        job = self.jobs.get(name)
        if job is None:  # not loaded yet (an update before the first round) or deleted
            doc = self.store.get_job(name)
            job = load_jobs([doc]).get(name) if doc else None
        return job.spec if job else None

    def active_runs(self) -> list[Doc]:
        if not self.enabled:
            return []
        accepting = set(self.accepting)
        return [r for r in self.store.list_job_runs(active=True)
                if r["state"] in ("staging", "running") and r["id"] not in accepting]
