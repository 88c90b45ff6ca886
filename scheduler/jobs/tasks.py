"""A job run as a Mesos task: the placement request and the TaskInfo (pure).

Runs go through the same placement as apps (`scheduler.placement.place`): each queued run is a
one-task request whose "app" id is the run's task id, with the job's cpus/mem/disk and its
constraints (Chronos's EQUALS is the placement's IS; LIKE/UNLIKE are the same). The task runs on
the Mesos command executor (`//cmd`), so its stdout/stderr land in the sandbox. Its environment
is the job's `environmentVariables` plus what Chronos sets: `mesos_task_id`, `CHRONOS_JOB_NAME`,
`CHRONOS_JOB_OWNER`, `CHRONOS_JOB_RUN_TIME` (the scheduled instant), `CHRONOS_JOB_RUN_ATTEMPT`,
`CHRONOS_RESOURCE_CPU`/`_MEM`/`_DISK`.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

from scheduler.jobs.spec import JobSpec
from scheduler.spec import AppSpec, Constraint

if TYPE_CHECKING:
    from scheduler.placement import Launch

_OPERATORS = {"EQUALS": "IS", "LIKE": "LIKE", "UNLIKE": "UNLIKE"}


def run_app(run: dict[str, Any], spec: JobSpec) -> AppSpec:
    """The placement's view of a run: one task of an "app" named by the run's task id."""
    return AppSpec(id=run["id"], cmd=spec.command, cpus=spec.cpus, mem=spec.mem,
                   disk=spec.disk, instances=1, executor="//cmd",
                   constraints=tuple(Constraint(f, _OPERATORS[op], v)
                                     for f, op, v in spec.constraints))


def run_env(run: dict[str, Any], spec: JobSpec) -> dict[str, str]:
    env = {k: v for k, v in spec.environment_variables}
    env.update({
        "mesos_task_id": run["id"], "CHRONOS_JOB_NAME": spec.name,
        "CHRONOS_JOB_OWNER": spec.owner, "CHRONOS_JOB_RUN_TIME": run["scheduledAt"],
        "CHRONOS_JOB_RUN_ATTEMPT": str(run.get("attempt", 0)),
        "CHRONOS_RESOURCE_CPU": str(spec.cpus), "CHRONOS_RESOURCE_MEM": str(spec.mem),
        "CHRONOS_RESOURCE_DISK": str(spec.disk),
    })
    return env


def task_info(launch: Launch, run: dict[str, Any], spec: JobSpec) -> dict[str, Any]:
    """The Mesos v1 TaskInfo of a placed run (its resources exactly the placement's)."""
    env = run_env(run, spec)
    extra = str(run.get("arguments") or "")  # a manual run's `?arguments=`, appended
    if spec.shell:
        command: dict[str, Any] = {"shell": True,
                                   "value": f"{spec.command} {extra}" if extra else spec.command}
    else:
        command = {"shell": False, "value": spec.command,
                   "arguments": [spec.command, *spec.arguments, *shlex.split(extra)]}
    command["environment"] = {"variables": [{"name": k, "value": v}
                                            for k, v in sorted(env.items())]}
    if spec.fetch:
        command["uris"] = [f.to_mesos() for f in spec.fetch]
    return {
        "name": f"ChronosTask:{spec.name}",
        "task_id": {"value": run["id"]},
        "agent_id": {"value": launch.agent_id},
        "resources": [dict(r) for r in launch.resources],
        "command": command,
        "labels": {"labels": [{"key": "accessd.job", "value": spec.name},
                              {"key": "accessd.job.scheduledAt", "value": run["scheduledAt"]}]},
    }
