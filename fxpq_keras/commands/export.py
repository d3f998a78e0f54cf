"""`fxpq export MODEL POLICY.json -o OUT.tflite`: a saved policy applied to a Keras model, exported."""

from __future__ import annotations

import argparse

from . import first_line, load_keras_model, parent_dir_exists, require_file

EPILOG = """\
examples:
  fxpq export model.keras out/policy.json -o model.tflite
  fxpq export model.h5 out/policy.json -o model.tflite --c-array model_data.h    # for firmware
  fxpq export model.h5 policy8.json -o model_int8.tflite --target int8-builtin  # stock TFLM ops
  fxpq export model.keras out/policy.json -o model.tflite --package fw/model --sample x.npy
                                  # a folder that builds into TFLM firmware (docs/tflm.md section 8)

POLICY is what `fxpq quantize` writes (OUTDIR/policy.json) or Policy.to_json(); it must name the
same layers as MODEL.
"""


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("export", help="export a Keras model under a saved policy as a .tflite file",
                       description="Quantize MODEL (a Keras 3 or tf_keras .keras/.h5 file, or a tf_keras "
                       "SavedModel folder) with POLICY (policy.json) "
                       "and write a TFLite flatbuffer (docs/format.md), optionally also as a C array for "
                       "firmware (docs/tflm.md).", epilog=EPILOG)
    p.add_argument("model", help="float Keras classifier: a .keras or .h5 file written by Keras 3 or by "
                   "tf_keras (Keras 2), "
                   "or a tf_keras SavedModel folder")
    p.add_argument("policy", help="policy JSON written by `fxpq quantize` / Policy.to_json")
    p.add_argument("-o", "--output", required=True, help="output .tflite path")
    p.add_argument("--target", choices=("fxp", "int8-builtin", "builtin"), default="fxp",
                   help="fxp: custom FXP_* ops, bit-packed weights; int8-builtin: stock int8 ops "
                   "(needs 8-bit power-of-two formats); builtin: stock ops with int8/int16 activations and "
                   "int8/int4 weights (a policy from `fxpq quantize --target builtin`)")
    p.add_argument("--integer-input", action="store_true",
                   help="the file takes the input's integers instead of float (no QUANTIZE op)")
    p.add_argument("--c-array", metavar="HEADER",
                   help="also write the file as a 16-byte aligned C array header (default: not written)")
    add_package_args(p)
    return p


def add_package_args(p: argparse.ArgumentParser) -> None:
    """--package DIR and --sample X (shared with `fxpq deploy`)."""
    p.add_argument("--package", metavar="DIR",
                   help="also write a folder that builds into TFLM firmware: the model array, a resolver with "
                   "exactly its ops, the arena size, the fxpq kernels and glue, CMakeLists.txt, a Makefile "
                   "fragment and a main.cc running one inference (docs/tflm.md section 8)")
    p.add_argument("--sample", metavar="X.npy",
                   help="the input main.cc of the package runs: the first sample of a .npy, or of 'x' in a .npz "
                   "(default: zeros)")


def check_package_args(args: argparse.Namespace):
    """Validate --package / --sample before any work; the sample array (or None)."""
    from .. import commands

    if args.sample and not args.package:
        raise commands._cli_error("--sample is the input of --package's main.cc; give --package DIR too")
    if args.package:
        from ..kernels.package import check_package_dir

        check_package_dir(args.package)
    return commands.load_array(args.sample, "sample input") if args.sample else None


def run(args: argparse.Namespace) -> int:
    import fxpq_keras

    from ..flatbuffer import export_c_array, export_tflite

    require_file(args.policy, "policy file")
    parent_dir_exists(args.output, "output file")
    if args.c_array:
        parent_dir_exists(args.c_array, "C array header")
    sample = check_package_args(args)
    try:
        policy = fxpq_keras.Policy.from_json(args.policy)
    except (ValueError, KeyError, TypeError) as exc:  # not JSON, or JSON that is not a policy
        raise ValueError(f"cannot read {args.policy}: {first_line(exc)}") from None
    model = load_keras_model(args.model)
    qmodel = fxpq_keras.quantize_model(model, policy)
    data = export_tflite(qmodel, args.output, target=args.target, float_input=not args.integer_input, policy=policy)
    if args.c_array:
        export_c_array(args.output, args.c_array)
    if args.package:
        from ..kernels.package import write_package

        write_package(args.output, args.package, sample=sample)
    if not getattr(args, "quiet", False):
        print(f"wrote {args.output} ({len(data)} bytes, target {args.target})")
        if args.c_array:
            print(f"wrote {args.c_array}")
        if args.package:
            print(f"wrote {args.package}/ (build it: docs/tflm.md section 8)")
    return 0
