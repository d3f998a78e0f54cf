"""FxP-QNet's gradual, layer-wise precision adaptation (docs/algorithm.md says it exactly).

`PrecisionSearch` owns one fake-quant model (built once) and a Policy. Every data structure starts
at `max_bits`; the search repeatedly lowers by one bit the data structure whose step buys the most
memory per unit of added prediction error (KL against the teacher), re-choosing its frac among
candidates around the range-derived one by that same statistic; a step that would break the
accuracy budget freezes its data structure. A format change is a variable write, never a rebuild.

The four mechanisms of FxP-QNet (docs/algorithm.md, mechanisms 1-4) are switches of `SearchOptions`.
"""

from __future__ import annotations

import heapq
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from .._tf import keras
from ..calibration import Calibration
from ..fakequant.model import quantize_model, quantizer_variables, write_data_structure
from ..formats import MAX_FRAC, MIN_BITS, MIN_FRAC, check_activation_bits, frac_for_range
from ..policy import Policy
from ..progress import Progress
from ..stock_layers import FIXED_OUTPUT_FORMATS, STOCK_KINDS
from .budget import Budget, Meter, Metrics, choose_metric, latest_within, margin_weights, snr_db
from .evaluator import Evaluator, OutputNotClassificationError, predict, target_distribution, teacher_margin

Key = tuple[str, str]  # (layer or "input", "weights" | "bias" | "output")
KINDS = ("input", "weights", "bias", "output")
CHANNELS = "weights/channels"  # _ranges key of a layer's per-channel weight ranges (per_channel "auto")


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
    # auto = top1 for (batch, classes >= 2) outputs, snr otherwise
    metric: str = "auto"
    # what a step's gain is: "device" = the bytes the chip holds (packed weights, peak RAM at container
    # sizes, fxpq_keras.memory.DeviceModel), "paper" = the paper's bit count (weights + biases + activations)
    objective: str = "device"
    memory_target: int | None = None  # bytes of the objective: device flash + RAM, or paper total bits / 8
    # speed (device objective): no step may leave the estimated Cortex-M4 instructions of the fxp file
    # (fxpq_keras.instructions) above uniform 8-bit's on the same model times this, raising them; None or 0 =
    # no cap (docs/algorithm.md, "Device objective")
    max_slowdown: float | None = 1.0
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
    error_statistics_frac: bool = True
    self_distillation: bool = True

    def validate(self) -> None:
        if not isinstance(self.max_accuracy_drop, (int, float)) or not 0.0 < float(self.max_accuracy_drop) < 1.0:
            raise ValueError(f"max_accuracy_drop must be in (0, 1), got {self.max_accuracy_drop!r}")
        check_activation_bits(self.min_bits, "min_bits")
        check_activation_bits(self.max_bits, "max_bits")
        if self.min_bits > self.max_bits:
            raise ValueError(f"min_bits ({self.min_bits}) must not exceed max_bits ({self.max_bits})")
        if self.max_slowdown is not None and (isinstance(self.max_slowdown, bool) or
                                              not isinstance(self.max_slowdown, (int, float)) or
                                              not 0 <= float(self.max_slowdown) < float("inf")):
            raise ValueError(f"max_slowdown must be a number >= 0 (0 or None: no speed cap), got {self.max_slowdown!r}")
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
        if self.metric not in ("auto", "top1", "snr"):
            raise ValueError(f"metric must be auto, top1 or snr, got {self.metric!r}")
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
        return {f.name: getattr(self, f.name) for f in fields(self)}


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


