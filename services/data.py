"""Quote data for the store: a deterministic generator (`synth`) and a CSV loader (`load`).

    accessd data synth --symbol JPM [--start 2026-01-02] [--days 30] [--interval 1m] [--seed 1]
                       [--start-price 100] --store URL
    accessd data load FILE.csv [--columns FIELD=HEADER[+HEADER],...] [--symbol S] [--tz ZONE]
                      [--time-format FMT] [--skip-bad] [--max-errors 20] --store URL

`--store` defaults to `$ACCESSD_STORE`. Progress goes to stderr, the summary to stdout.
Exit status: 0 done, 1 bad input (nothing written), 2 usage, 3 store unavailable.

synth: bars every `interval` over US regular trading hours (09:30-16:00 America/New_York, so 390
one-minute bars a day; weekends skipped, exchange holidays not modelled). The model of the data:
- an efficient price: a geometric random walk (annual drift 5 %, volatility 25 %, plus an
  overnight gap), in SUB_STEPS (4) steps per bar, with a volatility that changes over the day
  in a U (`--vol-u`, default 1: twice the midday volatility at the open and the close, scaled
  so the day's variance is that of the annual volatility);
- trades: one after each step, at the bid or the ask (a fair coin) around the efficient price,
  `--spread-bps` (default 10) apart, in cents. A bar's open, high, low and close are its first,
  highest, lowest and last trade. Because the close is at the bid or the ask at random, the next
  close tends to move back: 1-minute returns have the negative lag-1 autocorrelation that
  market-microstructure studies report (Roll's bid-ask bounce; about -0.23 with the defaults),
  which a model on past returns can use and the naive "next close = last close" cannot;
- volumes: U-shaped over the day, with log-normal noise.
`--random-walk` makes the pure random walk instead: flat volatility, prices on the efficient path
itself (each bar opens at the previous close), nothing a model can predict; these are the quotes
of the generator before the bid-ask model, seed for seed.
The same seed gives the same quotes, and a longer run starts with the quotes of a shorter one
(days are drawn in order), with the same numpy. Quotes stream into the store: memory stays flat
for millions of bars. Library use: `synth_days(SynthParams(...))` yields each day's quotes,
`synth(store, params, progress)` writes them and returns how many.

load: a CSV file with a header row, by default `symbol,timestamp,open,high,low,close,volume` (any
order, any case, other columns ignored); a vendor's export through `--columns` (which header
holds each field: `timestamp=Date+Time,close=Last`, several headers joined with a space),
`--symbol` (for files without a symbol column), `--tz` (the zone of timestamps without an offset,
default UTC; exports usually give exchange time, `America/New_York`) and `--time-format` (a
strptime format, for timestamps that are not ISO 8601 or epoch milliseconds). The file is
validated row by row first, and every bad row is reported as `FILE:LINE: reason`; if any is bad
nothing is written unless `--skip-bad`, which writes the good rows. Writes are upserts by (symbol,
timestamp), so loading a file twice gives the same store as loading it once (and a load
interrupted by a store outage can simply be rerun). The loader lives in `services.quotes_csv`.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from services.quotes_csv import (  # noqa: F401  (re-exported: the loader's home before)
    CSV_COLUMNS,
    CsvLayout,
    LoadReport,
    Progress,
    RowError,
    load,
    parse_columns,
    parse_row,
    parse_tz,
    read_csv,
    validate_csv,
)
from services.store import Quote, QuoteStore, StoreUnavailable, iso_ms, open_store

MARKET_TZ = ZoneInfo("America/New_York")
SESSION_OPEN = dtime(9, 30)
SESSION_MINUTES = 390
TRADING_DAYS_PER_YEAR = 252
SUB_STEPS = 4                 # random-walk steps per bar: gives a high/low apart from open/close
DEFAULT_SPREAD_BPS = 10.0
DEFAULT_VOL_U = 1.0

EXIT_OK, EXIT_BAD_INPUT, EXIT_USAGE, EXIT_STORE = 0, 1, 2, 3

_INTERVAL_RE = re.compile(r"(\d+)(s|m|h|d)")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000}


# -- synth -----------------------------------------------------------------------------------------
def parse_interval(text: str) -> int:
    """Bar length in ms from `30s`, `1m`, `5m`, `1h`, `1d` (a whole session); at most a session."""
    m = _INTERVAL_RE.fullmatch(text.strip())
    if not m or int(m.group(1)) == 0:
        raise ValueError(f"bad interval {text!r}: expected e.g. 30s, 1m, 5m, 1h or 1d")
    n, unit = int(m.group(1)), m.group(2)
    if unit == "d":
        if n != 1:
            raise ValueError("the only day interval is 1d (one bar per session)")
        return SESSION_MINUTES * 60_000
    ms = n * _UNIT_MS[unit]
    if ms > SESSION_MINUTES * 60_000:
        raise ValueError(f"interval {text!r} is longer than a session (390 minutes)")
    return ms


def trading_days(start: date, count: int) -> Iterator[date]:
    """`count` weekdays from `start` on (holidays are not modelled)."""
    day = start
    produced = 0
    while produced < count:
        if day.weekday() < 5:
            yield day
            produced += 1
        day += timedelta(days=1)


def session_bar_starts(day: date, interval_ms: int) -> np.ndarray:
    """Epoch ms (UTC) of the bars of `day`'s session: open + k*interval while before the close."""
    opening = datetime.combine(day, SESSION_OPEN, tzinfo=MARKET_TZ).astimezone(UTC)
    open_ms = int(opening.timestamp()) * 1000
    return np.arange(open_ms, open_ms + SESSION_MINUTES * 60_000, interval_ms, dtype=np.int64)


