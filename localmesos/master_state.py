"""The master's /state document (and the /slaves, /frameworks views built from it).
A mixin of `master.Master`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from localmesos.frameworks import Framework
from localmesos.model import BUILD_DATE, BUILD_TIME, VERSION
from localmesos.resources import Resources

if TYPE_CHECKING:
    from localmesos.agent import Agent

MASTER_CAPABILITIES = ["AGENT_UPDATE", "AGENT_DRAINING", "QUOTA_V2"]
AGENT_CAPABILITIES = ["MULTI_ROLE", "HIERARCHICAL_ROLE", "RESERVATION_REFINEMENT",
                      "RESOURCE_PROVIDER", "RESIZE_VOLUME", "AGENT_OPERATION_FEEDBACK",
                      "AGENT_DRAINING", "TASK_RESOURCE_LIMITS"]



class MasterState:
    def _agent_state(self, a: Agent) -> dict[str, Any]:
        return {
            "id": a.id, "pid": a.pid, "hostname": a.hostname,
            "port": a.port, "attributes": a.attributes_state(), "registered_time": a.registered_time,
            "resources": a.total.to_state(), "used_resources": a.used().to_state(),
            "offered_resources": self._offered(a).to_state(), "reserved_resources": {},
            "unreserved_resources": a.total.to_state(), "active": not a.disconnected,
            "deactivated": a.disconnected,
            "version": VERSION, "capabilities": list(AGENT_CAPABILITIES),
        }

    def _framework_state(self, fw: Framework) -> dict[str, Any]:
        used = Resources()
        for t in fw.tasks.values():
            if not t.terminal:
                used = used + t.resources
        executors = []
        for a in self._agents():
            for ex in a.executors_of(fw.id):
                used = used + ex.resources
                executors.append({**{k: v for k, v in ex.info.items() if k != "resources"},
                                  "executor_id": ex.id, "framework_id": fw.id,
                                  "resources": ex.resources.to_state(), "slave_id": a.id})
        offered = Resources()
        for o in fw.offers.values():
            offered = offered + o.resources
        out: dict[str, Any] = {
            "id": fw.id, "name": fw.info.get("name", ""), "user": fw.info.get("user", ""),
            "hostname": fw.info.get("hostname", ""), "webui_url": fw.info.get("webui_url", ""),
            "failover_timeout": float(fw.info.get("failover_timeout") or 0.0),
            "checkpoint": bool(fw.info.get("checkpoint", False)),
            "capabilities": [c.get("type") for c in fw.info.get("capabilities") or []
                             if isinstance(c, dict)],
            "roles": fw.roles, "active": fw.connected, "connected": fw.connected,
            "recovered": fw.recovered, "registered_time": fw.registered_time,
            "unregistered_time": fw.unregistered_time,
            "resources": (used + offered).to_state(), "used_resources": used.to_state(),
            "offered_resources": offered.to_state(),
            "offers": [{"id": o.id, "framework_id": fw.id, "slave_id": o.agent.id,
                        "resources": o.resources.to_state(),
                        "allocation_info": {"role": o.role}} for o in fw.offers.values()],
            "tasks": [t.to_state() for t in fw.tasks.values()],
            "completed_tasks": [t.to_state() for t in fw.completed_tasks],
            "unreachable_tasks": [t.to_state() for t in fw.unreachable_tasks],
            "executors": executors, "offer_constraints": {},
        }
        if fw.reregistered_time is not None:
            out["reregistered_time"] = fw.reregistered_time
        if "principal" in fw.info:
            out["principal"] = fw.info["principal"]
        return out

    def state(self) -> dict[str, Any]:
        agents = self._agents()
        return {
            "version": VERSION, "build_date": BUILD_DATE, "build_time": BUILD_TIME,
            "build_user": "", "start_time": self.start_time, "elected_time": self.elected_time,
            "id": self.id, "pid": self.pid, "hostname": "localhost",
            "capabilities": list(MASTER_CAPABILITIES), "activated_slaves": float(len([a for a in agents if not a.disconnected])),
            "deactivated_slaves": float(len([a for a in agents if a.disconnected])),
            "unreachable_slaves": float(len(self.unreachable_agents)), "leader": self.pid,
            "leader_info": {"hostname": "localhost", "id": self.id, "pid": self.pid,
                            "port": self.port},
            "flags": self.cluster.flags(),
            "slaves": [self._agent_state(a) for a in agents], "recovered_slaves": [],
            "frameworks": [self._framework_state(fw) for fw in self.frameworks.values()],
            "completed_frameworks": [self._framework_state(fw) for fw in self.completed_frameworks],
            "orphan_tasks": [], "unregistered_frameworks": [],
        }
