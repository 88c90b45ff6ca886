"""A small custom executor for the localmesos tests, built on pymesos's MesosExecutorDriver.

Started by a localmesos agent (ExecutorInfo.command). It writes what it sees into its sandbox
(`env.json`, `events.jsonl`) so tests can check the agent's side of the protocol. Per task
`data` (base64 JSON): {"finish": msg} finishes at once with that message; otherwise the task
runs until killed. A framework message is echoed back upper-cased. With STUBBORN=1 in its
environment it ignores SHUTDOWN (the agent must kill it); with EXIT_ON_LAUNCH=1 it exits with
status 7 right after reporting RUNNING; with CHILD_IN_OWN_SESSION=1 a task first starts a
`sleep` in a session of its own (outside the executor's process group), its pid in
`<sandbox>/child.pid`.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time

from pymesos import Executor, MesosExecutorDriver

EVENTS = open(os.path.join(os.environ["MESOS_SANDBOX"], "events.jsonl"), "a", buffering=1)
LOCK = threading.Lock()


def note(kind: str, payload: object) -> None:
    with LOCK:
        EVENTS.write(json.dumps({"kind": kind, "payload": payload, "t": time.time()}) + "\n")


class Driver(MesosExecutorDriver):
    def on_kill(self, event):
        note("KILL", event)
        super().on_kill(event)

    def on_acknowledged(self, event):
        note("ACKNOWLEDGED", event)
        super().on_acknowledged(event)

    def on_subscribed(self, info):
        note("SUBSCRIBED", info)
        super().on_subscribed(info)

    def on_shutdown(self):
        note("SHUTDOWN", None)
        if os.environ.get("STUBBORN") == "1":
            return
        super().on_shutdown()


class Exec(Executor):
    def launchTask(self, driver, task):  # noqa: N802
        note("LAUNCH", task)
        tid = task["task_id"]
        data = json.loads(base64.b64decode(task.get("data") or "e30=")) if task.get("data") else {}
        if os.environ.get("CHILD_IN_OWN_SESSION") == "1":
            child = subprocess.Popen(["sleep", "600"], start_new_session=True)
            with open(os.path.join(os.environ["MESOS_SANDBOX"], "child.pid"), "w") as f:
                f.write(str(child.pid))
        driver.sendStatusUpdate({"task_id": tid, "state": "TASK_STARTING", "message": ""})
        driver.sendStatusUpdate({"task_id": tid, "state": "TASK_RUNNING", "message": ""})
        if os.environ.get("EXIT_ON_LAUNCH") == "1":
            time.sleep(0.2)
            os._exit(7)
        if "finish" in data:
            driver.sendStatusUpdate({"task_id": tid, "state": "TASK_FINISHED",
                                     "message": data["finish"]})

    def killTask(self, driver, task_id):  # noqa: N802
        driver.sendStatusUpdate({"task_id": task_id, "state": "TASK_KILLED",
                                 "message": "killed by the test executor"})

    def frameworkMessage(self, driver, message):  # noqa: N802
        note("MESSAGE", message)
        text = base64.b64decode(message).decode()
        driver.sendFrameworkMessage(base64.b64encode(text.upper().encode()).decode())

    def shutdown(self, driver):
        note("shutdown-callback", None)


def main() -> int:
    with open(os.path.join(os.environ["MESOS_SANDBOX"], "env.json"), "w") as f:
        json.dump(dict(os.environ), f)
    driver = Driver(Exec())
    driver.run()
    note("exit", None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
