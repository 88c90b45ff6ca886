"""The one app-definition schema (Marathon field names), shared by the API and the scheduler.

Invariants:
- `parse_app` is the only way to get an `AppSpec`; it validates everything and reports every
  problem at once as `SpecError.details = [{"path": "/cpus", "errors": ["must be > 0"]}, ...]`
  (JSON-pointer paths, Marathon's 422 shape). It never raises anything else for bad input.
- An `AppSpec` is immutable and hashable (tuples and `FrozenMap`s only).
- `to_json()` is Marathon JSON with every default filled in, and it is a fixed point:
  `parse_app(s.to_json()).to_json() == s.to_json()` and `parse_app(s.to_json()) == s`.
- `null` for an optional field means "use the default" (Marathon's readNullable behaviour).
- Times are ISO 8601 UTC with milliseconds and `Z`.
"""

from __future__ import annotations

import copy
import difflib
import math
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "AppSpec", "Constraint", "FrozenMap", "HealthCheck", "PortDefinition", "SpecError",
    "UpgradeStrategy", "CONSTRAINT_OPERATORS", "HEALTH_CHECK_PROTOCOLS", "READ_ONLY_FIELDS",
    "UNSUPPORTED_FIELDS",
    "app_id_to_task_prefix", "format_time", "iso_now", "is_scale_only", "merge_patch",
    "new_task_id", "normalize_app_id", "parse_app", "parse_time", "stamp_app",
    "task_id_to_app_id",
]

CONSTRAINT_OPERATORS = ("UNIQUE", "CLUSTER", "GROUP_BY", "LIKE", "UNLIKE", "MAX_PER", "IS")
HEALTH_CHECK_PROTOCOLS = ("HTTP", "TCP", "COMMAND")
PORT_PROTOCOLS = ("tcp", "udp", "udp,tcp")
KILL_SELECTIONS = ("YOUNGEST_FIRST", "OLDEST_FIRST")
EXECUTORS = ("", "//cmd")

# Fields Marathon returns in GET /v2/apps that clients commonly send back unchanged.
READ_ONLY_FIELDS = frozenset({
    "version", "versionInfo", "tasksStaged", "tasksRunning", "tasksHealthy", "tasksUnhealthy",
    "deployments", "tasks", "lastTaskFailure", "readinessCheckResults", "taskStats",
})

# One path segment of an app id (Marathon's rule): dot-separated labels of lowercase letters,
# digits and inner hyphens.
_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_SEGMENT_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")  # used with fullmatch
_PORT_NAME_RE = re.compile(r"[a-z0-9-]+")  # Marathon's port name pattern (fullmatch)


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
        if self.protocol == "HTTP":
            out["path"] = self.path
        if self.protocol in ("HTTP", "TCP"):
            out["portIndex"] = self.port_index
        if self.protocol == "COMMAND":
            out["command"] = {"value": self.command}
        out.update({
            "gracePeriodSeconds": _num(self.grace_period_seconds),
            "intervalSeconds": _num(self.interval_seconds),
            "timeoutSeconds": _num(self.timeout_seconds),
            "maxConsecutiveFailures": self.max_consecutive_failures,
        })
        return out


@dataclass(frozen=True)
class UpgradeStrategy:
    minimum_health_capacity: float = 1.0
    maximum_over_capacity: float = 1.0

    def to_json(self) -> dict[str, Any]:
        return {"minimumHealthCapacity": _num(self.minimum_health_capacity),
                "maximumOverCapacity": _num(self.maximum_over_capacity)}


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

    def to_json(self) -> dict[str, Any]:
        """Marathon JSON, every default filled in; `cmd`/`args` only the one that is set."""
        out: dict[str, Any] = {"id": self.id}
        if self.cmd is not None:
            out["cmd"] = self.cmd
        if self.args is not None:
            out["args"] = list(self.args)
        out.update({
            "cpus": _num(self.cpus),
            "mem": _num(self.mem),
            "disk": _num(self.disk),
            "instances": self.instances,
            "portDefinitions": [p.to_json() for p in self.port_definitions],
            "requirePorts": self.require_ports,
            "env": self.env.to_dict(),
            "labels": self.labels.to_dict(),
            "constraints": [c.to_json() for c in self.constraints],
            "healthChecks": [h.to_json() for h in self.health_checks],
            "backoffSeconds": _num(self.backoff_seconds),
            "backoffFactor": _num(self.backoff_factor),
            "maxLaunchDelaySeconds": _num(self.max_launch_delay_seconds),
            "upgradeStrategy": self.upgrade_strategy.to_json(),
            "killSelection": self.kill_selection,
            "taskKillGracePeriodSeconds": (None if self.task_kill_grace_period_seconds is None
                                           else _num(self.task_kill_grace_period_seconds)),
            "executor": self.executor,
            "role": self.role,
        })
        return out


