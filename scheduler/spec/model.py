"""The app-definition data model: frozen dataclasses with their Marathon JSON form, the error type,
and the value sets each field accepts."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scheduler.spec.container import ContainerSpec

CONSTRAINT_OPERATORS = ("UNIQUE", "CLUSTER", "GROUP_BY", "LIKE", "UNLIKE", "MAX_PER", "IS")
HEALTH_CHECK_PROTOCOLS = ("HTTP", "TCP", "COMMAND", "MESOS_HTTP", "MESOS_TCP")
PORT_PROTOCOLS = ("tcp", "udp", "udp,tcp")
KILL_SELECTIONS = ("YOUNGEST_FIRST", "OLDEST_FIRST")
EXECUTORS = ("", "//cmd")

# Fields Marathon returns in GET /v2/apps that clients commonly send back unchanged.
READ_ONLY_FIELDS = frozenset({
    "version", "versionInfo", "tasksStaged", "tasksRunning", "tasksHealthy", "tasksUnhealthy",
    "deployments", "tasks", "lastTaskFailure", "readinessCheckResults", "taskStats",
    "tasksStats",
})
# Marathon's defaults for what a field left out means.
DEFAULT_PORT_DEFINITION_NAME = "default"  # Marathon: one port (0) named "default"
READINESS_PROTOCOLS = ("HTTP", "HTTPS")



class SpecError(ValueError):
    """An invalid app definition. `details` lists every problem: [{"path", "errors": [..]}]."""

    def __init__(self, message: str, details: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_json(self) -> dict[str, Any]:
        """Marathon's 422 body."""
        return {"message": self.message, "details": copy.deepcopy(self.details)}

    def __str__(self) -> str:
        parts = [f"{d['path']}: {'; '.join(d['errors'])}" for d in self.details]
        return f"{self.message}: {', '.join(parts)}" if parts else self.message


class FrozenMap(dict[str, str]):
    """An immutable, hashable str->str dict (what `env` and `labels` are).

    A dict subclass so that `json.dumps`, `dict(...)`, `{**m}` and `isinstance(m, dict)` all
    work; every mutating method raises TypeError."""

    __slots__ = ()

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __reduce__(self) -> tuple[Any, ...]:
        # copy/pickle would otherwise rebuild it item by item through __setitem__
        return (type(self), (dict(self),))

    def _immutable(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("FrozenMap is immutable")

    __setitem__ = __delitem__ = __ior__ = _immutable  # type: ignore[assignment]
    clear = pop = popitem = setdefault = update = _immutable  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"FrozenMap({dict.__repr__(self)})"

    def to_dict(self) -> dict[str, str]:
        return dict(self)


@dataclass(frozen=True)
class PortDefinition:
    port: int
    protocol: str = "tcp"
    name: str | None = None
    labels: FrozenMap = field(default_factory=FrozenMap)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"port": self.port, "protocol": self.protocol}
        if self.name is not None:
            out["name"] = self.name
        out["labels"] = self.labels.to_dict()
        return out


@dataclass(frozen=True)
class Constraint:
    field: str
    operator: str
    value: str | None = None

    def to_json(self) -> list[str]:
        return [self.field, self.operator] + ([self.value] if self.value is not None else [])


@dataclass(frozen=True)
class HealthCheck:
    protocol: str = "HTTP"
    path: str = "/"
    port_index: int = 0
    command: str | None = None
    grace_period_seconds: float = 300
    interval_seconds: float = 60
    timeout_seconds: float = 20
    max_consecutive_failures: int = 3

    def to_json(self) -> dict[str, Any]:
        """Marathon form: `path` for HTTP, `portIndex` for HTTP/TCP, `command` for COMMAND."""
        out: dict[str, Any] = {"protocol": self.protocol}
        if self.protocol in ("HTTP", "MESOS_HTTP"):
            out["path"] = self.path
        if self.protocol != "COMMAND":
            out["portIndex"] = self.port_index
        if self.protocol == "COMMAND":
            out["command"] = {"value": self.command}
        out.update({
            "gracePeriodSeconds": num(self.grace_period_seconds),
            "intervalSeconds": num(self.interval_seconds),
            "timeoutSeconds": num(self.timeout_seconds),
            "maxConsecutiveFailures": self.max_consecutive_failures,
        })
        return out


@dataclass(frozen=True)
class UpgradeStrategy:
    minimum_health_capacity: float = 1.0
    maximum_over_capacity: float = 1.0

    def to_json(self) -> dict[str, Any]:
        return {"minimumHealthCapacity": num(self.minimum_health_capacity),
                "maximumOverCapacity": num(self.maximum_over_capacity)}


@dataclass(frozen=True)
class FetchUri:
    """A Mesos fetcher artifact (Marathon `fetch` item; `uris` entries become these)."""

    uri: str
    extract: bool = True
    executable: bool = False
    cache: bool = False
    dest_path: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"uri": self.uri, "extract": self.extract,
                               "executable": self.executable, "cache": self.cache}
        if self.dest_path is not None:
            out["destPath"] = self.dest_path
        return out

    def to_mesos(self) -> dict[str, Any]:
        """Mesos `CommandInfo.URI` (v1 JSON)."""
        out: dict[str, Any] = {"value": self.uri, "extract": self.extract,
                               "executable": self.executable, "cache": self.cache}
        if self.dest_path is not None:
            out["output_file"] = self.dest_path
        return out


