"""`parse_app`: a Marathon app definition validated into an `AppSpec`, every problem reported at
once."""

from __future__ import annotations

import re
from typing import Any

from scheduler.constraint_regex import check_pattern
from scheduler.spec.container import HOST, ContainerSpec, parse_container
from scheduler.spec.fields import (
    MISSING,
    Errors,
    boolean,
    check_unknown,
    integer,
    number,
    object_items,
    ptr,
    str_map,
    string,
    type_name,
)
from scheduler.spec.healthchecks import parse_health_checks
from scheduler.spec.ids import normalize_id
from scheduler.spec.marathon_fields import (
    MARATHON_FIELDS,
    check_refused_unless_empty,
    parse_accepted_roles,
    parse_dependencies,
    parse_fetch,
    parse_gpus,
    parse_readiness_checks,
    parse_unreachable_strategy,
    parse_user,
)
from scheduler.spec.model import (
    CONSTRAINT_OPERATORS,
    DEFAULT_PORT_DEFINITION_NAME,
    EXECUTORS,
    KILL_SELECTIONS,
    PORT_PROTOCOLS,
    READ_ONLY_FIELDS,
    AppSpec,
    Constraint,
    PortDefinition,
    SpecError,
    UpgradeStrategy,
)
from scheduler.spec.secrets import parse_secrets, split_env

_PORT_NAME_RE = re.compile(r"[a-z0-9-]+")  # Marathon's port name pattern (fullmatch)

# Fields named as "not supported" rather than as typos. Every Marathon 1.x field is accepted
# now (scheduler.spec.marathon_fields: values that cannot work here are refused with why).
UNSUPPORTED_FIELDS: frozenset[str] = frozenset()

TOP_FIELDS = frozenset({
    "id", "cmd", "args", "cpus", "mem", "disk", "instances", "portDefinitions", "ports",
    "requirePorts", "env", "labels", "constraints", "healthChecks", "backoffSeconds",
    "backoffFactor", "maxLaunchDelaySeconds", "upgradeStrategy", "killSelection",
    "taskKillGracePeriodSeconds", "executor", "role",
}) | MARATHON_FIELDS
PORT_FIELDS = frozenset({"port", "protocol", "name", "labels"})
UPGRADE_FIELDS = frozenset({"minimumHealthCapacity", "maximumOverCapacity"})


def parse_port_definitions(doc: dict, errs: Errors) -> tuple[PortDefinition, ...]:
    """`portDefinitions` (or the deprecated `ports`); absent or null means Marathon's default,
    one port definition (port 0, named "default"); `[]` means no ports. Marathon 1.4 exports
    carry both fields: accepted when they name the same ports (portDefinitions wins)."""
    has_defs = doc.get("portDefinitions") is not None
    has_ports = doc.get("ports") is not None
    if has_defs and has_ports:
        defs, ports = doc["portDefinitions"], doc["ports"]
        if not (isinstance(defs, list) and isinstance(ports, list)
                and [d.get("port") if isinstance(d, dict) else d for d in defs] == ports):
            errs.add(ptr("ports"), "specify either 'ports' or 'portDefinitions', not both "
                                   "(or both naming the same ports)")
            return ()
        has_ports = False
    if not has_defs and not has_ports:
        return (PortDefinition(port=0, name=DEFAULT_PORT_DEFINITION_NAME),)
    out: list[PortDefinition] = []
    if has_ports:
        ports = doc["ports"]
        if not isinstance(ports, list):
            errs.add(ptr("ports"), f"must be an array of integers, got {type_name(ports)}")
            return ()
        for i, p in enumerate(ports):
            n = integer(p, ("ports", i), errs, -1, ge=0, le=65535)
            if p is None:
                errs.add(ptr("ports", i), "must be an integer, got null")
            elif n >= 0:
                out.append(PortDefinition(port=n))
        return tuple(out)
    defs = doc["portDefinitions"]
    items = object_items(defs, "portDefinitions", errs)
    if items is None:
        return ()
    names: set[str] = set()
    for path, d in items:
        check_unknown(d, PORT_FIELDS, path, errs)
        if d.get("port") is None:
            errs.add(ptr(*path, "port"), "is required (0 means any free port)")
            port = -1
        else:
            port = integer(d["port"], (*path, "port"), errs, -1, ge=0, le=65535)
        protocol = string(d.get("protocol"), (*path, "protocol"), errs, "tcp",
                           choices=PORT_PROTOCOLS)
        name = string(d.get("name"), (*path, "name"), errs, None)
        if name is not None:
            if not _PORT_NAME_RE.fullmatch(name):
                errs.add(ptr(*path, "name"), "must consist of lowercase letters, digits and "
                                              "hyphens")
            elif name in names:
                errs.add(ptr(*path, "name"), f"port name '{name}' is used more than once")
            names.add(name)
        labels = str_map(d.get("labels"), (*path, "labels"), errs)
        if port >= 0:
            out.append(PortDefinition(port=port, protocol=protocol or "tcp", name=name,
                                      labels=labels))
    return tuple(out)