def _num(x: float) -> float | int:
    """Whole numbers print as ints (Marathon shows `"mem": 128`, not `128.0`)."""
    if isinstance(x, float) and x.is_integer() and abs(x) < 2**53:
        return int(x)
    return x


# ---------------------------------------------------------------------------------------------
# validation machinery


def _ptr(*parts: Any) -> str:
    """A JSON pointer from path parts (RFC 6901 escaping, so env keys with '/' stay readable)."""
    if not parts:
        return "/"
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


class _Errors:
    def __init__(self) -> None:
        self._by_path: dict[str, list[str]] = {}

    def add(self, path: str, message: str) -> None:
        msgs = self._by_path.setdefault(path, [])
        if message not in msgs:
            msgs.append(message)

    def __bool__(self) -> bool:
        return bool(self._by_path)

    def details(self) -> list[dict[str, Any]]:
        return [{"path": p, "errors": list(m)} for p, m in self._by_path.items()]


_MISSING = object()


def _type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


# Marathon app fields accessd does not implement: named as such rather than as typos.
UNSUPPORTED_FIELDS = frozenset({
    "container", "acceptedResourceRoles", "uris", "fetch", "dependencies", "user", "storeUrls",
    "gpus", "networks", "ipAddress", "residency", "secrets", "unreachableStrategy",
    "readinessChecks", "resourceLimits", "tty", "networkBandwidth",
})


def _check_unknown(obj: dict, known: frozenset[str] | set[str], path: tuple, errs: _Errors,
                   ignored: frozenset[str] = frozenset(),
                   unsupported: frozenset[str] = frozenset()) -> None:
    for key in obj:
        if key in known or key in ignored:
            continue
        if key in unsupported:
            errs.add(_ptr(*path, key), f"the Marathon field '{key}' is not supported by accessd")
            continue
        msg = f"unknown field '{key}'"
        close = difflib.get_close_matches(str(key), sorted(known), n=1, cutoff=0.6)
        if close:
            msg += f"; did you mean '{close[0]}'?"
        errs.add(_ptr(*path, key), msg)


def _number(v: Any, path: tuple, errs: _Errors, default: float, *, gt: float | None = None,
            ge: float | None = None, le: float | None = None) -> float:
    """A finite JSON number (not a boolean), within bounds; returns `default` on error."""
    if v is _MISSING or v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int | float):
        errs.add(_ptr(*path), f"must be a number, got {_type_name(v)}")
        return default
    if not math.isfinite(v):
        errs.add(_ptr(*path), "must be a finite number")
        return default
    ok = True
    if gt is not None and not v > gt:
        errs.add(_ptr(*path), f"must be > {_num(float(gt))}")
        ok = False
    if ge is not None and not v >= ge:
        errs.add(_ptr(*path), f"must be >= {_num(float(ge))}")
        ok = False
    if le is not None and not v <= le:
        errs.add(_ptr(*path), f"must be <= {_num(float(le))}")
        ok = False
    return float(v) if ok else default


def _seconds(v: Any, path: tuple, errs: _Errors, default: float, **bounds: float) -> float:
    """Like `_number`, but a whole number stays an int (these are Marathon integers)."""
    x = _number(v, path, errs, default, **bounds)
    return _num(x) if isinstance(x, float) else x


