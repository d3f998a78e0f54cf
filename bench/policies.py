"""Policies, trajectories and messages of a fixed set of searches, as JSON: run it on two checkouts
and compare the files to show that a refactoring left the search's results unchanged.

    .venv/bin/python bench/policies.py OUT.json [--models lenet5,residual_ds_net] [--samples 256]
    cmp BEFORE.json AFTER.json

The searches cover every phase (docs/algorithm.md "Phases, and where each lives"): the default,
the paper objective, mechanism 2 off, RAM first with per-channel fracs, reachable and unreachable
memory targets, no fast start without mechanism 3, range alignment, the snr metric. Calibration is
bench/quality.py's draw (`calibration_set`), integer-input files.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fxpq_keras  # noqa: E402,F401  (selects tf_keras before TensorFlow is imported)
from bench.models import calibration_set, trained  # noqa: E402
from fxpq_keras.search import FxPQNet  # noqa: E402

RUNS = [
    ("lenet5", {}),
    ("lenet5", {"objective": "paper"}),
    ("lenet5", {"layerwise": False}),
    ("lenet5", {"per_channel": "auto", "ram_first": True}),
    ("lenet5", {"memory_target": 20000}),
    ("lenet5", {"fast_start": False, "error_statistics_frac": False}),
    ("lenet5", {"memory_target": 60000}),
    ("lenet5", {"objective": "paper", "memory_target": 30000}),
    ("residual_ds_net", {}),
    ("residual_ds_net", {"ram_first": True, "per_channel": True}),
    ("residual_ds_net", {"max_accuracy_drop": 0.05, "align_ranges": True}),
    ("residual_ds_net", {"objective": "paper", "metric": "snr", "max_accuracy_drop": 0.02}),
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out")
    p.add_argument("--models", default="lenet5,residual_ds_net")
    p.add_argument("--samples", type=int, default=256)
    args = p.parse_args(argv)
    out = {}
    for name, options in RUNS:
        if name not in args.models.split(","):
            continue
        options = dict(options)
        model, data = trained(name)
        x, _ = calibration_set(data, args.samples)
        began = time.perf_counter()
        # no speed cap (the searches' policies with the cap off are what this file compares across checkouts)
        r = FxPQNet(options.pop("max_accuracy_drop", 0.01), verbose=0, samples=args.samples, float_input=False,
                    max_slowdown=None, **options).quantize(model, x)
        key = f"{name} {sorted(options.items())}"
        out[key] = {"policy": r.policy.to_dict(), "message": r.message, "evaluations": r.evaluations,
                    "full_passes": r.full_passes, "uniform": r.best_uniform_bits, "check": r.check_metrics.to_dict(),
                    "trajectory": [(s.action, s.key, s.bits, s.evaluations, s.memory_bits) for s in r.trajectory]}
        print(f"{key}: {time.perf_counter() - began:.1f} s, {r.evaluations} evaluations; {r.message[:100]}",
              flush=True)
    Path(args.out).write_text(json.dumps(out, indent=1, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
