"""scheduler.deployments: plans, progress and completion, rolling-restart budgets."""

from __future__ import annotations

import copy
import math
import multiprocessing
import time
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.deployments import (
    advance,
    affects,
    fail,
    is_active,
    new_deployment_id,
    plan_deployment,
    rolling_restart_budget,
    task_is_ready,
)
from scheduler.spec import parse_app, stamp_app

T0 = "2026-11-24T06:00:00.000Z"
T1 = "2026-11-24T06:01:00.000Z"
T2 = "2026-11-24T06:02:00.000Z"
NOW = "2026-11-24T06:05:00.000Z"


def stored(instances=2, at=T0, previous=None, scale_only=False, checks=True, **fields):
    doc = {"id": "/jpm/ts", "cmd": "serve", "instances": instances,
           "portDefinitions": [{"port": 0}], **fields}
    if checks:
        doc["healthChecks"] = [{"protocol": "TCP", "intervalSeconds": 2, "timeoutSeconds": 1}]
    return stamp_app(parse_app(doc).to_json(), previous, at, scale_only=scale_only)


def task(n, version=T0, state="TASK_RUNNING", healthy=True, **extra):
    return {"id": f"jpm_ts.{n:032x}", "appId": "/jpm/ts", "version": version, "state": state,
            "healthy": healthy, "stagedAt": f"2026-11-24T06:00:{n:02d}.000Z", **extra}


# -- planning ------------------------------------------------------------------------------------

def test_plan_create():
    app = stored(instances=3)
    d = plan_deployment(None, app, now=NOW, deployment_id="d1")
    assert d["id"] == "d1" and d["kind"] == "create" and d["status"] == "running"
    assert d["version"] == app["version"] and d["createdAt"] == NOW and d["finishedAt"] is None
    assert d["affectedApps"] == ["/jpm/ts"] and d["affectedPods"] == []
    assert d["steps"] == [{"actions": [{"action": "StartApplication", "app": "/jpm/ts"}]},
                          {"actions": [{"action": "ScaleApplication", "app": "/jpm/ts"}]}]
    assert d["currentStep"] == 1 and d["totalSteps"] == 2
    assert d["currentActions"] == [{"action": "StartApplication", "app": "/jpm/ts",
                                    "readinessCheckResults": []}]
    assert d["target"] == {"app": "/jpm/ts", "instances": 3, "configVersion": T0}
    assert d["progress"] == {"healthy": 0, "running": 0, "old": 0}
    assert d["message"] is None


@pytest.mark.parametrize("old,new,kind,action,target", [
    ("v0", "scaled", "scale", "ScaleApplication", {"instances": 5, "configVersion": T0}),
    ("v0", "changed", "update", "RestartApplication", {"instances": 2, "configVersion": T1}),
    ("v0", None, "delete", "StopApplication", {"instances": 0, "configVersion": None}),
])
def test_plan_inferred_kinds(old, new, kind, action, target):
    v0 = stored()
    docs = {"v0": v0, "scaled": stored(instances=5, at=T1, previous=v0, scale_only=True),
            "changed": stored(at=T1, previous=v0, cmd="serve2"), None: None}
    d = plan_deployment(docs[old], docs[new], now=NOW)
    assert d["kind"] == kind and d["totalSteps"] == 1
    assert d["steps"] == [{"actions": [{"action": action, "app": "/jpm/ts"}]}]
    assert {k: d["target"][k] for k in target} == target
    assert len(d["id"]) == 36  # a uuid4
    assert d["version"] == (docs[new]["version"] if docs[new] else NOW)


def test_plan_restart_kind_is_explicit():
    v0 = stored()
    restarted = stored(at=T1, previous=v0)  # same definition, new config version
    d = plan_deployment(v0, restarted, now=NOW, kind="restart")
    assert d["kind"] == "restart"
    assert d["steps"][0]["actions"][0]["action"] == "RestartApplication"
    assert d["target"]["configVersion"] == T1


