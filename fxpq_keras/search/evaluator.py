"""Batched evaluation of a fake-quant model against cached targets (the search's inner loop).

One `tf.function` with a fixed input signature is traced once per Evaluator; formats live in
variables, so every later evaluation (thousands in a search) reuses that trace. Targets are
computed once: the float model's output distribution (self-distillation) or one-hot labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._tf import keras, tf


class OutputNotClassificationError(ValueError):
    """The model's output is not a (batch, classes >= 2) score or probability vector."""


@dataclass(frozen=True)
class Metrics:
    """Prediction quality of the quantized network on one evaluation set.

    `agreement` is the top-1 match with the targets (the teacher's top-1, or labels when
    self-distillation is switched off); `kl` is the mean KL(target || student) in nats (cross-entropy
    for one-hot labels): the prediction-error statistic that ranks decisions.
    """

    agreement: float
    kl: float
    samples: int

    def to_dict(self) -> dict[str, float]:
        return {"agreement": round(self.agreement, 6), "kl": float(self.kl), "samples": self.samples}


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def target_distribution(outputs: np.ndarray, probabilities: bool) -> np.ndarray:
    """The teacher's class distribution from its raw outputs (softmax applied to logits)."""
    check_classification_output(outputs)
    return (outputs / outputs.sum(-1, keepdims=True) if probabilities else softmax(outputs)).astype(np.float32)


def check_classification_output(outputs: np.ndarray) -> None:
    if outputs.ndim != 2 or outputs.shape[1] < 2:
        raise OutputNotClassificationError(
            f"FxP-QNet measures top-1 agreement, so the model must end in a (batch, classes) output with at least 2 "
            f"classes (logits or softmax); this model's output has shape {('batch',) + tuple(outputs.shape[1:])}. "
            f"Regression outputs are not supported.")


class Evaluator:
    """Agreement and KL of `qmodel` on a fixed set `x` against target distributions `targets`."""

    def __init__(self, qmodel: keras.Model, x: np.ndarray, targets: np.ndarray, *, probabilities: bool,
                 batch_size: int = 1024) -> None:
        if len(x) == 0:
            raise ValueError("evaluation set is empty")
        self.samples = int(len(x))
        self.batch_size = int(batch_size)
        t = np.asarray(targets, dtype=np.float32)
        starts = range(0, len(x), batch_size)
        self._x = [tf.constant(x[i:i + batch_size]) for i in starts]
        self._t = [tf.constant(t[i:i + batch_size]) for i in starts]
        self._cls = [tf.constant(np.argmax(t[i:i + batch_size], -1).astype(np.int64)) for i in starts]
        self.evaluations = 0
        spec = [tf.TensorSpec((None,) + tuple(x.shape[1:]), tf.float32), tf.TensorSpec((None, t.shape[1]), tf.float32),
                tf.TensorSpec((None,), tf.int64)]

        @tf.function(input_signature=spec)
        def sums(xb: tf.Tensor, tb: tf.Tensor, cb: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            y = qmodel(xb, training=False)
            p = y / tf.reduce_sum(y, -1, keepdims=True) if probabilities else tf.nn.softmax(y)
            logp = tf.math.log(tf.clip_by_value(p, 1e-12, 1.0))
            logt = tf.math.log(tf.clip_by_value(tb, 1e-12, 1.0))
            kl = tf.reduce_sum(tb * (logt - logp), -1)
            agree = tf.cast(tf.equal(tf.argmax(p, -1), cb), tf.float32)
            return tf.reduce_sum(agree), tf.reduce_sum(kl)

        self._sums = sums

    def __call__(self) -> Metrics:
        """Evaluate the model with the formats currently written in its variables."""
        agree = kl = 0.0
        for xb, tb, cb in zip(self._x, self._t, self._cls):
            a, k = self._sums(xb, tb, cb)
            agree += float(a)
            kl += float(k)
        self.evaluations += 1
        return Metrics(agree / self.samples, max(kl / self.samples, 0.0), self.samples)


def predict(qmodel: keras.Model, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Outputs of a (fake-quant or float) model, batched, without Keras' predict-loop overhead."""
    return np.concatenate([np.asarray(qmodel(tf.constant(x[i:i + batch_size]), training=False))
                           for i in range(0, len(x), batch_size)]) if len(x) else np.zeros((0,))


__all__ = ["Evaluator", "Metrics", "OutputNotClassificationError", "check_classification_output", "predict",
           "softmax", "target_distribution"]
