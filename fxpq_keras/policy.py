"""Step 2 of the pipeline: the Policy, a fixed-point format for every data structure.

A data structure is one of: the model input; per layer its weights, its bias and its output
activation (FxP-QNet's unit of precision). The Policy also knows each data structure's element
count, so it can do the paper's memory accounting without the model.

JSON schema (`Policy.to_json`), version 1:

    {"fxpq_policy": 1,
     "input": {"bits": 8, "frac": 7, "signed": false, "elements": 784},
     "layers": [{"name": "conv1", "kind": "conv2d", "inputs": ["input_1"],
                 "weights": {"bits": 4, "frac": 3 | [3, 4, ...], "signed": true, "elements": 150},
                 "bias":    {"bits": 16, "frac": 10, "signed": true, "elements": 6},
                 "output":  {"bits": 6, "frac": 3, "signed": false, "elements": 4704}}, ...]}

`frac` of weights is a list when weight fracs are per output channel. A policy of target builtin
has `"weight_scales": "float"` at the top level: its weights use float scales
min(max|w| / (2^(bits-1) - 1), 2^-frac), TFLite's own at the range-derived frac (docs/format.md
7.1); without the key the weights are `q * 2^-frac`. It may also have `"activation_scales":
"float"` with `"activation_ranges": {layer: max|a|}` (the calibration range of each layer output that
takes TFLite-style float scales, formats.activation_scale; docs/format.md 7.1), and then may have
`"activation_bounds": {layer: [min, max]}` (the calibration minimum and maximum of the outputs whose
8-bit signed formats are asymmetric int8, formats.asymmetric_format); without them every
activation is `q * 2^-frac`. A layer without weights has
no "weights"/"bias"; layers that only move data (flatten, reshape, zero padding, softmax, an Add
feeding a ReLU) have no "output": their output keeps the format of their input (zero is in every
format).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .formats import (
    MAX_BIAS_BITS,
    Format,
    FormatError,
    check_activation_bits,
    frac_for_range,
    scaled_format,
    takes_bounds,
)
from .keras_model import WEIGHTED, CNode, channels, quantized_output
from .stock_layers import (
    FIXED_OUTPUT_FORMATS,
    STOCK_BITS,
    STOCK_INPUT_FRAC_RANGE,
    STOCK_KINDS,
    STOCK_MAX_OUT_FRAC_ABOVE_INPUT,
    STOCK_SAME_FORMAT,
)

POLICY_VERSION = 1
WEIGHT_SCALES = ("pow2", "float")
DATA_STRUCTURES = ("weights", "bias", "output")


class PolicyMismatchError(ValueError):
    """A policy that does not describe the model it is applied to."""


def _is_int(value: Any) -> bool:
    """A JSON integer (bool is not one, nor is 3.0)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


