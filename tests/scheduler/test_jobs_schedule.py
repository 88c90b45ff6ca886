"""ISO 8601 repeating schedules: table-driven cases, then properties (hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from scheduler.jobs.schedule import (
    Duration,
    ScheduleError,
    due,
    parse_duration,
    parse_schedule,
    with_start,
)


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.mark.parametrize("text,expected", [
    ("PT2S", Duration(seconds=2)),
    ("PT1.5S", Duration(seconds=1.5)),
    ("PT10M", Duration(seconds=600)),
    ("P10M", Duration(months=10)),
    ("P1Y2M3DT4H5M6S", Duration(years=1, months=2, days=3, seconds=4 * 3600 + 5 * 60 + 6)),
    ("P12DT12M", Duration(days=12, seconds=720)),
    ("P1W", Duration(weeks=1)),
    ("pt1h", Duration(seconds=3600)),
])
def test_durations(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "P", "PT", "1H", "PT1", "P1H", "PT1D", "P-1D", "PT1S2M",
                                  "P1.5D", "PXS"])
def test_bad_durations(text):
    with pytest.raises(ScheduleError):
        parse_duration(text)


@pytest.mark.parametrize("text,zone,first,second,third,reps", [
    ("R/2026-01-01T00:00:00Z/PT2S", None, "2026-01-01T00:00:00Z", "2026-01-01T00:00:02Z",
     "2026-01-01T00:00:04Z", None),
    ("R10/2012-10-01T05:52:00Z/PT2S", None, "2012-10-01T05:52:00Z", "2012-10-01T05:52:02Z",
     "2012-10-01T05:52:04Z", 10),
    ("R/2026-01-31T10:00:00Z/P1M", None, "2026-01-31T10:00:00Z", "2026-02-28T10:00:00Z",
     "2026-03-31T10:00:00Z", None),
    ("R/2026-01-01T12:00:00+01:00/P1D", None, "2026-01-01T11:00:00Z", "2026-01-02T11:00:00Z",
     "2026-01-03T11:00:00Z", None),
    # scheduleTimeZone wins over the offset written in the start: 18:32 Pacific time
    ("R/2014-10-10T18:32:00Z/PT60M", "America/Los_Angeles", "2014-10-11T01:32:00Z",
     "2014-10-11T02:32:00Z", "2014-10-11T03:32:00Z", None),
    # daily at 02:30 Berlin across the spring change (29 March 2026): the wall clock stays,
    # and 02:30 does not exist that day, so it runs at 03:30 CEST (01:30Z)
    ("R/2026-03-28T02:30:00/P1D", "Europe/Berlin", "2026-03-28T01:30:00Z",
     "2026-03-29T01:30:00Z", "2026-03-30T00:30:00Z", None),
    # daily at 09:00 New York across the autumn change (1 November 2026)
    ("R/2026-10-31T09:00:00/P1D", "America/New_York", "2026-10-31T13:00:00Z",
     "2026-11-01T14:00:00Z", "2026-11-02T14:00:00Z", None),
    # hourly is elapsed time: 1 h apart also on the night of the change
    ("R/2026-11-01T00:30:00/PT1H", "America/New_York", "2026-11-01T04:30:00Z",
     "2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z", None),
    ("R0/2026-01-01T00:00:00Z/PT1S", None, "2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z",
     "2026-01-01T00:00:02Z", 0),
])
def test_instants(text, zone, first, second, third, reps):
    s = parse_schedule(text, zone)
    assert s.repetitions == reps
    assert [s.instant(0), s.instant(1), s.instant(2)] == [ts(first), ts(second), ts(third)]


@pytest.mark.parametrize("text,zone,problem", [
    ("R/2026-01-01T00:00:00Z", None, "invalid ISO 8601 schedule"),
    ("X/2026-01-01T00:00:00Z/PT1S", None, "invalid repetitions"),
    ("R-1/2026-01-01T00:00:00Z/PT1S", None, "invalid repetitions"),
    ("R/2026-13-01T00:00:00Z/PT1S", None, "invalid ISO 8601 start time"),
    ("R/2026-01-01T00:00:00Z/1S", None, "invalid ISO 8601 duration"),
    ("R/2026-01-01T00:00:00Z/PT0S", None, "longer than zero"),
    ("R/2026-01-01T00:00:00Z/PT1S", "Mars/Olympus", "unknown scheduleTimeZone"),
    (42, None, "must be a string"),
])
def test_bad_schedules(text, zone, problem):
    with pytest.raises(ScheduleError, match=problem):
        parse_schedule(text, zone)


def test_empty_start_means_now_and_is_fixed_when_stored():
    now = ts("2026-12-03T12:00:00.123Z")
    assert parse_schedule("R//PT1H", now=now).start_epoch == pytest.approx(now)
    with pytest.raises(ScheduleError, match="no start"):
        parse_schedule("R//PT1H")
    assert with_start("R5//PT1H", now) == "R5/2026-12-03T12:00:00.123Z/PT1H"
    assert with_start("R5/2026-01-01T00:00:00Z/PT1H", now) == "R5/2026-01-01T00:00:00Z/PT1H"


T0 = ts("2026-01-01T00:00:00Z")


@pytest.mark.parametrize("text,next_slot,now,epsilon,run,skipped,cursor", [
    # not due yet
    ("R/2026-01-01T00:00:00Z/PT10S", 0, T0 - 1, 60, None, None, 0),
    # on time
    ("R/2026-01-01T00:00:00Z/PT10S", 0, T0, 60, 0, None, 1),
    # late but within epsilon: runs late
    ("R/2026-01-01T00:00:00Z/PT10S", 0, T0 + 5, 5, 0, None, 1),
    # exactly epsilon late still runs; just past it is skipped
    ("R/2026-01-01T00:00:00Z/PT10S", 0, T0 + 5.001, 5, None, (0, 0, 1), 1),
    # down for 100 s with epsilon 15: slots 0..8 skipped, slot 9 (T0+90) runs 10 s late
    ("R/2026-01-01T00:00:00Z/PT10S", 0, T0 + 100, 15, 9, (0, 8, 9), 10),
    # down for 100 s with epsilon 25: slots 8, 9, 10 are fresh; the oldest (8) runs first
    ("R/2026-01-01T00:00:00Z/PT10S", 0, T0 + 100, 25, 8, (0, 7, 8), 9),
    # repetitions exhausted
    ("R3/2026-01-01T00:00:00Z/PT10S", 3, T0 + 100, 60, None, None, 3),
    ("R0/2026-01-01T00:00:00Z/PT10S", 0, T0 + 1, 60, None, None, 0),
    # the last repetition is too old: skipped, then nothing more
    ("R3/2026-01-01T00:00:00Z/PT10S", 1, T0 + 100, 5, None, (1, 2, 2), 3),
])
def test_due(text, next_slot, now, epsilon, run, skipped, cursor):
    d = due(parse_schedule(text), next_slot, now, epsilon)
    assert (d.run, d.skipped, d.next_slot) == (run, skipped, cursor)


# -- properties --------------------------------------------------------------------------------
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata",
         "America/Sao_Paulo"]

durations = st.builds(
    lambda y, mo, w, d, s: f"P{y}Y{mo}M{w}W{d}DT{s}S",
    st.integers(0, 2), st.integers(0, 13), st.integers(0, 3), st.integers(0, 40),
    st.integers(0, 200_000)).filter(lambda t: t != "P0Y0M0W0DT0S")

starts = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2060, 1, 1))


@settings(max_examples=300, deadline=None)
@given(start=starts, period=durations, zone=st.sampled_from(ZONES),
       n=st.integers(0, 200))
def test_instants_strictly_increase(start, period, zone, n):
    s = parse_schedule(f"R/{start.isoformat()}/{period}", zone)
    assert s.instant(n) < s.instant(n + 1)


@settings(max_examples=300, deadline=None)
@given(start=starts, period=durations, zone=st.sampled_from(ZONES),
       offset=st.floats(-1e7, 3e8, allow_nan=False))
def test_first_slot_after_is_the_boundary(start, period, zone, offset):
    s = parse_schedule(f"R/{start.isoformat()}/{period}", zone)
    t = s.start_epoch + offset
    n = s.first_slot_after(t)
    assert s.instant(n) > t
    assert n == 0 or s.instant(n - 1) <= t


@settings(max_examples=200, deadline=None)
@given(start=starts, secs=st.integers(1, 10_000), zone=st.sampled_from(ZONES),
       n=st.integers(0, 1000))
def test_time_periods_are_elapsed_time_in_every_zone(start, secs, zone, n):
    s = parse_schedule(f"R/{start.isoformat()}/PT{secs}S", zone)
    assert s.instant(n) - s.instant(0) == pytest.approx(n * secs)


@settings(max_examples=200, deadline=None)
@given(start=starts, days=st.integers(1, 10), zone=st.sampled_from(ZONES),
       n=st.integers(0, 400))
def test_day_periods_keep_the_wall_clock(start, days, zone, n):
    tz = ZoneInfo(zone)
    s = parse_schedule(f"R/{start.isoformat()}/P{days}D", zone)
    local = datetime.fromtimestamp(s.instant(n), tz=tz)
    wanted = start.replace(tzinfo=tz)
    # the same wall time, unless it fell into a gap (then shifted by the gap, < 1 day)
    exists = datetime.fromtimestamp(wanted.timestamp(), tz=tz).replace(tzinfo=None) == start
    assume(exists)
    shifted = (local.hour, local.minute) != (start.hour, start.minute)
    if shifted:  # only a gap day may move the wall clock, and forward
        assert local.replace(tzinfo=None) > start
    assert (local.date() - start.date()).days == n * days


@settings(max_examples=300, deadline=None)
@given(reps=st.one_of(st.none(), st.integers(0, 30)), secs=st.integers(1, 100),
       times=st.lists(st.floats(0, 5000, allow_nan=False), min_size=1, max_size=40),
       epsilon=st.floats(0, 300, allow_nan=False))
def test_due_handles_every_slot_exactly_once(reps, secs, times, epsilon):
    """Polling `due` at any increasing times runs or skips each passed slot exactly once, in
    order; a run is never early nor later than epsilon; nothing past the repetitions."""
    r = "R" if reps is None else f"R{reps}"
    s = parse_schedule(f"{r}/2026-01-01T00:00:00Z/PT{secs}S")
    cursor, handled = 0, []
    for now in sorted(T0 + t for t in times):
        while True:
            d = due(s, cursor, now, epsilon)
            assert d.next_slot >= cursor
            if d.skipped:
                first, last, count = d.skipped
                assert first == cursor and count == last - first + 1
                for k in range(first, last + 1):
                    assert now - s.instant(k) > epsilon
                    handled.append(k)
            if d.run is not None:
                assert s.instant(d.run) <= now <= s.instant(d.run) + epsilon
                handled.append(d.run)
            if d.next_slot == cursor:
                break
            cursor = d.next_slot
        assert handled == list(range(len(handled)))
        assert reps is None or len(handled) <= reps
        assert d.run is None
        passed = s.last_slot_at_or_before(now)
        expected = 0 if passed is None else passed + 1
        if reps is not None:
            expected = min(expected, reps)
        assert len(handled) == expected


def test_instant_zero_is_the_start_in_utc():
    s = parse_schedule("R/2026-06-01T08:00:00/PT1H", "Asia/Kolkata")
    assert datetime.fromtimestamp(s.instant(0), tz=UTC).hour == 2  # 08:00 IST = 02:30Z
    assert datetime.fromtimestamp(s.instant(0), tz=UTC).minute == 30


def test_java_short_zone_ids_as_chronos_takes_them():
    from datetime import UTC, datetime

    from scheduler.jobs.schedule import parse_schedule as parse

    def utc(schedule, zone_id, n=0):
        return datetime.fromtimestamp(parse(schedule, zone_id).instant(n), UTC).isoformat()

    # PST is Java's America/Los_Angeles: 09:00 local is 16:00Z in summer, 17:00Z in winter
    assert utc("R/2026-07-01T09:00:00/P1D", "PST") == "2026-07-01T16:00:00+00:00"
    assert utc("R/2026-01-01T09:00:00/P1D", "PST") == "2026-01-01T17:00:00+00:00"
    assert utc("R/2026-03-07T09:00:00/P1D", "PST", 1) == "2026-03-08T16:00:00+00:00"  # DST
    # EST, MST, HST are Java's fixed offsets (no DST)
    assert utc("R/2026-07-01T09:00:00/P1D", "EST") == "2026-07-01T14:00:00+00:00"
    assert utc("R/2026-07-01T09:00:00/P1D", "ECT") == "2026-07-01T07:00:00+00:00"  # Paris
    assert utc("R/2026-07-01T09:00:00/P1D", "Europe/Berlin") == "2026-07-01T07:00:00+00:00"
    with pytest.raises(ScheduleError, match="unknown scheduleTimeZone 'XYZ'"):
        parse("R/2026-07-01T09:00:00/P1D", "XYZ")
