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
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TextIO

import requests

DEFAULT_API = "http://127.0.0.1:8080"
FAILED_STATES = ("failed", "cancelled", "superseded")
# How often --wait polls the API: often enough that the bar feels live, rare enough that a
# dozen waiting operators do not load the API.
POLL_SECONDS = 0.25
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


# --------------------------------------------------------------------------------------------
# HTTP client
# --------------------------------------------------------------------------------------------

class CliError(Exception):
    """A failure to report to the operator as-is (one message, maybe detail lines), exit 1."""

    def __init__(self, message: str, details: list[str] | None = None, *,
                 transient: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        # Transient: the API could not be reached or answered 5xx; a follow (--wait, events)
        # may retry, a one-shot command reports it.
        self.transient = transient


class ApiError(CliError):
    """The API answered with an error status; carries its `message` and `details`."""

    def __init__(self, status: int, reason: str, body: Any, method: str, path: str) -> None:
        self.status = status
        self.body = body
        message = body.get("message") if isinstance(body, dict) else None
        if not message:
            message = (body if isinstance(body, str) and body.strip() else reason) or "error"
            # A proxy's or server's HTML error page: its first line of text is enough.
            message = str(message).strip().splitlines()[0][:200]
        lines = format_details(body.get("details") if isinstance(body, dict) else None)
        blocking = body.get("deployments") if isinstance(body, dict) else None
        if status == 409 and blocking:
            ids = ", ".join(str(d.get("id")) for d in blocking if isinstance(d, dict))
            lines.append(f"running deployment(s): {ids}; wait for them, or pass --force to "
                         "override")
        if status == 401:
            lines.append("the API needs a token: pass --token or set ACCESSD_API_TOKEN")
        elif status == 403:
            lines.append("the token is not allowed to do this (a read-only token cannot write)")
        super().__init__(f"{method} {path}: {status} {reason}: {str(message).strip()}", lines,
                         transient=status >= 500)


def format_details(details: Any) -> list[str]:
    """Marathon's `details` as readable lines: `[{"path", "errors": [..]}]` → `/cpus: ...`."""
    if not details:
        return []
    if isinstance(details, list):
        lines = []
        for d in details:
            if isinstance(d, dict) and "path" in d:
                errors = d.get("errors") or []
                text = "; ".join(str(e) for e in errors) if isinstance(errors, list) else errors
                lines.append(f"{d['path']}: {text}")
            else:
                lines.append(d if isinstance(d, str) else json.dumps(d, sort_keys=True))
        return lines
    return [details if isinstance(details, str) else json.dumps(details, sort_keys=True)]


class ApiClient:
    """Requests against one API base URL; every failure becomes a `CliError`."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["Accept"] = "application/json"
        self.session.headers["User-Agent"] = "accessd-cli"
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, *, body: Any = None,
                params: dict[str, Any] | None = None, ok_404: bool = False) -> Any:
        """JSON of the answer (None for an empty body, or for 404 when `ok_404`)."""
        url = self.base_url + path
        try:
            resp = self.session.request(method, url, json=body, params=params,
                                        timeout=self.timeout)
        except requests.ConnectionError as exc:
            raise connection_error(self.base_url, exc) from None
        except requests.Timeout:
            raise CliError(f"the API at {self.base_url} did not answer within "
                           f"{self.timeout:g}s", transient=True) from None
        except requests.RequestException as exc:
            raise CliError(f"request to the API at {self.base_url} failed: {exc}",
                           transient=True) from None
        if ok_404 and resp.status_code == 404:
            return None
        parsed = parse_body(resp)
        if resp.status_code >= 400:
            raise ApiError(resp.status_code, resp.reason or "", parsed, method, path)
        return parsed

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, params=with_extras(kw.pop("params", None)), **kw)

    def stream(self, path: str, params: dict[str, Any] | None = None,
               last_event_id: str | None = None) -> requests.Response:
        """An open streaming GET (the SSE event stream); the caller closes it."""
        url = self.base_url + path
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        try:
            # No read timeout: the stream is idle between events by design.
            resp = self.session.get(url, params=with_extras(params), stream=True, headers=headers,
                                    timeout=(self.timeout, None))
        except requests.ConnectionError as exc:
            raise connection_error(self.base_url, exc) from None
        except requests.RequestException as exc:
            raise CliError(f"request to the API at {self.base_url} failed: {exc}",
                           transient=True) from None
        if resp.status_code >= 400:
            body = parse_body(resp)
            resp.close()
            raise ApiError(resp.status_code, resp.reason or "", body, "GET", path)
        return resp


def with_extras(params: dict[str, Any] | None) -> dict[str, Any]:
    """`params` plus `embed=accessd`: the CLI shows accessd's own fields (status label, task
    health verdict, deployment progress), which answers carry only when asked for."""
    out = dict(params or {})
    embed = out.get("embed")
    values = [] if embed is None else [embed] if isinstance(embed, str) else list(embed)
    out["embed"] = [*values, "accessd"]
    return out


def parse_body(resp: requests.Response) -> Any:
    if not resp.content:
        return None
    try:
        return resp.json()
    except ValueError:
        return resp.text


def connection_error(base_url: str, exc: Exception) -> CliError:
    text = str(exc)
    if "refused" in text.lower():
        why = "connection refused"
    elif "Name or service not known" in text or "resolve" in text.lower():
        why = "unknown host"
    else:
        why = "connection failed"
    return CliError(f"cannot reach the accessd API at {base_url} ({why}); is it running? "
                    "(--api URL or ACCESSD_API)", transient=True)


def app_path(app_id: str) -> str:
    """`/v2/apps/<id>` with the id's slashes kept as path segments (Marathon's URL form)."""
    return "/v2/apps/" + normalize_id(app_id).lstrip("/")


def normalize_id(app_id: str) -> str:
    app_id = app_id.strip()
    return app_id if app_id.startswith("/") else "/" + app_id


# --------------------------------------------------------------------------------------------
# Presentation
# --------------------------------------------------------------------------------------------

def status_label(app: dict[str, Any]) -> str:
    """The API's `status`; without one, what can be told from the app document alone."""
    if app.get("status"):
        return str(app["status"])
    if app.get("deployments"):
        return "Deploying"
    if app.get("instances") == 0:
        return "Suspended"
    return "Running"


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(c) for c in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def number(x: Any) -> str:
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return "" if x is None else str(x)


