"""Calibration: what the float model does on unlabeled data (ranges, shapes, teacher outputs).

Computed once per model and dataset and shared by Policy.uniform (which builds policies from it:
calibration sits below policy and never imports it), the FxP-QNet search and the
reports, so the float model is never run twice on the same data.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._tf import keras, tf
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


# a generator or dataset that yields more samples than this is taken for an endless one
MAX_STREAMED_SAMPLES = 1_000_000


def _is_stream(data: Any) -> bool:
    """A source of batches or samples rather than an array: tf.data, PyDataset/Sequence, generator."""
    if isinstance(data, (np.ndarray, list, tuple, str, bytes, dict)) or np.isscalar(data):
        return False
    if hasattr(data, "__array__") and not hasattr(data, "element_spec"):  # tf.Tensor, array-likes
        return False
    return (hasattr(data, "element_spec") or hasattr(data, "num_batches") or hasattr(data, "__next__")
            or (hasattr(data, "__getitem__") and hasattr(data, "__len__")) or hasattr(data, "__iter__"))


def _batches(data: Any) -> Any:
    """The elements of a stream in order: a Keras PyDataset / Sequence is indexed, the rest iterated."""
    if hasattr(data, "element_spec"):  # tf.data.Dataset
        if int(data.cardinality()) == int(tf.data.INFINITE_CARDINALITY):
            raise CalibrationDataError("the calibration dataset is infinite (it repeats): pass "
                                       "dataset.take(n) with a finite n")
        return data.as_numpy_iterator()
    if hasattr(data, "__getitem__") and not hasattr(data, "__next__"):
        count = getattr(data, "num_batches", None)
        if count is None and hasattr(data, "__len__"):
            count = len(data)
        if count is None:
            raise CalibrationDataError(f"{type(data).__name__} gives no batch count: a PyDataset of unknown "
                                       "length cannot be read to its end (define num_batches or __len__)")
        return (data[i] for i in range(int(count)))
    return iter(data)


def collect_samples(data: Any, sample_shape: tuple[int, ...] | None = None) -> Any:
    """Numpy samples from the forms Keras users hold data in; arrays (and anything that is not a stream)
    are returned as given.

    Accepted: a numpy array (or anything `np.asarray` takes), a `tf.data.Dataset`, a Keras `PyDataset`
    or `keras.utils.Sequence`, a generator or iterator. Each element is the inputs `x` or a tuple
    `(x, y[, sample_weight])` whose `y` is ignored (self-distillation needs no labels). An element
    holds one batch (the Keras convention) or, when its shape is `sample_shape`, one sample, e.g. an
    unbatched `tf.data.Dataset`. Read to the end once, in order.
    """
    if not _is_stream(data):
        return data
    parts: list[np.ndarray] = []
    count = 0
    for i, element in enumerate(_batches(data)):
        if isinstance(element, dict):
            raise CalibrationDataError(f"calibration element {i} is a dict; fxpq needs the inputs x or (x, y) "
                                       "pairs (a model with one input)")
        x = element[0] if isinstance(element, (tuple, list)) else element
        if isinstance(x, (tuple, list, dict)):
            raise CalibrationDataError(f"calibration element {i} holds several inputs; fxpq models have one input")
        x = np.asarray(x)
        if sample_shape is not None and x.ndim == len(sample_shape):
            x = x[None]  # one sample per element
        elif x.ndim == 0:
            raise CalibrationDataError(f"calibration element {i} is a scalar, not a batch of samples")
        if parts and x.shape[1:] != parts[0].shape[1:]:
            raise CalibrationDataError(f"calibration element {i} has sample shape {x.shape[1:]}, element 0 "
                                       f"{parts[0].shape[1:]}")
        parts.append(x)
        count += len(x)
        if count > MAX_STREAMED_SAMPLES:
            raise CalibrationDataError(f"the calibration source yielded more than {MAX_STREAMED_SAMPLES:,} samples "
                                       "(an endless generator?): pass a finite one, e.g. itertools.islice")
    if not parts:
        raise CalibrationDataError("calibration data is empty (the dataset or generator yielded nothing)")
    return np.concatenate(parts)


def calibration_values(x: Any, sample_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """x as float32 when every value is a finite real number; else a CalibrationDataError naming the
    first bad sample in the caller's numbering (call it before taking any subset). Datasets,
    PyDatasets and generators are read into one array first (`collect_samples`)."""
    x = np.asarray(collect_samples(x, sample_shape))
    if np.iscomplexobj(x):
        raise CalibrationDataError("calibration data is complex; fxpq needs real values (the imaginary "
                                   "part would be dropped)")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise CalibrationDataError(f"calibration data must be numeric, got dtype {x.dtype} (fxpq takes a numpy "
                                   "array, a tf.data.Dataset, a Keras PyDataset or Sequence, or a generator)")
    if x.size == 0 or x.ndim == 0 or x.shape[0] == 0:
        raise CalibrationDataError("calibration data is empty")
    with np.errstate(over="ignore"):
        x = x.astype(np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        raise CalibrationDataError(f"calibration data holds {int(bad.sum())} NaN/inf values or values beyond "
                                   f"float32's range (first at sample {int(np.argwhere(bad)[0][0])})")
    return x


def _chunked_outputs(probe: keras.Model, x: np.ndarray, batch_size: int) -> Any:
    """`probe.predict(x, batch_size)`'s outputs (a list per chunk), one batch at a time: the same
    batches, so the same values, without every layer's outputs for every sample in memory at once."""
    for i in range(0, len(x), batch_size):
        outs = probe.predict(x[i:i + batch_size], batch_size=batch_size, verbose=0)
        yield outs if isinstance(outs, list) else [outs]