@dataclass
class DataStructure:
    """Format and size of one data structure; frac is a tuple for per-channel weight fracs.

    Example::

        d = policy.get("conv1", "weights")     # its bits, frac, signed, elements
        d.fmt.lo, d.fmt.hi                     # the integer range: (-32, 31) at 6 bits signed
    """

    bits: int
    frac: int | tuple[int, ...]
    signed: bool
    elements: int

    @property
    def per_channel(self) -> bool:
        return isinstance(self.frac, tuple)

    @property
    def fmt(self) -> Format:
        """The per-tensor Format (the smallest frac when per-channel: the bias constraint uses it)."""
        return Format(self.bits, min(self.frac) if self.per_channel else self.frac, self.signed)

    def fracs(self, channels: int | None = None) -> np.ndarray:
        if self.per_channel:
            return np.asarray(self.frac, dtype=np.int64)
        return np.full(channels or 1, self.frac, dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        frac = list(self.frac) if self.per_channel else self.frac
        return {"bits": self.bits, "frac": frac, "signed": self.signed, "elements": self.elements}

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "data structure", bias: bool = False) -> DataStructure:
        """Strict: a wrong type is an error naming the field, never coerced (3.7 is not 3 bits)."""
        if not isinstance(d, dict):
            raise PolicyMismatchError(f"{where}: must be a JSON object, got {d!r}")
        for key in ("bits", "frac", "signed", "elements"):
            if key not in d:
                raise PolicyMismatchError(f"{where}: missing field '{key}'")
        for key in ("bits", "elements"):
            if not _is_int(d[key]):
                raise PolicyMismatchError(f"{where}: '{key}' must be an integer, got {d[key]!r}")
        if not isinstance(d["signed"], (bool, np.bool_)):
            raise PolicyMismatchError(f"{where}: 'signed' must be true or false, got {d['signed']!r}")
        frac = d["frac"]
        if isinstance(frac, (list, tuple)) and frac and all(_is_int(f) for f in frac):
            frac = tuple(int(f) for f in frac)
        elif _is_int(frac):
            frac = int(frac)
        else:
            raise PolicyMismatchError(f"{where}: 'frac' must be an integer or a list of integers, got {frac!r}")
        ds = cls(int(d["bits"]), frac, bool(d["signed"]), int(d["elements"]))
        ds.validate(where, bias=bias)
        return ds

    def validate(self, where: str, bias: bool = False) -> None:
        if bias:
            if not 2 <= self.bits <= MAX_BIAS_BITS:
                raise FormatError(f"{where}: bias bits must be in 2..{MAX_BIAS_BITS}, got {self.bits}")
        else:
            check_activation_bits(self.bits, f"{where}: bits")
        for f in self.frac if self.per_channel else (self.frac,):
            Format(self.bits, f, self.signed)


def _cap_bits(d: DataStructure, bits: int) -> None:
    """At most `bits`, keeping the integer range: frac falls by the bits cut."""
    if d.bits > bits:
        cut = d.bits - bits
        d.frac = tuple(f - cut for f in d.frac) if d.per_channel else d.frac - cut
        d.bits = bits


@dataclass
class Memory:
    """The paper's memory accounting, in bits; activations are per inference (one sample).

    Example::

        m = policy.memory()
        print(m.weight_bits, m.compression_total)   # bits of every weight, ratio to float32
    """

    weight_bits: int
    bias_bits: int
    activation_bits: int
    float32_weight_bits: int
    float32_bias_bits: int
    float32_activation_bits: int

    @property
    def total_bits(self) -> int:
        return self.weight_bits + self.bias_bits + self.activation_bits

    @property
    def float32_bits(self) -> int:
        return self.float32_weight_bits + self.float32_bias_bits + self.float32_activation_bits

    @property
    def compression_total(self) -> float:
        return self.float32_bits / max(self.total_bits, 1)

    @property
    def compression_weights(self) -> float:
        return self.float32_weight_bits / max(self.weight_bits, 1)

    def to_dict(self) -> dict[str, Any]:
        return {"weight_bits": self.weight_bits, "bias_bits": self.bias_bits,
                "activation_bits": self.activation_bits, "total_bits": self.total_bits,
                "float32_bits": self.float32_bits, "compression_total": round(self.compression_total, 4),
                "compression_weights": round(self.compression_weights, 4)}


def _copied(value: Any) -> Any:
    """A copy of one value of a policy's layer entry, as deepcopy makes it (`Policy.copy`)."""
    if isinstance(value, DataStructure):  # (bits, signed, elements and a frac tuple are immutable)
        return replace(value, frac=copy.deepcopy(value.frac)) if isinstance(value.frac, (list, np.ndarray)) \
            else replace(value)
    if isinstance(value, str) or value is None:
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return copy.deepcopy(value)


