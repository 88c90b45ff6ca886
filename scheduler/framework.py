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

from pymesos import Scheduler

from scheduler import backoff, reconcile, taskstate
from scheduler.deployments import advance
from scheduler.jobs.runner import JobRunner
from scheduler.spec import AppSpec, format_time
from scheduler.state import StateStore

log = logging.getLogger("accessd.scheduler")

Doc = dict[str, Any]

TICK_SECONDS = 0.25              # API writes take effect within about this (plus a plan)
FULL_ROUND_SECONDS = 2.0         # a full round at least this often, whatever happened
KILL_RETRY_SECONDS = 10.0        # re-send a KILL the agent has not answered
RECONCILE_EVERY_SECONDS = 60.0   # periodic explicit + implicit reconciliation
EVENTS_KEPT = 100_000            # the event log is a tail for /v2/events, not an archive
PRUNE_EVERY_SECONDS = 600.0
STAGING_RECONCILE_SECONDS = 30.0  # reconcile a task stuck in STAGING this long
NO_OFFERS_AFTER_SECONDS = 5.0    # demand without any offer this long: waiting "no offers"


def _value(obj: Any) -> Any:
    return obj.get("value") if isinstance(obj, dict) else obj


class AccessdScheduler(Scheduler):
    """pymesos callbacks: enqueue and return; never raise."""

    def __init__(self, work: queue.Queue) -> None:
        self._work = work

    def _put(self, kind: str, *payload: Any) -> None:
        try:
            self._work.put((kind, payload))
        except Exception:  # never let an exception reach pymesos's I/O thread
            log.exception("could not enqueue %s", kind)

    # Arguments are passed on untouched: any conversion that could raise happens in the worker.
    def registered(self, driver, framework_id, master_info):
        self._put("subscribed", framework_id, master_info)

    def reregistered(self, driver, master_info):
        self._put("resubscribed", driver, master_info)

    def disconnected(self, driver):
        self._put("disconnected")

    def resourceOffers(self, driver, offers):
        self._put("offers", offers)

    def offerRescinded(self, driver, offer_id):
        self._put("rescinded", offer_id)

    def statusUpdate(self, driver, status):
        self._put("status", status)

    def slaveLost(self, driver, agent_id):
        self._put("agent_lost", agent_id)

    def executorLost(self, driver, executor_id, agent_id, status):
        self._put("executor_lost", executor_id, agent_id, status)

    def error(self, driver, message):
        self._put("error", message)

    def frameworkMessage(self, driver, executor_id, agent_id, message):
        pass

    def processHeartBeat(self, driver):
        pass


