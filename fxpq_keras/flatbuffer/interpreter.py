"""`Interpreter(path, engine=...)`: run an exported file; engines plug in through ENGINES.

An engine factory takes (path, graph, info) and returns an object with
`run(x: np.ndarray) -> list[np.ndarray]` giving the raw integer outputs of a batch, each in its
output tensor's format (for a stored zero point z, that is `stored - z`: FileInfo.zero_points).
The Interpreter handles dequantize and softmax for every engine, so a new engine
(fxpq_keras/kernels/engines.py registers host, qemu-m4, qemu-m7) only has to return integers:
`register_engine("host", factory)`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..formats import check_integers
from ..integer_graph import IntegerGraph
from .reader import FileInfo, read_tflite


class Engine(Protocol):
    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """Integer outputs for a batch (float input, or integers for an integer-input file)."""


EngineFactory = Callable[[Path, IntegerGraph, FileInfo], Engine]
ENGINES: dict[str, EngineFactory] = {}
_LAZY_ENGINE_MODULES = ("fxpq_keras.kernels.engines",)  # registers host, qemu-m4, qemu-m7 when present


def register_engine(name: str, factory: EngineFactory) -> None:
    ENGINES[name] = factory


class _Reference:
    """numpy: the IntegerGraph for fxp files, the model of TFLM's int8 kernels for int8-builtin."""

    def __init__(self, path: Path, graph: IntegerGraph, info: FileInfo) -> None:
        self.graph, self.info = graph, info

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        if self.info.target in ("int8-builtin", "builtin"):
            from .stock import run_stock

            return run_stock(self.graph, x)
        return self.graph.run(x, raw=True)


class _Tflm:
    """The real TFLM interpreter of the `tflite-micro` package (files of stock ops only: int8-builtin
    files, and fxp files whose every op is a stock one, docs/format.md section 8)."""

    def __init__(self, path: Path, graph: IntegerGraph, info: FileInfo) -> None:
        custom = sorted({t for t in info.op_types if t.startswith("FXP_")})
        if custom:
            raise ValueError(f"engine 'tflm' (the tflite-micro package) runs stock ops only; {path} holds "
                             f"{', '.join(custom)}: use engine 'reference', 'host', 'qemu-m4' or, with TFLM_DIR, "
                             "'tflm-m4'")
        from tflite_micro.python.tflite_micro import runtime

        self._interp = runtime.Interpreter.from_bytes(Path(path).read_bytes())
        self.graph = graph
        # the SOFTMAX output is stored with zero point -128; the graph's format integer is stored + 128
        self._zero_points = [info.zero_points.get(o, 0) for o in graph.outputs]
        # an integer u8 input is stored with zero point -128 too: the file holds format integer + zp
        self._input_zero_point = info.zero_points.get(graph.input, 0)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        detail = self._interp.get_input_details(0)
        outs: list[list[np.ndarray]] = []
        x = np.asarray(x)
        if self._input_zero_point:
            x = x.astype(np.int64) + self._input_zero_point
        for sample in x:
            self._interp.set_input(np.asarray(sample[None], dtype=detail["dtype"]), 0)
            self._interp.invoke()
            outs.append([self._interp.get_output(i).copy() for i in range(len(self.graph.outputs))])
        return [np.concatenate([o[i] for o in outs]).astype(np.int64) - self._zero_points[i]
                for i in range(len(self.graph.outputs))]


register_engine("reference", _Reference)
register_engine("tflm", _Tflm)


class Interpreter:
    """Run an exported .tflite file: `predict(x)` on a float batch returns dequantized outputs.

    engine: "reference" (numpy, bit-exact contract), "tflm" (real TFLM, int8-builtin files), or
    any registered engine. raw=True returns the output integers.

    Example::

        probabilities = Interpreter("model.tflite").predict(x)
        integers = Interpreter("model.tflite", engine="host").predict(x, raw=True)   # the C kernels
    """

    def __init__(self, path: str | Path, engine: str = "reference") -> None:
        self.path = Path(path)
        self.graph, self.info = read_tflite(self.path)
        if engine not in ENGINES:
            import importlib

            for mod in _LAZY_ENGINE_MODULES:
                try:
                    importlib.import_module(mod)
                except ModuleNotFoundError:
                    pass
        if engine not in ENGINES:
            raise ValueError(f"unknown engine {engine!r}; available: {sorted(ENGINES)}")
        self.engine_name = engine
        self.engine = ENGINES[engine](self.path, self.graph, self.info)

    @property
    def output_formats(self) -> list[Any]:
        return [self.graph.tensors[o].fmt for o in self.graph.outputs]

    def predict(self, x: np.ndarray, *, raw: bool = False) -> np.ndarray | list[np.ndarray]:
        """Outputs for a batch: one array, or a list when the model has several outputs."""
        x = np.asarray(x)
        want = self.graph.tensors[self.graph.input].shape
        if tuple(x.shape[1:]) != tuple(want):
            raise ValueError(f"input batch must have shape [N, {', '.join(map(str, want))}], got {list(x.shape)}")
        if x.shape[0] == 0:
            raise ValueError("input batch is empty (N = 0): give at least one sample")
        if x.dtype.kind not in "biuf":  # complex: the imaginary part would be dropped (calibration refuses it too)
            raise ValueError(f"input must be real numbers, got dtype {x.dtype.name}")
        if self.info.float_input:
            if x.dtype.kind in "biu":  # e.g. uint8 pixels: silently cast, they would be read as 0..255
                raise ValueError(f"this file takes float32 input (it quantizes it itself), got {x.dtype} "
                                 "values; pass the floats the model was trained on (e.g. x / 255), or export "
                                 "with float_input=False (--integer-input) for a file that takes the integers")
            x = x.astype(np.float32)
            if np.isnan(x).any():
                raise ValueError("input contains NaN")
        else:
            x = check_integers(x, self.graph.tensors[self.graph.input].fmt)
        outs = self.engine.run(x)
        if not raw:
            outs = [self._finish(q, fmt.frac) for q, fmt in zip(outs, self.output_formats)]
        return outs[0] if len(outs) == 1 else outs

    def _finish(self, q: np.ndarray, frac: int) -> np.ndarray:
        return self.graph.finish_output(q, frac)
