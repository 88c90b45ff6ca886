"""The SQLite store's encoded day buckets (`services.day_buckets`): table, upkeep and reads.

    quote_days (symbol TEXT, day TEXT, ts BLOB, offsets BLOB, body BLOB,
                PRIMARY KEY (symbol, day))
    quote_days_meta (name TEXT PRIMARY KEY, value TEXT)    -- 'market_tz': the zone of `day`

Invariants:
- a day's bucket is rewritten from the `quotes` rows of that day inside the transaction that
  writes them (`refresh`), so a reader's snapshot always sees buckets equal to the rows;
- the buckets are built for the whole file when the table is new or the file's market zone is
  not the store's (`ensure`, from `create_schema`, in one transaction): a database written before
  buckets existed gets them when a store first opens it;
- a day with no quotes has no bucket; a day with more than `MAX_DAY_ROWS` has one without a body
  (NULL: "too big"), whose quotes readers encode from the rows, in the same snapshot.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from services.day_buckets import MAX_DAY_ROWS, DaySlicer, EncodedDay, MarketDays, encode_day

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS quote_days (symbol TEXT NOT NULL, day TEXT NOT NULL, "
    "ts BLOB NOT NULL, offsets BLOB NOT NULL, body BLOB, PRIMARY KEY (symbol, day))",
    "CREATE TABLE IF NOT EXISTS quote_days_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
_DAY_ROWS = ("SELECT ts, open, high, low, close, volume FROM quotes "
             "WHERE symbol = ? AND ts >= ? AND ts < ? ORDER BY ts LIMIT ?")
_PUT = "INSERT OR REPLACE INTO quote_days (symbol, day, ts, offsets, body) VALUES (?, ?, ?, ?, ?)"
_TOO_BIG = ("INSERT OR REPLACE INTO quote_days (symbol, day, ts, offsets, body) "
            "VALUES (?, ?, X'', X'', NULL)")
_DROP = "DELETE FROM quote_days WHERE symbol = ? AND day = ?"
_READ = ("SELECT ts, offsets, body, day FROM quote_days WHERE symbol = ? AND day >= ? AND day <= ? "
         "ORDER BY day")
DAYS_PER_FETCH = 8   # buckets held at once while streaming (a day of 1-minute bars: ~60 KB)


def zone_of(conn: sqlite3.Connection) -> str | None:
    """The market zone the file's buckets were built for, or None if they never were."""
    try:
        row = conn.execute("SELECT value FROM quote_days_meta WHERE name = 'market_tz'").fetchone()
    except sqlite3.OperationalError:   # no such table: built before buckets existed
        return None
    return None if row is None else row[0]


def ensure(conn: sqlite3.Connection, days: MarketDays) -> bool:
    """Create the tables and (re)build every bucket unless the file's are for `days`' zone;
    True if it built them. `conn` is in autocommit mode; the build is one transaction."""
    if zone_of(conn) == days.tz:
        return False
    conn.execute("BEGIN IMMEDIATE")
    try:
        if zone_of(conn) == days.tz:    # another process did it meanwhile
            conn.execute("ROLLBACK")
            return False
        for text in SCHEMA:
            conn.execute(text)
        conn.execute("DELETE FROM quote_days")
        rebuild_all(conn, days)
        conn.execute("INSERT OR REPLACE INTO quote_days_meta (name, value) "
                     "VALUES ('market_tz', ?)", (days.tz,))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return True


def rebuild_all(conn: sqlite3.Connection, days: MarketDays) -> None:
    """A bucket for every (symbol, day) with quotes, in one ordered pass over the table."""
    cur = conn.execute("SELECT symbol, ts, open, high, low, close, volume FROM quotes "
                       "ORDER BY symbol, ts")
    key: tuple[str, str] | None = None
    rows: list[tuple] = []
    count = 0
    put = conn.cursor()
    while batch := cur.fetchmany(5000):
        for symbol, *row in batch:
            k = (symbol, days.day_of(row[0]))
            if k != key:
                if key is not None:
                    _store(put, key, rows, count)
                key, rows, count = k, [], 0
            count += 1
            if count <= MAX_DAY_ROWS:
                rows.append(tuple(row))
    if key is not None:
        _store(put, key, rows, count)


def _store(cur: sqlite3.Cursor, key: tuple[str, str], rows: list[tuple], count: int) -> None:
    if count > MAX_DAY_ROWS:
        cur.execute(_TOO_BIG, key)
    else:
        cur.execute(_PUT, (*key, *encode_day(key[0], rows).to_blobs()))


def refresh(conn: sqlite3.Connection, days: MarketDays, keys: set[tuple[str, str]]) -> None:
    """Rewrite the buckets of `keys` (symbol, day) from the rows as they are now in `conn`'s
    transaction."""
    for symbol, day in sorted(keys):
        lo, hi = days.span(day)
        rows = conn.execute(_DAY_ROWS, (symbol, lo, hi, MAX_DAY_ROWS + 1)).fetchall()
        if rows:
            _store(conn.cursor(), (symbol, day), rows, len(rows))
        else:
            conn.execute(_DROP, (symbol, day))


TOO_MANY: list[bytes] = []     # read_few's "stream it instead" (compared by identity)
_READ_FEW = ("SELECT ts, offsets, body, (SELECT value FROM quote_days_meta WHERE "
             "name = 'market_tz') FROM quote_days WHERE symbol = ? AND day >= ? AND day <= ? "
             "ORDER BY day LIMIT ?")


def read_few(conn: sqlite3.Connection, days: MarketDays, symbol: str, first_day: str,
             last_day: str, slicer: DaySlicer) -> list[bytes] | None:
    """The range's fragments when its buckets are at most `DAYS_PER_FETCH`, all kept encoded:
    one statement (one snapshot) on a shared connection, released at once. None if the file's
    buckets are not for `days`' zone; `TOO_MANY` if the range must be streamed (`read`)."""
    try:
        batch = conn.execute(_READ_FEW, (symbol, first_day, last_day,
                                         DAYS_PER_FETCH + 1)).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table: quote_days" in str(exc):   # a file from before buckets
            return None
        raise
    if not batch:
        return None if zone_of(conn) != days.tz else []
    if batch[0][3] != days.tz:
        return None
    if len(batch) > DAYS_PER_FETCH or any(b[2] is None for b in batch):
        return TOO_MANY
    return [f for f in slicer.fragments(EncodedDay.from_blobs(*b[:3]) for b in batch)]


def read(conn: sqlite3.Connection, days: MarketDays, symbol: str, first_day: str,
         last_day: str, slicer: DaySlicer) -> Iterator[bytes]:
    """The range's non-empty fragments from the buckets of `first_day..last_day` (one snapshot:
    the caller holds `conn`, in a transaction, for this stream alone)."""
    from services.timeseries import page_encoder

    cur = conn.execute(_READ, (symbol, first_day, last_day))
    while not slicer.done and (batch := cur.fetchmany(DAYS_PER_FETCH)):
        for ts, offsets, body, day in batch:
            if slicer.done:
                return
            if body is not None:
                frag = slicer.cut(EncodedDay.from_blobs(ts, offsets, body))
                if frag:
                    yield frag
                continue
            # Too big to keep encoded: this day's rows, a page at a time.
            lo, hi = days.span(day)
            rows = conn.execute(_DAY_ROWS, (symbol, max(lo, slicer.start),
                                            min(hi - 1, slicer.end) + 1, -1))
            encode = page_encoder(symbol, None)
            while not slicer.done and (page := rows.fetchmany(1000)):
                frag = slicer.cut_rows(page, encode)
                if frag:
                    yield frag
