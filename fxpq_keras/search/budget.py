"""The budget decision, in plain numpy: which metric, what it predicts for unseen data, and whether a
policy is inside the limit (docs/algorithm.md, "Budget").

Kept apart from TensorFlow so the decision itself is unit-tested in milliseconds: a flipped margin
sign, a wrong interval or a wrong metric changes what these functions return.

Two metrics:

- ``top1``: the drop of top-1 agreement with the float model (the teacher). Per sample the search
  measures the teacher's margin (gap between its two largest log-probabilities); a sample flips when
  the quantized model's top-1 differs from the teacher's. The predicted drop
  is the flip rate weighted towards low-margin samples for unseen data (`predict_drop`).
- ``snr``: for outputs that are not class scores, the relative output error against the teacher,
  noise power / signal power (output SNR = -10 log10 of it, in dB).
- any `metric.TaskMetric` (``anomaly``, a user's function): per-sample losses, their mean predicted
  by `predict_mean_loss` unless the metric says otherwise.

A budget holds when the upper end of the estimate's one-sided interval, ``loss + z * stderr``, is at
most the limit (`Budget.holds`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .interval import (  # the estimators live with the interval rule; re-exported here
    Estimate,
    effective_samples,
    predict_drop,
    predict_mean_loss,
    predict_relative_mse,
    snr_db,
)

METRICS = ("top1", "snr", "anomaly")  # built-in metric names (metric.BUILTIN); any TaskMetric is accepted too


@dataclass(frozen=True)
class Budget:
    """The budget in force: a metric, its limit (`max_loss`) and the confidence `z`.

    A policy is within budget when `estimate.loss + z * estimate.stderr <= max_loss`: the search
    keeps z standard errors of head-room so that the noise of a small calibration set does not
    carry unseen data outside the limit. `metric` is a built-in name (`METRICS`); `task` the
    `metric.TaskMetric` that measures it (built from the name when not given: a user's metric
    passes its own). The built-in metrics' limits are fractions in (0, 1); a user metric's any
    positive number.
    """

    metric: str
    max_loss: float
    z: float = 1.0
    task: Any = field(default=None, compare=False)

    def __post_init__(self) -> None:
        from .metric import BUILTIN

        if self.task is None:
            if self.metric not in METRICS:
                raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {self.metric!r}")
            object.__setattr__(self, "task", BUILTIN[self.metric]())
        builtin = self.metric in METRICS
        if not (0.0 < self.max_loss < 1.0 if builtin else 0.0 < self.max_loss < math.inf):
            raise ValueError(f"the budget's limit must be in {'(0, 1)' if builtin else '(0, inf)'}, "
                             f"got {self.max_loss!r}")
        if not 0.0 <= self.z <= 5.0:
            raise ValueError(f"the budget's confidence z must be in 0..5, got {self.z!r}")

    def holds(self, estimate: Estimate) -> bool:
        """True when the upper bound of the estimate is inside the limit."""
        return estimate.upper(self.z) <= self.max_loss + 1e-12

    def describe(self) -> str:
        """One line naming the metric and the limit in force (the summary prints it)."""
        return self.task.describe(self.max_loss)

    def format_loss(self, loss: float) -> str:
        """A loss in the metric's own words: '0.42% top-1 drop' or '27.3 dB SNR'."""
        return self.task.format_loss(loss)


def choose_metric(outputs: np.ndarray, requested: str = "auto", input_shape: tuple[int, ...] | None = None) -> str:
    """`requested` unless 'auto'. Auto: ``top1`` for a probability-like output (non-negative rows summing
    to 1: a softmax) and for a (batch, classes >= 2) score vector that is not a reconstruction of the
    input; ``snr`` otherwise (one value, an image, or an output shaped like the input: an autoencoder).
    """
    outputs = np.asarray(outputs)
    shape = ("batch",) + tuple(outputs.shape[1:])
    if requested != "auto":
        if requested not in METRICS:
            raise ValueError(f"metric must be auto or one of {', '.join(METRICS)}, got {requested!r}")
        if requested == "top1" and (outputs.ndim != 2 or outputs.shape[1] < 2):
            raise ValueError(f"metric top1 needs a (batch, classes >= 2) output; this model's output has shape "
                             f"{shape} (use the snr metric)")
        return requested
    if outputs.ndim != 2 or outputs.shape[1] < 2:
        return "snr"
    rows = outputs.sum(axis=1)
    if outputs.min() >= 0 and np.allclose(rows, 1.0, atol=1e-3):
        return "top1"
    if input_shape is not None and tuple(input_shape) == tuple(outputs.shape[1:]):
        return "snr"
    return "top1"


