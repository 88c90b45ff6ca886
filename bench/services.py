"""Benchmark of the access services on real gunicorn processes over a SQLite store.

    .venv/bin/python bench/services.py [--duration 10] [--connections 8] [--stream-points 1000000]

Measures, with 2 gunicorn workers (gthread, 4 threads: the example apps' settings) on 127.0.0.1:
1. requests/s and p50/p99 latency of a one-day range query (`/timeseries/JPM?from&to`, 390
   points) and of the last quote (`/quotes/JPM/last`), each next to a Falcon endpoint returning a
   fixed body of the same size on the same gunicorn settings, in the same run (the ratio says
   what the store read and the encoding cost against Falcon + gunicorn alone);
2. the peak RSS of the time-series workers (VmHWM) while one client streams `--stream-points`
   quotes from `/timeseries/BIG`, parsing it incrementally (`services.client`).

Load (`bench/loadgen.py`, shared with `bench/api.py`) comes from `wrk` when installed
(`apt-get install -y wrk`), else from a bounded Python threaded generator (much weaker: its
numbers are then a floor). Each target runs `--duration` seconds. The load generator shares the
machine's CPUs with the servers; compare ratios, not absolute numbers, across machines. The
last line is
`RESULT range_rps=<n> baseline_rps=<n> ratio=<x> p99_ms=<n> stream_1m_peak_mb=<n>
random_range_rps=<n> random_range_ratio=<x> random_p99_ms=<n>`: the `random_range` target asks
for a different one-day range on every request (a random day and start second; see
`random_range_path`), which the services' answer cache cannot serve, beside the fixed range
(which it can) and the fixed-body baseline.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.loadgen import Server, load, start_baseline, tool_name  # noqa: E402
from services.client import stream_timeseries  # noqa: E402
from services.data import SynthParams, synth  # noqa: E402
from services.store import open_store  # noqa: E402

THREADS = 4   # the example apps' gunicorn settings: 2 gthread workers of 4 threads
WARMUP_S = 2  # seconds of unmeasured load on each target first (see main)


def service(app: str, env: dict[str, str], log: Path) -> Server:
    """An access service; ready once `/health` answers (503 included: the store may be down)."""
    return Server(app, env, log, threads=THREADS, probe="/health",
                  ready=lambda status: status < 500)


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


# One-day ranges nobody asked for before: a random second of a random day whose next day
# also trades (Mon 5 - Wed 7 Jan 2026 of the synthetic JPM quotes), and the 24 hours from it
# (`to` is inclusive): always one session's 390 bars, different on (nearly) every request.
RANDOM_DAYS_MS = [1_767_571_200_000 + k * 86_400_000 for k in range(3)]  # 2026-01-05..07 UTC
DAY_MS = 86_400_000


def random_range_path(rng: random.Random) -> str:
    start = rng.choice(RANDOM_DAYS_MS) + rng.randrange(86_400) * 1000
    return f"/timeseries/JPM?from={start}&to={start + DAY_MS - 1}"


RANDOM_RANGE_LUA = """
math.randomseed(os.time())
local days = {DAYS}
request = function()
  local start = days[math.random(1, #days)] + math.random(0, 86399) * 1000
  return wrk.format("GET", string.format("/timeseries/JPM?from=%d&to=%d", start,
                                         start + DAY_MS - 1))
end
""".replace("{DAYS}", "{" + ", ".join(str(d) for d in RANDOM_DAYS_MS) + "}").replace(
    "DAY_MS", str(DAY_MS))


def fmt(r: dict[str, float]) -> str:
    return f"{r['rps']:8.0f} req/s  p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms"


# -- main ------------------------------------------------------------------------------------------
def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=10.0, help="seconds per load target")
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--stream-points", type=int, default=1_000_000)
    args = p.parse_args()
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
        print(f"store: {url} ({time.monotonic() - t0:.1f}s to generate); load: {tool_name()}, "
              f"{args.connections} connections, {args.duration:.0f}s per target", file=sys.stderr)

        env = {"ACCESSD_STORE": url}
        ts = service("services.timeseries:get_app()", env, work / "timeseries.log")
        quotes = service("services.quotes:get_app()", env, work / "quotes.log")
        servers += [ts, quotes]
        range_path = "/timeseries/JPM?from=2026-01-05T14:30:00Z&to=2026-01-05T20:59:00Z"
        range_body = requests.get(ts.url + range_path, timeout=30).content
        last_body = requests.get(quotes.url + "/quotes/JPM/last", timeout=30).content
        assert range_body.count(b'"symbol"') == 390, "the range query must give 390 points"
        base = start_baseline(work, {"range": range_body, "last": last_body},
                              work / "baseline.log", threads=THREADS)
        servers.append(base)

        for _ in range(5):  # the random ranges are one-day ranges too: 390 points each
            sample = requests.get(ts.url + random_range_path(random.Random()), timeout=30)
            assert sample.content.count(b'"symbol"') == 390, sample.url
        random_script = work / "random_range.lua"
        random_script.write_text(RANDOM_RANGE_LUA)
        rng = random.Random(15)

        def random_request(session: requests.Session, i: int) -> requests.Response:
            return session.get(ts.url + random_range_path(rng), timeout=10)

        targets = [("range", ts.url + range_path, {}),
                   ("random_range", ts.url + "/timeseries/JPM",
                    {"script": random_script, "make_request": random_request}),
                   ("range_baseline", base.url + "/range", {}),
                   ("last", quotes.url + "/quotes/JPM/last", {}),
                   ("last_baseline", base.url + "/last", {})]
        # Warm-up, not measured: the first load on a fresh gunicorn tends to put every wrk
        # connection on one worker (seen: 8 of 8 on one, 0 on the other, ~4x fewer requests/s
        # than later runs), which would penalise whichever target happens to run first.
        for _name, target, kw in targets:
            load(target, WARMUP_S, args.connections, **kw)
        results = {}
        for name, target, kw in targets:
            results[name] = load(target, args.duration, args.connections, **kw)
            print(f"{name:<15} {fmt(results[name])}", file=sys.stderr)
        random_ratio = results["random_range"]["rps"] / results["range_baseline"]["rps"]
        ratio = results["range"]["rps"] / results["range_baseline"]["rps"]
        last_ratio = results["last"]["rps"] / results["last_baseline"]["rps"]
        print(f"range body {len(range_body)} bytes: ratio to baseline {ratio:.2f}; "
              f"last quote body {len(last_body)} bytes: ratio {last_ratio:.2f}", file=sys.stderr)

        # Memory while streaming: a fresh server, so earlier load does not set the peak.
        ts.stop()
        servers.remove(ts)
        fresh = service("services.timeseries:get_app()", env, work / "timeseries-stream.log")
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
              f"p99_ms={results['range']['p99_ms']:.2f} stream_1m_peak_mb={peak_mb:.1f} "
              f"random_range_rps={results['random_range']['rps']:.0f} "
              f"random_range_ratio={random_ratio:.2f} "
              f"random_p99_ms={results['random_range']['p99_ms']:.2f}")
        return 0
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
