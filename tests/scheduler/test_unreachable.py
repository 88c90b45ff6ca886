"""Marathon's unreachable strategy, pure: reading it from the stored app document, the verdict
on an unreachable task over time, and what the plan does with it."""

from __future__ import annotations

import pytest

from scheduler import reconcile as rc
from scheduler.spec import format_time, parse_app
from scheduler.unreachable import (
    EXPUNGE,
    INACTIVE,
    REACHABLE,
    UNREACHABLE,
    UnreachableStrategy,
    unreachable_strategy,
    verdict,
)
from tests.scheduler.test_reconcile import NOW, V1, app, task

STRATEGY = UnreachableStrategy(inactive_after_seconds=60, expunge_after_seconds=120)


@pytest.mark.parametrize("raw,expected", [
    (None, UnreachableStrategy(0, 0)),  # absent: Marathon's UnreachableEnabled default, 0 s / 0 s
    ({"inactiveAfterSeconds": 60, "expungeAfterSeconds": 120}, STRATEGY),
    ({"inactiveAfterSeconds": 0, "expungeAfterSeconds": 0}, UnreachableStrategy(0, 0)),
    ("disabled", UnreachableStrategy(enabled=False)),
    ({"inactiveAfterSeconds": 120, "expungeAfterSeconds": 60}, UnreachableStrategy()),  # invalid
    ({"inactiveAfterSeconds": -1, "expungeAfterSeconds": 5}, UnreachableStrategy()),
    ({"inactiveAfterSeconds": "60"}, UnreachableStrategy()),
    ("sometimes", UnreachableStrategy()),
])
def test_strategy_from_the_stored_document(raw, expected):
    doc = {"id": "/a"} if raw is None else {"id": "/a", "unreachableStrategy": raw}
    assert unreachable_strategy(doc) == expected


def away(n, since, state="TASK_UNREACHABLE", **kw):
    return task(n, state=state, unreachableSince=format_time(since), **kw)


@pytest.mark.parametrize("seconds_away,expected", [
    (0, UNREACHABLE), (59.9, UNREACHABLE), (60, INACTIVE), (119, INACTIVE), (120, EXPUNGE),
])
def test_verdict_over_time(seconds_away, expected):
    assert verdict(away(1, NOW - seconds_away), STRATEGY, NOW) == expected
    assert verdict(away(1, NOW - seconds_away, "TASK_UNKNOWN"), STRATEGY, NOW) == expected


def test_verdicts_of_other_tasks_and_strategies():
    assert verdict(task(1), STRATEGY, NOW) == REACHABLE
    assert verdict(away(1, NOW), UnreachableStrategy(0, 0), NOW) == EXPUNGE
    assert verdict(away(1, NOW - 10**6), UnreachableStrategy(enabled=False), NOW) == UNREACHABLE


def plan_app(tasks, strategy=STRATEGY, instances=2, selection="YOUNGEST_FIRST"):
    doc = app(instances=instances, killSelection=selection)
    kills: list[rc.Kill] = []
    launch, _ = rc._plan_app(parse_app(doc), V1, tasks, set(), None, NOW, kills, strategy)
    return launch, kills


def test_unreachable_within_inactive_after_is_not_replaced():
    launch, kills = plan_app([task(1), away(2, NOW - 30)])
    assert (launch, kills) == (0, [])


def test_inactive_is_replaced_but_kept():
    launch, kills = plan_app([task(1), away(2, NOW - 61)])
    assert (launch, kills) == (1, [])


def test_expunged_is_forgotten_and_counted_as_a_failure():
    gone = away(2, NOW - 121)
    launch, kills = plan_app([task(1), gone, task(3)])
    assert launch == 0
    assert [(k.task_id, k.expunge, k.failure) for k in kills] == [(gone["id"], True, True)]


@pytest.mark.parametrize("selection,killed", [("YOUNGEST_FIRST", 3), ("OLDEST_FIRST", 1)])
def test_back_before_expunge_the_surplus_goes_by_kill_selection(selection, killed):
    # Task 2 came back RUNNING; task 3 had been launched to replace it meanwhile.
    tasks = [task(1, staged=NOW - 300), task(2, staged=NOW - 200), task(3, staged=NOW - 10)]
    launch, kills = plan_app(tasks, selection=selection)
    assert launch == 0
    assert [(k.task_id, k.reason) for k in kills] == [(task(killed)["id"], rc.KILL_SCALE_DOWN)]


def test_disabled_never_replaces():
    launch, kills = plan_app([task(1), away(2, NOW - 10**6)], UnreachableStrategy(enabled=False))
    assert (launch, kills) == (0, [])
