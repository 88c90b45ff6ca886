"""Resource arithmetic and formats (pure functions, no processes)."""

from __future__ import annotations

import pytest

from localmesos import recordio
from localmesos.cluster import agent_attributes, agent_resources
from localmesos.resources import Resources, format_proto, from_proto, parse_spec
from tests.localmesos.helpers import recorded


def test_parse_and_state_form() -> None:
    r = parse_spec("cpus:4;mem:4096;disk:10000;ports:[31000-31999]")
    assert r.to_state() == {"cpus": 4.0, "disk": 10000.0, "gpus": 0.0, "mem": 4096.0,
                            "ports": "[31000-31999]"}
    assert parse_spec("ports:[1-2, 3-5,10-10]").ranges["ports"] == ((1, 5), (10, 10))
    for bad in ("cpus", "cpus:x", "ports:[5-1]", "mem:-1"):
        with pytest.raises(ValueError):
            parse_spec(bad)


def test_scalars_do_not_drift() -> None:
    r = parse_spec("cpus:4")
    tenth = parse_spec("cpus:0.1")
    for _ in range(10):
        r = r - tenth
    assert r.scalar("cpus") == 3.0
    assert r.contains(parse_spec("cpus:3")) and not r.contains(parse_spec("cpus:3.001"))


def test_ranges_subtract_add_contain() -> None:
    r = parse_spec("ports:[31000-31999]")
    used = from_proto([{"name": "ports", "type": "RANGES",
                        "ranges": {"range": [{"begin": 31000, "end": 31000},
                                             {"begin": 31500, "end": 31509}]}}])
    left = r - used
    assert left.ranges["ports"] == ((31001, 31499), (31510, 31999))
    assert not left.contains(used) and r.contains(used)
    assert (left + used) == r
    assert (r - r).empty()


def test_mesos_text_form_matches_the_recorded_error() -> None:
    message = recorded("bad_launches.json")[1][4]
    task = [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 999},
             "allocation_info": {"role": "*"}}]
    have = parse_spec("cpus:2;mem:23081;disk:252899;ports:[31000-32000]")
    text = (f"Total resources {format_proto(task)} required by task and its executor is more "
            f"than available {format_proto(have.to_proto('*', ranges_first=True))}")
    assert text == message


def test_offer_resource_form_matches_the_recording() -> None:
    real = recorded("scheduler_events.json")[2]["event"]["offers"]["offers"][0]["resources"]
    ours = parse_spec("cpus:2;mem:23081;disk:252899;ports:[31000-32000]").to_proto(
        "*", with_role=True, ranges_first=True)
    assert ours == real


def test_agents_get_disjoint_ports_and_rack_spread() -> None:
    base = parse_spec("cpus:1;ports:[31000-31999]")
    assert [agent_resources(base, k).ranges["ports"] for k in (1, 2, 3)] == [
        ((31000, 31999),), ((32000, 32999),), ((33000, 33999),)]
    wide = parse_spec("ports:[10000-11499]")
    assert agent_resources(wide, 2).ranges["ports"] == ((12000, 13499),)
    assert [agent_attributes([], k) for k in (1, 2, 3, 4)] == [
        [("rack", "r1")], [("rack", "r2")], [("rack", "r1")], [("rack", "r2")]]


def test_recordio_round_trip_in_any_chunking() -> None:
    events = [{"type": "HEARTBEAT"}, {"type": "UPDATE", "update": {"status": {"message": "é"}}}]
    data = b"".join(recordio.encode(e) for e in events)
    assert data.startswith(b"20\n")  # the recorded HEARTBEAT record length
    for size in (1, 3, 7, len(data)):
        dec = recordio.Decoder()
        out = []
        for i in range(0, len(data), size):
            out += dec.feed(data[i:i + size])
        assert out == events


def test_resources_value_semantics() -> None:
    a = Resources({"cpus": 1000}, {})
    b = a + Resources({"cpus": 500}, {})
    assert a.scalar("cpus") == 1.0 and b.scalar("cpus") == 1.5
