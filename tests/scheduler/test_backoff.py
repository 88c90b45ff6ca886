"""Launch backoff, pure: growth, cap, version scoping, reset after a stable run."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from scheduler import backoff

NOW = 1_795_000_000.0
V1, V2 = "2026-11-24T06:00:00.000Z", "2026-11-24T06:10:00.000Z"


def app(seconds=1.0, factor=2.0, cap=10.0):
    # backoff needs only these three attributes of an AppSpec
    return SimpleNamespace(backoff_seconds=seconds, backoff_factor=factor,
                           max_launch_delay_seconds=cap)


def failure(version=V1, task_id="a.1"):
    return {"appId": "/a", "host": "agent1", "message": "exited", "state": "TASK_FAILED",
            "taskId": task_id, "timestamp": backoff.format_time(NOW), "version": version,
            "slaveId": "A1"}


@pytest.mark.parametrize("failures,expected", [
    (0, 0.0), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (50, 10.0),
])
def test_delay_grows_by_factor_up_to_cap(failures, expected):
    assert backoff.delay_seconds(app(), failures) == expected


def test_marathon_defaults():
    spec = app(seconds=1, factor=1.15, cap=300)
    assert backoff.delay_seconds(spec, 2) == pytest.approx(1.15)
    assert backoff.delay_seconds(spec, 100) == 300


def test_successive_failures_grow_the_delay_in_the_status():
    status = backoff.empty_status("/a", NOW)
    seen = []
    for i in range(4):
        status = backoff.record_failure(status, app(), failure(task_id=f"a.{i}"), NOW + i)
        seen.append(status["delay"]["seconds"])
        assert status["consecutiveFailures"] == i + 1
        assert status["lastTaskFailure"]["taskId"] == f"a.{i}"
    assert seen == [1.0, 2.0, 4.0, 8.0]
    assert backoff.parse_time(status["delay"]["until"]) == pytest.approx(NOW + 3 + 8.0, abs=0.002)


def test_record_failure_does_not_mutate():
    status = backoff.empty_status("/a", NOW)
    backoff.record_failure(status, app(), failure(), NOW)
    assert status["consecutiveFailures"] == 0 and status["delay"] is None


@pytest.mark.parametrize("offset,version,allowed", [
    (0.0, V1, False),     # right after the failure
    (0.5, V1, False),
    (1.01, V1, True),     # delay over
    (0.0, V2, True),      # a new configuration is not delayed by the old one's failure
    (0.0, None, False),   # unknown version: be careful
])
def test_launch_allowed(offset, version, allowed):
    status = backoff.record_failure(backoff.empty_status("/a", NOW), app(), failure(V1), NOW)
    assert backoff.launch_allowed(status, version, NOW + offset) is allowed


def test_no_status_means_no_delay():
    assert backoff.launch_allowed(None, V1, NOW)
    assert backoff.delay_remaining(backoff.empty_status("/a", NOW), V1, NOW) == 0.0


def running(version=V1, started=NOW, healthy=None, first_success=None, **kw):
    doc = {"id": "a.x", "state": "TASK_RUNNING", "version": version, "healthy": healthy,
           "startedAt": backoff.format_time(started), "killRequested": False,
           "healthCheckResults": ([{"firstSuccess": backoff.format_time(first_success)}]
                                  if first_success else [])}
    doc.update(kw)
    return doc


def failed_status():
    status = backoff.empty_status("/a", NOW)
    for _ in range(3):
        status = backoff.record_failure(status, app(), failure(V1), NOW)
    return status


@pytest.mark.parametrize("tasks,checks,version,reset", [
    ([], False, V1, False),
    ([running(started=NOW)], False, V1, False),                     # not for long enough yet
    ([running(started=NOW - 11)], False, V1, True),                 # stable without checks
    ([running(started=NOW - 11, version=V2)], False, V1, False),    # an old task proves nothing
    ([running(started=NOW - 60)], True, V1, False),                 # checks but no verdict
    ([running(started=NOW - 60, healthy=False)], True, V1, False),
    ([running(started=NOW - 60, healthy=True, first_success=NOW - 2)], True, V1, False),
    ([running(started=NOW - 60, healthy=True, first_success=NOW - 20)], True, V1, True),
    ([running(started=NOW - 60, state="TASK_KILLING")], False, V1, False),
    ([], False, V2, True),                                          # configuration changed
])
def test_settle(tasks, checks, version, reset):
    status = failed_status()
    settled = backoff.settle(status, tasks, version, checks, NOW)
    if reset:
        assert settled["delay"] is None and settled["consecutiveFailures"] == 0
        assert settled["lastTaskFailure"] == status["lastTaskFailure"]
    else:
        assert settled is status
