"""The model: training, evaluation, versioned artefacts, hot reload (`accessd model`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from services import model as m
from services.model import Model, ModelError, ModelRegistry, errors, load_current, publish, train
from tests.services.service_fixtures import SYMBOL, seed


def ar_series(n: int, phi: float = 0.6, seed: int = 3) -> np.ndarray:
    """Closes whose log returns follow AR(1): a signal a ridge on past returns can learn."""
    rng = np.random.default_rng(seed)
    r = np.zeros(n)
    for i in range(1, n):
        r[i] = phi * r[i - 1] + rng.normal(0, 0.002)
    return 100 * np.exp(np.cumsum(r))


def test_learns_a_real_signal_and_beats_naive():
    model, metrics = train("X", ar_series(3000), window=5)
    assert metrics["model"]["rmse"] < 0.9 * metrics["naive"]["rmse"]
    # Features are oldest first: the most recent return carries the signal.
    assert model.coef[-1] == max(model.coef, key=abs)


def test_random_walk_is_about_as_good_as_naive():
    rng = np.random.default_rng(1)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, 5000)))
    _, metrics = train("X", closes, window=10)
    assert metrics["model"]["mae"] == pytest.approx(metrics["naive"]["mae"], rel=0.05)


def test_evaluation_uses_only_the_held_out_tail():
    closes = ar_series(1000)
    model, metrics = train("X", closes, window=4, test_fraction=0.25)
    rows, targets = m.windows(closes, 4)
    n_test = metrics["testSamples"]
    assert n_test == int(len(rows) * 0.25)
    assert metrics["model"] == pytest.approx(errors(targets[-n_test:],
                                                    model.predict_many(rows[-n_test:])))
    # Changing the test tail changes nothing in the fitted model.
    altered = closes.copy()
    altered[-n_test:] *= 1.5
    assert train("X", altered, window=4, test_fraction=0.25)[0].coef == model.coef


def test_errors_metrics():
    e = errors(np.array([100.0, 200.0]), np.array([110.0, 190.0]))
    assert e == pytest.approx({"mae": 10.0, "rmse": 10.0, "mape": 7.5})


def test_too_little_data_and_bad_inputs():
    with pytest.raises(ModelError, match="too little data"):
        train("X", np.linspace(1, 2, 30), window=10)
    with pytest.raises(ModelError):
        train("X", np.array([1.0, -1.0] * 100), window=3)
    model, _ = train("X", ar_series(500), window=3)
    with pytest.raises(ModelError):
        model.predict([1.0, 2.0])


def test_json_round_trip_and_validation():
    model, _ = train("X", ar_series(500), window=3, version="v9")
    again = Model.from_json(json.loads(json.dumps(model.to_json())))
    assert again == model
    assert again.predict([1.0, 1.01, 1.02, 1.03]) == model.predict([1.0, 1.01, 1.02, 1.03])
    for broken in ({}, {**model.to_json(), "coef": [1.0]}, {**model.to_json(), "format": 99},
                   {**model.to_json(), "featureStd": [0.0, 1.0, 1.0]}):
        with pytest.raises(ModelError):
            Model.from_json(broken)


def test_publish_versions_and_the_current_pointer(tmp_path: Path):
    model, metrics = train(SYMBOL, ar_series(500), window=3)
    assert publish(tmp_path, model, metrics) == "v1"
    assert publish(tmp_path, model, metrics) == "v2"
    d = tmp_path / SYMBOL
    assert (d / "current").read_text() == "v2\n"
    assert sorted(p.name for p in d.iterdir()) == ["current", "v1", "v2"]   # no temporaries
    assert json.loads((d / "v2" / "metrics.json").read_text())["version"] == "v2"
    assert load_current(tmp_path, SYMBOL).version == "v2"
    assert load_current(tmp_path, "OTHER") is None


def test_publish_skips_a_number_taken_meanwhile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    model, metrics = train(SYMBOL, ar_series(500), window=3)
    publish(tmp_path, model, metrics)
    # Another trainer takes v2 between our listing and our rename.
    real = m.versions
    monkeypatch.setattr(m, "versions", lambda d, s: [1])
    (tmp_path / SYMBOL / "v2").mkdir()
    (tmp_path / SYMBOL / "v2" / "model.json").write_text("{}")
    assert publish(tmp_path, model, metrics) == "v3"
    monkeypatch.setattr(m, "versions", real)


def test_registry_reloads_on_a_new_pointer_and_keeps_the_last_good(tmp_path: Path):
    model, metrics = train(SYMBOL, ar_series(500), window=3)
    reg = ModelRegistry(tmp_path)
    assert reg.get(SYMBOL) is None
    publish(tmp_path, model, metrics)
    assert reg.get(SYMBOL).version == "v1"
    publish(tmp_path, train(SYMBOL, ar_series(500), window=4)[0], metrics)
    assert reg.get(SYMBOL).version == "v2" and reg.get(SYMBOL).window == 4
    # A broken v3: the registry goes on serving v2.
    (tmp_path / SYMBOL / "v3").mkdir()
    (tmp_path / SYMBOL / "v3" / "model.json").write_text("{not json")
    tmp = tmp_path / SYMBOL / "ptr"
    tmp.write_text("v3\n")
    os.replace(tmp, tmp_path / SYMBOL / "current")
    assert reg.get(SYMBOL).version == "v2"
    # Unusable symbol names have no model (and never reach the file system).
    assert reg.get("../etc") is None and reg.get(".hidden") is None


def test_registry_without_a_good_version_raises(tmp_path: Path):
    (tmp_path / SYMBOL).mkdir()
    (tmp_path / SYMBOL / "current").write_text("garbage\n")
    with pytest.raises(ModelError):
        ModelRegistry(tmp_path).get(SYMBOL)


def test_train_command(tmp_path: Path, capsys: pytest.CaptureFixture):
    url = f"sqlite://{tmp_path / 'q.db'}"
    seed(url, days=3)
    models = tmp_path / "models"
    args = ["train", "--symbol", SYMBOL, "--store", url, "--models-dir", str(models)]
    assert m.main(args) == 0
    out = capsys.readouterr().out
    assert "JPM v1: ridge on the last 10 log returns" in out
    assert "model  MAE" in out and "naive  MAE" in out
    assert f"published {models / SYMBOL / 'v1'} (current -> v1)" in out
    assert m.main([*args, "--window", "3", "--to", "2026-01-05T00:00:00Z"]) == 0
    assert load_current(models, SYMBOL).window == 3
    assert load_current(models, SYMBOL).data["to"] == "2026-01-02T20:59:00.000Z"
    assert m.main([*args[:2], "NOPE", *args[3:]]) == 1
    assert m.main([*args, "--from", "garbage"]) == 2
    assert m.main(["train", "--symbol", SYMBOL, "--store", f"sqlite://{tmp_path}/no/q.db",
                   "--models-dir", str(models)]) == 3


# -- on the sample quotes (`accessd data synth`) ------------------------------------------------
def sample(days: int = 20, seed: int = 1, **kw) -> tuple[np.ndarray, np.ndarray]:
    from datetime import date

    from services.data import SynthParams, synth_days

    qs = [q for day in synth_days(SynthParams("JPM", date(2026, 1, 2), days, seed=seed, **kw))
          for q in day]
    return np.array([q.close for q in qs]), np.array([q.ts for q in qs], dtype=np.int64)


@pytest.mark.parametrize("seed", [1, 2])
def test_beats_naive_on_the_sample_quotes_by_a_margin_beyond_noise(seed: int):
    closes, ts = sample(seed=seed)
    model, metrics = train("JPM", closes, ts=ts)
    v = metrics["versusNaive"]
    assert v["maeRatio"] < 0.985 and v["rmseRatio"] < 0.99
    assert v["maeDiff"] < -3 * v["maeDiffSe"]
    assert "better than naive" in m.versus_line(v)
    # The structure is the bid-ask bounce: the last return carries it, with a negative sign.
    assert model.coef[-1] < 0 and model.coef[-1] == max(model.coef, key=abs)


@pytest.mark.parametrize("seed", [1, 2])
def test_on_the_pure_random_walk_the_model_equals_naive_within_noise(seed: int):
    closes, ts = sample(seed=seed, random_walk=True)
    _, metrics = train("JPM", closes, ts=ts)
    v = metrics["versusNaive"]
    assert abs(v["maeRatio"] - 1) < m.NEGLIGIBLE and abs(v["rmseRatio"] - 1) < m.NEGLIGIBLE
    assert "equal to naive" in m.versus_line(v)


def test_training_never_sees_the_held_out_slice():
    closes, ts = sample()
    model, metrics = train("JPM", closes, ts=ts)
    n_train, n_test = m.split(len(closes), model.window, 0.2)
    first_held_out = n_train + model.window + 1
    assert metrics["testSamples"] == n_test == len(closes) - first_held_out
    assert model.data["testFromMs"] == ts[first_held_out] == metrics["testFromMs"]
    # The training matrix (closes i .. i+window, target close i+window+1, for i < n_train)
    # ends right before the first held-out close.
    rows, targets = m.windows(closes, model.window)
    assert np.array_equal(rows[n_train - 1],
                          closes[first_held_out - 2 - model.window:first_held_out - 1])
    assert targets[n_train - 1] == closes[first_held_out - 1]
    # Replace every held-out close by noise: the fitted model is the same to the bit, so the
    # held-out error cannot come from the held-out data; and its bounce is gone from the tail,
    # where the model now does worse.
    garbled = closes.copy()
    rng = np.random.default_rng(9)
    garbled[first_held_out:] = closes[first_held_out:] * np.exp(rng.normal(0, 0.01, n_test))
    model2, metrics2 = train("JPM", garbled, ts=ts)
    assert (model2.coef, model2.intercept, model2.alpha) == (model.coef, model.intercept,
                                                             model.alpha)
    assert metrics2["model"] != metrics["model"]
    # And changing one close just before the held-out slice does change the fit.
    nudged = closes.copy()
    nudged[first_held_out - 1] *= 1.01
    assert train("JPM", nudged, ts=ts)[0].coef != model.coef
