"""A snapshot as it will be once operations not yet applied are: the reads of one plan that
makes several changes in one transaction (a group's apps, `scheduler.changes.apps_update`).

A plan computes its transaction from a `Reader` and writes nothing itself, so the second app of
a group would not see what the plan has already decided for the first: a new app's service
ports, a deployment it superseded. `PendingReader` answers every read from the operations
added so far where they touch the key read, and from the snapshot underneath otherwise (whose
own read tracking, for ZooKeeper's conflict checks, still sees every read that reaches it).
Pure: it holds plain documents and the reader it wraps; documents are returned as stored in
the operations (callers copy before changing one, as they do with a reader's documents).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from scheduler.state import Doc, Op, Put, Reader

_ABSENT: Any = object()


class PendingReader:
    """`base` with `ops` applied on top (see the module); other reader methods (a job reader's)
    go to `base` unchanged."""

    def __init__(self, base: Reader, ops: Iterable[Op] = ()) -> None:
        self._base = base
        self._pending: dict[tuple[str, str], Doc | None] = {}  # in the order first written
        self.add(ops)

    def add(self, ops: Iterable[Op]) -> None:
        for op in ops:
            self._pending[(op.kind, op.key)] = op.doc if isinstance(op, Put) else None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)

    def _get(self, kind: str, key: str) -> Doc | None | Any:
        return self._pending.get((kind, key), _ABSENT)

    def _read(self, kind: str, key: str, read: Callable[[str], Doc | None]) -> Doc | None:
        """The pending document of (kind, key) if the ops wrote one (None: deleted), else
        `read(key)` from the snapshot."""
        doc = self._get(kind, key)
        return read(key) if doc is _ABSENT else doc

    def app(self, app_id: str) -> Doc | None:
        return self._read("apps", app_id, self._base.app)

    def apps(self) -> list[Doc]:
        by_id = {a["id"]: a for a in self._base.apps()}
        for (kind, key), doc in self._pending.items():
            if kind == "apps":
                if doc is None:
                    by_id.pop(key, None)
                else:
                    by_id[key] = doc
        return [by_id[k] for k in sorted(by_id)]

    def deployment(self, deployment_id: str) -> Doc | None:
        return self._read("deployments", deployment_id, self._base.deployment)

    def running_deployments(self, app_ids: set[str]) -> list[Doc]:
        """The snapshot's running deployments as the ops left them, then the others the ops
        wrote (new ones), in the order the ops wrote them."""
        snapshot = self._base.running_deployments(app_ids)
        seen = {d["id"] for d in snapshot}
        found = [d if (doc := self._get("deployments", d["id"])) is _ABSENT else doc
                 for d in snapshot]
        found += [doc for (kind, key), doc in self._pending.items()
                  if kind == "deployments" and key not in seen]
        return [d for d in found if d is not None and d.get("status", "running") == "running"
                and app_ids & set(d.get("affectedApps") or ())]

    def task(self, task_id: str) -> Doc | None:
        return self._read("tasks", task_id, self._base.task)

    def kill_request(self, task_id: str) -> Doc | None:
        return self._read("kill_requests", task_id, self._base.kill_request)

    def delay_reset(self, app_id: str) -> Doc | None:
        return self._read("delay_resets", app_id, self._base.delay_reset)

    def generation(self) -> int:
        return self._base.generation()


def merged(ops: Iterable[Op]) -> tuple[Op, ...]:
    """`ops` with one operation per key: the last one, in the place of the first (a backend
    applies each key once; a deployment superseded by one change and then by another is one
    put)."""
    by_key: dict[tuple[str, str], Op] = {}
    for op in ops:
        by_key[(op.kind, op.key)] = op
    return tuple(by_key.values())

