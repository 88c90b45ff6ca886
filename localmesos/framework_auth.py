"""HTTP framework authentication on the scheduler API, as a Mesos 1.12 master does it with
`--authenticate_http_frameworks --http_framework_authenticators=basic --credentials=FILE`.

- Credentials file: Mesos's JSON form `{"credentials": [{"principal": "p", "secret": "s"}]}`,
  or its text form (one `principal secret` per line); a `file://` prefix is accepted, as the
  master's flag takes it.
- Every request to `/api/v1/scheduler` must carry `Authorization: Basic base64(p:s)` naming a
  configured principal with its secret. Anything else (no header, another scheme, bad base64,
  wrong secret, unknown principal) gets what libprocess's basic authenticator answers:
  `401 Unauthorized`, `WWW-Authenticate: Basic realm="mesos-master-scheduler"`, the body
  `401 Unauthorized.` (text/plain). Every answer here was checked against a real Mesos 1.12
  master run with those flags (tarball in ../shared/mesos).
- The authenticated principal must be the framework's: a SUBSCRIBE whose
  `FrameworkInfo.principal` differs is a 400 ("Failed to validate scheduler::Call:
  Authenticated principal 'a' does not match principal 'b' set in `FrameworkInfo`"); one without
  a principal gets the authenticated one set in its FrameworkInfo (Mesos logs a warning); any
  other call whose principal differs from the subscribed framework's is a 400 too.

Secrets are never logged: refusals log the principal at most.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
from pathlib import Path
from typing import Any

from localmesos.httpserver import Response

log = logging.getLogger("localmesos.auth")

REALM = "mesos-master-scheduler"  # Mesos's DEFAULT_HTTP_FRAMEWORK_AUTHENTICATION_REALM


class CredentialsError(ValueError):
    """The credentials file cannot be read or parsed; the message says which and why."""


def load_credentials(path: str) -> dict[str, str]:
    """`{principal: secret}` from a Mesos credentials file (JSON or text form)."""
    if path.startswith("file://"):
        path = path[len("file://"):]
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CredentialsError(f"cannot read credentials file {path}: {exc}") from None
    creds: dict[str, str] = {}
    if text.lstrip().startswith("{"):
        try:
            doc = json.loads(text)
            entries = doc["credentials"]
            for entry in entries:
                principal, secret = entry["principal"], entry.get("secret", "")
                if not isinstance(principal, str) or not isinstance(secret, str):
                    raise TypeError
                creds[principal] = secret
        except (ValueError, KeyError, TypeError):
            raise CredentialsError(
                f"credentials file {path}: expected "
                '{"credentials": [{"principal": ..., "secret": ...}]}') from None
    else:
        for n, line in enumerate(text.splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2:
                raise CredentialsError(f"credentials file {path} line {n}: expected "
                                       "'principal secret'")
            creds[parts[0]] = parts[1]
    if not creds:
        raise CredentialsError(f"credentials file {path} holds no credential")
    return creds


def unauthorized() -> Response:
    # libprocess fills the empty body of its Unauthorized with the status line's text
    return Response(401, b"401 Unauthorized.", "text/plain; charset=utf-8",
                    {"WWW-Authenticate": f'Basic realm="{REALM}"'})


def authenticate(header: str | None, credentials: dict[str, str]) -> str | None:
    """The principal `header` (an `Authorization` value) authenticates, else None."""
    if not header:
        return None
    parts = header.split(" ")
    if len(parts) != 2 or parts[0] != "Basic":
        return None
    try:
        decoded = base64.b64decode(parts[1], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    fields = decoded.split(":")
    if len(fields) != 2:
        return None
    principal, secret = fields
    expected = credentials.get(principal)
    # Constant-time: the comparison's duration must not reveal how much of a secret matched.
    if expected is None or not hmac.compare_digest(expected.encode(), secret.encode()):
        return None
    return principal


def mismatch(authenticated: str, declared: Any) -> str:
    return (f"Authenticated principal '{authenticated}' does not match principal "
            f"'{declared or ''}' set in `FrameworkInfo`")


def subscribe_refusal(call: dict[str, Any], principal: str) -> Response | None:
    """For a SUBSCRIBE by `principal`: a 400 if its FrameworkInfo names another principal;
    sets the principal when it names none (as Mesos does)."""
    info = call["subscribe"]["framework_info"]
    declared = info.get("principal")
    if declared is None:
        log.warning("Setting 'principal' in FrameworkInfo to '%s' because the framework "
                    "authenticated with that principal but did not set it in FrameworkInfo",
                    principal)
        info["principal"] = principal
        return None
    if declared != principal:
        return Response.text(400, "Failed to validate scheduler::Call: "
                             + mismatch(principal, declared))
    return None
