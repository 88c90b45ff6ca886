"""Docker apps end to end (issue 22): `accessd scheduler` on localmesos, whose agents run
`container.docker` apps as Mesos's docker containerizer does. Skipped with the reason when no
dockerd can run here (tests/fixtures_docker.py).

Most tests use the busybox image (built in about a second); one runs an access service from the
Python image (built once per machine, then cached) on a bridge network."""

from __future__ import annotations

import contextlib
import os
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scheduler.state import StateStore
from tests.fixtures_docker import containers, docker
from tests.fixtures_scheduler import delete_app, deploy_app, scale_app, scheduler_cluster
from tests.support import wait_until

pytestmark = pytest.mark.timeout(180)
TERMINAL = ("TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_LOST", "TASK_ERROR")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, docker_ready: None
            ) -> Iterator[tuple[Any, StateStore, Any, str]]:
    work = tmp_path_factory.mktemp("docker")
    with scheduler_cluster(work) as (mesos, store, sched):
        work_dir = str(Path(mesos.work_dir).resolve())
        yield mesos, store, sched, work_dir
    assert containers(f"localmesos.work_dir={work_dir}") == [], "containers outlived localmesos"


def framework_tasks(mesos: Any, sched: Any, app_id: str) -> list[dict]:
    """Every task (live and completed) of `app_id` in the master's /state."""
    prefix = app_id.strip("/").replace("/", "_") + "."
    out = []
    for fw in mesos.state().get("frameworks", []):
        if fw.get("id") == sched.framework_id:
            out += [t for t in fw.get("tasks", []) + fw.get("completed_tasks", [])
                    if t["id"].startswith(prefix)]
    return out


def app_containers(work_dir: str, task_id: str | None = None) -> list[dict]:
    found = containers(f"localmesos.work_dir={work_dir}")
    if task_id is None:
        return found
    return [c for c in found if f"localmesos.task_id={task_id}" in c.get("Labels", "")]


def sandbox_file(mesos: Any, task: dict, name: str) -> str:
    for path in Path(mesos.work_dir).rglob(f"executors/{task['id']}/runs/*/{name}"):
        return path.read_text(errors="replace")
    return ""


def busybox_app(app_id: str, image: str, cmd: str, **extra: Any) -> dict:
    return {"id": app_id, "cmd": cmd, "cpus": 0.1, "mem": 32, "instances": 1,
            "container": {"type": "DOCKER", "docker": {"image": image}},
            "backoffSeconds": 60, **extra}


def test_a_busybox_command_runs_in_its_container_and_finishes(cluster, busybox_image):
    mesos, store, sched, work_dir = cluster
    app = busybox_app("/docker/hello", busybox_image,
                      'echo "hello from $(hostname) in $MESOS_SANDBOX image '
                      '$MARATHON_APP_DOCKER_IMAGE"; ls /mnt/mesos/sandbox/stdout',
                      portDefinitions=[])
    deploy_app(store, app)
    try:
        task = wait_until(lambda: next((t for t in framework_tasks(mesos, sched, "/docker/hello")
                                        if t["state"] == "TASK_FINISHED"), None), 60,
                          message="a TASK_FINISHED busybox task")
    except AssertionError as exc:
        seen = [(t["id"], [s["state"] for s in t["statuses"]])
                for t in framework_tasks(mesos, sched, "/docker/hello")]
        raise AssertionError(f"{exc}; tasks {seen}; status "
                             f"{store.get_app_status('/docker/hello')}") from None
    states = [s["state"] for s in task["statuses"]]
    assert states[-3:] == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"], states
    out = sandbox_file(mesos, task, "stdout")
    assert f"in /mnt/mesos/sandbox image {busybox_image}" in out, out
    assert "/mnt/mesos/sandbox/stdout" in out  # the sandbox is mounted where Mesos mounts it
    delete_app(store, "/docker/hello", force=True)
    wait_until(lambda: not app_containers(work_dir, task["id"]), 30,
               message="the finished task's container removed")


