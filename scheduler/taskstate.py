"""The task state machine: what a Mesos `TaskStatus` does to our task document.

Pure: `apply_status(task_doc, status, now)` returns the new document (or None once the task is
terminal, because the store keeps live tasks only) and the Marathon events to append.

Invariants:
- every Mesos task state is classified exactly once: *active* (the task may still run or hold
  resources: STAGING, STARTING, RUNNING, KILLING), *unreachable* (UNREACHABLE: its agent cannot
  be reached; UNKNOWN: the master does not know it; either way it may still run, as Mesos
  defines them for PARTITION_AWARE frameworks) or *terminal* (everything else, GONE and
  GONE_BY_OPERATOR included: the task is known not to run). An unreachable task keeps its
  document, with `unreachableSince`; the app's unreachable strategy decides when it is
  replaced and when forgotten (`scheduler.unreachable`, applied by `reconcile.plan`);
- *lost-like* states (LOST, DROPPED, UNREACHABLE, GONE, GONE_BY_OPERATOR, UNKNOWN) mean the task
  vanished with its agent or was never started, not that it exited;
- `startedAt` is set by the first TASK_RUNNING and never changes afterwards;
- `healthy` only changes when a status carries the `healthy` field (the executor sends it only
  when its verdict changes); a status without it keeps what we knew. Leaving RUNNING clears it.
"""

from __future__ import annotations

from typing import Any

from scheduler.spec import format_time

Doc = dict[str, Any]

STAGING = "TASK_STAGING"
STARTING = "TASK_STARTING"
RUNNING = "TASK_RUNNING"
KILLING = "TASK_KILLING"
FINISHED = "TASK_FINISHED"
FAILED = "TASK_FAILED"
KILLED = "TASK_KILLED"
ERROR = "TASK_ERROR"
LOST = "TASK_LOST"
DROPPED = "TASK_DROPPED"
UNREACHABLE = "TASK_UNREACHABLE"
GONE = "TASK_GONE"
GONE_BY_OPERATOR = "TASK_GONE_BY_OPERATOR"
UNKNOWN = "TASK_UNKNOWN"

ACTIVE_STATES = frozenset({STAGING, STARTING, RUNNING, KILLING})
UNREACHABLE_STATES = frozenset({UNREACHABLE, UNKNOWN})
LOST_LIKE_STATES = frozenset({LOST, DROPPED, UNREACHABLE, GONE, GONE_BY_OPERATOR, UNKNOWN})
TERMINAL_STATES = frozenset({FINISHED, FAILED, KILLED, ERROR}) | (LOST_LIKE_STATES
                                                                  - UNREACHABLE_STATES)
ALL_STATES = ACTIVE_STATES | UNREACHABLE_STATES | TERMINAL_STATES


def normalise_state(state: str) -> str:
    """Accept `RUNNING` as well as `TASK_RUNNING`; unknown names map to TASK_UNKNOWN."""
    name = state if state.startswith("TASK_") else f"TASK_{state}"
    return name if name in ALL_STATES else UNKNOWN


def is_active(state: str) -> bool:
    return normalise_state(state) in ACTIVE_STATES


def is_terminal(state: str) -> bool:
    return normalise_state(state) in TERMINAL_STATES


def is_unreachable(state: str) -> bool:
    return normalise_state(state) in UNREACHABLE_STATES


def is_lost_like(state: str) -> bool:
    return normalise_state(state) in LOST_LIKE_STATES


def is_failure(task_doc: Doc, state: str) -> bool:
    """Does this terminal state count against the app's launch backoff?

    A long-running service that stops on its own failed, whatever its exit code (FINISHED
    included); a task that vanished with its agent did too. Only a kill the scheduler asked for
    is not a failure (unhealthy kills are counted when they are decided, see `framework`).
    """
    state = normalise_state(state)
    if state not in TERMINAL_STATES | UNREACHABLE_STATES:  # unreachable: counted when expunged
        return False
    if task_doc.get("killRequested") and state in (KILLED, FINISHED, FAILED, *UNREACHABLE_STATES):
        return False  # the end we asked for (unreachable: expunged, it cannot answer a kill)
    return True


