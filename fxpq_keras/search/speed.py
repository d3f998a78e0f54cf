"""The speed cap of the device objective (`max_slowdown`; docs/algorithm.md "Speed cap"): no step may
leave the estimated Cortex-M4 instructions of the fxp file (fxpq_keras.instructions, through
`DeviceModel.instructions`) above a reference on the same model times `max_slowdown`, raising them.
The reference (`speed_reference`) is what users compare against: "int8" (default) = the model as a stock
TFLite int8 file in TFLM with CMSIS-NN (`DeviceModel.int8_instructions`), "uniform8" = the fxp file at
uniform 8 bits in our kernels (the reference before issue 22).

The cap is set once (`speed_cap`); the phases ask `too_slow` before they evaluate a step (greedy,
peak groups, lower-all, the restart from uniform) and the jump is brought under it by `within_speed`.
An estimate costs about a millisecond: no evaluation of the network.

The cap binds only where it must (`FxPQNet.quantize`, `deferred`): a search first runs without it and
keeps its result when that is within the cap; only a result above it is searched again under the cap,
and only when the formats the budget holds wider leave the cap within reach (`speed_floor`).
A capped walk takes other steps than the uncapped one (a refused step, a jump without a change), and the
walk-back may then stop earlier: on the zoo that cost bytes where the uncapped result already met the cap.
"""

from __future__ import annotations

from typing import Any

from ..policy import Policy
from .state import MAX_SLOWDOWN, Key  # noqa: F401 (MAX_SLOWDOWN: the fxp default, read here too)

REFERENCES = {"int8": "TFLite int8 + CMSIS-NN's", "uniform8": "uniform 8-bit's"}  # speed_reference -> its name


def reference_instructions(device: Any, start_policy: Policy, reference: str = "int8") -> float | None:
    """The cap's reference (estimated Cortex-M4 instructions): "int8" = the model as a stock int8 file in
    TFLM + CMSIS-NN; "uniform8" = the fxp file with every weight and activation at 8 bits (the start
    policy's signedness); None without a device model or an estimate."""
    if device is None:
        return None
    if reference == "int8":
        return device.int8_instructions()
    eight = {(layer, ds): 8 for layer, ds, _ in start_policy.data_structures() if ds != "bias"}
    return device.instructions(start_policy, eight)


def speed_cap(device: Any, start_policy: Policy, max_slowdown: float | None, reference: str = "int8") -> float | None:
    """The reference's estimated instructions x max_slowdown; None without a device model, a cap, or an estimate."""
    if device is None or not max_slowdown:
        return None
    base = reference_instructions(device, start_policy, reference)
    return None if base is None else base * float(max_slowdown)


def over_cap(search: Any, policy: Policy) -> bool:
    """Whether `policy`'s estimate is above the search's cap (False without a cap)."""
    cap = search.instruction_cap
    return cap is not None and search.device.instructions(policy) > cap


def deferred(search: Any) -> bool:
    """Run `search` (a PrecisionSearch) without its speed cap: True when its result is within the cap
    (keep it), False when it is above (search again with the cap). The cap is restored either way, so the
    result reports it. Target builtin (its cap is how it reaches the int8 kernels) runs capped."""
    cap = search.instruction_cap
    if cap is None or search.options.target == "builtin":
        search.run()
        return True
    search.instruction_cap = None
    try:
        search.run()
    finally:
        search.instruction_cap = cap
    return search.start_broke or not over_cap(search, search.state.policy)


def _free_keys(search: Any) -> list[Key]:
    """The data structures a speed reference may set: all the search changes but the biases and those
    the budget holds above 8 bits (frozen there)."""
    return [k for k in search.keys if k[1] != "bias" and not (k in search.state.frozen and search.bits[k] > 8)]


def forced_instructions(search: Any, policy: Policy) -> float:
    """The int8 reference of the current state: `policy` with every data structure at 8 bits except
    those the budget holds above 8 (frozen there) and those the search does not change."""
    return search.device.instructions(policy, {k: 8 for k in _free_keys(search)})


