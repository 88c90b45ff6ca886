"""Request bodies and result bodies of the native protocol, v4 and v5 (the differences: v5 query
and batch flags are an [int], EXECUTE and PREPARED carry a result metadata id, PREPARE has
flags, and a keyspace may travel with a request).

The paging state encodes a key position, as Cassandra's does: the last row returned (its token,
partition and clustering key) and the rows the query's LIMIT still allows, bound to the
statement and values by a digest. A row written before that position between two pages shifts
nothing; a state replayed on another query is refused.
"""

from __future__ import annotations

import ast
import hashlib
import struct
from dataclasses import dataclass, field
from typing import Any

from tests.services.cql.parser import Statement
from tests.services.cql.wire import (
    CONSISTENCY_NAMES,
    PROTOCOL_ERROR,
    UNSET,
    CqlError,
    Reader,
    invalid,
    w_bytes,
    w_int,
    w_short,
    w_short_bytes,
    w_string,
)

KIND_VOID, KIND_ROWS, KIND_SET_KEYSPACE, KIND_PREPARED, KIND_SCHEMA_CHANGE = 1, 2, 3, 4, 5


@dataclass
class Request:
    """One request as a node received it (values decoded with the bound variables' types)."""

    opcode: str
    connection: int
    version: int
    node: int = 0
    query: str | None = None
    values: list[Any] = field(default_factory=list)
    consistency: str | None = None
    timestamp: int | None = None      # the client's write timestamp (microseconds), if sent
    page_size: int | None = None
    paging_state: bytes | None = None
    batch: list[tuple[str, list[Any]]] | None = None
    batch_type: str | None = None
    fault: str | None = None
    error: str | None = None
    rows_returned: int | None = None
    has_more_pages: bool | None = None
    stream: int | None = None
    answered: int | None = None       # the order in which the server answered (1, 2, ...)


@dataclass
class QueryParams:
    values: list[Any]
    page_size: int | None
    paging_state: bytes | None
    skip_metadata: bool
    timestamp: int | None
    keyspace: str | None


def read_query_params(r: Reader, version: int, req: Request,
                      st: Statement | None) -> QueryParams:
    """<consistency><flags>[values][page size][paging state][serial][timestamp][keyspace]..."""
    req.consistency = CONSISTENCY_NAMES.get(r.short(), "?")
    flags = r.int() if version >= 5 else r.byte()
    raw: list[Any] = []
    if flags & 0x01:
        for _ in range(r.short()):
            if flags & 0x40:
                r.string()
            raw.append(r.value())
    page_size = r.int() if flags & 0x04 else None
    paging_state = r.bytes() if flags & 0x08 else None
    if flags & 0x10:
        r.short()
    timestamp = r.long() if flags & 0x20 else None
    keyspace = r.string() if version >= 5 and flags & 0x80 else None
    if version >= 5 and flags & 0x100:
        r.int()  # now_in_seconds
    req.page_size, req.paging_state, req.timestamp = page_size, paging_state, timestamp
    values = decode_values(st, raw) if st is not None else raw
    req.values = values
    return QueryParams(values, page_size, paging_state, bool(flags & 0x02), timestamp, keyspace)


def read_batch_tail(r: Reader, version: int, req: Request) -> tuple[int | None, str | None]:
    """<consistency><flags>[serial][timestamp][keyspace][now]: the batch's timestamp, keyspace."""
    req.consistency = CONSISTENCY_NAMES.get(r.short(), "?")
    flags = r.int() if version >= 5 else r.byte()
    if flags & 0x10:
        r.short()
    timestamp = r.long() if flags & 0x20 else None
    keyspace = r.string() if version >= 5 and flags & 0x80 else None
    if version >= 5 and flags & 0x100:
        r.int()
    req.timestamp = timestamp
    return timestamp, keyspace


def decode_values(st: Statement, raw: list[Any]) -> list[Any]:
    if len(raw) != len(st.bind):
        raise invalid(f"There were {len(st.bind)} markers(?) in CQL but {len(raw)} "
                      "bound variables")
    return [v if v is None or v is UNSET else t.decode(v)  # type: ignore[arg-type]
            for v, (_, t) in zip(raw, st.bind, strict=True)]


# -- paging ---------------------------------------------------------------------------------------
def _digest(st: Statement, values: list[Any]) -> bytes:
    return hashlib.md5(repr((st.text, values)).encode()).digest()[:8]


def encode_paging_state(st: Statement, values: list[Any], position: tuple,
                        remaining: int | None) -> bytes:
    return (_digest(st, values) + struct.pack(">i", -1 if remaining is None else remaining)
            + repr(position).encode())


