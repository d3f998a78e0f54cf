"""Where a layer's instructions go inside the fxpq kernels: a per-function profile on QEMU M4.

    FXPQ_BENCH_CACHE=/work/bench-cache .venv/bin/python bench/kernel_profile.py FILE.tflite --model fc_autoencoder \\
        [--layers dense2,dense6] [--top 6]

Each FXP_* node of the fxp file (or those `--layers` names) runs on its actual input (one held-out
sample of the zoo model `--model`, bench/mcu.py's layer_cases) in the optimized QEMU test harness,
one QEMU session per layer with its execution traced (fxpq_keras.kernels.qemu.function_profile:
each executed block's instructions, attributed to the function that holds it; inlined code counts
in its caller). Printed per layer: the instructions the harness timed, and the `--top` kernel
functions (`fxpq_*`) with their share of it. bench/estimate_layers.py says which layers are worth
it, this says which loop or finish inside them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mcu import layer_cases  # noqa: E402
from models import trained  # noqa: E402

from fxpq_keras.kernels import qemu  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("file", type=Path, help="an fxp .tflite of the model")
    p.add_argument("--model", required=True, help="the zoo model (bench/models.py) whose held-out sample runs")
    p.add_argument("--layers", default="", help="comma-separated node names (default: every FXP_* node)")
    p.add_argument("--top", type=int, default=6, help="functions printed per layer")
    args = p.parse_args(argv)
    _, data = trained(args.model)
    _, nodes, cases, _ = layer_cases(args.file, data["x_test"][:1])
    wanted = {n for n in args.layers.split(",") if n}
    unknown = wanted - {node.name for node in nodes}
    if unknown:
        raise SystemExit(f"no FXP_* node named {', '.join(sorted(unknown))} in {args.file}")
    print("| layer | harness instructions | function | instructions | share |\n|---|---:|---|---:|---:|")
    for node, case in zip(nodes, cases):
        if wanted and node.name not in wanted:
            continue
        timed = qemu.run_cases([case], cpu="m4")[0].instructions
        profile = qemu.function_profile([case], cpu="m4")
        kernels = sorted(((n, v) for n, v in profile.items() if n.startswith("fxpq_")), key=lambda kv: -kv[1])
        for i, (name, count) in enumerate(kernels[: args.top]):
            head = f"| {node.name} | {timed:,.0f} " if i == 0 else "| | "
            print(f"{head}| `{name}` | {count:,} | {count / timed:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
