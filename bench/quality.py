"""Quality benchmark: the zoo table, compression at a fixed accuracy budget (README "Results").

    .venv/bin/python bench/quality.py [--models a,b] [--samples 512] [--max-drop 0.01] [--ablations]
                                      [--option NAME=VALUE ...]
    .venv/bin/python bench/quality.py --models fc_autoencoder --option metric="'anomaly'"   # the task metric

For every model of the benchmark zoo (bench/models.py: seven models trained here with fixed seeds,
cached) one row per table, every figure from this one run:

- float: the trained model's held-out metric (top-1 accuracy; ROC AUC for the autoencoder);
- TFLite int8: full-integer post-training quantization by TFLiteConverter (the same calibration
  samples), run with ai-edge-litert: held-out metric and `.tflite` bytes;
- best uniform: the lowest uniform dynamic fixed-point width that the search finds within the
  budget (`result.best_uniform_bits`), its held-out drop and total compression (paper accounting);
- FxP-QNet at the budget (default 1 %): held-out drop against float and agreement with the float
  model's top-1 (for the autoencoder: AUC drop and the output SNR against float, the metric the
  search budgets by default; with `--option metric="'anomaly'"` the mean relative change of the
  anomaly score on held-out data), the search's predicted drop with its 90 % interval, total compression (paper
  accounting: weights + biases + activations bits vs float32), `.tflite` bytes (fxp target), weights +
  biases bytes as stored and peak RAM bytes (device accounting, fxpq_keras.flatbuffer.memory: the
  TFLM arena on Cortex-M, one model for both files), each also as a ratio to TFLite int8, search
  seconds and evaluations. Both files take integer input (the TFLite file int8, the fxp file its
  input format's integers; the search plans that file's RAM, `float_input=False`), so neither
  arena holds a float32 copy of the input.

The search setting (calibration, options, integer input, the cached policy bench/mcu.py reuses) is
bench/search_setting.py's. Calibration draws `--samples` inputs (no labels) from the training split
only; every held-out figure is on the test split, which no calibration, search or training step
ever saw.
Quantized held-out outputs come from the fake-quant model (bit-exact with the integer reference
up to rounding ties, docs/numerics.md). `--ablations` adds, per model, the table of FxP-QNet with
each mechanism of docs/algorithm.md (mechanisms 1-4) switched off.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fxpq_keras  # noqa: E402,F401  (selects tf_keras before TensorFlow is imported)
from bench import search_setting as setting  # noqa: E402
from bench.models import MODELS, ZOO, calibration_set, score, trained  # noqa: E402
from fxpq_keras.calibration import Calibration  # noqa: E402
from fxpq_keras.fakequant import quantize_model  # noqa: E402
from fxpq_keras.flatbuffer.memory import file_memory  # noqa: E402
from fxpq_keras.host import memory_size, reset_peak_rss  # noqa: E402
from fxpq_keras.policy import Policy  # noqa: E402
from fxpq_keras.search.evaluator import predict  # noqa: E402
from fxpq_keras.search.metric import as_metric, metric_name  # noqa: E402

ABLATIONS = {
    "FxP-QNet": {},
    "  - no dynamic fixed point (M1)": {"dynamic_fixed_point": False},
    "  - no layer-wise adaptation (M2)": {"layerwise": False},
    "  - no prediction-error frac (M3)": {"error_statistics_frac": False},
    "  - no self-distillation (M4, labels)": {"self_distillation": False},
    "  - no range-aligned RAM-first pass": {"align_ranges": False},
    "  + distillation fine-tuning (opt-in; not post-training)": {"finetune_epochs": 5},
}


def tflite_int8(model: Any, x_calib: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, bytes]:
    """Stock TFLite full-integer PTQ (int8 in and out), run with ai-edge-litert; (outputs, file)."""
    from ai_edge_litert.interpreter import Interpreter

    tf = fxpq_keras._tf.tf

    def representative() -> Any:
        for i in range(len(x_calib)):
            yield [x_calib[i:i + 1]]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    blob = converter.convert()
    interp = Interpreter(model_content=blob)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    interp.resize_tensor_input(inp["index"], [len(x_test)] + list(x_test.shape[1:]))
    interp.allocate_tensors()
    s, z = inp["quantization"]
    interp.set_tensor(inp["index"], np.clip(np.round(x_test / s + z), -128, 127).astype(np.int8))
    interp.invoke()
    so, zo = out["quantization"]
    return (interp.get_tensor(out["index"]).astype(np.float32) - zo) * so, blob


def device_bytes(blob: bytes) -> tuple[int, int]:
    """(weights + biases as stored, peak RAM) of any .tflite, by the device accounting
    (fxpq_keras.flatbuffer.memory: TFLM's arena on Cortex-M, one model for fxp and TFLiteConverter
    files alike)."""
    m = file_memory(blob)
    return int(m.parameter_bytes), int(m.ram_bytes)


def relative_mse(q: np.ndarray, ref: np.ndarray) -> float:
    """Output noise power over signal power against the float model (the snr budget's loss)."""
    ref = np.asarray(ref, np.float64)
    return float(np.mean((np.asarray(q, np.float64) - ref) ** 2) / max(np.mean(ref ** 2), 1e-30))


def covered(res: Any, q: np.ndarray, ref: np.ndarray, inputs: np.ndarray | None = None) -> bool:
    """Whether the held-out loss lies inside the search's 90 % interval widened by the test split's own
    sampling error (`interval.predictive`: what a finite held-out set scatters by)."""
    from fxpq_keras.search.interval import predictive

    est = res.check_metrics.estimate
    if res.metric == "top1":
        held, var = float(np.mean(np.argmax(q, -1) != np.argmax(ref, -1))), None
    elif res.metric != "snr":  # a task metric (anomaly): the mean of its per-sample losses on held-out data
        losses = res.budget.task.losses(ref, q, inputs)
        held, var = float(np.mean(losses)), float(np.var(losses))
    else:
        r = np.asarray(ref, np.float64).reshape(len(ref), -1)
        noise = np.sum((np.asarray(q, np.float64).reshape(len(q), -1) - r) ** 2, axis=1)
        signal = np.sum(r * r, axis=1)
        held = float(noise.sum() / max(signal.sum(), 1e-30))
        var = float(np.var((noise - held * signal) / max(signal.mean(), 1e-30)))
    lo, hi = predictive(est, len(q), var).interval()
    return lo <= held <= hi


def agreement(q: np.ndarray, ref: np.ndarray) -> float:
    return float(np.mean(np.argmax(q, -1) == np.argmax(ref, -1)))


def measure(name: str, samples: int, max_drop: float, ablations: bool,
            options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every figure of one zoo model (see the module docstring)."""
    model, data = trained(name)
    x_te = data["x_test"]
    x_cal, pick = calibration_set(data, samples)
    ref = predict(model, x_te)
    options = setting.model_options(name, options)
    f: dict[str, Any] = {"name": name, "params": model.count_params(), "metric": ZOO[name].metric,
                         "float": score(name, ref, data), "samples": len(x_cal), "test": len(x_te)}
    searched = metric_name((options or {}).get("metric", "auto"))
    if searched == "auto":
        searched = "top1" if f["metric"] == "top1" else "snr"

    def held_out(q: np.ndarray) -> dict[str, Any]:
        """Held-out metric, its drop, and the budget's own loss: 1 - agreement, relative output MSE, or the
        searched task metric's mean loss (e.g. the anomaly score's mean relative change)."""
        if searched == "top1":
            # the disagreeing fraction itself: 1.0 - 0.99 is 0.010000000000000009 (4 of 400 would be over 1 %)
            loss = float(np.mean(np.argmax(q, -1) != np.argmax(ref, -1)))
        elif searched == "snr":
            loss = relative_mse(q, ref)
        else:
            loss = float(np.mean(as_metric((options or {})["metric"]).losses(ref, q, x_te)))
        return {"score": score(name, q, data), "drop": f["float"] - score(name, q, data), "loss": loss,
                "held": loss <= max_drop}

    q8, blob8 = tflite_int8(model, x_cal, x_te)
    f["int8"] = held_out(q8) | {"file_bytes": len(blob8)}
    f["int8"]["param_bytes"], f["int8"]["ram_bytes"] = device_bytes(blob8)
    calib = Calibration(model, x_cal)
    f["int8"]["paper_x"] = Policy.uniform(calib, 8, None).memory().compression_total

    runs = ABLATIONS if ablations else {"FxP-QNet": {}}
    f["ablations"] = []
    for label, switches in runs.items():
        if "self_distillation" in switches and f["metric"] != "top1":
            continue  # labels are classes: no label-driven search for a regression output
        labels = data["y_train"][pick] if "self_distillation" in switches else None
        reset_peak_rss()  # each search's own peak, not the process's so far
        t = time.perf_counter()
        try:
            res = setting.search(model, x_cal, max_drop, {**(options or {}), **switches}, labels=labels)
        except Exception as e:
            if label == "FxP-QNet":
                raise
            f["ablations"].append({"label": label, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:100]}"})
            continue
        seconds = time.perf_counter() - t
        q = predict(res.model, x_te)
        lo, hi = res.predicted_interval
        row = held_out(q) | {"label": label, "seconds": seconds, "evals": res.evaluations,
                             "peak_rss": res.peak_rss_bytes, "paper_x": res.memory.compression_total,
                             "predicted": res.predicted_loss,
                             "interval": (lo, hi), "budget_met": res.budget_met, "metric_searched": res.metric,
                             "covered": covered(res, q, ref, x_te)}
        f["ablations"].append(row)
        if label != "FxP-QNet":
            continue
        f["fxpq"] = row
        setting.store_policy(name, x_cal, res.policy, max_drop, options)  # bench/mcu.py runs this policy
        try:
            blob = setting.export_fxp(res.model, res.policy)  # integer input, as TFLite int8's
            row["file_bytes"] = len(blob)
            row["param_bytes"], row["ram_bytes"] = device_bytes(blob)
        except Exception as e:  # an export shortfall is a figure too: name it in the table
            row["file_bytes"] = row["param_bytes"] = row["ram_bytes"] = None
            row["export_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:100]}"
        f["uniform"] = None
        if res.best_uniform_policy is not None:
            qu = predict(quantize_model(model, res.best_uniform_policy), x_te)  # applies its channel scales
            f["uniform"] = held_out(qu) | {"bits": res.best_uniform_bits,
                                           "paper_x": res.best_uniform_memory.compression_total}
    return f


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.2%}"


def _bytes(v: int | None, base: int | None) -> str:
    if v is None:
        return "-"
    return f"{v:,} ({v / base:.2f}x)" if base else f"{v:,}"


def _metric(f: dict[str, Any], v: float) -> str:
    return f"{v:.2%}" if f["metric"] == "top1" else f"AUC {v:.3f}"


def _loss(r: dict[str, Any]) -> str:
    """The budget's loss on held-out data (1 - agreement, or relative MSE: SNR in dB) and whether it held."""
    v = r["loss"]
    text = f"{_db(v)} dB" if r.get("metric_searched", "top1") == "snr" else f"{v:.2%}"
    return f"{text} {'ok' if r['held'] else 'OVER'}"


def _db(relative_mse: float) -> str:
    return "inf" if relative_mse <= 0 else f"{-10 * math.log10(relative_mse):.1f}"


def _predicted(r: dict[str, Any]) -> str:
    lo, hi = r["interval"]
    if r["metric_searched"] == "snr":
        return f"{_db(r['predicted'])} dB ({_db(hi)}..{_db(lo)} dB)"
    return f"{r['predicted']:.2%} ({lo:.2%}..{hi:.2%})"


def zoo_tables(figs: list[dict[str, Any]], max_drop: float) -> str:
    """Two markdown tables (accuracy, memory), one row per zoo model."""
    a = ["| model | params | float | TFLite int8 | TFLite int8 held-out loss | best uniform: bits, held-out loss | "
         "FxP-QNet: held-out | drop | held-out loss (budget) | predicted loss (90 % interval) | "
         "budget met (calibration) |",
         "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|"]
    m = ["| model | int8 .tflite B | int8 total x | uniform total x | FxP total x | FxP .tflite B (/int8) | "
         "FxP weights+biases B (/int8) | FxP peak RAM B (/int8) | int8 weights+biases B | int8 peak RAM B | "
         "search s | search peak RSS | evals |",
         "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for f in figs:
        i8, u, x = f["int8"], f["uniform"], f["fxpq"]
        uni = "none" if u is None else f"{u['bits']}, {_loss(u | {'metric_searched': x['metric_searched']})}"
        met = "yes" if x["budget_met"] else "NO"
        drop = _pct(x["drop"]) if f["metric"] == "top1" else f"{x['drop']:.3f}"
        a.append(f"| {f['name']} | {f['params']:,} | {_metric(f, f['float'])} | {_metric(f, i8['score'])} | "
                 f"{_loss(i8 | {'metric_searched': x['metric_searched']})} | {uni} | "
                 f"{_metric(f, x['score'])} | {drop} | {_loss(x)} | {_predicted(x)} | {met} |")
        fx_file = x["export_error"] if x.get("export_error") else _bytes(x["file_bytes"], i8["file_bytes"])
        m.append(f"| {f['name']} | {i8['file_bytes']:,} | {i8['paper_x']:.2f}x | "
                 f"{'-' if u is None else format(u['paper_x'], '.2f') + 'x'} | {x['paper_x']:.2f}x | {fx_file} | "
                 f"{_bytes(x['param_bytes'], i8['param_bytes'])} | {_bytes(x['ram_bytes'], i8['ram_bytes'])} | "
                 f"{_bytes(i8['param_bytes'], None)} | {_bytes(i8['ram_bytes'], None)} | {x['seconds']:.1f} | "
                 f"{memory_size(x.get('peak_rss'))} | {x['evals']} |")
    return "\n".join([f"### Accuracy at a {max_drop:.0%} budget (held-out data)", "", *a, "",
                      "### Memory and search cost", "", *m])


def ablation_table(f: dict[str, Any]) -> str:
    lines = [f"#### {f['name']}: mechanisms switched off", "",
             "| variant | held-out | drop | held-out loss (budget) | predicted loss | total x | search s | evals |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in f["ablations"]:
        if "error" in r:
            lines.append(f"| {r['label'].strip(' -+')} | {r['error']} |||||||")
            continue
        lines.append(f"| {r['label'].strip(' -+')} | {_metric(f, r['score'])} | {_pct(r['drop'])} | {_loss(r)} | "
                     f"{_predicted(r)} | {r['paper_x']:.2f}x | {r['seconds']:.1f} | {r['evals']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated zoo models (default: all: "
                   f"{', '.join(MODELS)})")
    p.add_argument("--samples", type=int, default=setting.SAMPLES,
                   help="unlabeled calibration samples from the training split")
    p.add_argument("--max-drop", type=float, default=setting.MAX_DROP,
                   help="the budget (top-1 drop; relative MSE for snr)")
    p.add_argument("--ablations", action="store_true", help="also FxP-QNet with each mechanism switched off")
    p.add_argument("--option", action="append", default=[], metavar="NAME=VALUE", help=setting.OPTION_HELP)
    args = p.parse_args(argv)
    names = [n for n in args.models.split(",") if n]
    unknown = [n for n in names if n not in ZOO]
    if unknown:
        p.error(f"unknown zoo model(s) {', '.join(unknown)}; known: {', '.join(MODELS)}")
    options = setting.parse_options(args.option, p.error)
    if options:
        print(f"search options: {options}", file=sys.stderr)
    t = time.perf_counter()
    figs = []
    for name in names:
        figs.append(measure(name, args.samples, args.max_drop, args.ablations, options))
        print(f"[{name} measured, {time.perf_counter() - t:.0f} s]", file=sys.stderr, flush=True)
    print(zoo_tables(figs, args.max_drop))
    inside = [f["name"] for f in figs if f["fxpq"]["covered"]]
    print(f"\nInterval coverage: the held-out loss is inside the predicted 90 % interval (widened by the test "
          f"split's own sampling error) on {len(inside)} of {len(figs)} models"
          + (f"; outside on {', '.join(f['name'] for f in figs if not f['fxpq']['covered'])}."
             if len(inside) < len(figs) else "."))
    if args.ablations:
        for f in figs:
            print("\n" + ablation_table(f))
    print(f"\nCalibration: {args.samples} unlabeled training-split samples per model; held-out: the test split "
          "(digits: 1000, pictures: right 30 % of each image, speech: unseen speakers, machines: unseen machines). "
          "drop = float metric - quantized metric on held-out data (top-1 points; AUC for the autoencoder). "
          "loss = what the budget limits, against the float model: top-1 disagreement (1 - agreement), or for the "
          "autoencoder (searched with its task metric, bench/models.py search_options) the mean relative change "
          "of its anomaly score (with --option metric='snr': the relative output MSE shown as SNR in dB, budget "
          "1 % = 20 dB); ok/OVER: held-out loss "
          "within the budget. predicted: the search's label-free estimate of that loss from the calibration "
          "samples. total x: paper accounting (weights + biases + activations bits vs float32). "
          ".tflite B = the flash the model takes; weights+biases B = those as stored (packed at their width); "
          "peak RAM B = the TFLM arena on Cortex-M (activations at their containers + kernel scratch + TFLM's "
          "persistent records); both by the device accounting (fxpq_keras.flatbuffer.memory), one model for fxpq "
          "and TFLite int8 files; (/int8) = ratio to "
          "TFLite int8 of the same model.")
    print(f"Total wall time {time.perf_counter() - t:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
