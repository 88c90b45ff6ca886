"""Resource arithmetic and formats (pure functions, no processes)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from localmesos import recordio
from localmesos.cluster import agent_attributes
from localmesos.portblocks import NoFreePortBlock, PortBlocks
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


def test_agents_claim_disjoint_port_blocks_below_the_ephemeral_range(tmp_path) -> None:
    base = parse_spec("cpus:1;ports:[31000-31999]")
    blocks = PortBlocks(tmp_path)
    assert [blocks.claim(base).ranges["ports"] for _ in range(3)] == [
        ((31000, 31999),), ((30000, 30999),), ((29000, 29999),)]
    wide = parse_spec("ports:[10000-11499]")
    assert blocks.claim(wide).ranges["ports"] == ((10000, 11499),)
    assert blocks.claim(wide).ranges["ports"] == ((8000, 9499),)  # 2000-port steps, downwards
    blocks.release()
    assert PortBlocks(tmp_path).claim(base).ranges["ports"] == ((31000, 31999),)


def test_a_second_process_skips_blocks_another_one_holds(tmp_path) -> None:
    holder = PortBlocks(tmp_path)
    holder.claim(parse_spec("ports:[31000-31999]"))
    code = ("import sys; from localmesos.portblocks import PortBlocks; "
            "from localmesos.resources import parse_spec; "
            "print(PortBlocks(sys.argv[1]).claim(parse_spec('ports:[31000-31999]')).ranges)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                         text=True, check=True).stdout
    assert "30000, 30999" in out
    holder.release()


def test_no_free_block_is_a_clear_error(tmp_path) -> None:
    blocks = PortBlocks(tmp_path)
    blocks.claim(parse_spec("ports:[1500-2499]"))
    with pytest.raises(NoFreePortBlock, match="no free block of 1000 ports"):
        blocks.claim(parse_spec("ports:[1500-2499]"))


def test_agents_spread_over_racks() -> None:
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
