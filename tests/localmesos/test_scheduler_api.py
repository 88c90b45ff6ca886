"""The scheduler API through pymesos's own MesosSchedulerDriver against a real localmesos."""

from __future__ import annotations

import time

from tests.localmesos.helpers import (
    PROTOCOL,
    Recorder,
    command_task,
    offer_ranges,
    offer_scalar,
    ports,
    recorded,
)
from tests.support import assert_no_traceback, wait_until


def test_offers_carry_each_agents_resources_and_attributes(lm, sched: Recorder) -> None:
    offers = sched.wait_for(lambda: len(sched.of("offer")) >= 3 and sched.of("offer"),
                            what="one offer per agent")
    by_host = {o["hostname"]: o for o in offers}
    assert set(by_host) == {"127.0.1.1", "127.0.1.2", "127.0.1.3"}
    blocks = []
    for host in sorted(by_host):
        o = by_host[host]
        assert offer_scalar(o, "cpus") == 4.0
        assert offer_scalar(o, "mem") == 4096.0
        assert offer_scalar(o, "disk") == 10000.0
        [(low, high)] = offer_ranges(o)
        # a whole block of its own (localmesos/portblocks.py); which block depends on what other
        # clusters on this machine hold, but agents claim downwards in order
        assert low % 1000 == 0 and high == low + 999 and high < 32768
        blocks.append(low)
        assert o["url"]["address"]["ip"] == host  # the agent's own address (addresses.py)
        assert o["framework_id"]["value"] == sched.framework_id
    assert blocks == sorted(blocks, reverse=True) and len(set(blocks)) == 3
    racks = {h: [a["text"]["value"] for a in o["attributes"] if a["name"] == "rack"][0]
             for h, o in by_host.items()}
    assert racks == {"127.0.1.1": "r1", "127.0.1.2": "r2",
                     "127.0.1.3": "r1"}
    # Same fields as a real master's offer (recording), nothing missing, nothing extra.
    real = recorded("scheduler_events.json")[2]["event"]["offers"]["offers"][0]
    assert set(by_host["127.0.1.1"]) == set(real)
    assert [set(r) for r in by_host["127.0.1.1"]["resources"]] == \
        [set(r) for r in real["resources"]]


def test_command_task_runs_to_finished_with_the_recorded_states(lm, sched: Recorder) -> None:
    offer = sched.take_offer()
    task = command_task("hello", offer, "echo hello from $MESOS_TASK_ID; sleep 0.3",
                        extra_resources=[ports((offer_ranges(offer)[0][0],) * 2)])
    sched.driver.launchTasks(offer["id"], [task])
    done = sched.wait_state("hello", "TASK_FINISHED")
    assert sched.states("hello") == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]
    assert done["message"] == "Command exited with status 0"
    # Each update looks like the recorded command-executor updates, key for key.
    real = [e["event"]["update"]["status"] for e in recorded("scheduler_events.json")
            if e["event"]["type"] == "UPDATE" and e["event"]["update"]["status"]["source"]
            == "SOURCE_EXECUTOR"]
    real_by_state = {s["state"]: s for s in real}
    for st in sched.statuses("hello"):
        assert set(st) == set(real_by_state[st["state"]]), st["state"]
        assert set(st["container_status"]) == set(real_by_state[st["state"]]["container_status"])
        assert st["executor_id"]["value"] == "hello"
        assert st["source"] == "SOURCE_EXECUTOR"
        assert len(st["uuid"]) == 24
    # Output went to the sandbox.
    sandbox = next(lm.work_dir.glob("slaves/*/frameworks/*/executors/hello/runs/*"))
    assert (sandbox / "stdout").read_text().startswith("hello from")
    # Resources come back in a new offer once the task is over.
    sched.wait_for(lambda: any(offer_ranges(o) and offer_ranges(o)[0][0] == offer_ranges(offer)[0][0]
                               and o["agent_id"] == offer["agent_id"]
                               for o in sched.offers.values()), what="the freed port re-offered")


def test_kill_ends_a_task_with_killed_and_the_recorded_message(lm, sched: Recorder) -> None:
    offer = sched.take_offer()
    sched.driver.launchTasks(offer["id"], [command_task("long", offer, "sleep 60")])
    sched.wait_state("long", "TASK_RUNNING")
    t0 = time.monotonic()
    sched.driver.killTask({"value": "long"})
    killed = sched.wait_state("long", "TASK_KILLED")
    took = time.monotonic() - t0
    assert killed["message"] == "Command terminated with signal Terminated"
    assert took < 2.0, took
    assert sched.states("long") == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLED"]


