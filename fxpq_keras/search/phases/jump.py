"""The fast start (`fast_start`; docs/algorithm.md "Gradual, layer-wise precision adaptation"): a cheap
first pass before the greedy. Each data structure is probed alone for the lowest width whose added KL
is negligible, then all of them move there at once, backing off one bit together until the budget holds."""

from __future__ import annotations

from typing import Any

from .. import speed
from ..run import SearchRun
from ..state import Key
from . import peak_groups


def jump(search: SearchRun) -> None:
    """Cheap first pass: probe each data structure alone (binary search on bits) for the lowest
    width whose added KL is negligible, then move all of them there at once, backing off by one bit
    for all of them until the budget holds."""
    opts = search.options
    base = search.state.policy
    kl0, loss0 = search.state.metrics.kl, search.state.metrics.loss
    tolerance = 1e-3 * opts.max_accuracy_drop
    floors: dict[Key, tuple[int, Any]] = {}
    widths = {key: search.widths(key) for key in search.keys}
    for key in search.keys:
        ws = widths[key]
        lo, hi = 0, len(ws) - 1
        best = (hi, base.get(*key).frac)
        while lo < hi:
            mid = (lo + hi) // 2
            frac, m = search.best_frac(base, key, ws[mid])
            if key[1] == "output" and ws[mid] == peak_groups.group_target(search):
                search.alone_kl[key] = m.kl  # what a peak group keeps its cheapest members by
            if m.kl - kl0 <= tolerance and m.loss <= loss0:
                hi, best = mid, (mid, frac)
            else:
                lo = mid + 1
        floors[key] = best
    extra = 0
    while True:
        changes = []
        for key, (i, frac) in floors.items():
            ws = widths[key]
            j = min(i + extra, len(ws) - 1)
            bits = ws[j]
            if j != i:  # backing off keeps the kind of frac (per tensor or per channel) chosen
                frac = search.frac_candidates(key, bits, isinstance(frac, tuple))[0]
            changes.append((key, bits, frac))
        changes = speed.within_speed(search, base, changes)
        trial = search._with(base, changes)
        m = search.evaluate(trial, keep=True)
        check = m if search.checker is search.decide else search.evaluate(trial, check=True, keep=True)
        at_start = all(c[1] == search.bits[c[0]] for c in changes)
        if search.within_budget(check) or at_start:
            break
        extra += 1
    search.state.policy, search.state.metrics, search.state.check = trial, m, check
    for key, bits, _ in changes:
        search.bits[key] = bits
    search.version += 1
    search.record("jump", f"{len(changes)} data structures", -1)
    if search.memory_met(trial):
        # the jump may overshoot a memory target: redo it gradually from the start instead
        search.trail.pop()
        search.state.policy = base
        for layer, ds, d in base.data_structures():
            search.bits[(layer, ds)] = d.bits
        search._sync(base)
        search.state.metrics, search.state.check = search.evaluate(base), search.evaluate(base, check=True)