def _integer(v: Any, path: tuple, errs: _Errors, default: int, *, ge: int | None = None,
             le: int | None = None) -> int:
    """A JSON integer (an integral float like 2.0 is accepted, booleans are not)."""
    if v is _MISSING or v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int | float):
        errs.add(_ptr(*path), f"must be an integer, got {_type_name(v)}")
        return default
    if isinstance(v, float) and not (math.isfinite(v) and v.is_integer()):
        errs.add(_ptr(*path), "must be an integer")
        return default
    iv = int(v)
    if ge is not None and iv < ge:
        errs.add(_ptr(*path), f"must be >= {ge}")
        return default
    if le is not None and iv > le:
        errs.add(_ptr(*path), f"must be <= {le}")
        return default
    return iv


def _boolean(v: Any, path: tuple, errs: _Errors, default: bool) -> bool:
    if v is _MISSING or v is None:
        return default
    if not isinstance(v, bool):
        errs.add(_ptr(*path), f"must be a boolean, got {_type_name(v)}")
        return default
    return v


def _string(v: Any, path: tuple, errs: _Errors, default: str | None, *,
            choices: tuple[str, ...] | None = None, nonempty: bool = False) -> str | None:
    if v is _MISSING or v is None:
        return default
    if not isinstance(v, str):
        errs.add(_ptr(*path), f"must be a string, got {_type_name(v)}")
        return default
    if choices is not None and v not in choices:
        errs.add(_ptr(*path), f"must be one of {', '.join(repr(c) for c in choices)}")
        return default
    if nonempty and not v:
        errs.add(_ptr(*path), "must not be empty")
        return default
    return v


def _str_map(v: Any, path: tuple, errs: _Errors) -> FrozenMap:
    """A JSON object of string values (env values that are numbers or secrets are rejected)."""
    if v is _MISSING or v is None:
        return FrozenMap()
    if not isinstance(v, dict):
        errs.add(_ptr(*path), f"must be an object of strings, got {_type_name(v)}")
        return FrozenMap()
    out: dict[str, str] = {}
    for k, val in v.items():
        if not isinstance(k, str) or not k:
            errs.add(_ptr(*path, k), "keys must be non-empty strings")
        elif not isinstance(val, str):
            errs.add(_ptr(*path, k), f"must be a string, got {_type_name(val)}")
        else:
            out[k] = val
    return FrozenMap(out)


def normalize_app_id(raw: Any) -> str:
    """The absolute, canonical form of an app id (relative ids are taken relative to `/`).

    Raises SpecError (path `/id`) if the id is not a string of valid path segments.
    """
    errs = _Errors()
    out = _normalize_id(raw, errs)
    if errs or out is None:
        raise SpecError("Object is not valid", errs.details())
    return out


def _normalize_id(raw: Any, errs: _Errors) -> str | None:
    path = _ptr("id")
    if raw is _MISSING or raw is None:
        errs.add(path, "is required")
        return None
    if not isinstance(raw, str):
        errs.add(path, f"must be a string, got {_type_name(raw)}")
        return None
    text = raw[1:] if raw.startswith("/") else raw
    if text.endswith("/"):
        text = text[:-1]  # "/a/b/" names the same app as "/a/b"
    parts: list[str] = []
    for seg in text.split("/") if text else []:
        if seg == ".":
            continue
        if seg == "..":
            if not parts:
                errs.add(path, f"'{raw}' leaves the root group")
                return None
            parts.pop()
            continue
        if not _SEGMENT_RE.fullmatch(seg):
            errs.add(path, f"'{raw}' is not a valid id: path segments may contain only lowercase "
                           "letters, digits, hyphens and dots, and must start and end with a "
                           "letter or digit")
            return None
        parts.append(seg)
    if not parts:
        errs.add(path, f"'{raw}' is not a valid app id: the root group '/' cannot be an app")
        return None
    return "/" + "/".join(parts)


# ---------------------------------------------------------------------------------------------
# the parts of an app definition

