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
    """{"target", "file_bytes", "layers": [...], "totals": {...}} for an exported file.

    Memory follows the paper's "overall memory": weights + biases + activations in bits at their
    own widths; float32_bits is the same data at 32 bits. A reshape's output is its input's memory
    (TFLM aliases it), so a reshape row has no activation_bits and adds nothing to the totals.
    """
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
            row["activation_bits"] = n_out * out.fmt.bits
            a_bits += row["activation_bits"]
            a_count += n_out
        if node.weights is not None:
            fr = np.asarray(node.weight_frac)
            row.update(weight_bits=node.weight_bits, weights=int(node.weights.size),
                       weight_frac=int(fr[0]) if len(set(fr.tolist())) == 1 else [int(v) for v in fr],
                       weight_memory_bits=int(node.weights.size) * node.weight_bits,
                       weight_stored_bytes=info.weight_bytes.get(node.name))
            w_bits += row["weight_memory_bits"]
            w_count += int(node.weights.size)
            if node.bias is not None:
                row.update(bias_bits=node.bias_bits, bias_frac=node.bias_frac, biases=int(node.bias.size),
                           bias_memory_bits=int(node.bias.size) * node.bias_bits)
                b_bits += row["bias_memory_bits"]
                b_count += int(node.bias.size)
        layers.append(row)
    float_bits = 32 * (w_count + b_count + a_count)
    totals = {"weight_bits": w_bits, "bias_bits": b_bits, "activation_bits": a_bits, "float32_bits": float_bits,
              "compression_total": float_bits / max(w_bits + b_bits + a_bits, 1),
              "compression_weights": 32 * w_count / max(w_bits, 1), "file_bytes": info.file_bytes,
              "weight_stored_bytes": int(sum(v for v in info.weight_bytes.values())),
              "weights": w_count, "biases": b_count, "activations": a_count}
    return {"target": info.target, "version": info.version, "float_input": info.float_input,
            "output_softmax": graph.output_softmax, "layers": layers, "totals": totals}


def format_report(report: dict[str, Any]) -> str:
    """A larq-style table of the inspect report."""
    rows = [("layer", "op", "in", "out", "w bits", "weights", "w kbit", "act kbit")]
    for r in report["layers"]:
        w_kbit = f"{r.get('weight_memory_bits', 0) / 1000:.2f}" if "weights" in r else ""
        # a reshape shares its input's memory: "-" rather than a misleading 0.00
        a_kbit = f"{r['activation_bits'] / 1000:.2f}" if "activation_bits" in r else "-"
        rows.append((r["name"], r["op"], ",".join(r["inputs"]), r["output"], str(r.get("weight_bits", "")),
                     str(r.get("weights", "")), w_kbit, a_kbit))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    tot = report["totals"]
    lines += ["", f"target {report['target']}, file {tot['file_bytes']} bytes "
              f"(packed weights {tot['weight_stored_bytes']} bytes = {tot['weight_bits']} bits of weights)",
              f"weights {tot['weight_bits']} bits, biases {tot['bias_bits']} bits, "
              f"activations {tot['activation_bits']} bits",
              f"compression vs float32: total {tot['compression_total']:.2f}x, "
              f"weights {tot['compression_weights']:.2f}x"]
    return "\n".join(lines)


def report_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=True)
