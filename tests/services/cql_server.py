"""A small CQL native-protocol (v4) test server, used the way DataStax's Simulacron is used.

It lets the real cassandra-driver connect to 127.0.0.1 and run the quote store's statements
against an in-memory table engine, while tests look at every request and inject faults.

Protocol (doc/native_protocol_v4.spec):
- frames v4 only; a frame of any other version (driver 3.30 starts at DSE_V2=0x42, then DSE_V1,
  then v5) is answered with a protocol error "Invalid or unsupported protocol version (N)", the
  message the driver looks for to downgrade; the attempts are kept in `protocol_attempts`;
- OPTIONS→SUPPORTED (no compression), STARTUP→READY, or AUTHENTICATE + AUTH_RESPONSE (SASL PLAIN)
  →AUTH_SUCCESS / "Bad credentials" when `users` is set; REGISTER→READY (no events are pushed);
- QUERY, PREPARE (md5 statement ids, bound-variable and result metadata, pk indexes), EXECUTE
  (`Unprepared` for an id the server does not know, e.g. after a restart), BATCH; result paging
  with `result_page_size` and an opaque paging state bound to its statement and values.

The engine understands a CQL subset, parsed for real: CREATE KEYSPACE/TABLE [IF NOT EXISTS]
(partition keys, clustering columns and order), USE, INSERT, SELECT [DISTINCT] with `=` on the
partition key, ranges on the first clustering column, ORDER BY, LIMIT, and bind markers anywhere
a value goes. It enforces Cassandra's rules that matter to a client (whole partition key
restricted, no filtering on regular columns, LIMIT > 0, known columns and types) and answers
anything else with a Syntax/Invalid error: a statement the store should not send fails loudly.
`system.local`, `system.peers` and `system.peers_v2` (empty: a one-node cluster) are tables of
the same engine, so the driver's control-connection queries work whichever columns they select.

Test hooks: `requests` (every request with decoded values and consistency), `wait_for_request`,
`fail_next(n, fault)` (no_answer / read_timeout / write_timeout / unavailable / overloaded /
server_error on the next n matching requests), `stop()` / `start()` (down and back on the same
port; data kept, prepared statements forgotten like a real restart).
"""

from __future__ import annotations

import hashlib
import re
import socket
import struct
import threading
import time
import uuid
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# -- opcodes, result kinds, error codes (spec sections 2.4, 4.2.5, 9) ---------------------------
ERROR, STARTUP, READY, AUTHENTICATE, OPTIONS, SUPPORTED = 0x00, 0x01, 0x02, 0x03, 0x05, 0x06
QUERY, RESULT, PREPARE, EXECUTE, REGISTER, EVENT, BATCH = 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D
AUTH_CHALLENGE, AUTH_RESPONSE, AUTH_SUCCESS = 0x0E, 0x0F, 0x10
OPCODE_NAMES = {STARTUP: "STARTUP", OPTIONS: "OPTIONS", QUERY: "QUERY", PREPARE: "PREPARE",
                EXECUTE: "EXECUTE", REGISTER: "REGISTER", BATCH: "BATCH",
                AUTH_RESPONSE: "AUTH_RESPONSE"}
KIND_VOID, KIND_ROWS, KIND_SET_KEYSPACE, KIND_PREPARED, KIND_SCHEMA_CHANGE = 1, 2, 3, 4, 5
SERVER_ERROR, PROTOCOL_ERROR, BAD_CREDENTIALS = 0x0000, 0x000A, 0x0100
UNAVAILABLE, OVERLOADED, WRITE_TIMEOUT, READ_TIMEOUT = 0x1000, 0x1001, 0x1100, 0x1200
SYNTAX_ERROR, INVALID, ALREADY_EXISTS, UNPREPARED = 0x2000, 0x2200, 0x2400, 0x2500
CONSISTENCY_NAMES = {0: "ANY", 1: "ONE", 2: "TWO", 3: "THREE", 4: "QUORUM", 5: "ALL",
                     6: "LOCAL_QUORUM", 7: "EACH_QUORUM", 8: "SERIAL", 9: "LOCAL_SERIAL",
                     10: "LOCAL_ONE"}
FAULTS = ("no_answer", "read_timeout", "write_timeout", "unavailable", "overloaded",
          "server_error")


class CqlError(Exception):
    """An ERROR frame to send: `code`, message and the code's extra body."""

    def __init__(self, code: int, message: str, extra: bytes = b"") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra


def _invalid(msg: str) -> CqlError:
    return CqlError(INVALID, msg)


