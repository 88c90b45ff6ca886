"""The quote store: one interface in front of the stock-quote time series.

Backends:
- `SQLiteQuoteStore` (`services.sqlite_store`) — embedded default, one file, WAL mode;
- `CassandraQuoteStore` (`services.cassandra_store`) — production, through cassandra-driver.

`open_store(url)` picks the backend from the URL scheme:

    sqlite:///abs/path.db            sqlite:relative/path.db           (?timeout=5)
    cassandra://h1:9042,h2:9042/keyspace?consistency=LOCAL_QUORUM&username=u&password=p
        &bucket=day&connect_timeout=5&request_timeout=5&replication=1&fetch_size=5000

Both take `market_tz=America/New_York` (the default): the zone whose days the pre-encoded range
buckets are (`services.day_buckets`).

Invariants every backend keeps:
- a quote is identified by `(symbol, ts)`; `write` is an idempotent upsert (last write wins);
- `read_range` yields quotes of one symbol in ascending `ts`, both bounds inclusive, at most
  `limit` of them, streaming with bounded memory (millions of rows are fine). Arguments are
  checked and the first page is fetched by the call itself, so `ValueError` and an unreachable
  store (`StoreUnavailable`) surface before the caller starts a response; a failure later in the
  stream raises `StoreUnavailable` from `next()`;
- every "the backend cannot be reached / timed out / is missing" failure is `StoreUnavailable`
  (services answer 503 + Retry-After); bad input is `ValueError`;
- connections are made lazily in the process that uses them (checked by `os.getpid()`), so a
  store opened before gunicorn forks is safe to use in every worker, and a store reconnects by
  itself once the backend is back: no restart is needed after an outage.
"""

from __future__ import annotations

import math
import numbers
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from urllib.parse import urlsplit

QUOTE_FIELDS: tuple[str, ...] = ("open", "high", "low", "close", "volume")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Bounds of what both backends can hold: Cassandra `timestamp` is a signed 64-bit millisecond
# count, but Python's datetime (used for ISO output and day buckets) stops at years 1..9999.
MIN_TS_MS = -62135596800000  # 0001-01-01T00:00:00Z
MAX_TS_MS = 253402300799999  # 9999-12-31T23:59:59.999Z
_MAX_BIGINT = 2**63 - 1


class StoreUnavailable(Exception):
    """The backend cannot be reached, timed out, or its data is missing (a transient condition).

    Services answer 503 with Retry-After; the store itself reconnects on a later call.
    """


class StoreMisconfigured(ValueError):
    """The backend answers but the store's settings cannot work with it (e.g. a datacenter the
    cluster does not have, a consistency level its replicas can never meet). Not transient:
    services refuse to start with it rather than answer errors."""


def iso_ms(ts_ms: int) -> str:
    """ISO 8601 UTC with millisecond precision and a `Z`, e.g. `2024-01-02T14:30:00.000Z`."""
    # timedelta arithmetic rather than fromtimestamp(ts/1000): exact, no float rounding.
    return (_EPOCH + timedelta(milliseconds=ts_ms)).isoformat(timespec="milliseconds")[:-6] + "Z"


@dataclass(frozen=True, slots=True)
class Quote:
    """One bar of a symbol's time series. `ts` is epoch milliseconds UTC (the bar's start)."""

    symbol: str
    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: int

    def to_json(self, fields: Sequence[str] | None = None) -> dict:
        """`{"symbol", "ts" (ISO 8601 UTC, Z), "epochMs", "open", ...}`.

        With `fields`, only those of `QUOTE_FIELDS` are included (symbol/ts/epochMs always are);
        an unknown field name is a `ValueError`.
        """
        doc: dict = {"symbol": self.symbol, "ts": iso_ms(self.ts), "epochMs": self.ts}
        if fields is None:
            fields = QUOTE_FIELDS
        else:
            unknown = [f for f in fields if f not in QUOTE_FIELDS]
            if unknown:
                raise ValueError(f"unknown quote field(s) {unknown}; known: {list(QUOTE_FIELDS)}")
        for name in fields:
            doc[name] = getattr(self, name)
        return doc


