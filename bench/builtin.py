"""Target builtin (issue 23): the searched stock-TFLM file against uniform int8, for every zoo model.

    FXPQ_BENCH_CACHE=/work/bench-cache .venv/bin/python bench/builtin.py [--models a,b] [--max-drop 0.01] [--aeq]
        [--activation-scales float|pow2]   (symmetric int8 activations; power-of-two ones)
        [--samples 2048] [--option margin_sigma=0]   (another calibration size; any search option)

With `TFLM_DIR` (and `FXPQ_TFLM_CACHE` holding release TFLM libraries) every file also runs in real
TFLM on QEMU Cortex-M4 with CMSIS-NN (`TflmEngine` variant m4-cmsis, the model linked in):
instructions per inference (mean over `--m4-samples` held-out inputs), their ratio to TFLite int8's,
and TFLM's measured `arena_used_bytes`.

Per zoo model (bench/models.py, trained and cached; calibration: 512 unlabeled training samples):

- TFLite int8: TFLiteConverter full-integer post-training quantization (the file users have today);
- W8A8 (int8-builtin): fxpq's uniform 8-bit policy through stock int8 ops;
- W8A8 (builtin, float weights): the builtin space's uniform W8A8 (`builtin_uniform8`: TFLite's
  float weight scales, every activation at 8 bits with its range-derived frac and, as the search's
  start has them, TFLite-style float activation scales where `builtin_space.float_scale_layers`
  gives them one, asymmetric int8 where signed); and beside it W8A8 (builtin, symmetric int8), the
  same with `activation_scales="float"`: what asymmetric int8 buys, in the same run;
- builtin search: FxP-QNet at the budget with `target="builtin"` (weights int8 or int4, activations
  int8 or int16, device objective), the benchmarks' setting (bench/search_setting.py: seed 0, integer
  input, the policy cached under `$FXPQ_BENCH_CACHE`), written with target builtin and integer input
  (as TFLite int8 files take int8; W8A8 likewise);
- with --aeq: Google's AI Edge Quantizer (`ai-edge-quantizer` 0.10, importable: it needs no
  TensorFlow; e.g. `pip install --no-deps --target DIR ai-edge-quantizer immutabledict
  litert-lm-builder tomli` and PYTHONPATH=DIR) on the converter's float file, static recipes W8A8
  (static_wi8_ai8), W4A8 (the same with 4-bit weights, per tensor on FULLY_CONNECTED: TFLM refuses
  AEQ's per-channel int4 FC) and W8A16 (static_wi8_ai16), calibrated on
  the same 512 samples, run in the `tflite-micro` wheel (real TFLM) on the held-out split (AEQ's
  constants stored after the flatbuffer, which TFLM ignores, are first moved inside it:
  `inline_buffers`).

Columns: `.tflite` bytes and their ratio to TFLite int8; the held-out score (top-1 accuracy, or AUC
for the autoencoder) and agreement with the float model's top-1 on the held-out split (the
integer files run through the numpy model of TFLM's kernels); the held-out loss the budget bounds
(top-1 flips, or the autoencoder's relative output MSE, metric snr) and whether it is within
`--max-drop`; the weights stored as int4 and the
activation tensors stored as int16; `bit-exact: wheel / M4`: the builtin file run in the `tflite-micro`
wheel (real TFLM, reference kernels; `--exact` held-out inputs) and, with TFLM_DIR, under TFLM +
CMSIS-NN on QEMU Cortex-M4 (the `--m4-samples` inputs) equals the numpy model;
`arena B`: TFLM's arena as fxpq_keras.tflm_arena models it (with int16 activations CMSIS-NN's int16
scratch is modelled as the int8 one), under CMSIS-NN and under TFLM's reference kernels, which
unpack int4 weights into the arena (one byte per weight: int4 only saves RAM-free flash with CMSIS-NN).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fxpq_keras  # noqa: E402,F401  (selects tf_keras before TensorFlow is imported)
from bench import search_setting as setting  # noqa: E402
from bench.models import MODELS, ZOO, calibration_set, score, trained  # noqa: E402
from bench.quality import tflite_int8  # noqa: E402
from bench.search_setting import FLOAT_INPUT, cached_policy, input_integers, searched_model  # noqa: E402
from fxpq_keras.calibration import Calibration  # noqa: E402
from fxpq_keras.fakequant import quantize_model  # noqa: E402
from fxpq_keras.flatbuffer import Interpreter, export_tflite  # noqa: E402
from fxpq_keras.flatbuffer.schema import schema as S  # noqa: E402
from fxpq_keras.formats import ACTIVATION_SCALES  # noqa: E402
from fxpq_keras.policy import Policy  # noqa: E402


def _agreement(name: str, out: np.ndarray, ref: np.ndarray) -> float | None:
    return None if ZOO[name].metric == "auc" else float(np.mean(np.argmax(out, -1) == np.argmax(ref, -1)))


def _loss(name: str, out: np.ndarray, ref: np.ndarray) -> float:
    """The held-out loss the 1 % budget bounds: top-1 flips against the float model, or for the
    autoencoder (metric snr) the relative output MSE, noise power over the float output's power."""
    if ZOO[name].metric == "auc":
        out, ref = np.asarray(out, np.float64), np.asarray(ref, np.float64)
        return float(np.sum((out - ref) ** 2) / np.sum(ref ** 2))
    return 1.0 - float(np.mean(np.argmax(out, -1) == np.argmax(ref, -1)))


