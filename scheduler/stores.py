"""`open_state(url)`: the state store a `--state` value names.

`zk://h1:2181,h2:2181/accessd` is the ZooKeeper backend (`scheduler.zk_state`); anything else is
a SQLite file path or `sqlite:///path` (`scheduler.sqlite_state`), the embedded default.
"""

from __future__ import annotations

from scheduler.state import StateStore


def open_state(url: str, *, session_reads: bool = False) -> StateStore:
    """`session_reads` (ZooKeeper only): reads see this process's own writes and the others'
    as the watch brings them, without a round trip each (the scheduler's choice)."""
    from scheduler.zk import is_zk_url

    if is_zk_url(url):
        from scheduler.zk_state import ZooKeeperStateStore

        return ZooKeeperStateStore(url, session_reads=session_reads)
    from scheduler.sqlite_state import open_state as open_sqlite

    return open_sqlite(url)
