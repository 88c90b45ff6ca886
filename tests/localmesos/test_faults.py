"""Faults: scheduler and master failover, framework timeout, agent loss, killed task processes."""

from __future__ import annotations

import os
import signal
import time

from tests.fixtures_mesos import start_localmesos
from tests.localmesos.conftest import TEST_ARGS
from tests.localmesos.helpers import (
    RawClient,
    Recorder,
    command_task,
    reconcile,
    start_driver,
    stop_driver,
)
from tests.localmesos.test_processes import processes_under
from tests.support import process_group_alive, wait_until


def _run_task(sched: Recorder, tid: str, hostname: str | None = None, cmd: str = "sleep 60",
              refuse_seconds: float = 5.0) -> dict:
    offer = sched.take_offer(hostname)
    sched.driver.launchTasks(offer["id"], [command_task(tid, offer, cmd)],
                             {"refuse_seconds": refuse_seconds})
    return sched.wait_state(tid, "TASK_RUNNING")


def test_scheduler_restart_keeps_framework_id_and_tasks(lm) -> None:
    first = Recorder()
    start_driver(lm.master, first)
    running = _run_task(first, "keep")
    pid = running["container_status"]["executor_pid"]
    stop_driver(first.driver, failover=True)
    fw = wait_until(lambda: [f for f in lm.state()["frameworks"] if not f["active"]],
                    message="framework inactive")[0]
    assert fw["id"] == first.framework_id and [t["id"] for t in fw["tasks"]] == ["keep"]
    assert fw["offers"] == []

    second = Recorder()
    start_driver(lm.master, second, id={"value": first.framework_id})
    try:
        assert second.of("reregistered") and not second.of("registered")
        assert process_group_alive(pid)
        second.driver.reconcileTasks([{"task_id": {"value": "keep"}}])
        # The answer, not an update of the first scheduler's the agent may re-send on SUBSCRIBE
        # (one whose acknowledgement was still on its way when that scheduler stopped).
        st = second.wait_for(lambda: [s for s in second.statuses("keep")
                                      if s.get("reason") == "REASON_RECONCILIATION"],
                             what="the reconciliation answer")[0]
        assert st["state"] == "TASK_RUNNING"
        second.driver.killTask({"value": "keep"})
        second.wait_state("keep", "TASK_KILLED")
    finally:
        stop_driver(second.driver)


def test_unacknowledged_updates_are_retried_and_resent_on_resubscribe(lm) -> None:
    rec = Recorder()
    start_driver(lm.master, rec)
    rec.driver.implicit_acknowledgements = False
    offer = rec.take_offer()
    rec.driver.launchTasks(offer["id"], [command_task("noack", offer, "sleep 0.2")])
    rec.wait_for(lambda: len(rec.statuses("noack", retries=True)) >= 2, what="a retry")
    first, again = rec.statuses("noack", retries=True)[:2]
    # One update in flight per task: the same STARTING (same uuid) again, nothing newer.
    assert first["state"] == again["state"] == "TASK_STARTING"
    assert first["uuid"] == again["uuid"]
    stop_driver(rec.driver, failover=True)  # the task finishes while nobody listens
    rec2 = Recorder()
    start_driver(lm.master, rec2, id={"value": rec.framework_id})
    try:
        rec2.wait_state("noack", "TASK_FINISHED")
        assert rec2.states("noack") == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]
        assert rec2.statuses("noack")[0]["uuid"] == first["uuid"]
        wait_until(lambda: lm.state()["frameworks"][0]["tasks"] == [],
                   message="task forgotten once acknowledged")
        assert [t["id"] for t in lm.state()["frameworks"][0]["completed_tasks"]] == ["noack"]
    finally:
        stop_driver(rec2.driver)


def test_framework_not_back_within_failover_timeout_is_removed(lm) -> None:
    rec = Recorder()
    start_driver(lm.master, rec, failover_timeout=1.0)
    pid = _run_task(rec, "orphan")["container_status"]["executor_pid"]
    t0 = time.monotonic()
    stop_driver(rec.driver, failover=True)
    wait_until(lambda: not process_group_alive(pid), timeout=10, message="task killed")
    assert time.monotonic() - t0 >= 0.9
    state = wait_until(lambda: (s := lm.state())["completed_frameworks"] and s,
                       message="framework completed")
    assert state["frameworks"] == []
    assert state["completed_frameworks"][0]["id"] == rec.framework_id
    assert all(s["used_resources"]["cpus"] == 0 for s in state["slaves"])


