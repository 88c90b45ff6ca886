"""The conformance scenarios: written once, run on the real Mesos 1.12 and on localmesos.

Each drives accessd through its control API (deploy, scale, restart, kill, delete), applies the
cluster-side fault through `Cluster` (master failover, agent restart, partition), and asserts
what a user observes: tasks in the API, their health, the master's `/state`, the process table.
The scenarios run in this order on each cluster; each sets up what it needs (an earlier failure
does not cascade), and the later ones share the "steady" apps to show the same tasks surviving
one fault after another.
"""

from __future__ import annotations

import shlex
import time

import pytest

from conformance.accessd_run import Accessd, healthy, watch
from conformance.clusters import MAX_PINGS, PING_TIMEOUT_SECS, Cluster, wait_for_leader
from conformance.proctable import sandbox_processes
from tests.support import PYTHON, wait_until

CHECK = {"gracePeriodSeconds": 15, "intervalSeconds": 2, "timeoutSeconds": 1,
         "maxConsecutiveFailures": 2}


def served_app(accessd: Accessd, app_id: str, instances: int, protocol: str = "HTTP",
               executor: str = "", **extra) -> dict:
    """`python -m http.server` on $PORT0 serving `<work>/www/<task id>/`, where a `health` file
    is created at start: its HTTP check fails once the test deletes that file."""
    root = shlex.quote(str(accessd.work / "www"))
    cmd = (f"mkdir -p {root}/$MESOS_TASK_ID && touch {root}/$MESOS_TASK_ID/health && "
           f"exec {shlex.quote(PYTHON)} -m http.server $PORT0 --bind $HOST "
           f"--directory {root}/$MESOS_TASK_ID")
    check = {"protocol": protocol, **CHECK}
    if protocol == "HTTP":
        check.update(path="/health", portIndex=0)
    elif protocol == "TCP":
        check.update(portIndex=0)
    else:  # COMMAND: the service answers on its port, asked from the task's environment
        check["command"] = {"value": f"{shlex.quote(PYTHON)} -c 'import os, urllib.request; "
                                     "urllib.request.urlopen(\"http://%s:%s/health\" "
                                     "% (os.environ[\"HOST\"], os.environ[\"PORT0\"]), "
                                     "timeout=1)'"}
    app = {"id": app_id, "cmd": cmd, "cpus": 0.05, "mem": 32, "instances": instances,
           "portDefinitions": [{"port": 0, "name": "http"}], "backoffSeconds": 0.5,
           "taskKillGracePeriodSeconds": 2, "healthChecks": [check], **extra}
    if executor:
        app["executor"] = executor
    return app


def ids(tasks: list[dict]) -> set[str]:
    return {t["id"] for t in tasks}


def deleted(accessd: Accessd, app_id: str) -> None:
    """Delete the app (forced: it may be mid-deployment) and wait for its tasks to end."""
    accessd.wait_deployed(accessd.delete(app_id, force=True))
    prefix = app_id.lstrip("/").replace("/", "_") + "."
    wait_until(lambda: not accessd.cluster_tasks(prefix, ("TASK_STAGING", "TASK_STARTING",
                                                          "TASK_RUNNING", "TASK_KILLING")),
               timeout=60, message=f"{app_id}'s tasks gone from the cluster")


# -- deploy with health checks ------------------------------------------------------------------

@pytest.mark.parametrize("protocol", ["HTTP", "TCP", "COMMAND"])
@pytest.mark.parametrize("kind", ["executor", "cmd"])
def test_deploy_with_health_check(accessd: Accessd, kind: str, protocol: str) -> None:
    app_id = f"/conf/health-{kind}-{protocol.lower()}"
    app = served_app(accessd, app_id, 2, protocol, executor="//cmd" if kind == "cmd" else "")
    deployment = accessd.deploy(app)
    try:
        tasks = accessd.wait_ready(app_id, 2, fail_on_task_failure=True)
        accessd.wait_deployed(deployment)
        assert all(healthy(t, 1) for t in tasks), tasks
        # healthy is a verdict that stays: no task is killed or replaced for a while
        watch(3, lambda: ids(accessd.ready_tasks(app_id)) == ids(tasks) or pytest.fail(
            f"{app_id}: tasks changed after becoming healthy: {accessd.tasks(app_id)}"))
        assert accessd.cluster_tasks(app_id.lstrip("/").replace("/", "_") + ".") == ids(tasks)
    finally:
        deleted(accessd, app_id)


