"""Benchmark of the access services on real gunicorn processes over a SQLite store.

    .venv/bin/python bench/services.py [--duration 10] [--connections 8] [--stream-points 1000000]

Measures, with 2 gunicorn workers (gthread, 4 threads: the example apps' settings) on 127.0.0.1:
1. requests/s and p50/p99 latency of a one-day range query (`/timeseries/JPM?from&to`, 390
   points) and of the last quote (`/quotes/JPM/last`), each next to a Falcon endpoint returning a
   fixed body of the same size on the same gunicorn settings, in the same run (the ratio says
   what the store read and the encoding cost against Falcon + gunicorn alone);
2. the peak RSS of the time-series workers (VmHWM) while one client streams `--stream-points`
   quotes from `/timeseries/BIG`, parsing it incrementally (`services.client`).

Load comes from `wrk` when installed (`apt-get install -y wrk`), else from a bounded Python
threaded generator (much weaker: its numbers are then a floor). Each target runs `--duration`
seconds. The load generator shares the machine's CPUs with the servers; compare ratios, not
absolute numbers, across machines. The last line is
`RESULT range_rps=<n> baseline_rps=<n> ratio=<x> p99_ms=<n> stream_1m_peak_mb=<n>`.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from services.client import stream_timeseries  # noqa: E402
from services.data import SynthParams, synth  # noqa: E402
from services.store import open_store  # noqa: E402

BASELINE_APP = '''
"""A Falcon app answering fixed bodies, read once at start-up (the benchmark's baseline)."""
import os

import falcon


class Fixed:
    def __init__(self, body):
        self.body = body

    def on_get(self, req, resp):
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self.body


def get_app():
    app = falcon.App()
    for name in ("range", "last"):
        with open(os.path.join(os.environ["BASELINE_DIR"], name + ".json"), "rb") as f:
            app.add_route("/" + name, Fixed(f.read()))
    return app
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """gunicorn with the example apps' worker settings, in its own process group."""

    def __init__(self, app: str, env: dict[str, str], log: Path, pythonpath: str | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{self.port}",
                "--workers", "2", "--worker-class", "gthread", "--threads", "4",
                "--graceful-timeout", "3", "--log-level", "warning"]
        if pythonpath:
            args += ["--pythonpath", pythonpath]
        self.log = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(args + [app], env={**os.environ, **env}, cwd=REPO,
                                      stdout=self.log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(self.url + "/health", timeout=1).status_code < 500:
                    break
            except requests.RequestException:
                pass
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{app} did not start; see {log}")
            time.sleep(0.1)   # start-up poll with a deadline, not a race-hiding sleep
        self.wait_workers(2)

    def workers(self) -> list[int]:
        try:
            text = Path(f"/proc/{self.popen.pid}/task/{self.popen.pid}/children").read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]

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


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


# -- load generation -------------------------------------------------------------------------------
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def run_wrk(url: str, duration: float, connections: int) -> dict[str, float]:
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{int(duration)}s", "--latency",
                          url], capture_output=True, text=True, timeout=duration + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        lat[pct] = float(m.group(1)) * _UNITS[m.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{url}: {errors.group(1)} error responses under load:\n{out}")
    return {"rps": rps, "p50_ms": lat["50"], "p99_ms": lat["99"]}


def run_python_load(url: str, duration: float, connections: int) -> dict[str, float]:
    latencies: list[float] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + duration

    def worker() -> None:
        mine = []
        with requests.Session() as s:
            while time.monotonic() < stop_at:
                t0 = time.perf_counter()
                r = s.get(url, timeout=10)
                r.content  # noqa: B018 - read the whole body
                if r.status_code != 200:
                    raise RuntimeError(f"{url}: {r.status_code}")
                mine.append((time.perf_counter() - t0) * 1000)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    latencies.sort()
    return {"rps": len(latencies) / elapsed,
            "p50_ms": latencies[len(latencies) // 2],
            "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]}


def load(url: str, duration: float, connections: int) -> dict[str, float]:
    if shutil.which("wrk"):
        return run_wrk(url, duration, connections)
    return run_python_load(url, duration, connections)


def fmt(r: dict[str, float]) -> str:
    return f"{r['rps']:8.0f} req/s  p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms"


# -- main ------------------------------------------------------------------------------------------
def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=10.0, help="seconds per load target")
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--stream-points", type=int, default=1_000_000)
    args = p.parse_args()
    tool = "wrk" if shutil.which("wrk") else "python threads (wrk not installed)"
    work = Path(tempfile.mkdtemp(prefix="accessd-bench-"))
    servers: list[Server] = []
    try:
        url = f"sqlite://{work / 'quotes.db'}"
        t0 = time.monotonic()
        with open_store(url) as store:
            synth(store, SynthParams("JPM", date(2026, 1, 2), 5))
            # 30-second bars: 780 a day, so fewer (fast to generate) days reach the point count.
            days = -(-args.stream_points // 780)
            synth(store, SynthParams("BIG", date(2000, 1, 3), days, interval_ms=30_000))
        print(f"store: {url} ({time.monotonic() - t0:.1f}s to generate); load: {tool}, "
              f"{args.connections} connections, {args.duration:.0f}s per target", file=sys.stderr)

        env = {"ACCESSD_STORE": url}
        ts = Server("services.timeseries:get_app()", env, work / "timeseries.log")
        quotes = Server("services.quotes:get_app()", env, work / "quotes.log")
        servers += [ts, quotes]
        range_path = "/timeseries/JPM?from=2026-01-05T14:30:00Z&to=2026-01-05T20:59:00Z"
        range_body = requests.get(ts.url + range_path, timeout=30).content
        last_body = requests.get(quotes.url + "/quotes/JPM/last", timeout=30).content
        assert range_body.count(b'"symbol"') == 390, "the range query must give 390 points"
        baseline_dir = work / "baseline"
        baseline_dir.mkdir()
        (baseline_dir / "range.json").write_bytes(range_body)
        (baseline_dir / "last.json").write_bytes(last_body)
        (work / "bench_baseline.py").write_text(BASELINE_APP)
        base = Server("bench_baseline:get_app()", {"BASELINE_DIR": str(baseline_dir)},
                      work / "baseline.log", pythonpath=str(work))
        servers.append(base)

        results = {}
        for name, target in [("range", ts.url + range_path), ("range_baseline", base.url + "/range"),
                             ("last", quotes.url + "/quotes/JPM/last"),
                             ("last_baseline", base.url + "/last")]:
            results[name] = load(target, args.duration, args.connections)
            print(f"{name:<15} {fmt(results[name])}", file=sys.stderr)
        ratio = results["range"]["rps"] / results["range_baseline"]["rps"]
        last_ratio = results["last"]["rps"] / results["last_baseline"]["rps"]
        print(f"range body {len(range_body)} bytes: ratio to baseline {ratio:.2f}; "
              f"last quote body {len(last_body)} bytes: ratio {last_ratio:.2f}", file=sys.stderr)

        # Memory while streaming: a fresh server, so earlier load does not set the peak.
        ts.stop()
        servers.remove(ts)
        fresh = Server("services.timeseries:get_app()", env, work / "timeseries-stream.log")
        servers.append(fresh)
        before = max(status_kb(w, "VmRSS") for w in fresh.workers())
        t0 = time.monotonic()
        n = 0
        peak_during = 0
        for _ in stream_timeseries(fresh.url, "BIG", timeout=120):
            n += 1
            if n % 50_000 == 0:
                peak_during = max(peak_during, *(status_kb(w, "VmRSS") for w in fresh.workers()))
        elapsed = time.monotonic() - t0
        hwm = max(status_kb(w, "VmHWM") for w in fresh.workers())
        peak_mb = max(hwm, peak_during) / 1024
        print(f"streamed {n} points in {elapsed:.1f}s ({n / elapsed:,.0f} points/s, "
              f"client parsing included); worker RSS {before / 1024:.1f} MB before, "
              f"peak {peak_mb:.1f} MB", file=sys.stderr)
        if n < args.stream_points:
            raise RuntimeError(f"streamed {n} points, expected >= {args.stream_points}")
        print(f"RESULT range_rps={results['range']['rps']:.0f} "
              f"baseline_rps={results['range_baseline']['rps']:.0f} ratio={ratio:.2f} "
              f"p99_ms={results['range']['p99_ms']:.2f} stream_1m_peak_mb={peak_mb:.1f}")
        return 0
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
