"""The master's records of a framework and of an outstanding offer."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from localmesos import recordio
from localmesos.httpserver import Stream
from localmesos.model import Task
from localmesos.resources import Resources

if TYPE_CHECKING:
    from localmesos.agent import Agent


class Offer:
    def __init__(self, oid: str, fw: Framework, agent: Agent, resources: Resources, role: str) -> None:
        self.id = oid
        self.framework = fw
        self.agent = agent
        self.resources = resources
        self.role = role
        self.timer: Any = None

    def proto(self) -> dict[str, Any]:
        a = self.agent
        return {
            "id": {"value": self.id}, "framework_id": {"value": self.framework.id},
            "agent_id": {"value": a.id}, "hostname": a.hostname,
            "url": {"scheme": "http", "path": "/slave(1)",
                    "address": {"hostname": a.hostname, "ip": a.ip, "port": a.port}},
            "resources": self.resources.to_proto(self.role, with_role=True, ranges_first=True),
            "attributes": a.attributes_proto(), "allocation_info": {"role": self.role},
        }


class Framework:
    def __init__(self, fid: str, info: dict[str, Any], seq: int) -> None:
        self.id = fid
        self.info = info
        self.seq = seq
        self.stream: Stream | None = None
        self.stream_id: str | None = None
        self.recovered = False
        now = time.time()
        self.registered_time = now
        self.reregistered_time: float | None = None
        self.unregistered_time = 0.0
        self.tasks: dict[str, Task] = {}
        self.completed_tasks: list[Task] = []
        self.unreachable_tasks: list[Task] = []
        self.offers: dict[str, Offer] = {}
        self.suppressed: set[str] = set()
        self.filters: list[tuple[str, Resources, float]] = []  # (agent id, refused, until)
        self.failover_timer: Any = None
        self.heartbeat_timer: Any = None

    @property
    def connected(self) -> bool:
        return self.stream is not None

    @property
    def roles(self) -> list[str]:
        roles = self.info.get("roles")
        if isinstance(roles, list) and roles:
            return [str(r) for r in roles]
        return [str(self.info.get("role") or "*")]

    def capable(self, name: str) -> bool:
        return any(isinstance(c, dict) and c.get("type") == name
                   for c in self.info.get("capabilities") or [])

    def send(self, event: dict[str, Any]) -> bool:
        if self.stream is None:
            return False
        return self.stream.send(recordio.encode(event))