@dataclass(frozen=True)
class SynthParams:
    """What `synth_days` makes (see the module docstring for the model). Fields may be added,
    always with a default, so `SynthParams(symbol, start, days, ...)` keeps working."""

    symbol: str
    start: date
    days: int
    interval_ms: int = 60_000
    seed: int = 1
    start_price: float = 100.0
    annual_drift: float = 0.05
    annual_vol: float = 0.25
    base_volume: float = 20_000.0
    spread_bps: float = DEFAULT_SPREAD_BPS   # bid-ask spread, basis points of the price
    vol_u: float = DEFAULT_VOL_U             # volatility at the open/close vs midday, minus 1
    random_walk: bool = False                # the pure random walk: no spread, flat volatility


def intraday_shape(n: int, depth: float) -> np.ndarray:
    """`1 + depth * (2x - 1)^2` at the middle `x` of each of `n` equal parts of a session:
    1 at midday, `1 + depth` at the open and the close (the U of intraday activity)."""
    position = (np.arange(n) + 0.5) / n
    return 1.0 + depth * (2 * position - 1) ** 2


def synth_days(p: SynthParams) -> Iterator[list[Quote]]:
    """The quotes of each trading day in turn (see the module docstring for the model)."""
    rng = np.random.default_rng(p.seed)
    bar_years = p.interval_ms / 60_000 / (SESSION_MINUTES * TRADING_DAYS_PER_YEAR)
    step_sigma = p.annual_vol * math.sqrt(bar_years / SUB_STEPS)
    gap_sigma = p.annual_vol * math.sqrt(1 / TRADING_DAYS_PER_YEAR) * 0.5
    half_spread = 0.0 if p.random_walk else p.spread_bps / 20_000
    efficient = p.start_price      # the efficient price at the last close
    first_day = True
    for day in trading_days(p.start, p.days):
        starts = session_bar_starts(day, p.interval_ms)
        n = len(starts)
        # Volatility per bar: U-shaped over the day, scaled so that the day's variance is that
        # of a flat `annual_vol` (the pure random walk keeps it flat).
        vol = np.ones(n) if p.random_walk else intraday_shape(n, p.vol_u)
        vol = vol / math.sqrt(float(np.mean(vol**2)))
        # Draw order is fixed per day (gap, steps, volume noise, then trade sides) so runs are
        # reproducible and prefix-stable; the pure random walk draws no sides, which keeps its
        # quotes those of the generator before the bid-ask model.
        gap = rng.standard_normal()
        sigma = step_sigma * vol[:, None]
        # Ito correction so that the expected price grows at annual_drift.
        mu = p.annual_drift * bar_years / SUB_STEPS - sigma**2 / 2
        steps = rng.standard_normal((n, SUB_STEPS)) * sigma + mu
        noise = rng.standard_normal(n)
        open_ = efficient if first_day else efficient * math.exp(gap * gap_sigma)
        first_day = False
        log_path = math.log(open_) + np.concatenate(([0.0], np.cumsum(steps.ravel())))
        if p.random_walk:
            # Row b holds bar b's open and its SUB_STEPS sub-step prices; consecutive bars share
            # an endpoint, so each bar opens at the previous bar's close.
            idx = np.arange(n)[:, None] * SUB_STEPS + np.arange(SUB_STEPS + 1)[None, :]
            prices = np.maximum(np.round(np.exp(log_path[idx]), 2), 0.01)
        else:
            # Row b holds bar b's SUB_STEPS trades, one after each sub-step of the efficient
            # price, each at the bid or the ask (a fair coin): efficient * (1 -/+ half spread).
            idx = np.arange(n)[:, None] * SUB_STEPS + np.arange(1, SUB_STEPS + 1)[None, :]
            side = rng.integers(0, 2, (n, SUB_STEPS)) * 2 - 1
            prices = np.maximum(np.round(np.exp(log_path[idx]) * (1 + side * half_spread), 2),
                                0.01)
        volumes = np.maximum(p.base_volume * p.interval_ms / 60_000 * intraday_shape(n, 1.5)
                             * np.exp(0.3 * noise), 1).astype(np.int64)
        highs, lows = prices.max(axis=1), prices.min(axis=1)
        yield [Quote(p.symbol, int(starts[b]), float(prices[b, 0]), float(highs[b]),
                     float(lows[b]), float(prices[b, -1]), int(volumes[b])) for b in range(n)]
        efficient = float(np.exp(log_path[-1]))


