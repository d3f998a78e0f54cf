"""Batched evaluation of a fake-quant model against cached targets (the search's inner loop).

One `tf.function` with a fixed input signature is traced once per Evaluator; formats live in
variables, so every later evaluation (thousands in a search) reuses that trace. Targets are
computed once: the float model's output distribution (self-distillation) or one-hot labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._tf import keras, tf
from ..integer_graph.graph import softmax


class OutputNotClassificationError(ValueError):
    """The model's output is not a (batch, classes >= 2) score or probability vector."""


@dataclass(frozen=True)
class Metrics:
    """Prediction quality of the quantized network on one evaluation set.

    `agreement` is the top-1 match with the targets (the teacher's top-1, or labels when
    self-distillation is switched off); `kl` is the mean KL(target || student) in nats (cross-entropy
    for one-hot labels): the prediction-error statistic that ranks decisions. `estimate` is the
    agreement with the set's low-margin samples weighted up (`margin_weights`): the search's
    estimate of the agreement on data the float model was not trained on, which the budget uses.
    It equals `agreement` when the set is unweighted.
    """

    agreement: float
    kl: float
    samples: int
    estimate: float | None = None

    def __post_init__(self) -> None:
        if self.estimate is None:
            object.__setattr__(self, "estimate", self.agreement)

    def to_dict(self) -> dict[str, float]:
        return {"agreement": round(self.agreement, 6), "estimate": round(float(self.estimate), 6),
                "kl": float(self.kl), "samples": self.samples}


def target_distribution(outputs: np.ndarray, probabilities: bool) -> np.ndarray:
    """The teacher's class distribution from its raw outputs (softmax applied to logits)."""
    check_classification_output(outputs)
    return (outputs / outputs.sum(-1, keepdims=True) if probabilities else softmax(outputs)).astype(np.float32)


def teacher_margin(outputs: np.ndarray, probabilities: bool) -> np.ndarray:
    """The teacher's top-1 margin per sample: gap between its two largest logits (log-probabilities)."""
    z = np.log(np.clip(outputs / outputs.sum(-1, keepdims=True), 1e-30, 1.0)) if probabilities else outputs
    top = np.sort(np.asarray(z, dtype=np.float64), axis=-1)
    return top[:, -1] - top[:, -2]


def margin_weights(margins: np.ndarray, quantile: float, share: float) -> np.ndarray:
    """Per-sample weights (mean 1) giving the lowest-margin `quantile` of a set the weight `share`.

    Why: a model is more confident on the data it was trained on than on unseen data, so a
    calibration set drawn from the training split holds too few near-boundary samples, and those
    are the only ones quantization flips. Importance weighting with a two-bin density-ratio model
    (low-margin band / the rest) makes the agreement an estimate for unseen data; `share ==
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


def check_classification_output(outputs: np.ndarray) -> None:
    if outputs.ndim != 2 or outputs.shape[1] < 2:
        raise OutputNotClassificationError(
            f"FxP-QNet measures top-1 agreement, so the model must end in a (batch, classes) output with at least 2 "
            f"classes (logits or softmax); this model's output has shape {('batch',) + tuple(outputs.shape[1:])}. "
            f"Regression outputs are not supported.")


class Evaluator:
    """Agreement and KL of `qmodel` on a fixed set `x` against target distributions `targets`.

    `weights` (one per sample, mean 1) give the weighted agreement `Metrics.estimate`.
    """

    def __init__(self, qmodel: keras.Model, x: np.ndarray, targets: np.ndarray, *, probabilities: bool,
                 weights: np.ndarray | None = None, batch_size: int = 1024) -> None:
        if len(x) == 0:
            raise ValueError("evaluation set is empty")
        self.samples = int(len(x))
        self.batch_size = int(batch_size)
        t = np.asarray(targets, dtype=np.float32)
        w = np.ones(len(x), np.float32) if weights is None else np.asarray(weights, np.float32)
        self.weights = w
        self._wsum = float(w.sum())
        starts = range(0, len(x), batch_size)
        self._x = [tf.constant(x[i:i + batch_size]) for i in starts]
        self._t = [tf.constant(t[i:i + batch_size]) for i in starts]
        self._w = [tf.constant(w[i:i + batch_size]) for i in starts]
        self._cls = [tf.constant(np.argmax(t[i:i + batch_size], -1).astype(np.int64)) for i in starts]
        self.evaluations = 0
        spec = [tf.TensorSpec((None,) + tuple(x.shape[1:]), tf.float32), tf.TensorSpec((None, t.shape[1]), tf.float32),
                tf.TensorSpec((None,), tf.int64), tf.TensorSpec((None,), tf.float32)]

        @tf.function(input_signature=spec)
        def sums(xb: tf.Tensor, tb: tf.Tensor, cb: tf.Tensor, wb: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
            y = qmodel(xb, training=False)
            p = y / tf.reduce_sum(y, -1, keepdims=True) if probabilities else tf.nn.softmax(y)
            logp = tf.math.log(tf.clip_by_value(p, 1e-12, 1.0))
            logt = tf.math.log(tf.clip_by_value(tb, 1e-12, 1.0))
            kl = tf.reduce_sum(tb * (logt - logp), -1)
            agree = tf.cast(tf.equal(tf.argmax(p, -1), cb), tf.float32)
            return tf.reduce_sum(agree), tf.reduce_sum(kl), tf.reduce_sum(agree * wb)

        self._sums = sums

    def __call__(self) -> Metrics:
        """Evaluate the model with the formats currently written in its variables."""
        agree = kl = wagree = 0.0
        for xb, tb, cb, wb in zip(self._x, self._t, self._cls, self._w):
            a, k, wa = self._sums(xb, tb, cb, wb)
            agree += float(a)
            kl += float(k)
            wagree += float(wa)
        self.evaluations += 1
        return Metrics(agree / self.samples, max(kl / self.samples, 0.0), self.samples,
                       min(wagree / self._wsum, 1.0))


def predict(qmodel: keras.Model, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Outputs of a (fake-quant or float) model, batched, without Keras' predict-loop overhead."""
    return np.concatenate([np.asarray(qmodel(tf.constant(x[i:i + batch_size]), training=False))
                           for i in range(0, len(x), batch_size)]) if len(x) else np.zeros((0,))


__all__ = ["Evaluator", "Metrics", "OutputNotClassificationError", "check_classification_output", "margin_weights",
           "predict", "softmax", "target_distribution", "teacher_margin"]
