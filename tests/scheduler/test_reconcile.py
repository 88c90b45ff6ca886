"""Reconciliation, pure and table-driven: launches, kills (and their order), rolling
replacement bounds, backoff, deleted apps, kill requests, SUPPRESS/REVIVE."""

from __future__ import annotations

import pytest

from scheduler import backoff
from scheduler import reconcile as rc
from scheduler.spec import format_time, parse_app

NOW = 1_795_000_000.0
V1, V2 = "2026-11-24T06:00:00.000Z", "2026-11-24T06:10:00.000Z"
HC = [{"protocol": "HTTP", "path": "/health", "portIndex": 0, "gracePeriodSeconds": 5,
       "intervalSeconds": 2, "timeoutSeconds": 1, "maxConsecutiveFailures": 3}]


def app(app_id="/a", instances=2, version=V1, **fields):
    doc = parse_app({"id": app_id, "cmd": "sleep 600", "cpus": 0.1, "mem": 32,
                     "instances": instances, "portDefinitions": [{"port": 0}],
                     **fields}).to_json()
    doc["version"] = version
    doc["versionInfo"] = {"lastScalingAt": version, "lastConfigChangeAt": version}
    return doc


def task(n, app_id="/a", version=V1, state="TASK_RUNNING", healthy=None, staged=None, **kw):
    doc = {"id": f"{app_id.strip('/')}.{n:032x}", "appId": app_id, "agentId": f"A{n % 3}",
           "slaveId": f"A{n % 3}", "host": f"agent{n % 3}", "version": version, "state": state,
           "healthy": healthy, "stagedAt": format_time(staged if staged is not None else NOW + n),
           "startedAt": format_time(NOW + n), "killRequested": False, "message": None}
    doc.update(kw)
    return doc


def plan(apps, tasks, statuses=None, kill_requests=(), now=NOW):
    return rc.plan(apps, tasks, statuses or {}, [], list(kill_requests), now)


def kills(p):
    return [(k.task_id.split(".")[1].lstrip("0") or "0", k.reason.split(":")[0]) for k in p.kills]


def tid(n, app_id="/a"):
    return task(n, app_id)["id"]


@pytest.mark.parametrize("instances,running,launch", [
    (3, 0, 3), (3, 1, 2), (3, 3, 0), (0, 0, 0),
])
def test_launch_count(instances, running, launch):
    p = plan([app(instances=instances)], [task(i) for i in range(1, running + 1)])
    assert p.demand == launch
    assert p.offers == (rc.REVIVE if launch else rc.SUPPRESS)
    if launch:
        (need,) = p.launches
        assert need.app.id == "/a" and need.count == launch and need.config_version == V1


@pytest.mark.parametrize("selection,killed", [
    ("YOUNGEST_FIRST", ["5", "4", "3"]),
    ("OLDEST_FIRST", ["1", "2", "3"]),
])
def test_scale_down_by_kill_selection(selection, killed):
    p = plan([app(instances=2, killSelection=selection)], [task(i) for i in range(1, 6)])
    assert kills(p) == [(k, rc.KILL_SCALE_DOWN) for k in killed]
    assert p.demand == 0 and p.offers == rc.SUPPRESS


def test_tasks_being_killed_are_not_planned_again_nor_counted():
    tasks = [task(1), task(2, killRequested=True, state="TASK_KILLING")]
    p = plan([app(instances=2)], tasks)
    assert p.kills == () and p.demand == 1


def test_scale_to_zero_kills_everything():
    p = plan([app(instances=0)], [task(1), task(2)])
    assert sorted(kills(p)) == [("1", rc.KILL_SCALE_DOWN), ("2", rc.KILL_SCALE_DOWN)]


def test_tasks_of_deleted_apps_are_killed():
    p = plan([app("/b", instances=0)], [task(1, "/a"), task(2, "/a", killRequested=True)])
    assert kills(p) == [("1", rc.KILL_APP_DELETED)]
    assert p.kills[0].app_id == "/a" and p.kills[0].agent_id == "A1"


def test_unhealthy_task_is_killed_as_failure_and_replaced_siblings_stay():
    tasks = [task(1, healthy=True), task(2, healthy=False, message="HTTP 500"),
             task(3, healthy=True)]
    p = plan([app(instances=3, healthChecks=HC)], tasks)
    assert kills(p) == [("2", "unhealthy")]
    assert p.kills[0].failure and "HTTP 500" in p.kills[0].reason
    assert p.demand == 1


def test_unhealthy_command_executor_task_is_left_to_mesos():
    # Mesos reports each failed probe as healthy: false and kills after maxConsecutiveFailures
    # itself: one report must not make us kill (or replace) the task.
    tasks = [task(1, healthy=True), task(2, healthy=False, message="HTTP 404")]
    p = plan([app(instances=2, healthChecks=HC, executor="//cmd")], tasks)
    assert p.kills == () and p.demand == 0
    # an operator's kill request still goes through
    p = plan([app(instances=2, healthChecks=HC, executor="//cmd")], tasks,
             kill_requests=[{"taskId": tid(2), "scale": False}])
    assert kills(p) == [("2", rc.KILL_REQUESTED)]


def test_operator_kill_requests_and_done_ones():
    reqs = [{"taskId": tid(1), "scale": False}, {"taskId": "a.gone", "scale": True}]
    p = plan([app(instances=2)], [task(1), task(2)], kill_requests=reqs)
    assert kills(p) == [("1", rc.KILL_REQUESTED)]
    assert p.done_kill_requests == ("a.gone",)
    assert p.demand == 1  # instances unchanged (not a scale kill): replaced


