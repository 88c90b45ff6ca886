"""SilenceWatch: when a quiet master connection counts as dead (a fake clock, no Mesos)."""

from __future__ import annotations

import pytest

from scheduler.masterwatch import DEFAULT_HEARTBEAT_INTERVAL, SilenceWatch


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_nothing_is_overdue_before_a_subscription_is_attempted() -> None:
    clock = Clock()
    watch = SilenceWatch(5, clock)
    watch.heard()  # an event without a subscription attempt does not arm it
    clock.now += 10_000
    assert watch.overdue() is None


def test_silence_counts_in_the_intervals_subscribed_gave() -> None:
    clock = Clock()
    watch = SilenceWatch(4, clock)
    watch.expect()
    watch.subscribed(0.5)
    assert watch.limit == 2.0
    clock.now += 1.9
    assert watch.overdue() is None
    watch.heard()  # a heartbeat (or any event) starts the count again
    clock.now += 1.9
    assert watch.overdue() is None
    clock.now += 0.2
    assert watch.overdue() == pytest.approx(2.1)


def test_a_master_that_never_answers_subscribe_is_overdue_by_the_default_interval() -> None:
    clock = Clock()
    watch = SilenceWatch(5, clock)
    watch.expect()
    clock.now += 5 * DEFAULT_HEARTBEAT_INTERVAL - 1
    assert watch.overdue() is None
    clock.now += 2
    assert watch.overdue() == pytest.approx(5 * DEFAULT_HEARTBEAT_INTERVAL + 1)


def test_a_closed_connection_is_not_watched_until_the_next_attempt() -> None:
    clock = Clock()
    watch = SilenceWatch(2, clock)
    watch.expect()
    watch.subscribed(1.0)
    watch.disconnected()  # pymesos reconnects by itself, with its own backoff
    clock.now += 100
    assert watch.overdue() is None
    watch.expect()
    clock.now += 2.5
    assert watch.overdue() == pytest.approx(2.5)


@pytest.mark.parametrize("interval", [None, 0, -1])
def test_a_missing_or_bad_interval_keeps_the_previous_one(interval) -> None:
    watch = SilenceWatch(3, Clock())
    watch.subscribed(2.0)
    watch.subscribed(interval)
    assert watch.limit == 6.0


def test_missed_heartbeats_must_be_positive() -> None:
    with pytest.raises(ValueError):
        SilenceWatch(0)
