"""Custom executors on an agent: start the executor's process, queue tasks until it subscribes,
the registration timeout, shutdown with its grace period, and the end of an executor (its
tasks' final updates, the scheduler's FAILURE). A mixin of `agent.Agent`."""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

from localmesos import fetcher
from localmesos.command_tasks import exit_message, wait_status
from localmesos.model import Executor, Task
from localmesos.procs import destroy_container, kill_group, kill_tree
from localmesos.resources import from_proto

log = logging.getLogger("localmesos.agent")


class ExecutorLifecycle:
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
            fut = fetcher.spawn(self.cluster.spawner, command, self._argv(command), env,
                                ex.directory, os.path.join(ex.directory, "stdout"),
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
        if gen == self.generation and not self.down:
            # Its tasks end with it, before their final updates say so (outside the lock:
            # this waits for the processes to be gone).
            kill_group(popen.pid, signal.SIGKILL)
            left = destroy_container(ex.directory)
            if left:
                log.warning("executor %s ended; processes %s of its container still run",
                            ex.id, left)
        with self.cluster.lock:
            self._reap_group(popen.pid, ex.directory)
            if gen != self.generation:
                return
            log.info("executor %s of %s on %s exited: %s", ex.id, ex.framework_id,
                     self.hostname, exit_message(rc))
            if self.down:  # nobody is watching: the restarted agent finds it gone
                ex.exit_while_down = wait_status(rc)
                return
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
