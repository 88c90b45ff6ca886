"""The scheduler driver's reconnect pacing and the log filters (pure parts, no Mesos)."""

from __future__ import annotations

import logging

import pytest

from executor.driver import reconnect_delay as executor_delay
from executor.driver import subscription_backoff_max
from scheduler.driver import RECONNECT_MAX_SECONDS, reconnect_delay
from scheduler.lograte import ConnectionErrorFilter, RepeatFilter


def test_no_wait_after_a_subscription_that_worked():
    assert reconnect_delay(0, rand=lambda: 1.0) == 0.0


@pytest.mark.parametrize("failed", range(1, 40))
def test_waits_grow_are_bounded_and_at_least_half_their_ceiling(failed):
    low = reconnect_delay(failed, rand=lambda: 0.0)
    high = reconnect_delay(failed, rand=lambda: 1.0)
    assert 0 < low <= high <= RECONNECT_MAX_SECONDS
    assert high == pytest.approx(2 * low)
    assert reconnect_delay(failed + 1, rand=lambda: 0.0) >= low


def test_a_second_of_failures_costs_only_a_few_attempts():
    elapsed, attempts = 0.0, 0
    while elapsed < 3.0:  # a master recovering for 3 s, every wait at its shortest
        attempts += 1
        elapsed += reconnect_delay(attempts, rand=lambda: 0.0)
    assert attempts <= 8


@pytest.mark.parametrize("attempt", range(0, 40))
def test_executor_waits_stay_under_half_the_agents_backoff_max(attempt):
    assert 0 <= executor_delay(attempt, 2.0, rand=lambda: 1.0) <= 1.0
    assert executor_delay(attempt, 2.0, rand=lambda: 0.0) == 0.0


def test_executor_reads_mesos_durations():
    assert subscription_backoff_max({"MESOS_SUBSCRIPTION_BACKOFF_MAX": "2secs"}) == 2.0
    assert subscription_backoff_max({"MESOS_SUBSCRIPTION_BACKOFF_MAX": "500ms"}) == 0.5
    assert subscription_backoff_max({}) == 2.0
    assert subscription_backoff_max({"MESOS_SUBSCRIPTION_BACKOFF_MAX": "soon"}) == 2.0


def record(msg, *args, level=logging.WARNING, exc_info=None):
    return logging.LogRecord("pymesos.process", level, __file__, 1, msg, args, exc_info)


def test_repeated_warnings_are_summarised_once_per_window():
    now = [0.0]
    f = RepeatFilter(window=10.0, clock=lambda: now[0])
    assert f.filter(record("Master is not available, retry."))
    shown = []
    for i in range(500):
        now[0] = i * 0.002
        shown.append(f.filter(record("Master is not available, retry.")))
    assert not any(shown)
    assert f.filter(record("Try to redirect to new master: %s", "a:1"))  # another message
    now[0] = 10.5
    later = record("Master is not available, retry.")
    assert f.filter(later)
    assert later.getMessage() == "Master is not available, retry. (repeated 500 more times in 10s)"
    assert f.filter(record("debug chatter", level=logging.DEBUG))
    assert f.filter(record("debug chatter", level=logging.DEBUG))


def test_a_reset_connection_is_one_line_with_its_cause():
    try:
        raise ConnectionResetError(104, "Connection reset by peer")
    except ConnectionResetError:
        import sys
        rec = record("Failed to recv from %s", ("127.0.0.1", 5050), level=logging.ERROR,
                     exc_info=sys.exc_info())
    assert ConnectionErrorFilter().filter(rec)
    assert rec.exc_info is None and rec.levelname == "WARNING"
    assert rec.getMessage() == ("Failed to recv from ('127.0.0.1', 5050): ConnectionResetError: "
                                "[Errno 104] Connection reset by peer")
    assert "Traceback" not in logging.Formatter().format(rec)


def test_other_exceptions_keep_their_traceback():
    try:
        raise ValueError("a bug")
    except ValueError:
        import sys
        rec = record("Failed to process event", level=logging.ERROR, exc_info=sys.exc_info())
    assert ConnectionErrorFilter().filter(rec)
    assert "Traceback" in logging.Formatter().format(rec)
