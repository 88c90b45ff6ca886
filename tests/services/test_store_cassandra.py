"""Cassandra quote store: the real cassandra-driver against the CQL test server on 127.0.0.1."""

from __future__ import annotations

import multiprocessing
import time

import pytest
from cassandra import InvalidRequest
from cassandra.cluster import Cluster
from cassandra.protocol import SyntaxException
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.cassandra_store import CassandraQuoteStore, bucket_of
from services.store import Quote, QuoteStore, StoreUnavailable, open_store
from tests.services.conftest import cassandra_url_for
from tests.services.cql import CqlTestServer
from tests.support import wait_until

DAY = 86_400_000
HOUR = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def q(symbol: str, ts: int, price: float = 100.0, volume: int = 10) -> Quote:
    return Quote(symbol, ts, price, price + 1, price - 1, price + 0.5, volume)


def range_requests(server: CqlTestServer) -> list:
    return [r for r in server.user_requests("EXECUTE") if "FROM quotes.quotes_by_bucket" in r.query
            and "ts >= ?" in r.query]


# -- schema and protocol -------------------------------------------------------------------------
def test_create_schema_makes_bucketed_tables(cql_server: CqlTestServer,
                                             cassandra_store: QuoteStore) -> None:
    tables = cql_server.engine.tables
    quotes = tables[("quotes", "quotes_by_bucket")]
    assert quotes.partition_key == ["symbol", "bucket"] and quotes.clustering == ["ts"]
    assert not quotes.descending["ts"]
    assert {c: str(t) for c, t in quotes.columns.items()} == {
        "symbol": "text", "bucket": "text", "ts": "timestamp", "close": "double",
        "high": "double", "low": "double", "open": "double", "volume": "bigint"}
    index = tables[("quotes", "symbol_buckets")]
    assert index.partition_key == ["symbol"] and index.clustering == ["bucket"]
    assert cql_server.engine.keyspaces["quotes"]["class"].endswith("SimpleStrategy")
    ddl = [r.query for r in cql_server.user_requests("QUERY") if r.query.startswith("CREATE")]
    # keyspace, rows, their index; encoded days, their index, their zone (test_day_buckets)
    assert len(ddl) == 6 and all("IF NOT EXISTS" in d for d in ddl)
    cassandra_store.create_schema()  # idempotent
    assert cql_server.user_requests("PREPARE"), "statements are prepared"


@pytest.mark.parametrize("versions, settled", [((4, 5), 5), ((4,), 4)])
def test_driver_negotiates_the_newest_common_version(versions: tuple[int, ...],
                                                     settled: int) -> None:
    with CqlTestServer(protocol_versions=versions) as server:
        store = open_store(cassandra_url_for(server, protocol_version=None))
        try:
            store.create_schema()
            store.write([q("A", T0), q("A", T0 + 1)])
            assert [x.ts for x in store.read_range("A")] == [T0, T0 + 1]
        finally:
            store.close()
        # driver 3.30 starts at DSE_V2 (0x42), then DSE_V1 (0x41), v5, then v4
        tried = [0x42, 0x41, 5, 4]
        assert server.protocol_attempts[:tried.index(settled) + 1] == tried[:tried.index(settled) + 1]
        assert set(server.protocol_attempts[tried.index(settled) + 1:]) == {settled}
        assert {r.version for r in server.user_requests()} == {settled}


def test_server_rejects_statements_it_does_not_know(cql_server: CqlTestServer,
                                                    cassandra_store: QuoteStore) -> None:
    cluster = Cluster(["127.0.0.1"], port=cql_server.port, protocol_version=4,
                      schema_metadata_enabled=False, token_metadata_enabled=False)
    try:
        session = cluster.connect()
        with pytest.raises(SyntaxException):
            session.execute("DELETE FROM quotes.symbol_buckets WHERE symbol = 'X'")
        with pytest.raises(InvalidRequest, match="ALLOW FILTERING"):
            session.execute("SELECT * FROM quotes.quotes_by_bucket WHERE close = 1.0")
        with pytest.raises(InvalidRequest, match="partition key"):
            session.execute("SELECT * FROM quotes.quotes_by_bucket WHERE symbol = 'X'")
        with pytest.raises(InvalidRequest, match="LIMIT"):
            session.execute("SELECT * FROM quotes.symbol_buckets WHERE symbol = 'X' LIMIT 0")
        with pytest.raises(InvalidRequest, match="Undefined column"):
            session.execute("SELECT nope FROM quotes.symbol_buckets")
    finally:
        cluster.shutdown()
    errors = [r for r in cql_server.requests if r.error]
    assert len(errors) == 5


