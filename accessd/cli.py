"""The `accessd` command: one entry point that hands each sub-command to the module owning it.

Sub-commands are imported lazily so that `accessd localmesos` does not import Falcon, and so on.
Each module exposes `main(argv: list[str]) -> int`. The operator commands (`apps`, `scale`, …)
all live in `api.cli`, which gets the command name as its first argument.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "local": ("accessd.local", "run the whole access layer on this machine (make run)"),
    "localmesos": ("localmesos.__main__", "run the embedded single-machine Mesos cluster"),
    "data": ("services.data", "make (synth) or load (CSV) quote data into a store"),
    "model": ("services.model", "train a next-close model and publish a new version"),
    "client": ("services.client", "compare predictions with actual quotes, plot them"),
    "scheduler": ("scheduler.main", "run the Mesos scheduler (framework) against a master"),
    "api": ("api.main", "run the control API under gunicorn"),
    "logs": ("api.logs_cli", "print or follow a task's stdout/stderr (an app: its newest task)"),
    "executor": ("executor.__main__", "run accessd's Mesos executor (started by an agent)"),
    "leader": ("accessd.leader", "show the elected scheduler, or make it abdicate (HA)"),
    "pipeline": ("services.pipeline", "the pipeline's batch steps run as jobs: ingest | retrain"),
    "lb": ("lb.main", "HAProxy load balancer kept equal to the apps' state (service ports)"),
    "image": ("accessd.image", "build the container images (busybox, python) from Debian packages"),
    "jobs": ("api.jobs_cli", "Chronos-style jobs: list | add FILE | run | history | kill | delete"),
}

# Operator commands: thin HTTP clients of the control API, all in one module.
CLIENT_COMMANDS: dict[str, str] = {
    "apps": "list apps (apps list)",
    "deploy": "create or update an app from a JSON file",
    "scale": "set an app's number of instances",
    "restart": "restart an app's tasks (rolling)",
    "delete": "delete an app",
    "tasks": "list an app's tasks",
    "deployments": "list running deployments",
    "events": "follow the event stream",
}


def usage() -> str:
    lines = ["usage: accessd COMMAND [ARGS...]", "", "commands:"]
    for name, (_, summary) in sorted(COMMANDS.items()):
        lines.append(f"  {name:<12} {summary}")
    lines += ["", "operator commands (talk to the control API, --api URL):"]
    for name, summary in CLIENT_COMMANDS.items():
        lines.append(f"  {name:<12} {summary}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name in CLIENT_COMMANDS:
        from api import cli as client_cli

        return int(client_cli.main(argv) or 0)
    if name not in COMMANDS:
        print(f"accessd: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
