"""`accessd scheduler`: wire the store, the worker and pymesos's driver together.

The process registers (or re-registers, with the stored framework id) with a failover timeout
of a week by default, so it can die and come back without Mesos killing its tasks. SIGTERM and
SIGINT stop the driver with `failover=True` (never TEARDOWN) and exit 0; a fatal master error
(framework removed) exits 1. A master that stays silent for `--missed-heartbeats` heartbeat
intervals is presumed gone and subscribed to again (see `scheduler.masterwatch`).
"""

from __future__ import annotations

import argparse
import logging
import queue
import signal
import sys
import threading
from typing import Any

from scheduler.masterwatch import SilenceWatch

log = logging.getLogger("accessd.scheduler")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="accessd scheduler",
                                description="Run accessd's Mesos scheduler (framework).")
    p.add_argument("--master", required=True, help="HOST:PORT or zk://host:port/mesos")
    p.add_argument("--state", required=True, help="state store path (SQLite file)")
    p.add_argument("--role", default="*")
    p.add_argument("--name", default="accessd")
    p.add_argument("--failover-timeout", type=float, default=604800.0,
                   help="seconds Mesos keeps our tasks while we are away (default: a week)")
    p.add_argument("--principal")
    p.add_argument("--secret")
    p.add_argument("--refuse-seconds", type=float, default=5.0,
                   help="how long declined offers stay away")
    p.add_argument("--executor-python", default=sys.executable,
                   help="python that runs accessd's executor on the agents")
    p.add_argument("--missed-heartbeats", type=float, default=5.0,
                   help="re-subscribe after this many heartbeat intervals without a word from "
                        "the master (a hung master or half-open connection)")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    if (args.principal is None) != (args.secret is None):
        p.error("--principal and --secret go together")
    if args.missed_heartbeats <= 0:
        p.error("--missed-heartbeats must be positive")
    return args


def framework_info(args: argparse.Namespace, framework_id: str | None) -> dict[str, Any]:
    import getpass
    import socket

    info: dict[str, Any] = {
        "user": getpass.getuser(), "name": args.name, "hostname": socket.gethostname(),
        "failover_timeout": args.failover_timeout, "checkpoint": True, "role": args.role,
        # TASK_UNREACHABLE/UNKNOWN/GONE/GONE_BY_OPERATOR instead of TASK_LOST (scheduler.unreachable)
        "capabilities": [{"type": "PARTITION_AWARE"}],
    }
    if args.principal:
        info["principal"] = args.principal
    if framework_id:
        info["id"] = {"value": framework_id}  # pymesos re-subscribes with it
    return info


def watched_driver_class(watch: SilenceWatch) -> type:
    """pymesos's driver (with bounded reconnects: `scheduler.driver`), telling `watch` about
    every subscription attempt, event, SUBSCRIBED and disconnection."""
    from scheduler.driver import ReconnectingDriver

    class WatchedDriver(ReconnectingDriver):
        def gen_request(self):  # a new connection is about to SUBSCRIBE
            watch.expect()
            return super().gen_request()

        def on_event(self, event):
            watch.heard()
            super().on_event(event)

        def on_subscribed(self, info):
            watch.subscribed(info.get("heartbeat_interval_seconds"))
            super().on_subscribed(info)

        def on_close(self):
            watch.disconnected()
            super().on_close()

    return WatchedDriver


def resubscribe(driver: Any, watch: SilenceWatch, silent: float) -> bool:
    """Drop a connection the master has gone quiet on and subscribe again (same framework id:
    pymesos keeps it). False if the old I/O thread will not end."""
    log.warning("nothing from the master for %.1fs (heartbeats every %gs, %g missed): "
                "connection presumed dead; re-subscribing", silent, watch.interval,
                watch.missed_heartbeats)
    watch.disconnected()
    driver.stop(failover=True)  # never TEARDOWN
    io_thread = driver._io_thread
    if io_thread is not None:
        io_thread.join(10.0)
        if io_thread.is_alive():
            log.error("pymesos's I/O thread did not stop; exiting so a supervisor restarts us")
            return False
    driver.start()
    return True


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, args.log_level.upper(), 20),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    import pymesos.process

    logging.getLogger("pymesos").handlers.clear()  # one format: ours (pymesos adds its own)

    from scheduler.framework import AccessdScheduler, Worker
    from scheduler.sqlite_state import open_state

    store = open_state(args.state)
    framework_id = store.get_framework_id()
    log.info("starting: master=%s state=%s framework_id=%s", args.master, args.state,
             framework_id or "(new)")

    work: queue.Queue = queue.Queue()
    watch = SilenceWatch(args.missed_heartbeats)
    driver = watched_driver_class(watch)(
        AccessdScheduler(work), framework_info(args, framework_id), args.master,
        use_addict=False, implicit_acknowledgements=False,
        principal=args.principal, secret=args.secret, failover=True)

    done = threading.Event()
    outcome = {"code": 0}

    def fatal(message: str) -> None:
        outcome["code"] = 1
        done.set()

    def on_signal(signum: int, frame: Any) -> None:
        if pymesos.process._exc_info is not None:  # the driver's I/O thread died
            outcome["code"] = 1
        log.info("signal %d: stopping (failover, tasks keep running)", signum)
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    worker = Worker(store, driver, work, role=args.role, refuse_seconds=args.refuse_seconds,
                    executor_python=args.executor_python, on_fatal=fatal)
    worker.start()
    driver.start()
    while not done.wait(1.0):
        if driver.aborted:
            log.error("the driver stopped on its own; exiting")
            outcome["code"] = 1
            break
        silent = watch.overdue()
        if silent is not None and not resubscribe(driver, watch, silent):
            outcome["code"] = 1
            break
    # The worker first: it finishes the event in hand (e.g. an ACKNOWLEDGE on the driver's
    # connection, which stopping the driver would close under it) and takes no more; updates
    # not acknowledged are sent again to the next subscription.
    worker.stop()
    driver.stop(failover=True)  # never TEARDOWN: the tasks keep running for the next us
    io_thread = driver._io_thread
    if io_thread is not None:
        io_thread.join(5.0)  # it may be asleep in a reconnect backoff; it is a daemon thread
    store.close()
    log.info("stopped")
    return outcome["code"]


if __name__ == "__main__":
    sys.exit(main())
