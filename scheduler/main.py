"""`accessd scheduler`: wire the store, the worker and pymesos's driver together.

The process registers (or re-registers, with the stored framework id) with a failover timeout
of a week by default, so it can die and come back without Mesos killing its tasks. SIGTERM and
SIGINT stop the driver with `failover=True` (never TEARDOWN) and exit 0; a fatal master error
(framework removed) exits 1. A master that stays silent for `--missed-heartbeats` heartbeat
intervals is presumed gone and subscribed to again (see `scheduler.masterwatch`).
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from scheduler.masterwatch import SilenceWatch

log = logging.getLogger("accessd.scheduler")

STOP_STACKS_AFTER_SECONDS = 25.0  # past every bounded step of a stop: something hangs


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="accessd scheduler",
                                description="Run accessd's Mesos scheduler (framework).")
    p.add_argument("--master", required=True, help="HOST:PORT or zk://host:port/mesos")
    p.add_argument("--state", required=True,
                   help="state store: a SQLite file, or zk://h1:2181,h2:2181/accessd (then "
                        "this scheduler is a candidate for leadership among those sharing it)")
    p.add_argument("--advertise", default=None,
                   help="the name this scheduler is known by as leader (GET /v2/leader), "
                        "e.g. its API's HOST:PORT (default: hostname:pid)")
    p.add_argument("--role", default="*")
    p.add_argument("--name", default="accessd")
    p.add_argument("--failover-timeout", type=float, default=604800.0,
                   help="seconds Mesos keeps our tasks while we are away (default: a week)")
    p.add_argument("--principal", default=os.environ.get("ACCESSD_FRAMEWORK_PRINCIPAL"),
                   help="framework principal, for a master that authenticates frameworks "
                        "(env ACCESSD_FRAMEWORK_PRINCIPAL)")
    p.add_argument("--secret", default=os.environ.get("ACCESSD_FRAMEWORK_SECRET"),
                   help="its secret (env ACCESSD_FRAMEWORK_SECRET; prefer it or --secret-file: "
                        "a command line is visible to every user)")
    p.add_argument("--secret-file", default=None,
                   help="file holding the secret (its first line)")
    p.add_argument("--secrets-dir", default=os.environ.get("ACCESSD_SECRETS_DIR"),
                   help="where the values of apps' secrets are read at launch: a secret "
                        "whose source is /db/pw is the file DIR/db/pw (env ACCESSD_SECRETS_DIR)")
    p.add_argument("--refuse-seconds", type=float, default=5.0,
                   help="how long declined offers stay away")
    p.add_argument("--executor-python", default=sys.executable,
                   help="python that runs accessd's executor on the agents")
    p.add_argument("--missed-heartbeats", type=float, default=5.0,
                   help="re-subscribe after this many heartbeat intervals without a word from "
                        "the master (a hung master or half-open connection)")
    p.add_argument("--drain-timeout", type=float, default=5.0,
                   help="seconds a kill waits for the registered load balancers to drain the "
                        "task (accessd lb); none registered: no wait")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    if args.secret_file is not None:
        try:
            with open(args.secret_file, encoding="utf-8") as f:
                args.secret = f.readline().rstrip("\r\n")
        except OSError as exc:
            p.error(f"cannot read --secret-file: {exc.strerror or exc}")
    if args.secret_file is None and "--secret" in argv:
        log.warning("--secret on the command line is visible to every user of this machine "
                    "(ps): prefer ACCESSD_FRAMEWORK_SECRET or --secret-file")
    if (args.principal is None) != (args.secret is None):
        p.error("--principal and a secret (--secret, --secret-file or "
                "ACCESSD_FRAMEWORK_SECRET) go together")
    if args.secrets_dir is not None and not os.path.isdir(args.secrets_dir):
        p.error(f"--secrets-dir {args.secrets_dir} is not a directory")
    if args.missed_heartbeats <= 0:
        p.error("--missed-heartbeats must be positive")
    if args.advertise is None:
        import socket

        args.advertise = f"{socket.gethostname()}:{os.getpid()}"
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


def watched_driver_class(watch: SilenceWatch,
                         may_subscribe: Callable[[], bool] | None = None) -> type:
    """pymesos's driver (with bounded reconnects: `scheduler.driver`), telling `watch` about
    every subscription attempt, event, SUBSCRIBED and disconnection. With `may_subscribe`
    (leader election), every (re)subscription first asks it: pymesos reconnects on its own,
    and a deposed leader that did would take the framework back from the new one (Mesos fails
    the other connection over); refused, the connection waits for the driver's stop instead of
    subscribing."""
    from scheduler.driver import ReconnectingDriver

    class WatchedDriver(ReconnectingDriver):
        def gen_request(self):  # a new connection is about to SUBSCRIBE
            if may_subscribe is not None and not may_subscribe():
                log.warning("not the leader any more: not subscribing")
                while not self.aborted:  # the election loop stops us now
                    time.sleep(0.05)
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


class FencedStore:
    """The store as the worker sees it while leading: a write refused because this scheduler
    lost its leadership (`NotLeader`) sets `lost`, so the election loop steps down at once."""

    def __init__(self, store: Any, lost: threading.Event) -> None:
        self._store = store
        self._lost = lost

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            from scheduler.state import NotLeader

            try:
                return attr(*args, **kwargs)
            except NotLeader:
                if not self._lost.is_set():
                    log.warning("a write was refused: no longer the leader")
                self._lost.set()
                raise
        return call


def lead(args: argparse.Namespace, store: Any, done: threading.Event,
         lost: threading.Event | None = None,
         may_subscribe: Callable[[], bool] | None = None) -> int:
    """Subscribe to Mesos and drive the cluster until `done` (a signal) or `lost` (leadership
    gone) is set; returns the exit code (0, or 1 after a fatal error)."""
    import pymesos.process

    from scheduler import secret_values
    from scheduler.driver import on_subscription_refused
    from scheduler.framework import AccessdScheduler, Worker

    secret_values.configure(args.secrets_dir)
    framework_id = store.get_framework_id()
    log.info("starting: master=%s state=%s framework_id=%s", args.master, args.state,
             framework_id or "(new)")
    work: queue.Queue = queue.Queue()
    watch = SilenceWatch(args.missed_heartbeats)
    driver = watched_driver_class(watch, may_subscribe)(
        AccessdScheduler(work), framework_info(args, framework_id), args.master,
        use_addict=False, implicit_acknowledgements=False,
        principal=args.principal, secret=args.secret, failover=True)
    outcome = {"code": 0}
    stopping = threading.Event()

    def fatal(message: str) -> None:
        outcome["code"] = 1
        stopping.set()

    worker = Worker(store, driver, work, role=args.role, refuse_seconds=args.refuse_seconds,
                    executor_python=args.executor_python, on_fatal=fatal)
    worker.drain_timeout = args.drain_timeout

    def refused(message: str) -> None:  # wrong credentials: retrying cannot help
        log.error("%s; exiting", message)
        fatal(message)

    on_subscription_refused(refused)
    worker.start()
    driver.start()
    last_check = 0.0
    while not (done.wait(0.1) or stopping.is_set()):
        if lost is not None and lost.is_set():
            break
        if time.monotonic() - last_check < 1.0:
            continue
        last_check = time.monotonic()
        if driver.aborted:
            if lost is not None and lost.is_set():
                break
            log.error("the driver stopped on its own; exiting")
            outcome["code"] = 1
            break
        silent = watch.overdue()
        if silent is not None and not resubscribe(driver, watch, silent):
            outcome["code"] = 1
            break
    # Stopping takes well under a second; every step below is bounded (the worker's join, a
    # call the master does not answer, the I/O thread's join), so if it takes much longer,
    # every thread's stack goes to the log and a hang says where it is.
    faulthandler.dump_traceback_later(STOP_STACKS_AFTER_SECONDS)
    if pymesos.process._exc_info is not None and done.is_set():  # the I/O thread died
        outcome["code"] = 1
    # The worker first: it finishes the event in hand (e.g. an ACKNOWLEDGE on the driver's
    # connection, which stopping the driver would close under it) and takes no more; updates
    # not acknowledged are sent again to the next subscription.
    worker.stop()
    driver.stop(failover=True)  # never TEARDOWN: the tasks keep running for the next us
    io_thread = driver._io_thread
    if io_thread is not None:
        io_thread.join(5.0)  # it may be asleep in a reconnect backoff; it is a daemon thread
    faulthandler.cancel_dump_traceback_later()
    return outcome["code"]


def campaign_and_lead(args: argparse.Namespace, store: Any, done: threading.Event) -> int:
    """With a ZooKeeper store: be a candidate; lead while elected (every write fenced on the
    leader node); when the leadership goes (session expired, node deleted by an abdication, a
    fenced write refused), stop the Mesos connection and campaign again."""
    from scheduler.leader import Candidate

    candidate = Candidate(store.client, store.root, args.advertise)
    while not done.is_set():
        log.info("candidate %s: waiting to be elected", args.advertise)
        if not candidate.campaign(done):
            break
        lost = threading.Event()
        store.refresh()  # everything the previous leader wrote, before the first decision
        store.fence = candidate.fence()
        log.info("elected leader %s (fence %s)", args.advertise, store.fence)

        def watch_leadership(lost: threading.Event = lost) -> None:
            while not (done.is_set() or lost.is_set()):
                if not candidate.holds():
                    log.warning("leadership lost (session expired or node deleted)")
                    lost.set()
                    return
                lost.wait(0.5)

        watcher = threading.Thread(target=watch_leadership, name="accessd-leadership",
                                   daemon=True)
        watcher.start()

        def may_subscribe(lost: threading.Event = lost) -> bool:
            if candidate.verify():
                return True
            lost.set()
            return False

        code = lead(args, FencedStore(store, lost), done, lost, may_subscribe)
        lost.set()
        watcher.join(2.0)
        store.fence = None
        candidate.resign()
        if code != 0 and not done.is_set():
            return code
        if not done.is_set():
            log.warning("stepped down: Mesos connection stopped; campaigning again")
    candidate.resign()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, args.log_level.upper(), 20),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    import pymesos.process  # noqa: F401 - imported first: it adds a handler, cleared next

    logging.getLogger("pymesos").handlers.clear()  # one format: ours (pymesos adds its own)

    from scheduler.stores import open_state
    from scheduler.zk import is_zk_url

    store = open_state(args.state, session_reads=True)
    done = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        log.info("signal %d: stopping (failover, tasks keep running)", signum)
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        if is_zk_url(args.state):
            code = campaign_and_lead(args, store, done)
        else:
            code = lead(args, store, done)
    finally:
        store.close()
    log.info("stopped")
    return code


if __name__ == "__main__":
    sys.exit(main())
