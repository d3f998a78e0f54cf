"""What limits a stock TFLM file (target builtin), model by model: the int8 weights stock TFLM's
weighted ops take at most, the int8 activations, and two textbook remedies for both.

    FXPQ_BENCH_CACHE=/work/bench-cache .venv/bin/python bench/stock_limits.py [--models lenet5,...] [--samples 512]

Every column is the held-out top-1 flip rate against the float model (bench/models.py's test split;
the zoo's top-1 models) of the builtin fake-quant model (fxpq_keras.fakequant.quantize_model) under
one fixed policy, calibrated on the bench's 512 training-split samples, no search:

- W16A16: weights and activations at 16 bits, what the fxp target can store and stock TFLM cannot;
- W8A16: the builtin start, int8 weights (TFLite's per-channel float scales) and int16 activations,
  the widest policy stock TFLM runs: when it breaks the budget, no stock file holds it;
- W8A8: the uniform int8 builtin policy (bench/builtin.py builtin_uniform8, asymmetric int8);
- equalized W8A8: W8A8 on the float model after cross-layer equalization (Nagel et al. 2019, data
  free quantization; per channel between a weighted layer, its batch norm, a ReLU and the next weighted
  layer): the activation between is rescaled per channel, exactly in float, to the range of its
  largest channel before a depthwise layer (whose int8 weights are per channel, so free) or to
  sqrt(max|a| x max|w|) before a conv or dense (SmoothQuant's alpha 0.5);
- bias-corrected W8A16 / W8A8: each weighted layer's bias minus the mean output error of its int8
  weights on the calibration inputs (Nagel et al.'s empirical bias correction), so the float model
  changes and its flips are still counted against the original float model;
- W4A16 and bias-corrected W4A16: every weight at int4 (TFLite's scale max|w| / 7), without and with
  the same correction for int4's error.

The last three are measured, not built (docs/algorithm.md, "What limits a stock file"); a model's
held-out split is small (MobileNetV1: 400 crops, one flip 0.25 %), so a few tenths are noise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fxpq_keras  # noqa: E402,F401  (selects tf_keras before TensorFlow is imported)
from bench.builtin import builtin_uniform8  # noqa: E402
from bench.models import calibration_set, top1_models, trained  # noqa: E402
from fxpq_keras._tf import keras, tf  # noqa: E402
from fxpq_keras.calibration import Calibration  # noqa: E402
from fxpq_keras.fakequant import quantize_model  # noqa: E402
from fxpq_keras.policy import Policy  # noqa: E402
from fxpq_keras.search import SearchOptions, space  # noqa: E402

L = keras.layers
WEIGHTED = (L.Conv2D, L.DepthwiseConv2D, L.SeparableConv2D, L.Dense)
PER_CHANNEL_FIRST = (L.DepthwiseConv2D, L.SeparableConv2D)  # layers whose input meets per-channel weights


def _consumers(layer: Any) -> list[Any]:
    return [node.outbound_layer for node in layer._outbound_nodes]


def _plain_relu(layer: Any) -> bool:
    """A ReLU without cap, slope or threshold: positively homogeneous, so a per-channel scale passes."""
    return (isinstance(layer, L.ReLU) and layer.max_value is None and float(layer.negative_slope) == 0
            and float(layer.threshold) == 0)


def _pairs(model: keras.Model) -> list[tuple[Any, Any | None, Any, Any]]:
    """(first layer, its batch norm or None, next weighted layer, the tensor's producer) for every
    chain weighted -> [BN] -> [ReLU] -> weighted whose links have one consumer each."""
    out = []
    for first in model.layers:
        act = getattr(first, "activation", None)
        if not isinstance(first, WEIGHTED) or (act is not None and act.__name__ not in ("relu", "linear")):
            continue
        bn, relu, cur = None, act is not None and act.__name__ == "relu", first
        while len(_consumers(cur)) == 1:
            nxt = _consumers(cur)[0]
            if isinstance(nxt, L.BatchNormalization) and bn is None and not relu:
                bn, cur = nxt, nxt
            elif _plain_relu(nxt) and not relu:
                relu, cur = True, nxt
            else:
                if isinstance(nxt, WEIGHTED) and not (isinstance(nxt, L.Dense) and len(nxt.input_shape) != 2):
                    out.append((first, bn, nxt, cur))
                break
    return out


def _copy(model: keras.Model) -> keras.Model:
    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    return twin


def _input_channel_range(layer: Any) -> np.ndarray:
    """max|w| over everything but the input channel (axis -2 of a conv kernel, 0 of a dense one)."""
    w = np.abs(layer.get_weights()[0])
    return w.max(axis=(0, 1, 3)) if w.ndim == 4 else w.max(axis=1)


def equalized(model: keras.Model, x: np.ndarray) -> keras.Model:
    """The float model with every `_pairs` tensor rescaled per channel (float-exact; module docstring)."""
    twin = _copy(model)
    pairs = _pairs(twin)
    outs = keras.Model(twin.input, [p[3].output for p in pairs]).predict(x, verbose=0)
    for (first, bn, nxt, _), a in zip(pairs, outs if len(pairs) > 1 else [outs]):
        a = np.abs(a.reshape(-1, a.shape[-1])).max(axis=0).astype(np.float64)
        if isinstance(nxt, PER_CHANNEL_FIRST):
            s = a / max(a.max(), 1e-30)
        else:
            s = np.sqrt(a / np.maximum(_input_channel_range(nxt), 1e-30))
            s = s / max(s.max(), 1e-30)
        s = np.where(a > 0, np.maximum(s, 1e-3), 1.0)  # a dead channel keeps its scale
        if bn is not None:
            g, b, mean, var = bn.get_weights()
            bn.set_weights([g / s, b / s, mean, var])
        else:
            ws = first.get_weights()
            k = 1 if isinstance(first, L.SeparableConv2D) else 0  # the kernel that makes the output channel
            ws[k] = ws[k] / (s.reshape(ws[k].shape[2], ws[k].shape[3]) if ws[k].ndim == 4 and
                             isinstance(first, L.DepthwiseConv2D) else s)
            if first.use_bias:
                ws[-1] = ws[-1] / s
            first.set_weights(ws)
        ws = nxt.get_weights()
        ws[0] = ws[0] * (s[:, None] if ws[0].ndim == 2 else s[None, None, :, None])
        nxt.set_weights(ws)
    return twin


def _rounding_error(w: np.ndarray, axis: int | None, bits: int) -> np.ndarray:
    """Symmetric rounding error of w at `bits`, TFLite's scale max|w| / (2^(bits-1) - 1) per channel
    on `axis` (None: per tensor, the builtin rule for fully connected layers), round half up."""
    over = tuple(i for i in range(w.ndim) if i != axis)
    m = np.abs(w).max(axis=over, keepdims=True)
    step = np.where(m > 0, m / (2.0 ** (bits - 1) - 1), 1.0)
    return np.floor(w / step + 0.5) * step - w


def bias_corrected(model: keras.Model, x: np.ndarray, bits: int = 8) -> keras.Model:
    """The float model with each conv / depthwise / dense bias (or its batch norm's beta) lowered by
    the mean output error of its weights at `bits` (batch norm folded first) on the calibration inputs."""
    twin = _copy(model)
    for layer in twin.layers:
        if not isinstance(layer, WEIGHTED) or isinstance(layer, L.SeparableConv2D):
            continue
        nxt = _consumers(layer)
        bn = nxt[0] if len(nxt) == 1 and isinstance(nxt[0], L.BatchNormalization) else None
        if bn is None and not layer.use_bias:
            continue
        w = layer.get_weights()[0]
        depthwise = isinstance(layer, L.DepthwiseConv2D)
        flat = w.reshape(*w.shape[:2], -1) if depthwise else w
        gain = np.ones(flat.shape[-1], np.float32)
        if bn is not None:
            g, b, mean, var = bn.get_weights()
            gain = g / np.sqrt(var + bn.epsilon)
        axis = None if isinstance(layer, L.Dense) else flat.ndim - 1
        error = (_rounding_error(flat * gain, axis, bits) / np.where(gain == 0, 1, gain)).reshape(w.shape)
        inp = keras.Model(twin.input, layer.input).predict(x, verbose=0)
        if isinstance(layer, L.Dense):
            out = inp.reshape(-1, inp.shape[-1]) @ error
        else:
            conv = tf.nn.depthwise_conv2d if depthwise else tf.nn.conv2d
            out = conv(inp, error.astype(np.float32), [1, *layer.strides, 1], layer.padding.upper()).numpy()
        shift = out.reshape(-1, out.shape[-1]).mean(axis=0)
        if bn is not None:
            bn.set_weights([g, b - shift * gain, mean, var])
        else:
            ws = layer.get_weights()
            ws[-1] = ws[-1] - shift
            layer.set_weights(ws)
    return twin


def weights_at(policy: Policy, bits: int) -> Policy:
    """The policy with every weight data structure at `bits`, its frac moved by the width change (so
    TFLite's scale max|w| / (2^(bits-1) - 1) at the range-derived frac)."""
    out = policy.copy()
    for layer, ds, d in policy.data_structures():
        if ds == "weights":
            move = bits - d.bits
            frac = tuple(f + move for f in d.frac) if isinstance(d.frac, tuple) else d.frac + move
            out.set(layer, ds, bits=bits, frac=frac)
    out.constrain_biases()
    return out


def flips(model: keras.Model, x_cal: np.ndarray, x: np.ndarray, teacher: np.ndarray, which: str) -> float:
    """Held-out flip rate of `model`'s builtin fake-quant under W16A16, W8A16, W4A16 or W8A8."""
    calib = Calibration(model, x_cal)
    start = space.start_policy(calib, SearchOptions(target="builtin", per_channel=True))
    policy = {"W16A16": lambda: weights_at(start, 16), "W8A16": lambda: start, "W4A16": lambda: weights_at(start, 4),
              "W8A8": lambda: builtin_uniform8(calib)}[which]()
    out = quantize_model(calib, policy).predict(x, verbose=0)
    return float(np.mean(np.argmax(out, -1) != teacher))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="", help="comma-separated top-1 zoo models (default: all of them)")
    p.add_argument("--samples", type=int, default=512, help="calibration samples (training split)")
    args = p.parse_args(argv)
    names = top1_models(args.models)
    print("| model | held-out n | W16A16 | W8A16 (stock's widest) | W8A8 | equalized W8A8 | "
          "bias-corrected W8A16 | bias-corrected W8A8 | W4A16 | bias-corrected W4A16 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in names:
        model, data = trained(name)
        x_cal, _ = calibration_set(data, args.samples)
        x = data["x_test"].astype(np.float32)
        teacher = np.argmax(model.predict(x, verbose=0), -1)
        eq, bc = equalized(model, x_cal), bias_corrected(model, x_cal)
        cells = [flips(model, x_cal, x, teacher, w) for w in ("W16A16", "W8A16", "W8A8")]
        cells += [flips(eq, x_cal, x, teacher, "W8A8"), flips(bc, x_cal, x, teacher, "W8A16"),
                  flips(bc, x_cal, x, teacher, "W8A8"), flips(model, x_cal, x, teacher, "W4A16"),
                  flips(bias_corrected(model, x_cal, 4), x_cal, x, teacher, "W4A16")]
        print(f"| {name} | {len(x):,} | " + " | ".join(f"{c:.2%}" for c in cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
