"""The worker's answer to a batch of offers: place what the plan wants launched, store each
task document (TASK_STAGING) before its ACCEPT, decline the rest with a `refuse_seconds` filter,
and note what could not be placed (the app status's `waiting`)."""

from __future__ import annotations

import http.client
import logging
from typing import Any

from scheduler import reconcile, taskstate
from scheduler.held_offers import holding_wanted
from scheduler.spec import format_time, iso_now
from scheduler.state import Put, Transaction
from scheduler.status_batch import event_doc

log = logging.getLogger("accessd.scheduler")

Doc = dict[str, Any]


class OfferRound:
    """Mixin of `framework.Worker`: the offer callbacks' half of a round."""

    def on_offers(self, offers: list[Doc], *, jobs_only: bool = False) -> None:
        """`jobs_only`: held offers for new job runs (`launch_on_held`): the apps' plan is
        left to the next offers (a REVIVE for an app gives held offers back first)."""
        from scheduler.placement import LaunchRequest, Unplaced, place
        from scheduler.secret_values import SecretUnavailable
        from scheduler.tasks import build_task_info, new_task_id

        if not self.subscribed:  # the framework id is not stored yet: launch nothing
            self.decline_all(offers)
            return
        now = self.clock()
        if jobs_only:  # a run's placement depends on no task (its "app" is the run itself)
            tasks, needs = [], {}
        else:
            tasks = self.store.list_tasks()  # one snapshot for the plan and the placement
            needs = {need.app.id: need for need in self.make_plan(now, tasks).launches}
        requests = [LaunchRequest(app=need.app, count=need.count) for need in needs.values()]
        requests += self.jobs.launch_requests()
        result = place(offers, requests, tasks, role=self.role)
        by_id = {o["id"]["value"]: o for o in offers}
        infos: dict[str, list[Doc]] = {}
        docs: dict[str, Doc] = {}
        no_secret: dict[str, Unplaced] = {}  # placed, but a secret could not be read
        for launch in result.launches:
            if launch.app_id not in needs:  # a job run (scheduler.jobs), stored as staging
                infos.setdefault(launch.offer_id, []).append(
                    self.jobs.prepare_launch(launch, now))
                continue
            need = needs[launch.app_id]
            task_id = new_task_id(launch.app_id)
            try:
                info = build_task_info(launch, need.app, task_id=task_id,
                                       config_version=need.config_version,
                                       executor_python=self.executor_python)
            except SecretUnavailable as exc:  # its offer is declined below if nothing else uses it
                reason = f"secret unavailable: {exc}"
                if (self.waiting.get(launch.app_id) or {}).get("reason") != reason \
                        and launch.app_id not in no_secret:  # once, not every offer round
                    log.warning("not launching a task of %s: %s", launch.app_id, exc)
                count = no_secret[launch.app_id].count if launch.app_id in no_secret else 0
                no_secret[launch.app_id] = Unplaced(count + 1, reason)
                continue
            docs[task_id] = self._task_doc(task_id, launch, need, by_id, now)
            infos.setdefault(launch.offer_id, []).append(info)
            log.info("launching task %s app=%s agent=%s ports=%s", task_id, launch.app_id,
                     launch.hostname, list(launch.ports))
        if docs:  # every task document in one transaction, before any ACCEPT
            self.store.transact(lambda r: (Transaction(tuple(
                Put("tasks", task_id, doc) for task_id, doc in docs.items())), None))
        self.jobs.store_launches()  # placed job runs, stored before any ACCEPT
        send_later = getattr(self.driver, "acceptOffersAsync", None)
        hold = self.subscribed and holding_wanted(self.jobs.next_slot_at, now)
        for offer_id, task_infos in infos.items():
            if send_later is not None and not any(i["task_id"]["value"] in docs
                                                  for i in task_infos):
                # only job runs (stored as staging): the worker need not wait for the master
                # to launch them; a failure comes back as a `launch_failed` event
                ids = tuple(i["task_id"]["value"] for i in task_infos)
                # not reconciled while the call waits: the master would not know them yet and
                # answer TASK_LOST, and the run would be queued (and launched) again
                self.jobs.accepting.update(ids)
                # holding offers for the next slots: what this leaves of the offer comes
                # straight back (scheduler.held_offers)
                send_later([{"value": offer_id}],
                           [{"type": "LAUNCH", "launch": {"task_infos": task_infos}}],
                           {"refuse_seconds": 0 if hold else self.refuse_seconds},
                           lambda why, o=offer_id, t=ids: self.work.put(
                               ("launch_failed", (o, t, why))),
                           lambda t=ids: self.jobs.accepting.difference_update(t))
                continue
            try:
                self.driver.acceptOffers(
                    [{"value": offer_id}],
                    [{"type": "LAUNCH", "launch": {"task_infos": task_infos}}],
                    filters={"refuse_seconds": self.refuse_seconds})
            except Exception as exc:
                crossed = master_change(exc)
                if crossed is not None:  # a failover under way: expected, one line
                    log.warning("ACCEPT of offer %s crossed a master change (%s); forgetting "
                                "its tasks", offer_id, crossed)
                else:
                    log.exception("ACCEPT of offer %s failed; forgetting its tasks", offer_id)
                for info in task_infos:
                    self.store.delete_task(info["task_id"]["value"])
                    self.jobs.launch_failed(info["task_id"]["value"])
                continue
            # Marathon announces a launched task as TASK_STAGING (Mesos itself sends no update
            # for that state); the worker handles no update before this returns, so it comes
            # first in the log.
            when = iso_now()
            staged = tuple(event_doc("status_update_event", taskstate.status_update_event(
                docs[info["task_id"]["value"]], taskstate.STAGING, None), when)
                for info in task_infos if info["task_id"]["value"] in docs)  # not job runs
            if staged:
                self.store.transact(lambda r, e=staged: (Transaction(events=e), None))
        declines = [oid for oid in by_id if oid not in infos]
        if declines and hold:  # kept for the job slots about to fall due
            self.held.keep([by_id[oid] for oid in declines])
            declines = []
        if declines:
            self.driver.declineOffer([{"value": oid} for oid in declines],
                                     filters={"refuse_seconds": self.refuse_seconds})
        if jobs_only:
            return
        waiting = {k: v for k, v in result.unplaced.items() if k in needs}
        for app_id, info in no_secret.items():  # the reason the status label and queue show
            waiting[app_id] = Unplaced(info.count + (waiting[app_id].count
                                                     if app_id in waiting else 0), info.reason)
        self._note_waiting(waiting, now)
        # What still waits after this round is known demand: only growth beyond it is news
        # worth a REVIVE (which would also clear the decline filters just set).
        placed: dict[str, int] = {}
        for launch in result.launches:
            placed[launch.app_id] = placed.get(launch.app_id, 0) + 1
        for app_id, info in no_secret.items():
            placed[app_id] -= info.count
        self.last_demand = {app_id: need.count - placed.get(app_id, 0)
                            for app_id, need in needs.items()
                            if need.count > placed.get(app_id, 0)}

    def launch_on_held(self, now: float) -> None:
        """New job runs wait and offers are held: launch on those (no REVIVE, no wait for
        an offer); decline held offers no longer wanted or held too long."""
        if self.jobs.queued and len(self.held):
            offers = self.held.take()
            try:
                self.on_offers(offers, jobs_only=True)
            except Exception:
                self.decline_all(offers)
                raise
        expired = self.held.expired(holding_wanted(self.jobs.next_slot_at, now))
        if expired:
            self.decline_all(expired)

    def decline_all(self, offers: list[Doc]) -> None:
        # Through the worker's guard: offers that crossed a master failover are declined while
        # pymesos is between connections, which is expected and says so in one line (the new
        # master does not know them anyway).
        self._guard(f"declining {len(offers)} offers", lambda: self.driver.declineOffer(
            [{"value": o["id"]["value"]} for o in offers],
            filters={"refuse_seconds": self.refuse_seconds}))

    def _task_doc(self, task_id: str, launch: Any, need: reconcile.LaunchNeed,
                  offers: dict[str, Doc], now: float) -> Doc:
        offer = offers.get(launch.offer_id) or {}
        ip = ((offer.get("url") or {}).get("address") or {}).get("ip") or "127.0.0.1"
        app = need.app
        return {
            "id": task_id, "appId": app.id, "host": launch.hostname,
            "slaveId": launch.agent_id, "agentId": launch.agent_id,
            "ipAddresses": [{"ipAddress": ip, "protocol": "IPv4"}],
            "ports": list(launch.ports),
            # Marathon's: the app's service ports (assigned when it was stored), for balancers
            "servicePorts": list(app.service_ports),
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


def master_change(exc: BaseException) -> str | None:
    """The reason in one line when `exc` is a call that crossed a master change (the
    connection went away, pymesos between connections, or a master that no longer knows the
    framework as subscribed: 403 "Framework is not subscribed"); None for anything else."""
    if isinstance(exc, (OSError, http.client.HTTPException)):
        return repr(exc)
    text = str(exc)
    if isinstance(exc, RuntimeError) and (text.startswith("Not connected")
                                          or "Framework is not subscribed" in text):
        return " ".join(text.splitlines()[0].split())
    return None