# -- data ----------------------------------------------------------------------------------------
def test_range_walks_day_buckets_in_order_with_inclusive_bounds(
        cql_server: CqlTestServer, cassandra_store: QuoteStore) -> None:
    quotes = [q("AAPL", T0 + i * 6 * HOUR, 100 + i) for i in range(16)]  # 4 days, 4 per day
    quotes += [q("MSFT", T0 + i * 6 * HOUR) for i in range(4)]
    assert cassandra_store.write(reversed(quotes)) == 20
    cql_server.clear_requests()

    got = list(cassandra_store.read_range("AAPL", T0 + DAY + 6 * HOUR, T0 + 3 * DAY))
    assert got == quotes[5:13]  # from day 2 06:00 to day 4 00:00, both ends included
    walked = [(r.values[1], r.values[2] - T0, r.values[3] - T0) for r in range_requests(cql_server)]
    assert walked == [("2024-01-02", DAY + 6 * HOUR, 3 * DAY),
                      ("2024-01-03", DAY + 6 * HOUR, 3 * DAY),
                      ("2024-01-04", DAY + 6 * HOUR, 3 * DAY)]

    assert list(cassandra_store.read_range("AAPL")) == quotes[:16]
    assert list(cassandra_store.read_range("AAPL", T0 + 6 * HOUR + 1, T0 + DAY - 1)) == quotes[2:4]
    assert list(cassandra_store.read_range("AAPL", T0 + 10 * DAY)) == []
    assert list(cassandra_store.read_range("NOPE")) == []


def test_limit_stops_the_bucket_walk(cql_server: CqlTestServer,
                                     cassandra_store: QuoteStore) -> None:
    quotes = [q("AAPL", T0 + i * 6 * HOUR) for i in range(16)]
    cassandra_store.write(quotes)
    cql_server.clear_requests()
    assert list(cassandra_store.read_range("AAPL", T0 + 2 * HOUR, limit=5)) == quotes[1:6]
    limits = [(r.values[1], r.values[4]) for r in range_requests(cql_server)]
    assert limits == [("2024-01-01", 5), ("2024-01-02", 2)]  # no third bucket queried
    assert list(cassandra_store.read_range("AAPL", limit=0)) == []


def test_month_buckets(cql_server: CqlTestServer) -> None:
    store = open_store(cassandra_url_for(cql_server, keyspace="monthly", bucket="month"))
    try:
        store.create_schema()
        quotes = [q("X", T0 + i * 10 * DAY) for i in range(7)]  # Jan..Mar
        store.write(quotes)
        assert list(store.read_range("X", T0 + 25 * DAY, T0 + 45 * DAY)) == quotes[3:5]
        buckets = sorted({row["bucket"] for row in cql_server.engine.rows("monthly",
                                                                         "symbol_buckets")})
        assert buckets == ["2024-01", "2024-02", "2024-03"]
    finally:
        store.close()


def test_bucket_names_sort_like_time() -> None:
    assert bucket_of(T0, "day") == "2024-01-01"
    assert bucket_of(T0 - 1, "day") == "2023-12-31"
    assert bucket_of(-62135596800000, "day") == "0001-01-01"
    assert bucket_of(T0 + 40 * DAY, "month") == "2024-02"
    stamps = [-62135596800000, -1, 0, T0, 253402300799999]
    assert sorted(bucket_of(t, "day") for t in stamps) == [bucket_of(t, "day") for t in stamps]


def test_streaming_reads_page_with_fetch_size(cql_server: CqlTestServer) -> None:
    store = open_store(cassandra_url_for(cql_server, fetch_size=100))
    try:
        store.create_schema()
        n = 2_500
        store.write(q("BIG", T0 + i * 1000, float(i)) for i in range(n))  # one day bucket
        cql_server.clear_requests()
        stream = store.read_range("BIG")
        first = [next(stream) for _ in range(150)]
        pages = range_requests(cql_server)
        # the stream is lazy: 150 rows need two pages of 100, not the whole bucket
        assert [r.rows_returned for r in pages] == [100, 100]
        rest = list(stream)
        assert [x.ts for x in first + rest] == [T0 + i * 1000 for i in range(n)]
        pages = range_requests(cql_server)
        assert len(pages) == 25 and all(r.page_size == 100 for r in pages)
        assert pages[0].paging_state is None and all(r.paging_state for r in pages[1:])
        assert [r.has_more_pages for r in pages] == [True] * 24 + [False]
    finally:
        store.close()