def synth(store: QuoteStore, params: SynthParams, progress: Progress | None = None) -> int:
    """Write the synthetic quotes of `params` to `store`; return how many."""
    total = 0

    def quotes() -> Iterator[Quote]:
        nonlocal total
        for i, day_quotes in enumerate(synth_days(params), 1):
            yield from day_quotes
            total += len(day_quotes)
            if progress:
                progress.update(f"day {i}/{params.days}, {total} quotes", final=i == params.days)

    return store.write(quotes())


# -- command line ----------------------------------------------------------------------------------
def _synth_doc() -> str:
    """The synth paragraph of the module docstring: `--help` shows the model of the data."""
    doc = __doc__ or ""
    return doc[doc.index("synth: bars"):doc.index("\nload: ")].strip()


def _load_doc() -> str:
    doc = __doc__ or ""
    return doc[doc.index("load: a CSV"):].strip()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="accessd data", description="Make or load quote data.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("synth", help="write a deterministic synthetic series",
                       description="Write deterministic synthetic quotes to a store.\n\n"
                       + _synth_doc(), formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--symbol", required=True)
    s.add_argument("--start", default="2026-01-02", type=date.fromisoformat,
                   help="first day (YYYY-MM-DD); weekends are skipped")
    s.add_argument("--days", type=int, default=30, help="trading days")
    s.add_argument("--interval", default="1m", help="bar length: 30s, 1m, 5m, 1h, 1d ...")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--start-price", type=float, default=100.0)
    s.add_argument("--spread-bps", type=float, default=DEFAULT_SPREAD_BPS,
                   help="bid-ask spread in basis points of the price (default %(default)g)")
    s.add_argument("--vol-u", type=float, default=DEFAULT_VOL_U,
                   help="volatility at the open and the close over midday's, minus 1 "
                        "(default %(default)g; 0: flat)")
    s.add_argument("--random-walk", action="store_true",
                   help="the pure random walk: no bid-ask bounce, flat volatility")
    s.add_argument("--store", default=os.environ.get("ACCESSD_STORE"),
                   help="store URL (default $ACCESSD_STORE)")
    ld = sub.add_parser("load", help="load a CSV file (any vendor's export)",
                        description="Load quotes from a CSV file.\n\n" + _load_doc(),
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ld.add_argument("file", type=Path)
    ld.add_argument("--columns", action="append", default=[], metavar="FIELD=HEADER,...",
                    help="which column holds each field, e.g. timestamp=Date+Time,close=Last "
                         "(repeatable; default: the field's own name)")
    ld.add_argument("--symbol", dest="fixed_symbol", metavar="SYMBOL",
                    help="the symbol of every row (for files without a symbol column)")
    ld.add_argument("--tz", default="UTC",
                    help="time zone of timestamps without an offset (default UTC)")
    ld.add_argument("--time-format", metavar="FMT",
                    help="strptime format of the timestamps (default: ISO 8601 or epoch ms)")
    ld.add_argument("--skip-bad", action="store_true", help="write the good rows of a bad file")
    ld.add_argument("--max-errors", type=int, default=20, help="bad rows to print")
    ld.add_argument("--store", default=os.environ.get("ACCESSD_STORE"),
                    help="store URL (default $ACCESSD_STORE)")
    return p


def main(argv: list[str]) -> int:
    """`accessd data synth|load ...` (see the module docstring)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else EXIT_OK
    if not args.store:
        print("accessd data: --store URL (or $ACCESSD_STORE) is required", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.command == "synth":
            if args.days < 1:
                raise ValueError("--days must be >= 1")
            if args.spread_bps < 0 or args.vol_u < 0:
                raise ValueError("--spread-bps and --vol-u must be >= 0")
            params = SynthParams(args.symbol, args.start, args.days, parse_interval(args.interval),
                                 args.seed, args.start_price, spread_bps=args.spread_bps,
                                 vol_u=args.vol_u, random_walk=args.random_walk)
        else:
            layout = CsvLayout(parse_columns(args.columns), args.fixed_symbol,
                               parse_tz(args.tz), args.time_format)
    except ValueError as exc:
        print(f"accessd data: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        store = open_store(args.store)
    except ValueError as exc:
        print(f"accessd data: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StoreUnavailable as exc:
        print(f"accessd data: store unavailable: {exc}", file=sys.stderr)
        return EXIT_STORE
    try:
        with store:
            if args.command == "synth":
                n = synth(store, params, Progress(f"synth {args.symbol}"))
                last = store.last(args.symbol)
                kind = ("pure random walk" if params.random_walk else
                        f"bid-ask spread {params.spread_bps:g} bp, volatility U {params.vol_u:g}")
                print(f"wrote {n} quotes of {args.symbol} ({params.days} days, "
                      f"{args.interval} bars, seed {args.seed}, {kind}) to {args.store}; "
                      f"last {iso_ms(last.ts) if last else '-'}")
                return EXIT_OK
            if not args.file.is_file():
                print(f"accessd data: {args.file}: no such file", file=sys.stderr)
                return EXIT_BAD_INPUT
            report = load(store, args.file, skip_bad=args.skip_bad,
                          max_errors=args.max_errors, layout=layout)
    except RowError as exc:
        print(f"{args.file}:{exc.line}: {exc.reason}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except StoreUnavailable as exc:
        print(f"accessd data: store unavailable: {exc}", file=sys.stderr)
        return EXIT_STORE
    except OSError as exc:
        print(f"accessd data: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if report.bad and not args.skip_bad:
        print(f"{args.file}: {report.bad} bad rows; nothing written "
              f"(--skip-bad writes the {report.good} good ones)", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"loaded {report.written} quotes ({', '.join(sorted(report.symbols or ()))}) from "
          f"{args.file} to {args.store}" + (f"; skipped {report.bad} bad rows" if report.bad else ""))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