# -- scale, kill with scale, rolling restart, unhealthy replacement -------------------------------

def test_scale_up_down_and_kill_with_scale(accessd: Accessd) -> None:
    app_id = "/conf/scale"
    accessd.wait_deployed(accessd.deploy(served_app(accessd, app_id, 1)))
    (first,) = accessd.wait_ready(app_id, 1)
    accessd.wait_deployed(accessd.scale(app_id, 3))
    accessd.wait_ready(app_id, 3)
    accessd.wait_deployed(accessd.scale(app_id, 1))
    (kept,) = accessd.wait_ready(app_id, 1)
    assert kept["id"] == first["id"], "killSelection YOUNGEST_FIRST keeps the oldest task"
    accessd.wait_deployed(accessd.scale(app_id, 2))
    two = accessd.wait_ready(app_id, 2)
    victim = next(t for t in two if t["id"] != first["id"])
    accessd.kill_task(app_id, victim["id"], scale=True)
    wait_until(lambda: ids(accessd.tasks(app_id)) == {first["id"]}, timeout=60,
               message="the killed task gone, not replaced")
    assert accessd.app(app_id)["instances"] == 1
    watch(3, lambda: ids(accessd.tasks(app_id)) == {first["id"]} or pytest.fail(
        f"a replacement appeared: {accessd.tasks(app_id)}"))
    assert accessd.cluster_tasks("conf_scale.") == {first["id"]}
    deleted(accessd, app_id)


def test_rolling_restart_within_upgrade_strategy(accessd: Accessd) -> None:
    app_id = "/conf/web"
    strategy = {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.5}
    accessd.wait_deployed(accessd.deploy(served_app(accessd, app_id, 2,
                                                    upgradeStrategy=strategy)))
    old = ids(accessd.wait_ready(app_id, 2))
    deployment = accessd.restart(app_id)
    fewest_healthy, most_running = 2, 2
    deadline = time.monotonic() + 120
    while deployment in accessd.deployment_ids() or ids(accessd.tasks(app_id)) & old:
        fewest_healthy = min(fewest_healthy, len(accessd.ready_tasks(app_id)))
        most_running = max(most_running, len(accessd.cluster_tasks(
            "conf_web.", ("TASK_STAGING", "TASK_STARTING", "TASK_RUNNING"))))
        assert time.monotonic() < deadline, f"restart not done: {accessd.tasks(app_id)}"
        time.sleep(0.1)
    new = accessd.wait_ready(app_id, 2)
    assert not ids(new) & old
    # 2 instances, minimumHealthCapacity 0.5, maximumOverCapacity 0.5: >= 1 healthy, <= 3 tasks
    assert fewest_healthy >= 1, fewest_healthy
    assert most_running <= 3, most_running
    version = accessd.app(app_id)["versionInfo"]["lastConfigChangeAt"]
    assert all(t["version"] == version for t in new)


def test_unhealthy_task_is_replaced(accessd: Accessd) -> None:
    app_id = "/conf/web"
    if app_id not in accessd.app_ids():
        accessd.wait_deployed(accessd.deploy(served_app(accessd, app_id, 2)))
    sick, sibling = accessd.wait_ready(app_id, 2)
    (accessd.work / "www" / sick["id"] / "health").unlink()
    replaced = wait_until(
        lambda: len(r := accessd.ready_tasks(app_id)) == 2 and sick["id"] not in ids(r) and r,
        timeout=90, message="the unhealthy task replaced by a healthy one")
    assert sibling["id"] in ids(replaced)
    kills = accessd.events("unhealthy_task_kill_event")
    assert [e["taskId"] for e in kills] == [sick["id"]]
    assert accessd.app(app_id)["lastTaskFailure"]["taskId"] == sick["id"]
    deleted(accessd, app_id)


