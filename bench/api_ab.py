"""Paired comparison of scale PUTs: this tree's API against a git revision's, run in turns.

    .venv/bin/python bench/api_ab.py --base REV [--rounds 16] [--duration 4] [--connections 8]

On this 2-CPU VM the same code has measured 1,150 to 1,800 scale PUT/s within one hour, so
two `bench/api.py` runs, one before and one after a change, tell little about a change worth
10-20%. This bench runs both APIs at once (each 2 gthread workers of 16 threads, as
`bench/api.py`, on its own copy of a 100-app store) and loads them in turns, a short wrk run
each (`PUT /v2/apps/<id>?force=true {"instances": n}` cycling over the 100 apps), the order
alternating between rounds. Each round's two runs meet the machine in about the same state, so
the ratio of a round (this tree / the base) is the measure, and its median over the rounds
the result. Each run is printed with the split of its connections between the workers and
what a request cost them (CPU, context switches).

The base revision is unpacked with `git archive` into a temporary directory (the repository
is not touched) and put first on its gunicorn's Python path. All traffic goes to 127.0.0.1.
The last line is `RESULT rounds=<n> base_rps=<median> rps=<median> paired_ratio=<median>
paired_ratio_min=<x> paired_ratio_max=<x>`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.api import (  # noqa: E402
    SCALE_APPS,
    THREADS,
    WARMUP_S,
    Run,
    fill_store,
    measure,
    scale_requests,
    write_scale_script,
)
from bench.loadgen import REPO, Server, load, tool_name  # noqa: E402


def unpack(rev: str, into: Path) -> str:
    """The tree of `rev` written under `into`; returns the commit's short name."""
    commit = subprocess.run(["git", "rev-parse", "--short", f"{rev}^{{commit}}"], cwd=REPO,
                            check=True, capture_output=True, text=True).stdout.strip()
    into.mkdir(parents=True)
    archive = subprocess.Popen(["git", "archive", commit], cwd=REPO, stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(into)], stdin=archive.stdout, check=True)
    if archive.wait() != 0:
        raise RuntimeError(f"git archive {commit} failed")
    return commit


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, help="the git revision to compare against")
    p.add_argument("--rounds", type=int, default=16)
    p.add_argument("--duration", type=float, default=4.0, help="seconds of each run")
    p.add_argument("--connections", type=int, default=8)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="accessd-api-ab-"))
    servers: dict[str, Server] = {}
    try:
        commit = unpack(args.base, work / "base")
        fill_store(work / "base.db", SCALE_APPS, 0)
        shutil.copy(work / "base.db", work / "this.db")
        script = write_scale_script(work)
        for name, pythonpath in (("base", str(work / "base")), ("this", None)):
            env = {"ACCESSD_API_STATE": str(work / f"{name}.db"), "ACCESSD_LOG_LEVEL": "WARNING"}
            servers[name] = Server("api.app:get_app()", env, work / f"{name}.log",
                                   threads=THREADS, pythonpath=pythonpath)
        print(f"load: {tool_name()}, {args.connections} connections, {args.duration:.0f}s per "
              f"run; base {commit}, this tree", file=sys.stderr)
        for server in servers.values():   # warm-up, not measured (as bench/api.py)
            load(server.url + "/", WARMUP_S, args.connections, script=script,
                 make_request=scale_requests(server.url))
        runs: dict[str, list[Run]] = {"base": [], "this": []}
        for r in range(args.rounds):
            for name in ("base", "this") if r % 2 == 0 else ("this", "base"):
                server = servers[name]
                run = measure(server, server.url + "/", args.duration, args.connections, script,
                              scale_requests(server.url), writes=False)
                runs[name].append(run)
                print(f"round {r + 1} {name}: {run.describe(args.duration)}", file=sys.stderr)
        ratios = [t.rps / b.rps for b, t in zip(runs["base"], runs["this"], strict=True)]
        base_rps = statistics.median(run.rps for run in runs["base"])
        rps = statistics.median(run.rps for run in runs["this"])
        ratio = statistics.median(ratios)
        print(f"scale PUTs, median of {args.rounds} rounds: base {base_rps:.0f} req/s, this tree "
              f"{rps:.0f} req/s; this / base per round {' '.join(f'{x:.2f}' for x in ratios)}",
              file=sys.stderr)
        print(f"RESULT rounds={args.rounds} base_rps={base_rps:.0f} rps={rps:.0f} "
              f"paired_ratio={ratio:.2f} paired_ratio_min={min(ratios):.2f} "
              f"paired_ratio_max={max(ratios):.2f}")
        return 0
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
