"""`/v2/balancers`: the load balancers that drain tasks before their kill (accessd's own).

`PUT /v2/balancers/{name}` with `{"drained": [task ids], "ttlSeconds": 10}` registers a
balancer, or renews it, for `ttlSeconds` (1–300), listing the leaving tasks it has taken out of
rotation and whose in-flight requests have finished. While a registration is live, the
scheduler waits (bounded, `accessd scheduler --drain-timeout`) for every live balancer to list
a leaving task before killing it (`scheduler.drain`). `DELETE` ends a registration (a balancer
stopping); `GET` lists them with `live` (lease not run out).
"""

from __future__ import annotations

import re
import time

import falcon

from api.apps import Ctx
from api.body import read_object
from api.errors import bad_request, not_found
from scheduler.spec import format_time, parse_time

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
MAX_DRAINED = 10_000


def _view(doc: dict, now: float) -> dict:
    try:
        live = parse_time(doc.get("expiresAt") or "") > now
    except ValueError:
        live = False
    return dict(doc, live=live)


class Balancers:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The registered load balancers (`accessd lb`), with `live`."""
        now = time.time()
        resp.media = {"balancers": [_view(d, now) for d in self.ctx.store.list_balancers()]}


class Balancer:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        """One registration."""
        for doc in self.ctx.store.list_balancers():
            if doc.get("name") == name:
                resp.media = _view(doc, time.time())
                return
        raise not_found(f"Balancer '{name}' is not registered")

    def on_put(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        """Register or renew a balancer and report the leaving tasks it has drained."""
        if not NAME_RE.match(name):
            raise bad_request("a balancer name is 1-100 letters, digits, '_', '.', ':' or '-'",
                              "/name")
        body = read_object(req, self.ctx.max_body)
        unknown = sorted(set(body) - {"drained", "ttlSeconds"})
        if unknown:
            raise bad_request(f"unknown field(s): {', '.join(unknown)}", f"/{unknown[0]}")
        drained = body.get("drained", [])
        if (not isinstance(drained, list) or len(drained) > MAX_DRAINED
                or not all(isinstance(t, str) and 0 < len(t) <= 300 for t in drained)):
            raise bad_request(f"drained must be a list of at most {MAX_DRAINED} task ids",
                              "/drained")
        ttl = body.get("ttlSeconds", 10)
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 1 <= ttl <= 300:
            raise bad_request("ttlSeconds must be a number from 1 to 300", "/ttlSeconds")
        now = time.time()
        doc = {"name": name, "drained": sorted(set(drained)), "ttlSeconds": ttl,
               "renewedAt": format_time(now), "expiresAt": format_time(now + ttl)}
        self.ctx.store.put_balancer(name, doc)
        resp.media = _view(doc, now)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        """End a registration: no kill waits for this balancer any more."""
        if not self.ctx.store.delete_balancer(name):
            raise not_found(f"Balancer '{name}' is not registered")
        resp.status = falcon.HTTP_204
