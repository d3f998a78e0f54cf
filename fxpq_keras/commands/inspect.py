"""`fxpq inspect MODEL.tflite [--json]`: per-layer formats and memory of an exported file."""

from __future__ import annotations

import argparse


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("inspect", help="per-layer formats and memory of an exported .tflite file")
    p.add_argument("model", help=".tflite file written by fxpq export")
    p.add_argument("--json", action="store_true", help="print a JSON object with 'layers' and 'totals'")
    return p


def run(args: argparse.Namespace) -> int:
    from ..flatbuffer.inspect import format_report, inspect_tflite, report_json

    report = inspect_tflite(args.model)
    print(report_json(report) if args.json else format_report(report))
    return 0
