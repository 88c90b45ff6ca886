"""ZooKeeper backend of the state store (`--state zk://h1:2181,h2:2181/accessd`), through kazoo.

Layout under the root (keys are URL-quoted, so `/g/c` is one node `%2Fg%2Fc`):

    generation             the desired generation (an integer, as text)
    meta/framework_id      {"value": id}
    apps/ deployments/ kill_requests/ delay_resets/ tasks/ app_status/   one JSON doc a node
    jobs/ job_status/ job_runs/ job_requests/    the jobs' documents (`scheduler.jobs.zk_jobs`)
    changes/c-<seq>        one per transaction: the keys it wrote (and the generation it made)
    events/e-<seq>         the event log; the id is the sequence number
    last_write             set by every transaction (its stat names the transaction's zxid)

Invariants:
- A transaction is one ZooKeeper `multi`: its puts and deletes, a version check of every
  document its plan read, the generation bump (a conditional `set_data`: every change of desired
  state serialises on that node, so no two API writers ever both win on the same snapshot), the
  change record and, for a fenced scheduler, a check of its leader node. All or nothing; a
  failed check re-runs the plan on a fresh snapshot (bounded retries), a failed fence is
  `NotLeader`, no connection is `StoreUnavailable`. A commit whose answer was lost is
  looked up by its write id once the connection is back (`scheduler.zk_outcome`): landed, it
  succeeds; not landed, it is retried; not knowable, StoreUnavailable says so.
- Reads come from a local cache of every document (`scheduler.zk_cache`). This process's own
  writes enter it from the `multi`'s results as it commits (no round trip); other writers'
  through a watch on `changes/` (each record names the keys to re-read). A read first asks
  ZooKeeper (sync + one `exists`) whether records appeared since the cache last caught up, and
  catches up if so: two round trips per read (the API: per request), never one per document,
  and a read sees every write committed before it began. With `session_reads` (the
  scheduler) a read asks nothing: its own writes are in, the watch brings the others' within
  moments, and `desired_generation()` is always current: the scheduler's view of the API's
  writes starts from that poll.
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

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

from scheduler.balancer_store import ZooKeeperBalancers
from scheduler.jobs.zk_jobs import ZkJobDocuments, ZkJobReader
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
    TaskRecord,
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
from scheduler.zk_cache import GENERATION, Key, ZkCache, _dumps, _loads
from scheduler.zk_events import ZkEventLog, seq_of
from scheduler.zk_outcome import commit_outcome
from scheduler.zk_versions import ExtraWrite, ZooKeeperAppVersions

log = logging.getLogger("accessd.zk_state")

# Every process lists changes/ on every change (its watch, then its catch-up): the listing's
# cost grows with the records kept (2,000: ~4.6 ms CPU per change per process; 300-400: well
# under 1 ms). A cache more than ~300 changes behind (a process cut off for a while) reloads.
CHANGES_KEPT = 300
MAX_ATTEMPTS = 20
LAST_WRITE = "last_write"  # set by every multi (see _commit)

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


class ZooKeeperStateStore(ZkCache, ZkJobDocuments, ZooKeeperAppVersions, ZooKeeperBalancers,
                          ZkEventLog, StateStore):
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
        self._init_cache()
        self._events: dict[int, Doc] = {}        # immutable: cached once read
        self._closed = False
        with zk_errors("creating the store's nodes"):
            for kind in (*KINDS, "changes", "events", LAST_WRITE, "app_versions"):
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

    # -- transactions --------------------------------------------------------------------------
    def transact(self, plan: Plan[T], *,
                 extra_writes: Callable[[T], Sequence[ExtraWrite]] | None = None) -> T:
        """`StateStore.transact`; `extra_writes(result)` names nodes outside the cached documents
        written in the same `multi` (a change's version history, `zk_versions`); it is called
        once per attempt, and its `committed(results)`, if it has one, gets what ZooKeeper
        answered for each of them (a ZnodeStat for a set_data) once the `multi` landed."""
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
                extra_results = self._commit(reader, txn, generation, extra)
                committed = getattr(extra_writes, "committed", None)
                if committed is not None:
                    committed(extra_results)
                return result
            except WriteConflict as exc:
                log.debug("transaction conflict, retrying: %s", exc)
                self._fresh(force=True)
        raise StoreUnavailable(f"a transaction kept conflicting after {MAX_ATTEMPTS} attempts; "
                               "nothing was written")

    def _commit(self, reader: _Reader, txn: Any, generation: tuple[int, int],
                extra: Sequence[ExtraWrite] = ()) -> list:
        """The `multi`; returns ZooKeeper's results of the `extra` writes."""
        t = self.client.transaction()
        fence_index = None
        if self.fence is not None:
            fence_index = 0
            t.check(self.fence, -1)
        written: dict[Key, None] = {}
        puts: list[tuple[Key, bytes, int | None]] = []  # (key, data, its set_data's index)
        deletes: list[Key] = []
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
                data = _dumps(op.doc)
                puts.append((k, data, len(t.operations) if exists else None))
                if exists:
                    t.set_data(path, data, version)
                else:
                    t.create(path, data)
            elif isinstance(op, Delete) and exists:
                deletes.append(k)
                t.delete(path, version)
        for k, version in reader.read.items():
            if k not in written and version is not None:
                t.check(self._path(*k), version)
        for event in txn.events:
            t.create(f"{self._path('events')}/e-", _dumps(event), sequence=True)
        first_extra = len(t.operations)
        for path, data, exists in extra:  # a node appearing/vanishing meanwhile: a conflict
            if data is None:
                t.delete(path)
            elif exists:
                t.set_data(path, data)
            else:
                t.create(path, data)
        write_id = uuid.uuid4().hex  # how a commit whose answer is lost is found (zk_outcome)
        record: Doc = {"keys": [list(k) for k in written], "w": write_id}
        if txn.bump_generation:
            t.set_data(self._path(GENERATION), str(generation[0] + 1).encode(), generation[1])
            record["gen"] = [generation[0] + 1, generation[1] + 1]
        elif reader.generation_read:
            t.check(self._path(GENERATION), generation[1])
        # an unconditional write whose stat tells the multi's zxid (what a create returns
        # is only its path): the created documents' czxid/mzxid in the cache
        t.set_data(self._path(LAST_WRITE), b"")
        t.create(f"{self._path('changes')}/c-", _dumps(record), sequence=True)
        known = self._applied
        try:
            with zk_errors("committing a transaction"):
                results = t.commit_async().get(timeout=CALL_TIMEOUT)
        except StoreUnavailable as exc:
            landed = commit_outcome(self, write_id, known)
            if landed is None:
                raise StoreUnavailable(
                    "ZooKeeper dropped the connection during the commit "
                    f"({type(exc.__cause__).__name__}); whether the "
                    f"change was written is not known (write {write_id}): read it back before "
                    "trying again") from exc
            if not landed:
                raise WriteConflict("the connection dropped before the commit landed") from exc
            self._fresh(force=True)  # it landed: into the cache like another writer's change
            return []
        failure = transaction_failure(results, fence_index)
        if failure is not None:
            raise failure
        seq = seq_of(results[-1].rsplit("/", 1)[1])
        self._apply_own([(k, data, None if i is None else results[i]) for k, data, i in puts],
                        deletes, results[-2].mzxid,
                        (generation[0] + 1, generation[1] + 1) if txn.bump_generation else None,
                        seq)
        if seq >= CHANGES_KEPT and seq % 100 == 0:  # nothing to prune before
            self._prune_changes()
        return results[first_extra:first_extra + len(extra)]

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
        return [_loads(e[0]) for _, e in self._task_entries(app_id)]

    def task_records(self, app_id: str | None = None) -> list[TaskRecord]:
        """`StateStore.task_records`: the revision is (creation zxid, data version), which a
        delete and re-create changes too."""
        return [(k, e[3][0], (e[2], e[1]), e[0]) for k, e in self._task_entries(app_id)]

    def get_app_status(self, app_id: str) -> Doc | None:
        return self._doc("app_status", app_id)

    def list_app_status(self) -> dict[str, Doc]:
        return {key: _loads(e[0]) for key, e in sorted(self._docs("app_status"))}

    def close(self) -> None:
        self._closed = True
        if self._own_client:
            self.client.stop()
            self.client.close()
