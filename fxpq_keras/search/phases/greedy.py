"""Gradual, layer-wise lowering (mechanism 2; docs/algorithm.md): a lazy greedy over one-bit steps,
the step that saves the most (bytes, or the paper's bits) per unit of added KL first; a step that
breaks the budget freezes its data structure. A peak group (phases/peak_groups.py) competes as one
step. The heap, the parked steps and the version live on the search (`heap`, `parked`, `version`)."""

from __future__ import annotations

import heapq
from dataclasses import replace

from .. import builtin_space, speed
from ..run import SearchRun
from ..state import Candidate, Key
from . import peak_groups


def candidate(search: SearchRun, key: Key) -> Candidate | None:
    """The next lower width the objective tells apart, scored gain per added KL. A step that
    saves nothing now (an activation off the RAM peak) is parked unevaluated: score 0, stale."""
    ws = search.widths(key)
    if len(ws) < 2:
        return None
    bits = ws[-2]
    if speed.too_slow(search, search.state.policy, {key: bits}):
        # a one-bit step may cross a slow valley (16 -> 15-bit weights keep an int64 accumulator and add the
        # bit-field decoder): take the widest lower width that is not too slow, if any
        policy = search.state.policy
        faster = [w for w in reversed(ws[:-2]) if not speed.too_slow(search, policy, {key: w}, count=False)]
        if not faster:  # parked: re-scored after the next accepted step
            return Candidate(key, bits, None, None, search.version, 0.0)
        bits = faster[0]
    saved = search.gain(search.state.policy, key, bits)
    if saved <= 0:  # above the speed cap, a step that saves no byte may still save time
        saved = speed.speed_gain(search, search.state.policy, {key: bits}) * speed.SPEED_WEIGHT
    if saved <= 0:
        return Candidate(key, bits, None, None, search.version, 0.0)  # re-scored after the next accepted step
    base, also = search.state.policy, []
    if search.options.target == "builtin" and key[1] == "weights" and bits <= 4:
        # TFLM has no int16x4 kernel: int4 weights come with their activations at 8 bits, each frac
        # chosen by the same statistic (builtin_space.neighbours), as one step
        for nkey in builtin_space.neighbours(base, key[0]):
            if base.get(*nkey).bits > 8:
                if nkey in search.state.frozen or nkey not in search.keys:
                    return None
                nfrac, _ = search.best_frac(base, nkey, 8)
                saved += max(search.gain(base, nkey, 8), 0)
                base = search._with(base, [(nkey, 8, nfrac)])
                also.append((nkey, 8, nfrac))
    frac, m = search.best_frac(base, key, bits)
    added = max(m.kl - search.state.metrics.kl, 1e-7)
    return Candidate(key, bits, frac, m, search.version, saved / added, tuple(also))


def _group(cand: Candidate) -> bool:
    """A peak group (tied activations); a weights step with `also` is one step of target builtin."""
    return bool(cand.also) and cand.key[1] == "output"


def push(search: SearchRun, cand: Candidate | None) -> None:
    if cand is not None:
        heapq.heappush(search.heap, (-cand.score, search.keys.index(cand.key), cand))


def push_group(search: SearchRun) -> None:
    """Keep one peak-group step in the heap (re-formed lazily, when it comes up stale)."""
    if peak_groups.group_due(search):
        push(search, peak_groups.group_candidate(search))


def fill_heap(search: SearchRun) -> None:
    """Score every data structure not frozen (and the peak group) from the current state."""
    search.heap = []
    for key in search.keys:
        if key not in search.state.frozen:
            push(search, candidate(search, key))
    push_group(search)
    if not search.heap:
        search.finish("no data structure can be lowered")


def step(search: SearchRun) -> int:
    """Pop the best step; re-evaluate it if stale (lazy greedy); accept it or freeze its data structure
    (a peak group that breaks the budget freezes the member that costs the most error alone).
    Returns the accepted or frozen steps (0 or 1)."""
    if not search.heap:
        search.finish("every data structure is frozen or at min_bits")
        return 1
    _, _, cand = heapq.heappop(search.heap)
    if cand.metrics is None:  # parked: it saved nothing when scored
        if cand.version != search.version:
            push(search, candidate(search, cand.key))
        else:
            search.parked.append(cand)
        if not search.heap:
            search.finish("every data structure is frozen, at min_bits, or saves nothing more")
        return 0
    if cand.version != search.version:
        push(search, peak_groups.group_candidate(search) if _group(cand) else candidate(search, cand.key))
        if not search.heap:
            search.finish("every data structure is frozen, at min_bits, or saves nothing more")
        return 0
    if not try_step(search, cand):
        if _group(cand):
            push_group(search)  # without its costliest member, another set of the tied activations may do
        if search.refused_for_speed:  # a freeze may raise the speed cap's int8 reference: score the parked again
            for parked in search.parked:
                push(search, replace(parked, version=-2))
            search.parked = []
        if not search.heap:
            search.finish("every data structure is frozen or at min_bits")
        return 1
    if search.state.done:
        return 1
    for parked in search.parked:  # the peak may have moved: score them again when they come up
        push(search, replace(parked, version=-2))
    search.parked = []
    if not _group(cand):
        push(search, candidate(search, cand.key))
    push_group(search)
    if not search.heap:
        search.finish("every data structure is frozen or at min_bits")
    return 1


def try_step(search: SearchRun, cand: Candidate) -> bool:
    """Accept an evaluated step if the budget holds (True), else freeze its data structure (a peak
    group freezes the member that costs the most error alone). A met memory target finishes."""
    trial = search._with(search.state.policy, cand.changes)
    check = cand.metrics if search.checker is search.decide else search.evaluate(trial, check=True, keep=True)
    if not search.within_budget(check):
        if _group(cand):
            worst = max((k for k, _, _ in cand.changes),
                        key=lambda k: (peak_groups.alone(search, k), -search.keys.index(k)))
            search.state.frozen.add(worst)
            search.record("freeze", "/".join(worst), search.bits[worst])
            search.group_version = -1
        else:
            search.state.frozen.add(cand.key)
            search.record("freeze", cand.name, cand.bits + 1)
        return False
    search.state.policy = trial
    search.state.metrics, search.state.check = cand.metrics, check
    for key, bits, _ in cand.changes:
        search.bits[key] = bits
    search.version += 1
    search.record("lower", cand.name, cand.bits)
    if search.memory_met(trial):
        search.finish("memory target met", target_met=True)
    return True