def test_master_restart_schedulers_resubscribe_and_keep_tasks(lm, sched: Recorder) -> None:
    """The framework re-subscribes with its id, keeps its task, and gets the update it had not
    acknowledged again.

    Acknowledgements are sent from this thread, never while the master restarts: pymesos sends
    implicit ones from its I/O thread, and a restarted master answers a framework that has not
    re-subscribed yet with 403 "Framework is not subscribed" (as real Mesos does), which aborts
    pymesos's I/O thread. A lost acknowledgement itself is harmless: the agent re-sends the
    update, which is what this test checks for TASK_RUNNING.
    """
    sched.driver.implicit_acknowledgements = False
    offer = sched.take_offer("127.0.1.1")
    sched.driver.launchTasks(offer["id"], [command_task("survivor", offer, "sleep 60")],
                             {"refuse_seconds": 5.0})
    sched.driver.acknowledgeStatusUpdate(sched.wait_state("survivor", "TASK_STARTING"))
    running = sched.wait_state("survivor", "TASK_RUNNING")  # not acknowledged before the restart
    pid = running["container_status"]["executor_pid"]
    old_master = lm.state()["id"]
    lm.restart_master()
    sched.wait_for(lambda: sched.of("reregistered"), timeout=15, what="re-subscription")
    state = lm.state()
    assert state["id"] != old_master
    fw = state["frameworks"][0]
    assert fw["id"] == sched.framework_id and fw["active"]
    assert [t["id"] for t in fw["tasks"]] == ["survivor"]
    assert process_group_alive(pid)
    agent1 = next(s for s in state["slaves"] if s["hostname"] == "127.0.1.1")
    assert agent1["used_resources"]["cpus"] == 0.1
    # The updates that came on the new stream, after SUBSCRIBED.
    resubscribed_at = next(i for i, (kind, _, _) in enumerate(sched.events)
                           if kind == "reregistered")
    again = sched.wait_for(lambda: [s for s in sched.since(resubscribed_at, "status")
                                    if s.get("uuid") == running["uuid"]],
                           what="the unacknowledged TASK_RUNNING re-sent")[0]
    assert again["state"] == "TASK_RUNNING"
    sched.driver.acknowledgeStatusUpdate(again)
    mark = sched.mark()
    sched.driver.reconcileTasks([])
    reconciled = sched.wait_for(lambda: [s for s in sched.since(mark, "status")
                                         if s["state"] == "TASK_RUNNING" and "uuid" not in s],
                                what="reconciled RUNNING")[0]
    assert reconciled["reason"] == "REASON_RECONCILIATION"
    sched.driver.killTask({"value": "survivor"})
    sched.wait_state("survivor", "TASK_KILLED")


def test_master_restart_without_the_framework_coming_back(lm) -> None:
    rec = Recorder()
    # The failover timeout must outlast the look at /state below on a loaded machine.
    start_driver(lm.master, rec, failover_timeout=4)
    pid = _run_task(rec, "abandoned")["container_status"]["executor_pid"]
    stop_driver(rec.driver, failover=True)
    lm.restart_master()
    fw = lm.state()["frameworks"][0]
    assert fw["recovered"] and not fw["active"] and fw["tasks"][0]["id"] == "abandoned"
    assert process_group_alive(pid)  # kept while the framework may still come back
    wait_until(lambda: not process_group_alive(pid), timeout=20, message="task killed")
    wait_until(lambda: lm.state()["frameworks"] == [], message="framework removed")


def test_agent_loss_reports_tasks_lost_and_removes_the_agent(lm, sched: Recorder) -> None:
    sched.wait_for(lambda: len(sched.offers) == 3, what="three offers")
    running = _run_task(sched, "doomed", "127.0.1.2",
                        cmd="setsid sleep 300 & sleep 300 & wait", refuse_seconds=0.1)
    pid = running["container_status"]["executor_pid"]
    agent_id = running["agent_id"]["value"]
    sched.wait_for(lambda: any(o["hostname"] == "127.0.1.2" for o in sched.offers.values()),
                   what="agent2's leftover offered again")
    lm.stop_agent("127.0.1.2")
    lost = sched.wait_state("doomed", "TASK_LOST")
    assert lost["reason"] == "REASON_AGENT_REMOVED" and lost["source"] == "SOURCE_MASTER"
    assert sched.wait_for(lambda: sched.of("agent_lost")) == [agent_id]
    sched.wait_for(lambda: not any(o["hostname"] == "127.0.1.2"
                                   for o in sched.offers.values()), what="offer rescinded")
    wait_until(lambda: not process_group_alive(pid), timeout=5, message="its processes gone")
    wait_until(lambda: processes_under(lm.work_dir) == [], timeout=5,
               message="its grandchild in another session gone too")
    assert "127.0.1.2" not in [s["hostname"] for s in lm.state()["slaves"]]
    # The machine comes back empty, under a new id, and is offered again.
    back = lm.start_agent("agent2")
    assert back["id"] != agent_id
    sched.wait_for(lambda: any(o["agent_id"]["value"] == back["id"] for o in sched.offers.values()),
                   what="offers from the returned agent")


