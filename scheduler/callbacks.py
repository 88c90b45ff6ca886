"""pymesos's callbacks: each only puts `(kind, payload)` on the worker's queue and returns.

pymesos runs every callback on its single I/O thread; a callback that raises closes the
connection and a slow one delays heartbeats, so all decisions happen in `framework.Worker`.
"""

from __future__ import annotations

import logging
import queue
from typing import Any

from pymesos import Scheduler

log = logging.getLogger("accessd.scheduler")


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
