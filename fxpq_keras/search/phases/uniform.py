"""The uniform floor (docs/algorithm.md "Never worse than uniform"): the lowest uniform width within
the budget, found by bisection before lowering; the search continues from it when it is smaller than
what lowering found. With mechanism 2 off (`layerwise=False`), `lower_all` is the whole search."""

from __future__ import annotations

from ...policy import Policy
from .. import builtin_space, speed
from ..budget import Metrics
from ..run import SearchRun
from ..state import SearchState
from . import greedy, walkback


def uniform_policy(search: SearchRun, bits: int) -> Policy:
    """Every changeable data structure except biases at `bits` with its range-derived frac."""
    changes = []
    for key in search.keys:
        if key[1] == "bias":
            continue
        d = search.start_policy.get(*key)
        b = builtin_space.snap(key, bits, d.signed) if search.options.target == "builtin" else bits
        changes.append((key, b, search.frac_candidates(key, b, d.per_channel)[0]))
    return search._with(search.start_policy, changes)


def best_uniform(search: SearchRun) -> tuple[int, Policy, Metrics] | None:
    """The lowest uniform width (weights and activations; biases stay at max_bits) that meets the
    budget, by bisection on the width (a few whole-set evaluations): the result is never larger."""
    lo, hi = search.options.min_bits, search.options.max_bits
    best = None
    while lo < hi:
        mid = (lo + hi) // 2
        policy = uniform_policy(search, mid)
        m = search.evaluate(policy, check=True)
        if walkback.validates(search, policy) if search.validator is not None else search.within_budget(m):
            hi, best = mid, (mid, policy, m)
        else:
            lo = mid + 1
    search._sync(search.state.policy)
    return best


def bisect_uniform(search: SearchRun) -> None:
    """Find the uniform floor (`search.best_uniform`) the result must beat."""
    if search.options.min_bits < search.options.max_bits:
        search._say("bisecting the lowest uniform width within the budget (the floor the search must beat)")
    search.best_uniform = best_uniform(search)


def smaller_in(search: SearchRun, uniform: Policy, found: Policy | None = None) -> str:
    """Which accounting the uniform policy wins in (the restart's reason, in words)."""
    found = search.state.policy if found is None else found
    parts = []
    if search.device is not None and search.cost(uniform) < search.cost(found):
        parts.append("device bytes")
    if uniform.memory().total_bits < found.memory().total_bits:
        parts.append("the paper's total bits")
    return " and ".join(parts) or "cost"


def continue_from_uniform(search: SearchRun) -> bool:
    """Never worse than uniform: if the best uniform policy that meets the budget costs less than
    what the greedy found (`smaller`: the objective's bytes or bits, the paper's bits breaking a
    tie of device bytes), continue the greedy from it (once; lowering never adds bytes or bits, so
    the result is at most the uniform's cost). True when the search goes on."""
    u = search.best_uniform
    if search.restarted or u is None or not search.options.layerwise:
        return False
    # under the speed cap, a uniform policy above it is refused only when it is also slower than the
    # result it would replace (too_slow's rule for a step): a walk-back that ends at the 16-bit start
    # (MobileNetV1 capped) restarts from the faster uniform policy as the uncapped search does
    widths = {key: u[1].get(*key).bits for key in search.keys}
    if not search.smaller(u[1], search.state.policy) or speed.too_slow(search, search.state.policy, widths,
                                                                       count=False):
        return False
    search.restarted = True
    search.tail = False  # from the uniform policy, bytes first again
    search.first_result = search.state.policy.copy()
    bits, policy, check = u
    search.state.policy = policy.copy()
    search.state.check = check
    search.state.metrics = check if search.checker is search.decide else search.evaluate(policy)
    search.state.frozen.clear()
    search.parked = []  # the heap is refilled from the new state (a parked step would come up twice)
    search.adopt(policy)
    search._say(f"continuing from the best uniform policy ({bits} bits), smaller than what lowering found "
                f"({smaller_in(search, policy, search.first_result)})")
    search.record("uniform", f"best uniform {bits}-bit", bits)
    search.phase = "greedy"
    if search.memory_met(policy):
        search.finish("memory target met", target_met=True)
    else:
        greedy.fill_heap(search)
    return True


def lower_all(search: SearchRun) -> SearchState:
    """Mechanism 2 off: all changeable data structures share one width, lowered together."""
    opts = search.options
    bits = max(search.bits[k] for k in search.keys) - 1 if search.keys else 0
    if bits < opts.min_bits:
        return search.finish("every data structure is at min_bits")
    if speed.too_slow(search, search.state.policy, {key: bits for key in search.keys if key[1] != "bias"}):
        return search.finish(f"{bits} bits everywhere would exceed the speed cap (max_slowdown)")
    trial = search.state.policy.copy()
    for key in search.keys:
        trial = search._with(trial, [(key, bits, search.frac_candidates(key, bits)[0])])
    if len(search.frac_candidates(search.keys[0], bits)) > 1:  # mechanism 3: per data structure, one pass
        for key in search.keys:
            frac, _ = search.best_frac(trial, key, bits)
            trial = search._with(trial, [(key, bits, frac)])
    m = search.evaluate(trial)
    check = m if search.checker is search.decide else search.evaluate(trial, check=True)
    if not search.within_budget(check):
        search._sync(search.state.policy)
        return search.finish(f"{bits} bits everywhere breaks the budget")
    search.state.policy, search.state.metrics, search.state.check = trial, m, check
    for key in search.keys:
        search.bits[key] = bits
    search.version += 1
    search.record("lower", "all", bits)
    if search.memory_met(trial):
        return search.finish("memory target met", target_met=True)
    return search.state
