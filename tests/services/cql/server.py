"""`CqlTestServer`: a small Cassandra cluster on loopback addresses speaking the native protocol.

Each node listens on its own address (127.0.0.1, 127.0.0.2, ...) and the same port, like the
nodes of a real cluster, and appears in the others' `system.peers`/`peers_v2`. Connections are
served as a real node serves them:

- protocol v5 (checksummed segments after READY/AUTHENTICATE) and v4; other versions get the
  "Invalid or unsupported protocol version" error the driver downgrades on;
- requests on one connection are executed concurrently and answered when done, so responses
  can come back out of order (the driver matches them by stream id);
- writes carry the client's timestamp (one for a whole batch), else the coordinator's clock;
- every read and write is checked against the replicas of its partition at the request's
  consistency level: Unavailable, or WriteTimeout/ReadTimeout with the coordinator's counts after
  `replica_timeout` seconds when replicas are up but unresponsive;
- node state changes are pushed as STATUS_CHANGE events to connections that registered for them.
"""

from __future__ import annotations

import hashlib
import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from tests.services.cql import protocol as proto
from tests.services.cql.coordinator import FAULTS, NO_REPLY, Coordinator, _Fault
from tests.services.cql.engine import Engine, Table
from tests.services.cql.parser import Statement
from tests.services.cql.protocol import Request
from tests.services.cql.replicas import MAX_HINT_WINDOW, ReplicaData
from tests.services.cql.statements import StatementParser
from tests.services.cql.topology import (
    DOWN,
    UNRESPONSIVE,
    UP,
    Node,
    system_tables,
)
from tests.services.cql.transport import Conn, close_socket, read_frames
from tests.services.cql.wire import (
    AUTH_RESPONSE,
    AUTH_SUCCESS,
    AUTHENTICATE,
    BAD_CREDENTIALS,
    BATCH,
    ERROR,
    EVENT,
    EXECUTE,
    OPCODE_NAMES,
    OPTIONS,
    PREPARE,
    PROTOCOL_ERROR,
    QUERY,
    READY,
    REGISTER,
    RESULT,
    STARTUP,
    SUPPORTED,
    CqlError,
    Reader,
    encode_segments,
    frame,
    make_type,
    w_bytes,
    w_inet,
    w_int,
    w_string,
)

_INLINE = (OPTIONS, STARTUP, AUTH_RESPONSE, REGISTER)  # handshake: answered in order


def _is_user_statement(text: str) -> bool:
    return not re.search(r"\bsystem(_\w+)?\s*\.", text, re.I)


