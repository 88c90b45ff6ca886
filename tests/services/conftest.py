"""Quote-store fixtures shared by the services tests.

- `sqlite_store`: a fresh `SQLiteQuoteStore` in a temp file (its URL: `sqlite_url`);
- `cql_server`: a running CQL native-protocol test server on 127.0.0.1 (`tests.services.cql_server`),
  with the quote-store tables; `cassandra_url` names it for `open_store`;
- `cassandra_store`: a `CassandraQuoteStore` on that server with its schema created.

Every fixture cleans up after itself (stores closed, server stopped).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.store import QuoteStore, open_store


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
