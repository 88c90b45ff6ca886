"""App version history in the ZooKeeper store: plain documents, one node per (app, version),
`<root>/app_versions/<quoted app id>/<version>` holding the app document.

A mixin of `ZooKeeperStateStore` (its client, root and error adapter). Histories are not desired
state: they are written after the change's own transaction, outside the generation, and are not
cached (read on demand: `GET /v2/apps/{id}/versions` is rare). Version strings are ISO times, so
the names sort in time order; `keep` bounds each app's history."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, unquote

from scheduler.zk import zk_errors

Doc = dict[str, Any]


class ZooKeeperAppVersions:
    def _versions_path(self, app_id: str, version: str | None = None) -> str:
        base = f"{self.root}/app_versions/{quote(app_id, safe='')}"  # type: ignore[attr-defined]
        return base if version is None else f"{base}/{quote(version, safe='')}"

    def put_app_version(self, app_id: str, version: str, doc: Doc, *, keep: int) -> None:
        from kazoo.exceptions import NodeExistsError, NoNodeError
        client = self.client  # type: ignore[attr-defined]
        path = self._versions_path(app_id, version)
        data = json.dumps(doc, separators=(",", ":")).encode()
        with zk_errors(f"storing version {version} of {app_id}"):
            try:
                client.create(path, data, makepath=True)
            except NodeExistsError:
                client.set(path, data)
            names = sorted(client.get_children(self._versions_path(app_id)), reverse=True)
            for name in names[max(1, int(keep)):]:
                try:
                    client.delete(f"{self._versions_path(app_id)}/{name}")
                except NoNodeError:
                    pass  # pruned by another writer meanwhile

    def list_app_versions(self, app_id: str) -> list[str]:
        from kazoo.exceptions import NoNodeError
        with zk_errors(f"listing the versions of {app_id}"):
            try:
                names = self.client.get_children(self._versions_path(app_id))  # type: ignore
            except NoNodeError:
                return []
        return sorted((unquote(n) for n in names), reverse=True)

    def get_app_version(self, app_id: str, version: str) -> Doc | None:
        from kazoo.exceptions import NoNodeError
        with zk_errors(f"reading version {version} of {app_id}"):
            try:
                data, _ = self.client.get(self._versions_path(app_id, version))  # type: ignore
            except NoNodeError:
                return None
        return json.loads(data)

    def delete_app_versions(self, app_id: str) -> None:
        from kazoo.exceptions import NoNodeError
        with zk_errors(f"deleting the versions of {app_id}"):
            try:
                self.client.delete(self._versions_path(app_id), recursive=True)  # type: ignore
            except NoNodeError:
                pass
