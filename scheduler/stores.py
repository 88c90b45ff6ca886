"""`open_state(url)`: the state store a `--state` value names.

`zk://h1:2181,h2:2181/accessd` is the ZooKeeper backend (`scheduler.zk_state`); anything else is
a SQLite file path or `sqlite:///path` (`scheduler.sqlite_state`), the embedded default.
"""

from __future__ import annotations

from scheduler.state import StateStore


def open_state(url: str) -> StateStore:
    from scheduler.zk import is_zk_url

    if is_zk_url(url):
        from scheduler.zk_state import ZooKeeperStateStore

        return ZooKeeperStateStore(url)
    from scheduler.sqlite_state import open_state as open_sqlite

    return open_sqlite(url)