_TOP_FIELDS = frozenset({
    "id", "cmd", "args", "cpus", "mem", "disk", "instances", "portDefinitions", "ports",
    "requirePorts", "env", "labels", "constraints", "healthChecks", "backoffSeconds",
    "backoffFactor", "maxLaunchDelaySeconds", "upgradeStrategy", "killSelection",
    "taskKillGracePeriodSeconds", "executor", "role",
})
_PORT_FIELDS = frozenset({"port", "protocol", "name", "labels"})
_HC_FIELDS = frozenset({
    "protocol", "path", "portIndex", "command", "gracePeriodSeconds", "intervalSeconds",
    "timeoutSeconds", "maxConsecutiveFailures", "delaySeconds", "ignoreHttp1xx",
})
_UPGRADE_FIELDS = frozenset({"minimumHealthCapacity", "maximumOverCapacity"})


def _port_definitions(doc: dict, errs: _Errors) -> tuple[PortDefinition, ...]:
    has_defs = doc.get("portDefinitions") is not None
    has_ports = doc.get("ports") is not None
    if has_defs and has_ports:
        errs.add(_ptr("ports"), "specify either 'ports' or 'portDefinitions', not both")
        return ()
    out: list[PortDefinition] = []
    if has_ports:
        ports = doc["ports"]
        if not isinstance(ports, list):
            errs.add(_ptr("ports"), f"must be an array of integers, got {_type_name(ports)}")
            return ()
        for i, p in enumerate(ports):
            n = _integer(p, ("ports", i), errs, -1, ge=0, le=65535)
            if p is None:
                errs.add(_ptr("ports", i), "must be an integer, got null")
            elif n >= 0:
                out.append(PortDefinition(port=n))
        return tuple(out)
    if not has_defs:
        return ()
    defs = doc["portDefinitions"]
    if not isinstance(defs, list):
        errs.add(_ptr("portDefinitions"), f"must be an array, got {_type_name(defs)}")
        return ()
    names: set[str] = set()
    for i, d in enumerate(defs):
        path = ("portDefinitions", i)
        if not isinstance(d, dict):
            errs.add(_ptr(*path), f"must be an object, got {_type_name(d)}")
            continue
        _check_unknown(d, _PORT_FIELDS, path, errs)
        if d.get("port") is None:
            errs.add(_ptr(*path, "port"), "is required (0 means any free port)")
            port = -1
        else:
            port = _integer(d["port"], (*path, "port"), errs, -1, ge=0, le=65535)
        protocol = _string(d.get("protocol"), (*path, "protocol"), errs, "tcp",
                           choices=PORT_PROTOCOLS)
        name = _string(d.get("name"), (*path, "name"), errs, None)
        if name is not None:
            if not _PORT_NAME_RE.fullmatch(name):
                errs.add(_ptr(*path, "name"), "must consist of lowercase letters, digits and "
                                              "hyphens")
            elif name in names:
                errs.add(_ptr(*path, "name"), f"port name '{name}' is used more than once")
            names.add(name)
        labels = _str_map(d.get("labels"), (*path, "labels"), errs)
        if port >= 0:
            out.append(PortDefinition(port=port, protocol=protocol or "tcp", name=name,
                                      labels=labels))
    return tuple(out)


def _check_ports(defs: tuple[PortDefinition, ...], require_ports: bool, key: str,
                 errs: _Errors) -> None:
    seen: set[int] = set()
    for i, d in enumerate(defs):
        if d.port == 0:
            if require_ports:
                errs.add(_ptr(key, i, "port") if key == "portDefinitions" else _ptr(key, i),
                         "must be a fixed non-zero port when requirePorts is true")
            continue
        if d.port in seen:
            errs.add(_ptr(key, i, "port") if key == "portDefinitions" else _ptr(key, i),
                     f"port {d.port} is used more than once")
        seen.add(d.port)


