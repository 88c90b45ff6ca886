"""Per-(symbol, market day) buckets of pre-encoded quotes: the pure part (no I/O).

A range read that the answer cache cannot serve costs, on the row path, one small dict and its
encoding per quote. Here each market day of a symbol is stored once more, already encoded: the
JSON objects of its quotes exactly as `/timeseries` writes them (`services.timeseries.
page_encoder` with all fields), comma-joined, plus the ts of each quote and the byte offset where
its object starts. A range is then a few slices of bytes: the first and last days cut by a
binary search on their ts, the days between whole.

Days are those of the market's time zone (`MarketDays`), not UTC: a session never straddles two
buckets, whatever zone the exchange is in. A day is the half-open span from one local midnight to
the next, so it is 23 or 25 hours long on DST days (and the day starts at the transition where a
zone skips midnight itself). Day keys are `YYYY-MM-DD` (zero-padded years), which sort like time.

`EncodedDay` is the decoded bucket; `encode_day(symbol, rows)` builds one from the store's row
tuples `(ts, open, high, low, close, volume)`; `DaySlicer` walks the buckets of a range and gives
the fragments (comma-joined JSON objects, no brackets), honouring `limit`. The adapters
(`sqlite_store`, `cassandra_store`) store the three byte strings of each day and keep them in step
with the rows; `tests/services/test_day_buckets.py` checks that a bucketed read equals the row
path's answer byte for byte.
"""

from __future__ import annotations

import re
import sys
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from services.store import MAX_TS_MS, MIN_TS_MS

DEFAULT_MARKET_TZ = "America/New_York"
# A day with more quotes than this keeps no encoded copy (its bucket says "too big": readers
# encode its rows): a write then re-encodes at most this many rows per day it touches, and a
# bucket stays under ~1 MB (Cassandra's advice for a cell). One-minute bars: 1,440 a day.
MAX_DAY_ROWS = 5000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
RECENT_DAYS = 8   # day spans `MarketDays.day_of` remembers


def day_key(d: date) -> str:
    # f-string rather than isoformat/strftime: the same zero padding for every year.
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}"


