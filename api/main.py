"""`accessd api`: run the control API under gunicorn.

    accessd api --bind 127.0.0.1:8080 --workers N --state PATH [--token T] [--read-token T]
                [--max-body BYTES] [--threads N] [--master HOST:PORT]
                [--certfile CERT.pem --keyfile KEY.pem]

gthread workers: the event stream (`/v2/events`) holds a thread per client while the worker's
main thread keeps heart-beating. The configuration reaches the workers as environment variables
(read by `api.app.get_app()` in each worker after the fork), so the workers are exactly what
`gunicorn 'api.app:get_app()'` would run. Tokens may also come from `ACCESSD_API_TOKEN` /
`ACCESSD_API_READ_TOKEN`, which keeps them out of the process list.

With `--certfile` and `--keyfile` (env `ACCESSD_API_CERTFILE` / `ACCESSD_API_KEYFILE`) gunicorn
serves HTTPS only; the CLI verifies the certificate (`--cacert` / `ACCESSD_CACERT`).

Without any credential configured everything is open to whoever can connect, so the API then
binds to loopback only: a non-loopback `--bind` is refused.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Any

from api.body import DEFAULT_MAX_BODY
from scheduler.service_ports import DEFAULT_RANGE, PortRange

log = logging.getLogger("accessd.api")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})


def _post_worker_init(worker: Any) -> None:
    """End event streams as soon as the worker is told to stop (gunicorn's own SIGTERM/SIGQUIT
    handlers run afterwards, unchanged)."""
    from api.events import STOPPING

    for sig in (signal.SIGTERM, signal.SIGQUIT, signal.SIGINT):
        previous = signal.getsignal(sig)

        def handler(signum: int, frame: Any, previous: Any = previous) -> None:
            STOPPING.set()
            if callable(previous):
                previous(signum, frame)

        signal.signal(sig, handler)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="accessd api", description="run the control API")
    p.add_argument("--bind", default="127.0.0.1:8080", help="HOST:PORT (default %(default)s)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=16,
                   help="threads per worker (each event-stream client holds one)")
    p.add_argument("--state", required=True,
                   help="the state store: a SQLite file or zk://h1:2181,h2:2181/accessd")
    p.add_argument("--token", default=os.environ.get("ACCESSD_API_TOKEN"),
                   help="credential that may change state (env ACCESSD_API_TOKEN)")
    p.add_argument("--read-token", default=os.environ.get("ACCESSD_API_READ_TOKEN"),
                   help="read-only credential (env ACCESSD_API_READ_TOKEN)")
    p.add_argument("--max-body", type=int, default=DEFAULT_MAX_BODY,
                   help="largest request body in bytes (default %(default)s)")
    p.add_argument("--master", default=os.environ.get("ACCESSD_API_MESOS_MASTER"),
                   help="the Mesos master HOST:PORT or zk://HOSTS/PATH, to read task logs "
                        "from the agents' sandboxes (env ACCESSD_API_MESOS_MASTER)")
    p.add_argument("--certfile", default=os.environ.get("ACCESSD_API_CERTFILE") or None,
                   help="PEM certificate (chain): serve HTTPS (env ACCESSD_API_CERTFILE)")
    p.add_argument("--keyfile", default=os.environ.get("ACCESSD_API_KEYFILE") or None,
                   help="PEM private key of --certfile (env ACCESSD_API_KEYFILE)")
    p.add_argument("--local-port-min", type=int, default=DEFAULT_RANGE.low,
                   help="lowest service port assigned to a port definition sent as 0 "
                        "(default %(default)s), as Marathon's --local_port_min")
    p.add_argument("--local-port-max", type=int, default=DEFAULT_RANGE.high,
                   help="service ports are assigned below this one (default %(default)s)")
    p.add_argument("--advertise", default=os.environ.get("ACCESSD_API_ADVERTISE") or None,
                   help="the name this node's scheduler leads under (its --advertise), so "
                        "/v2/info says elected (default: --bind and <hostname>:<port>; env "
                        "ACCESSD_API_ADVERTISE)")
    p.add_argument("--access-log", action="store_true", help="log every request")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=os.environ.get("ACCESSD_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    host, sep, port = args.bind.rpartition(":")
    if not sep or not port.isdigit():
        log.error("--bind must be HOST:PORT, got %r", args.bind)
        return 2
    if args.workers < 1 or args.threads < 1 or args.max_body < 1:
        log.error("--workers, --threads and --max-body must be >= 1")
        return 2
    if (args.certfile is None) != (args.keyfile is None):
        log.error("--certfile and --keyfile go together")
        return 2
    for path in (args.certfile, args.keyfile):
        if path is not None and not os.access(path, os.R_OK):
            log.error("cannot read %s (TLS certificate or key)", path)
            return 2
    try:
        PortRange(args.local_port_min, args.local_port_max)
    except ValueError as exc:
        log.error("--local-port-min/--local-port-max: %s", exc)
        return 2
    if not args.token and not args.read_token:
        if host not in LOOPBACK_HOSTS:
            log.error("refusing to bind to %s: no credentials configured (--token / "
                      "ACCESSD_API_TOKEN); without them only 127.0.0.1 is allowed", args.bind)
            return 2
        log.warning("no credentials configured: binding to 127.0.0.1 only, every local caller "
                    "may change state")
    elif not args.token:
        log.warning("only a read-only credential is configured: nobody can change state")

    os.environ.update({
        "ACCESSD_API_STATE": args.state,
        "ACCESSD_API_MAX_BODY": str(args.max_body),
        "ACCESSD_API_BIND": args.bind,
        "ACCESSD_API_LOCAL_PORT_MIN": str(args.local_port_min),
        "ACCESSD_API_LOCAL_PORT_MAX": str(args.local_port_max),
    })
    if args.advertise:
        os.environ["ACCESSD_API_ADVERTISE"] = args.advertise
    if args.master:
        os.environ["ACCESSD_API_MESOS_MASTER"] = args.master
    # Event streams may take at most half of a worker's threads: the rest answer requests.
    os.environ.setdefault("ACCESSD_API_MAX_STREAMS", str(max(1, args.threads // 2)))
    for name, value in (("ACCESSD_API_TOKEN", args.token),
                        ("ACCESSD_API_READ_TOKEN", args.read_token)):
        if value:
            os.environ[name] = value
        else:
            os.environ.pop(name, None)

    from gunicorn.app.base import BaseApplication

    class ApiApplication(BaseApplication):
        def load_config(self) -> None:
            settings = {
                "bind": [args.bind], "workers": args.workers, "worker_class": "gthread",
                "threads": args.threads, "graceful_timeout": 5, "timeout": 30,
                "keepalive": 5, "loglevel": "info", "post_worker_init": _post_worker_init,
                "proc_name": "accessd-api",
                # gunicorn's control socket has one default path per user: several APIs
                # (and tests running in parallel) would fight over it.
                "control_socket_disable": True,
            }
            if args.access_log:
                settings["accesslog"] = "-"
            if args.certfile:
                settings.update(certfile=args.certfile, keyfile=args.keyfile)
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            # Called in each worker after the fork (no preload): the store opens there.
            from api.app import get_app

            return get_app()

    ApiApplication().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
