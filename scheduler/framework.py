"""The pymesos glue: a `Scheduler` whose callbacks only enqueue, and one worker thread that
owns every decision and every store write.

Why this shape: pymesos runs every callback on its single I/O thread, and a callback that raises
closes the connection; a slow callback delays heartbeats. So callbacks put `(kind, payload)` on a
queue and return; the worker handles events in order and, between them, runs a periodic round
(poll the store's desired generation and kill requests, carry out delay resets, plan, kill,
SUPPRESS/REVIVE, advance deployments, write app status).

Invariants:
- the framework id is written to the store before anything else is done for a subscription,
  and the driver is always stopped with `failover=True` (pymesos would TEARDOWN otherwise);
- a status update is stored (task document, events, backoff) before it is acknowledged: if the
  scheduler dies in between, the agent resends the update;
- a task document (TASK_STAGING) is stored before its ACCEPT is sent, so a crash never leaves a
  task on the cluster that the store does not know (the reverse, a document for a task that
  never launched, is found by explicit reconciliation and answered TASK_LOST/UNKNOWN);
- on (re)subscription every known task is reconciled explicitly, then implicitly; a running
  task the store does not know (an update for an unknown task) is killed;
- app runtime statuses are written by this worker alone; the API's delay reset is a request the
  worker folds into the status and consumes in the same store write, so no write of an older
  status can undo it;
- every offer is either accepted or declined with a `refuse_seconds` filter; offers are
  suppressed while nothing waits to launch and revived when demand appears or grows.
"""

from __future__ import annotations

import http.client
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from scheduler import backoff, drain, reconcile, status_batch, taskstate
from scheduler.callbacks import AccessdScheduler, _value
from scheduler.held_offers import HeldOffers
from scheduler.jobs.runner import JobRunner
from scheduler.offer_round import OfferRound
from scheduler.periodic_round import PeriodicRound, spec_or_none
from scheduler.spec import format_time
from scheduler.state import NotLeader, StateStore, StoreUnavailable

__all__ = ["AccessdScheduler", "Worker", "TICK_SECONDS"]

log = logging.getLogger("accessd.scheduler")

Doc = dict[str, Any]

TICK_SECONDS = 0.25              # API writes take effect within about this (plus a plan)
# A job slot falling due (or a job run ending) brings the next tick forward, but never closer
# than this to the previous one: 100 jobs spread over a second make one round every 50 ms, not
# one for each slot.
JOBS_TICK_GAP_SECONDS = 0.05