def _constraints(v: Any, errs: _Errors) -> tuple[Constraint, ...]:
    if v is _MISSING or v is None:
        return ()
    if not isinstance(v, list):
        errs.add(_ptr("constraints"), f"must be an array, got {_type_name(v)}")
        return ()
    out: list[Constraint] = []
    for i, c in enumerate(v):
        path = _ptr("constraints", i)
        if not isinstance(c, list) or not 2 <= len(c) <= 3:
            errs.add(path, "must be an array [field, operator] or [field, operator, value]")
            continue
        fld, op = c[0], c[1]
        value: Any = c[2] if len(c) == 3 else None
        ok = True
        if not isinstance(fld, str) or not fld:
            errs.add(path, "field must be a non-empty string")
            ok = False
        if not isinstance(op, str) or op not in CONSTRAINT_OPERATORS:
            errs.add(path, f"unknown operator {op!r}; valid operators are "
                           f"{', '.join(CONSTRAINT_OPERATORS)}")
            continue
        # Convenience: numeric values for MAX_PER / GROUP_BY may be given as JSON integers.
        if isinstance(value, int) and not isinstance(value, bool) and op in ("MAX_PER",
                                                                              "GROUP_BY"):
            value = str(value)
        if value is not None and not isinstance(value, str):
            errs.add(path, f"value must be a string, got {_type_name(value)}")
            continue
        if op == "UNIQUE" and value is not None:
            errs.add(path, "UNIQUE takes no value")
            ok = False
        elif op in ("LIKE", "UNLIKE", "IS", "MAX_PER") and value is None:
            errs.add(path, f"{op} requires a value")
            ok = False
        elif op in ("LIKE", "UNLIKE"):
            try:
                re.compile(value)  # type: ignore[arg-type]
            except re.error as exc:
                errs.add(path, f"{op} value {value!r} is not a valid regular expression: {exc}")
                ok = False
        elif op in ("MAX_PER", "GROUP_BY") and value is not None:
            if not (value.isascii() and value.isdigit() and int(value) > 0):
                errs.add(path, f"{op} value must be a positive integer, got {value!r}")
                ok = False
        if ok:
            out.append(Constraint(field=fld, operator=op, value=value))
    return tuple(out)


