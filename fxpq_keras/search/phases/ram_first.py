"""RAM first (`ram_first=True`; docs/algorithm.md "Peak groups and RAM first"): from the start
policy, the RAM peak's tied activations go to one byte group by group (phases/peak_groups.py)
before any other step spends the budget; then the uniform floor, the jump and the greedy."""

from __future__ import annotations

from ..run import SearchRun
from ..state import SearchState
from . import greedy, peak_groups, uniform


def ram_step(search: SearchRun) -> SearchState:
    """Lower one peak group (accepted, or its costliest member frozen); when none is left, stop if
    the groups did not pay, else go on with the plain order."""
    cand = peak_groups.group_candidate(search)
    if cand is None:
        if not search.ram_groups:  # nothing lowered: the rest would repeat the plain greedy, minus the frozen
            search.state.done = True
            search.state.message = "RAM first: no peak group fits the budget"
            return search.state
        if search.ram_to_beat is not None and search.device.ram_bytes(search.state.policy) >= search.ram_to_beat:
            # the arena cannot end below the other result's, and the weights got less budget: stop
            search.ram_groups = 0
            search.state.done = True
            search.state.message = "RAM first: after its peak groups the arena is no smaller than the plain order's"
            return search.state
        uniform.bisect_uniform(search)
        search.phase = "jump" if search.options.fast_start else "greedy"
        if search.phase == "greedy":
            greedy.fill_heap(search)
        return search.state
    search.ram_groups += greedy.try_step(search, cand)
    return search.state
