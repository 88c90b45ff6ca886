"""`accessd lb`: a HAProxy load balancer kept equal to the control API's state.

    accessd lb [--api URL] [--token T] [--group external] [--bind 127.0.0.1]
               [--http-port 9080] [--stats-port 9090] [--metrics-port 9091]
               [--work-dir DIR] [--name NAME] [--haproxy PATH]

Every app whose `HAPROXY_GROUP` label names one of the groups gets a frontend on each of its
service ports (`http://<bind>:<servicePort>/`), vhosts (`HAPROXY_{n}_VHOST`) share the HTTP
port. It prints `ready lb=<bind> stats=http://…/haproxy?stats metrics=http://…/metrics` once
HAProxy serves the state, logs every change it applies, restarts HAProxy if it dies, and, on
SIGTERM/SIGINT, tells the API it is gone (so no kill waits for it) and stops HAProxy.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from lb.config import Settings
from lb.control import ControlApi
from lb.haproxy import HAProxy, HAProxyError, Supervisor
from lb.metrics import Metrics, serve
from lb.scaler import Autoscaler
from lb.sync import Balancer

log = logging.getLogger("accessd.lb")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="accessd lb", description=__doc__.split("\n\n")[0])
    p.add_argument("--api", default=os.environ.get("ACCESSD_API", "http://127.0.0.1:8080"),
                   help="the control API (env ACCESSD_API; default %(default)s)")
    p.add_argument("--token", default=os.environ.get("ACCESSD_API_TOKEN"),
                   help="the control API's credential (env ACCESSD_API_TOKEN); it must allow "
                        "writes: the balancer registers through PUT /v2/balancers/{name}")
    p.add_argument("--cacert", default=os.environ.get("ACCESSD_CACERT"),
                   help="CA file for an HTTPS control API (env ACCESSD_CACERT)")
    p.add_argument("--group", action="append", default=None,
                   help="HAPROXY_GROUP value(s) served (repeatable, comma-separated; '*': "
                        "every labelled app); default external")
    p.add_argument("--bind", default="127.0.0.1", help="address the frontends listen on")
    p.add_argument("--http-port", type=int, default=9080, help="shared port of the vhosts")
    p.add_argument("--stats-port", type=int, default=9090,
                   help="HAProxy's stats page (/haproxy?stats); 0: none")
    p.add_argument("--metrics-port", type=int, default=9091,
                   help="accessd lb's /metrics and /v1/lb; 0: none")
    p.add_argument("--work-dir", default=None,
                   help="HAProxy's configuration, sockets and log (default: a temporary "
                        "directory, removed at the end)")
    p.add_argument("--name", default=None, help="this balancer's name in the control API")
    p.add_argument("--haproxy", default=None, help="the haproxy binary (default: PATH)")
    p.add_argument("--resync", type=float, default=30.0, help="full sync at least this often")
    p.add_argument("--lease", type=float, default=10.0,
                   help="seconds the scheduler keeps waiting for this balancer's drains "
                        "after its last renewal")
    p.add_argument("--autoscale", action="store_true",
                   help="scale apps labelled ACCESSD_AUTOSCALE_TARGET_RPS from their request "
                        "rate (lb.autoscale); one balancer of several should")
    p.add_argument("--autoscale-every", type=float, default=5.0,
                   help="seconds between autoscale rounds (the rate is over twice that)")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    opts = parse_args(argv)
    logging.basicConfig(level=opts.log_level, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    groups = frozenset(g.strip() for arg in (opts.group or ["external"])
                       for g in arg.split(",") if g.strip())
    temporary = opts.work_dir is None
    work = Path(opts.work_dir or tempfile.mkdtemp(prefix="accessd-lb-"))
    name = opts.name or f"{socket.gethostname()}-{opts.metrics_port or os.getpid()}"
    try:
        proxy = HAProxy(work, opts.haproxy)
    except HAProxyError as exc:
        print(f"accessd lb: {exc}", file=sys.stderr)
        return 2
    metrics = Metrics()
    server = serve(metrics, opts.bind, opts.metrics_port) if opts.metrics_port else None
    settings = Settings(runtime_socket=proxy.runtime_socket, bind=opts.bind,
                        stats_port=opts.stats_port or None)
    api = ControlApi(opts.api, opts.token, cacert=opts.cacert)
    balancer = Balancer(api, proxy, settings, groups=groups,
                        http_port=opts.http_port, name=name, resync_seconds=opts.resync,
                        lease_seconds=opts.lease, metrics=metrics,
                        autoscaler=Autoscaler(api, metrics,
                                              every=opts.autoscale_every,
                                              window=2 * opts.autoscale_every)
                        if opts.autoscale else None)

    def restarted() -> None:
        metrics.add("haproxy_restarts")
        balancer.wake.set()

    supervisor = Supervisor(proxy, on_restart=restarted)

    def on_signal(signum: int, _frame: Any) -> None:
        balancer.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    loop = threading.Thread(target=balancer.run, name="lb-loop", daemon=True)
    loop.start()
    started = time.monotonic()
    while balancer.applied is None or not proxy.alive():
        if balancer.stop_event.wait(0.05):
            break
        if time.monotonic() - started > 60:
            log.error("no working configuration within 60s (is the API at %s?)", opts.api)
            balancer.stop()
            break
    if not balancer.stop_event.is_set():
        supervisor.start()
        stats = f"http://{opts.bind}:{opts.stats_port}/haproxy?stats" if opts.stats_port else "-"
        mets = f"http://{opts.bind}:{opts.metrics_port}/metrics" if opts.metrics_port else "-"
        print(f"ready lb={opts.bind} name={name} stats={stats} metrics={mets}", flush=True)
    while not balancer.stop_event.wait(0.5):
        pass
    log.info("stopping")
    loop.join(5)
    if supervisor.thread.is_alive():
        supervisor.stop()
    try:
        balancer.api.unregister(name)
    except Exception as exc:  # noqa: BLE001 - the lease runs out anyway
        log.info("could not unregister: %s", exc)
    proxy.stop()
    if server:
        server.shutdown()
    if temporary:
        shutil.rmtree(work, ignore_errors=True)
    return 0
