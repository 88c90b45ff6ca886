"""The operator commands: thin HTTP clients of accessd's control API (Marathon REST v2).

`accessd apps list | deploy FILE | scale APP N | restart APP | delete APP | tasks APP |
deployments | events` all land here through `main(argv)`, with argv[0] the command name.

Behaviour every command shares:
- `--api URL` (env `ACCESSD_API`, default http://127.0.0.1:8080), `--token` (env
  `ACCESSD_API_TOKEN`, sent as `Authorization: Bearer …`), `--json` for the API's raw JSON;
- an API error prints the API's own `message` and `details` (never a traceback); a refused
  connection is one line naming the URL;
- exit codes: 0 ok, 1 failure (API error, failed/cancelled/timed-out deployment), 2 usage.

`--wait` (deploy, scale, restart, delete) follows the deployment until it is done *and* the app
converged; see `DeploymentWaiter` for what "done" means and how failure is recognised.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any, NoReturn

import requests

from api.cli_format import (  # noqa: F401 - re-exported: tests and other commands import them here
    apps_table,
    deployments_table,
    number,
    print_json,
    status_label,
    table,
    task_health,
    tasks_table,
)
from api.cli_wait import (  # noqa: F401 - re-exported
    FAILED_STATES,
    POLL_SECONDS,
    DeploymentWaiter,
    Progress,
    deployment_id_of,
    wait_for,
)
from api.client import (  # noqa: F401 - re-exported
    DEFAULT_API,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    ApiClient,
    ApiError,
    CliError,
    app_path,
    client_options,
    connection_error,
    format_details,
    normalize_id,
    parse_body,
    with_extras,
)

# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------

def force_params(opts: argparse.Namespace) -> dict[str, str] | None:
    return {"force": "true"} if getattr(opts, "force", False) else None


def finish_write(client: ApiClient, opts: argparse.Namespace, app_id: str, action: str,
                 answer: Any, done_text: str) -> int:
    dep = deployment_id_of(answer)
    if opts.json:
        print_json(answer)
    else:
        print(done_text + (f" (deployment {dep})" if dep else ""))
    if opts.wait:
        wait_for(client, app_id, dep, action, opts)
        if not opts.json:
            print(f"{action} of {normalize_id(app_id)} done")
    return EXIT_OK


def cmd_apps(client: ApiClient, opts: argparse.Namespace) -> int:
    answer = client.get("/v2/apps", params={"embed": ["apps.tasks", "apps.lastTaskFailure"]}
                        if opts.json else None)
    if opts.json:
        print_json(answer)
        return EXIT_OK
    apps = (answer or {}).get("apps", [])
    print(apps_table(apps) if apps else "no apps")
    return EXIT_OK


def load_definition(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise CliError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} "
                       f"column {exc.colno}") from None
    if not isinstance(doc, dict):
        raise CliError(f"{path} must hold one app definition (a JSON object)")
    if not isinstance(doc.get("id"), str) or not doc["id"].strip("/ "):
        raise CliError(f"{path}: the app definition needs an \"id\"")
    return doc


def cmd_deploy(client: ApiClient, opts: argparse.Namespace) -> int:
    doc = load_definition(opts.file)
    app_id = normalize_id(doc["id"])
    exists = client.get(app_path(app_id), ok_404=True) is not None
    if exists:
        # The file is the whole definition: replace (a field left out of the file goes back to
        # its default), not Marathon's default merge.
        params = {**(force_params(opts) or {}), "partialUpdate": "false"}
        answer = client.request("PUT", app_path(app_id), body=doc, params=params)
        verb = "updated"
    else:
        answer = client.request("POST", "/v2/apps", body=doc, params=force_params(opts))
        verb = "created"
    return finish_write(client, opts, app_id, "deploy", answer, f"{verb} {app_id}")


def cmd_scale(client: ApiClient, opts: argparse.Namespace) -> int:
    answer = client.request("PUT", app_path(opts.app), body={"instances": opts.instances},
                            params=force_params(opts))
    return finish_write(client, opts, opts.app, "scale", answer,
                        f"scaling {normalize_id(opts.app)} to {opts.instances}")


def cmd_restart(client: ApiClient, opts: argparse.Namespace) -> int:
    answer = client.request("POST", app_path(opts.app) + "/restart", params=force_params(opts))
    return finish_write(client, opts, opts.app, "restart", answer,
                        f"restarting {normalize_id(opts.app)}")


def cmd_delete(client: ApiClient, opts: argparse.Namespace) -> int:
    answer = client.request("DELETE", app_path(opts.app), params=force_params(opts))
    return finish_write(client, opts, opts.app, "delete", answer,
                        f"deleting {normalize_id(opts.app)}")


def cmd_tasks(client: ApiClient, opts: argparse.Namespace) -> int:
    answer = client.get(app_path(opts.app), params={"embed": "app.tasks"})
    app = (answer or {}).get("app", answer) or {}
    tasks = app.get("tasks") or []
    if opts.json:
        print_json({"tasks": tasks})
        return EXIT_OK
    print(tasks_table(tasks) if tasks else f"no tasks for {normalize_id(opts.app)}")
    return EXIT_OK


def cmd_deployments(client: ApiClient, opts: argparse.Namespace) -> int:
    answer = client.get("/v2/deployments") or []
    if opts.json:
        print_json(answer)
        return EXIT_OK
    print(deployments_table(answer) if answer else "no deployments")
    return EXIT_OK


def sse_events(resp: requests.Response) -> Iterator[tuple[str, str, str | None]]:
    """(event type, data, event id) of a text/event-stream, as they arrive."""
    buffer = ""
    event, data, event_id = "", [], None
    # chunk_size=None hands over bytes as they arrive instead of filling a fixed buffer.
    for chunk in resp.iter_content(chunk_size=None, decode_unicode=True):
        buffer += chunk if isinstance(chunk, str) else chunk.decode("utf-8", "replace")
        while True:
            cut = buffer.find("\n")
            if cut < 0:
                break
            line, buffer = buffer[:cut].rstrip("\r"), buffer[cut + 1:]
            if not line:
                if data:
                    yield event or "message", "\n".join(data), event_id
                event, data, event_id = "", [], None
            elif line.startswith(":"):
                continue  # a comment: the server's keep-alive
            else:
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "event":
                    event = value
                elif name == "data":
                    data.append(value)
                elif name == "id":
                    event_id = value


def _plan_text(plan: Any) -> str:
    if not isinstance(plan, dict):
        return ""
    actions = ", ".join(f"{a.get('action')} {a.get('app')}"
                        for a in plan.get("currentActions") or [] if isinstance(a, dict))
    text = f"deployment {plan.get('id')}"
    if plan.get("totalSteps"):
        text += f" step {plan.get('currentStep')}/{plan.get('totalSteps')}"
    return text + (f": {actions}" if actions else "")


def event_summary(etype: str, ev: dict[str, Any]) -> str:
    """One readable line for the event types operators watch; compact JSON for the rest.

    Full documents (app definitions, deployment plans) would make a line hundreds of characters
    long; `--json` keeps everything for scripts."""
    def fields(*names: str) -> str:
        return " ".join(f"{n}={ev[n]}" for n in names if ev.get(n) not in (None, "", []))

    if etype == "api_post_event":
        app = ev.get("appDefinition") or {}
        return (f"{ev.get('uri', '')} from {ev.get('clientIp', '?')}"
                + (f" (app {app.get('id')}, instances {app.get('instances')})"
                   if isinstance(app, dict) and app.get("id") else ""))
    if etype in ("deployment_info", "deployment_step_success", "deployment_step_failure"):
        return _plan_text(ev.get("plan"))
    if etype in ("deployment_success", "deployment_failed"):
        plan = ev.get("plan") if isinstance(ev.get("plan"), dict) else {}
        apps = ",".join(plan.get("affectedApps") or [])
        msg = plan.get("message")
        return (f"deployment {ev.get('id') or plan.get('id')}" + (f" ({apps})" if apps else "")
                + (f": {msg}" if msg else ""))
    if etype == "status_update_event":
        return fields("appId", "taskId", "taskStatus", "host", "ports", "message")
    if etype == "health_status_changed_event":
        return fields("appId", "taskId", "alive")
    if etype == "unhealthy_task_kill_event":
        return fields("appId", "taskId", "host", "reason")
    if etype == "app_terminated_event":
        return fields("appId")
    if etype == "scheduler_registered_event":
        return fields("frameworkId", "master")
    rest = {k: v for k, v in ev.items() if k not in ("eventType", "timestamp")}
    return json.dumps(rest, sort_keys=True)


def print_event(event: str, data: str, types: set[str], as_json: bool) -> bool:
    """Print one event unless filtered out; True if printed."""
    try:
        payload = json.loads(data)
    except ValueError:
        payload = None
    etype = (payload.get("eventType") if isinstance(payload, dict) else None) or event
    if types and etype not in types:
        return False  # the server may not filter; do it here too
    if as_json:
        print(data if payload is None else json.dumps(payload, sort_keys=True))
    else:
        stamp = payload.get("timestamp", "") if isinstance(payload, dict) else ""
        text = event_summary(etype, payload) if isinstance(payload, dict) else data
        print(f"{stamp} {etype} {text}".strip())
    sys.stdout.flush()
    return True


def cmd_events(client: ApiClient, opts: argparse.Namespace) -> int:
    """Follow /v2/events. When the stream breaks (the API restarted, a worker stopped) it
    reconnects with `Last-Event-ID`, so no event is lost or repeated, for up to
    `--reconnect` seconds; a first connection that fails is reported at once."""
    types = {t for arg in opts.type or [] for t in arg.split(",") if t}
    params = {"event_type": sorted(types)} if types else None
    last_id: str | None = None
    seen = 0
    connected_once = False
    broken_since: float | None = None
    while True:
        try:
            resp = client.stream("/v2/events", params=params, last_event_id=last_id)
        except CliError as exc:
            if not (connected_once and exc.transient):
                raise
            assert broken_since is not None
            if time.monotonic() - broken_since > opts.reconnect:
                raise CliError(f"the event stream from {client.base_url} broke and did not "
                               f"come back within {opts.reconnect:g}s: {exc.message}") from None
            time.sleep(1.0)
            continue
        # On stderr, so scripts reading stdout see only events; it also tells a watcher (or a
        # test) that the stream is open and later events will be shown.
        if not connected_once:
            print(f"following events from {client.base_url}/v2/events"
                  + (f" (types: {', '.join(sorted(types))})" if types else "")
                  + "; Ctrl-C to stop", file=sys.stderr, flush=True)
        else:
            print(f"reconnected to {client.base_url}/v2/events", file=sys.stderr, flush=True)
        connected_once = True
        try:
            for event, data, event_id in sse_events(resp):
                if event_id is not None:
                    last_id = event_id
                if print_event(event, data, types, opts.json):
                    seen += 1
                    if opts.limit and seen >= opts.limit:
                        return EXIT_OK
        except requests.RequestException:
            pass  # the stream broke: reconnect below
        finally:
            resp.close()
        if opts.reconnect <= 0:
            raise CliError(f"the API at {client.base_url} closed the event stream")
        print(f"the event stream from {client.base_url} ended; reconnecting", file=sys.stderr,
              flush=True)
        broken_since = time.monotonic()


# --------------------------------------------------------------------------------------------
# Argument parsing and main
# --------------------------------------------------------------------------------------------

class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so `main` decides the exit code and output."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.format_usage().strip()}\n{self.prog}: error: {message}")


def positive_seconds(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def build_parser() -> Parser:
    common = client_options()
    waiting = Parser(add_help=False)
    waiting.add_argument("--wait", action="store_true",
                         help="follow the deployment until the app converged")
    waiting.add_argument("--timeout", type=positive_seconds, default=300.0,
                         help="seconds --wait waits at most (default %(default)g)")
    waiting.add_argument("--force", action="store_true",
                         help="override a running deployment of the app (?force=true)")

    parser = Parser(prog="accessd", description="Operate accessd through its control API.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    apps = sub.add_parser("apps", help="list apps", parents=[common])
    apps.add_argument("what", nargs="?", choices=["list"], default="list")
    apps.set_defaults(func=cmd_apps)

    deploy = sub.add_parser("deploy", help="create or update an app from a JSON file",
                            parents=[common, waiting])
    deploy.add_argument("file", metavar="FILE.json")
    deploy.set_defaults(func=cmd_deploy)

    scale = sub.add_parser("scale", help="set an app's instances", parents=[common, waiting])
    scale.add_argument("app", metavar="APP")
    scale.add_argument("instances", metavar="N", type=non_negative_int)
    scale.set_defaults(func=cmd_scale)

    for name, func, summary in (("restart", cmd_restart, "restart an app's tasks (rolling)"),
                                ("delete", cmd_delete, "delete an app")):
        p = sub.add_parser(name, help=summary, parents=[common, waiting])
        p.add_argument("app", metavar="APP")
        p.set_defaults(func=func)

    tasks = sub.add_parser("tasks", help="list an app's tasks", parents=[common])
    tasks.add_argument("app", metavar="APP")
    tasks.set_defaults(func=cmd_tasks)

    deployments = sub.add_parser("deployments", help="list running deployments",
                                 parents=[common])
    deployments.set_defaults(func=cmd_deployments)

    events = sub.add_parser("events", help="follow the event stream", parents=[common])
    events.add_argument("--type", action="append", metavar="TYPE",
                        help="only events of this type (repeatable, or comma-separated)")
    events.add_argument("--limit", type=non_negative_int, default=0,
                        help="stop after N events (0: follow until Ctrl-C)")
    events.add_argument("--reconnect", type=float, default=30.0, metavar="SECONDS",
                        help="how long to keep reconnecting a broken stream (0: exit at once; "
                             "default %(default)g)")
    events.set_defaults(func=cmd_events)
    return parser


def _sigterm_as_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        opts = parser.parse_args(argv)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    client = ApiClient(opts.api, opts.token, cacert=opts.cacert)
    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        return int(opts.func(client, opts))
    except CliError as exc:
        print(f"accessd {opts.command}: {exc.message}", file=sys.stderr)
        for line in exc.details:
            print(f"  {line}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        # Ctrl-C ends a follow (events, --wait) on purpose: no traceback. Stopping a --wait
        # does not stop the deployment, so say so.
        if getattr(opts, "wait", False):
            print(f"\naccessd {opts.command}: stopped waiting; the deployment goes on",
                  file=sys.stderr)
            return EXIT_FAILURE
        return EXIT_OK
    except BrokenPipeError:
        # `accessd events | head`: the reader left; nothing more to say.
        sys.stderr.close()
        return EXIT_OK
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
