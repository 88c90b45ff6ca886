"""accessd's executor's pymesos driver (`ExecutorDriver`): pymesos's `MesosExecutorDriver` with
the behaviours accessd's executor needs changed (see the class), and the reconnect pacing the
agent's re-registration window asks for.

A real agent that has just started answers the executor API `404 Not Found.` for a moment
(its routes are not installed yet), then `503` while it recovers
(`tests/data/mesos-1.12/agent_start_answers.json`). pymesos raises on any answer but 200, 307
and 503, which ends its I/O thread and, through `interrupt_main`, the executor: it shut its tasks
down, and the agent, waiting for a SUBSCRIBE that never came, killed it ("Killing
un-reregistered executor", the tasks TASK_GONE). That was the conformance lane's intermittent
`test_agent_restart_keeps_executors` failure on a real agent: an executor whose retry fell in
the 25-35 ms of 404s. pymesos builds each connection from its module's `Connection`, with no
hook, so the executor process puts in `_StartingAgentTolerantConnection` (as the scheduler's
driver does for a starting master).
"""

from __future__ import annotations

import logging
import os
import random
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import pymesos.process
from pymesos import MesosExecutorDriver

if TYPE_CHECKING:
    from executor.executor import AccessdExecutor

log = logging.getLogger("executor")


DEFAULT_SUBSCRIPTION_BACKOFF_MAX = 2.0  # Mesos's default when the agent sets none
FIRST_RECONNECT_DELAY = 0.1


def subscription_backoff_max(env: Mapping[str, str]) -> float:
    """`MESOS_SUBSCRIPTION_BACKOFF_MAX` in seconds (a Mesos duration such as `2secs`)."""
    from pymesos.utils import parse_duration

    text = (env.get("MESOS_SUBSCRIPTION_BACKOFF_MAX") or "").strip()
    if text:
        try:
            seconds = float(parse_duration(text))
            if seconds > 0:
                return seconds
        except (AssertionError, ValueError):
            log.warning("MESOS_SUBSCRIPTION_BACKOFF_MAX=%r is not a duration; using %gs", text,
                        DEFAULT_SUBSCRIPTION_BACKOFF_MAX)
    return DEFAULT_SUBSCRIPTION_BACKOFF_MAX


def reconnect_delay(attempt: int, backoff_max: float, rand: Callable[[], float] = random.random
                    ) -> float:
    """Seconds to wait before reconnect attempt `attempt + 1` (0-based): exponential from
    0.1 s, fully jittered, never over half of `backoff_max`."""
    ceiling = min(backoff_max / 2.0, FIRST_RECONNECT_DELAY * (2.0 ** min(attempt, 30)))
    return ceiling * rand()


class _StartingAgentTolerantConnection(pymesos.process.Connection):
    """pymesos's connection, taking a 404 *before the subscription is answered* as "the agent
    is starting": the connection ends and the driver tries again after its pause. Any other
    failure, and a 404 on a subscribed stream, still raise as before."""

    def read(self) -> bool:
        try:
            return super().read()
        except (RuntimeError, TypeError):
            # pymesos raises RuntimeError("Failed with HTTP 404: …"), or a TypeError of its own
            # when the body is not complete in the first read (`bytes += str`).
            parser = self._parser
            status = (parser.get_status_code()
                      if parser is not None and parser.is_headers_complete() else None)
            if self.stream_id is None and status == 404:
                log.warning("agent %s:%s answered 404 (starting, its API not up yet); retrying",
                            *self.addr)
                return False  # pymesos closes this connection; on_close paces the next one
            raise


def install_tolerant_connection() -> None:
    """Make pymesos's I/O loop build `_StartingAgentTolerantConnection`s, unless a tolerant
    connection of the same kind is in already (the scheduler's, in a process running both)."""
    if pymesos.process.Connection is _PYMESOS_CONNECTION:
        pymesos.process.Connection = _StartingAgentTolerantConnection


_PYMESOS_CONNECTION = _StartingAgentTolerantConnection.__bases__[0]


class ExecutorDriver(MesosExecutorDriver):
    """pymesos's driver with the few behaviours accessd's executor needs changed.

    - `MESOS_CHECKPOINT` is "0" or "1"; pymesos's `bool(env.get(...))` reads "0" as true.
    - KILL events carry an optional `kill_policy`; pymesos drops it.
    - ACKNOWLEDGED events are forwarded (pymesos keeps them to itself), so the executor knows
      when it may exit.
    - SHUTDOWN does not abort the driver at once: the executor stops it after its TASK_KILLED
      updates went out. pymesos's delayed `killpg(0, SIGKILL)` is replaced by the executor's own
      watchdog, which kills task groups only (our process group may not be ours alone).
    - Reconnecting to the agent honours `MESOS_SUBSCRIPTION_BACKOFF_MAX` (Mesos: 2 s). pymesos
      sleeps 2, 4, 8, then 15 s between attempts, so after an agent restart it came back after
      the agent's `--executor_reregistration_timeout` (2 s) and was killed with its tasks. Here
      each wait is drawn from [0, min(cap, 0.1 s * 2^attempt)] with the cap half of
      MESOS_SUBSCRIPTION_BACKOFF_MAX, so at least one attempt falls in any window that long.
    - That wait comes after *every* connection that ended without a subscription (pymesos only
      waited after a refused connect, and retried a 503 or a closed stream at once: a
      recovering agent got hundreds of SUBSCRIBEs a second from each executor), as the Mesos
      executor library's backoff does; it is counted from the last subscription and cut short
      by `stop()`.
    - A 404 from a starting agent is retried (`_StartingAgentTolerantConnection`).
    """

    executor: AccessdExecutor

    def __init__(self, executor: AccessdExecutor) -> None:
        super().__init__(executor, use_addict=False)
        self.checkpoint = os.environ.get("MESOS_CHECKPOINT", "0").strip() == "1"
        self.backoff_max = subscription_backoff_max(os.environ)
        self._unanswered = 0  # connections ended since the last subscription
        self._stopping = threading.Event()
        install_tolerant_connection()

    def _backoff(self, num_conn_retry: int) -> float:  # pymesos: its sleep after a refused
        return 0.0  # connect; `on_close`, called just before it, has waited already

    def on_subscribed(self, info: dict) -> None:
        self._unanswered = 0
        super().on_subscribed(info)

    def stop(self) -> None:
        self._stopping.set()
        super().stop()

    def on_kill(self, event: dict) -> None:
        self.executor.kill_task(event.get("task_id"), event.get("kill_policy"))

    def on_acknowledged(self, event: dict) -> None:
        super().on_acknowledged(event)
        self.executor.acknowledged(event["task_id"]["value"], event["uuid"])

    def on_shutdown(self) -> None:
        self.executor.shutdown(self)

    def on_close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self.executor.disconnected(self)
        # Never registered: the agent may not listen yet; pymesos retries, main's timeout bounds it.
        if (not self.checkpoint and self.executor.registered_event.is_set()
                and not self.executor.done.is_set()):
            self.executor.shutdown(self)
        self._pace_reconnect()

    def _pace_reconnect(self) -> None:
        """The wait before pymesos's I/O thread (this one) opens the next connection."""
        if self._stopping.is_set() or self.executor.done.is_set():
            return
        delay = reconnect_delay(self._unanswered, self.backoff_max)
        self._unanswered += 1
        self._stopping.wait(delay)

    def _delay_kill(self) -> None:  # never called by the overrides above; kept inert on purpose
        return
