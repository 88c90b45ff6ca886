"""The prediction service: the next close of a symbol from its current model.

    GET  /predict/{symbol}        from the latest quotes in the store
    POST /predict                 {"symbol": "JPM", "closes": [...], "ts": T?}
                                  or a batch: {"symbol": "JPM", "inputs": [{"closes": [...],
                                  "ts": T?}, ...]} (at most MAX_BATCH inputs)
    GET  /models/{symbol}         the current model's version, window and training data
    GET  /models, /models/{symbol}/metrics, /predictions/{symbol}/recent
                                  for the status page's pipeline panel (services.prediction_recent)

Answers carry the prediction, the model version (`modelVersion`) and the input's timestamp
(`inputTs`, ISO 8601: the last quote used, or the `ts` given with explicit closes, else null).
`closes` must hold at least `window + 1` positive numbers (the model's `inputsNeeded`); the last
ones are used. The model is read from `$ACCESSD_MODELS_DIR/<SYMBOL>/current` through
`services.model.ModelRegistry`, which notices a newly published version without a restart.

Errors: 400 for a malformed body or too few closes, 404 for a symbol without a model (or, for
GET, without quotes), 409 when the store holds fewer quotes than the model needs, 503 +
Retry-After when the store is unreachable.

Run: `ACCESSD_STORE=... ACCESSD_MODELS_DIR=... gunicorn 'services.prediction:get_app()'`.
"""

from __future__ import annotations

import math
from pathlib import Path

import falcon
import numpy as np

from services.body import read_json
from services.common import ServiceConfig, app_from_env, make_app, parse_time, unknown_symbol
from services.model import Model, ModelError, ModelRegistry
from services.openapi import EPOCH_MS, ISO_TIME, SYMBOL, TIME_PARAM, op
from services.prediction_recent import VERSION, ModelMetrics, ModelsList, RecentPredictions
from services.store import MIN_TS_MS, Quote, QuoteStore, iso_ms

MAX_BATCH = 10_000
_FIRST_LOOKBACK_MS = 3_600_000      # one hour: enough for a 1-minute series and a small window


def latest_quotes(store: QuoteStore, symbol: str, n: int) -> list[Quote]:
    """The last `n` quotes of `symbol` (fewer if it has fewer), oldest first.

    The store reads only in ascending order, so this looks back from the last quote over a span
    that doubles until it holds `n` quotes (gaps such as nights and weekends only cost a few more
    small reads).
    """
    last = store.last(symbol)
    if last is None:
        return []
    span = _FIRST_LOOKBACK_MS
    while True:
        start = last.ts - span
        if start <= MIN_TS_MS:
            quotes = list(store.read_range(symbol, None, last.ts))
            return quotes[-n:]
        quotes = list(store.read_range(symbol, start, last.ts))
        if len(quotes) >= n:
            return quotes[-n:]
        span *= 4


def _model_or_404(registry: ModelRegistry, symbol: str) -> Model:
    try:
        model = registry.get(symbol)
    except ModelError as exc:
        # A broken artefact with no good version to fall back on is the server's fault.
        raise falcon.HTTPInternalServerError(title="Model unusable",
                                             description=str(exc)) from None
    if model is None:
        raise falcon.HTTPNotFound(title="Unknown model",
                                  description=f"no model published for {symbol!r}")
    return model


def _closes(value: object, where: str, model: Model) -> list[float]:
    if not isinstance(value, list) or not all(
            isinstance(x, int | float) and not isinstance(x, bool) for x in value):
        raise falcon.HTTPBadRequest(title="Invalid body",
                                    description=f"{where} must be a list of numbers")
    if len(value) < model.inputs_needed:
        raise falcon.HTTPBadRequest(
            title="Invalid body",
            description=f"{where} needs at least {model.inputs_needed} closes "
                        f"(model {model.version} uses a window of {model.window} returns), "
                        f"got {len(value)}")
    closes = [float(x) for x in value[-model.inputs_needed:]]
    if not all(math.isfinite(x) and x > 0 for x in closes):
        raise falcon.HTTPBadRequest(title="Invalid body",
                                    description=f"{where} must be finite numbers > 0")
    return closes


def _ts(value: object, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise falcon.HTTPBadRequest(title="Invalid body",
                                    description=f"{where} must be ISO 8601 or epoch ms")
    try:
        return iso_ms(parse_time(str(value)))
    except ValueError as exc:
        raise falcon.HTTPBadRequest(title="Invalid body", description=f"{where}: {exc}") from None


_NUMBER = {"type": "number"}
_CLOSES = {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}, "minItems": 1,
           "description": "at least the model's inputsNeeded closes, oldest first; the last "
                          "ones are used"}
