"""Quotes from a CSV file: any vendor's export, validated row by row (`accessd data load`).

A file names its columns in a header row. By default the header names the quote's own fields,
`symbol,timestamp,open,high,low,close,volume`, in any order; a vendor's export is read through a
`CsvLayout`:
- `columns`: which header holds each field (`close=Last`), case-insensitive; a field may join
  several columns with a space (`timestamp=Date+Time`). Columns no field uses are ignored.
- `symbol`: the symbol of every row, for files without a symbol column.
- `tz`: the time zone of timestamps without an offset (default UTC); `Z` and offsets in the
  data win. Exchange exports usually give the exchange's local time: `America/New_York`. A
  local time the zone skips or repeats at a daylight-saving change is a bad row.
- `time_format`: a `strptime` format for timestamps that are not ISO 8601 or epoch milliseconds
  (`%m/%d/%Y %H:%M`).

Every row is checked (a time, positive finite prices with low <= open, close <= high, a whole
volume >= 0, a valid symbol) and each bad one is reported as `FILE:LINE: reason`. `load` writes
nothing unless the whole file is good, or `skip_bad` is set (then the good rows). Writes are
upserts by (symbol, timestamp): loading a file twice gives the store of loading it once.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.common import parse_time
from services.store import Quote, QuoteStore, check_quote

CSV_COLUMNS = ("symbol", "timestamp", "open", "high", "low", "close", "volume")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class RowError(ValueError):
    """A CSV row that cannot be a quote; `line` is its (first) line number in the file."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


class Progress:
    """Progress lines on stderr, at most one per `every` seconds, plus a final one."""

    def __init__(self, label: str, stream: TextIO | None = None, every: float = 1.0) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.every = every
        self.started = time.monotonic()
        self._last = 0.0

    def update(self, message: str, *, final: bool = False) -> None:
        now = time.monotonic()
        if final or now - self._last >= self.every:
            self._last = now
            print(f"{self.label}: {message} ({now - self.started:.1f}s)", file=self.stream,
                  flush=True)


# -- layout ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CsvLayout:
    """How a file's columns map to a quote's fields (see the module docstring)."""

    columns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    symbol: str | None = None
    tz: tzinfo = UTC
    time_format: str | None = None

    def wanted(self) -> dict[str, tuple[str, ...]]:
        """Field -> the header names (lower case) whose cells make it up."""
        fields = [f for f in CSV_COLUMNS if not (f == "symbol" and self.symbol)]
        return {f: tuple(h.strip().lower() for h in self.columns.get(f, (f,))) for f in fields}


def parse_columns(specs: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """`["timestamp=Date+Time,close=Last", ...]` -> {"timestamp": ("Date", "Time"), ...};
    `ValueError` for an unknown field or a malformed pair."""
    out: dict[str, tuple[str, ...]] = {}
    for spec in specs:
        for pair in filter(None, (p.strip() for p in spec.split(","))):
            name, sep, headers = pair.partition("=")
            name = name.strip().lower()
            if not sep or not headers.strip():
                raise ValueError(f"bad column mapping {pair!r}: expected FIELD=HEADER[+HEADER]")
            if name not in CSV_COLUMNS:
                raise ValueError(f"bad column mapping {pair!r}: the fields are "
                                 + ", ".join(CSV_COLUMNS))
            out[name] = tuple(h.strip() for h in headers.split("+"))
    return out


def parse_tz(name: str) -> tzinfo:
    """A time zone by IANA name (`America/New_York`, `UTC`); `ValueError` if unknown."""
    if name.upper() in ("UTC", "Z"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name, e.g. America/New_York)") \
            from None


def parse_timestamp(text: str, layout: CsvLayout) -> int:
    """Epoch ms of `text`: epoch ms, ISO 8601 or `layout.time_format`; no offset means
    `layout.tz`."""
    if layout.time_format is None and layout.tz is UTC:
        return parse_time(text)
    s = text.strip()
    if layout.time_format is None:
        if s.isdigit():
            return parse_time(s)
        try:
            dt = datetime.fromisoformat(s)
        except ValueError:
            raise ValueError(f"{text!r} is neither epoch milliseconds nor ISO 8601") from None
    else:
        try:
            dt = datetime.strptime(s, layout.time_format)
        except ValueError:
            raise ValueError(f"{text!r} does not match the time format "
                             f"{layout.time_format!r}") from None
    if dt.tzinfo is None:
        dt = local_time(dt, layout.tz)
    return (dt - _EPOCH) // timedelta(milliseconds=1)


def local_time(naive: datetime, tz: tzinfo) -> datetime:
    """`naive` as a wall-clock time in `tz`; `ValueError` for a time the zone skips (clocks
    moved forward) or repeats (moved back), which name no single instant."""
    early, late = naive.replace(tzinfo=tz, fold=0), naive.replace(tzinfo=tz, fold=1)
    if early.utcoffset() == late.utcoffset():
        return early
    # zoneinfo gives the two offsets around the change; a skipped time does not come back from
    # a round trip through UTC.
    if early.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != naive:
        raise ValueError(f"{naive.isoformat(sep=' ')} does not exist in {tz} "
                         "(the clocks moved forward)")
    raise ValueError(f"{naive.isoformat(sep=' ')} happens twice in {tz} (the clocks moved "
                     "back): give the time with its offset")


# -- rows ------------------------------------------------------------------------------------------
def _number(name: str, text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"{name} {text!r} is not a number") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} {text!r} is not finite")
    return v


