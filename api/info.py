"""Server information (`/v2/info`, `/v2/leader`, `/ping`) and the status page's files.

Every API node serving the same store is equivalent (the API holds no state of its own). The
leader is the elected scheduler with a ZooKeeper store (`api.leadership`), else the address this
server was told it is bound to; `elected` says whether that leader is this node
(`api.leadership.own_names`).
"""

from __future__ import annotations

import mimetypes
import re
from importlib import metadata
from pathlib import Path

import falcon

from api import shapes
from api.leadership import Leadership
from scheduler.state import StateStore

STATIC_DIR = Path(__file__).resolve().parent / "static"
_STATIC_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # fullmatch: "$" would allow "\n"


def version() -> str:
    try:
        return metadata.version("accessd")
    except metadata.PackageNotFoundError:
        return "0.0.0"


class Info:
    def __init__(self, store: StateStore, leadership: Leadership, auth_enabled: bool,
                 max_body: int) -> None:
        self.store = store
        self.leadership = leadership
        self.leader = leadership.fixed
        self.auth_enabled = auth_enabled
        self.max_body = max_body

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Name, version, framework id, leader and configuration."""
        host, _, port = self.leader.rpartition(":")
        leader = self.leadership.leader()
        resp.media = {
            "name": "accessd",
            "version": version(),
            "buildref": "unknown",
            "elected": self.leadership.elected(leader),
            "leader": leader,
            "frameworkId": self.store.get_framework_id(),
            "http_config": {"http_port": int(port) if port.isdigit() else None,
                            "https_port": None, "address": host or None},
            "marathon_config": {
                "framework_name": "accessd",
                "mesos_role": None,
                "task_launch_timeout": None,
                "max_request_body_bytes": self.max_body,
            },
            "event_subscriber": {"type": "sse"},
            "authentication": {"enabled": self.auth_enabled,
                               "schemes": ["Bearer", "Basic"] if self.auth_enabled else []},
        }
        if self.leadership.zookeeper:
            url = self.store.url
            resp.media["zookeeper_config"] = {
                "zk": str(url), "zk_session_timeout": int(url.session_timeout * 1000),
                "zk_timeout": int(url.session_timeout * 1000)}
        # Marathon's fields only, unless `?embed=accessd` (api.shapes)
        resp.media = shapes.info(resp.media,
                                 shapes.wants_extras(req.get_param_as_list("embed") or []))


class Ping:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Liveness: `pong` (no store access)."""
        resp.content_type = "text/plain; charset=utf-8"
        resp.text = "pong"


def _send_file(resp: falcon.Response, path: Path) -> None:
    if not path.is_file():
        raise falcon.HTTPNotFound(title="Not found", description=f"no file {path.name!r}")
    ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if ctype.startswith("text/") or ctype in ("application/javascript", "application/json"):
        ctype += "; charset=utf-8"
    resp.content_type = ctype
    resp.data = path.read_bytes()


class Index:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The status page."""
        _send_file(resp, STATIC_DIR / "index.html")


class Static:
    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        """The status page's scripts and styles (one level, no traversal)."""
        if not _STATIC_NAME_RE.fullmatch(name):
            raise falcon.HTTPNotFound(title="Not found", description=f"no file {name!r}")
        _send_file(resp, STATIC_DIR / name)
