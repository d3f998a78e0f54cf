"""The search space: which data structures the search may change, the policy it starts from, and
the fracs it tries at each width (docs/algorithm.md "Start", "Fractional lengths from
prediction-error statistics", "Dynamic fixed point per data structure").

Pure functions of the calibration, the options and the start policy: nothing here evaluates the model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..calibration import Calibration
from ..formats import MAX_FRAC, MIN_BITS, MIN_FRAC, frac_for_range
from ..policy import Policy
from ..stock_layers import FIXED_OUTPUT_FORMATS, STOCK_KINDS
from . import builtin_space
from .state import CHANNELS, Key, SearchOptions

Frac = int | tuple[int, ...]


def data_ranges(calib: Calibration, opts: SearchOptions, policy: Policy) -> dict[Key, Any]:
    """max |value| of every data structure (per output channel for per-channel weights; every
    weights data structure also under ("layer", "weights/channels") when per_channel is "auto").

    Without dynamic fixed point (mechanism 1 off) every data structure of a kind shares the
    largest range of that kind, so all weights (or biases, or activations) share one integer length.
    """
    out: dict[Key, Any] = {}
    for layer, ds, _ in policy.data_structures():
        if layer == "input":
            out[(layer, ds)] = calib.max_abs[calib.input_name]
        elif ds == "output":
            out[(layer, ds)] = calib.max_abs[layer]
        else:
            node = calib.node(layer)
            if ds == "weights":
                per_channel, dfp = opts.per_channel, opts.dynamic_fixed_point
                out[(layer, ds)] = calib.weight_max_abs(node, per_channel is True and dfp)
                if per_channel == "auto" and dfp:
                    out[(layer, CHANNELS)] = calib.weight_max_abs(node, True)
            else:
                out[(layer, ds)] = float(np.abs(node.bias).max())
    if opts.target == "builtin":  # fully connected weights per tensor (TFLM's int4 FC rule)
        for layer, ds, _ in policy.data_structures():
            if ds == "weights" and policy.layers[layer].get("kind") in builtin_space.FC_KINDS:
                out[(layer, ds)] = float(np.max(out[(layer, ds)]))
                out.pop((layer, CHANNELS), None)
    if not opts.dynamic_fixed_point:
        for kind in ("weights", "bias", "output"):
            keys = [k for k in out if (k[1] == kind and k[0] != "input") or (kind == "output" and k[0] == "input")]
            top = max(float(np.max(out[k])) for k in keys) if keys else 0.0
            for k in keys:
                out[k] = top
    return out


def range_frac(r: Any, bits: int, signed: bool, offset: int = 0) -> Frac:
    """The frac that fits range `r` (per channel for an array) in `bits`, shifted by `offset`."""
    if isinstance(r, np.ndarray):
        return tuple(int(np.clip(frac_for_range(float(m), bits, True) + offset, MIN_FRAC, MAX_FRAC)) for m in r)
    return int(np.clip(frac_for_range(float(r), bits, signed) + offset, MIN_FRAC, MAX_FRAC))


def start_policy(calib: Calibration, opts: SearchOptions) -> Policy:
    """Every data structure at max_bits with its range-derived frac (biases at least MIN_BITS)."""
    # "auto" starts per channel too (at the start width a channel's range frac is never coarser
    # than the tensor's), so a layer that per-tensor fracs would break is not frozen before its
    # first re-formatting chooses; channels that share one frac are per tensor
    per_channel = opts.per_channel in (True, "auto") and opts.dynamic_fixed_point
    policy = Policy.uniform(calib, opts.max_bits, None, per_channel=per_channel,
                            bias_bits=max(opts.max_bits, MIN_BITS))
    for layer, ds, d in policy.data_structures():
        if opts.per_channel == "auto" and d.per_channel and len(set(d.frac)) == 1:
            policy.set(layer, ds, frac=d.frac[0])
    if not opts.dynamic_fixed_point:
        for (layer, ds), r in data_ranges(calib, opts, policy).items():
            d = policy.get(layer, ds)
            policy.set(layer, ds, frac=range_frac(r, d.bits, d.signed))
        policy.constrain_biases()
    if opts.target == "builtin":
        ranges = data_ranges(calib, opts, policy)
        scaled = opts.activation_scales != "pow2"
        policy = builtin_space.start_policy(policy, lambda key, bits, signed, _: range_frac(ranges[key], bits, signed),
                                            dict(calib.max_abs) if scaled else None,
                                            dict(calib.bounds) if opts.activation_scales == "asymmetric" else None)
    return policy


def changeable_keys(start: Policy, opts: SearchOptions) -> list[Key]:
    """The data structures the search may lower, in the start policy's order (options.data_structures
    restricts them; device biases and stock ops' own outputs are never lowered)."""
    allowed = opts.data_structures
    keys = []
    for layer, ds, _ in start.data_structures():
        kind = "input" if layer == "input" else ds
        if ds == "bias" and (opts.objective == "device" or opts.target == "builtin"):
            continue  # stored as int32 whatever the width: lowering one only adds error
        if ds == "output" and layer != "input" and start.layers[layer].get("kind") in STOCK_KINDS:
            continue  # a stock op writes one byte per element in the format TFLM's kernel fixes
        if allowed is None or kind in allowed or f"{layer}/{ds}" in allowed:
            keys.append((layer, ds))
    known = {f"{layer}/{ds}" for layer, ds, _ in start.data_structures()}
    unknown = [a for a in allowed or () if "/" in a and a not in known]
    if unknown:
        raise ValueError(f"unknown data structures {unknown}; the model has {sorted(known)}")
    return keys