def test_plan_rejects_nonsense():
    with pytest.raises(ValueError):
        plan_deployment(None, None, now=NOW)
    with pytest.raises(ValueError):
        plan_deployment(stored(), stored(), now=NOW, kind="explode")
    with pytest.raises(ValueError):
        plan_deployment(stored(), None, now=NOW, kind="scale")
    with pytest.raises(ValueError):
        plan_deployment(stored(), stored(), now=NOW, kind="delete")


def test_affects_and_is_active():
    d = plan_deployment(None, stored(), now=NOW)
    assert affects(d, "/jpm/ts") and affects(d, "jpm/ts") and not affects(d, "/jpm/other")
    assert not affects({"affectedApps": []}, "/jpm/ts")
    assert is_active(d) and not is_active(dict(d, status="cancelled"))


# -- progress ------------------------------------------------------------------------------------

def test_create_progresses_then_succeeds():
    app = stored(instances=2)
    d = plan_deployment(None, app, now=NOW, deployment_id="d1")
    d1, ev = advance(d, app, [], now=NOW)
    # StartApplication is done as soon as the app exists
    assert [e[0] for e in ev] == ["deployment_step_success"]
    assert ev[0][1]["currentStep"] == {"actions": [{"action": "StartApplication",
                                                    "app": "/jpm/ts"}]}
    assert d1["currentStep"] == 2 and d1["status"] == "running"
    assert d1["currentActions"][0]["action"] == "ScaleApplication"
    # one staging, one running but not yet healthy: not done
    d2, ev = advance(d1, app, [task(1, state="TASK_STAGING", healthy=None),
                               task(2, healthy=None)], now=NOW)
    assert ev == [] and d2["progress"] == {"healthy": 0, "running": 1, "old": 0}
    # calling again with the same inputs changes nothing (idempotent)
    assert advance(d2, app, [task(1, state="TASK_STAGING", healthy=None),
                             task(2, healthy=None)], now=NOW) == (d2, [])
    d3, ev = advance(d2, app, [task(1), task(2)], now=T2)
    assert [e[0] for e in ev] == ["deployment_step_success", "deployment_success"]
    assert d3["status"] == "succeeded" and d3["finishedAt"] == T2
    assert d3["currentStep"] == 2 and d3["currentActions"] == []
    assert d3["progress"] == {"healthy": 2, "running": 2, "old": 0}
    assert ev[0][1]["currentStep"]["actions"][0]["action"] == "ScaleApplication"
    assert ev[1][1] == {"id": "d1", "plan": d3}
    assert ev[0][1]["plan"]["id"] == "d1"
    # final deployments never change again
    assert advance(d3, app, [], now=T2) == (d3, [])


def test_create_of_zero_instances_succeeds_at_once():
    app = stored(instances=0)
    d, ev = advance(plan_deployment(None, app, now=NOW), app, [], now=NOW)
    assert d["status"] == "succeeded"
    assert [e[0] for e in ev] == ["deployment_step_success", "deployment_step_success",
                                  "deployment_success"]
    assert [e[1]["currentStep"]["actions"][0]["action"] for e in ev[:2]] == [
        "StartApplication", "ScaleApplication"]


def test_no_health_checks_means_running_is_enough():
    app = stored(instances=1, checks=False)
    d = plan_deployment(None, app, now=NOW)
    d, ev = advance(d, app, [task(1, healthy=None)], now=NOW)
    assert d["status"] == "succeeded"
    # but an explicit unhealthy verdict never counts
    d = plan_deployment(None, app, now=NOW)
    d, _ = advance(d, app, [task(1, healthy=False)], now=NOW)
    assert d["status"] == "running"


def test_readiness_checks_hold_a_deployment_until_the_task_is_ready():
    app = stored(instances=1, portDefinitions=[{"port": 0, "name": "http"}],
                 readinessChecks=[{"portName": "http", "path": "/ready",
                                   "intervalSeconds": 2, "timeoutSeconds": 1}])
    not_ready = {"name": "readinessCheck", "taskId": "t", "ready": False}
    d = plan_deployment(None, app, now=NOW)
    d, _ = advance(d, app, [task(1)], now=NOW)  # healthy, never probed
    assert d["status"] == "running" and d["progress"]["healthy"] == 0
    d, _ = advance(d, app, [task(1, readinessCheckResults=[not_ready])], now=NOW)
    assert d["status"] == "running"
    assert d["currentActions"][0]["readinessCheckResults"] == [not_ready]
    ready = dict(not_ready, ready=True)
    d, ev = advance(d, app, [task(1, readinessCheckResults=[ready])], now=NOW)
    assert d["status"] == "succeeded" and ev[-1][0] == "deployment_success"


