"""Marathon's unreachable strategy, pure: reading it from the stored app document, the verdict
on an unreachable task over time, and what the plan does with it."""

from __future__ import annotations

import pytest

from scheduler import reconcile as rc
from scheduler import taskstate
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


@pytest.mark.parametrize("state", ["TASK_UNREACHABLE", "TASK_UNKNOWN"])
def test_a_task_being_killed_that_became_unreachable_is_expunged_at_once(state):
    # Found by bench/chaos.py: a scale-down kill crossed its agent's loss; the task stayed
    # in the store for ever, TASK_UNREACHABLE and TASK_UNKNOWN in turn on each reconciliation,
    # and the cluster never settled. Marathon expunges an instance whose kill cannot be
    # answered; so do we, whatever the strategy, and it is not a failure.
    killing = away(2, NOW - 1, state=state, killRequested=True)
    for strategy in (STRATEGY, UnreachableStrategy(0, 0), UnreachableStrategy(enabled=False)):
        launch, kills = plan_app([task(1), killing], strategy)
        assert launch == 1  # the kill was meant to end it: it no longer counts
        assert [(k.task_id, k.expunge, k.failure, k.reason) for k in kills] == [
            (killing["id"], True, False, rc.KILL_UNANSWERABLE)]
    assert not taskstate.is_failure(killing, state)
    # The same for a task of an app deleted meanwhile.
    p = rc.plan([], [killing], {}, [], [], NOW)
    assert [(k.task_id, k.expunge) for k in p.kills] == [(killing["id"], True)]


def test_a_task_being_killed_while_reachable_is_left_to_its_kill():
    launch, kills = plan_app([task(1), task(2, killRequested=True, state="TASK_KILLING")])
    assert (launch, kills) == (1, [])