# -- faults: the "steady" apps must come through each with the same tasks --------------------------

AGENT_DOWN_SECONDS = 6
STEADY = ("/conf/steady-exec", "/conf/steady-cmd")


def steady_tasks(accessd: Accessd, **extra) -> set[str]:
    """Deploy the steady apps if needed (an executor app with an HTTP check, a //cmd app with
    one) and return their task ids once all are ready."""
    present = accessd.app_ids()
    for app_id, executor in zip(STEADY, ("", "//cmd"), strict=True):
        if app_id not in present:
            accessd.wait_deployed(accessd.deploy(served_app(accessd, app_id, 2,
                                                            executor=executor, **extra)))
    return set().union(*(ids(accessd.wait_ready(a, 2)) for a in STEADY))


def assert_same_tasks(accessd: Accessd, before: set[str], seconds: float = 5) -> None:
    """For `seconds`: the API and the master hold exactly `before`, running and healthy."""
    def same() -> None:
        in_api = set().union(*(ids(accessd.ready_tasks(a)) for a in STEADY))
        in_cluster = accessd.cluster_tasks("conf_steady-")
        assert in_api == before, f"API: {sorted(in_api ^ before)} differ"
        assert in_cluster == before, f"master: {sorted(in_cluster ^ before)} differ"
    wait_until(lambda: same() is None, timeout=60, message="the same tasks, ready")
    watch(seconds, same)


def registrations(accessd: Accessd) -> list[str]:
    return [line for line in accessd.sched.lines if "registered framework_id=" in line]


def test_scheduler_kill9_and_restart(accessd: Accessd) -> None:
    before = steady_tasks(accessd)
    framework_id = accessd.framework_id
    accessd.kill9_scheduler()
    # the tasks outlive their scheduler (failover timeout: a week)
    assert accessd.cluster_tasks("conf_steady-") == before
    sched = accessd.start_scheduler()
    assert sched.framework_id == framework_id
    sched.wait_for_line(lambda line: "reconciling" in line, timeout=30)
    assert_same_tasks(accessd, before)


def test_master_failover_through_zookeeper(accessd: Accessd, cluster: Cluster,
                                           record_property) -> None:
    before = steady_tasks(accessd)
    seen = len(registrations(accessd))
    lines = len(accessd.sched.lines)
    started = time.monotonic()
    cluster.fail_over_master()
    sched = accessd.sched

    def reregistered() -> bool:
        if sched.popen.poll() is not None:
            pytest.fail(f"the scheduler exited ({sched.popen.returncode}) during the failover:\n"
                        + "\n".join(sched.lines[lines:][-30:]))
        return len(registrations(accessd)) > seen
    wait_until(reregistered, timeout=90, message="the scheduler re-registered through ZooKeeper")
    record_property("note", f"master killed -> scheduler re-registered in "
                            f"{time.monotonic() - started:.1f}s")
    assert all(f"registered framework_id={accessd.framework_id} " in line
               for line in registrations(accessd)[seen:])
    wait_for_leader(cluster)
    assert_same_tasks(accessd, before)
    accessd.failover_log = accessd.sched.lines[lines:]


def test_master_failover_without_request_storm(accessd: Accessd, record_property) -> None:
    log = getattr(accessd, "failover_log", None)
    assert log is not None, "no master failover was observed (previous scenario failed early)"
    redirects = [line for line in log if "redirect" in line.lower()]
    tracebacks = [line for line in log if "Traceback" in line]
    seconds = [line[:19] for line in redirects]  # "YYYY-mm-dd HH:MM:SS" of each
    busiest = max((seconds.count(s) for s in set(seconds)), default=0)
    record_property("note", f"{len(log)} scheduler log lines during the failover, "
                            f"{len(redirects)} redirects (at most {busiest} in one second), "
                            f"{len(tracebacks)} tracebacks")
    # Retries back off: a few redirects a second at most, and a reset is a line, not a traceback.
    assert busiest <= 5, f"{busiest} redirects in one second, e.g. {redirects[:3]}"
    assert not tracebacks, "\n".join(log[-40:])