def apps_table(apps: list[dict[str, Any]]) -> str:
    rows = []
    for app in apps:
        checks = bool(app.get("healthChecks"))
        healthy = str(app.get("tasksHealthy", 0)) if checks else "-"
        if checks and app.get("tasksUnhealthy"):
            healthy += f" ({app['tasksUnhealthy']} unhealthy)"
        rows.append([app.get("id"), f"{app.get('tasksRunning', 0)}/{app.get('instances', 0)}",
                     healthy, status_label(app), number(app.get("cpus")),
                     number(app.get("mem"))])
    return table(["ID", "INSTANCES", "HEALTHY", "STATUS", "CPUS", "MEM"], rows)


def task_health(task: dict[str, Any]) -> str:
    healthy = task.get("healthy")
    if healthy is None:
        results = task.get("healthCheckResults") or []
        if not results:
            return "-"
        healthy = all(r.get("alive") for r in results)
    if healthy:
        return "healthy"
    causes = [r.get("lastFailureCause") for r in task.get("healthCheckResults") or []
              if r.get("lastFailureCause")]
    return "unhealthy" + (f" ({causes[0]})" if causes else "")


def tasks_table(tasks: list[dict[str, Any]]) -> str:
    rows = []
    for t in sorted(tasks, key=lambda t: (t.get("startedAt") or t.get("stagedAt") or "",
                                          t.get("id", ""))):
        rows.append([t.get("id"), t.get("host"), ",".join(str(p) for p in t.get("ports") or []),
                     t.get("state", ""), task_health(t), t.get("startedAt") or "-"])
    return table(["ID", "HOST", "PORTS", "STATE", "HEALTH", "STARTED"], rows)


