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
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence

import falcon
import orjson

from services.common import (
    ServiceConfig,
    app_from_env,
    bad_param,
    make_app,
    parse_time,
    unknown_symbol,
)
from services.openapi import FIELDS_PARAM, QUOTE, TIME_PARAM, op, query
from services.store import QUOTE_FIELDS, QuoteStore, StoreUnavailable, iso_ms

log = logging.getLogger("accessd.services.timeseries")

CHUNK_QUOTES = 256          # quotes per yielded chunk: few syscalls, small buffers
KNOWN_PARAMS = frozenset({"from", "to", "fields", "limit"})
CACHE_BYTES = 8 << 20       # encoded answers kept per worker process, in all
CACHE_ENTRY_BYTES = 1 << 20  # the biggest answer kept (~7,000 points; a day of 1-min bars: 54 KB)
# Answers from the day buckets up to this size are read whole and sent with a Content-Length
# (one write); bigger ones stream, chunked. A one-day range of one-minute bars is ~60 KB.
WHOLE_BODY_BYTES = 96 << 10


# Position of each of QUOTE_FIELDS in the store's row tuples `(ts, open, high, low, close, volume)`.
_COLUMN = {name: i for i, name in enumerate(QUOTE_FIELDS, start=1)}


def page_encoder(symbol: str, fields: Sequence[str] | None) -> Callable[[Sequence[tuple]], bytes]:
    """A function giving the compact JSON array (bytes) of `Quote.to_json(fields)` for a page of
    store rows `(ts, open, high, low, close, volume)` of `symbol`.

    This is the inner loop of every range query: one small dict per row, serialised by orjson
    (C; shortest round-trip floats, the same numbers as `repr`). The symbol is pre-encoded by
    `json.dumps` (as `to_json` would be by the standard library: ASCII with escapes, and a lone
    surrogate cannot fail). The store guarantees finite floats and int volumes.
    `tests/services/test_timeseries.py` checks it against `to_json`.
    """
    sym = orjson.Fragment(json.dumps(symbol).encode())
    names = QUOTE_FIELDS if fields is None else tuple(fields)
    dumps = orjson.dumps
    iso = fast_iso_ms
    if names == QUOTE_FIELDS:
        def encode(rows: Sequence[tuple]) -> bytes:
            return dumps([{"symbol": sym, "ts": iso(r[0]), "epochMs": r[0], "open": r[1],
                           "high": r[2], "low": r[3], "close": r[4], "volume": r[5]}
                          for r in rows])
        return encode
    columns = [(name, _COLUMN[name]) for name in names]

    def encode_fields(rows: Sequence[tuple]) -> bytes:
        docs = []
        for r in rows:
            doc = {"symbol": sym, "ts": iso(r[0]), "epochMs": r[0]}
            for name, i in columns:
                doc[name] = r[i]
            docs.append(doc)
        return dumps(docs)
    return encode_fields


_DAY_MS = 86_400_000
_day_prefix: dict[int, str] = {}
_time_of_day: dict[int, str] = {}


def fast_iso_ms(ts: int) -> str:
    """`iso_ms(ts)` without the datetime round trip per quote: the date part is cached per day
    (a series spans few days per request) and the time-of-day part per millisecond of the day
    (bars fall on few of them: 1,440 for one-minute bars). Both caches are bounded."""
    day, ms = divmod(ts, _DAY_MS)
    prefix = _day_prefix.get(day)
    if prefix is None:
        if len(_day_prefix) > 100_000:   # bounded: a long stream must not grow it forever
            _day_prefix.clear()
        prefix = _day_prefix[day] = iso_ms(day * _DAY_MS)[:11]
    tod = _time_of_day.get(ms)
    if tod is None:
        if len(_time_of_day) > 100_000:  # irregular timestamps: bounded too
            _time_of_day.clear()
        sec, milli = divmod(ms, 1000)
        minute, sec = divmod(sec, 60)
        hour, minute = divmod(minute, 60)
        tod = _time_of_day[ms] = f"{hour:02d}:{minute:02d}:{sec:02d}.{milli:03d}Z"
    return prefix + tod


