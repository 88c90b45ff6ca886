"""ZooKeeper backend of the state store (`--state zk://h1:2181,h2:2181/accessd`), through kazoo.

Layout under the root (keys are URL-quoted, so `/g/c` is one node `%2Fg%2Fc`):

    generation             the desired generation (an integer, as text)
    meta/framework_id      {"value": id}
    apps/ deployments/ kill_requests/ delay_resets/ tasks/ app_status/   one JSON doc a node
    jobs/ job_status/ job_runs/ job_requests/    the jobs' documents (`scheduler.jobs.zk_jobs`)
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
  appeared since the cache last caught up, and catches up if so: two round trips per read,
  never one per document, and a read sees every write committed before it began (the API).
  With `session_reads` (the scheduler) a read waits only for this store's own writes, the
  watch brings the others' within moments, and `desired_generation()` is always current: the
  scheduler's view of the API's writes starts from that poll.
- The cache's generation comes from the change records, in order (or, on a full reload, is read
  before the documents): the cache never holds a generation newer than its documents, so a
  plan that passed the generation check saw every desired-state change.
- Without a connection (no quorum), reads answer from the cache and `stale` is true; writes
  raise StoreUnavailable at once.
- Change records and events are bounded: the newest `CHANGES_KEPT` records and `EVENTS_KEPT`
  events stay (pruned by the writers as they go; the scheduler's own `prune_events` may keep
  fewer). A cache further behind than the kept records reloads everything.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote, unquote

import orjson

from scheduler.balancer_store import ZooKeeperBalancers
from scheduler.jobs.zk_jobs import ZkJobDocuments, ZkJobReader, job_tag
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
    WRITE_WAIT_SECONDS,
    WriteConflict,
    ZkUrl,
    new_client,
    parse_zk_url,
    transaction_failure,
    zk_errors,
)
from scheduler.zk_events import ZkEventLog, seq_of
from scheduler.zk_versions import ExtraWrite, ZooKeeperAppVersions

log = logging.getLogger("accessd.zk_state")

CHANGES_KEPT = 2000
MAX_ATTEMPTS = 20
GENERATION = "generation"

# A cached document: (its JSON bytes, data version, creation zxid, tag). Documents are kept as
# the bytes ZooKeeper returned and decoded on each read (orjson: a fresh dict the caller may
# change, for about what copying a decoded one would cost). The tag is what filters need without
# decoding: a task's appId, a deployment's (status, affectedApps).
Entry = tuple[bytes, int, int, Any]


def _tag(kind: str, doc: Doc) -> Any:
    if kind == "tasks":
        return doc.get("appId")
    if kind == "deployments":
        return (doc.get("status", "running"), frozenset(doc.get("affectedApps") or ()))
    return job_tag(kind, doc)


def _dumps(doc: Any) -> bytes:
    return orjson.dumps(doc)


_loads = orjson.loads


class _Reader(ZkJobReader):
    """A plan's snapshot: the cache, recording what was read (and at which version)."""

    def __init__(self, store: ZooKeeperStateStore) -> None:
        self.s = store
        self.read: dict[tuple[str, str], int | None] = {}  # (kind, key) -> version or None
        self.generation_read = False

    def _get(self, kind: str, key: str) -> Doc | None:
        entry = self.s._cache[kind].get(key)
        self.read[(kind, key)] = entry[1] if entry else None
        return _loads(entry[0]) if entry else None

    def app(self, app_id: str) -> Doc | None:
        return self._get("apps", app_id)

    def apps(self) -> list[Doc]:
        # The set of apps changes only with a generation bump (every app change makes one), so
        # checking the generation at the commit fences the whole listing: of two concurrent
        # creates that each saw the other absent, one commit fails and runs again.
        self.generation_read = True
        with self.s._lock:
            entries = sorted(self.s._cache["apps"].items())
        return [_loads(entry[0]) for _, entry in entries]

    def deployment(self, deployment_id: str) -> Doc | None:
        return self._get("deployments", deployment_id)

    def running_deployments(self, app_ids: set[str]) -> list[Doc]:
        self.generation_read = True  # a new deployment always comes with a generation bump
        found = sorted((e[2], key) for key, e in self.s._cache["deployments"].items()
                       if e[3][0] == "running" and app_ids & e[3][1])
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


