"""The control API's Falcon app: `create_app(config, store)` wires everything; `get_app()` reads
the configuration from the environment (what gunicorn calls: `'api.app:get_app()'`).

`get_app()` opens nothing: the store is a `LazyStore` that opens the SQLite file on first use, in
the gunicorn worker after the fork (SQLite connections must not cross a fork).
"""

from __future__ import annotations

import gc
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import falcon
import orjson

from api import errors
from api.apps import (
    AppResource,
    AppRestart,
    AppsCollection,
    AppsInGroup,
    AppVersion,
    AppVersions,
    Ctx,
)
from api.auth import AuthMiddleware
from api.balancers import Balancer, Balancers
from api.body import DEFAULT_MAX_BODY
from api.cache import ChangeToken, SQLiteChangeToken, ViewCache
from api.deployments import Deployment, Deployments
from api.events import Events
from api.groups import Groups
from api.info import Index, Info, Ping, Static, version
from api.jobs import routes as job_routes
from api.leadership import LeaderResource, Leadership, LeadershipMiddleware
from api.logs import AppTaskLogs
from api.logs_mesos import MesosFiles
from api.metrics import Metrics, MetricsMiddleware, MetricsResource
from api.openapi import OpenApi
from api.permissions import Permissions
from api.queue import Queue, QueueDelay
from api.routing import OrderedRouter
from api.tasks import AppTask, AppTasks, Tasks, TasksDelete
from scheduler.service_ports import DEFAULT_RANGE, PortRange
from scheduler.state import StateStore
from scheduler.zk import is_zk_url

log = logging.getLogger("accessd.api")


@dataclass(frozen=True)
class ApiConfig:
    state_path: str
    token: str | None = None
    read_token: str | None = None
    max_body: int = DEFAULT_MAX_BODY
    leader: str = "127.0.0.1:8080"
    sse_keepalive: float = 15.0
    sse_poll: float = 0.2
    view_cache_seconds: float = 1.0
    max_streams: int = 8
    mesos_master: str | None = None  # HOST:PORT of the Mesos master, for task logs
    port_range: PortRange = DEFAULT_RANGE  # where port-0 service ports are assigned from
    advertise: str | None = None  # the name this node's scheduler leads under (/v2/info elected)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ApiConfig:
        """`ACCESSD_API_STATE` (required), `ACCESSD_API_TOKEN`, `ACCESSD_API_READ_TOKEN`,
        `ACCESSD_API_MAX_BODY`, `ACCESSD_API_BIND`, `ACCESSD_API_SSE_KEEPALIVE`,
        `ACCESSD_API_SSE_POLL`, `ACCESSD_API_MESOS_MASTER` (task logs), `ACCESSD_API_ADVERTISE`,
        `ACCESSD_API_VIEW_CACHE_SECONDS` (0 disables the cache of
        rendered `GET /v2/apps` answers), `ACCESSD_API_MAX_STREAMS` (event streams per
        worker), `ACCESSD_API_LOCAL_PORT_MIN`/`_MAX` (service ports, default 10000-20000, max
        exclusive). A missing or malformed value is a ValueError naming it."""
        env = os.environ if env is None else env
        state = env.get("ACCESSD_API_STATE", "").strip()
        if not state:
            raise ValueError("ACCESSD_API_STATE is not set (the state store's SQLite path)")
        try:
            max_body = int(env.get("ACCESSD_API_MAX_BODY", str(DEFAULT_MAX_BODY)))
            keepalive = float(env.get("ACCESSD_API_SSE_KEEPALIVE", "15"))
            poll = float(env.get("ACCESSD_API_SSE_POLL", "0.2"))
            cache_seconds = float(env.get("ACCESSD_API_VIEW_CACHE_SECONDS", "1"))
            max_streams = int(env.get("ACCESSD_API_MAX_STREAMS", "8"))
        except ValueError as exc:
            raise ValueError(f"bad ACCESSD_API_MAX_BODY / _SSE_KEEPALIVE / _SSE_POLL: {exc}"
                             ) from None
        try:
            port_range = PortRange(int(env.get("ACCESSD_API_LOCAL_PORT_MIN", DEFAULT_RANGE.low)),
                                   int(env.get("ACCESSD_API_LOCAL_PORT_MAX", DEFAULT_RANGE.high)))
        except ValueError as exc:
            raise ValueError(f"bad ACCESSD_API_LOCAL_PORT_MIN / _MAX: {exc}") from None
        if max_body < 1 or keepalive <= 0 or poll <= 0 or cache_seconds < 0 or max_streams < 1:
            raise ValueError("ACCESSD_API_MAX_BODY, _SSE_KEEPALIVE, _SSE_POLL and _MAX_STREAMS "
                             "must be > 0, _VIEW_CACHE_SECONDS >= 0")
        return cls(state_path=state, token=env.get("ACCESSD_API_TOKEN") or None,
                   read_token=env.get("ACCESSD_API_READ_TOKEN") or None, max_body=max_body,
                   leader=env.get("ACCESSD_API_BIND", "127.0.0.1:8080"),
                   sse_keepalive=keepalive, sse_poll=poll, view_cache_seconds=cache_seconds,
                   max_streams=max_streams,
                   mesos_master=env.get("ACCESSD_API_MESOS_MASTER") or None,
                   port_range=port_range,
                   advertise=env.get("ACCESSD_API_ADVERTISE") or None)


