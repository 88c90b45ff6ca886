"""Marathon's unreachable strategy, pure: when a task whose agent cannot be reached (Mesos's
TASK_UNREACHABLE, or TASK_UNKNOWN: the master does not know it but it may still run) is
replaced, and when it is forgotten.

- `unreachable_strategy(app_doc)` reads the stored app document's `unreachableStrategy`:
  `{"inactiveAfterSeconds": i, "expungeAfterSeconds": e}`, the string `"disabled"` (never
  replaced, never forgotten: Marathon's choice for resident tasks), or absent (Marathon's
  default, `UnreachableEnabled`: 0 s and 0 s, i.e. replaced and forgotten at once). The API
  validates the field; here a malformed value falls back to the default, never raises.
- `verdict(task, strategy, now)`: REACHABLE (not unreachable), UNREACHABLE (counts as an
  instance: no replacement yet), INACTIVE (unreachable longer than `inactiveAfterSeconds`: a
  replacement is launched, the task is still expected back), EXPUNGE (longer than
  `expungeAfterSeconds`: forget it; it is killed if it ever comes back).
A task that comes back RUNNING before it is expunged counts again, and the app's surplus is
killed by its `killSelection` (reconcile.plan).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scheduler.spec import parse_time

Doc = dict[str, Any]

UNREACHABLE_STATES = frozenset({"TASK_UNREACHABLE", "TASK_UNKNOWN"})

REACHABLE = "reachable"
UNREACHABLE = "unreachable"
INACTIVE = "inactive"
EXPUNGE = "expunge"


@dataclass(frozen=True)
class UnreachableStrategy:
    inactive_after_seconds: float = 0.0
    expunge_after_seconds: float = 0.0
    enabled: bool = True  # False: Marathon's "disabled"


DEFAULT = UnreachableStrategy()


def unreachable_strategy(app_doc: Doc | None) -> UnreachableStrategy:
    raw = (app_doc or {}).get("unreachableStrategy")
    if raw == "disabled":
        return UnreachableStrategy(enabled=False)
    if not isinstance(raw, dict):
        return DEFAULT
    inactive = _seconds(raw.get("inactiveAfterSeconds"))
    expunge = _seconds(raw.get("expungeAfterSeconds"))
    if inactive is None or expunge is None or inactive > expunge:
        return DEFAULT
    return UnreachableStrategy(inactive, expunge)


def _seconds(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
        return None
    return float(v)


def unreachable_for(task: Doc, now: float) -> float | None:
    """Seconds the task has been unreachable, None if it is not."""
    if task.get("state") not in UNREACHABLE_STATES:
        return None
    since = task.get("unreachableSince")
    try:
        return max(0.0, now - parse_time(since)) if since else 0.0
    except ValueError:
        return 0.0


def verdict(task: Doc, strategy: UnreachableStrategy, now: float) -> str:
    age = unreachable_for(task, now)
    if age is None:
        return REACHABLE
    if not strategy.enabled:
        return UNREACHABLE
    if age >= strategy.expunge_after_seconds:
        return EXPUNGE
    if age >= strategy.inactive_after_seconds:
        return INACTIVE
    return UNREACHABLE
