"""Health checks of command tasks, as Mesos's command executor runs them."""

from __future__ import annotations

import sys

from tests.localmesos.helpers import Recorder, command_task, free_offer_port, ports
from tests.support import free_port


def _check(kind: str, **fields) -> dict:
    check = {"type": kind, "delay_seconds": 0.0, "interval_seconds": 0.2, "timeout_seconds": 1.0,
             "grace_period_seconds": 5.0, "consecutive_failures": 2}
    check.update(fields)
    return check


def _health(rec: Recorder, tid: str) -> list:
    return [s.get("healthy") for s in rec.statuses(tid) if s["state"] == "TASK_RUNNING"]


def test_http_check_reports_healthy(lm, sched: Recorder) -> None:
    offer = sched.take_offer()
    port = free_offer_port(offer)
    task = command_task("web", offer, f"exec {sys.executable} -m http.server {port} "
                        f"--bind {offer['hostname']}", extra_resources=[ports((port, port))],
                        health_check=_check("HTTP", http={"port": port, "path": "/"}))
    sched.driver.launchTasks(offer["id"], [task])
    sched.wait_for(lambda: True in _health(sched, "web"), what="healthy: true")
    assert _health(sched, "web")[0] is None  # the plain RUNNING comes first
    state = lm.state()["frameworks"][0]["tasks"][0]
    assert state["statuses"][-1]["healthy"] is True
    assert state["health_check"]["type"] == "HTTP"


def test_failing_tcp_check_kills_the_task_after_consecutive_failures(lm, sched: Recorder) -> None:
    offer = sched.take_offer()
    task = command_task("deaf", offer, "sleep 60",
                        health_check=_check("TCP", tcp={"port": free_port()},
                                            grace_period_seconds=0.0))
    sched.driver.launchTasks(offer["id"], [task])
    killed = sched.wait_state("deaf", "TASK_KILLED")
    assert _health(sched, "deaf")[1:] == [False, False]
    assert killed["healthy"] is False


def test_command_check_failures_within_grace_are_ignored(lm, sched: Recorder) -> None:
    offer = sched.take_offer()
    task = command_task("slow", offer, "sleep 0.6; touch ready; sleep 60",
                        health_check=_check("COMMAND", command={"value": "test -f ready"}))
    sched.driver.launchTasks(offer["id"], [task])
    sched.wait_for(lambda: True in _health(sched, "slow"), what="healthy: true")
    assert False not in _health(sched, "slow")