def test_agent_restart_keeps_executors(accessd: Accessd, cluster: Cluster) -> None:
    before = steady_tasks(accessd)
    # Down for AGENT_DOWN_SECONDS, as in an agent upgrade: long enough for an executor's
    # reconnect backoff to grow past the agent's 2 s re-registration window.
    cluster.restart_agent(down_seconds=AGENT_DOWN_SECONDS)
    wait_for_leader(cluster)
    # Past the executors' re-registration window (2 s): the same tasks, none lost or replaced.
    assert_same_tasks(accessd, before, seconds=6)
    assert not [e for e in accessd.events("status_update_event")
                if e["taskId"] in before and e["taskStatus"] in ("TASK_LOST", "TASK_FAILED",
                                                                  "TASK_KILLED")]


def test_agent_partition_with_unreachable_strategy(accessd: Accessd, cluster: Cluster) -> None:
    app_id = "/conf/partition"
    strategy = {"inactiveAfterSeconds": 300, "expungeAfterSeconds": 600}
    accessd.wait_deployed(accessd.deploy(served_app(accessd, app_id, 2,
                                                    unreachableStrategy=strategy)))
    before = ids(accessd.wait_ready(app_id, 2))
    cluster.partition_agent()
    try:
        # unreachable after the master's ping timeouts (here 1 s x 15)
        wait_until(lambda: cluster.state().get("activated_slaves") == 0,
                   timeout=PING_TIMEOUT_SECS * MAX_PINGS + 30,
                   message="the agent marked unreachable")
        # inside inactiveAfterSeconds: the tasks stay the app's, nothing replaces them
        watch(3, lambda: ids(accessd.tasks(app_id)) == before or pytest.fail(
            f"tasks changed during the partition: {accessd.tasks(app_id)}"))
    finally:
        cluster.heal_agent()
    wait_for_leader(cluster)
    # back within expungeAfterSeconds: the same tasks, running and healthy, none killed
    wait_until(lambda: ids(accessd.ready_tasks(app_id)) == before, timeout=60,
               message="the same tasks ready after the partition")
    watch(3, lambda: ids(accessd.tasks(app_id)) == before or pytest.fail(
        f"tasks changed after the partition: {accessd.tasks(app_id)}"))
    assert accessd.cluster_tasks("conf_partition.") == before


# -- delete, and nothing left behind ------------------------------------------------------------

def test_delete_leaves_no_process(accessd: Accessd, cluster: Cluster) -> None:
    for app_id in accessd.app_ids():
        accessd.delete(app_id, force=True)  # one may be mid-deployment after a failure
    wait_until(lambda: not accessd.app_ids(), timeout=60, message="every app deleted")
    wait_until(lambda: not accessd.cluster_tasks("", ("TASK_STAGING", "TASK_STARTING",
                                                      "TASK_RUNNING", "TASK_KILLING")),
               timeout=90, message="no task of the framework left in the master")
    wait_until(lambda: not sandbox_processes(str(cluster.work)), timeout=30,
               message="no task or executor process left")


def test_scheduler_logs_hold_no_traceback(accessd: Accessd) -> None:
    lines = accessd.scheduler_logs().splitlines()
    starts = [i for i, line in enumerate(lines) if "Traceback" in line]
    if starts:
        first = lines[max(0, starts[0] - 1):starts[0] + 30]
        # the exception line ends the block: the first unindented line after the start
        end = next((line for line in first[2:] if line and not line.startswith(" ")), "?")
        pytest.fail(f"{len(starts)} tracebacks in the scheduler logs; the first: {end}\n"
                    + "\n".join(first))