class Worker(OfferRound, PeriodicRound):
    """Owns the decisions. `driver` is anything with pymesos's SchedulerDriver methods."""

    def __init__(self, store: StateStore, driver: Any, work: queue.Queue, *, role: str = "*",
                 refuse_seconds: float = 5.0, executor_python: str = "python3",
                 clock: Callable[[], float] = time.time,
                 on_fatal: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.driver = driver
        self.work = work
        self.role = role
        self.refuse_seconds = refuse_seconds
        self.executor_python = executor_python
        self.clock = clock
        self.on_fatal = on_fatal or (lambda message: None)
        self.subscribed = False
        self.suppressed = False
        self.last_demand: dict[str, int] = {}
        self.demand_since: dict[str, float] = {}
        self.waiting: dict[str, Doc] = {}      # app id -> waiting doc from the last offer round
        self.kill_sent: dict[str, float] = {}  # task id -> monotonic time of the last KILL
        self.drain_timeout = drain.DEFAULT_TIMEOUT_SECONDS  # scheduler.drain: the longest wait
        self.draining: set[str] = set()        # tasks marked leaving, not yet killed
        self.last_reconcile = time.monotonic()
        self.last_prune = float("-inf")        # prune once soon after start, then every period
        self.asked_about: set[str] = set()    # STAGING tasks reconciled individually
        self.last_unreachable_reconcile = float("-inf")
        self.dirty = True                      # an event arrived since the last full round
        self.seen_generation = -1
        self.last_round = 0.0
        self.wake_at = float("inf")            # clock time the next backoff delay runs out
        self.jobs = JobRunner(store, driver)   # Chronos-style jobs (scheduler.jobs)
        self.held = HeldOffers()               # offers kept for job slots (held_offers)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.run, name="accessd-worker", daemon=True)

    # -- loop ---------------------------------------------------------------------------------
    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        self.work.put(("wake", ()))
        self.thread.join(timeout)

    def _tick_at(self, next_tick: float, last_tick: float) -> float:
        """Monotonic time of the next tick: the periodic one, or sooner when a job's slot
        falls due (`JobRunner.next_round_at`), a gap after the last one."""
        due = self.jobs.next_round_at()
        if due == float("inf"):
            return next_tick
        mono = time.monotonic()
        # just after the instant: a slot is due once its instant has come
        at = max(mono + (due - self.clock()) + 0.001, last_tick + JOBS_TICK_GAP_SECONDS)
        return min(next_tick, at)

    def run(self) -> None:
        next_tick = 0.0
        last_tick = 0.0
        held: tuple[str, tuple] | None = None  # an event taken while gathering a batch
        while not self.stop_event.is_set():
            if held is not None:
                (kind, payload), held = held, None
            else:
                try:
                    kind, payload = self.work.get(
                        timeout=max(0.0, self._tick_at(next_tick, last_tick)
                                    - time.monotonic()))
                except queue.Empty:
                    kind, payload = None, ()
            if kind == "status":
                # Every status update already queued goes into one store transaction; the
                # first other event waits for the next turn, so the order is kept.
                batch = [dict(payload[0])]
                while len(batch) < status_batch.MAX_BATCH:
                    try:
                        item = self.work.get_nowait()
                    except queue.Empty:
                        break
                    if item[0] != "status":
                        held = item
                        break
                    batch.append(dict(item[1][0]))
                self._guard("status updates", lambda b=batch: self.on_status_batch(b))
            elif kind is not None:
                self._guard(kind, lambda k=kind, p=payload: self.handle(k, p))
            mono = time.monotonic()
            if mono < next_tick and mono >= self._tick_at(next_tick, last_tick):
                # a job slot fell due between ticks: the jobs' round alone (the apps' checks
                # wait for the tick), and the whole round at once if its runs need a REVIVE
                last_tick = mono
                wanted: list[bool] = []
                self._guard("jobs round", lambda w=wanted: w.append(self.jobs_round()))
                if any(wanted):
                    next_tick = mono
            if time.monotonic() >= next_tick:
                self._guard("tick", self.tick)
                last_tick = time.monotonic()
                next_tick = last_tick + TICK_SECONDS

    def _guard(self, what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except (OSError, http.client.HTTPException) as exc:
            # The master connection went away under a call (restart, failover, our own stop):
            # expected; pymesos reconnects, the agent resends unacknowledged updates and the
            # next round plans again.
            log.warning("master connection lost while handling %s: %r", what, exc)
        except RuntimeError as exc:
            text = str(exc)
            if text.startswith("Not connected") or "Framework is not subscribed" in text:
                # pymesos between connections, or a call that crossed a master failover: the
                # subscription that follows reconciles and plans afresh.
                log.warning("master connection changing while handling %s: %s", what,
                            text.splitlines()[0])
            elif text.startswith("Failed to send request"):  # pymesos: the master said no
                log.error("the master refused a call while handling %s: %s", what,
                          " ".join(text.split()))
            else:
                log.exception("error while handling %s", what)
        except (NotLeader, StoreUnavailable) as exc:
            # ZooKeeper store: deposed (the election loop stops us) or no quorum (nothing was
            # written, so nothing was launched or killed; the next round retries).
            log.warning("state store refused a write while handling %s: %s", what, exc)
        except Exception:  # one bad event must not stop the scheduler; the next round retries
            log.exception("error while handling %s", what)

    def handle(self, kind: str, payload: tuple) -> None:
        self.dirty = True  # whatever happened, the next tick plans afresh
        if kind in ("subscribed", "resubscribed"):
            framework_id = (_value(payload[0]) if kind == "subscribed"
                            else payload[0].framework_id)
            try:
                self.on_subscribed(framework_id, dict(payload[1] or {}))
            except Exception:
                # Nothing may happen before the id is stored: try again shortly.
                time.sleep(0.5)
                self.work.put((kind, payload))
                raise
        elif kind == "status":
            self.on_status(dict(payload[0]))
        elif kind == "offers":
            try:
                self.on_offers(list(payload[0]))
            except Exception:
                # An offer left unanswered stays out of circulation until rescinded (never, by
                # default): give them all back, then let the guard log the cause.
                self.decline_all(payload[0])
                raise
        elif kind == "disconnected":
            if self.subscribed:  # pymesos also reports every failed connection attempt
                log.warning("disconnected from the master; pymesos reconnects")
            self.subscribed = False
            self.held.take()
        elif kind == "agent_lost":
            agent_id = _value(payload[0])
            log.warning("agent %s lost; reconciling its tasks", agent_id)
            self.reconcile_tasks([t for t in self.store.list_tasks()
                                  if t.get("agentId") == agent_id])
        elif kind == "executor_lost":
            log.info("executor %s on agent %s lost (status %s)", _value(payload[0]),
                     _value(payload[1]), payload[2])
        elif kind == "launch_failed":  # an ACCEPT of job runs sent from a sender thread
            offer_id, task_ids, why = payload
            log.warning("ACCEPT of offer %s not delivered (%s); its %d job run(s) wait for "
                        "the next offer", offer_id, why, len(task_ids))
            self.jobs.accepting.difference_update(task_ids)
            for task_id in task_ids:
                self.jobs.launch_failed(task_id)
        elif kind == "rescinded":
            log.info("offer %s rescinded", _value(payload[0]))
            self.held.drop(_value(payload[0]))
        elif kind == "error":
            self.on_error(payload[0])

    # -- subscription ---------------------------------------------------------------------------
    def on_subscribed(self, framework_id: str, master_info: Doc) -> None:
        self.store.set_framework_id(framework_id)  # first of all: a restart must reuse it
        master = f"{master_info.get('hostname', '?')}:{master_info.get('port', '?')}"
        log.info("registered framework_id=%s master=%s", framework_id, master)
        self.store.append_event("scheduler_registered_event",
                                {"frameworkId": framework_id, "master": master})
        self.subscribed = True
        self.suppressed = False  # a new subscription starts unsuppressed
        self.held.take()  # offers of an earlier subscription: the master forgot them
        self.last_demand = {}
        self.reconcile_all()

    def reconcile_all(self) -> None:
        tasks = self.store.list_tasks() + self.jobs.active_runs()
        self.reconcile_tasks(tasks)
        self.driver.reconcileTasks([])  # implicit: the master tells us about tasks we forgot
        self.last_reconcile = time.monotonic()
        log.info("reconciling %d known tasks explicitly, then implicitly", len(tasks))

    def reconcile_tasks(self, tasks: list[Doc]) -> None:
        # With the agent id the master can tell an unreachable agent (TASK_UNREACHABLE), a
        # gone one (TASK_GONE_BY_OPERATOR), a registered one that lost the task (TASK_GONE)
        # and an unknown one (TASK_UNKNOWN) apart.
        if tasks:
            self.driver.reconcileTasks([
                {"task_id": {"value": t["id"]},
                 **({"agent_id": {"value": t["agentId"]}} if t.get("agentId") else {})}
                for t in tasks])

    def on_error(self, message: str) -> None:
        log.error("master error: %s", message)
        if "removed" in message.lower() or "completed" in message.lower():
            # The master forgot this framework (failover timeout passed, or torn down): the id
            # is useless now; the next start registers afresh.
            self.store.set_framework_id(None)
            self.on_fatal(message)

    # -- status updates -------------------------------------------------------------------------
    def on_status(self, status: Doc) -> None:
        self.on_status_batch([status])

    def on_status_batch(self, statuses: list[Doc]) -> None:
        """Store a batch of updates in one transaction (`status_batch.plan_batch`), then act:
        kill unknown active tasks, and acknowledge every update — only now that it is stored.
        If the transaction fails, nothing is acknowledged and the agents re-send."""
        now = self.clock()
        self.dirty = True
        jobs = self.jobs.on_status_batch(statuses, now)  # job runs' updates: one write
        for status in jobs:  # stored: acknowledged
            self.driver.acknowledgeStatusUpdate(status)
        stored = {id(s) for s in jobs}
        tasks = [s for s in statuses if id(s) not in stored]
        if not tasks:
            return
        outcome = self.store.transact(lambda r: status_batch.plan_batch(
            r, tasks, now, self.store.get_app_status, spec_or_none))
        for task_id in outcome.ended:
            self.kill_sent.pop(task_id, None)
            self.asked_about.discard(task_id)
        for line in outcome.log_lines:
            log.info("%s", line)
        for app_id, seconds, failures in outcome.delayed:
            log.info("app %s delayed %.2fs after %d consecutive failures", app_id, seconds,
                     failures)
        for task_id in outcome.kill_unknown:
            log.warning("status for unknown task %s: killing it", task_id)
            self.driver.killTask({"value": task_id})
        for status in outcome.acknowledge:
            self.driver.acknowledgeStatusUpdate(status)

    def _record_terminal(self, doc: Doc, state: str, status: Doc, now: float) -> None:
        self.store.complete_kill_request(doc["id"])
        if not taskstate.is_failure(doc, state):
            return
        app_doc = self.store.get_app(doc.get("appId", ""))
        if app_doc is None:
            return
        spec = spec_or_none(app_doc)
        if spec is None:
            return
        failure = {"appId": doc.get("appId"), "host": doc.get("host"),
                   "message": status.get("message") or "", "state": state, "taskId": doc["id"],
                   "timestamp": format_time(now), "version": doc.get("version"),
                   "slaveId": doc.get("slaveId")}
        status_doc, reset = self._status_for_update(spec.id, now)
        if doc.get("version") != reconcile.config_version(app_doc):
            status_doc = dict(status_doc, lastTaskFailure=failure, updatedAt=format_time(now))
        else:
            status_doc = backoff.record_failure(status_doc, spec, failure, now)
            log.info("app %s delayed %.2fs after %d consecutive failures", spec.id,
                     status_doc["delay"]["seconds"], status_doc["consecutiveFailures"])
        self.store.put_app_status(spec.id, status_doc, delay_reset=reset)

    def _status_for_update(self, app_id: str, now: float) -> tuple[Doc, Doc | None]:
        """The app's status as a write starts from it: the stored document with the app's
        pending delay reset (the API's `DELETE /v2/queue/{id}/delay`) applied, and that request,
        for the write to consume (`put_app_status(..., delay_reset=)`). A failure recorded after
        a reset was asked for counts from zero."""
        status = self.store.get_app_status(app_id) or backoff.empty_status(app_id, now)
        reset = next((r for r in self.store.pending_delay_resets() if r.get("appId") == app_id),
                     None)
        if reset is not None:
            status = backoff.apply_delay_reset(status, reset, now)
        return status, reset

    def _apply_delay_resets(self, now: float) -> None:
        """Carry out the pending delay resets, each in one write that consumes its request."""
        for reset in self.store.pending_delay_resets():
            app_id = reset.get("appId") or ""
            status = self.store.get_app_status(app_id) or backoff.empty_status(app_id, now)
            self.store.put_app_status(app_id, backoff.apply_delay_reset(status, reset, now),
                                      delay_reset=reset)
            log.info("app %s: launch delay reset (requested at %s)", app_id,
                     reset.get("requestedAt"))