def test_kill_grace_period_then_sigkill(lm, sched: Recorder) -> None:
    offer = sched.take_offer()
    grace = {"grace_period": {"nanoseconds": 500_000_000}}
    sched.driver.launchTasks(offer["id"], [command_task(
        "stubborn", offer, "trap '' TERM; touch trapped; while true; do sleep 0.1; done",
        kill_policy=grace)])
    sched.wait_state("stubborn", "TASK_RUNNING")
    # RUNNING comes as the shell starts: kill only once it ignores SIGTERM (else it just dies).
    wait_until(lambda: list(lm.work_dir.glob("slaves/*/frameworks/*/executors/stubborn/runs/*/"
                                             "trapped")), timeout=10, message="the trap set")
    t0 = time.monotonic()
    sched.driver.killTask({"value": "stubborn"})
    killed = sched.wait_state("stubborn", "TASK_KILLED")
    took = time.monotonic() - t0
    assert 0.45 <= took < 3.0, took
    assert "signal" in killed["message"]


def test_failed_command_and_its_environment(lm, sched: Recorder) -> None:
    offer = sched.take_offer()
    env = {"variables": [{"name": "APP_VAR", "value": "x"}]}
    task = command_task("env", offer, "env | sort > env.txt; exit 3")
    task["command"]["environment"] = env
    sched.driver.launchTasks(offer["id"], [task])
    failed = sched.wait_state("env", "TASK_FAILED")
    assert failed["message"] == "Command exited with status 3"
    sandbox = next(lm.work_dir.glob("slaves/*/frameworks/*/executors/env/runs/*"))
    seen = dict(line.split("=", 1) for line in (sandbox / "env.txt").read_text().splitlines()
                if "=" in line)
    real = dict(line.split("=", 1) for line in
                (PROTOCOL / "command_task_env.txt").read_text().splitlines())
    assert set(real) <= set(seen), set(real) - set(seen)
    assert seen["APP_VAR"] == "x"
    assert seen["MESOS_SANDBOX"] == str(sandbox) == seen["MESOS_DIRECTORY"]
    assert seen["MESOS_EXECUTOR_ID"] == "env"
    assert seen["MESOS_FRAMEWORK_ID"] == sched.framework_id
    assert seen["MESOS_SLAVE_ID"] == offer["agent_id"]["value"]
    assert "MESOS_TASK_ID" not in seen  # real Mesos sets none either


def test_decline_filter_withholds_that_agent_for_refuse_seconds(lm, sched: Recorder) -> None:
    sched.wait_for(lambda: len(sched.offers) == 3, what="three offers")
    offer = sched.take_offer("127.0.1.2")
    mark = sched.mark()
    t0 = time.monotonic()
    sched.driver.declineOffer(offer["id"], {"refuse_seconds": 1.5})
    again = sched.wait_for(lambda: [o for o in sched.since(mark, "offer")
                                    if o["hostname"] == "127.0.1.2"], timeout=10,
                           what="agent2 offered again")
    waited = time.monotonic() - t0
    assert 1.4 <= waited < 4.0, waited
    assert again[0]["id"] != offer["id"]


def test_suppress_then_revive(lm, sched: Recorder) -> None:
    sched.wait_for(lambda: len(sched.offers) == 3, what="three offers")
    sched.driver.suppressOffers()
    for o in list(sched.offers.values()):
        sched.driver.declineOffer(o["id"], {"refuse_seconds": 0})
    sched.offers.clear()
    mark = sched.mark()
    # Suppressed: no offer may come, even though nothing is filtered. Wait for a full
    # allocation pass to have happened (the master answers /state after it) plus margin.
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        lm.state()
        assert sched.since(mark, "offer") == []
    state = lm.state()
    assert all(s["offered_resources"]["cpus"] == 0 for s in state["slaves"])
    sched.driver.reviveOffers()
    sched.wait_for(lambda: len(sched.since(mark, "offer")) == 3, what="offers after REVIVE")


def test_reconciliation_explicit_and_implicit(lm, sched: Recorder) -> None:
    offer = sched.take_offer()
    sched.driver.launchTasks(offer["id"], [command_task("r1", offer, "sleep 30")])
    sched.wait_state("r1", "TASK_RUNNING")
    # Only the answers: the agent may still be re-sending r1's RUNNING (acknowledged late).
    def answers() -> list[dict]:
        return [s for s in sched.since(mark, "status") if s.get("reason") == "REASON_RECONCILIATION"]

    mark = sched.mark()
    sched.driver.reconcileTasks([{"task_id": {"value": "r1"}},
                                 {"task_id": {"value": "never-existed"}}])
    got = sched.wait_for(lambda: len(answers()) >= 2 and answers(),
                         what="explicit reconciliation answers")
    assert len(got) == 2
    by_id = {s["task_id"]["value"]: s for s in got}
    assert by_id["r1"]["state"] == "TASK_RUNNING"
    assert by_id["r1"]["reason"] == "REASON_RECONCILIATION"
    assert by_id["r1"]["message"] == "Reconciliation: Latest task state"
    assert by_id["never-existed"]["state"] == "TASK_LOST"
    assert by_id["never-existed"]["message"] == "Reconciliation: Task is unknown"
    real = {e["event"]["update"]["status"]["task_id"]["value"]: e["event"]["update"]["status"]
            for e in recorded("scheduler_events.json")
            if e["event"]["type"] == "UPDATE"
            and e["event"]["update"]["status"].get("reason") == "REASON_RECONCILIATION"}
    assert set(by_id["r1"]) == set(real["env-03538e"])
    assert set(by_id["never-existed"]) == set(real["never-existed"])
    mark = sched.mark()
    sched.driver.reconcileTasks([])
    implicit = sched.wait_for(answers, what="implicit answer")
    assert [(s["task_id"]["value"], s["state"]) for s in implicit] == [("r1", "TASK_RUNNING")]


