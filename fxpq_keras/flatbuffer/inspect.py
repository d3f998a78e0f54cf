"""Per-layer formats and memory of any .tflite file (`fxpq inspect`), without TensorFlow.

fxpq files (target fxp or int8-builtin) show each tensor's fixed-point format and the paper's bit
count; any other TFLite file (TFLiteConverter int8, int16x8, float) shows its stored types. Both
get the same device accounting (fxpq_keras.flatbuffer.memory.file_memory): flash_bytes, ram_bytes
(TFLM's arena_used_bytes on Cortex-M) and runner_planned_bytes, named as docs/format.md section 9
defines them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..instructions import call_instructions, graph_calls, model_instructions
from ..memory import DeviceModel
from .errors import FlatbufferFormatError
from .memory import ELEM_BYTES, layout_from_tflite
from .options import METADATA_NAME
from .reader import _File, _op_type, read_bytes
from .schema import schema as S

_TYPE_NAMES = {v: k.lower() for k, v in vars(S.TensorType).items() if not k.startswith("_")}


def _fmt(fmt, zero_point: int = 0) -> str:
    if fmt is None:
        return "float32"
    return str(fmt) if zero_point == 0 else f"{fmt} (stored int8, zero point {zero_point})"


def inspect_tflite(path: str | Path) -> dict[str, Any]:
    """{"target", "layers": [...], "totals": {...}} for any TFLite file.

    Every size field names its unit (`*_bits`, `*_bytes`, `*_elements`, `macs`); the text table
    uses the same names. Per layer: `macs` (multiply-accumulates of one inference, weighted ops),
    `output_bytes` (the output tensor as stored), `weight_bytes` / `bias_bytes` as stored.
    Totals, the device accounting (docs/format.md section 9, fxpq_keras.memory): weight_bytes,
    bias_bytes, other_flash_bytes, flash_bytes (the whole file), ram_bytes (the TFLM arena on
    Cortex-M, arena_used_bytes = tflm_planned_bytes + tflm_persistent_bytes), runner_planned_bytes
    (the C runner's planned tensors and scratch). fxpq files add the paper's accounting:
    weight_bits + bias_bits + activation_bits = total_bits, each data structure at its own width,
    float32_bits the same data at 32 bits (a reshape's output is its input's memory, so a reshape
    row has no activation_bits); per layer, weight_width_bits / bias_width_bits are the formats'
    widths.
    """
    data = Path(path).read_bytes()
    f = _File(data)  # the reader's checks and messages for files that are not TFLite at all
    if METADATA_NAME in f.metadata or "fxpq_graph" in f.metadata:
        graph, info = read_bytes(data)  # fxpq files: every check of the reader first
        layout = layout_from_tflite(data)
        report = _fxpq_report(graph, info, layout)
    else:
        try:
            layout = layout_from_tflite(data)
            report = _stock_report(f, layout)
        except (IndexError, KeyError, TypeError, AttributeError) as exc:  # a file TFLM would refuse too
            raise FlatbufferFormatError(f"malformed TFLite file ({type(exc).__name__}: {exc})") from None
    device = DeviceModel(layout).cost().to_dict()
    report["totals"].update(device, macs=sum(layout.macs), file_bytes=len(data))
    report["notes"] = list(layout.tflm.notes) if layout.tflm is not None else []
    return report


def _fxpq_report(graph, info, layout) -> dict[str, Any]:
    t = graph.tensors
    layers = []
    w_bits = b_bits = a_bits = w_count = b_count = a_count = 0
    inp = t[graph.input]
    if inp.fmt is not None:
        a_count += int(np.prod(inp.shape))
        a_bits += int(np.prod(inp.shape)) * inp.fmt.bits
    calls = {id(node): call for node, call, _ in graph_calls(graph)} if info.target == "fxp" else {}
    for i, node in enumerate(graph.nodes):  # one node per operator of the file, in order
        out = t[node.output]
        zps = info.zero_points
        n_out = int(np.prod(out.shape))
        row: dict[str, Any] = {"name": node.name, "op": node.op,
                               "inputs": [_fmt(t[j].fmt, zps.get(j, 0)) for j in node.inputs],
                               "output": _fmt(out.fmt, zps.get(node.output, 0)), "output_shape": list(out.shape),
                               "output_bytes": n_out * (4 if out.fmt is None else out.fmt.storage_dtype.itemsize)}
        if layout.macs[i]:
            row["macs"] = layout.macs[i]
        if info.target == "fxp":
            estimate = call_instructions(calls[id(node)])
            if estimate is not None:
                row["instructions_estimate"] = round(estimate)
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
            if node.weight_scale is not None:  # TFLite's float scales (target builtin): no frac
                del row["weight_frac"]
                row["weight_scale"] = [float(v) for v in np.atleast_1d(node.weight_scale)]
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
    estimates = [r.get("instructions_estimate") for r in layers if r["op"] != "reshape"]
    totals: dict[str, Any] = {}
    if info.target == "fxp" and all(e is not None for e in estimates):  # the kernels + the runner's per-op cost
        totals["instructions_estimate"] = round(model_instructions(list(calls.values())))
    totals |= {"weight_bits": w_bits, "bias_bits": b_bits, "activation_bits": a_bits, "total_bits": total,
              "float32_bits": float_bits, "compression_total": float_bits / max(total, 1),
              "compression_weights": 32 * w_count / max(w_bits, 1),
              "weight_elements": w_count, "bias_elements": b_count, "activation_elements": a_count}
    return {"target": info.target, "version": info.version, "float_input": info.float_input,
            "output_softmax": graph.output_softmax, "layers": layers, "totals": totals}


def _type_text(t) -> str:
    """A stored tensor's type and quantization: `int8 (scale 0.0235, zero point -3)`."""
    name = _TYPE_NAMES.get(t.type, f"type {t.type}")
    q = t.quantization
    if q is None or q.scale is None or not len(q.scale):
        return name
    if len(q.scale) > 1:
        return f"{name} (per-channel, {len(q.scale)} scales)"
    zp = int(q.zeroPoint[0]) if q.zeroPoint is not None and len(q.zeroPoint) else 0
    return f"{name} (scale {float(q.scale[0]):.4g}, zero point {zp})"


def _stock_report(f: _File, layout) -> dict[str, Any]:
    """Per operator of a TFLite file not written by fxpq: stored types, parameters, MACs, outputs."""
    weights = {w.layer: w for w in layout.weights}
    layers = []
    for i, op in enumerate(f.sub.operators or []):
        ins = [int(x) for x in (op.inputs if op.inputs is not None else [])]
        outs = [int(x) for x in (op.outputs if op.outputs is not None else [])]
        out = f.tensor(outs[0], f"operator {i} output") if outs else None
        name = f.tensor_name(outs[0]) if outs else f"op_{i}"
        activations = [f.tensor(x, f"operator {i} input") for x in ins if x >= 0]
        activations = [a for a in activations if not f.buffer_bytes(a.buffer, f"operator {i} input")]
        shape = [int(d) for d in out.shape] if out is not None and out.shape is not None else []
        row: dict[str, Any] = {"name": name, "op": _op_type(f, op).lower(),
                               "inputs": [_type_text(a) for a in activations],
                               "output": _type_text(out) if out is not None else "",
                               "output_shape": shape[1:],
                               "output_bytes": int(np.prod(shape)) * ELEM_BYTES.get(out.type, 1) if out else 0}
        if layout.macs[i]:
            row["macs"] = layout.macs[i]
        w = weights.get(name)
        if w is not None:
            row.update(weight_bytes=w.weight_bytes(), bias_bytes=w.bias_elements * w.bias_elem_bytes)
        layers.append(row)
    kinds = sorted({_TYPE_NAMES.get(f.tensor(int(x), "output").type, "?") for op in f.sub.operators or []
                    for x in (op.outputs if op.outputs is not None else [])})
    return {"target": "tflite (not written by fxpq)", "activation_types": kinds, "layers": layers, "totals": {}}


def format_report(report: dict[str, Any]) -> str:
    """A larq-style table of the inspect report (columns and totals named as in the JSON)."""
    fxpq = "total_bits" in report["totals"]
    cols = (["layer", "op", "in", "out", "weight_width_bits", "weight_bytes", "macs", "instructions_estimate",
             "output_bytes", "activation_bits"] if fxpq else
            ["layer", "op", "in", "out", "weight_bytes", "bias_bytes", "macs", "output_bytes"])
    rows = [tuple(cols)]
    for r in report["layers"]:
        # a reshape shares its input's memory: "-" rather than a misleading 0
        cells = {"layer": r["name"], "op": r["op"], "in": ",".join(r["inputs"]), "out": r["output"],
                 "activation_bits": str(r["activation_bits"]) if "activation_bits" in r else "-"}
        rows.append(tuple(cells.get(c, str(r.get(c, "") or "")) for c in cols))
    widths = [max(len(row[i]) for row in rows) for i in range(len(cols))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    tot = report["totals"]
    lines += ["", f"target {report['target']}" + (f" (activations: {', '.join(report['activation_types'])})"
                                                   if "activation_types" in report else "")]
    if fxpq:
        lines.append(f"paper:  weight_bits {tot['weight_bits']:,}, bias_bits {tot['bias_bits']:,}, activation_bits "
                     f"{tot['activation_bits']:,}, total_bits {tot['total_bits']:,}; compression vs float32: total "
                     f"{tot['compression_total']:.2f}x, weights {tot['compression_weights']:.2f}x")
    compute = f"compute: macs {tot['macs']:,} per inference"
    if "instructions_estimate" in tot:
        compute += (f"; instructions_estimate {tot['instructions_estimate']:,} on Cortex-M4 (fxpq kernels; an estimate "
                    "from fxpq_keras.instructions: the kernel calls and the runner's per-op cost; "
                    "`fxpq run --engine qemu-m4` measures)")
    lines += [compute,
              f"device: flash_bytes {tot['flash_bytes']:,} (the whole file: weight_bytes {tot['weight_bytes']:,}, "
              f"bias_bytes {tot['bias_bytes']:,}, other_flash_bytes {tot['other_flash_bytes']:,})",
              f"        ram_bytes {tot['ram_bytes']:,} (TFLM arena_used_bytes on Cortex-M with CMSIS-NN: "
              f"tflm_planned_bytes {tot['tflm_planned_bytes']:,} + tflm_persistent_bytes "
              f"{tot['tflm_persistent_bytes']:,})",
              f"        runner_planned_bytes {tot['runner_planned_bytes']:,} (the C runner's planned tensors and "
              "scratch; its arena, runner_arena_bytes, adds per-op records)"]
    lines += [f"note: {n}" for n in report.get("notes", [])]
    return "\n".join(lines)


def report_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=True)
