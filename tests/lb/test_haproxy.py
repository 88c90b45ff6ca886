"""The HAProxy shell (lb.haproxy) on a real HAProxy, without a cluster: a reload keeps a
request in flight on the old worker (which the shell sees, so no drain is acknowledged while
it lives), and runtime-API membership changes take effect at once."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from lb.config import Settings, render
from lb.haproxy import HAProxy, HAProxyError, find_binary, socket_command
from lb.model import desired
from lb.slots import step
from tests.support import free_port, wait_until

try:
    find_binary()
except HAProxyError as exc:
    pytest.skip(f"{exc} (tools/test-deps.sh installs it)", allow_module_level=True)


class Slow(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        if self.path == "/slow":
            time.sleep(1.0)
        body = str(self.server.server_port).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def backends():
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), Slow) for _ in range(2)]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    yield servers
    for s in servers:
        s.shutdown()
        s.server_close()


def apps(port: int, *ports: int) -> list[dict]:
    return [{"id": "/a", "labels": {"HAPROXY_GROUP": "external", "HAPROXY_0_MODE": "http"},
             "portDefinitions": [{"port": port}],
             "tasks": [{"id": f"t{p}", "host": "127.0.0.1", "ports": [p]} for p in ports]}]


def test_reload_keeps_requests_in_flight_and_runtime_changes_apply(tmp_path, backends):
    one, two = (s.server_port for s in backends)
    port = free_port()
    proxy = HAProxy(tmp_path)
    settings = Settings(runtime_socket=proxy.runtime_socket)
    first = step(None, desired(apps(port, one)), None)
    proxy.write(render(first.applied, settings))
    proxy.start()
    try:
        url = f"http://127.0.0.1:{port}"
        answers: list[int] = []
        slow = threading.Thread(target=lambda: answers.append(
            requests.get(url + "/slow", timeout=10).status_code))
        slow.start()
        wait_until(lambda: any(r.get("scur") == "1" for r in proxy.stats()
                               if r.get("svname") == "s1"), timeout=5)
        proxy.reload()  # same configuration: a new worker, the old one finishes /slow
        assert proxy.old_workers()  # the shell sees the worker still holding a request
        slow.join(10)
        assert answers == [200]
        wait_until(lambda: not proxy.old_workers(), timeout=10, message="the old worker gone")
        # membership through the runtime API: no reload, both backends answer
        second = step(first.applied, desired(apps(port, one, two)), None)
        assert not second.reload
        proxy.apply(second.commands)
        seen = {requests.get(url, timeout=5).text for _ in range(6)}
        assert seen == {str(one), str(two)}
    finally:
        proxy.stop()


def test_a_keep_alive_connection_idle_across_a_reload_still_gets_its_next_answer(tmp_path,
                                                                                 backends):
    # A client's kept-alive connection sits idle on the old worker when a reload comes. Closed
    # there at once (HAProxy's default on soft-stop), the client's next request on it races
    # the close and fails: once in a CI run, a ConnectionError in the lb cluster test of a
    # reload under load. The old worker answers it instead, then closes the connection
    # (`option idle-close-on-response`).
    port = free_port()
    proxy = HAProxy(tmp_path)
    proxy.write(render(step(None, desired(apps(port, backends[0].server_port)), None).applied,
                       Settings(runtime_socket=proxy.runtime_socket)))
    proxy.start()
    try:
        url = f"http://127.0.0.1:{port}/"
        with requests.Session() as session:
            assert session.get(url, timeout=5).status_code == 200   # the connection, kept
            proxy.reload()
            old = proxy.old_workers()
            assert old   # the old worker holds the idle connection: it is in its soft-stop
            wait_until(lambda: _stopping(proxy, old[0]), timeout=5, message="old worker stopping")
            answer = session.get(url, timeout=5)   # on the same connection, to the old worker
            assert answer.status_code == 200
            # It answered on the kept connection, then closed it and ended (the client did not).
            wait_until(lambda: not proxy.old_workers(), timeout=10, message="old worker gone")
    finally:
        proxy.stop()


def _stopping(proxy: HAProxy, pid: int) -> bool:
    """The old worker `pid` says it is in its soft-stop (`show info`, through the master)."""
    return "Stopping: 1" in socket_command(proxy.master_socket, f"@!{pid} show info")


def test_a_deep_work_dir_still_gets_its_sockets_and_a_refusal_says_why(tmp_path, backends):
    # HAProxy refuses UNIX socket paths over 97 characters: a deep data directory (or a
    # pytest-xdist worker's temporary one) once made every configuration "refused", silently.
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    proxy = HAProxy(deep)
    assert len(proxy.runtime_socket) <= 97 and len(proxy.master_socket) <= 97
    assert HAProxy(deep).runtime_socket == proxy.runtime_socket   # the next lb finds it
    port = free_port()
    text = render(step(None, desired(apps(port, backends[0].server_port)), None).applied,
                  Settings(runtime_socket=proxy.runtime_socket))
    proxy.check(text)
    proxy.write(text)
    proxy.start()
    try:
        assert requests.get(f"http://127.0.0.1:{port}", timeout=5).text == str(
            backends[0].server_port)
        assert proxy.stats()
    finally:
        proxy.stop()
    with pytest.raises(HAProxyError, match="too long"):
        proxy.check(render(step(None, desired(apps(port, 1)), None).applied,
                           Settings(runtime_socket=str(deep / "runtime.sock"))))
