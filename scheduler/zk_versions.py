"""App version history in the ZooKeeper store: plain documents, one node per (app, version),
`<root>/app_versions/<quoted app id>/<version>` holding the app document.

A mixin of `ZooKeeperStateStore` (its client, root and error adapter). Histories are not desired
state: outside the generation and not cached (read on demand: `GET /v2/apps/{id}/versions` is
rare). A change's version is written in the change's own `multi` (`transact_with_versions`), so a
process killed between the two cannot leave a change without its history entry, and usually with
no other round trip (`_VersionWrite`); pruning the oldest versions comes after, only when the
history is longer than kept, and a prune that does not happen only leaves a longer history.
Version strings are ISO times, so the names sort in time order; `keep` bounds each app's
history."""

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


class _VersionWrite:
    """The extra writes of `transact_with_versions` for one app: the stored app as a node of
    its history.

    First attempt, no round trip: the history's parent is created in the same `multi` when the
    cache does not hold the app (its creation), and the version node is created (a new version)
    or set (the cached app has that version already). The parent is also set in the `multi`:
    its stat says how many versions there are, so the history is listed and pruned only when it
    is longer than `keep`. A guess that was wrong (a store from before parents came with the
    app, a version written twice within a millisecond) fails the `multi` as a conflict, and the
    next attempt asks ZooKeeper first (ensure_path + exists), as every attempt used to."""

    def __init__(self, store: Any, app_id: str) -> None:
        self.store = store
        self.app_id = app_id
        self.attempts = 0
        self.versions = 0  # how many the history holds after the commit

    def __call__(self, stored: Doc | None) -> list[ExtraWrite]:
        if stored is None:
            return self.store._history_removal(self.app_id)
        self.attempts += 1
        store, client = self.store, self.store.client
        parent = store._versions_path(self.app_id)
        path = store._versions_path(self.app_id, stored["version"])
        writes: list[ExtraWrite] = []
        if self.attempts == 1:
            with store._lock:
                cached = store._cache["apps"].get(self.app_id)
            if cached is None:
                writes.append((parent, b"", False))
            exists = cached is not None and json.loads(cached[0]).get("version") == \
                stored["version"]
        else:
            with zk_errors(f"storing version {stored['version']} of {self.app_id}"):
                client.ensure_path_async(parent).get(timeout=CALL_TIMEOUT)
                exists = client.exists_async(path).get(timeout=CALL_TIMEOUT) is not None
        return [*writes, (path, _encode(stored), exists), (parent, b"", True)]

    def committed(self, results: list) -> None:
        self.versions = getattr(results[-1], "numChildren", 0) if results else 0


class _VersionWrites:
    """The extra writes of `transact_with_versions`: a `_VersionWrite` per app changed, their
    writes one after the other in the `multi`, each told its own results."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._per_app: dict[str, _VersionWrite] = {}   # kept across attempts
        self._written: list[tuple[_VersionWrite, int]] = []  # this attempt's, with their count

    def __call__(self, stored: dict[str, Doc | None]) -> list[ExtraWrite]:
        writes: list[ExtraWrite] = []
        self._written = []
        for app_id, doc in stored.items():
            write = self._per_app.setdefault(app_id, _VersionWrite(self.store, app_id))
            own = write(doc)
            writes += own
            self._written.append((write, len(own)))
        return writes

    def committed(self, results: list) -> None:
        start = 0
        for write, count in self._written:
            write.committed(results[start:start + count])
            start += count

    def versions(self, app_id: str) -> int:
        """How many versions the app's history holds after the commit."""
        write = self._per_app.get(app_id)
        return write.versions if write is not None else 0


class ZooKeeperAppVersions:
    def transact_with_versions(self, plan: Any, keep: int) -> dict[str, Doc | None]:
        """`transact(plan)` with each stored app (the plan's result maps app ids to them) put
        into its version history in the same `multi` (`_VersionWrites`); then each history
        longer than `keep` is pruned. An app whose result is None (it is gone) has its
        history's nodes deleted in that `multi` instead."""
        if not keep:
            return self.transact(plan)  # type: ignore[attr-defined]
        version_writes = _VersionWrites(self)
        stored = self.transact(plan, extra_writes=version_writes)  # type: ignore[attr-defined]
        for app_id, doc in stored.items():
            if doc is not None and version_writes.versions(app_id) > max(1, int(keep)):
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
