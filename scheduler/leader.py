"""Leader election among `accessd scheduler` processes sharing a ZooKeeper state store.

Each candidate holds an ephemeral sequential node `<root>/leader/n_<seq>` whose data is its
advertised name; the lowest node is the leader (Marathon's leader latch). A candidate watches
only its predecessor, so a leader's loss wakes one candidate, not all. The leader's node is also
its *fence*: every write of its store checks that the node exists inside the same `multi`
(`ZooKeeperStateStore.fence`), so once the node is gone (session expired after a kill or pause,
or deleted by `DELETE /v2/leader`) nothing it writes lands.

Why not kazoo's Lock/Election: the fence needs the node's path, and a candidate whose session
expired must notice and join again; both are a few lines here and opaque there.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from scheduler.state import StateError
from scheduler.zk import zk_errors

log = logging.getLogger("accessd.leader")

PREFIX = "n_"


def _seq(name: str) -> int:
    return int(name.rsplit("_", 1)[1])


def election_path(root: str) -> str:
    return f"{root}/leader"


def leader_node(client: Any, root: str) -> tuple[str, str] | None:
    """(node path, advertised name) of the current leader, or None when there is none."""
    from kazoo.exceptions import NoNodeError

    path = election_path(root)
    with zk_errors("reading the leader"):
        try:
            children = sorted((c for c in client.get_children(path) if c.startswith(PREFIX)),
                              key=_seq)
        except NoNodeError:
            return None
        for name in children:
            try:
                data, _ = client.get(f"{path}/{name}")
            except NoNodeError:
                continue  # gone meanwhile: the next one leads
            return f"{path}/{name}", data.decode()
    return None


def depose(client: Any, root: str) -> str | None:
    """Make the current leader abdicate (delete its node: its fence falls at once, it steps
    down and campaigns again); returns its name, None if there was no leader."""
    from kazoo.exceptions import NoNodeError

    current = leader_node(client, root)
    if current is None:
        return None
    with zk_errors("deposing the leader"):
        try:
            client.delete(current[0])
        except NoNodeError:
            pass
    return current[1]


class Candidate:
    """One scheduler's candidacy. `campaign` blocks until it leads; `holds` says whether it
    still does; `resign` gives leadership (and the candidacy) up."""

    def __init__(self, client: Any, root: str, name: str) -> None:
        from kazoo.protocol.states import KazooState

        self.client = client
        self.path = election_path(root)
        self.name = name
        self.node: str | None = None
        self.session_lost = threading.Event()
        self.timeout = float(getattr(client, "_session_timeout", 10000)) / 1000.0

        def listener(state: Any) -> None:
            if state == KazooState.LOST:
                self.session_lost.set()

        client.add_listener(listener)

    def campaign(self, stop: threading.Event) -> bool:
        """Block until this candidate leads (True) or `stop` is set (False)."""
        from kazoo.exceptions import NoNodeError

        while not stop.is_set():
            try:
                with zk_errors("campaigning"):
                    self.client.ensure_path(self.path)
                    if self.node is None or self.session_lost.is_set():
                        self.session_lost.clear()
                        self.node = self.client.create(f"{self.path}/{PREFIX}",
                                                       self.name.encode(), ephemeral=True,
                                                       sequence=True)
                        log.info("candidate %s: %s", self.name, self.node)
                    mine = self.node.rsplit("/", 1)[1]
                    children = sorted((c for c in self.client.get_children(self.path)
                                       if c.startswith(PREFIX)), key=_seq)
                    if mine not in children:  # our session ended: our node went with it
                        self.node = None
                        continue
                    index = children.index(mine)
                    if index == 0:
                        return True
                    woke = threading.Event()
                    try:
                        predecessor = self.client.exists(f"{self.path}/{children[index - 1]}",
                                                         watch=lambda event, w=woke: w.set())
                    except NoNodeError:
                        predecessor = None
                    if predecessor is not None:
                        woke.wait(1.0)  # and look again now and then (stop, session loss)
            except StateError as exc:
                log.warning("campaign interrupted: %s", exc)
                stop.wait(0.5)
        return False

    def fence(self) -> str | None:
        return self.node

    def holds(self) -> bool:
        """Still the leader: the session lives and our node exists (False when unsure only
        because ZooKeeper cannot be asked: then the fence keeps writes out anyway)."""
        from kazoo.protocol.states import KazooState

        if self.node is None or self.session_lost.is_set():
            return False
        if self.client.state != KazooState.CONNECTED:
            return True  # suspended: the session may come back; fenced writes fail meanwhile
        try:
            with zk_errors("checking leadership"):
                return self.client.exists_async(self.node).get(timeout=self.timeout) is not None
        except StateError:
            return True

    def verify(self) -> bool:
        """Leader, asked of ZooKeeper now (a round trip): False when the session ended, the
        node is gone, or ZooKeeper does not answer within the session timeout (a process
        resumed after a pause cannot tell yet, so it must not act as leader)."""
        if self.node is None or self.session_lost.is_set():
            return False
        try:
            with zk_errors("verifying leadership"):
                stat = self.client.exists_async(self.node).get(timeout=self.timeout)
        except StateError:
            return False
        return stat is not None and not self.session_lost.is_set()

    def resign(self) -> None:
        from kazoo.exceptions import NoNodeError

        node, self.node = self.node, None
        if node is None:
            return
        try:
            with zk_errors("resigning"):
                self.client.delete_async(node).get(timeout=self.timeout)
        except (StateError, NoNodeError):
            pass  # gone already, or ZooKeeper unreachable: the session's end removes it
