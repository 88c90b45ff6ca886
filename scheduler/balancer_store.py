"""Load balancers' registrations in the state store: plain documents, one per balancer.

`accessd lb` renews its registration through the control API (`PUT /v2/balancers/{name}`):
`{"name", "drained": [task ids], "ttlSeconds", "renewedAt", "expiresAt"}`. Each document has
one writer (its balancer, through the API) and one reader (the scheduler's drain wait,
`scheduler.drain`), so it is not desired state: it is written outside transactions and the
generation, like app version histories. Mixins of the two backends (they use the backend's
connection/client); `StateStore`'s defaults keep none, so a store without them never waits.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, unquote

Doc = dict[str, Any]

_TABLE = "CREATE TABLE IF NOT EXISTS balancers (name TEXT PRIMARY KEY, doc TEXT NOT NULL)"


class SQLiteBalancers:
    _balancers_ready = False

    def _balancers_table(self) -> None:
        if not self._balancers_ready:
            with self._write() as c:  # type: ignore[attr-defined]
                c.execute(_TABLE)
            self._balancers_ready = True

    def put_balancer(self, name: str, doc: Doc) -> None:
        self._balancers_table()
        with self._write() as c:  # type: ignore[attr-defined]
            c.execute("INSERT OR REPLACE INTO balancers (name, doc) VALUES (?, ?)",
                      (name, json.dumps(doc, separators=(",", ":"))))

    def list_balancers(self) -> list[Doc]:
        self._balancers_table()
        rows = self._conn().execute(  # type: ignore[attr-defined]
            "SELECT doc FROM balancers ORDER BY name").fetchall()
        return [json.loads(r[0]) for r in rows]

    def delete_balancer(self, name: str) -> bool:
        self._balancers_table()
        with self._write() as c:  # type: ignore[attr-defined]
            return c.execute("DELETE FROM balancers WHERE name = ?", (name,)).rowcount > 0


class ZooKeeperBalancers:
    """`<root>/balancers/<quoted name>`, read on demand (not cached)."""

    def _balancer_path(self, name: str | None = None) -> str:
        base = f"{self.root}/balancers"  # type: ignore[attr-defined]
        return base if name is None else f"{base}/{quote(name, safe='')}"

    def put_balancer(self, name: str, doc: Doc) -> None:
        from kazoo.exceptions import NodeExistsError

        from scheduler.zk import zk_errors
        data = json.dumps(doc, separators=(",", ":")).encode()
        with zk_errors(f"storing balancer {name}"):
            try:
                self.client.create(self._balancer_path(name), data,  # type: ignore
                                   makepath=True)
            except NodeExistsError:
                self.client.set(self._balancer_path(name), data)  # type: ignore

    def list_balancers(self) -> list[Doc]:
        from kazoo.exceptions import NoNodeError

        from scheduler.zk import zk_errors
        out = []
        with zk_errors("listing balancers"):
            try:
                names = sorted(self.client.get_children(self._balancer_path()))  # type: ignore
            except NoNodeError:
                return []
            for name in names:
                try:
                    data, _ = self.client.get(self._balancer_path(unquote(name)))  # type: ignore
                except NoNodeError:
                    continue
                out.append(json.loads(data))
        return out

    def delete_balancer(self, name: str) -> bool:
        from kazoo.exceptions import NoNodeError

        from scheduler.zk import zk_errors
        with zk_errors(f"deleting balancer {name}"):
            try:
                self.client.delete(self._balancer_path(name))  # type: ignore
                return True
            except NoNodeError:
                return False