def check_symbol(symbol: object) -> str:
    """The symbol itself, or `ValueError` if it is not a non-empty string without NUL."""
    if not isinstance(symbol, str) or not symbol or "\x00" in symbol or len(symbol) > 64:
        raise ValueError(f"symbol must be a non-empty string of at most 64 chars, got {symbol!r}")
    return symbol


def _is_int(v: object) -> bool:
    # numbers.Integral admits numpy integers (the data generator uses numpy); bool is an int
    # subclass, but True as a timestamp or volume is a bug in the caller, not a number.
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _check_ts(name: str, ts: object) -> int:
    if not _is_int(ts):
        raise ValueError(f"{name} must be an int of epoch milliseconds, got {ts!r}")
    ts = int(ts)  # type: ignore[arg-type]
    if not MIN_TS_MS <= ts <= MAX_TS_MS:
        raise ValueError(f"{name} {ts} is outside years 1..9999")
    return ts


def check_quote(q: object) -> Quote:
    """`q` with plain Python int/float fields (numpy scalars converted), or `ValueError`.

    Checks: symbol (see `check_symbol`), ts within years 1..9999, prices finite numbers,
    volume an int in 0..2**63-1 (Cassandra bigint).
    """
    if not isinstance(q, Quote):
        raise ValueError(f"expected a Quote, got {type(q).__name__}")
    check_symbol(q.symbol)
    if any(unicodedata.category(c) == "Cc" for c in q.symbol):
        # Reads of such a symbol simply find nothing; writes refuse it (it would reach log
        # lines, file names and CSV exports).
        raise ValueError(f"symbol {q.symbol!r} holds control characters")
    ts = _check_ts("ts", q.ts)
    prices = []
    for name in ("open", "high", "low", "close"):
        v = getattr(q, name)
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise ValueError(f"{q.symbol}@{q.ts}: {name} must be a finite number, got {v!r}")
        prices.append(float(v))
    if not _is_int(q.volume) or not 0 <= q.volume <= _MAX_BIGINT:
        raise ValueError(f"{q.symbol}@{q.ts}: volume must be an int >= 0, got {q.volume!r}")
    return Quote(q.symbol, ts, *prices, int(q.volume))


def check_range(start_ms: int | None, end_ms: int | None,
                limit: int | None) -> tuple[int | None, int | None, int | None]:
    """The arguments as plain ints (or None), or `ValueError` unless start <= end, limit >= 0."""
    start = None if start_ms is None else _check_ts("start_ms", start_ms)
    end = None if end_ms is None else _check_ts("end_ms", end_ms)
    if start is not None and end is not None and start > end:
        raise ValueError(f"start_ms {start} is after end_ms {end}")
    if limit is not None and (not _is_int(limit) or limit < 0):
        raise ValueError(f"limit must be an int >= 0, got {limit!r}")
    return start, end, None if limit is None else int(limit)


