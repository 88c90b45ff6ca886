"""A service for the balancer's tests and bench (`tests/lb/harness.py`), run as a task.

HTTP/1.1 (keep-alive) on the task's address (`$HOST` when it is an IP, else 127.0.0.1) and
`$PORT0`, until killed:
- `GET /health`: 500 while the file `$CTL/$MESOS_TASK_ID.sick` exists, else 200;
- `GET /work?ms=N`: sleeps N ms (at most 1000), then answers like any other path:
  200 with `{"taskId": …}` (who answered). Standard library only.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


def bind_address() -> str:
    host = os.environ.get("HOST", "")
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        return "127.0.0.1"


def main() -> int:
    task_id = os.environ["MESOS_TASK_ID"]
    port = int(os.environ["PORT0"])
    sick = os.path.join(os.environ.get("CTL", "."), f"{task_id}.sick")
    me = json.dumps({"taskId": task_id}).encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):  # noqa: N802 (http.server's name)
            url = urlsplit(self.path)
            if url.path == "/health":
                code, body = (500, b"sick\n") if os.path.exists(sick) else (200, b"ok\n")
            else:
                if url.path == "/work":
                    ms = min(1000, int((parse_qs(url.query).get("ms") or ["0"])[0]))
                    time.sleep(ms / 1000)
                code, body = 200, me
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 128  # the default 5 drops SYNs under a burst
    server = ThreadingHTTPServer((bind_address(), port), Handler)
    print(f"echo service {task_id} on {bind_address()}:{port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
