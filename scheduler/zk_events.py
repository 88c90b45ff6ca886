"""The event log of the ZooKeeper state store: `events/e-<seq>` sequential nodes, the event id
being the sequence number + 1 (ids grow strictly and are never reused; 0 means "before all").

Appends are fenced like every other write of a leader (a check of its node in the same `multi`).
At most `EVENTS_KEPT` events stay: a child list comes back in one ZooKeeper packet (1 MB by
default), so the store prunes every 500 appends and caps any `prune_events(keep)`. Events are
immutable: each process caches the ones it read.
"""

from __future__ import annotations

import logging
from typing import Any

from scheduler.doc_codec import dumps_bytes, loads
from scheduler.state import Doc, StateError, StoreUnavailable
from scheduler.zk import CALL_TIMEOUT, WRITE_WAIT_SECONDS, transaction_failure, zk_errors

log = logging.getLogger("accessd.zk_state")

EVENTS_KEPT = 10_000


def seq_of(name: str) -> int:
    """The sequence number of a sequential node name (`e-0000000012` -> 12)."""
    return int(name[2:])


def _copy(doc: Doc) -> Doc:
    return loads(dumps_bytes(doc))


class ZkEventLog:
    """The event-log methods of `ZooKeeperStateStore` (which provides the client, the paths,
    the fence, the connection state and the `_events` cache)."""

    client: Any
    fence: str | None
    _events: dict[int, Doc]
    _connection: Any

    def append_event(self, event_type: str, payload: Doc) -> int:
        from scheduler.spec import iso_now

        doc = dict(payload)
        doc["eventType"] = event_type
        doc.setdefault("timestamp", iso_now())
        data = dumps_bytes(doc)
        for _attempt in range(2):
            if not self._connected() and not self._connection.wait(WRITE_WAIT_SECONDS):
                raise StoreUnavailable("ZooKeeper is unreachable or has no quorum; event not "
                                       "stored")
            t = self.client.transaction()
            fence_index = None
            if self.fence is not None:
                fence_index = 0
                t.check(self.fence, -1)
            t.create(f"{self._path('events')}/e-", data, sequence=True)
            # The log's sequence counter before the append (a session's requests are answered
            # in order): where to look for the event if the commit's answer is lost.
            counter = self.client.exists_async(self._path("events"))
            try:
                with zk_errors("appending an event"):
                    results = t.commit_async().get(timeout=CALL_TIMEOUT)
            except StoreUnavailable as exc:
                from scheduler.zk_outcome import event_outcome

                try:
                    stat = counter.get(timeout=CALL_TIMEOUT)
                except Exception:  # noqa: BLE001 - its answer was lost with the connection too
                    stat = None
                landed, event_id = event_outcome(self, data,
                                                 stat.cversion if stat is not None else None)
                if landed is None:
                    raise StoreUnavailable(
                        "ZooKeeper dropped the connection while an event was appended "
                        f"({type(exc.__cause__).__name__}); whether it was stored is not "
                        "known: read the event log before appending it again") from exc
                if landed:
                    break
                continue  # it was not stored: append it again
            failure = transaction_failure(results, fence_index)
            if failure is not None:
                raise failure
            event_id = seq_of(results[-1].rsplit("/", 1)[1]) + 1
            break
        else:
            raise StoreUnavailable("ZooKeeper dropped the connection twice while an event was "
                                   "appended; it was not stored")
        if event_id % 500 == 0:
            try:
                self.prune_events(EVENTS_KEPT)
            except StateError as exc:
                log.warning("could not prune the event log: %s", exc)
        return event_id

    def _event_ids(self) -> list[int]:
        """Event ids: the node's sequence number + 1 (ids start at 1; 0 means "before all")."""
        with zk_errors("listing events"):
            return sorted(seq_of(n) + 1 for n in self.client.get_children(self._path("events")))

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
                    self._events[i] = loads(result.get(timeout=CALL_TIMEOUT)[0])
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
        """Delete all but the newest `keep` events, and never keep more than EVENTS_KEPT (a
        child list is one ZooKeeper packet: 1 MB at most)."""
        ids = self._event_ids()
        doomed = ids[:max(0, len(ids) - min(EVENTS_KEPT, max(0, int(keep))))]
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
