"""Docker scenarios (issue 22), the same on the real Mesos 1.12 (agent with
`--containerizers=docker,mesos` when Docker is there) and on localmesos: a busybox command that
finishes, a missing image, the Python service image healthy over HTTP, kill with its grace, and
no container left after the apps are deleted. Skipped with the reason without Docker.

Every container carries the label `accessd.conformance=<this run's work dir>` (a docker
`parameters` entry), so `docker ps -a` finds this run's containers on either cluster."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from accessd import image as images
from conformance.accessd_run import Accessd, healthy
from conformance.test_scenarios import deleted
from tests.fixtures_docker import unavailable_reason
from tests.support import wait_until


@pytest.fixture(scope="module")
def docker_images() -> dict[str, str]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    try:
        return images.build(["busybox", "python"])
    except images.BuildError as exc:
        pytest.skip(f"cannot build the images: {exc}")


def label(accessd: Accessd) -> str:
    return f"accessd.conformance={accessd.work}"


def run_containers(accessd: Accessd) -> list[dict]:
    out = subprocess.run([images.docker_bin(), "ps", "-a", "--filter", f"label={label(accessd)}",
                          "--format", "{{json .}}"], capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def docker_app(accessd: Accessd, app_id: str, img: str, cmd: str, **extra) -> dict:
    return {"id": app_id, "cmd": cmd, "cpus": 0.05, "mem": 32, "instances": 1,
            "portDefinitions": [], "backoffSeconds": 30,
            "container": {"type": "DOCKER", "docker": {
                "image": img, "parameters": [{"key": "label", "value": label(accessd)}]}},
            **extra}


def status_states(accessd: Accessd, app_id: str) -> list[tuple[str, str, str]]:
    return [(e["taskId"], e["taskStatus"], e.get("message") or "")
            for e in accessd.events("status_update_event") if e.get("appId") == app_id]


def test_docker_command_finishes(accessd: Accessd, docker_images) -> None:
    app_id = "/conf/docker-hello"
    accessd.deploy(docker_app(accessd, app_id, docker_images["busybox"],
                              "echo hello from $MESOS_SANDBOX"))
    try:
        def finished() -> bool:
            failure = accessd.app(app_id).get("lastTaskFailure")
            if failure and failure["state"] != "TASK_FINISHED":  # the command exits 0
                pytest.fail(f"{failure['state']} {failure['message']}")
            return any(s == "TASK_FINISHED" for _, s, _ in status_states(accessd, app_id))
        wait_until(finished, timeout=90, message=f"a TASK_FINISHED of {app_id}")
        first = status_states(accessd, app_id)[0][0]
        assert [s for t, s, _ in status_states(accessd, app_id) if t == first][-1] \
            == "TASK_FINISHED"
    finally:
        deleted(accessd, app_id)


def test_docker_missing_image_fails(accessd: Accessd, docker_images) -> None:
    app_id = "/conf/docker-missing"
    accessd.deploy(docker_app(accessd, app_id, "accessd/no-such-image:1", "true"))
    try:
        failure = wait_until(lambda: accessd.app(app_id).get("lastTaskFailure"), timeout=90,
                             message=f"{app_id}'s task failure")
        print(f"\nmissing image: {failure['state']} {failure['message']!r}")
        assert failure["state"] == "TASK_FAILED", failure
        assert "accessd/no-such-image:1" in failure["message"], failure
    finally:
        deleted(accessd, app_id)


def test_docker_python_service_healthy(accessd: Accessd, docker_images) -> None:
    app_id = "/conf/docker-quotes"
    data = accessd.work / "docker-store"
    data.mkdir(exist_ok=True)
    os.chmod(data, 0o777)
    app = docker_app(
        accessd, app_id, docker_images["python"],
        "exec gunicorn --bind $HOST:$PORT0 --workers 1 'services.quotes:get_app()'",
        cpus=0.25, mem=192, portDefinitions=[{"port": 0, "name": "http"}],
        env={"ACCESSD_STORE": f"sqlite://{data}/quotes.db"},
        healthChecks=[{"protocol": "HTTP", "path": "/health", "portIndex": 0,
                       "gracePeriodSeconds": 30, "intervalSeconds": 2, "timeoutSeconds": 1,
                       "maxConsecutiveFailures": 3}])
    app["container"]["volumes"] = [{"containerPath": str(data), "hostPath": str(data),
                                    "mode": "RW"}]
    accessd.deploy(app)
    try:
        (task,) = accessd.wait_ready(app_id, 1, timeout=120, fail_on_task_failure=True)
        assert healthy(task, 1), task
    finally:
        deleted(accessd, app_id)


def test_docker_kill_with_grace(accessd: Accessd, docker_images) -> None:
    app_id = "/conf/docker-grace"
    out = accessd.work / "docker-grace"
    out.mkdir(exist_ok=True)
    os.chmod(out, 0o777)
    cmd = ("trap 'echo got TERM > /out/$MESOS_TASK_ID; exit 0' TERM; "
           "while :; do sleep 0.2; done")
    app = docker_app(accessd, app_id, docker_images["busybox"], cmd,
                     taskKillGracePeriodSeconds=10)
    app["container"]["volumes"] = [{"containerPath": "/out", "hostPath": str(out),
                                    "mode": "RW"}]
    accessd.deploy(app)
    try:
        (task,) = accessd.wait_ready(app_id, 1, timeout=90, fail_on_task_failure=True)
    finally:
        deleted(accessd, app_id)
    ends = [s for t, s, _ in status_states(accessd, app_id) if t == task["id"]]
    assert ends[-1] == "TASK_KILLED", ends
    assert (out / task["id"]).read_text().strip() == "got TERM"  # SIGTERM first, within grace


def test_docker_no_container_left(accessd: Accessd, docker_images) -> None:
    """Runs last in this module: every app above is deleted, so none of their containers
    (running or stopped) may remain."""
    wait_until(lambda: not run_containers(accessd), timeout=30,
               message="no container of this run left (docker ps -a)")