SCALE_CASES = [
    # (instances, tasks, done?)
    ("up, not yet", 3, [task(1), task(2)], False),
    ("up, unhealthy one", 3, [task(1), task(2), task(3, healthy=False)], False),
    ("up, done", 3, [task(1), task(2), task(3)], True),
    ("down, surplus left", 1, [task(1), task(2)], False),
    ("down, surplus being killed", 1, [task(1), task(2, killRequested=True)], False),
    ("down, done", 1, [task(1)], True),
    ("to zero, done", 0, [], True),
    ("to zero, one left", 0, [task(1)], False),
    ("killed task is not ready", 1, [task(1, killRequested=True)], False),
]


@pytest.mark.parametrize("instances,tasks,done", [c[1:] for c in SCALE_CASES],
                         ids=[c[0] for c in SCALE_CASES])
def test_scale(instances, tasks, done):
    v0 = stored(instances=2)
    scaled = stored(instances=instances, at=T1, previous=v0, scale_only=True)
    d = plan_deployment(v0, scaled, now=NOW)
    assert d["kind"] == "scale" and d["target"]["configVersion"] == T0  # tasks stay current
    d2, ev = advance(d, scaled, tasks, now=NOW)
    assert (d2["status"] == "succeeded") is done
    assert [e[0] for e in ev] == (["deployment_step_success", "deployment_success"] if done
                                  else [])


RESTART_CASES = [
    ("all old", [task(1), task(2)], False, {"healthy": 0, "running": 0, "old": 2}),
    ("mixed", [task(1), task(2, version=T1)], False, {"healthy": 1, "running": 1, "old": 1}),
    ("new not healthy yet", [task(1, version=T1, healthy=None), task(2, version=T1)], False,
     {"healthy": 1, "running": 2, "old": 0}),
    ("new all healthy, old still there", [task(1, version=T1), task(2, version=T1), task(3)],
     False, {"healthy": 2, "running": 2, "old": 1}),
    ("done", [task(1, version=T1), task(2, version=T1)], True,
     {"healthy": 2, "running": 2, "old": 0}),
]


@pytest.mark.parametrize("tasks,done,progress", [c[1:] for c in RESTART_CASES],
                         ids=[c[0] for c in RESTART_CASES])
def test_restart(tasks, done, progress):
    v0 = stored(instances=2)
    changed = stored(instances=2, at=T1, previous=v0, cmd="serve --v2")
    d = plan_deployment(v0, changed, now=NOW)
    d2, ev = advance(d, changed, tasks, now=NOW)
    assert d2["progress"] == progress
    assert (d2["status"] == "succeeded") is done
    if done:
        assert ev[0] == ("deployment_step_success",
                         {"plan": d2, "currentStep": d["steps"][0]})


def test_delete():
    v0 = stored(instances=2)
    d = plan_deployment(v0, None, now=NOW)
    d1, ev = advance(d, None, [task(1), task(2, killRequested=True)], now=NOW)
    assert ev == [] and d1["progress"] == {"healthy": 0, "running": 0, "old": 2}
    d2, ev = advance(d1, None, [], now=T2)
    assert d2["status"] == "succeeded" and d2["finishedAt"] == T2
    assert [e[0] for e in ev] == ["deployment_step_success", "deployment_success"]


def test_tasks_of_other_apps_are_ignored():
    app = stored(instances=1)
    other = dict(task(9), appId="/other")
    d, _ = advance(plan_deployment(None, app, now=NOW), app, [task(1), other], now=NOW)
    assert d["status"] == "succeeded"


