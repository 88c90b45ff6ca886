"""accessd's executor's pymesos driver (`ExecutorDriver`): pymesos's `MesosExecutorDriver` with
the behaviours accessd's executor needs changed (see the class), and the reconnect pacing the
agent's re-registration window asks for."""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

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
    """

    executor: AccessdExecutor

    def __init__(self, executor: AccessdExecutor) -> None:
        super().__init__(executor, use_addict=False)
        self.checkpoint = os.environ.get("MESOS_CHECKPOINT", "0").strip() == "1"
        self.backoff_max = subscription_backoff_max(os.environ)

    def _backoff(self, num_conn_retry: int) -> float:  # pymesos: the wait before a reconnect
        return reconnect_delay(num_conn_retry, self.backoff_max)

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

    def _delay_kill(self) -> None:  # never called by the overrides above; kept inert on purpose
        return
