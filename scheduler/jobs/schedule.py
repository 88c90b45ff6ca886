"""ISO 8601 repeating intervals as Chronos reads them: `R[n]/<start>/<duration>`.

Pure: no clock (every `now` is passed in), epoch seconds (float) in and out.

- `R` repeats without end, `Rn` gives n runs (slots 0 … n-1), `R0` none at all.
- `<start>` is an ISO 8601 date-time; an empty start means "now" and is fixed by whoever
  stores the job (`with_start`), so a stored schedule always names its instants.
- `scheduleTimeZone` (a tz database name) takes precedence over the zone written in the
  start: the start's wall-clock time is read in that zone.
- The duration's calendar part (years, months, weeks, days) moves the wall clock in the job's
  zone, so a daily job at 02:30 Europe/Berlin stays at 02:30 across DST changes; its time part
  (hours, minutes, seconds) is elapsed time, so `PT1H` is always 3600 s apart, also on the
  night the clocks change. A wall time that does not exist (the spring-forward gap) is taken as
  the instant the clocks skipped to plus the same offset (Python's `fold=0` rule: 02:30 in a
  gap runs at 03:30 summer time); an ambiguous one (fall-back) is its first occurrence.
- Slot n is computed from the start (start + n × calendar part, then + n × time part), never
  from slot n-1, so month ends do not drift (Jan 31 + P1M is Feb 28, + 2 × P1M is Mar 31).
- `epsilon`: a slot whose instant passed less than (or exactly) `epsilon` ago still runs,
  late; an older one is skipped.

Why our own parser and not a library: the scheduler may import only the standard library and
pymesos, and no small kept library parses repeating intervals with these DST rules.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from functools import cached_property
from zoneinfo import ZoneInfoNotFoundError

from scheduler.jobs.zones import zone_of

__all__ = ["Duration", "Schedule", "ScheduleError", "parse_duration", "parse_schedule",
           "with_start", "zone"]

_DURATION_RE = re.compile(
    r"P(?!$)(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?"
    r"(?:(?P<seconds>\d+(?:[.,]\d+)?)S)?)?")
_REPEAT_RE = re.compile(r"R(\d*)")
MAX_REPETITIONS = 10**9
_MEAN_MONTH_SECONDS = 30.436875 * 86400   # mean Gregorian month, for first estimates only


class ScheduleError(ValueError):
    """A schedule, duration or time zone that cannot be used; the message says why."""


@dataclass(frozen=True)
class Duration:
    """An ISO 8601 duration split into its calendar part and its elapsed-time part."""

    years: int = 0
    months: int = 0
    weeks: int = 0
    days: int = 0
    seconds: float = 0.0   # hours, minutes and seconds together

    @property
    def is_zero(self) -> bool:
        return not (self.years or self.months or self.weeks or self.days or self.seconds)

    @property
    def calendar_months(self) -> int:
        return self.years * 12 + self.months

    @property
    def calendar_days(self) -> int:
        return self.weeks * 7 + self.days

    def approx_seconds(self) -> float:
        """Length in seconds taking a month as its mean length (estimates only)."""
        return (self.calendar_months * _MEAN_MONTH_SECONDS + self.calendar_days * 86400.0
                + self.seconds)


def parse_duration(text: str) -> Duration:
    """`P1Y2M3DT4H5M6.5S`, `PT2S`, `P1W` … (designators in ISO 8601 order, `T` before the time
    part, at least one component). Raises ScheduleError."""
    if not isinstance(text, str):
        raise ScheduleError(f"duration must be a string, got {type(text).__name__}")
    m = _DURATION_RE.fullmatch(text.strip().upper())
    if m is None or text.strip().upper() in ("P", "PT"):
        raise ScheduleError(f"invalid ISO 8601 duration {text!r} (e.g. PT30S, PT1H, P1D, P1M)")
    g = {k: v for k, v in m.groupdict().items() if v is not None}
    seconds = (int(g.get("hours", 0)) * 3600 + int(g.get("minutes", 0)) * 60
               + float(g.get("seconds", "0").replace(",", ".")))
    return Duration(years=int(g.get("years", 0)), months=int(g.get("months", 0)),
                    weeks=int(g.get("weeks", 0)), days=int(g.get("days", 0)), seconds=seconds)


def zone(name: str | None) -> tzinfo | None:
    """The tz database zone `name` (None or "" for none); ScheduleError if unknown."""
    if not name:
        return None
    try:
        return zone_of(name)  # tz database names and Java's short ids (PST, ...)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ScheduleError(f"unknown scheduleTimeZone {name!r} (use a tz database name such "
                            "as Europe/Berlin or UTC, or a Java short id such as PST)") from None


def _parse_start(text: str, tz: tzinfo | None) -> datetime:
    raw = text.strip()
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(raw)
    except ValueError:
        raise ScheduleError(f"invalid ISO 8601 start time {text!r} "
                            "(e.g. 2026-12-03T12:00:00Z)") from None
    if tz is not None:
        # scheduleTimeZone wins: the wall-clock time is read in that zone
        return dt.replace(tzinfo=tz, fold=0)
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt


def _add_months(dt: datetime, months: int) -> datetime:
    if not months:
        return dt
    total = dt.year * 12 + (dt.month - 1) + months
    year, month = divmod(total, 12)
    month += 1
    if not 1 <= year <= 9999:
        raise OverflowError("date out of range")
    # clamp the day to the month's length (Jan 31 + P1M = Feb 28/29)
    for day in (dt.day, 30, 29, 28):
        try:
            return dt.replace(year=year, month=month, day=min(dt.day, day))
        except ValueError:
            continue
    raise OverflowError("no valid day")  # unreachable: every month has 28 days


@dataclass(frozen=True)
class Schedule:
    """A parsed `R[n]/<start>/<duration>` in the job's zone."""

    repetitions: int | None   # None: without end
    start: datetime           # aware; in the job's zone when it has one
    period: Duration
    text: str

    @cached_property
    def start_epoch(self) -> float:
        return self.start.timestamp()

    @cached_property
    def _elapsed_only(self) -> bool:  # no calendar part: no wall-clock arithmetic needed
        return not (self.period.calendar_months or self.period.calendar_days)

    def instant(self, n: int) -> float:
        """Epoch seconds of slot `n` (0-based); ignores the repetition count."""
        if n < 0:
            raise ValueError("slot index must be >= 0")
        if self._elapsed_only:  # what the calendar path below gives, without its datetimes
            return self.start_epoch + n * self.period.seconds
        local = _add_months(self.start, n * self.period.calendar_months)
        local = local + timedelta(days=n * self.period.calendar_days)  # wall-clock days
        # an aware datetime + timedelta keeps the wall clock; timestamp() resolves the offset
        return local.timestamp() + n * self.period.seconds

    def has_slot(self, n: int) -> bool:
        return n >= 0 and (self.repetitions is None or n < self.repetitions)

    def first_slot_after(self, t: float) -> int:
        """The smallest slot index whose instant is > t (may be past the repetitions)."""
        if t < self.start_epoch:
            return 0
        n = int((t - self.start_epoch) // self.period.approx_seconds())
        n = max(0, n - 2)
        while n > 0 and self.instant(n) > t:   # estimate too high: step back
            n -= 1
        while self.instant(n) <= t:            # then forward to the first slot after t
            n += 1
        return n

    def last_slot_at_or_before(self, t: float) -> int | None:
        """The largest slot index whose instant is <= t (None before the start)."""
        n = self.first_slot_after(t) - 1
        return n if n >= 0 else None

    def next_instants(self, after: float, count: int) -> list[float]:
        """Up to `count` instants > `after`, within the repetitions."""
        out: list[float] = []
        n = self.first_slot_after(after)
        while len(out) < count and self.has_slot(n):
            out.append(self.instant(n))
            n += 1
        return out


def parse_schedule(text: str, time_zone: str | None = None, *, now: float | None = None
                   ) -> Schedule:
    """Parse `R[n]/<start>/<duration>`. An empty start needs `now` (it means "now"). Raises
    ScheduleError naming what is wrong."""
    if not isinstance(text, str):
        raise ScheduleError(f"schedule must be a string, got {type(text).__name__}")
    parts = text.strip().split("/")
    if len(parts) != 3:
        raise ScheduleError(f"invalid ISO 8601 schedule {text!r}: expected "
                            "R[n]/<start>/<duration>, e.g. R/2026-12-03T12:00:00Z/PT1H")
    rep_text, start_text, period_text = parts
    m = _REPEAT_RE.fullmatch(rep_text.strip().upper())
    if m is None:
        raise ScheduleError(f"invalid repetitions {rep_text!r} in schedule {text!r}: "
                            "R for no end or Rn for n runs")
    repetitions = int(m.group(1)) if m.group(1) else None
    if repetitions is not None and repetitions > MAX_REPETITIONS:
        raise ScheduleError(f"too many repetitions in {text!r} (at most {MAX_REPETITIONS})")
    tz = zone(time_zone)
    if not start_text.strip():
        if now is None:
            raise ScheduleError(f"schedule {text!r} has no start time")
        start = datetime.fromtimestamp(now, tz=tz or UTC)
    else:
        start = _parse_start(start_text, tz)
    period = parse_duration(period_text)
    if period.is_zero:
        raise ScheduleError(f"the period of schedule {text!r} must be longer than zero")
    schedule = Schedule(repetitions, start, period, text.strip())
    try:
        schedule.instant(1)
        schedule.start_epoch  # noqa: B018 - a start out of range fails here, not later
    except (OverflowError, ValueError):
        raise ScheduleError(f"schedule {text!r} leaves the supported date range") from None
    return schedule


def with_start(text: str, start_epoch: float) -> str:
    """The schedule with an empty start filled in (`R/ /PT1H` posted at t → `R/<t>/PT1H`)."""
    rep, start, period = text.strip().split("/")
    if start.strip():
        return text.strip()
    stamp = datetime.fromtimestamp(math.floor(start_epoch * 1000) / 1000, tz=UTC)
    return f"{rep}/{stamp.strftime('%Y-%m-%dT%H:%M:%S.')}{stamp.microsecond // 1000:03d}Z/{period}"


@dataclass(frozen=True)
class SlotDecision:
    """What to do about the slots of a job at `now`: `run` is the slot to start (or None),
    `skipped` the slots now too old to run (first, last, count), `next_slot` the cursor after."""

    run: int | None
    skipped: tuple[int, int, int] | None
    next_slot: int


def due(schedule: Schedule, next_slot: int, now: float, epsilon: float) -> SlotDecision:
    """Decide the slots from `next_slot` (the first not yet handled) at `now`.

    Slots whose instant passed more than `epsilon` ago are skipped (all at once, however
    many); the oldest remaining slot runs if its instant has come (late by at most epsilon);
    a later slot is not due yet. One slot at a time: the caller calls again for the next."""
    if not schedule.has_slot(next_slot):
        return SlotDecision(None, None, next_slot)
    if schedule.instant(next_slot) > now:
        return SlotDecision(None, None, next_slot)          # nothing due yet
    first_fresh = max(next_slot, schedule.first_slot_after(now - epsilon)
                      if now - epsilon >= schedule.start_epoch else 0)
    # first_slot_after is strict (> now - epsilon); a slot exactly epsilon late still runs
    while first_fresh > next_slot and schedule.instant(first_fresh - 1) >= now - epsilon:
        first_fresh -= 1
    if schedule.repetitions is not None and first_fresh >= schedule.repetitions:
        last = schedule.repetitions - 1
        return SlotDecision(None, (next_slot, last, last - next_slot + 1), schedule.repetitions)
    skipped = ((next_slot, first_fresh - 1, first_fresh - next_slot)
               if first_fresh > next_slot else None)
    if schedule.instant(first_fresh) <= now:
        return SlotDecision(first_fresh, skipped, first_fresh + 1)
    return SlotDecision(None, skipped, first_fresh)