class QuoteStore(ABC):
    """Interface of every quote-store backend (see the module docstring for the invariants)."""

    def create_schema(self) -> None:  # noqa: B027 - optional hook, not every backend needs it
        """Create the tables (and keyspace) if they do not exist; idempotent.

        SQLite does it when the store is opened; Cassandra needs this explicit call once.
        """

    @abstractmethod
    def write(self, quotes: Iterable[Quote]) -> int:
        """Upsert `quotes` by `(symbol, ts)`; return how many were written.

        Consumes the iterable in batches (bounded memory). Every quote is checked before its
        batch is sent, so a bad quote (`ValueError`) leaves the batches before it written and
        none after it; rewriting the same quotes is harmless (idempotent).
        """

    @abstractmethod
    def read_range(self, symbol: str, start_ms: int | None = None, end_ms: int | None = None,
                   *, limit: int | None = None) -> Iterator[Quote]:
        """Quotes of `symbol` with `start_ms <= ts <= end_ms` (None: unbounded), ascending by ts.

        Streams: memory stays bounded whatever the number of rows. Close the iterator (or
        exhaust it) to release the backend's cursor. `ValueError` for bad arguments and
        `StoreUnavailable` for an unreachable store are raised by the call itself.
        """

    @abstractmethod
    def last(self, symbol: str) -> Quote | None:
        """The quote with the greatest ts of `symbol`, or None if there is none."""

    @abstractmethod
    def has_symbol(self, symbol: str) -> bool:
        """True if at least one quote of `symbol` is stored."""

    @abstractmethod
    def symbols(self) -> list[str]:
        """Every symbol with at least one quote, sorted."""

    @abstractmethod
    def ping(self) -> None:
        """Return if the backend answers; raise `StoreUnavailable` otherwise (health checks)."""

    @abstractmethod
    def close(self) -> None:
        """Release this process's connections. A later call reconnects lazily."""

    # -- optional fast paths (the defaults are correct for every backend) --------------------------
    def read_range_rows(self, symbol: str, start_ms: int | None = None, end_ms: int | None = None,
                        *, limit: int | None = None) -> Iterator[list[tuple]]:
        """`read_range` as pages of plain `(ts, open, high, low, close, volume)` tuples.

        Same contract as `read_range` (bounds, order, limit, errors raised by the call itself,
        streaming, `close()`), but no `Quote` per row: what the time-series service encodes.
        Pages are non-empty lists of at most a few thousand rows. This default groups
        `read_range`; a backend can fetch the tuples directly.
        """
        return _RowPages(self.read_range(symbol, start_ms, end_ms, limit=limit))

    def read_range_encoded(self, symbol: str, start_ms: int | None = None,
                           end_ms: int | None = None, *, limit: int | None = None,
                           ) -> Iterator[bytes] | None:
        """The range as non-empty fragments of the time-series service's JSON array with all
        fields (comma-joined quote objects, no brackets), from stored pre-encoded day buckets
        (`services.day_buckets`); joined by commas and bracketed they are byte for byte the
        array the service encodes from `read_range_rows`. Same contract as `read_range`.
        None (the default) when the backend has no such buckets: the caller encodes rows."""
        return None

    def check_configuration(self) -> None:
        """Connect and check that the settings fit the backend: `StoreMisconfigured` if they
        never can, `StoreUnavailable` if it cannot be reached now. Services call it at start-up."""
        return None

    def data_version(self) -> object | None:
        """A token that changes whenever stored data may have changed, or None if the backend
        cannot tell cheaply (then nothing may be cached on it).

        Read it before reading the data a cache entry holds: equal tokens then mean the entry is
        current. `StoreUnavailable` when the store cannot be reached, like any other read.
        """
        return None

    def __enter__(self) -> QuoteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _RowPages(Iterator[list[tuple]]):
    """Pages of `(ts, open, high, low, close, volume)` from an iterator of quotes."""

    PAGE = 1000

    def __init__(self, quotes: Iterator[Quote]) -> None:
        self._quotes = quotes

    def __next__(self) -> list[tuple]:
        page = [(q.ts, q.open, q.high, q.low, q.close, q.volume)
                for q in islice(self._quotes, self.PAGE)]
        if not page:
            raise StopIteration
        return page

    def close(self) -> None:
        close = getattr(self._quotes, "close", None)
        if close is not None:
            close()


def open_store(url: str) -> QuoteStore:
    """The store named by `url` (see the module docstring); `ValueError` for a bad URL.

    Opening makes no connection (except that SQLite creates its file and table if missing), so
    it is safe before a fork.
    """
    scheme = urlsplit(url).scheme.lower() if isinstance(url, str) else ""
    if scheme == "sqlite":
        from services.sqlite_store import SQLiteQuoteStore

        return SQLiteQuoteStore.from_url(url)
    if scheme == "cassandra":
        from services.cassandra_store import CassandraQuoteStore

        return CassandraQuoteStore.from_url(url)
    raise ValueError(f"unsupported store URL {url!r}: expected sqlite:... or cassandra://...")
