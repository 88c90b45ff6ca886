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
from services.store import QuoteStore, iso_ms

MAX_RECENT = 500
_VERSION_RE = re.compile(r"^v\d+$")


class ModelsList:
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
    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    def on_get(self, req: falcon.Request, resp: falcon.Response, symbol: str) -> None:
        from services.prediction import _model_or_404

        model = _model_or_404(self.registry, symbol)
        path = symbol_dir(self.registry.models_dir, symbol) / model.version / "metrics.json"
        try:
            resp.media = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise falcon.HTTPNotFound(title="No metrics",
                                      description=f"model {model.version} of {symbol} has no "
                                                  "metrics.json") from None


class RecentPredictions:
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
