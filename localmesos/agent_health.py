"""The master's view of an agent's health, as a Mesos master keeps it.

- An agent whose process stops (`Agent.go_down`) is disconnected at once: its offers are
  rescinded and it gets no more; its tasks stay as they are.
- If it does not answer `max_agent_ping_timeouts` pings of `agent_ping_timeout` each (Mesos:
  5 x 15 s), it becomes unreachable: its tasks are reported TASK_UNREACHABLE to PARTITION_AWARE
  frameworks (`REASON_AGENT_REMOVED`, "health check timed out", `unreachable_time`) and
  TASK_LOST to the others, and every framework gets a FAILURE (slaveLost), as recorded in
  partition_aware.json.
- An unreachable agent that re-registers gives partition-aware frameworks their tasks back
  (TASK_RUNNING, `REASON_AGENT_REREGISTERED`, "Unreachable agent re-reregistered"); the tasks of
  the other frameworks, already reported lost, are killed on it.
- An agent an operator marks gone (`MARK_AGENT_GONE`) has its processes killed and its tasks
  reported TASK_GONE_BY_OPERATOR (TASK_LOST to frameworks that are not partition-aware).
A mixin of `master.Master`; under the cluster lock.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from localmesos.model import Task, make_status

if TYPE_CHECKING:
    from localmesos.agent import Agent

log = logging.getLogger("localmesos.master")


class AgentHealth:
    def agent_disconnected(self, agent: Agent) -> None:
        for offer in [o for o in self.offers.values() if o.agent is agent]:
            self._remove_offer(offer)
            offer.framework.send({"type": "RESCIND", "rescind": {"offer_id": {"value": offer.id}}})
        timeout = self.opts.agent_ping_timeout * self.opts.max_agent_ping_timeouts
        self._cancel_ping_timer(agent)
        self.ping_timers[agent.id] = self.cluster.timers.call_later(
            timeout, self._pings_missed, agent, self.id)
        log.info("agent %s (%s) disconnected; unreachable in %gs unless it comes back", agent.id,
                 agent.hostname, timeout)

    def _cancel_ping_timer(self, agent: Agent) -> None:
        timer = self.ping_timers.pop(agent.id, None)
        if timer is not None:
            timer.cancel()

    def cancel_ping_timers(self) -> None:
        """A master failing over: the new master process has none of the old one's timers."""
        for timer in self.ping_timers.values():
            timer.cancel()
        self.ping_timers.clear()

    def _pings_missed(self, agent: Agent, master_id: str) -> None:
        if master_id != self.id:  # started by an earlier master incarnation
            return
        self.ping_timers.pop(agent.id, None)
        if not agent.disconnected or agent.id not in self.agents:
            return
        log.info("agent %s (%s) did not answer %d pings: unreachable", agent.id, agent.hostname,
                 self.opts.max_agent_ping_timeouts)
        self.agents.pop(agent.id, None)
        self.unreachable_agents[agent.id] = agent
        now = time.time()
        self.unreachable_since[agent.id] = now
        for task in agent.live_tasks():
            if task.terminal:
                continue
            fw = self.frameworks.get(task.framework_id)
            if fw is None:
                continue
            aware = fw.capable("PARTITION_AWARE")
            status = make_status(task.id, "TASK_UNREACHABLE" if aware else "TASK_LOST",
                                 "SOURCE_MASTER", agent_id=agent.id,
                                 message="health check timed out", reason="REASON_AGENT_REMOVED")
            status["unreachable_time"] = {"nanoseconds": int(now * 1e9)}
            # The task object is the agent's too, and it still runs there: only the master's
            # view changes.
            fw.tasks.pop(task.id, None)
            if aware:
                fw.unreachable_tasks.append(task)
            else:
                self._complete(fw, task)
            fw.send({"type": "UPDATE", "update": {"status": status}})
        for fw in self.frameworks.values():
            fw.send({"type": "FAILURE", "failure": {"agent_id": {"value": agent.id}}})
        self.allocate_soon()

    def agent_reregistered(self, agent: Agent) -> None:
        """The agent process is back (same id) after `Agent.recover`."""
        self._cancel_ping_timer(agent)
        was_unreachable = self.unreachable_agents.pop(agent.id, None) is not None
        self.unreachable_since.pop(agent.id, None)
        self.agents[agent.id] = agent
        if was_unreachable:
            for task in agent.live_tasks():
                fw = self.frameworks.get(task.framework_id)
                if task.terminal or fw is None:
                    continue
                if task in fw.unreachable_tasks:
                    fw.unreachable_tasks.remove(task)
                    fw.tasks[task.id] = task
                    status = make_status(task.id, task.state, "SOURCE_MASTER", agent_id=agent.id,
                                         message="Unreachable agent re-reregistered",
                                         reason="REASON_AGENT_REREGISTERED",
                                         container_status=task.container_status())
                    fw.send({"type": "UPDATE", "update": {"status": status}})
                elif not fw.capable("PARTITION_AWARE") and task.id not in fw.tasks:
                    log.info("killing task %s of framework %s on re-registered agent %s: the "
                             "framework is not partition-aware", task.id, fw.id, agent.id)
                    agent.kill_task(task)
        held, agent.held_kills = agent.held_kills, {}
        for task in agent.live_tasks():
            if task.id in held:  # KILLs asked for while it was disconnected
                agent.kill_task(task, held[task.id])
        log.info("agent %s (%s) re-registered%s", agent.id, agent.hostname,
                 " after being unreachable" if was_unreachable else "")
        self.allocate_soon()

    def mark_gone(self, agent: Agent) -> list[Task]:
        """MARK_AGENT_GONE: the agent will never come back; its processes are killed."""
        self._cancel_ping_timer(agent)
        self.agents.pop(agent.id, None)
        self.unreachable_agents.pop(agent.id, None)
        self.gone_agents.add(agent.id)
        agent.marked_gone = True
        for offer in [o for o in self.offers.values() if o.agent is agent]:
            self._remove_offer(offer)
            offer.framework.send({"type": "RESCIND", "rescind": {"offer_id": {"value": offer.id}}})
        if agent.running:
            tasks = agent.stop("marked gone by the operator")
        else:  # a lost machine: what the master still holds of it
            tasks = [t for fw in self.frameworks.values() for t in fw.unreachable_tasks
                     if t.agent_id == agent.id]
        for task in tasks:
            fw = self.frameworks.get(task.framework_id)
            if fw is None:
                continue
            known = fw.tasks.pop(task.id, None) is not None
            if task in fw.unreachable_tasks:
                fw.unreachable_tasks.remove(task)
                known = True
            if task.terminal and known:
                self._complete(fw, task)
            if task.terminal or not known:  # ended, or reported lost when it became unreachable
                continue
            aware = fw.capable("PARTITION_AWARE")
            status = make_status(task.id, "TASK_GONE_BY_OPERATOR" if aware else "TASK_LOST",
                                 "SOURCE_MASTER", agent_id=agent.id,
                                 message="Agent has been marked gone",
                                 reason="REASON_AGENT_REMOVED_BY_OPERATOR")
            task.record(status)
            self._complete(fw, task)
            fw.send({"type": "UPDATE", "update": {"status": status}})
        for fw in self.frameworks.values():
            fw.send({"type": "FAILURE", "failure": {"agent_id": {"value": agent.id}}})
        log.info("agent %s (%s) marked gone; %d tasks gone", agent.id, agent.hostname,
                 len(tasks))
        self.allocate_soon()
        return tasks

    def agent_status(self, agent_id: str) -> str:
        """"registered", "unreachable", "gone" or "unknown", for reconciliation."""
        if agent_id in self.agents:
            return "registered"
        if agent_id in self.unreachable_agents:
            return "unreachable"
        if agent_id in self.gone_agents:
            return "gone"
        return "unknown"

