"""Build the Mesos v1 TaskInfo (JSON) for one placed task of an app.

Invariants:
- the TaskInfo's `resources` are exactly the placement's (`Launch.resources`), so the master
  finds every one of them in the offer;
- the service sees the same environment under both executors: the app's `env` plus Marathon's
  variables (`PORT0..n`, `PORT`, `PORTS`, `PORT_<NAME>`, `PORT_<declared port>`, `HOST`,
  `MESOS_TASK_ID`, `MARATHON_APP_ID`, `MARATHON_APP_VERSION`, `MARATHON_APP_RESOURCE_*`,
  `MARATHON_APP_LABELS`, `MARATHON_APP_LABEL_<NAME>`); ours win over an app variable of the same
  name, so `$PORT0` is always the port the task really got;
- `app.executor == ""` runs accessd's executor (`<python> -m executor`, one executor per task,
  executor id = task id) with the task described in `data` (base64 JSON, the DEVELOPERS.md
  contract); the executor is given no resources of its own (Mesos accepts that and only warns),
  so placement needs nothing beyond the app's cpus/mem/disk;
- `app.executor == "//cmd"` runs the Mesos command executor with the environment in `command`;
- the app's `fetch` (and `uris`) are the URIs of the CommandInfo that starts the process (the
  task's under `//cmd`, the executor's otherwise: the task runs in the executor's sandbox), and
  its `user` that CommandInfo's `user`, so the agent's fetcher and launcher do what Mesos does;
- `health_check` is the app's first health check in Mesos form (Mesos allows one per task);
  `delay_seconds` is 0 as Marathon sets it (the grace period already ignores early failures, and a
  delay would hold back the first success); all checks go, Marathon form, into `data.healthChecks`.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from scheduler import spec as _spec
from scheduler.containers import container_env, container_info
from scheduler.secret_values import secret_env

if TYPE_CHECKING:
    from scheduler.placement import Launch
    from scheduler.spec import AppSpec, HealthCheck

ACCESSD_EXECUTOR = ""
COMMAND_EXECUTOR = "//cmd"
HEALTH_CHECK_DELAY_SECONDS = 0  # Marathon's value; see the module docstring


def new_task_id(app_id: str) -> str:
    """`/jpm/timeseries` -> `jpm_timeseries.<uuid4 hex>` (the one format: scheduler.spec's)."""
    return _spec.new_task_id(app_id)


def task_name(app_id: str) -> str:
    """Marathon's task name: the app id's segments reversed, dot-joined (`timeseries.jpm`)."""
    return ".".join(reversed([p for p in app_id.split("/") if p])) or "task"


def _env_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name).upper()


def task_env(app: AppSpec, ports: list[int], host: str, task_id: str,
             config_version: str) -> dict[str, str]:
    """The environment the service runs with (app env, then Marathon's variables on top)."""
    env: dict[str, str] = {str(k): str(v) for k, v in dict(app.env).items()}
    ours: dict[str, str] = {}
    for i, port in enumerate(ports):
        ours[f"PORT{i}"] = str(port)
    if ports:
        ours["PORT"] = str(ports[0])
        ours["PORTS"] = ",".join(str(p) for p in ports)
    for pd, port in zip(app.port_definitions, ports, strict=False):
        if pd.port:
            ours[f"PORT_{pd.port}"] = str(port)
        if pd.name:
            ours[f"PORT_{_env_name(pd.name)}"] = str(port)
    labels = dict(app.labels)
    ours.update({
        "HOST": host,
        "MESOS_TASK_ID": task_id,
        "MARATHON_APP_ID": app.id,
        "MARATHON_APP_VERSION": config_version,
        "MARATHON_APP_RESOURCE_CPUS": str(float(app.cpus)),
        "MARATHON_APP_RESOURCE_MEM": str(float(app.mem)),
        "MARATHON_APP_RESOURCE_DISK": str(float(app.disk)),
        "MARATHON_APP_LABELS": " ".join(_env_name(k) for k in sorted(labels)),
    })
    for k in sorted(labels):
        ours[f"MARATHON_APP_LABEL_{_env_name(k)}"] = str(labels[k])
    env.update(ours)
    return env


def _variables(env: Mapping[str, str]) -> dict[str, Any]:
    return {"variables": [{"name": k, "value": v} for k, v in sorted(env.items())]}


