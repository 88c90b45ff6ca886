"""The balancer's desired state, pure: the control API's apps (with their tasks) → a `Model`.

Labels follow marathon-lb's, per service port index `n`:
- `HAPROXY_GROUP`: the apps a balancer serves are those whose group is one of its groups
  (`--group`, default `external`; `*` serves every app that has a group label);
- `HAPROXY_{n}_MODE`: `http` or `tcp`; default `http` when the port has a vhost or an HTTP
  health check, else `tcp`;
- `HAPROXY_{n}_VHOST`: comma-separated host names routed by `Host` header on the shared HTTP
  port (in addition to the service port);
- `HAPROXY_{n}_BALANCE`: HAProxy's `balance` algorithm (default `roundrobin`).

Service ports are `portDefinitions[].port`, or `container.portMappings[].servicePort` for a
Docker app with port mappings, as marathon-lb reads them. A service port of 0 (not assigned) has
no frontend. Members are the app's tasks that run and,
when the app has health checks, are healthy (every `healthCheckResults` entry alive, or the
`healthy` verdict when the API gave it); a task the scheduler marked as leaving (`leaving`,
with `embed=accessd`) stays as a member in state `drain` so its in-flight requests finish.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

Doc = dict[str, Any]

READY = "ready"
DRAIN = "drain"
MODES = ("http", "tcp")
BALANCES = ("roundrobin", "leastconn", "first", "source", "static-rr", "random", "uri")
DEFAULT_GROUP = "external"


@dataclass(frozen=True)
class Member:
    task_id: str
    host: str
    port: int
    state: str = READY  # READY | DRAIN


@dataclass(frozen=True)
class Service:
    """One app service port: a frontend on `service_port` and its backend `name`."""

    name: str
    app_id: str
    port_index: int
    service_port: int
    mode: str
    balance: str
    vhosts: tuple[str, ...] = ()
    members: tuple[Member, ...] = ()


@dataclass(frozen=True)
class Model:
    services: tuple[Service, ...] = ()
    problems: tuple[str, ...] = ()  # labels ignored, ports skipped: said once in the log

    def service(self, name: str) -> Service | None:
        return next((s for s in self.services if s.name == name), None)


def in_groups(app: Doc, groups: frozenset[str]) -> bool:
    group = (app.get("labels") or {}).get("HAPROXY_GROUP")
    if not group:
        return False
    return "*" in groups or any(g.strip() in groups for g in str(group).split(","))


def backend_name(app_id: str, service_port: int) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", app_id.strip("/")) + f"_{service_port}"


def _http_checked(app: Doc, index: int) -> bool:
    return any(str(c.get("protocol", "HTTP")).upper() in ("HTTP", "HTTPS", "MESOS_HTTP")
               and int(c.get("portIndex") or 0) == index for c in app.get("healthChecks") or [])


def is_leaving(task: Doc) -> bool:
    return task.get("leaving") is not None


def is_member(task: Doc, checked: bool) -> bool:
    """Running, and healthy when the app has health checks."""
    if task.get("state", "TASK_RUNNING") != "TASK_RUNNING":
        return False
    if task.get("killRequested") and not is_leaving(task):
        return False  # being killed without a drain: out at once
    if not checked:
        return task.get("healthy") is not False
    if "healthy" in task and task["healthy"] is not None:
        return task["healthy"] is True
    results = task.get("healthCheckResults") or []
    return bool(results) and all(r.get("alive") for r in results)


def _address(task: Doc) -> str | None:
    for ip in task.get("ipAddresses") or []:
        if ip.get("ipAddress"):
            return str(ip["ipAddress"])
    return task.get("host")


def service_ports(app: Doc) -> list[int]:
    """The app's service ports as Marathon answers them: its container's `portMappings`'
    `servicePort`s when it has any (Docker on a bridge or named network), else its
    `portDefinitions`' `port`s. Index n is the tasks' host port n either way."""
    mappings = (app.get("container") or {}).get("portMappings") or []
    if mappings:
        return [int(m.get("servicePort") or 0) for m in mappings]
    return [int(pd.get("port") or 0) for pd in app.get("portDefinitions") or []]


def members(app: Doc, index: int) -> tuple[Member, ...]:
    checked = bool(app.get("healthChecks"))
    out = []
    for task in app.get("tasks") or []:
        ports = task.get("ports") or []
        host = _address(task)
        if index >= len(ports) or not host or not is_member(task, checked):
            continue
        state = DRAIN if is_leaving(task) else READY
        out.append(Member(str(task["id"]), host, int(ports[index]), state))
    return tuple(sorted(out, key=lambda m: m.task_id))


def desired(apps: list[Doc], groups: frozenset[str] = frozenset({DEFAULT_GROUP})) -> Model:
    services: list[Service] = []
    problems: list[str] = []
    taken: dict[int, str] = {}
    for app in sorted(apps, key=lambda a: a.get("id", "")):
        if not in_groups(app, groups):
            continue
        labels = app.get("labels") or {}
        for index, port in enumerate(service_ports(app)):
            if port <= 0:
                problems.append(f"{app['id']}: port index {index} has no service port")
                continue
            if port in taken:
                problems.append(f"{app['id']}: service port {port} is {taken[port]}'s already")
                continue
            taken[port] = app["id"]
            vhosts = tuple(h.strip().lower() for h in
                           str(labels.get(f"HAPROXY_{index}_VHOST", "")).split(",") if h.strip())
            mode = str(labels.get(f"HAPROXY_{index}_MODE", "")).lower()
            if mode not in MODES:
                if mode:
                    problems.append(f"{app['id']}: HAPROXY_{index}_MODE {mode!r} is not "
                                    "http or tcp")
                mode = "http" if vhosts or _http_checked(app, index) else "tcp"
            balance = str(labels.get(f"HAPROXY_{index}_BALANCE", "roundrobin")).lower()
            if balance.split()[0] not in BALANCES:
                problems.append(f"{app['id']}: HAPROXY_{index}_BALANCE {balance!r} unknown")
                balance = "roundrobin"
            if mode == "tcp" and vhosts:
                problems.append(f"{app['id']}: vhosts need HAPROXY_{index}_MODE http")
                vhosts = ()
            services.append(Service(backend_name(app["id"], port), app["id"], index, port,
                                    mode, balance, vhosts, members(app, index)))
    return Model(tuple(services), tuple(problems))
