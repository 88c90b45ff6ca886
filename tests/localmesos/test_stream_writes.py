"""localmesos's chunked event streams (`httpserver.Stream`): events queued while the connection's
thread was busy go out together in one write, yet each stays its own chunk, in order, and the
events queued before a close are all delivered before the stream ends."""

from __future__ import annotations

import socket

from localmesos.httpserver import HttpServer, Stream


def read_chunks(sock: socket.socket) -> list[bytes]:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding: chunked" in head.lower()
    chunks = []
    while body:
        size_text, _, rest = body.partition(b"\r\n")
        size = int(size_text, 16)
        if size == 0:
            break
        chunks.append(rest[:size])
        assert rest[size:size + 2] == b"\r\n"
        body = rest[size + 2:]
    return chunks


def test_queued_events_arrive_in_order_each_in_its_own_chunk_before_the_close():
    stream = Stream()
    events = [b'{"type":"UPDATE","n":%d}' % n for n in range(700)]
    for event in events:  # all queued (more than one write's worth) before the client reads
        assert stream.send(event)
    stream.close()
    server = HttpServer("127.0.0.1", 0, lambda req: stream, name="test-stream")
    server.start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"POST /api/v1/scheduler HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Length: 0\r\n\r\n")
            assert read_chunks(sock) == events
    finally:
        server.stop()
    assert not stream.send(b"late")  # closed: refused, never written
