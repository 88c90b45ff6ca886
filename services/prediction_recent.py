"""What the status page's pipeline panel reads from the prediction service:

    GET /models                       {"models": [{"symbol", "version"}]} — every published model
    GET /models/{symbol}/metrics      the current version's held-out metrics (`metrics.json`:
                                      `model`, `naive`, `versusNaive`, `testSamples`, …)
    GET /predictions/{symbol}/recent?n=60
                                      the current model's predictions of the last `n` closes,
                                      each from the closes before it, next to the actual close:
                                      {"symbol", "modelVersion", "lastQuoteTs", "points":
                                      [{"ts", "actual", "predicted", "naive"}]}

`n` is 1..500 (default 60). Errors as the rest of the service: 404 unknown symbol or model,
400 bad `n`, 409 when the store holds too few quotes.
"""

from __future__ import annotations

import json
import re

import falcon
import numpy as np

from services.model import ModelRegistry, symbol_dir
from services.openapi import EPOCH_MS, ISO_TIME, SYMBOL, op, query
from services.store import QuoteStore, iso_ms

MAX_RECENT = 500
_VERSION_RE = re.compile(r"^v\d+$")

VERSION = {"type": "string", "pattern": _VERSION_RE.pattern}
_NUMBER = {"type": "number"}
_ERRORS = {"type": "object", "required": ["mae", "rmse", "mape"], "additionalProperties": False,
           "properties": {"mae": _NUMBER, "rmse": _NUMBER, "mape": _NUMBER}}
# Ratios are NaN and the standard error infinite on degenerate data (one held-out sample):
# JSON has no such numbers, so ModelMetrics answers null for them.
_MAYBE = {"type": ["number", "null"]}
METRICS = {
    "type": "object", "required": ["symbol", "version", "testSamples", "model", "naive"],
    "properties": {
        "symbol": SYMBOL, "version": VERSION, "testSamples": {"type": "integer", "minimum": 0},
        "testFromMs": EPOCH_MS, "testFrom": ISO_TIME, "model": _ERRORS, "naive": _ERRORS,
        "versusNaive": {"type": "object", "additionalProperties": False,
                        "required": ["maeRatio", "rmseRatio", "maeDiff", "maeDiffSe"],
                        "properties": {"maeRatio": _MAYBE, "rmseRatio": _MAYBE,
                                       "maeDiff": _MAYBE, "maeDiffSe": _MAYBE}}},
    "description": "the held-out evaluation written by `accessd model train` (metrics.json)"}
MODELS = {"type": "object", "required": ["models"], "additionalProperties": False,
          "properties": {"models": {"type": "array", "items": {
              "type": "object", "required": ["symbol", "version"], "additionalProperties": False,
              "properties": {"symbol": {"type": "string"}, "version": VERSION}}}}}
RECENT = {
    "type": "object", "additionalProperties": False,
    "required": ["symbol", "modelVersion", "lastQuoteTs", "points"],
    "properties": {"symbol": SYMBOL, "modelVersion": VERSION, "lastQuoteTs": ISO_TIME,
                   "points": {"type": "array", "items": {
                       "type": "object", "additionalProperties": False,
                       "required": ["ts", "actual", "predicted", "naive"],
                       "properties": {"ts": ISO_TIME, "actual": _NUMBER, "predicted": _NUMBER,
                                      "naive": _NUMBER}}}}}


class ModelsList:
    OPENAPI = {"get": op("Every published model: symbol and current version", MODELS)}

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        out = []
        root = self.registry.models_dir
        for d in sorted(root.iterdir()) if root.is_dir() else []:
            try:
                version = (d / "current").read_text(encoding="utf-8").strip()
            except (FileNotFoundError, NotADirectoryError):
                continue
            if _VERSION_RE.fullmatch(version):
                out.append({"symbol": d.name, "version": version})
        resp.media = {"models": out}


class ModelMetrics:
    OPENAPI = {"get": op("The current model's held-out metrics, against naive", METRICS,
                         errors=(404,))}

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    def on_get(self, req: falcon.Request, resp: falcon.Response, symbol: str) -> None:
        from services.prediction import _model_or_404

        model = _model_or_404(self.registry, symbol)
        path = symbol_dir(self.registry.models_dir, symbol) / model.version / "metrics.json"
        try:
            # NaN/Infinity (written by json.dump on degenerate data) are not JSON: null here.
            resp.media = json.loads(path.read_text(encoding="utf-8"),
                                    parse_constant=lambda _: None)
        except FileNotFoundError:
            raise falcon.HTTPNotFound(title="No metrics",
                                      description=f"model {model.version} of {symbol} has no "
                                                  "metrics.json") from None


class RecentPredictions:
    OPENAPI = {"get": op("The current model's predictions of the last n closes, next to the "
                         "actual and naive closes", RECENT, errors=(400, 404, 409, 503),
                         params=[query("n", {"type": "integer", "minimum": 1,
                                             "maximum": MAX_RECENT, "default": 60},
                                       "how many of the last closes")])}

    def __init__(self, store: QuoteStore, registry: ModelRegistry) -> None:
        self.store = store
        self.registry = registry

    def on_get(self, req: falcon.Request, resp: falcon.Response, symbol: str) -> None:
        from services.common import unknown_symbol
        from services.prediction import _model_or_404, latest_quotes

        text = req.get_param("n") or "60"
        if not text.isdigit() or not 1 <= int(text) <= MAX_RECENT:
            raise falcon.HTTPBadRequest(title="Invalid parameter",
                                        description=f"n must be an integer 1..{MAX_RECENT}")
        n = int(text)
        model = _model_or_404(self.registry, symbol)
        need = model.inputs_needed
        quotes = latest_quotes(self.store, symbol, n + need)
        if not quotes:
            raise unknown_symbol(symbol)
        if len(quotes) <= need:
            raise falcon.HTTPConflict(title="Not enough quotes",
                                      description=f"{symbol} has {len(quotes)} quotes; "
                                                  f"model {model.version} needs {need + 1}")
        closes = np.array([q.close for q in quotes], dtype=float)
        targets = range(need, len(quotes))
        rows = np.array([closes[i - need:i] for i in targets])
        predicted = model.predict_many(rows)
        resp.media = {
            "symbol": symbol, "modelVersion": model.version, "lastQuoteTs": iso_ms(quotes[-1].ts),
            "points": [{"ts": iso_ms(quotes[i].ts), "actual": float(closes[i]),
                        "predicted": float(p), "naive": float(closes[i - 1])}
                       for i, p in zip(targets, predicted, strict=True)],
        }
