"""The kernel paths one model runs, for a firmware that links only those (docs/kernels.md
"Selective build").

The optimized Cortex-M kernels keep one specialized loop per (input storage, weight width) for conv
2D / fully connected and one per input storage for depthwise (``tflm_kernels/src/kernels/
fxpq_dsp.c``): most of the kernels' code, of which a model runs a handful. :func:`model_paths`
reads those combinations from a .tflite file (the FXP_* weighted ops: the input tensor's type and
the ``weight_bits`` option, exactly what the C kernels see), :func:`paths_header` writes them as
``fxpq_model_paths.h``, and the kernels compiled with ``-DFXPQ_SELECTIVE_PATHS`` and that header on
the include path (``make ... FXPQ_PATHS=<dir>``) compile only those loops. A file that needs
anything else is refused when TFLM (or the runner) prepares the op, naming the combination
(``FXPQ_ERR_NOT_BUILT``), never run differently.

A uint16 input runs on one of two loops: the x - 2^15 lanes of a 16-bit format, or the int16 lanes
of a format of at most 15 bits (``UINT16_NARROW``). The C runner reads the format from the file;
the TFLM glue reads it from the op's ``in_bits`` option (format version 4), and in older files,
which lack it, knows the storage type only and passes 16 bits. So for those files the paths depend
on the engine the firmware runs: ``engine="tflm"`` (what `fxpq deploy` builds), ``"runner"``, or
``"any"`` (both: the default).

    paths = model_paths(Path("model.tflite").read_bytes())
    Path("fw/fxpq_model_paths.h").write_text(paths_header(paths, "model.tflite"))
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

from ..flatbuffer.options import decode_options
from ..flatbuffer.reader import tensor_format
from ..flatbuffer.schema import schema as S

__all__ = ["BLOCK_TERMS", "ENGINES", "KEYS", "KINDS", "STORAGES", "WEIGHTED_OPS", "model_paths", "paths_header",
           "selective_build", "write_paths_header"]

#: Input storage types the kernels specialize on (the header's macro suffixes), by TFLite tensor type.
STORAGES = {S.TensorType.INT8: "INT8", S.TensorType.UINT8: "UINT8", S.TensorType.INT16: "INT16",
            S.TensorType.UINT16: "UINT16"}
#: FXP_* weighted op -> the kernel group of fxpq_paths.h (conv 2D and fully connected share a kernel).
WEIGHTED_OPS = {"FXP_CONV_2D": "CONV", "FXP_FULLY_CONNECTED": "CONV", "FXP_DEPTHWISE_CONV_2D": "DEPTHWISE"}
HEADER = "fxpq_model_paths.h"
ENGINES = ("any", "tflm", "runner")
KINDS = (*STORAGES.values(), "UINT16_NARROW")
#: Every (group, kind) of the header: also the conv widths over 16-bit unsigned inputs whose rows are
#: longer than the unpacked-row block (BLOCK_TERMS), the only ones that run the x - 2^15 decoder loop.
KEYS = (*((g, k) for g in ("CONV", "DEPTHWISE") for k in KINDS), ("CONV", "UINT16_LONG"))
BLOCK_TERMS = 512  # tflm_kernels/src/kernels/fxpq_paths.h FXPQ_PATHS_BLOCK_TERMS

Paths = dict[tuple[str, str], frozenset[int]]  # (kernel group, storage) -> weight widths


def model_paths(data: bytes, engine: str = "any") -> Paths:
    """{(kernel group, input kind): weight widths} of every FXP_* conv / fully connected /
    depthwise op in the file, as the kernels under `engine` (module docstring) see them; every
    (group, kind) of :data:`KEYS` is a key (empty when unused)."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    m = S.ModelT.InitFromObj(S.Model.GetRootAs(data, 0))
    found: dict[tuple[str, str], set[int]] = {key: set() for key in KEYS}
    codes = [(c.customCode or b"").decode() for c in (m.operatorCodes or [])]
    for sub in m.subgraphs or []:
        for i, op in enumerate(sub.operators or []):
            name = codes[op.opcodeIndex] if op.opcodeIndex < len(codes) else ""
            if name not in WEIGHTED_OPS:
                continue
            tensor = sub.tensors[op.inputs[0]]
            if tensor.type not in STORAGES:
                raise ValueError(f"operator {i} ({name}): input tensor type {tensor.type} is not one the fxpq "
                                 f"kernels take (int8, uint8, int16, uint16)")
            blob = bytes(op.customOptions) if op.customOptions is not None else b""
            where = f"operator {i} ({name})"
            opts = decode_options(name, blob, where)
            bits = int(opts["weight_bits"])
            shape = [int(d) for d in tensor.shape]
            # terms per dot product, as the kernels count them (conv: kh * kw * C; fully connected: in_features)
            terms = (int(opts["filter_h"]) * int(opts["filter_w"]) * shape[-1] if name == "FXP_CONV_2D"
                     else math.prod(shape) // max(1, shape[0]))
            kinds = {STORAGES[tensor.type]}
            if tensor.type == S.TensorType.UINT16 and tensor_format(tensor, f"{where} input").bits < 16:
                # the glue passes the storage width only when the file has no in_bits (version < 4)
                kinds = ({"UINT16_NARROW"} if engine == "runner" or "in_bits" in opts else
                         {"UINT16"} if engine == "tflm" else {"UINT16", "UINT16_NARROW"})
            for kind in kinds:
                found[WEIGHTED_OPS[name], kind].add(bits)
                if kind == "UINT16" and WEIGHTED_OPS[name] == "CONV" and terms > BLOCK_TERMS:
                    found["CONV", "UINT16_LONG"].add(bits)
    return {k: frozenset(v) for k, v in found.items()}


def _mask(widths: frozenset[int]) -> int:
    return sum(1 << (w - 2) for w in widths)


def paths_header(paths: Paths, source: str = "the model") -> str:
    """The text of fxpq_model_paths.h for `paths` (:func:`model_paths`)."""
    lines = [f"/* {HEADER}: the fxpq kernel paths {source} runs (generated by fxpq_keras.kernels.paths;",
             " * docs/kernels.md \"Selective build\"). Compile the fxpq kernels with -DFXPQ_SELECTIVE_PATHS and",
             " * this file's folder on the include path: only these loops are built, and a model needing",
             " * any other combination is refused when its op is prepared (FXPQ_ERR_NOT_BUILT).",
             " * Bit (w - 2) of a mask: weight width w. */",
             "#ifndef FXPQ_MODEL_PATHS_H", "#define FXPQ_MODEL_PATHS_H"]
    for (group, storage), widths in sorted(paths.items()):
        what = "conv 2D / fully connected" if group == "CONV" else "depthwise conv 2D"
        over = {"UINT16_NARROW": "uint16 inputs of 9..15 bits",
                "UINT16_LONG": f"16-bit uint16 inputs, rows over {BLOCK_TERMS} terms"}.get(storage,
                                                                                         f"{storage.lower()} inputs")
        note = f"{what} over {over}: " + (", ".join(f"w{w}" for w in sorted(widths)) or "none")
        lines.append(f"#define FXPQ_PATHS_{group}_{storage} 0x{_mask(widths):04X}u /* {note} */")
    lines += ["#endif", ""]
    return "\n".join(lines)


def write_paths_header(data: bytes, directory: Path, source: str = "the model", engine: str = "any") -> Path:
    """Write fxpq_model_paths.h for the model `data` run by `engine` into `directory` (unchanged
    when equal, so make sees no new header); its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / HEADER
    text = paths_header(model_paths(data, engine), source)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def selective_build(kernels_dir: Path, data: bytes | None, engine: str = "any",
                    paths: Paths | None = None) -> tuple[str, list[str]]:
    """(build directory under `kernels_dir` (tflm_kernels/), make variables) of the kernels compiled
    for the paths of the model `data` under `engine` (or for `paths` as given: tests of single kinds):
    one directory per set of paths (models running the same paths share it), ``build/paths/<hash>/``
    holding the header and the objects. (kernels._build.kernel_build calls it with KERNELS_DIR.)"""
    if paths is None:
        if data is None:
            raise ValueError("a selective build needs the model (or the paths)")
        paths = model_paths(data, engine)
    paths = {k: frozenset(paths.get(k, ())) for k in KEYS}
    text = paths_header(paths, "the models of this build")
    build = f"build/paths/{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    header_dir = kernels_dir / build / "config"
    header_dir.mkdir(parents=True, exist_ok=True)
    if not (header_dir / HEADER).exists() or (header_dir / HEADER).read_text() != text:
        (header_dir / HEADER).write_text(text)
    return build, [f"BUILD={build}", f"FXPQ_PATHS={header_dir}"]
