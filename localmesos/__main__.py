"""`python -m localmesos` / `accessd localmesos`: run the embedded cluster until SIGTERM/SIGINT.

Prints exactly one line on stdout, `ready master=127.0.0.1:<port>`, once the master listens and
every agent is registered; logs go to stderr. On SIGTERM/SIGINT every task and executor process
group is ended before the process exits (0).
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import signal
import sys
import threading
from pathlib import Path

from localmesos.cluster import DEFAULT_RESOURCES, Cluster, Options, parse_attributes
from localmesos.framework_auth import CredentialsError, load_credentials
from localmesos.portblocks import NoFreePortBlock
from localmesos.resources import parse_spec
from localmesos.zkannounce import ZkUnavailable, parse_zk_url

STOP_STACKS_AFTER_SECONDS = 6.0


def parse_args(argv: list[str]) -> Options:
    p = argparse.ArgumentParser(prog="localmesos", description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=5050, help="master port on 127.0.0.1 (0: any)")
    p.add_argument("--agents", type=int, default=3, help="number of agents (default 3)")
    p.add_argument("--work-dir", default="localmesos-work", help="sandboxes live under it")
    p.add_argument("--resources", default=DEFAULT_RESOURCES,
                   help="each agent's resources; port ranges are shifted per agent "
                        f"(default {DEFAULT_RESOURCES})")
    p.add_argument("--attributes", action="append", default=[],
                   help="agent attributes, e.g. 'rack:r1;zone:a'; once: all agents, repeated: "
                        "agent k gets the k-th; default rack r1,r2,r1,…")
    p.add_argument("--offer-timeout", type=float, default=None,
                   help="seconds before an unanswered offer is rescinded (default: never)")
    p.add_argument("--heartbeat-interval", type=float, default=15.0,
                   help="seconds between HEARTBEAT events (Mesos: 15)")
    p.add_argument("--status-update-retry", type=float, default=10.0,
                   help="first retry of an unacknowledged status update, doubling (Mesos: 10)")
    p.add_argument("--executor-shutdown-grace", type=float, default=5.0,
                   help="MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD in seconds (Mesos: 5)")
    p.add_argument("--executor-registration-timeout", type=float, default=60.0,
                   help="seconds an executor has to SUBSCRIBE (Mesos: 60)")
    p.add_argument("--executor-reregistration-timeout", type=float, default=2.0,
                   help="seconds a restarted agent waits for its executors to re-subscribe "
                        "before killing them (Mesos: 2)")
    p.add_argument("--executor-subscription-backoff-max", type=float, default=2.0,
                   help="MESOS_SUBSCRIPTION_BACKOFF_MAX given to executors of checkpointing "
                        "frameworks, in seconds (Mesos: 2secs)")
    p.add_argument("--recovery-timeout", type=float, default=900.0,
                   help="MESOS_RECOVERY_TIMEOUT given to executors of checkpointing frameworks, "
                        "in seconds (Mesos: 15mins)")
    p.add_argument("--agent-ping-timeout", type=float, default=15.0,
                   help="seconds the master waits for an agent's answer to a ping (Mesos: 15)")
    p.add_argument("--max-agent-ping-timeouts", type=int, default=5,
                   help="missed pings after which an agent is unreachable (Mesos: 5)")
    p.add_argument("--zk", default=None,
                   help="zk://host:port/path: announce the master in ZooKeeper as Mesos does "
                        "(schedulers can then use --master zk://host:port/path)")
    p.add_argument("--credentials", default=None, metavar="FILE",
                   help="Mesos credentials file (JSON {\"credentials\": [{\"principal\", "
                        "\"secret\"}]} or 'principal secret' lines): frameworks must then "
                        "authenticate with HTTP basic, as a master run with "
                        "--authenticate_http_frameworks --credentials=FILE")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (stderr)")
    a = p.parse_args(argv)
    credentials = None
    if a.credentials is not None:
        try:
            credentials = load_credentials(a.credentials)
        except CredentialsError as exc:
            p.error(str(exc))
    if a.agents < 1:
        p.error("--agents must be at least 1")
    if a.max_agent_ping_timeouts < 1 or a.agent_ping_timeout <= 0:
        p.error("--agent-ping-timeout must be positive and --max-agent-ping-timeouts at least 1")
    try:
        parse_spec(a.resources)
        for spec in a.attributes:
            parse_attributes(spec)
        if a.zk is not None:
            parse_zk_url(a.zk)
    except ValueError as exc:
        p.error(str(exc))
    logging.basicConfig(level=getattr(logging, str(a.log_level).upper(), logging.INFO),
                        stream=sys.stderr,
                        format="%(asctime)s localmesos %(name)s %(levelname)s %(message)s")
    return Options(port=a.port, agents=a.agents, work_dir=Path(a.work_dir),
                   resources=a.resources, attributes=list(a.attributes),
                   offer_timeout=a.offer_timeout, heartbeat_interval=a.heartbeat_interval,
                   status_update_retry=a.status_update_retry,
                   executor_shutdown_grace=a.executor_shutdown_grace,
                   executor_registration_timeout=a.executor_registration_timeout,
                   executor_reregistration_timeout=a.executor_reregistration_timeout,
                   executor_subscription_backoff_max=a.executor_subscription_backoff_max,
                   recovery_timeout=a.recovery_timeout, agent_ping_timeout=a.agent_ping_timeout,
                   max_agent_ping_timeouts=a.max_agent_ping_timeouts, zk=a.zk,
                   credentials=credentials)


def main(argv: list[str]) -> int:
    opts = parse_args(argv)
    done = threading.Event()

    def stop(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        cluster = Cluster(opts)
    except NoFreePortBlock as exc:
        print(f"localmesos: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"localmesos: cannot listen on 127.0.0.1:{opts.port}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    try:
        cluster.start()
    except ZkUnavailable as exc:
        print(f"localmesos: {exc}", file=sys.stderr)
        return 1
    print(f"ready master=127.0.0.1:{cluster.port}", flush=True)
    logging.getLogger("localmesos").info(
        "master on 127.0.0.1:%d, agents %s", cluster.port,
        ", ".join(f"agent{a.index}={a.ip}:{a.port}" for a in cluster.agents))
    done.wait()  # signal handlers run on this (main) thread and set it
    # A stop normally takes well under a second (the grace for tasks is 3 s): if it takes much
    # longer, every thread's stack goes to the log, so a hang says where it is.
    faulthandler.dump_traceback_later(STOP_STACKS_AFTER_SECONDS)
    cluster.shutdown()
    # Not cancelled: the interpreter's own exit is covered too; a process that exits ends it.
    logging.getLogger("localmesos").debug("shutdown done; exiting")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
