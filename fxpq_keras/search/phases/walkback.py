"""Walk-back (docs/algorithm.md "Honest results"): the greedy accepts hundreds of steps on the check
set, so its prediction there is biased low; at the end the latest accepted policy whose prediction
on the validation copies (inputs no step was chosen on) is within the budget becomes the result."""

from __future__ import annotations

from ...policy import Policy
from ..budget import Metrics, latest_within
from ..run import SearchRun


def validates(search: SearchRun, policy: Policy) -> bool:
    """The budget on the validation copies."""
    if search.validator is None:
        return True
    search._sync(policy)
    return search.within_budget(search.validator())


def walk_back(search: SearchRun) -> Metrics | None:
    """Selection-bias guard: the latest accepted policy (bisection along the trail, whose losses grow
    step by step) whose prediction on the validation copies is within the budget becomes the
    state; its validation metrics are returned (None without validation copies)."""
    if search.validator is None or search.state.done or not search.trail:
        return None
    trail = search.trail
    measured: dict[int, Metrics] = {}

    def holds(i: int) -> bool:
        search._sync(trail[i])
        measured[i] = search.validator()
        return search.within_budget(measured[i])

    last = len(trail) - 1
    lo = latest_within(len(trail), holds)
    if lo == last:
        return measured[last]
    if lo not in measured:
        holds(lo)
    policy = trail[lo].copy()
    search.trail = trail[:lo + 1]
    search.state.policy = policy
    search.adopt(policy)
    search.state.metrics = search.evaluate(policy)
    search.state.check = (search.state.metrics if search.checker is search.decide else
                          search.evaluate(policy, check=True))
    search._say(f"walked back {last - lo} accepted step(s): on the validation copies the later ones break "
                "the budget")
    search.record("back", f"{last - lo} step(s)", -1)
    return measured[lo]
