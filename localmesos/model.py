"""Plain state objects shared by the master and the agents, and the TaskStatus builder.

One process holds the whole cluster, so a task is one `Task` object: the agent that runs it and
the master's framework view point at the same object. Every field is read and written under the
cluster lock only.

Invariants:
- `Task.state` is the latest state (what reconciliation and /state report); `Task.statuses` is
  its history, one entry per state change, in the /state form.
- A terminal task holds no resources (`Agent.used` skips it), even while its terminal status
  update still waits for the scheduler's acknowledgement.
"""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

from localmesos.resources import Resources

TERMINAL = frozenset({"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST",
                      "TASK_DROPPED", "TASK_GONE", "TASK_GONE_BY_OPERATOR"})

VERSION = "1.12.0"
BUILD_DATE = "2026-11-23 23:10:04"
BUILD_TIME = 1795475404.0


_DURATION_UNITS = [(7 * 86400.0, "weeks"), (86400.0, "days"), (3600.0, "hrs"), (60.0, "mins"),
                   (1.0, "secs"), (1e-3, "ms"), (1e-6, "us")]


def mesos_duration(seconds: float) -> str:
    """A duration as Mesos writes it (stout's Duration): the largest unit it reaches, e.g.
    `2secs`, `15mins`, `1.5mins`, `500ms`."""
    for unit, suffix in _DURATION_UNITS:
        if seconds >= unit:
            return f"{seconds / unit:g}{suffix}"
    return f"{seconds * 1e9:g}ns"


def value(obj: Any, key: str) -> str | None:
    """`obj[key]["value"]` for the `{"value": ..}` id wrappers, None when missing or malformed."""
    if not isinstance(obj, dict):
        return None
    inner = obj.get(key)
    if isinstance(inner, dict) and isinstance(inner.get("value"), str):
        return inner["value"]
    return None


def id_problem(kind: str, text: str) -> str | None:
    """Mesos's ID rules (ids name sandbox directories): None when `text` is a valid id."""
    if not text:
        return f"'{kind}.value' must not be empty"
    if len(text) > 255:
        return f"'{kind}.value' must not be greater than 255 characters"
    if text in (".", ".."):
        return f"'{kind}.value' '{text}' is disallowed"
    if any(c in "/\\" or ord(c) < 32 or ord(c) == 127 for c in text):
        return f"'{kind}.value' '{text}' contains invalid characters"
    return None


def new_uuid_b64() -> str:
    """A status update uuid as the v1 JSON API carries it: base64 of the 16 raw bytes."""
    return base64.b64encode(uuid.uuid4().bytes).decode("ascii")


def valid_uuid_b64(text: Any) -> bool:
    if not isinstance(text, str):
        return False
    try:
        return len(base64.b64decode(text, validate=True)) == 16
    except ValueError:
        return False


def grace_seconds(kill_policy: Any) -> float | None:
    """`kill_policy.grace_period.nanoseconds` in seconds, None when absent."""
    if not isinstance(kill_policy, dict):
        return None
    ns = (kill_policy.get("grace_period") or {}).get("nanoseconds")
    if isinstance(ns, (int, float)) and not isinstance(ns, bool) and ns >= 0:
        return ns / 1e9
    return None


class Executor:
    """A custom executor process on an agent (ExecutorInfo), serving one framework's tasks."""

    def __init__(self, framework_id: str, info: dict[str, Any], resources: Resources,
                 directory: str) -> None:
        self.framework_id = framework_id
        self.id: str = info["executor_id"]["value"]
        self.info = info
        self.resources = resources
        self.directory = directory
        self.container_id = str(uuid.uuid4())
        self.pid: int | None = None
        self.stream: Any = None  # httpserver.Stream while subscribed
        self.subscribed = False
        self.queued: list[Task] = []
        self.tasks: dict[str, Task] = {}
        self.shutting_down = False
        self.exited = False
        self.timers: list[Any] = []
        self.exit_while_down: int | None = None  # wait status of an exit the agent missed
        self.recovering = False  # a restarted agent waits for this executor to re-subscribe

    def send(self, event: dict[str, Any]) -> None:
        from localmesos import recordio
        if self.stream is not None:
            self.stream.send(recordio.encode(event))


class Task:
    def __init__(self, info: dict[str, Any], framework_id: str, agent: Any, resources: Resources,
                 role: str) -> None:
        self.info = info
        self.id: str = info["task_id"]["value"]
        self.framework_id = framework_id
        self.agent = agent
        self.agent_id: str = agent.id
        self.resources = resources
        self.role = role
        self.executor: Executor | None = None
        self.container_id = str(uuid.uuid4())
        self.state = "TASK_STAGING"
        self.statuses: list[dict[str, Any]] = []
        self.latest: dict[str, Any] | None = None
        self.pid: int | None = None
        self.kill_requested = False
        self.kill_timer: Any = None
        self.directory = ""
        self.env: dict[str, str] = {}
        self.health: Any = None  # health.HealthChecker of a command task with a health_check
        self.unhealthy = False  # killed for failing its health check
        self.docker_name: str | None = None  # its Docker container (docker_containerizer)
        self.update_uuids: set[str] = set()  # every update the agent holds, to drop resends

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def executor_id(self) -> str:
        return self.executor.id if self.executor is not None else ""

    def container_status(self, with_pid: bool = True) -> dict[str, Any]:
        cs: dict[str, Any] = {
            "container_id": {"value": self.executor.container_id if self.executor else self.container_id},
            "network_infos": [{"ip_addresses": [{"ip_address": self.agent.ip, "protocol": "IPv4"}]}],
        }
        pid = self.executor.pid if self.executor else self.pid
        if with_pid and pid is not None:
            cs["executor_pid"] = pid
        return cs

    def record(self, status: dict[str, Any]) -> None:
        """Apply a status update to the task's state and history."""
        self.state = status["state"]
        self.latest = status
        if isinstance(status.get("uuid"), str):
            self.update_uuids.add(status["uuid"])
        entry: dict[str, Any] = {"state": status["state"], "timestamp": status["timestamp"],
                                 "container_status": self.container_status(with_pid=False)}
        for k in ("healthy", "labels"):
            if k in status:
                entry[k] = status[k]
        self.statuses.append(entry)

    def to_state(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "name": self.info.get("name", ""), "framework_id": self.framework_id,
            "executor_id": self.executor_id, "slave_id": self.agent_id, "state": self.state,
            "resources": self.resources.to_state(), "role": self.role,
            "statuses": list(self.statuses),
        }
        for k in ("labels", "discovery", "container", "health_check", "kill_policy"):
            if k in self.info:
                out[k] = self.info[k]
        return out


def make_status(task_id: str, state: str, source: str, *, agent_id: str | None = None,
                message: str | None = None, reason: str | None = None, uuid_b64: str | None = None,
                container_status: dict[str, Any] | None = None,
                executor_id: str | None = None) -> dict[str, Any]:
    """A v1 TaskStatus with only the fields Mesos would set (no empty ones)."""
    status: dict[str, Any] = {"task_id": {"value": task_id}, "state": state, "source": source,
                              "timestamp": time.time()}
    if agent_id is not None:
        status["agent_id"] = {"value": agent_id}
    if executor_id:
        status["executor_id"] = {"value": executor_id}
    if message is not None:
        status["message"] = message
    if reason is not None:
        status["reason"] = reason
    if uuid_b64 is not None:
        status["uuid"] = uuid_b64
    if container_status is not None:
        status["container_status"] = container_status
    return status
