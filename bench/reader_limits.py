"""What a file at the readers' default limits costs (docs/format.md section 11): time and peak memory
of one inference in the numpy reference and the host C engine, each in a fresh process.

    .venv/bin/python bench/reader_limits.py

Two files, each just inside one limit: a conv (64x64x64 input, 3x3 filters, 1800 output channels:
4.25 * 10^9 MACs, below the work limit 2^32) and a max pool whose window spans 2^24 patch elements
(64x64 window over 64x64, 'same': the window limit, 2^24 of the 2^26 taps). Prints one row per file
and engine: seconds, peak RSS of the process (MB), nanoseconds per MAC or tap.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

_CHILD = """
import json, resource, sys, time
import numpy as np
from fxpq_keras.flatbuffer import Interpreter
path, engine, shape = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
x = np.random.default_rng(0).integers(-128, 128, [1] + shape)
interp = Interpreter(path, engine=engine)
start = time.perf_counter()
interp.predict(x, raw=True)
print(json.dumps({"seconds": time.perf_counter() - start,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))
"""


def files(folder: Path) -> list[tuple[str, Path, list[int], int]]:
    """(label, path, input shape, MACs or taps) of the two files."""
    from fxpq_keras.flatbuffer import export_tflite
    from fxpq_keras.formats import Format
    from fxpq_keras.integer_graph import IntegerGraph, Node, TensorSpec

    fmt = Format(8, 4)
    rng = np.random.default_rng(0)
    h, c, o, k = 64, 64, 1800, 3
    conv = Node("conv2d", "conv", ["x"], "y", {"stride": (1, 1), "padding": "same", "dilation": (1, 1),
                                               "activation": None},
                weights=rng.integers(-8, 8, (o, k, k, c)), weight_bits=4, weight_frac=np.zeros(o, np.int64))
    conv_graph = IntegerGraph("x", ["y"], {"x": TensorSpec("x", (h, h, c), fmt),
                                           "y": TensorSpec("y", (h, h, o), Format(16, 0))}, [conv])
    pool = Node("max_pool2d", "pool", ["x"], "y", {"pool": (64, 64), "stride": (1, 1), "padding": "same",
                                                   "activation": None})
    pool_graph = IntegerGraph("x", ["y"], {"x": TensorSpec("x", (64, 64, 1), fmt),
                                           "y": TensorSpec("y", (64, 64, 1), fmt)}, [pool])
    out = []
    for label, graph, shape, units in (("conv, 4.25e9 MACs", conv_graph, [h, h, c], h * h * k * k * c * o),
                                       ("max pool, 2^24 taps", pool_graph, [64, 64, 1], 2**24)):
        path = folder / f"{label.split(',')[0].replace(' ', '_')}.tflite"
        export_tflite(graph, path, float_input=False)
        out.append((label, path, shape, units))
    return out


def main() -> int:
    print("| file | engine | seconds | peak RSS (MB) | ns per MAC or tap |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for label, path, shape, units in files(Path(tmp)):
            for engine in ("reference", "host"):
                proc = subprocess.run([sys.executable, "-c", _CHILD, str(path), engine, json.dumps(shape)],
                                      capture_output=True, text=True, check=True)
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                print(f"| {label} | {engine} | {r['seconds']:.2f} | {r['rss_mb']} | {r['seconds'] / units * 1e9:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
