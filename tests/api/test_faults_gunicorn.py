"""Faults of the API process itself, on the real `accessd api` (gunicorn, gthread workers):

- event-stream clients that connect and never read hold only the streams' share of a
  worker's threads: the API keeps answering, further streams get the documented 503, and
  once the silent clients hang up their threads are given back;
- a worker killed with SIGKILL in the middle of writes: gunicorn replaces it, no write is
  half-applied (an app exists with its deployment and its version, or not at all), every
  acknowledged write is there, and nothing answers 5xx.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import requests

from scheduler.sqlite_state import open_state
from tests.fixtures_api import start_api
from tests.support import wait_until


def workers(api) -> list[int]:
    """Live gunicorn workers: the children of the `accessd api` process (the arbiter)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == api.pid and fields[0] != "Z":
                out.append(int(entry))
    return out


def silent_stream(port: int) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET /v2/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return s


def test_event_clients_that_never_read_do_not_stall_the_api(tmp_path):
    state = tmp_path / "state.db"
    store = open_state(str(state))
    # One worker of 4 threads: at most 2 streams (half the threads), 2 threads for the rest.
    api, base = start_api(state, workers=1, extra_args=("--threads", "4"))
    port = int(base.rsplit(":", 1)[1])
    socks = []
    try:
        socks = [silent_stream(port) for _ in range(30)]
        # Events the silent streams must carry, more than their socket buffers hold.
        for k in range(300):
            store.append_event("api_post_event", {"clientIp": "127.0.0.1", "uri": f"/x{k}",
                                                  "appDefinition": {"pad": "x" * 1000}})
        started = time.monotonic()
        for k in range(10):
            assert requests.get(base + "/ping", timeout=5).text == "pong"
            r = requests.post(base + "/v2/apps", timeout=5,
                              json={"id": f"/silent/a{k}", "cmd": "sleep 1", "instances": 0})
            assert r.status_code == 201, r.text
            assert requests.get(base + "/v2/apps", timeout=5).status_code == 200
        # Each request above had 5 s (its timeout) on a machine that may be busy.
        print(f"30 silent event clients: 10 ping+create+list rounds in "
              f"{time.monotonic() - started:.2f}s")
        extra = requests.get(base + "/v2/events", stream=True, timeout=5)
        assert extra.status_code == 503 and extra.headers["Retry-After"] == "5"
        assert extra.json()["message"].startswith("Too many event streams")
        extra.close()
        answers = []
        for s in socks:  # only now look at what each silent client was answered
            s.settimeout(5)
            answers.append(s.recv(12)[9:12])
            s.close()
        assert answers.count(b"200") == 2 and answers.count(b"503") == 28, answers
        # Hung up: the threads blocked on them are released at their next write.
        def two_streams() -> bool:
            store.append_event("api_post_event", {"clientIp": "127.0.0.1", "uri": "/wake"})
            opened = [requests.get(base + "/v2/events", stream=True, timeout=5)
                      for _ in range(2)]
            ok = all(r.status_code == 200 for r in opened)
            for r in opened:
                r.close()
            return ok
        wait_until(two_streams, timeout=20, interval=0.5,
                   message="both stream slots free again")
    finally:
        for s in socks:
            s.close()
        api.stop()
        store.close()


def test_worker_killed_during_writes_leaves_no_half_applied_change(tmp_path):
    state = tmp_path / "state.db"
    api, base = start_api(state, workers=2)
    results: dict[str, int | None] = {}
    stop = threading.Event()
    lock = threading.Lock()

    def writer(n: int) -> None:
        session = requests.Session()
        k = 0
        while not stop.is_set():
            app_id = f"/kill/w{n}-{k}"
            k += 1
            try:
                status = session.post(base + "/v2/apps", timeout=10, json={
                    "id": app_id, "cmd": "sleep 1", "instances": 1}).status_code
            except requests.RequestException:
                status = None
                session = requests.Session()
            with lock:
                results[app_id] = status

    threads = [threading.Thread(target=writer, args=(n,), daemon=True) for n in range(4)]
    store = open_state(str(state))
    try:
        for t in threads:
            t.start()
        killed = 0
        for _ in range(5):  # until a kill cut a request short (a worker is rarely idle)
            wait_until(lambda k=killed: len(results) >= 20 * (k + 1), timeout=30,
                       message="writes going on")
            os.kill(workers(api)[0], signal.SIGKILL)
            killed += 1
            wait_until(lambda: len(workers(api)) == 2, timeout=30,
                       message="gunicorn to replace the worker")
            if None in results.values():
                break
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join(15)
        statuses = list(results.values())
        assert None in statuses, f"no kill hit a request in flight ({killed} kills)"
        assert not [s for s in statuses if s is not None and s >= 500], statuses
        assert requests.get(base + "/ping", timeout=5).text == "pong"
        deployments = store.list_deployments(active_only=False)
        deployed = {a for d in deployments for a in d["affectedApps"]}
        gaps: list[str] = []
        for app_id, status in results.items():
            app = store.get_app(app_id)
            if status == 201:
                assert app is not None, app_id
            if app is None:
                assert app_id not in deployed and not store.list_app_versions(app_id), app_id
            else:
                assert app_id in deployed, f"{app_id} stored without its deployment"
                if app["version"] not in store.list_app_versions(app_id):
                    gaps.append(app_id)  # the change's history entry is part of the change
        assert not gaps, f"changes stored without their version history entry: {gaps}"
        print(f"{len(results)} writes, {killed} worker kill(s), "
              f"{statuses.count(None)} cut short, none half-applied")
    finally:
        stop.set()
        api.stop()
        store.close()
