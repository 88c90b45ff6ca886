"""A batch of Mesos status updates as one store transaction (pure: a plan for `transact`).

`plan_batch(reader, statuses, now, app_status)` applies every status in arrival order
(`taskstate.apply_status`) to the task documents of the snapshot, and returns the Transaction
that stores the outcome all at once — task documents put or deleted, the kill requests of
tasks that ended completed, a failure recorded in its app's status (backoff, `lastTaskFailure`,
consuming a pending delay reset), the events — and a `BatchOutcome` saying what the worker does
once that transaction is committed: acknowledge every status (in order), kill the active tasks
the store does not know, forget the tasks that left.

Why a batch: during a launch hundreds of updates arrive within a second; one transaction each
(and several per update before) made the store the bottleneck. The guarantee stays: nothing is
acknowledged before the transaction that holds it commits, so a scheduler that dies mid-batch
has acknowledged none of it and the agents re-send it; applying an update a second time changes
nothing (`apply_status` is idempotent for a repeated state: no second event).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from scheduler import backoff, reconcile, taskstate
from scheduler.spec import format_time, iso_now
from scheduler.state import Delete, Op, Put, Reader, Transaction

Doc = dict[str, Any]

MAX_BATCH = 1000  # updates in one transaction at most
# A launch's plain progress is logged as one line per state and batch, naming every task
# ("250 tasks TASK_RUNNING: a.1 a.2 ..."): a line per update was about a quarter of the
# worker's CPU in a launch of 500 (cProfile). Everything else keeps its own line, with its
# message.
GROUPED_STATES = frozenset({"TASK_STARTING", "TASK_RUNNING"})


@dataclass
class BatchOutcome:
    """What the worker does after the commit (all of it only then)."""
    acknowledge: list[Doc] = field(default_factory=list)   # every status, in arrival order
    kill_unknown: list[str] = field(default_factory=list)  # active tasks the store does not know
    ended: list[str] = field(default_factory=list)         # task ids that left the store
    log_lines: list[str] = field(default_factory=list)
    delayed: list[tuple[str, float, int]] = field(default_factory=list)  # app, delay, failures


def event_doc(event_type: str, payload: Doc, when: str) -> Doc:
    """The stored event: Marathon's payload with `eventType` and `timestamp`."""
    doc = dict(payload)
    doc["eventType"] = event_type
    doc.setdefault("timestamp", when)
    return doc


def plan_batch(reader: Reader, statuses: list[Doc], now: float,
               app_status: Callable[[str], Doc | None],
               spec_of: Callable[[Doc], Any]) -> tuple[Transaction, BatchOutcome]:
    """The transaction storing `statuses` (in order) and what to do after its commit.

    `app_status(app_id)` reads an app's runtime status (the scheduler is its only writer, so
    the stored one is current); `spec_of(app_doc)` parses an app document (None if invalid)."""
    out = BatchOutcome(acknowledge=list(statuses))
    docs: dict[str, Doc | None] = {}          # task id -> its document after the batch so far
    kills_done: list[str] = []
    app_docs: dict[str, tuple[Doc, Doc | None]] = {}  # app id -> (status, delay reset consumed)
    events: list[Doc] = []
    progress: dict[str, list[str]] = {}  # STARTING/RUNNING without a message: one line each
    when = iso_now()
    for status in statuses:
        task_id = taskstate.status_task_id(status)
        state = taskstate.normalise_state(str(status.get("state", "")))
        doc = docs[task_id] if task_id in docs else reader.task(task_id)
        if doc is None:
            if taskstate.is_active(state) and task_id not in out.kill_unknown:
                out.kill_unknown.append(task_id)
            continue
        new_doc, changes = taskstate.apply_status(doc, status, now)
        docs[task_id] = new_doc
        if new_doc is None:
            out.ended.append(task_id)
            if reader.kill_request(task_id) is not None:
                kills_done.append(task_id)
            _record_failure(reader, doc, state, status, now, app_status, spec_of, app_docs, out)
        events.extend(event_doc(kind, payload, when) for kind, payload in changes)
        if doc.get("state") != state or changes:
            if state in GROUPED_STATES and not status.get("message"):
                progress.setdefault(state, []).append(task_id)
                continue
            message = f" ({status['message']})" if status.get("message") else ""
            out.log_lines.append(f"task {task_id} {state}{message}")
    out.log_lines += [f"task {ids[0]} {state}" if len(ids) == 1 else
                      f"{len(ids)} tasks {state}: {' '.join(ids)}"
                      for state, ids in progress.items()]
    ops: list[Op] = [Put("tasks", tid, d) if d is not None else Delete("tasks", tid)
                     for tid, d in docs.items()]
    ops += [Delete("kill_requests", tid) for tid in kills_done]
    for app_id, (status_doc, reset) in app_docs.items():
        ops.append(Put("app_status", app_id, status_doc))
        if reset is not None:
            ops.append(Delete("delay_resets", app_id))
    return Transaction(tuple(ops), events=tuple(events)), out


def _record_failure(reader: Reader, doc: Doc, state: str, status: Doc, now: float,
                    app_status: Callable[[str], Doc | None], spec_of: Callable[[Doc], Any],
                    app_docs: dict[str, tuple[Doc, Doc | None]], out: BatchOutcome) -> None:
    """A terminal state that was not a requested kill counts against the app's backoff (the
    same rule as `framework.Worker._record_terminal`)."""
    if not taskstate.is_failure(doc, state):
        return
    app_id = doc.get("appId") or ""
    app_doc = reader.app(app_id)
    spec = spec_of(app_doc) if app_doc is not None else None
    if spec is None:
        return
    failure = {"appId": doc.get("appId"), "host": doc.get("host"),
               "message": status.get("message") or "", "state": state, "taskId": doc["id"],
               "timestamp": format_time(now), "version": doc.get("version"),
               "slaveId": doc.get("slaveId")}
    if spec.id in app_docs:
        status_doc, reset = app_docs[spec.id]
    else:
        status_doc = app_status(spec.id) or backoff.empty_status(spec.id, now)
        reset = reader.delay_reset(spec.id)
        if reset is not None:
            status_doc = backoff.apply_delay_reset(status_doc, reset, now)
    if doc.get("version") != reconcile.config_version(app_doc):
        status_doc = dict(status_doc, lastTaskFailure=failure, updatedAt=format_time(now))
    else:
        status_doc = backoff.record_failure(status_doc, spec, failure, now)
        out.delayed.append((spec.id, status_doc["delay"]["seconds"],
                            status_doc["consecutiveFailures"]))
    app_docs[spec.id] = (status_doc, reset)
