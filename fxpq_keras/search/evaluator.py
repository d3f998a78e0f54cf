"""Batched evaluation of a fake-quant model on a fixed set (the search's inner loop).

One `tf.function` with a fixed input signature is traced once per Evaluator; formats live in
variables, so every later evaluation (thousands in a search) reuses that trace. The outputs are
measured by a `budget.Meter` (numpy), the same piece that checks a written file.
"""

from __future__ import annotations

import numpy as np

from .._tf import keras, tf
from ..integer_graph.graph import softmax
from .budget import Meter, Metrics, margin_weights


class OutputNotClassificationError(ValueError):
    """The top-1 metric was asked for a model whose output is not a (batch, classes >= 2) vector."""


def target_distribution(outputs: np.ndarray, probabilities: bool) -> np.ndarray:
    """The teacher's class distribution from its raw outputs (softmax applied to logits)."""
    check_classification_output(outputs)
    return (outputs / outputs.sum(-1, keepdims=True) if probabilities else softmax(outputs)).astype(np.float32)


def teacher_margin(outputs: np.ndarray, probabilities: bool) -> np.ndarray:
    """The teacher's top-1 margin per sample: gap between its two largest logits (log-probabilities)."""
    z = np.log(np.clip(outputs / outputs.sum(-1, keepdims=True), 1e-30, 1.0)) if probabilities else outputs
    top = np.sort(np.asarray(z, dtype=np.float64), axis=-1)
    return top[:, -1] - top[:, -2]


def check_classification_output(outputs: np.ndarray) -> None:
    if outputs.ndim != 2 or outputs.shape[1] < 2:
        raise OutputNotClassificationError(
            f"the top1 metric needs a (batch, classes) output with at least 2 classes (logits or softmax); this "
            f"model's output has shape {('batch',) + tuple(outputs.shape[1:])}: use the snr metric (--metric snr)")


class Evaluator:
    """Runs `qmodel` on a fixed set `x` and measures its outputs with `meter`."""

    def __init__(self, qmodel: keras.Model, x: np.ndarray, meter: Meter, *, batch_size: int = 1024) -> None:
        if len(x) == 0:
            raise ValueError("evaluation set is empty")
        self.samples = int(len(x))
        self.meter = meter
        self.weights = meter.weights
        self._x = [tf.constant(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
        self.evaluations = 0

        @tf.function(input_signature=[tf.TensorSpec((None,) + tuple(x.shape[1:]), tf.float32)])
        def outputs(xb: tf.Tensor) -> tf.Tensor:
            return qmodel(xb, training=False)

        self._sums = outputs  # (name kept: tests count its traces)

    def outputs(self) -> np.ndarray:
        """The model's outputs on the set with the formats currently written in its variables."""
        self.evaluations += 1
        return np.concatenate([np.asarray(self._sums(xb)) for xb in self._x])

    def __call__(self) -> Metrics:
        """Evaluate the model with the formats currently written in its variables."""
        return self.meter(self.outputs())


def predict(qmodel: keras.Model, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Outputs of a (fake-quant or float) model, batched, without Keras' predict-loop overhead."""
    return np.concatenate([np.asarray(qmodel(tf.constant(x[i:i + batch_size]), training=False))
                           for i in range(0, len(x), batch_size)]) if len(x) else np.zeros((0,))


__all__ = ["Evaluator", "Metrics", "OutputNotClassificationError", "check_classification_output", "margin_weights",
           "predict", "softmax", "target_distribution", "teacher_margin"]
