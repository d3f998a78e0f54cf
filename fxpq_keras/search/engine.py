"""The search's evaluation engine: the calibration sets and their meters, the one fake-quant model
(built once: a format change is a variable write, never a rebuild), incremental evaluation of a
trial policy on the decision, check and validation sets, and what a policy costs under the objective.

The phases (fxpq_keras/search/phases/) decide which policies to try; they measure them only here.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import numpy as np

from .._tf import keras
from ..calibration import Calibration
from ..fakequant.model import (
    activation_format_of,
    quantize_model,
    quantizer_variables,
    requant_signature,
    weight_scale,
    write_data_structure,
    write_requantization,
)
from ..policy import Policy
from ..progress import Progress
from . import builtin_space, space, speed
from .budget import Budget, Meter, Metrics, choose_metric, effective_samples, margin_weights
from .evaluator import Evaluator, OutputNotClassificationError, predict, target_distribution, teacher_margin
from .interval import copy_clusters, interval_shift
from .metric import LabeledTop1, OutputSNR, Top1, as_metric, metric_name, resolution_error
from .state import (
    TAIL_WEIGHT,
    VALIDATION_COPIES,
    Key,
    SearchOptions,
    SearchState,
    class_labels,
    model_sample_shape,
    subset,
)


class SearchEngine:
    """Set-up and measurement of one search: sets, meters, the fake-quant model and its evaluators.

    `PrecisionSearch` (fxpq_keras/search/adaptation.py) adds the state and runs the phases on it.
    """

    state: SearchState  # the current policy, which incremental evaluation starts from (set by PrecisionSearch)

    def __init__(self, model: keras.Model | Calibration, calibration_data: Any = None, *,
                 labels: Any = None, options: SearchOptions | None = None, verbose: int = 0,
                 progress: Progress | None = None) -> None:
        self.options = options or SearchOptions()
        self.options.validate()
        if self.options.target == "builtin" and self.options.per_channel is not True:
            # conv and depthwise weights per channel, as TFLM's int4/int8 kernels take them
            self.options = replace(self.options, per_channel=True)
        opts = self.options
        self.started = time.perf_counter()
        # phase lines and the bar (fxpq_keras/progress.py); None when not verbose and none given
        self.progress = progress if progress is not None else Progress() if verbose else None
        if isinstance(model, Calibration):
            calib = model
        else:
            if calibration_data is None:
                raise ValueError("calibration data is required")
            from ..calibration import calibration_values

            # before the subset: errors name the caller's rows; datasets and generators are read here once
            data = calibration_values(calibration_data, model_sample_shape(model))
            if labels is not None and (np.ndim(labels) == 0 or len(labels) != len(data)):
                raise ValueError(f"{np.size(labels)} labels for {len(data)} calibration samples")
            pick = subset(len(data), opts.samples, opts.seed)
            self.pick = pick  # which of the caller's rows were used (report-only labels follow it)
            labels = None if labels is None else np.asarray(labels)[pick]
            self._say(f"calibrating: the float model on {len(pick)} samples")
            calib = Calibration(model, data[pick], align_ranges=opts.align_ranges is True and opts.dynamic_fixed_point)
        self.calibration = calib
        if not hasattr(self, "pick"):
            self.pick = None
        # a user's (or the anomaly) metric; the built-in top1 and snr are measured by their names
        task = None if isinstance(opts.metric, str) and opts.metric in ("auto", "top1", "snr") else \
            as_metric(opts.metric)
        if type(task) in (Top1, OutputSNR):
            task = None
        try:
            self.metric = (choose_metric(calib.teacher, metric_name(opts.metric), calib.x.shape[1:])
                           if task is None else task.name)
        except ValueError as exc:
            raise OutputNotClassificationError(str(exc)) from None
        self.labels = None if labels is None else class_labels(
            labels, calib.teacher.shape[1] if self.metric == "top1" and calib.teacher.ndim == 2 else None)
        if self.metric != "top1" and not opts.self_distillation:
            raise ValueError("self_distillation=False needs the top1 metric (labels are classes)")
        # labels with a class-score metric: the budget is the accuracy drop on them (the paper's budget)
        self.labeled = self.metric == "top1" and self.labels is not None
        if self.labeled and task is None:
            task = LabeledTop1()
        self.budget = Budget(self.metric, float(opts.max_accuracy_drop), float(opts.margin_sigma), task=task)
        self.start_broke = False  # set when the start policy already breaks the budget (adaptation.advance)
        probabilities = calib.cnodes[-1].kind == "softmax"
        n = len(calib.x)
        # the budget is checked on every sample (the estimate's variance is what limits small sets);
        # the first half ranks steps and chooses fracs (cheaper, and not the set that accepts them alone)
        n_decide = n if n < 24 else max(n // 2, 8)
        self.decision_index = np.arange(n_decide)
        self.check_index = np.arange(n)
        if self.metric != "top1":
            targets = np.asarray(calib.teacher, dtype=np.float32)
        elif opts.self_distillation:
            targets = target_distribution(calib.teacher, probabilities)
        else:
            if labels is None:
                raise ValueError("self_distillation=False decides by labels: pass labels with the calibration data")
            labels = self.labels
            if labels.shape[0] != n:
                raise ValueError(f"{labels.shape[0]} labels for {n} calibration samples")
            classes = calib.teacher.shape[1]
            if labels.min() < 0 or labels.max() >= classes:
                raise ValueError(f"labels must be class indices in 0..{classes - 1}")
            targets = np.eye(classes, dtype=np.float32)[labels]
        self.targets = targets  # what the student is measured against, one row per calibration sample
        self.probabilities = probabilities
        self.decision_meter, self.check_meter = (self._meter(idx) for idx in (self.decision_index, self.check_index))
        self.check_x = calib.x[self.check_index]
        # a blended input has no label: the labeled budget is measured on the labeled samples themselves
        self.blended = (self.metric == "top1" and opts.self_distillation and opts.blend > 0 and n > 1
                        and not self.labeled)
        # (blended sets and the teacher's outputs on them are kept with the calibration: FxPQNet's RAM-first
        # passes on the same calibration use the same arrays instead of copies of them)
        shared = calib.search_sets
        if self.blended:
            key = ("check", opts.seed, opts.blend)
            if ("x",) + key not in shared:
                partner = np.random.default_rng(opts.seed + 1).permutation(n)
                shared[("x",) + key] = ((1.0 - opts.blend) * calib.x + opts.blend * calib.x[partner]).astype(np.float32)
            self.check_x = shared[("x",) + key]
            if ("teacher",) + key not in shared:
                shared[("teacher",) + key] = predict(calib.float_model, self.check_x)
            teacher = shared[("teacher",) + key]
            self.check_meter = Meter(target_distribution(teacher, probabilities), metric="top1",
                                     probabilities=probabilities)
        # the validation copies: the same calibration inputs blended with other partners (independent
        # seed). The greedy accepts hundreds of steps on the check set, so its flip count at the end is
        # biased low (the search picks steps that happen to spare its few near-boundary inputs); the
        # final prediction and a walk-back come from copies no step was chosen on
        self.validation_x = self.validation_meter = None
        if opts.self_distillation and opts.blend > 0 and n > 1 and not self.labeled:
            key = ("validation", opts.seed, opts.blend)
            if ("x",) + key not in shared:
                rng = np.random.default_rng(opts.seed + 2)
                partners = [rng.permutation(n) for _ in range(VALIDATION_COPIES)]
                shared[("x",) + key] = np.concatenate([(1.0 - opts.blend) * calib.x + opts.blend * calib.x[partner]
                                                        for partner in partners]).astype(np.float32)
            self.validation_x = shared[("x",) + key]
            if ("teacher",) + key not in shared:
                shared[("teacher",) + key] = predict(calib.float_model, self.validation_x)
            teacher = shared[("teacher",) + key]
            # the copies of one input are not independent samples, and held-out data is not calibration
            # data: the honest interval (interval.py) clusters the copies by input and adds the shift
            honest = {"clusters": copy_clusters(VALIDATION_COPIES, n),
                      "shift": interval_shift(self.metric, self.budget.task)}
            self.validation_meter = (Meter(target_distribution(teacher, probabilities), metric="top1",
                                           probabilities=probabilities, **honest) if self.metric == "top1" else
                                     Meter(teacher, metric=self.budget.task, inputs=self.validation_x, **honest))
        self.decision_weights, self.check_weights = self.decision_meter.weights, self.check_meter.weights
        self.samples_needed = self._check_resolution()

        self.start_policy = space.start_policy(calib, opts)
        self.qmodel = quantize_model(calib, self.start_policy)
        self.qvars = quantizer_variables(self.qmodel)
        # float-weight-scale layers (target builtin): their bias quantizer's step and their output's
        # rounding follow their weight format and their input's (fakequant.model.bias_step, pre_round)
        self._stepped = {n.name: n for n in calib.cnodes
                         if "step" in self.qvars.get((n.name, "bias"), {})
                         or "pre_round" in self.qvars.get((n.name, "output"), {})}
        self._weight_scales: dict[tuple[str, int, Any], np.ndarray] = {}  # (layer, bits, frac): weight_scale
        self._written: dict[Key, tuple[Any, ...]] = {}
        self._sync(self.start_policy, force=True)
        self.device = None
        if opts.objective == "device":
            from ..flatbuffer.memory import device_model_from_graph
            from ..integer_graph.lower import lower_model

            self.device = device_model_from_graph(lower_model(self.qmodel), float_input=opts.float_input)
        # the speed cap (search/speed.py) and the steps (data structure, width) refused for it
        # target builtin runs TFLM's own CMSIS-NN kernels: their per-MAC estimate (builtin_space), and its
        # reference is the same estimate of the uniform W8A8 file (a stock int8 file, what TFLite int8 is)
        builtin = opts.target == "builtin"
        if self.device is not None and builtin:
            self.device.call_estimate = builtin_space.call_instructions
        self.instruction_cap = speed.speed_cap(self.device, self.start_policy, opts.max_slowdown,
                                               "uniform8" if builtin else opts.speed_reference)
        self.refused_for_speed: set[tuple[Key, int]] = set()
        self.decide = Evaluator(self.qmodel, calib.x[:n_decide], self.decision_meter,  # (a view, not a copy)
                                incremental=opts.incremental)
        self.checker = (self.decide if len(self.check_index) == len(self.decision_index) and not self.blended else
                        Evaluator(self.qmodel, self.check_x, self.check_meter, incremental=opts.incremental,
                                  stages=self.decide.stages))
        # whole passes: it is run a few times per search, from policies far apart
        self.validator = (None if self.validation_x is None else
                          Evaluator(self.qmodel, self.validation_x, self.validation_meter, incremental=False))
        # the set and meter behind the reported prediction (the CLI measures the written file on them)
        self.budget_x, self.budget_meter = ((self.check_x, self.check_meter) if self.validator is None else
                                            (self.validation_x, self.validation_meter))
        self.budget_set = ("calibration samples" if self.validator is None and not self.blended else
                           "blended calibration samples" if self.validator is None else
                           f"validation copies ({n:,} calibration samples, each blended with {VALIDATION_COPIES} "
                           "partners)")
        self.keys = space.changeable_keys(self.start_policy, opts)
        self._ranges = space.data_ranges(calib, opts, self.start_policy)
        self.verbose = verbose
        # the current policy's width of every data structure (what `widths` lowers from)
        self.bits = {(layer, ds): d.bits for layer, ds, d in self.start_policy.data_structures()}
        self.tail = False  # the device search's tail: steps that save no byte, by the paper bits they save

    def _meter(self, idx: np.ndarray) -> Meter:
        """The budget meter of one subset: low-margin weights for top1 (an unseen-data estimate)."""
        opts = self.options
        calib = self.calibration
        if self.metric != "top1":
            return Meter(self.targets[idx], metric=self.budget.task, inputs=calib.x[idx])
        margins = teacher_margin(calib.teacher[idx], self.probabilities)
        weights = margin_weights(margins, opts.low_margin_quantile, opts.low_margin_share)
        task = self.budget.task
        if opts.self_distillation:
            labels = None if not self.labeled else self.labels[idx]
            return Meter(self.targets[idx], metric=task, probabilities=self.probabilities, weights=weights,
                         labels=labels)
        # labels are the targets: a sample's loss is the float model's hit minus the student's
        float_hit = np.argmax(calib.teacher[idx], -1) == np.argmax(self.targets[idx], -1)
        return Meter(self.targets[idx], metric=task, probabilities=self.probabilities, weights=weights,
                     labels=np.argmax(self.targets[idx], -1), reference_correct=float_hit)

    def _check_resolution(self) -> int | None:
        """Resolution (docs/algorithm.md): the calibration samples the budget needs, from the metric's
        rule on the set that accepts every step (the check set, at its effective size). Raises
        `UnresolvedBudgetError` when there are fewer, unless `allow_unresolved`; None when the metric
        has no count rule."""
        n = len(self.check_index)
        error = resolution_error(self.budget, n, effective_samples(self.check_meter.weights))
        if error is None:
            return None
        if not self.options.allow_unresolved:
            raise error
        self._say(f"the budget is unresolved: {n:,} calibration samples, it needs {error.samples_needed:,} (one "
                  "flip alone would break it); searching anyway (allow_unresolved)")
        return error.samples_needed

    def _say(self, text: str) -> None:
        if self.progress is not None:
            self.progress.phase(text)

    # -- the space of formats ---------------------------------------------------------------------
    def frac_candidates(self, key: Key, bits: int, per_channel: bool | None = None) -> list[int | tuple[int, ...]]:
        """Candidate fracs of `key` at `bits` (`space.frac_candidates`: mechanism 3's candidates)."""
        return space.frac_candidates(self.options, self._ranges, self.start_policy.get(*key).signed, key, bits,
                                     per_channel)

    def widths(self, key: Key) -> list[int]:
        """The widths of `key` the objective tells apart, ascending, ending at the current width
        (`space.widths`: device activations are one byte or where they are)."""
        if self.options.target == "builtin":  # the current policy's width: repair may have lowered it
            return builtin_space.widths(key, self.state.policy.get(*key).bits)
        return space.widths(self.bits[key], self.options.min_bits, self.device is not None and key[1] == "output")

    # -- formats -> variables -------------------------------------------------------------------
    def _sync(self, policy: Policy, force: bool = False) -> None:
        """Write the formats that differ from what the variables hold (a few assigns per trial)."""
        for (layer, ds), sig in self._formats(policy).items():
            if force or self._written.get((layer, ds)) != sig:
                qvars = self.qvars[(layer, ds)]
                write_data_structure(qvars, policy.get(layer, ds), activation_format_of(policy, layer, ds))
                if layer in self._stepped and ds != "weights":
                    w = policy.get(layer, "weights")
                    scale = self._weight_scales.get((layer, w.bits, w.frac))
                    if scale is None:
                        scale = self._weight_scales[(layer, w.bits, w.frac)] = weight_scale(policy,
                                                                                            self._stepped[layer])
                    write_requantization(qvars, policy, self._stepped[layer], scale)
                self._written[(layer, ds)] = sig

    def _with(self, base: Policy, changes: Iterable[tuple[Key, int, Any]]) -> Policy:
        """`base` with `changes` ((key, bits, frac) each), biases constrained to their inputs."""
        trial = base.copy()
        for (layer, ds), bits, frac in changes:
            trial.set(layer, ds, bits=bits, frac=frac)
        if self.options.target == "builtin":  # int4 weights take 8-bit neighbours (TFLM has no int16x4)
            builtin_space.repair(trial, lambda key, b, signed: space.range_frac(self._ranges[key], b, signed))
        trial.constrain_biases()
        return trial

    def evaluate(self, policy: Policy, check: bool = False, keep: bool = False) -> Metrics:
        """Metrics of `policy` on the decision set (or the budget-check set). Incremental evaluation
        starts at the first layer whose formats differ from the current policy's (`Evaluator`);
        `keep` when the policy may become the current one (then adopting it costs nothing)."""
        ev = self.checker if check else self.decide
        if ev.incremental:
            state = self._formats(self.state.policy)
            if ev.base_formats != state:
                if not ev.can_adopt(state):
                    self._sync(self.state.policy)
                ev.rebase(state)
        self._sync(policy)
        return ev(self._written, keep=keep)

    def _formats(self, policy: Policy) -> dict[Key, tuple[Any, ...]]:
        """Every data structure's format as `_sync` records what it wrote, and compares to decide
        whether its variables need a write: (bits, frac, signed), and for a stepped bias or output
        what its step or pre-rounding depends on (requant_signature)."""
        return {(layer, ds): (d.bits, d.frac, d.signed) + (requant_signature(policy, layer) if ds != "weights" and
                                                           layer in self._stepped else ())
                for layer, ds, d in policy.data_structures()}

    def best_frac(self, base: Policy, key: Key, bits: int) -> tuple[Any, Metrics]:
        """Mechanism 3: the frac (among candidates) minimizing the network's KL against the teacher."""
        best = None
        for frac in self.frac_candidates(key, bits):
            m = self.evaluate(self._with(base, [(key, bits, frac)]))
            if best is None or m.kl < best[1].kl - 1e-12:
                best = (frac, m)
        assert best is not None
        return best

    def release(self) -> None:
        """Free what only evaluation needs: the activations the evaluators store for incremental
        evaluation and their sets' tensor copies (a finished search; evaluating again makes them anew,
        starting with a whole pass, with the same results)."""
        for ev in self._evaluators:
            ev.release()

    # -- counters -------------------------------------------------------------------------------
    @property
    def _evaluators(self) -> list[Evaluator]:
        """The distinct evaluators: decision set, check set, validation copies."""
        evs = [self.decide] + ([] if self.checker is self.decide else [self.checker])
        return evs + ([] if self.validator is None else [self.validator])

    @property
    def evaluations(self) -> int:
        return sum(ev.evaluations for ev in self._evaluators)

    @property
    def full_passes(self) -> float:
        """Layers run, in whole-model passes over any set (less than `evaluations` when incremental)."""
        return sum(ev.full_passes for ev in self._evaluators)

    @property
    def evaluated_samples(self) -> int:
        return sum(ev.evaluations * ev.samples for ev in self._evaluators)

    # -- budget and objective -------------------------------------------------------------------
    def within_budget(self, m: Metrics) -> bool:
        """The budget decision (`Budget.holds`): the predicted loss plus `margin_sigma` standard errors
        is inside the limit. Only whole-set (check) metrics decide."""
        return self.budget.holds(m.estimate)

    def explain(self, m: Metrics) -> str:
        """The budget decision in words: prediction + head-room against the limit."""
        b = self.budget
        upper = m.estimate.upper(b.z)
        if b.metric == "snr":
            return (f"predicted relative MSE {m.loss:.3%} + {b.z:g} standard errors = {upper:.3%} "
                    f"{'<=' if b.holds(m.estimate) else '>'} {b.max_loss:.3%}")
        if b.metric != "top1":
            number = b.task.format_number
            return (f"predicted {b.task.name} loss {number(m.loss)} + {b.z:g} standard errors = {number(upper)} "
                    f"{'<=' if b.holds(m.estimate) else '>'} {number(b.max_loss)}")
        return (f"predicted drop {m.loss:.2%} + {b.z:g} standard errors = {upper:.2%} "
                f"{'<=' if b.holds(m.estimate) else '>'} {b.max_loss:.2%}")

    def cost(self, policy: Policy) -> int:
        """What the search minimizes: device bytes (packed weights + int32 biases + peak RAM) or the
        paper's total bits (weights + biases + activations)."""
        if self.device is not None:
            return self.device.cost(policy).total_bytes
        return policy.memory().total_bits

    def gain(self, policy: Policy, key: Key, bits: int) -> int:
        """What setting `key` to `bits` saves under the objective (bytes, or bits for paper). In the
        device search's tail, a step that saves no byte is ranked by the paper bits it saves, below
        every step that saves bytes."""
        d = policy.get(*key)
        paper = d.elements * (d.bits - bits)
        if self.device is None:
            return paper
        saved = self.device.gain(policy, key[0], key[1], bits).total_bytes
        return saved * TAIL_WEIGHT + paper if self.tail and saved >= 0 else saved

    def smaller(self, a: Policy, b: Policy) -> bool:
        """Whether `a` costs less than `b`: by the objective, then (equal device bytes) the paper's bits."""
        ca, cb = self.cost(a), self.cost(b)
        return ca < cb or (ca == cb and self.device is not None and a.memory().total_bits < b.memory().total_bits)

    def memory_met(self, policy: Policy) -> bool:
        target = self.options.memory_target
        if target is None:
            return False
        return (self.cost(policy) if self.device is not None else policy.memory().total_bits / 8) <= target

    def memory_bytes(self, policy: Policy) -> float:
        """What a memory target is compared with (the objective's bytes)."""
        return self.cost(policy) if self.device is not None else policy.memory().total_bits / 8


__all__ = ["SearchEngine"]
