"""`python -m executor` / `accessd executor`: run accessd's Mesos executor (started by an agent).

The agent passes everything in the environment (MESOS_AGENT_ENDPOINT, MESOS_FRAMEWORK_ID,
MESOS_EXECUTOR_ID, MESOS_SANDBOX, MESOS_CHECKPOINT, MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD, ...).
Exit status: 0 once every task reached a terminal state; 1 if the executor could not register
or its driver failed; 2 if started without the agent's environment.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time

REQUIRED_ENV = ("MESOS_AGENT_ENDPOINT", "MESOS_FRAMEWORK_ID", "MESOS_EXECUTOR_ID")
REGISTRATION_TIMEOUT_SECONDS = 60.0
log = logging.getLogger("executor")


def _duration(value: str | None, default: float) -> float:
    from pymesos.utils import parse_duration

    if not value:
        return default
    try:
        return float(parse_duration(value))
    except (AssertionError, ValueError):
        return default


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="accessd executor",
        description="accessd's Mesos executor: runs one access-service task, health-checks it "
                    "and reports its status to the agent. Started by a Mesos agent, which "
                    "provides the MESOS_* environment.")
    parser.add_argument("--log-level", default=os.environ.get("ACCESSD_EXECUTOR_LOG", "INFO"))
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))

    missing = [name for name in REQUIRED_ENV if not os.environ.get(name)]
    if missing:
        print(f"accessd executor: missing {', '.join(missing)} in the environment; the executor "
              "is started by a Mesos agent, which sets them (see the Mesos v1 executor API)",
              file=sys.stderr)
        return 2

    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Imported here: `--help` and the environment check work without pymesos's side effects.
    from executor.driver import ExecutorDriver
    from executor.executor import AccessdExecutor

    # pymesos attaches its own stderr handler; without this every line of it appears twice.
    logging.getLogger("pymesos").propagate = False

    env = os.environ
    sandbox = env.get("MESOS_SANDBOX") or env.get("MESOS_DIRECTORY") or os.getcwd()
    executor = AccessdExecutor(
        sandbox=sandbox, base_env=env,
        shutdown_grace=_duration(env.get("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD"), 5.0),
        recovery_timeout=_duration(env.get("MESOS_RECOVERY_TIMEOUT"), 900.0),
        checkpoint=env.get("MESOS_CHECKPOINT", "0").strip() == "1")
    driver = ExecutorDriver(executor)

    # SIGTERM (agent or operator) is an orderly shutdown: tasks get their kill, updates go out.
    signal.signal(signal.SIGTERM, lambda signum, frame: executor.shutdown())
    log.info("executor %s starting (agent %s, sandbox %s)", env["MESOS_EXECUTOR_ID"],
             env["MESOS_AGENT_ENDPOINT"], sandbox)
    driver.start()
    started = time.monotonic()
    try:
        while not executor.done.wait(0.5):
            if (not executor.registered_event.is_set()
                    and time.monotonic() - started > REGISTRATION_TIMEOUT_SECONDS):
                log.error("could not subscribe to the agent at %s within %.0fs",
                          env["MESOS_AGENT_ENDPOINT"], REGISTRATION_TIMEOUT_SECONDS)
                driver.stop()
                return 1
    except BaseException as exc:  # pymesos re-raises its I/O thread's failure in the main thread
        log.error("executor driver failed: %s: %s", type(exc).__name__, exc)
        executor.shutdown()
        executor.done.wait(executor.shutdown_grace + 1.0)
        executor.kill_all_now()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
