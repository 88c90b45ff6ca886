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
from typing import Any

from scheduler.state import StateError
from scheduler.zk import CALL_TIMEOUT, WRITE_WAIT_SECONDS, zk_errors
from scheduler.zk_events import seq_of

log = logging.getLogger("accessd.zk_state")

EVENTS_LOOKED_AT = 50  # the newest events searched for an append whose answer was lost


def commit_outcome(store: Any, write_id: str, after: int | None) -> bool | None:
    """True if the record of `write_id` exists (the write landed), False if it does not, None
    when that cannot be known. `after`: the newest change record known before the commit."""
    if not store._connected() and not store._connection.wait(WRITE_WAIT_SECONDS):
        return None
    client, changes = store.client, store._path("changes")
    try:
        with zk_errors("checking whether a write landed"):
            client.sync_async(store.root).get(timeout=CALL_TIMEOUT)
            seqs = sorted(seq_of(name) for name in client.get_children(changes))
            if after is None or (seqs and seqs[0] > after + 1):
                return None  # records we would have to look at are gone (or never known)
            pending = [client.get_async(f"{changes}/c-{seq:010d}") for seq in seqs
                       if seq > after]
            for result in pending:
                data, _ = result.get(timeout=CALL_TIMEOUT)
                if json.loads(data).get("w") == write_id:
                    log.warning("a write whose answer was lost had landed (write %s)", write_id)
                    return True
    except StateError as exc:
        log.warning("could not tell whether write %s landed: %s", write_id, exc)
        return None
    log.warning("a write whose answer was lost had not landed; retrying (write %s)", write_id)
    return False


def event_outcome(store: Any, data: bytes, first: int | None) -> tuple[bool | None, int]:
    """Whether the event `data` whose append's answer was lost is in the log: `(True, id)`,
    `(False, 0)` when it is not (nor can it be any more), `(None, 0)` when that cannot be
    known. `first`: the sequence number the append would have had at the earliest (the log's
    counter before it), None if not known."""
    if not store._connected() and not store._connection.wait(WRITE_WAIT_SECONDS):
        return None, 0
    client, events = store.client, store._path("events")
    try:
        with zk_errors("checking whether an event was stored"):
            # after the sync, a request sent on the dropped connection has landed or never will
            client.sync_async(store.root).get(timeout=CALL_TIMEOUT)
            seqs = sorted((seq_of(name) for name in client.get_children(events)), reverse=True)
            newest = ([seq for seq in seqs if seq >= first] if first is not None
                      else seqs[:EVENTS_LOOKED_AT])
            pending = [(seq, client.get_async(f"{events}/e-{seq:010d}")) for seq in newest]
            for seq, result in pending:
                if result.get(timeout=CALL_TIMEOUT)[0] == data:
                    log.warning("an event whose append's answer was lost had been stored "
                                "(event %d)", seq + 1)
                    return True, seq + 1
    except StateError as exc:
        log.warning("could not tell whether an event was stored: %s", exc)
        return None, 0
    if first is None and len(newest) == EVENTS_LOOKED_AT:
        log.warning("could not tell whether an event was stored: not among the newest %d, and "
                    "where the log stood before the append is not known", EVENTS_LOOKED_AT)
        return None, 0
    log.warning("an event whose append's answer was lost had not been stored; appending again")
    return False, 0