# -- wire helpers --------------------------------------------------------------------------------
class Reader:
    """Reads the notation of spec section 3 from a frame body; short reads are protocol errors."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise CqlError(PROTOCOL_ERROR, "truncated frame body")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def byte(self) -> int:
        return self.take(1)[0]

    def short(self) -> int:
        return struct.unpack(">H", self.take(2))[0]

    def int(self) -> int:
        return struct.unpack(">i", self.take(4))[0]

    def long(self) -> int:
        return struct.unpack(">q", self.take(8))[0]

    def string(self) -> str:
        return self.take(self.short()).decode()

    def long_string(self) -> str:
        return self.take(self.int()).decode()

    def short_bytes(self) -> bytes:
        return self.take(self.short())

    def bytes(self) -> bytes | None:
        n = self.int()
        return None if n < 0 else self.take(n)

    def value(self) -> bytes | None | object:
        n = self.int()
        if n == -2:
            return UNSET
        return None if n < 0 else self.take(n)

    def string_map(self) -> dict[str, str]:
        return {self.string(): self.string() for _ in range(self.short())}


UNSET = object()  # the "unset" value (length -2) of protocol v4
NO_REPLY = (-1, b"")  # a reply that is never sent (the "no_answer" fault)


def w_short(n: int) -> bytes:
    return struct.pack(">H", n)


def w_int(n: int) -> bytes:
    return struct.pack(">i", n)


def w_string(s: str) -> bytes:
    b = s.encode()
    return w_short(len(b)) + b


def w_long_string(s: str) -> bytes:
    b = s.encode()
    return w_int(len(b)) + b


def w_bytes(b: bytes | None) -> bytes:
    return w_int(-1) if b is None else w_int(len(b)) + b


def w_short_bytes(b: bytes) -> bytes:
    return w_short(len(b)) + b


# -- types (spec section 6) ----------------------------------------------------------------------
@dataclass(frozen=True)
class CqlType:
    """A CQL type: its option id for metadata and how values are encoded (server side)."""

    name: str
    option_id: int
    params: tuple[CqlType, ...] = ()

    def option(self) -> bytes:
        return w_short(self.option_id) + b"".join(p.option() for p in self.params)

    def encode(self, v: Any) -> bytes:
        n = self.name
        if n in ("text", "varchar", "ascii"):
            return v.encode()
        if n == "int":
            return struct.pack(">i", v)
        if n in ("bigint", "timestamp", "counter"):
            return struct.pack(">q", v)
        if n == "double":
            return struct.pack(">d", v)
        if n == "boolean":
            return b"\x01" if v else b"\x00"
        if n == "uuid":
            return v.bytes
        if n == "inet":
            return socket.inet_pton(socket.AF_INET6 if ":" in v else socket.AF_INET, v)
        if n in ("set", "list"):
            items = [self.params[0].encode(x) for x in v]
            return w_int(len(items)) + b"".join(w_int(len(b)) + b for b in items)
        raise CqlError(SERVER_ERROR, f"test server cannot encode {n}")

    def decode(self, b: bytes) -> Any:
        n = self.name
        try:
            if n in ("text", "varchar", "ascii"):
                return b.decode()
            if n == "int":
                return struct.unpack(">i", b)[0]
            if n in ("bigint", "timestamp", "counter"):
                return struct.unpack(">q", b)[0]
            if n == "double":
                return struct.unpack(">d", b)[0]
            if n == "boolean":
                return b != b"\x00"
            if n == "uuid":
                return uuid.UUID(bytes=b)
            if n == "inet":
                return socket.inet_ntop(socket.AF_INET6 if len(b) == 16 else socket.AF_INET, b)
            if n in ("set", "list"):
                r = Reader(b)
                return [self.params[0].decode(r.take(r.int())) for _ in range(r.int())]
        except (struct.error, UnicodeDecodeError, ValueError) as exc:
            raise _invalid(f"invalid {n} value {b!r}: {exc}") from exc
        raise CqlError(SERVER_ERROR, f"test server cannot decode {n}")

    def __str__(self) -> str:
        return self.name + (f"<{', '.join(map(str, self.params))}>" if self.params else "")


_SIMPLE_TYPES = {"ascii": 0x0001, "bigint": 0x0002, "boolean": 0x0004, "counter": 0x0005,
                 "double": 0x0007, "int": 0x0009, "text": 0x000D, "varchar": 0x000D,
                 "timestamp": 0x000B, "uuid": 0x000C, "inet": 0x0010}
_COLLECTIONS = {"list": 0x0020, "set": 0x0022}
INT = CqlType("int", 0x0009)


def make_type(name: str, params: tuple[CqlType, ...] = ()) -> CqlType:
    name = name.lower()
    if name in _SIMPLE_TYPES and not params:
        return CqlType(name, _SIMPLE_TYPES[name])
    if name in _COLLECTIONS and len(params) == 1:
        return CqlType(name, _COLLECTIONS[name], params)
    raise CqlError(SYNTAX_ERROR, f"type {name} is not supported by the test server")


# -- the CQL subset: tokenizer and parser --------------------------------------------------------
_TOKEN = re.compile(r"""\s*(?:(?P<str>'(?:[^']|'')*')|(?P<qid>"(?:[^"]|"")+")|(?P<num>-?\d+(?:\.\d+)?)
                        |(?P<id>[A-Za-z_][A-Za-z0-9_]*)|(?P<op><=|>=|[=<>(),.;?*{}:\[\]]))""", re.X)


@dataclass
class Tok:
    kind: str  # str | id | num | op
    text: str


def tokenize(cql: str) -> list[Tok]:
    out: list[Tok] = []
    pos = 0
    cql = cql.rstrip()
    while pos < len(cql):
        m = _TOKEN.match(cql, pos)
        if not m or m.end() == pos:
            raise CqlError(SYNTAX_ERROR, f"line 1:{pos} unexpected input at {cql[pos:pos + 20]!r}")
        pos = m.end()
        kind = m.lastgroup or "op"
        text = m.group(kind)
        if kind == "str":
            text = text[1:-1].replace("''", "'")
        elif kind == "qid":
            kind, text = "id", text[1:-1].replace('""', '"')
        elif kind == "id":
            text = text.lower()  # unquoted identifiers and keywords are case-insensitive
        out.append(Tok(kind, text))
    if out and out[-1].text == ";":
        out.pop()
    return out


class Parser:
    def __init__(self, cql: str) -> None:
        self.toks = tokenize(cql)
        self.i = 0
        self.markers = 0

    def peek(self, *words: str) -> bool:
        return self.i < len(self.toks) and self.toks[self.i].text in words and \
            self.toks[self.i].kind in ("id", "op")

    def accept(self, *words: str) -> bool:
        if self.peek(*words):
            self.i += 1
            return True
        return False

    def expect(self, *words: str) -> str:
        if not self.peek(*words):
            got = self.toks[self.i].text if self.i < len(self.toks) else "<end>"
            raise CqlError(SYNTAX_ERROR, f"expected {' or '.join(words)}, got {got!r}")
        self.i += 1
        return self.toks[self.i - 1].text

    def ident(self) -> str:
        if self.i >= len(self.toks) or self.toks[self.i].kind != "id":
            got = self.toks[self.i].text if self.i < len(self.toks) else "<end>"
            raise CqlError(SYNTAX_ERROR, f"expected an identifier, got {got!r}")
        self.i += 1
        return self.toks[self.i - 1].text

    def qname(self) -> tuple[str | None, str]:
        first = self.ident()
        if self.accept("."):
            return first, self.ident()
        return None, first

    def term(self) -> Term:
        if self.accept("?"):
            self.markers += 1
            return Term(marker=self.markers - 1)
        if self.i < len(self.toks) and self.toks[self.i].kind in ("str", "num"):
            tok = self.toks[self.i]
            self.i += 1
            return Term(literal=tok.text if tok.kind == "str" else
                        (float(tok.text) if "." in tok.text else int(tok.text)))
        raise CqlError(SYNTAX_ERROR, "expected a bind marker or a literal")

    def cql_type(self) -> CqlType:
        name = self.ident()
        params: list[CqlType] = []
        if self.accept("<"):
            params.append(self.cql_type())
            while self.accept(","):
                params.append(self.cql_type())
            self.expect(">")
        return make_type(name, tuple(params))

    def skip_balanced_rest(self) -> None:
        self.i = len(self.toks)

    def end(self) -> None:
        if self.i != len(self.toks):
            raise CqlError(SYNTAX_ERROR, f"unexpected {self.toks[self.i].text!r}")


@dataclass
class Term:
    marker: int | None = None   # index of the bind marker, or
    literal: Any = None         # a literal value


@dataclass
class Table:
    keyspace: str
    name: str
    columns: dict[str, CqlType]         # in Cassandra's order: pk, clustering, then regular sorted
    partition_key: list[str]
    clustering: list[str]
    descending: dict[str, bool]
    # partition key tuple -> (sorted clustering keys, clustering key -> row)
    data: dict[tuple, tuple[list[tuple], dict[tuple, dict[str, Any]]]] = field(default_factory=dict)

    def upsert(self, row: dict[str, Any]) -> None:
        pk = tuple(row[c] for c in self.partition_key)
        ck = tuple(row[c] for c in self.clustering)
        keys, rows = self.data.setdefault(pk, ([], {}))
        if ck not in rows:
            insort(keys, ck)
            rows[ck] = {}
        rows[ck].update(row)


@dataclass
class Condition:
    column: str
    op: str
    term: Term


@dataclass
class Statement:
    """A parsed statement; `bind` lists (column spec name, type) of each bind marker, in order."""

    kind: str                       # create_keyspace | create_table | use | insert | select
    text: str
    keyspace: str | None = None
    table: str | None = None
    bind: list[tuple[str, CqlType]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    terms: list[Term] = field(default_factory=list)
    where: list[Condition] = field(default_factory=list)
    distinct: bool = False
    order_desc: bool | None = None
    limit: Term | None = None
    if_not_exists: bool = False
    table_def: Table | None = None


class Engine:
    """Keyspaces and tables in memory; thread-safe (one lock, requests are small)."""

    def __init__(self, cluster_name: str, datacenter: str, rack: str, address: str) -> None:
        self.lock = threading.RLock()
        self.keyspaces: dict[str, str] = {}       # name -> replication text
        self.tables: dict[tuple[str, str], Table] = {}
        self.schema_version = uuid.uuid4()
        self.host_id = uuid.uuid4()
        self._system_tables(cluster_name, datacenter, rack, address)

    def _system_tables(self, cluster_name: str, dc: str, rack: str, address: str) -> None:
        t = make_type
        node = {"data_center": t("text"), "host_id": t("uuid"), "rack": t("text"),
                "release_version": t("text"), "schema_version": t("uuid"),
                "tokens": t("set", (t("text"),))}
        self.keyspaces.update(system="LocalStrategy", system_schema="LocalStrategy")
        local = Table("system", "local", {
            "key": t("text"), "broadcast_address": t("inet"), "cluster_name": t("text"),
            "cql_version": t("text"), "listen_address": t("inet"),
            "native_protocol_version": t("text"), "partitioner": t("text"),
            "rpc_address": t("inet"), **node}, ["key"], [], {})
        local.columns = dict(sorted(local.columns.items(), key=lambda kv: kv[0] != "key"))
        peers = Table("system", "peers", {"peer": t("inet"), "preferred_ip": t("inet"),
                                          "rpc_address": t("inet"), **node}, ["peer"], [], {})
        peers_v2 = Table("system", "peers_v2", {
            "peer": t("inet"), "peer_port": t("int"), "native_address": t("inet"),
            "native_port": t("int"), "preferred_ip": t("inet"), "preferred_port": t("int"),
            **node}, ["peer"], ["peer_port"], {"peer_port": False})
        for table in (local, peers, peers_v2):
            self.tables[(table.keyspace, table.name)] = table
        local.upsert({
            "key": "local", "broadcast_address": address, "cluster_name": cluster_name,
            "cql_version": "3.4.5", "listen_address": address, "native_protocol_version": "4",
            "partitioner": "org.apache.cassandra.dht.Murmur3Partitioner", "rpc_address": address,
            "data_center": dc, "host_id": self.host_id, "rack": rack, "release_version": "4.1.0",
            "schema_version": self.schema_version, "tokens": ["0"]})

    def _schema_changed(self) -> None:
        self.schema_version = uuid.uuid4()
        self.tables[("system", "local")].upsert({"key": "local",
                                                 "schema_version": self.schema_version})

    # -- parsing -------------------------------------------------------------------------------
    def parse(self, cql: str, current_ks: str | None) -> Statement:
        p = Parser(cql)
        if p.accept("use"):
            ks = p.ident()
            p.end()
            return Statement("use", cql, keyspace=ks)
        if p.accept("create"):
            what = p.expect("keyspace", "table")
            ine = False
            if p.accept("if"):
                p.expect("not")
                p.expect("exists")
                ine = True
            if what == "keyspace":
                ks = p.ident()
                p.expect("with")
                p.expect("replication")
                start = p.i
                p.skip_balanced_rest()
                return Statement("create_keyspace", cql, keyspace=ks, if_not_exists=ine,
                                 columns=[t.text for t in p.toks[start:]])
            return self._parse_create_table(p, cql, current_ks, ine)
        if p.accept("insert"):
            p.expect("into")
            st = Statement("insert", cql)
            st.keyspace, st.table = p.qname()
            table = self._table(st, current_ks)
            p.expect("(")
            st.columns = [p.ident()]
            while p.accept(","):
                st.columns.append(p.ident())
            p.expect(")")
            p.expect("values")
            p.expect("(")
            st.terms = [p.term()]
            while p.accept(","):
                st.terms.append(p.term())
            p.expect(")")
            p.end()
            if len(st.terms) != len(st.columns):
                raise _invalid("Unmatched column names/values")
            for col, term in zip(st.columns, st.terms, strict=True):
                self._column(table, col)
                if term.marker is not None:
                    st.bind.append((col, table.columns[col]))
            missing = [c for c in table.partition_key + table.clustering if c not in st.columns]
            if missing:
                raise _invalid(f"Some partition key parts are missing: {', '.join(missing)}"
                               if set(missing) & set(table.partition_key)
                               else f"Some clustering keys are missing: {', '.join(missing)}")
            return st
        if p.accept("select"):
            return self._parse_select(p, cql, current_ks)
        raise CqlError(SYNTAX_ERROR, f"statement not supported by the test server: {cql[:80]!r}")

    def _parse_create_table(self, p: Parser, cql: str, current_ks: str | None,
                            ine: bool) -> Statement:
        ks, name = p.qname()
        ks = ks or current_ks
        if ks is None:
            raise _invalid("No keyspace has been specified.")
        p.expect("(")
        cols: dict[str, CqlType] = {}
        pk: list[str] = []
        ck: list[str] = []
        while True:
            if p.accept("primary"):
                p.expect("key")
                p.expect("(")
                if p.accept("("):
                    pk = [p.ident()]
                    while p.accept(","):
                        pk.append(p.ident())
                    p.expect(")")
                else:
                    pk = [p.ident()]
                while p.accept(","):
                    ck.append(p.ident())
                p.expect(")")
            else:
                col = p.ident()
                cols[col] = p.cql_type()
                if p.accept("primary"):
                    p.expect("key")
                    pk = [col]
            if not p.accept(","):
                break
        p.expect(")")
        desc: dict[str, bool] = {c: False for c in ck}
        if p.accept("with"):
            while True:
                if p.accept("clustering"):
                    p.expect("order")
                    p.expect("by")
                    p.expect("(")
                    while True:
                        c = p.ident()
                        if c not in ck:
                            raise _invalid(f"Only clustering key columns can be defined in "
                                           f"CLUSTERING ORDER directive: {c}")
                        desc[c] = p.expect("asc", "desc") == "desc"
                        if not p.accept(","):
                            break
                    p.expect(")")
                else:  # other table options (compaction, ...): accepted, not modelled
                    p.ident()
                    p.expect("=")
                    while p.i < len(p.toks) and not p.peek("and"):
                        p.i += 1
                if not p.accept("and"):
                    break
        p.end()
        if not pk:
            raise _invalid("No PRIMARY KEY specifed for table (exactly one required)")
        for c in pk + ck:
            if c not in cols:
                raise _invalid(f"Unknown definition {c} referenced in PRIMARY KEY")
        order = pk + ck + sorted(c for c in cols if c not in pk and c not in ck)
        table = Table(ks, name, {c: cols[c] for c in order}, pk, ck, desc)
        return Statement("create_table", cql, keyspace=ks, table=name, if_not_exists=ine,
                         table_def=table)

    def _parse_select(self, p: Parser, cql: str, current_ks: str | None) -> Statement:
        st = Statement("select", cql)
        st.distinct = p.accept("distinct")
        if p.accept("*"):
            st.columns = ["*"]
        else:
            st.columns = [p.ident()]
            while p.accept(","):
                st.columns.append(p.ident())
        p.expect("from")
        st.keyspace, st.table = p.qname()
        table = self._table(st, current_ks)
        if st.columns == ["*"]:
            st.columns = list(table.columns)
        for c in st.columns:
            self._column(table, c)
        if p.accept("where"):
            while True:
                col = p.ident()
                op = p.expect("=", "<", ">", "<=", ">=")
                st.where.append(Condition(col, op, p.term()))
                self._column(table, col)
                if st.where[-1].term.marker is not None:
                    st.bind.append((col, table.columns[col]))
                if not p.accept("and"):
                    break
        if p.accept("order"):
            p.expect("by")
            col = p.ident()
            direction = p.expect("asc", "desc") if p.peek("asc", "desc") else "asc"
            if not table.clustering or col != table.clustering[0]:
                raise _invalid(f"Order by is currently only supported on the clustered columns "
                               f"of the PRIMARY KEY, got {col}")
            st.order_desc = (direction == "desc") != table.descending[col]
        if p.accept("limit"):
            st.limit = p.term()
            if st.limit.marker is not None:
                st.bind.append(("[limit]", INT))
        p.end()
        self._check_select(table, st)
        return st

    def _check_select(self, table: Table, st: Statement) -> None:
        pk_eq = {c.column for c in st.where if c.column in table.partition_key and c.op == "="}
        for c in st.where:
            if c.column in table.partition_key and c.op != "=":
                raise _invalid(f"Only EQ and IN relation are supported on the partition key "
                               f"(got {c.column} {c.op})")
            if c.column not in table.partition_key and c.column not in table.clustering:
                raise _invalid("Cannot execute this query as it might involve data filtering "
                               "and thus may have unpredictable performance. If you want to "
                               "execute this query despite the performance unpredictability, "
                               "use ALLOW FILTERING")
            if c.column in table.clustering and c.column != table.clustering[0]:
                raise _invalid(f"test server: restrictions only on the first clustering column, "
                               f"got {c.column}")
        if st.where and pk_eq != set(table.partition_key):
            raise _invalid("Cannot execute this query as it might involve data filtering: "
                           "partition key parts are not all restricted by =")
        if st.order_desc is not None and not st.where:
            raise _invalid("ORDER BY is only supported when the partition key is restricted by "
                           "an EQ or an IN.")
        if st.distinct:
            if st.where or any(c not in table.partition_key for c in st.columns):
                raise _invalid("SELECT DISTINCT queries must only request partition key columns")

    def _table(self, st: Statement, current_ks: str | None) -> Table:
        ks = st.keyspace or current_ks
        if ks is None:
            raise _invalid("No keyspace has been specified. USE a keyspace, or explicitly "
                           "specify keyspace.tablename")
        st.keyspace = ks
        with self.lock:
            if ks not in self.keyspaces:
                raise _invalid(f"Keyspace {ks} does not exist")
            table = self.tables.get((ks, st.table or ""))
        if table is None:
            raise _invalid(f"unconfigured table {st.table}")
        st.table_def = table
        return table

    @staticmethod
    def _column(table: Table, col: str) -> None:
        if col not in table.columns:
            raise _invalid(f"Undefined column name {col} in table {table.keyspace}.{table.name}")

    # -- execution -----------------------------------------------------------------------------
    def execute(self, st: Statement, values: list[Any]) -> tuple[str, Any]:
        """Run `st` with decoded bound `values`; returns (result kind, payload)."""
        if len(values) != len(st.bind):
            raise _invalid(f"There were {len(st.bind)} markers(?) in CQL but {len(values)} "
                           "bound variables")
        if any(v is UNSET for v in values):
            raise _invalid("unset values are not supported by the test server")
        val = lambda t: t.literal if t.marker is None else values[t.marker]  # noqa: E731
        with self.lock:
            if st.kind == "use":
                if st.keyspace not in self.keyspaces:
                    raise _invalid(f"Keyspace '{st.keyspace}' does not exist")
                return "set_keyspace", st.keyspace
            if st.kind == "create_keyspace":
                if st.keyspace in self.keyspaces:
                    if st.if_not_exists:
                        return "void", None
                    raise CqlError(ALREADY_EXISTS, f"Keyspace {st.keyspace} already exists",
                                   w_string(st.keyspace or "") + w_string(""))
                self.keyspaces[st.keyspace or ""] = " ".join(st.columns)
                self._schema_changed()
                return "schema_change", ("CREATED", "KEYSPACE", st.keyspace, None)
            if st.kind == "create_table":
                t = st.table_def
                assert t is not None
                if t.keyspace not in self.keyspaces:
                    raise _invalid(f"Keyspace {t.keyspace} doesn't exist")
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
                row = {c: val(t) for c, t in zip(st.columns, st.terms, strict=True)}
                for c in table.partition_key + table.clustering:
                    if row[c] is None:
                        raise _invalid(f"Invalid null value in condition for column {c}")
                table.upsert(row)
                return "void", None
            return "rows", self._select(table, st, val)

    def _select(self, table: Table, st: Statement, val: Callable[[Term], Any]) -> list[tuple]:
        limit = None if st.limit is None else val(st.limit)
        if limit is not None and (not isinstance(limit, int) or limit <= 0):
            raise _invalid("LIMIT must be strictly positive")
        if not st.where:  # full scan, partitions in "token" order (not key order, like Murmur3)
            parts = sorted(table.data.items(),
                           key=lambda kv: hashlib.md5(repr(kv[0]).encode()).digest())
            out: list[tuple] = []
            for pk, (keys, rows) in parts:
                if st.distinct:
                    if keys:
                        named = dict(zip(table.partition_key, pk, strict=True))
                        out.append(tuple(named[c] for c in st.columns))
                    continue
                out.extend(tuple(rows[k].get(c) for c in st.columns) for k in keys)
            return out[:limit]
        pk = []
        for c in table.partition_key:
            v = next(val(w.term) for w in st.where if w.column == c)
            if v is None:
                raise _invalid(f"Invalid null value in condition for column {c}")
            pk.append(v)
        keys, rows = table.data.get(tuple(pk), ([], {}))
        lo, hi = 0, len(keys)
        for w in st.where:
            if w.column in table.partition_key:
                continue
            v = val(w.term)
            if v is None:
                raise _invalid(f"Invalid null value in condition for column {w.column}")
            if w.op in (">=", "="):
                lo = max(lo, bisect_left(keys, (v,)))
            if w.op == ">":
                lo = max(lo, bisect_right(keys, (v, ) + (_Top(),) * (len(table.clustering) - 1)))
            if w.op in ("<=", "="):
                hi = min(hi, bisect_right(keys, (v,) + (_Top(),) * (len(table.clustering) - 1)))
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
        return [tuple(rows[k].get(c) for c in st.columns) for k in selected]

    def rows(self, keyspace: str, table: str) -> list[dict[str, Any]]:
        """Every row of a table (for assertions)."""
        with self.lock:
            t = self.tables[(keyspace, table)]
            return [dict(rows[k]) for keys, rows in t.data.values() for k in keys]


class _Top:
    """Sorts after everything: the upper bound of a clustering prefix."""

    def __lt__(self, other: object) -> bool:
        return False

    def __gt__(self, other: object) -> bool:
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Top)

    __hash__ = object.__hash__


# -- requests and faults -------------------------------------------------------------------------
@dataclass
class Request:
    """One request as the server received it (values decoded with the bound variables' types)."""

    opcode: str
    connection: int
    version: int
    query: str | None = None
    values: list[Any] = field(default_factory=list)
    consistency: str | None = None
    page_size: int | None = None
    paging_state: bytes | None = None
    batch: list[tuple[str, list[Any]]] | None = None
    batch_type: str | None = None
    fault: str | None = None
    error: str | None = None
    rows_returned: int | None = None
    has_more_pages: bool | None = None


def _is_user_statement(text: str) -> bool:
    return not re.search(r"\bsystem(_\w+)?\s*\.", text, re.I)


@dataclass
class _Fault:
    kind: str
    remaining: int
    match: Callable[[str], bool]


@dataclass
class _Conn:
    sock: socket.socket
    cid: int
    ready: bool = False
    authenticated: bool = False
    keyspace: str | None = None
    write_lock: threading.Lock = field(default_factory=threading.Lock)


class CqlTestServer:
    """A one-node "cluster" on 127.0.0.1 speaking CQL native protocol v4 (see module docstring)."""

    def __init__(self, port: int = 0, *, users: dict[str, str] | None = None,
                 cluster_name: str = "accessd-test", datacenter: str = "dc1",
                 rack: str = "rack1") -> None:
        self.host = "127.0.0.1"
        self.port = port
        self.users = users
        self.engine = Engine(cluster_name, datacenter, rack, self.host)
        self.requests: list[Request] = []
        self.protocol_attempts: list[int] = []   # first frame's version, per connection
        self._cond = threading.Condition()
        self._faults: list[_Fault] = []
        self._prepared: dict[bytes, Statement] = {}
        self._listener: socket.socket | None = None
        self._conns: dict[int, _Conn] = {}
        self._threads: list[threading.Thread] = []
        self._next_cid = 0
        self._state_lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> CqlTestServer:
        """Listen on `self.port` (a free one the first time if 0). Restarting keeps the data."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        with self._state_lock:
            self._listener = listener
        t = threading.Thread(target=self._accept_loop, args=(listener,), daemon=True,
                             name=f"cql-accept-{self.port}")
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> None:
        """Go down: close the listening socket and every connection; forget prepared statements."""
        with self._state_lock:
            listener, self._listener = self._listener, None
            conns = list(self._conns.values())
            self._conns.clear()
        if listener is not None:
            # shutdown() wakes the thread blocked in accept() (close() alone may not on Linux).
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        for c in conns:
            _close(c.sock)
        for t in self._threads:
            t.join(5)
        self._threads = [t for t in self._threads if t.is_alive()]
        with self._cond:
            self._prepared.clear()

    @property
    def running(self) -> bool:
        return self._listener is not None

    @property
    def connection_count(self) -> int:
        with self._state_lock:
            return len(self._conns)

    def __enter__(self) -> CqlTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test hooks ----------------------------------------------------------------------------
    def fail_next(self, n: int, fault: str, match: str | Callable[[str], bool] | None = None) -> None:
        """Make the next `n` QUERY/EXECUTE/BATCH/PREPARE requests matching `match` fail with `fault`.

        `match`: a substring of the statement text, a predicate, or None for every statement that
        is not on a system keyspace (so the driver's own control-connection queries go on).
        """
        if fault not in FAULTS:
            raise ValueError(f"fault must be one of {FAULTS}")
        if match is None:
            pred = _is_user_statement
        elif isinstance(match, str):
            pred = lambda text, s=match: s in text  # noqa: E731
        else:
            pred = match
        with self._cond:
            self._faults.append(_Fault(fault, n, pred))

    def clear_faults(self) -> None:
        with self._cond:
            self._faults.clear()

    def user_requests(self, opcode: str | None = None) -> list[Request]:
        """Recorded requests on non-system statements (optionally of one opcode)."""
        with self._cond:
            return [r for r in self.requests
                    if (opcode is None or r.opcode == opcode)
                    and ((r.query is not None and _is_user_statement(r.query))
                         or (r.batch is not None))]

    def clear_requests(self) -> None:
        with self._cond:
            self.requests.clear()

    def wait_for_request(self, pred: Callable[[Request], bool], timeout: float = 10.0) -> Request:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for r in self.requests:
                    if pred(r):
                        return r
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no matching request within {timeout}s")
                self._cond.wait(left)

    # -- connections ---------------------------------------------------------------------------
    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._state_lock:
                if self._listener is not listener:
                    _close(sock)
                    return
                self._next_cid += 1
                conn = _Conn(sock, self._next_cid)
                self._conns[conn.cid] = conn
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True,
                                 name=f"cql-conn-{conn.cid}")
            t.start()
            self._threads.append(t)

    def _serve(self, conn: _Conn) -> None:
        first = True
        try:
            while True:
                header = _recv_exact(conn.sock, 9)
                if header is None:
                    return
                version = header[0] & 0x7F
                flags, stream, opcode, length = struct.unpack(">BhBi", header[1:])
                if length < 0 or length > 256 * 1024 * 1024:
                    return
                body = _recv_exact(conn.sock, length) if length else b""
                if body is None:
                    return
                if first:  # the version a connection opens with: the driver's negotiation
                    first = False
                    with self._cond:
                        self.protocol_attempts.append(version)
                        self._cond.notify_all()
                if version != 4:
                    self._send(conn, stream, ERROR, w_int(PROTOCOL_ERROR) + w_string(
                        f"Invalid or unsupported protocol version ({version}); "
                        "supported versions are (4/v4)"))
                    continue
                if flags & 0x01:
                    self._send(conn, stream, ERROR, w_int(PROTOCOL_ERROR)
                               + w_string("compression was not negotiated"))
                    continue
                self._handle(conn, stream, opcode, body)
        except OSError:
            return
        finally:
            _close(conn.sock)
            with self._state_lock:
                self._conns.pop(conn.cid, None)

    def _send(self, conn: _Conn, stream: int, opcode: int, body: bytes) -> None:
        frame = struct.pack(">BBhBi", 0x84, 0, stream, opcode, len(body)) + body
        with conn.write_lock:
            conn.sock.sendall(frame)

    def _record(self, req: Request) -> None:
        with self._cond:
            self.requests.append(req)
            self._cond.notify_all()

    def _take_fault(self, text: str) -> str | None:
        with self._cond:
            for f in self._faults:
                if f.remaining > 0 and f.match(text):
                    f.remaining -= 1
                    return f.kind
        return None

    def _handle(self, conn: _Conn, stream: int, opcode: int, body: bytes) -> None:
        req = Request(OPCODE_NAMES.get(opcode, hex(opcode)), conn.cid, 4)
        try:
            reply = self._dispatch(conn, opcode, Reader(body), req)
        except CqlError as err:
            req.error = f"{err.code:#06x} {err.message}"
            self._record(req)
            self._send(conn, stream, ERROR, w_int(err.code) + w_string(err.message) + err.extra)
            return
        self._record(req)
        if reply is not NO_REPLY:
            self._send(conn, stream, *reply)

    def _dispatch(self, conn: _Conn, opcode: int, r: Reader, req: Request) -> tuple[int, bytes]:
        if opcode == OPTIONS:
            opts = {"CQL_VERSION": ["3.4.5"], "COMPRESSION": [], "PROTOCOL_VERSIONS": ["4/v4"]}
            return SUPPORTED, w_short(len(opts)) + b"".join(
                w_string(k) + w_short(len(v)) + b"".join(w_string(x) for x in v)
                for k, v in opts.items())
        if opcode == STARTUP:
            options = r.string_map()
            req.query = None
            req.values = [options]
            if "CQL_VERSION" not in options:
                raise CqlError(PROTOCOL_ERROR, "CQL_VERSION is mandatory")
            if options.get("COMPRESSION"):
                raise CqlError(PROTOCOL_ERROR, f"Unknown compression {options['COMPRESSION']}")
            conn.ready = True
            if self.users is None:
                conn.authenticated = True
                return READY, b""
            return AUTHENTICATE, w_string("org.apache.cassandra.auth.PasswordAuthenticator")
        if opcode == AUTH_RESPONSE:
            token = r.bytes() or b""
            parts = token.split(b"\x00")
            user = parts[1].decode(errors="replace") if len(parts) == 3 else ""
            req.values = [user]
            if (not conn.ready or len(parts) != 3 or self.users is None
                    or self.users.get(user) != parts[2].decode(errors="replace")):
                raise CqlError(BAD_CREDENTIALS, "Provided username and/or password are incorrect")
            conn.authenticated = True
            return AUTH_SUCCESS, w_bytes(None)
        if not (conn.ready and conn.authenticated):
            raise CqlError(PROTOCOL_ERROR, f"Unexpected message {req.opcode}, expecting STARTUP "
                                           "or OPTIONS" if not conn.ready else
                           "Unexpected message before authentication")
        if opcode == REGISTER:
            req.values = [r.string() for _ in range(r.short())]
            return READY, b""
        if opcode == PREPARE:
            text = r.long_string()
            req.query = text
            fault = self._fault(req, text)
            if fault is not None:
                return fault
            st = self.engine.parse(text, conn.keyspace)
            qid = hashlib.md5(((conn.keyspace or "") + text).encode()).digest()
            with self._cond:
                self._prepared[qid] = st
            return RESULT, w_int(KIND_PREPARED) + w_short_bytes(qid) + self._prepared_meta(st) \
                + self._result_meta(st, no_metadata=st.kind != "select")
        if opcode == QUERY:
            text = r.long_string()
            req.query = text
            st = self.engine.parse(text, conn.keyspace)
            params = self._query_params(r, req, st)
            fault = self._fault(req, text)
            if fault is not None:
                return fault
            return self._run(conn, st, params, req)
        if opcode == EXECUTE:
            qid = r.short_bytes()
            with self._cond:
                st = self._prepared.get(qid)
            if st is None:
                raise CqlError(UNPREPARED, f"Prepared query with ID {qid.hex()} not found",
                               w_short_bytes(qid))
            req.query = st.text
            params = self._query_params(r, req, st)
            fault = self._fault(req, st.text)
            if fault is not None:
                return fault
            return self._run(conn, st, params, req)
        if opcode == BATCH:
            return self._batch(conn, r, req)
        raise CqlError(PROTOCOL_ERROR, f"unsupported opcode {opcode:#04x}")

    def _fault(self, req: Request, text: str) -> tuple[int, bytes] | None:
        """None, NO_REPLY for "no_answer", or raises the injected error, if a fault applies."""
        kind = self._take_fault(text)
        if kind is None:
            return None
        req.fault = kind
        cl = {v: k for k, v in CONSISTENCY_NAMES.items()}.get(req.consistency or "ONE", 1)
        if kind == "no_answer":
            return NO_REPLY
        if kind == "read_timeout":  # received 0 of 1: the driver's default policy won't retry
            raise CqlError(READ_TIMEOUT, "Operation timed out - received only 0 responses.",
                           w_short(cl) + w_int(0) + w_int(1) + b"\x00")
        if kind == "write_timeout":
            raise CqlError(WRITE_TIMEOUT, "Operation timed out - received only 0 responses.",
                           w_short(cl) + w_int(0) + w_int(1) + w_string("SIMPLE"))
        if kind == "unavailable":
            raise CqlError(UNAVAILABLE, "Cannot achieve consistency level",
                           w_short(cl) + w_int(1) + w_int(0))
        if kind == "overloaded":
            raise CqlError(OVERLOADED, "Server is in overloaded state.")
        raise CqlError(SERVER_ERROR, "injected server error")

    def _query_params(self, r: Reader, req: Request, st: Statement | None) -> dict[str, Any]:
        req.consistency = CONSISTENCY_NAMES.get(r.short(), "?")
        flags = r.byte()
        raw: list[Any] = []
        if flags & 0x01:
            n = r.short()
            for _ in range(n):
                if flags & 0x40:
                    r.string()
                raw.append(r.value())
        page_size = r.int() if flags & 0x04 else None
        paging_state = r.bytes() if flags & 0x08 else None
        if flags & 0x10:
            r.short()
        if flags & 0x20:
            r.long()
        req.page_size, req.paging_state = page_size, paging_state
        values = self._decode_values(st, raw) if st is not None else raw
        req.values = values
        return {"values": values, "page_size": page_size, "paging_state": paging_state,
                "skip_metadata": bool(flags & 0x02)}

    @staticmethod
    def _decode_values(st: Statement, raw: list[Any]) -> list[Any]:
        if len(raw) != len(st.bind):
            raise _invalid(f"There were {len(st.bind)} markers(?) in CQL but {len(raw)} "
                           "bound variables")
        return [v if v is None or v is UNSET else t.decode(v)  # type: ignore[arg-type]
                for v, (_, t) in zip(raw, st.bind, strict=True)]

    def _run(self, conn: _Conn, st: Statement, params: dict[str, Any],
             req: Request) -> tuple[int, bytes]:
        kind, payload = self.engine.execute(st, params["values"])
        if kind == "void":
            return RESULT, w_int(KIND_VOID)
        if kind == "set_keyspace":
            conn.keyspace = payload
            return RESULT, w_int(KIND_SET_KEYSPACE) + w_string(payload)
        if kind == "schema_change":
            change, target, ks, table = payload
            body = w_string(change) + w_string(target) + w_string(ks)
            if table is not None:
                body += w_string(table)
            return RESULT, w_int(KIND_SCHEMA_CHANGE) + body
        rows: list[tuple] = payload
        # Paging: the state is the offset of the next row plus a digest of the statement and its
        # values, so a state replayed on another query is refused like Cassandra would.
        digest = hashlib.md5(repr((st.text, params["values"])).encode()).digest()[:8]
        offset = 0
        if params["paging_state"] is not None:
            ps = params["paging_state"]
            if len(ps) != 16 or ps[8:] != digest:
                raise CqlError(PROTOCOL_ERROR, "Invalid value for the paging state")
            offset = struct.unpack(">Q", ps[:8])[0]
        size = params["page_size"]
        end = len(rows) if size is None or size <= 0 else min(len(rows), offset + size)
        page = rows[offset:end]
        more = end < len(rows)
        req.rows_returned, req.has_more_pages = len(page), more
        state = struct.pack(">Q", end) + digest if more else None
        types = [st.table_def.columns[c] for c in st.columns]  # type: ignore[union-attr]
        body = w_int(KIND_ROWS) + self._result_meta(st, no_metadata=params["skip_metadata"],
                                                    paging_state=state)
        body += w_int(len(page))
        for row in page:
            body += b"".join(w_bytes(None if v is None else t.encode(v))
                             for v, t in zip(row, types, strict=True))
        return RESULT, body

    def _prepared_meta(self, st: Statement) -> bytes:
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

    @staticmethod
    def _result_meta(st: Statement, *, no_metadata: bool,
                     paging_state: bytes | None = None) -> bytes:
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

    def _batch(self, conn: _Conn, r: Reader, req: Request) -> tuple[int, bytes]:
        req.batch_type = {0: "LOGGED", 1: "UNLOGGED", 2: "COUNTER"}.get(r.byte(), "?")
        items: list[tuple[Statement, list[Any]]] = []
        req.batch = []
        for _ in range(r.short()):
            kind = r.byte()
            if kind == 0:
                st = self.engine.parse(r.long_string(), conn.keyspace)
            else:
                qid = r.short_bytes()
                with self._cond:
                    found = self._prepared.get(qid)
                if found is None:
                    raise CqlError(UNPREPARED, f"Prepared query with ID {qid.hex()} not found",
                                   w_short_bytes(qid))
                st = found
            raw = [r.value() for _ in range(r.short())]
            values = self._decode_values(st, raw)
            if st.kind != "insert":
                raise _invalid("Invalid statement in batch: only UPDATE, INSERT and DELETE "
                               "statements are allowed.")
            items.append((st, values))
            req.batch.append((st.text, values))
        req.consistency = CONSISTENCY_NAMES.get(r.short(), "?")
        flags = r.byte()
        if flags & 0x10:
            r.short()
        if flags & 0x20:
            r.long()
        fault = self._fault(req, "\n".join(t for t, _ in req.batch))
        if fault is not None:
            return fault
        for st, values in items:
            self.engine.execute(st, values)
        return RESULT, w_int(KIND_VOID)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
