"""Announce the master in ZooKeeper the way a Mesos master does, so `zk://…/mesos` detection works.

A Mesos master started with `--zk=zk://HOSTS/PATH` contends by creating an ephemeral sequential
znode `PATH/json.info_<seq>` whose data is its MasterInfo as JSON; schedulers (pymesos's
detector among them) watch PATH's children and follow the lowest sequence number. A failover is
that znode going away and another appearing. Only this process is a contender here, so there is
no election: the master creates its znode at start, replaces it on `/_localmesos/master/restart`
and removes it on shutdown (the ephemeral node would also go with the session).

kazoo (a pymesos dependency) is imported only when `--zk` is given; localmesos otherwise needs
nothing beyond the standard library.
"""

from __future__ import annotations

import json
import logging
from typing import Any

log = logging.getLogger("localmesos.zk")

ZNODE_PREFIX = "json.info_"


class ZkUnavailable(RuntimeError):
    pass


def parse_zk_url(url: str) -> tuple[str, str]:
    """`zk://[user:pass@]host:port[,host:port…]/path` → (hosts, path). Raises ValueError."""
    if not url.startswith("zk://"):
        raise ValueError(f"expected zk://host:port/path, got {url!r}")
    rest = url[len("zk://"):]
    hosts, slash, path = rest.partition("/")
    hosts = hosts.rpartition("@")[2]
    if not hosts or not slash or not path.strip("/"):
        raise ValueError(f"expected zk://host:port/path, got {url!r}")
    return hosts, "/" + path.strip("/")


class ZkAnnouncer:
    def __init__(self, url: str, connect_timeout: float = 10.0) -> None:
        self.hosts, self.path = parse_zk_url(url)
        self.connect_timeout = connect_timeout
        self.node: str | None = None
        self._zk: Any = None

    def start(self, master_info: dict[str, Any]) -> None:
        from kazoo.client import KazooClient

        self._zk = KazooClient(hosts=self.hosts)
        try:
            self._zk.start(timeout=self.connect_timeout)
        except Exception as exc:  # kazoo's timeout error; its message alone says too little
            self._zk.close()
            self._zk = None
            raise ZkUnavailable(f"cannot reach ZooKeeper at {self.hosts}: {exc}") from exc
        self._zk.ensure_path(self.path)
        self._create(master_info)

    def replace(self, master_info: dict[str, Any]) -> None:
        """A master failover as ZooKeeper watchers see it: the old znode goes, a new one comes."""
        self._delete()
        self._create(master_info)

    def stop(self) -> None:
        if self._zk is None:
            return
        try:
            self._delete()
        finally:
            self._zk.stop()
            self._zk.close()
            self._zk = None

    def _create(self, master_info: dict[str, Any]) -> None:
        data = json.dumps(master_info, separators=(",", ":")).encode("utf-8")
        self.node = self._zk.create(f"{self.path}/{ZNODE_PREFIX}", data, ephemeral=True,
                                    sequence=True)
        log.info("announced master %s in ZooKeeper %s as %s", master_info.get("id"),
                 self.hosts, self.node)

    def _delete(self) -> None:
        if self.node is not None:
            from kazoo.exceptions import NoNodeError

            try:
                self._zk.delete(self.node)
            except NoNodeError:
                pass
            self.node = None
