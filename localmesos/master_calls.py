"""The master's handlers of the scheduler calls other than SUBSCRIBE: ACCEPT (launch checks),
DECLINE and refuse filters, REVIVE/SUPPRESS, KILL, ACKNOWLEDGE, RECONCILE, MESSAGE, SHUTDOWN,
UPDATE_FRAMEWORK. A mixin of `master.Master`; all run under the cluster lock."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from localmesos.frameworks import Framework, Offer
from localmesos.httpserver import Response
from localmesos.model import Task, grace_seconds, id_problem, make_status, value
from localmesos.resources import Resources, format_proto, from_proto

if TYPE_CHECKING:
    from localmesos.agent import Agent

log = logging.getLogger("localmesos.master")

DEFAULT_REFUSE_SECONDS = 5.0
# agent status -> (state for a partition-aware framework, message) of a reconciled task the
# master does not hold
RECONCILED = {
    "registered": ("TASK_GONE", "Task is unknown to the agent"),
    "unreachable": ("TASK_UNREACHABLE", "Task is unreachable"),
    "gone": ("TASK_GONE_BY_OPERATOR", "Task is gone"),
    "unknown": ("TASK_UNKNOWN", "Task is unknown"),
}


class SchedulerCalls:
    def _call_teardown(self, fw: Framework, call: dict[str, Any]) -> None:
        log.info("framework %s asked for TEARDOWN", fw.id)
        self.remove_framework(fw)

    def _call_accept(self, fw: Framework, call: dict[str, Any]) -> None:
        acc = call["accept"]
        offer_ids = [value({"x": o}, "x") or "" for o in acc.get("offer_ids") or []]
        ops = [op for op in acc.get("operations") or [] if isinstance(op, dict)]
        offers: list[Offer] = []
        error = None
        if not offer_ids:
            error = "No offers specified"
        for oid in offer_ids:
            offer = self.offers.get(oid)
            if offer is None or offer.framework is not fw:
                error = error or f"Offer {oid} is no longer valid"
            elif offer not in offers:
                offers.append(offer)
        if error is None and len({o.agent.id for o in offers}) > 1:
            error = "Aggregated offers must belong to one single agent"
        for offer in offers:
            self._remove_offer(offer)
        launches: list[dict[str, Any]] = []
        for op in ops:
            if op.get("type") == "LAUNCH":
                launches.extend(t for t in (op.get("launch") or {}).get("task_infos") or []
                                if isinstance(t, dict))
            elif op.get("type") == "LAUNCH_GROUP":
                for ti in ((op.get("launch_group") or {}).get("task_group") or {}).get("tasks") or []:
                    self._master_update(fw, ti, "TASK_ERROR", "REASON_TASK_GROUP_INVALID",
                                        "LAUNCH_GROUP is not supported by localmesos")
        if error is not None:
            for ti in launches:
                self._master_update(fw, ti, "TASK_LOST", "REASON_INVALID_OFFERS",
                                    f"Task launched with invalid offers: {error}")
            log.info("framework %s: ACCEPT with invalid offers: %s", fw.id, error)
            self.allocate_soon()
            return
        agent = offers[0].agent
        role = offers[0].role
        available = Resources()
        for offer in offers:
            available = available + offer.resources
        used = Resources()
        new_executors: set[str] = set()
        for ti in launches:
            problem, need = self._check_task(fw, agent, ti, available - used, role, new_executors)
            if problem is not None:
                self._master_update(fw, ti, "TASK_ERROR", "REASON_TASK_INVALID", problem)
                continue
            used = used + need
            if "executor" in ti:
                new_executors.add(value(ti["executor"], "executor_id") or "")
            task = agent.launch(fw.id, fw.info, ti, from_proto(ti.get("resources")), role)
            fw.tasks[task.id] = task
            log.info("framework %s: launching task %s on %s", fw.id, task.id, agent.hostname)
        leftover = available - used
        self._add_filter(fw, agent, leftover, acc.get("filters"))
        self.allocate_soon()

    def _check_task(self, fw: Framework, agent: Agent, ti: dict[str, Any], available: Resources,
                    role: str, new_executors: set[str]) -> tuple[str | None, Resources]:
        tid = value(ti, "task_id") or ""
        problem = id_problem("TaskID", tid)
        if problem is not None:
            return problem, Resources()
        if tid in fw.tasks:
            return f"Task has duplicate ID: {tid}", Resources()
        if value(ti, "agent_id") != agent.id:
            return (f"Task uses invalid agent: {value(ti, 'agent_id')} (the offers are for "
                    f"agent {agent.id})"), Resources()
        if ("command" in ti) == ("executor" in ti):
            return ("Task should have at least one (but not both) of CommandInfo or "
                    "ExecutorInfo present"), Resources()
        try:
            need = from_proto(ti.get("resources"))
            exec_items: list[dict[str, Any]] = []
            if "executor" in ti:
                ex = ti["executor"]
                eid = value(ex, "executor_id") or ""
                problem = id_problem("ExecutorID", eid)
                if problem is not None:
                    return problem, Resources()
                if not isinstance(ex.get("command"), dict):
                    return f"Executor {eid} has no command", Resources()
                if not agent.has_executor(fw.id, eid) and eid not in new_executors:
                    exec_items = list(ex.get("resources") or [])
                    need = need + from_proto(exec_items)
        except ValueError as exc:
            return f"Invalid task resources: {exc}", Resources()
        if not available.contains(need):
            task_items = list(ti.get("resources") or []) + exec_items
            have = available.to_proto(role, ranges_first=True)
            return (f"Total resources {format_proto(task_items)} required by task and its "
                    f"executor is more than available {format_proto(have)}"), Resources()
        return None, need

    def _master_update(self, fw: Framework, ti: dict[str, Any], state: str, reason: str,
                       message: str) -> None:
        status = make_status(value(ti, "task_id") or "", state, "SOURCE_MASTER",
                             agent_id=value(ti, "agent_id"), message=message, reason=reason)
        fw.send({"type": "UPDATE", "update": {"status": status}})

    def _call_decline(self, fw: Framework, call: dict[str, Any]) -> None:
        dec = call["decline"]
        for o in dec.get("offer_ids") or []:
            offer = self.offers.get(value({"x": o}, "x") or "")
            if offer is None or offer.framework is not fw:
                continue
            self._remove_offer(offer)
            self._add_filter(fw, offer.agent, offer.resources, dec.get("filters"))
        self.allocate_soon()

    def _add_filter(self, fw: Framework, agent: Agent, res: Resources, filters: Any) -> None:
        refuse = DEFAULT_REFUSE_SECONDS
        if isinstance(filters, dict) and isinstance(filters.get("refuse_seconds"), (int, float)):
            refuse = float(filters["refuse_seconds"])
            if refuse < 0:
                refuse = DEFAULT_REFUSE_SECONDS
        if refuse <= 0 or res.empty():
            return
        refuse = min(refuse, 365 * 86400.0)
        fw.filters.append((agent.id, res, time.monotonic() + refuse))
        self.cluster.timers.call_later(refuse + 0.001, self.allocate_soon)

    def _call_revive(self, fw: Framework, call: dict[str, Any]) -> None:
        roles = (call.get("revive") or {}).get("roles") or fw.roles
        fw.suppressed -= set(roles)
        fw.filters = []
        self.allocate_soon()

    def _call_suppress(self, fw: Framework, call: dict[str, Any]) -> None:
        roles = (call.get("suppress") or {}).get("roles") or fw.roles
        fw.suppressed |= set(roles)

    def _call_kill(self, fw: Framework, call: dict[str, Any]) -> None:
        kill = call["kill"]
        tid = value(kill, "task_id") or ""
        task = fw.tasks.get(tid)
        if task is None:
            log.info("framework %s: KILL of unknown task %s; reconciling", fw.id, tid)
            self._reconcile(fw, [{"task_id": {"value": tid}, **(
                {"agent_id": kill["agent_id"]} if value(kill, "agent_id") else {})}])
            return
        if task.terminal:
            return
        if task.agent.disconnected:
            # As a real master: kept, and sent when the agent re-registers (`killedTasks`).
            log.info("framework %s: cannot kill task %s now: its agent %s is disconnected; the "
                     "kill is sent when it re-registers", fw.id, tid, task.agent.id)
            task.agent.held_kills[task.id] = grace_seconds(kill.get("kill_policy"))
            return
        task.agent.kill_task(task, grace_seconds(kill.get("kill_policy")))

    def _call_acknowledge(self, fw: Framework, call: dict[str, Any]) -> None:
        ack = call["acknowledge"]
        agent = self.agents.get(value(ack, "agent_id") or "")
        if agent is not None and not agent.disconnected:  # it resends it when back
            agent.acknowledge(fw.id, value(ack, "task_id") or "", ack["uuid"])

    def _call_reconcile(self, fw: Framework, call: dict[str, Any]) -> None:
        self._reconcile(fw, [t for t in call["reconcile"].get("tasks") or [] if isinstance(t, dict)])

    def _reconcile(self, fw: Framework, wanted: list[dict[str, Any]]) -> None:
        aware = fw.capable("PARTITION_AWARE")
        if not wanted:
            for task in list(fw.tasks.values()):
                fw.send({"type": "UPDATE", "update": {"status": self._latest(task)}})
            return
        # A task the master does not hold: the answer depends on what it knows of the agent the
        # scheduler names (without one, TASK_UNKNOWN, even for an unreachable task, as
        # recorded in partition_aware.json); frameworks that are not partition-aware get
        # TASK_LOST whatever the case.
        for item in wanted:
            tid = value(item, "task_id") or ""
            aid = value(item, "agent_id")
            task = fw.tasks.get(tid)
            if task is not None:
                fw.send({"type": "UPDATE", "update": {"status": self._latest(task)}})
                continue
            known = self.agent_status(aid) if aid is not None else "unknown"
            state, message = RECONCILED[known]
            status = make_status(tid, state if aware else "TASK_LOST", "SOURCE_MASTER",
                                 agent_id=aid, message=f"Reconciliation: {message}",
                                 reason="REASON_RECONCILIATION")
            if known == "unreachable":
                status["unreachable_time"] = {"nanoseconds": int(
                    self.unreachable_since.get(aid, 0.0) * 1e9)}
            fw.send({"type": "UPDATE", "update": {"status": status}})

    def _latest(self, task: Task) -> dict[str, Any]:
        status = make_status(task.id, task.state, "SOURCE_MASTER", agent_id=task.agent_id,
                             message="Reconciliation: Latest task state",
                             reason="REASON_RECONCILIATION",
                             container_status=task.container_status())
        if task.latest is not None:
            for k in ("healthy", "labels", "data"):
                if k in task.latest:
                    status[k] = task.latest[k]
        return status

    def _call_message(self, fw: Framework, call: dict[str, Any]) -> None:
        msg = call["message"]
        agent = self.agents.get(value(msg, "agent_id") or "")
        if agent is not None:
            agent.framework_message(fw.id, value(msg, "executor_id") or "", msg.get("data", ""))

    def _call_shutdown(self, fw: Framework, call: dict[str, Any]) -> None:
        sd = call["shutdown"]
        agent = self.agents.get(value(sd, "agent_id") or "")
        if agent is not None:
            agent.shutdown_executor(fw.id, value(sd, "executor_id") or "")

    def _call_update_framework(self, fw: Framework, call: dict[str, Any]) -> Response:
        info = (call["update_framework"] or {}).get("framework_info")
        if isinstance(info, dict):
            info = dict(info)
            info["id"] = {"value": fw.id}
            fw.info = info
        return Response(200)
