"""Encoded day buckets (`services.day_buckets`, `sqlite_days`, `cassandra_days`): market-day
boundaries at midnight and across DST changes, and bucketed range reads that equal the row path's
answer byte for byte, on SQLite and on Cassandra, before and after writes into a bucket."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import falcon.testing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common import ServiceConfig
from services.day_buckets import DaySlicer, EncodedDay, MarketDays, encode_day
from services.sqlite_store import SQLiteQuoteStore
from services.store import MAX_TS_MS, MIN_TS_MS, Quote, QuoteStore, open_store
from services.timeseries import create_app, page_encoder
from tests.services.conftest import cassandra_url_for
from tests.services.cql import CqlTestServer

HOUR = 3_600_000
DAY = 24 * HOUR
ZONES = ["America/New_York", "Europe/London", "America/Sao_Paulo", "Australia/Lord_Howe",
         "Asia/Kolkata", "UTC"]


def ms(text: str, tz: str = "UTC") -> int:
    """Epoch ms of local time `text` (ISO, no offset) in `tz` (fold=0)."""
    local = datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz))
    return (local - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def quote(symbol: str, ts: int, i: int = 0) -> Quote:
    price = 100.0 + (i % 97) / 8 + 1 / 3
    return Quote(symbol, ts, price, price + 0.25, price - 0.1, price + 1e-9, i)


def plain_answer(store: QuoteStore, symbol: str, start: int | None, end: int | None,
                 limit: int | None) -> bytes:
    """What `/timeseries` encodes from the rows (the reference answer)."""
    encode = page_encoder(symbol, None)
    objects = [encode(page)[1:-1] for page in store.read_range_rows(symbol, start, end,
                                                                    limit=limit)]
    return b"[" + b",".join(objects) + b"]"


def bucketed_answer(store: QuoteStore, symbol: str, start: int | None, end: int | None,
                    limit: int | None) -> bytes:
    frags = store.read_range_encoded(symbol, start, end, limit=limit)
    assert frags is not None, "the store has its buckets"
    return b"[" + b",".join(frags) + b"]"


# -- day boundaries ---------------------------------------------------------------------------
def test_new_york_days_around_midnight_and_dst() -> None:
    days = MarketDays("America/New_York")
    midnight = ms("2024-01-02T00:00:00", "America/New_York")    # 05:00Z
    assert days.day_of(midnight) == "2024-01-02"
    assert days.day_of(midnight - 1) == "2024-01-01"
    assert days.span("2024-01-02") == (midnight, midnight + DAY)
    # Spring forward (2024-03-10, 02:00 -> 03:00): a 23-hour day; fall back: a 25-hour day.
    lo, hi = days.span("2024-03-10")
    assert (lo, hi - lo) == (ms("2024-03-10T05:00:00"), 23 * HOUR)
    lo, hi = days.span("2024-11-03")
    assert (lo, hi - lo) == (ms("2024-11-03T04:00:00"), 25 * HOUR)
    # The repeated hour 01:00-02:00 on 2024-11-03 is all one day.
    assert days.day_of(ms("2024-11-03T05:30:00")) == days.day_of(ms("2024-11-03T06:30:00")) \
        == "2024-11-03"
    # A session is one day whatever the season (UTC days would hold it too; Tokyo's would not).
    assert days.day_of(ms("2024-07-01T13:30:00")) == days.day_of(ms("2024-07-01T20:00:00"))


def test_a_zone_that_skips_midnight_starts_the_day_at_the_change() -> None:
    # Sao Paulo, 2018-11-04: 00:00 -> 01:00, so the day begins at 01:00 local (03:00Z).
    days = MarketDays("America/Sao_Paulo")
    lo, hi = days.span("2018-11-04")
    assert lo == ms("2018-11-04T03:00:00") and hi - lo == 23 * HOUR
    assert days.day_of(lo - 1) == "2018-11-03" and days.day_of(lo) == "2018-11-04"
    # 2019-02-17: back from 00:00 to 23:00 the day before: 2019-02-16 has 25 hours.
    lo, hi = days.span("2019-02-16")
    assert hi - lo == 25 * HOUR and days.day_of(hi - 1) == "2019-02-16"


def test_the_ends_of_time_have_days() -> None:
    for tz in ("Asia/Tokyo", "America/New_York"):
        days = MarketDays(tz)
        assert days.span(days.day_of(MIN_TS_MS))[0] <= MIN_TS_MS
        assert days.span(days.day_of(MAX_TS_MS))[1] == MAX_TS_MS + 1
    with pytest.raises(ValueError, match="time zone"):
        MarketDays("Mars/Olympus_Mons")


@settings(max_examples=300, deadline=None)
@given(tz=st.sampled_from(ZONES), a=st.integers(-2_000_000_000_000, 4_000_000_000_000),
       b=st.integers(-2_000_000_000_000, 4_000_000_000_000))
def test_days_tile_time_in_order(tz: str, a: int, b: int) -> None:
    days = MarketDays(tz)
    lo, hi = days.span(days.day_of(a))
    assert lo <= a < hi
    assert days.day_of(lo) == days.day_of(a) == days.day_of(hi - 1) != days.day_of(hi)
    assert 22 * HOUR <= hi - lo <= 26 * HOUR
    if a <= b:
        assert days.day_of(a) <= days.day_of(b)


# -- encoding and slicing (pure) -------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(stamps=st.lists(st.integers(0, 10_000), unique=True, max_size=40).map(sorted),
       start=st.integers(-10, 10_010), span=st.integers(0, 10_000),
       limit=st.none() | st.integers(0, 50), symbol=st.sampled_from(["A", 'we"ird\u00e9']))
def test_slices_of_a_bucket_are_the_encoded_rows(stamps: list[int], start: int, span: int,
                                                 limit: int | None, symbol: str) -> None:
    rows = [(t, 1.5 + t, 2.0, 1e-7 * t, float(t) / 3, t * 7) for t in stamps]
    day = EncodedDay.from_blobs(*encode_day(symbol, rows).to_blobs())
    want = [r for r in rows if start <= r[0] <= start + span][:limit]
    got = b"".join(DaySlicer(start, start + span, limit).fragments([day]))
    assert got == (page_encoder(symbol, None)(want)[1:-1] if want else b"")
    with pytest.raises(ValueError):
        EncodedDay.from_blobs(*encode_day(symbol, rows).to_blobs()[:2], b"x")


# -- SQLite -----------------------------------------------------------------------------------
# Quotes every 20 minutes over mid-October to mid-November 2024 (New York's fall-back day
# inside), plus some exactly at New York midnights and one second before them.
START = ms("2024-10-15T00:00:00", "America/New_York")
STAMPS = sorted({START + i * 20 * 60_000 for i in range(3 * 24 * 31)}
                | {ms(f"2024-{m:02d}-{d:02d}T00:00:00", "America/New_York") + off
                   for m, d in [(10, 20), (11, 3), (11, 4)] for off in (-1000, 0, 1)})


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SQLiteQuoteStore]:
    store = SQLiteQuoteStore(tmp_path_factory.mktemp("days") / "q.db")
    store.write(quote("A", t, i) for i, t in enumerate(STAMPS))
    store.write(quote("B", t, i) for i, t in enumerate(STAMPS[::7]))
    yield store
    store.close()


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=st.none() | st.integers(START - 2 * DAY, START + 33 * DAY),
       span=st.none() | st.integers(0, 40 * DAY) | st.integers(0, 2 * HOUR),
       limit=st.none() | st.integers(0, 400), symbol=st.sampled_from(["A", "B", "C"]))
def test_sqlite_bucketed_reads_equal_the_row_path(filled: SQLiteQuoteStore, start: int | None,
                                                  span: int | None, limit: int | None,
                                                  symbol: str) -> None:
    end = None if span is None else (start if start is not None else START) + span
    assert bucketed_answer(filled, symbol, start, end, limit) == \
        plain_answer(filled, symbol, start, end, limit)


def test_sqlite_ranges_at_midnight_across_dst_and_many_days(filled: SQLiteQuoteStore) -> None:
    ny = "America/New_York"
    cases = [
        (ms("2024-11-03T00:00:00", ny), ms("2024-11-04T00:00:00", ny)),      # the 25-hour day
        (ms("2024-11-03T00:00:00", ny) - 1, ms("2024-11-03T00:00:00", ny)),  # across midnight
        (ms("2024-11-02T23:30:00", ny), ms("2024-11-03T01:30:00", ny)),      # partial days
        (ms("2024-11-03T01:10:00", ny), ms("2024-11-03T01:50:00", ny)),      # the repeated hour
        (START + 3 * DAY + 1, START + 29 * DAY - 1),                         # many days
        (START - 10 * DAY, START - DAY),                                     # before any data
    ]
    for lo, hi in cases:
        plain = plain_answer(filled, "A", lo, hi, None)
        assert bucketed_answer(filled, "A", lo, hi, None) == plain
    # 25 hours of 20-minute bars, the next midnight (inclusive end), 1 ms after the first
    # midnight and 1 s before the next.
    assert plain_answer(filled, "A", *cases[0], None).count(b"epochMs") == 25 * 3 + 1 + 2


def test_sqlite_writes_refresh_their_buckets(tmp_path: Path) -> None:
    store = SQLiteQuoteStore(tmp_path / "q.db")
    try:
        day0 = ms("2024-03-10T00:00:00", "America/New_York")
        store.write(quote("A", day0 + i * HOUR, i) for i in range(30))
        before = bucketed_answer(store, "A", None, None, None)
        # An overwrite inside a bucket, a new quote at its very end and one in a new day.
        store.write([quote("A", day0 + 5 * HOUR, 999), quote("A", day0 + 23 * HOUR - 1, 5),
                     quote("A", day0 + 40 * DAY, 6)])
        after = bucketed_answer(store, "A", None, None, None)
        assert after != before and after == plain_answer(store, "A", None, None, None)
        assert after.count(b"epochMs") == 32
        # Another connection (another process would be the same) sees them: one transaction.
        conn = sqlite3.connect(tmp_path / "q.db")
        days = [r[0] for r in conn.execute("SELECT day FROM quote_days ORDER BY day")]
        conn.close()
        assert days == ["2024-03-10", "2024-03-11", "2024-04-19"]
    finally:
        store.close()


def test_a_database_without_buckets_gets_them_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    store = SQLiteQuoteStore(path)
    store.write(quote("A", START + i * HOUR, i) for i in range(100))
    want = plain_answer(store, "A", None, None, None)
    store.close()
    conn = sqlite3.connect(path)
    conn.executescript("DROP TABLE quote_days; DROP TABLE quote_days_meta;")
    conn.close()
    # A running store whose file was replaced by such a one takes the row path...
    assert store.read_range_encoded("A") is None
    # ...and opening it builds them; another zone rebuilds them for that zone.
    with SQLiteQuoteStore(path) as reopened:
        assert bucketed_answer(reopened, "A", None, None, None) == want
    with open_store(f"sqlite://{path}?market_tz=Asia/Tokyo") as tokyo:
        assert bucketed_answer(tokyo, "A", START, START + 5 * DAY, 17) == \
            plain_answer(tokyo, "A", START, START + 5 * DAY, 17)
        assert tokyo.read_range_encoded("A") is not None
    assert store.read_range_encoded("A") is None  # the file's buckets are Tokyo's now


def test_the_service_answer_cache_sees_writes_into_a_cached_bucket(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    store = SQLiteQuoteStore(path)
    day0 = ms("2024-01-02T09:30:00", "America/New_York")
    store.write(quote("A", day0 + i * 60_000, i) for i in range(390))
    client = falcon.testing.TestClient(create_app(ServiceConfig(f"sqlite://{path}"), store))
    qs = f"from={day0}&to={day0 + 390 * 60_000}"
    try:
        first = client.simulate_get("/timeseries/A", query_string=qs)
        assert first.status_code == 200 and len(first.json) == 390
        assert client.simulate_get("/timeseries/A", query_string=qs).content == first.content
        # A writer in another store (another connection) changes a quote of that bucket.
        with SQLiteQuoteStore(path) as writer:
            writer.write([quote("A", day0 + 100 * 60_000, 12345)])
        again = client.simulate_get("/timeseries/A", query_string=qs)
        assert again.json[100]["volume"] == 12345 and again.content != first.content
        assert again.content == plain_answer(store, "A", day0, day0 + 390 * 60_000, None)
        # Restricted fields still take the row path and agree with it.
        closes = client.simulate_get("/timeseries/A", query_string=qs + "&fields=close").json
        assert [c["close"] for c in closes] == [x["close"] for x in again.json]
    finally:
        store.close()


# -- Cassandra (the CQL stand-in) -------------------------------------------------------------
CASS_STAMPS = [t for t in STAMPS if t < START + 8 * DAY]


@pytest.fixture(scope="module")
def cassandra_filled() -> Iterator[QuoteStore]:
    with CqlTestServer() as server:
        store = open_store(cassandra_url_for(server, fetch_size=50))
        try:
            store.create_schema()
            store.write(quote("A", t, i) for i, t in enumerate(CASS_STAMPS))
            yield store
        finally:
            store.close()


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=st.none() | st.integers(START - DAY, START + 9 * DAY),
       span=st.none() | st.integers(0, 9 * DAY) | st.integers(0, 2 * HOUR),
       limit=st.none() | st.integers(0, 300), symbol=st.sampled_from(["A", "Z"]))
def test_cassandra_bucketed_reads_equal_the_row_path(cassandra_filled: QuoteStore,
                                                     start: int | None, span: int | None,
                                                     limit: int | None, symbol: str) -> None:
    end = None if span is None else (start if start is not None else START) + span
    assert bucketed_answer(cassandra_filled, symbol, start, end, limit) == \
        plain_answer(cassandra_filled, symbol, start, end, limit)


def test_cassandra_days_schema_writes_and_backfill() -> None:
    with CqlTestServer() as server:
        url = cassandra_url_for(server)
        store = open_store(url)
        try:
            store.create_schema()
            tables = server.engine.tables
            days = tables[("quotes", "quote_days")]
            assert days.partition_key == ["symbol", "day"] and days.clustering == []
            assert {c: str(t) for c, t in days.columns.items()} == {
                "symbol": "text", "day": "text", "ts": "blob", "offsets": "blob", "body": "blob"}
            assert tables[("quotes", "symbol_days")].clustering == ["day"]
            ny = "America/New_York"
            lo = ms("2024-11-03T00:00:00", ny)
            store.write(quote("A", lo + i * HOUR, i) for i in range(30))
            store.write([quote("A", lo + 3 * HOUR, 777)])        # into a bucket already built
            assert bucketed_answer(store, "A", lo, lo + 25 * HOUR - 1, None) == \
                plain_answer(store, "A", lo, lo + 25 * HOUR - 1, None)
            assert b'"volume":777' in bucketed_answer(store, "A", lo, lo + 4 * HOUR, None)
            # One day's range: the meta check once, then the day partitions directly.
            before = len(server.user_requests("EXECUTE"))
            bucketed_answer(store, "A", lo + HOUR, lo + 2 * HOUR, None)
            reads = [r.query for r in server.user_requests("EXECUTE")[before:]]
            assert reads and all("quote_days WHERE" in r for r in reads) and len(reads) == 1
        finally:
            store.close()
        # A keyspace whose buckets were never built (written before they existed): the row
        # path serves until create_schema builds them.
        server.truncate("quotes", "quote_days_meta")  # on every replica
        server.truncate("quotes", "quote_days")
        store = open_store(url)
        try:
            assert store.read_range_encoded("A") is None
            store.create_schema()
            assert bucketed_answer(store, "A", None, None, None) == \
                plain_answer(store, "A", None, None, None)
        finally:
            store.close()


def test_days_too_big_to_keep_encoded_are_read_from_their_rows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from services import cassandra_days, sqlite_days

    monkeypatch.setattr(sqlite_days, "MAX_DAY_ROWS", 10)
    monkeypatch.setattr(cassandra_days, "MAX_DAY_ROWS", 10)
    # Alternate days of 30 quotes (too big) and of 5 (kept encoded).
    lo = ms("2024-11-01T00:00:00", "America/New_York")
    stamps = [lo + d * DAY + i * 40 * 60_000 for d in range(6) for i in range(30 if d % 2 else 5)]
    ranges = [(None, None, None), (lo, lo + 6 * DAY, 17), (lo + DAY + HOUR, lo + 4 * DAY, None),
              (lo + DAY + 5 * HOUR, lo + DAY + 9 * HOUR, None), (lo + 3 * HOUR, None, 40)]
    with SQLiteQuoteStore(tmp_path / "q.db") as store, CqlTestServer() as server:
        cass = open_store(cassandra_url_for(server))
        try:
            cass.create_schema()
            for s in (store, cass):
                s.write(quote("A", t, i) for i, t in enumerate(stamps))
                s.write([quote("A", lo + DAY + 7 * HOUR, 4242)])   # into a day kept as rows
                for start, end, limit in ranges:
                    assert bucketed_answer(s, "A", start, end, limit) == \
                        plain_answer(s, "A", start, end, limit), (s, start, end, limit)
            conn = sqlite3.connect(tmp_path / "q.db")
            bodies = [r[0] for r in conn.execute("SELECT body IS NULL FROM quote_days ORDER BY day")]
            conn.close()
            assert bodies == [0, 1, 0, 1, 0, 1]
        finally:
            cass.close()


def test_day_keys_sort_like_dates() -> None:
    days = MarketDays("UTC")
    keys = [days.day_of(ms(f"{y:04d}-01-01T00:00:00")) for y in (5, 999, 1000, 2024)]
    assert keys == sorted(keys) and keys[0] == "0005-01-01"
    assert date.fromisoformat(keys[1]) == date(999, 1, 1)


@pytest.mark.parametrize("zone", ["America/New_York", "Europe/London", "Asia/Kolkata",
                                  "America/Santiago", "Pacific/Chatham", "UTC"])
def test_day_of_with_its_recent_spans_agrees_with_the_zone(zone: str) -> None:
    """`MarketDays.day_of` answers from the spans it saw last: walking forward and back
    through DST changes (23- and 25-hour days), half-hour zones and the ends of time, every
    key is the one converting the instant gives."""
    days = MarketDays(zone)
    steps = [h * 3_600_000 + m * 60_000 for h in range(-50, 51) for m in (-1, 1, 30)]
    for around in (1_710_054_000_000, 1_730_613_600_000, 1_743_296_400_000,
                   MIN_TS_MS + 86_400_000, MAX_TS_MS - 86_400_000):
        for step in steps + steps[::-1]:
            ts = min(max(around + step, MIN_TS_MS), MAX_TS_MS)
            d = days.date_of(ts)
            assert days.day_of(ts) == f"{d.year:04d}-{d.month:02d}-{d.day:02d}", (ts, step)
