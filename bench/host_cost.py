"""Host cost of `fxpq quantize`: wall time and peak memory of the whole command, per zoo model.

    .venv/bin/python bench/host_cost.py [--models resnet8,mobilenet_v1_025] [--samples 512] [--keep DIR]
        [-- EXTRA FXPQ ARGS]

For each model: the trained zoo model file (bench/models.py, FXPQ_BENCH_CACHE) and bench/quality.py's
calibration draw written to an .npz, then `fxpq quantize MODEL -d DATA.npz -o OUT --samples N` run as a
child process (one at a time). Printed per model: the whole command's wall seconds, the search's
seconds and the rest (the command's own `time:` line: loading TensorFlow and the model, writing and
checking the files), the child's peak resident memory (`os.wait4`'s rusage, what
`/usr/bin/time -v` calls "Maximum resident set size"), its CPU seconds (user + sys, all threads: on
idle cores the wall time of this CPU-bound command lies between half of it, on two cores, and all of
it), and the machine's load average (wall times on a shared machine are upper bounds). `--keep DIR`
keeps each model's output folder (DIR/MODEL/) and what the command printed (DIR/MODEL.txt), to show
that a change left policy.json and model.tflite byte-identical.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fxpq_keras  # noqa: E402,F401  (selects tf_keras before TensorFlow is imported)
from bench.models import calibration_set, data_for, model_path, trained  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="resnet8,mobilenet_v1_025")
    p.add_argument("--samples", type=int, default=512)
    p.add_argument("--keep", metavar="DIR", default=None,
                   help="keep each model's output folder as DIR/MODEL/ and what it printed as DIR/MODEL.txt "
                   "(compare policy.json across checkouts: the policies must not change)")
    p.add_argument("extra", nargs="*", help="more `fxpq quantize` arguments (after --)")
    args = p.parse_args(argv)
    print("| model | samples | wall s | CPU s | search s | loading s | writing and checking s | peak RSS GB | load |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    fxpq = [sys.executable, "-m", "fxpq_keras.cli"]
    for name in args.models.split(","):
        data = data_for(name)
        path = model_path(name, data)
        if not path.exists():
            trained(name)
        x, _ = calibration_set(data, args.samples)
        with tempfile.TemporaryDirectory() as tmp:
            npz = os.path.join(tmp, "calib.npz")
            np.savez(npz, x=x)
            out = os.path.join(args.keep, name) if args.keep else os.path.join(tmp, "out")
            began = time.perf_counter()
            proc = subprocess.Popen([*fxpq, "quantize", str(path), "-d", npz, "-o", out,
                                     "--samples", str(args.samples), *args.extra],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            printed = proc.stdout.read()
            _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak, not the largest child's so far
            proc.returncode = os.waitstatus_to_exitcode(status)
            wall = time.perf_counter() - began
        if args.keep:
            Path(f"{out}.txt").write_text(printed)  # (beside the folder: quantize refuses a folder of other files)
        peak = usage.ru_maxrss * 1024
        cpu = usage.ru_utime + usage.ru_stime  # user + sys: what 2 idle cores would take in wall, at most
        line = re.search(r"time: [0-9.]+ s for the whole command \(loading TensorFlow and the model ([0-9.]+) s, "
                         r"search ([0-9.]+) s, writing and checking the files ([0-9.]+) s\)", printed)
        if line is None:
            print(printed[-3000:], file=sys.stderr)
            print(f"| {name} | {args.samples} | {wall:.0f} | {cpu:.0f} | failed (exit {proc.returncode}) | | | | |")
            continue
        loading, search, rest = (float(v) for v in line.groups())
        print(f"| {name} | {args.samples} | {wall:.0f} | {cpu:.0f} | {search:.0f} | {loading:.0f} | {rest:.0f} | "
              f"{peak / 1e9:.2f} | {os.getloadavg()[0]:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