def failed(version=V1, failures=3, at=NOW):
    status = backoff.empty_status("/a", at)
    spec = parse_app(app())
    for _ in range(failures):
        status = backoff.record_failure(status, spec, {"taskId": "x", "version": version}, at)
    return status


@pytest.mark.parametrize("status,now,delayed", [
    (failed(), NOW, True),                  # 1.15**2 s delay from NOW
    (failed(), NOW + 2, False),             # ran out
    (failed(version="old"), NOW, False),    # failures of another version do not delay this one
])
def test_backoff_blocks_launches(status, now, delayed):
    p = plan([app(instances=2)], [], {"/a": status}, now=now)
    assert ("/a" in p.delayed) is delayed
    assert p.demand == (0 if delayed else 2)
    assert p.offers == (rc.SUPPRESS if delayed else rc.REVIVE)


# Rolling replacement: (instances, minHealth, maxOver, checks, current [(healthy?)], old
# [(healthy?)]) -> (launch, number of old killed)
@pytest.mark.parametrize("n,m,o,current,old,launch,killed", [
    (2, 1.0, 1.0, [], [True, True], 2, 0),            # start both replacements at once
    (2, 1.0, 1.0, [None, None], [True, True], 0, 0),  # not healthy yet: keep every old one
    (2, 1.0, 1.0, [True, None], [True, True], 0, 1),  # one replacement healthy: one old goes
    (2, 1.0, 1.0, [True, True], [True, True], 0, 2),  # all healthy: the rest go
    (2, 1.0, 0.5, [], [True, True], 1, 0),            # over-capacity 1 task
    (4, 0.5, 0.0, [], [True] * 4, 0, 2),              # may drop to 2 healthy at once
    (2, 1.0, 0.0, [], [True, True], 0, 1),            # no room either way: one at a time
    (2, 1.0, 0.0, [None], [True], 0, 0),              # ...and wait for it to be healthy
    (2, 1.0, 1.0, [], [False, True], 2, 1),           # unhealthy old tasks die first, freely
    (0, 1.0, 1.0, [], [True, True], 0, 2),            # scaled to zero while replacing
])
def test_rolling_replacement_bounds(n, m, o, current, old, launch, killed):
    strategy = {"minimumHealthCapacity": m, "maximumOverCapacity": o}
    tasks = [task(i + 1, version=V2, healthy=h) for i, h in enumerate(current)]
    # old ones: healthy True -> healthy; False -> still starting (not counted healthy)
    tasks += [task(10 + i, version=V1, healthy=True if h else None,
                   state="TASK_RUNNING" if h else "TASK_STAGING") for i, h in enumerate(old)]
    p = plan([app(instances=n, version=V2, healthChecks=HC, upgradeStrategy=strategy)], tasks)
    assert p.demand == launch
    assert len(p.kills) == killed
    assert all(k.reason == rc.KILL_REPLACED for k in p.kills)
    assert all(int(k.task_id.split(".")[1], 16) >= 10 for k in p.kills)  # only old ones


def test_unhealthy_old_task_is_killed_before_healthy_ones():
    tasks = [task(1, version=V2, healthy=True)]
    tasks += [task(10, version=V1, healthy=True), task(11, version=V1, state="TASK_STAGING")]
    p = plan([app(instances=2, version=V2, healthChecks=HC)], tasks)
    assert kills(p)[0] == ("b", rc.KILL_REPLACED)  # 11 = 0xb, still staging


def test_replacement_without_health_checks_counts_running_as_healthy():
    tasks = [task(1, version=V2), task(2, version=V2), task(10, version=V1),
             task(11, version=V1)]
    p = plan([app(instances=2, version=V2)], tasks)
    assert len(p.kills) == 2 and p.demand == 0


def test_invalid_app_document_is_skipped_not_killed():
    bad = app()
    bad["cpus"] = -1
    p = plan([bad], [task(1)])
    assert p.kills == () and "/a" in p.invalid


def test_plan_is_deterministic():
    apps = [app("/a", 3), app("/b", 1, killSelection="OLDEST_FIRST")]
    tasks = [task(i, "/b") for i in range(1, 4)] + [task(9, "/c")]
    assert plan(apps, tasks) == plan(apps, list(reversed(tasks)))


def test_dependencies_order_the_start_of_an_app():
    """Marathon's dependency order: /web (depending on /db and on the group /cache) starts once
    every app it depends on runs its instances, current and healthy; once started it is never
    held again; a dependency that does not exist holds nothing."""
    db = app("/db", instances=1, healthChecks=HC)
    cache = app("/cache/redis", instances=1)
    web = app("/web", instances=2, dependencies=["/db", "/cache", "/ghost"])
    apps = [db, cache, web]
    p = plan(apps, [])
    assert p.need_for("/web") == 0 and p.held == {"/web": "/db, /cache"}
    assert p.need_for("/db") == 1 and p.need_for("/cache/redis") == 1
    up = [task(1, "/db", healthy=None), task(2, "/cache/redis")]
    assert plan(apps, up).held == {"/web": "/db"}  # /db not healthy yet
    up = [task(1, "/db", healthy=True), task(2, "/cache/redis")]
    p = plan(apps, up)
    assert p.need_for("/web") == 2 and not p.held
    # started: a dependency failing later does not hold the dependent's replacements
    started = [task(1, "/db", healthy=False), task(3, "/web")]
    assert plan(apps, started).need_for("/web") == 1
