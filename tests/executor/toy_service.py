"""A service for the executor's integration tests, run as a task by accessd's executor.

It writes what a test needs to observe to `$CTL/$MESOS_TASK_ID.json` (its environment, cwd,
pid, process group, a grandchild's pid), then serves HTTP on $HOST:$PORT0 (127.0.0.1 when unset) where `/health`
answers 500 while `$CTL/$MESOS_TASK_ID.sick` exists, else 200.
Options: `--exit N` (write the file, exit N), `--ignore-term` (SIGTERM ignored, also by the
grandchild), `--grandchild` (start a `sleep` in the background first).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--exit", type=int, default=None)
    parser.add_argument("--ignore-term", action="store_true")
    parser.add_argument("--grandchild", action="store_true")
    args = parser.parse_args()
    ctl, task_id = os.environ["CTL"], os.environ["MESOS_TASK_ID"]
    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    grandchild = None
    if args.grandchild:
        grandchild = subprocess.Popen(
            [sys.executable, "-c", "import signal, time; "
             + ("signal.signal(signal.SIGTERM, signal.SIG_IGN); " if args.ignore_term else "")
             + "time.sleep(600)"]).pid
    info = {"env": dict(os.environ), "cwd": os.getcwd(), "pid": os.getpid(),
            "pgid": os.getpgid(0), "grandchild": grandchild}
    tmp = os.path.join(ctl, f".{task_id}.json")
    with open(tmp, "w") as f:
        json.dump(info, f)
    os.replace(tmp, os.path.join(ctl, f"{task_id}.json"))
    print(f"toy service {task_id} up", flush=True)
    if args.exit is not None:
        return args.exit
    sick = os.path.join(ctl, f"{task_id}.sick")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            code = 500 if self.path == "/health" and os.path.exists(sick) else 200
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    ThreadingHTTPServer((os.environ.get("HOST") or "127.0.0.1", int(os.environ["PORT0"])), Handler).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