class Policy:
    """Formats of every data structure of a (canonicalized) model, in layer order.

    Example::

        policy = Policy.uniform(model, 8, x_calib)    # naive uniform 8-bit
        policy.set("conv1", "weights", bits=4)        # one data structure lower (frac kept)
        policy.to_json("policy.json")                 # for `fxpq export`
        print(policy.summary())
    """

    def __init__(self, input_ds: DataStructure, layers: list[dict[str, Any]],
                 channel_scales: dict[str, tuple[float, ...]] | None = None, weight_scales: str = "pow2",
                 activation_ranges: dict[str, float] | None = None,
                 activation_bounds: dict[str, tuple[float, float]] | None = None) -> None:
        self.input = input_ds
        if weight_scales not in WEIGHT_SCALES:
            raise PolicyMismatchError(f"'weight_scales' must be one of {WEIGHT_SCALES}, got {weight_scales!r}")
        # "pow2": weights q * 2^-frac (the fixed-point rule); "float" (target builtin): TFLite's symmetric
        # float scales max|w| / (2^(bits-1) - 1) per output channel (per tensor on fully connected), from
        # the float weights and the width (fakequant/quantizers.py float_scale_quantize; frac unused)
        self.weight_scales = weight_scales
        # range alignment the formats were chosen for (keras_model.align_channel_ranges): quantize_model
        # applies these per-channel scales to the float model before the formats (docs/algorithm.md)
        self.channel_scales: dict[str, tuple[float, ...]] = {
            k: tuple(float(v) for v in vs) for k, vs in (channel_scales or {}).items()}
        # target builtin's float activation scales: {layer: calibration max|a| of its output} for the
        # outputs that take min(max|a| / hi, 2^-frac) (formats.activation_scale); empty: all 2^-frac
        self.activation_ranges: dict[str, float] = {k: float(v) for k, v in (activation_ranges or {}).items()}
        # target builtin's asymmetric int8: {layer: (calibration min, max) of its output}, a subset of
        # activation_ranges' layers; at 8 bits signed their formats take a zero point (scaled_format)
        self.activation_bounds: dict[str, tuple[float, float]] = {
            k: (float(v[0]), float(v[1])) for k, v in (activation_bounds or {}).items()}
        self.layers: dict[str, dict[str, Any]] = {}
        for layer in layers:
            if layer["name"] in self.layers:
                raise PolicyMismatchError(f"layer '{layer['name']}' appears twice in the policy")
            self.layers[layer["name"]] = layer
        self.validate()

    # -- access ---------------------------------------------------------------------------------
    def data_structures(self) -> Iterator[tuple[str, str, DataStructure]]:
        """(layer name or 'input', data structure name, DataStructure) for every data structure."""
        yield "input", "output", self.input
        for name, layer in self.layers.items():
            for ds in DATA_STRUCTURES:
                if layer.get(ds) is not None:
                    yield name, ds, layer[ds]

    def get(self, layer: str, ds: str) -> DataStructure:
        if layer == "input":
            return self.input
        try:
            value = self.layers[layer][ds]
        except KeyError:
            value = None
        if value is None:
            raise KeyError(f"policy has no data structure '{layer}/{ds}'")
        return value

    def set(self, layer: str, ds: str, *, bits: int | None = None, frac: int | tuple[int, ...] | None = None) -> None:
        d = self.get(layer, ds)
        if bits is not None:
            d.bits = int(bits)
        if frac is not None:
            d.frac = tuple(int(f) for f in frac) if isinstance(frac, (tuple, list, np.ndarray)) else int(frac)
        d.validate(f"{layer}/{ds}", bias=ds == "bias")

    def _producer_name(self, name: str) -> str:
        """The layer whose output data structure holds tensor `name` (through pass-through layers);
        a name that is not a layer (the model input) comes back as it is."""
        while name != "input" and name in self.layers and self.layers[name].get("output") is None:
            name = self.layers[name]["inputs"][0]
        return name

    def input_format(self, layer: str) -> DataStructure:
        """Format of a layer's (first) input: follows pass-through layers back to a quantized output."""
        return self._producer(self.layers[layer]["inputs"][0])

    def tensor_format(self, layer: str) -> Format:
        """The Format of a layer's own output data structure, with its float activation scale where
        activation_ranges has one, asymmetric where activation_bounds has its bounds (formats.scaled_format:
        the lowering and the fake-quant both use it)."""
        return scaled_format(self.get(layer, "output").fmt, self.activation_ranges.get(layer),
                             self.activation_bounds.get(layer))

    def input_tensor_format(self, layer: str) -> Format:
        """The Format, float scale included, of the tensor a layer reads first: its producer's
        tensor_format through pass-through layers, or the model input's."""
        name = self._producer_name(self.layers[layer]["inputs"][0])
        return self.input.fmt if name not in self.layers else self.tensor_format(name)

    def output_format(self, layer: str) -> DataStructure:
        """Format of a layer's output tensor (its own, or its input's for pass-through layers)."""
        if layer in self.layers and self.layers[layer].get("output") is not None:
            return self.layers[layer]["output"]
        if layer not in self.layers:
            return self.input
        return self.input_format(layer)

    def copy(self) -> Policy:
        """An independent copy (the search copies a policy per trial: field by field, what deepcopy
        gives at a fraction of its cost; any other attribute or value still goes through deepcopy)."""
        out = Policy.__new__(Policy)
        for name, value in self.__dict__.items():
            if name == "input":
                value = _copied(value)
            elif name == "layers":
                value = {lname: {k: _copied(v) for k, v in layer.items()} for lname, layer in value.items()}
            elif name in ("channel_scales", "activation_ranges", "activation_bounds"):
                value = dict(value)  # (tuples of floats, floats)
            else:
                value = copy.deepcopy(value)
            out.__dict__[name] = value
        return out

    # -- bias rule ------------------------------------------------------------------------------
    def bias_frac_window(self, layer: str) -> tuple[int, int]:
        """Allowed bias fracs: 0 <= frac_acc - frac_b <= 30 for every channel (numerics.md section 4)."""
        x = self.input_format(layer).frac
        w = self.layers[layer]["weights"].fracs()
        return int(x + w.max() - 30), int(x + w.min())

    def constrain_biases(self) -> None:
        """Move every bias frac into its window (call after changing input or weight fracs), after
        the stock-op rules (`constrain_stock`): every change of formats ends here."""
        self.constrain_stock()
        for name, layer in self.layers.items():
            if layer.get("bias") is not None:
                lo, hi = self.bias_frac_window(name)
                b = layer["bias"]
                b.frac = int(min(max(b.frac, lo), hi))

    def _producer(self, name: str) -> DataStructure:
        """The data structure holding a layer's output tensor (through pass-through layers)."""
        name = self._producer_name(name)
        return self.input if name not in self.layers else self.layers[name]["output"]

    def constrain_stock(self) -> None:
        """Formats around stock ops (stock_layers.py): their outputs 8 bits (or the one format TFLM
        insists on), what they read at most 8 bits; a width cut keeps the integer range (frac falls
        with the bits). The signed flags are set when the policy is made (calibration.py)."""
        for layer in self.layers.values():
            if layer.get("kind") not in STOCK_KINDS:
                continue
            out = layer.get("output")
            if out is not None:
                fixed = FIXED_OUTPUT_FORMATS.get(layer["kind"])
                if fixed is not None:
                    out.bits, out.frac, out.signed = fixed
                else:
                    _cap_bits(out, STOCK_BITS)
            for name in layer["inputs"]:
                _cap_bits(self._producer(name), STOCK_BITS)
                lo_hi = STOCK_INPUT_FRAC_RANGE.get(layer["kind"])
                producer = self._producer(name)
                if lo_hi is not None and not producer.per_channel:
                    producer.frac = int(min(max(producer.frac, lo_hi[0]), lo_hi[1]))
            fracs = [self._producer(name).frac for name in layer["inputs"]]
            cap = STOCK_MAX_OUT_FRAC_ABOVE_INPUT.get(layer["kind"])
            if cap is not None and out is not None:  # where TFLM's Prepare refuses a finer output
                out.frac = min(out.frac, min(min(f) if isinstance(f, tuple) else f for f in fracs) + cap)
            if layer["kind"] in STOCK_SAME_FORMAT:  # compares stored values: one format for all
                first = self._producer(layer["inputs"][0])
                for name in layer["inputs"][1:]:
                    other = self._producer(name)
                    if other is not first:
                        other.bits, other.frac, other.signed = first.bits, first.frac, first.signed

    # -- memory ---------------------------------------------------------------------------------
    def memory(self) -> Memory:
        acc = {"weights": [0, 0], "bias": [0, 0], "output": [0, 0]}
        for _, ds, d in self.data_structures():
            acc[ds][0] += d.bits * d.elements
            acc[ds][1] += 32 * d.elements
        return Memory(acc["weights"][0], acc["bias"][0], acc["output"][0],
                      acc["weights"][1], acc["bias"][1], acc["output"][1])

    def table(self) -> list[dict[str, Any]]:
        """One row per data structure: the per-layer memory table (machine readable)."""
        rows = []
        for layer, ds, d in self.data_structures():
            frac = list(d.frac) if d.per_channel else d.frac
            rows.append({"layer": layer, "data_structure": ds, "bits": d.bits, "frac": frac, "signed": d.signed,
                         "elements": d.elements, "total_bits": d.bits * d.elements})
        return rows

    def summary(self) -> str:
        """A per-layer memory table (like larq's model summary) with totals and ratios to float32."""
        lines = [f"{'layer':<28} {'data':<8} {'format':>12} {'elements':>10} {'bits':>12}", "-" * 74]
        for r in self.table():
            frac = r["frac"]
            f = f"{min(frac)}..{max(frac)}" if isinstance(frac, list) else str(frac)
            fmt = f"{'s' if r['signed'] else 'u'}{r['bits']}.{f}"
            lines.append(f"{r['layer']:<28} {r['data_structure']:<8} {fmt:>12} {r['elements']:>10} "
                         f"{r['total_bits']:>12}")
        m = self.memory()
        lines += ["-" * 74,
                  # the paper's count, in bits (docs/format.md section 9: device bytes are flash_bytes / ram_bytes)
                  f"paper: weight_bits {m.weight_bits:,}, bias_bits {m.bias_bits:,}, activation_bits "
                  f"{m.activation_bits:,}, total_bits {m.total_bits:,} (each data structure at its own width)",
                  f"compression vs float32: total {m.compression_total:.2f}x, weights {m.compression_weights:.2f}x"]
        return "\n".join(lines)

    # -- JSON -----------------------------------------------------------------------------------
    def to_dict(self, channel_scales: bool = True) -> dict[str, Any]:
        """The JSON object; `channel_scales=False` leaves out the range alignment and the activation
        bounds no format uses (a file embeds the formats only: its weights are already rescaled)."""
        layers = []
        for name, layer in self.layers.items():
            entry = {"name": name, "kind": layer["kind"], "inputs": list(layer["inputs"])}
            for ds in DATA_STRUCTURES:
                if layer.get(ds) is not None:
                    entry[ds] = layer[ds].to_dict()
            layers.append(entry)
        d = {"fxpq_policy": POLICY_VERSION, "input": self.input.to_dict(), "layers": layers}
        if channel_scales and self.channel_scales:
            d["channel_scales"] = {k: list(v) for k, v in self.channel_scales.items()}
        if self.weight_scales != "pow2":  # (pow2 policies' JSON stays as it was)
            d["weight_scales"] = self.weight_scales
        if self.activation_ranges:
            d["activation_scales"] = "float"
            d["activation_ranges"] = dict(self.activation_ranges)
        # a file's copy (channel_scales False) keeps the bounds its formats use (formats.takes_bounds)
        bounds = {k: list(v) for k, v in self.activation_bounds.items()
                  if channel_scales or takes_bounds(self.layers[k]["output"].fmt)}
        if bounds:
            d["activation_bounds"] = bounds
        return d

    def to_json(self, path: str | None = None, *, indent: int | None = 1, channel_scales: bool = True) -> str:
        """JSON text (written to `path` if given); indent=None gives the compact form files embed."""
        text = json.dumps(self.to_dict(channel_scales), indent=indent, separators=None if indent else (",", ":"))
        if path is not None:
            from ._files import write_atomic

            write_atomic(path, text + "\n")
        return text

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Policy:
        if not isinstance(d, dict) or d.get("fxpq_policy") != POLICY_VERSION:
            raise PolicyMismatchError(f"not an fxpq policy (expected \"fxpq_policy\": {POLICY_VERSION})")
        try:
            layers = []
            if not isinstance(d["layers"], list):
                raise PolicyMismatchError(f"'layers' must be a list, got {type(d['layers']).__name__}")
            for i, entry in enumerate(d["layers"]):
                if not isinstance(entry, dict):
                    raise PolicyMismatchError(f"layers[{i}] must be a JSON object, got {entry!r}")
                for key in ("name", "kind"):
                    if not isinstance(entry.get(key), str):
                        raise PolicyMismatchError(f"layers[{i}]: '{key}' must be a string, got {entry.get(key)!r}")
                if not isinstance(entry.get("inputs"), list) or not all(isinstance(n, str) for n in entry["inputs"]):
                    raise PolicyMismatchError(f"layer '{entry['name']}': 'inputs' must be a list of layer names")
                layer = {"name": entry["name"], "kind": entry["kind"], "inputs": list(entry["inputs"])}
                for ds in DATA_STRUCTURES:
                    layer[ds] = (DataStructure.from_dict(entry[ds], f"{layer['name']}/{ds}", bias=ds == "bias")
                                 if entry.get(ds) is not None else None)
                layers.append(layer)
            scales = d.get("channel_scales") or {}
            if not isinstance(scales, dict) or not all(
                    isinstance(v, list) and v and all(isinstance(x, (int, float)) and np.isfinite(x) and x > 0
                                                      for x in v) for v in scales.values()):
                raise PolicyMismatchError("'channel_scales' must map layer names to lists of positive numbers")
            ranges = d.get("activation_ranges") or {}
            if d.get("activation_scales", "float" if ranges else "pow2") != ("float" if ranges else "pow2") \
                    or not isinstance(ranges, dict) or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) and v >= 0
                    for v in ranges.values()):
                raise PolicyMismatchError("'activation_scales' \"float\" needs 'activation_ranges' mapping layer "
                                          "names to finite ranges >= 0 (and the other way round)")
            missing = [k for k in ranges if not any(e["name"] == k and e.get("output") is not None for e in layers)]
            if missing:
                raise PolicyMismatchError(f"'activation_ranges' names {missing[:4]}, which are not layers with an "
                                          "output")
            bounds = d.get("activation_bounds") or {}
            if not isinstance(bounds, dict) or not all(
                    isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                                and np.isfinite(x) for x in v) and v[0] <= v[1]
                    for v in bounds.values()):
                raise PolicyMismatchError("'activation_bounds' must map layer names to [min, max] pairs of finite "
                                          "numbers, min <= max")
            return cls(DataStructure.from_dict(d["input"], "input"), layers, scales, d.get("weight_scales", "pow2"),
                       ranges, {k: (float(v[0]), float(v[1])) for k, v in bounds.items()})
        except (KeyError, TypeError) as exc:
            raise PolicyMismatchError(f"malformed policy JSON: missing or wrong field {exc}") from exc

    @classmethod
    def from_json(cls, text_or_path: str) -> Policy:
        text = text_or_path
        if not text_or_path.lstrip().startswith(("{", "[")):  # JSON text is an object (or a wrong array)
            with open(text_or_path) as fh:
                text = fh.read()
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PolicyMismatchError(f"policy is not valid JSON: {exc}") from exc
        except RecursionError:
            raise PolicyMismatchError("policy JSON is nested too deeply") from None
        return cls.from_dict(d)

    def validate(self) -> None:
        self.input.validate("input")
        for name, layer in self.layers.items():
            for ds in DATA_STRUCTURES:
                if layer.get(ds) is not None:
                    layer[ds].validate(f"{name}/{ds}", bias=ds == "bias")
        stray = [k for k in self.activation_bounds if k not in self.activation_ranges]
        if stray:
            raise PolicyMismatchError(f"'activation_bounds' names {stray[:4]}, which have no 'activation_ranges' "
                                      "entry (asymmetric int8 takes float activation scales)")

    def check_matches(self, cnodes: list[CNode]) -> None:
        """Raise PolicyMismatchError unless this policy describes exactly these canonical layers."""
        expected = skeleton(cnodes)
        if set(expected) != set(self.layers):
            missing = sorted(set(expected) - set(self.layers))
            extra = sorted(set(self.layers) - set(expected))
            raise PolicyMismatchError(f"policy does not match the model: missing layers {missing}, "
                                      f"unknown layers {extra}")
        for name, (kind, elems) in expected.items():
            layer = self.layers[name]
            if layer["kind"] != kind:
                raise PolicyMismatchError(
                    f"layer '{name}' is a {kind} in the model but a {layer['kind']} in the policy")
            for ds, n in elems.items():
                d = layer.get(ds)
                if (d is None) != (n is None) or (d is not None and d.elements != n):
                    raise PolicyMismatchError(f"policy data structure '{name}/{ds}' does not match the model "
                                              f"(elements {None if d is None else d.elements} vs {n})")
                if d is not None and ds == "weights" and d.per_channel and len(d.frac) != channels(cnodes, name):
                    raise PolicyMismatchError(f"'{name}/weights' has {len(d.frac)} channel fracs, the layer has "
                                              f"{channels(cnodes, name)} output channels")

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def uniform(cls, model: Any, bits: int, calibration_data: Any, *, per_channel: bool = False,
                bias_bits: int = 32, input_bits: int | None = None) -> Policy:
        """Every data structure at `bits` (biases at `bias_bits`), fracs from calibration ranges.

        This is naive uniform dynamic fixed point; FxPQNet starts from it at 16 bits.
        """
        from .calibration import Calibration  # lazy: TensorFlow; calibration sits below policy

        calib = model if isinstance(model, Calibration) else Calibration(model, calibration_data)
        check_activation_bits(bits)
        if not 2 <= bias_bits <= MAX_BIAS_BITS:
            raise ValueError(f"bias_bits must be in 2..{MAX_BIAS_BITS}, got {bias_bits}")
        ib = input_bits or bits
        inp = calib.input_name
        input_ds = DataStructure(ib, calib.activation_frac(inp, ib), not calib.nonneg[inp],
                                 int(np.prod(calib.shapes[inp])))
        layers = []
        for n in calib.cnodes:
            if n.kind == "input":
                continue
            entry: dict[str, Any] = {"name": n.name, "kind": n.kind,
                                     "inputs": ["input" if i == inp else i for i in n.inputs],
                                     "weights": None, "bias": None, "output": None}
            if n.kind in WEIGHTED:
                entry["weights"] = DataStructure(bits, calib.weight_frac(n, bits, per_channel), True,
                                                 int(n.kernel.size))
                if n.bias is not None:
                    entry["bias"] = DataStructure(bias_bits, frac_for_range(float(np.abs(n.bias).max()), bias_bits),
                                                  True, int(n.bias.size))
            if quantized_output(calib.cnodes, n):
                entry["output"] = DataStructure(bits, calib.activation_frac(n.name, bits), not calib.nonneg[n.name],
                                                int(np.prod(calib.shapes[n.name])))
            layers.append(entry)
        policy = cls(input_ds, layers, calib.channel_scales)
        policy.constrain_biases()
        return policy


def skeleton(cnodes: list[CNode], shapes: dict[str, tuple[int, ...]] | None = None) -> dict[str, Any]:
    """{layer: (kind, {ds: elements or None})} for checking; shapes gives output elements when known."""
    out = {}
    for n in cnodes:
        if n.kind == "input":
            continue
        elems: dict[str, int | None] = {}
        if n.kind in WEIGHTED:
            elems["weights"] = int(n.kernel.size)
            elems["bias"] = int(n.bias.size) if n.bias is not None else None
        else:
            elems["weights"] = elems["bias"] = None
        if shapes is not None:
            elems["output"] = int(np.prod(shapes[n.name])) if quantized_output(cnodes, n) else None
        out[n.name] = (n.kind, elems)
    return out
