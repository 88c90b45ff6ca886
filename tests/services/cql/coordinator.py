"""How a node coordinates a request: injected faults first, then the consistency level against
the replicas of each partition the request touches, then the engine; the paging and the one
timestamp of a batch. A mixin of `CqlTestServer` (it uses the server's nodes, engine, prepared
statements, faults and parsers)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from tests.services.cql import protocol as proto
from tests.services.cql.engine import Engine, token
from tests.services.cql.parser import Statement
from tests.services.cql.protocol import Request
from tests.services.cql.replicas import ReplicaData
from tests.services.cql.statements import StatementParser
from tests.services.cql.topology import (
    UP,
    Node,
    block_for,
    check_consistency,
    replica_timeout,
    replicas,
)
from tests.services.cql.transport import Conn
from tests.services.cql.wire import (
    CONSISTENCY_CODES,
    OVERLOADED,
    READ_TIMEOUT,
    RESULT,
    SERVER_ERROR,
    UNAVAILABLE,
    UNPREPARED,
    WRITE_TIMEOUT,
    CqlError,
    Reader,
    invalid,
    w_int,
    w_short,
    w_short_bytes,
    w_string,
)

FAULTS = ("no_answer", "read_timeout", "write_timeout", "unavailable", "overloaded",
          "server_error", "delay")
NO_REPLY = (-1, b"")  # a reply that is never sent (the "no_answer" fault)
BATCH_SIZE_FAIL_BYTES = 50 * 1024  # Cassandra's default batch_size_fail_threshold (values only)


@dataclass
class _Fault:
    kind: str
    remaining: int
    match: Callable[[str], bool]
    seconds: float = 0.0



class Coordinator:
    nodes: list[Node]
    engine: Engine
    replicas: ReplicaData
    replica_timeout: float
    _cond: threading.Condition
    _faults: list[_Fault]
    _prepared: dict[int, dict[bytes, Statement]]

    def _parser(self, node: Node) -> StatementParser:
        raise NotImplementedError

    def _push_schema_change(self, change: str, target: str, keyspace: str,
                            table: str | None) -> None:
        raise NotImplementedError

    def _take_fault(self, text: str) -> _Fault | None:
        with self._cond:
            for f in self._faults:
                if f.remaining > 0 and f.match(text):
                    f.remaining -= 1
                    return f
        return None

    def _lookup_prepared(self, conn: Conn, qid: bytes) -> Statement:
        with self._cond:
            st = self._prepared[conn.node.index].get(qid)
        if st is None:  # a node knows only what was prepared on it (and forgets on restart)
            raise CqlError(UNPREPARED, f"Prepared query with ID {qid.hex()} not found",
                           w_short_bytes(qid))
        return st

    def _fault(self, req: Request, text: str, conn: Conn | None = None,
               items: list[tuple[Statement, list[Any]]] | None = None,
               write_type: str = "SIMPLE") -> tuple[int, bytes] | None:
        """None, NO_REPLY for "no_answer", or raises the injected error, if a fault applies.

        Injected timeouts and Unavailable carry the counts a coordinator would give for the
        request's consistency level and its keyspace's replication (blockFor; one short)."""
        f = self._take_fault(text)
        if f is None:
            return None
        req.fault = f.kind
        cl_name = req.consistency or "ONE"
        cl = CONSISTENCY_CODES.get(cl_name, 1)
        if f.kind == "delay":
            time.sleep(f.seconds)
            return None
        if f.kind == "no_answer":
            return NO_REPLY
        items = items or []
        needed = self._block_for(cl_name, conn, items)
        write = bool(items) and items[0][0].kind == "insert"
        if f.kind in ("read_timeout", "write_timeout"):
            # one answer short: the driver's default policy retries neither
            raise replica_timeout(cl_name, needed - 1, needed, write=f.kind == "write_timeout",
                                  write_type=write_type if write else "SIMPLE")
        if f.kind == "unavailable":
            raise CqlError(UNAVAILABLE, f"Cannot achieve consistency level {cl_name}",
                           w_short(cl) + w_int(needed) + w_int(needed - 1))
        if f.kind == "overloaded":
            raise CqlError(OVERLOADED, "Server is in overloaded state.")
        raise CqlError(SERVER_ERROR, "injected server error")

    def _block_for(self, cl: str, conn: Conn | None,
                   items: list[tuple[Statement, list[Any]]]) -> int:
        """blockFor of `cl` on the first statement's partition (1 if it cannot be told)."""
        if conn is None or not items or cl in ("SERIAL", "LOCAL_SERIAL"):
            return 1
        st, values = items[0]
        sets = self._replica_sets(st, values)
        if not sets:
            return 1
        with self.engine.lock:
            replication = self.engine.keyspaces[st.table_def.keyspace]  # type: ignore[union-attr]
        try:
            return max(1, block_for(cl, conn.node, sets[0], replication))
        except CqlError:
            return 1

    # -- coordination --------------------------------------------------------------------------
    def _replica_sets(self, st: Statement, values: list[Any]) -> list[list[Node]] | None:
        """The replica sets a statement needs (one per partition; every ring range for a scan),
        or None when no consistency applies (DDL, USE, system keyspaces)."""
        table = st.table_def
        if (table is None or st.kind not in ("insert", "select")
                or table.keyspace in ("system", "system_schema")):
            return None
        with self.engine.lock:
            replication = self.engine.keyspaces[table.keyspace]
        pk = self.engine.partition_key(st, [v for v in values])
        if pk is not None:
            return [replicas(self.nodes, replication, token(pk))]
        return [replicas(self.nodes, replication, i.to_bytes(4, "big"))
                for i in range(len(self.nodes))]

    def _coordinate(self, conn: Conn, req: Request, sets: list[list[Node]], *, write: bool,
                    keyspace: str, write_type: str = "SIMPLE") -> None:
        """Check `req.consistency` on every replica set, as the coordinator `conn.node`."""
        with self.engine.lock:
            replication = self.engine.keyspaces[keyspace]
        for reps in sets:
            try:
                check_consistency(req.consistency or "ONE", write=write, coordinator=conn.node,
                                  reps=reps, replication=replication,
                                  timeout_write_type=write_type)
            except CqlError as err:
                if err.code in (WRITE_TIMEOUT, READ_TIMEOUT):
                    time.sleep(self.replica_timeout)  # the coordinator waits for the replicas
                raise

    def _run(self, conn: Conn, st: Statement, params: proto.QueryParams,
             req: Request) -> tuple[int, bytes]:
        sets = self._replica_sets(st, params.values)
        write = st.kind == "insert"
        timestamp = params.timestamp if params.timestamp is not None else time.time_ns() // 1000
        if sets is not None:
            try:
                self._coordinate(conn, req, sets, write=write, keyspace=st.table_def.keyspace)
            except CqlError as err:
                if err.code == WRITE_TIMEOUT and any(n.state == UP for s in sets for n in s):
                    self._apply(conn.node, [(st, params.values)], timestamp)
                raise
        if st.kind == "select":
            return RESULT, self._select(conn, st, params, req, replicated=sets is not None)
        if st.kind == "insert" and sets is not None:
            self._apply(conn.node, [(st, params.values)], timestamp)
            return RESULT, w_int(proto.KIND_VOID)
        kind, payload = self.engine.execute(st, params.values, timestamp, self._datacenters())
        if kind == "void":
            return RESULT, w_int(proto.KIND_VOID)
        if kind == "set_keyspace":
            conn.keyspace = payload
            return RESULT, w_int(proto.KIND_SET_KEYSPACE) + w_string(payload)
        self._push_schema_change(*payload)
        return RESULT, w_int(proto.KIND_SCHEMA_CHANGE) + proto.schema_change_body(*payload)

    def _select(self, conn: Conn, st: Statement, params: proto.QueryParams,
                req: Request, replicated: bool = False) -> bytes:
        table = st.table_def
        assert table is not None
        limit = None
        if st.limit is not None:
            limit = st.limit.literal if st.limit.marker is None else params.values[st.limit.marker]
            if not isinstance(limit, int) or limit <= 0:
                raise invalid("LIMIT must be strictly positive")
        # Every row in result order with its position; LIMIT and paging are applied by page().
        unlimited = replace(st, limit=None, bind=[b for b in st.bind if b[0] != "[limit]"])
        values = [v for v, b in zip(params.values, st.bind, strict=True) if b[0] != "[limit]"]
        if replicated:  # from the replicas the consistency level asks, merged and repaired
            with self.engine.lock:
                replication = self.engine.keyspaces[table.keyspace]
                asked = self.replicas.partitions_to_read(
                    req.consistency or "ONE", conn.node, self.nodes, table, replication,
                    self.engine.partition_key(unlimited, values))
                view = self.replicas.merged(table, asked)
            rows = self.engine.select_from(view, unlimited, values)
        else:
            _, rows = self.engine.execute(unlimited, values, 0, self._datacenters())
        descending = bool(st.where) and bool(table.clustering) and (
            table.descending[table.clustering[0]] != bool(st.order_desc))
        page, state = proto.page(st, params, rows, limit, descending)
        req.rows_returned, req.has_more_pages = len(page), state is not None
        return proto.rows_body(st, page, skip_metadata=params.skip_metadata, paging_state=state)

    def _datacenters(self) -> set[str]:
        return {n.datacenter for n in self.nodes}

    def _batch(self, conn: Conn, r: Reader, req: Request) -> tuple[int, bytes]:
        batch_type = {0: "LOGGED", 1: "UNLOGGED", 2: "COUNTER"}.get(r.byte(), "?")
        req.batch_type = batch_type
        raw_items: list[tuple[Statement | str, list[Any]]] = []
        req.batch = []
        for _ in range(r.short()):
            kind = r.byte()
            target: Statement | str = r.long_string() if kind == 0 else \
                self._lookup_prepared(conn, r.short_bytes())
            raw_items.append((target, [r.value() for _ in range(r.short())]))
        timestamp, keyspace = proto.read_batch_tail(r, conn.version, req)
        parser = self._parser(conn.node)
        items: list[tuple[Statement, list[Any]]] = []
        for target, raw in raw_items:
            st = parser.parse(target, keyspace or conn.keyspace) if isinstance(target, str) \
                else target
            values = proto.decode_values(st, raw)
            if st.kind != "insert":
                raise invalid("Invalid statement in batch: only UPDATE, INSERT and DELETE "
                              "statements are allowed.")
            items.append((st, values))
            req.batch.append((st.text, values))
        size = sum(len(v) for _, raw in raw_items for v in raw if isinstance(v, bytes))
        if size > BATCH_SIZE_FAIL_BYTES:  # cassandra.yaml batch_size_fail_threshold: 50 KiB
            raise invalid(f"Batch too large: {size} bytes of values is over the "
                          f"{BATCH_SIZE_FAIL_BYTES // 1024} KiB batch_size_fail_threshold")
        fault = self._fault(req, "\n".join(t for t, _ in req.batch), conn, items,
                            "BATCH" if batch_type == "LOGGED" else "UNLOGGED_BATCH")
        if fault is not None:
            return fault
        if timestamp is None:
            timestamp = time.time_ns() // 1000
        sets = [s for st, values in items for s in self._replica_sets(st, values) or []]
        write_type = "BATCH" if batch_type == "LOGGED" else "UNLOGGED_BATCH"
        try:
            if items:
                self._coordinate(conn, req, sets, write=True,
                                 keyspace=items[0][0].table_def.keyspace,  # type: ignore[union-attr]
                                 write_type=write_type)
        except CqlError as err:
            if not (err.code == WRITE_TIMEOUT and any(n.state == UP for s in sets for n in s)):
                raise
            self._apply(conn.node, items, timestamp)
            raise
        self._apply(conn.node, items, timestamp)
        return RESULT, w_int(proto.KIND_VOID)

    def _apply(self, coordinator: Node, items: list[tuple[Statement, list[Any]]],
               timestamp: int) -> None:
        """Write INSERTs at one timestamp (a batch shares it): the engine keeps every write (what
        the cluster converges to), each replica that is up gets it, the others a hint."""
        with self.engine.lock:
            for st, values in items:
                self.engine.execute(st, values, timestamp, self._datacenters())
                table = st.table_def
                assert table is not None
                sets = self._replica_sets(st, values)
                if sets:
                    self.replicas.write(coordinator, sets[0], table,
                                        self.engine.insert_row(st, values), timestamp)
