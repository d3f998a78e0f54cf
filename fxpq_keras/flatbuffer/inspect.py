"""Per-layer formats and memory of an exported file (`fxpq inspect`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .reader import read_tflite


def _fmt(fmt, zero_point: int = 0) -> str:
    if fmt is None:
        return "float32"
    return str(fmt) if zero_point == 0 else f"{fmt} (stored int8, zero point {zero_point})"


def inspect_tflite(path: str | Path) -> dict[str, Any]:
    """{"target", "layers": [...], "totals": {...}} for an exported file.

    Every size field names its unit (`*_bits`, `*_bytes`, `*_elements`); the text table uses the
    same names. Two accountings (docs/format.md, fxpq_keras.memory):

    - paper: weight_bits + bias_bits + activation_bits = total_bits, each data structure at its
      own width (the FxP-QNet paper's "overall memory"); float32_bits is the same data at 32 bits.
      A reshape's output is its input's memory, so a reshape row has no activation_bits.
    - device: weight_bytes and bias_bytes as stored (bit-packed weights, int32 biases),
      other_flash_bytes (the rest of the file), flash_bytes (the whole file), ram_bytes (the arena
      TFLM reserves on Cortex-M, arena_used_bytes: tflm_planned_bytes for activations at their
      containers and kernel scratch + tflm_persistent_bytes; fxpq_keras.tflm_arena) and
      runner_arena_bytes (the C runner's planned region).
    Per layer, weight_width_bits / bias_width_bits are the formats' widths.
    """
    from .memory import file_memory

    data = Path(path).read_bytes()
    graph, info = read_tflite(path)
    t = graph.tensors
    layers = []
    w_bits = b_bits = a_bits = w_count = b_count = a_count = 0
    inp = t[graph.input]
    if inp.fmt is not None:
        a_count += int(np.prod(inp.shape))
        a_bits += int(np.prod(inp.shape)) * inp.fmt.bits
    for node in graph.nodes:
        out = t[node.output]
        zps = info.zero_points
        row: dict[str, Any] = {"name": node.name, "op": node.op,
                               "inputs": [_fmt(t[i].fmt, zps.get(i, 0)) for i in node.inputs],
                               "output": _fmt(out.fmt, zps.get(node.output, 0)), "output_shape": list(out.shape)}
        n_out = int(np.prod(out.shape))
        if node.op != "reshape":
            row["activation_elements"] = n_out
            row["activation_bits"] = n_out * out.fmt.bits
            row["activation_bytes"] = n_out * out.fmt.storage_dtype.itemsize
            a_bits += row["activation_bits"]
            a_count += n_out
        if node.weights is not None:
            fr = np.asarray(node.weight_frac)
            row.update(weight_width_bits=node.weight_bits, weight_elements=int(node.weights.size),
                       weight_frac=int(fr[0]) if len(set(fr.tolist())) == 1 else [int(v) for v in fr],
                       weight_bits=int(node.weights.size) * node.weight_bits,
                       weight_bytes=info.weight_bytes.get(node.name))
            w_bits += row["weight_bits"]
            w_count += int(node.weights.size)
            if node.bias is not None:
                row.update(bias_width_bits=node.bias_bits, bias_frac=node.bias_frac,
                           bias_elements=int(node.bias.size), bias_bits=int(node.bias.size) * node.bias_bits,
                           bias_bytes=4 * int(node.bias.size))
                b_bits += row["bias_bits"]
                b_count += int(node.bias.size)
        layers.append(row)
    float_bits = 32 * (w_count + b_count + a_count)
    total = w_bits + b_bits + a_bits
    device = file_memory(data).to_dict()
    totals = {"weight_bits": w_bits, "bias_bits": b_bits, "activation_bits": a_bits, "total_bits": total,
              "float32_bits": float_bits, "compression_total": float_bits / max(total, 1),
              "compression_weights": 32 * w_count / max(w_bits, 1),
              "weight_elements": w_count, "bias_elements": b_count, "activation_elements": a_count,
              "file_bytes": info.file_bytes, **device}
    return {"target": info.target, "version": info.version, "float_input": info.float_input,
            "output_softmax": graph.output_softmax, "layers": layers, "totals": totals}


def format_report(report: dict[str, Any]) -> str:
    """A larq-style table of the inspect report (columns and totals named as in the JSON)."""
    rows = [("layer", "op", "in", "out", "weight_width_bits", "weight_elements", "weight_bytes", "activation_bits")]
    for r in report["layers"]:
        # a reshape shares its input's memory: "-" rather than a misleading 0
        rows.append((r["name"], r["op"], ",".join(r["inputs"]), r["output"], str(r.get("weight_width_bits", "")),
                     str(r.get("weight_elements", "")), str(r.get("weight_bytes", "") or ""),
                     str(r["activation_bits"]) if "activation_bits" in r else "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    tot = report["totals"]
    lines += ["", f"target {report['target']}",
              f"paper:  weight_bits {tot['weight_bits']:,}, bias_bits {tot['bias_bits']:,}, activation_bits "
              f"{tot['activation_bits']:,}, total_bits {tot['total_bits']:,}; compression vs float32: total "
              f"{tot['compression_total']:.2f}x, weights {tot['compression_weights']:.2f}x",
              f"device: flash_bytes {tot['flash_bytes']:,} (weight_bytes {tot['weight_bytes']:,}, bias_bytes "
              f"{tot['bias_bytes']:,}, other_flash_bytes {tot['other_flash_bytes']:,}), ram_bytes "
              f"{tot['ram_bytes']:,} (TFLM arena on Cortex-M: tflm_planned_bytes {tot['tflm_planned_bytes']:,}, "
              f"tflm_persistent_bytes {tot['tflm_persistent_bytes']:,}), runner_arena_bytes "
              f"{tot['runner_arena_bytes']:,}"]
    return "\n".join(lines)


def report_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=True)
