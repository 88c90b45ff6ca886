"""`scheduler.async_calls.CallSender`: ACKNOWLEDGE and DECLINE sent from threads of their own,
on their own connections, with the driver's stream id, without waiting for pymesos's lock."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from scheduler.async_calls import CallSender
from tests.support import wait_until


class Master(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        self.calls: list[tuple[dict, dict]] = []
        self.release = threading.Event()
        self.release.set()
        self.status = 202
        super().__init__(("127.0.0.1", 0), Handler)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.release.wait(10)
        self.server.calls.append((body, dict(self.headers)))
        self.send_response(self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


class Driver:
    """What CallSender reads of pymesos's driver; its lock is held, as during an ACCEPT."""

    def __init__(self, master: str) -> None:
        self._master = master
        self._stream_id = "stream-1"
        self.framework_id = "fw-1"
        self._lock = threading.RLock()
        self._lock.acquire()


@pytest.fixture
def master():
    server = Master()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


def status(n: int) -> dict:
    return {"task_id": {"value": f"t{n}"}, "agent_id": {"value": "a1"}, "uuid": f"u{n}",
            "state": "TASK_RUNNING"}


def test_calls_go_out_with_the_stream_id_while_the_driver_lock_is_held(master):
    driver = Driver(f"127.0.0.1:{master.server_address[1]}")
    sender = CallSender(driver)
    try:
        for n in range(20):
            sender.acknowledge(status(n))
        sender.decline([{"value": "o1"}], {"refuse_seconds": 1})
        sender.acknowledge({"task_id": {"value": "x"}, "state": "TASK_LOST"})  # no uuid: none
        wait_until(lambda: len(master.calls) == 21, timeout=10)
        acks = sorted(b["acknowledge"]["uuid"] for b, _ in master.calls
                      if b["type"] == "ACKNOWLEDGE")
        assert acks == sorted(f"u{n}" for n in range(20))
        decline = next(b for b, _ in master.calls if b["type"] == "DECLINE")
        assert decline == {"type": "DECLINE", "framework_id": {"value": "fw-1"},
                           "decline": {"offer_ids": [{"value": "o1"}],
                                       "filters": {"refuse_seconds": 1}}}
        assert {h["Mesos-Stream-Id"] for _, h in master.calls} == {"stream-1"}
        assert sender.failures == 0
    finally:
        sender.close()


def test_submitting_never_waits_for_the_master(master):
    master.release.clear()  # the master answers nothing for now
    driver = Driver(f"127.0.0.1:{master.server_address[1]}")
    sender = CallSender(driver)
    try:
        started = time.monotonic()
        for n in range(50):
            sender.acknowledge(status(n))
        assert time.monotonic() - started < 0.5
        master.release.set()
        wait_until(lambda: len(master.calls) == 50, timeout=10)
    finally:
        sender.close()


def test_a_refused_call_is_counted_and_logged_not_raised(master, caplog):
    master.status = 400
    driver = Driver(f"127.0.0.1:{master.server_address[1]}")
    sender = CallSender(driver, threads=1)
    try:
        sender.acknowledge(status(1))
        wait_until(lambda: sender.failures == 1, timeout=10)
        assert "acknowledgement of an update of task t1 not delivered (HTTP 400)" in caplog.text
        driver._stream_id = None  # unsubscribed: nothing is sent
        sender.acknowledge(status(2))
        sender.close()  # drains the queue first: the call above was looked at and dropped
        assert len(master.calls) == 1
    finally:
        sender.close()


def test_a_kill_goes_out_with_the_stream_id_and_a_refused_one_is_logged(master, caplog):
    driver = Driver(f"127.0.0.1:{master.server_address[1]}")
    sender = CallSender(driver, threads=1)
    try:
        sender.kill({"value": "t7"})
        wait_until(lambda: len(master.calls) == 1, timeout=10)
        body, headers = master.calls[0]
        assert body == {"type": "KILL", "framework_id": {"value": "fw-1"},
                        "kill": {"task_id": {"value": "t7"}}}
        assert headers["Mesos-Stream-Id"] == "stream-1"
        master.status = 400
        sender.kill({"value": "t8"})
        wait_until(lambda: sender.failures == 1, timeout=10)
        assert "KILL of task t8 (sent again later) not delivered (HTTP 400)" in caplog.text
    finally:
        sender.close()


def test_an_accept_goes_out_and_a_refused_one_is_reported(master):
    driver = Driver(f"127.0.0.1:{master.server_address[1]}")
    sender = CallSender(driver, threads=1)
    failed: list[str] = []
    sent: list[bool] = []
    launch = [{"type": "LAUNCH", "launch": {"task_infos": [{"task_id": {"value": "t1"}}]}}]
    try:
        sender.accept([{"value": "o1"}], launch, {"refuse_seconds": 1}, failed.append,
                      lambda: sent.append(True))
        wait_until(lambda: sent == [True], timeout=10)
        assert master.calls[0][0] == {
            "type": "ACCEPT", "framework_id": {"value": "fw-1"},
            "accept": {"offer_ids": [{"value": "o1"}], "operations": launch,
                       "filters": {"refuse_seconds": 1}}}
        master.status = 400
        sender.accept([{"value": "o2"}], launch, None, failed.append)
        wait_until(lambda: failed == ["HTTP 400"], timeout=10)
        driver.framework_id = None  # not subscribed: reported at once, nothing sent
        sender.accept([{"value": "o3"}], launch, None, failed.append)
        assert failed == ["HTTP 400", "not subscribed"] and len(master.calls) == 2
    finally:
        sender.close()
