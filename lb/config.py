"""HAProxy's configuration text for an `Applied` assignment, pure.

Master-worker mode: the runtime socket (`stats socket … level admin expose-fd listeners`)
hands the listening sockets to the new worker on a reload, so no connection is refused while
it happens. Every backend lists all its slots; free ones are `disabled` (maintenance) at a
placeholder address until the runtime API gives them a task. A member draining when the
configuration is written starts disabled: the new worker sends it nothing, the old worker
finishes what it has. Failed connections are retried on another server (`retries`,
`option redispatch`, `retry-on conn-failure`), which covers a task that stopped listening a
moment before the balancer heard of it. Requests already sent are never retried (a POST may not
be idempotent): a task's in-flight requests are protected by the drain before its kill
(`scheduler.drain`), not by retries.
"""

from __future__ import annotations

from dataclasses import dataclass

from lb.slots import MAINT, Applied

# An HTTP frontend tells its servers the client's address, and on a reload the old worker
# answers the next request of a kept-alive connection idle at that moment (then closes it)
# instead of closing it at once: a client sending just then would see its request fail.
HTTP_FRONTEND_OPTIONS = ("    option forwardfor", "    option idle-close-on-response")


@dataclass(frozen=True)
class Settings:
    runtime_socket: str
    bind: str = "127.0.0.1"
    stats_port: int | None = None
    maxconn: int = 4000
    connect_timeout: str = "2s"
    server_timeout: str = "60s"
    client_timeout: str = "60s"
    hard_stop_after: str = "30s"  # an old worker's in-flight requests get this long


def render(applied: Applied, settings: Settings) -> str:
    s = settings
    lines = [
        "# written by accessd lb; changes are lost at the next sync",
        "global",
        f"    maxconn {s.maxconn}",
        f"    stats socket {s.runtime_socket} mode 600 level admin expose-fd listeners",
        "    stats timeout 30s",
        f"    hard-stop-after {s.hard_stop_after}",
        "",
        "defaults",
        "    mode tcp",
        f"    timeout connect {s.connect_timeout}",
        f"    timeout client {s.client_timeout}",
        f"    timeout server {s.server_timeout}",
        "    timeout http-request 30s",
        "    timeout queue 10s",
        "    retries 3",
        "    option redispatch 1",
        "",
    ]
    if s.stats_port:
        lines += [
            "listen stats",
            f"    bind {s.bind}:{s.stats_port}",
            "    mode http",
            "    stats enable",
            "    stats uri /haproxy?stats",
            "    stats refresh 5s",
            "",
        ]
    vhosts = [svc for svc in applied.services if svc.vhosts]
    if applied.http_port and vhosts:
        lines += ["frontend vhosts", f"    bind {s.bind}:{applied.http_port}", "    mode http",
                  *HTTP_FRONTEND_OPTIONS]
        for svc in vhosts:
            hosts = " ".join(svc.vhosts)
            lines.append(f"    use_backend {svc.name} if {{ req.hdr(host),field(1,:) -i {hosts} }}")
        lines.append("")
    for svc, slots in applied.pairs():
        lines += [f"frontend {svc.name}",
                  f"    bind {s.bind}:{svc.service_port}",
                  f"    mode {svc.mode}",
                  *(HTTP_FRONTEND_OPTIONS if svc.mode == "http" else []),
                  f"    default_backend {svc.name}",
                  "",
                  f"backend {svc.name}",
                  f"    mode {svc.mode}",
                  f"    balance {svc.balance}",
                  *(["    retry-on conn-failure"]
                    if svc.mode == "http" else [])]
        for i, slot in enumerate(slots):
            off = " disabled" if slot.state != "ready" or slot.state == MAINT else ""
            task = f"  # {slot.task_id}" if slot.task_id else ""
            lines.append(f"    server s{i + 1} {slot.host}:{slot.port}{off}{task}")
        lines.append("")
    return "\n".join(lines) + "\n"