def _composition(blob: bytes) -> tuple[int, int, int]:
    """(weights stored as int4, weights stored as int8, activation tensors stored as int16)."""
    model = S.ModelT.InitFromPackedBuf(blob, 0)
    int4 = int8 = act16 = 0
    for t in model.subgraphs[0].tensors:
        n = int(np.prod(t.shape)) if t.shape is not None else 0
        const = model.buffers[t.buffer].data is not None
        if const and t.type == S.TensorType.INT4:
            int4 += n
        elif const and t.type == S.TensorType.INT8:
            int8 += n
        elif not const and t.type == S.TensorType.INT16:
            act16 += 1
    return int4, int8, act16


def _arena(blob: bytes) -> dict[str, Any]:
    """The modelled TFLM arena (fxpq_keras.tflm_arena) under CMSIS-NN and under the reference kernels."""
    from fxpq_keras.flatbuffer.memory import device_model_from_tflite

    try:
        d = device_model_from_tflite(blob)
        return {"ram": d.cost().ram_bytes, "ram_ref": d.cost(kernels="reference").ram_bytes}
    except Exception:  # noqa: BLE001 - a file the model cannot read gets no arena figure
        return {}


def _m4_input(blob: bytes, x: np.ndarray) -> np.ndarray:
    """Held-out floats as a converter / AEQ file's input tensor takes them (quantized as TFLite does)."""
    model = S.ModelT.InitFromPackedBuf(blob, 0)
    t = model.subgraphs[0].tensors[model.subgraphs[0].inputs[0]]
    if t.type == S.TensorType.FLOAT32:
        return x.astype(np.float32)
    q, dtype = t.quantization, {S.TensorType.INT8: np.int8, S.TensorType.INT16: np.int16}[t.type]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / q.scale[0]) + q.zeroPoint[0], info.min, info.max).astype(dtype)


def _m4(path: Path, x: np.ndarray, fxpq_file: bool) -> dict[str, Any]:
    """Instructions per inference (mean) and TFLM's measured arena_used_bytes of one file in real
    TFLM on QEMU Cortex-M4 with CMSIS-NN; {} without TFLM_DIR. x: held-out floats."""
    import os

    if not os.environ.get("TFLM_DIR"):
        return {}
    from fxpq_keras.kernels.tflm_engines import TflmEngine

    try:
        if fxpq_file:  # our file: the engine takes the input format's integers (and adds a u8 zero point)
            interp = Interpreter(path)
            eng = TflmEngine(path, interp.graph, interp.info, variant="m4-cmsis", link_model=True)
            xi = input_integers(path, x)
            got, ref = eng.run(xi), interp.predict(xi, raw=True)
            same = all(np.array_equal(np.asarray(g), np.asarray(r))
                       for g, r in zip(got, ref if isinstance(ref, list) else [ref], strict=True))
            return {"m4": float(eng.instructions.mean()), "arena": int(eng.arena_used_bytes), "m4_exact": same}
        else:
            eng = TflmEngine(path, None, None, variant="m4-cmsis", link_model=True)
            eng.run(_m4_input(path.read_bytes(), x))
        return {"m4": float(eng.instructions.mean()), "arena": int(eng.arena_used_bytes)}
    except Exception as exc:  # noqa: BLE001 - a file TFLM refuses is a note, not a crash
        return {"m4_note": f"M4: {str(exc).splitlines()[0][:120]}"}


