"""The benchmarks' one FxP-QNet setting, shared by bench/quality.py, bench/mcu.py and bench/device.py.

A figure of one benchmark is comparable with another's only when both searched the same way, so
the search, the files it is judged on and the cached policy live here once:

- calibration: `--samples` unlabeled training-split inputs (bench/models.py `calibration_set`,
  512 by default);
- options: seed 0, the budget (1 % by default), `float_input=False` (the search plans the RAM of
  an integer-input file), the zoo entry's own (`model_options`: the autoencoder's budget is the
  anomaly-score metric), plus any `--option NAME=VALUE` of the run;
- files: exported with integer input (the input format's integers, as TFLite int8 files take
  int8), so no arena holds a float32 copy of the input; held-out floats become those integers
  with :func:`input_integers`;
- cache: the policy of a search is stored under `$FXPQ_BENCH_CACHE` keyed by the search code, the
  options and the calibration samples, so bench/mcu.py runs the policy bench/quality.py found
  (or searches once and stores it) and a changed default or algorithm never hides behind a stale
  policy.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fxpq_keras  # noqa: E402  (selects tf_keras before TensorFlow is imported)
from bench.models import CACHE  # noqa: E402
from fxpq_keras.fakequant import quantize_model  # noqa: E402
from fxpq_keras.flatbuffer import Interpreter, export_tflite  # noqa: E402
from fxpq_keras.policy import Policy  # noqa: E402
from fxpq_keras.search import FxPQNet, QuantizationResult  # noqa: E402

__all__ = ["MAX_DROP", "SAMPLES", "SEED", "FLOAT_INPUT", "OPTION_HELP", "parse_options", "model_options",
           "quantizer", "search",
           "policy_path", "store_policy", "cached_policy", "searched_model", "export_fxp", "input_integers"]

MAX_DROP = 0.01
SAMPLES = 512
SEED = 0
FLOAT_INPUT = False  # every benchmarked file takes its input format's integers, as TFLite int8 files do


def parse_options(items: list[str], error: Any) -> dict[str, Any]:
    """`--option NAME=VALUE` items (Python literal values) as SearchOptions fields, validated;
    `error(message)` reports a bad one (argparse's parser.error)."""
    import ast

    from fxpq_keras.search import SearchOptions

    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            error(f"--option {item!r}: expected NAME=VALUE")
        try:
            options[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            error(f"--option {item!r}: expected NAME=VALUE with a Python literal value")
    try:
        SearchOptions(**options).validate()
    except (TypeError, ValueError) as exc:
        error(f"--option: {exc}")
    return options


def model_options(name: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The options `name` is searched with: the zoo entry's own (bench/models.py `search_options`, e.g.
    the autoencoder's anomaly metric) under the run's `--option`s."""
    from bench.models import ZOO

    return {**dict(ZOO[name].search_options if name in ZOO else ()), **(options or {})}


OPTION_HELP = ("a SearchOptions field for every search of the run (a Python literal, e.g. align_ranges=False, "
               "ram_first=True); repeatable")


def quantizer(max_drop: float, samples: int, options: dict[str, Any] | None = None) -> FxPQNet:
    """The FxPQNet of a benchmark search (options validated here, before any training or search)."""
    return FxPQNet(max_drop, **{"samples": samples, "seed": SEED, "verbose": 0, "float_input": FLOAT_INPUT,
                                **(options or {})})


def search(model: Any, x_cal: np.ndarray, max_drop: float = MAX_DROP, options: dict[str, Any] | None = None,
           labels: np.ndarray | None = None) -> QuantizationResult:
    """One benchmark search on the calibration samples `x_cal`."""
    return quantizer(max_drop, len(x_cal), options).quantize(model, x_cal, labels=labels)


def _code_digest(options: Any) -> bytes:
    """The source a search result depends on: the search package, the fake-quant model, calibration,
    and the instruction estimate when a speed cap reads it (an fxp search without `max_slowdown`
    never does, so a refit of instructions.json keeps its cached policies); a builtin search also
    reads the float scale rules (formats.py, fakequant/quantizers.py)."""
    root = Path(fxpq_keras.__file__).parent
    files = [*sorted((root / "search").rglob("*.py")), root / "keras_model.py", root / "calibration.py"]
    if options.max_slowdown or options.target != "fxp":
        files += [root / "instructions.py", root / "instructions.json"]
    if options.target != "fxp":  # the builtin space's float weight and activation scale rules (issue 23)
        files += [root / "formats.py", root / "fakequant" / "quantizers.py"]
    return hashlib.sha256(b"".join(p.read_bytes() for p in files)).digest()


def policy_path(name: str, x_cal: np.ndarray, max_drop: float = MAX_DROP,
                options: dict[str, Any] | None = None) -> Path:
    """Where the policy of `name`'s search with these samples and options is cached."""
    q = quantizer(max_drop, len(x_cal), options)
    described = json.dumps({**q.options.to_dict(), "finetune_epochs": q.finetune_epochs,
                            "finetune_lr": q.finetune_lr}, sort_keys=True, default=str).encode()
    key = hashlib.sha256(_code_digest(q.options) + described + np.ascontiguousarray(x_cal).tobytes()).hexdigest()[:12]
    return CACHE / f"{name}.fxpqnet-{max_drop * 100:g}pct.{key}.policy.json"


def store_policy(name: str, x_cal: np.ndarray, policy: Policy, max_drop: float = MAX_DROP,
                 options: dict[str, Any] | None = None) -> Path:
    """Cache a search's policy (bench/quality.py stores what it found; bench/mcu.py reads it)."""
    path = policy_path(name, x_cal, max_drop, options)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{time.time_ns()}.tmp")
    policy.to_json(str(tmp))
    tmp.rename(path)
    return path


def cached_policy(name: str, model: Any, x_cal: np.ndarray, max_drop: float = MAX_DROP,
                  options: dict[str, Any] | None = None) -> tuple[Policy, str]:
    """The policy of the benchmark search of `name`: cached, else searched now and cached; and how."""
    path = policy_path(name, x_cal, max_drop, options)
    if path.exists():
        return Policy.from_json(str(path)), f"cached search {path.name}"
    t = time.perf_counter()
    result = search(model, x_cal, max_drop, options)
    store_policy(name, x_cal, result.policy, max_drop, options)
    return result.policy, f"searched in {time.perf_counter() - t:.0f} s"


def searched_model(model: Any, policy: Policy) -> Any:
    """The fake-quant model of a cached policy (quantize_model applies the policy's channel scales)."""
    return quantize_model(model, policy)


def export_fxp(qmodel: Any, policy: Policy, path: str | Path | None = None) -> bytes:
    """The fxp file of a searched fake-quant model as the benchmarks judge it (integer input, the
    policy in its metadata)."""
    return export_tflite(qmodel, path, float_input=FLOAT_INPUT, policy=policy)


def input_integers(path: str | Path, x: np.ndarray) -> np.ndarray:
    """Held-out floats as the integers an integer-input file takes (its input format's); floats
    unchanged for a float-input file."""
    interp = Interpreter(path)
    fmt = interp.graph.tensors[interp.graph.input].fmt
    return x if interp.info.float_input else fxpq_keras.formats.quantize(x, fmt)
