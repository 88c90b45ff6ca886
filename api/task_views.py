"""A per-worker cache of decoded task documents and their shaped views, by stored revision.

`GET /v2/apps?embed=apps.tasks` with 10,000 tasks spent most of its time decoding every stored
task and shaping it (`views.task_view`) on every request, although between two requests only
the few tasks the scheduler updated change. A store that keeps a revision per document
(`StateStore.task_records`: the ZooKeeper store's node version) lets this cache decode and
shape only the tasks whose revision moved; the rest are reused. A store without revisions
(SQLite) is read as before.

What this cache hands out is shared between requests: the documents and views are read-only
(they are counted and encoded, never changed). Only the tasks present in the latest full
listing are kept, so the cache is as large as the store's task set (a one-app read does
not use it). Per task it keeps the fields the app views count (`COUNTED_FIELDS`) and the
encoded view; the stored bytes are the store's own.
"""

from __future__ import annotations

import threading
from typing import Any

import orjson

from api import views
from scheduler.state import StateStore

Doc = dict[str, Any]
_loads = orjson.loads


# What `views.app_view` reads of a task besides its shaped view (counts, task stats): only
# these are kept decoded; a field it starts to read must be added here.
COUNTED_FIELDS = ("id", "appId", "state", "healthy", "stagedAt", "startedAt", "version")


class _Cached:
    __slots__ = ("revision", "data", "doc", "fragments")

    def __init__(self, revision: Any, data: bytes) -> None:
        self.revision = revision
        self.data = data  # the store's own bytes object: kept, not copied
        full = _loads(data)
        self.doc = {k: full[k] for k in COUNTED_FIELDS if k in full}
        self.fragments: dict[bool, Any] = {}  # extras -> encoded view

    def shaped(self, extras: bool, encoded: bool) -> Any:
        if not encoded:  # a dict others may hold on to: made afresh (not the hot path)
            return views.task_view(_loads(self.data), extras)
        view = self.fragments.get(extras)
        if view is None:
            encoded = orjson.dumps(views.task_view(_loads(self.data), extras))
            # a copy of exactly its size: orjson's buffer has room to spare (2 KB a task)
            view = orjson.Fragment(memoryview(encoded).tobytes())
            self.fragments[extras] = view
        return view


class TaskViewCache:
    """Tasks by app, decoded once per revision; see the module's docstring."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, _Cached] = {}

    def _cached(self, store: StateStore) -> list[tuple[str, _Cached]] | None:
        records = store.task_records()
        if records is None:
            return None
        with self._lock:
            known = self._by_id
            out = []
            for task_id, owner, revision, data in records:
                entry = known.get(task_id)
                if entry is None or entry.revision != revision:
                    entry = _Cached(revision, data)
                out.append((owner, entry))
            # what is not listed any more is forgotten
            self._by_id = {records[i][0]: entry for i, (_, entry) in enumerate(out)}
        return out

    def tasks_by_app(self, store: StateStore, *, shaped: bool, extras: bool = False,
                     encoded: bool = False) -> tuple[dict[str, list[Doc]], dict[str, list[Any]]]:
        """Every task: `(documents by app id, shaped views by app id)` in `list_tasks` order
        (the views only when `shaped`; empty otherwise). The documents hold only
        `COUNTED_FIELDS`. `encoded`: each view as an `orjson.Fragment` of its JSON, kept per
        revision, for an answer that is encoded at once (`orjson.dumps` copies it as it is:
        no shaping or encoding of 10,000 tasks per request); otherwise views are made anew."""
        cached = self._cached(store)
        if cached is None:
            return views.group_tasks(store.list_tasks()), {}
        docs: dict[str, list[Doc]] = {}
        shown: dict[str, list[Doc]] = {}
        for owner, entry in cached:
            docs.setdefault(owner, []).append(entry.doc)
            if shaped:
                shown.setdefault(owner, []).append(entry.shaped(extras, encoded))
        return docs, shown