def _file_row(name: str, what: str, path: Path, data: dict[str, np.ndarray], float_out: np.ndarray,
              n_exact: int, note: str = "", m4_samples: int = 0) -> dict[str, Any]:
    x_te = input_integers(path, data["x_test"].astype(np.float32))
    out = Interpreter(path).predict(x_te)
    out = out[0] if isinstance(out, list) else out
    blob = path.read_bytes()
    int4, int8, act16 = _composition(blob)
    row = {"model": name, "file": what, "bytes": len(blob), "score": score(name, out, data),
           "agreement": _agreement(name, out, float_out), "loss": _loss(name, out, float_out),
           "int4": int4, "int8": int8, "act16": act16, "note": note,
           **_arena(blob)}
    if m4_samples:
        row.update(_m4(path, data["x_test"][:m4_samples].astype(np.float32), True))
    if n_exact:
        interp = Interpreter(path)
        ref = interp.predict(x_te[:n_exact], raw=True)
        got = Interpreter(path, engine="tflm").predict(x_te[:n_exact], raw=True)
        row["exact"] = "yes" if np.array_equal(np.asarray(ref), np.asarray(got)) else "NO"
    if "m4_exact" in row:  # the same file under TFLM + CMSIS-NN on the M4 (the --m4-samples inputs)
        row["exact"] = f"{row.get('exact', '-')} / M4 {'yes' if row.pop('m4_exact') else 'NO'}"
    return row


