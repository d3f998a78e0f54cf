"""Search cost, measured: seconds, evaluations and layers run per zoo model, and what the search found.

    .venv/bin/python bench/search_speed.py [--models lenet5,resnet8,mobilenet_v1_025] [--samples 512]
                                           [--paths old,new]

One default search (objective device, 1 % budget, the 512 calibration samples of bench/quality.py) per
model and evaluation path: `old` = every evaluation a whole pass of the fake-quant model
(`incremental=False`), `new` = the default (incremental evaluation, docs/algorithm.md "Determinism
and cost"). Columns: wall seconds of the whole `quantize` call (calibration, tracing, search), network
evaluations, layers run in full-pass equivalents (what incremental evaluation saves), seconds per
evaluation, device bytes (weights + biases as stored, peak RAM), the paper's total compression, the
held-out loss against the float model, and whether the policy equals the first path's. The machine's
load average is printed with each row: wall seconds on a shared machine are upper bounds.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search_objective import searched  # noqa: E402

PATHS = {"old": {"incremental": False}, "new": {}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="lenet5,resnet8,mobilenet_v1_025")
    p.add_argument("--samples", type=int, default=512)
    p.add_argument("--max-drop", type=float, default=0.01)
    p.add_argument("--paths", default="old,new", help=f"comma-separated, of {', '.join(PATHS)}")
    args = p.parse_args(argv)
    print("| model | path | search s | evals | full-pass equivalents | s/eval | weights+biases B | peak RAM B | "
          "paper x | held-out loss | same policy | load |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    first: dict[str, str] = {}
    variants = {path: PATHS[path] for path in args.paths.split(",")}
    for name, path, res, seconds, loss in searched(args.models, variants, args.samples, args.max_drop):
        dev = res.device_memory
        same = "yes" if res.policy.to_json() == first.setdefault(name, res.policy.to_json()) else "NO"
        passes = getattr(res, "full_passes", res.evaluations)  # (checkouts from before it was counted)
        print(f"| {name} | {path} | {seconds:.1f} | {res.evaluations} | {passes:.1f} | "
              f"{seconds / max(res.evaluations, 1):.3f} | {dev.parameter_bytes:,} | {dev.ram_bytes:,} | "
              f"{res.memory.compression_total:.2f}x | {loss:.2%} | {same} | {os.getloadavg()[0]:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
