"""Benchmark: the load balancer (`accessd lb`, real HAProxy) in front of a real cluster.

One cluster (localmesos, `accessd scheduler`, `accessd api`, `accessd lb`), the echo service
(`tests/lb/echo_service.py`, HTTP health checks every second) in the balancer's group:

1. throughput and latency of `GET /` with one instance, direct to the task (the baseline) and
   through HAProxy on the app's service port, same load tool (wrk if installed, else Python
   threads), same connections, same duration: `ratio = lb_rps / direct_rps` (per instance);
2. failed requests while the app scales 1 → 5 → 2 under continuous load (8 keep-alive
   clients, requests that take 10 ms so some are always in flight);
3. failed requests while 4 instances are restarted (rolling) under the same load.

Prints the figures and ends with
`RESULT lb_rps=<n> direct_rps=<n> ratio=<x> p99_ms=<n> failed_scale=<n> failed_restart=<n>`.
Goal: failed = 0, ratio >= 0.7.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from loadgen import load, tool_name  # noqa: E402

from tests.lb.harness import Load, echo_app, lb_cluster  # noqa: E402
from tests.support import free_port  # noqa: E402


def task_url(cluster, app_id: str) -> str:
    task = cluster.get(f"/v2/apps{app_id}?embed=app.tasks")["app"]["tasks"][0]
    ip = (task.get("ipAddresses") or [{}])[0].get("ipAddress") or task["host"]
    return f"http://{ip}:{task['ports'][0]}/"


def under_load(cluster, url: str, steps, threads: int = 8):
    load_run = Load(url, threads=threads, max_seconds=300).start()
    started = time.monotonic()
    try:
        for step in steps:
            step()
    finally:
        result = load_run.stop()
    return result, time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=8.0, help="each throughput run")
    p.add_argument("--connections", type=int, default=16)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-lb-") as tmp:
        work = Path(tmp)
        with lb_cluster(work, drain_timeout=10.0) as cluster:
            ctl = work / "ctl"
            ctl.mkdir()
            app_id, port = "/bench/echo", free_port()
            cluster.post("/v2/apps", echo_app(app_id, port, 1, ctl))
            cluster.wait_deployments_done(180)
            cluster.wait_serving(app_id, 1)
            direct_url, lb_url = task_url(cluster, app_id), f"http://127.0.0.1:{port}/"
            print(f"load tool: {tool_name()}; {args.connections} connections, "
                  f"{args.seconds:.0f}s a run", flush=True)
            load(direct_url, 2, args.connections)  # warm-up
            direct = load(direct_url, args.seconds, args.connections)
            print(f"direct to the task   {direct['rps']:8.0f} req/s  p50 "
                  f"{direct['p50_ms']:.2f} ms  p99 {direct['p99_ms']:.2f} ms", flush=True)
            through = load(lb_url, args.seconds, args.connections)
            print(f"through HAProxy      {through['rps']:8.0f} req/s  p50 "
                  f"{through['p50_ms']:.2f} ms  p99 {through['p99_ms']:.2f} ms", flush=True)

            def scale(n: int):
                def go() -> None:
                    cluster.put(f"/v2/apps{app_id}", {"instances": n})
                    cluster.wait_deployments_done(180)
                    cluster.wait_serving(app_id, n, 120)
                return go

            work_url = f"http://127.0.0.1:{port}/work?ms=10"
            scaled, took = under_load(cluster, work_url, [scale(5), scale(2)])
            print(f"scale 1 -> 5 -> 2    {scaled.ok} ok, {scaled.failed} failed "
                  f"{dict(scaled.why)} in {took:.1f}s, spread {sorted(scaled.by_task.values())}",
                  flush=True)
            scale(4)()

            def restart() -> None:
                cluster.post(f"/v2/apps{app_id}/restart")
                cluster.wait_deployments_done(180)
                cluster.wait_serving(app_id, 4, 120)
            before = cluster.healthy(app_id)
            restarted, took = under_load(cluster, work_url, [restart])
            replaced = not (before & cluster.healthy(app_id))
            print(f"restart 4 instances  {restarted.ok} ok, {restarted.failed} failed "
                  f"{dict(restarted.why)} in {took:.1f}s (all replaced: {replaced})", flush=True)
            drained = cluster.sched.output(tail=None).count("drained by ")
            deadlines = cluster.sched.output(tail=None).count("; drain deadline)")
            print(f"kills after a drain: {drained} acknowledged by the balancer, "
                  f"{deadlines} at the deadline", flush=True)
    ratio = through["rps"] / direct["rps"] if direct["rps"] else 0.0
    print(f"RESULT lb_rps={through['rps']:.0f} direct_rps={direct['rps']:.0f} "
          f"ratio={ratio:.2f} p99_ms={through['p99_ms']:.2f} failed_scale={scaled.failed} "
          f"failed_restart={restarted.failed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