_INPUT_TS = {"anyOf": [{"type": "integer"}, TIME_PARAM, {"type": "null"}],
             "description": "the time of the last close (epoch ms or ISO 8601), echoed as inputTs"}
_NULLABLE_TIME = {"anyOf": [ISO_TIME, {"type": "null"}]}
PREDICTION_FROM_STORE = {
    "type": "object", "additionalProperties": False,
    "required": ["symbol", "prediction", "modelVersion", "inputTs", "inputEpochMs", "lastClose"],
    "properties": {"symbol": SYMBOL, "prediction": _NUMBER, "modelVersion": VERSION,
                   "inputTs": ISO_TIME, "inputEpochMs": EPOCH_MS, "lastClose": _NUMBER}}
PREDICT_ONE = {"type": "object", "additionalProperties": False, "required": ["symbol", "closes"],
               "properties": {"symbol": SYMBOL, "closes": _CLOSES, "ts": _INPUT_TS}}
PREDICT_BATCH = {
    "type": "object", "additionalProperties": False, "required": ["symbol", "inputs"],
    "properties": {"symbol": SYMBOL, "inputs": {
        "type": "array", "minItems": 1, "maxItems": MAX_BATCH, "items": {
            "type": "object", "additionalProperties": False, "required": ["closes"],
            "properties": {"closes": _CLOSES, "ts": _INPUT_TS}}}}}
PREDICTION_ONE = {
    "type": "object", "additionalProperties": False,
    "required": ["symbol", "prediction", "modelVersion", "inputTs", "lastClose"],
    "properties": {"symbol": SYMBOL, "prediction": _NUMBER, "modelVersion": VERSION,
                   "inputTs": _NULLABLE_TIME, "lastClose": _NUMBER}}
PREDICTION_BATCH = {
    "type": "object", "additionalProperties": False,
    "required": ["symbol", "modelVersion", "predictions"],
    "properties": {"symbol": SYMBOL, "modelVersion": VERSION, "predictions": {
        "type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["prediction", "inputTs"],
            "properties": {"prediction": _NUMBER, "inputTs": _NULLABLE_TIME}}}}}
MODEL = {
    "type": "object", "additionalProperties": False,
    "required": ["symbol", "version", "window", "inputsNeeded", "trainedAt", "data"],
    "properties": {
        "symbol": SYMBOL, "version": VERSION, "window": {"type": "integer", "minimum": 1},
        "inputsNeeded": {"type": "integer", "minimum": 2},
        "trainedAt": {"type": "string", "description": "ISO 8601, seconds, or empty"},
        "data": {"type": "object", "description": "what the model was trained on",
                 "properties": {
                     "from": _NULLABLE_TIME, "to": _NULLABLE_TIME,
                     "closes": {"type": "integer"}, "trainSamples": {"type": "integer"},
                     "testSamples": {"type": "integer"}, "testFromMs": EPOCH_MS,
                     "testFrom": ISO_TIME}}}}


def _finite(prediction: float, where: str) -> float:
    # Closes far outside any price range (1e308 next to 1e-300) overflow the model's returns;
    # NaN and Infinity are not JSON, so such an input is refused rather than answered.
    if not math.isfinite(prediction):
        raise falcon.HTTPBadRequest(title="Invalid body",
                                    description=f"{where} give no finite prediction (values "
                                                "too far apart for the model)")
    return prediction


class PredictSymbolResource:
    """`GET /predict/{symbol}`: predict from the latest quotes."""

    OPENAPI = {"get": op("The next close of a symbol from its latest quotes and current model",
                         PREDICTION_FROM_STORE, errors=(404, 409, 503))}

    def __init__(self, store: QuoteStore, registry: ModelRegistry) -> None:
        self.store = store
        self.registry = registry

    def on_get(self, req: falcon.Request, resp: falcon.Response, symbol: str) -> None:
        model = _model_or_404(self.registry, symbol)
        quotes = latest_quotes(self.store, symbol, model.inputs_needed)
        if not quotes:
            raise unknown_symbol(symbol)
        if len(quotes) < model.inputs_needed:
            raise falcon.HTTPConflict(
                title="Not enough quotes",
                description=f"{symbol} has {len(quotes)} quotes; model {model.version} needs "
                            f"{model.inputs_needed}")
        last = quotes[-1]
        resp.media = {"symbol": symbol, "prediction": model.predict([q.close for q in quotes]),
                      "modelVersion": model.version, "inputTs": iso_ms(last.ts),
                      "inputEpochMs": last.ts, "lastClose": last.close}


