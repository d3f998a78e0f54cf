"""Batched evaluation of a fake-quant model on a fixed set (the search's inner loop).

One `tf.function` with a fixed input signature is traced once per Evaluator; formats live in
variables, so every later evaluation (thousands in a search) reuses that trace. The outputs are
measured by a `budget.Meter` (numpy), the same piece that checks a written file.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np

from .._tf import keras, tf
from ..fakequant.quantizers import InputQuantizer
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


class Traced:
    """`fn` with an identity of its own, for `tf.function`. TensorFlow's frequent-retracing detector
    counts traces per Python code object, so one closure traced once in each of many stages and
    evaluators reads to it as one function retraced (a ~600-character warning per search, a false
    alarm: each function is traced once, tests/test_search.py counts). A callable object is counted
    by itself."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)


class Stages:
    """The fake-quant model as a chain of per-layer `tf.function`s, so that a pass can start at any
    layer from stored activations of the layers before it (each traced once: formats live in
    variables). Running every stage from the first computes exactly what the whole model computes:
    the same layers on the same tensors.
    """

    def __init__(self, qmodel: keras.Model) -> None:
        layers = [layer for layer in qmodel.layers if not isinstance(layer, keras.layers.InputLayer)]
        position = {layer.name: i for i, layer in enumerate(layers)}
        self.names: list[str] = []  # the policy's layer name of every stage ("input" for the input quantizer)
        self.inputs: list[list[int]] = []  # producing stages (-1: the model input)
        self.functions: list[Any] = []
        self.elements: list[int] = []  # output elements per sample
        for layer in layers:
            tensors = layer.input if isinstance(layer.input, list) else [layer.input]
            src = [position.get(t._keras_history.layer.name, -1) for t in tensors]
            multi = isinstance(layer.input, list)
            inner = getattr(layer, "layer", layer)
            self.names.append("input" if isinstance(layer, InputQuantizer) else inner.name)
            self.inputs.append(src)
            self.elements.append(int(np.prod(layer.output.shape[1:])))
            specs = [tf.TensorSpec((None,) + tuple(t.shape[1:]), tf.float32) for t in tensors]
            self.functions.append(tf.function(Traced(self._stage(layer, multi)), input_signature=specs))
        self.index = {name: i for i, name in enumerate(self.names)}
        n = len(layers)
        # the last stage reading each stage's output (a pass frees activations after it)
        self.last_use = [n - 1] * n
        for j in range(n):
            readers = [k for k in range(n) if j in self.inputs[k]]
            self.last_use[j] = max(readers) if readers else n - 1

    @staticmethod
    def _stage(layer: keras.layers.Layer, multi: bool) -> Any:
        def run(*xs: tf.Tensor) -> tf.Tensor:
            return layer(list(xs) if multi else xs[0], training=False)
        return run

    def __len__(self) -> int:
        return len(self.names)

    def thinned(self) -> list[bool]:
        """Which stage outputs a thinned store keeps (half the memory, about): every stage but some
        read only by the stage right after them, never two such in a row, so a pass that needs an
        output not kept recomputes it from a kept one with one stage run (`begin`). Of the two ways
        to alternate, the one that keeps fewer elements; the model output is always kept."""
        n = len(self.names)
        best: list[bool] | None = None
        for parity in (0, 1):
            kept = [k == n - 1 or k % 2 != parity or self.last_use[k] > k + 1 for k in range(n)]
            if best is None or (sum(e for e, s in zip(self.elements, kept, strict=True) if s)
                                < sum(e for e, s in zip(self.elements, best, strict=True) if s)):
                best = kept
        assert best is not None
        return best

    @staticmethod
    def begin(start: int, stored: list[bool] | None) -> int:
        """The first stage a pass from `start` runs: `start`, or the one before it when a thinned store
        (`stored`) did not keep its output (its own inputs are kept: `thinned`)."""
        return start - 1 if start > 0 and stored is not None and not stored[start - 1] else start

    def run(self, x: tf.Tensor, start: int = 0, base: list[Any] | None = None, keep: bool = False,
            stored: list[bool] | None = None) -> list[Any]:
        """Activations of every stage on `x` (the last is the model output), stages before `start` taken
        from `base`. Without `keep` the activations no later stage reads are dropped as the pass goes;
        with `keep` and `stored` (a thinned store) only the stored ones are kept."""
        n = len(self.names)
        start = self.begin(start, stored)
        values: list[Any] = list(base[:start]) + [None] * (n - start) if start else [None] * n
        for k in range(start, n):
            values[k] = self.functions[k](*[x if j < 0 else values[j] for j in self.inputs[k]])
            for j in self.inputs[k]:
                if j >= start and self.last_use[j] == k and j != n - 1 and (not keep or (stored and not stored[j])):
                    values[j] = None
        return values


