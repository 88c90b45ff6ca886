"""The task state machine, table-driven: every Mesos state, health transitions, events."""

from __future__ import annotations

import pytest

from scheduler import taskstate as ts

NOW = 1_795_000_000.0  # 2026-11-18T...Z; any fixed epoch will do


def task(**overrides):
    doc = {
        "id": "jpm_quotes.0123456789abcdef0123456789abcdef", "appId": "/jpm/quotes",
        "host": "127.0.1.1", "slaveId": "A1", "agentId": "A1",
        "ipAddresses": [{"ipAddress": "127.0.0.1", "protocol": "IPv4"}], "ports": [31000],
        "servicePorts": [], "stagedAt": "2026-11-24T06:00:00.000Z", "startedAt": None,
        "version": "2026-11-24T05:59:59.000Z", "state": ts.STAGING, "healthy": None,
        "healthCheckResults": [], "message": None, "reason": None, "attributes": {},
        "resources": {"cpus": 0.1, "mem": 32, "disk": 0}, "killRequested": False,
    }
    doc.update(overrides)
    return doc


def status(state, **extra):
    return {"task_id": {"value": task()["id"]}, "state": state, **extra}


@pytest.mark.parametrize("state,active,terminal,lost", [
    (ts.STAGING, True, False, False),
    (ts.STARTING, True, False, False),
    (ts.RUNNING, True, False, False),
    (ts.KILLING, True, False, False),
    (ts.FINISHED, False, True, False),
    (ts.FAILED, False, True, False),
    (ts.KILLED, False, True, False),
    (ts.ERROR, False, True, False),
    (ts.LOST, False, True, True),
    (ts.DROPPED, False, True, True),
    (ts.UNREACHABLE, False, False, True),  # may still run: the unreachable strategy decides
    (ts.GONE, False, True, True),
    (ts.GONE_BY_OPERATOR, False, True, True),
    (ts.UNKNOWN, False, False, True),
    ("RUNNING", True, False, False),          # short names are accepted
    ("TASK_SOMETHING_NEW", False, False, True),  # unknown names: TASK_UNKNOWN
])
def test_classification(state, active, terminal, lost):
    assert ts.is_active(state) is active
    assert ts.is_terminal(state) is terminal
    assert ts.is_lost_like(state) is lost


def test_every_state_is_classified_exactly_once():
    assert ts.ACTIVE_STATES.isdisjoint(ts.TERMINAL_STATES)
    assert ts.UNREACHABLE_STATES.isdisjoint(ts.TERMINAL_STATES | ts.ACTIVE_STATES)
    assert len(ts.ALL_STATES) == 14
    assert ts.LOST_LIKE_STATES <= ts.TERMINAL_STATES | ts.UNREACHABLE_STATES
    assert {ts.GONE, ts.GONE_BY_OPERATOR} <= ts.TERMINAL_STATES  # known not to run


@pytest.mark.parametrize("state,kill_requested,failure", [
    (ts.FAILED, False, True),
    (ts.FINISHED, False, True),   # a service that exits on its own failed
    (ts.ERROR, False, True),
    (ts.LOST, False, True),
    (ts.KILLED, False, True),     # killed by someone else (e.g. the agent)
    (ts.KILLED, True, False),     # we asked for it
    (ts.FINISHED, True, False),
    (ts.LOST, True, True),        # vanished before the kill landed
    (ts.RUNNING, False, False),
    (ts.UNREACHABLE, False, True),  # counted when it is expunged
])
def test_is_failure(state, kill_requested, failure):
    assert ts.is_failure(task(killRequested=kill_requested), state) is failure


def test_running_sets_started_at_once_and_emits_status_event():
    doc, events = ts.apply_status(task(), status(ts.RUNNING), NOW)
    assert doc["state"] == ts.RUNNING
    assert doc["startedAt"].endswith("Z")
    assert [e[0] for e in events] == ["status_update_event"]
    assert events[0][1]["taskStatus"] == ts.RUNNING and events[0][1]["appId"] == "/jpm/quotes"
    again, events = ts.apply_status(doc, status(ts.RUNNING), NOW + 60)
    assert again["startedAt"] == doc["startedAt"]
    assert events == []  # nothing changed, nothing to tell


