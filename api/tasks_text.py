"""`GET /v2/tasks` and `/v2/apps/{id}/tasks` as text, for scripts (`Accept: text/plain`).

Marathon's format (its EndpointsHelper): per app and per service port one line, tab-separated:
the app id without its leading `/` and with `_` for `/` (Marathon's safe path), the service
port, then `host:port` of each running task (that task's host port at the same index, 0 when it
has none), each followed by a tab. An app without ports gets one line with a space for the
port and its running tasks' hosts, each followed by a space. Every line ends with `\\n`.

    jpm_timeseries<TAB>10000<TAB>127.0.1.1:31004<TAB>127.0.1.2:30021<TAB>
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import falcon

from scheduler.service_ports import service_ports

Doc = dict[str, Any]

RUNNING = "TASK_RUNNING"


def wants_text(req: falcon.Request) -> bool:
    """True when the client prefers text/plain to JSON (`Accept: text/plain`); JSON otherwise,
    including for `*/*` and no Accept header."""
    accept = req.get_header("Accept") or ""
    return "text/plain" in accept and req.client_prefers(
        [falcon.MEDIA_JSON, falcon.MEDIA_TEXT]) == falcon.MEDIA_TEXT


def safe_path(app_id: str) -> str:
    """`/jpm/timeseries` -> `jpm_timeseries`."""
    return "_".join(p for p in app_id.split("/") if p)


def endpoints_text(apps: Iterable[Mapping[str, Any]],
                   tasks_by_app: Mapping[str, list[Mapping[str, Any]]]) -> str:
    """The text answer for `apps` (in the given order) and their tasks."""
    lines = []
    for app in apps:
        name = safe_path(str(app.get("id", "")))
        running = [t for t in tasks_by_app.get(str(app.get("id")), []) if t.get("state") == RUNNING]
        ports = service_ports(app)
        if not ports:
            lines.append(f"{name}\t \t" + "".join(f"{t.get('host')} " for t in running) + "\n")
            continue
        for i, port in enumerate(ports):
            cells = []
            for t in running:
                host_ports = t.get("ports") or []
                cells.append(f"{t.get('host')}:{host_ports[i] if i < len(host_ports) else 0}\t")
            lines.append(f"{name}\t{port}\t" + "".join(cells) + "\n")
    return "".join(lines)


def respond(resp: falcon.Response, apps: list[Doc], tasks: list[Doc]) -> None:
    by_app: dict[str, list[Doc]] = {}
    for task in tasks:
        by_app.setdefault(str(task.get("appId")), []).append(task)
    resp.content_type = falcon.MEDIA_TEXT
    resp.text = endpoints_text(apps, by_app)
