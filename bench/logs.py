"""Benchmark of reading task logs the way operators do, on real processes: localmesos (1 agent),
`accessd scheduler`, `accessd api --master`, and a task printing a timestamped line every 20 ms.

    .venv/bin/python bench/logs.py [--reads 300] [--follow-seconds 10]

1. one read of a task's log: the median and p95 time of `GET /v2/apps/{id}/tasks/{t}/logs`
   (`offset`, 4 KiB) through the API, next to the same read straight from the agent's
   `/files/read` (the baseline: what the API adds is finding the sandbox — master `/state`,
   cached 2 s per worker — one size call and the read);
2. `accessd logs APP --follow`: the delay from a line's timestamp to its arrival on the
   follower's stdout (median, p95, max) over `--follow-seconds`, and whether every line
   arrived exactly once.

All traffic stays on 127.0.0.1. The last line is
`RESULT logs_read_ms_p50=<n> agent_read_ms_p50=<n> ratio=<x> follow_ms_p50=<n> follow_ms_p95=<n>
follow_ms_max=<n> lines=<n> duplicates=<n> missing=<n>`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.fixtures_api import start_api  # noqa: E402
from tests.fixtures_mesos import start_localmesos  # noqa: E402
from tests.fixtures_scheduler import agent_resources, start_scheduler  # noqa: E402
from tests.support import PYTHON, wait_until  # noqa: E402

SCRIPT = ('i=0; while true; do i=$((i+1)); echo "line-$i $(date +%s.%N)"; sleep 0.02; done')


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def p(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reads", type=int, default=300)
    ap.add_argument("--follow-seconds", type=float, default=10.0)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    mesos = start_localmesos(work, agents=1, resources=agent_resources(1))
    api_proc = sched = None
    try:
        api_proc, base = start_api(work / "state.db", workers=2,
                                   extra_args=("--master", mesos.master))
        sched = start_scheduler(mesos.master, work / "state.db", ["--refuse-seconds", "1"])
        r = requests.post(f"{base}/v2/apps", json={"id": "/bench/talker", "cmd": SCRIPT,
                                                    "cpus": 0.1, "mem": 32, "instances": 1,
                                                    "portDefinitions": []}, timeout=10)
        r.raise_for_status()
        task = wait_until(lambda: next((t for t in requests.get(
            f"{base}/v2/apps/bench/talker/tasks", timeout=10).json()["tasks"]
            if t["state"] == "TASK_RUNNING"), None), 60, message="talker running")
        logs = f"{base}/v2/apps/bench/talker/tasks/{task['id']}/logs"
        wait_until(lambda: requests.get(logs, params={"offset": -1}, timeout=10).json()["size"]
                   > 8192, 30, message="8 KiB of log")
        agent = mesos.agents()[0]
        fid = mesos.state()["frameworks"][0]["id"]
        files = f"http://127.0.0.1:{agent['port']}/files/read"
        path = f"/frameworks/{fid}/executors/{task['id']}/runs/latest/stdout"
        session = requests.Session()
        api_ms = timed(lambda: session.get(logs, params={"offset": 4096, "length": 4096},
                                           timeout=10).raise_for_status(), args.reads)
        agent_ms = timed(lambda: session.get(files, params={"path": path, "offset": 4096,
                                                            "length": 4096},
                                             timeout=10).raise_for_status(), args.reads)

        follower = subprocess.Popen(
            [PYTHON, "-m", "accessd.cli", "logs", "/bench/talker", "--follow", "--tail", "0",
             "--api", base], stdout=subprocess.PIPE, text=True, cwd=REPO,
            start_new_session=True)
        arrivals: list[tuple[float, str]] = []

        def read() -> None:
            assert follower.stdout is not None
            for line in follower.stdout:
                arrivals.append((time.time(), line.rstrip("\n")))

        threading.Thread(target=read, daemon=True).start()
        time.sleep(args.follow_seconds)  # the measurement window itself, not a wait for state
        os.killpg(follower.pid, signal.SIGINT)
        follower.wait(10)
        lines = [(t, text) for t, text in arrivals if text.startswith("line-")]
        delays = [(t - float(text.split()[1])) * 1000 for t, text in lines[1:]]
        numbers = [int(text.split()[0][5:]) for _, text in lines]
        dup = len(numbers) - len(set(numbers))
        missing = (max(numbers) - min(numbers) + 1 - len(set(numbers))) if numbers else 0
        a50, g50 = statistics.median(api_ms), statistics.median(agent_ms)
        print(f"logs read via API: p50 {a50:.2f} ms, p95 {p(api_ms, .95):.2f} ms; "
              f"agent /files/read: p50 {g50:.2f} ms, p95 {p(agent_ms, .95):.2f} ms")
        print(f"follow: {len(lines)} lines, delay p50 {statistics.median(delays):.0f} ms, "
              f"p95 {p(delays, .95):.0f} ms, max {max(delays):.0f} ms, "
              f"{dup} duplicated, {missing} missing")
        print(f"RESULT logs_read_ms_p50={a50:.2f} agent_read_ms_p50={g50:.2f} "
              f"ratio={a50 / g50:.2f} follow_ms_p50={statistics.median(delays):.0f} "
              f"follow_ms_p95={p(delays, .95):.0f} follow_ms_max={max(delays):.0f} "
              f"lines={len(lines)} duplicates={dup} missing={missing}")
    finally:
        if sched is not None:
            sched.stop()
        if api_proc is not None:
            api_proc.stop()
        mesos.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
