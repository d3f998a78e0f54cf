"""Which keras.applications models fxpq's front end takes, and the canonical kinds they become.

    PYTHONPATH=. .venv/bin/python scripts/applications_coverage.py [MODEL ...]

For each model (random weights, 32x32x3 input) in tf_keras and Keras 3: canonicalize, build the
canonical float model, and print the node kinds and the largest difference of its logits from the
original model's on 4 random images, relative to the largest logit (float rounding only when every
fold is exact).
"""

from __future__ import annotations

import collections
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fxpq_keras._tf import keras as tf_keras  # noqa: E402
from fxpq_keras.keras_model import UnsupportedLayerError, build_float_model, canonicalize  # noqa: E402

SHAPE = (32, 32, 3)
KW = {"input_shape": SHAPE, "weights": None, "classes": 10, "classifier_activation": None}  # logits
MODELS = {
    "MobileNet(alpha=0.25)": lambda a: a.MobileNet(alpha=0.25, **KW),
    "MobileNetV2(alpha=0.35)": lambda a: a.MobileNetV2(alpha=0.35, **KW),
    "MobileNetV3Small": lambda a: a.MobileNetV3Small(**KW),
    "MobileNetV3Small(minimalistic)": lambda a: a.MobileNetV3Small(minimalistic=True, **KW),
    "MobileNetV3Large(minimalistic)": lambda a: a.MobileNetV3Large(minimalistic=True, **KW),
    "EfficientNetB0": lambda a: a.EfficientNetB0(**KW),
    "ResNet50": lambda a: a.ResNet50(**KW),
}


def main(names: list[str]) -> int:
    import keras as keras3

    x = np.random.default_rng(0).uniform(0, 255, (4,) + SHAPE).astype(np.float32)
    print("| flavour | model | result | canonical kinds (count) | max logit diff / max logit | seconds |")
    print("|---|---|---|---|---|---|")
    for flavour, k in (("tf_keras", tf_keras), ("Keras 3", keras3)):
        for name in names or list(MODELS):
            start = time.time()
            model = MODELS[name](k.applications)
            try:
                cnodes = canonicalize(model)
            except UnsupportedLayerError as exc:
                print(f"| {flavour} | {name} | refused: {str(exc).split('. Supported')[0]} | | | |")
                continue
            want = model.predict(x, verbose=0)
            diff = np.abs(build_float_model(cnodes).predict(x, verbose=0) - want).max() / np.abs(want).max()
            counts = collections.Counter(n.kind for n in cnodes)
            kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items()))
            print(f"| {flavour} | {name} | accepted | {kinds} | {diff:.1e} | {time.time() - start:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