def test_state_has_the_shape_of_mesos_state(lm, sched: Recorder) -> None:
    offer = sched.take_offer("127.0.1.1")
    sched.driver.launchTasks(offer["id"], [command_task("s1", offer, "sleep 30", cpus=0.5,
                                                        mem=64)])
    sched.wait_state("s1", "TASK_RUNNING")
    state = lm.state()
    real = recorded("GET_state_with_tasks.json")["body"]
    assert set(real) <= set(state), set(real) - set(state)
    assert set(real["slaves"][0]) <= set(state["slaves"][0])
    assert set(real["frameworks"][0]) <= set(state["frameworks"][0])
    real_task = real["frameworks"][0]["completed_tasks"][0]
    fw = state["frameworks"][0]
    task = fw["tasks"][0]
    assert set(real_task) <= set(task)
    assert task["state"] == "TASK_RUNNING" and task["executor_id"] == ""
    assert [s["state"] for s in task["statuses"]] == ["TASK_STARTING", "TASK_RUNNING"]
    agent1 = next(s for s in state["slaves"] if s["hostname"] == "127.0.1.1")
    assert agent1["used_resources"]["cpus"] == 0.5
    assert agent1["used_resources"]["mem"] == 64.0
    assert agent1["attributes"] == {"rack": "r1"}
    low, high = map(int, agent1["resources"]["ports"].strip("[]").split("-"))
    assert low % 1000 == 0 and high == low + 999  # one whole block (localmesos/portblocks.py)
    assert fw["used_resources"]["cpus"] == 0.5
    assert fw["id"] == sched.framework_id and fw["active"] is True


def test_task_killing_state_for_frameworks_that_ask_for_it(lm) -> None:
    from tests.localmesos.helpers import start_driver, stop_driver
    rec = Recorder()
    start_driver(lm.master, rec, capabilities=[{"type": "TASK_KILLING_STATE"}])
    try:
        offer = rec.take_offer()
        rec.driver.launchTasks(offer["id"], [command_task("k", offer, "sleep 60")])
        rec.wait_state("k", "TASK_RUNNING")
        rec.driver.killTask({"value": "k"})
        rec.wait_state("k", "TASK_KILLED")
        assert rec.states("k") == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLING", "TASK_KILLED"]
    finally:
        stop_driver(rec.driver)


def test_two_offers_of_one_agent_combine(lm, sched: Recorder) -> None:
    first = sched.take_offer("127.0.1.3")
    sched.driver.declineOffer(first["id"], {"refuse_seconds": 0})
    mark = sched.mark()
    # A launch that uses a bit of agent3, leaving the rest to come back as a second offer.
    second = sched.take_offer("127.0.1.3")
    sched.driver.launchTasks(second["id"], [command_task("small", second, "sleep 30")],
                             {"refuse_seconds": 0})
    sched.wait_state("small", "TASK_RUNNING")
    rest = sched.take_offer("127.0.1.3")
    assert offer_scalar(rest, "cpus") == 3.9
    assert sched.since(mark, "offer")


def test_many_tasks_at_once_never_overcommit(lm, sched: Recorder, tmp_path) -> None:
    """Launch everything every offer can hold (0.5 cpu each), twice over; count and clean up."""
    launched: list[str] = []
    go = tmp_path / "go"  # the first 24 tasks run until the test has counted them
    hold = f"while [ ! -e {go} ]; do sleep 0.05; done"

    def fill(offer: dict, total: int) -> None:
        # Capped at `total`: second-round tasks end at once, so offers may hold more than is left.
        n = min(int(offer_scalar(offer, "cpus") / 0.5), total - len(launched))
        tasks = [command_task(f"m{len(launched) + i}", offer, hold, cpus=0.5, mem=64)
                 for i in range(n)]
        launched.extend(t["task_id"]["value"] for t in tasks)
        sched.driver.launchTasks(offer["id"], tasks, {"refuse_seconds": 0})

    for _ in range(3):
        fill(sched.take_offer(), 24)
    state = lm.state()
    assert all(s["used_resources"]["cpus"] <= s["resources"]["cpus"] for s in state["slaves"])
    assert sum(s["used_resources"]["cpus"] for s in state["slaves"]) == 12.0
    assert len(launched) == 24
    go.touch()
    # Freed resources come back as offers (leftover memory alone too): fill them again.
    while len(launched) < 48:
        fill(sched.take_offer(timeout=20), 48)
    sched.wait_for(lambda: all("TASK_FINISHED" in sched.states(t) for t in launched),
                   timeout=30, what="every task finished")
    assert all(sched.states(t) == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]
               for t in launched)
    state = lm.state()
    assert all(s["used_resources"]["cpus"] == 0 for s in state["slaves"])
    assert_no_traceback([lm.proc])