@dataclass(frozen=True)
class ReadinessCheck:
    name: str = "readinessCheck"
    protocol: str = "HTTP"
    path: str = "/"
    port_name: str = "http-api"
    interval_seconds: int = 30
    timeout_seconds: int = 10
    http_status_codes_for_ready: tuple[int, ...] = (200,)
    preserve_last_response: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "protocol": self.protocol, "path": self.path,
                "portName": self.port_name, "intervalSeconds": self.interval_seconds,
                "timeoutSeconds": self.timeout_seconds,
                "httpStatusCodesForReady": list(self.http_status_codes_for_ready),
                "preserveLastResponse": self.preserve_last_response}


@dataclass(frozen=True)
class UnreachableStrategy:
    """Marathon's `unreachableStrategy`: after `inactive_after_seconds` unreachable a task is
    replaced, after `expunge_after_seconds` it is forgotten (killed if it comes back).
    `enabled=False` is Marathon's `"disabled"`: never replaced."""

    inactive_after_seconds: int = 0
    expunge_after_seconds: int = 0
    enabled: bool = True

    def to_json(self) -> dict[str, Any] | str:
        if not self.enabled:
            return "disabled"
        return {"inactiveAfterSeconds": self.inactive_after_seconds,
                "expungeAfterSeconds": self.expunge_after_seconds}


@dataclass(frozen=True)
class AppSpec:
    id: str
    cmd: str | None = None
    args: tuple[str, ...] | None = None
    cpus: float = 1.0
    mem: float = 128.0
    disk: float = 0.0
    instances: int = 1
    port_definitions: tuple[PortDefinition, ...] = ()
    require_ports: bool = False
    env: FrozenMap = field(default_factory=FrozenMap)
    labels: FrozenMap = field(default_factory=FrozenMap)
    constraints: tuple[Constraint, ...] = ()
    health_checks: tuple[HealthCheck, ...] = ()
    backoff_seconds: float = 1.0
    backoff_factor: float = 1.15
    max_launch_delay_seconds: float = 300.0
    upgrade_strategy: UpgradeStrategy = field(default_factory=UpgradeStrategy)
    kill_selection: str = "YOUNGEST_FIRST"
    task_kill_grace_period_seconds: float | None = None
    executor: str = ""
    role: str | None = None
    gpus: int = 0
    user: str | None = None
    fetch: tuple[FetchUri, ...] = ()
    accepted_resource_roles: tuple[str, ...] | None = None
    dependencies: tuple[str, ...] = ()
    readiness_checks: tuple[ReadinessCheck, ...] = ()
    unreachable_strategy: UnreachableStrategy = field(default_factory=UnreachableStrategy)
    container: ContainerSpec | None = None  # scheduler.spec.container; None: a plain process
    # Marathon's secrets: name -> source, and env variable -> secret name (references only;
    # the values are resolved at launch, see scheduler.spec.secrets)
    secrets: FrozenMap = field(default_factory=FrozenMap)
    env_secrets: FrozenMap = field(default_factory=FrozenMap)

    @property
    def service_ports(self) -> tuple[int, ...]:
        """Marathon's `servicePorts` (assigned when the app was stored): the container's port
        mappings' when it has any (BRIDGE/USER networks), else the port definitions'."""
        if self.container is not None and self.container.port_mappings:
            return tuple(m.service_port for m in self.container.port_mappings)
        return tuple(int(pd.port) for pd in self.port_definitions)

    def to_json(self) -> dict[str, Any]:
        """Marathon JSON, every default filled in; `cmd`/`args` only the one that is set."""
        out: dict[str, Any] = {"id": self.id}
        if self.cmd is not None:
            out["cmd"] = self.cmd
        if self.args is not None:
            out["args"] = list(self.args)
        out.update({
            "cpus": num(self.cpus),
            "mem": num(self.mem),
            "disk": num(self.disk),
            "instances": self.instances,
            "portDefinitions": [p.to_json() for p in self.port_definitions],
            "requirePorts": self.require_ports,
            "env": {**self.env, **{var: {"secret": name}
                                   for var, name in self.env_secrets.items()}},
            "labels": self.labels.to_dict(),
            "constraints": [c.to_json() for c in self.constraints],
            "healthChecks": [h.to_json() for h in self.health_checks],
            "backoffSeconds": num(self.backoff_seconds),
            "backoffFactor": num(self.backoff_factor),
            "maxLaunchDelaySeconds": num(self.max_launch_delay_seconds),
            "upgradeStrategy": self.upgrade_strategy.to_json(),
            "killSelection": self.kill_selection,
            "taskKillGracePeriodSeconds": (None if self.task_kill_grace_period_seconds is None
                                           else num(self.task_kill_grace_period_seconds)),
            "executor": self.executor,
            "role": self.role,
            "gpus": self.gpus,
            "fetch": [f.to_json() for f in self.fetch],
            "dependencies": list(self.dependencies),
            "readinessChecks": [r.to_json() for r in self.readiness_checks],
            "unreachableStrategy": self.unreachable_strategy.to_json(),
            "networks": [{"mode": "host"}],
        })
        if self.container is not None:
            out["container"] = self.container.to_json()
            out["networks"] = self.container.networks_json()
            if self.container.network != "HOST":
                out["portDefinitions"] = []  # the ports are the container's portMappings
        if self.secrets:
            out["secrets"] = {name: {"source": src} for name, src in self.secrets.items()}
        if self.user is not None:
            out["user"] = self.user
        if self.accepted_resource_roles is not None:
            out["acceptedResourceRoles"] = list(self.accepted_resource_roles)
        return out


def num(x: float) -> float | int:
    """Whole numbers print as ints (Marathon shows `"mem": 128`, not `128.0`)."""
    if isinstance(x, float) and x.is_integer() and abs(x) < 2**53:
        return int(x)
    return x
