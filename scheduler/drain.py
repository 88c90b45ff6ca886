"""The drain contract, pure: which kills wait for the load balancers, and until when.

Before the scheduler kills a task for a scale-down, a rolling replacement or an operator kill,
while at least one load balancer is registered (`scheduler.balancer_store`, lease not run
out), it marks the task as leaving (`leaving: {"since", "reason", "deadline"}` on the task
document, an `embed=accessd` extra, and a `task_leaving_event`) instead of killing it. Each
balancer takes the task out of rotation, waits for its in-flight requests and lists it in its
registration's `drained`. The kill goes out once every live balancer has drained it, or at the
deadline (`drain_timeout` after the mark), or at once when no balancer is left — a missing
balancer never holds a deployment for more than the timeout.

Kills that gain nothing from a drain are not delayed: an unhealthy task (out of rotation
already: balancers only route to healthy tasks), an expunged one, the tasks of a deleted app.
"""

from __future__ import annotations

from typing import Any

from scheduler.spec import format_time, parse_time

Doc = dict[str, Any]

DEFAULT_TIMEOUT_SECONDS = 5.0
DRAINED_REASONS = ("operator kill request", "scale down", "replaced by a new version")


def live_balancers(balancers: list[Doc], now: float) -> list[Doc]:
    """Registrations whose lease has not run out at `now`."""
    out = []
    for doc in balancers:
        try:
            if parse_time(doc.get("expiresAt") or "") > now:
                out.append(doc)
        except (TypeError, ValueError):
            continue
    return out


def drainable(reason: str, failure: bool, expunge: bool) -> bool:
    """Whether a kill for `reason` waits for the balancers (when any is registered)."""
    return not failure and not expunge and reason in DRAINED_REASONS


def leaving_mark(reason: str, now: float, timeout: float) -> Doc:
    return {"since": format_time(now), "reason": reason, "deadline": format_time(now + timeout)}


def release(task: Doc, balancers: list[Doc], now: float) -> str | None:
    """Why a leaving task may be killed now (`drained by …`, `drain deadline`, `no balancer`),
    or None while it must wait. A task not marked leaving may always be killed."""
    mark = task.get("leaving")
    if mark is None:
        return "not draining"
    live = live_balancers(balancers, now)
    if not live:
        return "no balancer"
    if all(task.get("id") in (b.get("drained") or ()) for b in live):
        return "drained by " + ", ".join(str(b.get("name")) for b in live)
    try:
        deadline = parse_time(mark.get("deadline") or "")
    except (TypeError, ValueError):
        return "drain deadline"
    return "drain deadline" if now >= deadline else None
