"""`fxpq` command line: one subcommand per module in fxpq_keras/commands/.

Each command module defines `register(subparsers) -> argparse.ArgumentParser` and
`run(args) -> int`. Errors a user can fix are raised as `CliError` (or ValueError/FileNotFoundError)
and printed as one line with a non-zero exit, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ("quantize", "export", "run", "inspect")


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fxpq",
        description="Mixed low-precision dynamic fixed-point quantization (FxP-QNet) for Keras models, "
        "exported to TFLite with custom fixed-point ops for TensorFlow Lite Micro.",
    )
    parser.add_argument("--quiet", action="store_true", help="print only results and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"fxpq_keras.commands.{name}")
        except ModuleNotFoundError:
            continue
        p = module.register(sub)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except (CliError, ValueError, FileNotFoundError, OSError) as exc:
        print(f"fxpq {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
