"""Peak groups and RAM first (device objective; docs/algorithm.md "Peak groups and RAM first").
Activations that tie on the RAM peak save nothing alone: a group of them lowered to one byte together
does. In the greedy one group step competes with the single steps (phases/greedy.py); RAM first
(phases/ram_first.py) lowers the groups before any other step spends the budget."""

from __future__ import annotations

from typing import Any

from .. import speed
from ..run import SearchRun
from ..state import Candidate, Key


def group_target(search: SearchRun) -> int:
    """The width a peak group is lowered to: the lowest that takes one byte."""
    return max(8, search.options.min_bits)


def alone(search: SearchRun, key: Key) -> float:
    """The KL of activation `key` alone at the group width (the jump's probe, or measured once)."""
    if key not in search.alone_kl:
        search.alone_kl[key] = search.best_frac(search.state.policy, key, group_target(search))[1].kl
    return search.alone_kl[key]


def wide_activations(search: SearchRun, frozen_too: bool = False) -> list[Key]:
    """Activations above the group width (stored in two bytes), frozen ones only if asked."""
    target = group_target(search)
    return [k for k in search.keys if k[1] == "output" and search.bits[k] > target
            and (frozen_too or k not in search.state.frozen)]


def peak_group(search: SearchRun) -> list[Key] | None:
    """Activations that tie on the RAM peak: none lowers the peak alone (each step is parked), a
    set of them together does (in a chain of equal tensors every other one must shrink). The
    members kept are those that cost the least error alone: the costliest are dropped first
    while the rest still lowers the peak, so every member is needed for the gain."""
    if search.device is None or not search.options.layerwise:
        return None
    target, policy = group_target(search), search.state.policy
    acts = wide_activations(search)
    if len(acts) < 2:
        return None
    ram = search.device.ram_bytes(policy)
    group = {k: target for k in acts}
    if search.device.ram_bytes(policy, group) >= ram:
        return None
    for key in sorted(acts, key=lambda k: (-alone(search, k), search.keys.index(k))):
        rest = {k: b for k, b in group.items() if k != key}
        if rest and search.device.ram_bytes(policy, rest) < ram:
            group = rest
    return list(group) if len(group) > 1 else None  # one member alone is an ordinary step


def group_candidate(search: SearchRun) -> Candidate | None:
    """The peak group as one step: each member's frac chosen (mechanism 3) with the members before
    it in place, scored like any step (bytes saved per added KL)."""
    search.group_version = search.version
    members = peak_group(search)
    if members is None:
        return None
    target, base = group_target(search), search.state.policy
    if speed.too_slow(search, base, {k: target for k in members}):
        return None
    changes: list[tuple[Key, int, Any]] = []
    m = search.state.metrics
    for key in members:
        frac, m = search.best_frac(search._with(base, changes), key, target)
        changes.append((key, target, frac))
    new = search.device.cost(base, {k: b for k, b, _ in changes})
    saved = search.device.cost(base).total_bytes - new.total_bytes
    added = max(m.kl - search.state.metrics.kl, 1e-7)
    return Candidate(members[0], target, changes[0][2], m, search.version, saved / added, tuple(changes[1:]))


def group_due(search: SearchRun) -> bool:
    """Whether the peak group should be formed again: not since the last accepted step, and no group
    step is in the heap (one at a time, re-formed lazily when it comes up stale)."""
    return search.group_version != search.version and not any(c.also for _, _, c in search.heap)


def ram_could_fall(search: SearchRun) -> bool:
    """Whether the arena of the current policy would be smaller with every activation in one byte
    (what a RAM-first order could reach; device objective only)."""
    if search.device is None or not search.options.layerwise:
        return False
    policy = search.state.policy
    ones = {k: group_target(search) for k in wide_activations(search, frozen_too=True)}
    return bool(ones) and search.device.ram_bytes(policy, ones) < search.device.ram_bytes(policy)
