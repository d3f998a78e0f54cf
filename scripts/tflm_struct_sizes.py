"""Print the sizes of the TFLM structs that fxpq_keras/tflm_arena.py charges, for 32-bit Arm.

    TFLM_DIR=/src/tflite-micro .venv/bin/python scripts/tflm_struct_sizes.py [--check]

Each struct is measured by compiling a one-line probe with arm-none-eabi-g++ (Cortex-M4, TFLM's
TF_LITE_STATIC_MEMORY) against the TFLM tree and reading the size of an array of sizeof(T) bytes
from the object's symbol table; a kernel's private OpData (and the fxpq glue's per-op Record) is
measured by compiling its .cc in the probe's translation unit. Nothing of TFLM is copied: the tree
is only compiled. --check compares with the constants in fxpq_keras/tflm_arena.py and exits 1 on
any difference.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fxpq_keras import tflm_arena as T  # noqa: E402
from fxpq_keras.kernels.tflm import prepare_downloads, tflm_tree  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
K = "tensorflow/lite/micro/kernels"
CORE = ["tensorflow/lite/micro/micro_interpreter.h", "tensorflow/lite/micro/memory_planner/greedy_memory_planner.h",
        "tensorflow/lite/c/builtin_op_data.h", f"{K}/conv.h", f"{K}/fully_connected.h", f"{K}/pooling.h",
        f"{K}/add.h", f"{K}/reduce.h", f"{K}/softmax.h", f"{K}/quantize.h", f"{K}/dequantize.h", f"{K}/leaky_relu.h"]
# name -> (translation unit to include, type); "" = the core headers above
PROBES = {
    "SINGLE_ARENA_ALLOCATOR": ("", "tflite::SingleArenaBufferAllocator"),
    "GREEDY_PLANNER": ("", "tflite::GreedyMemoryPlanner"),
    "MICRO_ALLOCATOR": ("", "tflite::MicroAllocator"),
    "BUILTIN_DATA_ALLOCATOR": ("tensorflow/lite/micro/micro_allocator.cc", "tflite::MicroBuiltinDataAllocator"),
    "SUBGRAPH_ALLOCATIONS": ("", "tflite::SubgraphAllocations"),
    "EVAL_TENSOR": ("", "TfLiteEvalTensor"),
    "NODE_AND_REGISTRATION": ("", "tflite::NodeAndRegistration"),
    "SCRATCH_HANDLE": ("", "tflite::ScratchBufferHandle"),
    "TFLITE_TENSOR": ("", "TfLiteTensor"),
    "AFFINE_QUANTIZATION": ("", "TfLiteAffineQuantization"),
    "builtin CONV_2D": ("", "TfLiteConvParams"),
    "builtin DEPTHWISE_CONV_2D": ("", "TfLiteDepthwiseConvParams"),
    "builtin FULLY_CONNECTED": ("", "TfLiteFullyConnectedParams"),
    "builtin MAX_POOL_2D": ("", "TfLitePoolParams"),
    "builtin AVERAGE_POOL_2D": ("", "TfLitePoolParams"),
    "builtin ADD": ("", "TfLiteAddParams"),
    "builtin SOFTMAX": ("", "TfLiteSoftmaxParams"),
    "builtin RESHAPE": ("", "TfLiteReshapeParams"),
    "builtin MEAN": ("", "TfLiteReducerParams"),
    "builtin CONCATENATION": ("", "TfLiteConcatenationParams"),
    "builtin LEAKY_RELU": ("", "TfLiteLeakyReluParams"),
    "reference CONV_2D": ("", "tflite::OpDataConv"),
    "reference DEPTHWISE_CONV_2D": ("", "tflite::OpDataConv"),
    "reference FULLY_CONNECTED": ("", "tflite::OpDataFullyConnected"),
    "reference MAX_POOL_2D": ("", "tflite::OpDataPooling"),
    "reference AVERAGE_POOL_2D": ("", "tflite::OpDataPooling"),
    "reference ADD": ("", "tflite::OpDataAdd"),
    "reference SOFTMAX": ("", "tflite::SoftmaxParams"),
    "reference PAD": (f"{K}/pad_common.cc", "tflite::OpData"),
    "common MEAN": ("", "tflite::OpDataReduce"),
    "common QUANTIZE": ("", "tflite::OpDataQuantizeReference"),
    "common DEQUANTIZE": ("", "tflite::DequantizeOpData"),
    "common CONCATENATION": (f"{K}/concatenation.cc", "tflite::OpData"),
    "common LEAKY_RELU": ("", "tflite::LeakyReluOpData"),
    "cmsis-nn CONV_2D": (f"{K}/cmsis_nn/conv.cc", "tflite::OpData"),
    "cmsis-nn DEPTHWISE_CONV_2D": (f"{K}/cmsis_nn/depthwise_conv.cc", "tflite::OpData"),
    "cmsis-nn FULLY_CONNECTED": (f"{K}/cmsis_nn/fully_connected.cc", "tflite::OpData"),
    "cmsis-nn MAX_POOL_2D": (f"{K}/cmsis_nn/pooling.cc", "tflite::OpData"),
    "cmsis-nn AVERAGE_POOL_2D": (f"{K}/cmsis_nn/pooling.cc", "tflite::OpData"),
    "cmsis-nn ADD": (f"{K}/cmsis_nn/add.cc", "tflite::OpData"),
    "cmsis-nn SOFTMAX": (f"{K}/cmsis_nn/softmax.cc", "tflite::CMSISNNSoftmaxParams"),
    "cmsis-nn PAD": (f"{K}/cmsis_nn/pad.cc", "tflite::OpData"),
    # the stock ops of hybrid fxp files (docs/format.md section 8)
    "builtin MUL": ("", "TfLiteMulParams"),
    "builtin SUB": ("", "TfLiteSubParams"),
    "builtin RESIZE_NEAREST_NEIGHBOR": ("", "TfLiteResizeNearestNeighborParams"),
    "common MUL": (f"{K}/mul.h", "tflite::OpDataMul"),
    "common SUB": (f"{K}/sub.h", "tflite::OpDataSub"),
    "common LOGISTIC": (f"{K}/logistic.h", "tflite::OpDataLogistic"),
    "common TANH": (f"{K}/tanh.cc", "tflite::OpData"),
    "common HARD_SWISH": ("tensorflow/lite/kernels/internal/types.h", "tflite::HardSwishParams"),
}
# the glue's per-op record (fxpq::Record<op> of tflm_kernels/tflm/fxpq_tflm_ops.cc), one probe per FXP_* op
PROBES.update({f"fxpq {name}": (str(REPO / "tflm_kernels/tflm/fxpq_tflm_ops.cc"), f"fxpq::Record<FXPQ_OP_{name[4:]}>")
               for name in T.FXPQ_GLUE_RECORD})


def expected() -> dict[str, tuple[int, int | None]]:
    """The constants of fxpq_keras/tflm_arena.py under the probe names (alignment None: not charged)."""
    out: dict[str, tuple[int, int | None]] = {}
    for name in PROBES:
        if name.startswith("builtin "):
            out[name] = T.BUILTIN_DATA[name.split()[1]]
        elif name.split()[0] in T.OP_DATA:
            kernels, op = name.split()
            out[name] = (T.OP_DATA[kernels][op], None)
        elif name.startswith("fxpq "):
            out[name] = (T.FXPQ_GLUE_RECORD[name.split()[1]], None)
        else:
            out[name] = getattr(T, name)
    return out


def measure(tree: Path) -> dict[str, tuple[int, int]]:
    """sizeof and alignof of every probe on Cortex-M4 (arm-none-eabi-g++)."""
    dl = tree / "tensorflow/lite/micro/tools/make/downloads"
    inc = [tree, dl / "flatbuffers/include", dl / "gemmlowp", dl / "ruy", dl / "cmsis_nn", dl / "cmsis_nn/Include",
           dl / "cmsis/CMSIS/Core/Include", REPO / "tflm_kernels/include", REPO / "tflm_kernels/tflm"]
    flags = ["-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-mthumb", "-std=c++17", "-fno-rtti",
             "-fno-exceptions", "-DTF_LITE_STATIC_MEMORY", "-DCMSIS_NN", "-DKERNELS_OPTIMIZED_FOR_SPEED", "-w"]
    result: dict[str, tuple[int, int]] = {}
    units: dict[str, list[str]] = {}
    for name, (unit, _) in PROBES.items():
        units.setdefault(unit, []).append(name)
    with tempfile.TemporaryDirectory(prefix="fxpq-probe-") as d:
        for n, (unit, names) in enumerate(units.items()):
            heads = [f'#include "{unit}"'] if unit else [f'#include "{h}"' for h in CORE]
            body = [f'extern "C" {{ char probe_{i}_size[sizeof({PROBES[nm][1]})]; '
                    f'char probe_{i}_align[alignof({PROBES[nm][1]})]; }}' for i, nm in enumerate(names)]
            src, obj = Path(d) / f"p{n}.cc", Path(d) / f"p{n}.o"
            src.write_text("\n".join(heads + body) + "\n")
            subprocess.run(["arm-none-eabi-g++", *flags, *(f"-I{p}" for p in inc), "-c", str(src), "-o", str(obj)],
                           check=True, capture_output=True, text=True)
            syms = {}
            for line in subprocess.run(["arm-none-eabi-nm", "-S", str(obj)], check=True, capture_output=True,
                                       text=True).stdout.splitlines():
                parts = line.split()
                if len(parts) == 4 and parts[3].startswith("probe_"):
                    syms[parts[3]] = int(parts[1], 16)
            for i, nm in enumerate(names):
                result[nm] = (syms[f"probe_{i}_size"], syms[f"probe_{i}_align"])
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="compare with fxpq_keras/tflm_arena.py")
    args = p.parse_args(argv)
    tree = tflm_tree(clone=False)
    prepare_downloads(tree, log=lambda *_: None)
    got, want = measure(tree), expected()
    bad = 0
    for name, (size, align) in got.items():
        w_size, w_align = want[name]
        ok = size == w_size and (w_align is None or align == w_align)
        bad += not ok
        print(f"{name:28s} {size:4d} {align:2d}" + ("" if ok else f"   fxpq_keras/tflm_arena.py has {want[name]}"))
    return 1 if (args.check and bad) else 0


if __name__ == "__main__":
    sys.exit(main())
