"""Resource arithmetic: parsing offers, epsilon fits, port ranges, take and emitted JSON."""

from __future__ import annotations

import json

import addict
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.resources import (
    Demand,
    Insufficient,
    fits,
    fixed,
    lowest_ports,
    normalize_ranges,
    parse_offer,
    ranges_count,
    remove_port,
    sum_resources,
    take,
    take_ports,
)
from tests.data import MESOS_1_12
from tests.scheduler.builders import make_offer, resource

RECORDED = MESOS_1_12 / "scheduler_events.json"


def recorded_offer() -> dict:
    for rec in json.loads(RECORDED.read_text()):
        ev = rec["event"]
        if ev.get("type") == "OFFERS":
            return ev["offers"]["offers"][0]
    raise AssertionError("no OFFERS in the recording")


def test_parse_recorded_offer():
    v = parse_offer(recorded_offer())
    assert v.id.endswith("-O0") and v.agent_id.endswith("-S0") and v.hostname == "localhost"
    assert v.attributes == {"rack": "r1", "zone": "a"}
    assert v.scalars == {"cpus": 2.0, "mem": 23081.0, "disk": 252899.0}
    assert v.ports == ((31000, 32000),)
    assert v.roles == ("*",)


def test_parse_addict_offer():
    v = parse_offer(addict.Dict(recorded_offer()))
    assert v.scalars["cpus"] == 2.0 and v.attributes["rack"] == "r1"


@pytest.mark.parametrize("attr,expected", [
    ({"name": "a", "type": "TEXT", "text": {"value": "r1"}}, "r1"),
    ({"name": "a", "type": "SCALAR", "scalar": {"value": 2}}, "2.0"),
    ({"name": "a", "type": "RANGES", "ranges": {"range": [{"begin": 1, "end": 3}]}}, "[1-3]"),
    ({"name": "a", "type": "SET", "set": {"item": ["x", "y"]}}, "{x,y}"),
])
def test_attribute_values(attr, expected):
    o = make_offer()
    o["attributes"] = [attr]
    assert parse_offer(o).attributes == {"a": expected}


@pytest.mark.parametrize("have,need,ok", [
    (1.0, 1.0, True),
    (0.3, 0.1 + 0.2, True),          # 0.30000000000000004 fits in 0.3
    (1.0, 1.0004, True),             # below Mesos' resolution
    (1.0, 1.001, False),
    (0.0, 0.001, False),
])
def test_scalar_epsilon(have, need, ok):
    v = parse_offer(make_offer(cpus=have))
    assert (fits(v, Demand({"cpus": need})) is None) is ok


@pytest.mark.parametrize("x,expected", [
    (0.1875, 0.188), (0.1865, 0.187), (0.0004, 0.0), (0.0005, 0.001), (2.0, 2.0),
    (0.1 + 0.2, 0.3), (-0.0004, 0.0), (-0.0015, -0.002), (23081.0, 23081.0),
])
def test_fixed_rounds_like_mesos(x, expected):
    assert fixed(x) == expected


def test_repeated_subtraction_does_not_drift():
    v = parse_offer(make_offer(cpus=1.0, mem=100.0, ports=[]))
    for _ in range(10):
        v = take(v, Demand({"cpus": 0.1, "mem": 10.0})).view
    assert v.scalars["cpus"] == 0.0 and v.scalars["mem"] == 0.0
    assert fits(v, Demand({"cpus": 0.001})) == "insufficient cpus"


@pytest.mark.parametrize("demand,reason", [
    (Demand({"cpus": 5.0}), "insufficient cpus"),
    (Demand({"cpus": 1.0, "mem": 1e9}), "insufficient mem"),
    (Demand({"cpus": 1.0, "disk": 1e9}), "insufficient disk"),
    (Demand({"cpus": 1.0, "gpus": 1.0}), "insufficient gpus"),
    (Demand({"cpus": 1.0}, (8080,)), "port 8080 not offered"),
    (Demand({"cpus": 1.0}, (0,) * 12), "no free ports"),
    (Demand({"cpus": 1.0}, (31000,) + (0,) * 11), "no free ports"),
    (Demand({"cpus": 1.0}, (31000,) + (0,) * 10), None),
    (Demand({"cpus": 1.0}, (0,) * 11), None),
])
def test_shortfall_reasons(demand, reason):
    v = parse_offer(make_offer(cpus=4, mem=1024, disk=100, ports=[(31000, 31010)]))
    assert fits(v, demand) == reason