def stream_array(pages: Iterator[Sequence[tuple]], encode: Callable[[Sequence[tuple]], bytes],
                 chunk: int = CHUNK_QUOTES) -> Iterator[bytes]:
    """The JSON array of the rows of `pages`, as byte chunks of up to `chunk` quotes each (the
    closing bracket travels with the last quotes; `[]` if there are none).

    One encoded chunk is held back until the next exists, so the last one can carry the `]`:
    a store failure mid-stream therefore never leaves a complete array behind. Closing the
    generator (the WSGI server does when a client goes away) closes the store stream, releasing
    its cursor.
    """
    try:
        held = b""            # the previous chunk, without its separator or brackets
        opening = b"["
        for page in pages:
            for i in range(0, len(page), chunk):
                body = encode(page[i:i + chunk] if len(page) > chunk else page)
                if held:
                    yield held
                    opening = b","
                held = opening + body[1:-1]
        yield (held or b"[") + b"]"
    except StoreUnavailable as exc:
        # Headers are gone: all that is left is to end the connection without the final chunk.
        log.warning("store failed mid-stream; closing the response: %s", exc)
        raise
    finally:
        close = getattr(pages, "close", None)
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


class AnswerCache:
    """The encoded chunks of recent small answers, by request, each with the store's
    `data_version()` read before its data: an entry is served only while the store still gives
    the same version, so a write anywhere (any process, any thread) makes it a miss at once.

    Bounded: answers over `max_entry` bytes are not kept (they stream as before), and the least
    recently used entries go beyond `max_bytes` in all. Thread-safe (gthread workers).
    """

    def __init__(self, max_bytes: int = CACHE_BYTES, max_entry: int = CACHE_ENTRY_BYTES) -> None:
        self.max_bytes = max_bytes
        self.max_entry = max_entry
        self.size = 0
        self._entries: OrderedDict[Hashable, tuple[object, list[bytes], int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, version: object) -> list[bytes] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] != version:
                self._drop(key)
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: Hashable, version: object, chunks: list[bytes]) -> None:
        size = sum(map(len, chunks))
        if size > self.max_entry:
            return
        with self._lock:
            if key in self._entries:
                self._drop(key)
            self._entries[key] = (version, chunks, size)
            self.size += size
            while self.size > self.max_bytes:
                self._drop(next(iter(self._entries)))

    def _drop(self, key: Hashable) -> None:
        self.size -= self._entries.pop(key)[2]

    def recording(self, key: Hashable, version: object,
                  chunks: Iterator[bytes]) -> Iterator[bytes]:
        """`chunks` passed through; kept under (key, version) once complete, if small enough.
        Only a stream that ends normally is kept: a failed or abandoned one never is."""
        kept: list[bytes] | None = []
        size = 0
        try:
            for chunk in chunks:
                if kept is not None:
                    size += len(chunk)
                    if size > self.max_entry:
                        kept = None      # too big: stop holding its chunks
                    else:
                        kept.append(chunk)
                yield chunk
            if kept is not None:
                self.put(key, version, kept)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()


