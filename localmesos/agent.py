"""An agent: sandboxes, task and executor processes, the v1 executor API, status updates.

Invariants (all state under the cluster lock; process work happens on the spawner thread and
one waiter thread per child):
- Each task or executor process runs in its own session/process group in its own sandbox
  `<work>/slaves/<agent>/frameworks/<fw>/executors/<executor>/runs/<container>`; when its main
  process ends, whatever is left of its group is SIGKILLed (no orphans).
- Status updates of one task reach the scheduler in order, one at a time: the next is sent only
  after the previous one is acknowledged; an unacknowledged update is re-sent with backoff
  (and at once when the framework re-subscribes). Each carries the `uuid` it was created with.
- An executor's UPDATE is ACKNOWLEDGED back to the executor as soon as the agent holds it.
- A stopped agent ("machine loss") has killed every process it started and forgets everything;
  late callbacks from its old processes are ignored (generation check).
"""

from __future__ import annotations

import collections
import logging
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localmesos.addresses import agent_address
from localmesos.agent_recovery import AgentRecovery
from localmesos.command_tasks import CommandTasks, exit_message, wait_status
from localmesos.docker_containerizer import DockerTasks, is_docker
from localmesos.executor_api import EXECUTOR_CALLS, ExecutorApi
from localmesos.executors import ExecutorLifecycle
from localmesos.files_api import SandboxFiles
from localmesos.httpserver import HttpServer, Request, Response, Stream
from localmesos.model import VERSION, Executor, Task, grace_seconds, mesos_duration
from localmesos.procs import exited, kill_group, kill_tree
from localmesos.resources import Resources
from localmesos.status_updates import Key, StatusUpdates

if TYPE_CHECKING:
    from localmesos.cluster import Cluster

__all__ = ["Agent", "EXECUTOR_CALLS", "exit_message", "wait_status"]

log = logging.getLogger("localmesos.agent")

