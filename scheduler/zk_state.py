"""ZooKeeper backend of the state store (`--state zk://h1:2181,h2:2181/accessd`), through kazoo.

Layout under the root (keys are URL-quoted, so `/g/c` is one node `%2Fg%2Fc`):

    generation             the desired generation (an integer, as text)
    meta/framework_id      {"value": id}
    apps/ deployments/ kill_requests/ delay_resets/ tasks/ app_status/   one JSON doc a node
    changes/c-<seq>        one per transaction: the keys it wrote (and the generation it made)
    events/e-<seq>         the event log; the id is the sequence number

Invariants:
- A transaction is one ZooKeeper `multi`: its puts and deletes, a version check of every
  document its plan read, the generation bump (a conditional `set_data`: every change of desired
  state serialises on that node, so no two API writers ever both win on the same snapshot), the
  change record and, for a fenced scheduler, a check of its leader node. All or nothing; a
  failed check re-runs the plan on a fresh snapshot (bounded retries), a failed fence is
  `NotLeader`, a lost connection is `StoreUnavailable`.
- Reads come from a local cache of every document, fed by a watch on `changes/` (each record
  names the keys to re-read). A read first asks ZooKeeper (sync + one `exists`) whether records
  appeared since the cache last caught up, and catches up if so: one or two round trips per
  read, never one per document, and a read sees every write committed before it began.
- The cache's generation comes from the change records, in order (or, on a full reload, is read
  before the documents): the cache never holds a generation newer than its documents, so a
  plan that passed the generation check saw every desired-state change.
- Without a connection (no quorum), reads answer from the cache and `stale` is true; writes
  raise StoreUnavailable at once.
- Change records and events are bounded: the newest `CHANGES_KEPT` records stay; the events are
  pruned by the scheduler (`prune_events`). A cache further behind than that reloads all.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any
from urllib.parse import quote, unquote

from scheduler.state import (
    KINDS,
    Delete,
    Doc,
    Plan,
    Put,
    StateError,
    StateStore,
    StoreUnavailable,
    T,
)
from scheduler.zk import (
    CALL_TIMEOUT,
    WriteConflict,
    ZkUrl,
    new_client,
    parse_zk_url,
    transaction_failure,
    zk_errors,
)
from scheduler.zk_versions import ZooKeeperAppVersions

log = logging.getLogger("accessd.zk_state")

CHANGES_KEPT = 2000
MAX_ATTEMPTS = 20
GENERATION = "generation"

# A cached document: (doc, data version, creation zxid)
Entry = tuple[Doc, int, int]


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _seq(name: str) -> int:
    return int(name[2:])


class _Reader:
    """A plan's snapshot: the cache, recording what was read (and at which version)."""

    def __init__(self, store: ZooKeeperStateStore) -> None:
        self.s = store
        self.read: dict[tuple[str, str], int | None] = {}  # (kind, key) -> version or None
        self.generation_read = False

    def _get(self, kind: str, key: str) -> Doc | None:
        entry = self.s._cache[kind].get(key)
        self.read[(kind, key)] = entry[1] if entry else None
        return json.loads(json.dumps(entry[0])) if entry else None

    def app(self, app_id: str) -> Doc | None:
        return self._get("apps", app_id)

    def deployment(self, deployment_id: str) -> Doc | None:
        return self._get("deployments", deployment_id)

    def running_deployments(self, app_ids: set[str]) -> list[Doc]:
        self.generation_read = True  # a new deployment always comes with a generation bump
        found = sorted((e[2], key) for key, e in self.s._cache["deployments"].items()
                       if e[0].get("status", "running") == "running"
                       and app_ids & set(e[0].get("affectedApps") or ()))
        return [d for d in (self._get("deployments", key) for _, key in found) if d]

    def task(self, task_id: str) -> Doc | None:
        return self._get("tasks", task_id)

    def kill_request(self, task_id: str) -> Doc | None:
        return self._get("kill_requests", task_id)

    def delay_reset(self, app_id: str) -> Doc | None:
        return self._get("delay_resets", app_id)

    def generation(self) -> int:
        self.generation_read = True
        return self.s._generation[0]


