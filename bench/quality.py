"""Quality benchmark: compression at a fixed accuracy budget (DESIGN.md section 4).

    .venv/bin/python bench/quality.py [--models lenet5,residual_ds_net] [--samples 1536] [--fast]

For each benchmark model (bench/models.py, trained once and cached) prints one table, rows side by
side from one run: float32; TFLite int8 full-integer post-training quantization (run with
ai-edge-litert); naive uniform dynamic fixed point at 8, 6, 4 bits (and at the FxP-QNet average
width, rounded up); FxP-QNet at a 1 % budget; FxP-QNet with each mechanism of DESIGN.md section 3
switched off; and the opt-in distillation fine-tuning on top of the 1 % policy. Calibration uses
the training split only; accuracy and agreement are on the 1000 held-out test digits. Memory follows
the paper's accounting (policy.memory(): weights + biases + activations of one inference, in bits)
for every row, TFLite int8 included (8-bit weights and activations, 32-bit biases).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import MODELS, trained  # noqa: E402

import fxpq_keras  # noqa: E402
from fxpq_keras.calibration import Calibration  # noqa: E402
from fxpq_keras.fakequant import quantize_model  # noqa: E402
from fxpq_keras.search import FxPQNet  # noqa: E402
from fxpq_keras.search.evaluator import predict  # noqa: E402

ABLATIONS = {
    "FxP-QNet 1%": {},
    "  - no dynamic fixed point (M1)": {"dynamic_fixed_point": False},
    "  - no layer-wise adaptation (M2)": {"layerwise": False},
    "  - no prediction-error frac (M3)": {"error_statistics_frac": False},
    "  - no self-distillation (M4, labels)": {"self_distillation": False},
    "FxP-QNet 1% + distill fine-tune (opt-in)": {"finetune_epochs": 5},
}


def tflite_int8(model: Any, x_calib: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, int]:
    """Stock TFLite full-integer PTQ (int8 in and out), run with ai-edge-litert; (outputs, file bytes)."""
    from ai_edge_litert.interpreter import Interpreter

    tf = fxpq_keras._tf.tf

    def representative() -> Any:
        for i in range(0, min(len(x_calib), 500)):
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
    return (interp.get_tensor(out["index"]).astype(np.float32) - zo) * so, len(blob)


def row(name: str, probs: np.ndarray, data: dict, float_probs: np.ndarray, memory: Any = None,
        seconds: float | None = None, evaluations: int | None = None, note: str = "") -> dict[str, Any]:
    acc = float(np.mean(np.argmax(probs, -1) == data["y_test"]))
    agree = float(np.mean(np.argmax(probs, -1) == np.argmax(float_probs, -1)))
    r = {"method": name, "test_acc": acc, "agreement": agree, "avg_bits": None, "w_ratio": 1.0, "t_ratio": 1.0,
         "seconds": seconds, "evals": evaluations, "note": note}
    if memory is not None:
        elements = (memory.float32_bits) / 32
        r.update(avg_bits=memory.total_bits / elements, w_ratio=memory.compression_weights,
                 t_ratio=memory.compression_total)
    return r


def fmt_table(title: str, rows: list[dict[str, Any]]) -> str:
    head = (f"{'method':<38} {'test acc':>8} {'agree':>7} {'avg bits':>8} {'weights x':>9} {'total x':>8} "
            f"{'search s':>8} {'evals':>6}  note")
    lines = [title, head, "-" * len(head)]
    for r in rows:
        def opt(v: Any, f: str) -> str:
            return "-" if v is None else format(v, f)
        lines.append(f"{r['method']:<38} {r['test_acc']:>8.2%} {r['agreement']:>7.2%} {opt(r['avg_bits'], '.2f'):>8} "
                     f"{r['w_ratio']:>8.2f}x {r['t_ratio']:>7.2f}x {opt(r['seconds'], '.1f'):>8} "
                     f"{opt(r['evals'], 'd'):>6}  {r['note']}")
    return "\n".join(lines)


def bench_model(name: str, samples: int, ablations: dict[str, dict[str, Any]], max_drop: float) -> str:
    model, data = trained(name)
    x_tr, y_tr, x_te = data["x_train"], data["y_train"], data["x_test"]
    float_probs = model.predict(x_te, verbose=0)
    rows = [row("float32", float_probs, data, float_probs)]

    calib = Calibration(model, x_tr[np.random.default_rng(0).permutation(len(x_tr))[:samples]])
    probs, size = tflite_int8(model, calib.x, x_te)
    rows.append(row("TFLite int8 PTQ (LiteRT)", probs, data, float_probs, calib.uniform_policy(8).memory(),
                    note=f"{size:,} B file"))
    results = {}
    for label, switches in ablations.items():
        t = time.perf_counter()
        res = FxPQNet(max_drop, samples=samples, seed=0, verbose=0, **switches).quantize(model, x_tr, labels=y_tr)
        seconds = time.perf_counter() - t
        results[label] = res
        q = predict(res.model, x_te)
        what = "agreement" if res.options.self_distillation else "label accuracy"
        lo, hi = res.predicted_interval
        note = (f"calibration {what} {res.check_metrics.agreement:.2%}; predicted drop {res.predicted_loss:.2%} "
                f"({lo:.2%}..{hi:.2%})")
        if res.finetune:
            note += f" (before fine-tuning {res.finetune['check_agreement_before']:.2%}; not post-training)"
        rows.append(row(label, q, data, float_probs, res.memory, seconds, res.evaluations, note=note))
    main = results.get("FxP-QNet 1%")
    widths = [8, 6, 4]
    if main is not None:
        avg = main.memory.total_bits / (main.memory.float32_bits / 32)
        widths.append(math.ceil(avg))
    uniform_rows = []
    for bits in sorted(set(widths), reverse=True):
        policy = calib.uniform_policy(bits)
        qmodel = quantize_model(calib, policy)
        uniform_rows.append(row(f"uniform {bits}-bit dynamic fixed point", predict(qmodel, x_te), data, float_probs,
                                policy.memory()))
    rows[2:2] = uniform_rows
    return fmt_table(f"\n== {name} ({model.count_params():,} params; calibration: {samples} training digits, "
                     f"test: {len(x_te)} held-out digits; budget {max_drop:.0%}) ==", rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--samples", type=int, default=1536, help="calibration samples (all predict, half rank)")
    p.add_argument("--max-drop", type=float, default=0.01)
    p.add_argument("--fast", action="store_true", help="FxP-QNet row only (no ablations)")
    args = p.parse_args(argv)
    ablations = {"FxP-QNet 1%": {}} if args.fast else ABLATIONS
    t = time.perf_counter()
    for name in args.models.split(","):
        print(bench_model(name, args.samples, ablations, args.max_drop), flush=True)
    print("\nheld-out drop = 1 - agree; the search budgets its predicted drop (flip rate on all calibration samples "
          "with the lowest-margin 5% weighted to 10%, plus one standard error), not the plain agreement.")
    print(f"\nx = ratio to float32 (paper's accounting: weights + biases + activations of one inference); "
          f"avg bits = total bits / elements; agreement = top-1 match with the float model on test data. "
          f"Total wall time {time.perf_counter() - t:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