def test_fails_when_app_vanishes_or_moves_on():
    v0 = stored(instances=1)
    d = plan_deployment(None, v0, now=NOW, deployment_id="d9")
    gone, ev = advance(d, None, [], now=T2)
    assert gone["status"] == "failed" and "no longer exists" in gone["message"]
    assert gone["finishedAt"] == T2 and gone["currentActions"] == []
    assert ev == [("deployment_failed", {"id": "d9", "plan": gone})]
    newer = stored(instances=1, at=T1, previous=v0, cmd="other")
    moved, ev = advance(d, newer, [], now=T2)
    assert moved["status"] == "failed" and "another deployment" in moved["message"]


def test_fail_helper():
    d = plan_deployment(None, stored(), now=NOW)
    failed, ev = fail(d, now=T2, message="timed out")
    assert failed["status"] == "failed" and failed["message"] == "timed out"
    assert ev[0][0] == "deployment_failed"
    assert fail(failed, now=T2, message="again") == (failed, [])
    assert d["status"] == "running"  # inputs are never modified


def test_advance_does_not_modify_its_inputs():
    app = stored(instances=1)
    d = plan_deployment(None, app, now=NOW)
    tasks = [task(1)]
    snapshot = copy.deepcopy((d, app, tasks))
    advance(d, app, tasks, now=NOW)
    assert (d, app, tasks) == snapshot


def test_task_is_ready():
    assert task_is_ready(task(1), True)
    assert not task_is_ready(task(1, healthy=None), True)
    assert task_is_ready(task(1, healthy=None), False)
    assert not task_is_ready(task(1, healthy=False), False)
    assert not task_is_ready(task(1, state="TASK_STARTING"), True)
    assert not task_is_ready(task(1, killRequested=True), True)


# -- rolling restart budgets -----------------------------------------------------------------------

def restarting(instances, min_health, over, checks=True):
    v0 = stored(instances=instances, checks=checks)
    return stored(instances=instances, at=T1, previous=v0, cmd="serve --v2", checks=checks,
                  upgradeStrategy={"minimumHealthCapacity": min_health,
                                   "maximumOverCapacity": over})


def old(n, **kw):
    return [task(i, **kw) for i in range(1, n + 1)]


def new(n, start=50, **kw):
    return [task(i, version=T1, **kw) for i in range(start, start + n)]


BUDGETS = [
    # (name, instances, min health, over capacity, tasks, (may_start_new, may_kill_old))
    # 1.0 / 1.0: start a whole new set at once, kill old only as new ones become healthy
    ("1.0/1.0 start", 4, 1.0, 1.0, old(4), (4, 0)),
    ("1.0/1.0 two healthy", 4, 1.0, 1.0, old(4) + new(2) + new(2, start=60, healthy=None),
     (0, 2)),
    ("1.0/1.0 all healthy", 4, 1.0, 1.0, old(4) + new(4), (0, 4)),
    # 1.0 / 0.0: no room either way: kill one old task, then wait for its replacement
    ("1.0/0 deadlock broken", 3, 1.0, 0.0, old(3), (0, 1)),
    ("1.0/0 one dying", 3, 1.0, 0.0, old(2) + [task(3, killRequested=True)], (0, 0)),
    ("1.0/0 one slot free", 3, 1.0, 0.0, old(2), (1, 0)),
    ("1.0/0 replacement unhealthy", 3, 1.0, 0.0, old(2) + new(1, healthy=None), (0, 0)),
    ("1.0/0 replacement healthy", 3, 1.0, 0.0, old(2) + new(1), (0, 1)),
    # 0.5 / 0.0: kill down to the healthy floor first; ceil(3 * 0.5) = 2 must stay
    ("0.5/0 start", 3, 0.5, 0.0, old(3), (0, 1)),
    ("0.5/0 four", 4, 0.5, 0.0, old(4), (0, 2)),
    ("0.5/0 after kills", 4, 0.5, 0.0, old(2), (2, 0)),
    # 0 / 0: everything old may go at once
    ("0/0", 3, 0.0, 0.0, old(3), (0, 3)),
    ("0/0 nothing left", 3, 0.0, 0.0, [], (3, 0)),
    # over capacity rounds down: 3 * 0.5 = 1.5 -> one extra task
    ("0.5 over rounds down", 3, 1.0, 0.5, old(3), (1, 0)),
    # min health rounds up: 3 * 0.34 = 1.02 -> 2 must stay
    ("min health rounds up", 3, 0.34, 0.0, old(3), (0, 1)),
    # float noise: 10 * 0.7 = 7.000000000000001 must count as 7
    ("float noise", 10, 0.7, 0.0, old(10), (0, 3)),
    # unhealthy old tasks can always go
    ("old unhealthy", 3, 1.0, 0.0, old(2) + [task(3, healthy=False)], (0, 1)),
    ("old unhealthy 1.0/1.0", 2, 1.0, 1.0, [task(1, healthy=False), task(2, healthy=False)],
     (2, 2)),
    # scale to zero: all old may go, nothing starts
    ("zero instances", 0, 1.0, 0.0, old(2), (0, 2)),
    # no old tasks: only starting up to the target
    ("no old", 2, 1.0, 0.0, new(1), (1, 0)),
]


