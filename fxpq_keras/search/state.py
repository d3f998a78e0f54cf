"""What the search is asked for and what it has found: its options, a candidate step, the trajectory
and the state the callbacks read (fxpq_keras/search/adaptation.py runs the phases that change it)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from ..formats import ACTIVATION_SCALES, check_activation_bits
from ..policy import Policy
from .budget import Metrics

Key = tuple[str, str]  # (layer or "input", "weights" | "bias" | "output")
KINDS = ("input", "weights", "bias", "output")
CHANNELS = "weights/channels"  # _ranges key of a layer's per-channel weight ranges (per_channel "auto")


# the default speed cap of target fxp (SearchOptions.max_slowdown "auto", search/speed.py): never slower than
# TFLite int8 + CMSIS-NN by the estimate. It costs no byte on the zoo (it binds only where it must) and no
# second search where the budget alone holds it out of reach (docs/algorithm.md "Speed cap", "The decision")
MAX_SLOWDOWN: float | None = 1.0


@dataclass
class SearchOptions:
    """Everything that decides the search's result (same options + same seed = same policy).

    Example::

        options = SearchOptions(max_accuracy_drop=0.02, max_bits=8, per_channel=True)
        search = PrecisionSearch(model, x_calib, options=options)
        result = FxPQNet(0.02, max_bits=8, per_channel=True).quantize(model, x_calib)   # the same fields
    """

    max_accuracy_drop: float = 0.01  # the budget's limit: top-1 drop, or relative output MSE for metric snr
    # budget metric: top1 (agreement with the teacher's top-1), snr (output SNR against the teacher),
    # anomaly (an autoencoder's anomaly score), "module:function", a TaskMetric or a function
    # (teacher, student, inputs) -> per-sample loss (search/metric.py); auto = top1 for (batch,
    # classes >= 2) outputs, snr otherwise. With labels, top1 becomes the labeled accuracy drop
    metric: Any = "auto"
    # search even when the calibration set cannot resolve the budget (one flip alone would break it;
    # docs/algorithm.md, "Resolution"); otherwise PrecisionSearch raises UnresolvedBudgetError
    allow_unresolved: bool = False
    # what a step's gain is: "device" = the bytes the chip holds (packed weights, peak RAM at container
    # sizes, fxpq_keras.memory.DeviceModel), "paper" = the paper's bit count (weights + biases + activations)
    objective: str = "device"
    memory_target: int | None = None  # bytes of the objective: device flash + RAM, or paper total bits / 8
    # speed (device objective): the estimated Cortex-M4 instructions of the fxp file (fxpq_keras.instructions)
    # may not exceed the reference's on the same model times this (docs/algorithm.md, "Speed cap";
    # search/speed.py); None or 0 = no cap; "auto" (default) = MAX_SLOWDOWN above (1.0 for target fxp,
    # docs/algorithm.md "The decision"), target builtin's builtin_space.MAX_SLOWDOWN
    max_slowdown: float | str | None = "auto"
    # the cap's reference: "int8" = the model as a stock TFLite int8 file in TFLM with CMSIS-NN (what users
    # compare against), "uniform8" = the fxp file at uniform 8 bits in the fxpq kernels
    speed_reference: str = "int8"
    # the file the device objective plans RAM for: a float32 input quantized on the chip (export_tflite's
    # default) or an integer input (`export_tflite(..., float_input=False)`, what TFLite int8 files take)
    float_input: bool = True
    min_bits: int = 2
    max_bits: int = 16
    # weight fracs per output channel: False = per tensor, True = every weighted layer per channel,
    # "auto" = per layer, whichever of the two candidate sets the prediction-error statistic prefers
    # (not the default: on the zoo it saved bytes on three models, cost bytes on one, and took 1.4-2x the
    # evaluations; docs/algorithm.md, bench/per_channel.py)
    per_channel: bool | str = False
    data_structures: tuple[str, ...] | None = None  # kinds (input/weights/bias/output) or "layer/ds"
    frac_offsets: tuple[int, ...] = (0, 1, -1)  # candidate fracs around the range-derived one (weights, biases)
    # activations (and the input); deeper clipping (+2) was measured to generalize worse to unseen data
    activation_frac_offsets: tuple[int, ...] = (0, 1, -1)
    samples: int = 1024  # calibration samples used: all of them check the budget, the first half ranks steps
    seed: int = 0
    margin_sigma: float = 1.0  # the prediction must stay this many standard errors inside the budget
    # unseen-data correction: the lowest-margin `low_margin_quantile` of each set carries the weight
    # `low_margin_share` in the flip rate the budget uses (equal values: plain flip rate)
    low_margin_quantile: float = 0.05
    low_margin_share: float = 0.10
    # label-free augmentation: every top1 budget-check input is a calibration input with this share of
    # another one mixed in, labelled by the teacher (unseen data sits nearer the class boundaries than
    # training data); the validation copies that give the final prediction (both metrics) are blended
    # alike. 0 = the calibration inputs themselves with low-margin weighting, no validation copies
    blend: float = 0.15
    # device objective: lower the RAM peak's tied activations to one byte before anything else. The greedy
    # alone may spend the budget on weight bits before a peak group's turn comes; "auto": PrecisionSearch
    # runs the greedy, and FxPQNet also runs RAM first when that could lower the arena, keeping the result
    # with fewer device bytes (docs/algorithm.md, "Peak groups")
    ram_first: bool | str = "auto"
    fast_start: bool = True  # a cheap first pass: per-data-structure probe, then a joint jump
    # speed only, the same policy either way: a trial runs only the layers from the first one whose
    # format differs from the current policy's, on stored activations of the layers before it
    incremental: bool = True
    # range alignment (part of mechanism 1): before anything is measured, rescale each channel of a layer
    # output through ReLU so every channel fills the power-of-two range of its tensor (the inverse scale
    # goes into the next layer's weights: the same function in float; docs/algorithm.md). It trades the
    # next layer's weight precision for activation precision, which pays where activations must fit one
    # byte: "auto" = the model as given, plus a range-aligned RAM-first pass when FxPQNet runs RAM first
    align_ranges: bool | str = "auto"
    # the four mechanisms (docs/algorithm.md, mechanisms 1-4); switch one off to measure what it buys
    dynamic_fixed_point: bool = True
    layerwise: bool = True
    # the format space: "fxp" (any width, custom ops) or "builtin" (what stock TFLM runs: weights 8 or 4
    # bits, activations 16 or 8, search/builtin_space.py; export with target "builtin"; its speed cap
    # estimates TFLM's CMSIS-NN kernels and defaults to builtin_space.MAX_SLOWDOWN, 0 = off)
    target: str = "fxp"
    # target builtin's activation scales: "asymmetric" (TFLite-style min(max|a| / qmax, 2^-frac) from the
    # calibration ranges, builtin_space.float_scale_layers, issue 23; signed 8-bit ones asymmetric int8 over
    # the calibration [min, max], formats.asymmetric_format), "float" (the same, symmetric) or "pow2"
    # (2^-frac); fxp ignores it
    activation_scales: str = "asymmetric"
    error_statistics_frac: bool = True
    self_distillation: bool = True

    def __post_init__(self) -> None:
        # target builtin's speed cap is on unless asked off (0): CMSIS-NN's int4 and int16 kernels are
        # slower than its int8 ones (builtin_space.M4_PER_MAC), and stock-kernel speed is why one picks it
        if self.target == "builtin" and self.max_slowdown == "auto":
            from .builtin_space import MAX_SLOWDOWN as BUILTIN_MAX_SLOWDOWN

            self.max_slowdown = BUILTIN_MAX_SLOWDOWN
        elif self.max_slowdown == "auto":
            self.max_slowdown = MAX_SLOWDOWN

    def validate(self) -> None:
        from .metric import as_metric

        builtin = isinstance(self.metric, str) and self.metric in ("auto", "top1", "snr", "anomaly")
        if not builtin:
            as_metric(self.metric)  # a ValueError naming the problem (not importable, not callable)
        top = 1.0 if builtin else float("inf")  # a user metric's loss has its own scale
        if not isinstance(self.max_accuracy_drop, (int, float)) or not 0.0 < float(self.max_accuracy_drop) < top:
            raise ValueError(f"max_accuracy_drop must be in (0, {top:g}), got {self.max_accuracy_drop!r}")
        check_activation_bits(self.min_bits, "min_bits")
        check_activation_bits(self.max_bits, "max_bits")
        if self.min_bits > self.max_bits:
            raise ValueError(f"min_bits ({self.min_bits}) must not exceed max_bits ({self.max_bits})")
        if self.max_slowdown is not None and (isinstance(self.max_slowdown, bool) or
                                              not isinstance(self.max_slowdown, (int, float)) or
                                              not 0 <= float(self.max_slowdown) < float("inf")):
            raise ValueError(f"max_slowdown must be a number >= 0 (0 or None: no speed cap; 'auto': the default), "
                             f"got {self.max_slowdown!r}")
        if self.speed_reference not in ("int8", "uniform8"):
            raise ValueError(f"speed_reference must be int8 or uniform8, got {self.speed_reference!r}")
        if self.memory_target is not None and not self.memory_target > 0:
            raise ValueError(f"memory_target must be a positive number of bytes, got {self.memory_target!r}")
        if self.per_channel not in (True, False, "auto"):
            raise ValueError(f"per_channel must be True, False or 'auto', got {self.per_channel!r}")
        if self.objective not in ("device", "paper"):
            raise ValueError(f"objective must be device or paper, got {self.objective!r}")
        if self.align_ranges not in (True, False, "auto"):
            raise ValueError(f"align_ranges must be True, False or 'auto', got {self.align_ranges!r}")
        if self.ram_first not in (True, False, "auto"):
            raise ValueError(f"ram_first must be True, False or 'auto', got {self.ram_first!r}")
        if self.target not in ("fxp", "builtin"):
            raise ValueError(f"target must be fxp or builtin, got {self.target!r}")
        if self.activation_scales not in ACTIVATION_SCALES:
            raise ValueError(f"activation_scales must be one of {ACTIVATION_SCALES}, got {self.activation_scales!r}")
        if self.target == "builtin" and not self.layerwise:
            raise ValueError("target builtin searches per layer (layerwise=False has no builtin width sequence)")
        if not 0 <= float(self.margin_sigma) <= 5:
            raise ValueError(f"margin_sigma must be in 0..5, got {self.margin_sigma!r}")
        if not 0.0 <= float(self.low_margin_quantile) < 1.0 or not 0.0 <= float(self.low_margin_share) < 1.0:
            raise ValueError(f"low_margin_quantile and low_margin_share must be in [0, 1), got "
                             f"{self.low_margin_quantile!r}, {self.low_margin_share!r}")
        if not 0.0 <= float(self.blend) < 0.5:
            raise ValueError(f"blend must be in [0, 0.5), got {self.blend!r}")
        if int(self.samples) < 2:
            raise ValueError(f"samples must be at least 2, got {self.samples}")
        for name in ("frac_offsets", "activation_frac_offsets"):
            offsets = getattr(self, name)
            if not offsets or 0 not in offsets:
                raise ValueError(f"{name} must contain 0 (the range-derived frac), got {offsets}")
        for item in self.data_structures or ():
            if item not in KINDS and "/" not in item:
                raise ValueError(f"data_structures entries are kinds {KINDS} or 'layer/ds' names, got {item!r}")

    def to_dict(self) -> dict[str, Any]:
        from .metric import metric_name

        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["metric"] = metric_name(self.metric)  # JSON-able for a user's metric too
        return out


@dataclass
class Candidate:
    """One bit less for one data structure, with the frac the prediction-error statistic chose; or
    a group: activations that tie on the RAM peak, lowered to one byte together (`also`)."""

    key: Key
    bits: int
    frac: int | tuple[int, ...] | None
    metrics: Metrics | None  # None: parked (saved nothing when scored), not evaluated
    version: int
    score: float = 0.0
    also: tuple[tuple[Key, int, Any], ...] = ()  # a group's other members: (key, bits, frac)

    @property
    def changes(self) -> list[tuple[Key, int, Any]]:
        return [(self.key, self.bits, self.frac), *self.also]

    @property
    def name(self) -> str:
        return "+".join("/".join(k) for k, _, _ in self.changes)


@dataclass
class Step:
    """One entry of the search trajectory (accepted step, freeze, or phase marker)."""

    action: str  # start | jump | lower | freeze | target | done
    key: str
    bits: int
    evaluations: int
    memory_bits: int
    compression: float
    agreement: float  # decision set
    check_agreement: float | None
    kl: float
    seconds: float
    loss: float = float("nan")  # the budget metric's loss, decision set (snr and task metrics plot this)
    check_loss: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class SearchState:
    """What the search has found so far (the callbacks and the progress bar read it)."""

    policy: Policy
    metrics: Metrics
    check: Metrics
    trajectory: list[Step] = field(default_factory=list)
    frozen: set[Key] = field(default_factory=set)
    done: bool = False
    memory_target_met: bool | None = None
    budget_met: bool | None = None  # set when done: the final policy's prediction is inside the budget
    message: str = ""


# blended copies of every calibration input in the validation set: it is evaluated a few times per
# search (the walk-back's bisection, the uniform floor), so it can be larger than the check set, and a
# smaller standard error there is head-room the budget does not have to keep
VALIDATION_COPIES = 4
# the device search's tail ranks steps by (bytes saved, paper bits saved): a byte outweighs any bits
TAIL_WEIGHT = 1 << 40


def class_labels(labels: Any, classes: int | None) -> np.ndarray:
    """Labels as int64 class indices: integers (integral floats too), within 0..classes-1 when the
    outputs are class scores. Fractional, complex, NaN or out-of-range labels are an error, never
    truncated (`astype(int64)` turned 1.7 into 1)."""
    y = np.asarray(labels)
    if y.dtype.kind not in "iuf" or (y.dtype.kind == "f" and not np.all(np.isfinite(y) & (y == np.floor(y)))):
        bad = y.ravel()[0] if y.dtype.kind not in "iuf" else y[~(np.isfinite(y) & (y == np.floor(y)))].ravel()[0]
        bad = bad.item() if isinstance(bad, np.generic) else bad
        raise ValueError(f"labels must be integer class indices, got {y.dtype.name} values such as {bad!r}")
    y = y.astype(np.int64).ravel()
    if classes is not None and y.size and (y.min() < 0 or y.max() >= classes):
        bad = int(y[(y < 0) | (y >= classes)][0])
        raise ValueError(f"label {bad} is not a class of this {classes}-class model "
                         f"(labels must be in 0..{classes - 1})")
    return y



def model_sample_shape(model: Any) -> tuple[int, ...] | None:
    """One input sample's shape (None when the model does not say): tells a dataset's samples from batches."""
    try:
        shape = model.input_shape
    except (AttributeError, ValueError):
        return None
    if isinstance(shape, list) or shape is None or any(d is None for d in shape[1:]):
        return None
    return tuple(int(d) for d in shape[1:])


def progress_verbosity() -> int:
    """Keras verbosity for progress output: a live bar on a terminal, one line per epoch/finish
    otherwise (a non-TTY stdout, e.g. a CI log or a pipe, would get one line per update)."""
    isatty = getattr(sys.stdout, "isatty", None)
    return 1 if callable(isatty) and isatty() else 2


def resolution_weights(n: int, options: SearchOptions, labeled: bool = False) -> np.ndarray:
    """The weights of a top-1 check set of `n` samples as the search builds it (blended copies:
    uniform; the calibration samples: margin weights, whose effective size depends on n only), so the
    resolution rule can be applied before a model is trained (the callback)."""
    from .budget import margin_weights

    if options.self_distillation and options.blend > 0 and n > 1 and not labeled:
        return np.ones(n)
    return margin_weights(np.arange(n, dtype=np.float64), options.low_margin_quantile, options.low_margin_share)


def subset(n: int, samples: int, seed: int) -> np.ndarray:
    """A seeded random subset of indices (all of them, shuffled, when there are fewer)."""
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[:samples]) if samples < n else order


__all__ = ["CHANNELS", "KINDS", "TAIL_WEIGHT", "VALIDATION_COPIES", "Candidate", "Key", "SearchOptions", "SearchState",
           "Step", "class_labels", "model_sample_shape", "progress_verbosity", "resolution_weights", "subset"]