def frac_candidates(opts: SearchOptions, ranges: dict[Key, Any], signed: bool, key: Key, bits: int,
                    per_channel: bool | None = None) -> list[Frac]:
    """Candidate fracs at `bits`: range-derived plus offsets (mechanism 3), or range-derived only.

    With per_channel "auto", a weights data structure also gets the per-channel range fracs
    shifted by the same offsets, after the per-tensor ones (a tie keeps per tensor); a
    per-channel candidate whose channels all share one frac is the per-tensor one and is
    dropped. `per_channel` True/False keeps only that kind (the first is its range frac).
    """
    offsets = (opts.activation_frac_offsets if key[1] == "output" else opts.frac_offsets) \
        if opts.error_statistics_frac and opts.dynamic_fixed_point else (0,)
    if opts.target == "builtin" and key[1] == "weights":
        # float weight scales min(max|w| / qmax, 2^-frac) (builtin_space): a frac at or below the range
        # frac gives TFLite's scale, so only the finer (clipping) power-of-two steps are candidates besides it
        offsets = tuple(o for o in offsets if o >= 0)
    candidates = [ranges[key]]
    auto = key[1] == "weights" and (key[0], CHANNELS) in ranges
    if auto:
        channel = [ranges[(key[0], CHANNELS)]]
        candidates = channel if per_channel else candidates if per_channel is False else candidates + channel
    out: list[Frac] = []
    for r in candidates:
        for off in offsets:
            f = range_frac(r, bits, signed, off)
            if auto and isinstance(f, tuple) and len(set(f)) == 1:
                f = f[0]
            if f not in out:
                out.append(f)
    return out


def widths(now: int, min_bits: int, activation_bytes: bool) -> list[int]:
    """The widths of a data structure now at `now` bits that the objective tells apart, ascending,
    ending at `now`.

    Paper: every width. Device (`activation_bytes`, an activation): it only costs less when its
    container shrinks, so it is 8 bits (one byte) or where it is; a width under 8 adds error and
    saves nothing.
    """
    if activation_bytes:
        return [max(8, min_bits), now] if now > max(8, min_bits) else [now]
    return list(range(min_bits, now + 1))


def stock_fixed_keys(start: Policy) -> list[Key]:
    """Activations whose width stock ops fix (stock_layers.py): a stock op's own output (unless
    TFLM fixes its format too) and the 8-bit outputs a stock op reads."""
    layers = start.layers
    keys: list[Key] = []

    def owner(name: str) -> str:  # the layer (or the input) holding a tensor's data structure
        while name in layers and layers[name].get("output") is None:
            name = layers[name]["inputs"][0]
        return name if name in layers else "input"

    for name, layer in layers.items():
        if layer.get("kind") not in STOCK_KINDS:
            continue
        wanted = [owner(i) for i in layer["inputs"]]
        if layer.get("output") is not None and layer["kind"] not in FIXED_OUTPUT_FORMATS:
            wanted.append(name)
        for k in wanted:
            key = (k, "output")
            if key not in keys and start.get(*key).bits <= 8:
                keys.append(key)
    return keys


__all__ = ["changeable_keys", "data_ranges", "frac_candidates", "range_frac", "start_policy", "stock_fixed_keys",
           "widths"]
