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

A budget holds when the upper end of the estimate's one-sided interval, ``loss + z * stderr``, is at
most the limit (`Budget.holds`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

METRICS = ("top1", "snr")


@dataclass(frozen=True)
class Estimate:
    """A predicted budget loss for unseen data with its standard error.

    `loss` is a fraction: the top-1 drop (``top1``) or noise/signal power (``snr``). `samples` is the
    (effective) number of samples behind it.
    """

    loss: float
    stderr: float
    samples: float

    def interval(self, z: float = 1.645) -> tuple[float, float]:
        """Two-sided interval (default z: 90 %), clipped at 0."""
        return max(self.loss - z * self.stderr, 0.0), self.loss + z * self.stderr

    def upper(self, z: float) -> float:
        """One-sided upper bound `loss + z * stderr` (what the budget compares with its limit)."""
        return self.loss + z * self.stderr


@dataclass(frozen=True)
class Budget:
    """The budget in force: a metric, its limit (`max_loss`, a fraction) and the confidence `z`.

    A policy is within budget when `estimate.loss + z * estimate.stderr <= max_loss`: the search
    keeps z standard errors of head-room so that the noise of a small calibration set does not
    carry unseen data outside the limit.
    """

    metric: str
    max_loss: float
    z: float = 1.0

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {self.metric!r}")
        if not 0.0 < self.max_loss < 1.0:
            raise ValueError(f"the budget's limit must be in (0, 1), got {self.max_loss!r}")
        if not 0.0 <= self.z <= 5.0:
            raise ValueError(f"the budget's confidence z must be in 0..5, got {self.z!r}")

    def holds(self, estimate: Estimate) -> bool:
        """True when the upper bound of the estimate is inside the limit."""
        return estimate.upper(self.z) <= self.max_loss + 1e-12

    def describe(self) -> str:
        """One line naming the metric and the limit in force (the summary prints it)."""
        if self.metric == "snr":
            return (f"output SNR against the float model >= {snr_db(self.max_loss):.1f} dB "
                    f"(relative MSE <= {self.max_loss:.2%}; metric snr)")
        return f"top-1 drop against the float model <= {self.max_loss:.2%} (metric top1)"

    def format_loss(self, loss: float) -> str:
        """A loss in the metric's own words: '0.42% top-1 drop' or '27.3 dB SNR'."""
        return f"{snr_db(loss):.1f} dB output SNR" if self.metric == "snr" else f"{loss:.2%} top-1 drop"


def snr_db(relative_mse: float) -> float:
    """Output SNR in dB from noise/signal power (inf for a perfect match)."""
    return math.inf if relative_mse <= 0 else -10.0 * math.log10(relative_mse)


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


def effective_samples(weights: np.ndarray) -> float:
    """Kish effective sample size of a weighted set."""
    w = np.asarray(weights, dtype=np.float64)
    return float(w.sum() ** 2 / max(float((w * w).sum()), 1e-300))


def predict_drop(flips: np.ndarray, weights: np.ndarray | None = None, base: float = 0.0, *,
                 clusters: np.ndarray | None = None, shift: float = 0.0) -> Estimate:
    """Predicted top-1 drop on unseen data: the weighted rate of per-sample losses `flips` (1 for a
    sample the quantized model gets wrong that the reference got right; with labels, `base` minus
    the weighted accuracy) and its standard error.

    The standard error is binomial at the estimate with a floor of half a flip over the effective
    sample size, so a set that saw no flip still reports an uncertainty of about 1/(2 n) (the step
    decisions' rule). With `clusters` (samples sharing an input) or a `shift`, the honest interval
    of the validation copies instead (`interval.drop_estimate`: Wilson, design effect, shift).
    """
    from .interval import binomial_estimate, drop_estimate

    if clusters is None and shift == 0.0:
        return binomial_estimate(flips, weights, base)
    return drop_estimate(flips, weights, base, clusters=clusters, shift=shift)


def predict_relative_mse(noise: np.ndarray, signal: np.ndarray, *, clusters: np.ndarray | None = None,
                         shift: float = 0.0) -> Estimate:
    """Relative output MSE (sum noise / sum signal power over samples) with a delta-method standard
    error of the ratio of means (cluster-robust with `clusters`; `shift`: `interval.relative_mse_estimate`)."""
    from .interval import relative_mse_estimate

    return relative_mse_estimate(noise, signal, clusters=clusters, shift=shift)


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

    metric ``top1``: `targets` are class distributions (the teacher's, or one-hot labels), and
    `weights` (mean 1, e.g. `margin_weights`) make the flip rate an unseen-data estimate; with
    `labels_mode` the loss is the reference accuracy `base` minus the student's. metric ``snr``:
    `targets` are the teacher's raw outputs. `clusters` (samples that share an input, e.g. the
    validation copies) and `shift` make the standard error honest for unseen data (`interval`).
    """

    def __init__(self, targets: np.ndarray, *, metric: str, probabilities: bool = False,
                 weights: np.ndarray | None = None, labels_mode: bool = False, base: float = 1.0,
                 clusters: np.ndarray | None = None, shift: float = 0.0) -> None:
        self.metric = metric
        self.clusters, self.shift = clusters, float(shift)
        self.samples = int(len(targets))
        self.probabilities = probabilities
        self.labels_mode = labels_mode
        self.base = float(base)
        self.weights = np.ones(self.samples) if weights is None else np.asarray(weights, dtype=np.float64)
        t = np.asarray(targets, dtype=np.float64)
        if metric == "top1":
            self.targets = t
            self.classes = np.argmax(t, axis=-1)
            self._logt = np.log(np.clip(t, 1e-12, 1.0))
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
        if self.metric == "snr":
            noise = np.sum((y.reshape(len(y), -1) - self.targets) ** 2, axis=1)
            est = predict_relative_mse(noise, self.signal, clusters=self.clusters, shift=self.shift)
            return Metrics(math.nan, est.loss, self.samples, est.loss, est.stderr)
        p = self.student_distribution(y)
        hit = np.argmax(p, axis=-1) == self.classes
        kl = float(np.mean(np.sum(self.targets * (self._logt - np.log(np.clip(p, 1e-12, 1.0))), axis=-1)))
        if self.labels_mode:
            est = predict_drop(-hit.astype(np.float64), self.weights, base=self.base, clusters=self.clusters,
                               shift=self.shift)
        else:
            est = predict_drop(~hit, self.weights, clusters=self.clusters, shift=self.shift)
        return Metrics(float(np.mean(hit)), max(kl, 0.0), self.samples, est.loss, est.stderr)


__all__ = ["METRICS", "Budget", "Estimate", "Meter", "Metrics", "choose_metric", "effective_samples",
           "latest_within", "margin_weights", "predict_drop", "predict_relative_mse", "snr_db"]