def test_writes_are_single_partition_unlogged_batches_and_idempotent(
        cql_server: CqlTestServer, cassandra_store: QuoteStore) -> None:
    quotes = [q("A", T0 + i * HOUR, float(i)) for i in range(30)]  # 2 day buckets (24 + 6)
    cql_server.clear_requests()
    assert cassandra_store.write(quotes) == 30
    batches = cql_server.user_requests("BATCH")
    index = [r for r in cql_server.user_requests("EXECUTE") if "INTO quotes.symbol_buckets" in r.query]
    assert sorted(r.values[1] for r in index) == ["2024-01-01", "2024-01-02"]
    first_batch = cql_server.requests.index(batches[0])
    assert all(cql_server.requests.index(r) < first_batch for r in index), "index first"
    for b in batches:
        assert b.batch_type == "UNLOGGED"
        assert len({tuple(values[:2]) for _, values in b.batch}) == 1, "one partition per batch"
    assert sum(len(b.batch) for b in batches) == 30
    # writing again: same rows, index entries not rewritten (known to this process)
    cql_server.clear_requests()
    assert cassandra_store.write(quotes[:3] + [q("A", T0, 99.0)]) == 4
    assert not [r for r in cql_server.user_requests("EXECUTE") if "INTO quotes.symbol_buckets" in r.query]
    assert len(cql_server.engine.rows("quotes", "quotes_by_bucket")) == 30
    assert next(cassandra_store.read_range("A", T0, T0)) == q("A", T0, 99.0)


def test_last_has_symbol_symbols(cql_server: CqlTestServer, cassandra_store: QuoteStore) -> None:
    assert cassandra_store.last("A") is None
    assert not cassandra_store.has_symbol("A")
    assert cassandra_store.symbols() == []
    cassandra_store.write([q("B", T0), q("A", T0 + 3 * DAY + 5, 7.0), q("A", T0 + DAY)])
    assert cassandra_store.last("A") == q("A", T0 + 3 * DAY + 5, 7.0)
    assert cassandra_store.has_symbol("A") and not cassandra_store.has_symbol("C")
    assert cassandra_store.symbols() == ["A", "B"]
    # an index entry whose quotes never landed (a failed write) is skipped by last()
    cql_server.put_row("quotes", "symbol_buckets", {"symbol": "A", "bucket": "2024-02-01"})
    assert cassandra_store.last("A") == q("A", T0 + 3 * DAY + 5, 7.0)


def test_consistency_level_is_in_every_frame(cql_server: CqlTestServer) -> None:
    for level in ("LOCAL_QUORUM", "ONE"):
        store = open_store(cassandra_url_for(cql_server, consistency=level))
        try:
            cql_server.clear_requests()
            store.create_schema()
            store.write([q("A", T0)])
            list(store.read_range("A"))
            store.last("A")
            store.symbols()
            reqs = [r for r in cql_server.user_requests() if r.opcode in ("EXECUTE", "BATCH")]
            assert len(reqs) >= 5 and {r.consistency for r in reqs} == {level}
        finally:
            store.close()


def test_bad_input_is_value_error(cassandra_store: QuoteStore) -> None:
    with pytest.raises(ValueError):
        cassandra_store.read_range("A", T0, T0 - 1)
    with pytest.raises(ValueError):
        cassandra_store.write([Quote("A", T0, float("nan"), 1, 1, 1, 1)])
    with pytest.raises(ValueError):
        cassandra_store.last("")


# -- auth ----------------------------------------------------------------------------------------
def test_auth_plain_text() -> None:
    with CqlTestServer(users={"svc": "s3cret"}) as server:
        good = open_store(cassandra_url_for(server, username="svc", password="s3cret"))
        try:
            good.create_schema()
            good.write([q("A", T0)])
            assert good.last("A") == q("A", T0)
        finally:
            good.close()
        auths = [r for r in server.requests if r.opcode == "AUTH_RESPONSE"]
        assert auths and all(r.values == ["svc"] and r.error is None for r in auths)
        for creds in ({"username": "svc", "password": "wrong"}, {}):
            bad = open_store(cassandra_url_for(server, **creds))
            try:
                with pytest.raises(StoreUnavailable):
                    bad.ping()
            finally:
                bad.close()
        assert any(r.error and "Provided username" in r.error for r in server.requests)


