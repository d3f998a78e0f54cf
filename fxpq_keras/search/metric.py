"""Task metrics: what the budget measures, one loss per sample, against the float model (the teacher).

The search, the validation copies, the prediction interval, the check of the written file and the
report all measure through one `TaskMetric` (docs/algorithm.md, "Task metrics"), so a user can give
the budget the metric that matters for the task (a detection score, a regression error, a ranking)
instead of only top-1 agreement or output SNR.

A metric turns (teacher outputs, student outputs, inputs) into a per-sample loss, shape (n,); its
`estimate` turns those losses into the prediction for unseen data (`budget.Estimate`), and the
budget holds when that prediction plus z standard errors is at most the limit. Plain numpy: no
TensorFlow here.

Built-ins: ``top1`` (flips of the teacher's top-1), ``snr`` (relative output error, shown as output
SNR in dB), ``anomaly`` (the change of an autoencoder's anomaly score, its reconstruction error
against the input). Any other metric is a `TaskMetric` subclass or a plain function (`as_metric`),
or ``"module:function"`` on the command line (`load_metric`).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .interval import Estimate, predict_drop, predict_mean_loss, snr_db

LossFunction = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


class UnresolvedBudgetError(ValueError):
    """The calibration set is too small to resolve the budget at its confidence: one sample's loss
    alone (one top-1 flip) would take the prediction past the limit. `samples_needed` is the
    smallest calibration set that resolves it; `samples` is the set given. The CLI exits 3;
    `allow_unresolved=True` (`--allow-unresolved`) searches anyway."""

    def __init__(self, message: str, *, samples: int, samples_needed: int) -> None:
        super().__init__(message)
        self.samples = int(samples)
        self.samples_needed = int(samples_needed)


class TaskMetric:
    """A budget metric: per-sample losses of the quantized model (student) against the float model
    (teacher), how they become a prediction for unseen data, and how the limit reads in words.

    Subclass it and override `losses` (and optionally `describe`, `format_loss`, `extras`,
    `estimate`); `name` names the metric in reports. The loss is a fraction of the task's own scale:
    the budget's limit (`max_accuracy_drop`, `--max-drop`) bounds the mean loss plus `margin_sigma`
    standard errors. Smaller is better; 0 means the student matches the teacher.

    Example::

        class MeanAbsError(fxpq_keras.TaskMetric):
            name = "mae"

            def losses(self, teacher, student, inputs):
                return np.abs(student - teacher).reshape(len(teacher), -1).mean(axis=1)

        result = fxpq_keras.FxPQNet(0.05, metric=MeanAbsError()).quantize(model, x_calib)

    `interval_shift` is the relative shift from calibration to held-out loss that the reported
    interval and the final walk-back allow for (search/interval.py): None takes the fitted
    constant of a built-in metric, and for any other metric the largest fitted one
    (`interval.DEFAULT_SHIFT`); a user who measured their task's shift sets it here.
    """

    name = "custom"
    interval_shift: float | None = None

    def losses(self, teacher: np.ndarray, student: np.ndarray, inputs: np.ndarray) -> np.ndarray:
        """One loss per sample, shape (n,): how far the student's outputs are from the teacher's."""
        raise NotImplementedError(f"{type(self).__name__}.losses")

    def estimate(self, losses: np.ndarray, weights: np.ndarray | None = None, *,
                 clusters: np.ndarray | None = None, shift: float = 0.0) -> Estimate:
        """The prediction for unseen data from per-sample losses (default: their mean, with its
        standard error; `clusters` and `shift` as `budget.predict_mean_loss` takes them)."""
        return predict_mean_loss(losses, weights, clusters=clusters, shift=shift)

    def statistic(self, losses: np.ndarray) -> float:
        """The prediction-error statistic that ranks steps and chooses fracs (default: the mean loss)."""
        return float(np.mean(losses)) if len(losses) else 0.0

    def describe(self, max_loss: float) -> str:
        """The limit in words (the summary's budget line)."""
        return f"mean {self.name} loss against the float model <= {max_loss:.4g} (metric {self.name})"

    def format_loss(self, loss: float) -> str:
        """A loss in the metric's own words."""
        return f"{self.name} loss {loss:.4g}"

    def format_number(self, loss: float) -> str:
        """A bare loss value (interval ends, limits) in the metric's unit."""
        return f"{loss:.4g}"

    def extras(self, teacher: np.ndarray, student: np.ndarray, inputs: np.ndarray,
               labels: np.ndarray | None) -> dict[str, float]:
        """Extra figures for the report (e.g. AUC with labels); {} by default."""
        return {}

    def check(self, teacher: np.ndarray, inputs: np.ndarray) -> None:
        """Fail early, naming the problem, when the model or data do not fit the metric (default: any)."""

    def samples_needed(self, max_loss: float, z: float) -> int | None:
        """Calibration samples (effective) the budget needs to be resolved; None: no count rule (a
        continuous loss is resolved when the start policy's prediction is inside the limit)."""
        return None

    def measured(self, teacher: np.ndarray, student: np.ndarray, inputs: np.ndarray) -> np.ndarray:
        """`losses`, checked: float64, one finite value per sample, or a ValueError naming the metric."""
        n = len(teacher)
        try:
            raw = self.losses(teacher, student, inputs)
        except Exception as exc:
            raise ValueError(f"metric {self.name!r} failed: {type(exc).__name__}: {exc}") from exc
        try:
            losses = np.asarray(raw, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"metric {self.name!r} returned {type(raw).__name__}, not an array of per-sample "
                             f"losses (shape ({n},))") from None
        if losses.shape != (n,):
            raise ValueError(f"metric {self.name!r} returned shape {losses.shape}; it must return one loss per "
                             f"sample, shape ({n},)")
        bad = ~np.isfinite(losses)
        if bad.any():
            raise ValueError(f"metric {self.name!r} returned NaN or inf for {int(bad.sum())} of {n} samples "
                             f"(the first at sample {int(np.flatnonzero(bad)[0])})")
        return losses

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class FunctionMetric(TaskMetric):
    """A plain function `fn(teacher_outputs, student_outputs, inputs) -> per-sample loss` as a metric.

    Example::

        def abs_error(teacher, student, inputs):
            return np.abs(student - teacher).reshape(len(teacher), -1).mean(axis=1)

        FxPQNet(0.05, metric=abs_error)   # the same as metric=FunctionMetric(abs_error)
    """

    def __init__(self, fn: LossFunction, name: str | None = None) -> None:
        if not callable(fn):
            raise TypeError(f"a metric function must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.name = name or getattr(fn, "__name__", type(fn).__name__)

    def losses(self, teacher: np.ndarray, student: np.ndarray, inputs: np.ndarray) -> np.ndarray:
        return self.fn(teacher, student, inputs)


def _one_flip_needs(max_loss: float, z: float, limit: int = 10**7) -> int:
    """Smallest n for which one loss of 1 among n samples (one top-1 flip), estimated by `predict_drop`
    (the budget's own estimator), stays within `max_loss` after z standard errors: the resolution rule
    of docs/algorithm.md ("Resolution"). `limit` + 1 when even `limit` samples do not suffice."""

    def holds(n: int) -> bool:
        flips = np.zeros(n)
        flips[0] = 1.0
        return predict_drop(flips).upper(z) <= max_loss + 1e-12

    hi = 2
    while not holds(hi):
        if hi >= limit:
            return limit + 1
        hi = min(hi * 2, limit)
    lo = hi // 2  # fails (or 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if holds(mid):
            hi = mid
        else:
            lo = mid
    return hi


class Top1(TaskMetric):
    """Top-1 drop against the float model: a sample's loss is 1 when the quantized model's top-1
    differs from the teacher's (`budget.Meter` measures it with margin weights and the KL statistic).

    Example::

        FxPQNet(0.01, metric="top1")   # or metric=Top1()
    """

    name = "top1"

    def losses(self, teacher: np.ndarray, student: np.ndarray, inputs: np.ndarray) -> np.ndarray:
        return (np.argmax(student, axis=-1) != np.argmax(teacher, axis=-1)).astype(np.float64)

    def estimate(self, losses: np.ndarray, weights: np.ndarray | None = None, *,
                 clusters: np.ndarray | None = None, shift: float = 0.0) -> Estimate:
        return predict_drop(losses, weights, clusters=clusters, shift=shift)

    def describe(self, max_loss: float) -> str:
        return f"top-1 drop against the float model <= {max_loss:.2%} (metric top1)"

    def format_loss(self, loss: float) -> str:
        return f"{loss:.2%} top-1 drop"

    def samples_needed(self, max_loss: float, z: float) -> int | None:
        return _one_flip_needs(max_loss, z)


class LabeledTop1(Top1):
    """Accuracy drop on labeled data (the paper's budget): per sample (float model correct) -
    (quantized model correct), so the mean is float accuracy minus quantized accuracy. Chosen by
    passing labels with a class-score model (`quantize(..., labels=y)`, `--labels`).

    Example::

        FxPQNet(0.01).quantize(model, x_calib, labels=y_calib)   # budget: 1 point of accuracy
    """

    name = "top1"

    def describe(self, max_loss: float) -> str:
        return (f"accuracy drop on the labeled calibration data <= {max_loss:.2%} (float accuracy minus "
                "quantized accuracy; metric top1 with labels)")

    def format_loss(self, loss: float) -> str:
        return f"{loss:.2%} accuracy drop"


class OutputSNR(TaskMetric):
    """Relative output error against the float model: noise power over signal power (output SNR =
    -10 log10 of it, in dB). A sample's loss is its noise power over the set's mean signal power, so
    the mean loss is the relative MSE.

    Example::

        FxPQNet(0.01, metric="snr")   # output SNR >= 20 dB
    """

    name = "snr"

    def losses(self, teacher: np.ndarray, student: np.ndarray, inputs: np.ndarray) -> np.ndarray:
        t = np.asarray(teacher, np.float64).reshape(len(teacher), -1)
        noise = np.sum((np.asarray(student, np.float64).reshape(len(t), -1) - t) ** 2, axis=1)
        return noise / max(float(np.mean(np.sum(t * t, axis=1))), 1e-300)

    def describe(self, max_loss: float) -> str:
        return (f"output SNR against the float model >= {snr_db(max_loss):.1f} dB "
                f"(relative MSE <= {max_loss:.2%}; metric snr)")

    def format_loss(self, loss: float) -> str:
        return f"{snr_db(loss):.1f} dB output SNR"


def anomaly_scores(outputs: np.ndarray, inputs: np.ndarray) -> np.ndarray:
    """An autoencoder's anomaly score per sample: the mean squared reconstruction error against its input."""
    x = np.asarray(inputs, np.float64).reshape(len(inputs), -1)
    return np.mean((np.asarray(outputs, np.float64).reshape(len(x), -1) - x) ** 2, axis=1)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC of `scores` for positives `labels == 1` (Mann-Whitney U by ranks, ties counted half);
    nan unless both classes are present."""
    scores = np.asarray(scores, np.float64)
    y = np.asarray(labels).ravel() == 1
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return math.nan
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    s = scores[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i:j + 1]] = 0.5 * (i + j) + 1.0
        i = j + 1
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


class AnomalyScore(TaskMetric):
    """An autoencoder's anomaly score (reconstruction error against the INPUT, not against the float
    reconstruction): a sample's loss is |score_quantized - score_float| / mean(score_float), so the
    budget limits the mean relative change of the score users threshold. With labels (1 =
    anomalous) the report adds the float and quantized ROC AUC.

    Example::

        result = FxPQNet(0.01, metric="anomaly").quantize(autoencoder, x_normal)
        result.extras   # {'auc_float': ..., 'auc_quantized': ...} with labels=
    """

    name = "anomaly"

    def check(self, teacher: np.ndarray, inputs: np.ndarray) -> None:
        shape_in, shape_out = ("batch",) + tuple(np.shape(inputs)[1:]), ("batch",) + tuple(np.shape(teacher)[1:])
        if np.prod(shape_in[1:]) != np.prod(shape_out[1:]):
            raise ValueError(f"metric anomaly needs an autoencoder (output as large as the input); this model maps "
                             f"{shape_in} to {shape_out}")

    def losses(self, teacher: np.ndarray, student: np.ndarray, inputs: np.ndarray) -> np.ndarray:
        ref = anomaly_scores(teacher, inputs)
        return np.abs(anomaly_scores(student, inputs) - ref) / max(float(np.mean(ref)), 1e-300)

    def describe(self, max_loss: float) -> str:
        return (f"anomaly score (reconstruction error against the input) within {max_loss:.2%} of the float "
                "model's, on average (metric anomaly)")

    def format_loss(self, loss: float) -> str:
        return f"{loss:.2%} mean anomaly-score change"

    def format_number(self, loss: float) -> str:
        return f"{loss:.2%}"

    def extras(self, teacher: np.ndarray, student: np.ndarray, inputs: np.ndarray,
               labels: np.ndarray | None) -> dict[str, float]:
        if labels is None:
            return {}
        a_float, a_quant = (roc_auc(anomaly_scores(o, inputs), labels) for o in (teacher, student))
        return {} if math.isnan(a_float) else {"auc_float": a_float, "auc_quantized": a_quant}


def resolution_error(budget: Any, samples: int, effective: float) -> UnresolvedBudgetError | None:
    """The error to raise when `samples` calibration samples (`effective` of them after weighting)
    cannot resolve `budget` (a `budget.Budget`), else None. The metric's rule gives the effective
    samples needed (top-1: one flip alone, plus z standard errors, must stay within the limit); the
    samples needed scale by samples / effective (docs/algorithm.md, "Resolution")."""
    need = budget.task.samples_needed(budget.max_loss, budget.z)
    if need is None or effective >= need:
        return None
    needed = int(math.ceil(need * samples / max(effective, 1e-9)))
    one = predict_drop(np.eye(1, max(int(effective), 1))[0])  # one flip in a set of the effective size
    return UnresolvedBudgetError(
        f"{samples:,} calibration samples cannot resolve the budget ({budget.describe()}) at {budget.z:g} standard "
        f"error(s): one {'wrong sample' if isinstance(budget.task, LabeledTop1) else 'top-1 flip'} alone predicts "
        f"{budget.format_loss(one.loss)} + {budget.z:g} x {one.stderr:.2%} > {budget.max_loss:.2%}; the budget needs "
        f"at least {needed:,} samples (or loosen the limit, or allow_unresolved=True / --allow-unresolved to "
        "search anyway)", samples=samples, samples_needed=needed)


BUILTIN: dict[str, type[TaskMetric]] = {"top1": Top1, "snr": OutputSNR, "anomaly": AnomalyScore}


def load_metric(spec: str) -> TaskMetric:
    """`"module:function"` (or `module:Class`, a `TaskMetric` subclass) imported as a metric: the CLI's
    `--metric`. A ValueError names what went wrong (module not importable, no such name, not callable).

    Example::

        metric = load_metric("my_metrics:abs_error")   # my_metrics.py on PYTHONPATH or in the working folder
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"metric {spec!r}: expected one of {', '.join(BUILTIN)}, auto, or module:function")
    import os
    import sys

    added = os.getcwd() not in sys.path and "" not in sys.path
    if added:  # as `python -m` would: a metrics.py in the working folder imports (only for this import)
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ValueError(f"metric {spec!r}: cannot import module {module_name!r}: {type(exc).__name__}: "
                         f"{exc}") from None
    finally:
        if added and os.getcwd() in sys.path:
            sys.path.remove(os.getcwd())
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"metric {spec!r}: module {module_name!r} has no {attr!r}")
        obj = getattr(obj, part)
    return as_metric(obj, name=spec)


