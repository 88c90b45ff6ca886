"""The Cassandra store's encoded day buckets (`services.day_buckets`): schema, upkeep and reads.

    quote_days      (symbol text, day text, ts blob, offsets blob, body blob,
                     PRIMARY KEY ((symbol, day)))
    symbol_days     (symbol text, day text, PRIMARY KEY (symbol, day))
                     WITH CLUSTERING ORDER BY (day ASC)
    quote_days_meta (name text PRIMARY KEY, value text)     -- 'market_tz': the zone of `day`

One partition per (symbol, market day) holding that day's quotes already encoded (about 60 KB
for a day of 1-minute bars; ~420 KB for a day of 10-second bars), the shape of the deck's
time-series tables: a one-day range is one or two single-partition reads and a few slices.
`symbol_days` indexes the days per symbol for long ranges; ranges of a few days read the day
partitions directly.

Invariants:
- a write stores its rows (`quotes_by_bucket`), then rewrites each touched day's bucket from the
  rows as read back at the store's consistency level, then its `symbol_days` entry: a reader
  never finds a day in the index without its bucket. A write that fails part-way leaves a day's
  bucket behind its rows until the same quotes are written again, which the store's contract
  already asks of a failed write; two processes writing the same day at once may leave the
  older bucket last (last write wins): a single writer per symbol is assumed, as the pipeline's
  loader is;
- `ensure` (from `create_schema`) builds every bucket when a keyspace has none for the store's
  zone, then records the zone; until that record exists readers take the row path (None).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from itertools import islice
from typing import TYPE_CHECKING, Any

from services.day_buckets import (
    MAX_DAY_ROWS,
    DaySlicer,
    EncodedDay,
    day_key,
    day_range,
    encode_day,
)

if TYPE_CHECKING:
    from services.cassandra_store import CassandraQuoteStore

DIRECT_DAYS = 4   # ranges over at most this many days read the partitions without the index


def ddl(ks: str) -> list[str]:
    return [
        f"CREATE TABLE IF NOT EXISTS {ks}.quote_days (symbol text, day text, ts blob, "
        "offsets blob, body blob, PRIMARY KEY ((symbol, day)))",
        f"CREATE TABLE IF NOT EXISTS {ks}.symbol_days (symbol text, day text, "
        "PRIMARY KEY (symbol, day)) WITH CLUSTERING ORDER BY (day ASC)",
        f"CREATE TABLE IF NOT EXISTS {ks}.quote_days_meta (name text PRIMARY KEY, value text)",
    ]


def statements(ks: str) -> dict[str, str]:
    return {
        "day_put": f"INSERT INTO {ks}.quote_days (symbol, day, ts, offsets, body) "
                   "VALUES (?, ?, ?, ?, ?)",
        "day_get": f"SELECT ts, offsets, body FROM {ks}.quote_days WHERE symbol = ? AND day = ?",
        "day_index": f"INSERT INTO {ks}.symbol_days (symbol, day) VALUES (?, ?)",
        "days": f"SELECT day FROM {ks}.symbol_days WHERE symbol = ? AND day >= ? AND day <= ?",
        "days_meta_get": f"SELECT value FROM {ks}.quote_days_meta WHERE name = ?",
        "days_meta_put": f"INSERT INTO {ks}.quote_days_meta (name, value) VALUES (?, ?)",
    }


def _prepared(store: CassandraQuoteStore) -> dict[str, Any] | None:
    """This session's prepared day statements, or None while the tables do not exist (a
    keyspace made before them: the row path serves until `create_schema` runs)."""
    from cassandra import InvalidRequest

    from services.cassandra_store import _mapped

    session = store._get_session()
    held = store._days_prepared
    if held is not None and held[0] is session:
        return held[1]
    try:
        with _mapped():
            prepared = {name: session.prepare(text)
                        for name, text in statements(store.keyspace).items()}
    except InvalidRequest:
        return None
    store._days_prepared = (session, prepared)
    return prepared


def _exec(store: CassandraQuoteStore, prepared: dict[str, Any], name: str, params: tuple) -> Any:
    from services.cassandra_store import _mapped

    with _mapped():
        return store._get_session().execute(prepared[name], params)


def zone_of(store: CassandraQuoteStore) -> str | None:
    """The zone the keyspace's buckets were built for (None: not built, or no tables)."""
    prepared = _prepared(store)
    if prepared is None:
        return None
    row = _exec(store, prepared, "days_meta_get", ("market_tz",)).one()
    return None if row is None else row[0]


