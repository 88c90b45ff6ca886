"""pymesos's scheduler driver with bounded, jittered reconnects.

pymesos reconnects to the master at once whenever a connection ends without a subscription:
after a `307` redirect, a `503` from a master that is still recovering, or a stream the master
closed. During a real master failover that was about 540 requests a second to the recovering
master, each with its own warning. `ReconnectingDriver` waits before every attempt that follows
a failed one: nothing after a subscription that worked (a failover is picked up at once), then
an exponential delay from 0.25 s capped at `RECONNECT_MAX_SECONDS`, half of it random ("equal
jitter": schedulers that lost the same master do not come back in step). pymesos's own sleep
after a refused connection (2, 4, 8, 15 s) is replaced by the same policy. The wait happens in
`on_close`, on pymesos's I/O thread before it opens the next connection (it has nothing else to
do meanwhile), and is cut short when the driver is stopped.

A real master that has just started answers `404 Not Found` for a moment before its routes
exist (then 503 while it recovers). pymesos raises on any answer but 200/307/503, which ends
its I/O thread and, through `interrupt_main`, the scheduler: 3 of 6 real failovers in the
conformance lane. pymesos builds each connection from its module's `Connection` with no hook,
so `install_tolerant_connection` puts in a subclass that takes a 404 *before the subscription
is answered* as "not ready yet" (the connection ends and the paced retry above follows); any
other failure, and a 404 on a subscribed stream, still raise as before. The first time it is built, it also installs `lograte`'s filters on
pymesos's loggers (repeated warnings summarised, a reset connection one line).

pymesos sends REVIVE, SUPPRESS and RECONCILE on the caller's thread, holding the driver's lock
for the whole round trip, on a connection whose timeout is the driver's (a day). A master that
takes such a call and never answers (hung, or partitioned with the connection half-open) would
hold that lock for a day, and with it everything that asks whether the driver is connected,
`stop()` included: a scheduler that lost its leadership then never stepped down. Those calls
get `CALL_TIMEOUT_SECONDS`, as the ACKNOWLEDGE/DECLINE/KILL senders (`async_calls`) do, and so
does the `GET /version` pymesos asks on every start and master change (with the same day-long
timeout, so a hung master also kept a re-subscription from ever starting).
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import time
from collections.abc import Callable

import pymesos.process
from pymesos import MesosSchedulerDriver

from scheduler import lograte
from scheduler.async_calls import TIMEOUT_SECONDS as CALL_TIMEOUT_SECONDS
from scheduler.async_calls import CallSender

log = logging.getLogger("accessd.scheduler")

FIRST_RETRY_SECONDS = 0.25
RECONNECT_MAX_SECONDS = 2.0


def reconnect_delay(failed_attempts: int, rand: Callable[[], float] = random.random,
                    first: float = FIRST_RETRY_SECONDS, cap: float = RECONNECT_MAX_SECONDS
                    ) -> float:
    """Seconds to wait before the next attempt after `failed_attempts` failed ones in a row:
    0 after none; else half of min(cap, first * 2^(n-1)) plus a random share of the other
    half."""
    if failed_attempts <= 0:
        return 0.0
    ceiling = min(cap, first * (2.0 ** min(failed_attempts - 1, 30)))
    return ceiling / 2.0 + rand() * ceiling / 2.0


# Answers to a SUBSCRIBE that retrying cannot change: wrong or missing credentials (401), a
# principal that is not the framework's or an invalid call (400), a forbidden one (403).
REFUSED_STATUSES = frozenset({400, 401, 403})
_refusal_handler: Callable[[str], None] | None = None


def on_subscription_refused(handler: Callable[[str], None] | None) -> None:
    """Call `handler(message)` when the master refuses a subscription for good (see
    REFUSED_STATUSES) instead of raising in pymesos's I/O thread (a traceback, then an
    interrupt of the main thread). The message names the status and the master's answer,
    never the secret."""
    global _refusal_handler
    _refusal_handler = handler


def _refusal_message(status: int, body: str, addr: tuple) -> str:
    where = f"{addr[0]}:{addr[1]}"
    if status == 401:
        return (f"the master {where} refused the framework's credentials (401 Unauthorized): "
                "check --principal and the secret (--secret-file / ACCESSD_FRAMEWORK_SECRET)")
    return f"the master {where} refused the subscription ({status}): {body.strip()}"


class _StartingMasterTolerantConnection(pymesos.process.Connection):
    def read(self):
        try:
            return super().read()
        except (RuntimeError, TypeError):
            # pymesos raises RuntimeError("Failed with HTTP 404: …"), or a TypeError of its own
            # when the body is not complete in the first read (`bytes += str`).
            status = self._status()
            if self.stream_id is None and status == 404:
                log.warning("master %s:%s answered 404 (starting, its API not up yet); "
                            "retrying", *self.addr)
                return False  # pymesos closes this connection; on_close paces the next one
            if self.stream_id is None and status in REFUSED_STATUSES and _refusal_handler:
                body = self._parser.recv_body() if self._parser is not None else b""
                text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
                _refusal_handler(_refusal_message(status, text, self.addr))
                return False
            raise

    def _status(self) -> int | None:
        parser = self._parser
        if parser is None or not parser.is_headers_complete():
            return None
        return parser.get_status_code()


def install_tolerant_connection() -> None:
    """Make pymesos's I/O loop build `_StartingMasterTolerantConnection`s (idempotent)."""
    pymesos.process.Connection = _StartingMasterTolerantConnection


