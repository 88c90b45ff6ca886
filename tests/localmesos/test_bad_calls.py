"""Bad calls and bad launches get what a real Mesos 1.12 master gives (the recordings)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from tests.fixtures_mesos import start_localmesos
from tests.localmesos.helpers import RawClient, key_paths, recorded
from tests.support import assert_no_traceback, wait_until


@pytest.fixture
def raw(lm) -> Iterator[RawClient]:
    client = RawClient(lm.master)
    client.subscribe()
    try:
        yield client
    finally:
        client.sched_call("TEARDOWN")
        client.close()


def recorded_call(pred) -> dict:
    return next(c for c in recorded("scheduler_calls.json") if pred(c))


def test_subscribe_answer_and_first_events_match_the_recording(lm, raw: RawClient) -> None:
    real = recorded("scheduler_calls.json")[0]
    assert raw.status == 200
    assert set(raw.headers) == set(real["response_headers"])
    assert raw.headers["Transfer-Encoding"] == "chunked"
    assert raw.headers["Content-Type"] == "application/json"
    raw.wait_event("HEARTBEAT")
    events = [e for e, _, _ in raw.events]
    assert [e["type"] for e in events[:2]] == ["SUBSCRIBED", "HEARTBEAT"]
    real_events = recorded("scheduler_events.json")
    assert key_paths(events[0]) == key_paths(real_events[0]["event"])
    assert events[0]["subscribed"]["heartbeat_interval_seconds"] == 2.0  # the tests' flag
    offers = raw.wait_event("OFFERS")
    assert key_paths(offers) == key_paths(real_events[2]["event"])
    # Record lengths are byte lengths of the JSON that follows.
    for ev, length, _ in raw.events[:3]:
        assert length == len(json.dumps(ev, separators=(",", ":")).encode())


@pytest.mark.parametrize("which", ["NOT_A_CALL", "not json", "no stream id", "wrong stream id"])
def test_bad_calls_get_the_recorded_400(lm, raw: RawClient, which: str) -> None:
    fid = {"value": raw.framework_id}
    if which == "NOT_A_CALL":
        real = recorded_call(lambda c: isinstance(c["request"], dict)
                             and c["request"].get("type") == "NOT_A_CALL")
        status, headers, body = raw.call({"type": "NOT_A_CALL", "framework_id": fid})
    elif which == "not json":
        real = recorded_call(lambda c: c["request"] == "{not json")
        status, headers, body = raw.call(None, raw=b"{not json")
    elif which == "no stream id":
        real = recorded_call(lambda c: "Mesos-Stream-Id" not in c.get("request_headers", {"x": 1})
                             and c["status"] == 400)
        status, headers, body = raw.call({"type": "REVIVE", "framework_id": fid},
                                         {"Mesos-Stream-Id": None})
    else:
        real = recorded_call(lambda c: c.get("request_headers", {}).get("Mesos-Stream-Id")
                             == "00000000-0000-0000-0000-000000000000")
        status, headers, body = raw.call({"type": "REVIVE", "framework_id": fid},
                                         {"Mesos-Stream-Id": "00000000-0000-0000-0000-000000000000"})
        real["response_body"] = real["response_body"].replace(
            real["request"]["framework_id"]["value"], raw.framework_id)
    assert status == real["status"] == 400
    assert body.decode() == real["response_body"]
    assert headers["Content-Type"] == real["response_headers"]["Content-Type"]
    assert set(headers) == set(real["response_headers"])


def test_other_validation_errors(lm, raw: RawClient) -> None:
    status, _, body = raw.call({"type": "ACCEPT", "framework_id": {"value": raw.framework_id}})
    assert (status, body) == (400, b"Failed to validate scheduler::Call: Expecting 'accept' to be present")
    status, _, body = raw.call({"type": "REVIVE"})
    assert (status, body) == (400, b"Failed to validate scheduler::Call: Expecting 'framework_id' to be present")
    status, _, body = raw.call({"type": "REVIVE", "framework_id": {"value": "nope"}})
    assert (status, body) == (400, b"Framework cannot be found")
    status, _, body = raw.call({"type": "REVIVE", "framework_id": {"value": raw.framework_id}},
                               {"Content-Type": None})
    assert (status, body) == (400, b"Expecting 'Content-Type' to be present")


def test_good_calls_get_202_with_the_recorded_headers(lm, raw: RawClient) -> None:
    real = recorded_call(lambda c: isinstance(c["request"], dict)
                         and c["request"].get("type") == "REVIVE" and c["status"] == 202)
    status, headers, body = raw.sched_call("REVIVE", {"roles": ["*"]})
    assert (status, body) == (202, b"")
    assert set(headers) == set(real["response_headers"])
    # DECLINE of an unknown offer and ACCEPT without operations: 202, nothing happens.
    assert raw.sched_call("DECLINE", {"offer_ids": [{"value": "no-such-offer"}]})[0] == 202
    assert raw.sched_call("ACCEPT", {"offer_ids": [{"value": "no-such"}], "operations": []})[0] == 202


def _launch(raw: RawClient, offer_id: str, task: dict) -> None:
    status, _, body = raw.sched_call("ACCEPT", {
        "offer_ids": [{"value": offer_id}],
        "operations": [{"type": "LAUNCH", "launch": {"task_infos": [task]}}]})
    assert status == 202, body


def _task(tid: str, agent_id: str, cpus: float) -> dict:
    return {"task_id": {"value": tid}, "agent_id": {"value": agent_id}, "name": tid,
            "command": {"shell": True, "value": "sleep 5"},
            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus},
                           "allocation_info": {"role": "*"}}]}


def test_bad_launches_get_the_recorded_updates_and_change_nothing(lm, raw: RawClient) -> None:
    real = {row[0]: row for row in recorded("bad_launches.json")}
    offers = raw.wait_event("OFFERS")["offers"]["offers"]
    offer = offers[0]
    agent_id = offer["agent_id"]["value"]
    before = lm.state()["slaves"]

    _launch(raw, "no-such-offer", _task("bad1", agent_id, 0.1))
    ev = raw.wait_event("UPDATE", lambda e: e["update"]["status"]["task_id"]["value"] == "bad1")
    st = ev["update"]["status"]
    assert [st["task_id"]["value"], st["state"], st["reason"], st["source"], st["message"]] \
        == list(real["bad1"])
    assert "uuid" not in st

    _launch(raw, offer["id"]["value"], _task("toobig", agent_id, 999))
    ev = raw.wait_event("UPDATE", lambda e: e["update"]["status"]["task_id"]["value"] == "toobig")
    st = ev["update"]["status"]
    assert [st["state"], st["reason"], st["source"]] == list(real["toobig"][1:4])
    lo = offer["resources"][0]["ranges"]["range"][0]["begin"]
    assert st["message"] == (
        "Total resources cpus(allocated: *):999 required by task and its executor is more than "
        f"available ports(allocated: *):[{lo}-{lo + 999}]; cpus(allocated: *):4; "
        "mem(allocated: *):4096; disk(allocated: *):10000")

    # The offer was used up by that ACCEPT: launching on it again is an invalid offer.
    _launch(raw, offer["id"]["value"], _task("again", agent_id, 0.1))
    ev = raw.wait_event("UPDATE", lambda e: e["update"]["status"]["task_id"]["value"] == "again")
    assert ev["update"]["status"]["reason"] == "REASON_INVALID_OFFERS"

    # Nothing was allocated by any of it.
    after = lm.state()
    assert [s["used_resources"] for s in after["slaves"]] == [s["used_resources"] for s in before]
    assert after["frameworks"][0]["tasks"] == []


def test_offers_from_two_agents_cannot_be_aggregated(lm, raw: RawClient) -> None:
    offers = raw.wait_event("OFFERS")["offers"]["offers"]
    assert len({o["agent_id"]["value"] for o in offers}) >= 2
    a, b = offers[0], next(o for o in offers if o["agent_id"] != offers[0]["agent_id"])
    status, _, _ = raw.sched_call("ACCEPT", {
        "offer_ids": [a["id"], b["id"]],
        "operations": [{"type": "LAUNCH", "launch": {"task_infos": [
            _task("agg", a["agent_id"]["value"], 0.1)]}}]})
    assert status == 202
    ev = raw.wait_event("UPDATE", lambda e: e["update"]["status"]["task_id"]["value"] == "agg")
    st = ev["update"]["status"]
    assert (st["state"], st["reason"]) == ("TASK_LOST", "REASON_INVALID_OFFERS")
    assert st["message"] == ("Task launched with invalid offers: Aggregated offers must belong "
                             "to one single agent")


def test_duplicate_task_ids_and_missing_command_are_task_errors(lm, raw: RawClient) -> None:
    offers = raw.wait_event("OFFERS")["offers"]["offers"]
    first, second = offers[0], offers[1]
    _launch(raw, first["id"]["value"], _task("dup", first["agent_id"]["value"], 0.1))
    raw.wait_event("UPDATE", lambda e: e["update"]["status"]["state"] == "TASK_STARTING")
    twin = _task("dup", second["agent_id"]["value"], 0.1)
    bare = _task("bare", second["agent_id"]["value"], 0.1)
    del bare["command"]
    status, _, _ = raw.sched_call("ACCEPT", {
        "offer_ids": [second["id"]],
        "operations": [{"type": "LAUNCH", "launch": {"task_infos": [twin, bare]}}]})
    assert status == 202
    for tid, message in (("dup", "Task has duplicate ID: dup"),
                         ("bare", "Task should have at least one (but not both) of CommandInfo "
                                  "or ExecutorInfo present")):
        ev = raw.wait_event("UPDATE", lambda e, t=tid: e["update"]["status"]["task_id"]["value"]
                            == t and e["update"]["status"]["state"] == "TASK_ERROR")
        assert ev["update"]["status"]["message"] == message
        assert ev["update"]["status"]["reason"] == "REASON_TASK_INVALID"


def test_ids_that_cannot_name_a_sandbox_are_refused(lm, raw: RawClient) -> None:
    offer = raw.wait_event("OFFERS")["offers"]["offers"][0]
    _launch(raw, offer["id"]["value"], _task("../escape", offer["agent_id"]["value"], 0.1))
    ev = raw.wait_event("UPDATE", lambda e: e["update"]["status"]["state"] == "TASK_ERROR")
    assert ev["update"]["status"]["message"] == "'TaskID.value' '../escape' contains invalid characters"
    assert not list(lm.work_dir.rglob("escape"))


def test_heartbeats_come_at_the_advertised_interval(tmp_path) -> None:
    cluster = start_localmesos(tmp_path, agents=1, extra_args=("--heartbeat-interval", "0.3"))
    client = RawClient(cluster.master)
    try:
        client.subscribe()
        sub = client.wait_event("SUBSCRIBED")
        assert sub["subscribed"]["heartbeat_interval_seconds"] == 0.3
        client.wait_event("HEARTBEAT", timeout=5, start=4)  # a few periodic ones
        times = [t for e, _, t in client.events if e["type"] == "HEARTBEAT"]
        gaps = [b - a for a, b in zip(times[1:], times[2:], strict=False)]
        assert gaps and all(0.2 < g < 1.0 for g in gaps), gaps
        client.sched_call("TEARDOWN")
    finally:
        client.close()
        cluster.stop()


def test_removed_framework_gets_error_and_disconnected_one_gets_403(lm) -> None:
    first = RawClient(lm.master)
    first.subscribe({"failover_timeout": 30.0})
    fid = first.framework_id
    first.close()  # the scheduler goes away without TEARDOWN: the framework waits for it
    wait_until(lambda: not lm.state()["frameworks"][0]["active"], message="disconnected")
    status, _, body = first.sched_call("REVIVE")
    assert (status, body) == (403, b"Framework is not subscribed")

    again = RawClient(lm.master)
    again.subscribe({"id": {"value": fid}, "failover_timeout": 30.0})
    assert again.framework_id == fid
    assert again.sched_call("TEARDOWN")[0] == 202
    again.wait_event("__closed__")
    again.close()

    body = json.dumps({"type": "SUBSCRIBE", "framework_id": {"value": fid}, "subscribe": {
        "framework_info": {"user": "root", "name": "raw", "id": {"value": fid}}}})
    with socket.create_connection(("127.0.0.1", lm.port), timeout=10) as sock:
        sock.sendall(b"POST /api/v1/scheduler HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     b"application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
                     % len(body) + body.encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200")
    assert b'"message":"Framework has been removed"' in data and b'"type":"ERROR"' in data


def test_client_resetting_its_connection_is_no_error(lm) -> None:
    # An executor that exits (or a scheduler that dies) resets its connection, sometimes in the
    # middle of a request: the server just drops it, without a traceback in its output.
    import struct
    import urllib.request

    for data in (b"", b"POST /api/v1/scheduler HTTP/1.1\r\nHost: x\r\nContent-Le"):
        for _ in range(5):
            s = socket.create_connection(("127.0.0.1", lm.port))
            if data:
                s.sendall(data)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()  # RST, not FIN
    with urllib.request.urlopen(lm.url + "/health", timeout=5) as resp:
        assert resp.status == 200
    lm.stop()
    lm.proc.wait_for_line(lambda line: "localmesos stopped" in line, timeout=10)
    assert_no_traceback([lm.proc])
