"""The search's results, pinned: a fixed set of searches on a small digits model whose every weight
comes from numpy (no training, so nothing but the search decides the result), compared with
tests/data/search_pins.json. A change that is meant to keep results (a refactoring, a faster
evaluation) must leave this file as it is; a change of the algorithm rewrites it on purpose
(`FXPQ_UPDATE_PINS=1 .venv/bin/python -m pytest tests/test_search_pins.py`) and says so in its commit.

The runs cover the phases (docs/algorithm.md "Phases, and where each lives") as bench/policies.py
does on the zoo: the default FxPQNet (its RAM-first passes included), the paper objective,
mechanism 2 off, RAM first with per-channel fracs, a memory target, no fast start without mechanism 3,
and the snr metric.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from fxpq_keras._tf import keras
from fxpq_keras.search import FxPQNet

PINS = Path(__file__).parent / "data" / "search_pins.json"
RUNS = {
    "default": {},
    "paper": {"objective": "paper"},
    "uniform only": {"layerwise": False},
    "ram first, per channel": {"per_channel": "auto", "ram_first": True},
    "memory target": {"memory_target": 3000},
    "no fast start, no mechanism 3": {"fast_start": False, "error_statistics_frac": False},
    "snr": {"metric": "snr", "max_accuracy_drop": 0.01},
}


@pytest.fixture(scope="module")
def digits() -> tuple[keras.Model, np.ndarray]:
    """A conv -> pool -> dense digit classifier: random conv filters, the dense layer a least-squares
    fit of one-hot labels on the pooled features (deterministic: numpy only)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    rng = np.random.default_rng(7)
    L = keras.layers
    features = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(12, 3, activation="relu", name="conv"),
                                 L.MaxPooling2D(2, name="pool"), L.Flatten(name="flat")])
    features.get_layer("conv").set_weights([rng.normal(0, 0.6, (3, 3, 1, 12)).astype(np.float32),
                                            rng.normal(0, 0.1, 12).astype(np.float32)])
    f = np.asarray(features(x[:1000], training=False), dtype=np.float64)
    f1 = np.concatenate([f, np.ones((len(f), 1))], 1)
    w = np.linalg.lstsq(f1, np.eye(10)[d.target[:1000]], rcond=None)[0].astype(np.float32)
    dense = L.Dense(10, name="out")
    model = keras.Sequential([*features.layers, dense])
    model.build((None, 8, 8, 1))
    dense.set_weights([w[:-1], w[-1]])
    return model, x[1000:1400]


def summary(model: keras.Model, x: np.ndarray, options: dict) -> dict:
    """What a search decided: every data structure's format, the evaluations it took, its message."""
    options = dict(options)
    r = FxPQNet(options.pop("max_accuracy_drop", 0.05), verbose=0, samples=400, max_bits=12, max_slowdown=None,
                **options).quantize(model, x)
    return {"policy": [f"{layer}.{ds} {'s' if d.signed else 'u'}{d.bits}.{d.frac}"
                       for layer, ds, d in r.policy.data_structures()],
            "evaluations": r.evaluations, "message": r.message}


def test_the_searches_results_are_pinned(digits: tuple[keras.Model, np.ndarray]) -> None:
    model, x = digits
    got = {name: summary(model, x, options) for name, options in RUNS.items()}
    if os.environ.get("FXPQ_UPDATE_PINS"):
        PINS.write_text(json.dumps(got, indent=1) + "\n")
    pinned = json.loads(PINS.read_text())
    for name in RUNS:
        assert got[name] == pinned[name], f"the {name!r} search's result changed (see this file's docstring)"
