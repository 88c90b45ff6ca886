"""Command tasks (a TaskInfo with a CommandInfo): the agent runs the command itself, as Mesos's
command executor does, with its health check. A mixin of `agent.Agent`."""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

from localmesos import fetcher
from localmesos.docker_containerizer import remove_container
from localmesos.health import HealthChecker
from localmesos.model import Task
from localmesos.procs import kill_group, kill_tree

log = logging.getLogger("localmesos.agent")


def exit_message(returncode: int) -> str:
    if returncode >= 0:
        return f"Command exited with status {returncode}"
    try:
        name = signal.strsignal(-returncode) or f"signal {-returncode}"
    except ValueError:
        name = str(-returncode)
    return f"Command terminated with signal {name}"


def wait_status(returncode: int) -> int:
    """The raw waitpid() status Mesos reports in Event.Failure.status."""
    return (returncode << 8) if returncode >= 0 else -returncode


class CommandTasks:
    def _launch_command(self, fid: str, task: Task, role: str) -> None:
        directory = self._sandbox(fid, task.id, task.container_id)
        task.directory = directory
        command = task.info["command"]
        env = self._env(fid, task.id, directory, command)
        env["MESOS_ALLOCATION_ROLE"] = role
        task.env = env
        fut = fetcher.spawn(self.cluster.spawner, command, self._argv(command), env, directory,
                            os.path.join(directory, "stdout"), os.path.join(directory, "stderr"))
        gen = self.generation
        fut.add_done_callback(lambda f: self._command_started(task, gen, f))

    def _command_started(self, task: Task, gen: int, fut: Any) -> None:
        with self.cluster.lock:
            try:
                popen = fut.result()
            except Exception as exc:
                if gen == self.generation and not task.terminal:
                    if isinstance(exc, fetcher.LaunchError):  # fetch or user: as a Mesos agent
                        self._update(task, "TASK_FAILED", "SOURCE_AGENT",
                                     message=f"Failed to launch container: {exc}",
                                     reason="REASON_CONTAINER_LAUNCH_FAILED")
                    else:
                        self._update(task, "TASK_FAILED", "SOURCE_EXECUTOR",
                                     message=f"Failed to launch command: {exc}",
                                     reason="REASON_COMMAND_EXECUTOR_FAILED")
                return
            if gen != self.generation:  # the agent was stopped meanwhile
                kill_tree(popen.pid, signal.SIGKILL)
                threading.Thread(target=self._wait_command, args=(task, gen, popen),
                                 daemon=True).start()
                return
            task.pid = popen.pid
            if task.kill_requested:
                kill_group(popen.pid, signal.SIGKILL)
            else:
                self._update(task, "TASK_STARTING", "SOURCE_EXECUTOR")
                self._update(task, "TASK_RUNNING", "SOURCE_EXECUTOR")
                check = task.info.get("health_check")
                if isinstance(check, dict):
                    task.health = HealthChecker(self, task, check, task.env)
                    task.health.start()
        if task.docker_name is None:  # one watcher thread for all (a thread each cost most)
            self.cluster.spawner.children.watch(
                popen.pid, lambda: self._wait_command(task, gen, popen), popen.wait)
        else:  # its end runs the docker CLI: not on the shared watcher thread
            threading.Thread(target=self._wait_command, args=(task, gen, popen),
                             name=f"wait-{task.id}", daemon=True).start()

    def _wait_command(self, task: Task, gen: int, popen: Any) -> None:
        rc = popen.wait()
        if task.docker_name is not None:  # the client ended: so does its container
            remove_container(self.cluster.spawner, task.docker_name)
        with self.cluster.lock:
            if task.kill_timer is not None:
                task.kill_timer.cancel()
                task.kill_timer = None
            if task.health is not None:
                task.health.stop()
            self._reap_group(popen.pid, task.directory)
            if gen != self.generation or task.terminal:
                return
            if task.kill_requested:
                state = "TASK_KILLED"
            else:
                state = "TASK_FINISHED" if rc == 0 else "TASK_FAILED"
            log.info("task %s on %s ended: %s (%s)", task.id, self.hostname, state,
                     exit_message(rc))
            self._update(task, state, "SOURCE_EXECUTOR", message=exit_message(rc),
                         healthy=False if task.unhealthy else None)

    def health_update(self, task: Task, healthy: bool) -> None:
        self._update(task, "TASK_RUNNING", "SOURCE_EXECUTOR", healthy=healthy)

    def kill_unhealthy(self, task: Task) -> None:
        log.info("task %s failed its health check too often; killing it", task.id)
        task.unhealthy = True
        self.kill_task(task)
