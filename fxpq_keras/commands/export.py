"""`fxpq export MODEL POLICY.json -o OUT.tflite`: a saved policy applied to a Keras model, exported."""

from __future__ import annotations

import argparse

from ..cli import CliError


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("export", help="export a Keras model under a saved policy as a .tflite file",
                       description="Quantize MODEL (a tf_keras .keras/.h5 file) with POLICY (policy.json) "
                       "and write a TFLite flatbuffer (docs/format.md).")
    p.add_argument("model", help="float tf_keras model file")
    p.add_argument("policy", help="policy JSON written by `fxpq quantize` / Policy.to_json")
    p.add_argument("-o", "--output", required=True, help="output .tflite path")
    p.add_argument("--target", choices=("fxp", "int8-builtin"), default="fxp",
                   help="fxp: custom FXP_ ops, bit-packed weights; int8-builtin: stock int8 ops")
    p.add_argument("--integer-input", action="store_true",
                   help="the file takes the input's integers instead of float (no QUANTIZE op)")
    p.add_argument("--c-array", metavar="HEADER", help="also write the file as a C header")
    return p


def run(args: argparse.Namespace) -> int:
    import fxpq_keras

    from ..flatbuffer import export_c_array, export_tflite

    try:
        import tf_keras as keras
    except ImportError as exc:  # pragma: no cover - a dependency
        raise CliError(f"tf_keras is needed to load {args.model}: {exc}") from None
    policy = fxpq_keras.Policy.from_json(args.policy)
    model = keras.models.load_model(args.model, compile=False)
    qmodel = fxpq_keras.quantize_model(model, policy)
    data = export_tflite(qmodel, args.output, target=args.target, float_input=not args.integer_input, policy=policy)
    if args.c_array:
        export_c_array(args.output, args.c_array)
    if not getattr(args, "quiet", False):
        print(f"wrote {args.output} ({len(data)} bytes, target {args.target})")
    return 0
