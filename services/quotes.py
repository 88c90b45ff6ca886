"""The last-quote service: the most recent bar of a symbol.

    GET /quotes/{symbol}/last[?fields=open,close]

Answers `Quote.to_json(fields)` of the quote with the greatest timestamp; 404 for a symbol with no
quotes, 400 for a bad `fields` or an unknown parameter, 503 + Retry-After when the store is
unreachable (see `services.common`).

Run: `ACCESSD_STORE=sqlite:///path.db gunicorn 'services.quotes:get_app()'`.
"""

from __future__ import annotations

import falcon

from services.common import ServiceConfig, app_from_env, make_app, unknown_symbol
from services.openapi import FIELDS_PARAM, QUOTE, op, query
from services.store import QuoteStore
from services.timeseries import check_known_params, parse_fields

KNOWN_PARAMS = frozenset({"fields"})


class LastQuoteResource:
    """`GET /quotes/{symbol}/last`. Holds only the store."""

    OPENAPI = {"get": op("The symbol's most recent quote", QUOTE, errors=(400, 404, 503),
                         params=[query("fields", FIELDS_PARAM, "only these price/volume fields")])}

    def __init__(self, store: QuoteStore) -> None:
        self.store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response, symbol: str) -> None:
        check_known_params(req, KNOWN_PARAMS)
        fields = parse_fields(req.get_param("fields"))
        quote = self.store.last(symbol)
        if quote is None:
            raise unknown_symbol(symbol)
        resp.media = quote.to_json(fields)


def create_app(config: ServiceConfig, store: QuoteStore) -> falcon.App:
    """The last-quote app on `store` (injected: tests pass their own)."""
    return make_app("quotes", config, store,
                    [("/quotes/{symbol}/last", LastQuoteResource(store))])


def get_app() -> falcon.App:
    """Entry point for gunicorn: `gunicorn 'services.quotes:get_app()'`."""
    return app_from_env(create_app)