@pytest.mark.parametrize("state", sorted(ts.TERMINAL_STATES))
def test_terminal_states_remove_the_task(state):
    doc, events = ts.apply_status(task(state=ts.RUNNING), status(state, message="bye"), NOW)
    assert doc is None
    assert [e[0] for e in events] == ["status_update_event"]
    assert events[0][1]["taskStatus"] == state and events[0][1]["message"] == "bye"


def test_health_transitions_with_label_and_message():
    running, _ = ts.apply_status(task(), status(ts.RUNNING), NOW)
    assert running["healthy"] is None
    healthy, events = ts.apply_status(running, status(ts.RUNNING, healthy=True), NOW + 1)
    assert healthy["healthy"] is True
    assert [e[0] for e in events] == ["health_status_changed_event"]
    assert events[0][1]["alive"] is True
    result = healthy["healthCheckResults"][0]
    assert result["alive"] is True and result["consecutiveFailures"] == 0
    assert result["firstSuccess"] == result["lastSuccess"]

    msg = "HTTP health check failed: 500 Internal Server Error; 3 consecutive failures"
    sick, events = ts.apply_status(healthy, status(
        ts.RUNNING, healthy=False, message=msg,
        labels={"labels": [{"key": "consecutiveFailures", "value": "3"}]}), NOW + 10)
    assert sick["healthy"] is False and sick["message"] == msg
    assert events[0][1]["alive"] is False
    result = sick["healthCheckResults"][0]
    assert result["alive"] is False and result["consecutiveFailures"] == 3
    assert result["lastFailureCause"] == msg
    assert result["firstSuccess"] == healthy["healthCheckResults"][0]["firstSuccess"]

    # a status without `healthy` (e.g. a reconciliation answer) keeps the verdict
    same, events = ts.apply_status(sick, status(ts.RUNNING), NOW + 11)
    assert same["healthy"] is False and events == []


def test_unhealthy_without_label_counts_up():
    running, _ = ts.apply_status(task(), status(ts.RUNNING), NOW)
    sick, _ = ts.apply_status(running, status(ts.RUNNING, healthy=False, message="x"), NOW)
    assert sick["healthCheckResults"][0]["consecutiveFailures"] == 1


def test_killing_keeps_health_and_reason_is_recorded():
    doc = task(state=ts.RUNNING, healthy=True, startedAt="2026-11-24T06:00:01.000Z")
    killing, events = ts.apply_status(doc, status(ts.KILLING, reason="REASON_TASK_KILLED"), NOW)
    assert killing["state"] == ts.KILLING and killing["healthy"] is True
    assert killing["reason"] == "REASON_TASK_KILLED"
    assert events[0][1]["taskStatus"] == ts.KILLING


def test_input_document_is_not_mutated():
    doc = task()
    ts.apply_status(doc, status(ts.RUNNING, healthy=True), NOW)
    assert doc == task()


def test_agent_id_filled_from_status_when_missing():
    doc, _ = ts.apply_status(task(agentId=None, slaveId=None),
                             status(ts.RUNNING, agent_id={"value": "A9"}), NOW)
    assert doc["agentId"] == doc["slaveId"] == "A9"


@pytest.mark.parametrize("state", [ts.UNREACHABLE, ts.UNKNOWN])
def test_unreachable_task_keeps_its_document_until_it_is_back(state):
    running, _ = ts.apply_status(task(), status(ts.RUNNING, healthy=True), NOW)
    gone, events = ts.apply_status(running, status(state, reason="REASON_AGENT_REMOVED"), NOW + 5)
    assert gone["state"] == state and gone["healthy"] is None
    assert gone["unreachableSince"] == ts.format_time(NOW + 5)
    assert [e[1]["taskStatus"] for e in events] == [state]
    still, _ = ts.apply_status(gone, status(ts.UNREACHABLE), NOW + 9)
    assert still["unreachableSince"] == gone["unreachableSince"]  # since it first went away
    back, events = ts.apply_status(still, status(ts.RUNNING, reason="REASON_AGENT_REREGISTERED"),
                                   NOW + 12)
    assert back["state"] == ts.RUNNING and "unreachableSince" not in back
    assert back["startedAt"] == running["startedAt"]
    assert [e[1]["taskStatus"] for e in events] == [ts.RUNNING]