def as_metric(metric: Any, name: str | None = None) -> TaskMetric:
    """A `TaskMetric` from what the API accepts: a built-in name, "module:function", a TaskMetric
    (instance or class) or a function `(teacher, student, inputs) -> per-sample loss`.

    Example::

        as_metric("anomaly"), as_metric(my_loss_function), as_metric("my_metrics:abs_error")
    """
    if isinstance(metric, TaskMetric):
        return metric
    if isinstance(metric, type) and issubclass(metric, TaskMetric):
        return metric()
    if isinstance(metric, str):
        if metric in BUILTIN:
            return BUILTIN[metric]()
        return load_metric(metric)
    if callable(metric):
        return FunctionMetric(metric, name)
    raise ValueError(f"metric must be auto, {', '.join(BUILTIN)}, 'module:function', a TaskMetric or a function "
                     f"(teacher, student, inputs) -> per-sample loss; got {type(metric).__name__}")


def metric_name(metric: Any) -> str:
    """The name a metric option shows in reports and JSON (a string for any accepted form)."""
    if isinstance(metric, str):
        return metric
    if isinstance(metric, TaskMetric):
        return metric.name
    return getattr(metric, "name", None) or getattr(metric, "__name__", type(metric).__name__)


__all__ = ["BUILTIN", "AnomalyScore", "FunctionMetric", "LabeledTop1", "OutputSNR", "TaskMetric", "Top1",
           "UnresolvedBudgetError", "anomaly_scores", "as_metric", "load_metric", "metric_name", "resolution_error",
           "roc_auc"]
