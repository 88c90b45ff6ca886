"""Docker containers for command tasks (`TaskInfo.container.type == DOCKER`), the way Mesos's
docker containerizer runs them (docs/docker-containerizer.md; `ContainerInfo.DockerInfo` in
mesos.proto). A mixin of `agent.Agent`: the task's process is the `docker run` client, attached,
so stdout/stderr land in the sandbox and the command-task machinery (updates, health checks,
kill grace, exit status) applies unchanged.

- The image must be on the agent: when it is not, it is pulled first, as Mesos does; with no
  registry the pull fails and the task is TASK_FAILED (`REASON_CONTAINER_LAUNCH_FAILED`) with
  Docker's own error. `force_pull_image` is refused at launch with the reason (no registry).
- The container is `mesos-<container id>`, labelled with the agent's work dir and the task id;
  the sandbox is mounted at `/mnt/mesos/sandbox` (`MESOS_SANDBOX`), the CommandInfo's
  environment is passed by name (`-e NAME`, values never on a command line), `--cpu-shares`
  and `--memory` follow the task's resources, `parameters` become `--key=value`, `volumes`
  `-v host:container:ro|rw` (a relative host path is inside the sandbox), `privileged` is
  `--privileged`.
- `shell: true` runs `/bin/sh -c value` as the entrypoint; otherwise `value` (if any) and
  `arguments` follow the image, and a CommandInfo without either runs the image's own command.
- Networking: HOST is `--net host`; NONE `--net none`; USER the named network. BRIDGE: the
  dockerd that tools/docker-deps.sh starts has no docker0 (`--bridge=none`), so BRIDGE tasks join
  the user-defined bridge network `$LOCALMESOS_DOCKER_BRIDGE` (default `accessd-bridge`, made
  by that script) and each port mapping is published on the agent's loopback address only
  (127.0.1.k, `localmesos/addresses.py`: where its tasks are reached and health-checked).
- RUNNING is sent once Docker reports the container running (as the docker executor waits for
  `docker inspect`); a `docker run` that fails before that (status 125) fails the launch with
  Docker's message.
- No container outlives its task: when the client ends (exit, kill, SIGKILL after the grace,
  agent stop) the container is removed (`docker rm -f`); cluster shutdown removes every
  container labelled with its work dir once the tasks' SIGTERM grace is over, and so does the
  guardian (procs.py) when localmesos ends any other way, even by SIGKILL.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from concurrent.futures import Future
from typing import Any

from localmesos.docker_cli import docker_bin
from localmesos.fetcher import LaunchError
from localmesos.model import Task

log = logging.getLogger("localmesos.docker")

SANDBOX_PATH = "/mnt/mesos/sandbox"
DOCKER_SOCKET = "unix:///var/run/docker.sock"
START_TIMEOUT = 60.0  # seconds for `docker run` to report the container running
PULL_TIMEOUT = 120.0
LABEL_WORK_DIR = "localmesos.work_dir"
LABEL_TASK = "localmesos.task_id"
DOCKER_WORK_DIRS: set[str] = set()  # clusters of this process that launched a container


def bridge_network() -> str:
    return os.environ.get("LOCALMESOS_DOCKER_BRIDGE", "accessd-bridge")


def is_docker(ti: dict[str, Any]) -> bool:
    container = ti.get("container")
    return (isinstance(container, dict) and container.get("type") == "DOCKER"
            and "executor" not in ti)


def container_name(task: Task) -> str:
    return f"mesos-{task.container_id}"


def _scalar(resources: list[dict[str, Any]], name: str) -> float:
    return sum(float((r.get("scalar") or {}).get("value", 0)) for r in resources
               if isinstance(r, dict) and r.get("name") == name)


def run_argv(ti: dict[str, Any], name: str, sandbox: str, env: dict[str, str],
             work_dir: str, publish_ip: str = "127.0.0.1") -> list[str]:
    """The `docker run` command line for a DOCKER TaskInfo (pure; LaunchError if it cannot
    run here). Environment values are not in it: `-e NAME` takes them from the client's env.
    BRIDGE ports are published on `publish_ip` only: the agent's own loopback address."""
    container = ti["container"]
    docker = container.get("docker") or {}
    image = docker.get("image")
    if not isinstance(image, str) or not image:
        raise LaunchError("DockerInfo.image is required for a DOCKER container")
    if docker.get("force_pull_image"):
        raise LaunchError(f"force_pull_image is set but this agent reaches no Docker registry: "
                          f"it cannot pull '{image}' (build the image on the agent, unset "
                          f"forcePullImage)")
    task_id = str((ti.get("task_id") or {}).get("value", ""))
    argv = [docker_bin(), "-H", DOCKER_SOCKET, "run", "--name", name,
            "--label", f"{LABEL_WORK_DIR}={work_dir}", "--label", f"{LABEL_TASK}={task_id}"]
    resources = ti.get("resources") or []
    cpus, mem = _scalar(resources, "cpus"), _scalar(resources, "mem")
    if cpus > 0:
        argv += ["--cpu-shares", str(max(2, int(cpus * 1024)))]
    if mem > 0:
        argv += ["--memory", f"{max(32, int(mem))}m"]
    for key in sorted(env):  # the client's MESOS_SANDBOX is the host path (procs.Spawner's)
        argv += ["-e", f"{key}={SANDBOX_PATH}" if key == "MESOS_SANDBOX" else key]
    argv += ["-v", f"{sandbox}:{SANDBOX_PATH}"]
    for vol in container.get("volumes") or []:
        host, path = vol.get("host_path"), vol.get("container_path")
        if not path:
            raise LaunchError("a volume needs a container_path")
        if not host:
            raise LaunchError(f"volume {path}: only host-path volumes are supported here")
        if not os.path.isabs(host):
            host = os.path.join(sandbox, host)
        mode = "ro" if vol.get("mode") == "RO" else "rw"
        argv += ["-v", f"{host}:{path}:{mode}"]
    network = docker.get("network", "HOST")
    mappings = docker.get("port_mappings") or []
    if network == "HOST":
        argv += ["--net", "host"]
    elif network == "BRIDGE":
        argv += ["--net", bridge_network()]
        for m in mappings:
            proto = str(m.get("protocol") or "tcp").lower()
            for p in proto.split(","):
                argv += ["-p", f"{publish_ip}:{int(m['host_port'])}:"
                                f"{int(m['container_port'])}/{p}"]
    elif network == "NONE":
        argv += ["--net", "none"]
    elif network == "USER":
        nets = [n.get("name") for n in container.get("network_infos") or [] if n.get("name")]
        if not nets:
            raise LaunchError("a USER network needs ContainerInfo.network_infos[].name")
        argv += ["--net", str(nets[0])]
    else:
        raise LaunchError(f"unknown DockerInfo.network {network!r}")
    if mappings and network != "BRIDGE":
        raise LaunchError(f"port mappings need BRIDGE networking, not {network}")
    if docker.get("privileged"):
        argv.append("--privileged")
    for param in docker.get("parameters") or []:
        argv.append(f"--{param.get('key')}={param.get('value', '')}")
    command = ti.get("command") or {}
    shell = command.get("shell", True) if "value" in command else False
    if shell:
        argv += ["--entrypoint", "/bin/sh", image, "-c", str(command.get("value", ""))]
    else:
        argv.append(image)
        if command.get("value"):
            argv.append(str(command["value"]))
        argv += [str(a) for a in command.get("arguments") or []]
    return argv


