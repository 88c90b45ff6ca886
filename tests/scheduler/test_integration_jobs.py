"""Chronos-style jobs on localmesos with the real scheduler: on time, retries, dependencies,
exactly once across a SIGKILL'd scheduler, and kills. Jobs are written to the store the way
`api.jobs` writes them (definition + version, one transaction)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from scheduler.jobs.plan import epoch, iso
from scheduler.jobs.spec import parse_job
from tests.fixtures_scheduler import scheduler_cluster, start_scheduler
from tests.support import wait_until


@pytest.fixture
def cluster(tmp_path):
    box = {}
    with scheduler_cluster(tmp_path) as (mesos, store, sched):
        box["sched"] = sched
        try:
            yield mesos, store, box, tmp_path
        finally:
            if box["sched"] is not sched:  # a test replaced the scheduler: stop the new one
                box["sched"].stop()


def add_job(store, doc, kind=None):
    now = time.time()
    spec = parse_job(doc, kind=kind, now=now)
    store.write_jobs([dict(spec.to_json(), version=iso(now))])
    return spec


def runs(store, job, state=None):
    out = [r for r in store.list_job_runs(job) if state is None or r["state"] == state]
    return sorted(out, key=lambda r: (r["scheduledAt"], r["attempt"]))


def sandbox_stdout(mesos_work: Path, task_id: str) -> str:
    for path in mesos_work.glob(f"**/executors/{task_id}/runs/*/stdout"):
        return path.read_text()
    return ""


def test_a_job_every_2s_runs_on_time_with_its_output_in_the_sandbox(cluster):
    mesos, store, box, work = cluster
    start = time.time() + 2
    add_job(store, {"name": "tick", "command": "echo tick-$CHRONOS_JOB_RUN_TIME",
                    "schedule": f"R/{iso(start)}/PT2S", "epsilon": "PT10S", "cpus": 0.1,
                    "mem": 16, "disk": 0})
    wait_until(lambda: len(runs(store, "tick", "succeeded")) >= 4, timeout=30,
               message="4 successful runs")
    done = runs(store, "tick", "succeeded")
    slots = [r["scheduledAt"] for r in runs(store, "tick") if r["state"] != "skipped"]
    assert len(slots) == len(set(slots)), "a slot ran twice"
    assert [r["state"] for r in runs(store, "tick", "skipped")] == []
    for r in done[:4]:
        late = epoch(r["stagedAt"]) - epoch(r["scheduledAt"])
        assert 0 <= late < 1.0, (r["id"], late)
        k = (epoch(r["scheduledAt"]) - start) / 2
        assert k == pytest.approx(round(k), abs=0.001)  # a slot of the schedule
        out = sandbox_stdout(work / "mesos", r["id"])
        assert f"tick-{r['scheduledAt']}" in out, (r["id"], out)
    status = store.get_job_status("tick")
    assert status["successCount"] >= 4 and status["errorCount"] == 0
    assert box["sched"].popen.poll() is None


def test_a_failing_job_is_retried_retries_times(cluster):
    mesos, store, box, work = cluster
    add_job(store, {"name": "flaky", "command": "echo attempt $CHRONOS_JOB_RUN_ATTEMPT; exit 3",
                    "schedule": f"R1/{iso(time.time() + 1)}/PT1H", "retries": 2, "mem": 16,
                    "disk": 0})
    wait_until(lambda: (store.get_job_status("flaky") or {}).get("errorCount") == 1,
               timeout=30, message="the job's error counted")
    attempts = runs(store, "flaky")
    assert [(r["attempt"], r["state"], r["exitCode"]) for r in attempts] == [
        (0, "failed", 3), (1, "failed", 3), (2, "failed", 3)]
    assert len({r["scheduledAt"] for r in attempts}) == 1  # all for the one slot
    time.sleep(1.5)  # a fourth attempt would have been queued by now (a round is 0.25 s)
    assert len(runs(store, "flaky")) == 3
    assert store.get_job_status("flaky")["lastRunState"] == "failed"


def test_a_child_runs_only_after_all_its_parents_succeeded(cluster):
    mesos, store, box, work = cluster
    at = iso(time.time() + 1)
    add_job(store, {"name": "fast", "command": "sleep 0.2", "schedule": f"R1/{at}/PT1H",
                    "mem": 16, "disk": 0})
    add_job(store, {"name": "slow", "command": "sleep 2", "schedule": f"R1/{at}/PT1H",
                    "mem": 16, "disk": 0})
    add_job(store, {"name": "child", "command": "echo child", "parents": ["fast", "slow"],
                    "mem": 16, "disk": 0}, kind="dependency")
    (child,) = wait_until(lambda: runs(store, "child", "succeeded") or None, timeout=30,
                          message="the child ran")
    (fast,) = runs(store, "fast", "succeeded")
    (slow,) = runs(store, "slow", "succeeded")
    assert epoch(child["scheduledAt"]) >= epoch(slow["finishedAt"]) - 0.001
    assert epoch(child["stagedAt"]) >= epoch(slow["finishedAt"])
    assert epoch(slow["finishedAt"]) > epoch(fast["finishedAt"])
    time.sleep(1.0)
    assert len(runs(store, "child")) == 1  # the parents have not succeeded again


def test_sigkilled_scheduler_runs_each_slot_exactly_once(cluster):
    mesos, store, box, work = cluster
    start = time.time() + 1
    add_job(store, {"name": "every3", "command": "echo $CHRONOS_JOB_RUN_TIME",
                    "schedule": f"R/{iso(start)}/PT3S", "epsilon": "PT30S", "mem": 16,
                    "disk": 0})
    wait_until(lambda: len(runs(store, "every3", "succeeded")) >= 1, timeout=20,
               message="a first run")
    # kill -9 just before the next instant, come back just after it
    nxt = start + 3 * (1 + int((time.time() - start) // 3))
    time.sleep(max(0.0, nxt - time.time() - 0.3))
    old = box["sched"]
    old.signal(signal.SIGKILL)
    old.popen.wait(10)
    time.sleep(max(0.0, nxt + 0.8 - time.time()))
    box["sched"] = start_scheduler(mesos.master, work / "state.db", ["--refuse-seconds", "1"])
    # the missed slot runs late (within epsilon), once; later slots on time
    wait_until(lambda: any(r["scheduledAt"] == iso(nxt) and r["state"] == "succeeded"
                           for r in runs(store, "every3")), timeout=20,
               message="the slot missed while the scheduler was down")
    wait_until(lambda: any(epoch(r["scheduledAt"]) >= nxt + 6 and r["state"] == "succeeded"
                           for r in runs(store, "every3")), timeout=20,
               message="two more slots after the restart")
    # a second kill -9 right after a slot was recorded, whatever state its launch was in
    wait_until(lambda: any(r["state"] == "queued" or r["state"] == "staging"
                           for r in runs(store, "every3")), timeout=10, interval=0.01,
               message="a slot recorded")
    box["sched"].signal(signal.SIGKILL)
    box["sched"].popen.wait(10)
    box["sched"] = start_scheduler(mesos.master, work / "state.db", ["--refuse-seconds", "1"])
    horizon = time.time() + 4
    wait_until(lambda: all(r["state"] in ("succeeded", "skipped")
                           for r in runs(store, "every3") if epoch(r["scheduledAt"]) <= horizon)
               and any(epoch(r["scheduledAt"]) > horizon for r in runs(store, "every3")),
               timeout=30, message="every slot up to the horizon done")
    history = [r for r in runs(store, "every3") if epoch(r["scheduledAt"]) <= horizon]
    slots = [round((epoch(r["scheduledAt"]) - start) / 3) for r in history]
    assert slots == list(range(len(slots))), f"each slot exactly once: {slots}"
    assert all(r["state"] == "succeeded" and r["attempt"] == 0 for r in history)
    # and the cluster ran each slot's task once: one sandbox (container run) per task id,
    # and no task the store does not know
    launched: dict[str, int] = {}
    for path in (work / "mesos").glob("**/executors/ct:*/runs/*/stdout"):
        task_id = path.parent.parent.parent.name
        launched[task_id] = launched.get(task_id, 0) + 1
    assert all(launched.get(r["id"]) == 1 for r in history), launched
    assert set(launched) <= {r["id"] for r in runs(store, "every3")}


def test_kill_of_a_running_job(cluster):
    mesos, store, box, work = cluster
    add_job(store, {"name": "long", "command": "sleep 60",
                    "schedule": f"R1/{iso(time.time() + 1)}/PT1H", "retries": 2, "mem": 16,
                    "disk": 0})
    (run,) = wait_until(lambda: runs(store, "long", "running") or None, timeout=20,
                        message="the job running")
    store.request_job_action("long", "kill", iso(time.time()))  # DELETE /task/kill/long
    wait_until(lambda: runs(store, "long")[0]["state"] == "killed", timeout=20,
               message="the run killed")
    assert runs(store, "long")[0]["taskState"] == "TASK_KILLED"
    time.sleep(1.0)
    assert len(runs(store, "long")) == 1  # a kill is not retried
    tasks = [t for f in mesos.state()["frameworks"] for t in f.get("tasks", [])
             if t["id"] == run["id"]]
    assert all(t["state"] != "TASK_RUNNING" for t in tasks)


def test_run_with_arguments_and_mark_success_through_the_scheduler(cluster):
    """What `PUT /job/{name}?arguments=` and `PUT /job/success/{name}` queue (see
    tests/api/test_jobs_api.py), carried out by the real scheduler."""
    mesos, store, box, work = cluster
    later = "R1/2030-01-01T00:00:00Z/PT1H"
    add_job(store, {"name": "echoer", "command": "echo got", "schedule": later, "mem": 16,
                    "disk": 0})
    add_job(store, {"name": "upstream", "command": "true", "schedule": later, "mem": 16,
                    "disk": 0})
    add_job(store, {"name": "downstream", "command": "echo downstream", "parents": ["upstream"],
                    "mem": 16, "disk": 0}, kind="dependency")
    store.request_job_action("echoer", "run", iso(time.time()), arguments="hello-arg")
    # a parent's success counts for a child defined before it: times are in ms, so mark it
    # once the clock has left the millisecond the child was defined in
    defined = store.get_job("downstream")["version"]
    wait_until(lambda: iso(time.time()) > defined, timeout=5, message="the next millisecond")
    store.request_job_action("upstream", "success", iso(time.time()))
    (run,) = wait_until(lambda: runs(store, "echoer", "succeeded") or None, timeout=30,
                        message="the manual run succeeded")
    assert run["arguments"] == "hello-arg"
    assert "got hello-arg" in sandbox_stdout(work / "mesos", run["id"])
    wait_until(lambda: runs(store, "downstream", "succeeded") or None, timeout=30,
               message="the dependent ran after its parent was marked successful")
    assert runs(store, "upstream") == []  # marked, never run
    assert store.get_job_status("upstream")["successCount"] == 1


def test_a_jobs_fetch_lands_in_its_sandbox_before_the_command(cluster):
    mesos, store, box, work = cluster
    script = work / "hello.sh"
    script.write_text("#!/bin/sh\necho fetched-and-ran\n")
    add_job(store, {"name": "fetcher", "command": "./hello", "mem": 16, "disk": 0,
                    "schedule": f"R1/{iso(time.time() + 1)}/PT1H",
                    "fetch": [{"uri": f"file://{script}", "executable": True, "extract": False,
                               "outputFile": "hello"}]})
    (run,) = wait_until(lambda: runs(store, "fetcher", "succeeded") or None, timeout=30,
                        message="the job ran its fetched script")
    assert "fetched-and-ran" in sandbox_stdout(work / "mesos", run["id"])