def speed_floor(search: Any, policy: Policy) -> float:
    """The fastest estimate the budget leaves within reach of `policy`: every data structure but those the
    budget holds above 8 bits (frozen there) set, in sweeps, to whichever of 4, 6 or 8 bits or its
    current width gives the lowest estimate, until a sweep changes nothing (8 bits everywhere is not
    always the fastest: 8-bit weights on 16-bit inputs may need the int64 sums that narrower ones do
    not). The estimate only, no evaluation (a few hundred estimates)."""
    free = _free_keys(search)
    changes: dict[Key, int] = {}
    best = search.device.instructions(policy)
    moved = True
    while moved:
        moved = False
        for key in free:
            now = changes.get(key, policy.get(*key).bits)
            for bits in (4, 6, 8):
                if bits == now or bits < search.options.min_bits or bits > search.options.max_bits:
                    continue
                est = search.device.instructions(policy, {**changes, key: bits})
                if est < best * (1 - 1e-9):
                    best, now, changes[key], moved = est, bits, bits, True
    return best


def too_slow(search: Any, base: Policy, changes: dict[Key, int], raising: bool = True, count: bool = True) -> bool:
    """Whether `changes` on `base` break the speed cap. With `raising` (a search step) only a step that
    raises the estimate can: it is refused when it ends above the cap and above the int8 reference of
    the current state (`forced_instructions`), so the budget's own demands (activations frozen above 8
    bits) are not counted against a step. Refused steps are counted in `refused_for_speed`."""
    if search.instruction_cap is None:
        return False
    if search.options.target == "builtin" and changes and all(k[1] == "output" and b <= 8 for k, b in changes.items()):
        # target builtin: an activation brought to int8 never waits for speed. Alone between int16
        # ops it adds QUANTIZE seams (a raise), but it is the way from the int16 start to int8 ops,
        # which are the fastest (builtin_space.M4_PER_MAC); only int4 weights are held to the cap
        return False
    new = search.device.instructions(base, changes)
    if new <= search.instruction_cap:
        return False
    if raising and (new <= search.device.instructions(base) or
                    new <= forced_instructions(search, base) * float(search.options.max_slowdown)):
        return False
    if count:
        search.refused_for_speed.update(changes.items())
    return True


def within_speed(search: Any, base: Policy, changes: list[tuple[Key, int, Any]]) -> list[tuple[Key, int, Any]]:
    """The jump's changes brought under the speed cap (the jump starts from max_bits, far slower than the
    cap, so every jump lowers the estimate: the cap itself is the test here). While the set is above
    it, take the one adjustment that lowers the estimate most: a change moved to a wider width of its
    data structure (more precision, so never a budget risk), or dropped. The estimate only, no evaluation."""
    if search.instruction_cap is None:
        return changes

    def estimate(cs: list[tuple[Key, int, Any]]) -> float:
        return search.device.instructions(base, {k: b for k, b, _ in cs})

    current = estimate(changes)
    while changes and current > search.instruction_cap:
        best = None
        for i, (key, bits, frac) in enumerate(changes):
            per_channel = isinstance(frac, tuple)
            options = [changes[:i] + changes[i + 1:]]
            options += [changes[:i] + [(key, w, search.frac_candidates(key, w, per_channel)[0])] + changes[i + 1:]
                        for w in search.widths(key) if bits < w < search.bits[key]]
            for option in options:
                e = estimate(option)
                if best is None or e < best[0]:
                    best = (e, option, (key, bits))
        if best is None or best[0] >= current:
            break  # no adjustment speeds the set up: keep it (the greedy refuses slower steps)
        search.refused_for_speed.add(best[2])
        current, changes = best[0], best[1]
    return changes


# a step that saves no byte but instructions (the policy above the cap) is ranked below every byte-saving step
SPEED_WEIGHT = 1e-12


def speed_gain(search: Any, base: Policy, changes: dict[Key, int]) -> float:
    """The instructions a step saves while `base` is above the cap (0 when under it, or without a cap):
    what makes an activation step worth taking when it saves no byte (off the RAM peak) but time."""
    if search.instruction_cap is None:
        return 0.0
    now = search.device.instructions(base)
    if now <= search.instruction_cap:
        return 0.0
    return max(0.0, now - search.device.instructions(base, changes))