def margin_weights(margins: np.ndarray, quantile: float, share: float) -> np.ndarray:
    """Per-sample weights (mean 1) giving the lowest-margin `quantile` of a set the weight `share`.

    Why: a model is more confident on the data it was trained on than on unseen data, so a
    calibration set drawn from the training split holds too few near-boundary samples, and those
    are the only ones quantization flips. Importance weighting with a two-bin density-ratio model
    (low-margin band / the rest) makes the flip rate an estimate for unseen data; `share ==
    quantile` (or a set too small to have a band) gives uniform weights.
    """
    n = len(margins)
    k = int(round(quantile * n))
    w = np.ones(n, dtype=np.float64)
    if k < 1 or k >= n or share == quantile:
        return w
    low = np.argsort(margins, kind="stable")[:k]
    w[:] = (1.0 - share) * n / (n - k)
    w[low] = share * n / k
    return w


def latest_within(count: int, holds: Callable[[int], bool]) -> int:
    """Index of the latest of `count` accepted policies (a search's trail, losses growing along it) for
    which `holds(i)` is True, by bisection: the last one is asked first (usually it holds), then about
    log2(count) more. 0 when none does (the caller measures entry 0 and reports the budget missed).
    """
    if count < 1:
        raise ValueError("the trail is empty")
    last = count - 1
    if holds(last):
        return last
    lo, hi = 0, last  # hi fails; lo is the fallback
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if holds(mid):
            lo = mid
        else:
            hi = mid
    return lo


@dataclass(frozen=True)
class Metrics:
    """Prediction quality of the quantized network on one evaluation set, against the teacher.

    `loss` (with `stderr`) is the budget metric's prediction for unseen data: the top-1 drop
    (``top1``) or the relative output MSE (``snr``). `agreement` is the plain top-1 match with the
    targets (the teacher's top-1, or labels with self-distillation off; nan for ``snr``). `kl` is the
    prediction-error statistic that ranks decisions: mean KL(target || student) in nats (cross-entropy
    for one-hot labels), or the relative output MSE for ``snr``.
    """

    agreement: float
    kl: float
    samples: int
    loss: float = 0.0
    stderr: float = 0.0

    @property
    def estimate(self) -> Estimate:
        return Estimate(self.loss, self.stderr, float(self.samples))

    def to_dict(self) -> dict[str, float]:
        return {"agreement": round(self.agreement, 6), "kl": float(self.kl), "samples": self.samples,
                "loss": round(self.loss, 6), "stderr": round(self.stderr, 6)}


