"""`accessd local`'s load balancer: `accessd lb` in front of the example services, so each
service has one stable address, `http://127.0.0.1:<servicePort>/`, however many instances run
and wherever they land.

`start_balancer(run)` spawns it (its HAProxy files in `<data-dir>/lb/`, its stats, metrics and
vhost ports free ones picked at start) and waits for its ready line; `stable_urls(apps)` are
the services' URLs (apps with a `HAPROXY_GROUP` label and an assigned service port);
`wait_routed` waits until each answers through HAProxy.
"""

from __future__ import annotations

import fcntl
import os
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

GROUP = "external"


@dataclass
class Balancer:
    stats: str
    metrics: str
    http_port: int


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVICE_PORT_LOCKS = "accessd-service-ports"   # in the temporary directory, one file a block
_claimed: list[int] = []   # the locked files' descriptors: the claims last as long as the process


def service_port_min(low: int = 10000, high: int = 20000, block: int = 100) -> int:
    """The first block of `block` service ports, from `low` up, that nothing on this machine
    listens on (127.0.0.1) and no other `accessd local` has claimed: where the API assigns this
    run's service ports. Usually `low`; a second `accessd local` beside the first (tests,
    another clone) gets the next free block, so its HAProxy does not fail to bind, nor its URLs
    reach the other run's services. The claim is an exclusive `flock` on one file per block,
    held until this process ends (the kernel drops it however it ends): two runs starting at
    the same moment, before either HAProxy listens, still get different blocks."""
    lock_dir = Path(tempfile.gettempdir(), SERVICE_PORT_LOCKS)
    lock_dir.mkdir(parents=True, exist_ok=True)
    for base in range(low, high - block + 1, block):
        fd = os.open(lock_dir / f"ports-{base}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)   # another run's block
            continue
        if all(_free(port) for port in range(base, base + block)):
            _claimed.append(fd)
            return base
        os.close(fd)
    return low


def _free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as HAProxy binds
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start_balancer(run: Any) -> Balancer | None:
    """Spawn `accessd lb` as one of `run`'s components and wait until it serves the state;
    None (said once) when HAProxy is not installed: the services are then reached at their
    tasks' addresses."""
    from accessd.local import StepFailed, accessd_cmd, progress
    from lb.haproxy import HAProxyError, find_binary

    try:
        find_binary()
    except HAProxyError as exc:
        progress(f"no load balancer: {exc}")
        return None
    stats, metrics, http = _free_port(), _free_port(), _free_port()
    progress("starting the load balancer (HAProxy)")
    comp = run._spawn("lb", accessd_cmd(
        "lb", "--api", run.api_url, "--work-dir", str(run.data_dir / "lb"), "--group", GROUP,
        "--stats-port", str(stats), "--metrics-port", str(metrics), "--http-port", str(http),
        "--name", f"local-{run.opts.api_port}"))
    try:
        comp.wait_for_line("ready lb=", timeout=60)
    except StepFailed as exc:
        raise StepFailed(f"the load balancer did not start: {exc} (is haproxy installed? "
                         "bash tools/test-deps.sh installs it)") from None
    return Balancer(f"http://127.0.0.1:{stats}/haproxy?stats",
                    f"http://127.0.0.1:{metrics}/metrics", http)


def stable_urls(apps: list[dict[str, Any]], balancer: Balancer | None) -> dict[str, str]:
    """App id → `http://127.0.0.1:<servicePort>` for the apps the balancer serves."""
    out: dict[str, str] = {}
    if balancer is None:
        return out
    for app in apps:
        if (app.get("labels") or {}).get("HAPROXY_GROUP") != GROUP:
            continue
        ports = [int(p.get("port") or 0) for p in app.get("portDefinitions") or []]
        if ports and ports[0] > 0:
            out[app["id"]] = f"http://127.0.0.1:{ports[0]}"
    return out


def wait_routed(urls: dict[str, str], timeout: float) -> None:
    """Until every URL's `/health` answers 200 through HAProxy."""
    from accessd.local import StepFailed

    deadline = time.monotonic() + timeout
    waiting = dict(urls)
    while waiting:
        for app_id, url in list(waiting.items()):
            try:
                if requests.get(f"{url}/health", timeout=2).status_code == 200:
                    del waiting[app_id]
            except requests.RequestException:
                pass
        if waiting and time.monotonic() > deadline:
            raise StepFailed("the load balancer does not route to "
                             + ", ".join(f"{a} ({u})" for a, u in waiting.items()))
        if waiting:
            time.sleep(0.2)  # polling interval, the condition is the answer above
