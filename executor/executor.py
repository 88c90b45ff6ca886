"""accessd's executor: pymesos callbacks, one runner thread per task, one status sender.

Invariants:
- Callbacks run on pymesos's single I/O thread: they only record facts and start threads; they
  never block and never raise (an exception there would end the event stream).
- Every task that reaches `launchTask` gets exactly one terminal status (TASK_FINISHED,
  TASK_FAILED or TASK_KILLED), whatever happens: undecodable data, a command that cannot start,
  a kill before the start, an executor shutdown. A task never gets an update after its terminal
  one (health verdicts are dropped once the runner has ended).
- Status updates go out in the order they were made, from one sender thread, and are retried
  while the agent is unreachable; each is remembered in `driver.updates` until ACKNOWLEDGED so a
  re-SUBSCRIBE carries it (pymesos itself never fills that map).
- The executor finishes (`done` is set, the driver stopped) once every task is terminal and its
  updates are acknowledged, or `ACK_WAIT_SECONDS` after the last terminal update was made.
- Nothing outlives the executor: see `executor.process` (guard + PDEATHSIG). If the shutdown
  itself stalls, a watchdog SIGKILLs every task group and exits after the agent's shutdown grace.
"""

from __future__ import annotations

import base64
import logging
import signal
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from pymesos import Executor, MesosExecutorDriver

from executor.health import HealthMonitor, Verdict
from executor.process import ServiceProcess, task_environment
from executor.taskinfo import TaskConfig, TaskInfoError, grace_seconds, parse_task, task_id_of

log = logging.getLogger("executor")

ACK_WAIT_SECONDS = 5.0  # how long to wait for the agent to acknowledge the last updates
SEND_RETRY_SECONDS = 0.25
TERMINAL_STATES = {"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST",
                   "TASK_DROPPED", "TASK_GONE"}


def make_status(task_id: str, state: str, message: str = "", **extra: Any) -> dict[str, Any]:
    """A TaskStatus as a real custom executor sends it (see the mesos-1.12 recordings)."""
    status: dict[str, Any] = {
        "task_id": {"value": task_id}, "state": state, "message": message,
        "source": "SOURCE_EXECUTOR", "timestamp": time.time(),
        "uuid": base64.b64encode(uuid.uuid4().bytes).decode("ascii"),
    }
    status.update(extra)
    return status


