"""scheduler.service_ports: Marathon's service-port assignment, pure."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.service_ports import (
    DEFAULT_RANGE,
    PortRange,
    ServicePortConflict,
    ServicePortsExhausted,
    assign,
    keep_previous,
    ports_in_use,
    service_ports,
    unchanged,
)


def app(app_id: str, *ports: int) -> dict:
    return {"id": app_id, "portDefinitions": [{"port": p, "protocol": "tcp"} for p in ports]}


def test_port_zero_gets_the_lowest_free_port_of_the_range():
    assert service_ports(assign(app("/a", 0, 0), None, {})) == [10000, 10001]
    used = ports_in_use([app("/b", 10000, 10002)], "/a")
    assert used == {10000: "/b", 10002: "/b"}
    assert service_ports(assign(app("/a", 0, 0), None, used)) == [10001, 10003]


def test_a_fixed_port_is_kept_and_skipped_by_the_assignment():
    assert service_ports(assign(app("/a", 0, 10000, 80), None, {})) == [10001, 10000, 80]


def test_a_fixed_port_another_app_has_is_a_conflict_naming_it():
    with pytest.raises(ServicePortConflict) as err:
        assign(app("/a", 0, 10005, 80), None, {10005: "/b", 80: "/c"})
    assert err.value.clashes == [(1, 10005, "/b"), (2, 80, "/c")]
    assert err.value.details == [
        {"path": "/portDefinitions/1/port",
         "errors": ["service port 10005 is already used by app /b"]},
        {"path": "/portDefinitions/2/port", "errors": ["service port 80 is already used by app /c"]}]


def test_an_update_sending_zero_again_keeps_the_ports_it_had():
    before = app("/a", 10007, 10003)
    assert service_ports(assign(app("/a", 0, 0), before, {10000: "/b"})) == [10007, 10003]
    # one more definition: the old ones first, in order, then a new one
    assert service_ports(assign(app("/a", 0, 0, 0), before, {})) == [10007, 10003, 10000]
    # a definition naming one of its old ports explicitly: the other zero takes the other
    assert service_ports(assign(app("/a", 10003, 0), before, {})) == [10003, 10007]
    # fewer definitions: the first old port is kept
    assert service_ports(assign(app("/a", 0), before, {})) == [10007]


def test_keep_previous_gives_back_old_ports_only():
    before = app("/a", 10007)
    assert service_ports(keep_previous(app("/a", 0, 0), before)) == [10007, 0]
    assert service_ports(keep_previous(app("/a", 0), None)) == [0]


def test_old_ports_outside_the_range_are_not_reused():
    narrow = PortRange(20000, 20002)
    assert service_ports(assign(app("/a", 0), app("/a", 10000), {}, narrow)) == [20000]


def test_an_exhausted_range_is_an_error():
    with pytest.raises(ServicePortsExhausted) as err:
        assign(app("/a", 0, 0), None, {20000: "/b"}, PortRange(20000, 20002))
    assert "20000-20001" in str(err.value)


def test_no_port_definitions_assign_nothing():
    doc = {"id": "/a", "portDefinitions": []}
    assert assign(doc, None, {}) == doc


def test_the_input_document_is_not_changed():
    doc = app("/a", 0)
    assign(doc, None, {})
    assert doc == app("/a", 0)


def test_a_range_must_be_sane():
    for low, high in ((0, 10), (10, 10), (20, 10), (1, 70000)):
        with pytest.raises(ValueError):
            PortRange(low, high)
    assert 10000 in DEFAULT_RANGE and 19999 in DEFAULT_RANGE and 20000 not in DEFAULT_RANGE


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.sampled_from([0, 0, 0, 10000, 10001, 10003, 15]), max_size=4),
                min_size=1, max_size=8))
def test_creates_one_after_another_never_share_a_port(definitions):
    """Apps created in turn (each assignment over the ports the earlier ones hold): every
    assigned port is in the range, explicit ports are kept, and no port has two owners —
    or the create is refused with the app that has it."""
    stored: list[dict] = []
    narrow = PortRange(10000, 10006)
    for i, ports in enumerate(definitions):
        new = app(f"/app{i}", *ports)
        try:
            done = assign(new, None, ports_in_use(stored, new["id"]), narrow)
        except ServicePortConflict as exc:
            owners = {p: a["id"] for a in stored for p in service_ports(a)}
            assert all(owners[port] == other for _, port, other in exc.clashes)
            continue
        except ServicePortsExhausted:
            held = {p for a in stored for p in service_ports(a)} | set(ports)
            free = [p for p in range(narrow.low, narrow.high) if p not in held]
            assert len(free) < ports.count(0)  # not enough left for its zeros
            continue
        got = service_ports(done)
        assert [g for g, p in zip(got, ports, strict=True) if p] == [p for p in ports if p]
        assert all(g in narrow for g, p in zip(got, ports, strict=True) if p == 0)
        stored.append(done)
    everything = [p for a in stored for p in set(service_ports(a))]
    assert len(everything) == len(set(everything))


def test_ports_are_unchanged_only_when_every_one_is_assigned_and_the_same():
    stored = app("/a", 10000, 10001)
    assert unchanged(app("/a", 10000, 10001), stored)  # a scale: nothing to read or check
    assert not unchanged(app("/a", 10000, 10001), None)  # a create is always checked
    assert not unchanged(app("/a", 10000, 0), stored)  # a zero is assigned
    assert not unchanged(app("/a", 10001, 10000), stored)  # order matters (PORT0, PORT1)
    assert not unchanged(app("/a", 10000, 10001, 10002), stored)
    assert not unchanged(app("/a", 0), app("/a", 0))
    assert unchanged(app("/a"), app("/a"))  # no port definitions


def bridge_app(app_id: str, *service: int) -> dict:
    """A stored Docker app on a bridge network: its service ports are its port mappings'."""
    return {"id": app_id, "portDefinitions": [],
            "container": {"type": "DOCKER", "portMappings": [
                {"containerPort": 80 + i, "hostPort": 0, "servicePort": p, "protocol": "tcp"}
                for i, p in enumerate(service)]}}


def test_port_mappings_service_ports_follow_the_same_rules():
    used = ports_in_use([app("/host", 10000), bridge_app("/b", 10001, 10003)], "/a")
    assert used == {10000: "/host", 10001: "/b", 10003: "/b"}
    assigned = assign(bridge_app("/a", 0, 0, 10009), None, used)
    assert service_ports(assigned) == [10002, 10004, 10009]
    assert [m["containerPort"] for m in assigned["container"]["portMappings"]] == [80, 81, 82]
    assert assigned["portDefinitions"] == []
    # an update sending 0 again keeps them; one that names them all is unchanged
    assert service_ports(keep_previous(bridge_app("/a", 0, 0, 10009), assigned)) == \
        [10002, 10004, 10009]
    assert unchanged(bridge_app("/a", 10002, 10004, 10009), assigned)
    # a clash names the mapping's field
    with pytest.raises(ServicePortConflict) as err:
        assign(bridge_app("/a", 0, 10003), None, used)
    assert err.value.details == [{"path": "/container/portMappings/1/servicePort",
                                  "errors": ["service port 10003 is already used by app /b"]}]
