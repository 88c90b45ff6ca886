"""`accessd pipeline retrain`: what the model it publishes says about its held-out quotes."""

from __future__ import annotations

from pathlib import Path

from services.model import load_current, split
from services.pipeline import ingest, retrain
from services.store import QuoteStore


def test_a_retrained_model_names_its_first_held_out_quote(sqlite_store: QuoteStore,
                                                            tmp_path: Path):
    # `accessd client compare` scores the held-out part only when the model names where it
    # starts (`testFromMs`); a retrain once published models without it, so after the
    # pipeline's first retrain the compare lost its "held out" figures.
    ingest(sqlite_store, "JPM", 390)
    ingest(sqlite_store, "JPM", 120)
    version, text = retrain(sqlite_store, tmp_path / "models", "JPM", window=10,
                            test_fraction=0.2)
    assert version == "v1", text
    quotes = list(sqlite_store.read_range("JPM"))
    n_train, n_test = split(len(quotes), 10, 0.2)
    model = load_current(tmp_path / "models", "JPM")
    assert model.data["testSamples"] == n_test
    first = quotes[n_train + 10 + 1]          # the first close no training sample reads
    assert model.data["testFromMs"] == first.ts
    assert len(quotes) - quotes.index(first) == n_test
