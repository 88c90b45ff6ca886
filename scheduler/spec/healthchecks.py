"""Health checks of an app definition (Marathon's HTTP, TCP and COMMAND forms)."""

from __future__ import annotations

from typing import Any

from scheduler.spec.fields import (
    MISSING,
    Errors,
    boolean,
    check_unknown,
    integer,
    object_items,
    ptr,
    seconds,
    string,
)
from scheduler.spec.model import HEALTH_CHECK_PROTOCOLS, HealthCheck, PortDefinition, num

HEALTH_CHECK_FIELDS = frozenset({
    "protocol", "path", "portIndex", "command", "gracePeriodSeconds", "intervalSeconds",
    "timeoutSeconds", "maxConsecutiveFailures", "delaySeconds", "ignoreHttp1xx", "ipProtocol",
    "port",
})
HTTP_PROTOCOLS = ("HTTP", "MESOS_HTTP")
PORT_PROTOCOLS = ("HTTP", "TCP", "MESOS_HTTP", "MESOS_TCP")


def parse_health_checks(v: Any, ports: tuple[PortDefinition, ...], errs: Errors
                   ) -> tuple[HealthCheck, ...]:
    if v is MISSING or v is None:
        return ()
    items = object_items(v, "healthChecks", errs)
    if items is None:
        return ()
    out: list[HealthCheck] = []
    for path, hc in items:
        before = len(errs.details())
        check_unknown(hc, HEALTH_CHECK_FIELDS, path, errs)
        protocol = hc.get("protocol", "HTTP")
        if protocol is None:
            protocol = "HTTP"
        if protocol not in HEALTH_CHECK_PROTOCOLS:
            why = (" (the health checks here do not speak TLS)" if "HTTPS" in str(protocol)
                   else "")
            errs.add(ptr(*path, "protocol"),
                     f"unsupported protocol {protocol!r}{why}; use one of "
                     f"{', '.join(HEALTH_CHECK_PROTOCOLS)}")
            continue
        if hc.get("ipProtocol") not in (None, "IPv4"):
            errs.add(ptr(*path, "ipProtocol"), "only IPv4 is supported: tasks are reached at "
                                               "127.0.0.1 from their executor")
        if hc.get("port") is not None:
            errs.add(ptr(*path, "port"), "is not supported: name the port with portIndex")
        hc_path = "/"
        if hc.get("path") is not None:
            if protocol not in HTTP_PROTOCOLS:
                errs.add(ptr(*path, "path"), "is only valid for HTTP health checks")
            else:
                p = string(hc["path"], (*path, "path"), errs, "/")
                if p is not None and not p.startswith("/"):
                    errs.add(ptr(*path, "path"), "must start with '/'")
                elif p is not None and any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127
                                           for ch in p):
                    # it goes into an HTTP request line as is
                    errs.add(ptr(*path, "path"), "must not contain spaces or control characters")
                hc_path = p or "/"
        port_index = 0
        if protocol in PORT_PROTOCOLS:
            port_index = integer(hc.get("portIndex"), (*path, "portIndex"), errs, 0, ge=0)
            if not ports:
                errs.add(ptr(*path, "portIndex"),
                         f"{protocol} health checks need a port: the app defines no ports")
            elif port_index >= len(ports):
                errs.add(ptr(*path, "portIndex"),
                         f"{port_index} does not index a port definition "
                         f"(the app has {len(ports)})")
        elif hc.get("portIndex") is not None:
            errs.add(ptr(*path, "portIndex"), "is only valid for HTTP and TCP health checks")
        command = None
        if protocol == "COMMAND":
            c = hc.get("command")
            if not isinstance(c, dict) or not isinstance(c.get("value"), str) or not c["value"]:
                errs.add(ptr(*path, "command"),
                         'COMMAND health checks need "command": {"value": "<shell command>"}')
            else:
                check_unknown(c, {"value"}, (*path, "command"), errs)
                command = c["value"]
        elif hc.get("command") is not None:
            errs.add(ptr(*path, "command"), "is only valid for COMMAND health checks")
        grace = seconds(hc.get("gracePeriodSeconds"), (*path, "gracePeriodSeconds"), errs,
                         300, ge=0)
        interval = seconds(hc.get("intervalSeconds"), (*path, "intervalSeconds"), errs, 60,
                            gt=0)
        timeout = seconds(hc.get("timeoutSeconds"), (*path, "timeoutSeconds"), errs, 20, gt=0)
        if timeout >= interval:
            errs.add(ptr(*path, "timeoutSeconds"),
                     f"must be < intervalSeconds ({num(float(interval))})")
        max_fail = integer(hc.get("maxConsecutiveFailures"), (*path, "maxConsecutiveFailures"),
                            errs, 3, ge=0)
        # Accepted for compatibility with Marathon clients, not used.
        seconds(hc.get("delaySeconds"), (*path, "delaySeconds"), errs, 15, ge=0)
        boolean(hc.get("ignoreHttp1xx"), (*path, "ignoreHttp1xx"), errs, False)
        if len(errs.details()) == before:
            out.append(HealthCheck(protocol=protocol, path=hc_path, port_index=port_index,
                                   command=command, grace_period_seconds=grace,
                                   interval_seconds=interval, timeout_seconds=timeout,
                                   max_consecutive_failures=max_fail))
    return tuple(out)