def _docker_doc(doc: dict) -> bool:
    """A Docker app may leave out cmd and args: the image's own command runs."""
    c = doc.get("container")
    return isinstance(c, dict) and (c.get("type") == "DOCKER"
                                    or (c.get("type") is None and isinstance(c.get("docker"), dict)))


def bridge_port_definitions(doc: dict, container: ContainerSpec,
                            errs: Errors) -> tuple[PortDefinition, ...]:
    """A container network's ports are its port mappings' host ports (hostPort 0: any port of
    the offer); `portDefinitions` are for host networking only (Marathon's rule)."""
    if container.network == HOST:
        return ()
    for key in ("portDefinitions", "ports"):
        given = doc.get(key)
        if given not in (None, []):
            errs.add(ptr(key), "not allowed with a container network: declare the ports in "
                               "container.portMappings")
    return tuple(PortDefinition(port=m.host_port, protocol=m.protocol, name=m.name)
                 for m in container.port_mappings if m.host_port is not None)


def check_ports(defs: tuple[PortDefinition, ...], key: str, errs: Errors) -> None:
    """Fixed ports are named once. A 0 is always allowed, also with `requirePorts`: as in
    Marathon, it is given a service port when stored (`scheduler.service_ports`), and with
    `requirePorts` that port is the tasks' host port."""
    seen: set[int] = set()
    for i, d in enumerate(defs):
        if d.port == 0:
            continue
        if d.port in seen:
            errs.add(ptr(key, i, "port") if key == "portDefinitions" else ptr(key, i),
                     f"port {d.port} is used more than once")
        seen.add(d.port)


def parse_constraints(v: Any, errs: Errors) -> tuple[Constraint, ...]:
    if v is MISSING or v is None:
        return ()
    if not isinstance(v, list):
        errs.add(ptr("constraints"), f"must be an array, got {type_name(v)}")
        return ()
    out: list[Constraint] = []
    for i, c in enumerate(v):
        path = ptr("constraints", i)
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
            errs.add(path, f"value must be a string, got {type_name(value)}")
            continue
        if op == "UNIQUE" and value is not None:
            errs.add(path, "UNIQUE takes no value")
            ok = False
        elif op in ("LIKE", "UNLIKE", "IS", "MAX_PER") and value is None:
            errs.add(path, f"{op} requires a value")
            ok = False
        elif op in ("LIKE", "UNLIKE"):
            why = check_pattern(value)  # type: ignore[arg-type]
            if why is not None:
                errs.add(path, f"{op} value {value!r} is not a usable regular expression: {why}")
                ok = False
        elif op in ("MAX_PER", "GROUP_BY") and value is not None:
            if not (value.isascii() and value.isdigit() and int(value) > 0):
                errs.add(path, f"{op} value must be a positive integer, got {value!r}")
                ok = False
        if ok:
            out.append(Constraint(field=fld, operator=op, value=value))
    return tuple(out)


def parse_upgrade_strategy(v: Any, errs: Errors) -> UpgradeStrategy:
    if v is MISSING or v is None:
        return UpgradeStrategy()
    if not isinstance(v, dict):
        errs.add(ptr("upgradeStrategy"), f"must be an object, got {type_name(v)}")
        return UpgradeStrategy()
    check_unknown(v, UPGRADE_FIELDS, ("upgradeStrategy",), errs)
    return UpgradeStrategy(
        minimum_health_capacity=number(v.get("minimumHealthCapacity"),
                                        ("upgradeStrategy", "minimumHealthCapacity"), errs,
                                        1.0, ge=0, le=1),
        maximum_over_capacity=number(v.get("maximumOverCapacity"),
                                      ("upgradeStrategy", "maximumOverCapacity"), errs,
                                      1.0, ge=0, le=1),
    )


def parse_role(v: Any, errs: Errors) -> str | None:
    role = string(v, ("role",), errs, None)
    if role is not None and (not role or role in (".", "..") or role.startswith("-")
                             or any(ch.isspace() for ch in role)):
        errs.add(ptr("role"), f"{role!r} is not a valid Mesos role name")
        return None
    return role


