"""Autoscaling decisions (lb.autoscale), pure."""

from __future__ import annotations

from lb.autoscale import Policy, RateMeter, decide, policy
from scheduler.spec import format_time

NOW = 1_800_000_000.0


def test_policy_from_labels():
    assert policy({"labels": {}}) == (None, None)
    p, problem = policy({"id": "/a", "labels": {"ACCESSD_AUTOSCALE_TARGET_RPS": "50",
                                                "ACCESSD_AUTOSCALE_MAX_INSTANCES": "4"}})
    assert p == Policy(50.0, 1, 4, 30.0) and problem is None
    for bad in ({"ACCESSD_AUTOSCALE_TARGET_RPS": "fast"},
                {"ACCESSD_AUTOSCALE_TARGET_RPS": "0"},
                {"ACCESSD_AUTOSCALE_TARGET_RPS": "5", "ACCESSD_AUTOSCALE_MIN_INSTANCES": "3",
                 "ACCESSD_AUTOSCALE_MAX_INSTANCES": "2"}):
        p, problem = policy({"id": "/a", "labels": bad})
        assert p is None and problem.startswith("/a: autoscale labels")


def test_decide_scales_to_the_rate_within_bounds_after_the_cooldown():
    p = Policy(target_rps=50, min_instances=1, max_instances=4, cooldown_seconds=30)
    long_ago, just_now = format_time(NOW - 60), format_time(NOW - 5)
    assert decide(p, 1, 120.0, long_ago, NOW) == 3
    assert decide(p, 1, 1000.0, long_ago, NOW) == 4          # capped
    assert decide(p, 1, 120.0, just_now, NOW) is None         # cooldown
    assert decide(p, 3, 0.0, long_ago, NOW) == 1               # floor
    assert decide(p, 3, 120.0, long_ago, NOW) is None          # already right
    # down only with 20 % headroom: 95 req/s would need 2 instances at 95 % of their target
    assert decide(p, 3, 95.0, long_ago, NOW) is None
    assert decide(p, 3, 70.0, long_ago, NOW) == 2
    assert decide(p, 9, 10.0, just_now, NOW) == 1              # out of bounds: at once


def test_rate_meter_window_and_counter_reset():
    meter = RateMeter(window=10)
    assert meter.rate("b") is None
    meter.add("b", 0.0, 100)
    meter.add("b", 5.0, 600)
    assert meter.rate("b") == 100.0
    meter.add("b", 20.0, 700)   # older samples leave the window
    assert meter.rate("b") == 100 / 15
    meter.add("b", 21.0, 3)     # a new HAProxy worker: counters start over
    assert meter.rate("b") is None
    meter.add("b", 22.0, 53)
    assert meter.rate("b") == 50.0
