"""Benchmark of Chronos-style jobs: many jobs on 1-second schedules on localmesos under the real
scheduler.

    .venv/bin/python bench/jobs.py [--jobs 100] [--duration 60] [--baseline-duration 15] [--zk]
                                   [--profile DIR]

`--zk`: the scheduler and the bench on a ZooKeeper state store (one local server, Debian's
`zookeeper` package) instead of the SQLite file; the RESULT line then says `store=zk`.

1. baseline, in the same run: one job (`true`) every second for `--baseline-duration` s;
2. `--jobs` jobs every second for `--duration` s, their instants spread over the second.

For each phase: the start delay of every run (the scheduler seeing TASK_RUNNING minus the
slot's instant) p50/p99, and, for every slot whose instant fell in the measured window, whether
it ran exactly once: `missed` counts slots with no run (or recorded as skipped), `duplicates`
extra runs of a slot. Jobs are written to the state store as the API writes them. All
processes run on 127.0.0.1 and share this machine's CPUs with the job tasks themselves (each
run is a `/bin/sh -c true` process). The last line is
`RESULT job_start_p99_ms=<n> job_start_p50_ms=<n> missed=<n> duplicates=<n>
baseline_p99_ms=<n> ratio=<p99/baseline p99> sched_cpu_ms_per_run=<n> mesos_cpu_ms_per_run=<n>
load=<1-min load average, mean of the phase's start and end> store=sqlite|zk` (the CPU figures:
the scheduler's and localmesos's own CPU time in the 100-job phase, per run).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.loadgen import cpu_seconds  # noqa: E402
from scheduler.jobs.plan import epoch, iso  # noqa: E402
from scheduler.jobs.spec import parse_job  # noqa: E402
from scheduler.stores import open_state  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "accessd.cli", *args], cwd=REPO,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT,  # noqa: SIM115
                            start_new_session=True)


def wait_for(log: Path, text: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise SystemExit(f"{log.name}: exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    raise SystemExit(f"{log.name}: no {text!r} within {timeout}s")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def start_profiles(pids: dict[str, int], out_dir: Path) -> list[subprocess.Popen]:
    """py-spy (`.venv/bin/py-spy`, from `tools/bench-deps.sh`) on the scheduler and localmesos,
    as collapsed stacks (`<name>.txt`, one line a stack and its sample count)."""
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        raise SystemExit(f"--profile: {spy} is missing (bash tools/bench-deps.sh installs it)")
    out_dir.mkdir(parents=True, exist_ok=True)
    return [subprocess.Popen([str(spy), "record", "--pid", str(pid), "--format", "raw",
                              "--threads", "--rate", "100", "--nonblocking",
                              "-o", str(out_dir / f"{name}.txt")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for name, pid in pids.items()]


def stop_profiles(profilers: list[subprocess.Popen]) -> None:
    for proc in profilers:
        proc.send_signal(signal.SIGINT)
    for proc in profilers:
        proc.wait(60)


def phase(store, prefix: str, n: int, duration: float, pids: dict[str, int],
          profile: Path | None = None) -> dict:
    """Add `n` jobs every 1 s for `duration` s, then measure their slots and delays (and the
    CPU time the scheduler and localmesos spent meanwhile: a figure the machine's load does
    not move much, unlike the delays)."""
    cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
    load0 = os.getloadavg()[0]
    now = time.time()
    start = int(now) + 2
    docs = []
    for i in range(n):
        offset = i / n  # spread the instants over the second
        doc = {"name": f"{prefix}{i:03d}", "command": "true", "cpus": 0.01, "mem": 1,
               "disk": 0, "epsilon": "PT30S", "retries": 0,
               "schedule": f"R/{iso(start + offset)}/PT1S"}
        docs.append(dict(parse_job(doc, now=now).to_json(), version=iso(now)))
    store.write_jobs(docs)
    end = start + duration
    profilers = start_profiles(pids, profile) if profile else []
    time.sleep(max(0.0, end - time.time()))
    stop_profiles(profilers)
    names = [d["name"] for d in docs]
    # stop: disabled jobs start nothing new; runs in flight finish
    store.write_jobs([dict(d, disabled=True) for d in docs])
    time.sleep(3)
    cpu = {name: cpu_seconds(pid) - cpu0[name] for name, pid in pids.items()}
    delays, missed, duplicates, total = [], 0, 0, 0
    for i, name in enumerate(names):
        runs = store.list_job_runs(name)
        per_slot: dict[str, int] = {}
        for r in runs:
            at = epoch(r["scheduledAt"])
            if at is None or at > end - 2:  # slots near the end may not have started yet
                continue
            if r["state"] == "skipped":  # counted as missed: no run for those slots
                continue
            if r["attempt"] == 0:
                per_slot[r["scheduledAt"]] = per_slot.get(r["scheduledAt"], 0) + 1
            started = epoch(r.get("startedAt"))
            if started is not None and r["attempt"] == 0:
                delays.append(started - at)
        expected = int(end - 2 - (start + i / n)) + 1
        total += expected
        missed += max(0, expected - len(per_slot))
        duplicates += sum(c - 1 for c in per_slot.values() if c > 1)
    for name in names:  # one job a write, as the API deletes them
        store.write_jobs(delete=[name])
    return {"p50": percentile(delays, 0.5) * 1000, "p99": percentile(delays, 0.99) * 1000,
            "runs": len(delays), "slots": total, "missed": missed, "duplicates": duplicates,
            "cpu": cpu, "load": (load0 + os.getloadavg()[0]) / 2}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=100)
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--baseline-duration", type=float, default=15.0)
    p.add_argument("--keep", metavar="DIR", help="work in DIR and keep the logs")
    p.add_argument("--zk", action="store_true", help="use a ZooKeeper state store")
    p.add_argument("--profile", metavar="DIR", type=Path,
                   help="record the scheduler and localmesos with py-spy during the "
                        "many-jobs phase (collapsed stacks in DIR)")
    opts = p.parse_args()
    zk = None
    with tempfile.TemporaryDirectory(prefix="accessd-bench-jobs-") as tmp:
        work = Path(opts.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        port = free_port()
        mesos = spawn(["localmesos", "--port", str(port), "--agents", "3", "--work-dir",
                       str(work / "mesos"), "--resources",
                       "cpus:4;mem:4096;disk:10000;ports:[21000-21099]"], work / "mesos.log")
        sched = None
        state = str(work / "state.db")
        try:
            if opts.zk:
                from tests.fixtures_zk import start_zookeeper

                zk = start_zookeeper(work)
                state = zk.url("/accessd-bench")
            wait_for(work / "mesos.log", "ready master=", mesos)
            sched = spawn(["scheduler", "--master", f"127.0.0.1:{port}", "--state",
                           state, "--refuse-seconds", "1"],
                          work / "scheduler.log")
            wait_for(work / "scheduler.log", "registered framework_id=", sched)
            store = open_state(state)
            print(f"baseline: 1 job every 1 s for {opts.baseline_duration:g} s", flush=True)
            pids = {"sched": sched.pid, "mesos": mesos.pid}
            base = phase(store, "base", 1, opts.baseline_duration, pids)
            print(f"  {base}", flush=True)
            print(f"{opts.jobs} jobs every 1 s for {opts.duration:g} s", flush=True)
            many = phase(store, "job", opts.jobs, opts.duration, pids, opts.profile)
            print(f"  {many}", flush=True)
            store.close()
        finally:
            for proc in (sched, mesos):
                if proc is not None and proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)
                    try:
                        proc.wait(20)
                    except subprocess.TimeoutExpired:
                        os.killpg(proc.pid, signal.SIGKILL)
            if zk is not None:
                zk.stop()
    ratio = many["p99"] / base["p99"] if base["p99"] > 0 else float("nan")
    print(f"start delay p50 {many['p50']:.0f} ms, p99 {many['p99']:.0f} ms over {many['runs']} "
          f"runs of {many['slots']} slots (baseline p99 {base['p99']:.0f} ms)")
    print(f"RESULT job_start_p99_ms={many['p99']:.0f} job_start_p50_ms={many['p50']:.0f} "
          f"missed={many['missed']} duplicates={many['duplicates']} "
          f"baseline_p99_ms={base['p99']:.0f} ratio={ratio:.2f} "
          f"sched_cpu_ms_per_run={1000 * many['cpu']['sched'] / max(1, many['runs']):.1f} "
          f"mesos_cpu_ms_per_run={1000 * many['cpu']['mesos'] / max(1, many['runs']):.1f} "
          f"load={many['load']:.1f} store={'zk' if opts.zk else 'sqlite'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