class ZooKeeperStateStore(ZooKeeperAppVersions, StateStore):
    """`StateStore` in ZooKeeper. `fence`, when set (by the leader election), is the path of a
    node every write checks in its `multi`: once that node is gone, writes raise NotLeader."""

    def __init__(self, url: str | ZkUrl, *, client: Any = None) -> None:
        self.url = parse_zk_url(url) if isinstance(url, str) else url
        self.root = self.url.root
        self.client = client if client is not None else new_client(self.url)
        self._own_client = client is None
        self.fence: str | None = None
        self._lock = threading.RLock()          # the cache
        self._catch_up_lock = threading.Lock()  # one catch-up at a time
        self._cache: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self._generation = (0, 0)                # (value, node version)
        self._applied: int | None = None         # newest change record in the cache
        self._cversion: int | None = None        # changes/ child version the cache matches
        self._events: dict[int, Doc] = {}        # immutable: cached once read
        self._closed = False
        self.stale = False
        with zk_errors("creating the store's nodes"):
            for kind in (*KINDS, "changes", "events"):
                self.client.ensure_path(self._path(kind))
            try:
                self.client.create(self._path(GENERATION), b"0")
            except Exception as exc:  # NodeExists: another process made it first
                from kazoo.exceptions import NodeExistsError
                if not isinstance(exc, NodeExistsError):
                    raise
        self._fresh()
        from kazoo.recipe.watchers import ChildrenWatch
        ChildrenWatch(self.client, self._path("changes"), self._on_changes)

    # -- paths ---------------------------------------------------------------------------------
    def _path(self, kind: str, key: str | None = None) -> str:
        base = f"{self.root}/{kind}"
        return base if key is None else f"{base}/{quote(key, safe='')}"

    # -- the cache -----------------------------------------------------------------------------
    def _on_changes(self, children: list[str]) -> bool | None:
        if self._closed:
            return False  # stop watching
        try:
            self._catch_up()
        except StateError as exc:
            log.debug("catch-up from the watch failed: %s", exc)
        return None

    def _connected(self) -> bool:
        from kazoo.protocol.states import KazooState

        return self.client.state == KazooState.CONNECTED

    def _fresh(self) -> None:
        """Make the cache current (a read sees every write committed before it began), or mark
        it stale when ZooKeeper cannot be asked."""
        if self._closed:
            raise StateError("state store is closed")
        if not self._connected():
            self._mark_stale()
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
            seqs = sorted(_seq(c) for c in children)
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
            out[k] = (json.loads(data), stat.version, stat.czxid)
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
        return json.loads(json.dumps(entry[0])) if entry else None

    def change_token(self) -> int | None:
        """Changes whenever any write lands (for the API's view cache); None when stale."""
        self._fresh()
        return None if self.stale else self._cversion

    # -- transactions --------------------------------------------------------------------------
    def transact(self, plan: Plan[T]) -> T:
        fresh = False
        for _attempt in range(MAX_ATTEMPTS):
            if not self._connected():
                raise StoreUnavailable("ZooKeeper is unreachable or has no quorum; nothing was "
                                       "written (reads still answer, from the cache)")
            with self._lock:
                reader = _Reader(self)
                generation = self._generation
                try:
                    txn, result = plan(reader)
                except StateError:
                    if fresh:
                        raise  # rejected on a current snapshot: the caller's answer
                    txn = None
            if txn is None:
                self._fresh()
                fresh = not self.stale
                if not fresh:
                    raise StoreUnavailable("ZooKeeper is unreachable or has no quorum; nothing "
                                           "was written")
                continue
            if (reader.read or reader.generation_read) and not fresh:
                # a plan that read something runs on a cache verified current
                self._fresh()
                if self.stale:
                    continue
                fresh = True
                continue
            if not txn.ops and not txn.bump_generation:
                return result
            if not fresh and any(isinstance(op, Delete) and (op.kind, op.key) not in reader.read
                                 and op.key not in self._cache[op.kind] for op in txn.ops):
                # a blind delete of what the cache does not hold yet: look again, freshly
                self._fresh()
                fresh = not self.stale
                continue
            try:
                self._commit(reader, txn, generation)
                return result
            except WriteConflict as exc:
                log.debug("transaction conflict, retrying: %s", exc)
                self._fresh()
        raise StoreUnavailable(f"a transaction kept conflicting after {MAX_ATTEMPTS} attempts; "
                               "nothing was written")

    def _commit(self, reader: _Reader, txn: Any, generation: tuple[int, int]) -> None:
        t = self.client.transaction()
        fence_index = None
        if self.fence is not None:
            fence_index = 0
            t.check(self.fence, -1)
        written: dict[tuple[str, str], None] = {}
        for op in txn.ops:
            k = (op.kind, op.key)
            written[k] = None
            path = self._path(*k)
            read = reader.read.get(k, "unread")
            with self._lock:
                cached = self._cache[op.kind].get(op.key)
            exists = (read is not None) if read != "unread" else cached is not None
            version = read if isinstance(read, int) else -1
            if isinstance(op, Put):
                if exists:
                    t.set_data(path, _dumps(op.doc), version)
                else:
                    t.create(path, _dumps(op.doc))
            elif isinstance(op, Delete) and exists:
                t.delete(path, version)
        for k, version in reader.read.items():
            if k not in written and version is not None:
                t.check(self._path(*k), version)
        record: Doc = {"keys": [list(k) for k in written]}
        if txn.bump_generation:
            t.set_data(self._path(GENERATION), str(generation[0] + 1).encode(), generation[1])
            record["gen"] = [generation[0] + 1, generation[1] + 1]
        elif reader.generation_read:
            t.check(self._path(GENERATION), generation[1])
        t.create(f"{self._path('changes')}/c-", _dumps(record), sequence=True)
        with zk_errors("committing a transaction"):
            results = t.commit_async().get(timeout=CALL_TIMEOUT)
        failure = transaction_failure(results, fence_index)
        if failure is not None:
            raise failure
        seq = _seq(results[-1].rsplit("/", 1)[1])
        if seq % 100 == 0:
            self._prune_changes()

    def _prune_changes(self) -> None:
        try:
            with zk_errors("pruning change records"):
                children = sorted(self.client.get_children(self._path("changes")), key=_seq)
                for name in children[:-CHANGES_KEPT]:
                    self.client.delete_async(f"{self._path('changes')}/{name}")
        except StateError as exc:
            log.warning("could not prune change records: %s", exc)

    # -- reads ---------------------------------------------------------------------------------
    def get_framework_id(self) -> str | None:
        doc = self._doc("meta", "framework_id")
        return doc["value"] if doc else None

    def get_app(self, app_id: str) -> Doc | None:
        return self._doc("apps", app_id)

    def list_apps(self) -> list[Doc]:
        return [_copy(e[0]) for _, e in sorted(self._docs("apps"))]

    def get_deployment(self, deployment_id: str) -> Doc | None:
        return self._doc("deployments", deployment_id)

    def list_deployments(self, active_only: bool = True) -> list[Doc]:
        entries = sorted(self._docs("deployments"), key=lambda ke: (ke[1][2], ke[0]))
        return [_copy(e[0]) for _, e in entries
                if not active_only or e[0].get("status", "running") == "running"]

    def pending_kill_requests(self) -> list[Doc]:
        entries = sorted(self._docs("kill_requests"), key=lambda ke: (ke[1][2], ke[0]))
        return [_copy(e[0]) for _, e in entries]

    def pending_delay_resets(self) -> list[Doc]:
        return sorted((_copy(e[0]) for _, e in self._docs("delay_resets")),
                      key=lambda d: int(d["seq"]))

    def desired_generation(self) -> int:
        self._fresh()
        return self._generation[0]

    def get_task(self, task_id: str) -> Doc | None:
        return self._doc("tasks", task_id)

    def list_tasks(self, app_id: str | None = None) -> list[Doc]:
        tasks = [_copy(e[0]) for _, e in self._docs("tasks")
                 if app_id is None or e[0].get("appId") == app_id]
        tasks.sort(key=lambda t: (t.get("stagedAt") or "", t.get("id") or ""))
        return tasks

    def get_app_status(self, app_id: str) -> Doc | None:
        return self._doc("app_status", app_id)

    def list_app_status(self) -> dict[str, Doc]:
        return {key: _copy(e[0]) for key, e in sorted(self._docs("app_status"))}

    # -- events --------------------------------------------------------------------------------
    def append_event(self, event_type: str, payload: Doc) -> int:
        from scheduler.spec import iso_now

        doc = dict(payload)
        doc["eventType"] = event_type
        doc.setdefault("timestamp", iso_now())
        if not self._connected():
            raise StoreUnavailable("ZooKeeper is unreachable or has no quorum; event not stored")
        t = self.client.transaction()
        fence_index = None
        if self.fence is not None:
            fence_index = 0
            t.check(self.fence, -1)
        t.create(f"{self._path('events')}/e-", _dumps(doc), sequence=True)
        with zk_errors("appending an event"):
            results = t.commit_async().get(timeout=CALL_TIMEOUT)
        failure = transaction_failure(results, fence_index)
        if failure is not None:
            raise failure
        return _seq(results[-1].rsplit("/", 1)[1]) + 1

    def _event_ids(self) -> list[int]:
        """Event ids: the node's sequence number + 1 (ids start at 1; 0 means "before all")."""
        with zk_errors("listing events"):
            return sorted(_seq(n) + 1 for n in self.client.get_children(self._path("events")))

    def _event_path(self, event_id: int) -> str:
        return f"{self._path('events')}/e-{event_id - 1:010d}"

    def events_since(self, after_id: int, limit: int = 1000) -> list[tuple[int, Doc]]:
        if not self._connected():
            self._mark_stale()
            ids = sorted(i for i in self._events if i > after_id)[:max(0, int(limit))]
            return [(i, _copy(self._events[i])) for i in ids]
        ids = [i for i in self._event_ids() if i > after_id][:max(0, int(limit))]
        from kazoo.exceptions import NoNodeError

        missing = [(i, self.client.get_async(self._event_path(i)))
                   for i in ids if i not in self._events]
        with zk_errors("reading events"):
            for i, result in missing:
                try:
                    self._events[i] = json.loads(result.get(timeout=CALL_TIMEOUT)[0])
                except NoNodeError:
                    pass  # pruned meanwhile
        if len(self._events) > 4 * 1000:
            for i in sorted(self._events)[:-2000]:
                del self._events[i]
        return [(i, _copy(self._events[i])) for i in ids if i in self._events]

    def latest_event_id(self) -> int:
        ids = self._event_ids()
        if ids:
            return ids[-1]
        with zk_errors("reading the event log"):
            stat = self.client.exists(self._path("events"))
        return stat.cversion if stat else 0  # no id handed out so far is above it

    def prune_events(self, keep: int) -> int:
        ids = self._event_ids()
        doomed = ids[:max(0, len(ids) - max(0, int(keep)))]
        with zk_errors("pruning events"):
            results = [self.client.delete_async(self._event_path(i))
                       for i in doomed]
            for result in results:
                try:
                    result.get(timeout=CALL_TIMEOUT)
                except Exception as exc:
                    from kazoo.exceptions import NoNodeError
                    if not isinstance(exc, NoNodeError):
                        raise
        return len(doomed)

    def close(self) -> None:
        self._closed = True
        if self._own_client:
            self.client.stop()
            self.client.close()


def _copy(doc: Doc) -> Doc:
    return json.loads(json.dumps(doc))