def decode_paging_state(st: Statement, values: list[Any],
                        state: bytes) -> tuple[tuple, int | None]:
    """(the last position returned, rows the LIMIT still allows or None)."""
    if len(state) < 13 or state[:8] != _digest(st, values):
        raise CqlError(PROTOCOL_ERROR, "Invalid value for the paging state")
    remaining = struct.unpack(">i", state[8:12])[0]
    try:
        position = ast.literal_eval(state[12:].decode())
    except (ValueError, SyntaxError, UnicodeDecodeError):
        raise CqlError(PROTOCOL_ERROR, "Invalid value for the paging state") from None
    return position, None if remaining < 0 else remaining


def page(st: Statement, params: QueryParams, rows: list[tuple[tuple, tuple]], limit: int | None,
         descending: bool) -> tuple[list[tuple], bytes | None]:
    """The page of `rows` ((position, row) in result order, LIMIT not applied) to send, and the
    state of the next page (None: this was the last)."""
    remaining = limit
    if params.paging_state is not None:
        last, remaining = decode_paging_state(st, params.values, params.paging_state)
        rows = [pr for pr in rows if (pr[0] < last if descending else pr[0] > last)]
    if remaining is not None:
        rows = rows[:remaining]
    size = params.page_size
    if size is None or size <= 0 or len(rows) <= size:
        return [row for _, row in rows], None
    chosen = rows[:size]
    left = None if remaining is None else remaining - size
    if left == 0:
        return [row for _, row in chosen], None
    return [row for _, row in chosen], encode_paging_state(st, params.values, chosen[-1][0], left)


# -- result bodies --------------------------------------------------------------------------------
def result_metadata_id(st: Statement) -> bytes:
    return hashlib.md5(repr(st.columns if st.kind == "select" else []).encode()).digest()


def prepared_body(qid: bytes, st: Statement, version: int) -> bytes:
    body = w_int(KIND_PREPARED) + w_short_bytes(qid)
    if version >= 5:
        body += w_short_bytes(result_metadata_id(st))
    return body + prepared_meta(st) + result_meta(st, no_metadata=st.kind != "select")


def prepared_meta(st: Statement) -> bytes:
    table = st.table_def
    if table is None:  # DDL/USE: no bind variables
        return w_int(0) + w_int(0) + w_int(0)
    pk_idx = [next(i for i, (c, _) in enumerate(st.bind) if c == k)
              for k in table.partition_key if any(c == k for c, _ in st.bind)]
    if len(pk_idx) != len(table.partition_key):
        pk_idx = []
    body = w_int(0x0001 if st.bind else 0) + w_int(len(st.bind)) + w_int(len(pk_idx))
    body += b"".join(w_short(i) for i in pk_idx)
    if st.bind:
        body += w_string(table.keyspace) + w_string(table.name)
        body += b"".join(w_string(c) + t.option() for c, t in st.bind)
    return body


def result_meta(st: Statement, *, no_metadata: bool, paging_state: bytes | None = None) -> bytes:
    table = st.table_def
    cols = st.columns if st.kind == "select" else []
    flags = 0x0002 if paging_state is not None else 0
    if no_metadata or not cols or table is None:
        flags |= 0x0004
        return w_int(flags) + w_int(len(cols)) + (w_bytes(paging_state) if paging_state else b"")
    flags |= 0x0001
    body = w_int(flags) + w_int(len(cols))
    if paging_state is not None:
        body += w_bytes(paging_state)
    body += w_string(table.keyspace) + w_string(table.name)
    return body + b"".join(w_string(c) + table.columns[c].option() for c in cols)


def rows_body(st: Statement, rows: list[tuple], *, skip_metadata: bool,
              paging_state: bytes | None) -> bytes:
    types = [st.table_def.columns[c] for c in st.columns]  # type: ignore[union-attr]
    body = w_int(KIND_ROWS) + result_meta(st, no_metadata=skip_metadata,
                                          paging_state=paging_state)
    body += w_int(len(rows))
    for row in rows:
        body += b"".join(w_bytes(None if v is None else t.encode(v))
                         for v, t in zip(row, types, strict=True))
    return body


def schema_change_body(change: str, target: str, keyspace: str, table: str | None) -> bytes:
    body = w_string(change) + w_string(target) + w_string(keyspace)
    return body + (w_string(table) if table is not None else b"")


def supported_body(versions: tuple[int, ...]) -> bytes:
    opts = {"CQL_VERSION": ["3.4.5"], "COMPRESSION": [],
            "PROTOCOL_VERSIONS": [f"{v}/v{v}" for v in versions]}
    return w_short(len(opts)) + b"".join(
        w_string(k) + w_short(len(v)) + b"".join(w_string(x) for x in v)
        for k, v in opts.items())