class MarketDays:
    """Day keys and day spans in one time zone (an IANA name such as `America/New_York`).

    Local day `d` holds the instants from `start(d)` (its midnight; where the zone skips
    midnight, the change itself) up to `start(d + 1)`: spans that tile time, in order, so the
    quotes of days `d1..d2` are exactly those from `start(d1)` to before `start(d2 + 1)`.
    """

    def __init__(self, tz: str = DEFAULT_MARKET_TZ) -> None:
        try:
            self.zone = ZoneInfo(tz)
        except (ValueError, KeyError, OSError) as exc:  # ZoneInfoNotFoundError is a KeyError
            raise ValueError(f"unknown market time zone {tz!r}") from exc
        self.tz = tz
        self._starts: dict[date, int] = {}
        self._recent: tuple[tuple[int, int, str], ...] = ()   # (first ms, next day's, key)

    def days_of(self, timestamps: Iterable[int]) -> set[str]:
        """The keys of the days holding `timestamps` (fast for runs within one day)."""
        keys: set[str] = set()
        lo = hi = 0
        for ts in timestamps:
            if not lo <= ts < hi:
                d = self.date_of(ts)
                keys.add(day_key(d))
                lo = self.start(d)
                hi = MAX_TS_MS + 1 if d == date.max else self.start(d + timedelta(days=1))
        return keys

    def day_of(self, ts_ms: int) -> str:
        """The key of the local day holding instant `ts_ms` (epoch ms UTC).

        The spans of the last few days asked for are kept: ranges keep asking about the same
        few days, and converting through the zone costs ~10x a look-up."""
        for lo, hi, key in self._recent:
            if lo <= ts_ms < hi:
                return key
        d = self.date_of(ts_ms)
        key = day_key(d)
        hi = MAX_TS_MS + 1 if d == date.max else self.start(d + timedelta(days=1))
        # Rebound, not mutated: threads that read the old tuple meanwhile still see a whole one.
        self._recent = ((self.start(d), hi, key), *self._recent[:RECENT_DAYS - 1])
        return key

    def date_of(self, ts_ms: int) -> date:
        sec = ts_ms // 1000   # zone offsets are whole seconds: the local date is the same
        try:
            d = (_EPOCH + timedelta(seconds=sec)).astimezone(self.zone).date()
        except OverflowError:  # the first or last hours that datetime can hold
            d = date.min if ts_ms < 0 else date.max
        # The local date, unless a change back across midnight put the clock on the day before
        # (or the clamp above): the spans decide.
        if ts_ms < self.start(d) and d > date.min:
            d -= timedelta(days=1)
        elif d < date.max and ts_ms >= self.start(d + timedelta(days=1)):
            d += timedelta(days=1)
        return d

    def span(self, day: str) -> tuple[int, int]:
        """`(first ms, first ms of the next day)` of local day `day` (clamped to the store's
        bounds, `MIN_TS_MS` and `MAX_TS_MS + 1`)."""
        d = date.fromisoformat(day)
        return self.start(d), (MAX_TS_MS + 1 if d == date.max
                               else self.start(d + timedelta(days=1)))

    def start(self, d: date) -> int:
        """The first instant (epoch ms) of local day `d`."""
        ms = self._starts.get(d)
        if d == date.min:   # the first day holds whatever the store can hold before it
            return MIN_TS_MS
        if ms is None:
            # fold=0: a skipped midnight maps with the offset before the change, i.e. to the
            # instant of the change (the day's real start); a repeated one to its first time.
            local = datetime.combine(d, time(0), tzinfo=self.zone)
            # Aware subtraction works on offsets, never building a datetime out of range.
            ms = min(max((local - _EPOCH) // timedelta(milliseconds=1), MIN_TS_MS),
                     MAX_TS_MS + 1)
            if len(self._starts) > 100_000:
                self._starts.clear()
            self._starts[d] = ms
        return ms


@dataclass(frozen=True, slots=True)
class EncodedDay:
    """One bucket: `body` holds the JSON objects of the day's quotes, comma-joined; `ts[i]` is
    quote i's epoch ms and `offsets[i]` where its object starts in `body`; `offsets` has one
    entry more, `len(body) + 1`, as if a comma followed the last object (0 for an empty day)."""

    ts: array            # array('q')
    offsets: array       # array('Q')
    body: bytes

    def __len__(self) -> int:
        return len(self.ts)

    def fragment(self, i: int, j: int) -> bytes:
        """Objects i..j-1, comma-joined (b"" if none)."""
        if i >= j:
            return b""
        return self.body[self.offsets[i]:self.offsets[j] - 1]

    def to_blobs(self) -> tuple[bytes, bytes, bytes]:
        """`(ts, offsets, body)` as stored: little-endian int64 / uint64 arrays and the body."""
        return _le_bytes(self.ts), _le_bytes(self.offsets), self.body

    @classmethod
    def from_blobs(cls, ts: bytes, offsets: bytes, body: bytes) -> EncodedDay:
        """The bucket stored as `to_blobs()` gave it; `ValueError` if the parts do not fit."""
        t, o = _le_array("q", ts), _le_array("Q", offsets)
        if len(o) != len(t) + 1 or o[-1] != (len(body) + 1 if t else 0) or (body and not t):
            raise ValueError("encoded day: ts, offsets and body do not fit together")
        return cls(t, o, bytes(body))


def _le_bytes(a: array) -> bytes:
    if sys.byteorder == "little":
        return a.tobytes()
    b = array(a.typecode, a)
    b.byteswap()
    return b.tobytes()


def _le_array(typecode: str, raw: bytes) -> array:
    a = array(typecode)
    if len(raw) % a.itemsize:
        raise ValueError("encoded day: an array's length is not a whole number of items")
    a.frombytes(raw)
    if sys.byteorder != "little":
        a.byteswap()
    return a


def encode_day(symbol: str, rows: Sequence[tuple]) -> EncodedDay:
    """The bucket of `rows` (`(ts, open, high, low, close, volume)`, ascending ts, one day of
    `symbol`), each encoded by the time-series service's own encoder, so slices of it are the
    service's bytes."""
    from services.timeseries import page_encoder  # the one encoder of a quote's JSON

    if not rows:
        return EncodedDay(array("q"), array("Q", [0]), b"")
    body = page_encoder(symbol, None)(rows)[1:-1]
    # Where each object starts: `{"symbol":` with real quotes occurs nowhere else (inside the
    # symbol's JSON string every quote is escaped; after it always comes `,"ts"`).
    offsets = array("Q", (m.start() for m in _OBJECT_START.finditer(body)))
    if len(offsets) != len(rows):
        raise AssertionError("encoded day: object starts do not match the rows")
    offsets.append(len(body) + 1)
    return EncodedDay(array("q", (r[0] for r in rows)), offsets, body)


_OBJECT_START = re.compile(rb'\{"symbol":')


class DaySlicer:
    """The fragments of a range from its days' buckets, given in ascending day order: each
    bucket cut to `start <= ts <= end`, at most `limit` quotes in all. Empty slices are skipped,
    so every fragment it yields is non-empty."""

    def __init__(self, start: int, end: int, limit: int | None) -> None:
        self.start, self.end = start, end
        self.left = limit

    @property
    def done(self) -> bool:
        return self.left == 0

    def cut(self, day: EncodedDay) -> bytes:
        """This bucket's part of the range (b"" if none), counted against the limit."""
        if self.left == 0:
            return b""
        i = 0 if not day.ts or day.ts[0] >= self.start else bisect_left(day.ts, self.start)
        j = len(day.ts) if not day.ts or day.ts[-1] <= self.end else bisect_right(day.ts,
                                                                                   self.end)
        if self.left is not None:
            j = min(j, i + self.left)
            self.left -= max(0, j - i)
        return day.fragment(i, j)

    def cut_rows(self, rows: Sequence[tuple], encode: Callable[[Sequence[tuple]], bytes]) -> bytes:
        """`rows` (already within the range, in order), up to the limit, encoded by `encode`
        (`page_encoder(symbol, None)`) as a fragment; for the days kept without a bucket."""
        if self.left is not None:
            rows = rows[:self.left]
            self.left -= len(rows)
        return encode(rows)[1:-1] if rows else b""

    def fragments(self, days: Iterable[EncodedDay]) -> Iterator[bytes]:
        for day in days:
            if self.done:
                return
            frag = self.cut(day)
            if frag:
                yield frag


def day_range(days: MarketDays, start: int | None, end: int | None) -> tuple[int, int, str, str]:
    """`(start, end, first day key, last day key)` of a range with open ends made explicit."""
    start = MIN_TS_MS if start is None else start
    end = MAX_TS_MS if end is None else end
    return start, end, days.day_of(start), days.day_of(end)