class PrecisionSearch:
    """The FxP-QNet search on one fake-quant model; `run()` to completion or `advance(n)` stepwise.

    The pieces behind `FxPQNet` and the callbacks, for stepping the search yourself. Example::

        search = PrecisionSearch(model, x_calib, options=SearchOptions(max_accuracy_drop=0.01))
        while not search.state.done:
            search.advance(10)
            print(search.state.policy.memory().compression_total)
    """

    def __init__(self, model: keras.Model | Calibration, calibration_data: Any = None, *,
                 labels: Any = None, options: SearchOptions | None = None, verbose: int = 0,
                 progress: Progress | None = None) -> None:
        self.options = options or SearchOptions()
        self.options.validate()
        opts = self.options
        self.started = time.perf_counter()
        # phase lines and the bar (fxpq_keras/progress.py); None when not verbose and none given
        self.progress = progress if progress is not None else Progress() if verbose else None
        if isinstance(model, Calibration):
            calib = model
        else:
            if calibration_data is None:
                raise ValueError("calibration data is required")
            from ..calibration import calibration_values

            # before the subset: errors name the caller's rows; datasets and generators are read here once
            data = calibration_values(calibration_data, model_sample_shape(model))
            if labels is not None and (np.ndim(labels) == 0 or len(labels) != len(data)):
                raise ValueError(f"{np.size(labels)} labels for {len(data)} calibration samples")
            pick = subset(len(data), opts.samples, opts.seed)
            labels = None if labels is None else np.asarray(labels)[pick]
            self._say(f"calibrating: the float model on {len(pick)} samples")
            calib = Calibration(model, data[pick], align_ranges=opts.align_ranges is True and opts.dynamic_fixed_point)
        self.calibration = calib
        try:
            self.metric = choose_metric(calib.teacher, opts.metric, calib.x.shape[1:])
        except ValueError as exc:
            raise OutputNotClassificationError(str(exc)) from None
        self.labels = None if labels is None else class_labels(
            labels, calib.teacher.shape[1] if self.metric == "top1" and calib.teacher.ndim == 2 else None)
        if self.metric == "snr" and not opts.self_distillation:
            raise ValueError("self_distillation=False needs the top1 metric (labels are classes)")
        self.budget = Budget(self.metric, float(opts.max_accuracy_drop), float(opts.margin_sigma))
        probabilities = calib.cnodes[-1].kind == "softmax"
        n = len(calib.x)
        # the budget is checked on every sample (the estimate's variance is what limits small sets);
        # the first half ranks steps and chooses fracs (cheaper, and not the set that accepts them alone)
        n_decide = n if n < 24 else max(n // 2, 8)
        self.decision_index = np.arange(n_decide)
        self.check_index = np.arange(n)
        if self.metric == "snr":
            targets = np.asarray(calib.teacher, dtype=np.float32)
        elif opts.self_distillation:
            targets = target_distribution(calib.teacher, probabilities)
        else:
            if labels is None:
                raise ValueError("self_distillation=False decides by labels: pass labels with the calibration data")
            labels = self.labels
            if labels.shape[0] != n:
                raise ValueError(f"{labels.shape[0]} labels for {n} calibration samples")
            classes = calib.teacher.shape[1]
            if labels.min() < 0 or labels.max() >= classes:
                raise ValueError(f"labels must be class indices in 0..{classes - 1}")
            targets = np.eye(classes, dtype=np.float32)[labels]
        self.targets = targets  # what the student is measured against, one row per calibration sample
        self.probabilities = probabilities
        self.decision_meter, self.check_meter = (self._meter(idx) for idx in (self.decision_index, self.check_index))
        self.check_x = calib.x[self.check_index]
        self.blended = self.metric == "top1" and opts.self_distillation and opts.blend > 0 and n > 1
        if self.blended:
            partner = np.random.default_rng(opts.seed + 1).permutation(n)
            self.check_x = ((1.0 - opts.blend) * calib.x + opts.blend * calib.x[partner]).astype(np.float32)
            teacher = predict(calib.float_model, self.check_x)
            self.check_meter = Meter(target_distribution(teacher, probabilities), metric="top1",
                                     probabilities=probabilities)
        # the validation copies: the same calibration inputs blended with other partners (independent
        # seed). The greedy accepts hundreds of steps on the check set, so its flip count at the end is
        # biased low (the search picks steps that happen to spare its few near-boundary inputs); the
        # final prediction and a walk-back come from copies no step was chosen on
        self.validation_x = self.validation_meter = None
        if opts.self_distillation and opts.blend > 0 and n > 1:
            rng = np.random.default_rng(opts.seed + 2)
            partners = [rng.permutation(n) for _ in range(VALIDATION_COPIES)]
            self.validation_x = np.concatenate([(1.0 - opts.blend) * calib.x + opts.blend * calib.x[partner]
                                                for partner in partners]).astype(np.float32)
            teacher = predict(calib.float_model, self.validation_x)
            self.validation_meter = (Meter(teacher, metric="snr") if self.metric == "snr" else
                                     Meter(target_distribution(teacher, probabilities), metric="top1",
                                           probabilities=probabilities))
        self.decision_weights, self.check_weights = self.decision_meter.weights, self.check_meter.weights

        self.start_policy = self._start_policy()
        self.qmodel = quantize_model(calib, self.start_policy)
        self.qvars = quantizer_variables(self.qmodel)
        self._written: dict[Key, tuple[Any, ...]] = {}
        self._sync(self.start_policy, force=True)
        self.device = None
        if opts.objective == "device":
            from ..flatbuffer.memory import device_model_from_graph
            from ..integer_graph.lower import lower_model

            self.device = device_model_from_graph(lower_model(self.qmodel), float_input=opts.float_input)
        # the speed cap: uniform 8-bit's estimated instructions (the start policy's signedness) x max_slowdown
        self.instruction_cap: float | None = None
        self.refused_for_speed: set[tuple[Key, int]] = set()  # steps (data structure, width) refused for speed
        if self.device is not None and opts.max_slowdown:
            eight = {(layer, ds): 8 for layer, ds, _ in self.start_policy.data_structures() if ds != "bias"}
            base = self.device.instructions(self.start_policy, eight)
            self.instruction_cap = None if base is None else base * float(opts.max_slowdown)
        self.decide = Evaluator(self.qmodel, calib.x[self.decision_index], self.decision_meter,
                                incremental=opts.incremental)
        self.checker = (self.decide if len(self.check_index) == len(self.decision_index) and not self.blended else
                        Evaluator(self.qmodel, self.check_x, self.check_meter, incremental=opts.incremental,
                                  stages=self.decide.stages))
        # whole passes: it is run a few times per search, from policies far apart
        self.validator = (None if self.validation_x is None else
                          Evaluator(self.qmodel, self.validation_x, self.validation_meter, incremental=False))
        # the set and meter behind the reported prediction (the CLI measures the written file on them)
        self.budget_x, self.budget_meter = ((self.check_x, self.check_meter) if self.validator is None else
                                            (self.validation_x, self.validation_meter))
        self.budget_set = ("calibration samples" if self.validator is None and not self.blended else
                           "blended calibration samples" if self.validator is None else
                           f"validation copies ({n:,} calibration samples, each blended with {VALIDATION_COPIES} "
                           "partners)")
        self._trail: list[Policy] = []  # accepted policies since the start (or the restart from uniform)
        self.keys = self._changeable_keys()
        self._ranges = self._data_ranges()
        self.verbose = verbose
        self.version = 0
        self._heap: list[tuple[float, int, Candidate]] = []
        self._parked: list[Candidate] = []
        self.ram_groups = 0  # peak groups the RAM-first phase lowered (0 when the pass gave up)
        self.ram_to_beat: int | None = None  # RAM first: stop after the groups unless the arena is below this
        self._tail = False  # the device search's tail: steps that save no byte, by the paper bits they save
        self._group_version = -1  # the version the peak group was last formed at (one in the heap at a time)
        self._alone_kl: dict[Key, float] = {}  # KL of one activation alone at 8 bits (the jump's probe)
        self._phase = "start"
        self.best_uniform: tuple[int, Policy, Metrics] | None = None
        self._restarted = False
        self._first_result: Policy | None = None  # the greedy's result before a restart from uniform
        self.bits = {(layer, ds): d.bits for layer, ds, d in self.start_policy.data_structures()}
        self._say(f"evaluating the {opts.max_bits}-bit start policy ({len(self.keys)} data structures)")
        metrics = self.decide(self._written, keep=True)
        check = metrics if self.checker is self.decide else self.checker(self._written, keep=True)
        self.state = SearchState(self.start_policy.copy(), metrics, check)
        self._tune_fixed_fracs()
        self._record("start", "", 0)
        self.total_steps = sum(len(self.widths(k)) - 1 for k in self.keys)
        if self.progress is not None:
            self._say(f"searching: at most {self.total_steps} bit steps to lower" if self.total_steps else
                      f"nothing to lower: every data structure starts at --min-bits {opts.min_bits}")
            self.progress.start(self.total_steps, "bit step", self._shown_values())

    # -- set-up ---------------------------------------------------------------------------------
    def _meter(self, idx: np.ndarray) -> Meter:
        """The budget meter of one subset: low-margin weights for top1 (an unseen-data estimate)."""
        opts = self.options
        calib = self.calibration
        if self.metric == "snr":
            return Meter(self.targets[idx], metric="snr")
        margins = teacher_margin(calib.teacher[idx], self.probabilities)
        weights = margin_weights(margins, opts.low_margin_quantile, opts.low_margin_share)
        if opts.self_distillation:
            return Meter(self.targets[idx], metric="top1", probabilities=self.probabilities, weights=weights)
        float_hit = np.argmax(calib.teacher[idx], -1) == np.argmax(self.targets[idx], -1)
        return Meter(self.targets[idx], metric="top1", probabilities=self.probabilities, weights=weights,
                     labels_mode=True, base=float(np.average(float_hit, weights=weights)))

    def _start_policy(self) -> Policy:
        opts = self.options
        # "auto" starts per channel too (at the start width a channel's range frac is never coarser
        # than the tensor's), so a layer that per-tensor fracs would break is not frozen before its
        # first re-formatting chooses; channels that share one frac are per tensor
        per_channel = opts.per_channel in (True, "auto") and opts.dynamic_fixed_point
        policy = Policy.uniform(self.calibration, opts.max_bits, None, per_channel=per_channel,
                                bias_bits=max(opts.max_bits, MIN_BITS))
        for layer, ds, d in policy.data_structures():
            if opts.per_channel == "auto" and d.per_channel and len(set(d.frac)) == 1:
                policy.set(layer, ds, frac=d.frac[0])
        if not opts.dynamic_fixed_point:
            for (layer, ds), r in self._data_ranges(policy).items():
                d = policy.get(layer, ds)
                policy.set(layer, ds, frac=self._range_frac(r, d.bits, d.signed))
            policy.constrain_biases()
        return policy

    def _changeable_keys(self) -> list[Key]:
        allowed = self.options.data_structures
        keys = []
        for layer, ds, _ in self.start_policy.data_structures():
            kind = "input" if layer == "input" else ds
            if ds == "bias" and self.options.objective == "device":
                continue  # stored as int32 whatever the width: lowering one only adds error
            if ds == "output" and layer != "input" and self.start_policy.layers[layer].get("kind") in STOCK_KINDS:
                continue  # a stock op writes one byte per element in the format TFLM's kernel fixes
            if allowed is None or kind in allowed or f"{layer}/{ds}" in allowed:
                keys.append((layer, ds))
        known = {f"{layer}/{ds}" for layer, ds, _ in self.start_policy.data_structures()}
        unknown = [a for a in allowed or () if "/" in a and a not in known]
        if unknown:
            raise ValueError(f"unknown data structures {unknown}; the model has {sorted(known)}")
        return keys

    def _data_ranges(self, policy: Policy | None = None) -> dict[Key, Any]:
        """max |value| of every data structure (per output channel for per-channel weights; every
        weights data structure also under ("layer", "weights/channels") when per_channel is "auto").

        Without dynamic fixed point (mechanism 1 off) every data structure of a kind shares the
        largest range of that kind, so all weights (or biases, or activations) share one integer length.
        """
        calib = self.calibration
        policy = policy or self.start_policy
        out: dict[Key, Any] = {}
        for layer, ds, _ in policy.data_structures():
            if layer == "input":
                out[(layer, ds)] = calib.max_abs[calib.input_name]
            elif ds == "output":
                out[(layer, ds)] = calib.max_abs[layer]
            else:
                node = calib.node(layer)
                if ds == "weights":
                    per_channel, dfp = self.options.per_channel, self.options.dynamic_fixed_point
                    out[(layer, ds)] = calib.weight_max_abs(node, per_channel is True and dfp)
                    if per_channel == "auto" and dfp:
                        out[(layer, CHANNELS)] = calib.weight_max_abs(node, True)
                else:
                    out[(layer, ds)] = float(np.abs(node.bias).max())
        if not self.options.dynamic_fixed_point:
            for kind in ("weights", "bias", "output"):
                keys = [k for k in out if (k[1] == kind and k[0] != "input") or (kind == "output" and k[0] == "input")]
                top = max(float(np.max(out[k])) for k in keys) if keys else 0.0
                for k in keys:
                    out[k] = top
        return out

    @staticmethod
    def _range_frac(r: Any, bits: int, signed: bool, offset: int = 0) -> int | tuple[int, ...]:
        if isinstance(r, np.ndarray):
            return tuple(int(np.clip(frac_for_range(float(m), bits, True) + offset, MIN_FRAC, MAX_FRAC)) for m in r)
        return int(np.clip(frac_for_range(float(r), bits, signed) + offset, MIN_FRAC, MAX_FRAC))

    def frac_candidates(self, key: Key, bits: int, per_channel: bool | None = None) -> list[int | tuple[int, ...]]:
        """Candidate fracs at `bits`: range-derived plus offsets (mechanism 3), or range-derived only.

        With per_channel "auto", a weights data structure also gets the per-channel range fracs
        shifted by the same offsets, after the per-tensor ones (a tie keeps per tensor); a
        per-channel candidate whose channels all share one frac is the per-tensor one and is
        dropped. `per_channel` True/False keeps only that kind (the first is its range frac).
        """
        signed = self.start_policy.get(*key).signed
        opts = self.options
        offsets = (opts.activation_frac_offsets if key[1] == "output" else opts.frac_offsets) \
            if opts.error_statistics_frac and opts.dynamic_fixed_point else (0,)
        ranges = [self._ranges[key]]
        auto = key[1] == "weights" and (key[0], CHANNELS) in self._ranges
        if auto:
            channel = [self._ranges[(key[0], CHANNELS)]]
            ranges = channel if per_channel else ranges if per_channel is False else ranges + channel
        out: list[int | tuple[int, ...]] = []
        for r in ranges:
            for off in offsets:
                f = self._range_frac(r, bits, signed, off)
                if auto and isinstance(f, tuple) and len(set(f)) == 1:
                    f = f[0]
                if f not in out:
                    out.append(f)
        return out

    # -- formats -> variables -------------------------------------------------------------------
    def _sync(self, policy: Policy, force: bool = False) -> None:
        """Write the formats that differ from what the variables hold (a few assigns per trial)."""
        for layer, ds, d in policy.data_structures():
            sig = self._signature(d)
            if force or self._written.get((layer, ds)) != sig:
                write_data_structure(self.qvars[(layer, ds)], d)
                self._written[(layer, ds)] = sig

    def _with(self, base: Policy, changes: Iterable[tuple[Key, int, Any]]) -> Policy:
        trial = base.copy()
        for (layer, ds), bits, frac in changes:
            trial.set(layer, ds, bits=bits, frac=frac)
        trial.constrain_biases()
        return trial

    def evaluate(self, policy: Policy, check: bool = False, keep: bool = False) -> Metrics:
        """Metrics of `policy` on the decision set (or the budget-check set). Incremental evaluation
        starts at the first layer whose formats differ from the current policy's (`Evaluator`);
        `keep` when the policy may become the current one (then adopting it costs nothing)."""
        ev = self.checker if check else self.decide
        if ev.incremental:
            state = self._formats(self.state.policy)
            if ev.base_formats != state:
                if not ev.can_adopt(state):
                    self._sync(self.state.policy)
                ev.rebase(state)
        self._sync(policy)
        return ev(self._written, keep=keep)

    @staticmethod
    def _signature(d: Any) -> tuple[Any, ...]:
        """What `_sync` compares to decide whether a data structure's variables need a write."""
        return (d.bits, d.frac, d.signed)

    def _formats(self, policy: Policy) -> dict[Key, tuple[Any, ...]]:
        """Every data structure's format as `_sync` records what it wrote."""
        return {(layer, ds): self._signature(d) for layer, ds, d in policy.data_structures()}

    @property
    def _evaluators(self) -> list[Evaluator]:
        """The distinct evaluators: decision set, check set, validation copies."""
        evs = [self.decide] + ([] if self.checker is self.decide else [self.checker])
        return evs + ([] if self.validator is None else [self.validator])

    @property
    def evaluations(self) -> int:
        return sum(ev.evaluations for ev in self._evaluators)

    @property
    def full_passes(self) -> float:
        """Layers run, in whole-model passes over any set (less than `evaluations` when incremental)."""
        return sum(ev.full_passes for ev in self._evaluators)

    @property
    def evaluated_samples(self) -> int:
        return sum(ev.evaluations * ev.samples for ev in self._evaluators)

    def within_budget(self, m: Metrics) -> bool:
        """The budget decision (`Budget.holds`): the predicted loss plus `margin_sigma` standard errors
        is inside the limit. Only whole-set (check) metrics decide."""
        return self.budget.holds(m.estimate)

    def cost(self, policy: Policy) -> int:
        """What the search minimizes: device bytes (packed weights + int32 biases + peak RAM) or the
        paper's total bits (weights + biases + activations)."""
        if self.device is not None:
            return self.device.cost(policy).total_bytes
        return policy.memory().total_bits

    def gain(self, policy: Policy, key: Key, bits: int) -> int:
        """What setting `key` to `bits` saves under the objective (bytes, or bits for paper). In the
        device search's tail, a step that saves no byte is ranked by the paper bits it saves, below
        every step that saves bytes."""
        d = policy.get(*key)
        paper = d.elements * (d.bits - bits)
        if self.device is None:
            return paper
        saved = self.device.gain(policy, key[0], key[1], bits).total_bytes
        return saved * TAIL_WEIGHT + paper if self._tail and saved >= 0 else saved

    def widths(self, key: Key) -> list[int]:
        """The widths of `key` the objective tells apart, ascending, ending at the current width.

        Paper: every width. Device: an activation only costs less when its container shrinks, so
        it is 8 bits (one byte) or where it is; a width under 8 adds error and saves nothing.
        """
        now, lo = self.bits[key], self.options.min_bits
        if self.device is not None and key[1] == "output":
            return [max(8, lo), now] if now > max(8, lo) else [now]
        return list(range(lo, now + 1))

    def _stock_fixed_keys(self) -> list[Key]:
        """Activations whose width stock ops fix (stock_layers.py): a stock op's own output (unless
        TFLM fixes its format too) and the 8-bit outputs a stock op reads."""
        layers = self.start_policy.layers
        keys: list[Key] = []

        def owner(name: str) -> str:  # the layer (or the input) holding a tensor's data structure
            while name in layers and layers[name].get("output") is None:
                name = layers[name]["inputs"][0]
            return name if name in layers else "input"

        for name, layer in layers.items():
            if layer.get("kind") not in STOCK_KINDS:
                continue
            wanted = [owner(i) for i in layer["inputs"]]
            if layer.get("output") is not None and layer["kind"] not in FIXED_OUTPUT_FORMATS:
                wanted.append(name)
            for k in wanted:
                key = (k, "output")
                if key not in keys and self.start_policy.get(*key).bits <= 8:
                    keys.append(key)
        return keys

    def _tune_fixed_fracs(self) -> None:
        """Mechanism 3 for the activations stock ops hold at 8 bits: no bit step ever lowers them,
        so their frac is chosen here, once, by the network's KL against the teacher (in layer
        order), and the result is the start policy."""
        opts = self.options
        keys = self._stock_fixed_keys()
        if not keys or not (opts.error_statistics_frac and opts.dynamic_fixed_point):
            return
        self._say(f"choosing the fracs of {len(keys)} activations that stock ops hold at 8 bits")
        policy = self.state.policy
        for key in keys:
            d = policy.get(*key)
            frac, _ = self.best_frac(policy, key, d.bits)
            policy = self._with(policy, [(key, d.bits, frac)])
        metrics = self.evaluate(policy, keep=True)
        check = metrics if self.checker is self.decide else self.evaluate(policy, check=True, keep=True)
        self.start_policy = policy.copy()
        self.state = SearchState(policy, metrics, check)

    def best_frac(self, base: Policy, key: Key, bits: int) -> tuple[Any, Metrics]:
        """Mechanism 3: the frac (among candidates) minimizing the network's KL against the teacher."""
        best = None
        for frac in self.frac_candidates(key, bits):
            m = self.evaluate(self._with(base, [(key, bits, frac)]))
            if best is None or m.kl < best[1].kl - 1e-12:
                best = (frac, m)
        assert best is not None
        return best

    def refresh(self) -> None:
        """Re-measure the current policy after the weights changed (distillation fine-tuning)."""
        self.version += 1
        self.decide.invalidate()
        self.checker.invalidate()
        self.state.metrics = self.evaluate(self.state.policy)
        self.state.check = self.state.metrics if self.checker is self.decide else self.evaluate(self.state.policy, True)
        if self.state.done and self.validator is not None:  # a finished search reports the validation copies
            self._sync(self.state.policy)
            self.state.check = self.validator()
        if self._heap:
            self._fill_heap()

    # -- the search -----------------------------------------------------------------------------
    def memory_met(self, policy: Policy) -> bool:
        target = self.options.memory_target
        if target is None:
            return False
        return (self.cost(policy) if self.device is not None else policy.memory().total_bits / 8) <= target

    def memory_bytes(self, policy: Policy) -> float:
        """What a memory target is compared with (the objective's bytes)."""
        return self.cost(policy) if self.device is not None else policy.memory().total_bits / 8

    def run(self) -> SearchState:
        while not self.state.done:
            self.advance(10**9)
        return self.state

    def advance(self, max_steps: int) -> SearchState:
        """Do up to `max_steps` accepted/frozen steps (a callback calls this between epochs)."""
        if self.state.done:
            return self.state
        if self._phase == "start":
            if not self.within_budget(self.state.check):
                return self._finish(f"the {self.options.max_bits}-bit start policy already breaks the budget; "
                                    "nothing lowered")
            if self.memory_met(self.state.policy):
                return self._finish("memory target met by the start policy")
            ram_first = self.options.ram_first is True and self.device is not None and self.options.layerwise
            if not ram_first:  # RAM first bisects it after its groups, if it goes on (it may stop there)
                self._bisect_uniform()
            self._phase = ("uniform" if not self.options.layerwise else "ram" if ram_first
                           else "jump" if self.options.fast_start else "greedy")
            if self._phase == "greedy":
                self._fill_heap()
        if self._phase == "ram":
            return self._ram_step()
        if self._phase == "jump":
            self._jump()
            self._phase = "greedy"
            if self.state.done:
                return self.state
            self._fill_heap()
            return self.state
        if self._phase == "uniform":
            return self._uniform_step() if max_steps > 0 else self.state
        steps = 0
        while steps < max_steps and not self.state.done:
            steps += self._greedy_step()
        return self.state

    def _candidate(self, key: Key) -> Candidate | None:
        """The next lower width the objective tells apart, scored gain per added KL. A step that
        saves nothing now (an activation off the RAM peak) is parked unevaluated: score 0, stale."""
        ws = self.widths(key)
        if len(ws) < 2:
            return None
        bits = ws[-2]
        if self.too_slow(self.state.policy, {key: bits}):  # parked: re-scored after the next accepted step
            return Candidate(key, bits, None, None, self.version, 0.0)
        saved = self.gain(self.state.policy, key, bits)
        if saved <= 0:
            return Candidate(key, bits, None, None, self.version, 0.0)  # re-scored after the next accepted step
        frac, m = self.best_frac(self.state.policy, key, bits)
        added = max(m.kl - self.state.metrics.kl, 1e-7)
        return Candidate(key, bits, frac, m, self.version, saved / added)

    def _group_target(self) -> int:
        """The width a peak group is lowered to: the lowest that takes one byte."""
        return max(8, self.options.min_bits)

    def _alone(self, key: Key) -> float:
        """The KL of activation `key` alone at the group width (the jump's probe, or measured once)."""
        if key not in self._alone_kl:
            self._alone_kl[key] = self.best_frac(self.state.policy, key, self._group_target())[1].kl
        return self._alone_kl[key]

    def _wide_activations(self, frozen_too: bool = False) -> list[Key]:
        """Activations above the group width (stored in two bytes), frozen ones only if asked."""
        target = self._group_target()
        return [k for k in self.keys if k[1] == "output" and self.bits[k] > target
                and (frozen_too or k not in self.state.frozen)]

    def _peak_group(self) -> list[Key] | None:
        """Activations that tie on the RAM peak: none lowers the peak alone (each step is parked), a
        set of them together does (in a chain of equal tensors every other one must shrink). The
        members kept are those that cost the least error alone: the costliest are dropped first
        while the rest still lowers the peak, so every member is needed for the gain."""
        if self.device is None or not self.options.layerwise:
            return None
        target, policy = self._group_target(), self.state.policy
        acts = self._wide_activations()
        if len(acts) < 2:
            return None
        ram = self.device.ram_bytes(policy)
        group = {k: target for k in acts}
        if self.device.ram_bytes(policy, group) >= ram:
            return None
        for key in sorted(acts, key=lambda k: (-self._alone(k), self.keys.index(k))):
            rest = {k: b for k, b in group.items() if k != key}
            if rest and self.device.ram_bytes(policy, rest) < ram:
                group = rest
        return list(group) if len(group) > 1 else None  # one member alone is an ordinary step

    def _group_candidate(self) -> Candidate | None:
        """The peak group as one step: each member's frac chosen (mechanism 3) with the members before
        it in place, scored like any step (bytes saved per added KL)."""
        self._group_version = self.version
        members = self._peak_group()
        if members is None:
            return None
        target, base = self._group_target(), self.state.policy
        if self.too_slow(base, {k: target for k in members}):
            return None
        changes: list[tuple[Key, int, Any]] = []
        m = self.state.metrics
        for key in members:
            frac, m = self.best_frac(self._with(base, changes), key, target)
            changes.append((key, target, frac))
        new = self.device.cost(base, {k: b for k, b, _ in changes})
        saved = self.device.cost(base).total_bytes - new.total_bytes
        added = max(m.kl - self.state.metrics.kl, 1e-7)
        return Candidate(members[0], target, changes[0][2], m, self.version, saved / added, tuple(changes[1:]))

    def _push_group(self) -> None:
        """Keep one peak-group step in the heap (re-formed lazily, when it comes up stale)."""
        if self._group_version != self.version and not any(c.also for _, _, c in self._heap):
            self._push(self._group_candidate())

    def _push(self, cand: Candidate | None) -> None:
        if cand is not None:
            heapq.heappush(self._heap, (-cand.score, self.keys.index(cand.key), cand))

    def _fill_heap(self) -> None:
        self._heap = []
        for key in self.keys:
            if key not in self.state.frozen:
                self._push(self._candidate(key))
        self._push_group()
        if not self._heap:
            self._finish("no data structure can be lowered")

    def _greedy_step(self) -> int:
        """Pop the best step; re-evaluate it if stale (lazy greedy); accept it or freeze its data structure
        (a peak group that breaks the budget freezes the member that costs the most error alone)."""
        if not self._heap:
            self._finish("every data structure is frozen or at min_bits")
            return 1
        _, _, cand = heapq.heappop(self._heap)
        if cand.metrics is None:  # parked: it saved nothing when scored
            if cand.version != self.version:
                self._push(self._candidate(cand.key))
            else:
                self._parked.append(cand)
            if not self._heap:
                self._finish("every data structure is frozen, at min_bits, or saves nothing more")
            return 0
        if cand.version != self.version:
            self._push(self._group_candidate() if cand.also else self._candidate(cand.key))
            if not self._heap:
                self._finish("every data structure is frozen, at min_bits, or saves nothing more")
            return 0
        if not self._try(cand):
            if cand.also:
                self._push_group()  # without its costliest member, another set of the tied activations may do
            if self.refused_for_speed:  # a freeze may raise the speed cap's int8 reference: score the parked again
                for parked in self._parked:
                    self._push(replace(parked, version=-2))
                self._parked = []
            if not self._heap:
                self._finish("every data structure is frozen or at min_bits")
            return 1
        if self.state.done:
            return 1
        for parked in self._parked:  # the peak may have moved: score them again when they come up
            self._push(replace(parked, version=-2))
        self._parked = []
        if not cand.also:
            self._push(self._candidate(cand.key))
        self._push_group()
        if not self._heap:
            self._finish("every data structure is frozen or at min_bits")
        return 1

    def _try(self, cand: Candidate) -> bool:
        """Accept an evaluated step if the budget holds (True), else freeze its data structure (a peak
        group freezes the member that costs the most error alone). A met memory target finishes."""
        trial = self._with(self.state.policy, cand.changes)
        check = cand.metrics if self.checker is self.decide else self.evaluate(trial, check=True, keep=True)
        if not self.within_budget(check):
            if cand.also:
                worst = max((k for k, _, _ in cand.changes), key=lambda k: (self._alone(k), -self.keys.index(k)))
                self.state.frozen.add(worst)
                self._record("freeze", "/".join(worst), self.bits[worst])
                self._group_version = -1
            else:
                self.state.frozen.add(cand.key)
                self._record("freeze", cand.name, cand.bits + 1)
            return False
        self.state.policy = trial
        self.state.metrics, self.state.check = cand.metrics, check
        for key, bits, _ in cand.changes:
            self.bits[key] = bits
        self.version += 1
        self._record("lower", cand.name, cand.bits)
        if self.memory_met(trial):
            self._finish("memory target met", target_met=True)
        return True

    def too_slow(self, base: Policy, changes: dict[Key, int], raising: bool = True, count: bool = True) -> bool:
        """Whether `changes` on `base` break the speed cap. With `raising` (a search step) only a step that
        raises the estimate can: it is refused when it ends above the cap and above the int8 reference
        of the current state (`forced_instructions`): the budget's own demands (activations frozen above
        8 bits) are not counted against a step. Refused steps are counted in refused_for_speed."""
        if self.instruction_cap is None:
            return False
        new = self.device.instructions(base, changes)
        if new <= self.instruction_cap:
            return False
        if raising and (new <= self.device.instructions(base) or
                        new <= self.forced_instructions(base) * float(self.options.max_slowdown)):
            return False
        if count:
            self.refused_for_speed.update(changes.items())
        return True

    def forced_instructions(self, policy: Policy) -> float:
        """The int8 reference of the current state: `policy` with every data structure at 8 bits except
        those the budget holds above 8 (frozen there) and those the search does not change."""
        eight = {k: 8 for k in self.keys if k[1] != "bias" and not (k in self.state.frozen and self.bits[k] > 8)}
        return self.device.instructions(policy, eight)

    def _within_speed(self, base: Policy, changes: list[tuple[Key, int, Any]]) -> list[tuple[Key, int, Any]]:
        """The jump's changes brought under the speed cap (the jump starts from max_bits, far slower than the
        cap, so every jump lowers the estimate: the cap itself is the test here). While the set is above
        it, take the one adjustment that lowers the estimate most: a change moved to a wider width of its
        data structure (more precision, so never a budget risk), or dropped. The estimate only, no evaluation."""
        if self.instruction_cap is None:
            return changes

        def estimate(cs: list[tuple[Key, int, Any]]) -> float:
            return self.device.instructions(base, {k: b for k, b, _ in cs})

        current = estimate(changes)
        while changes and current > self.instruction_cap:
            best = None
            for i, (key, bits, frac) in enumerate(changes):
                per_channel = isinstance(frac, tuple)
                options = [changes[:i] + changes[i + 1:]]
                options += [changes[:i] + [(key, w, self.frac_candidates(key, w, per_channel)[0])] + changes[i + 1:]
                            for w in self.widths(key) if bits < w < self.bits[key]]
                for option in options:
                    e = estimate(option)
                    if best is None or e < best[0]:
                        best = (e, option, (key, bits))
            if best is None or best[0] >= current:
                break  # no adjustment speeds the set up: keep it (the greedy refuses slower steps)
            self.refused_for_speed.add(best[2])
            current, changes = best[0], best[1]
        return changes

    def instructions(self, policy: Policy) -> float | None:
        """The estimated Cortex-M4 instructions of `policy`'s fxp file (None: paper objective)."""
        return None if self.device is None else self.device.instructions(policy)

    def _bisect_uniform(self) -> None:
        if self.options.min_bits < self.options.max_bits:
            self._say("bisecting the lowest uniform width within the budget (the floor the search must beat)")
        self.best_uniform = self._best_uniform()

    def _ram_step(self) -> SearchState:
        """RAM first (`ram_first`): lower the RAM peak's tied activations to one byte, group by group,
        before any other step spends the budget; then the usual jump and greedy."""
        cand = self._group_candidate()
        if cand is None:
            if not self.ram_groups:  # nothing lowered: the rest would repeat the plain greedy, minus the frozen
                self.state.done = True
                self.state.message = "RAM first: no peak group fits the budget"
                return self.state
            if self.ram_to_beat is not None and self.device.ram_bytes(self.state.policy) >= self.ram_to_beat:
                # the arena cannot end below the other result's, and the weights got less budget: stop
                self.ram_groups = 0
                self.state.done = True
                self.state.message = "RAM first: after its peak groups the arena is no smaller than the plain order's"
                return self.state
            self._bisect_uniform()
            self._phase = "jump" if self.options.fast_start else "greedy"
            if self._phase == "greedy":
                self._fill_heap()
            return self.state
        self.ram_groups += self._try(cand)
        return self.state

    def _jump(self) -> None:
        """Cheap first pass: probe each data structure alone (binary search on bits) for the lowest
        width whose added KL is negligible, then move all of them there at once, backing off by one bit
        for all of them until the budget holds."""
        opts = self.options
        base = self.state.policy
        kl0, loss0 = self.state.metrics.kl, self.state.metrics.loss
        tolerance = 1e-3 * opts.max_accuracy_drop
        floors: dict[Key, tuple[int, Any]] = {}
        widths = {key: self.widths(key) for key in self.keys}
        for key in self.keys:
            ws = widths[key]
            lo, hi = 0, len(ws) - 1
            best = (hi, base.get(*key).frac)
            while lo < hi:
                mid = (lo + hi) // 2
                frac, m = self.best_frac(base, key, ws[mid])
                if key[1] == "output" and ws[mid] == self._group_target():
                    self._alone_kl[key] = m.kl  # what a peak group keeps its cheapest members by
                if m.kl - kl0 <= tolerance and m.loss <= loss0:
                    hi, best = mid, (mid, frac)
                else:
                    lo = mid + 1
            floors[key] = best
        extra = 0
        while True:
            changes = []
            for key, (i, frac) in floors.items():
                ws = widths[key]
                j = min(i + extra, len(ws) - 1)
                bits = ws[j]
                if j != i:  # backing off keeps the kind of frac (per tensor or per channel) chosen
                    frac = self.frac_candidates(key, bits, isinstance(frac, tuple))[0]
                changes.append((key, bits, frac))
            changes = self._within_speed(base, changes)
            trial = self._with(base, changes)
            m = self.evaluate(trial, keep=True)
            check = m if self.checker is self.decide else self.evaluate(trial, check=True, keep=True)
            at_start = all(c[1] == self.bits[c[0]] for c in changes)
            if self.within_budget(check) or at_start:
                break
            extra += 1
        self.state.policy, self.state.metrics, self.state.check = trial, m, check
        for key, bits, _ in changes:
            self.bits[key] = bits
        self.version += 1
        self._record("jump", f"{len(changes)} data structures", -1)
        if self.memory_met(trial):
            # the jump may overshoot a memory target: redo it gradually from the start instead
            self._trail.pop()
            self.state.policy = base
            for layer, ds, d in base.data_structures():
                self.bits[(layer, ds)] = d.bits
            self._sync(base)
            self.state.metrics, self.state.check = self.evaluate(base), self.evaluate(base, check=True)

    def _uniform_step(self) -> SearchState:
        """Mechanism 2 off: all changeable data structures share one width, lowered together."""
        opts = self.options
        bits = max(self.bits[k] for k in self.keys) - 1 if self.keys else 0
        if bits < opts.min_bits:
            return self._finish("every data structure is at min_bits")
        if self.too_slow(self.state.policy, {key: bits for key in self.keys if key[1] != "bias"}):
            return self._finish(f"{bits} bits everywhere would exceed the speed cap (max_slowdown)")
        trial = self.state.policy.copy()
        for key in self.keys:
            trial = self._with(trial, [(key, bits, self.frac_candidates(key, bits)[0])])
        if len(self.frac_candidates(self.keys[0], bits)) > 1:  # mechanism 3: per data structure, one pass
            for key in self.keys:
                frac, _ = self.best_frac(trial, key, bits)
                trial = self._with(trial, [(key, bits, frac)])
        m = self.evaluate(trial)
        check = m if self.checker is self.decide else self.evaluate(trial, check=True)
        if not self.within_budget(check):
            self._sync(self.state.policy)
            return self._finish(f"{bits} bits everywhere breaks the budget")
        self.state.policy, self.state.metrics, self.state.check = trial, m, check
        for key in self.keys:
            self.bits[key] = bits
        self.version += 1
        self._record("lower", "all", bits)
        if self.memory_met(trial):
            return self._finish("memory target met", target_met=True)
        return self.state

    def explain(self, m: Metrics) -> str:
        """The budget decision in words: prediction + head-room against the limit."""
        b = self.budget
        upper = m.estimate.upper(b.z)
        if b.metric == "snr":
            return (f"predicted relative MSE {m.loss:.3%} + {b.z:g} standard errors = {upper:.3%} "
                    f"{'<=' if b.holds(m.estimate) else '>'} {b.max_loss:.3%}")
        return (f"predicted drop {m.loss:.2%} + {b.z:g} standard errors = {upper:.2%} "
                f"{'<=' if b.holds(m.estimate) else '>'} {b.max_loss:.2%}")

    def _uniform(self, bits: int) -> Policy:
        """Every changeable data structure except biases at `bits` with its range-derived frac."""
        changes = [(key, bits, self.frac_candidates(key, bits, self.start_policy.get(*key).per_channel)[0])
                   for key in self.keys if key[1] != "bias"]
        return self._with(self.start_policy, changes)

    def _best_uniform(self) -> tuple[int, Policy, Metrics] | None:
        """The lowest uniform width (weights and activations; biases stay at max_bits) that meets the
        budget, by bisection on the width (a few whole-set evaluations): the result is never larger."""
        lo, hi = self.options.min_bits, self.options.max_bits
        best = None
        while lo < hi:
            mid = (lo + hi) // 2
            policy = self._uniform(mid)
            m = self.evaluate(policy, check=True)
            if self._validates(policy) if self.validator is not None else self.within_budget(m):
                hi, best = mid, (mid, policy, m)
            else:
                lo = mid + 1
        self._sync(self.state.policy)
        return best

    def ram_could_fall(self) -> bool:
        """Whether the arena of the current policy would be smaller with every activation in one byte
        (what a RAM-first order could reach; device objective only)."""
        if self.device is None or not self.options.layerwise:
            return False
        policy = self.state.policy
        ones = {k: self._group_target() for k in self._wide_activations(frozen_too=True)}
        return bool(ones) and self.device.ram_bytes(policy, ones) < self.device.ram_bytes(policy)

    def smaller(self, a: Policy, b: Policy) -> bool:
        """Whether `a` costs less than `b`: by the objective, then (equal device bytes) the paper's bits."""
        ca, cb = self.cost(a), self.cost(b)
        return ca < cb or (ca == cb and self.device is not None and a.memory().total_bits < b.memory().total_bits)

    def _uniform_fallback(self) -> bool:
        """Never worse than uniform: if the best uniform policy that meets the budget costs less than
        what the greedy found (`smaller`: the objective's bytes or bits, the paper's bits breaking a
        tie of device bytes), continue the greedy from it (once; lowering never adds bytes or bits, so
        the result is at most the uniform's cost). True when the search goes on."""
        u = self.best_uniform
        if self._restarted or u is None or not self.options.layerwise:
            return False
        if not self.smaller(u[1], self.state.policy) or self.too_slow(u[1], {}, raising=False):
            return False
        self._restarted = True
        self._tail = False  # from the uniform policy, bytes first again
        self._first_result = self.state.policy.copy()
        bits, policy, check = u
        self.state.policy = policy.copy()
        self.state.check = check
        self.state.metrics = check if self.checker is self.decide else self.evaluate(policy)
        self.state.frozen.clear()
        self._parked = []  # the heap is refilled from the new state (a parked step would come up twice)
        for layer, ds, d in policy.data_structures():
            self.bits[(layer, ds)] = d.bits
        self.version += 1
        self._say(f"continuing from the best uniform policy ({bits} bits), smaller than what lowering found "
                  f"({self._smaller_in(policy, self._first_result)})")
        self._record("uniform", f"best uniform {bits}-bit", bits)
        self._phase = "greedy"
        if self.memory_met(policy):
            self._finish("memory target met", target_met=True)
        else:
            self._fill_heap()
        return True

    def _paper_tail(self) -> bool:
        """Device objective, when every step that saves a byte is done and the best uniform policy has
        fewer paper bits (never more device bytes): go on with the activations whose one-byte step
        saves no byte (off the RAM peak), ranked by the paper bits they save, so the leftover budget
        buys the paper's count before the uniform policy is considered. True when the search goes on."""
        u = self.best_uniform
        if (self.device is None or self._tail or u is None or not self.options.layerwise
                or self.cost(u[1]) < self.cost(self.state.policy)
                or u[1].memory().total_bits >= self.state.policy.memory().total_bits):
            return False
        self._tail = True
        self._parked = []
        self.version += 1
        self._say("every byte-saving step is done; lowering activations off the RAM peak for the paper's bit "
                  "count (the best uniform policy has fewer bits)")
        self._phase = "greedy"
        self._fill_heap()
        return not self.state.done

    def _smaller_in(self, uniform: Policy, found: Policy | None = None) -> str:
        """Which accounting the uniform policy wins in (the restart's reason, in words)."""
        found = self.state.policy if found is None else found
        parts = []
        if self.device is not None and self.cost(uniform) < self.cost(found):
            parts.append("device bytes")
        if uniform.memory().total_bits < found.memory().total_bits:
            parts.append("the paper's total bits")
        return " and ".join(parts) or "cost"

    def _validates(self, policy: Policy) -> bool:
        """The budget on the validation copies."""
        if self.validator is None:
            return True
        self._sync(policy)
        return self.within_budget(self.validator())

    def _walk_back(self) -> Metrics | None:
        """Selection-bias guard: the latest accepted policy (bisection along the trail, whose losses grow
        step by step) whose prediction on the validation copies is within the budget becomes the
        state; its validation metrics are returned (None without validation copies)."""
        if self.validator is None or self.state.done or not self._trail:
            return None
        trail = self._trail
        measured: dict[int, Metrics] = {}

        def holds(i: int) -> bool:
            self._sync(trail[i])
            measured[i] = self.validator()
            return self.within_budget(measured[i])

        last = len(trail) - 1
        lo = latest_within(len(trail), holds)
        if lo == last:
            return measured[last]
        if lo not in measured:
            holds(lo)
        policy = trail[lo].copy()
        self._trail = trail[:lo + 1]
        self.state.policy = policy
        for layer, ds, d in policy.data_structures():
            self.bits[(layer, ds)] = d.bits
        self.version += 1
        self.state.metrics = self.evaluate(policy)
        self.state.check = self.state.metrics if self.checker is self.decide else self.evaluate(policy, check=True)
        self._say(f"walked back {last - lo} accepted step(s): on the validation copies the later ones break "
                  "the budget")
        self._record("back", f"{last - lo} step(s)", -1)
        return measured[lo]

    def _finish(self, message: str, target_met: bool = False) -> SearchState:
        st = self.state
        validation = self._walk_back()
        if validation is not None and target_met and not self.memory_met(st.policy):
            target_met = False  # walked back above the memory target: say so, not "met"
            message = "the policy that met the memory target breaks the budget on the validation copies"
        if not target_met and (self._paper_tail() or self._uniform_fallback()):
            return st
        if st.done:
            return st
        st.done = True
        self._sync(st.policy)
        if validation is not None:
            st.check = validation  # the prediction no search step was chosen on
        st.budget_met = self.within_budget(st.check)
        if not st.budget_met:
            message = f"budget NOT met: {self.explain(st.check)}; {message}"
        if self.options.memory_target is not None:
            st.memory_target_met = target_met or self.memory_met(st.policy)
            if not st.memory_target_met:
                message = (f"memory target of {self.options.memory_target:,} bytes cannot be met within the "
                           f"budget (reached {self.memory_bytes(st.policy):,.0f} bytes); {message}")
        if self._restarted:
            u = self.best_uniform
            message += (f"; continued from the best uniform policy ({u[0]} bits), which was smaller than what "
                        f"lowering found ({self._smaller_in(u[1], self._first_result)})")
        st.message = message
        self._record("done", "", -1)
        if self.progress is not None:
            self.progress.finish(self._shown_values(), message)
        return st

    # -- trajectory and progress ----------------------------------------------------------------
    def _record(self, action: str, key: str, bits: int) -> None:
        st = self.state
        if action in ("start", "jump", "lower", "uniform"):  # an accepted policy: the walk-back's trail
            if action == "uniform":
                self._trail = []
            self._trail.append(st.policy.copy())
        mem = st.policy.memory()
        st.trajectory.append(Step(action, key, bits, self.evaluations, mem.total_bits, mem.compression_total,
                                  st.metrics.agreement, None if self.checker is self.decide else st.check.agreement,
                                  st.metrics.kl, time.perf_counter() - self.started))
        if self.progress is not None and action not in ("start", "done"):
            self.progress.update(self._steps_done(), self._shown_values())

    def _steps_done(self) -> int:
        """Bit steps behind us: every step of a frozen data structure, the lowered ones of the others
        (fewer again after a restart from the best uniform policy)."""
        left = sum(len(self.widths(k)) - 1 for k in self.keys if k not in self.state.frozen)
        return self.total_steps - left

    def _say(self, text: str) -> None:
        if self.progress is not None:
            self.progress.phase(text)

    def _bar_values(self) -> list[tuple[str, float]]:
        st = self.state
        ds = list(st.policy.data_structures())
        avg = sum(d.bits * d.elements for _, _, d in ds) / max(sum(d.elements for _, _, d in ds), 1)
        quality = (("snr_db", min(snr_db(st.check.loss), 999.0)) if self.metric == "snr"
                   else ("agreement", st.check.agreement))
        return [("bits", avg), ("memory_x", st.policy.memory().compression_total), quality]

    def _shown_values(self) -> list[tuple[str, str]]:
        """_bar_values as a person reads them in the progress lines."""
        (_, bits), (_, memory_x), (name, quality) = self._bar_values()
        shown = f"{quality:.1f} dB" if name == "snr_db" else f"{quality:.2%}"
        return [("avg bits", f"{bits:.2f}"), ("memory", f"{memory_x:.2f}x smaller"),
                ("output SNR" if name == "snr_db" else "agreement", shown)]


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


def subset(n: int, samples: int, seed: int) -> np.ndarray:
    """A seeded random subset of indices (all of them, shuffled, when there are fewer)."""
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[:samples]) if samples < n else order


__all__ = ["Candidate", "PrecisionSearch", "SearchOptions", "SearchState", "Step", "progress_verbosity", "subset"]
