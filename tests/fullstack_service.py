"""A tiny service for tests/test_fullstack.py, run as a task (accessd's executor or `//cmd`).

Serves HTTP on $HOST:$PORT0 (127.0.0.1 when unset) until killed:
- `GET /health` answers 500 while the file `$CTL/$MESOS_TASK_ID.sick` exists, else 200;
- any other path answers 200 with JSON `{"taskId", "appId", "port", "pid"}` (who answered).
Standard library only; no output besides one line on start.
"""

from __future__ import annotations

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> int:
    task_id = os.environ["MESOS_TASK_ID"]
    port = int(os.environ["PORT0"])
    sick = os.path.join(os.environ.get("CTL", "."), f"{task_id}.sick")
    me = json.dumps({"taskId": task_id, "appId": os.environ.get("MARATHON_APP_ID"),
                     "port": port, "pid": os.getpid()}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            if self.path == "/health":
                code, body = (500, b"sick\n") if os.path.exists(sick) else (200, b"ok\n")
            else:
                code, body = 200, me
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    host = os.environ.get("HOST") or "127.0.0.1"  # the agent's address, where clients look
    server = ThreadingHTTPServer((host, port), Handler)
    print(f"fullstack service {task_id} on {host}:{port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
