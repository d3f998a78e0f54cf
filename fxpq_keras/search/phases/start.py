"""Start: the fracs of the activations stock ops hold at 8 bits, chosen once (docs/algorithm.md
"Stock ops: fixed-width layers"); the start policy itself is `space.start_policy`."""

from __future__ import annotations

from .. import space
from ..run import SearchRun
from ..state import SearchState


def tune_fixed_fracs(search: SearchRun) -> None:
    """Mechanism 3 for the activations stock ops hold at 8 bits: no bit step ever lowers them,
    so their frac is chosen here, once, by the network's KL against the teacher (in layer
    order), and the result is the start policy."""
    opts = search.options
    keys = space.stock_fixed_keys(search.start_policy)
    if not keys or not (opts.error_statistics_frac and opts.dynamic_fixed_point):
        return
    search._say(f"choosing the fracs of {len(keys)} activations that stock ops hold at 8 bits")
    policy = search.state.policy
    for key in keys:
        d = policy.get(*key)
        frac, _ = search.best_frac(policy, key, d.bits)
        policy = search._with(policy, [(key, d.bits, frac)])
    metrics = search.evaluate(policy, keep=True)
    check = metrics if search.checker is search.decide else search.evaluate(policy, check=True, keep=True)
    search.start_policy = policy.copy()
    search.state = SearchState(policy, metrics, check)
