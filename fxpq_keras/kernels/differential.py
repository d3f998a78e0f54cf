"""Differential reading of byte-flipped files: the Python reader against the C runner.

Both readers apply one rule set (docs/format.md section 11). For every corrupted copy of a valid
file this records what each reader says: accept, or refuse with its own error type (the Python
reader's FlatbufferFormatError, the runner's error status). A file the Python reader accepts is
also run once by the numpy reference, which must finish within the limits. Anything else (another
exception type, a crash) is a bug.

The runner executes `fxp` files only; it reads an `int8-builtin` file with the same rules as the
Python reader and ends a valid one in FXPQ_RUNNER_ERR_STOCK_FILE ("valid, run it in TFLM"), which
counts as accepting it.

    python -m fxpq_keras.kernels.differential --flips 10000          (scripts/fuzz.sh --long runs this)
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

# Python refusals about the compressed metadata, which the C runner never reads (format.md 5)
METADATA_WORDS = ("fxpq metadata", "not an fxpq file", "unsupported fxpq format_version", "unknown target",
                  "metadata float_input")


@dataclass
class Tally:
    """Counts of one kind's flips, and up to five examples of every problem."""

    kind: str
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    slowest: float = 0.0

    def add(self, verdict: str, example: str = "") -> None:
        self.counts[verdict] += 1
        if verdict in ("disagree", "python-crash", "run-crash") and len(self.examples.setdefault(verdict, [])) < 5:
            self.examples[verdict].append(example)

    @property
    def flips(self) -> int:
        return sum(v for k, v in self.counts.items() if k != "c-refuses-by-rule")

    @property
    def disagreements(self) -> int:
        return self.counts["disagree"] + self.counts["python-crash"] + self.counts["run-crash"]

    def row(self) -> str:
        c = self.counts
        return (f"| {self.kind} | {self.flips} | {c['both-accept']} | {c['both-refuse']} | "
                f"{c['metadata-only']} | {self.disagreements} |")


TABLE_HEAD = ("| kind | flips | accepted by both | refused by both | refused by Python only, in the metadata "
              "(C does not read it) | disagreements |\n|---|---|---|---|---|---|")


