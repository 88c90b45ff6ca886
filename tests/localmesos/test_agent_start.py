"""A restarted agent's executor API answers as a real 1.12 agent process that has just started:
404 while its routes are not installed, then 503 while it recovers, then the call's own answer
(`tests/data/mesos-1.12/agent_start_answers.json`); the executors' re-registration window opens
after both."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error

import pytest

from tests.data import recording
from tests.fixtures_mesos import start_localmesos
from tests.localmesos.conftest import TEST_ARGS
from tests.localmesos.helpers import Recorder, command_task, start_driver, stop_driver

SUBSCRIBE = json.dumps({"type": "SUBSCRIBE", "framework_id": {"value": "f"},
                        "executor_id": {"value": "e"},
                        "subscribe": {"unacknowledged_tasks": [], "unacknowledged_updates": []}})


def answer(agent: dict) -> tuple[str, str]:
    """The agent's answer to an executor SUBSCRIBE of an unknown framework."""
    conn = http.client.HTTPConnection(agent["hostname"], agent["port"], timeout=5)
    try:
        conn.request("POST", "/api/v1/executor", body=SUBSCRIBE,
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return str(resp.status), resp.read().decode()
    except ConnectionRefusedError:
        return "connection refused", ""
    finally:
        conn.close()


def answers_until_served(agent: dict, timeout: float = 10.0) -> list[tuple[str, str]]:
    """Each change of answer, asking every 10 ms, until the call itself is answered (400)."""
    seen: list[tuple[str, str]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = answer(agent)
        if not seen or seen[-1] != got:
            seen.append(got)
        if got[0] == "400":
            return seen
        time.sleep(0.01)  # the polling interval of the probe, not a wait for a condition
    raise AssertionError(f"the agent never served the call: {seen}")


def test_a_restarted_agent_answers_404_then_503_as_a_real_one_starting(tmp_path):
    recorded = [(step["answer"], step.get("body", ""))
                for step in recording("agent_start_answers.json")["starts"][0][1:]]
    cluster = start_localmesos(tmp_path, agents=1, extra_args=TEST_ARGS)
    try:
        [agent] = cluster.agents()
        assert answer(agent) == recorded[-1]
        cluster._call("POST", "/_localmesos/agents/1/stop?keep_executors=true")
        assert answer(agent)[0] == "connection refused"
        # phases longer than a real agent's (tens of ms), so that each is seen
        cluster._call("POST", "/_localmesos/agents/1/start"
                              "?starting_seconds=0.4&recovering_seconds=0.4")
        assert answers_until_served(agent) == recorded
        [agent] = cluster.agents()
        assert {"404", "503", "400"} <= set(agent["executor_api"])
        # the default phases are a real agent's: short, and there
        cluster._call("POST", "/_localmesos/agents/1/stop?keep_executors=true")
        cluster._call("POST", "/_localmesos/agents/1/start")
        assert answers_until_served(agent)[-1] == recorded[-1]
    finally:
        cluster.stop()


def test_bad_phases_are_refused(tmp_path):
    cluster = start_localmesos(tmp_path, agents=1, extra_args=TEST_ARGS)
    try:
        cluster._call("POST", "/_localmesos/agents/1/stop?keep_executors=true")
        with pytest.raises(urllib.error.HTTPError) as refused:
            cluster._call("POST", "/_localmesos/agents/1/start?starting_seconds=-1")
        assert refused.value.code == 400
        assert "starting_seconds" in json.loads(refused.value.read())["message"]
        [agent] = cluster.agents()
        assert agent["running"] is False  # nothing half-done: still down
    finally:
        cluster.stop()


def test_a_recovered_agent_re_registers_once_its_executors_window_has_closed(tmp_path):
    """A real agent re-registers with the master only after "Finished recovery", which follows
    its executors' re-registration window (2 s): until then the master shows it deactivated
    and offers nothing from it."""
    cluster = start_localmesos(tmp_path, agents=1, extra_args=TEST_ARGS)
    try:
        def active() -> bool:
            return bool(cluster.state()["slaves"][0]["active"])

        assert active()
        cluster._call("POST", "/_localmesos/agents/1/stop?keep_executors=true")
        assert not active()
        started = time.monotonic()
        cluster._call("POST", "/_localmesos/agents/1/start")
        assert not active()  # its process is back, the master does not know it yet
        assert cluster.agents()[0]["running"] is True
        deadline = started + 10
        while not active():
            assert time.monotonic() < deadline, "the agent never re-registered"
            time.sleep(0.02)  # the polling interval, not a wait for a condition
        took = time.monotonic() - started
        assert 2.0 <= took < 4.0, took  # 0.08 s of 404/503 + the 2 s window + 0.4 s
    finally:
        cluster.stop()


def test_a_kill_asked_while_the_agent_re_registers_is_sent_once_it_has(tmp_path):
    """A real master keeps a KILL for a task on a disconnected agent (`killedTasks`) and sends it
    when the agent re-registers; localmesos dropped it."""
    cluster = start_localmesos(tmp_path, agents=1, extra_args=TEST_ARGS)
    rec = Recorder()
    driver = start_driver(cluster.master, rec, checkpoint=True)
    try:
        offer = rec.take_offer()
        driver.launchTasks(offer["id"], [command_task("held", offer, "sleep 600")])
        rec.wait_state("held", "TASK_RUNNING")
        cluster._call("POST", "/_localmesos/agents/1/stop?keep_executors=true")
        cluster._call("POST", "/_localmesos/agents/1/start")
        assert not cluster.state()["slaves"][0]["active"]  # back, not re-registered yet
        driver.killTask({"value": "held"})
        killed = rec.wait_state("held", "TASK_KILLED", timeout=15)
        assert cluster.state()["slaves"][0]["active"]  # sent only once it had re-registered
        assert killed["source"] == "SOURCE_EXECUTOR"
    finally:
        stop_driver(driver)
        cluster.stop()


def test_a_machine_lost_while_its_agent_re_registers_comes_back_as_a_new_agent(tmp_path):
    """Machine loss inside the re-registration wait: the new, empty agent registers at once."""
    cluster = start_localmesos(tmp_path, agents=1, extra_args=TEST_ARGS)
    try:
        first = cluster.state()["slaves"][0]["id"]
        cluster._call("POST", "/_localmesos/agents/1/stop?keep_executors=true")
        cluster._call("POST", "/_localmesos/agents/1/start")
        assert not cluster.state()["slaves"][0]["active"]
        cluster._call("POST", "/_localmesos/agents/1/stop")
        cluster._call("POST", "/_localmesos/agents/1/start")
        [agent] = cluster.state()["slaves"]
        assert agent["id"] != first and agent["active"]
    finally:
        cluster.stop()