class TimeSeriesResource:
    """`GET /timeseries/{symbol}` (see the module docstring). Holds the store and the cache of
    small answers (`AnswerCache`; only used when the store has a `data_version`)."""

    OPENAPI = {"get": op(
        "A symbol's quotes over a time range, ascending, streamed as one JSON array "
        "([] for a known symbol with nothing in the range)",
        {"type": "array", "items": QUOTE}, errors=(400, 404, 503), params=[
            query("from", TIME_PARAM, "first instant, inclusive"),
            query("to", TIME_PARAM, "last instant, inclusive (not before from)"),
            query("fields", FIELDS_PARAM, "only these price/volume fields"),
            query("limit", {"type": "integer", "minimum": 0},
                  "at most this many quotes, the earliest first"),
        ])}

    def __init__(self, store: QuoteStore, cache: AnswerCache | None = None) -> None:
        self.store = store
        self.cache = AnswerCache() if cache is None else cache

    def on_get(self, req: falcon.Request, resp: falcon.Response, symbol: str) -> None:
        check_known_params(req, KNOWN_PARAMS)
        start, end = parse_range(req)
        fields = parse_fields(req.get_param("fields"))
        limit = parse_limit(req.get_param("limit"))
        # Read before the data (the version an entry is kept under must not be newer than it).
        version = self.store.data_version()
        key = (symbol, start, end, None if fields is None else tuple(fields), limit)
        if version is not None:
            cached = self.cache.get(key, version)
            if cached is not None:
                resp.content_type = falcon.MEDIA_JSON
                resp.data = cached[0] if len(cached) == 1 else b"".join(cached)
                return
        if fields is None:
            # All fields: slices of the store's pre-encoded day buckets, when it has them.
            frags = self.store.read_range_encoded(symbol, start, end, limit=limit)
            if frags is not None:
                first_frag = next(frags, None)
                if first_frag is None:
                    _close(frags)
                    self._empty(resp, symbol)
                    return
                resp.content_type = falcon.MEDIA_JSON
                whole, rest = read_whole(first_frag, frags, WHOLE_BODY_BYTES)
                if rest is None:
                    # Small (a few days): one body with its length, one write, no chunking.
                    body = b"[" + b",".join(whole) + b"]"
                    if version is not None:
                        self.cache.put(key, version, [body])
                    resp.data = body
                    return
                stream = stream_fragments(whole[0], _Chained(whole[1:], rest))
                resp.stream = stream if version is None else \
                    self.cache.recording(key, version, stream)
                return
        pages = self.store.read_range_rows(symbol, start, end, limit=limit)
        # Peek at the first page: an empty result is either an unknown symbol (404) or an
        # empty range ([]); asking has_symbol only then saves a query on every normal request.
        first = next(pages, None)
        if first is None:
            self._empty(resp, symbol)
            return
        resp.content_type = falcon.MEDIA_JSON
        stream = stream_array(_Prepended(first, pages), page_encoder(symbol, fields))
        resp.stream = stream if version is None else self.cache.recording(key, version, stream)


    def _empty(self, resp: falcon.Response, symbol: str) -> None:
        """Nothing in the range: 404 for an unknown symbol, else `[]`."""
        if not self.store.has_symbol(symbol):
            raise unknown_symbol(symbol)
        resp.content_type = falcon.MEDIA_JSON
        resp.text = "[]"


def read_whole(first: bytes, rest: Iterator[bytes], budget: int
               ) -> tuple[list[bytes], Iterator[bytes] | None]:
    """`first` and the fragments of `rest` while they fit in `budget` bytes: `(all of them,
    None)` if `rest` ended (then it is closed), else `(those read, rest)` to stream the others
    after them. A store failure meanwhile propagates before any byte is sent (a 503)."""
    frags = [first]
    size = len(first)
    try:
        while size <= budget:
            frag = next(rest, None)
            if frag is None:
                _close(rest)
                return frags, None
            frags.append(frag)
            size += len(frag)
    except BaseException:
        _close(rest)
        raise
    return frags, rest


def stream_fragments(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    """The JSON array of `first` and the fragments of `rest` (comma-joined quote objects), one
    chunk per fragment. Like `stream_array`, the last fragment is held back to carry the `]`, so a
    store failure mid-stream never leaves a complete array, and closing it closes `rest`."""
    try:
        held = b"[" + first
        for frag in rest:
            yield held
            held = b"," + frag
        yield held + b"]"
    except StoreUnavailable as exc:
        log.warning("store failed mid-stream; closing the response: %s", exc)
        raise
    finally:
        _close(rest)


def _close(it: object) -> None:
    close = getattr(it, "close", None)
    if close is not None:
        close()


class _Prepended(Iterator[list[tuple]]):
    """`first` then the rest of `rest`; `close()` closes `rest` (the store's cursor)."""

    def __init__(self, first: list[tuple], rest: Iterator[list[tuple]]) -> None:
        self._first: list[tuple] | None = first
        self._rest = rest

    def __next__(self) -> list[tuple]:
        if self._first is not None:
            page, self._first = self._first, None
            return page
        return next(self._rest)

    def close(self) -> None:
        close = getattr(self._rest, "close", None)
        if close is not None:
            close()


class _Chained(Iterator[bytes]):
    """The items of `head`, then those of `rest`; `close()` closes `rest`."""

    def __init__(self, head: list[bytes], rest: Iterator[bytes]) -> None:
        self._head = iter(head)
        self._rest = rest

    def __next__(self) -> bytes:
        return next(self._head, None) or next(self._rest)

    def close(self) -> None:
        _close(self._rest)


def create_app(config: ServiceConfig, store: QuoteStore) -> falcon.App:
    """The time-series app on `store` (injected: tests pass their own)."""
    return make_app("timeseries", config, store,
                    [("/timeseries/{symbol}", TimeSeriesResource(store))])


def get_app() -> falcon.App:
    """Entry point for gunicorn: `gunicorn 'services.timeseries:get_app()'`."""
    return app_from_env(create_app)
