"""Leader failover under load, and the 1,000-app read from the ZooKeeper store.

    .venv/bin/python bench/failover.py [--kills 20] [--session-timeout 3] [--embed-runs 5]
    .venv/bin/python bench/failover.py --read-only   # part 2 alone

1. A 3-server ZooKeeper ensemble, localmesos, two schedulers and the API on one `zk://` store
   (all on 127.0.0.1). An app runs 3 instances. `--kills` times: the API starts the next step
   of a scale-up / scale-down / rolling-restart sequence, the leader is killed with SIGKILL
   shortly after, and the time from the kill until another scheduler has subscribed with the
   stored framework id and reconciled (its log says `reconciling`) is one failover sample; the
   killed one is started again as a standby. A sampler reads `GET /v2/leader` and every
   scheduler's log every 0.1 s throughout: `max_leaders` is the most schedulers leading at one
   sampled instant (elected and not yet stepped down). At the end, once every deployment has
   finished: `lost` counts the framework's tasks Mesos ended other than by our kills
   (FAILED/LOST/ERROR/DROPPED/GONE...), `duplicates` the live tasks beyond the app's instances
   plus any task in Mesos but not in the store or the other way round.
2. A store with 1,000 apps and 10,000 tasks written to the same ensemble, then the median time
   of `GET /v2/apps?embed=apps.tasks` (view cache off) on an API over that ZooKeeper store, next
   to the same documents in a SQLite store, in the same run.

Last line: `RESULT failover_s=<median> session_timeout_s=<s> kills=<n> lost=<n>
duplicates=<n> max_leaders=<n> zk_embed_10k_tasks_ms=<n> sqlite_embed_10k_tasks_ms=<n>`.
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.api import app_doc, task_doc  # noqa: E402
from scheduler.spec import iso_now, parse_app, stamp_app  # noqa: E402
from scheduler.state import Put, StateStore, Transaction  # noqa: E402
from scheduler.stores import open_state  # noqa: E402
from tests.fixtures_api import start_api  # noqa: E402
from tests.fixtures_ha import HaCluster  # noqa: E402
from tests.fixtures_zk import start_ensemble  # noqa: E402
from tests.support import wait_until  # noqa: E402

APP = "/bench/web"
KILLED_OK = {"TASK_KILLED", "TASK_FINISHED"}


class Sampler(threading.Thread):
    def __init__(self, ha: HaCluster) -> None:
        super().__init__(daemon=True)
        self.ha = ha
        self.stop_event = threading.Event()
        self.max_leaders = 0
        self.samples = 0
        self.no_leader = 0

    def run(self) -> None:
        while not self.stop_event.wait(0.1):
            self.max_leaders = max(self.max_leaders, self.ha.leading_count())
            try:
                if self.ha.leader() is None:
                    self.no_leader += 1
            except requests.RequestException:
                pass
            self.samples += 1


def step(ha: HaCluster, i: int) -> None:
    kind = i % 3
    if kind == 0:
        body, path = {"instances": 5}, f"/v2/apps{APP}?force=true"
    elif kind == 1:
        body, path = {"instances": 3}, f"/v2/apps{APP}?force=true"
    else:
        r = requests.post(f"{ha.api}/v2/apps{APP}/restart?force=true", timeout=15)
        assert r.status_code == 200, r.text
        return
    r = requests.put(ha.api + path, json=body, timeout=15)
    assert r.status_code == 200, r.text


def failover_run(work: Path, kills: int, session_timeout: float) -> dict:
    ha = HaCluster(work / "ha", session_timeout=session_timeout)
    try:
        ha.start(schedulers=2, apis=1)
        r = requests.post(ha.api + "/v2/apps", json={
            "id": APP, "cmd": "sleep 3600", "cpus": 0.1, "mem": 16, "executor": "//cmd",
            "instances": 3}, timeout=15)
        assert r.status_code == 201, r.text
        wait_until(lambda: ha.deployments_done() and ha.consistent(APP, 3), timeout=60)
        sampler = Sampler(ha)
        sampler.start()
        samples = []
        for i in range(kills):
            step(ha, i)
            time.sleep(random.uniform(0.0, 1.0))  # kill at some point of the deployment
            old = ha.leader()
            ha.schedulers[old].signal(signal.SIGKILL)
            killed = time.monotonic()
            new = ha.wait_new_leader(old, timeout=session_timeout + 30)
            samples.append(time.monotonic() - killed)
            print(f"kill {i + 1}/{kills}: {old} -> {new} in {samples[-1]:.2f}s",
                  file=sys.stderr)
            ha.add_scheduler().wait_for_line(lambda t: "waiting to be elected" in t, 60)
        app = requests.get(f"{ha.api}/v2/apps{APP}", timeout=10).json()["app"]
        instances = app["instances"]
        wait_until(lambda: ha.deployments_done() and ha.consistent(APP, instances),
                   timeout=120, interval=0.5, message="the last deployment to finish")
        sampler.stop_event.set()
        sampler.join()
        state = ha.mesos.state()
        done = [t for fw in state.get("frameworks", []) + state.get("completed_frameworks", [])
                if fw.get("id") == ha.framework_id for t in fw.get("completed_tasks", [])]
        lost = sum(1 for t in done if t.get("state") not in KILLED_OK)
        prefix = APP.strip("/").replace("/", "_") + "."
        in_mesos = ha.mesos_ids(prefix)
        in_store = {t["id"] for t in ha.store.list_tasks(APP)}
        duplicates = len(in_mesos ^ in_store) + max(0, len(in_mesos) - instances)
        return {"failover_s": statistics.median(samples), "max_s": max(samples),
                "kills": kills, "lost": lost, "duplicates": duplicates,
                "max_leaders": sampler.max_leaders, "no_leader_samples": sampler.no_leader,
                "samples": sampler.samples, "zk": ha.zk, "ha": ha}
    except BaseException:
        ha.stop()
        raise


def fill(store: StateStore, apps: int, per_app: int) -> None:
    """Apps as the API stores them and tasks as the scheduler does, 100 documents a
    transaction (the same operations for both backends)."""
    ops: list[Put] = []

    def flush() -> None:
        batch = tuple(ops)
        store.transact(lambda r: (Transaction(batch, bump_generation=True), None))
        ops.clear()

    for i in range(apps):
        doc = stamp_app(parse_app(app_doc(f"/bench/app{i}", per_app)).to_json(), None,
                        iso_now(), scale_only=False)
        ops.append(Put("apps", doc["id"], doc))
        for n in range(per_app):
            task = task_doc(doc, i * per_app + n)
            ops.append(Put("tasks", task["id"], task))
        if len(ops) >= 100:
            flush()
    if ops:
        flush()


def embed_ms(state: str, runs: int) -> float:
    api, base = start_api(state, workers=1, env={"ACCESSD_API_VIEW_CACHE_SECONDS": "0"},
                          timeout=120)
    try:
        times = []
        with requests.Session() as s:
            for _ in range(runs + 1):
                t0 = time.perf_counter()
                r = s.get(base + "/v2/apps", params={"embed": "apps.tasks"}, timeout=120)
                times.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200, r.text[:300]
        doc = r.json()
        assert len(doc["apps"]) == 1000 and sum(len(a["tasks"]) for a in doc["apps"]) == 10000
        return statistics.median(times[1:])  # the first one also opens (loads) the store
    finally:
        api.stop()


def read_bench(zk: Any, work: Path, runs: int) -> tuple[float, float]:
    """Part 2: the same 1,000 apps / 10,000 tasks in `zk` (an ensemble) and in a SQLite file;
    the median `GET /v2/apps?embed=apps.tasks` time of each, in ms."""
    zk_store = open_state(zk.url("/bench10k"))
    sqlite_store = open_state(str(work / "bench10k.db"))
    t0 = time.monotonic()
    fill(zk_store, 1000, 10)
    print(f"ZooKeeper store filled in {time.monotonic() - t0:.1f}s", file=sys.stderr)
    fill(sqlite_store, 1000, 10)
    zk_store.close()
    sqlite_store.close()
    zk_ms = embed_ms(zk.url("/bench10k"), runs)
    sqlite_ms = embed_ms(str(work / "bench10k.db"), runs)
    print(f"GET /v2/apps?embed=apps.tasks, 1000 apps / 10000 tasks: ZooKeeper {zk_ms:.0f} "
          f"ms, SQLite {sqlite_ms:.0f} ms (median of {runs})", file=sys.stderr)
    return zk_ms, sqlite_ms


def read_only(runs: int) -> int:
    """`--read-only`: part 2 alone, on its own 3-server ensemble."""
    work = Path(tempfile.mkdtemp(prefix="accessd-read-"))
    ensemble = start_ensemble(work / "zk")
    try:
        zk_ms, sqlite_ms = read_bench(ensemble, work, runs)
        print(f"RESULT zk_embed_10k_tasks_ms={zk_ms:.0f} sqlite_embed_10k_tasks_ms={sqlite_ms:.0f}")
        return 0
    finally:
        ensemble.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--session-timeout", type=float, default=3.0)
    p.add_argument("--embed-runs", type=int, default=5)
    p.add_argument("--read-only", action="store_true",
                   help="only part 2, the 1,000-app read (no failover run)")
    args = p.parse_args()
    if args.read_only:
        return read_only(args.embed_runs)
    work = Path(tempfile.mkdtemp(prefix="accessd-failover-"))
    ha = None
    try:
        result = failover_run(work, args.kills, args.session_timeout)
        ha = result.pop("ha")
        zk = result.pop("zk")
        print(f"failover median {result['failover_s']:.2f}s max {result['max_s']:.2f}s over "
              f"{args.kills} kills; {result['samples']} leader samples, "
              f"{result['no_leader_samples']} without a leader, at most "
              f"{result['max_leaders']} leading at once", file=sys.stderr)
        for proc in list(ha.schedulers.values()):  # the read bench needs the CPUs
            proc.stop()
        ha.mesos.stop()
        ha.mesos = None
        zk_ms, sqlite_ms = read_bench(zk, work, args.embed_runs)
        print(f"RESULT failover_s={result['failover_s']:.2f} "
              f"session_timeout_s={args.session_timeout:g} kills={result['kills']} "
              f"lost={result['lost']} duplicates={result['duplicates']} "
              f"max_leaders={result['max_leaders']} zk_embed_10k_tasks_ms={zk_ms:.0f} "
              f"sqlite_embed_10k_tasks_ms={sqlite_ms:.0f}")
        return 0
    finally:
        if ha is not None:
            ha.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
