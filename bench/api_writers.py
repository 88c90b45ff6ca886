"""What taking turns costs the API's workers: scale PUTs on one SQLite file or on a file each.

    .venv/bin/python bench/api_writers.py [--processes 2] [--threads 4] [--duration 4]
                                          [--rounds 6]

gunicorn's API workers write one state file and take turns to do it (`scheduler.sqlite_writers`:
the processes' lock, its spin, group commit). `bench/api.py` measures the whole, through HTTP;
how wrk's connections fall on the workers moves its figure by a third. This bench takes HTTP
and the load generator away: P forked processes each call the API's WSGI app from T threads,
every thread sending scale PUTs (`PUT /v2/apps/<id>?force=true {"instances": n}`, cycling over
100 apps) for D seconds. Rounds alternate two setups on the same machine:

- `shared`: every process on one file, as gunicorn's workers;
- `own`: each process on a copy of its own (the same code, no turns between processes).

Each round prints PUT/s, CPU per PUT (all processes' CPU time over their PUTs) and read system
calls per PUT (pages read again after another process's commit). The last line is
`RESULT rounds=<n> shared_rps=<median> own_rps=<median> shared_cpu_ms=<median>
own_cpu_ms=<median> cpu_ratio=<median of shared/own per round>`. Everything stays in process:
no network traffic.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import falcon.testing

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.api import SCALE_APPS, SCALE_QUERY, fill_store, scale_request  # noqa: E402

WARMUP_PUTS = 200


@dataclass
class Round:
    puts: int
    cpu_seconds: float
    read_calls: int

    def describe(self, seconds: float) -> str:
        return (f"{self.puts / seconds:.0f} PUT/s, {self.cpu_seconds / self.puts * 1e3:.3f} ms "
                f"of CPU per PUT, {self.read_calls / self.puts:.1f} read calls per PUT")


def _read_calls() -> int:
    with open("/proc/self/io") as f:
        return next(int(line.split(":")[1]) for line in f if line.startswith("syscr:"))


def _putter(app: Any) -> Callable[[int], None]:
    """Scale PUT number `i` (`bench.api.scale_request`) through the WSGI app, without HTTP.
    The environs are made once (falcon.testing), each call gets a copy with its own body."""
    environs: dict[tuple[str, int], tuple[dict[str, Any], bytes]] = {}
    for i in range(SCALE_APPS * 3):   # every (app, instances) pair
        path, body = scale_request(i)
        data = json.dumps(body).encode()
        environs[path, body["instances"]] = (falcon.testing.create_environ(
            path=path, query_string=SCALE_QUERY, method="PUT", body=data,
            headers={"Content-Type": "application/json"}, host="127.0.0.1",
            remote_addr="127.0.0.1"), data)

    def put(i: int) -> None:
        path, body = scale_request(i)
        template, data = environs[path, body["instances"]]
        environ = dict(template, **{"wsgi.input": io.BytesIO(data)})
        status: list[str] = []
        answer = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
        if not status[0].startswith("200"):
            raise RuntimeError(f"scale PUT answered {status[0]}: {answer[:200]!r}")
    return put


def _process(state: Path, threads: int, seconds: float, seed: int,
             ready: Any, out: Connection) -> None:
    """One process: warm up, wait for the others, PUT from `threads` threads for `seconds`."""
    os.environ.update(ACCESSD_API_STATE=str(state), ACCESSD_LOG_LEVEL="WARNING")
    from api.app import get_app

    put = _putter(get_app())
    for i in range(WARMUP_PUTS):
        put(seed + i)
    counts = [0] * threads
    ready.wait()   # every process warmed up
    cpu, reads = time.process_time(), _read_calls()
    stop = time.monotonic() + seconds

    def loop(k: int) -> None:
        i = seed + k * 7919
        while time.monotonic() < stop:
            put(i)
            i += 1
            counts[k] += 1

    workers = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    out.send(Round(sum(counts), time.process_time() - cpu, _read_calls() - reads))
    out.close()


def run_round(files: list[Path], threads: int, seconds: float) -> Round:
    """One process per file (a file may repeat: shared) at once; their sums."""
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Barrier(len(files))
    pipes, procs = [], []
    for n, state in enumerate(files):
        receive, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_process, args=(state, threads, seconds, n * 100_003,
                                                  ready, send))
        proc.start()
        send.close()
        pipes.append(receive)
        procs.append(proc)
    results = [pipe.recv() for pipe in pipes]
    for proc in procs:
        proc.join()
        if proc.exitcode != 0:
            raise RuntimeError(f"a writing process exited with {proc.exitcode}")
    return Round(sum(r.puts for r in results), sum(r.cpu_seconds for r in results),
                 sum(r.read_calls for r in results))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--processes", type=int, default=2, help="as the API's gunicorn workers")
    p.add_argument("--threads", type=int, default=4, help="writing threads per process")
    p.add_argument("--duration", type=float, default=4.0, help="seconds of each run")
    p.add_argument("--rounds", type=int, default=6)
    args = p.parse_args()
    if min(args.processes, args.threads, args.rounds) < 1 or args.duration <= 0:
        p.error("--processes, --threads, --rounds and --duration must be positive")
    work = Path(tempfile.mkdtemp(prefix="accessd-api-writers-"))
    try:
        fill_store(work / "seed.db", SCALE_APPS, 0)
        runs: dict[str, list[Round]] = {"shared": [], "own": []}
        for r in range(args.rounds):
            for setup in ("shared", "own") if r % 2 == 0 else ("own", "shared"):
                run_dir = work / f"{r}-{setup}"   # fresh copies: every run starts alike
                run_dir.mkdir()
                files = [run_dir / f"{n}.db"
                         for n in range(args.processes if setup == "own" else 1)]
                for path in files:
                    shutil.copy(work / "seed.db", path)
                run = run_round(files * (args.processes if setup == "shared" else 1),
                                args.threads, args.duration)
                runs[setup].append(run)
                print(f"round {r + 1} {setup}: {run.describe(args.duration)}", file=sys.stderr)
                shutil.rmtree(run_dir)

        def cpu_ms(run: Round) -> float:
            return run.cpu_seconds / run.puts * 1e3

        ratios = [cpu_ms(s) / cpu_ms(o) for s, o in zip(runs["shared"], runs["own"], strict=True)]
        medians = {setup: (statistics.median(run.puts / args.duration for run in rs),
                           statistics.median(cpu_ms(run) for run in rs))
                   for setup, rs in runs.items()}
        print(f"{args.processes} processes x {args.threads} threads, median of {args.rounds} "
              f"rounds: one shared file {medians['shared'][0]:.0f} PUT/s at "
              f"{medians['shared'][1]:.3f} ms of CPU each, a file each {medians['own'][0]:.0f} "
              f"PUT/s at {medians['own'][1]:.3f} ms; CPU shared / own per round "
              f"{' '.join(f'{x:.2f}' for x in ratios)}", file=sys.stderr)
        print(f"RESULT rounds={args.rounds} shared_rps={medians['shared'][0]:.0f} "
              f"own_rps={medians['own'][0]:.0f} shared_cpu_ms={medians['shared'][1]:.3f} "
              f"own_cpu_ms={medians['own'][1]:.3f} cpu_ratio={statistics.median(ratios):.2f}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
