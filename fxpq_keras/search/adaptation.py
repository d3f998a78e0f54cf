"""FxP-QNet's gradual, layer-wise precision adaptation (docs/algorithm.md says it exactly): the driver
that runs the search's phases in order.

`PrecisionSearch` owns one fake-quant model (built once, search/engine.py) and a Policy. Every data
structure starts at `max_bits`; the search repeatedly lowers by one bit the data structure whose step
buys the most memory per unit of added prediction error (KL against the teacher), re-choosing its
frac among candidates around the range-derived one by that same statistic; a step that would break
the accuracy budget freezes its data structure. A format change is a variable write, never a rebuild.

Where each part lives:

- search/state.py: `SearchOptions`, `Candidate`, `Step`, `SearchState`;
- search/space.py: the data structures the search may change, the start policy, the frac candidates;
- search/engine.py: `SearchEngine`, the sets, meters, fake-quant model and incremental evaluation;
- search/run.py: `SearchRun`, the engine plus the state the phases change, the trajectory;
- search/phases/: one module per phase (start, uniform, ram_first, peak_groups, jump, greedy, tail,
  walkback);
- here: `PrecisionSearch.advance` and `finish`, the one place that says the order of the phases.

The four mechanisms of FxP-QNet (docs/algorithm.md, mechanisms 1-4) are switches of `SearchOptions`.
"""

from __future__ import annotations

from typing import Any

from .._tf import keras
from ..calibration import Calibration
from ..progress import Progress
from . import builtin_space
from .phases import greedy, jump, peak_groups, ram_first, start, tail, uniform, walkback
from .run import SearchRun
from .state import (
    CHANNELS,
    KINDS,
    TAIL_WEIGHT,
    VALIDATION_COPIES,
    Candidate,
    Key,
    SearchOptions,
    SearchState,
    Step,
    class_labels,
    model_sample_shape,
    progress_verbosity,
    resolution_weights,
    subset,
)