def _health_checks(v: Any, ports: tuple[PortDefinition, ...], errs: _Errors
                   ) -> tuple[HealthCheck, ...]:
    if v is _MISSING or v is None:
        return ()
    if not isinstance(v, list):
        errs.add(_ptr("healthChecks"), f"must be an array, got {_type_name(v)}")
        return ()
    out: list[HealthCheck] = []
    for i, hc in enumerate(v):
        path = ("healthChecks", i)
        if not isinstance(hc, dict):
            errs.add(_ptr(*path), f"must be an object, got {_type_name(hc)}")
            continue
        before = len(errs.details())
        _check_unknown(hc, _HC_FIELDS, path, errs)
        protocol = hc.get("protocol", "HTTP")
        if protocol is None:
            protocol = "HTTP"
        if protocol not in HEALTH_CHECK_PROTOCOLS:
            errs.add(_ptr(*path, "protocol"),
                     f"unsupported protocol {protocol!r}; use one of "
                     f"{', '.join(HEALTH_CHECK_PROTOCOLS)}")
            continue
        hc_path = "/"
        if hc.get("path") is not None:
            if protocol != "HTTP":
                errs.add(_ptr(*path, "path"), "is only valid for HTTP health checks")
            else:
                p = _string(hc["path"], (*path, "path"), errs, "/")
                if p is not None and not p.startswith("/"):
                    errs.add(_ptr(*path, "path"), "must start with '/'")
                elif p is not None and any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127
                                           for ch in p):
                    # it goes into an HTTP request line as is
                    errs.add(_ptr(*path, "path"), "must not contain spaces or control characters")
                hc_path = p or "/"
        port_index = 0
        if protocol in ("HTTP", "TCP"):
            port_index = _integer(hc.get("portIndex"), (*path, "portIndex"), errs, 0, ge=0)
            if not ports:
                errs.add(_ptr(*path, "portIndex"),
                         f"{protocol} health checks need a port: the app defines no ports")
            elif port_index >= len(ports):
                errs.add(_ptr(*path, "portIndex"),
                         f"{port_index} does not index a port definition "
                         f"(the app has {len(ports)})")
        elif hc.get("portIndex") is not None:
            errs.add(_ptr(*path, "portIndex"), "is only valid for HTTP and TCP health checks")
        command = None
        if protocol == "COMMAND":
            c = hc.get("command")
            if not isinstance(c, dict) or not isinstance(c.get("value"), str) or not c["value"]:
                errs.add(_ptr(*path, "command"),
                         'COMMAND health checks need "command": {"value": "<shell command>"}')
            else:
                _check_unknown(c, {"value"}, (*path, "command"), errs)
                command = c["value"]
        elif hc.get("command") is not None:
            errs.add(_ptr(*path, "command"), "is only valid for COMMAND health checks")
        grace = _seconds(hc.get("gracePeriodSeconds"), (*path, "gracePeriodSeconds"), errs,
                         300, ge=0)
        interval = _seconds(hc.get("intervalSeconds"), (*path, "intervalSeconds"), errs, 60,
                            gt=0)
        timeout = _seconds(hc.get("timeoutSeconds"), (*path, "timeoutSeconds"), errs, 20, gt=0)
        if timeout >= interval:
            errs.add(_ptr(*path, "timeoutSeconds"),
                     f"must be < intervalSeconds ({_num(float(interval))})")
        max_fail = _integer(hc.get("maxConsecutiveFailures"), (*path, "maxConsecutiveFailures"),
                            errs, 3, ge=0)
        # Accepted for compatibility with Marathon clients, not used.
        _seconds(hc.get("delaySeconds"), (*path, "delaySeconds"), errs, 15, ge=0)
        _boolean(hc.get("ignoreHttp1xx"), (*path, "ignoreHttp1xx"), errs, False)
        if len(errs.details()) == before:
            out.append(HealthCheck(protocol=protocol, path=hc_path, port_index=port_index,
                                   command=command, grace_period_seconds=grace,
                                   interval_seconds=interval, timeout_seconds=timeout,
                                   max_consecutive_failures=max_fail))
    return tuple(out)


def _upgrade_strategy(v: Any, errs: _Errors) -> UpgradeStrategy:
    if v is _MISSING or v is None:
        return UpgradeStrategy()
    if not isinstance(v, dict):
        errs.add(_ptr("upgradeStrategy"), f"must be an object, got {_type_name(v)}")
        return UpgradeStrategy()
    _check_unknown(v, _UPGRADE_FIELDS, ("upgradeStrategy",), errs)
    return UpgradeStrategy(
        minimum_health_capacity=_number(v.get("minimumHealthCapacity"),
                                        ("upgradeStrategy", "minimumHealthCapacity"), errs,
                                        1.0, ge=0, le=1),
        maximum_over_capacity=_number(v.get("maximumOverCapacity"),
                                      ("upgradeStrategy", "maximumOverCapacity"), errs,
                                      1.0, ge=0, le=1),
    )


def _role(v: Any, errs: _Errors) -> str | None:
    role = _string(v, ("role",), errs, None)
    if role is not None and (not role or role in (".", "..") or role.startswith("-")
                             or any(ch.isspace() for ch in role)):
        errs.add(_ptr("role"), f"{role!r} is not a valid Mesos role name")
        return None
    return role


