"""The one-call API: `FxPQNet(max_accuracy_drop=0.01).quantize(model, calibration_data)`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._tf import keras
from ..policy import Memory, Policy
from ..progress import Progress
from .adaptation import PrecisionSearch, SearchOptions, SearchState, Step
from .evaluator import Metrics


@dataclass
class QuantizationResult:
    """What FxPQNet found: the fake-quant `.model` (formats written), its `.policy`, and how."""

    model: keras.Model
    policy: Policy
    options: SearchOptions
    metrics: Metrics  # decision set, against the teacher (or labels with self-distillation off)
    check_metrics: Metrics  # budget-check set
    trajectory: list[Step]
    evaluations: int
    evaluated_samples: int
    seconds: float
    message: str
    memory_target_met: bool | None
    start_policy: Policy
    finetune: dict[str, Any] = field(default_factory=dict)
    labeled: dict[str, Any] = field(default_factory=dict)  # label accuracy on the check set, when labels given

    @property
    def memory(self) -> Memory:
        return self.policy.memory()

    def summary(self) -> str:
        """The per-layer memory table, the budget and the search's cost."""
        m = self.check_metrics
        what = "agreement with the float model" if self.options.self_distillation else "label accuracy"
        lines = [self.policy.summary(), "",
                 f"budget: max top-1 drop {self.options.max_accuracy_drop:.2%} -> {what} on "
                 f"{m.samples} check samples {m.agreement:.2%} (decision set {self.metrics.agreement:.2%}, "
                 f"KL {self.metrics.kl:.2e})",
                 f"search: {self.evaluations} network evaluations ({self.evaluated_samples:,} samples) in "
                 f"{self.seconds:.1f} s; {self.message}"]
        if self.labeled:
            lb = self.labeled
            lines.append(f"labeled accuracy on {lb['samples']} check samples: float {lb['float_accuracy']:.2%}, "
                         f"quantized {lb['quantized_accuracy']:.2%}")
        if self.finetune:
            lines.append(f"distillation fine-tuning: {self.finetune}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy.to_dict(), "memory": self.memory.to_dict(),
                "metrics": self.metrics.to_dict(), "check_metrics": self.check_metrics.to_dict(),
                "evaluations": self.evaluations, "evaluated_samples": self.evaluated_samples,
                "seconds": round(self.seconds, 3), "message": self.message,
                "memory_target_met": self.memory_target_met, "options": self.options.to_dict(),
                "trajectory": [s.to_dict() for s in self.trajectory], "finetune": self.finetune,
                "labeled": self.labeled}


class FxPQNet:
    """FxP-QNet post-training mixed-precision dynamic fixed point (see docs/algorithm.md).

    Keyword options are those of `SearchOptions`: memory_target (bytes), min_bits, max_bits,
    per_channel, data_structures, frac_offsets, samples, seed, margin_sigma, fast_start, and the
    mechanism switches dynamic_fixed_point, layerwise, error_statistics_frac, self_distillation.
    `finetune_epochs > 0` adds the opt-in distillation fine-tuning of the float weights after the
    search (no longer post-training; reported separately in `result.finetune`).
    `verbose=1` prints phases and progress to stdout (fxpq_keras/progress.py); pass a `progress`
    (a `Progress`) to choose the stream or share one with your own phase lines.
    """

    def __init__(self, max_accuracy_drop: float = 0.01, *, finetune_epochs: int = 0, finetune_lr: float = 1e-4,
                 verbose: int = 1, progress: Progress | None = None, **options: Any) -> None:
        self.options = SearchOptions(max_accuracy_drop=max_accuracy_drop, **options)
        self.options.validate()
        if finetune_epochs < 0:
            raise ValueError(f"finetune_epochs must be >= 0, got {finetune_epochs}")
        self.finetune_epochs = int(finetune_epochs)
        self.finetune_lr = float(finetune_lr)
        self.verbose = verbose
        self.progress = progress

    def quantize(self, model: keras.Model, calibration_data: Any, labels: Any = None) -> QuantizationResult:
        """Search a policy for `model` on unlabeled `calibration_data` (labels only add reporting)."""
        start = time.perf_counter()
        search = PrecisionSearch(model, calibration_data, labels=labels, options=self.options, verbose=self.verbose,
                                 progress=self.progress)
        state = search.run()
        result = make_result(search, state, time.perf_counter() - start)
        if self.finetune_epochs:
            from ..callbacks import distillation_finetune

            result.finetune = distillation_finetune(search, epochs=self.finetune_epochs, lr=self.finetune_lr,
                                                    verbose=self.verbose)
            result.policy, result.metrics, result.check_metrics = (search.state.policy.copy(), search.state.metrics,
                                                                   search.state.check)
        result.labeled = labeled_accuracy(search)
        return result


def make_result(search: PrecisionSearch, state: SearchState, seconds: float) -> QuantizationResult:
    return QuantizationResult(model=search.qmodel, policy=state.policy.copy(), options=search.options,
                              metrics=state.metrics, check_metrics=state.check, trajectory=list(state.trajectory),
                              evaluations=search.evaluations, evaluated_samples=search.evaluated_samples,
                              seconds=seconds, message=state.message, memory_target_met=state.memory_target_met,
                              start_policy=search.start_policy)


def labeled_accuracy(search: PrecisionSearch) -> dict[str, Any]:
    """Float and quantized top-1 accuracy on the check set's labels (reporting only; {} without labels)."""
    if search.labels is None or len(search.labels) != len(search.calibration.x):
        return {}
    from .evaluator import predict

    idx = search.check_index
    x, y = search.calibration.x[idx], search.labels[idx]
    q = predict(search.qmodel, x)
    f = search.calibration.teacher[idx]
    return {"samples": int(len(idx)), "float_accuracy": float(np.mean(np.argmax(f, -1) == y)),
            "quantized_accuracy": float(np.mean(np.argmax(q, -1) == y))}


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Top-1 agreement of two output arrays."""
    return float(np.mean(np.argmax(a, -1) == np.argmax(b, -1)))


__all__ = ["FxPQNet", "QuantizationResult", "agreement", "make_result"]