def ensure(store: CassandraQuoteStore) -> bool:
    """Build every (symbol, day) bucket unless the keyspace's are for the store's zone, then
    record the zone; True if it built them."""
    if zone_of(store) == store.days.tz:
        return False
    for symbol in store.symbols():
        keys: set[tuple[str, str]] = set()
        for q in store.read_range(symbol):
            keys.add((symbol, store.days.day_of(q.ts)))
        refresh(store, keys)
    prepared = _prepared(store)
    assert prepared is not None, "create_schema made the tables"
    _exec(store, prepared, "days_meta_put", ("market_tz", store.days.tz))
    return True


def refresh(store: CassandraQuoteStore, keys: set[tuple[str, str]]) -> None:
    """Rewrite the buckets of `keys` from the stored rows, then index them."""
    from cassandra.concurrent import execute_concurrent

    st = _prepared(store)
    if st is None:      # no tables yet: create_schema will build every bucket
        return
    session = store._get_session()
    puts, index = [], []
    for symbol, day in sorted(keys):
        lo, hi = store.days.span(day)
        rows = _day_rows(store, symbol, lo, hi - 1)
        # A day whose rows are all gone cannot happen (the store never deletes); an empty
        # bucket would still read right. A day too big to keep encoded has no body.
        blobs = (b"", b"", None) if len(rows) > MAX_DAY_ROWS else \
            encode_day(symbol, rows).to_blobs()
        puts.append((st["day_put"], (symbol, day, *blobs)))
        index.append((st["day_index"], (symbol, day)))
    store._run_concurrent(execute_concurrent, session, puts)
    store._run_concurrent(execute_concurrent, session, index)


def _day_rows(store: CassandraQuoteStore, symbol: str, lo: int, hi: int) -> list[tuple]:
    """Up to `MAX_DAY_ROWS + 1` rows `(ts, open, ...)` with `lo <= ts <= hi`, each of the (one
    or two) row buckets in one page whatever the store's `fetch_size`."""
    from services.cassandra_store import _ms, bucket_of

    rows: list[tuple] = []
    buckets = store._execute("buckets", (symbol, bucket_of(lo, store.bucket),
                                         bucket_of(hi, store.bucket)))
    for (bucket,) in buckets:
        want = MAX_DAY_ROWS + 1 - len(rows)
        if want <= 0:
            break
        for row in store._execute("range", (symbol, bucket, lo, hi, want), fetch_size=want):
            rows.append((_ms(row[1]), *row[2:]))
    return rows


def read(store: CassandraQuoteStore, symbol: str, start: int | None, end: int | None,
         limit: int | None) -> Iterator[bytes] | None:
    """The range's fragments (see `QuoteStore.read_range_encoded`); the first is fetched now.
    None while the keyspace's buckets are not built for the store's zone."""
    session = store._get_session()
    if store._days_ready is not session:
        if zone_of(store) != store.days.tz:
            return None
        store._days_ready = session
    prepared = _prepared(store)
    assert prepared is not None
    start, end, first_day, last_day = day_range(store.days, start, end)
    d1, d2 = date.fromisoformat(first_day), date.fromisoformat(last_day)
    if (d2 - d1).days < DIRECT_DAYS:
        days: Any = [(day_key(d1 + timedelta(days=i)),) for i in range((d2 - d1).days + 1)]
    else:
        days = _exec(store, prepared, "days", (symbol, first_day, last_day))
    frags = _fragments(store, prepared, symbol, days, DaySlicer(start, end, limit))
    first = next(frags, None)
    if first is None:
        return iter(())
    return _chain(first, frags)


def _fragments(store: CassandraQuoteStore, prepared: dict[str, Any], symbol: str, days: Any,
               slicer: DaySlicer) -> Iterator[bytes]:
    from services.timeseries import page_encoder

    for (day,) in days:
        if slicer.done:
            return
        row = _exec(store, prepared, "day_get", (symbol, day)).one()
        if row is None:
            continue
        if row[2] is not None:
            frag = slicer.cut(EncodedDay.from_blobs(*row))
            if frag:
                yield frag
            continue
        # Too big to keep encoded: the day's rows, a page at a time.
        lo, hi = store.days.span(day)
        quotes = store.read_range(symbol, max(lo, slicer.start), min(hi - 1, slicer.end),
                                  limit=slicer.left)
        encode = page_encoder(symbol, None)
        while not slicer.done and (page := [(q.ts, q.open, q.high, q.low, q.close, q.volume)
                                            for q in islice(quotes, 1000)]):
            frag = slicer.cut_rows(page, encode)
            if frag:
                yield frag


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    from services.cassandra_store import _mapped

    try:
        yield first
        with _mapped():
            yield from rest
    finally:
        rest.close()  # type: ignore[attr-defined]
