"""Credentials: a bearer token, or HTTP Basic with the token as password (any user name).

Two credentials may be configured: the full token (`--token` / `ACCESSD_API_TOKEN`) may read and
change state; the read token (`--read-token` / `ACCESSD_API_READ_TOKEN`) may only read, and gets
403 on any change. When at least one is configured every endpoint needs a credential except
`/ping` and the status page's static files (which hold no data: the page asks for a token when
the API answers 401 and sends it with its API calls). Reads need a credential too because app
definitions carry `env`, which may hold secrets. A missing or wrong credential gets 401 with `WWW-Authenticate`
naming both schemes. With none configured everything is open, which is why `accessd api` then
binds to 127.0.0.1 only (see `api.main`).
"""

from __future__ import annotations

import base64
import binascii
import hmac

import falcon

from api.errors import ApiError

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_PATHS = frozenset({"/ping", "/"})
PUBLIC_PREFIXES = ("/static/",)
CHALLENGES = ['Bearer realm="accessd"', 'Basic realm="accessd"']


def presented_token(header: str | None) -> str | None:
    """The token in an `Authorization` header (Bearer, or Basic's password), else None."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "bearer":
        return value or None
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _, sep, password = decoded.partition(":")
        return password if sep else None
    return None


def _same(a: str | None, b: str | None) -> bool:
    # Constant-time comparison: a timing difference must not reveal a token prefix.
    return a is not None and b is not None and hmac.compare_digest(a.encode(), b.encode())


class AuthMiddleware:
    """Checks credentials before routing (so an unauthenticated caller learns nothing, not even
    whether an app exists)."""

    def __init__(self, token: str | None, read_token: str | None) -> None:
        self.token = token or None
        self.read_token = read_token or None

    @property
    def enabled(self) -> bool:
        return self.token is not None or self.read_token is not None

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if not self.enabled:
            return
        path = req.path
        if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            return
        given = presented_token(req.get_header("Authorization"))
        if _same(given, self.token):
            return
        if _same(given, self.read_token):
            if req.method in READ_METHODS:
                return
            raise ApiError(403, "Not Authorized to perform this action: the credential is "
                                "read-only")
        raise ApiError(401, "Invalid or missing credentials: send 'Authorization: Bearer "
                            "<token>' or HTTP Basic with the token as password",
                       headers={"WWW-Authenticate": ", ".join(CHALLENGES)})
