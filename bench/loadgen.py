"""What the HTTP benchmarks (`bench/api.py`, `bench/services.py`) share: gunicorn servers,
the fixed-body Falcon baseline, and load generation.

- `Server(app, env, log, threads=..., probe=...)`: gunicorn (2 gthread workers by default) on a
  free 127.0.0.1 port, in its own process group, started and waited for (the probe answers and
  every worker is forked); `stop()` ends the group.
- `start_baseline(work, bodies, log, threads=...)`: a Falcon app answering GET and PUT on
  `/<name>` with the fixed body `bodies[name]` (read once at start-up), on the same gunicorn
  settings as the server it is compared with.
- `load(url, duration, connections, script=..., make_request=...)`: `wrk` when installed
  (`apt-get install -y wrk`; `script` is its Lua script), else a bounded Python threaded
  generator (`make_request(session, i)`, by default a GET of `url`), much weaker: its numbers
  are then a floor. Either gives `{"rps", "p50_ms", "p99_ms"}` and fails on any non-2xx answer.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent

BASELINE_APP = '''
"""A Falcon app answering fixed bodies read once at start-up (the benchmarks' baseline)."""
import os

import falcon


class Fixed:
    def __init__(self, body):
        self.body = body

    def on_get(self, req, resp):
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self.body

    def on_put(self, req, resp):
        req.bounded_stream.read()
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self.body


def get_app():
    app = falcon.App()
    directory = os.environ["BASELINE_DIR"]
    for name in sorted(os.listdir(directory)):
        if name.endswith(".json"):
            with open(os.path.join(directory, name), "rb") as f:
                app.add_route("/" + name[:-len(".json")], Fixed(f.read()))
    return app
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process `pid` so far, all its threads (None: gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


class Server:
    """gunicorn (`workers` gthread workers of `threads` threads) in its own process group.

    Ready when `GET probe` answers a status `ready(status)` accepts and all workers are forked.
    """

    def __init__(self, app: str, env: Mapping[str, str], log: Path, *, threads: int,
                 workers: int = 2, probe: str = "/ping",
                 ready: Callable[[int], bool] = lambda status: status == 200,
                 pythonpath: str | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{self.port}",
                "--workers", str(workers), "--worker-class", "gthread", "--threads", str(threads),
                "--graceful-timeout", "3", "--log-level", "warning",
                # The control socket's default path is shared by every gunicorn on the machine.
                "--no-control-socket"]
        if pythonpath:
            args += ["--pythonpath", pythonpath]
        self.log = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(args + [app], env={**os.environ, **env}, cwd=REPO,
                                      stdout=self.log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                if ready(requests.get(self.url + probe, timeout=1).status_code):
                    break
            except requests.RequestException:
                pass
            if self.popen.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{app} did not start; see {log}")
            time.sleep(0.1)   # start-up poll with a deadline, not a race-hiding sleep
        self.wait_workers(workers)

    def workers(self) -> list[int]:
        """The worker processes' pids."""
        try:
            text = Path(f"/proc/{self.popen.pid}/task/{self.popen.pid}/children").read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def usage(self) -> tuple[float, int]:
        """CPU seconds and context switches (voluntary and not) of the workers so far. (A
        thread's switches are its own: those of threads that ended meanwhile are not counted;
        gthread's pool threads live on.)"""
        cpu, switches = 0.0, 0
        for pid in self.workers():
            cpu += cpu_seconds(pid) or 0.0
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tids:
                try:
                    status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
                except OSError:
                    continue
                switches += sum(int(line.split()[1]) for line in status.splitlines()
                                if "ctxt_switches:" in line)
        return cpu, switches

    def connection_split(self) -> list[int]:
        """Established client connections per worker, most first: which worker accepts each
        connection is a race, and a run whose connections all went to one worker measures
        that (one process and its GIL) rather than the server."""
        established = set()
        try:
            lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
        except OSError:
            return []
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == self.port and fields[3] == "01":
                established.add(fields[9])
        counts = []
        for pid in self.workers():
            fds = f"/proc/{pid}/fd"
            try:
                links = [os.readlink(f"{fds}/{fd}") for fd in os.listdir(fds)]
            except OSError:
                continue
            counts.append(sum(link[len("socket:["):-1] in established for link in links
                              if link.startswith("socket:[")))
        return sorted(counts, reverse=True)

    def wait_workers(self, n: int) -> None:
        deadline = time.monotonic() + 30
        while len(self.workers()) < n:
            if time.monotonic() > deadline:
                raise RuntimeError("gunicorn workers did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
            self.popen.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log.close()


def start_baseline(work: Path, bodies: Mapping[str, bytes], log: Path, *, threads: int) -> Server:
    """The fixed-body baseline serving `/<name>` for each of `bodies`, from files in `work`."""
    body_dir = work / "baseline"
    body_dir.mkdir(exist_ok=True)
    for name, body in bodies.items():
        (body_dir / f"{name}.json").write_bytes(body)
    (work / "bench_baseline.py").write_text(BASELINE_APP)
    return Server("bench_baseline:get_app()", {"BASELINE_DIR": str(body_dir)}, log,
                  threads=threads, probe="/" + next(iter(bodies)), pythonpath=str(work))


# -- load generation -------------------------------------------------------------------------------
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def tool_name() -> str:
    return "wrk" if have_wrk() else "python threads (wrk not installed)"


def run_wrk(url: str, duration: float, connections: int,
            script: Path | None = None) -> dict[str, float]:
    """wrk (2 threads) for `duration` seconds: requests/s and p50/p99 latency in ms."""
    args = ["wrk", "-t2", f"-c{connections}", f"-d{int(duration)}s", "--latency"]
    if script:
        args += ["-s", str(script)]
    out = subprocess.run(args + [url], capture_output=True, text=True,
                         timeout=duration + 60).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise RuntimeError(f"wrk gave no rate:\n{out}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{url}: {errors.group(1)} error responses under load:\n{out}")
    lat = {}
    for pct in ("50", "99"):
        p = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not p:
            raise RuntimeError(f"wrk gave no {pct}th percentile:\n{out}")
        lat[pct] = float(p.group(1)) * _UNITS[p.group(2)]
    return {"rps": float(m.group(1)), "p50_ms": lat["50"], "p99_ms": lat["99"]}


def run_python_load(make_request: Callable[[requests.Session, int], requests.Response],
                    duration: float, connections: int) -> dict[str, float]:
    """`connections` threads, each with its own session, calling `make_request(session, i)`
    (which sends one request and returns its response) for `duration` seconds."""
    latencies: list[float] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + duration
    failure: list[str] = []

    def worker(k: int) -> None:
        mine: list[float] = []
        n = 0
        with requests.Session() as s:
            while time.monotonic() < stop_at and not failure:
                t0 = time.perf_counter()
                r = make_request(s, k * 1_000_000 + n)   # the body is read (not streamed)
                if r.status_code >= 300:
                    failure.append(f"{r.status_code}: {r.text[:200]}")
                mine.append((time.perf_counter() - t0) * 1000)
                n += 1
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(connections)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failure:
        raise RuntimeError(f"error responses under load: {failure[0]}")
    elapsed = time.monotonic() - started
    latencies.sort()
    if not latencies:
        raise RuntimeError("no request completed")
    return {"rps": len(latencies) / elapsed,
            "p50_ms": latencies[len(latencies) // 2],
            "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]}


def load_split(server: Server, url: str, duration: float, connections: int, *,
               script: Path | None = None,
               make_request: Callable[[requests.Session, int], requests.Response] | None = None,
               ) -> tuple[dict[str, float], list[int]]:
    """`load`, and `server.connection_split()` sampled halfway through it."""
    split: list[list[int]] = []
    timer = threading.Timer(duration / 2, lambda: split.append(server.connection_split()))
    timer.start()
    try:
        return (load(url, duration, connections, script=script, make_request=make_request),
                split[0] if split else [])
    finally:
        timer.cancel()


def load(url: str, duration: float, connections: int, *, script: Path | None = None,
         make_request: Callable[[requests.Session, int], requests.Response] | None = None,
         ) -> dict[str, float]:
    """`url` under load for `duration` seconds: wrk (with `script`) if installed, else Python
    threads (with `make_request`, by default a GET of `url`)."""
    if have_wrk():
        return run_wrk(url, duration, connections, script)
    if make_request is None:
        def make_request(s: requests.Session, i: int) -> requests.Response:
            return s.get(url, timeout=10)
    return run_python_load(make_request, duration, connections)
