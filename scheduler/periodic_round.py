"""The worker's periodic round: plan from a store snapshot, kill, retry kills, SUPPRESS/REVIVE,
advance deployments, write app statuses, prune the event log, reconcile periodically."""

from __future__ import annotations

import logging
import time
from typing import Any

from scheduler import backoff, drain, readiness, reconcile, taskstate
from scheduler.deployment_plans import FINAL_EVENTS, PLAN_KEY, final_event, parts_of
from scheduler.deployments import advance
from scheduler.spec import AppSpec, format_time
from scheduler.state import Put, Transaction

log = logging.getLogger("accessd.scheduler")

Doc = dict[str, Any]

FULL_ROUND_SECONDS = 2.0         # a full round at least this often, whatever happened
KILL_RETRY_SECONDS = 10.0        # re-send a KILL the agent has not answered
RECONCILE_EVERY_SECONDS = 60.0   # periodic explicit + implicit reconciliation
EVENTS_KEPT = 100_000            # the event log is a tail for /v2/events, not an archive
PRUNE_EVERY_SECONDS = 600.0
FINISHED_DEPLOYMENTS_KEPT = 1_000   # each change writes one; a scale storm wrote tens of thousands
STAGING_RECONCILE_SECONDS = 30.0  # reconcile a task stuck in STAGING this long
UNREACHABLE_RECONCILE_SECONDS = 5.0  # ask about unreachable/unknown tasks this often
NO_OFFERS_AFTER_SECONDS = 5.0    # demand without any offer this long: waiting "no offers"


