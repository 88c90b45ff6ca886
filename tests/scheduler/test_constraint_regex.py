"""LIKE/UNLIKE constraint regexes: a catastrophic-backtracking pattern cannot stall placement
(RE2 matches in linear time), patterns RE2 cannot run are refused at validation with the
reason, and Marathon's full-match semantics hold."""

from __future__ import annotations

import time

import pytest

from scheduler.constraint_regex import check_pattern, full_match
from scheduler.placement import LaunchRequest, place
from scheduler.spec import SpecError
from tests.scheduler.builders import make_app, make_offer

EVIL = "(a+)+$"  # exponential in Python's backtracking `re` on "aaaa…!"


def test_catastrophic_pattern_does_not_stall_placement():
    # 50 agents, each with a distinct 5000-character attribute the pattern almost matches: with a
    # backtracking engine one such match alone takes longer than the universe has left.
    offers = [make_offer(hostname=f"h{i}", offer_id=f"o{i}", agent_id=f"a{i}",
                         attrs={"rack": "a" * 5000 + f"!{i}"}) for i in range(50)]
    app = make_app("/evil", constraints=[["rack", "LIKE", EVIL]])
    started = time.perf_counter()
    r = place(offers, [LaunchRequest(app, 3)], [])
    elapsed = time.perf_counter() - started
    assert r.launches == []
    assert r.unplaced["/evil"].reason == "constraint rack LIKE"
    assert elapsed < 1.0, f"placement took {elapsed:.2f}s"
    # The same pattern still matches what it should.
    offers = [make_offer(hostname="ok", offer_id="ok", agent_id="ok", attrs={"rack": "a" * 5000})]
    assert len(place(offers, [LaunchRequest(app, 1)], []).launches) == 1


@pytest.mark.parametrize("pattern", [r"(a)\1", r"a(?=b)", r"(?<!x)a", r"a*+"])
def test_backtracking_only_constructs_are_refused_with_the_reason(pattern):
    assert "not supported" in (check_pattern(pattern) or "")
    with pytest.raises(SpecError) as err:
        make_app("/bad", constraints=[["rack", "LIKE", pattern]])
    text = str(err.value.details)
    assert "/constraints/0" in text and "RE2" in text


def test_full_match_semantics_as_marathon():
    assert full_match("rack-[12]", "rack-1") is True
    assert full_match("rack-[12]", "xrack-1") is False   # whole value, not a search
    assert full_match("a|b", "ab") is False
    assert full_match("(?i)RACK-1", "rack-1") is True
    assert full_match(r"r\d+", "r12") is True
    assert full_match("[", "x") is None                  # unusable: meets neither LIKE nor UNLIKE
