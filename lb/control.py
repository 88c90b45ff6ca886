"""The balancer's only view of accessd: the control API over HTTP.

`apps()` reads `/v2/apps?embed=apps.tasks&embed=accessd` (Marathon's shape plus accessd's
task extras, among them `leaving`); `follow_events` tails `/v2/events` (SSE) and calls back on
every event until stopped, reconnecting (with `Last-Event-ID`) when the stream breaks;
`register` renews this balancer's lease and reports the tasks it has drained
(`PUT /v2/balancers/{name}`), `unregister` ends it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import requests

log = logging.getLogger("accessd.lb.control")


class ControlApi:
    def __init__(self, url: str, token: str | None = None, timeout: float = 5.0,
                 cacert: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()
        if cacert:  # an HTTPS API with a private CA: trust it (never skip verification)
            self.http.verify = cacert
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"

    def apps(self) -> list[dict[str, Any]]:
        resp = self.http.get(f"{self.url}/v2/apps",
                             params=[("embed", "apps.tasks"), ("embed", "accessd")],
                             timeout=self.timeout)
        resp.raise_for_status()
        return resp.json().get("apps", [])

    def scale(self, app_id: str, instances: int) -> int:
        """`PUT /v2/apps/{id}` with `instances` (an ordinary scale deployment): the status."""
        resp = self.http.put(f"{self.url}/v2/apps{app_id}", json={"instances": instances},
                             timeout=self.timeout)
        return resp.status_code

    def register(self, name: str, drained: list[str], ttl: float) -> None:
        resp = self.http.put(f"{self.url}/v2/balancers/{name}",
                             json={"drained": drained, "ttlSeconds": ttl}, timeout=self.timeout)
        resp.raise_for_status()

    def unregister(self, name: str) -> None:
        self.http.delete(f"{self.url}/v2/balancers/{name}", timeout=self.timeout)

    def follow_events(self, on_event: Callable[[str, dict], None],
                      stop: threading.Event, on_connect: Callable[[], None]) -> None:
        """Until `stop`: stream events into `on_event(type, payload)`; `on_connect` after each
        (re)connection, when events may have been missed (the caller resyncs)."""
        last_id: str | None = None
        stream = requests.Session()  # its own: this runs in another thread than the syncs
        stream.headers.update(self.http.headers)
        stream.verify = self.http.verify
        while not stop.is_set():
            headers = {"Accept": "text/event-stream"}
            if last_id:
                headers["Last-Event-ID"] = last_id
            try:
                with stream.get(f"{self.url}/v2/events", params={"embed": "accessd"},
                                   headers=headers, stream=True,
                                   timeout=(self.timeout, 30)) as resp:
                    resp.raise_for_status()
                    on_connect()
                    kind, data = "message", []
                    for raw in resp.iter_lines(decode_unicode=True):
                        if stop.is_set():
                            return
                        line = raw or ""
                        if line.startswith("id:"):
                            last_id = line[3:].strip()
                        elif line.startswith("event:"):
                            kind = line[6:].strip()
                        elif line.startswith("data:"):
                            data.append(line[5:].strip())
                        elif not line and data:
                            try:
                                payload = json.loads("\n".join(data))
                            except ValueError:
                                payload = {}
                            on_event(kind, payload)
                            kind, data = "message", []
            except requests.RequestException as exc:
                log.info("event stream: %s; reconnecting", exc)
            stop.wait(0.5)
