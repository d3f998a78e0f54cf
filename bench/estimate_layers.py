"""The instruction estimate against QEMU, layer by layer, for one fxp file: where a model's estimate errs,
and (`--profile`) where inside the kernels a layer's instructions go.

    FXPQ_BENCH_CACHE=/work/bench-cache .venv/bin/python bench/estimate_layers.py FILE.tflite --model mobilenet_v1_025 \\
        [--top 14] [--profile block1_pw,block13_pw] [--functions 6]

Each FXP_* node's kernel call on its actual inputs (one held-out sample of the zoo model `--model`,
bench/models.py; bench/mcu.py's layer_cases) runs in the QEMU M4 test harness (optimized kernels,
-icount shift=0), beside its estimate (fxpq_keras.instructions.call_instructions on the graph's own
formats, the call the search prices) and its kernel path. Prints the `--top` layers the estimate
overshoots most, then the totals over every layer (the runner's per-op cost is in neither). The file
may be any fxp export of that model, e.g. the ones bench/speed_objective.py writes to its cache.

`--profile` names layers (or "all") whose call runs once more, alone, with its execution traced
(fxpq_keras.kernels.qemu.function_profile: each executed block's instructions, attributed to the
function that holds it; inlined code counts in its caller); the `--functions` kernel functions
(`fxpq_*`) that hold the most are printed with their share of the layer's counted instructions.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mcu import layer_cases  # noqa: E402
from models import trained  # noqa: E402

from fxpq_keras.instructions import call_instructions, graph_calls, kernel_path  # noqa: E402
from fxpq_keras.kernels import qemu  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("file", type=Path, help="an fxp .tflite of the model")
    p.add_argument("--model", required=True, help="the zoo model (bench/models.py) whose held-out sample runs")
    p.add_argument("--top", type=int, default=14, help="layers printed")
    p.add_argument("--profile", default="", help="comma-separated layers (or all) to profile per kernel function")
    p.add_argument("--functions", type=int, default=6, help="kernel functions printed per profiled layer")
    args = p.parse_args(argv)
    _, data = trained(args.model)
    graph, nodes, cases, _ = layer_cases(args.file, data["x_test"][:1])
    wanted = {n for n in args.profile.split(",") if n}
    unknown = wanted - {node.name for node in nodes} - {"all"}
    if unknown:
        raise SystemExit(f"no FXP_* node named {', '.join(sorted(unknown))} in {args.file}")
    calls = {id(node): call for node, call, _ in graph_calls(graph)}
    results = qemu.run_cases(cases, cpu="m4", timeout=3600)
    rows, est_total, counted_total = [], 0.0, 0.0
    for node, res in zip(nodes, results):
        if res.status != 0:
            raise SystemExit(f"{node.name}: the harness returned status {res.status}")
        c = calls[id(node)]
        est = call_instructions(c) or 0.0
        est_total, counted_total = est_total + est, counted_total + res.instructions
        shape = (f"x{c.x_bits}{'' if c.x_signed else 'u'} w{c.w_bits} K={c.k} ch={c.channels} "
                 f"pixels={c.out_elements // max(c.channels, 1)}")
        rows.append((est - res.instructions, node.name, kernel_path(c), shape, est, res.instructions))
    print("| layer | path | call | estimated | QEMU M4 | error |\n|---|---|---|---:|---:|---:|")
    for _, name, path, shape, est, counted in sorted(rows, reverse=True)[: args.top]:
        print(f"| {name} | {path} | {shape} | {est:,.0f} | {counted:,.0f} | {est / counted - 1:+.0%} |")
    print(f"every layer: {est_total:,.0f} estimated, {counted_total:,.0f} counted "
          f"({est_total / counted_total - 1:+.1%})")
    if wanted:
        print("\n| layer | QEMU M4 | function | instructions | share |\n|---|---:|---|---:|---:|")
    for node, case, res in zip(nodes, cases, results):
        if "all" not in wanted and node.name not in wanted:
            continue
        profile = qemu.function_profile([case], cpu="m4")
        kernels = sorted(((n, v) for n, v in profile.items() if n.startswith("fxpq_")), key=lambda kv: -kv[1])
        for i, (name, count) in enumerate(kernels[: args.functions]):
            head = f"| {node.name} | {res.instructions:,.0f} " if i == 0 else "| | "
            print(f"{head}| `{name}` | {count:,} | {count / res.instructions:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