def parse_app(doc: Any) -> AppSpec:
    """Validate a Marathon app definition and return its `AppSpec`; raise SpecError listing
    every problem at once."""
    errs = _Errors()
    if not isinstance(doc, dict):
        errs.add("/", f"an app definition must be a JSON object, got {_type_name(doc)}")
        raise SpecError("Object is not valid", errs.details())
    _check_unknown(doc, _TOP_FIELDS, (), errs, ignored=READ_ONLY_FIELDS,
                   unsupported=UNSUPPORTED_FIELDS)
    g = doc.get

    app_id = _normalize_id(g("id", _MISSING), errs)

    cmd = _string(g("cmd"), ("cmd",), errs, None, nonempty=True)
    args: tuple[str, ...] | None = None
    raw_args = g("args")
    if raw_args is not None:
        if (not isinstance(raw_args, list) or not raw_args
                or not all(isinstance(a, str) for a in raw_args)):
            errs.add(_ptr("args"), "must be a non-empty array of strings")
        else:
            args = tuple(raw_args)
    if g("cmd") is not None and raw_args is not None:
        errs.add("/", "specify exactly one of 'cmd' or 'args', not both")
    elif g("cmd") is None and raw_args is None:
        errs.add("/", "an app needs a command: specify 'cmd' (a shell command) or 'args'")

    cpus = _number(g("cpus"), ("cpus",), errs, 1.0, gt=0)
    mem = _number(g("mem"), ("mem",), errs, 128.0, gt=0)
    disk = _number(g("disk"), ("disk",), errs, 0.0, ge=0)
    instances = _integer(g("instances"), ("instances",), errs, 1, ge=0)

    ports = _port_definitions(doc, errs)
    require_ports = _boolean(g("requirePorts"), ("requirePorts",), errs, False)
    _check_ports(ports, require_ports, "ports" if g("ports") is not None else "portDefinitions",
                 errs)

    env = _str_map(g("env"), ("env",), errs)
    labels = _str_map(g("labels"), ("labels",), errs)
    constraints = _constraints(g("constraints", _MISSING), errs)
    health_checks = _health_checks(g("healthChecks", _MISSING), ports, errs)

    backoff = _number(g("backoffSeconds"), ("backoffSeconds",), errs, 1.0, ge=0)
    factor = _number(g("backoffFactor"), ("backoffFactor",), errs, 1.15, ge=1.0)
    max_delay = _number(g("maxLaunchDelaySeconds"), ("maxLaunchDelaySeconds",), errs, 300.0,
                        ge=0)
    upgrade = _upgrade_strategy(g("upgradeStrategy", _MISSING), errs)
    kill_selection = _string(g("killSelection"), ("killSelection",), errs, "YOUNGEST_FIRST",
                             choices=KILL_SELECTIONS)
    grace = g("taskKillGracePeriodSeconds")
    kill_grace = None if grace is None else _number(grace, ("taskKillGracePeriodSeconds",),
                                                   errs, 0.0, gt=0)
    executor = _string(g("executor"), ("executor",), errs, "", choices=EXECUTORS)
    role = _role(g("role"), errs)

    if errs or app_id is None:
        raise SpecError("Object is not valid", errs.details())
    return AppSpec(
        id=app_id, cmd=cmd, args=args, cpus=cpus, mem=mem, disk=disk, instances=instances,
        port_definitions=ports, require_ports=require_ports, env=env, labels=labels,
        constraints=constraints, health_checks=health_checks, backoff_seconds=backoff,
        backoff_factor=factor, max_launch_delay_seconds=max_delay, upgrade_strategy=upgrade,
        kill_selection=kill_selection or "YOUNGEST_FIRST",
        task_kill_grace_period_seconds=kill_grace, executor=executor or "", role=role,
    )


# ---------------------------------------------------------------------------------------------
# documents: PATCH, version stamping, scale detection


def merge_patch(base_doc: dict[str, Any], patch_doc: Any) -> dict[str, Any]:
    """Marathon PATCH: each top-level field of the patch replaces the base's (objects such as
    `env` or `upgradeStrategy` are replaced whole, not merged). The id cannot change.

    Returns a new dict; validate the result with `parse_app`."""
    if not isinstance(patch_doc, dict):
        raise SpecError("Object is not valid", [{
            "path": "/", "errors": [f"a patch must be a JSON object, got {_type_name(patch_doc)}"]
        }])
    if patch_doc.get("id") is not None and base_doc.get("id") is not None:
        errs = _Errors()
        new_id = _normalize_id(patch_doc["id"], errs)
        old_id = _normalize_id(base_doc["id"], _Errors())
        if errs:
            raise SpecError("Object is not valid", errs.details())
        if new_id != old_id:
            raise SpecError("Object is not valid", [{
                "path": "/id", "errors": [f"a patch cannot change the app id ({old_id})"]}])
    merged = copy.deepcopy(base_doc)
    for k, v in patch_doc.items():
        if k == "id" and v is None:
            continue
        merged[k] = copy.deepcopy(v)
        # `ports` and `portDefinitions` are two spellings of one field: the patch's wins.
        if k == "ports" and v is not None:
            merged.pop("portDefinitions", None)
        if k == "portDefinitions" and v is not None:
            merged.pop("ports", None)
    return merged


