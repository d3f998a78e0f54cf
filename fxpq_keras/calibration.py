"""Calibration: what the float model does on unlabeled data (ranges, shapes, teacher outputs).

Computed once per model and dataset and shared by Policy.uniform (which builds policies from it:
calibration sits below policy and never imports it), the FxP-QNet search and the
reports, so the float model is never run twice on the same data.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._tf import keras
from .formats import frac_for_range
from .keras_model import (
    PASS_THROUGH,
    WEIGHTED,
    CNode,
    align_channel_ranges,
    alignable,
    build_float_model,
    canonicalize,
    channels,
)
from .stock_layers import FIXED_OUTPUT_FORMATS, STOCK_KINDS


class CalibrationDataError(ValueError):
    """Calibration data that cannot be used (empty, NaN/inf, complex, wrong shape)."""


class CalibrationRangeWarning(UserWarning):
    """A calibration range no format can hold: everything saturates, or everything rounds to 0."""


def calibration_values(x: Any) -> np.ndarray:
    """x as float32 when every value is a finite real number; else a CalibrationDataError naming the
    first bad sample in the caller's numbering (call it before taking any subset)."""
    x = np.asarray(x)
    if np.iscomplexobj(x):
        raise CalibrationDataError("calibration data is complex; fxpq needs real values (the imaginary "
                                   "part would be dropped)")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise CalibrationDataError(f"calibration data must be numeric, got dtype {x.dtype}")
    if x.size == 0 or x.ndim == 0 or x.shape[0] == 0:
        raise CalibrationDataError("calibration data is empty")
    with np.errstate(over="ignore"):
        x = x.astype(np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        raise CalibrationDataError(f"calibration data holds {int(bad.sum())} NaN/inf values or values beyond "
                                   f"float32's range (first at sample {int(np.argwhere(bad)[0][0])})")
    return x


def check_calibration_data(x: Any, input_shape: tuple[int, ...]) -> np.ndarray:
    x = calibration_values(x)
    if tuple(x.shape[1:]) != tuple(input_shape):
        raise CalibrationDataError(f"calibration data has sample shape {tuple(x.shape[1:])}, "
                                   f"the model expects {tuple(input_shape)}")
    return x


def warn_degenerate_ranges(max_abs: dict[str, float], input_name: str) -> None:
    """One warning naming the ranges that even a 16-bit format at frac -32..32 cannot hold: from
    2^47 up every value saturates, below 2^-33 every value rounds to 0 (the network computes nothing)."""
    import warnings

    problems = []
    for name, m in max_abs.items():
        what = "input" if name == input_name else f"layer '{name}' output"
        if m >= 2.0**47:
            problems.append(f"{what} |x| up to {m:.3g} (beyond frac -32 at 16 bits: values will saturate)")
        elif 0 < m < 2.0**-33:
            problems.append(f"{what} |x| only up to {m:.3g} (below frac 32's step: values will round to 0)")
    if problems:
        warnings.warn("calibration ranges no fixed-point format can hold: " + "; ".join(problems)
                      + ". Scale the data (or the model) to a sane range.", CalibrationRangeWarning, stacklevel=3)


def unsigned_outputs(cnodes: list[CNode], input_nonneg: bool) -> dict[str, bool]:
    """Which layer outputs are non-negative by construction (ReLU, pools of non-negative data)."""
    nonneg: dict[str, bool] = {}
    for n in cnodes:
        if n.kind == "input":
            nonneg[n.name] = input_nonneg
        elif n.kind in WEIGHTED:
            nonneg[n.name] = n.config["activation"] in ("relu", "relu6")
        elif n.kind == "relu":
            nonneg[n.name] = True
        elif n.kind in ("add", "concat"):
            nonneg[n.name] = all(nonneg[i] for i in n.inputs)
        elif n.kind == "softmax":
            nonneg[n.name] = True
        elif n.kind in STOCK_KINDS and n.kind not in PASS_THROUGH:
            fixed = FIXED_OUTPUT_FORMATS.get(n.kind)
            nonneg[n.name] = fixed is not None and not fixed[2]
        else:
            nonneg[n.name] = nonneg[n.inputs[0]]
    for name in stock_read_producers(cnodes):  # no stock int8 kernel reads our uint8 storage
        nonneg[name] = False
    return nonneg


def stock_read_producers(cnodes: list[CNode]) -> set[str]:
    """Layers (or the input) not themselves stock ops whose output a stock op reads, directly or
    through layers that keep the format (reshape, flatten, zero padding, upsampling)."""
    by_name = {n.name: n for n in cnodes}
    out: set[str] = set()
    for n in cnodes:
        if n.kind not in STOCK_KINDS:
            continue
        todo = list(n.inputs)
        while todo:
            p = by_name[todo.pop()]
            if p.kind in PASS_THROUGH and p.kind != "input":
                todo.extend(p.inputs)
            elif p.kind not in STOCK_KINDS:
                out.add(p.name)
    return out


class Calibration:
    """The canonical float model and its statistics on calibration data."""

    def __init__(self, model: keras.Model, calibration_data: Any, batch_size: int = 256, *,
                 align_ranges: bool = False) -> None:
        self.source_model = model
        self.cnodes = canonicalize(model)
        self.float_model = build_float_model(self.cnodes)
        self.x = check_calibration_data(calibration_data, self.float_model.input_shape[1:])
        # range alignment (keras_model.align_channel_ranges): the same function, each channel's range
        # filling its power-of-two format; {producer: per-channel scales}, carried by every Policy made here
        self.channel_scales: dict[str, tuple[float, ...]] = {}
        producers = list(alignable(self.cnodes)) if align_ranges else []
        if producers:
            probe = keras.Model(self.float_model.input, [self.float_model.get_layer(n).output for n in producers])
            outs = probe.predict(self.x, batch_size=batch_size, verbose=0)
            outs = outs if isinstance(outs, list) else [outs]
            channel_max = {n: np.abs(o).reshape(-1, o.shape[-1]).max(axis=0) for n, o in zip(producers, outs)}
            self.channel_scales = align_channel_ranges(self.cnodes, channel_max)
            if self.channel_scales:
                self.float_model = build_float_model(self.cnodes)
        names = [n.name for n in self.cnodes if n.kind != "input"]
        probe = keras.Model(self.float_model.input, [self.float_model.get_layer(n).output for n in names])
        outs = probe.predict(self.x, batch_size=batch_size, verbose=0)
        outs = outs if isinstance(outs, list) else [outs]
        self.shapes: dict[str, tuple[int, ...]] = {self.cnodes[0].name: tuple(self.x.shape[1:])}
        self.max_abs: dict[str, float] = {self.cnodes[0].name: float(np.abs(self.x).max())}
        for name, out in zip(names, outs):
            self.shapes[name] = tuple(out.shape[1:])
            self.max_abs[name] = float(np.abs(out).max()) if out.size else 0.0
        warn_degenerate_ranges(self.max_abs, self.cnodes[0].name)
        self.teacher = np.asarray(outs[-1], dtype=np.float32)  # float model's outputs: the labels
        self.nonneg = unsigned_outputs(self.cnodes, bool(self.x.min() >= 0))

    @property
    def input_name(self) -> str:
        return self.cnodes[0].name

    def node(self, name: str) -> CNode:
        return next(n for n in self.cnodes if n.name == name)

    def weight_max_abs(self, node: CNode, per_channel: bool) -> float | np.ndarray:
        """max |weight| of a layer, or one per output channel (depthwise: channels x multiplier)."""
        k = np.abs(node.kernel)
        if per_channel:
            return k.reshape(-1, channels(self.cnodes, node.name)).max(axis=0)
        return float(k.max())

    def weight_frac(self, node: CNode, bits: int, per_channel: bool) -> int | tuple[int, ...]:
        r = self.weight_max_abs(node, per_channel)
        if per_channel:
            return tuple(frac_for_range(float(m), bits, True) for m in r)
        return frac_for_range(r, bits, True)

    def activation_frac(self, name: str, bits: int) -> int:
        return frac_for_range(self.max_abs[name], bits, not self.nonneg[name])