def test_a_missing_image_fails_the_task_with_dockers_reason(cluster, docker_ready):
    mesos, store, sched, work_dir = cluster
    deploy_app(store, busybox_app("/docker/missing", "accessd/no-such-image:1", "true",
                                  portDefinitions=[]))
    failure = wait_until(lambda: (store.get_app_status("/docker/missing") or {}).get(
        "lastTaskFailure"), 60, message="lastTaskFailure of the missing image")
    assert failure["state"] == "TASK_FAILED", failure
    assert "Failed to launch container" in failure["message"], failure
    assert "pull accessd/no-such-image:1" in failure["message"], failure
    (task,) = [t for t in framework_tasks(mesos, sched, "/docker/missing")
               if t["id"] == failure["taskId"]]
    assert [s["state"] for s in task["statuses"]] == ["TASK_FAILED"]  # never RUNNING
    delete_app(store, "/docker/missing", force=True)


def test_kill_sends_sigterm_then_waits_the_grace(cluster, busybox_image):
    mesos, store, sched, work_dir = cluster
    cmd = ("trap 'echo got TERM; sleep 1; echo bye; exit 0' TERM; echo up; "
           "while :; do sleep 0.2; done")
    deploy_app(store, busybox_app("/docker/grace", busybox_image, cmd, portDefinitions=[],
                                  taskKillGracePeriodSeconds=10))
    task = wait_until(lambda: next((t for t in framework_tasks(mesos, sched, "/docker/grace")
                                    if t["state"] == "TASK_RUNNING"), None), 60)
    wait_until(lambda: "up" in sandbox_file(mesos, task, "stdout"), 30)
    assert len(app_containers(work_dir, task["id"])) == 1
    delete_app(store, "/docker/grace", force=True)
    done = wait_until(lambda: next((t for t in framework_tasks(mesos, sched, "/docker/grace")
                                    if t["id"] == task["id"] and t["state"] in TERMINAL),
                                   None), 30)
    assert done["state"] == "TASK_KILLED"
    out = sandbox_file(mesos, task, "stdout")
    assert "got TERM" in out and "bye" in out, out  # it used its grace, not SIGKILLed
    wait_until(lambda: not app_containers(work_dir, task["id"]), 30,
               message="the killed task's container removed")


def test_scale_to_three_with_unique_hostnames(cluster, busybox_image):
    mesos, store, sched, work_dir = cluster
    deploy_app(store, busybox_app("/docker/unique", busybox_image,
                                  "trap 'exit 0' TERM; while :; do sleep 0.2; done",
                                  constraints=[["hostname", "UNIQUE"]],
                                  taskKillGracePeriodSeconds=2))
    scale_app(store, "/docker/unique", 3, force=True)

    def three_running():
        tasks = [t for t in store.list_tasks("/docker/unique") if t["state"] == "TASK_RUNNING"]
        return tasks if len(tasks) == 3 else None
    tasks = wait_until(three_running, 60, message="3 running docker tasks")
    assert len({t["host"] for t in tasks}) == 3
    running = [c for c in app_containers(work_dir) if c["State"] == "running"
               and any(f"localmesos.task_id={t['id']}" in c["Labels"] for t in tasks)]
    assert len(running) == 3, running
    scale_app(store, "/docker/unique", 4, force=True)  # a 4th cannot be placed: 3 agents
    wait_until(lambda: ((store.get_app_status("/docker/unique") or {}).get("waiting") or {})
               .get("reason") == "constraint hostname UNIQUE", 30)
    delete_app(store, "/docker/unique", force=True)
    wait_until(lambda: not [c for c in app_containers(work_dir)
                            if any(t["id"] in c["Labels"] for t in tasks)], 30,
               message="the deleted app's containers removed")


