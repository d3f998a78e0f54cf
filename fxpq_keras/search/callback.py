"""FxP-QNet as one Keras callback: train as usual, get the fixed-point policy when `fit` ends.

    cb = fxpq_keras.FxPQNetCallback(x_calib, max_accuracy_drop=0.01)
    model.fit(x, y, epochs=10, callbacks=[cb])
    cb.result.policy.to_json("policy.json")   # or fxpq_keras.export_tflite(cb.result.model)

The callback holds no search internals for the user to wire: it checks the model and the
calibration data when training begins (an unsupported layer or bad data fails before the first
epoch, not after the last), runs `FxPQNet(...).quantize` on the trained model when training ends,
and raises `SearchStoppedError` with the search's reason when it cannot lower anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._tf import keras
from ..calibration import check_calibration_data
from ..callbacks import SearchStoppedError
from ..keras_model import canonicalize
from .adaptation import model_sample_shape
from .api import FxPQNet, QuantizationResult


class FxPQNetCallback(keras.callbacks.Callback):
    """Runs the FxP-QNet search on the model being trained when `fit` ends; the result is `.result`.

    `calibration_data`: unlabeled inputs (numpy array, `tf.data.Dataset` of x or (x, y), generator or
    Keras `PyDataset`). The other keywords are `FxPQNet`'s (max_accuracy_drop, finetune_epochs for the
    opt-in distillation fine-tuning, and every `SearchOptions` field: metric, allow_unresolved, ...).
    `labels` (one per calibration sample) make the budget the accuracy drop on them, as in
    `FxPQNet.quantize`. When training begins the callback also checks that the calibration set can
    resolve the budget (`UnresolvedBudgetError` before the first epoch, not after the last).
    `policy_path` also writes the policy as JSON for `fxpq export`. With `strict` (default) a search
    that cannot lower anything raises `SearchStoppedError` naming why; with `strict=False` it only
    sets `.result`.

    Example::

        cb = FxPQNetCallback(x_calib, max_accuracy_drop=0.02, max_bits=8, verbose=0)
        model.fit(x_train, y_train, epochs=5, callbacks=[cb])
        print(cb.result.summary())
    """

    def __init__(self, calibration_data: Any, max_accuracy_drop: float = 0.01, *, labels: Any = None,
                 policy_path: str | Path | None = None, strict: bool = True, **options: Any) -> None:
        super().__init__()
        self.quantizer = FxPQNet(max_accuracy_drop, **options)  # validates the options now, not after training
        self.calibration_data = calibration_data
        self.labels = labels
        self.policy_path = None if policy_path is None else Path(policy_path)
        self.strict = bool(strict)
        self.result: QuantizationResult | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Fail before training: the model must be one fxpq quantizes, the data must fit its input, and
        the calibration set must resolve the budget (`UnresolvedBudgetError` unless allow_unresolved)."""
        canonicalize(self.model)
        shape = model_sample_shape(self.model)
        if shape is not None:  # a dataset or generator is read once here, and the array kept for the search
            self.calibration_data = check_calibration_data(self.calibration_data, shape)
            self._check_resolution()
        if self.policy_path is not None and not self.policy_path.parent.is_dir():
            raise FileNotFoundError(f"policy_path folder {self.policy_path.parent} does not exist")

    def _check_resolution(self) -> None:
        """The search's resolution rule, before training (the metric from the untrained model's outputs:
        what auto picks depends on the output's shape and a softmax, not on the weights)."""
        import numpy as np

        from .adaptation import resolution_weights
        from .budget import Budget, choose_metric, effective_samples
        from .evaluator import predict
        from .metric import resolution_error

        opts = self.quantizer.options
        if opts.allow_unresolved or not (isinstance(opts.metric, str) and opts.metric in ("auto", "top1")):
            return
        x = np.asarray(self.calibration_data)
        try:
            metric = choose_metric(predict(self.model, x[:8]), opts.metric, x.shape[1:])
        except ValueError:
            return  # the search names this problem
        if metric != "top1":
            return
        n = min(len(x), int(opts.samples))
        weights = resolution_weights(n, opts, labeled=self.labels is not None)
        budget = Budget("top1", float(opts.max_accuracy_drop), float(opts.margin_sigma))
        error = resolution_error(budget, n, effective_samples(weights))
        if error is not None:
            raise error

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """The search on the trained weights (frozen: post-training unless finetune_epochs)."""
        self.result = self.quantizer.quantize(self.model, self.calibration_data, labels=self.labels)
        if self.policy_path is not None:
            self.result.policy.to_json(str(self.policy_path))
        if self.strict and not self.result.budget_met:
            raise SearchStoppedError(f"FxP-QNet could not proceed: {self.result.message}. Loosen "
                                     "max_accuracy_drop, raise max_bits, or pass strict=False to keep the result")


__all__ = ["FxPQNetCallback", "SearchStoppedError"]
