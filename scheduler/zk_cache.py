"""The watch-fed document cache of the ZooKeeper state store (a mixin of
`scheduler.zk_state.ZooKeeperStateStore`; its invariants are described there).

Every document is kept as the bytes ZooKeeper returned, with its node's version, creation zxid
and a tag; a watch on `changes/` brings other writers' changes (each change record names the
keys to re-read), and a read first checks (sync + one `exists`) whether it must catch up.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any
from urllib.parse import unquote

import orjson

from scheduler.jobs.zk_jobs import job_tag
from scheduler.state import KINDS, Doc, StateError, StoreUnavailable
from scheduler.zk import CALL_TIMEOUT, zk_errors
from scheduler.zk_events import seq_of

log = logging.getLogger("accessd.zk_state")

GENERATION = "generation"

# A cached document: (its JSON bytes, data version, creation zxid, tag). Documents are kept as
# the bytes ZooKeeper returned and decoded on each read (orjson: a fresh dict the caller may
# change, for about what copying a decoded one would cost). The tag is what filters need without
# decoding: a task's (appId, stagedAt, id), a deployment's (status, affectedApps).
Entry = tuple[bytes, int, int, Any]


def _tag(kind: str, doc: Doc) -> Any:
    if kind == "tasks":  # its app, and the order of `list_tasks`
        return (doc.get("appId"), doc.get("stagedAt") or "", doc.get("id") or "")
    if kind == "deployments":
        return (doc.get("status", "running"), frozenset(doc.get("affectedApps") or ()))
    return job_tag(kind, doc)


def _dumps(doc: Any) -> bytes:
    return orjson.dumps(doc)


_loads = orjson.loads


class ZkCache:
    """The cache half of `ZooKeeperStateStore` (which provides the client and the paths)."""

    client: Any
    root: str
    session_reads: bool
    _own_seq: int
    _closed: bool
    _path: Any

    def _init_cache(self) -> None:
        self._lock = threading.RLock()          # the cache
        self._catch_up_lock = threading.Lock()  # one catch-up at a time
        self._cache: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self._generation = (0, 0)                # (value, node version)
        self._applied: int | None = None         # newest change record in the cache
        self._cversion: int | None = None        # changes/ child version the cache matches
        self._scope = threading.local()          # begin_request/end_request
        self.stale = False

    def _on_changes(self, children: list[str]) -> bool | None:
        if self._closed:
            return False  # stop watching
        try:
            self._catch_up()
        except StateError as exc:
            log.debug("catch-up from the watch failed: %s", exc)
        return None

    def _on_state(self, state: Any) -> None:
        from kazoo.protocol.states import KazooState

        if state == KazooState.CONNECTED:
            self._connection.set()
        else:
            self._connection.clear()

    def _connected(self) -> bool:
        from kazoo.protocol.states import KazooState

        return self.client.state == KazooState.CONNECTED

    def _fresh(self, force: bool = False) -> None:
        """Make the cache current (a read sees every write committed before it began), or mark
        it stale when ZooKeeper cannot be asked. With `session_reads` (and not `force`), only
        this store's own writes must be in the cache (the watch brings the others' soon)."""
        if self._closed:
            raise StateError("state store is closed")
        if not self._connected():
            self._mark_stale()
            return
        if (not force and getattr(self._scope, "fresh", False)
                and self._applied is not None and self._applied >= self._own_seq):
            return  # checked once already in this request, and our own writes are in
        if self.session_reads and not force:
            if self._applied is None or self._applied < self._own_seq:
                try:
                    self._catch_up()
                except StoreUnavailable:
                    self._mark_stale()
                    return
            self.stale = False
            return
        try:
            with zk_errors("checking for changes"):
                self.client.sync_async(self.root).get(timeout=CALL_TIMEOUT)
                stat = self.client.exists_async(self._path("changes")).get(timeout=CALL_TIMEOUT)
            if stat is None or stat.cversion != self._cversion:
                self._catch_up()
        except StoreUnavailable:
            self._mark_stale()
            return
        self.stale = False

    def _mark_stale(self) -> None:
        if not self.stale:
            log.warning("ZooKeeper unreachable: answering reads from the cache")
        self.stale = True

    def _catch_up(self) -> None:
        with self._catch_up_lock, zk_errors("reading changes"):
            children, stat = self.client.get_children(self._path("changes"), include_data=True)
            seqs = sorted(seq_of(c) for c in children)
            if self._applied is None or (self._applied not in seqs and seqs
                                         and seqs[-1] > self._applied):
                self._reload(seqs[-1] if seqs else -1, stat.cversion)
                return
            new = [s for s in seqs if s > self._applied]
            records = [self.client.get_async(f"{self._path('changes')}/c-{s:010d}")
                       for s in new]
            keys: dict[tuple[str, str], None] = {}
            generation = None
            for result in records:
                try:
                    data, _ = result.get(timeout=CALL_TIMEOUT)
                except Exception:  # pruned under us: reload everything
                    self._reload(seqs[-1], stat.cversion)
                    return
                record = json.loads(data)
                keys.update({(k, key): None for k, key in record["keys"]})
                if record.get("gen"):
                    generation = tuple(record["gen"])
            fetched = self._fetch(list(keys))
            with self._lock:
                for (kind, key), entry in fetched.items():
                    if entry is None:
                        self._cache[kind].pop(key, None)
                    else:
                        self._cache[kind][key] = entry
                if generation is not None and generation[1] > self._generation[1]:
                    self._generation = (int(generation[0]), int(generation[1]))
                if new:
                    self._applied = new[-1]
                self._cversion = stat.cversion

    def _fetch(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Entry | None]:
        from kazoo.exceptions import NoNodeError

        pending = [(k, self.client.get_async(self._path(*k))) for k in keys]
        out: dict[tuple[str, str], Entry | None] = {}
        for k, result in pending:
            try:
                data, stat = result.get(timeout=CALL_TIMEOUT)
            except NoNodeError:
                out[k] = None
                continue
            out[k] = (data, stat.version, stat.czxid, _tag(k[0], _loads(data)))
        return out

    def _reload(self, applied: int, cversion: int) -> None:
        """Everything, read after the generation (so never older than it)."""
        data, gstat = self.client.get(self._path(GENERATION))
        generation = (int(data or b"0"), gstat.version)
        keys = [(kind, unquote(name)) for kind in KINDS
                for name in self.client.get_children(self._path(kind))]
        fetched = self._fetch(keys)
        cache: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        for (kind, key), entry in fetched.items():
            if entry is not None:
                cache[kind][key] = entry
        with self._lock:
            self._cache, self._generation = cache, generation
            self._applied, self._cversion = applied, cversion
        log.info("loaded %d documents from ZooKeeper (generation %d)", len(keys), generation[0])

    def _docs(self, kind: str) -> list[tuple[str, Entry]]:
        self._fresh()
        with self._lock:
            return list(self._cache[kind].items())

    def _doc(self, kind: str, key: str) -> Doc | None:
        self._fresh()
        with self._lock:
            entry = self._cache[kind].get(key)
        return _loads(entry[0]) if entry else None

    def begin_request(self) -> None:
        """One freshness check for the rest of this thread's request (the API calls this as a
        request starts, `end_request` as it ends): its reads all see every write committed
        before the request began, with two round trips per request instead of per read."""
        self._scope.fresh = False
        self._fresh()
        self._scope.fresh = not self.stale

    def end_request(self) -> None:
        self._scope.fresh = False

    def refresh(self) -> None:
        """Bring the cache up to every write committed so far (a new leader's first step)."""
        self._fresh(force=True)

    def change_token(self) -> int | None:
        """Changes whenever any write lands (for the API's view cache); None when stale."""
        self._fresh()
        return None if self.stale else self._cversion
