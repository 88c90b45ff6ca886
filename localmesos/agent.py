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
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localmesos.health import HealthChecker
from localmesos.httpserver import HttpServer, Request, Response, Stream
from localmesos.master import json_error_text
from localmesos.model import (
    TERMINAL,
    VERSION,
    Executor,
    Task,
    grace_seconds,
    make_status,
    new_uuid_b64,
    valid_uuid_b64,
    value,
)
from localmesos.procs import kill_group, kill_tree
from localmesos.resources import Resources, from_proto

if TYPE_CHECKING:
    from localmesos.cluster import Cluster

log = logging.getLogger("localmesos.agent")

DEFAULT_KILL_GRACE = 3.0
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
EXECUTOR_CALLS = frozenset({"SUBSCRIBE", "UPDATE", "MESSAGE", "UPDATE_OPERATION_STATUS",
                            "HEARTBEAT"})

Key = tuple[str, str]


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


class Agent:
    def __init__(self, cluster: Cluster, index: int, total: Resources,
                 attributes: list[tuple[str, str]], work_dir: Path) -> None:
        self.cluster = cluster
        self.index = index
        self.hostname = f"agent{index}.localmesos"
        self.total = total
        self.attributes = attributes
        self.work_dir = work_dir
        self.id = ""
        self.registered_time = 0.0
        self.running = False
        self.generation = 0
        self.tasks: dict[Key, Task] = {}
        self.executors: dict[Key, Executor] = {}
        self.framework_infos: dict[str, dict[str, Any]] = {}
        self.removed_frameworks: set[str] = set()
        self.pending: dict[Key, collections.deque[dict[str, Any]]] = {}
        self.retry: dict[Key, tuple[Any, float]] = {}
        self.server = HttpServer("127.0.0.1", 0, self.handle, name=f"agent{index}-http")

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def master(self) -> Any:
        return self.cluster.master

    # ---- registration and faults ---------------------------------------------------------

    def start(self, agent_id: str, now: float) -> None:
        self.id = agent_id
        self.registered_time = now
        self.running = True
        self.generation += 1
        self.removed_frameworks = set()

    def stop(self, why: str) -> list[Task]:
        """Machine loss: SIGKILL every process, forget all state; returns the tasks it had."""
        self.generation += 1
        self.running = False
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
        d = (self.work_dir / "slaves" / self.id / "frameworks" / fid / "executors" / eid / "runs"
             / container_id)
        d.mkdir(parents=True, exist_ok=True)
        return str(d)

    def _env(self, fid: str, eid: str, directory: str, command: dict[str, Any]) -> dict[str, str]:
        info = self.framework_infos.get(fid) or {}
        env = {
            "PATH": os.environ.get("PATH") or DEFAULT_PATH,
            "LIBPROCESS_IP": "127.0.0.1", "LIBPROCESS_PORT": "0",
            "MESOS_AGENT_ENDPOINT": f"127.0.0.1:{self.port}",
            "MESOS_CHECKPOINT": "1" if info.get("checkpoint") else "0",
            "MESOS_DIRECTORY": directory, "MESOS_SANDBOX": directory,
            "MESOS_EXECUTOR_ID": eid,
            "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD": f"{self.cluster.opts.executor_shutdown_grace:g}secs",
            "MESOS_FRAMEWORK_ID": fid, "MESOS_HTTP_COMMAND_EXECUTOR": "0",
            "MESOS_SLAVE_ID": self.id, "MESOS_SLAVE_PID": f"slave(1)@127.0.0.1:{self.port}",
        }
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

    def _launch_command(self, fid: str, task: Task, role: str) -> None:
        directory = self._sandbox(fid, task.id, task.container_id)
        task.directory = directory
        command = task.info["command"]
        env = self._env(fid, task.id, directory, command)
        env["MESOS_ALLOCATION_ROLE"] = role
        task.env = env
        fut = self.cluster.spawner.spawn(self._argv(command), env, directory,
                                         os.path.join(directory, "stdout"),
                                         os.path.join(directory, "stderr"))
        gen = self.generation
        fut.add_done_callback(lambda f: self._command_started(task, gen, f))

    def _command_started(self, task: Task, gen: int, fut: Any) -> None:
        with self.cluster.lock:
            try:
                popen = fut.result()
            except Exception as exc:
                if gen == self.generation and not task.terminal:
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
        threading.Thread(target=self._wait_command, args=(task, gen, popen),
                         name=f"wait-{task.id}", daemon=True).start()

    def _wait_command(self, task: Task, gen: int, popen: Any) -> None:
        rc = popen.wait()
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

    def _launch_on_executor(self, fid: str, ti: dict[str, Any], task: Task, role: str) -> None:
        exinfo = dict(ti["executor"])
        exinfo["framework_id"] = {"value": fid}
        eid = exinfo["executor_id"]["value"]
        ex = self.executors.get((fid, eid))
        if ex is None or ex.exited:
            ex = Executor(fid, exinfo, from_proto(exinfo.get("resources")), "")
            ex.directory = self._sandbox(fid, eid, ex.container_id)
            self.executors[(fid, eid)] = ex
            command = exinfo["command"]
            env = self._env(fid, eid, ex.directory, command)
            fut = self.cluster.spawner.spawn(self._argv(command), env, ex.directory,
                                             os.path.join(ex.directory, "stdout"),
                                             os.path.join(ex.directory, "stderr"))
            gen = self.generation
            fut.add_done_callback(lambda f: self._executor_started(ex, gen, f))
            ex.timers.append(self.cluster.timers.call_later(
                self.cluster.opts.executor_registration_timeout, self._registration_timeout, ex))
            log.info("starting executor %s of %s on %s", eid, fid, self.hostname)
        task.executor = ex
        task.directory = ex.directory
        ti = dict(ti)
        ti["executor"] = exinfo
        task.info = ti
        ex.tasks[task.id] = task
        if ex.subscribed and ex.stream is not None:
            ex.send({"type": "LAUNCH", "launch": {"task": ti}})
        else:
            ex.queued.append(task)

    def _executor_started(self, ex: Executor, gen: int, fut: Any) -> None:
        with self.cluster.lock:
            try:
                popen = fut.result()
            except Exception as exc:
                if gen == self.generation:
                    self._executor_gone(ex, 1 << 8, f"Failed to launch executor: {exc}")
                return
            if gen != self.generation or ex.exited:
                kill_tree(popen.pid, signal.SIGKILL)
                threading.Thread(target=self._wait_executor, args=(ex, gen, popen),
                                 daemon=True).start()
                return
            ex.pid = popen.pid
            if ex.shutting_down and not ex.subscribed:
                kill_group(popen.pid, signal.SIGKILL)
        threading.Thread(target=self._wait_executor, args=(ex, gen, popen),
                         name=f"wait-{ex.id}", daemon=True).start()

    def _wait_executor(self, ex: Executor, gen: int, popen: Any) -> None:
        rc = popen.wait()
        with self.cluster.lock:
            self._reap_group(popen.pid, ex.directory)
            if gen != self.generation:
                return
            log.info("executor %s of %s on %s exited: %s", ex.id, ex.framework_id,
                     self.hostname, exit_message(rc))
            self._executor_gone(ex, wait_status(rc), "Executor terminated")

    def _executor_gone(self, ex: Executor, status: int, message: str) -> None:
        if ex.exited:
            return
        ex.exited = True
        for t in ex.timers:
            t.cancel()
        if ex.stream is not None:
            ex.stream.close()
            ex.stream = None
        if self.executors.get((ex.framework_id, ex.id)) is ex:
            del self.executors[(ex.framework_id, ex.id)]
        for task in list(ex.tasks.values()):
            if task.terminal:
                continue
            state = "TASK_KILLED" if (task.kill_requested or ex.shutting_down) else "TASK_FAILED"
            self._update(task, state, "SOURCE_AGENT", message=message,
                         reason="REASON_EXECUTOR_TERMINATED")
        if ex.framework_id not in self.removed_frameworks:
            self.master.executor_lost(ex.framework_id, ex.id, self.id, status)
        else:
            self.master.allocate_soon()

    def _registration_timeout(self, ex: Executor) -> None:
        if ex.subscribed or ex.exited:
            return
        log.info("executor %s did not subscribe in time; killing it", ex.id)
        for task in list(ex.tasks.values()):
            if not task.terminal:
                self._update(task, "TASK_FAILED", "SOURCE_AGENT",
                             message="Executor did not register within "
                                     f"{self.cluster.opts.executor_registration_timeout:g}secs",
                             reason="REASON_EXECUTOR_REGISTRATION_TIMEOUT")
        ex.shutting_down = True
        if ex.pid is not None:
            kill_tree(ex.pid, signal.SIGKILL)

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
        if task.pid is not None and not task.terminal:
            log.info("task %s did not end within its grace period; SIGKILL", task.id)
            kill_tree(task.pid, signal.SIGKILL)

    def shutdown_executor(self, fid: str, eid: str) -> None:
        ex = self.executors.get((fid, eid))
        if ex is None or ex.exited or ex.shutting_down:
            return
        ex.shutting_down = True
        if ex.subscribed:
            ex.send({"type": "SHUTDOWN"})
            ex.timers.append(self.cluster.timers.call_later(
                self.cluster.opts.executor_shutdown_grace, self._force_kill, ex))
        elif ex.pid is not None:
            kill_group(ex.pid, signal.SIGKILL)

    def _force_kill(self, ex: Executor) -> None:
        if not ex.exited and ex.pid is not None:
            log.info("executor %s outlived its shutdown grace period; SIGKILL", ex.id)
            kill_tree(ex.pid, signal.SIGKILL)

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

    # ---- status updates --------------------------------------------------------------------

    def _update(self, task: Task, state: str, source: str, message: str | None = None,
                reason: str | None = None, healthy: bool | None = None) -> None:
        status = make_status(task.id, state, source, agent_id=self.id, message=message,
                             reason=reason, uuid_b64=new_uuid_b64(),
                             container_status=task.container_status(),
                             executor_id=task.id if task.executor is None else None)
        if healthy is not None:
            status["healthy"] = healthy
        self._accept_status(task, status)

    def _accept_status(self, task: Task, status: dict[str, Any]) -> None:
        task.record(status)
        self.master.task_changed(task)
        key = (task.framework_id, task.id)
        if task.framework_id in self.removed_frameworks:
            if task.terminal:
                self._drop(task)
            return
        q = self.pending.setdefault(key, collections.deque())
        q.append(status)
        if len(q) == 1:
            self._forward(key, self.cluster.opts.status_update_retry)

    def _forward(self, key: Key, interval: float) -> None:
        q = self.pending.get(key)
        if not q:
            return
        old = self.retry.pop(key, None)
        if old is not None:
            old[0].cancel()
        self.master.forward_update(key[0], q[0])
        timer = self.cluster.timers.call_later(interval, self._retry_update, key, q[0]["uuid"])
        self.retry[key] = (timer, interval)

    def _retry_update(self, key: Key, uuid_b64: str) -> None:
        q = self.pending.get(key)
        if not q or q[0]["uuid"] != uuid_b64:
            return
        interval = min(self.retry.get(key, (None, 1.0))[1] * 2, 600.0)
        log.info("re-sending unacknowledged %s of task %s", q[0]["state"], key[1])
        self._forward(key, interval)

    def framework_subscribed(self, fid: str, info: dict[str, Any]) -> None:
        """A framework (re-)subscribed: refresh its info, re-send its pending updates now."""
        if fid in self.framework_infos:
            self.framework_infos[fid] = dict(info)
        for key in [k for k in self.pending if k[0] == fid]:
            self._forward(key, self.cluster.opts.status_update_retry)

    def acknowledge(self, fid: str, tid: str, uuid_b64: str) -> None:
        key = (fid, tid)
        q = self.pending.get(key)
        if not q or q[0]["uuid"] != uuid_b64:
            log.debug("ignoring acknowledgement %s for %s: not the pending update", uuid_b64, tid)
            return
        status = q.popleft()
        timer = self.retry.pop(key, (None, 0.0))[0]
        if timer is not None:
            timer.cancel()
        task = self.tasks.get(key)
        if q:
            self._forward(key, self.cluster.opts.status_update_retry)
        else:
            self.pending.pop(key, None)
            if task is not None and status["state"] in TERMINAL and task.terminal:
                self._drop(task)

    def _drop(self, task: Task) -> None:
        key = (task.framework_id, task.id)
        if self.tasks.get(key) is task:
            del self.tasks[key]
            if task.executor is not None:
                task.executor.tasks.pop(task.id, None)
            self.master.task_removed(task)

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
                "pid": f"slave(1)@127.0.0.1:{self.port}", "version": VERSION,
                "resources": self.total.to_state(), "attributes": self.attributes_state(),
                "master_hostname": "localhost",
                "frameworks": [{"id": fid, "executors": [
                    {"id": e.id, "directory": e.directory, "container": e.container_id}
                    for e in self.executors_of(fid)]} for fid in self.framework_infos]}

    def executor_api(self, req: Request) -> Response | Stream:
        if req.method != "POST":
            return Response.text(405, f"Expecting one of {{ 'POST' }}, but received '{req.method}'")
        if not req.headers.get("Content-Type"):
            return Response.text(400, "Expecting 'Content-Type' to be present")
        problem = json_error_text(req.body)
        if problem:
            return Response.text(400, problem)
        call = json.loads(req.body)
        prefix = "Failed to validate executor::Call: "
        if not isinstance(call, dict) or call.get("type") not in EXECUTOR_CALLS:
            return Response.text(400, prefix + "Expecting 'type' to be present")
        fid, eid = value(call, "framework_id"), value(call, "executor_id")
        if eid is None:
            return Response.text(400, prefix + "Expecting 'executor_id' to be present")
        if fid is None:
            return Response.text(400, prefix + "Expecting 'framework_id' to be present")
        kind = call["type"]
        if kind == "UPDATE":
            status = (call.get("update") or {}).get("status")
            if not isinstance(status, dict):
                return Response.text(400, prefix + "Expecting 'update' to be present")
            if not valid_uuid_b64(status.get("uuid")):
                return Response.text(400, prefix + "Expecting 'uuid' to be present")
            if status.get("source", "SOURCE_EXECUTOR") != "SOURCE_EXECUTOR":
                return Response.text(400, prefix + f"Received Call from executor {eid} of "
                                     f"framework {fid} with invalid source, expecting "
                                     "'SOURCE_EXECUTOR'")
            if status.get("state") == "TASK_STAGING":
                return Response.text(400, prefix + f"Received TASK_STAGING from executor {eid} "
                                     f"of framework {fid} which is not allowed")
            if status.get("state") not in TERMINAL | {"TASK_STARTING", "TASK_RUNNING",
                                                       "TASK_KILLING"} \
                    or value(status, "task_id") is None:
                return Response.text(400, "Failed to convert JSON into Call protobuf: "
                                          "bad update.status (state, task_id)")
        if kind == "MESSAGE" and not isinstance(call.get("message"), dict):
            return Response.text(400, prefix + "Expecting 'message' to be present")
        with self.cluster.lock:
            if not self.running or fid not in self.framework_infos:
                return Response.text(400, "Framework cannot be found")
            ex = self.executors.get((fid, eid))
            if ex is None or ex.exited:
                return Response.text(400, "Executor cannot be found")
            if kind == "SUBSCRIBE":
                return self._executor_subscribe(ex)
            if not ex.subscribed:
                return Response.text(403, "Executor is not subscribed")
            if kind == "UPDATE":
                self._executor_update(ex, call["update"]["status"])
            elif kind == "MESSAGE":
                self.master.executor_message(fid, self.id, eid, call["message"].get("data", ""))
            return Response(202)

    def _executor_subscribe(self, ex: Executor) -> Stream:
        if ex.stream is not None:
            ex.stream.close()
        stream = Stream(on_close=lambda s: self._executor_stream_closed(ex, s))
        ex.stream = stream
        ex.subscribed = True
        fw_info = dict(self.framework_infos.get(ex.framework_id) or {})
        fw_info["id"] = {"value": ex.framework_id}
        ex.send({"type": "SUBSCRIBED", "subscribed": {
            "agent_info": self.agent_info(), "container_id": {"value": ex.container_id},
            "executor_info": ex.info, "framework_info": fw_info}})
        for task in ex.queued:
            if not task.terminal and not ex.shutting_down:
                ex.send({"type": "LAUNCH", "launch": {"task": task.info}})
        ex.queued = []
        if ex.shutting_down:
            ex.send({"type": "SHUTDOWN"})
            ex.timers.append(self.cluster.timers.call_later(
                self.cluster.opts.executor_shutdown_grace, self._force_kill, ex))
        log.info("executor %s of %s subscribed on %s", ex.id, ex.framework_id, self.hostname)
        return stream

    def _executor_stream_closed(self, ex: Executor, stream: Stream) -> None:
        with self.cluster.lock:
            if ex.stream is stream:
                ex.stream = None

    def _executor_update(self, ex: Executor, raw: dict[str, Any]) -> None:
        tid = value(raw, "task_id") or ""
        task = ex.tasks.get(tid)
        ack = {"type": "ACKNOWLEDGED", "acknowledged": {"task_id": {"value": tid},
                                                        "uuid": raw["uuid"]}}
        if task is not None and not task.terminal:
            status = dict(raw)
            status["agent_id"] = {"value": self.id}
            status["source"] = "SOURCE_EXECUTOR"
            status.setdefault("timestamp", time.time())
            status["container_status"] = task.container_status()
            self._accept_status(task, status)
        ex.send(ack)