def _config_part(app_json: dict[str, Any]) -> dict[str, Any]:
    doc = {k: v for k, v in app_json.items() if k not in READ_ONLY_FIELDS}
    try:
        doc = parse_app(doc).to_json()
    except SpecError:
        pass
    doc.pop("instances", None)
    return doc


def is_scale_only(old_doc: dict[str, Any] | None, new_doc: dict[str, Any]) -> bool:
    """True if `new_doc` differs from `old_doc` in `instances` at most (defaults compared
    filled in, read-only fields ignored). An identical definition counts as a scale (no-op):
    it does not restart tasks."""
    if old_doc is None:
        return False
    return _config_part(old_doc) == _config_part(new_doc)


def stamp_app(app_json: dict[str, Any], previous_doc: dict[str, Any] | None, now_iso: str, *,
              scale_only: bool) -> dict[str, Any]:
    """The stored app document: `app_json` plus `version` and `versionInfo`.

    create (no previous): both times = now; scale: `lastScalingAt` = now, `lastConfigChangeAt`
    kept (so running tasks stay current); new definition or restart: both = now.

    Versions of one app grow strictly: if `now_iso` is not after the previous `version` (two
    changes in one millisecond, or the clock stepped back), the previous version plus 1 ms is
    used instead, so a restart right after a create still makes every task old."""
    out = {k: copy.deepcopy(v) for k, v in app_json.items() if k not in ("version",
                                                                           "versionInfo")}
    if previous_doc is not None and previous_doc.get("version"):
        try:
            prev = parse_time(previous_doc["version"])
            if parse_time(now_iso) <= prev:
                now_iso = format_time(prev + 0.001)
        except ValueError:
            pass  # an unparsable old version cannot be compared; keep now
    if previous_doc is None or not scale_only:
        info = {"lastScalingAt": now_iso, "lastConfigChangeAt": now_iso}
    else:
        prev_info = previous_doc.get("versionInfo") or {}
        last_config = (prev_info.get("lastConfigChangeAt") or previous_doc.get("version")
                       or now_iso)
        info = {"lastScalingAt": now_iso, "lastConfigChangeAt": last_config}
    out["version"] = now_iso
    out["versionInfo"] = info
    return out


# ---------------------------------------------------------------------------------------------
# task ids and times


def app_id_to_task_prefix(app_id: str) -> str:
    """`/jpm/timeseries` -> `jpm_timeseries` (ids never contain `_`, so this is reversible)."""
    return app_id.strip("/").replace("/", "_")


def new_task_id(app_id: str) -> str:
    """`jpm_timeseries.<uuid4 hex>`."""
    return f"{app_id_to_task_prefix(app_id)}.{uuid.uuid4().hex}"


def task_id_to_app_id(task_id: str) -> str:
    """Inverse of `new_task_id`'s prefix: `jpm_timeseries.ab12..` -> `/jpm/timeseries`."""
    prefix = task_id.rsplit(".", 1)[0] if "." in task_id else task_id
    return "/" + prefix.replace("_", "/")


def format_time(epoch_seconds: float) -> str:
    """ISO 8601 UTC with milliseconds and `Z`: `2026-11-24T06:30:00.123Z`."""
    dt = datetime.fromtimestamp(epoch_seconds, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def iso_now() -> str:
    return format_time(time.time())


def parse_time(iso: str) -> float:
    """Epoch seconds from an ISO 8601 time (`Z` or an offset; naive times are taken as UTC)."""
    text = iso.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()
