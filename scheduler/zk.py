"""The one adapter between accessd and kazoo: `zk://` URLs, the client, and kazoo's failures
turned into the store's typed exceptions (`StoreUnavailable`, `NotLeader`, `WriteConflict`).

    `zk://h1:2181,h2:2181,h3:2181/accessd?session_timeout=10`

The path is the root under which accessd keeps everything (created if missing); the optional
`session_timeout` (seconds, default 10) is the ZooKeeper session timeout: how long a process that
stopped answering (killed, paused, partitioned) keeps its ephemeral nodes, e.g. its leadership.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from scheduler.state import StateError, StoreUnavailable

log = logging.getLogger("accessd.zk")

DEFAULT_SESSION_TIMEOUT = 10.0
CALL_TIMEOUT = 10.0  # seconds a single request may take before the store calls ZooKeeper gone
WRITE_WAIT_SECONDS = 4.0  # a write waits this long for a connection (a ZooKeeper server's loss
                          # or a leader election in the ensemble) before StoreUnavailable


class WriteConflict(StateError):
    """A transaction's snapshot changed before its commit (another writer won); retried."""


@dataclass(frozen=True)
class ZkUrl:
    hosts: str
    root: str
    session_timeout: float = DEFAULT_SESSION_TIMEOUT

    def __str__(self) -> str:
        return f"zk://{self.hosts}{self.root}"


def is_zk_url(text: str) -> bool:
    return str(text).startswith("zk://")


def parse_zk_url(text: str) -> ZkUrl:
    """`zk://hosts/root[?session_timeout=S]` (raises StateError for anything else)."""
    parts = urlsplit(str(text))
    if parts.scheme != "zk" or not parts.netloc:
        raise StateError(f"not a zk://host:port[,host:port…]/path URL: {text!r}")
    root = parts.path.rstrip("/")
    if not root or root == "/":
        raise StateError(f"a ZooKeeper state URL needs a root path (zk://…/accessd): {text!r}")
    timeout = DEFAULT_SESSION_TIMEOUT
    query = parse_qs(parts.query)
    if "session_timeout" in query:
        try:
            timeout = float(query["session_timeout"][0])
        except ValueError:
            raise StateError(f"session_timeout must be a number of seconds: {text!r}") from None
        if timeout <= 0:
            raise StateError(f"session_timeout must be positive: {text!r}")
    return ZkUrl(parts.netloc, root, timeout)


def new_client(url: ZkUrl, *, connect_timeout: float = 15.0):  # -> KazooClient
    """A started kazoo client (reconnecting for ever), or StoreUnavailable."""
    from kazoo.client import KazooClient
    from kazoo.retry import KazooRetry

    client = KazooClient(hosts=url.hosts, timeout=url.session_timeout,
                         connection_retry=KazooRetry(max_tries=-1, delay=0.1, max_delay=1.0),
                         logger=logging.getLogger("accessd.kazoo"))
    with zk_errors(f"connecting to ZooKeeper at {url.hosts}"):
        try:
            client.start(timeout=connect_timeout)
        except BaseException:
            client.stop()
            client.close()
            raise
    return client


@contextmanager
def zk_errors(doing: str) -> Iterator[None]:
    """Turn kazoo's connection failures into StoreUnavailable (other kazoo errors into
    StateError); the store's own exceptions pass through."""
    from kazoo.exceptions import (
        ConnectionClosedError,
        ConnectionLoss,
        KazooException,
        OperationTimeoutError,
        SessionExpiredError,
    )
    from kazoo.handlers.threading import KazooTimeoutError

    try:
        yield
    except StateError:
        raise
    except (ConnectionLoss, SessionExpiredError, ConnectionClosedError, OperationTimeoutError,
            KazooTimeoutError) as exc:
        raise StoreUnavailable(f"ZooKeeper is unreachable or has no quorum ({doing}: "
                               f"{type(exc).__name__}); nothing was written") from exc
    except KazooException as exc:
        raise StateError(f"ZooKeeper refused {doing}: {type(exc).__name__} {exc}") from exc


def transaction_failure(results: list, fence_index: int | None) -> StateError | None:
    """The typed error of a failed `multi` (None if every operation succeeded): NotLeader when
    the fence check failed, WriteConflict when a version/existence check did."""
    from kazoo.exceptions import (
        BadVersionError,
        NodeExistsError,
        NoNodeError,
        NotEmptyError,
        RolledBackError,
    )

    from scheduler.state import NotLeader

    failed = [(i, r) for i, r in enumerate(results)
              if isinstance(r, Exception) and not isinstance(r, RolledBackError)]
    if not failed and not any(isinstance(r, Exception) for r in results):
        return None
    index, error = failed[0] if failed else (None, None)
    if fence_index is not None and index == fence_index:
        return NotLeader("this scheduler is no longer the leader (its leader node is gone); "
                         "nothing was written")
    if isinstance(error, (BadVersionError, NoNodeError, NodeExistsError, NotEmptyError)):
        return WriteConflict(f"concurrent change ({type(error).__name__} at operation {index})")
    return StateError(f"ZooKeeper refused the transaction: {error!r}")
