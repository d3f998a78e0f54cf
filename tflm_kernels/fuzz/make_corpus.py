"""Regenerate the fuzz seed corpus: small exported models and their custom-options blobs.

    .venv/bin/python tflm_kernels/fuzz/make_corpus.py

It writes files of the current format version. The `*_v3` seeds were written by format version 3
(no `in_bits` option on the weighted ops) and are kept, so the readers' older-file path is fuzzed too.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_export_graphs import cnn_graph  # noqa: E402

import fxpq_keras  # noqa: E402,F401
from fxpq_keras.flatbuffer import export_tflite  # noqa: E402
from fxpq_keras.flatbuffer.options import CUSTOM_OPS  # noqa: E402
from fxpq_keras.flatbuffer.schema import schema as S  # noqa: E402


def main() -> None:
    model_dir, opt_dir = HERE / "corpus" / "model", HERE / "corpus" / "options"
    model_dir.mkdir(parents=True, exist_ok=True)
    opt_dir.mkdir(parents=True, exist_ok=True)
    names = list(CUSTOM_OPS)  # the C enum fxpq_custom_op follows this order
    for seed, kw in enumerate([dict(), dict(max_bits=8), dict(signed_only=True, bias=False)]):
        graph, _ = cnn_graph(seed, **kw)
        for float_input in (True, False):
            data = export_tflite(graph, float_input=float_input)
            (model_dir / f"cnn{seed}_{'f' if float_input else 'i'}.tflite").write_bytes(data)
            model = S.Model.GetRootAsModel(data, 0)
            sub = model.Subgraphs(0)
            for i in range(sub.OperatorsLength()):
                op = sub.Operators(i)
                code = model.OperatorCodes(op.OpcodeIndex()).CustomCode()
                if code is None or op.CustomOptionsLength() == 0:
                    continue
                blob = bytes(op.CustomOptionsAsNumpy().tobytes())
                index = names.index(code.decode())
                (opt_dir / f"{code.decode().lower()}_{seed}.bin").write_bytes(bytes([index]) + blob)


if __name__ == "__main__":
    main()
