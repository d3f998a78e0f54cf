"""`fxpq deploy MODEL.tflite --package DIR`: the firmware package of any .tflite file."""

from __future__ import annotations

import argparse

from . import require_file
from .export import add_package_args, check_package_args

EPILOG = """\
examples:
  fxpq deploy model.tflite --package fw/model --sample x.npy   # an fxpq file or any TFLite file TFLM runs
  cmake -S fw/model -B build -DTFLM_INCLUDE_DIRS=... -DTFLM_CXX_FLAGS=... -DTFLM_LIBRARY=...   # docs/tflm.md 8
"""


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("deploy", help="write a .tflite file as a folder that builds into TFLM firmware",
                       description="Write MODEL (an fxpq file or any TFLite file whose ops TFLM registers) as a "
                       "package: the model array (C99 and C++11..20), a resolver with exactly its ops, the arena "
                       "size, the fxpq kernels and glue when it has FXP_* ops, CMakeLists.txt, a Makefile fragment "
                       "and a main.cc that runs one inference (docs/tflm.md section 8).", epilog=EPILOG)
    p.add_argument("model", help=".tflite file")
    add_package_args(p)
    return p


def run(args: argparse.Namespace) -> int:
    from ..flatbuffer import FlatbufferFormatError
    from ..kernels.package import write_package

    require_file(args.model, "model file")
    if not args.package:
        raise ValueError("--package DIR is required (the folder to write)")
    sample = check_package_args(args)
    try:
        write_package(args.model, args.package, sample=sample)
    except FlatbufferFormatError as exc:
        raise FlatbufferFormatError(f"{args.model}: {exc}") from None
    if not getattr(args, "quiet", False):
        print(f"wrote {args.package}/ (build it: docs/tflm.md section 8)")
    return 0