def deployments_table(deployments: list[dict[str, Any]]) -> str:
    rows = []
    for d in deployments:
        actions = ", ".join(f"{a.get('action')} {a.get('app')}"
                            for a in d.get("currentActions") or [])
        progress = d.get("progress") or {}
        prog = (f"{progress.get('running', 0)} running, {progress.get('healthy', 0)} healthy"
                if progress else "")
        rows.append([d.get("id"), ",".join(d.get("affectedApps") or []),
                     f"{d.get('currentStep', '?')}/{d.get('totalSteps', '?')}", actions,
                     d.get("status", "running"), prog])
    return table(["ID", "APPS", "STEP", "ACTIONS", "STATUS", "PROGRESS"], rows)


def print_json(doc: Any) -> None:
    print(json.dumps(doc, indent=2, sort_keys=True))


# --------------------------------------------------------------------------------------------
# Progress display for --wait
# --------------------------------------------------------------------------------------------

class Progress:
    """A progress bar on stderr: redrawn in place on a TTY, one line per change on a pipe."""

    WIDTH = 24

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.last = ""

    def update(self, fraction: float, text: str) -> None:
        fraction = min(max(fraction, 0.0), 1.0)
        filled = round(fraction * self.WIDTH)
        line = f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {text}"
        if line == self.last:
            return
        self.last = line
        if self.tty:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.last:
            self.stream.write("\n")
            self.stream.flush()


# --------------------------------------------------------------------------------------------
# Waiting for a deployment
# --------------------------------------------------------------------------------------------

