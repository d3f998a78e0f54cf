"""`fxpq` command line: one subcommand per module in fxpq_keras/commands/.

Each command module defines `register(subparsers) -> argparse.ArgumentParser` and
`run(args) -> int`. The contract with the user, kept here in one place:

- every error is one line on stderr, `fxpq <command>: error: <what and which file>`, never a
  traceback (set FXPQ_DEBUG=1 to get the traceback of an unexpected one);
- exit status 0 ok, 1 the work failed (a C runner/QEMU/make failure, an internal error), 2 bad
  arguments or input files, 3 `quantize` wrote files that miss the budget or --memory-target, 130 interrupted;
- `--quiet` works before the subcommand and after it;
- TensorFlow's native log lines (which TF 2.21 prints regardless of TF_CPP_MIN_LOG_LEVEL) are
  filtered out unless TF_CPP_MIN_LOG_LEVEL asks for them (see _native_log.py).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any

COMMANDS = ("quantize", "export", "run", "inspect", "deploy")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

EPILOG = """\
examples:
  fxpq quantize model.keras -d calib.npz -o out/          # search a policy, write out/model.tflite
  fxpq export model.keras out/policy.json -o model.tflite --c-array model_data.h
  fxpq run model.tflite -i x.npy -o y.npy --engine host   # or reference, qemu-m4, qemu-m7, tflm
  fxpq inspect model.tflite --json                        # any .tflite: layers, macs, flash, TFLM arena
  fxpq deploy model.tflite --package fw/model             # a folder that builds into TFLM firmware

exit status: 0 ok, 1 the work failed (C runner, QEMU, make, internal error), 2 bad arguments or
input files, 3 quantize wrote files that miss the budget or --memory-target, 130 interrupted.
environment: FXPQ_DEBUG=1 prints the traceback of an unexpected error; TF_CPP_MIN_LOG_LEVEL=0
shows TensorFlow's native log lines (hidden by default).
docs: docs/algorithm.md (the search), docs/format.md (the .tflite), docs/tflm.md (firmware).
"""


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown for every option that has one; one-paragraph descriptions are wrapped,
    multi-line texts (the epilogs with examples) keep their layout."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text.strip():
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.required or action.default is None or action.default is argparse.SUPPRESS \
                or not action.option_strings or "%(default)" in text or isinstance(action, argparse._HelpAction):
            return text
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line usage errors: `fxpq run: error: ... (see fxpq run --help)`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def add_quiet(parser: argparse.ArgumentParser) -> None:
    """`--quiet` after the subcommand; SUPPRESS keeps a global `fxpq --quiet CMD` from being reset."""
    parser.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="print only results and errors (same as `fxpq --quiet COMMAND`)")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = ArgumentParser(
        prog="fxpq",
        description="Mixed low-precision dynamic fixed-point quantization (FxP-QNet) for Keras models "
        "(Keras 3 or tf_keras), exported to TFLite with custom fixed-point ops (FXP_*) for TensorFlow Lite Micro, "
        "and run with the "
        "numpy reference, the C kernels on this host, or the C kernels on an emulated Cortex-M (QEMU).",
        epilog=EPILOG,
    )
    parser.add_argument("-q", "--quiet", action="store_true", default=False, help="print only results and errors")
    parser.add_argument("--version", action="version", version=f"fxpq {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands",
                                description="`fxpq COMMAND --help` describes each one")
    for name in COMMANDS:
        module = importlib.import_module(f"fxpq_keras.commands.{name}")
        p = module.register(sub)
        add_quiet(p)
        p.set_defaults(_run=module.run)
    return parser


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (the first line; a count of the rest)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    more = f" (+{len(lines) - 1} more lines; FXPQ_DEBUG=1 shows them)" if len(lines) > 1 else ""
    return lines[0] + more


def _run(args: argparse.Namespace) -> int:
    name = f"fxpq {args.command}"
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (CliError, ValueError, OSError) as exc:  # the user's arguments or files
        if os.environ.get("FXPQ_DEBUG"):
            raise
        print(f"{name}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - the work failed (C runner, QEMU, make) or a bug
        if os.environ.get("FXPQ_DEBUG"):
            raise
        print(f"{name}: error: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
        return EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `fxpq` script; returns the exit status (argparse's exits included)."""
    from ._native_log import USER_TF_LOG_LEVEL, hide_native_logs, severities_for_level

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error argparse already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if not getattr(args, "_run", None):
        print("fxpq: error: a COMMAND is required (see 'fxpq --help')", file=sys.stderr)
        return EXIT_USAGE
    # Our own default is stricter than _tf.py's: ERROR lines too (e.g. "failed call to cuInit"),
    # unless the user chose a level; the CLI reports every real failure itself.
    with hide_native_logs(severities_for_level(3 if USER_TF_LOG_LEVEL is None else USER_TF_LOG_LEVEL)):
        return _run(args)


if __name__ == "__main__":
    sys.exit(main())
