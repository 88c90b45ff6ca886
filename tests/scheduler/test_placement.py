"""Placement: packing, declines, unplaced reasons, constraints, determinism, and properties."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.constraints import check_all
from scheduler.placement import LaunchRequest, Unplaced, agent_order, most_telling, place
from scheduler.resources import parse_offer, sum_resources
from tests.scheduler.builders import make_app, make_offer, make_task


def offers(n: int, **kw) -> list[dict]:
    return [make_offer(hostname=f"h{i}", offer_id=f"o{i}", agent_id=f"a{i}", **kw)
            for i in range(n)]


def req(app_id: str = "/app", count: int = 1, **fields) -> LaunchRequest:
    return LaunchRequest(make_app(app_id, **fields), count)


def test_no_offers():
    r = place([], [req(count=2)], [])
    assert r.launches == [] and r.decline_offer_ids == []
    assert r.unplaced == {"/app": Unplaced(2, "no offers")}


def test_no_demand_declines_everything():
    r = place(offers(3), [], [])
    assert r.launches == [] and r.decline_offer_ids == ["o0", "o1", "o2"]
    assert r.unplaced == {}


def test_packs_several_tasks_into_one_offer_and_subtracts():
    r = place(offers(1, cpus=1.0, mem=1000.0, ports=[(31000, 31002)]),
              [req(count=5, cpus=0.25, mem=100.0, portDefinitions=[{"port": 0}])], [])
    assert len(r.launches) == 3   # ports run out first: 3 ports, one per task
    assert r.unplaced == {"/app": Unplaced(2, "no free ports")}
    assert sorted(p for launch in r.launches for p in launch.ports) == [31000, 31001, 31002]
    assert r.decline_offer_ids == []
    r = place(offers(1, cpus=1.0, mem=1000.0), [req(count=5, cpus=0.25, mem=100.0)], [])
    assert len(r.launches) == 4 and r.unplaced["/app"] == Unplaced(1, "insufficient cpus")
    r = place(offers(1, cpus=4.0, mem=250.0), [req(count=5, cpus=0.25, mem=100.0)], [])
    assert len(r.launches) == 2 and r.unplaced["/app"] == Unplaced(3, "insufficient mem")


def test_spreads_an_app_over_agents_and_declines_unused():
    r = place(offers(4), [req(count=2)], [])
    # equal offers: ties go by the fixed hashed agent order, not by id (see agent_order)
    first_two = sorted(["a0", "a1", "a2", "a3"], key=agent_order)[:2]
    assert [launch.agent_id for launch in r.launches] == first_two
    used = {launch.offer_id for launch in r.launches}
    assert len(used) == 2 and sorted(r.decline_offer_ids) == sorted({"o0", "o1", "o2", "o3"} - used)
    assert [r.decisions[o].launched for o in sorted(used)] == [1, 1]
    assert all(r.decisions[o].launched == 0 for o in r.decline_offer_ids)


def test_launch_carries_offer_identity_and_role_fields():
    r = place([make_offer(hostname="h1", offer_id="o1", agent_id="a1", attrs={"rack": "r1"})],
              [req(count=1, cpus=0.5, mem=64.0, portDefinitions=[{"port": 0}, {"port": 0}])], [])
    (launch,) = r.launches
    assert (launch.offer_id, launch.agent_id, launch.hostname, launch.app_id) == \
        ("o1", "a1", "h1", "/app")
    assert launch.attributes == {"rack": "r1"} and launch.ports == [31000, 31001]
    scal, ports = sum_resources(launch.resources)
    assert scal == {"cpus": 0.5, "mem": 64.0} and ports == [31000, 31001]
    assert all(res["allocation_info"] == {"role": "*"} for res in launch.resources)


def test_require_ports_specific_port():
    os_ = [make_offer(hostname="h0", offer_id="o0", ports=[(31000, 31010)]),
           make_offer(hostname="h1", offer_id="o1", ports=[(8000, 8100)])]
    r = place(os_, [req(count=2, requirePorts=True, portDefinitions=[{"port": 8080}])], [])
    assert [(launch.offer_id, launch.ports) for launch in r.launches] == [("o1", [8080])]
    assert r.unplaced["/app"] == Unplaced(1, "port 8080 not offered")


def test_unique_hostname_six_on_three_agents():
    r = place(offers(3), [req(count=6, constraints=[["hostname", "UNIQUE"]])], [])
    assert len(r.launches) == 3
    assert len({launch.hostname for launch in r.launches}) == 3
    assert r.unplaced == {"/app": Unplaced(3, "constraint hostname UNIQUE")}


def test_running_tasks_count_for_constraints_but_not_resources():
    running = [make_task("/app", host="h0", agent_id="a0"), make_task("/other", host="h1")]
    r = place(offers(2), [req(count=2, constraints=[["hostname", "UNIQUE"]])], running)
    assert [launch.hostname for launch in r.launches] == ["h1"]
    assert r.unplaced["/app"] == Unplaced(1, "constraint hostname UNIQUE")


def test_group_by_rack_spreads_evenly():
    os_ = [make_offer(hostname=f"h{i}", offer_id=f"o{i}", agent_id=f"a{i}",
                      attrs={"rack": f"r{i % 3}"}, cpus=8) for i in range(9)]
    r = place(os_, [req(count=9, constraints=[["rack", "GROUP_BY"]])], [])
    assert Counter(launch.attributes["rack"] for launch in r.launches) == \
        {"r0": 3, "r1": 3, "r2": 3}
    # with running tasks skewed to r0, new ones go to r1 and r2 first
    running = [make_task("/app", host="h0", attributes={"rack": "r0"}) for _ in range(2)]
    r = place(os_, [req(count=4, constraints=[["rack", "GROUP_BY"]])], running)
    assert Counter(launch.attributes["rack"] for launch in r.launches) == {"r1": 2, "r2": 2}


def test_group_by_with_count_waits_for_missing_groups():
    os_ = [make_offer(hostname=f"h{i}", offer_id=f"o{i}", attrs={"rack": f"r{i % 2}"})
           for i in range(4)]
    r = place(os_, [req(count=4, constraints=[["rack", "GROUP_BY", "3"]])], [])
    assert len(r.launches) == 2  # one per rack seen; a third rack is assumed to exist
    assert r.unplaced["/app"] == Unplaced(2, "constraint rack GROUP_BY")


def test_max_per_and_cluster_and_like():
    os_ = [make_offer(hostname=f"h{i}", offer_id=f"o{i}", attrs={"rack": f"r{i % 2}"}, cpus=8)
           for i in range(6)]
    r = place(os_, [req("/m", count=5, constraints=[["rack", "MAX_PER", "2"]]),
                    req("/c", count=4, constraints=[["rack", "CLUSTER", "r1"]]),
                    req("/l", count=3, constraints=[["hostname", "LIKE", "h[0-2]"],
                                                    ["hostname", "UNIQUE"]])], [])
    by_app = defaultdict(list)
    for launch in r.launches:
        by_app[launch.app_id].append(launch)
    assert Counter(x.attributes["rack"] for x in by_app["/m"]) == {"r0": 2, "r1": 2}
    assert r.unplaced["/m"] == Unplaced(1, "constraint rack MAX_PER")
    assert {x.attributes["rack"] for x in by_app["/c"]} == {"r1"} and len(by_app["/c"]) == 4
    assert sorted(x.hostname for x in by_app["/l"]) == ["h0", "h1", "h2"]


def test_unplaced_reason_names_the_constraint_when_an_offer_had_room():
    os_ = offers(3, cpus=0.5) + [make_offer(hostname="big", offer_id="big", cpus=8)]
    running = [make_task("/app", host="big", agent_id="agent-big")]
    r = place(os_, [req(count=1, cpus=1.0, constraints=[["hostname", "UNIQUE"]])], running)
    # three offers are too small, the one with room already runs the app: UNIQUE holds it back
    assert r.unplaced["/app"] == Unplaced(1, "constraint hostname UNIQUE")
    assert sorted(r.decline_offer_ids) == sorted(["o0", "o1", "o2", "big"])
    assert r.decisions["big"].reason == "constraint hostname UNIQUE"
    assert r.decisions["o0"].reason == "insufficient cpus"
    # no offer has room at all: the shortage is the reason, whatever the constraints
    r = place(offers(3, cpus=0.5), [req(count=1, cpus=1.0, constraints=[["hostname", "UNIQUE"]])],
              [])
    assert r.unplaced["/app"] == Unplaced(1, "insufficient cpus")


@pytest.mark.parametrize("reasons,expected", [
    ([], "no offers"),
    (["insufficient mem", "insufficient cpus", "insufficient mem"], "insufficient mem"),
    (["insufficient mem", "insufficient cpus"], "insufficient cpus"),                 # tie
    (["insufficient cpus"] * 5 + ["constraint rack IS"], "constraint rack IS"),
    (["constraint rack IS", "constraint hostname UNIQUE"] * 2 + ["constraint rack IS"],
     "constraint rack IS"),
    (["no free ports", "port 80 not offered"], "port 80 not offered"),
])
def test_most_telling(reasons, expected):
    assert most_telling(reasons) == expected


def test_roles_framework_role_and_unreserved():
    o = make_offer(hostname="h0", offer_id="o0", cpus=0.5, role="*")
    o["resources"] += make_offer(cpus=1.0, role="analytics", ports=[])["resources"]
    r = place([o], [req(count=1, cpus=1.2)], [])
    assert r.unplaced["/app"].reason == "insufficient cpus"
    r = place([o], [req(count=1, cpus=1.2)], [], role="analytics")
    (launch,) = r.launches
    assert {(x["role"], x["scalar"]["value"]) for x in launch.resources if x["name"] == "cpus"} \
        == {("analytics", 1.0), ("*", 0.2)}


def test_requests_for_one_app_are_merged_and_order_is_kept():
    r = place(offers(4), [req("/b", 1), req("/a", 1), req("/b", 1)], [])
    assert [launch.app_id for launch in r.launches] == ["/b", "/b", "/a"]


def test_deterministic_and_strategies():
    os_ = [make_offer(hostname=f"h{i}", offer_id=f"o{i}", agent_id=f"a{i}", cpus=1 + i % 4)
           for i in range(12)]
    rs = [req("/x", 7, cpus=0.5), req("/y", 5, cpus=1.5, constraints=[["hostname", "UNIQUE"]])]
    a = place(os_, rs, [])
    b = place(list(os_), rs, [])
    assert a == b
    # spread picks the agents with most free cpus; pack fills the fullest first
    spread = place(os_, [req("/z", 1, cpus=0.5)], [])
    pack = place(os_, [req("/z", 1, cpus=0.5)], [], strategy="pack")
    cpus = {o["agent_id"]["value"]: o["resources"][1]["scalar"]["value"] for o in os_}
    assert cpus[spread.launches[0].agent_id] == 4 and cpus[pack.launches[0].agent_id] == 1
    with pytest.raises(ValueError):
        place(os_, rs, [], strategy="random")


def test_accepts_offer_views_and_duplicate_offers():
    o = make_offer(hostname="h0", offer_id="o0")
    r = place([parse_offer(o), o], [req(count=1)], [])
    assert len(r.launches) == 1 and r.decline_offer_ids == []


# ---------------------------------------------------------------------------------------------
# properties

CONSTRAINTS = st.sampled_from([
    [], [["hostname", "UNIQUE"]], [["rack", "GROUP_BY"]], [["rack", "GROUP_BY", "3"]],
    [["rack", "MAX_PER", "2"]], [["rack", "CLUSTER"]], [["rack", "CLUSTER", "r1"]],
    [["rack", "LIKE", "r[01]"]], [["rack", "UNLIKE", "r0"]], [["rack", "IS", "r2"]],
    [["hostname", "MAX_PER", "2"], ["rack", "GROUP_BY"]], [["rack", "UNIQUE"]],
])


@st.composite
def scenarios(draw):
    n = draw(st.integers(0, 8))
    os_ = []
    for i in range(n):
        start = draw(st.integers(31000, 31020))
        ranges = [(start, start + draw(st.integers(0, 4)))] if draw(st.booleans()) else []
        rack = draw(st.sampled_from(["r0", "r1", "r2", None]))
        os_.append(make_offer(hostname=f"h{i % 6}", offer_id=f"o{i}", agent_id=f"a{i % 6}",
                              cpus=draw(st.sampled_from([0.5, 1.0, 2.0, 3.3])),
                              mem=draw(st.sampled_from([64.0, 256.0, 1000.0])),
                              ports=ranges, attrs={"rack": rack} if rack else {}))
    apps = []
    for j in range(draw(st.integers(1, 4))):
        nports = draw(st.integers(0, 2))
        apps.append(req(f"/app{j}", draw(st.integers(1, 8)),
                        cpus=draw(st.sampled_from([0.1, 0.3, 0.5, 1.0])),
                        mem=draw(st.sampled_from([16.0, 64.0, 200.0])),
                        portDefinitions=[{"port": 0}] * nports,
                        constraints=draw(CONSTRAINTS)))
    running = []
    for _ in range(draw(st.integers(0, 4))):
        h = draw(st.integers(0, 5))
        running.append(make_task(f"/app{draw(st.integers(0, 3))}", host=f"h{h}",
                                 agent_id=f"a{h}", attributes={"rack": f"r{h % 3}"}))
    return os_, apps, running


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_place_never_overcommits_nor_breaks_constraints(scenario):
    os_, requests, running = scenario
    r = place(os_, requests, running)
    views = {o["id"]["value"]: parse_offer(o) for o in os_}
    used: dict[str, list] = defaultdict(list)
    for launch in r.launches:
        used[launch.offer_id].append(launch)
    # every offer is used or declined, never both
    assert set(used) | set(r.decline_offer_ids) == set(views)
    assert not set(used) & set(r.decline_offer_ids)
    for oid, ls in used.items():
        v = views[oid]
        cpus = sum(sum_resources(x.resources)[0].get("cpus", 0) for x in ls)
        mem = sum(sum_resources(x.resources)[0].get("mem", 0) for x in ls)
        assert cpus <= v.scalars["cpus"] + 1e-6 and mem <= v.scalars["mem"] + 1e-6
        ports = [p for x in ls for p in x.ports]
        assert len(ports) == len(set(ports))
        assert all(any(b <= p <= e for b, e in v.ports) for p in ports)
        assert all(sorted(x.ports) == sum_resources(x.resources)[1] for x in ls)
    # constraints hold when the launches are replayed in order on top of the running tasks
    placed = defaultdict(list)
    for t in running:
        placed[t["appId"]].append((t["host"], t["attributes"]))
    apps = {q.app.id: q.app for q in requests}
    counts = Counter()
    for launch in r.launches:
        app = apps[launch.app_id]
        assert check_all(app.constraints, views[launch.offer_id], placed[app.id]) is None
        placed[app.id].append((launch.hostname, launch.attributes))
        counts[app.id] += 1
    for app_id in apps:
        want = sum(q.count for q in requests if q.app.id == app_id)
        missing = want - counts[app_id]
        assert (missing == 0) == (app_id not in r.unplaced)
        if missing:
            assert r.unplaced[app_id].count == missing and r.unplaced[app_id].reason
    assert place(os_, requests, running) == r  # deterministic


@settings(max_examples=40, deadline=None)
@given(racks=st.integers(1, 5), per_rack=st.integers(1, 4), count=st.integers(1, 30),
       skew=st.lists(st.integers(0, 4), max_size=6))
def test_group_by_keeps_racks_within_one(racks, per_rack, count, skew):
    """With room everywhere, GROUP_BY rack leaves no rack more than one task ahead of another
    (among the racks it uses, counting running tasks)."""
    os_ = [make_offer(hostname=f"h{r}-{i}", offer_id=f"o{r}-{i}", agent_id=f"a{r}-{i}",
                      attrs={"rack": f"r{r}"}, cpus=64, mem=65536, ports=[])
           for r in range(racks) for i in range(per_rack)]
    running = [make_task("/g", host=f"h{r % racks}-0", agent_id=f"a{r % racks}-0",
                         attributes={"rack": f"r{r % racks}"}) for r in skew]
    r = place(os_, [req("/g", count, constraints=[["rack", "GROUP_BY"]])], running)
    assert len(r.launches) == count and not r.unplaced
    per_rack_count = Counter(t["attributes"]["rack"] for t in running)
    before = dict(per_rack_count)
    per_rack_count.update(x.attributes["rack"] for x in r.launches)
    counts = [per_rack_count.get(f"r{i}", 0) for i in range(racks)]
    if max(before.values(), default=0) <= min(counts):  # the skew was evened out
        assert max(counts) - min(counts) <= 1
    else:  # still catching up: nothing went to a rack that was already the fullest
        assert all(before.get(x.attributes["rack"], 0) < max(before.values())
                   for x in r.launches)
