"""The time-series service: a symbol's quotes over a time range, streamed as one JSON array.

    GET /timeseries/{symbol}[?from=T&to=T&fields=open,close&limit=N]

`from`/`to` are inclusive instants, epoch milliseconds or ISO 8601 (no offset means UTC). The
body is a JSON array of `Quote.to_json(fields)` objects in ascending time, produced by a generator
while the store streams rows, a few hundred quotes per chunk: memory per request is bounded
whatever the range (a million points stream in constant space).

Errors (JSON `{"title", "description"}`): 400 for an unknown parameter, an unparseable time,
`from` after `to`, an unknown field or a bad limit; 404 for a symbol with no quotes at all (a
known symbol with nothing in the range is `[]`); 503 + Retry-After when the store is unreachable.
The first page is read before the response starts, so those statuses are real; if the store fails
later, mid-stream, the connection is closed before the array is complete (no terminating chunk),
which a client sees as a truncated body rather than as valid, partial data.

Run: `ACCESSD_STORE=sqlite:///path.db gunicorn 'services.timeseries:get_app()'`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from operator import attrgetter

import falcon

from services.common import (
    ServiceConfig,
    app_from_env,
    bad_param,
    make_app,
    parse_time,
    unknown_symbol,
)
from services.store import QUOTE_FIELDS, Quote, QuoteStore, StoreUnavailable, iso_ms

log = logging.getLogger("accessd.services.timeseries")

CHUNK_QUOTES = 256          # quotes per yielded chunk: few syscalls, small buffers
KNOWN_PARAMS = frozenset({"from", "to", "fields", "limit"})


def quote_encoder(fields: Sequence[str] | None) -> Callable[[Quote], str]:
    """A function giving the JSON text of `Quote.to_json(fields)` for one quote, compact.

    Written out by hand rather than through `json.dumps` of a dict: this is the inner loop of
    every range query. One %-format per quote; the store guarantees finite floats (whose `repr`
    is valid JSON) and int volumes. `tests/services/test_timeseries.py` checks it against
    `to_json`.
    """
    names = tuple(QUOTE_FIELDS if fields is None else fields)
    template = '{"symbol":%s,"ts":"%s","epochMs":%d' + "".join(
        f',"{n}":' + ("%d" if n == "volume" else "%r") for n in names) + "}"
    get = attrgetter(*names) if names else (lambda q: ())
    single = len(names) == 1
    symbols: dict[str, str] = {}

    def encode(q: Quote) -> str:
        sym = symbols.get(q.symbol)
        if sym is None:
            sym = symbols[q.symbol] = json.dumps(q.symbol)
        values = get(q)
        return template % (sym, fast_iso_ms(q.ts), q.ts, *((values,) if single else values))

    return encode


_DAY_MS = 86_400_000
_day_prefix: dict[int, str] = {}


def fast_iso_ms(ts: int) -> str:
    """`iso_ms(ts)` without the Z-less datetime round trip per quote: the date part is cached
    per day (a series spans few days per request), the time of day is integer arithmetic."""
    day, ms = divmod(ts, _DAY_MS)
    prefix = _day_prefix.get(day)
    if prefix is None:
        if len(_day_prefix) > 100_000:   # bounded: a long stream must not grow it forever
            _day_prefix.clear()
        prefix = _day_prefix[day] = iso_ms(day * _DAY_MS)[:11]
    sec, milli = divmod(ms, 1000)
    minute, sec = divmod(sec, 60)
    hour, minute = divmod(minute, 60)
    return f"{prefix}{hour:02d}:{minute:02d}:{sec:02d}.{milli:03d}Z"


def stream_array(quotes: Iterator[Quote], encode: Callable[[Quote], str],
                 chunk: int = CHUNK_QUOTES) -> Iterator[bytes]:
    """The JSON array of `quotes`, as byte chunks of up to `chunk` quotes each.

    Closing the generator (the WSGI server does when a client goes away) closes the store
    stream, releasing its cursor.
    """
    try:
        opening = "["
        batch: list[str] = []
        for q in quotes:
            batch.append(encode(q))
            if len(batch) >= chunk:
                yield (opening + ",".join(batch)).encode()
                opening, batch = ",", []
        yield (opening + ",".join(batch) + "]").encode() if batch or opening == "[" else b"]"
    except StoreUnavailable as exc:
        # Headers are gone: all that is left is to end the connection without the final chunk.
        log.warning("store failed mid-stream; closing the response: %s", exc)
        raise
    finally:
        close = getattr(quotes, "close", None)
        if close is not None:
            close()


def parse_fields(raw: str | None) -> list[str] | None:
    if raw is None:
        return None
    names = [f.strip() for f in raw.split(",")]
    if not raw.strip() or any(not n for n in names):
        raise bad_param("fields", "expected a comma-separated list such as fields=open,close")
    unknown = [n for n in names if n not in QUOTE_FIELDS]
    if unknown:
        raise bad_param("fields", f"unknown field(s) {unknown}; known: {list(QUOTE_FIELDS)}")
    return list(dict.fromkeys(names))  # a repeated field once, in the order first given


def parse_limit(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        limit = int(raw)
    except ValueError:
        raise bad_param("limit", f"expected an integer >= 0, got {raw!r}") from None
    if limit < 0:
        raise bad_param("limit", f"expected an integer >= 0, got {limit}")
    return limit


def parse_range(req: falcon.Request) -> tuple[int | None, int | None]:
    bounds: list[int | None] = []
    for name in ("from", "to"):
        raw = req.get_param(name)
        if raw is None:
            bounds.append(None)
            continue
        try:
            bounds.append(parse_time(raw))
        except ValueError as exc:
            raise bad_param(name, str(exc)) from None
    start, end = bounds
    if start is not None and end is not None and start > end:
        raise bad_param("from", f"'from' ({iso_ms(start)}) is after 'to' ({iso_ms(end)})")
    return start, end


def check_known_params(req: falcon.Request, known: frozenset[str]) -> None:
    unknown = sorted(set(req.params) - known)
    if unknown:
        raise bad_param(unknown[0], f"unknown parameter(s) {unknown}; known: {sorted(known)}")


class TimeSeriesResource:
    """`GET /timeseries/{symbol}` (see the module docstring). Holds only the store."""

    def __init__(self, store: QuoteStore) -> None:
        self.store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response, symbol: str) -> None:
        check_known_params(req, KNOWN_PARAMS)
        start, end = parse_range(req)
        fields = parse_fields(req.get_param("fields"))
        limit = parse_limit(req.get_param("limit"))
        quotes = self.store.read_range(symbol, start, end, limit=limit)
        # Peek at the first quote: an empty result is either an unknown symbol (404) or an
        # empty range ([]); asking has_symbol only then saves a query on every normal request.
        first = next(quotes, None)
        if first is None:
            if not self.store.has_symbol(symbol):
                raise unknown_symbol(symbol)
            resp.content_type = falcon.MEDIA_JSON
            resp.text = "[]"
            return
        resp.content_type = falcon.MEDIA_JSON
        resp.stream = stream_array(_Prepended(first, quotes), quote_encoder(fields))


class _Prepended(Iterator[Quote]):
    """`first` then the rest of `rest`; `close()` closes `rest` (the store's cursor)."""

    def __init__(self, first: Quote, rest: Iterator[Quote]) -> None:
        self._first: Quote | None = first
        self._rest = rest

    def __next__(self) -> Quote:
        if self._first is not None:
            q, self._first = self._first, None
            return q
        return next(self._rest)

    def close(self) -> None:
        close = getattr(self._rest, "close", None)
        if close is not None:
            close()


def create_app(config: ServiceConfig, store: QuoteStore) -> falcon.App:
    """The time-series app on `store` (injected: tests pass their own)."""
    return make_app("timeseries", config, store,
                    [("/timeseries/{symbol}", TimeSeriesResource(store))])


def get_app() -> falcon.App:
    """Entry point for gunicorn: `gunicorn 'services.timeseries:get_app()'`."""
    return app_from_env(create_app)