class DeploymentWaiter:
    """Follows one deployment of one app until it is done, failed, or the timeout passes.

    Done means both: the deployment id is no longer listed by `GET /v2/deployments`, and the app
    converged — for a start/scale/restart `tasksRunning == instances` and, when the app has health
    checks, `tasksHealthy == instances`; for a delete the app is gone. Requiring convergence too
    matters because a deployment can end (e.g. superseded or failed) without the app ever getting
    there, and the operator asked to wait for the app, not for bookkeeping.

    A failed, cancelled or superseded deployment is recognised from its `status`, either while it
    is still listed or, once it left the list, from `GET /v2/deployments/<id>` (the API keeps
    finished deployments there); a 404 there means it left no record, i.e. it finished normally.
    """

    def __init__(self, client: ApiClient, app_id: str, deployment_id: str, action: str,
                 timeout: float, progress: Progress,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.app_id = normalize_id(app_id)
        self.deployment_id = deployment_id
        self.deleting = action == "delete"
        self.action = action
        self.timeout = timeout
        self.progress = progress
        self.clock = clock
        self._outcome: dict[str, Any] | None = None

    def run(self) -> None:
        """Returns when done; raises CliError on failure or timeout.

        An API that is briefly unreachable or answers 5xx (a restart, a busy store) does not end
        the wait: the deployment goes on without us, so we keep asking until the deadline."""
        deadline = self.clock() + self.timeout
        fraction = 0.0
        while True:
            try:
                done, fraction, text = self._poll()
            except CliError as exc:
                if not exc.transient:
                    raise
                text = f"API unavailable, retrying: {exc.message}"
                done = False
            self.progress.update(fraction, text)
            if done:
                return
            if self.clock() >= deadline:
                raise CliError(f"timed out after {self.timeout:g}s waiting for deployment "
                               f"{self.deployment_id} of {self.app_id} ({text})")
            time.sleep(POLL_SECONDS)

    def _poll(self) -> tuple[bool, float, str]:
        deployment = self._listed_deployment()
        if deployment is not None:
            self._check_failed(deployment)
        else:
            outcome = self._finished_outcome()
            if outcome is not None:
                self._check_failed(outcome)
        app = self.client.get(app_path(self.app_id), ok_404=True)
        app = app.get("app", app) if isinstance(app, dict) else None
        converged, fraction, text = self._describe(app, deployment)
        return deployment is None and converged, fraction, text

    def _listed_deployment(self) -> dict[str, Any] | None:
        listed = self.client.get("/v2/deployments") or []
        for d in listed:
            if d.get("id") == self.deployment_id:
                return d
        return None

    def _finished_outcome(self) -> dict[str, Any] | None:
        # Asked once: a finished deployment's record does not change any more.
        if self._outcome is None:
            try:
                found = self.client.get(f"/v2/deployments/{self.deployment_id}", ok_404=True)
            except ApiError as exc:
                if exc.status not in (405, 501):
                    raise
                found = None
            self._outcome = found if isinstance(found, dict) else {}
        return self._outcome or None

    def _check_failed(self, deployment: dict[str, Any]) -> None:
        status = deployment.get("status")
        if status in FAILED_STATES:
            why = deployment.get("message") or ""
            raise CliError(f"deployment {self.deployment_id} of {self.app_id} {status}"
                           + (f": {why}" if why else ""))

    def _describe(self, app: dict[str, Any] | None,
                  deployment: dict[str, Any] | None) -> tuple[bool, float, str]:
        """(converged, progress fraction, one-line description) of where the app stands."""
        step = ""
        if deployment is not None:
            actions = ", ".join(str(a.get("action")) for a in deployment.get("currentActions")
                                or [])
            step = (f"; step {deployment.get('currentStep', '?')}/"
                    f"{deployment.get('totalSteps', '?')} {actions}").rstrip()
        else:
            step = "; deployment finished"
        if self.deleting:
            if app is None:
                return True, 1.0, f"{self.app_id} deleted{step}"
            left = int(app.get("tasksRunning", 0)) + int(app.get("tasksStaged", 0))
            return False, 0.0 if left else 0.9, f"{self.app_id}: {left} task(s) left{step}"
        if app is None:
            return False, 0.0, f"{self.app_id} not found{step}"
        want = int(app.get("instances", 0))
        running = int(app.get("tasksRunning", 0))
        checks = bool(app.get("healthChecks"))
        healthy = int(app.get("tasksHealthy", 0))
        converged = running == want and (not checks or healthy == want)
        text = f"{self.app_id}: {running}/{want} running"
        if checks:
            text += f", {healthy}/{want} healthy"
        # While a restart or new definition rolls out, the app's counters include the old
        # tasks (a 1-instance restart is "1/1 running" from the start); the deployment's own
        # progress counts the new version's tasks and the old ones left.
        progress = (deployment or {}).get("progress")
        if isinstance(progress, dict) and self.action in ("restart", "deploy") and \
                (progress.get("old") or progress.get("running", 0) < want):
            running = int(progress.get("running", 0))
            healthy = int(progress.get("healthy", 0))
            text += (f" (new version: {running} running"
                     + (f", {healthy} healthy" if checks else "")
                     + f"; {int(progress.get('old', 0))} old)")
            converged = False
        if want == 0:
            fraction = 1.0 if converged else 0.0
        else:
            # Health counts half when there are checks: running then healthy.
            fraction = (min(running, want) + (min(healthy, want) if checks else
                                              min(running, want))) / (2 * want)
            if not converged:
                fraction = min(fraction, 0.96)  # a full bar only once it is done
        return converged, fraction, text + step


def wait_for(client: ApiClient, app_id: str, deployment_id: str | None, action: str,
             opts: argparse.Namespace) -> None:
    if not deployment_id:
        raise CliError(f"the API did not name a deployment for {action} {app_id}; "
                       "nothing to wait for")
    progress = Progress(sys.stderr)
    # Each poll must come back well within the wait's own timeout.
    client.timeout = min(client.timeout, max(2.0, opts.timeout / 3))
    try:
        DeploymentWaiter(client, app_id, deployment_id, action, opts.timeout, progress).run()
    finally:
        progress.close()


def deployment_id_of(answer: Any) -> str | None:
    """The deployment an API write started: `deploymentId`, or POST's `deployments[0].id`."""
    if not isinstance(answer, dict):
        return None
    if answer.get("deploymentId"):
        return str(answer["deploymentId"])
    deps = answer.get("deployments") or []
    if deps and isinstance(deps[0], dict) and deps[0].get("id"):
        return str(deps[0]["id"])
    return None


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
    common = Parser(add_help=False)
    common.add_argument("--api", default=os.environ.get("ACCESSD_API") or DEFAULT_API,
                        help="control API base URL (env ACCESSD_API; default %(default)s)")
    common.add_argument("--token", default=os.environ.get("ACCESSD_API_TOKEN"),
                        help="API token (env ACCESSD_API_TOKEN)")
    common.add_argument("--json", action="store_true", help="print the API's raw JSON")
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
    client = ApiClient(opts.api, opts.token)
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