# -- faults --------------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", ["read_timeout", "unavailable", "no_answer", "overloaded"])
def test_read_faults_are_store_unavailable(cql_server: CqlTestServer, fault: str) -> None:
    store = open_store(cassandra_url_for(cql_server, request_timeout=0.5))
    try:
        store.create_schema()
        store.write([q("A", T0)])
        # Unavailable is retried once on the next host by the driver's default policy: 2 faults.
        cql_server.fail_next(2, fault, match="symbol_buckets")
        with pytest.raises(StoreUnavailable):
            store.last("A")
        assert any(r.fault == fault for r in cql_server.requests)
        cql_server.clear_faults()
        assert wait_until(lambda: store.last("A") == q("A", T0), timeout=10,
                          message="store answers again after the fault")
    finally:
        store.close()


@pytest.mark.parametrize("fault", ["write_timeout", "unavailable", "no_answer"])
def test_write_faults_are_store_unavailable(cql_server: CqlTestServer, fault: str) -> None:
    store = open_store(cassandra_url_for(cql_server, request_timeout=0.5))
    try:
        store.create_schema()
        cql_server.fail_next(2, fault, match="INSERT INTO quotes.quotes_by_bucket")
        with pytest.raises(StoreUnavailable):
            store.write([q("A", T0)])
        cql_server.clear_faults()
        assert wait_until(lambda: store.write([q("A", T0)]) == 1, timeout=10,
                          message="writes work again")
        assert store.last("A") == q("A", T0)
    finally:
        store.close()


def test_fault_mid_stream_raises_from_next(cql_server: CqlTestServer) -> None:
    store = open_store(cassandra_url_for(cql_server, fetch_size=10))
    try:
        store.create_schema()
        store.write(q("A", T0 + i) for i in range(30))
        stream = store.read_range("A")
        assert [next(stream).ts for _ in range(10)] == [T0 + i for i in range(10)]
        cql_server.fail_next(1, "read_timeout", match="quotes_by_bucket")
        with pytest.raises(StoreUnavailable):
            list(stream)
    finally:
        store.close()


def test_server_down_then_back_the_store_recovers_by_itself(cql_server: CqlTestServer,
                                                            cassandra_store: QuoteStore) -> None:
    cassandra_store.write([q("A", T0)])
    cql_server.stop()
    for call in (cassandra_store.ping, lambda: cassandra_store.last("A"),
                 lambda: cassandra_store.read_range("A"),
                 lambda: cassandra_store.write([q("A", T0 + 1)])):
        with pytest.raises(StoreUnavailable):
            call()
    cql_server.clear_requests()
    cql_server.start()  # same port; the restarted node forgot its prepared statements
    assert wait_until(lambda: cassandra_store.last("A") == q("A", T0), timeout=15,
                      message="store answers after the server came back")
    assert cassandra_store.write([q("A", T0 + 1)]) == 1
    assert [x.ts for x in cassandra_store.read_range("A")] == [T0, T0 + 1]
    assert cql_server.user_requests("PREPARE"), "statements were prepared again on the new node"


def test_store_created_while_server_down_connects_later() -> None:
    server = CqlTestServer()
    server.start()
    port = server.port
    server.stop()
    store = open_store(f"cassandra://127.0.0.1:{port}/quotes?connect_timeout=1&protocol_version=4")
    try:
        with pytest.raises(StoreUnavailable):
            store.ping()
        server.start()
        store.create_schema()
        store.write([q("A", T0)])
        assert store.has_symbol("A")
    finally:
        store.close()
        server.stop()


def test_missing_schema_is_unavailable_until_created(cql_server: CqlTestServer) -> None:
    reader = open_store(cassandra_url_for(cql_server))
    writer = open_store(cassandra_url_for(cql_server))
    try:
        with pytest.raises(StoreUnavailable, match="create_schema"):
            reader.last("A")
        writer.create_schema()
        writer.write([q("A", T0)])
        assert reader.last("A") == q("A", T0)
    finally:
        reader.close()
        writer.close()


def _child(store: QuoteStore, out: multiprocessing.Queue) -> None:
    try:
        store.write([q("CHILD", T0)])
        out.put(store.last("A"))
    except BaseException as exc:  # reported to the parent, which fails the test
        out.put(repr(exc))
    finally:
        store.close()


def test_store_used_before_fork_connects_anew_in_the_child(cql_server: CqlTestServer,
                                                           cassandra_store: QuoteStore) -> None:
    cassandra_store.write([q("A", T0)])
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    before = len(cql_server.protocol_attempts)
    child = ctx.Process(target=_child, args=(cassandra_store, out))
    child.start()
    try:
        assert out.get(timeout=30) == q("A", T0)
    finally:
        child.join(30)
    assert len(cql_server.protocol_attempts) > before, "the child opened its own connections"
    assert cassandra_store.has_symbol("CHILD") and cassandra_store.last("A") == q("A", T0)