def sample_files(seed: int = 0) -> dict[str, list[bytes]]:
    """Valid files of every kind, from the random CNN builder of the test suite (every op)."""
    import importlib.util
    import sys
    from pathlib import Path

    from ..flatbuffer import export_tflite

    tests = Path(__file__).resolve().parents[2] / "tests"
    if "test_export_graphs" not in sys.modules:
        spec = importlib.util.spec_from_file_location("test_export_graphs", tests / "test_export_graphs.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["test_export_graphs"] = module
        spec.loader.exec_module(module)
    cnn_graph = sys.modules["test_export_graphs"].cnn_graph
    files: dict[str, list[bytes]] = {"fxp": [], "int8-builtin": [], "hybrid": []}
    for s, float_input in ((seed, True), (seed + 1, False), (seed + 2, True)):
        files["fxp"].append(export_tflite(cnn_graph(s)[0], float_input=float_input))
        files["int8-builtin"].append(export_tflite(cnn_graph(s, int8=True)[0], float_input=float_input,
                                                   target="int8-builtin"))
        files["hybrid"].append(export_tflite(hybrid_graph(s), float_input=float_input))
    return files


def hybrid_graph(seed: int = 0):
    """An fxp graph with every stock op of docs/format.md section 8 the runner executes, between
    FXP ops: quantize, LOGISTIC, MUL (a swish), TANH, SUB, HARD_SWISH, MAXIMUM, MINIMUM,
    RESIZE_NEAREST_NEIGHBOR, TRANSPOSE, FXP_REQUANTIZE."""
    from ..formats import Format
    from ..integer_graph import IntegerGraph, Node, TensorSpec

    rng = np.random.default_rng(seed)
    f = int(rng.integers(3, 7))
    s8 = {name: Format(8, f, True) for name in ("x", "sw", "d", "hs", "mx", "mn", "up", "tr")}
    t = {name: TensorSpec(name, (3, 4, 2), fmt) for name, fmt in s8.items()}
    t["xf"] = TensorSpec("xf", (3, 4, 2), None)
    t["sig"] = TensorSpec("sig", (3, 4, 2), Format(8, 8, False))
    t["th"] = TensorSpec("th", (3, 4, 2), Format(8, 7, True))
    t["up"] = TensorSpec("up", (6, 8, 2), s8["up"])
    t["tr"] = TensorSpec("tr", (8, 6, 2), s8["tr"])
    t["r"] = TensorSpec("r", (8, 6, 2), Format(8, f - 1, True))
    nodes = [Node("quantize", "x", ["xf"], "x"), Node("logistic", "sig", ["x"], "sig"),
             Node("mul", "sw", ["x", "sig"], "sw"), Node("tanh", "th", ["sw"], "th"),
             Node("sub", "d", ["th", "x"], "d"), Node("hard_swish", "hs", ["d"], "hs"),
             Node("maximum", "mx", ["hs", "d"], "mx"), Node("minimum", "mn", ["mx", "x"], "mn"),
             Node("upsample_nearest", "up", ["mn"], "up", {"size": (2, 2)}),
             Node("transpose", "tr", ["up"], "tr", {"perm": (0, 2, 1, 3)}),
             Node("requantize", "r", ["tr"], "r", {"activation": "linear"})]
    return IntegerGraph("xf", ["r"], t, nodes)


def flips(data: bytes, count: int, rng: np.random.Generator) -> Iterator[bytes]:
    """`count` copies of data with 1 or 2 random bytes set to random values."""
    for _ in range(count):
        blob = bytearray(data)
        for i in rng.integers(0, len(blob), size=int(rng.integers(1, 3))):
            blob[i] = int(rng.integers(0, 256))
        yield bytes(blob)


def judge(blob: bytes, kind: str, tally: Tally, rng: np.random.Generator) -> None:
    """Read `blob` with both readers and add the verdict to `tally`."""
    from ..flatbuffer import FlatbufferFormatError, read_bytes
    from .runner import HostRunner, RunnerError

    start = time.perf_counter()
    python_reason = ""
    try:
        graph, info = read_bytes(blob)
        python_ok = True
    except FlatbufferFormatError as exc:
        python_ok, python_reason = False, str(exc)
    except Exception as exc:  # noqa: BLE001 - the point: anything else is a reader bug
        tally.add("python-crash", f"{type(exc).__name__}: {exc} at {_where(exc)}")
        return
    if python_ok:
        try:
            _run_reference(graph, info, rng)
        except Exception as exc:  # noqa: BLE001 - an accepted file must run
            tally.add("run-crash", f"{type(exc).__name__}: {exc} at {_where(exc)}")
            return
    tally.slowest = max(tally.slowest, time.perf_counter() - start)
    try:
        HostRunner(blob)
        c_ok, c_reason = True, ""
    except RunnerError as exc:
        c_ok, c_reason = False, str(exc)
        if exc.status_name == "FXPQ_RUNNER_ERR_STOCK_FILE":
            c_ok = True  # a valid int8-builtin file, which TFLM runs
    if python_ok == c_ok:
        tally.add("both-accept" if c_ok else "both-refuse")
    elif c_ok and any(w in python_reason for w in METADATA_WORDS):
        tally.add("metadata-only")
    else:
        tally.add("disagree", f"python: {python_reason or 'accepts'} / C: {c_reason or 'accepts'}")
        if python_ok and "MALFORMED" not in c_reason:  # a rule, not the flatbuffer structure
            tally.counts["c-refuses-by-rule"] += 1


def _where(exc: BaseException) -> str:
    import traceback

    frame = traceback.extract_tb(exc.__traceback__)[-1]
    return f"{frame.filename.rsplit('/', 2)[-1]}:{frame.lineno}"


def _run_reference(graph, info, rng: np.random.Generator) -> None:
    from ..flatbuffer.interpreter import _Reference

    spec = graph.tensors[graph.input]
    if spec.fmt is None:
        x = rng.uniform(-2, 2, (1,) + tuple(spec.shape)).astype(np.float32)
    else:
        x = rng.integers(spec.fmt.lo, spec.fmt.hi + 1, (1,) + tuple(spec.shape))
    _Reference(None, graph, info).run(x)  # type: ignore[arg-type]


def differential(flips_per_kind: int, seed: int = 0) -> dict[str, Tally]:
    """Tallies of `flips_per_kind` flips of each kind, spread over the sample files."""
    rng = np.random.default_rng(seed)
    tallies = {}
    for kind, files in sample_files(seed).items():
        tally = Tally(kind)
        per_file = -(-flips_per_kind // len(files))
        done = 0
        for data in files:
            for blob in flips(data, min(per_file, flips_per_kind - done), rng):
                judge(blob, kind, tally, rng)
                done += 1
        tallies[kind] = tally
    return tallies


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--flips", type=int, default=10000, help="flips per file kind")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    start = time.time()
    tallies = differential(args.flips, args.seed)
    print(TABLE_HEAD)
    for tally in tallies.values():
        print(tally.row())
    for tally in tallies.values():
        for verdict, examples in tally.examples.items():
            for e in examples:
                print(f"{tally.kind} {verdict}: {e}")
    print(f"{time.time() - start:.0f} s; slowest Python read + reference run "
          f"{max(t.slowest for t in tallies.values()):.2f} s (seed {args.seed})")
    return 1 if any(t.disagreements for t in tallies.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