# samples per evaluation batch: smaller batches keep a stage's tensors in cache (MobileNetV1 0.25 at
# 96x96: 256 takes ~25 % less CPU than 1,024 and a quarter of the transient memory) and give the same
# outputs, bit for bit (each sample's values do not depend on the batch it is in;
# tests/test_search.py checks an evaluation at two batch sizes)
EVAL_BATCH = 256
# stored activations of one evaluator above this many bytes are thinned (`Stages.thinned`): MobileNetV1
# 0.25 at 96x96 stores ~1 MB per sample, 266 MB for the decision set and 531 MB for the check set
THIN_BYTES = 128 << 20

Formats = Mapping[tuple[str, str], Hashable]  # (layer, data structure) -> its format, as written


class Evaluator:
    """Runs `qmodel` on a fixed set `x` and measures its outputs with `meter`.

    Incremental evaluation: the evaluator keeps the activations of every layer for one *base* set of
    formats (`rebase`). Called with the formats now written (`formats`), it runs only the layers from
    the first one whose formats differ from the base, on the stored activations of the layers before
    it; the result is the same as a whole pass (the same per-layer functions on the same tensors).
    `cache_bytes` bounds the memory of the stored activations (above it: whole passes, no base);
    above `thin_bytes` they are thinned (`Stages.thinned`: about half of them, each missing one
    recomputed by one stage run when a pass needs it; the same outputs, `recomputed` counts those runs).
    """

    def __init__(self, qmodel: keras.Model, x: np.ndarray, meter: Meter, *, batch_size: int = EVAL_BATCH,
                 incremental: bool = True, cache_bytes: int = 1 << 30, thin_bytes: int = THIN_BYTES,
                 stages: Stages | None = None) -> None:
        if len(x) == 0:
            raise ValueError("evaluation set is empty")
        self.samples = int(len(x))
        self.meter = meter
        self.weights = meter.weights
        self._source, self._batch_size = x, batch_size  # (a reference: `release` drops the tensor copies)
        self._tensors: list[Any] | None = None
        self.evaluations = 0
        self.stage_runs = 0  # layers run, over all evaluations (a whole pass runs every layer once)

        def outputs(xb: tf.Tensor) -> tf.Tensor:
            return qmodel(xb, training=False)

        # the whole model in one function (incremental=False; tests count its traces)
        self._sums = tf.function(Traced(outputs),
                                 input_signature=[tf.TensorSpec((None,) + tuple(x.shape[1:]), tf.float32)])
        # (evaluators of one model share its stages: each stage is traced once)
        self.stages = (stages or Stages(qmodel)) if incremental else None
        stored_bytes = 4 * self.samples * sum(self.stages.elements) if self.stages is not None else 0
        if stored_bytes > cache_bytes:
            self.stages = None
        # which stage outputs the base keeps (None: all of them)
        self.stored = self.stages.thinned() if self.stages is not None and stored_bytes > thin_bytes else None
        self.recomputed = 0  # stage runs that remade an output a thinned store did not keep
        self._base: list[list[Any]] | None = None  # per batch: every stage's activations for base_formats
        self.base_formats: dict[tuple[str, str], Hashable] | None = None
        self._kept: tuple[dict[tuple[str, str], Hashable], list[list[Any]]] | None = None

    @property
    def _x(self) -> list[Any]:
        """The set as tensors, batch by batch (made again after `release`)."""
        if self._tensors is None:
            x, size = self._source, self._batch_size
            self._tensors = [tf.constant(x[i:i + size]) for i in range(0, len(x), size)]
        return self._tensors

    def release(self) -> None:
        """Free the stored activations and the set's tensor copies (a finished search: evaluating
        again makes them anew, with the same results)."""
        self.invalidate()
        self._tensors = None

    @property
    def full_passes(self) -> float:
        """Layers run over all evaluations, in whole passes (= evaluations without incremental runs)."""
        return self.stage_runs / len(self.stages) if self.stages is not None else float(self.stage_runs)

    @property
    def incremental(self) -> bool:
        return self.stages is not None

    def _start(self, formats: Formats) -> int:
        """The first stage whose formats differ from the base (len(stages): none differs)."""
        assert self.stages is not None and self.base_formats is not None
        changed = [self.stages.index[key[0]] for key, f in formats.items() if self.base_formats.get(key) != f]
        return min(changed) if changed else len(self.stages)

    def outputs(self, formats: Formats | None = None, keep: bool = False) -> np.ndarray:
        """The model's outputs on the set with the formats currently written in its variables
        (`formats`: what is written, for an incremental pass; `keep`: remember this pass's activations
        so that `rebase` to the same formats costs nothing)."""
        self.evaluations += 1
        if self.stages is None:
            self.stage_runs += 1
            return np.concatenate([np.asarray(self._sums(xb)) for xb in self._x])
        start = 0 if formats is None or self._base is None else self._start(formats)
        self.stage_runs += len(self.stages) - start
        keep = keep and formats is not None
        if start == len(self.stages):
            runs = self._base
        else:
            bases = self._base if start else [None] * len(self._x)
            self.recomputed += start - self.stages.begin(start, self.stored)
            runs = [self.stages.run(xb, start, base, keep, self.stored)
                    for xb, base in zip(self._x, bases, strict=True)]
        self._kept = (dict(formats), runs) if keep else None
        return np.concatenate([np.asarray(r[-1]) for r in runs])

    def __call__(self, formats: Formats | None = None, keep: bool = False) -> Metrics:
        """Evaluate the model with the formats currently written in its variables."""
        return self.meter(self.outputs(formats, keep))

    def can_adopt(self, formats: Formats) -> bool:
        """True when `rebase(formats)` costs nothing (the last kept pass had exactly these formats)."""
        return self._kept is not None and self._kept[0] == dict(formats)

    def rebase(self, formats: Formats) -> None:
        """Make the formats now written (`formats`) the base: a pass from the first changed layer,
        or nothing when the last kept pass had exactly these formats."""
        if self.stages is None:
            return
        if self.can_adopt(formats):
            assert self._kept is not None
            self._base, self.base_formats, self._kept = self._kept[1], dict(formats), None
            return
        start = 0 if self._base is None else self._start(formats)
        if start < len(self.stages):
            self.evaluations += 1
            self.stage_runs += len(self.stages) - start
            bases = self._base or [None] * len(self._x)
            self.recomputed += start - self.stages.begin(start, self.stored)
            self._base = [self.stages.run(xb, start, base, True, self.stored)
                          for xb, base in zip(self._x, bases, strict=True)]
        self.base_formats, self._kept = dict(formats), None

    def invalidate(self) -> None:
        """Forget the stored activations (the model's weights changed)."""
        self._base, self.base_formats, self._kept = None, None, None


def predict(qmodel: keras.Model, x: np.ndarray, batch_size: int = EVAL_BATCH) -> np.ndarray:
    """Outputs of a (fake-quant or float) model, batched, without Keras' predict-loop overhead."""
    return np.concatenate([np.asarray(qmodel(tf.constant(x[i:i + batch_size]), training=False))
                           for i in range(0, len(x), batch_size)]) if len(x) else np.zeros((0,))


__all__ = ["Evaluator", "Metrics", "OutputNotClassificationError", "Stages", "check_classification_output",
           "margin_weights", "predict", "softmax", "target_distribution", "teacher_margin"]
