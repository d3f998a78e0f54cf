"""`fxpq inspect MODEL.tflite [--json]`: per-layer formats and memory of an exported file."""

from __future__ import annotations

import argparse

from . import require_file

EPILOG = """\
examples:
  fxpq inspect model.tflite            # one row per layer: op, formats (u4.3 = unsigned 4 bits, frac 3), memory
  fxpq inspect model.tflite --json     # the same as a JSON object with 'layers' and 'totals'
"""


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("inspect", help="per-layer formats and memory of an exported .tflite file",
                       description="Read MODEL (a .tflite written by fxpq, target fxp or int8-builtin) and print "
                       "every layer's op, input/output fixed-point formats, weight bits and frac, and memory, "
                       "then the totals and the compression against float32 (docs/format.md).", epilog=EPILOG)
    p.add_argument("model", help=".tflite file written by fxpq export / fxpq quantize")
    p.add_argument("--json", action="store_true", help="print a JSON object with 'layers' and 'totals'")
    return p


def run(args: argparse.Namespace) -> int:
    from ..flatbuffer import FlatbufferFormatError
    from ..flatbuffer.inspect import format_report, inspect_tflite, report_json

    require_file(args.model, "model file")
    try:
        report = inspect_tflite(args.model)
    except FlatbufferFormatError as exc:
        raise FlatbufferFormatError(f"{args.model}: {exc}") from None
    print(report_json(report) if args.json else format_report(report))
    return 0
