"""Placement: offers × waiting demand → launches, declines and named reasons for what did not fit.

`place()` is pure: offers (Mesos JSON dicts or OfferViews), launch requests and the live task
documents go in; a `PlacementResult` comes out. Invariants:

- an offer is never over-committed: every launch is carved out of what is left of its offer
  (`scheduler.resources.take`), so several tasks may share one offer but never more than it holds;
- every offer is either used by at least one launch or listed in `decline_offer_ids`, never both;
- a launch never breaks one of its app's constraints, checked against the app's live tasks
  (`running`) and the launches placed earlier in the same call;
- `running` counts for constraints and spreading only; its resources are already absent from the
  offers;
- the result is a function of the inputs: requests are served in the order given (requests for the
  same app are merged at the first one's position), and offers are chosen by a total order.

Choosing an offer for one task of an app (strategy "spread", the default): among the offers that
fit and meet the constraints, prefer the offer whose GROUP_BY groups hold the fewest of the app's
tasks, then the agent with the fewest tasks of the app, then the most free cpus, then mem, then a
fixed pseudo-random order of agents (a hash of the agent id, then the id itself): ties are common
(an empty cluster is all ties) and breaking them by id would fill the agents whose ids sort first,
usually one rack, before the others. Strategy "pack" replaces "most free" by "least free" (best
fit), which fills agents before opening new ones. Candidates sit in a heap whose keys only ever
get worse while an app is being placed (counts grow; the one offer that changes is re-pushed), so
a popped entry whose key is still current is the true best: each task costs O(log offers)
instead of a scan over all offers. An offer refused for resources or by a constraint that can
only stay refused as tasks are added (all but GROUP_BY) leaves the heap for that app; one refused
by GROUP_BY is set aside and comes back after the app's next placement. Why a task stayed
unplaced: `most_telling`.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from scheduler.constraints import MONOTONE, Tally, field_value, reason
from scheduler.resources import OfferView, demand_of, parse_offer, shortfall, take

if TYPE_CHECKING:
    from scheduler.spec import AppSpec

NO_OFFERS = "no offers"
STRATEGIES = ("spread", "pack")


@dataclass(frozen=True)
class LaunchRequest:
    app: AppSpec
    count: int


@dataclass(frozen=True)
class Launch:
    offer_id: str
    agent_id: str
    hostname: str
    attributes: dict[str, str]
    app_id: str
    resources: list[dict]  # Mesos Resource JSON for the TaskInfo
    ports: list[int]       # host ports, in port-definition order


@dataclass(frozen=True)
class Unplaced:
    count: int
    reason: str


@dataclass(frozen=True)
class OfferDecision:
    """What placement did with one offer: tasks launched on it, and how many times it weighed it."""

    launched: int
    evaluations: int
    reason: str | None  # declined: the last reason a task was refused on it (None: never asked)


@dataclass
class PlacementResult:
    launches: list[Launch]
    decline_offer_ids: list[str]
    unplaced: dict[str, Unplaced]
    decisions: dict[str, OfferDecision] = field(default_factory=dict)

    @property
    def evaluations(self) -> int:
        return sum(d.evaluations for d in self.decisions.values())


def _reason_rank(r: str) -> tuple[int, str]:
    # Ties between equally common reasons: a constraint says more than a shortage, cpus before mem.
    order = ("constraint", "insufficient cpus", "insufficient mem", "insufficient disk",
             "insufficient", "port", "no free ports")
    for i, prefix in enumerate(order):
        if r.startswith(prefix):
            return (i, r)
    return (len(order), r)


def most_telling(reasons: Iterable[str]) -> str:
    """One reason for a task nobody took, from each offer's reason for refusing it.

    Offers are checked for resources before constraints, so a constraint reason means that
    offer had room: if any offer had room but a constraint refused it, the constraint is what
    holds the task back and the most common constraint reason is given; otherwise the most
    common shortage. Ties: constraints first, then cpus, mem, disk, ports.
    """
    counts = Counter(reasons)
    if not counts:
        return NO_OFFERS
    constrained = [r for r in counts if r.startswith("constraint ")]
    pool = constrained or list(counts)
    return min(pool, key=lambda r: (-counts[r], _reason_rank(r)))


def agent_order(agent_id: str) -> bytes:
    """A fixed pseudo-random rank of an agent, for breaking ties between equally good offers.
    A real hash: crc32 is linear and ranks ids that share a prefix (one rack, often) together."""
    return hashlib.blake2b(agent_id.encode(), digest_size=8).digest()


def _agent_of(task: Mapping[str, Any]) -> str:
    return str(task.get("agentId") or task.get("slaveId") or "")


def place(offers: Sequence[Mapping[str, Any] | OfferView], requests: Sequence[LaunchRequest],
          running: Sequence[Mapping[str, Any]], *, role: str = "*", now: float | None = None,
          strategy: str = "spread") -> PlacementResult:
    """Place up to `count` tasks of each request on `offers`. See the module docstring.

    `role` is the framework's role: an app may use resources of role `*` and of its own role
    (`app.role`, defaulting to `role`). `now` is accepted for callers that pass the clock; no
    decision depends on it yet.
    """
    del now
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    views: list[OfferView] = []
    seen_ids: set[str] = set()
    for o in offers:
        v = o if isinstance(o, OfferView) else parse_offer(o)
        if v.id in seen_ids:  # the same offer twice: use it once
            continue
        seen_ids.add(v.id)
        views.append(v)

    # Merge requests per app, keeping the first request's position and spec.
    wanted: dict[str, list[Any]] = {}
    for req in requests:
        if req.count <= 0:
            continue
        slot = wanted.setdefault(req.app.id, [req.app, 0])
        slot[1] += req.count

    by_app: dict[str, list[Mapping[str, Any]]] = {app_id: [] for app_id in wanted}
    for t in running:
        bucket = by_app.get(t.get("appId"))
        if bucket is not None:
            bucket.append(t)

    n = len(views)
    shuffle = [agent_order(v.agent_id) for v in views]
    launched = [0] * n
    evaluations = [0] * n
    last_reason: list[str | None] = [None] * n
    launches: list[Launch] = []
    unplaced: dict[str, Unplaced] = {}
    sign = 1.0 if strategy == "pack" else -1.0

    for app_id, (app, count) in wanted.items():
        if not views:
            unplaced[app_id] = Unplaced(count, NO_OFFERS)
            continue
        remaining, app_reason = _place_app(app, count, by_app[app_id], views, shuffle, launched,
                                           evaluations, launches, app_roles(app, role), sign)
        if remaining:
            unplaced[app_id] = Unplaced(remaining, most_telling(app_reason.values()))
        for i, r in app_reason.items():
            last_reason[i] = r

    decisions = {v.id: OfferDecision(launched[i], evaluations[i],
                                     None if launched[i] else last_reason[i])
                 for i, v in enumerate(views)}
    declines = [v.id for i, v in enumerate(views) if not launched[i]]
    return PlacementResult(launches, declines, unplaced, decisions)


def app_roles(app: AppSpec, framework_role: str) -> frozenset[str]:
    """The roles whose resources a task of `app` may take: `*` and its own role (the
    framework's by default), narrowed to `acceptedResourceRoles` when the app sets it."""
    roles = frozenset({"*", app.role or framework_role})
    if app.accepted_resource_roles is not None:
        roles &= frozenset(app.accepted_resource_roles)
    return roles


def _place_app(app: AppSpec, count: int, tasks: list[Mapping[str, Any]],
               views: list[OfferView], shuffle: list[bytes], launched: list[int],
               evaluations: list[int], launches: list[Launch], roles: frozenset[str],
               sign: float) -> tuple[int, dict[int, str]]:
    """Place up to `count` tasks of `app`, updating `views` (what is left of each offer),
    `launched`, `evaluations` and `launches` in place. Returns (tasks not placed, the last
    reason each offer refused the app for)."""
    demand = demand_of(app)
    tally = Tally(app.constraints, ((t.get("host", ""), t.get("attributes") or {}) for t in tasks))
    per_agent = Counter(_agent_of(t) for t in tasks)
    group_fields = tuple(r.field for r in tally.rules if r.operator == "GROUP_BY")
    app_reason: dict[int, str] = {}

    def key(i: int) -> tuple:
        v = views[i]
        avail = v.available(roles).scalars
        groups = tuple(tally.count(f, field_value(f, v.hostname, v.attributes) or "")
                       for f in group_fields)
        return (groups, per_agent.get(v.agent_id, 0), sign * avail.get("cpus", 0.0),
                sign * avail.get("mem", 0.0), shuffle[i], v.agent_id, i)

    heap: list[tuple] = []
    for i in range(len(views)):
        evaluations[i] += 1
        short = shortfall(views[i].available(roles), demand)
        if short is not None:
            app_reason[i] = short
            continue
        heap.append(key(i))
    heapq.heapify(heap)

    remaining = count
    deferred: list[int] = []  # refused by GROUP_BY, which may accept again after a placement
    while remaining and heap:
        k = heapq.heappop(heap)
        i = k[-1]
        fresh = key(i)
        if fresh != k:  # stale: the offer got worse since it was pushed
            heapq.heappush(heap, fresh)
            continue
        v = views[i]
        evaluations[i] += 1
        short = shortfall(v.available(roles), demand)
        if short is not None:
            app_reason[i] = short
            continue
        rule = tally.violated(v.hostname, v.attributes)
        if rule is not None:
            app_reason[i] = reason(rule)
            if rule.operator not in MONOTONE and field_value(rule.field, v.hostname,
                                                              v.attributes) is not None:
                deferred.append(i)
            continue
        got = take(v, demand, roles)
        views[i] = got.view
        launched[i] += 1
        remaining -= 1
        tally.add(v.hostname, v.attributes)
        per_agent[v.agent_id] += 1
        launches.append(Launch(v.id, v.agent_id, v.hostname, dict(v.attributes), app.id,
                               got.resources, got.ports))
        app_reason.pop(i, None)
        heapq.heappush(heap, key(i))
        for j in deferred:
            heapq.heappush(heap, key(j))
        deferred.clear()
    return remaining, app_reason