class PeriodicRound:
    """Mixin of `framework.Worker`: the round its loop runs every tick."""

    def make_plan(self, now: float, tasks: list[Doc] | None = None) -> reconcile.Plan:
        tasks = self.store.list_tasks() if tasks is None else tasks
        return reconcile.plan(self.store.list_apps(), tasks,
                              self.store.list_app_status(), self.store.list_deployments(True),
                              self.store.pending_kill_requests(), now)

    def tick(self) -> None:
        """A full round when something may have changed: an API write (the desired generation
        moved), an event since the last round, a backoff delay running out, or the safety-net
        period; otherwise only the cheap generation poll."""
        if not self.subscribed:
            return
        if readiness.prober_of(self).round(self.store):  # a task became ready (or not)
            self.dirty = True
        now = self.clock()
        if self.draining:  # leaving tasks: kill each as soon as the balancers let it go
            self._release_drains()
        if self.jobs.tick(now):  # new job runs wait for offers: plan (and REVIVE) this tick
            self.dirty = True
            self.launch_on_held(now)  # on offers kept for them, if any (scheduler.held_offers)
        elif len(self.held):
            self.launch_on_held(now)  # only declines what is no longer wanted
        generation = self.store.desired_generation()
        mono = time.monotonic()
        if not (self.dirty or generation != self.seen_generation or now >= self.wake_at
                or mono - self.last_round >= FULL_ROUND_SECONDS):
            return
        self.dirty = False
        self.seen_generation = generation
        self.last_round = mono
        self._apply_delay_resets(now)  # before planning: a reset app may launch this round
        # One snapshot of the tasks for the round (decoding every task document is the cost
        # of a round with hundreds of tasks); listed again only after this round's kills.
        tasks = self.store.list_tasks()
        plan = self.make_plan(now, tasks)
        # wake up when the first delay runs out, so the app launches without waiting a period
        self.wake_at = min((now + left for left in plan.delayed.values()), default=float("inf"))
        plain: list[tuple[Doc, reconcile.Kill]] = []
        for kill in plan.kills:
            self._kill(kill, now, plain)
        self._send_kills(plain)
        for task_id in plan.done_kill_requests:
            self.store.complete_kill_request(task_id)
        if plan.kills:
            tasks = self.store.list_tasks()
        self._retry_kills(tasks)
        self._offers(plan, now)
        by_app: dict[str, list[Doc]] = {}
        for task in tasks:
            by_app.setdefault(task.get("appId") or "", []).append(task)
        self._advance_deployments(now, by_app)
        self._write_statuses(plan, now, by_app)
        if time.monotonic() - self.last_prune > PRUNE_EVERY_SECONDS:
            self.last_prune = time.monotonic()
            pruned = self.store.prune_events(EVENTS_KEPT)
            if pruned:
                log.info("event log: dropped %d old events, kept the newest %d", pruned,
                         EVENTS_KEPT)
            pruned = self.store.prune_deployments(FINISHED_DEPLOYMENTS_KEPT)
            if pruned:
                log.info("deployments: dropped %d finished ones, kept the newest %d finished",
                         pruned, FINISHED_DEPLOYMENTS_KEPT)
        if time.monotonic() - self.last_reconcile > RECONCILE_EVERY_SECONDS:
            self.reconcile_all()
        else:
            self._reconcile_unreachable()
            stuck = [t for t in tasks if t.get("state") == taskstate.STAGING
                     and now - _epoch(t.get("stagedAt")) > STAGING_RECONCILE_SECONDS
                     and t["id"] not in self.asked_about]
            if stuck:
                self.reconcile_tasks(stuck)
                self.asked_about.update(t["id"] for t in stuck)  # once, not every tick

    def jobs_round(self) -> bool:
        """The jobs' part of a tick alone (a slot fell due between ticks): record what is due
        and launch it on held offers; True when runs still wait for offers (the whole round,
        with its REVIVE, is wanted now)."""
        if not self.subscribed:
            return False
        now = self.clock()
        if self.jobs.tick(now):
            self.dirty = True
            self.launch_on_held(now)
            return bool(self.jobs.queued)
        if len(self.held):
            self.launch_on_held(now)
        return False

    def _reconcile_unreachable(self) -> None:
        """Ask the master about unreachable and unknown tasks every few seconds: an agent the
        master forgot (TASK_UNKNOWN) re-registers without any update of its own, so only
        reconciliation tells that its tasks are back."""
        if time.monotonic() - self.last_unreachable_reconcile < UNREACHABLE_RECONCILE_SECONDS:
            return
        self.last_unreachable_reconcile = time.monotonic()
        away = [t for t in self.store.list_tasks() if taskstate.is_unreachable(t.get("state", ""))]
        if away:
            self.reconcile_tasks(away)

    def _kill(self, kill: reconcile.Kill, now: float,
              plain: list[tuple[Doc, reconcile.Kill]] | None = None) -> None:
        """Kill one task; a plain kill (no expunge, drain or failure) goes into `plain` when
        given, for `_send_kills` to store and send with the round's others."""
        doc = self.store.get_task(kill.task_id)
        if doc is None:
            return
        if kill.expunge:
            # Unreachable past its app's expungeAfterSeconds: forgotten. If it ever comes back
            # it reports as an unknown task, and unknown tasks are killed (on_status).
            self.store.delete_task(kill.task_id)
            self.asked_about.discard(kill.task_id)
            log.info("expunging task %s app=%s: %s since %s", kill.task_id, kill.app_id,
                     doc.get("state"), doc.get("unreachableSince"))
            self._record_terminal(doc, doc.get("state") or taskstate.UNREACHABLE,
                                  {"message": doc.get("message") or kill.reason}, now)
            return
        doc["killRequested"] = True
        if (drain.drainable(kill.reason, kill.failure, kill.expunge)
                and self._live_balancers(now)):
            self._mark_leaving(doc, kill, now)
            return
        if plain is not None and not kill.failure:
            plain.append((doc, kill))
            return
        self.store.upsert_task(doc)
        log.info("killing task %s app=%s (%s)", kill.task_id, kill.app_id, kill.reason)
        if kill.failure:
            self.store.append_event("unhealthy_task_kill_event", {
                "appId": kill.app_id, "taskId": kill.task_id, "version": doc.get("version"),
                "reason": kill.reason, "host": doc.get("host"), "slaveId": doc.get("slaveId")})
            self._record_unhealthy(doc, kill, now)
        self.kill_sent[kill.task_id] = time.monotonic()
        self.driver.killTask({"value": kill.task_id})

    def _send_kills(self, plain: list[tuple[Doc, reconcile.Kill]]) -> None:
        """Store the round's plain kills (`killRequested`) in one transaction, then send
        them: deleting an app of 500 tasks was 500 transactions, each followed by a KILL
        sent synchronously."""
        if not plain:
            return
        ops = tuple(Put("tasks", doc["id"], doc) for doc, _ in plain)
        self.store.transact(lambda r: (Transaction(ops), None))
        mono = time.monotonic()
        for _doc, kill in plain:
            log.info("killing task %s app=%s (%s)", kill.task_id, kill.app_id, kill.reason)
            self.kill_sent[kill.task_id] = mono
            self.driver.killTask({"value": kill.task_id})

    # -- the drain contract (scheduler.drain) -----------------------------------------------------
    def _live_balancers(self, now: float) -> list[Doc]:
        return drain.live_balancers(self.store.list_balancers(), now)

    def _mark_leaving(self, doc: Doc, kill: reconcile.Kill, now: float) -> None:
        """Leaving instead of killed: the balancers drain it, `_retry_kills` kills it."""
        doc["leaving"] = drain.leaving_mark(kill.reason, now, self.drain_timeout)
        self.store.upsert_task(doc)
        self.store.append_event("task_leaving_event", {
            "appId": kill.app_id, "taskId": kill.task_id, "reason": kill.reason,
            "deadline": doc["leaving"]["deadline"], "host": doc.get("host")})
        self.draining.add(kill.task_id)
        log.info("draining task %s app=%s (%s) before its kill, at most %.1fs", kill.task_id,
                 kill.app_id, kill.reason, self.drain_timeout)

    def _release_drains(self) -> None:
        docs = [d for d in (self.store.get_task(t) for t in sorted(self.draining)) if d]
        self.draining.intersection_update(d["id"] for d in docs)  # gone: nothing to kill
        self._retry_kills(docs)

    def _record_unhealthy(self, doc: Doc, kill: reconcile.Kill, now: float) -> None:
        app_doc = self.store.get_app(kill.app_id)
        spec = spec_or_none(app_doc) if app_doc else None
        if spec is None:
            return
        failure = {"appId": kill.app_id, "host": doc.get("host"), "message": kill.reason,
                   "state": taskstate.KILLED, "taskId": kill.task_id,
                   "timestamp": format_time(now), "version": doc.get("version"),
                   "slaveId": doc.get("slaveId")}
        status, reset = self._status_for_update(kill.app_id, now)
        self.store.put_app_status(kill.app_id, backoff.record_failure(status, spec, failure, now),
                                  delay_reset=reset)

    def _retry_kills(self, tasks: list[Doc]) -> None:
        mono = time.monotonic()
        balancers: list[Doc] | None = None
        for doc in tasks:
            if not doc.get("killRequested"):
                continue
            sent = self.kill_sent.get(doc["id"])
            if sent is None and doc.get("leaving") is not None:
                if balancers is None:
                    balancers = self.store.list_balancers()
                why = drain.release(doc, balancers, self.clock())
                if why is None:
                    self.draining.add(doc["id"])  # also after a failover: the mark is stored
                    continue
                self.draining.discard(doc["id"])
                log.info("killing task %s app=%s (%s; %s)", doc["id"], doc.get("appId"),
                         doc["leaving"].get("reason"), why)
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
                if len(self.held):  # back to the master first: the REVIVE re-offers them
                    self.decline_all(self.held.take())
                log.info("REVIVE: %s waiting to launch", demand)
                self.driver.reviveOffers()
                self.suppressed = False
        elif not self.suppressed:
            log.info("SUPPRESS: nothing waits to launch")
            self.driver.suppressOffers()
            self.suppressed = True
        self.last_demand = demand

    def _advance_deployments(self, now: float, tasks: dict[str, list[Doc]]) -> None:
        for dep in self.store.list_deployments(True):
            app_id = (dep.get("target") or {}).get("app") or (dep.get("affectedApps") or [""])[0]
            new_doc, events = advance(dep, self.store.get_app(app_id), tasks.get(app_id, []),
                                      now=format_time(now))
            if new_doc != dep:
                if self.store.update_deployment(new_doc) is False:
                    # Final in the store already (the API cancelled or superseded it since we
                    # listed it): this progress is stale, and so are its events.
                    log.info("deployment %s is final already; its update is dropped",
                             new_doc.get("id"))
                    continue
                if new_doc.get("status") != dep.get("status"):
                    log.info("deployment %s %s", new_doc.get("id"), new_doc.get("status"))
            if PLAN_KEY in new_doc:  # a part of a plan: the plan ends once, with its last part
                events = [(kind, payload) for kind, payload in events if kind not in FINAL_EVENTS]
                if new_doc.get("status") != dep.get("status"):
                    plan_end = final_event(parts_of(new_doc, self.store.get_deployment))
                    events += [plan_end] if plan_end is not None else []
            for event_type, payload in events:
                self.store.append_event(event_type, payload)
            deleted = (new_doc.get("target") or {}).get("configVersion") is None
            just_done = new_doc.get("status") == "succeeded" and dep.get("status") != "succeeded"
            if deleted and just_done:
                self.store.append_event("app_terminated_event", {"appId": app_id})

    def _write_statuses(self, plan: reconcile.Plan, now: float,
                        tasks: dict[str, list[Doc]]) -> None:
        statuses = self.store.list_app_status()
        apps = {doc["id"]: doc for doc in self.store.list_apps()}
        for app_id, app_doc in apps.items():
            spec = spec_or_none(app_doc)
            if spec is None:
                continue
            old = statuses.get(app_id)
            status = old or backoff.empty_status(app_id, now)
            status = backoff.settle(status, tasks.get(app_id, []),
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
            if app_id in plan.held:  # dependency order: say what the start waits for
                reason = f"dependencies {plan.held[app_id]}"
                before = (old or {}).get("waiting") or {}
                waiting = {"reason": reason, "count": spec.instances,
                           "since": before.get("since") if before.get("reason") == reason
                           else format_time(now)}
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


def spec_or_none(app_doc: Doc | None) -> AppSpec | None:
    from scheduler.spec import SpecError, parse_app

    if app_doc is None:
        return None
    try:
        return parse_app(app_doc)
    except SpecError:
        return None
