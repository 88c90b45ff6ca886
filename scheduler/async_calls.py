"""ACKNOWLEDGE, DECLINE, KILL and job runs' ACCEPT calls off the worker's thread, on HTTP
connections of their own.

pymesos sends every call synchronously on its one connection to the master, from the thread
that makes it. The worker acknowledges each status update once it is stored: with a hundred job
runs a second (three updates each) it spent about half of its time waiting for those answers,
and a task's next update (RUNNING after STARTING) leaves the agent only once the previous one
is acknowledged, so each wait also delayed every task behind it.

`CallSender` takes the acknowledgements the worker hands over (only after their store commit,
as before) and the declines of unused offers, and sends them from `THREADS` daemon threads,
each on its own keep-alive connection to the driver's current master, with the driver's stream
id and credential (Mesos accepts a call of a subscribed framework on any connection that names
its stream). The driver's fields are read without its lock: pymesos holds that lock for the
whole of every call it sends (an ACCEPT on the worker's thread). A call that cannot be sent (no
subscription, a connection lost, a refused call) is dropped: the agent re-sends an
unacknowledged update, which is stored (idempotently) and acknowledged again; a declined offer
the master never heard about stays out until the master rescinds it or the framework REVIVEs
(and the next subscription starts afresh); a KILL is sent again by the worker's round after
`KILL_RETRY_SECONDS` while its task runs (deleting an app of 500 tasks sent 500 KILLs one at a
time from the worker, each waiting for its answer).

An ACCEPT that launches only job runs goes out the same way (`accept`): the master launches
the tasks before it answers, so the worker, waiting on it, held every status update behind it
(100 ms to 1 s under load). The runs are stored as staging before the call is handed over, as
before; a call that cannot be sent or is refused is reported to `on_failure` (the worker queues
the runs again), as a failed synchronous ACCEPT was. Six threads: at three acknowledgements a
run, two connections made the acknowledgements queue (p50 ~150 ms each in `bench/jobs.py` at
load 12, ~7 ms with six), and a task's next update waits for its previous acknowledgement.
"""

from __future__ import annotations

import http.client
import json
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("accessd.scheduler")

THREADS = 6
TIMEOUT_SECONDS = 10.0
JOIN_SECONDS = 1.0  # daemon threads: one still in a call when this passes ends with it


def ack_body(framework_id: str, status: dict[str, Any]) -> dict[str, Any]:
    return {"type": "ACKNOWLEDGE", "framework_id": {"value": framework_id},
            "acknowledge": {"agent_id": status["agent_id"], "task_id": status["task_id"],
                            "uuid": status["uuid"]}}


def kill_body(framework_id: str, task_id: dict[str, Any]) -> dict[str, Any]:
    return {"type": "KILL", "framework_id": {"value": framework_id},
            "kill": {"task_id": task_id}}


def decline_body(framework_id: str, offer_ids: list[dict[str, Any]],
                 filters: dict[str, Any] | None) -> dict[str, Any]:
    decline: dict[str, Any] = {"offer_ids": offer_ids}
    if filters is not None:
        decline["filters"] = filters
    return {"type": "DECLINE", "framework_id": {"value": framework_id}, "decline": decline}


def accept_body(framework_id: str, offer_ids: list[dict[str, Any]],
                operations: list[dict[str, Any]], filters: dict[str, Any] | None
                ) -> dict[str, Any]:
    accept: dict[str, Any] = {"offer_ids": offer_ids, "operations": operations}
    if filters is not None:
        accept["filters"] = filters
    return {"type": "ACCEPT", "framework_id": {"value": framework_id}, "accept": accept}


OnFailure = Callable[[str], None]