class StatusSender:
    """Sends status updates in order on its own thread; tracks which are not yet acknowledged."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque[dict[str, Any]] = deque()
        self._unacked: dict[bytes, dict[str, Any]] = {}  # uuid bytes -> status
        self._driver: MesosExecutorDriver | None = None
        self._abandoned = False
        self._thread = threading.Thread(target=self._run, name="status-sender", daemon=True)
        self._thread.start()

    def set_driver(self, driver: MesosExecutorDriver) -> None:
        with self._cond:
            self._driver = driver
            self._cond.notify_all()

    def send(self, status: dict[str, Any]) -> None:
        with self._cond:
            self._unacked[base64.b64decode(status["uuid"])] = status
            self._queue.append(status)
            self._cond.notify_all()

    def acknowledged(self, uuid_b64: str) -> None:
        try:
            key = base64.b64decode(uuid_b64)
        except ValueError:
            return
        with self._cond:
            self._unacked.pop(key, None)
            self._cond.notify_all()

    def abandon(self) -> None:
        """Stop retrying (the executor is exiting and the agent is not there)."""
        with self._cond:
            self._abandoned = True
            self._cond.notify_all()

    def wait_all_acknowledged(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._unacked:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._abandoned and (not self._queue or self._driver is None):
                    self._cond.wait()
                if self._abandoned:
                    return
                status, driver = self._queue[0], self._driver
            try:
                key = uuid.UUID(bytes=base64.b64decode(status["uuid"]))
                driver.updates[key] = {"status": status}  # re-SUBSCRIBE carries it
                driver.sendStatusUpdate(status)
            except Exception as exc:  # not connected yet / agent restarting: retry
                log.debug("update %s for %s not sent yet: %s", status["state"],
                          status["task_id"]["value"], exc)
                with self._cond:
                    self._cond.wait(SEND_RETRY_SECONDS)
                continue
            log.info("sent %s for %s%s", status["state"], status["task_id"]["value"],
                     f" healthy={status['healthy']}" if "healthy" in status else "")
            with self._cond:
                self._queue.popleft()


class TaskRunner:
    """One task from launch to its terminal status (runs on its own thread)."""

    def __init__(self, task_info: Mapping, sandbox: str, base_env: Mapping[str, str],
                 send: Callable[[dict[str, Any]], None], on_terminal: Callable[[], None]) -> None:
        self.task_info = task_info
        self.task_id = task_id_of(task_info) or "<unknown>"
        self.sandbox = sandbox
        self.base_env = dict(base_env)
        self._send = send
        self._on_terminal = on_terminal
        self._lock = threading.Lock()
        self._process: ServiceProcess | None = None
        self._kill_grace: float | None = None  # set once a kill was requested
        self._health: HealthMonitor | None = None
        self.config: TaskConfig | None = None
        self.terminal = False
        self.thread = threading.Thread(target=self._run_safely, name=f"task-{self.task_id}",
                                       daemon=True)

    # -- called from other threads ------------------------------------------------------------
    def kill(self, grace: float | None) -> None:
        """Kill the task (grace None = its own kill policy); may be called repeatedly."""
        with self._lock:
            if self.terminal:
                return
            if grace is None:
                grace = self.config.kill_grace_seconds if self.config else 3.0
            # A second kill may shorten the grace (Mesos allows overriding it), never lengthen it.
            self._kill_grace = grace if self._kill_grace is None else min(grace, self._kill_grace)
            process = self._process
        if process is not None:
            log.info("killing %s (grace %.1fs)", self.task_id, grace)
            process.kill(grace)

    # -- the runner thread --------------------------------------------------------------------
    def _run_safely(self) -> None:
        try:
            self._run()
        except Exception as exc:  # a bug here must still end in a terminal status
            log.exception("task %s runner crashed", self.task_id)
            self._finish("TASK_FAILED", f"executor error: {type(exc).__name__}: {exc}")

    def _run(self) -> None:
        try:
            self.config = config = parse_task(self.task_info)
        except TaskInfoError as exc:
            log.error("task %s: %s", self.task_id, exc)
            self._finish("TASK_FAILED", str(exc), reason="REASON_TASK_INVALID")
            return
        self._emit("TASK_STARTING")
        env = task_environment(
            self.base_env, app_env=config.env, ports=config.ports, port_names=config.port_names,
            host=config.host, task_id=config.task_id, app_id=config.app_id, sandbox=self.sandbox)
        if config.version:
            env.setdefault("MARATHON_APP_VERSION", config.version)
        with self._lock:
            killed_early = self._kill_grace is not None
        if killed_early:
            self._finish("TASK_KILLED", "Task killed before it started")
            return
        try:
            process = ServiceProcess(config.command, env, self.sandbox)
        except OSError as exc:
            self._finish("TASK_FAILED", f"Failed to launch command: {exc}")
            return
        log.info("task %s started: pid %d, process group %d", config.task_id, process.pid,
                 process.pgid)
        with self._lock:
            self._process = process
            grace = self._kill_grace
        self._emit("TASK_RUNNING")
        if grace is not None:  # a kill arrived while the process was starting
            process.kill(grace)
        if config.health_checks:
            self._health = HealthMonitor(config.health_checks, env, self.sandbox,
                                         self._health_changed, started_at=process.started_at)
            self._health.start()
        status = process.wait()
        assert status is not None
        if self._health is not None:
            self._health.stop()
        if process.killed:
            self._finish("TASK_KILLED", status.message)
        elif status.succeeded:
            self._finish("TASK_FINISHED", status.message)
        else:
            self._finish("TASK_FAILED", status.message)

    def _health_changed(self, verdict: Verdict) -> None:
        labels = {"labels": [{"key": "consecutiveFailures",
                              "value": str(verdict.consecutive_failures)}]}
        with self._lock:
            if self.terminal or self._kill_grace is not None:
                return  # the task is ending: its terminal status is what matters now
            self._send(make_status(self.task_id, "TASK_RUNNING", verdict.message,
                                   healthy=verdict.healthy, labels=labels))
        log.info("task %s %s: %s", self.task_id, "healthy" if verdict.healthy else "unhealthy",
                 verdict.message)

    def _emit(self, state: str, message: str = "", **extra: Any) -> None:
        with self._lock:
            if not self.terminal:
                self._send(make_status(self.task_id, state, message, **extra))

    def _finish(self, state: str, message: str, **extra: Any) -> None:
        with self._lock:
            if self.terminal:
                return
            self.terminal = True
            self._send(make_status(self.task_id, state, message, **extra))
        log.info("task %s %s: %s", self.task_id, state, message)
        self._on_terminal()

    def kill_now(self) -> None:
        """Last resort (watchdog): SIGKILL the task's group without waiting."""
        process = self._process
        if process is not None:
            process.signal_group(signal.SIGKILL)


