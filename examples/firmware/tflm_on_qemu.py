"""A fixed-point model in a real TensorFlow Lite Micro firmware, on QEMU: every step, visible.

    TFLM_DIR=/path/to/tflite-micro .venv/bin/python examples/firmware/tflm_on_qemu.py   # bench LeNet-5
    ... tflm_on_qemu.py --model my.h5 --policy policy.json --inputs x.npy [--labels y.npy] [--cpu m7]

Steps (each prints the command it runs; README.md in this folder explains them):

1. export   `fxpq export MODEL POLICY -o build/model.tflite --c-array build/fxpq_model_array.h`
2. sources  build/model_data.c (the symbols tflm_main.cc reads the model from) and
            build/fxpq_tflm_model_ops.h: a MicroMutableOpResolver holding exactly the model's ops
3. TFLM     `python -m fxpq_keras.kernels.tflm --variants m4-cmsis`: TFLM (+ CMSIS-NN) built from
            TFLM_DIR with TFLM's own Makefile; prints the library, next to it flags.mk
4. make     `make -C tflm_kernels tflm-program TFLM_MK=... MODEL_C=... TFLM_OPS_H=...`: the fxpq
            kernels, the TFLM glue, tflm_kernels/tflm/tflm_main.cc and the model, linked with TFLM
5. arena    run it once with a 1 MiB arena, read TFLM's arena_used_bytes, rebuild with that arena
            (+16 bytes of alignment slack, as TFLM's micro_interpreter.h advises), growing it by
            256-byte steps while TFLM refuses it (its memory planner's bookkeeping is not counted)
6. qemu     run the sized firmware on QEMU and compare its output integers with the reference
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
KERNELS = ROOT / "tflm_kernels"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_on_qemu import MACHINES, export_step, show  # noqa: E402  (same folder: model, policy, inputs)

import fxpq_keras as fx  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--model", help="float tf_keras model (.h5/.keras); default: the bench LeNet-5 (cached)")
    ap.add_argument("--policy", help="policy.json from `fxpq quantize`; default: the bench's cached policy")
    ap.add_argument("--inputs", help=".npy batch [N, ...]; default: held-out MNIST digits")
    ap.add_argument("--labels", help=".npy labels for --inputs (only for the accuracy line)")
    ap.add_argument("--samples", type=int, default=20, help="inputs run on the emulated Cortex-M")
    ap.add_argument("--cpu", choices=sorted(MACHINES), default="m4", help="m4: mps2-an386, m7: mps2-an500")
    ap.add_argument("--kernels", choices=("cmsis", "ref"), default="cmsis",
                    help="TFLM's stock kernels: CMSIS-NN or reference (the fxpq ops are the same either way)")
    ap.add_argument("--build", default=str(ROOT / "runs" / "firmware-tflm"), help="build folder (created)")
    return ap.parse_args(argv)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {shlex.join(cmd)}\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return proc


def main(argv: list[str] | None = None) -> int:
    from fxpq_keras.kernels._build import ARM_LOCK, locked_make
    from fxpq_keras.kernels.engines import decode_results, write_model_source
    from fxpq_keras.kernels.tflm import TflmUnavailable, build_library, tflm_tree
    from fxpq_keras.kernels.tflm_engines import model_ops, ops_header

    args = parse_args(argv)
    try:
        tflm_tree()
    except TflmUnavailable as exc:
        print(f"tflm_on_qemu: {exc}", file=sys.stderr)
        return 2
    exported = export_step(args)
    if exported is None:
        return 1
    build, x, y = exported
    tflite = build / "model.tflite"

    ops = model_ops(tflite.read_bytes())
    show(f"2 sources: model_data.c, and a resolver with exactly the model's {len(ops)} ops",
         f"cat {build}/fxpq_tflm_model_ops.h")
    source = write_model_source(tflite, build)
    ops_h = build / "fxpq_tflm_model_ops.h"
    ops_h.write_text(ops_header(ops))
    print("  " + ops_h.read_text().strip().replace("\n", "\n  "))

    variant = f"{args.cpu}-{args.kernels}"
    show(f"3 TFLM: the library ({variant}) from {tflm_tree()}",
         [sys.executable, "-m", "fxpq_keras.kernels.tflm", "--variants", variant])
    lib = build_library(variant, log=lambda m: print("  " + m, flush=True))
    print(f"  {lib.lib}\n  {lib.flags_mk}")

    def make(arena: int | None) -> Path:
        out = build / ("probe" if arena is None else "firmware")
        cmd = ["make", "-C", str(KERNELS), "tflm-program", f"TFLM_MK={lib.flags_mk}", f"TFLM_CPU={args.cpu}",
               f"OUT={out}", f"MODEL_C={source}", f"TFLM_OPS_H={ops_h}"]
        if arena is not None:
            cmd.append(f"TFLM_FW_DEFS=-DFXPQ_TFLM_ARENA_BYTES={arena}u")
        print("  $ " + shlex.join(cmd), flush=True)
        proc = locked_make(cmd[3:], ARM_LOCK, 900)
        if proc.returncode:
            raise SystemExit(f"make failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
        elf = out / "fxpq_tflm.elf"
        print("  " + run(["arm-none-eabi-size", str(elf)]).stdout.strip().replace("\n", "\n  "))
        return elf

    def qemu(elf: Path, inputs: np.ndarray, refuse_ok: bool = False):
        (elf.parent / "fxpq_inputs.bin").write_bytes(inputs.tobytes())
        (elf.parent / "fxpq_outputs.bin").unlink(missing_ok=True)
        cmd = ["qemu-system-arm", "-M", MACHINES[args.cpu], "-nographic", "-semihosting-config",
               "enable=on,target=native", "-icount", "shift=0", "-kernel", str(elf)]
        print(f"  $ (cd {elf.parent} && {shlex.join(cmd)})", flush=True)
        subprocess.run(cmd, cwd=elf.parent, capture_output=True, timeout=600)
        res = decode_results((elf.parent / "fxpq_outputs.bin").read_bytes())
        if res.status != 0 and not refuse_ok:
            raise SystemExit(f"TFLM refused the model (status {res.status}): {res.message}")
        return res

    interp = fx.Interpreter(str(tflite))  # numpy reference: the contract
    in_fmt = interp.graph.tensors[interp.graph.input].fmt
    in_dtype = np.dtype("<f4") if interp.info.float_input or in_fmt is None else in_fmt.storage_dtype
    xs = np.ascontiguousarray(x.astype(in_dtype.newbyteorder("<")))

    show("4 make: fxpq kernels + TFLM glue + tflm_main.cc + the model, linked with TFLM (arena 1 MiB)")
    probe = qemu(make(None), xs[:1])
    arena = probe.arena_bytes + 16
    show(f"5 arena: TFLM arena_used_bytes = {probe.arena_bytes:,}; rebuild with FXPQ_TFLM_ARENA_BYTES={arena}")
    # AllocateTensors also needs room for its memory planner's bookkeeping, which arena_used_bytes
    # does not count: if TFLM refuses the sized arena, grow it in small steps until it accepts.
    for _ in range(16):
        elf = make(arena)
        check = qemu(elf, xs[:1], refuse_ok=True)
        if check.status == 0:
            break
        print(f"  TFLM refused {arena:,} bytes ({check.message}): trying {arena + 256:,}")
        arena += 256

    show(f"6 qemu: {len(x)} inferences on {MACHINES[args.cpu]}, compared with the reference interpreter")
    res = qemu(elf, xs)
    reference = interp.predict(x, raw=True)
    out_dtype = interp.output_formats[0].storage_dtype
    mcu = np.stack([np.frombuffer(o, out_dtype.newbyteorder("<"), int(np.prod(reference.shape[1:])))
                    for o in res.outputs]).reshape(reference.shape).astype(np.int64)
    identical = len(mcu) == len(x) and not res.statuses.any() and np.array_equal(mcu, reference)
    print(f"  {len(mcu)} inferences in real TFLM; output integers identical to the reference interpreter: "
          f"{identical}")
    if y is not None:
        print(f"  accuracy on these {len(y)} samples: {np.mean(mcu.argmax(-1) == y):.2%}")
    print(f"  instructions per inference: median {int(np.median(res.instructions)):,}; arena {arena:,} bytes "
          f"(TFLM arena_used_bytes {res.arena_bytes:,}); model {tflite.stat().st_size:,} bytes")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
