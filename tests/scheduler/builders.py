"""Small builders for scheduler tests: Mesos offers, apps and task documents.

`make_offer` produces the Mesos v1 Offer JSON shape recorded in
tests/data/mesos-1.12/scheduler_events.json (role `*`, allocation_info, TEXT attributes).
"""

from __future__ import annotations

import itertools
from typing import Any

_ids = itertools.count(1)


def resource(name: str, value: float | None = None, *, ranges: list[tuple[int, int]] | None = None,
             role: str = "*", allocation_role: str | None = None) -> dict[str, Any]:
    """One Mesos Resource (SCALAR, or RANGES when `ranges` is given)."""
    res: dict[str, Any] = {"name": name, "role": role,
                           "allocation_info": {"role": allocation_role or role}}
    if ranges is not None:
        res["type"] = "RANGES"
        res["ranges"] = {"range": [{"begin": b, "end": e} for b, e in ranges]}
    else:
        res["type"] = "SCALAR"
        res["scalar"] = {"value": float(value or 0.0)}
    return res


def make_offer(cpus: float = 4.0, mem: float = 4096.0, disk: float = 10000.0,
               ports: list[tuple[int, int]] | None = None, attrs: dict[str, Any] | None = None,
               hostname: str | None = None, *, offer_id: str | None = None,
               agent_id: str | None = None, role: str = "*",
               extra_resources: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A Mesos v1 Offer dict. Attributes: str -> TEXT, int/float -> SCALAR."""
    n = next(_ids)
    hostname = hostname or f"agent{n}.test"
    ports = [(31000, 31010)] if ports is None else ports
    attributes = []
    for name, value in (attrs or {}).items():
        if isinstance(value, int | float):
            attributes.append({"name": name, "type": "SCALAR", "scalar": {"value": float(value)}})
        else:
            attributes.append({"name": name, "type": "TEXT", "text": {"value": str(value)}})
    resources = [resource("cpus", cpus, role=role), resource("mem", mem, role=role),
                 resource("disk", disk, role=role)]
    if ports:
        resources.insert(0, resource("ports", ranges=ports, role=role))
    resources.extend(extra_resources or [])
    return {
        "id": {"value": offer_id or f"offer-{n}"},
        "agent_id": {"value": agent_id or f"agent-{hostname}"},
        "framework_id": {"value": "fw-1"},
        "hostname": hostname,
        "allocation_info": {"role": role},
        "attributes": attributes,
        "resources": resources,
    }


def app_doc(app_id: str = "/app", **fields: Any) -> dict[str, Any]:
    """A Marathon app JSON with a cmd and no ports (`portDefinitions: []`, where Marathon's
    default would be one); `fields` override or add Marathon fields."""
    doc: dict[str, Any] = {"id": app_id, "cmd": "sleep 1000", "cpus": 0.1, "mem": 32.0}
    if "ports" not in fields:
        doc["portDefinitions"] = []
    doc.update(fields)
    return doc


def make_app(app_id: str = "/app", **fields: Any):
    """An AppSpec via the real schema (`scheduler.spec.parse_app`)."""
    from scheduler.spec import parse_app

    return parse_app(app_doc(app_id, **fields))


def make_task(app_id: str = "/app", host: str = "agent1.test", *, agent_id: str | None = None,
              attributes: dict[str, str] | None = None, cpus: float = 0.1, mem: float = 32.0,
              ports: list[int] | None = None, state: str = "TASK_RUNNING",
              task_id: str | None = None) -> dict[str, Any]:
    """A live task document (the scheduler's Marathon-shaped task record)."""
    agent = agent_id or f"agent-{host}"
    return {
        "id": task_id or f"{app_id.strip('/').replace('/', '_')}.{next(_ids):032x}",
        "appId": app_id, "host": host, "slaveId": agent, "agentId": agent,
        "ipAddresses": [{"ipAddress": "127.0.0.1", "protocol": "IPv4"}],
        "ports": list(ports or []), "servicePorts": [], "stagedAt": None, "startedAt": None,
        "version": None, "state": state, "healthy": None, "healthCheckResults": [],
        "message": None, "reason": None, "attributes": dict(attributes or {}),
        "resources": {"cpus": cpus, "mem": mem, "disk": 0.0}, "killRequested": False,
    }
