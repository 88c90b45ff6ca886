"""Marathon constraint semantics, operator by operator (met, not met, missing attribute)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.constraints import Rule, Tally, as_rule, check, check_all, reason
from scheduler.resources import parse_offer
from tests.scheduler.builders import make_offer


def agent(hostname: str = "h1", **attrs: str) -> SimpleNamespace:
    return SimpleNamespace(hostname=hostname, attributes=attrs)


def placed(*specs: str) -> list[tuple[str, dict[str, str]]]:
    """'h1:rack=r1,zone=a' -> ("h1", {"rack": "r1", "zone": "a"})."""
    out = []
    for spec in specs:
        host, _, rest = spec.partition(":")
        attrs = dict(kv.split("=") for kv in rest.split(",") if kv)
        out.append((host, attrs))
    return out


CASES = [
    # (constraint, candidate, placed, met)
    # UNIQUE
    (["hostname", "UNIQUE"], agent("h1"), placed(), True),
    (["hostname", "UNIQUE"], agent("h1"), placed("h2"), True),
    (["hostname", "UNIQUE"], agent("h1"), placed("h2", "h1"), False),
    (["rack", "UNIQUE"], agent("h1", rack="r1"), placed("h2:rack=r2"), True),
    (["rack", "UNIQUE"], agent("h1", rack="r1"), placed("h2:rack=r1"), False),
    (["rack", "UNIQUE"], agent("h1"), placed(), False),                      # missing attribute
    # CLUSTER
    (["rack", "CLUSTER", "r1"], agent("h1", rack="r1"), placed(), True),
    (["rack", "CLUSTER", "r1"], agent("h1", rack="r2"), placed(), False),
    (["rack", "CLUSTER", "r1"], agent("h1"), placed(), False),               # missing attribute
    (["rack", "CLUSTER"], agent("h1", rack="r2"), placed(), True),           # first one decides
    (["rack", "CLUSTER"], agent("h1", rack="r2"), placed("h2:rack=r2"), True),
    (["rack", "CLUSTER"], agent("h1", rack="r2"), placed("h2:rack=r1"), False),
    (["hostname", "CLUSTER", "h1"], agent("h1"), placed("h1"), True),
    (["hostname", "CLUSTER", "h1"], agent("h2"), placed(), False),
    (["hostname", "CLUSTER"], agent("h2"), placed("h1"), False),
    (["hostname", "CLUSTER"], agent("h1"), placed("h1", "h1"), True),
    # GROUP_BY without a count: spread evenly over the groups seen
    (["rack", "GROUP_BY"], agent("h1", rack="r1"), placed(), True),
    (["rack", "GROUP_BY"], agent("h1", rack="r1"), placed("h2:rack=r1"), True),   # only group
    (["rack", "GROUP_BY"], agent("h1", rack="r1"), placed("h2:rack=r1", "h3:rack=r2"), True),
    (["rack", "GROUP_BY"], agent("h1", rack="r1"),
     placed("h2:rack=r1", "h4:rack=r1", "h3:rack=r2"), False),                    # r1 is bigger
    (["rack", "GROUP_BY"], agent("h1", rack="r3"),
     placed("h2:rack=r1", "h4:rack=r1", "h3:rack=r2"), True),                     # new group
    (["rack", "GROUP_BY"], agent("h1"), placed(), False),                         # missing
    # GROUP_BY with a count: a seen group is refused until that many groups exist
    (["rack", "GROUP_BY", "3"], agent("h1", rack="r1"), placed("h2:rack=r1"), False),
    (["rack", "GROUP_BY", "3"], agent("h1", rack="r2"), placed("h2:rack=r1"), True),
    (["rack", "GROUP_BY", "2"], agent("h1", rack="r1"), placed("h2:rack=r1", "h3:rack=r2"), True),
    (["hostname", "GROUP_BY"], agent("h1"), placed("h1", "h2"), True),
    (["hostname", "GROUP_BY"], agent("h1"), placed("h1", "h1", "h2"), False),
    # MAX_PER
    (["rack", "MAX_PER", "2"], agent("h1", rack="r1"), placed("h2:rack=r1"), True),
    (["rack", "MAX_PER", "2"], agent("h1", rack="r1"), placed("h2:rack=r1", "h3:rack=r1"), False),
    (["rack", "MAX_PER", "2"], agent("h1", rack="r2"), placed("h2:rack=r1", "h3:rack=r1"), True),
    (["rack", "MAX_PER", "1"], agent("h1"), placed(), False),                     # missing
    (["hostname", "MAX_PER", "1"], agent("h1"), placed("h1"), False),
    (["hostname", "MAX_PER", "2"], agent("h1"), placed("h1"), True),
    # LIKE / UNLIKE: full match
    (["rack", "LIKE", "r[12]"], agent("h1", rack="r1"), placed(), True),
    (["rack", "LIKE", "r[12]"], agent("h1", rack="r3"), placed(), False),
    (["rack", "LIKE", "r"], agent("h1", rack="r1"), placed(), False),             # not a search
    (["rack", "LIKE", "r1"], agent("h1", rack="xr1"), placed(), False),
    (["rack", "LIKE", ".*"], agent("h1"), placed(), False),                       # missing
    (["hostname", "LIKE", "agent[0-9]+\\.test"], agent("agent7.test"), placed(), True),
    (["hostname", "LIKE", "agent"], agent("agent7.test"), placed(), False),
    (["rack", "UNLIKE", "r[12]"], agent("h1", rack="r1"), placed(), False),
    (["rack", "UNLIKE", "r[12]"], agent("h1", rack="r3"), placed(), True),
    (["rack", "UNLIKE", "r"], agent("h1", rack="r1"), placed(), True),            # full match only
    (["rack", "UNLIKE", "r1"], agent("h1"), placed(), True),                      # missing: met
    (["hostname", "UNLIKE", "bad.*"], agent("bad1"), placed(), False),
    # IS
    (["rack", "IS", "r1"], agent("h1", rack="r1"), placed(), True),
    (["rack", "IS", "r1"], agent("h1", rack="r11"), placed(), False),
    (["rack", "IS", "r1"], agent("h1"), placed(), False),                         # missing
    (["cores", "IS", "8"], agent("h1", cores="8.0"), placed(), True),              # SCALAR
    (["hostname", "IS", "h1"], agent("h1"), placed("h1"), True),
    (["hostname", "IS", "h1"], agent("h2"), placed(), False),
]


@pytest.mark.parametrize("constraint,candidate,already,met", CASES,
                         ids=[f"{'-'.join(c[0])}-{i}" for i, c in enumerate(CASES)])
def test_operator(constraint, candidate, already, met):
    got = check(constraint, candidate, already)
    if met:
        assert got is None
    else:
        assert got == f"constraint {constraint[0]} {constraint[1]}"


def test_reason_names_and_rule_shapes():
    spec_like = SimpleNamespace(field="rack", operator="group_by", value=3)
    assert as_rule(spec_like) == Rule("rack", "GROUP_BY", "3")
    assert as_rule(("hostname", "UNIQUE")) == Rule("hostname", "UNIQUE", None)
    assert reason(["hostname", "UNIQUE"]) == "constraint hostname UNIQUE"
    assert check(["x", "NOPE"], agent("h1", x="1"), []) == "constraint x NOPE"


def test_check_accepts_offer_views_and_check_all_reports_first_violation():
    v = parse_offer(make_offer(hostname="h1", attrs={"rack": "r1"}))
    cs = [["rack", "LIKE", "r.*"], ["hostname", "UNIQUE"], ["rack", "MAX_PER", "1"]]
    assert check_all(cs, v, []) is None
    assert check_all(cs, v, placed("h1:rack=r1")) == "constraint hostname UNIQUE"
    assert check_all(cs, v, placed("h2:rack=r1")) == "constraint rack MAX_PER"


def test_group_by_missing_attribute_tasks_form_a_group():
    # Marathon groups placed tasks without the attribute together (its None group)
    already = placed("h2:rack=r1", "h3")
    assert check(["rack", "GROUP_BY"], agent("h1", rack="r1"), already) is None
    already = placed("h2:rack=r1", "h4:rack=r1", "h3")
    assert check(["rack", "GROUP_BY"], agent("h1", rack="r1"), already) is not None


@pytest.mark.parametrize("count,prefer_small,expected", [
    ("3", False, [4, 4, 4]),   # with a group count, even first-fit spreads over 3 racks
    (None, True, [4, 4, 4]),   # without, preferring the smallest group (as placement does) spreads
    (None, False, [12]),       # Marathon: without a count, one seen group is always the smallest
])
def test_group_by_sequences(count, prefer_small, expected):
    rule = ["rack", "GROUP_BY"] + ([count] if count else [])
    agents = [agent(f"h{r}{i}", rack=f"r{r}") for r in range(3) for i in range(10)]
    t = Tally([rule])
    for _ in range(12):
        ok = [a for a in agents if t.violated(a.hostname, a.attributes) is None]
        assert ok, "some rack must always accept"
        if prefer_small:
            ok.sort(key=lambda a: t.count("rack", a.attributes["rack"]))
        t.add(ok[0].hostname, ok[0].attributes)
    assert sorted(t.groups["rack"].counts.values()) == expected


def test_group_by_count_above_seen_groups_blocks_after_first_per_group():
    agents = [agent(f"h{r}", rack=f"r{r}") for r in range(3)]
    t = Tally([["rack", "GROUP_BY", "5"]])
    for a in agents:
        assert t.violated(a.hostname, a.attributes) is None
        t.add(a.hostname, a.attributes)
    assert all(t.violated(a.hostname, a.attributes) is not None for a in agents)


@settings(max_examples=80, deadline=None)
@given(ops=st.lists(st.sampled_from([
    ["hostname", "UNIQUE"], ["rack", "UNIQUE"], ["rack", "GROUP_BY"], ["rack", "GROUP_BY", "2"],
    ["rack", "MAX_PER", "2"], ["hostname", "MAX_PER", "3"], ["rack", "CLUSTER"],
    ["rack", "LIKE", "r[01]"], ["rack", "UNLIKE", "r2"], ["rack", "IS", "r1"],
    ["hostname", "CLUSTER"], ["hostname", "GROUP_BY"]]), min_size=1, max_size=3),
       seq=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3)), max_size=25))
def test_tally_agrees_with_check_from_scratch(ops, seq):
    """The incremental Tally and the from-scratch check() give the same verdict every step."""
    t = Tally(ops)
    done: list[tuple[str, dict[str, str]]] = []
    for h, r in seq:
        attrs = {} if r == 3 else {"rack": f"r{r}"}
        a = agent(f"h{h}", **attrs)
        inc = t.violated(a.hostname, a.attributes)
        scratch = check_all(ops, a, done)
        assert (None if inc is None else reason(inc)) == scratch
        t.add(a.hostname, a.attributes)  # add regardless: tallies must stay exact either way
        done.append((a.hostname, a.attributes))