def measure(name: str, max_drop: float, samples: int, n_exact: int, aeq: bool = False,
            m4_samples: int = 0, activation_scales: str = "asymmetric",
            extra: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    model, data = trained(name)
    x_cal, _ = calibration_set(data, samples)
    x_te = data["x_test"].astype(np.float32)
    float_out = model.predict(x_te, verbose=0)
    rows: list[dict[str, Any]] = [{"model": name, "file": "float", "score": score(name, float_out, data),
                                   "agreement": _agreement(name, float_out, float_out), "note": ""}]
    int8_out, int8_blob = tflite_int8(model, x_cal, x_te)
    out_dir = Path("/tmp/fxpq-bench-builtin")
    out_dir.mkdir(exist_ok=True)
    (out_dir / f"{name}-tflite-int8.tflite").write_bytes(int8_blob)
    rows.append({"model": name, "file": "TFLite int8", "bytes": len(int8_blob), "score": score(name, int8_out, data),
                 "agreement": _agreement(name, int8_out, float_out), "loss": _loss(name, int8_out, float_out),
                 "int8": None, "note": "LiteRT",
                 **_arena(int8_blob), **(_m4(out_dir / f"{name}-tflite-int8.tflite", x_te[:m4_samples], False)
                                         if m4_samples else {})})
    calib = Calibration(model, x_cal)
    path = out_dir / f"{name}-w8a8.tflite"
    try:
        export_tflite(quantize_model(calib, Policy.uniform(calib, 8, None)), path, target="int8-builtin",
                      float_input=FLOAT_INPUT)
        rows.append(_file_row(name, "W8A8 (int8-builtin)", path, data, float_out, 0, m4_samples=m4_samples))
    except Exception as exc:  # noqa: BLE001 - a refusal is a row of the table, not a crash
        rows.append({"model": name, "file": "W8A8 (int8-builtin)", "note": f"refused: {str(exc)[:160]}"})
        rows.append({"model": name, "file": f"builtin search {max_drop:.0%}",
                     "note": "not run: the model has layers no stock file expresses (see the W8A8 row)"})
        return rows + (aeq_rows(name, model, x_cal, data, float_out, m4_samples) if aeq else [])
    # the default rule's uniform W8A8, and beside it the symmetric rule's: what asymmetric int8 buys, in one run
    w8a8 = [("W8A8 (builtin, float weights)", activation_scales)]
    if activation_scales == "asymmetric":
        w8a8.append(("W8A8 (builtin, symmetric int8)", "float"))
    for what, rule in w8a8:
        path = out_dir / f"{name}-builtin-w8a8-{rule}.tflite"
        try:
            export_tflite(quantize_model(calib, builtin_uniform8(calib, rule)), path, target="builtin",
                          float_input=FLOAT_INPUT)
            rows.append(_file_row(name, what, path, data, float_out, 0, m4_samples=m4_samples))
        except Exception as exc:  # noqa: BLE001 - a refusal is a row of the table, not a crash
            rows.append({"model": name, "file": what, "note": f"refused: {str(exc)[:160]}"})
    # the rule always in the cache key: {"target": "builtin"} alone named the symmetric rule's searches
    options = {"target": "builtin", "activation_scales": activation_scales}
    options.update(extra or {})
    policy, how = cached_policy(name, model, x_cal, max_drop, options)
    path = out_dir / f"{name}-builtin.tflite"
    try:
        export_tflite(searched_model(model, policy), path, target="builtin", float_input=FLOAT_INPUT)
        rows.append(_file_row(name, f"builtin search {max_drop:.0%}", path, data, float_out, n_exact, how,
                              m4_samples=m4_samples))
    except Exception as exc:  # noqa: BLE001
        rows.append({"model": name, "file": f"builtin search {max_drop:.0%}", "note": f"refused: {str(exc)[:160]}"})
    if aeq:
        rows += aeq_rows(name, model, x_cal, data, float_out, m4_samples)
    return rows


def builtin_uniform8(calib: Calibration, activation_scales: str = "asymmetric") -> Policy:
    """Uniform W8A8 in the builtin format space (the search's uniform policy at 8 bits): weights at
    TFLite's float scales (the start's), every activation at 8 bits with its range-derived frac and
    the start's float activation scales (min(max|a| / qmax, 2^-frac), formats.activation_scale;
    asymmetric int8 where signed, formats.asymmetric_format). Against TFLite int8 it shows what
    remains between the two rules (power-of-two inputs and logits); activation_scales "float": signed
    activations symmetric; "pow2": every activation 2^-frac."""
    from fxpq_keras.search import SearchOptions, builtin_space, space

    opts = SearchOptions(target="builtin", per_channel=True, activation_scales=activation_scales)
    policy = space.start_policy(calib, opts)
    ranges = space.data_ranges(calib, opts, policy)

    def frac_for(key: tuple[str, str], bits: int, signed: bool) -> Any:
        return space.range_frac(ranges[key], bits, signed)

    for layer, ds in space.changeable_keys(policy, opts):
        d = policy.get(layer, ds)
        if ds == "output" and d.bits > 8:
            policy.set(layer, ds, bits=8, frac=frac_for((layer, ds), 8, d.signed))
    builtin_space.repair(policy, frac_for)  # as every policy the search measures: pools keep their input's format
    policy.constrain_biases()
    return policy


def _aeq_recipes() -> dict[str, list[dict[str, Any]]]:
    import copy

    from ai_edge_quantizer import recipe

    w4a8 = copy.deepcopy(recipe.static_wi8_ai8())
    for entry in w4a8:
        entry["op_config"]["weight_tensor_config"]["num_bits"] = 4
    # TFLM refuses per-channel int4 FULLY_CONNECTED (AEQ's default granularity): per tensor there
    fc = copy.deepcopy(w4a8[0])
    fc["operation"] = "FULLY_CONNECTED"
    fc["op_config"]["weight_tensor_config"]["granularity"] = "TENSORWISE"
    w4a8.append(fc)
    return {"AEQ W8A8": recipe.static_wi8_ai8(), "AEQ W4A8": w4a8, "AEQ W8A16": recipe.static_wi8_ai16()}


def _run_wheel(blob: bytes, x: np.ndarray) -> np.ndarray:
    """Outputs (dequantized) of a float-input file in the tflite-micro wheel, one sample at a time."""
    from tflite_micro.python.tflite_micro import runtime

    interp = runtime.Interpreter.from_bytes(blob)
    detail, inp = interp.get_output_details(0), interp.get_input_details(0)
    qi = inp.get("quantization_parameters") or {}
    if inp["dtype"] != np.float32 and len(qi.get("scales", [])):  # an integer input: quantize as TFLite does
        info = np.iinfo(inp["dtype"])
        x = np.clip(np.round(x / qi["scales"][0]) + qi["zero_points"][0], info.min, info.max)
    outs = []
    for sample in x:
        interp.set_input(sample[None].astype(inp["dtype"]), 0)
        interp.invoke()
        outs.append(interp.get_output(0).copy())
    out = np.concatenate(outs).astype(np.float64)
    q = detail.get("quantization_parameters") or {}
    scales = q.get("scales")
    if detail["dtype"] != np.float32 and scales is not None and len(scales):
        out = (out - q["zero_points"][0]) * scales[0]
    return out


def inline_buffers(blob: bytes) -> bytes:
    """A file whose constants all sit inside the flatbuffer: AEQ writes buffers of 16 KiB and more
    after the flatbuffer (`Buffer.offset`/`size`, the >2 GB layout), which LiteRT reads and TFLM
    (90b983c) ignores, running such layers on empty weights without an error (the FC autoencoder's
    W8A8 output was constant: AUC 0.57). Unchanged when no buffer uses an offset."""
    import flatbuffers

    from fxpq_keras.flatbuffer.builder import _AlignedBufferT

    model = S.ModelT.InitFromPackedBuf(blob, 0)
    if not any(getattr(b, "offset", 0) > 1 for b in model.buffers):
        return blob
    buffers = []
    for b in model.buffers:
        new = _AlignedBufferT()
        new.data = blob[b.offset:b.offset + b.size] if getattr(b, "offset", 0) > 1 else b.data
        buffers.append(new)
    model.buffers = buffers
    fb = flatbuffers.Builder(len(blob) + 4096)
    fb.Finish(model.Pack(fb), file_identifier=b"TFL3")
    return bytes(fb.Output())


def aeq_rows(name: str, model: Any, x_cal: np.ndarray, data: dict[str, np.ndarray],
             float_out: np.ndarray, m4_samples: int = 0) -> list[dict[str, Any]]:
    """AI Edge Quantizer's static recipes on the converter's float file (see the module doc)."""
    from ai_edge_litert.interpreter import Interpreter as LiteRT
    from ai_edge_quantizer import quantizer

    tf = fxpq_keras._tf.tf
    float_blob = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    signatures = LiteRT(model_content=float_blob).get_signature_list()
    key = next(iter(signatures))
    in_name = signatures[key]["inputs"][0]
    calibration = {key: [{in_name: x_cal[i:i + 1].astype(np.float32)} for i in range(len(x_cal))]}
    rows = []
    for what, rec in _aeq_recipes().items():
        try:
            qt = quantizer.Quantizer(float_blob, rec)
            blob = inline_buffers(bytes(qt.quantize(qt.calibrate(calibration, num_threads=1),
                                                    enable_progress_report=False).quantized_model))
            out = _run_wheel(blob, data["x_test"].astype(np.float32))
            int4, int8, act16 = _composition(blob)
            path = Path("/tmp/fxpq-bench-builtin") / f"{name}-{what.replace(' ', '-')}.tflite"
            path.write_bytes(blob)
            rows.append({"model": name, "file": what, "bytes": len(blob), "score": score(name, out, data),
                         "agreement": _agreement(name, out, float_out), "loss": _loss(name, out, float_out),
                         "int4": int4, "int8": int8, "act16": act16,
                         "note": "run in the tflite-micro wheel", **_arena(blob),
                         **(_m4(path, data["x_test"][:m4_samples].astype(np.float32), False) if m4_samples else {})})
        except Exception as exc:  # noqa: BLE001 - a failing recipe is a row of the table
            rows.append({"model": name, "file": what, "note": f"failed: {str(exc).splitlines()[0][:160]}"})
    return rows


def table(rows: list[dict[str, Any]], max_drop: float = 0.01) -> str:
    head = ["model", "file", ".tflite B", "file/int8", "arena B (CMSIS-NN)", "arena B (reference)",
            "M4 instr (CMSIS-NN)", "M4/int8", "TFLM arena B (M4)",
            "held-out score", "agreement", "held-out loss", f"holds {max_drop:.0%}", "int4 weights",
            "int8 weights", "int16 tensors", "bit-exact: wheel / M4", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    base = base_m4 = None
    for r in rows:
        if r["file"] == "TFLite int8":
            base, base_m4 = r.get("bytes"), r.get("m4")
        b, m4 = r.get("bytes"), r.get("m4")
        agree = r.get("agreement")
        cells = [r["model"], r["file"], f"{b:,}" if b else "", f"{b / base:.2f}" if b and base else "",
                 f"{r['ram']:,}" if r.get("ram") else "", f"{r['ram_ref']:,}" if r.get("ram_ref") else "",
                 f"{m4:,.0f}" if m4 else "", f"{m4 / base_m4:.2f}" if m4 and base_m4 else "",
                 f"{r['arena']:,}" if r.get("arena") else "",
                 f"{r['score']:.4f}" if r.get("score") is not None else "",
                 f"{agree:.2%}" if agree is not None else "",
                 f"{r['loss']:.2%}" if r.get("loss") is not None else "",
                 ("yes" if r["loss"] <= max_drop else "**no**") if r.get("loss") is not None else "",
                 f"{r['int4']:,}" if r.get("int4") is not None else "", f"{r['int8']:,}" if r.get("int8") else "",
                 str(r.get("act16", "")), r.get("exact", ""),
                 "; ".join(n for n in (r.get("note", ""), r.get("m4_note", "")) if n)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated zoo models (default: all)")
    p.add_argument("--samples", type=int, default=512, help="unlabeled calibration samples (training split)")
    p.add_argument("--max-drop", type=float, default=0.01, help="the search's budget")
    p.add_argument("--exact", type=int, default=200, help="held-out inputs run in the tflite-micro wheel")
    p.add_argument("--aeq", action="store_true", help="also AI Edge Quantizer's W8A8, W4A8 and W8A16 recipes")
    p.add_argument("--aeq-only", action="store_true", help="only the float and AEQ rows (no search)")
    p.add_argument("--m4-samples", type=int, default=3,
                   help="held-out inputs run on QEMU Cortex-M4 with CMSIS-NN (needs TFLM_DIR; 0: none)")
    p.add_argument("--option", action="append", default=[], metavar="NAME=VALUE", help=setting.OPTION_HELP)
    p.add_argument("--activation-scales", choices=ACTIVATION_SCALES, default="asymmetric",
                   help="target builtin's activation scales, for the search and the builtin W8A8 row (float: all "
                        "symmetric; pow2: the power-of-two activations before issue 23's float scales)")
    args = p.parse_args(argv)
    extra = setting.parse_options(args.option, p.error)
    if "target" in extra:
        p.error("--option target: this bench searches target builtin")
    rows: list[dict[str, Any]] = []
    for name in args.models.split(","):
        if args.aeq_only:
            model, data = trained(name)
            x_cal, _ = calibration_set(data, args.samples)
            float_out = model.predict(data["x_test"].astype(np.float32), verbose=0)
            new = [{"model": name, "file": "float", "score": score(name, float_out, data),
                    "agreement": _agreement(name, float_out, float_out), "note": ""}]
            new += aeq_rows(name, model, x_cal, data, float_out, args.m4_samples)
        else:
            new = measure(name, args.max_drop, args.samples, args.exact, args.aeq, args.m4_samples,
                          args.activation_scales, extra)
        rows += new
        print(f"[{name} measured]\n{table(new, args.max_drop)}", file=sys.stderr, flush=True)
    print(table(rows, args.max_drop))
    return 0


if __name__ == "__main__":
    sys.exit(main())
