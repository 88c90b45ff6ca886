"""The Cassandra quote store on a three-node stand-in cluster: partial write failures, settings
the cluster can never satisfy, and `read_range_rows` (`_RowPages`) on Cassandra."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.cassandra_store import bucket_of
from services.store import QuoteStore, StoreMisconfigured, StoreUnavailable, open_store
from tests.services.conftest import cassandra_url_for
from tests.services.cql import CqlTestServer
from tests.services.cql.engine import token
from tests.services.test_store_cassandra import DAY, HOUR, T0, q, range_requests
from tests.support import wait_until


def node_of(server: CqlTestServer, *key: str) -> int:
    """The node holding the partition `key` first (RF 1: the only replica)."""
    return int.from_bytes(token(tuple(key))[:4], "big") % len(server.nodes)


@pytest.fixture
def cluster3() -> Iterator[CqlTestServer]:
    with CqlTestServer(nodes=3, replica_timeout=0.2) as server:
        yield server


def rf1_store(server: CqlTestServer, **options: object) -> QuoteStore:
    options.setdefault("consistency", "ONE")
    store = open_store(cassandra_url_for(server, replication="1", request_timeout=3, **options))
    store.create_schema()
    return store


# -- partial failures ----------------------------------------------------------------------------
def test_partial_failure_of_a_multi_batch_write_is_reported_and_retryable(
        cluster3: CqlTestServer, sqlite_store: QuoteStore) -> None:
    store = rf1_store(cluster3)
    try:
        # A symbol whose bucket index lives on a node that stays up, with 9 day partitions, some
        # of them on node 2, which goes down.
        symbol = next(s for s in (f"S{i}" for i in range(100)) if node_of(cluster3, s) != 1)
        days = [bucket_of(T0 + d * DAY, "day") for d in range(9)]
        lost = [d for d in days if node_of(cluster3, symbol, d) == 1]
        assert 0 < len(lost) < len(days)
        quotes = [q(symbol, T0 + d * DAY + h * HOUR, 100.0 + h) for d in range(9) for h in range(3)]
        cluster3.stop_node(1)
        with pytest.raises(StoreUnavailable, match=rf"write incomplete: {len(lost)} of 9 "
                                                   r"statements failed \(first: Unavailable"):
            store.write(quotes)
        stored = {r["bucket"] for r in cluster3.engine.rows("quotes", "quotes_by_bucket")}
        assert stored == set(days) - set(lost), "the other batches were written"

        cluster3.start_node(1)
        assert wait_until(lambda: store.write(quotes) == len(quotes), timeout=20,
                          message="the same write again, once node 2 is back")
        sqlite_store.write(quotes)
        assert list(store.read_range(symbol)) == list(sqlite_store.read_range(symbol))
        assert len(cluster3.engine.rows("quotes", "quotes_by_bucket")) == len(quotes)
    finally:
        store.close()


def test_first_rows_unreachable_fail_the_call_not_the_stream(cluster3: CqlTestServer) -> None:
    store = rf1_store(cluster3)
    try:
        symbol = next(s for s in (f"S{i}" for i in range(100)) if node_of(cluster3, s) == 0
                      and node_of(cluster3, s, bucket_of(T0, "day")) == 2)
        store.write([q(symbol, T0), q(symbol, T0 + 1)])
        cluster3.stop_node(2)  # the index answers, the first bucket's only replica does not
        with pytest.raises(StoreUnavailable):
            store.read_range(symbol)
        with pytest.raises(StoreUnavailable):
            store.read_range_rows(symbol)
    finally:
        store.close()


# -- settings the cluster can never satisfy ------------------------------------------------------
def test_consistency_any_is_refused_when_the_store_is_opened() -> None:
    with pytest.raises(ValueError, match="ANY is for writes only"):
        open_store("cassandra://127.0.0.1:1/quotes?consistency=ANY")


def test_unknown_local_dc_is_a_clear_error_not_no_host_available(cluster3: CqlTestServer) -> None:
    good = rf1_store(cluster3)
    good.close()
    store = open_store(cassandra_url_for(cluster3, local_dc="dc9", consistency="LOCAL_ONE"))
    try:
        message = r"local_dc 'dc9' is not a datacenter of this cluster \(it has dc1\)"
        with pytest.raises(StoreMisconfigured, match=message):
            store.check_configuration()
        with pytest.raises(StoreMisconfigured, match=message):
            store.last("A")  # every call says so, not NoHostAvailable
    finally:
        store.close()


def test_consistency_the_replicas_can_never_meet_is_a_clear_error(cluster3: CqlTestServer) -> None:
    rf1_store(cluster3).close()
    store = open_store(cassandra_url_for(cluster3, consistency="THREE"))
    try:
        with pytest.raises(StoreMisconfigured, match="consistency THREE needs 3 replicas, but "
                                                     "keyspace quotes has a replication factor "
                                                     "of 1"):
            store.check_configuration()
    finally:
        store.close()
    fine = open_store(cassandra_url_for(cluster3, consistency="QUORUM"))
    try:
        fine.check_configuration()
    finally:
        fine.close()


def test_local_consistency_in_a_datacenter_without_replicas_is_a_clear_error() -> None:
    with CqlTestServer(nodes=["dc1", "dc1", "dc2"]) as server:
        setup = open_store(cassandra_url_for(server, replication="dc2:1", consistency="ONE"))
        setup.create_schema()
        setup.close()
        store = open_store(cassandra_url_for(server, local_dc="dc1"))  # LOCAL_QUORUM
        try:
            with pytest.raises(StoreMisconfigured, match="local datacenter 'dc1', where "
                                                         "keyspace quotes has none"):
                store.check_configuration()
        finally:
            store.close()
        remote = open_store(cassandra_url_for(server, local_dc="dc2"))
        try:
            remote.check_configuration()
        finally:
            remote.close()


def test_replication_naming_an_unknown_datacenter_is_refused(cluster3: CqlTestServer) -> None:
    from cassandra.protocol import ConfigurationException

    store = open_store(cassandra_url_for(cluster3, replication="dc9:3"))
    try:
        with pytest.raises(ConfigurationException, match=r"Unrecognized strategy option \{dc9\}"):
            store.create_schema()
    finally:
        store.close()


# -- read_range_rows (_RowPages) on Cassandra ---------------------------------------------------
# These write thousands of rows into the (Python) stand-in first: on a loaded machine one batch
# can take longer than the store's default 5 s request timeout, and nothing here is about
# timeouts, so they allow 30 s (a write once failed with OperationTimedOut at load 15).
SLOW_OK = 30
def test_read_range_rows_pages_the_rows_of_read_range(cql_server: CqlTestServer) -> None:
    from services.store import _RowPages

    store = open_store(cassandra_url_for(cql_server, fetch_size=100, request_timeout=SLOW_OK))
    try:
        store.create_schema()
        n = 2_600  # three day buckets, pages of the store cut across them
        store.write(q("R", T0 + i * 100_000, float(i), i) for i in range(n))
        pages = list(store.read_range_rows("R", T0 + 5 * 100_000, limit=2_500))
        assert [len(p) for p in pages] == [_RowPages.PAGE, _RowPages.PAGE, 500]
        rows = [r for p in pages for r in p]
        assert rows == [(x.ts, x.open, x.high, x.low, x.close, x.volume)
                        for x in store.read_range("R", T0 + 5 * 100_000, limit=2_500)]
        assert rows[0] == (T0 + 500_000, 5.0, 6.0, 4.0, 5.5, 5)
        assert list(store.read_range_rows("R", T0 + 10 * DAY)) == []
        with pytest.raises(ValueError):
            store.read_range_rows("R", T0, T0 - 1)
    finally:
        store.close()


def test_read_range_rows_stops_fetching_when_closed(cql_server: CqlTestServer) -> None:
    store = open_store(cassandra_url_for(cql_server, fetch_size=100, request_timeout=SLOW_OK))
    try:
        store.create_schema()
        store.write(q("R", T0 + i * 1000) for i in range(5_000))
        cql_server.clear_requests()
        pages = store.read_range_rows("R")
        first = next(pages)
        assert len(first) == 1000
        fetched = len(range_requests(cql_server))
        assert fetched == 10  # a page of 1000 rows: ten pages of the driver, no more
        pages.close()
        with pytest.raises(StopIteration):
            next(pages)
        assert len(range_requests(cql_server)) == fetched
    finally:
        store.close()


def test_read_range_rows_errors(cql_server: CqlTestServer) -> None:
    store = open_store(cassandra_url_for(cql_server, fetch_size=100, request_timeout=5))
    try:
        store.create_schema()
        store.write(q("R", T0 + i) for i in range(1_500))
        pages = store.read_range_rows("R")
        assert len(next(pages)) == 1000
        cql_server.fail_next(1, "read_timeout", match="quotes_by_bucket")
        with pytest.raises(StoreUnavailable):
            next(pages)  # a failure after the first page comes from next()
        cql_server.stop()
        with pytest.raises(StoreUnavailable):
            store.read_range_rows("R")  # unreachable: the call itself fails
    finally:
        store.close()


def test_the_drivers_shutdown_race_is_one_line_not_a_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    # Seen in a gunicorn worker stopped while the driver brought a node back up: its on_up
    # submitted to an executor Cluster.shutdown() had closed, and logged two tracebacks.
    import logging

    from services.cassandra_store import _quiet_shutdown_race

    _quiet_shutdown_race()
    log = logging.getLogger("cassandra.cluster")
    # Both of Python's wordings: the executor shut down, or the interpreter exiting (seen
    # when a worker stopped during a node's reconnection in make test-reverse).
    for message in ("cannot schedule new futures after shutdown",
                    "cannot schedule new futures after interpreter shutdown", "something else"):
        try:
            raise RuntimeError(message)
        except RuntimeError:
            log.exception("Unexpected failure handling node %s being marked up:",
                          "127.0.0.3:9042")
    *races, other = caplog.records[-3:]
    for race in races:
        assert race.exc_info is None and "shutting down; ignored" in race.getMessage()
        assert "127.0.0.3:9042" in race.getMessage()
    assert other.exc_info is not None, "other errors keep their traceback"
