"""`GET /v2/permissions` — an accessd extension: what the presented credential may do,
`{"read": true, "write": bool}`, so a client (the status page) can leave out the controls the
API would refuse anyway. The answer restates `api.auth`'s rule; it grants nothing: every change
is still checked there.
"""

from __future__ import annotations

import hmac

import falcon

from api.auth import AuthMiddleware, presented_token


class Permissions:
    def __init__(self, auth: AuthMiddleware) -> None:
        self.auth = auth

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """What the presented credential may do: `{"read": true, "write": bool}` (extension)."""
        write = True
        if self.auth.enabled:
            given = presented_token(req.get_header("Authorization"))
            # Reaching here means the middleware accepted the credential for a read.
            write = (self.auth.token is not None and given is not None
                     and hmac.compare_digest(given.encode(), self.auth.token.encode()))
        resp.media = {"read": True, "write": write}