class CqlTestServer(Coordinator):
    """A cluster of `nodes` (a count, or each node's datacenter name) on 127.0.0.1, 127.0.0.2, …

    `host`/`port` name the first node. Each node holds its own copy of the data: a replica that
    was down misses writes until its hints are replayed (when it is back, unless it was down
    longer than `max_hint_window` seconds) or a read at a level above ONE repairs it
    (`tests.services.cql.replicas`; `replica_rows`, `hints`, `repairs` for tests).
    """

    def __init__(self, port: int = 0, *, nodes: int | list[str] = 1,
                 users: dict[str, str] | None = None, cluster_name: str = "accessd-test",
                 datacenter: str = "dc1", rack: str = "rack1",
                 protocol_versions: tuple[int, ...] = (4, 5),
                 replica_timeout: float = 0.2, down_detection: float = 0.3,
                 max_hint_window: float = MAX_HINT_WINDOW) -> None:
        dcs = [datacenter] * nodes if isinstance(nodes, int) else list(nodes)
        self.nodes = [Node(i, f"127.0.0.{i + 1}", dc, rack) for i, dc in enumerate(dcs)]
        self.host = self.nodes[0].address
        self.port = port
        self.users = users
        self.cluster_name = cluster_name
        self.protocol_versions = tuple(sorted(protocol_versions))
        self.replica_timeout = replica_timeout
        self.down_detection = down_detection
        self.engine = Engine()
        self.replicas = ReplicaData(max_hint_window=max_hint_window)
        self.requests: list[Request] = []
        self.protocol_attempts: list[int] = []   # first frame's version, per connection
        self._answers = 0
        self.events: list[tuple[int, str, str, str]] = []  # (to node, type, change, address)
        self._cond = threading.Condition()
        self._faults: list[_Fault] = []
        self._prepared: dict[int, dict[bytes, Statement]] = {n.index: {} for n in self.nodes}
        self._listeners: dict[int, socket.socket] = {}
        self._conns: dict[int, Conn] = {}
        self._threads: list[threading.Thread] = []
        self._next_cid = 0
        self._state_lock = threading.Lock()
        self._schema_version = hashlib.md5(b"0").hexdigest()
        self.engine.schema_listeners.append(self._new_schema_version)

    def _new_schema_version(self) -> None:
        self._schema_version = hashlib.md5(self._schema_version.encode()).hexdigest()

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> CqlTestServer:
        """Every node up on `self.port` (the first time, if 0, a port free on every node's
        address). Restarting keeps the data; prepared statements were forgotten by `stop()`."""
        fixed = bool(self.port)
        for _ in range(50):
            try:
                for node in self.nodes:
                    self._listen(node)
                    node.state = UP
                self._deliver_hints()
                return self
            except OSError:
                self._close_listeners()
                if fixed:
                    raise
                self.port = 0
        raise RuntimeError("no port free on every node address")

    def _listen(self, node: Node) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((node.address, self.port))
        except OSError:
            listener.close()
            raise
        listener.listen(64)
        if not self.port:
            self.port = listener.getsockname()[1]
        with self._state_lock:
            self._listeners[node.index] = listener
        t = threading.Thread(target=self._accept_loop, args=(node, listener), daemon=True,
                             name=f"cql-accept-{node.address}")
        t.start()
        self._threads.append(t)

    def _close_listeners(self, only: Node | None = None) -> None:
        with self._state_lock:
            gone = [(i, lst) for i, lst in self._listeners.items()
                    if only is None or i == only.index]
            for i, _ in gone:
                del self._listeners[i]
            conns = [c for c in self._conns.values() if only is None or c.node is only]
            for c in conns:
                self._conns.pop(c.cid, None)
        for _, listener in gone:
            try:  # shutdown() wakes the thread blocked in accept()
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        for c in conns:
            close_socket(c.sock)

    def stop(self) -> None:
        """Every node down: listeners and connections closed, prepared statements forgotten."""
        for node in self.nodes:
            node.state = DOWN
        self._close_listeners()
        for t in self._threads:
            t.join(5)
        self._threads = [t for t in self._threads if t.is_alive()]
        with self._cond:
            for prepared in self._prepared.values():
                prepared.clear()

    def stop_node(self, index: int) -> None:
        """Node `index` goes down (its process ends): its connections close at once; the other
        nodes tell their clients after `down_detection` seconds, as gossip's failure detector
        does (seconds on a real cluster). A driver that still sees an open connection to the
        node ignores a DOWN event, so an instant event would be dropped half the time."""
        node = self.nodes[index]
        node.state = DOWN
        self.replicas.down_since[index] = time.monotonic()
        self._close_listeners(node)
        with self._cond:
            self._prepared[index].clear()
        timer = threading.Timer(self.down_detection, self._push_down_if_still_down, (node,))
        timer.daemon = True
        timer.start()

    def _push_down_if_still_down(self, node: Node) -> None:
        if node.state == DOWN:
            self._push_status("DOWN", node)

    def start_node(self, index: int) -> None:
        node = self.nodes[index]
        node.state = UP
        self.replicas.down_since.pop(index, None)
        self._listen(node)
        self._deliver_hints()
        self._push_status("UP", node)

    def pause_node(self, index: int) -> None:
        """Node `index` stays up for gossip but answers nothing (a GC pause, a full disk): as a
        replica it makes coordinators time out, as a coordinator it leaves requests unanswered."""
        self.nodes[index].state = UNRESPONSIVE

    def resume_node(self, index: int) -> None:
        self.nodes[index].state = UP
        self._deliver_hints()

    def _deliver_hints(self) -> int:
        """Coordinators replay their hints to replicas that are back (gossip saw them up)."""
        with self.engine.lock:
            return self.replicas.deliver_hints(self.nodes, self.engine.tables)

    def put_row(self, keyspace: str, table: str, row: dict[str, Any], timestamp: int = 0) -> None:
        """Write `row` straight into every node's copy (a write the driver never made)."""
        with self.engine.lock:
            t = self.engine.tables[(keyspace, table)]
            t.upsert(row, timestamp)
            for node in self.nodes:
                self.replicas.copy(node.index, t).upsert(row, timestamp)

    def truncate(self, keyspace: str, table: str) -> None:
        """Empty a table on every node (and in the engine's record of all writes)."""
        with self.engine.lock:
            self.engine.tables[(keyspace, table)].data.clear()
            for tables in self.replicas.copies.values():
                if (keyspace, table) in tables:
                    tables[(keyspace, table)].data.clear()

    def replica_rows(self, node: int, keyspace: str, table: str) -> list[dict[str, Any]]:
        """The rows node `node` holds of a table (its own copy), for assertions."""
        with self.engine.lock:
            return self.replicas.rows(node, keyspace, table)

    def _push_status(self, change: str, about: Node) -> None:
        self._push("STATUS_CHANGE", change, about.address,
                   w_inet(about.address, self.port), skip=about)

    def _push_schema_change(self, change: str, target: str, keyspace: str,
                            table: str | None) -> None:
        """Every node tells its registered clients about a schema change (as gossip would)."""
        self._push("SCHEMA_CHANGE", change, keyspace if table is None else f"{keyspace}.{table}",
                   proto.schema_change_body(change, target, keyspace, table)[
                       len(w_string(change)):])

    def _push(self, kind: str, change: str, about: str, rest: bytes,
              skip: Node | None = None) -> None:
        body = w_string(kind) + w_string(change) + rest
        with self._state_lock:
            targets = [c for c in self._conns.values()
                       if c.node is not skip and c.node.state != DOWN and kind in c.events]
        for c in targets:
            with self._cond:
                self.events.append((c.node.index, kind, change, about))
            try:
                self._send(c, -1, EVENT, body)
            except OSError:
                pass

    @property
    def running(self) -> bool:
        return bool(self._listeners)

    @property
    def connection_count(self) -> int:
        with self._state_lock:
            return len(self._conns)

    def connections_to(self, index: int) -> int:
        with self._state_lock:
            return sum(1 for c in self._conns.values() if c.node.index == index)

    def __enter__(self) -> CqlTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test hooks ----------------------------------------------------------------------------
    def fail_next(self, n: int, fault: str, match: str | Callable[[str], bool] | None = None,
                  seconds: float = 0.0) -> None:
        """Make the next `n` QUERY/EXECUTE/BATCH/PREPARE requests matching `match` fail with
        `fault` ("delay": answered normally after `seconds`).

        `match`: a substring of the statement text (a batch's texts joined by newlines), a
        predicate, or None for every statement not on a system keyspace.
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
            self._faults.append(_Fault(fault, n, pred, seconds))

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

    def cell_timestamp(self, keyspace: str, table: str, key: dict[str, Any], column: str) -> int:
        """The write timestamp of one stored cell (for assertions)."""
        t = self.engine.tables[(keyspace, table)]
        return t.timestamp(tuple(key[c] for c in t.partition_key),  # type: ignore[return-value]
                           tuple(key[c] for c in t.clustering), column)

    # -- schema as each node sees it -----------------------------------------------------------
    def _system(self, node: Node) -> dict[tuple[str, str], Table]:
        import uuid

        version = uuid.UUID(self._schema_version)
        tables = {("system", k): v for k, v in system_tables(
            node, self.nodes, self.cluster_name, self.port, version,
            str(self.protocol_versions[-1])).items()}
        t = make_type
        keyspaces = Table("system_schema", "keyspaces", {
            "keyspace_name": t("text"), "durable_writes": t("boolean"),
            "replication": t("map", (t("text"), t("text")))}, ["keyspace_name"], [], {})
        with self.engine.lock:
            for name, replication in self.engine.keyspaces.items():
                keyspaces.upsert({"keyspace_name": name, "durable_writes": True,
                                  "replication": dict(replication)})
        tables[("system_schema", "keyspaces")] = keyspaces
        return tables

    def _parser(self, node: Node) -> StatementParser:
        system: dict[tuple[str, str], Table] | None = None

        def lookup(ks: str, name: str) -> Table | None:
            nonlocal system
            if ks in ("system", "system_schema"):
                system = system or self._system(node)
                return system.get((ks, name))
            with self.engine.lock:
                return self.engine.tables.get((ks, name))

        def exists(ks: str) -> bool:
            return ks in ("system", "system_schema") or ks in self.engine.keyspaces

        return StatementParser(lookup, exists)

    # -- connections ---------------------------------------------------------------------------
    def _accept_loop(self, node: Node, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._state_lock:
                if self._listeners.get(node.index) is not listener:
                    close_socket(sock)
                    return
                self._next_cid += 1
                conn = Conn(sock, self._next_cid, node)
                self._conns[conn.cid] = conn
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True,
                                 name=f"cql-conn-{conn.cid}")
            t.start()
            self._threads.append(t)

    def _serve(self, conn: Conn) -> None:
        try:
            for header, body in read_frames(conn):
                version = header[0] & 0x7F
                flags, stream, opcode = struct.unpack(">BhB", header[1:5])
                if not conn.version:  # the version a connection opens with: the negotiation
                    with self._cond:
                        self.protocol_attempts.append(version)
                        self._cond.notify_all()
                    if version in self.protocol_versions:
                        conn.version = version
                if version not in self.protocol_versions or version != conn.version:
                    supported = ", ".join(f"{v}/v{v}" for v in self.protocol_versions)
                    self._send_raw(conn, frame(4, stream, ERROR, w_int(PROTOCOL_ERROR) + w_string(
                        f"Invalid or unsupported protocol version ({version}); supported "
                        f"versions are ({supported})")))
                    continue
                if flags & 0x01:
                    self._send(conn, stream, ERROR, w_int(PROTOCOL_ERROR)
                               + w_string("compression was not negotiated"))
                    continue
                if opcode in _INLINE:
                    self._handle(conn, stream, opcode, body)
                else:  # executed concurrently: answers leave in the order they are done
                    threading.Thread(target=self._handle, args=(conn, stream, opcode, body),
                                     daemon=True).start()
        except (OSError, CqlError):
            return
        finally:
            close_socket(conn.sock)
            with self._state_lock:
                self._conns.pop(conn.cid, None)

    def _send_raw(self, conn: Conn, data: bytes) -> None:
        with conn.write_lock:
            conn.sock.sendall(encode_segments(data) if conn.segments else data)

    def _send(self, conn: Conn, stream: int, opcode: int, body: bytes,
              req: Request | None = None) -> None:
        with conn.write_lock:
            data = frame(conn.version or 4, stream, opcode, body)
            if req is not None:  # numbered before the client can see the answer
                with self._cond:
                    self._answers += 1
                    req.answered = self._answers
            conn.sock.sendall(encode_segments(data) if conn.segments else data)

    def _record(self, req: Request) -> None:
        with self._cond:
            self.requests.append(req)
            self._cond.notify_all()

    def _handle(self, conn: Conn, stream: int, opcode: int, body: bytes) -> None:
        req = Request(OPCODE_NAMES.get(opcode, hex(opcode)), conn.cid, conn.version,
                      node=conn.node.index, stream=stream)
        try:
            if conn.node.state == UNRESPONSIVE and opcode not in _INLINE:
                req.fault = "unresponsive node"
                reply = NO_REPLY
            else:
                reply = self._dispatch(conn, opcode, Reader(body), req)
        except CqlError as err:
            req.error = f"{err.code:#06x} {err.message}"
            self._record(req)
            try:
                self._send(conn, stream, ERROR, w_int(err.code) + w_string(err.message)
                           + err.extra)
            except OSError:
                pass
            return
        self._record(req)
        if reply is not NO_REPLY:
            try:
                self._send(conn, stream, *reply, req=req)
            except OSError:
                return
            if opcode in (STARTUP, AUTH_RESPONSE) and conn.version >= 5 and reply[0] in (
                    READY, AUTHENTICATE):
                conn.segments = True  # v5: everything after this answer travels in segments

    def _dispatch(self, conn: Conn, opcode: int, r: Reader, req: Request) -> tuple[int, bytes]:
        if opcode == OPTIONS:
            return SUPPORTED, proto.supported_body(self.protocol_versions)
        if opcode == STARTUP:
            options = r.string_map()
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
            tok = r.bytes() or b""
            parts = tok.split(b"\x00")
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
            conn.events.update(req.values)
            return READY, b""
        if opcode == PREPARE:
            text = r.long_string()
            keyspace = conn.keyspace
            if conn.version >= 5:
                flags = r.int()
                if flags & 0x01:
                    keyspace = r.string()
            req.query = text
            fault = self._fault(req, text)
            if fault is not None:
                return fault
            st = self._parser(conn.node).parse(text, keyspace)
            qid = hashlib.md5(((keyspace or "") + text).encode()).digest()
            with self._cond:
                self._prepared[conn.node.index][qid] = st
            return RESULT, proto.prepared_body(qid, st, conn.version)
        if opcode == QUERY:
            text = r.long_string()
            req.query = text
            params = proto.read_query_params(r, conn.version, req, None)
            st = self._parser(conn.node).parse(text, params.keyspace or conn.keyspace)
            params.values = proto.decode_values(st, params.values)
            req.values = params.values
            fault = self._fault(req, text, conn, [(st, params.values)])
            if fault is not None:
                return fault
            return self._run(conn, st, params, req)
        if opcode == EXECUTE:
            qid = r.short_bytes()
            if conn.version >= 5:
                r.short_bytes()  # result metadata id: ours never change
            st = self._lookup_prepared(conn, qid)
            req.query = st.text
            params = proto.read_query_params(r, conn.version, req, st)
            fault = self._fault(req, st.text, conn, [(st, params.values)])
            if fault is not None:
                return fault
            return self._run(conn, st, params, req)
        if opcode == BATCH:
            return self._batch(conn, r, req)
        raise CqlError(PROTOCOL_ERROR, f"unsupported opcode {opcode:#04x}")