def status_task_id(status: Doc) -> str:
    return status["task_id"]["value"]


def _labels(status: Doc) -> dict[str, str]:
    labels = (status.get("labels") or {}).get("labels") or []
    return {item.get("key"): item.get("value") for item in labels if isinstance(item, dict)}


def _health_result(task_doc: Doc, healthy: bool, message: str | None, labels: dict[str, str],
                   when: str) -> Doc:
    previous = (task_doc.get("healthCheckResults") or [{}])[0]
    result: Doc = {
        "taskId": task_doc["id"],
        "alive": healthy,
        "consecutiveFailures": previous.get("consecutiveFailures", 0),
        "firstSuccess": previous.get("firstSuccess"),
        "lastSuccess": previous.get("lastSuccess"),
        "lastFailure": previous.get("lastFailure"),
        "lastFailureCause": previous.get("lastFailureCause"),
    }
    if healthy:
        result["consecutiveFailures"] = 0
        result["lastSuccess"] = when
        result["firstSuccess"] = result["firstSuccess"] or when
    else:
        try:
            failures = int(labels.get("consecutiveFailures", ""))
        except ValueError:
            failures = int(result["consecutiveFailures"] or 0) + 1
        result["consecutiveFailures"] = failures
        result["lastFailure"] = when
        result["lastFailureCause"] = message
    return result


def status_update_event(task_doc: Doc, state: str, message: str | None) -> Doc:
    """Marathon's `status_update_event` payload for a task in `state`."""
    return {
        "slaveId": task_doc.get("slaveId"),
        "taskId": task_doc["id"],
        "taskStatus": state,
        "message": message or "",
        "appId": task_doc.get("appId"),
        "host": task_doc.get("host"),
        "ipAddresses": task_doc.get("ipAddresses") or [],
        "ports": task_doc.get("ports") or [],
        "version": task_doc.get("version"),
    }


def apply_status(task_doc: Doc, status: Doc, now: float) -> tuple[Doc | None, list[tuple[str, Doc]]]:
    """Apply one Mesos `TaskStatus` (v1 JSON) to a task document.

    Returns `(new_doc, events)`: `new_doc` is None when the task reached a terminal state;
    `events` are `(event_type, payload)` pairs in the order they happened.
    """
    state = normalise_state(str(status.get("state", UNKNOWN)))
    when = format_time(now)
    # Only top-level fields are set or removed below, so a shallow copy keeps `task_doc` as it
    # was (nested values are shared, and changed by neither); copy.deepcopy of a task document
    # was 80% of a status batch's CPU.
    doc = dict(task_doc)
    events: list[tuple[str, Doc]] = []
    message = status.get("message")
    state_changed = doc.get("state") != state

    doc["state"] = state
    doc["message"] = message if message is not None else doc.get("message")
    doc["reason"] = status.get("reason", doc.get("reason"))
    agent = (status.get("agent_id") or {}).get("value")
    if agent and not doc.get("agentId"):
        doc["agentId"] = doc["slaveId"] = agent
    if state == RUNNING and not doc.get("startedAt"):
        doc["startedAt"] = when

    if state_changed:
        events.append(("status_update_event", status_update_event(doc, state, message)))

    if state in TERMINAL_STATES:
        return None, events
    if state in UNREACHABLE_STATES:
        doc["unreachableSince"] = doc.get("unreachableSince") or when
        doc["healthy"] = None
        return doc, events
    doc.pop("unreachableSince", None)  # back (REASON_AGENT_REREGISTERED, or reconciled)

    if state != RUNNING:
        doc["healthy"] = None if state in (STAGING, STARTING) else doc.get("healthy")
    elif "healthy" in status:
        healthy = bool(status["healthy"])
        was = doc.get("healthy")
        doc["healthy"] = healthy
        doc["healthCheckResults"] = [_health_result(doc, healthy, message, _labels(status), when)]
        if was is not healthy:
            events.append(("health_status_changed_event", {
                "appId": doc.get("appId"), "taskId": doc["id"], "instanceId": doc["id"],
                "version": doc.get("version"), "alive": healthy,
            }))
    return doc, events
