"""A small threaded HTTP/1.1 server with keep-alive and chunked streaming responses.

One thread per connection (stdlib `ThreadingHTTPServer`). A handler gets a `Request` and returns
either a `Response` (sent with Content-Length, connection kept alive unless the client asked to
close) or a `Stream`: a 200 answer with `Transfer-Encoding: chunked` whose body is whatever
`Stream.send` queues, until either side closes it.

Invariants:
- `Stream.send` never blocks and never raises: it queues bytes, or returns False once closed.
- A stream notices a client that went away within ~0.25 s (EOF on its socket), and calls its
  `on_close` callback exactly once, from the connection's thread, whoever closed it.
- `HttpServer.stop()` closes every stream and connection, so nothing keeps the port afterwards.
- Only `Date` (and what the handler sets) goes into headers: no `Server` header, as Mesos.
"""

from __future__ import annotations

import json
import logging
import queue
import select
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

log = logging.getLogger("localmesos.http")

MAX_CHUNKS_PER_WRITE = 256


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: Any  # email.message.Message: case-insensitive .get()
    body: bytes
    peer: str = ""


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def json(status: int, obj: Any) -> Response:
        return Response(status, json.dumps(obj).encode("utf-8"), "application/json")

    @staticmethod
    def text(status: int, message: str) -> Response:
        return Response(status, message.encode("utf-8"), "text/plain; charset=utf-8")


class Stream:
    """A chunked response kept open; `send` queues one chunk, `close` ends it."""

    def __init__(self, headers: dict[str, str] | None = None,
                 on_close: Callable[[Stream], None] | None = None) -> None:
        self.headers = dict(headers or {})
        self.on_close = on_close
        self._q: queue.Queue[bytes | None] = queue.Queue()
        self._closed = threading.Event()
        self._silenced = False
        self.reset = False  # end with a TCP RST instead of an orderly close

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def send(self, data: bytes) -> bool:
        if self._closed.is_set():
            return False
        if not self._silenced:
            self._q.put(data)
        return True

    def silence(self) -> None:
        """From now on drop what is sent, keeping the connection open: a half-open connection,
        as after a network partition or a hung master, that only a missing heartbeat reveals."""
        self._silenced = True

    def abort(self) -> None:
        """End the connection with a TCP reset (a process killed mid-stream)."""
        self.reset = True
        self.close()

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self._q.put(None)


App = Callable[[Request], "Response | Stream"]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], app: App) -> None:
        self.app = app
        self.conns: set[socket.socket] = set()
        self.streams: set[Stream] = set()
        self.track_lock = threading.Lock()
        super().__init__(addr, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.track_lock:
            self.server.conns.add(self.connection)

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            # The client went away mid-connection (an executor exiting, a scheduler dying):
            # nothing to answer; socketserver would print a traceback to stderr.
            log.debug("client %s reset its connection", self.address_string())

    def finish(self) -> None:
        with self.server.track_lock:
            self.server.conns.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_GET

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        url = urlsplit(self.path)
        req = Request(self.command, unquote(url.path), dict(parse_qsl(url.query)), self.headers,
                      body, self.client_address[0])
        try:
            result = self.server.app(req)
        except Exception:
            log.exception("handler failed for %s %s", self.command, self.path)
            result = Response.text(500, "Internal Server Error")
        if isinstance(result, Stream):
            self._stream(result)
        else:
            self._respond(result)

    def _head(self, status: int, headers: dict[str, str]) -> None:
        self.send_response_only(status)
        self.send_header("Date", self.date_time_string())
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()

    def _respond(self, r: Response) -> None:
        headers = dict(r.headers)
        if r.content_type:
            headers["Content-Type"] = r.content_type
        headers["Content-Length"] = str(len(r.body))
        self._head(r.status, headers)
        if self.command != "HEAD":
            self.wfile.write(r.body)
        self.wfile.flush()

    def _stream(self, s: Stream) -> None:
        with self.server.track_lock:
            self.server.streams.add(s)
        try:
            headers = {"Content-Type": "application/json", **s.headers,
                       "Transfer-Encoding": "chunked"}
            self._head(200, headers)
            self.wfile.flush()
            while True:
                try:
                    item = s._q.get(timeout=0.25)
                except queue.Empty:
                    if self._client_gone():
                        break
                    continue
                if item is None:
                    break
                # Whatever else is queued goes out in the same write, still one chunk per
                # event: hundreds of status updates a second were one send() each.
                chunks, ended = [item], False
                while len(chunks) < MAX_CHUNKS_PER_WRITE:
                    try:
                        more = s._q.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        ended = True
                        break
                    chunks.append(more)
                self.wfile.write(b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks))
                self.wfile.flush()
                if ended:
                    break
        except OSError:
            pass
        finally:
            self.close_connection = True
            if s.reset:  # close now, before socketserver's orderly shutdown could send a FIN
                try:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               struct.pack("ii", 1, 0))
                    self.connection.close()
                except OSError:
                    pass
            was_open = not s.closed
            s.close()
            with self.server.track_lock:
                self.server.streams.discard(s)
            if s.on_close is not None:
                try:
                    s.on_close(s)
                except Exception:
                    log.exception("stream close callback failed")
            if was_open:
                log.debug("stream from %s ended by the client", self.client_address[0])

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True


class HttpServer:
    """Serve `app` on host:port (port 0 picks a free one) from a background thread."""

    def __init__(self, host: str, port: int, app: App, name: str = "http") -> None:
        self._srv = _Server((host, port), app)
        self.name = name
        self._thread = threading.Thread(target=self._srv.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=name, daemon=True)

    @property
    def port(self) -> int:
        return self._srv.server_address[1]

    def start(self) -> None:
        self._thread.start()

    def reopen(self) -> None:
        """Listen again, on the same port, after `stop()` (an agent process restarted: its
        executors know only this port)."""
        host, port = self._srv.server_address[:2]
        self._srv = _Server((host, port), self._srv.app)
        self._thread = threading.Thread(target=self._srv.serve_forever,
                                        kwargs={"poll_interval": 0.1}, name=self.name,
                                        daemon=True)
        self._thread.start()

    def close_streams(self) -> None:
        with self._srv.track_lock:
            streams = list(self._srv.streams)
        for s in streams:
            s.close()

    def stop(self) -> None:
        self._srv.shutdown()
        self._srv.server_close()
        self.close_streams()
        with self._srv.track_lock:
            conns = list(self._srv.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