class PredictResource:
    """`POST /predict`: predict from explicit closes, one input or a batch."""

    OPENAPI = {"post": op(f"Predict from explicit closes: one input, or a batch of up to "
                          f"{MAX_BATCH}", {"oneOf": [PREDICTION_ONE, PREDICTION_BATCH]},
                          body={"oneOf": [PREDICT_ONE, PREDICT_BATCH]}, errors=(400, 404, 413))}

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_json(req)
        if not isinstance(body, dict) or not isinstance(body.get("symbol"), str):
            raise falcon.HTTPBadRequest(title="Invalid body",
                                        description='expected {"symbol": ..., "closes": [...]} '
                                                    'or {"symbol": ..., "inputs": [...]}')
        unknown = sorted(set(body) - {"symbol", "closes", "ts", "inputs"})
        if unknown or ("closes" in body) == ("inputs" in body):
            raise falcon.HTTPBadRequest(
                title="Invalid body",
                description="give exactly one of 'closes' and 'inputs'"
                            + (f"; unknown keys {unknown}" if unknown else ""))
        symbol = body["symbol"]
        model = _model_or_404(self.registry, symbol)
        if "closes" in body:
            closes = _closes(body["closes"], "closes", model)
            resp.media = {"symbol": symbol, "prediction": _finite(model.predict(closes), "closes"),
                          "modelVersion": model.version, "inputTs": _ts(body.get("ts"), "ts"),
                          "lastClose": closes[-1]}
            return
        inputs = body["inputs"]
        if not isinstance(inputs, list) or not 1 <= len(inputs) <= MAX_BATCH:
            raise falcon.HTTPBadRequest(title="Invalid body",
                                        description=f"inputs must be a list of 1..{MAX_BATCH}")
        rows, stamps = [], []
        for i, item in enumerate(inputs):
            if not isinstance(item, dict) or set(item) - {"closes", "ts"}:
                raise falcon.HTTPBadRequest(title="Invalid body",
                                            description=f'inputs[{i}] must be {{"closes", "ts"?}}')
            rows.append(_closes(item.get("closes"), f"inputs[{i}].closes", model))
            stamps.append(_ts(item.get("ts"), f"inputs[{i}].ts"))
        predictions = model.predict_many(np.array(rows))
        for i, p in enumerate(predictions):
            _finite(float(p), f"inputs[{i}].closes")
        resp.media = {"symbol": symbol, "modelVersion": model.version,
                      "predictions": [{"prediction": float(p), "inputTs": ts}
                                      for p, ts in zip(predictions, stamps, strict=True)]}


class ModelResource:
    """`GET /models/{symbol}`: what a client needs to build inputs (window, version)."""

    OPENAPI = {"get": op("The symbol's current model: version, window, inputs needed, training "
                         "data", MODEL, errors=(404,))}

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    def on_get(self, req: falcon.Request, resp: falcon.Response, symbol: str) -> None:
        model = _model_or_404(self.registry, symbol)
        resp.media = {"symbol": symbol, "version": model.version, "window": model.window,
                      "inputsNeeded": model.inputs_needed, "trainedAt": model.trained_at,
                      "data": model.data or {}}


def create_app(config: ServiceConfig, store: QuoteStore,
               registry: ModelRegistry | None = None) -> falcon.App:
    """The prediction app; `registry` defaults to one over `config.models_dir`."""
    if registry is None:
        if config.models_dir is None:
            raise ValueError("the prediction service needs ACCESSD_MODELS_DIR")
        registry = ModelRegistry(config.models_dir, config.model_check_interval)
    models_dir = registry.models_dir

    def models_check() -> str:
        # Without its artefact directory the service can answer nothing useful.
        if not Path(models_dir).is_dir():
            raise RuntimeError(f"models directory {models_dir} is missing")
        return "available"

    return make_app("prediction", config, store, [
        ("/predict/{symbol}", PredictSymbolResource(store, registry)),
        ("/predict", PredictResource(registry)),
        ("/models/{symbol}", ModelResource(registry)),
        ("/models", ModelsList(registry)),
        ("/models/{symbol}/metrics", ModelMetrics(registry)),
        ("/predictions/{symbol}/recent", RecentPredictions(store, registry)),
    ], health_checks={"models": models_check})


def get_app() -> falcon.App:
    """Entry point for gunicorn: `gunicorn 'services.prediction:get_app()'`."""
    return app_from_env(create_app)
