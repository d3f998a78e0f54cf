"""The one-call API: `FxPQNet(max_accuracy_drop=0.01).quantize(model, calibration_data)`."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .._tf import keras
from ..calibration import Calibration
from ..host import memory_size, peak_rss_bytes, trim_heap
from ..policy import Memory, Policy
from ..progress import Progress
from . import speed
from .adaptation import PrecisionSearch, SearchOptions, SearchState, Step
from .budget import Budget, Meter, Metrics, snr_db
from .speed import forced_instructions


@dataclass
class QuantizationResult:
    """What FxPQNet found: the fake-quant `.model` (formats written), its `.policy`, and how.

    The budget figures, for a report or a benchmark table:

    - `metric` ("top1", "snr", "anomaly" or a user metric's name) and `budget` (`Budget`: the metric,
      its limit `max_loss`, the confidence `z`, the `TaskMetric` measuring it as `budget.task`);
      `budget.describe()` says it in words. With labels and a class-score model the budget is the
      accuracy drop on them (`labeled_budget`).
    - `predicted_loss` with `predicted_interval` (90 %): the search's prediction, from the label-free
      calibration set, of the loss on unseen data: the top-1 drop against the float model (`top1`) or
      the relative output MSE (`snr`; `predicted_snr_db` in dB). `predicted_drop` is the same figure
      for top1 (None for snr).
    - `budget_met`: the written policy's prediction (+ `z` standard errors) is inside the limit.
      False only when even the start policy breaks the budget; `memory_target_met` likewise for a
      memory target (None without one).
    - `best_uniform_bits` / `best_uniform_policy`: the lowest uniform width (weights and
      activations) meeting the same budget on the same data (None if none does); the result is never
      larger than it (`cost`).
    - `evaluations`, `evaluated_samples`, `seconds`: the search's cost (`seconds`: the whole
      `quantize` call: calibration, building the fake-quant model, every search pass);
      `full_passes`: the layers it ran, in whole-model passes (incremental evaluation runs only
      the layers after a change); `peak_rss_bytes`: the process's peak resident memory when the
      search ended (`resource.getrusage`; None where the platform does not say).

    Example::

        result = FxPQNet(0.01).quantize(model, x_calib)
        result.budget_met, result.predicted_drop, result.device_memory.flash_bytes
        result.policy.to_json("policy.json")
    """

    model: keras.Model
    policy: Policy
    options: SearchOptions
    metrics: Metrics  # decision subset (ranks steps)
    check_metrics: Metrics  # every calibration sample: the budget's prediction
    trajectory: list[Step]
    evaluations: int
    evaluated_samples: int
    seconds: float
    message: str
    memory_target_met: bool | None
    start_policy: Policy
    budget: Budget
    budget_met: bool
    meter: Meter  # measures outputs on the inputs of the budget's prediction (see `assess`)
    budget_inputs: np.ndarray  # those inputs: the validation copies, or the calibration samples
    budget_set: str = "calibration samples"  # what budget_inputs are, in words (messages say it)
    full_passes: float = 0.0
    best_uniform_bits: int | None = None
    best_uniform_policy: Policy | None = None
    device_model: Any = None  # fxpq_keras.memory.DeviceModel of the model (None with objective "paper")
    finetune: dict[str, Any] = field(default_factory=dict)
    labeled: dict[str, Any] = field(default_factory=dict)  # label accuracy on the check set, when labels given
    extras: dict[str, Any] = field(default_factory=dict)  # the metric's report extras (anomaly: AUC with labels)
    labeled_budget: bool = False  # the budget is the accuracy drop on the labels given
    samples_needed: int | None = None  # set when the budget was searched unresolved (allow_unresolved)
    peak_rss_bytes: int | None = None  # the process's peak resident memory when the search ended
    # speed (device objective): the cap on estimated Cortex-M4 instructions (the speed_reference's x max_slowdown;
    # None: no cap) and how many steps (data structure, width) the search refused for it
    instruction_cap: float | None = None
    refused_for_speed: int = 0
    # the int8 reference of the result: every data structure at 8 bits but those the budget held above 8 bits
    speed_reference: float | None = None

    @property
    def memory(self) -> Memory:
        return self.policy.memory()

    @property
    def metric(self) -> str:
        return self.budget.metric

    @property
    def predicted_loss(self) -> float:
        return float(self.check_metrics.loss)

    @property
    def predicted_interval(self) -> tuple[float, float]:
        return self.check_metrics.estimate.interval()

    @property
    def predicted_drop(self) -> float | None:
        return self.predicted_loss if self.metric == "top1" else None

    @property
    def predicted_snr_db(self) -> float | None:
        return snr_db(self.predicted_loss) if self.metric == "snr" else None

    @property
    def objective(self) -> str:
        return self.options.objective

    def _device(self) -> Any:
        if self.device_model is None:
            from ..flatbuffer.memory import device_model_from_graph
            from ..integer_graph.lower import lower_model

            self.device_model = device_model_from_graph(lower_model(self.model), float_input=self.options.float_input)
        return self.device_model

    @property
    def device_memory(self) -> Any:
        """Device accounting of the result's file (`fxpq_keras.memory.DeviceMemory`; the fxp file, or the
        builtin one for target builtin, whose float weight scales FXP_* ops do not take): flash_bytes is
        the whole file, ram_bytes TFLM's arena, as in report.md and `fxpq inspect` (docs/format.md section 9)."""
        from ..flatbuffer import export_tflite
        from ..flatbuffer.memory import file_memory

        return file_memory(export_tflite(self.model, float_input=bool(getattr(self.options, "float_input", True)),
                                         target=self._file_target))

    @property
    def _file_target(self) -> str:
        return "builtin" if getattr(self.options, "target", "fxp") == "builtin" else "fxp"

    def cost(self, policy: Policy | None = None) -> int:
        """The objective's figure of a policy (default: the result's): device bytes (weights as stored +
        biases as stored + peak RAM) or the paper's total bits."""
        policy = policy or self.policy
        if self.objective == "device":
            return self._device().cost(policy).total_bytes
        return policy.memory().total_bits

    def instructions(self, policy: Policy | None = None) -> float | None:
        """Estimated Cortex-M4 instructions per inference of a policy's fxp file (default: the result's) in
        the C runner (fxpq_keras.instructions; None with objective "paper")."""
        if self.objective != "device":
            return None
        return self._device().instructions(policy or self.policy)

    def speed_line(self) -> str | None:
        """The speed estimate against the cap, in one line (None with objective "paper")."""
        est = self.instructions()
        if est is None:
            return None
        kernels = "TFLM's CMSIS-NN kernels" if self.options.target == "builtin" else "fxpq kernels"
        line = f"speed: estimated {est:,.0f} instructions per inference on Cortex-M4 ({kernels}, an estimate)"
        if self.instruction_cap is None:
            return line + "; no speed cap"
        from .speed import REFERENCES

        ratio = est / (self.instruction_cap / self.options.max_slowdown)
        line += (f" = {ratio:.2f}x {REFERENCES[self.options.speed_reference]} (estimated); "
                 f"cap {self.options.max_slowdown:g}x (max_slowdown) "
                 f"{'met' if est <= self.instruction_cap else 'NOT MET'}")
        if est > self.instruction_cap and self.speed_reference:
            line += (f" ({est / self.speed_reference:.2f}x the policy with every data structure at 8 bits but those "
                     "the budget holds wider)")
        if est > self.instruction_cap and self.options.target == "builtin":
            from . import builtin_space

            slow = builtin_space.int16_depthwise(self._device(), self.policy)
            if slow:
                names = ", ".join(name for name, _ in slow[:4])
                names += f" and {len(slow) - 4} more" if len(slow) > 4 else ""
                line += (f"; int16 depthwise {names}: {sum(e for _, e in slow) / est:.0%} of the estimate (TFLM's "
                         "int16 depthwise runs CMSIS-NN's generic kernel; docs/tflm.md section 6)")
        return f"{line}; {self.refused_for_speed} step(s) refused for speed"

    @property
    def best_uniform_memory(self) -> Memory | None:
        return None if self.best_uniform_policy is None else self.best_uniform_policy.memory()

    def assess(self, outputs: np.ndarray) -> tuple[Metrics, bool]:
        """Measure another realization of the model (e.g. the written .tflite run by the
        Interpreter) on `budget_inputs` with the search's own meter: (metrics, within budget)."""
        m = self.meter(outputs)
        return m, self.budget.holds(m.estimate)

    def budget_line(self) -> str:
        """The budget in force and the prediction, in one line (never contradicts `budget_met`)."""
        lo, hi = self.predicted_interval
        m = self.check_metrics
        b = self.budget
        if b.metric == "snr":
            pred = (f"predicted output SNR {snr_db(m.loss):.1f} dB (relative MSE {m.loss:.3%}, 90% interval "
                    f"{lo:.3%}..{hi:.3%})")
        elif b.metric == "top1":
            what = "accuracy drop" if self.labeled_budget else "top-1 drop"
            pred = f"predicted {what} {m.loss:.2%} (90% interval {lo:.2%}..{hi:.2%})"
        else:
            pred = (f"predicted {b.format_loss(m.loss)} (90% interval {b.task.format_number(lo)}.."
                    f"{b.task.format_number(hi)})")
        verdict = "met" if self.budget_met else "NOT MET"
        unresolved = "" if self.samples_needed is None else (
            f" (UNRESOLVED: the budget needs {self.samples_needed:,} calibration samples; searched anyway)")
        return (f"budget: {b.describe()}, with {b.z:g} standard error(s) of head-room -> {verdict}{unresolved}; "
                f"{pred} on {m.samples:,} {self.budget_set}")

    def summary(self) -> str:
        """The per-layer memory table, the budget and the search's cost."""
        m = self.check_metrics
        lines = [self.policy.summary(), "", self.budget_line()]
        if self.metric == "top1":
            what = "agreement with the float model" if self.options.self_distillation else "label accuracy"
            lines.append(f"{what} on the {self.budget_set}: {m.agreement:.2%}")
        unit = "bytes (parameter_bytes + ram_bytes)" if self.objective == "device" else "bits (paper)"
        lines.append(f"objective {self.objective}: {self.cost():,} {unit}")
        lines.append(f"device (the {self._file_target} file): {self.device_memory.summary()}")
        speed = self.speed_line()
        if speed is not None:
            lines.append(speed)
        if self.best_uniform_bits is not None:
            uniform = self.best_uniform_policy
            lines.append(f"best uniform policy within the budget: {self.best_uniform_bits} bits, "
                         f"{self.cost(uniform):,} {unit} ({uniform.memory().compression_total:.2f}x paper); "
                         f"this result {self.memory.compression_total:.2f}x paper")
        else:
            lines.append("no uniform width meets the budget")
        lines.append(f"search: {self.evaluations} network evaluations ({self.evaluated_samples:,} samples; layers "
                     f"run: {self.full_passes:.0f} whole passes) in {self.seconds:.1f} s, peak memory (RSS) "
                     f"{memory_size(self.peak_rss_bytes)}; {self.message}")
        if self.labeled:
            lb = self.labeled
            lines.append(f"labeled accuracy on {lb['samples']} check samples: float {lb['float_accuracy']:.2%}, "
                         f"quantized {lb['quantized_accuracy']:.2%}")
        if "auc_float" in self.extras:
            ex = self.extras
            lines.append(f"anomaly-score ROC AUC on {ex['samples']} labeled calibration samples: float "
                         f"{ex['auc_float']:.4f}, quantized {ex['auc_quantized']:.4f}")
        if self.finetune:
            lines.append(f"distillation fine-tuning: {self.finetune}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        lo, hi = self.predicted_interval
        return {"policy": self.policy.to_dict(), "memory": self.memory.to_dict(),
                "metric": self.metric, "max_loss": self.budget.max_loss, "budget_met": self.budget_met,
                "predicted_loss": round(self.predicted_loss, 6), "predicted_interval": [round(lo, 6), round(hi, 6)],
                "best_uniform_bits": self.best_uniform_bits, "objective": self.objective,
                "device_memory": self.device_memory.to_dict(),
                "metrics": self.metrics.to_dict(), "check_metrics": self.check_metrics.to_dict(),
                "evaluations": self.evaluations, "evaluated_samples": self.evaluated_samples,
                "full_passes": round(self.full_passes, 2), "seconds": round(self.seconds, 3),
                "peak_rss_bytes": self.peak_rss_bytes, "message": self.message,
                "memory_target_met": self.memory_target_met, "options": self.options.to_dict(),
                "trajectory": [s.to_dict() for s in self.trajectory], "finetune": self.finetune,
                "labeled": self.labeled, "extras": self.extras, "labeled_budget": self.labeled_budget,
                "samples_needed": self.samples_needed, "instructions_estimate": self.instructions(),
                "instruction_cap": self.instruction_cap, "refused_for_speed": self.refused_for_speed}


class FxPQNet:
    """FxP-QNet post-training mixed-precision dynamic fixed point (see docs/algorithm.md).

    Keyword options are those of `SearchOptions`: metric (auto | top1 | snr | anomaly | "module:function" |
    a `TaskMetric` | a function (teacher, student, inputs) -> per-sample loss), allow_unresolved (search even
    when the calibration set cannot resolve the budget; else `UnresolvedBudgetError`), memory_target (bytes),
    min_bits, max_bits, per_channel (False | True | "auto": weight fracs per tensor, per output channel, or chosen
    per layer), max_slowdown (device objective: the cap on estimated Cortex-M4 instructions, a factor of the
    speed_reference's: "int8" = the model as a TFLite int8 file in TFLM + CMSIS-NN, "uniform8" = our uniform
    8-bit file; default "auto" = 1.0 for target fxp, 1.1 for builtin; None or 0 = no cap: docs/algorithm.md
    "Speed cap"),
    data_structures, frac_offsets, samples, seed, margin_sigma, fast_start, float_input (plan the RAM of a
    float- or integer-input file), ram_first and align_ranges (True | False | "auto": "auto" also runs
    RAM-first passes, range-aligned and not, when the arena could fall, and keeps the fewest device bytes),
    and the mechanism switches dynamic_fixed_point, layerwise, error_statistics_frac, self_distillation.
    `finetune_epochs > 0` adds the opt-in distillation fine-tuning of the float weights after the
    search (no longer post-training; reported separately in `result.finetune`).
    `verbose=1` prints phases and progress to stdout (fxpq_keras/progress.py); pass a `progress`
    (a `Progress`) to choose the stream or share one with your own phase lines.

    Example::

        result = FxPQNet(max_accuracy_drop=0.01).quantize(model, x_calib)   # or a tf.data.Dataset
        print(result.summary())
        export_tflite(result.model, "model.tflite")
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

    def quantize(self, model: keras.Model, calibration_data: Any, labels: Any = None, *,
                 report_labels: Any = None) -> QuantizationResult:
        """Search a policy for `model` on `calibration_data` (unlabeled is enough: the float model is the teacher).

        `labels` (one per calibration sample): with a class-score model the budget becomes the accuracy
        drop on them (float accuracy minus quantized accuracy, the paper's budget); with the anomaly
        metric (labels 1 = anomalous) they add the ROC AUC to the report. `report_labels`: only reported
        (labeled accuracy), the budget stays label-free. Raises `UnresolvedBudgetError` when the calibration
        set cannot resolve the budget (unless `allow_unresolved`).
        """
        if labels is not None and report_labels is not None:
            raise ValueError("pass labels (a labeled budget) or report_labels (reported only), not both")
        if report_labels is not None and hasattr(calibration_data, "__len__") and (
                np.ndim(report_labels) != 1 or len(report_labels) != len(calibration_data)):
            raise ValueError(f"{np.size(report_labels)} labels for {len(calibration_data)} calibration samples")
        start = time.perf_counter()
        # the searches not kept (a capped search again, RAM first): only their cost is reported
        search, state, others = run_search(lambda: PrecisionSearch(model, calibration_data, labels=labels,
                                                                   options=self.options, verbose=self.verbose,
                                                                   progress=self.progress))
        trim_heap()
        if self.options.ram_first == "auto" and search.ram_could_fall() and not search.start_broke:
            # the greedy may have spent the budget on weight bits before a peak group's turn: also try the
            # RAM peak first, on the same calibration samples (on the model as given and, with align_ranges
            # "auto", range-aligned too), and keep whichever result holds the fewest device bytes
            tried = []
            aligns = (False, True) if self.options.align_ranges == "auto" else (bool(self.options.align_ranges),)
            for align in aligns:
                calib = search.calibration
                if align != bool(calib.channel_scales) and align:
                    calib = Calibration(calib.source_model, calib.x, align_ranges=True)
                    if not calib.channel_scales:
                        continue  # nothing to align: the same model as the first
                    # the same samples: the same blended inputs (their teacher outputs are the aligned model's)
                    calib.search_sets.update({k: v for k, v in search.calibration.search_sets.items() if k[0] == "x"})
                def ram_first_search(calib: Calibration = calib, align: bool = align, first: PrecisionSearch = search,
                                     ram: int = search.device.ram_bytes(state.policy)) -> PrecisionSearch:
                    other = PrecisionSearch(calib, labels=first.labels,
                                            options=replace(self.options, ram_first=True, align_ranges=align),
                                            verbose=self.verbose, progress=self.progress)
                    other.ram_to_beat = ram  # what RAM first is for
                    other.pick = first.pick  # the same rows of the caller's data (report-only labels follow them)
                    return other

                other, other_state, again = run_search(ram_first_search, lambda o, p=state.policy, s=search: bool(
                    o.ram_groups) and s.smaller(o.state.policy, p))  # under the cap only if it could be kept
                others += again
                what = "RAM peak first" + (", range-aligned" if calib.channel_scales else "")
                # within the speed cap first (a result above it is the one the capped search could not
                # bring under it), then the fewer device bytes
                over = speed.over_cap(other, other_state.policy), speed.over_cap(search, state.policy)
                if other.ram_groups and (over[0] < over[1] or
                                         (over[0] == over[1] and search.smaller(other_state.policy, state.policy))):
                    others.append(SearchCost.of(search))
                    search, state = other, other_state
                    tried.append(f"{what}: kept (fewer device bytes)")
                else:
                    others.append(SearchCost.of(other))
                    tried.append(f"{what}: " + ("more device bytes" if other.ram_groups else
                                                other_state.message.removeprefix("RAM first: ")))
                del other  # its fake-quant model, sets and traced functions go before the next pass
                gc.collect()  # (Keras layers and traced functions hold reference cycles)
                trim_heap()
            state.message += "; also tried " + "; ".join(tried)
        result = make_result(search, state, time.perf_counter() - start, also=others)
        if self.finetune_epochs:
            from ..callbacks import distillation_finetune

            result.finetune = distillation_finetune(search, epochs=self.finetune_epochs, lr=self.finetune_lr,
                                                    verbose=self.verbose)
            result.policy, result.metrics, result.check_metrics = (search.state.policy.copy(), search.state.metrics,
                                                                   search.state.check)
        result.labeled_budget = bool(search.labeled)
        result.samples_needed = search.samples_needed
        result.extras = task_extras(search)
        if search.labeled and result.extras:
            ex = result.extras
            result.labeled = {"samples": ex["samples"], "float_accuracy": ex["float_accuracy"],
                              "quantized_accuracy": ex["quantized_accuracy"]}
        elif report_labels is not None:
            result.labeled = labeled_accuracy(search, report_labels)
        result.peak_rss_bytes = peak_rss_bytes()
        return result


def run_search(make: Callable[[], PrecisionSearch], again_if: Callable[[PrecisionSearch], bool] | None = None,
               ) -> tuple[PrecisionSearch, SearchState, list[SearchCost]]:
    """Run the search `make` builds, its speed cap binding only where it must (search/speed.py `deferred`):
    without the cap first, whose result is kept when it is within the cap; a result above it is searched
    again with the cap (if `again_if` of the first search says so: a RAM-first pass whose result would not be
    kept anyway is not; nor a result whose formats the budget holds above 8 bits put it above the cap
    whatever the others, `speed.speed_floor`), and that one is kept when it is within the cap, or, both
    above it, when its bytes x instructions are fewer than the first's. Returns (the search kept, its state,
    the cost of the one not kept)."""
    search = make()
    if speed.deferred(search) or (again_if is not None and not again_if(search)):
        search.release()  # a finished search's stored activations and tensors: memory the next pass needs
        return search, search.state, []
    search.release()
    first, est = search.state.policy, search.device.instructions(search.state.policy)
    ratio = est / (search.instruction_cap / search.options.max_slowdown)
    floor = speed.speed_floor(search, first)
    if floor > search.instruction_cap:
        # the formats the budget holds above 8 bits are above the cap whatever the others: a capped search
        # could only trade bytes for a part of the gap, never close it (MobileNetV1, the autoencoder)
        search.state.message += (f"; the speed cap is out of reach under the budget: {ratio:.2f}x the reference, "
                                 f"at best {floor / (search.instruction_cap / search.options.max_slowdown):.2f}x "
                                 "with the formats the budget holds wider kept (not searched again)")
        return search, search.state, []
    search._say(f"without the speed cap the result is {ratio:.2f}x the reference: searching again under the cap")
    again = make()
    again.run()
    again.release()
    est_again = again.device.instructions(again.state.policy)
    if est_again > again.instruction_cap and est * search.cost(first) <= est_again * again.cost(again.state.policy):
        # the cap is out of reach either way (the budget holds formats our kernels run slower than int8): keep
        # the capped result only if it saves more instructions than it adds bytes, relatively (the smaller
        # product bytes x instructions; the uncapped one wins ties)
        keep, other, note = search, again, (f"under the cap {est_again / est:.3f}x the instructions for "
                                            f"{again.cost(again.state.policy) / search.cost(first):.3f}x the bytes, "
                                            "the cap still NOT MET: kept the uncapped result")
    else:
        keep, other, note = again, search, "searched again under it"
    keep.state.message += f"; without the speed cap the result was {ratio:.2f}x the reference, above the cap: {note}"
    return keep, keep.state, [SearchCost.of(other)]


@dataclass(frozen=True)
class SearchCost:
    """What a search cost (a search not kept: its policy and memory are dropped, its cost is reported)."""

    evaluations: int
    evaluated_samples: int
    full_passes: float

    @classmethod
    def of(cls, search: PrecisionSearch) -> SearchCost:
        return cls(search.evaluations, search.evaluated_samples, search.full_passes)


def make_result(search: PrecisionSearch, state: SearchState, seconds: float,
                also: list[PrecisionSearch | SearchCost] | None = None) -> QuantizationResult:
    """The result of `search`; `also`: other searches run for it (their cost is counted, their policies not)."""
    u = search.best_uniform
    runs = [search, *(also or [])]
    return QuantizationResult(model=search.qmodel, policy=state.policy.copy(), options=search.options,
                              metrics=state.metrics, check_metrics=state.check, trajectory=list(state.trajectory),
                              evaluations=sum(r.evaluations for r in runs),
                              evaluated_samples=sum(r.evaluated_samples for r in runs),
                              full_passes=sum(r.full_passes for r in runs), seconds=seconds, message=state.message,
                              memory_target_met=state.memory_target_met,
                              start_policy=search.start_policy, budget=search.budget,
                              budget_met=bool(state.budget_met), meter=search.budget_meter,
                              budget_inputs=search.budget_x, budget_set=search.budget_set,
                              best_uniform_bits=None if u is None else u[0],
                              best_uniform_policy=None if u is None else u[1].copy(), device_model=search.device,
                              peak_rss_bytes=peak_rss_bytes(),
                              instruction_cap=search.instruction_cap, refused_for_speed=len(search.refused_for_speed),
                              speed_reference=(None if search.instruction_cap is None else
                                               forced_instructions(search, state.policy)))


def task_extras(search: PrecisionSearch) -> dict[str, Any]:
    """The metric's report extras on the labeled calibration samples (anomaly: ROC AUC of float and
    quantized scores; labeled top-1: float and quantized accuracy); {} without labels."""
    if search.labels is None or search.blended or len(search.labels) != len(search.calibration.x):
        return {}
    from .evaluator import predict

    idx = search.check_index
    search._sync(search.state.policy)
    extras = search.check_meter.extras(predict(search.qmodel, search.check_x), search.labels[idx])
    return {"samples": int(len(idx)), **extras} if extras else {}


def labeled_accuracy(search: PrecisionSearch, labels: Any = None) -> dict[str, Any]:
    """Float and quantized top-1 accuracy on the check set's labels (reporting only; {} without labels).
    `labels`: one per row of the caller's calibration data (default: the search's own labels)."""
    if labels is not None:
        from .adaptation import class_labels

        labels = np.asarray(labels)
        if search.pick is not None:
            if len(labels) < len(search.pick) or (search.pick.size and search.pick.max() >= len(labels)):
                raise ValueError(f"{len(labels)} report labels for the calibration data")
            labels = labels[search.pick]
        labels = class_labels(labels, None)
    else:
        labels = search.labels
    if search.metric != "top1" or labels is None or len(labels) != len(search.calibration.x):
        return {}
    from .evaluator import predict

    idx = search.check_index
    x, y = search.calibration.x[idx], labels[idx]
    q = predict(search.qmodel, x)
    f = search.calibration.teacher[idx]
    return {"samples": int(len(idx)), "float_accuracy": float(np.mean(np.argmax(f, -1) == y)),
            "quantized_accuracy": float(np.mean(np.argmax(q, -1) == y))}


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Top-1 agreement of two output arrays."""
    return float(np.mean(np.argmax(a, -1) == np.argmax(b, -1)))


__all__ = ["FxPQNet", "QuantizationResult", "SearchCost", "agreement", "make_result", "run_search", "task_extras"]
