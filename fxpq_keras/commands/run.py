"""`fxpq run MODEL.tflite -i X.npy -o Y.npy`: execute an exported file on a batch."""

from __future__ import annotations

import argparse

import numpy as np


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("run", help="run an exported .tflite file on a .npy batch",
                       description="Run MODEL on the batch in X.npy and save the outputs to Y.npy "
                       "(dequantized, softmax applied if the model ends in one; --raw for the integers).")
    p.add_argument("model", help=".tflite file written by fxpq export")
    p.add_argument("-i", "--input", required=True, help="input batch .npy [N, ...]")
    p.add_argument("-o", "--output", required=True, help="output .npy (first output; more go to Y.1.npy, ...)")
    p.add_argument("--engine", default="reference",
                   help="reference (numpy), tflm (real TFLM, int8-builtin files), host, qemu-m4, qemu-m7")
    p.add_argument("--raw", action="store_true", help="save the output integers instead of dequantized floats")
    return p


def run(args: argparse.Namespace) -> int:
    from ..flatbuffer import Interpreter

    x = np.load(args.input, allow_pickle=False)
    interp = Interpreter(args.model, engine=args.engine)
    y = interp.predict(x, raw=args.raw)
    outs = y if isinstance(y, list) else [y]
    np.save(args.output, outs[0])
    for i, extra in enumerate(outs[1:], start=1):
        np.save(args.output[:-4] + f".{i}.npy" if args.output.endswith(".npy") else f"{args.output}.{i}", extra)
    if not getattr(args, "quiet", False):
        print(f"wrote {args.output} {list(outs[0].shape)} ({args.engine})")
    return 0