def parse_app(doc: Any) -> AppSpec:
    """Validate a Marathon app definition and return its `AppSpec`; raise SpecError listing
    every problem at once."""
    errs = Errors()
    if not isinstance(doc, dict):
        errs.add("/", f"an app definition must be a JSON object, got {type_name(doc)}")
        raise SpecError("Object is not valid", errs.details())
    check_unknown(doc, TOP_FIELDS, (), errs, ignored=READ_ONLY_FIELDS,
                   unsupported=UNSUPPORTED_FIELDS)
    g = doc.get

    app_id = normalize_id(g("id", MISSING), errs)

    cmd = string(g("cmd"), ("cmd",), errs, None, nonempty=True)
    args: tuple[str, ...] | None = None
    raw_args = g("args")
    if raw_args == [] and g("cmd") is not None:
        raw_args = None  # Marathon exports `"args": []` beside `cmd`: no args
    if raw_args is not None:
        if (not isinstance(raw_args, list) or not raw_args
                or not all(isinstance(a, str) for a in raw_args)):
            errs.add(ptr("args"), "must be a non-empty array of strings")
        else:
            args = tuple(raw_args)
    if g("cmd") is not None and raw_args is not None:
        errs.add("/", "specify exactly one of 'cmd' or 'args', not both")
    elif g("cmd") is None and raw_args is None and not _docker_doc(doc):
        errs.add("/", "an app needs a command: specify 'cmd' (a shell command) or 'args'")

    cpus = number(g("cpus"), ("cpus",), errs, 1.0, gt=0)
    mem = number(g("mem"), ("mem",), errs, 128.0, gt=0)
    disk = number(g("disk"), ("disk",), errs, 0.0, ge=0)
    instances = integer(g("instances"), ("instances",), errs, 1, ge=0)

    ports = parse_port_definitions(doc, errs)
    container = parse_container(doc, errs)
    if container is not None and container.network != "HOST":
        ports = bridge_port_definitions(doc, container, errs)
    require_ports = boolean(g("requirePorts"), ("requirePorts",), errs, False)
    check_ports(ports, "ports" if g("ports") is not None else "portDefinitions", errs)

    secrets = parse_secrets(g("secrets", MISSING), errs)
    raw_env, env_secrets = split_env(g("env"), secrets, errs)
    env = str_map(raw_env, ("env",), errs)
    labels = str_map(g("labels"), ("labels",), errs)
    constraints = parse_constraints(g("constraints", MISSING), errs)
    health_checks = parse_health_checks(g("healthChecks", MISSING), ports, errs)

    backoff = number(g("backoffSeconds"), ("backoffSeconds",), errs, 1.0, ge=0)
    factor = number(g("backoffFactor"), ("backoffFactor",), errs, 1.15, ge=1.0)
    max_delay = number(g("maxLaunchDelaySeconds"), ("maxLaunchDelaySeconds",), errs, 300.0,
                        ge=0)
    upgrade = parse_upgrade_strategy(g("upgradeStrategy", MISSING), errs)
    kill_selection = string(g("killSelection"), ("killSelection",), errs, "YOUNGEST_FIRST",
                             choices=KILL_SELECTIONS)
    grace = g("taskKillGracePeriodSeconds")
    kill_grace = None if grace is None else number(grace, ("taskKillGracePeriodSeconds",),
                                                   errs, 0.0, ge=0)  # Marathon: minimum 0
    executor = string(g("executor"), ("executor",), errs, "", choices=EXECUTORS)
    role = parse_role(g("role"), errs)

    gpus = parse_gpus(g("gpus"), errs)
    user = parse_user(g("user"), errs)
    fetch = parse_fetch(doc, errs)
    accepted_roles = parse_accepted_roles(g("acceptedResourceRoles"), errs)
    dependencies = parse_dependencies(g("dependencies"), app_id, errs)
    readiness = parse_readiness_checks(g("readinessChecks"), ports, errs)
    unreachable = parse_unreachable_strategy(g("unreachableStrategy", MISSING), errs)
    check_refused_unless_empty(doc, errs)

    if errs or app_id is None:
        raise SpecError("Object is not valid", errs.details())
    return AppSpec(
        id=app_id, cmd=cmd, args=args, cpus=cpus, mem=mem, disk=disk, instances=instances,
        port_definitions=ports, require_ports=require_ports, env=env, labels=labels,
        constraints=constraints, health_checks=health_checks, backoff_seconds=backoff,
        backoff_factor=factor, max_launch_delay_seconds=max_delay, upgrade_strategy=upgrade,
        kill_selection=kill_selection or "YOUNGEST_FIRST",
        task_kill_grace_period_seconds=kill_grace, executor=executor or "", role=role,
        gpus=gpus, user=user, fetch=fetch, accepted_resource_roles=accepted_roles,
        dependencies=dependencies, readiness_checks=readiness, unreachable_strategy=unreachable,
        container=container,
        secrets=secrets, env_secrets=env_secrets,
    )
