"""The rest of Marathon 1.x's app definition: fields with an effect here (`gpus`, `user`,
`fetch`/`uris`, `acceptedResourceRoles`, `dependencies`, `readinessChecks`,
`unreachableStrategy`; `container` and `networks` are `scheduler.spec.container`'s, `secrets`
`scheduler.spec.secrets`'s) and those whose empty, null or default values are accepted while
any other value is refused with the reason it cannot work on this cluster (`ipAddress`,
`storeUrls`, `tty`, `resourceLimits`, `executorResources`, `check`).

Each rule follows Marathon's RAML and `AppValidation` (e.g. at most one readiness check whose
`portName` names a port definition; `inactiveAfterSeconds <= expungeAfterSeconds`; `uris` and
`fetch` not both; archive `uris` extracted as Marathon's `FetchUri.isExtract` decides).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from scheduler.spec.fields import (
    MISSING,
    Errors,
    boolean,
    check_unknown,
    integer,
    object_items,
    ptr,
    string,
    type_name,
)
from scheduler.spec.ids import normalize_id
from scheduler.spec.model import (
    READINESS_PROTOCOLS,
    FetchUri,
    PortDefinition,
    ReadinessCheck,
    UnreachableStrategy,
)

MARATHON_FIELDS = frozenset({
    "gpus", "user", "fetch", "uris", "acceptedResourceRoles", "dependencies",
    "readinessChecks", "unreachableStrategy", "container", "networks", "ipAddress", "secrets",
    "residency", "storeUrls", "tty", "resourceLimits", "executorResources", "check",
})
# Mesos fetcher's extractable extensions, as Marathon's FetchUri.isExtract lists them.
ARCHIVE_EXTENSIONS = (".tar", ".tar.gz", ".tar.bz2", ".tar.xz", ".gz", ".tgz", ".tbz2", ".txz",
                      ".zip")
_ARTIFACT_FIELDS = frozenset({"uri", "extract", "executable", "cache", "destPath"})
_READINESS_FIELDS = frozenset({
    "name", "protocol", "path", "portName", "intervalSeconds", "timeoutSeconds",
    "httpStatusCodesForReady", "preserveLastResponse",
})
_UNREACHABLE_FIELDS = frozenset({"inactiveAfterSeconds", "expungeAfterSeconds"})


def is_archive(uri: str) -> bool:
    """Whether the Mesos fetcher would extract `uri` (Marathon's default for `uris`)."""
    try:
        path = urlsplit(uri).path
    except ValueError:
        return False
    return path.endswith(ARCHIVE_EXTENSIONS)


def _empty(v: Any) -> bool:
    return v is MISSING or v is None or v == [] or v == {}


def _string_list(v: Any, path: tuple, errs: Errors) -> list[str] | None:
    if _empty(v):
        return None
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        errs.add(ptr(*path), "must be an array of non-empty strings")
        return None
    return list(v)


def parse_gpus(v: Any, errs: Errors) -> int:
    return integer(v, ("gpus",), errs, 0, ge=0)


def parse_user(v: Any, errs: Errors) -> str | None:
    return string(v, ("user",), errs, None, nonempty=True)


def parse_fetch(doc: dict, errs: Errors) -> tuple[FetchUri, ...]:
    uris = _string_list(doc.get("uris"), ("uris",), errs)
    raw = doc.get("fetch")
    if uris and not _empty(raw):
        errs.add(ptr("uris"), "may not be set in conjunction with fetch")
        return ()
    if uris:
        return tuple(FetchUri(uri=u, extract=is_archive(u)) for u in uris)
    if _empty(raw):
        return ()
    items = object_items(raw, "fetch", errs)
    if items is None:
        return ()
    out: list[FetchUri] = []
    for path, item in items:
        check_unknown(item, _ARTIFACT_FIELDS, path, errs)
        uri = string(item.get("uri"), (*path, "uri"), errs, None, nonempty=True)
        if uri is None:
            errs.add(ptr(*path, "uri"), "is required")
            continue
        dest = string(item.get("destPath"), (*path, "destPath"), errs, None, nonempty=True)
        if dest is not None and (dest.startswith("/") or ".." in dest.split("/")):
            errs.add(ptr(*path, "destPath"), "must be a relative path inside the sandbox")
            dest = None
        out.append(FetchUri(
            uri=uri,
            extract=boolean(item.get("extract"), (*path, "extract"), errs, True),
            executable=boolean(item.get("executable"), (*path, "executable"), errs, False),
            cache=boolean(item.get("cache"), (*path, "cache"), errs, False),
            dest_path=dest))
    return tuple(out)


def parse_accepted_roles(v: Any, errs: Errors) -> tuple[str, ...] | None:
    roles = _string_list(v, ("acceptedResourceRoles",), errs)
    if roles is None:
        return None
    if len(set(roles)) != len(roles):
        errs.add(ptr("acceptedResourceRoles"), "must not repeat a role")
    return tuple(dict.fromkeys(roles))


def parse_dependencies(v: Any, app_id: str | None, errs: Errors) -> tuple[str, ...]:
    """Path ids, relative ones taken from the app's group (Marathon's canonicalPath)."""
    deps = _string_list(v, ("dependencies",), errs)
    if not deps:
        return ()
    base = (app_id or "/").rsplit("/", 1)[0] or "/"
    out: list[str] = []
    for i, dep in enumerate(deps):
        sub = Errors()
        full = normalize_id(dep if dep.startswith("/") else f"{base.rstrip('/')}/{dep}", sub)
        if sub or full is None:
            errs.add(ptr("dependencies", i), f"{dep!r} is not a valid app or group id")
        elif full == app_id:
            errs.add(ptr("dependencies", i), "an app cannot depend on itself")
        elif full not in out:
            out.append(full)
    return tuple(out)


def parse_readiness_checks(v: Any, ports: tuple[PortDefinition, ...],
                           errs: Errors) -> tuple[ReadinessCheck, ...]:
    if _empty(v):
        return ()
    if isinstance(v, list) and len(v) > 1:
        errs.add(ptr("readinessChecks"), "at most one readiness check is allowed")
        return ()
    items = object_items(v, "readinessChecks", errs)
    if items is None:
        return ()
    names = {p.name for p in ports if p.name}
    out: list[ReadinessCheck] = []
    for path, rc in items:
        before = len(errs.details())
        check_unknown(rc, _READINESS_FIELDS, path, errs)
        port_name = string(rc.get("portName"), (*path, "portName"), errs, "http-api")
        if port_name not in names:
            errs.add(ptr(*path, "portName"), f"No port definition reference for portName "
                                             f"{port_name}")
        rpath = string(rc.get("path"), (*path, "path"), errs, "/", nonempty=True) or "/"
        if not rpath.startswith("/"):
            errs.add(ptr(*path, "path"), "must start with '/'")
        interval = integer(rc.get("intervalSeconds"), (*path, "intervalSeconds"), errs, 30,
                           ge=0)
        timeout = integer(rc.get("timeoutSeconds"), (*path, "timeoutSeconds"), errs, 10, ge=1)
        if timeout >= interval:
            errs.add(ptr(*path, "timeoutSeconds"), f"must be < intervalSeconds ({interval})")
        codes_raw = rc.get("httpStatusCodesForReady")
        codes: tuple[int, ...] = (200,)
        if codes_raw is not None:
            if (not isinstance(codes_raw, list) or not codes_raw
                    or not all(isinstance(c, int) and not isinstance(c, bool) and 100 <= c <= 999
                               for c in codes_raw)):
                errs.add(ptr(*path, "httpStatusCodesForReady"),
                         "must be a non-empty array of HTTP status codes (100-999)")
            else:
                codes = tuple(dict.fromkeys(codes_raw))
        check = ReadinessCheck(
            name=string(rc.get("name"), (*path, "name"), errs, "readinessCheck",
                        nonempty=True) or "readinessCheck",
            protocol=string(rc.get("protocol"), (*path, "protocol"), errs, "HTTP",
                            choices=READINESS_PROTOCOLS) or "HTTP",
            path=rpath, port_name=port_name or "http-api", interval_seconds=interval,
            timeout_seconds=timeout, http_status_codes_for_ready=codes,
            preserve_last_response=boolean(rc.get("preserveLastResponse"),
                                           (*path, "preserveLastResponse"), errs, False))
        if len(errs.details()) == before:
            out.append(check)
    return tuple(out)


def parse_unreachable_strategy(v: Any, errs: Errors) -> UnreachableStrategy:
    """Marathon's default for an app without persistent volumes is enabled with 0 and 0."""
    if v is MISSING or v is None:
        return UnreachableStrategy()
    if v == "disabled":
        return UnreachableStrategy(enabled=False)
    if not isinstance(v, dict):
        errs.add(ptr("unreachableStrategy"),
                 'must be "disabled" or {"inactiveAfterSeconds", "expungeAfterSeconds"}')
        return UnreachableStrategy()
    check_unknown(v, _UNREACHABLE_FIELDS, ("unreachableStrategy",), errs)
    inactive = integer(v.get("inactiveAfterSeconds"),
                       ("unreachableStrategy", "inactiveAfterSeconds"), errs, 0, ge=0)
    expunge = integer(v.get("expungeAfterSeconds"),
                      ("unreachableStrategy", "expungeAfterSeconds"), errs, 0, ge=0)
    if inactive > expunge:
        errs.add(ptr("unreachableStrategy", "inactiveAfterSeconds"),
                 f"inactiveAfterSeconds ({inactive}) must be less or equal to "
                 f"expungeAfterSeconds, which is {expunge}")
    return UnreachableStrategy(inactive_after_seconds=inactive, expunge_after_seconds=expunge)


def check_refused_unless_empty(doc: dict, errs: Errors) -> None:
    """Fields that mean "nothing special" when empty, and cannot work here otherwise."""
    reasons = {
        "ipAddress": "IP-per-task networking needs a CNI network on the agents, which this "
                     "cluster does not have",
        "storeUrls": "there is no artifact store on this cluster; use fetch",
        "resourceLimits": "resource limits above the request need the Mesos containerizer's "
                          "cgroups isolators, which this cluster lacks",
        "executorResources": "accessd's executor takes no resources of its own",
        "check": "Mesos checks are not supported; use healthChecks (and readinessChecks)",
    }
    for key, why in reasons.items():
        if not _empty(doc.get(key, MISSING)):
            errs.add(ptr(key), f"not supported here: {why}")
    if doc.get("tty") not in (None, False):
        errs.add(ptr("tty"), "not supported here: a TTY needs the Mesos containerizer's I/O "
                             "switchboard, which this cluster lacks")
    residency = doc.get("residency")
    if residency is not None and not isinstance(residency, dict):
        errs.add(ptr("residency"), f"must be an object, got {type_name(residency)}")
    # `residency` is deprecated and has no effect in Marathon: accepted, ignored.
