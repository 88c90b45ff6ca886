"""A master that takes a call and never answers it (hung, or partitioned with the connection
half-open): the calls pymesos makes on the caller's thread (REVIVE, SUPPRESS, RECONCILE) hold the
driver's lock, so without a bound one such call froze the driver, `stop()` included, and a
scheduler that had lost its leadership never stepped down. The master here is a socket on
127.0.0.1 that answers SUBSCRIBE like Mesos and then holds every other call open."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from pymesos import Scheduler

from scheduler.driver import ReconnectingDriver
from tests.support import wait_until

CALL_TIMEOUT = 0.5


class HangingMaster:
    """Answers `GET /version` (unless `hang_version`) and SUBSCRIBE (RecordIO over chunked HTTP,
    as Mesos), then never answers a call."""

    def __init__(self, hang_version: bool = False) -> None:
        self.hang_version = hang_version
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.held: list[str] = []  # call types taken and left unanswered
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.sockets.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self._answer(conn)
        except OSError:  # closed by `close()` (or by the driver) while reading
            return

    def _answer(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        if head.startswith(b"GET /version "):
            with self.lock:
                self.held.append("GET /version")
            if not self.hang_version:
                answer = b'{"version": "1.12.0"}'
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(answer), answer))
            return
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        while len(body) < length:
            body += conn.recv(65536)
        call = json.loads(body[:length])
        if call["type"] != "SUBSCRIBE":
            with self.lock:
                self.held.append(call["type"])
            return  # the connection stays open, unanswered
        event = json.dumps({"type": "SUBSCRIBED", "subscribed": {
            "framework_id": {"value": "hung-0000"}, "heartbeat_interval_seconds": 15}}).encode()
        record = b"%d\n%s" % (len(event), event)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Mesos-Stream-Id: stream-1\r\nTransfer-Encoding: chunked\r\n\r\n"
                     + b"%x\r\n%s\r\n" % (len(record), record))

    def close(self) -> None:
        self.listener.close()
        with self.lock:
            for conn in self.sockets:
                conn.close()


@pytest.fixture
def subscribed() -> Iterator[tuple[ReconnectingDriver, HangingMaster]]:
    master = HangingMaster()
    driver = ReconnectingDriver(Scheduler(), {"user": "", "name": "hung-test"}, master.address,
                                use_addict=False, implicit_acknowledgements=False)
    driver.call_timeout = CALL_TIMEOUT
    driver.start()
    try:
        wait_until(lambda: driver.connected and driver.framework_id == "hung-0000", timeout=10,
                   message="the framework subscribed")
        del master.held[:]
        yield driver, master
    finally:
        stop_at_most(driver, CALL_TIMEOUT + 5)
        master.close()


def in_thread(fn) -> tuple[threading.Thread, list]:
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(("returned", fn()))
        except Exception as exc:
            outcome.append(("raised", exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def stop_at_most(driver: ReconnectingDriver, seconds: float) -> None:
    """A stop that hangs fails the test (its threads are daemons) rather than the whole run."""
    stopping, _ = in_thread(lambda: driver.stop(failover=True))
    stopping.join(seconds)
    assert not stopping.is_alive(), "the driver's stop() hangs"


def test_a_call_the_master_never_answers_fails_after_the_call_timeout(subscribed):
    driver, master = subscribed
    started = time.monotonic()
    thread, outcome = in_thread(driver.reviveOffers)
    thread.join(CALL_TIMEOUT + 5)
    assert not thread.is_alive(), "REVIVE still waiting for the master's answer"
    assert master.held == ["REVIVE"]
    assert outcome[0][0] == "raised" and isinstance(outcome[0][1], TimeoutError), outcome
    assert time.monotonic() - started >= CALL_TIMEOUT


def test_stop_returns_while_a_call_is_unanswered(subscribed):
    driver, master = subscribed
    call, _ = in_thread(driver.suppressOffers)
    wait_until(lambda: master.held == ["SUPPRESS"], timeout=5, message="the call taken")
    stopping, outcome = in_thread(lambda: driver.stop(failover=True))
    stopping.join(CALL_TIMEOUT + 5)
    assert not stopping.is_alive(), "stop() waited on the unanswered call"
    assert outcome == [("returned", None)]
    call.join(5)
    assert not call.is_alive()


def test_start_returns_when_the_master_never_answers_its_version():
    master = HangingMaster(hang_version=True)
    driver = ReconnectingDriver(Scheduler(), {"user": "", "name": "hung-test"}, master.address,
                                use_addict=False, implicit_acknowledgements=False)
    driver.call_timeout = CALL_TIMEOUT
    try:
        starting, outcome = in_thread(driver.start)
        starting.join(CALL_TIMEOUT + 5)
        assert not starting.is_alive(), "start() waited on GET /version"
        assert outcome == [("returned", None)]
        assert master.held[0] == "GET /version"
        assert driver.version is None
    finally:
        stop_at_most(driver, CALL_TIMEOUT + 5)
        master.close()