# -- URLs ----------------------------------------------------------------------------------------
def test_url_parsing() -> None:
    store = open_store("cassandra://u:p%40ss@h1:9142,h2/ks1?consistency=one&bucket=month"
                       "&connect_timeout=3&request_timeout=4&replication=dc1:3,dc2:2"
                       "&fetch_size=50&local_dc=dc1")
    assert isinstance(store, CassandraQuoteStore)
    assert store.contact_points == [("h1", 9142), ("h2", 9042)]
    assert (store.keyspace, store.consistency, store.bucket) == ("ks1", "ONE", "month")
    assert (store.username, store.password) == ("u", "p@ss")
    assert (store.connect_timeout, store.request_timeout, store.fetch_size) == (3, 4, 50)
    assert store.replication == ("{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 2}")
    assert open_store("cassandra://h/ks?replication=3").replication == \
        "{'class': 'SimpleStrategy', 'replication_factor': 3}"
    for bad in ("cassandra://h1", "cassandra:///ks", "cassandra://h:x/ks", "cassandra://h/ks?x=1",
                "cassandra://h/ks?consistency=MOST", "cassandra://h/ks?bucket=year",
                "cassandra://h/bad-ks", "cassandra://h/ks?username=u",
                "cassandra://h/ks?replication=lots", "cassandra://h/ks?fetch_size=0"):
        with pytest.raises(ValueError):
            open_store(bad)


def test_open_store_makes_no_connection() -> None:
    t = time.monotonic()
    store = open_store("cassandra://127.0.0.1:1/ks")
    assert time.monotonic() - t < 0.5
    store.close()


# -- both backends agree -------------------------------------------------------------------------
_example = iter(range(10**9))
# Times drawn often from a few values, so one write holds same-key duplicates (one batch, one
# write timestamp on Cassandra: the store must resolve them itself, as SQLite's order does).
_times = st.one_of(st.integers(0, 5 * DAY), st.sampled_from([0, 1, HOUR, DAY, DAY + 1]))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    writes=st.lists(st.lists(st.tuples(_times, st.integers(0, 1000)), max_size=40), min_size=1,
                    max_size=3),
    start=st.none() | st.integers(-DAY, 6 * DAY),
    span=st.none() | st.integers(0, 3 * DAY),
    limit=st.none() | st.integers(0, 8),
)
def test_cassandra_and_sqlite_agree(cassandra_store: QuoteStore, sqlite_store: QuoteStore,
                                    writes: list[list[tuple[int, int]]], start: int | None,
                                    span: int | None, limit: int | None) -> None:
    symbol = f"S{next(_example)}"  # one server and store for all examples: a fresh symbol each
    for one_write in writes:  # several writes: later ones overwrite earlier ones on both
        quotes = [q(symbol, T0 + t, float(v), v) for t, v in one_write]
        assert cassandra_store.write(quotes) == sqlite_store.write(quotes) == len(quotes)
    lo = None if start is None else T0 + start
    hi = None if lo is None or span is None else lo + span
    assert list(cassandra_store.read_range(symbol, lo, hi, limit=limit)) == \
        list(sqlite_store.read_range(symbol, lo, hi, limit=limit))
    assert list(cassandra_store.read_range_rows(symbol, lo, hi, limit=limit)) == \
        list(sqlite_store.read_range_rows(symbol, lo, hi, limit=limit))
    assert cassandra_store.last(symbol) == sqlite_store.last(symbol)
    assert cassandra_store.has_symbol(symbol) == sqlite_store.has_symbol(symbol)


def test_same_key_duplicates_in_one_write_resolve_like_sqlite(
        cql_server: CqlTestServer, cassandra_store: QuoteStore, sqlite_store: QuoteStore) -> None:
    # The later duplicate has the smaller values: a batch holding both (one write timestamp)
    # would keep the greater ones, as Cassandra breaks the tie by value, not by order.
    quotes = [q("D", T0, 200.0, 20), q("D", T0 + 1, 5.0), q("D", T0, 100.0, 10)]
    assert cassandra_store.write(quotes) == sqlite_store.write(quotes) == 3
    assert cassandra_store.last("D") == sqlite_store.last("D")
    assert list(cassandra_store.read_range("D")) == list(sqlite_store.read_range("D")) == \
        [q("D", T0, 100.0, 10), q("D", T0 + 1, 5.0)]
    (batch,) = cql_server.user_requests("BATCH")
    assert len(batch.batch) == 2, "the duplicate never reached the batch"
