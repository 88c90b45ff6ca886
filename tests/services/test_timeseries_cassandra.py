"""The path a production user takes: the time-series service under gunicorn on the Cassandra
backend (a three-node CQL stand-in, replication factor 3, LOCAL_QUORUM), answering exactly what
the same service answers on SQLite, through node failures, and refusing to start when its
settings cannot work with the cluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.store import open_store
from tests.services.conftest import cassandra_url_for
from tests.services.cql import CqlTestServer
from tests.services.service_fixtures import SYMBOL, Service, assert_error, gunicorn_args, seed
from tests.support import REPO, Proc, assert_no_traceback, free_port, wait_until

DAYS = 2


@pytest.fixture(scope="module")
def cluster() -> Iterator[CqlTestServer]:
    with CqlTestServer(nodes=3, replica_timeout=0.2) as server:
        yield server


@pytest.fixture(scope="module")
def cassandra_url(cluster: CqlTestServer) -> str:
    url = cassandra_url_for(cluster, replication="3", request_timeout=3)
    with open_store(url) as store:
        store.create_schema()
    seed(url, days=DAYS)
    return url


@pytest.fixture(scope="module")
def services(cassandra_url: str, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[tuple[Service, Service]]:
    sqlite_url = f"sqlite://{tmp_path_factory.mktemp('ts-c') / 'quotes.db'}"
    seed(sqlite_url, days=DAYS)
    on_cassandra = Service("timeseries", cassandra_url, workers=2)
    on_sqlite = Service("timeseries", sqlite_url)
    try:
        yield on_cassandra, on_sqlite
    finally:
        on_cassandra.stop()
        on_sqlite.stop()
    assert_no_traceback([on_cassandra.proc])


@pytest.mark.parametrize("query", [
    "", "?from=2026-01-02T15:00:00Z&to=2026-01-05T15:00:00Z", "?limit=7&fields=close,volume",
    "?from=2026-01-05T20:59:00Z",
])
def test_answers_equal_the_sqlite_service(services: tuple[Service, Service], query: str) -> None:
    on_cassandra, on_sqlite = services
    got, want = on_cassandra.get(f"/timeseries/{SYMBOL}{query}"), \
        on_sqlite.get(f"/timeseries/{SYMBOL}{query}")
    assert got.status_code == want.status_code == 200, got.text
    assert got.json() == want.json() and got.json()
    assert on_cassandra.get("/timeseries/NOPE").status_code == 404


def test_a_node_down_is_tolerated_two_down_is_503_then_recovery(
        cluster: CqlTestServer, services: tuple[Service, Service]) -> None:
    on_cassandra, on_sqlite = services
    want = on_sqlite.get(f"/timeseries/{SYMBOL}?limit=50").json()
    try:
        cluster.stop_node(2)  # 2 of 3 replicas: LOCAL_QUORUM still met
        for _ in range(4):  # both workers, whichever node coordinates
            resp = on_cassandra.get(f"/timeseries/{SYMBOL}?limit=50")
            assert resp.status_code == 200 and resp.json() == want, resp.text
        cluster.stop_node(1)
        resp = on_cassandra.get(f"/timeseries/{SYMBOL}?limit=50")
        doc = assert_error(resp, 503)
        assert resp.headers["Retry-After"] == "2", doc
        assert on_cassandra.get("/health").status_code == 200  # the node itself answers
    finally:
        for node in (1, 2):
            if cluster.nodes[node].state == "down":
                cluster.start_node(node)
    wait_until(lambda: on_cassandra.get(f"/timeseries/{SYMBOL}?limit=50").json() == want,
               timeout=20, message="answers again once the nodes are back")


def test_a_datacenter_the_cluster_lacks_stops_the_service_at_start(
        cluster: CqlTestServer, cassandra_url: str, tmp_path: Path) -> None:
    port = free_port()
    proc = Proc(gunicorn_args("services.timeseries:get_app()", port),
                env={"ACCESSD_STORE": cassandra_url + "&local_dc=dc9",
                     "PYTHONPATH": str(REPO)}, cwd=REPO)
    try:
        assert proc.popen.wait(60) != 0, "gunicorn must not run with a worker that cannot work"
    finally:
        proc.stop()
    out = proc.full_output()
    assert "local_dc 'dc9' is not a datacenter of this cluster (it has dc1)" in out, out
