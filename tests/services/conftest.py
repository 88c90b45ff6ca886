"""Quote-store fixtures shared by the services tests.

- `sqlite_store`: a fresh `SQLiteQuoteStore` in a temp file (its URL: `sqlite_url`);
- `cql_server`: a running CQL native-protocol test server on 127.0.0.1 (`tests.services.cql`),
  with the quote-store tables; `cassandra_url` names it for `open_store`;
- `cassandra_store`: a `CassandraQuoteStore` on that server with its schema created.

Every fixture cleans up after itself (stores closed, server stopped).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.store import QuoteStore, open_store
from tests.services.cql import CqlTestServer


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite://{tmp_path / 'quotes.db'}"


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Iterator[QuoteStore]:
    store = open_store(sqlite_url)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def cql_server() -> Iterator[CqlTestServer]:
    server = CqlTestServer().start()
    try:
        yield server
    finally:
        server.stop()


def cassandra_url_for(server: CqlTestServer, keyspace: str = "quotes", **options: object) -> str:
    """A store URL for `server`; short timeouts and reconnection so faults resolve quickly."""
    opts: dict[str, object] = {"consistency": "LOCAL_QUORUM", "connect_timeout": 2,
                               "request_timeout": 2, "reconnect_max": 0.5,
                               "protocol_version": 5}
    opts.update(options)
    query = "&".join(f"{k}={v}" for k, v in opts.items() if v is not None)
    return f"cassandra://{server.host}:{server.port}/{keyspace}?{query}"


@pytest.fixture
def cassandra_url(cql_server: CqlTestServer) -> str:
    return cassandra_url_for(cql_server)


@pytest.fixture
def cassandra_store(cassandra_url: str) -> Iterator[QuoteStore]:
    store = open_store(cassandra_url)
    try:
        store.create_schema()
        yield store
    finally:
        store.close()