class Meter:
    """Measures a student's outputs on one fixed set against the teacher's (numpy only: the search,
    the CLI's check of the written file and the benchmarks all measure with this one piece).

    `metric` is a built-in name or a `metric.TaskMetric`. ``top1``: `targets` are class
    distributions (the teacher's, or one-hot labels), and `weights` (mean 1, e.g. `margin_weights`)
    make the flip rate an unseen-data estimate; with `labels` a sample's loss is
    `reference_correct` (default: the targets' top-1 is the label) minus the student's top-1 being
    the label (the labeled budget: float accuracy minus quantized accuracy). ``snr``: `targets` are
    the teacher's raw outputs. Any other metric: `targets` are the teacher's raw outputs, `inputs`
    the set's inputs, and the metric's per-sample losses are checked (shape, finite) here already,
    on the teacher against itself, so a broken metric fails before the search. `clusters` (samples
    that share an input, e.g. the validation copies) and `shift` make the standard error honest for
    unseen data (`interval`); every metric's estimate takes them.
    """

    def __init__(self, targets: np.ndarray, *, metric: Any = "top1", probabilities: bool = False,
                 weights: np.ndarray | None = None, labels: np.ndarray | None = None,
                 reference_correct: np.ndarray | None = None, inputs: np.ndarray | None = None,
                 clusters: np.ndarray | None = None, shift: float = 0.0) -> None:
        from .metric import OutputSNR, Top1, as_metric

        self.task = as_metric(metric)
        self.metric = self.task.name
        self.kind = "top1" if isinstance(self.task, Top1) else "snr" if isinstance(self.task, OutputSNR) else "task"
        self.clusters, self.shift = clusters, float(shift)
        self.samples = int(len(targets))
        self.probabilities = probabilities
        self.weights = np.ones(self.samples) if weights is None else np.asarray(weights, dtype=np.float64)
        self.inputs = inputs
        self.labels = None if labels is None else np.asarray(labels).ravel()
        if self.kind == "task":
            if inputs is None or len(inputs) != self.samples:
                raise ValueError(f"metric {self.metric!r} needs the set's inputs ({self.samples} samples)")
            self.targets = np.asarray(targets)
            self.task.check(self.targets, inputs)
            self.task.measured(self.targets, self.targets, inputs)  # shape and NaN: fail now, naming the metric
            return
        t = np.asarray(targets, dtype=np.float64)
        if self.kind == "top1":
            self.targets = t
            self.classes = np.argmax(t, axis=-1)
            self._logt = np.log(np.clip(t, 1e-12, 1.0))
            if self.labels is not None:
                if len(self.labels) != self.samples:
                    raise ValueError(f"{len(self.labels)} labels for a set of {self.samples} samples")
                self.reference_correct = (np.asarray(reference_correct, dtype=np.float64) if reference_correct
                                          is not None else (self.classes == self.labels).astype(np.float64))
        else:
            self.targets = t.reshape(len(t), -1)
            self.signal = np.sum(self.targets ** 2, axis=1)

    def student_distribution(self, outputs: np.ndarray) -> np.ndarray:
        """The student's class distribution from its raw outputs (softmax applied to logits)."""
        from ..integer_graph.graph import softmax

        y = np.asarray(outputs, dtype=np.float64)
        return y / np.maximum(y.sum(-1, keepdims=True), 1e-30) if self.probabilities else softmax(y)

    def __call__(self, outputs: np.ndarray) -> Metrics:
        y = np.asarray(outputs, dtype=np.float64)
        if len(y) != self.samples:
            raise ValueError(f"{len(y)} outputs for a set of {self.samples} samples")
        if self.kind == "task":
            losses = self.task.measured(self.targets, np.asarray(outputs), self.inputs)
            est = self.task.estimate(losses, self.weights, clusters=self.clusters, shift=self.shift)
            return Metrics(math.nan, self.task.statistic(losses), self.samples, est.loss, est.stderr)
        if self.kind == "snr":
            noise = np.sum((y.reshape(len(y), -1) - self.targets) ** 2, axis=1)
            est = predict_relative_mse(noise, self.signal, clusters=self.clusters, shift=self.shift)
            return Metrics(math.nan, est.loss, self.samples, est.loss, est.stderr)
        p = self.student_distribution(y)
        top = np.argmax(p, axis=-1)
        hit = top == self.classes
        kl = float(np.mean(np.sum(self.targets * (self._logt - np.log(np.clip(p, 1e-12, 1.0))), axis=-1)))
        losses = (~hit).astype(np.float64) if self.labels is None else self.reference_correct - (top == self.labels)
        est = self.task.estimate(losses, self.weights, clusters=self.clusters, shift=self.shift)
        return Metrics(float(np.mean(hit)), max(kl, 0.0), self.samples, est.loss, est.stderr)

    def extras(self, outputs: np.ndarray, labels: np.ndarray | None = None) -> dict[str, float]:
        """The metric's extra report figures for these outputs (e.g. AUC with labels; a top-1 metric
        with labels: float and quantized accuracy)."""
        labels = self.labels if labels is None else labels
        if self.kind == "top1":
            if labels is None:
                return {}
            top = np.argmax(self.student_distribution(outputs), axis=-1)
            return {"float_accuracy": float(np.mean(self.classes == labels)),
                    "quantized_accuracy": float(np.mean(top == labels))}
        if self.kind == "snr" or self.inputs is None:
            return {}
        return self.task.extras(self.targets, np.asarray(outputs), self.inputs, labels)


__all__ = ["METRICS", "Budget", "Estimate", "Meter", "Metrics", "choose_metric", "effective_samples",
           "latest_within", "margin_weights", "predict_drop", "predict_mean_loss", "predict_relative_mse",
           "snr_db"]
