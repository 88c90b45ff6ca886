"""The watch-fed document cache of the ZooKeeper state store (a mixin of
`scheduler.zk_state.ZooKeeperStateStore`; its invariants are described there).

Every document is kept as the bytes ZooKeeper returned, with its node's version, creation and
modification zxids and a tag. Three things change the cache, and `_merge` orders them by zxid
so none can undo a newer one:
- this process's own writes, applied from the `multi`'s results as soon as it commits (a read
  right after a write needs no round trip);
- the catch-up, when a change record of another writer appears (the watch on `changes/`, or a
  read's freshness check: sync + one `exists`): it re-reads the keys the records name (its own
  records it skips);
- a full reload, when the cache is further behind than the kept records.
A fetched document older than the cached one, or older than this process's delete of it, is
ignored; a fetched absence removes a document only if the listing that led to the fetch was
taken after the document's write (`horizon`: the `changes/` node's pzxid, which every write's
change record moves).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any
from urllib.parse import unquote

from scheduler.doc_codec import dumps_bytes, loads
from scheduler.jobs.zk_jobs import job_tag
from scheduler.state import KINDS, Doc, StateError, StoreUnavailable
from scheduler.zk import CALL_TIMEOUT, zk_errors
from scheduler.zk_events import seq_of

log = logging.getLogger("accessd.zk_state")

GENERATION = "generation"

# A cached document: (its JSON bytes, data version, creation zxid, tag, modification zxid).
# Documents are kept as
# the bytes ZooKeeper returned and decoded on each read (orjson: a fresh dict the caller may
# change, for about what copying a decoded one would cost). The tag is what filters need without
# decoding: a task's (appId, stagedAt, id), a deployment's (status, affectedApps).
Entry = tuple[bytes, int, int, Any, int]
Key = tuple[str, str]

# With `session_reads`, how long a read trusts the watch alone: a catch-up the watch started
# can fail (a timeout under load), and when nobody writes again no later watch repairs it, so
# a read this long after the last confirmed catch-up asks ZooKeeper itself (sync + exists).
SESSION_TRUST_SECONDS = 1.0


def _tag(kind: str, doc: Doc) -> Any:
    if kind == "tasks":  # its app, and the order of `list_tasks`
        return (doc.get("appId"), doc.get("stagedAt") or "", doc.get("id") or "")
    if kind == "deployments":
        return (doc.get("status", "running"), frozenset(doc.get("affectedApps") or ()))
    return job_tag(kind, doc)


_dumps = dumps_bytes
_loads = loads


class ZkCache:
    """The cache half of `ZooKeeperStateStore` (which provides the client and the paths)."""

    client: Any
    root: str
    session_reads: bool
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
        self._changes = dict.fromkeys(KINDS, 0)  # bumped by every change of a kind's docs
        self._task_order: tuple[int, list[tuple[str, Entry]]] = (-1, [])
        self._own_seqs: set[int] = set()         # our change records the catch-up skips
        # our deletes: key -> zxid, kept until a listing taken after them makes them moot
        self._deleted: dict[Key, int] = {}
        self._caught_up_at = 0.0                # monotonic time of the last complete catch-up
        self.stale = False

    def _on_changes(self, children: list[str]) -> bool | None:
        if self._closed:
            return False  # stop watching
        try:
            self._catch_up()
        except StateError as exc:  # the next read past SESSION_TRUST_SECONDS tries again
            log.warning("catch-up from the watch failed: %s", exc)
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
        this store's own writes must be in the cache, and they are (the watch brings the
        others' soon)."""
        if self._closed:
            raise StateError("state store is closed")
        if not self._connected():
            self._mark_stale()
            return
        trusted = self.session_reads and \
            time.monotonic() - self._caught_up_at < SESSION_TRUST_SECONDS
        if self._applied is not None and not force and (
                trusted or getattr(self._scope, "fresh", False)):
            # our own writes are in the cache since they committed; the watch brings the
            # others' (the scheduler, checked again past SESSION_TRUST_SECONDS) or this
            # request checked once already (the API)
            self.stale = False
            return
        try:
            with zk_errors("checking for changes"):
                # one round trip: the server answers a session's requests in order, so the
                # exists sent right behind the sync is read after it
                synced = self.client.sync_async(self.root)
                asked = self.client.exists_async(self._path("changes"))
                synced.get(timeout=CALL_TIMEOUT)
                stat = asked.get(timeout=CALL_TIMEOUT)
            if stat is None or stat.cversion != self._cversion:
                self._catch_up()
            else:
                self._caught_up_at = time.monotonic()
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
            horizon = stat.pzxid  # every write before the listing has its record by then
            if self._applied is None or (self._applied not in seqs and seqs
                                         and seqs[-1] > self._applied):
                self._reload(seqs[-1] if seqs else -1, stat.cversion, horizon)
                return
            new = [s for s in seqs if s > self._applied]
            with self._lock:
                theirs = [s for s in new if s not in self._own_seqs]
            records = [self.client.get_async(f"{self._path('changes')}/c-{s:010d}")
                       for s in theirs]
            keys: dict[Key, None] = {}
            generation = None
            for result in records:
                try:
                    data, _ = result.get(timeout=CALL_TIMEOUT)
                except Exception:  # pruned under us: reload everything
                    self._reload(seqs[-1], stat.cversion, horizon)
                    return
                record = json.loads(data)
                keys.update({(k, key): None for k, key in record["keys"]})
                if record.get("gen"):
                    generation = tuple(record["gen"])
            fetched = self._fetch(list(keys))
            with self._lock:
                self._merge(fetched, horizon)
                if generation is not None:
                    self._newer_generation(generation)
                if new:
                    self._applied = new[-1]
                    self._own_seqs = {s for s in self._own_seqs if s > new[-1]}
                self._cversion = stat.cversion
                self._caught_up_at = time.monotonic()

    def _merge(self, fetched: dict[Key, Entry | None], horizon: int) -> None:
        """Apply what was read from ZooKeeper (under `_lock`), never over something newer."""
        for (kind, key), entry in fetched.items():
            cached = self._cache[kind].get(key)
            if entry is None:
                if cached is not None and cached[4] <= horizon:
                    del self._cache[kind][key]
                    self._changes[kind] += 1
            elif ((cached is None or cached[4] < entry[4])
                  and self._deleted.get((kind, key), -1) < entry[4]):
                self._cache[kind][key] = entry
                self._changes[kind] += 1
        # a later listing's reads cannot bring back what we deleted before it
        self._deleted = {k: z for k, z in self._deleted.items() if z > horizon}

    def _newer_generation(self, generation: tuple) -> None:
        if int(generation[1]) > self._generation[1]:
            self._generation = (int(generation[0]), int(generation[1]))

    def _apply_own(self, puts: list[tuple[Key, bytes, Any]], deletes: list[Key],
                   zxid: int, generation: tuple[int, int] | None, seq: int) -> None:
        """This process's committed `multi` into the cache at once: `puts` with the stat each
        set_data returned (None: created by the multi, version 0 at `zxid`), `deletes` done
        at `zxid`; the catch-up then skips change record `seq`."""
        with self._lock:
            for (kind, key), data, stat in puts:
                entry = ((data, 0, zxid, _tag(kind, _loads(data)), zxid) if stat is None else
                         (data, stat.version, stat.czxid, _tag(kind, _loads(data)), stat.mzxid))
                cached = self._cache[kind].get(key)
                if cached is None or cached[4] < entry[4]:
                    self._cache[kind][key] = entry
                    self._changes[kind] += 1
            for kind, key in deletes:
                cached = self._cache[kind].get(key)
                if cached is not None and cached[4] < zxid:
                    del self._cache[kind][key]
                    self._changes[kind] += 1
                self._deleted[(kind, key)] = max(zxid, self._deleted.get((kind, key), -1))
            if generation is not None:
                self._newer_generation(generation)
            if self._applied is None or seq > self._applied:
                self._own_seqs.add(seq)

    def _fetch(self, keys: list[Key]) -> dict[Key, Entry | None]:
        from kazoo.exceptions import NoNodeError

        pending = [(k, self.client.get_async(self._path(*k))) for k in keys]
        out: dict[Key, Entry | None] = {}
        for k, result in pending:
            try:
                data, stat = result.get(timeout=CALL_TIMEOUT)
            except NoNodeError:
                out[k] = None
                continue
            out[k] = (data, stat.version, stat.czxid, _tag(k[0], _loads(data)), stat.mzxid)
        return out

    def _reload(self, applied: int, cversion: int, horizon: int) -> None:
        """Everything, read after the generation (so never older than it); what this process
        wrote meanwhile stays (`_merge`)."""
        data, gstat = self.client.get(self._path(GENERATION))
        generation = (int(data or b"0"), gstat.version)
        listed = {(kind, unquote(name)) for kind in KINDS
                  for name in self.client.get_children(self._path(kind))}
        fetched = self._fetch(list(listed))
        with self._lock:
            # what is cached but not listed is gone, unless written after the listing
            fetched.update({(kind, key): None for kind, docs in self._cache.items()
                            for key in docs if (kind, key) not in listed})
            self._merge(fetched, horizon)
            self._newer_generation(generation)
            self._applied, self._cversion = applied, cversion
            self._own_seqs = {s for s in self._own_seqs if s > applied}
            self._caught_up_at = time.monotonic()
        log.info("loaded %d documents from ZooKeeper (generation %d)", len(listed),
                 generation[0])

    def _docs(self, kind: str) -> list[tuple[str, Entry]]:
        self._fresh()
        with self._lock:
            return list(self._cache[kind].items())

    def _task_entries(self, app_id: str | None) -> list[tuple[str, Entry]]:
        """Tasks in `list_tasks` order, (stagedAt, id), as SQLite orders them; the order of
        all of them is kept until a task changes (a 10,000-task sort is most of a listing)."""
        self._fresh()
        with self._lock:
            if self._task_order[0] != self._changes["tasks"]:
                self._task_order = (self._changes["tasks"], sorted(
                    self._cache["tasks"].items(), key=lambda ke: ke[1][3][1:]))
            entries = self._task_order[1]
        return entries if app_id is None else [ke for ke in entries if ke[1][3][0] == app_id]

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
