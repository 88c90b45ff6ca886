"""Service ports, Marathon's semantics: the stable port of an app, that a load balancer serves.

An app's `portDefinitions[].port` is its service port (without `requirePorts` its tasks get
any free host ports; with it, the host ports are the service ports); an app whose container has
`portMappings` (BRIDGE or USER networks) has them in `container.portMappings[].servicePort`
instead, as Marathon (`AppDefinition.servicePorts`). Port 0 (or a mapping without one) asks for
one to be assigned; the assignment is stored in the app document, so it survives updates,
restarts and leader changes, and clients read it back from the app and each task's
`servicePorts`.

Rules (pure; `assign` runs inside the transaction that stores the app, over the snapshot's
ports in use, so two concurrent creates can never get the same port — on ZooKeeper reading the
ports in use is a generation read, and every app change bumps the generation):
- a non-zero port is kept as asked; one that another app already has is a
  `ServicePortConflict` naming that app (422);
- a 0 takes first the ports the app had before (in range, in their order, that the new
  definition does not name explicitly), so a PUT that sends 0 again, or an export posted back
  with its ports zeroed, keeps what the app had; then the lowest free port of the range;
- the range is `[low, high)` (Marathon's `--local_port_min`/`--local_port_max`, 10000 and
  20000 by default); a range with no free port left is `ServicePortsExhausted` (422);
- an app's own previous ports never clash with it; ports named twice in one definition are
  the schema's concern (`scheduler.spec`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from scheduler.state import StateError

Doc = dict[str, Any]

DEFAULT_LOW = 10000
DEFAULT_HIGH = 20000


@dataclass(frozen=True)
class PortRange:
    """Service ports are assigned from `low` (inclusive) to `high` (exclusive)."""

    low: int = DEFAULT_LOW
    high: int = DEFAULT_HIGH

    def __post_init__(self) -> None:
        if not 0 < self.low < self.high <= 65536:
            raise ValueError(f"service port range must satisfy 0 < min < max <= 65536, got "
                             f"{self.low}-{self.high}")

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.low <= port < self.high


DEFAULT_RANGE = PortRange()


class ServicePortConflict(StateError):
    """Service ports asked for that other apps already have (Marathon's 422)."""

    def __init__(self, app_id: str, clashes: list[tuple[int, int, str]], *,
                 mappings: bool = False) -> None:
        self.app_id = app_id
        self.clashes = clashes  # (index of the port, port, the app that has it)
        self.mappings = mappings  # the ports are the container's portMappings
        super().__init__("; ".join(
            f"service port {port} is already used by app {other}"
            for _, port, other in clashes))

    @property
    def details(self) -> list[dict[str, Any]]:
        where = "/container/portMappings/{}/servicePort" if self.mappings else \
            "/portDefinitions/{}/port"
        return [{"path": where.format(i),
                 "errors": [f"service port {port} is already used by app {other}"]}
                for i, port, other in self.clashes]


class ServicePortsExhausted(StateError):
    """No free service port is left in the range (Marathon's PortRangeExhausted)."""

    def __init__(self, port_range: PortRange) -> None:
        self.port_range = port_range
        super().__init__(f"no free service port left in {port_range.low}-{port_range.high - 1} "
                         "(the API's --local-port-min/--local-port-max)")

    @property
    def details(self) -> list[dict[str, Any]]:
        return [{"path": "/portDefinitions", "errors": [str(self)]}]


def _slots(app: Mapping[str, Any]) -> tuple[list[Any], str]:
    """Where the app document keeps its service ports: the container's `portMappings`
    (`servicePort`) when it has any, else `portDefinitions` (`port`)."""
    container = app.get("container")
    mappings = container.get("portMappings") if isinstance(container, Mapping) else None
    if isinstance(mappings, list) and mappings:
        return mappings, "servicePort"
    return list(app.get("portDefinitions") or []), "port"


def service_ports(app: Mapping[str, Any]) -> list[int]:
    """The app document's service ports, in `portDefinitions` (or the container's
    `portMappings`) order (0 where unassigned)."""
    slots, key = _slots(app)
    out = []
    for d in slots:
        port = d.get(key) if isinstance(d, Mapping) else None
        out.append(port if isinstance(port, int) and not isinstance(port, bool) else 0)
    return out


def unchanged(app: Mapping[str, Any], previous: Mapping[str, Any] | None) -> bool:
    """True when `app` asks for exactly the service ports `previous` holds, all assigned: they
    were unique when stored and stay so (any later app asking for one was refused), so there is
    nothing to assign or check (the other apps need not be read)."""
    if previous is None:
        return False
    asked = service_ports(app)
    return 0 not in asked and asked == service_ports(previous)


def ports_in_use(apps: list[Mapping[str, Any]], except_app: str) -> dict[int, str]:
    """Every non-zero service port of `apps` other than `except_app` → the app that has it."""
    used: dict[int, str] = {}
    for app in sorted(apps, key=lambda a: str(a.get("id"))):
        if app.get("id") == except_app:
            continue
        for port in service_ports(app):
            if port:
                used.setdefault(port, str(app.get("id")))
    return used


def keep_previous(app: Doc, previous: Mapping[str, Any] | None,
                  port_range: PortRange = DEFAULT_RANGE) -> Doc:
    """`app` with its port-0 definitions given back the ports `previous` had (the reuse rule
    of `assign`, nothing new), so that comparing it with `previous` says whether the change
    is a scale, an update or nothing (a PUT sending 0 again changes nothing)."""
    return assign(app, previous, {}, port_range, fresh=False)


def assign(app: Doc, previous: Mapping[str, Any] | None, in_use: Mapping[int, str],
           port_range: PortRange = DEFAULT_RANGE, *, fresh: bool = True) -> Doc:
    """`app` (a stored app document) with each port-0 definition given a service port.

    `previous`: the app's stored document before this change (None for a create); `in_use`:
    the other apps' service ports (`ports_in_use`). Raises ServicePortConflict or
    ServicePortsExhausted; returns a new document, `app` itself is not changed. With
    `fresh=False` only previous ports are given back and the other zeros stay."""
    asked = service_ports(app)
    app_id = str(app.get("id"))
    clashes = [(i, port, in_use[port]) for i, port in enumerate(asked)
               if port and port in in_use]
    if clashes:
        raise ServicePortConflict(app_id, clashes, mappings=_slots(app)[1] == "servicePort")
    if 0 not in asked:
        return app
    explicit = {p for p in asked if p}
    before = service_ports(previous) if previous is not None else []
    reusable = [p for p in before if p and p in port_range and p not in explicit
                and p not in in_use]
    taken = set(in_use) | explicit | set(before)
    new_ports = (p for p in range(port_range.low, port_range.high) if p not in taken)
    free = _chain(iter(dict.fromkeys(reusable)), new_ports if fresh else iter(()))
    out = copy.deepcopy(app)
    slots, key = _slots(out)
    for definition, port in zip(slots, asked, strict=True):
        if port == 0:
            chosen = next(free, None)
            if chosen is None:
                if not fresh:
                    break
                raise ServicePortsExhausted(port_range)
            definition[key] = chosen
    return out


def _chain(first: Iterator[int], then: Iterator[int]) -> Iterator[int]:
    yield from first
    yield from then
