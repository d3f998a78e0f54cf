"""Keras face of the FxP-QNet search: distillation loss and metric, and callbacks for `model.fit`.

Typical loop on unlabeled calibration data (weights frozen: post-training)::

    search = PrecisionSearch(model, x_calib, options=SearchOptions(max_accuracy_drop=0.01))
    qmodel = search.qmodel
    qmodel.trainable = False
    qmodel.compile(loss=DistillationLoss(from_logits=not search.probabilities), metrics=[Agreement()])
    qmodel.fit(search.calibration.x, search.targets, epochs=100, verbose=0,
               callbacks=[PrecisionAdaptation(search, steps_per_epoch=10)])
    policy = search.state.policy

With `qmodel.trainable = True` the same loop also fine-tunes the float weights by distillation
(the opt-in mode; no longer post-training), and the callback re-measures the policy each epoch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._tf import keras, tf


class DistillationLoss(keras.losses.Loss):
    """KL(teacher || student): y_true is the teacher's class distribution, y_pred the student's output.

    Example (targets are the float model's softmax outputs; from_logits when the model ends in logits)::

        qmodel.compile(optimizer="adam", loss=DistillationLoss(from_logits=False))
        qmodel.fit(x, float_model.predict(x), epochs=2)
    """

    def __init__(self, from_logits: bool = False, name: str = "distillation_kl", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.from_logits = bool(from_logits)

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        p = tf.nn.softmax(y_pred) if self.from_logits else y_pred / tf.reduce_sum(y_pred, -1, keepdims=True)
        t = tf.clip_by_value(tf.cast(y_true, p.dtype), 1e-12, 1.0)
        return tf.reduce_sum(t * (tf.math.log(t) - tf.math.log(tf.clip_by_value(p, 1e-12, 1.0))), -1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "from_logits": self.from_logits}


class Agreement(keras.metrics.MeanMetricWrapper):
    """Top-1 agreement of the student with the teacher distribution given as y_true.

    Example::

        qmodel.compile(loss=DistillationLoss(), metrics=[Agreement()])
    """

    def __init__(self, name: str = "agreement", **kwargs: Any) -> None:
        def top1(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
            return tf.cast(tf.equal(tf.argmax(y_true, -1), tf.argmax(y_pred, -1)), tf.float32)

        super().__init__(top1, name=name, **kwargs)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype}


class SearchStoppedError(RuntimeError):
    """The search could not proceed (e.g. the start policy already breaks the budget): nothing was lowered,
    or what was kept does not meet the budget. The message is the search's reason."""


class PrecisionAdaptation(keras.callbacks.Callback):
    """Lowers precision between epochs: `steps_per_epoch` greedy steps of a PrecisionSearch.

    Adds `fxpq_bits` (average bits per element), `fxpq_memory_x` (compression vs float32) and
    `fxpq_agreement` (budget-check set) to the epoch logs; stops training when the search is done.
    When it is done without meeting the budget, `strict` (default) raises `SearchStoppedError` with
    the search's reason instead of returning quietly (the reason would only be in
    `search.state.message`).

    Most users want `FxPQNetCallback`, which needs none of this wiring. Example::

        search = PrecisionSearch(model, x_calib)
        search.qmodel.trainable = False  # post-training: only formats change
        search.qmodel.compile(loss=DistillationLoss(from_logits=not search.probabilities))
        search.qmodel.fit(search.calibration.x, search.targets, epochs=1000, shuffle=False,
                          batch_size=len(search.targets), callbacks=[PrecisionAdaptation(search)])
        policy = search.state.policy
    """

    def __init__(self, search: Any, steps_per_epoch: int = 8, *, strict: bool = True) -> None:
        super().__init__()
        if steps_per_epoch < 1:
            raise ValueError("steps_per_epoch must be >= 1")
        self.search = search
        self.steps_per_epoch = int(steps_per_epoch)
        self.strict = bool(strict)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        search = self.search
        if search.qmodel.trainable and search.qmodel.trainable_weights:
            search.refresh()  # the weights moved: every cached measurement is stale
        state = search.advance(self.steps_per_epoch)
        if logs is not None:
            for name, value in search._bar_values():
                logs[f"fxpq_{name}"] = float(value)
        if state.done:
            self.model.stop_training = True
            if self.strict and not state.budget_met:
                hint = ""
                if search.qmodel.trainable and search.qmodel.trainable_weights:
                    hint = (" The float weights are trainable (search.qmodel.trainable is True), so fit moved "
                            "them away from the teacher while the search measured: set "
                            "search.qmodel.trainable = False for post-training, or use FxPQNetCallback.")
                raise SearchStoppedError(f"FxP-QNet stopped after epoch {epoch + 1}: {state.message}.{hint}")


class SearchProgress(keras.callbacks.Callback):
    """Records (epoch, memory ratio, agreement) after each epoch: the trajectory as a fit history."""

    def __init__(self, search: Any) -> None:
        super().__init__()
        self.search = search
        self.history: list[dict[str, float]] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        st = self.search.state
        self.history.append({"epoch": epoch, "memory_x": st.policy.memory().compression_total,
                             "agreement": st.check.agreement})


def distillation_finetune(search: Any, epochs: int, lr: float = 1e-4, batch_size: int = 64,
                          verbose: int = 0) -> dict[str, Any]:
    """Opt-in: fine-tune the float weights of the searched fake-quant model by self-distillation.

    The formats stay fixed; the straight-through estimator carries gradients through the
    quantizers. Returns the check-set agreement before and after (reported separately: this is no
    longer post-training).
    """
    from .search.adaptation import progress_verbosity

    qmodel = search.qmodel
    before = search.state.check.agreement
    qmodel.trainable = True
    qmodel.compile(optimizer=keras.optimizers.Adam(lr), loss=DistillationLoss(from_logits=not search.probabilities),
                   metrics=[Agreement()])
    x = search.calibration.x[search.decision_index]
    qmodel.fit(x, search.targets[search.decision_index], epochs=epochs, batch_size=batch_size, shuffle=True,
               verbose=progress_verbosity() if verbose else 0)
    qmodel.trainable = False
    search.refresh()
    return {"epochs": epochs, "lr": lr, "check_agreement_before": round(before, 6),
            "check_agreement_after": round(search.state.check.agreement, 6),
            "trained_on": int(len(x)), "samples": int(np.sum([search.checker.samples]))}


__all__ = ["Agreement", "DistillationLoss", "PrecisionAdaptation", "SearchProgress", "SearchStoppedError",
           "distillation_finetune"]