def _docker(spawner: Any, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
    """The docker CLI, run through the spawner (procs.Spawner.run_helper): a plain child of
    localmesos would be killed by its reaper as an orphan."""
    return spawner.run_helper([docker_bin(), "-H", DOCKER_SOCKET, *args], timeout)


def ensure_image(spawner: Any, image: str) -> None:
    """The image on this agent, or LaunchError with the failed pull, worded as Mesos does."""
    if _docker(spawner, "image", "inspect", image).returncode == 0:
        return
    ref = image if ":" in image.rsplit("/", 1)[-1] else f"{image}:latest"
    try:
        pull = _docker(spawner, "pull", ref, timeout=PULL_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise LaunchError(f"Failed to run '{docker_bin()} -H {DOCKER_SOCKET} pull {ref}': "
                          f"no answer within {PULL_TIMEOUT:g} seconds") from None
    if pull.returncode != 0:  # worded as the real agent's (conformance/test_docker.py)
        raise LaunchError(f"Failed to run '{docker_bin()} -H {DOCKER_SOCKET} pull {ref}': "
                          f"exited with "
                          f"status {pull.returncode}; stderr='{pull.stderr.strip()}'")


def remove_container(spawner: Any, name: str) -> None:
    try:
        _docker(spawner, "rm", "-f", "-v", name)
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("could not remove container %s: %s", name, exc)


def remove_all(spawner: Any, work_dir: str) -> int:
    """Every container of this cluster (its label), whatever state; returns how many."""
    if work_dir not in DOCKER_WORK_DIRS:
        return 0  # never launched one: no need for Docker at all
    try:
        ids = _docker(spawner, "ps", "-aq", "--filter",
                      f"label={LABEL_WORK_DIR}={work_dir}").stdout.split()
        if ids:
            _docker(spawner, "rm", "-f", "-v", *ids, timeout=60)
        return len(ids)
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("could not remove the cluster's containers: %s", exc)
        return 0


def _wait_running(spawner: Any, name: str, popen: Any, stderr_path: str) -> None:
    """Until Docker reports the container running, or LaunchError if `docker run` failed."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        rc = popen.poll()
        state = _docker(spawner, "inspect", "-f", "{{.State.Status}}", name)
        if state.returncode == 0 and state.stdout.strip() in ("running", "exited", "dead"):
            return  # started (a quick command may already have ended: its exit tells)
        if rc is not None:
            if rc == 125:  # Docker's own failure, before any container process ran
                try:
                    with open(stderr_path, errors="replace") as fh:
                        text = fh.read()[-2000:].strip()
                except OSError:
                    text = ""
                raise LaunchError(f"Failed to run 'docker run': exited with status 125; "
                                  f"stderr='{text}'")
            return
        time.sleep(0.05)
    raise LaunchError(f"container {name} did not start within {START_TIMEOUT:g} seconds")


class DockerTasks:
    """Mixin of `agent.Agent`: `_launch_docker` is the DOCKER counterpart of `_launch_command`."""

    def _launch_docker(self, fid: str, task: Task, role: str) -> None:
        agent: Any = self
        directory = agent._sandbox(fid, task.id, task.container_id)
        task.directory = directory
        command = task.info.get("command") or {}
        env = {k: v for k, v in agent._env(fid, task.id, directory, command).items()
               if k != "PATH"}  # the image's PATH, not the agent's
        env.update({"MESOS_SANDBOX": SANDBOX_PATH, "MESOS_ALLOCATION_ROLE": role,
                    "MESOS_CONTAINER_NAME": container_name(task)})
        task.env = env
        name = container_name(task)
        result: Future = Future()
        try:
            argv = run_argv(task.info, name, directory, env, str(agent.work_dir), agent.ip)
        except LaunchError as exc:
            result.set_exception(exc)
        else:
            task.docker_name = name
            client_env = {**env, "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                          "MESOS_SANDBOX": directory}
            if str(agent.work_dir) not in DOCKER_WORK_DIRS:  # the guardian's cue (procs.py)
                DOCKER_WORK_DIRS.add(str(agent.work_dir))
                (agent.work_dir / ".docker-containers").write_text(docker_bin() + "\n")
            spawner = agent.cluster.spawner
            stdout = os.path.join(directory, "stdout")
            stderr = os.path.join(directory, "stderr")

            def prepare() -> None:
                try:
                    ensure_image(spawner, task.info["container"]["docker"]["image"])
                    popen = spawner.spawn(argv, client_env, directory, stdout,
                                                        stderr).result()
                except LaunchError as exc:
                    result.set_exception(exc)
                    return
                except Exception as exc:  # a launch never dies silently
                    result.set_exception(LaunchError(f"Failed to launch: {exc}"))
                    return
                try:
                    _wait_running(spawner, name, popen, stderr)
                except LaunchError as exc:
                    popen.kill()
                    popen.wait()
                    remove_container(spawner, name)
                    spawner.ended(popen.pid, directory)
                    result.set_exception(exc)
                    return
                result.set_result(popen)

            threading.Thread(target=prepare, name=f"docker-{task.id}", daemon=True).start()
        gen = agent.generation
        result.add_done_callback(lambda f: agent._command_started(task, gen, f))
