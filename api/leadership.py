"""Who leads, on any API node: `GET/DELETE /v2/leader`, the `X-Marathon-Leader` header, and the
staleness warning of reads answered from the ZooKeeper cache without quorum.

With a SQLite store there is one node and no election: the leader is the address the API was
told it binds (as before). `elected` in `/v2/info` compares the leader record with this node's
own names (`own_names`: `accessd api --advertise`, the bind address, `<hostname>:<port>`). With a ZooKeeper store the leader is the scheduler whose election node
is lowest (`scheduler.leader`), known here through a watch on the election path; `DELETE
/v2/leader` deletes that node, so the leader steps down and a standby takes over.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import falcon

from api.errors import ApiError

log = logging.getLogger("accessd.api")

STALE_WARNING = ('110 - "Response is Stale: ZooKeeper has no quorum; answered from this '
                 'node\'s cache"')


def own_names(bind: str, advertise: str | None = None) -> frozenset[str]:
    """The names under which a scheduler of this node leads (its `--advertise`): this API's
    own `advertise` name when given, its bind address, and, bound to every address (0.0.0.0,
    ::), `<hostname>:<port>` (short and fully qualified), as Marathon names an instance by its
    hostname and HTTP port."""
    import socket

    host, _, port = bind.rpartition(":")
    names = {bind}
    if advertise:
        names.add(advertise)
    if port.isdigit() and host.strip("[]") in ("", "0.0.0.0", "::"):
        for name in {socket.gethostname(), socket.getfqdn()}:
            if name:
                names.add(f"{name}:{port}")
    return frozenset(names)


class Leadership:
    """The current leader's name (watch-fed with ZooKeeper, fixed without), and whether it is
    this node (`elected`)."""

    def __init__(self, store: Any, fixed_leader: str, zookeeper: bool,
                 advertise: str | None = None) -> None:
        self.store = store
        self.fixed = fixed_leader
        self.zookeeper = zookeeper
        self.names = own_names(fixed_leader, advertise)
        self._leader: str | None = None
        self._watching = False
        self._lock = threading.Lock()

    def _watch(self) -> None:
        """Start the watch on first use (after gunicorn's fork: the store opens lazily)."""
        with self._lock:
            if self._watching:
                return
            self._watching = True
        from kazoo.recipe.watchers import ChildrenWatch

        from scheduler.leader import election_path

        path = election_path(self.store.root)
        self.store.client.ensure_path(path)
        ChildrenWatch(self.store.client, path, lambda children: self._refresh())

    def _refresh(self) -> None:
        from scheduler.leader import leader_node
        from scheduler.state import StateError

        try:
            current = leader_node(self.store.client, self.store.root)
        except StateError as exc:
            log.warning("could not read the leader: %s", exc)
            return
        self._leader = current[1] if current else None

    def leader(self) -> str | None:
        if not self.zookeeper:
            return self.fixed
        self._watch()
        return self._leader

    def elected(self, leader: str | None) -> bool:
        """Whether `leader` (a leader record: the scheduler's `--advertise`) is this node."""
        return leader is not None and leader in self.names

    def abdicate(self) -> str | None:
        from scheduler.leader import depose

        if not self.zookeeper:
            return None
        self._watch()
        name = depose(self.store.client, self.store.root)
        if name is not None:
            log.info("leader %s asked to abdicate", name)
        return name

    def stale(self) -> bool:
        return bool(self.zookeeper and getattr(self.store, "stale", False))


class LeaderResource:
    def __init__(self, leadership: Leadership) -> None:
        self.leadership = leadership

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The current leader's address (404 when none is elected)."""
        leader = self.leadership.leader()
        if leader is None:
            raise ApiError(404, "There is no leader")
        resp.media = {"leader": leader}

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Make the leader abdicate; another candidate is elected."""
        if not self.leadership.zookeeper:
            raise ApiError(409, "There is no leader election without a ZooKeeper state store "
                                "(--state zk://…): this single scheduler cannot abdicate")
        if self.leadership.abdicate() is None:
            raise ApiError(404, "There is no leader")
        resp.media = {"message": "Leadership abdicted"}


class LeadershipMiddleware:
    """`X-Marathon-Leader: http://<leader>` on every answer; a `Warning` on answers that came
    from a cache ZooKeeper could not confirm."""

    def __init__(self, leadership: Leadership) -> None:
        self.leadership = leadership

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self.leadership.zookeeper and req.path != "/ping":
            self.leadership.store.begin_request()  # one ZooKeeper check for the whole request

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        if self.leadership.zookeeper and req.path != "/ping":
            self.leadership.store.end_request()
        try:
            leader = self.leadership.leader()
        except Exception:  # noqa: BLE001 - a header must never fail the answer
            leader = None
        if leader:
            resp.set_header("X-Marathon-Leader", f"http://{leader}")
        if self.leadership.stale():
            resp.set_header("Warning", STALE_WARNING)
