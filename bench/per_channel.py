"""Per-channel weight fracs: per tensor only vs every layer per channel vs chosen per layer (auto).

    .venv/bin/python bench/per_channel.py [--models lenet5,ds_cnn_seq,...] [--samples 512] [--modes off,on,auto]

For each zoo model (bench/models.py, cached) one search per `per_channel` setting at the 1 % budget
on the same calibration samples as bench/quality.py (default objective: device bytes). Columns:
weighted layers whose weights ended per channel, the paper's total compression, weights + biases
as stored and peak RAM (fxpq_keras.memory.DeviceModel), the held-out loss against the float model
(1 - top-1 agreement, or relative output MSE), search seconds and network evaluations.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search_objective import searched  # noqa: E402

MODES = {"off": False, "on": True, "auto": "auto"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="lenet5,ds_cnn_seq,residual_ds_net,resnet8,ds_cnn_kws")
    p.add_argument("--samples", type=int, default=512)
    p.add_argument("--max-drop", type=float, default=0.01)
    p.add_argument("--modes", default="off,on,auto", help="comma-separated per_channel settings: off, on, auto")
    args = p.parse_args(argv)
    print("| model | per_channel | per-channel layers | paper x | weights+biases B | peak RAM B | held-out loss | "
          "predicted | search s | evals |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    variants = {mode: {"per_channel": MODES[mode]} for mode in args.modes.split(",")}
    for name, mode, res, seconds, loss in searched(args.models, variants, args.samples, args.max_drop):
        weights = [d for _, ds, d in res.policy.data_structures() if ds == "weights"]
        chosen = sum(d.per_channel and len(set(d.frac)) > 1 for d in weights)
        dev = res.device_memory
        print(f"| {name} | {mode} | {chosen}/{len(weights)} | {res.memory.compression_total:.2f}x | "
              f"{dev.parameter_bytes:,} | {dev.ram_bytes:,} | {loss:.2%} | {res.predicted_loss:.2%} | "
              f"{seconds:.0f} | {res.evaluations} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
