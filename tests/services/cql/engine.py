"""The cluster's data in memory: keyspaces (with their replication maps), tables, and cells that
carry write timestamps.

Conflicts resolve as Cassandra resolves them, cell by cell: the higher write timestamp wins; on
equal timestamps a deletion (null) wins, then the greater value, compared as unsigned bytes of
its serialised form. So two writes of one key with one timestamp (one batch) do not resolve by
arrival order.

Reads return `(position, row)` pairs in result order; a position is the row's place in its
table (token, partition key, clustering key), which is what the paging state encodes.
"""

from __future__ import annotations

import hashlib
import threading
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.services.cql.parser import Statement, Term
from tests.services.cql.wire import (
    ALREADY_EXISTS,
    CONFIG_ERROR,
    UNSET,
    CqlError,
    CqlType,
    invalid,
    w_string,
)


@dataclass
class Table:
    keyspace: str
    name: str
    columns: dict[str, CqlType]         # in Cassandra's order: pk, clustering, then regular sorted
    partition_key: list[str]
    clustering: list[str]
    descending: dict[str, bool]
    # partition key -> (sorted clustering keys, clustering key -> {column: (value, timestamp)})
    data: dict[tuple, tuple[list[tuple], dict[tuple, dict[str, tuple[Any, int]]]]] = \
        field(default_factory=dict)

    def upsert(self, row: dict[str, Any], timestamp: int = 0) -> None:
        """Write `row`'s cells at `timestamp` (microseconds); each cell keeps the winner."""
        pk = tuple(row[c] for c in self.partition_key)
        ck = tuple(row[c] for c in self.clustering)
        keys, rows = self.data.setdefault(pk, ([], {}))
        if ck not in rows:
            insort(keys, ck)
            rows[ck] = {}
        cells = rows[ck]
        for col, value in row.items():
            old = cells.get(col)
            if old is None or self._wins(col, value, timestamp, old):
                cells[col] = (value, timestamp)

    def _wins(self, col: str, value: Any, ts: int, old: tuple[Any, int]) -> bool:
        old_value, old_ts = old
        if ts != old_ts:
            return ts > old_ts
        if old_value is None:   # a deletion wins a tie
            return False
        if value is None:
            return True
        t = self.columns[col]
        return t.encode(value) > t.encode(old_value)

    def value(self, pk: tuple, ck: tuple, col: str) -> Any:
        cell = self.data[pk][1][ck].get(col)
        return None if cell is None else cell[0]

    def timestamp(self, pk: tuple, ck: tuple, col: str) -> int | None:
        cell = self.data[pk][1][ck].get(col)
        return None if cell is None else cell[1]


def token(pk: tuple) -> bytes:
    """A partition's place on the ring (md5 of the key: a stand-in for Murmur3, not key order)."""
    return hashlib.md5(repr(pk).encode()).digest()