class LazyStore:
    """A `StateStore` stand-in that opens the real store on first use (after the fork) and
    delegates every call to it."""

    def __init__(self, opener: Callable[[], StateStore]) -> None:
        self._opener = opener
        self._store: StateStore | None = None
        self._lock = threading.Lock()

    def _get(self) -> StateStore:
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = self._opener()
        return self._store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)


GC_GEN0_THRESHOLD = 100_000  # see get_app


def create_app(config: ApiConfig, store: StateStore,
               change_token: ChangeToken | None = None) -> falcon.App:
    """The API over `store`. `change_token` (see `api.cache`), when given, enables the cache of
    rendered `GET /v2/apps` answers."""
    metrics = Metrics()
    auth = AuthMiddleware(config.token, config.read_token)
    router = OrderedRouter()
    # Auth before metrics' timing? No: metrics first, so refused requests are counted too.
    leadership = Leadership(store, config.leader, is_zk_url(config.state_path),
                            config.advertise)
    app = falcon.App(router=router, middleware=[MetricsMiddleware(metrics), auth,
                                                LeadershipMiddleware(leadership)])
    app.req_options.strip_url_path_trailing_slash = True
    app.req_options.keep_blank_qs_values = True
    # Answers with thousands of tasks spend a third of their time encoding; orjson is ~10x faster
    # than json (bodies are read by api.body, so only responses go through this handler).
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = falcon.media.JSONHandler(
        dumps=orjson.dumps, loads=orjson.loads)
    errors.install(app)
    ctx = Ctx(store=store, max_body=config.max_body,
              cache=ViewCache(change_token, config.view_cache_seconds),
              port_range=config.port_range)
    # Order matters (see api.routing): sub-resources of an app before the app itself.
    routes: list[tuple[str, object]] = [
        ("/v2/apps", AppsCollection(ctx)),
        ("/v2/apps/{appId*}/restart", AppRestart(ctx)),
        ("/v2/apps/{appId*}/tasks/{taskId}/logs",
         AppTaskLogs(ctx, MesosFiles(config.mesos_master) if config.mesos_master else None)),
        ("/v2/apps/{appId*}/tasks/{taskId}", AppTask(ctx)),
        ("/v2/apps/{appId*}/tasks", AppTasks(ctx)),
        ("/v2/apps/{appId*}/versions/{version}", AppVersion(ctx)),
        ("/v2/apps/{appId*}/versions", AppVersions(ctx)),
        ("/v2/apps/{appId*}/*", AppsInGroup(ctx)),
        ("/v2/apps/{appId*}", AppResource(ctx)),
        ("/v2/groups", Groups(ctx)),
        ("/v2/groups/{group*}", Groups(ctx)),
        ("/v2/tasks", Tasks(ctx)),
        ("/v2/tasks/delete", TasksDelete(ctx)),
        ("/v2/deployments", Deployments(ctx)),
        ("/v2/deployments/{deploymentId}", Deployment(ctx)),
        ("/v2/queue", Queue(ctx)),
        ("/v2/queue/{appId*}/delay", QueueDelay(ctx)),
        ("/v2/events", Events(store, config.sse_keepalive, config.sse_poll,
                              config.max_streams)),
        ("/v2/balancers", Balancers(ctx)),
        ("/v2/balancers/{name}", Balancer(ctx)),
        ("/v2/info", Info(store, leadership, auth.enabled, config.max_body)),
        ("/v2/leader", LeaderResource(leadership)),
        ("/v2/permissions", Permissions(auth)),
        ("/v2/openapi.json", OpenApi(router, version())),
        ("/ping", Ping()),
        ("/metrics", MetricsResource(metrics, store)),
        ("/", Index()),
        ("/static/{name}", Static()),
    ]
    routes += job_routes(ctx)  # Chronos's /v1/scheduler API (api.jobs)
    for template, resource in routes:
        app.add_route(template, resource)
    return app


def get_app() -> falcon.App:
    """The app for gunicorn, configured from the environment; the store opens lazily."""
    from scheduler.stores import open_state

    logging.basicConfig(level=os.environ.get("ACCESSD_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    config = ApiConfig.from_env()
    # Large answers build tens of thousands of short-lived, acyclic dicts and lists; at the
    # default gen-0 threshold (700) the cycle collector runs hundreds of times per answer and
    # rescans what survives (measured: decoding 10,000 tasks 160 ms with it, 40 ms without).
    gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])
    store: Any = LazyStore(lambda: open_state(config.state_path))
    if is_zk_url(config.state_path):  # the ZooKeeper cache's own token (None when stale)
        return create_app(config, store, lambda: store.change_token())
    return create_app(config, store, SQLiteChangeToken(lambda: store.path))
