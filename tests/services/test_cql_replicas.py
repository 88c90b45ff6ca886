"""Replicas of the CQL stand-in diverge as a real cluster's do, through the real driver: a write
misses a replica that is down, the coordinator's hint reaches it when it is back (unless it was
down past the hint window), a read at ONE from a stale replica is stale, and a QUORUM read
merges the replicas it asks by write timestamp and repairs them before answering. Then the
quote store on such a cluster: its LOCAL_QUORUM reads see every row a replica missed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cassandra import ConsistencyLevel, InvalidRequest
from cassandra.query import SimpleStatement

from services.store import QuoteStore, open_store
from tests.services.conftest import cassandra_url_for
from tests.services.cql import CqlTestServer
from tests.services.test_cql_cluster import connect, make_kv
from tests.services.test_store_cassandra import DAY, HOUR, T0, q

ONE, QUORUM = ConsistencyLevel.ONE, ConsistencyLevel.QUORUM


def read(session, key: str, cl: int) -> list[tuple]:
    return list(session.execute(SimpleStatement("SELECT c, v FROM ks.kv WHERE k = %s",
                                                consistency_level=cl), (key,)))


def write(session, key: str, c: int, v: float, cl: int = QUORUM,
          at: int | None = None) -> None:
    """An INSERT at `cl`, with client timestamp `at` (microseconds) if given."""
    clock = session.cluster.timestamp_generator
    if at is not None:
        session.cluster.timestamp_generator = lambda: at
    try:
        session.execute(SimpleStatement("INSERT INTO ks.kv (k, c, v) VALUES (%s, %s, %s)",
                                        consistency_level=cl), (key, c, v))
    finally:
        session.cluster.timestamp_generator = clock


@pytest.fixture
def three_nodes() -> Iterator[CqlTestServer]:
    with CqlTestServer(nodes=3) as server:
        yield server


@pytest.fixture
def no_hints() -> Iterator[CqlTestServer]:
    """Three nodes whose coordinators keep no hints (every node down 'past the window')."""
    with CqlTestServer(nodes=3, max_hint_window=0) as server:
        yield server


def test_a_down_replica_misses_the_write_and_gets_it_from_the_hint(three_nodes) -> None:
    cluster, session = connect(three_nodes, only=0)
    try:
        make_kv(session)
        three_nodes.stop_node(2)
        write(session, "a", 1, 1.5)  # QUORUM: nodes 0 and 1 acknowledge
        assert three_nodes.replica_rows(2, "ks", "kv") == []
        assert len(three_nodes.replica_rows(1, "ks", "kv")) == 1
        assert [h.target for h in three_nodes.replicas.hints] == [2]
        three_nodes.start_node(2)
        assert three_nodes.replica_rows(2, "ks", "kv") == [{"k": "a", "c": 1, "v": 1.5}]
        assert three_nodes.replicas.hints == [] and len(three_nodes.replicas.delivered) == 1
    finally:
        cluster.shutdown()
    # a read at ONE that node 2 coordinates is answered from node 2's own copy
    cluster, session = connect(three_nodes, only=2)
    try:
        assert read(session, "a", ONE) == [(1, 1.5)]
        assert three_nodes.replicas.repairs == []
    finally:
        cluster.shutdown()


def test_an_unresponsive_replica_gets_its_hint_when_it_answers_again(three_nodes) -> None:
    cluster, session = connect(three_nodes, only=0)
    try:
        make_kv(session)
        three_nodes.pause_node(1)
        write(session, "a", 1, 2.5)  # QUORUM met by nodes 0 and 2; node 1 never answers
        assert three_nodes.replica_rows(1, "ks", "kv") == []
        three_nodes.resume_node(1)
        assert three_nodes.replica_rows(1, "ks", "kv") == [{"k": "a", "c": 1, "v": 2.5}]
    finally:
        cluster.shutdown()


def test_without_a_hint_one_reads_stale_and_quorum_repairs(no_hints) -> None:
    cluster, session = connect(no_hints, only=0)
    try:
        make_kv(session)
        no_hints.stop_node(2)
        write(session, "a", 1, 1.5)
        no_hints.start_node(2)
        assert no_hints.replicas.hints == [] and no_hints.replica_rows(2, "ks", "kv") == []
    finally:
        cluster.shutdown()
    cluster, session = connect(no_hints, only=2)
    try:
        assert read(session, "a", ONE) == []  # only node 2 asked: it never got the write
        assert no_hints.replicas.repairs == []  # one replica: nothing compared
        assert read(session, "a", QUORUM) == [(1, 1.5)]  # nodes 2 and 0, merged
        assert {r.node for r in no_hints.replicas.repairs} == {2}
        assert no_hints.replica_rows(2, "ks", "kv") == [{"k": "a", "c": 1, "v": 1.5}]
        assert read(session, "a", ONE) == [(1, 1.5)]  # repaired before the answer
    finally:
        cluster.shutdown()


def test_quorum_read_merges_replicas_by_timestamp_not_by_who_answered(no_hints) -> None:
    cluster, session = connect(no_hints, only=2)
    try:
        make_kv(session)
        no_hints.stop_node(0)
        write(session, "a", 1, 9.0, at=200)  # on nodes 1 and 2
        no_hints.start_node(0)
        no_hints.stop_node(1)
        write(session, "a", 1, 5.0, at=100)  # older, on nodes 0 and 2 (2 keeps 9.0)
        assert no_hints.replica_rows(0, "ks", "kv") == [{"k": "a", "c": 1, "v": 5.0}]
        assert no_hints.replica_rows(2, "ks", "kv") == [{"k": "a", "c": 1, "v": 9.0}]
    finally:
        cluster.shutdown()
    cluster, session = connect(no_hints, only=0)
    try:
        assert read(session, "a", ONE) == [(1, 5.0)]  # node 0 alone: its older value
        assert read(session, "a", QUORUM) == [(1, 9.0)]  # nodes 0 and 2: the newer wins
        assert no_hints.replica_rows(0, "ks", "kv") == [{"k": "a", "c": 1, "v": 9.0}]
        assert no_hints.cell_timestamp("ks", "kv", {"k": "a", "c": 1}, "v") == 200
    finally:
        cluster.shutdown()


def test_lightweight_transactions_are_refused_not_faked(three_nodes) -> None:
    cluster, session = connect(three_nodes)
    try:
        make_kv(session)
        with pytest.raises(InvalidRequest, match="lightweight transactions"):
            session.execute("INSERT INTO ks.kv (k, c, v) VALUES ('a', 1, 1.0) IF NOT EXISTS")
    finally:
        cluster.shutdown()


# -- the quote store on diverged replicas ---------------------------------------------------------
def quorum_store(server: CqlTestServer) -> QuoteStore:
    store = open_store(cassandra_url_for(server, replication="3", request_timeout=3,
                                         consistency="LOCAL_QUORUM"))
    store.create_schema()
    return store


def test_store_quorum_reads_see_the_rows_a_replica_missed(no_hints, sqlite_store) -> None:
    store = quorum_store(no_hints)
    try:
        quotes = [q("JPM", T0 + d * DAY + h * HOUR, 100.0 + h) for d in range(3) for h in range(4)]
        no_hints.stop_node(2)
        store.write(quotes)  # LOCAL_QUORUM: nodes 0 and 1 hold every row, node 2 none
        no_hints.start_node(2)
        assert no_hints.replica_rows(2, "quotes", "quotes_by_bucket") == []
        no_hints.stop_node(0)  # now every read asks node 1 and the stale node 2
        sqlite_store.write(quotes)
        assert list(store.read_range("JPM")) == list(sqlite_store.read_range("JPM"))
        assert store.last("JPM") == sqlite_store.last("JPM")
        assert store.symbols() == ["JPM"]
        # the reads repaired node 2 on the way
        assert len(no_hints.replica_rows(2, "quotes", "quotes_by_bucket")) == len(quotes)
    finally:
        store.close()
