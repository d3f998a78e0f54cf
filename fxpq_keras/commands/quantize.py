"""`fxpq quantize MODEL -d DATA.npz -o OUTDIR`: the FxP-QNet search from the command line.

Writes OUTDIR/policy.json, OUTDIR/report.md, OUTDIR/report.png and, when the exporter is
available, OUTDIR/model.tflite (`--target fxp|int8-builtin`).
"""

from __future__ import annotations

import argparse
import os
import sys

from ..cli import CliError


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("quantize", help="search a mixed-precision fixed-point policy (FxP-QNet)",
                       description="Search a mixed low-precision dynamic fixed-point policy for MODEL (a tf_keras "
                       ".keras/.h5 classifier) on calibration inputs, keeping the top-1 drop against the float "
                       "model within --max-drop. Labels are optional (reported when given).")
    p.add_argument("model", help="float tf_keras model file (.keras or .h5)")
    p.add_argument("-d", "--data", required=True, help="calibration .npz holding x (inputs) and optionally y")
    p.add_argument("-o", "--outdir", required=True, help="output directory")
    p.add_argument("--max-drop", type=float, default=0.01, help="max top-1 drop vs the float model (default 0.01)")
    p.add_argument("--memory-target", type=int, default=None, metavar="BYTES",
                   help="stop as soon as total memory (weights+biases+activations) fits this many bytes")
    p.add_argument("--min-bits", type=int, default=2)
    p.add_argument("--max-bits", type=int, default=16)
    p.add_argument("--samples", type=int, default=1536, help="calibration samples used (1/3 decide, 2/3 check)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--per-channel", action="store_true", help="per-output-channel weight frac")
    p.add_argument("--target", choices=("fxp", "int8-builtin"), default="fxp", help="model.tflite target")
    return p


def load_data(path: str) -> tuple[object, object]:
    import numpy as np

    if not os.path.exists(path):
        raise FileNotFoundError(f"calibration data file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "x" not in npz.files:
                raise CliError(f"{path} holds {sorted(npz.files)}; it must hold the calibration inputs as 'x'")
            return npz["x"], (npz["y"] if "y" in npz.files else None)
    except (ValueError, OSError) as exc:
        raise CliError(f"cannot read {path} as .npz: {exc}") from None


def run(args: argparse.Namespace) -> int:
    import fxpq_keras

    from ..report import write_report
    from ..search import FxPQNet

    quiet = getattr(args, "quiet", False)
    if not os.path.exists(args.model):
        raise FileNotFoundError(f"model file not found: {args.model}")
    x, y = load_data(args.data)
    from .._tf import keras

    try:
        model = keras.models.load_model(args.model, compile=False)
    except Exception as exc:  # noqa: BLE001 - any load failure is the user's file
        raise CliError(f"cannot load {args.model} as a tf_keras model: {exc}") from None
    search = FxPQNet(args.max_drop, memory_target=args.memory_target, min_bits=args.min_bits,
                     max_bits=args.max_bits, samples=args.samples, seed=args.seed, per_channel=args.per_channel,
                     verbose=0 if quiet else 1)
    result = search.quantize(model, x, labels=y)
    paths = write_report(result, args.outdir)
    status = 0
    try:
        from ..flatbuffer import export_tflite
    except ImportError:
        export_tflite = None
    if export_tflite is not None:
        out = os.path.join(args.outdir, "model.tflite")
        try:
            data = export_tflite(result.model, out, target=args.target, policy=result.policy)
            paths["tflite"] = f"{out} ({len(data)} bytes, target {args.target})"
        except (ValueError, fxpq_keras.FormatError) as exc:
            print(f"fxpq quantize: model.tflite not written: {exc}", file=sys.stderr)
            status = 1
    if not quiet:
        print(result.summary())
        for path in paths.values():
            print(f"wrote {path}")
    if result.memory_target_met is False:
        print(f"fxpq quantize: {result.message}", file=sys.stderr)
        status = status or 3
    return status
