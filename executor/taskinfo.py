"""Decode a TaskInfo (as pymesos hands it over: plain dicts) into what the executor runs.

Invariant: `parse_task` either returns a complete `TaskConfig` or raises `TaskInfoError` with a
message fit for a TASK_FAILED status; it never raises anything else, whatever the input.
The `data` contract is DEVELOPERS.md's "Task launched with accessd's executor".
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from executor.health import CheckSpec, parse_check

DEFAULT_KILL_GRACE_SECONDS = 3.0  # Mesos's default when the TaskInfo has no kill_policy


class TaskInfoError(Exception):
    """The TaskInfo cannot be run; the message says why."""


@dataclass(frozen=True)
class TaskConfig:
    task_id: str
    app_id: str
    command: str | tuple[str, ...]  # a str runs under /bin/sh -c; a tuple is an argv
    env: dict[str, str] = field(default_factory=dict)
    ports: tuple[int, ...] = ()
    port_names: tuple[str | None, ...] = ()
    host: str = ""
    health_checks: tuple[CheckSpec, ...] = ()
    kill_grace_seconds: float = DEFAULT_KILL_GRACE_SECONDS
    version: str | None = None


def grace_seconds(kill_policy: Any, default: float) -> float:
    """`KillPolicy.grace_period.nanoseconds` in seconds, or `default` if absent or malformed."""
    try:
        nanos = kill_policy["grace_period"]["nanoseconds"]
        seconds = int(nanos) / 1e9  # int64 may arrive as a JSON string
    except (KeyError, TypeError, ValueError):
        return default
    return max(0.0, seconds)


def task_id_of(task_info: Any) -> str | None:
    try:
        value = task_info["task_id"]["value"]
    except (KeyError, TypeError):
        return None
    return value if isinstance(value, str) else None


def parse_task(task_info: Any) -> TaskConfig:
    try:
        return _parse(task_info)
    except TaskInfoError:
        raise
    except Exception as exc:  # whatever shape arrives, the answer is a clear TASK_FAILED
        raise TaskInfoError(f"invalid TaskInfo: {type(exc).__name__}: {exc}") from exc


def _parse(task_info: Any) -> TaskConfig:
    task_id = task_id_of(task_info)
    if not task_id:
        raise TaskInfoError("invalid TaskInfo: no task_id")
    raw = task_info.get("data")
    if not raw:
        raise TaskInfoError("invalid TaskInfo: no data (accessd's executor needs the task's "
                            "JSON in TaskInfo.data)")
    try:
        data = json.loads(base64.b64decode(raw, validate=True).decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise TaskInfoError(f"invalid TaskInfo.data: not base64 of a JSON object ({exc})") from exc
    if not isinstance(data, Mapping):
        raise TaskInfoError("invalid TaskInfo.data: not a JSON object")

    cmd, args = data.get("cmd"), data.get("args")
    if cmd is not None and args is not None:
        raise TaskInfoError("invalid TaskInfo.data: both cmd and args given")
    if isinstance(cmd, str) and cmd.strip():
        command: str | tuple[str, ...] = cmd
    elif (isinstance(args, list) and args and all(isinstance(a, str) for a in args)):
        command = tuple(args)
    else:
        raise TaskInfoError("invalid TaskInfo.data: needs a non-empty cmd (string) or args "
                            "(list of strings)")

    env = data.get("env") or {}
    if not isinstance(env, Mapping):
        raise TaskInfoError("invalid TaskInfo.data: env must be an object")
    ports = data.get("ports") or []
    if not isinstance(ports, list) or not all(isinstance(p, int) and not isinstance(p, bool)
                                              and 0 < p < 65536 for p in ports):
        raise TaskInfoError(f"invalid TaskInfo.data: ports must be a list of ports, got {ports!r}")
    port_names = _port_names(data, len(ports))
    checks = data.get("healthChecks") or []
    if not isinstance(checks, list):
        raise TaskInfoError("invalid TaskInfo.data: healthChecks must be a list")
    try:
        specs = tuple(parse_check(c, ports, str(data.get("host") or "")) for c in checks)
    except ValueError as exc:
        raise TaskInfoError(f"invalid health check: {exc}") from exc
    app_id = data.get("appId")
    if not isinstance(app_id, str) or not app_id:
        raise TaskInfoError("invalid TaskInfo.data: no appId")
    return TaskConfig(
        task_id=task_id, app_id=app_id, command=command,
        env={str(k): "" if v is None else str(v) for k, v in env.items()},
        ports=tuple(ports), port_names=port_names, host=str(data.get("host") or ""),
        health_checks=specs,
        kill_grace_seconds=grace_seconds(task_info.get("kill_policy"), DEFAULT_KILL_GRACE_SECONDS),
        version=data.get("version") if isinstance(data.get("version"), str) else None,
    )


def _port_names(data: Mapping, count: int) -> tuple[str | None, ...]:
    """Port names for PORT_<NAME>: `portNames` or `portDefinitions[].name`, if the data has them.

    Neither is in the DEVELOPERS.md data contract; both are accepted so names work once a
    launcher sends them.
    """
    names = data.get("portNames")
    if names is None and isinstance(data.get("portDefinitions"), list):
        names = [d.get("name") if isinstance(d, Mapping) else None
                 for d in data["portDefinitions"]]
    if not isinstance(names, list):
        return ()
    return tuple(n if isinstance(n, str) and n else None for n in names[:count])