def test_agent_stop_and_cluster_stop_leave_no_container(tmp_path, busybox_image,
                                                        no_leftover_containers):
    def start(work, app_id: str) -> tuple[Any, Any, str, list[dict]]:
        ctx = scheduler_cluster(work)
        mesos, store, _ = ctx.__enter__()
        work_dir = str(Path(mesos.work_dir).resolve())
        no_leftover_containers.append(work_dir)
        deploy_app(store, busybox_app(app_id, busybox_image, "exec sleep 600", instances=3,
                                      constraints=[["hostname", "UNIQUE"]]))
        tasks = wait_until(lambda: (lambda ts: ts if len(ts) == 3 else None)(
            [t for t in store.list_tasks(app_id) if t["state"] == "TASK_RUNNING"]), 60)
        wait_until(lambda: len(app_containers(work_dir)) == 3, 30)
        return ctx, mesos, work_dir, tasks

    ctx, mesos, work_dir, tasks = start(tmp_path / "stop", "/docker/stay")
    try:
        victim = tasks[0]
        mesos.stop_agent(victim["host"])  # machine loss: its processes SIGKILLed
        wait_until(lambda: not app_containers(work_dir, victim["id"]), 30,
                   message="the lost agent's container removed")
        assert len(app_containers(work_dir)) == 2
    finally:
        ctx.__exit__(None, None, None)
    left = [(c["Names"], c["State"]) for c in app_containers(work_dir)]
    assert left == []  # localmesos stopped: `docker ps -a` is clean

    ctx, mesos, work_dir, _ = start(tmp_path / "kill9", "/docker/stay9")
    try:
        mesos.proc.signal(signal.SIGKILL)  # no shutdown at all: the guardian removes them
        wait_until(lambda: not app_containers(work_dir), 30,
                   message="containers removed after localmesos was SIGKILLed")
    finally:
        with contextlib.suppress(AssertionError):  # the scheduler lost its master
            ctx.__exit__(None, None, None)


def test_a_python_service_image_passes_its_http_health_check_on_a_bridge(
        cluster, python_image, tmp_path):
    mesos, store, sched, work_dir = cluster
    data = tmp_path / "store"
    data.mkdir()
    os.chmod(data, 0o777)
    app = {
        "id": "/docker/quotes", "cpus": 0.25, "mem": 192, "instances": 1,
        "cmd": "exec gunicorn --bind 0.0.0.0:8080 --workers 1 'services.quotes:get_app()'",
        "env": {"ACCESSD_STORE": "sqlite:///data/quotes.db"},
        "container": {"type": "DOCKER", "docker": {"image": python_image},
                      "volumes": [{"containerPath": "/data", "hostPath": str(data),
                                   "mode": "RW"}],
                      "portMappings": [{"containerPort": 8080, "hostPort": 0, "name": "http"}]},
        "networks": [{"mode": "container/bridge"}],
        "healthChecks": [{"protocol": "HTTP", "path": "/health", "portIndex": 0,
                          "gracePeriodSeconds": 30, "intervalSeconds": 2,
                          "timeoutSeconds": 1, "maxConsecutiveFailures": 3}],
    }
    deploy_app(store, app)
    task = wait_until(lambda: next((t for t in store.list_tasks("/docker/quotes")
                                    if t.get("healthy") is True), None), 90,
                      message="a healthy quotes container")
    (port,) = task["ports"]
    host = task["host"]  # the agent's loopback address (127.0.1.k)
    assert host.startswith("127."), host
    with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=5) as resp:
        assert resp.status == 200 and b'"ok"' in resp.read()
    (c,) = app_containers(work_dir, task["id"])
    assert c["Ports"] == f"{host}:{port}->8080/tcp", c  # published on that address only
    env = docker("inspect", "-f", "{{json .Config.Env}}", c["ID"]).stdout
    assert f'"PORT0={port}"' in env and f'"PORT_8080={port}"' in env, env
    delete_app(store, "/docker/quotes", force=True)
    wait_until(lambda: not app_containers(work_dir, task["id"]), 30)
