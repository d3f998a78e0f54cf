"""A fixed-point model in Cortex-M4 firmware, on QEMU: every step of the way, visible.

    .venv/bin/python examples/firmware/run_on_qemu.py                   # the bench LeNet-5 (cached)
    .venv/bin/python examples/firmware/run_on_qemu.py --model my.h5 --policy policy.json \\
        --inputs x.npy [--labels y.npy]                                  # your own model

Steps (each prints the command it runs; README.md in this folder explains them):

1. export   `fxpq export MODEL POLICY -o build/model.tflite --c-array build/fxpq_model_array.h`:
            the .tflite with FXP_* custom ops, and the same bytes as a 16-byte aligned C array.
2. C source build/model_data.c: the two symbols the firmware reads the model from.
3. make     `make -C tflm_kernels model-linked CPU=m4 OUT=build MODEL_C=build/model_data.c`:
            kernels + model runner + tflm_kernels/firmware/model_main.c + the model, for QEMU
            mps2-an386 (Cortex-M4, hard float), the model in flash.
4. inputs   build/fxpq_inputs.bin: N input samples, raw float32 little-endian, back to back.
5. qemu     `qemu-system-arm -M mps2-an386 -nographic -semihosting-config enable=on,target=native
            -icount shift=0 -kernel build/fxpq_model.elf`, run in build/: the firmware reads the
            inputs and writes build/fxpq_outputs.bin over semihosting.
6. decode   that file (its layout is in model_main.c's header comment), compare the output
            integers with the numpy reference interpreter (they must be identical), and report
            accuracy, instructions per inference and the arena the model needs.
"""

from __future__ import annotations

import argparse
import fcntl
import shlex
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
KERNELS = ROOT / "tflm_kernels"
sys.path.insert(0, str(ROOT))

import fxpq_keras as fx  # noqa: E402  (before TensorFlow: selects tf_keras)
from fxpq_keras.cli import main as fxpq  # noqa: E402  (`fxpq ...` without starting another Python)

MACHINES = {"m4": "mps2-an386", "m7": "mps2-an500"}
HEADER_WORDS, MESSAGE_BYTES, MAGIC = 14, 160, 0x4F4D5846  # model_main.c: 'FXMO' header + runner message
INSTRUCTIONS_PER_TICK = 40  # TIMER0 ticks at 25 MHz; -icount shift=0: 1 instruction = 1 ns (docs/tflm.md)


