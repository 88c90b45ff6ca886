"""`GET /v2/events`: the store's event log as Server-Sent Events.

Each event is `id: <n>\\nevent: <eventType>\\ndata: <json>\\n\\n`. The stream starts after the
newest event at connection time (Marathon's behaviour) or after `Last-Event-ID` when a client
reconnects, so nothing is lost across a reconnect. `?event_type=` (repeatable, or
comma-separated) keeps only those types. Because the log lives in the store, an event appended
by any worker or by the scheduler reaches every stream.

Each stream holds one of the worker's threads for as long as the client stays, so a worker
serves at most `max_streams` of them (503 with `Retry-After` beyond): the rest of the threads
stay free for the API's other requests.

A comment line (`: keep-alive`) goes out when nothing was sent for `keepalive` seconds: proxies
keep the connection, and a vanished client is noticed at the next write. Streams end when the
worker is asked to stop (`STOPPING`, set from gunicorn's SIGTERM handler by `api.main`) so a
shutdown does not wait for clients that never leave.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import falcon

from api import shapes
from api.errors import ApiError, bad_request
from scheduler.state import StateStore

STOPPING = threading.Event()
BATCH = 500


def format_event(event_id: int, event: dict, extras: bool = False) -> bytes:
    """One SSE record; the payload keeps Marathon's fields only unless `extras` (api.shapes)."""
    event = shapes.event(event, extras)
    data = json.dumps(event, separators=(",", ":"))
    return f"id: {event_id}\nevent: {event.get('eventType', 'message')}\ndata: {data}\n\n".encode()


def stream(store: StateStore, after: int, types: frozenset[str], keepalive: float,
           poll: float, extras: bool = False) -> Iterator[bytes]:
    # A first comment sends the headers and proves the stream is open before any event.
    yield b": accessd event stream\n\n"
    last_write = time.monotonic()
    while not STOPPING.is_set():
        batch = store.events_since(after, BATCH)
        for event_id, event in batch:
            after = event_id
            if types and event.get("eventType") not in types:
                continue
            if not extras and event.get("eventType") in shapes.ACCESSD_EVENT_TYPES:
                continue
            yield format_event(event_id, event, extras)
            last_write = time.monotonic()
        if len(batch) == BATCH:
            continue  # catching up: no pause
        if time.monotonic() - last_write >= keepalive:
            yield b": keep-alive\n\n"
            last_write = time.monotonic()
        # Polling the store is the only way to see other processes' appends (SQLite has no
        # cross-process notification); STOPPING.wait doubles as an interruptible pause.
        STOPPING.wait(poll)


class _Stream:
    """The WSGI body of one stream: iterates `stream(...)` and gives its slot back on `close()`,
    which the server calls whether or not the body was ever iterated."""

    def __init__(self, body: Iterator[bytes], slots: threading.BoundedSemaphore) -> None:
        self._body = body
        self._slots: threading.BoundedSemaphore | None = slots

    def __iter__(self) -> Iterator[bytes]:
        return self._body

    def close(self) -> None:
        close = getattr(self._body, "close", None)
        if close is not None:
            close()
        if self._slots is not None:
            slots, self._slots = self._slots, None
            slots.release()


class Events:
    def __init__(self, store: StateStore, keepalive: float = 15.0, poll: float = 0.2,
                 max_streams: int = 8) -> None:
        self.store = store
        self.keepalive = keepalive
        self.poll = poll
        self.max_streams = max_streams
        self._slots = threading.BoundedSemaphore(max_streams)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Server-Sent Events of the event bus (`?event_type=` filters; `Last-Event-ID`
        resumes)."""
        types: set[str] = set()
        for value in req.get_param_as_list("event_type") or []:
            types |= {t.strip() for t in value.split(",") if t.strip()}
        last = req.get_header("Last-Event-ID")
        if last is not None:
            try:
                after = int(last)
            except ValueError:
                raise bad_request("Last-Event-ID must be an event id (an integer)",
                                  "/Last-Event-ID") from None
        else:
            after = self.store.latest_event_id()
        if not self._slots.acquire(blocking=False):
            raise ApiError(503, f"Too many event streams on this worker (at most "
                                f"{self.max_streams}); retry later",
                           headers={"Retry-After": "5"})
        try:
            body = stream(self.store, after, frozenset(types), self.keepalive, self.poll,
                          shapes.wants_extras(req.get_param_as_list("embed") or []))
        except BaseException:
            self._slots.release()
            raise
        resp.content_type = "text/event-stream"
        resp.set_header("Cache-Control", "no-cache")
        resp.set_header("X-Accel-Buffering", "no")
        resp.stream = _Stream(body, self._slots)
