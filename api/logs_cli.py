"""`accessd logs APP|TASK [--stderr] [--follow] [--tail N]`: a task's output, through the control
API's logs extension (`GET /v2/apps/{app}/tasks/{task}/logs`, see `api.logs`).

- An app id names its newest task (greatest `stagedAt`); a task id (`<prefix>.<uuid>`) names
  itself, live or ended (its app id is the task id's prefix, which `scheduler.spec` makes
  reversible).
- `--tail N` starts with the last N lines (reading backwards in 64 KiB pieces); without it, the
  whole file.
- `--follow` polls every 0.2 s and prints what was appended. A log rotation (the file renamed to
  `stdout.1` and a new `stdout` begun, as Mesos's logrotate container logger does, or the file
  truncated) is recognised by the file shrinking below the position read so far or its first
  bytes changing; the rest of `stdout.1` from that position is printed first, then the new file
  from its start: nothing twice, nothing skipped that the rotated file still holds. The follow
  ends when the task has ended and everything was printed, or on Ctrl-C; while the API or the
  agent is unreachable (5xx, refused connection) it says so once on stderr and keeps retrying
  from the same position.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import Any
from urllib.parse import quote

from api.client import DEFAULT_API, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, ApiClient, CliError

POLL_SECONDS = 0.2
LIVENESS_SECONDS = 1.0  # how often a follow asks whether the task still runs
CHUNK = 64 * 1024
HEAD = 64  # bytes compared to recognise a rotated file that already grew past our position


def app_of_task(task_id: str) -> str:
    return "/" + task_id.rsplit(".", 1)[0].replace("_", "/")


def resolve(client: ApiClient, target: str) -> tuple[str, str]:
    """(app id, task id) for an app id (its newest task) or a task id."""
    app = client.get("/v2/apps/" + quote(target.strip("/")), params={"embed": "app.tasks"},
                     ok_404=True)
    if app is not None:
        tasks = app["app"].get("tasks") or []
        if not tasks:
            raise CliError(f"app {app['app']['id']} has no tasks; name an ended task by its id "
                           "(accessd tasks lists the live ones)")
        newest = max(tasks, key=lambda t: (t.get("stagedAt") or "", t["id"]))
        return app["app"]["id"], newest["id"]
    if "." not in target or target.startswith("/"):
        raise CliError(f"no app {target!r} (and it is not a task id)")
    return app_of_task(target), target


class LogReader:
    def __init__(self, client: ApiClient, app_id: str, task_id: str, stream: str) -> None:
        self.client = client
        self.path = f"/v2/apps/{quote(app_id.strip('/'))}/tasks/{quote(task_id)}/logs"
        self.app_id = app_id
        self.task_id = task_id
        self.stream = stream

    def read(self, offset: int | None, length: int = CHUNK, stream: str | None = None,
             ) -> dict[str, Any]:
        params: dict[str, Any] = {"stream": stream or self.stream, "length": length}
        if offset is not None:
            params["offset"] = offset
        return self.client.get(self.path, params=params)

    def tail_start(self, lines: int) -> int:
        """The byte offset where the last `lines` lines begin."""
        size = self.read(-1)["size"]
        end, newlines = size, 0
        while end > 0:
            start = max(0, end - CHUNK)
            data = self.read(start, end - start)["data"].encode("utf-8")
            # A final line without its newline counts as a line too.
            if end == size and data and not data.endswith(b"\n"):
                newlines += 1
            for i in range(len(data) - 1, -1, -1):
                if data[i:i + 1] == b"\n":
                    newlines += 1
                    if newlines > lines:
                        return start + i + 1
            end = start
        return 0

    def task_alive(self) -> bool:
        answer = self.client.get(f"/v2/apps/{quote(self.app_id.strip('/'))}/tasks", ok_404=True)
        return answer is not None and any(t["id"] == self.task_id for t in answer["tasks"])


def emit(data: str) -> None:
    if data:
        sys.stdout.write(data)
        sys.stdout.flush()


def drain(reader: LogReader, offset: int, stream: str | None = None) -> int:
    """Print from `offset` to the end of the file; return the new offset."""
    while True:
        answer = reader.read(offset, stream=stream)
        emit(answer["data"])
        offset = answer["nextOffset"]
        if offset >= answer["size"] or not answer["data"]:
            return offset


def same_start(a: str, b: str) -> bool:
    return a.startswith(b) or b.startswith(a)


def follow(reader: LogReader, offset: int) -> int:
    head = reader.read(0, HEAD)["data"]
    next_liveness = time.monotonic() + LIVENESS_SECONDS
    outage = False
    while True:
        try:
            answer = reader.read(offset)
            current = reader.read(0, HEAD)["data"] if offset > 0 else answer["data"][:HEAD]
        except CliError as exc:
            if not exc.transient:
                raise
            # The API or the agent is briefly away (restart, failover): keep the position.
            if not outage:
                print(f"accessd logs: {exc.message}; retrying", file=sys.stderr)
            outage = True
            time.sleep(1.0)
            continue
        if outage:
            print("accessd logs: reconnected", file=sys.stderr)
            outage = False
        if answer["size"] < offset or not same_start(current, head):
            # Rotated: finish the renamed file from where we were, then the new one from 0.
            try:
                drain(reader, offset, reader.stream + ".1")
            except CliError:
                pass  # truncated in place (copytruncate): nothing kept to finish
            offset, head = 0, ""
            continue
        if len(current) > len(head):
            head = current
        emit(answer["data"])
        offset = answer["nextOffset"]
        if answer["data"] and offset < answer["size"]:
            continue  # more is waiting: no pause
        now = time.monotonic()
        if now >= next_liveness:
            next_liveness = now + LIVENESS_SECONDS
            try:
                alive = reader.task_alive()
            except CliError as exc:
                if not exc.transient:
                    raise
                alive = True  # unknown while the API is away: the read above will say
            if not alive:
                drain(reader, offset)
                return EXIT_OK
        time.sleep(POLL_SECONDS)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="accessd logs",
                                description="print (and follow) a task's stdout or stderr")
    p.add_argument("target", metavar="APP|TASK", help="an app id (its newest task) or a task id")
    p.add_argument("--stderr", action="store_true", help="stderr instead of stdout")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing what is appended")
    p.add_argument("--tail", "-n", type=int, metavar="N", help="start with the last N lines")
    p.add_argument("--api", default=os.environ.get("ACCESSD_API") or DEFAULT_API,
                   help="control API URL (env ACCESSD_API, default %(default)s)")
    p.add_argument("--token", default=os.environ.get("ACCESSD_API_TOKEN"),
                   help="API token (env ACCESSD_API_TOKEN)")
    p.add_argument("--cacert", default=os.environ.get("ACCESSD_CACERT") or None, metavar="FILE",
                   help="certificate an https API must present (env ACCESSD_CACERT)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    try:
        opts = parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:
        return int(exc.code or 0) if exc.code in (0, None) else EXIT_USAGE
    if opts.tail is not None and opts.tail < 0:
        print("accessd logs: --tail must be >= 0", file=sys.stderr)
        return EXIT_USAGE
    client = ApiClient(opts.api, opts.token, cacert=opts.cacert)
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        app_id, task_id = resolve(client, opts.target)
        reader = LogReader(client, app_id, task_id, "stderr" if opts.stderr else "stdout")
        offset = reader.tail_start(opts.tail) if opts.tail is not None else 0
        if not opts.follow:
            drain(reader, offset)
            return EXIT_OK
        return follow(reader, offset)
    except CliError as exc:
        print(f"accessd logs: {exc.message}", file=sys.stderr)
        for line in exc.details:
            print(f"  {line}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:
        sys.stderr.close()
        return EXIT_OK
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
