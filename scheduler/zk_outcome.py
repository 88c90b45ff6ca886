"""Whether a `multi` whose answer was lost (the connection dropped mid-commit) landed.

Every transaction of the ZooKeeper store writes a change record carrying a random write id
(`changes/c-<seq>`, `{"w": id, ...}`). When the commit's answer never comes, the store waits for
the connection to come back, syncs (so the server it now talks to has every committed write,
including a proposal the old connection sent), and looks for its write id among the records
newer than the newest it had applied before committing:

- found: the change landed, and the caller answers as for any successful write;
- not found: it did not land (nor can it any more), and the transaction is simply retried;
- no connection within the wait, or the records to look at were pruned meanwhile: the outcome is
  unknown, and the caller gets `StoreUnavailable` saying so, with the write id.

A lone event append (`append_event`) writes no change record: `event_outcome` looks, the same
way, for its exact bytes (an event carries its timestamp to the millisecond, so an equal one is
this one) among the events numbered from the log's sequence counter as it was just before the
append (asked in the same breath). Not there: it did not land. Without that counter (its answer
was lost too) only the newest `EVENTS_LOOKED_AT` events are searched, and not finding it there
leaves the outcome unknown.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from scheduler.state import StateError
from scheduler.zk import CALL_TIMEOUT, WRITE_WAIT_SECONDS, zk_errors
from scheduler.zk_events import seq_of

log = logging.getLogger("accessd.zk_state")

EVENTS_LOOKED_AT = 50  # the newest events searched for an append whose answer was lost


def _synced_seqs(store: Any, kind: str) -> list[int] | None:
    """The sequence numbers under `kind`, newest first, once the connection is back and synced
    (a request sent on the dropped connection has then landed or never will); None when the
    connection does not come back in time. ZooKeeper's failures raise (`zk_errors`)."""
    if not store._connected() and not store._connection.wait(WRITE_WAIT_SECONDS):
        return None
    store.client.sync_async(store.root).get(timeout=CALL_TIMEOUT)
    return sorted((seq_of(name) for name in store.client.get_children(store._path(kind))),
                  reverse=True)


def _first_match(store: Any, kind: str, prefix: str, seqs: list[int],
                 matches: Callable[[bytes], bool]) -> int | None:
    """The first of the `<kind>/<prefix>-<seq>` nodes (read at once, in `seqs` order) whose data
    `matches`; None if none does."""
    path = store._path(kind)
    pending = [(seq, store.client.get_async(f"{path}/{prefix}-{seq:010d}")) for seq in seqs]
    for seq, result in pending:
        if matches(result.get(timeout=CALL_TIMEOUT)[0]):
            return seq
    return None


def commit_outcome(store: Any, write_id: str, after: int | None) -> bool | None:
    """True if the record of `write_id` exists (the write landed), False if it does not, None
    when that cannot be known. `after`: the newest change record known before the commit."""
    try:
        with zk_errors("checking whether a write landed"):
            seqs = _synced_seqs(store, "changes")
            if seqs is None:
                return None
            if after is None or (seqs and seqs[-1] > after + 1):
                return None  # records we would have to look at are gone (or never known)
            found = _first_match(store, "changes", "c", sorted(s for s in seqs if s > after),
                                 lambda data: json.loads(data).get("w") == write_id)
    except StateError as exc:
        log.warning("could not tell whether write %s landed: %s", write_id, exc)
        return None
    if found is not None:
        log.warning("a write whose answer was lost had landed (write %s)", write_id)
        return True
    log.warning("a write whose answer was lost had not landed; retrying (write %s)", write_id)
    return False


def event_outcome(store: Any, data: bytes, first: int | None) -> tuple[bool | None, int]:
    """Whether the event `data` whose append's answer was lost is in the log: `(True, id)`,
    `(False, 0)` when it is not (nor can it be any more), `(None, 0)` when that cannot be
    known. `first`: the sequence number the append would have had at the earliest (the log's
    counter before it), None if not known."""
    try:
        with zk_errors("checking whether an event was stored"):
            seqs = _synced_seqs(store, "events")
            if seqs is None:
                return None, 0
            looked_at = ([seq for seq in seqs if seq >= first] if first is not None
                         else seqs[:EVENTS_LOOKED_AT])
            found = _first_match(store, "events", "e", looked_at, lambda stored: stored == data)
    except StateError as exc:
        log.warning("could not tell whether an event was stored: %s", exc)
        return None, 0
    if found is not None:
        log.warning("an event whose append's answer was lost had been stored (event %d)",
                    found + 1)
        return True, found + 1
    if first is None and len(looked_at) == EVENTS_LOOKED_AT:
        log.warning("could not tell whether an event was stored: not among the newest %d, and "
                    "where the log stood before the append is not known", EVENTS_LOOKED_AT)
        return None, 0
    log.warning("an event whose append's answer was lost had not been stored; appending again")
    return False, 0
