"""Marathon placement constraints over `hostname` or any agent attribute.

`check(constraint, candidate, placed)` answers "may one more task of the app go on this agent?",
given the agents of the app's tasks already placed (running, plus those placed earlier in the same
placement round). Semantics follow Marathon's Constraints:

- the field value is the agent's hostname for `hostname`, else the attribute's string form
  (see `scheduler.resources.attribute_value`); an agent without the attribute meets only UNLIKE;
- UNIQUE: no placed task has the candidate's value;
- CLUSTER: with a value, the candidate's value equals it; without one (and always for hostname)
  every placed task has the candidate's value;
- GROUP_BY [n]: placed tasks are grouped by value (tasks without the attribute form one group);
  a value not yet seen is always fine; a seen value is fine only when at least n groups exist and
  its group is (one of) the smallest; so tasks spread evenly, over at least n groups if n is given;
- MAX_PER n: fewer than n placed tasks have the candidate's value;
- LIKE / UNLIKE re: the value (full match) does / does not match the regex (RE2, linear time:
  `scheduler.constraint_regex`);
- IS v: the value equals v (numerically for SCALAR attributes, so "2" IS "2.0").

A violated constraint is named `"constraint <field> <OPERATOR>"`, the reason the scheduler shows.
`Tally` is the incremental form `scheduler.placement` uses (O(1) per check for counting operators);
`check` is defined through it, so the two cannot disagree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scheduler.constraint_regex import full_match

OPERATORS = ("UNIQUE", "CLUSTER", "GROUP_BY", "LIKE", "UNLIKE", "MAX_PER", "IS")
# Operators whose verdict can only turn from met to not met as more tasks are placed.
MONOTONE = frozenset({"UNIQUE", "CLUSTER", "LIKE", "UNLIKE", "MAX_PER", "IS"})
_MISSING = object()  # the group of placed tasks that lack the attribute (Marathon's None group)


@dataclass(frozen=True)
class Rule:
    """A constraint in the shape this module needs; `scheduler.spec.Constraint` has it too."""

    field: str
    operator: str
    value: str | None = None


def as_rule(constraint: Any) -> Rule:
    """Accept a spec Constraint (field/operator/value) or Marathon JSON `[field, OP, value?]`."""
    if isinstance(constraint, Rule):
        return constraint
    if isinstance(constraint, Sequence) and not isinstance(constraint, str):
        parts = list(constraint)
        return Rule(str(parts[0]), str(parts[1]).upper(),
                    None if len(parts) < 3 or parts[2] is None else str(parts[2]))
    value = getattr(constraint, "value", None)
    return Rule(constraint.field, str(constraint.operator).upper(),
                None if value is None else str(value))


def reason(constraint: Any) -> str:
    r = as_rule(constraint)
    return f"constraint {r.field} {r.operator}"


def field_value(field: str, hostname: str, attributes: Mapping[str, str]) -> str | None:
    """The value a constraint on `field` sees for an agent; None when it lacks the attribute."""
    if field == "hostname":
        return hostname
    v = attributes.get(field)
    return None if v is None else str(v)


def _int_value(value: str | None, default: int) -> int:
    if value is None or value == "":
        return default
    if value == "inf":
        return 2**31 - 1
    try:
        return int(value)
    except ValueError:
        return default


def _same(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return float(a) == float(b)
    except ValueError:
        return False


class _Groups:
    """Placed tasks counted by field value, with the size of the smallest group kept current."""

    __slots__ = ("counts", "sizes", "min_size")

    def __init__(self) -> None:
        self.counts: Counter[Any] = Counter()
        self.sizes: Counter[int] = Counter()   # group size -> how many groups have it
        self.min_size = 0

    def add(self, key: Any) -> None:
        c = self.counts[key]
        self.counts[key] = c + 1
        if c:
            self.sizes[c] -= 1
            if not self.sizes[c]:
                del self.sizes[c]
        self.sizes[c + 1] += 1
        self.min_size = min(self.sizes)

    def __len__(self) -> int:
        return len(self.counts)


class Tally:
    """The placed tasks of one app, counted per constraint field. Add tasks as they are placed."""

    def __init__(self, constraints: Iterable[Any],
                 placed: Iterable[tuple[str, Mapping[str, str]]] = ()) -> None:
        self.rules = tuple(as_rule(c) for c in constraints)
        self.fields = tuple(sorted({r.field for r in self.rules}))
        self.groups = {f: _Groups() for f in self.fields}
        self.total = 0
        for hostname, attributes in placed:
            self.add(hostname, attributes)

    def add(self, hostname: str, attributes: Mapping[str, str]) -> None:
        self.total += 1
        for f in self.fields:
            v = field_value(f, hostname, attributes)
            self.groups[f].add(_MISSING if v is None else v)

    def count(self, field: str, value: str) -> int:
        """How many placed tasks have `value` for `field` (0 for untracked fields)."""
        g = self.groups.get(field)
        return g.counts.get(value, 0) if g else 0

    def violated(self, hostname: str, attributes: Mapping[str, str]) -> Rule | None:
        """The first rule (in definition order) a task on this agent would break, else None."""
        for r in self.rules:
            if not self.meets(r, hostname, attributes):
                return r
        return None

    def meets(self, r: Rule, hostname: str, attributes: Mapping[str, str]) -> bool:
        v = field_value(r.field, hostname, attributes)
        op = r.operator
        if v is None:
            return op == "UNLIKE"
        g = self.groups[r.field]
        if op == "UNIQUE":
            return v not in g.counts
        if op == "CLUSTER":
            if r.value:
                if not _same(v, r.value):
                    return False
                # Marathon: an attribute CLUSTER with a value checks the value only
                return r.field != "hostname" or g.counts.get(v, 0) == self.total
            return g.counts.get(v, 0) == self.total
        if op == "GROUP_BY":
            c = g.counts.get(v, 0)
            if not c:
                return True
            return len(g) >= _int_value(r.value, 0) and c == g.min_size
        if op == "MAX_PER":
            return g.counts.get(v, 0) < _int_value(r.value, 0)
        if op == "LIKE":
            return bool(r.value) and full_match(r.value, v) is True
        if op == "UNLIKE":
            return bool(r.value) and full_match(r.value, v) is False
        if op == "IS":
            return r.value is not None and _same(v, r.value)
        return False  # an operator we do not know is never met


def check(constraint: Any, candidate: Any,
          placed: Sequence[tuple[str, Mapping[str, str]]]) -> str | None:
    """None when one more task on `candidate` (an OfferView, or anything with `hostname` and
    `attributes`) meets `constraint`, given the app's `placed` (hostname, attributes) pairs;
    else the named reason, e.g. `"constraint hostname UNIQUE"`."""
    r = as_rule(constraint)
    t = Tally([r], placed)
    return None if t.meets(r, candidate.hostname, candidate.attributes) else reason(r)


def check_all(constraints: Iterable[Any], candidate: Any,
              placed: Sequence[tuple[str, Mapping[str, str]]]) -> str | None:
    """The reason of the first constraint not met, or None when all are met."""
    t = Tally(constraints, placed)
    r = t.violated(candidate.hostname, candidate.attributes)
    return None if r is None else reason(r)