class Worker:
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
        self.last_reconcile = time.monotonic()
        self.last_prune = float("-inf")        # prune once soon after start, then every period
        self.asked_about: set[str] = set()    # STAGING tasks reconciled individually
        self.dirty = True                      # an event arrived since the last full round
        self.seen_generation = -1
        self.last_round = 0.0
        self.wake_at = float("inf")            # clock time the next backoff delay runs out
        self.jobs = JobRunner(store, driver)   # Chronos-style jobs (scheduler.jobs)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.run, name="accessd-worker", daemon=True)

    # -- loop ---------------------------------------------------------------------------------
    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        self.work.put(("wake", ()))
        self.thread.join(timeout)

    def run(self) -> None:
        next_tick = 0.0
        while not self.stop_event.is_set():
            try:
                kind, payload = self.work.get(timeout=max(0.0, next_tick - time.monotonic()))
            except queue.Empty:
                kind, payload = None, ()
            if kind is not None:
                self._guard(kind, lambda k=kind, p=payload: self.handle(k, p))
            if time.monotonic() >= next_tick:
                self._guard("tick", self.tick)
                next_tick = time.monotonic() + TICK_SECONDS

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
        elif kind == "agent_lost":
            agent_id = _value(payload[0])
            log.warning("agent %s lost; reconciling its tasks", agent_id)
            self.reconcile_tasks([t for t in self.store.list_tasks()
                                  if t.get("agentId") == agent_id])
        elif kind == "executor_lost":
            log.info("executor %s on agent %s lost (status %s)", _value(payload[0]),
                     _value(payload[1]), payload[2])
        elif kind == "rescinded":
            log.info("offer %s rescinded", _value(payload[0]))
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
        self.last_demand = {}
        self.reconcile_all()

    def reconcile_all(self) -> None:
        tasks = self.store.list_tasks() + self.jobs.active_runs()
        self.reconcile_tasks(tasks)
        self.driver.reconcileTasks([])  # implicit: the master tells us about tasks we forgot
        self.last_reconcile = time.monotonic()
        log.info("reconciling %d known tasks explicitly, then implicitly", len(tasks))

    def reconcile_tasks(self, tasks: list[Doc]) -> None:
        if tasks:
            self.driver.reconcileTasks([{"task_id": {"value": t["id"]}} for t in tasks])

    def on_error(self, message: str) -> None:
        log.error("master error: %s", message)
        if "removed" in message.lower() or "completed" in message.lower():
            # The master forgot this framework (failover timeout passed, or torn down): the id
            # is useless now; the next start registers afresh.
            self.store.set_framework_id(None)
            self.on_fatal(message)

    # -- status updates -------------------------------------------------------------------------
    def on_status(self, status: Doc) -> None:
        now = self.clock()
        if self.jobs.on_status(status, now):  # a job run's update: stored, now acknowledged
            self.driver.acknowledgeStatusUpdate(status)
            return
        task_id = taskstate.status_task_id(status)
        state = taskstate.normalise_state(str(status.get("state", "")))
        doc = self.store.get_task(task_id)
        if doc is None:
            if taskstate.is_active(state):
                log.warning("status %s for unknown task %s: killing it", state, task_id)
                self.driver.killTask({"value": task_id})
        else:
            new_doc, events = taskstate.apply_status(doc, status, now)
            if new_doc is None:
                self.store.delete_task(task_id)
                self.kill_sent.pop(task_id, None)
                self.asked_about.discard(task_id)
                self._record_terminal(doc, state, status, now)
            else:
                self.store.upsert_task(new_doc)
            for event_type, payload in events:
                self.store.append_event(event_type, payload)
            if doc.get("state") != state or events:
                log.info("task %s %s%s", task_id, state,
                         f" ({status['message']})" if status.get("message") else "")
        self.driver.acknowledgeStatusUpdate(status)  # only now that it is stored

    def _record_terminal(self, doc: Doc, state: str, status: Doc, now: float) -> None:
        self.store.complete_kill_request(doc["id"])
        if not taskstate.is_failure(doc, state):
            return
        app_doc = self.store.get_app(doc.get("appId", ""))
        if app_doc is None:
            return
        spec = _spec_or_none(app_doc)
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

    # -- offers ---------------------------------------------------------------------------------
    def on_offers(self, offers: list[Doc]) -> None:
        from scheduler.placement import LaunchRequest, place
        from scheduler.tasks import build_task_info, new_task_id

        if not self.subscribed:  # the framework id is not stored yet: launch nothing
            self.decline_all(offers)
            return
        now = self.clock()
        plan = self.make_plan(now)
        needs = {need.app.id: need for need in plan.launches}
        requests = [LaunchRequest(app=need.app, count=need.count) for need in plan.launches]
        requests += self.jobs.launch_requests()
        result = place(offers, requests, self.store.list_tasks(), role=self.role)
        by_id = {o["id"]["value"]: o for o in offers}
        infos: dict[str, list[Doc]] = {}
        docs: dict[str, Doc] = {}
        for launch in result.launches:
            if launch.app_id not in needs:  # a job run (scheduler.jobs), stored as staging
                infos.setdefault(launch.offer_id, []).append(
                    self.jobs.prepare_launch(launch, now))
                continue
            need = needs[launch.app_id]
            task_id = new_task_id(launch.app_id)
            info = build_task_info(launch, need.app, task_id=task_id,
                                   config_version=need.config_version,
                                   executor_python=self.executor_python)
            docs[task_id] = self._task_doc(task_id, launch, need, by_id, now)
            self.store.upsert_task(docs[task_id])
            infos.setdefault(launch.offer_id, []).append(info)
            log.info("launching task %s app=%s agent=%s ports=%s", task_id, launch.app_id,
                     launch.hostname, list(launch.ports))
        for offer_id, task_infos in infos.items():
            try:
                self.driver.acceptOffers(
                    [{"value": offer_id}],
                    [{"type": "LAUNCH", "launch": {"task_infos": task_infos}}],
                    filters={"refuse_seconds": self.refuse_seconds})
            except Exception:
                log.exception("ACCEPT of offer %s failed; forgetting its tasks", offer_id)
                for info in task_infos:
                    self.store.delete_task(info["task_id"]["value"])
                    self.jobs.launch_failed(info["task_id"]["value"])
                continue
            # Marathon announces a launched task as TASK_STAGING (Mesos itself sends no update
            # for that state); the worker handles no update before this returns, so it comes
            # first in the log.
            for info in task_infos:
                doc = docs.get(info["task_id"]["value"])
                if doc is None:  # a job run
                    continue
                self.store.append_event("status_update_event", taskstate.status_update_event(
                    doc, taskstate.STAGING, None))
        declines = [oid for oid in by_id if oid not in infos]
        if declines:
            self.driver.declineOffer([{"value": oid} for oid in declines],
                                     filters={"refuse_seconds": self.refuse_seconds})
        # What still waits after this round is known demand: only growth beyond it is news
        # worth a REVIVE (which would also clear the decline filters just set).
        placed: dict[str, int] = {}
        for launch in result.launches:
            placed[launch.app_id] = placed.get(launch.app_id, 0) + 1
        self._note_waiting({k: v for k, v in result.unplaced.items() if k in needs}, now)
        self.last_demand = {app_id: need.count - placed.get(app_id, 0)
                            for app_id, need in needs.items()
                            if need.count > placed.get(app_id, 0)}

    def decline_all(self, offers: list[Doc]) -> None:
        try:
            self.driver.declineOffer([{"value": o["id"]["value"]} for o in offers],
                                     filters={"refuse_seconds": self.refuse_seconds})
        except Exception:
            log.exception("could not decline %d offers", len(offers))

    def _task_doc(self, task_id: str, launch: Any, need: reconcile.LaunchNeed,
                  offers: dict[str, Doc], now: float) -> Doc:
        offer = offers.get(launch.offer_id) or {}
        ip = ((offer.get("url") or {}).get("address") or {}).get("ip") or "127.0.0.1"
        app = need.app
        return {
            "id": task_id, "appId": app.id, "host": launch.hostname,
            "slaveId": launch.agent_id, "agentId": launch.agent_id,
            "ipAddresses": [{"ipAddress": ip, "protocol": "IPv4"}],
            "ports": list(launch.ports), "servicePorts": [],
            "stagedAt": format_time(now), "startedAt": None, "version": need.config_version,
            "state": taskstate.STAGING, "healthy": None, "healthCheckResults": [],
            "message": None, "reason": None, "attributes": dict(launch.attributes or {}),
            "resources": {"cpus": app.cpus, "mem": app.mem, "disk": app.disk},
            "killRequested": False,
        }

    def _note_waiting(self, unplaced: dict[str, Any], now: float) -> None:
        for app_id, info in unplaced.items():
            previous = self.waiting.get(app_id)
            since = previous["since"] if previous and previous["reason"] == info.reason \
                else format_time(now)
            self.waiting[app_id] = {"reason": info.reason, "since": since, "count": info.count}
        for app_id in list(self.waiting):
            if app_id not in unplaced:
                del self.waiting[app_id]

    # -- the periodic round ----------------------------------------------------------------------
    def make_plan(self, now: float) -> reconcile.Plan:
        return reconcile.plan(self.store.list_apps(), self.store.list_tasks(),
                              self.store.list_app_status(), self.store.list_deployments(True),
                              self.store.pending_kill_requests(), now)

    def tick(self) -> None:
        """A full round when something may have changed: an API write (the desired generation
        moved), an event since the last round, a backoff delay running out, or the safety-net
        period; otherwise only the cheap generation poll."""
        if not self.subscribed:
            return
        now = self.clock()
        if self.jobs.tick(now):  # new job runs wait for offers: plan (and REVIVE) this tick
            self.dirty = True
        generation = self.store.desired_generation()
        mono = time.monotonic()
        if not (self.dirty or generation != self.seen_generation or now >= self.wake_at
                or mono - self.last_round >= FULL_ROUND_SECONDS):
            return
        self.dirty = False
        self.seen_generation = generation
        self.last_round = mono
        self._apply_delay_resets(now)  # before planning: a reset app may launch this round
        plan = self.make_plan(now)
        # wake up when the first delay runs out, so the app launches without waiting a period
        self.wake_at = min((now + left for left in plan.delayed.values()), default=float("inf"))
        for kill in plan.kills:
            self._kill(kill, now)
        for task_id in plan.done_kill_requests:
            self.store.complete_kill_request(task_id)
        self._retry_kills()
        self._offers(plan, now)
        self._advance_deployments(now)
        self._write_statuses(plan, now)
        if time.monotonic() - self.last_prune > PRUNE_EVERY_SECONDS:
            self.last_prune = time.monotonic()
            pruned = self.store.prune_events(EVENTS_KEPT)
            if pruned:
                log.info("event log: dropped %d old events, kept the newest %d", pruned,
                         EVENTS_KEPT)
        if time.monotonic() - self.last_reconcile > RECONCILE_EVERY_SECONDS:
            self.reconcile_all()
        else:
            stuck = [t for t in self.store.list_tasks() if t.get("state") == taskstate.STAGING
                     and now - _epoch(t.get("stagedAt")) > STAGING_RECONCILE_SECONDS
                     and t["id"] not in self.asked_about]
            if stuck:
                self.reconcile_tasks(stuck)
                self.asked_about.update(t["id"] for t in stuck)  # once, not every tick

    def _kill(self, kill: reconcile.Kill, now: float) -> None:
        doc = self.store.get_task(kill.task_id)
        if doc is None:
            return
        doc["killRequested"] = True
        self.store.upsert_task(doc)
        log.info("killing task %s app=%s (%s)", kill.task_id, kill.app_id, kill.reason)
        if kill.failure:
            self.store.append_event("unhealthy_task_kill_event", {
                "appId": kill.app_id, "taskId": kill.task_id, "version": doc.get("version"),
                "reason": kill.reason, "host": doc.get("host"), "slaveId": doc.get("slaveId")})
            self._record_unhealthy(doc, kill, now)
        self.kill_sent[kill.task_id] = time.monotonic()
        self.driver.killTask({"value": kill.task_id})

    def _record_unhealthy(self, doc: Doc, kill: reconcile.Kill, now: float) -> None:
        app_doc = self.store.get_app(kill.app_id)
        spec = _spec_or_none(app_doc) if app_doc else None
        if spec is None:
            return
        failure = {"appId": kill.app_id, "host": doc.get("host"), "message": kill.reason,
                   "state": taskstate.KILLED, "taskId": kill.task_id,
                   "timestamp": format_time(now), "version": doc.get("version"),
                   "slaveId": doc.get("slaveId")}
        status, reset = self._status_for_update(kill.app_id, now)
        self.store.put_app_status(kill.app_id, backoff.record_failure(status, spec, failure, now),
                                  delay_reset=reset)

    def _retry_kills(self) -> None:
        mono = time.monotonic()
        for doc in self.store.list_tasks():
            if not doc.get("killRequested"):
                continue
            sent = self.kill_sent.get(doc["id"])
            if sent is None or mono - sent > KILL_RETRY_SECONDS:
                self.kill_sent[doc["id"]] = mono
                self.driver.killTask({"value": doc["id"]})

    def _offers(self, plan: reconcile.Plan, now: float) -> None:
        demand = {need.app.id: need.count for need in plan.launches}
        demand.update(self.jobs.demand())
        for app_id in demand:
            self.demand_since.setdefault(app_id, now)
        for app_id in list(self.demand_since):
            if app_id not in demand:
                del self.demand_since[app_id]
        if demand:
            grew = any(n > self.last_demand.get(a, 0) for a, n in demand.items())
            if self.suppressed or grew:
                log.info("REVIVE: %s waiting to launch", demand)
                self.driver.reviveOffers()
                self.suppressed = False
        elif not self.suppressed:
            log.info("SUPPRESS: nothing waits to launch")
            self.driver.suppressOffers()
            self.suppressed = True
        self.last_demand = demand

    def _advance_deployments(self, now: float) -> None:
        for dep in self.store.list_deployments(True):
            app_id = (dep.get("target") or {}).get("app") or (dep.get("affectedApps") or [""])[0]
            new_doc, events = advance(dep, self.store.get_app(app_id),
                                      self.store.list_tasks(app_id), now=format_time(now))
            if new_doc != dep:
                if self.store.update_deployment(new_doc) is False:
                    # Final in the store already (the API cancelled or superseded it since we
                    # listed it): this progress is stale, and so are its events.
                    log.info("deployment %s is final already; its update is dropped",
                             new_doc.get("id"))
                    continue
                if new_doc.get("status") != dep.get("status"):
                    log.info("deployment %s %s", new_doc.get("id"), new_doc.get("status"))
            for event_type, payload in events:
                self.store.append_event(event_type, payload)
            deleted = (new_doc.get("target") or {}).get("configVersion") is None
            just_done = new_doc.get("status") == "succeeded" and dep.get("status") != "succeeded"
            if deleted and just_done:
                self.store.append_event("app_terminated_event", {"appId": app_id})

    def _write_statuses(self, plan: reconcile.Plan, now: float) -> None:
        statuses = self.store.list_app_status()
        apps = {doc["id"]: doc for doc in self.store.list_apps()}
        for app_id, app_doc in apps.items():
            spec = _spec_or_none(app_doc)
            if spec is None:
                continue
            old = statuses.get(app_id)
            status = old or backoff.empty_status(app_id, now)
            status = backoff.settle(status, self.store.list_tasks(app_id),
                                    reconcile.config_version(app_doc), bool(spec.health_checks),
                                    now)
            waiting = None
            if app_id not in plan.delayed and plan.need_for(app_id) > 0:
                waiting = self.waiting.get(app_id)
                started = self.demand_since.get(app_id, now)
                if waiting is None and now - started > NO_OFFERS_AFTER_SECONDS:
                    waiting = {"reason": "no offers", "since": format_time(started),
                               "count": plan.need_for(app_id)}
            elif app_id not in plan.delayed and self.waiting.get(app_id):
                # all placed (or nothing to launch): whatever was waiting is no longer
                self.waiting.pop(app_id, None)
            status = dict(status, waiting=waiting)
            if old is None or _without_time(old) != _without_time(status):
                # No one else writes app statuses (state.py): a delay reset asked for since
                # `statuses` was read is a pending request this write leaves pending, and the
                # next round (the request moved the desired generation) carries it out.
                status["updatedAt"] = format_time(now)
                self.store.put_app_status(app_id, status)
        for app_id in statuses:
            if app_id not in apps and hasattr(self.store, "delete_app_status"):
                self.store.delete_app_status(app_id)


def _without_time(status: Doc) -> Doc:
    return {k: v for k, v in status.items() if k != "updatedAt"}


def _epoch(iso: str | None) -> float:
    from scheduler.spec import parse_time

    return parse_time(iso) if iso else 0.0


def _spec_or_none(app_doc: Doc | None) -> AppSpec | None:
    from scheduler.spec import SpecError, parse_app

    if app_doc is None:
        return None
    try:
        return parse_app(app_doc)
    except SpecError:
        return None