DEFAULT_KILL_GRACE = 3.0
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Agent(CommandTasks, DockerTasks, ExecutorLifecycle, StatusUpdates, ExecutorApi, AgentRecovery):
    def __init__(self, cluster: Cluster, index: int, total: Resources,
                 attributes: list[tuple[str, str]], work_dir: Path) -> None:
        self.cluster = cluster
        self.index = index
        self.ip = agent_address(index)  # its hostname too: a client reaches tasks there
        self.hostname = self.ip
        self.total = total
        self.attributes = attributes
        self.work_dir = work_dir
        self.id = ""
        self.registered_time = 0.0
        self.running = False
        self.down = False  # the agent process is gone but its executors run (checkpointed)
        self.marked_gone = False
        self.generation = 0
        self.tasks: dict[Key, Task] = {}
        self.executors: dict[Key, Executor] = {}
        self.framework_infos: dict[str, dict[str, Any]] = {}
        self.removed_frameworks: set[str] = set()
        self.pending: dict[Key, collections.deque[dict[str, Any]]] = {}
        self.retry: dict[Key, tuple[Any, float]] = {}
        self.executor_api_answers: collections.Counter[str] = collections.Counter()
        # KILLs the master got while this agent was disconnected: sent when it re-registers
        self.held_kills: dict[str, float | None] = {}
        self.server = HttpServer(self.ip, 0, self.handle, name=f"agent{index}-http")
        self.files = SandboxFiles()

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def pid(self) -> str:
        return f"slave(1)@{self.ip}:{self.port}"

    @property
    def master(self) -> Any:
        return self.cluster.master

    # ---- registration and faults ---------------------------------------------------------

    def start(self, agent_id: str, now: float) -> None:
        self.id = agent_id
        self.registered_time = now
        self.running = True
        self.marked_gone = False
        self.generation += 1
        self.removed_frameworks = set()

    def stop(self, why: str) -> list[Task]:
        """Machine loss: SIGKILL every process, forget all state; returns the tasks it had."""
        self.generation += 1
        self.running = False
        self.registering = False  # the machine's next agent registers anew (`start`)
        self.held_kills = {}
        if self.down:  # its process had stopped: the machine's next agent listens again
            self.down = False
            self.server.reopen()
        tasks = list(self.tasks.values())
        for task in tasks:
            if task.kill_timer is not None:
                task.kill_timer.cancel()
            if task.health is not None:
                task.health.stop()
            if task.pid is not None and task.executor is None:
                kill_tree(task.pid, signal.SIGKILL)
        for ex in list(self.executors.values()):
            for t in ex.timers:
                t.cancel()
            if ex.stream is not None:
                ex.stream.close()
            if ex.pid is not None:
                kill_tree(ex.pid, signal.SIGKILL)
        for timer, _ in self.retry.values():
            timer.cancel()
        self.tasks.clear()
        self.executors.clear()
        self.pending.clear()
        self.retry.clear()
        log.info("agent %s (%s) stopped: %s", self.id, self.hostname, why)
        return tasks

    def shutdown_all(self) -> None:
        """localmesos is ending: SIGTERM every group (callers SIGKILL what remains)."""
        for pid in self.pids():
            kill_tree(pid, signal.SIGTERM)

    def pids(self) -> list[int]:
        pids = [t.pid for t in self.tasks.values() if t.pid is not None and t.executor is None]
        pids += [e.pid for e in self.executors.values() if e.pid is not None]
        return pids

    def _reap_group(self, pgid: int, sandbox: str) -> None:
        """The main process was reaped: end whatever is left of its group, close the container."""
        kill_group(pgid, signal.SIGKILL)
        self.cluster.spawner.ended(pgid, sandbox)

    # ---- resources -----------------------------------------------------------------------

    def used(self) -> Resources:
        total = Resources()
        for t in self.tasks.values():
            if not t.terminal:
                total = total + t.resources
        for e in self.executors.values():
            if not e.exited:
                total = total + e.resources
        return total

    def attributes_proto(self) -> list[dict[str, Any]]:
        out = []
        for name, text in self.attributes:
            try:
                out.append({"name": name, "type": "SCALAR", "scalar": {"value": float(text)}})
            except ValueError:
                out.append({"name": name, "type": "TEXT", "text": {"value": text}})
        return out

    def attributes_state(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, text in self.attributes:
            try:
                out[name] = float(text)
            except ValueError:
                out[name] = text
        return out

    def agent_info(self) -> dict[str, Any]:
        return {"id": {"value": self.id}, "hostname": self.hostname, "port": self.port,
                "attributes": self.attributes_proto(), "resources": self.total.to_proto()}

    def has_executor(self, fid: str, eid: str) -> bool:
        ex = self.executors.get((fid, eid))
        return ex is not None and not ex.exited

    def executors_of(self, fid: str) -> list[Executor]:
        return [e for (f, _), e in self.executors.items() if f == fid and not e.exited]

    def live_tasks(self) -> list[Task]:
        return list(self.tasks.values())

    # ---- launching -------------------------------------------------------------------------

    def _sandbox(self, fid: str, eid: str, container_id: str) -> str:
        # os.path, not pathlib: an ACCEPT makes hundreds of these under the cluster lock
        d = os.path.join(self.work_dir, "slaves", self.id, "frameworks", fid, "executors", eid,
                         "runs", container_id)
        os.makedirs(d, exist_ok=True)
        self.files.attach_sandbox(str(self.work_dir), self.id, fid, eid, d)
        return d

    def _env(self, fid: str, eid: str, directory: str, command: dict[str, Any]) -> dict[str, str]:
        info = self.framework_infos.get(fid) or {}
        env = {
            "PATH": os.environ.get("PATH") or DEFAULT_PATH,
            "LIBPROCESS_IP": self.ip, "LIBPROCESS_PORT": "0",
            "MESOS_AGENT_ENDPOINT": f"{self.ip}:{self.port}",
            "MESOS_CHECKPOINT": "1" if info.get("checkpoint") else "0",
            "MESOS_DIRECTORY": directory, "MESOS_SANDBOX": directory,
            "MESOS_EXECUTOR_ID": eid,
            "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD": f"{self.cluster.opts.executor_shutdown_grace:g}secs",
            "MESOS_FRAMEWORK_ID": fid, "MESOS_HTTP_COMMAND_EXECUTOR": "0",
            "MESOS_SLAVE_ID": self.id, "MESOS_SLAVE_PID": self.pid,
        }
        if info.get("checkpoint"):
            # As a real agent does for checkpointing frameworks (executor_env_checkpointed.json):
            # how long an executor may wait between re-subscription attempts, and how long it
            # should wait for a restarted agent before giving up.
            opts = self.cluster.opts
            env["MESOS_SUBSCRIPTION_BACKOFF_MAX"] = mesos_duration(
                opts.executor_subscription_backoff_max)
            env["MESOS_RECOVERY_TIMEOUT"] = mesos_duration(opts.recovery_timeout)
        for var in ((command.get("environment") or {}).get("variables")) or []:
            if isinstance(var, dict) and isinstance(var.get("name"), str) \
                    and var.get("type", "VALUE") == "VALUE":
                env[var["name"]] = str(var.get("value", ""))
        return env

    def argv_of(self, command: dict[str, Any]) -> list[str]:
        return self._argv(command)

    @staticmethod
    def _argv(command: dict[str, Any]) -> list[str]:
        if command.get("shell", True):
            return ["/bin/sh", "-c", str(command.get("value", ""))]
        args = [str(a) for a in command.get("arguments") or []]
        return [str(command.get("value", ""))] + args[1:] if args else [str(command.get("value", ""))]

    def launch(self, fid: str, fw_info: dict[str, Any], ti: dict[str, Any], resources: Resources,
               role: str) -> Task:
        self.framework_infos[fid] = dict(fw_info)
        task = Task(ti, fid, self, resources, role)
        self.tasks[(fid, task.id)] = task
        try:
            if "executor" in ti:
                self._launch_on_executor(fid, ti, task, role)
            elif is_docker(ti):
                self._launch_docker(fid, task, role)
            else:
                self._launch_command(fid, task, role)
        except OSError as exc:  # e.g. the sandbox cannot be created
            log.error("cannot launch task %s on %s: %s", task.id, self.hostname, exc)
            if task.executor is not None:
                task.executor.tasks.pop(task.id, None)
            task.executor = None
            self._update(task, "TASK_FAILED", "SOURCE_AGENT", message=f"Failed to launch: {exc}",
                         reason="REASON_CONTAINER_LAUNCH_FAILED")
        return task

    # ---- killing ---------------------------------------------------------------------------

    def kill_task(self, task: Task, grace: float | None = None) -> None:
        if task.terminal:
            return
        if grace is None:
            grace = grace_seconds(task.info.get("kill_policy"))
        fw_info = self.framework_infos.get(task.framework_id) or {}
        killing = any(isinstance(c, dict) and c.get("type") == "TASK_KILLING_STATE"
                      for c in fw_info.get("capabilities") or [])
        ex = task.executor
        if ex is not None:
            task.kill_requested = True
            if not ex.subscribed:
                if task in ex.queued:
                    ex.queued.remove(task)
                self._update(task, "TASK_KILLED", "SOURCE_AGENT",
                             message="Killed before delivery to the executor",
                             reason="REASON_TASK_KILLED_DURING_LAUNCH")
                if not any(not t.terminal for t in ex.tasks.values()):
                    self.shutdown_executor(ex.framework_id, ex.id)
                return
            event: dict[str, Any] = {"task_id": {"value": task.id}}
            policy = task.info.get("kill_policy")
            if grace is not None:
                policy = {"grace_period": {"nanoseconds": int(grace * 1e9)}}
            if policy is not None:
                event["kill_policy"] = policy
            ex.send({"type": "KILL", "kill": event})
            return
        if task.kill_requested:
            return
        task.kill_requested = True
        if task.pid is None:
            return  # not spawned yet: _command_started kills it on arrival
        if killing:
            self._update(task, "TASK_KILLING", "SOURCE_EXECUTOR")
        grace = DEFAULT_KILL_GRACE if grace is None else grace
        kill_tree(task.pid, signal.SIGTERM)
        task.kill_timer = self.cluster.timers.call_later(grace, self._escalate, task)

    def _escalate(self, task: Task) -> None:
        task.kill_timer = None
        # A main process that has ended is not escalated: its end (_wait_command) kills what is
        # left of its group, and the reaper the orphans of its container. Its children are
        # ours by then (subreaper), so a kill_tree from it found nothing, after a fresh read
        # of /proc: for 1,000 tasks whose ends were still queued, 1,000 reads.
        if task.pid is not None and not task.terminal and not exited(task.pid):
            log.info("task %s did not end within its grace period; SIGKILL", task.id)
            kill_tree(task.pid, signal.SIGKILL)

    def shutdown_framework(self, fid: str) -> None:
        """The framework is gone: kill its tasks and executors; its updates go nowhere."""
        self.removed_frameworks.add(fid)
        for key in [k for k in self.pending if k[0] == fid]:
            self.pending.pop(key, None)
            timer = self.retry.pop(key, (None, 0.0))[0]
            if timer is not None:
                timer.cancel()
        for (f, _), task in list(self.tasks.items()):
            if f == fid and task.executor is None:
                if task.terminal:
                    self._drop(task)
                else:
                    self.kill_task(task)
        for ex in self.executors_of(fid):
            self.shutdown_executor(fid, ex.id)

    # ---- messages --------------------------------------------------------------------------

    def framework_message(self, fid: str, eid: str, data: str) -> None:
        ex = self.executors.get((fid, eid))
        if ex is not None and ex.subscribed:
            ex.send({"type": "MESSAGE", "message": {"data": data}})

    # ---- the executor API ------------------------------------------------------------------

    def handle(self, req: Request) -> Response | Stream:
        path = req.path.rstrip("/") or "/"
        if path == "/api/v1/executor":
            return self.executor_api(req)
        if path.startswith("/files/"):
            return self.files.handle(req)
        if req.method not in ("GET", "HEAD"):
            return Response(404)
        with self.cluster.lock:
            if path in ("/version",):
                return Response.json(200, {"version": VERSION})
            if path in ("/health", "/slave(1)/health"):
                return Response(200)
            if path in ("/state", "/slave(1)/state", "/state.json"):
                return Response.json(200, self.state())
        return Response(404)

    def state(self) -> dict[str, Any]:
        return {"id": self.id, "hostname": self.hostname, "port": self.port,
                "pid": self.pid, "version": VERSION,
                "resources": self.total.to_state(), "attributes": self.attributes_state(),
                "master_hostname": "localhost",
                "frameworks": [{"id": fid, "executors": [
                    {"id": e.id, "directory": e.directory, "container": e.container_id}
                    for e in self.executors_of(fid)]} for fid in self.framework_infos]}
