"""The CQL stand-in behaves like a small real cluster, as seen through the real cassandra-driver:
write timestamps, replicas and consistency, node events, v5, out-of-order answers, paging."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from cassandra import (
    ConsistencyLevel,
    InvalidRequest,
    ReadTimeout,
    Unavailable,
    WriteTimeout,
)
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
from cassandra.policies import FallthroughRetryPolicy, RoundRobinPolicy, WhiteListRoundRobinPolicy
from cassandra.protocol import ConfigurationException
from cassandra.query import BatchStatement, BatchType, SimpleStatement, tuple_factory

from tests.services.cql import CqlTestServer
from tests.support import wait_until

KV = "CREATE TABLE ks.kv (k text, c int, v double, PRIMARY KEY (k, c))"


def connect(server: CqlTestServer, *, only: int | None = None, version: int = 5,
            **profile: Any) -> tuple[Cluster, Any]:
    """A driver session on `server` (all nodes, or node `only`), no retries unless asked."""
    policy = (WhiteListRoundRobinPolicy([server.nodes[only].address]) if only is not None
              else RoundRobinPolicy())
    profile.setdefault("retry_policy", FallthroughRetryPolicy())
    cluster = Cluster([server.nodes[only or 0].address], port=server.port,
                      protocol_version=version, schema_metadata_enabled=False,
                      token_metadata_enabled=False, connect_timeout=2,
                      execution_profiles={EXEC_PROFILE_DEFAULT: ExecutionProfile(
                          load_balancing_policy=policy, row_factory=tuple_factory,
                          request_timeout=5, **profile)})
    return cluster, cluster.connect()


@pytest.fixture
def three_nodes() -> Iterator[CqlTestServer]:
    with CqlTestServer(nodes=3, replica_timeout=0.2) as server:
        yield server


def make_kv(session: Any, replication: str = "{'class': 'SimpleStrategy', "
                                              "'replication_factor': 3}") -> None:
    session.execute(f"CREATE KEYSPACE ks WITH replication = {replication}")
    session.execute(KV)


def partition_on(server: CqlTestServer, node: int) -> str:
    """A partition key whose first replica is node `node`."""
    from tests.services.cql.engine import token

    return next(k for k in (f"k{i}" for i in range(1000))
                if int.from_bytes(token((k,))[:4], "big") % len(server.nodes) == node)


# -- write timestamps ----------------------------------------------------------------------------
def test_highest_timestamp_wins_and_a_tie_goes_to_the_greater_value() -> None:
    with CqlTestServer() as server:
        cluster, session = connect(server)
        try:
            make_kv(session, "{'class': 'SimpleStrategy', 'replication_factor': 1}")
            insert = session.prepare("INSERT INTO ks.kv (k, c, v) VALUES (?, ?, ?)")
            read = session.prepare("SELECT v FROM ks.kv WHERE k = ? AND c = ?")
            clock = {"now": 0}
            cluster.timestamp_generator = lambda: clock["now"]

            def write(value: float, at: int) -> None:
                clock["now"] = at
                session.execute(insert, ("a", 1, value))

            write(5.0, at=200)
            write(9.0, at=100)  # older: loses, though it arrived later
            assert session.execute(read, ("a", 1)).one() == (5.0,)
            write(2.0, at=300)  # newer: wins
            write(1.0, at=300)  # a tie: the smaller value loses
            assert session.execute(read, ("a", 1)).one() == (2.0,)
            write(3.0, at=300)  # a tie: the greater value wins
            assert session.execute(read, ("a", 1)).one() == (3.0,)
            assert server.cell_timestamp("ks", "kv", {"k": "a", "c": 1}, "v") == 300
            stamps = [r.timestamp for r in server.user_requests("EXECUTE") if "INSERT" in r.query]
            assert stamps == [200, 100, 300, 300, 300], "each write carried the client's stamp"
        finally:
            cluster.shutdown()


def test_a_batch_shares_one_timestamp_so_duplicates_resolve_by_value() -> None:
    with CqlTestServer() as server:
        cluster, session = connect(server)
        try:
            make_kv(session, "{'class': 'SimpleStrategy', 'replication_factor': 1}")
            insert = session.prepare("INSERT INTO ks.kv (k, c, v) VALUES (?, ?, ?)")
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            batch.add(insert, ("a", 1, 7.0))
            batch.add(insert, ("a", 2, 1.0))
            batch.add(insert, ("a", 1, 4.0))  # the same key again, last in the batch
            session.execute(batch)
            (req,) = server.user_requests("BATCH")
            assert req.timestamp is not None
            for c in (1, 2):
                assert server.cell_timestamp("ks", "kv", {"k": "a", "c": c}, "v") == req.timestamp
            # not the last statement: the greater value, as Cassandra resolves a tie
            assert session.execute("SELECT v FROM ks.kv WHERE k = 'a' AND c = 1").one() == (7.0,)
        finally:
            cluster.shutdown()


# -- replicas and consistency --------------------------------------------------------------------
def test_peers_are_discovered_and_every_node_coordinates(three_nodes: CqlTestServer) -> None:
    cluster, session = connect(three_nodes)
    try:
        assert sorted(h.address for h in cluster.metadata.all_hosts()) == \
            ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
        make_kv(session)
        for i in range(6):
            session.execute("INSERT INTO ks.kv (k, c, v) VALUES (%s, %s, %s)", (f"k{i}", i, 1.0))
        assert {r.node for r in three_nodes.user_requests("QUERY")} == {0, 1, 2}
    finally:
        cluster.shutdown()


def test_unavailable_counts_the_replicas_that_are_up(three_nodes: CqlTestServer) -> None:
    cluster, session = connect(three_nodes, only=0,
                               consistency_level=ConsistencyLevel.LOCAL_QUORUM)
    try:
        make_kv(session)  # RF 3: LOCAL_QUORUM needs 2
        insert = "INSERT INTO ks.kv (k, c, v) VALUES ('a', 1, 1.0)"
        three_nodes.stop_node(2)
        session.execute(insert)  # 2 of 3 up: enough
        three_nodes.stop_node(1)
        with pytest.raises(Unavailable) as err:
            session.execute(insert)
        assert (err.value.consistency, err.value.required_replicas, err.value.alive_replicas) \
            == (ConsistencyLevel.LOCAL_QUORUM, 2, 1)
        one = SimpleStatement(insert, consistency_level=ConsistencyLevel.ONE)
        session.execute(one)
        all_ = SimpleStatement("SELECT v FROM ks.kv WHERE k = 'a'",
                               consistency_level=ConsistencyLevel.ALL)
        with pytest.raises(Unavailable) as err:
            session.execute(all_)
        assert (err.value.required_replicas, err.value.alive_replicas) == (3, 1)
    finally:
        cluster.shutdown()


def test_unresponsive_replicas_time_out_with_real_counts(three_nodes: CqlTestServer) -> None:
    cluster, session = connect(three_nodes, only=0, consistency_level=ConsistencyLevel.QUORUM)
    try:
        make_kv(session)
        session.execute("INSERT INTO ks.kv (k, c, v) VALUES ('a', 1, 1.0)")
        three_nodes.pause_node(1)
        three_nodes.pause_node(2)  # up for gossip (no Unavailable), but they never answer
        with pytest.raises(WriteTimeout) as wt:
            session.execute("INSERT INTO ks.kv (k, c, v) VALUES ('a', 2, 2.0)")
        assert (wt.value.received_responses, wt.value.required_responses,
                wt.value.write_type) == (1, 2, 0)  # WriteType.SIMPLE
        with pytest.raises(ReadTimeout) as rt:
            session.execute("SELECT v FROM ks.kv WHERE k = 'a'")
        assert (rt.value.received_responses, rt.value.required_responses) == (1, 2)
        three_nodes.resume_node(1)
        assert session.execute("SELECT v FROM ks.kv WHERE k = 'a'").all() == [(1.0,), (2.0,)]
    finally:
        cluster.shutdown()


def test_any_is_for_writes_only(three_nodes: CqlTestServer) -> None:
    cluster, session = connect(three_nodes, only=0)
    try:
        make_kv(session, "{'class': 'SimpleStrategy', 'replication_factor': 1}")
        key = partition_on(three_nodes, 2)
        three_nodes.stop_node(2)
        any_write = SimpleStatement(f"INSERT INTO ks.kv (k, c, v) VALUES ('{key}', 1, 1.0)",
                                    consistency_level=ConsistencyLevel.ANY)
        session.execute(any_write)  # every replica down: a hint on the coordinator is enough
        with pytest.raises(InvalidRequest, match="ANY ConsistencyLevel is only supported for "
                                                 "writes"):
            session.execute(SimpleStatement(f"SELECT v FROM ks.kv WHERE k = '{key}'",
                                            consistency_level=ConsistencyLevel.ANY))
    finally:
        cluster.shutdown()


def test_datacenters_are_checked_as_on_a_real_cluster() -> None:
    with CqlTestServer(nodes=["dc1", "dc1", "dc2"]) as server:
        cluster, session = connect(server, only=0,
                                   consistency_level=ConsistencyLevel.LOCAL_QUORUM)
        try:
            with pytest.raises(ConfigurationException, match=r"Unrecognized strategy option "
                                                             r"\{dc9\}"):
                session.execute("CREATE KEYSPACE ks WITH replication = "
                                "{'class': 'NetworkTopologyStrategy', 'dc9': 1}")
            make_kv(session, "{'class': 'NetworkTopologyStrategy', 'dc2': 1}")
            # The coordinator is in dc1, where this keyspace has no replica.
            with pytest.raises(Unavailable) as err:
                session.execute("INSERT INTO ks.kv (k, c, v) VALUES ('a', 1, 1.0)")
            assert (err.value.required_replicas, err.value.alive_replicas) == (1, 0)
            session.execute(SimpleStatement("INSERT INTO ks.kv (k, c, v) VALUES ('a', 1, 1.0)",
                                            consistency_level=ConsistencyLevel.ONE))
        finally:
            cluster.shutdown()


# -- the driver sees nodes come and go -----------------------------------------------------------
def test_node_events_reach_the_driver_which_reconnects(three_nodes: CqlTestServer) -> None:
    cluster = Cluster(["127.0.0.1"], port=three_nodes.port, protocol_version=5,
                      schema_metadata_enabled=False, token_metadata_enabled=False,
                      connect_timeout=2, status_event_refresh_window=0,
                      execution_profiles={EXEC_PROFILE_DEFAULT: ExecutionProfile(
                          load_balancing_policy=RoundRobinPolicy())})
    try:
        session = cluster.connect()  # kept: the cluster holds its sessions weakly
        host = next(h for h in cluster.metadata.all_hosts() if h.address == "127.0.0.3")

        def pool_open() -> bool:
            state = session.get_pool_state().get(host)
            return bool(host.is_up and state and state["open_count"] > 0)

        wait_until(pool_open, timeout=10, message="a pool to node 3")
        three_nodes.stop_node(2)
        wait_until(lambda: ("STATUS_CHANGE", "DOWN", "127.0.0.3")
                   in [e[1:] for e in three_nodes.events], timeout=5, message="a DOWN event")
        wait_until(lambda: host.is_up is False, timeout=10, message="the driver marks it down")
        three_nodes.start_node(2)
        assert ("STATUS_CHANGE", "UP", "127.0.0.3") in [e[1:] for e in three_nodes.events]
        wait_until(pool_open, timeout=15, message="the driver reconnects to node 3")
        session.execute("SELECT release_version FROM system.local")
    finally:
        cluster.shutdown()


# -- protocol ------------------------------------------------------------------------------------
def test_answers_on_one_connection_come_back_out_of_order() -> None:
    with CqlTestServer() as server:
        cluster, session = connect(server)
        try:
            make_kv(session, "{'class': 'SimpleStrategy', 'replication_factor': 1}")
            session.execute("INSERT INTO ks.kv (k, c, v) VALUES ('slow', 1, 1.0)")
            session.execute("INSERT INTO ks.kv (k, c, v) VALUES ('fast', 1, 2.0)")
            server.fail_next(1, "delay", match="'slow'", seconds=0.5)
            server.clear_requests()
            slow = session.execute_async("SELECT v FROM ks.kv WHERE k = 'slow'")
            fast = session.execute_async("SELECT v FROM ks.kv WHERE k = 'fast'")
            assert fast.result().one() == (2.0,) and slow.result().one() == (1.0,)
            reqs = {r.query.split("'")[1]: r for r in server.user_requests("QUERY")}
            assert reqs["slow"].connection == reqs["fast"].connection
            assert reqs["slow"].stream != reqs["fast"].stream
            assert reqs["fast"].answered < reqs["slow"].answered, "asked second, answered first"
        finally:
            cluster.shutdown()


@pytest.mark.parametrize("version", [4, 5])
def test_paging_state_is_a_key_position(version: int) -> None:
    with CqlTestServer() as server:
        cluster, session = connect(server, version=version)
        try:
            make_kv(session, "{'class': 'SimpleStrategy', 'replication_factor': 1}")
            insert = session.prepare("INSERT INTO ks.kv (k, c, v) VALUES ('a', ?, ?)")
            for c in range(10, 20):
                session.execute(insert, (c, float(c)))
            query = SimpleStatement("SELECT c FROM ks.kv WHERE k = 'a' LIMIT 7", fetch_size=3)
            first = session.execute(query)
            assert first.current_rows == [(10,), (11,), (12,)]
            session.execute(insert, (0, 0.0))  # lands before the position: shifts nothing
            second = session.execute(query, paging_state=first.paging_state)
            assert second.current_rows == [(13,), (14,), (15,)]
            third = session.execute(query, paging_state=second.paging_state)
            assert third.current_rows == [(16,)] and third.paging_state is None  # LIMIT 7
            other = SimpleStatement("SELECT c FROM ks.kv WHERE k = 'b'", fetch_size=3)
            with pytest.raises(Exception, match="paging state"):
                session.execute(other, paging_state=first.paging_state)
        finally:
            cluster.shutdown()


def test_one_batch_fails_while_the_others_succeed(three_nodes: CqlTestServer) -> None:
    cluster, session = connect(three_nodes, only=0, consistency_level=ConsistencyLevel.ONE)
    try:
        make_kv(session, "{'class': 'SimpleStrategy', 'replication_factor': 1}")
        insert = session.prepare("INSERT INTO ks.kv (k, c, v) VALUES (?, ?, ?)")
        keys = [partition_on(three_nodes, n) for n in range(3)]
        three_nodes.stop_node(1)
        outcomes: dict[str, str] = {}
        lock = threading.Lock()

        def run(key: str) -> None:
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            batch.add(insert, (key, 1, 1.0))
            try:
                session.execute(batch)
                result = "ok"
            except (Unavailable, NoHostAvailable) as exc:
                result = type(exc).__name__
            with lock:
                outcomes[key] = result

        threads = [threading.Thread(target=run, args=(k,)) for k in keys]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert outcomes == {keys[0]: "ok", keys[1]: "Unavailable", keys[2]: "ok"}
        stored = {row["k"] for row in three_nodes.engine.rows("ks", "kv")}
        assert stored == {keys[0], keys[2]}
    finally:
        cluster.shutdown()


def test_a_batch_over_the_size_threshold_is_refused_the_stores_are_not() -> None:
    from services.cassandra_store import ROWS_PER_BATCH
    from services.store import open_store
    from tests.services.conftest import cassandra_url_for
    from tests.services.test_store_cassandra import T0, q

    with CqlTestServer() as server:
        cluster, session = connect(server)
        try:
            make_kv(session, "{'class': 'SimpleStrategy', 'replication_factor': 1}")
            insert = session.prepare("INSERT INTO ks.kv (k, c, v) VALUES (?, ?, ?)")
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            for c in range(2_000):  # 2,000 x (20 + 4 + 8 bytes): 62.5 KiB of values
                batch.add(insert, ("a" * 20, c, 1.0))
            with pytest.raises(InvalidRequest, match="Batch too large"):
                session.execute(batch)
        finally:
            cluster.shutdown()
        server.clear_requests()
        store = open_store(cassandra_url_for(server))
        try:
            store.create_schema()
            assert store.write(q("A", T0 + i) for i in range(3 * ROWS_PER_BATCH)) == 150
            assert not [r for r in server.requests if r.error and "Batch too large" in r.error]
        finally:
            store.close()


def test_injected_faults_carry_the_counts_of_the_request(three_nodes: CqlTestServer) -> None:
    cluster, session = connect(three_nodes, only=0,
                               consistency_level=ConsistencyLevel.LOCAL_QUORUM)
    try:
        make_kv(session)  # RF 3: LOCAL_QUORUM blocks for 2
        select = "SELECT v FROM ks.kv WHERE k = 'a'"
        three_nodes.fail_next(1, "unavailable", match=select)
        with pytest.raises(Unavailable) as un:
            session.execute(select)
        assert (un.value.required_replicas, un.value.alive_replicas) == (2, 1)
        three_nodes.fail_next(1, "read_timeout", match=select)
        with pytest.raises(ReadTimeout) as rt:
            session.execute(select)
        assert (rt.value.received_responses, rt.value.required_responses) == (1, 2)
        all_ = SimpleStatement("INSERT INTO ks.kv (k, c, v) VALUES ('a', 1, 1.0)",
                               consistency_level=ConsistencyLevel.ALL)
        three_nodes.fail_next(1, "write_timeout", match="INSERT")
        with pytest.raises(WriteTimeout) as wt:
            session.execute(all_)
        assert (wt.value.received_responses, wt.value.required_responses) == (2, 3)
    finally:
        cluster.shutdown()
