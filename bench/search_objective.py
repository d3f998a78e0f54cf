"""The search's objective, device bytes vs the paper's bit count, measured (docs/algorithm.md).

    .venv/bin/python bench/search_objective.py [--models lenet5,ds_cnn_seq,residual_ds_net] [--samples 512]

For each zoo model (bench/models.py, cached) one search per objective at the 1 % budget on the same
calibration samples as bench/quality.py. Columns: device bytes the search minimizes by default
(weights + biases as stored, peak RAM; fxpq_keras.memory.DeviceModel), the paper's total compression,
the held-out loss against the float model (1 - top-1 agreement, or relative output MSE), the
prediction, search seconds and network evaluations.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import ZOO, calibration_set, trained  # noqa: E402

from fxpq_keras.search import FxPQNet  # noqa: E402
from fxpq_keras.search.evaluator import predict  # noqa: E402


def held_out_loss(metric: str, q: np.ndarray, ref: np.ndarray) -> float:
    if metric == "top1":
        return float(np.mean(np.argmax(q, -1) != np.argmax(ref, -1)))
    return float(np.sum((q - ref) ** 2) / max(float(np.sum(ref.astype(np.float64) ** 2)), 1e-30))


def searched(models: str, variants: dict[str, dict[str, Any]], samples: int, max_drop: float,
             zoo_options: bool = False) -> Iterator[tuple[str, str, Any, float, float]]:
    """One default search per zoo model and option variant, on bench/quality.py's calibration samples:
    yields (model, variant, result, search seconds, held-out loss against the float model). The one
    loop bench/search_objective.py, bench/per_channel.py and bench/search_speed.py print rows from.
    `zoo_options`: with the model's own search options (bench/models.py `search_options`, e.g. the
    autoencoder's anomaly metric), as bench/quality.py and bench/mcu.py search it."""
    for name in models.split(","):
        model, data = trained(name)
        x_cal, _ = calibration_set(data, samples)
        ref = predict(model, data["x_test"])
        for label, options in variants.items():
            t = time.perf_counter()
            kwargs = {"metric": "snr" if ZOO[name].metric != "top1" else "auto",
                      **(dict(ZOO[name].search_options) if zoo_options else {}), **options}
            res = FxPQNet(max_drop, samples=len(x_cal), seed=0, verbose=0, **kwargs).quantize(model, x_cal)
            seconds = time.perf_counter() - t
            yield name, label, res, seconds, held_out_loss(res.metric, predict(res.model, data["x_test"]), ref)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="lenet5,ds_cnn_seq,residual_ds_net")
    p.add_argument("--samples", type=int, default=512)
    p.add_argument("--max-drop", type=float, default=0.01)
    args = p.parse_args(argv)
    head = ("| model | objective | weights+biases B | peak RAM B | device total B | paper x | held-out loss | "
            "predicted (90 %) | search s | evals |")
    print(head)
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    variants = {objective: {"objective": objective} for objective in ("device", "paper")}
    for name, objective, res, seconds, loss in searched(args.models, variants, args.samples, args.max_drop):
        dev = res.device_memory
        lo, hi = res.predicted_interval
        print(f"| {name} | {objective} | {dev.parameter_bytes:,} | {dev.ram_bytes:,} | "
              f"{dev.parameter_bytes + dev.ram_bytes:,} | {res.memory.compression_total:.2f}x | {loss:.2%} | "
              f"{res.predicted_loss:.2%} ({lo:.2%}..{hi:.2%}) | {seconds:.0f} | {res.evaluations} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