class ReconnectingDriver(MesosSchedulerDriver):
    call_timeout = CALL_TIMEOUT_SECONDS  # seconds a synchronous call may wait for its answer

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        lograte.install()
        install_tolerant_connection()
        self._failed_attempts = 0
        self._attempting = False  # a connection started and has not SUBSCRIBED yet
        # ACKNOWLEDGE, DECLINE and KILL off the caller's thread (scheduler.async_calls)
        self.calls = CallSender(self)

    def acknowledgeStatusUpdate(self, status):  # noqa: N802 - pymesos's name
        if self.connected:
            self.calls.acknowledge(status)

    def killTask(self, task_id):  # noqa: N802 - pymesos's name
        if self.connected:
            self.calls.kill(task_id)

    def declineOffer(self, offer_ids, filters=None):  # noqa: N802 - pymesos's name
        if self.connected:
            self.calls.decline([offer_ids] if isinstance(offer_ids, dict) else list(offer_ids),
                               filters)

    def acceptOffersAsync(self, offer_ids, operations, filters, on_failure,  # noqa: N802
                          on_sent=None):
        """ACCEPT from a sender thread (`scheduler.async_calls`); `on_failure(reason)` if it
        is not delivered or refused (also at once when not connected), `on_sent()` once the
        master took it."""
        if not self.connected:
            on_failure("not connected to a master")
            return
        self.calls.accept(list(offer_ids), operations, filters, on_failure, on_sent)

    def stop(self, failover=False):
        super().stop(failover=failover)
        self.calls.close()

    def gen_request(self):  # pymesos: a new connection is about to SUBSCRIBE
        self._attempting = True
        return super().gen_request()

    def on_subscribed(self, info):
        self._attempting = False
        self._failed_attempts = 0
        super().on_subscribed(info)

    def on_close(self):
        """pymesos: a connection ended (refused, redirected, 503, or a stream that ended);
        its I/O loop opens the next one as soon as this returns."""
        super().on_close()
        if self._attempting:  # it never got as far as SUBSCRIBED
            self._attempting = False
            self._failed_attempts += 1
        delay = reconnect_delay(self._failed_attempts)
        if delay > 0:
            log.debug("subscription attempt %d in %.2fs", self._failed_attempts + 1, delay)
            self._pause(delay)

    def reconcileTasks(self, tasks):  # noqa: N802 - pymesos's name
        """pymesos sends only each `task_id`; Mesos answers by what it knows of the named
        `agent_id` too (unreachable, gone, registered, unknown), so it is kept."""
        if not self.connected:
            return
        self._send({"type": "RECONCILE", "framework_id": {"value": self.framework_id},
                    "reconcile": {"tasks": [{k: t[k] for k in ("task_id", "agent_id") if k in t}
                                            for t in tasks]}})

    def _get_conn(self):
        """pymesos's connection for the calls it makes on the caller's thread, with a bounded
        timeout (it applies when the connection is opened, which is after this returns)."""
        conn = super()._get_conn()
        if conn is not None:
            conn.timeout = self.call_timeout
        return conn

    def _get_version(self, master):
        """pymesos's `GET /version` of a new master, bounded like the calls; None when it
        cannot be had (pymesos then goes on without it, as it does on an error)."""
        if master is None:
            return None
        host, port = master.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=self.call_timeout)
        try:
            conn.request("GET", "/version")
            resp = conn.getresponse()
            body = resp.read()
            return json.loads(body)["version"] if 200 <= resp.status < 300 else None
        except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError) as exc:
            log.warning("GET /version from master %s: %r", master, exc)
            return None
        finally:
            conn.close()

    def _backoff(self, num_conn_retry):  # pymesos's sleep after a refused connection
        return 0  # gen_request waits instead, with the policy above

    def _pause(self, seconds: float) -> None:
        """Sleep on pymesos's I/O thread (it has nothing else to do while disconnected), but
        no longer than the driver runs."""
        deadline = time.monotonic() + seconds
        while not self.aborted:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(0.05, left))