def parse_row(row: Sequence[str], positions: dict[str, int] | dict[str, tuple[int, ...]],
              line: int, layout: CsvLayout | None = None, width: int | None = None) -> Quote:
    """The quote in `row` (each field's cells located by `positions`), or `RowError` saying
    what is wrong. `width`: the number of columns the header has (default: one per field)."""
    layout = layout or CsvLayout()
    expected = width if width is not None else len(positions)
    if len(row) != expected:
        raise RowError(line, f"expected {expected} columns, got {len(row)}")
    cell = {name: " ".join(row[i].strip() for i in ((at,) if isinstance(at, int) else at))
            for name, at in positions.items()}
    if layout.symbol:
        cell["symbol"] = layout.symbol
    try:
        ts = parse_timestamp(cell["timestamp"], layout)
        o, h, lo, c = (_number(n, cell[n]) for n in ("open", "high", "low", "close"))
        if min(o, h, lo, c) <= 0:
            raise ValueError("prices must be > 0")
        if not (lo <= min(o, c) and max(o, c) <= h):
            raise ValueError(f"inconsistent bar: need low <= open, close <= high "
                             f"(open {o}, high {h}, low {lo}, close {c})")
        vol = _number("volume", cell["volume"])
        if vol < 0 or not vol.is_integer():
            raise ValueError(f"volume {cell['volume']!r} is not a whole number >= 0")
        return check_quote(Quote(cell["symbol"], ts, o, h, lo, c, int(vol)))
    except ValueError as exc:
        raise RowError(line, str(exc)) from None


def header_positions(header: Sequence[str], layout: CsvLayout) -> dict[str, tuple[int, ...]]:
    """Each field's column indexes in `header`; `RowError` on line 1 naming what is missing."""
    names = [h.strip().lower() for h in header]
    positions: dict[str, tuple[int, ...]] = {}
    missing = []
    for name, headers in layout.wanted().items():
        at = []
        for h in headers:
            if names.count(h) > 1:
                raise RowError(1, f"the header names column {h!r} more than once")
            if h in names:
                at.append(names.index(h))
            else:
                missing.append(h if h == name else f"{h} (for {name})")
        positions[name] = tuple(at)
    if missing:
        raise RowError(1, f"the header has no column {', '.join(missing)}; it has "
                          f"{','.join(names)} (map fields to columns with --columns "
                          "FIELD=HEADER, e.g. timestamp=Date+Time,close=Last; --symbol for "
                          "files without a symbol column)")
    return positions


def read_csv(path: Path, layout: CsvLayout | None = None) -> Iterator[Quote | RowError]:
    """Each data row of `path` as a Quote or the RowError describing it; a bad header (or an
    unreadable file) raises RowError itself, as nothing can be read without it."""
    layout = layout or CsvLayout()
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise RowError(1, "empty file: expected a header row, e.g. "
                              + ",".join(CSV_COLUMNS)) from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise RowError(1, f"unreadable header: {exc}") from None
        positions = header_positions(header, layout)
        while True:
            start_line = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as exc:
                yield RowError(start_line, f"unreadable row: {exc}")
                continue
            if not row or all(not c.strip() for c in row):
                continue  # blank lines are not data
            try:
                yield parse_row(row, positions, start_line, layout, width=len(header))
            except RowError as err:
                yield err


# -- loading ---------------------------------------------------------------------------------------
@dataclass
class LoadReport:
    good: int = 0
    bad: int = 0
    written: int = 0
    symbols: set[str] | None = None


def validate_csv(path: Path, max_errors: int, err: TextIO,
                 layout: CsvLayout | None = None) -> LoadReport:
    """First pass: count good and bad rows, printing the first `max_errors` bad ones."""
    report = LoadReport(symbols=set())
    size = max(os.path.getsize(path), 1)
    progress = Progress(f"checking {path.name}", err)
    for item in read_csv(path, layout):
        if isinstance(item, RowError):
            report.bad += 1
            if report.bad <= max_errors:
                print(f"{path}:{item.line}: {item.reason}", file=err)
        else:
            report.good += 1
            report.symbols.add(item.symbol)  # type: ignore[union-attr]
            if report.good % 10_000 == 0:
                progress.update(f"{report.good} rows ok, {report.bad} bad")
    if report.bad > max_errors:
        print(f"{path}: ... and {report.bad - max_errors} more bad rows", file=err)
    progress.update(f"{report.good} rows ok, {report.bad} bad, {size} bytes", final=True)
    return report


def load(store: QuoteStore, path: Path, *, skip_bad: bool = False, max_errors: int = 20,
         err: TextIO | None = None, layout: CsvLayout | None = None) -> LoadReport:
    """Validate `path` and, if it is clean (or `skip_bad`), upsert its good rows into `store`.

    Raises `RowError` for a bad header; otherwise returns the report (`written == 0` when bad
    rows stopped the load).
    """
    err = err or sys.stderr
    report = validate_csv(path, max_errors, err, layout)
    if report.bad and not skip_bad:
        return report
    progress = Progress(f"loading {path.name}", err)

    def good() -> Iterator[Quote]:
        n = 0
        for item in read_csv(path, layout):
            if isinstance(item, Quote):
                n += 1
                if n % 10_000 == 0:
                    progress.update(f"{n}/{report.good} rows")
                yield item
        progress.update(f"{n}/{report.good} rows", final=True)

    report.written = store.write(good())
    return report