class Engine:
    """Keyspaces and tables shared by the cluster's nodes; thread-safe (one lock)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.keyspaces: dict[str, dict[str, str]] = {}   # name -> replication map
        self.tables: dict[tuple[str, str], Table] = {}
        self.schema_listeners: list[Callable[[], None]] = []

    def _schema_changed(self) -> None:
        for listener in self.schema_listeners:
            listener()

    def execute(self, st: Statement, values: list[Any], timestamp: int,
                datacenters: set[str]) -> tuple[str, Any]:
        """Run `st` with decoded bound `values`; returns (result kind, payload)."""
        if len(values) != len(st.bind):
            raise invalid(f"There were {len(st.bind)} markers(?) in CQL but {len(values)} "
                          "bound variables")
        if any(v is UNSET for v in values):
            raise invalid("unset values are not supported by the test server")
        val = lambda t: t.literal if t.marker is None else values[t.marker]  # noqa: E731
        with self.lock:
            if st.kind == "use":
                if st.keyspace not in self.keyspaces:
                    raise invalid(f"Keyspace '{st.keyspace}' does not exist")
                return "set_keyspace", st.keyspace
            if st.kind == "create_keyspace":
                if st.keyspace in self.keyspaces:
                    if st.if_not_exists:
                        return "void", None
                    raise CqlError(ALREADY_EXISTS, f"Keyspace {st.keyspace} already exists",
                                   w_string(st.keyspace or "") + w_string(""))
                self.keyspaces[st.keyspace or ""] = check_replication(
                    st.keyspace or "", st.replication or {}, datacenters)
                self._schema_changed()
                return "schema_change", ("CREATED", "KEYSPACE", st.keyspace, None)
            if st.kind == "create_table":
                t = st.table_def
                assert t is not None
                if t.keyspace not in self.keyspaces:
                    raise invalid(f"Keyspace {t.keyspace} doesn't exist")
                if (t.keyspace, t.name) in self.tables:
                    if st.if_not_exists:
                        return "void", None
                    raise CqlError(ALREADY_EXISTS, f"Table {t.keyspace}.{t.name} already exists",
                                   w_string(t.keyspace) + w_string(t.name))
                self.tables[(t.keyspace, t.name)] = t
                self._schema_changed()
                return "schema_change", ("CREATED", "TABLE", t.keyspace, t.name)
            table = st.table_def
            assert table is not None
            if st.kind == "insert":
                table.upsert(self.insert_row(st, values), timestamp)
                return "void", None
            return "rows", self._select(table, st, val)

    @staticmethod
    def insert_row(st: Statement, values: list[Any]) -> dict[str, Any]:
        """The cells an INSERT writes (its key columns checked)."""
        table = st.table_def
        assert table is not None
        val = lambda t: t.literal if t.marker is None else values[t.marker]  # noqa: E731
        row = {c: val(t) for c, t in zip(st.columns, st.terms, strict=True)}
        for c in table.partition_key + table.clustering:
            if row[c] is None:
                raise invalid(f"Invalid null value in condition for column {c}")
        return row

    def select_from(self, table: Table, st: Statement, values: list[Any]) -> list[tuple]:
        """A SELECT's `(position, row)` pairs read from `table` (a merge of replicas' copies)."""
        val = lambda t: t.literal if t.marker is None else values[t.marker]  # noqa: E731
        with self.lock:
            return self._select(table, st, val)

    def partition_key(self, st: Statement, values: list[Any]) -> tuple | None:
        """The partition `st` touches (INSERT, or SELECT with `=` on the key), or None (a scan)."""
        table = st.table_def
        if table is None or st.kind not in ("insert", "select"):
            return None
        val = lambda t: t.literal if t.marker is None else values[t.marker]  # noqa: E731
        if st.kind == "insert":
            row = dict(zip(st.columns, st.terms, strict=True))
            return tuple(val(row[c]) for c in table.partition_key)
        eq = {w.column: w.term for w in st.where if w.op == "="}
        if not all(c in eq for c in table.partition_key):
            return None
        return tuple(val(eq[c]) for c in table.partition_key)

    def _select(self, table: Table, st: Statement,
                val: Callable[[Term], Any]) -> list[tuple[tuple, tuple]]:
        limit = None if st.limit is None else val(st.limit)
        if limit is not None and (not isinstance(limit, int) or limit <= 0):
            raise invalid("LIMIT must be strictly positive")
        if not st.where:  # full scan, partitions in token order (not key order, like Murmur3)
            out: list[tuple[tuple, tuple]] = []
            for pk, (keys, _rows) in sorted(table.data.items(), key=lambda kv: token(kv[0])):
                if st.distinct:
                    if keys:
                        named = dict(zip(table.partition_key, pk, strict=True))
                        out.append(((token(pk), pk), tuple(named[c] for c in st.columns)))
                    continue
                out.extend(((token(pk), pk, k), self._row(table, pk, k, st.columns))
                           for k in keys)
            return out[:limit]
        pk = []
        for c in table.partition_key:
            v = next(val(w.term) for w in st.where if w.column == c)
            if v is None:
                raise invalid(f"Invalid null value in condition for column {c}")
            pk.append(v)
        keys, _rows = table.data.get(tuple(pk), ([], {}))
        lo, hi = 0, len(keys)
        rest = (_Top(),) * (len(table.clustering) - 1)
        for w in st.where:
            if w.column in table.partition_key:
                continue
            v = val(w.term)
            if v is None:
                raise invalid(f"Invalid null value in condition for column {w.column}")
            if w.op in (">=", "="):
                lo = max(lo, bisect_left(keys, (v,)))
            if w.op == ">":
                lo = max(lo, bisect_right(keys, (v,) + rest))
            if w.op in ("<=", "="):
                hi = min(hi, bisect_right(keys, (v,) + rest))
            if w.op == "<":
                hi = min(hi, bisect_left(keys, (v,)))
        selected = keys[lo:hi] if lo < hi else []
        desc = bool(table.clustering) and table.descending[table.clustering[0]]
        if st.order_desc:
            desc = not desc
        if desc:
            selected = selected[::-1]
        if limit is not None:
            selected = selected[:limit]
        return [(k, self._row(table, tuple(pk), k, st.columns)) for k in selected]

    @staticmethod
    def _row(table: Table, pk: tuple, ck: tuple, columns: list[str]) -> tuple:
        return tuple(table.value(pk, ck, c) for c in columns)

    def rows(self, keyspace: str, table: str) -> list[dict[str, Any]]:
        """Every row of a table, values only (for assertions)."""
        with self.lock:
            t = self.tables[(keyspace, table)]
            return [{c: v for c, (v, _ts) in rows[k].items()}
                    for keys, rows in t.data.values() for k in keys]


def check_replication(keyspace: str, options: dict[str, str], datacenters: set[str]) -> dict:
    """A CREATE KEYSPACE replication map checked as Cassandra 4 checks it."""
    cls = options.get("class", "").rsplit(".", 1)[-1]
    rest = {k: v for k, v in options.items() if k != "class"}
    if cls == "SimpleStrategy":
        if set(rest) != {"replication_factor"} or not rest["replication_factor"].isdigit():
            raise CqlError(CONFIG_ERROR, "SimpleStrategy requires a replication_factor strategy "
                                         "option.")
    elif cls == "NetworkTopologyStrategy":
        for dc, rf in rest.items():
            if dc != "replication_factor" and dc not in datacenters:
                raise CqlError(CONFIG_ERROR, f"Unrecognized strategy option {{{dc}}} passed to "
                                             f"NetworkTopologyStrategy for keyspace {keyspace}")
            if not rf.isdigit():
                raise CqlError(CONFIG_ERROR, f"Replication factor must be numeric; found {rf}")
        if "replication_factor" in rest:  # the default for every datacenter
            rf = rest.pop("replication_factor")
            rest = {dc: rest.get(dc, rf) for dc in sorted(datacenters)}
    else:
        raise CqlError(CONFIG_ERROR, f"Unable to find replication strategy class "
                                     f"'{options.get('class')}'")
    return {"class": f"org.apache.cassandra.locator.{cls}", **rest}


class _Top:
    """Sorts after everything: the upper bound of a clustering prefix."""

    def __lt__(self, other: object) -> bool:
        return False

    def __gt__(self, other: object) -> bool:
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Top)

    __hash__ = object.__hash__