def show(step: str, command: list[str] | str | None = None) -> None:
    print(f"\n[{step}]", flush=True)
    if command is not None:
        print("  $ " + (command if isinstance(command, str) else shlex.join(command)), flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--model", help="float tf_keras model (.h5/.keras); default: the bench LeNet-5 (cached)")
    ap.add_argument("--policy", help="policy.json from `fxpq quantize`; default: the one the main job "
                    "(scripts/main.sh) wrote to --main-out for LeNet-5, else uniform 8-bit")
    ap.add_argument("--main-out", default=str(ROOT / "runs" / "main"),
                    help="the main job's output folder (examples/end_to_end.py --out), read for its policy.json")
    ap.add_argument("--inputs", help=".npy batch [N, ...]; default: held-out MNIST digits")
    ap.add_argument("--labels", help=".npy labels for --inputs (only for the accuracy line)")
    ap.add_argument("--samples", type=int, default=20, help="inputs run on the emulated Cortex-M")
    ap.add_argument("--cpu", choices=sorted(MACHINES), default="m4", help="m4: mps2-an386, m7: mps2-an500")
    ap.add_argument("--build", default=str(ROOT / "runs" / "firmware"), help="build folder (created)")
    return ap.parse_args(argv)


def bench_inputs(args: argparse.Namespace) -> tuple[str, str, np.ndarray, np.ndarray | None]:
    """The model, policy and inputs to use: the user's, or the bench LeNet-5's."""
    build = Path(args.build)
    if args.model:
        if not args.policy or not args.inputs:
            raise SystemExit("--model needs --policy and --inputs too")
        labels = np.load(args.labels) if args.labels else None
        return args.model, args.policy, np.load(args.inputs), labels
    from bench.models import model_path, trained

    model, data = trained("lenet5")  # trains once (a few minutes), then cached in .cache/bench/
    policy = args.policy or default_policy(model, Path(args.main_out), build, data["x_train"][:500])
    return str(model_path("lenet5", data)), policy, data["x_test"], data["y_test"]


def default_policy(model, main_out: Path, build: Path, x_calib: np.ndarray) -> str:
    """The policy the main job searched for this model (main_out/policy.json), when there is one and it
    fits the model; else uniform 8-bit, saying why."""
    from fxpq_keras.keras_model import canonicalize

    found = main_out / "policy.json"
    why = f"no policy at {found} (run scripts/main.sh first)"
    if found.exists():
        try:
            fx.Policy.from_json(str(found)).check_matches(canonicalize(model))
            print(f"  (the FxP-QNet policy the main job wrote: {found})")
            return str(found)
        except ValueError as exc:  # PolicyMismatchError, or a malformed file
            why = f"{found} does not fit this model ({exc})"
    print(f"  ({why}: using uniform 8-bit; `fxpq quantize` finds a better one)")
    build.mkdir(parents=True, exist_ok=True)
    policy = str(build / "policy_uniform8.json")
    fx.Policy.uniform(model, 8, x_calib).to_json(policy)
    return policy


def decode(blob: bytes, out_dtype: np.dtype, out_shape: tuple[int, ...]) -> dict:
    """fxpq_outputs.bin: 14 header words, the runner's message, then per sample ticks, status, outputs."""
    head = struct.unpack_from(f"<{HEADER_WORDS}I", blob, 0)
    if head[0] != MAGIC:
        raise RuntimeError("fxpq_outputs.bin has no FXMO header: did the firmware start?")
    init_status = struct.unpack("<i", struct.pack("<I", head[2]))[0]
    message = blob[HEADER_WORDS * 4:HEADER_WORDS * 4 + MESSAGE_BYTES].split(b"\0")[0].decode()
    res = {"init_status": init_status, "message": message, "arena_needed": head[3],
           "calibration_instructions": head[11] * INSTRUCTIONS_PER_TICK, "calibration_expected": 2 * head[10],
           "instructions": [], "statuses": [], "outputs": []}
    per_sample = 8 + head[9]  # uint32 ticks, int32 status, then every output's bytes
    off = HEADER_WORDS * 4 + MESSAGE_BYTES
    while off + per_sample <= len(blob):
        ticks, status = struct.unpack_from("<Ii", blob, off)
        res["instructions"].append(ticks * INSTRUCTIONS_PER_TICK)
        res["statuses"].append(status)
        res["outputs"].append(np.frombuffer(blob, out_dtype.newbyteorder("<"), int(np.prod(out_shape)), off + 8)
                              .reshape(out_shape))
        off += per_sample
    return res


def export_step(args: argparse.Namespace) -> tuple[Path, np.ndarray, np.ndarray | None] | None:
    """Step 1 of both firmware examples: the inputs, and the model exported as .tflite and as a C
    array (fxpq_model_array.h) under the build folder; (build, x, y), or None when the export
    failed."""
    build = Path(args.build).resolve()
    build.mkdir(parents=True, exist_ok=True)
    model_path, policy_path, x, y = bench_inputs(args)
    x = x[: args.samples]
    y = None if y is None else y[: args.samples]
    tflite, header = build / "model.tflite", build / "fxpq_model_array.h"

    show("1 export: .tflite with FXP_* ops, and the same bytes as a C array",
         ["fxpq", "export", model_path, policy_path, "-o", str(tflite), "--c-array", str(header)])
    if fxpq(["export", model_path, policy_path, "-o", str(tflite), "--c-array", str(header)]) != 0:
        return None
    return build, x, y


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("arm-none-eabi-gcc", "qemu-system-arm", "make"):
        if shutil.which(tool) is None:
            print(f"run_on_qemu: {tool} is not installed (Debian: gcc-arm-none-eabi libnewlib-arm-none-eabi "
                  "qemu-system-arm make)", file=sys.stderr)
            return 2
    exported = export_step(args)
    if exported is None:
        return 1
    build, x, y = exported
    tflite = build / "model.tflite"

    show("2 C source: the symbols model_main.c (FXPQ_MODEL_LINKED) reads the model from", f"cat > {build}/model_data.c")
    source = build / "model_data.c"
    source.write_text('#include <stdint.h>\n#include "fxpq_model_array.h"  /* fxpq_model_array[], 16-byte aligned */\n'
                      "const unsigned char *const fxpq_model_data = fxpq_model_array;\n"
                      "const uint32_t fxpq_model_data_len = (uint32_t)sizeof(fxpq_model_array);\n")
    print("  " + source.read_text().replace("\n", "\n  ").rstrip())

    make = ["make", "-C", str(KERNELS), "model-linked", f"CPU={args.cpu}", f"OUT={build}", f"MODEL_C={source}"]
    show(f"3 make: kernels + runner + firmware/model_main.c + the model, for {MACHINES[args.cpu]}", make)
    # tflm_kernels/build/<cpu>/*.a are shared with the test suite's builds: take their lock (engines.py).
    (KERNELS / "build").mkdir(exist_ok=True)
    with open(KERNELS / "build" / ".arm-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = subprocess.run(make, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stdout + proc.stderr, file=sys.stderr)
        return 1
    elf = build / "fxpq_model.elf"
    size = subprocess.run(["arm-none-eabi-size", str(elf)], capture_output=True, text=True).stdout
    print("  " + size.strip().replace("\n", "\n  "))

    interp = fx.Interpreter(str(tflite))  # numpy reference: the contract the C kernels must meet
    in_fmt = interp.graph.tensors[interp.graph.input].fmt
    in_dtype = np.dtype("<f4") if interp.info.float_input or in_fmt is None else in_fmt.storage_dtype
    show(f"4 inputs: {len(x)} samples of {list(x.shape[1:])}, raw {in_dtype} little-endian",
         f"python: x.astype('{in_dtype.str}').tofile('{build}/fxpq_inputs.bin')")
    (build / "fxpq_inputs.bin").write_bytes(np.ascontiguousarray(x.astype(in_dtype.newbyteorder("<"))).tobytes())
    (build / "fxpq_outputs.bin").unlink(missing_ok=True)

    qemu = ["qemu-system-arm", "-M", MACHINES[args.cpu], "-nographic", "-semihosting-config",
            "enable=on,target=native", "-icount", "shift=0", "-kernel", str(elf)]
    show(f"5 qemu: run the firmware in {build} (semihosting reads fxpq_inputs.bin, writes fxpq_outputs.bin)", qemu)
    proc = subprocess.run(qemu, cwd=build, capture_output=True, text=True, timeout=600)
    if proc.stdout.strip():
        print("  firmware: " + proc.stdout.strip())

    show("6 decode fxpq_outputs.bin and compare with the reference interpreter")
    out_fmt = interp.output_formats[0]
    reference = interp.predict(x, raw=True)
    res = decode((build / "fxpq_outputs.bin").read_bytes(), out_fmt.storage_dtype, reference.shape[1:])
    if res["init_status"] != 0:
        print(f"  fxpq_runner_init failed ({res['init_status']}): {res['message']}", file=sys.stderr)
        return 1
    mcu = np.stack(res["outputs"]).astype(np.int64)
    identical = len(mcu) == len(x) and not any(res["statuses"]) and np.array_equal(mcu, reference)
    instr = np.asarray(res["instructions"])
    print(f"  {len(mcu)} inferences, statuses {sorted(set(res['statuses']))}; output format {out_fmt} "
          f"(real value = q * 2^-{out_fmt.frac})")
    print(f"  Cortex-M output integers identical to the reference interpreter: {identical}")
    if y is not None:
        print(f"  accuracy on these {len(y)} samples: {np.mean(mcu.argmax(-1) == y):.2%}")
    print(f"  instructions per inference: median {int(np.median(instr)):,} (calibration loop "
          f"{res['calibration_instructions']:,} of {res['calibration_expected']:,} expected)")
    print(f"  arena the model needs: {res['arena_needed']:,} bytes (build with "
          f"MODEL_FW_DEFS=-DFXPQ_FW_ARENA_BYTES={res['arena_needed']}u to size it exactly)")
    print(f"  model: {tflite.stat().st_size:,} bytes in flash")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
