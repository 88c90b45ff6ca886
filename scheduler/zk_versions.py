"""App version history in the ZooKeeper store: plain documents, one node per (app, version),
`<root>/app_versions/<quoted app id>/<version>` holding the app document.

A mixin of `ZooKeeperStateStore` (its client, root and error adapter). Histories are not desired
state: outside the generation and not cached (read on demand: `GET /v2/apps/{id}/versions` is
rare). A change's version is written in the change's own `multi` (`transact_with_version`), so a
process killed between the two cannot leave a change without its history entry; pruning the
oldest versions comes after, and a prune that does not happen only leaves a longer history. Version strings are ISO times, so
the names sort in time order; `keep` bounds each app's history."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, unquote

from scheduler.zk import CALL_TIMEOUT, zk_errors

Doc = dict[str, Any]


def _encode(doc: Doc) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


# A node written beside a transaction's documents: (path, data, whether it exists: set or create);
# data None deletes the node.
ExtraWrite = tuple[str, bytes | None, bool]


class ZooKeeperAppVersions:
    def transact_with_version(self, plan: Any, app_id: str, keep: int) -> Doc | None:
        """`transact(plan)` with the stored app (the plan's result) put into its version history
        in the same `multi`; then the history is pruned to `keep`. A plan whose result is None
        (the app is gone) deletes the history's nodes in that `multi` instead."""
        if not keep:
            return self.transact(plan)  # type: ignore[attr-defined]
        client = self.client  # type: ignore[attr-defined]

        def version_write(stored: Doc | None) -> list[ExtraWrite]:
            # Called by transact once connected; bounded calls, as the commit's own.
            if stored is None:
                return self._history_removal(app_id)
            path = self._versions_path(app_id, stored["version"])
            with zk_errors(f"storing version {stored['version']} of {app_id}"):
                client.ensure_path_async(self._versions_path(app_id)).get(timeout=CALL_TIMEOUT)
                exists = client.exists_async(path).get(timeout=CALL_TIMEOUT) is not None
            return [(path, _encode(stored), exists)]

        stored = self.transact(plan, extra_writes=version_write)  # type: ignore[attr-defined]
        if stored is not None:
            self._prune_versions(app_id, keep)
        return stored

    def _history_removal(self, app_id: str) -> list[ExtraWrite]:
        """The extra writes deleting a gone app's history in its change's `multi`: every version
        node, then their parent. A version added after this listing fails the parent's delete
        (NotEmpty): a write conflict, so transact re-plans and lists again."""
        from kazoo.exceptions import NoNodeError
        parent = self._versions_path(app_id)
        with zk_errors(f"deleting the versions of {app_id}"):
            try:
                names = self.client.get_children_async(parent).get(  # type: ignore[attr-defined]
                    timeout=CALL_TIMEOUT)
            except NoNodeError:
                return []
        return [(f"{parent}/{name}", None, True) for name in names] + [(parent, None, True)]

    def _prune_versions(self, app_id: str, keep: int) -> None:
        from kazoo.exceptions import NoNodeError
        client = self.client  # type: ignore[attr-defined]
        with zk_errors(f"pruning the versions of {app_id}"):
            try:
                names = sorted(client.get_children(self._versions_path(app_id)), reverse=True)
            except NoNodeError:
                return
            for name in names[max(1, int(keep)):]:
                try:
                    client.delete(f"{self._versions_path(app_id)}/{name}")
                except NoNodeError:
                    pass  # pruned by another writer meanwhile

    def _versions_path(self, app_id: str, version: str | None = None) -> str:
        base = f"{self.root}/app_versions/{quote(app_id, safe='')}"  # type: ignore[attr-defined]
        return base if version is None else f"{base}/{quote(version, safe='')}"

    def put_app_version(self, app_id: str, version: str, doc: Doc, *, keep: int) -> None:
        from kazoo.exceptions import NodeExistsError
        client = self.client  # type: ignore[attr-defined]
        path = self._versions_path(app_id, version)
        data = _encode(doc)
        with zk_errors(f"storing version {version} of {app_id}"):
            try:
                client.create(path, data, makepath=True)
            except NodeExistsError:
                client.set(path, data)
        self._prune_versions(app_id, keep)

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
