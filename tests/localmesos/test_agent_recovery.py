"""Agent recovery, the agent's side: what an executor's re-SUBSCRIBE carries
(`unacknowledged_updates`) is taken when the agent does not hold it, and only acknowledged when
it does (the executor resends after an agent restart or a lost ACKNOWLEDGED)."""

from __future__ import annotations

import base64
import json
import socket
import sys
import time
import uuid

from localmesos import recordio
from tests.fixtures_mesos import start_localmesos
from tests.localmesos.conftest import TEST_ARGS
from tests.localmesos.helpers import (
    Recorder,
    command_task,
    reconcile,
    start_driver,
    stop_driver,
)
from tests.support import wait_until


def executor_subscribe(agent: dict, fid: str, eid: str, updates: list[dict]) -> list[dict]:
    """SUBSCRIBE to an agent as executor `eid`, carrying `updates` as unacknowledged; the events
    read until every update's ACKNOWLEDGED came (the connection is then dropped)."""
    body = json.dumps({"type": "SUBSCRIBE", "framework_id": {"value": fid},
                       "executor_id": {"value": eid},
                       "subscribe": {"unacknowledged_tasks": [],
                                     "unacknowledged_updates": [{"status": s} for s in updates]}
                       }).encode()
    sock = socket.create_connection((agent["hostname"], agent["port"]), timeout=10)
    try:
        sock.sendall(b"POST /api/v1/executor HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     b"application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
                     % len(body) + body)
        f = sock.makefile("rb")
        assert b" 200 " in f.readline()
        while f.readline().strip():
            pass
        dec, events = recordio.Decoder(), []
        want = {s["uuid"] for s in updates}
        while want - {e["acknowledged"]["uuid"] for e in events if e["type"] == "ACKNOWLEDGED"}:
            size = int(f.readline().strip(), 16)
            events += dec.feed(f.read(size))
            f.readline()
        return events
    finally:
        sock.close()


def test_updates_carried_by_an_executor_subscribe_are_taken_once(tmp_path):
    """An executor whose agent restarted resends its unacknowledged updates in SUBSCRIBE: the
    agent takes the ones it does not hold, and only acknowledges the ones it does."""
    cluster = start_localmesos(tmp_path, agents=1, extra_args=TEST_ARGS)
    rec = Recorder()
    driver = start_driver(cluster.master, rec, checkpoint=True)
    try:
        offer = rec.take_offer()
        eid = "mute-exec"  # its process never subscribes: the test speaks for it
        task = command_task("carried", offer, "unused")
        del task["command"]
        task["executor"] = {"executor_id": {"value": eid}, "name": "mute",
                            "command": {"shell": True, "value": f"{sys.executable} -c "
                                        "'import time; time.sleep(600)'"}}
        driver.launchTasks(offer["id"], [task])
        agent = cluster.agents()[0]
        wait_until(lambda: cluster.agents()[0]["executors"], message="the executor started")
        running = {"task_id": {"value": "carried"}, "state": "TASK_RUNNING",
                   "source": "SOURCE_EXECUTOR", "timestamp": time.time(),
                   "uuid": base64.b64encode(uuid.uuid4().bytes).decode()}
        events = executor_subscribe(agent, rec.framework_id, eid, [running])
        assert events[0]["type"] == "SUBSCRIBED"
        got = rec.wait_state("carried", "TASK_RUNNING")
        assert got["uuid"] == running["uuid"]
        # Again, as after another reconnect before the ACK arrived: acknowledged, not re-sent.
        mark = rec.mark()
        again = executor_subscribe(agent, rec.framework_id, eid, [running])
        assert [e["acknowledged"]["uuid"] for e in again if e["type"] == "ACKNOWLEDGED"] == [
            running["uuid"]]
        # Anything the agent forwarded for it went out on the scheduler's stream before the
        # answer to a reconciliation asked now.
        reconcile(rec.driver, [{"task_id": {"value": "carried"}}])
        rec.wait_for(lambda: [s for s in rec.since(mark, "status")
                              if s.get("reason") == "REASON_RECONCILIATION"])
        assert not [s for s in rec.since(mark, "status") if s.get("uuid") == running["uuid"]]
    finally:
        stop_driver(driver)
        cluster.stop()


def test_a_second_restart_gets_its_own_reregistration_window(tmp_path):
    """Found by bench/chaos.py: an agent restarted again shortly after a restart killed an
    executor that had not re-subscribed yet at the end of the *first* window, ~0.4 s into the
    second; each recovery waits its full `--executor-reregistration-timeout` (2 s)."""
    cluster = start_localmesos(tmp_path, agents=1, extra_args=TEST_ARGS)
    rec = Recorder()
    driver = start_driver(cluster.master, rec, checkpoint=True)
    try:
        offer = rec.take_offer()
        eid = "slow-exec"  # its process never subscribes by itself: the test speaks for it
        task = command_task("slow", offer, "unused")
        del task["command"]
        task["executor"] = {"executor_id": {"value": eid}, "name": "slow",
                            "command": {"shell": True, "value": f"{sys.executable} -c "
                                        "'import time; time.sleep(600)'"}}
        driver.launchTasks(offer["id"], [task])
        agent = cluster.agents()[0]
        wait_until(lambda: cluster.agents()[0]["executors"], message="the executor started")
        running = {"task_id": {"value": "slow"}, "state": "TASK_RUNNING",
                   "source": "SOURCE_EXECUTOR", "timestamp": time.time(),
                   "uuid": base64.b64encode(uuid.uuid4().bytes).decode()}
        executor_subscribe(agent, rec.framework_id, eid, [running])
        rec.wait_state("slow", "TASK_RUNNING")

        def restart(down: float) -> float:
            cluster._call("POST", f"/_localmesos/agents/1/restart?keep_executors=true"
                                  f"&down_seconds={down}")
            wait_until(lambda: not cluster.agents()[0]["running"], timeout=5,
                       message="the agent down")
            wait_until(lambda: cluster.agents()[0]["running"], timeout=10, interval=0.01,
                       message="the agent back")
            return time.time()

        first = restart(0.1)
        second = restart(1.0)
        assert second - first < 2.0  # the first window was still open when it went down
        lost = rec.wait_state("slow", "TASK_LOST", timeout=15)
        assert lost["message"] == "Executor did not reregister within 2secs"
        assert lost["reason"] == "REASON_EXECUTOR_REREGISTRATION_TIMEOUT"
        assert lost["timestamp"] - second >= 1.9, lost["timestamp"] - second
    finally:
        stop_driver(driver)
        cluster.stop()