@pytest.mark.parametrize("instances,min_health,over,tasks,expect", [b[1:] for b in BUDGETS],
                         ids=[b[0] for b in BUDGETS])
def test_rolling_restart_budget(instances, min_health, over, tasks, expect):
    app = restarting(instances, min_health, over)
    assert rolling_restart_budget(app, tasks) == expect


def test_budget_without_health_checks_counts_running():
    app = restarting(2, 1.0, 0.0, checks=False)
    assert rolling_restart_budget(app, old(1, healthy=None) + new(1, healthy=None)) == (0, 1)


def test_budget_with_app_spec_needs_version():
    app = restarting(2, 1.0, 1.0)
    spec = parse_app(app)
    assert rolling_restart_budget(spec, old(2), version=T1) == rolling_restart_budget(app, old(2))
    with pytest.raises(ValueError):
        rolling_restart_budget(spec, old(2))


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 8), min_health=st.sampled_from([0.0, 0.25, 0.5, 0.7, 1.0]),
       over=st.sampled_from([0.0, 0.3, 0.5, 1.0]), slow_kills=st.booleans(),
       seed=st.randoms(use_true_random=False))
def test_rolling_restart_simulation_converges_within_bounds(n, min_health, over, slow_kills,
                                                            seed):
    """Drive a restart with the budget, as the scheduler does: new tasks turn healthy after a
    random number of rounds; with `slow_kills` a killed task lingers one round (killRequested).
    It finishes, never runs more tasks than the over-capacity allows, and never drops below the
    healthy floor except by Marathon's single kill when both bounds are tight."""
    app = restarting(n, min_health, over)
    d = plan_deployment(stored(instances=n), app, now=NOW)
    tasks = old(n)
    min_ready = math.ceil(n * min_health - 1e-9)
    max_total = n + math.floor(n * over + 1e-9)
    next_id = 100
    for _ in range(20 * n + 20):
        tasks = [t for t in tasks if not t.get("killRequested")]  # last round's kills are done
        tasks = [dict(t, healthy=True) if t["healthy"] is None and seed.random() < 0.6 else t
                 for t in tasks]
        d, _ = advance(d, app, tasks, now=NOW)
        if d["status"] == "succeeded":
            break
        start, kill = rolling_restart_budget(app, tasks)
        olds = [t for t in tasks if t["version"] != T1 and not t.get("killRequested")]
        assert kill <= len(olds)
        victims = {t["id"] for t in seed.sample(olds, kill)}
        ready_before = sum(task_is_ready(t, True) for t in tasks)
        if slow_kills:
            tasks = [dict(t, killRequested=True) if t["id"] in victims else t for t in tasks]
        else:
            tasks = [t for t in tasks if t["id"] not in victims]
        ready_after = sum(task_is_ready(t, True) for t in tasks)
        live = sum(not t.get("killRequested") for t in tasks)
        tight = kill == 1 and ready_before == min_ready and live + 1 == max_total
        assert ready_after >= min(min_ready, ready_before) or tight, (ready_before, kill)
        tasks += [task(next_id + i, version=T1, healthy=None) for i in range(start)]
        next_id += start
        assert len(tasks) <= max_total  # tasks being killed count until they are gone
    assert d["status"] == "succeeded", (d["progress"], tasks)