class AccessdExecutor(Executor):
    """The pymesos callbacks. `done` is set when the executor may exit."""

    def __init__(self, sandbox: str, base_env: Mapping[str, str],
                 shutdown_grace: float = 5.0, recovery_timeout: float = 900.0,
                 checkpoint: bool = False) -> None:
        self.sandbox = sandbox
        self.base_env = dict(base_env)
        self.shutdown_grace = shutdown_grace
        self.recovery_timeout = recovery_timeout
        self.checkpoint = checkpoint
        self.sender = StatusSender()
        self.done = threading.Event()
        self.registered_event = threading.Event()
        self._lock = threading.Lock()
        self._runners: dict[str, TaskRunner] = {}
        self._driver: MesosExecutorDriver | None = None
        self._shutting_down = False
        self._finishing = False
        self._connected = False
        self._reconnect_timer: threading.Timer | None = None

    # -- pymesos callbacks (I/O thread: no blocking, no raising) ---------------------------------
    def registered(self, driver: MesosExecutorDriver, executor_info: Any, framework_info: Any,
                   agent_info: Any) -> None:
        log.info("registered with agent %s (%s)", (agent_info or {}).get("hostname"),
                 (agent_info or {}).get("id", {}).get("value"))
        self._attach(driver)
        self.registered_event.set()

    def reregistered(self, driver: MesosExecutorDriver, agent_info: Any) -> None:
        log.info("re-registered with agent %s", (agent_info or {}).get("hostname"))
        self._attach(driver)

    def disconnected(self, driver: MesosExecutorDriver) -> None:
        """Every connection that ends calls this, each failed reconnect too: the recovery
        timeout runs from the first (one timer, one log line), as MESOS_RECOVERY_TIMEOUT says."""
        with self._lock:
            self._connected = False
            if self._finishing or self._shutting_down:
                return
            if not self.checkpoint:
                return  # pymesos calls shutdown() next: without checkpointing, agent gone = end
            if self._reconnect_timer is not None:
                return  # still waiting since an earlier disconnection
            log.warning("disconnected from the agent; waiting %.0fs for it to recover",
                        self.recovery_timeout)
            self._reconnect_timer = threading.Timer(self.recovery_timeout, self._recovery_expired)
            self._reconnect_timer.daemon = True
            self._reconnect_timer.start()

    def launchTask(self, driver: MesosExecutorDriver, task: Any) -> None:
        try:
            runner = TaskRunner(task, self.sandbox, self.base_env, self.sender.send,
                                self._task_ended)
            with self._lock:
                refuse = self._shutting_down or self._finishing
                if not refuse:
                    self._runners[runner.task_id] = runner
            if refuse:
                self.sender.send(make_status(runner.task_id, "TASK_FAILED",
                                             "executor is shutting down"))
                return
            log.info("launching task %s", runner.task_id)
            runner.thread.start()
        except Exception:
            log.exception("launchTask failed")

    def killTask(self, driver: MesosExecutorDriver, task_id: Any) -> None:
        self.kill_task(task_id, None)

    def kill_task(self, task_id: Any, kill_policy: Any) -> None:
        """KILL event; `kill_policy` (optional in the event) overrides the task's grace."""
        try:
            tid = (task_id or {}).get("value")
            with self._lock:
                runner = self._runners.get(tid)
            if runner is None:
                log.warning("kill for unknown task %s ignored", tid)
                return
            grace = grace_seconds(kill_policy, -1.0) if kill_policy else -1.0
            log.info("kill requested for %s", tid)
            threading.Thread(target=runner.kill, args=(None if grace < 0 else grace,),
                             name=f"kill-{tid}", daemon=True).start()
        except Exception:
            log.exception("killTask failed")

    def acknowledged(self, task_id: str, uuid_b64: str) -> None:
        self.sender.acknowledged(uuid_b64)

    def frameworkMessage(self, driver: MesosExecutorDriver, message: Any) -> None:
        log.info("framework message ignored (%d bytes)", len(message or ""))

    def error(self, driver: MesosExecutorDriver, message: str) -> None:
        log.error("agent reported an error: %s", message)

    def shutdown(self, driver: MesosExecutorDriver | None = None) -> None:
        """SHUTDOWN event, agent lost (no checkpointing), or SIGTERM: end every task, then exit."""
        try:
            with self._lock:
                if self._shutting_down:
                    return
                self._shutting_down = True
                runners = list(self._runners.values())
            log.info("shutting down: killing %d task(s)", len(runners))
            # Leave a second of the agent's shutdown grace for the final updates.
            cap = max(0.0, self.shutdown_grace - 1.0)
            threading.Thread(target=self._watchdog, name="shutdown-watchdog", daemon=True).start()
            for runner in runners:
                grace = min(cap, runner.config.kill_grace_seconds if runner.config else cap)
                threading.Thread(target=runner.kill, args=(grace,), daemon=True,
                                 name=f"kill-{runner.task_id}").start()
            if not runners:
                threading.Thread(target=self._finish, daemon=True, name="finish").start()
        except Exception:
            log.exception("shutdown failed")

    # -- internals ------------------------------------------------------------------------------
    def _attach(self, driver: MesosExecutorDriver) -> None:
        with self._lock:
            self._driver = driver
            self._connected = True
            timer, self._reconnect_timer = self._reconnect_timer, None
        if timer is not None:
            timer.cancel()
        self.sender.set_driver(driver)

    def _recovery_expired(self) -> None:
        with self._lock:
            connected = self._connected
        if not connected:
            log.error("agent did not come back within %.0fs; shutting down", self.recovery_timeout)
            self.shutdown()

    def _task_ended(self) -> None:
        with self._lock:
            if self._finishing or not all(r.terminal for r in self._runners.values()):
                return
            self._finishing = True
        threading.Thread(target=self._finish, name="finish", daemon=True).start()

    def _finish(self) -> None:
        with self._lock:
            self._finishing = True
            connected = self._connected
        # Disconnected without checkpointing, the agent is gone for good: nobody will ack. With
        # checkpointing it may be restarting: give the updates the same bounded chance.
        if (connected or self.checkpoint) and not self.sender.wait_all_acknowledged(
                ACK_WAIT_SECONDS):
            log.warning("some updates were not acknowledged within %.0fs", ACK_WAIT_SECONDS)
        self.sender.abandon()
        log.info("executor done")
        self.done.set()
        driver = self._driver
        if driver is not None:
            try:
                driver.stop()
            except Exception:
                log.exception("driver stop failed")

    def _watchdog(self) -> None:
        """If the orderly shutdown has not finished within the agent's grace, end it the hard way."""
        if self.done.wait(max(1.0, self.shutdown_grace + ACK_WAIT_SECONDS)):
            return
        log.error("shutdown did not finish in time; killing every task group")
        with self._lock:
            runners = list(self._runners.values())
        for runner in runners:
            runner.kill_now()
        self.done.set()

    def kill_all_now(self) -> None:
        """SIGKILL every task group (used on abnormal exit paths of the main thread)."""
        with self._lock:
            runners = list(self._runners.values())
        for runner in runners:
            runner.kill_now()
