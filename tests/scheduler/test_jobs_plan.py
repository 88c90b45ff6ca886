"""Job planning (pure): slots become runs exactly once, dependencies, retries, kills."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.jobs.plan import (
    Job,
    apply_task_status,
    empty_status,
    iso,
    next_due,
    next_run_at,
    plan_round,
)
from scheduler.jobs.spec import parse_job

T0 = 1_790_000_000.0   # a whole second


def sched(name="a", every="PT2S", **kw):
    doc = {"name": name, "command": "true", "schedule": f"R/{iso(T0)}/{every}", **kw}
    return Job(parse_job(doc), T0 - 100)


def dep(name, *parents, **kw):
    return Job(parse_job({"name": name, "command": "true", "parents": list(parents), **kw}),
               T0 - 100)


class World:
    """The store as plain dicts; `round` applies a plan as the runner does."""

    def __init__(self, *jobs):
        self.jobs = {j.spec.name: j for j in jobs}
        self.statuses = {}
        self.runs = {}
        self.requests = []

    def round(self, now):
        plan = plan_round(self.jobs, self.statuses, [r for r in self.runs.values()
                                                     if r["active"]], self.requests, now)
        for rec in plan.records:
            for s in rec.statuses:
                self.statuses[s["name"]] = s
            for r in rec.runs:
                self.runs[r["id"]] = r
            self.requests = [q for q in self.requests if q["seq"] not in rec.done_requests]
        return plan

    def update(self, run_id, state, now, **extra):
        run = self.runs[run_id]
        job = self.jobs.get(run["job"])
        out = apply_task_status(run, self.statuses.get(run["job"]),
                                job.spec if job else None, {"state": state, **extra}, now)
        self.runs[run_id] = out.run
        if out.status:
            self.statuses[run["job"]] = out.status
        if out.retry:
            self.runs[out.retry["id"]] = out.retry
        return out

    def of(self, job, state=None):
        return sorted((r for r in self.runs.values() if r["job"] == job
                       and (state is None or r["state"] == state)),
                      key=lambda r: (r["scheduledAt"], r["attempt"]))


def test_a_slot_is_recorded_once_and_the_round_is_idempotent():
    w = World(sched())
    w.round(T0 - 0.5)
    assert w.of("a") == []
    w.round(T0)
    assert [(r["scheduledAt"], r["state"]) for r in w.of("a")] == [(iso(T0), "queued")]
    assert w.statuses["a"]["nextSlot"] == 1
    before = dict(w.runs)
    assert w.round(T0 + 0.2).records == ()  # nothing new: no write at all
    assert w.runs == before


def test_a_busy_job_defers_its_slot_then_skips_it_after_epsilon():
    w = World(sched(epsilon="PT1S"))
    w.round(T0)
    first = w.of("a")[0]["id"]
    w.round(T0 + 2.5)            # slot 1 due, slot 0 still queued: it waits
    assert len(w.of("a")) == 1 and w.statuses["a"]["nextSlot"] == 1
    w.update(first, "TASK_FINISHED", T0 + 3.5)
    w.round(T0 + 3.5)            # slot 1 now 1.5 s late > epsilon: skipped; slot 2 not due
    skipped = w.of("a", "skipped")
    assert [(s["scheduledAt"], s["skippedCount"]) for s in skipped] == [(iso(T0 + 2), 1)]
    w.round(T0 + 4.0)
    assert [r["scheduledAt"] for r in w.of("a", "queued")] == [iso(T0 + 4)]


def test_after_a_long_outage_old_slots_are_skipped_in_one_record():
    w = World(sched(epsilon="PT3S"))
    w.round(T0)
    w.update(w.of("a")[0]["id"], "TASK_FINISHED", T0 + 0.5)
    w.round(T0 + 1000.5)         # slots 1..498 too old, 499 (T0+998) is 2.5 s late: runs
    (skip,) = w.of("a", "skipped")
    assert skip["skippedCount"] == 499 - 1
    assert [r["scheduledAt"] for r in w.of("a", "queued")] == [iso(T0 + 998)]


def test_dependent_job_runs_once_after_all_parents_succeeded():
    w = World(sched("p1", "PT10S"), sched("p2", "PT10S"), dep("child", "p1", "p2"))
    w.round(T0)
    p1, p2 = w.of("p1")[0]["id"], w.of("p2")[0]["id"]
    w.update(p1, "TASK_FINISHED", T0 + 1)
    w.round(T0 + 1)
    assert w.of("child") == []                # p2 has not succeeded yet
    w.update(p2, "TASK_FAILED", T0 + 2, message="Command exited with status 1")
    w.round(T0 + 2)
    assert w.of("child") == []                # a failure (retry pending) is no success
    retry = [r for r in w.of("p2") if r["attempt"] == 1][0]
    w.update(retry["id"], "TASK_FINISHED", T0 + 3)
    w.round(T0 + 3)
    (run,) = w.of("child")
    assert run["trigger"] == "dependency" and run["scheduledAt"] == iso(T0 + 3)
    w.update(run["id"], "TASK_FINISHED", T0 + 4)
    w.round(T0 + 5)
    assert len(w.of("child")) == 1            # parents have not succeeded again since


def test_retries_then_one_error_counted():
    w = World(sched(retries=2, every="PT1H"))
    w.round(T0)
    for attempt in range(3):
        (run,) = w.of("a", "queued")
        assert run["attempt"] == attempt
        out = w.update(run["id"], "TASK_FAILED", T0 + attempt + 1,
                       message="Command exited with status 3")
        assert out.run["exitCode"] == 3 and out.run["state"] == "failed"
    assert w.of("a", "queued") == []
    assert (w.statuses["a"]["errorCount"], w.statuses["a"]["lastRunState"]) == (1, "failed")
    assert w.statuses["a"]["lastError"] == iso(T0 + 3)


def test_kill_request_kills_launched_runs_and_ends_queued_ones_without_retry():
    w = World(sched(every="PT1H", retries=3), sched("b", "PT1H"))
    w.round(T0)
    a = w.of("a")[0]
    w.runs[a["id"]] = dict(a, state="running")
    w.requests = [{"seq": 1, "job": "a", "action": "kill", "requestedAt": iso(T0 + 1)},
                  {"seq": 2, "job": "b", "action": "kill", "requestedAt": iso(T0 + 1)}]
    plan = w.round(T0 + 1)
    assert plan.kills == (a["id"],)
    assert w.of("b")[0]["state"] == "killed" and not w.of("b")[0]["active"]
    out = w.update(a["id"], "TASK_KILLED", T0 + 2)
    assert out.run["state"] == "killed" and out.retry is None and w.requests == []


def test_manual_run_and_disabled_job():
    w = World(sched(disabled=True))
    w.round(T0 + 10)
    assert w.of("a") == []
    w.requests = [{"seq": 7, "job": "a", "action": "run", "requestedAt": iso(T0 + 11)}]
    w.round(T0 + 11)
    (run,) = w.of("a")
    assert run["trigger"] == "manual" and run["id"].endswith(":m7")
    assert next_run_at(w.jobs["a"], w.statuses["a"], T0 + 11) is None


def test_a_run_the_master_never_heard_of_is_queued_again_not_lost():
    w = World(sched())
    w.round(T0)
    run = w.of("a")[0]
    w.runs[run["id"]] = dict(run, state="staging")
    out = w.update(run["id"], "TASK_LOST", T0 + 1, reason="REASON_RECONCILIATION")
    assert out.run["state"] == "queued" and out.run["active"] and out.run["attempt"] == 0
    # partition-aware: TASK_GONE (the agent does not have it) is "never launched" too
    w.runs[run["id"]] = dict(out.run, state="staging")
    gone = w.update(run["id"], "TASK_GONE", T0 + 1, reason="REASON_RECONCILIATION",
                    message="Reconciliation: Task is unknown to the agent")
    assert gone.run["state"] == "queued" and gone.retry is None
    # TASK_UNKNOWN (agent unknown to the master) may still run: a failure, retried
    w.runs[run["id"]] = dict(gone.run, state="staging")
    unknown = w.update(run["id"], "TASK_UNKNOWN", T0 + 1, reason="REASON_RECONCILIATION",
                       message="Reconciliation: Task is unknown")
    assert unknown.run["state"] == "failed" and unknown.retry["attempt"] == 1
    # a task on an unreachable agent may still run: a failure (retried), never queued again
    w.runs[run["id"]] = dict(out.run, state="staging")
    out2 = w.update(run["id"], "TASK_LOST", T0 + 1, reason="REASON_RECONCILIATION",
                    message="Reconciliation: Task is unreachable")
    assert out2.run["state"] == "failed" and out2.retry["attempt"] == 1
    # once it had started, a loss is a failure (retried)
    w.runs[run["id"]] = dict(out.run, state="running", startedAt=iso(T0 + 2))
    out = w.update(run["id"], "TASK_LOST", T0 + 3, reason="REASON_RECONCILIATION")
    assert out.run["state"] == "failed" and out.retry["attempt"] == 1


def test_deleted_jobs_runs_are_killed():
    w = World(sched())
    w.round(T0)
    run = w.of("a")[0]
    w.runs[run["id"]] = dict(run, state="running")
    del w.jobs["a"]
    plan = w.round(T0 + 1)
    assert plan.kills == (run["id"],)


@settings(max_examples=150, deadline=None)
@given(times=st.lists(st.floats(0, 60, allow_nan=False), min_size=1, max_size=30),
       every=st.integers(1, 5), epsilon=st.integers(0, 10))
def test_every_slot_is_run_or_skipped_exactly_once(times, every, epsilon):
    """Rounds at arbitrary times (several ticks at each), runs finishing at once: each passed
    slot is run or skipped exactly once. plan_round keeps no memory between rounds (all it
    knows comes from the store), so this also covers a scheduler restarted between any two
    rounds."""
    job = sched(every=f"PT{every}S", epsilon=f"PT{epsilon}S")
    w = World(job)
    for now in sorted(T0 + t for t in times):
        while w.round(now).records:
            for r in w.of("a", "queued"):
                w.update(r["id"], "TASK_FINISHED", now)
    slots: dict[int, int] = {}
    for r in w.runs.values():
        count = r.get("skippedCount", 1)
        for k in range(r["slot"], r["slot"] + count):
            slots[k] = slots.get(k, 0) + 1
    assert all(v == 1 for v in slots.values())
    assert sorted(slots) == list(range(len(slots)))
    last = max(times) + T0
    assert len(slots) == int((last - T0) // every) + 1


def test_empty_status_shape():
    assert set(empty_status("x")) >= {"successCount", "errorCount", "lastSuccess", "lastError"}


def test_manual_run_arguments_reach_its_command_and_its_retries():
    from scheduler.jobs.tasks import task_info
    from scheduler.placement import Launch

    w = World(sched(every="PT1H", retries=1), sched("n", "PT1H", shell=False,
                                                     command="/bin/echo", arguments=["a"]))
    w.requests = [{"seq": 3, "job": "a", "action": "run", "requestedAt": iso(T0),
                   "arguments": "-debug --x=1"},
                  {"seq": 4, "job": "n", "action": "run", "requestedAt": iso(T0),
                   "arguments": "-v 'two words'"}]
    w.round(T0)
    (run,) = [r for r in w.of("a") if r["trigger"] == "manual"]
    assert run["arguments"] == "-debug --x=1"
    launch = Launch(app_id=run["id"], offer_id="o", agent_id="A1", hostname="h", ports=(),
                    resources=(), attributes={})
    assert task_info(launch, run, w.jobs["a"].spec)["command"]["value"] == "true -debug --x=1"
    (n,) = [r for r in w.of("n") if r["trigger"] == "manual"]
    assert task_info(launch, n, w.jobs["n"].spec)["command"]["arguments"] == [
        "/bin/echo", "a", "-v", "two words"]
    w.runs[run["id"]] = dict(run, state="running")
    out = w.update(run["id"], "TASK_FAILED", T0 + 1)
    assert out.retry["arguments"] == "-debug --x=1"
    scheduled = [r for r in w.of("a") if r["trigger"] == "schedule"]
    assert scheduled and "arguments" not in scheduled[0]  # the request's run only


def test_mark_success_counts_and_fires_dependents():
    w = World(sched(every="PT1H"), dep("child", "a"))
    w.round(T0 + 1)
    w.requests = [{"seq": 5, "job": "a", "action": "success", "requestedAt": iso(T0 + 2)}]
    w.round(T0 + 2)
    assert w.statuses["a"]["successCount"] == 1 and w.statuses["a"]["lastSuccess"] == iso(T0 + 2)
    assert w.requests == []
    w.round(T0 + 3)
    assert [r["trigger"] for r in w.of("child")] == ["dependency"]


def test_progress_adds_to_the_runs_count_active_or_finished():
    w = World(sched(every="PT1H", dataProcessingJobType=True))
    w.round(T0)
    (run,) = w.of("a")
    w.requests = [{"seq": 6, "job": "a", "action": "progress", "taskId": run["id"], "count": 5},
                  {"seq": 7, "job": "a", "action": "progress", "taskId": "ct:9:0:a:", "count": 1}]
    w.round(T0 + 1)
    assert w.of("a")[0]["numElementsProcessed"] == 5 and w.requests == []
    finished = dict(w.of("a")[0], state="succeeded", active=False)
    w.runs[run["id"]] = finished
    w.requests = [{"seq": 8, "job": "a", "action": "progress", "taskId": run["id"], "count": 2}]
    plan = plan_round(w.jobs, w.statuses, [], w.requests, T0 + 2, {"a": [finished]})
    (rec,) = plan.records
    assert rec.runs[0]["numElementsProcessed"] == 7 and rec.done_requests == (8,)


def test_next_due_is_the_earliest_slot_of_a_job_free_to_run_it():
    w = World(sched("a", "PT2S"), sched("b", "PT3S"), sched("c", "PT1S", concurrent=True),
              dep("d", "a"), sched("e", "PT1S", disabled=True))
    w.round(T0 + 0.5)                       # a, b, c record slot 0; each has an active run
    busy = [r for r in w.runs.values() if r["active"]]
    # a and b wait for their runs to end (that end wakes the round); the concurrent c does not
    assert next_due(w.jobs, w.statuses, busy, T0 + 0.5) == (T0 + 1, T0 + 1)
    for run in list(w.runs.values()):
        w.update(run["id"], "TASK_FINISHED", T0 + 0.6)
    idle = [r for r in w.runs.values() if r["active"]]   # d's run, recorded by no round yet
    assert idle == []
    assert next_due(w.jobs, w.statuses, idle, T0 + 0.6) == (T0 + 1, T0 + 1)  # c's
    del w.jobs["c"]
    assert next_due(w.jobs, w.statuses, idle, T0 + 0.6) == (T0 + 2, T0 + 2)  # a's
    assert next_due(w.jobs, w.statuses, [{"job": "a", "active": True}], T0 + 0.6) == (
        T0 + 3, T0 + 2)                         # a busy: b's slot at T0+3 is the idle one
    inf = float("inf")
    assert next_due({"d": w.jobs["d"], "e": w.jobs["e"]}, w.statuses, [], T0) == (inf, inf)
    for now in (T0 + 0.6, T0 + 2.5, T0 + 1000):  # the cursor shortcut agrees with next_run_at
        for name in ("a", "b"):
            alone = next_due({name: w.jobs[name]}, w.statuses, [], now)[0]
            assert alone == next_run_at(w.jobs[name], w.statuses.get(name), now)