def test_killing_the_task_process_fails_the_task(lm, sched: Recorder) -> None:
    running = _run_task(sched, "victim", cmd="exec sleep 60")
    os.kill(running["container_status"]["executor_pid"], signal.SIGKILL)
    failed = sched.wait_state("victim", "TASK_FAILED")
    assert failed["message"] == "Command terminated with signal Killed"


def test_unanswered_offers_are_rescinded_and_made_again(tmp_path) -> None:
    cluster = start_localmesos(tmp_path, agents=1, extra_args=TEST_ARGS + ("--offer-timeout", "0.5"))
    rec = Recorder()
    try:
        start_driver(cluster.master, rec)
        first = rec.wait_for(lambda: rec.of("offer"), what="an offer")[0]["id"]["value"]
        assert rec.wait_for(lambda: rec.of("rescind"))[0] == first
        rec.wait_for(lambda: len(rec.of("offer")) >= 2, what="a new offer after the rescind")
        stop_driver(rec.driver)
    finally:
        cluster.stop()


def test_partition_aware_frameworks_see_unreachable(lm) -> None:
    rec = Recorder()
    start_driver(lm.master, rec, capabilities=[{"type": "PARTITION_AWARE"}])
    running = _run_task(rec, "far", "127.0.1.3")
    lm.stop_agent(running["agent_id"]["value"])
    st = rec.wait_state("far", "TASK_UNREACHABLE")
    assert st["reason"] == "REASON_AGENT_REMOVED"
    fw = lm.state()["frameworks"][0]
    assert [t["id"] for t in fw["unreachable_tasks"]] == ["far"] and fw["tasks"] == []
    mark = rec.mark()
    # Without its agent id even an unreachable task is unknown to the master, as a real one
    # answers (partition_aware.json); with it, unreachable.
    reconcile(rec.driver, [{"task_id": {"value": "far"}}, {"task_id": {"value": "nope"}},
                           {"task_id": {"value": "far"}, "agent_id": running["agent_id"]}])
    def answers() -> list[dict]:  # not a late re-delivery of an earlier update
        return [s for s in rec.since(mark, "status") if s.get("reason") == "REASON_RECONCILIATION"]

    got = rec.wait_for(lambda: len(answers()) >= 3 and answers())
    assert [(s["task_id"]["value"], s["state"]) for s in got] == [
        ("far", "TASK_UNKNOWN"), ("nope", "TASK_UNKNOWN"), ("far", "TASK_UNREACHABLE")]


def test_silenced_stream_stays_open_and_quiet_until_the_framework_resubscribes(tmp_path) -> None:
    cluster = start_localmesos(tmp_path, agents=1, extra_args=("--heartbeat-interval", "0.2"))
    quiet, witness, again = (RawClient(cluster.master) for _ in range(3))
    try:
        quiet.subscribe({"name": "quiet"})
        quiet.wait_event("OFFERS")
        assert cluster.silence_master() == {"silenced": [quiet.framework_id]}
        before = len(quiet.events)
        # Another framework's heartbeats are the clock. Silencing drops what is sent from then
        # on; a heartbeat already queued for the stream is still written. So the quiet window
        # starts at the witness's first periodic heartbeat (an interval after silencing)...
        witness.subscribe({"name": "witness"})
        witness.wait_event("HEARTBEAT", timeout=10, start=2)
        silenced_at = len(quiet.events)
        assert {e["type"] for e, _, _ in quiet.events[before:silenced_at]} <= {"HEARTBEAT"}
        # ...and five intervals pass for the witness...
        witness.wait_event("HEARTBEAT", timeout=10, start=7)
        # ...while the silenced stream, still connected, carried nothing.
        assert [e["type"] for e, _, _ in quiet.events[silenced_at:]] == []
        assert quiet.sched_call("REVIVE")[0] == 202  # calls still reach the master
        assert next(f for f in cluster.state()["frameworks"]
                    if f["id"] == quiet.framework_id)["active"]
        # Re-subscribing with the framework id gets a stream that speaks again (the witness gone,
        # the agent's resources come back to this framework).
        assert witness.sched_call("TEARDOWN")[0] == 202
        again.subscribe({"name": "quiet", "id": {"value": quiet.framework_id}})
        again.wait_event("HEARTBEAT", start=2)
        again.wait_event("OFFERS")
    finally:
        for client in (quiet, witness, again):
            client.close()
        cluster.stop()
