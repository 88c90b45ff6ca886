"""Chronos-style jobs on the HA setup (a real 3-server ZooKeeper ensemble, localmesos, two
schedulers, the API on the ZooKeeper store): a job posted through the Chronos API runs each
slot exactly once across `kill -9`s of the leader, one before a slot's time and one right
after a slot was recorded, whatever state its launch was in."""

from __future__ import annotations

import signal
import time

import pytest
import requests

from scheduler.jobs.plan import epoch, iso
from tests.fixtures_ha import HaCluster, running_ha_cluster
from tests.support import wait_until

JOB = "every3"
PAUSED_JOB = "every3-paused"   # the pause test's own job: it needs no other test's job


@pytest.fixture(scope="module")
def ha(tmp_path_factory):
    with running_ha_cluster(tmp_path_factory.mktemp("ha-jobs")) as cluster:
        yield cluster


def runs(ha: HaCluster, state: str | None = None, job: str = JOB) -> list[dict]:
    out = [r for r in ha.store.list_job_runs(job) if state is None or r["state"] == state]
    return sorted(out, key=lambda r: (r["scheduledAt"], r["attempt"]))


def post_every_3s(ha: HaCluster, name: str) -> float:
    """Post job `name`, every 3 s from 2 s from now; its first instant."""
    start = time.time() + 2
    r = requests.post(f"{ha.api}/v1/scheduler/iso8601", json={
        "name": name, "command": "echo $CHRONOS_JOB_RUN_TIME", "schedule": f"R/{iso(start)}/PT3S",
        "epsilon": "PT30S", "cpus": 0.1, "mem": 16, "disk": 0}, timeout=15)
    assert r.status_code == 204, r.text
    return start


def kill_leader(ha: HaCluster) -> str:
    old = ha.leader()
    ha.schedulers[old].signal(signal.SIGKILL)
    ha.schedulers[old].popen.wait(10)
    new = ha.wait_new_leader(old, timeout=ha.session_timeout + 15)
    ha.add_scheduler().wait_for_line(lambda line: "waiting to be elected" in line, 30)
    return new


def test_a_jobs_slots_run_exactly_once_across_leader_kills(ha):
    start = post_every_3s(ha, JOB)
    wait_until(lambda: len(runs(ha, "succeeded")) >= 1, timeout=30, message="a first run")

    # kill -9 the leader just before the next instant: the standby runs the slot, late, once
    nxt = start + 3 * (1 + int((time.time() - start) // 3))
    time.sleep(max(0.0, nxt - time.time() - 0.3))
    kill_leader(ha)
    wait_until(lambda: any(r["scheduledAt"] == iso(nxt) and r["state"] == "succeeded"
                           for r in runs(ha)), timeout=30,
               message="the slot due while there was no leader")

    # kill -9 the leader right after it recorded a slot, whatever state its launch was in
    wait_until(lambda: any(r["state"] in ("queued", "staging") for r in runs(ha)), timeout=10,
               interval=0.01, message="a slot recorded")
    kill_leader(ha)
    horizon = time.time() + 4
    wait_until(lambda: all(r["state"] in ("succeeded", "skipped")
                           for r in runs(ha) if epoch(r["scheduledAt"]) <= horizon)
               and any(epoch(r["scheduledAt"]) > horizon for r in runs(ha)),
               timeout=40, message="every slot up to the horizon done")

    history = [r for r in runs(ha) if epoch(r["scheduledAt"]) <= horizon]
    slots = [round((epoch(r["scheduledAt"]) - start) / 3) for r in history]
    assert slots == list(range(len(slots))), f"each slot exactly once: {slots}"
    assert all(r["state"] == "succeeded" and r["attempt"] == 0 for r in history), history
    # the cluster ran each slot's task once: one sandbox per task id, none the store lacks
    launched: dict[str, int] = {}
    for path in (ha.work / "mesos").glob(f"**/executors/ct:*:{JOB}:/runs/*/stdout"):
        task_id = path.parent.parent.parent.name
        launched[task_id] = launched.get(task_id, 0) + 1
    assert all(launched.get(r["id"]) == 1 for r in history), launched
    assert set(launched) <= {r["id"] for r in runs(ha)}
    # the Chronos API on the ZooKeeper store counts them
    (job,) = [j for j in requests.get(f"{ha.api}/v1/scheduler/jobs", timeout=10).json()
              if j["name"] == JOB]
    assert job["successCount"] >= len(history)
    assert job["errorCount"] == 0


def _staged_at(line: str) -> float:
    """When a "launching job J run ct:<scheduled ms>:<attempt>:J: on H (<late>s after its
    time)" line's run was staged: its slot's instant plus the lateness."""
    run_id = line.split(" run ", 1)[1].split(" on ", 1)[0]
    late = float(line.rsplit("(", 1)[1].split("s after", 1)[0])
    return int(run_id.split(":")[1]) / 1000 + late


def test_a_paused_leader_is_fenced_and_launches_no_job_task(ha):
    """SIGSTOP the leader (it may hold a decided round) past its session: the standby takes
    over the schedule; the old one, resumed, records and launches nothing and steps down."""
    def runs_of(state: str | None = None) -> list[dict]:
        return runs(ha, state, PAUSED_JOB)

    post_every_3s(ha, PAUSED_JOB)
    wait_until(lambda: len(runs_of("succeeded")) >= 1, timeout=30, message="a first run")
    old = ha.leader()
    proc = ha.schedulers[old]
    wait_until(lambda: any(r["state"] in ("queued", "staging") for r in runs_of()), timeout=10,
               interval=0.01, message="a slot recorded")
    paused_at = time.time()
    proc.signal(signal.SIGSTOP)
    try:
        new = ha.wait_new_leader(old, timeout=ha.session_timeout + 15)
        done = len(runs_of("succeeded"))
        wait_until(lambda: len(runs_of("succeeded")) >= done + 2, timeout=30,
                   message="two more runs under the new leader")
        mark = len(proc.lines)
    finally:
        proc.signal(signal.SIGCONT)
    proc.wait_for_line(lambda line: "campaigning again" in line, 30)
    horizon = time.time() + 4
    wait_until(lambda: any(epoch(r["scheduledAt"]) > horizon and r["state"] == "succeeded"
                           for r in runs_of()), timeout=30, message="a run after the resume")
    # The pause can fall between a staging write that ZooKeeper applied while the old leader
    # still held its session and the log line that follows it: that run was decided and stored
    # before the pause. Anything staged after the pause would be a write past the fence.
    late = [line for line in proc.lines[mark:] if "launching job" in line
            and _staged_at(line) > paused_at]
    assert not late, f"the resumed old leader stored a launch after its pause: {late}"
    assert ha.leader() == new
    history = [r for r in runs_of() if r["state"] != "skipped"]
    slots = [r["scheduledAt"] for r in history]
    assert len(slots) == len(set(slots)), f"a slot ran twice: {slots}"
    assert all(r["state"] in ("succeeded", "queued", "staging", "running") for r in history)
