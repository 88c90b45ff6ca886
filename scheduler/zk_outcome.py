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
"""

from __future__ import annotations

import json
import logging
from typing import Any

from scheduler.state import StateError
from scheduler.zk import CALL_TIMEOUT, WRITE_WAIT_SECONDS, zk_errors
from scheduler.zk_events import seq_of

log = logging.getLogger("accessd.zk_state")


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
