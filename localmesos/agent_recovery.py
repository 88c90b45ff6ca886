"""Agent restart with its executors kept, as a Mesos agent with checkpointing does.

`go_down()`: the agent process dies (its HTTP port refuses connections, executor streams end),
while executor and task processes keep running; updates made meanwhile are kept, not sent.
`recover()`: the agent listens on the same port again, re-registers with the master under the
same agent id, forwards the kept updates and gives every live executor
`executor_reregistration_timeout` (Mesos: 2 s) to SUBSCRIBE again. As a real agent process that
has just started, its executor API first answers `404 Not Found.` for a moment (its routes are
not installed yet), then `503` "Agent has not finished recovery"; the window opens after both
(`AGENT_STARTING_SECONDS`, `AGENT_RECOVERING_SECONDS`: a real 1.12 agent probed from its start,
`tests/data/mesos-1.12/agent_start_answers.json`). The agent re-registers with the master only
once that window has closed ("Finished recovery", then "Re-registered with master",
`AGENT_REREGISTER_SECONDS` later): until then the master sees it disconnected (nothing offered
from it, KILLs not delivered) and its status updates are held. An executor that does not
SUBSCRIBE is killed
("Killing un-reregistered executor") and its tasks end TASK_LOST (TASK_GONE for PARTITION_AWARE
frameworks), `REASON_EXECUTOR_REREGISTRATION_TIMEOUT`, "Executor did not reregister within
2secs". An executor that exited while the agent was away ends as any executor exit does (its
tasks TASK_FAILED, `REASON_EXECUTOR_TERMINATED`). Executors and command tasks of frameworks
without checkpointing are not recovered: they are killed and their tasks end TASK_LOST
(TASK_GONE) "Task is unknown to the agent". A mixin of `agent.Agent`; under the cluster lock.
"""

from __future__ import annotations

import logging
import signal
import time

from localmesos.httpserver import Response
from localmesos.model import Executor, mesos_duration
from localmesos.procs import kill_tree

log = logging.getLogger("localmesos.agent")

# How long a restarted agent's executor API answers 404, then 503, before executors may SUBSCRIBE
# (a real 1.12 agent: 404 for 25-35 ms once its port opens, then 503 for 12-45 ms).
AGENT_STARTING_SECONDS = 0.03
AGENT_RECOVERING_SECONDS = 0.05
# ... and from the end of its executors' re-registration window to its re-registration with the
# master (a real one: 0.34 s and 0.58 s in two restarts)
AGENT_REREGISTER_SECONDS = 0.4


class AgentRecovery:
    recoveries = 0  # recoveries so far: the re-registration window a timer belongs to
    starting_until = 0.0    # (monotonic) the executor API answers 404 until then
    recovering_until = 0.0  # ... and 503 until then
    registering = False     # recovered, not yet re-registered with the master

    @property
    def disconnected(self) -> bool:
        """As the master sees the agent: its process is down, or back but not re-registered."""
        return self.down or self.registering

    def go_down(self) -> None:
        """The agent process exits; its executors and tasks keep running."""
        self.down = True
        for ex in self.executors.values():
            ex.subscribed = False
            if ex.stream is not None:
                ex.stream.close()
                ex.stream = None
        for timer, _ in self.retry.values():
            timer.cancel()
        self.retry.clear()
        self.server.stop()
        log.info("agent %s (%s) process stopped; %d executors and %d tasks keep running",
                 self.id, self.hostname, len([e for e in self.executors.values() if not e.exited]),
                 len([t for t in self.tasks.values() if not t.terminal]))

    def recover(self, starting: float = AGENT_STARTING_SECONDS,
                recovering: float = AGENT_RECOVERING_SECONDS) -> float:
        """The agent process starts again with its work dir: same id, executors waited for, once
        its executor API has answered 404 for `starting` seconds and 503 for `recovering`.
        Returns the seconds after which it re-registers with the master (`reregistered`)."""
        self.server.reopen()
        self.down = False
        self.registering = True
        now = time.monotonic()
        self.starting_until = now + starting
        self.recovering_until = now + starting + recovering
        # Each recovery opens its own window: a timer left by an earlier recovery (the agent
        # went down again before it fired) must not close this one early.
        self.recoveries += 1
        window = starting + recovering + self.cluster.opts.executor_reregistration_timeout
        for ex in list(self.executors.values()):
            if ex.exited:
                continue
            if not self._checkpointing(ex.framework_id):
                self._not_recovered(ex.framework_id, list(ex.tasks.values()))
                ex.shutting_down = True
                if ex.pid is not None:
                    kill_tree(ex.pid, signal.SIGKILL)
                continue
            if ex.exit_while_down is not None:
                self._executor_gone(ex, ex.exit_while_down, "Executor terminated")
                continue
            ex.recovering = True
            ex.timers.append(self.cluster.timers.call_later(window, self._reregistration_expired,
                                                            ex, self.recoveries))
        for task in list(self.tasks.values()):
            if task.executor is None and not task.terminal \
                    and not self._checkpointing(task.framework_id):
                self._not_recovered(task.framework_id, [task])
                if task.pid is not None:
                    kill_tree(task.pid, signal.SIGKILL)
        log.info("agent %s (%s) recovered; waiting %s for %d executors to re-subscribe",
                 self.id, self.hostname, mesos_duration(window),
                 len([e for e in self.executors.values() if e.recovering]))
        return window + AGENT_REREGISTER_SECONDS

    def reregistered(self) -> None:
        """Re-registered with the master: the held status updates go out."""
        self.registering = False
        for key in list(self.pending):
            self._forward(key, self.cluster.opts.status_update_retry)

    def start_refusal(self) -> Response | None:
        """What the executor API answers while the agent process is starting, else None."""
        now = time.monotonic()
        if now < self.starting_until:
            return Response.text(404, "404 Not Found.")
        if now < self.recovering_until:
            return Response.text(503, "Agent has not finished recovery")
        return None

    def _checkpointing(self, fid: str) -> bool:
        return bool((self.framework_infos.get(fid) or {}).get("checkpoint"))

    def _partition_aware(self, fid: str) -> bool:
        return any(isinstance(c, dict) and c.get("type") == "PARTITION_AWARE"
                   for c in (self.framework_infos.get(fid) or {}).get("capabilities") or [])

    def _not_recovered(self, fid: str, tasks: list) -> None:
        state = "TASK_GONE" if self._partition_aware(fid) else "TASK_LOST"
        for task in tasks:
            if not task.terminal:
                self._update(task, state, "SOURCE_AGENT", message="Task is unknown to the agent",
                             reason="REASON_TASK_UNKNOWN")

    def _reregistration_expired(self, ex: Executor, recovery: int) -> None:
        if (not ex.recovering or ex.subscribed or ex.exited or self.down
                or recovery != self.recoveries):
            return
        ex.recovering = False
        window = mesos_duration(self.cluster.opts.executor_reregistration_timeout)
        log.info("Killing un-reregistered executor '%s' of framework %s", ex.id, ex.framework_id)
        state = "TASK_GONE" if self._partition_aware(ex.framework_id) else "TASK_LOST"
        for task in list(ex.tasks.values()):
            if not task.terminal:
                self._update(task, state, "SOURCE_AGENT",
                             message=f"Executor did not reregister within {window}",
                             reason="REASON_EXECUTOR_REREGISTRATION_TIMEOUT")
        ex.shutting_down = True
        if ex.pid is not None:
            kill_tree(ex.pid, signal.SIGKILL)
