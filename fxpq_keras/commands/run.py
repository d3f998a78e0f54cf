"""`fxpq run MODEL.tflite -i X.npy -o Y.npy`: execute an exported file on a batch."""

from __future__ import annotations

import argparse

import numpy as np

from . import load_array, parent_dir_exists, require_file

ENGINE_HELP = ("reference: the numpy integer reference (the contract); tflm: the real TFLM interpreter "
               "(int8-builtin files only); host: the C kernels on this machine; qemu-m4 / qemu-m7: the C "
               "kernels in firmware on an emulated Cortex-M4 / M7 (needs arm-none-eabi-gcc and qemu-system-arm); "
               "they also print instructions per inference (mean/min/max, QEMU -icount) and runner_arena_bytes; "
               "tflm-host / tflm-m4 / tflm-m7: fxp and int8-builtin files inside real TFLM built from TFLM_DIR "
               "(M4/M7 with CMSIS-NN; tflm-m4-ref / tflm-m7-ref with TFLM's reference kernels; docs/tflm.md); "
               "they print TFLM's arena_used_bytes (as ram_bytes) and, on the M4/M7, instructions per inference")

EPILOG = """\
examples:
  fxpq run model.tflite -i x.npy -o y.npy                       # numpy reference, probabilities
  fxpq run model.tflite -i calib.npz -o q.npy --engine qemu-m4 --raw   # Cortex-M4 output integers
  TFLM_DIR=... fxpq run model.tflite -i x.npy -o y.npy --engine tflm-m4   # in real TFLM: + instructions, arena

X is a float batch [N, ...input shape] in .npy, or an .npz holding it as 'x'. With an
--integer-input file, X holds the input's integers. More than one model output: the first goes
to Y.npy, the others to Y.1.npy, Y.2.npy, ...
"""


# The engines Interpreter knows (fxpq_keras.flatbuffer.interpreter.ENGINES once fxpq_keras.kernels.engines
# is imported), listed here so that `fxpq --help` and argument errors need no TensorFlow (a test keeps them equal).
ENGINE_NAMES = ("host", "qemu-m4", "qemu-m7", "reference", "tflm", "tflm-host", "tflm-m4", "tflm-m7", "tflm-m4-ref",
                "tflm-m7-ref")


def engines() -> list[str]:
    """Every engine name `fxpq run --engine` accepts."""
    return list(ENGINE_NAMES)


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("run", help="run an exported .tflite file on a .npy batch",
                       description="Run MODEL on the batch in X and save the outputs to Y.npy (dequantized, "
                       "softmax applied if the model ends in one; --raw for the output integers).", epilog=EPILOG)
    p.add_argument("model", help=".tflite file written by fxpq export / fxpq quantize")
    p.add_argument("-i", "--input", required=True, metavar="X", help="input batch .npy [N, ...], or .npz with 'x'")
    p.add_argument("-o", "--output", required=True, metavar="Y.npy",
                   help="output .npy (first output; more go to Y.1.npy, ...)")
    p.add_argument("--engine", default="reference", choices=engines(), metavar="ENGINE",
                   help=f"one of {', '.join(engines())}; {ENGINE_HELP}")
    p.add_argument("--raw", action="store_true", help="save the output integers instead of dequantized floats")
    return p


def run(args: argparse.Namespace) -> int:
    from ..flatbuffer import FlatbufferFormatError, Interpreter

    require_file(args.model, "model file")
    x = load_array(args.input, "input batch")
    parent_dir_exists(args.output, "output file")
    from ..kernels.runner import RunnerModelError

    try:
        interp = Interpreter(args.model, engine=args.engine)
        y = interp.predict(x, raw=args.raw)
    except (FlatbufferFormatError, RunnerModelError) as exc:  # the file, named (the C runner refuses more)
        raise FlatbufferFormatError(f"{args.model}: {exc}") from None
    outs = y if isinstance(y, list) else [y]
    np.save(args.output, outs[0])
    stem = args.output[:-4] if args.output.endswith(".npy") else args.output
    for i, extra in enumerate(outs[1:], start=1):
        np.save(f"{stem}.{i}.npy", extra)
    if not getattr(args, "quiet", False):
        print(f"wrote {args.output} {list(outs[0].shape)} ({args.engine})")
    # the emulated Cortex-M engines count instructions (QEMU -icount); every engine that measures an arena says which
    for line in measurement_lines(args.engine, getattr(interp.engine, "measurements", dict)()):
        print(line)
    return 0


def measurement_lines(engine: str, measured: dict) -> list[str]:
    """The lines `fxpq run` prints for an engine's measurements, each memory figure under its one name
    (docs/format.md section 9)."""
    cpu = {"qemu-m4": "Cortex-M4", "qemu-m7": "Cortex-M7", "tflm-m4": "Cortex-M4", "tflm-m7": "Cortex-M7",
           "tflm-m4-ref": "Cortex-M4", "tflm-m7-ref": "Cortex-M7", "tflm-host": "host"}.get(engine, engine)
    lines = []
    if "instructions_mean" in measured:
        lines.append(f"instructions per inference ({cpu}, {measured['inferences']} inferences): "
                     f"mean {measured['instructions_mean']:,.0f}, min {measured['instructions_min']:,}, "
                     f"max {measured['instructions_max']:,}")
    if "runner_arena_bytes" in measured:
        lines.append(f"runner_arena_bytes {measured['runner_arena_bytes']:,} (the C runner's arena on the {cpu}: "
                     f"runner_planned_bytes {measured['runner_planned_bytes']:,} for tensors and scratch, the rest "
                     "per-op records; TFLM's arena is ram_bytes in `fxpq inspect`)")
    if "ram_bytes" in measured:
        lines.append(f"ram_bytes {measured['ram_bytes']:,} (TFLM's arena_used_bytes, measured on the {cpu})")
    return lines
