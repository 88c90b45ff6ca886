"""A node's client connections: their state and the frames read from them, in the v4 framing
or, once switched on, inside v5 checksummed segments."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from tests.services.cql.topology import Node
from tests.services.cql.wire import check_segment_payload, decode_segment_header


@dataclass
class Conn:
    sock: socket.socket
    cid: int
    node: Node
    version: int = 0
    segments: bool = False       # v5 framing switched on
    ready: bool = False
    authenticated: bool = False
    keyspace: str | None = None
    events: set[str] = field(default_factory=set)
    write_lock: threading.Lock = field(default_factory=threading.Lock)



def read_frames(conn: Conn) -> Iterator[tuple[bytes, bytes]]:
        """Yields (header, body) of each frame; inside v5 segments once they are switched on."""
        buf = b""
        while True:
            if conn.segments:
                while len(buf) < 9 or len(buf) < 9 + struct.unpack(">i", buf[5:9])[0]:
                    raw = recv_exact(conn.sock, 6)
                    if raw is None:
                        return
                    n = decode_segment_header(raw)
                    payload = recv_exact(conn.sock, n + 4)
                    if payload is None:
                        return
                    buf += check_segment_payload(payload[:n], payload[n:])
                length = struct.unpack(">i", buf[5:9])[0]
                yield buf[:9], buf[9:9 + length]
                buf = buf[9 + length:]
                continue
            header = recv_exact(conn.sock, 9)
            if header is None:
                return
            length = struct.unpack(">i", header[5:9])[0]
            if length < 0 or length > 256 * 1024 * 1024:
                return
            body = recv_exact(conn.sock, length) if length else b""
            if body is None:
                return
            yield header, body


def recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def close_socket(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