@pytest.mark.parametrize("ranges,port,expected", [
    ([(1, 10)], 1, ((2, 10),)),
    ([(1, 10)], 10, ((1, 9),)),
    ([(1, 10)], 5, ((1, 4), (6, 10))),
    ([(5, 5)], 5, ()),
    ([(1, 3), (7, 9)], 8, ((1, 3), (7, 7), (9, 9))),
    ([(1, 3)], 4, ((1, 3),)),
])
def test_remove_port_splits(ranges, port, expected):
    assert remove_port(normalize_ranges(ranges), port) == expected


def test_normalize_and_lowest():
    assert normalize_ranges([(5, 7), (1, 2), (3, 4), (10, 9)]) == ((1, 7),)
    assert lowest_ports(((1, 2), (5, 9)), 4) == [1, 2, 5, 6]
    assert lowest_ports(((1, 2),), 5) == [1, 2]
    assert lowest_ports(((1, 4),), 2, frozenset({1, 2})) == [3, 4]


def test_take_specific_and_any_ports():
    v = parse_offer(make_offer(ports=[(31000, 31005)]))
    t = take(v, Demand({"cpus": 1.0, "mem": 64.0}, (0, 31002, 0)))
    assert t.ports == [31000, 31002, 31001]  # in demand order: PORT0, PORT1, PORT2
    assert t.view.ports == ((31003, 31005),)
    scal, ports = sum_resources(t.resources)
    assert scal == {"cpus": 1.0, "mem": 64.0} and ports == [31000, 31001, 31002]
    ports_res = [r for r in t.resources if r["name"] == "ports"][0]
    assert ports_res["ranges"]["range"] == [{"begin": 31000, "end": 31002}]
    t2 = take(t.view, Demand({"cpus": 0.5}, (31004,)))
    assert t2.ports == [31004] and t2.view.ports == ((31003, 31003), (31005, 31005))
    with pytest.raises(Insufficient) as e:
        take(t2.view, Demand({"cpus": 0.5}, (31004,)))
    assert e.value.reason == "port 31004 not offered"


def test_emitted_resources_carry_the_offer_role_fields():
    v = parse_offer(recorded_offer())
    t = take(v, Demand({"cpus": 0.1, "mem": 32.0}, (0,)))
    for r in t.resources:
        assert r["allocation_info"] == {"role": "*"} and r["role"] == "*"
        assert r["type"] in ("SCALAR", "RANGES")
    assert [r["name"] for r in t.resources] == ["cpus", "mem", "ports"]
    assert t.resources[0]["scalar"] == {"value": 0.1}


def test_reserved_pool_used_first_and_role_filter():
    o = make_offer(cpus=1.0, mem=100.0, ports=[(31000, 31000)])
    o["resources"] += [resource("cpus", 0.5, role="analytics", allocation_role="analytics"),
                       resource("mem", 50.0, role="analytics", allocation_role="analytics")]
    v = parse_offer(o)
    assert v.scalars["cpus"] == 1.5 and v.roles == ("*", "analytics")
    star = frozenset({"*"})
    assert fits(v, Demand({"cpus": 1.2}), star) == "insufficient cpus"
    both = frozenset({"*", "analytics"})
    t = take(v, Demand({"cpus": 1.2, "mem": 20.0}), both)
    got = [(r["name"], r["role"], r["scalar"]["value"]) for r in t.resources]
    assert got == [("cpus", "analytics", 0.5), ("cpus", "*", 0.7), ("mem", "analytics", 20.0)]
    assert t.view.available(both).scalars["cpus"] == 0.3
    assert t.view.available(star).scalars["cpus"] == 0.3