def mesos_health_check(check: HealthCheck, ports: list[int],
                       env: Mapping[str, str]) -> dict[str, Any] | None:
    """A spec HealthCheck in Mesos form, probing the task's real port; None if its port index
    has no port (the spec should have refused that)."""
    out: dict[str, Any] = {
        "delay_seconds": HEALTH_CHECK_DELAY_SECONDS,
        "interval_seconds": float(check.interval_seconds),
        "timeout_seconds": float(check.timeout_seconds),
        "consecutive_failures": int(check.max_consecutive_failures),
        "grace_period_seconds": float(check.grace_period_seconds),
    }
    protocol = str(check.protocol).upper()
    if protocol == "COMMAND":
        out["type"] = "COMMAND"
        out["command"] = {"value": check.command or "", "shell": True,
                          "environment": _variables(env)}
        return out
    if not 0 <= check.port_index < len(ports):
        return None
    port = ports[check.port_index]
    if protocol in ("HTTP", "HTTPS", "MESOS_HTTP", "MESOS_HTTPS"):
        out["type"] = "HTTP"
        out["http"] = {"port": port, "path": check.path or "/",
                       "scheme": "https" if protocol.endswith("HTTPS") else "http"}
    else:  # TCP, MESOS_TCP
        out["type"] = "TCP"
        out["tcp"] = {"port": port}
    return out


def _fetch_and_user(command: dict[str, Any], app: AppSpec) -> None:
    """The app's `fetch` as CommandInfo URIs (the agent's fetcher downloads them into the
    sandbox before the command starts) and its `user` as CommandInfo.user (the agent runs the
    command as that user, or fails the task if it cannot)."""
    if app.fetch:
        command["uris"] = [f.to_mesos() for f in app.fetch]
    if app.user is not None:
        command["user"] = app.user


def build_task_info(launch: Launch, app: AppSpec, *, task_id: str, config_version: str,
                    executor_python: str) -> dict[str, Any]:
    """The Mesos v1 TaskInfo JSON dict for `launch` (a scheduler.placement.Launch) of `app`."""
    ports = list(launch.ports)
    env = task_env(app, ports, launch.hostname, task_id, config_version)
    if app.container is not None:
        env = container_env(app.container, ports, env)
    if app.env_secrets:  # resolved now, into this TaskInfo only (scheduler.secret_values)
        env.update(secret_env(app))
    labels = [{"key": str(k), "value": str(v)} for k, v in sorted(dict(app.labels).items())]
    labels += [{"key": "accessd.app", "value": app.id},
               {"key": "accessd.version", "value": config_version}]
    info: dict[str, Any] = {
        "name": task_name(app.id),
        "task_id": {"value": task_id},
        "agent_id": {"value": launch.agent_id},
        "resources": [dict(r) for r in launch.resources],
        "labels": {"labels": labels},
    }
    if app.task_kill_grace_period_seconds is not None:
        nanos = int(round(float(app.task_kill_grace_period_seconds) * 1e9))
        info["kill_policy"] = {"grace_period": {"nanoseconds": nanos}}
    if app.health_checks:
        hc = mesos_health_check(app.health_checks[0], ports, env)
        if hc is not None:
            info["health_check"] = hc

    if app.container is not None:
        info["container"] = container_info(app.container, ports)
    # A Docker container runs under Mesos's docker executor (the command form), never ours.
    if app.executor == COMMAND_EXECUTOR or (app.container is not None and app.container.docker):
        if app.args is not None and app.container is not None:
            # Marathon's Docker form: the args follow the image's entrypoint
            command: dict[str, Any] = {"shell": False, "arguments": list(app.args)}
        elif app.args is not None:
            command = {"shell": False, "value": app.args[0], "arguments": list(app.args)}
        elif app.cmd is None:  # a Docker app without cmd or args: the image's command
            command = {"shell": False}
        else:
            command = {"shell": True, "value": app.cmd}
        command["environment"] = _variables(env)
        _fetch_and_user(command, app)
        info["command"] = command
        return info

    if app.executor != ACCESSD_EXECUTOR:
        raise ValueError(f"unknown executor {app.executor!r} (use \"\" or \"//cmd\")")
    marathon = app.to_json()
    data: dict[str, Any] = {"appId": app.id}
    if app.args is not None:
        data["args"] = list(app.args)
    else:
        data["cmd"] = app.cmd or ""
    data.update({
        "env": env,
        "ports": ports,
        "host": launch.hostname,
        "healthChecks": marathon.get("healthChecks", []),
        # beyond the DEVELOPERS.md contract, read by executor/taskinfo.py when present:
        "portNames": [pd.name for pd in app.port_definitions][:len(ports)],
        "version": config_version,
    })
    executor_command: dict[str, Any] = {"value": f"{executor_python} -m executor",
                                        "shell": True}
    _fetch_and_user(executor_command, app)
    info["executor"] = {
        "executor_id": {"value": task_id},
        "name": f"accessd executor for {app.id}",
        "source": app.id,
        "command": executor_command,
        "resources": [],
    }
    raw = json.dumps(data, sort_keys=True).encode("utf-8")
    info["data"] = base64.b64encode(raw).decode("ascii")
    return info
