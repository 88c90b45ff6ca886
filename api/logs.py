"""`GET /v2/apps/{appId}/tasks/{taskId}/logs` — an accessd extension (Marathon has no such
endpoint; its UI links to the Mesos sandbox): a task's stdout or stderr, read from its Mesos
sandbox through the agent's files API (`api.logs_mesos`).

Query: `stream=stdout|stderr` (default stdout; `stdout.1`, `stderr.2`, … name the files a
log rotation left behind), `offset` (bytes; `-1` answers only the size, as Mesos does; absent:
the last `length` bytes, from the first line that starts within them), `length` (default and
at most 65536).

Answer: `{"taskId", "appId", "agentId", "stream", "offset", "size", "data", "nextOffset"}` —
`data` starts at byte `offset`, `nextOffset` is where the next read continues, `size` is the
file's size when it was read (a size below a follower's offset means the file was rotated).
The task may have ended: its logs stay readable for as long as the agent keeps its sandbox.
"""

from __future__ import annotations

import re

import falcon

from api.apps import Ctx, path_app_id
from api.errors import ApiError, bad_request, not_found
from api.logs_mesos import MAX_READ, LogsError, MesosFiles
from scheduler.spec import app_id_to_task_prefix

STREAM_RE = re.compile(r"^(stdout|stderr)(\.[1-9][0-9]{0,2})?$")


def _int_param(req: falcon.Request, name: str, low: int) -> int | None:
    text = req.get_param(name)
    if text is None or text == "":
        return None
    try:
        value = int(text)
    except ValueError:
        raise bad_request(f"{name} must be an integer, got {text!r}", f"/{name}") from None
    if value < low:
        raise bad_request(f"{name} must be >= {low}, got {value}", f"/{name}")
    return value


class AppTaskLogs:
    def __init__(self, ctx: Ctx, files: MesosFiles | None) -> None:
        self.ctx = ctx
        self.files = files

    def on_get(self, req: falcon.Request, resp: falcon.Response, app_id: str,
               task_id: str) -> None:
        """A task's stdout/stderr from its Mesos sandbox (accessd extension)."""
        app_id = path_app_id(app_id)
        stream = req.get_param("stream") or "stdout"
        if not STREAM_RE.match(stream):
            raise bad_request(f"stream must be stdout or stderr (or a rotated stdout.N / "
                              f"stderr.N), got {stream!r}", "/stream")
        offset = _int_param(req, "offset", -1)
        length = _int_param(req, "length", 0)
        length = MAX_READ if length is None else min(length, MAX_READ)

        task = self.ctx.store.get_task(task_id)
        if task is not None and task.get("appId") != app_id:
            raise not_found(f"Task '{task_id}' does not belong to app '{app_id}'")
        if task is None and not task_id.startswith(app_id_to_task_prefix(app_id) + "."):
            raise not_found(f"Task '{task_id}' does not exist")
        if self.files is None:
            raise ApiError(503, "Task logs need the Mesos master's address: start the API "
                                "with --master (ACCESSD_API_MESOS_MASTER)")
        framework_id = self.ctx.store.get_framework_id()
        if not framework_id:
            raise not_found("accessd has not registered with Mesos yet: no task logs")
        try:
            box = self.files.locate(framework_id, task_id,
                                    (task or {}).get("slaveId") or (task or {}).get("agentId"))
            size = self.files.size(box, stream)
            if offset == -1:
                start, data = size, ""
            else:
                start = max(0, size - length) if offset is None else offset
                data = self.files.read(box, stream, start, length)["data"] if length else ""
                if offset is None and start > 0 and "\n" in data:
                    # A tail starts at a line's beginning, not in the middle of one.
                    cut = data.index("\n") + 1
                    start += len(data[:cut].encode("utf-8"))
                    data = data[cut:]
        except LogsError as exc:
            raise ApiError(exc.status, exc.message) from None
        resp.media = {"taskId": task_id, "appId": app_id, "agentId": box.agent_id,
                      "stream": stream, "offset": start, "size": size, "data": data,
                      "nextOffset": start + len(data.encode("utf-8"))}