class PrecisionSearch(SearchRun):
    """The FxP-QNet search on one fake-quant model; `run()` to completion or `advance(n)` stepwise.

    The pieces behind `FxPQNet` and the callbacks, for stepping the search yourself. Example::

        search = PrecisionSearch(model, x_calib, options=SearchOptions(max_accuracy_drop=0.01))
        while not search.state.done:
            search.advance(10)
            print(search.state.policy.memory().compression_total)
    """

    def __init__(self, model: keras.Model | Calibration, calibration_data: Any = None, *,
                 labels: Any = None, options: SearchOptions | None = None, verbose: int = 0,
                 progress: Progress | None = None) -> None:
        super().__init__(model, calibration_data, labels=labels, options=options, verbose=verbose,
                         progress=progress)
        opts = self.options
        start.tune_fixed_fracs(self)
        self.record("start", "", 0)
        self.total_steps = sum(len(self.widths(k)) - 1 for k in self.keys)
        if self.progress is not None:
            self._say(f"searching: at most {self.total_steps} bit steps to lower" if self.total_steps else
                      f"nothing to lower: every data structure starts at --min-bits {opts.min_bits}")
            self.progress.start(self.total_steps, "bit step", self._shown_values())

    def refresh(self) -> None:
        """Re-measure the current policy after the weights changed (distillation fine-tuning)."""
        self.version += 1
        self.decide.invalidate()
        self.checker.invalidate()
        self.state.metrics = self.evaluate(self.state.policy)
        self.state.check = self.state.metrics if self.checker is self.decide else self.evaluate(self.state.policy, True)
        if self.state.done and self.validator is not None:  # a finished search reports the validation copies
            self._sync(self.state.policy)
            self.state.check = self.validator()
        if self.heap:
            greedy.fill_heap(self)

    def ram_could_fall(self) -> bool:
        """Whether a RAM-first order could lower the arena (`peak_groups.ram_could_fall`)."""
        return peak_groups.ram_could_fall(self)

    # -- the order of the phases ----------------------------------------------------------------
    def run(self) -> SearchState:
        while not self.state.done:
            self.advance(10**9)
        return self.state

    def advance(self, max_steps: int) -> SearchState:
        """Do up to `max_steps` accepted/frozen steps (a callback calls this between epochs).

        The order: the start policy's checks; the uniform floor (after the peak groups when RAM
        first); RAM first's peak groups; the jump; the greedy (or, mechanism 2 off, every data
        structure lowered together). `finish` then runs the walk-back, the paper tail and the
        restart from the uniform floor."""
        if self.state.done:
            return self.state
        if self.phase == "start":
            if not self.within_budget(self.state.check):
                # the verdict is this check (and the report says which set it is), not a later one on the
                # validation copies, whose smaller half-flip floor could call the same policy "met"
                self.start_broke = True
                self.budget_x, self.budget_meter = self.check_x, self.check_meter
                self.budget_set = "blended calibration samples" if self.blended else "calibration samples"
                builtin = self.options.target == "builtin"
                start = builtin_space.START if builtin else f"the {self.options.max_bits}-bit start policy"
                return self.finish(f"{start} already breaks the budget; nothing lowered"
                                   + (f"; {builtin_space.NO_STOCK_FILE}" if builtin else ""))
            if self.memory_met(self.state.policy):
                return self.finish("memory target met by the start policy")
            groups_first = self.options.ram_first is True and self.device is not None and self.options.layerwise
            if not groups_first:  # RAM first bisects it after its groups, if it goes on (it may stop there)
                uniform.bisect_uniform(self)
            self.phase = ("uniform" if not self.options.layerwise else "ram" if groups_first
                          else "jump" if self.options.fast_start else "greedy")
            if self.phase == "greedy":
                greedy.fill_heap(self)
        if self.phase == "ram":
            return ram_first.ram_step(self)
        if self.phase == "jump":
            jump.jump(self)
            self.phase = "greedy"
            if self.state.done:
                return self.state
            greedy.fill_heap(self)
            return self.state
        if self.phase == "uniform":
            return uniform.lower_all(self) if max_steps > 0 else self.state
        steps = 0
        while steps < max_steps and not self.state.done:
            steps += greedy.step(self)
        return self.state

    def finish(self, message: str, target_met: bool = False) -> SearchState:
        """The end of lowering: walk back on the validation copies, then (unless a memory target was
        met) the paper tail or a restart from the uniform floor may go on; else the search is done."""
        st = self.state
        validation = walkback.walk_back(self)
        if validation is not None and target_met and not self.memory_met(st.policy):
            target_met = False  # walked back above the memory target: say so, not "met"
            message = "the policy that met the memory target breaks the budget on the validation copies"
        if not target_met and (tail.paper_tail(self) or uniform.continue_from_uniform(self)):
            return st
        if st.done:
            return st
        st.done = True
        self._sync(st.policy)
        if validation is not None and not self.start_broke:
            st.check = validation  # the prediction no search step was chosen on
        st.budget_met = self.within_budget(st.check)
        if not st.budget_met:
            message = f"budget NOT met: {self.explain(st.check)}; {message}"
        if self.options.memory_target is not None:
            st.memory_target_met = target_met or self.memory_met(st.policy)
            if not st.memory_target_met:
                message = (f"memory target of {self.options.memory_target:,} bytes cannot be met within the "
                           f"budget (reached {self.memory_bytes(st.policy):,.0f} bytes); {message}")
        if self.restarted:
            u = self.best_uniform
            message += (f"; continued from the best uniform policy ({u[0]} bits), which was smaller than what "
                        f"lowering found ({uniform.smaller_in(self, u[1], self.first_result)})")
        st.message = message
        self.record("done", "", -1)
        if self.progress is not None:
            self.progress.finish(self._shown_values(), message)
        return st


__all__ = ["CHANNELS", "KINDS", "TAIL_WEIGHT", "VALIDATION_COPIES", "Candidate", "Key", "PrecisionSearch",
           "SearchOptions", "SearchState", "Step", "class_labels", "model_sample_shape", "progress_verbosity",
           "resolution_weights", "subset"]