class CallSender:
    """`acknowledge(status)` / `decline(offer_ids, filters)` / `accept(offer_ids, operations,
    filters, on_failure)` return at once; the call goes out from a sender thread."""

    def __init__(self, driver: Any, threads: int = THREADS) -> None:
        self.driver = driver
        self.count = threads
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()
        self.failures = 0

    def acknowledge(self, status: dict[str, Any]) -> None:
        if "uuid" not in status:  # nothing to acknowledge (a master's or reconciliation's)
            return
        framework_id = self.driver.framework_id
        if framework_id:
            self._submit(ack_body(framework_id, status))

    def kill(self, task_id: dict[str, Any]) -> None:
        framework_id = self.driver.framework_id
        if framework_id:
            self._submit(kill_body(framework_id, task_id))

    def decline(self, offer_ids: list[dict[str, Any]], filters: dict[str, Any] | None) -> None:
        framework_id = self.driver.framework_id
        if framework_id and offer_ids:
            self._submit(decline_body(framework_id, offer_ids, filters))

    def accept(self, offer_ids: list[dict[str, Any]], operations: list[dict[str, Any]],
               filters: dict[str, Any] | None, on_failure: OnFailure,
               on_sent: Callable[[], None] | None = None) -> None:
        """`on_failure(reason)` is called (from a sender thread, or from this one when there is
        no subscription) if the call is not delivered or the master refuses it; `on_sent()`
        once the master took it."""
        framework_id = self.driver.framework_id
        if not framework_id:
            on_failure("not subscribed")
            return
        self._submit(accept_body(framework_id, offer_ids, operations, filters), on_failure,
                     on_sent)

    def _submit(self, body: dict[str, Any], on_failure: OnFailure | None = None,
                on_sent: Callable[[], None] | None = None) -> None:
        with self.lock:
            if not self.threads:
                self.threads = [threading.Thread(target=self._run, name=f"accessd-ack-{i}",
                                                 daemon=True) for i in range(self.count)]
                for t in self.threads:
                    t.start()
        self.queue.put((body, on_failure, on_sent))

    def close(self) -> None:
        """End the sender threads (acknowledgements still queued are dropped: re-sent by the
        agents); a later `submit` starts new ones."""
        with self.lock:
            threads, self.threads = self.threads, []
        for _ in threads:
            self.queue.put(None)
        for t in threads:  # briefly: one blocked on a silent master must not hold a stop up
            if t is not threading.current_thread():
                t.join(JOIN_SECONDS)

    def _run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        address = None
        while True:
            item = self.queue.get()
            if item is None:
                break
            body, on_failure, on_sent = item
            driver = self.driver
            stream_id = getattr(driver, "_stream_id", None)  # not through pymesos's lock
            master = getattr(driver, "_master", None)
            if not stream_id or not master:  # not subscribed: nothing to send it on
                if on_failure is not None:
                    on_failure("not subscribed")
                continue
            if conn is None or address != master:
                if conn is not None:
                    conn.close()
                host, port = master.rsplit(":", 1)
                conn, address = http.client.HTTPConnection(host, int(port),
                                                           timeout=TIMEOUT_SECONDS), master
            headers = {"Content-Type": "application/json", "Mesos-Stream-Id": stream_id}
            if getattr(driver, "_basic_credential", None):
                headers["Authorization"] = driver._basic_credential
            try:
                conn.request("POST", "/api/v1/scheduler",
                             body=json.dumps(body).encode(),
                             headers=headers)
                resp = conn.getresponse()
                resp.read()
                if not 200 <= resp.status < 300:
                    self._failed(f"HTTP {resp.status}", body, on_failure)
                elif on_sent is not None:
                    on_sent()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = None
                self._failed(repr(exc), body, on_failure)
        if conn is not None:
            conn.close()

    def _failed(self, why: str, body: dict[str, Any], on_failure: OnFailure | None) -> None:
        self.failures += 1
        if body["type"] == "ACKNOWLEDGE":
            what = "acknowledgement of an update of task " + str(
                body["acknowledge"]["task_id"].get("value"))
        elif body["type"] == "KILL":
            what = f"KILL of task {body['kill']['task_id'].get('value')} (sent again later)"
        elif body["type"] == "ACCEPT":
            what = "ACCEPT of offer(s) " + ", ".join(
                str(o.get("value")) for o in body["accept"]["offer_ids"])
        else:
            what = f"decline of {len(body['decline']['offer_ids'])} offer(s)"
        log.warning("%s not delivered (%s)", what, why)
        if on_failure is not None:
            try:
                on_failure(why)
            except Exception:  # a sender thread must survive its callers' bugs
                log.exception("reporting the failed %s", body["type"])