_task_strategy = st.builds(
    lambda n, version, state, healthy, killing: task(
        n, version=version, state=state, healthy=healthy,
        **({"killRequested": True} if killing else {})),
    st.integers(0, 59), st.sampled_from([T0, T1]),
    st.sampled_from(["TASK_RUNNING", "TASK_STAGING", "TASK_KILLING"]),
    st.sampled_from([True, False, None]), st.booleans())


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(["create", "scale", "update", "delete"]),
       instances=st.integers(0, 4), checks=st.booleans(),
       rounds=st.lists(st.lists(_task_strategy, max_size=5, unique_by=lambda t: t["id"]),
                       min_size=1, max_size=4))
def test_advance_properties(kind, instances, checks, rounds):
    """Over any sequence of observations: success exactly when the rule holds, each step
    reported once and in order, idempotent, final is final."""
    v0 = stored(instances=2, checks=checks)
    new_app = {"create": stored(instances=instances, checks=checks),
               "scale": stored(instances=instances, at=T1, previous=v0, scale_only=True,
                               checks=checks),
               "update": stored(instances=instances, at=T1, previous=v0, cmd="v2",
                                checks=checks),
               "delete": None}[kind]
    d = plan_deployment(None if kind == "create" else v0, new_app, now=NOW)
    version = d["target"]["configVersion"]
    reported = []
    for tasks in rounds:
        before = d
        d, events = advance(d, new_app, tasks, now=T2)
        reported += [e[1]["currentStep"] for e in events if e[0] == "deployment_step_success"]
        if before["status"] != "running":
            assert (d, events) == (before, [])
            continue
        if kind == "delete":
            should = not tasks
        else:
            ready = [t for t in tasks if t["version"] == version and task_is_ready(t, checks)]
            should = len(ready) == instances == len(tasks)
        assert (d["status"] == "succeeded") is should
        assert bool(events) and events[-1][0] == "deployment_success" if should else True
        assert all(e[0] != "deployment_failed" for e in events)
        again, more = advance(d, new_app, tasks, now=T2)
        assert (again, more) == (d, [])
        assert 1 <= d["currentStep"] <= d["totalSteps"]
    assert reported == d["steps"][:len(reported)]  # in order, each once
    if d["status"] == "succeeded":
        assert reported == d["steps"]


def test_deployment_ids_are_uuids_that_sort_in_creation_order():
    made = []
    for _ in range(3):
        batch = [new_deployment_id() for _ in range(200)]
        made.append(batch)
        # The next batch in a later millisecond than this one's last id (a batch may itself
        # span milliseconds on a busy machine).
        last_ms = time.time_ns() // 1_000_000
        while time.time_ns() // 1_000_000 <= last_ms:
            pass
    ids = [i for batch in made for i in batch]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 7 and parsed.variant == uuid.RFC_4122
    # Across milliseconds they sort in creation order (within one, the random bits decide).
    assert max(made[0]) < min(made[1]) and max(made[1]) < min(made[2])
    assert plan_deployment(None, {"id": "/a", "version": "v"}, now="v")["id"] > made[2][0]


def _random_parts(ids: list[str]) -> list[int]:
    return [uuid.UUID(i).int & (1 << 80) - 1 for i in ids]


def _ids_in_child(conn) -> None:
    conn.send([new_deployment_id() for _ in range(50)])
    conn.close()


def test_deployment_ids_of_forked_workers_do_not_repeat_each_other():
    # gunicorn forks its workers from one process: each must draw its own random bits, or two
    # workers creating deployments in the same millisecond would make the same id.
    ctx = multiprocessing.get_context("fork")
    here, there = ctx.Pipe()
    child = ctx.Process(target=_ids_in_child, args=(there,))
    child.start()
    mine = [new_deployment_id() for _ in range(50)]
    theirs = here.recv()
    child.join(10)
    assert set(_random_parts(mine)).isdisjoint(_random_parts(theirs))