def check_calibration_data(x: Any, input_shape: tuple[int, ...]) -> np.ndarray:
    """calibration_values, and the samples must have the model's input shape."""
    x = calibration_values(x, tuple(input_shape))
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
    """The canonical float model and its statistics on calibration data.

    Example (data as for FxPQNet: an array, a tf.data.Dataset, a generator or a PyDataset)::

        calib = Calibration(model, x_calib)
        policy = Policy.uniform(calib, 8, None)   # reuses the float model's outputs
    """

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
            channel_max: dict[str, np.ndarray] = {}
            for outs in _chunked_outputs(probe, self.x, batch_size):
                for n, o in zip(producers, outs):
                    m = np.abs(o).reshape(-1, o.shape[-1]).max(axis=0)
                    channel_max[n] = np.maximum(channel_max[n], m) if n in channel_max else m
            self.channel_scales = align_channel_ranges(self.cnodes, channel_max)
            if self.channel_scales:
                self.float_model = build_float_model(self.cnodes)
        names = [n.name for n in self.cnodes if n.kind != "input"]
        probe = keras.Model(self.float_model.input, [self.float_model.get_layer(n).output for n in names])
        self.shapes: dict[str, tuple[int, ...]] = {self.cnodes[0].name: tuple(self.x.shape[1:])}
        self.max_abs: dict[str, float] = {self.cnodes[0].name: float(np.abs(self.x).max())}
        # (min, max) of every output (target builtin's asymmetric int8, formats.asymmetric_format)
        self.bounds: dict[str, tuple[float, float]] = {self.cnodes[0].name: (float(self.x.min()), float(self.x.max()))}
        teacher = []
        for outs in _chunked_outputs(probe, self.x, batch_size):
            for name, out in zip(names, outs):
                self.shapes[name] = tuple(out.shape[1:])
                lo, hi = (float(out.min()), float(out.max())) if out.size else (0.0, 0.0)
                old = self.bounds.get(name, (lo, hi))
                self.bounds[name] = (min(old[0], lo), max(old[1], hi))
                peak = max(-lo, hi, 0.0)  # max|x| from the same two reductions
                self.max_abs[name] = float(np.maximum(self.max_abs[name], peak)) if name in self.max_abs else peak
            teacher.append(outs[-1])
        warn_degenerate_ranges(self.max_abs, self.cnodes[0].name)
        self.teacher = np.concatenate(teacher).astype(np.float32)  # float model's outputs: the labels
        # sets a search derives from these samples (("x", ...): blended copies; ("teacher", ...): this float
        # model's outputs on them), kept here so that searches on it share one copy (search/engine.py)
        self.search_sets: dict[Any, Any] = {}
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