def test_refined_reservations_and_skipped_resources():
    o = make_offer(cpus=1.0, ports=[])
    o["resources"].append({"name": "cpus", "type": "SCALAR", "scalar": {"value": 2.0},
                           "allocation_info": {"role": "r"},
                           "reservations": [{"type": "STATIC", "role": "r"}]})
    o["resources"].append({"name": "cpus", "type": "SCALAR", "scalar": {"value": 9.0},
                           "role": "*", "revocable": {}})
    o["resources"].append({"name": "disk", "type": "SCALAR", "scalar": {"value": 9.0},
                           "role": "*", "disk": {"persistence": {"id": "v"}}})
    v = parse_offer(o)
    assert v.scalars["cpus"] == 3.0 and v.scalars["disk"] == 10000.0
    t = take(v, Demand({"cpus": 2.0}), frozenset({"*", "r"}))
    assert t.resources == [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 2.0},
                            "allocation_info": {"role": "r"},
                            "reservations": [{"type": "STATIC", "role": "r"}]}]


def test_take_does_not_mutate_input():
    o = make_offer()
    before = json.dumps(o, sort_keys=True)
    v = parse_offer(o)
    t = take(v, Demand({"cpus": 1.0}, (0,)))
    t.resources[0]["allocation_info"]["role"] = "changed"
    assert json.dumps(o, sort_keys=True) == before
    assert v.scalars["cpus"] == 4.0 and v.pools[0].meta["allocation_info"]["role"] == "*"


@settings(max_examples=60, deadline=None)
@given(cpus=st.floats(0.1, 16), mem=st.floats(32, 4096),
       ranges=st.lists(st.tuples(st.integers(1000, 1100), st.integers(0, 20)), max_size=4),
       needs=st.lists(st.tuples(st.floats(0.01, 2), st.floats(1, 512), st.integers(0, 3)),
                      max_size=20))
def test_take_until_full_never_overcommits(cpus, mem, ranges, needs):
    ranges = [(b, b + n) for b, n in ranges]
    v0 = parse_offer(make_offer(cpus=cpus, mem=mem, ports=ranges))
    v = v0
    total_c = total_m = 0.0
    all_ports: list[int] = []
    for c, m, np_ in needs:
        d = Demand({"cpus": c, "mem": m}, (0,) * np_)
        if fits(v, d) is not None:
            with pytest.raises(Insufficient):
                take(v, d)
            continue
        t = take(v, d)
        scal, ports = sum_resources(t.resources)
        assert scal["cpus"] == fixed(c) and scal["mem"] == fixed(m) and len(ports) == np_
        total_c, total_m = total_c + scal["cpus"], total_m + scal["mem"]
        all_ports += ports
        v = t.view
        assert ranges_count(v.ports) == ranges_count(v0.ports) - len(all_ports)
    # within the offer as the master sees it (fixed point, 3 decimals)
    assert total_c <= fixed(cpus) + 1e-6 and total_m <= fixed(mem) + 1e-6
    assert len(all_ports) == len(set(all_ports))
    assert all(any(b <= p <= e for b, e in v0.ports) for p in all_ports)


@pytest.mark.parametrize("ranges,wanted,ports,left", [
    ([(1, 5)], [0, 0], [1, 2], ((3, 5),)),
    ([(1, 5)], [3, 0, 0], [3, 1, 2], ((4, 5),)),
    ([(1, 2), (8, 9)], [0, 9, 0], [1, 9, 2], ((8, 8),)),
    ([(1, 5)], [], [], ((1, 5),)),
])
def test_take_ports(ranges, wanted, ports, left):
    assert take_ports(ranges, wanted) == (ports, left)


@pytest.mark.parametrize("ranges,wanted,reason", [
    ([(1, 5)], [6], "port 6 not offered"),
    ([(1, 5)], [3, 3], "port 3 not offered"),       # the same port twice
    ([(1, 2)], [0, 0, 0], "no free ports"),
    ([(1, 2)], [1, 0, 0], "no free ports"),
])
def test_take_ports_refusals(ranges, wanted, reason):
    with pytest.raises(Insufficient) as e:
        take_ports(ranges, wanted)
    assert e.value.reason == reason
