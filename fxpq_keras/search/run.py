"""One run of the search: the state the phases change (the current policy, the greedy's heap, the
walk-back's trail, the uniform floor) and its record (the trajectory, the progress lines).

`SearchRun` adds that state to the evaluation engine (search/engine.py); the phases
(search/phases/) are functions of a `SearchRun`; `PrecisionSearch` (search/adaptation.py) runs
them in order and ends the run (`finish`).
"""

from __future__ import annotations

import time
from typing import Any

from .._tf import keras
from ..calibration import Calibration
from ..policy import Policy
from ..progress import Progress
from .budget import Metrics, snr_db
from .engine import SearchEngine
from .state import Candidate, Key, SearchOptions, SearchState, Step


class SearchRun(SearchEngine):
    """The engine plus the search's state, measured at the start policy (`state`)."""

    def __init__(self, model: keras.Model | Calibration, calibration_data: Any = None, *,
                 labels: Any = None, options: SearchOptions | None = None, verbose: int = 0,
                 progress: Progress | None = None) -> None:
        super().__init__(model, calibration_data, labels=labels, options=options, verbose=verbose,
                         progress=progress)
        opts = self.options
        self.trail: list[Policy] = []  # accepted policies since the start (or the restart from uniform)
        self.version = 0  # accepted steps so far: a candidate scored at an older version is stale
        self.phase = "start"  # what `PrecisionSearch.advance` runs next: start | ram | jump | greedy | uniform
        self.total_steps = 0  # bit steps there are to lower (the progress bar's total)
        # the greedy (phases/greedy.py): the scored steps, the parked ones (they saved nothing when scored)
        self.heap: list[tuple[float, int, Candidate]] = []
        self.parked: list[Candidate] = []
        # peak groups and RAM first (phases/peak_groups.py, phases/ram_first.py)
        self.ram_groups = 0  # peak groups the RAM-first phase lowered (0 when the pass gave up)
        self.ram_to_beat: int | None = None  # RAM first: stop after the groups unless the arena is below this
        self.group_version = -1  # the version the peak group was last formed at (one in the heap at a time)
        self.alone_kl: dict[Key, float] = {}  # KL of one activation alone at 8 bits (the jump's probe)
        # the uniform floor (phases/uniform.py)
        self.best_uniform: tuple[int, Policy, Metrics] | None = None
        self.restarted = False
        self.first_result: Policy | None = None  # the greedy's result before a restart from uniform
        self._say(f"evaluating the {opts.max_bits}-bit start policy ({len(self.keys)} data structures)")
        metrics = self.decide(self._written, keep=True)
        check = metrics if self.checker is self.decide else self.checker(self._written, keep=True)
        self.state = SearchState(self.start_policy.copy(), metrics, check)

    def finish(self, message: str, target_met: bool = False) -> SearchState:
        """End lowering (`PrecisionSearch.finish`: the walk-back, then the tail or the restart from
        uniform may go on). A phase calls it when nothing more can be lowered."""
        raise NotImplementedError

    def adopt(self, policy: Policy) -> None:
        """Make `policy` the current one's widths (`bits`) and make every scored step stale."""
        for layer, ds, d in policy.data_structures():
            self.bits[(layer, ds)] = d.bits
        self.version += 1

    # -- trajectory and progress ----------------------------------------------------------------
    def record(self, action: str, key: str, bits: int) -> None:
        """Append a trajectory step; an accepted policy also goes on the walk-back's trail."""
        st = self.state
        if action in ("start", "jump", "lower", "uniform"):  # an accepted policy: the walk-back's trail
            if action == "uniform":
                self.trail = []
            self.trail.append(st.policy.copy())
        mem = st.policy.memory()
        st.trajectory.append(Step(action, key, bits, self.evaluations, mem.total_bits, mem.compression_total,
                                  st.metrics.agreement, None if self.checker is self.decide else st.check.agreement,
                                  st.metrics.kl, time.perf_counter() - self.started, st.metrics.loss,
                                  None if self.checker is self.decide else st.check.loss))
        if self.progress is not None and action not in ("start", "done"):
            self.progress.update(self._steps_done(), self._shown_values())

    def _steps_done(self) -> int:
        """Bit steps behind us: every step of a frozen data structure, the lowered ones of the others
        (fewer again after a restart from the best uniform policy)."""
        left = sum(len(self.widths(k)) - 1 for k in self.keys if k not in self.state.frozen)
        return self.total_steps - left

    def _bar_values(self) -> list[tuple[str, float]]:
        st = self.state
        ds = list(st.policy.data_structures())
        avg = sum(d.bits * d.elements for _, _, d in ds) / max(sum(d.elements for _, _, d in ds), 1)
        quality = (("snr_db", min(snr_db(st.check.loss), 999.0)) if self.metric == "snr"
                   else ("agreement", st.check.agreement) if self.metric == "top1" else ("loss", st.check.loss))
        return [("bits", avg), ("memory_x", st.policy.memory().compression_total), quality]

    def _shown_values(self) -> list[tuple[str, str]]:
        """_bar_values as a person reads them in the progress lines."""
        (_, bits), (_, memory_x), (name, quality) = self._bar_values()
        shown = (f"{quality:.1f} dB" if name == "snr_db" else f"{quality:.2%}" if name == "agreement"
                 else self.budget.task.format_number(quality))
        label = {"snr_db": "output SNR", "agreement": "agreement"}.get(name, f"{self.budget.task.name} loss")
        return [("avg bits", f"{bits:.2f}"), ("memory", f"{memory_x:.2f}x smaller"), (label, shown)]


__all__ = ["SearchRun"]