class ZooKeeperStateStore(ZkJobDocuments, ZooKeeperAppVersions, ZooKeeperBalancers, ZkEventLog,
                          StateStore):
    """`StateStore` in ZooKeeper. `fence`, when set (by the leader election), is the path of a
    node every write checks in its `multi`: once that node is gone, writes raise NotLeader."""

    def __init__(self, url: str | ZkUrl, *, client: Any = None,
                 session_reads: bool = False) -> None:
        self.url = parse_zk_url(url) if isinstance(url, str) else url
        self.root = self.url.root
        self.client = client if client is not None else new_client(self.url)
        self._own_client = client is None
        self.fence: str | None = None
        self.session_reads = session_reads
        self._own_seq = -1                       # this store's newest change record
        self._lock = threading.RLock()          # the cache
        self._catch_up_lock = threading.Lock()  # one catch-up at a time
        self._cache: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self._generation = (0, 0)                # (value, node version)
        self._applied: int | None = None         # newest change record in the cache
        self._cversion: int | None = None        # changes/ child version the cache matches
        self._events: dict[int, Doc] = {}        # immutable: cached once read
        self._scope = threading.local()          # begin_request/end_request
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
        self._connection = threading.Event()
        self.client.add_listener(self._on_state)
        if self._connected():
            self._connection.set()
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

    # -- transactions --------------------------------------------------------------------------
    def transact(self, plan: Plan[T], *,
                 extra_writes: Callable[[T], Sequence[ExtraWrite]] | None = None) -> T:
        """`StateStore.transact`; `extra_writes(result)` names nodes outside the cached documents
        written in the same `multi` (a change's version history, `zk_versions`)."""
        fresh = False
        for _attempt in range(MAX_ATTEMPTS):
            if not self._connected() and not self._connection.wait(WRITE_WAIT_SECONDS):
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
                self._fresh(force=True)
                fresh = not self.stale
                if not fresh:
                    raise StoreUnavailable("ZooKeeper is unreachable or has no quorum; nothing "
                                           "was written")
                continue
            if (reader.read or reader.generation_read or reader.listed) and not fresh:
                # a plan that read something runs on a cache verified current
                self._fresh(force=True)
                if self.stale:
                    continue
                fresh = True
                continue
            if not txn.ops and not txn.bump_generation and not txn.events:
                return result
            if not fresh and any(isinstance(op, Delete) and (op.kind, op.key) not in reader.read
                                 and op.key not in self._cache[op.kind] for op in txn.ops):
                # a blind delete of what the cache does not hold yet: look again, freshly
                self._fresh(force=True)
                fresh = not self.stale
                continue
            try:
                extra = extra_writes(result) if extra_writes is not None else ()
                self._commit(reader, txn, generation, extra)
                return result
            except WriteConflict as exc:
                log.debug("transaction conflict, retrying: %s", exc)
                self._fresh(force=True)
        raise StoreUnavailable(f"a transaction kept conflicting after {MAX_ATTEMPTS} attempts; "
                               "nothing was written")

    def _commit(self, reader: _Reader, txn: Any, generation: tuple[int, int],
                extra: Sequence[ExtraWrite] = ()) -> None:
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
        for event in txn.events:
            t.create(f"{self._path('events')}/e-", _dumps(event), sequence=True)
        for path, data, exists in extra:  # a node appearing/vanishing meanwhile: a conflict
            if data is None:
                t.delete(path)
            elif exists:
                t.set_data(path, data)
            else:
                t.create(path, data)
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
        seq = seq_of(results[-1].rsplit("/", 1)[1])
        self._own_seq = max(self._own_seq, seq)
        if seq % 100 == 0:
            self._prune_changes()

    def _prune_changes(self) -> None:
        try:
            with zk_errors("pruning change records"):
                children = sorted(self.client.get_children(self._path("changes")), key=seq_of)
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
        return [_loads(e[0]) for _, e in sorted(self._docs("apps"))]

    def get_deployment(self, deployment_id: str) -> Doc | None:
        return self._doc("deployments", deployment_id)

    def list_deployments(self, active_only: bool = True) -> list[Doc]:
        entries = sorted(self._docs("deployments"), key=lambda ke: (ke[1][2], ke[0]))
        return [_loads(e[0]) for _, e in entries if not active_only or e[3][0] == "running"]

    def pending_kill_requests(self) -> list[Doc]:
        entries = sorted(self._docs("kill_requests"), key=lambda ke: (ke[1][2], ke[0]))
        return [_loads(e[0]) for _, e in entries]

    def pending_delay_resets(self) -> list[Doc]:
        return sorted((_loads(e[0]) for _, e in self._docs("delay_resets")),
                      key=lambda d: int(d["seq"]))

    def desired_generation(self) -> int:
        self._fresh(force=True)  # how the scheduler notices API writes: always current
        return self._generation[0]

    def get_task(self, task_id: str) -> Doc | None:
        return self._doc("tasks", task_id)

    def list_tasks(self, app_id: str | None = None) -> list[Doc]:
        tasks = [_loads(e[0]) for _, e in self._docs("tasks") if app_id is None or e[3] == app_id]
        tasks.sort(key=lambda t: (t.get("stagedAt") or "", t.get("id") or ""))
        return tasks

    def get_app_status(self, app_id: str) -> Doc | None:
        return self._doc("app_status", app_id)

    def list_app_status(self) -> dict[str, Doc]:
        return {key: _loads(e[0]) for key, e in sorted(self._docs("app_status"))}

    def close(self) -> None:
        self._closed = True
        if self._own_client:
            self.client.stop()
            self.client.close()
