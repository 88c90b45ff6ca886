"""executor.health against real listeners: an HTTP server that answers 200 then 500, a closed TCP
port, shell commands in the task's environment, and the grace period hiding a slow start."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from executor.health import (
    CheckSpec,
    CheckTracker,
    HealthMonitor,
    parse_check,
    probe_command,
    probe_http,
    probe_tcp,
)
from tests.support import free_port, wait_until


class SwitchableServer:
    """A real HTTP server on 127.0.0.1 whose /health answers `self.status`."""

    def __init__(self, port: int | None = None) -> None:
        self.status = 200
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                owner.requests += 1
                code = owner.status if self.path == "/health" else 404
                body = b"{}"
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port or 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = SwitchableServer()
    yield s
    s.close()


class Recorder:
    def __init__(self) -> None:
        self.verdicts = []
        self.lock = threading.Lock()

    def __call__(self, verdict) -> None:
        with self.lock:
            self.verdicts.append((time.monotonic(), verdict))

    def states(self) -> list[bool]:
        with self.lock:
            return [v.healthy for _, v in self.verdicts]


def http_spec(port, **kw) -> CheckSpec:
    base = dict(protocol="HTTP", port=port, path="/health", grace_period_seconds=0,
                interval_seconds=0.1, timeout_seconds=2, max_consecutive_failures=3)
    base.update(kw)
    return CheckSpec(**base)


def test_http_probe_200_then_500(server):
    ok, reason = probe_http(server.port, "/health", 2)
    assert ok and "200" in reason
    server.status = 500
    ok, reason = probe_http(server.port, "/health", 2)
    assert not ok
    assert reason.startswith("HTTP health check failed: 500 Internal Server Error")
    server.status = 302  # redirects count as healthy, and are not followed
    assert probe_http(server.port, "/health", 2)[0]


def test_http_probe_refused_and_timeout():
    port = free_port()
    ok, reason = probe_http(port, "/health", 1)
    assert not ok and "connection refused" in reason
    with socket.socket() as silent:  # accepts (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(5)
        t0 = time.monotonic()
        ok, reason = probe_http(silent.getsockname()[1], "/", 0.5)
        assert not ok and "within 0.5s" in reason
        assert 0.4 < time.monotonic() - t0 < 2


def test_tcp_probe_open_and_closed():
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(5)
        assert probe_tcp(listening.getsockname()[1], 1)[0]
    ok, reason = probe_tcp(free_port(), 1)
    assert not ok and reason.startswith("TCP health check failed: connection refused")


def test_command_probe_uses_task_env_and_sandbox(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PORT0": "4242"}
    (tmp_path / "marker").write_text("x")
    assert probe_command('test "$PORT0" = 4242 && test -f marker', env, str(tmp_path), 5)[0]
    ok, reason = probe_command("echo broken >&2; exit 3", env, str(tmp_path), 5)
    assert not ok and reason == "COMMAND health check failed: exit status 3: broken"


def test_command_probe_timeout_kills_its_group(tmp_path):
    t0 = time.monotonic()
    ok, reason = probe_command("sleep 30 & echo $! > bg.pid; sleep 30", {"PATH": "/usr/bin:/bin"},
                               str(tmp_path), 0.5)
    assert not ok and "timed out after 0.5s" in reason
    assert time.monotonic() - t0 < 3
    from tests.executor.proctable import pid_alive
    bg = int((tmp_path / "bg.pid").read_text())
    wait_until(lambda: not pid_alive(bg), timeout=5, message="background sleep gone")


def test_unhealthy_after_max_consecutive_failures_then_healthy_again(server):
    rec = Recorder()
    monitor = HealthMonitor([http_spec(server.port)], {}, "/", rec)
    monitor.start()
    try:
        wait_until(lambda: rec.states() == [True], timeout=10, message="healthy")
        server.status = 500
        switched_at, requests_at_switch = time.monotonic(), server.requests
        wait_until(lambda: rec.states() == [True, False], timeout=10, message="unhealthy")
        at, verdict = rec.verdicts[-1]
        assert verdict.consecutive_failures == 3
        assert verdict.message.startswith("HTTP health check failed: 500 Internal Server Error")
        assert verdict.message.endswith("; 3 consecutive failures")
        # three failing probes at 0.1 s intervals, not fewer
        assert server.requests - requests_at_switch >= 3
        assert at - switched_at >= 0.15
        time.sleep(0.5)  # more failures: no repeated verdict
        assert rec.states() == [True, False]
        server.status = 200
        wait_until(lambda: rec.states() == [True, False, True], timeout=10, message="recovered")
        assert rec.verdicts[-1][1].consecutive_failures == 0
    finally:
        monitor.stop()
        monitor.join(5)


def test_grace_period_hides_a_slow_start():
    port = free_port()
    rec = Recorder()
    spec = http_spec(port, grace_period_seconds=3, max_consecutive_failures=1)
    monitor = HealthMonitor([spec], {}, "/", rec)
    monitor.start()
    late = None
    try:
        time.sleep(1.0)  # the service is "starting": probes fail, none may count
        late = SwitchableServer(port)
        wait_until(lambda: rec.states() == [True], timeout=10, message="healthy after slow start")
    finally:
        monitor.stop()
        monitor.join(5)
        if late:
            late.close()


def test_failures_count_once_grace_is_over():
    rec = Recorder()
    t0 = time.monotonic()
    monitor = HealthMonitor([http_spec(free_port(), grace_period_seconds=0.8,
                                       max_consecutive_failures=2)], {}, "/", rec, started_at=t0)
    monitor.start()
    try:
        wait_until(lambda: rec.states() == [False], timeout=10, message="unhealthy")
        at, verdict = rec.verdicts[0]
        assert at - t0 >= 0.8 + 0.1  # two counted failures after the grace period
        assert "connection refused" in verdict.message
    finally:
        monitor.stop()
        monitor.join(5)


def test_grace_ends_at_first_success():
    spec = http_spec(1, grace_period_seconds=100, max_consecutive_failures=2)
    tracker = CheckTracker(spec, started_at=0.0)
    assert tracker.record(False, "f", 1.0) is None  # ignored: grace
    assert tracker.record(True, "ok", 2.0).healthy is True
    assert tracker.record(False, "f", 3.0) is None  # counts now: 1
    verdict = tracker.record(False, "f", 4.0)
    assert verdict.healthy is False and verdict.consecutive_failures == 2


def test_max_consecutive_failures_zero_never_unhealthy():
    tracker = CheckTracker(http_spec(1, max_consecutive_failures=0), started_at=0.0)
    assert all(tracker.record(False, "f", t) is None for t in range(1, 20))


def test_any_failing_check_makes_the_task_unhealthy(server):
    rec = Recorder()
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(50)
        tcp = CheckSpec(protocol="TCP", port=listening.getsockname()[1], grace_period_seconds=0,
                        interval_seconds=0.1, timeout_seconds=1, max_consecutive_failures=2)
        monitor = HealthMonitor([http_spec(server.port, max_consecutive_failures=2), tcp], {},
                                "/", rec)
        monitor.start()
        try:
            wait_until(lambda: rec.states() == [True], timeout=10, message="both healthy")
            server.status = 503
            wait_until(lambda: rec.states() == [True, False], timeout=10, message="unhealthy")
            assert "503" in rec.verdicts[-1][1].message
        finally:
            monitor.stop()
            monitor.join(5)


def test_parse_marathon_form():
    spec = parse_check({"protocol": "COMMAND", "command": {"value": "true"},
                        "gracePeriodSeconds": 5, "intervalSeconds": 2, "timeoutSeconds": 1,
                        "maxConsecutiveFailures": 4}, [])
    assert (spec.command, spec.grace_period_seconds, spec.interval_seconds, spec.timeout_seconds,
            spec.max_consecutive_failures) == ("true", 5, 2, 1, 4)
    spec = parse_check({"protocol": "HTTP", "portIndex": 1, "path": "/health"}, [31000, 31001])
    assert (spec.port, spec.path, spec.grace_period_seconds, spec.interval_seconds,
            spec.timeout_seconds, spec.max_consecutive_failures) == (31001, "/health", 300, 60, 20, 3)
    with pytest.raises(ValueError, match="portIndex"):
        parse_check({"protocol": "TCP", "portIndex": 2}, [31000])
    with pytest.raises(ValueError, match="protocol"):
        parse_check({"protocol": "GOPHER"}, [31000])
    with pytest.raises(ValueError, match="command"):
        parse_check({"protocol": "COMMAND"}, [])
